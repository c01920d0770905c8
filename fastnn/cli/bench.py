"""``fastnn bench``: time every backend on the benchmark shapes, after checking it against the reference.

Exit codes: 0 all equal to the reference; 1 a MISMATCH or ERROR row; 2 a usage error (refused
before the run); 3 an output file that cannot be written (refused before the run, or a write
that failed at the end: the results are then saved in a fallback file, named on stderr);
130 interrupted (the rows measured until then are still reported and written).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import os
import sys
import tempfile
import time
from typing import List, Optional, Tuple

from ..bench import report
from ..bench.results import SCHEMA, ResultRow
from ..bench.runner import AUTO, MODES, Clock, Mode, Progress, failed, run_benchmark, select_workloads
from ..bench.timing import GEMM_N, ThreadSettings, env_switches, git_revision, machine_info, thread_info, versions
from ..bench.workloads import REF, TORCH, Workload, op_names, shape_names, torch_installed

HELP = ("benchmark every backend (conv, pooling, the cat network's dense layers; float32/float64; "
        "forward and forward+backward) after checking it against the reference")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def add_arguments(parser) -> None:
    import fastnn

    mode = parser.add_mutually_exclusive_group()
    q = MODES["quick"]
    mode.add_argument("--quick", action="store_true",
                      help=f"a rough table: {len(q.shapes)} shapes ({', '.join(q.shapes)}) unless --shapes is given, "
                           f"{q.min_rounds} rounds")
    mode.add_argument("--full", action="store_true",
                      help="many rounds, and the course loops timed wherever they take under "
                           f"{MODES['full'].ref_budget_s:g} s")
    parser.add_argument("--ops", action="append", metavar="LIST",
                        help=f"comma-separated ops: {', '.join(op_names())}, or a family / pass alone "
                             "(conv, maxpool, avgpool, dense, fwd, fwd+bwd)")
    parser.add_argument("--shapes", action="append", metavar="LIST",
                        help=f"comma-separated shape names: {', '.join(shape_names())}")
    parser.add_argument("--dtypes", action="append", metavar="LIST", help="float32, float64 (default both)")
    parser.add_argument("--backends", action="append", metavar="LIST",
                        help=f"comma-separated backends to time: {AUTO}, {', '.join(fastnn.available_backends())}, "
                             f"'{TORCH}' if installed (default all; '{AUTO}' too when a plan exists or with --tune). "
                             "The reference always runs the reduced checks.")
    parser.add_argument("--tune", action="store_true",
                        help="first tune auto's plan (fastnn.tune) on the selected shapes, within --tune-budget")
    parser.add_argument("--tune-budget", type=float, metavar="SECONDS",
                        help="--tune: stop tuning after this long (default by mode: "
                             + ", ".join(f"{m.name} {m.tune_total_s:g}" for m in MODES.values()) + ")")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for numba, BLAS (via threadpoolctl, if installed) and torch")
    parser.add_argument("--ref-budget", type=float, metavar="SECONDS",
                        help="time the course loops on a full shape only if estimated within this (default by mode)")
    parser.add_argument("--json", metavar="FILE", help="write machine, versions, threads, git revision and all results")
    parser.add_argument("--markdown", metavar="FILE", help="write the table in Markdown")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="each backend's share of the machine's bound per op and shape (needs matplotlib)")
    parser.add_argument("--compare", metavar="OLD.json", help="show the change against an earlier --json run")
    parser.add_argument("--noise", type=float, default=report.NOISE_FLOOR * 100, metavar="PERCENT",
                        help="--compare: a change within the repeats' ranges or this floor is no change "
                             f"(default {report.NOISE_FLOOR * 100:g})")
    parser.add_argument("--show-skipped", action="store_true",
                        help="list the reference's rows skipped for their estimated time (hidden by default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress display on stderr")


def _err(msg: str, code: int = EXIT_USAGE) -> int:
    print(f"fastnn bench: error: {msg}", file=sys.stderr)
    return code


class _Refused(Exception):
    """A usage error found before the run (exit code 2, or 3 for an output path)."""

    def __init__(self, msg: str, code: int = EXIT_USAGE):
        super().__init__(msg)
        self.code = code


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What was asked, checked before the (long) run."""

    workloads: List[Workload]
    backends: Optional[List[str]]  # None: every registered backend, plus torch when installed
    mode: Mode
    old: Optional[List[ResultRow]]  # the --compare file's rows
    old_doc: Optional[dict]  # ... and the whole document
    shapes_note: Optional[str]  # what the mode left out, said in the header


@dataclasses.dataclass(frozen=True)
class _Done:
    """What the run gave."""

    results: List[ResultRow]
    bounds: dict
    threads: dict
    elapsed: float
    time: dict
    compile_s: Optional[float]
    interrupted: bool
    tuned: Optional[dict]


def run(args) -> int:
    clock = Clock()  # every second from here to the report is accounted for
    try:
        with clock("imports"):  # (matplotlib for --plot, the --compare file)
            plan = _plan(args)
    except _Refused as exc:
        return _err(str(exc), exc.code)
    done = _run(plan, args, clock)
    header = _header(plan, done)
    _print_report(plan, done, header, args)
    written_ok = True
    if args.json:
        written_ok &= _write_output(args.json, "--json", _json_bytes(args, plan, done))
    if args.markdown:
        md = report.format_markdown(done.results, compare=plan.old is not None, header=header,
                                    show_skipped=args.show_skipped)
        written_ok &= _write_output(args.markdown, "--markdown", md.encode())
    if args.plot:
        written_ok &= _write_plot(args.plot, done)
    if done.interrupted:
        print("interrupted: the table and files hold the rows measured until then", file=sys.stderr)
        return EXIT_INTERRUPTED
    bad = failed(done.results)
    if bad:
        print(f"FAILED: {len(bad)} result(s) MISMATCH or ERROR (see above)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if written_ok else EXIT_OUTPUT


# ----------------------------------------------------------------------- before the run


def _plan(args) -> _Plan:
    """Everything that can be refused is refused here, before the run."""
    mode = MODES["quick" if args.quick else "full" if args.full else "default"]
    shapes, note = args.shapes, None
    if shapes is None and mode.shapes is not None:
        shapes = [",".join(mode.shapes)]
        note = f"{len(mode.shapes)} of {len(shape_names())} shapes ({', '.join(mode.shapes)}; --shapes to choose)"
    try:
        workloads = select_workloads(args.ops, shapes, args.dtypes)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    if not workloads:
        raise _Refused("the selection holds no workload")
    backends = _backends(args.backends, args.tune)
    if args.threads is not None and args.threads < 1:
        raise _Refused("--threads must be at least 1")
    if args.tune_budget is not None and not args.tune_budget > 0:
        raise _Refused("--tune-budget must be positive")
    if not args.noise >= 0:
        raise _Refused("--noise must be a percentage >= 0")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise _Refused("--plot needs matplotlib, which is not installed: pip install 'fastnn[plot]' "
                           "(or pip install matplotlib)") from None
    _check_outputs(args)
    old = old_doc = None
    if args.compare:
        try:
            old_doc, old = report.load_run(args.compare)
        except (OSError, ValueError) as exc:
            raise _Refused(f"--compare: cannot read {args.compare}: {exc}") from None
    if args.ref_budget is not None:
        mode = dataclasses.replace(mode, ref_budget_s=args.ref_budget)
    if args.tune_budget is not None:
        mode = dataclasses.replace(mode, tune_total_s=args.tune_budget)
    return _Plan(workloads, backends, mode, old, old_doc, note)


def _backends(values: Optional[List[str]], tune: bool) -> Optional[List[str]]:
    """The --backends names; each must be auto, registered, or torch and installed. Not given:
    None (every registered backend and torch), with auto first where it can differ from the
    highest-priority backend (a plan exists, autotuning is on, or --tune)."""
    import fastnn
    from .. import _plan

    if not values:
        if tune or _plan.plans() or _plan.autotune_enabled():
            return [AUTO] + fastnn.available_backends() + ([TORCH] if torch_installed() else [])
        return None
    backends = [b.strip() for v in values for b in v.split(",") if b.strip()]
    known = [AUTO] + fastnn.available_backends() + [TORCH]
    bad = [b for b in backends if b not in known]
    if bad:
        raise _Refused(f"unknown backend {bad[0]!r}; choose from {', '.join(known)}")
    if TORCH in backends and not torch_installed():
        raise _Refused("torch is not installed (pip install torch==2.13.0)")
    return backends


def check_output_path(path: str) -> Optional[str]:
    """None when ``path`` can be written (its directory exists and takes a new file; an existing
    file can be opened for writing), else why not. Nothing is left behind."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        return f"{path} is a directory"
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        return f"its directory {parent} does not exist"
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastnn-bench-probe.", dir=parent)
        os.close(fd)
        os.unlink(probe)
        if os.path.exists(full):
            with open(full, "ab"):
                pass
    except OSError as exc:
        return f"it cannot be written ({exc.strerror or exc})"
    return None


def _check_outputs(args) -> None:
    outputs = [(flag, getattr(args, attr)) for flag, attr in (("--json", "json"), ("--markdown", "markdown"),
                                                             ("--plot", "plot")) if getattr(args, attr)]
    seen = {}
    for flag, path in outputs:
        full = os.path.abspath(path)
        if full in seen:
            raise _Refused(f"{flag} {path}: the same file as {seen[full]}", EXIT_OUTPUT)
        seen[full] = flag
        why = check_output_path(path)
        if why:
            raise _Refused(f"{flag} {path}: {why} (checked before running, so nothing was measured)", EXIT_OUTPUT)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        ext = os.path.splitext(args.plot)[1].lstrip(".").lower()
        supported = Figure().canvas.get_supported_filetypes()
        if ext not in supported:
            raise _Refused(f"--plot {args.plot}: unknown image type {ext or '(none)'!r}; use one of "
                           f"{', '.join(sorted(supported))}", EXIT_OUTPUT)


# ----------------------------------------------------------------------------- the run


def _compiled_dir() -> str:
    from .. import _cache

    where = _cache.describe()["compiled_kernels"]
    return where.split(" (NUMBA_CACHE_DIR)")[0]


def kernel_cache_cold() -> bool:
    """Whether the compiled-kernel cache holds no kernel at all (a first run compiles them all)."""
    root = _compiled_dir()
    for _, _, files in os.walk(root):
        if any(f.endswith(".nbi") for f in files):
            return False
    return True


def _run(plan: _Plan, args, clock: Clock) -> _Done:
    """The run under the --threads settings (restored afterwards), tuned first with --tune,
    compared with --compare's rows."""
    wants_torch = plan.backends is None or TORCH in plan.backends
    threads = ThreadSettings(args.threads, use_torch=wants_torch and torch_installed()).apply()
    for w in threads.warnings:
        print(f"fastnn bench: warning: {w}", file=sys.stderr)
    where = _compiled_dir()
    notice = None
    if kernel_cache_cold():
        print(f"fastnn bench: first run: compiling kernels (a few minutes; cached afterwards in {where}, so "
              "later runs skip it)", file=sys.stderr, flush=True)
    else:
        notice = (f"fastnn bench: compiling kernels (new ones, or after an upgrade; cached afterwards in {where})")
    tuned = None
    try:
        if args.tune:
            with clock("tuning"):
                tuned = _tune(plan, not args.no_progress)
        out = run_benchmark(plan.workloads, backends=plan.backends, mode=plan.mode, progress=not args.no_progress,
                            clock=clock, compile_notice=notice)
        thr = thread_info()
    finally:
        threads.restore()
    elapsed = clock.elapsed()
    results = out["results"]
    if plan.old is not None:
        results = report.attach_comparison(results, plan.old, noise=args.noise / 100)
    return _Done(results, out["bounds"], thr, elapsed, clock.summary(elapsed), out["compile_s"], out["interrupted"],
                 tuned)


def tune_calls(workloads) -> List[Tuple[str, object]]:
    """The (op, params) pairs of the workloads' tunable calls, each key once, forwards first."""
    from .. import _plan

    fwd, bwd, seen = [], [], set()
    for w in workloads:
        ops = [op for op in w.required_ops if op in _plan.TUNABLE_OPS]
        if not ops:
            continue
        params = w.params()
        for op in ops:
            key = _plan.key_of(op, params[op])
            if key not in seen:
                seen.add(key)
                (bwd if op.endswith("backward") else fwd).append((op, params[op]))
    return fwd + bwd


def _tune(plan: _Plan, show: bool) -> dict:
    """--tune: ``fastnn.tune`` on each key of the selected workloads until the time budget is spent."""
    import numpy as np

    import fastnn

    calls = tune_calls(plan.workloads)
    t0 = time.perf_counter()
    prog = Progress(len(calls), enabled=show, unit="key")
    found = {}
    done = 0
    try:
        for op, p in calls:
            if time.perf_counter() - t0 > plan.mode.tune_total_s:
                break
            prog.update("tuning auto's plan", f"{op} {np.dtype(p.dtype).name}")
            found.update(fastnn.tune([(op, p)], budget_s=plan.mode.tune_key_s) or {})
            done += 1
            prog.step()
    finally:
        prog.close()
    left = len(calls) - done
    msg = (f"fastnn bench: tuned {done} of {len(calls)} keys in {time.perf_counter() - t0:.0f} s"
           + (f" ({left} left untuned: --tune-budget {plan.mode.tune_total_s:g} s spent)" if left else ""))
    print(msg, file=sys.stderr, flush=True)
    return {"keys": len(calls), "tuned": done, "left": left, "seconds": time.perf_counter() - t0,
            "budget_per_key_s": plan.mode.tune_key_s, "plans": {k: v.get("backend") for k, v in found.items()}}


# --------------------------------------------------------------------------- the report


def _mode_line(plan: _Plan, done: _Done) -> str:
    m = plan.mode
    rounds = f"{m.min_rounds} rounds" if m.min_rounds == m.max_rounds else f"{m.min_rounds}-{m.max_rounds} rounds"
    return ", ".join(x for x in (m.name, plan.shapes_note, rounds, f"{done.elapsed:.0f} s") if x)


def _header(plan: _Plan, done: _Done) -> dict:
    info = machine_info()
    return {
        "machine": f"{info['cpu']}, {info['cpu_count']} CPUs",
        "threads": _threads_line(done.threads),
        "bounds": _bounds_line(done.bounds),
        "mode": _mode_line(plan, done),
        "time": _time_line(done),
    }


def _wrap(text: str) -> str:
    return "\n".join(report._wrap(text))


def _print_report(plan: _Plan, done: _Done, header: dict, args) -> None:
    """The table on stdout, its footnotes, where the time went and the comparison's summary."""
    compare = plan.old is not None
    print(_wrap(f"fastnn bench ({header['mode']}) on {header['machine']}; threads: {header['threads']}"))
    print(_wrap(f"bounds: {header['bounds']}"))
    if compare:
        diffs = report.environment_differences(plan.old_doc or {}, _json_doc(args, plan, done))
        for d in diffs:
            print(_wrap(f"warning: the runs differ: {d}"))
            print(_wrap(f"fastnn bench: warning: the compared runs differ: {d}"), file=sys.stderr)
    print(report.format_text(done.results, compare=compare, show_skipped=args.show_skipped))
    print()
    for line in report.footnotes(done.results, args.show_skipped):
        print(line)
    print(_wrap("ms: median over alternating rounds (one timed block per backend and PyTorch per round, "
                "the order reversed every other round); ±: half the inter-quartile range of the rounds; "
                "vs torch: the median of the per-round ratios PyTorch time / backend time (> 1: faster) "
                "and their range; vs ref: speed-up against the course loops (~: against its estimate); "
                f"status ok: equal to {REF} on the reduced shape"))
    print(_wrap(f"time: {header['time']}"))
    if compare:
        print(report.comparison_summary(done.results))


def _time_line(done: _Done) -> str:
    t = done.time
    untimed = [(k, v) for k, v in t.items() if k != "timed rounds" and v >= 0.05]
    names = {"checks": "checks on reduced shapes", "warm-up": "warm-up calls", "torch layouts": "torch layout probes",
             "course loops": "the reference timed alone", "bounds": "measuring bounds", "inputs": "making inputs",
             "imports": "imports", "tuning": "tuning (--tune)", "other": "the rest"}
    parts = ", ".join(f"{v:.1f} s {names.get(k, k)}" for k, v in untimed)
    if done.compile_s is None:
        comp = ""
    elif done.compile_s < 0.05:
        comp = "; no kernel compiled (all loaded from the cache)"
    else:
        comp = f"; of all this, {done.compile_s:.1f} s was Numba compiling kernels (in checks and warm-ups)"
    return (f"{done.elapsed:.0f} s in all: {t['timed rounds']:.1f} s timing rounds (settle calls included), "
            f"{done.elapsed - t['timed rounds']:.1f} s untimed ({parts}){comp}")


def _json_doc(args, plan: _Plan, done: _Done) -> dict:
    import fastnn

    doc = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "mode": dataclasses.asdict(plan.mode),
        "elapsed_s": done.elapsed,
        "time_s": done.time,
        "compile_s": done.compile_s,
        "interrupted": done.interrupted,
        "machine": machine_info(),
        "versions": versions(),
        "env": env_switches(),
        "threads": done.threads,
        "git": git_revision(),
        "backends": fastnn.backend_info(),
        "bounds": done.bounds,
        "results": [r.as_dict() for r in done.results],
    }
    if done.tuned is not None:
        doc["tuned"] = done.tuned
    if args.compare:
        doc["compared_with"] = args.compare
    return doc


def _json_bytes(args, plan: _Plan, done: _Done) -> bytes:
    return (json.dumps(_json_doc(args, plan, done), indent=1, default=str) + "\n").encode()


def fallback_path(path: str) -> str:
    """Where an output that cannot be written at ``path`` goes instead: ``<cache>/bench/``, else the
    current directory, else the temporary directory (a new name each time)."""
    from .. import _cache

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base, ext = os.path.splitext(os.path.basename(path))
    name = f"bench-{stamp}-{base or 'out'}{ext}"
    candidates = []
    try:
        candidates.append(os.path.join(_cache.cache_dir(), "bench"))
    except OSError:
        pass
    candidates += [os.getcwd(), tempfile.gettempdir()]
    for d in candidates:
        try:
            os.makedirs(d, exist_ok=True)
            if check_output_path(os.path.join(d, name)) is None:
                return os.path.join(d, name)
        except OSError:
            continue
    return os.path.join(tempfile.mkdtemp(prefix="fastnn-bench-"), name)


def _write_output(path: str, flag: str, content: bytes) -> bool:
    """Write ``content`` to ``path`` atomically; when that fails, to :func:`fallback_path` (said on
    stderr). True when ``path`` itself was written."""
    from .._files import atomic_write

    try:
        atomic_write(path, content, mode=0o644)
        print(f"wrote {path}")
        return True
    except OSError as exc:
        where = fallback_path(path)
        try:
            atomic_write(where, content, mode=0o644)
        except OSError as exc2:  # nowhere to write: the table above is all there is
            print(f"fastnn bench: error: {flag} {path}: {exc}; the fallback {where} failed too ({exc2})",
                  file=sys.stderr)
            return False
        print(f"fastnn bench: error: {flag} {path} could not be written ({exc.strerror or exc}); "
              f"saved to {where} instead", file=sys.stderr)
        return False


def _write_plot(path: str, done: _Done) -> bool:
    """--plot (drawn in memory, then written as the other outputs); False when there is nothing to plot."""
    buf = io.BytesIO()
    try:
        what = report.plot(done.results, buf, format=os.path.splitext(path)[1].lstrip(".").lower() or "png")
    except ValueError as exc:
        print(f"fastnn bench: --plot: {exc}", file=sys.stderr)
        return False
    ok = _write_output(path, "--plot", buf.getvalue())
    if ok:
        print(f"  ({what})")
    return ok


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
    parts = [f"GEMM peak ({bounds.get('gemm_n', GEMM_N)}x{bounds.get('gemm_n', GEMM_N)} matmul, same threads) "
             + ", ".join(f"{v / 1e9:.0f} GFLOP/s {k}" for k, v in bounds["gemm_flops"].items())] \
        if bounds.get("gemm_flops") else []
    copy = bounds.get("copy_bytes_per_s") or {}
    if copy:
        lo, hi = min(copy.values()) / 1e9, max(copy.values()) / 1e9
        span = f"{lo:.1f} GB/s" if abs(hi - lo) < 0.05 else f"{lo:.1f}-{hi:.1f} GB/s"
        parts.append(f"copy bandwidth {span} (at each pooling kernel's working-set size, up to "
                     f"{bounds.get('copy_threads', 1)} threads)")
    return "; ".join(parts) or "-"
