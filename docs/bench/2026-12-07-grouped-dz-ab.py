"""The grouped backward's dW with each group's dZ copied contiguous (now) against the strided
view of dZ it was given before, in one process, alternating rounds; plus the groups run apart.

    python3 docs/bench/2026-12-07-grouped-dz-ab.py [ROUNDS]

Before, a group's dZ slice reached the dW kernel as a strided view wherever the group's output
channels were a whole number of dW tiles (no padding copy); Numba compiled the kernel a second
time for strided rows. The "before" arm gets that view back (``_aligned_copy`` made the identity
for the call: on these stride-1 layers nothing else in the grouped backward uses it). Printed:
before/now time ratios (> 1: now faster) for the backward with and without dA_prev, and the
grouped backward against the groups run apart (contiguous slices; apart/grouped > 1: grouped
faster), medians over rounds with their ranges.
"""

import statistics
import sys

import numpy as np

import fastnn
import fastnn.backends.numba as nb
from fastnn._plan import timed_block
from fastnn.testing.cases import BENCH_CONV_SHAPES, ConvCase

LAYERS = [BENCH_CONV_SHAPES["grouped"],  # the table's (ResNeXt-style, 4 groups of 32)
          ConvCase("resnext14_g8", 8, 14, 14, 256, 3, 256, 1, 1, groups=8),
          ConvCase("g2_56_64", 8, 56, 56, 64, 3, 64, 1, 1, groups=2),
          ConvCase("g3_28_96", 4, 28, 28, 96, 3, 96, 1, 1, groups=3),
          ConvCase("g4_odd_5x5", 4, 27, 27, 64, 5, 128, 1, 2, groups=4)]


def main(rounds=7):
    real = nb._aligned_copy
    for dt in (np.float32, np.float64):
        for case in LAYERS:
            A, W, b, hp, dZ = case.make(dt, seed=0)
            _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
            G, C, K = case.groups, case.C, case.K
            Cg, Kg = C // G, K // G
            parts = [(np.ascontiguousarray(A[..., g * Cg:(g + 1) * Cg]), np.ascontiguousarray(W[..., g * Kg:(g + 1) * Kg]),
                      b.reshape(-1)[g * Kg:(g + 1) * Kg], np.ascontiguousarray(dZ[..., g * Kg:(g + 1) * Kg]))
                     for g in range(G)]
            hp1 = {k: v for k, v in hp.items() if k != "groups"}
            caches = [(fastnn.conv_forward(a, w, bb, hp1, backend="numba")[1], dz) for a, w, bb, dz in parts]

            def call(input_grad, before):
                def run():
                    if before:
                        nb._aligned_copy = lambda a: a
                    try:
                        fastnn.conv_backward(dZ, cache, backend="numba", input_grad=input_grad)
                    finally:
                        nb._aligned_copy = real
                return run

            def apart():
                for c, dz in caches:
                    fastnn.conv_backward(dz, c, backend="numba")

            same = [fastnn.conv_backward(dZ, cache, backend="numba"), None]
            call(True, True)()
            nb._aligned_copy = lambda a: a
            try:
                same[1] = fastnn.conv_backward(dZ, cache, backend="numba")
            finally:
                nb._aligned_copy = real
            assert all(np.array_equal(x, y) for x, y in zip(*same)), "not the same bits"
            fns = {"bwd before": call(True, True), "bwd now": call(True, False), "dW before": call(False, True),
                   "dW now": call(False, False), "apart": apart}
            res = {k: [] for k in fns}
            for i in range(rounds):
                for k, f in (fns.items() if i % 2 == 0 else reversed(list(fns.items()))):
                    res[k].append(timed_block(f))

            def ratio(a, b):
                r = [x / y for x, y in zip(res[a], res[b])]
                return f"{statistics.median(r):.2f} [{min(r):.2f}, {max(r):.2f}]"

            print(f"{case.name:14s} {np.dtype(dt).name}  now {statistics.median(res['bwd now']) * 1e3:7.2f} ms  "
                  f"bwd before/now {ratio('bwd before', 'bwd now')}  dW before/now {ratio('dW before', 'dW now')}  "
                  f"apart/grouped {ratio('apart', 'bwd now')}", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
