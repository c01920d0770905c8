"""The im2col backend beyond the shared matrix: chunking, the workspace bound, threads, dtypes."""

import contextlib
import os
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn._dispatch import ground_truth_backend
from fastnn._params import conv_out_size
from fastnn.testing.tolerance import assert_close
from fastnn import _params as P
from fastnn.backends.im2col import columns as _cols
from fastnn.backends.im2col import templates as _px_templates
from fastnn.backends.im2col import workspace as _ws
from fastnn.backends import im2col as I
from fastnn.testing.cases import CONV_CASES, DTYPES, POOL_CASES, ConvCase, PoolCase

B = "im2col"
REF = ground_truth_backend()
close = assert_close  # the one tolerance rule (fastnn.testing.tolerance)


@contextlib.contextmanager
def workspace(limit, preferred=None):
    """Run with a workspace limit (and chunk preference), restoring both afterwards."""
    old_pref, old_pool = I.PREFERRED_CHUNK_BYTES, I.POOL_CHUNK_BYTES
    old = I.set_workspace_limit(limit)
    I.PREFERRED_CHUNK_BYTES = I.POOL_CHUNK_BYTES = limit if preferred is None else preferred
    try:
        yield
    finally:
        I.PREFERRED_CHUNK_BYTES, I.POOL_CHUNK_BYTES = old_pref, old_pool
        I.set_workspace_limit(old)



@pytest.fixture(params=["numba", "numpy"])
def copy_path(request, monkeypatch):
    """Run with the Numba column loops and with the NumPy strided-view fallback."""
    if request.param == "numba" and not _cols.USE_NUMBA:
        pytest.skip("numba is not importable")
    monkeypatch.setattr(_cols, "USE_NUMBA", request.param == "numba")
    return request.param


# Limits that force each chunking mode on the small cases: per pixel (1 byte: nothing fits,
# each chunk is one output pixel), a few output rows or pieces of a row, and whole images.
LIMITS = [1, 700, 3000, 1 << 30]


def _modes(case_params, cost):
    boxes, full = I.plan(case_params, cost)
    if full:
        return "images"
    return "rows" if all(b.w0 == 0 and b.w1 == case_params.Wo for b in boxes) else "pixels"


def test_limits_exercise_every_chunk_mode():
    seen = set()
    for case in CONV_CASES.values():
        A, W, b, hp, _ = case.make(np.float64)
        p = P.conv_params(A, W, b, hp)
        for limit in LIMITS:
            with workspace(limit):
                for backward in (False, True):
                    seen.add((backward, _modes(p, I._conv_cost(p, backward))))
    assert seen == {(bwd, mode) for bwd in (False, True) for mode in ("images", "rows", "pixels")}


def test_plan_covers_every_output_once():
    case = CONV_CASES["strided_nonsquare_pad"]
    A, W, b, hp, _ = case.make(np.float64)
    p = P.conv_params(A, W, b, hp)
    cost = I._conv_cost(p, False)
    one_pixel = cost(1, 1, 1, p.fh, p.fw)  # the least a chunk can need (with W and b)
    for limit in LIMITS:
        with workspace(limit):
            boxes, _ = I.plan(p, cost)
        hits = np.zeros((p.m, p.Ho, p.Wo), dtype=int)
        for bx in boxes:
            hits[bx.n0:bx.n1, bx.h0:bx.h1, bx.w0:bx.w1] += 1
            assert bx.nbytes <= max(limit, one_pixel)
        assert (hits == 1).all(), limit


@pytest.mark.parametrize("limit", LIMITS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", list(CONV_CASES.values()), ids=lambda c: c.name)
def test_conv_chunked_matches_reference(case, dtype, limit, copy_path):
    A, W, b, hp, dZ = case.make(dtype, seed=4)
    Z_ref, cache = fastnn.conv_forward(A, W, b, hp, backend=REF)
    grads_ref = fastnn.conv_backward(dZ, cache, backend=REF)
    with workspace(limit):
        Z, cache = fastnn.conv_forward(A, W, b, hp, backend=B)
        grads = fastnn.conv_backward(dZ, cache, backend=B)
    close(Z, Z_ref, dtype, "Z")
    for name, g, g_ref in zip(("dA_prev", "dW", "db"), grads, grads_ref):
        close(g, g_ref, dtype, name)


@pytest.mark.parametrize("limit", LIMITS)
@pytest.mark.parametrize("mode,ties", [("max", "all"), ("max", "first"), ("average", "all")])
@pytest.mark.parametrize("case", list(POOL_CASES.values()), ids=lambda c: c.name)
def test_pool_chunked_matches_reference(case, mode, ties, limit, copy_path):
    dtype = np.float64
    A, hp, dA = case.make(dtype, seed=5)
    out_ref, cache = fastnn.pool_forward(A, hp, mode, backend=REF)
    g_ref = fastnn.pool_backward(dA, cache, mode, ties=ties, backend=REF)
    with workspace(limit):
        out, cache = fastnn.pool_forward(A, hp, mode, backend=B)
        g = fastnn.pool_backward(dA, cache, mode, ties=ties, backend=B)
    close(out, out_ref, dtype, "forward")
    close(g, g_ref, dtype, "backward")


@pytest.mark.parametrize("C", [2, 20], ids=["C2", "C20"])  # below and above _cols.WIDE_C
@pytest.mark.parametrize("ties", ["all", "first"])
def test_max_pool_nan_and_inf_follow_the_reference(ties, copy_path, C):
    assert (C >= _cols.WIDE_C) == (C == 20)
    A, hp, dA = PoolCase("nan", 2, 6, 6, C, 3, 1, pad=1, ties=True).make(np.float64, seed=6)
    A[1, 1, 2, C - 1] = np.nan
    A[0, 2, 2, 0] = np.nan
    A[0, 3, 3, 0] = np.nan  # windows with two NaNs: "first" takes the first one's position
    A[1, 0, :, 1] = -np.inf
    A[1, 4, 4, 1] = np.inf
    out_ref, cache = fastnn.pool_forward(A, hp, "max", backend=REF)
    out, _ = fastnn.pool_forward(A, hp, "max", backend=B)
    np.testing.assert_array_equal(out, out_ref)
    g = fastnn.pool_backward(dA, cache, "max", ties=ties, backend=B)
    g_ref = fastnn.pool_backward(dA, cache, "max", ties=ties, backend=REF)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(g_ref))
    close(g, g_ref, np.float64)  # overlapping windows: sums in another order


def test_ties_rules_differ_where_windows_tie():
    A = np.zeros((1, 2, 2, 1))
    dA = np.ones((1, 1, 1, 1))
    cache = (A, {"f": 2, "stride": 2})
    g_all = fastnn.pool_backward(dA, cache, "max", ties="all", backend=B)
    g_first = fastnn.pool_backward(dA, cache, "max", ties="first", backend=B)
    np.testing.assert_array_equal(g_all[0, :, :, 0], [[1, 1], [1, 1]])
    np.testing.assert_array_equal(g_first[0, :, :, 0], [[1, 0], [0, 0]])


def _columns_oracle(X, box, fh, fw, sh, sw, ph, pw, value, ones):
    """The columns of output pixels ``box`` = (n0, n1, h0, h1, w0, w1), from np.pad and slices."""
    n0, n1, h0, h1, w0, w1 = box
    Xp = np.pad(X, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=value)
    rows = []
    for n in range(n0, n1):
        for h in range(h0, h1):
            for w in range(w0, w1):
                win = Xp[n, h * sh:h * sh + fh, w * sw:w * sw + fw].ravel()
                rows.append(np.concatenate([win, np.ones(1, X.dtype)]) if ones else win)
    return np.array(rows, dtype=X.dtype)


def _boxes(N, Ho, Wo):
    """Chunk boxes (n0, n1, h0, h1, w0, w1): whole images, rows of one image, a piece of a
    row, the first pixel and the last."""
    return [(0, N, 0, Ho, 0, Wo), (N - 1, N, 0, max(1, Ho // 2), 0, Wo), (0, 1, Ho - 1, Ho, Wo // 2, Wo),
            (0, 1, 0, 1, 0, 1), (N - 1, N, Ho - 1, Ho, Wo - 1, Wo)]


def _im2col_kernels(X3, C, box, fh, fw, sh, sw, ph, pw, value):
    """``kernel(out)`` for every Numba column build of ``box``: the block-copy one, the row
    loop and, where the window has one, the generated one."""
    IM2COL_PX = _cols._px().IM2COL_PX

    n0, n1, h0, h1, w0, w1 = box
    args = (n0, h0, w0, n1 - n0, h1 - h0, w1 - w0)
    kernels = [lambda out: _cols._im2col_spill_nb(X3, C, *args, fh, fw, sh, sw, ph, pw, value, out, 1.0),
               lambda out: _cols._im2col_nb(X3, C, *args, fh, fw, sh, sw, ph, pw, value, out, 1.0)]
    if (fh, fw * C) in IM2COL_PX:
        px = IM2COL_PX[(fh, fw * C)]
        kernels.append(lambda out: px(X3, C, *args, sh, sw, ph, pw, value, out, 1.0))
    return kernels


def _col2im_kernels(cols, C, box, fh, fw, sh, sw, ph, pw):
    """``kernel(dX3)`` for every Numba col2im of ``box``'s columns ``cols``: the block-add one,
    the row loop and, where the window has one, the generated one."""
    COL2IM_PX = _cols._px().COL2IM_PX

    n0, n1, h0, h1, w0, w1 = box
    args = (n0, h0, w0, n1 - n0, h1 - h0, w1 - w0)
    rows = cols.shape[0]
    kernels = [lambda d: _cols._col2im_spill_nb(cols, d, C, *args, fh, fw, sh, sw, ph, pw),
               lambda d: _cols._col2im_nb(cols.reshape(rows, fh, fw * C), d, C, *args, fh, fw, sh, sw, ph, pw)]
    if (fh, fw * C) in COL2IM_PX:
        px = COL2IM_PX[(fh, fw * C)]
        kernels.append(lambda d: px(cols, d, C, *args, sh, sw, ph, pw))
    return kernels


# (N, H, W, C, fh, fw, sh, sw, ph, pw): fw*C from 1 to 45 (one to three blocks of the
# block-copy kernel), stride > f, pad > f, windows wider than the padded input's rest.
COLUMN_SHAPES = [
    (2, 5, 7, 3, 3, 3, 1, 1, 1, 1), (3, 9, 8, 1, 2, 3, 2, 1, 0, 2), (1, 4, 4, 2, 5, 5, 1, 1, 3, 3),
    (2, 6, 6, 3, 3, 3, 4, 4, 0, 0), (2, 7, 9, 5, 3, 2, 2, 3, 1, 0), (1, 3, 3, 1, 1, 1, 1, 1, 0, 0),
    (2, 11, 13, 3, 7, 7, 2, 2, 3, 3), (1, 6, 5, 4, 3, 3, 1, 1, 1, 1), (2, 8, 8, 15, 2, 3, 2, 2, 0, 1),
    (1, 2, 2, 1, 4, 4, 1, 1, 3, 3), (2, 5, 6, 9, 3, 5, 1, 1, 2, 2),
    # the spelled-out kernels' windows (templates.PX_SHAPES), one 3 x 9 on one channel
    (2, 6, 7, 1, 3, 3, 1, 1, 1, 1), (1, 7, 6, 1, 5, 5, 1, 1, 2, 2), (1, 9, 8, 3, 5, 5, 2, 2, 2, 2),
    (1, 9, 9, 1, 7, 7, 1, 1, 3, 3), (1, 5, 12, 1, 3, 9, 1, 2, 0, 4), (1, 4, 5, 3, 3, 3, 3, 2, 4, 4),
]


def test_column_shapes_cover_every_spelled_out_kernel():
    IM2COL_PX, COL2IM_PX = _cols._px().IM2COL_PX, _cols._px().COL2IM_PX
    PX_SHAPES = _px_templates.PX_SHAPES

    assert set(IM2COL_PX) == set(COL2IM_PX) == set(PX_SHAPES)
    assert set(PX_SHAPES) <= {(s[4], s[5] * s[3]) for s in COLUMN_SHAPES}


@pytest.mark.parametrize("ones", [False, True], ids=["pool", "conv"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", COLUMN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_column_kernels_match_padded_slices(shape, dtype, ones):
    """The Numba column builds (the block-copy one for short window rows, whose blocks run
    over into the next window row; the row loop; the generated ones with a window's moves
    spelled out, for their windows) give exactly the windows of the padded input, for whole
    chunks and the chunk modes' sub-image pieces (whose last pixels the block-copy kernel
    copies exactly, its blocks would leave the buffer)."""
    if not _cols.USE_NUMBA:
        pytest.skip("numba is not importable")
    N, H, W, C, fh, fw, sh, sw, ph, pw = shape
    X = np.random.default_rng(sum(shape)).standard_normal((N, H, W, C)).astype(dtype)
    X3 = _cols._rows3(X)
    Ho, Wo = conv_out_size(H, fh, ph, sh), conv_out_size(W, fw, pw, sw)
    value = 0.0 if ones else -np.inf
    for box in _boxes(N, Ho, Wo):
        expected = _columns_oracle(X, box, fh, fw, sh, sw, ph, pw, value, ones)
        for k, kernel in enumerate(_im2col_kernels(X3, C, box, fh, fw, sh, sw, ph, pw, value)):
            out = np.full(expected.shape, np.nan, dtype)
            kernel(out)
            np.testing.assert_array_equal(out, expected, err_msg=f"kernel {k} {box}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", COLUMN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_col2im_kernels_match_scattered_adds(shape, dtype):
    """The Numba col2im kernels (the scratch-row one for short window rows, whose blocks
    add 0 past the window row; the row loop; the generated ones with a window's adds spelled
    out, for their windows) add every column value to its input position, drop the padding,
    and keep what dX held (small integers, no -0.0: the scratch kernels turn an untouched
    -0.0 into +0.0, see col2im_padded). NaN and inf in the columns stay where they belong
    (they are selected away past a window row, never multiplied by 0)."""
    if not _cols.USE_NUMBA:
        pytest.skip("numba is not importable")
    N, H, W, C, fh, fw, sh, sw, ph, pw = shape
    rng = np.random.default_rng(sum(shape) + 1)
    Ho, Wo = conv_out_size(H, fh, ph, sh), conv_out_size(W, fw, pw, sw)
    base = rng.integers(-8, 9, size=(N, H, W, C)).astype(dtype)
    for box in _boxes(N, Ho, Wo):
        n0, n1, h0, h1, w0, w1 = box
        rows = (n1 - n0) * (h1 - h0) * (w1 - w0)
        # small integers: every sum is exact in any order, so the comparison is exact
        cols = rng.integers(-8, 9, size=(rows, fh * fw * C)).astype(dtype)
        cols.flat[rng.integers(0, cols.size, size=3)] = np.nan
        cols.flat[rng.integers(0, cols.size, size=2)] = np.inf
        expected = np.pad(base, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        r = 0
        for n in range(n0, n1):
            for h in range(h0, h1):
                for w in range(w0, w1):
                    expected[n, h * sh:h * sh + fh, w * sw:w * sw + fw] += cols[r].reshape(fh, fw, C)
                    r += 1
        expected = expected[:, ph:ph + H, pw:pw + W]
        for k, kernel in enumerate(_col2im_kernels(cols, C, box, fh, fw, sh, sw, ph, pw)):
            dX = base.copy()
            kernel(_cols._rows3(dX))
            np.testing.assert_array_equal(dX, expected, err_msg=f"kernel {k} {box}")


class _GuardPages:
    """Arrays that end exactly at an inaccessible page (Linux): a kernel reading or writing
    one element past their end faults, which a value comparison cannot see."""

    def __init__(self):
        import ctypes
        import mmap

        self.mmap = mmap
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.maps = []

    def array(self, shape, dtype):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pg = self.mmap.PAGESIZE
        npg = (nbytes + pg - 1) // pg + 1
        m = self.mmap.mmap(-1, npg * pg)
        self.maps.append(m)
        base = np.frombuffer(m, dtype=np.uint8)
        if self.libc.mprotect(base.ctypes.data + (npg - 1) * pg, pg, 0) != 0:  # PROT_NONE
            pytest.skip("mprotect is not available")
        start = (npg - 1) * pg - nbytes
        return base[start:start + nbytes].view(dtype).reshape(shape)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="guard pages via mprotect: Linux only")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", COLUMN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_column_kernels_stay_inside_their_arrays(shape, dtype):
    """The block moves run past a window row on purpose, never past an array: the input,
    the columns and dX each end at an inaccessible page (a stray access kills the test
    process), for every chunk box and both column counts; the results are checked too."""
    if not _cols.USE_NUMBA:
        pytest.skip("numba is not importable")
    g = _GuardPages()
    N, H, W, C, fh, fw, sh, sw, ph, pw = shape
    rng = np.random.default_rng(sum(shape) + 2)
    X = g.array((N, H, W, C), dtype)
    X[...] = rng.standard_normal(X.shape)
    X3 = _cols._rows3(X)
    Ho, Wo = conv_out_size(H, fh, ph, sh), conv_out_size(W, fw, pw, sw)
    kd = fh * fw * C
    for box in _boxes(N, Ho, Wo):
        n0, n1, h0, h1, w0, w1 = box
        rows = (n1 - n0) * (h1 - h0) * (w1 - w0)
        for ones in (0, 1):
            expected = _columns_oracle(X, box, fh, fw, sh, sw, ph, pw, 0.0, bool(ones))
            for k, kernel in enumerate(_im2col_kernels(X3, C, box, fh, fw, sh, sw, ph, pw, 0.0)):
                out = g.array((rows, kd + ones), dtype)
                kernel(out)
                np.testing.assert_array_equal(out, expected, err_msg=f"im2col {k} {box} ones={ones}")
        cols = g.array((rows, kd), dtype)
        cols[...] = rng.integers(-8, 9, size=cols.shape)
        ref = np.zeros((N, H, W, C), dtype)
        _cols._col2im_nb(cols.reshape(rows, fh, fw * C), _cols._rows3(ref), C, n0, h0, w0, n1 - n0, h1 - h0,
                         w1 - w0, fh, fw, sh, sw, ph, pw)
        for k, kernel in enumerate(_col2im_kernels(cols, C, box, fh, fw, sh, sw, ph, pw)):
            dX = g.array((N, H, W, C), dtype)
            dX[...] = 0
            kernel(_cols._rows3(dX))
            np.testing.assert_array_equal(dX, ref, err_msg=f"col2im {k} {box}")


@pytest.mark.parametrize("K", [1, 3, 16, 64, 600])
@pytest.mark.parametrize("rows", [1, 7, 255, 256, 257, 8 * 32 + 5, 4099])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_bias_add_and_row_sum_match_numpy(rows, K, dtype):
    """The wide-row bias add and db sum (taken once rows reach 8 * (512 // K)), their
    remainder rows, and the small-output paths agree with plain NumPy. Small integers make
    every sum exact whatever the order, so the comparison is exact too."""
    rng = np.random.default_rng(rows * 1000 + K)
    X = rng.integers(-8, 9, size=(rows, K)).astype(dtype)
    b = rng.integers(-8, 9, size=K).astype(dtype)
    Z = X.copy()
    I._add_bias(Z, b)
    np.testing.assert_array_equal(Z, X + b)
    out = np.full(K, np.nan, dtype=dtype)
    I._sum_rows(X, out)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, X.sum(axis=0))


# ------------------------------------------------------------------ memory bound

MIB = 1 << 20
LIMIT = 2 * MIB
SLACK = 256 << 10  # Python objects, views, iterator buffers of NumPy


def _peak(fn):
    """(result, peak bytes tracemalloc saw during fn()), with a cold workspace."""
    I.release_workspace()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out, peak


# (case, dtype): whole-image chunks; and one image whose columns alone exceed the limit.
MEM_CONV = [
    (ConvCase("mem_images", 32, 32, 32, 16, 3, 16, 1, 1), np.float32),
    (ConvCase("mem_rows", 2, 64, 64, 16, 3, 8, 1, 1), np.float64),
]


@pytest.mark.parametrize("case,dtype", MEM_CONV, ids=[c.name for c, _ in MEM_CONV])
def test_conv_peak_memory_is_bounded_and_results_match_unchunked(case, dtype, copy_path):
    A, W, b, hp, dZ = case.make(dtype, seed=7)
    p = P.conv_params(A, W, b, hp)
    full_cols = p.m * p.Ho * p.Wo * p.fh * p.fw * p.C * np.dtype(dtype).itemsize
    assert full_cols >= 4 * LIMIT  # the unchunked column matrix would be several times the limit

    with workspace(1 << 34, preferred=1 << 34):  # unchunked
        assert len(I.plan(p, I._conv_cost(p, True))[0]) == 1
        Z_full, cache = fastnn.conv_forward(A, W, b, hp, backend=B)
        grads_full = fastnn.conv_backward(dZ, cache, backend=B)
    with workspace(LIMIT):
        assert len(I.plan(p, I._conv_cost(p, True))[0]) >= 4
        (Z, _), peak_f = _peak(lambda: fastnn.conv_forward(A, W, b, hp, backend=B))
        grads, peak_b = _peak(lambda: fastnn.conv_backward(dZ, cache, backend=B))
        assert I.workspace_nbytes() <= LIMIT
    assert peak_f <= LIMIT + Z.nbytes + SLACK, (peak_f, LIMIT, Z.nbytes)
    assert peak_b <= LIMIT + sum(g.nbytes for g in grads) + SLACK, (peak_b, LIMIT)
    close(Z, Z_full, dtype, "Z")
    for name, g, g_full in zip(("dA_prev", "dW", "db"), grads, grads_full):
        close(g, g_full, dtype, name)


@pytest.mark.parametrize("mode,ties", [("max", "all"), ("max", "first"), ("average", "all")])
def test_pool_peak_memory_is_bounded_and_results_match_unchunked(mode, ties, copy_path):
    case = PoolCase("mem_pool", 16, 32, 32, 16, 3, 1, pad=1)
    A, hp, dA = case.make(np.float32, seed=8)
    with workspace(1 << 34, preferred=1 << 34):
        out_full, cache = fastnn.pool_forward(A, hp, mode, backend=B)
        g_full = fastnn.pool_backward(dA, cache, mode, ties=ties, backend=B)
    with workspace(LIMIT):
        (out, _), peak_f = _peak(lambda: fastnn.pool_forward(A, hp, mode, backend=B))
        g, peak_b = _peak(lambda: fastnn.pool_backward(dA, cache, mode, ties=ties, backend=B))
    # full columns: 16*32*32*9*16*4 bytes = 9 MiB, over 4x the limit
    assert peak_f <= LIMIT + out.nbytes + SLACK, peak_f
    assert peak_b <= LIMIT + g.nbytes + SLACK, peak_b
    np.testing.assert_array_equal(out, out_full)
    close(g, g_full, np.float32)


def test_workspace_is_reused_across_calls():
    A, W, b, hp, _ = CONV_CASES["wide_channels"].make(np.float32)
    I.release_workspace()
    fastnn.conv_forward(A, W, b, hp, backend=B)
    buf = _ws.arena()._buf
    assert buf.nbytes > 0
    fastnn.conv_forward(A, W, b, hp, backend=B)
    assert _ws.arena()._buf is buf  # no new allocation for the same call


def test_workspace_shrinks_when_the_limit_drops():
    A, W, b, hp, _ = ConvCase("big", 4, 32, 32, 16, 3, 8, 1, 1).make(np.float32)
    with workspace(64 * MIB):
        fastnn.conv_forward(A, W, b, hp, backend=B)
        assert I.workspace_nbytes() > 256 << 10
        with workspace(256 << 10):
            assert I.workspace_nbytes() == 0  # released at once in this thread
            fastnn.conv_forward(A, W, b, hp, backend=B)
            assert 0 < I.workspace_nbytes() <= 256 << 10


def test_threads_get_their_own_workspace_and_right_answers():
    case = CONV_CASES["wide_channels"]
    A, W, b, hp, dZ = case.make(np.float64, seed=9)
    Z_ref, cache = fastnn.conv_forward(A, W, b, hp, backend=REF)
    dA_ref = fastnn.conv_backward(dZ, cache, backend=REF)[0]
    arenas, errors = [], []
    start = threading.Barrier(4)

    def work():
        try:
            start.wait()
            for _ in range(20):
                Z, c = fastnn.conv_forward(A, W, b, hp, backend=B)
                dA = fastnn.conv_backward(dZ, c, backend=B)[0]
                close(Z, Z_ref, np.float64)
                close(dA, dA_ref, np.float64)
            arenas.append(_ws.arena())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({id(a) for a in arenas}) == 4


def test_float32_stays_float32(monkeypatch):
    taken = []
    orig = _ws.Arena.take

    def spy(self, shape, dtype):
        taken.append(np.dtype(dtype))
        return orig(self, shape, dtype)

    monkeypatch.setattr(_ws.Arena, "take", spy)
    A, W, b, hp, dZ = CONV_CASES["strided_nonsquare_pad"].make(np.float32)
    Z, cache = fastnn.conv_forward(A, W, b, hp, backend=B)
    grads = fastnn.conv_backward(dZ, cache, backend=B)
    Ap, php, dAp = POOL_CASES["padded"].make(np.float32)
    for mode, ties in [("max", "all"), ("max", "first"), ("average", "all")]:
        out, c = fastnn.pool_forward(Ap, php, mode, backend=B)
        grads += (out, fastnn.pool_backward(dAp, c, mode, ties=ties, backend=B))
    assert Z.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    floats = {d for d in taken if d.kind == "f"}
    assert floats == {np.dtype(np.float32)}


def test_workspace_limit_setting():
    with pytest.raises(ValueError):
        I.set_workspace_limit(0)
    with pytest.raises(TypeError):
        I.set_workspace_limit(1.5)
    old = I.set_workspace_limit(123456)
    try:
        assert I.get_workspace_limit() == 123456
    finally:
        I.set_workspace_limit(old)


def test_workspace_limit_from_environment():
    code = "from fastnn.backends import im2col as I; print(I.get_workspace_limit())"
    env = dict(os.environ, FASTNN_IM2COL_WORKSPACE_MB="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == 3 << 20
    env.pop("FASTNN_IM2COL_WORKSPACE_MB")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == I.DEFAULT_WORKSPACE_MB << 20


def test_backend_is_complete_and_registered():
    info = {d["name"]: d for d in fastnn.backend_info()}
    assert info[B]["priority"] == 10
    from fastnn._dispatch import OPS
    assert set(info[B]["ops"]) == set(OPS)
