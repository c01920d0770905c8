"""An NCHW convolution's own plan key (now) against its NHWC twin's plan (before), in one process.

    FASTNN_CACHE_DIR=/tmp/lk python3 docs/bench/2026-12-07-layout-key.py [ROUNDS]

Tunes the forward and backward keys of each layer in both layouts (``fastnn.tune``, 1 s a key),
prints what each key's plan chose, and where the NCHW key chose otherwise than its NHWC twin,
times the NCHW public calls with each choice pinned (forward; forward then backward), alternating
the order per round: the median of the per-round ratios twin's choice / own choice (> 1: the own
key's choice is faster) and its range. Layers: the table's res_3x3_nchw and the held-out layers
(scripts/measure_torch.py) on channels-first arrays, float32 and float64.
"""

import dataclasses
import statistics
import sys

import numpy as np

import fastnn
from fastnn import _dispatch, _plan
from fastnn import _params as P
from fastnn._plan import timed_block

sys.path.insert(0, __file__.rsplit("/docs/", 1)[0] + "/scripts")
import measure_torch as MT  # noqa: E402
from fastnn.testing.cases import BENCH_CONV_SHAPES  # noqa: E402


def main(rounds=7):
    layers = [BENCH_CONV_SHAPES["res_3x3_nchw"]] + [dataclasses.replace(c, name=c.name + "_nchw", layout="NCHW")
                                                    for c in MT.HELDOUT_CONV]
    ratios = []
    for dt in (np.float32, np.float64):
        for case in layers:
            A, W, b, hp, dZ = case.make(dt, seed=0)
            pn = P.conv_params(A, W, b, hp)
            p = pn._replace(layout="NHWC")
            calls = [(op, q) for q in (p, pn) for op in ("conv_forward", "conv_backward")]
            fastnn.tune(calls, budget_s=1.0)
            plan = _plan.plans()
            own = {op: plan[_plan.key_of(op, pn)]["backend"] for op in ("conv_forward", "conv_backward")}
            twin = {op: plan[_plan.key_of(op, p)]["backend"] for op in ("conv_forward", "conv_backward")}
            row = f"{case.name:18s} {np.dtype(dt).name}  own {own['conv_forward']}/{own['conv_backward']}" \
                  f"  twin's {twin['conv_forward']}/{twin['conv_backward']}"
            if own == twin:
                print(row + "  (the same)", flush=True)
                continue
            cache = (A, W, b, hp)

            def fwd(pins):
                def call():
                    with _dispatch.pin_candidates({"conv_forward": pins["conv_forward"]}):
                        fastnn.conv_forward(A, W, b, hp)
                return call

            def both(pins):
                def call():
                    with _dispatch.pin_candidates(pins):
                        fastnn.conv_forward(A, W, b, hp)
                        fastnn.conv_backward(dZ, cache)
                return call

            for what, make in (("fwd", fwd), ("fwd+bwd", both)):
                if what == "fwd" and own["conv_forward"] == twin["conv_forward"]:
                    continue
                fo, ft = make(own), make(twin)
                r = []
                for i in range(rounds):
                    if i % 2:
                        t_t, t_o = timed_block(ft), timed_block(fo)
                    else:
                        t_o, t_t = timed_block(fo), timed_block(ft)
                    r.append(t_t / t_o)
                ratios.append(statistics.median(r))
                print(f"{row}  {what}: twin's/own {statistics.median(r):.2f} [{min(r):.2f}, {max(r):.2f}]", flush=True)
    if ratios:
        print(f"median over {len(ratios)} differing rows: {statistics.median(ratios):.3f} "
              f"({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
