"""Activations and their backward passes, with the course's ``(A, cache)`` convention."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from . import _params as P
from ._dispatch import resolve

__all__ = ["sigmoid", "relu", "sigmoid_backward", "relu_backward"]


def _forward(op: str, Z, backend: Optional[str]) -> Tuple[np.ndarray, np.ndarray]:
    Za = P.as_array(Z, "Z")
    dt = P.compute_dtype(Za)
    out = np.empty(Za.shape, dtype=dt)
    kernel = resolve(op, backend)
    if out.size:  # an empty array (a batch of no examples) has nothing to compute
        kernel(P.as_kernel_input(Za, dt), out)
    return out, Z


def _backward(op: str, dA, cache, backend: Optional[str]) -> np.ndarray:
    dA = P.as_array(dA, "dA")
    Z = P.as_array(cache, "cache (Z)")
    P.check_same_shape(dA, "dA", Z, "the cached Z")
    dt = P.compute_dtype(dA, Z)
    out = np.empty(Z.shape, dtype=dt)
    kernel = resolve(op, backend)
    if out.size:
        kernel(P.as_kernel_input(dA, dt), P.as_kernel_input(Z, dt), out)
    return out


def sigmoid(Z, *, backend: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The sigmoid activation, ``A = 1 / (1 + exp(-Z))``.

    Parameters
    ----------
    Z : array_like
        Any shape (the dense network's (n, m), or NHWC).
    backend : str, optional
        The backend to run on, a name from :func:`fastnn.available_backends`. Default: the
        one in force (``with use_backend(...)``, :func:`fastnn.set_backend`,
        ``$FASTNN_BACKEND``, else ``"auto"``).

    Returns
    -------
    A : numpy.ndarray, shape of Z
        The activation, in Z's float dtype (float64 for integers).
    cache : array_like
        ``Z`` itself, as passed, for :func:`sigmoid_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import sigmoid
    >>> A, cache = sigmoid(np.array([[-1.0, 0.0, 2.0]]))
    >>> A.round(6)
    array([[0.268941, 0.5     , 0.880797]])
    """
    return _forward("sigmoid", Z, backend)


def relu(Z, *, backend: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The ReLU activation, ``A = max(0, Z)``.

    Parameters
    ----------
    Z : array_like
        Any shape (the dense network's (n, m), or NHWC).
    backend : str, optional
        The backend to run on, a name from :func:`fastnn.available_backends`. Default: the
        one in force (``with use_backend(...)``, :func:`fastnn.set_backend`,
        ``$FASTNN_BACKEND``, else ``"auto"``).

    Returns
    -------
    A : numpy.ndarray, shape of Z
        The activation, in Z's float dtype (float64 for integers).
    cache : array_like
        ``Z`` itself, as passed, for :func:`relu_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import relu
    >>> A, cache = relu(np.array([[-1.0, 0.0, 2.0]]))
    >>> A
    array([[0., 0., 2.]])
    """
    return _forward("relu", Z, backend)


def sigmoid_backward(dA, cache, *, backend: Optional[str] = None) -> np.ndarray:
    """The sigmoid's backward pass, ``dZ = dA * s * (1 - s)`` with ``s = sigmoid(Z)``.

    Parameters
    ----------
    dA : array_like
        The gradient of the cost with respect to the activation, the shape of ``Z``.
    cache : array_like
        ``Z``, the cache :func:`sigmoid` returned.
    backend : str, optional
        The backend to run on, a name from :func:`fastnn.available_backends`. Default: the
        one in force (``with use_backend(...)``, :func:`fastnn.set_backend`,
        ``$FASTNN_BACKEND``, else ``"auto"``).

    Returns
    -------
    dZ : numpy.ndarray, shape of Z
        The gradient with respect to ``Z``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import sigmoid, sigmoid_backward
    >>> A, cache = sigmoid(np.array([[0.0, 2.0]]))
    >>> sigmoid_backward(np.ones((1, 2)), cache).round(6)
    array([[0.25    , 0.104994]])
    """
    return _backward("sigmoid_backward", dA, cache, backend)


def relu_backward(dA, cache, *, backend: Optional[str] = None) -> np.ndarray:
    """The ReLU's backward pass: ``dZ = dA`` where ``Z > 0``, else 0.

    Parameters
    ----------
    dA : array_like
        The gradient of the cost with respect to the activation, the shape of ``Z``.
    cache : array_like
        ``Z``, the cache :func:`relu` returned.
    backend : str, optional
        The backend to run on, a name from :func:`fastnn.available_backends`. Default: the
        one in force (``with use_backend(...)``, :func:`fastnn.set_backend`,
        ``$FASTNN_BACKEND``, else ``"auto"``).

    Returns
    -------
    dZ : numpy.ndarray, shape of Z
        The gradient with respect to ``Z``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import relu, relu_backward
    >>> A, cache = relu(np.array([[-1.0, 0.0, 2.0]]))
    >>> relu_backward(np.array([[5.0, 5.0, 5.0]]), cache)
    array([[0., 0., 5.]])
    """
    return _backward("relu_backward", dA, cache, backend)
