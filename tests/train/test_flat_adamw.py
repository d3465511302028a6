"""FlatMaster's compiled optimizer step (ft_train.flat_adamw, --compile): torch's AdamW with
clip_grad_norm_ in numbers and in state, so checkpoints and resume do not care which ran."""

from __future__ import annotations

import copy

import pytest
import torch
from ft_train.flat_adamw import FusedFlatAdamW

N = 1000


def grads_at(i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + i)
    return (torch.randn(N, generator=g) * (3.0 if i % 2 else 0.1)).to(torch.bfloat16)  # clipped, then not


def setup(lr_tensor: bool = False):
    torch.manual_seed(0)
    master = torch.nn.Parameter(torch.randn(N))
    weights = master.detach().to(torch.bfloat16)
    optimizer = torch.optim.AdamW([master], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    if lr_tensor:  # as step_graphs.make_capturable leaves it
        optimizer.param_groups[0]["lr"] = torch.tensor(1e-2)
    return master, weights, optimizer


def torch_step(master, weights, optimizer, grads, clip):
    master.grad = grads.float()
    torch.nn.utils.clip_grad_norm_([master], clip)
    optimizer.step()
    master.grad = None
    weights.copy_(master)


@pytest.mark.parametrize("lr_tensor", [False, True])
def test_fused_steps_are_torchs_adamw_with_clipping(lr_tensor):
    want = setup(lr_tensor)
    got = setup(lr_tensor)
    fused = FusedFlatAdamW(compiled=False)
    for i in range(6):
        torch_step(*want, grads_at(i), clip=1.0)
        grads = grads_at(i)
        assert fused.step(got[2], got[0], grads, got[1], clip=1.0)
        assert not grads.any()  # zeroed for the next accumulation
    assert torch.allclose(got[0], want[0], atol=1e-6)
    assert torch.equal(got[1], got[0].detach().to(torch.bfloat16))
    s_got, s_want = got[2].state[got[0]], want[2].state[want[0]]
    assert s_got["step"].item() == s_want["step"].item() == 6
    assert torch.allclose(s_got["exp_avg"], s_want["exp_avg"], atol=1e-7)
    assert torch.allclose(s_got["exp_avg_sq"], s_want["exp_avg_sq"], atol=1e-7)


def test_a_state_goes_either_way_between_the_fused_and_the_eager_step():
    """Resume: a state saved after fused steps trains on under torch's step, and the reverse."""
    a, b = setup(), setup()
    fused = FusedFlatAdamW(compiled=False)
    for i in range(3):
        fused.step(a[2], a[0], grads_at(i), a[1], clip=1.0)
        torch_step(*b, grads_at(i), clip=1.0)
    eager_after_fused, fused_after_eager = setup(), setup()
    for (master, _weights, optimizer), (src_master, src_opt) in ((eager_after_fused, (a[0], a[2])),
                                                                (fused_after_eager, (b[0], b[2]))):
        with torch.no_grad():
            master.copy_(src_master)
        optimizer.load_state_dict(copy.deepcopy(src_opt.state_dict()))  # as from a file: no shared moments
    for i in range(3, 6):
        torch_step(*eager_after_fused, grads_at(i), clip=1.0)
        FusedFlatAdamW(compiled=False).step(fused_after_eager[2], fused_after_eager[0], grads_at(i),
                                             fused_after_eager[1], clip=1.0)
        torch_step(*b, grads_at(i), clip=1.0)
    assert torch.allclose(eager_after_fused[0], b[0], atol=1e-6)
    assert torch.allclose(fused_after_eager[0], b[0], atol=1e-6)


def test_compiled_it_gives_the_same_numbers():
    want, got = setup(), setup()
    fused = FusedFlatAdamW()  # torch.compile: on this machine inductor's C++ backend
    for i in range(3):
        torch_step(*want, grads_at(i), clip=1.0)
        assert fused.step(got[2], got[0], grads_at(i), got[1], clip=1.0), fused.failed
    assert torch.allclose(got[0], want[0], atol=1e-6)


def test_a_compile_that_fails_is_said_once_and_the_step_goes_back_to_eager(monkeypatch):
    lines = []
    fused = FusedFlatAdamW(log=lines.append)

    def broken(*args, **kwargs):
        raise RuntimeError("inductor: no working C++ compiler")

    fused.fn = broken
    master, weights, optimizer = setup()
    before = master.detach().clone()
    assert not fused.step(optimizer, master, grads_at(0), weights, clip=1.0)
    assert torch.equal(master.detach(), before)  # nothing half-applied
    assert not fused.step(optimizer, master, grads_at(1), weights, clip=1.0)
    assert len(lines) == 1 and "no working C++ compiler" in lines[0]


def test_flat_master_steps_through_the_fused_step_when_given_one():
    from ft_train.engine import FlatMaster

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)).to(torch.bfloat16)

    results = []
    for fused in (None, FusedFlatAdamW(compiled=False)):
        m = model()
        flat = FlatMaster(m)
        flat.fused = fused
        optimizer = torch.optim.AdamW(flat.parameters(), lr=1e-2)
        for i in range(3):
            m(torch.randn(4, 8, generator=torch.Generator().manual_seed(i)).to(torch.bfloat16)).sum().backward()
            flat.step(optimizer, clip=1.0)
            assert not flat.grads.any()
        results.append(flat.master.detach().clone())
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_after_the_blocks_failed_to_compile_it_does_not_try(monkeypatch):
    from ft_train import compile as ft_compile

    ft_compile.note_failure("the transformer blocks", RuntimeError("no C++ compiler"), lambda line: None)
    fused = FusedFlatAdamW(log=lambda line: pytest.fail(f"said again: {line}"))
    fused.fn = lambda *a, **k: pytest.fail("tried to compile")
    master, weights, optimizer = setup()
    assert not fused.step(optimizer, master, grads_at(0), weights, clip=1.0)


class _Branchy(torch.nn.Module):
    """A weight shared by two reentrant-checkpointed segments (two gradients in one backward) and
    a layer that some steps leave out (no gradient at all in those steps)."""

    def __init__(self):
        super().__init__()
        self.shared, self.sometimes = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

    def forward(self, x, use_sometimes: bool):
        from torch.utils.checkpoint import checkpoint

        x = checkpoint(self.shared, x, use_reentrant=True)
        x = checkpoint(self.shared, torch.tanh(x), use_reentrant=True)
        return self.sometimes(x) if use_sometimes else x


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("held", [True, False], ids=["held-to-the-end", "copied-at-once"])
def test_overwritten_gradients_train_as_accumulated_ones(fused, held, monkeypatch):
    """FlatMaster(overwrite=True) copies each gradient into the buffer instead of adding it to a
    zeroed one (small ones together at the backward's end, others as they come): the same
    updates, a left-out layer's gradient zero (not the step before's), a weight used twice gets
    both gradients."""
    from ft_train import engine
    from ft_train.engine import FlatMaster

    monkeypatch.setattr(engine, "SMALL_GRAD", 1 << 20 if held else 0)

    results = []
    for overwrite in (False, True):
        torch.manual_seed(0)
        m = _Branchy().to(torch.bfloat16)
        flat = FlatMaster(m, overwrite=overwrite)
        flat.fused = FusedFlatAdamW(compiled=False) if fused else None
        optimizer = torch.optim.AdamW(flat.parameters(), lr=1e-2)
        grads = []
        for i in range(4):
            x = torch.randn(4, 8, generator=torch.Generator().manual_seed(i)).to(torch.bfloat16).requires_grad_()
            m(x, use_sometimes=i % 2 == 0).square().sum().backward()
            flat.after_backward()
            grads.append(flat.grads.clone())
            flat.step(optimizer, clip=1.0)
        results.append((grads, flat.master.detach().clone()))
        if overwrite:
            assert all(p.grad is None for p in m.parameters())
            assert flat.grads.any()  # not zeroed: the next backward overwrites it
    (acc_grads, acc_master), (over_grads, over_master) = results
    for a, b in zip(acc_grads, over_grads, strict=True):
        assert torch.equal(a, b)
    assert not over_grads[1][-(8 * 8 + 8):].any()  # step 1 left `sometimes` out: zeros, not step 0's
    assert torch.equal(acc_master, over_master)


def test_a_backward_cut_short_is_forgotten():
    """A failed capture's backward leaves hooks' bookkeeping (and maybe a gradient on a parameter)
    behind; after forget_backward the next backward's gradients are its own, not added to those."""
    from ft_train.engine import FlatMaster

    torch.manual_seed(0)
    m = _Branchy().to(torch.bfloat16)
    flat = FlatMaster(m, overwrite=True)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    m(x, use_sometimes=True).square().sum().backward()
    flat.after_backward()
    want = flat.grads.clone()
    m(x * 3, use_sometimes=True).square().sum().backward()  # cut short: no after_backward
    m.sometimes.bias.grad = torch.ones_like(m.sometimes.bias)  # handed over, not yet taken
    flat.master.grad = torch.ones_like(flat.master)  # a step cut short
    flat.forget_backward()
    assert flat.master.grad is None
    m(x, use_sometimes=True).square().sum().backward()
    flat.after_backward()
    assert torch.equal(flat.grads, want)
