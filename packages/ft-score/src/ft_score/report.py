"""Results tables and a bar chart from scored runs: what docs/results.md shows, for anyone's runs.

A run is a scored JSONL file (`ft-score TASK ... -o RUN.scored.jsonl`), summarised
here, or a summary JSON (`ft-score TASK --summary RUN.summary.json`): a path
ending in `.json` is read as a summary, anything else (`-` too) as records.
Each run is one row of its task's Markdown table: model, method, accuracy,
its 95% Wilson interval, n, prompt tokens per request, and training facts when
a fine-tune's manifest (`NAME.ft-train.json`, with `NAME.metrics.jsonl`) lies
beside the file, NAME being the run's name or its longest prefix cut at a
`-` (so `ft-smollm2-spider` finds `ft-smollm2.ft-train.json`).

Each `against` run (a baseline) adds a `vs NAME` column to its task's table:
every other run's accuracy difference to it in points and McNemar's exact p,
paired on the ids both share. Only scored records give per-id verdicts, so a
summary JSON, or records without unique ids, gets "-" there.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ft_common.errors import InputError, UsageError, require_module
from ft_common.jsonl import STDIO, display_name, read_records
from ft_common.progress import log

from ft_score.compare import compare, correctness
from ft_score.summary import Summary

# What ft-prep's record `format` says about how the model was asked.
METHODS = {"tokens": "fine-tuned", "fewshot": "few-shot prompt", "chat": "chat prompt"}
HEADER = ("| model | method | accuracy | 95% CI | n | prompt tokens/request | training |\n"
          "|---|---|---:|---|---:|---:|---|")
TITLE = "Accuracy per run: fine-tuned (blue) vs prompted (grey)"
_SUFFIXES = (".scored", ".summary")


@dataclass
class Run:
    name: str  # the file's name less .jsonl/.json and .scored/.summary
    task: str
    summary: dict  # Summary.as_dict()'s shape
    model: str
    method: str
    training: str  # "-" when no manifest was found
    fine_tuned: bool  # blue in the chart
    verdicts: dict[str, bool] | None = None  # {id: correct}, for pairing; None: a summary, or ids not unique
    label: str = ""  # the model named by --label, if any: an `against` column is headed "MODEL, METHOD" then


def run_name(path: str) -> str:
    if path == STDIO:
        return "stdin"
    name = Path(path).name
    for ext in (".xz", ".gz", ".jsonl", ".json"):
        name = name.removesuffix(ext)
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def parse_label(text: str) -> tuple[str, str, str]:
    """`RUN=MODEL|METHOD` (METHOD optional) -> (run, model, method)."""
    run, sep, rest = text.partition("=")
    if not sep or not run or not rest:
        raise UsageError(f"--label {text!r}: expected RUN=MODEL|METHOD")
    model, _, method = rest.partition("|")
    return run, model, method


def _short_model(model: str) -> str:
    """A model path's last part (with its parent when that part is `best` or `epoch-N`)."""
    parts = [p for p in model.replace("\\", "/").split("/") if p]
    if not parts:
        return model
    if len(parts) > 1 and (parts[-1] in ("best", "final") or parts[-1].startswith("epoch-")):
        return "/".join(parts[-2:])
    return parts[-1]


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: not a JSON object")
    return value


def training_info(path: str, name: str) -> str:
    """One line of training facts from the manifest beside `path`, or "-"."""
    if path == STDIO:
        return "-"
    folder, parts = Path(path).parent, name.split("-")
    for cut in range(len(parts), 0, -1):
        manifest = folder / f"{'-'.join(parts[:cut])}.ft-train.json"
        if manifest.is_file():
            break
    else:
        return "-"
    m = _read_json(manifest)
    try:
        epochs, best = m["epochs"], m["best"]
        text = f"{len(epochs)} ep, best {best['epoch']} (val ppl {best['val_ppl']:.3f})"
        metrics_path = manifest.with_name(manifest.name.replace(".ft-train.json", ".metrics.jsonl"))
        if metrics_path.is_file() and epochs:
            steps = list(read_records(str(metrics_path)))
            if steps:
                text += f", ~{epochs[-1]['time'] - steps[0]['time']:.0f} s"
            rates = [s["tokens_per_s"] for s in steps if "tokens_per_s" in s]
            if rates:
                text += f", {statistics.median(rates) / 1000:.0f}k tok/s"
        text += gpu_minutes(m)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{manifest}: not an ft-train manifest ({type(exc).__name__}: {exc})") from None
    return text


def gpu_minutes(manifest: dict) -> str:
    """", N GPU-min": the GPUs held for the whole command (start to exit, the manifest's timing) times
    the workers, for a GPU run whose manifest has its timing; else ""."""
    resolved, timing = manifest.get("resolved") or {}, manifest.get("timing") or {}
    seconds = (timing.get("phases") or {}).get("exit")
    if resolved.get("device") != "cuda" or not isinstance(seconds, int | float):
        return ""
    return f", {seconds * int(resolved.get('workers') or 1) / 60:.1f} GPU-min"


def _summarise_records(path: str) -> tuple[dict, Counter, Counter, dict[str, bool] | None]:
    """The summary of a scored JSONL file, the counts of its `model` and `format` keys, and its
    {id: correct} (None when an id is missing or repeated: the table still works, pairing does not)."""
    summary: Summary | None = None
    verdicts: list[dict] = []  # kept from the one pass: stdin cannot be read twice
    models: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    for line, record in enumerate(read_records(path), 1):
        if not isinstance(record.get("score"), dict):
            raise InputError(f"{display_name(path)}:{line}: no 'score' (run ft-score TASK on it first)")
        if summary is None:
            summary = Summary(str(record.get("task") or "-"))
        summary.add(record)
        verdicts.append({"id": record.get("id"), "score": record["score"]})
        if isinstance(record.get("model"), str):
            models[record["model"]] += 1
        if isinstance(record.get("format"), str):
            formats[record["format"]] += 1
    if summary is None:
        raise InputError(f"{display_name(path)}: no records")
    try:
        paired = correctness(verdicts)
    except InputError:
        paired = None
    return summary.as_dict(), models, formats, paired


def load_run(path: str, label: tuple[str, str] | None = None) -> Run:
    """One run from a scored JSONL file or a summary JSON; `label` = (model, method) overrides."""
    name = run_name(path)
    training = training_info(path, name)
    models: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    verdicts = None
    if _is_summary(path):
        summary = _read_json(Path(path))
        if not all(k in summary for k in ("task", "n", "accuracy", "ci95")):
            raise InputError(f"{path}: not an ft-score summary (no task, n, accuracy, ci95)")
    else:
        summary, models, formats, verdicts = _summarise_records(path)
    model = _short_model(models.most_common(1)[0][0]) if models else name
    method = METHODS.get(formats.most_common(1)[0][0], "-") if formats else "-"
    if method == "-" and training != "-":
        method = "fine-tuned"
    fine_tuned = method == "fine-tuned" or training != "-"
    if label is not None:
        model, method = label[0] or model, label[1] or method
    return Run(name, str(summary["task"]), summary, model, method, training, fine_tuned, verdicts,
               label[0] if label else "")


def _is_summary(path: str) -> bool:
    return path != STDIO and path.endswith(".json")


def load_runs(paths: list[str], labels: list[str] = ()) -> list[Run]:
    """The runs, in order; a label's RUN is a run's name or its path as given (the path wins)."""
    parsed = {run: (model, method) for run, model, method in map(parse_label, labels)}
    names = [run_name(p) for p in paths]
    unknown = sorted(set(parsed) - set(names) - set(paths))
    if unknown:
        raise UsageError(f"--label names {', '.join(unknown)}, not among the runs ({', '.join(names)})")
    if paths.count(STDIO) > 1:
        raise UsageError("only one run can be stdin")
    return [load_run(p, parsed.get(p, parsed.get(n))) for p, n in zip(paths, names, strict=True)]


def against_indices(paths: list[str], against: list[str]) -> list[int]:
    """Each --against RUN's index among `paths`, resolved as --label's RUN (the path wins)."""
    names = [run_name(p) for p in paths]
    indices = []
    for ref in against:
        if ref not in paths and ref not in names:
            raise UsageError(f"--against names {ref}, not among the runs ({', '.join(names)})")
        index = paths.index(ref) if ref in paths else names.index(ref)
        if _is_summary(paths[index]):
            raise UsageError(f"--against {ref}: a summary has no per-record verdicts; give its scored JSONL")
        indices.append(index)
    return indices


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table_row(run: Run) -> str:
    s = run.summary
    ci = "-" if not s.get("ci95") else f"{100 * s['ci95'][0]:.1f}-{100 * s['ci95'][1]:.1f}%"
    tokens = s.get("mean_prompt_tokens")
    tokens = "-" if tokens is None else f"{tokens:.0f}"
    return (f"| {run.model} | {run.method} | {_pct(s['accuracy'])} | {ci} | {s['n']} "
            f"| {tokens} | {run.training} |")


def versus(run: Run, base: Run) -> str:
    """`run` against the baseline `base` on their shared ids: accuracy difference in points, McNemar's p."""
    if run is base or run.verdicts is None or base.verdicts is None:
        return "-"
    result = compare(run.verdicts, base.verdicts)
    shared, p = result["shared"], result["mcnemar_p"]
    if not shared:
        return "-"
    text = f"{100 * result['difference']:+.1f}, " + ("p < 1e-300" if p < 1e-300 else f"p = {p:.2g}")
    if shared < min(len(run.verdicts), len(base.verdicts)):  # the difference is not over whole runs
        text += f" ({shared} shared)"
    return text


def markdown(runs: list[Run], against: list[Run] = ()) -> str:
    """One `### task` section per task, in the order the tasks first appear; a `vs NAME` column per
    `against` run of that task."""
    sections: dict[str, list[Run]] = {}
    for run in runs:
        sections.setdefault(run.task, []).append(run)
    tables = []
    for task, members in sections.items():
        bases = [b for b in against if b.task == task]
        head, rule = HEADER.split("\n")
        head += "".join(f" vs {f'{b.model}, {b.method}' if b.label else b.name} |" for b in bases)  # which prompt, too
        rule += "---|" * len(bases)
        rows = [table_row(r) + "".join(f" {versus(r, b)} |" for b in bases) for r in members]
        tables.append(f"### {task}\n\n{head}\n{rule}\n" + "\n".join(rows))
    return "\n\n".join(tables) + "\n"


def write(text: str, output: str = STDIO) -> None:
    """The tables on stdout ('-') or in a file (atomic write)."""
    if output == STDIO:
        sys.stdout.write(text)
        return
    from ft_common.atomic import atomic_write

    with atomic_write(output) as fh:
        fh.write(text)


def chart(runs: list[Run], path: str, title: str = TITLE) -> None:
    """A PNG bar chart of accuracy per run, fine-tuned runs blue and prompted grey (atomic write)."""
    require_module("matplotlib", "ft-score", "report")
    import matplotlib

    matplotlib.use("Agg")  # no display: a file, not a window
    import matplotlib.pyplot as plt
    from ft_common.atomic import atomic_write

    bars = [(f"{r.task}\n{r.name}", 100 * (r.summary["accuracy"] or 0.0), r.fine_tuned) for r in runs]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(bars) + 1.6), 4.5))
    ax.bar(range(len(bars)), [b[1] for b in bars], color=["#1f77b4" if ft else "#bbbbbb" for _, _, ft in bars])
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    fig.tight_layout()
    with atomic_write(path, "wb", encoding=None) as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def report(paths: list[str], labels: list[str] = (), output: str = STDIO, chart_path: str | None = None,
           title: str = TITLE, quiet: bool = False, against: list[str] = ()) -> list[Run]:
    """`ft-score report`: the Markdown tables to `output` (a column per `against` baseline), and the
    chart when `chart_path` is given."""
    paths = list(paths)
    bases = against_indices(paths, list(against))  # before reading any run: usage errors first
    runs = load_runs(paths, list(labels))
    if chart_path:
        chart(runs, chart_path, title)
    write(markdown(runs, [runs[i] for i in bases]), output)
    if chart_path:
        log(f"ft-score report: {len(runs)} runs, chart {chart_path}", quiet)
    return runs
