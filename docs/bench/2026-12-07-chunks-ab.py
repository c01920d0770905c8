"""Chunks taken in turn against one fixed chunk per thread, in one process (numba backend).

    python3 docs/bench/2026-12-07-chunks-ab.py [--rounds 9] [--dtype float32] [layer ...]
    python3 docs/bench/2026-12-07-chunks-ab.py --chunk-times [layer ...]

The first form times each layer's forward and forward+backward with ``CHUNKS_PER_THREAD`` 1
(one chunk per thread: the old split) and 8 (the default), alternating the two in every round
(the order flipped every other round), and prints the median of the per-round ratios
fixed/in-turn (> 1: in turn faster) with its range. The second prints, for 12 forward calls
of each layer on one chunk per thread, when each chunk started and ended (ms from the call's
start): how unequal two equal shares of work run on the shared host. Threads: fastnn's
setting (2 on the 2-vCPU host).
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

import fastnn
from fastnn.backends import numba as nb
from fastnn.backends.numba import config as cfg
from fastnn.testing.cases import BENCH_CONV_SHAPES

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import measure_torch as MT  # noqa: E402  (the held-out layers)

# the table's large convolutions and the held-out ones (NHWC cases)
LAYERS = {c.name: c for c in list(BENCH_CONV_SHAPES.values()) + MT.HELDOUT_CONV
          if c.groups == 1 and c.dilation == 1 and c.layout == "NHWC" and c.flops > 10 ** 8}


def _per_call(fn, n):
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def _arrays(name, dtype):
    A, W, b, hp, _ = LAYERS[name].make(dtype, seed=0)
    return A, W, b, hp


def ab(names, dtype, rounds, per_in_turn=cfg.CHUNKS_PER_THREAD):
    for name in names:
        A, W, b, hp = _arrays(name, dtype)
        Z, _ = fastnn.conv_forward(A, W, b, hp, backend="numba")
        dZ = np.random.default_rng(1).standard_normal(Z.shape).astype(dtype)
        ops = {"fwd": lambda: fastnn.conv_forward(A, W, b, hp, backend="numba"),
               "fwd+bwd": lambda: fastnn.conv_backward(dZ, fastnn.conv_forward(A, W, b, hp, backend="numba")[1],
                                                       backend="numba")}
        out = []
        for op, fn in ops.items():
            t = {1: [], per_in_turn: []}
            for r in range(rounds):
                for per in ((1, per_in_turn) if r % 2 == 0 else (per_in_turn, 1)):
                    cfg.CHUNKS_PER_THREAD = per
                    t[per].append(_per_call(fn, 3))
            ratio = [a / b for a, b in zip(t[1], t[per_in_turn])]
            out.append(f"{op} fixed/in-turn {statistics.median(ratio):.3f} [{min(ratio):.2f}, {max(ratio):.2f}]")
        print(f"{name:14s} {np.dtype(dtype).name}  " + " | ".join(out), flush=True)


def chunk_times(names, dtype):
    cfg.CHUNKS_PER_THREAD = 1
    run = nb.run_chunks
    spans = []

    def timed(kernel, args, n, nthreads=None):
        if not getattr(kernel, "__name__", "").startswith("conv_fwd"):  # (the padding's copy)
            return run(kernel, args, n, nthreads)
        t00 = time.perf_counter()

        def chunk(*a):
            t0 = time.perf_counter()
            kernel(*a)
            spans.append((a[-2], t0 - t00, time.perf_counter() - t00))
        run(chunk, args, n, nthreads)

    nb.run_chunks = timed
    try:
        for name in names:
            A, W, b, hp = _arrays(name, dtype)
            for _ in range(3):
                fastnn.conv_forward(A, W, b, hp, backend="numba")
            for _ in range(12):
                spans.clear()
                fastnn.conv_forward(A, W, b, hp, backend="numba")
                print(name, " ".join(f"chunk {c}: {a * 1e3:.2f}-{e * 1e3:.2f} ms" for c, a, e in sorted(spans)), flush=True)
    finally:
        nb.run_chunks = run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("layers", nargs="*", default=list(LAYERS))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--chunk-times", action="store_true")
    ap.add_argument("--per-thread", type=int, default=cfg.CHUNKS_PER_THREAD,
                    help="CHUNKS_PER_THREAD of the in-turn side (default: the library's)")
    a = ap.parse_args()
    if a.chunk_times:
        chunk_times(a.layers, np.dtype(a.dtype))
    else:
        ab(a.layers, np.dtype(a.dtype), a.rounds, a.per_thread)


if __name__ == "__main__":
    main()
