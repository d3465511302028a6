"""A tiny Llama and a locally trained BPE tokenizer, built from a config: no download.

Tests use it wherever a real model would be: 2 layers, 64 dims, a ~600-token
vocabulary trained on ViGGO sentences (so text tokenises into sensible pieces).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

# FT_TEST_DATA: the data folder elsewhere (the GPU machine, where ../shared is not carried)
SHARED_DATA = Path(os.environ.get("FT_TEST_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def _corpus(limit: int = 2000) -> list[str]:
    texts = []
    path = SHARED_DATA / "viggo" / "train.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= limit:
                break
            texts += [row["ref"], row["mr"]]
    return texts


def build_tokenizer(out_dir: Path, vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Write a random-weight 2-layer Llama and its tokenizer to out_dir; return out_dir."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    return out_dir


def vary_weights(model) -> None:
    """Untie the head and re-draw every matrix (seeded). The tied random model mostly repeats
    the prompt's last token; with these weights greedy outputs differ from token to token, so
    a padding or position bug shows up as a different completion."""
    import torch

    model.config.tie_word_embeddings = False
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                std = 0.3 if "embed" in name else 0.15
                param.copy_(torch.randn(param.shape, generator=generator) * std)
        head = torch.randn(model.model.embed_tokens.weight.shape, generator=generator) * 0.3
        model.lm_head.weight = torch.nn.Parameter(head)


def build_stop_model(source: Path, out_dir: Path, texts: list[str], add_tokens, vary: bool = False) -> Path:
    """source's model (re-drawn by vary_weights first when `vary`), the task's tokens added by
    `add_tokens(model, tokenizer)` (which grows the embeddings too), and <END_A> made to win
    wherever the most common greedy token over `texts` would: greedy generation then emits
    <END_A> part-way through many completions and runs others to the token limit."""
    from collections import Counter

    import torch
    from ft_common.tasks import END_A
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    if vary:
        vary_weights(model)
    common = Counter()
    for text in texts:
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            generated = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        common.update(generated[0, ids.shape[1]:].tolist()[2:])
    target = common.most_common(1)[0][0]
    torch.manual_seed(0)  # new embedding rows are drawn from the global RNG: the same model whatever ran before
    add_tokens(model, tokenizer)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.convert_tokens_to_ids(END_A)] = 1.2 * model.lm_head.weight[target]
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
