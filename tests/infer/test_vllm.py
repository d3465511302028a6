"""The vllm engine's mapping, against a fake `vllm` module (vllm is never installed in CI)."""

from __future__ import annotations

import os
import sys
import types

import pytest
from ft_common.errors import MissingExtraError
from ft_common.tasks import END_A
from ft_infer import GenerationOptions, infer, make_engine, pick_engine
from infer_support import viggo_records


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class FakeLLM:
    """Records its arguments; 'generates' a fixed continuation: 2 tokens, <END_A>, 1 more token."""

    instances: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = []
        FakeLLM.instances.append(self)

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        outputs = []
        for prompt, params in zip(prompts, sampling_params, strict=True):
            stop_ids = params.stop_token_ids or []
            cut = next((i + 1 for i, t in enumerate(FakeLLM.continuation) if t in stop_ids), None)
            token_ids = FakeLLM.continuation[:cut] if cut else FakeLLM.continuation[: params.max_tokens]
            reason = "stop" if cut else "length"
            sample = types.SimpleNamespace(token_ids=token_ids, finish_reason=reason, text="(vllm text)")
            outputs.append(types.SimpleNamespace(outputs=[sample], prompt_token_ids=prompt["prompt_token_ids"]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances = []
    return module


def test_sampling_params_and_prompts(fake_vllm, stop_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(stop_model)
    end_a = tok.convert_tokens_to_ids(END_A)
    FakeLLM.continuation = [40, 41, end_a, 42]
    records = viggo_records(3)
    records[2]["stop"] = ["]"]  # a plain-text stop string
    engine = make_engine("vllm", str(stop_model), GenerationOptions(max_new_tokens=9, seed=4), quiet=True)
    assert engine.llm is None  # lazy
    out = list(infer(records, engine))
    llm = FakeLLM.instances[0]
    assert llm.kwargs["seed"] == 4 and llm.kwargs["tensor_parallel_size"] == 1
    prompts, params = llm.calls[0]
    assert prompts[0] == {"prompt_token_ids": tok(records[0]["prompt"])["input_ids"]}
    special, text = params[0], params[2]
    assert special is params[1]  # one SamplingParams per distinct stop list
    assert special.temperature == 0 and special.max_tokens == 9 and special.seed is None
    assert special.stop is None and end_a in special.stop_token_ids and tok.eos_token_id in special.stop_token_ids
    assert special.skip_special_tokens is False and special.include_stop_str_in_output is False
    assert text.stop == ["]"] and end_a not in text.stop_token_ids
    # Completions are decoded from vLLM's ids by the same code as the hf engine's.
    assert out[0]["completion"] == tok.decode([40, 41]) and out[0]["finish_reason"] == "stop"
    assert out[0]["completion_tokens"] == 3 and out[0]["prompt_tokens"] == len(prompts[0]["prompt_token_ids"])
    assert out[2]["finish_reason"] == "length" and out[2]["completion_tokens"] == 4
    assert out[0]["meta"] == records[0]["meta"] and out[0]["model"] == str(stop_model)


def test_sampling_settings_pass_through(fake_vllm, stop_model):
    FakeLLM.continuation = [40]
    opts = GenerationOptions(max_new_tokens=5, temperature=0.7, top_p=0.9, seed=11)
    list(infer(viggo_records(1), make_engine("vllm", str(stop_model), opts, quiet=True)))
    params = FakeLLM.instances[0].calls[0][1][0]
    assert (params.temperature, params.top_p, params.seed) == (0.7, 0.9, 11)


def test_missing_vllm_names_the_extra(monkeypatch, stop_model):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    engine = make_engine("vllm", str(stop_model), GenerationOptions(), quiet=True)
    with pytest.raises(MissingExtraError, match=r"pip install 'ft-infer\[vllm\]'"):
        list(infer(viggo_records(1), engine))


def test_auto_is_hf_without_a_gpu():
    assert pick_engine("auto") == "hf"


def test_engine_core_is_spawned_unless_the_user_says_otherwise(fake_vllm, stop_model, monkeypatch):
    # `--engine auto` asks torch about CUDA first, after which a forked engine core cannot use the GPU.
    monkeypatch.delenv("VLLM_WORKER_MULTIPROC_METHOD", raising=False)
    make_engine("vllm", str(stop_model), GenerationOptions(), quiet=True).load()
    assert os.environ["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "fork")
    make_engine("vllm", str(stop_model), GenerationOptions(), quiet=True).load()
    assert os.environ["VLLM_WORKER_MULTIPROC_METHOD"] == "fork"
