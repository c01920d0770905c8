"""CS231n's ``fast_layers`` on fastnn: replace ``from cs231n.fast_layers import *`` with
``from fastnn.compat.cs231n import *`` and nothing else changes.

CS231n's arrays are channels-first: ``x`` (N, C, H, W), ``w`` (F, C, HH, WW), ``b`` (F,),
``conv_param = {"stride": s, "pad": p}``, ``pool_param = {"pool_height": ph, "pool_width": pw,
"stride": s}``. Each function checks its arguments in those terms, then runs fastnn's dispatched
kernels (``auto``, or the backend in force) with ``"layout": "NCHW"``, so its results equal
CS231n's naive loops (float64: to 1e-12, the tolerance rule; float32 stays float32). Its
Cython extension (``im2col_cython``), whose setup uses distutils (removed in Python 3.12),
is not needed.

The caches: a convolution's is ``(x, w, b, conv_param, inner)`` (as CS231n's
``conv_forward_im2col``: the inputs, then its own data), a pooling's ``(x, pool_param, inner)``;
the backward functions also take the naive functions' caches ``(x, w, b, conv_param)`` and
``(x, pool_param)`` (they then rerun the forward). Max pooling's gradient goes to every
position equal to the window's maximum, as CS231n's naive and reshape versions route it
(fastnn's ``ties="all"``, the deep-learning course's rule too).

Layout: the numba backend's tiled convolution reads and writes NCHW itself; any other kernel
gets channels-last copies, transposed by fastnn's wrappers on the way in and out.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from .. import activations as _act
from .. import conv as _conv

__all__ = [
    "conv_forward_fast", "conv_backward_fast", "max_pool_forward_fast", "max_pool_backward_fast",
    "conv_forward_naive", "conv_backward_naive", "max_pool_forward_naive", "max_pool_backward_naive",
    "conv_forward_strides", "conv_backward_strides", "conv_forward_im2col", "conv_backward_im2col",
    "max_pool_forward_reshape", "max_pool_backward_reshape", "max_pool_forward_im2col",
    "max_pool_backward_im2col", "relu_forward", "relu_backward",
    "conv_relu_forward", "conv_relu_backward", "conv_relu_pool_forward", "conv_relu_pool_backward",
]


def _array(a: Any, name: str, ndim: int, shape_doc: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc} ({ndim} dimensions), got shape {a.shape}")
    return a


def _param(params: Any, what: str, keys: Tuple[str, ...]) -> dict:
    if not isinstance(params, dict):
        raise TypeError(f"{what} must be a dict with keys {', '.join(keys)}, got {type(params).__name__}")
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(map(repr, missing))} (it needs {', '.join(keys)})")
    return params


# -------------------------------------------------------------------- convolution


def conv_forward_fast(x, w, b, conv_param):
    """Convolution forward (CS231n's ``conv_forward_fast``): cross-correlation of ``x`` with
    the filters ``w`` plus ``b``, zero padding ``conv_param["pad"]``, stride ``conv_param["stride"]``.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        The input.
    w : array_like, shape (F, C, HH, WW)
        The filters.
    b : array_like, shape (F,)
        The biases.
    conv_param : dict
        ``{"stride": s, "pad": p}``, ints (or (h, w) pairs).

    Returns
    -------
    out : numpy.ndarray, shape (N, F, H', W')
        ``H' = 1 + (H + 2 * pad - HH) // stride`` (and W' alike).
    cache : tuple
        ``(x, w, b, conv_param, inner)``, for :func:`conv_backward_fast`.
    """
    x = _array(x, "x", 4, "(N, C, H, W)")
    w = _array(w, "w", 4, "(F, C, HH, WW)")
    b = np.asarray(b)
    _param(conv_param, "conv_param", ("stride", "pad"))
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have shape (F, C, HH, WW) with C = x's {x.shape[1]} channels, got {w.shape}")
    if b.shape != (w.shape[0],):
        raise ValueError(f"b must have shape (F,) = ({w.shape[0]},), got {b.shape}")
    hp = {"stride": conv_param["stride"], "pad": conv_param["pad"], "layout": "NCHW"}
    out, inner = _conv.conv_forward(x, w, b, hp)
    return out, (x, w, b, conv_param, inner)


def conv_backward_fast(dout, cache):
    """Convolution backward (CS231n's ``conv_backward_fast``).

    Parameters
    ----------
    dout : array_like, shape (N, F, H', W')
        The gradient with respect to the forward's ``out``.
    cache : tuple
        The forward's cache: ``(x, w, b, conv_param, inner)``, or the naive one ``(x, w, b, conv_param)``.

    Returns
    -------
    dx : numpy.ndarray, shape (N, C, H, W)
    dw : numpy.ndarray, shape (F, C, HH, WW)
    db : numpy.ndarray, shape (F,)
    """
    if not isinstance(cache, tuple) or len(cache) not in (4, 5):
        raise ValueError("cache must be the (x, w, b, conv_param[, inner]) tuple of a conv forward")
    if len(cache) == 4:
        cache = conv_forward_fast(*cache)[1]
    inner = cache[4]
    dout = _array(dout, "dout", 4, "(N, F, H', W')")
    dx, dw, db = _conv.conv_backward(dout, inner)
    return dx, dw, db.reshape(-1)


# ------------------------------------------------------------------------ pooling


def max_pool_forward_fast(x, pool_param):
    """Max pooling forward (CS231n's ``max_pool_forward_fast``).

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        The input.
    pool_param : dict
        ``{"pool_height": ph, "pool_width": pw, "stride": s}``.

    Returns
    -------
    out : numpy.ndarray, shape (N, C, H', W')
        ``H' = 1 + (H - pool_height) // stride`` (and W' alike).
    cache : tuple
        ``(x, pool_param, inner)``, for :func:`max_pool_backward_fast`.
    """
    x = _array(x, "x", 4, "(N, C, H, W)")
    _param(pool_param, "pool_param", ("pool_height", "pool_width", "stride"))
    hp = {"f": (pool_param["pool_height"], pool_param["pool_width"]), "stride": pool_param["stride"], "layout": "NCHW"}
    out, inner = _conv.pool_forward(x, hp, mode="max")
    return out, (x, pool_param, inner)


def max_pool_backward_fast(dout, cache):
    """Max pooling backward (CS231n's ``max_pool_backward_fast``): each window's gradient goes
    to every position equal to its maximum.

    Parameters
    ----------
    dout : array_like, shape (N, C, H', W')
        The gradient with respect to the forward's ``out``.
    cache : tuple
        The forward's cache: ``(x, pool_param, inner)``, or the naive one ``(x, pool_param)``.

    Returns
    -------
    dx : numpy.ndarray, shape (N, C, H, W)
    """
    if not isinstance(cache, tuple) or len(cache) not in (2, 3):
        raise ValueError("cache must be the (x, pool_param[, inner]) tuple of a max pool forward")
    if len(cache) == 2:
        cache = max_pool_forward_fast(*cache)[1]
    dout = _array(dout, "dout", 4, "(N, C, H', W')")
    return _conv.pool_backward(dout, cache[2], mode="max")


# ---------------------------------------------------------------------- activations


def relu_forward(x):
    """ReLU forward (CS231n's ``relu_forward``): ``out = max(0, x)``, ``cache = x``.

    Parameters
    ----------
    x : array_like
        Any shape.

    Returns
    -------
    out : numpy.ndarray
    cache : numpy.ndarray
    """
    out, _ = _act.relu(x)
    return out, np.asarray(x)


def relu_backward(dout, cache):
    """ReLU backward (CS231n's ``relu_backward``): ``dx = dout`` where ``x > 0``, else 0.

    Parameters
    ----------
    dout : array_like
        The gradient with respect to the forward's ``out``.
    cache : array_like
        ``x``, the forward's cache.

    Returns
    -------
    dx : numpy.ndarray
    """
    return _act.relu_backward(dout, cache)


def conv_relu_forward(x, w, b, conv_param):
    """A convolution then a ReLU (CS231n's ``layer_utils.conv_relu_forward``).

    Parameters
    ----------
    x, w, b, conv_param
        As for :func:`conv_forward_fast`.

    Returns
    -------
    out : numpy.ndarray, shape (N, F, H', W')
    cache : tuple
        ``(conv_cache, relu_cache)``.
    """
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache):
    """Backward of :func:`conv_relu_forward` (CS231n's ``layer_utils.conv_relu_backward``).

    Parameters
    ----------
    dout : array_like, shape (N, F, H', W')
    cache : tuple
        ``(conv_cache, relu_cache)``.

    Returns
    -------
    dx, dw, db : numpy.ndarray
        As :func:`conv_backward_fast`.
    """
    conv_cache, relu_cache = cache
    return conv_backward_fast(relu_backward(dout, relu_cache), conv_cache)


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    """Convolution, ReLU, then max pooling (CS231n's ``layer_utils.conv_relu_pool_forward``).

    Parameters
    ----------
    x, w, b, conv_param
        As for :func:`conv_forward_fast`.
    pool_param : dict
        As for :func:`max_pool_forward_fast`.

    Returns
    -------
    out : numpy.ndarray
    cache : tuple
        ``(conv_cache, relu_cache, pool_cache)``.
    """
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    """Backward of :func:`conv_relu_pool_forward` (CS231n's ``layer_utils.conv_relu_pool_backward``).

    Parameters
    ----------
    dout : array_like
    cache : tuple
        ``(conv_cache, relu_cache, pool_cache)``.

    Returns
    -------
    dx, dw, db : numpy.ndarray
        As :func:`conv_backward_fast`.
    """
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward_fast(dout, pool_cache)
    return conv_backward_fast(relu_backward(ds, relu_cache), conv_cache)


# The other names CS231n has for the same layers (its naive loops, its two fast methods).
conv_forward_naive = conv_forward_strides = conv_forward_im2col = conv_forward_fast
conv_backward_naive = conv_backward_strides = conv_backward_im2col = conv_backward_fast
max_pool_forward_naive = max_pool_forward_reshape = max_pool_forward_im2col = max_pool_forward_fast
max_pool_backward_naive = max_pool_backward_reshape = max_pool_backward_im2col = max_pool_backward_fast
