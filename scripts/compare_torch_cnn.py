"""Time one training epoch of ``fastnn train --model cnn``'s network against the same network in PyTorch.

Same architecture (three conv3x3 pad 1 -> ReLU -> maxpool 2 blocks of 8, 16, 32 channels, Dense to
one logit), same data (the cat set, or random images of its shape with --synthetic), same batch
size, same dtype, Adam, binary cross-entropy on logits. PyTorch runs on the CPU with --threads
threads in both layouts (NCHW and channels_last). Each epoch time is the median of --repeats
epochs after one warm-up epoch (numba compiles there). The reference backend is timed on a
few batches and extrapolated to a full epoch.

    flock /tmp/fastnn-bench.lock python scripts/compare_torch_cnn.py --backend numba
    flock /tmp/fastnn-bench.lock python scripts/compare_torch_cnn.py --backend numba --dtype float32

Ratio = PyTorch seconds / fastnn seconds (> 1: fastnn is faster). Needs ``pip install torch==2.13.0``.
Run it on an otherwise idle machine: with other processes on the same cores, multi-threaded
PyTorch and BLAS slow down many times over (busy-waiting threads; the figure is in
docs/bench/measured-notes.md), which says nothing about either side; ``--threads 1`` is the
fairer comparison on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np


def _limit_threads(n: int) -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass
    try:
        from fastnn.backends.numba.config import override_num_threads

        override_num_threads(n)  # the numba backend's threads per kernel call
    except ImportError:
        pass


def _data(args, dtype):
    if not args.synthetic:
        from fastnn.data import DataError, load_cat_data

        try:
            X, Y, _, _, _ = load_cat_data(args.data, layout="nhwc", dtype=dtype)
            return X, Y.reshape(-1, 1).astype(dtype)
        except DataError as exc:
            print(f"(no cat data: {exc}; using random images of the same shape)", file=sys.stderr)
    rng = np.random.default_rng(0)
    return rng.random((209, 64, 64, 3)).astype(dtype), (rng.random((209, 1)) > 0.5).astype(dtype)


def time_fastnn(backend, dtype, X, Y, args, max_batches=None):
    """Median seconds per epoch (or, with max_batches, per-batch time x batches per epoch)."""
    import fastnn
    import fastnn.nn as nn

    with fastnn.use_backend(backend):
        model = nn.make_cnn(X.shape[1:], dtype=dtype, seed=0)
        loss, opt = nn.BinaryCrossEntropy(), nn.Adam(lr=0.001)
        if max_batches is not None:
            n_batches = -(-X.shape[0] // args.batch_size)
            times = []
            for j in range(max_batches):
                idx = slice(j * args.batch_size, (j + 1) * args.batch_size)
                t0 = time.perf_counter()
                nn.train_epoch(model, loss, opt, X[idx], Y[idx], batch_size=None, seed=0, epoch=0)
                times.append(time.perf_counter() - t0)
            return statistics.median(times) * n_batches, f"extrapolated from {max_batches} batches"
        nn.train_epoch(model, loss, opt, X, Y, batch_size=args.batch_size, seed=0, epoch=0)  # warm-up / JIT
        times = []
        for e in range(args.repeats):
            t0 = time.perf_counter()
            nn.train_epoch(model, loss, opt, X, Y, batch_size=args.batch_size, seed=0, epoch=e + 1)
            times.append(time.perf_counter() - t0)
        return statistics.median(times), f"median of {args.repeats} epochs"


def time_torch(dtype, X, Y, args, channels_last):
    import torch

    torch.set_num_threads(args.threads)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(0)
    H, W, C = X.shape[1:]
    layers, c = [], C
    for k in (8, 16, 32):
        layers += [torch.nn.Conv2d(c, k, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        c, H, W = k, H // 2, W // 2
    model = torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(c * H * W, 1)).to(tdtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    Xt = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))).to(memory_format=fmt)
    Yt = torch.from_numpy(Y)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    lossf = torch.nn.BCEWithLogitsLoss()
    m = Xt.shape[0]

    def epoch(e):
        perm = torch.from_numpy(np.random.default_rng([0, e]).permutation(m))
        for s in range(0, m, args.batch_size):
            idx = perm[s:s + args.batch_size]
            xb = Xt[idx].contiguous(memory_format=fmt)
            opt.zero_grad()
            loss = lossf(model(xb), Yt[idx])
            loss.backward()
            opt.step()

    epoch(0)
    times = []
    for e in range(args.repeats):
        t0 = time.perf_counter()
        epoch(e + 1)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="auto", help="fastnn backend to time (default auto)")
    ap.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch, BLAS and numba threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs (median), after one warm-up")
    ap.add_argument("--reference-batches", type=int, default=2,
                    help="batches timed on the reference backend to extrapolate its epoch (0: skip it)")
    ap.add_argument("--data", default=None, help="cat data directory (default: fastnn's lookup)")
    ap.add_argument("--synthetic", action="store_true", help="random images of the cat set's shape")
    args = ap.parse_args(argv)
    _limit_threads(args.threads)
    import fastnn
    from fastnn._dispatch import resolve_name

    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed (pip install torch==2.13.0): timing fastnn only", file=sys.stderr)
    backend = resolve_name("conv_forward", None if args.backend == "auto" else args.backend)
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)
    print(f"fastnn {fastnn.__version__}, backend {backend}, batch {args.batch_size}, {args.threads} threads, "
          f"torch {torch.__version__ if torch else 'absent'}, {os.cpu_count()} CPUs")
    rows = []
    for name in dtypes:
        dtype = np.dtype(name).type
        X, Y = _data(args, dtype)
        fast, how = time_fastnn(backend, dtype, X, Y, args)
        row = {"dtype": name, "fastnn": fast}
        if torch is not None:
            row["torch_nchw"] = time_torch(dtype, X, Y, args, channels_last=False)
            row["torch_cl"] = time_torch(dtype, X, Y, args, channels_last=True)
        if args.reference_batches and backend != "reference":
            row["reference"], _ = time_fastnn("reference", dtype, X, Y, args, max_batches=args.reference_batches)
        rows.append(row)
        print(f"  {name}: fastnn[{backend}] {fast:.4f} s/epoch ({how})", file=sys.stderr)
    print()
    print(f"{'dtype':<8} {'fastnn[' + backend + ']':>16} {'torch NCHW':>11} {'torch CL':>9} "
          f"{'ratio NCHW':>11} {'ratio CL':>9} {'reference (extrap.)':>20}")
    for r in rows:
        t1, t2 = r.get("torch_nchw"), r.get("torch_cl")
        fmt = lambda v, u="s": f"{v:.4f} {u}" if v is not None else "-"  # noqa: E731
        ratio = lambda t: f"{t / r['fastnn']:.2f}x" if t is not None else "-"  # noqa: E731
        print(f"{r['dtype']:<8} {fmt(r['fastnn']):>16} {fmt(t1):>11} {fmt(t2):>9} {ratio(t1):>11} {ratio(t2):>9} "
              f"{fmt(r.get('reference')):>20}")
    print("ratio = PyTorch seconds per epoch / fastnn seconds per epoch (> 1: fastnn faster); "
          "bars with numba: >= 1.0x float64, >= 0.7x float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
