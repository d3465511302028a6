"""Progress on stderr: a live line when stderr is a terminal and --quiet is unset.

Off a terminal (a log file, a pipe, CI) nothing is redrawn (a redrawn line written to a file is
hundreds of carriage-return fragments): the same text comes as a whole line at most once every
PLAIN_EVERY_S, so a long job's log says how far it is, and a short one's holds nothing.
"""

from __future__ import annotations

import sys
import time

PLAIN_EVERY_S = 60.0


def duration(seconds: float) -> str:
    """'42s', '3m 05s', '6h 24m': an ETA a reader takes in at a glance."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def log(message: str, quiet: bool = False) -> None:
    """A line for the user on stderr (never stdout, which carries data)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


class Progress:
    """Counts items; redraws one stderr line at most 4 times a second on a terminal, and off one
    writes that line at most once every PLAIN_EVERY_S."""

    def __init__(self, label: str, total: int | None = None, quiet: bool = False, unit: str = "rec"):
        self.label, self.total, self.unit = label, total, unit
        self.count = 0
        self.extra = ""
        self.start = time.monotonic()
        self._last = 0.0
        self._live = not quiet and sys.stderr.isatty()
        self._plain = not quiet and not self._live
        self._said = self.start  # off a terminal: when the last whole line was written

    def update(self, n: int = 1, extra: str = "") -> None:
        self.count += n
        if extra:
            self.extra = extra
        self._tick()

    def note(self, extra: str) -> None:
        """Redraw with new detail and the same count: work inside one item (a batch's tokens)."""
        self.extra = extra
        self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        if self._live and now - self._last > 0.25:
            self._draw()
        elif self._plain and now - self._said >= PLAIN_EVERY_S:
            self._said = now
            sys.stderr.write(self._text() + "\n")
            sys.stderr.flush()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def _text(self) -> str:
        rate = self.rate()
        line = f"{self.label}: {self.count}"
        if self.total:
            line += f"/{self.total}"
            if rate > 0:
                line += f" ETA {duration(max(self.total - self.count, 0) / rate)}"
        if rate > 0:  # "0.0 rec/s" before the first item is noise
            line += f" {rate:.1f} {self.unit}/s"
        return f"{line} {self.extra}".rstrip()

    def _draw(self) -> None:
        self._last = time.monotonic()
        sys.stderr.write("\r" + self._text()[:150].ljust(80))
        sys.stderr.flush()

    def close(self) -> None:
        if self._live:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()
