"""The one place that holds fastnn's Numba compile options.

Kernel modules import ``NJIT`` / ``NJIT_PARALLEL`` (and the fast-math flag sets) from
here and never spell options themselves, so caching, parallelism and fast-math flags
are switched in one place.

Settings (environment variables, read once at import):

``FASTNN_NUM_THREADS``
    Threads the numba backend's parallel kernels use. Default: ``numba.get_num_threads()``
    of the calling thread (itself ``NUMBA_NUM_THREADS``, i.e. the number of cores, unless
    ``numba.set_num_threads`` lowered it). It is capped at ``NUMBA_NUM_THREADS``. The
    kernels never call BLAS, so they do not multiply with BLAS threads; run BLAS-heavy
    code and fastnn kernels one after the other, not nested, to avoid oversubscription.
``FASTNN_NUMBA_SLP`` (default ``1``)
    Turn on LLVM's SLP vectoriser (``numba.config.SLP_VECTORIZE``), which Numba 0.68 leaves
    off. The register-tiled convolution kernels need it: without it their scalar
    accumulators stay scalar (about 4x slower). This is a *process-wide* Numba setting:
    it also applies to every other ``@njit`` function compiled afterwards in the same
    process (usually harmless, sometimes faster, and it changes those functions' cache
    keys so they recompile once). Set ``FASTNN_NUMBA_SLP=0`` to leave Numba's default
    alone; fastnn then stays correct, only slower.

Thread safety: Numba's default ``workqueue`` threading layer aborts the process when two
Python threads launch parallel kernels at the same time. fastnn therefore runs its
parallel kernels under one lock (:data:`PARALLEL_LOCK`): concurrent calls from several
Python threads are safe and give the same bits as serial calls; their parallel kernels
take turns (each still uses all its threads). Small problems run serial kernels, which
release the GIL and need no lock. Other Numba code in the process that launches parallel
kernels concurrently with fastnn is not covered by this lock; use the ``omp`` or ``tbb``
layer (``NUMBA_THREADING_LAYER``) for that.

Determinism: every kernel's summation order depends on the shape and the thread count
only (dW/db are summed per chunk of rows, chunk count = thread count, then over chunks
in order), so results are identical run to run for a fixed thread count.
"""

from __future__ import annotations

import os
import threading

import numba

__all__ = [
    "NJIT",
    "NJIT_PARALLEL",
    "FASTMATH_CONV",
    "SLP_VECTORIZE",
    "PARALLEL_LOCK",
    "num_threads",
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

#: Options for serial kernels: cached on disk, release the GIL.
NJIT = dict(cache=True, nogil=True)
#: Options for parallel (prange) kernels.
NJIT_PARALLEL = dict(NJIT, parallel=True)

#: Held while a fastnn parallel kernel runs (see the module docstring).
PARALLEL_LOCK = threading.Lock()

#: Work (multiply-adds or elements) below which kernels run serially: a parallel launch
#: costs a few microseconds.
SERIAL_WORK = 1 << 15

_ENV_THREADS = os.environ.get("FASTNN_NUM_THREADS", "").strip()


def num_threads() -> int:
    """Threads for fastnn's parallel kernels (``FASTNN_NUM_THREADS`` or Numba's setting)."""
    if _ENV_THREADS:
        try:
            n = int(_ENV_THREADS)
        except ValueError:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer, got {_ENV_THREADS!r}") from None
        if n < 1:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer, got {_ENV_THREADS!r}")
        return min(n, numba.config.NUMBA_NUM_THREADS)
    return numba.get_num_threads()
