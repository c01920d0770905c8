"""The result rows of ``fastnn bench``: one typed record per backend and workload, and its JSON form.

A :class:`ResultRow` is built by :mod:`fastnn.bench.runner` (what ran and how long it took,
its speed-up against PyTorch measured round by round), completed by the runner's ``derive``
(rate, bound and share of it, speed-up against the reference) and, with ``--compare``, by
:func:`fastnn.bench.report.attach_comparison`; the report and the CLI read it. Records are
frozen: each step returns a new one (:meth:`ResultRow.replace`).

``--json`` writes each row as one JSON object (:meth:`ResultRow.as_dict`). Schema
``fastnn-bench/2`` (written now): the keys of ``RUN_KEYS``, then ``SPREAD_KEYS`` where the row
was timed, then ``DERIVED_KEYS``, then ``COMPARED_KEYS`` where the run was compared with an
earlier one; each group is its schema-1 keys followed by those added in schema 2
(``*_V2``). :meth:`ResultRow.from_dict` reads rows of either schema, and a row read from a
schema-1 file writes back as it was.

In schema 2, ``repeats`` counts the alternating rounds (``calls_per_repeat``: the timed calls
of a round's block, whose median is the round's time) and ``speedup_vs_torch`` is the median
of the per-round ratios (``speedup_vs_torch_min``/``_max`` their range); in schema 1 they were
repeats of one backend timed alone and a ratio of medians.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["ResultRow", "SCHEMA", "RUN_KEYS", "SPREAD_KEYS", "DERIVED_KEYS", "COMPARED_KEYS", "FAILED"]

SCHEMA = "fastnn-bench/2"

#: What ran and what came of it: every row has these.
RUN_KEYS_V1 = ("op", "family", "pass", "shape", "dims", "dtype", "backend", "layout", "status", "note",
               "flops", "bytes", "median_s", "estimated_s", "warmup_s")
RUN_KEYS_V2 = ("resolved", "check_s")
#: The spread of the timed repeats (rounds): only on rows that were timed.
SPREAD_KEYS_V1 = ("p25_s", "p75_s", "min_s", "max_s", "repeats", "calls_per_repeat")
SPREAD_KEYS_V2 = ()
#: Computed from the machine's bounds and the workload's other rows: every row has these.
DERIVED_KEYS_V1 = ("rate", "rate_unit", "bound_s", "pct_of_bound", "speedup_vs_reference",
                   "speedup_vs_reference_estimated", "speedup_vs_torch")
DERIVED_KEYS_V2 = ("bound", "bound_rate", "suspect", "speedup_vs_torch_min", "speedup_vs_torch_max")
#: Against an earlier run (``--compare``): only on the rows of a compared run.
COMPARED_KEYS_V1 = ("old_median_s", "ratio_vs_old")
COMPARED_KEYS_V2 = ("verdict", "threshold")

RUN_KEYS = RUN_KEYS_V1 + RUN_KEYS_V2
SPREAD_KEYS = SPREAD_KEYS_V1 + SPREAD_KEYS_V2
DERIVED_KEYS = DERIVED_KEYS_V1 + DERIVED_KEYS_V2
COMPARED_KEYS = COMPARED_KEYS_V1 + COMPARED_KEYS_V2
_V2_ONLY = RUN_KEYS_V2 + SPREAD_KEYS_V2 + DERIVED_KEYS_V2 + COMPARED_KEYS_V2
#: The statuses that make a run fail.
FAILED = ("MISMATCH", "ERROR")

_FIELD = {"pass": "pass_"}  # JSON key -> field name, where the key is a Python keyword


@dataclasses.dataclass(frozen=True)
class ResultRow:
    """One backend on one workload (op x shape x dtype)."""

    # what ran
    op: str
    family: str
    pass_: str
    shape: str
    dims: str
    dtype: str
    backend: str
    layout: Optional[str] = None  # torch's memory layout, where it has a choice
    # what came of it
    status: str = "ok"  # ok, ref, MISMATCH, ERROR or "skipped (est. ...)"
    note: str = ""
    flops: Optional[float] = None
    bytes: Optional[float] = None
    median_s: Optional[float] = None
    estimated_s: Optional[float] = None  # the reference's time extrapolated from the reduced shape
    warmup_s: Optional[float] = None  # the untimed first call on the full shape (compiling included)
    resolved: Optional[str] = None  # auto: the backend it ran (or "op backend, ..." when they differ)
    check_s: Optional[float] = None  # the check on the reduced shape (compiling included)
    # the spread of the timed repeats (None where the row was not timed)
    p25_s: Optional[float] = None
    p75_s: Optional[float] = None
    min_s: Optional[float] = None
    max_s: Optional[float] = None
    repeats: Optional[int] = None
    calls_per_repeat: Optional[int] = None
    # derived from the bounds and the workload's other rows
    rate: Optional[float] = None
    rate_unit: Optional[str] = None
    bound_s: Optional[float] = None
    pct_of_bound: Optional[float] = None
    speedup_vs_reference: Optional[float] = None
    speedup_vs_reference_estimated: bool = False
    speedup_vs_torch: Optional[float] = None
    bound: Optional[str] = None  # "gemm_peak" or "copy_bandwidth"
    bound_rate: Optional[float] = None  # the bound, in rate_unit
    suspect: Optional[str] = None  # why the share of the bound cannot be right (above 100 %)
    speedup_vs_torch_min: Optional[float] = None
    speedup_vs_torch_max: Optional[float] = None
    # against an earlier run (``compared``: the run was compared, so these are written)
    old_median_s: Optional[float] = None
    ratio_vs_old: Optional[float] = None
    verdict: Optional[str] = None  # "slower", "faster", "same" (within noise) or "unknown"
    threshold: Optional[float] = None  # the relative change beyond which the verdict is not "same"
    compared: bool = False
    schema: int = 2  # the JSON schema the row is written in (1: read from a schema-1 file)

    @property
    def key(self) -> Tuple[str, str, str, str]:
        """(op, shape, dtype, backend): what a row of another run is matched by."""
        return (self.op, self.shape, self.dtype, self.backend)

    @property
    def workload_key(self) -> Tuple[str, str, str]:
        return (self.op, self.shape, self.dtype)

    @property
    def timed(self) -> bool:
        return self.repeats is not None

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @property
    def skipped(self) -> bool:
        return self.status.startswith("skipped")

    def replace(self, **changes: Any) -> "ResultRow":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Dict[str, Any]:
        """The row's JSON object (key order and presence as described in the module docstring)."""
        if self.schema == 1:
            keys = (RUN_KEYS_V1 + (SPREAD_KEYS_V1 if self.timed else ()) + DERIVED_KEYS_V1
                    + (COMPARED_KEYS_V1 if self.compared else ()))
        else:
            keys = RUN_KEYS + (SPREAD_KEYS if self.timed else ()) + DERIVED_KEYS + (COMPARED_KEYS if self.compared else ())
        return {k: getattr(self, _FIELD.get(k, k)) for k in keys}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> "ResultRow":
        """A row read back from its JSON object (either schema); ValueError names a missing key.
        Unknown keys are ignored."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"a result row must be a JSON object, got {type(obj).__name__}")
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        json_name = {v: k for k, v in _FIELD.items()}
        missing = [json_name.get(n, n) for n in required if json_name.get(n, n) not in obj]
        if missing:
            raise ValueError(f"a result row lacks {', '.join(map(repr, missing))}")
        keys = RUN_KEYS + SPREAD_KEYS + DERIVED_KEYS + COMPARED_KEYS
        fields = {_FIELD.get(k, k): obj[k] for k in keys if k in obj}
        schema = 2 if any(k in obj for k in _V2_ONLY) else 1
        return cls(**fields, compared=any(k in obj for k in COMPARED_KEYS), schema=schema)
