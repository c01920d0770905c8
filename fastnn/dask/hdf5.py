"""HDF5 data sets (the course's format) as Dask arrays chunked along the examples.

:func:`read_hdf5` reads nothing until a chunk is computed; each chunk's task opens the file,
reads its rows (``h5py``) and closes it. The source is a small picklable object (path and
key), so the same array runs on the local schedulers and on ``dask.distributed`` workers that
see the file. Memory: a computation that streams (forward passes ending in a reduction, or
stored with ``dask.array.store``/``to_hdf5``) holds a few chunks per running task, not the
data set (``docs/bench/2026-12-06-dask.md`` has the measured peaks).
"""

from __future__ import annotations

import os
from typing import Union

import dask.array as da
import numpy as np
from dask.utils import parse_bytes

__all__ = ["read_hdf5", "HDF5Source", "examples_per_chunk"]

PathLike = Union[str, "os.PathLike[str]"]


class HDF5Source:
    """One data set of an HDF5 file, read on demand: ``shape``, ``dtype``, ``ndim`` and
    ``source[slices]`` (what ``dask.array.from_array`` asks of an array), picklable."""

    def __init__(self, path: PathLike, key: str) -> None:
        import h5py

        self.path, self.key = os.fspath(path), str(key)
        try:
            with h5py.File(self.path, "r") as f:
                if self.key not in f:
                    raise KeyError(f"{self.path} has no data set {self.key!r}; it has {sorted(f.keys())}")
                dset = f[self.key]
                if not isinstance(dset, h5py.Dataset):
                    raise KeyError(f"{self.path}: {self.key!r} is a group, not a data set")
                self.shape, self.dtype = tuple(dset.shape), dset.dtype
        except OSError as exc:
            raise OSError(f"cannot read {self.path} as HDF5 ({exc})") from None
        self._stamp = os.stat(self.path).st_mtime_ns

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[self.key][index]

    def __dask_tokenize__(self):
        return ("fastnn.dask.HDF5Source", self.path, self.key, self._stamp)

    def __repr__(self) -> str:
        return f"HDF5Source({self.path!r}, {self.key!r}, shape={self.shape}, dtype={self.dtype})"


def examples_per_chunk(shape, dtype, chunks: Union[int, str, None]) -> int:
    """Examples per chunk: ``chunks`` itself (an int), or as many as fit in ``chunks`` bytes
    (``"64 MiB"``; None: Dask's ``array.chunk-size``), at least one."""
    if isinstance(chunks, bool) or (chunks is not None and not isinstance(chunks, (int, str))):
        raise TypeError(f"chunks must be an int (examples), a size such as '64 MiB', or None, got {chunks!r}")
    if isinstance(chunks, int):
        if chunks < 1:
            raise ValueError(f"chunks must be a positive number of examples, got {chunks}")
        return chunks
    if chunks is None:
        import dask

        chunks = dask.config.get("array.chunk-size")
    limit = parse_bytes(chunks)
    per_example = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    return max(1, limit // max(per_example, 1))


def read_hdf5(path: PathLike, key: str, chunks: Union[int, str, None] = None) -> da.Array:
    """The data set ``key`` of the HDF5 file ``path`` as a lazy Dask array, chunked along axis 0.

    Parameters
    ----------
    path : str or os.PathLike
        The file (e.g. the course's ``train_catvnoncat.h5``).
    key : str
        The data set (``"train_set_x"``).
    chunks : int or str, optional
        Examples per chunk, or a size per chunk (``"32 MiB"``); default Dask's ``array.chunk-size``.
        Peak memory grows with it, not with the data set.

    Returns
    -------
    x : dask.array.Array
        In the file's dtype (the course's images are uint8: ``x.astype(np.float32) / 255`` stays lazy).

    Examples
    --------
    >>> import h5py, numpy as np, tempfile, os
    >>> from fastnn.dask import read_hdf5
    >>> path = os.path.join(tempfile.mkdtemp(), "x.h5")
    >>> with h5py.File(path, "w") as f:
    ...     f["x"] = np.arange(24.0).reshape(6, 2, 2, 1)
    >>> x = read_hdf5(path, "x", chunks=4)
    >>> x.chunks[0], float(x.sum().compute())
    ((4, 2), 276.0)
    """
    source = HDF5Source(path, key)
    if source.ndim < 1:
        raise ValueError(f"{source.path}: {key!r} is a scalar, not a batch of examples")
    n = examples_per_chunk(source.shape, source.dtype, chunks)
    return da.from_array(source, chunks=(n,) + tuple(-1 for _ in source.shape[1:]), asarray=True, fancy=False,
                         meta=np.empty((0,) * source.ndim, source.dtype))
