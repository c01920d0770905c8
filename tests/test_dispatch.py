"""Dispatch, tested with a counting mock backend."""

import asyncio
import re
import threading
from collections import Counter

import numpy as np
import pytest

import fastnn
from fastnn import _dispatch
from fastnn._dispatch import OPS, BackendError, ground_truth_backend, register, register_backend, unregister_backend

REF = ground_truth_backend()  # a real backend to route to, and the kernels the mock delegates to
MOCK = "mock_counting"
SPARSE = "mock_sparse"


@pytest.fixture
def mock():
    """A backend that counts its calls and delegates to the reference kernels."""
    calls = Counter()
    register_backend(MOCK, priority=1000, description="counting mock")
    for op in OPS:
        ref = _dispatch._kernels[op][REF]

        def kernel(*args, _op=op, _ref=ref):
            calls[_op] += 1
            return _ref(*args)

        register(op, MOCK)(kernel)
    register_backend(SPARSE, priority=-5, description="has conv_forward only")
    register("conv_forward", SPARSE)(lambda p, A, W, b, Z: Z.fill(7.0))
    saved = _dispatch._global_choice
    yield calls
    _dispatch._global_choice = saved
    unregister_backend(MOCK)
    unregister_backend(SPARSE)


def small_conv():
    rng = np.random.RandomState(0)
    return rng.randn(1, 4, 4, 2), rng.randn(2, 2, 2, 3), rng.randn(1, 1, 1, 3), {"stride": 1, "pad": 0}


def test_registry_lists_backends_by_priority(mock):
    names = fastnn.available_backends()
    assert names[0] == MOCK and names[-1] == SPARSE and REF in names
    assert fastnn.available_backends("pool_forward")[-1] != SPARSE
    assert SPARSE in fastnn.available_backends("conv_forward")
    info = {b["name"]: b for b in fastnn.backend_info()}
    assert info[SPARSE]["ops"] == ["conv_forward"]


def test_auto_picks_highest_priority_and_per_call_overrides(mock, monkeypatch):
    monkeypatch.delenv("FASTNN_BACKEND", raising=False)
    fastnn.set_backend(None)
    fastnn.conv_forward(*small_conv())
    assert mock["conv_forward"] == 1
    fastnn.conv_forward(*small_conv(), backend=REF)
    assert mock["conv_forward"] == 1
    Z, _ = fastnn.conv_forward(*small_conv(), backend=SPARSE)
    assert np.all(Z == 7.0)


def test_every_public_kernel_routes_through_the_registry(mock):
    A, W, b, hp = small_conv()
    with fastnn.use_backend(MOCK):
        Z, cache = fastnn.conv_forward(A, W, b, hp)
        fastnn.conv_backward(Z, cache)
        P, pc = fastnn.pool_forward(A, {"f": 2, "stride": 2})
        fastnn.pool_backward(P, pc)
        fastnn.zero_pad(A, 1)
        fastnn.relu_backward(*fastnn.relu(Z))
        fastnn.sigmoid_backward(*fastnn.sigmoid(Z))
    assert set(mock) == set(OPS) and all(v == 1 for v in mock.values())


def test_dense_network_uses_dispatched_activations(mock):
    params = fastnn.initialize_parameters_deep([2, 3, 1], seed=0)
    with fastnn.use_backend(MOCK):
        AL, caches = fastnn.L_model_forward(np.ones((2, 4)), params)
        fastnn.L_model_backward(AL, np.array([[1, 0, 1, 0]]), caches)
    assert mock["relu"] == 1 and mock["sigmoid"] == 1
    assert mock["relu_backward"] == 1 and mock["sigmoid_backward"] == 1


def test_precedence_kwarg_context_global_env(mock, monkeypatch):
    A, W, b, hp = small_conv()
    monkeypatch.setenv("FASTNN_BACKEND", SPARSE)
    assert fastnn.get_backend() == SPARSE
    assert np.all(fastnn.conv_forward(A, W, b, hp)[0] == 7.0)  # env var
    fastnn.set_backend(REF)
    assert fastnn.get_backend() == REF
    fastnn.conv_forward(A, W, b, hp)
    assert mock["conv_forward"] == 0  # global beats env
    with fastnn.use_backend(MOCK):
        assert fastnn.get_backend() == MOCK
        fastnn.conv_forward(A, W, b, hp)
        assert mock["conv_forward"] == 1  # context beats global
        fastnn.conv_forward(A, W, b, hp, backend=REF)
        assert mock["conv_forward"] == 1  # keyword beats context
        with fastnn.use_backend(REF):
            fastnn.conv_forward(A, W, b, hp)
        fastnn.conv_forward(A, W, b, hp)
        assert mock["conv_forward"] == 2  # inner block restored the outer choice
    assert fastnn.get_backend() == REF
    fastnn.set_backend(None)
    monkeypatch.delenv("FASTNN_BACKEND")
    assert fastnn.get_backend() == "auto"


def test_env_var_read_on_every_call(mock, monkeypatch):
    """$FASTNN_BACKEND is read per call: set, unset, and in a replaced ``os.environ``."""
    import os

    A, W, b, hp = small_conv()
    fastnn.set_backend(None)
    monkeypatch.delenv("FASTNN_BACKEND", raising=False)
    assert fastnn.get_backend() == "auto"
    monkeypatch.setenv("FASTNN_BACKEND", SPARSE)
    assert np.all(fastnn.conv_forward(A, W, b, hp)[0] == 7.0) and fastnn.get_backend() == SPARSE
    monkeypatch.delenv("FASTNN_BACKEND")
    assert not np.all(fastnn.conv_forward(A, W, b, hp)[0] == 7.0) and fastnn.get_backend() == "auto"
    assert mock["conv_forward"] == 1  # auto: the highest priority
    monkeypatch.setattr(os, "environ", dict(os.environ, FASTNN_BACKEND=SPARSE))
    assert np.all(fastnn.conv_forward(A, W, b, hp)[0] == 7.0) and fastnn.get_backend() == SPARSE


def test_context_restored_after_exception(mock):
    before = fastnn.get_backend()
    with pytest.raises(RuntimeError):
        with fastnn.use_backend(MOCK):
            raise RuntimeError("boom")
    assert fastnn.get_backend() == before


def test_unknown_backend_errors_list_what_is_available(mock):
    with pytest.raises(BackendError, match=r"unknown backend 'nmuba' for op 'conv_forward'; backends with 'conv_forward': auto, mock_counting, .*" + re.escape(REF)):
        fastnn.conv_forward(*small_conv(), backend="nmuba")
    with pytest.raises(BackendError, match=r"unknown backend 'nope'; available backends: auto, mock_counting"):
        fastnn.set_backend("nope")
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        with fastnn.use_backend("nope"):
            pass
    assert isinstance(BackendError("x"), ValueError)


def test_backend_lacking_an_op_names_op_and_alternatives(mock):
    A, W, b, hp = small_conv()
    with pytest.raises(BackendError, match=r"backend 'mock_sparse' has no kernel for op 'pool_forward'; backends with 'pool_forward': mock_counting, .*" + re.escape(REF)):
        fastnn.pool_forward(A, {"f": 2, "stride": 2}, backend=SPARSE)


def test_register_rejects_unknown_op_and_undeclared_backend():
    with pytest.raises(ValueError, match="unknown op 'conv3d'"):
        register("conv3d", REF)
    with pytest.raises(BackendError, match="not declared"):
        register("relu", "never_declared")(lambda x, out: None)
    with pytest.raises(ValueError):
        register_backend("auto")


def test_context_is_isolated_across_threads(mock):
    """A thread inside use_backend(...) does not change what another thread runs."""
    A, W, b, hp = small_conv()
    inside = threading.Event()
    release = threading.Event()
    seen = {}

    def worker_a():
        with fastnn.use_backend(SPARSE):
            inside.set()
            release.wait(5)
            seen["a"] = fastnn.get_backend()

    def worker_b():
        inside.wait(5)
        seen["b"] = fastnn.get_backend()
        seen["b_result"] = fastnn.conv_forward(A, W, b, hp, backend=None)[0]
        release.set()

    fastnn.set_backend(REF)
    ta, tb = threading.Thread(target=worker_a), threading.Thread(target=worker_b)
    ta.start(), tb.start()
    ta.join(10), tb.join(10)
    assert seen["a"] == SPARSE
    assert seen["b"] == REF
    assert not np.all(seen["b_result"] == 7.0)


def test_context_is_isolated_across_asyncio_tasks(mock):
    async def task(name, delay):
        with fastnn.use_backend(name):
            await asyncio.sleep(delay)
            return fastnn.get_backend()

    async def main():
        return await asyncio.gather(task(SPARSE, 0.02), task(REF, 0.01), task(MOCK, 0.0))

    assert asyncio.run(main()) == [SPARSE, REF, MOCK]


def test_registry_names_backends_only_in_the_registry():
    """No `if backend == "..."` outside the registry: public modules never spell a backend name."""
    import pathlib

    root = pathlib.Path(fastnn.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "backends" in path.parts or path.name == "_dispatch.py":
            continue
        text = path.read_text()
        if re.search(r"""backend\s*(==|!=|in)\s*\(?["']""", text) or re.search(r"""["']reference["']""", text):
            offenders.append(str(path))
    assert offenders == []
    assert fastnn._dispatch.ground_truth_backend() == "reference"
