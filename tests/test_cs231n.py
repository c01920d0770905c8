"""fastnn.compat.cs231n against CS231n's naive loops (written out here, NCHW), its gradient
checks (numerical gradients, its rel_error), ties, dtypes, bad input, and the star import."""

import subprocess
import sys

import numpy as np
import pytest

from fastnn.compat import cs231n as fl
from fastnn.testing.tolerance import assert_close


# ---------------------------------------------- CS231n's naive layers (the assignment's loops)

def naive_conv_forward(x, w, b, conv_param):
    s, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    Ho, Wo = 1 + (H + 2 * pad - HH) // s, 1 + (W + 2 * pad - WW) // s
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    out[n, f, i, j] = np.sum(xp[n, :, i * s:i * s + HH, j * s:j * s + WW] * w[f]) + b[f]
    return out


def naive_conv_backward(dout, x, w, b, conv_param):
    s, pad = conv_param["stride"], conv_param["pad"]
    F, _, HH, WW = w.shape
    N, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), dout.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    g = dout[n, f, i, j]
                    dw[f] += xp[n, :, i * s:i * s + HH, j * s:j * s + WW] * g
                    dxp[n, :, i * s:i * s + HH, j * s:j * s + WW] += w[f] * g
    return dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw, db


def naive_pool_forward(x, pp):
    ph, pw, s = pp["pool_height"], pp["pool_width"], pp["stride"]
    N, C, H, W = x.shape
    out = np.zeros((N, C, 1 + (H - ph) // s, 1 + (W - pw) // s), dtype=x.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].max(axis=(2, 3))
    return out


def naive_pool_backward(dout, x, pp):
    ph, pw, s = pp["pool_height"], pp["pool_width"], pp["stride"]
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    win = x[n, c, i * s:i * s + ph, j * s:j * s + pw]
                    dx[n, c, i * s:i * s + ph, j * s:j * s + pw] += (win == win.max()) * dout[n, c, i, j]
    return dx


def rel_error(x, y):
    """CS231n's relative error."""
    return np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y)))


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """CS231n's centred-difference gradient of f at x, contracted with df."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        pos = f(x).copy()
        x[ix] = old - h
        neg = f(x).copy()
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


CONV = [((2, 3, 7, 8), (4, 3, 3, 3), 1, 1), ((2, 3, 9, 9), (5, 3, 3, 3), 2, 1),
        ((1, 4, 8, 7), (3, 4, 5, 5), 1, 2), ((2, 2, 6, 6), (3, 2, 1, 1), 1, 0),
        ((3, 5, 10, 11), (6, 5, 4, 2), 3, 0)]
POOL = [((2, 3, 8, 8), 2, 2, 2), ((2, 4, 9, 7), 3, 3, 2), ((1, 2, 8, 9), 2, 3, 1)]


@pytest.mark.parametrize("xs,ws,stride,pad", CONV)
def test_conv_equals_the_naive_loops(xs, ws, stride, pad):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    cp = {"stride": stride, "pad": pad}
    out, cache = fl.conv_forward_fast(x, w, b, cp)
    want = naive_conv_forward(x, w, b, cp)
    assert out.shape == want.shape and out.flags.c_contiguous
    assert_close(out, want, np.float64, "out")
    dout = rng.standard_normal(out.shape)
    for name, got, ref in zip(("dx", "dw", "db"), fl.conv_backward_fast(dout, cache),
                              naive_conv_backward(dout, x, w, b, cp)):
        assert got.shape == ref.shape, name
        assert_close(got, ref, np.float64, name)
    # the naive names take the naive cache (x, w, b, conv_param) too
    for got, ref in zip(fl.conv_backward_naive(dout, (x, w, b, cp)), fl.conv_backward_fast(dout, cache)):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("xs,ph,pw,stride", POOL)
def test_max_pool_equals_the_naive_loops_ties_included(xs, ph, pw, stride):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=xs).astype(np.float64)  # many ties: all of them get the gradient
    pp = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out, cache = fl.max_pool_forward_fast(x, pp)
    np.testing.assert_array_equal(out, naive_pool_forward(x, pp))
    dout = rng.standard_normal(out.shape)
    dx = fl.max_pool_backward_fast(dout, cache)
    assert_close(dx, naive_pool_backward(dout, x, pp), np.float64, "dx")
    np.testing.assert_array_equal(fl.max_pool_backward_naive(dout, (x, pp)), dx)


def test_gradient_checks_as_in_the_assignment():
    """The assignment's checks: relative errors of the analytic gradients against numerical
    ones (it expects around 1e-8 or less)."""
    rng = np.random.default_rng(231)
    x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((3, 3, 3, 3)), rng.standard_normal(3)
    cp, pp = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, cache = fl.conv_relu_pool_forward(x, w, b, cp, pp)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = fl.conv_relu_pool_backward(dout, cache)
    errors = {
        "dx": rel_error(dx, eval_numerical_gradient_array(lambda v: fl.conv_relu_pool_forward(v, w, b, cp, pp)[0], x, dout)),
        "dw": rel_error(dw, eval_numerical_gradient_array(lambda v: fl.conv_relu_pool_forward(x, v, b, cp, pp)[0], w, dout)),
        "db": rel_error(db, eval_numerical_gradient_array(lambda v: fl.conv_relu_pool_forward(x, w, v, cp, pp)[0], b, dout)),
    }
    out, cache = fl.conv_forward_naive(x, w, b, cp)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = fl.conv_backward_naive(dout, cache)
    errors["conv dx"] = rel_error(dx, eval_numerical_gradient_array(lambda v: fl.conv_forward_naive(v, w, b, cp)[0], x, dout))
    errors["conv dw"] = rel_error(dw, eval_numerical_gradient_array(lambda v: fl.conv_forward_naive(x, v, b, cp)[0], w, dout))
    print("relative errors:", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < 1e-7, errors


def test_conv_relu_sandwich_equals_its_parts():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    cp = {"stride": 1, "pad": 1}
    out, cache = fl.conv_relu_forward(x, w, b, cp)
    want = np.maximum(0, naive_conv_forward(x, w, b, cp))
    assert_close(out, want, np.float64, "out")
    dout = rng.standard_normal(out.shape)
    da = dout * (naive_conv_forward(x, w, b, cp) > 0)
    for name, got, ref in zip(("dx", "dw", "db"), fl.conv_relu_backward(dout, cache),
                              naive_conv_backward(da, x, w, b, cp)):
        assert_close(got, ref, np.float64, name)


def test_float32_stays_float32():
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 6, 6), (4, 3, 3, 3), (4,)))
    out, cache = fl.conv_relu_pool_forward(x, w, b, {"stride": 1, "pad": 1},
                                           {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in fl.conv_relu_pool_backward(np.ones_like(out), cache))
    want = naive_conv_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                              {"stride": 1, "pad": 1})
    assert_close(fl.conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})[0], want.astype(np.float32),
                 np.float32, "out")


def test_bad_arguments_name_what_is_wrong():
    x, w, b = np.zeros((1, 3, 5, 5)), np.zeros((2, 3, 3, 3)), np.zeros(2)
    with pytest.raises(ValueError, match="w must have shape .F, C, HH, WW. with C = x's 3"):
        fl.conv_forward_fast(x, np.zeros((2, 4, 3, 3)), b, {"stride": 1, "pad": 1})
    with pytest.raises(ValueError, match=r"b must have shape \(F,\) = \(2,\)"):
        fl.conv_forward_fast(x, w, np.zeros(3), {"stride": 1, "pad": 1})
    with pytest.raises(ValueError, match="conv_param lacks 'pad'"):
        fl.conv_forward_fast(x, w, b, {"stride": 1})
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\)"):
        fl.conv_forward_fast(np.zeros((3, 5, 5)), w, b, {"stride": 1, "pad": 1})
    with pytest.raises(ValueError, match="pool_param lacks 'pool_width'"):
        fl.max_pool_forward_fast(x, {"pool_height": 2, "stride": 2})
    with pytest.raises(TypeError, match="pool_param must be a dict"):
        fl.max_pool_forward_fast(x, None)
    with pytest.raises(ValueError, match="cache must be"):
        fl.conv_backward_fast(np.zeros((1, 2, 5, 5)), (x, w))


def test_star_import_and_a_light_import_fastnn():
    ns = {}
    exec("from fastnn.compat.cs231n import *", ns)
    assert {"conv_forward_fast", "conv_backward_fast", "max_pool_forward_fast", "max_pool_backward_fast",
            "conv_forward_naive", "conv_forward_strides", "conv_forward_im2col", "conv_backward_im2col",
            "conv_relu_forward", "conv_relu_pool_backward"} <= set(ns)
    code = "import sys, fastnn; print('fastnn.compat' in sys.modules, 'fastnn.compat.cs231n' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
