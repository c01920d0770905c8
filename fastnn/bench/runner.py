"""Runs the benchmark: check each backend against the reference on a reduced shape, then time
the backends and PyTorch side by side, in alternating rounds.

For every workload (op x shape x dtype, see :mod:`fastnn.bench.workloads`):

1. the inputs are made once (seeded) and shared by every backend and PyTorch;
2. the reference backend (the course's loops) runs the REDUCED workload once: its outputs are
   the ground truth of the check, and its time, scaled by the loop count, estimates what the
   reference would need on the full shape;
3. every other selected backend runs the reduced workload and is compared with the reference
   (``MISMATCH`` if anything differs, ``ERROR`` if it raised; ``auto`` is checked with the
   backends it picks for the *full* shape's calls), then gets an untimed warm-up call on the
   full shape (compiling included). PyTorch (when installed) gets a warm-up and a probe call in
   each layout, keeps the faster layout, and is checked in it;
4. the backends and PyTorch are timed in alternating rounds (:func:`~.timing.alternating_rounds`:
   one timed block each per round, the order reversed every other round); a row's time is the
   median over rounds, its spread the quartiles and extremes over rounds, and its speed-up
   against PyTorch the median of the per-round ratios with their range;
5. the reference is timed alone on the full shape when the estimate is within the budget, else
   reported as ``skipped (est. <its estimated time>)``.

Every second of the run is put in one of the categories of :data:`TIME_CATEGORIES`; the
seconds Numba spent compiling (in checks, warm-ups or anywhere) are counted as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .. import _dispatch
from .._progress import ProgressBar
from .results import ResultRow
from .timing import (GEMM_N, CompileClock, Timing, alternating_rounds, copy_bandwidth, gemm_peak, kernel_threads,
                     ratio_stats, time_callable)
from .workloads import (REF, TORCH, Workload, all_workloads, backends_for, compare_outputs, op_names, shape_names,
                        torch_module)

__all__ = ["Mode", "MODES", "AUTO", "TIME_CATEGORIES", "select_workloads", "run_benchmark", "failed", "Progress",
           "fmt_seconds", "Clock", "SUSPECT_PCT"]

AUTO = _dispatch.AUTO
#: Where the seconds of a run go (``time`` in :func:`run_benchmark`'s result and the JSON).
TIME_CATEGORIES = ("timed rounds", "checks", "warm-up", "torch layouts", "course loops", "bounds", "inputs",
                   "imports", "tuning", "other")
#: During a run the GEMM peak of a dtype is measured again when its last measurement is older than this.
REMEASURE_S = 20.0
#: A share of the bound above this is marked suspect: a kernel cannot beat the bound it is
#: measured against, so the bound (or the work counted) does not describe that kernel.
SUSPECT_PCT = 100.0


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    min_rounds: int  # alternating rounds per workload, at least
    max_rounds: int  # ... and at most
    target_s: float  # rounds go on (up to max_rounds) until a workload's rounds took this long
    block_s: float  # a candidate's timed calls in a round last about this long
    settle_s: float  # untimed calls after switching candidates, at most this long (timing.SETTLE_CALLS)
    ref_budget_s: float  # time the reference on the full shape only if estimated within this
    ref_target_s: float = 0.1  # the reference's timing (alone): about this long ...
    ref_min_reps: int = 3  # ... with this many repeats at least
    ref_max_reps: int = 10
    #: the shapes run when --shapes is not given (None: every shape of the table)
    shapes: Optional[Tuple[str, ...]] = None
    tune_key_s: float = 1.0  # --tune: timing per key
    tune_total_s: float = 120.0  # --tune: at most this long in all


MODES: Dict[str, Mode] = {
    "quick": Mode("quick", min_rounds=3, max_rounds=3, target_s=0.0, block_s=0.002, settle_s=0.03,
                  ref_budget_s=0.1, ref_target_s=0.03, ref_min_reps=1, ref_max_reps=3,
                  shapes=("seed", "cifar", "stride2", "pointwise", "p3s2", "cat_net"),
                  tune_key_s=0.3, tune_total_s=60.0),
    "default": Mode("default", min_rounds=5, max_rounds=15, target_s=0.3, block_s=0.005, settle_s=0.1,
                    ref_budget_s=0.5),
    "full": Mode("full", min_rounds=10, max_rounds=40, target_s=3.0, block_s=0.05, settle_s=0.15,
                 ref_budget_s=20.0, ref_target_s=1.0, ref_min_reps=10, ref_max_reps=500,
                 tune_key_s=2.0, tune_total_s=1200.0),
}


def fmt_seconds(s: float) -> str:
    """Seconds as the tables show them: whole seconds from 10 s, one decimal from 1 s, whole
    milliseconds from 10 ms, else milliseconds to one decimal."""
    if s >= 10:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.1f} s"
    if s >= 0.01:
        return f"{s * 1e3:.0f} ms"
    return f"{s * 1e3:.1f} ms"


def _split(values: Optional[Iterable[str]]) -> Optional[List[str]]:
    if values is None:
        return None
    out: List[str] = []
    for v in values:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def select_workloads(ops=None, shapes=None, dtypes=None) -> List[Workload]:
    """The workloads matching the selectors (None = all). Raises ValueError naming an unknown choice.

    ``ops``: families (``conv``, ``maxpool``, ``avgpool``, ``dense``), passes (``fwd``,
    ``fwd+bwd``) or both (``conv.fwd``); ``shapes``: shape names; ``dtypes``: float32/float64.
    """
    ops, shapes, dtypes = _split(ops), _split(shapes), _split(dtypes)
    dts = [np.float32, np.float64]
    if dtypes is not None:
        valid = {"float32": np.float32, "float64": np.float64, "f32": np.float32, "f64": np.float64}
        bad = [d for d in dtypes if d not in valid]
        if bad:
            raise ValueError(f"unknown dtype {bad[0]!r}; choose from float32, float64")
        dts = [valid[d] for d in dict.fromkeys(dtypes)]
    workloads = all_workloads(dts)
    if ops is not None:
        known = set(op_names()) | {o.split(".")[0] for o in op_names()} | {o.split(".")[1] for o in op_names()}
        bad = [o for o in ops if o not in known]
        if bad:
            raise ValueError(f"unknown op {bad[0]!r}; choose from {', '.join(sorted(known))}")
        workloads = [w for w in workloads if w.op in ops or w.family in ops or w.pass_ in ops]
    if shapes is not None:
        known = shape_names()
        bad = [s for s in shapes if s not in known]
        if bad:
            raise ValueError(f"unknown shape {bad[0]!r}; choose from {', '.join(known)}")
        workloads = [w for w in workloads if w.shape in shapes]
    return workloads


class Progress:
    """Benchmark progress on the one progress display (:mod:`fastnn._progress`, stderr): a tqdm
    bar over the workloads on a terminal (its rate and time left), one line per group of
    workloads otherwise, with the seconds so far and an estimate of those left."""

    def __init__(self, total: int, stream=None, enabled: bool = True, unit: str = "workload"):
        self.total = total
        self.done = 0
        self._bar = ProgressBar(total, stream=stream, enabled=enabled, unit=unit)
        self.stream = self._bar.stream
        self.enabled = self._bar.enabled
        self.tty = self._bar.live
        self.t0 = time.perf_counter()
        self._last_group = None

    def eta(self) -> Optional[float]:
        """Seconds left at the mean pace so far (None before the first step)."""
        if self.done == 0:
            return None
        return (time.perf_counter() - self.t0) / self.done * (self.total - self.done)

    def update(self, group: str, what: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self._bar.set(self.done, f"{group}  {what}")
        elif group != self._last_group:
            eta = self.eta()
            left = "" if eta is None else f", ~{fmt_seconds(eta)} left"
            self._bar.line(f"[{self.done}/{self.total} {time.perf_counter() - self.t0:.0f} s{left}] {group}")
        self._last_group = group

    def line(self, text: str) -> None:
        """A log line above the bar (on stderr even with the display off: notices must be seen)."""
        if self.enabled:
            self._bar.line(text)
        else:
            import sys

            print(text, file=self.stream if self.stream is not None else sys.stderr, flush=True)

    def step(self) -> None:
        self.done += 1
        if self.tty:
            self._bar.set(self.done)

    def close(self) -> None:
        self._bar.close()


class Clock:
    """Seconds per category of :data:`TIME_CATEGORIES` (``with clock("checks"): ...``; nested
    sections count in the inner one only)."""

    def __init__(self):
        self.seconds: Dict[str, float] = {c: 0.0 for c in TIME_CATEGORIES}
        self._stack: List[Tuple[str, float]] = []
        self._t0 = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, category: str):
        now = time.perf_counter()
        if self._stack:  # pause the outer section
            outer, since = self._stack[-1]
            self.seconds[outer] += now - since
        self._stack.append((category, now))
        try:
            yield
        finally:
            name, since = self._stack.pop()
            now = time.perf_counter()
            self.seconds[name] += now - since
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], now)

    def add(self, category: str, seconds: float) -> None:
        self.seconds[category] += seconds

    def elapsed(self) -> float:
        """Seconds since the clock was made."""
        return time.perf_counter() - self._t0

    def summary(self, elapsed: Optional[float] = None) -> Dict[str, float]:
        """The seconds per category, ``other`` being the rest of ``elapsed`` (default: since created)."""
        out = dict(self.seconds)
        elapsed = time.perf_counter() - self._t0 if elapsed is None else elapsed
        out["other"] = max(0.0, elapsed - sum(v for k, v in out.items() if k != "other"))
        return out


def _error(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {msg}"[:200]


def run_benchmark(
    workloads: Sequence[Workload],
    *,
    backends: Optional[Sequence[str]] = None,
    mode: Mode = MODES["default"],
    progress_stream=None,
    progress: bool = True,
    clock: Optional[Clock] = None,
    compile_notice: Optional[str] = None,
) -> dict:
    """Check and time every selected backend on every workload.

    Returns ``{"bounds", "results", "time", "compile_s", "interrupted"}``: ``results`` a list of
    :class:`~fastnn.bench.results.ResultRow`; ``time`` the seconds per category of
    :data:`TIME_CATEGORIES`; ``compile_s`` the seconds Numba spent compiling (None where its
    event API is missing); ``interrupted`` whether Ctrl-C stopped the run early (the rows
    measured until then are returned).

    ``backends``: names to time (fastnn backends, ``"auto"``, the ground-truth backend,
    ``"torch"``); None means every registered backend plus torch when installed. The reference
    always runs the reduced shapes for the check, whether or not it is timed.
    ``compile_notice``: a line printed on stderr when Numba starts compiling for the first time.
    """
    wanted = None if backends is None else list(dict.fromkeys(backends))
    want = (lambda name: name != AUTO) if wanted is None else (lambda name: name in wanted)
    clock = clock if clock is not None else Clock()
    with clock("imports"):
        use_torch = want(TORCH) and torch_module() is not None
    prog = Progress(len(workloads), progress_stream, progress)
    notice = (lambda: prog.line(compile_notice)) if compile_notice else None
    ctx = _Context(mode, clock, prog, {"gemm_flops": {}, "gemm_n": GEMM_N, "copy_bytes_per_s": {},
                                       "copy_working_set": {}, "copy_threads": kernel_threads()})
    by_workload: Dict[int, List[ResultRow]] = {}
    interrupted = False
    with CompileClock(notice) as compiling:
        try:
            # The bounds are measured more than once and the best kept (a busy moment lowers a
            # measurement; a bound must not be too low): the GEMM peaks before the run, every
            # REMEASURE_S during it and after it; each copy size when first needed and after the run.
            ctx.measure_gemm(workloads)
            for i in _input_order(workloads):
                w = workloads[i]
                fast = [b for b in backends_for(w) if b != REF and want(b)]
                if want(AUTO) and backends_for(w):
                    fast = [AUTO] + fast
                if w.flops:
                    ctx.measure_gemm([w], older_than=REMEASURE_S)
                by_workload[i] = _run_workload(w, fast, want(REF), use_torch, ctx)
                prog.step()
            ctx.measure_gemm(workloads)
            ctx.remeasure_copies()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            prog.close()
    results = [r for i in sorted(by_workload) for r in by_workload[i]]  # (in the order asked)
    return {"bounds": ctx.bounds, "results": [_derive(r, ctx.bounds, results) for r in results],
            "time": clock.summary(), "compile_s": compiling.seconds if compiling.available else None,
            "compile_count": compiling.count if compiling.available else None, "interrupted": interrupted}


@dataclasses.dataclass
class _Context:
    mode: Mode
    clock: Clock
    prog: Progress
    bounds: dict
    _inputs: Optional[Tuple[tuple, tuple]] = None  # (key, (data, small data)) of the last workload

    def inputs(self, w: Workload, small: Workload) -> Tuple[tuple, tuple]:
        """The workload's inputs and its reduced version's, made once per :attr:`Workload.inputs_key`."""
        if self._inputs is None or self._inputs[0] != w.inputs_key:
            self._inputs = None  # (the last ones freed first)
            with self.clock("inputs"):
                self._inputs = (w.inputs_key, (w.make(), small.make()))
        return self._inputs[1]

    _gemm_at: Dict[str, float] = dataclasses.field(default_factory=dict)  # dtype -> when last measured

    def measure_gemm(self, workloads: Sequence[Workload], older_than: float = 0.0) -> None:
        """Raise the GEMM peaks to this measurement (same dtype, the threads in force, GEMM_N
        square), for the dtypes measured more than ``older_than`` seconds ago."""
        with self.clock("bounds"):
            peaks = self.bounds["gemm_flops"]
            for dt in sorted({w.dtype_name for w in workloads if w.flops}):
                if time.perf_counter() - self._gemm_at.get(dt, -math.inf) > older_than:
                    peaks[dt] = max(peaks.get(dt, 0.0), gemm_peak(np.dtype(dt)))
                    self._gemm_at[dt] = time.perf_counter()

    def remeasure_copies(self) -> None:
        """Raise each copy bandwidth measured so far to a second measurement."""
        with self.clock("bounds"):
            table = self.bounds["copy_bytes_per_s"]
            for key in list(table):
                table[key] = max(table[key], copy_bandwidth(float(key), threads=self.bounds["copy_threads"]))

    def copy_bound(self, w: Workload) -> float:
        """The copy bandwidth at the workload's working-set size (measured once per size)."""
        key = str(int(w.working_set))
        self.bounds["copy_working_set"][_row_key(w.op, w.shape, w.dtype_name)] = int(w.working_set)
        table = self.bounds["copy_bytes_per_s"]
        if key not in table:
            with self.clock("bounds"):
                table[key] = copy_bandwidth(float(key), threads=self.bounds["copy_threads"])
        return table[key]


def _row_key(op: str, shape: str, dtype: str) -> str:
    return f"{op} {shape} {dtype}"


def _input_order(workloads: Sequence[Workload]) -> List[int]:
    """The workloads' indices grouped by the inputs they make (each group in the order asked):
    the inputs are made once per group."""
    groups: Dict[tuple, List[int]] = {}
    for i, w in enumerate(workloads):
        groups.setdefault(w.inputs_key, []).append(i)
    return [i for group in groups.values() for i in group]


def _row(w: Workload, backend: str, **fields) -> ResultRow:
    return ResultRow(op=w.op, family=w.family, pass_=w.pass_, shape=w.shape, dims=w.dims, dtype=w.dtype_name,
                     backend=backend, flops=w.flops, bytes=w.bytes, **fields)


@dataclasses.dataclass(frozen=True)
class _GroundTruth:
    """The reference's run of a workload's reduced version: the outputs every backend is checked
    against, its time, and from it the estimate of the reference's time on the full shape."""

    small: Workload
    data: Optional[tuple] = None  # the reduced inputs (shared by every check)
    outputs: Optional[tuple] = None
    error: Optional[str] = None  # the reference itself raised: nothing can be checked
    seconds: Optional[float] = None
    estimate: Optional[float] = None

    def check(self, w: Workload, outputs) -> Optional[str]:
        """None when ``outputs`` (of the reduced workload) equal the reference's, else the MISMATCH note."""
        if self.outputs is None:
            err = "reference failed on the reduced shape"
        else:
            err = compare_outputs(outputs, self.outputs, w.dtype, w.output_names)
        return None if err is None else f"vs {REF} on {self.small.dims}: {err}"


def _ground_truth(w: Workload, small: Workload, data: tuple) -> _GroundTruth:
    try:
        fn = small.fastnn_call(REF, data)
        t0 = time.perf_counter()
        outputs = fn()
        seconds = time.perf_counter() - t0
    except Exception as exc:
        return _GroundTruth(small, data, error=_error(exc))
    return _GroundTruth(small, data, outputs, seconds=seconds, estimate=seconds * w.ref_units / small.ref_units)


@dataclasses.dataclass
class _Candidate:
    """A backend (or PyTorch) ready for the rounds: its call, a warm call's seconds, its row's fields."""

    name: str
    fn: Optional[Callable[[], object]] = None
    first_s: float = 0.0
    fields: Dict[str, object] = dataclasses.field(default_factory=dict)


def _resolved(w: Workload, data: tuple) -> Dict[str, str]:
    """op -> the backend ``auto`` runs it on for this workload's full-shape calls."""
    params = w.params(data)
    return {op: _dispatch.resolve_name(op, AUTO, params.get(op)) for op in w.required_ops}


@contextlib.contextmanager
def _auto_runs(chosen: Dict[str, str]):
    """``auto`` runs each op on ``chosen[op]`` meanwhile (a backend, or a planner's candidate such
    as a backend's variant): how ``auto`` is checked on the reduced shape with the kernels it
    picked for the full one (the reduced shape's own key may have another plan, or none)."""
    saved = _dispatch.get_planner()
    _dispatch.set_planner(lambda op, p: chosen.get(op))
    try:
        yield
    finally:
        _dispatch.set_planner(saved)


def _prepare_backend(w: Workload, backend: str, data: tuple, truth: _GroundTruth, ctx: _Context) -> _Candidate:
    """Check on the reduced shape (a MISMATCH is still timed), then one untimed warm-up call."""
    c = _Candidate(backend)
    try:
        with ctx.clock("checks"):
            t0 = time.perf_counter()
            if backend == AUTO:
                chosen = _resolved(w, data)
                names = list(dict.fromkeys(chosen.values()))
                c.fields["resolved"] = names[0] if len(names) == 1 else ", ".join(f"{op} {b}" for op, b in chosen.items())
                with _auto_runs(chosen):
                    outputs = truth.small.fastnn_call(AUTO, truth.data)()
            else:
                outputs = truth.small.fastnn_call(backend, truth.data)()
            err = truth.check(w, outputs)
            c.fields["check_s"] = time.perf_counter() - t0
        if err:
            c.fields.update(status="MISMATCH", note=err)
        c.fn = w.fastnn_call(backend, data)
        with ctx.clock("warm-up"):
            t0 = time.perf_counter()
            c.fn()
            c.first_s = c.fields["warmup_s"] = time.perf_counter() - t0
    except Exception as exc:
        c.fn = None
        c.fields.update(status="ERROR", note=_error(exc))
    return c


def _prepare_torch(w: Workload, data: tuple, truth: _GroundTruth, ctx: _Context) -> _Candidate:
    """PyTorch in its faster layout: each layout gets an untimed warm-up and a probe call; then
    the kept layout is checked on the reduced shape."""
    c = _Candidate(TORCH)
    try:
        best = None
        warm = 0.0
        layouts = w.torch_layouts()
        for layout in layouts:
            fn = w.torch_call(layout, data)[0]
            with ctx.clock("warm-up"):
                t0 = time.perf_counter()
                fn()
                warm += time.perf_counter() - t0
            with ctx.clock("torch layouts"):
                t0 = time.perf_counter()
                fn()
                t = time.perf_counter() - t0
            if best is None or t < best[2]:
                best = (layout, fn, t)
        layout, c.fn, c.first_s = best
        c.fields.update(layout=layout if len(layouts) > 1 else None, warmup_s=warm)
        with ctx.clock("checks"):
            t0 = time.perf_counter()
            small_fn, to_numpy = truth.small.torch_call(layout, truth.data)
            err = truth.check(w, to_numpy(small_fn()))
            c.fields["check_s"] = time.perf_counter() - t0
        if err:
            c.fields.update(status="MISMATCH", note=err)
    except Exception as exc:
        c.fn = None
        c.fields.update(status="ERROR", note=_error(exc))
    return c


def _run_workload(w: Workload, fast: List[str], time_ref: bool, use_torch: bool, ctx: _Context) -> List[ResultRow]:
    """The rows of one workload: the reference on the reduced shape, each backend checked and
    warmed up, then all timed in alternating rounds; the reference alone where it fits."""
    group = f"{w.op} {w.shape} {w.dtype_name}"
    prog, mode = ctx.prog, ctx.mode
    small = w.reduced()
    data, small_data = ctx.inputs(w, small)
    prog.update(group, f"{REF} (reduced {small.dims})")
    with ctx.clock("checks"):
        truth = _ground_truth(w, small, small_data)
    cands: List[_Candidate] = []
    for b in fast:
        prog.update(group, f"{b}: check, warm-up")
        cands.append(_prepare_backend(w, b, data, truth, ctx))
    if use_torch:
        prog.update(group, f"{TORCH}: layouts, check")
        cands.append(_prepare_torch(w, data, truth, ctx))
    if w.bytes:
        ctx.copy_bound(w)
    timed = {c.name: c for c in cands if c.fn is not None}
    prog.update(group, "alternating rounds")

    def failed_in_rounds(name, exc):
        timed[name].fields.update(status="ERROR", note=_error(exc))

    with ctx.clock("timed rounds"):
        times, calls = alternating_rounds({n: c.fn for n, c in timed.items()}, {n: c.first_s for n, c in timed.items()},
                                          min_rounds=mode.min_rounds, max_rounds=mode.max_rounds,
                                          target_s=mode.target_s, block_s=mode.block_s, settle_s=mode.settle_s,
                                          on_error=failed_in_rounds)
    torch_times = times.get(TORCH)
    rows = []
    for c in cands:
        t = times.get(c.name)
        if t:
            c.fields.update(Timing(t, calls[c.name]).as_dict())
            if torch_times and c.name != TORCH:
                stats = ratio_stats(torch_times, t)
                if stats is not None:
                    c.fields.update(speedup_vs_torch=stats[0], speedup_vs_torch_min=stats[1],
                                    speedup_vs_torch_max=stats[2])
        rows.append(_row(w, c.name, **c.fields))
    if time_ref:
        prog.update(group, f"{REF} (alone)")
        with ctx.clock("course loops"):
            rows.append(_time_reference(w, truth, data, mode))
    return rows


def _time_reference(w: Workload, truth: _GroundTruth, data: tuple, mode: Mode) -> ResultRow:
    """The reference on the full shape, where its estimated time is within the budget."""
    estimate = truth.estimate
    if truth.error is not None:
        return _row(w, REF, estimated_s=estimate, status="ERROR", note=truth.error)
    if estimate is not None and estimate > mode.ref_budget_s:
        return _row(w, REF, estimated_s=estimate, status=f"skipped (est. {fmt_seconds(estimate)})",
                    note=f"estimated from {truth.small.dims} ({fmt_seconds(truth.seconds)}); "
                         f"budget {fmt_seconds(mode.ref_budget_s)}")
    try:
        fn = w.fastnn_call(REF, data)
        warm = None
        if estimate is None or estimate < 0.2:  # (a slow call's first call is a sample already)
            t0 = time.perf_counter()
            fn()
            warm = time.perf_counter() - t0
        # The course loops take seconds per call on full shapes: one timed call is enough
        # there (a --full run would otherwise spend minutes per row on them).
        min_reps = mode.ref_min_reps if estimate is None or estimate < 1.0 else 1
        timing = time_callable(fn, target_s=mode.ref_target_s, min_reps=min_reps, max_reps=mode.ref_max_reps)
    except Exception as exc:
        return _row(w, REF, estimated_s=estimate, status="ERROR", note=_error(exc))
    return _row(w, REF, estimated_s=estimate, status="ref", warmup_s=warm, **timing.as_dict())


def _derive(r: ResultRow, bounds: dict, results: Sequence[ResultRow]) -> ResultRow:
    """``r`` with its rate, its bound and share of it (suspect above 100 %), and speed-ups
    against its workload's reference."""
    d: Dict[str, object] = dict(rate=None, rate_unit=None, bound=None, bound_rate=None, bound_s=None,
                                pct_of_bound=None, suspect=None, speedup_vs_reference=None,
                                speedup_vs_reference_estimated=False)
    if r.flops:
        peak = bounds["gemm_flops"].get(r.dtype)
        d.update(rate_unit="GFLOP/s", bound="gemm_peak")
        if peak:
            d.update(bound_rate=peak / 1e9, bound_s=r.flops / peak)
    elif r.bytes:
        ws = (bounds.get("copy_working_set") or {}).get(_row_key(r.op, r.shape, r.dtype), r.bytes)
        bw = bounds["copy_bytes_per_s"].get(str(int(ws)))
        d.update(rate_unit="GB/s", bound="copy_bandwidth")
        if bw:
            d.update(bound_rate=bw / 1e9, bound_s=r.bytes / bw)
    med = r.median_s
    if med:
        work = r.flops or r.bytes
        if work:
            d["rate"] = work / med / 1e9
        if d["bound_s"]:
            d["pct_of_bound"] = pct = 100.0 * d["bound_s"] / med
            if pct > SUSPECT_PCT:
                what = "GEMM peak" if d["bound"] == "gemm_peak" else "copy bandwidth"
                d["suspect"] = (f"{pct:.0f}% of the {what}: faster than the bound it is measured against, "
                                f"so the bound or the work counted does not describe this kernel")
                if d["bound"] == "copy_bandwidth":
                    d["suspect"] += (" (a copy's writes also read each line first, write-allocate, which a "
                                     "kernel that reads far more than it writes mostly avoids)")
        for x in results:
            if x.workload_key == r.workload_key and x.backend == REF and x is not r:
                if x.median_s:
                    d["speedup_vs_reference"] = x.median_s / med
                elif x.estimated_s:
                    d["speedup_vs_reference"] = x.estimated_s / med
                    d["speedup_vs_reference_estimated"] = True
    return r.replace(**d)


def failed(results: Sequence[ResultRow]) -> List[ResultRow]:
    """The rows that make the run fail: MISMATCH or ERROR."""
    return [r for r in results if r.failed]
