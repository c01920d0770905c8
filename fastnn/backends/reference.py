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


def _pad(X, top, bottom, left, right, value=0.0):
    return np.pad(X, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="constant", constant_values=value)


@register("zero_pad", NAME)
def zero_pad(p, X, out):
    out[...] = _pad(X, p.ph, p.ph, p.pw, p.pw)


def _window(p, h, w):
    """The rows and columns of output (h, w)'s window in the padded input: fh rows dh apart
    from h*sh, fw columns dw apart from w*sw (dilation 1 for pooling)."""
    dh, dw = getattr(p, "dh", 1), getattr(p, "dw", 1)
    v0, h0 = h * p.sh, w * p.sw
    return slice(v0, v0 + (p.fh - 1) * dh + 1, dh), slice(h0, h0 + (p.fw - 1) * dw + 1, dw)


def _all(p) -> bool:
    """The reference computes every call itself: groups, dilation, uneven padding, ceil_mode and
    every divisor (it is what fastnn._lower's compositions are checked against)."""
    return True


@register("conv_forward", NAME)
def conv_forward(p, A_prev, W, b, Z):
    A_pad = _pad(A_prev, p.ph, p.pb, p.pw, p.pr)
    Cg, Kg = p.C // p.G, p.K // p.G  # W is (fh, fw, Cg, K); output channel c reads group c // Kg
    for i in range(p.m):
        for h in range(p.Ho):
            for w in range(p.Wo):
                rows, cols = _window(p, h, w)
                a_slice = A_pad[i, rows, cols, :]
                for c in range(p.K):
                    g = c // Kg
                    Z[i, h, w, c] = np.sum(a_slice[:, :, g * Cg:(g + 1) * Cg] * W[:, :, :, c]) + b[c]


conv_forward.handles = _all


@register("conv_backward", NAME)
def conv_backward(p, A_prev, W, dZ, dA_prev, dW, db):
    A_pad = _pad(A_prev, p.ph, p.pb, p.pw, p.pr)
    dA_pad = np.zeros_like(A_pad)
    dW[...] = 0
    db[...] = 0
    Cg, Kg = p.C // p.G, p.K // p.G
    for i in range(p.m):
        for h in range(p.Ho):
            for w in range(p.Wo):
                rows, cols = _window(p, h, w)
                a_slice = A_pad[i, rows, cols, :]
                for c in range(p.K):
                    g = dZ[i, h, w, c]
                    ch = slice((c // Kg) * Cg, (c // Kg + 1) * Cg)
                    if dA_prev is not None:  # (None: the caller wants no input gradient)
                        dA_pad[i, rows, cols, ch] += W[:, :, :, c] * g
                    dW[:, :, :, c] += a_slice[:, :, ch] * g
                    db[c] += g
    # Un-pad by slicing with explicit ends (the course's [pad:-pad] breaks for pad = 0).
    if dA_prev is not None:
        dA_prev[...] = dA_pad[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W, :]


conv_backward.input_grad_optional = True  # dA_prev None: skipped (see _dispatch.OPS)
conv_backward.handles = _all


def _pool_input(p, A_prev):
    """A_prev padded with -inf (max) or zeros (average), behind as far as the last window
    reaches (ceil_mode's may reach past the padding)."""
    bottom = max(p.pb, (p.Ho - 1) * p.sh + p.fh - p.ph - p.H)
    right = max(p.pr, (p.Wo - 1) * p.sw + p.fw - p.pw - p.W)
    if p.ph == p.pw == bottom == right == 0:
        return A_prev
    return _pad(A_prev, p.ph, bottom, p.pw, right, -np.inf if p.mode == "max" else 0.0)


def _divisor(p, h, w):
    """What average-pooling window (h, w) divides its sum by (``PoolParams.divisor``)."""
    r0, c0 = h * p.sh - p.ph, w * p.sw - p.pw  # the window's first row and column in A_prev
    if p.divisor == "padded":  # the part of the window inside the padded input
        return (min(r0 + p.fh, p.H + p.pb) - r0) * (min(c0 + p.fw, p.W + p.pr) - c0)
    # "valid": the input elements in the window
    return (min(r0 + p.fh, p.H) - max(r0, 0)) * (min(c0 + p.fw, p.W) - max(c0, 0))


@register("pool_forward", NAME)
def pool_forward(p, A_prev, A):
    A_pad = _pool_input(p, A_prev)
    for i in range(p.m):
        for h in range(p.Ho):
            for w in range(p.Wo):
                rows, cols = _window(p, h, w)
                for c in range(p.C):
                    window = A_pad[i, rows, cols, c]
                    if p.mode == "max":
                        A[i, h, w, c] = np.max(window)
                    elif p.divisor == "area":
                        A[i, h, w, c] = np.mean(window)
                    else:
                        A[i, h, w, c] = np.sum(window) / _divisor(p, h, w)


pool_forward.handles = _all


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
            for w in range(p.Wo):
                rows, cols = _window(p, h, w)
                for c in range(p.C):
                    g = dA[i, h, w, c]
                    if p.mode == "max":
                        window = A_pad[i, rows, cols, c]
                        dA_pad[i, rows, cols, c] += mask_from_window(window, p.ties) * g
                    elif p.divisor == "area":
                        dA_pad[i, rows, cols, c] += g / area
                    else:
                        dA_pad[i, rows, cols, c] += g / _divisor(p, h, w)
    dA_prev[...] = dA_pad[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W, :]


pool_backward.handles = _all


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
