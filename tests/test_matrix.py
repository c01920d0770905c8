"""One equivalence matrix for every backend: op x named case x dtype x backend vs reference.

The checks live in :mod:`fastnn.testing.conformance` (``fastnn check`` runs the same); a backend
registered later is covered here without editing this file. The tolerance is the
one rule of :mod:`fastnn.testing.tolerance` (float64 1e-12, float32 1e-5, relative).
"""

import numpy as np
import pytest

import fastnn
from fastnn._dispatch import ground_truth_backend
from fastnn._plugins import builtin_backends
from fastnn.testing import conformance
from fastnn.testing.cases import CONV_CASES, DTYPES, POOL_CASES

REF = ground_truth_backend()  # the backend every other one is checked against, asked of the registry


# The conformance suite (golden values, every named case x dtype x op against the reference,
# numerical gradients, bad input, mutation, NaN/Inf, tie rules, threads) on every in-repo backend:
# the same checks `fastnn check NAME` runs for any backend, written once in fastnn.testing.conformance.
IN_REPO = builtin_backends()  # not an installed plugin's: `fastnn check` and the pytest plugin are for those
test_conformance = conformance.make_test(IN_REPO)


# ------------------------------------------------------------------ variants
# Every variant a backend declares (what the planner may choose for ``auto``) passes the same
# conformance suite, pinned through the wrappers for the ops that declare it
# (``fastnn check numba:p4t8`` runs the same), whether or not it applies to the case.

from fastnn import _dispatch, _params  # noqa: E402

VARIANT_NAMES = [c for c in conformance.variant_candidates() if c.split(_dispatch.SEP)[0] in IN_REPO]
test_variant_conformance = conformance.make_test(VARIANT_NAMES)

VARIANTS = [(op, c) for op in ("conv_forward", "conv_backward", "pool_forward", "pool_backward")
            for c in _dispatch.candidates(op) if _dispatch.SEP in c and c.split(_dispatch.SEP)[0] != REF]


def _conv_calls(dtype):
    for case in CONV_CASES.values():
        A, W, b, hp, dZ = case.make(dtype, seed=1)
        A, W, b, dZ = (np.ascontiguousarray(x) for x in (A, W, b, dZ))
        yield case.name, _params.conv_params(A, W, b, hp), A, W, b, dZ


def _pool_calls(dtype):
    for case in POOL_CASES.values():
        A, hp, dA = case.make(dtype, seed=2)
        A, dA = np.ascontiguousarray(A), np.ascontiguousarray(dA)
        for mode in ("max", "average"):
            for ties in ("all", "first") if mode == "max" else ("all",):
                yield f"{case.name}-{mode}-{ties}", _params.pool_params(A, hp, mode, ties), A, dA


@pytest.mark.parametrize("op,cand", VARIANTS or [pytest.param(None, None, marks=pytest.mark.skip("no variants"))],
                         ids=lambda x: str(x))
def test_every_variant_is_exercised_by_a_named_case(op, cand):
    """A variant the matrix never selects would be checked only where it falls back to the
    backend's rule: some named case in some dtype must be a call it applies to."""
    backend, variant = cand.split(_dispatch.SEP)
    applies = _dispatch._variants[op][backend][variant]
    hits = []
    for dtype in DTYPES:
        calls = _conv_calls(dtype) if op.startswith("conv") else _pool_calls(dtype)
        hits += [c[0] for c in calls if applies(c[1])]
    assert hits, f"{cand} ({op}) applies to no named case: add one to fastnn.testing.cases"
