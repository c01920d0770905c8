"""Packed operands on 64-byte boundaries (now) against NumPy's own start, 16 bytes past one (before),
in one process, alternating rounds (2026-12-07-align.md).

    python3 docs/bench/2026-12-07-align-ab.py kernel THREADS [LAYER,...]
        the forward tile kernel alone on the held-out/table layers, its packed filters aligned or
        16 bytes past a boundary: GFLOP/s and the misaligned/aligned time ratio
    python3 docs/bench/2026-12-07-align-ab.py calls table|heldout [float32,float64]
        whole public calls (forward, forward+backward) on the numba backend, with
        ``_pack_channels`` giving aligned blocks or blocks 16 bytes past a boundary: before/after
"""

import statistics
import sys
import time

import numpy as np

import fastnn
from fastnn import _params as P
from fastnn._plan import timed_block
from fastnn.backends import numba as nb
from fastnn.backends.numba import tiles
from fastnn.backends.numba.config import override_num_threads

sys.path.insert(0, __file__.rsplit("/docs/", 1)[0] + "/scripts")
import measure_torch as MT  # noqa: E402
from fastnn.testing.cases import BENCH_CONV_SHAPES  # noqa: E402


def _placed(a, off):
    """A copy of ``a`` starting ``off`` bytes past a 64-byte boundary."""
    raw = np.empty(a.nbytes + 64 + off, np.uint8)
    o = -raw.ctypes.data % 64 + off
    v = raw[o:o + a.nbytes].view(a.dtype).reshape(a.shape)
    v[...] = a
    return v


def kernel(threads, names):
    override_num_threads(threads)
    cases = {c.name: c for c in MT.HELDOUT_CONV + list(BENCH_CONV_SHAPES.values())}
    for name in names:
        case = cases[name]
        A, W, b, hp, _ = case.make(np.float32, seed=0)
        p = P.conv_params(A, W, b, hp)
        Z = np.empty((p.m, p.Ho, p.Wo, p.K), np.float32)
        Xp = nb._padded_input(p, A)
        Wm = W.reshape(p.fh, p.fw * p.C, p.K)
        Pt, T, rows = tiles.fwd_plan(Xp.dtype, p.K, p.Ho, p.Wo, Wm.shape[1], None)
        Xr, bp = Xp.reshape(p.m, p.Hp, -1), nb._pack_channels(b.reshape(p.K), T)
        packed = nb._pack_channels(Wm, T)
        out = (Z.reshape(p.m, -1, p.K), p.Ho, p.Wo, 0, p.Wo, 1, p.sh, p.sw, p.C, 0, p.Hp)  # (rows: all data)

        def run(Wp):
            if rows:
                return lambda: nb._threaded(nb._CONV.FWD_ROWS[Pt, T], Xr, Wp, bp, *out)
            return lambda: nb._threaded(nb._CONV.FWD[Pt, T], Xr, Wp, bp, *out,
                                        tiles.fwd_group(Pt, p.m, p.Ho * p.Wo, nb._num_threads()))

        fns = {"aligned": run(_placed(packed, 0)), "16 past": run(_placed(packed, 16))}
        res = {k: [] for k in fns}
        for r in range(9):
            for k in (fns if r % 2 else list(fns)[::-1]):
                res[k].append(timed_block(fns[k], 5, 0.05))
        fl = 2 * p.m * p.Ho * p.Wo * p.K * p.C * p.fh * p.fw
        rs = [u / a for u, a in zip(res["16 past"], res["aligned"])]
        print(f"{name:14s} tile {(Pt, T)}{' rows' if rows else ''}: aligned "
              f"{fl / statistics.median(res['aligned']) / 1e9:5.0f} GFLOP/s, 16 past "
              f"{fl / statistics.median(res['16 past']) / 1e9:5.0f}; misaligned/aligned time "
              f"{statistics.median(rs):.3f} [{min(rs):.3f}, {max(rs):.3f}]", flush=True)


def calls(which, dtypes):
    override_num_threads(2)
    new = nb._pack_channels

    def old(M, T):
        return _placed(new(M, T), 16)

    cases = [c for n, c in BENCH_CONV_SHAPES.items() if n != "seed"] if which == "table" else MT.HELDOUT_CONV
    allr = []
    for case in cases:
        for dt in dtypes:
            A, W, b, hp, dZ = case.make(dt, seed=0)

            def fwd():
                return fastnn.conv_forward(A, W, b, hp, backend="numba")

            def both():
                fastnn.conv_backward(dZ, fwd()[1], backend="numba")

            for what, fn in (("fwd", fwd), ("fwd+bwd", both)):
                rs = []
                for r in range(7):
                    t = {}
                    for k in (("old", "new") if r % 2 else ("new", "old")):
                        nb._pack_channels = new if k == "new" else old
                        t[k] = timed_block(fn, 3, 0.05)
                    rs.append(t["old"] / t["new"])
                nb._pack_channels = new
                allr.append(statistics.median(rs))
                print(f"{case.name:14s} {np.dtype(dt).name:8s} {what:8s} before/after {statistics.median(rs):.3f} "
                      f"[{min(rs):.3f}, {max(rs):.3f}]", flush=True)
    print(f"{len(allr)} rows: median {statistics.median(allr):.3f}, {min(allr):.3f}-{max(allr):.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "kernel":
        kernel(int(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else
                                   "res_3x3,resnet14_256,vgg56_64,alexnet_5x5,cifar,resnet_down").split(","))
    else:
        calls(sys.argv[2], [np.dtype(d) for d in (sys.argv[3] if len(sys.argv) > 3 else "float32,float64").split(",")])
