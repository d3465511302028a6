"""The model resolver (ft_common.models): local folder, GGUF file (de-quantized once, cached), hub id.

The GGUF file is built here from the tiny Llama with gguf's GGUFWriter (one tensor
Q8_0-quantized), so the test needs no download.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ft_common.errors import InputError
from ft_common.models import file_sha256, folder_fingerprint, resolve_model


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    # llama.cpp's q/k layout (transformers undoes this when it loads a GGUF file)
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def build_tiny_gguf(model_dir, path) -> dict:
    """Write the tiny Llama as a GGUF file; return the original state dict (numpy)."""
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    sd = load_file(model_dir / "model.safetensors")
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    added = {t["id"]: t["content"] for t in tok["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_token_list([added.get(i, t) for t, i in vocab])
    w.add_token_types([3 if i in added else 1 for _, i in vocab])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    parts = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for name, value in sd.items():
        if name in names:
            gname = names[name]
        else:
            layer, rest = name.split(".")[2], ".".join(name.split(".")[3:-1])
            gname = f"blk.{layer}.{parts[rest]}.weight"
        value = value.astype(np.float32)
        if gname.endswith("attn_q.weight"):
            value = _permute(value, heads)
        elif gname.endswith("attn_k.weight"):
            value = _permute(value, kv_heads)
        if gname == "blk.0.ffn_down.weight":  # one quantized tensor, so de-quantizing is exercised
            q = gguf.quants.quantize(value, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(gname, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gname, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sd


def test_local_folder(tiny_model):
    r = resolve_model(str(tiny_model))
    assert r.source == "folder" and r.path == str(tiny_model.resolve()) and r.sha256 is None
    fp = folder_fingerprint(r.path)
    assert len(fp) == 64 and fp == folder_fingerprint(r.path)


def test_folder_without_config_and_missing_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="without config.json"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="no such GGUF"):
        resolve_model(str(tmp_path / "nope.gguf"))
    with pytest.raises(InputError, match="not a hub id"):
        resolve_model(str(tmp_path / "nope"))


def test_hub_id_is_passed_through(monkeypatch):
    monkeypatch.setattr("ft_common.hub.why_not", lambda kind: None)  # the hub answers (see tests/common/test_first_hour.py)
    r = resolve_model("HuggingFaceTB/SmolLM2-135M")
    assert r.source == "hub" and r.path == "HuggingFaceTB/SmolLM2-135M"


def test_gguf_is_dequantized_once_into_a_plain_folder(tmp_path, tiny_model, monkeypatch):
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("FT_CACHE", str(tmp_path / "cache"))
    gguf_path = tmp_path / "tiny.gguf"
    original = build_tiny_gguf(tiny_model, gguf_path)
    r = resolve_model(str(gguf_path), quiet=True)
    assert r.source == "gguf" and r.sha256 == file_sha256(gguf_path)
    config = json.loads((tmp_path / "cache" / "gguf" / r.path.split("/")[-1] / "config.json").read_text())
    assert "quantization_config" not in config
    model = AutoModelForCausalLM.from_pretrained(r.path)
    tok = AutoTokenizer.from_pretrained(r.path)
    sd = model.state_dict()
    for name in ("model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight",
                 "model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.up_proj.weight"):
        assert torch.allclose(sd[name].float(), torch.from_numpy(original[name]).float(), atol=1e-6), name
    down = torch.from_numpy(original["model.layers.0.mlp.down_proj.weight"]).float()
    assert (sd["model.layers.0.mlp.down_proj.weight"].float() - down).abs().max() < 0.01  # Q8_0 error
    assert tok.decode(tok.encode("Halo is a great game")) .endswith("Halo is a great game")
    # The second resolve uses the cache: loading the GGUF again would fail here, and a
    # re-written folder would lose the marker planted in it.
    marker = tmp_path / "cache" / "gguf" / r.path.split("/")[-1] / "MARKER"
    marker.write_text("kept")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _no_second_load)
    again = resolve_model(str(gguf_path), quiet=True)
    assert again == r and marker.read_text() == "kept"


def _no_second_load(*args, **kwargs):
    raise AssertionError("the GGUF file was de-quantized a second time")


@pytest.mark.slow
def test_real_smollm2_gguf(tmp_path, monkeypatch):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip("run `just fetch-model` first")
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("FT_CACHE", str(tmp_path / "cache"))
    r = resolve_model(str(path), quiet=True)
    assert r.source == "gguf" and r.sha256 == file_sha256(path)
    config = json.loads((Path(r.path) / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    # Each weight is what gguf itself de-quantizes (Q8_0 embeddings, Q4_1 layers; neither is
    # permuted like q/k, so they compare directly).
    sd = load_file(Path(r.path) / "model.safetensors")
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    for gname, name in (("token_embd.weight", "model.embed_tokens.weight"),
                        ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"),
                        ("blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight")):
        t = tensors[gname]
        want = gguf.quants.dequantize(t.data, t.tensor_type)
        assert np.allclose(sd[name], want, atol=1e-6), name
    # The folder is a working model with its tokenizer: greedy decoding knows the answer.
    tok = AutoTokenizer.from_pretrained(r.path)
    model = AutoModelForCausalLM.from_pretrained(r.path)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])


def test_a_big_files_sha256_is_read_once_and_again_when_it_changes(tmp_path, monkeypatch):
    """file_sha256 remembers a model-sized file's digest by path, size, mtime and inode (no second
    read of a 1 GB GGUF); a changed file is hashed again; a broken index is only a miss."""
    import hashlib
    import os

    from ft_common import models

    monkeypatch.setenv("FT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "REMEMBER_FROM_BYTES", 1024)
    big, small = tmp_path / "m.gguf", tmp_path / "config.json"
    big.write_bytes(b"a" * 4096)
    small.write_bytes(b"{}")
    want = hashlib.sha256(b"a" * 4096).hexdigest()
    assert models.file_sha256(big) == want
    assert models.file_sha256(small) == hashlib.sha256(b"{}").hexdigest()
    index = json.loads((tmp_path / "cache" / "sha256.json").read_text())
    assert list(index.values()) == [want]  # the small file is not remembered

    # Same path, size and mtime: the remembered digest, without reading the bytes.
    st = big.stat()
    big.write_bytes(b"b" * 4096)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert models.file_sha256(big) == want
    # A new mtime: read again, and the old entry replaced.
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert models.file_sha256(big) == hashlib.sha256(b"b" * 4096).hexdigest()
    current = json.loads((tmp_path / "cache" / "sha256.json").read_text())
    assert len(current) == 1

    for broken in ("not json", "[1, 2]", json.dumps({next(iter(current)): "../../etc"})):
        (tmp_path / "cache" / "sha256.json").write_text(broken)
        assert models.file_sha256(big) == hashlib.sha256(b"b" * 4096).hexdigest()
