"""Progress on stderr: a live line only when stderr is a terminal and --quiet is unset.

Off a terminal (a log file, a pipe, CI) nothing is drawn at all: a redrawn line
written to a file is hundreds of carriage-return fragments.
"""

from __future__ import annotations

import sys
import time


def log(message: str, quiet: bool = False) -> None:
    """A line for the user on stderr (never stdout, which carries data)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


class Progress:
    """Counts items; redraws one stderr line at most 4 times a second on a terminal."""

    def __init__(self, label: str, total: int | None = None, quiet: bool = False, unit: str = "rec"):
        self.label, self.total, self.unit = label, total, unit
        self.count = 0
        self.extra = ""
        self.start = time.monotonic()
        self._last = 0.0
        self._live = not quiet and sys.stderr.isatty()

    def update(self, n: int = 1, extra: str = "") -> None:
        self.count += n
        if extra:
            self.extra = extra
        if self._live and time.monotonic() - self._last > 0.25:
            self._draw()

    def note(self, extra: str) -> None:
        """Redraw with new detail and the same count: work inside one item (a batch's tokens)."""
        self.extra = extra
        if self._live and time.monotonic() - self._last > 0.25:
            self._draw()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def _draw(self) -> None:
        self._last = time.monotonic()
        rate = self.rate()
        line = f"{self.label}: {self.count}"
        if self.total:
            line += f"/{self.total}"
            if rate > 0:
                line += f" ETA {max(self.total - self.count, 0) / rate:.0f}s"
        if rate > 0:  # "0.0 rec/s" before the first item is noise
            line += f" {rate:.1f} {self.unit}/s"
        line += f" {self.extra}"
        sys.stderr.write("\r" + line[:150].ljust(80))
        sys.stderr.flush()

    def close(self) -> None:
        if self._live:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()
