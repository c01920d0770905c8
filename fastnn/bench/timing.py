"""Timing, machine bounds, thread settings and the machine description for ``fastnn bench``."""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import platform
import subprocess
import time
from typing import Callable, Dict, List, Optional

import numpy as np

__all__ = [
    "Timing",
    "time_callable",
    "gemm_peak",
    "memory_bandwidth",
    "ThreadSettings",
    "thread_info",
    "machine_info",
    "versions",
    "git_revision",
]

#: A timed sample is at least this long (fast calls are repeated inside one sample).
MIN_SAMPLE_S = 2e-4


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
    """Time ``fn`` (already warmed up by the caller): a calibration call, then repeats.

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


def gemm_peak(dtype, n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of NumPy's matmul on an n x n square (best of ``repeats``): the machine's GEMM peak."""
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


def memory_bandwidth(nbytes: int = 64 * 2 ** 20, repeats: int = 5) -> float:
    """Bytes/s of a large NumPy copy (read + write counted; best of ``repeats``)."""
    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * src.nbytes / best


class ThreadSettings:
    """``--threads N``: numba threads (if numba is present), BLAS threads (if threadpoolctl is), torch threads.

    ``apply()`` records what it changed; ``restore()`` puts the previous settings back
    (so an in-process run leaves the interpreter as it found it).
    """

    def __init__(self, n: Optional[int]):
        self.n = n
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


def thread_info() -> dict:
    """The thread counts in force now (numba, BLAS via threadpoolctl, torch), None where unknown."""
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
    from .workloads import torch_module

    torch = torch_module()
    info["torch"] = torch.get_num_threads() if torch is not None else None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }


def versions() -> dict:
    import fastnn

    out = {"fastnn": fastnn.__version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod in ("numba", "torch", "threadpoolctl", "matplotlib"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


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
