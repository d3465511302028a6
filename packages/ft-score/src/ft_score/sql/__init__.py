"""ft-score's SQL task: the checker and the sandbox that runs the untrusted queries.

- `checker`: SqlChecker and `command()` (`ft-score sql`), parse_sql and the other helpers;
- `match`: comparing result sets (ft's rule, test-suite-sql-eval's);
- `sandbox` (this side), `worker` (the jailed process, `python -m ft_score.sql.worker`),
  `jail`, `wire`, `sqlite_exec`, `sqlglot_exec`: see docs/security.md.

This file imports nothing on purpose: `python -m ft_score.sql.worker` runs it before the
worker has moved its pipes off stdin and stdout (worker.py's start-up order). The checker's
names (`ft_score.sql.SqlChecker`, `.command`, `.parse_sql`, ...) load on first use.
"""

import importlib
import pkgutil

_SUBMODULES = frozenset(m.name for m in pkgutil.iter_modules(__path__))


def __getattr__(name: str):
    # A submodule not yet imported is the import system's to load, not the checker's name.
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    checker = importlib.import_module(f"{__name__}.checker")
    try:
        return getattr(checker, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
