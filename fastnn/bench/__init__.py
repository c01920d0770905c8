"""``fastnn bench``: the benchmark and equivalence suite.

* :mod:`fastnn.bench.workloads` -- the workloads (op x shape x dtype), their reduced versions
  and their PyTorch counterparts; shared with the pytest-benchmark suite in ``bench/``;
* :mod:`fastnn.bench.runner` -- check against the reference, then time;
* :mod:`fastnn.bench.results` -- ``ResultRow``, the typed record of one result, and its JSON form;
* :mod:`fastnn.bench.timing` -- timer, machine bounds, threads, machine description;
* :mod:`fastnn.bench.report` -- tables, JSON, comparison, plot;
* :mod:`fastnn.cli.bench` -- the ``fastnn bench`` sub-command.
"""

from .results import ResultRow
from .runner import MODES, run_benchmark, select_workloads
from .workloads import REF, TORCH, all_workloads, backends_for, compare_outputs

__all__ = ["MODES", "ResultRow", "run_benchmark", "select_workloads", "REF", "TORCH", "all_workloads", "backends_for",
           "compare_outputs"]
