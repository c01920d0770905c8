"""The course's layer functions on Dask arrays, one batch chunk per task.

Each function has the signature and cache of its :mod:`fastnn` namesake. Given a
``dask.array.Array`` it returns lazy Dask arrays; given NumPy (array-like) inputs it calls fastnn
and returns what fastnn returns. The batch axis is the examples' axis: axis 0 for the NHWC
convolution and pooling (``A_prev`` is (m, H, W, C)), axis 1 for the dense network's columns
(``A`` is (n_prev, m)). An input split along any other axis is rechunked to one chunk there,
with a :class:`RechunkWarning`; the activations are elementwise and take any chunks.

Arguments are checked on the driver, before anything is computed, by fastnn's own checks (on
zero-memory stand-ins of the lazy arrays' shapes): a bad shape or hyper-parameter raises at
the call, with fastnn's message. Parameters (``W``, ``b``) are NumPy arrays (array-likes are
converted; a Dask array there is computed), put in the graph once, not once per chunk.

Forward outputs have the input's batch chunks. A backward pass returns ``dA_prev`` with the
cache's chunks and ``dW``/``db`` as one-chunk Dask arrays: each chunk's sum, added in a fixed
pairwise tree over the chunks in batch order (``((c0 + c1) + (c2 + c3)) + ...``), so the bits do not
depend on the scheduler, the workers, or the order in which chunks finish. Compute the three
together (``dask.compute(dA_prev, dW, db)``) so that each chunk's backward runs once.

Each chunk runs fastnn's dispatched kernel (``backend=``: the backend in force, ``auto`` by
default) on ``threads=`` threads (None: the task's share of the process's cores,
:mod:`fastnn.dask._threads`).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import dask
import dask.array as da
import numpy as np

from .. import _params as P
from .. import activations as _act
from .. import conv as _conv
from .. import dnn as _dnn
from .._dispatch import resolve
from ._threads import _check_threads, task_threads

__all__ = [
    "RechunkWarning",
    "conv_forward",
    "conv_backward",
    "pool_forward",
    "pool_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "linear_forward",
    "linear_backward",
    "tree_sum",
]


class RechunkWarning(UserWarning):
    """An input was split along an axis other than the batch's and was rechunked."""


# ----------------------------------------------------------------------------- helpers


def _is_dask(x) -> bool:
    return isinstance(x, da.Array)


def _standin(x, name: str) -> np.ndarray:
    """A zero-memory ndarray with ``x``'s shape and dtype (what fastnn's checks read), checked
    to be numeric as fastnn checks an array."""
    if not _is_dask(x):
        x = np.asarray(x)
    return P.as_array(np.broadcast_to(np.zeros((), dtype=x.dtype), x.shape), name)


def _param(x, name: str) -> np.ndarray:
    """A parameter (W, b) as an ndarray; a Dask array is computed (parameters are small)."""
    return P.as_array(np.asarray(x), name)


def _batch_only(x: da.Array, axis: int, name: str) -> da.Array:
    """``x`` with one chunk along every axis but ``axis``: rechunked, with a warning, if it had more."""
    split = [i for i, c in enumerate(x.chunks) if i != axis and len(c) > 1]
    if not split:
        return x
    y = x.rechunk({i: -1 for i in range(x.ndim) if i != axis})
    warnings.warn(
        f"{name} is chunked along axis {', '.join(map(str, split))} (chunk shape {x.chunksize}); fastnn.dask "
        f"splits a batch along its examples (axis {axis}) only: rechunked to chunk shape {y.chunksize}",
        RechunkWarning, stacklevel=3)
    return y


def _like(x, ref: da.Array, axis: int, name: str) -> da.Array:
    """``x`` (NumPy or Dask) as a Dask array with one chunk along every axis but ``axis``, and
    there ``ref``'s chunks where the lengths agree (else the check that follows reports it)."""
    same = np.shape(x)[axis:axis + 1] == ref.shape[axis:axis + 1]
    if not _is_dask(x):
        x = np.asarray(x)
        return da.from_array(x, chunks=tuple(ref.chunks[axis] if i == axis and same else -1 for i in range(x.ndim)))
    x = _batch_only(x, axis, name)
    return x.rechunk({axis: ref.chunks[axis]}) if same and x.chunks[axis] != ref.chunks[axis] else x


def _delayed_param(x: np.ndarray):
    """One graph key holding a parameter array, which every chunk's task reads (sent to each
    worker once, not with each task)."""
    return dask.delayed(x, pure=True)


@dataclass(frozen=True)
class _Call:
    """The non-array settings of a chunk's call, as one opaque graph argument (Dask looks
    inside tuples, dicts and strings for keys; not inside this)."""

    hparameters: Any = None
    mode: str = "max"
    ties: str = "all"
    backend: Optional[str] = None
    threads: Optional[int] = None
    input_grad: bool = True


def _threads_scope(threads: Optional[int]):
    """A NumPy call's threads: as set (``threads=``), else fastnn's own setting."""
    if threads is None:
        return contextlib.nullcontext()
    _check_threads(threads)
    from ..backends.numba.config import use_num_threads

    return use_num_threads(threads)


def _forward_shape(forward: Callable, A_s: np.ndarray, *args, **kwargs) -> Tuple[tuple, np.dtype]:
    """The shape and dtype of ``forward``'s output for the batch ``A_s`` (a stand-in its checks
    passed): fastnn's own forward on none of its examples, whatever layout and options the
    hparameters ask for; the batch axis is the first."""
    out = forward(A_s[:0], *args, **kwargs)[0]
    return (A_s.shape[0],) + out.shape[1:], out.dtype


def _check_backend(op: str, backend: Optional[str]) -> None:
    resolve(op, backend)  # an unknown name raises fastnn's BackendError here, not in a task


def _blocks(x: da.Array) -> list:
    """``x``'s chunks as Delayed objects, in batch order (one chunk along the other axes)."""
    return list(x.to_delayed(optimize_graph=False).ravel())


def _pairwise(parts: Sequence, add: Callable) -> Any:
    """``parts`` added in a fixed pairwise tree, in order: ``((p0 + p1) + (p2 + p3)) + p4`` for five."""
    parts = list(parts)
    if not parts:
        raise ValueError("nothing to add")
    while len(parts) > 1:
        nxt = [add(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return parts[0]


def tree_sum(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """NumPy arrays added in the fixed pairwise order the backward passes' ``dW``/``db`` use
    (and the data-parallel training's gradients): the same bits whatever order they came in."""
    return _pairwise(arrays, np.add)


def _lazy_tree_sum(parts: List, shape, dtype) -> da.Array:
    total = _pairwise(parts, dask.delayed(np.add, pure=True))
    return da.from_delayed(total, shape=tuple(shape), dtype=dtype, meta=np.empty((0,) * len(shape), dtype))


def _concat(parts: List, shapes: List[tuple], dtype, axis: int) -> da.Array:
    arrays = [da.from_delayed(p, shape=s, dtype=dtype, meta=np.empty((0,) * len(s), dtype)) for p, s in zip(parts, shapes)]
    return arrays[0] if len(arrays) == 1 else da.concatenate(arrays, axis=axis)


def _chunk_shapes(x: da.Array, axis: int) -> List[tuple]:
    return [tuple(n if i == axis else s for i, s in enumerate(x.shape)) for n in x.chunks[axis]]


# ------------------------------------------------------------------ what a chunk runs


def _conv_forward_chunk(A, W, b, call: _Call):
    with task_threads(call.threads):
        return _conv.conv_forward(A, W, b, call.hparameters, backend=call.backend)[0]


def _conv_backward_chunk(dZ, A, W, b, call: _Call):
    with task_threads(call.threads):
        return _conv.conv_backward(dZ, (A, W, b, call.hparameters), backend=call.backend, input_grad=call.input_grad)


def _pool_forward_chunk(A, call: _Call):
    with task_threads(call.threads):
        return _conv.pool_forward(A, call.hparameters, call.mode, backend=call.backend)[0]


def _pool_backward_chunk(dA, A, call: _Call):
    with task_threads(call.threads):
        return _conv.pool_backward(dA, (A, call.hparameters), call.mode, ties=call.ties, backend=call.backend)


def _activation_chunk(fn, Z, call: _Call):
    with task_threads(call.threads):
        return fn(Z, backend=call.backend)[0]


def _activation_backward_chunk(fn, dA, Z, call: _Call):
    with task_threads(call.threads):
        return fn(dA, Z, backend=call.backend)


def _linear_forward_chunk(A, W, b):
    return _dnn.linear_forward(A, W, b)[0]


def _linear_backward_chunk(dZ, A, W, dt):
    return _dnn._linear_backward_sums(dZ, A, W, dt)


# ------------------------------------------------------------------------ convolution


def conv_forward(A_prev, W, b, hparameters, *, backend: Optional[str] = None,
                 threads: Optional[int] = None) -> Tuple[Any, tuple]:
    """:func:`fastnn.conv_forward` on a batch chunked along its examples.

    Parameters
    ----------
    A_prev : dask.array.Array or array_like, shape (m, n_H_prev, n_W_prev, n_C_prev)
        The batch, NHWC, chunked along axis 0 (other chunking is rechunked, with a
        :class:`RechunkWarning`). A NumPy array goes to :func:`fastnn.conv_forward` as it is.
    W, b, hparameters, backend
        As for :func:`fastnn.conv_forward`.
    threads : int, optional
        fastnn's threads per chunk (None: the task's share of the cores).

    Returns
    -------
    Z : dask.array.Array, shape (m, n_H, n_W, n_C)
        Lazy, with ``A_prev``'s batch chunks, in the computed dtype.
    cache : tuple
        ``(A_prev, W, b, hparameters)`` (``A_prev`` as rechunked), for :func:`conv_backward`.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from fastnn.dask import conv_forward
    >>> A = da.ones((10, 6, 6, 3), chunks=(4, 6, 6, 3))
    >>> Z, cache = conv_forward(A, np.ones((3, 3, 3, 2)), np.zeros((1, 1, 1, 2)), {"stride": 1, "pad": 1})
    >>> Z.chunks[0], float(Z[0, 2, 2, 0].compute())
    ((4, 4, 2), 27.0)
    """
    if not _is_dask(A_prev):
        with _threads_scope(threads):
            return _conv.conv_forward(A_prev, W, b, hparameters, backend=backend)
    _check_threads(threads)
    W, b = _param(W, "W"), _param(b, "b")
    A_s = _standin(A_prev, "A_prev")
    P.conv_params(A_s, W, b, hparameters)
    shape, dt = _forward_shape(_conv.conv_forward, A_s, W, b, hparameters, backend=backend)
    A_prev = _batch_only(A_prev, 0, "A_prev")
    Z = da.map_blocks(
        _conv_forward_chunk, A_prev, _delayed_param(W), _delayed_param(b), _Call(hparameters, backend=backend, threads=threads),
        chunks=(A_prev.chunks[0],) + tuple((n,) for n in shape[1:]), dtype=dt, meta=np.empty((0,) * len(shape), dt))
    return Z, (A_prev, W, b, hparameters)


def _unpack(cache, n: int, names: str) -> tuple:
    return _conv._unpack_cache(cache, n, names)


def conv_backward(dZ, cache, *, backend: Optional[str] = None, input_grad: bool = True,
                  threads: Optional[int] = None) -> Tuple[Any, Any, Any]:
    """:func:`fastnn.conv_backward` chunk by chunk; ``dW`` and ``db`` summed over the chunks in a fixed tree.

    Parameters
    ----------
    dZ : dask.array.Array or array_like, shape (m, n_H, n_W, n_C)
        The gradient of the forward output; rechunked to the cache's batch chunks.
    cache : tuple
        ``(A_prev, W, b, hparameters)`` from :func:`conv_forward`. With NumPy ``dZ`` and
        ``A_prev`` this is :func:`fastnn.conv_backward`.
    backend, input_grad
        As for :func:`fastnn.conv_backward`.
    threads : int, optional
        fastnn's threads per chunk (None: the task's share of the cores).

    Returns
    -------
    dA_prev : dask.array.Array or None
        Lazy, with ``A_prev``'s chunks (None with ``input_grad=False``).
    dW, db : dask.array.Array
        Lazy, one chunk each: the chunks' sums added pairwise in batch order.

    Examples
    --------
    >>> import dask, numpy as np, dask.array as da
    >>> from fastnn.dask import conv_forward, conv_backward
    >>> A = da.ones((10, 6, 6, 3), chunks=(4, 6, 6, 3))
    >>> Z, cache = conv_forward(A, np.ones((3, 3, 3, 2)), np.zeros((1, 1, 1, 2)), {"stride": 1, "pad": 1})
    >>> dA, dW, db = dask.compute(*conv_backward(da.ones_like(Z), cache))
    >>> dA.shape, float(db[0, 0, 0, 0])
    ((10, 6, 6, 3), 360.0)
    """
    A_prev, W, b, hparameters = _unpack(cache, 4, "(A_prev, W, b, hparameters)")
    if not _is_dask(dZ) and not _is_dask(A_prev):
        with _threads_scope(threads):
            return _conv.conv_backward(dZ, cache, backend=backend, input_grad=input_grad)
    _check_threads(threads)
    if not isinstance(input_grad, bool):
        raise TypeError(f"input_grad must be True or False, got {type(input_grad).__name__}")
    W, b = _param(W, "cache's W"), _param(b, "cache's b")
    if not _is_dask(A_prev):
        A_prev = _like(A_prev, dZ, 0, "cache's A_prev")
    A_prev = _batch_only(A_prev, 0, "cache's A_prev")
    dZ_s, A_s = _standin(dZ, "dZ"), _standin(A_prev, "cache's A_prev")
    P.conv_params(A_s, W, b, hparameters)
    shape = _forward_shape(_conv.conv_forward, A_s, W, b, hparameters)[0]
    if dZ_s.shape != shape:
        raise ValueError(f"dZ must have the shape of the forward output {shape}, got {dZ_s.shape}")
    dt = P.compute_dtype(A_s, W, b, dZ_s)
    _check_backend("conv_backward", backend)
    dZ = _like(dZ, A_prev, 0, "dZ")
    call = _Call(hparameters, backend=backend, threads=threads, input_grad=input_grad)
    W_d, b_d = _delayed_param(W), _delayed_param(b)
    chunk = dask.delayed(_conv_backward_chunk, nout=3, pure=True)
    parts = [chunk(dz, a, W_d, b_d, call) for dz, a in zip(_blocks(dZ), _blocks(A_prev))]
    dA_prev = _concat([q[0] for q in parts], _chunk_shapes(A_prev, 0), dt, 0) if input_grad else None
    dW = _lazy_tree_sum([q[1] for q in parts], W.shape, dt)
    db = _lazy_tree_sum([q[2] for q in parts], b.shape, dt)
    return dA_prev, dW, db


# ---------------------------------------------------------------------------- pooling


def pool_forward(A_prev, hparameters, mode: str = "max", *, backend: Optional[str] = None,
                 threads: Optional[int] = None) -> Tuple[Any, tuple]:
    """:func:`fastnn.pool_forward` on a batch chunked along its examples.

    Parameters
    ----------
    A_prev : dask.array.Array or array_like, shape (m, n_H_prev, n_W_prev, n_C)
        The batch, NHWC, chunked along axis 0 (other chunking is rechunked, with a
        :class:`RechunkWarning`). A NumPy array goes to :func:`fastnn.pool_forward` as it is.
    hparameters, mode, backend
        As for :func:`fastnn.pool_forward`.
    threads : int, optional
        fastnn's threads per chunk (None: the task's share of the cores).

    Returns
    -------
    A : dask.array.Array, shape (m, n_H, n_W, n_C)
        Lazy, with ``A_prev``'s batch chunks.
    cache : tuple
        ``(A_prev, hparameters)`` (``A_prev`` as rechunked), for :func:`pool_backward`.

    Examples
    --------
    >>> import dask.array as da
    >>> from fastnn.dask import pool_forward
    >>> A, cache = pool_forward(da.arange(32.0, chunks=16).reshape(2, 4, 4, 1).rechunk((1, 4, 4, 1)), {"f": 2, "stride": 2})
    >>> A.chunks[0], A[1, :, :, 0].compute().tolist()
    ((1, 1), [[21.0, 23.0], [29.0, 31.0]])
    """
    if not _is_dask(A_prev):
        with _threads_scope(threads):
            return _conv.pool_forward(A_prev, hparameters, mode, backend=backend)
    _check_threads(threads)
    A_s = _standin(A_prev, "A_prev")
    P.pool_params(A_s, hparameters, mode)
    shape, dt = _forward_shape(_conv.pool_forward, A_s, hparameters, mode, backend=backend)
    A_prev = _batch_only(A_prev, 0, "A_prev")
    A = da.map_blocks(
        _pool_forward_chunk, A_prev, _Call(hparameters, mode=mode, backend=backend, threads=threads),
        chunks=(A_prev.chunks[0],) + tuple((n,) for n in shape[1:]), dtype=dt, meta=np.empty((0,) * len(shape), dt))
    return A, (A_prev, hparameters)


def pool_backward(dA, cache, mode: str = "max", *, ties: str = "all", backend: Optional[str] = None,
                  threads: Optional[int] = None):
    """:func:`fastnn.pool_backward` chunk by chunk.

    Parameters
    ----------
    dA : dask.array.Array or array_like, shape (m, n_H, n_W, n_C)
        The gradient of the pooling's output; rechunked to the cache's batch chunks.
    cache : tuple
        ``(A_prev, hparameters)`` from :func:`pool_forward` (NumPy ``dA`` and ``A_prev``: this is
        :func:`fastnn.pool_backward`).
    mode, ties, backend
        As for :func:`fastnn.pool_backward`.
    threads : int, optional
        fastnn's threads per chunk (None: the task's share of the cores).

    Returns
    -------
    dA_prev : dask.array.Array
        Lazy, with ``A_prev``'s chunks.

    Examples
    --------
    >>> import dask.array as da
    >>> from fastnn.dask import pool_forward, pool_backward
    >>> A, cache = pool_forward(da.arange(32.0).reshape(2, 4, 4, 1).rechunk((1, 4, 4, 1)), {"f": 2, "stride": 2})
    >>> pool_backward(da.ones_like(A), cache)[1, :2, :2, 0].compute().tolist()
    [[0.0, 0.0], [0.0, 1.0]]
    """
    A_prev, hparameters = _unpack(cache, 2, "(A_prev, hparameters)")
    if not _is_dask(dA) and not _is_dask(A_prev):
        with _threads_scope(threads):
            return _conv.pool_backward(dA, cache, mode, ties=ties, backend=backend)
    _check_threads(threads)
    if not _is_dask(A_prev):
        A_prev = _like(A_prev, dA, 0, "cache's A_prev")
    A_prev = _batch_only(A_prev, 0, "cache's A_prev")
    A_s, dA_s = _standin(A_prev, "cache's A_prev"), _standin(dA, "dA")
    P.pool_params(A_s, hparameters, mode, ties)
    shape = _forward_shape(_conv.pool_forward, A_s, hparameters, mode)[0]
    if dA_s.shape != shape:
        raise ValueError(f"dA must have the shape of the forward output {shape}, got {dA_s.shape}")
    dt = P.compute_dtype(A_s, dA_s)
    _check_backend("pool_backward", backend)
    dA = _like(dA, A_prev, 0, "dA")
    return da.map_blocks(
        _pool_backward_chunk, dA, A_prev, _Call(hparameters, mode=mode, ties=ties, backend=backend, threads=threads),
        chunks=A_prev.chunks, dtype=dt, meta=np.empty((0, 0, 0, 0), dt))


# ------------------------------------------------------------------------ activations


def _activation(op: str, fn, Z, backend, threads):
    if not _is_dask(Z):
        with _threads_scope(threads):
            return fn(Z, backend=backend)
    _check_threads(threads)
    dt = P.compute_dtype(_standin(Z, "Z"))
    _check_backend(op, backend)
    A = da.map_blocks(_activation_chunk, fn, Z, _Call(backend=backend, threads=threads), dtype=dt,
                      meta=np.empty((0,) * Z.ndim, dt))
    return A, Z


def _activation_backward(op: str, fn, dA, cache, backend, threads):
    Z = cache
    if not _is_dask(dA) and not _is_dask(Z):
        with _threads_scope(threads):
            return fn(dA, Z, backend=backend)
    _check_threads(threads)
    Z_s, dA_s = _standin(Z, "cache (Z)"), _standin(dA, "dA")
    P.check_same_shape(dA_s, "dA", Z_s, "the cached Z")
    dt = P.compute_dtype(dA_s, Z_s)
    _check_backend(op, backend)
    if not _is_dask(Z):
        Z = da.from_array(np.asarray(Z), chunks=dA.chunks)
    if not _is_dask(dA):
        dA = da.from_array(np.asarray(dA), chunks=Z.chunks)
    elif dA.chunks != Z.chunks:
        dA = dA.rechunk(Z.chunks)
    return da.map_blocks(_activation_backward_chunk, fn, dA, Z, _Call(backend=backend, threads=threads), dtype=dt,
                         meta=np.empty((0,) * Z.ndim, dt))


def relu(Z, *, backend: Optional[str] = None, threads: Optional[int] = None):
    """:func:`fastnn.relu` chunk by chunk.

    Parameters
    ----------
    Z : dask.array.Array or array_like
        Any shape and chunks (elementwise: no rechunking). NumPy goes to :func:`fastnn.relu`.
    backend : str, optional
        As for :func:`fastnn.relu`.
    threads : int, optional
        fastnn's threads per chunk (None: the task's share of the cores).

    Returns
    -------
    A : dask.array.Array
        Lazy, with Z's chunks.
    cache : dask.array.Array
        ``Z``, for :func:`relu_backward`.

    Examples
    --------
    >>> import dask.array as da
    >>> from fastnn.dask import relu
    >>> A, cache = relu(da.arange(-2.0, 2.0, chunks=2))
    >>> A.compute().tolist()
    [0.0, 0.0, 0.0, 1.0]
    """
    return _activation("relu", _act.relu, Z, backend, threads)


def relu_backward(dA, cache, *, backend: Optional[str] = None, threads: Optional[int] = None):
    """:func:`fastnn.relu_backward` chunk by chunk.

    Parameters
    ----------
    dA : dask.array.Array or array_like
        The gradient of the activation, Z's shape (realigned to Z's chunks).
    cache : dask.array.Array or array_like
        ``Z``, from :func:`relu`.
    backend : str, optional
        As for :func:`fastnn.relu_backward`.
    threads : int, optional
        fastnn's threads per chunk (None: the task's share of the cores).

    Returns
    -------
    dZ : dask.array.Array
        Lazy, with Z's chunks.

    Examples
    --------
    >>> import dask.array as da
    >>> from fastnn.dask import relu, relu_backward
    >>> A, cache = relu(da.arange(-2.0, 2.0, chunks=2))
    >>> relu_backward(da.ones(4, chunks=2), cache).compute().tolist()
    [0.0, 0.0, 0.0, 1.0]
    """
    return _activation_backward("relu_backward", _act.relu_backward, dA, cache, backend, threads)


def sigmoid(Z, *, backend: Optional[str] = None, threads: Optional[int] = None):
    """:func:`fastnn.sigmoid` chunk by chunk (any chunks: elementwise); as :func:`relu`, returns ``(A, Z)``.

    Examples
    --------
    >>> import dask.array as da
    >>> from fastnn.dask import sigmoid
    >>> A, cache = sigmoid(da.zeros(4, chunks=2))
    >>> A.compute().tolist()
    [0.5, 0.5, 0.5, 0.5]
    """
    return _activation("sigmoid", _act.sigmoid, Z, backend, threads)


def sigmoid_backward(dA, cache, *, backend: Optional[str] = None, threads: Optional[int] = None):
    """:func:`fastnn.sigmoid_backward` chunk by chunk; as :func:`relu_backward`, ``dZ`` lazy with Z's chunks.

    Examples
    --------
    >>> import dask.array as da
    >>> from fastnn.dask import sigmoid, sigmoid_backward
    >>> A, cache = sigmoid(da.zeros(4, chunks=2))
    >>> sigmoid_backward(da.ones(4, chunks=2), cache).compute().tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    return _activation_backward("sigmoid_backward", _act.sigmoid_backward, dA, cache, backend, threads)


# ------------------------------------------------------------------------------ dense


def linear_forward(A, W, b):
    """:func:`fastnn.linear_forward` on columns chunked along the examples (axis 1).

    Parameters
    ----------
    A : dask.array.Array or array_like, shape (n_prev, m)
        One column per example, chunked along axis 1 (split along axis 0: rechunked, with a
        :class:`RechunkWarning`). NumPy goes to :func:`fastnn.linear_forward`.
    W, b
        As for :func:`fastnn.linear_forward`.

    Returns
    -------
    Z : dask.array.Array, shape (n, m)
        Lazy, with A's column chunks (NumPy's matmul per chunk, as fastnn's).
    cache : tuple
        ``(A, W, b)`` (``A`` as rechunked), for :func:`linear_backward`.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from fastnn.dask import linear_forward
    >>> Z, cache = linear_forward(da.ones((3, 5), chunks=(3, 2)), np.ones((2, 3)), np.zeros((2, 1)))
    >>> Z.chunks, Z.compute()[:, 0].tolist()
    (((2,), (2, 2, 1)), [3.0, 3.0])
    """
    if not _is_dask(A):
        return _dnn.linear_forward(A, W, b)
    W, b = _param(W, "W"), _param(b, "b")
    dt = _dnn._linear_dtype(_standin(A, "A"), W, b)
    A = _batch_only(A, 1, "A")
    Z = da.map_blocks(_linear_forward_chunk, A, _delayed_param(W), _delayed_param(b),
                      chunks=((W.shape[0],), A.chunks[1]), dtype=dt, meta=np.empty((0, 0), dt))
    return Z, (A, W, b)


def linear_backward(dZ, cache):
    """:func:`fastnn.linear_backward` over column chunks.

    Parameters
    ----------
    dZ : dask.array.Array or array_like, shape (n, m)
        The gradient of Z; rechunked to the cache's column chunks.
    cache : tuple
        ``(A_prev, W, b)`` from :func:`linear_forward` (NumPy ``dZ`` and ``A_prev``: this is
        :func:`fastnn.linear_backward`).

    Returns
    -------
    dA_prev : dask.array.Array, shape (n_prev, m)
        Lazy, with the cache's column chunks.
    dW, db : dask.array.Array
        Lazy, one chunk each: the chunks' ``dZ A_prev.T`` and ``sum(dZ)`` added in a fixed pairwise
        tree, divided once by m (the averages over the whole batch, as fastnn's).

    Examples
    --------
    >>> import dask, numpy as np, dask.array as da
    >>> from fastnn.dask import linear_forward, linear_backward
    >>> Z, cache = linear_forward(da.ones((3, 5), chunks=(3, 2)), np.ones((2, 3)), np.zeros((2, 1)))
    >>> dA, dW, db = dask.compute(*linear_backward(da.ones_like(Z), cache))
    >>> dA.shape, dW.tolist(), db.tolist()
    ((3, 5), [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], [[1.0], [1.0]])
    """
    if not isinstance(cache, (tuple, list)) or len(cache) != 3:
        raise ValueError("cache must be the linear cache (A_prev, W, b)")
    A_prev, W, b = cache
    if not _is_dask(dZ) and not _is_dask(A_prev):
        return _dnn.linear_backward(dZ, cache)
    W, b = _param(W, "cache's W"), _param(b, "cache's b")
    if not _is_dask(A_prev):
        A_prev = _like(A_prev, dZ, 1, "cache's A_prev")
    A_prev = _batch_only(A_prev, 1, "cache's A_prev")
    dt = _dnn._linear_backward_dtype(_standin(dZ, "dZ"), _standin(A_prev, "cache's A_prev"), W, b)
    dZ = _like(dZ, A_prev, 1, "dZ")
    chunk = dask.delayed(_linear_backward_chunk, nout=3, pure=True)
    W_d = _delayed_param(W)
    parts = [chunk(dz, a, W_d, dt) for dz, a in zip(_blocks(dZ), _blocks(A_prev))]
    m = A_prev.shape[1]
    dA_prev = _concat([q[0] for q in parts], _chunk_shapes(A_prev, 1), dt, 1)
    # The averages over the m examples (zero gradients for m = 0), as fastnn.linear_backward.
    dW = _lazy_tree_sum([q[1] for q in parts], W.shape, dt) / max(m, 1)
    db = (_lazy_tree_sum([q[2] for q in parts], (W.shape[0], 1), dt) / max(m, 1)).reshape(b.shape)
    return dA_prev, dW, db
