"""--compile: regional compilation of the transformer blocks, for training steps only.

Compiling the whole model had not finished after 5 minutes on the GPU host's CPU (docs/
benchmarks.md). The blocks of a decoder are one class repeated (Llama's 30 LlamaDecoderLayer),
so each block's forward is compiled with dynamic batch and length and dynamo reuses one graph
for all of them and for every batch shape: the cost is one block's compile, once (PyTorch's
"regional compilation"; a batch of a single row compiles once more: dynamo specializes size 1). The compiled forward runs only while training with gradients; validation and
the accuracy check's decoding (KV cache, a new length each step) stay eager, as they were.
"""

from __future__ import annotations

import torch


def block_classes(model: torch.nn.Module) -> set[str]:
    """The transformer block class names (transformers' `_no_split_modules`: what device maps and
    FSDP keep whole), e.g. {"LlamaDecoderLayer"}, of the model or of any model inside it: ft-train
    hands in its loss wrapper (worker.CausalLMLoss), which holds the transformers model."""
    names: set[str] = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or ())
    return names


def compile_blocks(model: torch.nn.Module) -> int:
    """Compile each transformer block's forward for training; the number of blocks (0: none found,
    nothing changed). The parameters and the state dict keep their names."""
    names = block_classes(model)
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    for block in blocks:
        block.forward = _for_training(block, block.forward)  # an instance attribute: __call__ finds it first
    return len(blocks)


def _for_training(block: torch.nn.Module, forward):
    compiled = torch.compile(forward, dynamic=True)
    marked = False  # the marks shape the first compile only: later calls match its dynamic graph

    def dispatch(*args, **kwargs):
        nonlocal marked
        if block.training and torch.is_grad_enabled():
            if not marked:
                _batch_and_length_dynamic((args, kwargs))
                marked = True
            return compiled(*args, **kwargs)
        return forward(*args, **kwargs)

    return dispatch


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
