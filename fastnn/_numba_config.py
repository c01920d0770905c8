"""The one place that holds fastnn's Numba compile options and thread settings.

Kernel modules import ``NJIT`` (and the fast-math flag sets) from here and never spell
options themselves, so caching and fast-math flags are switched in one place. Every kernel
is serial (``nogil``); parallelism comes from running chunks of its outer loop on fastnn's
threads (:mod:`fastnn._threads`), not from Numba's ``parallel=True``.

Settings (environment variables, read once at import):

``FASTNN_NUM_THREADS``
    Threads (chunks) per kernel call of the numba backend. Default: Numba's setting
    for the calling thread, ``numba.get_num_threads()`` once Numba's threading layer is
    running (so ``numba.set_num_threads`` applies), else ``NUMBA_NUM_THREADS`` (the number
    of cores unless set); fastnn never starts Numba's threading layer itself. Capped at
    ``NUMBA_NUM_THREADS`` (so is :func:`override_num_threads`, which ``fastnn bench --threads``
    uses). The kernels never call BLAS, so they do not multiply with BLAS
    threads; run BLAS-heavy code and fastnn kernels one after the other, not nested, to
    avoid oversubscription. OpenBLAS's idle workers spin for about 2^28 cycles (~0.1 s)
    after a multi-threaded GEMM, and a fastnn kernel started meanwhile ran up to 2x slower
    here; ``OPENBLAS_THREAD_TIMEOUT=20`` (2^20 cycles), set before NumPy is first imported,
    removed that (``scripts/measure_numba.py --only blas`` measures it).
``FASTNN_NUMBA_SLP`` (default ``1``)
    Turn on LLVM's SLP vectoriser (``numba.config.SLP_VECTORIZE``), which Numba 0.68 leaves
    off. The register-tiled convolution kernels need it: without it their scalar
    accumulators stay scalar (about 4x slower). This is a *process-wide* Numba setting:
    it also applies to every other ``@njit`` function compiled afterwards in the same
    process (usually harmless, sometimes faster, and it changes those functions' cache
    keys so they recompile once). Set ``FASTNN_NUMBA_SLP=0`` to leave Numba's default
    alone; fastnn then stays correct, only slower.

Thread safety: calls from several Python threads at once are safe and give the same bits
as serial calls; their chunks share fastnn's worker threads (:mod:`fastnn._threads`).

Determinism: every kernel's summation order depends on the shape and the thread count
only (dW/db are summed per chunk of rows, chunk count = thread count, then over chunks
in order; the other kernels' chunks write disjoint outputs), so results are identical run
to run for a fixed thread count.
"""

from __future__ import annotations

import os

import numba
from numba.np.ufunc import parallel as _numba_parallel

__all__ = [
    "NJIT",
    "FASTMATH_CONV",
    "SLP_VECTORIZE",
    "num_threads",
    "override_num_threads",
    "SERIAL_WORK",
]


def _env_flag(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    return v.strip().lower() not in ("0", "false", "no", "off")


#: Whether fastnn switched on LLVM's SLP vectoriser (see the module docstring).
SLP_VECTORIZE = _env_flag("FASTNN_NUMBA_SLP", True)
if SLP_VECTORIZE:
    numba.config.SLP_VECTORIZE = 1

#: Fast-math flags for the convolution kernels: ``contract`` lets LLVM fuse multiply-adds
#: (FMA). No ``reassoc`` (it makes the loop vectoriser turn reductions into slow gathers
#: and changes summation order) and no ``nnan``/``ninf`` (NaN and inf propagate as in NumPy).
FASTMATH_CONV = {"contract", "arcp", "nsz"}

#: Options for every kernel: cached on disk, releases the GIL (so chunks run in parallel
#: on fastnn's threads).
NJIT = dict(cache=True, nogil=True)

#: Work (multiply-adds or elements) below which a kernel runs whole in the calling thread
#: (handing chunks to the worker threads costs microseconds) and a convolution runs the
#: plain kernels.
SERIAL_WORK = 1 << 15

_ENV_THREADS = os.environ.get("FASTNN_NUM_THREADS", "").strip()


def _numba_threads() -> int:
    """Numba's thread setting for the calling thread, without starting its threading layer."""
    if getattr(_numba_parallel, "_is_initialized", True):
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS


_override = None


def override_num_threads(n):
    """Use ``n`` threads (None: back to the settings above) until changed again; returns
    the previous override. For tools such as ``fastnn bench --threads`` that must set the
    count for a run and restore it, without starting Numba's threading layer."""
    global _override
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"thread count must be a positive integer, got {n!r}")
    old, _override = _override, n
    return old


def num_threads() -> int:
    """Threads (chunks) for a kernel call (``FASTNN_NUM_THREADS`` or Numba's setting)."""
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
