"""ViGGO checker: the meaning representation (MR) scored the way the case study did.

    inform(name[Dirt: Showdown], genres[driving/racing, sport], has_mac_release[no])

A completion is correct when (1) its function is the reference's, (2) its set of
attributes is the reference's and (3) its attributes come in the dataset's
fixed precedence order. ViGGO's references are all written in one consistent
order, so (3) is checked against the reference: the attributes both MRs share
must appear in the reference's relative order. Values are not part of that
rule; they are measured separately as attribute-value F1, and exact match
compares the whole MR.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ft_common.tasks.viggo import FUNCTIONS

from ft_score.base import Checker, reference_of

_FUNC = re.compile(r"\s*([A-Za-z_]\w*)\s*\(")
_ATTR = re.compile(r"\s*([A-Za-z_]\w*)\s*\[")
_SPACE = re.compile(r"\s+")


class MRError(ValueError):
    """The text is not a well-formed MR; the message says where it went wrong."""


@dataclass(frozen=True)
class MR:
    function: str
    slots: tuple[tuple[str, str], ...]  # (attribute, value) in the order written

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.slots)


def _closing_bracket(text: str, start: int) -> int:
    """Index of the ']' closing a '[' opened just before `start` (nesting allowed), or -1."""
    close = text.find("]", start)
    if close < 0 or text.find("[", start, close) < 0:
        return close  # the common case: no brackets inside the value
    depth = 1
    for pos in range(start, len(text)):
        ch = text[pos]
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return pos
    return -1


@functools.lru_cache(maxsize=4096)  # references repeat, and correct completions equal them
def parse_mr(text: str) -> MR:
    """Parse `function(attr[value], ...)`; raise MRError with a reason when malformed.

    Values may hold commas, parentheses and balanced square brackets, and may be
    empty (`has_mac_release[]`).
    """
    match = _FUNC.match(text)
    if not match:
        raise MRError("no function name followed by '('")
    function = match.group(1)
    pos, n = match.end(), len(text)
    slots: list[tuple[str, str]] = []
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos < n and text[pos] == ")" and not slots:
            pos += 1
            break
        attr = _ATTR.match(text, pos)
        if not attr:
            raise MRError(f"expected attribute[value] at character {pos}")
        start = pos = attr.end()
        pos = _closing_bracket(text, start)
        if pos < 0:
            raise MRError(f"unclosed '[' after {attr.group(1)}")
        slots.append((attr.group(1), text[start:pos].strip()))
        pos += 1
        while pos < n and text[pos].isspace():
            pos += 1
        if pos < n and text[pos] == ",":
            pos += 1
            continue
        if pos < n and text[pos] == ")":
            pos += 1
            break
        raise MRError(f"expected ',' or ')' at character {pos}")
    if text[pos:].strip():
        raise MRError(f"trailing text after ')' at character {pos}")
    return MR(function, tuple(slots))


_ANY_FUNCTION = re.compile(r"\b(" + "|".join(FUNCTIONS) + r")\s*\(")


def first_mr_text(text: str) -> str:
    """The first `function(...)` of a ViGGO function in free text (prompted models add
    prefixes like 'Output:' and run on past the answer); the text itself when there is none."""
    match = _ANY_FUNCTION.search(text)
    if not match:
        return text
    depth = 0
    for pos in range(match.end(), len(text)):
        char = text[pos]
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(depth - 1, 0)
        elif char == ")" and depth == 0:
            return text[match.start():pos + 1]
    return text[match.start():]


def same_order(attributes: tuple[str, ...], reference: tuple[str, ...]) -> bool:
    """True when the attributes both sequences share come in the reference's relative order."""
    shared = set(attributes) & set(reference)
    return [a for a in attributes if a in shared] == [a for a in reference if a in shared]


def _value_items(mr: MR) -> set[tuple[str, str]]:
    # List values (genres[a, b]) count item by item; case and spacing do not matter.
    items = set()
    for attr, value in mr.slots:
        for part in value.split(",") if value else [""]:
            items.add((attr, _SPACE.sub(" ", part).strip().lower()))
    return items


def value_f1(predicted: MR, reference: MR) -> float:
    """F1 of (attribute, value item) pairs between two MRs."""
    p, r = _value_items(predicted), _value_items(reference)
    if not p and not r:
        return 1.0
    hit = len(p & r)
    return 0.0 if hit == 0 else 2 * hit / (len(p) + len(r))


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


class ViggoChecker(Checker):
    """extract="strict": the completion must be one MR (fine-tuned models);
    "first": the first MR found in the completion (prompted baselines)."""

    task = "viggo"
    metrics = ("function", "attribute_set", "attribute_order", "correct_unordered", "exact", "value_f1")

    def __init__(self, extract: str = "strict"):
        self.extract = extract

    def check(self, record: dict, completion: str) -> dict:
        reference_text = reference_of(record)
        try:
            reference = parse_mr(reference_text)
        except MRError as exc:
            return self.reference_failure(record, f"reference MR: {exc}")
        answer = completion.strip()
        if self.extract == "first":
            answer = first_mr_text(answer)
        score = {"correct": False, "function": False, "attribute_set": False,
                 "attribute_order": False, "correct_unordered": False,
                 "exact": _normal(answer) == _normal(reference_text), "value_f1": 0.0}
        try:
            mr = parse_mr(answer)
        except MRError as exc:
            return {**score, "failure": "malformed", "reason": str(exc)}
        function_ok = mr.function == reference.function
        set_ok = set(mr.attributes) == set(reference.attributes) and len(set(mr.attributes)) == len(mr.attributes)
        order_ok = same_order(mr.attributes, reference.attributes)
        score.update(function=function_ok, attribute_set=set_ok, attribute_order=order_ok,
                     correct_unordered=function_ok and set_ok, value_f1=round(value_f1(mr, reference), 4))
        score["correct"] = function_ok and set_ok and order_ok
        if not function_ok:
            known = "" if mr.function in FUNCTIONS else " (not a ViGGO function)"
            score.update(failure="wrong_function", reason=f"{mr.function}{known} != {reference.function}")
        elif not set_ok:
            missing = sorted(set(reference.attributes) - set(mr.attributes))
            extra = sorted(set(mr.attributes) - set(reference.attributes))
            repeated = len(set(mr.attributes)) != len(mr.attributes)
            reason = f"missing {missing}, extra {extra}" + (", repeated attribute" if repeated else "")
            score.update(failure="wrong_attributes", reason=reason)
        elif not order_ok:
            score.update(failure="wrong_order", reason="attributes not in the reference's order")
        return score


def command():
    """`ft-score viggo`, found by ft_score.cli through the task registry."""
    import click

    from ft_score.command import score_stream, task_command

    @task_command("viggo")
    @click.option("--extract", type=click.Choice(["strict", "first"]), default="strict", show_default=True,
                  help="strict: the completion must be one MR (fine-tuned models); first: the first MR "
                       "in the completion (prompted baselines that add text around it).")
    def viggo(input, output, summary_path, limit, quiet, extract):
        """Score ViGGO meaning representations: function, attribute set, attribute order.

        \b
          ft-prep viggo --split valid | ft-infer -m ckpt | ft-score viggo --summary s.json
        """
        score_stream(ViggoChecker(extract), input, output, summary_path, limit, quiet)

    return viggo
