"""What a multi-threaded OpenBLAS GEMM leaves behind for the numba kernels that follow it: the
numba forward of a held-out layer (mobilenet_pw, float32) alone, right after a 512-square
float32 GEMM (NumPy's OpenBLAS on 2 threads), and after the GEMM with OpenBLAS's idle workers
shut down (``blas_thread_shutdown_``, for the measurement only: it is not safe while another
thread may be inside BLAS); then a 1024-square GEMM with this thread's OpenBLAS thread count set
to 1 by ``openblas_set_num_threads_local`` (which a BLAS backend could use to keep OpenBLAS's own
workers idle). Medians of 7 rounds of 5-call blocks, in the order listed, per round.

    python3 docs/bench/2026-12-08-blas-spin.py
    OPENBLAS_THREAD_TIMEOUT=4 python3 docs/bench/2026-12-08-blas-spin.py

Needs NumPy's bundled scipy-openblas (numpy.libs/libscipy_openblas*); prints why it stops otherwise.
"""

import ctypes
import glob
import os
import statistics
import sys

import numpy as np

import fastnn
from fastnn._plan import timed_block
from fastnn.backends.numba.config import override_num_threads

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
from measure_torch import HELDOUT_CONV  # noqa: E402


def main():
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "libscipy_openblas*"))
    if not libs:
        print("no bundled scipy-openblas next to NumPy: nothing to measure")
        return
    lib = ctypes.CDLL(libs[0])
    local = lib.openblas_set_num_threads_local
    local.restype, local.argtypes = ctypes.c_int, [ctypes.c_int]
    override_num_threads(2)
    A, W, b, hp, _ = {c.name: c for c in HELDOUT_CONV}["mobilenet_pw"].make(np.float32, seed=0)
    a = np.ones((512, 512), np.float32)

    def fwd():
        fastnn.conv_forward(A, W, b, hp, backend="numba")

    def gemm_fwd():
        a @ a
        fwd()

    def gemm_shutdown_fwd():
        a @ a
        lib.blas_thread_shutdown_()
        fwd()

    fns = {"numba fwd": fwd, "GEMM": lambda: a @ a, "GEMM, then fwd": gemm_fwd,
           "GEMM, workers shut down, fwd": gemm_shutdown_fwd}
    t = {k: [] for k in fns}
    for _ in range(7):
        for k, fn in fns.items():
            t[k].append(timed_block(fn, 5))
    print(f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', '(unset)')}: "
          + ", ".join(f"{k} {statistics.median(v) * 1e3:.2f} ms" for k, v in t.items()))
    big = np.ones((1024, 1024), np.float32)
    two = timed_block(lambda: big @ big, 5)
    prev = local(1)
    one = timed_block(lambda: big @ big, 5)
    local(prev)
    print(f"1024-square GEMM: {two * 1e3:.2f} ms at OpenBLAS's {prev} threads, {one * 1e3:.2f} ms with this "
          "thread's count set to 1 (openblas_set_num_threads_local)")


if __name__ == "__main__":
    main()
