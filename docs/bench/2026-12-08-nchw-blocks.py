"""Channels-first convolutions with the input's transpose in blocks of 8 channels where its
channel rows share an L1 set (``tiles.transpose_blocked``) against the transpose pixel by pixel
(the rule forced off), each against the NHWC call's time: alternating rounds in one process.

    python3 docs/bench/2026-12-08-nchw-blocks.py [--rounds 7]
"""
import argparse
import statistics
import time

import numpy as np

import fastnn
from fastnn.backends.numba import tiles

LAYERS = [  # (name, m, C, H, W, K, stride); 3x3, pad 1
    ("nchw_32_32", 64, 32, 32, 32, 32, 1),     # 4 KiB planes: every channel row in one L1 set
    ("c64_16x16", 32, 64, 16, 16, 64, 1),      # 1 KiB planes: 16 rows a set
    ("c128_32x32_s2", 16, 128, 32, 32, 128, 2),
    ("nchw_28_128", 16, 128, 28, 28, 128, 1),  # spread over the sets: the rule keeps pixel by pixel
    ("c96_14x14", 16, 96, 14, 14, 96, 1),
]
RULE = tiles.transpose_blocked


def block(fn, n=3):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.1:
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        for name, m, C, H, W, K, s in LAYERS:
            A = rng.standard_normal((m, C, H, W)).astype(dt)
            Wt = rng.standard_normal((K, C, 3, 3)).astype(dt)
            b = rng.standard_normal(K).astype(dt)
            An, Wn = np.ascontiguousarray(A.transpose(0, 2, 3, 1)), np.ascontiguousarray(Wt.transpose(2, 3, 1, 0))
            hp_c, hp_n = {"stride": s, "pad": 1, "layout": "NCHW"}, {"stride": s, "pad": 1}
            Z, _ = fastnn.conv_forward(A, Wt, b, hp_c, backend="numba")
            dZc = rng.standard_normal(Z.shape).astype(dt)
            dZn = np.ascontiguousarray(dZc.transpose(0, 2, 3, 1))

            def fwd(X, Wk, hp):
                return lambda: fastnn.conv_forward(X, Wk, b, hp, backend="numba")

            def both(X, Wk, hp, dZ):
                def f():
                    _, cache = fastnn.conv_forward(X, Wk, b, hp, backend="numba")
                    fastnn.conv_backward(dZ, cache, backend="numba")
                return f

            def ruled(fn, on):
                def f():
                    tiles.transpose_blocked = RULE if on else (lambda C, plane: False)
                    try:
                        fn()
                    finally:
                        tiles.transpose_blocked = RULE
                return f

            for what, mk in (("fwd", lambda X, Wk, hp, dZ: fwd(X, Wk, hp)), ("fwd+bwd", both)):
                fns = {"nhwc": mk(An, Wn, hp_n, dZn), "off": ruled(mk(A, Wt, hp_c, dZc), False),
                       "rule": ruled(mk(A, Wt, hp_c, dZc), True)}
                ts = {k: [] for k in fns}
                for r in range(args.rounds):
                    for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                        ts[k].append(block(fns[k]))
                rat = {k: sorted(a / n for a, n in zip(ts[k], ts["nhwc"])) for k in ("off", "rule")}
                gain = sorted(o / n for o, n in zip(ts["off"], ts["rule"]))
                blocked = RULE(C, H * W * np.dtype(dt).itemsize)
                print(f"{name:15s} {np.dtype(dt).name}  {what:8s} blocked={blocked!s:5s} NCHW/NHWC: pixel by pixel "
                      f"{statistics.median(rat['off']):.3f} [{rat['off'][0]:.3f}, {rat['off'][-1]:.3f}], rule "
                      f"{statistics.median(rat['rule']):.3f} [{rat['rule'][0]:.3f}, {rat['rule'][-1]:.3f}]; "
                      f"off/rule {statistics.median(gain):.3f}  (NHWC {statistics.median(ts['nhwc']) * 1e3:.2f} ms)",
                      flush=True)


if __name__ == "__main__":
    main()
