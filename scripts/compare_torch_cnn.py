"""Time one training epoch of ``fastnn train --model cnn``'s network against the same network in PyTorch.

Same architecture (three conv3x3 pad 1 -> ReLU -> maxpool 2 blocks of 8, 16, 32 channels, Dense to
one logit), same data (the cat set, or random images of its shape with --synthetic), same batch
size, same dtype, Adam, binary cross-entropy on logits. PyTorch runs on the CPU with --threads
threads in both layouts (NCHW and channels_last). After one warm-up epoch each (numba compiles
there), fastnn and the two PyTorch models train one epoch each per round, in an order reversed
every other round, for --repeats rounds; each ratio is the median over rounds of PyTorch's
epoch time over fastnn's in the same round, with its range (a shared machine's speed moves
from minute to minute; only the same round's times compare). The reference backend is timed
on a few batches and extrapolated to a full epoch.

    flock /tmp/fastnn-bench.lock python scripts/compare_torch_cnn.py --repeats 7
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


def fastnn_epochs(backend, dtype, X, Y, args):
    """A function that trains the fastnn model one epoch (epoch number e) on ``backend``."""
    import fastnn
    import fastnn.nn as nn

    with fastnn.use_backend(backend):
        model = nn.make_cnn(X.shape[1:], dtype=dtype, seed=0)
    loss, opt = nn.BinaryCrossEntropy(), nn.Adam(lr=0.001)

    def epoch(e):
        with fastnn.use_backend(backend):
            nn.train_epoch(model, loss, opt, X, Y, batch_size=args.batch_size, seed=0, epoch=e)

    return epoch


def reference_epoch(dtype, X, Y, args, batches):
    """The reference backend's epoch, extrapolated from the median of ``batches`` batches."""
    import fastnn
    import fastnn.nn as nn

    with fastnn.use_backend("reference"):
        model = nn.make_cnn(X.shape[1:], dtype=dtype, seed=0)
        loss, opt = nn.BinaryCrossEntropy(), nn.Adam(lr=0.001)
        times = []
        for j in range(batches):
            idx = slice(j * args.batch_size, (j + 1) * args.batch_size)
            t0 = time.perf_counter()
            nn.train_epoch(model, loss, opt, X[idx], Y[idx], batch_size=None, seed=0, epoch=0)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * -(-X.shape[0] // args.batch_size)


def torch_epochs(dtype, X, Y, args, channels_last):
    """A function that trains the same network in PyTorch one epoch (epoch number e)."""
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

    return epoch


def rounds(epochs, repeats):
    """Seconds of one epoch of each of ``epochs`` (name -> function) per round, after one
    warm-up epoch each (numba compiles there), in ``repeats`` rounds whose order is reversed
    every other round: {name: [seconds per round]}."""
    names = list(epochs)
    for name in names:
        epochs[name](0)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            epochs[name](r + 1)
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="auto", help="fastnn backend to time (default auto: the planner's choice)")
    ap.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch, BLAS and numba threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds of one timed epoch each, after one warm-up")
    ap.add_argument("--reference-batches", type=int, default=2,
                    help="batches timed on the reference backend to extrapolate its epoch (0: skip it)")
    ap.add_argument("--data", default=None, help="cat data directory (default: fastnn's lookup)")
    ap.add_argument("--synthetic", action="store_true", help="random images of the cat set's shape")
    args = ap.parse_args(argv)
    _limit_threads(args.threads)
    import fastnn

    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed (pip install torch==2.13.0): timing fastnn only", file=sys.stderr)
    backend = args.backend
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)
    print(f"fastnn {fastnn.__version__}, backend {backend}, batch {args.batch_size}, {args.threads} threads, "
          f"torch {torch.__version__ if torch else 'absent'}, {os.cpu_count()} CPUs, {args.repeats} rounds")
    rows = []
    for name in dtypes:
        dtype = np.dtype(name).type
        X, Y = _data(args, dtype)
        epochs = {"fastnn": fastnn_epochs(backend, dtype, X, Y, args)}
        if torch is not None:
            epochs["torch_nchw"] = torch_epochs(dtype, X, Y, args, channels_last=False)
            epochs["torch_cl"] = torch_epochs(dtype, X, Y, args, channels_last=True)
        times = rounds(epochs, args.repeats)
        row = {"dtype": name, "times": times}
        if args.reference_batches and backend != "reference":
            row["reference"] = reference_epoch(dtype, X, Y, args, args.reference_batches)
        rows.append(row)
        print(f"  {name}: fastnn[{backend}] {statistics.median(times['fastnn']):.4f} s/epoch "
              f"(median of {args.repeats} rounds)", file=sys.stderr)
    print()
    print(f"{'dtype':<8} {'fastnn[' + backend + ']':>16} {'torch NCHW':>11} {'torch CL':>9} "
          f"{'ratio NCHW':>20} {'ratio CL':>20} {'reference (extrap.)':>20}")
    for r in rows:
        t = r["times"]
        med = lambda k: f"{statistics.median(t[k]):.4f} s" if k in t else "-"  # noqa: E731

        def ratio(k):  # the median of the per-round ratios, with their range
            if k not in t:
                return "-"
            q = [a / b for a, b in zip(t[k], t["fastnn"])]
            return f"{statistics.median(q):.2f}x [{min(q):.2f}, {max(q):.2f}]"

        ref = f"{r['reference']:.4f} s" if r.get("reference") is not None else "-"
        print(f"{r['dtype']:<8} {med('fastnn'):>16} {med('torch_nchw'):>11} {med('torch_cl'):>9} "
              f"{ratio('torch_nchw'):>20} {ratio('torch_cl'):>20} {ref:>20}")
    print("ratio = PyTorch seconds per epoch / fastnn seconds per epoch in the same round, the median over "
          "rounds [range] (> 1: fastnn faster); issue 19's bars: float32 >= 1.0x, float64 >= 1.5x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
