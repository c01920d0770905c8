"""One equivalence matrix for every backend: op x named case x dtype x backend vs reference.

A backend registered later is covered here without editing this file. The tolerance is the
one rule of :mod:`fastnn.testing.tolerance` (float64 1e-12, float32 1e-5, relative).
"""

import numpy as np
import pytest

import fastnn
from fastnn._dispatch import ground_truth_backend
from fastnn.testing.cases import CONV_CASES, DTYPES, POOL_CASES
from fastnn.testing.tolerance import assert_close

REF = ground_truth_backend()  # the backend every other one is checked against, asked of the registry
FAST = [b for b in fastnn.available_backends() if b != REF]


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", FAST or [pytest.param(None, marks=pytest.mark.skip("only reference registered"))])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", list(CONV_CASES.values()), ids=lambda c: c.name)
def test_conv_forward_backward(backend, case, dtype):
    A, W, b, hp, dZ = case.make(dtype, seed=1)
    Z_ref, cache_ref = fastnn.conv_forward(A, W, b, hp, backend=REF)
    Z, cache = fastnn.conv_forward(A, W, b, hp, backend=backend)
    assert_close(Z, Z_ref, dtype, f"{backend} conv_forward Z")
    assert all(x is y for x, y in zip(cache, cache_ref)), "cache must be (A_prev, W, b, hparameters) as passed"
    grads_ref = fastnn.conv_backward(dZ, cache_ref, backend=REF)
    grads = fastnn.conv_backward(dZ, cache, backend=backend)
    for name, g, g_ref in zip(("dA_prev", "dW", "db"), grads, grads_ref):
        assert_close(g, g_ref, dtype, f"{backend} conv_backward {name}")


@pytest.mark.parametrize("ties", ["all", "first"])
@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", list(POOL_CASES.values()), ids=lambda c: c.name)
def test_pool_forward_backward(backend, case, dtype, mode, ties):
    if mode == "average" and ties == "first":
        pytest.skip("ties only matter for max pooling")
    A, hp, dA = case.make(dtype, seed=2)
    out_ref, cache_ref = fastnn.pool_forward(A, hp, mode, backend=REF)
    out, cache = fastnn.pool_forward(A, hp, mode, backend=backend)
    assert_close(out, out_ref, dtype, f"{backend} pool_forward {mode}")
    assert cache[0] is A and cache[1] is hp
    g_ref = fastnn.pool_backward(dA, cache_ref, mode, ties=ties, backend=REF)
    g = fastnn.pool_backward(dA, cache, mode, ties=ties, backend=backend)
    assert_close(g, g_ref, dtype, f"{backend} pool_backward {mode} ties={ties}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pad", [0, 1, 3, (2, 0)])
def test_zero_pad(backend, pad, dtype):
    X, *_ = CONV_CASES["odd_sizes"].make(dtype)
    assert_close(fastnn.zero_pad(X, pad, backend=backend), fastnn.zero_pad(X, pad, backend=REF), dtype, "zero_pad")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["relu", "sigmoid"])
def test_activations(backend, name, dtype):
    rng = np.random.RandomState(3)
    Z = (rng.standard_normal((7, 13)) * 5).astype(dtype)
    Z[0, :3] = [0.0, -0.0, 800.0]
    Z[1, :2] = [-800.0, np.nan]
    dA = rng.standard_normal(Z.shape).astype(dtype)
    fwd, bwd = getattr(fastnn, name), getattr(fastnn, name + "_backward")
    A_ref, _ = fwd(Z, backend=REF)
    A, cache = fwd(Z, backend=backend)
    assert cache is Z
    assert_close(A, A_ref, dtype, f"{backend} {name}")
    assert_close(bwd(dA, Z, backend=backend), bwd(dA, Z, backend=REF), dtype, f"{backend} {name}_backward")
