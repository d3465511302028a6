"""ft-train and ft-infer's hf engine keep transformers from importing torchvision, scipy and
scikit-learn (ft_common.lean_imports): installed on GPU images, they cost seconds of every start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tiny_model import SHARED_DATA

BIN = Path(sys.executable).parent


def fake_packages(root, marker):
    """scipy and sklearn stand-ins that record being imported in `marker` (torchvision's would
    need the modules transformers' image code takes from it)."""
    for name in ("scipy", "sklearn"):
        pkg = root / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('{name}\\n')\n")
    (root / "scipy" / "optimize.py").write_text("def linear_sum_assignment(*a):\n    raise NotImplementedError\n")
    return root


def import_loss_utils(site, hide: bool) -> subprocess.CompletedProcess:
    code = ("from ft_common.lean_imports import hide_unused; hide_unused()\n" if hide else "") + (
        "import importlib.util, transformers.loss.loss_utils\n"
        "print(importlib.util.find_spec('scipy') is None)\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_hidden_packages_are_not_imported_and_look_absent(tmp_path):
    marker = tmp_path / "imported.txt"
    site = fake_packages(tmp_path / "site", marker)
    shown = import_loss_utils(site, hide=False)  # the control: transformers does import them
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "scipy" in marker.read_text().split()
    marker.unlink()
    hidden = import_loss_utils(site, hide=True)
    assert hidden.returncode == 0, hidden.stderr[-2000:]
    assert hidden.stdout.strip() == "True" and not marker.exists()


def test_an_imported_module_stays(monkeypatch):
    from ft_common.lean_imports import hide_unused

    monkeypatch.delitem(sys.modules, "not_a_real_module_xyz", raising=False)
    assert hide_unused(("os", "not_a_real_module_xyz")) == ["not_a_real_module_xyz"]
    assert sys.modules["os"] is os and sys.modules["not_a_real_module_xyz"] is None
    monkeypatch.delitem(sys.modules, "not_a_real_module_xyz")


def viggo_file(tmp_path, split: str, n: int) -> Path:
    path = tmp_path / f"viggo-{split}.jsonl"
    with path.open("w") as fh:
        subprocess.run([str(BIN / "ft-prep"), "viggo", "--data", str(SHARED_DATA), "--split", split, "--limit", str(n)],
                       stdout=fh, check=True, timeout=120)
    return path


def test_the_commands_never_import_them(tmp_path, tiny_model):
    marker = tmp_path / "imported.txt"
    env = {**os.environ, "PYTHONPATH": str(fake_packages(tmp_path / "site", marker))}
    train = ([str(BIN / "ft-train"), "-m", str(tiny_model), "--train", str(viggo_file(tmp_path, "train", 40)),
              "-o", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "8", "--ctx-len", "128", "-q"])
    infer = [str(BIN / "ft-infer"), "-m", str(tiny_model), "--engine", "hf", "--max-new-tokens", "4", "-q",
             str(viggo_file(tmp_path, "valid", 3))]
    for cmd in (train, infer):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert not marker.exists(), f"{cmd[0]}: {marker.read_text()}"
