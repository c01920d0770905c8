"""Optimisers: ``opt.step(model)`` updates every layer's ``params`` in place from its ``grads``.

State (momentum buffers, Adam's moments and step count) is kept per (layer index, name),
in the parameters' dtype, and can be saved and restored (``state_dict`` /
``load_state_dict``) so a resumed run continues exactly. Hyper-parameters are Python
floats, so a float32 model stays float32.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

__all__ = ["SGD", "Adam", "OPTIMIZERS"]


class _Optimizer:
    def __init__(self, lr: float) -> None:
        self.lr = float(lr)
        self.state: Dict[str, np.ndarray] = {}  # "kind/layer/name" -> buffer
        self.t = 0  # steps taken

    def _buffer(self, kind: str, i: int, name: str, like: np.ndarray) -> np.ndarray:
        key = f"{kind}/{i}/{name}"
        buf = self.state.get(key)
        if buf is None:
            buf = self.state[key] = np.zeros_like(like)
        return buf

    def step(self, model) -> None:
        self.t += 1
        for i, layer in enumerate(model.layers):
            for name, param in layer.params.items():
                self._update(i, name, param, layer.grads[name])

    def _update(self, i: int, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def config(self) -> dict:
        return {"type": type(self).__name__, "lr": self.lr}

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {"t": np.array(self.t), **{k: v.copy() for k, v in self.state.items()}}

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> None:
        state = dict(state)
        self.t = int(state.pop("t"))
        self.state = {k: np.array(v) for k, v in state.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "type") + ")"


class SGD(_Optimizer):
    """``v = momentum v + g; param -= lr v`` (plain gradient descent when momentum is 0)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0) -> None:
        super().__init__(lr)
        self.momentum = float(momentum)

    def _update(self, i, name, param, grad):
        if self.momentum:
            v = self._buffer("v", i, name, param)
            v *= self.momentum
            v += grad
            grad = v
        param -= self.lr * grad

    def config(self) -> dict:
        return {**super().config(), "momentum": self.momentum}


class Adam(_Optimizer):
    """Adam (Kingma & Ba) with bias correction, as in the course's optimisation notebook."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _update(self, i, name, param, grad):
        b1, b2 = self.beta1, self.beta2
        m = self._buffer("m", i, name, param)
        v = self._buffer("v", i, name, param)
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * (grad * grad)
        m_hat_scale = 1.0 / (1.0 - b1 ** self.t)  # Python floats: keep the dtype
        v_hat_scale = 1.0 / (1.0 - b2 ** self.t)
        param -= self.lr * (m * m_hat_scale) / (np.sqrt(v * v_hat_scale) + self.eps)

    def config(self) -> dict:
        return {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZERS = {"SGD": SGD, "Adam": Adam}
