"""fastnn.dask: the course's ops on Dask arrays against fastnn on NumPy, the fixed-order reductions,
the out-of-core memory bound, and data-parallel training on a LocalCluster (loopback, 2 worker
processes) equal to a single-process run, through a killed worker too.

Skipped when Dask is not installed (``pip install 'fastnn[dask]'``; the ``test`` extra has it);
tests/test_dask_optional.py checks the extra from the outside, with or without Dask.
Every test is bounded in time (``_time_limit``); the whole file takes well under two minutes on 2 cores.
"""

import doctest
import importlib
import io
import json
import os
import signal
import sys
import threading
import warnings
from concurrent.futures import CancelledError
from pathlib import Path

import h5py
import numpy as np
import pytest

import fastnn
from fastnn.testing.tolerance import assert_close

REPO = Path(__file__).resolve().parents[1]
_TRIM_BEFORE = os.environ.get("MALLOC_TRIM_THRESHOLD_")  # before any nanny wrote its own into the environment


dask = pytest.importorskip("dask", reason="Dask is not installed: pip install 'fastnn[dask]' (the test extra has it)")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastnn.dask as fd  # noqa: E402
from fastnn.dask import parallel as dp  # noqa: E402
from fastnn.nn import trainer  # noqa: E402


@pytest.fixture(autouse=True)
def _time_limit(request):
    """Fail a test that runs past its limit (default 60 s) instead of hanging CI."""
    limit = getattr(request.node.get_closest_marker("limit"), "args", (60,))[0]
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"{request.node.name} ran past its {limit} s limit")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module", autouse=True)
def _driver_environment():
    """Dask's nannies write their workers' settings (OMP_NUM_THREADS=1, ...) into this process's
    environment before spawning them: put it back for the tests after these."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def client():
    """2 worker processes x 1 thread on the loopback interface, no dashboard; each worker runs
    this checkout's fastnn."""
    with fd.local_cluster(2) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        where = c.run(lambda: __import__("fastnn").__file__)
        assert set(where.values()) == {fastnn.__file__}, where
        yield c


def _rng(seed=0):
    return np.random.default_rng(seed)


def _conv_case(dtype, m=10):
    r = _rng(1)
    A = r.standard_normal((m, 7, 6, 3)).astype(dtype)
    W = r.standard_normal((3, 2, 3, 5)).astype(dtype)
    b = r.standard_normal((1, 1, 1, 5)).astype(dtype)
    return A, W, b, {"stride": (2, 1), "pad": 1}


def _chunked(x, batch, axis=0):
    return da.from_array(x, chunks=tuple(batch if i == axis else -1 for i in range(x.ndim)))


DTYPES = [np.float64, np.float32]
ids = lambda d: np.dtype(d).name  # noqa: E731


# ------------------------------------------------------------- every op against fastnn


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_conv_forward_and_backward_equal_fastnn(dtype):
    A, W, b, hp = _conv_case(dtype)
    Z_ref, cache_ref = fastnn.conv_forward(A, W, b, hp)
    Z, cache = fd.conv_forward(_chunked(A, 4), W, b, hp)  # uneven: 4, 4, 2
    assert isinstance(Z, da.Array) and Z.chunks[0] == (4, 4, 2) and Z.dtype == dtype
    assert_close(Z.compute(), Z_ref, dtype, "Z")
    dZ = _rng(2).standard_normal(Z_ref.shape).astype(dtype)
    refs = fastnn.conv_backward(dZ, cache_ref)
    for given in (_chunked(dZ, 3), dZ):  # other batch chunks (realigned), and NumPy dZ
        grads = fd.conv_backward(given, cache)
        assert grads[0].chunks == cache[0].chunks and grads[1].chunks == tuple((n,) for n in W.shape)
        for got, ref, name in zip(dask.compute(*grads), refs, ("dA_prev", "dW", "db")):
            assert_close(got, ref, dtype, name)
    dA, dW, db = fd.conv_backward(_chunked(dZ, 4), cache, input_grad=False)
    assert dA is None
    assert_close(dW.compute(), refs[1], dtype, "dW without dA_prev")


@pytest.mark.parametrize("name", ["nchw_grouped_dilated_same", "depthwise_multiplier_s2", "uneven_pad"])
def test_conv_options_beyond_the_course_equal_fastnn(name):
    """Dilation, groups, "same"/uneven pads and NCHW arrays (the batch axis is 0 in both layouts)."""
    from fastnn.testing.cases import CONV_CASES

    case = CONV_CASES[name]
    A, W, b, hp, dZ = case.make(np.float64, seed=3)
    A, dZ = np.concatenate([A] * 3), np.concatenate([dZ] * 3)  # a batch of several chunks
    Z_ref, cache_ref = fastnn.conv_forward(A, W, b, hp)
    Z, cache = fd.conv_forward(_chunked(A, 2), W, b, hp)
    assert_close(Z.compute(), Z_ref, np.float64, "Z")
    for got, ref, n in zip(dask.compute(*fd.conv_backward(_chunked(dZ, 2), cache)), fastnn.conv_backward(dZ, cache_ref),
                           ("dA_prev", "dW", "db")):
        assert_close(got, ref, np.float64, n)


@pytest.mark.parametrize("name", ["nchw_ceil_ties", "ceil_exclude_pad", "same"])
def test_pool_options_beyond_the_course_equal_fastnn(name):
    from fastnn.testing.cases import POOL_CASES

    A, hp, dA = POOL_CASES[name].make(np.float64, seed=4)
    A, dA = np.concatenate([A] * 3), np.concatenate([dA] * 3)
    for mode in ("max", "average"):
        ref, cache_ref = fastnn.pool_forward(A, hp, mode)
        out, cache = fd.pool_forward(_chunked(A, 2), hp, mode)
        assert_close(out.compute(), ref, np.float64, "A")
        assert_close(fd.pool_backward(_chunked(dA, 2), cache, mode).compute(),
                     fastnn.pool_backward(dA, cache_ref, mode), np.float64, "dA_prev")


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("mode, ties", [("max", "all"), ("max", "first"), ("average", "all")])
def test_pool_forward_and_backward_equal_fastnn(dtype, mode, ties):
    A = _rng(3).standard_normal((9, 6, 7, 4)).astype(dtype)
    A[:, 0, 1] = A[:, 0, 0]  # ties in the first window
    hp = {"f": 2, "stride": (2, 1)}
    A_ref, cache_ref = fastnn.pool_forward(A, hp, mode)
    P, cache = fd.pool_forward(_chunked(A, 4), hp, mode)
    assert P.chunks[0] == (4, 4, 1)
    assert_close(P.compute(), A_ref, dtype, "A")
    dA = _rng(4).standard_normal(A_ref.shape).astype(dtype)
    got = fd.pool_backward(_chunked(dA, 4), cache, mode, ties=ties)
    assert got.chunks == cache[0].chunks
    assert_close(got.compute(), fastnn.pool_backward(dA, cache_ref, mode, ties=ties), dtype, "dA_prev")


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("name", ["relu", "sigmoid"])
def test_activations_equal_fastnn_in_any_chunks(dtype, name):
    Z = _rng(5).standard_normal((6, 5, 4, 3)).astype(dtype)
    Z[0, 0, 0, :] = 0.0
    fwd, bwd = getattr(fd, name), getattr(fd, name + "_backward")
    A_ref, cache_ref = getattr(fastnn, name)(Z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # elementwise: no rechunk, no warning
        A, cache = fwd(da.from_array(Z, chunks=(2, 3, 4, 2)))
    assert A.chunks == cache.chunks == ((2, 2, 2), (3, 2), (4,), (2, 1))
    assert_close(A.compute(), A_ref, dtype, "A")
    dA = _rng(6).standard_normal(Z.shape).astype(dtype)
    got = bwd(da.from_array(dA, chunks=(3, 5, 2, 3)), cache)  # other chunks than Z's: realigned
    assert got.chunks == cache.chunks
    assert_close(got.compute(), getattr(fastnn, name + "_backward")(dA, cache_ref), dtype, "dZ")


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_linear_forward_and_backward_equal_fastnn(dtype):
    r = _rng(7)
    A, W, b = (r.standard_normal(s).astype(dtype) for s in ((6, 11), (4, 6), (4, 1)))
    Z_ref, cache_ref = fastnn.linear_forward(A, W, b)
    Z, cache = fd.linear_forward(_chunked(A, 4, axis=1), W, b)  # the examples are columns
    assert Z.chunks == ((4,), (4, 4, 3))
    assert_close(Z.compute(), Z_ref, dtype, "Z")
    dZ = r.standard_normal(Z_ref.shape).astype(dtype)
    for got, ref, name in zip(dask.compute(*fd.linear_backward(_chunked(dZ, 4, axis=1), cache)),
                              fastnn.linear_backward(dZ, cache_ref), ("dA_prev", "dW", "db")):
        assert_close(got, ref, dtype, name)  # dW, db: the averages over all 11 examples, not per chunk


def test_the_ops_on_the_cluster_equal_fastnn(client):
    A, W, b, hp = _conv_case(np.float64)
    Z, cache = fd.conv_forward(_chunked(A, 4), W, b, hp)
    Zr, Ar = fd.relu(Z)
    P, pcache = fd.pool_forward(Zr, {"f": 2, "stride": 1})
    dP = np.ones(P.shape)
    dZr = fd.pool_backward(dP, pcache)
    grads = fd.conv_backward(fd.relu_backward(dZr, Ar), cache)
    got = dask.compute(P, *grads, scheduler=client.get)
    Z1, c1 = fastnn.conv_forward(A, W, b, hp)
    R1, a1 = fastnn.relu(Z1)
    P1, p1 = fastnn.pool_forward(R1, {"f": 2, "stride": 1})
    refs = (P1, *fastnn.conv_backward(fastnn.relu_backward(fastnn.pool_backward(dP, p1), a1), c1))
    for g, r, name in zip(got, refs, ("P", "dA_prev", "dW", "db")):
        assert_close(g, r, np.float64, name)


def test_numpy_inputs_go_straight_to_fastnn():
    A, W, b, hp = _conv_case(np.float64)
    Z, cache = fd.conv_forward(A, W, b, hp)
    Z_ref, _ = fastnn.conv_forward(A, W, b, hp)
    assert type(Z) is np.ndarray and cache[0] is A
    np.testing.assert_array_equal(Z, Z_ref)
    out = fd.conv_backward(Z, cache)
    assert all(type(x) is np.ndarray for x in out)
    for got, ref in zip(out, fastnn.conv_backward(Z, cache)):
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(fd.relu(A)[0], fastnn.relu(A)[0])
    np.testing.assert_array_equal(fd.linear_forward(A[0, 0].T, W[0, 0].T, b[0, 0, 0][:, None])[0],
                                  fastnn.linear_forward(A[0, 0].T, W[0, 0].T, b[0, 0, 0][:, None])[0])


def test_nothing_is_computed_until_asked():
    reads = []

    def source(block):
        reads.append(1)
        return block

    A, W, b, hp = _conv_case(np.float64)
    X = _chunked(A, 4).map_blocks(source, dtype=A.dtype, meta=np.empty((0, 0, 0, 0)))  # (no call for meta)
    Z, cache = fd.conv_forward(X, W, b, hp)
    grads = fd.conv_backward(da.ones_like(Z), cache)
    assert reads == []
    dask.compute(*grads, scheduler="sync")
    assert len(reads) == 3  # each chunk read once for the three outputs computed together


# -------------------------------------------------------------- chunks, checks, threads


def test_other_chunking_is_rechunked_with_a_warning():
    A, W, b, hp = _conv_case(np.float64)
    with pytest.warns(fd.RechunkWarning, match=r"A_prev is chunked along axis 1, 3 .* rechunked to chunk shape \(4, 7, 6, 3\)"):
        Z, cache = fd.conv_forward(da.from_array(A, chunks=(4, 3, 6, 2)), W, b, hp)
    assert cache[0].chunks == ((4, 4, 2), (7,), (6,), (3,))
    assert_close(Z.compute(), fastnn.conv_forward(A, W, b, hp)[0], np.float64, "Z")
    with pytest.warns(fd.RechunkWarning, match=r"A is chunked along axis 0"):
        fd.linear_forward(da.from_array(A[:, 0, 0, :].T, chunks=(2, 5)), W[0, 0].T, b[0, 0, 0][:, None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fd.conv_forward(_chunked(A, 4), W, b, hp)  # batch-only chunks: no warning


def test_bad_input_raises_at_the_call_with_fastnns_message():
    A, W, b, hp = _conv_case(np.float64)
    X = _chunked(A, 4)
    with pytest.raises(ValueError, match=r"W's input channels must match A_prev's: W.shape\[2\] = 2, A_prev.shape\[3\] = 3"):
        fd.conv_forward(X, W[:, :, :2], b, hp)
    with pytest.raises(ValueError, match="hparameters has an unknown key 'strid'; did you mean 'stride'"):
        fd.conv_forward(X, W, b, {"strid": 1, "pad": 0})
    Z, cache = fd.conv_forward(X, W, b, hp)
    with pytest.raises(ValueError, match=r"dZ must have the shape of the forward output \(10, 4, 7, 5\), got \(9, 4, 7, 5\)"):
        fd.conv_backward(Z[:9], cache)
    with pytest.raises(fastnn.BackendError, match="unknown backend 'nope'"):
        fd.conv_forward(X, W, b, hp, backend="nope")
    with pytest.raises(ValueError, match="threads must be a positive int or None"):
        fd.pool_forward(X, {"f": 2, "stride": 2}, threads=0)
    with pytest.raises(TypeError, match="A_prev must be a real array, got complex dtype complex128"):
        fd.conv_forward(X.astype(complex), W, b, hp)
    with pytest.raises(ValueError, match=r"dA must have the shape of the cached Z"):
        fd.relu_backward(da.ones((3, 3)), fd.relu(da.ones((3, 4)))[1])
    with pytest.raises(ValueError, match=r"W's columns must match A's rows: W \(4, 5\), A \(6, 11\)"):
        fd.linear_forward(da.ones((6, 11)), np.ones((4, 5)), np.ones((4, 1)))


def _tree_by_hand(parts):
    return ((parts[0] + parts[1]) + (parts[2] + parts[3])) + parts[4]


def test_tree_sum_is_a_fixed_pairwise_order():
    parts = [np.array([v]) for v in (1e16, 1.0, -1e16, 1.0, 3.0)]
    # the order matters for these values: left to right gives 4, the pairwise tree 3
    assert float(sum(parts)[0]) != float(_tree_by_hand(parts)[0])
    np.testing.assert_array_equal(fd.tree_sum(parts), _tree_by_hand(parts))
    np.testing.assert_array_equal(fd.tree_sum(parts[:1]), parts[0])


def test_dw_db_are_the_chunks_sums_in_a_fixed_tree_whatever_the_scheduler(client):
    """Bit for bit: the pairwise tree of each chunk's fastnn dW (one thread, numba), on the
    synchronous, threaded and distributed schedulers alike."""
    A, W, b, hp = _conv_case(np.float64, m=15)
    dZ = _rng(8).standard_normal(fastnn.conv_forward(A, W, b, hp)[0].shape)
    edges = [0, 3, 6, 9, 12, 15]
    with fastnn.use_backend("numba"), fd.task_threads(1):
        chunk_grads = [fastnn.conv_backward(dZ[lo:hi], (A[lo:hi], W, b, hp))[1:] for lo, hi in zip(edges, edges[1:])]
    expected = [_tree_by_hand([g[k] for g in chunk_grads]) for k in (0, 1)]
    _, cache = fd.conv_forward(_chunked(A, 3), W, b, hp)
    seen = {}
    for name, scheduler in (("sync", "sync"), ("threads", "threads"), ("cluster", client.get)):
        _, dW, db = fd.conv_backward(_chunked(dZ, 3), cache, backend="numba", threads=1)
        seen[name] = dask.compute(dW, db, scheduler=scheduler)
        for got, exp in zip(seen[name], expected):
            np.testing.assert_array_equal(got, exp, err_msg=name)
    whole = fastnn.conv_backward(dZ, (A, W, b, hp))[1]
    assert_close(seen["sync"][0], whole, np.float64, "dW against one call")


def _probe(_):
    with fd.task_threads() as n:
        return np.array([n])


def test_threads_per_task_share_the_cores(client):
    from fastnn.backends.numba import config

    budget = config.num_threads()
    x = da.zeros(4, chunks=1)
    assert fd.tasks_at_once() == 1 and fd.threads_per_task() == budget  # the main thread: alone
    sync = x.map_blocks(_probe, dtype=int).compute(scheduler="sync")
    assert set(sync) == {budget}
    with dask.config.set(num_workers=2):
        threaded = x.map_blocks(_probe, dtype=int).compute(scheduler="threads")
    assert set(threaded) == {max(1, budget // 2)}
    # each LocalCluster worker: cores // 2 workers, one task at a time
    on_workers = x.map_blocks(_probe, dtype=int).compute(scheduler=client.get)
    assert set(on_workers) == {max(1, min(budget, dp.usable_cores()) // 2)}
    with fd.task_threads(1) as n:
        assert n == 1 and config.num_threads() == 1
    assert config.num_threads() == budget
    # and no MALLOC_TRIM_THRESHOLD_ of Dask's in the workers (it halved the kernels' speed there)
    trim = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert set(trim.values()) == {_TRIM_BEFORE}


# ------------------------------------------------------------------------------- HDF5


def test_read_hdf5_streams_the_course_layout(tmp_path, client):
    path = tmp_path / "set.h5"
    x = _rng(9).integers(0, 255, size=(13, 8, 8, 3)).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f["train_set_x"] = x
        f["train_set_y"] = np.arange(13) % 2
        f.create_group("g")
    X = fd.read_hdf5(path, "train_set_x", chunks=5)
    assert X.chunks == ((5, 5, 3), (8,), (8,), (3,)) and X.dtype == np.uint8
    np.testing.assert_array_equal(X.compute(scheduler=client.get), x)  # the source pickles to the workers
    Xf = X.astype(np.float32) / 255
    W, b = np.ones((3, 3, 3, 2), np.float32), np.zeros((1, 1, 1, 2), np.float32)
    Z, _ = fd.conv_forward(Xf, W, b, {"stride": 1, "pad": 1})
    assert_close(Z.compute(), fastnn.conv_forward(x.astype(np.float32) / 255, W, b, {"stride": 1, "pad": 1})[0],
                 np.float32, "Z")
    per = 8 * 8 * 3
    assert fd.read_hdf5(path, "train_set_x", chunks=f"{4 * per}B").chunks[0] == (4, 4, 4, 1)
    assert fd.read_hdf5(path, "train_set_y").chunks == ((13,),)
    with pytest.raises(KeyError, match=r"has no data set 'test_set_x'; it has \['g', 'train_set_x', 'train_set_y'\]"):
        fd.read_hdf5(path, "test_set_x")
    with pytest.raises(KeyError, match="'g' is a group"):
        fd.read_hdf5(path, "g")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(OSError, match="cannot read .*bad.h5 as HDF5"):
        fd.read_hdf5(tmp_path / "bad.h5", "x")
    with pytest.raises(ValueError, match="chunks must be a positive number of examples, got 0"):
        fd.read_hdf5(path, "train_set_x", chunks=0)


def _stream(tmp_path, size, chunks):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        measure = importlib.import_module("measure_dask")
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return measure.outofcore(size, chunks, str(tmp_path / f"x{size}.h5"))


@pytest.mark.limit(90)
def test_out_of_core_memory_is_set_by_the_chunk_size_not_the_file(tmp_path):
    """conv -> relu -> pool -> conv -> relu -> mean over an HDF5 file in 1 MiB chunks, in a fresh
    process: the resident memory it adds is a few chunks, the same for a file 3x larger; the
    control, the whole file as one chunk, adds more than the file (so the measure can fail)."""
    small, large = _stream(tmp_path, "32MiB", "1MiB"), _stream(tmp_path, "96MiB", "1MiB")
    control = _stream(tmp_path, "32MiB", "32MiB")
    for r in (small, large):
        assert r["chunk_bytes"] <= 2**20 and r["chunks"] >= 32
        assert r["added"] < 40 * r["chunk_bytes"], r  # measured: about 16 chunks on 2 threads
    assert large["added"] < 0.25 * large["file_bytes"], large
    assert large["added"] < small["added"] + 12 * 2**20, (small, large)  # not growing with the file
    assert control["chunks"] == 1 and control["added"] > control["file_bytes"], control


# ------------------------------------------------------------------ data-parallel training


def _write_set(path, prefix, x, y):
    with h5py.File(path, "w") as f:
        f[f"{prefix}_set_x"] = x
        f[f"{prefix}_set_y"] = y
        f["list_classes"] = np.array([b"non-cat", b"cat"])


@pytest.fixture
def tiny(tmp_path):
    """8x8 RGB images: 'cats' are bright in the top-left corner. 12 train, 6 test."""
    rng = np.random.default_rng(0)

    def make(m):
        y = np.arange(m) % 2
        x = rng.integers(0, 120, size=(m, 8, 8, 3))
        x[y == 1, :4, :4, :] += 120
        return x.astype(np.uint8), y.astype(np.int64)

    d = tmp_path / "data"
    d.mkdir()
    _write_set(d / "train_catvnoncat.h5", "train", *make(12))
    _write_set(d / "test_catvnoncat.h5", "test", *make(6))
    return d


def _params(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k.startswith(("param/", "opt/"))}


def _log(out):
    return json.loads((Path(out) / "log.json").read_text())


def _assert_same_run(got_dir, ref_dir, dtype, exact=False):
    a, b = _params(got_dir / "params.npz"), _params(ref_dir / "params.npz")
    assert a.keys() == b.keys() and a
    for k in b:
        if exact or b[k].dtype.kind == "i":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert_close(a[k], b[k], dtype, k)
    ca, cb = _log(got_dir)["log"]["cost"], _log(ref_dir)["log"]["cost"]
    assert len(ca) == len(cb)
    assert_close(np.array(ca, dtype), np.array(cb, dtype), dtype, "costs")


@pytest.mark.parametrize("model, dtype", [("cnn", "float64"), ("cnn", "float32"), ("dnn", "float64"), ("dnn", "float32")])
def test_data_parallel_training_equals_one_process(tmp_path, tiny, client, model, dtype):
    """Same seed and batches (5, 5, 2 per epoch: shards of 3+2 and 1+1): the parameters, the
    optimiser state and the costs within the dtype's tolerance; the checkpoint as always."""
    common = {"data": tiny, "model": model, "dtype": dtype, "epochs": 3, "batch_size": 5, "lr": 0.01, "quiet": True,
              "stream": io.StringIO()}
    ref = trainer.train(tmp_path / "one", **common)
    par = dp.DataParallel(client)
    got = trainer.train(tmp_path / "two", parallel=par, **common)
    assert par.shards == 2 and len(par.timings) == 9 and [t["shards"] for t in par.timings[:3]] == [2, 2, 2]
    _assert_same_run(tmp_path / "two", tmp_path / "one", np.dtype(dtype))
    assert got.meta["parallel"] == "dask " + par.description + ", 2 shards" and "parallel" not in ref.meta
    assert (tmp_path / "two" / "checkpoint.npz").is_file()
    assert got.summary["test_accuracy"] == ref.summary["test_accuracy"]


def test_train_on_a_running_scheduler_by_its_address(tmp_path, tiny, client):
    """``dask="tcp://host:port"``: the run connects to the scheduler, trains on its workers, and
    leaves the cluster running."""
    common = {"data": tiny, "model": "dnn", "epochs": 2, "batch_size": 6, "lr": 0.05, "quiet": True}
    address = client.scheduler.address
    stream = io.StringIO()
    got = trainer.train(tmp_path / "remote", dask=address, stream=stream, **common)
    assert f"data-parallel on dask {address}, 2 shards" in stream.getvalue()
    assert got.meta["parallel"] == f"dask {address}, 2 shards"
    trainer.train(tmp_path / "here", stream=io.StringIO(), **common)
    _assert_same_run(tmp_path / "remote", tmp_path / "here", np.dtype("float64"))
    assert client.submit(int, 3).result() == 3 and len(client.nthreads()) == 2  # still there


def test_shards_add_up_to_the_batch():
    """The worker's function on two shards, added, gives the batch's cost and gradients."""
    config = trainer.CnnRun.new_config((8, 8, 3), {"model": "cnn", "dtype": "float64", "batch_size": 5, "lr": 0.01,
                                                   "seed": 2})
    run = trainer.CnnRun(config)
    X = _rng(10).random((5, 8, 8, 3))
    Y = np.array([[0.0], [1.0], [1.0], [0.0], [1.0]])
    cost, correct, grads = run.gradients(X, Y, 5)
    state = run.shard_state()
    parts = [trainer.shard_gradients(state, X[lo:hi], Y[lo:hi], 5) for lo, hi in ((0, 3), (3, 5))]
    assert_close(np.array(parts[0][0] + parts[1][0]), np.array(cost), np.float64, "cost")
    assert parts[0][1] + parts[1][1] == correct
    for k in grads:
        assert_close(fd.tree_sum([p[2][k] for p in parts]), grads[k], np.float64, k)
    with pytest.raises(ValueError, match="m must be an int >= the output's 3 rows"):
        run.loss(np.zeros((3, 1)), np.zeros(3), m=2)


def test_a_lost_step_is_sent_again_whole(client, monkeypatch):
    """Where Dask cannot rerun a shard (its data gone with every holder), the step goes again."""
    par = dp.DataParallel(client)
    real, calls = par._run_step, []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 1:
            raise CancelledError("fastnn-shard-x lost")
        return real(*args)

    monkeypatch.setattr(par, "_run_step", flaky)
    X, Y = _rng(11).random((4, 3)), np.arange(4.0)
    with pytest.warns(RuntimeWarning, match="a step's data were lost .* sending it again"):
        got = par.gradients(_sum_shard, None, X, Y)
    assert len(calls) == 2 and got[0] == float(X[:2].sum()) + float(X[2:].sum()) and got[1] == 4.0
    np.testing.assert_array_equal(got[2]["x"], X[:2].sum(axis=0) + X[2:].sum(axis=0))
    monkeypatch.setattr(par, "_run_step", lambda *a: (_ for _ in ()).throw(CancelledError("lost again")))
    with pytest.raises(CancelledError), pytest.warns(RuntimeWarning):
        par.gradients(_sum_shard, None, X, Y)


def _sum_shard(state, X, Y, m):
    return float(X.sum()), float(len(Y)), {"x": X.sum(axis=0)}


def test_resume_a_data_parallel_run_here(tmp_path, tiny, client):
    common = {"data": tiny, "model": "cnn", "batch_size": 5, "lr": 0.01, "quiet": True, "stream": io.StringIO()}
    trainer.train(tmp_path / "straight", epochs=3, **common)
    trainer.train(tmp_path / "split", epochs=2, parallel=dp.DataParallel(client), **common)
    trainer.train(tmp_path / "split", epochs=3, resume=True, **common)
    _assert_same_run(tmp_path / "split", tmp_path / "straight", np.dtype("float64"))


def _killing(marker):
    """shard_gradients, except that the first time it runs shard 1 of a step after ``marker``
    was armed, its worker process dies (SIGKILL) in the middle of the task."""
    def fn(state, X, Y, m):
        if os.path.exists(marker) and not os.path.exists(marker + ".done") and X.shape[0] == 1:
            open(marker + ".done", "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return trainer.shard_gradients(state, X, Y, m)
    return fn


@pytest.mark.limit(120)
def test_a_worker_killed_mid_epoch_loses_nothing(tmp_path, tiny):
    """One of the two LocalCluster workers dies during a shard of epoch 2's last step: Dask
    reruns the shard, the epoch completes, and the run equals the undisturbed one bit for bit
    (same shards, same thread counts), checkpoints included."""
    marker = str(tmp_path / "kill")
    common = {"data": tiny, "model": "cnn", "epochs": 3, "batch_size": 5, "lr": 0.01, "quiet": True,
              "stream": io.StringIO()}

    def arm(epoch, batch, n):
        if (epoch, batch) == (1, 2):  # in epoch 2, before its last batch (shards of 1 and 1 examples)
            open(marker, "w").close()

    with fd.local_cluster(2) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        par = dp.DataParallel(c)
        fn = _killing(marker)
        original = par.gradients
        par.gradients = lambda _fn, *a, **k: original(fn, *a, **k)
        pids = set(c.run(os.getpid).values())
        trainer.train(tmp_path / "killed", parallel=par, on_batch=arm, **common)
        assert os.path.exists(marker + ".done")  # a worker did die
        c.wait_for_workers(2, timeout=30)
        assert set(c.run(os.getpid).values()) != pids  # the nanny started a new one
        trainer.train(tmp_path / "calm", parallel=dp.DataParallel(c), **common)
    _assert_same_run(tmp_path / "killed", tmp_path / "calm", np.dtype("float64"), exact=True)
    ckpt = json.loads(str(np.load(tmp_path / "killed" / "checkpoint.npz")["meta"]))
    assert len(ckpt["log"]["cost"]) == 3


@pytest.mark.limit(90)
def test_fastnn_train_dask_local_from_the_command_line(tmp_path, tiny, capsys):
    from fastnn import cli

    assert cli.main(["train", "--quiet", "--data", str(tiny), "--model", "cnn", "--epochs", "2", "--batch-size", "6",
                     "--dask", "local:2", "--out", str(tmp_path / "d")]) == 0
    out, err = capsys.readouterr()
    assert "data-parallel on dask local:2 (2 worker processes), 2 shards" in err and "test accuracy:" in out
    assert cli.main(["train", "--quiet", "--data", str(tiny), "--model", "cnn", "--epochs", "2", "--batch-size", "6",
                     "--out", str(tmp_path / "h")]) == 0
    _assert_same_run(tmp_path / "d", tmp_path / "h", np.dtype("float64"))


def test_bad_dask_options_are_usage_errors(tmp_path, tiny, capsys):
    from fastnn import cli

    for bad, says in (("local:0", "local:N needs a number of worker processes N >= 1, got 'local:0'"),
                      ("somewhere", "must be local:N (N worker processes on this machine) or a scheduler address")):
        assert cli.main(["train", "--data", str(tiny), "--dask", bad, "--out", str(tmp_path)]) == 2
        assert f"--dask {says}" in capsys.readouterr().err
    assert cli.main(["train", "--dask", "local:2", "--out", str(tmp_path), "--predict", str(tiny / "test_catvnoncat.h5")]) == 2
    assert "--dask trains on a cluster; --predict classifies here" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.npz"))
    assert dp.parse_address("tcp://10.0.0.1:8786") == ("scheduler", "tcp://10.0.0.1:8786")
    assert dp.parse_address("local") == ("local", dp.usable_cores())
    assert dp.shard_bounds(5, 2) == [(0, 3), (3, 5)] and dp.shard_bounds(1, 2) == [(0, 1)]


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, tiny, capsys):
    from fastnn import cli

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        rc = cli.main(["train", "--data", str(tiny), "--dask", "tcp://127.0.0.1:9", "--out", str(tmp_path)])
    assert rc == 2 and "cannot start or reach the cluster 'tcp://127.0.0.1:9'" in capsys.readouterr().err


# ------------------------------------------------------------------------------- docs


@pytest.mark.parametrize("module", ["fastnn.dask.ops", "fastnn.dask.hdf5"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 5 and result.failed == 0
