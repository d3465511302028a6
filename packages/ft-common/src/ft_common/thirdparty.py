"""Third-party warnings and log lines stay off the terminal unless -v.

DESIGN: only ft's own lines reach the terminal by default. The libraries ft stands on each
have their own channel: Python warnings (transformers' `past_key_values` FutureWarning),
loggers without a handler (sqlglot's "contains unsupported syntax. Falling back to parsing
as a 'Command'", printed by logging's last-resort handler), loggers with their own level set
at import from a variable (transformers, datasets, huggingface_hub), and tqdm bars
(datasets, huggingface_hub). `hide()` closes each channel; `show()` (what -v does) reopens
them. Both change process-wide state, so `hide()` returns nothing and `show()` restores
exactly what `hide()` changed: run() calls them around a command, and a test that calls
run() in-process is left as it was.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Loggers that set their own level at import (the root logger's level does not reach them).
LOGGERS = ("sqlglot", "transformers", "datasets", "huggingface_hub", "httpx", "filelock", "urllib3")
# Read once, when the library is first imported; ft imports them lazily, after hide().
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error", "HF_HUB_VERBOSITY": "error"}
# Library progress bars: only on a terminal, as ft's own.
NO_BARS_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}

_saved: list[tuple] = []  # what hide() changed: (warning filters, root level, logger levels, env names it set)


def hide() -> None:
    """Silence third-party warnings and logs below ERROR (ft's own warnings still show)."""
    filters = warnings.catch_warnings()  # saves the filters; its __exit__ restores them
    filters.__enter__()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    wanted = dict(QUIET_ENV)
    if not sys.stderr.isatty():
        wanted.update(NO_BARS_ENV)
    set_env = [name for name in wanted if name not in os.environ]  # an explicit setting wins
    _saved.append((filters, root.level, levels, set_env))
    for name in set_env:
        os.environ[name] = wanted[name]
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"ft_")
    root.setLevel(logging.ERROR)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def show() -> None:
    """Undo hide(): third-party warnings and logs reach stderr again (-v)."""
    while _saved:
        filters, root_level, levels, set_env = _saved.pop()
        filters.__exit__(None, None, None)
        logging.getLogger().setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for name in set_env:
            os.environ.pop(name, None)


def hidden() -> bool:
    return bool(_saved)


def verbose_env() -> bool:
    """FT_VERBOSE as every ft process reads it (run() sets it for -v, so workers inherit -v)."""
    return os.environ.get("FT_VERBOSE", "").lower() not in ("", "0", "false", "no", "off")
