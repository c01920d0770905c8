"""The numba dW kernel's chunks alone and side by side: a large-channel pointwise layer (8 x 14 x
14, 512 input channels, K output channels), the dW tile kernel's chunks (one partial each) run
all in this thread, then split between this thread and one other (even and odd chunks), each
chunk timed in the thread that ran it; and NumPy's 1024-square GEMM at 1 and 2 OpenBLAS threads
(threadpoolctl), for the same scaling on the BLAS side. Three repetitions per chunk count.

    python3 docs/bench/2026-12-08-dw-chunks.py [K ...]      # default: 512 256
"""

import statistics
import sys
import threading
import time

import numpy as np
import threadpoolctl

from fastnn._params import conv_params
from fastnn._plan import timed_block
from fastnn.backends import numba as nb
from fastnn.backends.numba import tiles
from fastnn.testing.cases import ConvCase


def chunks(K):
    A, W, b, hp, dZ = ConvCase("pw", 8, 14, 14, 512, 1, K, 1, 0).make(np.float32, seed=0)
    p = conv_params(A, W, b, hp)
    L = p.fw * p.C
    J, T = tiles.dw_tile(p.dtype, p.K, L)
    Lp = -(-L // J) * J
    ja, jb = np.divmod(np.minimum(np.arange(Lp), L - 1), p.sw * p.C)
    kernel = nb._CONV.DW[J, T]
    for nch in (2, 4, 8):
        part = nb._aligned_empty((nch, p.fh, Lp, p.K), p.dtype)
        pdb = nb._aligned_empty((nch, p.K), p.dtype)
        args = (A.reshape(-1), dZ.reshape(-1, p.K), part, pdb, p.Ho, p.Wo, p.Hp, p.Wp, p.C, 1, ja, jb,
                tiles.dw_rows(p.Wo), 1, 0)
        kernel(*args, 0, nch)  # (compiled)
        for _ in range(3):
            out = {}

            def one(c):
                t = time.perf_counter()
                kernel(*args, c, nch)
                out[c] = time.perf_counter() - t

            t0 = time.perf_counter()
            for c in range(nch):
                one(c)
            serial, alone = time.perf_counter() - t0, dict(out)
            out.clear()

            def worker(first):
                for c in range(first, nch, 2):
                    one(c)

            t0 = time.perf_counter()
            other = threading.Thread(target=worker, args=(1,))
            other.start()
            worker(0)
            other.join()
            both = time.perf_counter() - t0
            print(f"K {K} chunks {nch}: one thread {serial * 1e3:.2f} ms (a chunk {statistics.median(alone.values()) * 1e3:.2f}); "
                  f"two threads {both * 1e3:.2f} ms (a chunk {statistics.median(out.values()) * 1e3:.2f})", flush=True)


def main():
    for K in [int(k) for k in sys.argv[1:]] or [512, 256]:
        chunks(K)
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    rates = {}
    for nt in (1, 2, 1, 2):
        with threadpoolctl.threadpool_limits(nt, "blas"):
            rates.setdefault(nt, []).append(2 * 1024 ** 3 / timed_block(lambda: a @ a, 5) / 1e9)
    print("GEMM float32 GFLOP/s: " + ", ".join(f"{nt} thread(s) {[round(r) for r in v]}" for nt, v in rates.items()))


if __name__ == "__main__":
    main()
