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

``FASTNN_GOMP_SPINCOUNT`` (default ``10000``, :data:`GOMP_SPINCOUNT`; ``off`` leaves libgomp alone;
read when fastnn first starts Numba's threads)
    How long Numba's OpenMP worker threads spin, waiting for the next parallel kernel,
    before they sleep. Numba picks the ``tbb`` threading layer if TBB is installed, else
    ``omp`` (GNU libgomp), else ``workqueue``. libgomp's default spin (GOMP_SPINCOUNT
    300000) keeps a worker busy for about 11 ms after *every* parallel kernel on this
    project's machine: on 2 cores, a BLAS GEMM (``numpy.matmul``, the im2col backend, a
    dense layer) started within that time ran 1.6-2x slower. With 10000 a worker spins
    about 1 ms, still long enough that back-to-back fastnn kernels find it awake. The
    value is put in the environment only while fastnn starts Numba's thread pool (the
    first parallel kernel, or :func:`num_threads`): libgomp reads it once, when it is
    loaded, and the environment is restored right after, so OpenMP runtimes loaded later
    (PyTorch's own copy, for example) do not see it. It has no effect when the user sets
    ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` (theirs wins), when Numba's threads were
    already started by other code, or when another libgomp already provides the OpenMP
    symbols: with PyTorch imported before fastnn's first parallel kernel, Numba's
    ``GOMP_parallel`` binds to PyTorch's copy (seen with ``LD_DEBUG=bindings``), which
    read its settings when PyTorch was imported.
    The other direction is OpenBLAS's to set: its idle workers spin for about 2^28 cycles
    (~0.1 s) after a multi-threaded GEMM, and a numba kernel started meanwhile ran up to 2x
    slower here. ``OPENBLAS_THREAD_TIMEOUT=20`` (2^20 cycles), set before NumPy is first
    imported, removed that (``scripts/measure_numba.py --only blas`` measures both).

Thread safety: Numba's ``workqueue`` threading layer aborts the process when two Python
threads launch parallel kernels at the same time. fastnn therefore runs its parallel
kernels under one lock (:data:`PARALLEL_LOCK`), whatever the layer: concurrent calls from
several Python threads are safe and give the same bits as serial calls; their parallel
kernels take turns (each still uses all its threads). Small problems run serial kernels,
which release the GIL and need no lock. Other Numba code in the process that launches
parallel kernels concurrently with fastnn is not covered by this lock; use the ``omp`` or
``tbb`` layer (``NUMBA_THREADING_LAYER``) for that.

Determinism: every kernel's summation order depends on the shape and the thread count
only (dW/db are summed per chunk of rows, chunk count = thread count, then over chunks
in order), so results are identical run to run for a fixed thread count.
"""

from __future__ import annotations

import contextlib
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
    "GOMP_SPINCOUNT",
    "launch_threads",
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


#: The spin count fastnn gives libgomp when it starts Numba's threads, by default.
GOMP_SPINCOUNT = "10000"


def _spincount_setting(value):
    """``FASTNN_GOMP_SPINCOUNT`` as the string to give libgomp, or None to leave libgomp alone."""
    v = (value or "").strip()
    if not v:
        return GOMP_SPINCOUNT
    if v.lower() in ("off", "none", "default"):
        return None
    if not v.isdigit():
        raise ValueError(f"FASTNN_GOMP_SPINCOUNT must be a non-negative integer or 'off', got {value!r}")
    return v


_launched = False
_launch_lock = threading.Lock()


@contextlib.contextmanager
def _gomp_env(spincount):
    """``GOMP_SPINCOUNT=spincount`` in the environment for the duration, unless the user
    chose a spin or wait policy (or spincount is None); restored afterwards."""
    if spincount is None or "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["GOMP_SPINCOUNT"] = spincount
    try:
        yield
    finally:
        del os.environ["GOMP_SPINCOUNT"]


def launch_threads() -> None:
    """Start Numba's thread pool once, with :data:`GOMP_SPINCOUNT` in the environment while
    its threading layer (and libgomp, under ``omp``) is loaded (see the module docstring)."""
    global _launched
    if _launched:
        return
    with _launch_lock:
        if not _launched:
            with _gomp_env(_spincount_setting(os.environ.get("FASTNN_GOMP_SPINCOUNT"))):
                numba.get_num_threads()  # loads the threading layer and starts its threads
            _launched = True


def num_threads() -> int:
    """Threads for fastnn's parallel kernels (``FASTNN_NUM_THREADS`` or Numba's setting)."""
    launch_threads()
    if _ENV_THREADS:
        try:
            n = int(_ENV_THREADS)
        except ValueError:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer, got {_ENV_THREADS!r}") from None
        if n < 1:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer, got {_ENV_THREADS!r}")
        return min(n, numba.config.NUMBA_NUM_THREADS)
    return numba.get_num_threads()
