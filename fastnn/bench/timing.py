"""Timing, machine bounds, thread settings and the machine description for ``fastnn bench``.

* :func:`alternating_rounds` times several candidates on one workload in rounds, one
  :func:`fastnn._plan.timed_block` per candidate per round (the planner's timed block: untimed
  calls for a settle time after switching, then the timed calls), the order reversed every
  other round, so that a host's drift and one candidate's after-effects (OpenBLAS workers
  still spinning) hit every candidate alike. :func:`ratio_stats` summarises the per-round
  ratio of two candidates (median, min, max).
* :func:`gemm_peak` and :func:`copy_bandwidth` are the machine's bounds, measured as the kernels
  use the machine: the GEMM on a 1024 square in the workload's dtype with the threads in force,
  the same in every mode; the copy on a working set of the kernel's own size (so in the same
  cache level), with one thread and with the kernel's threads, the faster kept.
* :class:`CompileClock` adds up the seconds Numba spends compiling (its ``numba:compile``
  events), wherever in the run that happens.
* :func:`machine_info` (py-cpuinfo when installed, else :mod:`platform`), :func:`versions`
  (package metadata: nothing is imported to read a version), :func:`env_switches` (the
  environment variables that change what runs), :func:`thread_info`, :func:`git_revision`.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "Timing",
    "time_callable",
    "alternating_rounds",
    "ratio_stats",
    "GEMM_N",
    "gemm_peak",
    "copy_bandwidth",
    "CompileClock",
    "ThreadSettings",
    "thread_info",
    "machine_info",
    "versions",
    "env_switches",
    "ENV_PREFIXES",
    "git_revision",
]

#: A timed sample is at least this long (fast calls are repeated inside one sample).
MIN_SAMPLE_S = 2e-4
#: The GEMM measured for the GEMM peak: NumPy matmul of two GEMM_N x GEMM_N matrices (every mode).
GEMM_N = 1024
#: Environment variables (by prefix) recorded with a run: they change which kernels run or how.
ENV_PREFIXES = ("FASTNN_", "NUMBA_", "OPENBLAS_", "OMP_", "MKL_", "GOMP_", "KMP_", "BLIS_")


@dataclasses.dataclass
class Timing:
    """Seconds per call of each sample (median and spread are over samples)."""

    samples: List[float]
    number: int  # calls per sample

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def p25(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def p75(self) -> float:
        return float(np.percentile(self.samples, 75))

    @property
    def min(self) -> float:
        return float(np.min(self.samples))

    @property
    def max(self) -> float:
        return float(np.max(self.samples))

    def as_dict(self) -> dict:
        return {
            "median_s": self.median, "p25_s": self.p25, "p75_s": self.p75, "min_s": self.min, "max_s": self.max,
            "repeats": len(self.samples), "calls_per_repeat": self.number,
        }


def time_callable(fn: Callable[[], object], *, target_s: float, min_reps: int, max_reps: int,
                  calibration: Optional[float] = None) -> Timing:
    """Time ``fn`` (already warmed up by the caller) alone: a calibration call, then repeats.

    Used for the reference (the course's loops), which is too slow to take part in the rounds.
    The number of repeats adapts to the measured time so that the whole measurement takes
    about ``target_s`` (at least ``min_reps``, at most ``max_reps`` repeats). Calls faster than
    ``MIN_SAMPLE_S`` are grouped so that each sample lasts at least that long. The garbage
    collector is off while timing, as in :mod:`timeit`. ``calibration``: the time of a call
    the caller has just made (after its warm-up), used instead of a calibration call.
    """
    gc_was = gc.isenabled()
    gc.disable()
    try:
        if calibration is None:
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter() - t0
        else:
            t1 = calibration
        number = max(1, math.ceil(MIN_SAMPLE_S / max(t1, 1e-9)))
        samples = [t1] if number == 1 else []  # a slow call's calibration is a valid sample
        reps = int(min(max(target_s / max(t1 * number, 1e-9), min_reps), max_reps))
        while len(samples) < reps:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return Timing(samples, number)


def _block_calls(t_call: float, block_s: float, max_calls: int = 200) -> int:
    """Timed calls per block: enough for the block to last ``block_s`` (at least 1)."""
    return int(min(max(1, math.ceil(block_s / max(t_call, 1e-7))), max_calls))


#: The untimed calls before a block last at most this many calls of the workload's slowest
#: candidate (and at most ``settle_s``): a small workload's data is back in cache after a call or
#: two, and its GEMMs are too small for OpenBLAS to start (and leave spinning) its threads.
SETTLE_CALLS = 20


def alternating_rounds(calls: Mapping[str, Callable[[], object]], first_call_s: Mapping[str, float], *,
                       min_rounds: int, max_rounds: int, target_s: float, block_s: float, settle_s: float,
                       on_error: Optional[Callable[[str, BaseException], None]] = None,
                       block=None) -> Tuple[Dict[str, List[float]], Dict[str, int]]:
    """Per-round seconds per call of each candidate: ``({name: [round times]}, {name: calls per block})``.

    Each round times every candidate once with ``block(fn, n, settle)`` (default
    :func:`fastnn._plan.timed_block`: untimed calls for ``settle`` seconds, at least one, then
    the median of ``n`` timed calls), the order reversed every other round. ``n`` per candidate
    makes a block last about ``block_s``; ``settle`` is ``settle_s``, or ``SETTLE_CALLS`` calls of
    the slowest candidate where that is shorter (both from ``first_call_s``, the seconds of a
    warm call, then from the first round). Rounds go on until ``target_s`` has passed and
    ``min_rounds`` are done, or ``max_rounds``. A candidate that raises is dropped from the
    later rounds (``on_error(name, exc)``). The garbage collector is off meanwhile.
    """
    if block is None:
        from .._plan import timed_block as block
    names = list(calls)
    n = {name: _block_calls(first_call_s.get(name, 0.0), block_s) for name in names}
    settle = min(settle_s, SETTLE_CALLS * max([first_call_s.get(name, 0.0) for name in names] + [0.0]))
    times: Dict[str, List[float]] = {name: [] for name in names}
    alive = list(names)
    gc_was = gc.isenabled()
    gc.disable()
    start = time.perf_counter()
    try:
        for r in range(max_rounds):
            for name in (list(alive) if r % 2 == 0 else alive[::-1]):
                try:
                    times[name].append(block(calls[name], n[name], settle))
                except Exception as exc:  # noqa: BLE001 - one failing candidate stops only itself
                    alive.remove(name)
                    if on_error is not None:
                        on_error(name, exc)
            if r == 0:  # the blocks' lengths from a warm call now (the warm-up may have compiled)
                n = {name: _block_calls(times[name][0], block_s) if times[name] else n[name] for name in names}
                settle = min(settle_s, SETTLE_CALLS * max([t[0] for t in times.values() if t] + [0.0]))
            if not alive or (r + 1 >= min_rounds and time.perf_counter() - start >= target_s):
                break
    finally:
        if gc_was:
            gc.enable()
    return times, n


def ratio_stats(numerator: Sequence[float], denominator: Sequence[float]) -> Optional[Tuple[float, float, float]]:
    """(median, min, max) over rounds of ``numerator[r] / denominator[r]`` (rounds both have), or None.

    With ``numerator`` PyTorch's round times and ``denominator`` a backend's, this is the
    speed-up against PyTorch measured side by side, round by round (> 1: the backend is faster)."""
    ratios = [a / b for a, b in zip(numerator, denominator) if a and b]
    if not ratios:
        return None
    return float(statistics.median(ratios)), float(min(ratios)), float(max(ratios))


# ------------------------------------------------------------------------------ the bounds


def gemm_peak(dtype, n: int = GEMM_N, repeats: int = 5) -> float:
    """FLOP/s of NumPy's matmul on an n x n square in ``dtype`` with the BLAS threads in force
    (an untimed warm-up, then the best of ``repeats``): the machine's GEMM peak. The bench
    measures it the same way in every mode."""
    rng = np.random.RandomState(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=out)  # warm-up (threads, pages)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def _copy_rate(src: np.ndarray, dst: np.ndarray, threads: int, repeats: int, sample_s: float) -> float:
    """Bytes/s (read + write) of copying ``src`` into ``dst`` with ``threads`` threads, each
    copying its slice (``np.copyto`` releases the GIL), best of ``repeats`` samples."""
    t0 = time.perf_counter()
    np.copyto(dst, src)  # warm-up: pages touched, the working set in its cache level
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, math.ceil(sample_s / one))  # copies per sample (small sets loop in cache)
    if threads <= 1:
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                np.copyto(dst, src)
            best = min(best, (time.perf_counter() - t0) / inner)
        return 2.0 * src.nbytes / best
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    parts = [(src[a:b], dst[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    start = threading.Barrier(threads + 1)
    done = threading.Barrier(threads + 1)
    stop = False

    def worker(s, d):
        while True:
            start.wait()
            if stop:
                return
            for _ in range(inner):
                np.copyto(d, s)
            done.wait()

    pool = [threading.Thread(target=worker, args=p, daemon=True) for p in parts]
    for t in pool:
        t.start()
    best = math.inf
    try:
        for _ in range(repeats + 1):  # (the first sample starts the threads: not kept)
            t0 = time.perf_counter()
            start.wait()
            done.wait()
            elapsed = (time.perf_counter() - t0) / inner
            if _ > 0:
                best = min(best, elapsed)
    finally:
        stop = True
        start.wait()
        for t in pool:
            t.join()
    return 2.0 * src.nbytes / best


def copy_bandwidth(nbytes: float, threads: int = 1, repeats: int = 5, sample_s: float = 2e-3) -> float:
    """Bytes/s (read + write counted) of a NumPy copy of ``nbytes / 2`` into ``nbytes / 2``: a
    working set of ``nbytes``, the kernel's size (so in the cache level the kernel's data is in).
    The faster of one thread and ``threads`` threads (thread start-up would otherwise lower the
    bound of small sets)."""
    n = max(1, int(nbytes // 16))  # float64 elements per array
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    if nbytes > 2 ** 25:  # (a sample of a set this large is long already)
        repeats = min(repeats, 3)
    rate = _copy_rate(src, dst, 1, repeats, sample_s)
    if threads > 1 and n >= 4 * threads:
        rate = max(rate, _copy_rate(src, dst, threads, repeats, sample_s))
    return rate


# ----------------------------------------------------------------------- compile seconds


class CompileClock:
    """Seconds Numba spent compiling while installed (``with CompileClock() as clock``): the sum
    of the outermost ``numba:compile`` events of each thread (a cache load is no compile).
    ``on_first()`` is called when the first compilation starts. Without Numba's
    event API it counts nothing (``available`` is False)."""

    def __init__(self, on_first: Optional[Callable[[], None]] = None):
        self.seconds = 0.0
        self.count = 0
        self.available = False
        self._on_first = on_first
        self._lock = threading.Lock()
        self._local = threading.local()
        self._listener = None

    def __enter__(self) -> "CompileClock":
        try:
            from numba.core import event
        except ImportError:  # pragma: no cover - numba is a dependency
            return self
        clock = self

        class _Listener(event.Listener):
            def on_start(self, ev):
                depth = getattr(clock._local, "depth", 0)
                if depth == 0:
                    clock._local.t0 = time.perf_counter()
                    first = False
                    with clock._lock:
                        clock.count += 1
                        first = clock.count == 1
                    if first and clock._on_first is not None:
                        clock._on_first()
                clock._local.depth = depth + 1

            def on_end(self, ev):
                depth = getattr(clock._local, "depth", 1) - 1
                clock._local.depth = depth
                if depth == 0:
                    with clock._lock:
                        clock.seconds += time.perf_counter() - clock._local.t0

        self._listener = _Listener()
        event.register("numba:compile", self._listener)
        self.available = True
        return self

    def __exit__(self, *exc) -> None:
        if self._listener is not None:
            from numba.core import event

            event.unregister("numba:compile", self._listener)
            self._listener = None


# -------------------------------------------------------------------------- threads


class ThreadSettings:
    """``--threads N``: numba threads (if numba is present), BLAS threads (if threadpoolctl is),
    torch threads (only when ``torch`` is to be timed: it is not imported otherwise).

    ``apply()`` records what it changed; ``restore()`` puts the previous settings back
    (so an in-process run leaves the interpreter as it found it).
    """

    def __init__(self, n: Optional[int], use_torch: bool = True):
        self.n = n
        self.use_torch = use_torch
        self.applied: Dict[str, object] = {}
        self.warnings: List[str] = []
        self._undo: List[Callable[[], None]] = []

    def apply(self) -> "ThreadSettings":
        n = self.n
        if n is None:
            return self
        try:
            from ..backends.numba.config import override_num_threads

            import numba

            old = override_num_threads(n)  # the numba backend's threads (not Numba's own pool)
            self._undo.append(lambda: override_num_threads(old))
            self.applied["numba"] = min(n, numba.config.NUMBA_NUM_THREADS)
            if n > numba.config.NUMBA_NUM_THREADS:
                self.warnings.append(f"numba backend threads capped at NUMBA_NUM_THREADS="
                                     f"{numba.config.NUMBA_NUM_THREADS}, not {n}")
        except ImportError:  # pragma: no cover - numba is a dependency
            pass
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=n)
            self._undo.append(limiter.restore_original_limits)
            self.applied["blas"] = n
        except ImportError:
            self.warnings.append("threadpoolctl is not installed: BLAS threads left as they are "
                                 "(pip install threadpoolctl, or set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS)")
        if self.use_torch:
            from .workloads import torch_module

            torch = torch_module()
            if torch is not None:
                old_t = torch.get_num_threads()
                torch.set_num_threads(n)
                self._undo.append(lambda: torch.set_num_threads(old_t))
                self.applied["torch"] = n
        return self

    def restore(self) -> None:
        while self._undo:
            try:
                self._undo.pop()()
            except Exception:  # pragma: no cover - best effort
                pass


def kernel_threads() -> int:
    """The numba backend's threads per kernel call (the threads a kernel of the bench uses)."""
    try:
        from ..backends.numba.config import num_threads

        return int(num_threads())
    except ImportError:  # pragma: no cover
        return os.cpu_count() or 1


def thread_info() -> dict:
    """The thread counts in force now (numba, BLAS via threadpoolctl, torch where it is loaded),
    None where unknown."""
    info: Dict[str, object] = {"cpu_count": os.cpu_count()}
    try:
        from ..backends.numba.config import num_threads

        info["numba"] = num_threads()  # the numba backend's threads per kernel call
    except ImportError:  # pragma: no cover
        info["numba"] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "num_threads", "version", "architecture")} for d in threadpool_info()
        ]
    except ImportError:
        info["blas"] = None
    torch = sys.modules.get("torch")  # (never imported just to ask)
    info["torch"] = torch.get_num_threads() if torch is not None else None
    return info


# -------------------------------------------------------------------- the machine


def _cpuinfo() -> Optional[dict]:
    """py-cpuinfo's description of the CPU, or None where it is not installed or fails."""
    try:
        import cpuinfo
    except ImportError:
        return None
    try:
        return cpuinfo.get_cpu_info()
    except Exception:  # noqa: BLE001 - a description only: never a reason to fail a run
        return None


def machine_info(cpu: Optional[dict] = "ask") -> dict:
    """The machine a run ran on: CPU model, architecture, cores, caches and flags from py-cpuinfo
    (``pip install py-cpuinfo2``, part of the ``bench`` extra), else what :mod:`platform` says.
    ``cpu``: py-cpuinfo's dict (default: asked now, once per process)."""
    if cpu == "ask":
        cpu = _cached_cpuinfo()
    out = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_source": "platform",
    }
    if cpu:
        out.update(cpu=cpu.get("brand_raw") or out["cpu"], cpu_source="py-cpuinfo",
                   arch=cpu.get("arch"), vendor=cpu.get("vendor_id_raw"), hz=cpu.get("hz_advertised_friendly"),
                   l2_cache_size=cpu.get("l2_cache_size"), l3_cache_size=cpu.get("l3_cache_size"),
                   flags=[f for f in cpu.get("flags", ()) if f.startswith(("avx", "fma", "sse4", "neon", "sve", "amx"))])
    return out


_cpu_memo: List[Optional[dict]] = []


def _cached_cpuinfo() -> Optional[dict]:
    if not _cpu_memo:
        _cpu_memo.append(_cpuinfo())
    return _cpu_memo[0]


#: Distributions whose version a run records (the import name is never imported for it).
_VERSIONED = ("numpy", "numba", "llvmlite", "torch", "threadpoolctl", "matplotlib", "py-cpuinfo2", "py-cpuinfo")


def versions() -> dict:
    """fastnn's, Python's and the libraries' versions, from the installed packages' metadata
    (``importlib.metadata``; nothing is imported to read a version). None: not installed."""
    import fastnn

    out = {"fastnn": fastnn.__version__, "python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def env_switches(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment variables that change what a run runs or how (``ENV_PREFIXES``)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in sorted(environ.items()) if k.startswith(ENV_PREFIXES) and k != "FASTNN_CACHE_DIR"
            and k != "NUMBA_CACHE_DIR"}


def git_revision() -> Optional[dict]:
    """The git commit of the fastnn source tree (and whether it has local changes), if it is a checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return {"commit": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None
