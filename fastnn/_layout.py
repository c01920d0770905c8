"""NCHW <-> NHWC copies for the wrappers' ``"layout": "NCHW"`` (the kernels compute in NHWC).

A transposing copy runs at a third to a fifth of a plain copy's speed in NumPy's one thread
(its inner loop strides through one of the two arrays), and for a small-channel convolution it
is a good share of the call, so the images are split between fastnn's worker threads: NumPy
releases the GIL in its copy loops, so the halves run side by side. Arrays under
``THREADED_BYTES`` are copied in the calling thread (the hand-off to the workers costs tens
of microseconds).
"""

from __future__ import annotations

import numpy as np

from .backends.numba.config import num_threads
from .backends.numba.threads import run_chunks

__all__ = ["to_nhwc", "to_nhwc_padded", "to_nchw", "hwck"]

THREADED_BYTES = 1 << 20


def _copy_images(dst, src, chunk, nchunks):
    m = dst.shape[0]
    a, b = chunk * m // nchunks, (chunk + 1) * m // nchunks
    if b > a:
        np.copyto(dst[a:b], src[a:b])


def _transposed(X: np.ndarray, axes, dtype) -> np.ndarray:
    src = X.transpose(axes)
    out = np.empty(src.shape, dtype=dtype)
    n = num_threads() if out.nbytes >= THREADED_BYTES else 1
    run_chunks(_copy_images, (out, src), max(1, min(n, out.shape[0])))
    return out


def to_nhwc(X: np.ndarray, dtype) -> np.ndarray:
    """(m, C, H, W) -> C-contiguous (m, H, W, C) of ``dtype``."""
    return _transposed(X, (0, 2, 3, 1), dtype)


def _copy_padded(dst, src, top, left, chunk, nchunks):
    m, Hp, Wp, _ = dst.shape
    _, H, W, _ = src.shape
    a, b = chunk * m // nchunks, (chunk + 1) * m // nchunks
    if b > a:
        d = dst[a:b]
        d[:, :top] = 0
        d[:, top + H:] = 0
        d[:, top:top + H, :left] = 0
        d[:, top:top + H, left + W:] = 0
        np.copyto(d[:, top:top + H, left:left + W], src[a:b])


def to_nhwc_padded(X: np.ndarray, dtype, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """(m, C, H, W) -> C-contiguous (m, top + H + bottom, left + W + right, C) of ``dtype``, zeros
    around: the padded input a kernel would copy again, made in the same pass as the transpose."""
    src = X.transpose(0, 2, 3, 1)
    m, H, W, C = src.shape
    out = np.empty((m, top + H + bottom, left + W + right, C), dtype=dtype)
    n = num_threads() if out.nbytes >= THREADED_BYTES else 1
    run_chunks(_copy_padded, (out, src, top, left), max(1, min(n, m)))
    return out


def to_nchw(X: np.ndarray) -> np.ndarray:
    """(m, H, W, C) -> C-contiguous (m, C, H, W)."""
    return _transposed(X, (0, 3, 1, 2), X.dtype)


def hwck(W: np.ndarray, dtype) -> np.ndarray:
    """PyTorch's filters (K, C_g, fh, fw) -> C-contiguous (fh, fw, C_g, K)."""
    return np.ascontiguousarray(W.transpose(2, 3, 1, 0), dtype=dtype)
