"""The chunked LM head + cross-entropy (ft_train.fused_loss): the plain loss's numbers, one chunk's
logits at a time, and ft-train's model loss (CausalLMLoss) on it, tied embeddings and FlatMaster
included; ZeRO-3's placeholder weight takes the plain path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ft_train import fused_loss, worker
from ft_train.config import TrainConfig
from ft_train.data import IGNORE, collate
from ft_train.fused_loss import linear_cross_entropy
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

N, H, V = 50, 16, 101  # N rows, chunks of 8 (the last one 2 rows)


class Made(TorchDispatchMode):
    """Records (op, shape, dtype) of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.tensors = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.tensors += [(str(func), tuple(t.shape), t.dtype) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out

    def shapes(self) -> set:
        return {shape for _, shape, _ in self.tensors}


def inputs(dtype=torch.float32, bias=False, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, H, generator=g).to(dtype).requires_grad_()
    w = (0.3 * torch.randn(V, H, generator=g)).to(dtype).requires_grad_()
    b = torch.randn(V, generator=g).to(dtype).requires_grad_() if bias else None
    return x, w, b, torch.randint(0, V, (n,), generator=g)


def reference(x, w, b, y):
    return F.cross_entropy(F.linear(x, w, b).float(), y, reduction="sum")


def loss_and_grads(fn, x, w, b, y, scale=0.37):
    """The loss and the gradients of loss * scale (the backward must scale by grad_output)."""
    leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
    for t in leaves:
        t.grad = None
    loss = fn(x, w, b, y)
    (loss * scale).backward()
    return loss.detach(), [None if t is None or t.grad is None else t.grad.clone() for t in (x, w, b)]


@pytest.mark.parametrize("bias", [False, True])
def test_fp32_loss_and_grads_equal_the_plain_loss_over_uneven_chunks(bias):
    x, w, b, y = inputs(bias=bias)
    want, want_grads = loss_and_grads(reference, x, w, b, y)
    got, grads = loss_and_grads(lambda *a: linear_cross_entropy(a[0], a[1], a[3], a[2], chunk_rows=8), x, w, b, y)
    assert got.dtype == torch.float32 and got.shape == ()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    for g, ref in zip(grads, want_grads, strict=True):
        if ref is None:
            assert g is None
        else:
            torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-6)


def test_bf16_weight_gradient_is_summed_in_fp32_over_many_chunks():
    """One row a chunk: the weight's gradient sums 512 bf16 products. Summed in fp32 it is as close
    to the exact gradient (fp32 math on the same bf16 inputs) as the plain bf16 loss's is."""
    x, w, _, y = inputs(torch.bfloat16, n=512)
    exact_loss, exact = loss_and_grads(reference, x.detach().float().requires_grad_(),
                                       w.detach().float().requires_grad_(), None, y)
    want_loss, want = loss_and_grads(reference, x, w, None, y)
    got_loss, got = loss_and_grads(lambda *a: linear_cross_entropy(a[0], a[1], a[3], chunk_rows=1), x, w, None, y)
    assert got[0].dtype == got[1].dtype == torch.bfloat16
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=0)  # fp32 softmax of the same bf16 logits

    def error(g, i):
        return ((g[i].float() - exact[i]).norm() / exact[i].norm()).item()

    for i in (0, 1):  # the input's and the weight's gradient
        assert error(got, i) <= 1.5 * error(want, i) + 1e-4, (i, error(got, i), error(want, i))


def test_autocast_computes_the_logits_in_its_dtype():
    """fp32 weights under bf16 autocast (PlainEngine without FlatMaster): logits in bf16 as
    nn.Linear's would be, gradients back in fp32, within bf16 rounding of the plain loss."""
    x, w, _, y = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, want_grads = loss_and_grads(reference, x, w, None, y)
        with Made() as made:
            got, grads = loss_and_grads(lambda *a: linear_cross_entropy(a[0], a[1], a[3], chunk_rows=8), x, w, None, y)
    assert {dtype for op, shape, dtype in made.tensors if "mm" in op and shape == (8, V)} == {torch.bfloat16}
    torch.testing.assert_close(got, want, rtol=1e-3, atol=0)
    for g, ref in zip(grads[:2], want_grads[:2], strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, ref, rtol=2e-2, atol=2e-2 * ref.abs().max().item())


def test_only_one_chunk_of_logits_exists_at_a_time(monkeypatch):
    x, w, b, y = inputs(bias=True)
    def widest_chunk(**kw) -> int:
        """The most rows of any [rows, V] (or [V, rows]) tensor made; [V, H] is the weight's gradient."""
        with Made() as made:
            linear_cross_entropy(x, w, y, b, **kw).backward()
        wide = {shape for shape in made.shapes() if len(shape) == 2 and V in shape and H not in shape}
        return max(min(shape) for shape in wide)

    assert widest_chunk(chunk_rows=8) == 8
    # Without chunk_rows the chunk is what CHUNK_LOGITS_BYTES of fp32 logits hold.
    monkeypatch.setattr(fused_loss, "CHUNK_LOGITS_BYTES", 5 * V * 4)
    assert widest_chunk() == 5


def test_the_default_chunk_fits_its_budget():
    for vocab in (49152, 151936, 300_000_000):
        rows = fused_loss.chunk_rows_for(vocab)
        assert rows >= 1 and (rows == 1 or rows * vocab * 4 <= fused_loss.CHUNK_LOGITS_BYTES)
    assert 256 <= fused_loss.chunk_rows_for(151936) <= 1024  # ~256-512 MiB of fp32 logits at Qwen2.5's vocabulary


def test_no_rows_is_a_zero_loss_with_zero_gradients():
    x, w, b, y = inputs(bias=True, n=0)
    loss, (gx, gw, gb) = loss_and_grads(lambda *a: linear_cross_entropy(a[0], a[1], a[3], a[2]), x, w, b, y)
    assert loss.item() == 0.0 and gx.shape == (0, H)
    assert torch.equal(gw, torch.zeros_like(w)) and torch.equal(gb, torch.zeros_like(b))


def test_no_gradient_is_computed_that_is_not_needed():
    x, w, _, y = inputs()
    want = reference(x, w, None, y)
    w.requires_grad_(False)  # a frozen head: no [V, H] gradient is made
    with Made() as made:
        got = linear_cross_entropy(x, w, y, chunk_rows=8)
        got.backward()
    assert (V, H) not in made.shapes() and w.grad is None and x.grad.shape == (N, H)
    torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=0)
    x.requires_grad_(False)  # nothing to differentiate: no gradient of any kind, no graph
    with Made() as made:
        got = linear_cross_entropy(x, w, y, chunk_rows=8)
    assert not got.requires_grad and {(V, H), (N, H)}.isdisjoint(made.shapes())
    x.requires_grad_(True)
    w.requires_grad_(True)
    with torch.no_grad(), Made() as made:  # evaluation
        got = linear_cross_entropy(x, w, y, chunk_rows=8)
    assert not got.requires_grad and {(V, H), (N, H)}.isdisjoint(made.shapes())
    torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=0)


def test_a_second_backward_is_refused():
    x, w, _, y = inputs()
    loss = linear_cross_entropy(x, w, y)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward"):
        loss.backward()


# --- CausalLMLoss on a real (tiny, tied) model ---

ROWS = [{"ids": [10 + i, 11 + i, 12 + i, 13 + i, 14 + i], "labels": [IGNORE, 12 + i, 13 + i, 14 + i, IGNORE]}
        for i in range(0, 40, 5)]


def _engine(tiny_model, fused: bool, bf16: bool, grad_accum: int = 1):
    from ft_train.engine import PlainEngine
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig(lr=1e-3, batch_size=4, grad_clip=1.0, warmup=0.0, ctx_len=16, grad_accum=grad_accum,
                      layout="group")
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied, as SmolLM2 and Qwen2.5
    return PlainEngine(worker.CausalLMLoss(model, fused), cfg, torch.device("cpu"), 1, total_steps=10, bf16=bf16), cfg


def _spy(monkeypatch) -> list:
    calls = []

    def spy(*args, **kw):
        calls.append(1)
        return linear_cross_entropy(*args, **kw)

    monkeypatch.setattr(worker, "linear_cross_entropy", spy)
    return calls


def test_tied_head_trains_as_the_plain_loss_in_fp32(tiny_model, monkeypatch):
    """The head's gradient reaches the shared embedding weight and adds to the embedding's own:
    three AdamW steps end with the plain loss's losses and weights."""
    calls = _spy(monkeypatch)
    runs = {}
    for fused in (False, True):
        engine, cfg = _engine(tiny_model, fused, bf16=False)
        losses = [worker.train_step(engine, [[r] for r in ROWS[i::3]], True, cfg, pad_id=0).loss_sum.item()
                  for i in range(3)]
        runs[fused] = losses, engine.module.state_dict()
    assert len(calls) == 3  # the fused path ran (and only for the fused engine)
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    assert runs[True][0][0] != runs[True][0][-1]  # it trained
    for name, want in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][name], want, rtol=1e-4, atol=1e-5, msg=name)


def test_flat_master_gradients_land_in_the_flat_buffer_as_before(tiny_model):
    """bf16 FlatMaster: the fused loss's gradients accumulate into the same flat bf16 buffer
    (the parameters' .grad stay views of it), within bf16 rounding of the plain loss's."""
    grads, losses = {}, {}
    for fused in (False, True):
        engine, cfg = _engine(tiny_model, fused, bf16=True, grad_accum=2)
        batch = [[r] for r in ROWS[:4]]
        assert not worker.train_step(engine, batch, True, cfg, pad_id=0).stepped
        flat = engine.master.grads
        assert all(p.grad.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
                   for p in engine.module.parameters())
        grads[fused] = flat.float().clone()
        assert worker.train_step(engine, batch, True, cfg, pad_id=0).stepped
        losses[fused] = worker.train_step(engine, batch, True, cfg, pad_id=0).loss_sum.item()
    assert grads[True].abs().sum() > 0
    assert ((grads[True] - grads[False]).norm() / grads[False].norm()).item() < 1e-2
    assert losses[True] == pytest.approx(losses[False], rel=1e-2)


def test_zero3_placeholder_head_takes_the_module_path(tiny_model, monkeypatch):
    """DeepSpeed ZeRO-3 leaves an empty placeholder weight (with a ds_id) that only the head's
    own forward hooks gather: CausalLMLoss calls the module then, and gets the plain loss."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    x = collate([[r] for r in ROWS[:3]], "group", 16, pad_id=0)
    with torch.no_grad():
        want = worker.CausalLMLoss(model, fused=False)(**x)
    calls = _spy(monkeypatch)
    weight = model.get_output_embeddings().weight.detach().clone()
    head = torch.nn.Linear(H, weight.shape[0], bias=False)
    full, head.weight = weight, torch.nn.Parameter(torch.empty(0))  # as partitioned
    head.weight.ds_id = 0

    def gather(module, args):
        module.weight.data = full

    def release(module, args, out):
        module.weight.data = torch.empty(0)

    head.register_forward_pre_hook(gather)
    head.register_forward_hook(release)
    model.lm_head = head
    assert not worker.fusable(head)
    with torch.no_grad():
        got = worker.CausalLMLoss(model)(**x)
    assert calls == [] and head.weight.numel() == 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    del head.weight.ds_id  # an empty weight alone says it too
    assert not worker.fusable(head)
    head.weight.data = full
    assert worker.fusable(head)


def test_the_activation_estimate_counts_one_chunk_not_every_tokens_logits():
    from ft_train.data import default_batch_tokens
    from ft_train.engine import activation_estimate
    from transformers import Qwen2Config

    qwen = Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       vocab_size=151936)  # Qwen2.5-1.5B's shape
    for tokens in (4096, 12288):
        plain = activation_estimate(qwen, tokens, True, False, fused_loss=False)
        fused = activation_estimate(qwen, tokens, True, False, fused_loss=True)
        assert plain - fused > tokens * 151936 * 12 - 3e9  # the fused loss's own term is under 3 GB
    assert activation_estimate(qwen, 4096, True, False) == activation_estimate(qwen, 4096, True, False, True)
    h100 = 80 * 10**9

    def fits(fused):
        return lambda tokens: activation_estimate(qwen, tokens, True, False, fused) <= 0.6 * h100

    assert default_batch_tokens(True, fits(False)) == 6144
    assert default_batch_tokens(True, fits(True)) == 12288


@pytest.mark.parametrize("masked", [False, True])
def test_the_compiled_softmax_gives_the_eager_loss_and_grads(masked):
    """--compile's path (softmax_nll compiled, rows dynamic) over chunks of 8, 8, ... and a last
    chunk of one row (taken eagerly: dynamo would compile size 1 again): the eager path's numbers."""
    x, w, _, y = inputs(n=41)
    if masked:
        y[[3, 17, 40]] = IGNORE
    want, want_grads = loss_and_grads(
        lambda *a: linear_cross_entropy(a[0], a[1], a[3], chunk_rows=8, masked=masked), x, w, None, y)
    got, got_grads = loss_and_grads(
        lambda *a: linear_cross_entropy(a[0], a[1], a[3], chunk_rows=8, masked=masked, compiled=True), x, w, None, y)
    assert torch.allclose(got, want, rtol=1e-5)
    for g, h in zip(got_grads[:2], want_grads[:2], strict=True):
        assert torch.allclose(g, h, atol=1e-6)
    from ft_train import compile as ft_compile

    assert not ft_compile.failed_before()  # it compiled, it did not fall back


def test_softmax_nll_is_the_chunk_math():
    """The function that gets compiled, eagerly: the plain cross-entropy and its gradient."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, V, generator=g, requires_grad=True)
    y = torch.randint(0, V, (6, 1), generator=g)
    keep = torch.tensor([[1.0], [0.0], [1.0], [1.0], [0.0], [1.0]])
    nll, grad = fused_loss.softmax_nll(logits.detach(), y, keep)
    want = (F.cross_entropy(logits, y[:, 0], reduction="none") * keep[:, 0]).sum()
    want.backward()
    assert torch.allclose(nll, want.detach()) and torch.allclose(grad, logits.grad, atol=1e-6)


def test_chunk_rows_are_a_multiple_of_128_where_that_many_fit():
    assert fused_loss.chunk_rows_for(151936) % fused_loss.ROW_MULTIPLE == 0  # 768, not 883
    assert fused_loss.chunk_rows_for(49152) % fused_loss.ROW_MULTIPLE == 0
    assert fused_loss.chunk_rows_for(10**9) == 1
