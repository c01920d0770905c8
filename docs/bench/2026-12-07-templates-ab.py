"""The numba kernels generated from the templates of another commit (before) against this tree's
(after), in one process, alternating rounds: whole public calls on the numba backend, the
convolution module (``nb._CONV``) swapped between the two builds.

    python3 docs/bench/2026-12-07-templates-ab.py COMMIT LAYER[,LAYER...] [float32,float64] [--nchw] [--tiles]

LAYER: a name from the built-in table, scripts/measure_torch.py's held-out set or its CNN set.
``--nchw`` runs the layers channels-first. ``--tiles``: the commit's tile rules too (its
``tiles.py`` in place of this tree's while the before build runs; its functions must take the
arguments this tree's wrappers pass). Both builds' forward and backward outputs must be the
same bits.
"""

import statistics
import subprocess
import sys
import types

import numpy as np

import fastnn
from fastnn._jit import load_generated
from fastnn._plan import timed_block
from fastnn.backends import numba as nb
from fastnn.backends.numba.config import override_num_threads

ROOT = __file__.rsplit("/docs/", 1)[0]
sys.path.insert(0, ROOT + "/scripts")
import measure_torch as MT  # noqa: E402
from fastnn.testing.cases import BENCH_CONV_SHAPES  # noqa: E402


def _module(commit, stem):
    src = subprocess.run(["git", "-C", ROOT, "show", f"{commit}:fastnn/backends/numba/{stem}.py"],
                         check=True, capture_output=True, text=True).stdout
    mod = types.ModuleType(f"fastnn.backends.numba._{stem}_before")
    mod.__package__ = "fastnn.backends.numba"
    exec(compile(src, f"<{stem} at {commit}>", "exec"), mod.__dict__)
    return mod


def build(commit, tiles):
    """The commit's convolution kernels, generated with ``tiles`` (the tile module its
    templates import)."""
    now, nb.tiles = nb.tiles, tiles
    try:
        return load_generated(f"numba_conv_before_{commit[:10]}_{'own' if tiles is now else 'tiles'}",
                              _module(commit, "templates").conv_source())
    finally:
        nb.tiles = now


def main():
    commit, names = sys.argv[1], sys.argv[2].split(",")
    dts = [np.dtype(d) for d in (sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--")
                                 else "float32,float64").split(",")]
    nchw = "--nchw" in sys.argv
    override_num_threads(2)
    tiles_after = nb.tiles
    tiles_before = _module(commit, "tiles") if "--tiles" in sys.argv else nb.tiles
    after, before = nb._CONV, build(commit, tiles_before)

    def use(k):
        nb._CONV, nb.tiles = (after, tiles_after) if k == "after" else (before, tiles_before)
    cases = {c.name: c for c in MT.HELDOUT_CONV + MT.CNN_CONV + list(BENCH_CONV_SHAPES.values())}
    allr = []
    for name in names:
        for dt in dts:
            A, W, b, hp, dZ = cases[name].make(dt, seed=0)
            if nchw:
                A, W, dZ = (np.ascontiguousarray(A.transpose(0, 3, 1, 2)), np.ascontiguousarray(W.transpose(3, 2, 0, 1)),
                            np.ascontiguousarray(dZ.transpose(0, 3, 1, 2)))
                b, hp = b.reshape(-1), dict(hp, layout="NCHW")

            def fwd():
                return fastnn.conv_forward(A, W, b, hp, backend="numba")

            def both():
                fastnn.conv_backward(dZ, fwd()[1], backend="numba")

            outs = []
            for k in ("before", "after"):
                use(k)
                Z, cache = fwd()
                outs.append((Z, *fastnn.conv_backward(dZ, cache, backend="numba")))
            for x, y, what in zip(*outs, ("Z", "dA_prev", "dW", "db")):
                assert np.array_equal(x, y), f"the two builds' {what} differ"
            for what, fn in (("fwd", fwd), ("fwd+bwd", both)):
                rs = []
                for r in range(9):
                    t = {}
                    for k in (("before", "after") if r % 2 else ("after", "before")):
                        use(k)
                        t[k] = timed_block(fn, 3, 0.05)
                    rs.append(t["before"] / t["after"])
                use("after")
                allr.append(statistics.median(rs))
                print(f"{name:14s} {dt.name:8s} {what:8s} before/after {statistics.median(rs):.3f} "
                      f"[{min(rs):.3f}, {max(rs):.3f}]", flush=True)
    print(f"{len(allr)} rows: median {statistics.median(allr):.3f}, {min(allr):.3f}-{max(allr):.3f}")


if __name__ == "__main__":
    main()
