"""NCHW <-> NHWC copies for the wrappers' ``"layout": "NCHW"`` where the kernel that runs a call
computes in NHWC (the numba backend's tiled convolution reads and writes NCHW itself:
:func:`fastnn._dispatch.channels_first`).

The copies are the numba backend's transposing kernels (``kernels.nchw_to_nhwc``, which pads in
the same pass, and ``kernels.nhwc_to_nchw``): a row of the output at a time from a
cache-resident row of the input, at about a plain copy's speed (in blocks of 8 channels where
the input's channel rows would evict each other from L1: ``tiles.transpose_blocked``); NumPy's copy of a transposed
view strides through one of the two arrays (NHWC to NCHW at a third of a copy's speed). The
images are split between fastnn's worker threads; arrays under ``THREADED_BYTES`` are copied
in the calling thread (the hand-off to the workers costs tens of microseconds).
"""

from __future__ import annotations

import numpy as np

from .backends.numba.config import num_threads
from .backends.numba.threads import run_chunks

__all__ = ["to_nhwc", "to_nhwc_padded", "to_nchw", "hwck", "kchw"]

THREADED_BYTES = 1 << 20


def _kernels():
    from .backends.numba import kernels  # (compiled on first use: not at import)

    return kernels


def _tiles():
    from .backends.numba import tiles

    return tiles


def _chunks(out: np.ndarray) -> int:
    return num_threads() if out.nbytes >= THREADED_BYTES else 1


def to_nhwc(X: np.ndarray, dtype) -> np.ndarray:
    """(m, C, H, W) -> C-contiguous (m, H, W, C) of ``dtype``."""
    return to_nhwc_padded(X, dtype, 0, 0, 0, 0)


def to_nhwc_padded(X: np.ndarray, dtype, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """(m, C, H, W) -> C-contiguous (m, top + H + bottom, left + W + right, C) of ``dtype``, zeros
    around: the padded input a kernel would copy again, made in the same pass as the transpose."""
    m, C, H, W = X.shape
    src = np.ascontiguousarray(X, dtype=dtype)
    out = np.empty((m, top + H + bottom, left + W + right, C), dtype=dtype)
    blocked = _tiles().transpose_blocked(C, H * W * out.itemsize)
    run_chunks(_kernels().nchw_to_nhwc, (src, out, top, left, blocked), _chunks(out))
    return out


def to_nchw(X: np.ndarray) -> np.ndarray:
    """C-contiguous (m, H, W, C) -> C-contiguous (m, C, H, W)."""
    m, H, W, C = X.shape
    out = np.empty((m, C, H, W), dtype=X.dtype)
    run_chunks(_kernels().nhwc_to_nchw, (np.ascontiguousarray(X), out), _chunks(out))
    return out


def hwck(W: np.ndarray, dtype) -> np.ndarray:
    """PyTorch's filters (K, C_g, fh, fw) -> C-contiguous (fh, fw, C_g, K) of ``dtype``."""
    K, Cg, fh, fw = W.shape
    out = np.empty((fh, fw, Cg, K), dtype=dtype)
    run_chunks(_kernels().kchw_to_hwck, (np.ascontiguousarray(W, dtype=dtype), out), _chunks(out))
    return out


def kchw(W: np.ndarray) -> np.ndarray:
    """C-contiguous (fh, fw, C_g, K) -> C-contiguous (K, C_g, fh, fw) (dW back to PyTorch's layout)."""
    fh, fw, Cg, K = W.shape
    out = np.empty((K, Cg, fh, fw), dtype=W.dtype)
    run_chunks(_kernels().hwck_to_kchw, (np.ascontiguousarray(W), out), _chunks(out))
    return out
