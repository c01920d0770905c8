"""fastnn.nn: gradients, dtypes, save/load, optimisers, progress, and the same training on every backend."""

import io
import json

import numpy as np
import pytest

import fastnn
import fastnn.nn as nn
from fastnn._dispatch import register, register_backend, unregister_backend
from fastnn._plugins import builtin_backends
from fastnn.backends import reference as R


def _tiny_model(dtype="float64", seed=0, n_out=1, ties="all"):
    return nn.Sequential(
        [nn.Conv2D(2, 3, kernel_size=3, pad=1), nn.ReLU(), nn.MaxPool2D(2, ties=ties),
         nn.Conv2D(3, 2, kernel_size=2, stride=1), nn.Sigmoid(), nn.AvgPool2D(1),
         nn.Flatten(), nn.Dense(2, n_out)],
        input_shape=(4, 4, 2), dtype=dtype, seed=seed,
    )


def _numeric_grads(model, loss, X, Y, eps=1e-6):
    grads = {}
    for key, p in model.param_arrays().items():
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            plus = loss(model.forward(X, train=False), Y)[0]
            p[idx] = old - eps
            minus = loss(model.forward(X, train=False), Y)[0]
            p[idx] = old
            g[idx] = (plus - minus) / (2 * eps)
        grads[key] = g
    return grads


def _analytic_grads(model, loss, X, Y):
    cost, dout = loss(model.forward(X), Y)
    model.backward(dout)
    return {f"param/{i}/{n}": g for i, layer in enumerate(model.layers) for n, g in layer.grads.items()}


@pytest.mark.parametrize("loss_name", ["bce_logits", "bce_probs", "softmax"])
def test_backprop_matches_finite_differences(loss_name):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3, 4, 4, 2))
    if loss_name == "softmax":
        model, loss, Y = _tiny_model(n_out=3), nn.SoftmaxCrossEntropy(), np.array([0, 2, 1])
    elif loss_name == "bce_logits":
        model, loss, Y = _tiny_model(), nn.BinaryCrossEntropy(from_logits=True), np.array([[1, 0, 1]])
    else:
        model = _tiny_model()
        model.layers.append(nn.Sigmoid())
        loss, Y = nn.BinaryCrossEntropy(from_logits=False), np.array([1, 0, 1])
    analytic = _analytic_grads(model, loss, X, Y)
    numeric = _numeric_grads(model, loss, X, Y)
    assert analytic.keys() == numeric.keys()
    for k in analytic:
        np.testing.assert_allclose(analytic[k], numeric[k], rtol=1e-5, atol=1e-8, err_msg=k)


def test_binary_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]])
    y = np.array([1, 0, 0, 1])
    cost, d = nn.BinaryCrossEntropy()(z, y)
    assert cost == pytest.approx(500.0)  # two exact hits (0) and two misses of 1000 each
    np.testing.assert_allclose(d.ravel(), [0, 0, 0.25, -0.25])
    # probabilities of exactly 0 and 1 stay finite (clipped)
    cost_p, d_p = nn.BinaryCrossEntropy(from_logits=False)(np.array([[1.0], [0.0]]), np.array([0, 1]))
    assert np.isfinite(cost_p) and np.all(np.isfinite(d_p))
    # the softmax is shift-invariant and finite for huge logits
    c1, g1 = nn.SoftmaxCrossEntropy()(np.array([[1000.0, 0.0, -1000.0]]), np.array([0]))
    assert c1 == pytest.approx(0.0) and np.all(np.isfinite(g1))


def test_losses_reject_bad_labels():
    with pytest.raises(ValueError, match="one value per example"):
        nn.BinaryCrossEntropy()(np.zeros((3, 1)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        nn.SoftmaxCrossEntropy()(np.zeros((2, 3)), np.array([0, 3]))


@pytest.mark.parametrize("optimizer", [nn.SGD(lr=0.1, momentum=0.9), nn.Adam(lr=0.01)], ids=["sgd", "adam"])
def test_float32_stays_float32_end_to_end(optimizer):
    model = _tiny_model(dtype="float32")
    X = np.random.default_rng(0).random((4, 4, 4, 2))  # float64 data: cast once on entry
    Y = np.array([0, 1, 1, 0])
    for epoch in range(2):
        cost, acc = nn.train_epoch(model, nn.BinaryCrossEntropy(), optimizer, X, Y, batch_size=3, seed=0, epoch=epoch)
        assert np.isfinite(cost) and 0 <= acc <= 1
    assert all(p.dtype == np.float32 for p in model.param_arrays().values())
    assert all(g.dtype == np.float32 for layer in model.layers for g in layer.grads.values())
    assert all(v.dtype == np.float32 for v in optimizer.state.values())
    assert model.forward(X, train=False).dtype == np.float32
    with pytest.raises(TypeError, match="float32"):
        model.forward(X)
        model.backward(np.zeros((4, 1)))  # a float64 gradient into a float32 model


def test_sgd_and_adam_first_steps_by_hand():
    layer = nn.Dense(2, 1)
    model = nn.Sequential([layer], dtype="float64", seed=0)
    w0 = layer.params["W"].copy()
    g = np.array([[0.5], [-2.0]])
    layer.grads = {"W": g, "b": np.zeros((1, 1))}
    opt = nn.SGD(lr=0.1, momentum=0.9)
    opt.step(model)
    opt.step(model)  # v = g, then v = 0.9 g + g
    np.testing.assert_allclose(layer.params["W"], w0 - 0.1 * g - 0.1 * 1.9 * g)
    layer.params["W"][...] = w0
    adam = nn.Adam(lr=0.01)
    adam.step(model)  # first Adam step moves each weight by lr * sign(g) (bias-corrected)
    np.testing.assert_allclose(layer.params["W"], w0 - 0.01 * np.sign(g), rtol=1e-6)


def test_minibatches_are_seeded_per_epoch_and_cover_every_example():
    a = [b.tolist() for b in nn.minibatches(10, 4, seed=5, epoch=2)]
    assert a == [b.tolist() for b in nn.minibatches(10, 4, seed=5, epoch=2)]
    assert a != [b.tolist() for b in nn.minibatches(10, 4, seed=5, epoch=3)]
    assert [len(b) for b in a] == [4, 4, 2]
    assert sorted(sum(a, [])) == list(range(10))
    assert [b.tolist() for b in nn.minibatches(10, None, seed=5, epoch=0)] == [list(range(10))]


def test_save_load_round_trip(tmp_path):
    model = nn.make_cnn((8, 8, 3), channels=(2, 3), dtype="float32", seed=4)
    X = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as f:  # one plain .npz: JSON spec + arrays, no pickles
        spec = json.loads(str(f["spec"]))
    assert spec["dtype"] == "float32" and spec["layers"][0]["type"] == "Conv2D"
    loaded = nn.Sequential.load(path)
    np.testing.assert_array_equal(loaded.forward(X, train=False), model.forward(X, train=False))
    other = nn.make_cnn((8, 8, 3), channels=(2, 3), dtype="float32", seed=99)
    other.load_params(path)
    np.testing.assert_array_equal(other.forward(X, train=False), model.forward(X, train=False))


def test_an_interrupted_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m"  # no .npz suffix: the file is written at exactly this name
    old = nn.make_cnn((8, 8, 3), channels=(2,), seed=1)
    old.save(path)
    before = path.read_bytes()

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(KeyboardInterrupt):
        nn.make_cnn((8, 8, 3), channels=(2,), seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # the temporary is gone
    np.testing.assert_array_equal(nn.Sequential.load(path).param_arrays()["param/0/W"], old.param_arrays()["param/0/W"])


def test_loading_a_different_model_names_the_mismatch(tmp_path):
    path = tmp_path / "m.npz"
    nn.make_cnn((8, 8, 3), channels=(2, 3), seed=0).save(path)
    with pytest.raises(nn.ModelMismatchError, match=r"layer 3 \(Conv2D\) has out_channels=3 in the file, out_channels=4"):
        nn.make_cnn((8, 8, 3), channels=(2, 4), seed=0).load_params(path)
    with pytest.raises(nn.ModelMismatchError, match="dtype is 'float64' in the file, 'float32' in the model"):
        nn.make_cnn((8, 8, 3), channels=(2, 3), dtype="float32").load_params(path)
    with pytest.raises(nn.ModelMismatchError, match="8 layers, the model has 5"):
        nn.make_cnn((8, 8, 3), channels=(2,), seed=0).load_params(path)
    np.savez(tmp_path / "plain.npz", W=np.zeros(3))
    with pytest.raises(nn.ModelMismatchError, match="no 'spec' entry"):
        nn.Sequential.load(tmp_path / "plain.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(nn.ModelMismatchError, match="not a readable .npz"):
        nn.Sequential.load(tmp_path / "junk.npz")
    # a parameter array of another shape under a matching spec is refused, never reshaped
    arrays = dict(np.load(path))
    arrays["param/0/W"] = arrays["param/0/W"].reshape(-1)
    with pytest.raises(nn.ModelMismatchError, match=r"parameter 'param/0/W' is float64\(54,\) in the file"):
        nn.make_cnn((8, 8, 3), channels=(2, 3)).load_params(arrays)


def test_layers_check_shapes():
    with pytest.raises(ValueError, match="layer 3"):
        nn.Sequential([nn.Conv2D(3, 2, 3, pad=1), nn.ReLU(), nn.Flatten(), nn.Dense(10, 1)], input_shape=(4, 4, 3))
    with pytest.raises(RuntimeError, match="forward"):
        nn.ReLU().backward(np.zeros(3))


# ------------------------------------------------------------------ every backend, same training

MOCK = "mock-vectorised"


def _mock_conv_forward(p, A, W, b, Z):
    Ap = np.pad(A, ((0, 0), (p.ph, p.ph), (p.pw, p.pw), (0, 0)))
    Z[...] = b
    for i in range(p.fh):
        for j in range(p.fw):
            win = Ap[:, i:i + p.sh * (p.Ho - 1) + 1:p.sh, j:j + p.sw * (p.Wo - 1) + 1:p.sw, :]
            Z += win @ W[i, j]


def _mock_conv_backward(p, A, W, dZ, dA_prev, dW, db):
    Ap = np.pad(A, ((0, 0), (p.ph, p.ph), (p.pw, p.pw), (0, 0)))
    dAp = np.zeros_like(Ap)
    db[...] = dZ.sum(axis=(0, 1, 2))
    for i in range(p.fh):
        for j in range(p.fw):
            sl = (slice(None), slice(i, i + p.sh * (p.Ho - 1) + 1, p.sh), slice(j, j + p.sw * (p.Wo - 1) + 1, p.sw))
            dW[i, j] = np.tensordot(Ap[sl], dZ, axes=([0, 1, 2], [0, 1, 2]))
            dAp[sl] += dZ @ W[i, j].T
    dA_prev[...] = dAp[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W]


@pytest.fixture
def mock_backend():
    """A vectorised NumPy conv (loops over the window only) with the reference's other kernels."""
    register_backend(MOCK, priority=-100, description="test mock: window-loop NumPy conv")
    register("conv_forward", MOCK)(_mock_conv_forward)
    register("conv_backward", MOCK)(_mock_conv_backward)
    for op in ("zero_pad", "pool_forward", "pool_backward", "relu", "relu_backward", "sigmoid", "sigmoid_backward"):
        register(op, MOCK)(getattr(R, op))
    yield MOCK
    unregister_backend(MOCK)


def _optimizer(dtype):
    # float64: Adam, as `fastnn train --model cnn`. float32: SGD with momentum, whose step is linear in the
    # gradient; Adam's step is ~lr * sign(g) for tiny g, which turns float32 rounding noise into lr-sized jumps.
    return nn.Adam(lr=0.01) if dtype == "float64" else nn.SGD(lr=0.05, momentum=0.9)


def _train_steps(backend, dtype, steps=3):
    rng = np.random.default_rng(7)
    X = rng.random((5, 8, 8, 3))
    Y = np.array([1, 0, 0, 1, 1])
    with fastnn.use_backend(backend):
        model = nn.make_cnn((8, 8, 3), channels=(3, 4, 5), dtype=dtype, seed=11)
        opt = _optimizer(dtype)
        costs = [nn.train_epoch(model, nn.BinaryCrossEntropy(), opt, X, Y, batch_size=3, seed=2, epoch=e)[0]
                 for e in range(steps)]
    return costs, {k: v.copy() for k, v in model.param_arrays().items()}


def _assert_same_training(backend, dtype, rtol):
    costs_ref, params_ref = _train_steps("reference", dtype)
    costs, params = _train_steps(backend, dtype)
    np.testing.assert_allclose(costs, costs_ref, rtol=rtol)
    for k in params_ref:
        assert params[k].dtype == params_ref[k].dtype == np.dtype(dtype)
        scale = max(1.0, float(np.max(np.abs(params_ref[k]))))
        np.testing.assert_allclose(params[k], params_ref[k], rtol=rtol, atol=rtol * scale, err_msg=f"{backend} {k}")


BACKENDS = builtin_backends() + [MOCK]
TOL = {"float64": 1e-10, "float32": 1e-4}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cnn_training_steps_agree_with_reference(request, backend, dtype):
    if backend == MOCK:
        request.getfixturevalue("mock_backend")
    _assert_same_training(backend, dtype, TOL[dtype])


def test_the_equivalence_check_can_fail(mock_backend):
    """A backend whose conv weight gradient is off by 1e-8 in one entry is caught."""

    def off_db(p, A, W, dZ, dA_prev, dW, db):
        _mock_conv_backward(p, A, W, dZ, dA_prev, dW, db)
        dW[0, 0, 0, 0] += 1e-8

    register("conv_backward", MOCK)(off_db)
    with pytest.raises(AssertionError):
        _assert_same_training(MOCK, "float64", TOL["float64"])


def test_layers_follow_the_backend_in_force(mock_backend):
    calls = []

    def spy(p, A, W, b, Z):
        calls.append(p.K)
        _mock_conv_forward(p, A, W, b, Z)

    register("conv_forward", MOCK)(spy)
    model = nn.make_cnn((4, 4, 1), channels=(2,), seed=0)
    model.forward(np.zeros((1, 4, 4, 1)))
    assert calls == []
    with fastnn.use_backend(MOCK):
        model.forward(np.zeros((1, 4, 4, 1)))
    assert calls == [2]


# --------------------------------------------------------------------------- progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_a_bar_on_a_terminal_only():
    tty, log = _Tty(), io.StringIO()
    for stream in (tty, log):
        with nn.Progress(2, stream=stream) as bar:
            bar.update(0, 3, 3, 0.5)
            bar.line("epoch 1/2")
            bar.update(1, 3, 3, 0.25)
    assert log.getvalue() == "epoch 1/2\n"  # no bar, no carriage returns in a log file
    out = tty.getvalue()
    assert "epoch 1/2\n" in out and "\r" in out
    assert "3/6" in out and "epoch 1/2 batch 3/3 cost 0.500000" in out  # batches of the whole run, the postfix
    assert out.endswith("\r")  # closing clears the bar's line


def test_progress_disabled_shows_nothing_and_checks_its_argument():
    tty = _Tty()
    with nn.Progress(2, stream=tty, enabled=False) as bar:
        bar.update(0, 1, 1, 0.5)
        bar.line("epoch 1/2")
    assert tty.getvalue() == ""
    with pytest.raises(ValueError, match="total_epochs must be >= 1, got 0"):
        nn.Progress(0)
    with pytest.raises(TypeError, match="total_epochs must be an int, got float"):
        nn.Progress(2.0)


def test_tqdm_is_imported_only_to_draw_a_bar():
    import os
    import pathlib
    import subprocess
    import sys

    root = str(pathlib.Path(fastnn.__file__).resolve().parents[1])  # this checkout's fastnn, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    code = ("import io, sys, fastnn, fastnn.nn, fastnn.cli.train\n"
            "from fastnn.nn.progress import Progress\n"
            "p = Progress(2, stream=io.StringIO()); p.update(0, 1, 1, 0.5); p.line('x'); p.close()\n"
            "print('tqdm' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert res.stdout.strip() == "False", res.stderr
    res = subprocess.run([sys.executable, "-c", code.replace("io.StringIO()", "sys.stdout").replace(
        "p = Progress", "sys.stdout.isatty = lambda: True; p = Progress")], capture_output=True, text=True, env=env)
    assert res.stdout.strip().endswith("True"), res.stderr  # and a terminal does load it
