"""Convolution and pooling with the course's API (NHWC, ``(output, cache)``).

Each public function checks its arguments once (:mod:`fastnn._params`), allocates
the outputs in the computed dtype, and hands C-contiguous arrays to the kernel the
registry picks (:mod:`fastnn._dispatch`). Inputs are never modified.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np

from . import _layout, _lower
from . import _params as P
from ._dispatch import channels_first, resolve

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


# NCHW arrays (``hparameters["layout"] == "NCHW"``): a kernel that declares ``channels_first``
# gets NHWC-shaped views of them (fastnn._dispatch.channels_first); any other reaches them as NHWC
# copies, and its results go back as NCHW copies (fastnn._layout).
_nhwc, _nchw, _hwck = _layout.to_nhwc, _layout.to_nchw, _layout.hwck


def zero_pad(X, pad, *, backend: Optional[str] = None) -> np.ndarray:
    """Pad the height and width of a batch of images with zeros.

    Parameters
    ----------
    X : array_like, shape (m, n_H, n_W, n_C)
        The batch, NHWC.
    pad : int or (int, int)
        Zeros added on each side: the same on all four, or ``(pad_h, pad_w)`` (top and bottom,
        left and right). Must be >= 0.
    backend : str, optional
        The backend to run on, a name from :func:`fastnn.available_backends`. Default: the
        one in force (``with use_backend(...)``, :func:`fastnn.set_backend`,
        ``$FASTNN_BACKEND``, else ``"auto"``).

    Returns
    -------
    X_pad : numpy.ndarray, shape (m, n_H + 2 pad_h, n_W + 2 pad_w, n_C)
        The padded batch, in ``X``'s float dtype (float64 for integer input).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import zero_pad
    >>> x = np.ones((4, 3, 3, 2))
    >>> x_pad = zero_pad(x, 2)
    >>> x_pad.shape
    (4, 7, 7, 2)
    >>> float(x_pad[1, 0, 0, 0]), float(x_pad[1, 2, 2, 0])
    (0.0, 1.0)
    >>> zero_pad(x, (1, 0)).shape
    (4, 5, 3, 2)
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
    """Convolution forward pass over a batch (the course's ``conv_forward``).

    Parameters
    ----------
    A_prev : array_like, shape (m, n_H_prev, n_W_prev, n_C_prev)
        The previous layer's activations, NHWC (``(m, n_C_prev, n_H_prev, n_W_prev)`` with
        ``"layout": "NCHW"``).
    W : array_like, shape (f, f, n_C_prev, n_C)
        The filters; non-square ``(f_h, f_w, n_C_prev // groups, n_C)`` also works (NCHW:
        PyTorch's ``(n_C, n_C_prev // groups, f_h, f_w)``).
    b : array_like, shape (1, 1, 1, n_C)
        One bias per filter (shape ``(n_C,)`` also works; NCHW: ``(n_C,)`` or ``(1, n_C, 1, 1)``).
    hparameters : dict
        ``{"stride": s, "pad": p}``, the course's: each an int or an ``(h, w)`` pair, stride
        >= 1, pad >= 0. Beyond the course, ``"pad"`` may also be ``((top, bottom), (left,
        right))``, ``"valid"`` (0) or ``"same"`` (TensorFlow's rule: ``ceil(n / stride)``
        outputs, an odd total padding's extra row/column at the bottom/right), and optional
        keys are ``"dilation"`` (int or pair, default 1: taps ``dilation`` apart, PyTorch's
        meaning), ``"groups"`` (default 1; dividing both channel counts: output channel k
        reads input group ``k // (n_C // groups)``; ``groups = n_C_prev`` is depthwise) and
        ``"layout"`` (``"NHWC"``, default, or ``"NCHW"``: arrays channels-first, results too).
    backend : str, optional
        The backend to run on, a name from :func:`fastnn.available_backends`. Default: the
        one in force (``with use_backend(...)``, :func:`fastnn.set_backend`,
        ``$FASTNN_BACKEND``, else ``"auto"``).

    Returns
    -------
    Z : numpy.ndarray, shape (m, n_H, n_W, n_C)
        The output, ``n_H = (n_H_prev + 2 pad - f) // stride + 1`` (likewise ``n_W``; with
        dilation d, ``f`` counts as ``(f - 1) d + 1``), in the computed dtype (float32 for
        float32 inputs, float64 for float64 or integers); NCHW in, NCHW out.
    cache : tuple
        ``(A_prev, W, b, hparameters)``, the arguments as passed, for :func:`conv_backward`.

    Raises
    ------
    ValueError
        A shape or hyper-parameter that does not fit (the message names the argument).
    TypeError
        A complex or non-numeric array, or hparameters that is not a dict.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import conv_forward
    >>> np.random.seed(1)  # the course's example
    >>> A_prev = np.random.randn(10, 4, 4, 3)
    >>> W = np.random.randn(2, 2, 3, 8)
    >>> b = np.random.randn(1, 1, 1, 8)
    >>> Z, cache = conv_forward(A_prev, W, b, {"pad": 2, "stride": 2})
    >>> Z.shape
    (10, 4, 4, 8)
    >>> print(f"Z's mean = {np.mean(Z):.10f}")
    Z's mean = 0.0489952035
    >>> cache[0] is A_prev
    True

    Depthwise and dilated, padded "same", on channels-first arrays:

    >>> x = np.random.randn(2, 16, 9, 9)                 # (m, C, H, W)
    >>> w = np.random.randn(16, 1, 3, 3)                 # (K, C // groups, f_h, f_w)
    >>> hp = {"stride": 1, "pad": "same", "dilation": 2, "groups": 16, "layout": "NCHW"}
    >>> conv_forward(x, w, np.zeros(16), hp)[0].shape
    (2, 16, 9, 9)
    """
    A_prev = P.as_array(A_prev, "A_prev")
    W = P.as_array(W, "W")
    b = P.as_array(b, "b")
    p = P.conv_params(A_prev, W, b, hparameters)
    dt = p.dtype
    bk = P.as_kernel_input(b, dt).reshape(p.K)
    if p.layout == "NCHW":
        if not p.m:
            _empty_batch("conv_forward", backend)
            return _empty((0, p.K, p.Ho, p.Wo), dtype=dt), (A_prev, W, b, hparameters)
        kernel = resolve("conv_forward", backend, p)
        if channels_first(kernel, p):  # the kernel reads and writes NCHW itself (through views)
            Z = _empty((p.m, p.K, p.Ho, p.Wo), dtype=dt)
            kernel(p, P.as_kernel_input(A_prev, dt).transpose(0, 2, 3, 1), P.as_kernel_input(W, dt).transpose(2, 3, 1, 0),
                   bk, Z.transpose(0, 2, 3, 1))
            return Z, (A_prev, W, b, hparameters)
        Z = _empty((p.m, p.Ho, p.Wo, p.K), dtype=dt)
        if p.ph or p.pb or p.pw or p.pr:
            # transposed into a padded buffer: a padding kernel's own copy of the input is this one
            # (the unpadded NHWC call runs on the kernel chosen for this call's key)
            q = p._replace(H=p.Hp, W=p.Wp, ph=0, pb=0, pw=0, pr=0, layout="NHWC")
            _lower.conv_forward(q, backend, _layout.to_nhwc_padded(A_prev, dt, p.ph, p.pb, p.pw, p.pr),
                                _hwck(W, dt), bk, Z, kernel)
        else:
            _lower.conv_forward(p, backend, _nhwc(A_prev, dt), _hwck(W, dt), bk, Z, kernel)
        return _nchw(Z), (A_prev, W, b, hparameters)
    Z = _empty((p.m, p.Ho, p.Wo, p.K), dtype=dt)
    if p.m:
        _lower.conv_forward(p, backend, P.as_kernel_input(A_prev, dt), P.as_kernel_input(W, dt), bk, Z)
    else:
        _empty_batch("conv_forward", backend)
    return Z, (A_prev, W, b, hparameters)


def _unpack_cache(cache: Any, n: int, names: str) -> tuple:
    if not isinstance(cache, (tuple, list)) or len(cache) != n:
        got = f"{type(cache).__name__} of length {len(cache)}" if isinstance(cache, (tuple, list)) else type(cache).__name__
        raise ValueError(f"cache must be the tuple {names} returned by the forward pass, got {got}")
    return tuple(cache)


def conv_backward(dZ, cache, *, backend: Optional[str] = None,
                  input_grad: bool = True) -> Tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Convolution backward pass (the course's ``conv_backward``).

    Parameters
    ----------
    dZ : array_like, shape (m, n_H, n_W, n_C)
        The gradient of the cost with respect to :func:`conv_forward`'s output ``Z`` (NCHW
        when the cache's hparameters say ``"layout": "NCHW"``).
    cache : tuple
        ``(A_prev, W, b, hparameters)``, the cache :func:`conv_forward` returned.
    backend : str, optional
        The backend to run on, a name from :func:`fastnn.available_backends`. Default: the
        one in force (``with use_backend(...)``, :func:`fastnn.set_backend`,
        ``$FASTNN_BACKEND``, else ``"auto"``).
    input_grad : bool, optional
        ``False``: skip ``dA_prev`` (returned as ``None``), as for a network's first layer,
        whose input needs no gradient (PyTorch's ``requires_grad=False``): dW and db come
        out the same, in less time. Default ``True``.

    Returns
    -------
    dA_prev : numpy.ndarray, shape of A_prev, or None
        The gradient with respect to ``A_prev`` (``None`` with ``input_grad=False``); every
        gradient comes back in the layout of its input.
    dW : numpy.ndarray, shape of W
        The gradient with respect to ``W`` (summed over the batch).
    db : numpy.ndarray, shape of b
        The gradient with respect to ``b`` (summed over the batch).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import conv_forward, conv_backward
    >>> np.random.seed(1)
    >>> A_prev, W, b = np.random.randn(10, 4, 4, 3), np.random.randn(2, 2, 3, 8), np.random.randn(1, 1, 1, 8)
    >>> Z, cache = conv_forward(A_prev, W, b, {"pad": 2, "stride": 2})
    >>> dA_prev, dW, db = conv_backward(Z, cache)
    >>> dA_prev.shape, dW.shape, db.shape
    ((10, 4, 4, 3), (2, 2, 3, 8), (1, 1, 1, 8))
    >>> print(f"dA_mean = {np.mean(dA_prev):.8f}, dW_mean = {np.mean(dW):.8f}, db_mean = {np.mean(db):.8f}")
    dA_mean = 1.45243778, dW_mean = 1.72699146, db_mean = 7.83923256
    """
    A_prev, W, b, hparameters = _unpack_cache(cache, 4, "(A_prev, W, b, hparameters)")
    A_prev = P.as_array(A_prev, "cache's A_prev")
    W = P.as_array(W, "cache's W")
    b = P.as_array(b, "cache's b")
    dZ = P.as_array(dZ, "dZ")
    p = P.conv_params(A_prev, W, b, hparameters)
    nchw = p.layout == "NCHW"
    z_shape = (p.m, p.K, p.Ho, p.Wo) if nchw else (p.m, p.Ho, p.Wo, p.K)
    if dZ.shape != z_shape:
        raise ValueError(f"dZ must have the shape of the forward output {z_shape}, got {dZ.shape}")
    dt = P.compute_dtype(A_prev, W, b, dZ)
    if dt != p.dtype:
        p = p._replace(dtype=dt)
    if not isinstance(input_grad, bool):
        raise TypeError(f"input_grad must be True or False, got {type(input_grad).__name__}")
    a_shape, w_shape, _ = P.conv_shapes(p)
    dA_prev = None  # (allocated below, in the layout the kernel fills)
    dW = _empty(w_shape, dtype=dt)
    db = _empty(b.shape, dtype=dt)
    if not p.m:  # no examples: dA_prev is empty, and the sums over them, dW and db, are zero
        dA_prev = _empty(a_shape, dtype=dt) if input_grad else None
        _empty_batch("conv_backward", backend)
        dW.fill(0)
        db.fill(0)
    elif nchw:
        kernel = resolve("conv_backward", backend, p)
        if channels_first(kernel, p):  # the kernel reads and writes NCHW itself (through views)
            dA_prev = _empty((p.m, p.C, p.H, p.W), dtype=dt) if input_grad else None
            _lower.call_backward(kernel, p, P.as_kernel_input(A_prev, dt).transpose(0, 2, 3, 1),
                                 P.as_kernel_input(W, dt).transpose(2, 3, 1, 0),
                                 P.as_kernel_input(dZ, dt).transpose(0, 2, 3, 1),
                                 None if dA_prev is None else dA_prev.transpose(0, 2, 3, 1), dW, db.reshape(p.K))
            return dA_prev, _layout.kchw(dW), db
        dA_prev = _empty(a_shape, dtype=dt) if input_grad else None
        _lower.conv_backward(p, backend, _nhwc(A_prev, dt), _hwck(W, dt), _nhwc(dZ, dt), dA_prev, dW,
                             db.reshape(p.K), kernel)
    else:
        dA_prev = _empty(a_shape, dtype=dt) if input_grad else None
        _lower.conv_backward(p, backend, P.as_kernel_input(A_prev, dt), P.as_kernel_input(W, dt),
                             P.as_kernel_input(dZ, dt), dA_prev, dW, db.reshape(p.K))
    if nchw:
        return (None if dA_prev is None else _nchw(dA_prev)), _layout.kchw(dW), db
    return dA_prev, dW, db


def pool_forward(A_prev, hparameters, mode: str = "max", *, backend: Optional[str] = None) -> Tuple[np.ndarray, tuple]:
    """Pooling forward pass over a batch (the course's ``pool_forward``).

    Parameters
    ----------
    A_prev : array_like, shape (m, n_H_prev, n_W_prev, n_C)
        The input, NHWC (``(m, n_C, n_H_prev, n_W_prev)`` with ``"layout": "NCHW"``).
    hparameters : dict
        ``{"f": f, "stride": s}``, each an int or an ``(h, w)`` pair; optionally ``"pad"`` (at
        most ``f // 2`` on each side; any form :func:`conv_forward` takes): max pooling pads
        with -inf, average pooling with zeros that count in the divisor (PyTorch's default);
        ``"ceil_mode"`` (default False: PyTorch's rule, rounding the output size up while the
        last window starts inside the input or the front padding); ``"count_include_pad"``
        (average pooling, default True; False divides by the input elements in the window;
        max pooling ignores it); ``"layout"`` (``"NHWC"`` or ``"NCHW"``).
    mode : {"max", "average"}, optional
        The pooling; ``"avg"`` means ``"average"``. Default ``"max"``.
    backend : str, optional
        The backend to run on, a name from :func:`fastnn.available_backends`. Default: the
        one in force (``with use_backend(...)``, :func:`fastnn.set_backend`,
        ``$FASTNN_BACKEND``, else ``"auto"``).

    Returns
    -------
    A : numpy.ndarray, shape (m, n_H, n_W, n_C)
        The output, ``n_H = (n_H_prev + 2 pad - f) // stride + 1`` (likewise ``n_W``).
    cache : tuple
        ``(A_prev, hparameters)``, for :func:`pool_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import pool_forward
    >>> A_prev = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> A, cache = pool_forward(A_prev, {"f": 2, "stride": 2}, mode="max")
    >>> A[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    >>> pool_forward(A_prev, {"f": 2, "stride": 2}, mode="average")[0][0, :, :, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    >>> hp = {"f": 3, "stride": 2, "pad": 1, "ceil_mode": True, "count_include_pad": False}
    >>> pool_forward(A_prev, hp, mode="average")[0][0, :, :, 0]
    array([[ 2.5,  4. ,  5. ],
           [ 8.5, 10. , 11. ],
           [12.5, 14. , 15. ]])
    """
    A_prev = P.as_array(A_prev, "A_prev")
    p = P.pool_params(A_prev, hparameters, mode)
    A = _empty((p.m, p.Ho, p.Wo, p.C), dtype=p.dtype)
    nchw = P.conv_layout(hparameters) == "NCHW"
    if not p.m:
        _empty_batch("pool_forward", backend)
    else:
        _lower.pool_forward(p, backend, _nhwc(A_prev, p.dtype) if nchw else P.as_kernel_input(A_prev, p.dtype), A)
    return (_nchw(A) if nchw else A), (A_prev, hparameters)


def pool_backward(dA, cache, mode: str = "max", *, ties: str = "all", backend: Optional[str] = None) -> np.ndarray:
    """Pooling backward pass (the course's ``pool_backward``).

    Parameters
    ----------
    dA : array_like, shape (m, n_H, n_W, n_C)
        The gradient of the cost with respect to :func:`pool_forward`'s output ``A``.
    cache : tuple
        ``(A_prev, hparameters)``, the cache :func:`pool_forward` returned.
    mode : {"max", "average"}, optional
        The pooling the forward pass used; ``"avg"`` means ``"average"``. Default ``"max"``.
    ties : {"all", "first"}, optional
        Max pooling only: ``"all"`` (default, the course's rule) gives the gradient to every
        position equal to the window's maximum, ``"first"`` to the first maximum in row-major
        window order only, as PyTorch does.
    backend : str, optional
        The backend to run on, a name from :func:`fastnn.available_backends`. Default: the
        one in force (``with use_backend(...)``, :func:`fastnn.set_backend`,
        ``$FASTNN_BACKEND``, else ``"auto"``).

    Returns
    -------
    dA_prev : numpy.ndarray, shape of A_prev
        The gradient with respect to the pooling's input.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import pool_forward, pool_backward
    >>> A_prev = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> A, cache = pool_forward(A_prev, {"f": 2, "stride": 2})
    >>> pool_backward(np.ones_like(A), cache)[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]])
    """
    A_prev, hparameters = _unpack_cache(cache, 2, "(A_prev, hparameters)")
    A_prev = P.as_array(A_prev, "cache's A_prev")
    dA = P.as_array(dA, "dA")
    p = P.pool_params(A_prev, hparameters, mode, ties)
    nchw = P.conv_layout(hparameters) == "NCHW"
    out_shape = (p.m, p.C, p.Ho, p.Wo) if nchw else (p.m, p.Ho, p.Wo, p.C)
    if dA.shape != out_shape:
        raise ValueError(f"dA must have the shape of the forward output {out_shape}, got {dA.shape}")
    dt = P.compute_dtype(A_prev, dA)
    if dt != p.dtype:
        p = p._replace(dtype=dt)
    dA_prev = _empty((p.m, p.H, p.W, p.C), dtype=dt)
    if not p.m:
        _empty_batch("pool_backward", backend)
    elif nchw:
        _lower.pool_backward(p, backend, _nhwc(A_prev, dt), _nhwc(dA, dt), dA_prev)
    else:
        _lower.pool_backward(p, backend, P.as_kernel_input(A_prev, dt), P.as_kernel_input(dA, dt), dA_prev)
    return _nchw(dA_prev) if nchw else dA_prev


def create_mask_from_window(x) -> np.ndarray:
    """Which positions of a window hold its maximum (the course's helper of max-pool backward).

    Parameters
    ----------
    x : array_like
        One pooling window, e.g. shape (f, f).

    Returns
    -------
    mask : numpy.ndarray of bool, shape of x
        True where ``x`` equals its maximum (every tied position).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import create_mask_from_window
    >>> create_mask_from_window(np.array([[1.0, 3.0], [3.0, -2.0]]))
    array([[False,  True],
           [ True, False]])
    """
    x = P.as_array(x, "x")
    return x == np.max(x)


def distribute_value(dz, shape) -> np.ndarray:
    """Spread one gradient value evenly over a window (the course's helper of average-pool backward).

    Parameters
    ----------
    dz : float or array_like holding one value
        The value to share.
    shape : int or (int, int)
        The window's ``(n_H, n_W)`` (an int means square).

    Returns
    -------
    a : numpy.ndarray, shape (n_H, n_W)
        Every entry ``dz / (n_H * n_W)``, in dz's float dtype (float64 for a Python number).

    Examples
    --------
    >>> from fastnn import distribute_value
    >>> distribute_value(2.0, (2, 2))
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    n_H, n_W = P._pair(shape if isinstance(shape, numbers.Integral) else tuple(shape), "shape", 1)
    dz_arr = P.as_array(dz, "dz")
    if dz_arr.size != 1:
        raise ValueError(f"dz must be a scalar, got shape {dz_arr.shape}")
    dt = P.compute_dtype(dz_arr)
    return np.full((n_H, n_W), dz_arr.reshape(()) / (n_H * n_W), dtype=dt)
