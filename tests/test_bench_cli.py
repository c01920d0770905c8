"""``fastnn bench`` on tiny selections, in-process, with mock backends registered for the test only.

The mock backends delegate to the reference kernels (so they are correct, or deliberately
wrong by a small perturbation, or raise) and are unregistered afterwards, so no other test
sees them. No test asserts on a timing: timings only have to exist and be positive.
"""

import io
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _dispatch
from fastnn.bench import report, runner, timing, workloads
from fastnn.bench.results import COMPARED_KEYS, DERIVED_KEYS, RUN_KEYS, SCHEMA, SPREAD_KEYS, ResultRow
from fastnn.cli import bench as bench_cli
from fastnn.cli import main

REF = workloads.REF
# The reference's kernels, looked up by name in the registry (the mock delegates to them).
_REF_KERNELS = {op: _dispatch.resolve(op, REF) for op in _dispatch.OPS}
TINY = ["--quick", "--no-progress", "--shapes", "seed", "--dtypes", "float64"]


def _register_mock(name, corrupt=None, fail=None, priority=-10):
    """A backend whose kernels call the reference's; ``corrupt(op, outputs)`` may spoil the outputs,
    ``fail`` names an op that raises."""
    _dispatch.register_backend(name, priority=priority, description="test mock delegating to the reference")
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


def _spoil_conv(op, outs):
    if op == "conv_forward":
        outs[0].flat[0] += 1e-3  # one element off: far above the float64 tolerance


@pytest.fixture
def mock():
    _register_mock("mock")
    yield "mock"
    _dispatch.unregister_backend("mock")


@pytest.fixture
def wrong_mock():
    _register_mock("wrongmock", corrupt=_spoil_conv)
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


def _lines(out, backend, shape="seed"):
    """The table lines of ``backend`` (cells: shape, dtype, backend, ...)."""
    return [l for l in out.splitlines() if len(l.split()) > 3 and l.split()[0] == shape
            and l.split()[2].split("[")[0].split(":")[0] == backend]


def _sections(out):
    """op -> the table lines of its section."""
    found, op = {}, None
    for l in out.splitlines():
        m = re.match(r"^(\S+\.(fwd|fwd\+bwd)): rate in ", l)
        if m:
            op = m.group(1)
            found[op] = []
        elif op and l.strip() == "":
            op = None
        elif op:
            found[op].append(l)
    return found


# ------------------------------------------------------------------------ the run and its files


def test_table_json_markdown(tmp_path, capsys, mock):
    j, md = tmp_path / "r.json", tmp_path / "r.md"
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv,maxpool.fwd", "--backends", f"{mock},{REF}",
                      "--json", str(j), "--markdown", str(md))
    assert rc == 0, out
    sections = _sections(out)
    assert set(sections) == {"conv.fwd", "conv.fwd+bwd", "maxpool.fwd"}
    for op, lines in sections.items():
        head = lines[0].split()
        assert head[:4] == ["shape", "dt", "backend", "ms"] and "status" in head
        assert ("%GEMM" if op.startswith("conv") else "%copy") in head
        assert len(lines) == 2 + 2  # header, rule, mock, reference
    assert "conv.fwd: rate in GFLOP/s, %GEMM = share of the GEMM peak" in out
    assert "maxpool.fwd: rate in GB/s, %copy = share of the copy bandwidth" in out
    assert all(" ok" in l for l in _lines(out, mock))
    assert "conv shapes (m x H x W x C" in out and "10x4x4x3 f2 K8 s2 p2" in out  # the dims, once, in the legend

    doc = json.loads(j.read_text())
    assert doc["schema"] == SCHEMA == "fastnn-bench/2"
    for k in ("machine", "versions", "threads", "bounds", "results", "git", "created", "env", "time_s", "compile_s"):
        assert k in doc
    assert doc["machine"]["cpu_count"] >= 1 and doc["versions"]["numpy"] == np.__version__
    assert doc["bounds"]["gemm_flops"]["float64"] > 0 and doc["bounds"]["gemm_n"] == 1024
    assert all(v > 0 for v in doc["bounds"]["copy_bytes_per_s"].values()) and doc["bounds"]["copy_bytes_per_s"]
    rows = {(r["op"], r["backend"]): r for r in doc["results"]}
    assert set(rows) == {(op, b) for op in ("conv.fwd", "conv.fwd+bwd", "maxpool.fwd") for b in (mock, REF)}
    r = rows[("conv.fwd", mock)]
    assert r["status"] == "ok" and r["median_s"] > 0 and r["p25_s"] <= r["median_s"] <= r["p75_s"]
    assert r["repeats"] == runner.MODES["quick"].min_rounds and r["check_s"] > 0 and r["warmup_s"] > 0
    assert r["rate_unit"] == "GFLOP/s" and r["bound"] == "gemm_peak" and r["pct_of_bound"] > 0
    assert r["speedup_vs_reference"] > 0
    assert r["flops"] == workloads.BENCH_CONV_SHAPES["seed"].flops
    assert rows[("conv.fwd+bwd", mock)]["flops"] == 3 * r["flops"]
    pool = rows[("maxpool.fwd", mock)]
    assert pool["bound"] == "copy_bandwidth" and pool["rate_unit"] == "GB/s"
    ws = doc["bounds"]["copy_working_set"]["maxpool.fwd seed float64"]
    assert ws == pool["bytes"]  # (a forward touches what it moves: the input and the output)
    assert pool["bound_rate"] * 1e9 == pytest.approx(doc["bounds"]["copy_bytes_per_s"][str(ws)])
    assert rows[("conv.fwd", REF)]["status"] == "ref"

    text = md.read_text()
    assert "| op | shape | dims |" in text and "% of GEMM peak" in text and "% of copy bandwidth" in text
    assert f"| {mock} |" in text and "---:" in text


def test_every_registered_backend_is_benchmarked(mock, capsys):
    """No backend is named in the runner: a newly registered one shows up by itself."""
    wl = runner.select_workloads(["dense.fwd"], None, ["float32"])
    out = runner.run_benchmark(wl, backends=None, mode=runner.MODES["quick"], progress=False)
    names = {r.backend for r in out["results"]}
    assert set(fastnn.available_backends()) <= names and runner.AUTO not in names
    assert (workloads.TORCH in names) == (workloads.torch_module() is not None)
    assert all(r.status in ("ok", "ref") or r.status.startswith("skipped") for r in out["results"])


def test_wrong_backend_is_flagged_mismatch(wrong_mock, capsys):
    rc, out, err = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", f"{wrong_mock},{REF}")
    assert rc == 1
    row = _lines(out, wrong_mock)
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


# ---------------------------------------------------------------- skipped rows, 100 columns


def test_skipped_reference_rows_are_hidden_unless_asked(mock, capsys, tmp_path):
    j = tmp_path / "r.json"
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", f"{mock},{REF}", "--ref-budget", "0",
                      "--json", str(j))
    assert rc == 0
    assert _lines(out, REF) == []  # hidden ...
    assert "1 skipped reference row(s) hidden" in out and "--show-skipped" in out
    assert "~" in _lines(out, mock)[0]  # the speed-up is against the estimate
    ref = [r for r in json.loads(j.read_text())["results"] if r["backend"] == REF]
    assert len(ref) == 1 and ref[0]["status"].startswith("skipped (est. ")  # ... but kept in the JSON
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", f"{mock},{REF}", "--ref-budget", "0",
                      "--show-skipped")
    assert rc == 0
    assert "skipped (est. " in _lines(out, REF)[0] and "hidden" not in out


def test_default_output_fits_100_columns(mock, tmp_path, capsys):
    old = tmp_path / "old.json"
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv,maxpool", "--backends", f"{mock},{REF}", "--json", str(old))
    assert rc == 0
    assert max(len(l) for l in out.splitlines()) <= 100, max(out.splitlines(), key=len)
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv,maxpool", "--backends", f"{mock},{REF}", "--compare", str(old))
    assert rc == 0 and "new/old" in out
    assert max(len(l) for l in out.splitlines()) <= 100, max(out.splitlines(), key=len)


def _row(**kw):
    base = dict(op="conv.fwd+bwd", family="conv", pass_="fwd+bwd", shape="pointwise", dims="32x28x28x256 f1 K64 s1 p0",
                dtype="float64", backend="a-long-backend-name", median_s=123.456, p25_s=100.0, p75_s=150.0,
                min_s=90.0, max_s=200.0, repeats=5, calls_per_repeat=1, rate=12345.6, rate_unit="GFLOP/s",
                bound="gemm_peak", pct_of_bound=104.0, suspect="above", speedup_vs_reference=123456.0,
                speedup_vs_reference_estimated=True, speedup_vs_torch=123.4, speedup_vs_torch_min=100.2,
                speedup_vs_torch_max=150.9, status="MISMATCH", note="x" * 300, old_median_s=1.0,
                ratio_vs_old=123.45, verdict="slower", threshold=0.1, compared=True)
    base.update(kw)
    return ResultRow(**base)


@pytest.mark.parametrize("compare", [False, True])
def test_text_table_drops_columns_to_fit(compare):
    """Wide cells everywhere: optional columns go (vs ref first), every line stays within 100."""
    rows = [_row(), _row(backend="torch", layout="channels_last", speedup_vs_torch=None), _row(shape="seed")]
    text = report.format_text(rows, compare=compare)
    notes = report.footnotes(rows)
    assert max(len(l) for l in text.splitlines() + notes) <= 100
    head = [l for l in text.splitlines() if l.startswith("shape ")][0]
    assert "vs torch" in head and "%GEMM" in head and ("new/old" in head) == compare
    assert "vs ref" not in head  # dropped first
    assert report.format_text(rows[:1], width=400).splitlines()[-1].count("~123456x") == 1  # kept when it fits


# ------------------------------------------------------------------------- % of the bound


def test_share_above_100_percent_is_marked_suspect(capsys):
    w = runner.select_workloads(["conv.fwd"], ["seed"], ["float64"])[0]
    fast = ResultRow(op=w.op, family=w.family, pass_=w.pass_, shape=w.shape, dims=w.dims, dtype="float64",
                     backend="x", flops=w.flops, median_s=w.flops / 2e9)  # 2 GFLOP/s
    bounds = {"gemm_flops": {"float64": 1e9}, "copy_bytes_per_s": {}}  # a 1 GFLOP/s "peak"
    r = runner._derive(fast, bounds, [fast])
    assert r.pct_of_bound == pytest.approx(200.0) and r.suspect and "GEMM peak" in r.suspect
    ok = runner._derive(fast, {"gemm_flops": {"float64": 4e9}, "copy_bytes_per_s": {}}, [fast])
    assert ok.pct_of_bound == pytest.approx(50.0) and ok.suspect is None
    text = report.format_text([r, ok])
    assert "200%?" in text and " 50%" in text and "50%?" not in text
    assert any(n.startswith("?: 1 row(s) above 100%") for n in report.footnotes([r, ok]))
    assert r.as_dict()["suspect"] and ok.as_dict()["suspect"] is None
    pool_w = runner.select_workloads(["maxpool.fwd"], ["seed"], ["float64"])[0]
    p = ResultRow(op=pool_w.op, family=pool_w.family, pass_=pool_w.pass_, shape="seed", dims=pool_w.dims,
                  dtype="float64", backend="x", bytes=pool_w.bytes, median_s=pool_w.bytes / 3e9)
    pr = runner._derive(p, {"gemm_flops": {}, "copy_bytes_per_s": {str(int(pool_w.bytes)): 2e9}}, [p])
    assert pr.bound == "copy_bandwidth" and pr.pct_of_bound == pytest.approx(150.0) and "copy bandwidth" in pr.suspect


def test_copy_bound_of_a_backward_is_measured_on_its_working_set():
    """Max pooling's forward+backward moves the input three times but touches four arrays once:
    the copy is measured on the arrays' size, the share counts every byte moved."""
    fwd, both = runner.select_workloads(["maxpool"], ["p3s2"], ["float32"])
    assert fwd.working_set == fwd.bytes
    assert both.working_set == 2 * fwd.bytes and both.bytes > both.working_set
    r = ResultRow(op=both.op, family=both.family, pass_=both.pass_, shape="p3s2", dims=both.dims, dtype="float32",
                  backend="x", bytes=both.bytes, median_s=1.0)
    bounds = {"gemm_flops": {}, "copy_bytes_per_s": {str(int(both.working_set)): 1e9, str(int(both.bytes)): 1.0},
              "copy_working_set": {"maxpool.fwd+bwd p3s2 float32": int(both.working_set)}}
    assert runner._derive(r, bounds, [r]).bound_rate == 1.0  # GB/s: the working set's, not the traffic's


def test_bounds_are_measured_as_the_kernels_use_the_machine():
    """The GEMM square is the same in every mode, and the copy's working set follows the kernel's size."""
    assert all("gemm_n" not in f.name for f in runner.dataclasses.fields(runner.Mode))
    assert timing.GEMM_N == 1024
    assert timing.gemm_peak(np.float32, n=64) > 0
    small, big = timing.copy_bandwidth(64 * 1024, threads=2), timing.copy_bandwidth(8 * 2 ** 20, threads=1)
    assert small > 0 and big > 0


def test_bounds_are_measured_more_than_once_and_the_best_kept(monkeypatch, mock):
    peaks = iter([1e9, 5e9, 2e9, 3e9, 4e9, 1e9, 1e9])
    copies = iter([1e9, 3e9, 2e9, 1e9])
    gemm_calls, copy_calls = [], []
    monkeypatch.setattr(runner, "gemm_peak", lambda dt: gemm_calls.append(dt) or next(peaks))
    monkeypatch.setattr(runner, "copy_bandwidth", lambda n, threads: copy_calls.append(n) or next(copies))
    monkeypatch.setattr(runner, "REMEASURE_S", 0.0)
    wl = runner.select_workloads(["conv", "maxpool.fwd"], ["seed"], ["float64"])
    out = runner.run_benchmark(wl, backends=[mock], mode=runner.MODES["quick"], progress=False)
    assert len(gemm_calls) == 1 + 2 + 1  # before, before each conv workload, after
    assert out["bounds"]["gemm_flops"]["float64"] == 5e9  # the best of them
    assert len(copy_calls) == 2 and list(out["bounds"]["copy_bytes_per_s"].values()) == [3e9]  # first use, after


# ------------------------------------------------------------------------------- --compare


def _timed(median, spread=0.0, repeats=5, **kw):
    """A row timed ``repeats`` times within ``median * (1 -+ spread)`` (quartiles at half that)."""
    return ResultRow(op="conv.fwd", family="conv", pass_="fwd", shape="cifar", dims="d", dtype="float32",
                     backend="numba", median_s=median, p25_s=median * (1 - spread / 2), p75_s=median * (1 + spread / 2),
                     min_s=median * (1 - spread), max_s=median * (1 + spread), repeats=repeats, calls_per_repeat=1, **kw)


@pytest.mark.parametrize("new, old, expected", [
    (_timed(1.20, 0.02), _timed(1.00, 0.02), "slower"),  # 20% slower, tight repeats
    (_timed(0.80, 0.02), _timed(1.00, 0.02), "faster"),
    (_timed(1.20, 0.30), _timed(1.00, 0.30), "same"),  # 20%, the ranges overlapping
    (_timed(1.04, 0.00), _timed(1.00, 0.00), "same"),  # under the 5% noise floor
    (_timed(2.00, 0.02, repeats=1), _timed(1.00, 0.02), "unknown"),  # one repeat: no spread to tell
    (_timed(1.50, 0.60), _timed(1.00, 0.05), "same"),  # beyond the floor but the new range overlaps
    (_timed(1.50, 0.10), _timed(1.00, 0.10), "slower"),  # ranges 1.35-1.65 and 0.90-1.10: apart
])
def test_compare_verdict_uses_the_spread(new, old, expected):
    v, threshold = report.verdict(new, old)
    assert v == expected
    if v in ("slower", "faster", "same"):
        assert threshold >= report.NOISE_FLOOR
    out = report.attach_comparison([new], [old])[0]
    assert out.verdict == expected and out.ratio_vs_old == pytest.approx(new.median_s / old.median_s)
    assert out.as_dict()["verdict"] == expected


def test_compare_uses_pytorch_as_the_control_for_host_drift():
    """PyTorch's rows cannot move with a fastnn change: when they moved, the summary says the host drifted."""
    old = [_timed(1.0, 0.01).replace(backend="numba"), _timed(1.0, 0.01).replace(backend=workloads.TORCH)]
    steady = report.attach_comparison([_timed(1.0, 0.01).replace(backend="numba"),
                                       _timed(1.01, 0.01).replace(backend=workloads.TORCH)], old)
    assert "drifted" not in report.comparison_summary(steady)
    drifted = report.attach_comparison([_timed(2.0, 0.01).replace(backend="numba"),
                                        _timed(2.0, 0.01).replace(backend=workloads.TORCH)], old)
    text = report.comparison_summary(drifted)
    assert "2 SLOWER" in text and "1 of PyTorch's 1 rows, which no fastnn change can move, changed too" in text
    assert "the host's speed drifted" in text and max(len(l) for l in text.splitlines()) <= 100


def test_compare_noise_floor_is_an_option():
    new, old = _timed(1.08), _timed(1.00)
    assert report.verdict(new, old, noise=0.05)[0] == "slower"
    assert report.verdict(new, old, noise=0.10)[0] == "same"


def test_compare_marks_regressions(tmp_path, capsys, mock):
    old = tmp_path / "old.json"
    rc, _, _ = _run(capsys, *TINY, "--ops", "maxpool.fwd", "--backends", f"{mock},{REF}", "--json", str(old))
    assert rc == 0
    doc = json.loads(old.read_text())
    for r in doc["results"]:
        scale = 0.1 if r["backend"] == mock else 10  # earlier 10x faster (now a regression) / 10x slower
        for k in ("median_s", "p25_s", "p75_s", "min_s", "max_s"):
            r[k] *= scale
    old.write_text(json.dumps(doc))
    new = tmp_path / "new.json"
    rc, out, _ = _run(capsys, *TINY, "--ops", "maxpool.fwd", "--backends", f"{mock},{REF}",
                      "--compare", str(old), "--json", str(new))
    assert rc == 0
    assert "new/old" in out
    assert "SLOWER" in _lines(out, mock)[0] and "faster" in _lines(out, REF)[0]
    assert "1 SLOWER and 1 faster beyond the noise" in out
    rows = json.loads(new.read_text())["results"]
    assert [r for r in rows if r["backend"] == mock][0]["verdict"] == "slower"


def test_compare_warns_when_the_runs_differ(tmp_path, capsys, mock):
    old = tmp_path / "old.json"
    rc, _, _ = _run(capsys, *TINY, "--ops", "avgpool.fwd", "--backends", mock, "--json", str(old))
    assert rc == 0
    rc, out, err = _run(capsys, *TINY, "--ops", "avgpool.fwd", "--backends", mock, "--compare", str(old))
    assert rc == 0 and "the runs differ" not in out + err  # same machine, threads, versions, switches
    doc = json.loads(old.read_text())
    doc["threads"]["numba"] = 64
    doc["versions"]["numpy"] = "0.0.1"
    doc["machine"]["cpu"] = "Another CPU"
    doc["env"]["FASTNN_NUMBA_SLP"] = "0"
    doc["mode"]["name"] = "full"
    doc["bounds"]["gemm_flops"] = {"float64": 1.0}
    old.write_text(json.dumps(doc))
    rc, out, err = _run(capsys, *TINY, "--ops", "avgpool.fwd", "--backends", mock, "--compare", str(old))
    assert rc == 0
    for what in ("numba threads: 64 before", "numpy version: '0.0.1' before", "machine cpu: 'Another CPU' before",
                 "$FASTNN_NUMBA_SLP: '0' before, None now", "mode: full before, quick now"):
        assert what in out and what in err, what


def test_environment_differences_of_documents():
    a = {"machine": {"cpu": "X", "cpu_count": 2}, "threads": {"numba": 2, "torch": 2, "blas": [
        {"internal_api": "openblas", "num_threads": 2}]}, "versions": {"numba": "0.68.1"}, "env": {},
         "mode": {"name": "default"}, "bounds": {"gemm_flops": {"float32": 100e9}}}
    assert report.environment_differences(a, a) == []
    b = json.loads(json.dumps(a))
    b["threads"]["blas"][0]["num_threads"] = 1
    b["bounds"]["gemm_flops"]["float32"] = 60e9
    b["env"]["OPENBLAS_NUM_THREADS"] = "1"
    got = report.environment_differences(a, b)
    assert any(d.startswith("BLAS threads: 'openblas 2' before, 'openblas 1' now") for d in got)
    assert any("GEMM peak moved from 100 to 60 GFLOP/s" in d for d in got)
    assert any(d.startswith("$OPENBLAS_NUM_THREADS") for d in got)
    v1 = {k: v for k, v in a.items() if k != "env"}  # a schema-1 file recorded no switches
    assert any(d.startswith("the earlier run did not record its environment switches (now: OPENBLAS_NUM_THREADS=1")
               for d in report.environment_differences(v1, b))


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


# The recorded runs: their JSON is the format ``--json`` wrote and ``--compare`` reads.
RECORDED = sorted((pathlib.Path(__file__).parent.parent / "docs" / "bench").glob("*.json"))


def test_recorded_runs_exist():
    assert len(RECORDED) >= 9


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_recorded_rows_read_back_unchanged(path):
    """Every row of a committed run (schema 1 or 2) reads into a ResultRow and writes back to the
    same JSON object, key order included."""
    rows = json.loads(path.read_text())["results"]
    for r in rows:
        again = ResultRow.from_dict(r).as_dict()
        assert list(again) == list(r) and again == r


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_compare_with_each_recorded_run(path, capsys, mock):
    rc, out, err = _run(capsys, *TINY, "--ops", "maxpool.fwd", "--backends", f"{mock},{REF}", "--compare", str(path))
    assert rc == 0, err
    assert "new/old" in out and "compared with the earlier run: " in out


def test_json_rows_have_the_schema_keys(tmp_path, capsys, mock):
    """A fresh run's rows (timed, skipped, compared) have exactly the schema-2 keys, in order."""
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    rc, _, _ = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", f"{mock},{REF}", "--ref-budget", "0",
                    "--json", str(first))
    assert rc == 0
    rc, _, _ = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", mock, "--compare", str(first),
                    "--json", str(second))
    assert rc == 0
    plain, compared = json.loads(first.read_text())["results"], json.loads(second.read_text())["results"]
    assert any(r["status"] == "ok" for r in plain) and any(r["status"].startswith("skipped") for r in plain)
    for r in plain + compared:
        timed = r["median_s"] is not None
        keys = RUN_KEYS + (SPREAD_KEYS if timed else ()) + DERIVED_KEYS + (COMPARED_KEYS if r in compared else ())
        assert tuple(r) == keys


# ---------------------------------------------------------------------------------- the plot


def test_plot(tmp_path, capsys, mock):
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd,avgpool.fwd", "--backends", f"{mock},{REF}", "--plot", str(png))
    assert rc == 0, out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "share of the bound, 2 panels" in out


def test_plot_draws_shares_not_reference_speedups():
    pytest.importorskip("matplotlib")
    rows = [_row(backend="numba", pct_of_bound=60.0, suspect=None, op="conv.fwd", shape="cifar"),
            _row(backend="torch", pct_of_bound=120.0, op="conv.fwd", shape="cifar"),
            _row(backend=REF, pct_of_bound=0.01, op="conv.fwd", shape="cifar")]
    buf = io.BytesIO()
    assert report.plot(rows, buf, format="png") == "share of the bound, 1 panels"
    assert buf.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="nothing to plot"):
        report.plot([_row(pct_of_bound=None)], io.BytesIO(), format="png")


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rc, out, err = _run(capsys, *TINY, "--plot", str(tmp_path / "p.png"))
    assert rc == 2
    assert "matplotlib" in err and "pip install" in err
    assert out == ""  # refused before running anything


# ------------------------------------------------------------------------------ output paths


@pytest.mark.parametrize("flag", ["--json", "--markdown", "--plot"])
def test_unwritable_output_is_refused_before_the_run(flag, capsys, monkeypatch):
    if flag == "--plot":
        pytest.importorskip("matplotlib")
    monkeypatch.setattr(runner, "run_benchmark", lambda *a, **k: pytest.fail("the run started"))
    rc, out, err = _run(capsys, *TINY, flag, "/nonexistent/dir/x.png")
    assert rc == bench_cli.EXIT_OUTPUT == 3 and rc != bench_cli.EXIT_FAILED
    assert f"{flag} /nonexistent/dir/x.png: its directory /nonexistent/dir does not exist" in err
    assert "nothing was measured" in err and out == ""


def test_bad_output_choices_are_refused(tmp_path, capsys):
    rc, _, err = _run(capsys, *TINY, "--json", str(tmp_path))
    assert rc == 3 and "is a directory" in err
    same = str(tmp_path / "x")
    rc, _, err = _run(capsys, *TINY, "--json", same, "--markdown", same)
    assert rc == 3 and "the same file as --json" in err
    if pytest.importorskip("matplotlib"):
        rc, _, err = _run(capsys, *TINY, "--plot", str(tmp_path / "plot.nosuchformat"))
        assert rc == 3 and "unknown image type 'nosuchformat'" in err
    assert list(tmp_path.iterdir()) == []  # the checks leave nothing behind


def test_failed_write_keeps_the_results(tmp_path, capsys, monkeypatch, mock):
    """A write that fails at the end (here: the directory is gone by then) goes to a fallback file."""
    gone = tmp_path / "gone"
    gone.mkdir()
    target = gone / "r.json"
    real_run = runner.run_benchmark

    def run_then_remove_dir(*a, **k):
        out = real_run(*a, **k)
        gone.rmdir()
        return out

    monkeypatch.setattr(bench_cli, "run_benchmark", run_then_remove_dir)
    monkeypatch.setattr(bench_cli, "fallback_path", lambda path: str(tmp_path / "fallback.json"))
    rc, out, err = _run(capsys, *TINY, "--ops", "avgpool.fwd", "--backends", mock, "--json", str(target))
    assert rc == bench_cli.EXIT_OUTPUT
    assert f"--json {target} could not be written" in err and f"saved to {tmp_path / 'fallback.json'}" in err
    doc = json.loads((tmp_path / "fallback.json").read_text())
    assert [r["backend"] for r in doc["results"]] == [mock] and doc["results"][0]["median_s"] > 0


def test_fallback_path_is_writable(tmp_path, monkeypatch):
    from fastnn import _cache

    monkeypatch.setattr(_cache, "cache_dir", lambda: str(tmp_path))
    p = bench_cli.fallback_path("/nonexistent/run.json")
    assert p.startswith(str(tmp_path / "bench")) and p.endswith("-run.json")
    assert bench_cli.check_output_path(p) is None


def test_interrupted_run_keeps_what_was_measured(tmp_path, capsys, monkeypatch, mock):
    real = runner._run_workload
    calls = []

    def stop_at_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "_run_workload", stop_at_second)
    j = tmp_path / "r.json"
    rc, out, err = _run(capsys, *TINY, "--ops", "avgpool", "--backends", mock, "--json", str(j))
    assert rc == 130 and "interrupted" in err
    doc = json.loads(j.read_text())
    assert doc["interrupted"] is True and [r["op"] for r in doc["results"]] == ["avgpool.fwd"]


# -------------------------------------------------------------------- auto, torch, --tune


def test_auto_is_a_column_of_its_own(mock, capsys, tmp_path):
    j = tmp_path / "r.json"
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd+bwd", "--backends", f"auto,{mock}", "--json", str(j))
    assert rc == 0, out
    rows = {r["backend"]: r for r in json.loads(j.read_text())["results"]}
    assert set(rows) == {"auto", mock}
    default = fastnn.available_backends("conv_forward")[0]
    assert rows["auto"]["resolved"] == default and rows["auto"]["status"] == "ok" and rows["auto"]["median_s"] > 0
    assert _lines(out, "auto")[0].split()[2] == f"auto:{default}"


def test_auto_is_checked_with_the_backend_it_picks(capsys):
    """auto resolving to a wrong backend is a MISMATCH of the auto row."""
    _register_mock("wrongtop", corrupt=_spoil_conv, priority=10 ** 6)
    try:
        rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", "auto")
    finally:
        _dispatch.unregister_backend("wrongtop")
    assert rc == 1
    assert "MISMATCH" in _lines(out, "auto")[0] and "auto:wrongtop" in _lines(out, "auto")[0]


def test_auto_is_checked_with_the_planned_kernel_for_the_full_shape(capsys, monkeypatch):
    """The plan names a (wrong) backend for the full shape's key only: auto's check on the
    reduced shape still runs that backend, and finds the mismatch."""
    _register_mock("wrongplanned", corrupt=_spoil_conv)
    full = runner.select_workloads(["conv.fwd"], ["seed"], ["float64"])[0].params()["conv_forward"]
    saved = _dispatch._planner
    _dispatch.set_planner(lambda op, p: "wrongplanned" if p == full else None)
    try:
        rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd", "--backends", "auto")
        assert _dispatch._planner("conv_forward", full) == "wrongplanned"  # (the bench put this planner back)
    finally:
        _dispatch.set_planner(saved)
        _dispatch.unregister_backend("wrongplanned")
    assert rc == 1
    line = _lines(out, "auto")[0]
    assert "auto:wrongplanned" in line and "MISMATCH" in line


def test_auto_joins_the_default_set_when_a_plan_exists(monkeypatch):
    from fastnn import _plan

    monkeypatch.setattr(_plan, "plans", lambda: {})
    assert bench_cli._backends(None, tune=False) is None
    assert bench_cli._backends(None, tune=True)[0] == "auto"
    monkeypatch.setattr(_plan, "plans", lambda: {"key": {"backend": "numba"}})
    names = bench_cli._backends(None, tune=False)
    assert names[0] == "auto" and set(fastnn.available_backends()) <= set(names)


def test_tune_runs_the_planner_on_the_bench_shapes(monkeypatch, capsys, mock, tmp_path):
    seen = []

    def fake_tune(calls, *, budget_s, **kw):
        calls = list(calls)
        seen.extend((op, p, budget_s) for op, p in calls)
        return {f"{op}|key": {"backend": mock} for op, p in calls}

    monkeypatch.setattr(fastnn, "tune", fake_tune)
    j = tmp_path / "r.json"
    rc, out, err = _run(capsys, *TINY, "--ops", "conv,maxpool.fwd", "--tune", "--json", str(j),
                        "--backends", f"auto,{mock}")
    assert rc == 0, err
    ops = [op for op, _, _ in seen]
    assert ops == ["conv_forward", "pool_forward", "conv_backward"]  # each key once, forwards first
    assert all(b == runner.MODES["quick"].tune_key_s for _, _, b in seen)
    assert seen[0][1].K == workloads.BENCH_CONV_SHAPES["seed"].K and seen[1][1].mode == "max"
    doc = json.loads(j.read_text())
    assert doc["tuned"]["tuned"] == 3 and doc["tuned"]["left"] == 0 and doc["time_s"]["tuning"] >= 0
    assert "tuned 3 of 3 keys" in err


def test_tune_stops_at_its_budget(monkeypatch, capsys, mock):
    seen = []

    def slow_tune(calls, *, budget_s, **kw):
        seen.append(list(calls))
        import time

        time.sleep(0.05)
        return {}

    monkeypatch.setattr(fastnn, "tune", slow_tune)
    rc, _, err = _run(capsys, *TINY, "--ops", "conv", "--tune", "--tune-budget", "0.01", "--backends", mock)
    assert rc == 0 and len(seen) == 1
    assert "tuned 1 of 2 keys" in err and "1 left untuned" in err


def test_torch_anchor(capsys, tmp_path):
    if workloads.torch_module() is None:
        pytest.skip("torch not installed")
    j = tmp_path / "r.json"
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd+bwd,maxpool.fwd+bwd", "--backends", "torch,reference",
                      "--json", str(j))
    assert rc == 0, out
    rows = _lines(out, "torch")
    assert len(rows) == 2 and all(" ok" in l for l in rows)
    assert all("[NCHW]" in l or "[CL]" in l for l in rows)
    res = json.loads(j.read_text())["results"]
    assert all(r["layout"] in ("NCHW", "channels_last") for r in res if r["backend"] == "torch")


def test_speedups_against_torch_are_per_round_ratios(monkeypatch):
    """The rows' vs-torch figures are the median and range of the ratios of the same rounds."""
    rounds = {"a": [1.0, 2.0, 4.0], TORCH_NAME: [2.0, 2.0, 2.0]}

    def fake_rounds(calls, first, **kw):
        return {n: list(rounds[n]) for n in calls}, {n: 1 for n in calls}

    monkeypatch.setattr(runner, "alternating_rounds", fake_rounds)
    w = runner.select_workloads(["maxpool.fwd"], ["seed"], ["float64"])[0]
    ctx = runner._Context(runner.MODES["quick"], runner.Clock(), runner.Progress(1, enabled=False),
                          {"gemm_flops": {}, "copy_bytes_per_s": {}, "copy_threads": 1})
    small = w.reduced()
    truth = runner._ground_truth(w, small, small.make())
    monkeypatch.setattr(runner, "_prepare_torch",
                        lambda w, data, truth, ctx: runner._Candidate(TORCH_NAME, fn=lambda: None, first_s=1.0))
    monkeypatch.setattr(runner, "_prepare_backend",
                        lambda w, b, data, truth, ctx: runner._Candidate(b, fn=lambda: None, first_s=1.0))
    monkeypatch.setattr(runner._Context, "copy_bound", lambda self, w: 1.0)
    rows = runner._run_workload(w, ["a"], False, True, ctx)
    a = [r for r in rows if r.backend == "a"][0]
    assert (a.speedup_vs_torch, a.speedup_vs_torch_min, a.speedup_vs_torch_max) == (1.0, 0.5, 2.0)
    assert a.median_s == 2.0 and a.min_s == 1.0 and a.max_s == 4.0 and a.repeats == 3
    assert [r for r in rows if r.backend == TORCH_NAME][0].speedup_vs_torch is None


TORCH_NAME = workloads.TORCH


# ------------------------------------------------------------------ timing helpers, accounting


def test_ratio_stats():
    assert timing.ratio_stats([2.0, 3.0, 8.0], [1.0, 1.0, 2.0]) == (3.0, 2.0, 4.0)
    assert timing.ratio_stats([1.0, 1.0], [2.0, 4.0]) == (0.375, 0.25, 0.5)
    assert timing.ratio_stats([], []) is None
    assert timing.ratio_stats([1.0, 2.0, 3.0], [1.0]) == (1.0, 1.0, 1.0)  # only rounds both have


def test_alternating_rounds_alternate_and_stop():
    order = []

    def block(fn, n, settle_s):
        order.append(fn())
        return {"a": 1.0, "b": 2.0, "c": 3.0}[order[-1]]

    calls = {name: (lambda name=name: name) for name in "abc"}
    times, n = timing.alternating_rounds(calls, {}, min_rounds=4, max_rounds=4, target_s=0, block_s=0,
                                         settle_s=0, block=block)
    assert "".join(order) == "abccbaabccba"
    assert times == {"a": [1.0] * 4, "b": [2.0] * 4, "c": [3.0] * 4} and n == {"a": 1, "b": 1, "c": 1}
    errors = []

    def failing(fn, n, settle_s):
        if fn() == "b":
            raise RuntimeError("b broke")
        return 1.0

    times, _ = timing.alternating_rounds(calls, {}, min_rounds=3, max_rounds=3, target_s=0, block_s=0,
                                         settle_s=0, block=failing, on_error=lambda name, e: errors.append(name))
    assert errors == ["b"] and times["b"] == [] and len(times["a"]) == len(times["c"]) == 3


def test_block_length_follows_the_call_time():
    sizes = []

    def block(fn, n, settle_s):
        sizes.append(n)
        return 1e-4  # a warm call takes 0.1 ms

    timing.alternating_rounds({"a": lambda: None}, {"a": 0.5}, min_rounds=2, max_rounds=2, target_s=0,
                              block_s=0.01, settle_s=0, block=block)
    assert sizes == [1, 100]  # the warm-up's 0.5 s said 1 call; the first round's 0.1 ms says 100


def test_settle_time_follows_the_workload():
    """Untimed calls before a block: at most settle_s, and no more than SETTLE_CALLS of the slowest call."""
    settles = []

    def block(fn, n, settle_s):
        settles.append(settle_s)
        return 1e-4

    timing.alternating_rounds({"a": lambda: None, "b": lambda: None}, {"a": 0.001, "b": 0.002}, min_rounds=2,
                              max_rounds=2, target_s=0, block_s=0, settle_s=1.0, block=block)
    assert settles[:2] == [pytest.approx(timing.SETTLE_CALLS * 0.002)] * 2  # from the warm-up calls
    assert settles[2:] == [pytest.approx(timing.SETTLE_CALLS * 1e-4)] * 2  # from the first round
    settles.clear()
    timing.alternating_rounds({"a": lambda: None}, {"a": 10.0}, min_rounds=1, max_rounds=1, target_s=0, block_s=0,
                              settle_s=0.15, block=block)
    assert settles == [0.15]


def test_time_is_accounted_for(tmp_path, capsys, mock):
    j = tmp_path / "r.json"
    rc, out, _ = _run(capsys, *TINY, "--ops", "conv.fwd,avgpool", "--backends", f"{mock},{REF}", "--json", str(j))
    assert rc == 0
    doc = json.loads(j.read_text())
    t = doc["time_s"]
    assert set(t) == set(runner.TIME_CATEGORIES)
    assert sum(t.values()) == pytest.approx(doc["elapsed_s"], rel=1e-6)
    assert t["timed rounds"] > 0 and t["checks"] > 0 and t["warm-up"] > 0 and t["bounds"] > 0
    assert doc["compile_s"] is not None and doc["compile_s"] >= 0
    line = [l for l in out.splitlines() if l.startswith("time: ")][0]
    assert "s in all:" in line and "untimed (" in line


def test_clock_nests():
    c = runner.Clock()
    with c("checks"):
        with c("warm-up"):
            pass
    s = c.summary()
    assert s["checks"] >= 0 and s["warm-up"] >= 0 and set(s) == set(runner.TIME_CATEGORIES)
    assert sum(s.values()) == pytest.approx(c.elapsed(), abs=0.05)


def test_compile_clock_counts_numba_compiling():
    numba = pytest.importorskip("numba")
    firsts = []
    with timing.CompileClock(on_first=lambda: firsts.append(1)) as clock:
        @numba.njit(cache=False)
        def fresh(x):
            return x * 2 + 1

        fresh(3)
        fresh(4)  # (already compiled: no event)
    assert clock.available and clock.count >= 1 and clock.seconds > 0 and firsts == [1]
    before = clock.seconds

    @numba.njit(cache=False)
    def after(x):
        return x - 1

    after(1)  # the listener is gone
    assert clock.seconds == before


def test_first_run_notice(monkeypatch, capsys, mock):
    monkeypatch.setattr(bench_cli, "kernel_cache_cold", lambda: True)
    rc, _, err = _run(capsys, *TINY, "--ops", "avgpool.fwd", "--backends", mock)
    assert rc == 0 and "first run: compiling kernels" in err and "cached afterwards in" in err
    monkeypatch.setattr(bench_cli, "kernel_cache_cold", lambda: False)
    rc, _, err = _run(capsys, *TINY, "--ops", "avgpool.fwd", "--backends", mock)
    assert rc == 0 and "first run" not in err


def test_kernel_cache_cold_looks_for_compiled_kernels(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_cli, "_compiled_dir", lambda: str(tmp_path))
    assert bench_cli.kernel_cache_cold()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "k.nbi").write_bytes(b"")
    assert not bench_cli.kernel_cache_cold()


def test_quick_mode_runs_a_named_subset():
    quick = runner.MODES["quick"].shapes
    plan = bench_cli._plan(bench_cli_args("--quick"))
    assert {w.shape for w in plan.workloads} == set(quick)
    assert plan.shapes_note.startswith(f"{len(quick)} of {len(workloads.shape_names())} shapes ({', '.join(quick)}")
    plan = bench_cli._plan(bench_cli_args("--quick", "--shapes", "res_3x3"))
    assert {w.shape for w in plan.workloads} == {"res_3x3"} and plan.shapes_note is None
    assert {w.shape for w in bench_cli._plan(bench_cli_args()).workloads} == set(workloads.shape_names())


def bench_cli_args(*argv):
    from fastnn.cli import build_parser

    return build_parser().parse_args(["bench", *argv])


def test_progress_shows_time_left():
    plain = io.StringIO()
    p = runner.Progress(4, plain)
    p.update("a", "x")
    p.step()
    p.update("b", "y")
    p.close()
    lines = plain.getvalue().splitlines()
    assert lines[0].startswith("[0/4 ") and "left" not in lines[0]
    assert lines[1].startswith("[1/4 ") and "left] b" in lines[1]


def test_bench_progress_uses_the_one_progress_display():
    """The runner's progress is the shared display (fastnn._progress): a tqdm bar over the
    workloads on a terminal, one plain line per group elsewhere."""
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


# -------------------------------------------------------------- machine description, versions


def test_machine_info_from_py_cpuinfo_or_platform(monkeypatch):
    fake = {"brand_raw": "Fake CPU 9000", "arch": "X86_64", "flags": ["avx2", "fma", "sse2"], "l2_cache_size": 1}
    info = timing.machine_info(cpu=fake)
    assert info["cpu"] == "Fake CPU 9000" and info["cpu_source"] == "py-cpuinfo" and info["flags"] == ["avx2", "fma"]
    monkeypatch.setitem(sys.modules, "cpuinfo", None)  # not installed
    assert timing._cpuinfo() is None
    info = timing.machine_info(cpu=None)
    assert info["cpu_source"] == "platform" and info["cpu"] and info["cpu_count"] >= 1


def test_the_bench_reads_no_proc_cpuinfo():
    src = pathlib.Path(timing.__file__).read_text()
    assert "/proc/cpuinfo" not in src and "get_cpu_info" in src


def test_versions_import_nothing():
    code = ("import sys; from fastnn.bench.timing import versions; v = versions(); "
            "print(v['numpy'] is not None, 'torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


def test_bench_extra_pulls_py_cpuinfo():
    text = (pathlib.Path(__file__).parent.parent / "pyproject.toml").read_text()
    bench = re.search(r"^bench = \[(.*?)\]", text, re.M | re.S).group(1)
    assert "py-cpuinfo" in bench and "threadpoolctl" in bench


def test_env_switches():
    env = {"FASTNN_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1", "HOME": "/root", "FASTNN_CACHE_DIR": "/x",
           "NUMBA_CACHE_DIR": "/y", "OMP_NUM_THREADS": "2"}
    assert timing.env_switches(env) == {"FASTNN_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"}


# ----------------------------------------------------------------------- selection and helpers


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "nosuchshape"], "unknown shape 'nosuchshape'"),
    (["--ops", "conv.sideways"], "unknown op 'conv.sideways'"),
    (["--dtypes", "float16"], "unknown dtype 'float16'"),
    (["--backends", "nosuchbackend"], "unknown backend 'nosuchbackend'"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--tune-budget", "0"], "--tune-budget must be positive"),
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


def test_inputs_are_shared_not_remade():
    """A workload's calls take the inputs made once (the runner makes them once per workload)."""
    w = runner.select_workloads(["conv.fwd+bwd"], ["seed"], ["float64"])[0]
    data = w.make()
    a = w.fastnn_call(REF, data)()
    b = w.fastnn_call({"conv_forward": REF, "conv_backward": REF}, data)()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert set(w.params(data)) == {"conv_forward", "conv_backward"}


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
