"""The optimizer side of training: DeepSpeed ZeRO 1-3, or plain PyTorch for ZeRO-0.

`Engine` is the one interface the worker sees, `make_engine` picks the backend:
`PlainEngine` (ZeRO-0) or `DeepSpeedEngine` (ZeRO 1-3, or any --ds-config).
Each has forward_model (the module to call), no_sync() and autocast() around the
forward, backward(loss), step() (an optimizer step every grad_accum micro-steps),
lr(), full_state_dict() (gathered from ZeRO-3 shards onto rank 0),
save_state(dir, tag, extra) / load_state(dir, tag).

ZeRO-0 is plain PyTorch: the model (DDP-wrapped when there are several
workers) and torch.optim.AdamW (fused on GPU). No DeepSpeed engine in the way
on one GPU, where it would only cost time. In bf16 it trains with FlatMaster:
bf16 weights and gradients for the forward and backward, fp32 master weights
and Adam state for the update, each kept in one flat buffer. That is mixed
precision without autocast: no per-step weight casts, and the update (clip,
AdamW, copy back) is a handful of kernels instead of several per parameter.
A small model on a GPU is bound by kernel launches: this made its step 18% faster.

`--zero auto` (choose_zero, called by the driver: ft_train.plan) picks the fastest setting that fits in memory:
training state per worker is about 16 bytes a parameter (fp32 weights 4,
gradients 4, Adam moments 8; in bf16 at ZeRO-0, bf16 weights and gradients 4,
fp32 masters and their gradient 8, Adam 8: 20) plus activations. In that
order, the first that fits in 85% of one device's memory wins: ZeRO-0 (all of it on every worker),
ZeRO-2 (gradients and optimizer state split over workers), ZeRO-3 (weights
too), ZeRO-3 + optimizer offload to CPU, ZeRO-3 + offload of everything.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from pathlib import Path

import torch

from ft_train.fused_loss import fused_loss_bytes

ZERO_BUDGET = 0.85  # the share of one device's memory that state + activations may take


def zero0_state(n_params: int, bf16: bool) -> int:
    """ZeRO-0's training state on one worker, in bytes: fp32 weights 4, gradients 4, Adam 8 a
    parameter; in bf16 (FlatMaster) bf16 weights and gradients 4, fp32 masters and their gradient 8, Adam 8."""
    return 16 * n_params + (4 * n_params if bf16 else 0)


def choose_zero(n_params: int, activation_bytes: int, world: int, memory: int, on_cpu: bool,
                bf16: bool = False) -> tuple[int, str]:
    """(zero stage, offload) for `--zero auto`: the fastest setting whose estimate fits (see module doc)."""
    budget = ZERO_BUDGET * memory / (world if on_cpu else 1)
    weights, grads, adam = 4 * n_params, 4 * n_params, 8 * n_params
    options = [
        (0, "none", zero0_state(n_params, bf16)),
        (2, "none", weights + (grads + adam) / world),
        (3, "none", (weights + grads + adam) / world),
        (3, "optimizer", (weights + grads) / world),
        (3, "all", 0),
    ]
    for stage, offload, state in options:
        if stage in (2, 3) and world == 1 and offload == "none":
            continue  # splitting over one worker saves nothing
        if state + activation_bytes <= budget:
            return stage, offload
    return 3, "all"


def activation_estimate(config, tokens_per_step: int, bf16: bool, checkpointing: bool,
                        fused_loss: bool = True) -> int:
    """Activation memory of one micro-batch, in bytes: per token and layer 10 x hidden + 4 x
    intermediate values without checkpointing (the attention block's inputs, projections and
    outputs, and the MLP's gate, up, their product and activation), 2 x hidden with it, in bf16 (2
    bytes) or fp32 (4); plus the LM head and loss. With fused_loss (--fused-loss) that is one chunk
    of logits and the weight's gradient accumulator (fused_loss.fused_loss_bytes), not every loss
    token's logits.

    Fitted to peaks measured on one H100 80GB (torch 2.11, bf16, ZeRO-0 FlatMaster, fused loss, no
    checkpointing, rows of 512 tokens): Qwen2.5-1.5B 40.0 GiB at 4,096 tokens (39.6 in 2,048-token
    rows) and 73.2 GiB (then out of memory) at 16,384, i.e. ~2.70 MiB a token, ~49k values a token and
    layer (this counts 51k); SmolLM2-135M 7.39 GiB at 6,144 tokens. With zero0_state's 20 bytes a
    parameter (~17.6 measured: the masters' fp32 gradient lives only during the optimizer step) the
    sum is 2% (135M) to 16% (1.5B, 4,096 tokens) above those peaks (tests/train/test_memory_plan.py)."""
    hidden = getattr(config, "hidden_size", 1024)
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    layers = getattr(config, "num_hidden_layers", 24)
    vocab = getattr(config, "vocab_size", 50000)
    values = 2 * hidden if checkpointing else 10 * hidden + 4 * intermediate
    per_layer = tokens_per_step * values * (2 if bf16 else 4)
    if fused_loss:
        logits = fused_loss_bytes(tokens_per_step, hidden, vocab, bf16)
    else:
        logits = tokens_per_step * vocab * 4 * 3  # logits, their fp32 copy for the loss, the gradient
    return layers * per_layer + logits


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def deep_update(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def deepspeed_config(cfg, stage: int, offload: str, bf16: bool) -> dict:
    zero: dict = {"stage": stage}
    if stage == 3:
        zero.update({
            "stage3_gather_16bit_weights_on_model_save": True,  # else save_16bit_model writes nothing
            "overlap_comm": True,
            "contiguous_gradients": True,
        })
    if offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if offload == "all" and stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    ds = {
        # DeepSpeed only reports with this; ft-train's batches vary in size when cut by tokens.
        "train_micro_batch_size_per_gpu": cfg.batch_size or 1,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if offload in ("optimizer", "all"):
        # DeepSpeed builds its CPU Adam for an offloaded optimizer (cpu_adam op).
        ds["optimizer"] = {"type": "AdamW", "params": {
            "lr": cfg.lr, "betas": list(cfg.betas), "weight_decay": cfg.weight_decay}}
    if cfg.ds_config:
        deep_update(ds, json.loads(Path(cfg.ds_config).read_text()))
    return ds


SMALL_GRAD = 1 << 20  # elements (2 MiB in bf16, under a microsecond to copy): smaller gradients are copied together


class FlatMaster:
    """bf16 model weights and gradients as views into two flat buffers; fp32 master weights
    (one flat tensor, the only one the optimizer sees) and their gradient.

    step: master.grad = grads (fp32), clip, optimizer.step(), weights = master (bf16); or, with
    `fused` (--compile: ft_train.flat_adamw), all of it in one compiled pass.

    With `overwrite` (one micro-batch a step on one worker) a parameter's gradient is copied into
    its view once the backward has it (a post-accumulate hook: autograd hands over the backward's
    own tensor, no add) and the buffer is never zeroed; a parameter the backward left out gets
    zeros (`after_backward`). Otherwise the parameters' .grad are the views and the backward adds
    into them: a read of the old gradient and a write per parameter, and a zeroing pass per step,
    about 8 bytes a parameter where the copy is 4 (1.5B: 14 GB a step against 7). Gradients under
    SMALL_GRAD elements are held to the backward's end and copied together (one multi-tensor
    kernel, not one launch each: a 135M model's 272 copies took 0.5 ms of a 22.6 ms step).
    """

    fused = None  # ft_train.flat_adamw.FusedFlatAdamW: PlainEngine sets it when the blocks compile

    def __init__(self, model: torch.nn.Module, overwrite: bool = False):
        params = [p for p in model.parameters() if p.requires_grad]
        n = sum(p.numel() for p in params)
        device = params[0].device
        self.master = torch.empty(n, dtype=torch.float32, device=device)
        self.weights = torch.empty(n, dtype=torch.bfloat16, device=device)
        self.grads = torch.zeros(n, dtype=torch.bfloat16, device=device)
        self.overwrite = overwrite
        self.params = params
        self.views: list[torch.Tensor] = []
        self.written = [False] * len(params)  # overwrite: which parameters this backward has given a gradient
        self.held: dict[int, torch.Tensor] = {}  # overwrite: small gradients to copy at the backward's end
        at = 0
        with torch.no_grad():
            for i, p in enumerate(params):
                k = p.numel()
                self.master[at:at + k].copy_(p.reshape(-1))
                p.data = self.weights[at:at + k].view_as(p).copy_(p)
                self.views.append(self.grads[at:at + k].view_as(p))
                if overwrite:
                    p.grad = None
                    p.register_post_accumulate_grad_hook(functools.partial(self._take, i))
                else:
                    p.grad = self.views[-1]  # backward accumulates in place, into the buffer
                at += k
        self.master = torch.nn.Parameter(self.master)

    def _take(self, i: int, p: torch.nn.Parameter) -> None:
        g, p.grad = p.grad, None
        if i in self.held:  # a second gradient in one backward (reentrant checkpointing's inner backwards)
            self.held[i] = self.held[i] + g
        elif self.written[i]:
            self.views[i].add_(g)
        elif g.numel() < SMALL_GRAD:
            self.held[i] = g
        else:
            self.views[i].copy_(g)
        self.written[i] = True

    def after_backward(self) -> None:
        """overwrite: the held gradients copied in, zeros for the parameters this backward gave
        no gradient (the view would hold the last step's); run after every backward, captured ones too."""
        if self.overwrite:
            with torch.no_grad():
                if self.held:
                    torch._foreach_copy_([self.views[i] for i in self.held], list(self.held.values()))
                for i, done in enumerate(self.written):
                    if not done:
                        self.views[i].zero_()
            self.held = {}
            self.written = [False] * len(self.written)

    def forget_backward(self) -> None:
        """After a backward cut short (a failed capture, whose work never ran): the next one starts
        afresh, copying every gradient again and with no gradient left behind on a parameter or
        on the master (a step cut short may have set it)."""
        self.master.grad = None
        if self.overwrite:
            for p in self.params:
                p.grad = None
            self.held = {}
            self.written = [False] * len(self.written)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.master]

    def step(self, optimizer, clip: float) -> None:
        with torch.no_grad():
            if self.fused is not None and self.fused.step(optimizer, self.master, self.grads, self.weights, clip,
                                                          zero_grads=not self.overwrite):
                return
            self.master.grad = self.grads.float()
            if clip:
                torch.nn.utils.clip_grad_norm_([self.master], clip)
            optimizer.step()
            self.master.grad = None
            self.weights.copy_(self.master)
            if not self.overwrite:
                self.grads.zero_()

    def state_dict(self) -> dict:
        return {"master": self.master.detach()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.master.copy_(state["master"])
            self.weights.copy_(self.master)




def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


class Engine:
    """What the worker needs of a backend; a subclass sets module, forward_model,
    optimizer and scheduler."""

    graphs = None  # ft_train.step_graphs.StepGraphs: PlainEngine.use_graphs (--cuda-graphs)
    compiled_blocks = 0  # transformer blocks compiled (--compile, PlainEngine)

    def __init__(self, cfg, device: torch.device, total_steps: int):
        self.cfg, self.device = cfg, device
        self.micro = 0  # micro-steps so far (each epoch is a whole number of optimizer steps)
        self.lr_lambda = _lr_lambda(total_steps, max(1, int(cfg.warmup * total_steps)))

    def train(self, mode: bool = True) -> None:
        self.forward_model.train(mode)

    def autocast(self):
        return contextlib.nullcontext()

    def no_sync(self):
        """Around the forward of a micro-step that does not end an optimizer step."""
        return contextlib.nullcontext()

    def boundary(self) -> bool:
        """Whether the micro-step now running ends an optimizer step."""
        return (self.micro + 1) % self.cfg.grad_accum == 0

    def backward(self, loss: torch.Tensor) -> None:
        raise NotImplementedError

    def step(self) -> bool:
        """Called after every micro-step; returns True when an optimizer step happened."""
        raise NotImplementedError

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def peak_lr(self) -> float:
        """The schedule's peak (after warmup): what --lr sets, or a resumed state restored."""
        return float(self.scheduler.base_lrs[0])

    def set_peak_lr(self, lr: float) -> None:
        """Make `lr` the schedule's peak from now on, the current step's lr scaled to match
        (before the first step: --lr-rule loss's, ft_train.recipe.loss_rule_lr).
        A lr that is a device tensor (CUDA graphs read it) is filled in place."""
        scheduler = self.scheduler
        scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
        now = lr * self.lr_lambda(max(scheduler.last_epoch, 0))
        for group in scheduler.optimizer.param_groups:
            group["initial_lr"] = lr
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(now)
            else:
                group["lr"] = now
        scheduler._last_lr = [now] * len(scheduler.base_lrs)

    def full_state_dict(self, dtype: torch.dtype | None = None) -> dict | None:
        """The whole model's weights on rank 0, in the CPU memory (None elsewhere). Call on every rank."""
        state = self._gather_state_dict()
        if state is None:
            return None
        return {k: v.detach().to(dtype=dtype or v.dtype).cpu() for k, v in state.items()}

    def _gather_state_dict(self) -> dict | None:
        return self.module.state_dict() if _rank() == 0 else None

    def save_state(self, folder: Path, tag: str, extra: dict) -> None:
        """The full training state (every rank calls this); `extra` holds the worker's own state."""
        raise NotImplementedError

    def load_state(self, folder: Path, tag: str) -> dict:
        """Restore what save_state wrote; returns its `extra`."""
        raise NotImplementedError


class PlainEngine(Engine):
    """ZeRO-0: the model (DDP-wrapped with several workers, its blocks compiled with --compile),
    AdamW (fused on GPU); in bf16 with FlatMaster unless flat_master=False (then fp32
    weights under bf16 autocast, the older path, kept for the benchmark)."""

    def __init__(self, model, cfg, device: torch.device, world: int, total_steps: int, bf16: bool,
                 flat_master: bool = True, overwrite_grads: bool | None = None):
        super().__init__(cfg, device, total_steps)
        self.world, self.bf16 = world, bf16
        model.to(device)
        self.module = self.forward_model = model
        # one micro-batch a step on one worker: the backward's gradients are copied, not added (FlatMaster)
        overwrite = world == 1 and cfg.grad_accum == 1 if overwrite_grads is None else overwrite_grads
        self.master = FlatMaster(model, overwrite) if bf16 and flat_master else None
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.forward_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile == "on":  # each transformer block, for training steps (ft_train/compile.py)
            from ft_train.compile import compile_blocks

            self.compiled_blocks = compile_blocks(model)
            if self.compiled_blocks:  # the same compiler for the loss's softmax and the optimizer step
                if hasattr(model, "compiled_loss"):
                    model.compiled_loss = True
                if self.master is not None:
                    from ft_train.flat_adamw import FusedFlatAdamW

                    self.master.fused = FusedFlatAdamW()
        params = self.master.parameters() if self.master else model.parameters()
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                           fused=device.type == "cuda")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_lambda)

    def use_graphs(self, shapes: dict, pad_id: int, log=None) -> None:
        """Replay the steps from CUDA graphs (ft_train.step_graphs): one CUDA worker, FlatMaster."""
        from ft_train.step_graphs import StepGraphs, make_capturable

        if self.device.type != "cuda" or self.master is None or self.world > 1:
            raise ValueError("CUDA graphs need one CUDA worker training in bf16 (FlatMaster)")
        make_capturable(self.optimizer, self.device)
        self.graphs = StepGraphs(self, shapes, pad_id, log)

    def autocast(self):
        # FlatMaster's bf16 weights need no autocast; fp32 training needs none either.
        enabled = self.bf16 and self.master is None
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def no_sync(self):
        # DDP all-reduces gradients only on the micro-step that ends an optimizer step.
        if self.world > 1 and not self.boundary():
            return self.forward_model.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.cfg.grad_accum).backward()
        if self.master is not None:
            self.master.after_backward()

    def step(self) -> bool:
        self.micro += 1
        if self.micro % self.cfg.grad_accum:
            return False
        if self.graphs is not None and self.graphs.optimizer_step():
            pass  # replayed (or run, then captured)
        elif self.master is not None:
            self.master.step(self.optimizer, self.cfg.grad_clip)
        else:
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.graphs is not None:  # the lr is a device tensor the graphs read
            from ft_train.step_graphs import step_schedule

            step_schedule(self.scheduler)
        else:
            self.scheduler.step()
        return True

    def save_state(self, folder: Path, tag: str, extra: dict) -> None:
        if _rank() == 0:
            (folder / tag).mkdir(parents=True, exist_ok=True)
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "extra": extra,
                        "master": self.master.state_dict() if self.master else None}, folder / tag / "state.pt")

    def load_state(self, folder: Path, tag: str) -> dict:
        from ft_train.checkpoint import load_torch_state

        state = load_torch_state(folder / tag / "state.pt", map_location=self.device)
        self.module.load_state_dict(state["model"])
        if self.master is not None:
            self.master.load_state_dict(state["master"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return state["extra"]


class DeepSpeedEngine(Engine):
    """DeepSpeed ZeRO 1-3 (with CPU offload), or ZeRO-0 under a user's --ds-config."""

    def __init__(self, model, cfg, stage: int, offload: str, device: torch.device, total_steps: int, bf16: bool):
        import deepspeed

        super().__init__(cfg, device, total_steps)
        self.stage = stage
        ds = deepspeed_config(cfg, stage, offload, bf16)
        optimizer = None
        if "optimizer" not in ds:  # else DeepSpeed builds its own (CPU Adam for an offloaded optimizer)
            optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                          weight_decay=cfg.weight_decay, fused=device.type == "cuda")
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, config=ds,
            model_parameters=model.parameters() if optimizer is None else None,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, self.lr_lambda),
        )
        self.module = self.engine.module
        self.forward_model = self.engine

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # DeepSpeed divides by grad_accum itself

    def step(self) -> bool:
        self.micro += 1
        self.engine.step()  # DeepSpeed counts micro-steps and steps at the boundary
        return self.micro % self.cfg.grad_accum == 0

    def _gather_state_dict(self) -> dict | None:
        if self.stage == 3:  # every rank takes part; rank 0 gets the whole
            return self.engine._zero3_consolidated_16bit_state_dict()
        return super()._gather_state_dict()

    def save_state(self, folder: Path, tag: str, extra: dict) -> None:
        self.engine.save_checkpoint(str(folder), tag=tag, client_state=extra, save_latest=False)

    def load_state(self, folder: Path, tag: str) -> dict:
        from ft_train.checkpoint import check_state_files

        check_state_files(folder / tag)  # DeepSpeed unpickles with weights_only=False
        _, extra = self.engine.load_checkpoint(str(folder), tag=tag)
        return extra or {}


def make_engine(model, cfg, zero, device: torch.device, world: int, total_steps: int) -> Engine:
    """The engine for the plan's ZeRO choice (ft_train.plan.Zero)."""
    if device.type == "cuda":
        avoid_cudnn_attention()
    if zero.deepspeed:
        return DeepSpeedEngine(model, cfg, zero.stage, zero.offload, device, total_steps, zero.bf16)
    return PlainEngine(model, cfg, device, world, total_steps, zero.bf16)


def avoid_cudnn_attention() -> None:
    """Training's SDPA without its cuDNN backend (flash and memory-efficient attention take over).
    Replayed from CUDA graphs, cuDNN attention trained Qwen2.5-Coder-1.5B into NaN by the fourth
    step while the same steps run eagerly stayed finite (bench/bench_graphs.py --cudnn-attention,
    one H200, torch 2.11: results/bench/bench_graphs_cudnn_qwen1.5b_h200.json); without it both
    match. Eagerly too, its bf16 backward has returned NaN gradients on Hopper (pytorch issue
    196678, TRL issue 7181). Process-wide: a training worker runs nothing else."""
    torch.backends.cuda.enable_cudnn_sdp(False)
