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
    """``A = 1 / (1 + exp(-Z))``; returns (A, cache=Z)."""
    return _forward("sigmoid", Z, backend)


def relu(Z, *, backend: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``A = max(0, Z)``; returns (A, cache=Z)."""
    return _forward("relu", Z, backend)


def sigmoid_backward(dA, cache, *, backend: Optional[str] = None) -> np.ndarray:
    """``dZ = dA * s * (1 - s)`` with ``s = sigmoid(Z)``, Z the cache."""
    return _backward("sigmoid_backward", dA, cache, backend)


def relu_backward(dA, cache, *, backend: Optional[str] = None) -> np.ndarray:
    """``dZ = dA`` where ``Z > 0``, else 0 (Z the cache)."""
    return _backward("relu_backward", dA, cache, backend)
