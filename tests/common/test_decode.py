"""ft_common.decode, the loop ft-infer's hf engine and ft-train's validation accuracy share:
the stop-id cut and token counts, the masks, the grad mode, how "all done" ends a batch."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from ft_common.decode import (
    DoneFlag,
    cut_completion,
    decode,
    eos_ids,
    left_pad,
    pad_id,
    prefill_mask,
)

STOP = 9


class CharTokenizer:
    """id i decodes to the i-th letter; STOP to "<E>"."""

    eos_token_id = None
    pad_token_id = None

    def decode(self, ids, skip_special_tokens=False):
        return "".join("<E>" if i == STOP else chr(ord("a") + i) for i in ids)


# ---------------------------------------------------------------- cutting one row


def test_cut_at_the_first_stop_id_counts_it():
    tok = CharTokenizer()
    assert cut_completion(tok, [0, 1, STOP, 2, STOP], {STOP}) == ("ab", "stop", 3)
    assert cut_completion(tok, [STOP], {STOP}) == ("", "stop", 1)
    assert cut_completion(tok, [0, 1, 2], {STOP}) == ("abc", "length", 3)
    assert cut_completion(tok, [0, 1, 2], {STOP, 1}) == ("a", "stop", 2)  # whichever stop comes first


def test_cut_at_a_stop_string_keeps_the_token_count():
    tok = CharTokenizer()
    assert cut_completion(tok, [0, 1, 2, 3], {STOP}, ("cd", "bc")) == ("a", "stop", 4)
    assert cut_completion(tok, [0, 1], {STOP}, ("zz",)) == ("ab", "length", 2)
    assert cut_completion(tok, [0, 1], {STOP}, ()) == ("ab", "length", 2)


def test_eos_and_pad_ids():
    class Config:
        eos_token_id = [2, 7]

    tok = CharTokenizer()
    tok.eos_token_id = 3
    assert eos_ids(tok, Config()) == {2, 3, 7}
    assert eos_ids(tok) == {3}
    assert pad_id(tok) == 3  # no pad token: eos
    tok.pad_token_id = 0
    assert pad_id(tok) == 0


def test_importing_it_loads_neither_torch_nor_transformers():
    code = "import sys, ft_common.decode; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- padding and masks


def test_left_pad_marks_real_slots_and_skips_padding_positions():
    ids, real, positions = left_pad([[5, 6, 7], [8]], width=3, new=2, pad=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert real.tolist() == [[True, True, True, False, False], [False, False, True, False, False]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]


@pytest.mark.parametrize("static", [False, True])
def test_prefill_mask_hides_padding_and_no_row_is_empty(static):
    _, real, _ = left_pad([[5, 6, 7], [8]], width=3, new=2, pad=0, device="cpu")
    mask = prefill_mask(real, 3, static)
    assert mask.shape == (2, 1, 3, 5 if static else 3)
    rows = mask[:, 0, :, :3].int().tolist()
    assert rows[0] == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]  # causal
    assert rows[1] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]  # padding queries see only themselves; 8 sees itself
    assert not mask[..., 3:].any()  # no generated slot yet
    assert mask.any(-1).all()  # an empty row would give NaN


def test_done_flag_on_a_cpu_answers_now():
    import torch

    flag = DoneFlag(torch.device("cpu"))
    assert not flag.all_done(torch.tensor([True, False]))
    assert flag.all_done(torch.tensor([True, True]))


# ---------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def model(tiny_model):
    from tiny_model import vary_weights
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_model)
    vary_weights(m)  # outputs that differ from token to token: a mask bug changes them
    return m.eval()


class Script:
    """A `pick` that says row r's next token from a script, and notes what it was given."""

    def __init__(self, *rows):
        self.rows, self.step, self.seen = rows, 0, []

    def __call__(self, logits):
        import torch

        self.seen.append((torch.is_inference_mode_enabled(), logits.is_inference(), torch.is_grad_enabled()))
        token = torch.tensor([row[self.step] for row in self.rows])
        self.step += 1
        return token


def run(model, prompts, new, **kw):
    import torch

    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        rows = decode(model, prompts, device=torch.device("cpu"), pad=0, new=new, stop_ids={STOP}, **kw)
    finally:
        hook.remove()
    return rows, len(forwards)


def test_rows_end_at_and_include_their_stop_and_the_batch_ends_with_its_last(model):
    steps = []
    rows, forwards = run(model, [[5, 6, 7], [8]], 6, pick=Script([1, STOP, 4, 4, 4, 4], [2, 3, STOP, 4, 4, 4]),
                         on_step=steps.append)
    assert rows == [[1, STOP], [2, 3, STOP]]  # a finished row's later tokens are dropped
    assert steps == [1, 2, 3] and forwards == 3  # prefill + 2 steps: none after the last stop


def test_a_row_that_never_stops_runs_to_the_limit(model):
    rows, forwards = run(model, [[5], [6]], 3, pick=Script([STOP, 1, 1], [1, 2, 3]))
    assert rows == [[STOP], [1, 2, 3]] and forwards == 3


def test_all_done_decides_when_stepping_ends(model):
    # ZeRO-3 under synced_gpus: a rank whose rows have stopped steps on while another's run.
    rows, forwards = run(model, [[5], [6]], 4, pick=Script([STOP] * 4, [STOP] * 4), all_done=lambda done: False)
    assert rows == [[STOP], [STOP]] and forwards == 4


def test_stop_strings_criterion_ends_a_row(model):
    import torch

    def criterion(ids, scores):  # row 1 "matches" once it has two tokens
        return torch.tensor([False, ids.shape[1] >= 2])

    rows, _ = run(model, [[5], [6]], 4, pick=Script([1, 1, 1, 1], [2, 3, 4, 4]), stop_strings=criterion)
    assert rows == [[1, 1, 1, 1], [2, 3]]


def test_no_new_tokens_runs_no_forward(model):
    assert run(model, [[5], [6, 7]], 0) == ([[], []], 0)


@pytest.mark.parametrize("inference", [True, False])
def test_grad_mode(model, inference):
    # inference=False is torch.no_grad(): DeepSpeed ZeRO-3's parameter hooks refuse inference tensors.
    pick = Script([1, 1], [1, 1])
    run(model, [[5], [6]], 2, pick=pick, inference=inference)
    assert pick.seen == [(inference, inference, False)] * 2


def test_batched_greedy_equals_one_by_one_and_static_equals_dynamic(model):
    from transformers import StaticCache

    prompts = [[5, 6, 7, 8, 9, 10], [11], [12, 13, 14]]
    alone = [run(model, [p], 8)[0][0] for p in prompts]
    assert run(model, prompts, 8)[0] == alone  # padding changes nothing
    assert len({tuple(r) for r in alone}) == 3
    static = run(model, prompts, 8, static_cache=lambda n, length: StaticCache(config=model.config,
                                                                                max_cache_len=length))[0]
    assert static == alone


# ---------------------------------------------------------------- the graphed step (ft_common.decode_graphs)


class FakeGraphs:
    """CudaGraphs' interface on the CPU: capture only records fn, as a CUDA graph's capture does
    (running it would move the cache's length counter one step more), and each replay runs it
    into the same output object, as a replayed graph writes its memory."""

    def __init__(self, fail: str | None = None):
        self.fail, self.warmed, self.captured, self.replays, self.drained = fail, 0, 0, 0, 0

    def warm(self, fn):
        self.warmed += 1
        return fn()

    def capture(self, fn):
        if self.fail:
            raise RuntimeError(self.fail)
        self.captured += 1
        out = SimpleNamespace(logits=None)

        def replay():
            self.replays += 1
            out.logits = fn().logits

        return replay, out

    def drain(self):
        self.drained += 1


def static_cache_for(model):
    from transformers import StaticCache

    return lambda n, length: StaticCache(config=model.config, max_cache_len=length)


def test_the_graphed_step_replays_with_each_steps_inputs(model):
    from ft_common.decode_graphs import GraphedDecodeStep

    prompts = [[5, 6, 7, 8, 9, 10], [11], [12, 13, 14]]
    eager = run(model, prompts, 8)[0]
    graphs = FakeGraphs()
    step = GraphedDecodeStep(model, graphs=graphs)
    graphed = run(model, prompts, 8, static_cache=static_cache_for(model), compiled=step)[0]
    assert graphed == eager and len({tuple(r) for r in eager}) == 3
    # step 1 warm (eager), step 2 captured, then every step (the captured one too) replayed
    assert (graphs.warmed, graphs.captured, step.captures) == (1, 1, 1)
    assert graphs.replays == max(map(len, eager)) - 2 and step.failed is None  # prefill, warm-up: eager
    # a second batch (another cache) is warmed and captured anew
    assert run(model, prompts[:2], 8, static_cache=static_cache_for(model), compiled=step)[0] == eager[:2]
    assert (graphs.warmed, graphs.captured) == (2, 2)


def test_a_failed_capture_decodes_on_eagerly_and_says_why(model):
    from ft_common.decode_graphs import GraphedDecodeStep

    prompts = [[5, 6, 7], [11]]
    graphs = FakeGraphs(fail="operation not permitted when stream is capturing")
    told = []
    step = GraphedDecodeStep(model, graphs=graphs, on_failure=told.append)
    assert run(model, prompts, 6, static_cache=static_cache_for(model), compiled=step)[0] == run(model, prompts, 6)[0]
    assert step.failed == "RuntimeError: operation not permitted when stream is capturing"
    assert graphs.drained == 1 and graphs.replays == 0 and step.replay is None
    # a later batch (the next epoch's) decodes eagerly without trying again; told once
    assert run(model, prompts, 6, static_cache=static_cache_for(model), compiled=step)[0] == run(model, prompts, 6)[0]
    assert graphs.drained == 1 and told == [step.failed]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")
def test_on_cuda_a_real_capture_gives_the_eager_tokens(model):
    # fp32, so the static cache's extra (masked) slots change no argmax on the tiny model
    import copy

    import torch
    from ft_common.decode_graphs import GraphedDecodeStep

    gpu = copy.deepcopy(model).to("cuda")
    prompts = [[5, 6, 7, 8, 9, 10], [11], [12, 13, 14]]
    kw = {"device": torch.device("cuda"), "pad": 0, "new": 8, "stop_ids": {STOP}}
    eager = decode(gpu, prompts, **kw)
    step = GraphedDecodeStep(gpu)
    assert decode(gpu, prompts, static_cache=static_cache_for(gpu), compiled=step, **kw) == eager
    assert step.captures == 1 and step.failed is None
