"""Paired comparison of two scored runs on the same ids: wins, losses, ties, McNemar's exact test.

For claims like "the fine-tuned model beats the baseline": each id scored in
both runs is a pair; only the discordant pairs (one right, the other wrong)
carry information, and the exact McNemar p-value is the two-sided binomial
test of those against 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ft_common.errors import InputError, UsageError
from ft_common.jsonl import STDIO, read_records
from ft_common.records import record_id

from ft_score.summary import wilson_interval


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (1.0 when there are none)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # log-space sum of binomial(n, i) / 2^n for i <= k, doubled.
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
            for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(x - top) for x in logs)
    return min(1.0, 2 * tail)


def correctness(records: Iterable[dict], name: str = "run") -> dict[str, bool]:
    """{id: score.correct} for scored records; InputError on a missing score or a repeated id."""
    out: dict[str, bool] = {}
    for index, record in enumerate(records, 1):
        rid = record.get("id")
        if rid is None:
            raise InputError(f"{name}: record {index} has no id (compare joins on ids)")
        score = record.get("score")
        if not isinstance(score, dict) or "correct" not in score:
            raise InputError(f"{name}: record {record_id(record)} has no score.correct (run ft-score first)")
        if str(rid) in out:
            raise InputError(f"{name}: id {rid} appears twice")
        out[str(rid)] = bool(score["correct"])
    return out


def compare(a: dict[str, bool], b: dict[str, bool], names: tuple[str, str] = ("A", "B")) -> dict:
    """Paired comparison of {id: correct} maps on their shared ids."""
    shared = [i for i in a if i in b]
    wins = sum(1 for i in shared if a[i] and not b[i])
    losses = sum(1 for i in shared if b[i] and not a[i])
    both = sum(1 for i in shared if a[i] and b[i])
    n = len(shared)
    out = {"a": names[0], "b": names[1], "shared": n,
           "only_a": len(a) - n, "only_b": len(b) - n,
           "wins": wins, "losses": losses, "ties": n - wins - losses,
           "both_correct": both, "both_wrong": n - wins - losses - both}
    for side, scores in (("a", a), ("b", b)):
        correct = sum(1 for i in shared if scores[i])
        low, high = wilson_interval(correct, n)
        out[f"accuracy_{side}"] = correct / n if n else None
        out[f"ci95_{side}"] = [round(low, 4), round(high, 4)] if n else None
    out["difference"] = (out["accuracy_a"] - out["accuracy_b"]) if n else None
    out["mcnemar_p"] = mcnemar_exact(wins, losses)
    return out


def compare_files(path_a: str, path_b: str) -> dict:
    """compare() of two scored JSONL files, named by their paths ('-': stdin, for one of them)."""
    if path_a == STDIO and path_b == STDIO:
        raise UsageError("only one of the runs can be stdin")
    return compare(correctness(read_records(path_a), path_a), correctness(read_records(path_b), path_b),
                   names=(path_a, path_b))


def format_comparison(result: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    rows = [
        ("A", result["a"]), ("B", result["b"]),
        ("shared ids", str(result["shared"]) + (f"  (only in A {result['only_a']}, only in B {result['only_b']})"
                                                 if result["only_a"] or result["only_b"] else "")),
        ("accuracy A", pct(result["accuracy_a"])), ("accuracy B", pct(result["accuracy_b"])),
        ("difference A - B", "-" if result["difference"] is None else f"{100 * result['difference']:+.1f} points"),
        ("A wins (A right, B wrong)", str(result["wins"])),
        ("A losses (B right, A wrong)", str(result["losses"])),
        ("ties", f"{result['ties']}  (both right {result['both_correct']}, both wrong {result['both_wrong']})"),
        ("McNemar exact p", f"{result['mcnemar_p']:.4g}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
