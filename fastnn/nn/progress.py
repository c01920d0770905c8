"""Training progress: epochs and batches on the one progress display (:mod:`fastnn._progress`):
a ``tqdm`` bar over the run's batches on a terminal, plain log lines anywhere else.
"""

from __future__ import annotations

from typing import Optional, TextIO

from .._progress import ProgressBar

__all__ = ["Progress"]


class Progress:
    """Progress of a run of ``total_epochs`` epochs, shown on ``stream`` (default: stderr at the
    time of the call). ``enabled=False`` shows nothing at all (``--quiet``).

    ``update(epoch, batch, n_batches, cost)`` after each batch (``epoch`` counts from 0,
    ``batch`` from 1); ``line(text)`` for a log line; ``close()`` (or leaving the ``with``
    block) removes the bar. The bar counts batches: epochs x batches per epoch in all, starting
    at the first epoch updated, so a resumed run's bar starts part-way. ``per_iteration``
    (one full-batch update per epoch) shows ``iteration i/total`` with the 0-based i the
    course numbers its iterations by, instead of ``epoch e/total batch b/n``.
    """

    def __init__(self, total_epochs: int, *, stream: Optional[TextIO] = None, enabled: bool = True,
                 per_iteration: bool = False) -> None:
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int):
            raise TypeError(f"total_epochs must be an int, got {type(total_epochs).__name__}")
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        self.total_epochs = total_epochs
        self.enabled = bool(enabled)
        self.per_iteration = bool(per_iteration)
        # made at the first update, when the batches per epoch are known (until then a barless
        # one prints the log lines)
        self._bar = ProgressBar(1, stream=stream, enabled=self.enabled)
        self._sized = False

    @property
    def stream(self):
        return self._bar.stream

    @property
    def live(self) -> bool:
        return self._bar.live

    def update(self, epoch: int, batch: int, n_batches: int, cost: float) -> None:
        if not self._bar.live:
            return
        if not self._sized:
            self._bar = ProgressBar(self.total_epochs * n_batches, stream=self._bar.stream, enabled=self.enabled,
                                    unit="it" if self.per_iteration else "batch", initial=epoch * n_batches)
            self._sized = True
        if self.per_iteration:
            status = f"iteration {epoch}/{self.total_epochs} cost {cost:.6f}"
        else:
            status = f"epoch {epoch + 1}/{self.total_epochs} batch {batch}/{n_batches} cost {cost:.6f}"
        self._bar.set(epoch * n_batches + batch, status)

    def line(self, text: str) -> None:
        self._bar.line(text)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
