"""``fastnn bench`` on tiny selections, in-process, with mock backends registered for the test only.

The mock backends delegate to the reference kernels (so they are correct, or deliberately
wrong by a small perturbation, or raise) and are unregistered afterwards, so no other test
sees them.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _dispatch
from fastnn.bench import runner, workloads
from fastnn.bench.report import REGRESSION
from fastnn.bench.results import ResultRow
from fastnn.cli import main

REF = workloads.REF
# The reference's kernels, looked up by name in the registry (the mock delegates to them).
_REF_KERNELS = {op: _dispatch.resolve(op, REF) for op in _dispatch.OPS}
TINY = ["--quick", "--no-progress", "--shapes", "seed", "--dtypes", "float64"]


def _register_mock(name, corrupt=None, fail=None):
    """A backend whose kernels call the reference's; ``corrupt(op, outputs)`` may spoil the outputs,
    ``fail`` names an op that raises."""
    _dispatch.register_backend(name, priority=-10, description="test mock delegating to the reference")
    out_args = {"conv_forward": 1, "conv_backward": 3, "pool_forward": 1, "pool_backward": 1, "zero_pad": 1,
                "relu": 1, "relu_backward": 1, "sigmoid": 1, "sigmoid_backward": 1}

    for op in _dispatch.OPS:
        def kernel(*args, _op=op):
            if fail == _op:
                raise RuntimeError(f"mock {_op} failed on purpose")
            _REF_KERNELS[_op](*args)
            if corrupt is not None:
                corrupt(_op, args[-out_args[_op]:])

        _dispatch.register(op, name)(kernel)


@pytest.fixture
def mock():
    _register_mock("mock")
    yield "mock"
    _dispatch.unregister_backend("mock")


@pytest.fixture
def wrong_mock():
    def corrupt(op, outs):
        if op == "conv_forward":
            outs[0].flat[0] += 1e-3  # one element off: far above the float64 tolerance

    _register_mock("wrongmock", corrupt=corrupt)
    yield "wrongmock"
    _dispatch.unregister_backend("wrongmock")


@pytest.fixture
def failing_mock():
    _register_mock("failmock", fail="pool_forward")
    yield "failmock"
    _dispatch.unregister_backend("failmock")


def _run(capsys, *argv):
    rc = main(["bench", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_table_json_markdown(tmp_path, capsys, mock):
    j, md = tmp_path / "r.json", tmp_path / "r.md"
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv,maxpool.fwd", "--backends", f"{mock},{REF}",
                      "--json", str(j), "--markdown", str(md))
    assert rc == 0, out
    for col in ("op", "shape", "dtype", "backend", "median ms", "rate", "% bound", "vs ref", "vs torch", "status"):
        assert col in out
    lines = [l for l in out.splitlines() if l.startswith(("conv.", "maxpool."))]
    assert len(lines) == 3 * 2  # conv.fwd, conv.fwd+bwd, maxpool.fwd x (mock, reference)
    assert all(" ok" in l for l in lines if f" {mock} " in l)
    assert "GFLOP/s" in out and "GB/s" in out

    doc = json.loads(j.read_text())
    for k in ("machine", "versions", "threads", "bounds", "results", "git", "created"):
        assert k in doc
    assert doc["machine"]["cpu_count"] >= 1 and doc["versions"]["numpy"] == np.__version__
    assert doc["bounds"]["gemm_flops"]["float64"] > 0 and doc["bounds"]["mem_bytes_per_s"] > 0
    rows = {(r["op"], r["backend"]): r for r in doc["results"]}
    assert set(rows) == {(op, b) for op in ("conv.fwd", "conv.fwd+bwd", "maxpool.fwd") for b in (mock, REF)}
    r = rows[("conv.fwd", mock)]
    assert r["status"] == "ok" and r["median_s"] > 0 and r["p25_s"] <= r["median_s"] <= r["p75_s"]
    assert r["rate_unit"] == "GFLOP/s" and r["pct_of_bound"] > 0 and r["speedup_vs_reference"] > 0
    assert r["flops"] == workloads.BENCH_CONV_SHAPES["seed"].flops
    assert rows[("conv.fwd+bwd", mock)]["flops"] == 3 * r["flops"]
    assert rows[("conv.fwd", REF)]["status"] == "ref"

    text = md.read_text()
    assert text.splitlines()[-len(lines) - 2].startswith("| op | shape |")
    assert f"| {mock} |" in text and "---:" in text


def test_every_registered_backend_is_benchmarked(mock, capsys):
    """No backend is named in the runner: a newly registered one shows up by itself."""
    wl = runner.select_workloads(["dense.fwd"], None, ["float32"])
    out = runner.run_benchmark(wl, backends=None, mode=runner.MODES["quick"], progress=False)
    names = {r.backend for r in out["results"]}
    assert set(fastnn.available_backends()) <= names
    assert (workloads.TORCH in names) == (workloads.torch_module() is not None)
    assert all(r.status in ("ok", "ref") or r.status.startswith("skipped") for r in out["results"])


def test_wrong_backend_is_flagged_mismatch(wrong_mock, capsys):
    rc, out, err = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", f"{wrong_mock},{REF}")
    assert rc == 1
    row = [l for l in out.splitlines() if l.startswith("conv.fwd") and wrong_mock in l]
    assert len(row) == 1 and "MISMATCH" in row[0]
    assert "MISMATCH: conv.fwd seed float64 wrongmock" in out
    assert "FAILED" in err


def test_failing_backend_is_flagged_error(failing_mock, capsys):
    rc, out, _ = _run(capsys, *TINY, "--ops", "maxpool.fwd", "--backends", failing_mock)
    assert rc == 1
    assert "ERROR" in out and "failed on purpose" in out


def test_float32_mismatch_uses_float32_tolerance(capsys):
    """A float32 result off by 1e-3 relative is wrong at float32's 1e-5 tolerance too."""
    def corrupt(op, outs):
        if op == "pool_forward":
            outs[0][...] *= np.float32(1.001)

    _register_mock("wrong32", corrupt=corrupt)
    try:
        rc, out, _ = _run(capsys, "--quick", "--no-progress", "--shapes", "seed", "--dtypes", "float32",
                          "--ops", "avgpool.fwd", "--backends", "wrong32", "--ref-budget", "0")
    finally:
        _dispatch.unregister_backend("wrong32")
    assert rc == 1 and "MISMATCH" in out


def test_reference_skipped_with_estimate(mock, capsys):
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", f"{mock},{REF}", "--ref-budget", "0")
    assert rc == 0
    ref_row = [l for l in out.splitlines() if l.startswith("conv.fwd") and f" {REF} " in l][0]
    assert "skipped (est. " in ref_row
    mock_row = [l for l in out.splitlines() if l.startswith("conv.fwd") and f" {mock} " in l][0]
    assert "~" in mock_row  # the speed-up is against the estimate


def test_compare_marks_regressions(tmp_path, capsys, mock):
    old = tmp_path / "old.json"
    rc, _, _ = _run(capsys, *TINY, "--ops", "maxpool.fwd", "--backends", f"{mock},{REF}", "--json", str(old))
    assert rc == 0
    doc = json.loads(old.read_text())
    for r in doc["results"]:
        if r["backend"] == mock:
            r["median_s"] /= 10  # the earlier run was 10x faster: now a regression
        else:
            r["median_s"] *= 10  # ... and 10x slower: now an improvement
    old.write_text(json.dumps(doc))
    new = tmp_path / "new.json"
    rc, out, _ = _run(capsys, *TINY, "--ops", "maxpool.fwd", "--backends", f"{mock},{REF}",
                      "--compare", str(old), "--json", str(new))
    assert rc == 0
    assert "new/old" in out
    mock_row = [l for l in out.splitlines() if l.startswith("maxpool.fwd") and f" {mock} " in l][0]
    ref_row = [l for l in out.splitlines() if l.startswith("maxpool.fwd") and f" {REF} " in l][0]
    assert "SLOWER" in mock_row and "faster" in ref_row
    assert "1 more than 10% SLOWER" in out
    rows = json.loads(new.read_text())["results"]
    assert [r for r in rows if r["backend"] == mock][0]["ratio_vs_old"] > REGRESSION


@pytest.mark.parametrize("text, why", [
    ("[1, 2]", "no 'results' list"),
    ('{"results": [{"op": "conv.fwd", "shape": "seed"}]}', "a result row lacks 'family'"),
    ('{"results": [3]}', "a result row must be a JSON object"),
])
def test_compare_bad_file(tmp_path, capsys, text, why):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    rc, out, err = _run(capsys, *TINY, "--compare", str(bad))
    assert rc == 2 and "not a fastnn bench JSON" in err and why in err and out == ""


# The recorded runs: their JSON is the format ``--json`` writes and ``--compare`` reads.
RECORDED = sorted((pathlib.Path(__file__).parent.parent / "docs" / "bench").glob("*.json"))


def _recorded_key_lists():
    return {tuple(r) for path in RECORDED for r in json.loads(path.read_text())["results"]}


def test_recorded_runs_exist():
    assert len(RECORDED) >= 9


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_recorded_rows_read_back_unchanged(path):
    """Every row of a committed run reads into a ResultRow and writes back to the same JSON object, key order included."""
    rows = json.loads(path.read_text())["results"]
    for r in rows:
        again = ResultRow.from_dict(r).as_dict()
        assert list(again) == list(r) and again == r


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_compare_with_each_recorded_run(path, capsys, mock):
    rc, out, err = _run(capsys, *TINY, "--ops", "maxpool.fwd", "--backends", f"{mock},{REF}", "--compare", str(path))
    assert rc == 0, err
    assert "new/old" in out and "compared with the earlier run: " in out


def test_json_rows_keep_the_recorded_format(tmp_path, capsys, mock):
    """A fresh run's rows (timed, skipped, compared) have exactly the keys, in the order, of the committed runs' rows."""
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    rc, _, _ = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", f"{mock},{REF}", "--ref-budget", "0",
                    "--json", str(first))
    assert rc == 0
    rc, _, _ = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", mock, "--compare", str(first),
                    "--json", str(second))
    assert rc == 0
    plain, compared = json.loads(first.read_text())["results"], json.loads(second.read_text())["results"]
    rows = plain + compared
    assert any(r["status"] == "ok" for r in rows) and any(r["status"].startswith("skipped") for r in rows)
    assert all("ratio_vs_old" not in r for r in plain) and all("ratio_vs_old" in r for r in compared)
    assert all(("p25_s" in r) == (r["median_s"] is not None) for r in rows)  # the spread only where timed
    recorded = _recorded_key_lists()
    assert all(tuple(r) in recorded for r in rows), [list(r) for r in rows if tuple(r) not in recorded]


def test_plot(tmp_path, capsys, mock):
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd,avgpool.fwd", "--backends", f"{mock},{REF}", "--plot", str(png))
    assert rc == 0, out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rc, out, err = _run(capsys, *TINY, "--plot", str(tmp_path / "p.png"))
    assert rc == 2
    assert "matplotlib" in err and "pip install" in err
    assert out == ""  # refused before running anything


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "nosuchshape"], "unknown shape 'nosuchshape'"),
    (["--ops", "conv.sideways"], "unknown op 'conv.sideways'"),
    (["--dtypes", "float16"], "unknown dtype 'float16'"),
    (["--backends", "nosuchbackend"], "unknown backend 'nosuchbackend'"),
    (["--threads", "0"], "--threads must be at least 1"),
])
def test_bad_selection_is_refused(capsys, argv, message):
    rc, out, err = _run(capsys, "--quick", *argv)
    assert rc == 2 and message in err and out == ""


def test_threads_are_set_and_restored(mock, capsys):
    cfg = pytest.importorskip("fastnn.backends.numba.config")
    before = cfg.num_threads()
    rc, out, _ = _run(capsys, *TINY, "--ops", "avgpool.fwd", "--backends", mock, "--threads", "1")
    assert rc == 0
    assert "numba 1" in out
    assert cfg.num_threads() == before and cfg._override is None


def test_torch_anchor(capsys):
    if workloads.torch_module() is None:
        pytest.skip("torch not installed")
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd+bwd,maxpool.fwd+bwd", "--backends", "torch")
    assert rc == 0, out
    rows = [l for l in out.splitlines() if l.startswith(("conv.", "maxpool."))]
    assert len(rows) == 2 and all(" ok" in l for l in rows)
    assert all("[NCHW]" in l or "[channels_last]" in l for l in rows)


# ------------------------------------------------------------------ workloads and helpers


def test_selection():
    all_w = runner.select_workloads()
    assert len(all_w) == len({w.key for w in all_w})
    assert {w.family for w in all_w} == set(workloads.FAMILIES)
    assert {w.shape for w in all_w} >= set(workloads.BENCH_CONV_SHAPES) | set(workloads.BENCH_POOL_SHAPES)
    sel = runner.select_workloads(["conv.fwd", "dense"], ["cifar,cat_net"], ["float32"])
    assert sorted(w.op for w in sel) == ["conv.fwd", "dense.fwd", "dense.fwd+bwd"]
    assert {w.dtype_name for w in sel} == {"float32"}


@pytest.mark.parametrize("w", [w for w in runner.select_workloads(dtypes=["float64"]) if w.pass_ == "fwd"],
                         ids=lambda w: w.id)
def test_reduced_shapes_keep_the_window(w):
    small = w.reduced()
    assert small.is_reduced and small.key == w.key
    if hasattr(w, "case"):
        for field in ("C", "f", "stride", "pad") + (("K",) if hasattr(w.case, "K") else ()):
            assert getattr(small.case, field) == getattr(w.case, field)
        assert small.case.m <= 2 and max(small.case.out_hw) <= 5
        assert min(small.case.out_hw) >= 1
        assert small.ref_units <= w.ref_units


def test_compare_outputs_detects_differences():
    a = np.linspace(-1, 1, 12).reshape(3, 4)
    names = ("x",)
    assert workloads.compare_outputs((a.copy(),), (a,), np.float64, names) is None
    b = a.copy()
    b[1, 2] += 1e-9
    assert "1 of 12 differ" in workloads.compare_outputs((b,), (a,), np.float64, names)
    assert "dtype" in workloads.compare_outputs((a.astype(np.float32),), (a,), np.float64, names)
    assert "shape" in workloads.compare_outputs((a[:2],), (a,), np.float64, names)
    n = a.copy()
    n[0, 0] = np.nan
    assert workloads.compare_outputs((n.copy(),), (n,), np.float64, names) is None
    assert workloads.compare_outputs((a,), (n,), np.float64, names) is not None


def test_bench_threads_do_not_start_numba_threading_layer():
    """The bench's thread report and --threads set fastnn's own count (the numba backend
    runs its chunks on fastnn's threads), so Numba's threading layer is never started."""
    code = ("from fastnn.bench.timing import ThreadSettings, thread_info; "
            "from numba.np.ufunc import parallel; from fastnn.backends.numba import config as c; "
            "t = ThreadSettings(1).apply(); n = c.num_threads(); t.restore(); "
            "print(thread_info()['numba'] > 0, n, c._override, parallel._is_initialized)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "1", "None", "False"]


def test_bench_progress_uses_the_one_progress_display():
    """The runner's progress is the shared display (fastnn._progress): a tqdm bar over the
    workloads on a terminal, one plain line per group elsewhere."""
    import io

    from fastnn.bench import runner

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    p = runner.Progress(3, tty)
    p.update("conv.fwd seed float32", "numba")
    p.step()
    p.update("conv.fwd seed float32", "im2col")
    p.close()
    assert "workload" in tty.getvalue() and "\r" in tty.getvalue()  # tqdm's bar, in place
    plain = io.StringIO()
    p = runner.Progress(2, plain)
    p.update("a", "x")
    p.step()
    p.update("a", "y")
    p.update("b", "z")
    p.close()
    assert [line.split("] ")[1] for line in plain.getvalue().splitlines()] == ["a", "b"]
    assert "\r" not in plain.getvalue()
