"""Bounded spin-waits for fastnn's threads (:mod:`.threads`), in ``nogil`` kernels.

On the 2-vCPU machine fastnn is measured on, waking a thread that blocked (on a lock, a
queue or the GIL) takes about 20 us: a chunk's hand-off cost two or three such wake-ups, about
75 us a threaded call over its kernels' own time (30 us polling: docs/bench/2026-12-07-spin.md).
A thread that polls a flag instead, without the GIL, sees it change within a fraction of a
microsecond. These kernels poll for a bounded time (in the CPU's time-stamp counter), then the
caller falls back to blocking.

x86-64 only (``AVAILABLE``): ``llvm.readcyclecounter`` is the constant-rate ``rdtsc`` there;
elsewhere it may read a counter that traps in user space, so no kernel here is ever called
and :mod:`.threads` blocks as before.
"""

from __future__ import annotations

import platform
import time

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ..._jit import inline, kernel

__all__ = ["AVAILABLE", "cycles_per_us", "flag_changes", "flags_set"]

AVAILABLE = platform.machine().lower() in ("x86_64", "amd64")


@intrinsic
def _load_acquire(typingctx, arr, idx):
    """arr[idx] of an int64 array, read with an atomic acquire load (never hoisted out of a
    loop, and ordered before the reads that follow it)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1
            and isinstance(idx, types.Integer)):
        return None  # (a typing error: flags are 1-D int64 arrays)
    sig = types.int64(arr, idx)

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]])
        # (the loaded type given: an opaque pointer, as llvmlite will have, does not carry it)
        return builder.load_atomic(ptr, ordering="acquire", align=8, typ=context.get_value_type(types.int64))

    return sig, codegen


@intrinsic
def _store_release(typingctx, arr, idx, val):
    """arr[idx] = val in an int64 array, an atomic release store (the writes before it are
    seen by a thread that sees it)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1
            and isinstance(idx, types.Integer) and isinstance(val, types.Integer)):
        return None  # (a typing error: flags are 1-D int64 arrays)
    sig = types.void(arr, idx, val)

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]])
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, ptr, ordering="release", align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _cycles(typingctx):
    """The time-stamp counter (``rdtsc`` on x86-64)."""
    sig = types.int64()

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


@intrinsic
def _pause(typingctx):
    """The spin-wait hint (``pause``): the loop yields the core's resources to a sibling
    hyper-thread and leaves it without a memory-order mis-speculation when the flag changes."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                            "llvm.x86.sse2.pause")
        builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@kernel
def _tsc():
    return _cycles()


@inline
def _poll(flags, i, seen, t0, limit):
    """Poll flags[i] while it equals ``seen``, until ``limit`` ticks after ``t0``: whether it changed."""
    while _load_acquire(flags, i) == seen:
        _pause()
        if _cycles() - t0 > limit:
            return False
    return True


@inline
def _linger(ticks):
    t1 = _cycles()
    while _cycles() - t1 < ticks:
        _pause()


@kernel
def flag_changes(flags, i, seen, limit, linger, mark, j):
    """Set mark[j] to 1 (unless j < 0), then poll flags[i] while it equals ``seen``, for at most
    ``limit`` counter ticks; once it changes, go on polling for ``linger`` ticks (so that the
    thread that changed it can release the GIL before this one asks for it back). Whether it
    changed. The mark is set here, without the GIL, so that the thread polling for it (a caller
    waiting for this worker's chunk) finds the GIL free when it sees it."""
    if j >= 0:
        _store_release(mark, j, 1)
    if not _poll(flags, i, seen, _cycles(), limit):
        return False
    _linger(linger)
    return True


@kernel
def flags_set(flags, n, limit, linger):
    """Poll until flags[0 .. n-1] are all non-zero, for at most ``limit`` counter ticks, then
    wait ``linger`` ticks more (as :func:`flag_changes`; :mod:`.threads` waits none: a polling
    worker sets these flags without the GIL). Whether they all were."""
    t0 = _cycles()
    for i in range(n):
        if not _poll(flags, i, 0, t0, limit):
            return False
    _linger(linger)
    return True


_rate = None


def cycles_per_us() -> float:
    """Time-stamp counter ticks per microsecond, measured once (over 2 ms of sleep)."""
    global _rate
    if _rate is None:
        c0, t0 = _tsc(), time.perf_counter()
        time.sleep(0.002)
        c1, t1 = _tsc(), time.perf_counter()
        _rate = max((c1 - c0) / ((t1 - t0) * 1e6), 1.0)
    return _rate
