"""ft-score report: the Markdown tables (exact) and the PNG chart from scored runs and summaries."""

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from ft_common.cli import run
from ft_score.cli import cli
from ft_score.compare import compare, mcnemar_exact
from ft_score.report import _short_model, load_runs, markdown, report, run_name

BIN = Path(sys.executable).parent / "ft-score"
HEADER = ("| model | method | accuracy | 95% CI | n | prompt tokens/request | training |\n"
          "|---|---|---:|---|---:|---:|---|\n")


@pytest.fixture
def runs(tmp_path):
    """A fine-tune's scored run (with its manifest beside it), a few-shot summary, and a SQL summary."""
    records = [{"id": f"viggo/valid/{i}", "task": "viggo", "format": "tokens", "model": "/runs/ft-x/best",
                "prompt_tokens": 30 + i, "completion": "x", "score": {"correct": i != 2}} for i in range(4)]
    scored = tmp_path / "ft-x-viggo.scored.jsonl"
    scored.write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "ft-x.ft-train.json").write_text(json.dumps({
        "epochs": [{"epoch": 1, "time": 100.0}, {"epoch": 2, "time": 160.0}],
        "best": {"epoch": 2, "val_ppl": 1.23456}}))
    (tmp_path / "ft-x.metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in [
        {"step": 1, "time": 40.0, "tokens_per_s": 1000.0}, {"step": 2, "time": 50.0, "tokens_per_s": 6000.0},
        {"step": 3, "time": 60.0, "tokens_per_s": 2000.0}]))
    fewshot = tmp_path / "fewshot-y.summary.json"
    fewshot.write_text(json.dumps({"task": "viggo", "n": 10, "correct": 1, "accuracy": 0.1,
                                   "ci95": [0.0179, 0.4042], "mean_prompt_tokens": 812.4}))
    sql = tmp_path / "fewshot-y-spider.summary.json"
    sql.write_text(json.dumps({"task": "sql", "n": 0, "correct": 0, "accuracy": None, "ci95": None,
                               "mean_prompt_tokens": None}))
    return [str(scored), str(fewshot), str(sql)]


EXPECTED = (
    "### viggo\n\n" + HEADER +
    "| ft-x/best | fine-tuned | 75.0% | 30.1-95.4% | 4 | 32 | 2 ep, best 2 (val ppl 1.235), ~120 s, 2k tok/s |\n"
    "| Qwen 1.5B | 9-shot prompt | 10.0% | 1.8-40.4% | 10 | 812 | - |\n"
    "\n### sql\n\n" + HEADER +
    "| fewshot-y-spider | - | - | - | 0 | - | - |\n"
)


def test_table_is_exact(runs):
    result = CliRunner().invoke(cli, ["report", *runs, "--label", "fewshot-y=Qwen 1.5B|9-shot prompt"])
    assert result.exit_code == 0, result.output
    assert result.stdout == EXPECTED


def _scored(path: Path, ids, correct, fmt: str) -> str:
    path.write_text("".join(json.dumps({"id": f"viggo/valid/{i}", "task": "viggo", "format": fmt,
                                        "score": {"correct": i in correct}}) + "\n" for i in ids))
    return str(path)


@pytest.fixture
def paired(tmp_path):
    """Two scored viggo runs beside `runs`: a prompted baseline, right on ids 2, 8, 9 of 0-9 and 30, and a
    tuned run, right on 0-6, 8, 9 of 0-9 and 20. On their 10 shared ids the tuned run wins 6 (0, 1, 3-6)
    and loses none; against ft-x-viggo (ids 0-3, right on 0, 1, 3) the baseline loses 3 and wins 1 (id 2)."""
    base = _scored(tmp_path / "prompted-viggo.scored.jsonl", [*range(10), 30], {2, 8, 9}, "fewshot")
    tuned = _scored(tmp_path / "tuned-viggo.scored.jsonl", [*range(10), 20], {*range(7), 8, 9}, "tokens")
    return tuned, base


def test_against_columns_are_exact(runs, paired):
    tuned, base = paired
    # McNemar by hand: 6 wins, 0 losses -> 2 * 0.5**6 = 0.03125; 3 wins, 1 loss -> 2 * (1 + 4) / 16 = 0.625;
    # 0 wins, 1 loss -> 1. compare() agrees.
    assert mcnemar_exact(6, 0) == pytest.approx(0.03125) and mcnemar_exact(3, 1) == pytest.approx(0.625)
    loaded = load_runs([tuned, base])
    assert compare(loaded[0].verdicts, loaded[1].verdicts)["mcnemar_p"] == pytest.approx(0.03125)
    result = CliRunner().invoke(cli, ["report", *runs, tuned, base, "--label", "fewshot-y=Qwen 1.5B|9-shot prompt",
                                      "--label", "prompted-viggo=SmolLM2", "--against", "prompted-viggo",
                                      "--against", tuned])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "### viggo\n\n| model | method | accuracy | 95% CI | n | prompt tokens/request | training "
        "| vs SmolLM2, few-shot prompt | vs tuned-viggo |\n|---|---|---:|---|---:|---:|---|---|---|\n"
        "| ft-x/best | fine-tuned | 75.0% | 30.1-95.4% | 4 | 32 | 2 ep, best 2 (val ppl 1.235), ~120 s, 2k tok/s "
        "| +50.0, p = 0.62 | -25.0, p = 1 |\n"
        "| Qwen 1.5B | 9-shot prompt | 10.0% | 1.8-40.4% | 10 | 812 | - | - | - |\n"  # a summary: no verdicts
        "| tuned-viggo | fine-tuned | 81.8% | 52.3-94.9% | 11 | - | - | +60.0, p = 0.031 (10 shared) | - |\n"
        "| SmolLM2 | few-shot prompt | 27.3% | 9.8-56.6% | 11 | - | - | - | -60.0, p = 0.031 (10 shared) |\n"
        "\n### sql\n\n" + HEADER +  # another task: no column
        "| fewshot-y-spider | - | - | - | 0 | - | - |\n"
    )


def test_pairing_needs_unique_shared_ids(paired, tmp_path):
    tuned, base = paired
    no_ids = tmp_path / "noids.jsonl"
    no_ids.write_text(json.dumps({"task": "viggo", "score": {"correct": True}}) + "\n")
    twice = _scored(tmp_path / "twice.jsonl", [1, 1], {1}, "tokens")
    other = _scored(tmp_path / "other.jsonl", [50, 51], {50}, "tokens")
    out = tmp_path / "t.md"
    report([tuned, str(no_ids), twice, other, base], against=[base], output=str(out), quiet=True)
    rows = [line.rsplit("|", 2)[-2].strip() for line in out.read_text().splitlines()[4:]]
    assert rows == ["+60.0, p = 0.031 (10 shared)", "-", "-", "-", "-"]  # the table still has every run
    report([str(no_ids), base], against=[str(no_ids)], output=str(out), quiet=True)
    assert [line.rsplit("|", 2)[-2] for line in out.read_text().splitlines()[4:]] == [" - ", " - "]


def test_against_stdin_is_read_once(paired):
    tuned, base = paired
    proc = subprocess.run([str(BIN), "report", base, "-", "--against", "-"], input=Path(tuned).read_text(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2].endswith("| vs stdin |")
    assert proc.stdout.splitlines()[4].endswith("| -60.0, p = 0.031 (10 shared) |")


def test_names_labels_by_path_and_file_output(runs, tmp_path):
    assert run_name("a/ft-x-viggo.scored.jsonl") == "ft-x-viggo" and run_name("b.summary.json") == "b"
    assert run_name("-") == "stdin"
    assert _short_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct"
    assert _short_model("/runs/a/checkpoints/epoch-3") == "checkpoints/epoch-3" and _short_model("m.gguf") == "m.gguf"
    loaded = load_runs(runs, [f"{runs[0]}=SmolLM2|fine-tuned (ft-train)"])
    assert loaded[0].model == "SmolLM2" and loaded[0].method == "fine-tuned (ft-train)"
    assert [r.fine_tuned for r in loaded] == [True, False, False]
    out = tmp_path / "t.md"
    result = CliRunner().invoke(cli, ["report", runs[1], "-o", str(out)])
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_text() == markdown(load_runs([runs[1]])) and "| fewshot-y | - | 10.0% |" in out.read_text()


def png_chunks(data: bytes) -> dict:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body, crc = data[pos + 8:pos + 8 + length], data[pos + 8 + length:pos + 12 + length]
        assert struct.unpack(">I", crc)[0] == zlib.crc32(kind + body)  # every chunk intact
        chunks.setdefault(kind, []).append(body)
        pos += 12 + length
    return chunks


def test_chart_is_a_valid_png_with_both_colours(runs, tmp_path):
    chart = tmp_path / "acc.png"
    result = CliRunner().invoke(cli, ["report", *runs, "--chart", str(chart), "--title", "t"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("### viggo")
    chunks = png_chunks(chart.read_bytes())
    width, height = struct.unpack(">II", chunks[b"IHDR"][0][:8])
    assert width > 300 and height > 300 and b"IEND" in chunks
    import matplotlib.pyplot as plt

    pixels = (plt.imread(chart)[:, :, :3] * 255).round().reshape(-1, 3).tolist()
    colours = {tuple(p) for p in pixels}
    assert (0x1F, 0x77, 0xB4) in colours and (0xBB, 0xBB, 0xBB) in colours  # fine-tuned blue, prompted grey
    assert not list(tmp_path.glob(".acc.png.*"))  # written atomically, no temporary left


def test_stdin_and_a_pipe(runs):
    records = Path(runs[0]).read_text()
    proc = subprocess.run([str(BIN), "report", "-"], input=records, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "| ft-x/best | fine-tuned | 75.0% | 30.1-95.4% | 4 | 32 | - |" in proc.stdout  # no manifest for stdin


def test_bad_inputs_are_one_line_errors(runs, tmp_path, capsys):
    def fails(args, code, text):
        with pytest.raises(SystemExit) as exit_:
            run(cli, "ft-score", ["report", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == code and len(err) == 1 and err[0].startswith("ft-score: error: ")
        assert text in err[0], err[0]

    unscored = tmp_path / "raw.jsonl"
    unscored.write_text(json.dumps({"id": "a", "score": {"correct": True}}) + "\n" + json.dumps({"id": "b"}) + "\n")
    fails([str(unscored)], 2, f"{unscored}:2: no 'score'")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    fails([str(empty)], 2, "no records")
    notsummary = tmp_path / "x.json"
    notsummary.write_text("[1, 2]")
    fails([str(notsummary)], 2, "not a JSON object")
    fails([runs[1], "--label", "nope=A|B"], 2, "--label names nope")
    fails([runs[1], "--label", "broken"], 2, "RUN=MODEL|METHOD")
    fails([*runs, "--against", "nope"], 2, "--against names nope, not among the runs (ft-x-viggo, fewshot-y,")
    fails([*runs, "--against", "fewshot-y"], 2,
          "--against fewshot-y: a summary has no per-record verdicts; give its scored JSONL")
    (tmp_path / "ft-x.ft-train.json").write_text("{}")
    fails([runs[0]], 2, "not an ft-train manifest")


def test_chart_without_matplotlib_names_the_extra(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(SystemExit) as exit_:
        run(cli, "ft-score", ["report", runs[1], "--chart", str(tmp_path / "c.png")])
    assert exit_.value.code == 1
    assert "pip install 'ft-score[report]'" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_help_has_a_pipe_example():
    result = CliRunner().invoke(cli, ["report", "--help"])
    assert result.exit_code == 0 and " | ft-score report -" in result.output


def test_a_gpu_run_shows_its_gpu_minutes(tmp_path):
    from ft_score.report import training_info

    (tmp_path / "ft-g.ft-train.json").write_text(json.dumps({
        "epochs": [{"epoch": 1, "time": 100.0}], "best": {"epoch": 1, "val_ppl": 1.5},
        "resolved": {"device": "cuda", "workers": 2}, "timing": {"phases": {"exit": 90.0}}}))
    assert training_info(str(tmp_path / "ft-g-viggo.scored.jsonl"), "ft-g-viggo") == \
        "1 ep, best 1 (val ppl 1.500), 3.0 GPU-min"  # 2 GPUs x 90 s
    (tmp_path / "ft-c.ft-train.json").write_text(json.dumps({  # a CPU run: no GPU-minutes
        "epochs": [{"epoch": 1, "time": 100.0}], "best": {"epoch": 1, "val_ppl": 1.5},
        "resolved": {"device": "cpu", "workers": 1}, "timing": {"phases": {"exit": 90.0}}}))
    assert training_info(str(tmp_path / "ft-c.scored.jsonl"), "ft-c") == "1 ep, best 1 (val ppl 1.500)"
