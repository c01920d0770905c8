"""The numba backend's thread settings.

(Its Numba compile options, kernel cache and SLP-vectoriser switch are :mod:`fastnn._jit`'s,
shared with the im2col backend's column kernels.) Every kernel is serial (``nogil``);
parallelism comes from running chunks of its outer loop on fastnn's threads
(:mod:`fastnn.backends.numba.threads`), not from Numba's ``parallel=True``.

Settings (environment variables, read once at import):

``FASTNN_NUM_THREADS``
    Threads (chunks) per kernel call of the numba backend. Default: Numba's setting
    for the calling thread, ``numba.get_num_threads()`` once Numba's threading layer is
    running (so ``numba.set_num_threads`` applies), else ``NUMBA_NUM_THREADS`` (the number
    of cores unless set); fastnn never starts Numba's threading layer itself. Capped at
    ``NUMBA_NUM_THREADS`` (so is :func:`override_num_threads`, which ``fastnn bench --threads``
    uses, and :func:`use_num_threads`, which sets it for one thread or asyncio task: what
    :mod:`fastnn.dask` does in each task, so that workers x threads fit the cores). The kernels never call BLAS, so they do not multiply with BLAS
    threads; run BLAS-heavy code and fastnn kernels one after the other, not nested, to
    avoid oversubscription. OpenBLAS's idle workers spin for about 2^28 cycles after a
    multi-threaded GEMM and slow a fastnn kernel started meanwhile;
    ``OPENBLAS_THREAD_TIMEOUT=20`` (2^20 cycles), set before NumPy is first imported,
    shortens that (``scripts/measure_numba.py --only blas`` measures it; figures in
    ``docs/bench/backend-notes.md``).

``FASTNN_SPIN_US``
    Microseconds fastnn's threads poll before they block, after each chunk and while a call
    waits for its chunks (default 100; 0: never; read at the first threaded call; see
    ``SPIN_US_DEFAULT``).

Thread safety: calls from several Python threads at once are safe and give the same bits
as serial calls; their chunks share fastnn's worker threads (:mod:`fastnn.backends.numba.threads`).

Determinism: every kernel's summation order depends on the shape and the thread count
only (dW/db are summed per chunk of rows, chunk count = thread count, then over chunks
in order; the other kernels' chunks write disjoint outputs, so neither their count nor which
thread takes which changes a bit), so results are identical run to run for a fixed thread
count.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Iterator, Optional

import numba
from numba.np.ufunc import parallel as _numba_parallel

__all__ = ["num_threads", "override_num_threads", "use_num_threads", "chunk_count", "SERIAL_WORK", "THREADED_WORK",
           "THREADED_CONV_WORK", "CHUNKS_PER_THREAD", "CHUNK_WORK_FACTOR"]

#: Multiply-adds below which a convolution runs the plain serial kernels (no tiles, quick to
#: compile).
SERIAL_WORK = 1 << 15
#: Bytes on which the kernels' packed operands start (the packed filters, the dW partials, an
#: aligned dZ): a cache line, one 512-bit vector. NumPy's arrays start 16 bytes into a page or a
#: malloc block, so a filter panel's 64-byte loads each spanned two lines: the float32 forward
#: tile ran 10-15% slower on one thread (docs/bench/2026-12-07-align.md).
ALIGN = 64
#: Handing chunks to the worker threads costs 25-45 us per call on the 2-vCPU machine these
#: were measured on (a thread woken on an idle virtual CPU; 10-20 us on an earlier one), more
#: than a memory-bound kernel of a few hundred thousand elements (pooling, padding,
#: activations) takes serially. Below this work such a kernel runs whole in the calling
#: thread: pooling 8 x 14 x 14 x 96 (150k) ran 1.3-2x faster so; threads won from about
#: 1.5M there, from about 250k where the hand-off costs 15 us (``docs/bench/2026-12-03-threads.md``).
THREADED_WORK = 1 << 19
#: The same for the tiled convolutions, in multiply-adds: below it every kernel of the call
#: runs in the calling thread (serial won at 0.3M, threads at 7M, break-even 2-4M there).
#: The planner's "serial" and "threaded" variants override either rule per call.
THREADED_CONV_WORK = 1 << 21
#: A threaded call splits its kernel's outer loop into up to this many chunks per thread,
#: which the threads take in turn (:func:`fastnn.backends.numba.threads.run_chunks`): on a
#: shared machine a core may run slower for a while, and one fixed share per thread left the
#: other thread idle at the end (the same share of a forward took 12-19 ms, call to call). In
#: turn against fixed shares, 2 threads, float32: up to 1.13x while the host was busy, 0.95-1.0x
#: on most forwards while it was quiet (the extra chunks' hand-offs); about 1.0 overall
#: (docs/bench/2026-12-07-dw-pack-chunks.md).
CHUNKS_PER_THREAD = 8
#: ... each chunk at least this many times the call's threading threshold (``THREADED_WORK``
#: or ``THREADED_CONV_WORK``): a chunk's hand-off costs a few microseconds.
CHUNK_WORK_FACTOR = 4


def chunk_count(work: int, nthreads: int, threshold: int) -> int:
    """Chunks for a threaded call of ``work`` (multiply-adds, or the memory-bound kernels'
    units) on ``nthreads`` threads: a multiple of nthreads, at most ``CHUNKS_PER_THREAD``
    per thread, each at least ``CHUNK_WORK_FACTOR * threshold`` where the work allows; one
    on one thread."""
    if nthreads <= 1:
        return 1
    per = work // (CHUNK_WORK_FACTOR * max(threshold, 1) * nthreads)
    return nthreads * max(1, min(CHUNKS_PER_THREAD, per))

#: Microseconds an idle worker polls for the next chunk before it blocks, and a threaded call
#: polls for its chunks to finish before it blocks (``FASTNN_SPIN_US``; 0: never poll). On the
#: 2-vCPU host, waking a blocked thread took about 20 us, two or three times a call (the
#: worker, the GIL, the caller): a threaded call of a 12 us kernel took 85-90 us; polling, about 42
#: (docs/bench/2026-12-07-spin.md). The poll runs without the GIL, in :mod:`.spin`'s kernels,
#: on x86-64 only. A worker polls after each chunk, so it holds its core busy up to this long
#: after a call (OpenBLAS's idle threads: about 2^28 cycles).
SPIN_US_DEFAULT = 100
#: (at most a second)
SPIN_US_MAX = 1_000_000
#: ... and once the bell it polls has rung, a worker polls this much longer (microseconds), so
#: that the caller that rang it can release the GIL (enter its own chunk) before the worker asks
#: for it. (A caller polling for its chunks lingers not at all: a polling worker sets those
#: flags without the GIL.) On the AMD host a chunked call of an empty kernel took 10.8 us at 5, 8.8 at
#: 3, 7.8 at 2, 6.6 at 1 and 21 at 0 (contended); the cnn epoch read the same at 5, 2 and 1
#: (docs/bench/2026-12-07-dw-db-passes.md). 5 leaves room for a caller whose arguments take
#: longer to unbox.
SPIN_LINGER_US = 5


def spin_us() -> int:
    """``FASTNN_SPIN_US`` (a non-negative integer; default ``SPIN_US_DEFAULT``)."""
    raw = os.environ.get("FASTNN_SPIN_US", "").strip()
    if not raw:
        return SPIN_US_DEFAULT
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if not 0 <= n <= SPIN_US_MAX:
        raise ValueError(f"FASTNN_SPIN_US must be a non-negative integer (microseconds) up to {SPIN_US_MAX}, "
                         f"got {raw!r}")
    return n


_ENV_THREADS = os.environ.get("FASTNN_NUM_THREADS", "").strip()


def _numba_threads() -> int:
    """Numba's thread setting for the calling thread, without starting its threading layer."""
    if getattr(_numba_parallel, "_is_initialized", True):
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS


_override = None
# The count set for this thread or asyncio task by use_num_threads (None: the settings above).
_context: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar("fastnn_num_threads", default=None)


def _check_count(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"thread count must be a positive integer, got {n!r}")


def override_num_threads(n):
    """Use ``n`` threads (None: back to the settings above) until changed again; returns
    the previous override. For tools such as ``fastnn bench --threads`` that must set the
    count for a run and restore it, without starting Numba's threading layer."""
    global _override
    if n is not None:
        _check_count(n)
    old, _override = _override, n
    return old


@contextlib.contextmanager
def use_num_threads(n: int) -> Iterator[int]:
    """Within the block, this thread's (or asyncio task's) kernel calls use ``n`` threads
    (capped at ``NUMBA_NUM_THREADS``), whatever the process-wide setting; other threads keep
    theirs. Yields the count in force. For a caller that runs kernels on several threads at
    once and shares the cores out among them (:mod:`fastnn.dask`'s tasks)."""
    _check_count(n)
    token = _context.set(n)
    try:
        yield num_threads()
    finally:
        _context.reset(token)


def num_threads() -> int:
    """Threads (chunks) for a kernel call (:func:`use_num_threads` in this thread, else
    :func:`override_num_threads`, ``FASTNN_NUM_THREADS`` or Numba's setting)."""
    ctx = _context.get()
    if ctx is not None:
        return min(ctx, numba.config.NUMBA_NUM_THREADS)
    if _override is not None:
        return min(_override, numba.config.NUMBA_NUM_THREADS)
    if _ENV_THREADS:
        try:
            n = int(_ENV_THREADS)
        except ValueError:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer, got {_ENV_THREADS!r}") from None
        if n < 1:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer, got {_ENV_THREADS!r}")
        return min(n, numba.config.NUMBA_NUM_THREADS)
    return _numba_threads()
