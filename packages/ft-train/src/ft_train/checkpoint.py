"""Checkpoints on disk.

    OUT_DIR/
      checkpoints/epoch-N/   a Hugging Face folder: model.safetensors, config.json,
                             generation_config.json (eos = the stop token), the tokenizer
                             with the added tokens, ft-train.json (manifest),
                             ft-train-config.json (the TrainConfig)
      best -> checkpoints/epoch-N   the best epoch so far (--select-by: accuracy or perplexity)
      state/                 the full training state for --resume (DeepSpeed or torch
                             files under a step-S tag, and latest.json naming the tag)

Each epoch folder is written under a temporary name and renamed whole
(ft_common.atomic.atomic_dir); `best` and latest.json are swapped atomically.

The training state holds only what `torch.load(weights_only=True)` accepts: tensors,
numbers, strings, lists and dicts (RNG states included, as tensors and lists of ints). A
state file that needs anything else to load (a pickled object whose __reduce__ would run
code) is refused before any of it is unpickled: `load_torch_state` for ft-train's own
files, `check_state_files` before DeepSpeed (which loads with weights_only=False) reads its.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import shutil
import threading
from pathlib import Path

from ft_common.atomic import atomic_dir, atomic_write, point_link
from ft_common.errors import InputError

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
        # the embeddings' rows (tokens.resize_embeddings pads them past the tokenizer's count): a
        # config that says fewer than the weights hold does not load
        model.config.vocab_size = model.get_input_embeddings().num_embeddings
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
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):
        raise InputError(f"{path}: not valid JSON") from None
    # The tag becomes a path under state/: nothing but step-N may name a folder elsewhere.
    if not (isinstance(info, dict) and isinstance(info.get("tag"), str) and re.fullmatch(r"step-\d+", info["tag"])
            and all(type(info.get(k)) is int for k in ("step", "epoch", "batch"))):
        raise InputError(f"{path}: not a state index ft-train wrote (tag step-N, integer step, epoch, batch)")
    return info


def mark_state(out_dir: Path, info: dict) -> None:
    """Point latest.json at a fully written state tag, then remove older tags."""
    with atomic_write(out_dir / STATE / "latest.json") as fh:
        fh.write(json.dumps(info) + "\n")
    for p in (out_dir / STATE).iterdir():
        if p.is_dir() and p.name != info["tag"]:
            shutil.rmtree(p, ignore_errors=True)


# ---- the training state: plain data only -------------------------------------------------

def rng_state() -> dict:
    """This process's random states as tensors, lists and ints (torch, CUDA, Python, numpy)."""
    import torch

    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    try:
        import numpy
    except ImportError:
        return state
    kind, keys, pos, has_gauss, cached = numpy.random.get_state()
    state["numpy"] = [str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]
    return state


def set_rng_state(state) -> None:
    """Restore what rng_state() returned (or a bare torch state, as earlier runs saved it)."""
    import torch

    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state)
        return
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        try:
            import numpy
        except ImportError:
            return
        kind, keys, pos, has_gauss, cached = state["numpy"]
        numpy.random.set_state((kind, numpy.array(keys, dtype=numpy.uint32), pos, has_gauss, cached))


def load_torch_state(path: Path, map_location=None) -> dict:
    """torch.load(path) of plain data only; anything that would import a callable is refused."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(f"{path}: refused to load: {_unsafe_reason(exc)} (ft-train writes plain tensors "
                         "and numbers only; is this file from somewhere else?)") from None
    except (RuntimeError, EOFError, OSError) as exc:  # truncated, not a torch file
        raise InputError(f"{path}: not a readable training state ({_first_line(exc)})") from None


def check_state_files(folder: Path) -> None:
    """Refuse a DeepSpeed state folder holding any file that needs more than plain data to load.

    DeepSpeed reads its files with weights_only=False; each is read here first with
    weights_only=True (memory-mapped: the tensors are not read), allowing only the few
    DeepSpeed classes its state holds.
    """
    import torch

    for path in sorted(folder.rglob("*.pt")):
        with torch.serialization.safe_globals(_deepspeed_globals()):
            try:
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except pickle.UnpicklingError as exc:
                raise InputError(f"{path}: refused to load: {_unsafe_reason(exc)} (not a state "
                                 "DeepSpeed wrote for ft-train; is this file from somewhere else?)") from None
            except (RuntimeError, EOFError, OSError) as exc:
                raise InputError(f"{path}: not a readable training state ({_first_line(exc)})") from None


def _deepspeed_globals() -> list:
    """The classes (plain records, no code of their own on load) found in DeepSpeed's state."""
    found = []
    for module, names in DEEPSPEED_GLOBALS:
        try:
            mod = __import__(module, fromlist=["_"])
        except ImportError:
            continue
        found += [getattr(mod, name) for name in names if hasattr(mod, name)]
    return found


# (module, class names): enums and a loss-scale record, rebuilt from their fields on load.
DEEPSPEED_GLOBALS: list[tuple[str, tuple[str, ...]]] = [
    ("deepspeed.runtime.zero.config", ("ZeroStageEnum",)),
    ("deepspeed.runtime.fp16.loss_scaler", ("LossScaler", "DynamicLossScaler", "LossScaleProfile")),
]


def _unsafe_reason(exc: Exception) -> str:
    named = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if named:
        return f"it would import {named.group(1)}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else "not plain data"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
