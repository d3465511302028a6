"""The flat layout (ft_train.flat): batches without padding, their one shape, and attention kept
inside each record (on the CPU through the masked path; flash's kernel is the GPU's)."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch
from ft_train.config import TrainConfig
from ft_train.data import IGNORE, collate, make_batches
from ft_train.driver import graphs_choice, layout_choice
from ft_train.flat import FlatShape, boundaries, flat_attention, flat_shape
from ft_train.step_graphs import pad_to_shape, shape_table
from train_support import ft_train


def rows(n: int, seed: int = 0, lo: int = 3, hi: int = 90) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(lo, hi)
        ids = [rng.randint(1, 99) for _ in range(k)]
        labels = ids[1:] + [IGNORE]
        labels[:k // 2] = [IGNORE] * (k // 2)  # a prompt without loss
        out.append({"ids": ids, "labels": labels})
    return out


def test_batches_hold_every_record_once_within_the_budget():
    data = rows(300)
    batches = make_batches(data, "flat", None, 700, 512, seed=3)
    seen = [id(seq[0]) for b in batches for seq in b]
    assert sorted(seen) == sorted(id(r) for r in data)
    for b in batches:
        assert sum(len(seq[0]["ids"]) for seq in b) <= 700 or len(b) == 1
    # filled: only the last batch may be short by more than one record's length
    assert all(sum(len(s[0]["ids"]) for s in b) > 700 - 90 for b in batches[:-1])
    assert make_batches(data, "flat", None, 700, 512, seed=3) == batches  # seeded
    assert len(make_batches(data, "flat", 7, 700, 512, seed=3)[0]) == 7  # --batch-size: records


def test_a_batch_gap_is_filled_from_the_records_just_behind(monkeypatch):
    """A flat batch's unused budget is computed for nothing (the row is the run's width): the
    records that fit it come from the FILL_LOOKAHEAD behind the one that did not, in order."""
    from ft_train import data as ft_data

    records = rows(600, seed=5, lo=20, hi=90)

    def batches_and_gaps():
        batches = make_batches(records, "flat", None, 1000, 512, seed=7)
        return batches, [1000 - sum(len(s[0]["ids"]) for s in b) for b in batches[:-1]]

    filled, gaps = batches_and_gaps()
    lookahead = ft_data.FILL_LOOKAHEAD
    monkeypatch.setattr(ft_data, "FILL_LOOKAHEAD", 0)
    greedy, greedy_gaps = batches_and_gaps()
    assert max(gaps) < 20 and sum(gaps) < sum(greedy_gaps) / 3  # no record is shorter than 20
    assert len(filled) < len(greedy)
    where = {id(s[0]): i for i, s in enumerate(s for b in filled for s in b)}
    shuffled = [s[0] for b in greedy for s in b]  # the seeded shuffle's order
    assert all(-lookahead <= where[id(r)] - i <= 20 for i, r in enumerate(shuffled))  # pulled forward only
    assert sorted(where) == sorted(id(r) for r in records)


def test_one_shape_fits_every_batch_and_its_pieces_are_bounded():
    data = rows(400, seed=1)
    batches = [b for e in range(3) for b in make_batches(data, "flat", None, 1000, 512, seed=e)]
    shape = flat_shape(batches)
    assert shape.width % 8 == 0 and shape.max_len == max(64, max(len(r["ids"]) for r in data))
    for b in batches:
        lengths = [len(s[0]["ids"]) for s in b]
        cu = boundaries(lengths, shape)
        assert len(cu) == shape.pieces + 1 and cu[0] == 0 and cu[-1] == shape.width
        pieces = [y - x for x, y in zip(cu, cu[1:], strict=False)]
        assert pieces[:len(lengths)] == lengths
        assert all(1 <= p <= shape.max_len for p in pieces)  # never empty, never past the kernel's bound
    with pytest.raises(ValueError, match="do not fit"):
        boundaries([shape.width], shape)


def test_the_shape_has_the_fewest_pieces_that_fit():
    """Each spare piece is kernel blocks launched for nothing: pieces is the most any batch needs
    (its records plus its tail cut into max_len pieces), not a tail as wide as the row."""
    data = rows(400, seed=4)
    batches = [b for e in range(3) for b in make_batches(data, "flat", None, 1000, 512, seed=e)]
    shape = flat_shape(batches)
    need = [len(b) + -(-(shape.width - sum(len(s[0]["ids"]) for s in b)) // shape.max_len) for b in batches]
    assert shape.pieces == max(need)
    assert shape.pieces < max(len(b) for b in batches) + shape.width // shape.max_len


def test_many_short_records_widen_the_row_until_each_tail_piece_has_a_token():
    def record(n):
        return {"ids": [1] * n, "labels": [IGNORE] * n}
    long_one, many = [[record(640)]], [[record(1)]] * 70
    # at width 648 `many` needs 70 + 1 pieces, which leaves `long_one` 70 pieces for a tail of 8
    shape = flat_shape([long_one, many])
    assert shape.width > 648 and shape.pieces - 1 <= shape.width - 640
    for b in (long_one, many):
        cu = boundaries([len(s[0]["ids"]) for s in b], shape)
        pieces = [y - x for x, y in zip(cu, cu[1:], strict=False)]
        assert len(pieces) == shape.pieces and all(1 <= p <= shape.max_len for p in pieces)


def test_collate_lays_records_end_to_end_with_their_own_positions():
    data = rows(5, seed=2)
    batch = [[r] for r in data]
    shape = flat_shape([batch])
    x = collate(batch, "flat", 512, pad_id=0, flat=shape)
    ids, pos, cu = x["input_ids"][0], x["position_ids"][0], x["cu_seqlens"].tolist()
    assert x["input_ids"].shape == (1, shape.width) and x["cu_seqlens"].dtype == torch.int32
    for r, start in zip(data, cu, strict=False):
        n = len(r["ids"])
        assert ids[start:start + n].tolist() == r["ids"]
        assert pos[start:start + n].tolist() == list(range(n))
    # every label is the next token of its own record, as the group layout has it
    group = collate(batch, "group", 512, pad_id=0)
    assert x["loss_labels"].tolist() == group["loss_labels"].tolist()
    assert all(ids[i + 1] == y for i, y in zip(x["loss_index"].tolist(), x["loss_labels"].tolist(), strict=True))
    assert collate(batch, "flat", 512, pad_id=0, real=False, flat=shape)["loss_index"].numel() == 0


def test_attention_stays_inside_each_record():
    """A record's outputs do not change when its neighbours do: nothing attends across a boundary."""
    torch.manual_seed(0)
    heads, kv, dim = 4, 2, 8
    cu = torch.tensor([0, 5, 12, 16], dtype=torch.int32)
    q, k, v = (torch.randn(1, h, 16, dim) for h in (heads, kv, kv))
    out, _ = flat_attention(None, q, k, v, None, scaling=dim ** -0.5, ft_cu_seqlens=cu, ft_max_len=7)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, :5] += torch.randn_like(k2[:, :, :5])  # the first record's keys changed
    v2[:, :, 12:] -= 2.0  # and the last's
    out2, _ = flat_attention(None, q, k2, v2, None, scaling=dim ** -0.5, ft_cu_seqlens=cu, ft_max_len=7)
    assert torch.allclose(out[0, 5:12], out2[0, 5:12])  # the middle record: untouched
    assert not torch.allclose(out[0, :5], out2[0, :5])
    # and within a record it is causal SDPA over that record alone
    ref = torch.nn.functional.scaled_dot_product_attention(
        q[:, :, 5:12], k[:, :, 5:12].repeat_interleave(2, 1), v[:, :, 5:12].repeat_interleave(2, 1), is_causal=True)
    assert torch.allclose(out[0, 5:12], ref[0].transpose(0, 1), atol=1e-6)


def test_flat_loss_and_gradients_match_the_group_layout(tiny_model):
    """The same records give the same summed loss and gradients in both layouts; the model's own
    attention setting is back afterwards (generation keeps SDPA)."""
    import transformers
    from ft_train.worker import CausalLMLoss

    lm = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
    data = rows(24, seed=4, hi=60)
    flat_batches = make_batches(data, "flat", None, 400, 512, seed=0)
    shape = flat_shape(flat_batches)
    model = CausalLMLoss(lm, fused=True, flat=shape)

    def grads(batches, layout, **kw):
        lm.zero_grad()
        loss = sum(model(**collate(b, layout, 512, 0, **kw)) for b in batches)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in lm.parameters() if p.grad is not None]

    loss_flat, g_flat = grads(flat_batches, "flat", flat=shape)
    loss_group, g_group = grads(make_batches(data, "group", None, 10_000, 512, seed=0), "group")
    assert lm.config._attn_implementation == "sdpa"  # never switched
    assert torch.allclose(loss_flat, loss_group, rtol=1e-5)
    # fp32 sums in another order: each gradient within 1e-5 of its largest element (measured: < 1e-6)
    assert all(float((a - b).abs().max()) <= 1e-5 * float(b.abs().max()) for a, b in zip(g_flat, g_group, strict=True))


def test_gradient_checkpointing_recomputes_the_flat_attention(tiny_model):
    """A layer recomputed in the backward takes the flat path again (the keywords travel with it;
    a config switched only around the forward would recompute with SDPA and fail the check)."""
    import transformers
    from ft_train.worker import CausalLMLoss

    data = rows(16, seed=6, hi=50)
    batches = make_batches(data, "flat", None, 300, 512, seed=0)
    shape = flat_shape(batches)
    grads = []
    for checkpointing in (False, True):
        lm = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
        if checkpointing:
            lm.gradient_checkpointing_enable()
        lm.train()
        model = CausalLMLoss(lm, fused=True, flat=shape)
        sum(model(**collate(b, "flat", 512, 0, flat=shape)) for b in batches).backward()
        grads.append([p.grad for p in lm.parameters()])
    assert all(float((a - b).abs().max()) <= 1e-5 * float(b.abs().max()) for a, b in zip(*grads, strict=True))


def test_generation_keeps_sdpa(tiny_model):
    """With the flat path registered, a forward without boundaries (generation, left-padded with a
    mask) gives what transformers' own SDPA gives."""
    import transformers
    from ft_train.flat import register
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    lm = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    register()
    ours = AttentionInterface._global_mapping["sdpa"]
    assert ours is not sdpa_attention_forward
    with torch.no_grad():
        after = lm(input_ids=ids, attention_mask=mask).logits
        AttentionInterface.register("sdpa", sdpa_attention_forward)  # transformers' own, for the reference
        try:
            before = lm(input_ids=ids, attention_mask=mask).logits
        finally:
            AttentionInterface.register("sdpa", ours)
    assert torch.equal(before, after)


def test_graph_shape_is_one_row_and_keeps_the_boundaries():
    data = rows(60, seed=5)
    epochs = [make_batches(data, "flat", None, 600, 512, seed=e) for e in range(2)]
    shape = flat_shape([b for e in epochs for b in e])
    table = shape_table(epochs, 512, 1, flat=shape)
    assert list(table) == [shape.width] and table[shape.width].rows == 1
    x = collate(epochs[0][0], "flat", 512, 0, flat=shape)
    padded = pad_to_shape(x, table[shape.width], pad_id=0)
    assert torch.equal(padded["cu_seqlens"], x["cu_seqlens"]) and torch.equal(padded["position_ids"], x["position_ids"])
    assert padded["loss_index"].numel() == table[shape.width].positions
    assert float(padded["tokens"]) == x["loss_labels"].numel()


def test_auto_is_flat_on_a_gpu_in_bf16_and_group_elsewhere():
    cfg = TrainConfig(model="m", train="t", out_dir="o")
    assert cfg.layout == "auto"
    assert layout_choice(cfg, gpu=True).layout == "flat"
    assert layout_choice(cfg, gpu=False).layout == "group"
    assert layout_choice(replace(cfg, dtype="fp32"), gpu=True).layout == "group"
    assert layout_choice(replace(cfg, layout="group"), gpu=True).layout == "group"  # as given


def test_graphs_take_the_flat_layout_without_rounding_widths():
    from ft_train.plan import Zero

    zero = Zero(stage=0, offload="none", bf16=True, deepspeed=False)
    cfg = graphs_choice(TrainConfig(model="m", train="t", out_dir="o", layout="flat"), zero, gpu=True)
    assert cfg.cuda_graphs == "on" and cfg.pad_multiple == 1
    assert graphs_choice(TrainConfig(model="m", train="t", out_dir="o", layout="group"), zero, gpu=True).pad_multiple == 16


def test_a_flat_run_on_the_cpu(tmp_path, tiny_model, viggo_files):
    """ft-train --layout flat end to end: trains, validates, and says so in its plan and manifest."""
    out = ft_train(["-m", tiny_model, "--train", viggo_files["train"], "--valid", viggo_files["valid"],
                    "-o", tmp_path / "run", "--layout", "flat", "--epochs", "1", "--batch-tokens", "2048",
                    "--select-by", "ppl"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "flat batches (no padding)" in out.stderr
    manifest = json.loads((tmp_path / "run" / "ft-train.json").read_text())
    assert manifest["resolved"]["layout"] == "flat"
    shape = manifest["resolved"]["flat_shape"]
    assert shape["width"] > 1024 and shape["pieces"] > 1 and shape["max_len"] >= 64
    saved = json.loads((tmp_path / "run" / "checkpoints" / "epoch-1" / "config.json").read_text())
    assert saved.get("attn_implementation", "sdpa") == "sdpa" and "ft_" not in json.dumps(saved)


def test_flat_shape_of_one_long_record():
    shape = flat_shape([[[{"ids": [1] * 300, "labels": [IGNORE] * 300}]]])
    assert shape == FlatShape(width=shape.width, pieces=shape.pieces, max_len=300)
    assert boundaries([300], shape)[1] == 300


def test_a_flat_run_under_zero3_on_two_workers(tmp_path, tiny_model, viggo_files):
    """DeepSpeed ZeRO-3 on two Ray workers: each rank's share of the flat batches, one shape for all."""
    out = ft_train(["-m", tiny_model, "--train", viggo_files["train"], "--valid", viggo_files["valid"],
                    "-o", tmp_path / "run", "--layout", "flat", "--epochs", "1", "--batch-tokens", "2048",
                    "--zero", "3", "--workers", "2", "--select-by", "ppl"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DeepSpeed ZeRO-3" in out.stderr and "flat batches (no padding)" in out.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_ppl" in r and r["val_ppl"] < 1e4 for r in rows)


def test_a_model_whose_attention_ignores_the_boundaries_is_refused(tiny_model):
    """transformers' eager attention does not pass through ft's flat path: records would see each
    other, so the check before training refuses the model; SDPA's passes."""
    import transformers
    from ft_common.errors import UsageError
    from ft_train.worker import check_records_apart

    check_records_apart(transformers.AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa"))
    eager = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="eager").train()
    with pytest.raises(UsageError, match="does not keep records apart.*--layout group"):
        check_records_apart(eager)
    assert eager.training  # left as it was
