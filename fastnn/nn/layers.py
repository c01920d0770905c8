"""Layers: each holds its parameters and gradients and calls fastnn's dispatched kernels.

Layout is NHWC for images, (m, features) for dense data. A layer's ``forward(x, train)``
keeps the cache the kernel returned (only when ``train`` is true) and ``backward(dout)``
hands it to the matching dispatched backward, fills ``self.grads`` and returns the
gradient with respect to the layer's input. Gradients are those of the *batch-mean* loss:
the loss divides by m once (see :mod:`fastnn.nn.losses`); layers just sum.

Every layer records what it is in ``spec()`` (a JSON-able dict), which is how a model is
saved and rebuilt (:mod:`fastnn.nn.model`). Parameters are created by ``build(rng, dtype)``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from .. import activations as _act
from .. import conv as _conv
from .._params import conv_out_size

__all__ = [
    "Layer", "Conv2D", "MaxPool2D", "AvgPool2D", "ReLU", "Sigmoid", "Flatten", "Dense", "LAYER_TYPES",
]

Shape = Tuple[int, ...]


class Layer:
    """Base class: no parameters, an identity ``spec``."""

    def __init__(self) -> None:
        self.params: Dict[str, np.ndarray] = {}
        self.grads: Dict[str, np.ndarray] = {}
        self.cache = None

    # -- description -------------------------------------------------------------
    def config(self) -> dict:
        """The constructor's keyword arguments (what ``spec()`` records)."""
        return {}

    def spec(self) -> dict:
        return {"type": type(self).__name__, **self.config()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # -- shapes and parameters -----------------------------------------------------
    def output_shape(self, input_shape: Shape) -> Shape:
        """Shape of one example's output given one example's input shape (no batch axis)."""
        return tuple(input_shape)

    def build(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Create the parameters (seeded); layers without parameters do nothing."""

    # -- passes ----------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    #: Whether ``backward`` takes ``input_grad=False`` to skip its input's gradient (a
    #: model's first layer: :meth:`Sequential.backward` with ``input_grad=False``).
    input_grad_optional = False

    def _take_cache(self):
        if self.cache is None:
            raise RuntimeError(f"{self!r}: backward() needs a forward(x, train=True) first")
        cache, self.cache = self.cache, None
        return cache


def _fan_init(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, init: str, dtype) -> np.ndarray:
    """He (``sqrt(2 / fan_in)``, for layers followed by ReLU) or Xavier/Glorot
    (``sqrt(2 / (fan_in + fan_out))``) normal initialisation, drawn in float64 and cast."""
    if init == "he":
        std = np.sqrt(2.0 / fan_in)
    elif init == "xavier":
        std = np.sqrt(2.0 / (fan_in + fan_out))
    else:
        raise ValueError(f"init must be 'he' or 'xavier', got {init!r}")
    return (rng.standard_normal(shape) * std).astype(dtype)


class Conv2D(Layer):
    """``in_channels -> out_channels`` convolution with a square ``kernel_size`` window.

    W has the course's shape (f, f, in_channels, out_channels), b is (1, 1, 1, out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 pad: int = 0, init: str = "he") -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.pad, self.init = int(kernel_size), int(stride), int(pad), init
        self.hparameters = {"stride": self.stride, "pad": self.pad}

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "pad": self.pad, "init": self.init}

    def output_shape(self, input_shape: Shape) -> Shape:
        H, W, C = input_shape
        if C != self.in_channels:
            raise ValueError(f"{self!r} gets {C} input channels (input shape {tuple(input_shape)})")
        f, s, p = self.kernel_size, self.stride, self.pad
        return (conv_out_size(H, f, p, s), conv_out_size(W, f, p, s), self.out_channels)

    def build(self, rng, dtype) -> None:
        f, C, K = self.kernel_size, self.in_channels, self.out_channels
        self.params = {
            "W": _fan_init(rng, (f, f, C, K), f * f * C, f * f * K, self.init, dtype),
            "b": np.zeros((1, 1, 1, K), dtype=dtype),
        }

    def forward(self, x, train=True):
        Z, cache = _conv.conv_forward(x, self.params["W"], self.params["b"], self.hparameters)
        self.cache = cache if train else None
        return Z

    #: ``backward`` takes ``input_grad=False`` (skips the gradient of its input).
    input_grad_optional = True

    def backward(self, dout, input_grad=True):
        """Fill ``grads``; return the gradient of the input (``None`` with ``input_grad=False``)."""
        dA_prev, dW, db = _conv.conv_backward(dout, self._take_cache(), input_grad=input_grad)
        self.grads = {"W": dW, "b": db}
        return dA_prev


class _Pool2D(Layer):
    mode = "max"

    def __init__(self, pool_size: int = 2, stride: Optional[int] = None) -> None:
        super().__init__()
        self.pool_size = int(pool_size)
        self.stride = int(pool_size if stride is None else stride)
        self.hparameters = {"f": self.pool_size, "stride": self.stride}

    def config(self) -> dict:
        return {"pool_size": self.pool_size, "stride": self.stride}

    def output_shape(self, input_shape: Shape) -> Shape:
        H, W, C = input_shape
        f, s = self.pool_size, self.stride
        return (conv_out_size(H, f, 0, s), conv_out_size(W, f, 0, s), C)

    def forward(self, x, train=True):
        A, cache = _conv.pool_forward(x, self.hparameters, self.mode)
        self.cache = cache if train else None
        return A

    def backward(self, dout):
        return _conv.pool_backward(dout, self._take_cache(), self.mode, **self._backward_kwargs())

    def _backward_kwargs(self) -> dict:
        return {}


class MaxPool2D(_Pool2D):
    """Max pooling. ``ties="all"`` (the course's rule) or ``"first"`` (PyTorch's)."""

    mode = "max"

    def __init__(self, pool_size: int = 2, stride: Optional[int] = None, ties: str = "all") -> None:
        super().__init__(pool_size, stride)
        self.ties = ties

    def config(self) -> dict:
        return {**super().config(), "ties": self.ties}

    def _backward_kwargs(self) -> dict:
        return {"ties": self.ties}


class AvgPool2D(_Pool2D):
    """Average pooling."""

    mode = "average"


class _Activation(Layer):
    _forward = staticmethod(_act.relu)
    _backward = staticmethod(_act.relu_backward)

    def forward(self, x, train=True):
        A, cache = self._forward(x)
        self.cache = cache if train else None
        return A

    def backward(self, dout):
        return self._backward(dout, self._take_cache())


class ReLU(_Activation):
    """``max(0, x)`` (dispatched ``fastnn.relu``)."""

    _forward = staticmethod(_act.relu)
    _backward = staticmethod(_act.relu_backward)


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))`` (dispatched ``fastnn.sigmoid``). For a binary classifier prefer
    a final :class:`Dense` to one logit with ``BinaryCrossEntropy(from_logits=True)``."""

    _forward = staticmethod(_act.sigmoid)
    _backward = staticmethod(_act.sigmoid_backward)


class Flatten(Layer):
    """(m, H, W, C) -> (m, H * W * C) in NHWC (row-major) order."""

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(self, x, train=True):
        self.cache = x.shape if train else None
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._take_cache())


class Dense(Layer):
    """Fully connected: ``Z = X W + b`` with X (m, in_features), W (in_features, out_features),
    b (1, out_features). (The course's column layout is the transpose; rows suit a batch axis first.)
    There is no dispatched dense kernel: like :func:`fastnn.dnn.linear_forward` it is NumPy's matmul (BLAS)."""

    def __init__(self, in_features: int, out_features: int, init: str = "xavier") -> None:
        super().__init__()
        self.in_features, self.out_features, self.init = int(in_features), int(out_features), init

    def config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "init": self.init}

    def output_shape(self, input_shape: Shape) -> Shape:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"{self!r} gets input of shape {tuple(input_shape)}, expected ({self.in_features},)")
        return (self.out_features,)

    def build(self, rng, dtype) -> None:
        n_in, n_out = self.in_features, self.out_features
        self.params = {
            "W": _fan_init(rng, (n_in, n_out), n_in, n_out, self.init, dtype),
            "b": np.zeros((1, n_out), dtype=dtype),
        }

    def forward(self, x, train=True):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{self!r} needs input (m, {self.in_features}), got {x.shape}")
        self.cache = x if train else None
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        x = self._take_cache()
        W = self.params["W"]
        self.grads = {"W": x.T @ dout, "b": dout.sum(axis=0, keepdims=True)}
        return dout @ W.T


#: Layer class by name (how a saved spec is turned back into layers).
LAYER_TYPES = {cls.__name__: cls for cls in (Conv2D, MaxPool2D, AvgPool2D, ReLU, Sigmoid, Flatten, Dense)}
