"""Time the benchmark table on two source trees of fastnn, interleaved, on one machine and hour.

Each round runs ``fastnn bench --json`` once per tree, in a fresh process with the tree first
on ``PYTHONPATH`` (the order alternating per round, so drift and warm-up hit both alike); the
per-row ratio new / old of each round's median is then summarised as the median over rounds
and its range. Rows are (op, shape, dtype, backend). Both trees should have compiled their
kernels already (run once before), so that compiling is not timed.

    python scripts/compare_trees.py OLD_TREE NEW_TREE --rounds 3 -- --backends numba,im2col

Arguments after ``--`` go to ``fastnn bench`` (``--json`` is added). Prints one line per row
and a summary by backend; ``--json FILE`` keeps the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def _bench(tree: str, bench_args, out: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    code = "import sys; from fastnn.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "bench", "--no-progress", "--json", out, *bench_args]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    with open(out) as f:
        data = json.load(f)
    return {(r["op"], r["shape"], r["dtype"], r["backend"]): r["median_s"] for r in data["results"]
            if r.get("status") == "ok" and r.get("median_s")}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bench_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            got = {}
            for which in order:
                got[which] = _bench(getattr(args, which), bench_args, os.path.join(tmp, f"{which}{r}.json"))
                print(f"round {r + 1}/{args.rounds}: {which} done", file=sys.stderr, flush=True)
            for key in got["old"].keys() & got["new"].keys():
                ratios.setdefault(key, []).append(got["new"][key] / got["old"][key])
    rows = []
    for key in sorted(ratios):
        v = ratios[key]
        rows.append({"op": key[0], "shape": key[1], "dtype": key[2], "backend": key[3],
                     "median": statistics.median(v), "min": min(v), "max": max(v), "rounds": len(v)})
        print(f"{'/'.join(key):<45} new/old {rows[-1]['median']:.3f}  [{min(v):.3f}, {max(v):.3f}]")
    for backend in sorted({r["backend"] for r in rows}):
        med = [r["median"] for r in rows if r["backend"] == backend]
        print(f"{backend}: {len(med)} rows, median of medians {statistics.median(med):.3f}, "
              f"range {min(med):.3f}-{max(med):.3f}, rows beyond 1.10: "
              f"{sum(m > 1.10 for m in med)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
