"""The one training-progress display: a ``tqdm`` bar over a run's batches plus log lines.

On a terminal the bar is redrawn in place (tqdm limits redraws to ten a second) and log lines
are printed above it; on anything else (a log file, a pipe, a test's captured stderr) there is
no bar and no carriage return, only the log lines. tqdm is imported only when a bar is drawn,
so ``import fastnn`` and runs writing to a file never load it.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO

__all__ = ["Progress"]


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Progress:
    """Progress of a run of ``total_epochs`` epochs, shown on ``stream`` (default: stderr at the
    time of the call). ``enabled=False`` shows nothing at all (``--quiet``).

    ``update(epoch, batch, n_batches, cost)`` after each batch (``epoch`` counts from 0,
    ``batch`` from 1); ``line(text)`` for a log line; ``close()`` (or leaving the ``with``
    block) removes the bar. The bar counts batches: epochs x batches per epoch in all, starting
    at the first epoch updated, so a resumed run's bar starts part-way.
    """

    def __init__(self, total_epochs: int, *, stream: Optional[TextIO] = None, enabled: bool = True) -> None:
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int):
            raise TypeError(f"total_epochs must be an int, got {type(total_epochs).__name__}")
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        self.total_epochs = total_epochs
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled)
        self.live = self.enabled and _is_terminal(self.stream)  # draw a bar at all
        self._bar = None  # made at the first update, when the batches per epoch are known

    def update(self, epoch: int, batch: int, n_batches: int, cost: float) -> None:
        if not self.live:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total_epochs * n_batches, initial=epoch * n_batches, file=self.stream,
                             unit="batch", leave=False, dynamic_ncols=True, mininterval=0.1)
        self._bar.set_postfix_str(f"epoch {epoch + 1}/{self.total_epochs} batch {batch}/{n_batches} cost {cost:.6f}",
                                  refresh=False)
        self._bar.update(epoch * n_batches + batch - self._bar.n)

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

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
