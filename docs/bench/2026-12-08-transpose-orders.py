"""NCHW -> NHWC transposes on one thread: pixel by pixel (each output pixel's C channels read
from X's C rows, ``kernels.nchw_to_nhwc``'s order before the blocks), a runtime channel
block, and blocks of 8 with the block's rows held (``kernels._transpose_row_b8``), against
NumPy's plain copy; with the most channel rows that start in one L1 set (64 sets of 64 B).

    python3 docs/bench/2026-12-08-transpose-orders.py
"""
import statistics
import time

import numba
import numpy as np

from fastnn.backends.numba.kernels import _transpose_row_b8


@numba.njit(nogil=True)
def by_pixel(X, Y):
    m, C, H, W = X.shape
    for i in range(m):
        for h in range(H):
            x = X[i]
            o = Y[i, h]
            for w in range(W):
                ow = o[w]
                for c in range(C):
                    ow[c] = x[c, h, w]


@numba.njit(nogil=True)
def by_block(X, Y, cb):
    m, C, H, W = X.shape
    for i in range(m):
        for h in range(H):
            x = X[i]
            o = Y[i, h]
            for c0 in range(0, C, cb):
                c1 = min(c0 + cb, C)
                for w in range(W):
                    ow = o[w]
                    for c in range(c0, c1):
                        ow[c] = x[c, h, w]


@numba.njit(nogil=True)
def by_8(X, Y):
    m, C, H, W = X.shape
    for i in range(m):
        for h in range(H):
            _transpose_row_b8(X[i], h, Y[i, h], C, W)


def ms(f, n=15):
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def per_set(C, plane):
    s = [(c * plane // 64) % 64 for c in range(C)]
    return max(s.count(v) for v in set(s))


for shape in [(64, 32, 32, 32), (8, 64, 64, 64), (32, 64, 16, 16), (64, 32, 16, 16), (16, 128, 28, 28),
              (8, 64, 56, 56), (8, 256, 14, 14)]:
    X = np.random.rand(*shape).astype(np.float32)
    m, C, H, W = shape
    Y = np.empty((m, H, W, C), np.float32)
    Z = np.empty_like(X)
    r = {"copy": ms(lambda: np.copyto(Z, X)), "pixel": ms(lambda: by_pixel(X, Y)),
         "runtime block 8": ms(lambda: by_block(X, Y, 8)), "blocks of 8": ms(lambda: by_8(X, Y))}
    assert np.array_equal(Y, X.transpose(0, 2, 3, 1))
    print(f"{str(shape):18s} rows a set {per_set(C, H * W * 4):3d}  " + "  ".join(f"{k} {v:.2f} ms" for k, v in r.items()))
