"""Two-stage training: -m is an ft-train checkpoint; the manifest records the lineage.

Also covers the plain-PyTorch path (1 worker, --zero auto picks ZeRO-0 on the CPU),
--train - (stdin) and the held-out validation share when there is no --valid."""

from __future__ import annotations

import json

from train_support import ft_train, viggo_records


def test_second_stage_from_a_checkpoint(tmp_path, e2e_run):
    assert e2e_run["proc"].returncode == 0, e2e_run["proc"].stderr[-2000:]
    first = e2e_run["out"] / "best"
    stage2 = "".join(json.dumps(r) + "\n" for r in viggo_records("train", 460)[400:])  # rows stage 1 did not see
    out = ft_train(["-m", first, "--train", "-", "-o", tmp_path / "stage2", "--epochs", "1", "--lr", "1e-3",
                    "--batch-size", "2", "--ctx-len", "128", "--valid-fraction", "0.2"], tmp_path, input=stage2)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    man = json.loads((tmp_path / "stage2" / "ft-train.json").read_text())
    assert man["resolved"]["zero"] == 0 and man["resolved"]["deepspeed"] is False
    assert man["parent"]["source"] == "ft-checkpoint"
    assert man["data"]["train"]["file"] == "<stdin>"
    assert man["data"]["valid"]["records"] == 12 and man["data"]["train"]["records"] == 48
    first_man = json.loads((first / "ft-train.json").read_text())
    assert len(man["lineage"]) == 1
    assert man["lineage"][0]["data"]["train"]["sha256"] == first_man["data"]["train"]["sha256"]
    assert man["lineage"][0]["parent"]["source"] == "folder"
    tok_first = json.loads((first / "tokenizer.json").read_text())
    tok_second = json.loads((tmp_path / "stage2" / "best" / "tokenizer.json").read_text())
    assert len(tok_first["added_tokens"]) == len(tok_second["added_tokens"])  # nothing added twice
    assert result["epochs"] == 1
