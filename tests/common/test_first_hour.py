"""Issue 15, a new user's first hour, on the command line: each observation, as a test.

1. A hub id with no hub fails in seconds with one line naming the local alternative; a cached
   copy is used without the network.
3. Environment variables that would harm a whole pipeline when exported are gone.
4. Third-party warnings stay behind -v; ft-infer's hf engine shows progress inside a batch, on a
   terminal only.
(2, one-line usage errors over every command, is in tests/contract.)
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ft_common import hub

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_hub_env(tmp_path: Path, **extra: str) -> dict:
    """The hub at a closed local port, an empty Hugging Face cache, and no offline switch."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS and not k.startswith("FT_")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HOME=str(tmp_path / "hf-home"), **extra)
    return env


def ft(args: list[str], env: dict, stdin: str = "", cwd=None) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    out = subprocess.run([str(BIN / args[0]), *args[1:]], input=stdin, capture_output=True, text=True,
                         env=env, timeout=120, cwd=cwd)
    return out, time.monotonic() - start


# -- 1. the hub ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, repo, alternative", [
    (["ft-prep", "viggo", "--split", "train"], "GEM/viggo", "--data DIR (or FT_DATA_DIR)"),
    (["ft-prep", "sql"], "b-mc2/sql-create-context", "--data DIR (or FT_DATA_DIR)"),
    (["ft-infer", "-m", "some/hub-id"], "some/hub-id", "a local model folder or a .gguf file"),
])
def test_unreachable_hub_fails_fast_with_one_line(tmp_path, args, repo, alternative):
    record = json.dumps({"id": "x/0", "prompt": "Halo is", "stop": ["<END_A>"]}) + "\n"
    out, seconds = ft(args, no_hub_env(tmp_path), stdin=record)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1, out.stderr
    assert seconds < 5, f"{seconds:.1f}s"
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"{args[0]}: error: {repo}: cannot reach the Hugging Face hub at http://127.0.0.1:")
    assert "connection refused" in lines[0] and alternative in lines[0]
    assert out.stdout == ""


def test_ft_train_with_a_hub_id_fails_fast(tmp_path):
    train = tmp_path / "t.jsonl"
    train.write_text(json.dumps({"id": "t/0", "prompt": "<START_Q>a<END_Q><START_A>", "target": "b<END_A>",
                                 "special_tokens": ["<START_Q>", "<END_Q>", "<START_A>", "<END_A>"]}) + "\n")
    out, seconds = ft(["ft-train", "-m", "HuggingFaceTB/SmolLM2-135M", "--train", str(train), "--valid", str(train),
                       "-o", str(tmp_path / "run")], no_hub_env(tmp_path))
    assert out.returncode == 1 and seconds < 5, (seconds, out.stderr)
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "HuggingFaceTB/SmolLM2-135M: cannot reach the Hugging Face hub" in out.stderr


def test_hub_offline_variable_skips_the_probe(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("probed the network although HF_HUB_OFFLINE is set")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert hub.why_not("model") == "HF_HUB_OFFLINE is set"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")  # datasets reads its own variable first
    monkeypatch.setattr(hub, "unreachable", lambda: None)
    assert hub.why_not("dataset") is None


def test_probe_honours_endpoint_and_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}/")
        assert hub.unreachable() is None
        # A name that cannot resolve is still reachable through a proxy that answers.
        monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
        assert "cannot resolve hub.invalid" in hub.unreachable()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        assert hub.unreachable() is None
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert hub.unreachable().endswith("(connection refused)")


def test_cached_model_is_used_when_the_hub_is_away(tmp_path, tiny_model):
    """The hub path stays real: a model the cache holds loads from its snapshot, no network."""
    repo = tmp_path / "hf-home" / "hub" / "models--ft-test--tiny"
    shutil.copytree(tiny_model, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    record = json.dumps({"id": "x/0", "prompt": "Halo is", "stop": ["<END_A>"]}) + "\n"
    out, _ = ft(["ft-infer", "-m", "ft-test/tiny", "--engine", "hf", "--max-new-tokens", "2"],
                no_hub_env(tmp_path), stdin=record)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["completion_tokens"] == 2


def test_cached_dataset_is_used_when_the_hub_is_away(tmp_path, shared_data):
    """datasets' offline mode on a cache it wrote itself (built here from the local CSV, under the
    hub id's name), reached through ft-prep's hub branch with the hub at a closed port."""
    env = no_hub_env(tmp_path)
    build = ("import datasets, sys; datasets.load_dataset('csv', data_files={'validation': sys.argv[1]}, "
             "split='validation')")
    subprocess.run([sys.executable, "-c", build, str(shared_data / "viggo" / "valid.csv")], env=env,
                   check=True, capture_output=True, timeout=120)
    built = next((tmp_path / "hf-home" / "datasets" / "csv").glob("default-*/0.0.0/*[0-9a-f]"))
    cached = tmp_path / "hf-home" / "datasets" / "GEM___viggo" / "default" / "0.0.0" / built.name
    cached.mkdir(parents=True)
    (built / "csv-validation.arrow").rename(cached / "viggo-validation.arrow")
    info = (built / "dataset_info.json").read_text().replace('"dataset_name": "csv"', '"dataset_name": "viggo"')
    (cached / "dataset_info.json").write_text(info)

    out, _ = ft(["ft-prep", "viggo", "--split", "valid", "--limit", "2"], env)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["id"] for line in out.stdout.splitlines()] == ["viggo/valid/0", "viggo/valid/1"]
    # datasets' "Using the latest cached version ..." lines stay behind -v.
    assert out.stderr.strip().splitlines() == ["ft-prep viggo: 2 records"]


# -- 3. environment variables ----------------------------------------------------------------

def test_exported_ft_output_no_longer_captures_a_pipeline(tmp_path, shared_data):
    """The issue's pipe: `export FT_OUTPUT=o.jsonl; ft-prep viggo ... | ft-score viggo` scored 0 records."""
    env = {**os.environ, "FT_OUTPUT": "o.jsonl"}
    answer = "import json,sys\nfor l in sys.stdin: r=json.loads(l); r['completion']=r['meta']['reference']; print(json.dumps(r))"
    pipe = (f"{BIN / 'ft-prep'} viggo --data {shared_data} --split valid --limit 5 "
            f"| {sys.executable} -c \"{answer}\" | {BIN / 'ft-score'} viggo")
    out = subprocess.run(pipe, shell=True, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 5
    assert not (tmp_path / "o.jsonl").exists()


def test_removed_variables_have_no_effect(tmp_path, tiny_model):
    record = json.dumps({"id": "x/0", "prompt": "Halo is", "stop": ["<END_A>"]}) + "\n"
    base = {k: v for k, v in os.environ.items() if not k.startswith("FT_")}
    # FT_MODEL no longer supplies -m; FT_ENGINE no longer picks an engine.
    out, _ = ft(["ft-infer"], {**base, "FT_MODEL": str(tiny_model)}, stdin=record)
    assert out.returncode == 2 and out.stderr.strip() == "ft-infer: error: -m/--model is required", out.stderr
    out, _ = ft(["ft-infer", "-m", str(tiny_model), "--max-new-tokens", "1", "-q"],
                {**base, "FT_ENGINE": "openai"}, stdin=record)
    assert out.returncode == 0 and json.loads(out.stdout)["completion_tokens"] == 1, out.stderr
    # FT_OUTPUT no longer supplies ft-train's -o.
    out, _ = ft(["ft-train", "-m", str(tiny_model), "--train", "-"], {**base, "FT_OUTPUT": str(tmp_path / "x")})
    assert out.returncode == 2 and "missing option '-o' / '--output'" in out.stderr
    assert not (tmp_path / "x").exists()


def _declared_variables() -> set[str]:
    """Every environment variable an ft command reads: click envvars, and the library's own reads."""
    import click
    from ft_infer.cli import cli as infer
    from ft_prep.cli import cli as prep
    from ft_score.cli import cli as score
    from ft_train.cli import cli as train

    names: set[str] = set()

    def walk(command):
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                names.update([param.envvar] if isinstance(param.envvar, str) else param.envvar)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    for command in (prep, infer, score, train):
        walk(command)
    for src in (ROOT / "packages").glob("*/src/**/*.py"):
        names.update(re.findall(r"environ(?:\.get)?\(?\[?[\"'](FT_[A-Z_]+)", src.read_text()))
    return names


def test_readme_table_lists_every_variable_the_code_reads():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Conventions"):]
    section = section[:section.index("\n## ", 1)]
    documented = set(re.findall(r"^\| `([A-Z][A-Z_]+)` \|", section, flags=re.M))
    assert documented == _declared_variables() | {"OPENAI_API_KEY", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HOME"}
    assert not {"FT_OUTPUT", "FT_MODEL", "FT_ENGINE"} & _declared_variables()


# -- 4. third-party noise and progress -------------------------------------------------------

def test_ft_infer_stderr_holds_only_ft_lines(tiny_model, tmp_path):
    record = json.dumps({"id": "x/0", "prompt": "Halo is", "stop": ["<END_A>"]}) + "\n"
    args = ["ft-infer", "-m", str(tiny_model), "--engine", "hf", "--max-new-tokens", "3"]
    out, _ = ft(args, dict(os.environ), stdin=record)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("ft-infer: hf engine:") and lines[1].startswith("ft-infer: 1 records")
    out, _ = ft([*args, "-q"], dict(os.environ), stdin=record)
    assert out.returncode == 0 and out.stderr == ""


def test_sqlglot_warnings_only_with_verbose(tmp_path):
    """sqlglot logs "'SHOW ...' contains unsupported syntax. Falling back to parsing as a 'Command'"
    (parser._warn_unsupported) through its handler-less "sqlglot" logger, which Python's last-resort
    handler prints: ft-prep sql parses every reference, ft-score sql every completion."""
    rows = [{"question": "q?", "context": "CREATE TABLE t (a INT)", "answer": "SHOW TABLES x"},
            {"question": "q2?", "context": "CREATE TABLE t (a INT)", "answer": "SELECT a FROM t"}]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prep = ["ft-prep", "sql", "--source", str(source), "--split", "train"]
    out, _ = ft(prep, dict(os.environ))
    assert out.returncode == 0 and "unsupported syntax" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == ["ft-prep sql: 1 records (sql_unparsable=1, tables_none=1)"]
    out, _ = ft([*prep, "-v"], dict(os.environ))
    assert "'SHOW TABLES x' contains unsupported syntax" in out.stderr

    scored = {"id": "sql/0", "task": "sql", "completion": "SHOW TABLES x",
              "meta": {"reference": "SELECT a FROM t", "context": "CREATE TABLE t (a INT)",
                       "tables": {"t": {"columns": [["a", "INT"]], "rows": [[1]]}}}}
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(scored) + "\n")
    for engine in ("sqlite", "sqlglot"):
        out, _ = ft(["ft-score", "sql", "--engine", engine, str(path), "-q"], dict(os.environ))
        assert out.returncode == 0 and out.stderr == "", out.stderr


def _stderr_on_a_terminal(args: list[str], stdin: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout stays a pipe); return (code, stdout, stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    proc.stdin.write(stdin.encode())
    proc.stdin.close()
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    stdout = proc.stdout.read().decode()
    return proc.wait(timeout=120), stdout, seen.decode()


def test_hf_progress_inside_a_batch_on_a_terminal(tiny_model):
    """One batch (the Quickstart's 20 records on a CPU) used to show nothing until its end."""
    records = "".join(json.dumps({"id": f"x/{i}", "prompt": f"Halo {i} is", "stop": ["<END_A>"]}) + "\n"
                      for i in range(3))
    args = ["ft-infer", "-m", str(tiny_model), "--engine", "hf", "--max-new-tokens", "40"]
    code, stdout, stderr = _stderr_on_a_terminal(args, records)
    assert code == 0 and len(stdout.splitlines()) == 3
    assert re.search(r"\rft-infer: 0 batch 1/1, token \d+/40", stderr), stderr
    code, stdout, stderr = _stderr_on_a_terminal([*args, "-q"], records)
    assert code == 0 and len(stdout.splitlines()) == 3 and stderr == ""
