"""ft-infer as a command: resume, atomic output, errors, laziness, the summary line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ft_common.cli import run
from ft_infer.cli import cli
from infer_support import read_jsonl, viggo_records, write_jsonl

BIN = Path(sys.executable).parent / "ft-infer"


@pytest.fixture
def ft_infer(capsys, monkeypatch):
    """Run ft-infer in this process (torch is imported once), as its console script would."""

    def invoke(*args, stdin: str = "") -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        with pytest.raises(SystemExit) as exit_info:
            run(cli, "ft-infer", [str(a) for a in args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, exit_info.value.code, out.out, out.err)

    return invoke


def test_resume_skips_done_ids_and_appends(ft_infer, varied_model, tmp_path):
    records = viggo_records(6)
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    # An earlier run wrote two records, then died in the middle of the third line.
    done = [{**records[0], "completion": "KEEP-0", "finish_reason": "stop"},
            {**records[2], "completion": "KEEP-2", "finish_reason": "stop"}]
    out.write_text("".join(json.dumps(r) + "\n" for r in done) + '{"id": "viggo/valid/1", "compl')
    proc = ft_infer("-m", varied_model, "--engine", "hf", "--max-new-tokens", "3", src, "-o", out, "--resume")
    assert proc.returncode == 0, proc.stderr
    got = read_jsonl(out.read_text())
    assert [r["id"] for r in got] == [records[i]["id"] for i in (0, 2, 1, 3, 4, 5)]
    assert got[0]["completion"] == "KEEP-0" and got[1]["completion"] == "KEEP-2"  # not generated again
    assert "2 records done" in proc.stderr
    assert "4 records" in proc.stderr.splitlines()[-1]  # the summary counts this run's records
    # Resuming a finished file does nothing.
    again = ft_infer("-m", varied_model, "--engine", "hf", src, "-o", out, "--resume")
    assert again.returncode == 0 and read_jsonl(out.read_text()) == got


def test_output_file_is_written_whole_or_not_at_all(ft_infer, varied_model, tmp_path):
    records = viggo_records(3) + [{"id": "bad/1", "text": "no prompt"}]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    proc = ft_infer("-m", varied_model, "--engine", "hf", "--max-new-tokens", "2", "--window", "2", src, "-o", out)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "ft-infer: error: record bad/1: no 'prompt' or 'messages' to generate from"
    assert not out.exists() and list(tmp_path.glob(".out.jsonl*")) == []


def test_empty_input_never_loads_the_model(tmp_path):
    proc = subprocess.run([str(BIN), "-m", str(tmp_path / "no-such-model"), "--engine", "hf"], input="",
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def test_model_that_fails_to_load_is_one_line(ft_infer, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "vocab_size": "oops"}')
    proc = ft_infer("-m", broken, "--engine", "hf", stdin=json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"ft-infer: error: {broken}: cannot load model")
    assert "Traceback" not in proc.stderr
    missing = ft_infer("-m", tmp_path / "nope", "--engine", "hf", stdin=json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    assert missing.returncode == 2 and "no such model" in missing.stderr


def test_summary_on_stderr_unless_quiet(ft_infer, varied_model):
    stdin = "".join(json.dumps(r) + "\n" for r in viggo_records(2))
    loud = ft_infer("-m", varied_model, "--engine", "hf", "--max-new-tokens", "2", stdin=stdin)
    assert loud.returncode == 0
    assert "ft-infer: 2 records" in loud.stderr and "tokens/s" in loud.stderr
    assert len(read_jsonl(loud.stdout)) == 2  # stdout carries data only
    quiet = ft_infer("-m", varied_model, "--engine", "hf", "--max-new-tokens", "2", "-q", stdin=stdin)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_resume_needs_an_output_file(ft_infer, varied_model):
    proc = ft_infer("-m", varied_model, "--resume", stdin="")
    assert proc.returncode == 2 and "--resume needs -o" in proc.stderr
