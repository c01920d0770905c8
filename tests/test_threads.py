"""fastnn's worker threads (:mod:`fastnn.backends.numba.threads`): every chunk runs once, errors reach
the caller, concurrent callers and forked children work."""

import gc
import os
import signal
import sys
import threading
import time
import weakref

import numpy as np
import pytest

from fastnn.backends.numba import threads as _threads


def _record(seen, lock, chunk, nchunks):
    with lock:
        seen.append((chunk, nchunks, threading.current_thread().name))


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_every_chunk_runs_once(n):
    seen, lock = [], threading.Lock()
    _threads.run_chunks(_record, (seen, lock), n)
    assert sorted(c for c, _, _ in seen) == list(range(n))
    assert {k for _, k, _ in seen} == {n}
    caller = threading.current_thread().name
    assert [t for c, _, t in seen if c == 0] == [caller]  # chunk 0 runs in the calling thread
    assert all(t.startswith("fastnn-worker-") for c, _, t in seen if c)


def _fail_on(bad, chunk, nchunks):
    if chunk == bad:
        raise RuntimeError(f"chunk {chunk} failed")


@pytest.mark.parametrize("bad", [0, 2])
def test_a_chunk_error_reaches_the_caller_after_all_chunks(bad):
    with pytest.raises(RuntimeError, match=f"chunk {bad} failed"):
        _threads.run_chunks(_fail_on, (bad,), 3)
    seen, lock = [], threading.Lock()  # the workers survive
    _threads.run_chunks(_record, (seen, lock), 3)
    assert sorted(c for c, _, _ in seen) == [0, 1, 2]


def test_concurrent_callers():
    results, errors = {}, []

    def caller(k):
        try:
            for _ in range(200):
                seen, lock = [], threading.Lock()
                _threads.run_chunks(_record, (seen, lock), 2 + k % 3)
                assert sorted(c for c, _, _ in seen) == list(range(2 + k % 3))
            results[k] = True
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert len(results) == 5


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")
def test_forked_child_gets_its_own_workers():
    seen, lock = [], threading.Lock()
    _threads.run_chunks(_record, (seen, lock), 2)  # the parent has a worker now
    assert _threads.worker_count() >= 1
    pid = os.fork()
    if pid == 0:  # child: the parent's workers do not exist here; a job queued for them would hang
        code = 1
        try:
            signal.alarm(20)  # a hang kills the child (the parent then sees a signal, not exit 0)
            child_seen = []
            _threads.run_chunks(_record, (child_seen, threading.Lock()), 2)
            code = 0 if sorted(c for c, _, _ in child_seen) == [0, 1] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _noop(x, chunk, nchunks):
    pass


def test_workers_let_go_of_the_arguments():
    """Once a call returns, no worker holds its arrays (else a freed output's memory is not
    reused by the next allocation: a cold buffer every call)."""
    x = np.empty(10)
    ref = weakref.ref(x)
    _threads.run_chunks(_noop, (x,), 3)
    del x
    assert ref() is None


def _fail_with_array(x, chunk, nchunks):
    if chunk == 1:
        raise ValueError("chunk 1 failed")


def test_a_failed_call_lets_go_of_the_arguments():
    x = np.empty(10)
    ref = weakref.ref(x)
    with pytest.raises(ValueError, match="chunk 1 failed"):
        _threads.run_chunks(_fail_with_array, (x,), 3)
    del x
    gc.collect()
    assert ref() is None


def _slow_chunk_1(flags, chunk, nchunks):
    if chunk == 1:
        time.sleep(0.3)
        flags.append("chunk 1 done")
    elif chunk == 0:
        raise KeyboardInterrupt


def test_an_interrupted_caller_waits_for_every_chunk():
    flags = []
    with pytest.raises(KeyboardInterrupt):
        _threads.run_chunks(_slow_chunk_1, (flags,), 2)
    assert flags == ["chunk 1 done"]  # never returns while a chunk still writes


def _sleep_chunk_1(flags, chunk, nchunks):
    if chunk == 1:
        time.sleep(0.4)
        flags.append("chunk 1 done")


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_ctrl_c_while_waiting_still_waits_for_every_chunk():
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    flags = []
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)  # arrives while the caller waits for chunk 1
        with pytest.raises(KeyboardInterrupt):
            _threads.run_chunks(_sleep_chunk_1, (flags,), 2)
        assert flags == ["chunk 1 done"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _nested(seen, chunk, nchunks):
    if chunk == 1:  # on a worker: a call from here must not wait for the (busy) workers
        _threads.run_chunks(_record, (seen, threading.Lock()), 2)


def test_a_call_from_a_worker_runs_inline():
    seen = []
    t = threading.Thread(target=_threads.run_chunks, args=(_nested, (seen,), 2), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "nested call deadlocked"
    assert sorted(c for c, _, _ in seen) == [0, 1]


# ------------------------------------------------- chunks taken in turn (nthreads < nchunks)


@pytest.mark.parametrize("n, nthreads", [(2, 1), (5, 2), (16, 2), (7, 3)])
def test_chunks_taken_in_turn_run_once_each_on_at_most_nthreads(n, nthreads):
    seen, lock = [], threading.Lock()
    _threads.run_chunks(_record, (seen, lock), n, nthreads)
    assert sorted(c for c, _, _ in seen) == list(range(n))
    assert {k for _, k, _ in seen} == {n}
    names = {t for _, _, t in seen}
    assert len(names) <= nthreads
    caller = threading.current_thread().name
    assert all(t == caller or t.startswith("fastnn-worker-") for t in names)


def _caller_held_up(caller, seen, lock, released, chunk, nchunks):
    name = threading.current_thread().name
    with lock:
        seen.append((chunk, name))
        if sum(t != caller for _, t in seen) == nchunks - 1:
            released.set()  # the worker has run every chunk but one
    if name == caller:
        released.wait(20)


def test_a_slow_thread_takes_fewer_chunks():
    """The calling thread is held up in its first chunk until the worker has run all the others:
    the worker takes them in turn (with one fixed share per thread, the caller would run half)."""
    seen, lock, released = [], threading.Lock(), threading.Event()
    caller = threading.current_thread().name
    _threads.run_chunks(_caller_held_up, (caller, seen, lock, released), 8, 2)
    assert released.is_set()
    assert sorted(c for c, _ in seen) == list(range(8))
    assert sum(t == caller for _, t in seen) <= 1


@pytest.mark.parametrize("bad", [0, 5])
def test_a_chunk_error_taken_in_turn_reaches_the_caller(bad):
    with pytest.raises(RuntimeError, match=f"chunk {bad} failed"):
        _threads.run_chunks(_fail_on, (bad,), 8, 2)
    seen, lock = [], threading.Lock()  # the workers survive
    _threads.run_chunks(_record, (seen, lock), 6, 2)
    assert sorted(c for c, _, _ in seen) == list(range(6))


def test_chunks_taken_in_turn_let_go_of_the_arguments():
    x = np.empty(10)
    ref = weakref.ref(x)
    _threads.run_chunks(_noop, (x,), 6, 2)
    del x
    gc.collect()
    assert ref() is None


def test_chunk_count_rule():
    """A multiple of the threads, at most CHUNKS_PER_THREAD each, no chunk below
    CHUNK_WORK_FACTOR times the threshold where the work allows; one on one thread."""
    from fastnn.backends.numba import config as cfg
    step = cfg.CHUNK_WORK_FACTOR * 1000
    assert cfg.chunk_count(0, 2, 1000) == 2
    assert cfg.chunk_count(step * 2 * 3, 2, 1000) == 6
    assert cfg.chunk_count(step * 2 * 3 + step, 2, 1000) == 6
    assert cfg.chunk_count(10 ** 12, 2, 1000) == 2 * cfg.CHUNKS_PER_THREAD
    assert cfg.chunk_count(10 ** 12, 1, 1000) == 1


# ------------------------------------------------------------------ spin-waits (threads.py, spin.py)

_spin = pytest.importorskip("fastnn.backends.numba.spin")
needs_spin = pytest.mark.skipif(not _spin.AVAILABLE, reason="spin-waits run on x86-64 only")


def _sleepy(delays, seen, lock, chunk, nchunks):
    time.sleep(delays[chunk])
    _record(seen, lock, chunk, nchunks)


@pytest.mark.parametrize("spinning", [True, False], ids=["spinning", "blocking"])
def test_chunks_run_once_whether_threads_poll_or_block(monkeypatch, spinning):
    """Calls back to back (a worker still polling takes the next chunk), calls after a pause
    longer than the poll (the worker blocked on the queue), chunks that outlast the caller's
    poll (it falls back on the lock), in fixed shares and in turn: every chunk once."""
    if spinning:
        if _threads._spinning() is None:
            pytest.skip("polling is off here (FASTNN_SPIN_US=0, not x86-64, or fewer than 2 usable CPUs)")
    else:
        monkeypatch.setattr(_threads, "_spin", False)
    for delays, pause in (((0, 0, 0), 0), ((0, 0.003, 0), 0), ((0, 0, 0), 0.003), ((0.003, 0, 0), 0)):
        for _ in range(20):
            seen, lock = [], threading.Lock()
            _threads.run_chunks(_sleepy, (delays, seen, lock), 3)
            assert sorted(c for c, _, _ in seen) == [0, 1, 2]
            seen.clear()
            _threads.run_chunks(_sleepy, ((0,) * 8, seen, lock), 8, 2)
            assert sorted(c for c, _, _ in seen) == list(range(8))
            time.sleep(pause)


@needs_spin
def test_a_polling_worker_takes_the_next_call_without_blocking(monkeypatch):
    """Calls in quick succession find the worker still polling the bell (not blocked on the
    queue): its poll reports the change."""
    if _threads._spinning() is None:
        pytest.skip("polling is off here (FASTNN_SPIN_US=0, or fewer than 2 usable CPUs)")
    # (compiled first: with a cold cache the workers' first poll would compile for longer than
    # the 50 calls take; and a poll of 0.5 s, not 100 us: on a loaded machine the next call may
    # come later than that)
    assert _spin.flag_changes(np.zeros(1, dtype=np.int64), 0, 1, 0, 0, np.zeros(1, dtype=np.int64), -1)
    spin_mod, _, linger = _threads._spinning()
    monkeypatch.setattr(_threads, "_spin", (spin_mod, int(5e5 * _spin.cycles_per_us()), linger))
    seen_changes = []
    real = _spin.flag_changes

    def flag_changes(*args):
        changed = real(*args)
        seen_changes.append(changed)
        return changed

    monkeypatch.setattr(_spin, "flag_changes", flag_changes)
    seen, lock = [], threading.Lock()
    for calls in range(1, 1001):  # (until one poll has seen a call come: the first few may go to
        _threads.run_chunks(_record, (seen, lock), 2)  # workers that were blocked before the test)
        if True in seen_changes:
            break
    assert len(seen) == 2 * calls and True in seen_changes, (calls, _threads._pollers, _threads._cpus,
                                                             _threads.worker_count(), seen_changes[:5])


@needs_spin
def test_a_polling_worker_sets_its_chunks_flag_in_its_poll(monkeypatch):
    """A worker that polls after a chunk sets the chunk's completion flag in the poll (without
    the GIL), not before it: the caller that sees the flag then finds the GIL free. The
    chunk's lock is released before, so the caller never waits on it once it sees the flag."""
    if _threads._spinning() is None:
        pytest.skip("polling is off here (FASTNN_SPIN_US=0, or fewer than 2 usable CPUs)")
    real = _spin.flag_changes
    marks = []

    def flag_changes(flags, i, seen, limit, linger, mark, j):
        if j >= 0:
            marks.append(int(mark[j]))  # (not set yet when the poll starts)
        return real(flags, i, seen, limit, linger, mark, j)

    monkeypatch.setattr(_spin, "flag_changes", flag_changes)
    seen, lock = [], threading.Lock()
    for calls in range(1, 1001):  # (until a worker has polled after a chunk of this test's)
        _threads.run_chunks(_record, (seen, lock), 2)
        if marks:
            break
    assert len(seen) == 2 * calls and marks and set(marks) == {0}, (calls, marks[:5])


@needs_spin
@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_ctrl_c_while_the_caller_polls_still_waits_for_every_chunk(monkeypatch):
    """An interruption that arrives while the caller polls for its chunks (here a 0.3 s poll)
    is raised only once every chunk is done, as one while it blocks."""
    if _threads._spinning() is None:
        pytest.skip("polling is off here (FASTNN_SPIN_US=0, or fewer than 2 usable CPUs)")
    spin_mod, _, linger = _threads._spinning()
    monkeypatch.setattr(_threads, "_spin", (spin_mod, int(3e5 * _spin.cycles_per_us()), linger))
    monkeypatch.setattr(_threads, "_cpus", [2])

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    flags = []
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)  # arrives during the caller's poll
        with pytest.raises(KeyboardInterrupt):
            _threads.run_chunks(_sleep_chunk_1, (flags,), 2)  # (chunk 1 sleeps 0.4 s)
        assert flags == ["chunk 1 done"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@needs_spin
def test_spin_kernels_report_a_change_or_give_up():
    flags = np.zeros(4, dtype=np.int64)
    rate = _spin.cycles_per_us()
    assert rate > 1
    mark = np.zeros(3, dtype=np.int64)
    assert not _spin.flag_changes(flags, 2, 0, int(200 * rate), 0, mark, -1)  # nothing changes: gives up
    assert not mark.any()  # (j < 0: no mark set)
    assert not _spin.flags_set(flags, 3, int(200 * rate), 0)
    flags[2] = 7
    assert _spin.flag_changes(flags, 2, 0, int(200 * rate), int(5 * rate), mark, -1)
    assert not _spin.flag_changes(flags, 2, 7, int(200 * rate), 0, mark, 1)
    assert mark.tolist() == [0, 1, 0]  # set first, whether or not the poll saw a change

    def later():
        time.sleep(0.01)
        flags[0] = flags[1] = 1

    t = threading.Thread(target=later)
    t.start()
    assert _spin.flags_set(flags, 2, int(5e6 * rate), 0)  # set by another thread meanwhile
    t.join()
    assert _spin.flags_set(flags, 2, 0, 0) and not _spin.flags_set(flags, 4, int(100 * rate), 0)


@pytest.mark.parametrize("raw, expected", [("", 100), ("0", 0), (" 250 ", 250)])
def test_spin_setting(monkeypatch, raw, expected):
    from fastnn.backends.numba import config

    monkeypatch.setenv("FASTNN_SPIN_US", raw)
    assert config.spin_us() == expected == (config.SPIN_US_DEFAULT if not raw.strip() else int(raw))


@pytest.mark.parametrize("raw", ["-1", "fast", "1.5", "1000001"])
def test_a_bad_spin_setting_is_named(monkeypatch, raw):
    from fastnn.backends.numba import config

    monkeypatch.setenv("FASTNN_SPIN_US", raw)
    with pytest.raises(ValueError, match=f"FASTNN_SPIN_US must be a non-negative integer.*up to 1000000, got {raw!r}"):
        config.spin_us()


def test_poll_us_is_the_rule_threaded_calls_follow(monkeypatch):
    """``threads.poll_us`` (what ``fastnn info`` shows) and the threads' own set-up agree: the
    setting where x86-64 with 2 usable CPUs or more, else 0; a bad setting raises either way."""
    from fastnn.backends.numba import spin as _spin_mod
    from fastnn.backends.numba import threads

    saved = list(threads._cpus)  # (restored after: _spinning sets it and _spin)
    monkeypatch.setattr(threads, "_spin", threads._spin)
    monkeypatch.setenv("FASTNN_SPIN_US", "40")
    try:
        for available, cpus in ((True, 2), (True, 1), (False, 2)):
            monkeypatch.setattr(_spin_mod, "AVAILABLE", available)
            monkeypatch.setattr(threads, "_usable_cpus", lambda cpus=cpus: cpus)
            threads._spin = None
            on = available and cpus >= 2
            assert threads.poll_us() == (40 if on else 0)
            spinning = threads._spinning()
            assert (spinning is not None) == on and threads._cpus[0] == cpus
            if on:
                assert spinning[0] is _spin_mod and spinning[1] == int(40 * _spin_mod.cycles_per_us())
            monkeypatch.setenv("FASTNN_SPIN_US", "fast")
            with pytest.raises(ValueError, match="FASTNN_SPIN_US"):
                threads.poll_us()
            monkeypatch.setenv("FASTNN_SPIN_US", "40")
    finally:
        threads._cpus[:] = saved
