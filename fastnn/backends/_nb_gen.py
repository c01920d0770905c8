"""Generator of :mod:`fastnn.backends._nb_conv` and :mod:`~fastnn.backends._nb_misc` (the numba backend's kernels),
and of :mod:`~fastnn.backends._cols_px` (the im2col backend's column builds for short window rows).

The convolution kernels keep a register tile of output values in named scalar
accumulators (``a{p}_{k}``), which LLVM's SLP vectoriser packs into SIMD registers.
Writing those tiles by hand is error-prone, so this module writes them; the result is a
real module file (Numba's on-disk cache needs one). Every kernel is one serial
``@njit`` function over a chunk of its outer loop (``chunked``); the wrapper runs it whole
or in chunks on fastnn's threads, with the same bits either way.

Regenerate after editing: ``python fastnn/backends/_nb_gen.py`` (a test checks that the
committed file is up to date).
"""

from __future__ import annotations

import ast
import os
import re
import textwrap
from typing import List

#: dW tile rows per dtype: J input columns x T output channels (J*T accumulators fill 8
#: AVX2 registers at the widest T). (dA_prev with C_in > 4 runs the forward kernels.)
DW_J = {"f64": 4, "f32": 4}
#: Channel tile widths of the dW kernels per dtype, widest first: one kernel per width
#: (compiled on first use; the wrapper takes the first with T <= K), so a call compiles
#: one tile's code, not every tail's.
BWD_T = {"f64": (8, 4, 1), "f32": (16, 4, 1)}



def _ind(lines: List[str], n: int) -> List[str]:
    return [" " * n + s if s else s for s in lines]


def _shifted(block: str, T: int, n: str) -> str:
    """The start of block ``block`` of width T over [0, n): the last block is shifted back to
    end at n (its overlap with the one before is recomputed with the same arithmetic, so
    no tail code), and clamped at 0 when n < T. The ``max(..., 0)`` also lets LLVM prove the
    start non-negative, which keeps Numba's index wraparound code out of the kernel (without
    it the pooling kernels ran 2-4x slower)."""
    return f"max(min({block} * {T}, {n} - {T}), 0)"


# ------------------------------------------------------- chunks of the outer loop

_LOOP = re.compile(r"^    for (\w+) in range\((.*)\):$")


def chunked(lines: List[str]) -> List[str]:
    """Turn a generated kernel whose work is one top-level loop ``for t in range(n)`` (the
    last top-level loop; independent iterations) into ``kernel(<args>, chunk, nchunks)``,
    which runs iterations ``[chunk*n//nchunks, (chunk+1)*n//nchunks)`` of it. One compiled
    function then serves a serial call ``(..., 0, 1)`` and fastnn's threads, each running
    one chunk (``fastnn._threads``): same arithmetic and order either way, so the same bits.
    (Numba's own ``prange`` would compile a parallel copy of every kernel through its
    parfor passes: about one more second of cold compile per kernel here.)"""
    deco, defline = lines[0], lines[1]
    name, args = re.match(r"^def (\w+)\((.*)\):$", defline).groups()
    at = max(k for k, s in enumerate(lines) if _LOOP.match(s))
    var, n = _LOOP.match(lines[at]).groups()
    return [deco, f"def {name}({args}, chunk, nchunks):", *lines[2:at],
            f"    nloop = {n}",
            f"    for {var} in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):",
            *lines[at + 1:]]


# ------------------------------------------------------------------ conv forward

#: Forward tile shapes (P output pixels x T output channels) per dtype, best first; the
#: wrapper takes the first with T <= K and P <= Wo, the first (widest) one only when T
#: divides K. P*T accumulators fill 12 AVX2 registers in the widest tile (3 pixels x 4
#: vectors: 1.04-1.24x the 8-register (4, 16) tile in float32 on this project's shapes,
#: 0.96-1.26x (4, 8) in float64, where 8 accumulators leave the FMA units no slack over
#: their latency), 8 in the next.
FWD_TILES = {
    "f64": ((3, 16), (4, 8), (8, 4), (4, 4), (1, 8), (1, 4), (4, 1), (1, 1)),
    "f32": ((3, 32), (4, 16), (8, 8), (4, 8), (8, 4), (4, 4), (1, 16), (1, 8), (1, 4), (4, 1), (1, 1)),
}


def conv_fwd(name: str, P: int, T: int) -> List[str]:
    """One register tile, no tails: the last pixel block and the last channel block are
    shifted back to end at Wo and K (overlapping the block before, whose values are
    recomputed with the same arithmetic, hence the same bits). Every hot index is a loop
    variable plus a constant on a view sliced outside the loop, so Numba emits no
    negative-index wraparound code in the inner loop."""
    L = [
        "@numba.njit(fastmath=FASTMATH_CONV, **NJIT)",
        f"def {name}(Xr, Wp, bp, Z, sh, sw, C):",
        f'    """Z[i, ho, wo, k0 + k] = bp[kb, k] + sum over (kh, j) of Xr[i, ho*sh + kh, wo*sw*C + j] * Wp[kb, kh, j, k]',
        f"    with k0 = min(kb*{T}, K-{T}): Wp holds W's output channels in blocks of {T} (see",
        f'    ``_pack_channels``). Needs K >= {T} and Wo >= {P}."""',
        "    m, Ho, Wo, K = Z.shape",
        "    nkb, fh, Lr, _ = Wp.shape",
        f"    nwb = (Wo + {P - 1}) // {P}",
        "    xs = sw * C",
        "    for t in range(m * Ho):",
        "        i = t // Ho",
        "        ho = t - i * Ho",
        "        r0 = ho * sh",
        "        zrow = Z[i, ho]",
        "        for kb in range(nkb):",
        f"            k0 = min(kb * {T}, K - {T})",
        "            bb = bp[kb]",
        "            for wb in range(nwb):",
        f"                wo = min(wb * {P}, Wo - {P})",
    ]
    I = " " * 16
    for p in range(P):
        for k in range(T):
            L.append(I + f"a{p}_{k} = bb[{k}]")
    L += [I + "xb = wo * xs", I + "for kh in range(fh):", I + "    xrow = Xr[i, r0 + kh]", I + "    wt = Wp[kb, kh]"]
    for p in range(P):
        L.append(I + f"    xr{p} = xrow[xb + {p} * xs:]")
    L.append(I + "    for j in range(Lr):")
    for k in range(T):
        L.append(I + f"        w{k} = wt[j, {k}]")
    for p in range(P):
        L.append(I + f"        x{p} = xr{p}[j]")
    for p in range(P):
        for k in range(T):
            L.append(I + f"        a{p}_{k} += x{p} * w{k}")
    for p in range(P):
        L.append(I + f"zp = zrow[wo + {p}, k0:]")
        for k in range(T):
            L.append(I + f"zp[{k}] = a{p}_{k}")
    return L


# ------------------------------------ conv dA_prev gather (few input channels)


def _dA_pixels(P: int, tile) -> List[str]:
    """The pixels n of one row's stride phase in blocks of P (``tile`` lines, which put
    pixel p at offset o{p} from n): the last block is shifted back to end at npix, and
    with fewer than P pixels the offsets are clamped to the last one. Either way a pixel
    computed twice gets the same arithmetic, hence the same bits, so there is no tail code."""
    L = [f"for pb in range((npix + {P - 1}) // {P}):", f"    n = {_shifted('pb', P, 'npix')}", "    o0 = 0"]
    L += [f"    o{p} = min({p}, npix - 1 - n)" for p in range(1, P)]
    L += _ind(tile, 4)
    return L


def _dA_rows(per_row: List[str]) -> List[str]:
    """The loop over rows (i, h) of dA and their stride phases rw, down to ``npix``; the
    ``per_row`` lines run once per row."""
    return [
        "    for t in range(m * H):",
        "        i = t // H",
        "        h = t - i * H",
        "        hp = h + ph",
        *_ind(per_row, 8),
        "        for rw in range(sw):",
        "            wfirst = (rw - pw) % sw",
        "            if wfirst >= W:",
        "                continue",
        "            npix = (W - 1 - wfirst) // sw + 1",
    ]


# ------------------------------------------- conv dA_prev for few input channels

#: dA_prev for C_in <= 4: pixels per tile by C_in, and SIMD lanes per dtype.
DA_KVEC_P = {1: 8, 2: 4, 3: 3, 4: 3}
DA_KVEC_L = {"f64": 4, "f32": 8}


def _dA_kvec_tile(P: int, C: int, L: int) -> List[str]:
    """P pixels x all C channels; the reduction over k runs in L lanes (summed at the end),
    so the loads of dZ and W are contiguous vectors."""
    out = []
    for p in range(P):
        for c in range(C):
            out += [f"a{p}_{c}_{l} = zero" for l in range(L)]
    out += [
        "wq = wfirst + n * sw",
        "for kh in range(fh):",
        "    dh = hp - kh",
        "    if dh % sh != 0:",
        "        continue",
        "    zr = Zr[i, dh // sh + plh]",
        "    for kw in range(rw, fw, sw):",
        "        wt = Wt[kh, kw]",
        "        zb = (wq + pw - kw) // sw + plw",
    ]
    for p in range(P):
        out.append(f"        z{p} = zr[zb + o{p}]")
    out += ["        for kk in range(nkl):"]
    for c in range(C):
        for l in range(L):
            out.append(f"            w{c}_{l} = wt[{c}, kk, {l}]")
    for p in range(P):
        for l in range(L):
            out.append(f"            d{p}_{l} = z{p}[kk, {l}]")
    for p in range(P):
        for c in range(C):
            for l in range(L):
                out.append(f"            a{p}_{c}_{l} += d{p}_{l} * w{c}_{l}")
    # Lanes go to memory as whole vectors first (summing them straight from registers
    # makes the SLP vectoriser keep the accumulators scalar), then are summed there.
    for p in range(P):
        for c in range(C):
            for l in range(L):
                out.append(f"buf[{p}, {c}, {l}] = a{p}_{c}_{l}")
    # The lane sums as loops (same pairwise order): less code to type and lower.
    terms = [f"bb[{l}]" for l in range(L)]
    while len(terms) > 1:  # pairwise: a fixed order
        terms = [f"({terms[q]} + {terms[q + 1]})" if q + 1 < len(terms) else terms[q]
                 for q in range(0, len(terms), 2)]
    out += [f"for p in range({P}):",
            "    g = dA[i, h, wq + min(p, npix - 1 - n) * sw]",
            f"    for c in range({C}):",
            "        bb = buf[p, c]",
            f"        g[c] = {terms[0]}"]
    return out


def conv_dA_kvec(name: str, C: int, L: int) -> List[str]:
    P = DA_KVEC_P[C]
    out = [
        "@numba.njit(fastmath=FASTMATH_CONV, **NJIT)",
        f"def {name}(Zr, Wt, dA, sh, sw, ph, pw, plh, plw, zero):",
        f'    """dA_prev for C = {C} input channels, a gather (each input pixel sums the windows',
        "    covering it; pixels of one row by stride phase rw = (w + pw) % sw, so one tile",
        f"    shares its kw set) with the sum over k in {L} lanes: Zr is dZ zero-padded by (plh, plw)",
        f"    in front and enough behind, (m, Hz, Wz, K'/{L}, {L}), and Wt is W",
        f"    (fh, fw, C, K'/{L}, {L}), both zero-filled from K to K' (a multiple of {L}).",
        '    """',
        "    m, H, W, _ = dA.shape",
        "    fh, fw, _, nkl, _ = Wt.shape",
    ]
    out += _dA_rows([f"buf = np.empty(({P}, {C}, {L}), dtype=dA.dtype)"])
    out += _ind(_dA_pixels(P, _dA_kvec_tile(P, C, L)), 12)
    return out


# --------------------------------------------------------------------- conv dW


def _dW_tile(J: int, T: int) -> List[str]:
    L = []
    for q in range(J):
        L.append(f"pq{q} = pk[j0 + {q}, k0:]")
        for k in range(T):
            L.append(f"a{q}_{k} = pq{q}[{k}]")
    # Input column j of output pixel wo is xrow[wo + ja[j], jb[j]] with (ja, jb) =
    # divmod(j, sw*C) precomputed (no division per tile): the row offset goes into a slice
    # and the column is loop-invariant, so the inner loop's indices are wo plus hoisted
    # constants (no per-iteration wraparound code).
    for q in range(J):
        L.append(f"xq{q} = xrow[ja[j0 + {q}]:]")
        L.append(f"bq{q} = jb[j0 + {q}]")
    L += ["for wo in range(Wo):"]
    for k in range(T):
        L.append(f"    d{k} = zr[wo, k0 + {k}]")
    for q in range(J):
        L.append(f"    x{q} = xq{q}[wo, bq{q}]")
    for q in range(J):
        for k in range(T):
            L.append(f"    a{q}_{k} += x{q} * d{k}")
    for q in range(J):
        for k in range(T):
            L.append(f"pq{q}[{k}] = a{q}_{k}")
    return L


def _dW_kblock(J: int, T: int) -> List[str]:
    return ["j0 = 0", "while j0 < Lr:", *_ind(_dW_tile(J, T), 4), f"    j0 += {J}"]


def conv_dW(name: str, J: int, T: int) -> List[str]:
    L = [
        "@numba.njit(fastmath=FASTMATH_CONV, **NJIT)",
        f"def {name}(Xs, dZ, part, pdb, sh, ja, jb):",
        '    """Per-chunk partial dW and db: chunk c sums rows [c*R//n, (c+1)*R//n) of the',
        "    R = m*Ho output rows into part[c] (fh, fw*C, K) and pdb[c] (K,). Deterministic",
        "    for a fixed chunk count whichever build runs it. Xs is the padded input with",
        "    each row cut into pieces of one stride, (m, Hp, Wp/sw, sw*C); dZ is (m, Ho, Wo, K);",
        f"    (ja[j], jb[j]) = divmod(j, sw*C) for j < fw*C. K (of dZ and part) is a multiple of {T}",
        f"    and Lr (of part, ja, jb) one of {J}: the wrapper pads them (ja, jb with copies of",
        "    their last entry) and drops the padded rows and channels.",
        '    """',
        "    nch, fh, Lr, K = part.shape",
        "    m, Ho, Wo, _ = dZ.shape",
        "    R = m * Ho",
        "    for c in range(nch):",
        "        pc = part[c]",
        "        db = pdb[c]",
        "        for kh in range(fh):",
        "            for j in range(Lr):",
        "                for k in range(K):",
        "                    pc[kh, j, k] = 0",
        "        for k in range(K):",
        "            db[k] = 0",
        "        for t in range(c * R // nch, (c + 1) * R // nch):",
        "            i = t // Ho",
        "            ho = t - i * Ho",
        "            zr = dZ[i, ho]",
        "            for wo in range(Wo):",
        "                for k in range(K):",
        "                    db[k] += zr[wo, k]",
        "            for kh in range(fh):",
        "                xrow = Xs[i, ho * sh + kh]",
        "                pk = pc[kh]",
    ]
    L += _ind(["k0 = 0", "while k0 < K:"] + _ind(_dW_kblock(J, T) + [f"k0 += {T}"], 4), 16)
    return L


# ------------------------------------------------------------------------ pooling

#: Channel block widths of the pooling kernels, widest first: the wrapper takes the first
#: with NB <= C (one compiled kernel per width, compiled on first use). A block holds NB
#: running maxima/sums/positions in registers; the last block is shifted back to end at C
#: (its overlap is recomputed with the same arithmetic, so no scalar tail). 16 beat 8 for
#: both dtypes (argmax 1.7-5x, float32 max/average forward 1.3-1.8x). 32 beat 16 on p3s2
#: (C = 64), kernel calls on 2 threads: forward float32 1.2-1.3x, float64 1.0-1.2x; the
#: window's sum or maximum is a chain of dependent operations per block, and more lanes
#: side by side hide its latency. 64 spilled registers in float64 and gained no more in
#: float32. (Cold compile of a 32-wide kernel: about 0.5 s more than a 16-wide one.)
POOL_NB = (32, 16, 8, 1)
#: The max-pool backward gather (``pool_max_bwd_gather``) keeps each input pixel's gradient
#: in registers, NB channels at a time, for NB >= this: float32 p3s2 backward 2.8 -> 2.4-2.5
#: ms (float64 even), at about 2 s more cold compile (3.8-4.4 s for that kernel). Narrower
#: blocks lost to whole-channel-row loops (they run the window loop once per block).
GATHER_REG_NB = 32


def _rep(NB: int, *fmts: str) -> List[str]:
    """Each format once per channel k of the block, format by format."""
    return [f.format(k=k) for f in fmts for k in range(NB)]


def _pool_head(name: str, args: str, doc: str, NB: int, out: str) -> List[str]:
    """A pooling kernel's head: the loop over its output rows t = (i, ho), with ``out`` the
    array of output shape (m, Ho, Wo, C) (``chunked`` splits the loop into chunks)."""
    return [
        "@numba.njit(**NJIT)",
        f"def {name}({args}):",
        f'    """{doc}\n    Channel blocks of {NB} (the last one shifted back to end at C; needs C >= {NB})."""',
        "    m, H, W, C = X.shape",
        f"    _, Ho, Wo, _ = {out}.shape",
        f"    nb = (C + {NB - 1}) // {NB}",
        "    for t in range(m * Ho):",
    ]


def _over_windows(NB: int, per_row: List[str], per_window: List[str], block: List[str]) -> List[str]:
    """The loop body of a window kernel: output row t = (i, ho), its windows (clipped to
    the input: rows [ha, hb), columns [wa, wb)), and channel blocks of NB starting at c0."""
    rows = ["i = t // Ho", "ho = t - i * Ho", "h0 = ho * sh - ph", "ha = max(h0, 0)", "hb = min(h0 + fh, H)",
            "Xi = X[i]"]
    cols = ["w0 = wo * sw - pw", "wa = max(w0, 0)", "wb = min(w0 + fw, W)"]
    blk = ["for cb in range(nb):", f"    c0 = {_shifted('cb', NB, 'C')}"]
    return _ind(rows + per_row + ["for wo in range(Wo):"] + _ind(cols + per_window + blk + _ind(block, 4), 4), 8)


def _window_loop(body: List[str], pos: bool = False, h: str = "h", w: str = "w") -> List[str]:
    """``body`` for each input position (h, w) of the window, ``xr`` = X[i, h]; with ``pos``
    the row-major position in the unclipped window. ``h``, ``w``: the loop variables' names
    (``body`` indexes ``xr`` with ``w``)."""
    return ([f"for {h} in range(ha, hb):", f"    xr = Xi[{h}]", f"    for {w} in range(wa, wb):"]
            + ([f"        pos = ({h} - h0) * fw + ({w} - w0)"] if pos else []) + _ind(body, 8))


def _max_pass(NB: int, h: str = "h", w: str = "w") -> List[str]:
    """b{k} = the window's NaN-propagating maximum (a NaN v is taken, a NaN b is kept), over
    the window loop with variables ``h``, ``w``."""
    return _rep(NB, "b{k} = ninf") + _window_loop(
        [s for k in range(NB) for s in (f"v{k} = xr[{w}, c0 + {k}]",
                                         f"b{k} = v{k} if ((v{k} > b{k}) | (v{k} != v{k})) else b{k}")], h=h, w=w)


def _argmax_pass(NB: int) -> List[str]:
    """q{k} = the row-major position of the window's first maximum (a NaN wins and stays:
    v is taken when b is not NaN and v beats it; pads, -inf, never beat b >= -inf)."""
    return _rep(NB, "b{k} = ninf", "q{k} = 0") + _window_loop(
        [s for k in range(NB) for s in (f"v{k} = xr[w, c0 + {k}]",
                                         f"u{k} = (b{k} == b{k}) & ((v{k} > b{k}) | (v{k} != v{k}))",
                                         f"b{k} = v{k} if u{k} else b{k}", f"q{k} = pos if u{k} else q{k}")], pos=True)


def pool_max(name: str, NB: int) -> List[str]:
    L = _pool_head(name, "X, Out, fh, fw, sh, sw, ph, pw, ninf",
                   "Max pooling, NaN-propagating (pads are -inf, so the window is clipped to the input).",
                   NB, "Out")
    return L + _over_windows(NB, ["orow = Out[i, ho]"], ["o = orow[wo]"],
                             _max_pass(NB) + _rep(NB, "o[c0 + {k}] = b{k}"))


def pool_avg(name: str, NB: int) -> List[str]:
    L = _pool_head(name, "X, Out, fh, fw, sh, sw, ph, pw, area, zero",
                   "Average pooling (pads count as zeros: the clipped window's sum / area).",
                   NB, "Out")
    return L + _over_windows(NB, ["orow = Out[i, ho]"], ["o = orow[wo]"],
                             _rep(NB, "s{k} = zero") + _window_loop(_rep(NB, "s{k} += xr[w, c0 + {k}]"))
                             + _rep(NB, "o[c0 + {k}] = s{k} / area"))


def pool_argmax(name: str, NB: int) -> List[str]:
    L = _pool_head(name, "X, Idx, fh, fw, sh, sw, ph, pw, ninf",
                   "Idx[i, ho, wo, c] = np.argmax of the (-inf padded) window: row-major, first max, first NaN.",
                   NB, "Idx")
    return L + _over_windows(NB, ["irow = Idx[i, ho]"], ["ix = irow[wo]"],
                             _argmax_pass(NB) + _rep(NB, "ix[c0 + {k}] = q{k}"))


_DIRECT_DOC = ("Max-pooling backward, ties {ties}, for non-overlapping windows (sh >= fh, sw >= fw): each\n"
               "    window writes its own positions (the caller zeroes dX first where no window reaches).")


def pool_max_bwd_direct(name: str, NB: int) -> List[str]:
    L = _pool_head(name, "X, dA, dX, fh, fw, sh, sw, ph, pw, ninf, zero",
                   _DIRECT_DOC.format(ties='"all"') + " A block's X values\n    are loaded before its dX stores"
                   " (the SLP vectoriser cannot tell X and dX apart).", NB, "dA")
    write = ["for h in range(ha, hb):", "    xr = Xi[h]", "    gr = Gi[h]", "    for w in range(wa, wb):"]
    write += _ind(_rep(NB, "v{k} = xr[w, c0 + {k}]", "gr[w, c0 + {k}] = d{k} if v{k} == b{k} else e{k}"), 8)
    return L + _over_windows(NB, ["Gi = dX[i]", "drow = dA[i, ho]"], ["d = drow[wo]"],
                             _rep(NB, "d{k} = d[c0 + {k}]", "e{k} = d{k} * zero") + _max_pass(NB) + write)


def pool_first_bwd_direct(name: str, NB: int) -> List[str]:
    L = _pool_head(name, "X, dA, dX, fh, fw, sh, sw, ph, pw, ninf, zero", _DIRECT_DOC.format(ties='"first"'),
                   NB, "dA")
    write = ["for h in range(ha, hb):", "    gr = Gi[h]", "    for w in range(wa, wb):",
             "        pos = (h - h0) * fw + (w - w0)"]
    write += _ind(_rep(NB, "gr[w, c0 + {k}] = d{k} if pos == q{k} else e{k}"), 8)
    return L + _over_windows(NB, ["Gi = dX[i]", "drow = dA[i, ho]"], ["d = drow[wo]"],
                             _rep(NB, "d{k} = d[c0 + {k}]", "e{k} = d{k} * zero") + _argmax_pass(NB) + write)


#: A gather's loop over input rows t = (i, h): the output rows [hoa, hob] whose windows
#: cover row h, and over the row's pixels w: the output columns
#: [woa, wob] covering w (from a table made once per kernel call: two floor divisions per
#: pixel cost the float32 gathers 5-9%) and the pixel's gradient ``g``.
_GATHER_ROW = ["    wlo = np.empty(W, dtype=np.int64)", "    whi = np.empty(W, dtype=np.int64)",
               "    for w in range(W):", "        wlo[w] = max(0, (w + pw - fw + sw) // sw)",
               "        whi[w] = min(Wo - 1, (w + pw) // sw)",
               "    for t in range(m * H):", "        i = t // H", "        h = t - i * H", "        hp = h + ph",
               "        hoa = max(0, (hp - fh + sh) // sh)", "        hob = min(Ho - 1, hp // sh)"]
_GATHER_COL = ["        for w in range(W):", "            woa = wlo[w]", "            wob = whi[w]",
               "            g = dX[i, h, w]"]


def pool_max_bwd_gather(name: str, NB: int) -> List[str]:
    """Max-pooling backward, ties "all", for overlapping windows, in one pass over X: the
    gather of ``pool_bwd`` (each input element sums the windows covering it, in (ho, wo)
    order) with each row of window maxima computed (``pool_max``'s register blocks and rule)
    when an input row first needs it, into a ring of ceil(fh/sh) + 1 rows, from input rows
    still in cache: no array of maxima written and read back, no second pass over X. With
    NB >= ``GATHER_REG_NB`` each pixel's sums are kept in registers (``_gather_reg``)."""
    # (the window loop's own h, w would overwrite the input row and column being gathered)
    window = _max_pass(NB, h="hh", w="ww") + _rep(NB, "o[c0 + {k}] = b{k}")
    return [
        "@numba.njit(**NJIT)",
        f"def {name}(X, dA, dX, fh, fw, sh, sw, ph, pw, ninf, zero):",
        '    """Max-pooling backward, ties "all", overlapping windows, one pass over X (see',
        f'    ``_nb_gen.pool_max_bwd_gather``). Channel blocks of {NB} for the maxima'
        f'{" and the gradient sums" if NB >= GATHER_REG_NB else ""} (needs C >= {NB})."""',
        "    m, H, W, C = X.shape",
        "    _, Ho, Wo, _ = dA.shape",
        f"    nb = (C + {NB - 1}) // {NB}",
        "    nr = (fh + sh - 1) // sh + 1",
        "    ring = np.empty((nr, Wo, C), dtype=X.dtype)",
        "    held = np.full(nr, -1, dtype=np.int64)",
        *_GATHER_ROW,
        "        Xi = X[i]",
        "        for ho in range(hoa, hob + 1):",
        "            slot = ho % nr",
        "            if held[slot] != i * Ho + ho:",
        "                held[slot] = i * Ho + ho",
        "                mrow = ring[slot]",
        "                h0 = ho * sh - ph",
        "                ha = max(h0, 0)",
        "                hb = min(h0 + fh, H)",
        "                for wo in range(Wo):",
        "                    w0 = wo * sw - pw",
        "                    wa = max(w0, 0)",
        "                    wb = min(w0 + fw, W)",
        "                    o = mrow[wo]",
        "                    for cb in range(nb):",
        f"                        c0 = {_shifted('cb', NB, 'C')}",
        *_ind(window, 24),
        *_GATHER_COL,
        "            x = Xi[h, w]",
        *_ind(_gather_reg(NB) if NB >= GATHER_REG_NB else _gather_row(), 12),
    ]


def _gather_row() -> List[str]:
    """dX[i, h, w] (``g``) summed over the windows covering it in (ho, wo) order, whole
    channel rows at a time (the loop vectoriser's job)."""
    return ["for c in range(C):",
            "    g[c] = zero",
            "for ho in range(hoa, hob + 1):",
            "    mrow = ring[ho % nr]",
            "    drow = dA[i, ho]",
            "    for wo in range(woa, wob + 1):",
            "        d = drow[wo]",
            "        mx = mrow[wo]",
            "        for c in range(C):",
            "            g[c] += d[c] if x[c] == mx[c] else d[c] * zero"]


def _gather_reg(NB: int, avg: bool = False) -> List[str]:
    """``_gather_row``'s sums (or with ``avg`` ``pool_bwd``'s average-pooling sums of
    dA / area), in the same order, in registers: NB channels at a time (shifted last
    block), each written once."""
    if avg:
        setup, per_window = [], []
        term = "d[c0 + {k}] / area"
    else:
        setup, per_window = ["x{k} = x[c0 + {k}]"], ["    mrow = ring[ho % nr]"]
        term = "d[c0 + {k}] if x{k} == mx[c0 + {k}] else d[c0 + {k}] * zero"
    return (["for cb in range(nb):", f"    c0 = {_shifted('cb', NB, 'C')}"]
            + _ind(_rep(NB, *setup, "a{k} = zero"), 4)
            + _ind(["for ho in range(hoa, hob + 1):", *per_window,
                    "    drow = dA[i, ho]",
                    "    for wo in range(woa, wob + 1):",
                    "        d = drow[wo]"]
                   + ([] if avg else ["        mx = mrow[wo]"])
                   + _ind(_rep(NB, "a{k} += " + term), 8)
                   + _rep(NB, "g[c0 + {k}] = a{k}"), 4))


def pool_avg_bwd_gather(name: str, NB: int) -> List[str]:
    """Average-pooling backward for overlapping windows, the gather of ``pool_bwd`` (mode 2:
    each input element sums dA / area of the windows covering it, in (ho, wo) order) with
    the sums in registers, NB channels at a time: the same bits, float32 p3s2 1.2x faster
    (float64 1.1x) than the whole-channel-row loops. Built for NB = ``GATHER_REG_NB`` only
    (narrower channels run ``pool_bwd``)."""
    return [
        "@numba.njit(**NJIT)",
        f"def {name}(dA, dX, fh, fw, sh, sw, ph, pw, area, zero):",
        '    """Average-pooling backward, overlapping windows: each input element sums dA / area of',
        f'    the windows covering it, in registers, channel blocks of {NB} (needs C >= {NB})."""',
        "    m, H, W, C = dX.shape",
        "    _, Ho, Wo, _ = dA.shape",
        f"    nb = (C + {NB - 1}) // {NB}",
        *_GATHER_ROW,
        *_GATHER_COL,
        *_ind(_gather_reg(NB, avg=True), 12),
    ]


def pool_bwd() -> List[str]:
    """The gather of pooling backward for the other overlapping cases (max with ties
    "first", average with C < ``GATHER_REG_NB``), whole channel rows at a time."""
    return [
        "@numba.njit(**NJIT)",
        "def pool_bwd(Idx, dA, dX, fh, fw, sh, sw, ph, pw, mode, area, zero):",
        '    """Gather form of pooling backward: each input element sums the windows covering it',
        "    in (ho, wo) order, so no two threads write one element.",
        "",
        '    mode 1: max, ties "first" (Idx = argmax positions); 2: average (each window gives',
        '    dA / area). (Max with ties "all" has its own kernel, ``pool_max_bwd_gather``; average',
        '    with C >= GATHER_REG_NB has ``pool_avg_bwd_gather``.)"""',
        "    m, H, W, C = dX.shape",
        "    _, Ho, Wo, _ = dA.shape",
        *_GATHER_ROW,
        *_GATHER_COL,
        "            for c in range(C):",
        "                g[c] = zero",
        "            for ho in range(hoa, hob + 1):",
        "                kh = hp - ho * sh",
        "                for wo in range(woa, wob + 1):",
        "                    kw = w + pw - wo * sw",
        "                    d = dA[i, ho, wo]",
        "                    if mode == 1:",
        "                        ix = Idx[i, ho, wo]",
        "                        pos = kh * fw + kw",
        "                        for c in range(C):",
        "                            g[c] += d[c] if ix[c] == pos else d[c] * zero",
        "                    else:",
        "                        for c in range(C):",
        "                            g[c] += d[c] / area",
    ]


#: One kernel per pooling mode (and tie rule), so that a call compiles only the code it runs.
POOL_KERNELS = (("pool_max", pool_max), ("pool_avg", pool_avg), ("pool_argmax", pool_argmax),
                ("pool_max_bwd_direct", pool_max_bwd_direct), ("pool_first_bwd_direct", pool_first_bwd_direct),
                ("pool_max_bwd_gather", pool_max_bwd_gather))


def pool_kernels() -> List[str]:
    """Every pooling kernel for every block width in ``POOL_NB``, the average-pooling
    register gather at ``GATHER_REG_NB`` and the whole-row gather ``pool_bwd`` (``chunked``)."""
    out = ["", "#: Channel block widths of the pooling kernels, widest first.", f"POOL_NB = {POOL_NB!r}",
           "#: Channel block width of the backward gathers that sum in registers.",
           f"GATHER_REG_NB = {GATHER_REG_NB!r}"]
    for NB in POOL_NB:
        for base, gen in POOL_KERNELS:
            out += ["", "", *chunked(gen(f"{base}_b{NB}", NB))]
    out += ["", "", *chunked(pool_avg_bwd_gather(f"pool_avg_bwd_gather_b{GATHER_REG_NB}", GATHER_REG_NB))]
    out += ["", "", *chunked(pool_bwd())]
    return out


# ------------------------------------------------------ simple (non-tiled) kernels

SIMPLE = '''
@numba.njit(**NJIT)
def pad_copy(X, out, ph, pw, value):
    """out = X padded by (ph, pw) with ``value``; out may be bigger behind (extra rows/cols get value)."""
    m, H, W, C = X.shape
    _, Hp, Wp, _ = out.shape
    for t in range(m * Hp):
        i = t // Hp
        hp = t - i * Hp
        h = hp - ph
        o = out[i, hp]
        if h < 0 or h >= H:
            for w in range(Wp):
                for c in range(C):
                    o[w, c] = value
        else:
            x = X[i, h]
            for w in range(pw):
                for c in range(C):
                    o[w, c] = value
            for w in range(W):
                for c in range(C):
                    o[pw + w, c] = x[w, c]
            for w in range(pw + W, Wp):
                for c in range(C):
                    o[w, c] = value


@numba.njit(**NJIT)
def sum_parts(part, out):
    """out = part[0] + part[1] + ... (in that order) over flat arrays."""
    n = out.shape[0]
    nch = part.shape[0]
    for q in range(n):
        s = part[0, q]
        for c in range(1, nch):
            s += part[c, q]
        out[q] = s


@numba.njit(**NJIT)
def pool_avg_bwd_direct(dA, dX, fh, fw, sh, sw, ph, pw, area):
    """Average-pooling backward for non-overlapping windows (sh >= fh and sw >= fw): each
    window writes dA / area to its positions clipped to the input (the caller zeroes dX
    first where no window reaches)."""
    m, H, W, C = dX.shape
    _, Ho, Wo, _ = dA.shape
    for t in range(m * Ho):
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
                        g[c] = d[c] / area


@numba.njit(**NJIT)
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


@numba.njit(**NJIT)
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


@numba.njit(**NJIT)
def relu(x, out):
    for q in range(x.shape[0]):
        v = x[q]
        out[q] = v if (v > 0 or v != v) else 0


@numba.njit(**NJIT)
def relu_backward(dA, Z, out):
    for q in range(dA.shape[0]):
        out[q] = 0 if Z[q] <= 0 else dA[q]


@numba.njit(**NJIT)
def sigmoid(x, out, one):
    for q in range(x.shape[0]):
        out[q] = one / (one + np.exp(-x[q]))


@numba.njit(**NJIT)
def sigmoid_backward(dA, Z, out, one):
    for q in range(dA.shape[0]):
        s = one / (one + np.exp(-Z[q]))
        out[q] = dA[q] * s * (one - s)
'''


#: Kernels of ``SIMPLE`` that run whole, in the calling thread (the smallest convolutions);
#: the others are ``chunked``.
SERIAL_ONLY = ("conv_fwd_small", "conv_bwd_plain")


def simple_kernels() -> List[str]:
    """Every ``SIMPLE`` kernel, ``chunked`` except the ``SERIAL_ONLY`` ones."""
    out: List[str] = []
    for chunk in SIMPLE.strip("\n").split("\n\n\n"):
        lines = chunk.split("\n")
        base = re.match(r"^def (\w+)\(", lines[1]).group(1)
        out += ["", "", *(lines if base in SERIAL_ONLY else chunked(lines))]
    return out


# ------------------------------------------- the im2col backend's short window rows

#: (fh, fw*C) windows whose im2col column build and col2im get kernels of their own with
#: each pixel's moves spelled out (written for square 3x3, 5x5 and 7x7 windows on 1 and 3
#: channels, the first layers of image networks; chosen by (fh, fw*C), so a 3x1 window on
#: 3 channels takes the (3, 3) one too). The generic block-copy kernel (``_cols``) moves a
#: window row as whole 16-value blocks that overlap the next; spelled out, LLVM loads the
#: fh*fw*C values and stores them as one contiguous run: cat_c1's columns (3x3 on RGB)
#: 1.5x faster in float32, 1.6x in float64.
PX_SHAPES = ((3, 3), (3, 9), (5, 5), (5, 15), (7, 7), (7, 21))


def im2col_px(fh: int, run: int) -> List[str]:
    """The column build of ``_cols._im2col_spill_nb`` for fh x (run // C) windows on C
    channels (any C dividing run), with one pixel's fh * run moves spelled out: all loads
    first, then the stores, so LLVM packs them into vectors (no aliasing question)."""
    kd = fh * run
    moves = [f"s{i} = S[{i} * SW + so:{i} * SW + so + {run}]" for i in range(fh)]
    moves += [f"t{i * run + k} = s{i}[{k}]" for i in range(fh) for k in range(run)]
    moves += [f"d = o1[do:do + {kd}]"] + [f"d[{j}] = t{j}" for j in range(kd)]
    return [
        "@numba.njit(**NJIT)",
        f"def im2col_{fh}x{run}(X3, C, n0, h0, w0, nb, ho, wo, sh, sw, ph, pw, value, out, extra):",
        f'    """_cols._im2col_spill_nb for fh = {fh}, fw * C = {run} (``out``: {kd} columns, or one',
        '    more set to ``extra``)."""',
        f"    fw = {run} // C",
        "    W = X3.shape[2] // C",
        "    L = out.shape[1]",
        "    o1 = out.reshape(out.size)",
        "    ncol = (wo - 1) * sw + fw",
        "    left = w0 * sw - pw",
        "    SW = ncol * C",
        f"    S = np.empty({fh} * SW, dtype=out.dtype)",
        "    jlo, jhi = _span(left, ncol, W)",
        f"    one = L == {kd} + 1",
        "    r = 0",
        "    for n in range(nb):",
        "        for h in range(ho):",
        f"            _fill_rows(X3, n0 + n, (h0 + h) * sh - ph, {fh}, C, left, jlo, jhi, value, S, SW)",
        "            for w in range(wo):",
        "                so = w * sw * C",
        "                do = (r + w) * L",
        *_ind(moves, 16),
        "                if one:",
        f"                    o1[do + {kd}] = extra",
        "            r += wo",
    ]


def col2im_px(fh: int, run: int) -> List[str]:
    """``_cols._col2im_spill_nb`` for fh x (run // C) windows on C channels, each pixel's
    fh * run adds spelled out: the pixel's column values loaded first, then each window row
    added into the scratch. Pixels whose window rows overlap are taken apart (P pixels
    apart, in P passes), so an add never waits on the store of the one before it."""
    kd = fh * run
    adds = ["g = c1[do:do + %d]" % kd] + [f"t{j} = g[{j}]" for j in range(kd)]
    for i in range(fh):
        adds.append(f"s = S[{i} * SW + so:{i} * SW + so + {run}]")
        adds += [f"s[{k}] += t{i * run + k}" for k in range(run)]
    return [
        "@numba.njit(**NJIT)",
        f"def col2im_{fh}x{run}(cols, dX3, C, n0, h0, w0, nb, ho, wo, sh, sw, ph, pw):",
        f'    """_cols._col2im_spill_nb for fh = {fh}, fw * C = {run} (``cols``: C-contiguous, {kd} columns)."""',
        f"    fw = {run} // C",
        "    W = dX3.shape[2] // C",
        "    c1 = cols.reshape(cols.size)",
        "    ncol = (wo - 1) * sw + fw",
        "    left = w0 * sw - pw",
        "    SW = ncol * C",
        f"    S = np.empty({fh} * SW, dtype=dX3.dtype)",
        "    jlo, jhi = _span(left, ncol, W)",
        f"    P = min(wo, ({run} + sw * C - 1) // (sw * C))  # pixels whose window rows may overlap",
        "    r = 0",
        "    for n in range(nb):",
        "        for h in range(ho):",
        "            top = (h0 + h) * sh - ph",
        "            S[:] = 0",
        "            for q in range(P):",
        "                for w in range(q, wo, P):",
        "                    so = w * sw * C",
        f"                    do = (r + w) * {kd}",
        *_ind(adds, 20),
        f"            _add_rows(S, SW, dX3, n0 + n, top, {fh}, C, left, jlo, jhi)",
        "            r += wo",
    ]


#: The ``_cols`` helpers the generated kernels call, copied into ``_cols_px`` rather than
#: imported: Numba's on-disk cache checks only the file of the kernel it compiled, so a
#: kernel calling into another file would keep running a stale compiled copy of a helper
#: edited there (the up-to-date test makes every edit regenerate ``_cols_px``).
COLS_HELPERS = ("_span", "_fill_rows", "_add_rows")


def _cols_helpers() -> List[str]:
    src = open(os.path.join(_HERE, "_cols.py")).read()
    lines = src.split("\n")
    found = {}
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.FunctionDef) and node.name in COLS_HELPERS:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            text = textwrap.dedent("\n".join(lines[first - 1:node.end_lineno]))
            found[node.name] = text.replace("@_numba.njit(**_NJIT)", "@numba.njit(**NJIT)").replace(
                "@_numba.njit(", "@numba.njit(").split("\n")
    out: List[str] = []
    for name in COLS_HELPERS:
        out += ["", *found[name], ""]
    return out


def cols_px_module() -> List[str]:
    out = ['"""GENERATED by fastnn/backends/_nb_gen.py -- do not edit; run',
           "``python fastnn/backends/_nb_gen.py`` to regenerate.",
           "",
           "The im2col backend's column builds and col2im for the short window rows of ``PX_SHAPES``,",
           "each pixel's moves spelled out (see ``im2col_px`` and ``col2im_px`` there). Serial",
           "kernels, like ``_cols``'s.",
           '"""',
           "# flake8: noqa",
           "import numba",
           "import numpy as np",
           "",
           "from .._numba_config import NJIT",
           "",
           "# ``_cols``'s helpers, copied (see ``COLS_HELPERS`` there)"]
    out += _cols_helpers()
    for fh, run in PX_SHAPES:
        out += ["", *im2col_px(fh, run), "", "", *col2im_px(fh, run), ""]
    for name in ("im2col", "col2im"):
        out += ["", "#: (fh, fw*C) -> kernel", f"{name.upper()}_PX = {{",
                *[f"    ({fh}, {run}): {name}_{fh}x{run}," for fh, run in PX_SHAPES], "}"]
    return out


HEADER = [
    '"""GENERATED by fastnn/backends/_nb_gen.py -- do not edit; run',
    "``python fastnn/backends/_nb_gen.py`` to regenerate.",
    "",
    "{what}. Every kernel but the plain small-convolution ones takes",
    "``(..., chunk, nchunks)`` and runs that chunk of its outer loop (see ``chunked`` there).",
    '"""',
    "# flake8: noqa",
    "import numba",
    "import numpy as np",
    "",
    "from .._numba_config import FASTMATH_CONV, NJIT",
    "",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
#: Generated module files (separate files so that editing one does not invalidate the
#: on-disk cache of the other: Numba keys the cache on the source file's timestamp).
FILES = {
    "_nb_conv.py": "The numba backend's register-tiled convolution kernels",
    "_nb_misc.py": "The numba backend's padding, pooling, activation and small (plain) convolution kernels",
    "_cols_px.py": "The im2col backend's column builds for short window rows",
}


def generate() -> dict:
    texts = {}
    for fname, what in FILES.items():
        parts = [h.replace("{what}", what) for h in HEADER]
        if fname == "_cols_px.py":
            texts[fname] = "\n".join(cols_px_module()) + "\n"
            continue
        if fname == "_nb_misc.py":
            texts[fname] = "\n".join(parts + simple_kernels() + pool_kernels()) + "\n"
            continue
        # Convolution: the tiled kernels (small convolutions use the plain kernels of
        # _nb_misc instead).
        parts += ["", "#: Forward tile shapes (P pixels, T channels) per dtype, best first.",
                  f"FWD_TILES = {FWD_TILES!r}",
                  "#: Channel tile widths of the dW kernels ``conv_dW_*_t{T}``.",
                  f"BWD_T = {BWD_T!r}",
                  "#: dW tile rows (input columns j) per dtype: part's fw*C rows are padded to a multiple.",
                  f"DW_J = {DW_J!r}",
                  "#: SIMD lanes of the few-channel dA_prev kernels ``conv_dA_*_c{C}``.",
                  f"DA_KVEC_L = {DA_KVEC_L!r}", ""]
        for dt in DW_J:
            for P, T in FWD_TILES[dt]:
                parts.append("")
                parts += chunked(conv_fwd(f"conv_fwd_{dt}_p{P}t{T}", P, T))
                parts.append("")
            for C in DA_KVEC_P:
                parts.append("")
                parts += chunked(conv_dA_kvec(f"conv_dA_{dt}_c{C}", C, DA_KVEC_L[dt]))
                parts.append("")
            for T in BWD_T[dt]:
                parts.append("")
                parts += chunked(conv_dW(f"conv_dW_{dt}_t{T}", DW_J[dt], T))
                parts.append("")
        texts[fname] = "\n".join(parts) + "\n"
    return texts


def main() -> None:
    for fname, text in generate().items():
        path = os.path.join(_HERE, fname)
        old = open(path).read() if os.path.exists(path) else None
        if old != text:  # keep the timestamp (and Numba's cache) of unchanged files
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {path} ({text.count(chr(10))} lines)")


if __name__ == "__main__":
    main()
