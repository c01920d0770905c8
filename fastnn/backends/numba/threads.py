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

Hand-offs poll before they block (:mod:`.spin`, x86-64): an idle worker polls a bell that
every queued job rings, for ``FASTNN_SPIN_US`` (default 100 us) after its last chunk, and a call
polls for its chunks' completion flags as long before it waits on their locks; the polls run
without the GIL, and a worker sets its completion flag from within its next poll, so that the
caller that sees it finds the GIL free (a worker that does not poll sets it before it takes or
waits for its next job). Waking a blocked thread took about 20 us on the 2-vCPU
host, two or three times a call: a threaded call of a 12 us kernel took 85-90 us blocking, about
42 polling (``config.SPIN_US_DEFAULT``); on the AMD host a call of an empty kernel in two chunks
took 18 us with the flag set under the GIL, 11 us now.

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

import numpy as np

from . import config as _cfg

__all__ = ["run_chunks", "worker_count", "poll_us"]

_jobs: "queue.SimpleQueue" = queue.SimpleQueue()
_workers: List[threading.Thread] = []
_grow_lock = threading.Lock()
_local = threading.local()
#: _bell[0] changes whenever a job is queued (after it is): what idle workers poll while they
#: spin. Only a hint: a worker reads it, then looks in the queue, then polls for a change, so a
#: job queued before the read is found in the queue and one queued after changes it (an
#: increment lost between two callers still writes a value past the read).
_bell = np.zeros(8, dtype=np.int64)
_spin = None  # (the spin module, idle ticks, linger ticks) once set up; False: polling off
_cpus = [1]  # usable CPUs, as counted when polling was set up
_pollers = [0]  # workers polling the bell now
_poll_lock = threading.Lock()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (no affinity on macOS and Windows)
        return os.cpu_count() or 1


def poll_us() -> int:
    """Microseconds the threads poll before they block: ``FASTNN_SPIN_US`` (its ``ValueError``
    where it is bad), or 0 where polling is off: not x86-64, or a single usable CPU, where a
    poll would only keep the thread it waits for off the core."""
    from . import spin

    us = _cfg.spin_us()
    return us if spin.AVAILABLE and _usable_cpus() >= 2 else 0


def _spinning():
    """(the spin module, idle ticks, linger ticks), or None where polling is off
    (:func:`poll_us` is 0): set up at the first threaded call, which raises the ``ValueError``
    of a bad ``FASTNN_SPIN_US``."""
    global _spin
    if _spin is None:
        from . import spin

        idle_us = poll_us()
        _cpus[0] = _usable_cpus()
        if idle_us == 0:
            _spin = False
        else:
            rate = spin.cycles_per_us()
            _spin = (spin, int(idle_us * rate), int(_cfg.SPIN_LINGER_US * rate))
    return _spin or None


_NO_MARK = (np.zeros(1, dtype=np.int64), -1)


def _set_mark(mark) -> None:
    if mark[1] >= 0:
        mark[0][mark[1]] = 1


def _next_job(mark=_NO_MARK):
    """The next queued job: taken at once, or after polling the bell for up to the idle spin
    (without the GIL), else by blocking on the queue. At most one worker fewer than the usable
    CPUs polls at a time (the caller has the last one). ``mark`` (flags, index): the last job's
    completion flag, set first (by the poll, without the GIL, where this worker polls)."""
    while True:
        try:
            job = _jobs.get_nowait()
            _set_mark(mark)
            return job
        except queue.Empty:
            pass
        spinning = _spin or None  # (set by the call that queued this worker's first job)
        if spinning is None:
            _set_mark(mark)
            return _jobs.get()
        with _poll_lock:
            may_poll = _pollers[0] < _cpus[0] - 1
            _pollers[0] += may_poll
        if not may_poll:
            _set_mark(mark)
            return _jobs.get()
        try:
            seen = int(_bell[0])
            try:
                job = _jobs.get_nowait()
                _set_mark(mark)
                return job
            except queue.Empty:
                pass
            spin, idle, linger = spinning
            changed = spin.flag_changes(_bell, 0, seen, idle, linger, *mark)
            mark = _NO_MARK
        finally:
            with _poll_lock:
                _pollers[0] -= 1
        if not changed:
            return _jobs.get()


def _work() -> None:
    _local.is_worker = True
    mark = _NO_MARK
    while True:
        fn, args, slot, errors, finished, done = _next_job(mark)
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors[slot] = exc  # a preallocated slot: recording the failure cannot fail
        finally:
            # Drop the job's arrays (and the errors list) before signalling: held here until
            # the next job, a freed output's memory would not be reused by the caller's next
            # allocation (a cold buffer each call slowed pooling backward).
            del fn, args, errors
            # The lock a blocked caller waits on, then the flag a polling caller polls, set by
            # the next poll without the GIL (_next_job; with it where this worker does not poll).
            # Set here, with the GIL, the caller saw it while this thread still held the GIL, and
            # lingered 5 us so as not to wait on it: a chunked call of an empty kernel took
            # 18.4 us so, 10.8 now.
            done.release()
            mark = (finished, slot - 1)
            del done, finished


def _ensure_workers(n: int) -> None:
    if len(_workers) >= n:
        return
    with _grow_lock:
        while len(_workers) < n:
            t = threading.Thread(target=_work, name=f"fastnn-worker-{len(_workers)}", daemon=True)
            t.start()
            _workers.append(t)


def _after_fork_in_child() -> None:
    # The child has only the forking thread: forget the parent's workers and queue (and their
    # polling count, and its lock, which one of them may have held).
    global _jobs, _grow_lock, _poll_lock
    _jobs = queue.SimpleQueue()
    _grow_lock = threading.Lock()
    _poll_lock = threading.Lock()
    _pollers[0] = 0
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
    spinning = _spinning()
    _ensure_workers(nchunks - 1)
    errors: List[Optional[BaseException]] = [None] * nchunks
    finished = np.zeros(nchunks - 1, dtype=np.int64)  # finished[c - 1]: chunk c is done
    locks: List[threading.Lock] = []
    try:
        for c in range(1, nchunks):
            done = threading.Lock()
            done.acquire()
            _jobs.put((kernel, args + (c, nchunks), c, errors, finished, done))
            locks.append(done)  # (after the put: a lock that was never queued is never waited on)
            _bell[0] += 1
        kernel(*args, 0, nchunks)
    except BaseException as exc:  # noqa: BLE001 - raised once the queued chunks are done
        errors[0] = exc
    finally:
        interrupted = None
        if spinning is not None and len(locks) == nchunks - 1 and nchunks <= _cpus[0]:
            try:  # (poll first, without the GIL; an interruption meanwhile still waits below)
                spin, idle, _ = spinning  # (no linger: a polling worker sets its flag without the GIL)
                spin.flags_set(finished, nchunks - 1, idle, 0)
            except BaseException as exc:  # noqa: BLE001 - re-raised once every chunk is done
                interrupted = exc
        late = _wait_all(locks)  # every queued chunk, even when ours failed
        interrupted = interrupted or late
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
