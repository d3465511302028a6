"""The LM head and its cross-entropy in one pass over row chunks, never the whole [N, V] logits.

    loss = linear_cross_entropy(hidden, lm_head.weight, labels)  # == F.cross_entropy(
                                                                  #    lm_head(hidden).float(), labels, reduction="sum")

The plain loss materialises the target rows' logits in the model's dtype, their fp32 copy and
both gradients: about 12 bytes x N x V, 7 GB at 4k target tokens with Qwen2.5's 151,936-token
vocabulary. Here, as in Liger Kernel's LigerFusedLinearCrossEntropyFunction but in plain PyTorch
(CPU and CUDA), the forward walks the rows a chunk at a time: the chunk's logits, its loss, its
gradient (softmax minus one-hot), the chunk's input gradient, and the weight's gradient summed
over chunks. Only one chunk's logits exist at a time; the backward only scales the stored
gradients by the caller's grad_output (ft-train divides the summed loss by the token count).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ft_train.compile import (
    compile_constants_fixed,
    failed_before,
    not_a_compile_failure,
    note_failure,
)
from ft_train.data import IGNORE  # a label that carries no loss (masked mode)

# A chunk's fp32 logits take at most this much: ~880 rows at Qwen2.5's 151,936-token vocabulary,
# ~2,700 at SmolLM2's 49,152. Bigger than Liger's chunks on purpose: on the GPU host each kernel
# launch costs ~37 us of CPU time and a chunk is ~10 launches, so a few big chunks keep the GPU
# fed, while 512 MiB is still small beside the 7-22 GB the plain loss takes at 1.5B.
CHUNK_LOGITS_BYTES = 512 << 20


def chunk_rows_for(vocab: int) -> int:
    """Rows per chunk: as many as fit CHUNK_LOGITS_BYTES of fp32 logits, at least one; a multiple of
    ROW_MULTIPLE where that many fit (at 1.5B an 883-row chunk's matmuls ran on cuBLAS's slower
    sm80 kernels, 1.35 ms each, ~300 TFLOP/s: bench/gpu_profile.py, docs/benchmarks.md)."""
    rows = max(1, CHUNK_LOGITS_BYTES // (4 * vocab))
    return rows - rows % ROW_MULTIPLE if rows >= ROW_MULTIPLE else rows


ROW_MULTIPLE = 128  # chunk rows, and (ft_train.step_graphs) a graphed batch's loss positions


def fused_loss_bytes(rows: int, hidden: int, vocab: int, bf16: bool) -> int:
    """Peak memory of linear_cross_entropy beyond its inputs, for the activation estimate: one
    chunk's logits (fp32, and in bf16 the linear's bf16 output or the gradient's bf16 cast beside
    them), the fp32 weight-gradient accumulator (in bf16 with each chunk's bf16 product beside it)
    and the input gradient."""
    extra = 2 if bf16 else 0
    chunk = min(rows, chunk_rows_for(vocab)) * vocab * (4 + extra)
    return chunk + vocab * hidden * (4 + extra) + rows * hidden * (4 - extra)


@torch.compiler.disable  # the chunk loop's trip count follows N: compiled, it would recompile per batch
def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         bias: torch.Tensor | None = None, chunk_rows: int | None = None,
                         masked: bool = False, compiled: bool = False) -> torch.Tensor:
    """Summed NLL (fp32 scalar) of `labels` [N] under logits = hidden [N, H] @ weight [V, H].T + bias.

    Logits are computed in the inputs' dtype, as nn.Linear computes them (under autocast, in
    autocast's dtype), then upcast to fp32 for the softmax. Every label must be a class id (the
    caller has already kept only the rows that carry a loss), unless `masked`: then rows labelled
    IGNORE (-100) add nothing to the loss or the gradients, with no host sync and no
    data-dependent shape (what a CUDA-graph step needs: ft_train.step_graphs). `compiled`
    (--compile): each chunk's softmax, loss and gradient as one compiled kernel (`softmax_nll`).
    """
    device = hidden.device.type
    if torch.is_autocast_enabled(device):  # cast as autocast would cast nn.Linear's inputs; autograd casts back
        dtype = torch.get_autocast_dtype(device)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    rows = max(1, min(len(hidden), chunk_rows or chunk_rows_for(weight.shape[0])))
    with torch.autocast(device, enabled=False):
        inputs = (hidden, weight, bias)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
            return _LinearCrossEntropy.apply(hidden, weight, bias, labels, rows, masked, compiled)
        return _chunked(hidden, weight, bias, labels, rows, (False, False, False), masked)[0]


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, rows, masked, compiled):
        loss, grads = _chunked(hidden, weight, bias, labels, rows, ctx.needs_input_grad[:3], masked, compiled)
        ctx.grads = grads
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError("linear_cross_entropy: a second backward through the same loss (the first "
                               "consumed the gradients computed in the forward)")
        # In place: a second copy of an fp32 [V, H] gradient is what this function avoids.
        scaled = [None if g is None else g.mul_(grad_loss).to(dtype)
                  for g, dtype in zip(grads, ctx.dtypes, strict=True)]
        return *scaled, None, None, None, None


def _chunked(hidden, weight, bias, labels, rows, need, masked=False, compiled=False):
    """(summed loss, [grad_hidden, grad_weight, grad_bias] for grad_output 1; None where not needed).
    `masked`: rows labelled IGNORE count for nothing (their gradient rows are zero)."""
    fused = _compiled_softmax_nll() if compiled and any(need) else None
    need_hidden, need_weight, need_bias = need
    # Gradients of low-precision weights are summed in fp32 and cast once, so no precision is lost
    # over many chunks.
    grad_hidden = torch.empty_like(hidden) if need_hidden else None
    grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
    grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias else None
    loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, len(hidden), rows):
        x, y = hidden[start:start + rows], labels[start:start + rows].unsqueeze(1)
        keep = None
        if masked:
            keep = (y != IGNORE).float()
            y = y.clamp_min(0)  # any class id: the row's loss and gradient are multiplied by 0
        if fused is not None and len(x) > 1:  # one row would compile again (dynamo specialises size 1)
            logits = F.linear(x, weight, bias)
            nll, grad = fused(logits, y, keep)
            loss += nll
            if grad_bias is not None:
                grad_bias += grad.float().sum(0)
            _chunk_grads(grad, x, weight, grad_hidden, grad_weight, start, rows)
            continue
        logits = F.linear(x, weight, bias).float()  # fp32 logits are the linear's own output, no copy
        # log-softmax in place: the chunk's logits become its probabilities
        target = logits.gather(1, y)
        top = logits.amax(1, keepdim=True)
        probs = logits.sub_(top).exp_()
        total = probs.sum(1, keepdim=True)
        nll = top + total.log() - target
        loss += (nll if keep is None else nll * keep).sum()
        if not any(need):
            continue
        grad = probs.div_(total).scatter_add_(1, y, probs.new_full(y.shape, -1.0))  # softmax - one-hot
        if keep is not None:
            grad.mul_(keep)
        if grad_bias is not None:
            grad_bias += grad.sum(0)
        grad = grad.to(x.dtype)  # the logits' gradient as the linear's backward sees it
        _chunk_grads(grad, x, weight, grad_hidden, grad_weight, start, rows)
    return loss, [grad_hidden, grad_weight, grad_bias]


def _chunk_grads(grad, x, weight, grad_hidden, grad_weight, start, rows):
    """One chunk's share of the input and weight gradients, from its logits' gradient `grad`."""
    if grad_hidden is not None:
        torch.mm(grad, weight, out=grad_hidden[start:start + rows])
    if grad_weight is None:
        return
    if grad_weight.dtype == x.dtype:
        grad_weight.addmm_(grad.T, x)
    else:  # a low-precision product (no mixed-dtype addmm on the CPU), summed in fp32
        grad_weight += grad.T @ x


def softmax_nll(logits, y, keep):
    """One chunk's (summed NLL, softmax - one-hot in the logits' dtype), the math of _chunked in
    fp32. Eagerly it is no faster than _chunked's in-place steps; compiled (`compiled=True`) it is a
    reduction and one elementwise pass that reads the bf16 logits twice and writes their bf16
    gradient once, where the steps above read and write the fp32 logits some ten times (at 1.5B
    three 883-row chunks a step: about 20 GB)."""
    z = logits.float()
    top = z.amax(1, keepdim=True)
    e = (z - top).exp()
    total = e.sum(1, keepdim=True)
    nll = top + total.log() - z.gather(1, y)
    onehot = torch.arange(z.shape[1], device=z.device) == y
    grad = e / total - onehot.float()
    if keep is not None:
        nll, grad = nll * keep, grad * keep
    return nll.sum(), grad.to(logits.dtype)


_COMPILED: dict = {}


def _compiled_softmax_nll():
    """softmax_nll compiled once per process, its rows dynamic; eagerly after a failed compile
    (ft_train.compile.note_failure: said once on stderr)."""
    if "fn" not in _COMPILED:
        compiled = compile_constants_fixed(softmax_nll, dynamic=False)

        def run(logits, y, keep):
            for t in (logits, y, keep):
                if t is not None:
                    torch._dynamo.maybe_mark_dynamic(t, 0)
            if failed_before():  # the blocks' or the optimizer's compile failed: this one would too
                return softmax_nll(logits, y, keep)
            try:
                return compiled(logits, y, keep)
            except Exception as error:  # noqa: BLE001 - a compile that fails: eager from now on
                if not_a_compile_failure(error):
                    raise
                note_failure("the loss", error)
                return softmax_nll(logits, y, keep)

        _COMPILED["fn"] = run
    return _COMPILED["fn"]
