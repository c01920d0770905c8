"""``conv_backward(..., input_grad=False)``: no dA_prev (a network's first layer), and dW, db
the same bits as with it, on every backend and variant, every named case, both dtypes (the
conformance suite's matrix check, run by tests/test_matrix.py); the variants' kernels called as
the planner calls them; and ``Sequential.backward(dout, input_grad=False)``, which training uses."""

import numpy as np
import pytest

import fastnn
import fastnn.nn as nn
from fastnn import _dispatch
from fastnn._plugins import builtin_backends, plugin_backends
from fastnn.testing import conformance
from fastnn.testing.cases import CONV_CASES, DTYPES, ConvCase

BACKENDS = builtin_backends()
# Two shapes beyond the named cases, whose channel counts take the numba backend's tiled paths.
MORE = [ConvCase("few_channels", 2, 9, 10, 3, 3, 8, 1, 1), ConvCase("strided_wide", 2, 9, 11, 12, 3, 16, 2, 1)]
CASES = list(CONV_CASES.values()) + MORE

# The conformance suite's conv_backward check (against the reference; then input_grad=False gives
# None and the same dW, db bits) on those shapes, every backend, both dtypes.
test_no_input_grad_gives_the_same_weight_grads = conformance.make_test(
    BACKENDS, ops=["conv_backward"], kinds=["matrix"], conv_cases=MORE)


def test_the_ground_truths_input_grad_path_is_checked_too(monkeypatch):
    """The suite compares no backend's results with the ground truth's but its input_grad=False
    ones: a reference whose dW drifts without dA_prev fails it."""
    ref = _dispatch.ground_truth_backend()
    kernel = _dispatch.kernel_of("conv_backward", ref)

    def sloppy(p, A, W, dZ, dA_prev, dW, db):
        kernel(p, A, W, dZ, dA_prev, dW, db)
        if dA_prev is None:
            dW *= 1 + np.finfo(dW.dtype).eps

    sloppy.input_grad_optional = True
    monkeypatch.setitem(_dispatch._kernels["conv_backward"], ref, sloppy)
    bad = [(c.id, p.message) for c, p in conformance.run(ref, ops=["conv_backward"], kinds=["matrix"], quick=True)
           if p is not None]
    assert bad and all("dropping dA_prev may not change dW or db" in m for _, m in bad), bad


def test_every_conv_backward_variant_skips_the_input_grad():
    """The planner's variants (called as it calls them) leave dA_prev out and make the same dW."""
    from fastnn import _params
    for dtype in DTYPES:
        for case in CASES:
            A, W, b, hp, dZ = case.make(dtype, seed=5)
            p = _params.conv_params(A, W, b, hp)
            if _params.conv_layout(hp) == "NCHW":  # the wrapper gives the kernels NHWC copies
                A, dZ, W = A.transpose(0, 2, 3, 1), dZ.transpose(0, 2, 3, 1), W.transpose(2, 3, 1, 0)
            # the kernel's inputs as the wrapper passes them: C-contiguous, of p.dtype
            A, W, dZ = (np.ascontiguousarray(x, dtype=p.dtype) for x in (A, W, dZ))
            for name in _dispatch.candidates("conv_backward", p):
                kernel = _dispatch._candidates["conv_backward"][name]
                if name.split(_dispatch.SEP)[0] in plugin_backends() or not _dispatch.handles(kernel, p):
                    continue  # (a call a kernel does not handle reaches it as course calls: fastnn._lower)
                assert getattr(kernel, "input_grad_optional", False), f"{name} is given a dA_prev to drop"
                dW, db = np.empty_like(W), np.empty(p.K, dtype=p.dtype)
                kernel(p, A, W, dZ, np.empty_like(A), dW, db)
                dW2, db2 = np.full_like(W, np.nan), np.full(p.K, np.nan, dtype=p.dtype)
                kernel(p, A, W, dZ, None, dW2, db2)
                np.testing.assert_array_equal(dW2, dW, err_msg=f"{name} {case.name}")
                np.testing.assert_array_equal(db2, db, err_msg=f"{name} {case.name}")


def test_a_kernel_that_does_not_declare_it_gets_a_dA_prev_to_fill(monkeypatch):
    """Third-party kernels written before input_grad: given an array (then dropped), never None."""
    seen = []

    def old_style(p, A_prev, W, dZ, dA_prev, dW, db):
        seen.append(dA_prev)
        dA_prev[...] = 0
        dW[...] = 1
        db[...] = 2

    monkeypatch.setattr(_dispatch, "_planner", None)
    fastnn.register_backend("old_style_test", priority=-100)
    try:
        fastnn.register("conv_backward", "old_style_test")(old_style)
        A, W, b, hp, dZ = CONV_CASES[next(iter(CONV_CASES))].make(np.float64, seed=1)
        _, cache = fastnn.conv_forward(A, W, b, hp)
        none, dW, db = fastnn.conv_backward(dZ, cache, backend="old_style_test", input_grad=False)
        assert none is None and isinstance(seen[0], np.ndarray) and seen[0].shape == A.shape
        assert (dW == 1).all() and (db == 2).all()
    finally:
        fastnn.unregister_backend("old_style_test")


def test_input_grad_must_be_a_bool():
    A, W, b, hp, dZ = CONV_CASES[next(iter(CONV_CASES))].make(np.float64, seed=1)
    _, cache = fastnn.conv_forward(A, W, b, hp)
    with pytest.raises(TypeError, match="input_grad"):
        fastnn.conv_backward(dZ, cache, input_grad="no")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_sequential_backward_without_input_grad(dtype):
    model = nn.make_cnn((10, 10, 3), channels=(4, 5), dtype=dtype, seed=2)
    x = np.random.default_rng(0).random((3, 10, 10, 3)).astype(dtype)
    dout = np.random.default_rng(1).random(model.forward(x).shape).astype(dtype)
    dx = model.backward(dout)
    grads = [dict(layer.grads) for layer in model.layers if getattr(layer, "grads", None)]
    model.forward(x)
    assert model.backward(dout, input_grad=False) is None
    grads2 = [dict(layer.grads) for layer in model.layers if getattr(layer, "grads", None)]
    assert dx.shape == x.shape and len(grads) == len(grads2) > 0
    for g, g2 in zip(grads, grads2):
        for key in g:
            np.testing.assert_array_equal(g2[key], g[key])
