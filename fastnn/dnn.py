"""The course's L-layer network: [LINEAR -> RELU] x (L-1) -> LINEAR -> SIGMOID.

Column layout as in the course: X is (n_x, m), W{l} is (n_l, n_{l-1}), b{l} is (n_l, 1).
Caches follow the correct seed: linear cache ``(A_prev, W, b)``, activation cache ``Z``,
layer cache ``(linear_cache, activation_cache)``. ``grads["dA" + str(l)]`` is the gradient
with respect to the *input* of layer l, as the seeds print it. No function modifies its
arguments: :func:`update_parameters` returns a new dict.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _params as P
from .activations import relu, relu_backward, sigmoid, sigmoid_backward

__all__ = [
    "initialize_parameters",
    "initialize_parameters_deep",
    "linear_forward",
    "linear_activation_forward",
    "L_model_forward",
    "compute_cost",
    "linear_backward",
    "linear_activation_backward",
    "L_model_backward",
    "update_parameters",
    "gradient_descent_step",
    "L_layer_model",
    "predict",
]

_ACTIVATIONS = {"relu": (relu, relu_backward), "sigmoid": (sigmoid, sigmoid_backward)}
RandomLike = Union[None, int, np.random.RandomState, np.random.Generator]


def _randn(rng: RandomLike) -> Callable[..., np.ndarray]:
    """A ``randn(*shape)`` drawing from ``rng``.

    None draws from NumPy's global legacy generator (what ``np.random.seed(s)`` seeds, as the
    course does); an int seeds a private ``RandomState(seed)``, which gives the very numbers
    ``np.random.seed(seed)`` followed by ``np.random.randn`` would, without touching the
    global state; a RandomState or Generator is used as given.
    """
    if rng is None:
        return np.random.randn
    if isinstance(rng, np.random.RandomState):
        return rng.randn
    if isinstance(rng, np.random.Generator):
        return lambda *shape: rng.standard_normal(shape)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.RandomState(int(rng)).randn
    raise TypeError(f"seed must be None, an int, a RandomState or a Generator, got {type(rng).__name__}")


def _scale(scale: Union[str, float], n_prev: int) -> float:
    if isinstance(scale, str):
        if scale != "sqrt":
            raise ValueError(f"scale must be a number or 'sqrt' (1/sqrt(n_prev)), got {scale!r}")
        return 1.0 / np.sqrt(n_prev)
    return float(scale)


def initialize_parameters_deep(
    layer_dims: Sequence[int], *, scale: Union[str, float] = "sqrt", seed: RandomLike = None, dtype=np.float64
) -> Dict[str, np.ndarray]:
    """W{l} ~ randn(n_l, n_{l-1}) * scale, b{l} = 0, for l = 1 .. L.

    scale: ``"sqrt"`` (default) means 1/sqrt(n_{l-1}) as in the course's application
    notebook; a number such as 0.01 multiplies as in the step-by-step notebook.
    seed: see :func:`_randn`. The seeds' printed values are reproduced by
    ``initialize_parameters_deep([5, 4, 3], seed=3)`` (1/sqrt) and
    ``initialize_parameters_deep([5, 4, 3], scale=0.01, seed=3)``.
    """
    if any(isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) for d in layer_dims):
        raise TypeError(f"layer_dims must be integers, got {list(layer_dims)}")
    dims = [int(d) for d in layer_dims]
    if len(dims) < 2 or any(d < 1 for d in dims):
        raise ValueError(f"layer_dims must list at least two positive sizes, got {list(layer_dims)}")
    randn = _randn(seed)
    params: Dict[str, np.ndarray] = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = (randn(dims[l], dims[l - 1]) * _scale(scale, dims[l - 1])).astype(dtype, copy=False)
        params[f"b{l}"] = np.zeros((dims[l], 1), dtype=dtype)
    return params


def initialize_parameters(
    n_x: int, n_h: int, n_y: int, *, scale: Union[str, float] = 0.01, seed: RandomLike = None, dtype=np.float64
) -> Dict[str, np.ndarray]:
    """The two-layer network's parameters: W1 (n_h, n_x), b1, W2 (n_y, n_h), b2 (default scale 0.01)."""
    return initialize_parameters_deep([n_x, n_h, n_y], scale=scale, seed=seed, dtype=dtype)


def _labels_like(Y: np.ndarray, AL: np.ndarray) -> np.ndarray:
    """Y in AL's shape, and in AL's float dtype when it holds integer or bool labels
    (so float32 training stays float32 with the course's int64 labels)."""
    Y = Y.reshape(AL.shape)
    return Y.astype(AL.dtype) if Y.dtype.kind in "iub" and AL.dtype.kind == "f" else Y


# ------------------------------------------------------------------------- forward


def linear_forward(A, W, b) -> Tuple[np.ndarray, tuple]:
    """Z = W A + b; returns (Z, cache=(A, W, b))."""
    A_ = P.as_array(A, "A")
    W_ = P.as_array(W, "W")
    b_ = P.as_array(b, "b")
    if A_.ndim != 2 or W_.ndim != 2:
        raise ValueError(f"A and W must be 2-D, got A {A_.shape} and W {W_.shape}")
    if W_.shape[1] != A_.shape[0]:
        raise ValueError(f"W's columns must match A's rows: W {W_.shape}, A {A_.shape}")
    if b_.shape not in ((W_.shape[0], 1), (W_.shape[0],)):
        raise ValueError(f"b must have shape ({W_.shape[0]}, 1), got {b_.shape}")
    dt = P.compute_dtype(A_, W_, b_)
    Z = np.dot(W_.astype(dt, copy=False), A_.astype(dt, copy=False))
    Z += b_.reshape(-1, 1).astype(dt, copy=False)
    return Z, (A, W, b)


def _activation(activation: str):
    try:
        return _ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}") from None


def linear_activation_forward(A_prev, W, b, activation: str) -> Tuple[np.ndarray, tuple]:
    """A = g(W A_prev + b); returns (A, cache=(linear_cache, Z))."""
    forward, _ = _activation(activation)
    Z, linear_cache = linear_forward(A_prev, W, b)
    A, activation_cache = forward(Z)
    return A, (linear_cache, activation_cache)


def _n_layers(parameters: Dict[str, Any]) -> int:
    L = len(parameters) // 2
    missing = [k for l in range(1, L + 1) for k in (f"W{l}", f"b{l}") if k not in parameters]
    if L < 1 or missing:
        raise ValueError(
            f"parameters must hold W1, b1, ..., WL, bL; missing {missing or ['W1', 'b1']}, got {sorted(parameters)}"
        )
    return L


def L_model_forward(X, parameters: Dict[str, np.ndarray]) -> Tuple[np.ndarray, List[tuple]]:
    """[LINEAR -> RELU] x (L-1) -> LINEAR -> SIGMOID; returns (AL, caches)."""
    L = _n_layers(parameters)
    caches = []
    A = X
    for l in range(1, L):
        A, cache = linear_activation_forward(A, parameters[f"W{l}"], parameters[f"b{l}"], "relu")
        caches.append(cache)
    AL, cache = linear_activation_forward(A, parameters[f"W{L}"], parameters[f"b{L}"], "sigmoid")
    caches.append(cache)
    return AL, caches


def compute_cost(AL, Y):
    """Cross-entropy ``-1/m sum(Y log AL + (1 - Y) log(1 - AL))``, a scalar."""
    AL_ = P.as_array(AL, "AL")
    Y_ = P.as_array(Y, "Y")
    if Y_.size != AL_.size or AL_.ndim != 2:
        raise ValueError(f"AL must be (1, m) and Y hold m labels: AL {AL_.shape}, Y {Y_.shape}")
    Y_ = _labels_like(Y_, AL_)
    m = AL_.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = -np.sum(Y_ * np.log(AL_) + (1 - Y_) * np.log(1 - AL_)) / m
    return np.squeeze(cost)


# ------------------------------------------------------------------------ backward


def linear_backward(dZ, cache) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dA_prev, dW, db) of Z = W A_prev + b, averaged over the m examples."""
    if not isinstance(cache, (tuple, list)) or len(cache) != 3:
        raise ValueError("cache must be the linear cache (A_prev, W, b)")
    A_prev, W, b = (P.as_array(x, n) for x, n in zip(cache, ("cache's A_prev", "cache's W", "cache's b")))
    dZ = P.as_array(dZ, "dZ")
    if A_prev.ndim != 2 or W.ndim != 2:
        raise ValueError(f"the linear cache must hold 2-D A_prev and W, got A_prev {A_prev.shape} and W {W.shape}")
    expected = (W.shape[0], A_prev.shape[1])
    if dZ.shape != expected:
        raise ValueError(f"dZ must have shape {expected} (W rows, examples), got {dZ.shape}")
    dt = P.compute_dtype(A_prev, W, b, dZ)
    dZ = dZ.astype(dt, copy=False)
    m = A_prev.shape[1]
    # The averages over the m examples; a batch of none (m = 0) has zero gradients, not 0/0.
    dW = np.dot(dZ, A_prev.astype(dt, copy=False).T) / max(m, 1)
    db = (np.sum(dZ, axis=1, keepdims=True) / max(m, 1)).reshape(b.shape)
    dA_prev = np.dot(W.astype(dt, copy=False).T, dZ)
    return dA_prev, dW, db


def linear_activation_backward(dA, cache, activation: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward through g then the linear layer."""
    _, backward = _activation(activation)
    linear_cache, activation_cache = cache
    dZ = backward(dA, activation_cache)
    return linear_backward(dZ, linear_cache)


def L_model_backward(AL, Y, caches) -> Dict[str, np.ndarray]:
    """Gradients of the cross-entropy cost for :func:`L_model_forward`'s network."""
    AL = P.as_array(AL, "AL")
    Y = P.as_array(Y, "Y")
    if Y.size != AL.size:
        raise ValueError(f"Y must hold one label per output: AL {AL.shape}, Y {Y.shape}")
    Y = _labels_like(Y, AL)
    L = len(caches)
    if L < 1:
        raise ValueError("caches must hold one cache per layer (from L_model_forward), got none")
    grads: Dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    grads[f"dA{L}"], grads[f"dW{L}"], grads[f"db{L}"] = linear_activation_backward(dAL, caches[L - 1], "sigmoid")
    for l in reversed(range(L - 1)):
        grads[f"dA{l + 1}"], grads[f"dW{l + 1}"], grads[f"db{l + 1}"] = linear_activation_backward(
            grads[f"dA{l + 2}"], caches[l], "relu"
        )
    return grads


def update_parameters(parameters: Dict[str, np.ndarray], grads: Dict[str, np.ndarray], learning_rate: float):
    """One gradient-descent step; returns a new dict (the input dict is left as it was)."""
    L = _n_layers(parameters)
    learning_rate = float(learning_rate)  # a NumPy float64 scalar would promote float32 parameters
    new = dict(parameters)
    for l in range(1, L + 1):
        for k in ("W", "b"):
            key, gkey = f"{k}{l}", f"d{k}{l}"
            if gkey not in grads:
                raise ValueError(f"grads is missing {gkey!r}")
            if np.shape(grads[gkey]) != np.shape(parameters[key]):
                raise ValueError(
                    f"grads[{gkey!r}] must have the shape of parameters[{key!r}] "
                    f"{np.shape(parameters[key])}, got {np.shape(grads[gkey])}"
                )
            new[key] = parameters[key] - learning_rate * grads[gkey]
    return new


# ----------------------------------------------------------------------- the model


def gradient_descent_step(X, Y, parameters: Dict[str, np.ndarray], learning_rate: float):
    """One iteration of the course's training loop on the batch (X, Y): forward, cost, backward,
    update. Returns ``(new_parameters, cost, AL)``; ``cost`` and ``AL`` (the network's output)
    are those of the parameters before the update. :func:`L_layer_model` and
    ``fastnn train --model dnn`` both train with this step."""
    AL, caches = L_model_forward(X, parameters)
    cost = compute_cost(AL, Y)
    grads = L_model_backward(AL, Y, caches)
    return update_parameters(parameters, grads, learning_rate), cost, AL


def L_layer_model(
    X,
    Y,
    layers_dims: Sequence[int],
    learning_rate: float = 0.0075,
    num_iterations: int = 3000,
    print_cost: bool = False,
    *,
    scale: Union[str, float] = "sqrt",
    seed: RandomLike = None,
    return_costs: bool = False,
    callback: Optional[Callable[[int, float], None]] = None,
):
    """Train the L-layer network by full-batch gradient descent.

    As in the course, the initial weights are drawn from NumPy's global generator unless
    ``seed`` is given (``np.random.seed(1)`` then this function reproduces the seed's run:
    cost 0.771749 at iteration 0 on the cat data). Every 100 iterations the cost is
    recorded (and printed if ``print_cost``). Returns the parameters, or
    ``(parameters, costs)`` with ``return_costs=True``.
    """
    X = P.as_array(X, "X")
    parameters = initialize_parameters_deep(layers_dims, scale=scale, seed=seed, dtype=P.compute_dtype(X))
    costs = []
    for i in range(num_iterations):
        parameters, cost, _ = gradient_descent_step(X, Y, parameters, learning_rate)
        if i % 100 == 0:
            costs.append(float(cost))
            if print_cost:
                print("Cost after iteration %i: %f" % (i, cost))
        if callback is not None:
            callback(i, float(cost))
    return (parameters, costs) if return_costs else parameters


def predict(X, y, parameters, *, print_accuracy: bool = True) -> np.ndarray:
    """0/1 predictions (1, m) of the network (probability > 0.5); prints the accuracy."""
    probas, _ = L_model_forward(X, parameters)
    p = (probas > 0.5).astype(np.float64)
    if print_accuracy and y is not None:
        y = np.asarray(y).reshape(p.shape)
        print("Accuracy: " + str(np.sum((p == y) / p.shape[1])))
    return p
