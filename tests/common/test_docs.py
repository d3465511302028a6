"""docs/architecture.md stays true to the code: the record schema in ft_common.records, the
`meta` keys the registered tasks declare, and the "add a task" file list."""

import re
from pathlib import Path

from ft_common.records import KEYS, meta_keys
from ft_common.tasks import TASKS

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()
# The package each file of the "add a task" table lives in (its first path part).
PACKAGE_SRC = {"ft_common": "ft-common", "ft_prep": "ft-prep", "ft_score": "ft-score"}


def _section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end != -1 else None]


def test_every_record_key_is_documented():
    for key in KEYS:
        assert f"| `{key.name}` |" in DOC, key.name


def test_the_meta_table_lists_exactly_the_registered_tasks_keys():
    documented = set(re.findall(r"^\| (\w+) \| `(\w+)` \|", DOC, re.MULTILINE))
    declared = {(task, key) for task, keys in meta_keys().items() for key in keys}
    assert documented == declared, (sorted(documented - declared), sorted(declared - documented))


def test_every_registered_task_has_the_files_the_recipe_lists():
    recipe = re.findall(r"^\| `(ft_\w+/[\w/]*X\.py)` \|", _section("## Tasks"), re.MULTILINE)
    assert len(recipe) == 3, recipe
    for name in TASKS:
        for pattern in recipe:
            package = pattern.split("/")[0]
            src = ROOT / "packages" / PACKAGE_SRC[package] / "src"
            as_file = src / pattern.replace("X", name)
            as_folder = src / pattern.replace("X.py", name) / "__init__.py"  # a task with helpers
            assert as_file.is_file() or as_folder.is_file(), (name, pattern)

