"""``fastnn train``: the course's numbers on the real data, and the CLI on a tiny synthetic set."""

import io
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import fastnn
from fastnn import cli
from fastnn.cli import train as T
from fastnn.nn import trainer
from fastnn.testing import course

REPO = Path(__file__).resolve().parents[1]


def _real_data_dir():
    for d in (os.environ.get("FASTNN_DATA"), REPO / ".." / "shared" / "datasets"):
        if d and (Path(d) / "train_catvnoncat.h5").is_file() and (Path(d) / "test_catvnoncat.h5").is_file():
            return Path(d)
    return None


REAL = _real_data_dir()
needs_real = pytest.mark.skipif(
    REAL is None, reason="the course's train_catvnoncat.h5/test_catvnoncat.h5 are not in $FASTNN_DATA or ../shared/datasets"
)


def _write_set(path, prefix, x, y):
    with h5py.File(path, "w") as f:
        f[f"{prefix}_set_x"] = x
        f[f"{prefix}_set_y"] = y
        f["list_classes"] = np.array([b"non-cat", b"cat"])


@pytest.fixture
def tiny(tmp_path):
    """8x8 RGB images: 'cats' are bright in the top-left corner. 12 train, 6 test."""
    rng = np.random.default_rng(0)

    def make(m):
        y = np.arange(m) % 2
        x = rng.integers(0, 120, size=(m, 8, 8, 3))
        x[y == 1, :4, :4, :] += 120
        return x.astype(np.uint8), y.astype(np.int64)

    d = tmp_path / "data"
    d.mkdir()
    _write_set(d / "train_catvnoncat.h5", "train", *make(12))
    _write_set(d / "test_catvnoncat.h5", "test", *make(6))
    return d


def _train(capsys, *argv, on_batch=None):
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--quiet", *map(str, argv)])
    rc = T.run(args, on_batch=on_batch)
    out, err = capsys.readouterr()
    return rc, out, err


def _params(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k.startswith(("param/", "opt/"))}


def _log(out):
    return json.loads((Path(out) / "log.json").read_text())


# ------------------------------------------------------------------------ real data


@needs_real
def test_dnn_defaults_start_at_the_course_cost_and_descend(capsys, tmp_path):
    rc, out, err = _train(capsys, "--data", REAL, "--epochs", 4, "--out", tmp_path)
    assert rc == 0, err
    log = _log(tmp_path)
    assert log["config"]["layer_dims"] == [12288, 20, 7, 5, 1]
    assert round(log["log"]["cost"][0], 6) == 0.771749  # the course's "Cost after iteration 0"
    costs = log["log"]["cost"]
    assert all(b < a for a, b in zip(costs, costs[1:])), costs
    assert "train accuracy:" in out and "test accuracy:" in out


def _cost_lines(text):
    return [line for line in text.splitlines() if line.startswith("Cost after iteration ")]


@needs_real
def test_dnn_prints_the_course_iteration_lines(capsys, tmp_path):
    """`fastnn train --model dnn --iterations 201` prints the notebook's lines for iterations 0, 100 and 200."""
    args = cli.build_parser().parse_args(["train", "--model", "dnn", "--data", str(REAL), "--iterations", "201",
                                          "--out", str(tmp_path)])
    assert T.run(args) == 0
    out, err = capsys.readouterr()
    lines = _cost_lines(err)
    assert [line.split("  ")[0] for line in lines] == [course.course_cost_line(i) for i in (0, 100, 200)], err
    assert all("before this update" in line for line in lines)
    costs = _log(tmp_path)["log"]["cost"]
    assert len(costs) == 201 and [f"{costs[i]:f}" for i in (0, 100, 200)] == [course.L_LAYER_COSTS[i] for i in (0, 100, 200)]
    assert "time per iteration:" in out


@needs_real
def test_dnn_float32_cost_matches_float64(capsys, tmp_path):
    rc, _, err = _train(capsys, "--data", REAL, "--epochs", 1, "--dtype", "float32", "--out", tmp_path)
    assert rc == 0, err
    assert _log(tmp_path)["log"]["cost"][0] == pytest.approx(0.771749, abs=1e-5)
    assert all(v.dtype == np.float32 for v in _params(tmp_path / "params.npz").values())


# --------------------------------------------------------------------- tiny synthetic


@pytest.mark.parametrize("model", ["dnn", "cnn"])
def test_train_then_predict_on_a_tiny_set(capsys, tmp_path, tiny, model):
    out = tmp_path / "run"
    rc, stdout, err = _train(capsys, "--data", tiny, "--model", model, "--epochs", 3, "--batch-size", 5,
                             "--lr", 0.01, "--out", out)
    assert rc == 0, err
    for name in ("params.npz", "checkpoint.npz", "log.json"):
        assert (out / name).is_file(), name
    log = _log(out)
    assert len(log["log"]["cost"]) == 3 and log["config"]["model"] == model
    assert "train accuracy:" in stdout and "test accuracy:" in stdout and "time per epoch:" in stdout
    assert 0 <= log["summary"]["test_accuracy"] <= 1
    rc, stdout, err = _train(capsys, "--out", out, "--predict", tiny / "test_catvnoncat.h5")
    assert rc == 0, err
    assert stdout.count("p(cat)") == 6 and "accuracy:" in stdout


def test_cnn_float32_writes_float32(capsys, tmp_path, tiny):
    rc, _, err = _train(capsys, "--data", tiny, "--model", "cnn", "--dtype", "float32", "--epochs", 1, "--out", tmp_path)
    assert rc == 0, err
    params = _params(tmp_path / "checkpoint.npz")
    assert params and all(v.dtype == np.float32 for k, v in params.items() if k != "opt/t")


@pytest.mark.parametrize("model", ["dnn", "cnn"])
def test_resume_continues_exactly(capsys, tmp_path, tiny, model):
    common = ["--data", tiny, "--model", model, "--batch-size", 5, "--lr", 0.01]
    assert _train(capsys, *common, "--epochs", 3, "--out", tmp_path / "straight")[0] == 0
    assert _train(capsys, *common, "--epochs", 1, "--out", tmp_path / "split")[0] == 0
    rc, _, err = _train(capsys, "--data", tiny, "--epochs", 3, "--resume", "--out", tmp_path / "split")
    assert rc == 0, err
    a, b = _params(tmp_path / "straight" / "params.npz"), _params(tmp_path / "split" / "params.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _log(tmp_path / "straight")["log"]["cost"] == _log(tmp_path / "split")["log"]["cost"]


def test_ctrl_c_saves_the_last_finished_epoch(capsys, tmp_path, tiny):
    common = ["--data", tiny, "--model", "cnn", "--batch-size", 5, "--lr", 0.01]

    def interrupt(epoch, batch, n_batches):
        if epoch == 2 and batch == 2:  # in the middle of the third epoch
            raise KeyboardInterrupt

    rc, _, err = _train(capsys, *common, "--epochs", 4, "--out", tmp_path / "int", on_batch=interrupt)
    assert rc == T.EXIT_INTERRUPTED
    assert "--resume" in err
    ckpt = tmp_path / "int" / "checkpoint.npz"
    with np.load(ckpt) as f:
        assert len(json.loads(str(f["meta"]))["log"]["cost"]) == 2
    assert _train(capsys, *common, "--epochs", 2, "--out", tmp_path / "two")[0] == 0
    a, b = _params(ckpt), _params(tmp_path / "two" / "checkpoint.npz")
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # and resuming finishes the run as if never interrupted
    assert _train(capsys, *common, "--epochs", 4, "--out", tmp_path / "straight")[0] == 0
    assert _train(capsys, "--data", tiny, "--epochs", 4, "--resume", "--out", tmp_path / "int")[0] == 0
    a, b = _params(tmp_path / "int" / "params.npz"), _params(tmp_path / "straight" / "params.npz")
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_refuses_other_settings(capsys, tmp_path, tiny):
    assert _train(capsys, "--data", tiny, "--model", "cnn", "--epochs", 1, "--out", tmp_path)[0] == 0
    rc, _, err = _train(capsys, "--data", tiny, "--epochs", 2, "--resume", "--lr", 0.5, "--out", tmp_path)
    assert rc == T.EXIT_USAGE and "lr=0.001" in err and "Traceback" not in err
    rc, _, err = _train(capsys, "--data", tiny, "--resume", "--out", tmp_path / "nothing")
    assert rc == T.EXIT_USAGE and "no checkpoint" in err


def test_missing_data_is_a_clear_error(capsys, tmp_path):
    rc, _, err = _train(capsys, "--data", tmp_path / "nowhere", "--epochs", 1, "--out", tmp_path / "o")
    assert rc == T.EXIT_USAGE
    assert "train_catvnoncat.h5" in err and "Coursera" in err and "Traceback" not in err
    assert "--data DIR" in err and "$FASTNN_DATA" in err  # what to pass


def test_malformed_data_names_file_and_key(capsys, tmp_path, tiny):
    with h5py.File(tiny / "test_catvnoncat.h5", "w") as f:
        f["test_set_x"] = np.zeros((2, 8, 8, 3), np.uint8)  # no test_set_y
    rc, _, err = _train(capsys, "--data", tiny, "--epochs", 1, "--out", tmp_path / "o")
    assert rc == T.EXIT_USAGE
    assert "test_catvnoncat.h5" in err and "test_set_y" in err
    (tiny / "train_catvnoncat.h5").write_bytes(b"garbage")
    rc, _, err = _train(capsys, "--data", tiny, "--epochs", 1, "--out", tmp_path / "o")
    assert rc == T.EXIT_USAGE and "train_catvnoncat.h5" in err and "HDF5" in err


def test_predict_errors(capsys, tmp_path, tiny):
    rc, _, err = _train(capsys, "--out", tmp_path / "none", "--predict", tiny / "test_catvnoncat.h5")
    assert rc == T.EXIT_USAGE and "no trained model" in err
    out = tmp_path / "run"
    assert _train(capsys, "--data", tiny, "--model", "cnn", "--epochs", 1, "--out", out)[0] == 0
    big = tmp_path / "big.h5"
    _write_set(big, "test", np.zeros((2, 16, 16, 3), np.uint8), np.zeros(2, np.int64))
    rc, _, err = _train(capsys, "--out", out, "--predict", big)
    assert rc == T.EXIT_USAGE and "(16, 16, 3)" in err
    rc, _, err = _train(capsys, "--out", out, "--model", "dnn", "--predict", tiny / "test_catvnoncat.h5")
    assert rc == T.EXIT_USAGE and "cnn model" in err


def test_predict_an_image_file(capsys, tmp_path, tiny):
    mpl = pytest.importorskip("matplotlib.image")
    out = tmp_path / "run"
    assert _train(capsys, "--data", tiny, "--model", "cnn", "--epochs", 1, "--out", out)[0] == 0
    img = tmp_path / "cat.png"
    mpl.imsave(img, np.full((8, 8, 3), 0.9))
    rc, stdout, err = _train(capsys, "--out", out, "--predict", img)
    assert rc == 0, err
    assert stdout.startswith("cat.png: ") and "p(cat)" in stdout


def test_cli_lists_train_and_bad_options_fail(capsys, tmp_path, tiny):
    assert "train" in cli.COMMANDS
    assert cli.main(["train", "--quiet", "--data", str(tiny), "--epochs", "1", "--lr", "-1", "--out", str(tmp_path)]) == 2
    assert "--lr must be a positive number" in capsys.readouterr().err


def test_cost_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    msg = trainer.plot_costs([1.0, 0.5], tmp_path / "cost.png", "t")
    assert "matplotlib is not installed" in msg and not (tmp_path / "cost.png").exists()


def test_cost_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    assert trainer.plot_costs([1.0, 0.5], tmp_path / "cost.png", "t") == f"wrote {tmp_path / 'cost.png'}"
    assert (tmp_path / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cost.png"]


# --------------------------------------------------------------------------- progress


def test_training_progress_on_a_non_terminal_is_plain_lines(capsys, tmp_path, tiny):
    args = cli.build_parser().parse_args(["train", "--data", str(tiny), "--model", "cnn", "--epochs", "3",
                                          "--print-every", "2", "--out", str(tmp_path)])
    assert T.run(args) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    # the first epoch, every --print-every, and the last
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"], err
    assert all("cost" in line and "train acc" in line for line in lines)


# ------------------------------------------------------------------------- fastnn.nn.trainer


def test_trainer_api_returns_what_log_json_holds(tmp_path, tiny):
    stream = io.StringIO()
    result = trainer.train(tmp_path, data=tiny, model="dnn", epochs=2, batch_size=5, lr=0.01, stream=stream)
    assert result.meta == _log(tmp_path)
    assert (result.n_train, result.n_test, result.timed_epochs) == (12, 6, 2)
    assert result.summary["first_cost"] == result.meta["log"]["cost"][0]
    text = stream.getvalue()
    assert text.startswith("fastnn train: dnn on 12 images") and "epoch    2/2" in text


def test_dnn_epochs_are_the_course_loop(tmp_path, tiny):
    """Full-batch dnn epochs take L_layer_model's steps: the same parameters, bit for bit, and the same costs."""
    session = trainer.new_session(tmp_path, tiny, model="dnn", epochs=3, lr=0.05)
    costs = [session.run.train_epoch(session.train_x, session.train_y, e)[0] for e in range(3)]
    seen = []
    np.random.seed(1)  # what DnnRun does with the default seed
    params = fastnn.L_layer_model(session.train_x, session.train_y, session.run.dims, learning_rate=0.05,
                                  num_iterations=3, callback=lambda i, c: seen.append(c))
    assert costs == seen
    assert params.keys() == session.run.params.keys()
    for k in params:
        np.testing.assert_array_equal(params[k], session.run.params[k], err_msg=k)


def test_dnn_lines_count_iterations_from_zero_with_the_accuracy_before_the_update(capsys, tmp_path, tiny):
    """Line i holds the cost of iteration i (0-based, L_layer_model's) and the train accuracy of the
    parameters before that iteration's update."""
    args = cli.build_parser().parse_args(["train", "--data", str(tiny), "--iterations", "5", "--print-every", "2",
                                          "--lr", "0.05", "--out", str(tmp_path / "run")])
    assert T.run(args) == 0
    out, err = capsys.readouterr()
    assert "iterations 0..5" in err and "time per iteration:" in out
    lines = _cost_lines(err)
    assert [int(line.split()[3].rstrip(":")) for line in lines] == [0, 2, 4], err
    session = trainer.new_session(tmp_path / "x", tiny, model="dnn")
    X, Y, dims = session.train_x, session.train_y, session.run.dims
    costs = []
    np.random.seed(1)
    fastnn.L_layer_model(X, Y, dims, learning_rate=0.05, num_iterations=5, callback=lambda i, c: costs.append(c))
    for i, line in zip((0, 2, 4), lines):
        np.random.seed(1)
        before = fastnn.L_layer_model(X, Y, dims, learning_rate=0.05, num_iterations=i)  # i updates done
        acc = np.mean(fastnn.predict(X, Y, before, print_accuracy=False) == Y)
        assert line.startswith(f"Cost after iteration {i}: {costs[i]:f}  (train acc {100 * acc:.2f}% before this update"), line
    assert _log(tmp_path / "run")["log"]["cost"] == costs


def test_iterations_is_epochs_for_full_batch_training_only(capsys, tmp_path, tiny):
    assert trainer.settings_for(iterations=7)["epochs"] == 7
    assert trainer.settings_for(iterations=7, epochs=7)["epochs"] == 7
    common = ["--data", tiny, "--lr", 0.01]
    rc, _, err = _train(capsys, *common, "--model", "cnn", "--iterations", 2, "--out", tmp_path / "a")
    assert rc == T.EXIT_USAGE and "--iterations counts full-batch iterations" in err and "mini-batches of 16" in err
    rc, _, err = _train(capsys, *common, "--batch-size", 5, "--iterations", 2, "--out", tmp_path / "b")
    assert rc == T.EXIT_USAGE and "mini-batches of 5" in err
    rc, _, err = _train(capsys, *common, "--iterations", 2, "--epochs", 3, "--out", tmp_path / "c")
    assert rc == T.EXIT_USAGE and "iterations=2 and epochs=3" in err
    rc, _, err = _train(capsys, *common, "--iterations", -1, "--out", tmp_path / "d")
    assert rc == T.EXIT_USAGE and "--iterations must be >= 0, got -1" in err
    # --iterations and --epochs give the same run, and a resumed one continues it
    assert _train(capsys, *common, "--iterations", 4, "--out", tmp_path / "it")[0] == 0
    assert _train(capsys, *common, "--epochs", 4, "--out", tmp_path / "ep")[0] == 0
    assert _train(capsys, *common, "--iterations", 2, "--out", tmp_path / "split")[0] == 0
    assert _train(capsys, "--data", tiny, "--iterations", 4, "--resume", "--out", tmp_path / "split")[0] == 0
    costs = _log(tmp_path / "ep")["log"]["cost"]
    assert len(costs) == 4 and _log(tmp_path / "it")["log"]["cost"] == costs == _log(tmp_path / "split")["log"]["cost"]
    assert _train(capsys, *common, "--model", "cnn", "--batch-size", 5, "--epochs", 1, "--out", tmp_path / "cnn")[0] == 0
    rc, _, err = _train(capsys, "--data", tiny, "--iterations", 2, "--resume", "--out", tmp_path / "cnn")
    assert rc == T.EXIT_USAGE and "mini-batches of 5" in err


def test_settings_errors_name_setting_expected_and_actual():
    assert trainer.settings_for("cnn", lr=0.01)["batch_size"] == 16
    assert trainer.settings_for()["epochs"] == 2500
    with pytest.raises(trainer.SettingError, match=r"^lr must be a positive number, got -1.0$") as info:
        trainer.settings_for(lr=-1.0)
    assert info.value.setting == "lr" and isinstance(info.value, ValueError)
    with pytest.raises(trainer.SettingError, match=r"model must be one of \['cnn', 'dnn'\], got 'rnn'"):
        trainer.settings_for("rnn")
    with pytest.raises(trainer.SettingError, match=r"dtype must be one of \['float32', 'float64'\], got 'float16'"):
        trainer.settings_for(dtype="float16")
    with pytest.raises(trainer.SettingError, match="batch_size must be positive, got 0"):
        trainer.settings_for(batch_size=0)
    with pytest.raises(trainer.SettingError, match="print_every must be >= 1, got 0"):
        trainer.settings_for(print_every=0)
    with pytest.raises(TypeError, match="epochs must be an int, got float 2.5"):
        trainer.settings_for(epochs=2.5)
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['epoch'\]"):
        trainer.settings_for(epoch=3)


def test_an_interrupted_checkpoint_write_leaves_the_old_checkpoint(capsys, tmp_path, tiny, monkeypatch):
    assert _train(capsys, "--data", tiny, "--model", "cnn", "--epochs", 1, "--out", tmp_path)[0] == 0
    ckpt = tmp_path / "checkpoint.npz"
    before = ckpt.read_bytes()
    names = sorted(p.name for p in tmp_path.iterdir())
    run, meta = trainer.load_checkpoint(ckpt)

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(ckpt, run.arrays(), {**meta, "log": {}})
    monkeypatch.undo()
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary left behind
    assert trainer.load_checkpoint(ckpt)[1] == meta


def test_ctrl_c_during_a_checkpoint_write_still_saves_a_whole_checkpoint(capsys, tmp_path, tiny, monkeypatch):
    """Ctrl-C half-way through the checkpoint after epoch 2: the handler writes it again, whole."""
    common = ["--data", tiny, "--model", "cnn", "--batch-size", 5, "--lr", 0.01]
    real, calls = np.savez, []

    def savez(f, **arrays):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint (after epoch 2): half written, then Ctrl-C
            f.write(b"PK\x03\x04 half a zip")
            raise KeyboardInterrupt
        real(f, **arrays)

    monkeypatch.setattr(np, "savez", savez)
    rc, _, err = _train(capsys, *common, "--epochs", 3, "--out", tmp_path / "int")
    monkeypatch.undo()
    assert rc == T.EXIT_INTERRUPTED and "saved the state after epoch 2" in err
    assert sorted(p.name for p in (tmp_path / "int").iterdir()) == ["checkpoint.npz"]  # no temporary left
    with np.load(tmp_path / "int" / "checkpoint.npz") as f:
        assert len(json.loads(str(f["meta"]))["log"]["cost"]) == 2
    assert _train(capsys, *common, "--epochs", 3, "--out", tmp_path / "straight")[0] == 0
    assert _train(capsys, "--data", tiny, "--epochs", 3, "--resume", "--out", tmp_path / "int")[0] == 0
    a, b = _params(tmp_path / "int" / "params.npz"), _params(tmp_path / "straight" / "params.npz")
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
