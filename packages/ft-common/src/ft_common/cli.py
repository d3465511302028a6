"""The click layer every ft command shares: one flag vocabulary, one error style.

Each command's console script calls `run(cli, "ft-X")`, which turns every
failure, click's usage errors included, into one stderr line `ft-X: error: ...`
and an exit code: 1 for a runtime failure, 2 for a usage error or bad input.
`-v` adds the traceback and lets third-party warnings and logs through
(`ft_common.thirdparty`). A closed stdout (`ft-prep gsm8k | head`) ends the
command quietly.

Environment variables: only those that mean the same in every command and are
safe to export for a whole pipeline (FT_LIMIT, FT_SEED, FT_QUIET, FT_VERBOSE).
None names an output or a model: one exported FT_OUTPUT sent every command of
a pipe to the same file, and ft-train and ft-infer never want the same model.
The table of every variable is in the README's Conventions section.
"""

from __future__ import annotations

import itertools
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator

import click

from ft_common import secrets, thirdparty
from ft_common.errors import FtError

_state = {"verbose": False}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        _state["verbose"] = True
        os.environ["FT_VERBOSE"] = "1"  # worker processes (Ray, the SQL sandbox) inherit it
        thirdparty.show()
    return value


def input_argument(name: str = "input") -> Callable:
    """Positional JSONL input, '-' (stdin) by default."""
    return click.argument(name, default="-", type=click.Path(dir_okay=False, allow_dash=True))


def output_option(help: str = "Write records here instead of stdout.") -> Callable:
    # No environment variable: exported for a pipeline, it would send every command to one file.
    return click.option("-o", "--output", default="-", show_default=True,
                        type=click.Path(dir_okay=False, allow_dash=True), help=help)


def model_option(required: bool = False, help: str = "Model: a local folder, a .gguf file or a hub id.") -> Callable:
    # No environment variable: each command of a pipeline wants its own model.
    return click.option("-m", "--model", required=required, help=help)


def limit_option() -> Callable:
    return click.option("--limit", type=click.IntRange(min=0), default=None, envvar="FT_LIMIT",
                        help="Process at most N records. [env FT_LIMIT]")


def seed_option(default: int = 0) -> Callable:
    return click.option("--seed", type=int, default=default, envvar="FT_SEED", show_default=True,
                        help="Random seed. [env FT_SEED]")


def quiet_option() -> Callable:
    return click.option("-q", "--quiet", is_flag=True, envvar="FT_QUIET",
                        help="No progress or summary on stderr. [env FT_QUIET]")


def verbose_option() -> Callable:
    return click.option("-v", "--verbose", is_flag=True, envvar="FT_VERBOSE", callback=_set_verbose,
                        expose_value=False, is_eager=True,
                        help="Show tracebacks and debug logs. [env FT_VERBOSE]")


def common_options(f: Callable) -> Callable:
    """-q/--quiet and -v/--verbose, which every command takes."""
    return quiet_option()(verbose_option()(f))


def take(records: Iterable[dict], limit: int | None) -> Iterator[dict]:
    """The first `limit` records (all when limit is None), lazily."""
    return iter(records) if limit is None else itertools.islice(records, limit)


def verbose() -> bool:
    return _state["verbose"] or thirdparty.verbose_env()


def run(command: click.Command, prog: str, args: list[str] | None = None) -> None:
    """Invoke a click command as console script `prog` and exit with ft's conventions."""
    code = 0
    saved = (_state["verbose"], os.environ.get("FT_VERBOSE"))
    if not verbose():
        thirdparty.hide()  # until -v, parsed below, says otherwise
    try:
        result = command.main(args=args, prog_name=prog, standalone_mode=False)
        code = result if isinstance(result, int) else 0
        sys.stdout.flush()
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:  # usage errors: one line, as every other error
        _report(prog, usage_message(exc))
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo(f"{prog}: aborted", err=True)
        code = 130
    except FtError as exc:
        _report(prog, str(exc))
        code = exc.exit_code
    except BrokenPipeError:
        _silence_stdout()
        code = 0
    except SystemExit:
        # click's main() catches EPIPE itself, even with standalone_mode=False: it wraps
        # stdout to quiet later flushes and exits 1. That is a closed pipe, which ends quietly.
        if not isinstance(sys.stdout, click.utils._PacifyFlushWrapper):
            raise
        _silence_stdout()
        code = 0
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        code = 130
    except Exception as exc:  # a bug or an unexpected library failure: still one line
        _report(prog, f"{type(exc).__name__}: {exc}" + ("" if verbose() else " (run with -v for the traceback)"))
        code = 1
    finally:  # leave an in-process caller (a test) as it was
        thirdparty.show()
        _state["verbose"] = saved[0]
        if saved[1] is None:
            os.environ.pop("FT_VERBOSE", None)
        else:
            os.environ["FT_VERBOSE"] = saved[1]
    sys.exit(code)


def usage_message(exc: click.ClickException) -> str:
    """click's error as one line, with the `--help` to read instead of click's Usage/Try lines."""
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        message = "Missing command"  # its own message is the whole --help text
    else:
        message = " ".join(exc.format_message().split()).rstrip(".")
    if message == "Missing command" and ctx is not None and isinstance(ctx.command, click.Group):
        message += ": one of " + ", ".join(ctx.command.list_commands(ctx))
    if message[:1].isupper() and message[1:2].islower():  # "No such option" -> "no such option"
        message = message[0].lower() + message[1:]
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


def _report(prog: str, message: str) -> None:
    # Exception text can quote what an endpoint echoed back (a key): both go through the scrubber.
    if verbose():
        print(secrets.scrub(traceback.format_exc()), end="", file=sys.stderr, flush=True)
    message = secrets.scrub(message)
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"{prog}: error: {first_line}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush is quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
