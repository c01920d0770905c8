"""Tables (text, Markdown), JSON reading, comparison with an earlier run, and the plot.

Everything here reads :class:`~fastnn.bench.results.ResultRow` records.

* The text table (:func:`format_text`) fits a terminal of ``WIDTH`` columns: one section per op
  (its rate unit and its bound named in the section's title), the shapes' dimensions once in a
  legend, optional columns dropped when a line would be wider; the reference's skipped rows
  are hidden unless asked for.
* The comparison (:func:`attach_comparison`) calls a change slower or faster only when it lies
  beyond the range of both runs' repeats and beyond a noise floor (:func:`verdict`), PyTorch's
  rows serving as a control for the host's drift between runs, and
  :func:`environment_differences` lists what differs between the runs' machines, threads,
  versions, environment switches and modes.
* The plot (:func:`plot`) shows each backend's share of the machine's bound per op and shape.
"""

from __future__ import annotations

import json
import textwrap
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .results import ResultRow
from .workloads import REF, TORCH

__all__ = [
    "WIDTH",
    "NOISE_FLOOR",
    "BOUND_NAMES",
    "format_text",
    "format_markdown",
    "load_json",
    "load_run",
    "verdict",
    "attach_comparison",
    "comparison_summary",
    "environment_differences",
    "plot",
]

#: The text table's lines are at most this wide.
WIDTH = 100
#: Below this relative change no verdict other than "same" is given, whatever the spreads.
NOISE_FLOOR = 0.05
#: A verdict needs at least this many repeats (rounds) in both runs.
MIN_REPEATS = 3
#: bound key -> (short column name, what it is)
BOUND_NAMES = {
    "gemm_peak": ("%GEMM", "GEMM peak"),
    "copy_bandwidth": ("%copy", "copy bandwidth"),
}


# ------------------------------------------------------------------------ cells


def _ms(s: Optional[float]) -> str:
    if s is None:
        return "-"
    ms = s * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    if ms >= 0.01:
        return f"{ms:.3f}"
    return f"{ms:.2g}"


def _x(v: Optional[float], estimated: bool = False, suffix: str = "x") -> str:
    if v is None:
        return "-"
    s = f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
    return ("~" if estimated else "") + s + suffix


def _num(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.3f}"


def _spread(r: ResultRow) -> str:
    """Half the inter-quartile range of the repeats, relative to the median."""
    if r.p75_s is None or r.p25_s is None or not r.median_s:
        return "-"
    return f"{50.0 * (r.p75_s - r.p25_s) / r.median_s:.0f}%"


def _pct(r: ResultRow) -> str:
    if r.pct_of_bound is None:
        return "-"
    return f"{r.pct_of_bound:.0f}%" + ("?" if r.suspect else "")


def _vs_torch(r: ResultRow) -> str:
    v = r.speedup_vs_torch
    if v is None:
        return "-"
    if r.speedup_vs_torch_min is None or r.speedup_vs_torch_max is None:
        return _x(v, suffix="")
    return f"{_x(v, suffix='')} ({_x(r.speedup_vs_torch_min, suffix='')}-{_x(r.speedup_vs_torch_max, suffix='')})"


def _backend(r: ResultRow, short: bool = True) -> str:
    if r.layout:
        layout = {"channels_last": "CL"}.get(r.layout, r.layout) if short else r.layout
        return f"{r.backend}[{layout}]"
    if r.resolved:
        return f"{r.backend}:{r.resolved}" if "," not in r.resolved else f"{r.backend}:mixed"
    return r.backend


def _dtype(r: ResultRow) -> str:
    return {"float32": "f32", "float64": "f64"}.get(r.dtype, r.dtype)


def _status(r: ResultRow) -> str:
    return f"{r.status} !!" if r.failed and r.note else r.status


_MARKS = {"slower": "SLOWER", "faster": "faster", "same": "~", "unknown": "?"}


def _ratio(r: ResultRow) -> str:
    if r.ratio_vs_old is None:
        return "new" if r.median_s else "-"
    return f"{r.ratio_vs_old:.2f} {_MARKS.get(r.verdict, '')}".rstrip()


# ------------------------------------------------------------------------ text


#: (name, header, right-aligned, dropped first when too wide: a higher number is dropped earlier)
_TEXT_COLUMNS = [
    ("shape", "shape", False, 0),
    ("dtype", "dt", False, 0),
    ("backend", "backend", False, 0),
    ("ms", "ms", True, 0),
    ("spread", "±", True, 2),
    ("rate", "rate", True, 1),
    ("pct", "%bound", True, 0),
    ("torch", "vs torch (range)", True, 0),
    ("ref", "vs ref", True, 3),
    ("old", "new/old", False, 0),
    ("status", "status", False, 0),
]


def _text_cells(r: ResultRow) -> Dict[str, str]:
    return {"shape": r.shape, "dtype": _dtype(r), "backend": _backend(r), "ms": _ms(r.median_s), "spread": _spread(r),
            "rate": _num(r.rate), "pct": _pct(r), "torch": _vs_torch(r),
            "ref": _x(r.speedup_vs_reference, r.speedup_vs_reference_estimated), "old": _ratio(r),
            "status": _status(r)}


def _visible(results: Sequence[ResultRow], show_skipped: bool) -> List[ResultRow]:
    return [r for r in results if show_skipped or not r.skipped]


def _wrap(text: str, width: int = WIDTH, indent: str = "") -> List[str]:
    return textwrap.wrap(text, width=width, subsequent_indent=indent or "  ", break_on_hyphens=False) or [""]


def _legend(results: Sequence[ResultRow], width: int) -> List[str]:
    """The shapes' dimensions, once: conv ``m x H x W x C f K s p``, pool ``m x H x W x C f s``."""
    by_kind: Dict[str, Dict[str, str]] = {}
    for r in results:
        kind = "conv" if r.family == "conv" else "pool" if r.family.endswith("pool") else r.family
        by_kind.setdefault(kind, {}).setdefault(r.shape, r.dims)
    heads = {"conv": "conv shapes (m x H x W x C, window, K out, stride, pad)",
             "pool": "pool shapes (m x H x W x C, window, stride)", "dense": "dense (layer sizes, examples)"}
    out = []
    for kind, shapes in by_kind.items():
        items = "; ".join(f"{s} {d}" for s, d in shapes.items())
        out += _wrap(f"{heads.get(kind, kind)}: {items}", width)
    return out


def format_text(results: Sequence[ResultRow], compare: bool = False, show_skipped: bool = False,
                width: int = WIDTH) -> str:
    """The table for a terminal: no line wider than ``width``."""
    shown = _visible(results, show_skipped)
    cols = [c for c in _TEXT_COLUMNS if compare or c[0] != "old"]
    cells = [_text_cells(r) for r in shown]
    sections: Dict[str, List[int]] = {}
    for i, r in enumerate(shown):
        sections.setdefault(r.op, []).append(i)

    def widths(columns):
        return {name: max([len(head)] + [len(c[name]) for c in cells]) for name, head, _, _ in columns}

    # drop optional columns (highest number first) until a row fits
    while True:
        w = widths(cols)
        total = sum(w.values()) + 2 * (len(cols) - 1)
        droppable = [c for c in cols if c[3] > 0]
        if total <= width or not droppable:
            break
        cols.remove(max(droppable, key=lambda c: c[3]))
    w = widths(cols)

    def line(values: Dict[str, str], header=False) -> str:
        parts = []
        for name, head, right, _ in cols:
            v = head if header else values[name]
            if name == "pct" and header:
                v = values.get("pct_head", head)
            parts.append(v.rjust(w[name]) if right else v.ljust(w[name]))
        return "  ".join(parts).rstrip()[:width]

    out: List[str] = _legend(shown, width)
    for op, idx in sections.items():
        first = shown[idx[0]]
        short, long = BOUND_NAMES.get(first.bound or "", ("%bound", "bound"))
        unit = first.rate_unit or "-"
        out.append("")
        out += _wrap(f"{op}: rate in {unit}, {short} = share of the {long}", width)
        head = {"pct_head": short}
        out.append(line(head, header=True))
        out.append(line({name: "-" * w[name] for name, *_ in cols}))
        for i in idx:
            out.append(line(cells[i]))
    return "\n".join(out)


def footnotes(results: Sequence[ResultRow], show_skipped: bool = False, width: int = WIDTH) -> List[str]:
    """What the table's marks mean, what it hides, and the failures' notes (wrapped to ``width``)."""
    out: List[str] = []
    suspect = [r for r in results if r.suspect]
    if suspect:
        out += _wrap(f"?: {len(suspect)} row(s) above 100% of their bound, which a kernel cannot beat: the bound "
                     "or the work counted does not describe that kernel (suspect; see 'suspect' in the JSON)", width)
    mixed = [r for r in results if r.resolved and "," in r.resolved]
    for r in mixed:
        out += _wrap(f"auto:mixed {r.op} {r.shape} {r.dtype}: {r.resolved}", width)
    hidden = [r for r in results if r.skipped and not show_skipped]
    if hidden:
        out += _wrap(f"{len(hidden)} skipped {REF} row(s) hidden (their estimated time is over the budget; "
                     "--show-skipped lists them; vs ref marked ~ is against such an estimate)", width)
    for r in results:
        if r.note and r.failed:
            out += _wrap(f"{r.status}: {r.op} {r.shape} {r.dtype} {r.backend}: {r.note}", width)
    return out


# -------------------------------------------------------------------- markdown


def format_markdown(results: Sequence[ResultRow], compare: bool = False, header: Optional[dict] = None,
                    show_skipped: bool = False) -> str:
    shown = _visible(results, show_skipped)
    cols = ["op", "shape", "dims", "dtype", "backend", "median ms", "± (IQR/2 of median)", "rate", "unit", "% of GEMM peak",
            "% of copy bandwidth", "vs torch (median, range)", "vs ref"] + (["new/old"] if compare else []) + ["status"]
    right = {"median ms", "± (IQR/2 of median)", "rate", "% of GEMM peak", "% of copy bandwidth", "vs torch (median, range)",
             "vs ref", "new/old"}
    out = []
    if header:
        out.append("# fastnn bench")
        out.append("")
        for k, v in header.items():
            out.append(f"- **{k}**: {v}")
        out.append("")
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "|".join("---:" if c in right else "---" for c in cols) + "|")
    for r in shown:
        gemm = _pct(r) if r.bound == "gemm_peak" else "-"
        copy = _pct(r) if r.bound == "copy_bandwidth" else "-"
        row = [r.op, r.shape, r.dims, r.dtype, _backend(r, short=False), _ms(r.median_s),
               _spread(r), _num(r.rate), r.rate_unit or "-", gemm, copy,
               _vs_torch(r), _x(r.speedup_vs_reference, r.speedup_vs_reference_estimated)]
        if compare:
            row.append(_ratio(r))
        row.append(_status(r))
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    notes = footnotes(results, show_skipped, width=10 ** 6)
    if notes:
        out.append("")
        out += [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ comparison


def load_run(path: str) -> Tuple[dict, List[ResultRow]]:
    """(the document, its result rows) of a ``fastnn bench --json`` file; ValueError if it is not one."""
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError(f"{path} is not a fastnn bench JSON file (no 'results' list)")
    try:
        return data, [ResultRow.from_dict(r) for r in data["results"]]
    except ValueError as exc:
        raise ValueError(f"{path} is not a fastnn bench JSON file ({exc})") from None


def load_json(path: str) -> List[ResultRow]:
    """The result rows of a ``fastnn bench --json`` file; ValueError if it is not one."""
    return load_run(path)[1]


def _interval(r: ResultRow) -> Tuple[float, float]:
    """The range of a row's repeats (min, max); the median alone where they are unknown."""
    lo = r.min_s if r.min_s is not None else r.median_s
    hi = r.max_s if r.max_s is not None else r.median_s
    return lo, hi


def _rel_spread(r: ResultRow) -> float:
    """The range of a row's repeats relative to its median (0 where unknown)."""
    lo, hi = _interval(r)
    return max(0.0, (hi - lo) / r.median_s) if r.median_s else 0.0


def verdict(new: ResultRow, old: ResultRow, noise: float = NOISE_FLOOR) -> Tuple[Optional[str], Optional[float]]:
    """(verdict, threshold) of ``new`` against ``old``: ``"slower"`` or ``"faster"`` only when the
    new range of repeats (min-max) lies wholly beyond the old one *and* the ratio of the medians
    is beyond ``1 + threshold`` (``threshold`` = the larger of ``noise`` and the two runs'
    ranges relative to their medians, added); ``"same"`` otherwise; ``"unknown"`` when either
    run has fewer than ``MIN_REPEATS`` repeats (a spread cannot be told); (None, None) when one
    was not timed. (Between two runs a shared host can drift by more than either run's spread:
    :func:`comparison_summary` checks PyTorch's rows, which no fastnn change can move.)"""
    if not new.median_s or not old.median_s:
        return None, None
    if (new.repeats or 0) < MIN_REPEATS or (old.repeats or 0) < MIN_REPEATS:
        return "unknown", None
    threshold = max(noise, _rel_spread(new) + _rel_spread(old))
    ratio = new.median_s / old.median_s
    (new_lo, new_hi), (old_lo, old_hi) = _interval(new), _interval(old)
    if ratio > 1 + threshold and new_lo > old_hi:
        return "slower", threshold
    if ratio < 1 / (1 + threshold) and new_hi < old_lo:
        return "faster", threshold
    return "same", threshold


def attach_comparison(results: Sequence[ResultRow], old: Sequence[ResultRow], noise: float = NOISE_FLOOR
                      ) -> List[ResultRow]:
    """``results`` with ``old_median_s``, ``ratio_vs_old`` (new / old median; > 1 is slower) and the
    :func:`verdict` against the earlier run's rows."""
    before: Dict[tuple, ResultRow] = {o.key: o for o in old}
    out = []
    for r in results:
        o = before.get(r.key)
        old_median = o.median_s if o else None
        ratio = (r.median_s / old_median) if r.median_s and old_median else None
        v, threshold = verdict(r, o, noise) if o is not None else (None, None)
        out.append(r.replace(old_median_s=old_median, ratio_vs_old=ratio, verdict=v, threshold=threshold,
                             compared=True))
    return out


def comparison_summary(results: Sequence[ResultRow], width: int = WIDTH) -> str:
    compared = [r for r in results if r.ratio_vs_old is not None]
    count = {v: [r for r in compared if r.verdict == v] for v in ("slower", "faster", "same", "unknown")}
    lines = _wrap(f"compared with the earlier run: {len(compared)} results, {len(count['slower'])} SLOWER and "
                  f"{len(count['faster'])} faster beyond the noise (both runs' ranges of repeats, at least "
                  f"{NOISE_FLOOR * 100:.0f}%), {len(count['same'])} the same within it, {len(count['unknown'])} "
                  f"with too few repeats to tell", width)
    control = [r for r in compared if r.backend == TORCH]
    moved = [r for r in control if r.verdict in ("slower", "faster")]
    if moved:
        ratios = sorted(r.ratio_vs_old for r in control)
        lines += _wrap(f"warning: {len(moved)} of PyTorch's {len(control)} rows, which no fastnn change can move, "
                       f"changed too (new/old {ratios[0]:.2f}-{ratios[-1]:.2f}, median "
                       f"{ratios[len(ratios) // 2]:.2f}): the host's speed drifted between the runs, so the "
                       "verdicts above mix that drift with the change; rerun both, or compare ratios within "
                       "one run", width)
    for r in sorted(count["slower"], key=lambda r: -r.ratio_vs_old):
        lines += _wrap(f"  SLOWER x{r.ratio_vs_old:.2f} (noise {r.threshold * 100:.0f}%)  {r.op} {r.shape} "
                       f"{r.dtype} {_backend(r)}: {_ms(r.old_median_s)} -> {_ms(r.median_s)} ms", width, "    ")
    return "\n".join(lines)


def _blas(threads: Mapping) -> Optional[str]:
    blas = threads.get("blas")
    if not isinstance(blas, list):
        return None
    return ", ".join(f"{d.get('internal_api')} {d.get('num_threads')}" for d in blas)


def environment_differences(old: Mapping, new: Mapping, drift: float = 0.15) -> List[str]:
    """What differs between two runs' documents that makes their times hard to compare: the
    machine, the thread counts, the versions, the environment switches, the mode, and a GEMM
    peak that moved by more than ``drift`` (the host's speed itself changed)."""
    out: List[str] = []

    def differ(what, a, b):
        if a != b:
            out.append(f"{what}: {a!r} before, {b!r} now")

    om, nm = old.get("machine") or {}, new.get("machine") or {}
    for k in ("cpu", "cpu_count", "machine"):
        if k in om and k in nm:
            differ(f"machine {k}", om[k], nm[k])
    ot, nt = old.get("threads") or {}, new.get("threads") or {}
    for k in ("numba", "torch"):
        if ot.get(k) is not None and nt.get(k) is not None:
            differ(f"{k} threads", ot[k], nt[k])
    if _blas(ot) is not None and _blas(nt) is not None:
        differ("BLAS threads", _blas(ot), _blas(nt))
    ov, nv = old.get("versions") or {}, new.get("versions") or {}
    for k in sorted(set(ov) & set(nv)):
        differ(f"{k} version", ov[k], nv[k])
    if "env" in old and "env" in new:
        oe, ne = old["env"] or {}, new["env"] or {}
        for k in sorted(set(oe) | set(ne)):
            differ(f"${k}", oe.get(k), ne.get(k))
    elif "env" in new and new["env"]:
        out.append("the earlier run did not record its environment switches (now: "
                   + ", ".join(f"{k}={v}" for k, v in new["env"].items()) + ")")
    om_, nm_ = (old.get("mode") or {}).get("name"), (new.get("mode") or {}).get("name")
    if om_ and nm_ and om_ != nm_:
        out.append(f"mode: {om_} before, {nm_} now (their rounds and repeats differ)")
    og, ng = (old.get("bounds") or {}).get("gemm_flops") or {}, (new.get("bounds") or {}).get("gemm_flops") or {}
    for dt in sorted(set(og) & set(ng)):
        if og[dt] and ng[dt] and abs(ng[dt] / og[dt] - 1) > drift:
            out.append(f"the {dt} GEMM peak moved from {og[dt] / 1e9:.0f} to {ng[dt] / 1e9:.0f} GFLOP/s: the host "
                       "was busier in one run or is another machine; read ratios within one run")
    return out


# ------------------------------------------------------------------------ plot


def _plot_panels(results: Sequence[ResultRow]) -> Dict[str, List[ResultRow]]:
    panels: Dict[str, List[ResultRow]] = {}
    for r in results:
        if r.pct_of_bound is not None and r.backend != REF:
            panels.setdefault(r.op, []).append(r)
    return panels


def plot(results: Sequence[ResultRow], path, format: Optional[str] = None) -> str:
    """Each backend's share of the machine's bound, per op (a panel) and shape and dtype (a row).

    Horizontal bars, one per fastnn backend, from 0 to its share of the bound (the GEMM peak for
    convolutions and dense layers, the copy bandwidth at the kernel's working-set size for
    pooling); PyTorch as a black diamond on the same row; a dashed line at 100 %; a share above
    100 % (suspect) drawn with a red edge and a '?'. The reference (the course's loops) is left
    out: its share is below a tenth of a percent, and most of its times are estimates. Needs
    matplotlib (raises ImportError). ``path``: a file name or a binary file object (``format``:
    the image type, by default from the name). Returns a one-line description of what was plotted.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = _plot_panels(results)
    if not panels:
        raise ValueError("nothing to plot: no result has a share of a measured bound")
    ops = list(panels)
    fast = list(dict.fromkeys(r.backend for rows in panels.values() for r in rows if r.backend != TORCH))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    color = {b: palette[i % len(palette)] for i, b in enumerate(fast)}
    have_torch = any(r.backend == TORCH for rows in panels.values() for r in rows)

    def rows_of(op):
        return list(dict.fromkeys((r.shape, r.dtype) for r in panels[op]))

    ncols = 2 if len(ops) > 1 else 1
    grid = [ops[i:i + ncols] for i in range(0, len(ops), ncols)]
    heights = [max(len(rows_of(op)) for op in line) + 1.6 for line in grid]
    fig, axes = plt.subplots(len(grid), ncols, figsize=(7.2 * ncols, 0.42 * sum(heights) + 1.2), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    xmax = max(110.0, max(r.pct_of_bound for rows in panels.values() for r in rows) * 1.08)
    suspect = False
    for line, axrow in zip(grid, axes):
        for op, ax in zip(line, axrow):
            ylabels = rows_of(op)
            by = {(r.shape, r.dtype, r.backend): r for r in panels[op]}
            names = [b for b in fast if any(k[2] == b for k in by)]
            h = 0.8 / max(len(names), 1)
            for i, (shape, dt) in enumerate(ylabels):
                for j, b in enumerate(names):
                    r = by.get((shape, dt, b))
                    if r is None:
                        continue
                    y = i - 0.4 + h * (j + 0.5)
                    v = r.pct_of_bound
                    edge = "red" if r.suspect else "none"
                    suspect = suspect or bool(r.suspect)
                    ax.barh(y, v, height=h * 0.92, color=color[b], edgecolor=edge, linewidth=1.2 if r.suspect else 0)
                    ax.text(v + xmax * 0.006, y, f"{v:.0f}%" + ("?" if r.suspect else ""), va="center", fontsize=7,
                            color="red" if r.suspect else "#333333")
                t = by.get((shape, dt, TORCH))
                if t is not None:
                    suspect = suspect or bool(t.suspect)
                    ax.plot([t.pct_of_bound], [i], marker="D", markersize=5.5, linestyle="none",
                            color="red" if t.suspect else "black", markeredgecolor="white", markeredgewidth=0.8)
                    if t.suspect:  # (below the marker: the bars' labels are at its height)
                        ax.text(t.pct_of_bound, i + 0.42, f"torch {t.pct_of_bound:.0f}%?", ha="center",
                                va="bottom", fontsize=6.5, color="red")
            ax.axvline(100, color="#555555", linestyle="--", linewidth=0.8)
            ax.set_yticks(range(len(ylabels)))
            ax.set_yticklabels([f"{s} {({'float32': 'f32', 'float64': 'f64'}).get(d, d)}" for s, d in ylabels],
                               fontsize=8.5)
            ax.set_ylim(len(ylabels) - 0.5, -0.5)
            ax.set_xlim(0, xmax)
            unit = panels[op][0].bound
            ax.set_xlabel(f"% of the {BOUND_NAMES.get(unit, ('', 'bound'))[1]}", fontsize=8.5)
            ax.set_title(op, fontsize=10, loc="left", fontweight="bold")
            ax.tick_params(axis="x", labelsize=8)
            ax.grid(axis="x", color="#dddddd", linewidth=0.6)
            ax.set_axisbelow(True)
        for ax in axrow[len(line):]:
            ax.set_visible(False)
    handles = [Patch(color=color[b], label=b) for b in fast]
    if have_torch:
        handles.append(Line2D([], [], marker="D", color="black", linestyle="none", markersize=5, label="PyTorch CPU"))
    if suspect:
        handles.append(Patch(facecolor="white", edgecolor="red", label="above 100%: suspect (bound or work count)"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    height = fig.get_figheight()
    fig.suptitle("share of the machine's bound: GEMM peak (conv, dense), copy bandwidth at the working-set "
                 "size (pooling); higher is better", fontsize=9.5, y=1.0 - 0.42 / height)
    fig.tight_layout(rect=(0, 0, 1, 1.0 - 0.62 / height))
    fig.savefig(path, dpi=100, format=format)
    plt.close(fig)
    return f"share of the bound, {len(ops)} panels"
