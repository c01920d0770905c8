"""Threads per task: the cores a process has, shared out among the tasks it runs at once.

A Dask task that calls a fastnn kernel runs beside other tasks: on a ``dask.distributed``
worker as many as the worker has threads, on the local threaded scheduler as many as its
pool has. If each kernel also took every core, N tasks x N kernel threads would fight over
N cores. So each task runs its kernels on ``max(1, budget // tasks_at_once)`` threads
(:func:`fastnn.backends.numba.config.use_num_threads`, for that task's thread only), where
the budget is this process's fastnn thread setting (``FASTNN_NUM_THREADS``, else the number
of cores). Several worker processes on one host should each get their share of the host
in ``FASTNN_NUM_THREADS`` (:func:`fastnn.dask.local_cluster` sets it for its workers).

The count changes nothing but speed and the order in which a kernel sums ``dW``/``db`` (its
chunks are the threads): pass ``threads=`` to an op for a count that does not depend on where
the task runs (the tests do, to compare bits across schedulers).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Iterator, Optional

from ..backends.numba import config as _config

__all__ = ["tasks_at_once", "threads_per_task", "task_threads"]


def _distributed_worker():
    """The ``dask.distributed`` worker running this thread's task, or None."""
    distributed = sys.modules.get("distributed")  # never imported here: a worker has it already
    if distributed is None:
        return None
    try:
        return distributed.get_worker()
    except ValueError:  # not in a worker's task
        return None


def tasks_at_once() -> int:
    """How many tasks this process runs side by side: the worker's threads on a
    ``dask.distributed`` worker; 1 on the main thread (the synchronous scheduler, or a plain
    call); else the local threaded scheduler's pool (``num_workers`` in Dask's config, else the
    CPU count Dask's pool defaults to)."""
    worker = _distributed_worker()
    if worker is not None:
        state = getattr(worker, "state", worker)
        return max(1, int(state.nthreads))
    if threading.current_thread() is threading.main_thread():
        return 1
    import dask
    from dask.system import CPU_COUNT

    n = dask.config.get("num_workers", None)
    pool = dask.config.get("pool", None)
    if n is None and pool is not None:
        n = getattr(pool, "_max_workers", None) or getattr(pool, "_processes", None)
    return max(1, int(n or CPU_COUNT))


def threads_per_task() -> int:
    """fastnn's threads for one kernel call in this task: ``max(1, budget // tasks_at_once())``."""
    return max(1, _config.num_threads() // tasks_at_once())


def _check_threads(threads) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None (this task's share of the cores), got {threads!r}")


@contextlib.contextmanager
def task_threads(threads: Optional[int] = None) -> Iterator[int]:
    """Run the block's kernels on ``threads`` threads (None: :func:`threads_per_task`), in this
    thread only; yields the count."""
    _check_threads(threads)
    with _config.use_num_threads(threads if threads is not None else threads_per_task()) as n:
        yield n
