"""The grouped/dilated forward kernel's pixel runs (templates.conv_fwd_gd_run, tiles.fwd_plan's
rule) against the rule before them (the row kernel conv_fwd_gd, its tile fitted to one output
row: tiles.fwd_tile(dtype, Kg, Wo)): ``conv_forward`` and ``conv_backward`` (whose stride-1
dA_prev runs the same kernels) pinned to numba, the two rules swapped in alternating rounds in
one process; printed: the median of the per-round time ratios before/after, with the range
(> 1: the runs faster). Each rule's output is asserted against the reference's.

    python3 docs/bench/2026-12-07-gd-runs-ab.py [--rounds 7] [--only grouped,dil28_64] [--dtype float32]

Layers: the built-in table's grouped and dilated ones and scripts/measure_general.py's (timed
when the rule was chosen), and unseen ones (``UNSEEN``: never timed before this script ran).
"""

import argparse
import os
import statistics
import sys

import numpy as np

import fastnn
from fastnn._plan import timed_block
from fastnn.backends import numba as nb
from fastnn.backends.numba import tiles
from fastnn.bench.workloads import BENCH_CONV_SHAPES
from fastnn.testing.cases import ConvCase
from fastnn.testing.tolerance import assert_close

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from measure_general import DILATED, GROUPED  # noqa: E402

UNSEEN = [
    ConvCase("resnext_g32", 8, 14, 14, 256, 3, 256, 1, 1, groups=32),
    ConvCase("g3_17_96", 4, 17, 17, 96, 3, 96, 1, 1, groups=3),
    ConvCase("deeplab_d2_33", 4, 33, 33, 128, 3, 128, 1, 2, dilation=2),
    ConvCase("d4_19_96", 4, 19, 19, 96, 3, 64, 1, 4, dilation=4),
]

NEW = tiles.fwd_plan


def old_plan(dtype, K, Ho, Wo, columns, tile=None):
    return (*tiles.fwd_tile(dtype, K, Wo), True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", help="comma-separated layer names")
    ap.add_argument("--dtype", choices=("float32", "float64"))
    args = ap.parse_args()
    cases = ([BENCH_CONV_SHAPES["grouped"], BENCH_CONV_SHAPES["dilated"]] + [d for d, _ in DILATED] + GROUPED
             + UNSEEN)
    for dtype in [np.dtype(args.dtype).type] if args.dtype else (np.float32, np.float64):
        for case in cases:
            if args.only and case.name not in args.only.split(","):
                continue
            A, W, b, hp, dZ = case.make(dtype, seed=0)
            ref, cref = fastnn.conv_forward(A, W, b, hp, backend="reference")
            dref = fastnn.conv_backward(dZ, cref, backend="reference")
            row = []
            for what in ("fwd", "bwd"):
                _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
                if what == "fwd":
                    def call():
                        return fastnn.conv_forward(A, W, b, hp, backend="numba")[0]
                    want = [ref]
                else:
                    def call():
                        return fastnn.conv_backward(dZ, cache, backend="numba")
                    want = list(dref)
                t = {"old": [], "new": []}
                for plan in ("old", "new"):  # (each rule checked, and its kernels compiled)
                    nb.tiles.fwd_plan = old_plan if plan == "old" else NEW
                    out = call()
                    for o, w in zip(out if what == "bwd" else [out], want):
                        assert_close(o, w, dtype, f"{case.name} {plan} {what}")
                ratios = []
                for r in range(args.rounds):
                    order = ("old", "new") if r % 2 == 0 else ("new", "old")
                    for plan in order:
                        nb.tiles.fwd_plan = old_plan if plan == "old" else NEW
                        t[plan].append(timed_block(call, n=5, settle_s=0.1))
                    ratios.append(t["old"][-1] / t["new"][-1])
                nb.tiles.fwd_plan = NEW
                row.append(f"{what} {statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}] "
                           f"({statistics.median(t['new']) * 1e3:.2f} ms)")
            print(f"{case.name:16s} {np.dtype(dtype).name:8s} " + "   ".join(row), flush=True)


if __name__ == "__main__":
    main()
