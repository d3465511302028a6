"""--compile: each transformer block compiled once for all blocks and batch shapes, training only."""

from __future__ import annotations

import shutil

import pytest
import torch

pytestmark = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                                reason="torch.compile on the CPU needs a C compiler")


def _model(tiny_model):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")


def _step(model, ids):
    out = model(input_ids=ids, labels=ids, use_cache=False)  # as ft-train trains
    out.loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return out.loss.detach(), grads


def test_blocks_compile_once_for_every_block_and_shape_and_train_the_same(tiny_model):
    from ft_train.compile import compile_blocks
    from torch._dynamo.utils import compilation_time_metrics, counters, guard_failures

    torch._dynamo.reset()
    counters.clear()
    compilation_time_metrics.clear()
    guard_failures.clear()
    eager, compiled = _model(tiny_model).train(), _model(tiny_model).train()  # from_pretrained gives eval mode
    keys = list(compiled.state_dict())
    assert compile_blocks(compiled) == 2  # the tiny Llama's two LlamaDecoderLayer
    assert list(compiled.state_dict()) == keys  # checkpoints keep their names
    gen = torch.Generator().manual_seed(0)
    # Batch shapes vary (the group layout's batches do): one graph for both blocks and every shape;
    # a batch of one row is the one shape that compiles again (dynamo specializes sizes of 1).
    for shapes, graphs in (([(2, 16), (3, 23), (4, 40)], 1), ([(1, 30)], 2)):
        for shape in shapes:
            ids = torch.randint(0, 500, shape, generator=gen)
            (loss_e, grads_e), (loss_c, grads_c) = _step(eager, ids), _step(compiled, ids)
            assert torch.allclose(loss_e, loss_c, rtol=1e-5, atol=1e-6)
            for ge, gc in zip(grads_e, grads_c, strict=True):
                assert torch.allclose(ge, gc, rtol=1e-4, atol=1e-6)
        assert counters["stats"]["unique_graphs"] == graphs, dict(counters["stats"])
    from ft_train.compile import compile_seconds

    spent = compile_seconds()  # the manifest's timing.compile_s
    # compiled here, or loaded from inductor's cache (then the backwards come with their forwards)
    assert spent["frames"] >= 2 and spent["dynamo_s"] > spent["bytecode_s"] > 0, spent
    assert spent["inductor_s"] + spent["module_load_s"] > 0, spent
    # RMSNorm's epsilon compiled as a constant: no block's compile restarted its analysis (a second
    # attempt, paid on every run: compile.compile_constants_fixed)
    assert "compile_attempt_1" not in compilation_time_metrics
    # the one-row batch's compile again is named by the guard that failed
    assert len(spent["recompiles"]) == 1 and spent["recompiles"][0].startswith("forward"), spent


def test_evaluation_and_decoding_stay_eager(tiny_model):
    from ft_train.compile import compile_blocks
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model(tiny_model)
    compile_blocks(model)
    model.eval()
    with torch.no_grad():
        model(input_ids=torch.randint(0, 500, (2, 12)))
        model.generate(torch.randint(0, 500, (1, 5)), max_new_tokens=4, do_sample=False)
    assert counters["stats"]["unique_graphs"] == 0


def test_a_model_without_known_blocks_is_left_alone():
    from ft_train.compile import compile_blocks

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    assert compile_blocks(model) == 0
    assert "forward" not in vars(model[0])


def test_blocks_inside_ft_trains_loss_wrapper_are_found_and_run_compiled(tiny_model):
    # PlainEngine is handed worker.CausalLMLoss, which holds the transformers model: until
    # 2026-12-06 compile_blocks looked for block classes on the wrapper only, found none, and
    # --compile trained eagerly without a word (the H100 runs' losses matched eager to the last digit).
    from ft_train.compile import compile_blocks
    from ft_train.worker import CausalLMLoss
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager, compiled = CausalLMLoss(_model(tiny_model).train()), CausalLMLoss(_model(tiny_model).train())
    assert compile_blocks(compiled) == 2
    ids = torch.randint(0, 500, (2, 16), generator=torch.Generator().manual_seed(0))
    index = torch.arange(2 * 16 - 2)  # flattened positions with a label
    labels = ids.flatten()[1:-1]
    losses = []
    for model in (eager, compiled):
        loss = model(input_ids=ids, loss_index=index, loss_labels=labels)
        loss.backward()
        losses.append(loss.detach())
    assert counters["stats"]["unique_graphs"] == 1  # the compiled blocks ran
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)


def test_no_compiling_raises_with_the_guard_instead_of_compiling_again(tiny_model):
    # What a CUDA graph capture of a compiled step runs under (ft_train.step_graphs): a compile
    # inside a capture breaks it, so a block that would compile again must fail, naming its guard.
    from ft_train.compile import compile_blocks, no_compiling

    torch._dynamo.reset()
    model = _model(tiny_model).train()
    compile_blocks(model)
    gen = torch.Generator().manual_seed(0)
    _step(model, torch.randint(0, 500, (2, 16), generator=gen))  # compiles (dynamic batch and length)
    with no_compiling():
        _step(model, torch.randint(0, 500, (3, 24), generator=gen))  # another shape: the same graph
        with pytest.raises(RuntimeError, match="Detected recompile"):
            _step(model, torch.randint(0, 500, (1, 16), generator=gen))  # one row: dynamo specializes


def test_a_compile_that_fails_sends_every_block_back_to_eager_said_once(tiny_model, monkeypatch):
    # A compile that fails (here torch.compile's result raising, as inductor or triton would on a
    # machine that cannot build a kernel) must not end the run: every block trains eagerly from then
    # on, the same losses and gradients, and the reason is kept for the manifest.
    from ft_train import compile as ft_compile

    calls = []

    def broken(forward, dynamic):
        def run(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("triton: no compiler found\nmore detail")
        return run

    monkeypatch.setattr(ft_compile.torch, "compile", broken)
    eager, compiled = _model(tiny_model).train(), _model(tiny_model).train()
    lines = []
    assert ft_compile.compile_blocks(compiled, log=lines.append) == 2
    ids = torch.randint(0, 500, (2, 16), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        (loss_e, grads_e), (loss_c, grads_c) = _step(eager, ids), _step(compiled, ids)
        assert torch.equal(loss_e, loss_c) and all(torch.equal(e, c) for e, c in zip(grads_e, grads_c, strict=True))
    assert calls == [1]  # tried once, by the first block; never again
    assert ft_compile.compile_failure(compiled) == "RuntimeError: triton: no compiler found"
    assert lines == ["ft-train: compiling the transformer blocks failed (RuntimeError: triton: no compiler found); "
                     "training them eagerly"]
    assert ft_compile.compile_failure(_model(tiny_model)) == "RuntimeError: triton: no compiler found"  # per process
    ft_compile._FAILED.clear()
    assert ft_compile.compile_failure(_model(tiny_model)) is None


def test_a_recompile_refused_inside_a_capture_is_not_a_compile_failure(tiny_model, monkeypatch):
    # Under step_graphs' no_compiling() a block that would compile again raises; that error is the
    # capture's to handle (graphs off), so it passes through and the blocks stay compiled.
    from ft_train import compile as ft_compile

    def refusing(forward, dynamic):
        def run(*args, **kwargs):
            raise RuntimeError("Detected recompile when torch.compile stance is 'fail_on_recompile'.")
        return run

    monkeypatch.setattr(ft_compile.torch, "compile", refusing)
    model = _model(tiny_model).train()
    ft_compile.compile_blocks(model, log=lambda line: None)
    with pytest.raises(RuntimeError, match="fail_on_recompile"):
        model(input_ids=torch.randint(0, 500, (2, 8)), use_cache=False)
    assert ft_compile.compile_failure(model) is None


def test_a_run_whose_compile_fails_trains_on_and_says_so(tmp_path, tiny_model):
    # The whole path: inductor finds no working C++ compiler (CXX=/bin/false, an empty cache), the
    # run trains eagerly to the end, the terminal gets one line, the manifest keeps the reason.
    import json
    import os

    from train_support import ft_train, viggo_records, write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", viggo_records("train", 40))
    env = {**os.environ, "CXX": "/bin/false", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    proc = ft_train(["-m", tiny_model, "--train", train, "-o", tmp_path / "out", "--compile", "--epochs", "1"],
                    tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = [line for line in proc.stderr.splitlines() if "compiling the transformer blocks failed" in line]
    assert len(said) == 1 and said[0].endswith("they trained eagerly")
    timing = json.loads((tmp_path / "out" / "ft-train.json").read_text())["timing"]
    assert timing["compiled_blocks"] == 2 and "C++ compiler" in timing["compile_failed"]


def test_the_closing_line_names_what_failed_to_compile():
    # The first failure decides: the blocks' sends everything to eager; the loss's or the optimizer
    # step's alone leaves the blocks compiled, and the line must not say they trained eagerly.
    from ft_train import compile as ft_compile
    from ft_train.driver import compile_failed_line

    ft_compile.note_failure("the loss", RuntimeError("triton: out of shared memory"), lambda line: None)
    ft_compile.note_failure(ft_compile.BLOCKS, RuntimeError("later"), lambda line: pytest.fail("said twice"))
    assert ft_compile.compile_failed_part() == "the loss"
    timing = {"compile_failed": ft_compile.compile_failure(torch.nn.Linear(1, 1)),
              "compile_failed_in": ft_compile.compile_failed_part()}
    assert compile_failed_line(timing) == ("ft-train: compiling the loss failed "
                                           "(RuntimeError: triton: out of shared memory); it ran eagerly")
    assert compile_failed_line({"compile_failed": "X: y"}).endswith("the transformer blocks failed (X: y); they trained eagerly")
