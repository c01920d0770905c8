"""Before/after A/B of two fastnn source trees (and PyTorch, and NumPy's GEMM), in alternating rounds.

Each configuration runs in a worker process of its own (its own source tree on ``PYTHONPATH``,
its own ``FASTNN_CACHE_DIR``, its own environment, e.g. ``FASTNN_NUMBA_VECTOR_WIDTH``); PyTorch
runs in the "after" worker, NumPy's 1024-square GEMM in a worker of its own. Every row is timed
in rounds: in each round every worker times one block (``fastnn._plan.timed_block``: untimed calls
for 0.15 s, then ``--block`` timed calls, the median), one worker at a time (the others wait on
their pipe), the order reversed every other round. Printed per row: the medians over rounds of the
per-round ratios before/after (> 1: after faster) and torch/after (> 1: fastnn faster) with their
ranges, after's GFLOP/s, and after's share of the GEMM rate (median of per-round shares, the GEMM
timed in the same round). fastnn runs pinned to ``backend="numba"`` (no planner), ``--threads``
threads; torch ``set_num_threads``, in the faster of NCHW and channels_last for the row; the GEMM
with ``OPENBLAS_NUM_THREADS=--threads``.

    python3 docs/bench/2026-12-06-avx512-ab.py --before OLD_TREE --after NEW_TREE --set table
    python3 docs/bench/2026-12-06-avx512-ab.py --before T --after T --before-env FASTNN_NUMBA_VECTOR_WIDTH=256 --set heldout

``--ops``: fwd, fwd+bwd, and bwd (conv_backward alone; its torch ratio is against torch's
forward+backward, so read only its before/after). ``--set``: table (the built-in table's convolutions), heldout (scripts/measure_torch.py's held-out
layers, never tuned on), pool (the table's and the held-out pooling shapes), nchw (the table's
res_3x3_nchw and scripts/measure_general.py's channels-first layers), depthwise (the table's depthwise and
scripts/measure_general.py's depthwise layers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

WORKER = r'''
import json, sys
import numpy as np
role, tree, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = sys.stdout
sys.stdout = sys.stderr  # (nothing but replies on the pipe)
from fastnn._plan import timed_block
fns = {}
if role != "gemm":
    import fastnn
    from fastnn import _params as P
    from fastnn.backends.numba.config import override_num_threads
    from fastnn.testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES
    sys.path.insert(0, tree + "/scripts")
    import measure_torch as MT
    override_num_threads(threads)
    if role == "after":
        import torch
        torch.set_num_threads(threads)

def rows(which):
    if which == "table":
        return [("conv", c) for n, c in BENCH_CONV_SHAPES.items() if n in
                ("cat_c1", "cifar", "res_3x3", "stride2", "pointwise", "stem7x7")]
    if which == "heldout":
        return [("conv", c) for c in MT.HELDOUT_CONV]
    if which == "nchw":
        import measure_general as MG
        return [("conv", BENCH_CONV_SHAPES["res_3x3_nchw"])] + [("conv", c) for c, _ in MG.NCHW]
    if which == "depthwise":
        import measure_general as MG
        return [("conv", BENCH_CONV_SHAPES["depthwise"])] + [("conv", c) for c in MG.DEPTHWISE]
    return ([("pool", c) for n, c in BENCH_POOL_SHAPES.items() if n != "seed"]
            + [("pool", c) for c in MT.HELDOUT_POOL])

def setup(kind, case, dtype, mode):
    dtype = np.dtype(dtype)
    if kind == "conv":
        A, W, b, hp, dZ = case.make(dtype, seed=0)
        p = P.conv_params(A, W, b, hp)
        fwd = lambda: fastnn.conv_forward(A, W, b, hp, backend="numba")
        def both():
            _, cache = fwd()
            fastnn.conv_backward(dZ, cache, backend="numba")
        _, cache = fwd()
        ours = {"fwd": fwd, "fwd+bwd": both, "bwd": lambda: fastnn.conv_backward(dZ, cache, backend="numba")}
        flops = p.flops
        make_t = lambda lay: MT._torch_conv(A, W, b, hp, dZ, lay)
        ref = fwd()[0]
    else:
        A, hp, dA = case.make(dtype, seed=0)
        fwd = lambda: fastnn.pool_forward(A, hp, mode, backend="numba")
        def both():
            _, cache = fwd()
            fastnn.pool_backward(dA, cache, mode, backend="numba")
        ours = {"fwd": fwd, "fwd+bwd": both}
        flops = None
        make_t = lambda lay: MT._torch_pool(A, hp, dA, mode, lay)
        ref = fwd()[0]
    fns.clear()
    fns.update(ours)
    if role == "after":
        lay = MT._best_layout(make_t)
        tf = make_t(lay)
        fns.update({"torch " + k: v for k, v in tf.items()})
        fns["torch bwd"] = tf["fwd+bwd"]  # (torch's backward alone is not timed: its fwd+bwd)
        return {"flops": flops, "layout": lay, "checksum": float(np.sum(ref, dtype=np.float64))}
    return {"flops": flops, "checksum": float(np.sum(ref, dtype=np.float64))}

def handle(cmd):
    if cmd["op"] == "rows":
        return [[k, c.name] for k, c in rows(cmd["set"])]
    if cmd["op"] == "setup":
        kind, case = next((k, c) for k, c in rows(cmd["set"]) if c.name == cmd["name"])
        return setup(kind, case, cmd["dtype"], cmd.get("mode"))
    if cmd["op"] == "gemm":
        a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(cmd["dtype"])
        fns["gemm"] = lambda: a @ a
        return {}
    if cmd["op"] == "time":
        return timed_block(fns[cmd["what"]], cmd["block"])
    if cmd["op"] == "info":
        import numba
        try:
            from fastnn import _jit
            return {"width": getattr(_jit, "VECTOR_WIDTH", None), "tag": _jit.CACHE_TAG, "numba": numba.__version__}
        except Exception as exc:
            return {"error": repr(exc)}

for line in sys.stdin:
    try:
        reply = {"ok": handle(json.loads(line))}
    except Exception as exc:
        import traceback; traceback.print_exc()
        reply = {"error": repr(exc)}
    out.write(json.dumps(reply) + "\n")
    out.flush()
'''


class Worker:
    def __init__(self, role, tree, threads, env_extra, cache):
        env = dict(os.environ)
        env.update(PYTHONPATH=os.path.abspath(tree), FASTNN_CACHE_DIR=cache,
                   OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        env.update(env_extra)
        self.role = role
        self.p = subprocess.Popen([sys.executable, "-c", WORKER, role, os.path.abspath(tree), str(threads)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                  cwd=tempfile.gettempdir())

    def __call__(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        reply = json.loads(self.p.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"{self.role}: {reply['error']}")
        return reply["ok"]


def _env(pairs):
    return dict(p.split("=", 1) for p in pairs)


def _fmt(rs):
    return f"{statistics.median(rs):.3f} [{min(rs):.3f}, {max(rs):.3f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the source tree before")
    ap.add_argument("--after", required=True, help="the source tree after")
    ap.add_argument("--before-env", nargs="*", default=[], metavar="VAR=VALUE")
    ap.add_argument("--after-env", nargs="*", default=[], metavar="VAR=VALUE")
    ap.add_argument("--cache", default=None, help="parent of the two FASTNN_CACHE_DIRs (default: a new temporary one)")
    ap.add_argument("--set", choices=("table", "heldout", "pool", "nchw", "depthwise"), default="table")
    ap.add_argument("--only", default="", help="comma-separated row names")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--ops", default="fwd,fwd+bwd")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    cache = args.cache or tempfile.mkdtemp(prefix="fastnn-ab-")
    before = Worker("before", args.before, args.threads, _env(args.before_env), os.path.join(cache, "before"))
    after = Worker("after", args.after, args.threads, _env(args.after_env), os.path.join(cache, "after"))
    gemm = Worker("gemm", args.after, args.threads, {}, os.path.join(cache, "gemm"))
    print(f"before: {before(op='info')}  after: {after(op='info')}; {args.threads} threads, "
          f"{args.rounds} rounds, blocks of {args.block}; load {os.getloadavg()[0]:.2f}", flush=True)
    every = {"before/after": [], "torch/after": []}
    for dtype in args.dtypes.split(","):
        gemm(op="gemm", dtype=dtype)
        for kind, name in after(op="rows", set=args.set):
            if args.only and name not in args.only.split(","):
                continue
            for mode in (("max", "average") if kind == "pool" else (None,)):
                sb = before(op="setup", set=args.set, name=name, dtype=dtype, mode=mode)
                sa = after(op="setup", set=args.set, name=name, dtype=dtype, mode=mode)
                for what in args.ops.split(","):
                    ts = {"before": [], "after": [], "torch": [], "gemm": []}
                    jobs = [("before", before, what), ("after", after, what), ("torch", after, "torch " + what)]
                    if sa["flops"]:
                        jobs.append(("gemm", gemm, "gemm"))
                    for r in range(args.rounds):
                        for label, w, key in (jobs if r % 2 == 0 else jobs[::-1]):
                            ts[label].append(w(op="time", what=key, block=args.block))
                    ba = [b / a for b, a in zip(ts["before"], ts["after"])]
                    ta = [t / a for t, a in zip(ts["torch"], ts["after"])]
                    every["before/after"].append(statistics.median(ba))
                    every["torch/after"].append(statistics.median(ta))
                    med = statistics.median(ts["after"])
                    extra = ""
                    if sa["flops"]:
                        flops = sa["flops"] * {"fwd": 1, "fwd+bwd": 3, "bwd": 2}[what]
                        share = [flops / a / (2 * 1024 ** 3 / g) for a, g in zip(ts["after"], ts["gemm"])]
                        gem = statistics.median(2 * 1024 ** 3 / g for g in ts["gemm"])
                        extra = (f" {flops / med / 1e9:6.1f} GFLOP/s, {100 * statistics.median(share):5.1f}% of GEMM"
                                 f" ({gem / 1e9:.0f})")
                    label = f"{kind} {name}" + (f" {mode}" if mode else "")
                    same = "" if abs(sb["checksum"] - sa["checksum"]) <= 1e-6 * (1 + abs(sa["checksum"])) else " (sums differ)"
                    print(f"{label:<24} {dtype:<8} {what:<8} before/after {_fmt(ba)}  torch/after {_fmt(ta)}"
                          f"  after {med * 1e3:8.3f} ms{extra}  torch {sa.get('layout')}{same}", flush=True)
    for k, v in every.items():
        if v:
            print(f"{k}: {len(v)} rows, median {statistics.median(v):.3f}, from {min(v):.3f} to {max(v):.3f}; "
                  f"below 1.0: {sum(x < 1.0 for x in v)}")
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
