"""What a worker writes to OUT_DIR while it trains, and --resume.

`Checkpointer` owns the three writes and their schedules, so the training loop only says
when an epoch ended or a step was taken:

- epoch checkpoints (a better epoch, the last, or every one with --save-all), gathered by
  the worker and written by rank 0 on a background thread while training goes on. A better
  epoch that comes less than CHECKPOINT_INTERVAL_S after the last write is held in memory
  until the next write, a state save or the end: on a fast run, writing (and plotting)
  every epoch would take CPU time from the training loop, which is bound by its kernel launches.
- the full training state (state/step-S, every rank's part) when --save-minutes have passed
  since the last (rank 0's clock decides, shared at the next sync) or every --save-every steps.
- --resume: the engine's state and this rank's RNG back, the loop's own state returned.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ft_common.atomic import atomic_write

from ft_train import checkpoint
from ft_train.checkpoint import STATE
from ft_train.dist import all_gather, barrier

CHECKPOINT_INTERVAL_S = 60.0  # a better epoch is on disk at most this long after the last write


class Checkpointer:
    def __init__(self, cfg, engine, rank: int, model, tokenizer, stop_id: int | None):
        self.cfg, self.engine, self.rank = cfg, engine, rank
        self.out = Path(cfg.out_dir)
        self.model, self.tokenizer, self.stop_id = model, tokenizer, stop_id
        self.writer = checkpoint.BackgroundWriter()  # rank 0's checkpoint folders
        self.held: tuple | None = None  # a better epoch's checkpoint not written yet: (epoch, state_dict, man, improved)
        self.last_save = self.last_write = time.monotonic()

    # ---- --resume -----------------------------------------------------------------------

    def restore(self) -> dict | None:
        """With --resume: load the latest state into the engine, restore this rank's RNG, and
        return the loop's own state (what save_state was given); None without --resume."""
        info = checkpoint.latest_state(self.out) if self.cfg.resume else None
        if not info:
            return None
        extra = self.engine.load_state(self.out / STATE, info["tag"])
        checkpoint.set_rng_state(extra["rng"][self.rank % len(extra["rng"])])
        self.last_save = self.last_write = time.monotonic()
        return extra

    # ---- the training state ---------------------------------------------------------------

    def clock_due(self) -> float:
        """1.0 on rank 0 when --save-minutes have passed since the last state save: summed over
        the ranks in a sync the loop makes anyway, so every rank decides alike."""
        return float(self.rank == 0 and time.monotonic() - self.last_save >= self.cfg.save_minutes * 60)

    def step_due(self, step: int) -> bool:
        return bool(self.cfg.save_every and step % self.cfg.save_every == 0)

    def save_state(self, extra: dict) -> None:
        """Save the engine's state and the loop's `extra` under state/step-S (every rank calls this)."""
        extra = {**extra, "rng": all_gather(checkpoint.rng_state())}
        tag = f"step-{extra['step']}"
        if self.rank == 0 and self.held is not None:  # the state names the best checkpoint: it must be on disk
            self._submit(*self.held)
        self.engine.save_state(self.out / STATE, tag, extra)
        self.last_save = time.monotonic()
        barrier()
        if self.rank == 0:
            self.writer.join()
            checkpoint.mark_state(self.out, {"tag": tag, "step": extra["step"], "epoch": extra["epoch"],
                                             "batch": extra["batch"]})
        barrier()

    # ---- epoch checkpoints (rank 0) --------------------------------------------------------

    def write_epoch(self, epoch: int, state_dict: dict, man: dict, improved: bool, last: bool) -> None:
        """Write epoch `epoch`'s checkpoint now, or hold it (see the module doc)."""
        if improved:
            self.held = None  # superseded: a better epoch is here
        if time.monotonic() - self.last_write >= CHECKPOINT_INTERVAL_S or last or self.cfg.save_all:
            if self.held is not None:
                self._submit(*self.held)
            self._submit(epoch, state_dict, man, improved)
        else:
            self.held = (epoch, state_dict, man, improved)

    def finish(self) -> None:
        """Write what is held (a guard: the last epoch writes it) and wait for the writes."""
        if self.held is not None:
            self._submit(*self.held)
        self.writer.join()

    def _submit(self, epoch: int, state_dict: dict, man: dict, improved: bool) -> None:
        self.writer.submit(self._write, epoch, state_dict, man, improved)
        self.held, self.last_write = None, time.monotonic()

    def _write(self, epoch: int, state_dict: dict, man: dict, improved: bool) -> None:
        checkpoint.write_hf_checkpoint(checkpoint.epoch_dir(self.out, epoch), self.model, state_dict,
                                       self.tokenizer, self.stop_id, man, self.cfg.to_dict())
        if improved:
            checkpoint.point_best(self.out, epoch)
        checkpoint.prune(self.out, self.cfg.keep, man["best"]["epoch"])
        with atomic_write(self.out / "ft-train.json") as fh:  # a killed run leaves the last one whole
            fh.write(json.dumps(man, indent=2) + "\n")
