"""--cuda-graphs: training steps replayed from CUDA graphs, one graph per batch shape.

On the GPU host a kernel launch costs ~37 us of CPU time and one training step of a 135M model
launches some 3,600 kernels, so an eager step takes ~135 ms whatever the batch holds: the GPU
waits on the CPU (docs/benchmarks.md). Replayed from a captured CUDA graph, a step is one launch.

A graph replays fixed shapes at fixed addresses, so:

- Shapes: the flat layout has one (ft_train.flat.FlatShape: every batch one row of the run's
  width, its loss positions padded to the most any batch has): one graph per run. The group
  layout's batches are cut at widths rounded up to a multiple (WIDTH_MULTIPLE unless
  --pad-multiple says otherwise); every batch of one width is padded with empty rows to the most
  rows any batch of that width has, and its loss positions to the most any has (padding positions
  carry IGNORE labels, which the loss masks). One graph per width: a handful per run (`shape_table`).
- Inputs: each shape's input tensors are allocated once; a step copies its batch into them.
- No host sync inside: the loss is divided by a token count that is itself a device input, and
  the fused loss masks ignored rows instead of selecting them.
- The optimizer step (FlatMaster: clip, fused AdamW, the copy back to bf16) is a graph of its own,
  replayed every grad_accum micro-steps; AdamW is capturable and its lr is a device tensor that
  each schedule step fills in place (`step_schedule`).

The run's first micro-step and first optimizer step run eagerly, on the side stream that
captures (this warms up cuBLAS, autograd and the allocator, as capture requires), and are then
captured; a later batch of a new width is captured first, then replayed (with --compile's blocks,
run eagerly first too, so any compiling for its shape happens outside the capture). No step runs
twice and none is skipped. Without --compile only that first step runs outside the graphs' memory,
so memory is not doubled by a warm-up per shape. All graphs share one memory pool: they never run at once and each one's
intermediates live only within its replay, so the pool holds one shape's activations, not their
sum. A capture that fails is reported in one line (its traceback goes to the run's log), and
training goes on eagerly.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass

import torch
from ft_common.decode_graphs import CudaGraphs, failure_reason

from ft_train.compile import no_compiling
from ft_train.data import IGNORE, batch_width, round_up
from ft_train.fused_loss import ROW_MULTIPLE

# ViGGO's 10 epochs at SmolLM2's 6,144-token recipe batches (bench/batch_shapes.py --cuda-graphs on):
# 9 graphs and 15% padding at 16; 5 and 27% at 32; 3 and 43% at 64
WIDTH_MULTIPLE = 16
# the flat layout's inputs beside the ids and the loss's (ft_train.flat.collate_flat), already at the run's shape
FLAT_INPUTS = ("position_ids", "cu_seqlens")


@dataclass(frozen=True)
class Shape:
    rows: int  # sequences in every batch of this width
    positions: int  # loss positions in every batch of this width


def shape_table(epochs: list[list], ctx_len: int, multiple: int, flat=None) -> dict[int, Shape]:
    """{width: Shape} over every epoch's batches (group layout): the most rows and loss positions
    any batch of each width has (the positions rounded up to a multiple of ROW_MULTIPLE). With
    `flat` (the flat layout's FlatShape) every batch is one row of flat.width: one shape."""
    loss_count: dict[int, int] = {}  # id(row) -> its loss positions (rows recur every epoch)
    table: dict[int, Shape] = {}
    for batches in epochs:
        for batch in batches:
            width = flat.width if flat else batch_width(batch, "group", ctx_len, multiple)
            positions = 0
            for seq in batch:
                row = seq[0]
                n = loss_count.get(id(row))
                if n is None:
                    n = loss_count[id(row)] = sum(1 for y in row["labels"] if y != IGNORE)
                positions += n
            old = table.get(width, Shape(0, 0))
            table[width] = Shape(1 if flat else max(old.rows, len(batch)), max(old.positions, positions))
    # loss positions in whole multiples of the loss's chunk rows, whose matmuls run faster aligned
    return {w: Shape(s.rows, round_up(s.positions, ROW_MULTIPLE)) for w, s in table.items()}


def pad_to_shape(x: dict, shape: Shape, pad_id: int) -> dict:
    """collate's batch (on the host) padded to `shape`: empty rows of pad_id (group layout), loss
    positions pointing at position 0 with IGNORE labels; plus "tokens", the real loss positions.
    The flat layout's position_ids and cu_seqlens come already at the run's shape: kept as they are."""
    ids, index, labels = x["input_ids"], x["loss_index"], x["loss_labels"]
    rows, width = ids.shape
    kept = {k: v for k, v in x.items() if k in FLAT_INPUTS}
    if rows > shape.rows or len(index) > shape.positions or (kept and rows != shape.rows):
        raise ValueError(f"batch {rows}x{width} with {len(index)} loss positions exceeds its shape {shape}")
    padded_ids = torch.full((shape.rows, width), pad_id, dtype=ids.dtype)
    padded_ids[:rows] = ids
    padded_index = torch.zeros(shape.positions, dtype=index.dtype)
    padded_index[:len(index)] = index
    padded_labels = torch.full((shape.positions,), IGNORE, dtype=labels.dtype)
    padded_labels[:len(labels)] = labels
    return {"input_ids": padded_ids, "loss_index": padded_index, "loss_labels": padded_labels,
            "tokens": torch.tensor(float(len(index))), **kept}


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """AdamW as a graph can replay it: capturable, its lr a device tensor (the scheduler fills it
    in place; a float would be baked into the graph). Also for a state loaded from an eager run."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
        elif group["lr"].device != device:
            group["lr"] = group["lr"].to(device)


def step_schedule(scheduler) -> None:
    """scheduler.step() for an optimizer whose lr is a device tensor: the schedule's new value is
    written into that same tensor (a graph reads the tensor it captured), on any torch version
    (older schedulers copy_ a float into it, which fails) and without a host sync."""
    groups = scheduler.optimizer.param_groups
    tensors = [g["lr"] for g in groups]
    for g in groups:
        if isinstance(g["lr"], torch.Tensor):
            g["lr"] = 0.0  # a float for the scheduler to overwrite (LambdaLR computes from base_lrs)
    scheduler.step()
    for g, lr in zip(groups, tensors, strict=True):
        if isinstance(lr, torch.Tensor):
            lr.fill_(float(g["lr"]))
            g["lr"] = lr


class _Graph:
    """One captured micro-step: its input tensors and its output (the summed loss), both allocated
    outside the graphs' shared pool. An output inside it would be another graph's scratch: the
    optimizer's graph, replayed before the caller reads the loss, would overwrite it."""

    def __init__(self, inputs: dict, device: torch.device):
        self.inputs = inputs
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss = torch.zeros((), dtype=torch.float32, device=device)


class StepGraphs:
    """The micro-steps' graphs (one per width) and the optimizer step's, for PlainEngine with
    FlatMaster on one CUDA device. Once graphs are off (a capture failed) `forward_backward`
    returns None and `optimizer_step` False: the caller then runs the step eagerly."""

    def __init__(self, engine, shapes: dict[int, Shape], pad_id: int, log=None):
        self.engine, self.shapes, self.pad_id = engine, shapes, pad_id
        self.log = log or (lambda line: None)
        self.device = engine.device
        self.cuda = CudaGraphs(self.device)  # the side stream: eager warm-up steps, captures, draining
        self.pool = None  # the memory pool every capture shares (the first capture's)
        self.steps: dict[int, _Graph] = {}
        self.optimizer_graph: torch.cuda.CUDAGraph | None = None
        self.warm = False  # an eager step has run on the side stream (cuBLAS, autograd and the allocator set up)
        self.failed: str | None = None
        self.capture_s = 0.0  # seconds spent capturing (the manifest's timing)

    @property
    def active(self) -> bool:
        return self.failed is None

    def forward_backward(self, x: dict) -> torch.Tensor | None:
        """Forward and backward of collate's batch `x` (on the host); its summed loss on the device,
        or None when graphs are off or the batch has no shape (the caller runs it eagerly)."""
        if not self.active:
            return None
        shape = self.shapes.get(x["input_ids"].shape[1])
        if shape is None:
            return None
        host = pad_to_shape(x, shape, self.pad_id)
        width = x["input_ids"].shape[1]
        step = self.steps.get(width)
        if step is None:
            step = self.steps[width] = _Graph({k: torch.empty(v.shape, dtype=v.dtype, device=self.device)
                                               for k, v in host.items()}, self.device)
        for key, value in host.items():
            step.inputs[key].copy_(value.pin_memory(), non_blocking=True)
        if step.graph is None:
            # The run's first batch, and with --compile every width's first (a new width can make a
            # block compile again, which a capture cannot survive): its real step eagerly, then its capture
            if not self.warm or self.engine.compiled_blocks:
                loss = self.cuda.warm(lambda: self._forward_backward(step.inputs))
                self.warm = True
                self._capture(f"the {width}-token step", lambda: self._capture_step(step))
                return loss
            self._capture(f"the {width}-token step", lambda: self._capture_step(step))
            if not self.active:
                return None  # this batch has not run: the caller runs it eagerly
        step.graph.replay()
        return step.loss

    def optimizer_step(self) -> bool:
        """The optimizer step (FlatMaster's); False when graphs are off (the caller steps eagerly)."""
        if not self.active:
            return False
        engine = self.engine
        if self.optimizer_graph is not None:
            self.optimizer_graph.replay()
            return True
        make_capturable(engine.optimizer, self.device)
        self.cuda.warm(lambda: engine.master.step(engine.optimizer, engine.cfg.grad_clip))  # this step's real update
        self._capture("the optimizer step", self._capture_optimizer)
        return True

    def _forward_backward(self, inputs: dict) -> torch.Tensor:
        engine = self.engine
        flat = {k: inputs[k] for k in FLAT_INPUTS if k in inputs}
        loss_sum = engine.forward_model(input_ids=inputs["input_ids"], loss_index=inputs["loss_index"],
                                        loss_labels=inputs["loss_labels"], masked=True, **flat)
        engine.backward(loss_sum / inputs["tokens"].clamp(min=1))  # the engine's own: / grad_accum, FlatMaster's bookkeeping
        return loss_sum.detach()

    def _capture_step(self, step: _Graph) -> None:
        graph = torch.cuda.CUDAGraph()
        # --compile: a block that would compile inside the capture fails it with the guard that failed
        guard = no_compiling() if self.engine.compiled_blocks else contextlib.nullcontext()
        with guard, torch.cuda.graph(graph, pool=self.pool, stream=self.cuda.stream):
            step.loss.copy_(self._forward_backward(step.inputs))
        step.graph = graph
        self.pool = self.pool or graph.pool()

    def _capture_optimizer(self) -> None:
        engine = self.engine
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool, stream=self.cuda.stream):
            engine.master.step(engine.optimizer, engine.cfg.grad_clip)
        self.optimizer_graph = graph
        self.pool = self.pool or graph.pool()

    def _capture(self, what: str, capture) -> None:
        """capture(), timed; on failure graphs are off for the rest of the run, said in one line."""
        t0 = time.perf_counter()
        try:
            capture()
        except Exception as e:  # noqa: BLE001 - any failure: the run goes on eagerly
            self.failed = failure_reason(e)
            traceback.print_exc()  # whole, to stderr: in a run that is OUT_DIR/ft-train.log (-v: the terminal)
            self.engine.master.forget_backward()  # a capture cut short may leave gradients set
            self.steps.clear()
            self.optimizer_graph = None
            self.cuda.drain()  # let the failed capture's work finish before going on
            self.log(f"ft-train: CUDA graph capture of {what} failed ({self.failed}); training on without graphs")
        finally:
            self.capture_s += time.perf_counter() - t0

    def summary(self) -> dict:
        """For the manifest: what was captured, how long it took, why graphs went off (if they did)."""
        return {"shapes": len(self.steps), "capture_s": round(self.capture_s, 3),
                **({"failed": self.failed} if self.failed else {})}
