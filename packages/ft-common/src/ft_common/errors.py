"""Error classes. The CLI layer turns each into one stderr line and an exit code."""


class FtError(Exception):
    """A runtime failure the user can act on (exit 1)."""

    exit_code = 1


class InputError(FtError):
    """Bad input: a malformed line, a record missing a key, bad data (exit 2).

    The message names the file and line, or the record id.
    """

    exit_code = 2


class UsageError(FtError):
    """Options that do not fit together (exit 2)."""

    exit_code = 2


class MissingExtraError(FtError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, package: str, extra: str):
        super().__init__(
            f"{module} is not installed; install it with: pip install '{package}[{extra}]'"
        )


def require_module(module: str, package: str, extra: str):
    """Import an optional dependency, or raise MissingExtraError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the module exists but one of its own imports failed: show that
        raise MissingExtraError(module, package, extra) from exc
