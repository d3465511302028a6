"""The contract every ft command keeps (csvkit-style shared checks).

--help works and shows a pipe example; empty input gives empty output and
exit 0; a malformed JSONL line exits 2 naming its line; unknown record keys
pass through untouched; `cmd | head -1` ends without a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@dataclass
class Cmd:
    name: str
    args: list[str]
    record: dict | None = None  # a valid input record (None: the command does not stream records)
    reads_stdin: bool = True
    env: dict = field(default_factory=dict)


def commands(tiny_model: Path) -> list[Cmd]:
    viggo_scored = {
        "id": "viggo/valid/0", "task": "viggo",
        "completion": "inform(name[Halo], rating[good])",
        "meta": {"reference": "inform(name[Halo], rating[good])"},
    }
    return [
        Cmd("ft-prep", ["generic"], {"input": "hello", "output": "world"}),
        Cmd("ft-infer", ["-m", str(tiny_model), "--engine", "hf", "--max-new-tokens", "3"],
            {"id": "x/0", "prompt": "Halo is a", "stop": ["<END_A>"]}),
        Cmd("ft-score", ["viggo"], viggo_scored),
        Cmd("ft-train", ["-m", str(tiny_model), "--train", "-", "-o", "unused-out"], None),
    ]


@pytest.fixture(scope="module")
def cmds(tiny_model):
    return {c.name: c for c in commands(tiny_model)}


NAMES = ["ft-prep", "ft-infer", "ft-score", "ft-train"]


def invoke(cmd: Cmd, stdin: str, extra: list[str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **cmd.env}
    return subprocess.run(
        [str(BIN / cmd.name), *cmd.args, *(extra or [])],
        input=stdin, capture_output=True, text=True, env=env, timeout=300, cwd=cwd,
    )


@pytest.mark.parametrize("name", NAMES)
def test_help_has_purpose_and_pipe_example(name):
    out = subprocess.run([str(BIN / name), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout
    assert " | " in out.stdout, "--help should show a pipe example"


@pytest.mark.parametrize("name", ["ft-prep", "ft-infer", "ft-score"])
def test_empty_input_gives_empty_output(cmds, name, tmp_path):
    out = invoke(cmds[name], "", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize("name", NAMES)
def test_malformed_line_exits_2_naming_the_line(cmds, name, tmp_path):
    cmd = cmds[name]
    first = json.dumps(cmd.record or {"id": "a/0", "prompt": "p", "target": "t"})
    out = invoke(cmd, first + "\nnot json\n", cwd=tmp_path)
    assert out.returncode == 2, (out.returncode, out.stderr)
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{name}: error:"), out.stderr
    assert ":2:" in last, last
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("name", ["ft-prep", "ft-infer", "ft-score"])
def test_unknown_keys_pass_through(cmds, name, tmp_path):
    cmd = cmds[name]
    extra = {"zz_user_key": {"nested": [1, "two", None]}, "zz_flag": True}
    out = invoke(cmd, json.dumps({**cmd.record, **extra}) + "\n", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    got = json.loads(lines[0])
    for key, value in extra.items():
        assert got[key] == value


@pytest.mark.parametrize("name", ["ft-prep", "ft-score"])
def test_closed_pipe_ends_quietly(cmds, name, tmp_path):
    cmd = cmds[name]
    # `cmd | head -1` without the shell: a shell pipeline's status is head's, not the command's.
    # The output (2 MB) is far more than a pipe holds, so the command is still writing when
    # the reader closes its end.
    source = tmp_path / "in.jsonl"
    source.write_text((json.dumps(cmd.record) + "\n") * 20000)
    with open(source) as stdin, subprocess.Popen([str(BIN / name), *cmd.args], stdin=stdin,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                 cwd=tmp_path) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()  # what head does after its line
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=300)
    assert "id" in json.loads(first)
    assert code == 0, (code, err)
    assert "Traceback" not in err and "error" not in err.lower(), err


# -- usage errors: one line over every command and subcommand ------------------------------

def _command_paths() -> list[tuple[str, tuple[str, ...]]]:
    """(console script, subcommand path) for every command of every ft tool, walked from click."""
    import click
    from ft_infer.cli import cli as infer
    from ft_prep.cli import cli as prep
    from ft_score.cli import cli as score
    from ft_train.cli import cli as train

    paths = []

    def walk(prog, command, path):
        paths.append((prog, path))
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(prog, sub, (*path, name))

    for prog, command in (("ft-prep", prep), ("ft-infer", infer), ("ft-score", score), ("ft-train", train)):
        walk(prog, command, ())
    return paths


def _cli(prog: str):
    import importlib

    return importlib.import_module(f"ft_{prog.removeprefix('ft-')}.cli").cli


def _run_in_process(prog: str, args: list[str], capsys) -> tuple[int, str, str]:
    from ft_common.cli import run

    with pytest.raises(SystemExit) as exc:
        run(_cli(prog), prog, args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


PATHS = _command_paths()


@pytest.mark.parametrize("prog, path", PATHS, ids=[" ".join((p, *s)) for p, s in PATHS])
def test_usage_errors_are_one_line_exit_2(prog, path, capsys):
    """click's three lines (Usage / Try / Error) become one `ft-X: error: ...` line; --help still works."""
    code, out, err = _run_in_process(prog, [*path, "--no-such-flag"], capsys)
    assert code == 2, err
    assert out == ""
    name = " ".join((prog, *path))
    assert err.splitlines() == [f"{prog}: error: no such option '--no-such-flag' (see '{name} --help')"]

    code, out, err = _run_in_process(prog, [*path, "--help"], capsys)
    assert code == 0 and out.startswith(f"Usage: {name} ") and err == ""


@pytest.mark.parametrize("prog, args, message", [
    ("ft-prep", [], "missing command: one of "),
    ("ft-score", [], "missing command: one of "),
    ("ft-prep", ["viggo", "--split", "nope"], "invalid value for '--split': 'nope' is not one of"),
    ("ft-prep", ["viggo", "stray"], "got unexpected extra argument (stray)"),
    ("ft-train", ["--train", "t.jsonl"], "missing option '-m' / '--model'"),
    ("ft-infer", ["--limit", "-1"], "invalid value for '--limit'"),
])
def test_other_usage_errors_are_one_line(prog, args, message, capsys):
    code, out, err = _run_in_process(prog, args, capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: {message}"), err


@pytest.mark.parametrize("name", NAMES)
def test_console_script_usage_error_is_one_line(name):
    """The real entry points, not only run() in-process."""
    out = subprocess.run([str(BIN / name), "--no-such-flag"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"{name}: error: no such option '--no-such-flag' (see '{name} --help')"]


@pytest.mark.parametrize("prog, path", [("ft-infer", ()), ("ft-train", ()), ("ft-prep", ("sql",)),
                                        ("ft-score", ("gsm8k",))])
def test_model_flag_is_dash_m_everywhere(prog, path):
    """One flag vocabulary: every command that takes a model takes -m/--model, with no
    environment variable (one exported for a pipeline would give each command the same model)."""
    import click

    command = _cli(prog)
    for name in path:
        command = command.commands[name]
    options = {o.name: o for o in command.params if isinstance(o, click.Option)}
    model = next((o for o in options.values() if "--model" in o.opts), None)
    assert model is not None, f"{prog} {' '.join(path)} has no --model"
    assert "-m" in model.opts, model.opts
    assert not model.envvar
