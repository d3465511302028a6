import io
import json
import sys

import pytest
from ft_common import runner as ft_runner
from ft_common.cli import run
from ft_prep.cli import cli


class Result:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    @property
    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.out.split("\n") if line]


@pytest.fixture
def prep(capsys, monkeypatch):
    """Run `ft-prep ARGS` in-process (with ft's exit codes); stdin text optional."""

    def invoke(*args: str, stdin: str | None = None) -> Result:
        ft_runner._state["verbose"] = False
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        with pytest.raises(SystemExit) as exc:
            run(cli, "ft-prep", [str(a) for a in args])
        captured = capsys.readouterr()
        return Result(exc.value.code, captured.out, captured.err)

    return invoke
