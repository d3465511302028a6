"""The run summary: accuracy with a 95% Wilson interval, sub-metrics, failures, token costs."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval for a proportion (0, 0 when n is 0)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


class Summary:
    """Accumulates scored records one at a time; `as_dict()` is the --summary JSON."""

    def __init__(self, task: str, metrics: Iterable[str] = ()):
        self.task = task
        self.metrics = tuple(metrics)
        self.n = 0
        self.correct = 0
        self.truncated = 0
        self.failures: Counter[str] = Counter()
        self.confusion: Counter[tuple[str, str]] = Counter()
        self._sums = dict.fromkeys(self.metrics, 0.0)
        self._counts = dict.fromkeys(self.metrics, 0)
        self._tokens = {"prompt_tokens": [0, 0], "completion_tokens": [0, 0]}

    def add(self, record: dict, score: dict | None = None) -> None:
        score = record["score"] if score is None else score
        self.n += 1
        self.correct += bool(score.get("correct"))
        self.truncated += bool(score.get("truncated"))
        if score.get("failure"):
            self.failures[score["failure"]] += 1
        for name in self.metrics:
            value = score.get(name)
            if value is not None:  # None: the metric does not apply to this record
                self._sums[name] += float(value)
                self._counts[name] += 1
        if "label" in score and "predicted" in score:
            self.confusion[(str(score["label"]), str(score["predicted"]))] += 1
        for key, acc in self._tokens.items():
            value = record.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                acc[0] += value
                acc[1] += 1

    def add_all(self, records: Iterable[dict]) -> Summary:
        for record in records:
            self.add(record)
        return self

    def as_dict(self) -> dict:
        low, high = wilson_interval(self.correct, self.n)
        out = {
            "task": self.task,
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.correct / self.n if self.n else None,
            "ci95": [round(low, 4), round(high, 4)] if self.n else None,
            "metrics": {name: (self._sums[name] / self._counts[name] if self._counts[name] else None)
                        for name in self.metrics},
            "failures": dict(self.failures.most_common()),
            "truncated": self.truncated,
            "mean_prompt_tokens": _mean(self._tokens["prompt_tokens"]),
            "mean_completion_tokens": _mean(self._tokens["completion_tokens"]),
        }
        if self.confusion:
            out["confusion"] = confusion_table(self.confusion)
        return out


def _mean(acc: list[int]) -> float | None:
    return round(acc[0] / acc[1], 2) if acc[1] else None


def confusion_table(pairs: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{label: {predicted: count}}, labels sorted."""
    table: dict[str, dict[str, int]] = {}
    for (label, predicted), count in sorted(pairs.items()):
        table.setdefault(label, {})[predicted] = count
    return table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_summary(summary: dict) -> str:
    """The summary as a small table for people (stderr)."""
    rows: list[tuple[str, str]] = [("task", summary["task"]), ("n", str(summary["n"]))]
    if summary["n"]:
        low, high = summary["ci95"]
        rows.append(("accuracy", f"{_pct(summary['accuracy'])}  (95% CI {_pct(low)} - {_pct(high)})"))
    else:
        rows.append(("accuracy", "- (no records)"))
    for name, value in summary["metrics"].items():
        shown = "-" if value is None else (f"{value:.4f}" if name.endswith(("f1", "_mean")) else _pct(value))
        rows.append((f"  {name}", shown))
    if summary["failures"]:
        rows.append(("failures", ", ".join(f"{k} {v}" for k, v in summary["failures"].items())))
    rows.append(("truncated (length)", str(summary["truncated"])))
    for key in ("mean_prompt_tokens", "mean_completion_tokens"):
        if summary.get(key) is not None:
            rows.append((key.replace("_", " "), f"{summary[key]:.1f}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if summary.get("confusion"):
        lines.append("confusion (rows: label, columns: predicted)")
        lines.extend(_confusion_lines(summary["confusion"]))
    return "\n".join(lines)


def _confusion_lines(table: dict[str, dict[str, int]], max_classes: int = 12) -> list[str]:
    labels = list(table)[:max_classes]
    predicted = sorted({p for row in table.values() for p in row})[:max_classes]
    width = max([len(x) for x in labels + predicted] + [5])
    header = " " * (width + 3) + " ".join(p[:width].rjust(width) for p in predicted)
    lines = [header]
    for label in labels:
        cells = " ".join(str(table[label].get(p, 0)).rjust(width) for p in predicted)
        lines.append(f"  {label[:width].ljust(width)} {cells}")
    return lines
