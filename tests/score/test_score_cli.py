"""The ft-score CLI: streaming, summaries, errors, compare."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ft_score.cli import cli

BIN = Path(sys.executable).parent / "ft-score"
REF = "inform(name[Halo], rating[good])"


def lines(records):
    return "".join(json.dumps(r) + "\n" for r in records)


def viggo_records():
    return [
        {"id": "v/0", "completion": REF, "meta": {"reference": REF}, "prompt_tokens": 20, "completion_tokens": 10},
        {"id": "v/1", "completion": "inform(rating[good], name[Halo])", "meta": {"reference": REF},
         "prompt_tokens": 20, "completion_tokens": 10},
        {"id": "v/2", "completion": "inform(name[Halo", "finish_reason": "length", "meta": {"reference": REF},
         "prompt_tokens": 20, "completion_tokens": 64, "zz": [1]},
    ]


@pytest.mark.parametrize("sub", ["viggo", "sql", "gsm8k", "mathqa", "generic", "compare"])
def test_help_has_purpose_and_pipe_example(sub):
    result = CliRunner().invoke(cli, [sub, "--help"])
    assert result.exit_code == 0 and " | " in result.output


def test_viggo_stream_and_summary(tmp_path):
    summary = tmp_path / "s.json"
    out = subprocess.run([str(BIN), "viggo", "--summary", str(summary)], input=lines(viggo_records()),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["score"]["correct"] for r in got] == [True, False, False]
    assert got[2]["zz"] == [1] and got[2]["score"]["truncated"] is True
    d = json.loads(summary.read_text())
    assert d["n"] == 3 and d["correct"] == 1 and d["metrics"]["correct_unordered"] == pytest.approx(2 / 3)
    assert d["failures"] == {"wrong_order": 1, "malformed": 1} and d["truncated"] == 1
    assert d["mean_completion_tokens"] == 28.0
    assert "accuracy" in out.stderr and "95% CI" in out.stderr
    quiet = subprocess.run([str(BIN), "viggo", "-q"], input=lines(viggo_records()), capture_output=True, text=True)
    assert quiet.stderr == ""


def test_output_file_and_limit(tmp_path):
    out = tmp_path / "scored.jsonl"
    result = CliRunner().invoke(cli, ["viggo", "-o", str(out), "--limit", "2", "-q"], input=lines(viggo_records()))
    assert result.exit_code == 0 and result.stdout == ""
    assert len(out.read_text().splitlines()) == 2


def test_missing_completion_exits_2_naming_the_record(tmp_path):
    out = tmp_path / "o.jsonl"
    proc = subprocess.run([str(BIN), "viggo", "-o", str(out)], capture_output=True, text=True,
                          input=lines(viggo_records()[:1] + [{"id": "v/9", "meta": {"reference": REF}}]))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("ft-score: error: record v/9")
    assert not out.exists()  # no half-written output
    proc = subprocess.run([str(BIN), "sql"], capture_output=True, text=True,
                          input=lines([{"id": "s/1", "completion": "SELECT 1", "meta": {}}]))
    assert proc.returncode == 2 and "s/1" in proc.stderr and "meta.reference" in proc.stderr


def test_empty_input_every_task(tmp_path):
    for sub in ["viggo", "sql", "gsm8k", "mathqa", "generic"]:
        summary = tmp_path / f"{sub}.json"
        result = CliRunner().invoke(cli, [sub, "--summary", str(summary)], input="")
        assert result.exit_code == 0 and result.stdout == ""
        assert json.loads(summary.read_text())["n"] == 0


def test_compare_cli(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(lines([{"id": str(i), "score": {"correct": i < 9}} for i in range(10)]))
    b.write_text(lines([{"id": str(i), "score": {"correct": i < 2}} for i in range(10)]))
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--json"])
    assert result.exit_code == 0
    got = json.loads(result.stdout)
    assert got["wins"] == 7 and got["losses"] == 0 and got["mcnemar_p"] == pytest.approx(2 / 128)
    table = CliRunner().invoke(cli, ["compare", str(a), str(b)])
    assert "McNemar exact p" in table.stdout and "A wins" in table.stdout
    b.write_text(lines([{"id": "0"}]))
    proc = subprocess.run([str(BIN), "compare", str(a), str(b)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no score.correct" in proc.stderr


def test_sql_cli_with_sqlglot_engine():
    rec = {"id": "s/0", "completion": "SELECT count(*) FROM t", "meta": {
        "reference": "SELECT COUNT(*) FROM t",
        "tables": {"t": {"columns": [["a", "INTEGER"]], "rows": [[1], [2]]}}}}
    for engine in ["sqlite", "sqlglot"]:
        result = CliRunner().invoke(cli, ["sql", "--engine", engine, "-q"], input=lines([rec]))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["score"]["correct"] is True
