"""``fastnn bench``: time every backend on the benchmark shapes, after checking it against the reference."""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import time
from typing import List, Optional

from ..bench import report
from ..bench.results import ResultRow
from ..bench.runner import MODES, Mode, failed, run_benchmark, select_workloads
from ..bench.timing import ThreadSettings, git_revision, machine_info, thread_info, versions
from ..bench.workloads import REF, TORCH, Workload, op_names, shape_names, torch_module

HELP = ("benchmark every backend (conv, pooling, the cat network's dense layers; float32/float64; "
        "forward and forward+backward) after checking it against the reference")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_arguments(parser) -> None:
    import fastnn

    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="few repeats (a rough table in seconds)")
    mode.add_argument("--full", action="store_true",
                      help="many repeats, and the course loops timed (once) wherever they take under "
                           f"{MODES['full'].ref_budget_s:g} s")
    parser.add_argument("--ops", action="append", metavar="LIST",
                        help=f"comma-separated ops: {', '.join(op_names())}, or a family / pass alone "
                             "(conv, maxpool, avgpool, dense, fwd, fwd+bwd)")
    parser.add_argument("--shapes", action="append", metavar="LIST",
                        help=f"comma-separated shape names: {', '.join(shape_names())}")
    parser.add_argument("--dtypes", action="append", metavar="LIST", help="float32, float64 (default both)")
    parser.add_argument("--backends", action="append", metavar="LIST",
                        help=f"comma-separated backends to time (registered now: {', '.join(fastnn.available_backends())}; "
                             f"plus '{TORCH}' if installed). The reference always runs the reduced checks.")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for numba, BLAS (via threadpoolctl, if installed) and torch")
    parser.add_argument("--ref-budget", type=float, metavar="SECONDS",
                        help="time the course loops on a full shape only if estimated within this (default by mode)")
    parser.add_argument("--json", metavar="FILE", help="write machine, versions, threads, git revision and all results")
    parser.add_argument("--markdown", metavar="FILE", help="write the table in Markdown")
    parser.add_argument("--plot", metavar="FILE.png", help="speed-up bars per shape and backend vs PyTorch (needs matplotlib)")
    parser.add_argument("--compare", metavar="OLD.json", help="show the change against an earlier --json run")
    parser.add_argument("--no-progress", action="store_true", help="no progress display on stderr")


def _err(msg: str) -> int:
    print(f"fastnn bench: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


class _Refused(Exception):
    """A usage error found before the run (exit code 2)."""


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What was asked, checked before the (long) run."""

    workloads: List[Workload]
    backends: Optional[List[str]]  # None: every registered backend, plus torch when installed
    mode: Mode
    old: Optional[List[ResultRow]]  # the --compare file's rows


@dataclasses.dataclass(frozen=True)
class _Done:
    """What the run gave."""

    results: List[ResultRow]
    bounds: dict
    threads: dict
    elapsed: float


def run(args) -> int:
    try:
        plan = _plan(args)
    except _Refused as exc:
        return _err(str(exc))
    done = _run(plan, args)
    header = _header(plan.mode, done)
    _print_report(plan, done, header)
    if args.json:
        _write_json(args, plan, done)
    if args.markdown:
        _write_markdown(args.markdown, plan, done, header)
    if args.plot and not _write_plot(args.plot, done):
        return EXIT_FAILED
    bad = failed(done.results)
    if bad:
        print(f"FAILED: {len(bad)} result(s) MISMATCH or ERROR (see above)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _plan(args) -> _Plan:
    """Everything that can be refused is refused here, before the run."""
    try:
        workloads = select_workloads(args.ops, args.shapes, args.dtypes)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    if not workloads:
        raise _Refused("the selection holds no workload")
    backends = _backends(args.backends)
    if args.threads is not None and args.threads < 1:
        raise _Refused("--threads must be at least 1")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise _Refused("--plot needs matplotlib, which is not installed: pip install 'fastnn[plot]' "
                           "(or pip install matplotlib)") from None
    old = None
    if args.compare:
        try:
            old = report.load_json(args.compare)
        except (OSError, ValueError) as exc:
            raise _Refused(f"--compare: cannot read {args.compare}: {exc}") from None
    mode = MODES["quick" if args.quick else "full" if args.full else "default"]
    if args.ref_budget is not None:
        mode = dataclasses.replace(mode, ref_budget_s=args.ref_budget)
    return _Plan(workloads, backends, mode, old)


def _backends(values: Optional[List[str]]) -> Optional[List[str]]:
    """The --backends names (None when not given); each must be registered, or torch and installed."""
    import fastnn

    if not values:
        return None
    backends = [b.strip() for v in values for b in v.split(",") if b.strip()]
    known = fastnn.available_backends() + [TORCH]
    bad = [b for b in backends if b not in known]
    if bad:
        raise _Refused(f"unknown backend {bad[0]!r}; choose from {', '.join(known)}")
    if TORCH in backends and torch_module() is None:
        raise _Refused("torch is not installed (pip install torch==2.13.0)")
    return backends


def _run(plan: _Plan, args) -> _Done:
    """The run under the --threads settings (restored afterwards), compared with --compare's rows."""
    threads = ThreadSettings(args.threads).apply()
    for w in threads.warnings:
        print(f"fastnn bench: warning: {w}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        out = run_benchmark(plan.workloads, backends=plan.backends, mode=plan.mode, progress=not args.no_progress)
        thr = thread_info()
    finally:
        threads.restore()
    elapsed = time.perf_counter() - t0
    results = out["results"]
    if plan.old is not None:
        results = report.attach_comparison(results, plan.old)
    return _Done(results, out["bounds"], thr, elapsed)


def _header(mode: Mode, done: _Done) -> dict:
    return {
        "machine": f"{machine_info()['cpu']}, {machine_info()['cpu_count']} CPUs",
        "threads": _threads_line(done.threads),
        "bounds": _bounds_line(done.bounds),
        "mode": f"{mode.name}, {done.elapsed:.0f} s",
    }


def _print_report(plan: _Plan, done: _Done, header: dict) -> None:
    """The table on stdout, with the failures' notes, the warm-up time and the comparison's summary."""
    compare = plan.old is not None
    print(f"fastnn bench ({header['mode']}) on {header['machine']}; threads: {header['threads']}")
    print(f"bounds: {header['bounds']}")
    print(report.format_text(done.results, compare=compare))
    print("median of repeats after an untimed warm-up; ± is half the inter-quartile range; "
          "vs ref/torch = speed-up (~ against the reference's estimated time); "
          f"status: ok = equal to {REF} on the reduced shape")
    for r in done.results:
        if r.note and r.failed:
            print(f"{r.status}: {r.op} {r.shape} {r.dtype} {r.backend}: {r.note}")
    warm = sum(r.warmup_s or 0.0 for r in done.results)
    print(f"{done.elapsed:.0f} s in all, of which {warm:.0f} s untimed warm-up calls (JIT compilation included)")
    if compare:
        print(report.comparison_summary(done.results))


def _write_json(args, plan: _Plan, done: _Done) -> None:
    """--json: machine, versions, threads, git revision and every row (schema fastnn-bench/1)."""
    import fastnn

    doc = {
        "schema": "fastnn-bench/1",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "mode": dataclasses.asdict(plan.mode),
        "elapsed_s": done.elapsed,
        "machine": machine_info(),
        "versions": versions(),
        "threads": done.threads,
        "git": git_revision(),
        "backends": fastnn.backend_info(),
        "bounds": done.bounds,
        "results": [r.as_dict() for r in done.results],
    }
    if args.compare:
        doc["compared_with"] = args.compare
    with open(args.json, "w") as fh:
        json.dump(doc, fh, indent=1, default=str)
    print(f"wrote {args.json}")


def _write_markdown(path: str, plan: _Plan, done: _Done, header: dict) -> None:
    with open(path, "w") as fh:
        fh.write(report.format_markdown(done.results, compare=plan.old is not None, header=header))
    print(f"wrote {path}")


def _write_plot(path: str, done: _Done) -> bool:
    """--plot; False (said on stderr) when there is nothing to plot."""
    try:
        what = report.plot(done.results, path)
    except ValueError as exc:
        print(f"fastnn bench: --plot: {exc}", file=sys.stderr)
        return False
    print(f"wrote {path} ({what})")
    return True


def _threads_line(thr: dict) -> str:
    parts = []
    if thr.get("numba") is not None:
        parts.append(f"numba {thr['numba']}")
    blas = thr.get("blas")
    if isinstance(blas, list) and blas:
        parts.append("threadpools " + "/".join(f"{d['internal_api']} {d['num_threads']}" for d in blas))
    elif blas is None:
        parts.append("BLAS threads unknown (no threadpoolctl)")
    if thr.get("torch") is not None:
        parts.append(f"torch {thr['torch']}")
    return ", ".join(parts)


def _bounds_line(bounds: dict) -> str:
    parts = [f"GEMM {v / 1e9:.0f} GFLOP/s {k}" for k, v in bounds["gemm_flops"].items()]
    if bounds.get("mem_bytes_per_s"):
        parts.append(f"copy {bounds['mem_bytes_per_s'] / 1e9:.1f} GB/s")
    return ", ".join(parts) or "-"
