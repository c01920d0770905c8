"""An example fastnn backend: the course's math in vectorised NumPy (one loop over the window).

Installed, it is found through its entry point (group ``fastnn.backends``); ``fastnn info`` lists
it and ``fastnn check example`` runs the conformance suite on it. Each kernel has the signature
of ``fastnn.OPS``, receives checked C-contiguous arrays of ``p.dtype`` and fills the
outputs fastnn allocated, without touching its inputs.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import fastnn

NAME = "example"
fastnn.register_backend(NAME, priority=-10, description="example plugin: vectorised NumPy")


def _pad(X, ph, pw, value=0.0):
    return np.pad(X, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=value)


def _windows(p, X):
    """(m, Ho, Wo, C, fh, fw) view of the windows of padded X."""
    v = sliding_window_view(X, (p.fh, p.fw), axis=(1, 2))
    return v[:, : (p.Ho - 1) * p.sh + 1 : p.sh, : (p.Wo - 1) * p.sw + 1 : p.sw]


@fastnn.register("zero_pad", NAME)
def zero_pad(p, X, out):
    out.fill(0)
    out[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W, :] = X


@fastnn.register("conv_forward", NAME)
def conv_forward(p, A_prev, W, b, Z):
    win = _windows(p, _pad(A_prev, p.ph, p.pw))          # (m, Ho, Wo, C, fh, fw)
    Z[...] = np.einsum("mhwcij,ijck->mhwk", win, W) + b


@fastnn.register("conv_backward", NAME)
def conv_backward(p, A_prev, W, dZ, dA_prev, dW, db):
    A_pad = _pad(A_prev, p.ph, p.pw)
    dA_pad = np.zeros_like(A_pad)
    hs, ws = slice(None), slice(None)
    for i in range(p.fh):
        hs = slice(i, i + (p.Ho - 1) * p.sh + 1, p.sh)
        for j in range(p.fw):
            ws = slice(j, j + (p.Wo - 1) * p.sw + 1, p.sw)
            dW[i, j] = np.einsum("mhwc,mhwk->ck", A_pad[:, hs, ws, :], dZ)
            dA_pad[:, hs, ws, :] += dZ @ W[i, j].T
    db[...] = dZ.sum(axis=(0, 1, 2))
    dA_prev[...] = dA_pad[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W, :]


def _pool_input(p, A_prev):
    return _pad(A_prev, p.ph, p.pw, -np.inf if p.mode == "max" else 0.0)


@fastnn.register("pool_forward", NAME)
def pool_forward(p, A_prev, A):
    win = _windows(p, _pool_input(p, A_prev))
    if p.mode == "max":
        A[...] = win.max(axis=(-2, -1))
    else:  # the window's sum in row-major order, then / area: the reference's np.mean
        acc = np.zeros(A.shape, A.dtype)
        for i in range(p.fh):
            for j in range(p.fw):
                acc += win[..., i, j]
        A[...] = acc / (p.fh * p.fw)


@fastnn.register("pool_backward", NAME)
def pool_backward(p, A_prev, dA, dA_prev):
    A_pad = _pool_input(p, A_prev)
    win = _windows(p, A_pad)
    if p.mode == "max":
        flat = win.reshape(win.shape[:4] + (-1,))
        if p.ties == "first":
            mask = np.zeros(flat.shape, bool)
            np.put_along_axis(mask, flat.argmax(axis=-1)[..., None], True, axis=-1)
        else:
            mask = flat == flat.max(axis=-1, keepdims=True)
        mask = mask.reshape(win.shape)
    dA_pad = np.zeros(A_pad.shape, dA_prev.dtype)
    # offsets in reverse, so that each position sums its windows in the reference's (h, w) order
    for i in reversed(range(p.fh)):
        hs = slice(i, i + (p.Ho - 1) * p.sh + 1, p.sh)
        for j in reversed(range(p.fw)):
            ws = slice(j, j + (p.Wo - 1) * p.sw + 1, p.sw)
            dA_pad[:, hs, ws, :] += (mask[..., i, j] * dA) if p.mode == "max" else dA / (p.fh * p.fw)
    dA_prev[...] = dA_pad[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W, :]


@fastnn.register("relu", NAME)
def relu(x, out):
    np.maximum(x, 0, out=out)


@fastnn.register("relu_backward", NAME)
def relu_backward(dA, Z, out):
    out[...] = dA
    out[Z <= 0] = 0


@fastnn.register("sigmoid", NAME)
def sigmoid(x, out):
    with np.errstate(over="ignore"):
        out[...] = 1 / (1 + np.exp(-x))


@fastnn.register("sigmoid_backward", NAME)
def sigmoid_backward(dA, Z, out):
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-Z))
    out[...] = dA * s * (1 - s)
