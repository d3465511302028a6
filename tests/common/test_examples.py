"""Every shell example in the docs runs, or is listed here with the reason it cannot.

The examples are taken from README.md, packages/*/README.md (fenced and indented shell blocks)
and from every command's and subcommand's `--help` text (the `\\b` example paragraphs of its
docstring and epilog). Each one is then either

- run, in a fresh folder holding small input files (train.jsonl, valid.jsonl, ...), with the
  hub swapped for the local data (FT_DATA_DIR, and ../shared/data linked beside the folder),
  every model that is not an earlier example's output swapped for the tiny model of
  tests/tiny_model.py, `--limit 2` given to ft-prep and `--max-new-tokens 8` to ft-infer; it must
  exit 0 without a traceback, and an example that ends in `| wc -l  # N` must print N. An
  `ft-prep ... | ft-infer ...` head shared by several examples runs once, its output fed to each
  example's rest; blocks run three at a time; or
- listed in NOT_RUN with the reason (GPU, network, a long run, a usage synopsis).

An example that is neither fails the test, and so does a NOT_RUN entry that matches no example
(the doc changed). Whatever runs or not, the flags of every ft-* command in an example are parsed
by the command's own click parser, so a flag that does not exist fails here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from tiny_model import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("packages/*/README.md"))]
CLIS = {"ft-prep": "ft_prep.cli", "ft-infer": "ft_infer.cli", "ft-train": "ft_train.cli",
        "ft-score": "ft_score.cli"}
# A line is a shell command when its first word is one of these (after VAR=value prefixes).
COMMANDS = {*CLIS, "jq", "pip", "python", "python3", "bash", "sh", "just", "vllm", "ray", "cat", "head",
            "shuf", "wc", "export", "cd", "uv", "git", ".venv/bin/python", ".venv/bin/just"}
SHELL_LANGS = {"", "sh", "bash", "shell", "console"}

GPU = "needs a CUDA GPU"
VLLM = "needs vllm and a GPU"
NET = "needs the network"
HUB = "needs the hub: the local data has no such split"
SYNOPSIS = "usage synopsis, not a command"
PIP = "installs packages (network); scripts/setup.sh and CI install the same paths"
TRAIN = ("a training run (Ray's start-up alone is ~20 s, a third of this test's budget); "
         "tests/train runs ft-train end to end")
SLOW = "takes minutes (a setup, the whole suite or a benchmark)"

# Examples that are not run, each with the reason; their ft-* flags are still parsed. A key is the
# command, or "FILE: command" for one file's copy of it.
NOT_RUN = {
    # README.md
    "bash scripts/quickstart.sh": SLOW,
    ".venv/bin/python -m pytest -q": SLOW,
    "bash scripts/setup_gpu.sh": GPU + " and the network",
    "pip install ./packages/ft-common ./packages/ft-score": PIP,
    "pip install ./packages/ft-common ./packages/ft-prep": PIP,
    "pip install './packages/ft-common[models]' './packages/ft-infer[openai]'": PIP,
    # packages/ft-infer/README.md
    "ft-prep viggo --split valid --format chat | ft-infer --engine openai -m gpt-4o --concurrency 16 "
    "| ft-score viggo": NET + " (OpenAI; tests/infer/test_openai.py covers the engine)",
    "vllm serve ckpt/best & ft-infer --engine openai --base-url http://localhost:8000/v1 -m ckpt/best "
    "< valid.jsonl": VLLM,
    "pip install ./packages/ft-common ./packages/ft-infer": PIP,
    "pip install './packages/ft-infer[vllm]'": PIP,
    "pip install './packages/ft-infer[openai]'": PIP,
    "pip install './packages/ft-infer[ray]'": PIP,
    "ray start --head --num-gpus 8": GPU,
    "ft-infer --ray -m ckpt/best --engine vllm valid.jsonl -o out.jsonl": VLLM,
    "python bench/bench_infer.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf --out runs/bench_infer.json":
        SLOW + " (GPU)",
    # packages/ft-prep/README.md (its pip line is README.md's too)
    "pip install './packages/ft-prep[llm]'": PIP,
    "ft-prep TASK [--data PATH] [--split train|valid|test] [--format tokens|fewshot|chat] [--shuffle] "
    "[--limit N] [--seed N] [--skip-bad] [-o FILE] [-q] [-v]": SYNOPSIS,
    "ft-prep sql  ... [--source wikisql|spider|all|FILE] [--sql-types fix|drop|keep] "
    "[--tables synthetic|llm|none] [--require-tables] [--db-dir DIR] [-j N] [--base-url URL -m MODEL]":
        SYNOPSIS,
    "ft-prep generic [INPUT] [--special-tokens A,B,C,D] [--format ...] [--skip-bad] [--limit N] [-o FILE]":
        SYNOPSIS,
    "ft-prep viggo --split valid --format chat | ft-infer -m gpt-4o --engine openai | ft-score viggo": NET,
    "ft-prep mathqa --split train > stage1.jsonl && ft-prep gsm8k > stage2.jsonl": HUB + " (MathQA train)",
    # packages/ft-score/README.md
    "ft-score viggo|sql|gsm8k|mathqa|generic [INPUT] [-o OUT] [--summary FILE.json] [--limit N] [-q] [-v]":
        SYNOPSIS,
    "ft-score compare A.jsonl B.jsonl [--json]": SYNOPSIS,
    # packages/ft-train/README.md
    "pip install packages/ft-common packages/ft-train": PIP,
    "ft-train -m models/SmolLM2-135M-Instruct.Q4_1.gguf --train train.jsonl --valid valid.jsonl "
    "-o runs/viggo": TRAIN,
    "ft-prep viggo --split train | ft-train -m model.gguf --train - --valid valid.jsonl -o runs/viggo": TRAIN,
    "ft-train -m M --train t.jsonl --valid v.jsonl -o runs/x --save-every 200": TRAIN,
    "ft-train -m M --train t.jsonl --valid v.jsonl -o runs/x --save-every 200 --resume": TRAIN,
    "ft-prep mathqa --split train --answer value > mathqa-train.jsonl": HUB + " (MathQA train)",
    "ft-train -m base.gguf --train mathqa-train.jsonl --valid gsm8k-valid.jsonl -o runs/mathqa": TRAIN,
    "ft-train -m runs/mathqa/best --train gsm8k-train.jsonl --valid gsm8k-valid.jsonl -o runs/gsm8k": TRAIN,
    "just test tests/train": SLOW,
    "python bench/bench_train.py --device cpu --tiny": SLOW,
    "python bench/bench_train.py --mode all": SLOW + " (GPU)",
    "just bench-graphs": GPU,
    # ft-prep --help texts (the group's name no task: TASK is a placeholder)
    "ft-prep TASK --split valid | ft-infer -m ckpt | ft-score TASK": SYNOPSIS,
    "ft-prep TASK --data ../shared/data --format fewshot --limit 100 > fewshot.jsonl": SYNOPSIS,
    "ft-prep viggo --data ../shared/data --format chat --limit 50 | ft-infer -m gpt --engine openai": NET,
    "ft-prep mathqa --split train > mathqa.jsonl": HUB + " (MathQA train)",
    # ft-train --help (its epilog names no task: TASK is a placeholder)
    "ft-prep TASK --split train | ft-train -m model.gguf --train - --valid valid.jsonl -o runs/task": SYNOPSIS,
    "ft-train -m runs/stage1/best --train stage2.jsonl --valid stage2-valid.jsonl -o runs/stage2": TRAIN,
    "ft-train -m HuggingFaceTB/SmolLM2-135M --train t.jsonl --valid v.jsonl -o runs/x --workers 2 --zero 3 "
    "--offload optimizer": TRAIN,
    "ft-train ... -o runs/task --resume": TRAIN + "; '...' stands for the first run's flags",
    # ft-infer --help
    "ft-prep TASK --split valid | ft-infer -m ckpt/best | ft-score TASK": SYNOPSIS,
    "ft-prep generic data.jsonl --format chat | ft-infer --engine openai -m gpt-4o --concurrency 16": NET,
    # ft-score --help
    "ft-prep TASK --split valid | ft-infer -m ckpt | ft-score TASK --summary s.json": SYNOPSIS,
}


# ---------------------------------------------------------------------------------------------
# Extraction


@dataclass(frozen=True)
class Example:
    where: str      # "README.md:12" or "ft-prep sql --help"
    block: str      # examples of one block run in order, in one folder
    command: str    # the command, its trailing comment removed
    comment: str    # the trailing comment ("714" in `... | wc -l  # 714`)


def split_comment(line: str) -> tuple[str, str]:
    """`cmd  # note` -> ("cmd", "note"): a '#' that starts a word outside quotes starts a comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def first_word(line: str) -> str:
    words = [w for w in line.split() if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", w)]
    return words[0] if words else ""


def block_commands(lines: list[str]) -> list[tuple[int, str, str]]:
    """(offset, command, comment) of a shell block: `\\` joins lines, so does a line that starts
    with blanks (a usage synopsis wrapped under its command); '#' lines are comments."""
    out: list[list] = []
    joining = False
    for i, raw in enumerate(lines):
        text = raw.rstrip()
        if not text.strip():
            joining = False
            continue
        if joining or (text[:1].isspace() and out and not text.lstrip().startswith("#")):
            out[-1][1] = (out[-1][1] + " " + text.strip().rstrip("\\").strip()).strip()
            joining = text.endswith("\\")
            continue
        if text.lstrip().startswith("#"):
            continue
        joining = text.endswith("\\")
        out.append([i, text.strip().rstrip("\\").strip()])
    return [(i, *split_comment(cmd)) for i, cmd in out]


def markdown_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every shell block: fenced ```/```sh, or indented by 4."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"\s*```(\w*)\s*$", lines[i])
        if fence:
            j = i + 1
            while j < len(lines) and not re.match(r"\s*```\s*$", lines[j]):
                j += 1
            if fence.group(1) in SHELL_LANGS:
                blocks.append((i + 2, lines[i + 1:j]))
            i = j + 1
            continue
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            blocks.append((i + 1, [line[4:] for line in lines[i:j]]))
            i = j
            continue
        i += 1
    # A block is shell when its first command is one.
    return [(n, b) for n, b in blocks if (cmds := block_commands(b)) and first_word(cmds[0][1]) in COMMANDS]


def doc_examples() -> list[Example]:
    out = []
    for path in DOCS:
        rel = path.relative_to(ROOT).as_posix()
        for start, lines in markdown_blocks(path.read_text(encoding="utf-8")):
            for offset, cmd, comment in block_commands(lines):
                out.append(Example(f"{rel}:{start + offset}", f"{rel}:{start}", cmd, comment))
    return out


def click_commands() -> list[tuple[str, click.Command]]:
    """('ft-prep sql', command) for every command and subcommand."""
    out = []
    for prog, module in CLIS.items():
        cmd = import_module(module).cli
        out.append((prog, cmd))
        if isinstance(cmd, click.Group):
            out += [(f"{prog} {name}", cmd.commands[name]) for name in sorted(cmd.commands)]
    return out


def help_examples() -> list[Example]:
    """Example lines of every --help: the '\\b' paragraphs (click keeps their lines) of the
    docstring and the epilog."""
    out = []
    for prog, cmd in click_commands():
        for part in (cmd.help or "", cmd.epilog or ""):
            for para in re.split(r"\n\s*\n", part):
                if para.strip().startswith("\b"):
                    lines = para.strip().splitlines()[1:]
                    for _, command, comment in block_commands([line.strip() for line in lines]):
                        if first_word(command) in COMMANDS:
                            out.append(Example(f"{prog} --help", f"{prog} --help", command, comment))
    return out


def all_examples() -> list[Example]:
    return doc_examples() + help_examples()


def not_run(example: Example) -> str | None:
    """The reason an example is not run, or None."""
    source = example.where.split(":")[0]
    return NOT_RUN.get(f"{source}: {example.command}", NOT_RUN.get(example.command))


# ---------------------------------------------------------------------------------------------
# Shell words, parsing and rewriting

OPERATORS = {"|", "||", "&&", ";", "&"}
WRITES = re.compile(r"(^|\s)(>|>>|-o|--output|--summary|--chart)(\s|=|$)")
REDIRECTS = {">", ">>", "<", "1>", "2>", "2>>"}


def tokens(command: str) -> list[str]:
    """Shell words and operators; `2>` (a file descriptor and its redirection) is one token."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out: list[str] = []
    for tok in lex:
        if tok in (">", ">>") and out and out[-1].isdigit() and re.search(rf"\d{tok}", command):
            out[-1] += tok
        else:
            out.append(tok)
    return out


def segments(command: str) -> list[list[str]]:
    """The simple commands of a command line, redirections and VAR=value prefixes removed."""
    out, cur, skip = [], [], False
    for tok in tokens(command):
        if skip:
            skip = False
        elif tok in OPERATORS:
            out.append(cur)
            cur = []
        elif tok in REDIRECTS:
            skip = True
        elif not cur and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", tok):
            continue
        else:
            cur.append(tok)
    return [s for s in out + [cur] if s]


def parse_flags(argv: list[str]) -> None:
    """Parse an ft-* command's arguments with its own click parser (no callback runs)."""
    cmd = import_module(CLIS[argv[0]]).cli
    args = argv[1:]
    ctx = click.Context(cmd, info_name=argv[0], resilient_parsing=False)
    if isinstance(cmd, click.Group):
        sub = cmd.get_command(ctx, args[0]) if args else None
        if sub is None:
            raise click.UsageError(f"no such subcommand: {args[:1]}")
        cmd, args, parent = sub, args[1:], ctx
    else:
        parent = None
    with cmd.make_context(argv[0], list(args), parent=parent):
        pass


def _set(argv: list[str], flag: str, value: str, *, names: tuple[str, ...] = ()) -> list[str]:
    """argv with `flag value` set (replacing an earlier value given under any of names)."""
    names = names or (flag,)
    out, i = [], 0
    while i < len(argv):
        if argv[i] in names and i + 1 < len(argv):
            i += 2
            continue
        if any(argv[i].startswith(n + "=") for n in names if n.startswith("--")):
            i += 1
            continue
        out.append(argv[i])
        i += 1
    return [*out, flag, value]


def _value(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            return argv[i + 1]
        for n in names:
            if n.startswith("--") and arg.startswith(n + "="):
                return arg[len(n) + 1:]
    return None


LIMIT = 2  # records an ft-prep example makes (unless it counts them: `| wc -l  # 714`)


def rewrite(command: str, cwd: Path, tiny: Path, counted: bool) -> str:
    """The command as the test runs it (see the module docstring)."""
    out, cur = [], []

    def flush():
        if cur and cur[0] in CLIS:
            argv = list(cur)
            model = _value(argv, "-m", "--model")
            if argv[0] in ("ft-infer", "ft-train") and model and not (cwd / model).exists():
                argv = _set(argv, "-m", str(tiny), names=("-m", "--model"))
            limit = _value(argv, "--limit")
            if argv[0] == "ft-prep" and not counted and (limit is None or int(limit) > LIMIT):
                argv = _set(argv, "--limit", str(LIMIT))
            if argv[0] == "ft-infer":
                argv = _set(argv, "--max-new-tokens", "8")
            if argv[0] == "ft-train":
                argv = _set(_set(argv, "--epochs", "1"), "--batch-size", "4")
            cur[:] = argv
        out.extend(shlex.quote(t) for t in cur)
        cur.clear()

    for tok in tokens(command):
        if tok in OPERATORS or tok in REDIRECTS:
            flush()
            out.append(tok)
            if tok in REDIRECTS:
                out.append(None)  # the file name follows, quoted
        elif out and out[-1] is None:
            out[-1] = shlex.quote(tok)
        else:
            cur.append(tok)
    flush()
    return " ".join(out)


def join(toks: list[str]) -> str:
    return " ".join(t if t in OPERATORS or t in REDIRECTS else shlex.quote(t) for t in toks)


def generation_prefix(command: str) -> tuple[str, str] | None:
    """`ft-prep ... | ft-infer ... | REST` -> (the first two commands, REST), else None.

    Many examples share their first two commands (`ft-prep viggo --split valid | ft-infer -m ckpt`)
    and differ in what follows; the test runs such a prefix once and feeds its output to each REST,
    since ft-infer's start (torch, transformers) is most of an example's time."""
    toks = tokens(command)
    ops = [i for i, t in enumerate(toks) if t in OPERATORS or t in REDIRECTS]
    if len(ops) < 2 or toks[ops[0]] != "|" or toks[ops[1]] != "|":
        return None
    if toks[0] != "ft-prep" or toks[ops[0] + 1] != "ft-infer":
        return None
    return join(toks[:ops[1]]), join(toks[ops[1] + 1:])


# ---------------------------------------------------------------------------------------------
# Input files the examples name


def _prep(args: list[str], out: Path) -> None:
    from ft_prep.cli import cli

    res = CliRunner().invoke(cli, [*args, "--data", str(SHARED_DATA), "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output


def _score(task: str, src: Path, out: Path) -> None:
    from ft_score.cli import cli

    res = CliRunner().invoke(cli, [task, str(src), "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output


def _with_completion(src: Path, out: Path, completion) -> None:
    records = [json.loads(line) for line in src.read_text().splitlines()]
    out.write_text("".join(json.dumps({**r, "completion": completion(r), "finish_reason": "stop"}) + "\n"
                           for r in records))


def build_inputs(d: Path) -> None:
    """Small files under the names the examples use: 8 ViGGO training records, 4 validation
    records, completions and scored runs, a sql-create-context file, your-own-task JSONL."""
    _prep(["viggo", "--split", "train", "--limit", "8"], d / "train.jsonl")
    _prep(["viggo", "--split", "valid", "--limit", "4"], d / "valid.jsonl")
    for name in ("t.jsonl", "gsm8k.jsonl", "mathqa-train.jsonl", "gsm8k-train.jsonl"):
        shutil.copy(d / "train.jsonl", d / name)
    for name in ("v.jsonl", "mathqa-valid.jsonl", "gsm8k-valid.jsonl"):
        shutil.copy(d / "valid.jsonl", d / name)
    # Runs with completions: right (tuned) and wrong (base), scored and not.
    _with_completion(d / "valid.jsonl", d / "tuned.raw", lambda r: r["meta"]["reference"])
    _with_completion(d / "valid.jsonl", d / "base.raw", lambda r: "inform(name[Halo])")
    for run, raw in (("tuned", "tuned.raw"), ("baseline", "base.raw"), ("base", "base.raw"),
                     ("scored", "tuned.raw")):
        _score("viggo", d / raw, d / f"{run}.jsonl")
    _prep(["gsm8k", "--split", "valid", "--limit", "4"], d / "gsm8k-valid.raw")
    _with_completion(d / "gsm8k-valid.raw", d / "infer.jsonl", lambda r: f"So {r['meta']['answer']}.")
    _prep(["sql", "--source", "spider", "--split", "valid", "--limit", "3"], d / "sql.raw")
    _with_completion(d / "sql.raw", d / "scored-sql.jsonl", lambda r: r["meta"]["reference"])
    (d / "my-sql-create-context.jsonl").write_text("".join(
        json.dumps({"question": f"How many heads of departments are older than {n}?",
                    "context": "CREATE TABLE head (age INTEGER)",
                    "answer": f"SELECT COUNT(*) FROM head WHERE age > {n}"}) + "\n" for n in range(60)))
    (d / "mine.jsonl").write_text("".join(
        json.dumps({"text": t, "label": lab}) + "\n"
        for t, lab in (("great game", "positive"), ("awful game", "negative"), ("fine", "positive"))))
    (d / "data.jsonl").write_text("".join(
        json.dumps({"input": t, "output": lab}) + "\n"
        for t, lab in (("great game", "positive"), ("awful game", "negative"))))
    for raw in d.glob("*.raw"):
        raw.unlink()


# ---------------------------------------------------------------------------------------------
# Tests

EXAMPLES = all_examples()
RUN = [e for e in EXAMPLES if not_run(e) is None]
BLOCKS = list(dict.fromkeys(e.block for e in RUN))


def test_examples_were_found():
    # Guards the extraction itself: each source still yields examples.
    where = {e.where.split(":")[0] for e in EXAMPLES}
    assert {"README.md", "packages/ft-prep/README.md", "packages/ft-train/README.md",
            "ft-prep sql --help", "ft-train --help", "ft-score --help"} <= where, sorted(where)
    assert len(RUN) >= 20, len(RUN)


def test_every_listed_example_exists():
    found = {e.command for e in EXAMPLES} | {f"{e.where.split(':')[0]}: {e.command}" for e in EXAMPLES}
    stale = [c for c in NOT_RUN if c not in found]
    assert not stale, f"NOT_RUN lists examples the docs no longer have: {stale}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.where}: {e.command[:60]}")
def test_example_flags_parse(example, monkeypatch):
    """Every ft-* command of every example parses with its command's own options."""
    if "..." in example.command or not_run(example) == SYNOPSIS:
        return  # elided flags or placeholders: nothing to parse
    monkeypatch.chdir(ROOT)  # where the docs' paths (../shared/data, results/) resolve
    for argv in segments(example.command):
        if argv[0] in CLIS and "--help" not in argv:
            try:
                parse_flags(argv)
            except click.ClickException as exc:
                pytest.fail(f"{example.where}: `{example.command}`: {exc.format_message()}")


class Runner:
    """Runs blocks of examples, three at a time (a block often waits on a pipe or a process start)."""

    def __init__(self, inputs: Path, tiny: Path, env: dict, root: Path):
        self.inputs, self.tiny, self.env, self.root = inputs, tiny, env, root
        self.lock = threading.Lock()
        self.ran: set[str] = set()
        self.prefixes: dict[str, Future] = {}
        self.pool = ThreadPoolExecutor(max_workers=3)

    def submit(self, block: str) -> Future:
        return self.pool.submit(self.run_block, block)

    def sh(self, command: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=self.env,
                              capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)

    def prefix_output(self, prefix: str, cwd: Path) -> tuple[subprocess.CompletedProcess, Path]:
        """Run a generation prefix once (keyed by its text and the files it names), keep its stdout."""
        key = prefix + "".join(hashlib.sha1(p.read_bytes()).hexdigest() for t in tokens(prefix)
                               if (p := cwd / t).is_file())
        with self.lock:
            future, mine = self.prefixes.get(key), False
            if future is None:
                future = self.prefixes[key] = Future()
                mine = True
        if mine:
            saved = self.root / f"prefix-{len(self.prefixes)}.jsonl"
            proc = self.sh(f"{prefix} > {shlex.quote(str(saved))}", cwd)
            future.set_result((proc, saved))
        return future.result()

    def run_block(self, block: str) -> str | None:
        """None, or what failed: the example, how it ran, its exit code and stderr."""
        base = self.root / re.sub(r"[^\w.-]+", "_", block)
        (base / "shared").mkdir(parents=True)
        (base / "shared" / "data").symlink_to(SHARED_DATA, target_is_directory=True)
        cwd = base / "work"
        shutil.copytree(self.inputs, cwd)
        (cwd / "results").symlink_to(ROOT / "results", target_is_directory=True)  # committed summaries
        examples = [e for e in RUN if e.block == block]
        for i, example in enumerate(examples):
            count = example.comment.replace(",", "")
            counted = example.command.rstrip().endswith("wc -l") and count.isdigit()
            command = rewrite(example.command, cwd, self.tiny, counted)
            with self.lock:
                if command in self.ran and (i == len(examples) - 1 or not WRITES.search(command)):
                    continue  # ran already, and nothing later in this block needs its files
                self.ran.add(command)
            start, ran_as = time.monotonic(), command
            split = generation_prefix(command)
            if split:
                proc, saved = self.prefix_output(split[0], cwd)
                if proc.returncode == 0 and "Traceback" not in proc.stderr:
                    ran_as = f"{split[0]} > SAVED; {split[1]} < SAVED"
                    proc = self.sh(f"{split[1]} < {shlex.quote(str(saved))}", cwd)
            else:
                proc = self.sh(command, cwd)
            what = (f"{example.where}: `{example.command}`\n  ran as: {ran_as}\n  exit {proc.returncode} "
                    f"after {time.monotonic() - start:.1f} s\n  stderr: {proc.stderr[-2000:]}")
            if proc.returncode != 0 or "Traceback" in proc.stderr:
                return what
            if counted and proc.stdout.strip() != count:
                return what + f"\n  stdout: {proc.stdout[:200]!r}, the doc says {count}"
        return None


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory, shared_data, tiny_model) -> dict:
    """The selected blocks, started at once on two threads; each test waits for its own."""
    inputs = tmp_path_factory.mktemp("example-inputs")
    build_inputs(inputs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FT_", "OPENAI_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", FT_DATA_DIR=str(SHARED_DATA),
               FT_CACHE=str(tmp_path_factory.mktemp("ft-cache")), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    runner = Runner(inputs, tiny_model, env, tmp_path_factory.mktemp("examples"))
    selected = [item.callspec.params["block"] for item in request.session.items
                if item.originalname == "test_examples_run"]
    futures = {block: runner.submit(block) for block in selected}
    yield futures
    runner.pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("block", BLOCKS)
def test_examples_run(block, runs):
    """The block's examples, in order, in one folder (a later example may use an earlier one's files)."""
    if shutil.which("jq") is None and any(re.search(r"\bjq\b", e.command) for e in RUN if e.block == block):
        pytest.skip("jq is not installed here")  # the docs' pipes use it; it is not a Python package
    failure = runs[block].result()
    assert failure is None, failure
