"""The numba backend's hand-written kernels: padding, the dW/db partial sums, the plain
convolutions for small problems, the pooling backward gather that streams whole channel
rows, non-overlapping average-pooling backward, the activations, and an array's address.

The register-tiled kernels (convolution tiles, pooling channel blocks) are generated from
:mod:`fastnn.backends.numba.templates`. Every kernel here but ``conv_fwd_small``,
``conv_bwd_plain`` (which run whole, in the calling thread) and ``address`` takes ``(..., chunk, nchunks)``
and runs iterations ``[chunk*n//nchunks, (chunk+1)*n//nchunks)`` of its outer loop of ``n``
independent iterations: one compiled function serves a serial call ``(..., 0, 1)`` and
fastnn's threads (:mod:`fastnn.backends.numba.threads`), with the same bits either way.
Kernels check no bounds: the wrapper in :mod:`fastnn.backends.numba` passes validated,
C-contiguous arrays of the shapes given in each docstring.
"""

import numpy as np

from ..._jit import inline, kernel


@kernel
def address(a):
    """The address of ``a``'s first element: NumPy's ``a.ctypes.data``, which takes 1.5 us to read
    against this call's 0.3 (the wrapper reads it for each buffer it aligns)."""
    return a.ctypes.data


@kernel
def nchw_to_nhwc(X, out, top, left, blocked, chunk, nchunks):
    """out (m, Hp, Wp, C) = X (m, C, H, W) transposed, zero-padded by (top, left) in front and
    as far as out reaches behind (needs left + W <= Wp; rows past Hp are not copied); a row of
    out per iteration, written in order, its pixels' channels read from X's C rows. ``blocked``
    (needs C >= 8): the row in blocks of 8 channels (the last shifted back), each block's 8
    rows of X read along the row, for where more of X's channel rows share an L1 set than it
    has ways (``tiles.transpose_blocked``)."""
    m, C, H, W = X.shape
    _, Hp, Wp, _ = out.shape
    nloop = m * Hp
    for t in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):
        i = t // Hp
        r = t - i * Hp
        o = out[i, r]
        h = r - top
        if h < 0 or h >= H:
            for w in range(Wp):
                for c in range(C):
                    o[w, c] = 0
            continue
        for w in range(left):
            for c in range(C):
                o[w, c] = 0
        for w in range(left + W, Wp):
            for c in range(C):
                o[w, c] = 0
        x = X[i]
        if blocked:
            _transpose_row_b8(x, h, o[left:], C, W)
            continue
        for w in range(W):
            ow = o[left + w]
            for c in range(C):
                ow[c] = x[c, h, w]


@inline
def _transpose_row_b8(x, h, o, C, W):
    """o[w, c] = x[c, h, w] for w < W, c < C (C >= 8), by blocks of 8 channels, the last
    shifted back to end at C (its overlap written twice, the same values): per block, its 8
    rows x[c, h] (8 lines of L1 at a time, even where all C rows fall in one set) read along w."""
    for b in range((C + 7) // 8):
        c0 = min(b * 8, C - 8)
        x0 = x[c0, h]
        x1 = x[c0 + 1, h]
        x2 = x[c0 + 2, h]
        x3 = x[c0 + 3, h]
        x4 = x[c0 + 4, h]
        x5 = x[c0 + 5, h]
        x6 = x[c0 + 6, h]
        x7 = x[c0 + 7, h]
        for w in range(W):
            ow = o[w, c0:]
            ow[0] = x0[w]
            ow[1] = x1[w]
            ow[2] = x2[w]
            ow[3] = x3[w]
            ow[4] = x4[w]
            ow[5] = x5[w]
            ow[6] = x6[w]
            ow[7] = x7[w]


@kernel
def kchw_to_hwck(W, out, chunk, nchunks):
    """out (fh, fw, Cg, K) = W (K, Cg, fh, fw) (PyTorch's filters to the course's layout): per
    input channel c, the K filters' fh x fw taps of c (K short runs, cache-resident for the
    fh * fw rows of out they fill). NumPy's copy of the transposed view reads W K * Cg * fh * fw
    apart for each element: 1.3 GB/s on 256 x 256 x 3 x 3."""
    K, Cg, fh, fw = W.shape
    for c in range(chunk * Cg // nchunks, (chunk + 1) * Cg // nchunks):
        for kh in range(fh):
            for kw in range(fw):
                o = out[kh, kw, c]
                for k in range(K):
                    o[k] = W[k, c, kh, kw]


@kernel
def hwck_to_kchw(W, out, chunk, nchunks):
    """out (K, Cg, fh, fw) = W (fh, fw, Cg, K) (``kchw_to_hwck``'s inverse, for dW): per input
    channel c, each of the fh x fw rows W[kh, kw, c] spread over the K filters."""
    fh, fw, Cg, K = W.shape
    for c in range(chunk * Cg // nchunks, (chunk + 1) * Cg // nchunks):
        for kh in range(fh):
            for kw in range(fw):
                w = W[kh, kw, c]
                for k in range(K):
                    out[k, c, kh, kw] = w[k]


@kernel
def pack_kchw(W, out, chunk, nchunks):
    """out (nkb, fh, fw * Cg, T) = PyTorch's filters W (K, Cg, fh, fw) in blocks of T output
    channels, k0 = min(kb * T, K - T) (needs K >= T): out[kb, kh, kw * Cg + c, k] = W[k0 + k, c,
    kh, kw], what ``_pack_channels`` makes of the (fh, fw * Cg, K) filters, in one pass."""
    K, Cg, fh, fw = W.shape
    nkb, _, _, T = out.shape
    nloop = nkb * Cg
    for t in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):
        kb = t // Cg
        c = t - kb * Cg
        k0 = min(kb * T, K - T)
        for kh in range(fh):
            for kw in range(fw):
                o = out[kb, kh, kw * Cg + c]
                for k in range(T):
                    o[k] = W[k0 + k, c, kh, kw]


@kernel
def nhwc_to_nchw(X, out, chunk, nchunks):
    """out (m, C, H, W) = X (m, H, W, C) transposed; per row of X (cache-resident), each
    channel's W values written in order (NumPy's copy of the transposed view strides through
    out instead: a third of this speed)."""
    m, H, W, C = X.shape
    nloop = m * H
    for t in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):
        i = t // H
        h = t - i * H
        x = X[i, h]
        o = out[i]
        for c in range(C):
            oc = o[c, h]
            for w in range(W):
                oc[w] = x[w, c]


@kernel
def phase_scatter(src, out, h0, sh, w0, sw, chunk, nchunks):
    """out[i, h0 + a*sh, w0 + b*sw] = src[i, a, b] (a stride phase of out; whole channel rows,
    contiguous both sides). NumPy's copy into the strided view ran on one thread."""
    m, nh, nw, C = src.shape
    nloop = m * nh
    for t in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):
        i = t // nh
        a = t - i * nh
        s = src[i, a]
        o = out[i, h0 + a * sh]
        for b in range(nw):
            sb = s[b]
            ob = o[w0 + b * sw]
            for c in range(C):
                ob[c] = sb[c]


@kernel
def pad_copy(X, out, ph, pwc, value, chunk, nchunks):
    """out = X padded by ph rows and pwc = pw*C row elements with ``value``, on rows of
    pixels x channels: X (m, H, W*C), out (m, Hp, Wp*C); out may be bigger behind (extra
    rows/cols get value). Whole rows as flat runs, so the copy is vectorised whatever C
    (a loop per pixel over C = 3 channels ran at a fifth of the copy bandwidth)."""
    m, H, WC = X.shape
    _, Hp, WpC = out.shape
    nloop = m * Hp
    for t in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):
        i = t // Hp
        hp = t - i * Hp
        h = hp - ph
        o = out[i, hp]
        if h < 0 or h >= H:
            for j in range(WpC):
                o[j] = value
        else:
            x = X[i, h]
            for j in range(pwc):
                o[j] = value
            ob = o[pwc:]
            for j in range(WC):
                ob[j] = x[j]
            for j in range(pwc + WC, WpC):
                o[j] = value


@kernel
def planar_pad(X, out, th, tw, zero, chunk, nchunks):
    """out[i, y, k, x] = X[i, y - th, x - tw, k], zero where that is outside X: X (m, H, W, K)
    padded by (th, tw) in front (and behind as far as out reaches) and made planar, channels
    before columns (needs tw + W <= Wq; rows past Hq are not copied). A row of X is one small
    (W, K) block, transposed in cache."""
    m, H, W, K = X.shape
    _, Hq, _, Wq = out.shape
    nloop = m * Hq
    for t in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):
        i = t // Hq
        y = t - i * Hq
        h = y - th
        o = out[i, y]
        if h < 0 or h >= H:
            for k in range(K):
                ok = o[k]
                for x in range(Wq):
                    ok[x] = zero
            continue
        xr = X[i, h]
        for k in range(K):
            ok = o[k]
            for x in range(tw):
                ok[x] = zero
            for x in range(tw + W, Wq):
                ok[x] = zero
        for w in range(W):
            xw = xr[w]
            for k in range(K):
                o[k, tw + w] = xw[k]


@kernel
def sum_parts(part, out, chunk, nchunks):
    """out = part[0] + part[1] + ... (in that order) over flat arrays."""
    n = out.shape[0]
    nch = part.shape[0]
    nloop = n
    for q in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):
        s = part[0, q]
        for c in range(1, nch):
            s += part[c, q]
        out[q] = s


@kernel
def pool_avg_bwd_direct(dA, dX, fh, fw, sh, sw, ph, pw, inv, chunk, nchunks):
    """Average-pooling backward for non-overlapping windows (sh >= fh and sw >= fw): each
    window writes dA * inv (inv = 1 / area, rounded by the caller) to its positions clipped
    to the input (the caller zeroes dX first where no window reaches)."""
    m, H, W, C = dX.shape
    _, Ho, Wo, _ = dA.shape
    nloop = m * Ho
    for t in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):
        i = t // Ho
        ho = t - i * Ho
        h0 = ho * sh - ph
        Gi = dX[i]
        drow = dA[i, ho]
        for wo in range(Wo):
            w0 = wo * sw - pw
            d = drow[wo]
            for h in range(max(h0, 0), min(h0 + fh, H)):
                gr = Gi[h]
                for w in range(max(w0, 0), min(w0 + fw, W)):
                    g = gr[w]
                    for c in range(C):
                        g[c] = d[c] * inv


@kernel
def conv_fwd_small(A, Wt, b, Z, sh, sw, ph, pw):
    """Plain forward convolution reading the unpadded input with bounds checks (no padded
    copy, one call: for the smallest problems, where call overhead dominates)."""
    m, H, W, C = A.shape
    fh, fw, _, K = Wt.shape
    _, Ho, Wo, _ = Z.shape
    for i in range(m):
        for ho in range(Ho):
            for wo in range(Wo):
                z = Z[i, ho, wo]
                for k in range(K):
                    z[k] = b[k]
                for kh in range(fh):
                    h = ho * sh - ph + kh
                    if h < 0 or h >= H:
                        continue
                    for kw in range(fw):
                        w = wo * sw - pw + kw
                        if w < 0 or w >= W:
                            continue
                        x = A[i, h, w]
                        wm = Wt[kh, kw]
                        for c in range(C):
                            a = x[c]
                            for k in range(K):
                                z[k] += a * wm[c, k]


@kernel
def conv_bwd_plain(Xr, Zr, WT, dZ, dA, dW3, db, sh, sw, ph, pw, plh, plw):
    """Plain dW, db (sums over all rows in order) and dA_prev (gather over padded dZ Zr)."""
    m, Ho, Wo, K = dZ.shape
    fh, Lr, _ = dW3.shape
    C = dA.shape[3]
    xs = sw * C
    for kh in range(fh):
        for j in range(Lr):
            for k in range(K):
                dW3[kh, j, k] = 0
    for k in range(K):
        db[k] = 0
    for i in range(m):
        for ho in range(Ho):
            for wo in range(Wo):
                d = dZ[i, ho, wo]
                for k in range(K):
                    db[k] += d[k]
                for kh in range(fh):
                    xrow = Xr[i, ho * sh + kh]
                    for j in range(Lr):
                        a = xrow[wo * xs + j]
                        for k in range(K):
                            dW3[kh, j, k] += a * d[k]
    mm, H, W, _ = dA.shape
    fw = WT.shape[1]
    for t in range(mm * H):
        i = t // H
        h = t - i * H
        hp = h + ph
        for w in range(W):
            wp = w + pw
            g = dA[i, h, w]
            for c in range(C):
                g[c] = 0
            for kh in range(fh):
                dh = hp - kh
                if dh % sh != 0:
                    continue
                zr = Zr[i, dh // sh + plh]
                for kw in range(fw):
                    dw = wp - kw
                    if dw % sw != 0:
                        continue
                    zb = (dw // sw + plw) * K
                    wt = WT[kh, kw]
                    for k in range(K):
                        dz = zr[zb + k]
                        for c in range(C):
                            g[c] += dz * wt[k, c]


# The elementwise kernels loop over slices of their chunk from 0 and load every operand
# unconditionally: so written, LLVM vectorises them into selects. (Indexing the whole arrays
# from the chunk's start, with the load of dA inside the conditional, compiled to a branch
# per element: relu_backward on random signs ran at 8 ns an element, 30x slower.)


@kernel
def relu(x, out, zero, chunk, nchunks):
    """out = x where x > 0 or x is NaN, else +0."""
    nloop = x.shape[0]
    a = chunk * nloop // nchunks
    b = (chunk + 1) * nloop // nchunks
    xs = x[a:b]
    os = out[a:b]
    for q in range(b - a):
        v = xs[q]
        os[q] = v if ((v > zero) | (v != v)) else zero


@kernel
def relu_backward(dA, Z, out, zero, chunk, nchunks):
    """out = 0 where Z <= 0, else dA (a NaN Z passes dA)."""
    nloop = dA.shape[0]
    a = chunk * nloop // nchunks
    b = (chunk + 1) * nloop // nchunks
    ds = dA[a:b]
    zs = Z[a:b]
    os = out[a:b]
    for q in range(b - a):
        d = ds[q]
        z = zs[q]
        os[q] = zero if z <= zero else d


@kernel
def sigmoid(x, out, one, chunk, nchunks):
    nloop = x.shape[0]
    a = chunk * nloop // nchunks
    b = (chunk + 1) * nloop // nchunks
    xs = x[a:b]
    os = out[a:b]
    for q in range(b - a):
        os[q] = one / (one + np.exp(-xs[q]))


@kernel
def sigmoid_backward(dA, Z, out, one, chunk, nchunks):
    nloop = dA.shape[0]
    a = chunk * nloop // nchunks
    b = (chunk + 1) * nloop // nchunks
    ds = dA[a:b]
    zs = Z[a:b]
    os = out[a:b]
    for q in range(b - a):
        s = one / (one + np.exp(-zs[q]))
        os[q] = ds[q] * s * (one - s)


@kernel
def pool_bwd(Idx, dA, dX, fh, fw, sh, sw, ph, pw, mode, inv, zero, chunk, nchunks):
    """Gather form of pooling backward: each input element sums the windows covering it
    in (ho, wo) order, so no two threads write one element.

    mode 1: max, ties "first" (Idx = argmax positions); 2: average (each window gives
    dA * inv, inv = 1 / area rounded by the caller: a multiply, not a division per term).
    (Max with ties "all" has its own kernel, ``pool_max_bwd_gather``; average
    with C >= GATHER_REG_NB has ``pool_avg_bwd_gather``.)"""
    m, H, W, C = dX.shape
    _, Ho, Wo, _ = dA.shape
    wlo = np.empty(W, dtype=np.int64)
    whi = np.empty(W, dtype=np.int64)
    for w in range(W):
        wlo[w] = max(0, (w + pw - fw + sw) // sw)
        whi[w] = min(Wo - 1, (w + pw) // sw)
    nloop = m * H
    for t in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):
        i = t // H
        h = t - i * H
        hp = h + ph
        hoa = max(0, (hp - fh + sh) // sh)
        hob = min(Ho - 1, hp // sh)
        for w in range(W):
            woa = wlo[w]
            wob = whi[w]
            g = dX[i, h, w]
            for c in range(C):
                g[c] = zero
            for ho in range(hoa, hob + 1):
                kh = hp - ho * sh
                for wo in range(woa, wob + 1):
                    kw = w + pw - wo * sw
                    d = dA[i, ho, wo]
                    if mode == 1:
                        ix = Idx[i, ho, wo]
                        pos = kh * fw + kw
                        for c in range(C):
                            g[c] += d[c] if ix[c] == pos else d[c] * zero
                    else:
                        for c in range(C):
                            g[c] += d[c] * inv

