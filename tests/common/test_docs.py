"""docs/architecture.md stays true to the schema in ft_common.records."""

from pathlib import Path

from ft_common.records import KEYS, META

DOC = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()


def test_every_record_key_is_documented():
    for key in KEYS:
        assert f"| `{key.name}` |" in DOC, key.name


def test_every_meta_key_is_documented():
    for task, keys in META.items():
        for key in keys:
            assert f"| {task} | `{key}` |" in DOC, (task, key)
