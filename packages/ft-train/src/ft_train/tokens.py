"""Special tokens: add the task's markers to the tokenizer, check them, grow the embeddings.

The tokens come from the records' `special_tokens` (or `--special-tokens FILE`,
one per line) and are added with special_tokens=True, so the tokenizer never
splits them. Checks, before any training: each maps to exactly one id, and
tokenising prompt and target apart gives the same ids as tokenising them
together (what ft-infer feeds the model is the prompt alone) and decodes back
to the text. New embedding rows start at the mean of the old rows.
"""

from __future__ import annotations

from pathlib import Path

from ft_common.errors import InputError
from ft_common.records import record_id
from ft_common.tasks import END_A

from ft_train.data import round_up


def tokens_from_records(records: list[dict]) -> list[str]:
    """The union of the records' special_tokens, in first-seen order."""
    seen: dict[str, None] = {}
    for r in records:
        for tok in r.get("special_tokens") or []:
            seen.setdefault(str(tok), None)
    return list(seen)


def tokens_from_file(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read special tokens ({exc.strerror})") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def stop_token(records: list[dict], special: list[str]) -> str | None:
    """The records' first stop string; else <END_A> when it is among the special tokens."""
    for r in records:
        stops = r.get("stop")
        if stops:
            return stops[0] if isinstance(stops, list) else str(stops)
    return END_A if END_A in special else None


def add_tokens(tokenizer, special: list[str]) -> int:
    """Add the tokens (special_tokens=True); a pad token too when there is none. Returns how many were new."""
    added = 0
    if special:
        added = tokenizer.add_special_tokens({"extra_special_tokens": special}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return added


def check_tokens(tokenizer, special: list[str], records: list[dict], name: str,
                 limit: int | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """Raise InputError unless each token is one id and prompt+target round-trips (the first
    record that does not, in file order). Batched, through the fast tokenizer's backend (`_encode`):
    20,000 SQL records with SmolLM2's tokenizer take 2.9 s on the CPU machine, 4.5 s through
    tokenizer(...). Returns the prompts' and the targets' ids (no special tokens added), which
    data.tokenize_records can reuse."""
    for tok in special:
        ids = tokenizer.encode(tok, add_special_tokens=False)
        if len(ids) != 1:
            raise InputError(f"special token {tok!r} maps to {len(ids)} ids {ids}, not exactly one")
    records = records[:limit] if limit else records
    if not records:
        return [], []
    texts = [r["prompt"] + r["target"] for r in records]
    joined = _encode(tokenizer, texts)
    prompts = _encode(tokenizer, [r["prompt"] for r in records])
    targets = _encode(tokenizer, [r["target"] for r in records])
    backs = _decode(tokenizer, joined)
    for i, r in enumerate(records):
        if joined[i] != prompts[i] + targets[i]:
            raise InputError(
                f"{name}: record {record_id(r, i)}: prompt and target tokenise differently apart and together "
                "(end the prompt with a special token, e.g. <START_A>)"
            )
        if backs[i] != texts[i]:
            raise InputError(f"{name}: record {record_id(r, i)}: tokenising does not round-trip: {backs[i][:60]!r}")
    return prompts, targets


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids (lists) without special tokens added. A fast tokenizer's Rust backend directly: the
    same ids as tokenizer(texts), without its Python wrapping of each text. Not where the backend
    carries a truncation or padding setting (tokenizer.json may): tokenizer(...) clears it per call."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]


def _decode(tokenizer, ids: list[list[int]]) -> list[str]:
    """Each row's text, special tokens kept, no clean-up of spaces (as batch_decode with
    clean_up_tokenization_spaces=False gives it)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer.batch_decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return backend.decode_batch(ids, skip_special_tokens=False)


# Embedding rows come in whole multiples of this. The LM head's logits are [rows, vocabulary] in
# bf16: at a vocabulary that is not a multiple of 8 (SmolLM2's 49,152 + 4 task tokens; a GGUF
# Qwen2.5's 151,936 + 4) their rows are not 16-byte aligned, and cuBLAS runs the head's three
# matmuls on its sm80 kernels instead of Hopper's, at a third of the speed: 2.5 ms of a 23.5 ms
# 135M step on one H100 (docs/benchmarks.md). The rows past the tokenizer's are never an input or
# a label; the softmax learns to give them nothing, as it does Qwen2.5's own spare rows.
VOCAB_MULTIPLE = 64


def embedding_rows(vocab_size: int, rows: int) -> int:
    """The rows the embeddings get for a tokenizer of vocab_size tokens, from `rows` now: enough
    for every token, rounded up to VOCAB_MULTIPLE (never fewer than now)."""
    return round_up(max(vocab_size, rows), VOCAB_MULTIPLE)


def resize_embeddings(model, vocab_size: int) -> None:
    """Grow the input (and untied output) embeddings to embedding_rows(vocab_size); new rows = the
    mean of the old rows. config.vocab_size follows (transformers sets it)."""
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    new = embedding_rows(vocab_size, old)
    if new == old:
        return
    model.resize_token_embeddings(new, mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[old:] = emb[:old].mean(dim=0, keepdim=True)
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != emb.data_ptr():
            out.weight[old:] = out.weight[:old].mean(dim=0, keepdim=True)
