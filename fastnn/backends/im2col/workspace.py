"""The im2col backend's workspace: one reusable per-thread buffer for column matrices.

Column buffers live in a per-thread arena (:class:`threading.local`) that is reused across
calls and grows only up to the workspace limit (default 256 MiB; set it with
:func:`set_workspace_limit` or the environment variable ``FASTNN_IM2COL_WORKSPACE_MB``).
Callers plan their chunks so that everything they take from the arena in one chunk fits the
limit; the arena never holds more than the limit unless what a single output pixel needs is
larger (its window, and in the convolution's forward W and b, which stay in the arena for
the whole call; then that minimum is used).
"""

from __future__ import annotations

import math
import os
import threading
from typing import Tuple

import numpy as np

__all__ = [
    "DEFAULT_WORKSPACE_MB",
    "ENV_WORKSPACE",
    "set_workspace_limit",
    "get_workspace_limit",
    "release_workspace",
    "workspace_nbytes",
    "Arena",
    "arena",
    "region_bytes",
]

DEFAULT_WORKSPACE_MB = 256
ENV_WORKSPACE = "FASTNN_IM2COL_WORKSPACE_MB"
_ALIGN = 64  # bytes: every region taken from the arena starts on a cache line


def _limit_from_env() -> int:
    raw = os.environ.get(ENV_WORKSPACE)
    if raw is None or raw.strip() == "":
        return DEFAULT_WORKSPACE_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_WORKSPACE} must be a number of MiB, got {raw!r}") from None
    if not mb > 0:
        raise ValueError(f"{ENV_WORKSPACE} must be positive, got {raw!r}")
    return int(mb * (1 << 20))


_limit = _limit_from_env()
_local = threading.local()


def set_workspace_limit(nbytes: int) -> int:
    """Set the most bytes one thread's column workspace may hold; returns the previous limit.

    Calls split their batch into chunks whose column buffers fit this limit. A thread's
    workspace larger than the new limit is released on its next use (this thread's at once).
    """
    global _limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)):
        raise TypeError(f"workspace limit must be an int number of bytes, got {nbytes!r}")
    if nbytes < 1:
        raise ValueError(f"workspace limit must be positive, got {nbytes}")
    old, _limit = _limit, int(nbytes)
    a = getattr(_local, "arena", None)
    if a is not None and a.capacity > _limit:
        a.release()
    return old


def get_workspace_limit() -> int:
    """The workspace limit in bytes (per thread)."""
    return _limit


def release_workspace() -> None:
    """Free this thread's workspace (it is reallocated on the next call)."""
    a = getattr(_local, "arena", None)
    if a is not None:
        a.release()


def workspace_nbytes() -> int:
    """Bytes this thread's workspace holds now."""
    a = getattr(_local, "arena", None)
    return 0 if a is None else a.capacity


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


class Arena:
    """A reusable byte buffer carved into typed regions, one call (chunk) at a time.

    ``reserve(total)`` makes sure ``total`` bytes are available (growing the buffer,
    never beyond need); ``take(shape, dtype)`` hands out the next aligned region.
    """

    __slots__ = ("_buf", "_pos", "_base")

    def __init__(self) -> None:
        self._set(np.empty(0, dtype=np.uint8))

    def _set(self, buf: np.ndarray) -> None:
        self._buf = buf
        self._base = buf.ctypes.data  # (reading .ctypes costs microseconds: once per buffer)
        self._pos = 0

    @property
    def capacity(self) -> int:
        return self._buf.nbytes

    def release(self) -> None:
        self._set(np.empty(0, dtype=np.uint8))

    def reserve(self, nbytes: int) -> None:
        self._pos = 0
        need = nbytes + _ALIGN
        if self._buf.nbytes < need or self._buf.nbytes > max(_limit, need):
            self._set(np.empty(0, dtype=np.uint8))  # free the old one first: no double peak
            self._set(np.empty(need, dtype=np.uint8))

    @property
    def pos(self) -> int:
        """Where the next region starts (for :meth:`rewind`)."""
        return self._pos

    def rewind(self, pos: int) -> None:
        """Hand out regions from ``pos`` again (regions taken before it stay valid)."""
        self._pos = pos

    def take(self, shape: Tuple[int, ...], dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = math.prod(shape) * dtype.itemsize
        start = self._pos + (-(self._base + self._pos)) % _ALIGN
        end = start + n
        if end > self._buf.nbytes:
            raise AssertionError("im2col workspace overrun: the chunk plan under-counted")  # pragma: no cover
        self._pos = end
        return self._buf[start:end].view(dtype).reshape(shape)


def arena() -> Arena:
    """This thread's arena (created on first use)."""
    a = getattr(_local, "arena", None)
    if a is None:
        a = _local.arena = Arena()
    return a


def region_bytes(shape: Tuple[int, ...], itemsize: int) -> int:
    """Bytes :meth:`Arena.take` may use for a region (with its alignment slack)."""
    n = itemsize
    for s in shape:
        n *= s
    return _aligned(n) + _ALIGN
