"""Models for ft-infer's tests, built from the shared tiny Llama (no download).

The shared tiny model ties its embeddings, so with random weights it mostly
repeats the prompt's last token; `varied_model` unties and re-draws the weights
so greedy outputs differ from token to token (a padding or position bug then
shows up as a different completion). `stop_model` adds the task markers as
special tokens and makes <END_A> win wherever a common token would, so greedy
generation emits <END_A> part-way through many completions.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from ft_common.tasks import END_A, SPECIAL_TOKENS
from infer_support import viggo_sentences


@pytest.fixture(scope="session")
def varied_model(tiny_model, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("varied-llama")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.config.tie_word_embeddings = False
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                std = 0.3 if "embed" in name else 0.15
                param.copy_(torch.randn(param.shape, generator=generator) * std)
        head = torch.randn(model.model.embed_tokens.weight.shape, generator=generator) * 0.3
        model.lm_head.weight = torch.nn.Parameter(head)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def stop_model(varied_model, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("stop-llama")
    tokenizer = AutoTokenizer.from_pretrained(varied_model)
    model = AutoModelForCausalLM.from_pretrained(varied_model)
    # The most common greedy token over a few prompts: <END_A> will take its place.
    common = Counter()
    for sentence in viggo_sentences(8):
        ids = tokenizer(sentence, return_tensors="pt").input_ids
        with torch.no_grad():
            generated = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        common.update(generated[0, ids.shape[1]:].tolist()[2:])
    target = common.most_common(1)[0][0]
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    torch.manual_seed(0)  # the new rows are drawn from the global RNG: the same model whatever ran before
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        for token in SPECIAL_TOKENS:
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0
        model.lm_head.weight[tokenizer.convert_tokens_to_ids(END_A)] = 1.2 * model.lm_head.weight[target]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
