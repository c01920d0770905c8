"""The numba backend beyond the equivalence matrix: its tiled (parallel) paths on every edge
case, thread safety, determinism, NaN handling, dtypes, settings, generated source."""

import dataclasses
import itertools
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastnn
from fastnn._dispatch import ground_truth_backend
from fastnn.testing.tolerance import assert_close
from fastnn.testing.cases import CONV_CASES, DTYPES, POOL_CASES, ConvCase

nb = pytest.importorskip("fastnn.backends.numba")
from fastnn.backends.numba import tiles  # noqa: E402

REF = ground_truth_backend()
_close = assert_close  # the one tolerance rule (fastnn.testing.tolerance)



def _record(monkeypatch, table, log):
    """Log the key of every kernel of ``table`` (a generated module's lookup table) that runs."""
    for key, fn in list(table.items()):
        monkeypatch.setitem(table, key, lambda *a, _fn=fn, _key=key: (log.append(_key), _fn(*a))[1])


@pytest.fixture
def force_parallel(monkeypatch):
    """Send every call, however small, to the tiled kernels, in 3 chunks (uneven splits,
    more chunks than this machine's cores)."""
    monkeypatch.setattr(nb, "_SERIAL_WORK", 0)
    monkeypatch.setattr(nb, "_num_threads", lambda: 3)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_tiled_conv_kernels_match_reference_on_all_cases(force_parallel, dtype):
    cases = list(CONV_CASES.values()) + [
        ConvCase("tiles_and_tails", 2, 9, 11, 21, (3, 2), 37, (2, 3), (1, 2)),
        ConvCase("stride_gt_f_wide", 1, 13, 12, 9, (2, 1), 19, (3, 4), (0, 1)),
        ConvCase("few_channels_strided", 2, 11, 13, 3, (3, 5), 19, (2, 3), (1, 2)),
        ConvCase("few_channels_stem", 1, 15, 14, 2, 7, 16, 2, 3),
    ]
    for case in cases:
        A, W, b, hp, dZ = case.make(dtype, seed=5)
        Z_ref, cache_ref = fastnn.conv_forward(A, W, b, hp, backend=REF)
        Z, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        _close(Z, Z_ref, dtype, f"{case.name} Z")
        for name, g, g_ref in zip(("dA_prev", "dW", "db"), fastnn.conv_backward(dZ, cache, backend="numba"),
                                  fastnn.conv_backward(dZ, cache_ref, backend=REF)):
            _close(g, g_ref, dtype, f"{case.name} {name}")


_NCHW_TILED = [
    ConvCase("nchw_tiles_and_tails", 2, 9, 11, 21, (3, 2), 37, (2, 3), (1, 2), layout="NCHW"),
    ConvCase("nchw_uneven_same", 1, 13, 12, 9, 3, 19, 2, "same", layout="NCHW"),
    ConvCase("nchw_uneven_pairs", 3, 10, 7, 16, (2, 3), 33, 1, ((2, 0), (0, 3)), layout="NCHW"),
    ConvCase("nchw_one_column", 2, 6, 3, 8, 3, 12, 1, 0, layout="NCHW"),
    ConvCase("nchw_pointwise", 2, 5, 9, 24, 1, 70, 1, 0, layout="NCHW"),
    ConvCase("nchw_few_channels_stem", 1, 15, 14, 3, 7, 16, 2, 3, layout="NCHW"),
    # (planes of 16 x 16: the input's 37 channel rows transposed in blocks of 8, tiles.transpose_blocked)
    ConvCase("nchw_blocked_input", 2, 16, 16, 37, 3, 12, 1, 1, layout="NCHW"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("threads", [1, 3])
def test_nchw_forward_reads_and_writes_channels_first_itself(monkeypatch, dtype, threads):
    """On the tiled path an NCHW forward runs ``templates.conv_fwd_nchw`` (the input's transpose
    and padding and the output's transpose fused into the kernel): the wrapper makes no
    transposed copy, the result has the very bits of the NHWC call on the same values, comes
    back C-contiguous NCHW in the input's dtype, and the input is left as it was."""
    import fastnn.conv as conv_mod
    monkeypatch.setattr(nb, "_SERIAL_WORK", 0)
    monkeypatch.setattr(nb, "_num_threads", lambda: threads)
    log = []
    _record(monkeypatch, nb._CONV.FWD_NCHW, log)

    def no_copy(*a, **k):
        raise AssertionError("the wrapper transposed an NCHW array for a kernel that reads NCHW itself")
    for name in ("_nhwc", "_nchw"):
        monkeypatch.setattr(conv_mod, name, no_copy)
    monkeypatch.setattr(conv_mod._layout, "to_nhwc_padded", no_copy)
    for case in _NCHW_TILED:
        A, W, b, hp, _ = case.make(dtype, seed=3)
        A0 = A.copy()
        before = len(log)
        Z, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        assert len(log) == before + threads, case.name  # (a call per chunk)
        assert np.array_equal(A, A0) and cache[0] is A
        assert Z.dtype == np.dtype(dtype) and Z.flags.c_contiguous and Z.shape == (case.m, case.K) + case.out_hw
        twin = dataclasses.replace(case, layout="NHWC")
        At, Wt, bt, hpt, _ = twin.make(dtype, seed=3)
        Zt, _ = fastnn.conv_forward(At, Wt, bt, hpt, backend="numba")
        assert np.array_equal(Z, Zt.transpose(0, 3, 1, 2)), case.name


_NCHW_BACKWARD = _NCHW_TILED + [
    ConvCase("nchw_s1_uneven", 2, 9, 11, 12, 3, 20, 1, ((0, 2), (1, 0)), layout="NCHW"),
    ConvCase("nchw_s1_same_even_f", 2, 8, 10, 12, 4, 20, 1, "same", layout="NCHW"),
    ConvCase("nchw_pad_past_filter", 2, 7, 8, 12, 3, 20, 1, ((3, 1), (0, 4)), layout="NCHW"),
    ConvCase("nchw_one_output_channel", 2, 9, 9, 12, 3, 1, 1, 1, layout="NCHW"),
    ConvCase("nchw_one_input_channel", 2, 9, 9, 1, 3, 24, 1, 1, layout="NCHW"),
    ConvCase("nchw_one_pixel", 3, 1, 1, 12, 1, 20, 1, 0, layout="NCHW"),
    ConvCase("nchw_few_channels_s1", 2, 10, 40, 3, 3, 16, 1, 1, layout="NCHW"),
    # (dZ's 40 channel rows of 16 x 16 transposed in blocks of 8, for dW and for dA_prev's kernel)
    ConvCase("nchw_blocked_dZ", 1, 16, 16, 9, 3, 40, 1, 1, layout="NCHW"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_nchw_transposes_go_by_blocks_where_channel_rows_share_an_l1_set(dtype):
    """``tiles.transpose_blocked``: blocks of 8 channels where more than ``L1_WAYS`` of the C
    channel rows start in one L1 set (4 KiB planes: all of them), pixel by pixel elsewhere; the
    blocked transpose (the last block shifted back) pads and transposes exactly as NumPy does,
    and the named NCHW cases above do take it (their bits are checked against NHWC there)."""
    from fastnn.backends.numba import kernels
    assert tiles.transpose_blocked(32, 4096) and tiles.transpose_blocked(9, 8192)
    assert not tiles.transpose_blocked(7, 4096)  # (fewer than a block)
    assert not tiles.transpose_blocked(128, 28 * 28 * 4) and not tiles.transpose_blocked(256, 14 * 14 * 8)
    assert not tiles.transpose_blocked(8, 4096)  # (8 rows fit 8 ways)
    size = np.dtype(dtype).itemsize
    assert tiles.transpose_blocked(37, 256 * size) and not tiles.transpose_blocked(12, 256 * size)
    assert tiles.transpose_blocked(40, 256 * size) and not tiles.transpose_blocked(9, 256 * size)
    rng = np.random.default_rng(5)
    for C, H, W, top, left, bottom, right in ((8, 3, 5, 0, 0, 0, 0), (9, 4, 7, 1, 2, 0, 1), (37, 5, 6, 2, 1, 1, 3),
                                              (16, 2, 9, 0, 3, 2, 0)):
        X = rng.standard_normal((2, C, H, W)).astype(dtype)
        want = np.pad(X.transpose(0, 2, 3, 1), ((0, 0), (top, bottom), (left, right), (0, 0)))
        for blocked in (False, True):
            out = np.full(want.shape, np.nan, dtype)
            kernels.nchw_to_nhwc(X, out, top, left, blocked, 0, 1)
            assert np.array_equal(out, want), (C, blocked)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("threads", [1, 3])
def test_nchw_backward_equals_nhwc_bit_for_bit(monkeypatch, dtype, threads):
    """An NCHW backward (through the NCHW views where the tiled path runs, through copies
    elsewhere: few channels, pads past the filter, one channel or pixel) gives the very bits of
    the NHWC call on the same values, with and without the input gradient, inputs untouched."""
    monkeypatch.setattr(nb, "_SERIAL_WORK", 0)
    monkeypatch.setattr(nb, "_num_threads", lambda: threads)
    for case in _NCHW_BACKWARD:
        A, W, b, hp, dZ = case.make(dtype, seed=4)
        saved = [a.copy() for a in (A, W, b, dZ)]
        _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        dA, dW, db = fastnn.conv_backward(dZ, cache, backend="numba")
        none, dW2, db2 = fastnn.conv_backward(dZ, cache, backend="numba", input_grad=False)
        assert all(np.array_equal(x, y) for x, y in zip(saved, (A, W, b, dZ))), case.name
        twin = dataclasses.replace(case, layout="NHWC")
        At, Wt, bt, hpt, dZt = twin.make(dtype, seed=4)
        _, cache_t = fastnn.conv_forward(At, Wt, bt, hpt, backend="numba")
        dAt, dWt, dbt = fastnn.conv_backward(dZt, cache_t, backend="numba")
        assert dA.dtype == np.dtype(dtype) and dA.flags.c_contiguous and dA.shape == A.shape, case.name
        assert np.array_equal(dA, dAt.transpose(0, 3, 1, 2)), case.name
        for got in (dW, dW2):
            assert np.array_equal(got, dWt.transpose(3, 2, 0, 1)), case.name
        for got in (db, db2):
            assert np.array_equal(got.reshape(-1), dbt.reshape(-1)), case.name
        assert none is None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_few_channel_dA_with_right_or_bottom_pad_past_the_filter(dtype):
    """The few-channel pixel-vectorised dA_prev (C_in <= 4, stride 1) wrote each dZ row whole
    into a planar row W + fw - 1 wide: a right pad of fw or more wrote past it. Such calls take
    the per-phase path now; their dA_prev equals the reference's."""
    for pad in (((1, 1), (0, 3)), ((0, 4), (1, 1)), ((2, 3), (0, 5))):
        case = ConvCase("few_channels_pad_past", 2, 6, 40, 3, 3, 16, 1, pad)
        A, W, b, hp, dZ = case.make(dtype, seed=6)
        grads = fastnn.conv_backward(dZ, fastnn.conv_forward(A, W, b, hp, backend="numba")[1], backend="numba")
        refs = fastnn.conv_backward(dZ, fastnn.conv_forward(A, W, b, hp, backend=REF)[1], backend=REF)
        for name, g, r in zip(("dA_prev", "dW", "db"), grads, refs):
            _close(g, r, dtype, f"{pad} {name}")


@pytest.mark.parametrize("name", ["many_channels", "many_channels_s2", "course", "depthwise"])
def test_numba_kernels_called_with_any_strides_fill_their_outputs(monkeypatch, name):
    """The numba conv kernels called directly with arrays of other strides than the wrapper's
    (sliced inputs and filters, outputs inside bigger arrays) compute on C-contiguous copies and
    fill the outputs in place: the same bits as C-contiguous arrays."""
    from fastnn import _dispatch
    from fastnn._params import conv_params
    monkeypatch.setattr(nb, "_SERIAL_WORK", 0)
    fwd, bwd = _dispatch.kernel_of("conv_forward", "numba"), _dispatch.kernel_of("conv_backward", "numba")
    A, W, b, hp, dZ = CONV_CASES[name].make(np.float64, seed=2)
    p = conv_params(A, W, b, hp)
    bk = b.reshape(-1).copy()

    def strided(a):
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],))
        big[..., ::2] = a
        return big[..., ::2]
    Z = np.empty((p.m, p.Ho, p.Wo, p.K))
    fwd(p, A, W, bk, Z)
    Zs = strided(np.full(Z.shape, np.nan))
    fwd(p, strided(A), strided(W), bk, Zs)
    assert np.array_equal(Zs, Z)
    dA, dW, db = np.empty(A.shape), np.empty(W.shape), np.empty(p.K)
    bwd(p, A, W, dZ, dA, dW, db)
    dAs, dWs, dbs = strided(np.full(A.shape, np.nan)), np.empty(W.shape), np.empty(p.K)
    bwd(p, strided(A), strided(W), strided(dZ), dAs, dWs, dbs)
    assert np.array_equal(dAs, dA) and np.array_equal(dWs, dW) and np.array_equal(dbs, db)


def test_nchw_forward_without_a_channels_first_kernel_gets_copies(monkeypatch):
    """A kernel that does not declare ``channels_first`` (a plugin's, the reference) is given
    C-contiguous NHWC arrays, as ever."""
    from fastnn import _dispatch
    seen = []
    ref = _dispatch.kernel_of("conv_forward", REF)

    def plain(p, A, W, b, Z):
        seen.append((A.flags.c_contiguous, Z.flags.c_contiguous, A.shape, Z.shape))
        ref(p, A, W, b, Z)
    monkeypatch.setitem(_dispatch._kernels["conv_forward"], REF, plain)
    monkeypatch.setitem(_dispatch._candidates["conv_forward"], REF, plain)
    case = CONV_CASES["many_channels_nchw"]
    A, W, b, hp, _ = case.make(np.float64)
    Z, _ = fastnn.conv_forward(A, W, b, hp, backend=REF)
    assert seen and all(a and z for a, z, _, _ in seen)
    assert seen[0][2] == (case.m, case.H + 2, case.W + 2, case.C)  # (padded while transposed)
    Zn, _ = fastnn.conv_forward(A, W, b, hp, backend="numba")
    _close(Z, Zn, np.float64, "reference vs numba NCHW")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_forward_tile_variant_matches_reference(force_parallel, dtype):
    """Each (P, T) forward tile is reached by some (K, Ho*Wo), including the shifted last
    pixel and channel blocks (T not dividing K, P not dividing Ho*Wo), in one output row and
    in five (pixel blocks spanning rows where P does not divide Wo)."""
    reached = set()
    for K in (1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 19, 24, 32, 37, 48, 64):
        for Ho, Wo in itertools.product((1, 5), (1, 2, 3, 4, 5, 7, 8, 9, 13)):
            tile = tiles.fwd_tile(np.dtype(dtype), K, Ho * Wo)
            if (tile, Ho > 1) in reached:
                continue
            reached.add((tile, Ho > 1))
            # 3x3 filter, stride 1, pad 1: Ho = H, Wo = W; five rows with fw*C = 66 (the pixel-run
            # kernel where P does not divide Wo: tiles.fwd_plan), one row with fw*C = 18
            case = ConvCase(f"tile{tile}_K{K}_{Ho}x{Wo}", 2, Ho, Wo, 22 if Ho > 1 else 6, 3, K, 1, 1)
            A, W, b, hp, _ = case.make(dtype, seed=9)
            Z, _ = fastnn.conv_forward(A, W, b, hp, backend="numba")
            assert Z.shape == (2, Ho, Wo, K)
            _close(Z, fastnn.conv_forward(A, W, b, hp, backend=REF)[0], dtype, case.name)
    assert {t for t, _ in reached} == set(tiles.FWD_TILES[np.dtype(dtype)])
    assert len({t for t, rows in reached if rows and t[0] > 1}) >= 3  # (every tile: the test below)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_forward_pixel_blocks_span_rows_with_the_same_bits(dtype):
    """The NHWC forward kernel's pixel blocks run over each image's Ho*Wo pixels (a block may
    span output rows; the last one shifted back): every tile, called directly, gives the same
    bits whatever its groups of blocks (R) and chunks, and equals the reference; the row kernel
    (blocks within output rows) the same bits again; strides 1 and (2, 3), widths that no P
    divides, one-row and one-column outputs; outputs pre-filled with NaN."""
    from fastnn._params import conv_params
    rng = np.random.default_rng(17)
    dt = np.dtype(dtype)
    for P, T in tiles.FWD_TILES[dt]:
        for H, Wd, s in ((7, 11, (1, 1)), (9, 14, (2, 3)), (3, 1, (1, 1)), (1, 3 * P + 2, (1, 1))):
            C, K, f = 5, T + 3, 3
            case = ConvCase("flat", 2, H, Wd, C, f, K, s, 1)
            A, W, b, hp, _ = case.make(dtype, seed=int(rng.integers(100)))
            p = conv_params(A, W, b, hp)
            if not tiles.fits((P, T), K, p.Ho * p.Wo):
                continue
            Xp = nb._padded_input(p, A)
            args = (Xp.reshape(p.m, p.Hp, -1), nb._pack_channels(W.reshape(f, f * C, K), T),
                    nb._pack_channels(b.reshape(K), T))
            first = None
            whole = (p.Ho, p.Wo, 0, p.Wo, 1)
            valid = (p.ph, p.ph + p.H)  # (the padded input's data rows: taps on the others skipped)
            for R, n in ((1, 1), (2, 3), (5, 2), (64, 1)):
                Z = np.full((p.m, p.Ho * p.Wo, K), np.nan, dtype=dt)
                for c in range(n):
                    nb._CONV.FWD[P, T](*args, Z, *whole, p.sh, p.sw, C, *valid, R, c, n)
                if first is None:
                    first = Z
                    ref = fastnn.conv_forward(A, W, b, hp, backend=REF)[0]
                    _close(Z.reshape(ref.shape), ref, dtype, f"tile {(P, T)} {H}x{Wd} s{s}")
                assert np.array_equal(Z, first), ((P, T), H, Wd, s, R, n)
            if P <= p.Wo:  # the row kernel (where P divides Wo, the one that runs): the same bits
                for n in (1, 3):
                    Z = np.full((p.m, p.Ho * p.Wo, K), np.nan, dtype=dt)
                    for c in range(n):
                        nb._CONV.FWD_ROWS[P, T](*args, Z, *whole, p.sh, p.sw, C, *valid, c, n)
                    assert np.array_equal(Z, first), ("rows", (P, T), H, Wd, s, n)
            # either kernel into a strided grid of a larger output (a stride phase of dA_prev):
            # the same bits there, and nothing written outside it
            for kern, extra in ((nb._CONV.FWD[P, T], (2,)), (nb._CONV.FWD_ROWS[P, T], ())):
                if extra == () and P > p.Wo:
                    continue
                big = np.full((p.m, 2 * p.Ho + 1, 3 * p.Wo + 2, K), np.nan, dtype=dt)
                grid = (p.Ho, p.Wo, 1 * big.shape[2] + 2, 2 * big.shape[2], 3)
                for c in range(2):
                    kern(*args, big.reshape(p.m, -1, K), *grid, p.sh, p.sw, C, *valid, *extra, c, 2)
                assert np.array_equal(big[:, 1::2, 2::3][:, :p.Ho, :p.Wo].reshape(first.shape), first), ((P, T), H, Wd, s)
                outside = np.ones(big.shape[:3], dtype=bool)
                outside[:, 1::2, 2::3][:, :p.Ho, :p.Wo] = False
                assert np.isnan(big[outside]).all(), ("wrote outside the grid", (P, T), H, Wd, s)


def test_variants_carry_their_kernels_attributes():
    """Every numba variant is declared with its registered kernel's ``handles`` (and the
    backward's ``input_grad_optional``): without it, the dispatcher broke a grouped, dilated or
    unevenly padded call into course calls, so no variant was ever a candidate for one."""
    from fastnn import _dispatch
    for op in ("conv_forward", "conv_backward", "pool_forward", "pool_backward"):
        base = _dispatch.kernel_of(op, "numba")
        for v in _dispatch.variants(op, "numba"):
            fn = _dispatch.kernel_of(op, "numba" + _dispatch.SEP + v)
            assert fn.handles is base.handles, (op, v)
            assert getattr(fn, "input_grad_optional", None) == getattr(base, "input_grad_optional", None), (op, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_a_tile_variant_runs_its_tile_on_grouped_and_dilated_calls(monkeypatch, dtype):
    """A forward tile variant applies to a grouped or dilated call where its tile fits a group
    (K/G channels) and differs from the rule's; pinned, every group's kernel runs that tile (the
    row or pixel-run build), and the result matches the reference. Depthwise calls (their own
    kernels, whatever the tile) get none."""
    from fastnn import _dispatch
    from fastnn._params import conv_params
    dt = np.dtype(dtype)
    ran = []
    _record(monkeypatch, nb._CONV.FWD_GD, ran)
    _record(monkeypatch, nb._CONV.FWD_GD_RUN, ran)
    reached = 0
    for case in (ConvCase("g2_wide", 2, 9, 10, 64, 3, 128, 1, 1, groups=2),
                 ConvCase("d2_wide", 2, 11, 13, 32, 3, 64, 1, 2, dilation=2),
                 ConvCase("g4_d2_s2", 2, 15, 14, 64, 3, 64, 2, 2, dilation=2, groups=4)):
        A, W, b, hp, _ = case.make(dtype, seed=3)
        p = conv_params(A, W, b, hp)
        ref = fastnn.conv_forward(A, W, b, hp, backend=REF)[0]
        group = (dt, p.K // p.G, p.Ho, p.Wo, p.fw * (p.C // p.G))
        rule = tiles.fwd_plan(*group)[:2]
        for tile in tiles.FWD_VARIANTS[dt]:
            name = "numba" + _dispatch.SEP + "p%dt%d" % tile
            if name not in _dispatch.candidates("conv_forward", p):  # (it would run the rule's tile)
                assert tiles.fwd_plan(*group, tile)[:2] == rule, (case.name, tile)
                continue
            assert tile != rule
            reached += 1
            ran.clear()
            with _dispatch.pin_candidates({"conv_forward": name}):
                Z = fastnn.conv_forward(A, W, b, hp)[0]
            assert ran and set(ran) == {tile}, (case.name, tile, ran)
            _close(Z, ref, dtype, f"{case.name} {name}")
    assert reached >= 2
    dw = ConvCase("dw", 2, 9, 10, 64, 3, 64, 1, 1, groups=64).make(dtype, seed=3)
    p = conv_params(*dw[:4])
    assert not [c for c in _dispatch.candidates("conv_forward", p) if _dispatch.SEP + "p" in c]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_grouped_forward_pixel_runs_give_the_row_kernels_bits(dtype):
    """The grouped/dilated forward's pixel-run kernel (FWD_GD_RUN: blocks spanning output rows),
    called directly for every tile on the second of two groups, dilated or not, at strides 1 and
    (2, 3): the same bits whatever its groups of blocks (R) and chunks, the bits of the row kernel
    (FWD_GD) where a row holds a block, the reference's values in the group's channels, and the
    other group's channels (NaN before) untouched."""
    from fastnn._params import conv_params
    rng = np.random.default_rng(23)
    dt = np.dtype(dtype)
    for P, T in tiles.FWD_TILES[dt]:
        for H, Wd, s, d in ((7, 11, (1, 1), 1), (9, 14, (2, 3), 1), (8, 13, (1, 1), 2), (3, 1, (1, 1), 2),
                            (1, 3 * P + 2, (1, 1), 1)):
            Cg, Kg, f = 5, T + 3, 3
            case = ConvCase("gd", 2, H, Wd, 2 * Cg, f, 2 * Kg, s, d, dilation=d, groups=2)
            A, W, b, hp, _ = case.make(dtype, seed=int(rng.integers(100)))
            p = conv_params(A, W, b, hp)
            if not tiles.fits((P, T), Kg, p.Ho * p.Wo):
                continue
            Xr = nb._padded_input(p, A).reshape(p.m, p.Hp, -1)
            args = (Xr, nb._pack_channels(W[..., Kg:].reshape(f, f * Cg, Kg), T),
                    nb._pack_channels(b.reshape(-1)[Kg:], T))
            group = (p.sh, p.sw, p.C, p.dh, p.dw * p.C, Cg, Cg, Kg, Kg, p.ph, p.ph + p.H)  # (the second group)
            ref = fastnn.conv_forward(A, W, b, hp, backend=REF)[0]
            first = None
            for R, n in ((1, 1), (2, 3), (5, 2), (64, 1)):
                Z = np.full((p.m, p.Ho, p.Wo, 2 * Kg), np.nan, dtype=dt)
                for c in range(n):
                    nb._CONV.FWD_GD_RUN[P, T](*args, Z.reshape(p.m, p.Ho * p.Wo, 2 * Kg), p.Ho, p.Wo, *group, R,
                                              c, n)
                assert np.isnan(Z[..., :Kg]).all(), ("wrote outside the group", (P, T), H, Wd, s, d)
                if first is None:
                    first = Z
                    _close(Z[..., Kg:], ref[..., Kg:], dtype, f"tile {(P, T)} {H}x{Wd} s{s} d{d}")
                assert np.array_equal(Z, first, equal_nan=True), ((P, T), H, Wd, s, d, R, n)
            if P <= p.Wo:
                for n in (1, 3):
                    Z = np.full((p.m, p.Ho, p.Wo, 2 * Kg), np.nan, dtype=dt)
                    for c in range(n):
                        nb._CONV.FWD_GD[P, T](*args, Z, *group, c, n)
                    assert np.array_equal(Z, first, equal_nan=True), ("rows", (P, T), H, Wd, s, d, n)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_backward_tile_variant_matches_reference(force_parallel, monkeypatch, dtype):
    """Each dW kernel's tile (by K) of ``BWD_T`` is reached, with K and fw*C zero-padded,
    over strides 1 and 2 and pads 1 and 3 (dZ cropped for dA_prev's stride phases), C_in
    from 2 (the few-channel gather with K >= lanes) to 19, widths 9 and 3."""
    picked = []
    _record(monkeypatch, nb._CONV.DW, picked)
    # (K = 120 reaches the channel tiles of 4 vectors; with AVX-512, K = 40 those of 2)
    ks = (3, 5, 11, 21, 40, 120)
    cases = [ConvCase(f"C{C}_K{K}_s{stride}_p{pad}", 2, 7, 9 if C != 5 else 3, C, 3, K, stride, pad)
             for C, K, (stride, pad) in itertools.product((2, 5, 9, 19), ks, ((1, 1), (2, 1), (2, 3)))]
    # (width 9, or 3: fewer pixels per stride phase than the dA pixel tile; and filters 2 wide,
    # fw*C = 10, 38: columns padded to the wide tiles' 3 rows)
    cases += [ConvCase(f"f2_C{C}_K120", 2, 6, 8, C, 2, 120, 1, 1) for C in (5, 19)]
    for case in cases:
        A, W, b, hp, dZ = case.make(dtype, seed=4)
        _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        _, cache_ref = fastnn.conv_forward(A, W, b, hp, backend=REF)
        for name, g, g_ref in zip(("dA_prev", "dW", "db"), fastnn.conv_backward(dZ, cache, backend="numba"),
                                  fastnn.conv_backward(dZ, cache_ref, backend=REF)):
            _close(g, g_ref, dtype, f"{case.name} {name}")
    assert {T for _, T in picked} == set(tiles.BWD_T[np.dtype(dtype)])
    lanes = tiles.LANES[np.dtype(dtype)]
    # the one-vector tile's rows by fw*C; with AVX-512 half a vector's (a ymm register's) too
    one = {lanes, lanes // 2} if tiles.AVX512 else {lanes}
    assert {J for J, T in picked if T < min(one)} == {tiles.DW_J[np.dtype(dtype)]}
    if tiles.AVX512:  # tiles of 2 and 4 vectors, their rows by fw*C (tiles.DW_J_BY_VECTORS)
        wide = {(J, T // lanes) for J, T in picked if T > lanes}
        assert {v for _, v in wide} == {2, 4} and all(J in tiles.DW_J_BY_VECTORS[v] for J, v in wide), wide
    else:  # (AVX2: 4 vectors in DW_J_WIDE rows)
        assert {J for J, T in picked if T != lanes and T <= 2 * lanes} == {tiles.DW_J[np.dtype(dtype)]}
        assert {J for J, T in picked if T > 2 * lanes} == {tiles.DW_J_WIDE}
    # fw*C = 6, 15, 27, 57: the one-vector (and half-vector) tiles' rows J = 6 and 9 (and 4
    # where K allows)
    for width in one:
        assert {J for J, T in picked if T == width} >= {6, 9}, (width, picked)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_dW_kernel_passes_span_rows_with_the_same_bits(dtype):
    """The dW tile kernels sum each pass's pixels as one run across its output rows (a table of
    each pixel's input offset): every tile, called directly, gives the same bits whatever the
    pass length (1 row, 3, all), and for a fixed chunk count its partials sum to the reference's
    dW and db; strides 1 and (2, 3), dilated rows, widths below the tile's columns, K over one
    channel tile (dZ copied per pass) and K of one tile (dZ read in place); and the K channels
    from an offset of a wider dZ (a group's), the same bits."""
    from fastnn._params import conv_params
    dt = np.dtype(dtype)
    for J, T in tiles.all_dw_tiles():
        for H, Wd, s, d in ((7, 9, (1, 1), 1), (9, 11, (2, 3), 1), (8, 5, (1, 1), 2)):
            # K = T + 1: K padded to 2T, the pass's dZ copied into blocks of T; K = T: read in place
            C, K, f = 3, T + (T > 1 and d == 1), 3
            case = ConvCase("passes", 2, H, Wd, C, f, K, s, 1, dilation=d)
            A, W, b, hp, dZ = case.make(dtype, seed=J + T)
            p = conv_params(A, W, b, hp)
            ew = (-p.Wp) % p.sw
            Xs = nb._padded_input(p, A, ew).reshape(p.m, p.Hp, (p.Wp + ew) // p.sw, p.sw * p.C)
            L = f * C
            Kp, Lp = -(-K // T) * T, -(-L // J) * J
            dZk = np.ascontiguousarray(np.pad(dZ, ((0, 0), (0, 0), (0, 0), (0, Kp - K))))
            kw, c = np.divmod(np.minimum(np.arange(Lp), L - 1), C)
            ja, jb = np.divmod(kw * (p.dw * C) + c, p.sw * C)
            _, cache = fastnn.conv_forward(A, W, b, hp, backend=REF)
            _, dW_ref, db_ref = fastnn.conv_backward(dZ, cache, backend=REF)
            for nch in (1, 3):
                first = None
                for gr in (1, 3, p.m * p.Ho):
                    part = np.full((nch, f, Lp, Kp), np.nan, dtype=dt)
                    pdb = np.full((nch, Kp), np.nan, dtype=dt)
                    for chunk in range(nch):
                        nb._CONV.DW[J, T](Xs.reshape(-1), dZk.reshape(-1, Kp), part, pdb, p.Ho, p.Wo, p.Hp,
                                          Xs.shape[2], Xs.shape[3], p.sh, ja, jb, gr, p.dh, 0, chunk, nch)
                    if first is None:
                        first = (part, pdb)
                        _close(part.sum(0)[:, :L, :K].reshape(W.shape), dW_ref, dtype, f"dW {(J, T)} {H}x{Wd} s{s} d{d}")
                        _close(pdb.sum(0)[:K], db_ref.reshape(-1), dtype, f"db {(J, T)}")
                    assert np.array_equal(part, first[0]) and np.array_equal(pdb, first[1]), ((J, T), H, Wd, s, d, gr, nch)
                # dZ's channels from koff of a wider dZ (a group's: the channels around it NaN): the same bits
                wide = np.full(dZk.shape[:3] + (Kp + 5,), np.nan, dtype=dt)
                wide[..., 2:2 + Kp] = dZk
                part = np.full((nch, f, Lp, Kp), np.nan, dtype=dt)
                pdb = np.full((nch, Kp), np.nan, dtype=dt)
                for chunk in range(nch):
                    nb._CONV.DW[J, T](Xs.reshape(-1), wide.reshape(-1, Kp + 5), part, pdb, p.Ho, p.Wo, p.Hp,
                                      Xs.shape[2], Xs.shape[3], p.sh, ja, jb, 3, p.dh, 2, chunk, nch)
                assert np.array_equal(part, first[0]) and np.array_equal(pdb, first[1]), ("koff", (J, T), H, Wd, s, d)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_stride1_dA_runs_the_forward_kernel_and_matches_reference(force_parallel, monkeypatch, dtype):
    """For stride 1, dA_prev is the forward tile kernel on dZ padded by f-1-pad (cropped for
    pad >= f) with W flipped: non-square filters, unequal pads (0, f-1 and f included), 1x1,
    every forward tile width, fewer columns than the tile's pixels, C_in <= 4 with C_out
    under the lane count, batch 1."""
    shapes = []
    real = nb._fwd_kernel_call
    monkeypatch.setattr(nb, "_fwd_kernel_call", lambda *a, **k: (shapes.append(a[3].shape), real(*a, **k)))
    cases = [ConvCase("f3_p1", 2, 7, 9, 5, 3, 7, 1, 1), ConvCase("f3x5_p0x2", 1, 8, 11, 9, (3, 5), 16, 1, (0, 2)),
             ConvCase("f1_p0", 2, 5, 6, 19, 1, 4, 1, 0), ConvCase("f2x3_p1x2", 2, 6, 13, 33, (2, 3), 17, 1, (1, 2)),
             ConvCase("f3_p2_C17", 1, 4, 5, 17, 3, 8, 1, 2), ConvCase("C3_K3", 2, 6, 7, 3, 3, 3, 1, 1),
             ConvCase("narrow", 2, 5, 2, 12, 3, 6, 1, 1), ConvCase("f3_p3_crop", 2, 7, 7, 8, 3, 8, 1, 3)]
    widths = set()
    for case in cases:
        A, W, b, hp, dZ = case.make(dtype, seed=5)
        _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        _, cache_ref = fastnn.conv_forward(A, W, b, hp, backend=REF)
        shapes.clear()
        grads = fastnn.conv_backward(dZ, cache, backend="numba")
        assert A.shape in shapes, case.name
        widths.add((tiles.fwd_plan(np.dtype(dtype), case.C, case.H, case.W, W.shape[1] * W.shape[3]), case.W))
        for name, g, g_ref in zip(("dA_prev", "dW", "db"), grads, fastnn.conv_backward(dZ, cache_ref, backend=REF)):
            _close(g, g_ref, dtype, f"{case.name} {name}")
    # (three channel widths, and a shifted last pixel block: P not dividing Wo on the row kernel)
    assert len({T for (_, T, _), _ in widths}) >= 3 and any(Wo % P for (P, _, rows), Wo in widths if rows)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_strided_dA_runs_the_forward_kernel_per_phase(force_parallel, monkeypatch, dtype):
    """Strides > 1: dA_prev is assembled from one forward-kernel call per stride phase that
    a tap reaches (a phase none reaches, stride > f, is zeroed): strides 2, 3 and (2, 3),
    non-square filters, pads 0 to beyond f (dZ cropped for some phases), odd sizes, batch 1."""
    calls = []
    real_fwd = nb._fwd_kernel_call
    monkeypatch.setattr(nb, "_fwd_kernel_call", lambda *a, **k: (calls.append((a[3].shape, k.get("at"))),
                                                                  real_fwd(*a, **k)))
    cases = [ConvCase("s2_f3_p1", 2, 9, 11, 6, 3, 7, 2, 1), ConvCase("s3_f2_p0", 1, 10, 8, 9, 2, 5, 3, 0),
             ConvCase("s23_f3x5_p1x2", 2, 11, 13, 5, (3, 5), 8, (2, 3), (1, 2)),
             ConvCase("s2_f4_p3", 1, 9, 9, 12, 4, 17, 2, 3), ConvCase("s2_f3_p4", 2, 8, 8, 6, 3, 5, 2, 4)]
    for case in cases:
        A, W, b, hp, dZ = case.make(dtype, seed=7)
        _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        _, cache_ref = fastnn.conv_forward(A, W, b, hp, backend=REF)
        calls.clear()
        dA = fastnn.conv_backward(dZ, cache, backend="numba")[0]
        phase_calls = [at for shape, at in calls if shape == A.shape]  # (each into dA_prev itself)
        (fh, fw), (sh, sw) = (np.broadcast_to(case.f, 2), np.broadcast_to(case.stride, 2))
        reached = sum(1 for r in range(sh) if r < fh) * sum(1 for r in range(sw) if r < fw)
        assert len(phase_calls) == reached, case.name
        # each a grid of dA_prev at the strides, inside it, the grids disjoint
        cover = np.zeros(A.shape[1:3], dtype=int)
        for nh, nw, h0, hs, w0, ws in phase_calls:
            assert (hs, ws) == (sh, sw) and h0 < sh and w0 < sw, (case.name, h0, w0)
            assert h0 + (nh - 1) * hs < A.shape[1] and w0 + (nw - 1) * ws < A.shape[2], case.name
            cover[h0::hs, w0::ws][:nh, :nw] += 1
        assert cover.max() == 1, case.name
        _close(dA, fastnn.conv_backward(dZ, cache_ref, backend=REF)[0], dtype, case.name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("C", [1, 2, 3, 4])
def test_few_channel_dA_kernels_match_reference(force_parallel, dtype, C):
    """dA_prev for C_in <= 4 sums over k in SIMD lanes plus a scalar tail (K = 11 and 16),
    over strides 1 and (2, 3), pads 0 to beyond f, and odd widths."""
    for K, f, stride, pad in ((11, 3, 1, 1), (16, (3, 5), (2, 3), (1, 2)), (9, 2, 3, 3), (19, 7, 2, 3)):
        case = ConvCase(f"C{C}_K{K}", 2, 13, 11, C, f, K, stride, pad)
        A, W, b, hp, dZ = case.make(dtype, seed=3)
        _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        _, cache_ref = fastnn.conv_forward(A, W, b, hp, backend=REF)
        dA = fastnn.conv_backward(dZ, cache, backend="numba")[0]
        _close(dA, fastnn.conv_backward(dZ, cache_ref, backend=REF)[0], dtype, case.name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_parallel_pool_and_activation_kernels_match_reference(force_parallel, dtype):
    for case in POOL_CASES.values():
        A, hp, dA = case.make(dtype, seed=6)
        for mode in ("max", "average"):
            out, cache = fastnn.pool_forward(A, hp, mode, backend="numba")
            _close(out, fastnn.pool_forward(A, hp, mode, backend=REF)[0], dtype, f"{case.name} {mode}")
            for ties in ("all", "first"):
                _close(fastnn.pool_backward(dA, cache, mode, ties=ties, backend="numba"),
                       fastnn.pool_backward(dA, cache, mode, ties=ties, backend=REF), dtype,
                       f"{case.name} {mode} {ties} backward")
    X = np.random.RandomState(0).standard_normal((3, 50)).astype(dtype)
    for name in ("relu", "sigmoid"):
        _close(getattr(fastnn, name)(X, backend="numba")[0], getattr(fastnn, name)(X, backend=REF)[0], dtype, name)


def test_auto_picks_numba():
    assert fastnn.available_backends("conv_forward")[0] == "numba"
    from fastnn._dispatch import OPS, resolve_name
    for op in OPS:
        assert resolve_name(op) == "numba", op


@pytest.mark.parametrize("hp", [{"f": 3, "stride": 2, "pad": 1}, {"f": 2, "stride": 2}, {"f": (2, 3), "stride": (3, 3), "pad": 1}],
                         ids=["overlapping", "tiling", "gaps"])
@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("big", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("C", [3, 11, 21, 37, 64, 100])
def test_pool_forward_propagates_nan(monkeypatch, big, dtype, mode, hp, C):
    """NaN, -inf and ties through every pooling kernel; C = 3, 11, 21 and 37 reach each
    channel block width of ``POOL_NB`` (11, 21 and 37 with the last block shifted back), 64
    and 100 two and four 32-wide blocks (100 shifted); C >= 37 also the max- and
    average-pooling backward's register gathers. "parallel":
    3 chunks of the 12 input rows, so two chunks start inside an image (the one-pass max
    backward then recomputes the window maxima it needs there)."""
    if big:
        monkeypatch.setattr(nb, "_SERIAL_WORK", 0)
        monkeypatch.setattr(nb, "_num_threads", lambda: 3)
    A = np.random.RandomState(0).randint(-3, 3, size=(2, 6, 6, C)).astype(dtype)  # ties
    A[0, 1, 1, 0] = np.nan  # a NaN early in a window
    A[0, 2, 2, C - 2] = np.nan  # a NaN in the last channel block
    A[1, 5, 4, 2] = np.nan  # a NaN last in a window
    A[0, 3, 3, 1] = -np.inf
    out = fastnn.pool_forward(A, hp, mode, backend="numba")[0]
    ref = fastnn.pool_forward(A, hp, mode, backend=REF)[0]
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    assert np.isnan(out).any()
    _close(out, ref, dtype, f"C={C}")
    dA = np.random.RandomState(1).randint(-3, 4, size=out.shape).astype(dtype)  # channels told apart
    for ties in ("all", "first"):
        g = fastnn.pool_backward(dA, (A, hp), mode, ties=ties, backend="numba")
        np.testing.assert_array_equal(g, fastnn.pool_backward(dA, (A, hp), mode, ties=ties, backend=REF))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_no_input_mutation_and_dtype_kept(force_parallel, dtype):
    A, W, b, hp, dZ = CONV_CASES["strided_nonsquare_pad"].make(dtype, seed=1)
    copies = [x.copy() for x in (A, W, b, dZ)]
    Z, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
    grads = fastnn.conv_backward(dZ, cache, backend="numba")
    P, php, dP = POOL_CASES["padded"].make(dtype)
    Pc, dPc = P.copy(), dP.copy()
    out, pc = fastnn.pool_forward(P, php, "max", backend="numba")
    gp = fastnn.pool_backward(dP, pc, "max", backend="numba")
    for x, c in zip((A, W, b, dZ, P, dP), copies + [Pc, dPc]):
        np.testing.assert_array_equal(x, c)
    for r in (Z, *grads, out, gp, fastnn.relu(A, backend="numba")[0], fastnn.sigmoid(A, backend="numba")[0]):
        assert r.dtype == np.dtype(dtype)


def _conv_round(case, dtype):
    A, W, b, hp, dZ = case.make(dtype, seed=3)
    Z, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
    return (Z, *fastnn.conv_backward(dZ, cache, backend="numba"))


CONCURRENT = ConvCase("concurrent", 4, 12, 12, 16, 3, 24, 1, 1)  # above the serial threshold


def test_results_deterministic_run_to_run():
    for dtype in DTYPES:
        first = _conv_round(CONCURRENT, dtype)
        for _ in range(3):
            for x, y in zip(first, _conv_round(CONCURRENT, dtype)):
                np.testing.assert_array_equal(x, y)


def test_concurrent_calls_from_python_threads():
    expected = {dt: _conv_round(CONCURRENT, dt) for dt in DTYPES}
    small = CONV_CASES["course"]
    expected_small = _conv_round(small, np.float64)
    errors = []

    def worker(k):
        try:
            for n in range(50):
                dt = DTYPES[(k + n) % 2]
                for x, y in zip(_conv_round(CONCURRENT, dt), expected[dt]):
                    np.testing.assert_array_equal(x, y)
                for x, y in zip(_conv_round(small, np.float64), expected_small):
                    np.testing.assert_array_equal(x, y)
        except BaseException as exc:  # noqa: BLE001 - report any failure to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_num_threads_setting_in_subprocess():
    code = ("import fastnn, numba; from fastnn.backends.numba import config as c; "
            "print(c.num_threads(), numba.config.SLP_VECTORIZE)")
    env = dict(os.environ, FASTNN_NUM_THREADS="1", FASTNN_NUMBA_SLP="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "0"]
    env = dict(os.environ, FASTNN_NUM_THREADS="0")
    code = "from fastnn.backends.numba import config as c; c.num_threads()"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode != 0


def test_use_num_threads_sets_the_count_for_this_thread_only(monkeypatch):
    """``use_num_threads(n)`` wins over the process-wide settings in its block and its thread only,
    and a kernel call there runs on n threads, a small one in n chunks (what fastnn.dask's tasks rely on)."""
    from fastnn.backends.numba import config as c

    monkeypatch.setattr(c.numba.config, "NUMBA_NUM_THREADS", 4)
    old = c.override_num_threads(3)
    try:
        seen, chunks = {}, []
        gate = threading.Barrier(2)

        def other():
            gate.wait()  # while the main thread is inside its block
            seen["other"] = c.num_threads()
            gate.wait()

        t = threading.Thread(target=other)
        t.start()
        with c.use_num_threads(2) as n:
            gate.wait()
            gate.wait()
            seen["inside"], seen["yielded"], seen["backend"] = c.num_threads(), n, nb._num_threads()
            monkeypatch.setattr(nb, "run_chunks", lambda kernel, args, k, nthreads=None: chunks.append((k, nthreads)))
            nb._threaded(None)
            with c.use_num_threads(9):  # capped at NUMBA_NUM_THREADS, and nested blocks restore
                seen["capped"] = c.num_threads()
            seen["restored"] = c.num_threads()
        t.join()
        seen["after"] = c.num_threads()
    finally:
        c.override_num_threads(old)
    assert seen == {"other": 3, "inside": 2, "yielded": 2, "backend": 2, "capped": 4, "restored": 2, "after": 3}
    assert chunks == [(2, 2)]  # (work 0: one chunk a thread)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="thread count must be a positive integer"):
            with c.use_num_threads(bad):
                pass


def test_numba_set_num_threads_is_followed_in_subprocess():
    """Without FASTNN_NUM_THREADS the count is Numba's for the calling thread: its default
    (NUMBA_NUM_THREADS) without starting Numba's threading layer, numba.set_num_threads once
    the user set it."""
    code = ("import numba; from numba.np.ufunc import parallel; from fastnn.backends.numba import config as c; "
            "a = c.num_threads(); started = parallel._is_initialized; numba.set_num_threads(1); "
            "print(a == numba.config.NUMBA_NUM_THREADS, started, c.num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "1"]


def test_kernels_run_on_fastnn_threads_without_numba_threading_layer():
    """A big call runs in chunks on fastnn's worker threads; nothing starts Numba's
    threading layer (no parfor kernels, no OpenMP workers spinning after a kernel)."""
    code = ("import numpy as np, fastnn; from numba.np.ufunc import parallel; from fastnn.backends.numba import threads as _threads; "
            "A = np.ones((2, 64, 64, 16)); "
            "fastnn.pool_forward(A, {'f': 2, 'stride': 2}, 'max', backend='numba'); "
            "W = np.ones((3, 3, 16, 16)); b = np.zeros((1, 1, 1, 16)); "
            "Z, c = fastnn.conv_forward(A, W, b, {'stride': 1, 'pad': 1}, backend='numba'); "
            "fastnn.conv_backward(Z, c, backend='numba'); "
            "print(_threads.worker_count(), parallel._is_initialized)")
    env = dict(os.environ, FASTNN_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False"]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_elementwise_kernels_match_reference_in_chunks(monkeypatch, dtype):
    """relu, relu_backward, sigmoid and sigmoid_backward threaded on 3 threads in 3 to 24
    uneven chunks (every call, ``_THREADED_WORK`` 0), on NaN, +-0, +-inf and random signs: relu and its backward
    equal the reference exactly (NaN where it has NaN), the sigmoids within the tolerance rule."""
    monkeypatch.setattr(nb, "_THREADED_WORK", 0)
    monkeypatch.setattr(nb, "_num_threads", lambda: 3)
    rng = np.random.default_rng(11)
    for n in (1, 2, 7, 1000, 4099):
        Z = rng.standard_normal(n).astype(dtype)
        dA = rng.standard_normal(n).astype(dtype)
        specials = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf], dtype=dtype)
        Z[rng.integers(0, n, size=min(n, 20))] = rng.choice(specials, size=min(n, 20))
        dA[rng.integers(0, n, size=min(n, 5))] = np.nan
        for name, args in (("relu", (Z,)), ("relu_backward", (dA, Z))):
            got = getattr(fastnn, name)(*args, backend="numba")
            want = getattr(fastnn, name)(*args, backend=REF)
            got, want = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
            assert got.dtype == want.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} n={n}")
        finite = np.where(np.isfinite(Z), Z, 0).astype(dtype)
        s, _ = fastnn.sigmoid(finite, backend="numba")
        _close(s, fastnn.sigmoid(finite, backend=REF)[0], dtype, f"sigmoid n={n}")
        _close(fastnn.sigmoid_backward(dA, finite, backend="numba"),
               fastnn.sigmoid_backward(dA, finite, backend=REF), dtype, f"sigmoid_backward n={n}")


def test_few_channel_stride1_dA_over_pixels_matches_reference(force_parallel, monkeypatch):
    """float32, C_in 1-4 at stride 1 with rows of at least one pixel block: the pixel-vectorised
    dA_prev kernel runs (each C), with pads 0 to f-1, non-square filters, K under, at and over
    the lanes, widths just at a block and past it (a shifted last block); dA, dW, db against
    the reference."""
    picked = []
    _record(monkeypatch, nb._CONV.DA_PX, picked)
    dtype = np.float32
    cases = []
    for C, P in tiles.DA_PX_P[np.dtype(dtype)].items():
        cases += [ConvCase(f"C{C}_f3_p1_W{P}", 2, 4, P, C, 3, 5, 1, 1),
                  ConvCase(f"C{C}_f3x2_p2x1_W{P + 7}", 1, 5, P + 7, C, (3, 2), 8, 1, (2, 1)),
                  ConvCase(f"C{C}_f5_p0_W{P + 1}", 2, 6, P + 1, C, 5, 19, 1, 0)]
    for case in cases:
        A, W, b, hp, dZ = case.make(dtype, seed=8)
        _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        _, cache_ref = fastnn.conv_forward(A, W, b, hp, backend=REF)
        dA3 = fastnn.conv_backward(dZ, cache, backend="numba")[0]
        for name, g, g_ref in zip(("dA_prev", "dW", "db"), fastnn.conv_backward(dZ, cache, backend="numba"),
                                  fastnn.conv_backward(dZ, cache_ref, backend=REF)):
            _close(g, g_ref, dtype, f"{case.name} {name}")
        with monkeypatch.context() as one:  # one chunk: the same bits as three
            one.setattr(nb, "_num_threads", lambda: 1)
            np.testing.assert_array_equal(fastnn.conv_backward(dZ, cache, backend="numba")[0], dA3)
    assert {C for C, _ in picked} == set(tiles.DA_PX_P[np.dtype(dtype)])


def _dw_row_variants(dtype):
    """(filter width, column stride, NB) for the row-kernel test: in float32 every geometry, the
    channel blocks taken in turn (every variant compiles a kernel of several seconds), in
    float64 the 3x3 one at every block."""
    from fastnn.backends.numba.templates import DW_ROW_GEOMETRY
    blocks = sorted({tiles.dw_row_block(C, dtype) for C in range(8, 129)}, reverse=True)
    if np.dtype(dtype) == np.float64:
        return [(3, 1, NB) for NB in blocks]
    return [(FW, S, blocks[i % len(blocks)]) for i, (FW, S) in enumerate(DW_ROW_GEOMETRY)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_depthwise_row_kernels_equal_the_generic_ones_bit_for_bit(dtype):
    """The row-sliding depthwise forward and dW (templates.dw_fwd_row, dw_dW_row) against the
    generic builds they stand in for, called directly: the forward's filter widths (column
    stride 1), dW's widths at column strides 1 and 2, channel blocks, pads 0 to past the filter, rows narrower than a pixel block, dilated rows,
    shifted last channel blocks, 1 and 3 chunks; outputs pre-filled with NaN (a lost write fails)."""
    from fastnn.backends.numba.templates import DW_ROW_DW_WIDTHS
    rng = np.random.default_rng(11)
    dt = np.dtype(dtype)
    variants = _dw_row_variants(dtype)
    for FW, S, NB in variants:
        for C, H, W, pad, dh in ((NB, 7, 9 + FW, FW // 2, 1), (NB + 5, 5, FW + 1, FW, 2), (2 * NB + 3, 4, 3, 1, 1)):
            fh = 3
            Ho, Wo = H + 2 * pad - dh * (fh - 1), (W + 2 * pad - FW) // S + 1
            if Ho < 1 or Wo < 1:
                continue
            A = rng.standard_normal((2, H, W, C)).astype(dt)
            Wd = rng.standard_normal((fh, FW, C)).astype(dt)
            b = rng.standard_normal(C).astype(dt)
            args = (1, S, pad, pad, dh, 1)
            Z0, Z1 = np.full((2, 2, Ho, Wo, C), np.nan, dtype=dt)
            nb._DW.DW["fwd", tiles.pool_block(C)](A, Wd, b, Z0, *args, 0, 1)
            for n in (1, 3):
                Z1[...] = np.nan
                for c in range(n):
                    nb._DW.DW["fwd_row", NB, FW, S](A, Wd, b, Z1, *args, c, n)
                np.testing.assert_array_equal(Z1, Z0, err_msg=f"fwd {FW} {S} {NB} {C}")
            if FW not in DW_ROW_DW_WIDTHS:
                continue
            for sw in (1, 2):  # (dW's row kernel serves any column stride)
                Wo = (W + 2 * pad - FW) // sw + 1
                if Wo < 1:
                    continue
                dZ = rng.standard_normal((2, Ho, Wo, C)).astype(dt)
                args = (1, sw, pad, pad, dh, 1)
                for n in (1, 3):
                    parts = np.full((2, n, fh, FW, C), np.nan, dtype=dt)
                    pdb = np.full((2, n, C), np.nan, dtype=dt)
                    for c in range(n):
                        nb._DW.DW["dW", tiles.pool_block(C)](A, dZ, parts[0], pdb[0], *args, dt.type(0), c, n)
                        nb._DW.DW["dW_row", NB, FW](A, dZ, parts[1], pdb[1], *args, dt.type(0), c, n)
                    np.testing.assert_array_equal(parts[1], parts[0], err_msg=f"dW {FW} {sw} {NB} {C}")
                    np.testing.assert_array_equal(pdb[1], pdb[0])
    assert {NB for _, _, NB in variants} == {tiles.dw_row_block(C, dtype) for C in range(8, 129)}
    assert any(FW in DW_ROW_DW_WIDTHS for FW, _, _ in variants)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_depthwise_backward_paths_match_reference(force_parallel, monkeypatch, dtype):
    """Depthwise dA_prev at stride 1 (the forward kernel on dZ with the filters flipped), at
    strides 2 and 3 (one forward call per stride phase, written in place, or for phases more
    than 3 taps wide or under 8 channels into a buffer then scattered; a phase no tap reaches,
    stride > f, is zeroed), dilated (the gather kernel), with a channel multiplier, pads 0 to past the filter,
    non-square filters, channels under a row block; dA_prev, dW, db against the reference, and
    dA_prev's bits the same in one chunk as in several."""
    monkeypatch.setattr(nb, "_THREADED_WORK", 0)  # (every call threaded, however small)
    used = []
    _record(monkeypatch, nb._DW.DW, used)
    real_scatter = nb.kernels.phase_scatter
    monkeypatch.setattr(nb.kernels, "phase_scatter", lambda *a: (used.append(("scatter",)), real_scatter(*a))[1])
    cases = [ConvCase("s1_f3_p1", 2, 9, 10, 40, 3, 40, 1, 1, groups=40),
             ConvCase("s1_f5_p3", 1, 7, 8, 16, 5, 16, 1, 3, groups=16),
             ConvCase("s1_f3_p3", 1, 6, 7, 16, 3, 16, 1, 3, groups=16),
             ConvCase("s1_f3x5_p0x2_M2", 2, 6, 9, 12, (3, 5), 24, 1, (0, 2), groups=12),
             ConvCase("s2_f3_p1", 2, 9, 11, 33, 3, 33, 2, 1, groups=33),
             ConvCase("s3_f2_p0", 1, 10, 8, 9, 2, 9, 3, 0, groups=9),
             ConvCase("s2_f4x3_p3", 1, 9, 9, 20, (4, 3), 20, 2, 3, groups=20),
             ConvCase("s2_f7_p3", 1, 12, 13, 16, 7, 16, 2, 3, groups=16),
             ConvCase("s2_f3_C5", 2, 9, 9, 5, 3, 5, 2, 1, groups=5),
             ConvCase("s2_d2_f3", 2, 11, 12, 18, 3, 18, 2, 2, dilation=2, groups=18),
             ConvCase("s1_d2_f3_C5", 1, 8, 9, 5, 3, 5, 1, 2, dilation=2, groups=5)]
    for case in cases:
        A, W, b, hp, dZ = case.make(dtype, seed=12)
        _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        _, cache_ref = fastnn.conv_forward(A, W, b, hp, backend=REF)
        grads = fastnn.conv_backward(dZ, cache, backend="numba")
        for name, g, g_ref in zip(("dA_prev", "dW", "db"), grads, fastnn.conv_backward(dZ, cache_ref, backend=REF)):
            _close(g, g_ref, dtype, f"{case.name} {name}")
        with monkeypatch.context() as one:  # (dW and db sum one partial per chunk: bits per chunk count)
            one.setattr(nb, "_num_threads", lambda: 1)
            np.testing.assert_array_equal(fastnn.conv_backward(dZ, cache, backend="numba")[0], grads[0])
    kinds = {key[0] for key in used}
    assert {"fwd_row", "fwd_phase", "scatter", "dW_row", "fwd", "dW", "dA"} <= kinds, kinds


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_chunks_taken_in_turn_give_the_bits_of_fixed_shares(monkeypatch, dtype):
    """Every call threaded (thresholds 0) on 3 threads: with ``CHUNKS_PER_THREAD`` as set, the
    wrappers cut the kernels into more chunks than threads, taken in turn; with 1, one fixed
    share per thread. Forward (row and pixel-run kernels), backward (stride 1 and 2, the
    few-channel gathers), NCHW, grouped, depthwise and pooling give the same bits both ways."""
    from fastnn.backends.numba import config as cfg
    monkeypatch.setattr(nb, "_SERIAL_WORK", 0)
    monkeypatch.setattr(nb, "_THREADED_WORK", 0)
    monkeypatch.setattr(nb, "_THREADED_CONV_WORK", 0)
    monkeypatch.setattr(nb, "_num_threads", lambda: 3)
    calls = []
    real = nb.run_chunks
    monkeypatch.setattr(nb, "run_chunks", lambda k, a, n, t=None: (calls.append((n, t)), real(k, a, n, t))[1])
    cases = [ConvCase("rows", 2, 9, 12, 8, 3, 19, 1, 1), ConvCase("pixels", 2, 9, 7, 24, 3, 37, 1, 1),
             ConvCase("strided", 2, 11, 13, 9, 3, 21, 2, 1), ConvCase("few_channels", 2, 10, 11, 3, 3, 16, 1, 1),
             ConvCase("few_channels_s2", 2, 11, 13, 3, 3, 16, 2, 1),
             ConvCase("nchw", 2, 9, 10, 12, 3, 17, 1, 1, layout="NCHW"),
             ConvCase("grouped", 2, 9, 10, 12, 3, 18, 1, 1, groups=2),
             ConvCase("depthwise", 2, 9, 10, 40, 3, 40, 1, 1, groups=40),
             ConvCase("depthwise_s2", 2, 11, 10, 40, 3, 40, 2, 1, groups=40)]

    def run_all():
        out = []
        for case in cases:
            A, W, b, hp, dZ = case.make(dtype, seed=21)
            Z, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
            out += [Z, *fastnn.conv_backward(dZ, cache, backend="numba")]
        A = np.random.default_rng(22).standard_normal((2, 13, 11, 40)).astype(dtype)
        for mode in ("max", "average"):
            Y, cache = fastnn.pool_forward(A, {"f": 3, "stride": 2}, mode=mode, backend="numba")
            out += [Y, fastnn.pool_backward(np.ones_like(Y), cache, mode=mode, backend="numba")]
        return out

    in_turn = run_all()
    assert any(t is not None and n > t for n, t in calls), calls  # chunks taken in turn were run
    monkeypatch.setattr(cfg, "CHUNKS_PER_THREAD", 1)
    calls.clear()
    fixed = run_all()
    assert all(t is None or n <= t for n, t in calls)
    for a, b in zip(in_turn, fixed):
        assert a.dtype == np.dtype(dtype) and np.array_equal(a, b, equal_nan=True)


_STRIDED_CHECK = """
import sys
import numpy as np
from numba.core import types
import fastnn
import fastnn.backends.numba as nb
from fastnn.backends.numba import kernels
from fastnn.testing.cases import CONV_CASES, POOL_CASES, ConvCase

dtype = np.dtype(sys.argv[1])
cases = list(CONV_CASES.values()) + [ConvCase("grouped_tile_wide", 2, 9, 10, 64, 3, 64, 1, 1, groups=2),
                                     ConvCase("grouped_dilated", 1, 11, 12, 64, 3, 64, 1, 2, dilation=2, groups=2)]
for case in cases:
    A, W, b, hp, dZ = case.make(dtype, seed=2)
    Z, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
    fastnn.conv_backward(dZ, cache, backend="numba")
for case in POOL_CASES.values():
    A, hp, dA = case.make(dtype, seed=2)
    for mode in ("max", "average"):
        _, cache = fastnn.pool_forward(A, hp, mode, backend="numba")
        fastnn.pool_backward(dA, cache, mode, backend="numba")
for table in (nb._CONV, nb._POOL, nb._DW, kernels):
    objs = list(vars(table).values())
    objs += [v for d in objs if isinstance(d, dict) for v in d.values()]
    for k in objs:
        for sig in getattr(k, "signatures", ()):
            if any(isinstance(t, types.Array) and t.layout != "C" for t in sig):
                print(k.__name__, sig)
"""


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_run_only_on_contiguous_arrays(dtype):
    """Every kernel the backend runs gets C-contiguous arrays (its one compiled layout): a
    strided view compiles a second build whose loads do not vectorise (a group's dZ slice made
    the grouped dW 2.4x slower than the groups run apart), and it would pass unnoticed, with the
    same results. Every conv and pooling case runs, in a new process (the other tests call
    kernels on views of their own), plus grouped cases whose channel slices are exactly one dW
    tile wide (no padding copy): the case that reached the kernel strided."""
    out = subprocess.run([sys.executable, "-c", _STRIDED_CHECK, np.dtype(dtype).name], capture_output=True,
                         text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "", "kernels compiled for strided arrays:\n" + out.stdout


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_buffers_are_aligned(dtype, monkeypatch):
    """The buffers the wrappers make for the kernels start on ``config.ALIGN`` bytes (the
    packed filters' vector loads then never span two cache lines) and hold what NumPy's own
    would: ``_aligned_empty`` of any shape, ``_pack_channels`` (T dividing K or not),
    ``_pad_k`` and ``_padded``; and every packed filter a convolution's forward and backward
    pass to a kernel is aligned."""
    from fastnn.backends.numba import config

    dt = np.dtype(dtype)
    rng = np.random.default_rng(5)
    for shape in ((), (0,), (1,), (3, 5), (7, 1, 13), (2, 3, 4, 65), 100_003):
        a = nb._aligned_empty(shape, dt)
        assert (a.size == 0 or a.ctypes.data % config.ALIGN == 0) and a.dtype == dt  # (no data: no start)
        assert a.flags.c_contiguous and a.flags.writeable
        assert a.shape == np.empty(shape).shape
    M = rng.standard_normal((3, 10, 37)).astype(dt)[:, ::2]  # (a strided view, K = 37)
    for T in (8, 16, 37):
        k0 = np.minimum(np.arange(-(-37 // T)) * T, 37 - T)
        expected = np.ascontiguousarray(np.moveaxis(M[..., k0[:, None] + np.arange(T)], -2, 0))
        packed = nb._pack_channels(M, T)
        assert packed.ctypes.data % config.ALIGN == 0 and packed.flags.c_contiguous
        assert packed.dtype == dt and np.array_equal(packed, expected)
    for kpad in (0, 3):
        padded = nb._pad_k(M, kpad)
        assert np.array_equal(padded, np.pad(M, ((0, 0), (0, 0), (0, kpad))))
        assert padded is M if not kpad else padded.ctypes.data % config.ALIGN == 0
    X = rng.standard_normal((2, 5, 6, 3)).astype(dt)
    Xp = nb._padded(X, 1, 2, 0.0, 1, 0)
    assert Xp.ctypes.data % config.ALIGN == 0 and np.array_equal(Xp, np.pad(X, ((0, 0), (1, 2), (2, 2), (0, 0))))
    seen = []
    real = nb._pack_channels
    monkeypatch.setattr(nb, "_pack_channels", lambda M, T: (seen.append(r := real(M, T)), r)[1])
    A, W, b, hp, dZ = ConvCase("aligned", 2, 9, 10, 24, 3, 40, 2, 1).make(dtype, seed=3)
    Z, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
    fastnn.conv_backward(dZ, cache, backend="numba")
    assert len(seen) >= 4 and all(s.ctypes.data % config.ALIGN == 0 for s in seen)
    _close(Z, fastnn.conv_forward(A, W, b, hp, backend=REF)[0], dtype, "aligned")
