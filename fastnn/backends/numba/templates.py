"""Templates of the numba backend's register-tiled kernels: the convolution tiles (forward,
dW, few-channel dA_prev) and the pooling channel blocks.

A register tile keeps its output values in named scalar accumulators (``a{p}_{k}``), which
LLVM's SLP vectoriser packs into SIMD registers; writing every tile shape by hand would be
error-prone, so each function here writes one kernel's source for one tile shape. At import,
:func:`load` renders one module per family for every entry of the tile tables
(:mod:`fastnn.backends.numba.tiles`) and imports it from fastnn's cache directory
(:func:`fastnn._jit.load_generated`); nothing generated is kept in the source tree. Each
module ends with its lookup tables (``FWD[(P, T)]``, ``DW[(J, T)]``, ``DA[(C, L)]``,
``POOL[(kind, NB)]``). A kernel whose code is the same for both dtypes exists once (Numba
compiles one specialisation per dtype). To read a generated kernel, open its module:
``<cache>/kernels/numba_conv_<hash>.py`` (or ``numba_pool_``; ``fastnn cache`` prints the
directory), or print ``conv_source()``.

Every kernel is one serial function over a chunk of its outer loop (:func:`chunked`).
"""

from __future__ import annotations

import os
import re
from typing import List

from . import tiles
from .tiles import GATHER_REG_NB, POOL_NB



def _ind(lines: List[str], n: int) -> List[str]:
    return [" " * n + s if s else s for s in lines]


def _shifted(block: str, T: int, n: str) -> str:
    """The start of block ``block`` of width T over [0, n): the last block is shifted back to
    end at n (its overlap with the one before is recomputed with the same arithmetic, so
    no tail code), and clamped at 0 when n < T. The ``max(..., 0)`` also lets LLVM prove the
    start non-negative, which keeps Numba's index wraparound code out of the kernel (without
    it the pooling kernels ran several times slower; docs/bench/backend-notes.md)."""
    return f"max(min({block} * {T}, {n} - {T}), 0)"


# ------------------------------------------------------- chunks of the outer loop

_LOOP = re.compile(r"^    for (\w+) in range\((.*)\):$")


def chunked(lines: List[str]) -> List[str]:
    """Turn a generated kernel whose work is one top-level loop ``for t in range(n)`` (the
    last top-level loop; independent iterations) into ``kernel(<args>, chunk, nchunks)``,
    which runs iterations ``[chunk*n//nchunks, (chunk+1)*n//nchunks)`` of it. One compiled
    function then serves a serial call ``(..., 0, 1)`` and fastnn's threads, which run its
    chunks (:mod:`.threads`): same arithmetic and order whatever the chunks, so the same bits.
    (Numba's own ``prange`` would compile a parallel copy of every kernel through its
    parfor passes: more cold compile per kernel, docs/bench/backend-notes.md.)"""
    deco, defline = lines[0], lines[1]
    name, args = re.match(r"^def (\w+)\((.*)\):$", defline).groups()
    at = max(k for k, s in enumerate(lines) if _LOOP.match(s))
    var, n = _LOOP.match(lines[at]).groups()
    return [deco, f"def {name}({args}, chunk, nchunks):", *lines[2:at],
            f"    nloop = {n}",
            f"    for {var} in range(chunk * nloop // nchunks, (chunk + 1) * nloop // nchunks):",
            *lines[at + 1:]]


# ------------------------------------------------------------------ conv forward

def _tile_init(P: int, T: int, ind: str) -> List[str]:
    """A forward tile's sums a{p}_{k} set to the channel block's biases ``bb``."""
    return [ind + f"a{p}_{k} = bb[{k}]" for p in range(P) for k in range(T)]


def _tile_sums(P: int, T: int, ind: str, w: str, x: str) -> List[str]:
    """One step of a forward tile's inner loop: T weights ``w`` (a format of k), P inputs ``x``
    (a format of p), and the P*T multiply-adds."""
    return ([ind + f"w{k} = " + w.format(k=k) for k in range(T)] + [ind + f"x{p} = " + x.format(p=p) for p in range(P)]
            + [ind + f"a{p}_{k} += x{p} * w{k}" for p in range(P) for k in range(T)])


def _tile_store(P: int, T: int, ind: str, z: str) -> List[str]:
    """A forward tile's sums stored: pixel p's T channels into ``z`` (a format of p: a view)."""
    L = []
    for p in range(P):
        L.append(ind + "zp = " + z.format(p=p))
        L += [ind + f"zp[{k}] = a{p}_{k}" for k in range(T)]
    return L


def _kh_range(first: str, last: str, ra: str = "ra", rb: str = "rb", dh: str = "") -> List[str]:
    """The filter rows [kha, khb) a forward tile runs for output pixels whose windows start on
    input rows ``first`` to ``last`` (of the padded input; rows ``dh`` apart when dilated): those
    that read a row of [ra, rb), the rows that hold data, for at least one of the pixels. A tap
    on a row of zero padding adds nothing (x = 0; -0.0 and +0.0 aside), so it is skipped, as
    oneDNN does: 5% of a 14 x 14 layer's 3x3 taps are on its top and bottom padding. (So an inf
    or NaN weight reaches only the outputs whose windows read data with it, not also those that
    read it against padding.)"""
    if not dh:
        return [f"        kha = max(0, {ra} - {last})", f"        khb = min(fh, {rb} - {first})"]
    return [f"        kha = max(0, ({ra} - {last} + {dh} - 1) // {dh})",
            f"        khb = min(fh, ({rb} - {first} + {dh} - 1) // {dh})"]


def _fwd_blocks(P: int, T: int, xrow: str, zpix: str = "zrow[wo + {p}, k0:]") -> List[str]:
    """The forward tile's loops over one output row's channel and pixel blocks (inside the
    loop over rows): ``xrow`` is the input row of filter row kh (an expression of kh), ``zpix``
    where pixel wo + p's channels k0... are stored (a format of p; by default into ``zrow``,
    the row's (Wo, K) output). Filter rows run from ``kha`` to ``khb`` (the row's: :func:`_kh_range`).
    The P pixels' inputs are read from one view of the row at
    unsigned offsets u{p} = p * xs (Numba emits no wraparound code for an unsigned index): a
    view per pixel cost its slicing's bounds code per filter row: where a filter row is 9
    columns (3 channels) the kernel ran 1.15-1.17x faster with one view, the same bits."""
    L = [f"        u{p} = np.uint64({p} * xs)" for p in range(P)] + [
        "        for kb in range(nkb):",
        f"            k0 = min(kb * {T}, K - {T})",
        "            bb = bp[kb]",
        "            for wb in range(nwb):",
        f"                wo = min(wb * {P}, Wo - {P})",
    ]
    I = " " * 16
    L += _tile_init(P, T, I)
    L += [I + "xb = wo * xs", I + "for kh in range(kha, khb):", I + f"    xq = {xrow}[xb:]", I + "    wt = Wp[kb, kh]",
          I + "    for j in range(np.uint64(Lr)):"]
    L += _tile_sums(P, T, I + " " * 8, "wt[j, {k}]", "xq[j + u{p}]")
    return L + _tile_store(P, T, I, zpix)


def _pixel_runs(P: int, T: int) -> List[str]:
    """The pixel-run kernels' loops (:func:`conv_fwd`, :func:`conv_fwd_gd_run`): over groups of
    R blocks of P pixels of each image's Ho*Wo (the chunks' unit), channel blocks, and the
    group's pixel blocks, the block's first pixel q0 (the last block shifted back)."""
    return [
        "    npx = Ho * Wo",
        f"    nqb = (npx + {P - 1}) // {P}",
        "    ngb = (nqb + R - 1) // R",
        "    xs = sw * C",
        "    for t in range(m * ngb):",
        "        i = t // ngb",
        "        g = t - i * ngb",
        "        zi = Z[i]",
        "        xi = Xr[i]",
        "        for kb in range(nkb):",
        f"            k0 = min(kb * {T}, K - {T})",
        "            bb = bp[kb]",
        "            for qb in range(g * R, min(g * R + R, nqb)):",
        f"                q0 = {_shifted('qb', P, 'npx')}",
    ]


def _run_pixels(P: int, col: str, extra: str = "") -> List[str]:
    """Each pixel p of a run's block: its input row r{p} and column offset c{p} (plus ``col``),
    and ``extra`` (a format of p), with one division per block, not one per pixel."""
    I = " " * 16
    L = [I + "hq = q0 // Wo", I + "wq = q0 - hq * Wo"]
    for p in range(P):
        if p:
            L += [I + "wq += 1", I + "if wq == Wo:", I + "    wq = 0", I + "    hq += 1"]
        L += [I + f"r{p} = hq * sh", I + f"c{p} = wq * xs{col}"] + ([I + extra.format(p=p)] if extra else [])
    return L


def conv_fwd(name: str, P: int, T: int) -> List[str]:
    """One register tile over the output's Ho x Wo pixels taken in a row-major run of each
    image. Z is the output viewed as (m, pixels, K), and pixel (ho, wo) is stored at
    z0 + ho*zsh + wo*zsw: (0, Wo, 1) for a whole output, a strided grid in it for one stride
    phase of dA_prev (written in place, no copy). A block of P pixels may span output rows,
    each pixel reading its own input row, so the blocks waste nothing at a row's end (a 14-wide row in blocks
    of 6 computed 18 pixels for 14). It runs where P does not divide Wo and a filter row is
    long enough (``tiles.fwd_plan``; elsewhere :func:`conv_fwd_rows`, the same bits).
    No tails: the last pixel block of an image and the last channel block are shifted back
    to end at Ho*Wo and K (overlapping the block before, whose values are recomputed with the
    same arithmetic, hence the same bits). The outer loop runs over groups of R pixel blocks
    (the chunks' unit); within a group each channel block's filter panel serves all R
    blocks. A pixel's sum is the same whatever P, R or chunk (the same taps in the same
    order). Every hot index is a loop variable plus a constant on a view sliced outside the
    loop, so Numba emits no negative-index wraparound code in the inner loop."""
    L = [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(Xr, Wp, bp, Z, Ho, Wo, z0, zsh, zsw, sh, sw, C, ra, rb, R):",
        f'    """Z[i, z0 + ho*zsh + wo*zsw, k0 + k] = bp[kb, k] + sum over (kh, j) of Xr[i, ho*sh + kh, wo*sw*C + j]',
        f"    * Wp[kb, kh, j, k] for the Ho x Wo output pixels (ho, wo), with k0 = min(kb*{T}, K-{T}): Wp",
        f"    holds W's output channels in blocks of {T} (see ``_pack_channels``). Needs K >= {T} and",
        f"    Ho*Wo >= {P}; R >= 1 pixel blocks a group. Xr's rows outside [ra, rb) are zero padding:",
        '    the filter rows that would read only those are skipped (_kh_range)."""',
        "    m, _, K = Z.shape",
        "    nkb, fh, Lr, _ = Wp.shape",
        *_pixel_runs(P, T),
    ]
    I = " " * 16
    L += _run_pixels(P, "", "zq{p} = z0 + hq * zsh + wq * zsw")
    L += _ind(_kh_range("r0", f"r{P - 1}"), 8)
    L += _tile_init(P, T, I)
    L += [I + "for kh in range(kha, khb):", I + "    wt = Wp[kb, kh]"]
    for p in range(P):
        L.append(I + f"    xr{p} = xi[r{p} + kh, c{p}:]")
    L.append(I + "    for j in range(Lr):")
    L += _tile_sums(P, T, I + " " * 8, "wt[j, {k}]", "xr{p}[j]")
    return L + _tile_store(P, T, I, "zi[zq{p}, k0:]")


def conv_fwd_rows(name: str, P: int, T: int) -> List[str]:
    """The forward tile over each output row's pixels (the channels-first build's loops): the
    bits of :func:`conv_fwd`, and where P divides Wo its pixel blocks too; it ran 1.5x faster
    than :func:`conv_fwd` on a 3-channel input (fw*C = 9 multiply-adds a filter row, against
    the per-block work of the pixel runs). Needs P <= Wo. No tails: the last pixel block and
    the last channel block are shifted back to end at Wo and K (overlapping the block before, whose values are
    recomputed with the same arithmetic, hence the same bits). Every hot index is a loop
    variable plus a constant or an unsigned offset on a view sliced outside the loop, so Numba
    emits no negative-index wraparound code in the inner loop."""
    return [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(Xr, Wp, bp, Z, Ho, Wo, z0, zsh, zsw, sh, sw, C, ra, rb):",
        f'    """conv_fwd\'s Z[i, z0 + ho*zsh + wo*zsw, k0 + k] (the same sums) over each output row\'s',
        f'    pixels. Needs K >= {T} and Wo >= {P}."""',
        "    m, _, K = Z.shape",
        "    nkb, fh, Lr, _ = Wp.shape",
        f"    nwb = (Wo + {P - 1}) // {P}",
        "    xs = sw * C",
        "    for t in range(m * Ho):",
        "        i = t // Ho",
        "        ho = t - i * Ho",
        "        r0 = ho * sh",
        *_kh_range("r0", "r0"),
        "        zrow = Z[i, z0 + ho * zsh:]",
        *_fwd_blocks(P, T, "Xr[i, r0 + kh]", "zrow[(wo + {p}) * zsw, k0:]"),
    ]


def conv_fwd_nchw(name: str, P: int, T: int) -> List[str]:
    """``conv_fwd``'s tile on channels-first arrays, the layout changes fused in: each image
    the chunk reaches is transposed into a per-chunk padded NHWC buffer (zero borders, made
    once), and each output row is computed into a (Wo, K) row buffer, both cache-resident,
    then stored transposed into Zn's K rows. The tile's arithmetic is conv_fwd's (same bits);
    what it saves is the two passes over memory of transposing the whole input and output."""
    return [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(Xn, Wp, bp, Zn, sh, sw, ph, pw, Hp, Wq, blocked):",
        "    \"\"\"Zn[i, k, ho, wo] = conv_fwd's Z[i, ho, wo, k] for the input Xn (m, C, H, W) padded by",
        "    (ph, pw) in front to (Hp, Wq) (zeros). Needs K >= %d and Wo >= %d. ``blocked`` (needs" % (T, P),
        "    C >= 8): each image transposed in blocks of 8 channels (kernels._transpose_row_b8).\"\"\"",
        "    m, C, H, W = Xn.shape",
        "    _, K, Ho, Wo = Zn.shape",
        "    nkb, fh, Lr, _ = Wp.shape",
        f"    nwb = (Wo + {P - 1}) // {P}",
        "    xs = sw * C",
        "    Xb3 = np.zeros((Hp, Wq, C), Xn.dtype)",
        "    Xb = Xb3.reshape(Hp, Wq * C)",
        "    zrow = np.empty((Wo, K), Zn.dtype)",
        "    last = -1",
        "    for t in range(m * Ho):",
        "        i = t // Ho",
        "        ho = t - i * Ho",
        "        if i != last:",
        "            last = i",
        "            Xi = Xn[i]",
        "            for h in range(H):",
        "                if blocked:",
        "                    _transpose_row_b8(Xi, h, Xb3[ph + h, pw:], C, W)",
        "                    continue",
        "                xh = Xb[ph + h]",
        "                for w in range(W):",
        "                    xw = xh[(pw + w) * C:]",
        "                    for c in range(C):",
        "                        xw[c] = Xi[c, h, w]",
        "        r0 = ho * sh",
        *_kh_range("r0", "r0", "ph", "ph + H"),
        *_fwd_blocks(P, T, "Xb[r0 + kh]"),
        "        for k in range(K):",
        "            zk = Zn[i, k, ho]",
        "            for wo in range(Wo):",
        "                zk[wo] = zrow[wo, k]",
    ]


def conv_fwd_gd(name: str, P: int, T: int) -> List[str]:
    """``conv_fwd``'s tile for one group of a grouped and/or dilated convolution: a window row
    is fw runs of Cg channels, dwC = dilation*C apart, starting goff channels into each input
    pixel (the group's first channel), its rows dh apart. Z is the group's output channels (a
    contiguous Z's K channels from zoff (a non-contiguous view of them would cost the SLP
    vectoriser its contiguous stores: 12x slower). For Cg = C, goff = 0 and no dilation it sums
    in conv_fwd's order (the same bits). The pixels' inputs are read from one view of the input
    row at unsigned offsets, as in :func:`_fwd_blocks`."""
    L = [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(Xr, Wp, bp, Z, sh, sw, C, dh, dwC, goff, Cg, zoff, K, ra, rb):",
        '    """Z[i, ho, wo, zoff + k0 + k] = bp[kb, k] + sum over (kh, kw, c) of',
        "    Xr[i, ho*sh + kh*dh, wo*sw*C + kw*dwC + goff + c] * Wp[kb, kh, kw*Cg + c, k] with k0 =",
        f"    min(kb*{T}, K-{T}) (W packed in blocks of {T} output channels). Needs K >= {T}, Wo >= {P}.",
        "    Xr's rows outside [ra, rb) are zero padding, their filter rows skipped (_kh_range).",
        '    """',
        "    m, Ho, Wo, _ = Z.shape",
        "    nkb, fh, Lr, _ = Wp.shape",
        "    fw = Lr // Cg",
        f"    nwb = (Wo + {P - 1}) // {P}",
        "    xs = sw * C",
        *[f"    u{p} = np.uint64({p} * xs)" for p in range(P)],
        "    for t in range(m * Ho):",
        "        i = t // Ho",
        "        ho = t - i * Ho",
        "        r0 = ho * sh",
        *_kh_range("r0", "r0", dh="dh"),
        "        zrow = Z[i, ho]",
        "        for kb in range(nkb):",
        f"            k0 = min(kb * {T}, K - {T})",
        "            bb = bp[kb]",
        "            for wb in range(nwb):",
        f"                wo = min(wb * {P}, Wo - {P})",
    ]
    I = " " * 16
    L += _tile_init(P, T, I)
    L += [I + "xb = wo * xs + goff", I + "for kh in range(kha, khb):", I + "    xq = Xr[i, r0 + kh * dh, xb:]",
          I + "    wt = Wp[kb, kh]", I + "    for kw in range(fw):", I + "        wk = wt[kw * Cg:]",
          I + "        v = np.uint64(kw * dwC)"]
    for p in range(P):
        L.append(I + f"        o{p} = v + u{p}")
    L.append(I + "        for c in range(np.uint64(Cg)):")
    L += _tile_sums(P, T, I + " " * 12, "wk[c, {k}]", "xq[c + o{p}]")
    return L + _tile_store(P, T, I, "zrow[wo + {p}, zoff + k0:]")


def conv_fwd_gd_run(name: str, P: int, T: int) -> List[str]:
    """:func:`conv_fwd_gd`'s sums (the same taps in the same order: the same bits) with
    :func:`conv_fwd`'s pixel blocks: over each image's Ho*Wo pixels, a block spanning output
    rows (each pixel reading its own input rows), the last one shifted back, in groups of R
    blocks. A 28-wide row in blocks of 8 computes 32 pixels; the runs compute 784 of 784."""
    L = [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(Xr, Wp, bp, Z, Ho, Wo, sh, sw, C, dh, dwC, goff, Cg, zoff, K, ra, rb, R):",
        "    \"\"\"conv_fwd_gd's Z[i, ho*Wo + wo, zoff + k0 + k] (the same sums; Z viewed as (m, Ho*Wo,",
        f"    channels)), by blocks of {P} pixels over each image's Ho*Wo. Needs K >= {T}, Ho*Wo >= {P}.\"\"\"",
        "    m = Z.shape[0]",
        "    nkb, fh, Lr, _ = Wp.shape",
        "    fw = Lr // Cg",
        *_pixel_runs(P, T),
    ]
    I = " " * 16
    L += _run_pixels(P, " + goff")
    L += _ind(_kh_range("r0", f"r{P - 1}", dh="dh"), 8)
    L += _tile_init(P, T, I)
    L += [I + "for kh in range(kha, khb):", I + "    wt = Wp[kb, kh]", I + "    rk = kh * dh"]
    L += [I + f"    xr{p} = xi[r{p} + rk, c{p}:]" for p in range(P)]
    L += [I + "    for kw in range(fw):", I + "        wk = wt[kw * Cg:]", I + "        v = np.uint64(kw * dwC)",
          I + "        for c in range(np.uint64(Cg)):"]
    L += _tile_sums(P, T, I + " " * 12, "wk[c, {k}]", "xr{p}[c + v]")
    return L + _tile_store(P, T, I, "zi[q0 + {p}, zoff + k0:]")


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
    P = tiles.DA_KVEC_P[C]
    out = [
        "@kernel(fastmath=FASTMATH_CONV)",
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


# ------------------------- conv dA_prev for few input channels, stride 1, over pixels

def conv_dA_px(name: str, C: int, P: int) -> List[str]:
    """dA_prev for C input channels at stride 1 as a correlation of dZ, vectorised over P
    consecutive output pixels (not over k, which leaves one sum of lanes per output value):
    each (tap, k) loads P consecutive values of a row of the planar padded dZ and adds them,
    times one weight per channel, into P x C accumulators; the block goes through ``buf``
    (whole vectors, for the SLP vectoriser) into dA_prev's interleaved channels."""
    L = [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(Zt, Wf, dA, zero):",
        f'    """dA[i, h, w, c] = sum over (a, b, k) of Zt[i, h + a, k, w + b] * Wf[a, b, k, c], pixels in',
        f"    blocks of {P} (the last shifted back to end at W; needs W >= {P}); Zt is dZ zero-padded by",
        "    (fh - 1 - ph, fw - 1 - pw) on each side, planar (m, H + fh - 1, K, W + fw - 1), and Wf is W",
        f'    flipped in (kh, kw) as (fh, fw, K, C = {C})."""',
        "    m, H, W, _ = dA.shape",
        "    fh, fw, K, _ = Wf.shape",
        f"    nwb = (W + {P - 1}) // {P}",
        f"    buf = np.empty(({C}, {P}), dtype=dA.dtype)",
        "    for t in range(m * H):",
        "        i = t // H",
        "        h = t - i * H",
        "        drow = dA[i, h]",
        "        for wb in range(nwb):",
        f"            w0 = {_shifted('wb', P, 'W')}",
    ]
    I = " " * 12
    L += [I + f"a{q}_{c} = zero" for q in range(P) for c in range(C)]
    L += [I + "for a in range(fh):", I + "    zrow = Zt[i, h + a]", I + "    wa = Wf[a]",
          I + "    for b in range(fw):", I + "        wt = wa[b]", I + "        for k in range(K):",
          I + "            zk = zrow[k, w0 + b:]"]
    L += [I + f"            u{c} = wt[k, {c}]" for c in range(C)]
    L += [I + f"            z{q} = zk[{q}]" for q in range(P)]
    L += [I + f"            a{q}_{c} += z{q} * u{c}" for c in range(C) for q in range(P)]
    L += [I + f"buf[{c}, {q}] = a{q}_{c}" for c in range(C) for q in range(P)]
    L += [I + f"for q in range({P}):", I + "    g = drow[w0 + q]"]
    L += [I + f"    g[{c}] = buf[{c}, q]" for c in range(C)]
    return L


# --------------------------------------------------------------------- conv dW


def _dW_tile(J: int, T: int) -> List[str]:
    L = []
    for q in range(J):
        L.append(f"pq{q} = pk[j0 + {q}, k0:]")
        for k in range(T):
            L.append(f"a{q}_{k} = pq{q}[{k}]")
    # The tile's sums stay in registers over the pass's pixels, taken as one run across its
    # output rows: with one loop per row of Wo = 14 pixels (resnet's 14 x 14 layers), each row's
    # setup (its input row's views, a division) cost a third of the row's multiply-adds, and
    # storing the partials after every row streamed the whole (fh, Lr, K) partial through the
    # cache per row. The sums run over the rows and pixels in the same order either way: the
    # same bits whatever the pass length.
    # The tile reads the pass's dZ for channels [k0, k0 + T) from zk (npx, T), contiguous. Where
    # dZ has more than T channels (a group's slice of it too) that is a copy made once per pass
    # (a grouped layer's per-group copies of dZ made by the wrapper, serial, took 8% of its
    # backward on 8x28x28x128, 4 groups): read in place, dZ's rows are K apart, and where
    # K * itemsize is 1 KiB or more (K = 256 float32, 128 float64) a pass's 64+ rows share a
    # few L1 sets and evict each other (dW alone, 2 threads: 1.14-1.37x with the copy on
    # resnet14_256, resnet_down and float64 mobilenet_pw, 0.95-1.16 on the others, no loss
    # beyond the run's noise; docs/bench/2026-12-07-dw-pack-chunks.md).
    # Input column j of the pass's pixel p is Xl[xo[p] + (kro + ja[j]) * piece + jb[j]] with
    # (ja, jb) = divmod(j, sw*C) precomputed (no division per tile) and xo[p] the offset of the
    # pixel's first piece of its input row (a table made once per pass, unsigned: Numba emits
    # no negative-index wraparound code for it; with a signed table, that code and a multiply
    # per column made the inner loop's scalar work outweigh its multiply-adds).
    for q in range(J):
        L.append(f"xq{q} = Xl[(kro + ja[j0 + {q}]) * piece + jb[j0 + {q}]:]")
    L += ["for p in range(npx):", "    o = xo[p]"]
    for k in range(T):
        L.append(f"    d{k} = zk[p, {k}]")
    for q in range(J):
        L.append(f"    x{q} = xq{q}[o]")
    for q in range(J):
        for k in range(T):
            L.append(f"    a{q}_{k} += x{q} * d{k}")
    for q in range(J):
        for k in range(T):
            L.append(f"pq{q}[{k}] = a{q}_{k}")
    return L


def _dW_kblock(J: int, T: int) -> List[str]:
    return ["j0 = 0", "while j0 < Lr:", *_ind(_dW_tile(J, T), 4), f"    j0 += {J}"]


def _db_pass(T: int) -> List[str]:
    """db's sums over the pass's pixels, T channels at a time from the pass's dZ block, in
    registers. Summed in a loop of their own over dZ's rows before the tiles, they went through
    memory (db may alias dZ for all Numba knows), a store and a load per row on each sum's chain:
    half the dW kernel's time on one thread for the cnn's first layer (16x64x64x3 -> 8 channels,
    9 columns a filter row). Summed inside the first tile instead (the dZ in its registers), the
    tile's body came twice in each kernel and its first compile took 2.5x as long. The same
    pixels in the same order: the same bits."""
    return (["k0 = 0", "while k0 < K:", f"    zk = zb[k0 // {T}] if packed else zp"]
            + _rep(T, "    b{k} = db[k0 + {k}]") + ["    for p in range(npx):"] + _rep(T, "        b{k} += zk[p, {k}]")
            + _rep(T, "    db[k0 + {k}] = b{k}") + [f"    k0 += {T}"])


def conv_dW(name: str, J: int, T: int) -> List[str]:
    L = [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(Xl, dZf, part, pdb, Ho, Wo, Hp, Wps, piece, sh, ja, jb, gr, dh, koff):",
        '    """Per-chunk partial dW and db: chunk c sums rows [c*R//n, (c+1)*R//n) of the',
        "    R = m*Ho output rows into part[c] (fh, fw*C, K) and pdb[c] (K,), in passes of gr rows",
        "    (a tile's sums in registers over a pass). Deterministic for a fixed chunk count",
        "    whichever build runs it and whatever gr. Xl is the padded input with each row cut",
        "    into pieces of one stride, (m, Hp, Wps = Wp/sw, piece = sw*C), flattened; dZf is dZ",
        "    (m, Ho, Wo, Kz) as (m*Ho*Wo, Kz), of whose channels the K from koff are summed (a group's:",
        "    koff + K <= Kz); a window's rows are dh apart, and its column j (j < fw*C,",
        "    or fw*Cg of a group's) is the element (ja[j], jb[j]) of a pixel's pieces. K (of",
        f"    part) is a multiple of {T} and Lr (of part, ja, jb) one of {J}: the wrapper pads them",
        "    (ja, jb with copies of their last entry) and drops the padded rows and channels.",
        '    """',
        "    nch, fh, Lr, K = part.shape",
        "    R = dZf.shape[0] // Wo",
        "    xo = np.empty(gr * Wo, np.uint64)",
        f"    packed = dZf.shape[1] > {T}  # (else the tile reads dZ in place)",
        f"    zb = np.empty((K // {T} if packed else 0, gr * Wo, {T}), dZf.dtype)",
        "    for c in range(nch):",
        "        pc = part[c]",
        "        db = pdb[c]",
        "        for kh in range(fh):",
        "            for j in range(Lr):",
        "                for k in range(K):",
        "                    pc[kh, j, k] = 0",
        "        for k in range(K):",
        "            db[k] = 0",
        "        lo = c * R // nch",
        "        hi = (c + 1) * R // nch",
        "        for t0 in range(lo, hi, gr):",
        "            t1 = min(t0 + gr, hi)",
        "            npx = 0",
        "            for t in range(t0, t1):",
        "                i = t // Ho",
        "                ho = t - i * Ho",
        "                base = (i * Hp + ho * sh) * Wps",
        "                for wo in range(Wo):",
        "                    xo[npx] = (base + wo) * piece",
        "                    npx += 1",
        "            zp = dZf[t0 * Wo:]",
        "            if packed:  # (the pass's dZ, copied into blocks of T channels: zb[k0 // T])",
        f"                for kb in range(K // {T}):",
        "                    zbk = zb[kb]",
        "                    for q in range(npx):",
        "                        zq = zp[q]",
        f"                        for u in range({T}):",
        f"                            zbk[q, u] = zq[koff + kb * {T} + u]",
        *_ind(_db_pass(T), 12),
        "            for kh in range(fh):",
        "                pk = pc[kh]",
        "                kro = kh * dh * Wps",
    ]
    L += _ind(["k0 = 0", "while k0 < K:", f"    zk = zb[k0 // {T}] if packed else zp"]
              + _ind(_dW_kblock(J, T) + [f"k0 += {T}"], 4), 16)
    return L


# ------------------------------------------------------------------------ pooling

def _rep(NB: int, *fmts: str) -> List[str]:
    """Each format once per channel k of the block, format by format."""
    return [f.format(k=k) for f in fmts for k in range(NB)]


def _pool_head(name: str, args: str, doc: str, NB: int, out: str) -> List[str]:
    """A pooling kernel's head: the loop over its output rows t = (i, ho), with ``out`` the
    array of output shape (m, Ho, Wo, C) (``chunked`` splits the loop into chunks)."""
    return [
        "@kernel",
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
    L = _pool_head(name, "X, Out, fh, fw, sh, sw, ph, pw, inv, zero",
                   "Average pooling (pads count as zeros): the clipped window's sum times inv = 1 / area,\n"
                   "    the caller's rounded reciprocal (within about an ulp of sum / area; a vector division\n"
                   "    per output block cost as much as the window's adds).",
                   NB, "Out")
    return L + _over_windows(NB, ["orow = Out[i, ho]"], ["o = orow[wo]"],
                             _rep(NB, "s{k} = zero") + _window_loop(_rep(NB, "s{k} += xr[w, c0 + {k}]"))
                             + _rep(NB, "o[c0 + {k}] = s{k} * inv"))


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
#: [woa, wob] covering w (from a table made once per kernel call, instead of two floor
#: divisions per pixel) and the pixel's gradient ``g``.
_GATHER_ROW = ["    wlo = np.empty(W, dtype=np.int64)", "    whi = np.empty(W, dtype=np.int64)",
               "    for w in range(W):", "        wlo[w] = max(0, (w + pw - fw + sw) // sw)",
               "        whi[w] = min(Wo - 1, (w + pw) // sw)",
               "    for t in range(m * H):", "        i = t // H", "        h = t - i * H", "        hp = h + ph",
               "        hoa = max(0, (hp - fh + sh) // sh)", "        hob = min(Ho - 1, hp // sh)"]
_GATHER_COL = ["        for w in range(W):", "            woa = wlo[w]", "            wob = whi[w]",
               "            g = dX[i, h, w]"]


def pool_max_bwd_gather(name: str, NB: int) -> List[str]:
    """Max-pooling backward, ties "all", for overlapping windows, in one pass over X: the
    gather of ``kernels.pool_bwd`` (each input element sums the windows covering it, in (ho, wo)
    order) with each row of window maxima computed (``pool_max``'s register blocks and rule)
    when an input row first needs it, into a ring of ceil(fh/sh) + 1 rows, from input rows
    still in cache: no array of maxima written and read back, no second pass over X. With
    NB >= ``GATHER_REG_NB`` each pixel's sums are kept in registers (``_gather_reg``)."""
    # (the window loop's own h, w would overwrite the input row and column being gathered)
    window = _max_pass(NB, h="hh", w="ww") + _rep(NB, "o[c0 + {k}] = b{k}")
    return [
        "@kernel",
        f"def {name}(X, dA, dX, fh, fw, sh, sw, ph, pw, ninf, zero):",
        '    """Max-pooling backward, ties "all", overlapping windows, one pass over X (see',
        f'    ``templates.pool_max_bwd_gather``). Channel blocks of {NB} for the maxima'
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
    """``_gather_row``'s sums (or with ``avg`` ``kernels.pool_bwd``'s average-pooling sums of
    dA times inv = 1 / area), in the same order, in registers: NB channels at a time (shifted last
    block), each written once."""
    if avg:
        setup, per_window = [], []
        term = "d[c0 + {k}] * inv"
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
    """Average-pooling backward for overlapping windows, the gather of ``kernels.pool_bwd`` (mode 2:
    each input element sums dA * inv of the windows covering it, in (ho, wo) order) with
    the sums in registers, NB channels at a time: the same bits, faster than the
    whole-channel-row loops. Built for NB = ``GATHER_REG_NB`` only
    (narrower channels run ``kernels.pool_bwd``)."""
    return [
        "@kernel",
        f"def {name}(dA, dX, fh, fw, sh, sw, ph, pw, inv, zero):",
        '    """Average-pooling backward, overlapping windows: each input element sums dA * inv (inv = 1 / area) of',
        f'    the windows covering it, in registers, channel blocks of {NB} (needs C >= {NB})."""',
        "    m, H, W, C = dX.shape",
        "    _, Ho, Wo, _ = dA.shape",
        f"    nb = (C + {NB - 1}) // {NB}",
        *_GATHER_ROW,
        *_GATHER_COL,
        *_ind(_gather_reg(NB, avg=True), 12),
    ]


#: One kernel per pooling mode (and tie rule), so that a call compiles only the code it runs.
POOL_KERNELS = (("pool_max", pool_max), ("pool_avg", pool_avg), ("pool_argmax", pool_argmax),
                ("pool_max_bwd_direct", pool_max_bwd_direct), ("pool_first_bwd_direct", pool_first_bwd_direct),
                ("pool_max_bwd_gather", pool_max_bwd_gather))


# ---------------------------------------------------------- depthwise convolution
# groups = C (one filter per channel, W as (fh, fw, C)), read straight from the unpadded input:
# each output pixel's taps are clipped to the input, so the zero padding costs nothing and
# needs no padded copy. Taps are dh, dw apart (dilation). NB channels' sums are kept in
# registers over all of a pixel's taps (the last block shifted back to end at C).

#: The taps kh of output row ho inside the input: [kh0, kh1) (h0 + kh*dh in [0, H)).
_DW_ROW = ["h0 = ho * sh - ph", "kh0 = max(0, (dh - 1 - h0) // dh)", "kh1 = min(fh, (H - 1 - h0) // dh + 1)"]
#: ... and the taps kw of each output column, tabled once per call: [kwa[wo], kwb[wo]) (no
#: division per pixel).
_DW_COLS = ["kwa = np.empty(Wo, dtype=np.int64)", "kwb = np.empty(Wo, dtype=np.int64)", "for wo in range(Wo):",
            "    w0 = wo * sw - pw", "    kwa[wo] = max(0, (dw - 1 - w0) // dw)",
            "    kwb[wo] = min(fw, (W - 1 - w0) // dw + 1)"]
_DW_COL = ["w0 = wo * sw - pw", "kw0 = kwa[wo]", "kw1 = kwb[wo]"]


def _dw_pixels(NB: int) -> int:
    """Output pixels per block of the depthwise forward's interior path (P x NB sums in registers)."""
    return max(1, min(4, 64 // NB))


def _dw_acc(NB: int, P: int) -> List[str]:
    return [f"a{p}_{k} = bk{k}" for p in range(P) for k in range(NB)]


def _dw_store(NB: int, P: int) -> List[str]:
    return [line for p in range(P) for line in [f"zp = zrow[wo + {p}]"] + [f"zp[c0 + {k}] = a{p}_{k}"
                                                                            for k in range(NB)]]


def dw_fwd(name: str, NB: int, P: int = 0) -> List[str]:
    """Per output row: the pixels whose taps all lie inside the input in blocks of P (the last
    shifted back: no tail), each filter value loaded once for the block's P pixels; the rest
    (the borders, or a row with fewer than P such pixels) one pixel at a time over its clipped
    taps. Both sum a pixel's taps in (kh, kw) order: the same bits whichever runs it."""
    P = P or _dw_pixels(NB)
    # (max(.., 0): the row and column are inside X, which LLVM cannot see: no wraparound code)
    taps = ["for kh in range(kh0, kh1):", "    xr = Xi[max(h0 + kh * dh, 0)]", "    wr = Wd[kh]",
            "    for kw in range(kw0, kw1):", "        x = xr[max(w0 + kw * dw, 0)]", "        wv = wr[kw]",
            *_ind(_rep(NB, "a{k} += x[c0 + {k}] * wv[c0 + {k}]"), 8)]
    single = [*_DW_COL, "z = zrow[wo]", "for cb in range(nb):", f"    c0 = {_shifted('cb', NB, 'C')}",
              *_ind(_rep(NB, "a{k} = b[c0 + {k}]") + taps + _rep(NB, "z[c0 + {k}] = a{k}"), 4)]
    btaps = ["for kh in range(kh0, kh1):", "    xr = Xi[max(h0 + kh * dh, 0)]", "    wr = Wd[kh]",
             "    for kw in range(fw):", "        wv = wr[kw]", "        xo = max(w0 + kw * dw, 0)",
             *[f"        x{p} = xr[xo + {p} * sw]" for p in range(P)],
             *_ind(_rep(NB, "u{k} = wv[c0 + {k}]"), 8),
             *[f"        a{p}_{k} += x{p}[c0 + {k}] * u{k}" for p in range(P) for k in range(NB)]]
    block = ["w0 = wo * sw - pw", "for cb in range(nb):", f"    c0 = {_shifted('cb', NB, 'C')}",
             *_ind(_rep(NB, "bk{k} = b[c0 + {k}]") + _dw_acc(NB, P) + btaps + _dw_store(NB, P), 4)]
    return [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(X, Wd, b, Z, sh, sw, ph, pw, dh, dw):",
        '    """Depthwise: Z[i, ho, wo, c] = b[c] + the sum over the taps (kh, kw) inside X of',
        "    X[i, ho*sh + kh*dh - ph, wo*sw + kw*dw - pw, c] * Wd[kh, kw, c] (in kh, kw order).",
        f'    Channel blocks of {NB} (needs C >= {NB}); blocks of {P} pixels where all their taps are inside."""',
        "    m, H, W, C = X.shape",
        "    _, Ho, Wo, _ = Z.shape",
        "    fh, fw, _ = Wd.shape",
        f"    nb = (C + {NB - 1}) // {NB}",
        *_ind(_DW_COLS, 4),
        "    wlo = 0  # the pixels [wlo, whi) have every tap inside the input's width",
        "    while wlo < Wo and kwa[wlo] > 0:",
        "        wlo += 1",
        "    whi = wlo",
        "    while whi < Wo and kwb[whi] == fw:",
        "        whi += 1",
        f"    nwb = (whi - wlo + {P - 1}) // {P} if whi - wlo >= {P} else 0",
        f"    done_lo = wlo if nwb else 0  # the pixels the blocks leave to the single path: [0, done_lo), [done_hi, Wo)",
        "    done_hi = whi if nwb else 0",
        "    for t in range(m * Ho):",
        "        i = t // Ho",
        "        ho = t - i * Ho",
        *_ind(_DW_ROW, 8),
        "        Xi = X[i]",
        "        zrow = Z[i, ho]",
        "        for wb in range(nwb):",
        f"            wo = max(min(wlo + wb * {P}, whi - {P}), 0)",
        *_ind(block, 12),
        "        for wo in range(done_lo):",
        *_ind(single, 12),
        "        for wo in range(max(done_hi, done_lo), Wo):",
        *_ind(single, 12),
    ]


#: The (filter width, column stride) pairs with a row-sliding depthwise forward (``dw_fwd_row``).
DW_ROW_GEOMETRY = ((1, 1), (2, 1), (3, 1), (5, 1), (7, 1))
#: The filter widths with a depthwise dW of their own (``dw_dW_row``).
DW_ROW_DW_WIDTHS = (3, 5, 7)
#: Output pixels per block of ``dw_fwd_row``.
DW_ROW_PIXELS = 4


def dw_fwd_row(name: str, NB: int, FW: int, S: int) -> List[str]:
    """``dw_fwd`` for filters FW wide at column stride S without column dilation, unrolled over the
    block's input columns: within each filter row the FW weights stay in registers and each of the
    (P - 1) * S + FW input columns a block of P pixels reads is loaded once and used for every
    (pixel, tap) it serves (the generic block reloads a column per tap: 1.3-1.5x slower on MobileNet's 3x3
    layers, docs/bench/2026-12-06-depthwise.md). Each pixel still sums its taps in (kh, kw) order,
    as ``dw_fwd`` does: the same bits."""
    P = DW_ROW_PIXELS
    taps = ["for kh in range(kh0, kh1):", "    xs = Xi[max(h0 + kh * dh, 0)][w0:]", "    wr = Wd[kh]"]
    for kw in range(FW):
        taps += [f"    wv = wr[{kw}]", *_ind(_rep(NB, f"u{kw}_{{k}} = wv[c0 + {{k}}]"), 4)]
    for j in range((P - 1) * S + FW):
        taps.append(f"    x = xs[{j}]")
        taps += [f"    a{p}_{k} += x[c0 + {k}] * u{j - p * S}_{k}"
                 for p in range(P) if 0 <= j - p * S < FW for k in range(NB)]
    lines = dw_fwd(name, NB, P)
    at = lines.index("        for wb in range(nwb):")
    block = ["w0 = max(wo * sw - pw, 0)", "for cb in range(nb):", f"    c0 = {_shifted('cb', NB, 'C')}",
             *_ind(_rep(NB, "bk{k} = b[c0 + {k}]") + _dw_acc(NB, P) + taps + _dw_store(NB, P), 4)]
    end = lines.index("        for wo in range(done_lo):")
    doc = lines.index("    m, H, W, C = X.shape")
    return (lines[:2] + [f'    """dw_fwd (fw = {FW}, sw = {S}, dw = 1): input columns loaded once per block of {P} pixels."""']
            + lines[doc:at + 2] + _ind(block, 12) + lines[end:])


#: The filter widths with a ``dw_fwd_phase`` (the stride phases' taps of 3x3 to 5x5 filters at stride 2).
DW_PHASE_WIDTHS = (1, 2, 3)


def dw_fwd_phase(name: str, NB: int, FW: int) -> List[str]:
    """``dw_fwd_row`` (stride 1) writing its (Ho, Wo) outputs into one stride phase of a larger
    array: output pixel (ho, wo) at Z[i, zh + ho*zsh, zw + wo*zsw] (a strided depthwise dA_prev's
    phases, each written in place, without a phase buffer and a copy)."""
    lines = dw_fwd_row(name, NB, FW, 1)
    sub = {"        zrow = Z[i, ho]": "        zrow = Z[i, max(zh + ho * zsh, 0)]",
           "    _, Ho, Wo, _ = Z.shape": "    # (Ho, Wo: the phase's size, arguments)"}
    out = [sub.get(line, line) for line in lines]
    out[1] = out[1].replace("(X, Wd, b, Z, sh, sw, ph, pw, dh, dw)", "(X, Wd, b, Z, Ho, Wo, zh, zsh, zw, zsw, sh, sw, ph, pw, dh, dw)")
    out[2] = f'    """dw_fwd_row (fw = {FW}, sw = 1) into the stride phase Z[:, zh::zsh, zw::zsw] of Z."""'
    return [re.sub(r"zp = zrow\[wo \+ (\d+)\]", r"zp = zrow[max(zw + zsw * (wo + \1), 0)]", line)
            .replace("z = zrow[wo]", "z = zrow[max(zw + zsw * wo, 0)]") for line in out]


def dw_dA(name: str, NB: int) -> List[str]:
    taps = ["for kh in range(fh):", "    q = h + ph - kh * dh", "    if q < 0:", "        break",
            "    ho = q // sh", "    if ho * sh != q or ho >= Ho:", "        continue",
            "    zr = dZ[i, ho]", "    wr = Wd[kh]",
            "    for kw in range(fw):", "        r = w + pw - kw * dw", "        if r < 0:", "            break",
            "        wo = r // sw", "        if wo * sw != r or wo >= Wo:", "            continue",
            "        d = zr[wo]", "        wv = wr[kw]", *_ind(_rep(NB, "a{k} += d[c0 + {k}] * wv[c0 + {k}]"), 8)]
    return [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(dZ, Wd, dX, sh, sw, ph, pw, dh, dw, zero):",
        '    """The input gradient of the depthwise forward, gathered: dX[i, h, w, c] sums dZ[i, ho, wo, c]',
        "    * Wd[kh, kw, c] over the taps with h + ph = ho*sh + kh*dh and w + pw = wo*sw + kw*dw (kh,",
        f'    kw order): chunks of input rows write disjoint outputs. Channel blocks of {NB}."""',
        "    m, H, W, C = dX.shape",
        "    _, Ho, Wo, _ = dZ.shape",
        "    fh, fw, _ = Wd.shape",
        f"    nb = (C + {NB - 1}) // {NB}",
        "    for t in range(m * H):",
        "        i = t // H",
        "        h = t - i * H",
        "        grow = dX[i, h]",
        "        for w in range(W):",
        "            g = grow[w]",
        "            for cb in range(nb):",
        f"                c0 = {_shifted('cb', NB, 'C')}",
        *_ind(_rep(NB, "a{k} = zero") + taps + _rep(NB, "g[c0 + {k}] = a{k}"), 16),
    ]


def dw_dW(name: str, NB: int) -> List[str]:
    """Per output row and tap, the sum over the row's pixels stays in registers (NB channels);
    the last, shifted block adds only the channels the blocks before did not."""
    over_wo = ["for wo in range(wa, wb):", "    x = xr[wo * sw + xo]", "    d = zr[wo]",
               *_ind(_rep(NB, "a{k} += x[c0 + {k}] * d[c0 + {k}]"), 4)]
    add = ["if c0 == cs:  # (a whole block adds its sums as vectors; the shifted last one per channel)",
           *_rep(NB, "    pk[c0 + {k}] += a{k}"), "else:",
           *[line for k in range(NB) for line in (f"    if c0 + {k} >= cs:", f"        pk[c0 + {k}] += a{k}")]]
    return [
        "@kernel(fastmath=FASTMATH_CONV)",
        f"def {name}(X, dZ, part, pdb, sh, sw, ph, pw, dh, dw, zero):",
        '    """This chunk\'s partial sums of the depthwise forward\'s weight and bias gradients over its',
        "    output rows (i, ho): part[chunk, kh, kw, c] and pdb[chunk, c] (the caller adds the chunks",
        f'    in order). Channel blocks of {NB}."""',
        "    m, H, W, C = X.shape",
        "    _, Ho, Wo, _ = dZ.shape",
        "    _, fh, fw, _ = part.shape",
        f"    nb = (C + {NB - 1}) // {NB}",
        "    acc = part[chunk]",
        "    dbp = pdb[chunk]",
        "    for kh in range(fh):",
        "        for kw in range(fw):",
        "            for c in range(C):",
        "                acc[kh, kw, c] = zero",
        "    for c in range(C):",
        "        dbp[c] = zero",
        "    for t in range(m * Ho):",
        "        i = t // Ho",
        "        ho = t - i * Ho",
        *_ind(_DW_ROW, 8),
        "        zr = dZ[i, ho]",
        "        for wo in range(Wo):",
        "            dv = zr[wo]",
        "            for c in range(C):",
        "                dbp[c] += dv[c]",
        "        for kh in range(kh0, kh1):",
        "            xr = X[i, max(h0 + kh * dh, 0)]",
        "            for kw in range(fw):",
        "                xo = kw * dw - pw",
        "                wa = max(0, (sw - 1 - xo) // sw)  # the pixels whose tap kw is inside X",
        "                wb = min(Wo, (W - 1 - xo) // sw + 1)",
        "                pk = acc[kh, kw]",
        "                for cb in range(nb):",
        f"                    cs = cb * {NB}",
        f"                    c0 = {_shifted('cb', NB, 'C')}",
        *_ind(_rep(NB, "a{k} = zero") + over_wo + add, 20),
    ]


def dw_dW_row(name: str, NB: int, FW: int) -> List[str]:
    """``dw_dW`` for filters FW wide without column dilation: per filter row, the FW taps' sums
    stay in registers together, so each pixel's dZ is loaded once for all FW taps (``dw_dW``
    loads it once per tap). Each tap still sums its pixels in ascending order (the left
    border's, the interior's, the right border's), then adds the row's sum to the partial: the
    same bits as ``dw_dW``."""
    def over(lo, hi, kws, border):
        col = [f"    x = xr[max(wo * sw - pw + {kws[0]}, 0)]"] if border else ["    xs = xr[max(wo * sw - pw, 0):]"]
        return [f"for wo in range({lo}, {hi}):", "    d = zr[wo]", *col,
                *[line for kw in kws for line in ([] if border else [f"    x = xs[{kw}]"])
                  + _rep(NB, f"    a{kw}_{{k}} += x[c0 + {{k}}] * d[c0 + {{k}}]")]]
    body = [f"a{kw}_{k} = zero" for kw in range(FW) for k in range(NB)]
    for kw in range(FW):  # the left border: the pixels before wlo whose tap kw is inside X
        body += over(f"wa{kw}", f"min(wlo, wb{kw})", [kw], True)
    body += over("wlo", "whi", list(range(FW)), False)
    for kw in range(FW):
        body += over(f"max(whi, wa{kw})", f"wb{kw}", [kw], True)
    # (a whole block adds its sums as vectors; only the shifted last one tests each channel)
    body += ["if c0 == cs:"] + [line for kw in range(FW) for line in
                                [f"    pk = acc[kh, {kw}]", *_rep(NB, f"    pk[c0 + {{k}}] += a{kw}_{{k}}")]]
    body += ["else:"] + [line for kw in range(FW) for line in
                         [f"    pk = acc[kh, {kw}]"] + [line for k in range(NB) for line in
                                                          (f"    if c0 + {k} >= cs:", f"        pk[c0 + {k}] += a{kw}_{k}")]]
    head = [line for kw in range(FW) for line in
            (f"    wa{kw} = max(0, (sw - 1 - ({kw} - pw)) // sw)  # the pixels whose tap {kw} is inside X: [wa, wb)",
             f"    wb{kw} = min(Wo, (W - 1 - ({kw} - pw)) // sw + 1)")]
    head += [f"    wlo = wa0  # every tap inside: [wlo, whi)", f"    whi = max(wb{FW - 1}, wlo)"]
    lines = dw_dW(name, NB)
    doc = lines.index("    m, H, W, C = X.shape")
    loop = lines.index("    for t in range(m * Ho):")
    at = lines.index("        for kh in range(kh0, kh1):")
    return (lines[:2] + [f'    """dw_dW (fw = {FW}, dw = 1): the taps of a filter row summed together."""']
            + lines[doc:loop] + head + lines[loop:at] + [
                "        for kh in range(kh0, kh1):",
                "            xr = X[i, max(h0 + kh * dh, 0)]",
                "            for cb in range(nb):",
                f"                cs = cb * {NB}",
                f"                c0 = {_shifted('cb', NB, 'C')}",
                *_ind(body, 16)])


DW_KERNELS = (("dw_fwd", dw_fwd), ("dw_dA", dw_dA), ("dw_dW", dw_dW))


# ------------------------------------------------------------------ the modules

_HEAD = ["import numpy as np", "", "from fastnn._jit import FASTMATH_CONV, kernel", ""]


def _table(name: str, doc: str, entries) -> List[str]:
    return ["", f"#: {doc}", f"{name} = {{", *[f"    {key!r}: {fn}," for key, fn in entries], "}"]


def conv_source() -> str:
    """The convolution tiles: forward (P, T), dW (J, T) and few-channel dA_prev (C, L)."""
    out = _HEAD[:-1] + ["from fastnn.backends.numba.kernels import _transpose_row_b8", ""]
    fwd, dw, da = [], [], []
    rows = []
    for P, T in tiles.all_fwd_tiles():
        fwd.append(((P, T), f"conv_fwd_p{P}t{T}"))
        out += ["", "", *chunked(conv_fwd(fwd[-1][1], P, T))]
        rows.append(((P, T), f"conv_fwd_rows_p{P}t{T}"))
        out += ["", "", *chunked(conv_fwd_rows(rows[-1][1], P, T))]
    for J, T in tiles.all_dw_tiles():
        dw.append(((J, T), f"conv_dW_j{J}t{T}"))
        out += ["", "", *chunked(conv_dW(dw[-1][1], J, T))]
    for C, L in tiles.all_da_tiles():
        da.append(((C, L), f"conv_dA_c{C}l{L}"))
        out += ["", "", *chunked(conv_dA_kvec(da[-1][1], C, L))]
    px = []
    for C, P in tiles.all_da_px_tiles():
        px.append(((C, P), f"conv_dA_px_c{C}p{P}"))
        out += ["", "", *chunked(conv_dA_px(px[-1][1], C, P))]
    nchw = []
    for P, T in tiles.all_fwd_tiles():
        nchw.append(((P, T), f"conv_fwd_nchw_p{P}t{T}"))
        out += ["", "", *chunked(conv_fwd_nchw(nchw[-1][1], P, T))]
    gd, gdr = [], []
    for P, T in tiles.all_fwd_tiles():
        gd.append(((P, T), f"conv_fwd_gd_p{P}t{T}"))
        out += ["", "", *chunked(conv_fwd_gd(gd[-1][1], P, T))]
        gdr.append(((P, T), f"conv_fwd_gd_run_p{P}t{T}"))
        out += ["", "", *chunked(conv_fwd_gd_run(gdr[-1][1], P, T))]
    out += _table("FWD", "(P pixels, T channels) -> forward tile kernel", fwd)
    out += _table("FWD_ROWS", "(P pixels, T channels) -> forward tile kernel over output rows", rows)
    out += _table("FWD_NCHW", "(P pixels, T channels) -> channels-first forward tile kernel", nchw)
    out += _table("FWD_GD", "(P pixels, T channels) -> grouped/dilated forward tile kernel", gd)
    out += _table("FWD_GD_RUN", "(P pixels, T channels) -> grouped/dilated forward tile kernel over pixel runs", gdr)
    out += _table("DW", "(J input columns, T channels) -> dW tile kernel", dw)
    out += _table("DA", "(C input channels, L lanes) -> few-channel dA_prev kernel", da)
    out += _table("DA_PX", "(C input channels, P pixels) -> few-channel stride-1 dA_prev kernel", px)
    return "\n".join(out) + "\n"


def pool_source() -> str:
    """Every pooling kernel for every block width of ``POOL_NB``, and the average-pooling
    register gather at ``GATHER_REG_NB``."""
    out = list(_HEAD)
    entries = []
    for NB in POOL_NB:
        for base, gen in POOL_KERNELS:
            name = f"{base}_b{NB}"
            entries.append(((base[len("pool_"):], NB), name))
            out += ["", "", *chunked(gen(name, NB))]
    name = f"pool_avg_bwd_gather_b{GATHER_REG_NB}"
    entries.append((("avg_bwd_gather", GATHER_REG_NB), name))
    out += ["", "", *chunked(pool_avg_bwd_gather(name, GATHER_REG_NB))]
    out += _table("POOL", "(kind, NB channels) -> pooling kernel", entries)
    return "\n".join(out) + "\n"


def depthwise_source() -> str:
    """The depthwise kernels (forward, dA_prev, dW) for every block width of ``POOL_NB``."""
    out = list(_HEAD)
    entries = []
    for NB in POOL_NB:
        for base, gen in DW_KERNELS:
            name = f"{base}_b{NB}"
            entries.append(((base[len("dw_"):], NB), name))
            out += ["", "", *chunked(gen(name, NB))]
    for NB in tiles.DW_ROW_NB:
        for FW, S in DW_ROW_GEOMETRY:
            name = f"dw_fwd_row_b{NB}_f{FW}_s{S}"
            entries.append((("fwd_row", NB, FW, S), name))
            out += ["", "", *chunked(dw_fwd_row(name, NB, FW, S))]
        for FW in DW_PHASE_WIDTHS:
            name = f"dw_fwd_phase_b{NB}_f{FW}"
            entries.append((("fwd_phase", NB, FW), name))
            out += ["", "", *chunked(dw_fwd_phase(name, NB, FW))]
        for FW in DW_ROW_DW_WIDTHS:
            name = f"dw_dW_row_b{NB}_f{FW}"
            entries.append((("dW_row", NB, FW), name))
            out += ["", "", *chunked(dw_dW_row(name, NB, FW))]
    out += _table("DW", "(kind, NB channels[, filter width, column stride]) -> depthwise kernel", entries)
    return "\n".join(out) + "\n"


SOURCES = {"conv": conv_source, "pool": pool_source, "depthwise": depthwise_source}
#: The hand-written modules whose njit helpers a family's kernels inline (``conv_fwd_nchw``:
#: ``kernels._transpose_row_b8``): their text is part of the generated module's hash, so an
#: edit there compiles the kernels again (Numba's cache follows only the caller's file).
DEPENDS = {"conv": [os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels.py")]}


def load(family: str):
    """The generated module of ``family`` ("conv" or "pool"), imported from the cache."""
    from ..._jit import load_generated

    return load_generated(f"numba_{family}", SOURCES[family](), depends=DEPENDS.get(family, ()))

