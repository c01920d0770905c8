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
    """The L-layer network's parameters: ``W{l} ~ randn(n_l, n_{l-1}) * scale``, ``b{l} = 0``.

    Parameters
    ----------
    layer_dims : sequence of int
        ``[n_x, n_1, ..., n_L]``: the input size, then each layer's size (at least two sizes).
    scale : "sqrt" or float, optional
        ``"sqrt"`` (default) multiplies layer l's weights by ``1 / sqrt(n_{l-1})``, as the
        course's application notebook does; a number such as ``0.01`` multiplies by that
        number, as the step-by-step notebook does.
    seed : None, int, numpy.random.RandomState or numpy.random.Generator, optional
        None (default) draws from NumPy's global generator, as the course does after
        ``np.random.seed(...)``; an int draws the very numbers ``np.random.seed(seed)`` would,
        from a private ``RandomState(seed)``, leaving the global state alone.
    dtype : numpy dtype, optional
        The parameters' dtype (default float64).

    Returns
    -------
    parameters : dict of str to numpy.ndarray
        ``"W1"`` (n_1, n_x), ``"b1"`` (n_1, 1), ..., ``"WL"``, ``"bL"``.

    Examples
    --------
    >>> from fastnn import initialize_parameters_deep
    >>> parameters = initialize_parameters_deep([5, 4, 3], seed=3)
    >>> parameters["W1"].shape, parameters["b1"].shape, parameters["W2"].shape
    ((4, 5), (4, 1), (3, 4))
    >>> parameters["W2"].round(8)
    array([[-0.59252326, -0.10282495,  0.74307418,  0.11835813],
           [-0.51189257, -0.3564966 ,  0.31262248, -0.08025668],
           [-0.38441818, -0.11501536,  0.37252813,  0.98805539]])
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
    """The two-layer network's parameters (the course's ``initialize_parameters``).

    Parameters
    ----------
    n_x : int
        The input size.
    n_h : int
        The hidden layer's size.
    n_y : int
        The output size.
    scale : "sqrt" or float, optional
        As in :func:`initialize_parameters_deep`; default ``0.01``, the course's.
    seed : None, int, numpy.random.RandomState or numpy.random.Generator, optional
        As in :func:`initialize_parameters_deep` (default: NumPy's global generator).
    dtype : numpy dtype, optional
        The parameters' dtype (default float64).

    Returns
    -------
    parameters : dict of str to numpy.ndarray
        ``"W1"`` (n_h, n_x), ``"b1"`` (n_h, 1), ``"W2"`` (n_y, n_h), ``"b2"`` (n_y, 1).

    Examples
    --------
    >>> from fastnn import initialize_parameters
    >>> parameters = initialize_parameters(3, 2, 1, seed=1)
    >>> parameters["W1"].round(8)
    array([[ 0.01624345, -0.00611756, -0.00528172],
           [-0.01072969,  0.00865408, -0.02301539]])
    >>> parameters["b2"]
    array([[0.]])
    """
    return initialize_parameters_deep([n_x, n_h, n_y], scale=scale, seed=seed, dtype=dtype)


def _labels_like(Y: np.ndarray, AL: np.ndarray) -> np.ndarray:
    """Y in AL's shape, and in AL's float dtype when it holds integer or bool labels
    (so float32 training stays float32 with the course's int64 labels)."""
    Y = Y.reshape(AL.shape)
    return Y.astype(AL.dtype) if Y.dtype.kind in "iub" and AL.dtype.kind == "f" else Y


# ------------------------------------------------------------------------- forward


def _linear_dtype(A_: np.ndarray, W_: np.ndarray, b_: np.ndarray) -> np.dtype:
    """Check the shapes of a linear layer's A (n_prev, m), W (n, n_prev) and b (n, 1);
    return the computed dtype (also what :mod:`fastnn.dask` checks a lazy A with)."""
    if A_.ndim != 2 or W_.ndim != 2:
        raise ValueError(f"A and W must be 2-D, got A {A_.shape} and W {W_.shape}")
    if W_.shape[1] != A_.shape[0]:
        raise ValueError(f"W's columns must match A's rows: W {W_.shape}, A {A_.shape}")
    if b_.shape not in ((W_.shape[0], 1), (W_.shape[0],)):
        raise ValueError(f"b must have shape ({W_.shape[0]}, 1), got {b_.shape}")
    return P.compute_dtype(A_, W_, b_)


def linear_forward(A, W, b) -> Tuple[np.ndarray, tuple]:
    """A layer's linear part, ``Z = W A + b``.

    Parameters
    ----------
    A : array_like, shape (n_prev, m)
        The previous layer's activations, one column per example.
    W : array_like, shape (n, n_prev)
        The weights.
    b : array_like, shape (n, 1)
        The biases (shape ``(n,)`` also works).

    Returns
    -------
    Z : numpy.ndarray, shape (n, m)
        The pre-activation, in the computed dtype.
    cache : tuple
        ``(A, W, b)``, the arguments as passed, for :func:`linear_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import linear_forward
    >>> np.random.seed(1)
    >>> A, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    >>> Z, cache = linear_forward(A, W, b)
    >>> Z.round(8)
    array([[ 3.26295337, -1.23429987]])
    """
    A_ = P.as_array(A, "A")
    W_ = P.as_array(W, "W")
    b_ = P.as_array(b, "b")
    dt = _linear_dtype(A_, W_, b_)
    Z = np.dot(W_.astype(dt, copy=False), A_.astype(dt, copy=False))
    Z += b_.reshape(-1, 1).astype(dt, copy=False)
    return Z, (A, W, b)


def _activation(activation: str):
    try:
        return _ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}") from None


def linear_activation_forward(A_prev, W, b, activation: str) -> Tuple[np.ndarray, tuple]:
    """A layer's forward pass, ``A = g(W A_prev + b)``.

    Parameters
    ----------
    A_prev : array_like, shape (n_prev, m)
        The previous layer's activations.
    W : array_like, shape (n, n_prev)
        The weights.
    b : array_like, shape (n, 1)
        The biases.
    activation : {"relu", "sigmoid"}
        The activation ``g``.

    Returns
    -------
    A : numpy.ndarray, shape (n, m)
        The layer's activations.
    cache : tuple
        ``(linear_cache, activation_cache)``: ``(A_prev, W, b)`` and ``Z``, for
        :func:`linear_activation_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import linear_activation_forward
    >>> np.random.seed(2)
    >>> A_prev, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    >>> A, cache = linear_activation_forward(A_prev, W, b, activation="sigmoid")
    >>> A.round(8)
    array([[0.96890023, 0.11013289]])
    >>> linear_activation_forward(A_prev, W, b, activation="relu")[0].round(8)
    array([[3.43896131, 0.        ]])
    """
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
    """The L-layer network's forward pass, [LINEAR -> RELU] x (L-1) -> LINEAR -> SIGMOID.

    Parameters
    ----------
    X : array_like, shape (n_x, m)
        The input, one column per example.
    parameters : dict of str to array_like
        ``"W1"``, ``"b1"``, ..., ``"WL"``, ``"bL"`` (from :func:`initialize_parameters_deep`).

    Returns
    -------
    AL : numpy.ndarray, shape (1, m)
        The network's output, the probability of class 1 per example.
    caches : list of tuple
        One :func:`linear_activation_forward` cache per layer, for :func:`L_model_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import L_model_forward
    >>> np.random.seed(1)
    >>> X = np.random.randn(4, 2)
    >>> parameters = {"W1": np.random.randn(3, 4), "b1": np.random.randn(3, 1),
    ...               "W2": np.random.randn(1, 3), "b2": np.random.randn(1, 1)}
    >>> AL, caches = L_model_forward(X, parameters)
    >>> AL.round(8), len(caches)
    (array([[0.17007265, 0.2524272 ]]), 2)
    """
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
    """The cross-entropy cost, ``-1/m sum(Y log(AL) + (1 - Y) log(1 - AL))``.

    Parameters
    ----------
    AL : array_like, shape (1, m)
        The network's output probabilities.
    Y : array_like, m labels (shape (1, m))
        The true labels, 0 or 1.

    Returns
    -------
    cost : numpy.ndarray of shape ()
        The cost, a 0-d array (NumPy scalar-like) in AL's dtype, as the course's
        ``np.squeeze(cost)``. NaN for m = 0 (the mean over no examples).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import compute_cost
    >>> cost = compute_cost(np.array([[0.8, 0.9, 0.4]]), np.array([[1, 1, 1]]))
    >>> print(f"cost = {float(cost):.12f}")
    cost = 0.414931599615
    """
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
    """A layer's linear part backward: the gradients of ``Z = W A_prev + b``, averaged over the batch.

    Parameters
    ----------
    dZ : array_like, shape (n, m)
        The gradient of the cost with respect to ``Z``.
    cache : tuple
        ``(A_prev, W, b)``, the cache :func:`linear_forward` returned.

    Returns
    -------
    dA_prev : numpy.ndarray, shape (n_prev, m)
        The gradient with respect to ``A_prev``.
    dW : numpy.ndarray, shape of W
        ``dZ A_prev.T / m`` (zeros for m = 0).
    db : numpy.ndarray, shape of b
        ``dZ`` summed over the examples, divided by m (zeros for m = 0).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import linear_backward
    >>> np.random.seed(1)
    >>> dZ = np.random.randn(1, 2)
    >>> A, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    >>> dA_prev, dW, db = linear_backward(dZ, (A, W, b))
    >>> dW.round(8), db.round(8)
    (array([[-0.10076895,  1.40685096,  1.64992505]]), array([[0.50629448]]))
    """
    A_prev, W, b = _linear_cache(cache)
    dZ = P.as_array(dZ, "dZ")
    dt = _linear_backward_dtype(dZ, A_prev, W, b)
    m = A_prev.shape[1]
    dA_prev, dW_sum, db_sum = _linear_backward_sums(dZ, A_prev, W, dt)
    # The averages over the m examples; a batch of none (m = 0) has zero gradients, not 0/0.
    return dA_prev, dW_sum / max(m, 1), (db_sum / max(m, 1)).reshape(b.shape)


def _linear_cache(cache) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(cache, (tuple, list)) or len(cache) != 3:
        raise ValueError("cache must be the linear cache (A_prev, W, b)")
    return tuple(P.as_array(x, n) for x, n in zip(cache, ("cache's A_prev", "cache's W", "cache's b")))


def _linear_backward_dtype(dZ: np.ndarray, A_prev: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.dtype:
    """Check a linear backward's dZ against its cache's shapes; return the computed dtype."""
    if A_prev.ndim != 2 or W.ndim != 2:
        raise ValueError(f"the linear cache must hold 2-D A_prev and W, got A_prev {A_prev.shape} and W {W.shape}")
    expected = (W.shape[0], A_prev.shape[1])
    if dZ.shape != expected:
        raise ValueError(f"dZ must have shape {expected} (W rows, examples), got {dZ.shape}")
    return P.compute_dtype(A_prev, W, b, dZ)


def _linear_backward_sums(dZ: np.ndarray, A_prev: np.ndarray, W: np.ndarray, dt: np.dtype):
    """``(dA_prev, dZ A_prev.T, dZ summed over the examples)`` in dtype ``dt``: the backward
    before the division by m (a sum over a batch's column chunks adds up, :mod:`fastnn.dask`)."""
    dZ = dZ.astype(dt, copy=False)
    dW_sum = np.dot(dZ, A_prev.astype(dt, copy=False).T)
    db_sum = np.sum(dZ, axis=1, keepdims=True)
    return np.dot(W.astype(dt, copy=False).T, dZ), dW_sum, db_sum


def linear_activation_backward(dA, cache, activation: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A layer's backward pass: through the activation, then the linear part.

    Parameters
    ----------
    dA : array_like, shape (n, m)
        The gradient of the cost with respect to the layer's activations.
    cache : tuple
        ``(linear_cache, activation_cache)``, the cache :func:`linear_activation_forward` returned.
    activation : {"relu", "sigmoid"}
        The activation the forward pass used.

    Returns
    -------
    dA_prev : numpy.ndarray, shape (n_prev, m)
        The gradient with respect to the layer's input.
    dW : numpy.ndarray, shape of W
        The gradient with respect to ``W``.
    db : numpy.ndarray, shape of b
        The gradient with respect to ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import linear_activation_backward
    >>> np.random.seed(2)
    >>> dA = np.random.randn(1, 2)
    >>> A, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    >>> Z = np.random.randn(1, 2)
    >>> dA_prev, dW, db = linear_activation_backward(dA, ((A, W, b), Z), activation="sigmoid")
    >>> dW.round(8), db.round(8)
    (array([[ 0.10266786,  0.09778551, -0.01968084]]), array([[-0.05729622]]))
    """
    _, backward = _activation(activation)
    linear_cache, activation_cache = cache
    dZ = backward(dA, activation_cache)
    return linear_backward(dZ, linear_cache)


def L_model_backward(AL, Y, caches) -> Dict[str, np.ndarray]:
    """The gradients of the cross-entropy cost through :func:`L_model_forward`'s network.

    Parameters
    ----------
    AL : array_like, shape (1, m)
        The network's output.
    Y : array_like, m labels (shape (1, m))
        The true labels, 0 or 1.
    caches : sequence of tuple
        The caches :func:`L_model_forward` returned, one per layer.

    Returns
    -------
    grads : dict of str to numpy.ndarray
        ``"dW{l}"``, ``"db{l}"`` for every layer l = 1 .. L, and ``"dA{l}"``: the gradient with
        respect to layer l's *input* (``dA1`` is the input's), as the course's seeds print it.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import L_model_backward
    >>> np.random.seed(3)
    >>> AL, Y = np.random.randn(1, 2), np.array([[1, 0]])
    >>> A1, W1, b1, Z1 = np.random.randn(4, 2), np.random.randn(3, 4), np.random.randn(3, 1), np.random.randn(3, 2)
    >>> A2, W2, b2, Z2 = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1), np.random.randn(1, 2)
    >>> grads = L_model_backward(AL, Y, (((A1, W1, b1), Z1), ((A2, W2, b2), Z2)))
    >>> sorted(grads)
    ['dA1', 'dA2', 'dW1', 'dW2', 'db1', 'db2']
    >>> grads["db1"].round(8)
    array([[-0.22007063],
           [ 0.        ],
           [-0.02835349]])
    """
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
    """One gradient-descent step, ``W{l} - learning_rate * dW{l}`` and likewise for ``b{l}``.

    Parameters
    ----------
    parameters : dict of str to numpy.ndarray
        ``"W1"``, ``"b1"``, ..., ``"WL"``, ``"bL"``. Left unchanged.
    grads : dict of str to numpy.ndarray
        ``"dW1"``, ``"db1"``, ... with the parameters' shapes (from :func:`L_model_backward`).
    learning_rate : float
        The step size.

    Returns
    -------
    parameters : dict of str to numpy.ndarray
        A new dict with the updated parameters (the input dict is left as it was).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import update_parameters
    >>> parameters = {"W1": np.array([[1.0, 2.0]]), "b1": np.array([[0.5]])}
    >>> grads = {"dW1": np.array([[10.0, -10.0]]), "db1": np.array([[1.0]])}
    >>> new = update_parameters(parameters, grads, 0.1)
    >>> new["W1"], new["b1"], parameters["W1"]
    (array([[0., 3.]]), array([[0.4]]), array([[1., 2.]]))
    """
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
    """Train the L-layer network by full-batch gradient descent (the course's ``L_layer_model``).

    Parameters
    ----------
    X : array_like, shape (n_x, m)
        The training inputs, one column per example.
    Y : array_like, shape (1, m)
        The labels, 0 or 1.
    layers_dims : sequence of int
        ``[n_x, n_1, ..., n_L]``, e.g. the course's ``[12288, 20, 7, 5, 1]``.
    learning_rate : float, optional
        Default 0.0075.
    num_iterations : int, optional
        Gradient-descent steps (default 3000).
    print_cost : bool, optional
        Print ``Cost after iteration i: cost`` every 100 iterations, from 0, as the course does.
    scale : "sqrt" or float, optional
        The initialisation (see :func:`initialize_parameters_deep`; default 1/sqrt(n_prev)).
    seed : None, int, numpy.random.RandomState or numpy.random.Generator, optional
        The initial weights' generator; None (default) draws from NumPy's global one, so that
        ``np.random.seed(1)`` before the call reproduces the course's run (cost 0.771749 at
        iteration 0 on the cat data, 0.672053 at 100, ...).
    return_costs : bool, optional
        Also return the costs recorded every 100 iterations.
    callback : callable, optional
        ``callback(i, cost)`` after every iteration i (0-based), with the cost before its update.

    Returns
    -------
    parameters : dict of str to numpy.ndarray
        The trained parameters.
    costs : list of float
        Only with ``return_costs=True``: the cost at iterations 0, 100, 200, ...

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import L_layer_model, predict
    >>> X = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0]])
    >>> Y = np.array([[0, 0, 1, 1]])
    >>> parameters, costs = L_layer_model(X, Y, [2, 3, 1], learning_rate=0.5, num_iterations=200,
    ...                                   print_cost=True, seed=1, return_costs=True)
    Cost after iteration 0: 0.593657
    Cost after iteration 100: 0.025690
    >>> predict(X, Y, parameters, print_accuracy=False)
    array([[0., 0., 1., 1.]])
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
    """The network's 0/1 predictions (probability > 0.5), printing the accuracy as the course does.

    Parameters
    ----------
    X : array_like, shape (n_x, m)
        The inputs, one column per example.
    y : array_like, m labels, or None
        The true labels, for the printed accuracy (None: nothing printed).
    parameters : dict of str to numpy.ndarray
        The trained parameters.
    print_accuracy : bool, optional
        Print ``Accuracy: ...`` (default True, the course's behaviour).

    Returns
    -------
    p : numpy.ndarray of float64, shape (1, m)
        1.0 where the network's output exceeds 0.5, else 0.0.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import predict
    >>> parameters = {"W1": np.array([[1.0]]), "b1": np.array([[0.0]])}
    >>> predict(np.array([[-2.0, 3.0, 1.0]]), np.array([[0, 1, 1]]), parameters)
    Accuracy: 1.0
    array([[0., 1., 1.]])
    """
    probas, _ = L_model_forward(X, parameters)
    p = (probas > 0.5).astype(np.float64)
    if print_accuracy and y is not None:
        y = np.asarray(y).reshape(p.shape)
        print("Accuracy: " + str(np.sum((p == y) / p.shape[1])))
    return p
