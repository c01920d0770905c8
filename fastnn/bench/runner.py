"""Runs the benchmark: check each backend against the reference on a reduced shape, then time it.

For every workload (op x shape x dtype, see :mod:`fastnn.bench.workloads`):

1. the reference backend (the course's loops) runs the REDUCED workload once: its outputs
   are the ground truth of the check and its time, scaled by the loop count, estimates
   what the reference would need on the full shape;
2. every other registered backend having the ops runs the reduced workload and is compared
   with the reference (status ``MISMATCH`` if anything differs, ``ERROR`` if it raised), then
   gets an untimed warm-up call on the full shape (compilation excluded) and is timed;
3. the reference is timed on the full shape when the estimate is within the budget, else
   reported as ``skipped (est. <its estimated time>)``;
4. PyTorch (when installed) is checked the same way and timed in its faster layout (the
   layout conversion of the inputs is done before timing).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .._progress import ProgressBar
from .results import ResultRow
from .timing import gemm_peak, memory_bandwidth, time_callable
from .workloads import REF, TORCH, Workload, all_workloads, backends_for, compare_outputs, op_names, shape_names, torch_module

__all__ = ["Mode", "MODES", "select_workloads", "run_benchmark", "failed", "Progress", "fmt_seconds"]


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    target_s: float  # about this long timing one backend on one workload
    min_reps: int
    max_reps: int
    ref_budget_s: float  # time the reference on the full shape only if estimated within this
    gemm_n: int = 1024  # the square measured for the GEMM peak
    copy_mib: int = 64  # the array copied for the memory bandwidth


MODES: Dict[str, Mode] = {
    "quick": Mode("quick", target_s=0.02, min_reps=3, max_reps=10, ref_budget_s=0.25,
                  gemm_n=512, copy_mib=32),
    "default": Mode("default", target_s=0.1, min_reps=3, max_reps=50, ref_budget_s=0.5),
    "full": Mode("full", target_s=1.0, min_reps=10, max_reps=500, ref_budget_s=20.0,
                 gemm_n=2048, copy_mib=256),
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
    """Benchmark progress on the one progress display (:mod:`fastnn._progress`, stderr): a bar
    over the workloads on a terminal, one line per group of workloads otherwise."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total = total
        self.done = 0
        self._bar = ProgressBar(total, stream=stream, enabled=enabled, unit="workload")
        self.stream = self._bar.stream
        self.enabled = self._bar.enabled
        self.tty = self._bar.live
        self.t0 = time.perf_counter()
        self._last_group = None

    def update(self, group: str, what: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self._bar.set(self.done, f"{group}  {what}")
        elif group != self._last_group:
            self._bar.line(f"[{self.done}/{self.total} {time.perf_counter() - self.t0:.0f}s] {group}")
        self._last_group = group

    def step(self) -> None:
        self.done += 1

    def close(self) -> None:
        self._bar.close()


def _measure(fn: Callable[[], object], mode: Mode, warmup: bool = True) -> dict:
    """Timing of ``fn`` as a dict, with ``warmup_s``: the untimed first call (JIT compilation, first touch)."""
    t_warm = None
    if warmup:
        t0 = time.perf_counter()
        fn()
        t_warm = time.perf_counter() - t0
    timing = time_callable(fn, target_s=mode.target_s, min_reps=mode.min_reps, max_reps=mode.max_reps)
    return {**timing.as_dict(), "warmup_s": t_warm}


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
) -> dict:
    """Check and time every selected backend on every workload. Returns ``{"bounds", "results"}``,
    the results a list of :class:`~fastnn.bench.results.ResultRow`.

    ``backends``: names to time (fastnn backends, the ground-truth backend, ``"torch"``); None means
    every registered backend plus torch when installed. The reference always runs the
    reduced shapes for the check, whether or not it is timed.
    """
    wanted = None if backends is None else list(dict.fromkeys(backends))
    want = (lambda name: True) if wanted is None else (lambda name: name in wanted)
    use_torch = torch_module() is not None and want(TORCH)

    # The machine's bounds are measured before and after the run, the best kept (a busy
    # machine lowers one of the two measurements; a bound must not be too low).
    bounds: Dict[str, object] = {"gemm_flops": {}, "mem_bytes_per_s": None}
    _measure_bounds(bounds, workloads, mode)
    plan = [(w, [b for b in backends_for(w) if b != REF and want(b)]) for w in workloads]
    total = sum(len(fast) + (1 if want(REF) else 0) + (1 if use_torch else 0) for _, fast in plan)
    prog = Progress(total, progress_stream, progress)
    results: List[ResultRow] = []
    try:
        for w, fast in plan:
            group = f"{w.op} {w.shape} {w.dtype_name}"
            results.extend(_run_workload(w, fast, want(REF), use_torch, mode, prog, group))
    finally:
        prog.close()
    _measure_bounds(bounds, workloads, mode)
    return {"bounds": bounds, "results": [_derive(r, bounds, results) for r in results]}


def _measure_bounds(bounds: dict, workloads: Sequence[Workload], mode: Mode) -> None:
    """Raise ``bounds`` to this measurement of the GEMM peaks and the memory bandwidth the workloads need."""
    for dt in sorted({w.dtype_name for w in workloads if w.flops}):
        bounds["gemm_flops"][dt] = max(bounds["gemm_flops"].get(dt, 0.0), gemm_peak(np.dtype(dt), n=mode.gemm_n))
    if any(w.bytes for w in workloads):
        bounds["mem_bytes_per_s"] = max(bounds["mem_bytes_per_s"] or 0.0, memory_bandwidth(mode.copy_mib * 2 ** 20))


def _row(w: Workload, backend: str, **fields) -> ResultRow:
    return ResultRow(op=w.op, family=w.family, pass_=w.pass_, shape=w.shape, dims=w.dims, dtype=w.dtype_name,
                     backend=backend, flops=w.flops, bytes=w.bytes, **fields)


@dataclasses.dataclass(frozen=True)
class _GroundTruth:
    """The reference's run of a workload's reduced version: the outputs every backend is checked
    against, its time, and from it the estimate of the reference's time on the full shape."""

    small: Workload
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


def _ground_truth(w: Workload, small: Workload) -> _GroundTruth:
    try:
        fn = small.fastnn_call(REF)
        t0 = time.perf_counter()
        outputs = fn()
        seconds = time.perf_counter() - t0
    except Exception as exc:
        return _GroundTruth(small, error=_error(exc))
    return _GroundTruth(small, outputs, seconds=seconds, estimate=seconds * w.ref_units / small.ref_units)


def _run_workload(w: Workload, fast: List[str], time_ref: bool, use_torch: bool, mode: Mode, prog: Progress,
                  group: str) -> List[ResultRow]:
    """The rows of one workload: the reference on the reduced shape, then each backend checked and timed."""
    small = w.reduced()
    prog.update(group, f"{REF} (reduced {small.dims})")
    truth = _ground_truth(w, small)
    steps: List[Tuple[str, Callable[[], ResultRow]]] = [
        (b, functools.partial(_time_backend, w, b, truth, mode)) for b in fast]
    if time_ref:
        steps.append((REF, functools.partial(_time_reference, w, truth, mode)))
    if use_torch:
        steps.append((TORCH, functools.partial(_time_torch, w, truth, mode)))
    rows = []
    for name, step in steps:
        prog.update(group, name)
        rows.append(step())
        prog.step()
    return rows


def _time_backend(w: Workload, backend: str, truth: _GroundTruth, mode: Mode) -> ResultRow:
    """A fastnn backend: checked on the reduced shape (MISMATCH is still timed), then warmed up and timed."""
    fields: Dict[str, object] = {}
    try:
        err = truth.check(w, truth.small.fastnn_call(backend)())
        if err:
            fields.update(status="MISMATCH", note=err)
        fields.update(_measure(w.fastnn_call(backend), mode))
    except Exception as exc:
        fields.update(status="ERROR", note=_error(exc))
    return _row(w, backend, **fields)


def _time_reference(w: Workload, truth: _GroundTruth, mode: Mode) -> ResultRow:
    """The reference on the full shape, where its estimated time is within the budget."""
    estimate = truth.estimate
    if truth.error is not None:
        return _row(w, REF, estimated_s=estimate, status="ERROR", note=truth.error)
    if estimate is not None and estimate > mode.ref_budget_s:
        return _row(w, REF, estimated_s=estimate, status=f"skipped (est. {fmt_seconds(estimate)})",
                    note=f"estimated from {truth.small.dims} ({fmt_seconds(truth.seconds)}); "
                         f"budget {fmt_seconds(mode.ref_budget_s)}")
    try:
        # The course loops take seconds per call on full shapes: one timed call is enough
        # there (a --full run would otherwise spend minutes per row on them).
        ref_mode = mode if estimate is None or estimate < 1.0 else dataclasses.replace(mode, min_reps=1)
        timing = _measure(w.fastnn_call(REF), ref_mode, warmup=estimate is not None and estimate < 0.2)
    except Exception as exc:
        return _row(w, REF, estimated_s=estimate, status="ERROR", note=_error(exc))
    return _row(w, REF, estimated_s=estimate, status="ref", **timing)


def _fastest_torch_layout(w: Workload) -> Tuple[str, Callable[[], object], float, float]:
    """(layout, fn, seconds of one call, seconds of the warm-ups): each layout gets an untimed
    warm-up and one timed call, and the faster is kept."""
    best = None
    t_warm = 0.0
    for layout in w.torch_layouts():
        fn = w.torch_call(layout)[0]
        t0 = time.perf_counter()
        fn()
        t_warm += time.perf_counter() - t0
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        if best is None or t < best[2]:
            best = (layout, fn, t)
    return best[0], best[1], best[2], t_warm


def _time_torch(w: Workload, truth: _GroundTruth, mode: Mode) -> ResultRow:
    """PyTorch in its faster layout (the probe call serving as the calibration call), checked
    in the layout that was timed."""
    fields: Dict[str, object] = {}
    try:
        layout, fn, t_call, t_warm = _fastest_torch_layout(w)
        fields["layout"] = layout if len(w.torch_layouts()) > 1 else None
        timing = time_callable(fn, target_s=mode.target_s, min_reps=mode.min_reps,
                               max_reps=mode.max_reps, calibration=t_call)
        fields.update(timing.as_dict(), warmup_s=t_warm)
        small_fn, to_numpy = truth.small.torch_call(layout)
        err = truth.check(w, to_numpy(small_fn()))
        if err:
            fields.update(status="MISMATCH", note=err)
    except Exception as exc:
        fields.update(status="ERROR", note=_error(exc))
    return _row(w, TORCH, **fields)


def _derive(r: ResultRow, bounds: dict, results: Sequence[ResultRow]) -> ResultRow:
    """``r`` with its rate, % of the bound and speed-ups (against its workload's reference and torch rows)."""
    d: Dict[str, object] = dict(rate=None, rate_unit=None, bound_s=None, pct_of_bound=None, speedup_vs_reference=None,
                                speedup_vs_reference_estimated=False, speedup_vs_torch=None)
    if r.flops:
        peak = bounds["gemm_flops"].get(r.dtype)
        d["rate_unit"] = "GFLOP/s"
        d["bound_s"] = r.flops / peak if peak else None
    elif r.bytes:
        bw = bounds["mem_bytes_per_s"]
        d["rate_unit"] = "GB/s"
        d["bound_s"] = r.bytes / bw if bw else None
    med = r.median_s
    if med:
        work = r.flops or r.bytes
        if work:
            d["rate"] = work / med / 1e9
        if d["bound_s"]:
            d["pct_of_bound"] = 100.0 * d["bound_s"] / med
        for x in results:
            if x.workload_key != r.workload_key:
                continue
            if x.backend == REF:
                if x.median_s:
                    d["speedup_vs_reference"] = x.median_s / med
                elif x.estimated_s:
                    d["speedup_vs_reference"] = x.estimated_s / med
                    d["speedup_vs_reference_estimated"] = True
            elif x.backend == TORCH and x.median_s:
                d["speedup_vs_torch"] = x.median_s / med
    return r.replace(**d)


def failed(results: Sequence[ResultRow]) -> List[ResultRow]:
    """The rows that make the run fail: MISMATCH or ERROR."""
    return [r for r in results if r.failed]
