"""AVX2's dW tile of four vectors (float32 32, float64 16 channels, 3 rows) against the rule
before it (the widest of two vectors or fewer, 4 rows): ``conv_backward`` pinned to numba, the
two rules swapped in alternating rounds in one process (median of the per-round time ratios
before/after, with the range; > 1: the new rule faster). Each rule's dW is asserted against
the reference's to the dtype's tolerance.

    python3 docs/bench/2026-12-07-dw-wide-ab.py [--rounds 7] [--only res_3x3,cifar] [--dtype float32]

Shapes: the built-in table's and the held-out layers of ``scripts/measure_torch.py``, and the
cnn's; only res_3x3, resnet14_256, vgg56_64 and the cnn's were timed when the tile was chosen.
"""

import argparse
import os
import statistics
import sys

import numpy as np

import fastnn
from fastnn._plan import timed_block
from fastnn.backends.numba import tiles
from fastnn.bench.workloads import BENCH_CONV_SHAPES

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from measure_torch import CNN_CONV, HELDOUT_CONV  # noqa: E402  (the held-out and cnn layers)


def old_rule(dtype, K, L, T=None):
    """The rule before: T the widest of two vectors or fewer that fits, J = 4 (one vector: by fw*C)."""
    dtype = np.dtype(dtype)
    lanes = tiles.LANES[dtype]
    if T is None:
        T = next(t for t in tiles.BWD_T[dtype] if t <= K and t <= 2 * lanes)
    return NEW(dtype, K, L, T)


NEW = tiles.dw_tile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", help="comma-separated layer names")
    ap.add_argument("--dtype", choices=("float32", "float64"))
    args = ap.parse_args()
    assert not tiles.AVX512, "an AVX2 build's rule (this host compiles for AVX-512)"
    cases = [c for n, c in BENCH_CONV_SHAPES.items() if n != "seed"] + HELDOUT_CONV + CNN_CONV
    ratios_all = []
    for dtype in [np.dtype(args.dtype).type] if args.dtype else (np.float32, np.float64):
        for case in cases:
            if args.only and case.name not in args.only.split(","):
                continue
            A, W, b, hp, dZ = case.make(dtype, seed=0)
            p = fastnn._params.conv_params(A, W, b, hp)
            if p.G > 1:
                continue
            L = p.fw * (p.C // p.G)
            if NEW(dtype, p.K, L) == old_rule(dtype, p.K, L):
                continue
            _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
            _, ref = fastnn.conv_forward(A, W, b, hp, backend="reference")
            dW_ref = fastnn.conv_backward(dZ, ref, backend="reference")[1]
            rules = {"before": old_rule, "after": NEW}
            times = {k: [] for k in rules}
            for r in range(args.rounds):
                for name in (rules if r % 2 == 0 else list(rules)[::-1]):
                    tiles.dw_tile = rules[name]
                    try:
                        dW = fastnn.conv_backward(dZ, cache, backend="numba")[1]
                        tol = 1e-4 if dtype == np.float32 else 1e-11
                        assert np.allclose(dW, dW_ref, rtol=tol, atol=tol * np.abs(dW_ref).max()), name
                        times[name].append(timed_block(lambda: fastnn.conv_backward(dZ, cache, backend="numba"), n=3))
                    finally:
                        tiles.dw_tile = NEW
            ratios = [a / b for a, b in zip(times["before"], times["after"])]
            ratios_all.append(statistics.median(ratios))
            print(f"{case.name:14s} {np.dtype(dtype).name:8s} K={p.K:4d} fw*C={L:5d} "
                  f"{old_rule(dtype, p.K, L)} -> {NEW(dtype, p.K, L)}  conv_backward before/after "
                  f"{statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}]  "
                  f"({statistics.median(times['after']) * 1e3:.2f} ms)", flush=True)
    print(f"{len(ratios_all)} rows: median {statistics.median(ratios_all):.3f}, "
          f"from {min(ratios_all):.3f} to {max(ratios_all):.3f}")


if __name__ == "__main__":
    main()
