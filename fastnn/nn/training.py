"""Mini-batches, one training epoch, prediction, and the course-sized ConvNet.

:func:`run_epoch` is the one epoch loop (batches, example-weighted cost and accuracy, the
per-batch hook); :func:`train_epoch` runs it for a :class:`Sequential`, and the course's dense
network in :mod:`fastnn.nn.trainer` runs it with :func:`fastnn.dnn.gradient_descent_step`.
:func:`batch_gradients` is one step's forward and backward, on a whole batch here or on a shard
of it on a Dask worker (data-parallel training: the same loop, the gradients computed there).

Shuffling is seeded per epoch: epoch ``e`` of a run with seed ``s`` uses
``np.random.default_rng([s, e])``, so a run resumed at epoch ``e`` sees exactly the
batches an uninterrupted run would.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from .layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from .model import Sequential

__all__ = ["minibatches", "run_epoch", "batch_gradients", "train_epoch", "predict_proba", "accuracy", "make_cnn"]


def minibatches(m: int, batch_size: Optional[int], seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Index arrays of the epoch's batches: a seeded permutation cut into ``batch_size`` pieces
    (the last may be smaller). ``batch_size`` None or >= m: one full batch, in order."""
    if batch_size is None or batch_size >= m:
        yield np.arange(m)
        return
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(m)
    for start in range(0, m, batch_size):
        yield order[start:start + batch_size]


def run_epoch(m: int, step: Callable[[np.ndarray], Tuple[float, float]], *, batch_size: Optional[int], seed: int,
              epoch: int, on_batch: Optional[Callable[[int, int, float], None]] = None) -> Tuple[float, float]:
    """One pass over m examples in the epoch's :func:`minibatches`. ``step(idx)`` trains on the
    examples ``idx`` and returns (the batch's mean cost, how many of them it got right), both
    measured before its update. Returns (cost, accuracy): the example-weighted means over the
    epoch. ``on_batch(done, total, cost)`` is called after each batch (progress bars, tests)."""
    batches = list(minibatches(m, batch_size, seed, epoch))
    total_cost = total_correct = 0.0
    for j, idx in enumerate(batches):
        cost, correct = step(idx)
        total_correct += correct
        total_cost += cost * len(idx)
        if on_batch is not None:
            on_batch(j + 1, len(batches), cost)
    return total_cost / m, total_correct / m


def batch_gradients(model: Sequential, loss, X: np.ndarray, Y: np.ndarray, m: Optional[int] = None
                    ) -> Tuple[float, float]:
    """Forward and backward through ``model`` on the examples (X, Y), filling every layer's
    ``grads``: those of the mean loss over ``m`` examples (default: these), of which (X, Y)
    may be a shard. Returns (the cost, how many of the examples it got right), the cost a
    mean over ``m`` too, so the shards' costs and gradients add up to the batch's. What one
    training step computes, here or on a Dask worker (:func:`fastnn.nn.trainer.shard_gradients`)."""
    out = model.forward(X, train=True)
    cost, dout = loss(out, Y) if m is None else loss(out, Y, m=m)
    correct = accuracy(loss.probabilities(out), Y) * len(X)
    model.backward(dout, input_grad=False)  # (the images need no gradient)
    return cost, correct


def train_epoch(model: Sequential, loss, optimizer, X: np.ndarray, Y: np.ndarray, *, batch_size: Optional[int],
                seed: int, epoch: int, on_batch: Optional[Callable[[int, int, float], None]] = None,
                gradients: Optional[Callable[[np.ndarray, np.ndarray], Tuple[float, float, Dict[str, np.ndarray]]]] = None
                ) -> Tuple[float, float]:
    """One pass over (X, Y), one optimiser step per batch (see :func:`run_epoch`). Returns (cost, accuracy).

    ``gradients(Xb, Yb) -> (cost, correct, grads)``, if given, computes each batch's mean cost,
    how many it got right and its gradients (``{"param/<i>/<name>": array}``) elsewhere (a Dask
    cluster: :class:`fastnn.dask.DataParallel`); else :func:`batch_gradients` runs here."""
    m = X.shape[0]
    Y = np.asarray(Y).reshape(m, -1)

    def step(idx):
        if gradients is None:
            cost, correct = batch_gradients(model, loss, X[idx], Y[idx])
        else:
            cost, correct, grads = gradients(X[idx], Y[idx])
            model.load_grads(grads)
        optimizer.step(model)
        return cost, correct

    return run_epoch(m, step, batch_size=batch_size, seed=seed, epoch=epoch, on_batch=on_batch)


def predict_proba(model: Sequential, loss, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The loss's probabilities for X, computed in batches without keeping caches."""
    outs = [loss.probabilities(model.forward(X[i:i + batch_size], train=False))
            for i in range(0, X.shape[0], batch_size)]
    return np.concatenate(outs, axis=0)


def accuracy(probs: np.ndarray, y) -> float:
    """Fraction correct: threshold 0.5 for one output column, argmax for several."""
    y = np.asarray(y)
    if probs.shape[1] == 1:
        pred = (probs[:, 0] > 0.5).astype(np.int64)
        return float(np.mean(pred == y.reshape(-1)))
    labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] == probs.shape[1] else y.reshape(-1)
    return float(np.mean(probs.argmax(axis=1) == labels))


def make_cnn(input_shape: Sequence[int] = (64, 64, 3), channels: Sequence[int] = (8, 16, 32), n_out: int = 1, *,
             dtype=np.float64, seed: int = 0, ties: str = "all") -> Sequential:
    """``[conv3x3 (pad 1) -> ReLU -> maxpool 2] x len(channels) -> Flatten -> Dense(n_out)``
    (logits; pair with ``BinaryCrossEntropy(from_logits=True)`` or ``SoftmaxCrossEntropy``)."""
    H, W, C = (int(s) for s in input_shape)
    layers = []
    for K in channels:
        layers += [Conv2D(C, K, kernel_size=3, stride=1, pad=1), ReLU(), MaxPool2D(2, ties=ties)]
        H, W, C = H // 2, W // 2, K
    if min(H, W) < 1:
        raise ValueError(f"input {tuple(input_shape)} is too small for {len(channels)} pooling steps")
    layers += [Flatten(), Dense(H * W * C, n_out)]
    return Sequential(layers, input_shape=input_shape, dtype=dtype, seed=seed)

