"""Measure the numba backend against PyTorch CPU (side by side, same run) and print ratio tables.

Run (one timing run at a time on the shared machine):

    flock /tmp/fastnn-bench.lock python scripts/measure_numba.py            # everything
    flock /tmp/fastnn-bench.lock python scripts/measure_numba.py --only conv --dtype float64
    flock /tmp/fastnn-bench.lock python scripts/measure_numba.py --only blas   # BLAS vs numba threads
    flock /tmp/fastnn-bench.lock python scripts/measure_numba.py --only tiles  # forward tiles side by side
    python scripts/measure_numba.py --only compile   # cold first call per op, shape, dtype

Speed = torch time / fastnn time (> 1: fastnn faster). Each figure is the median of
``--repeat`` runs after an untimed warm-up that also checks fastnn's result against torch
(or the reference backend where torch is missing). Torch runs with
``torch.set_num_threads(threads)`` and the better of NCHW and channels_last per shape.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import fastnn
from fastnn._params import _pair, conv_out_size
from fastnn.testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None


STAT = statistics.median  # --stat min: the best run (less sensitive to a loaded machine)


def med(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return STAT(ts)


def reps_for(seconds_one):
    return int(min(15, max(3, 0.4 / max(seconds_one, 1e-6))))


def _torch_conv(A, W, b, case, fmt):
    sh, sw = (case.stride, case.stride) if isinstance(case.stride, int) else case.stride
    ph, pw = (case.pad, case.pad) if isinstance(case.pad, int) else case.pad
    mf = torch.channels_last if fmt == "cl" else torch.contiguous_format
    x = torch.from_numpy(np.ascontiguousarray(A.transpose(0, 3, 1, 2))).contiguous(memory_format=mf)
    w = torch.from_numpy(np.ascontiguousarray(W.transpose(3, 2, 0, 1))).contiguous(memory_format=mf)
    bb = torch.from_numpy(b.reshape(-1).copy())

    def fwd():
        with torch.no_grad():
            return F.conv2d(x, w, bb, stride=(sh, sw), padding=(ph, pw))

    xg = x.clone().requires_grad_(True)
    wg = w.clone().requires_grad_(True)
    bg = bb.clone().requires_grad_(True)
    with torch.no_grad():
        gz = torch.ones_like(fwd())

    def fb():
        xg.grad = wg.grad = bg.grad = None
        z = F.conv2d(xg, wg, bg, stride=(sh, sw), padding=(ph, pw))
        z.backward(gz)

    return fwd, fb


def conv_rows(dtype, repeat, shapes):
    rows = []
    for name in shapes:
        case = BENCH_CONV_SHAPES[name]
        A, W, b, hp, dZ = case.make(dtype, seed=0)
        Z, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
        if torch is not None:
            tf, _ = _torch_conv(A, W, b, case, "nchw")
            Zt = tf().numpy().transpose(0, 2, 3, 1)
            tol = 1e-3 if dtype == np.float32 else 1e-9
            assert np.allclose(Z, Zt, rtol=tol, atol=tol * max(1, np.abs(Zt).max())), f"conv {name} mismatch vs torch"
        fastnn.conv_backward(dZ, cache, backend="numba")

        def f_fwd():
            fastnn.conv_forward(A, W, b, hp, backend="numba")

        def f_fb():
            Z, c = fastnn.conv_forward(A, W, b, hp, backend="numba")
            fastnn.conv_backward(dZ, c, backend="numba")

        t1 = med(f_fwd, 1)
        r = reps_for(t1)
        tf_fwd = med(f_fwd, r)
        tf_fb = med(f_fb, max(3, r // 3))
        row = dict(shape=name, dtype=np.dtype(dtype).name, fastnn_fwd=tf_fwd, fastnn_fb=tf_fb,
                   gflops=case.flops / tf_fwd / 1e9)
        if torch is not None:
            best_f = best_b = float("inf")
            for fmt in ("nchw", "cl"):
                tfw, tfb = _torch_conv(A, W, b, case, fmt)
                tfw()
                tfb()
                best_f = min(best_f, med(tfw, r))
                best_b = min(best_b, med(tfb, max(3, r // 3)))
            row.update(torch_fwd=best_f, torch_fb=best_b, fwd_ratio=best_f / tf_fwd, fb_ratio=best_b / tf_fb)
        rows.append(row)
        print_row(row)
    return rows


def _torch_pool(A, case, mode, fmt):
    f = case.f if isinstance(case.f, tuple) else (case.f, case.f)
    s = case.stride if isinstance(case.stride, tuple) else (case.stride, case.stride)
    mf = torch.channels_last if fmt == "cl" else torch.contiguous_format
    x = torch.from_numpy(np.ascontiguousarray(A.transpose(0, 3, 1, 2))).contiguous(memory_format=mf)
    op = F.max_pool2d if mode == "max" else F.avg_pool2d

    def fwd():
        with torch.no_grad():
            return op(x, f, s)

    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        g = torch.ones_like(fwd())

    def fb():
        xg.grad = None
        op(xg, f, s).backward(g)

    return fwd, fb


def pool_rows(dtype, repeat, shapes):
    rows = []
    for name in shapes:
        case = BENCH_POOL_SHAPES[name]
        A, hp, dA = case.make(dtype, seed=0)
        for mode in ("max", "average"):
            out, cache = fastnn.pool_forward(A, hp, mode, backend="numba")
            if torch is not None:
                tf, _ = _torch_pool(A, case, mode, "nchw")
                assert np.allclose(out, tf().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5), f"pool {name} {mode}"
            ties = "first"  # torch's rule

            def f_fwd():
                fastnn.pool_forward(A, hp, mode, backend="numba")

            def f_fb():
                o, c = fastnn.pool_forward(A, hp, mode, backend="numba")
                fastnn.pool_backward(dA, c, mode, ties=ties, backend="numba")

            f_fb()
            r = reps_for(med(f_fwd, 1))
            row = dict(shape=f"{name}/{mode}", dtype=np.dtype(dtype).name, fastnn_fwd=med(f_fwd, r),
                       fastnn_fb=med(f_fb, r))
            if torch is not None:
                bf = bb = float("inf")
                for fmt in ("nchw", "cl"):
                    tfw, tfb = _torch_pool(A, case, mode, fmt)
                    tfw()
                    tfb()
                    bf = min(bf, med(tfw, r))
                    bb = min(bb, med(tfb, r))
                row.update(torch_fwd=bf, torch_fb=bb, fwd_ratio=bf / row["fastnn_fwd"], fb_ratio=bb / row["fastnn_fb"])
            rows.append(row)
            print_row(row)
    return rows


def print_row(row):
    def ms(x):
        return f"{x * 1e3:9.3f}" if x is not None else "        -"

    extra = f"  {row['gflops']:6.1f} GF/s" if "gflops" in row else ""
    print(f"{row['shape']:18s} {row['dtype']:8s} fwd {ms(row['fastnn_fwd'])} ms vs torch {ms(row.get('torch_fwd'))} "
          f"-> {row.get('fwd_ratio', float('nan')):5.2f}x | fwd+bwd {ms(row['fastnn_fb'])} vs {ms(row.get('torch_fb'))} "
          f"-> {row.get('fb_ratio', float('nan')):5.2f}x{extra}", flush=True)


def gemm_peak(dtype, threads):
    n = 2048
    a = np.random.RandomState(0).standard_normal((n, n)).astype(dtype)
    try:
        from threadpoolctl import threadpool_limits
        ctx = threadpool_limits(threads)
    except ImportError:
        import contextlib
        ctx = contextlib.nullcontext()
    with ctx:
        a @ a
        t = med(lambda: a @ a, 3)
    return 2 * n ** 3 / t / 1e9


def seed_overhead():
    case = BENCH_CONV_SHAPES["seed"]
    A, W, b, hp, _ = case.make(np.float64, seed=0)
    fastnn.conv_forward(A, W, b, hp)
    n = 2000
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(n):
            fastnn.conv_forward(A, W, b, hp)
        ts.append((time.perf_counter() - t0) / n)
    return statistics.median(ts)


FIRST_CALL = r"""
import time, sys, numpy as np
t0 = time.perf_counter()
import fastnn
from fastnn.testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES
t_imp = time.perf_counter() - t0
dt = np.dtype(sys.argv[1])
c = BENCH_CONV_SHAPES["cifar"]; A, W, b, hp, dZ = c.make(dt)
pc = BENCH_POOL_SHAPES["p2s2"]; P, php, dP = pc.make(dt)
res = {"import": t_imp}
def tm(k, f):
    t0 = time.perf_counter(); f(); res[k] = time.perf_counter() - t0
tm("conv_forward", lambda: fastnn.conv_forward(A, W, b, hp, backend="numba"))
Z, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
tm("conv_backward", lambda: fastnn.conv_backward(dZ, cache, backend="numba"))
tm("pool_forward", lambda: fastnn.pool_forward(P, php, "max", backend="numba"))
o, pc_ = fastnn.pool_forward(P, php, "max", backend="numba")
tm("pool_backward", lambda: fastnn.pool_backward(dP, pc_, "max", backend="numba"))
tm("relu", lambda: fastnn.relu(Z, backend="numba"))
print(repr(res))
"""


SPIN = r"""
import statistics, sys, time, numpy as np, fastnn
from fastnn.testing.cases import BENCH_CONV_SHAPES
A, W, b, hp, _ = BENCH_CONV_SHAPES["cifar"].make(np.float32, seed=0)
rng = np.random.default_rng(1)
X = rng.standard_normal((25088, 256)).astype(np.float32)  # the pointwise shape's GEMM
Wm = rng.standard_normal((256, 64)).astype(np.float32)
Z = np.empty((25088, 64), np.float32)
nb = lambda: fastnn.conv_forward(A, W, b, hp, backend="numba")
gemm = lambda: np.matmul(X, Wm, out=Z)
def med(fns, reps=15):
    for f in fns:
        f()
    ts = [[] for _ in fns]
    for _ in range(reps):
        for k, f in enumerate(fns):
            t0 = time.perf_counter(); f(); ts[k].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in ts]
res = {"gemm alone": med([gemm])[0], "numba alone": med([nb])[0]}
res["numba after gemm"], res["gemm after numba"] = med([nb, gemm])
burnt = []
for _ in range(5):
    nb(); c0 = time.process_time(); time.sleep(0.1); burnt.append(time.process_time() - c0)
res["cpu burnt"] = statistics.median(burnt)
print(repr(res))
"""


def spin_check(rounds=3):
    """A BLAS GEMM right after a numba kernel and the reverse, in fresh processes, as they
    are and with OpenBLAS's idle workers told to sleep sooner (OPENBLAS_THREAD_TIMEOUT=20,
    read when numpy loads OpenBLAS), alternately; medians over the rounds."""
    runs = {"default": [], "openblas": []}
    for _ in range(rounds):
        for key in runs:
            env = dict(os.environ)
            env.pop("OPENBLAS_THREAD_TIMEOUT", None)
            if key == "openblas":
                env["OPENBLAS_THREAD_TIMEOUT"] = "20"
            r = subprocess.run([sys.executable, "-c", SPIN], env=env, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(r.stderr)
            runs[key].append(eval(r.stdout.strip().splitlines()[-1]))
    print("BLAS and numba threads (float32; GEMM 25088x256 @ 256x64, numba conv_forward cifar), ms;"
          " medians of interleaved calls, then over rounds:")
    for key, label in (("default", "as is"), ("openblas", "OPENBLAS_THREAD_TIMEOUT=20")):
        m = {k: statistics.median(r[k] for r in runs[key]) for k in runs[key][0]}
        print(f"  {label:<38} GEMM alone {m['gemm alone']*1e3:6.2f}, right after a numba kernel "
              f"{m['gemm after numba']*1e3:6.2f} ({m['gemm after numba']/m['gemm alone']:.2f}x) | numba alone "
              f"{m['numba alone']*1e3:6.2f}, right after the GEMM {m['numba after gemm']*1e3:6.2f} "
              f"({m['numba after gemm']/m['numba alone']:.2f}x) | CPU burnt in 100 ms idle after a kernel "
              f"{m['cpu burnt']*1e3:5.1f} ms")


COLD_CALLS = r"""
import time, sys, numpy as np, fastnn
from fastnn.testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES
kind, name, dt = sys.argv[1], sys.argv[2], np.dtype(sys.argv[3])
res = {}
def tm(k, f):
    t0 = time.perf_counter(); out = f(); res[k] = time.perf_counter() - t0; return out
if kind == "conv":
    A, W, b, hp, dZ = BENCH_CONV_SHAPES[name].make(dt)
    Z, cache = tm("fwd", lambda: fastnn.conv_forward(A, W, b, hp, backend="numba"))
    tm("bwd", lambda: fastnn.conv_backward(dZ, cache, backend="numba"))
else:
    P, php, dP = BENCH_POOL_SHAPES[name].make(dt)
    for mode in ("max", "average"):
        o, c = tm(mode + " fwd", lambda: fastnn.pool_forward(P, php, mode, backend="numba"))
        tm(mode + " bwd", lambda: fastnn.pool_backward(dP, c, mode, backend="numba"))
print(repr(res))
"""


def cold_table(dtypes, conv_shapes, pool_shapes):
    """Cold first calls: for each shape and dtype a fresh process with an empty Numba cache
    times the first numba conv_forward then conv_backward (or pool_forward then
    pool_backward, max then average), each compiling what it runs (what an earlier call in
    the process compiled is not compiled again: the backward after its forward)."""
    print("cold first calls, empty cache, s (fresh process per row; import not counted):")
    for dt in dtypes:
        name_dt = np.dtype(dt).name
        for kind, shapes in (("conv", conv_shapes), ("pool", pool_shapes)):
            for name in shapes:
                with tempfile.TemporaryDirectory() as d:
                    r = subprocess.run([sys.executable, "-c", COLD_CALLS, kind, name, name_dt],
                                       env=dict(os.environ, NUMBA_CACHE_DIR=d), capture_output=True, text=True)
                if r.returncode:
                    raise RuntimeError(r.stderr)
                res = eval(r.stdout.strip().splitlines()[-1])
                print(f"  {kind} {name:<10} {name_dt:<8} " + ", ".join(f"{k} {v:.2f}" for k, v in res.items()))


def first_calls(dtype):
    """(cold, cached): first-call seconds per op in a fresh process with an empty, then warm, cache dir."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        out = []
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", FIRST_CALL, dtype], env=env, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(r.stderr)
            out.append(eval(r.stdout.strip().splitlines()[-1]))
        return out


def tile_rows(dtype, shapes, rounds=20):
    """The forward kernel alone, once per big tile of ``FWD_TILES`` (at least half the widest's
    accumulators) that fits the shape (``tiles.fwd_plan``; the picked tile is timed too), as the
    wrapper runs it (``_fwd_kernel_call``: the row kernel or the pixel-run one, by ``fwd_plan``), on the forward and on the stride-1
    dA_prev phase of each shape (dZ correlated with W flipped), interleaved call by call in one
    process, the order alternating per round; every tile's output is checked bit-equal to the
    picked tile's (each output sums the same terms in the same order). Prints median ms per tile
    and the ratio to the tile ``fwd_tile`` picks."""
    from fastnn.backends import numba as nb
    from fastnn.backends.numba import tiles

    print(f"forward tiles, {np.dtype(dtype).name} (median ms; x: time / the picked tile's time, > 1 slower):")
    for name in shapes:
        case = BENCH_CONV_SHAPES[name]
        A, W, b, hp, dZ = case.make(dtype, seed=0)
        fh, fw, C, K = W.shape
        sh, sw = _pair(hp["stride"], "stride", 1)
        ph, pw = _pair(hp["pad"], "pad", 0)
        runs = [(name, A, W, b.reshape(K), sh, sw, ph, pw)]
        if (sh, sw) == (1, 1) and ph < fh and pw < fw:
            runs.append((name + " dA", dZ, np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2)),
                         np.zeros(C, dtype), 1, 1, fh - 1 - ph, fw - 1 - pw))
        for label, X, Wt, bias, sh_, sw_, ph_, pw_ in runs:
            m, H, Wd, Cx = X.shape
            Ko = Wt.shape[3]
            Ho, Wo = conv_out_size(H, fh, ph_, sh_), conv_out_size(Wd, fw, pw_, sw_)
            Xp = nb._padded(X, ph_, pw_) if (ph_ or pw_) else X
            Wm = Wt.reshape(fh, fw * Cx, Ko)
            calls, outs = {}, {}
            picked = tiles.fwd_plan(np.dtype(dtype), Ko, Ho, Wo, fw * Cx)[:2]
            widest = tiles.FWD_TILES[np.dtype(dtype)][0]
            for P, T in tiles.FWD_TILES[np.dtype(dtype)]:
                if (P, T) != picked and (tiles.fwd_plan(np.dtype(dtype), Ko, Ho, Wo, fw * Cx, (P, T))[:2] != (P, T)
                                        or 2 * P * T < widest[0] * widest[1]):
                    continue
                Z = np.empty((m, Ho, Wo, Ko), dtype)
                calls[(P, T)] = (lambda Z=Z, tile=(P, T): nb._fwd_kernel_call(Xp, Wm, bias, Z, sh_, sw_, tile))
                calls[(P, T)]()
                outs[(P, T)] = Z
            ts = {k: [] for k in calls}
            for r in range(rounds):
                for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                    t0 = time.perf_counter()
                    calls[k]()
                    ts[k].append(time.perf_counter() - t0)
            for k, Z in outs.items():  # every tile sums each output in the same order
                assert np.array_equal(Z, outs[picked]), f"{label}: tile {k} differs from {picked}"
            base = statistics.median(ts[picked])
            print(f"  {label:<14} picked {picked}: " + ", ".join(
                f"{k} {statistics.median(v) * 1e3:.2f} ({statistics.median(v) / base:.2f}x)" for k, v in ts.items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["conv", "pool", "misc", "blas", "tiles", "compile"], action="append",
                    help="parts to run (default all but tiles and compile)")
    ap.add_argument("--dtype", choices=["float32", "float64"], action="append")
    ap.add_argument("--shapes", nargs="*")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="statistic over the timed runs (default median; min on a busy machine)")
    args = ap.parse_args(argv)
    global STAT
    STAT = min if args.stat == "min" else statistics.median
    import numba

    from fastnn.backends.numba.config import override_num_threads
    override_num_threads(args.threads)  # the numba backend's threads per kernel call
    if torch is not None:
        torch.set_num_threads(args.threads)
    only = args.only or ["conv", "pool", "misc", "blas"]
    dtypes = [np.dtype(d).type for d in (args.dtype or ["float64", "float32"])]
    print(f"stat={args.stat} threads={args.threads} numba {numba.__version__} "
          f"torch {torch.__version__ if torch else 'missing'}")
    for dt in dtypes:
        if "conv" in only:
            shapes = args.shapes or [s for s in BENCH_CONV_SHAPES if s != "seed"]
            rows = conv_rows(dt, args.repeat, [s for s in shapes if s in BENCH_CONV_SHAPES])
            peak = gemm_peak(dt, args.threads)
            print(f"  BLAS GEMM peak {np.dtype(dt).name}: {peak:.1f} GFLOP/s; share of peak (C_in >= 32): " + ", ".join(
                f"{r['shape']} {r['gflops'] / peak * 100:.0f}%" for r in rows if BENCH_CONV_SHAPES[r['shape']].C >= 32))
        if "tiles" in only:
            tile_rows(dt, [s for s in (args.shapes or ["cifar", "res_3x3", "stride2", "pointwise", "stem7x7"])
                           if s in BENCH_CONV_SHAPES])
        if "pool" in only:
            shapes = args.shapes or [s for s in BENCH_POOL_SHAPES if s != "seed"]
            pool_rows(dt, args.repeat, [s for s in shapes if s in BENCH_POOL_SHAPES])
    if "misc" in only:
        print(f"seed-shape public conv_forward call: {seed_overhead() * 1e6:.1f} us")
        case = BENCH_CONV_SHAPES["cat_c1"]
        A, W, b, hp, _ = case.make(np.float64, seed=0)
        fastnn.conv_forward(A, W, b, hp, backend="numba")  # untimed: compile / load from cache
        t_nb = med(lambda: fastnn.conv_forward(A, W, b, hp, backend="numba"), 9)
        small = case.__class__("cat_c1_1img", 1, case.H, case.W, case.C, case.f, case.K, case.stride, case.pad)
        A1, W1, b1, hp1, _ = small.make(np.float64, seed=0)
        t_ref1 = med(lambda: fastnn.conv_forward(A1, W1, b1, hp1, backend="reference"), 1)
        print(f"cat_c1 vs reference: reference ~{t_ref1 * case.m:.2f} s (1 image x {case.m}), numba "
              f"{t_nb * 1e3:.2f} ms -> {t_ref1 * case.m / t_nb:.0f}x")
        for dt in ("float64", "float32"):
            cold, warm = first_calls(dt)
            print(f"first call {dt}: cold " + ", ".join(f"{k} {v:.2f}s" for k, v in cold.items())
                  + " | cached " + ", ".join(f"{k} {v:.3f}s" for k, v in warm.items()))
    if "blas" in only:
        spin_check()
    if "compile" in only:
        cold_table([np.dtype(d).type for d in (args.dtype or ["float32", "float64"])],
                   [s for s in (args.shapes or BENCH_CONV_SHAPES) if s in BENCH_CONV_SHAPES],
                   [s for s in (args.shapes or BENCH_POOL_SHAPES) if s in BENCH_POOL_SHAPES])


if __name__ == "__main__":
    main()
