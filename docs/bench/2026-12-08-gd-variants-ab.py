"""Grouped and dilated forwards under the numba backend's forward tile variants (which their
path now honours: before, it ran the rule's tile whatever the variant, so none was declared for
them): each variant that applies, pinned (``fastnn._dispatch.pin_candidates``, as ``fastnn check`` pins one), against the rule's
tile (``numba`` pinned), in alternating rounds in one process; printed per layer: the median of
the per-round time ratios rule/variant with the range (> 1: the variant faster), the rule's
time, and the variant ``fastnn.tune``'s planner picks for the key (2 s budget) with its ratio.
Each variant's output is asserted against the reference's.

    python3 docs/bench/2026-12-08-gd-variants-ab.py [--rounds 7] [--only grouped] [--dtype float32]

Layers: the built-in table's grouped and dilated ones, scripts/measure_general.py's, and the
unseen ones of 2026-12-07-gd-runs-ab.py (none tuned on).
"""

import argparse
import importlib.util
import os
import statistics
import sys

import numpy as np

import fastnn
from fastnn import _dispatch, _plan
from fastnn._params import conv_params
from fastnn._plan import timed_block
from fastnn.bench.workloads import BENCH_CONV_SHAPES
from fastnn.testing.tolerance import assert_close

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
from measure_general import DILATED, GROUPED  # noqa: E402

_spec = importlib.util.spec_from_file_location("gd_runs_ab", os.path.join(HERE, "2026-12-07-gd-runs-ab.py"))
_gd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", help="comma-separated layer names")
    ap.add_argument("--dtype", choices=("float32", "float64"))
    args = ap.parse_args()
    cases = ([BENCH_CONV_SHAPES["grouped"], BENCH_CONV_SHAPES["dilated"]] + GROUPED + [d for d, _ in DILATED]
             + _gd.UNSEEN)
    for dtype in [np.dtype(args.dtype).type] if args.dtype else (np.float32, np.float64):
        for case in cases:
            if args.only and case.name not in args.only.split(","):
                continue
            A, W, b, hp, _ = case.make(dtype, seed=0)
            p = conv_params(A, W, b, hp)
            names = [c for c in _dispatch.candidates("conv_forward", p)
                     if c.startswith("numba" + _dispatch.SEP) and c.split(_dispatch.SEP)[1][0] == "p"]
            ref = fastnn.conv_forward(A, W, b, hp, backend="reference")[0]
            def pinned(n):
                def call():
                    with _dispatch.pin_candidates({"conv_forward": n}):
                        return fastnn.conv_forward(A, W, b, hp, backend="auto")
                return call

            calls = {n: pinned(n) for n in ["numba"] + names}
            for n, call in calls.items():
                assert_close(call()[0], ref, dtype, f"{case.name} {n}")
            t = {n: [] for n in calls}
            for r in range(args.rounds):
                for n in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                    t[n].append(timed_block(calls[n], n=3, settle_s=0.1))

            def ratio(n):
                rs = [a / b for a, b in zip(t["numba"], t[n])]
                return f"{statistics.median(rs):.3f} [{min(rs):.3f}, {max(rs):.3f}]"

            entry = _plan.tune_key("conv_forward", p, save=False)
            pick = entry["backend"] if entry else "?"
            picked = f"{ratio(pick)}" if pick in t and pick != "numba" else "(the rule)" if pick == "numba" else ""
            print(f"{case.name:16s} {np.dtype(dtype).name:8s} rule {statistics.median(t['numba']) * 1e3:6.2f} ms  "
                  + "  ".join(f"{n.split(_dispatch.SEP)[1]} {ratio(n)}" for n in names)
                  + f"  | tune picks {pick} {picked}", flush=True)


if __name__ == "__main__":
    main()
