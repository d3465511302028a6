"""Generic checker for a user's own task: exact, normalised, JSON and classification metrics.

Every record gets all metrics that apply; `metric` picks the one that decides `correct`:

- exact: the completion equals meta.reference (outer whitespace ignored);
- normalized: equal after lower-casing, dropping punctuation and collapsing whitespace;
- json: the completion is valid JSON and, where the reference is a JSON object,
  has the same top-level keys (json_valid and json_keys are reported apart);
- label: classification: the normalised completion equals meta.label (or meta.reference);
  the summary adds a confusion table.
"""

from __future__ import annotations

import json
import re
import string

from ft_score.base import Checker, meta_of, reference_of

METRICS = ("exact", "normalized", "json", "label")
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def _json(text: str):
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


class GenericChecker(Checker):
    task = "generic"
    strict_task = False  # any task's records: exact match, normalised, JSON, labels

    def __init__(self, metric: str = "exact"):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}")
        self.metric = metric
        self.metrics = ("exact", "normalized", "json_valid", "json_keys", "label_correct")

    def check(self, record: dict, completion: str) -> dict:
        reference = reference_of(record).strip()
        score = {"correct": False, "exact": completion == reference,
                 "normalized": normalize_text(completion) == normalize_text(reference)}
        valid, value = _json(completion)
        ref_valid, ref_value = _json(reference)
        score["json_valid"] = valid
        score["json_keys"] = (valid and isinstance(value, dict) and set(value) == set(ref_value)
                              ) if ref_valid and isinstance(ref_value, dict) else None
        label = meta_of(record).get("label")
        if label is None and self.metric == "label":
            label = reference
        if label is not None:
            predicted = normalize_text(completion)
            score.update(label=str(label), predicted=predicted[:40],
                         label_correct=predicted == normalize_text(str(label)))
        if self.metric == "json":
            score["correct"] = bool(valid and score["json_keys"] is not False)
        else:
            score["correct"] = bool(score[{"label": "label_correct"}.get(self.metric, self.metric)])
        if not score["correct"]:
            score["failure"] = {"json": "invalid_json" if not valid else "wrong_keys",
                                "label": "wrong_label"}.get(self.metric, "mismatch")
        return score


def command():
    """`ft-score generic`, found by ft_score.cli through the task registry."""
    import click

    from ft_score.command import score_stream, task_command

    @task_command("generic")
    @click.option("--metric", type=click.Choice(METRICS), default="exact", show_default=True,
                  help="Which metric decides `correct` (all that apply are reported).")
    def generic(input, output, summary_path, limit, quiet, metric):
        """Score your own task: exact, normalised, JSON-valid + keys, or class labels.

        \b
          ft-prep generic data.jsonl | ft-infer -m ckpt | ft-score generic --metric label
        """
        score_stream(GenericChecker(metric), input, output, summary_path, limit, quiet)

    return generic
