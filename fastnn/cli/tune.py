"""``fastnn tune``: measure which backend is fastest per call key and store the plan ``auto`` uses."""

from __future__ import annotations

import sys

HELP = "time every backend per op and shape (the built-in table by default) and store the plan auto uses"


def add_arguments(parser) -> None:
    from .._plan import TUNABLE_OPS

    parser.add_argument("--shapes", metavar="LIST", help="comma-separated shapes of the built-in table (default all)")
    parser.add_argument("--call", action="append", metavar="SPEC", default=[],
                        help="tune this call instead of the table (repeatable), e.g. "
                             "conv,m=8,h=14,w=14,c=256,f=3,k=256,stride=1,pad=1,dtype=float32")
    parser.add_argument("--record", metavar="FILE",
                        help="tune the calls a program ran with FASTNN_RECORD=FILE (or fastnn.record(FILE))")
    parser.add_argument("--ops", metavar="LIST", help=f"comma-separated ops (default all: {','.join(TUNABLE_OPS)})")
    parser.add_argument("--dtypes", metavar="LIST", default="float32,float64", help="float32, float64 (default both)")
    parser.add_argument("--budget", type=float, default=2.0, metavar="SECONDS",
                        help="timing per key, in alternating rounds (default 2)")
    parser.add_argument("--show", action="store_true", help="print the stored plans and exit")
    parser.add_argument("--clear", action="store_true", help="forget this machine's plans and exit")


def _split(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _line(op, p, entry) -> str:
    import numpy as np

    shape = f"{p.m}x{p.H}x{p.W}x{p.C} f{p.fh}x{p.fw} s{p.sh}" + (f" K{p.K}" if hasattr(p, "K") else f" {p.mode}")
    if getattr(p, "layout", "NHWC") != "NHWC":
        shape += f" {p.layout}"
    if entry is None:
        return f"{op:<14} {np.dtype(p.dtype).name:<8} {shape:<34} no candidate passed the check"
    times = entry["times_s"]
    order = sorted(times, key=lambda b: times[b])
    parts = "  ".join(f"{b} {times[b] * 1e3:.3f} ms" for b in order)
    took = f"; {entry['tuning_s']:.2f} s" if "tuning_s" in entry else ""
    return f"{op:<14} {np.dtype(p.dtype).name:<8} {shape:<34} -> {entry['backend']:<11} ({parts}{took})"


def run(args) -> int:
    import numpy as np

    from .. import _plan
    from .._dispatch import BackendError

    if args.clear:
        _plan.clear_plans()
        print(f"cleared {_plan.plan_file()}")
        return 0
    if args.show:
        stored = _plan.plans()
        print(f"{_plan.plan_file()}: {len(stored)} keys")
        for key, entry in sorted(stored.items()):
            print(f"  {entry['backend']:<12} {key}")
        return 0
    try:
        dtypes = [np.dtype(d) for d in _split(args.dtypes)]
        if any(d not in (np.float32, np.float64) for d in dtypes):
            raise TypeError
    except TypeError:
        print(f"fastnn tune: error: --dtypes must be float32 and/or float64, got {args.dtypes!r}", file=sys.stderr)
        return 2
    if not args.budget > 0:
        print(f"fastnn tune: error: --budget must be positive, got {args.budget}", file=sys.stderr)
        return 2
    ops = _split(args.ops) or list(_plan.TUNABLE_OPS)
    shapes = _split(args.shapes)
    try:
        known = _plan.table_shapes()
        bad = [s for s in shapes or () if s not in known]
        if bad:
            raise ValueError(f"unknown shape {bad[0]!r}; shapes: {', '.join(known)}")
        calls = None
        if args.call or args.record:
            if shapes:
                raise ValueError("--shapes names table shapes; it cannot be combined with --call or --record")
            calls = [c for spec in args.call for c in _plan.parse_call(spec)]
            if args.record:
                calls += _plan.recorded(args.record)
            calls = [(op, p) for op, p in calls if op in ops and np.dtype(p.dtype) in dtypes]
        found = _plan.tune(calls, ops=ops, dtypes=dtypes, shapes=shapes, budget_s=args.budget,
                           progress=lambda i, n, op, p, e: print(f"[{i}/{n}] {_line(op, p, e)}", flush=True))
    except FileNotFoundError as exc:
        print(f"fastnn tune: error: no record file {exc.filename!r} (run a program with FASTNN_RECORD=FILE first)",
              file=sys.stderr)
        return 2
    except (ValueError, BackendError) as exc:
        print(f"fastnn tune: error: {exc}", file=sys.stderr)
        return 2
    print(f"stored {len(found)} keys in {_plan.plan_file()}; `auto` now runs the fastest backend measured per key")
    return 0
