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
    many = (json.dumps(cmd.record) + "\n") * 20000
    proc = subprocess.run(
        f"{BIN / name} {' '.join(cmd.args)} | head -1",
        shell=True, input=many, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr, proc.stderr
