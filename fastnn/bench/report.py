"""Tables (text, Markdown), JSON, comparison with an earlier run, and the speed-up plot.

Everything here reads :class:`~fastnn.bench.results.ResultRow` records.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence, Tuple

from .results import ResultRow
from .workloads import REF, TORCH

__all__ = [
    "COLUMNS",
    "table_rows",
    "format_text",
    "format_markdown",
    "load_json",
    "attach_comparison",
    "comparison_summary",
    "plot",
    "REGRESSION",
]

#: A result more than 10 % slower than in the compared run is a regression.
REGRESSION = 1.10
COLUMNS = ("op", "shape", "dims", "dtype", "backend", "median ms", "± (IQR/2)", "rate", "% bound",
           "vs ref", "vs torch", "status")


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


def _x(v: Optional[float], estimated: bool = False) -> str:
    if v is None:
        return "-"
    s = f"{v:.0f}x" if v >= 100 else f"{v:.1f}x" if v >= 10 else f"{v:.2f}x"
    return ("~" + s) if estimated else s


def _rate(r: ResultRow) -> str:
    if r.rate is None:
        return "-"
    v = r.rate
    num = f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.3f}"
    return f"{num} {r.rate_unit}"


def _backend(r: ResultRow) -> str:
    return r.backend + (f" [{r.layout}]" if r.layout else "")


def _status(r: ResultRow) -> str:
    if r.failed and r.note:
        return f"{r.status} !!"
    return r.status


def table_rows(results: Sequence[ResultRow], compare: bool = False) -> Tuple[List[str], List[List[str]]]:
    cols = list(COLUMNS)
    if compare:
        cols.insert(cols.index("status"), "new/old")
    rows = []
    for r in results:
        spread = None
        if r.p75_s is not None and r.p25_s is not None:
            spread = (r.p75_s - r.p25_s) / 2
        row = [
            r.op, r.shape, r.dims, r.dtype, _backend(r), _ms(r.median_s),
            "-" if spread is None else "±" + _ms(spread), _rate(r),
            "-" if r.pct_of_bound is None else f"{r.pct_of_bound:.0f}%",
            _x(r.speedup_vs_reference, r.speedup_vs_reference_estimated),
            _x(r.speedup_vs_torch), _status(r),
        ]
        if compare:
            row.insert(-1, _ratio(r))
        rows.append(row)
    return cols, rows


def _ratio(r: ResultRow) -> str:
    ratio = r.ratio_vs_old
    if ratio is None:
        return "new" if r.median_s else "-"
    mark = "  SLOWER" if ratio > REGRESSION else "  faster" if ratio < 1 / REGRESSION else ""
    return f"{ratio:.2f}{mark}"


def format_text(results: Sequence[ResultRow], compare: bool = False) -> str:
    cols, rows = table_rows(results, compare)
    right = {"median ms", "± (IQR/2)", "rate", "% bound", "vs ref", "vs torch"}
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]

    def line(cells):
        return "  ".join(c.rjust(w) if name in right else c.ljust(w) for c, w, name in zip(cells, widths, cols)).rstrip()

    out = [line(cols), line(["-" * w for w in widths])]
    prev = None
    for r, row in zip(results, rows):
        if prev is not None and r.op != prev:
            out.append("")
        prev = r.op
        out.append(line(row))
    return "\n".join(out)


def format_markdown(results: Sequence[ResultRow], compare: bool = False, header: Optional[dict] = None) -> str:
    cols, rows = table_rows(results, compare)
    out = []
    if header:
        out.append("# fastnn bench")
        out.append("")
        for k, v in header.items():
            out.append(f"- **{k}**: {v}")
        out.append("")
    out.append("| " + " | ".join(cols) + " |")
    right = {"median ms", "± (IQR/2)", "rate", "% bound", "vs ref", "vs torch", "new/old"}
    out.append("|" + "|".join("---:" if c in right else "---" for c in cols) + "|")
    for row in rows:
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    notes = [r for r in results if r.note and r.failed]
    if notes:
        out.append("")
        for r in notes:
            out.append(f"- **{r.status}** {r.op} {r.shape} {r.dtype} {r.backend}: {r.note}")
    return "\n".join(out) + "\n"


def load_json(path: str) -> List[ResultRow]:
    """The result rows of a ``fastnn bench --json`` file; ValueError if it is not one."""
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError(f"{path} is not a fastnn bench JSON file (no 'results' list)")
    try:
        return [ResultRow.from_dict(r) for r in data["results"]]
    except ValueError as exc:
        raise ValueError(f"{path} is not a fastnn bench JSON file ({exc})") from None


def attach_comparison(results: Sequence[ResultRow], old: Sequence[ResultRow]) -> List[ResultRow]:
    """``results`` with ``old_median_s`` and ``ratio_vs_old`` (new / old median; > 1 is slower) from the earlier run."""
    before: Dict[tuple, ResultRow] = {o.key: o for o in old}
    out = []
    for r in results:
        o = before.get(r.key)
        old_median = o.median_s if o else None
        ratio = (r.median_s / old_median) if r.median_s and old_median else None
        out.append(r.replace(old_median_s=old_median, ratio_vs_old=ratio, compared=True))
    return out


def comparison_summary(results: Sequence[ResultRow]) -> str:
    compared = [r for r in results if r.ratio_vs_old is not None]
    slower = [r for r in compared if r.ratio_vs_old > REGRESSION]
    faster = [r for r in compared if r.ratio_vs_old < 1 / REGRESSION]
    lines = [f"compared with the earlier run: {len(compared)} results, {len(slower)} more than "
             f"{(REGRESSION - 1) * 100:.0f}% SLOWER, {len(faster)} faster"]
    for r in sorted(slower, key=lambda r: -r.ratio_vs_old):
        lines.append(f"  SLOWER x{r.ratio_vs_old:.2f}  {r.op} {r.shape} {r.dtype} {r.backend}: "
                     f"{_ms(r.old_median_s)} -> {_ms(r.median_s)} ms")
    return "\n".join(lines)


def plot(results: Sequence[ResultRow], path: str) -> str:
    """Speed-up bars per shape and backend against PyTorch (against the reference where torch is absent).

    One panel per op and dtype; a log axis with a line at 1. Needs matplotlib (raises ImportError).
    Returns a one-line description of what was plotted.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    have_torch = any(r.backend == TORCH and r.median_s for r in results)
    field, anchor = ("speedup_vs_torch", TORCH) if have_torch else ("speedup_vs_reference", REF)
    panels: Dict[tuple, List[ResultRow]] = {}
    for r in results:
        if r.backend != anchor and getattr(r, field):
            panels.setdefault((r.op, r.dtype), []).append(r)
    if not panels:
        raise ValueError(f"nothing to plot: no result has a speed-up against {anchor}")
    keys = list(panels)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    palette = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2", "C3"])
    all_backends = list(dict.fromkeys(r.backend for rows in panels.values() for r in rows))
    color = {b: palette[i % len(palette)] for i, b in enumerate(all_backends)}
    ncols = 2 if len(keys) > 1 else 1
    nrows = (len(keys) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 3.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        rows = panels[key]
        shapes = list(dict.fromkeys(r.shape for r in rows))
        backends = list(dict.fromkeys(r.backend for r in rows))
        width = 0.8 / max(len(backends), 1)
        for j, b in enumerate(backends):
            xs, ys = [], []
            for i, s in enumerate(shapes):
                for r in rows:
                    if r.shape == s and r.backend == b:
                        xs.append(i + (j - (len(backends) - 1) / 2) * width)
                        ys.append(getattr(r, field))
            # bars grow from 1 (as fast as the anchor): up when faster, down when slower
            ax.bar(xs, [y - 1.0 for y in ys], bottom=1.0, width=width, label=b, color=color[b])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        values = [getattr(r, field) for r in rows] + [1.0]
        ax.set_ylim(min(values) / 1.6, max(values) * 1.6)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, rotation=20, fontsize=8)
        ax.set_title(f"{key[0]} {key[1]}", fontsize=10)
        ax.set_ylabel(f"speed-up vs {anchor}")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"speed-up vs {anchor}, {len(keys)} panels"
