"""Convolutions and poolings beyond the course's, run as course calls where the kernel that
runs a call does not handle its params itself (:func:`fastnn._dispatch.handles`).

Every backend computes the course's convolution (one group, no dilation, the same padding on
both sides) and pooling (the same padding on both sides, every window inside the padded input,
an average over the whole window). The rest is composed of such calls here, so that every
backend, a plugin's too, runs every option; a kernel that does better itself declares it with
a ``handles(p)`` attribute (the reference handles everything, as the ground truth must):

* **groups**: one call per group on the group's channels (copied contiguous);
* **dilation**: per output phase r of each dimension (the outputs ``ho = r + q d'``, with
  ``g = gcd(s, d)``, ``d' = d / g``), a dilated convolution at stride s is an undilated one at
  stride ``s / g`` over the padded input's rows ``r s + d v`` (TensorFlow's space-to-batch).
  The phases write disjoint outputs and, in the backward, disjoint input rows (``r s mod d``
  differs between phases), so ``dA_prev`` needs no sums; dW and db add the phases in order;
* **uneven padding** (TensorFlow's "same", explicit pairs) and pooling windows that reach
  past it (``ceil_mode``): the input padded here (zeros; ``-inf`` for max pooling), then a
  call without padding, and its gradient cropped;
* **an average's other divisors** (``count_include_pad=False``, ``ceil_mode``): the
  whole-window average rescaled per window by ``area / divisor``, and ``dA`` rescaled before
  the backward.

Each sub-call is dispatched as any call is: the backend asked for, or ``auto`` with the plan for
the sub-call's own key (a sub-call is a course call, so the plans and tuning of course shapes
serve it). Extra memory: the padded input, and one group's or phase's pieces at a time.
"""

from __future__ import annotations

from math import gcd
from typing import Optional

import numpy as np

from . import _params as P
from ._dispatch import handles, resolve

__all__ = ["conv_forward", "conv_backward", "pool_forward", "pool_backward", "call_backward"]


def call_backward(kernel, p, A, W, dZ, dA, dW, db) -> None:
    """A conv_backward kernel; one that cannot skip dA_prev gets one to fill, dropped."""
    if dA is None and not getattr(kernel, "input_grad_optional", False):
        dA = np.empty(A.shape, dtype=p.dtype)
    kernel(p, A, W, dZ, dA, dW, db)


def _pad(X: np.ndarray, top: int, bottom: int, left: int, right: int, value) -> np.ndarray:
    m, H, W, C = X.shape
    out = np.empty((m, top + H + bottom, left + W + right, C), dtype=X.dtype)
    if top or bottom or left or right:
        out[:, :top] = value
        out[:, top + H:] = value
        out[:, top:top + H, :left] = value
        out[:, top:top + H, left + W:] = value
    out[:, top:top + H, left:left + W] = X
    return out


def _contig(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


# ------------------------------------------------------------------ convolution


def conv_forward(p: P.ConvParams, backend: Optional[str], A, W, b, Z, kernel=None) -> None:
    """``Z = conv(A, W) + b`` for any checked ``p`` (arrays C-contiguous NHWC of ``p.dtype``, b (K,));
    ``kernel``: the one :func:`resolve` gave for ``p`` already, if any."""
    kernel = kernel or resolve("conv_forward", backend, p)
    if handles(kernel, p):
        kernel(p, A, W, b, Z)
    elif p.G > 1:
        _forward_groups(p, backend, A, W, b, Z)
    else:
        _forward_padded(p, backend, A, W, b, Z)


def conv_backward(p: P.ConvParams, backend: Optional[str], A, W, dZ, dA, dW, db, kernel=None) -> None:
    """``dA`` (None: not wanted), ``dW``, ``db`` (K,) of a convolution for any checked ``p``
    (``kernel``: as for :func:`conv_forward`)."""
    kernel = kernel or resolve("conv_backward", backend, p)
    if handles(kernel, p):
        call_backward(kernel, p, A, W, dZ, dA, dW, db)
    elif p.G > 1:
        _backward_groups(p, backend, A, W, dZ, dA, dW, db)
    else:
        _backward_padded(p, backend, A, W, dZ, dA, dW, db)


def _groups(p):
    """The params of one group's call and each group's (input channel, output channel) slices."""
    Cg, Kg = p.C // p.G, p.K // p.G
    q = p._replace(C=Cg, K=Kg, G=1, layout="NHWC")  # (course calls on NHWC arrays, whatever the caller's layout)
    return q, [(slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)) for g in range(p.G)]


def _forward_groups(p, backend, A, W, b, Z):
    q, slices = _groups(p)
    Zg = np.empty((p.m, p.Ho, p.Wo, q.K), dtype=p.dtype)
    for cs, ks in slices:
        conv_forward(q, backend, _contig(A[..., cs]), _contig(W[..., ks]), b[ks], Zg)
        Z[..., ks] = Zg


def _backward_groups(p, backend, A, W, dZ, dA, dW, db):
    q, slices = _groups(p)
    dAg = None if dA is None else np.empty((p.m, p.H, p.W, q.C), dtype=p.dtype)
    dWg = np.empty((p.fh, p.fw, q.C, q.K), dtype=p.dtype)
    dbg = np.empty(q.K, dtype=p.dtype)
    for cs, ks in slices:
        conv_backward(q, backend, _contig(A[..., cs]), _contig(W[..., ks]), _contig(dZ[..., ks]), dAg, dWg, dbg)
        if dA is not None:
            dA[..., cs] = dAg
        dW[..., ks] = dWg
        db[ks] = dbg


def _padded_input(p, A):
    """A zero-padded by p's four pads (A itself when they are all 0): the sub-calls have none."""
    if p.ph == p.pb == p.pw == p.pr == 0:
        return A
    return _pad(A, p.ph, p.pb, p.pw, p.pr, 0)


def _phases(n_out: int, f: int, s: int, d: int):
    """One dimension's output phases: (r, outputs, input rows the phase reads), the step d' of
    its outputs and the stride s' of its sub-call (see the module docstring)."""
    g = gcd(s, d)
    dp, sp = d // g, s // g
    out = []
    for r in range(dp):
        n = len(range(r, n_out, dp))
        if n:
            out.append((r, n, (n - 1) * sp + f))
    return out, dp, sp


def _span(start: int, d: int, count: int, n: int):
    """Of the indices start + d*v (v < count) of a padded dimension, those inside the input
    [0, n): (v0, v1) and the input slice they read."""
    v0 = max(0, -(start // d))  # the first v with start + d*v >= 0
    v1 = min(count, (n - 1 - start) // d + 1) if n - 1 - start >= 0 else 0
    v1 = max(v1, v0)
    a0 = start + d * v0
    return v0, v1, slice(a0, a0 + (v1 - v0 - 1) * d + 1 if v1 > v0 else a0, d)


def _phase_grid(p):
    """Per output phase: the sub-call's params, where its input sits in A_prev (rows and
    columns of the phase input, the input slices they read: the rest is padding) and its outputs."""
    rows, dph, sph = _phases(p.Ho, p.fh, p.sh, p.dh)
    cols, dpw, spw = _phases(p.Wo, p.fw, p.sw, p.dw)
    for rh, nh, xh in rows:
        for rw, nw, xw in cols:
            q = P.core_conv(p.m, xh, xw, p.C, p.fh, p.fw, p.K, sph, spw, 0, 0, p.dtype)
            assert (q.Ho, q.Wo) == (nh, nw)
            # the phase's input rows are the padded input's r s + d v (v < xh): in A_prev, r s - pad + d v
            v0, v1, hs = _span(rh * p.sh - p.ph, p.dh, xh, p.H)
            u0, u1, ws = _span(rw * p.sw - p.pw, p.dw, xw, p.W)
            inner = (slice(None), slice(v0, v1), slice(u0, u1))
            yield q, inner, (slice(None), hs, ws), (slice(None), slice(rh, None, dph), slice(rw, None, dpw))


def _forward_padded(p, backend, A, W, b, Z):
    """One group: uneven padding and/or dilation."""
    if p.dh == 1 and p.dw == 1:
        q = P.core_conv(p.m, p.Hp, p.Wp, p.C, p.fh, p.fw, p.K, p.sh, p.sw, 0, 0, p.dtype)
        conv_forward(q, backend, _padded_input(p, A), W, b, Z)
        return
    # per phase, its input gathered from A_prev (zeros where it is padding): one pass over the
    # input in all, no padded copy
    for q, inner, src, dst in _phase_grid(p):
        X = np.zeros((p.m, q.H, q.W, p.C), dtype=p.dtype)
        X[inner] = A[src]
        Zr = np.empty((p.m, q.Ho, q.Wo, p.K), dtype=p.dtype)
        conv_forward(q, backend, X, W, b, Zr)
        Z[dst] = Zr


def _backward_padded(p, backend, A, W, dZ, dA, dW, db):
    if p.dh == 1 and p.dw == 1:
        Ap = _padded_input(p, A)
        q = P.core_conv(p.m, p.Hp, p.Wp, p.C, p.fh, p.fw, p.K, p.sh, p.sw, 0, 0, p.dtype)
        dAp = np.empty(Ap.shape, dtype=p.dtype) if dA is not None and Ap is not A else dA
        conv_backward(q, backend, Ap, W, dZ, dAp, dW, db)
        if dAp is not dA:
            dA[...] = dAp[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W]
        return
    if dA is not None:  # input rows no phase reads get no gradient (phases write disjoint rows)
        dA.fill(0)
    dWr, dbr = np.empty_like(dW), np.empty_like(db)
    for k, (q, inner, src, dst) in enumerate(_phase_grid(p)):
        X = np.zeros((p.m, q.H, q.W, p.C), dtype=p.dtype)
        X[inner] = A[src]
        dX = None if dA is None else np.empty(X.shape, dtype=p.dtype)
        conv_backward(q, backend, X, W, _contig(dZ[dst]), dX, *((dW, db) if k == 0 else (dWr, dbr)))
        if k:
            dW += dWr
            db += dbr
        if dA is not None:
            dA[src] = dX[inner]


# ---------------------------------------------------------------------- pooling


def _divisor_scale(p):
    """(Ho, Wo, 1): area / divisor per window, in p's dtype."""
    rows, cols = P.pool_divisors(p)
    return ((p.fh * p.fw) / (rows[:, None] * cols[None, :])).astype(p.dtype)[:, :, None]


def _pool_padded(q, A):
    """A padded as the kernels would (-inf for max, zeros for average), far enough behind for
    every window, and the params of an unpadded pooling over it (the same outputs)."""
    bottom = max(q.Hp, (q.Ho - 1) * q.sh + q.fh) - q.ph - q.H
    right = max(q.Wp, (q.Wo - 1) * q.sw + q.fw) - q.pw - q.W
    Ap = _pad(A, q.ph, bottom, q.pw, right, -np.inf if q.mode == "max" else 0)
    r = P.core_pool(q.m, Ap.shape[1], Ap.shape[2], q.C, q.fh, q.fw, q.sh, q.sw, q.mode, q.ties, q.dtype)
    assert (r.Ho, r.Wo) == (q.Ho, q.Wo)
    return Ap, r


def pool_forward(p: P.PoolParams, backend: Optional[str], A, out) -> None:
    """The pooling of ``A`` into ``out`` for any checked ``p``."""
    kernel = resolve("pool_forward", backend, p)
    if handles(kernel, p):
        kernel(p, A, out)
        return
    q = p._replace(divisor="area")
    if handles(kernel, q):
        kernel(q, A, out)
    else:
        Ap, r = _pool_padded(q, A)
        resolve("pool_forward", backend, r)(r, Ap, out)
    if p.divisor != "area":
        out *= _divisor_scale(p)


def pool_backward(p: P.PoolParams, backend: Optional[str], A, dA, dA_prev) -> None:
    """The gradient of a pooling for any checked ``p``."""
    kernel = resolve("pool_backward", backend, p)
    if handles(kernel, p):
        kernel(p, A, dA, dA_prev)
        return
    q = p._replace(divisor="area")
    if p.divisor != "area":
        dA = dA * _divisor_scale(p)
    if handles(kernel, q):
        kernel(q, A, dA, dA_prev)
        return
    Ap, r = _pool_padded(q, A)
    dAp = np.empty(Ap.shape, dtype=p.dtype)
    resolve("pool_backward", backend, r)(r, Ap, dA, dAp)
    dA_prev[...] = dAp[:, q.ph:q.ph + q.H, q.pw:q.pw + q.W]
