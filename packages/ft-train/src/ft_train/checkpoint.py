"""Checkpoints on disk.

    OUT_DIR/
      checkpoints/epoch-N/   a Hugging Face folder: model.safetensors, config.json,
                             generation_config.json (eos = the stop token), the tokenizer
                             with the added tokens, ft-train.json (manifest),
                             ft-train-config.json (the TrainConfig)
      best -> checkpoints/epoch-N   the lowest validation perplexity so far
      state/                 the full training state for --resume (DeepSpeed or torch
                             files under a step-S tag, and latest.json naming the tag)

Each epoch folder is written under a temporary name and renamed whole
(ft_common.atomic.atomic_dir); `best` and latest.json are swapped atomically.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

from ft_common.atomic import atomic_dir, atomic_write, point_link

CHECKPOINTS = "checkpoints"
STATE = "state"


def epoch_dir(out_dir: Path, epoch: int) -> Path:
    return out_dir / CHECKPOINTS / f"epoch-{epoch}"


def write_hf_checkpoint(folder: Path, model, state_dict: dict, tokenizer, stop_id: int | None,
                        manifest: dict, config_dict: dict) -> None:
    """Write a loadable Hugging Face folder atomically (rank 0 only)."""
    import torch

    with atomic_dir(folder) as tmp:
        dtype = next(iter(state_dict.values())).dtype if state_dict else torch.float32
        model.config.vocab_size = len(tokenizer)
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        # save_pretrained records the (fp32 master) parameters' dtype; the file holds state_dict's
        config = json.loads((tmp / "config.json").read_text())
        config["dtype"] = str(dtype).removeprefix("torch.")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        tokenizer.save_pretrained(tmp)
        gen = model.generation_config
        if stop_id is not None:
            eos = gen.eos_token_id if gen.eos_token_id is not None else model.config.eos_token_id
            eos = [eos] if isinstance(eos, int) else list(eos or [])
            gen.eos_token_id = [stop_id] + [e for e in eos if e != stop_id]
        if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
            gen.pad_token_id = tokenizer.pad_token_id
        gen.save_pretrained(tmp)
        (tmp / "ft-train.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "ft-train-config.json").write_text(json.dumps(config_dict, indent=2) + "\n")
        for f in tmp.iterdir():  # some writers create private (0600) files; a checkpoint is for sharing
            f.chmod(0o644)


class BackgroundWriter:
    """Runs one write at a time on a thread, so training goes on while a checkpoint is written.

    submit() waits for the previous write first; join() waits for the last and
    re-raises its error, if any.
    """

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, fn, *args) -> None:
        self.join()

        def run():
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to join()
                self._error = exc

        self._thread = threading.Thread(target=run, name="ft-train-checkpoint", daemon=False)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def point_best(out_dir: Path, epoch: int) -> None:
    point_link(out_dir / "best", f"{CHECKPOINTS}/epoch-{epoch}")


def prune(out_dir: Path, keep: int, best_epoch: int | None) -> None:
    """Keep the `keep` newest epoch folders and the best one; remove the rest."""
    found = []
    for p in (out_dir / CHECKPOINTS).glob("epoch-*"):
        m = re.fullmatch(r"epoch-(\d+)", p.name)
        if m:
            found.append(int(m.group(1)))
    found.sort()
    doomed = found[:-keep] if keep > 0 else found
    for epoch in doomed:
        if epoch != best_epoch:
            shutil.rmtree(epoch_dir(out_dir, epoch), ignore_errors=True)


def latest_state(out_dir: Path) -> dict | None:
    """What state/latest.json says (tag, step, epoch, batch), or None when nothing was saved."""
    path = out_dir / STATE / "latest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def mark_state(out_dir: Path, info: dict) -> None:
    """Point latest.json at a fully written state tag, then remove older tags."""
    with atomic_write(out_dir / STATE / "latest.json") as fh:
        fh.write(json.dumps(info) + "\n")
    for p in (out_dir / STATE).iterdir():
        if p.is_dir() and p.name != info["tag"]:
            shutil.rmtree(p, ignore_errors=True)
