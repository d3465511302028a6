import io
import json
import os

import click
import pytest
from ft_common.atomic import atomic_dir, atomic_write
from ft_common.cli import common_options, input_argument, output_option, run
from ft_common.errors import InputError, MissingExtraError, require_module
from ft_common.jsonl import iter_lines_as_records, open_output, read_records
from ft_common.records import new_record, require
from ft_common.tasks import TASKS, get_task


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"a": 1}\n\n{"b": 2}\n{oops\n')
    with pytest.raises(InputError, match=r"in.jsonl:4: not valid JSON"):
        list(read_records(str(p)))


def test_non_object_line_is_an_error():
    with pytest.raises(InputError, match=r"x:2: expected a JSON object"):
        list(iter_lines_as_records(io.StringIO('{"a":1}\n[1,2]\n'), "x"))


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="cannot open"):
        list(read_records(str(tmp_path / "nope.jsonl")))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_open_output_file_is_atomic(tmp_path):
    target = tmp_path / "o.jsonl"
    with pytest.raises(InputError):
        with open_output(str(target)) as w:
            w.write({"a": 1})
            raise InputError("bad line later")
    assert not target.exists()
    with open_output(str(target)) as w:
        w.write({"a": "é"})
    assert json.loads(target.read_text()) == {"a": "é"}


def test_atomic_dir_replaces_whole(tmp_path):
    d = tmp_path / "ckpt"
    with atomic_dir(d) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError
    assert sorted(os.listdir(d)) == ["a"]
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_require_names_record():
    with pytest.raises(InputError, match="record viggo/valid/3: missing key 'prompt'"):
        require({"id": "viggo/valid/3"}, "prompt")


def test_missing_extra_names_the_extra():
    with pytest.raises(MissingExtraError, match=r"pip install 'ft-infer\[vllm\]'"):
        require_module("surely_not_a_module_xyz", "ft-infer", "vllm")


def test_new_record_has_schema_version():
    r = new_record(id="t/0", task="viggo", split="valid", format="tokens", meta={}, prompt="p", target="t")
    assert r["ft_schema"] == 1 and "messages" not in r


def test_tasks_layout_and_parsing():
    assert set(TASKS) == {"viggo", "sql", "gsm8k", "mathqa", "generic"}
    v = get_task("viggo")
    assert v.prompt("Is Halo good?") == "<START_Q>Is Halo good?<END_Q><START_A>"
    assert v.target("request(name[Halo])") == "request(name[Halo])<END_A>"
    assert v.parse_answer(" inform(name[X]) <END_A> junk") == "inform(name[X])"
    g = get_task("gsm8k")
    assert g.parse_answer("so 3+4=7\n#### 1,234<END_A>") == "1234"
    assert g.parse_answer("#### 3.50") == "3.5"
    assert g.parse_answer("the answer is 7") is None
    assert get_task("mathqa").parse_answer("5^4 = 625\n#### c") == "c"
    assert get_task("sql").parse_answer("<SQL>SELECT a FROM t;</SQL>") == "SELECT a FROM t"
    with pytest.raises(Exception, match="unknown task 'nope'"):
        get_task("nope")


def _tool():
    @click.command()
    @input_argument()
    @output_option()
    @common_options
    def tool(input, output, quiet):
        """Copy records. Example: cat a.jsonl | tool"""
        with open_output(output) as w:
            w.write_all(read_records(input))

    return tool


def test_run_reports_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a":1}\nnope\n')
    with pytest.raises(SystemExit) as exc:
        run(_tool(), "ft-x", [str(bad), "-o", str(tmp_path / "out.jsonl")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ft-x: error: {bad}:2: not valid JSON: 'nope'"]
    assert not (tmp_path / "out.jsonl").exists()


def test_run_usage_error_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        run(_tool(), "ft-x", ["--no-such-flag"])
    assert exc.value.code == 2
    # One line, not click's Usage / Try / Error three.
    assert capsys.readouterr().err.splitlines() == ["ft-x: error: no such option '--no-such-flag' (see 'ft-x --help')"]


def test_output_option_reads_no_environment(tmp_path, monkeypatch, capsys):
    """FT_OUTPUT exported for a pipeline sent every command to the same file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FT_OUTPUT", "o.jsonl")
    src = tmp_path / "in.jsonl"
    src.write_text('{"a": 1}\n')
    with pytest.raises(SystemExit) as exc:
        run(_tool(), "ft-x", [str(src)])
    assert exc.value.code == 0
    assert json.loads(capsys.readouterr().out) == {"a": 1} and not (tmp_path / "o.jsonl").exists()


def _noisy():
    @click.command()
    @common_options
    def noisy(quiet):
        """Warn as a library would, through both channels."""
        import logging
        import warnings

        warnings.warn("a library's deprecation", FutureWarning, stacklevel=1)
        logging.getLogger("sqlglot").warning("'SHOW x' contains unsupported syntax")

    return noisy  # this test module is not ft_*, so its warnings count as a library's


def test_third_party_warnings_hidden_until_verbose(capsys, caplog, monkeypatch):
    import logging
    import warnings

    monkeypatch.delenv("FT_VERBOSE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    before = (list(warnings.filters), logging.getLogger("sqlglot").level, logging.getLogger().level)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit):
            run(_noisy(), "ft-x", [])
        assert seen == [] and caplog.records == [] and capsys.readouterr().err == ""
        with pytest.raises(SystemExit):
            run(_noisy(), "ft-x", ["-v"])
        assert [str(w.message) for w in seen] == ["a library's deprecation"]
        assert [r.getMessage() for r in caplog.records] == ["'SHOW x' contains unsupported syntax"]
    # run() leaves an in-process caller as it found it.
    assert (list(warnings.filters), logging.getLogger("sqlglot").level, logging.getLogger().level) == before
    assert "TRANSFORMERS_VERBOSITY" not in os.environ and "FT_VERBOSE" not in os.environ


def test_progress_draws_only_on_a_terminal(monkeypatch, capsys):
    from ft_common.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    p = Progress("ft-x", total=4)
    p.note("batch 1/1, token 3/9")
    assert tty.getvalue().startswith("\rft-x: 0/4 batch 1/1, token 3/9")
    Progress("ft-x", quiet=True).note("hidden")
    assert "hidden" not in tty.getvalue()
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    p = Progress("ft-x", total=4)
    p.note("x")
    p.update(4)
    p.close()
    assert pipe.getvalue() == ""  # a short job's log holds nothing


def test_off_a_terminal_progress_is_a_whole_line_a_minute(monkeypatch):
    """A long job's log gets the progress text as whole lines (no carriage returns), at most one
    per PLAIN_EVERY_S, the ETA read at a glance; -q gets none."""
    from ft_common import progress as progress_module
    from ft_common.progress import PLAIN_EVERY_S, Progress

    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    p, quiet = Progress("ft-x", total=400), Progress("ft-x", total=400, quiet=True)
    for _ in range(100):  # one record a second
        clock[0] += 1.0
        p.update(extra="12 tok/s")
        quiet.update()
    assert PLAIN_EVERY_S == 60.0
    assert pipe.getvalue() == "ft-x: 60/400 ETA 5m 40s 1.0 rec/s 12 tok/s\n"
    clock[0] += PLAIN_EVERY_S
    p.note("batch 3/4")  # work inside one item counts too
    assert pipe.getvalue().splitlines()[1:] == ["ft-x: 100/400 ETA 8m 00s 0.6 rec/s batch 3/4"]
    assert "\r" not in pipe.getvalue()


def test_durations_read_at_a_glance():
    from ft_common.progress import duration

    assert [duration(s) for s in (0, 41.6, 60, 185, 3599, 3600, 23040, -5)] == [
        "0s", "42s", "1m 00s", "3m 05s", "59m 59s", "1h 00m", "6h 24m", "0s"]


def test_verbose_shows_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("ft_common.runner").runner._state, "verbose", False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    with pytest.raises(SystemExit):
        run(_tool(), "ft-x", ["-v", str(bad)])
    assert "Traceback" in capsys.readouterr().err


def test_atomic_write_to_a_device_writes_through(tmp_path, monkeypatch):
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    # daemon: if the FIFO were renamed over, the reader would block forever and hang pytest
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    reader.start()
    with atomic_write(fifo) as fh:
        fh.write("line\n")
    reader.join(5)
    assert got == ["line\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    # /dev/null is never a regular file, so checking that proves nothing; instead no temp file
    # is made beside it and nothing is renamed over it. (As root a rename would replace the
    # machine's /dev/null: the guard refuses it, and the failed write removes its temp file.)
    renamed = []
    real_replace = os.replace

    def guard(src, dst, *args, **kwargs):
        if os.path.abspath(dst) == os.devnull:
            renamed.append(src)
            raise PermissionError(f"test guard: not renaming {src} over {dst}")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", guard)
    before = set(os.listdir(os.path.dirname(os.devnull)))
    with open_output(os.devnull) as w:
        w.write({"a": 1})
    assert renamed == [] and set(os.listdir(os.path.dirname(os.devnull))) == before
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_mathqa_option_with_spaces():
    assert get_task("mathqa").parse_answer("so the answer is ( C )") == "c"
    assert get_task("mathqa").parse_answer("#### ( d )") == "d"
