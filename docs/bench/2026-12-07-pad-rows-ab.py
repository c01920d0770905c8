"""The forward tile kernels skipping the filter rows that fall on zero padding (templates._kh_range)
against running them all (the rule before): ``conv_forward`` and ``conv_backward`` (whose dA_prev
runs the same kernels on padded dZ) pinned to numba, the two swapped in alternating rounds in one
process (the wrappers given every row as data for "all"); printed: the median of the per-round
time ratios all/skip, with the range (> 1: skipping faster), and the share of taps skipped in the
forward. Each one's results are asserted against the reference's.

    python3 docs/bench/2026-12-07-pad-rows-ab.py [--rounds 7] [--only res_3x3,resnet14_256] [--dtype float32]

Layers: the built-in table's (not the seed's, nor the channels-first one: its kernel finds its
data rows itself), the held-out layers of scripts/measure_torch.py, and the unseen grouped and
dilated ones of 2026-12-07-gd-runs-ab.py.
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
from measure_torch import HELDOUT_CONV  # noqa: E402

_spec = importlib.util.spec_from_file_location("gd_runs_ab", os.path.join(HERE, "2026-12-07-gd-runs-ab.py"))
_gd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gd)

SKIP = (nb._fwd_kernel_call, nb._gd_kernel_call)


def _all_fwd(X, Wm, bias, Z, sh, sw, tile=None, at=None, valid=None):
    return SKIP[0](X, Wm, bias, Z, sh, sw, tile, at)


def _all_gd(Xr, Wm, bias, Z, sh, sw, C, dh, dwC, goff, Cg, zoff, valid, work):
    return SKIP[1](Xr, Wm, bias, Z, sh, sw, C, dh, dwC, goff, Cg, zoff, (0, Xr.shape[1]), work)


def use(rule):
    nb._fwd_kernel_call, nb._gd_kernel_call = SKIP if rule == "skip" else (_all_fwd, _all_gd)


def skipped_share(p):
    """The share of the forward's taps (rows of the window) on the top and bottom padding."""
    rows = np.arange(p.Ho)[:, None] * p.sh + np.arange(p.fh)[None, :] * p.dh - p.ph
    return 1 - ((rows >= 0) & (rows < p.H)).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", help="comma-separated layer names")
    ap.add_argument("--dtype", choices=("float32", "float64"))
    args = ap.parse_args()
    cases = ([c for n, c in BENCH_CONV_SHAPES.items() if n not in ("seed", "res_3x3_nchw")] + HELDOUT_CONV
             + _gd.UNSEEN)
    for dtype in [np.dtype(args.dtype).type] if args.dtype else (np.float32, np.float64):
        for case in cases:
            if args.only and case.name not in args.only.split(","):
                continue
            A, W, b, hp, dZ = case.make(dtype, seed=0)
            p = conv_params(A, W, b, hp)
            if p.ph == 0 and p.pb == 0:
                continue
            ref, cref = fastnn.conv_forward(A, W, b, hp, backend="reference")
            dref = fastnn.conv_backward(dZ, cref, backend="reference")
            row = []
            for what in ("fwd", "bwd"):
                _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
                if what == "fwd":
                    def call():
                        return [fastnn.conv_forward(A, W, b, hp, backend="numba")[0]]
                    want = [ref]
                else:
                    def call():
                        return fastnn.conv_backward(dZ, cache, backend="numba")
                    want = list(dref)
                t = {"all": [], "skip": []}
                for rule in t:  # (each checked, and its kernels compiled)
                    use(rule)
                    for o, w in zip(call(), want):
                        assert_close(o, w, dtype, f"{case.name} {rule} {what}")
                ratios = []
                for r in range(args.rounds):
                    for rule in (("all", "skip") if r % 2 == 0 else ("skip", "all")):
                        use(rule)
                        t[rule].append(timed_block(call, n=5, settle_s=0.1))
                    ratios.append(t["all"][-1] / t["skip"][-1])
                use("skip")
                row.append(f"{what} {statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}] "
                           f"({statistics.median(t['skip']) * 1e3:.2f} ms)")
            print(f"{case.name:16s} {np.dtype(dtype).name:8s} skipped {100 * skipped_share(p):4.1f}%  "
                  + "   ".join(row), flush=True)


if __name__ == "__main__":
    main()
