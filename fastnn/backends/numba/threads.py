"""fastnn's worker threads: run the chunks of one kernel call side by side.

Every kernel of the numba backend is a serial ``nogil`` function that takes
``(..., chunk, nchunks)`` and runs that share of its outer loop (see
:mod:`fastnn.backends.numba.kernels`). :func:`run_chunks` runs chunks ``1 .. n-1`` on worker
threads and chunk 0 in the calling thread, and returns when all are done. The kernels
release the GIL, so the chunks run in parallel.

Why not Numba's ``parallel=True``/``prange``: a parallel build of each kernel goes through
Numba's parfor passes and re-optimises the whole kernel body once more (extra cold compile
per kernel, and a cold ``conv_backward`` compiles two); with chunks a
kernel is compiled once and serves the serial and the threaded call. It also needs no
threading layer: Numba's default ``workqueue`` layer aborts the process when two Python
threads launch parallel kernels at once, and its OpenMP layer's idle workers spin after
every kernel, slowing a BLAS GEMM started right after. The price is the hand-off, several
times ``prange``'s per call (figures in ``docs/bench/backend-notes.md``), which is why small
problems run in the calling thread (``SERIAL_WORK`` in :mod:`fastnn.backends.numba.config`).

A call may also split its loop into more chunks than threads (``nthreads`` below
``nchunks``): the threads then take the chunks in turn, so that a thread whose core runs slow
for a while (a shared machine) takes fewer; the numba backend's wrappers do so for large calls
(:func:`fastnn.backends.numba.config.chunk_count`).

Calls from several Python threads at once share the workers: each call queues its chunks
and runs its own chunk 0, and a worker never waits on anything but the queue (a call made
on a worker thread, say from a ``__del__`` there, runs all its chunks inline), so calls
cannot deadlock. A call returns, or raises, only once every chunk has finished, even when
a chunk fails or the caller is interrupted (Ctrl-C), so no chunk is still writing the
caller's arrays after it. After ``os.fork`` the child starts with no workers and makes its
own.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable, List, Optional

__all__ = ["run_chunks", "worker_count"]

_jobs: "queue.SimpleQueue" = queue.SimpleQueue()
_workers: List[threading.Thread] = []
_grow_lock = threading.Lock()
_local = threading.local()


def _work() -> None:
    _local.is_worker = True
    while True:
        fn, args, slot, errors, done = _jobs.get()
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors[slot] = exc  # a preallocated slot: recording the failure cannot fail
        finally:
            # Drop the job's arrays (and the errors list) before signalling: held here until
            # the next job, a freed output's memory would not be reused by the caller's next
            # allocation (a cold buffer each call slowed pooling backward).
            del fn, args, errors
            done.release()
            del done


def _ensure_workers(n: int) -> None:
    if len(_workers) >= n:
        return
    with _grow_lock:
        while len(_workers) < n:
            t = threading.Thread(target=_work, name=f"fastnn-worker-{len(_workers)}", daemon=True)
            t.start()
            _workers.append(t)


def _after_fork_in_child() -> None:
    # The child has only the forking thread: forget the parent's workers and queue.
    global _jobs, _grow_lock
    _jobs = queue.SimpleQueue()
    _grow_lock = threading.Lock()
    _workers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def worker_count() -> int:
    """Worker threads started so far (the calling thread is not counted)."""
    return len(_workers)


def _wait_all(locks: List[threading.Lock]) -> Optional[BaseException]:
    """Acquire every lock, retrying through interruptions (KeyboardInterrupt); the first
    interruption is returned, to be raised once all chunks are done."""
    pending: Optional[BaseException] = None
    for done in locks:
        while True:
            try:
                done.acquire()
                break
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                if pending is None:
                    pending = exc
    return pending


def run_chunks(kernel: Callable[..., Any], args: tuple, nchunks: int, nthreads: Optional[int] = None) -> None:
    """``kernel(*args, c, nchunks)`` for every chunk c < nchunks; chunks 1.. on worker
    threads, chunk 0 here. Returns when all are done; then re-raises the first exception
    of a chunk (or an interruption of the wait).

    With ``nthreads`` below ``nchunks``, that many threads (this one and nthreads - 1
    workers) take the chunks in turn, each the next one not yet taken as it finishes one:
    on a shared machine one thread's core may run slower for a while (the same share of a
    forward took 12 to 19 ms in one thread or the other, call to call, on the 2-vCPU host),
    and fixed shares would leave the other thread idle at the end. Which thread runs which
    chunk then varies from call to call; a kernel whose chunks write disjoint outputs with
    the same arithmetic (every ``chunked`` kernel) gives the same bits either way."""
    if nthreads is not None and 1 <= nthreads < nchunks and not getattr(_local, "is_worker", False):
        _run_in_turn(kernel, args, nchunks, nthreads)
        return
    if nchunks <= 1 or getattr(_local, "is_worker", False):
        for c in range(max(nchunks, 1)):
            kernel(*args, c, max(nchunks, 1))
        return
    _ensure_workers(nchunks - 1)
    errors: List[Optional[BaseException]] = [None] * nchunks
    locks: List[threading.Lock] = []
    try:
        for c in range(1, nchunks):
            done = threading.Lock()
            done.acquire()
            _jobs.put((kernel, args + (c, nchunks), c, errors, done))
            locks.append(done)  # (after the put: a lock that was never queued is never waited on)
        kernel(*args, 0, nchunks)
    except BaseException as exc:  # noqa: BLE001 - raised once the queued chunks are done
        errors[0] = exc
    finally:
        interrupted = _wait_all(locks)  # every queued chunk, even when ours failed
    exc = next((e for e in errors if e is not None), interrupted)
    if exc is not None:
        errors.clear()  # no reference cycle through this frame's locals
        raise exc


def _run_in_turn(kernel: Callable[..., Any], args: tuple, nchunks: int, nthreads: int) -> None:
    """``run_chunks`` with ``nthreads`` threads taking the ``nchunks`` chunks in turn. A chunk
    that raises stops the others from taking more; its exception is raised (by run_chunks)."""
    taken = iter(range(nchunks))
    lock = threading.Lock()  # (next() on a shared iterator, made safe without the GIL too)
    failed: List[bool] = []

    def take_in_turn(_c: int, _n: int) -> None:
        try:
            while not failed:
                with lock:
                    c = next(taken, nchunks)
                if c >= nchunks:
                    return
                kernel(*args, c, nchunks)
        except BaseException:  # (a chunk's error or an interruption anywhere in the loop)
            failed.append(True)
            raise

    run_chunks(take_in_turn, (), nthreads)
