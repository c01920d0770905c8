"""The grouped backward's dW kernel reading each group's channels of the whole dZ (``koff``)
against the copy of each group's dZ the wrapper made before (serial, one per group):
``conv_backward`` pinned to numba, the two swapped in alternating rounds in one process; printed:
the median of the per-round time ratios copy/koff, with the range (> 1: koff faster). Each one's
dW and db are asserted against the reference's.

    python3 docs/bench/2026-12-07-dz-koff-ab.py [--rounds 7] [--dtype float32] [--only grouped,g4_14_256_s2]

Layers: the grouped ones of the built-in table, scripts/measure_general.py and
2026-12-07-gd-runs-ab.py (the unseen ones): those whose groups' channels are whole dW tiles.
"""

import argparse
import importlib.util
import os
import statistics
import sys

import numpy as np

import fastnn
from fastnn._params import conv_params
from fastnn._plan import timed_block
from fastnn.backends import numba as nb
from fastnn.bench.workloads import BENCH_CONV_SHAPES
from fastnn.testing.tolerance import assert_close

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
from measure_general import GROUPED  # noqa: E402

_spec = importlib.util.spec_from_file_location("gd_runs_ab", os.path.join(HERE, "2026-12-07-gd-runs-ab.py"))
_gd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gd)

KOFF = nb._dW_chunks


def _copied(J, T, p, Xs, dZk, part, pdb, ja, jb, dh, koff=0):
    """The rule before: the group's channels copied into an aligned array of their own."""
    if dZk.shape[3] != part.shape[3]:
        dZk = nb._aligned_copy(dZk[..., koff:koff + part.shape[3]])
    return KOFF(J, T, p, Xs, dZk, part, pdb, ja, jb, dh)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dtype", choices=("float32", "float64"))
    ap.add_argument("--only", help="comma-separated layer names")
    args = ap.parse_args()
    cases = [BENCH_CONV_SHAPES["grouped"]] + GROUPED + [c for c in _gd.UNSEEN if c.groups > 1]
    for dtype in [np.dtype(args.dtype).type] if args.dtype else (np.float32, np.float64):
        for case in cases:
            if args.only and case.name not in args.only.split(","):
                continue
            A, W, b, hp, dZ = case.make(dtype, seed=0)
            p = conv_params(A, W, b, hp)
            _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
            _, cref = fastnn.conv_forward(A, W, b, hp, backend="reference")
            want = fastnn.conv_backward(dZ, cref, backend="reference")

            def call():
                return fastnn.conv_backward(dZ, cache, backend="numba")
            rules = {"copy": _copied, "koff": KOFF}
            for name, rule in rules.items():
                nb._dW_chunks = rule
                for o, w in zip(call(), want):
                    assert_close(o, w, dtype, f"{case.name} {name}")
            t = {k: [] for k in rules}
            ratios = []
            for r in range(args.rounds):
                for name in (("copy", "koff") if r % 2 == 0 else ("koff", "copy")):
                    nb._dW_chunks = rules[name]
                    t[name].append(timed_block(call, n=5, settle_s=0.1))
                ratios.append(t["copy"][-1] / t["koff"][-1])
            nb._dW_chunks = KOFF
            print(f"{case.name:16s} {np.dtype(dtype).name:8s} groups {p.G:2d}  bwd {statistics.median(ratios):.3f} "
                  f"[{min(ratios):.3f}, {max(ratios):.3f}] ({statistics.median(t['koff']) * 1e3:.2f} ms)", flush=True)


if __name__ == "__main__":
    main()
