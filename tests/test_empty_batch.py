"""A batch of zero examples (m = 0): every op, forward and backward, on every backend and dtype,
returns empty results of the right shape and dtype (zero dW and db), as NumPy and PyTorch do.

The shapes expected are those of the same call on one example with the batch axis emptied, so
they are computed, not written out. The empty batch is handled in the wrappers, before any
kernel: a backend whose kernels all raise still answers it.
"""

import warnings

import numpy as np
import pytest

import fastnn
from fastnn import _dispatch
from fastnn._plugins import builtin_backends
from fastnn.testing.cases import DTYPES

BACKENDS = builtin_backends()
DT_IDS = [np.dtype(d).name for d in DTYPES]
CONV_HP = [{"stride": 1, "pad": 1}, {"stride": (2, 1), "pad": (0, 2)}]
POOL_HP = [{"f": 2, "stride": 2}, {"f": 3, "stride": 1, "pad": 1}]


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 RuntimeWarning either
        yield


def _rand(shape, dtype, seed=0):
    return np.random.RandomState(seed).standard_normal(shape).astype(dtype)


def _empty_like_one(one: np.ndarray) -> tuple:
    return (0,) + one.shape[1:]


def _check_empty(got, one, dtype, name):
    assert got.shape == _empty_like_one(one), f"{name}: shape {got.shape}, expected {_empty_like_one(one)}"
    assert got.dtype == np.dtype(dtype), f"{name}: dtype {got.dtype}, expected {np.dtype(dtype)}"


@pytest.mark.parametrize("hp", CONV_HP, ids=["s1p1", "s21p02"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_forward_backward(backend, dtype, hp):
    A1, W, b = _rand((1, 5, 6, 3), dtype), _rand((3, 2, 3, 4), dtype, 1), _rand((1, 1, 1, 4), dtype, 2)
    Z1, _ = fastnn.conv_forward(A1, W, b, hp, backend=backend)
    A0 = A1[:0]
    Z0, cache = fastnn.conv_forward(A0, W, b, hp, backend=backend)
    _check_empty(Z0, Z1, dtype, "Z")
    assert cache[0] is A0 and cache[1] is W and cache[2] is b and cache[3] is hp
    dA0, dW, db = fastnn.conv_backward(np.zeros(Z0.shape, dtype), cache, backend=backend)
    _check_empty(dA0, A1, dtype, "dA_prev")
    for name, g, like in (("dW", dW, W), ("db", db, b)):
        assert g.shape == like.shape and g.dtype == np.dtype(dtype), (name, g.shape, g.dtype)
        np.testing.assert_array_equal(g, np.zeros_like(like), err_msg=name)  # a sum over no examples


@pytest.mark.parametrize("ties", ["all", "first"])
@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("hp", POOL_HP, ids=["f2s2", "f3s1p1"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_forward_backward(backend, dtype, hp, mode, ties):
    A1 = _rand((1, 6, 5, 3), dtype)
    P1, _ = fastnn.pool_forward(A1, hp, mode, backend=backend)
    P0, cache = fastnn.pool_forward(A1[:0], hp, mode, backend=backend)
    _check_empty(P0, P1, dtype, f"pool_forward {mode}")
    dA0 = fastnn.pool_backward(np.zeros(P0.shape, dtype), cache, mode, ties=ties, backend=backend)
    _check_empty(dA0, A1, dtype, f"pool_backward {mode}")


@pytest.mark.parametrize("pad", [0, 2, (1, 3)])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_pad(backend, dtype, pad):
    X1 = _rand((1, 3, 4, 2), dtype)
    _check_empty(fastnn.zero_pad(X1[:0], pad, backend=backend), fastnn.zero_pad(X1, pad, backend=backend),
                 dtype, "zero_pad")


@pytest.mark.parametrize("name", ["relu", "sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_activations(backend, dtype, name):
    fwd, bwd = getattr(fastnn, name), getattr(fastnn, name + "_backward")
    for Z in (np.zeros((4, 0), dtype), np.zeros((0, 3, 3, 2), dtype)):  # dense columns and NHWC
        A, cache = fwd(Z, backend=backend)
        assert A.shape == Z.shape and A.dtype == np.dtype(dtype) and cache is Z
        dZ = bwd(np.zeros(Z.shape, dtype), cache, backend=backend)
        assert dZ.shape == Z.shape and dZ.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_network(backend, dtype):
    params = fastnn.initialize_parameters_deep([5, 4, 3, 1], seed=1, dtype=dtype)
    X0, Y0 = np.zeros((5, 0), dtype), np.zeros((1, 0), dtype)
    with fastnn.use_backend(backend):
        Z, lcache = fastnn.linear_forward(X0, params["W1"], params["b1"])
        assert Z.shape == (4, 0) and Z.dtype == np.dtype(dtype)
        dA_prev, dW, db = fastnn.linear_backward(np.zeros((4, 0), dtype), lcache)
        assert dA_prev.shape == (5, 0) and dA_prev.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(dW, np.zeros_like(params["W1"]))  # no examples: zero, not 0/0
        np.testing.assert_array_equal(db, np.zeros_like(params["b1"]))
        assert dW.dtype == db.dtype == np.dtype(dtype)
        for activation in ("relu", "sigmoid"):
            A, cache = fastnn.linear_activation_forward(X0, params["W1"], params["b1"], activation)
            assert A.shape == (4, 0)
            grads = fastnn.linear_activation_backward(np.zeros((4, 0), dtype), cache, activation)
            assert [g.shape for g in grads] == [(5, 0), (4, 5), (4, 1)]
        AL, caches = fastnn.L_model_forward(X0, params)
        assert AL.shape == (1, 0) and AL.dtype == np.dtype(dtype)
        assert np.isnan(fastnn.compute_cost(AL, Y0))  # the mean of no losses, as np.mean([]) (without its warning)
        grads = fastnn.L_model_backward(AL, Y0, caches)
        for l in (1, 2, 3):
            np.testing.assert_array_equal(grads[f"dW{l}"], np.zeros_like(params[f"W{l}"]))
            np.testing.assert_array_equal(grads[f"db{l}"], np.zeros_like(params[f"b{l}"]))
        new = fastnn.update_parameters(params, grads, 0.1)  # an empty batch changes nothing
        for k in params:
            np.testing.assert_array_equal(new[k], params[k])
        assert fastnn.predict(X0, Y0, params, print_accuracy=False).shape == (1, 0)


def test_the_empty_batch_is_answered_before_any_kernel():
    """One place handles m = 0: a backend whose every kernel raises answers it; an unknown
    backend is still refused."""
    _dispatch.register_backend("_raises", priority=-100, description="test: every kernel raises")

    def boom(*args):
        raise AssertionError("a kernel ran for an empty batch")

    try:
        for op in _dispatch.OPS:
            _dispatch.register(op, "_raises")(boom)
        A0, W, b = np.zeros((0, 4, 4, 2)), np.ones((3, 3, 2, 5)), np.ones((1, 1, 1, 5))
        Z, cache = fastnn.conv_forward(A0, W, b, {"stride": 1, "pad": 1}, backend="_raises")
        dA, dW, db = fastnn.conv_backward(Z, cache, backend="_raises")
        assert Z.shape == (0, 4, 4, 5) and dA.shape == A0.shape and not dW.any() and not db.any()
        for mode in ("max", "average"):
            P, pcache = fastnn.pool_forward(A0, {"f": 2, "stride": 2}, mode, backend="_raises")
            assert fastnn.pool_backward(P, pcache, mode, backend="_raises").shape == A0.shape
        assert fastnn.zero_pad(A0, 1, backend="_raises").shape == (0, 6, 6, 2)
        for name in ("relu", "sigmoid"):
            A, c = getattr(fastnn, name)(np.zeros((3, 0)), backend="_raises")
            assert getattr(fastnn, name + "_backward")(A, c, backend="_raises").shape == (3, 0)
        with pytest.raises(AssertionError, match="a kernel ran"):  # one example does reach the kernel
            fastnn.conv_forward(np.zeros((1, 4, 4, 2)), W, b, {"stride": 1, "pad": 1}, backend="_raises")
    finally:
        _dispatch.unregister_backend("_raises")
    with pytest.raises(fastnn.BackendError, match="unknown backend 'nope'"):
        fastnn.conv_forward(np.zeros((0, 4, 4, 2)), W, b, {"stride": 1, "pad": 1}, backend="nope")
    with pytest.raises(fastnn.BackendError, match="unknown backend 'nope'"):
        fastnn.relu(np.zeros((3, 0)), backend="nope")


def test_an_empty_batch_still_gets_its_arguments_checked():
    with pytest.raises(ValueError, match=r"W's input channels must match A_prev's"):
        fastnn.conv_forward(np.zeros((0, 4, 4, 2)), np.ones((3, 3, 3, 5)), np.ones((1, 1, 1, 5)), {"stride": 1, "pad": 1})
    with pytest.raises(ValueError, match=r"at least one pixel and channel"):
        fastnn.pool_forward(np.zeros((0, 0, 4, 2)), {"f": 2, "stride": 2})
    Z, cache = fastnn.conv_forward(np.zeros((0, 4, 4, 2)), np.ones((3, 3, 2, 5)), np.ones((1, 1, 1, 5)),
                                   {"stride": 1, "pad": 1})
    with pytest.raises(ValueError, match=r"dZ must have the shape of the forward output \(0, 4, 4, 5\)"):
        fastnn.conv_backward(np.zeros((1, 4, 4, 5)), cache)
