"""The one ``im2col`` / ``col2im`` pair of the ``im2col`` backend.

Geometry
--------
A *source* ``S`` is an NHWC block ``(nb, R, Cw, C)`` of the (padded) input whose
last two axes are contiguous (a slice of a C-contiguous input, or a padded copy).
Its windows form the column tensor ``(nb, Ho', Wo', fh, fw, C)``: the row
``(n, ho, wo)`` holds the window whose top-left corner is ``(ho*sh, wo*sw)``, in
row-major ``(i, j, c)`` order, which is the order of ``W.reshape(fh*fw*C, K)``.

* :func:`im2col_padded` / :func:`col2im_padded` (Numba, what the backend runs whenever
  numba is there) build / scatter back the columns of a box of output pixels straight
  from the *unpadded* input, a window row (``fw*C`` contiguous elements) at a time,
  reading the pad value / dropping the padding on the fly. No Python loop over pixels.
  Short window rows (``fw*C < SPILL_RUN``, see :func:`_short_rows`) are moved in
  fixed-size blocks through a scratch of the ``fh`` padded input rows one output row's
  windows span (made inside the kernel, outside the arena: a few rows, not a padded
  input): copied out of it by im2col, summed into it by col2im.
* :func:`im2col` / :func:`col2im` are the NumPy path (numba missing) on a source ``S``:
  one copy of the strided view, and its adjoint as ``ceil(fh/sh) * ceil(fw/sw)`` strided
  slab adds, offsets grouped so that no two windows of one add touch the same element,
  which a NumPy in-place add needs.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = [
    "window_view",
    "im2col",
    "im2col_padded",
    "col2im",
    "col2im_padded",
    "fill_source",
]

#: Window rows (fw*C values) shorter than this may take the scratch-row kernels (the
#: generated or the block-move ones; :func:`_short_rows` decides).
SPILL_RUN = 64
_BLK = 16  # values per block move of that kernel (the _blk helper spells out 16)


# ------------------------------------------------------------------ Numba kernels
#
# Serial (single-threaded, no OpenMP/TBB pool) Numba loops for the copy and the
# scatter-add: they run at memory speed whatever C is, where NumPy's strided copies pay
# an inner-loop call per window row (slow when fw*C is small). Being serial, they leave
# both cores to the BLAS GEMM that follows and never spin against it.

try:
    from ..._jit import inline, kernel
except ImportError:  # numba is a runtime dependency; the NumPy path is kept as fallback
    kernel = None

#: Use the Numba loops (True when numba imports); tests switch it to cover the NumPy path.
USE_NUMBA = kernel is not None

if kernel is not None:
    # The three loops below walk the windows of output pixels (n0 + n, h0 + h, w0 + w),
    # n < nb, h < ho, w < wo, over an input X3 (N, H, W*C) padded on the fly by (ph, pw):
    # window row i of a pixel reads input row (h0 + h)*sh - ph + i, pixels
    # (w0 + w)*sw - pw + j for j in [0, fw). Only the part [jlo, jhi) of a window row
    # inside the input is read (or written back); the rest is the pad ``value``
    # (im2col) or dropped (col2im), so no padded copy of the input is ever made.
    #
    # Each window row is moved as one contiguous run whose innermost index Numba knows is
    # non-negative: im2col's rows inside the input use an ``np.uint64`` offset plus a
    # ``range`` over an ``np.uint64`` length; col2im and the border rows use views sliced
    # outside the loop and a bare ``range`` index. Numba emits negative-index wraparound
    # code only for signed indices it cannot prove non-negative, so the loops have none
    # and LLVM vectorises them. (Indexing ``src[c0 + k]`` with a signed ``c0`` kept the
    # copy scalar, slower than the GEMM it feeds. In im2col, views sliced per window row
    # were slower than the unsigned offsets where rows are short; in col2im the two were
    # even.)

    @kernel
    def _span(left, fw, W):  # pragma: no cover - compiled
        # The columns [jlo, jhi) of a window starting at input column ``left`` that lie
        # inside the input's W columns (jlo == jhi when none do).
        jlo = min(max(-left, 0), fw)
        return jlo, max(min(W - left, fw), jlo)

    @kernel
    def _im2col_nb(X3, C, n0, h0, w0, nb, ho, wo, fh, fw, sh, sw, ph, pw, value, out, extra):  # pragma: no cover
        # out (nb*ho*wo, fh*fw*C + e): window row i of pixel r is out[r, i*fw*C:(i+1)*fw*C];
        # the e columns after them (the convolution's column of ones) get ``extra``.
        H = X3.shape[1]
        W = X3.shape[2] // C
        run = fw * C
        kd = fh * run
        L = out.shape[1]
        r = 0
        for n in range(nb):
            for h in range(ho):
                top = (h0 + h) * sh - ph
                for w in range(wo):
                    for e in range(kd, L):
                        out[r, e] = extra
                    left = (w0 + w) * sw - pw
                    jlo, jhi = _span(left, fw, W)
                    a = jlo * C
                    m = (jhi - jlo) * C
                    s0 = (left + jlo) * C  # >= 0 whenever m > 0
                    if m == run and top >= 0 and top + fh <= H:  # inside: plain window rows
                        uso = np.uint64(s0)
                        for i in range(fh):
                            udo = np.uint64(i * run)
                            rr = top + i
                            for k in range(np.uint64(run)):
                                out[r, udo + k] = X3[n0 + n, rr, uso + k]
                        r += 1
                        continue
                    for i in range(fh):
                        rr = top + i
                        dst = out[r, i * run:(i + 1) * run]
                        if rr < 0 or rr >= H or m == 0:
                            for k in range(run):
                                dst[k] = value
                            continue
                        for k in range(a):
                            dst[k] = value
                        seg = dst[a:a + m]
                        src = X3[n0 + n, rr, s0:s0 + m]
                        for k in range(m):
                            seg[k] = src[k]
                        tail = dst[a + m:run]
                        for k in range(run - a - m):
                            tail[k] = value
                    r += 1

    # Small windows (fw*C < SPILL_RUN, say 3x3 on RGB: 9 values per window row) made the
    # loop above per-pixel-overhead bound, slower than the GEMM it feeds. The
    # kernel below first copies the fh input rows of an output row, padded, into a scratch
    # (each row then read once per pixel from L1, with no bounds or padding tests), and
    # moves each window row as fixed blocks of _BLK values: loaded into registers, then
    # stored, so LLVM emits whole-vector moves. A block's tail runs past the window row
    # into the next one (or the next pixels'), which is written after it: every value
    # ends up right. The chunk's last pixels, whose spill would leave ``out``, are copied
    # exactly. (Faster on cat_c1's 3x3 windows on RGB in both dtypes; on stem7x7's 7x7
    # windows on RGB only in float32, so float64 keeps the row loop there, see
    # ``_short_rows``. The generated kernels of :mod:`.templates`, where a window has one,
    # are faster still.)

    @inline
    def _blk(s, d):  # pragma: no cover - compiled; d[:_BLK] = s[:_BLK], loads first
        a0 = s[0]; a1 = s[1]; a2 = s[2]; a3 = s[3]; a4 = s[4]; a5 = s[5]; a6 = s[6]; a7 = s[7]  # noqa: E702
        a8 = s[8]; a9 = s[9]; a10 = s[10]; a11 = s[11]; a12 = s[12]; a13 = s[13]; a14 = s[14]; a15 = s[15]  # noqa: E702
        d[0] = a0; d[1] = a1; d[2] = a2; d[3] = a3; d[4] = a4; d[5] = a5; d[6] = a6; d[7] = a7  # noqa: E702
        d[8] = a8; d[9] = a9; d[10] = a10; d[11] = a11; d[12] = a12; d[13] = a13; d[14] = a14; d[15] = a15  # noqa: E702

    @inline
    def _fill_rows(X3, n, top, fh, C, left, jlo, jhi, value, S, SW):  # pragma: no cover - compiled
        # S[i*SW:(i+1)*SW] = input row top + i of image n, columns left.. (SW values), padded
        # with value; [jlo, jhi) are the columns inside the input (see _span).
        H = X3.shape[1]
        for i in range(fh):
            rr = top + i
            srow = S[i * SW:(i + 1) * SW]
            if rr < 0 or rr >= H or jhi == jlo:
                for k in range(SW):
                    srow[k] = value
                continue
            for k in range(jlo * C):
                srow[k] = value
            seg = srow[jlo * C:jhi * C]
            src = X3[n, rr, (left + jlo) * C:(left + jhi) * C]
            for k in range((jhi - jlo) * C):
                seg[k] = src[k]
            tail = srow[jhi * C:]
            for k in range(SW - jhi * C):
                tail[k] = value

    @kernel
    def _im2col_spill_nb(X3, C, n0, h0, w0, nb, ho, wo, fh, fw, sh, sw, ph, pw, value, out, extra):  # pragma: no cover
        # As _im2col_nb, for a C-contiguous ``out`` (its rows are written as one flat run).
        W = X3.shape[2] // C
        run = fw * C
        kd = fh * run
        L = out.shape[1]
        nblk = (run + _BLK - 1) // _BLK
        o1 = out.reshape(out.size)
        ncol = (wo - 1) * sw + fw  # input columns the chunk's windows span
        left = w0 * sw - pw  # the first of them
        SW = ncol * C + _BLK  # a scratch row: those columns, padded, then room for a block
        S = np.empty(fh * SW, dtype=out.dtype)
        jlo, jhi = _span(left, ncol, W)
        lim = o1.size - (fh - 1) * run - nblk * _BLK  # a pixel's blocks stay inside ``out``
        one = L == kd + 1  # the convolution's column of ones: one store per pixel below
        r = 0
        for n in range(nb):
            for h in range(ho):
                top = (h0 + h) * sh - ph
                _fill_rows(X3, n0 + n, top, fh, C, left, jlo, jhi, value, S, SW)
                # (Each test or loop added to the per-pixel code below cost measurably:
                # the single-block case and the pixels near the end get loops of their
                # own, and the column of ones is one store per pixel.)
                wsafe = max(0, min(wo, (lim - r * L) // L + 1))
                if nblk == 1:
                    for w in range(wsafe):
                        so = w * sw * C
                        do = (r + w) * L
                        for i in range(fh):
                            _blk(S[i * SW + so:i * SW + so + _BLK], o1[do + i * run:do + i * run + _BLK])
                        if one:  # after the blocks, which may have run over it
                            o1[do + kd] = extra
                else:
                    for w in range(wsafe):
                        so = w * sw * C
                        do = (r + w) * L
                        for i in range(fh):
                            for b in range(nblk):
                                s0 = i * SW + so + b * _BLK
                                d0 = do + i * run + b * _BLK
                                _blk(S[s0:s0 + _BLK], o1[d0:d0 + _BLK])
                        if one:
                            o1[do + kd] = extra
                for w in range(wsafe, wo):
                    so = w * sw * C
                    do = (r + w) * L
                    for i in range(fh):
                        src = S[i * SW + so:i * SW + so + run]
                        dst = o1[do + i * run:do + (i + 1) * run]
                        for k in range(run):
                            dst[k] = src[k]
                for w in range(wsafe if one else 0, wo):  # (and any further columns)
                    for e in range(kd, L):
                        o1[(r + w) * L + e] = extra
                r += wo

    @kernel
    def _col2im_nb(cols, dX3, C, n0, h0, w0, nb, ho, wo, fh, fw, sh, sw, ph, pw):  # pragma: no cover
        # The adjoint: adds cols (rows, fh, fw*C) (any strides) into dX3 (N, H, W*C),
        # dropping what falls in the padding. One window row's fw*C elements are distinct.
        H = dX3.shape[1]
        W = dX3.shape[2] // C
        r = 0
        for n in range(nb):
            for h in range(ho):
                top = (h0 + h) * sh - ph
                for w in range(wo):
                    left = (w0 + w) * sw - pw
                    jlo, jhi = _span(left, fw, W)
                    a = jlo * C
                    m = (jhi - jlo) * C
                    s0 = (left + jlo) * C
                    if m == fw * C and top >= 0 and top + fh <= H:  # inside: plain window rows
                        # (the branch below would give the same sums; without this one, its
                        # per-row checks and slices slow conv_backward on the bench shapes)
                        for i in range(fh):
                            dst = dX3[n0 + n, top + i, s0:s0 + m]
                            src = cols[r, i]
                            for k in range(m):
                                dst[k] += src[k]
                    elif m > 0:
                        for i in range(fh):
                            rr = top + i
                            if rr >= 0 and rr < H:
                                dst = dX3[n0 + n, rr, s0:s0 + m]
                                src = cols[r, i, a:a + m]
                                for k in range(m):
                                    dst[k] += src[k]
                    r += 1

    @inline
    def _blk_add(s, d, m, zero):  # pragma: no cover - compiled; d[:m] += s[:m], d[m:_BLK] += 0
        # (s[m:_BLK] may be anything, NaN included: it is selected away, not multiplied by 0;
        # loaded first, so LLVM makes the choices vector selects, not branches)
        v0 = s[0]; v1 = s[1]; v2 = s[2]; v3 = s[3]  # noqa: E702
        v4 = s[4]; v5 = s[5]; v6 = s[6]; v7 = s[7]  # noqa: E702
        v8 = s[8]; v9 = s[9]; v10 = s[10]; v11 = s[11]  # noqa: E702
        v12 = s[12]; v13 = s[13]; v14 = s[14]; v15 = s[15]  # noqa: E702
        a0 = v0 if 0 < m else zero; a1 = v1 if 1 < m else zero  # noqa: E702
        a2 = v2 if 2 < m else zero; a3 = v3 if 3 < m else zero  # noqa: E702
        a4 = v4 if 4 < m else zero; a5 = v5 if 5 < m else zero  # noqa: E702
        a6 = v6 if 6 < m else zero; a7 = v7 if 7 < m else zero  # noqa: E702
        a8 = v8 if 8 < m else zero; a9 = v9 if 9 < m else zero  # noqa: E702
        a10 = v10 if 10 < m else zero; a11 = v11 if 11 < m else zero  # noqa: E702
        a12 = v12 if 12 < m else zero; a13 = v13 if 13 < m else zero  # noqa: E702
        a14 = v14 if 14 < m else zero; a15 = v15 if 15 < m else zero  # noqa: E702
        d[0] += a0; d[1] += a1; d[2] += a2; d[3] += a3  # noqa: E702
        d[4] += a4; d[5] += a5; d[6] += a6; d[7] += a7  # noqa: E702
        d[8] += a8; d[9] += a9; d[10] += a10; d[11] += a11  # noqa: E702
        d[12] += a12; d[13] += a13; d[14] += a14; d[15] += a15  # noqa: E702

    @inline
    def _add_rows(S, SW, dX3, n, top, fh, C, left, jlo, jhi):  # pragma: no cover - compiled
        # The adjoint of _fill_rows: adds the scratch rows into image n's input rows top..,
        # dropping the padding.
        H = dX3.shape[1]
        if jhi > jlo:
            for i in range(fh):
                rr = top + i
                if rr >= 0 and rr < H:
                    dst = dX3[n, rr, (left + jlo) * C:(left + jhi) * C]
                    src = S[i * SW + jlo * C:i * SW + jhi * C]
                    for k in range((jhi - jlo) * C):
                        dst[k] += src[k]

    # col2im for short window rows, the same way round: each output row's windows are
    # summed into a zeroed scratch of the fh padded input rows they span, in blocks of
    # _BLK that add 0 past the window row (x + 0.0 is x, NaN and inf included, and a sum
    # started at +0.0 never holds -0.0), then the scratch rows are added into dX3 without
    # their padding. An input element's sum is so grouped by output row: another order
    # than _col2im_nb's, equal to rounding (and the same for any chunking by whole rows).

    @kernel
    def _col2im_spill_nb(cols, dX3, C, n0, h0, w0, nb, ho, wo, fh, fw, sh, sw, ph, pw):  # pragma: no cover
        # As _col2im_nb, for C-contiguous cols (rows, fh*fw*C).
        W = dX3.shape[2] // C
        run = fw * C
        L = cols.shape[1]
        nblk = (run + _BLK - 1) // _BLK
        c1 = cols.reshape(cols.size)
        ncol = (wo - 1) * sw + fw
        left = w0 * sw - pw
        SW = ncol * C + _BLK
        S = np.empty(fh * SW, dtype=dX3.dtype)
        zero = np.zeros(1, dtype=dX3.dtype)[0]
        jlo, jhi = _span(left, ncol, W)
        lim = c1.size - (fh - 1) * run - nblk * _BLK  # a pixel's blocks stay inside ``cols``
        P = min(wo, (nblk * _BLK + sw * C - 1) // (sw * C))  # pixels whose blocks may overlap
        r = 0
        for n in range(nb):
            for h in range(ho):
                top = (h0 + h) * sh - ph
                for k in range(fh * SW):
                    S[k] = zero
                wsafe = max(0, min(wo, (lim - r * L) // L + 1))
                # Pixels P apart, whose blocks do not overlap, one after the other: a block
                # overlapping the one just added to would wait for that store.
                for i in range(fh):
                    for ph0 in range(P):
                        if nblk == 1:
                            for w in range(ph0, wsafe, P):
                                s0 = (r + w) * L + i * run
                                d0 = i * SW + w * sw * C
                                _blk_add(c1[s0:s0 + _BLK], S[d0:d0 + _BLK], run, zero)
                        else:
                            for w in range(ph0, wsafe, P):
                                for b in range(nblk):
                                    s0 = (r + w) * L + i * run + b * _BLK
                                    d0 = i * SW + w * sw * C + b * _BLK
                                    _blk_add(c1[s0:s0 + _BLK], S[d0:d0 + _BLK], run - b * _BLK, zero)
                for w in range(wsafe, wo):
                    so = w * sw * C
                    do = (r + w) * L
                    for i in range(fh):
                        src = c1[do + i * run:do + (i + 1) * run]
                        dst = S[i * SW + so:i * SW + so + run]
                        for k in range(run):
                            dst[k] += src[k]
                _add_rows(S, SW, dX3, n0 + n, top, fh, C, left, jlo, jhi)
                r += wo

    @kernel
    def _col2im_bcast_nb(g, dX3, C, n0, h0, w0, nb, ho, wo, fh, fw, sh, sw, ph, pw):  # pragma: no cover
        # col2im of columns whose every window position holds g[r] (average pooling's
        # gradient: the broadcast (rows, fh*fw, C) view is never materialised).
        H = dX3.shape[1]
        W = dX3.shape[2] // C
        r = 0
        for n in range(nb):
            for h in range(ho):
                top = (h0 + h) * sh - ph
                for w in range(wo):
                    left = (w0 + w) * sw - pw
                    jlo, jhi = _span(left, fw, W)
                    src = g[r]
                    for i in range(fh):
                        rr = top + i
                        if rr >= 0 and rr < H:
                            row = dX3[n0 + n, rr]
                            for j in range(jhi - jlo):
                                c0 = (left + jlo + j) * C
                                dst = row[c0:c0 + C]
                                for c in range(C):
                                    dst[c] += src[c]
                    r += 1

    @kernel
    def _max_window_grad_nb(cols, dA, first, zero):  # pragma: no cover - compiled
        # cols (rows, area, C) -> in place: the max-pool gradient of each window column,
        # mask * g with the reference's mask: every position equal to the max ("all": none
        # for a NaN window) or np.argmax's first maximum / first NaN ("first").
        rows, area, C = cols.shape
        for r in range(rows):
            for c in range(C):
                best = cols[r, 0, c]
                bi = 0
                nan = best != best
                if not nan:
                    for k in range(1, area):
                        v = cols[r, k, c]
                        if v != v:
                            best = v
                            bi = k
                            break
                        if v > best:
                            best = v
                            bi = k
                g = dA[r, c]
                for k in range(area):
                    hit = (k == bi) if first else (cols[r, k, c] == best)
                    cols[r, k, c] = g if hit else g * zero  # the reference's mask * g

    @kernel
    def _max_window_grad_wide_nb(cols, dA, first, posv, zero):  # pragma: no cover - compiled
        # ``_max_window_grad_nb`` with the channels innermost (vectorised), for wide C: the
        # running max (and first position, as a value of posv = 0, 1, ... in the columns'
        # dtype, so every lane has one width) per channel over the window, in position order,
        # by the same rule (a NaN is taken and kept; "first": a later value must beat it);
        # g if hit else g * 0 is the reference's mask * g.
        rows, area, C = cols.shape
        best = np.empty(C, dtype=cols.dtype)
        pos = np.empty(C, dtype=cols.dtype)
        for r in range(rows):
            win = cols[r]
            g = dA[r]
            w0 = win[0]
            for c in range(C):
                best[c] = w0[c]
                pos[c] = zero
            for k in range(1, area):
                v = win[k]
                kk = posv[k]
                for c in range(C):
                    x = v[c]
                    b = best[c]
                    u = (b == b) & ((x > b) | (x != x))
                    best[c] = x if u else b
                    pos[c] = kk if u else pos[c]
            for k in range(area):
                v = win[k]
                kk = posv[k]
                if first:
                    for c in range(C):
                        v[c] = g[c] if kk == pos[c] else g[c] * zero
                else:
                    for c in range(C):
                        v[c] = g[c] if v[c] == best[c] else g[c] * zero

    @kernel
    def _window_reduce_nb(cols, out, is_max):  # pragma: no cover - compiled
        # cols (rows, area, C) -> out (rows, C): max (NaN propagates, as np.max) or sum.
        rows, area, C = cols.shape
        for r in range(rows):
            o = out[r]
            for c in range(C):
                o[c] = cols[r, 0, c]
            for k in range(1, area):
                v = cols[r, k]
                if is_max:
                    for c in range(C):
                        x = v[c]
                        if x > o[c] or x != x:
                            o[c] = x
                else:
                    for c in range(C):
                        o[c] += v[c]


_px_module = None


def _px():
    """The generated kernels for the windows of ``templates.PX_SHAPES`` (loaded on first use:
    they import this module's helpers)."""
    global _px_module
    if _px_module is None:
        from . import templates

        _px_module = templates.load()
    return _px_module


def window_reduce(cols: np.ndarray, out: np.ndarray, is_max: bool) -> None:
    """``out = cols.max(axis=1)`` (NaN propagating) or ``cols.sum(axis=1)``."""
    if USE_NUMBA:
        _window_reduce_nb(cols, out, is_max)
    elif is_max:
        np.max(cols, axis=1, out=out)
    else:
        np.sum(cols, axis=1, out=out)


def max_window_grad(cols: np.ndarray, dA: np.ndarray, first: bool) -> bool:
    """Turn max-pool window columns ``cols`` (rows, area, C) into their gradient in place
    (Numba). Returns False when the Numba path is off (the caller uses NumPy instead)."""
    if not USE_NUMBA:
        return False
    if cols.shape[2] >= WIDE_C:
        _max_window_grad_wide_nb(cols, dA, first, np.arange(cols.shape[1], dtype=cols.dtype), cols.dtype.type(0))
    else:
        _max_window_grad_nb(cols, dA, first, cols.dtype.type(0))
    return True


#: Channels from which ``max_window_grad`` runs its channel-innermost (vectorised) loop: the
#: per-channel scan was slower on C = 16 and 64 (p2s2, p3s2), the vectorised one on C = 8.
WIDE_C = 16


# ----------------------------------------------------------------------- geometry


def window_view(S: np.ndarray, ho: int, wo: int, fh: int, fw: int, sh: int, sw: int,
                writeable: bool = False) -> np.ndarray:
    """The ``(nb, ho, wo, fh, fw, C)`` strided view of the windows of ``S`` (no copy)."""
    sN, sR, sW, sC = S.strides
    return as_strided(
        S,
        shape=(S.shape[0], ho, wo, fh, fw, S.shape[3]),
        strides=(sN, sh * sR, sw * sW, sR, sW, sC),
        writeable=writeable,
    )


def _rows3(X: np.ndarray) -> np.ndarray:
    """``X`` (nb, R, Cw, C) as a (nb, R, Cw*C) view; its last two axes must be contiguous
    (a reshape that copied would make col2im's adds vanish)."""
    nb, R, Cw, C = X.shape
    if (C > 1 and X.strides[3] != X.itemsize) or (Cw > 1 and X.strides[2] != C * X.itemsize):
        raise AssertionError("im2col source rows must be contiguous")  # pragma: no cover - callers' invariant
    return X.reshape(nb, R, Cw * C)


def im2col(S: np.ndarray, ho: int, wo: int, fh: int, fw: int, sh: int, sw: int,
           out: np.ndarray) -> np.ndarray:
    """Copy the windows of ``S`` into ``out`` (``nb*ho*wo*fh*fw*C`` elements in any shape, or a
    strided view such as ``cols[:, :-1]``, that reshapes to ``(nb, ho, wo, fh, fw, C)`` as a
    view; a reshape that would copy raises)."""
    nb, R, Cw, C = S.shape
    cols = out.reshape(nb, ho, wo, fh, fw, C)
    if not np.may_share_memory(cols, out):  # a reshape that copied would drop the columns
        raise AssertionError("im2col output must reshape without a copy")  # pragma: no cover
    np.copyto(cols, window_view(S, ho, wo, fh, fw, sh, sw))
    return out


def _short_rows(run: int, cols: np.ndarray) -> bool:
    """Whether the scratch-row kernels serve window rows of ``run`` values for ``cols``:
    short rows (``run < SPILL_RUN``) of a C-contiguous ``cols``, in float64 only one
    block long. (float64 rows of two blocks, e.g. 7x7 windows on RGB, were faster with the
    row loops; in float32 the scratch kernels were even or faster there, and faster on
    cat_c1's 3x3 windows on RGB in both dtypes.)"""
    return run < SPILL_RUN and (run <= _BLK or cols.itemsize == 4) and cols.flags.c_contiguous


def im2col_padded(X: np.ndarray, n0: int, n1: int, h0: int, h1: int, w0: int, w1: int,
                  fh: int, fw: int, sh: int, sw: int, ph: int, pw: int, value,
                  out: np.ndarray, ones: bool = False) -> np.ndarray:
    """The columns of output pixels ``[n0, n1) x [h0, h1) x [w0, w1)`` of ``X`` (NHWC, last two
    axes contiguous) padded by ``(ph, pw)`` with ``value``, into ``out``
    (``(n1-n0)*(h1-h0)*(w1-w0)`` rows of ``fh*fw*C``, plus a last column of ones with
    ``ones``: the convolution's bias row of its GEMM). Numba only: the padding is read on
    the fly, never copied (the NumPy path pads a copy of the rows first)."""
    nb, ho, wo, C = n1 - n0, h1 - h0, w1 - w0, X.shape[3]
    out2 = out.reshape(nb * ho * wo, fh * fw * C + ones)
    if not _short_rows(fw * C, out2):
        _im2col_nb(_rows3(X), C, n0, h0, w0, nb, ho, wo, fh, fw, sh, sw, ph, pw, value, out2, 1.0)
        return out
    px = _px().IM2COL_PX.get((fh, fw * C))  # a kernel with the window's moves spelled out
    if px is not None:
        px(_rows3(X), C, n0, h0, w0, nb, ho, wo, sh, sw, ph, pw, value, out2, 1.0)
    else:
        _im2col_spill_nb(_rows3(X), C, n0, h0, w0, nb, ho, wo, fh, fw, sh, sw, ph, pw, value, out2, 1.0)
    return out


def col2im(cols: np.ndarray, dS: np.ndarray, ho: int, wo: int, fh: int, fw: int,
           sh: int, sw: int) -> np.ndarray:
    """Add the columns ``cols`` (``nb*ho*wo*fh*fw*C`` elements) into ``dS`` (the adjoint of im2col).

    ``dS`` is accumulated into, not overwritten. ``cols`` may be a broadcast view.
    """
    nb, C = dS.shape[0], dS.shape[3]
    cols6 = cols.reshape(nb, ho, wo, fh, fw, C) if cols.ndim != 6 else cols
    sN, sR, sW, sC = dS.strides
    for i0 in range(0, fh, sh):
        i1 = min(i0 + sh, fh)
        for j0 in range(0, fw, sw):
            j1 = min(j0 + sw, fw)
            # Windows (ho, wo) at offsets i in [i0, i1), j in [j0, j1) touch distinct elements.
            tgt = as_strided(
                dS[:, i0:, j0:, :],
                shape=(nb, ho, wo, i1 - i0, j1 - j0, C),
                strides=(sN, sh * sR, sw * sW, sR, sW, sC),
            )
            tgt += cols6[:, :, :, i0:i1, j0:j1, :]
    return dS


def col2im_padded(cols: np.ndarray, dX: np.ndarray, n0: int, n1: int, h0: int, h1: int,
                  w0: int, w1: int, fh: int, fw: int, sh: int, sw: int, ph: int, pw: int) -> np.ndarray:
    """The adjoint of :func:`im2col_padded`: add ``cols`` (or a broadcast ``(rows, area, C)``
    view) into ``dX`` (NHWC, unpadded), dropping what falls in the padding. Numba only.
    (Short window rows are summed in a scratch whose rows are then added over the span of
    input columns the chunk's windows cover, so a -0.0 of ``dX`` there that no window
    reaches becomes +0.0: the backend zero-fills ``dA_prev`` with +0.0 before.)"""
    nb, ho, wo, C = n1 - n0, h1 - h0, w1 - w0, dX.shape[3]
    if cols.ndim == 3 and cols.strides[1] == 0:  # a broadcast (rows, area, C) view
        _col2im_bcast_nb(cols[:, 0, :], _rows3(dX), C, n0, h0, w0, nb, ho, wo, fh, fw, sh, sw, ph, pw)
    else:
        cols2 = cols.reshape(nb * ho * wo, fh * fw * C)
        if _short_rows(fw * C, cols2):
            px = _px().COL2IM_PX.get((fh, fw * C))  # a kernel with the window's adds spelled out
            if px is not None:
                px(cols2, _rows3(dX), C, n0, h0, w0, nb, ho, wo, sh, sw, ph, pw)
            else:
                _col2im_spill_nb(cols2, _rows3(dX), C, n0, h0, w0, nb, ho, wo, fh, fw, sh, sw, ph, pw)
        else:
            _col2im_nb(cols2.reshape(nb * ho * wo, fh, fw * C), _rows3(dX), C, n0, h0, w0, nb, ho, wo,
                       fh, fw, sh, sw, ph, pw)
    return dX


def fill_source(A: np.ndarray, n0: int, n1: int, r0: int, r1: int, c0: int, c1: int,
                ph: int, pw: int, value, out: np.ndarray) -> np.ndarray:
    """Write rows ``[r0, r1)`` and columns ``[c0, c1)`` of images ``[n0, n1)`` of the input
    padded by ``(ph, pw)`` with ``value`` into ``out`` (shape ``(n1-n0, r1-r0, c1-c0, C)``).
    """
    H, W = A.shape[1], A.shape[2]
    a0, a1 = max(r0, ph), min(r1, ph + H)  # real rows, in padded coordinates
    b0, b1 = max(c0, pw), min(c1, pw + W)
    if a0 >= a1 or b0 >= b1:
        out.fill(value)
        return out
    ta0, ta1, tb0, tb1 = a0 - r0, a1 - r0, b0 - c0, b1 - c0
    if ta0 > 0:
        out[:, :ta0].fill(value)
    if ta1 < out.shape[1]:
        out[:, ta1:].fill(value)
    if tb0 > 0:
        out[:, ta0:ta1, :tb0].fill(value)
    if tb1 < out.shape[2]:
        out[:, ta0:ta1, tb1:].fill(value)
    out[:, ta0:ta1, tb0:tb1] = A[n0:n1, a0 - ph:a1 - ph, b0 - pw:b1 - pw]
    return out
