"""pytest-benchmark suite: the ``fastnn bench`` table as benchmarks.

Two modes:

* ``pytest bench/ --benchmark-only`` (or ``--benchmark-enable``): the full shapes, timed by
  pytest-benchmark after one untimed warm-up call; that call's backend is also checked
  against the reference on a REDUCED version of the shape (the reference is the course's
  loops: too slow on the full shapes). The reference itself is timed only where its
  estimated time is within ``REF_BUDGET_S``.
* anything else (e.g. CI's plain ``python -m pytest``): benchmarks are disabled (each runs
  once, untimed) on the REDUCED shapes and checked against the reference, so the suite
  cannot rot but costs seconds. No test ever asserts a timing.
"""

import time

import pytest

from fastnn.bench.workloads import REF, TORCH, compare_outputs, torch_module

pytest.importorskip("pytest_benchmark")

#: Time the reference (course loops) on a full shape only if estimated within this.
REF_BUDGET_S = 2.0


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # Runs before pytest-benchmark's own pytest_configure (trylast), which reads this option.
    try:
        only, enable = config.getoption("benchmark_only"), config.getoption("benchmark_enable")
    except ValueError:  # pytest-benchmark not installed: the suite is skipped
        return
    if not only and not enable:
        config.option.benchmark_disable = True


_ref_cache = {}


def _reference(small):
    """(outputs, seconds) of the reference on a reduced workload, computed once per workload."""
    if small not in _ref_cache:
        fn = small.fastnn_call(REF)
        t0 = time.perf_counter()
        out = fn()
        _ref_cache[small] = (out, time.perf_counter() - t0)
    return _ref_cache[small]


def _torch_fn(workload, probe):
    """The torch callable in its faster layout (chosen by a short probe when ``probe``)."""
    layouts = workload.torch_layouts()
    if not probe or len(layouts) == 1:
        return layouts[0], workload.torch_call(layouts[0])
    best = None
    for lay in layouts:
        call = workload.torch_call(lay)
        call[0]()
        t0 = time.perf_counter()
        for _ in range(3):
            call[0]()
        t = time.perf_counter() - t0
        if best is None or t < best[0]:
            best = (t, lay, call)
    return best[1], best[2]


def _check(workload, backend, layout=None):
    """Run ``backend`` (torch: in ``layout``) on the reduced workload and compare with the reference;
    fail loudly if different."""
    small = workload.reduced()
    ref_out, _ = _reference(small)
    if backend == TORCH:
        fn, to_numpy = small.torch_call(layout)
        out = to_numpy(fn())
    else:
        out = small.fastnn_call(backend)()
    err = compare_outputs(out, ref_out, workload.dtype, workload.output_names)
    assert err is None, f"MISMATCH {workload.id} {backend} vs {REF} on {small.dims}: {err}"


@pytest.fixture
def bench_workload(benchmark):
    """``bench_workload(workload, backend)``: check, warm up and time one backend on one workload."""

    def run(workload, backend):
        fast = benchmark.disabled
        if fast:
            workload = workload.reduced()
        if backend == TORCH and torch_module() is None:
            pytest.skip("torch not installed (pip install torch==2.13.0)")
        if backend == REF and not fast:
            small = workload.reduced()
            _, t_small = _reference(small)
            est = t_small * workload.ref_units / small.ref_units
            if est > REF_BUDGET_S:
                pytest.skip(f"reference (course loops) skipped on this shape (est. {est:.1f} s)")
        if backend == TORCH:
            layout, (fn, _) = _torch_fn(workload, probe=not fast)
            benchmark.extra_info["layout"] = layout
            _check(workload, backend, layout)
        else:
            if backend != REF:
                _check(workload, backend)
            fn = workload.fastnn_call(backend)
        benchmark.group = f"{workload.op} {workload.shape} {workload.dtype_name}"
        benchmark.extra_info.update(dims=workload.dims, flops=workload.flops, bytes=workload.bytes,
                                    reduced=workload.is_reduced)
        if not fast:
            fn()  # untimed warm-up: compilation, first touch of memory
        benchmark(fn)
        if not fast and benchmark.stats is not None:
            median = benchmark.stats.stats.median
            if workload.flops:
                benchmark.extra_info["GFLOP/s"] = workload.flops / median / 1e9
            if workload.bytes:
                benchmark.extra_info["GB/s"] = workload.bytes / median / 1e9

    return run
