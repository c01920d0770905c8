"""``fastnn.dask``: fastnn on Dask arrays (out of core) and data-parallel training on a Dask cluster.

An optional extra: ``pip install 'fastnn[dask]'``. ``import fastnn`` never imports Dask; this
module does, and says how to install it when it is missing.

* :mod:`.ops`: ``conv_forward``, ``conv_backward``, ``pool_forward``, ``pool_backward``,
  ``relu``/``relu_backward``, ``sigmoid``/``sigmoid_backward``, ``linear_forward``/``linear_backward``
  with the course's signatures and caches, on Dask arrays chunked along the batch axis (NumPy
  inputs go straight to fastnn); ``dW``/``db`` added over the chunks in a fixed tree.
* :mod:`.hdf5`: :func:`read_hdf5`, an HDF5 data set as a lazy array chunked along its examples,
  streamed through the ops with memory set by the chunk size.
* :mod:`.parallel` (needs ``dask.distributed``): :func:`connect` (``"local:N"`` or a scheduler's
  address), :func:`local_cluster`, :class:`DataParallel` (each step's batch cut into shards
  whose gradients the workers compute, summed on the driver in a fixed order), what
  ``fastnn train --dask`` uses.

Example::

    import dask, numpy as np
    from fastnn.dask import read_hdf5, conv_forward, relu, pool_forward
    X = read_hdf5("images.h5", "x", chunks="32 MiB").astype(np.float32)
    Z, _ = conv_forward(X, W1, b1, {"stride": 1, "pad": 1})
    A, _ = relu(Z)
    P, _ = pool_forward(A, {"f": 2, "stride": 2})
    features = P.mean(axis=(1, 2)).compute()      # streams: a few chunks in memory at a time
"""

from __future__ import annotations

try:
    import dask  # noqa: F401
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without dask
    raise ImportError(
        "fastnn.dask needs Dask: install the extra with  pip install 'fastnn[dask]'  "
        f"(dask[array,distributed]); importing it failed: {exc}"
    ) from exc

from ._threads import task_threads, tasks_at_once, threads_per_task
from .hdf5 import HDF5Source, examples_per_chunk, read_hdf5
from .ops import (
    RechunkWarning,
    conv_backward,
    conv_forward,
    linear_backward,
    linear_forward,
    pool_backward,
    pool_forward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    tree_sum,
)

_PARALLEL = ("DataParallel", "connect", "local_cluster", "parse_address")


def __getattr__(name):
    # The data-parallel part needs dask.distributed, imported only when it is asked for.
    if name in _PARALLEL:
        from . import parallel

        return getattr(parallel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "conv_forward", "conv_backward", "pool_forward", "pool_backward", "relu", "relu_backward",
    "sigmoid", "sigmoid_backward", "linear_forward", "linear_backward", "tree_sum", "RechunkWarning",
    "read_hdf5", "HDF5Source", "examples_per_chunk",
    "task_threads", "tasks_at_once", "threads_per_task",
    *_PARALLEL,
]
