"""End to end with the real commands: ft-prep viggo | ft-infer -m TINY | ft-score viggo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_prep_infer_score_pipeline(stop_model, shared_data, tmp_path):
    cmd = (f"{BIN / 'ft-prep'} viggo --data {shared_data} --split valid --limit 20"
           f" | {BIN / 'ft-infer'} -m {stop_model} --engine hf --max-new-tokens 16"
           f" | {BIN / 'ft-score'} viggo")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in out] == [f"viggo/valid/{i}" for i in range(20)]
    for record in out:
        assert record["finish_reason"] in ("stop", "length")
        assert "<END_A>" not in record["completion"]
        assert record["model"] == str(stop_model)
        assert "score" in record and "target" in record  # ft-score's key; ft-prep's passed through
    assert any(r["finish_reason"] == "stop" for r in out)  # the stop model emits <END_A> now and then
