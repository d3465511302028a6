"""FlatMaster's optimizer step in one pass over memory, compiled (with --compile).

The eager step reads and writes the 1.78B-parameter flat buffers of a 1.5B model five times:
the bf16 gradients copied to fp32, the clip's norm and its scaling, torch's fused AdamW
(masters, gradients and both moments), the masters copied back to bf16, the gradients zeroed:
about 54 bytes a parameter, 38 of a 124 ms step on one H100 (bench/gpu_profile.py at 1.5B,
docs/benchmarks.md). The same arithmetic written as one function and compiled by inductor is a
reduction (the norm, over the bf16 gradients) and one elementwise kernel that reads each
gradient, master and moment once and writes master, moments, bf16 weight and zeroed gradient:
about 34 bytes a parameter; 32 where the next backward overwrites the gradients instead of adding
to them (FlatMaster.overwrite), so they need no zeroing.

The state stays torch.optim.AdamW's (`step`, `exp_avg`, `exp_avg_sq` for the one master
parameter, its lr from the param group that the scheduler sets), so checkpoints, resume and the
eager step read and write the same state. The update is AdamW's capturable form (lr and step
are device tensors: no host sync, and a CUDA graph can replay it); the clip is
clip_grad_norm_'s (scale by max_norm / (norm + 1e-6) when that is below 1).
"""

from __future__ import annotations

import torch

from ft_train.compile import compile_constants_fixed, failed_before, note_failure


def adamw_flat_(master: torch.Tensor, grads: torch.Tensor, weights: torch.Tensor, exp_avg: torch.Tensor,
                exp_avg_sq: torch.Tensor, step: torch.Tensor, lr: torch.Tensor, clip: float, beta1: float,
                beta2: float, eps: float, weight_decay: float, zero_grads: bool = True) -> None:
    """One AdamW step of the fp32 `master` from the bf16 `grads` (clipped to norm `clip` if
    non-zero), in place: master, moments and step updated, `weights` = master in bf16, grads zeroed
    (unless the next backward overwrites them: FlatMaster.overwrite)."""
    g = grads.float()
    if clip:
        norm = torch.linalg.vector_norm(g)
        g = g * torch.clamp(clip / (norm + 1e-6), max=1.0)
    step.add_(1)
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bias1 = 1 - torch.pow(beta1, step)
    bias2_sqrt = (1 - torch.pow(beta2, step)).sqrt()
    master.mul_(1 - lr * weight_decay)
    master.sub_(exp_avg * (lr / bias1) / (exp_avg_sq.sqrt() / bias2_sqrt + eps))
    weights.copy_(master)
    if zero_grads:
        grads.zero_()


class FusedFlatAdamW:
    """adamw_flat_ on an optimizer's state: torch.compile'd on first use; a compile that fails
    (no triton, no C compiler), or an earlier compile of the blocks or the loss that failed
    (ft_train.compile.failed_before), makes `step` return False: the caller steps eagerly from
    then on; only the process's first failure is said, through `log` (default: stderr)."""

    def __init__(self, compiled: bool = True, log=None):
        self.compiled = compiled
        self.fn = compile_constants_fixed(adamw_flat_, fullgraph=True, dynamic=False) if compiled else adamw_flat_
        self.log = log  # None: stderr (compile.note_failure)
        self.failed: str | None = None
        self._lr: torch.Tensor | None = None  # the lr as a device tensor when the group holds a float

    def step(self, optimizer: torch.optim.Optimizer, master: torch.nn.Parameter, grads: torch.Tensor,
             weights: torch.Tensor, clip: float, zero_grads: bool = True) -> bool:
        if self.failed is not None or (self.compiled and failed_before()):
            return False
        group = optimizer.param_groups[0]
        if len(optimizer.param_groups) != 1 or group.get("amsgrad") or group.get("maximize"):
            return False
        state = optimizer.state[master]
        if not state:  # what AdamW's first step creates, its step on the device (as fused AdamW keeps it)
            state["step"] = torch.zeros((), dtype=torch.float32, device=master.device)
            state["exp_avg"] = torch.zeros_like(master, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(master, memory_format=torch.preserve_format)
        elif state["step"].device != master.device:  # loaded from a state saved on the CPU
            state["step"] = state["step"].to(master.device, torch.float32)
        lr = group["lr"]
        if not isinstance(lr, torch.Tensor):
            if self._lr is None:
                self._lr = torch.zeros((), dtype=torch.float32, device=master.device)
            lr = self._lr.fill_(lr)
        beta1, beta2 = group["betas"]
        try:
            self.fn(master.data, grads, weights, state["exp_avg"], state["exp_avg_sq"], state["step"], lr,
                    float(clip or 0.0), float(beta1), float(beta2), float(group["eps"]),
                    float(group["weight_decay"]), zero_grads)
        except Exception as error:  # noqa: BLE001 - a compile that fails: the eager step from now on
            if isinstance(error, torch.OutOfMemoryError):
                raise
            self.failed = note_failure("the optimizer step", error, self.log)
            return False
        return True
