"""The numba backend's tile tables: which register tiles and channel blocks exist (the
templates generate one kernel per entry) and which one a call runs.

Each kernel is compiled on first use, so a call compiles only the tile it runs. The choices
were measured on the benchmark shapes; the figures are in ``docs/bench/backend-notes.md``.

Two sets of tables, by the vector width the kernels are compiled for (:data:`WIDTH`,
``fastnn._jit.VECTOR_WIDTH``): 256 (AVX2: 16 ymm registers; every CPU without AVX-512) and
512 (AVX-512: 32 zmm registers, twice the lanes; ``docs/bench/2026-12-06-avx512.md``). A table's
AVX-512 version follows its AVX2 one; where none does, both are the same.
"""

from __future__ import annotations

import functools

import numpy as np

from ..._jit import VECTOR_WIDTH

F64 = np.dtype(np.float64)
F32 = np.dtype(np.float32)

#: The vector width the tables are sized for (bits): 512 where fastnn's kernels compile for
#: AVX-512's zmm registers, else 256.
WIDTH = VECTOR_WIDTH
AVX512 = WIDTH == 512

#: Forward tile shapes (P output pixels, T output channels) per dtype, best first. The
#: widest tile holds P*T accumulators in 12 AVX2 registers (3 pixels x 4 vectors), the next
#: in 8: 8 accumulators leave the FMA units no slack over their latency.
FWD_TILES = {
    F64: ((3, 16), (4, 8), (8, 4), (4, 4), (1, 8), (1, 4), (4, 1), (1, 1)),
    F32: ((3, 32), (4, 16), (8, 8), (4, 8), (8, 4), (4, 4), (1, 16), (1, 8), (1, 4), (4, 1), (1, 1)),
}
#: AVX-512: the same shapes in vectors of twice the lanes, and more of them (32 registers): 6
#: pixels x 4 vectors (24 accumulators, 4 weight vectors, the pixels' broadcasts: about 32), 4
#: x 4, 8 x 2 and 8 x 1, 3 pixels (for 3 to 5 columns) and 1 x 4 vectors; then the narrow
#: ones for fewer channels than one vector. Which one runs: :func:`fwd_tile` (the least work
#: per unit of speed, ``FWD_EFF``).
if AVX512:
    FWD_TILES = {
        F64: ((6, 32), (4, 32), (3, 32), (1, 32), (8, 16), (3, 16), (8, 8), (4, 8), (8, 4), (4, 4), (1, 8), (1, 4),
              (4, 1), (1, 1)),
        F32: ((6, 64), (4, 64), (3, 64), (1, 64), (8, 32), (3, 32), (8, 16), (4, 16), (8, 8), (4, 8), (8, 4), (4, 4),
              (1, 16), (1, 8), (1, 4), (4, 1), (1, 1)),
    }
#: AVX-512: each forward tile's speed relative to the widest (GFLOP/s on shapes it fits without
#: recomputed pixels or channels), by tile in vectors (P, T / lanes).
FWD_EFF = {(6, 4): 1.0, (4, 4): 0.9, (3, 4): 0.75, (1, 4): 0.3, (8, 2): 0.95, (3, 2): 0.7, (8, 1): 0.75, (4, 1): 0.6}

#: The forward tiles declared as variants for the planner to time against the rule's choice
#: (the widest few of ``FWD_TILES``: the narrower ones were never faster where these fit).
FWD_VARIANTS = {dt: tiles[:4] for dt, tiles in FWD_TILES.items()}
if AVX512:
    # (4 vectors by 6 pixels, 4, 3; 2 by 8; 1 by 8. Every variant must apply to a named case of
    # fastnn.testing.cases, i.e. differ from the rule's tile on one: float32's 6 x 4 vectors is the
    # rule's on the only one with 64 channels, so it is not declared)
    FWD_VARIANTS = {F64: ((6, 32), (4, 32), (8, 16), (8, 8)), F32: ((4, 64), (3, 64), (8, 32), (8, 16))}

#: dW tile rows per dtype: J input columns x T output channels, for T of up to two vectors
#: (J*T accumulators fill 8 AVX2 registers at two).
DW_J = {F64: 4, F32: 4}
#: AVX2: a channel tile of four vectors takes this many rows (12 sums and the 4 vectors of dZ
#: fill the 16 ymm registers; 4 x 4 vectors, 16 sums, spilled and ran 0.97-1.29x the old tile's
#: time); a wider one (a variant's) the rows of as many sums, or fewer. 3 x 4 vectors ran the
#: dW of 3x3 layers 1.06-1.30x as fast as 4 x 2 (float64, 5 layers from 16 to 256 channels;
#: float32 1.07-1.23x on the 4 with K >= 32), on a Zen 3 host.
DW_J_WIDE = 3
#: Channel tile widths of the dW kernels per dtype, widest first (which runs: :func:`dw_tile`).
BWD_T = {F64: (16, 8, 4, 1), F32: (32, 16, 8, 4, 1)}
#: Lanes of one AVX2 vector per dtype.
LANES = {F64: 4, F32: 8}
if AVX512:
    #: AVX-512: J = 8 for tiles narrower than half a zmm register; for wider ones J from
    #: ``DW_J_BY_VECTORS`` by T in vectors (a tile of one vector or half of one (a ymm
    #: register): ``DW_J_ONE_VECTOR``).
    DW_J = {F64: 8, F32: 8}
    BWD_T = {F64: (32, 16, 8, 4, 1), F32: (64, 32, 16, 8, 4, 1)}
    LANES = {F64: 8, F32: 16}
#: With a channel tile of one vector (T = ``LANES``), J = 4 columns leave the FMA units
#: idle over their latency (4 accumulators): such a tile takes J from these, the one that
#: pads fw*C least (the wider on a tie). Measured on 3x3 windows, float32 T = 8 (4 and
#: float64 alike): fw*C = 9 (RGB), J = 9 1.09 ms against J = 4 with T = 4 (the rule
#: before) 1.91 ms; fw*C = 24 and 48, J = 6 5-10% faster than J = 4.
DW_J_ONE_VECTOR = (9, 6, 4)

#: dA_prev for C_in <= 4 (a gather summing over k in SIMD lanes): pixels per tile by C_in,
#: and lanes per dtype.
DA_KVEC_P = {1: 8, 2: 4, 3: 3, 4: 3}
DA_KVEC_L = {F64: 4, F32: 8}
if AVX512:
    # one zmm register of lanes, and more pixels (16, 16, 18, 16 accumulators): 1.3-1.7x the
    # AVX2 tables' at 512 bits on the table's stem7x7 and cat_c1 (float64) dA_prev
    DA_KVEC_P = {1: 16, 2: 8, 3: 6, 4: 4}
    DA_KVEC_L = {F64: 8, F32: 16}

#: dA_prev for C_in <= 4 at stride 1, vectorised over pixels: the pixel block by C_in per
#: dtype (P x C accumulators in 8-12 AVX2 registers; ``templates.conv_dA_px``). float32 only:
#: its whole conv_backward ran 1.4-1.7x faster than with the lane-sum gather (16x64x64x3 -> 8,
#: 64x64x64x3 -> 16, 32x32x32x3 5x5 -> 16), while in float64 (16 pixels a block) the two were
#: within the host's noise (0.74-1.34x), so float64 keeps the gather.
DA_PX_P = {F32: {1: 64, 2: 48, 3: 32, 4: 24}}

#: Channel block widths of the pooling kernels, widest first: a block holds NB running
#: maxima/sums/positions in registers; the window's sum or maximum is a chain of dependent
#: operations per block, and more lanes side by side hide its latency (64 spilled registers
#: in float64). The first with NB <= C runs; the last block is shifted back to end at C.
POOL_NB = (32, 16, 8, 1)
if AVX512:  # (64 float32 lanes are 4 zmm registers: max-pooling p3s2 1.2-1.3x a block of 32)
    POOL_NB = (64, 32, 16, 8, 1)
#: The backward gathers keep each input pixel's gradient sums in registers, NB channels at a
#: time, for NB >= this (narrower blocks lost to whole-channel-row loops, which run the
#: window loop once per block).
GATHER_REG_NB = 32

#: The L1 data cache the channels-first transposes assume: lines of ``LINE_BYTES`` in
#: ``L1_SETS`` sets of ``L1_WAYS`` (32 KiB, 8-way: AMD's Zen 1-4 and Intel's cores before Ice Lake;
#: Intel's 48 KiB 12-way L1 has 64 sets too, with more ways).
L1_SETS, L1_WAYS, LINE_BYTES = 64, 8, 64


@functools.lru_cache(maxsize=1024)
def transpose_blocked(C: int, plane_bytes: int) -> bool:
    """Whether a transpose of C channel rows ``plane_bytes`` apart (a channels-first array's
    planes) to NHWC reads them in blocks of 8 (``kernels._transpose_row_b8``) rather than all C
    per output pixel: where more than ``L1_WAYS`` of the C rows start in one L1 set, which
    evicts each row's line before its next pixel is read (planes of 4 KiB: all C rows in one
    set). On one thread, 64 x 32 x 32 x 32 float32 took 5.1 ms to transpose pixel by pixel and
    1.6 ms in blocks of 8 (a copy: 0.5 ms), while on planes spread over the sets the blocks were
    1.1-1.8x slower than pixel by pixel (docs/bench/2026-12-08-s15.md)."""
    if C < 8:
        return False
    counts: dict = {}
    for c in range(C):
        s = (c * plane_bytes // LINE_BYTES) % L1_SETS
        counts[s] = counts.get(s, 0) + 1
    return max(counts.values()) > L1_WAYS


def fits(tile, K: int, Wo: int) -> bool:
    """Whether a forward tile (P, T) can run for K output channels and Wo output pixels (the
    pixels its blocks run over: an image's Ho*Wo for the NHWC forward, a row's Wo for the
    channels-first and grouped builds)."""
    return tile[1] <= K and tile[0] <= Wo


#: The NHWC forward kernel's outer loop runs over groups of pixel blocks of about this many
#: output pixels (each channel block's filter panel serves the whole group before the next
#: panel is read): 1.1-1.2x groups of one output row's width on 14x14 and 28x28 layers
#: (float32, 2 threads, in-process rounds), within the noise of 64.
FWD_GROUP_PIXELS = 128


#: The NHWC forward runs its pixel-run kernel (blocks spanning output rows) only where a filter
#: row has at least this many multiply-adds a pixel (fw*C); below, the row kernel, whatever the
#: width: with 3 input channels the per-block work of the pixel runs outweighed the pixels they
#: save (cat_c1, fw*C = 9: 1.5x slower; a 7x7 stride-2 layer on 29-wide rows, fw*C = 21, 0.79x
#: in float64 for 3% fewer pixels).
FWD_RUN_MIN_COLUMNS = 64


def fwd_plan(dtype, K: int, Ho: int, Wo: int, columns: int, tile=None):
    """The NHWC forward's tile and kernel: ``(P, T, rows)``, ``rows`` True for the row kernel
    (blocks within output rows) and False for the pixel-run one, for K output channels, Ho x Wo
    output pixels and ``columns`` = fw*C. Short filter rows (``FWD_RUN_MIN_COLUMNS``): the row
    kernel, with the tile fitted to a row (Wo). Else the tile fitted to the image's Ho*Wo
    pixels, on the row kernel where P divides Wo (nothing to save), else the pixel runs.
    ``tile`` (a variant's) replaces the rule's where it fits."""
    if columns < FWD_RUN_MIN_COLUMNS:
        P, T = tile if tile is not None and fits(tile, K, Wo) else fwd_tile(dtype, K, Wo)
        return P, T, True
    P, T = tile if tile is not None and fits(tile, K, Ho * Wo) else fwd_tile(dtype, K, Ho * Wo)
    return P, T, Wo % P == 0


def fwd_group(P: int, m: int, npx: int, nthreads: int) -> int:
    """Pixel blocks of P per group of the NHWC forward kernel for m images of npx output pixels:
    about ``FWD_GROUP_PIXELS`` pixels, halved while there would be fewer than 4 groups per
    thread (so that a small call still splits evenly across the threads). The bits do not
    depend on it."""
    nqb = -(-npx // P)
    R = max(1, -(-FWD_GROUP_PIXELS // P))
    while R > 1 and m * -(-nqb // R) < 4 * nthreads:
        R = -(-R // 2)
    return R


def fwd_tile(dtype, K: int, Wo: int):
    """The forward tile (P pixels, T channels) for K output channels and Wo output pixels (see
    :func:`fits`).
    AVX2: the first of ``FWD_TILES`` that fits (T <= K, P <= Wo), the widest (first) one only
    where T divides K (its shifted last channel block would recompute up to T - 1
    channels); (1, 1) always fits. AVX-512: of the tiles of ``FWD_EFF`` that fit, the one
    with the least work (pixels and channels computed, the shifted last blocks' recomputed
    ones included) per unit of its speed (the earlier on a tie); where none fits (fewer
    channels than one vector, or columns than its pixels), the first of ``FWD_TILES`` that fits."""
    tiles = FWD_TILES[dtype]
    if AVX512:
        lanes = LANES[np.dtype(dtype)]
        rated = [t for t in tiles if fits(t, K, Wo) and (t[0], t[1] / lanes) in FWD_EFF]
        if rated:
            return min(rated, key=lambda t: -(-Wo // t[0]) * t[0] * -(-K // t[1]) * t[1] / FWD_EFF[t[0], t[1] / lanes])
        return next(t for t in tiles if fits(t, K, Wo))
    wide = tiles[0]
    return next(t for t in tiles if t[1] <= K and t[0] <= Wo and (t is not wide or K % t[1] == 0))


#: AVX-512: the dW rows J a tile of T = 4 or 2 vectors takes, with each one's speed relative to
#: the best: the fewest padded fw*C columns per unit of speed (the wider on a tie). 6 x 4 vectors
#: (24 accumulators) ran 1.0-1.2x 4 x 4 on the table's dW; 9 x 2 as fast as 8 x 2, 1.0-1.1x 6 x 2.
#: A wider T (a variant's: float32's 64 channels in float64) takes J = 24 / vectors.
DW_J_BY_VECTORS = {4: {6: 1.0, 4: 0.93}, 2: {9: 1.0, 8: 1.0, 6: 0.93}}


#: Each dW channel tile's speed relative to the widest, by T in vectors (wider: 0.5; narrower
#: than one vector: one vector's times the share of its lanes used). AVX-512's measures; on
#: AVX2 two vectors ran at 0.77-0.94 of four's speed, and with one vector at 0.55 the choice
#: between one and two vectors is the widest that fits, as it was before the four-vector tile.
DW_EFF = {4: 1.0, 2: 0.85, 1: 0.55}


def _dw_eff(v: float) -> float:
    return DW_EFF.get(v, 0.5) if v >= 1 else DW_EFF[1] * v


def dw_tile(dtype, K: int, L: int, T=None):
    """The dW kernel's tile (J, T) for K output channels and L = fw*C input columns: T the
    one of ``BWD_T`` <= K with the fewest channels (K zero-padded to a multiple of T) per unit
    of its speed ``DW_EFF`` (the wider on a tie), or ``T`` as given (a variant); J from
    ``DW_J``, or for a one-vector T (AVX-512: or half of one) from ``DW_J_ONE_VECTOR``, the fewest padded columns (then
    the widest; AVX-512, T of 2 or 4 vectors: from ``DW_J_BY_VECTORS``, per unit of speed;
    AVX2, T of 4 vectors or more: ``DW_J_WIDE`` rows' sums)."""
    dtype = np.dtype(dtype)
    lanes = LANES[dtype]
    if T is None:
        T = min((t for t in BWD_T[dtype] if t <= K), key=lambda t: -(-K // t) * t / _dw_eff(t / lanes))
    if T == lanes or (AVX512 and 2 * T == lanes):
        rows = {j: 1.0 for j in DW_J_ONE_VECTOR}
    elif AVX512 and T > lanes:
        rows = DW_J_BY_VECTORS.get(T // lanes, {max(1, 24 * lanes // T): 1.0})
    elif T > 2 * lanes:
        return max(1, DW_J_WIDE * 4 * lanes // T), T
    else:
        return DW_J[dtype], T
    return min(rows, key=lambda j: (-(-L // j) * j / rows[j], -j)), T


#: The dW kernels keep a tile's sums in registers over passes of at least this many output
#: pixels (whole rows: ``dw_rows``), not one row: with one row of Wo = 14 pixels (resnet's 14 x
#: 14 layers) the partials' loads and stores after each row streamed the whole (fh, fw*C, K)
#: partial through the cache once per row.
DW_PASS_PIXELS = 64
#: ... and of at least this many where the tile reads dZ in place (K of one channel tile): a
#: pass's setup then has no copy to amortise and its length costs only its offset table; the
#: partials' loads and stores took 3-11% of dW on layers of few columns or channels (the
#: cnn's, cat_c1, cifar), against 64. Where dZ is copied per pass, 1024 pixels of it
#: (float64 pointwise: 512 KiB) ran 6-10% slower than 64
#: (docs/bench/2026-12-07-dw-db-passes.md).
DW_PASS_PIXELS_IN_PLACE = 1024


def dw_rows(Wo: int, in_place: bool = False) -> int:
    """Output rows per pass of the dW kernels, ``in_place`` where the tile reads dZ in place (the
    bits do not depend on it)."""
    return max(1, -(-(DW_PASS_PIXELS_IN_PLACE if in_place else DW_PASS_PIXELS) // Wo))


#: The channel blocks of the row-sliding depthwise kernels (templates.dw_fwd_row, dw_dW_row): P x NB
#: sums in registers, at most two vector registers of channels (128 bytes with AVX-512: NB = 32
#: float32, 16 float64; 64 with AVX2), which leaves registers for the filter row's taps.
DW_ROW_NB = (32, 16, 8) if AVX512 else (16, 8)
_DW_ROW_BYTES = 128 if AVX512 else 64


def dw_row_block(C: int, dtype):
    """The row-sliding depthwise kernels' channel block for C channels of ``dtype``, or None (C < 8)."""
    widest = _DW_ROW_BYTES // np.dtype(dtype).itemsize
    return next((n for n in DW_ROW_NB if n <= min(C, widest)), None)


@functools.lru_cache(maxsize=512)  # (POOL_NB is fixed at import)
def pool_block(C: int) -> int:
    """The pooling channel block for C channels: the first of ``POOL_NB`` <= C."""
    return next(n for n in POOL_NB if n <= C)


def all_fwd_tiles():
    """Every forward tile of any dtype (one kernel each: Numba specialises it per dtype)."""
    return sorted({t for tiles in FWD_TILES.values() for t in tiles}, reverse=True)


def all_dw_tiles():
    """Every dW tile of any dtype: the rows :func:`dw_tile` gives every width of ``BWD_T`` (a
    variant may run any width in either dtype) and the one-vector (AVX-512: 2 and 4 vector) tiles' rows."""
    widths = {t for ts in BWD_T.values() for t in ts}
    rows = {dw_tile(dt, T, 1, T) for dt in DW_J for T in widths}
    rows |= {(J, LANES[dt]) for dt in LANES for J in DW_J_ONE_VECTOR}
    if AVX512:
        rows |= {(J, LANES[dt] // 2) for dt in LANES for J in DW_J_ONE_VECTOR}
        rows |= {(J, v * LANES[dt]) for dt in LANES for v, js in DW_J_BY_VECTORS.items() for J in js}
    return sorted(rows, reverse=True)


def all_da_px_tiles():
    return sorted({(C, P) for by_c in DA_PX_P.values() for C, P in by_c.items()})


def all_da_tiles():
    return sorted({(C, L) for C in DA_KVEC_P for L in DA_KVEC_L.values()})
