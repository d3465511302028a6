"""Running an ft command: one error style and exit code, whatever goes wrong.

Each command's console script calls `run(cli, "ft-X")`, which turns every
failure, click's usage errors included, into one stderr line `ft-X: error: ...`
and an exit code: 1 for a runtime failure, 2 for a usage error or bad input.
`-v` adds the traceback and lets third-party warnings and logs through
(`ft_common.thirdparty`). A closed stdout (`ft-prep TASK | head`) ends the
command quietly.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from ft_common import secrets, thirdparty
from ft_common.errors import FtError

_state = {"verbose": False}


def set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """-v/--verbose's callback (ft_common.cli.verbose_option)."""
    if value:
        _state["verbose"] = True
        os.environ["FT_VERBOSE"] = "1"  # worker processes (Ray, the SQL sandbox) inherit it
        thirdparty.show()
    return value


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
