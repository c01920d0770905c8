"""The dW tile kernel alone, before/after: the kernels a source tree's templates generate
against this checkout's, on the same arrays, in alternating rounds (one process).

    python3 docs/bench/2026-12-07-dw-ab.py --before <tree> [--chunks 2] [--dtype float32] [--rounds 9] [layer ...]

``--before``: a source tree (e.g. ``git worktree add /tmp/before a20a835``) whose
``fastnn/backends/numba/templates.py`` still takes the same kernel arguments. Each layer's
partials must come out bit-identical; then the median ratio before/after (> 1: after faster)
and its range over the rounds. ``--chunks``: the partials (run on that many threads).
"""

import argparse
import importlib.util
import statistics
import time

import numpy as np

from fastnn import _params as P
from fastnn._jit import load_generated
from fastnn.backends import numba as nb
from fastnn.backends.numba import threads, tiles
from fastnn.backends.numba.templates import _HEAD, chunked

LAYERS = {"pointwise": (32, 28, 28, 256, 1, 64, 1, 0), "mobilenet_pw": (8, 14, 14, 512, 1, 512, 1, 0),
          "resnet14_256": (8, 14, 14, 256, 3, 256, 1, 1), "res_3x3": (16, 28, 28, 128, 3, 128, 1, 1),
          "resnet_down": (8, 28, 28, 128, 3, 256, 2, 1), "alexnet_5x5": (4, 27, 27, 64, 5, 192, 1, 2),
          "cifar": (64, 32, 32, 32, 3, 32, 1, 1), "vgg56_64": (4, 56, 56, 64, 3, 64, 1, 1)}


def _per_call(fn, n=3):
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("layers", nargs="*", default=list(LAYERS))
    ap.add_argument("--before", required=True)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args()
    dt, nch = np.dtype(a.dtype), a.chunks
    spec = importlib.util.spec_from_file_location("fastnn.backends.numba._before_templates",
                                                  a.before + "/fastnn/backends/numba/templates.py")
    old_t = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old_t)
    need = {tiles.dw_tile(dt, K, f * C) for (m, H, W, C, f, K, s, pad) in LAYERS.values()}
    src = list(_HEAD)
    for J, T in need:
        src += ["", ""] + chunked(old_t.conv_dW(f"before_j{J}t{T}", J, T))
    src += ["", "BEFORE = {" + ", ".join(f"({J}, {T}): before_j{J}t{T}" for J, T in need) + "}"]
    before = load_generated("numba_dw_before", "\n".join(src) + "\n").BEFORE
    for name in a.layers:
        m, H, W, C, f, K, s, pad = LAYERS[name]
        rng = np.random.default_rng(0)
        A = rng.standard_normal((m, H, W, C)).astype(dt)
        Wt = rng.standard_normal((f, f, C, K)).astype(dt)
        p = P.conv_params(A, Wt, np.zeros((1, 1, 1, K), dt), {"stride": s, "pad": pad})
        dZ = rng.standard_normal((m, p.Ho, p.Wo, K)).astype(dt)
        ew = (-p.Wp) % p.sw
        Xs = nb._padded_input(p, A, ew).reshape(p.m, p.Hp, (p.Wp + ew) // p.sw, p.sw * p.C)
        L = f * C
        J, T = tiles.dw_tile(dt, K, L)
        Kp, Lp = -(-K // T) * T, -(-L // J) * J
        dZk = np.pad(dZ, ((0, 0), (0, 0), (0, 0), (0, Kp - K))) if Kp != K else dZ
        ja, jb = np.divmod(np.minimum(np.arange(Lp), L - 1), p.sw * p.C)
        part, pdb = np.empty((nch, f, Lp, Kp), dt), np.empty((nch, Kp), dt)
        part2, pdb2 = np.empty_like(part), np.empty_like(pdb)
        args = (Xs.reshape(-1), dZk.reshape(-1, Kp), part, pdb, p.Ho, p.Wo, p.Hp, Xs.shape[2], Xs.shape[3], p.sh,
                ja, jb, tiles.dw_rows(p.Wo), 1)
        old = lambda: threads.run_chunks(before[J, T], args, nch)  # noqa: E731
        new = lambda: nb._dW_chunks(J, T, p, Xs, dZk, part2, pdb2, ja, jb, 1)  # noqa: E731
        old()
        new()
        assert np.array_equal(part, part2) and np.array_equal(pdb, pdb2), f"{name}: different bits"
        t = {"before": [], "after": []}
        for r in range(a.rounds):
            for k, fn in ((("before", old), ("after", new)) if r % 2 == 0 else (("after", new), ("before", old))):
                t[k].append(_per_call(fn))
        gf = 2 * m * p.Ho * p.Wo * K * C * f * f / 1e9
        ratio = [x / y for x, y in zip(t["before"], t["after"])]
        print(f"{name:13s} {dt.name} {nch} chunks tile {(J, T)}  before {gf / statistics.median(t['before']):.0f} "
              f"GFLOP/s  after {gf / statistics.median(t['after']):.0f}  before/after {statistics.median(ratio):.2f} "
              f"[{min(ratio):.2f}, {max(ratio):.2f}]", flush=True)


if __name__ == "__main__":
    main()
