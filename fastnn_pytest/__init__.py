"""pytest plugin: ``pytest --fastnn-backend NAME`` runs fastnn's conformance suite on a backend.

Installed with fastnn as the ``pytest11`` entry point ``fastnn`` (``-p fastnn_pytest`` loads it
from a checkout). It is inert unless ``--fastnn-backend`` is given: no tests, no markers and no
import of fastnn (this module lives outside the ``fastnn`` package because ``import fastnn``
registers the backends, Numba's included). With the option, each check of
:func:`fastnn.testing.conformance.checks` for each named backend becomes one test item,
``fastnn[NAME]::KIND/OP/CASE``, marked ``fastnn_conformance`` (``-k`` and ``-m`` select as
usual), and a failing item reports the check's one line (max abs/rel error and where)::

    pytest --fastnn-backend mine                     # the whole suite on backend "mine"
    pytest --fastnn-backend mine --fastnn-quick --fastnn-ops conv_forward,pool_forward
"""

from __future__ import annotations

import pytest

OPTIONS = ("ops", "dtypes", "kinds")


def pytest_addoption(parser):
    """The ``--fastnn-*`` options (only declared: nothing runs unless ``--fastnn-backend`` is given)."""
    group = parser.getgroup("fastnn", "fastnn conformance suite")
    group.addoption("--fastnn-backend", action="append", default=[], metavar="NAME",
                    help="run fastnn's conformance suite on this registered backend, or variant "
                         "backend:variant (repeatable)")
    group.addoption("--fastnn-quick", action="store_true", help="a few named cases per op (fastnn check --quick)")
    for name in OPTIONS:
        group.addoption(f"--fastnn-{name}", metavar="A,B", default=None,
                        help=f"comma-separated {name} of the conformance suite (default: all)")


def pytest_configure(config):
    if config.getoption("fastnn_backend"):
        config.addinivalue_line("markers", "fastnn_conformance: a check of fastnn's conformance suite")


class ConformanceFailure(Exception):
    """A check's :class:`fastnn.testing.conformance.Problem`, reported as its one line."""


class ConformanceItem(pytest.Item):
    """One conformance check on one backend."""

    def __init__(self, *, check, backend, **kw):
        super().__init__(**kw)
        self.check, self.backend = check, backend
        self.add_marker("fastnn_conformance")

    def runtest(self):
        problem = self.check.run()
        if problem is not None:
            raise ConformanceFailure(problem.message)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ConformanceFailure):
            return f"backend {self.backend}: {self.check.id}: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.nodeid


class ConformanceSuite(pytest.Collector):
    """The conformance checks of one backend, collected as :class:`ConformanceItem`."""

    def __init__(self, *, checks, backend, **kw):
        super().__init__(**kw)
        self.checks, self.backend = checks, backend

    def collect(self):
        return [ConformanceItem.from_parent(self, name=c.id, check=c, backend=self.backend) for c in self.checks]


def _selection(config):
    split = {}
    for name in OPTIONS:
        text = config.getoption(f"fastnn_{name}")
        split[name] = [t.strip() for t in text.split(",") if t.strip()] if text else None
    return split


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect
def pytest_collection_modifyitems(session, config, items):
    backends = config.getoption("fastnn_backend")
    if not backends:
        return
    import numpy as np

    from fastnn import _dispatch
    from fastnn.testing import conformance

    sel = _selection(config)
    valid = {"ops": conformance.ALL_OPS, "kinds": conformance.KINDS, "dtypes": ("float32", "float64")}
    for name, values in sel.items():
        for v in values or ():
            if v not in valid[name]:
                raise pytest.UsageError(f"--fastnn-{name}: unknown {name[:-1]} {v!r}; {name} are {', '.join(valid[name])}")
    dtypes = [np.dtype(d) for d in sel["dtypes"]] if sel["dtypes"] else None
    for backend in backends:
        try:
            conformance.backend_subject(backend)  # a backend, or a variant "backend:variant"
        except _dispatch.BackendError:
            raise pytest.UsageError(f"--fastnn-backend: unknown backend {backend!r}; available backends: "
                                    f"{', '.join(_dispatch.available_backends())}; variants: "
                                    f"{', '.join(conformance.variant_candidates()) or 'none'}") from None
        checks = conformance.checks(backend, ops=sel["ops"], dtypes=dtypes, kinds=sel["kinds"],
                                    quick=config.getoption("fastnn_quick"))
        if not checks:
            raise pytest.UsageError(f"--fastnn-backend {backend}: the selection matches no checks")
        suite = ConformanceSuite.from_parent(session, name=f"fastnn[{backend}]", nodeid=f"fastnn[{backend}]",
                                             checks=checks, backend=backend)
        report = suite.ihook.pytest_make_collect_report(collector=suite)
        session.ihook.pytest_collectreport(report=report)  # counted in "collected N items"
        if report.failed:
            raise pytest.UsageError(f"--fastnn-backend {backend}: {report.longrepr}")
        items.extend(report.result)
