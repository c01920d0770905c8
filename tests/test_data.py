"""The course's HDF5 data: loading, clear errors, and the seeds' 5-layer network trained on it."""

import contextlib
import os
import pathlib

import numpy as np
import pytest

import fastnn
from fastnn import data
from fastnn.testing import course

REPO = pathlib.Path(__file__).resolve().parents[1]


def _data_dir():
    for candidate in (os.environ.get("FASTNN_DATA"), REPO.parent / "shared" / "datasets"):
        if candidate and (pathlib.Path(candidate) / data.TRAIN_FILE).is_file():
            return pathlib.Path(candidate)
    return None


DATA = _data_dir()
needs_data = pytest.mark.skipif(
    DATA is None, reason="course data not found: set FASTNN_DATA or put the files in ../shared/datasets"
)


@needs_data
def test_load_dataset_shapes():
    train_x, train_y, test_x, test_y, classes = data.load_dataset(DATA)
    assert train_x.shape == (209, 64, 64, 3) and train_x.dtype == np.uint8
    assert train_y.shape == (1, 209) and test_x.shape == (50, 64, 64, 3) and test_y.shape == (1, 50)
    assert [c.decode() for c in classes] == ["non-cat", "cat"]
    cols = data.load_cat_data(DATA)
    assert cols[0].shape == (12288, 209) and cols[0].max() <= 1.0
    np.testing.assert_allclose(cols[0][:5, 0], train_x.reshape(209, -1)[0, :5] / 255)
    nhwc = data.load_cat_data(DATA, layout="nhwc", dtype=np.float32)
    assert nhwc[0].shape == (209, 64, 64, 3) and nhwc[0].dtype == np.float32


def test_missing_files_say_where_they_come_from(tmp_path):
    with pytest.raises(data.DataError, match="train_catvnoncat.h5.*Coursera"):
        data.load_dataset(tmp_path)


def test_missing_key_and_mismatched_lengths(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / data.TRAIN_FILE, "w") as f:
        f["train_set_x"] = np.zeros((3, 4, 4, 3), np.uint8)
        f["train_set_y"] = np.zeros(2, np.int64)
    with h5py.File(tmp_path / data.TEST_FILE, "w") as f:
        f["test_set_x"] = np.zeros((2, 4, 4, 3), np.uint8)
        f["test_set_y"] = np.zeros(2, np.int64)
    with pytest.raises(data.DataError, match=r"test_catvnoncat.h5 lacks key\(s\) \['list_classes'\]"):
        data.load_dataset(tmp_path)
    with h5py.File(tmp_path / data.TEST_FILE, "a") as f:
        f["list_classes"] = np.array([b"non-cat", b"cat"])
    with pytest.raises(data.DataError, match="train_set_x has 3 images but train_set_y has 2 labels"):
        data.load_dataset(tmp_path)
    (tmp_path / data.TEST_FILE).write_text("not hdf5")
    with pytest.raises(data.DataError, match="not a readable HDF5 file"):
        data.load_dataset(tmp_path)


def test_env_var_is_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DataError, match=str(tmp_path)):
        data.find_data_dir()


@needs_data
def test_five_layer_network_reproduces_the_course(capsys):
    """[12288, 20, 7, 5, 1], seed 1, 1/sqrt init, lr 0.0075, 2500 iterations: the notebook's 25 printed
    cost lines (0.771749 at iteration 0 ... 0.092878 at 2400), 80% test."""
    train_x, train_y, test_x, test_y, _ = data.load_cat_data(DATA)
    capsys.readouterr()
    try:  # one BLAS thread: these small GEMMs gain nothing from two, and a busy machine makes two crawl
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1, user_api="blas")
    except ImportError:
        limit = contextlib.nullcontext()
    with limit:
        np.random.seed(1)
        params, costs = fastnn.L_layer_model(train_x, train_y, list(course.L_LAYER_DIMS), learning_rate=0.0075,
                                             num_iterations=2500, print_cost=True, return_costs=True)
    # The course's printed cost curve, line for line: what the notebook prints, fastnn prints.
    assert capsys.readouterr().out.splitlines() == [course.course_cost_line(i) for i in course.L_LAYER_COSTS]
    assert [f"{c:f}" for c in costs] == list(course.L_LAYER_COSTS.values())
    train_acc = np.mean(fastnn.predict(train_x, train_y, params, print_accuracy=False) == train_y)
    test_acc = np.mean(fastnn.predict(test_x, test_y, params, print_accuracy=False) == test_y)
    assert round(test_acc * 50) == 40  # 80%
    assert round(train_acc * 209) == 206  # 98.56%


def test_read_images_from_an_h5_and_an_image_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    with h5py.File(tmp_path / "set.h5", "w") as f:
        f["test_set_x"] = x
        f["test_set_y"] = np.array([[1, 0]])
    images, labels, names = data.read_images(tmp_path / "set.h5")
    np.testing.assert_array_equal(images, x / 255.0)
    assert images.dtype == np.float64 and labels.tolist() == [1, 0]
    assert names == ["set.h5[0]", "set.h5[1]"]
    with h5py.File(tmp_path / "nolabels.h5", "w") as f:
        f["a_x"] = x
    assert data.read_images(tmp_path / "nolabels.h5")[1] is None

    Image = pytest.importorskip("PIL.Image")
    grey = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    images, labels, names = data.read_images(tmp_path / "grey.png")
    assert images.shape == (1, 2, 2, 3) and labels is None and names == ["grey.png"]
    np.testing.assert_array_equal(images[0, :, :, 1], grey / 255.0)


def test_read_images_errors_name_the_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    with pytest.raises(data.DataError, match="no image file .*missing.png"):
        data.read_images(tmp_path / "missing.png")
    with h5py.File(tmp_path / "nox.h5", "w") as f:
        f["test_set_y"] = np.zeros(2)
    with pytest.raises(data.DataError, match=r"nox.h5 has no images.*\['test_set_y'\]"):
        data.read_images(tmp_path / "nox.h5")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["test_set_x"] = np.zeros((2, 12))
    with pytest.raises(data.DataError, match=r"test_set_x must be \(m, h, w, c\) images, got shape \(2, 12\)"):
        data.read_images(tmp_path / "flat.h5")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(data.DataError, match="bad.png is not a readable image"):
        data.read_images(tmp_path / "bad.png")
