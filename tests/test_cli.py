"""The ``fastnn`` command itself: ``python -m fastnn``, ``--version``, sub-command usage errors,
an unknown ``$FASTNN_BACKEND``, what ``fastnn info`` reads, and errors that say what to pass."""

import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import _dispatch, cli, data
from fastnn.cli import info

ROOT = str(pathlib.Path(fastnn.__file__).resolve().parents[1])  # this checkout's fastnn, not an installed one


def _python(*args, env_extra=None, code=None, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    env.update(env_extra or {})
    argv = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "fastnn", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _main_exit(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# --------------------------------------------------------------------- python -m, --version


def test_python_m_fastnn_version():
    res = _python("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"fastnn {fastnn.__version__}\n"


def test_version_in_process(capsys):
    code, out, _ = _main_exit(capsys, ["--version"])
    assert code == 0 and out == f"fastnn {fastnn.__version__}\n"


def test_python_m_fastnn_runs_the_command():
    res = _python()
    assert res.returncode == 2 and "usage: fastnn" in res.stdout and "COMMAND" in res.stdout
    res = _python("info", "--json")
    assert res.returncode == 0, res.stderr
    assert '"fastnn": "%s"' % fastnn.__version__ in res.stdout


# ------------------------------------------------------------------- usage of a sub-command


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_a_wrong_flag_reports_the_sub_commands_usage(capsys, command):
    code, _, err = _main_exit(capsys, [command, "--no-such-flag"])
    assert code == 2
    assert err.startswith(f"usage: fastnn {command} "), err
    assert f"fastnn {command}: error: unrecognized arguments: --no-such-flag" in err


def test_a_wrong_flag_of_train_from_the_shell(tmp_path):
    res = _python("train", "--iteration-count", "3", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("usage: fastnn train ") and "[--iterations N]" in res.stderr
    assert "fastnn train: error: unrecognized arguments: --iteration-count 3" in res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_a_wrong_top_level_flag_reports_the_top_level_usage(capsys):
    code, _, err = _main_exit(capsys, ["--no-such-flag"])
    assert code == 2 and err.startswith("usage: fastnn [-h] [--version] COMMAND")
    assert "fastnn: error: unrecognized arguments: --no-such-flag" in err


def test_parse_keeps_known_arguments():
    args = cli.parse(cli.build_parser(), ["train", "--model", "cnn", "--iterations", "3"])
    assert (args.command, args.model, args.iterations, args.epochs) == ("train", "cnn", 3, None)


# ----------------------------------------------------------------------- $FASTNN_BACKEND


def test_an_unknown_fastnn_backend_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(_dispatch, "_env_warned", set())
    fastnn.set_backend(None)
    monkeypatch.setenv("FASTNN_BACKEND", "nope")
    with pytest.warns(RuntimeWarning) as record:
        assert fastnn.get_backend() == "auto"
    (w,) = record
    message = str(w.message)
    assert "FASTNN_BACKEND='nope'" in message and "names no registered backend" in message
    assert all(name in message for name in fastnn.available_backends())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: no second warning for the same value
        A, _ = fastnn.relu(np.array([-1.0, 2.0]))
        assert fastnn.get_backend() == "auto"
    np.testing.assert_array_equal(A, [0.0, 2.0])
    assert _dispatch.resolve_name("relu") == _dispatch.resolve_name("relu", "auto")
    assert _dispatch.env_problem() == message
    monkeypatch.setenv("FASTNN_BACKEND", "nope2")
    with pytest.warns(RuntimeWarning, match="FASTNN_BACKEND='nope2'"):  # another value warns again
        fastnn.get_backend()
    monkeypatch.setenv("FASTNN_BACKEND", "reference")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fastnn.get_backend() == "reference" and _dispatch.env_problem() is None


def test_info_shows_an_unknown_fastnn_backend():
    res = _python("info", env_extra={"FASTNN_BACKEND": "nope"})
    assert res.returncode == 0, res.stderr
    assert "backend in force: auto\n  WARNING: FASTNN_BACKEND='nope' names no registered backend" in res.stdout
    assert "RuntimeWarning" not in res.stderr  # said once, in the report
    res = _python("info", env_extra={"FASTNN_BACKEND": "reference"})
    assert "backend in force: reference\n" in res.stdout and "WARNING" not in res.stdout


# ------------------------------------------------------------------------------ fastnn info


def test_info_shows_the_threads_poll_setting():
    from fastnn.backends.numba import spin, threads

    res = _python("info", env_extra={"FASTNN_SPIN_US": "40"})
    assert res.returncode == 0, res.stderr
    polls = spin.AVAILABLE and threads._usable_cpus() >= 2  # (x86-64, 2 usable CPUs or more)
    expected = "poll 40 us before blocking" if polls else "poll 0 us before blocking"
    res_off = _python("info", env_extra={"FASTNN_SPIN_US": "0"})
    assert "poll 0 us before blocking (FASTNN_SPIN_US)" in res_off.stdout
    assert f"{expected} (FASTNN_SPIN_US)" in res.stdout
    res = _python("info", env_extra={"FASTNN_SPIN_US": "soon"})  # a bad value is named, not a crash
    assert res.returncode == 0, res.stderr
    assert "invalid: FASTNN_SPIN_US must be a non-negative integer (microseconds) up to 1000000, got 'soon'" in res.stdout


def test_info_reads_versions_without_importing_them():
    res = _python(code="import sys\nfrom fastnn.cli import info\nd = info.collect()\n"
                       "print(d['numpy'], d['h5py'], d['dask'], 'torch' in sys.modules, 'h5py' in sys.modules, "
                       "'dask' in sys.modules)")
    assert res.returncode == 0, res.stderr
    numpy_version, h5py_version, dask_version, torch_imported, h5py_imported, dask_imported = res.stdout.split()
    assert numpy_version == np.__version__ and (torch_imported, h5py_imported, dask_imported) == ("False",) * 3
    from importlib import metadata

    try:
        expected_dask = metadata.version("dask")
    except metadata.PackageNotFoundError:
        expected_dask = "None"  # (the extra is not installed)
    assert h5py_version == metadata.version("h5py") and dask_version == expected_dask


def test_installed_version():
    from importlib import metadata

    assert info.installed_version("numpy") == metadata.version("numpy")
    assert info.installed_version("no-such-distribution-fastnn") is None


def test_import_fastnn_stays_light():
    res = _python(code="import sys, fastnn, fastnn.cli\n"
                       "print(sorted(m for m in ('torch', 'matplotlib', 'tqdm', 'h5py', 'dask', 'distributed') "
                       "if m in sys.modules))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


# --------------------------------------------------------------------------- missing data


def test_missing_data_says_how_to_pass_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    for call in (data.find_data_dir, data.load_dataset, data.load_cat_data):
        with pytest.raises(data.DataError) as exc:
            call()
        assert "--data" in str(exc.value) and "$FASTNN_DATA" in str(exc.value), call
    with pytest.raises(data.DataError, match=r"--data.*\$FASTNN_DATA"):
        data.load_dataset(tmp_path / "nowhere")
