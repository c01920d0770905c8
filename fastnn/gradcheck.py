"""Gradient checking by central differences, generalised from the course.

``gradient_check_n`` checks the gradients of *any* cost function of a parameter dict:
pass ``forward(X, Y, parameters) -> cost`` (or ``(cost, cache)``); by default it is the
course's 3-layer network :func:`forward_propagation_n`. The difference reported is
``||grad - approx|| / (||grad|| + ||approx||)`` with ``approx[i] = (J(theta + eps e_i) -
J(theta - eps e_i)) / (2 eps)``; the course's one-dimensional ``gradient_check`` divides
``J_plus + J_minus`` by ``2 theta``, which is wrong, and is corrected here.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "dictionary_to_vector",
    "vector_to_dictionary",
    "gradients_to_vector",
    "gradient_check",
    "gradient_check_n",
    "forward_propagation_n",
    "backward_propagation_n",
    "COURSE_SHAPES",
]

#: The course's 3-layer network, in the order the course flattens it.
COURSE_SHAPES: Dict[str, Tuple[int, int]] = {
    "W1": (5, 4), "b1": (5, 1), "W2": (3, 5), "b2": (3, 1), "W3": (1, 3), "b3": (1, 1),
}


def _ordered_keys(d: Mapping, prefix: str = "") -> List[str]:
    """W1, b1, W2, b2, ... (with ``prefix``, e.g. "d") first in layer order, then any other keys."""
    ordered = []
    l = 1
    while f"{prefix}W{l}" in d or f"{prefix}b{l}" in d:
        ordered += [k for k in (f"{prefix}W{l}", f"{prefix}b{l}") if k in d]
        l += 1
    return ordered + [k for k in d if k not in ordered]


def dictionary_to_vector(parameters: Mapping[str, np.ndarray], keys: Optional[Sequence[str]] = None):
    """Flatten a parameter dict into one column vector ``theta`` (the course's helper).

    Parameters
    ----------
    parameters : mapping of str to array_like
        E.g. ``{"W1": ..., "b1": ..., "W2": ...}``.
    keys : sequence of str, optional
        The order to flatten in; default W1, b1, W2, b2, ... then any other keys.

    Returns
    -------
    theta : numpy.ndarray of float64, shape (n, 1)
        Every parameter's entries, one after the other (each in row-major order).
    keys : list of str
        The parameter each entry of ``theta`` comes from, as the course's helper returns.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import dictionary_to_vector
    >>> theta, keys = dictionary_to_vector({"W1": np.array([[1.0, 2.0]]), "b1": np.array([[3.0]])})
    >>> theta.ravel(), keys
    (array([1., 2., 3.]), ['W1', 'W1', 'b1'])
    """
    order = list(keys) if keys is not None else _ordered_keys(parameters)
    parts = [np.asarray(parameters[k], dtype=np.float64).reshape(-1, 1) for k in order]
    names = [k for k in order for _ in range(np.size(parameters[k]))]
    theta = np.concatenate(parts, axis=0) if parts else np.zeros((0, 1))
    return theta, names


def vector_to_dictionary(theta, shapes: Optional[Mapping[str, Sequence[int]]] = None) -> Dict[str, np.ndarray]:
    """Unflatten a column vector back into a parameter dict (the inverse of :func:`dictionary_to_vector`).

    Parameters
    ----------
    theta : array_like, n values
        The flattened parameters.
    shapes : mapping of str to shape (or to an array of that shape), optional
        Each key's shape, in flattening order. Default: the course's 3-layer network
        (``W1`` (5, 4), ``b1`` (5, 1), ``W2`` (3, 5), ``b2`` (3, 1), ``W3`` (1, 3), ``b3`` (1, 1)).

    Returns
    -------
    parameters : dict of str to numpy.ndarray
        One new array per key.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import vector_to_dictionary
    >>> params = vector_to_dictionary(np.arange(3.0), {"W1": (1, 2), "b1": (1, 1)})
    >>> params["W1"], params["b1"]
    (array([[0., 1.]]), array([[2.]]))
    """
    shapes = COURSE_SHAPES if shapes is None else shapes
    theta = np.asarray(theta).reshape(-1)
    sizes = {k: tuple(np.shape(v)) if isinstance(v, np.ndarray) else tuple(v) for k, v in shapes.items()}
    total = sum(int(np.prod(s)) for s in sizes.values())
    if theta.size != total:
        raise ValueError(f"theta must hold {total} values for shapes {sizes}, got {theta.size}")
    out, start = {}, 0
    for k, s in sizes.items():
        n = int(np.prod(s))
        out[k] = theta[start:start + n].reshape(s).copy()
        start += n
    return out


def gradients_to_vector(gradients: Mapping[str, np.ndarray], keys: Optional[Sequence[str]] = None) -> np.ndarray:
    """Flatten the gradients dW1, db1, dW2, db2, ... into one column vector (dA and dZ entries are left out).

    Parameters
    ----------
    gradients : mapping of str to array_like
        E.g. what :func:`L_model_backward` returns.
    keys : sequence of str, optional
        The order to flatten in; default dW1, db1, dW2, db2, ...

    Returns
    -------
    grad : numpy.ndarray of float64, shape (n, 1)
        The gradients, in the order :func:`dictionary_to_vector` flattens the parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import gradients_to_vector
    >>> gradients_to_vector({"dA1": np.ones((2, 2)), "dW1": np.array([[1.0, 2.0]]), "db1": np.array([[3.0]])}).ravel()
    array([1., 2., 3.])
    """
    if keys is None:
        keys = [k for k in _ordered_keys(gradients, "d") if k[:2] in ("dW", "db")]
    return dictionary_to_vector(gradients, keys)[0]


def _relu(Z):
    return np.maximum(0, Z)


def _sigmoid(Z):
    return 1 / (1 + np.exp(-Z))


def forward_propagation_n(X, Y, parameters):
    """The course's LINEAR -> RELU -> LINEAR -> RELU -> LINEAR -> SIGMOID cost; returns (cost, cache)."""
    m = X.shape[1]
    W1, b1, W2, b2, W3, b3 = (parameters[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    # The course's exact arithmetic (its printed differences depend on the rounding).
    Z1 = np.dot(W1, X) + b1
    A1 = _relu(Z1)
    Z2 = np.dot(W2, A1) + b2
    A2 = _relu(Z2)
    Z3 = np.dot(W3, A2) + b3
    A3 = _sigmoid(Z3)
    log_probs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    cost = 1.0 / m * np.sum(log_probs)
    return cost, (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3)


def backward_propagation_n(X, Y, cache):
    """The correct gradients of :func:`forward_propagation_n` (the course's, without its planted bugs)."""
    m = X.shape[1]
    (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3) = cache
    dZ3 = A3 - Y
    dW3 = 1.0 / m * np.dot(dZ3, A2.T)
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = np.dot(W3.T, dZ3)
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1.0 / m * np.dot(dZ2, A1.T)
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = np.dot(W2.T, dZ2)
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1.0 / m * np.dot(dZ1, X.T)
    db1 = 1.0 / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"dZ3": dZ3, "dW3": dW3, "db3": db3, "dA2": dA2, "dZ2": dZ2, "dW2": dW2, "db2": db2,
            "dA1": dA1, "dZ1": dZ1, "dW1": dW1, "db1": db1}


def _relative_difference(grad, approx) -> float:
    numerator = np.linalg.norm(grad - approx)
    denominator = np.linalg.norm(grad) + np.linalg.norm(approx)
    return float(numerator / denominator) if denominator != 0 else 0.0


def _report(difference: float, print_msg: bool, threshold: float = 2e-7) -> None:
    if not print_msg:
        return
    if difference > threshold:
        print("\033[93mThere is a mistake in the backward propagation! difference = " + str(difference) + "\033[0m")
    else:
        print("\033[92mYour backward propagation works perfectly fine! difference = " + str(difference) + "\033[0m")


def gradient_check(x, theta, epsilon: float = 1e-7, print_msg: bool = False, *,
                   forward: Optional[Callable] = None, backward: Optional[Callable] = None) -> float:
    """Check a one-parameter gradient against the central difference ``(J(theta + eps) - J(theta - eps)) / (2 eps)``.

    Parameters
    ----------
    x : array_like
        The input.
    theta : float or array_like
        The parameter (every entry of an array is checked).
    epsilon : float, optional
        The step of the central difference (default 1e-7).
    print_msg : bool, optional
        Print the course's verdict ("works perfectly fine" below 2e-7).
    forward : callable, optional
        ``forward(x, theta) -> J``; default the course's ``J = theta * x``.
    backward : callable, optional
        ``backward(x, theta) -> dJ/dtheta``; default the course's ``x``.

    Returns
    -------
    difference : float
        ``||grad - approx|| / (||grad|| + ||approx||)``: small (about 1e-7 or less) when
        ``backward`` is right.

    Examples
    --------
    >>> from fastnn import gradient_check
    >>> gradient_check(2.0, 4.0) < 1e-7
    True
    >>> print(f"{gradient_check(2.0, 4.0, backward=lambda x, theta: 2 * x):.4f}")  # a wrong gradient
    0.3333
    """
    forward = forward or (lambda x_, t: x_ * t)
    backward = backward or (lambda x_, t: x_)
    theta = np.asarray(theta, dtype=np.float64)
    grad = np.asarray(backward(x, theta), dtype=np.float64)
    approx = np.zeros(theta.shape if theta.ndim else ())
    for i in np.ndindex(theta.shape):
        tp = theta.copy()
        tm = theta.copy()
        tp[i] += epsilon
        tm[i] -= epsilon
        approx[i] = (np.sum(forward(x, tp)) - np.sum(forward(x, tm))) / (2 * epsilon)
    difference = _relative_difference(grad, approx)
    _report(difference, print_msg)
    return difference


def gradient_check_n(parameters, gradients, X, Y, epsilon: float = 1e-7, print_msg: bool = False, *,
                     forward: Optional[Callable] = None) -> float:
    """Check a parameter dict's gradients against central differences of a cost (the course's ``gradient_check_n``).

    Parameters
    ----------
    parameters : dict of str to numpy.ndarray
        The parameters, e.g. ``"W1"``, ``"b1"``, ...
    gradients : dict of str to numpy.ndarray
        ``"d" + key`` for every parameter key (other entries such as ``dA1`` are ignored).
    X : array_like
        The input of the cost.
    Y : array_like
        The labels of the cost.
    epsilon : float, optional
        The step of the central differences (default 1e-7).
    print_msg : bool, optional
        Print the course's verdict ("There is a mistake" above 2e-7).
    forward : callable, optional
        ``forward(X, Y, parameters)`` returning the cost or ``(cost, cache)``; default the course's
        3-layer network (:func:`fastnn.gradcheck.forward_propagation_n`).

    Returns
    -------
    difference : float
        ``||grad - approx|| / (||grad|| + ||approx||)`` over all the parameters' entries.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import gradient_check_n
    >>> from fastnn.gradcheck import backward_propagation_n, forward_propagation_n
    >>> np.random.seed(1)  # the course's example
    >>> X, Y = np.random.randn(4, 3), np.array([1, 1, 0])
    >>> parameters = {k: np.random.randn(*s) for k, s in [("W1", (5, 4)), ("b1", (5, 1)), ("W2", (3, 5)),
    ...                                                   ("b2", (3, 1)), ("W3", (1, 3)), ("b3", (1, 1))]}
    >>> cost, cache = forward_propagation_n(X, Y, parameters)
    >>> difference = gradient_check_n(parameters, backward_propagation_n(X, Y, cache), X, Y)
    >>> print(f"{difference:.6e}")
    1.189091e-07
    """
    forward = forward or forward_propagation_n
    keys = _ordered_keys(parameters)
    theta, _ = dictionary_to_vector(parameters, keys)
    shapes = {k: np.shape(parameters[k]) for k in keys}
    missing = [f"d{k}" for k in keys if f"d{k}" not in gradients]
    if missing:
        raise ValueError(f"gradients is missing {missing}")
    grad = gradients_to_vector(gradients, [f"d{k}" for k in keys])

    def cost(vec):
        out = forward(X, Y, vector_to_dictionary(vec, shapes))
        return float(out[0] if isinstance(out, tuple) else out)

    n = theta.shape[0]
    approx = np.zeros((n, 1))
    for i in range(n):
        plus = theta.copy()
        plus[i, 0] += epsilon
        minus = theta.copy()
        minus[i, 0] -= epsilon
        approx[i, 0] = (cost(plus) - cost(minus)) / (2 * epsilon)
    difference = _relative_difference(grad, approx)
    _report(difference, print_msg)
    return difference
