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



PACKAGES = {"ft_common": "ft-common", "ft_prep": "ft-prep", "ft_infer": "ft-infer", "ft_score": "ft-score",
            "ft_train": "ft-train"}


def _src(package: str) -> Path:
    return ROOT / "packages" / PACKAGES[package] / "src"


def test_every_source_path_the_doc_names_exists():
    """`ft_x/path.py` and `ft_x/folder/` as the doc writes them (the recipe's X placeholder aside)."""
    named = set(re.findall(r"`(ft_(?:common|prep|infer|score|train)/[\w/]*?\w+(?:\.py|/))`", DOC))
    assert len(named) >= 5, named
    for path in sorted(named):
        if re.search(r"\bX\b", path):
            continue
        assert (_src(path.split("/")[0]) / path).exists(), path


def test_every_dotted_name_the_doc_names_exists():
    """`ft_common.records.meta_keys`, `ft_infer.run.infer_file`, ...: a module, and what it holds."""
    import importlib

    named = set(re.findall(r"\b(ft_(?:common|prep|infer|score|train)(?:\.[A-Za-z_]\w*)+)", DOC))
    assert len(named) >= 10, named
    for name in sorted(named):
        parts = name.split(".")
        if "X" in parts:
            continue
        for cut in range(len(parts), 0, -1):  # the longest prefix that is a module, then attributes
            try:
                value = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[cut:]:
            assert hasattr(value, attr), name
            value = getattr(value, attr)


def test_the_ft_train_table_lists_exactly_its_modules():
    """"Inside ft-train" has one row per module of ft_train: a module added or removed shows here."""
    documented = set(re.findall(r"^\| `(\w+\.py)` \|", _section("## Inside ft-train"), re.MULTILINE))
    modules = {p.name for p in (_src("ft_train") / "ft_train").glob("*.py") if p.name != "__init__.py"}
    assert documented == modules, (sorted(documented - modules), sorted(modules - documented))
