"""--cuda-graphs (ft_train.step_graphs): fixed-shape batches that give the same loss and gradients
as the batches they pad, the masked fused loss, when the driver turns graphs on, the capturable
optimizer's lr; and on a CUDA machine, graph-replayed training against eager training step by step."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch
from ft_common.errors import UsageError
from ft_train.config import TrainConfig
from ft_train.data import IGNORE, batch_width, collate, make_batches
from ft_train.fused_loss import linear_cross_entropy
from ft_train.plan import Zero
from ft_train.step_graphs import Shape, make_capturable, pad_to_shape, shape_table, step_schedule


def rows(n: int, seed: int = 0) -> list[dict]:
    """Token rows of 5-40 tokens, the last third of each in the loss."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(5, 40)
        ids = [rng.randint(3, 60) for _ in range(k)]
        labels = [ids[i + 1] if i + 1 >= 2 * k // 3 else IGNORE for i in range(k - 1)] + [IGNORE]
        out.append({"ids": ids, "labels": labels})
    return out


def test_masked_fused_loss_ignores_padding_rows():
    """IGNORE rows add no loss and get zero gradient; the rest match the plain cross-entropy."""
    torch.manual_seed(0)
    x = torch.randn(12, 8, requires_grad=True)
    w = torch.randn(30, 8, requires_grad=True)
    y = torch.randint(0, 30, (12,))
    y[[2, 7, 11]] = IGNORE
    got = linear_cross_entropy(x, w, y, chunk_rows=5, masked=True)
    got.backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    want = torch.nn.functional.cross_entropy(x @ w.T, y, ignore_index=IGNORE, reduction="sum")
    want.backward()
    assert torch.allclose(got, want, atol=1e-4)
    assert torch.allclose(gx, x.grad, atol=1e-5) and torch.allclose(gw, w.grad, atol=1e-5)
    assert torch.count_nonzero(gx[[2, 7, 11]]) == 0


def test_every_batch_fits_its_width_shape():
    data = rows(300)
    epochs = [make_batches(data, "group", None, 256, 64, seed=e, multiple=16) for e in range(3)]
    table = shape_table(epochs, ctx_len=64, multiple=16)
    assert set(table) <= {16, 32, 48, 64}
    for batches in epochs:
        for batch in batches:
            x = collate(batch, "group", 64, pad_id=0, multiple=16)
            shape = table[batch_width(batch, "group", 64, 16)]
            padded = pad_to_shape(x, shape, pad_id=0)
            assert padded["input_ids"].shape == (shape.rows, x["input_ids"].shape[1])
            assert len(padded["loss_index"]) == len(padded["loss_labels"]) == shape.positions
            assert padded["tokens"].item() == len(x["loss_labels"])
    assert max(s.rows for s in table.values()) == max(len(b) for e in epochs for b in e)
    with pytest.raises(ValueError, match="exceeds its shape"):
        pad_to_shape(collate(epochs[0][0], "group", 64, 0, multiple=16), Shape(0, 0), pad_id=0)


def test_a_padded_batch_gives_the_same_loss_and_gradients(tiny_model):
    """Empty rows and IGNORE loss positions change nothing: the graph's fixed shape trains as the batch."""
    from ft_train.worker import CausalLMLoss
    from transformers import AutoModelForCausalLM

    model = CausalLMLoss(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32))
    batch = [[r] for r in rows(5, seed=1)]
    x = collate(batch, "group", 64, pad_id=0, multiple=16)
    padded = pad_to_shape(x, Shape(rows=9, positions=len(x["loss_labels"]) + 13), pad_id=0)

    def run(**inputs):
        model.zero_grad(set_to_none=True)
        loss = model(**inputs)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    want, want_grads = run(**x)
    got, got_grads = run(input_ids=padded["input_ids"], loss_index=padded["loss_index"],
                         loss_labels=padded["loss_labels"], masked=True)
    assert torch.allclose(got, want, rtol=1e-5)
    assert all(torch.allclose(g, w, atol=1e-5) for g, w in zip(got_grads, want_grads, strict=True))


def test_driver_turns_graphs_on_only_where_they_apply():
    from ft_train.driver import graphs_choice

    cfg = TrainConfig(model="m", train="t", out_dir="o", layout="group")  # as driver.layout_choice leaves it
    plain = Zero(0, "none", bf16=True, deepspeed=False)
    on = graphs_choice(cfg, plain, gpu=True)
    assert (on.cuda_graphs, on.pad_multiple) == ("on", 16)
    assert graphs_choice(replace(cfg, pad_multiple=8), plain, gpu=True).pad_multiple == 8  # the user's multiple
    assert graphs_choice(cfg, plain, gpu=False).cuda_graphs == "off"
    assert graphs_choice(replace(cfg, workers=2), plain, gpu=True).cuda_graphs == "off"
    assert graphs_choice(cfg, Zero(3, "none", True, True), gpu=True).cuda_graphs == "off"
    assert graphs_choice(replace(cfg, layout="pack"), plain, gpu=True).cuda_graphs == "off"
    off = graphs_choice(replace(cfg, cuda_graphs="off"), plain, gpu=True)
    assert (off.cuda_graphs, off.pad_multiple) == ("off", 1)
    assert graphs_choice(replace(cfg, compile="on"), plain, gpu=True).cuda_graphs == "on"  # compiled blocks in graphs
    with pytest.raises(UsageError, match="--cuda-graphs on needs a GPU"):
        graphs_choice(replace(cfg, cuda_graphs="on"), plain, gpu=False)


def test_compile_auto_turns_on_for_graphed_runs_of_many_tokens_only(monkeypatch, capsys):
    import importlib.util

    from ft_train import driver
    from ft_train.driver import COMPILE_MIN_TOKENS, compile_choice

    graphed = TrainConfig(model="m", train="t", out_dir="o", cuda_graphs="on")
    plain = Zero(0, "none", bf16=True, deepspeed=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # triton "installed"
    monkeypatch.setattr(driver.shutil, "which", lambda name: "/usr/bin/" + name)  # and a C compiler
    assert compile_choice(graphed, plain, COMPILE_MIN_TOKENS).compile == "on"
    assert compile_choice(graphed, plain, COMPILE_MIN_TOKENS - 1).compile == "off"  # too few tokens to repay the compile
    # a larger model saves more a token but compiles longer cold: 1.5B from ~5M tokens (its plain
    # commands' 1.0-1.6M train uncompiled: a first run's compile took longer than it saved)
    assert compile_choice(graphed, plain, 5_100_000, params=1_777_000_000).compile == "on"
    assert compile_choice(graphed, plain, 1_600_000, params=1_777_000_000).compile == "off"
    assert driver.compile_min_tokens(50_000_000) == COMPILE_MIN_TOKENS  # never below the 135M threshold
    assert compile_choice(replace(graphed, cuda_graphs="off"), plain, 10 * COMPILE_MIN_TOKENS).compile == "off"
    assert compile_choice(replace(graphed, compile="on", cuda_graphs="off"), plain, 1).compile == "on"  # asked for
    assert compile_choice(replace(graphed, compile="off"), plain, 10 * COMPILE_MIN_TOKENS).compile == "off"
    assert compile_choice(replace(graphed, compile=True), plain, 1).compile == "on"  # an older manifest's bool
    zero3 = compile_choice(replace(graphed, compile="on", cuda_graphs="off"), Zero(3, "none", True, True), 1)
    assert zero3.compile == "off" and "DeepSpeed ZeRO-3 trains them eagerly" in capsys.readouterr().err
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(driver.shutil, "which", lambda name: None)  # no C compiler to build triton's launcher
    assert compile_choice(graphed, plain, 10 * COMPILE_MIN_TOKENS).compile == "off"
    monkeypatch.setattr(driver.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no triton: nothing to compile to
    assert compile_choice(graphed, plain, 10 * COMPILE_MIN_TOKENS).compile == "off"


@pytest.mark.parametrize("compiled_blocks", [0, 2])
def test_which_first_batches_run_eagerly_before_their_capture(compiled_blocks, monkeypatch):
    # StepGraphs' bookkeeping on the CPU (CUDA's parts faked): each width is captured once and then
    # replayed; the run's first batch runs eagerly before its capture, and with --compile so does
    # every width's first batch (a new width may compile again, which a capture cannot survive).
    from types import SimpleNamespace

    from ft_train.step_graphs import StepGraphs

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    graphs = object.__new__(StepGraphs)
    graphs.engine = SimpleNamespace(compiled_blocks=compiled_blocks)
    graphs.shapes, graphs.pad_id, graphs.device = {16: Shape(3, 20), 32: Shape(2, 40)}, 0, torch.device("cpu")
    graphs.steps, graphs.warm, graphs.failed, graphs.capture_s = {}, False, None, 0.0
    events = []

    class FakeGraph:
        def __init__(self, width):
            self.width = width

        def replay(self):
            events.append(("replay", self.width))

    def capture(what, fn):
        width = int(what.split()[1].split("-")[0])
        graphs.steps[width].graph = FakeGraph(width)
        events.append(("capture", width))

    graphs._capture = capture
    graphs.cuda = SimpleNamespace(warm=lambda fn: events.append(("eager", None)) or torch.tensor(1.0))

    def batch(width):
        return {"input_ids": torch.ones(2, width, dtype=torch.long), "loss_index": torch.arange(5),
                "loss_labels": torch.ones(5, dtype=torch.long)}

    for width in (16, 16, 32, 32):
        assert graphs.forward_backward(batch(width)) is not None
    second_width_first = [("eager", None), ("capture", 32)] if compiled_blocks else [("capture", 32), ("replay", 32)]
    assert events == [("eager", None), ("capture", 16), ("replay", 16), *second_width_first, ("replay", 32)]


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_capturable_lr_is_filled_in_place_by_the_schedule():
    """A graph reads the lr tensor it captured: the scheduler must change that tensor, not replace it."""
    from ft_train.engine import _lr_lambda

    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([p], lr=1e-3)
    make_capturable(opt, torch.device("cpu"))
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and opt.param_groups[0]["capturable"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(100, 10))
    seen = []
    for _ in range(12):
        step_schedule(sched)
        assert opt.param_groups[0]["lr"] is lr
        seen.append(lr.item())
    assert seen[0] == pytest.approx(2e-4) and seen[9] == pytest.approx(1e-3)
    assert sched.get_last_lr()[0] == pytest.approx(seen[-1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graph_replayed_training_matches_eager_training(tiny_model):
    """The same batches, from the same weights: graph replays (three widths, the optimizer's graph)
    give the eager run's losses and weights, to bf16's rounding."""
    from ft_train.engine import PlainEngine
    from ft_train.worker import CausalLMLoss, train_step
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig(lr=1e-3, grad_clip=1.0, warmup=0.1, ctx_len=64, pad_multiple=16, cuda_graphs="on",
                      layout="group")
    data = rows(200, seed=2)
    epochs = [make_batches(data, "group", None, 512, 64, seed=e, multiple=16) for e in range(2)]
    device = torch.device("cuda", 0)

    def run(graphs: bool):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        engine = PlainEngine(CausalLMLoss(model), cfg, device, 1, total_steps=sum(map(len, epochs)), bf16=True)
        if graphs:
            engine.use_graphs(shape_table(epochs, 64, 16), pad_id=0)
        losses = [train_step(engine, b, True, cfg, 0).loss_sum.item() for e in epochs for b in e]
        return losses, engine

    want, eager = run(False)
    got, graphed = run(True)
    assert graphed.graphs.active and graphed.graphs.summary()["shapes"] >= 2, graphed.graphs.summary()
    assert graphed.graphs.optimizer_graph is not None
    assert got == pytest.approx(want, rel=2e-2)
    assert torch.allclose(graphed.master.master, eager.master.master, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_runs_without_cudnn_attention(tiny_model):
    """make_engine turns SDPA's cuDNN backend off on a CUDA device: replayed from graphs it trained
    Qwen2.5-Coder-1.5B into NaN (engine.avoid_cudnn_attention)."""
    from ft_train.engine import make_engine
    from ft_train.worker import CausalLMLoss
    from transformers import AutoModelForCausalLM

    torch.backends.cuda.enable_cudnn_sdp(True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    cfg = TrainConfig(lr=1e-3, warmup=0.1, ctx_len=64, layout="group")  # warmup: None is the recipe's to choose
    make_engine(CausalLMLoss(model), cfg, Zero(0, "none", bf16=True, deepspeed=False), torch.device("cuda", 0), 1, 10)
    assert not torch.backends.cuda.cudnn_sdp_enabled()


def test_unpacked_rows_skip_transformers_packed_sequence_search(tiny_model, monkeypatch):
    """The group layout's forward never asks transformers to find packed sequences (a host sync per
    step, and an error inside a graph capture); the pack layout still does, for its block mask."""
    import transformers.masking_utils as masking
    from ft_train.worker import CausalLMLoss
    from transformers import AutoModelForCausalLM

    calls = []
    original = masking.find_packed_sequence_indices
    monkeypatch.setattr(masking, "find_packed_sequence_indices", lambda p: calls.append(1) or original(p))
    model = CausalLMLoss(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32))
    group = [[r] for r in rows(3, seed=3)]
    with torch.no_grad():
        model(**collate(group, "group", 64, pad_id=0))
        assert calls == []
        model(**collate([[r for r in rows(3, seed=3)]], "pack", 128, pad_id=0))
    assert calls == [1]
    assert masking.find_packed_sequence_indices.__name__ == "<lambda>"  # put back as it was


def test_unpacked_rows_get_no_causal_mask_even_while_a_stream_captures(tiny_model, monkeypatch):
    """While a CUDA stream captures, transformers (up to at least 5.17) answers "build the mask" for
    every forward: its _ignore_causal_mask_sdpa, here stood in for by one that always says so.
    The group layout's rows still reach the layers without a mask (SDPA's is_causal: no copied
    key/value heads, the flash kernel, and a --compile'd block's guard holds); a forward outside
    ft-train's context gets the mask, and a padding mask is still the original's to judge."""
    import transformers.masking_utils as masking
    from ft_train.worker import CausalLMLoss, _causal_skip
    from transformers import AutoModelForCausalLM

    def while_capturing(padding_mask, q_length, kv_length, q_offset, kv_offset, local_attention_size=None):
        return False

    monkeypatch.setattr(masking, "_ignore_causal_mask_sdpa", while_capturing)
    model = CausalLMLoss(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32))
    masks = []
    model.lm.model.layers[0].register_forward_pre_hook(
        lambda module, args, kwargs: masks.append(kwargs.get("attention_mask")), with_kwargs=True)
    batch = collate([[r] for r in rows(3, seed=3)], "group", 64, pad_id=0)
    with torch.no_grad():
        model(**batch)
        assert masks[-1] is None
        model.lm.model(input_ids=batch["input_ids"], use_cache=False)
        assert isinstance(masks[-1], torch.Tensor)  # the stand-in does ask for a mask
    assert masking._ignore_causal_mask_sdpa(None, 8, 8, 0, 0) is False  # put back as it was
    skip = _causal_skip(masking._ignore_causal_mask_sdpa)
    assert skip(None, 8, 8, 0, 0) is True
    assert skip(torch.ones(2, 8, dtype=torch.bool), 8, 8, 0, 0) is False
    assert skip(None, 1, 8, 7, 0) is False  # a decode step over a cache
    assert skip(None, 8, 8, 0, 0, local_attention_size=4) is False
    def other_version(*args):
        return False

    assert _causal_skip(other_version) is other_version  # arguments it cannot name: left alone
