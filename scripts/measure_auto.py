"""``auto`` (with this machine's plan, see ``fastnn tune``) against one pinned backend (default
``numba``, what ``auto`` ran before the planner), public calls on the built-in table.

Forward and forward+backward per shape and dtype, timed in rounds of one block per choice
(untimed calls for 0.15 s after switching, so the idle BLAS workers of an im2col GEMM do not
slow the next choice's kernels, then ``--block`` timed calls), the order alternating per round;
prints the median over rounds of the per-round ratio pinned time / auto time (> 1: auto faster)
with its range, and the backend auto ran.

    python scripts/measure_auto.py --rounds 5 [--pinned numba] [--shapes cifar,p3s2]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

import fastnn
from fastnn import _dispatch
from fastnn import _params as P
from fastnn._plan import timed_block
from fastnn.testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES


def _calls(kind, case, dtype, backend):
    if kind == "conv":
        A, W, b, hp, dZ = case.make(dtype, seed=0)
        p = P.conv_params(A, W, b, hp)

        def fwd():
            return fastnn.conv_forward(A, W, b, hp, backend=backend)

        def both():
            _, cache = fwd()
            fastnn.conv_backward(dZ, cache, backend=backend)

        return {"fwd": fwd, "fwd+bwd": both}, {"fwd": ("conv_forward", p), "fwd+bwd": ("conv_backward", p)}
    A, hp, dA = case.make(dtype, seed=0)
    out, keys = {}, {}
    for mode in ("max", "average"):
        p = P.pool_params(A, hp, mode)

        def fwd(mode=mode):
            return fastnn.pool_forward(A, hp, mode, backend=backend)

        def both(mode=mode, fwd=fwd):
            _, cache = fwd()
            fastnn.pool_backward(dA, cache, mode, backend=backend)

        out[f"{mode} fwd"], out[f"{mode} fwd+bwd"] = fwd, both
        keys[f"{mode} fwd"], keys[f"{mode} fwd+bwd"] = ("pool_forward", p), ("pool_backward", p)
    return out, keys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--pinned", default="numba")
    ap.add_argument("--shapes", help="comma-separated shapes of the built-in table (default all but seed)")
    args = ap.parse_args(argv)
    shapes = args.shapes.split(",") if args.shapes else None
    ratios_all = []
    for kind, table in (("conv", BENCH_CONV_SHAPES), ("pool", BENCH_POOL_SHAPES)):
        for name, case in table.items():
            if (shapes and name not in shapes) or (not shapes and name == "seed"):
                continue
            for dtype in (np.float32, np.float64):
                auto, keys = _calls(kind, case, dtype, None)
                pinned, _ = _calls(kind, case, dtype, args.pinned)
                for what in auto:
                    ratios = []
                    for r in range(args.rounds):
                        order = ("auto", "pinned") if r % 2 == 0 else ("pinned", "auto")
                        t = {w: timed_block(auto[what] if w == "auto" else pinned[what], args.block) for w in order}
                        ratios.append(t["pinned"] / t["auto"])
                    op, p = keys[what]
                    ran = _dispatch.resolve_name(op, None, p)
                    med = statistics.median(ratios)
                    ratios_all.append(med)
                    print(f"{kind} {name:<10} {np.dtype(dtype).name:<8} {what:<16} auto={ran:<7} "
                          f"{args.pinned}/auto {med:.3f} [{min(ratios):.3f}, {max(ratios):.3f}]", flush=True)
    print(f"{len(ratios_all)} rows: median {statistics.median(ratios_all):.3f}, "
          f"from {min(ratios_all):.3f} to {max(ratios_all):.3f}; rows below 0.95: {sum(r < 0.95 for r in ratios_all)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
