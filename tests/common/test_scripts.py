"""scripts/setup_gpu.sh stays in step with scripts/setup.sh and refuses a machine without a GPU."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pip_packages(script: str) -> set[str]:
    """The distribution names a script's `pip install` lines name (versions and extras dropped)."""
    text = (ROOT / "scripts" / script).read_text().replace("\\\n", " ")
    names = set()
    for line in text.splitlines():
        if re.match(r"\s*pip install", line):
            for word in line.split()[2:]:
                word = word.strip("'\"")
                if word.startswith(("-", "$")) or "/" in word or not re.match(r"[A-Za-z]", word):
                    continue
                names.add(re.split(r"[\[<>=!]", word)[0].lower())
    return names


def test_setup_gpu_installs_what_setup_installs():
    cpu, gpu = pip_packages("setup.sh"), pip_packages("setup_gpu.sh")
    assert {"ray", "transformers", "click", "pytest"} <= cpu  # the parse still finds the list
    # torch comes with vllm's pin on the GPU; deepspeed is built there with its own command.
    missing = cpu - gpu - {"torch", "pip"}
    assert not missing, f"scripts/setup_gpu.sh lacks what scripts/setup.sh installs: {sorted(missing)}"
    assert "vllm" in gpu


def test_setup_gpu_refuses_a_machine_without_a_gpu(tmp_path):
    # A PATH with bash's basics but no nvidia-smi: the script stops before touching .venv.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    proc = subprocess.run([str(bin_dir / "bash"), str(ROOT / "scripts" / "setup_gpu.sh")],
                          env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "setup_gpu: error: no CUDA GPU (nvidia-smi finds none); on a CPU machine use scripts/setup.sh"]
