"""generic: your own task from JSONL with `prompt`/`target` or `input`/`output` fields.

Every other key of your records passes through untouched (a `meta` object is merged).
`input`/`output` records get the special-token layout
`{t0}{input}{t1}{t2}` / `{output}{t3}` with the four tokens given (the case study's
<START_Q>,<END_Q>,<START_A>,<END_A> by default); `prompt`/`target` records are kept
verbatim, the stop token appended to a target that lacks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ft_common.errors import UsageError
from ft_common.records import SCHEMA_VERSION
from ft_common.tasks.base import SPECIAL_TOKENS

from ft_prep.common import BadRow, Row, Stats, convert, make_id

CONSUMED = ("prompt", "target", "input", "output")


def parse_tokens(text: str) -> tuple[str, ...]:
    """'--special-tokens A,B,C,D' -> ('A', 'B', 'C', 'D'); '' -> ()."""
    tokens = tuple(t.strip() for t in text.split(",") if t.strip())
    if tokens and len(tokens) != 4:
        raise UsageError("--special-tokens takes 4 comma-separated tokens (question start, question end, "
                         "answer start, answer end), or '' for none")
    return tokens


def make_record(row: Row, split: str, fmt: str, tokens: tuple[str, ...] = SPECIAL_TOKENS) -> dict:
    data = row.data
    stop = [tokens[3]] if tokens else []
    if isinstance(data.get("prompt"), str):
        input_text = data["prompt"]
        output = data.get("target")
        prompt = input_text
    elif isinstance(data.get("input"), str):
        input_text = data["input"]
        output = data.get("output")
        prompt = f"{tokens[0]}{input_text}{tokens[1]}{tokens[2]}" if tokens else input_text
    else:
        raise BadRow("needs a string 'prompt' (with 'target') or 'input' (with 'output')")
    if output is not None and not isinstance(output, str):
        raise BadRow("'target'/'output' must be a string")
    reference = output if output is not None else None
    if reference is not None and stop and reference.endswith(stop[0]):
        reference = reference[: -len(stop[0])]
    user_meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    meta = {**user_meta, "input": input_text}
    if reference is not None:
        meta["reference"] = reference
    record = {k: v for k, v in data.items() if k not in CONSUMED}
    record.update({"ft_schema": SCHEMA_VERSION, "id": data.get("id", make_id("generic", split, row.index)),
                   "task": data.get("task", "generic"), "split": data.get("split", split), "format": fmt})
    if fmt == "chat":
        record["messages"] = [{"role": "user", "content": input_text}]
    else:
        record["prompt"] = prompt if fmt == "tokens" else input_text
        if fmt == "tokens" and output is not None:
            record["target"] = output if not stop or output.endswith(stop[0]) else output + stop[0]
        if stop:
            record["stop"] = stop
        if tokens and fmt == "tokens":
            record["special_tokens"] = list(tokens)
    record["meta"] = meta
    return record


def records(rows: Iterable[Row], split: str = "train", fmt: str = "tokens", tokens: tuple[str, ...] = SPECIAL_TOKENS,
            skip_bad: bool = False, stats: Stats | None = None) -> Iterator[dict]:
    return convert(rows, lambda r: make_record(r, split, fmt, tokens), skip_bad,
                   stats if stats is not None else Stats())


def command():
    """`ft-prep generic`, found by ft_prep.cli through the task registry. It reads
    JSONL (an INPUT argument) instead of a dataset, so it has its own options."""
    import click
    from ft_common.cli import (
        CONTEXT_SETTINGS,
        common_options,
        input_argument,
        limit_option,
        output_option,
        take,
    )
    from ft_common.jsonl import display_name, open_output, read_records
    from ft_common.progress import log

    from ft_prep.common import FORMATS, SPLITS

    @click.command("generic", context_settings=CONTEXT_SETTINGS)
    @input_argument()
    @click.option("--special-tokens", default=",".join(SPECIAL_TOKENS), show_default=True,
                  help="4 comma-separated tokens: question start, question end, answer start, answer end "
                       "(the last is the stop token); '' for none.")
    @click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True,
                  help="Split name for ids of records that have none.")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="tokens", show_default=True,
                  help="tokens: special-token layout; fewshot: the input as the prompt; chat: one user message.")
    @click.option("--skip-bad", is_flag=True, help="Skip records without prompt/input and count them on stderr.")
    @limit_option()
    @output_option()
    @common_options
    def generic(input, special_tokens, split, fmt, skip_bad, limit, output, quiet):
        """Your own task: JSONL with prompt/target (or input/output) -> ft records.

        Every other key of your records passes through untouched.

        \b
          jq -c '{input: .text, output: .label}' mine.jsonl | ft-prep generic > train.jsonl
          ft-prep generic valid.jsonl | ft-infer -m ckpt | ft-score generic
        """
        tokens = parse_tokens(special_tokens)
        name = display_name(input)
        rows = (Row(i, record, f"{name} record {i + 1}") for i, record in enumerate(read_records(input)))
        stats = Stats()
        with open_output(output) as writer:
            writer.write_all(take(records(rows, split, fmt, tokens, skip_bad=skip_bad, stats=stats), limit))
        log(f"ft-prep generic: {writer.count} records" + (f" ({stats.summary()})" if stats else ""), quiet)

    return generic
