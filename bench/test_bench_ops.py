"""One benchmark per op x shape x dtype x backend (every registered backend, plus torch).

``pytest bench/ --benchmark-only`` times the full shapes; a plain ``pytest`` run checks
the reduced shapes once each (see ``conftest.py``).
"""

import pytest

from fastnn.bench.workloads import TORCH, all_workloads, backends_for


def _params(family):
    for w in all_workloads():
        if w.family != family:
            continue
        for backend in backends_for(w) + [TORCH]:
            yield pytest.param(w, backend, id=f"{w.op}-{w.shape}-{w.dtype_name}-{backend}")


@pytest.mark.parametrize("workload, backend", list(_params("conv")))
def test_conv(bench_workload, workload, backend):
    bench_workload(workload, backend)


@pytest.mark.parametrize("workload, backend", list(_params("maxpool")) + list(_params("avgpool")))
def test_pool(bench_workload, workload, backend):
    bench_workload(workload, backend)


@pytest.mark.parametrize("workload, backend", list(_params("dense")))
def test_dense(bench_workload, workload, backend):
    bench_workload(workload, backend)
