"""The task registry drives both CLIs: every registered task has an ft-prep loader and an
ft-score checker command, each CLI lists exactly the registered tasks, and a new task
(three modules, as docs/architecture.md's recipe says) shows up with no CLI edit."""

import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import click
import ft_prep.cli
import ft_score.cli
import pytest
from click.testing import CliRunner
from ft_common.tasks import TASKS
from ft_common.tasks.base import Task

DOC_RECIPE = ("`ft_common/tasks/X.py`", "`ft_prep/X.py`", "`ft_score/X.py`")
ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("package", ["ft_prep", "ft_score"])
def test_every_task_has_a_command_of_its_name(package):
    for name in TASKS:
        command = importlib.import_module(f"{package}.{name}").command()
        assert isinstance(command, click.Command) and command.name == name, (package, name)


def test_each_cli_lists_exactly_the_registered_tasks():
    assert set(ft_prep.cli.cli.commands) == set(TASKS)
    assert set(ft_score.cli.cli.commands) == set(TASKS) | {"compare", "report"}


def test_the_recipe_is_in_the_architecture_doc():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    tasks = doc[doc.index("## Tasks"):doc.index("## Engines")]
    for path in DOC_RECIPE:
        assert path in tasks, path


def test_a_task_is_named_only_in_its_own_three_places():
    """`grep -rlw TASK packages/*/src`: the task's definition, loader and checker (a file, or a
    folder for a task with helpers); no other module, ft-train's included, names a task."""
    for word in ("viggo", "sql", "gsm8k", "mathqa"):
        found = subprocess.run(["grep", "-rlw", "--include=*.py", word, "packages"], cwd=ROOT,
                               capture_output=True, text=True).stdout.split()
        places = {_place(Path(f)) for f in found if "/src/" in f}
        assert places <= {f"ft_common/tasks/{word}", f"ft_prep/{word}", f"ft_score/{word}"}, (word, places)


def _place(path: Path) -> str:
    """packages/ft-prep/src/ft_prep/sql/build.py -> ft_prep/sql; .../ft_score/viggo.py -> ft_score/viggo."""
    parts = path.parts[path.parts.index("src") + 1:]
    if parts[:2] == ("ft_common", "tasks"):
        return "/".join(parts[:3]).removesuffix(".py")
    return "/".join(parts[:2]).removesuffix(".py")


@pytest.fixture
def echo_task(monkeypatch):
    """A new task `echo`: its Task, a loader module and a checker module, as the recipe says."""
    from ft_prep import generic
    from ft_score.base import Checker
    from ft_score.command import score_stream, task_command

    monkeypatch.setitem(TASKS, "echo", Task(name="echo", description="the input, echoed"))

    def records(rows, split, fmt, skip_bad=False, stats=None):
        for record in generic.records(rows, split, fmt, skip_bad=skip_bad, stats=stats):
            yield {**record, "task": "echo"}

    def prep_command():
        @click.command("echo")
        @click.argument("text")
        def echo(text):
            """Echo: TEXT -> one record whose target is TEXT."""
            from ft_prep.common import Row

            row = Row(0, {"input": text, "output": text}, "argument")
            click.echo(json.dumps(next(records([row], "train", "tokens"))))

        return echo

    class EchoChecker(Checker):
        task = "echo"

        def check(self, record, completion):
            return {"correct": completion == record["meta"]["reference"]}

    def score_command():
        @task_command("echo")
        def echo(input, output, summary_path, limit, quiet):
            """Score echo: the completion is the input."""
            score_stream(EchoChecker(), input, output, summary_path, limit, quiet)

        return echo

    monkeypatch.setitem(sys.modules, "ft_prep.echo", types.SimpleNamespace(command=prep_command))
    monkeypatch.setitem(sys.modules, "ft_score.echo", types.SimpleNamespace(command=score_command))
    yield (importlib.reload(ft_prep.cli).cli, importlib.reload(ft_score.cli).cli)
    monkeypatch.undo()
    importlib.reload(ft_prep.cli)
    importlib.reload(ft_score.cli)


def test_a_new_task_needs_no_cli_edit(echo_task):
    prep, score = echo_task
    runner = CliRunner()
    made = runner.invoke(prep, ["echo", "hello"])
    assert made.exit_code == 0, made.output
    record = json.loads(made.output)
    assert record["task"] == "echo" and record["meta"]["reference"] == "hello"
    scored = runner.invoke(score, ["echo", "-q"], input=json.dumps({**record, "completion": "hello"}) + "\n")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output.splitlines()[0])["score"]["correct"] is True


def _run(args, record):
    return CliRunner().invoke(ft_score.cli.cli, args, input=json.dumps(record) + "\n")


def test_a_task_checker_refuses_another_tasks_record():
    record = {"id": "gsm8k/valid/3", "task": "gsm8k", "completion": "#### 4",
              "meta": {"reference": "2 + 2 = 4\n#### 4", "answer": "4"}}
    from ft_common.errors import InputError

    refused = _run(["viggo", "-q"], record)
    assert isinstance(refused.exception, InputError) and refused.exception.exit_code == 2
    assert "gsm8k/valid/3" in str(refused.exception) and "ft-score gsm8k" in str(refused.exception)
    assert _run(["gsm8k", "-q"], record).exit_code == 0
    assert _run(["generic", "-q"], record).exit_code == 0  # generic scores any task's records
    del record["task"]
    assert _run(["gsm8k", "-q"], record).exit_code == 0  # no task key: nothing to check
