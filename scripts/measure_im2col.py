#!/usr/bin/env python
"""Measure the im2col backend: column build + GEMM vs the bare GEMM(s), vs PyTorch CPU, memory.

For every shape of ``fastnn.testing.cases.BENCH_CONV_SHAPES`` / ``BENCH_POOL_SHAPES`` and
each dtype it prints, forward and backward, the median time of

* ``im2col``  the public call on the im2col backend (columns + GEMM + bias/col2im),
* ``gemm``    the bare GEMM(s) of the same sizes on preallocated operands
              (forward ``cols @ W``, without the bias, which the backend folds into its
              GEMM as a column of ones; backward ``cols^T @ dZ`` and ``dZ @ W^T``),
* ``ratio``   im2col / gemm (the bar is <= 1.3), of medians; ``r(min)`` of the best runs
              (less sensitive to other processes taking a core mid-GEMM),
* ``kernel``  the backend's registered kernel alone, called as the public function calls it
              but on outputs allocated once (columns + GEMM + bias/col2im, like the bare
              GEMM's preallocated operands): the public call's validation, dispatch and
              output allocation left out. An output over glibc's 32 MiB mmap threshold
              (cat_c1's float64 Z) is new memory on every public call, and its page
              faults are in the public call's time, not the kernel's; ``k/gemm`` is
              kernel / gemm,
* ``torch``   im2col / PyTorch CPU (2 threads, the better of NCHW and channels_last, each
              layout timed in a block of its own: interleaving the two layouts slows
              torch's calls down),
* ``numba``   im2col / the ``numba`` backend, when it is registered,
* ``peak``    tracemalloc's peak during one call (outputs excluded) vs the workspace limit.

Timings are medians of interleaved repeats of im2col and the bare GEMM side by side; the
numba backend and PyTorch each in their own block right after. Interleaving a parallel
kernel with a GEMM measures the threads' spinning, not the kernels: OpenBLAS's idle
workers slow a numba kernel run right after a GEMM (and, when the numba backend still
ran Numba's OpenMP threads, their spinning slowed the GEMM after it). The figures behind
these choices are in docs/bench/measured-notes.md. Run it under the shared lock, with the
machine's BLAS tuning variables unset::

    flock /tmp/fastnn-bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python scripts/measure_im2col.py

Nothing here is asserted: it reports.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

import fastnn
from fastnn import _params as P
from fastnn._dispatch import resolve
from fastnn.backends import im2col as I
from fastnn.testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES

try:
    import threadpoolctl
except ImportError:  # optional
    threadpoolctl = None

try:
    import torch
except ImportError:  # optional comparison
    torch = None


def median_times(fns, reps, budget_s):
    """Interleave the callables ``reps`` times (stopping early past ``budget_s``); medians."""
    for f in fns:  # warm up (workspace, page faults, caches)
        if f is not None:
            f()
    times = [[] for _ in fns]
    t_end = time.perf_counter() + budget_s
    for r in range(reps):
        for k, f in enumerate(fns):
            if f is None:
                continue
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() > t_end:
            break
    global LAST_MINS
    LAST_MINS = [min(t) if t else float("nan") for t in times]
    return [statistics.median(t) if t else float("nan") for t in times]


LAST_MINS = []


def peak_bytes(fn):
    I.release_workspace()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out, peak


def nbytes(x):
    if isinstance(x, tuple):
        return sum(nbytes(v) for v in x if isinstance(v, np.ndarray))
    return x.nbytes


def torch_conv(case, A, W, b, dZ):
    """(forward, backward) callables of PyTorch, the better layout chosen per direction."""
    sh, sw = (case.stride, case.stride) if isinstance(case.stride, int) else case.stride
    ph, pw = (case.pad, case.pad) if isinstance(case.pad, int) else case.pad
    best = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.from_numpy(np.ascontiguousarray(A.transpose(0, 3, 1, 2))).contiguous(memory_format=fmt)
        w = torch.from_numpy(np.ascontiguousarray(W.transpose(3, 2, 0, 1))).contiguous(memory_format=fmt)
        bb = torch.from_numpy(b.reshape(-1).copy())
        g = torch.from_numpy(np.ascontiguousarray(dZ.transpose(0, 3, 1, 2))).contiguous(memory_format=fmt)

        def fwd(x=x, w=w, bb=bb):
            with torch.no_grad():
                return torch.nn.functional.conv2d(x, w, bb, (sh, sw), (ph, pw))

        def bwd(x=x, w=w, g=g):
            return torch.ops.aten.convolution_backward(
                g, x, w, [w.shape[0]], [sh, sw], [ph, pw], [1, 1], False, [0, 0], 1, [True, True, True])

        best.append((fwd, bwd))
    return best


def torch_pool(case, A, dA, mode):
    f = case.f if isinstance(case.f, tuple) else (case.f, case.f)
    s = case.stride if isinstance(case.stride, tuple) else (case.stride, case.stride)
    pd = case.pad if isinstance(case.pad, tuple) else (case.pad, case.pad)
    out = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.from_numpy(np.ascontiguousarray(A.transpose(0, 3, 1, 2))).contiguous(memory_format=fmt)
        g = torch.from_numpy(np.ascontiguousarray(dA.transpose(0, 3, 1, 2))).contiguous(memory_format=fmt)
        if mode == "max":
            _, idx = torch.ops.aten.max_pool2d_with_indices(x, f, s, pd)

            def fwd(x=x):
                return torch.ops.aten.max_pool2d_with_indices(x, f, s, pd)

            def bwd(x=x, g=g, idx=idx):
                return torch.ops.aten.max_pool2d_with_indices_backward(g, x, f, s, pd, [1, 1], False, idx)
        else:
            def fwd(x=x):
                return torch.ops.aten.avg_pool2d(x, f, s, pd, False, True, None)

            def bwd(x=x, g=g):
                return torch.ops.aten.avg_pool2d_backward(g, x, f, s, pd, False, True, None)
        out.append((fwd, bwd))
    return out


def thread_check(shapes, reps, budget):
    """Serial column build vs OpenBLAS workers: the im2col forward, the bare GEMM and the
    column build alone with BLAS limited to 2 and to 1 thread (needs threadpoolctl)."""
    from fastnn.backends.im2col import columns as _cols

    print("\nthreads: BLAS threads vs the serial column build (float32 forward, ms)")
    for name in shapes:
        case = BENCH_CONV_SHAPES[name]
        A, W, b, hp, _ = case.make(np.float32)
        p = P.conv_params(A, W, b, hp)
        rows, Kd = p.m * p.Ho * p.Wo, p.fh * p.fw * p.C
        X = np.random.RandomState(1).standard_normal((rows, Kd)).astype(np.float32)
        Z = np.empty((rows, p.K), np.float32)
        Wm = W.reshape(Kd, p.K)
        for nt in (2, 1):
            with threadpoolctl.threadpool_limits(nt, user_api="blas"):
                t = median_times([lambda: fastnn.conv_forward(A, W, b, hp, backend="im2col"),
                                  lambda: np.matmul(X, Wm, out=Z),
                                  lambda: _cols.im2col_padded(A, 0, p.m, 0, p.Ho, 0, p.Wo, p.fh, p.fw, p.sh, p.sw,
                                                              p.ph, p.pw, 0.0, X)], reps, budget)
            print(f"  {name:<10} BLAS threads={nt}: im2col {t[0]*1e3:8.2f}  bare GEMM {t[1]*1e3:8.2f}  "
                  f"column build alone {t[2]*1e3:8.2f}  ratio {t[0]/t[1]:5.2f}", flush=True)


def fmt_ratio(x):
    return "   -  " if x != x else f"{x:6.2f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15, help="timed repeats per case (median)")
    ap.add_argument("--budget", type=float, default=4.0, help="seconds per case before stopping early")
    ap.add_argument("--shapes", nargs="*", help="only these shape names")
    ap.add_argument("--dtypes", nargs="*", default=["float32", "float64"])
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-pool", action="store_true")
    ap.add_argument("--no-conv", action="store_true")
    ap.add_argument("--threads", action="store_true",
                    help="also compare BLAS limited to 2 and 1 threads (threadpoolctl)")
    args = ap.parse_args(argv)

    use_torch = torch is not None and not args.no_torch
    if use_torch:
        torch.set_num_threads(2)
    has_numba = "numba" in fastnn.available_backends()
    limit = I.get_workspace_limit()
    print(f"numpy {np.__version__}; workspace limit {limit / 2**20:.0f} MiB; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}")
    if threadpoolctl is not None:
        for d in threadpoolctl.threadpool_info():
            print(f"  {d.get('internal_api')} {d.get('version')} kernel={d.get('architecture')} "
                  f"threads={d.get('num_threads')} ({os.path.basename(d.get('filepath', ''))})")
    if use_torch:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("ratio = im2col / bare GEMM (bar <= 1.3); torch, numba = im2col / that (lower is better for im2col)")

    if not args.no_conv:
        print(f"\n{'conv shape':<12} {'dtype':<8} {'dir':<4} {'im2col ms':>10} {'gemm ms':>9} {'ratio':>6} {'r(min)':>6} "
              f"{'kernel ms':>9} {'k/gemm':>6} "
              f"{'torch ms':>9} {'/torch':>6} {'/numba':>6} {'peak MiB':>9} {'full cols MiB':>13}")
        for name, case in BENCH_CONV_SHAPES.items():
            if args.shapes and name not in args.shapes:
                continue
            for dts in args.dtypes:
                dt = np.dtype(dts)
                A, W, b, hp, dZ = case.make(dt, seed=0)
                p = P.conv_params(A, W, b, hp)
                rows, Kd = p.m * p.Ho * p.Wo, p.fh * p.fw * p.C
                rng = np.random.RandomState(1)
                X = rng.standard_normal((rows, Kd)).astype(dt)
                Wm = W.reshape(Kd, p.K)
                G = dZ.reshape(rows, p.K)
                Zb = np.empty((rows, p.K), dt)
                dWb = np.empty((Kd, p.K), dt)
                cache = (A, W, b, hp)
                fwd = lambda: fastnn.conv_forward(A, W, b, hp, backend="im2col")
                bwd = lambda: fastnn.conv_backward(dZ, cache, backend="im2col")
                gemm_f = lambda: np.matmul(X, Wm, out=Zb)

                def gemm_b():
                    np.matmul(X.T, G, out=dWb)
                    np.matmul(G, Wm.T, out=X)

                kf, kb = resolve("conv_forward", "im2col"), resolve("conv_backward", "im2col")
                Zk, dAk, dWk, dbk = (np.empty((p.m, p.Ho, p.Wo, p.K), dt), np.empty(A.shape, dt),
                                     np.empty(W.shape, dt), np.empty(p.K, dt))
                bk = b.reshape(p.K)
                kern_f = lambda: kf(p, A, W, bk, Zk)
                kern_b = lambda: kb(p, A, W, dZ, dAk, dWk, dbk)

                tf = tb = (None, None)
                if use_torch:
                    tf, tb = zip(*torch_conv(case, A, W, b, dZ))
                nf = (lambda: fastnn.conv_forward(A, W, b, hp, backend="numba")) if has_numba else None
                nbk = (lambda: fastnn.conv_backward(dZ, cache, backend="numba")) if has_numba else None
                full_cols = rows * Kd * dt.itemsize / 2**20
                for d, mine, bare, kern, tor, nb in (("fwd", fwd, gemm_f, kern_f, tf, nf),
                                                     ("bwd", bwd, gemm_b, kern_b, tb, nbk)):
                    t = median_times([mine, bare, kern], args.reps, args.budget)
                    rmin = LAST_MINS[0] / LAST_MINS[1]
                    t_k = t[2]
                    t_nb = median_times([nb], args.reps, args.budget)[0]
                    t_torch = min(median_times([f], args.reps, args.budget)[0] for f in tor)
                    t = [t[0], t[1], None, None, t_nb]
                    out, peak = peak_bytes(mine)
                    print(f"{name:<12} {dts:<8} {d:<4} {t[0]*1e3:10.2f} {t[1]*1e3:9.2f} {fmt_ratio(t[0]/t[1])} {fmt_ratio(rmin)} "
                          f"{t_k*1e3:9.2f} {fmt_ratio(t_k/t[1])} "
                          f"{t_torch*1e3:9.2f} {fmt_ratio(t[0]/t_torch)} {fmt_ratio(t[0]/t[4])} "
                          f"{(peak - nbytes(out))/2**20:9.2f} {full_cols:13.2f}", flush=True)

    if not args.no_pool:
        print(f"\n{'pool shape':<12} {'dtype':<8} {'mode':<8} {'dir':<4} {'im2col ms':>10} {'torch ms':>9} "
              f"{'/torch':>6} {'/numba':>6} {'peak MiB':>9} {'full cols MiB':>13}")
        for name, case in BENCH_POOL_SHAPES.items():
            if args.shapes and name not in args.shapes:
                continue
            for dts in args.dtypes:
                dt = np.dtype(dts)
                A, hp, dA = case.make(dt, seed=0)
                p = P.pool_params(A, hp, "max")
                full_cols = p.m * p.Ho * p.Wo * p.fh * p.fw * p.C * dt.itemsize / 2**20
                for mode in ("max", "average"):
                    cache = (A, hp)
                    fwd = lambda: fastnn.pool_forward(A, hp, mode, backend="im2col")
                    bwd = lambda: fastnn.pool_backward(dA, cache, mode, backend="im2col")
                    tf = tb = (None, None)
                    if use_torch:
                        tf, tb = zip(*torch_pool(case, A, dA, mode))
                    nf = (lambda: fastnn.pool_forward(A, hp, mode, backend="numba")) if has_numba else None
                    nbk = (lambda: fastnn.pool_backward(dA, cache, mode, backend="numba")) if has_numba else None
                    for d, mine, tor, nb in (("fwd", fwd, tf, nf), ("bwd", bwd, tb, nbk)):
                        t = [median_times([mine], args.reps, args.budget)[0], None, None,
                             median_times([nb], args.reps, args.budget)[0]]
                        t_torch = min(median_times([f], args.reps, args.budget)[0] for f in tor)
                        out, peak = peak_bytes(mine)
                        print(f"{name:<12} {dts:<8} {mode:<8} {d:<4} {t[0]*1e3:10.2f} {t_torch*1e3:9.2f} "
                              f"{fmt_ratio(t[0]/t_torch)} {fmt_ratio(t[0]/t[3])} "
                              f"{(peak - nbytes(out))/2**20:9.2f} {full_cols:13.2f}", flush=True)
    if args.threads and threadpoolctl is not None:
        thread_check([n for n in ("cifar", "res_3x3") if not args.shapes or n in args.shapes], args.reps, args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
