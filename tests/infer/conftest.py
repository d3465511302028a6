"""Models for ft-infer's tests, built from the shared tiny Llama (no download).

The shared tiny model ties its embeddings, so with random weights it mostly
repeats the prompt's last token; `varied_model` unties and re-draws the weights
so greedy outputs differ from token to token (a padding or position bug then
shows up as a different completion). `stop_model` adds the task markers as
special tokens and makes <END_A> win wherever a common token would, so greedy
generation emits <END_A> part-way through many completions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ft_common.tasks import SPECIAL_TOKENS
from infer_support import viggo_sentences
from tiny_model import build_stop_model, vary_weights


@pytest.fixture(scope="session")
def varied_model(tiny_model, tmp_path_factory) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("varied-llama")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    vary_weights(model)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def _add_markers(model, tokenizer) -> None:
    """The markers as additional special tokens; their head rows zero, so none wins by chance."""
    import torch

    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        for token in SPECIAL_TOKENS:
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0


@pytest.fixture(scope="session")
def stop_model(varied_model, tmp_path_factory) -> Path:
    return build_stop_model(varied_model, tmp_path_factory.mktemp("stop-llama"), viggo_sentences(8), _add_markers)
