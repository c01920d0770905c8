"""Convolution and pooling with the course's API (NHWC, ``(output, cache)``).

Each public function checks its arguments once (:mod:`fastnn._params`), allocates
the outputs in the computed dtype, and hands C-contiguous arrays to the kernel the
registry picks (:mod:`fastnn._dispatch`). Inputs are never modified.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np

from . import _params as P
from ._dispatch import resolve

__all__ = [
    "zero_pad",
    "conv_single_step",
    "conv_forward",
    "conv_backward",
    "pool_forward",
    "pool_backward",
    "create_mask_from_window",
    "distribute_value",
]

_empty = np.empty


def _no_kernel(*args) -> None:
    """What an empty batch runs instead of a kernel: its outputs have no elements to fill."""


def _empty_batch(op: str, backend: Optional[str]):
    """The kernel of a call on a batch of no examples (``p.m == 0``): nothing, once the backend
    choice is checked as for any call (the planner is not asked: there is nothing to time).
    The one place that handles an empty batch, so that no backend has to."""
    resolve(op, backend)
    return _no_kernel


def zero_pad(X, pad, *, backend: Optional[str] = None) -> np.ndarray:
    """Pad the height and width of a batch ``X`` (m, n_H, n_W, n_C) with zeros.

    ``pad`` is an int or an (h, w) pair. Returns (m, n_H + 2 pad_h, n_W + 2 pad_w, n_C).
    """
    X = P.as_array(X, "X")
    p = P.pad_params(X, pad)
    out = _empty((p.m, p.Hp, p.Wp, p.C), dtype=p.dtype)
    kernel = resolve("zero_pad", backend) if p.m else _empty_batch("zero_pad", backend)
    kernel(p, P.as_kernel_input(X, p.dtype), out)
    return out


def conv_single_step(a_slice_prev, W, b) -> np.floating:
    """One filter on one window: ``sum(a_slice_prev * W) + b``.

    Parameters
    ----------
    a_slice_prev : array_like, shape (f, f, n_C_prev)
        One window of the (padded) input.
    W : array_like, shape (f, f, n_C_prev)
        The filter's weights, the shape of ``a_slice_prev``.
    b : array_like, one value (shape (1, 1, 1))
        The filter's bias.

    Returns
    -------
    Z : numpy.float64 or numpy.float32
        A NumPy scalar of the computed dtype (float64 for float64, integer or mixed inputs,
        float32 when every input is float32), as the course's ``np.sum(s) + float(b)`` is.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import conv_single_step
    >>> Z = conv_single_step(np.ones((2, 2, 1)), np.full((2, 2, 1), 0.5), np.array([[[1.0]]]))
    >>> float(Z), type(Z).__name__
    (3.0, 'float64')
    """
    a = P.as_array(a_slice_prev, "a_slice_prev")
    W = P.as_array(W, "W")
    b = P.as_array(b, "b")
    if a.shape != W.shape:
        raise ValueError(f"a_slice_prev and W must have the same shape, got {a.shape} and {W.shape}")
    if b.size != 1:
        raise ValueError(f"b must hold one value (shape (1, 1, 1)), got shape {b.shape}")
    dt = P.compute_dtype(a, W, b)
    s = np.multiply(a, W, dtype=dt)
    return dt.type(np.sum(s, dtype=dt) + b.reshape(()).astype(dt))


def conv_forward(A_prev, W, b, hparameters, *, backend: Optional[str] = None) -> Tuple[np.ndarray, tuple]:
    """Convolution forward pass.

    A_prev (m, n_H_prev, n_W_prev, n_C_prev), W (f_h, f_w, n_C_prev, n_C), b (1, 1, 1, n_C),
    hparameters {"stride": s, "pad": p} with s and p ints or (h, w) pairs.
    Returns Z (m, n_H, n_W, n_C) and cache = (A_prev, W, b, hparameters).
    """
    A_prev = P.as_array(A_prev, "A_prev")
    W = P.as_array(W, "W")
    b = P.as_array(b, "b")
    p = P.conv_params(A_prev, W, b, hparameters)
    dt = p.dtype
    Z = _empty((p.m, p.Ho, p.Wo, p.K), dtype=dt)
    kernel = resolve("conv_forward", backend, p) if p.m else _empty_batch("conv_forward", backend)
    kernel(
        p, P.as_kernel_input(A_prev, dt), P.as_kernel_input(W, dt), P.as_kernel_input(b, dt).reshape(p.K), Z
    )
    return Z, (A_prev, W, b, hparameters)


def _unpack_cache(cache: Any, n: int, names: str) -> tuple:
    if not isinstance(cache, (tuple, list)) or len(cache) != n:
        got = f"{type(cache).__name__} of length {len(cache)}" if isinstance(cache, (tuple, list)) else type(cache).__name__
        raise ValueError(f"cache must be the tuple {names} returned by the forward pass, got {got}")
    return tuple(cache)


def conv_backward(dZ, cache, *, backend: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convolution backward pass: (dA_prev, dW, db) with the shapes of (A_prev, W, b)."""
    A_prev, W, b, hparameters = _unpack_cache(cache, 4, "(A_prev, W, b, hparameters)")
    A_prev = P.as_array(A_prev, "cache's A_prev")
    W = P.as_array(W, "cache's W")
    b = P.as_array(b, "cache's b")
    dZ = P.as_array(dZ, "dZ")
    p = P.conv_params(A_prev, W, b, hparameters)
    if dZ.shape != (p.m, p.Ho, p.Wo, p.K):
        raise ValueError(
            f"dZ must have the shape of the forward output {(p.m, p.Ho, p.Wo, p.K)}, got {dZ.shape}"
        )
    dt = P.compute_dtype(A_prev, W, b, dZ)
    if dt != p.dtype:
        p = p._replace(dtype=dt)
    dA_prev = _empty(A_prev.shape, dtype=dt)
    dW = _empty(W.shape, dtype=dt)
    db = _empty(b.shape, dtype=dt)
    if p.m:
        kernel = resolve("conv_backward", backend, p)
    else:  # no examples: dA_prev is empty, and the sums over them, dW and db, are zero
        kernel = _empty_batch("conv_backward", backend)
        dW.fill(0)
        db.fill(0)
    kernel(
        p, P.as_kernel_input(A_prev, dt), P.as_kernel_input(W, dt), P.as_kernel_input(dZ, dt),
        dA_prev, dW, db.reshape(p.K),
    )
    return dA_prev, dW, db


def pool_forward(A_prev, hparameters, mode: str = "max", *, backend: Optional[str] = None) -> Tuple[np.ndarray, tuple]:
    """Pooling forward pass.

    hparameters {"f": f, "stride": s} (ints or (h, w) pairs; optional "pad", at most f // 2,
    padding with -inf for max and zeros for average, which count in the divisor).
    mode is "max" or "average" ("avg"). Returns A and cache = (A_prev, hparameters).
    """
    A_prev = P.as_array(A_prev, "A_prev")
    p = P.pool_params(A_prev, hparameters, mode)
    A = _empty((p.m, p.Ho, p.Wo, p.C), dtype=p.dtype)
    kernel = resolve("pool_forward", backend, p) if p.m else _empty_batch("pool_forward", backend)
    kernel(p, P.as_kernel_input(A_prev, p.dtype), A)
    return A, (A_prev, hparameters)


def pool_backward(dA, cache, mode: str = "max", *, ties: str = "all", backend: Optional[str] = None) -> np.ndarray:
    """Pooling backward pass: dA_prev with the shape of A_prev.

    For max pooling, ``ties="all"`` (default, the course's rule) gives the gradient to every
    position equal to the window's maximum; ``ties="first"`` gives it to the first maximum
    in row-major window order only, as PyTorch does.
    """
    A_prev, hparameters = _unpack_cache(cache, 2, "(A_prev, hparameters)")
    A_prev = P.as_array(A_prev, "cache's A_prev")
    dA = P.as_array(dA, "dA")
    p = P.pool_params(A_prev, hparameters, mode, ties)
    if dA.shape != (p.m, p.Ho, p.Wo, p.C):
        raise ValueError(
            f"dA must have the shape of the forward output {(p.m, p.Ho, p.Wo, p.C)}, got {dA.shape}"
        )
    dt = P.compute_dtype(A_prev, dA)
    if dt != p.dtype:
        p = p._replace(dtype=dt)
    dA_prev = _empty(A_prev.shape, dtype=dt)
    kernel = resolve("pool_backward", backend, p) if p.m else _empty_batch("pool_backward", backend)
    kernel(p, P.as_kernel_input(A_prev, dt), P.as_kernel_input(dA, dt), dA_prev)
    return dA_prev


def create_mask_from_window(x) -> np.ndarray:
    """Boolean mask of the positions equal to the maximum of ``x`` (the course's rule)."""
    x = P.as_array(x, "x")
    return x == np.max(x)


def distribute_value(dz, shape) -> np.ndarray:
    """An array of ``shape`` (n_H, n_W) whose entries share ``dz`` equally."""
    n_H, n_W = P._pair(shape if isinstance(shape, numbers.Integral) else tuple(shape), "shape", 1)
    dz_arr = P.as_array(dz, "dz")
    if dz_arr.size != 1:
        raise ValueError(f"dz must be a scalar, got shape {dz_arr.shape}")
    dt = P.compute_dtype(dz_arr)
    return np.full((n_H, n_W), dz_arr.reshape(()) / (n_H * n_W), dtype=dt)
