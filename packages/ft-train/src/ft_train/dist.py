"""The few collectives the worker needs; each also works without torch.distributed (one process)."""

from __future__ import annotations

import torch


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def all_sum(*values: torch.Tensor | float) -> list[float]:
    """Sum numbers (tensors on any device, or floats) over every rank; one sync, floats back."""
    dist = torch.distributed
    on_gpu = [v.device for v in values if isinstance(v, torch.Tensor) and v.device.type == "cuda"]
    device = on_gpu[0] if on_gpu else torch.device("cpu")
    if dist.is_initialized():
        # gloo reduces host tensors; nccl only device tensors, even when every value is a float.
        gloo = dist.get_backend() == "gloo"
        device = torch.device("cpu") if gloo else torch.device("cuda", torch.cuda.current_device())
    t = torch.stack([torch.as_tensor(v).detach().to(device, torch.float64).reshape(()) for v in values])
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def all_gather(obj) -> list:
    """Every rank's `obj`, in rank order."""
    if not torch.distributed.is_initialized():
        return [obj]
    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
