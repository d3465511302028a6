"""Bad input fails in one line with exit 2, before any Ray start."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from train_support import ft_train


def _args(model, train, valid, out):
    return ["-m", model, "--train", train, "--valid", valid, "-o", out, "--epochs", "1"]


def test_malformed_line_names_file_and_line(tmp_path, tiny_model, viggo_files):
    bad = tmp_path / "bad.jsonl"
    lines = viggo_files["train"].read_text().splitlines()[:3]
    bad.write_text("\n".join(lines[:2] + ["{not json"] + lines[2:]) + "\n")
    start = time.monotonic()
    out = ft_train(_args(tiny_model, bad, viggo_files["valid"], tmp_path / "o"), tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(f"ft-train: error: {bad}:3: not valid JSON")
    assert "Traceback" not in out.stderr and "Ray" not in out.stderr and "ray" not in out.stderr
    assert out.stdout == ""
    assert time.monotonic() - start < 30


def test_malformed_line_fails_before_torch_is_imported(tmp_path, tiny_model, viggo_files):
    # Looking for a GPU imports torch (seconds, and a CUDA init on a GPU host): bad input must not wait for it.
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    code = ("import sys\nfrom ft_train.cli import main\nsys.argv = ['ft-train'] + sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)\n")
    args = _args(str(tiny_model), str(bad), str(viggo_files["valid"]), str(tmp_path / "o"))
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], (out.stdout, out.stderr)


def test_record_without_target_names_line_and_id(tmp_path, tiny_model, viggo_files):
    bad = tmp_path / "bad.jsonl"
    rec = json.loads(viggo_files["train"].read_text().splitlines()[0])
    del rec["target"]
    bad.write_text(viggo_files["train"].read_text().splitlines()[1] + "\n" + json.dumps(rec) + "\n")
    out = ft_train(_args(tiny_model, viggo_files["train"], bad, tmp_path / "o"), tmp_path)
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert f"{bad}:2:" in last and rec["id"] in last and "'target'" in last, last


def test_stdin_malformed_line(tmp_path, tiny_model, viggo_files):
    first = viggo_files["train"].read_text().splitlines()[0]
    out = ft_train(["-m", tiny_model, "--train", "-", "-o", tmp_path / "o"], tmp_path, input=first + "\nnot json\n")
    assert out.returncode == 2
    assert "<stdin>:2:" in out.stderr.strip().splitlines()[-1]


def test_existing_run_needs_resume(tmp_path, tiny_model, viggo_files):
    (tmp_path / "o" / "state").mkdir(parents=True)
    out = ft_train(_args(tiny_model, viggo_files["train"], viggo_files["valid"], tmp_path / "o"), tmp_path)
    assert out.returncode == 2 and "--resume" in out.stderr


def test_offload_needs_zero(tmp_path, tiny_model, viggo_files):
    out = ft_train([*_args(tiny_model, viggo_files["train"], viggo_files["valid"], tmp_path / "o"),
                    "--zero", "0", "--offload", "optimizer"], tmp_path)
    assert out.returncode == 2 and "ZeRO" in out.stderr


def test_diverged_loss_stops_in_one_line(tmp_path, tiny_model, viggo_files):
    """A loss that turns NaN or infinite ends the run at that log line with one error, not epochs of NaN."""
    out = ft_train(["-m", tiny_model, "--train", viggo_files["train"], "--valid", viggo_files["valid"],
                    "-o", tmp_path / "o", "--epochs", "2", "--lr", "1e30", "--warmup", "0", "--log-every", "1"],
                   tmp_path)
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "the training loss is" in last and "diverged" in last and "Traceback" not in out.stderr, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert not any("train_loss" in r for r in rows)  # it stopped inside the first epoch


def test_diverged_loss_between_log_lines_stops_before_the_epoch_is_validated(tmp_path, tiny_model, viggo_files):
    """With no log line inside the epoch, the epoch's mean loss is checked before it is validated or saved."""
    out = ft_train(["-m", tiny_model, "--train", viggo_files["train"], "--valid", viggo_files["valid"],
                    "-o", tmp_path / "o", "--epochs", "2", "--lr", "1e30", "--warmup", "0", "--log-every", "100000"],
                   tmp_path)
    assert out.returncode == 1, out.stderr
    assert "the training loss is" in out.stderr.strip().splitlines()[-1] and "ft-train: epoch 1/2:" not in out.stderr
    rows = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert not any("train_loss" in r for r in rows)  # epoch 1 was neither validated nor kept
