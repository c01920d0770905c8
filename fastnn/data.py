"""The course's cat/non-cat HDF5 data sets.

Files: ``train_catvnoncat.h5`` (keys ``train_set_x`` (209, 64, 64, 3) uint8, ``train_set_y``,
``list_classes``) and ``test_catvnoncat.h5`` (``test_set_x`` (50, 64, 64, 3), ``test_set_y``,
``list_classes``). They come with the course (Coursera's Deep Learning specialisation);
fastnn does not ship them. Directory lookup: the ``path`` argument, else ``$FASTNN_DATA``,
else ``../shared/datasets`` and ``./datasets`` relative to the working directory.

:func:`read_images` reads images to classify (``fastnn train --predict``): one image file,
or an ``.h5`` in the course's layout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

__all__ = ["DataError", "find_data_dir", "load_dataset", "load_cat_data", "flatten_images", "read_images"]

TRAIN_FILE = "train_catvnoncat.h5"
TEST_FILE = "test_catvnoncat.h5"
WHERE = (
    "the course's cat/non-cat files (train_catvnoncat.h5, test_catvnoncat.h5) come with "
    "Coursera's Deep Learning course; put them in a directory and pass it (`fastnn train --data DIR`, "
    "or load_dataset(path) / load_cat_data(path)), or set $FASTNN_DATA to it"
)


class DataError(FileNotFoundError):
    """A missing or malformed data file (the message names the file and key)."""


def find_data_dir(path: Union[str, os.PathLike, None] = None) -> Path:
    """The directory holding the course's files (see the module docstring for the search order)."""
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    else:
        env = os.environ.get("FASTNN_DATA")
        if env:
            candidates.append(Path(env))
        candidates += [Path("..") / "shared" / "datasets", Path("datasets")]
    for c in candidates:
        if (c / TRAIN_FILE).is_file() and (c / TEST_FILE).is_file():
            return c
    raise DataError(f"no {TRAIN_FILE} and {TEST_FILE} in {[str(c) for c in candidates]}: {WHERE}")


def _read(file: Path, keys: Tuple[str, ...]):
    import h5py

    if not file.is_file():
        raise DataError(f"missing data file {file}: {WHERE}")
    try:
        f = h5py.File(file, "r")
    except OSError as exc:
        raise DataError(f"{file} is not a readable HDF5 file ({exc})") from exc
    with f:
        missing = [k for k in keys if k not in f]
        if missing:
            raise DataError(f"{file} lacks key(s) {missing}; it has {sorted(f.keys())}")
        return tuple(np.array(f[k][:]) for k in keys)


def load_dataset(path: Union[str, os.PathLike, None] = None):
    """The course's ``load_dataset()``: (train_x_orig, train_y, test_x_orig, test_y, classes).

    ``train_x_orig`` is (209, 64, 64, 3) uint8, ``train_y`` is (1, 209), likewise for test.
    """
    d = find_data_dir(path)
    train_x, train_y = _read(d / TRAIN_FILE, ("train_set_x", "train_set_y"))
    test_x, test_y, classes = _read(d / TEST_FILE, ("test_set_x", "test_set_y", "list_classes"))
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"{name}: {name}_set_x has {x.shape[0]} images but {name}_set_y has {y.shape[0]} labels"
            )
        if x.ndim != 4:
            raise DataError(f"{name}_set_x must be (m, h, w, c) images, got shape {x.shape}")
    return train_x, train_y.reshape(1, -1), test_x, test_y.reshape(1, -1), classes


def flatten_images(x_orig: np.ndarray, dtype=np.float64) -> np.ndarray:
    """(m, h, w, c) uint8 images -> (h*w*c, m) columns scaled to [0, 1], as the course does."""
    dtype = np.dtype(dtype)
    return x_orig.reshape(x_orig.shape[0], -1).T.astype(dtype) / dtype.type(255)


def load_cat_data(path: Union[str, os.PathLike, None] = None, *, layout: str = "columns", dtype=np.float64):
    """Ready-to-train arrays: ``layout="columns"`` gives (12288, m) for the dense network,
    ``layout="nhwc"`` gives (m, 64, 64, 3) in [0, 1] for a ConvNet. Returns
    (train_x, train_y, test_x, test_y, classes)."""
    train_x, train_y, test_x, test_y, classes = load_dataset(path)
    if layout == "columns":
        return flatten_images(train_x, dtype), train_y, flatten_images(test_x, dtype), test_y, classes
    if layout == "nhwc":
        dt = np.dtype(dtype)
        return train_x.astype(dt) / dt.type(255), train_y, test_x.astype(dt) / dt.type(255), test_y, classes
    raise ValueError(f"layout must be 'columns' or 'nhwc', got {layout!r}")


def read_images(path: Union[str, os.PathLike]) -> Tuple[np.ndarray, Optional[np.ndarray], List[str]]:
    """Images to classify: ``(x, y, names)`` with ``x`` (m, h, w, 3) floats in [0, 1] (integer
    pixels are divided by 255), ``y`` the m labels or None, ``names`` one per image.

    An ``.h5``/``.hdf5`` file holds the images under the first key ending in ``_x`` (sorted,
    e.g. ``test_set_x``) and optional labels under the same name ending in ``_y``. Any other
    file is one image, read with Pillow (else matplotlib); grey images get three channels and
    an alpha channel is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no image file {path}")
    if path.suffix.lower() in (".h5", ".hdf5"):
        x, y = _read_h5_images(path)
        names = [f"{path.name}[{i}]" for i in range(x.shape[0])]
    else:
        img = _read_image_file(path)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        x, y, names = img[None, :, :, :3], None, [path.name]
    x = x / 255.0 if x.dtype.kind in "ui" else x.astype(np.float64)
    return x, y, names


def _read_h5_images(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path} is not a readable HDF5 file ({exc})") from None
    with f:
        xs = sorted(k for k in f.keys() if k.endswith("_x"))
        if not xs:
            raise DataError(f"{path} has no images: expected a key such as 'test_set_x'; it has {sorted(f.keys())}")
        x = np.array(f[xs[0]][:])
        ykey = xs[0][:-2] + "_y"
        y = np.array(f[ykey][:]).reshape(-1) if ykey in f else None
    if x.ndim != 4:
        raise DataError(f"{path}: {xs[0]} must be (m, h, w, c) images, got shape {x.shape}")
    return x, y


def _read_image_file(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise DataError(f"{path} is not a readable image ({exc})") from None
    try:
        import matplotlib.image as mpimg
    except ImportError:
        raise DataError(f"{path}: reading an image needs Pillow or matplotlib (pip install pillow); "
                        f"or pass an .h5 file") from None
    try:
        return np.asarray(mpimg.imread(path))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable image ({exc})") from None
