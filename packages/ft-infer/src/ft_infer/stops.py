"""Stop handling shared by the local engines (hf and vllm), so both turn
generated token ids into the same completion.

A stop string that is one added (special) token of the tokenizer, like
`<END_A>` after ft-train, becomes a stop token id, exactly like eos; any other
stop string is matched as text. The completion is decoded without the stop
token and cut at the first stop string.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ft_common.decode import cut_completion

from ft_infer.types import Result


@dataclass(frozen=True)
class StopPlan:
    token_ids: frozenset[int]  # eos ids and single-token stop strings
    strings: tuple[str, ...]  # stop strings matched as text
    all_strings: tuple[str, ...]  # every stop string of the record (cut the text at these)


def plan_stops(tokenizer, stops: Sequence[str], eos: Iterable[int]) -> StopPlan:
    added = tokenizer.get_added_vocab()  # added tokens are never split, so their id is exact
    token_ids, strings = set(eos), []
    for stop in stops:
        if stop in added:
            token_ids.add(added[stop])
        else:
            strings.append(stop)
    return StopPlan(frozenset(token_ids), tuple(strings), tuple(stops))


def finish(tokenizer, generated: Sequence[int], plan: StopPlan, prompt_tokens: int,
           engine_reason: str | None = None) -> Result:
    """The Result for one sequence of generated ids (which may run past its stop).

    finish_reason is "stop" when a stop token or string ended it (or the engine
    says so: vLLM's `engine_reason`), else "length".
    """
    text, reason, count = cut_completion(tokenizer, generated, plan.token_ids, plan.all_strings)
    return Result(text, "stop" if engine_reason == "stop" else reason, prompt_tokens, count)
