"""The ``im2col`` backend: column matrices and BLAS GEMMs, in bounded memory.

Convolution
    forward   ``Z = cols @ W.reshape(fh*fw*C, K) + b`` with ``cols`` the
              ``(N*Ho*Wo, fh*fw*C)`` column matrix of the zero-padded input, as one
              GEMM: ``cols`` gets a last column of ones and ``W`` a last row ``b``;
    backward  ``dW = cols^T @ dZ``, ``db = sum(dZ)``, ``dcols = dZ @ W^T`` then
              ``col2im`` (the adjoint of ``im2col``) into ``dA_prev``.
Pooling
    the same ``im2col`` (padding with ``-inf`` for max, zeros for average) viewed as
    ``(rows, fh*fw, C)``; max/mean over the window axis. Backward builds the window
    gradient (``ties="all"``: every position equal to the max; ``"first"``: the argmax)
    and scatters it with the same ``col2im``.

Memory: the batch is split into chunks (whole images, else output rows of one image,
else pieces of one output row) so that the workspace a chunk needs (its column buffer;
on the NumPy path without numba also a padded copy of the chunk's input rows; in the
forward also W with b as its last row, made once per call) fits the
per-thread workspace limit: 256 MiB by default, set with :func:`set_workspace_limit`
(bytes) or ``FASTNN_IM2COL_WORKSPACE_MB``. Below the limit, chunks are kept near
:data:`PREFERRED_CHUNK_BYTES` (4 MiB) so the columns are still in cache when the GEMM
reads them. The Numba column loops read the padding on the fly and col2im adds into
``dA_prev`` dropping it: no padded copy of the input is made (short window rows go
through a scratch of the few padded input rows one output row's windows span, made per
call). The workspace is one per-thread buffer reused across calls
(:mod:`threading.local`), in the compute dtype: float32 stays float32.

Threads: columns are built (and scattered back) on the calling thread by serial Numba
loops (NumPy strided copies when numba is missing), never by a parallel pool, so the BLAS
GEMM has both cores to itself and no idle OpenMP/workqueue threads spin against it.
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Tuple

import numpy as np

from ..._dispatch import register, register_backend
from . import columns
from .columns import col2im, col2im_padded, fill_source, im2col, im2col_padded, max_window_grad, window_reduce
from .workspace import (
    DEFAULT_WORKSPACE_MB,
    ENV_WORKSPACE,
    arena,
    get_workspace_limit,
    region_bytes,
    release_workspace,
    set_workspace_limit,
    workspace_nbytes,
)

__all__ = [
    "NAME",
    "set_workspace_limit",
    "get_workspace_limit",
    "release_workspace",
    "workspace_nbytes",
    "DEFAULT_WORKSPACE_MB",
    "ENV_WORKSPACE",
    "plan",
]

NAME = "im2col"
register_backend(
    NAME,
    priority=10,
    description="im2col/col2im column matrices + BLAS GEMM, chunked to a bounded workspace",
)

#: Chunks are also kept at most this many bytes (when the limit is larger), so that a
#: chunk's columns are still in the (32 MiB L3) cache when the GEMM reads them: the column
#: build then writes to cache, and the chunk's GEMMs ran faster than one GEMM over columns
#: in DRAM (a sweep of chunk sizes on the benchmark shapes: docs/bench/backend-notes.md);
#: the limit still wins. Bytes of a chunk's cost that do not grow with the
#: chunk (a backward's dW partial) are not counted against it.
PREFERRED_CHUNK_BYTES = 4 << 20


class Box(NamedTuple):
    """One chunk: images [n0, n1), output rows [h0, h1), output columns [w0, w1), and the
    rows [r0, r1) / columns [c0, c1) of the padded input they read."""

    n0: int
    n1: int
    h0: int
    h1: int
    w0: int
    w1: int
    r0: int
    r1: int
    c0: int
    c1: int
    full: bool  # whole images (region = the whole padded image)
    nbytes: int  # workspace the chunk needs

    @property
    def rows(self) -> int:
        return (self.n1 - self.n0) * (self.h1 - self.h0) * (self.w1 - self.w0)


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """The largest x in [lo, hi] with ok(x) (ok monotone decreasing), or lo - 1 if none."""
    if not ok(lo):
        return lo - 1
    if ok(hi):  # the common case (everything fits): one call, no search
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def plan(p, cost: Callable[[int, int, int, int, int], int], budget: int = None) -> Tuple[List[Box], bool]:
    """Split the output of ``p`` into chunks whose ``cost(nb, ho, wo, R, Cw)`` fits the budget.

    Returns the chunks and whether they are whole images. The budget defaults to the
    workspace limit (and :data:`PREFERRED_CHUNK_BYTES`, whichever is smaller).
    """
    if budget is None:
        budget = min(get_workspace_limit(), PREFERRED_CHUNK_BYTES + getattr(cost, "fixed", 0))
    m, Ho, Wo, fh, fw, sh, sw = p.m, p.Ho, p.Wo, p.fh, p.fw, p.sh, p.sw
    boxes: List[Box] = []
    nb = _largest(1, m, lambda k: cost(k, Ho, Wo, p.Hp, p.Wp) <= budget)
    if nb >= 1:
        for n0 in range(0, m, nb):
            n1 = min(n0 + nb, m)
            boxes.append(Box(n0, n1, 0, Ho, 0, Wo, 0, p.Hp, 0, p.Wp, True,
                             cost(n1 - n0, Ho, Wo, p.Hp, p.Wp)))
        return boxes, True
    cw_all = (Wo - 1) * sw + fw
    hoc = _largest(1, Ho, lambda k: cost(1, k, Wo, (k - 1) * sh + fh, cw_all) <= budget)
    if hoc >= 1:
        for n in range(m):
            for h0 in range(0, Ho, hoc):
                h1 = min(h0 + hoc, Ho)
                R = (h1 - h0 - 1) * sh + fh
                boxes.append(Box(n, n + 1, h0, h1, 0, Wo, h0 * sh, h0 * sh + R, 0, cw_all, False,
                                 cost(1, h1 - h0, Wo, R, cw_all)))
        return boxes, False
    # Not even one output row fits: pieces of a row (at least one pixel each).
    woc = max(1, _largest(1, Wo, lambda k: cost(1, 1, k, fh, (k - 1) * sw + fw) <= budget))
    for n in range(m):
        for h in range(Ho):
            for w0 in range(0, Wo, woc):
                w1 = min(w0 + woc, Wo)
                Cw = (w1 - w0 - 1) * sw + fw
                boxes.append(Box(n, n + 1, h, h + 1, w0, w1, h * sh, h * sh + fh, w0 * sw, w0 * sw + Cw,
                                 False, cost(1, 1, w1 - w0, fh, Cw)))
    return boxes, False


def _padded_copy(p) -> bool:
    """Whether a chunk needs a padded copy of its input rows in the workspace: only on the
    NumPy path (no numba) with padding; the Numba loops read the padding on the fly."""
    return (p.ph != 0 or p.pw != 0) and not columns.USE_NUMBA


def _columns(p, A, box: Box, value, cols, ar, ones: bool = False):
    """Fill ``cols`` with the chunk's columns of ``A`` padded with ``value`` (with ``ones``,
    ``cols`` has one more column, set to 1: the bias row of the convolution's GEMM). Returns
    the workspace copy of the padded rows when one was made (spent: the caller may reuse it)."""
    ho, wo = box.h1 - box.h0, box.w1 - box.w0
    if columns.USE_NUMBA:
        im2col_padded(A, box.n0, box.n1, box.h0, box.h1, box.w0, box.w1,
                      p.fh, p.fw, p.sh, p.sw, p.ph, p.pw, float(value), cols, ones)
        return None
    if ones:
        cols[:, -1] = 1
        cols = cols[:, :-1]
    if p.ph == 0 and p.pw == 0:
        im2col(A[box.n0:box.n1, box.r0:box.r1, box.c0:box.c1], ho, wo, p.fh, p.fw, p.sh, p.sw, cols)
        return None
    S = ar.take((box.n1 - box.n0, box.r1 - box.r0, box.c1 - box.c0, p.C), p.dtype)
    fill_source(A, box.n0, box.n1, box.r0, box.r1, box.c0, box.c1, p.ph, p.pw, value, S)
    im2col(S, ho, wo, p.fh, p.fw, p.sh, p.sw, cols)
    return S


def _add_columns(p, dcols, dA_prev, box: Box, full: bool, ar, spare=None) -> None:
    """Add the chunk's column gradient ``dcols`` into ``dA_prev`` (col2im), dropping the
    padding. Whole-image chunks zero their images here (in cache); sub-image chunks overlap,
    so for them the caller zeroed ``dA_prev`` once up front. ``spare``: a spent workspace
    region of the padded rows' size (the NumPy path's scratch)."""
    if full:
        dA_prev[box.n0:box.n1].fill(0)
    ho, wo = box.h1 - box.h0, box.w1 - box.w0
    if columns.USE_NUMBA:
        col2im_padded(dcols, dA_prev, box.n0, box.n1, box.h0, box.h1, box.w0, box.w1,
                      p.fh, p.fw, p.sh, p.sw, p.ph, p.pw)
        return
    if p.ph == 0 and p.pw == 0:
        col2im(dcols, dA_prev[box.n0:box.n1, box.r0:box.r1, box.c0:box.c1], ho, wo, p.fh, p.fw, p.sh, p.sw)
        return
    dS = spare if spare is not None else ar.take((box.n1 - box.n0, box.r1 - box.r0, box.c1 - box.c0, p.C), p.dtype)
    dS.fill(0)
    col2im(dcols, dS, ho, wo, p.fh, p.fw, p.sh, p.sw)
    a0, a1 = max(box.r0, p.ph), min(box.r1, p.ph + p.H)
    b0, b1 = max(box.c0, p.pw), min(box.c1, p.pw + p.W)
    if a0 < a1 and b0 < b1:
        dA_prev[box.n0:box.n1, a0 - p.ph:a1 - p.ph, b0 - p.pw:b1 - p.pw] += \
            dS[:, a0 - box.r0:a1 - box.r0, b0 - box.c0:b1 - box.c0]


def _out_rows(X, box: Box, width: int) -> np.ndarray:
    """The chunk's rows of an NHWC output as a (rows, width) view (chunks are contiguous)."""
    v = X[box.n0:box.n1, box.h0:box.h1, box.w0:box.w1]
    assert v.flags.c_contiguous  # so the reshape is a view, never a copy
    return v.reshape(box.rows, width)


# ------------------------------------------------------------------------- kernels


@register("zero_pad", NAME)
def zero_pad(p, X, out):
    fill_source(X, 0, p.m, 0, p.Hp, 0, p.Wp, p.ph, p.pw, 0, out)


def _conv_cost(p, backward: bool):
    it = p.dtype.itemsize
    Kd = p.fh * p.fw * p.C
    pad = _padded_copy(p)
    # backward: a chunk's dW partial; forward: W with b as its last row (taken once per call)
    fixed = region_bytes((Kd, p.K), it) if backward else region_bytes((Kd + 1, p.K), it)
    ones = 0 if backward else 1  # the forward's column of ones

    def cost(nb, ho, wo, R, Cw):
        n = region_bytes((nb * ho * wo, Kd + ones), it) + fixed
        if pad:  # the padded input rows (reused for their gradient in backward)
            n += region_bytes((nb, R, Cw, p.C), it)
        return n

    cost.fixed = fixed
    return cost


def _add_bias(Z2, b):
    """``Z2 += b`` for Z2 (rows, K), with long inner loops even when K is small."""
    rows, K = Z2.shape
    r = max(1, 512 // K)
    main = rows // r * r
    if r > 1 and main >= 8 * r:  # (a small Z2 is not worth np.tile's few microseconds)
        Z2[:main].reshape(main // r, r * K).__iadd__(np.tile(b, r))
        if main < rows:
            Z2[main:] += b
    else:
        Z2 += b


def _sum_rows(X2, out):
    """``out = X2.sum(axis=0)`` for X2 (rows, K), with long inner loops even when K is small
    (NumPy's axis-0 reduction over a 16-wide array ran at a fifth of memory speed)."""
    rows, K = X2.shape
    r = max(1, 512 // K)
    main = rows // r * r
    if r > 1 and main >= 8 * r:  # (small: one plain reduction is cheaper)
        wide = X2[:main].reshape(main // r, r * K).sum(axis=0)
        wide.reshape(r, K).sum(axis=0, out=out)
        if main < rows:
            out += X2[main:].sum(axis=0)
    else:
        np.sum(X2, axis=0, out=out)


def _is_pointwise(p) -> bool:
    """A 1x1, stride-1, unpadded convolution: the input already is its column matrix."""
    return p.fh == 1 and p.fw == 1 and p.sh == 1 and p.sw == 1 and p.ph == 0 and p.pw == 0


def _with_bias_row(Wm, b, ar):
    """(Kd + 1, K) in the workspace: W's rows, then b."""
    Wb = ar.take((Wm.shape[0] + 1, Wm.shape[1]), Wm.dtype)
    Wb[:-1] = Wm
    Wb[-1] = b
    return Wb


# Forward: the columns carry a last column of ones and W a last row b, so one GEMM gives
# cols @ W + b, with no separate pass over Z for the bias (it gains most where K or
# fh*fw*C is small: cat_c1, stem7x7).


@register("conv_forward", NAME)
def conv_forward(p, A_prev, W, b, Z):
    if not p.core:
        _depthwise_forward(p, A_prev, W, b, Z)
        return
    Kd = p.fh * p.fw * p.C
    Wm = W.reshape(Kd, p.K)
    if _is_pointwise(p):  # no columns to build, no workspace
        Z2 = Z.reshape(-1, p.K)
        np.matmul(A_prev.reshape(-1, p.C), Wm, out=Z2)
        _add_bias(Z2, b)
        return
    ar = arena()
    boxes, _ = plan(p, _conv_cost(p, False))
    ar.reserve(max(box.nbytes for box in boxes))  # (each box's cost counts Wb once)
    Wb = _with_bias_row(Wm, b, ar)
    after_wb = ar.pos
    for box in boxes:
        ar.rewind(after_wb)  # the chunk's columns reuse the region after Wb
        cols = ar.take((box.rows, Kd + 1), p.dtype)
        _columns(p, A_prev, box, 0, cols, ar, ones=True)
        np.matmul(cols, Wb, out=_out_rows(Z, box, p.K))


@register("conv_backward", NAME)
def conv_backward(p, A_prev, W, dZ, dA_prev, dW, db):
    # (No column of ones here: db as the last row of cols^T @ dZ measured no faster, the
    # strided dcols of the next GEMM and col2im costing more than the pass over dZ.)
    if not p.core:
        _depthwise_backward(p, A_prev, W, dZ, dA_prev, dW, db)
        return
    Kd = p.fh * p.fw * p.C
    Wm = W.reshape(Kd, p.K)
    dW2 = dW.reshape(Kd, p.K)
    _sum_rows(dZ.reshape(-1, p.K), db)
    if _is_pointwise(p):  # the input is the column matrix; col2im is the identity
        dZ2 = dZ.reshape(-1, p.K)
        np.matmul(A_prev.reshape(-1, p.C).T, dZ2, out=dW2)
        if dA_prev is not None:
            np.matmul(dZ2, Wm.T, out=dA_prev.reshape(-1, p.C))
        return
    ar = arena()
    boxes, full = plan(p, _conv_cost(p, True))
    if not full and dA_prev is not None:
        dA_prev.fill(0)
    for k, box in enumerate(boxes):
        ar.reserve(box.nbytes)
        cols = ar.take((box.rows, Kd), p.dtype)
        spare = _columns(p, A_prev, box, 0, cols, ar)
        dZc = _out_rows(dZ, box, p.K)
        if k == 0:
            np.matmul(cols.T, dZc, out=dW2)
        else:
            part = ar.take((Kd, p.K), p.dtype)
            np.matmul(cols.T, dZc, out=part)
            dW2 += part
        if dA_prev is not None:  # (None: no input gradient wanted)
            dcols = np.matmul(dZc, Wm.T, out=cols)  # the columns are spent: reuse their buffer
            _add_columns(p, dcols, dA_prev, box, full, ar, spare)


conv_backward.input_grad_optional = True  # dA_prev None: skipped (see _dispatch.OPS)


# Depthwise convolution (groups = C_in; a channel multiplier M = K / C_in runs on the input with
# each channel repeated M times): no GEMM to feed either, but the same columns, viewed as
# (rows, fh*fw, K) as pooling's are: Z = sum over taps of cols[:, t] * W[t] + b; dW[t] sums
# cols[:, t] * dZ over the rows; dcols = dZ * W[t], scattered back by col2im. Dilation and
# uneven pads reach it as fastnn._lower's phases and padded inputs.


def _depthwise_handles(p) -> bool:
    return p.G == p.C and p.G > 1 and p.dh == 1 and p.dw == 1 and p.pb == p.ph and p.pr == p.pw


def _depthwise_geometry(p, A_prev):
    """The input with each channel repeated M times (or itself), and params for its columns."""
    M = p.K // p.C
    X = A_prev if M == 1 else np.repeat(A_prev, M, axis=3)
    return X, p._replace(C=p.K, G=1)


def _depthwise_cost(q, backward: bool):
    it, area = q.dtype.itemsize, q.fh * q.fw
    pad = _padded_copy(q)

    def cost(nb, ho, wo, R, Cw):
        rows = nb * ho * wo
        n = region_bytes((rows, area, q.K), it) + (region_bytes((area, q.K), it) if backward else 0)
        if pad:
            n += region_bytes((nb, R, Cw, q.K), it)
        return n

    return cost


def _depthwise_forward(p, A_prev, W, b, Z):
    X, q = _depthwise_geometry(p, A_prev)
    Wd = W.reshape(q.fh * q.fw, q.K)
    ar = arena()
    boxes, _ = plan(q, _depthwise_cost(q, False), _pool_budget())
    for box in boxes:
        ar.reserve(box.nbytes)
        cols = ar.take((box.rows, q.fh * q.fw, q.K), q.dtype)
        _columns(q, X, box, 0, cols, ar)
        out = _out_rows(Z, box, q.K)
        np.einsum("rtc,tc->rc", cols, Wd, out=out)
        out += b


def _depthwise_backward(p, A_prev, W, dZ, dA_prev, dW, db):
    X, q = _depthwise_geometry(p, A_prev)
    area = q.fh * q.fw
    Wd = W.reshape(area, q.K)
    dW2 = dW.reshape(area, q.K)
    _sum_rows(dZ.reshape(-1, q.K), db)
    M = p.K // p.C
    dX = None if dA_prev is None else (dA_prev if M == 1 else np.empty(X.shape, dtype=p.dtype))
    ar = arena()
    boxes, full = plan(q, _depthwise_cost(q, True), _pool_budget())
    if not full and dX is not None:
        dX.fill(0)
    for k, box in enumerate(boxes):
        ar.reserve(box.nbytes)
        cols = ar.take((box.rows, area, q.K), q.dtype)
        spare = _columns(q, X, box, 0, cols, ar)
        dZc = _out_rows(dZ, box, q.K)
        if k == 0:
            np.einsum("rtc,rc->tc", cols, dZc, out=dW2)
        else:
            part = ar.take((area, q.K), q.dtype)
            np.einsum("rtc,rc->tc", cols, dZc, out=part)
            dW2 += part
        if dX is not None:
            dcols = np.multiply(dZc[:, None, :], Wd[None], out=cols)  # the columns are spent
            _add_columns(q, dcols, dX, box, full, ar, spare)
    if dX is not None and M > 1:  # each input channel's gradient sums its M output channels' (in order)
        np.sum(dX.reshape(p.m, p.H, p.W, p.C, M), axis=4, out=dA_prev)


conv_forward.handles = conv_backward.handles = _depthwise_handles  # (the rest: fastnn._lower)


#: Pooling has no GEMM to feed: its chunks are kept small enough that the columns are
#: still in the (L2) cache when the reduction reads them.
POOL_CHUNK_BYTES = 1 << 20


def _pool_budget() -> int:
    return min(get_workspace_limit(), PREFERRED_CHUNK_BYTES, POOL_CHUNK_BYTES)


def _pool_pad_value(p):
    return -np.inf if p.mode == "max" else 0


def _pool_cost(p, backward: bool):
    it = p.dtype.itemsize
    area = p.fh * p.fw
    pad = _padded_copy(p)

    def cost(nb, ho, wo, R, Cw):
        rows = nb * ho * wo
        n = 0
        if backward and p.mode == "average":
            n += region_bytes((rows, p.C), it)  # dA / area; the columns are a broadcast view
        else:
            n += region_bytes((rows, area, p.C), it)
            if backward:
                n += region_bytes((rows, area, p.C), 1)  # the mask
                n += region_bytes((rows, p.C), it)  # the max
                n += region_bytes((rows, p.C), 1)  # "first": the maxima already seen
        if pad:
            n += region_bytes((nb, R, Cw, p.C), it)
        return n

    return cost


@register("pool_forward", NAME)
def pool_forward(p, A_prev, A):
    area = p.fh * p.fw
    ar = arena()
    boxes, _ = plan(p, _pool_cost(p, False), _pool_budget())
    for box in boxes:
        ar.reserve(box.nbytes)
        cols = ar.take((box.rows, area, p.C), p.dtype)
        _columns(p, A_prev, box, _pool_pad_value(p), cols, ar)
        out = _out_rows(A, box, p.C)
        window_reduce(cols, out, p.mode == "max")
        if p.mode != "max":
            out /= area


def _keep_first(cols, mx, mask, seen):
    """Keep only the first True of ``mask`` along the window axis: np.argmax's rule (the first
    maximum in row-major window order, or the first NaN of a window holding one).

    (``np.argmax(cols, axis=1)`` would copy the whole column buffer to make the axis last.)
    """
    area = mask.shape[1]
    if np.isnan(mx).any():  # windows with a NaN: their max is NaN, the first NaN wins
        for k in range(area):
            mk = mask[:, k, :]
            np.logical_or(mk, np.isnan(cols[:, k, :]), out=mk)
    np.copyto(seen, mask[:, 0, :])
    for k in range(1, area):
        mk = mask[:, k, :]
        np.greater(mk, seen, out=mk)  # mk and not seen
        np.logical_or(seen, mk, out=seen)


@register("pool_backward", NAME)
def pool_backward(p, A_prev, dA, dA_prev):
    area = p.fh * p.fw
    ar = arena()
    boxes, full = plan(p, _pool_cost(p, True), _pool_budget())
    if not full:
        dA_prev.fill(0)
    for box in boxes:
        ar.reserve(box.nbytes)
        dAc = _out_rows(dA, box, p.C)
        spare = None
        if p.mode == "average":
            g = ar.take((box.rows, p.C), p.dtype)
            np.divide(dAc, area, out=g)  # the reference's g / area
            dcols = np.broadcast_to(g[:, None, :], (box.rows, area, p.C))
        else:
            cols = ar.take((box.rows, area, p.C), p.dtype)
            spare = _columns(p, A_prev, box, -np.inf, cols, ar)
            if max_window_grad(cols, dAc, p.ties == "first"):
                dcols = cols
            else:
                mask = ar.take((box.rows, area, p.C), np.bool_)
                mx = ar.take((box.rows, p.C), p.dtype)
                np.max(cols, axis=1, out=mx)
                np.equal(cols, mx[:, None, :], out=mask)  # "all": NaN windows give no gradient
                if p.ties == "first":
                    _keep_first(cols, mx, mask, ar.take((box.rows, p.C), np.bool_))
                dcols = np.multiply(mask, dAc[:, None, :], out=cols)  # mask * g, as the reference
        _add_columns(p, dcols, dA_prev, box, full, ar, spare)


# --------------------------------------------------------------------- activations


@register("relu", NAME)
def relu(x, out):
    np.maximum(0, x, out=out)


@register("relu_backward", NAME)
def relu_backward(dA, Z, out):
    np.copyto(out, dA)
    np.copyto(out, 0, where=Z <= 0)


@register("sigmoid", NAME)
def sigmoid(x, out):
    with np.errstate(over="ignore"):
        np.negative(x, out=out)
        np.exp(out, out=out)
        out += 1
        np.divide(1, out, out=out)


@register("sigmoid_backward", NAME)
def sigmoid_backward(dA, Z, out):
    sigmoid(Z, out)  # s
    one_minus = np.subtract(1, out)
    np.multiply(dA, out, out=out)  # (dA * s) * (1 - s), the reference's order
    out *= one_minus
