"""The ``reference`` backend: the course's loops, in readable NumPy.

This is the ground truth every other backend is tested against, so it stays as close
to the course's four nested loops as it can (one output element per step, the
window sliced out and reduced with NumPy). It is slow on purpose-built shapes and
correct on all of them. Kernels fill the outputs the wrapper allocated.
"""

from __future__ import annotations

import numpy as np

from .._dispatch import register, register_backend

NAME = "reference"
register_backend(NAME, priority=0, description="the course's loops in NumPy (ground truth, slow)", ground_truth=True)


def _pad(X, ph, pw, value=0.0):
    return np.pad(X, ((0, 0), (ph, ph), (pw, pw), (0, 0)), mode="constant", constant_values=value)


@register("zero_pad", NAME)
def zero_pad(p, X, out):
    out[...] = _pad(X, p.ph, p.pw)


@register("conv_forward", NAME)
def conv_forward(p, A_prev, W, b, Z):
    A_pad = _pad(A_prev, p.ph, p.pw)
    for i in range(p.m):
        for h in range(p.Ho):
            v0 = h * p.sh
            for w in range(p.Wo):
                h0 = w * p.sw
                a_slice = A_pad[i, v0:v0 + p.fh, h0:h0 + p.fw, :]
                for c in range(p.K):
                    Z[i, h, w, c] = np.sum(a_slice * W[:, :, :, c]) + b[c]


@register("conv_backward", NAME)
def conv_backward(p, A_prev, W, dZ, dA_prev, dW, db):
    A_pad = _pad(A_prev, p.ph, p.pw)
    dA_pad = np.zeros_like(A_pad)
    dW[...] = 0
    db[...] = 0
    for i in range(p.m):
        for h in range(p.Ho):
            v0 = h * p.sh
            for w in range(p.Wo):
                h0 = w * p.sw
                a_slice = A_pad[i, v0:v0 + p.fh, h0:h0 + p.fw, :]
                for c in range(p.K):
                    g = dZ[i, h, w, c]
                    if dA_prev is not None:  # (None: the caller wants no input gradient)
                        dA_pad[i, v0:v0 + p.fh, h0:h0 + p.fw, :] += W[:, :, :, c] * g
                    dW[:, :, :, c] += a_slice * g
                    db[c] += g
    # Un-pad by slicing with explicit ends (the course's [pad:-pad] breaks for pad = 0).
    if dA_prev is not None:
        dA_prev[...] = dA_pad[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W, :]


conv_backward.input_grad_optional = True  # dA_prev None: skipped (see _dispatch.OPS)


def _pool_input(p, A_prev):
    """A_prev padded with -inf (max) or zeros (average: pads count in the divisor)."""
    if p.ph == 0 and p.pw == 0:
        return A_prev
    return _pad(A_prev, p.ph, p.pw, -np.inf if p.mode == "max" else 0.0)


@register("pool_forward", NAME)
def pool_forward(p, A_prev, A):
    A_pad = _pool_input(p, A_prev)
    for i in range(p.m):
        for h in range(p.Ho):
            v0 = h * p.sh
            for w in range(p.Wo):
                h0 = w * p.sw
                for c in range(p.C):
                    window = A_pad[i, v0:v0 + p.fh, h0:h0 + p.fw, c]
                    if p.mode == "max":
                        A[i, h, w, c] = np.max(window)
                    else:
                        A[i, h, w, c] = np.mean(window)


def mask_from_window(window, ties="all"):
    """Where the window's maximum is: every equal position ("all") or the first one ("first")."""
    if ties == "first":
        mask = np.zeros(window.shape, dtype=bool)
        mask.flat[np.argmax(window)] = True
        return mask
    return window == np.max(window)


@register("pool_backward", NAME)
def pool_backward(p, A_prev, dA, dA_prev):
    A_pad = _pool_input(p, A_prev)
    dA_pad = np.zeros(A_pad.shape, dtype=dA_prev.dtype)
    area = p.fh * p.fw
    for i in range(p.m):
        for h in range(p.Ho):
            v0 = h * p.sh
            for w in range(p.Wo):
                h0 = w * p.sw
                for c in range(p.C):
                    g = dA[i, h, w, c]
                    if p.mode == "max":
                        window = A_pad[i, v0:v0 + p.fh, h0:h0 + p.fw, c]
                        dA_pad[i, v0:v0 + p.fh, h0:h0 + p.fw, c] += mask_from_window(window, p.ties) * g
                    else:
                        dA_pad[i, v0:v0 + p.fh, h0:h0 + p.fw, c] += g / area
    dA_prev[...] = dA_pad[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W, :]


@register("relu", NAME)
def relu(x, out):
    np.maximum(0, x, out=out)


@register("relu_backward", NAME)
def relu_backward(dA, Z, out):
    out[...] = dA
    out[Z <= 0] = 0


@register("sigmoid", NAME)
def sigmoid(x, out):
    with np.errstate(over="ignore"):
        out[...] = 1 / (1 + np.exp(-x))


@register("sigmoid_backward", NAME)
def sigmoid_backward(dA, Z, out):
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-Z))
    out[...] = dA * s * (1 - s)
