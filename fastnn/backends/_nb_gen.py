"""Generator of :mod:`fastnn.backends._nb_conv` and :mod:`~fastnn.backends._nb_misc` (the numba backend's kernels).

The convolution kernels keep a register tile of output values in named scalar
accumulators (``a{p}_{k}``), which LLVM's SLP vectoriser packs into SIMD registers.
Writing those tiles by hand is error-prone, so this module writes them; the result is a
real module file (Numba's on-disk cache needs one). The simple kernels are emitted
twice, a parallel (``prange``) build ``*_par`` and a serial build ``*_ser`` with the same
arithmetic, so a call may take either and get the same bits. The big ones (tiled
convolution, pooling) are one serial row helper ``_*_row`` and thin shells over it
(``row_split``), which cuts their cold compile time by about a third to a half.

Regenerate after editing: ``python fastnn/backends/_nb_gen.py`` (a test checks that the
committed file is up to date).
"""

from __future__ import annotations

import os
import re
from typing import List

#: Tile shapes per dtype for dA and dW: P input pixels x T input channels (dA) and
#: J input columns x T output channels (dW); P*T accumulators fill 8 AVX2 registers.
TILES = {"f64": dict(P=4, T=8, J=4), "f32": dict(P=4, T=16, J=4)}



def _ind(lines: List[str], n: int) -> List[str]:
    return [" " * n + s if s else s for s in lines]


def _width_loop(var: str, limit: str, T: int, block) -> List[str]:
    """``var`` runs over [0, limit) in tiles of width T, then 4, then 1 (fewer tile shapes
    keep the compile time down)."""
    out = [f"{var} = 0"]
    for w in (T, 4, 1) if T > 4 else (T, 1):
        out += [f"while {var} + {w} <= {limit}:"]
        out += _ind(block(w), 4)
        out += [f"    {var} += {w}"]
    return out


# ------------------------------------------------- parallel shells over row helpers

_LOOP = re.compile(r"^    for (\w+) in (?:prange|range)\((.*)\):$")


def row_split(lines: List[str], shells=(("par", "prange"),)) -> List[str]:
    """Split a generated kernel whose body is one top-level loop ``for t in prange(n)`` into
    a serial ``@njit`` helper ``_<base>_row(<args>, t)`` (the loop body) and thin shells
    (``<base>_par`` looping with ``prange``, and ``<base>_ser`` with ``range`` when asked)
    that call it. Same arithmetic, same order; the point is compile time: Numba's parfor
    passes then see a two-line loop instead of the whole unrolled body (a third to a half
    less cold compile time for the big kernels), and both shells share one compiled helper.
    The loop index is passed as ``np.int64`` (a ``prange`` index is unsigned inside the
    parfor, which would compile the helper a second time)."""
    deco, defline = lines[0], lines[1]
    name, args = re.match(r"^def (\w+)\((.*)\):$", defline).groups()
    base = re.sub(r"_(par|ser)$", "", name)
    at = max(k for k, s in enumerate(lines) if _LOOP.match(s))
    var, n = _LOOP.match(lines[at]).groups()
    setup, body = lines[2:at], lines[at + 1:]
    doc = 0  # the docstring's length in lines: the shells keep it, the helper points to them
    if setup and setup[0].strip().startswith('"""'):
        doc = 1 if setup[0].count('"""') == 2 else next(k for k, s in enumerate(setup) if k and '"""' in s) + 1
    helper = f"_{base}_row"
    out = [deco.replace("NJIT_PARALLEL", "NJIT"), f"def {helper}({args}, {var}):",
           f'    """Iteration {var} of ``{base}_par``\'s loop."""', *setup[doc:]]
    out += [s[4:] if s else s for s in body]
    for sfx, rng in shells:
        out += ["", "", deco.replace("NJIT_PARALLEL", "NJIT_PARALLEL" if rng == "prange" else "NJIT"),
                f"def {base}_{sfx}({args}):", *setup, f"    for {var} in {rng}({n}):",
                f"        {helper}({args}, np.int64({var}))"]
    return out


# ------------------------------------------------------------------ conv forward

#: Forward tile shapes (P output pixels x T output channels) per dtype, best first; the
#: wrapper takes the first with T <= K and P <= Wo. P*T accumulators fill 8 AVX2
#: registers for the main shapes.
FWD_TILES = {
    "f64": ((4, 8), (8, 4), (4, 4), (1, 8), (1, 4), (4, 1), (1, 1)),
    "f32": ((4, 16), (8, 8), (4, 8), (8, 4), (4, 4), (1, 16), (1, 8), (1, 4), (4, 1), (1, 1)),
}


def conv_fwd(name: str, P: int, T: int, rng: str) -> List[str]:
    """One register tile, no tails: the last pixel block and the last channel block are
    shifted back to end at Wo and K (overlapping the block before, whose values are
    recomputed with the same arithmetic, hence the same bits). Every hot index is a loop
    variable plus a constant on a view sliced outside the loop, so Numba emits no
    negative-index wraparound code in the inner loop."""
    L = [
        f"@numba.njit(fastmath=FASTMATH_CONV, **{'NJIT_PARALLEL' if rng == 'prange' else 'NJIT'})",
        f"def {name}(Xr, Wp, bp, Z, sh, sw, C):",
        f'    """Z[i, ho, wo, k0 + k] = bp[kb, k] + sum over (kh, j) of Xr[i, ho*sh + kh, wo*sw*C + j] * Wp[kb, kh, j, k]',
        f"    with k0 = min(kb*{T}, K-{T}): Wp holds W's output channels in blocks of {T} (see",
        f'    ``_pack_channels``). Needs K >= {T} and Wo >= {P}."""',
        "    m, Ho, Wo, K = Z.shape",
        "    nkb, fh, Lr, _ = Wp.shape",
        f"    nwb = (Wo + {P - 1}) // {P}",
        "    xs = sw * C",
        f"    for t in {rng}(m * Ho):",
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


# ---------------------------------------------------------------- conv dA_prev


def _dA_tile(P: int, T: int) -> List[str]:
    L = []
    for p in range(P):
        for c in range(T):
            L.append(f"a{p}_{c} = zero")
    L += [
        "wq = wfirst + n * sw",
        "for kh in range(fh):",
        "    dh = hp - kh",
        "    if dh % sh != 0:",
        "        continue",
        "    zr = Zr[i, dh // sh + plh]",
        "    for kw in range(rw, fw, sw):",
        "        wt = WT[kh, kw]",
        "        zb = (wq + pw - kw) // sw + plw",
        "        for k in range(K):",
    ]
    # Per-dimension indices: the loop-invariant ones (zb + p, c0 + c) are hoisted with
    # their wraparound checks, the varying one (k) is a loop variable.
    for c in range(T):
        L.append(f"            w{c} = wt[k, c0 + {c}]")
    for p in range(P):
        L.append(f"            d{p} = zr[zb + {p}, k]")
    for p in range(P):
        for c in range(T):
            L.append(f"            a{p}_{c} += d{p} * w{c}")
    for p in range(P):
        for c in range(T):
            L.append(f"dA[i, h, wq + {p} * sw, c0 + {c}] = a{p}_{c}")
    return L


def _dA_pixels(P: int, tile) -> List[str]:
    """The pixels n of one row's stride phase in tiles of P, then 1 (``tile(P)`` lines)."""
    L = ["n = 0", f"while n + {P} <= npix:"]
    L += _ind(tile(P), 4)
    L += [f"    n += {P}", "while n < npix:"]
    L += _ind(tile(1), 4)
    L += ["    n += 1"]
    return L


def _dA_rows(rng: str, per_row: List[str]) -> List[str]:
    """The loop over rows (i, h) of dA and their stride phases rw, down to ``npix``; the
    ``per_row`` lines run once per row."""
    return [
        f"    for t in {rng}(m * H):",
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


def _dA_cblock(P: int):
    return lambda T: _dA_pixels(P, lambda q: _dA_tile(q, T))


def conv_dA(name: str, P: int, T: int, rng: str) -> List[str]:
    L = [
        f"@numba.njit(fastmath=FASTMATH_CONV, **{'NJIT_PARALLEL' if rng == 'prange' else 'NJIT'})",
        f"def {name}(Zr, WT, dA, sh, sw, ph, pw, plh, plw, zero):",
        '    """dA[i, h, w, c] = sum over windows covering (h, w) of dZ * W, as a gather.',
        "",
        "    Zr is dZ zero-padded by (plh, plw) rows/columns in front (and enough behind),",
        "    (m, Hz, Wz, K); WT is W transposed to (fh, fw, K, C). Pixels of one",
        "    row are taken by stride phase rw = (w + pw) % sw so one tile shares its kw set.",
        '    """',
        "    m, H, W, C = dA.shape",
        "    fh, fw, K, _ = WT.shape",
    ]
    L += _dA_rows(rng, [])
    L += _ind(_width_loop("c0", "C", T, _dA_cblock(P)), 12)
    return L


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
        out.append(f"        z{p} = zr[zb + {p}]")
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
    for p in range(P):
        out.append(f"g = dA[i, h, wq + {p} * sw]")
        for c in range(C):
            terms = [f"buf[{p}, {c}, {l}]" for l in range(L)]
            while len(terms) > 1:  # pairwise: a fixed order
                terms = [f"({terms[q]} + {terms[q + 1]})" if q + 1 < len(terms) else terms[q]
                         for q in range(0, len(terms), 2)]
            out.append(f"g[{c}] = {terms[0]}")
    return out


def conv_dA_kvec(name: str, C: int, L: int, rng: str) -> List[str]:
    P = DA_KVEC_P[C]
    out = [
        f"@numba.njit(fastmath=FASTMATH_CONV, **{'NJIT_PARALLEL' if rng == 'prange' else 'NJIT'})",
        f"def {name}(Zr, Wt, dA, sh, sw, ph, pw, plh, plw, zero):",
        f'    """dA_prev for C = {C} input channels, as ``conv_dA`` (pixels by stride phase) but',
        f"    with the sum over k in {L} lanes: Zr is padded dZ (m, Hz, Wz, K'/{L}, {L}) and Wt is W",
        f"    (fh, fw, C, K'/{L}, {L}), both zero-filled from K to K' (a multiple of {L}).",
        '    """',
        "    m, H, W, _ = dA.shape",
        "    fh, fw, _, nkl, _ = Wt.shape",
    ]
    out += _dA_rows(rng, [f"buf = np.empty(({P}, {C}, {L}), dtype=dA.dtype)"])
    out += _ind(_dA_pixels(P, lambda q: _dA_kvec_tile(q, C, L)), 12)
    return out


# --------------------------------------------------------------------- conv dW


def _dW_tile(J: int, T: int) -> List[str]:
    L = []
    for q in range(J):
        for k in range(T):
            L.append(f"a{q}_{k} = pk[j0 + {q}, k0 + {k}]")
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
            L.append(f"pk[j0 + {q}, k0 + {k}] = a{q}_{k}")
    return L


def _dW_kblock(J: int):
    def block(T: int) -> List[str]:
        L = ["j0 = 0", f"while j0 + {J} <= Lr:"]
        L += _ind(_dW_tile(J, T), 4)
        L += [f"    j0 += {J}", "while j0 < Lr:"]
        L += _ind(_dW_tile(1, T), 4)
        L += ["    j0 += 1"]
        return L
    return block


def conv_dW(name: str, J: int, T: int, rng: str) -> List[str]:
    L = [
        f"@numba.njit(fastmath=FASTMATH_CONV, **{'NJIT_PARALLEL' if rng == 'prange' else 'NJIT'})",
        f"def {name}(Xs, dZ, part, pdb, sh, ja, jb):",
        '    """Per-chunk partial dW and db: chunk c sums rows [c*R//n, (c+1)*R//n) of the',
        "    R = m*Ho output rows into part[c] (fh, fw*C, K) and pdb[c] (K,). Deterministic",
        "    for a fixed chunk count whichever build runs it. Xs is the padded input with",
        "    each row cut into pieces of one stride, (m, Hp, Wp/sw, sw*C); dZ is (m, Ho, Wo, K);",
        "    (ja[j], jb[j]) = divmod(j, sw*C) for j < fw*C.",
        '    """',
        "    nch, fh, Lr, K = part.shape",
        "    m, Ho, Wo, _ = dZ.shape",
        "    R = m * Ho",
        f"    for c in {rng}(nch):",
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
    L += _ind(_width_loop("k0", "K", T, _dW_kblock(J)), 16)
    return L


# ------------------------------------------------------ simple (non-tiled) kernels

SIMPLE = '''
@numba.njit(**{opts})
def pad_copy_{sfx}(X, out, ph, pw, value):
    """out = X padded by (ph, pw) with ``value``; out may be bigger behind (extra rows/cols get value)."""
    m, H, W, C = X.shape
    _, Hp, Wp, _ = out.shape
    for t in {rng}(m * Hp):
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


@numba.njit(**{opts})
def sum_parts_{sfx}(part, out):
    """out = part[0] + part[1] + ... (in that order) over flat arrays."""
    n = out.shape[0]
    nch = part.shape[0]
    for q in {rng}(n):
        s = part[0, q]
        for c in range(1, nch):
            s += part[c, q]
        out[q] = s


@numba.njit(**{opts})
def pool_fwd_{sfx}(X, Out, fh, fw, sh, sw, ph, pw, is_max, area, ninf, zero):
    """Max (NaN-propagating, pads are -inf) or average (pads count as zeros) pooling."""
    m, H, W, C = X.shape
    _, Ho, Wo, _ = Out.shape
    for t in {rng}(m * Ho):
        i = t // Ho
        ho = t - i * Ho
        h0 = ho * sh - ph
        ha = max(h0, 0)
        hb = min(h0 + fh, H)
        for wo in range(Wo):
            w0 = wo * sw - pw
            wa = max(w0, 0)
            wb = min(w0 + fw, W)
            o = Out[i, ho, wo]
            if is_max:
                # 8 channels at a time in registers (a select on memory becomes a slow
                # masked store); NaN propagates: a NaN v is taken, a NaN m is kept.
                c0 = 0
                while c0 + 8 <= C:
                    m0 = ninf
                    m1 = ninf
                    m2 = ninf
                    m3 = ninf
                    m4 = ninf
                    m5 = ninf
                    m6 = ninf
                    m7 = ninf
                    for h in range(ha, hb):
                        for w in range(wa, wb):
                            x = X[i, h, w]
                            v0 = x[c0 + 0]
                            m0 = v0 if ((v0 > m0) | (v0 != v0)) else m0
                            v1 = x[c0 + 1]
                            m1 = v1 if ((v1 > m1) | (v1 != v1)) else m1
                            v2 = x[c0 + 2]
                            m2 = v2 if ((v2 > m2) | (v2 != v2)) else m2
                            v3 = x[c0 + 3]
                            m3 = v3 if ((v3 > m3) | (v3 != v3)) else m3
                            v4 = x[c0 + 4]
                            m4 = v4 if ((v4 > m4) | (v4 != v4)) else m4
                            v5 = x[c0 + 5]
                            m5 = v5 if ((v5 > m5) | (v5 != v5)) else m5
                            v6 = x[c0 + 6]
                            m6 = v6 if ((v6 > m6) | (v6 != v6)) else m6
                            v7 = x[c0 + 7]
                            m7 = v7 if ((v7 > m7) | (v7 != v7)) else m7
                    o[c0 + 0] = m0
                    o[c0 + 1] = m1
                    o[c0 + 2] = m2
                    o[c0 + 3] = m3
                    o[c0 + 4] = m4
                    o[c0 + 5] = m5
                    o[c0 + 6] = m6
                    o[c0 + 7] = m7
                    c0 += 8
                for c in range(c0, C):
                    mc = ninf
                    for h in range(ha, hb):
                        for w in range(wa, wb):
                            v = X[i, h, w, c]
                            mc = v if ((v > mc) | (v != v)) else mc
                    o[c] = mc
            else:
                c0 = 0
                while c0 + 8 <= C:
                    s0 = zero
                    s1 = zero
                    s2 = zero
                    s3 = zero
                    s4 = zero
                    s5 = zero
                    s6 = zero
                    s7 = zero
                    for h in range(ha, hb):
                        for w in range(wa, wb):
                            x = X[i, h, w]
                            s0 += x[c0 + 0]
                            s1 += x[c0 + 1]
                            s2 += x[c0 + 2]
                            s3 += x[c0 + 3]
                            s4 += x[c0 + 4]
                            s5 += x[c0 + 5]
                            s6 += x[c0 + 6]
                            s7 += x[c0 + 7]
                    o[c0 + 0] = s0 / area
                    o[c0 + 1] = s1 / area
                    o[c0 + 2] = s2 / area
                    o[c0 + 3] = s3 / area
                    o[c0 + 4] = s4 / area
                    o[c0 + 5] = s5 / area
                    o[c0 + 6] = s6 / area
                    o[c0 + 7] = s7 / area
                    c0 += 8
                for c in range(c0, C):
                    sc = zero
                    for h in range(ha, hb):
                        for w in range(wa, wb):
                            sc += X[i, h, w, c]
                    o[c] = sc / area


@numba.njit(**{opts})
def pool_argmax_{sfx}(X, Idx, fh, fw, sh, sw, ph, pw, ninf):
    """Idx[i, ho, wo, c] = np.argmax of the (-inf padded) window, row-major (first max, first NaN)."""
    m, H, W, C = X.shape
    _, Ho, Wo, _ = Idx.shape
    for t in {rng}(m * Ho):
        i = t // Ho
        ho = t - i * Ho
        h0 = ho * sh - ph
        for wo in range(Wo):
            w0 = wo * sw - pw
            ix = Idx[i, ho, wo]
            # a pad (-inf) never beats the running best (>= -inf), so pads are skipped;
            # 8 channels at a time in registers, then the rest one by one.
            c0 = 0
            while c0 + 8 <= C:
                b0 = ninf
                i0 = 0
                b1 = ninf
                i1 = 0
                b2 = ninf
                i2 = 0
                b3 = ninf
                i3 = 0
                b4 = ninf
                i4 = 0
                b5 = ninf
                i5 = 0
                b6 = ninf
                i6 = 0
                b7 = ninf
                i7 = 0
                for kh in range(fh):
                    h = h0 + kh
                    if h < 0 or h >= H:
                        continue
                    for kw in range(fw):
                        w = w0 + kw
                        if w < 0 or w >= W:
                            continue
                        pos = kh * fw + kw
                        x = X[i, h, w]
                        v0 = x[c0 + 0]
                        t0 = (b0 == b0) & ((v0 > b0) | (v0 != v0))
                        b0 = v0 if t0 else b0
                        i0 = pos if t0 else i0
                        v1 = x[c0 + 1]
                        t1 = (b1 == b1) & ((v1 > b1) | (v1 != v1))
                        b1 = v1 if t1 else b1
                        i1 = pos if t1 else i1
                        v2 = x[c0 + 2]
                        t2 = (b2 == b2) & ((v2 > b2) | (v2 != v2))
                        b2 = v2 if t2 else b2
                        i2 = pos if t2 else i2
                        v3 = x[c0 + 3]
                        t3 = (b3 == b3) & ((v3 > b3) | (v3 != v3))
                        b3 = v3 if t3 else b3
                        i3 = pos if t3 else i3
                        v4 = x[c0 + 4]
                        t4 = (b4 == b4) & ((v4 > b4) | (v4 != v4))
                        b4 = v4 if t4 else b4
                        i4 = pos if t4 else i4
                        v5 = x[c0 + 5]
                        t5 = (b5 == b5) & ((v5 > b5) | (v5 != v5))
                        b5 = v5 if t5 else b5
                        i5 = pos if t5 else i5
                        v6 = x[c0 + 6]
                        t6 = (b6 == b6) & ((v6 > b6) | (v6 != v6))
                        b6 = v6 if t6 else b6
                        i6 = pos if t6 else i6
                        v7 = x[c0 + 7]
                        t7 = (b7 == b7) & ((v7 > b7) | (v7 != v7))
                        b7 = v7 if t7 else b7
                        i7 = pos if t7 else i7
                ix[c0 + 0] = i0
                ix[c0 + 1] = i1
                ix[c0 + 2] = i2
                ix[c0 + 3] = i3
                ix[c0 + 4] = i4
                ix[c0 + 5] = i5
                ix[c0 + 6] = i6
                ix[c0 + 7] = i7
                c0 += 8
            for c in range(c0, C):
                bc = ninf
                ic = 0
                for kh in range(fh):
                    h = h0 + kh
                    if h < 0 or h >= H:
                        continue
                    for kw in range(fw):
                        w = w0 + kw
                        if w < 0 or w >= W:
                            continue
                        v = X[i, h, w, c]
                        tk = (bc == bc) & ((v > bc) | (v != v))
                        bc = v if tk else bc
                        ic = kh * fw + kw if tk else ic
                ix[c] = ic


@numba.njit(**{opts})
def pool_bwd_{sfx}(X, M, Idx, dA, dX, fh, fw, sh, sw, ph, pw, mode, area, zero):
    """Gather form of pooling backward: each input element sums the windows covering it
    in (ho, wo) order, so no two threads write one element.

    mode 0: max, ties "all" (M = window maxima); 1: max, ties "first" (Idx = argmax
    positions); 2: average (each window gives dA / area)."""
    m, H, W, C = X.shape
    _, Ho, Wo, _ = dA.shape
    for t in {rng}(m * H):
        i = t // H
        h = t - i * H
        hp = h + ph
        hoa = max(0, (hp - fh + sh) // sh)
        hob = min(Ho - 1, hp // sh)
        for w in range(W):
            wp = w + pw
            woa = max(0, (wp - fw + sw) // sw)
            wob = min(Wo - 1, wp // sw)
            g = dX[i, h, w]
            for c in range(C):
                g[c] = zero
            x = X[i, h, w]
            for ho in range(hoa, hob + 1):
                kh = hp - ho * sh
                for wo in range(woa, wob + 1):
                    kw = wp - wo * sw
                    d = dA[i, ho, wo]
                    if mode == 0:
                        mx = M[i, ho, wo]
                        for c in range(C):
                            g[c] += d[c] if x[c] == mx[c] else d[c] * zero
                    elif mode == 1:
                        ix = Idx[i, ho, wo]
                        pos = kh * fw + kw
                        for c in range(C):
                            g[c] += d[c] if ix[c] == pos else d[c] * zero
                    else:
                        for c in range(C):
                            g[c] += d[c] / area


@numba.njit(**{opts})
def pool_bwd_direct_{sfx}(X, dA, dX, fh, fw, sh, sw, ph, pw, mode, area, ninf, zero):
    """Pooling backward for non-overlapping windows (sh >= fh and sw >= fw): each window
    writes its own positions (the caller zeroes dX first where no window reaches).
    mode 0: max, ties "all"; 1: max, ties "first"; 2: average. Windows are clipped to the
    input (range bounds, no per-position checks) and indexed per dimension on row views."""
    m, H, W, C = X.shape
    _, Ho, Wo, _ = dA.shape
    nb = C // 8
    for t in {rng}(m * Ho):
        i = t // Ho
        ho = t - i * Ho
        h0 = ho * sh - ph
        ha = max(h0, 0)
        hb = min(h0 + fh, H)
        Xi = X[i]
        Gi = dX[i]
        drow = dA[i, ho]
        for wo in range(Wo):
            w0 = wo * sw - pw
            wa = max(w0, 0)
            wb = min(w0 + fw, W)
            d = drow[wo]
            if mode == 2:
                for h in range(ha, hb):
                    for w in range(wa, wb):
                        g = Gi[h, w]
                        for c in range(C):
                            g[c] = d[c] / area
                continue
            for cb in range(nb):
                c0 = cb * 8
                d0 = d[c0 + 0]
                d1 = d[c0 + 1]
                d2 = d[c0 + 2]
                d3 = d[c0 + 3]
                d4 = d[c0 + 4]
                d5 = d[c0 + 5]
                d6 = d[c0 + 6]
                d7 = d[c0 + 7]
                b0 = ninf
                b1 = ninf
                b2 = ninf
                b3 = ninf
                b4 = ninf
                b5 = ninf
                b6 = ninf
                b7 = ninf
                if mode == 0:
                    # the window maxima (NaN-propagating), then dA where x equals them
                    for h in range(ha, hb):
                        xr = Xi[h]
                        for w in range(wa, wb):
                            v0 = xr[w, c0 + 0]
                            b0 = v0 if ((v0 > b0) | (v0 != v0)) else b0
                            v1 = xr[w, c0 + 1]
                            b1 = v1 if ((v1 > b1) | (v1 != v1)) else b1
                            v2 = xr[w, c0 + 2]
                            b2 = v2 if ((v2 > b2) | (v2 != v2)) else b2
                            v3 = xr[w, c0 + 3]
                            b3 = v3 if ((v3 > b3) | (v3 != v3)) else b3
                            v4 = xr[w, c0 + 4]
                            b4 = v4 if ((v4 > b4) | (v4 != v4)) else b4
                            v5 = xr[w, c0 + 5]
                            b5 = v5 if ((v5 > b5) | (v5 != v5)) else b5
                            v6 = xr[w, c0 + 6]
                            b6 = v6 if ((v6 > b6) | (v6 != v6)) else b6
                            v7 = xr[w, c0 + 7]
                            b7 = v7 if ((v7 > b7) | (v7 != v7)) else b7
                    for h in range(ha, hb):
                        xr = Xi[h]
                        gr = Gi[h]
                        for w in range(wa, wb):
                            gr[w, c0 + 0] = d0 if xr[w, c0 + 0] == b0 else d0 * zero
                            gr[w, c0 + 1] = d1 if xr[w, c0 + 1] == b1 else d1 * zero
                            gr[w, c0 + 2] = d2 if xr[w, c0 + 2] == b2 else d2 * zero
                            gr[w, c0 + 3] = d3 if xr[w, c0 + 3] == b3 else d3 * zero
                            gr[w, c0 + 4] = d4 if xr[w, c0 + 4] == b4 else d4 * zero
                            gr[w, c0 + 5] = d5 if xr[w, c0 + 5] == b5 else d5 * zero
                            gr[w, c0 + 6] = d6 if xr[w, c0 + 6] == b6 else d6 * zero
                            gr[w, c0 + 7] = d7 if xr[w, c0 + 7] == b7 else d7 * zero
                else:
                    # the first maximum's position (row-major; a NaN wins and stays)
                    i0 = 0
                    i1 = 0
                    i2 = 0
                    i3 = 0
                    i4 = 0
                    i5 = 0
                    i6 = 0
                    i7 = 0
                    for h in range(ha, hb):
                        xr = Xi[h]
                        for w in range(wa, wb):
                            pos = (h - h0) * fw + (w - w0)
                            v0 = xr[w, c0 + 0]
                            t0 = (b0 == b0) & ((v0 > b0) | (v0 != v0))
                            b0 = v0 if t0 else b0
                            i0 = pos if t0 else i0
                            v1 = xr[w, c0 + 1]
                            t1 = (b1 == b1) & ((v1 > b1) | (v1 != v1))
                            b1 = v1 if t1 else b1
                            i1 = pos if t1 else i1
                            v2 = xr[w, c0 + 2]
                            t2 = (b2 == b2) & ((v2 > b2) | (v2 != v2))
                            b2 = v2 if t2 else b2
                            i2 = pos if t2 else i2
                            v3 = xr[w, c0 + 3]
                            t3 = (b3 == b3) & ((v3 > b3) | (v3 != v3))
                            b3 = v3 if t3 else b3
                            i3 = pos if t3 else i3
                            v4 = xr[w, c0 + 4]
                            t4 = (b4 == b4) & ((v4 > b4) | (v4 != v4))
                            b4 = v4 if t4 else b4
                            i4 = pos if t4 else i4
                            v5 = xr[w, c0 + 5]
                            t5 = (b5 == b5) & ((v5 > b5) | (v5 != v5))
                            b5 = v5 if t5 else b5
                            i5 = pos if t5 else i5
                            v6 = xr[w, c0 + 6]
                            t6 = (b6 == b6) & ((v6 > b6) | (v6 != v6))
                            b6 = v6 if t6 else b6
                            i6 = pos if t6 else i6
                            v7 = xr[w, c0 + 7]
                            t7 = (b7 == b7) & ((v7 > b7) | (v7 != v7))
                            b7 = v7 if t7 else b7
                            i7 = pos if t7 else i7
                    for h in range(ha, hb):
                        gr = Gi[h]
                        for w in range(wa, wb):
                            pos = (h - h0) * fw + (w - w0)
                            gr[w, c0 + 0] = d0 if pos == i0 else d0 * zero
                            gr[w, c0 + 1] = d1 if pos == i1 else d1 * zero
                            gr[w, c0 + 2] = d2 if pos == i2 else d2 * zero
                            gr[w, c0 + 3] = d3 if pos == i3 else d3 * zero
                            gr[w, c0 + 4] = d4 if pos == i4 else d4 * zero
                            gr[w, c0 + 5] = d5 if pos == i5 else d5 * zero
                            gr[w, c0 + 6] = d6 if pos == i6 else d6 * zero
                            gr[w, c0 + 7] = d7 if pos == i7 else d7 * zero
            for c in range(nb * 8, C):
                dc = d[c]
                bc = ninf
                ic = 0
                for h in range(ha, hb):
                    for w in range(wa, wb):
                        v = Xi[h, w, c]
                        tk = (bc == bc) & ((v > bc) | (v != v))
                        bc = v if tk else bc
                        ic = (h - h0) * fw + (w - w0) if tk else ic
                for h in range(ha, hb):
                    for w in range(wa, wb):
                        if mode == 0:
                            Gi[h, w, c] = dc if Xi[h, w, c] == bc else dc * zero
                        else:
                            Gi[h, w, c] = dc if (h - h0) * fw + (w - w0) == ic else dc * zero


@numba.njit(**{opts})
def conv_fwd_small_{sfx}(A, Wt, b, Z, sh, sw, ph, pw):
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


@numba.njit(**{opts})
def conv_bwd_plain_{sfx}(Xr, Zr, WT, dZ, dA, dW3, db, sh, sw, ph, pw, plh, plw):
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
    for t in {rng}(mm * H):
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


@numba.njit(**{opts})
def relu_{sfx}(x, out):
    for q in {rng}(x.shape[0]):
        v = x[q]
        out[q] = v if (v > 0 or v != v) else 0


@numba.njit(**{opts})
def relu_backward_{sfx}(dA, Z, out):
    for q in {rng}(dA.shape[0]):
        out[q] = 0 if Z[q] <= 0 else dA[q]


@numba.njit(**{opts})
def sigmoid_{sfx}(x, out, one):
    for q in {rng}(x.shape[0]):
        out[q] = one / (one + np.exp(-x[q]))


@numba.njit(**{opts})
def sigmoid_backward_{sfx}(dA, Z, out, one):
    for q in {rng}(dA.shape[0]):
        s = one / (one + np.exp(-Z[q]))
        out[q] = dA[q] * s * (one - s)
'''


#: Kernels of ``SIMPLE`` big enough that a shared row helper (``row_split``) pays: the
#: pooling kernels (8-channel register blocks).
ROW_SPLIT = ("pool_fwd", "pool_argmax", "pool_bwd", "pool_bwd_direct")
#: Kernels of ``SIMPLE`` only ever run serially (the smallest convolutions).
SERIAL_ONLY = ("conv_fwd_small", "conv_bwd_plain")


def simple_kernels() -> List[str]:
    """Every ``SIMPLE`` kernel in a parallel and a serial build (``SERIAL_ONLY`` ones in the
    serial build only); those in ``ROW_SPLIT`` as one row helper and two shells over it."""
    out: List[str] = []
    for sfx, rng, opts in (("par", "prange", "NJIT_PARALLEL"), ("ser", "range", "NJIT")):
        text = SIMPLE.replace("{sfx}", sfx).replace("{rng}", rng).replace("{opts}", opts)
        for chunk in text.strip("\n").split("\n\n\n"):
            lines = chunk.split("\n")
            base = re.match(r"^def (\w+)_(par|ser)\(", lines[1]).group(1)
            if base in SERIAL_ONLY:
                if sfx == "ser":
                    out += ["", "", *lines]
            elif base not in ROW_SPLIT:
                out += ["", "", *lines]
            elif sfx == "par":
                out += ["", "", *row_split(lines, (("par", "prange"), ("ser", "range")))]
    return out


HEADER = [
    '"""GENERATED by fastnn/backends/_nb_gen.py -- do not edit; run',
    "``python fastnn/backends/_nb_gen.py`` to regenerate.",
    "",
    "{what}: parallel builds (``_par``), serial ones (``_ser``) where a",
    "wrapper needs them, and the row helpers (``_*_row``) that a big kernel's builds share.",
    '"""',
    "# flake8: noqa",
    "import numba",
    "import numpy as np",
    "from numba import prange",
    "",
    "from .._numba_config import FASTMATH_CONV, NJIT, NJIT_PARALLEL",
    "",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
#: Generated module files (separate files so that editing one does not invalidate the
#: on-disk cache of the other: Numba keys the cache on the source file's timestamp).
FILES = {
    "_nb_conv.py": "The numba backend's register-tiled convolution kernels",
    "_nb_misc.py": "The numba backend's padding, pooling, activation and small (plain) convolution kernels",
}


def generate() -> dict:
    texts = {}
    for fname, what in FILES.items():
        parts = [h.replace("{what}", what) for h in HEADER]
        if fname == "_nb_misc.py":
            texts[fname] = "\n".join(parts + simple_kernels()) + "\n"
            continue
        # Convolution: parallel builds only (small convolutions use the plain kernels of
        # _nb_misc instead).
        sfx, rng = "par", "prange"
        parts += ["", "#: Forward tile shapes (P pixels, T channels) per dtype, best first.",
                  f"FWD_TILES = {FWD_TILES!r}",
                  "#: SIMD lanes of the few-channel dA_prev kernels ``conv_dA_*_c{C}``.",
                  f"DA_KVEC_L = {DA_KVEC_L!r}", ""]
        for dt, t in TILES.items():
            for P, T in FWD_TILES[dt]:
                parts.append("")
                parts += row_split(conv_fwd(f"conv_fwd_{dt}_p{P}t{T}_{sfx}", P, T, rng))
                parts.append("")
            for C in DA_KVEC_P:
                parts.append("")
                parts += row_split(conv_dA_kvec(f"conv_dA_{dt}_c{C}_{sfx}", C, DA_KVEC_L[dt], rng))
                parts.append("")
            for gen, nm, a in ((conv_dA, "conv_dA", "P"), (conv_dW, "conv_dW", "J")):
                parts.append("")
                parts += row_split(gen(f"{nm}_{dt}_{sfx}", t[a], t["T"], rng))
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
