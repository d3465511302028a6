"""--compile: regional compilation of the transformer blocks, for training steps only.

Compiling the whole model had not finished after 5 minutes on the GPU host's CPU (docs/
benchmarks.md). The blocks of a decoder are one class repeated (Llama's 30 LlamaDecoderLayer),
so each block's forward is compiled with dynamic batch and length and dynamo reuses one graph
for all of them and for every batch shape: the cost is one block's compile, once (PyTorch's
"regional compilation"; a batch of a single row compiles once more: dynamo specializes size 1).
The compiled forward runs only while training with gradients; validation and the accuracy check's
decoding (KV cache, a new length each step) stay eager, as they were. With CUDA graphs on, the
compiled blocks replay inside the step graphs (ft_train.step_graphs). A compile that fails sends
every block back to eager, said once: the run goes on.
"""

from __future__ import annotations

import sys

import torch
from ft_common.decode_graphs import failure_reason


def block_classes(model: torch.nn.Module) -> set[str]:
    """The transformer block class names (transformers' `_no_split_modules`: what device maps and
    FSDP keep whole), e.g. {"LlamaDecoderLayer"}, of the model or of any model inside it: ft-train
    hands in its loss wrapper (worker.CausalLMLoss), which holds the transformers model."""
    names: set[str] = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or ())
    return names


def compile_blocks(model: torch.nn.Module, log=None) -> int:
    """Compile each transformer block's forward for training; the number of blocks (0: none found,
    nothing changed). The parameters and the state dict keep their names. A compile that fails
    turns every block back to eager for the rest of the run, said once through `log` (default:
    a line on stderr), as a failed CUDA graph capture does: the run goes on, slower."""
    names = block_classes(model)
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    fallback = _Fallback(log or _to_stderr)
    for block in blocks:
        block.forward = _for_training(block, block.forward, fallback)  # an instance attribute: __call__ finds it first
    return len(blocks)


def compile_failure(model: torch.nn.Module) -> str | None:
    """Why the model's compiled blocks, or its loss or optimizer step, went back to eager (None: they
    did not, or none were compiled)."""
    for module in model.modules():
        fallback = getattr(vars(module).get("forward"), "fallback", None)
        if fallback is not None and fallback.reason:
            return fallback.reason
    return _FAILED[0][1] if _FAILED else None  # the loss's or the optimizer step's


# Where a run's compiling went, from dynamo's own timers (torch._dynamo.utils): the frames dynamo
# compiled (forwards; their tracing of Python bytecode, AOTAutograd's tracing of the joint graph),
# the backwards compiled lazily at the first backward (a cold cache only: a warm one loads them with
# the forward), inductor's lowering and code generation, the wait for Triton's kernels and the
# loading of compiled modules (what a warm cache still costs). Seconds summed over the process.
COMPILE_TIMERS = {
    "dynamo_s": "_compile.compile_inner",
    "bytecode_s": "bytecode_tracing",
    "aot_s": "create_aot_dispatcher_function",
    "backward_s": "compile_fx.<locals>.bw_compiler",
    "inductor_s": "GraphLowering.compile_to_module",
    "triton_wait_s": "async_compile.wait",
    "module_load_s": "PyCodeCache.load_by_key_path",
}


MAX_RECOMPILES = 10  # guard failures kept in the manifest: enough to name what compiled again


def compile_seconds() -> dict:
    """{"frames": forwards dynamo compiled, "dynamo_s", "backward_s", ...: seconds, "recompiles":
    the first guard that failed for each compile again ("forward: ..."), if any} for the manifest's
    timing ({} where nothing compiled or this torch keeps no such timers)."""
    try:
        from torch._dynamo.utils import compilation_time_metrics as timers
        from torch._dynamo.utils import guard_failures
    except ImportError:
        return {}
    frames = timers.get(COMPILE_TIMERS["dynamo_s"], [])
    if not frames:
        return {}
    out = {"frames": len(frames), **{name: round(sum(timers.get(key, [])), 3) for name, key in COMPILE_TIMERS.items()}}
    recompiles = [f"{getattr(code, 'co_name', code)}: {str(reason).strip().splitlines()[0][:200]}"
                  for code, reasons in guard_failures.items() for reason in reasons]
    if recompiles:
        out["recompiles"] = recompiles[:MAX_RECOMPILES]
    return out


def compile_failed_part() -> str | None:
    """What failed to compile first in this process ("the transformer blocks", "the loss", "the
    optimizer step"), for the run's closing line; None: nothing failed."""
    return _FAILED[0][0] if _FAILED else None


class _Fallback:
    """What every compiled block of one model shares: the first compile that fails sends all of them
    back to eager. It catches what fails in the forward's compile (dynamo, AOTAutograd, inductor,
    triton); a backward compiled lazily that fails raises from backward() as before."""

    def __init__(self, log):
        self.log = log
        self.reason: str | None = None

    def fail(self, error: Exception) -> None:
        self.reason = note_failure(BLOCKS, error, self.log, then="training them eagerly")


# Compile failures in this process. The blocks, the loss's softmax (fused_loss) and the optimizer
# step (flat_adamw) compile with one toolchain: after any of them fails, the others run eagerly
# without trying, and only the first failure is said.
_FAILED: list[tuple[str, str]] = []  # (what, reason)
BLOCKS = "the transformer blocks"


def failed_before() -> bool:
    return bool(_FAILED)


def note_failure(what: str, error: Exception, log=None, then: str = "running it eagerly") -> str:
    """Record a failed compile of `what` and return its reason; say it through `log` (default:
    stderr) if it is the process's first."""
    reason = failure_reason(error)
    if not _FAILED:
        (log or _to_stderr)(f"ft-train: compiling {what} failed ({reason}); {then}")
    _FAILED.append((what, reason))
    return reason


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def compile_constants_fixed(fn, **options):
    """torch.compile(fn, **options), with the Python floats its calls pass compiled as the constants
    they are in ft-train (RMSNorm's epsilon, AdamW's betas and eps, the clip). Traced as symbols
    instead (dynamo's default), a transformer block's first compile ran twice: inductor's pass that
    turns symbolic floats into tensors gave up on the epsilon and restarted the whole analysis, with
    the float fixed. That first attempt is never cached, so it cost every run, warm cache or not:
    on the CPU machine a tiny Llama's warm compile took 3.8 s with it and 2.1 s without."""
    return torch._dynamo.config.patch(specialize_float=True)(torch.compile(fn, **options))


def _for_training(block: torch.nn.Module, forward, fallback: _Fallback):
    compiled = compile_constants_fixed(forward, dynamic=True)
    marked = False  # the marks shape the first compile only: later calls match its dynamic graph

    def dispatch(*args, **kwargs):
        nonlocal marked
        if block.training and torch.is_grad_enabled() and fallback.reason is None:
            if not marked:
                _batch_and_length_dynamic((args, kwargs))
                marked = True
            try:
                return compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any compile failure: eager from here on
                if not_a_compile_failure(error):
                    raise  # e.g. a capture's no_compiling(): step_graphs turns the graphs off, not the compile
                fallback.fail(error)
        return forward(*args, **kwargs)

    dispatch.fallback = fallback
    return dispatch


def not_a_compile_failure(error: Exception) -> bool:
    """Errors that are not a failed compile: a recompile refused under no_compiling(), and running
    out of memory (the eager forward would too)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "fail_on_recompile" in str(error))


def _batch_and_length_dynamic(value) -> None:
    """Mark the batch and length dims of every tensor argument (the hidden states, the rotary
    cos/sin) dynamic before the first call too: else the first batch's shape is compiled as is
    and the second compiles again."""
    if isinstance(value, torch.Tensor):
        for dim in range(min(2, value.dim() - 1)):
            torch._dynamo.maybe_mark_dynamic(value, dim)
    elif isinstance(value, dict):
        for item in value.values():
            _batch_and_length_dynamic(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _batch_and_length_dynamic(item)


def no_compiling():
    """A context in which a compiled block that would compile again (a guard failed) raises,
    naming the guard, instead of compiling: a CUDA graph capture cannot survive a compile, which
    reads the RNG state and syncs (ft_train.step_graphs; pytorch issue 185074)."""
    return torch.compiler.set_stance("fail_on_recompile")
