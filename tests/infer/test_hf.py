"""The transformers engine on the CPU: batching, stopping, finish reasons."""

from __future__ import annotations

import pytest
from ft_common.tasks import END_A
from ft_infer import GenerationOptions, infer, make_engine
from ft_infer.engines.hf import HFEngine
from ft_infer.types import Request
from infer_support import viggo_records


def run(model, records, max_new_tokens=12, **kw):
    engine = make_engine("hf", str(model), GenerationOptions(max_new_tokens=max_new_tokens), dtype="float32",
                         quiet=True, **kw)
    return list(infer(records, engine, window=kw.get("batch_size", 32) * 4))


def test_batched_greedy_equals_one_by_one(varied_model):
    records = viggo_records(14)
    one = run(varied_model, records, batch_size=1)
    batched = run(varied_model, records, batch_size=5)
    assert [r["completion"] for r in batched] == [r["completion"] for r in one]
    assert [r["completion_tokens"] for r in batched] == [r["completion_tokens"] for r in one]
    assert len({r["completion"] for r in one}) > 5  # the model really says different things
    assert [r["id"] for r in batched] == [r["id"] for r in records]  # input order


def test_static_cache_gives_the_same_completions(stop_model):
    records = viggo_records(7)
    records += [{**records[0], "id": f"same/{i}"} for i in range(4)]  # batches of one shape: cache reused
    dynamic = run(stop_model, records, batch_size=2)
    static = run(stop_model, records, batch_size=2, static_cache=True)
    assert static == dynamic


def test_stops_at_the_special_stop_token(stop_model):
    records = viggo_records(12)
    free = run(stop_model, [{**r, "stop": ["<never>"]} for r in records], max_new_tokens=16)
    stopped = run(stop_model, records, max_new_tokens=16, batch_size=4)
    engine = HFEngine(str(stop_model), GenerationOptions(max_new_tokens=16), quiet=True)
    engine.load()
    end_a = engine.tokenizer.convert_tokens_to_ids(END_A)
    hits = 0
    for f, s, rec in zip(free, stopped, records, strict=True):
        ids = engine.decode([engine.encode(Request(id="x", prompt=rec["prompt"]))],
                            _plan(engine, ()))[0]
        if end_a in ids:  # decode ends at the first stop token, so it stopped there
            hits += 1
            cut = ids.index(end_a)
            assert s["finish_reason"] == "stop"
            assert s["completion_tokens"] == cut + 1
            assert s["completion"] == engine.tokenizer.decode(ids[:cut])
            assert END_A not in s["completion"]
            assert f["completion"].startswith(s["completion"])
        elif ids and ids[-1] in engine.eos:  # the model's own eos is a stop too
            assert s["finish_reason"] == "stop" and s["completion_tokens"] == len(ids)
        else:
            assert s["finish_reason"] == "length" and s["completion_tokens"] == 16
    assert 0 < hits < len(records)  # some stop, some run to the limit: both in one batch


def _plan(engine, stops):
    from ft_infer.stops import plan_stops

    return plan_stops(engine.tokenizer, stops, engine.eos)


def test_text_stop_string_cuts_and_ends_generation(varied_model):
    record = viggo_records(1)[0]
    free = run(varied_model, [{**record, "stop": ["<never>"]}], max_new_tokens=12)[0]
    text = free["completion"]
    stop = text[len(text) // 2: len(text) // 2 + 2]  # a piece from the middle of the free completion
    got = run(varied_model, [{**record, "stop": [stop]}, {**record, "id": "y", "stop": ["<never>"]}],
              max_new_tokens=12)
    assert got[0]["finish_reason"] == "stop"
    assert got[0]["completion"] == text[: text.index(stop)]
    assert got[0]["completion_tokens"] < 12
    assert got[1]["finish_reason"] == "length" and got[1]["completion"] == text


def test_finish_reason_length_and_record_keys(varied_model):
    out = run(varied_model, viggo_records(2), max_new_tokens=3)
    for rec in out:
        assert rec["finish_reason"] == "length"
        assert rec["completion_tokens"] == 3
        assert rec["prompt_tokens"] > 5
        assert rec["model"] == str(varied_model)
        assert rec["meta"]["i"] in (0, 1)  # other keys pass through


def test_mixed_stops_in_one_window_keep_order(stop_model):
    # Each prompt twice, once with each stop: prompts of one length must still not share a stop.
    prompts = viggo_records(6)
    records = [{**r, "id": f"{r['id']}/{name}", "stop": stop}
               for r in prompts for name, stop in (("end", [END_A]), ("never", ["<never>"]))]
    out = run(stop_model, records, max_new_tokens=16, batch_size=4)
    assert [r["id"] for r in out] == [r["id"] for r in records]
    # Free runs show where each prompt emits <END_A>: there the <END_A> record stops (the
    # completion leaves it out) and the <never> record runs on; elsewhere both run on.
    free = [f["completion"] for f in run(stop_model, [{**r, "stop": ["<never>"]} for r in prompts],
                                         max_new_tokens=16)]
    assert any(END_A in text for text in free)
    for (end, never), text in zip(zip(out[::2], out[1::2], strict=True), free, strict=True):
        assert never["completion"] == text, never["id"]
        if END_A in text:
            assert end["finish_reason"] == "stop" and end["completion"] == text[: text.index(END_A)], end["id"]
        else:
            assert end["completion"] == text, end["id"]


def test_sampling_is_seeded(varied_model):
    records = viggo_records(4)

    def sample(**kw):
        opts = GenerationOptions(max_new_tokens=8, **kw)
        return [r["completion"] for r in infer(records, make_engine("hf", str(varied_model), opts, quiet=True))]

    a = sample(temperature=1.0, top_p=0.9, seed=3)
    assert a == sample(temperature=1.0, top_p=0.9, seed=3)  # the same seed, the same samples
    # It really samples (an engine ignoring temperature would give the greedy text) and the
    # seed drives it (one ignoring the seed would repeat the same draws).
    assert a != sample(temperature=0.0)
    assert a != sample(temperature=1.0, top_p=0.9, seed=4)


def test_record_without_prompt_names_its_id(varied_model):
    from ft_common.errors import InputError

    engine = make_engine("hf", str(varied_model), GenerationOptions(), quiet=True)
    with pytest.raises(InputError, match="record viggo/valid/7: no 'prompt' or 'messages'"):
        list(infer([{"id": "viggo/valid/7", "text": "hi"}], engine))
    assert engine.model is None  # the bad record was caught before the model loaded
