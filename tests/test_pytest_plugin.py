"""The pytest plugin (``fastnn_pytest``): ``pytest --fastnn-backend NAME`` runs the conformance
suite on a backend, one test item per check; without the option it adds nothing and imports
nothing of fastnn. Run as a subprocess of pytest in a temporary directory: through the
installed entry point, or with ``-p fastnn_pytest`` from a checkout (no reinstall)."""

import os
import pathlib
import subprocess
import sys

import pytest

import fastnn
from fastnn.testing import conformance

ROOT = pathlib.Path(fastnn.__file__).resolve().parents[1]

WRONG_BACKEND = '''
import numpy as np
import fastnn
from fastnn import _dispatch

REF = _dispatch.ground_truth_backend()
fastnn.register_backend("dropsnan", priority=-100)
for op in _dispatch.OPS:
    fastnn.register(op, "dropsnan")(_dispatch.kernel_of(op, REF))
fastnn.register("relu", "dropsnan")(lambda x, out: np.fmax(x, 0, out=out))  # NaN dropped
'''


def _load_args():
    """``-p fastnn_pytest`` where fastnn is not installed with its ``pytest11`` entry point (a
    checkout on the path); nothing where it is (pytest loads it then, and ``-p`` would register
    it a second time, under another name: an error)."""
    from importlib.metadata import entry_points

    installed = any(ep.value == "fastnn_pytest" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "fastnn_pytest"]


def _pytest(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "pytest", *_load_args(), "-p", "no:cacheprovider",
                           "-q", "-rf", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_importing_the_plugin_imports_nothing_of_fastnn():
    code = "import sys, fastnn_pytest; print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastnn', 'numba', 'numpy')))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_inert_without_the_option(tmp_path):
    (tmp_path / "test_own.py").write_text(
        "import sys\n\ndef test_own():\n    assert 'fastnn' not in sys.modules  # the plugin imported nothing\n")
    res = _pytest(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout and "fastnn[" not in res.stdout


def test_a_backend_runs_the_suite_one_item_per_check(tmp_path):
    (tmp_path / "test_own.py").write_text("def test_own():\n    assert True\n")
    ops = ["relu", "sigmoid_backward"]
    res = _pytest(tmp_path, "--fastnn-backend", "im2col", "--fastnn-ops", ",".join(ops), "-vv")
    assert res.returncode == 0, res.stdout + res.stderr
    n = len(conformance.checks("im2col", ops=ops))
    assert n > 5 and f"collected {n + 1} items" in res.stdout
    assert f"{n + 1} passed" in res.stdout
    assert "fastnn[im2col]::nan/relu/propagation PASSED" in res.stdout
    sel = _pytest(tmp_path, "--fastnn-backend", "im2col", "--fastnn-ops", "relu", "-k", "nan", "-vv")
    assert sel.returncode == 0 and "1 passed" in sel.stdout and "deselected" in sel.stdout, sel.stdout


def test_a_wrong_backend_fails_with_the_check_s_line(tmp_path):
    (tmp_path / "conftest.py").write_text(WRONG_BACKEND)
    res = _pytest(tmp_path, "--fastnn-backend", "dropsnan", "--fastnn-ops", "relu")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAILED fastnn[dropsnan]::nan/relu/propagation" in res.stdout
    assert "backend dropsnan: nan/relu/propagation: A[0] should be nan (NaN and Inf propagate), got 0.0" in res.stdout
    assert "FAILED fastnn[dropsnan]::matrix/relu/float64" in res.stdout and "max abs err" in res.stdout
    assert "3 failed" in res.stdout  # the mutation and thread checks pass


@pytest.mark.parametrize("args, said", [
    (["--fastnn-backend", "no_such_backend"], "unknown backend 'no_such_backend'; available backends:"),
    (["--fastnn-backend", "im2col", "--fastnn-ops", "conv_fwd"], "unknown op 'conv_fwd'; ops are zero_pad"),
    (["--fastnn-backend", "im2col", "--fastnn-ops", "relu", "--fastnn-kinds", "gradients"], "matches no checks"),
])
def test_usage_errors(tmp_path, args, said):
    res = _pytest(tmp_path, *args)
    assert res.returncode == 4, res.stdout + res.stderr  # pytest's usage error
    assert said in res.stderr
