"""Threads polling before they block (fastnn.backends.numba.threads/spin) against blocking at once,
in one process, alternating rounds (the two settings swapped by threads._spin, which
FASTNN_SPIN_US=0 sets to False at the first threaded call).

    python3 docs/bench/2026-12-07-spin-ab.py handoff
        per-call time of a tiny forward tile (about 12 us serially): serial, 2 chunks in fixed
        shares, 4 and 16 chunks taken in turn, polling and blocking
    python3 docs/bench/2026-12-07-spin-ab.py conv DTYPE m,H,W,C,f,K,s,pad [bwd]
    python3 docs/bench/2026-12-07-spin-ab.py pool DTYPE m,H,W,C,f,s max|average
        whole public calls (forward, or forward+backward), blocking/polling time ratio
"""

import statistics
import sys
import time

import numpy as np

import fastnn
from fastnn.backends import numba as nb
from fastnn.backends.numba import threads, tiles


def _time(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def handoff():
    m, H, Wd, C, f, K, Ho, Wo = 1, 6, 6, 64, 3, 64, 4, 4
    dt = np.dtype(np.float32)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, H, Wd * C)).astype(dt)
    Wm = rng.standard_normal((f, f * C, K)).astype(dt)
    Z = np.empty((m, Ho * Wo, K), dt)
    P, T, rows = tiles.fwd_plan(dt, K, Ho, Wo, f * C)
    kern = nb._CONV.FWD_ROWS[P, T] if rows else nb._CONV.FWD[P, T]
    args = (X, nb._pack_channels(Wm, T), nb._pack_channels(np.zeros(K, dt), T), Z, Ho, Wo, 0, Wo, 1, 1, 1, C, 0, H)
    args += () if rows else (1,)
    fns = {"serial": lambda: kern(*args, 0, 1), "2 chunks": lambda: threads.run_chunks(kern, args, 2),
           "4 in turn": lambda: threads.run_chunks(kern, args, 4, 2),
           "16 in turn": lambda: threads.run_chunks(kern, args, 16, 2)}
    for fn in fns.values():
        fn()
    on = threads._spinning()
    if on is None:
        sys.exit("polling is off here (FASTNN_SPIN_US=0 or not x86-64)")
    res = {(k, s): [] for k in fns for s in ("polling", "blocking")}
    for r in range(7):
        for s in (("polling", "blocking") if r % 2 else ("blocking", "polling")):
            threads._spin = on if s == "polling" else False
            for k, fn in fns.items():
                res[k, s].append(_time(fn, 2000) * 1e6)
    threads._spin = on
    for k in fns:
        print(f"{k:10s}  polling {statistics.median(res[k, 'polling']):6.1f} us  "
              f"blocking {statistics.median(res[k, 'blocking']):6.1f} us  (medians of 7 rounds of 2000 calls)")


def whole(call, label):
    call()
    on = threads._spinning()
    n = max(2, int(0.2 / _time(call, 3)))
    ratios, off_t, on_t = [], [], []
    for r in range(11):
        order = (False, True) if r % 2 else (True, False)
        got = {}
        for polling in order:
            threads._spin = on if polling else False
            got[polling] = _time(call, n)
        threads._spin = on
        ratios.append(got[False] / got[True])
        off_t.append(got[False])
        on_t.append(got[True])
    print(f"{label}: blocking {statistics.median(off_t) * 1e3:.3f} ms, polling {statistics.median(on_t) * 1e3:.3f} ms, "
          f"blocking/polling {statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f}), 11 rounds")


def main(argv):
    if argv[0] == "handoff":
        return handoff()
    kind, dt = argv[0], np.dtype(argv[1])
    nums = [int(x) for x in argv[2].split(",")]
    rng = np.random.default_rng(0)
    if kind == "conv":
        m, H, W, C, f, K, s, pad = nums
        bwd = argv[3:] == ["bwd"]
        A = rng.standard_normal((m, H, W, C)).astype(dt)
        Wt = rng.standard_normal((f, f, C, K)).astype(dt)
        b = rng.standard_normal((1, 1, 1, K)).astype(dt)
        hp = {"stride": s, "pad": pad}

        def call():
            Z, cache = fastnn.conv_forward(A, Wt, b, hp, backend="numba")
            if bwd:
                fastnn.conv_backward(np.ones_like(Z), cache, backend="numba")

        return whole(call, f"conv {argv[2]} {dt.name} {'fwd+bwd' if bwd else 'fwd'}")
    m, H, W, C, f, s = nums
    mode = argv[3]
    A = rng.standard_normal((m, H, W, C)).astype(dt)
    hp = {"f": f, "stride": s}

    def call():
        Z, cache = fastnn.pool_forward(A, hp, mode=mode, backend="numba")
        fastnn.pool_backward(np.ones_like(Z), cache, mode=mode, backend="numba")

    return whole(call, f"pool {mode} {argv[2]} {dt.name} fwd+bwd")


if __name__ == "__main__":
    main(sys.argv[1:])
