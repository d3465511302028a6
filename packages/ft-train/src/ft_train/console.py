"""ft-train's terminal while the workers train: only ft-train's own lines.

Ray forwards its workers' output to the driver's stdout and stderr, its actors log warnings
there (PlacementGroupCleaner's state-API retries, token auth, the PreemptionWatcher), and
DeepSpeed and the C++ core write straight to file descriptors 1 and 2. `Console` points both
descriptors, and so every one of those writers, at OUT_DIR/ft-train.log for the run, and keeps
a handle on the real stderr for ft-train's own lines: the plan, one progress bar redrawn in
place (on a terminal; off one, the same text as a line at most every PLAIN_EVERY_S), one line
per epoch, the result. With -v nothing is redirected (the
libraries' output shows, as before); with -q only errors show, after the run, through the CLI.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from ft_common.errors import InputError
from ft_common.jsonl import iter_lines_as_records
from ft_common.progress import PLAIN_EVERY_S, duration

LOG_NAME = "ft-train.log"
# Off a terminal (a log file, nohup, CI) the progress bar is a line: the first once its ETA rests
# on PLAIN_FIRST_S of steps (a GPU's first steps compile and capture graphs and would tell an ETA
# many times too long; a CPU step of half a minute tells it at step 2), then at most every
# PLAIN_EVERY_S (ft-common's, as for the other commands): a run of hours says so early.
PLAIN_FIRST_S = 20.0


class Console:
    def __init__(self, out_dir: Path, quiet: bool = False, verbose: bool = False):
        self.log_path = Path(out_dir) / LOG_NAME
        self.quiet, self.verbose = quiet, verbose
        self._saved: list[tuple[int, int]] = []
        self._term = None
        self.live = False  # a progress bar is drawn (set on entering: stderr is a terminal, not -q)
        self._bar = ""  # the progress bar now on screen ("" when none)
        self._lock = threading.Lock()

    def __enter__(self) -> Console:
        sys.stdout.flush()
        sys.stderr.flush()
        self._term = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        self.live = not self.quiet and self._term.isatty()
        if not self.verbose:
            log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            for fd in (1, 2):
                self._saved.append((fd, os.dup(fd)))
                os.dup2(log_fd, fd)
            os.close(log_fd)
        return self

    def __exit__(self, *exc) -> None:
        self.clear()
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved:
            os.dup2(saved, fd)
            os.close(saved)
        self._saved.clear()
        if self._term is not None:
            self._term.close()
            self._term = None

    def line(self, message: str) -> None:
        """One of ft-train's lines (not with -q); above the progress bar, which is redrawn."""
        if self.quiet or self._term is None:
            return
        with self._lock:
            bar = self._bar
            self._erase()
            self._term.write(message + "\n")
            if bar:
                self._draw(bar)

    def bar(self, text: str) -> None:
        """Redraw the progress bar in place (terminal only)."""
        if self.live and self._term is not None:
            with self._lock:
                self._draw(text)

    def clear(self) -> None:
        with self._lock:
            self._erase()

    def _draw(self, text: str) -> None:
        text = text[:max(20, _width() - 1)]
        self._term.write("\r" + text.ljust(len(self._bar)))
        self._term.flush()
        self._bar = text

    def _erase(self) -> None:
        if self._bar and self._term is not None:
            self._term.write("\r" + " " * len(self._bar) + "\r")
            self._term.flush()
            self._bar = ""


def _width() -> int:
    try:
        return os.get_terminal_size(2).columns
    except OSError:
        return 100


class MetricsWatcher:
    """Follows OUT_DIR/metrics.jsonl while the workers train: the progress bar from step lines
    (step/total, epoch, loss, tokens/s, ETA; off a terminal a line, see PLAIN_EVERY_S), one console
    line per epoch row; on_last_epoch() once the last epoch's row (the last of --epochs, or one
    that stopped early) is there."""

    def __init__(self, path: Path, console: Console, total_steps: int, epochs: int, start_line: int = 0,
                 on_last_epoch=None):
        self.path, self.console, self.total, self.epochs = path, console, total_steps, epochs
        self.on_last_epoch = on_last_epoch
        self._seen = start_line  # lines already shown (a resumed run's earlier epochs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ft-train-progress", daemon=True)
        self._first: tuple[float, int] | None = None  # (time, step) of the first step line seen
        self._said_at: float | None = None  # off a terminal: the step time of the last progress line

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.poll()  # the lines written since the last poll
        self.console.clear()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.poll()

    def poll(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        lines = text[:text.rfind("\n") + 1].splitlines()  # whole lines only: the worker may be mid-write
        new, self._seen = lines[self._seen:], len(lines)
        try:
            rows = list(iter_lines_as_records(new, self.path.name))
        except InputError:
            return
        for row in rows:
            if "val_ppl" in row:
                self.console.line(epoch_line(row, self.epochs))
                if self.on_last_epoch and (row["epoch"] == self.epochs or row.get("stopped")):
                    self.on_last_epoch()
            elif "lr_chosen" in row:
                self.console.line(f"ft-train: lr {row['lr_chosen']:.1e} (loss {row['loss_before']:.2f} on the "
                                  "training targets before any update)")
            elif "loss" in row:
                self._progress(row)

    def _progress(self, row: dict) -> None:
        now = row.get("time", time.time())
        if self._first is None:
            self._first = (now, row["step"])
        text, has_eta = self._bar_text(row, now)
        if self.console.live:
            self.console.bar(text)
        elif has_eta and (now - self._first[0] >= PLAIN_FIRST_S if self._said_at is None
                          else now - self._said_at >= PLAIN_EVERY_S):
            self._said_at = now
            self.console.line(text)

    def _bar_text(self, row: dict, now: float) -> tuple[str, bool]:
        """The bar's text, and whether it tells an ETA (from the first step line seen on)."""
        step = row["step"]
        t0, s0 = self._first
        eta = ""
        if step > s0 and now > t0:
            eta = f", ETA {duration((self.total - step) * (now - t0) / (step - s0))}"
        return (f"ft-train: step {step}/{self.total}, epoch {row['epoch']}/{self.epochs}, "
                f"loss {row['loss']:.3f}, {row.get('tokens_per_s', 0):,.0f} tok/s{eta}"), bool(eta)


def epoch_line(row: dict, epochs: int) -> str:
    """'ft-train: epoch 3/10: train loss 0.412, val ppl 1.031, val accuracy 96.5% (best: epoch 3)'."""
    parts = [f"train loss {row['train_loss']:.3f}", f"val ppl {row['val_ppl']:.3f}"]
    if row.get("val_accuracy") is not None:
        parts.append(f"val accuracy {100 * row['val_accuracy']:.1f}% of {row.get('val_n', '?')}")
    best = f" (best: epoch {row['best_epoch']})" if "best_epoch" in row else ""
    stopped = f"; stopping: {row['stopped']}" if row.get("stopped") else ""
    return f"ft-train: epoch {row['epoch']}/{epochs}: {', '.join(parts)}{best}{stopped}"
