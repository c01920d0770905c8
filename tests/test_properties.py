"""Property tests (hypothesis): random shapes, strides and pads, every backend against an
independent vectorised NumPy formulation (sliding windows + einsum), and linearity identities."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn._plugins import builtin_backends

BACKENDS = builtin_backends()
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def windows(X, fh, fw, sh, sw):
    """(m, Ho, Wo, C, fh, fw) strided windows of X."""
    v = np.lib.stride_tricks.sliding_window_view(X, (fh, fw), axis=(1, 2))
    return v[:, ::sh, ::sw]


@st.composite
def conv_configs(draw):
    fh, fw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    H = draw(st.integers(max(1, fh - 2 * ph), 8))
    W = draw(st.integers(max(1, fw - 2 * pw), 8))
    m, C, K = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    return m, H, W, C, K, (fh, fw), (sh, sw), (ph, pw), seed


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(cfg=conv_configs())
def test_conv_matches_einsum(backend, cfg):
    m, H, W, C, K, (fh, fw), (sh, sw), (ph, pw), seed = cfg
    rng = np.random.RandomState(seed)
    A, Wt, b = rng.randn(m, H, W, C), rng.randn(fh, fw, C, K), rng.randn(1, 1, 1, K)
    hp = {"stride": (sh, sw), "pad": (ph, pw)}
    Z, cache = fastnn.conv_forward(A, Wt, b, hp, backend=backend)
    Ap = np.pad(A, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    win = windows(Ap, fh, fw, sh, sw)  # (m, Ho, Wo, C, fh, fw)
    expected = np.einsum("mhwcij,ijck->mhwk", win, Wt) + b
    np.testing.assert_allclose(Z, expected, rtol=1e-12, atol=1e-12)

    dZ = rng.randn(*Z.shape)
    dA, dW, db = fastnn.conv_backward(dZ, cache, backend=backend)
    np.testing.assert_allclose(dW, np.einsum("mhwcij,mhwk->ijck", win, dZ), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(db.reshape(-1), dZ.sum(axis=(0, 1, 2)), rtol=1e-12, atol=1e-12)
    # <dZ, conv(A)> = <conv^T(dZ), A> (the adjoint identity, bias removed)
    Z0, _ = fastnn.conv_forward(A, Wt, np.zeros_like(b), hp, backend=backend)
    assert np.sum(dZ * Z0) == pytest.approx(np.sum(dA * A), rel=1e-10, abs=1e-10)


@st.composite
def pool_configs(draw):
    fh, fw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, fh // 2)), draw(st.integers(0, fw // 2))
    H = draw(st.integers(max(1, fh - 2 * ph), 9))
    W = draw(st.integers(max(1, fw - 2 * pw), 9))
    m, C = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return m, H, W, C, (fh, fw), (sh, sw), (ph, pw), ties, seed


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(cfg=pool_configs())
def test_pool_matches_sliding_windows(backend, cfg):
    m, H, W, C, (fh, fw), (sh, sw), (ph, pw), ties, seed = cfg
    rng = np.random.RandomState(seed)
    A = rng.randint(-2, 3, (m, H, W, C)).astype(float) if ties else rng.randn(m, H, W, C)
    hp = {"f": (fh, fw), "stride": (sh, sw), "pad": (ph, pw)}
    pad = ((0, 0), (ph, ph), (pw, pw), (0, 0))
    win_max = windows(np.pad(A, pad, constant_values=-np.inf), fh, fw, sh, sw)
    win_avg = windows(np.pad(A, pad), fh, fw, sh, sw)
    out, cache = fastnn.pool_forward(A, hp, "max", backend=backend)
    np.testing.assert_array_equal(out, win_max.max(axis=(4, 5)))
    avg, _ = fastnn.pool_forward(A, hp, "average", backend=backend)
    np.testing.assert_allclose(avg, win_avg.mean(axis=(4, 5)), rtol=1e-12, atol=1e-15)

    dA = rng.randn(*out.shape)
    # Average backward: every window spreads dA / (fh fw); check by the adjoint identity.
    g_avg = fastnn.pool_backward(dA, cache, "average", backend=backend)
    assert np.sum(dA * avg) == pytest.approx(np.sum(g_avg * A), rel=1e-10, abs=1e-10)
    # Max backward, ties="first": total gradient is conserved per window, and lands on maxima.
    g_first = fastnn.pool_backward(dA, cache, "max", ties="first", backend=backend)
    g_all = fastnn.pool_backward(dA, cache, "max", ties="all", backend=backend)
    assert g_first.sum() == pytest.approx(dA.sum(), rel=1e-10, abs=1e-10)
    counts = (win_max == out[..., None, None]).sum(axis=(4, 5))  # maxima per window
    assert g_all.sum() == pytest.approx(np.sum(dA * counts), rel=1e-10, abs=1e-10)
    if not ties:
        np.testing.assert_array_equal(g_first, g_all)
