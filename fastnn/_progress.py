"""The one progress display of fastnn (training epochs, benchmark workloads).

On a terminal it is a ``tqdm`` bar redrawn in place (at most ten redraws a second) with log
lines printed above it; on anything else (a log file, a pipe, a test's captured stderr) there
is no bar and no carriage return, only the log lines. tqdm is imported only when a bar is
drawn, so ``import fastnn`` and runs writing to a file never load it. The training view
(:class:`fastnn.nn.Progress`) and the benchmark's (:class:`fastnn.bench.runner.Progress`)
are thin adapters over :class:`ProgressBar`.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO

__all__ = ["ProgressBar", "is_terminal"]


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ProgressBar:
    """A bar over ``total`` steps on ``stream`` (default: stderr at the time of the call), drawn
    only on a terminal; ``enabled=False`` shows nothing at all, log lines included.

    ``set(n, status)`` moves the bar to step ``n`` with a status text; ``line(text)`` prints a
    log line (above the bar); ``close()`` (or leaving the ``with`` block) removes the bar."""

    def __init__(self, total: int, *, stream: Optional[TextIO] = None, enabled: bool = True,
                 unit: str = "it", initial: int = 0) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled)
        self.live = self.enabled and is_terminal(self.stream)  # a bar at all
        self._unit, self._initial = unit, initial
        self._bar = None

    def set(self, n: int, status: str = "") -> None:
        if not self.live:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self._initial, file=self.stream, unit=self._unit,
                             leave=False, dynamic_ncols=True, mininterval=0.1)
        self._bar.set_postfix_str(status, refresh=False)
        self._bar.update(n - self._bar.n)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)  # clears the bar, prints, redraws it below
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
