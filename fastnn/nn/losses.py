"""Losses: ``cost, dout = loss(out, y)`` gives the batch-mean cost (a Python float) and its
gradient with respect to the network's output, in the output's dtype. ``loss(out, y, m=M)``
takes the mean over M examples instead of out's rows: ``out`` is then a shard of a batch of M
(data-parallel training, :mod:`fastnn.dask`), and the shards' costs and gradients add up to
the batch's.

* :class:`BinaryCrossEntropy` for one output unit: on logits (default; stable for any
  logit, ``max(z, 0) - z y + log(1 + exp(-|z|))``) or on probabilities (clipped to
  ``[eps, 1 - eps]`` with the dtype's eps, so log never sees 0).
* :class:`SoftmaxCrossEntropy` for K > 2 classes, on logits (m, K) with integer labels
  (m,) or one-hot labels (m, K); the softmax subtracts each row's maximum first.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .. import activations as _act

__all__ = ["BinaryCrossEntropy", "SoftmaxCrossEntropy", "binary_labels"]


def _mean_over(m: Optional[int], rows: int) -> int:
    """The example count a loss divides by: ``m`` (a batch of which the rows are a shard), else the rows."""
    if m is None:
        return rows
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < max(rows, 1):
        raise ValueError(f"m must be an int >= the output's {rows} rows (the batch the rows are part of), got {m!r}")
    return int(m)


def binary_labels(y, m: int, dtype) -> np.ndarray:
    """0/1 labels of any shape holding m values ((m,), (m, 1) or the course's (1, m)) as (m, 1)."""
    y = np.asarray(y)
    if y.size != m:
        raise ValueError(f"labels must hold one value per example: {m} examples, labels of shape {y.shape}")
    return y.reshape(m, 1).astype(dtype, copy=False)


class BinaryCrossEntropy:
    """``-mean(y log p + (1 - y) log(1 - p))`` for an (m, 1) output."""

    def __init__(self, from_logits: bool = True) -> None:
        self.from_logits = bool(from_logits)

    def __repr__(self) -> str:
        return f"BinaryCrossEntropy(from_logits={self.from_logits})"

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """P(class 1) from the network's output."""
        return _act.sigmoid(out)[0] if self.from_logits else out

    def __call__(self, out: np.ndarray, y, m: Optional[int] = None) -> Tuple[float, np.ndarray]:
        if out.ndim != 2 or out.shape[1] != 1:
            raise ValueError(f"BinaryCrossEntropy needs an (m, 1) output, got {out.shape}")
        y = binary_labels(y, out.shape[0], out.dtype)
        m = _mean_over(m, out.shape[0])
        if self.from_logits:
            z = out
            losses = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
            dout = (_act.sigmoid(z)[0] - y) / m
        else:
            eps = float(np.finfo(out.dtype).eps)
            p = np.clip(out, eps, 1 - eps)
            losses = -(y * np.log(p) + (1 - y) * np.log1p(-p))
            dout = (p - y) / (p * (1 - p)) / m
        return float(np.sum(losses) / m), dout.astype(out.dtype, copy=False)


class SoftmaxCrossEntropy:
    """``-mean(log softmax(z)[label])`` for (m, K) logits."""

    def __repr__(self) -> str:
        return "SoftmaxCrossEntropy()"

    @staticmethod
    def probabilities(out: np.ndarray) -> np.ndarray:
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def __call__(self, out: np.ndarray, y, m: Optional[int] = None) -> Tuple[float, np.ndarray]:
        if out.ndim != 2:
            raise ValueError(f"SoftmaxCrossEntropy needs (m, K) logits, got {out.shape}")
        rows, K = out.shape
        y = np.asarray(y)
        if y.shape == (rows, K):
            onehot = y.astype(out.dtype, copy=False)
        elif y.size == rows and y.dtype.kind in "iu":
            labels = y.reshape(rows)
            if labels.min() < 0 or labels.max() >= K:
                raise ValueError(f"labels must be in [0, {K}), got values from {labels.min()} to {labels.max()}")
            onehot = np.zeros((rows, K), dtype=out.dtype)
            onehot[np.arange(rows), labels] = 1
        else:
            raise ValueError(f"labels must be integers of shape ({rows},) or one-hot ({rows}, {K}), got {y.dtype} {y.shape}")
        m = _mean_over(m, rows)
        shifted = out - out.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        cost = -float(np.sum(onehot * log_probs)) / m
        dout = (np.exp(log_probs) - onehot) / m
        return cost, dout.astype(out.dtype, copy=False)
