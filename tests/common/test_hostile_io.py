"""Hostile input and interruptions, over every command: each ends in one line naming
FILE:LINE (exit 2), leaks no secret, unpickles nothing, and leaves nothing half-done behind.

Payloads are built here from the issue's descriptions (issue 12). Commands run in this
process where that is faithful (torch is imported once) and as real processes where the
point is the process itself (kill -9, the -v traceback of a console script).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai import QuietHandler, read_json, send_json, serve
from ft_common import secrets
from ft_common.atomic import atomic_dir, atomic_write, remove_stale_temps
from ft_common.cli import run
from ft_common.errors import InputError
from ft_common.jsonl import iter_lines_as_records, read_records

BIN = Path(sys.executable).parent
DEEP = b"[" * 100_000  # the payload: RecursionError, exit 1, before
NOT_UTF8 = b'{"id": "x/1", "text": "caf\xe9 \xff"}'  # Latin-1 bytes in a UTF-8 stream
KEY = "sk-hostile-Zq8v3N1x7LwP0aYb4Rt6"


def parse(data: bytes) -> list:
    return list(iter_lines_as_records(io.BytesIO(data), "f.jsonl", line_numbers=True))


def error_of(data: bytes) -> str:
    with pytest.raises(InputError) as info:
        parse(data)
    return str(info.value)


# -- the shared JSONL reader ----------------------------------------------------------------

def test_deep_nesting_is_one_line_naming_the_line():
    assert error_of(b'{"a": 1}\n' + DEEP + b"\n") == "f.jsonl:2: JSON nested too deeply"
    # Deep enough to pass json.loads but not to be written back or walked safely.
    nested = b'{"a": ' + b"[" * 600 + b"]" * 600 + b"}"
    assert error_of(b'{"a": 1}\n\n' + nested + b"\n") == "f.jsonl:3: JSON nested too deeply (more than 500 levels)"
    assert parse(b'{"a": ' + b"[" * 400 + b"]" * 400 + b"}\n")[0][0] == 1


def test_invalid_utf8_names_line_and_column():
    assert error_of(b'{"a": 1}\n' + NOT_UTF8 + b"\n") == "f.jsonl:2: not UTF-8 text (byte 0xe9 at column 27)"
    # A multi-byte character cut off at the end of the file.
    assert error_of(b'{"a": 1}\n{"a": "\xe2\x82') == "f.jsonl:2: not UTF-8 text (byte 0xe2 at column 8)"


def test_invalid_byte_far_into_the_input_names_its_line():
    # Several 64 KiB blocks of valid multi-byte text first: the line count must survive them.
    good = b"".join(b'{"i": %d, "t": "%s"}\n' % (i, "é✓".encode() * 40) for i in range(3000))
    assert len(good) > 4 * (1 << 16)
    assert error_of(good + b'{"ok": 1}\n{"b": "x\xc3"}\n' + good) == \
        "f.jsonl:3002: not UTF-8 text (byte 0xc3 at column 9)"


def test_lone_surrogate_escape_is_refused_but_pairs_are_text():
    pair = json.dumps({"e": "😀"})  # written with ensure_ascii: "\ud83d\ude00"
    assert "\\ud83d" in pair
    assert parse((pair + "\n").encode())[0][1] == {"e": "😀"}
    assert error_of(pair.encode() + b'\n{"e": "\\ud800 alone"}\n') == \
        "f.jsonl:2: a lone UTF-16 surrogate escape (\\udXXX) is not text"
    assert parse(b'{"e": "\\\\ud800 is an escaped backslash"}\n')[0][1]["e"].startswith("\\ud800")
    # The only escape in a stream, cut in two by the reader's 64 KiB blocks.
    pad = b"x" * ((1 << 16) - 2 - len(b'{"pad": "' b'", "e": "'))
    line = b'{"pad": "' + pad + b'", "e": "\\ud800"}\n'
    assert line.index(b"\\ud800") < 1 << 16 < line.index(b"\\ud800") + 6
    assert error_of(line) == "f.jsonl:1: a lone UTF-16 surrogate escape (\\udXXX) is not text"


def test_bom_blank_lines_crlf_and_u2028():
    data = codecs.BOM_UTF8 + b'{"a": 1}\r\n\n  \n{"b": "x\xe2\x80\xa8y"}\n' + codecs.BOM_UTF8 + b'{"c": 3}'
    assert parse(data) == [(1, {"a": 1}), (4, {"b": "x\u2028y"}), (5, {"c": 3})]


def test_bad_json_and_non_objects_keep_their_messages():
    assert error_of(b'{"a": 1}\n{oops\n') == "f.jsonl:2: not valid JSON: '{oops'"
    assert error_of(b'{"a": 1}\n[1, 2]\n') == "f.jsonl:2: expected a JSON object: '[1, 2]'"


def test_digest_and_line_numbers(tmp_path):
    data = codecs.BOM_UTF8 + b'{"a": 1}\n\n{"b": 2}\n'
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    digest = hashlib.sha256()
    assert list(read_records(str(path), line_numbers=True, digest=digest)) == [(1, {"a": 1}), (3, {"b": 2})]
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert list(read_records(str(path))) == [{"a": 1}, {"b": 2}]


def test_compressed_files_read_and_a_broken_one_is_one_line(tmp_path):
    import gzip
    import lzma

    text = b'{"a": 1}\n{"b": 2}\n'
    (tmp_path / "r.jsonl.xz").write_bytes(lzma.compress(text))
    (tmp_path / "r.jsonl.gz").write_bytes(gzip.compress(text))
    for name in ("r.jsonl.xz", "r.jsonl.gz"):
        assert list(read_records(str(tmp_path / name), line_numbers=True)) == [(1, {"a": 1}), (2, {"b": 2})]
    (tmp_path / "cut.jsonl.xz").write_bytes(lzma.compress(text * 50)[:40])  # a truncated download
    with pytest.raises(InputError, match=r"cut\.jsonl\.xz: not a readable compressed file \(Compressed file ended"):
        list(read_records(str(tmp_path / "cut.jsonl.xz")))
    (tmp_path / "bad.jsonl.xz").write_bytes(text)  # not compressed at all
    with pytest.raises(InputError, match="not a readable compressed file"):
        list(read_records(str(tmp_path / "bad.jsonl.xz")))


def test_ft_train_reads_through_the_shared_reader(tmp_path):
    from ft_train.data import read_data_file

    path = tmp_path / "t.jsonl"
    data = codecs.BOM_UTF8 + b'{"prompt": "p", "target": "t"}\n\n{"prompt": "q", "target": "u"}\n'
    path.write_bytes(data)
    got = read_data_file(str(path))
    assert [r["prompt"] for r in got.records] == ["p", "q"]
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    path.write_bytes(b'{"prompt": "p", "target": "t"}\n{"id": "r/2", "prompt": "q"}\n')
    with pytest.raises(InputError, match=r"t.jsonl:2: record r/2: missing key 'target'"):
        read_data_file(str(path))


def test_ft_prep_reads_through_the_shared_reader(tmp_path):
    from ft_prep.sources import read_file

    path = tmp_path / "rows.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + b'\n{"question": "q"}\n' + DEEP + b"\n")
    rows = read_file(path)
    first = next(rows)
    assert (first.index, first.data, first.where) == (0, {"question": "q"}, f"{path}:2")
    with pytest.raises(InputError, match=r"rows.jsonl:3: JSON nested too deeply"):
        next(rows)
    array = tmp_path / "rows.json"
    array.write_bytes(codecs.BOM_UTF8 + b'[{"question": "q"}]')
    assert [r.data for r in read_file(array)] == [{"question": "q"}]
    array.write_bytes(b'[{"question": "q"},\n' + DEEP + b"]")
    with pytest.raises(InputError, match=r"rows.json: JSON nested too deeply"):
        list(read_file(array))


# -- every command, on stdin and on a file --------------------------------------------------

@pytest.fixture
def invoke(capfd, monkeypatch):
    """Run a console script's click command in this process, stdin given as bytes."""

    def call(prog: str, args: list, stdin: bytes = b"") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        command = {"ft-prep": "ft_prep.cli", "ft-score": "ft_score.cli", "ft-infer": "ft_infer.cli",
                   "ft-train": "ft_train.cli"}[prog]
        with pytest.raises(SystemExit) as exit_info:
            run(__import__(command, fromlist=["cli"]).cli, prog, [str(a) for a in args])
        out = capfd.readouterr()
        return exit_info.value.code, out.out, out.err

    return call


def _commands(tiny_model, tmp_path) -> dict:
    """Each command's arguments and a first line it accepts."""
    return {
        "ft-prep": (["generic"], {"input": "hello", "output": "world"}),
        "ft-score": (["viggo"], {"id": "v/0", "completion": "inform(name[Halo])",
                                 "meta": {"reference": "inform(name[Halo])"}}),
        "ft-infer": (["-m", tiny_model, "--engine", "hf", "--max-new-tokens", "1"],
                     {"id": "x/0", "prompt": "Halo is", "stop": ["<END_A>"]}),
        "ft-train": (["-m", tiny_model, "--train", "-", "-o", tmp_path / "run" / "out"],
                     {"id": "t/0", "prompt": "p", "target": "t"}),
    }


@pytest.mark.parametrize("prog", ["ft-prep", "ft-score", "ft-infer", "ft-train"])
@pytest.mark.parametrize("payload, message", [
    (DEEP, "<stdin>:2: JSON nested too deeply"),
    (NOT_UTF8, "<stdin>:2: not UTF-8 text (byte 0xe9 at column 27)"),
    (b'{"id": "x/1", "prompt": "\\udfff"}', "<stdin>:2: a lone UTF-16 surrogate escape (\\udXXX) is not text"),
], ids=["deep", "not-utf8", "lone-surrogate"])
def test_every_command_names_the_stdin_line(invoke, tiny_model, tmp_path, prog, payload, message):
    args, first = _commands(tiny_model, tmp_path)[prog]
    code, _, err = invoke(prog, args, json.dumps(first).encode() + b"\n" + payload + b"\n")
    assert code == 2, err
    assert err.strip().splitlines()[-1] == f"{prog}: error: {message}"
    assert "Traceback" not in err
    if prog == "ft-train":
        assert not (tmp_path / "run").exists()  # no empty OUT_DIR (nor its parent) left behind


@pytest.mark.parametrize("prog", ["ft-prep", "ft-score"])
def test_bom_is_accepted_and_files_name_their_line(invoke, tiny_model, tmp_path, prog):
    args, first = _commands(tiny_model, tmp_path)[prog]
    path = tmp_path / "in.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(first).encode() + b"\n")
    code, out, err = invoke(prog, [*args, path, "-q"])
    assert code == 0, err
    assert len(out.splitlines()) == 1
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(first).encode() + b"\n" + NOT_UTF8 + b"\n")
    code, _, err = invoke(prog, [*args, path, "-o", tmp_path / "out.jsonl"])
    assert code == 2 and err.strip().splitlines()[-1] == \
        f"{prog}: error: {path}:2: not UTF-8 text (byte 0xe9 at column 27)"
    assert not (tmp_path / "out.jsonl").exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_ft_train_keeps_an_existing_out_dir_as_it_was(invoke, tiny_model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    code, _, err = invoke("ft-train", ["-m", tiny_model, "--train", "-", "-o", out], b"{oops\n")
    assert code == 2 and "<stdin>:1: not valid JSON" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_ft_infer_refuses_duplicate_ids(invoke, tiny_model, tmp_path):
    args, first = _commands(tiny_model, tmp_path)["ft-infer"]
    lines = [first, {**first, "id": "x/1"}, {"prompt": "no id"}, first]
    code, out, err = invoke("ft-infer", args, "".join(json.dumps(r) + "\n" for r in lines).encode())
    assert code == 2, err
    assert err.strip().splitlines()[-1] == ("ft-infer: error: <stdin>:4: duplicate id 'x/0' (first on line 1); "
                                            "ft-infer needs unique ids: --resume and ft-score compare join on them")


# -- ft-prep's CSV reader --------------------------------------------------------------------

VIGGO_HEADER = b"mr,ref\n"
VIGGO_ROW = b'"inform(name[Halo], rating[good])","Halo is a good game."\n'


def test_csv_bom_large_fields_and_bad_bytes(invoke, tmp_path):
    path = tmp_path / "v.csv"
    path.write_bytes(codecs.BOM_UTF8 + VIGGO_HEADER + VIGGO_ROW)  # no misleading "missing column 'mr'"
    code, out, err = invoke("ft-prep", ["viggo", "--data", path, "--split", "valid", "-q"])
    assert code == 0, err
    assert json.loads(out)["meta"]["reference"] == "inform(name[Halo], rating[good])"
    long_ref = "Halo. " * 40_000  # 240,000 characters: over csv's default 131,072
    path.write_bytes(VIGGO_HEADER + VIGGO_ROW + f'"inform(name[Halo])","{long_ref}"\n'.encode())
    code, out, err = invoke("ft-prep", ["viggo", "--data", path, "--split", "valid", "-q"])
    assert code == 0, err
    assert len(out.splitlines()) == 2
    path.write_bytes(VIGGO_HEADER + VIGGO_ROW * 2 + VIGGO_ROW.replace(b"good game", b"gr\xe9at game"))
    code, _, err = invoke("ft-prep", ["viggo", "--data", path, "--split", "valid"])
    assert code == 2 and err.strip().splitlines()[-1] == \
        f"ft-prep: error: {path}:4: not UTF-8 text (byte 0xe9 at column 49)"


def test_csv_field_over_the_limit_names_line_and_row(tmp_path, monkeypatch):
    from ft_prep import sources

    monkeypatch.setattr(sources, "CSV_FIELD_LIMIT", 1 << 20)
    saved = csv.field_size_limit(1 << 20)  # as in a fresh process with a 1 MiB limit
    try:
        path = tmp_path / "v.csv"
        path.write_bytes(VIGGO_HEADER + VIGGO_ROW + b'"x","' + b"y" * (2 << 20) + b'"\n')
        with pytest.raises(InputError, match=r"v.csv:3: row 1: a field is larger than 1 MiB"):
            list(sources.read_file(path))
    finally:
        csv.field_size_limit(saved)


# -- secrets ------------------------------------------------------------------------------------

def test_scrub_env_values_argv_patterns(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    monkeypatch.setenv("MY_SERVICE_API_KEY", "svc-key-0987654321")
    monkeypatch.setenv("PAD_TOKEN", "0")  # too short to scrub: it would mask every "0"
    monkeypatch.setattr(sys, "argv", ["ft-x", "--api-key", "argv-secret-1", "--token=argv-secret-2"])
    text = (f"echo {KEY} hf_abcdefghijklmnop svc-key-0987654321 argv-secret-1 argv-secret-2 "
            "Authorization: Bearer abc.def-ghi_jkl sk-otherkey1234567890abcd https://me:pa55w0rd@host/v1 "
            "?api_key=q1w2e3r4 step 0 of 10")
    assert secrets.scrub(text) == ("echo *** *** *** *** *** Authorization: Bearer *** *** https://me:***@host/v1 "
                                   "?api_key=*** step 0 of 10")
    secrets.register("registered-value-42")
    assert secrets.scrub("x registered-value-42 y") == "x *** y"


def test_report_scrubs_the_line_and_the_traceback(monkeypatch, capsys):
    import click

    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    @click.command()
    @click.option("-v", "--verbose", is_flag=True, callback=lambda c, p, v: v and monkeypatch.setenv("FT_VERBOSE", "1"),
                  expose_value=False, is_eager=True)
    def boom():
        try:
            raise ValueError(f"endpoint said: {KEY}")
        except ValueError as exc:
            raise RuntimeError(f"wrapped {KEY}") from exc

    for args in ([], ["-v"]):
        with pytest.raises(SystemExit):
            run(boom, "ft-x", args)
        err = capsys.readouterr().err
        assert KEY not in err and "wrapped ***" in err
        assert ("endpoint said: ***" in err) == bool(args)  # the chained cause, in the traceback


class EchoAuth(QuietHandler):
    """An endpoint that answers 401 quoting the Authorization header, and the key bare."""

    def do_POST(self):
        read_json(self)
        auth = self.headers.get("Authorization", "")
        send_json(self, {"error": {"message": f"bad credentials {auth} (key {auth.removeprefix('Bearer ')})",
                                   "type": "invalid_request_error"}}, status=401)


@pytest.fixture(scope="module")
def echo_url():
    pytest.importorskip("openai")
    with serve(EchoAuth) as url:
        yield url


@pytest.mark.parametrize("verbose", [False, True], ids=["plain", "verbose"])
@pytest.mark.parametrize("command", ["score-gsm8k-llm", "prep-sql-llm"])
def test_key_never_leaks(echo_url, tmp_path, shared_data, command, verbose):
    out = tmp_path / "out.jsonl"
    if command == "score-gsm8k-llm":
        args = ["ft-score", "gsm8k", "--extract", "llm", "--base-url", echo_url, "-m", "judge",
                "-o", out, "--summary", tmp_path / "summary.json"]
        stdin = json.dumps({"id": "g/0", "completion": "so 72 in all", "meta": {"answer": "72"}}) + "\n"
    else:
        args = ["ft-prep", "sql", "--data", shared_data, "--source", "wikisql", "--limit", "2",
                "--tables", "llm", "--base-url", echo_url, "--model", "m", "-o", out]
        stdin = ""
    env = {**os.environ, "OPENAI_API_KEY": KEY, "FT_VERBOSE": "1" if verbose else ""}
    proc = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], input=stdin, capture_output=True,
                          text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "401" in proc.stderr.strip().splitlines()[-1] and "***" in proc.stderr
    assert ("Traceback" in proc.stderr) == verbose
    assert KEY not in proc.stdout and KEY not in proc.stderr
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or KEY.encode() not in path.read_bytes(), path


# -- training state: no unpickling --------------------------------------------------------------

class RunsCode:
    """Unpickling this creates a file: what a crafted state.pt would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_run(tmp_path: Path, zip_format: bool) -> tuple[Path, Path]:
    import torch

    out, marker = tmp_path / "run", tmp_path / "PWNED"
    (out / "state" / "step-5").mkdir(parents=True)
    (out / "state" / "latest.json").write_text(json.dumps({"tag": "step-5", "step": 5, "epoch": 0, "batch": 5}))
    state = {"model": {}, "extra": {"step": 5, "rng": [RunsCode(marker)]}}
    target = out / "state" / "step-5" / "state.pt"
    if zip_format:
        torch.save(state, target)
    else:
        target.write_bytes(pickle.dumps(state))
    return out, marker


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-save", "bare-pickle"])
def test_crafted_state_is_refused_without_running(invoke, tiny_model, tmp_path, zip_format):
    out, marker = _crafted_run(tmp_path, zip_format)
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"prompt": "p", "target": "t"}) + "\n")
    code, _, err = invoke("ft-train", ["-m", tiny_model, "--train", data, "-o", out, "--resume"])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ft-train: error: {out / 'state' / 'step-5' / 'state.pt'}: ")
    assert ("it would import posix.system" in lines[0]) == zip_format
    assert not marker.exists()


def test_load_torch_state_refuses_and_state_index_is_checked(tmp_path):
    from ft_train import checkpoint

    out, marker = _crafted_run(tmp_path, zip_format=True)
    with pytest.raises(InputError, match="refused to load: it would import posix.system"):
        checkpoint.load_torch_state(out / "state" / "step-5" / "state.pt")
    assert not marker.exists()
    (out / "state" / "latest.json").write_text(json.dumps({"tag": "../../elsewhere", "step": 5, "epoch": 0,
                                                           "batch": 5}))
    with pytest.raises(InputError, match="not a state index ft-train wrote"):
        checkpoint.latest_state(out)


def test_rng_states_round_trip_as_plain_data(tmp_path):
    import numpy
    import torch
    from ft_train import checkpoint

    random.seed(1)
    numpy.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gauss value in Python's state
    saved = checkpoint.rng_state()
    torch.save({"rng": [saved]}, tmp_path / "s.pt")
    expected = (random.random(), float(numpy.random.rand()), float(torch.rand(1)))
    random.seed(9)
    numpy.random.seed(9)
    torch.manual_seed(9)
    checkpoint.set_rng_state(checkpoint.load_torch_state(tmp_path / "s.pt")["rng"][0])
    assert (random.random(), float(numpy.random.rand()), float(torch.rand(1))) == expected
    torch.manual_seed(3)
    bare = torch.get_rng_state()  # what earlier runs saved: a bare torch state still loads
    expected_torch = float(torch.rand(1))
    checkpoint.set_rng_state(bare)
    assert float(torch.rand(1)) == expected_torch


# -- interrupted runs: stale temporary files ----------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temps_of_dead_writers_are_removed(tmp_path):
    from ft_common import atomic

    target = tmp_path / "out.jsonl"
    mine = f".out.jsonl.ft-{atomic._HOST}"
    dead_file = tmp_path / f"{mine}-{_dead_pid()}-abc123_x.tmp"
    dead_dir = tmp_path / f"{mine}-{_dead_pid()}-zz9.tmp"
    live = tmp_path / f"{mine}-{os.getppid()}-live1.tmp"  # our parent runs: a writer still at work
    other_host = tmp_path / f".out.jsonl.ft-elsewhere-{_dead_pid()}-q1.tmp"
    other_target = tmp_path / f".other.jsonl.ft-{atomic._HOST}-{_dead_pid()}-q2.tmp"
    not_ours = tmp_path / ".out.jsonl.tmp"
    for p in (dead_file, live, other_host, other_target, not_ours):
        p.write_text("x")
    dead_dir.mkdir()
    (dead_dir / "model.safetensors").write_text("half")
    with atomic_write(target) as fh:
        fh.write("whole\n")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in (target, live, other_host, other_target, not_ours))
    assert remove_stale_temps(target) == []
    ckpt_tmp = tmp_path / f".ckpt.ft-{atomic._HOST}-{_dead_pid()}-d1.tmp"
    ckpt_tmp.mkdir()
    with atomic_dir(tmp_path / "ckpt") as d:
        (d / "a").write_text("1")
    assert not ckpt_tmp.exists() and (tmp_path / "ckpt" / "a").read_text() == "1"


def test_kill_9_then_rerun_leaves_no_temp(tmp_path):
    out = tmp_path / "scored.jsonl"
    record = json.dumps({"id": "v/0", "completion": "inform(name[X])", "meta": {"reference": "inform(name[X])"}})
    proc = subprocess.Popen([str(BIN / "ft-score"), "viggo", "-o", str(out), "-q"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        proc.stdin.write((record + "\n").encode())
        proc.stdin.flush()  # stdin stays open: ft-score waits for more, its temp file open
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".scored.jsonl.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stale = list(tmp_path.glob(".scored.jsonl.*.tmp"))
    assert len(stale) == 1 and f"-{proc.pid}-" in stale[0].name and not out.exists()
    again = subprocess.run([str(BIN / "ft-score"), "viggo", "-o", str(out), "-q"], input=record + "\n",
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scored.jsonl"]
