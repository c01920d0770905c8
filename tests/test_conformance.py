"""The conformance suite (`fastnn.testing.conformance`, `fastnn check`) and backend plugins.

The example plugin (examples/fastnn-example-backend) is found through a path entry point: a
``*.dist-info`` with ``entry_points.txt`` on ``sys.path`` of a subprocess, as an installed
distribution would be. Deliberately wrong kernels are registered here and must be caught.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _dispatch
from fastnn.testing import conformance

ROOT = pathlib.Path(fastnn.__file__).resolve().parents[1]
EXAMPLE_SRC = ROOT / "examples" / "fastnn-example-backend" / "src"


def _site(tmp_path, entry_points):
    site = tmp_path / "site"
    for dist, eps in entry_points.items():
        d = site / f"{dist}-0.1.dist-info"
        d.mkdir(parents=True)
        (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (d / "entry_points.txt").write_text("[fastnn.backends]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    return site


def _fastnn(args, site, env_extra=None, cwd=None):
    path = [str(ROOT), str(EXAMPLE_SRC), str(site), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path)), **(env_extra or {})}
    env.pop("FASTNN_DISABLE_PLUGINS", None) if not env_extra else None
    return subprocess.run([sys.executable, "-m", "fastnn", *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=cwd)


def test_example_plugin_is_listed_and_passes_check(tmp_path):
    site = _site(tmp_path, {"fastnn_example_backend": {"example": "fastnn_example_backend"},
                            "broken_plugin": {"broken": "no_such_module_for_fastnn"}})
    res = _fastnn(["info"], site)
    assert res.returncode == 0, res.stderr
    assert "example" in res.stdout and "example plugin: vectorised NumPy" in res.stdout
    assert "broken" in res.stdout and "FAILED to load, skipped: ModuleNotFoundError" in res.stdout
    out = tmp_path / "check.json"
    res = _fastnn(["check", "example", "--quick", "--json", str(out)], site)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(out.read_text())
    assert doc["failed"] == 0 and doc["checks"] > 100
    assert {r["kind"] for r in doc["results"]} == set(conformance.KINDS)
    off = _fastnn(["info", "--json"], site, env_extra={"FASTNN_DISABLE_PLUGINS": "1"})
    info = json.loads(off.stdout)
    assert info["plugins"] == {} and info["plugins_disabled"] is True
    assert "example" not in [b["name"] for b in info["backends"]]


# ------------------------------------------------------------------ wrong kernels are caught

REF = _dispatch.ground_truth_backend()


@pytest.fixture
def wrong():
    """Backends each with one deliberate bug, the other kernels the reference's."""
    made = []

    def make(name, op, kernel):
        fastnn.register_backend(name, priority=-100)
        for o in _dispatch.OPS:
            fastnn.register(o, name)(kernel if o == op else _dispatch.kernel_of(o, REF))
        made.append(name)
        return name

    yield make
    for name in made:
        fastnn.unregister_backend(name)


def _failures(name, **select):
    return {c.id: p.message for c, p in conformance.run(name, **select) if p is not None}


def test_stride_off_by_one_is_caught(wrong):
    ref = _dispatch.kernel_of("conv_forward", REF)
    name = wrong("wrong_stride", "conv_forward",
                 lambda p, A, W, b, Z: ref(p._replace(sh=max(1, p.sh - 1)), A, W, b, Z))
    bad = _failures(name, ops=["conv_forward"], quick=True)
    assert "matrix/conv_forward/stride_gt_f/float64" in bad
    assert "matrix/conv_forward/odd_sizes/float64" not in bad  # stride 1: right
    assert "differs: expected" in bad["matrix/conv_forward/stride_gt_f/float64"]
    assert "max abs err" in bad["matrix/conv_forward/stride_gt_f/float64"]


def test_mutated_input_is_caught(wrong):
    ref = _dispatch.kernel_of("pool_forward", REF)

    def mutating(p, A, out):
        ref(p, A, out)
        A[0, 0, 0, 0] = 12345.0

    name = wrong("wrong_mutates", "pool_forward", mutating)
    bad = _failures(name, ops=["pool_forward"], kinds=["mutation"])
    assert "mutation/pool_forward/float64" in bad
    assert "modified its input A_prev" in bad["mutation/pool_forward/float64"]


def test_dropped_nan_is_caught(wrong):
    name = wrong("wrong_nan", "relu", lambda x, out: np.fmax(x, 0, out=out))
    bad = _failures(name, ops=["relu"])
    assert "nan/relu/propagation" in bad and "matrix/relu/float64" in bad  # the matrix holds a NaN too
    assert "should be nan" in bad["nan/relu/propagation"]


# ------------------------------------------------------------------ --function on a student's code

STUDENT = '''
import numpy as np

def zero_pad(X, pad):
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=(0, 0))

def conv_forward(A_prev, W, b, hparameters):
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f, f, n_C_prev, n_C) = W.shape
    stride, pad = hparameters["stride"], hparameters["pad"]
    n_H = int((n_H_prev - f + 2 * pad) / stride) + 1
    n_W = int((n_W_prev - f + 2 * pad) / stride) + 1
    Z = np.zeros((m, n_H, n_W, n_C))
    A_prev_pad = zero_pad(A_prev, pad)
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                vs, hs = h * STEP(stride), w * STEP(stride)
                a = A_prev_pad[i, vs:vs + f, hs:hs + f, :]
                for c in range(n_C):
                    Z[i, h, w, c] = np.sum(a * W[:, :, :, c]) + float(b[0, 0, 0, c])
    return Z, (A_prev, W, b, hparameters)
'''


@pytest.mark.parametrize("right", [True, False])
def test_function_check_of_a_student_conv_forward(tmp_path, capsys, right):
    from fastnn import cli

    src = STUDENT.replace("STEP(stride)", "stride" if right else "1")  # wrong: the stride ignored
    (tmp_path / "student_nb.py").write_text(src)
    out = tmp_path / "r.json"
    rc = cli.main(["check", "--function", f"{tmp_path / 'student_nb.py'}:conv_forward", "--json", str(out)])
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["checks"] > 10
    if right:
        assert rc == 0 and doc["failed"] == 0, text
    else:
        assert rc == 1
        assert "FAIL matrix/conv_forward/stride_gt_f/float64: Z[" in text
        assert "your Z equals a stride-1 convolution: check the stride in your slice" in text
        assert "FAIL golden/conv_forward/course" in text


def _student_conv(mistake):
    src = STUDENT.replace("STEP(stride)", "stride")
    if mistake == "no_b":
        src = src.replace(" + float(b[0, 0, 0, c])", "")
    elif mistake == "odd":  # a mistake no diagnosis knows: the existing hint remains
        src = src.replace("np.sum(a * W[:, :, :, c])", "np.sum(a * W[:, :, :, c]) * 1.001")
    ns = {}
    exec(compile(src, "student", "exec"), ns)
    return ns["conv_forward"]


def _student_pool(mistake):
    def pool_forward(A_prev, hparameters, mode="max"):
        f, stride = hparameters["f"], hparameters["stride"]
        m, H, W, C = A_prev.shape
        n_H, n_W = int(1 + (H - f) / stride), int(1 + (W - f) / stride)
        A = np.zeros((m, n_H, n_W, C))
        step = 1 if mistake == "stride" else stride
        use = {"max": "average", "average": "max"}[mode] if mistake == "mode" else mode
        size = f - 1 if mistake == "window" else f  # a mistake no diagnosis knows
        for h in range(n_H):
            for w in range(n_W):
                window = A_prev[:, h * step:h * step + size, w * step:w * step + size, :]
                A[:, h, w, :] = window.max(axis=(1, 2)) if use == "max" else window.mean(axis=(1, 2))
        return A, (A_prev, hparameters)
    return pool_forward


def _student_conv_backward(mistake):
    """The course's conv_backward loop (un-padding that also works for pad 0)."""
    def conv_backward(dZ, cache):
        A_prev, W, b, hparameters = cache
        m, n_H_prev, n_W_prev, n_C_prev = A_prev.shape
        f, f, n_C_prev, n_C = W.shape
        stride, pad = hparameters["stride"], hparameters["pad"]
        m, n_H, n_W, n_C = dZ.shape
        step = 1 if mistake == "stride" else stride
        dW, db = np.zeros(W.shape), np.zeros((1, 1, 1, n_C))
        A_prev_pad = np.pad(A_prev, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        dA_prev_pad = np.zeros(A_prev_pad.shape)
        for i in range(m):
            for h in range(n_H):
                for w in range(n_W):
                    vs, hs = h * step, w * step
                    a_slice = A_prev_pad[i, vs:vs + f, hs:hs + f, :]
                    for c in range(n_C):
                        dA_prev_pad[i, vs:vs + f, hs:hs + f, :] += W[:, :, :, c] * dZ[i, h, w, c]
                        dW[:, :, :, c] += a_slice * dZ[i, h, w, c] * (1.001 if mistake == "odd" else 1)
                        db[:, :, :, c] += dZ[i, h, w, c]
        return dA_prev_pad[:, pad:pad + n_H_prev, pad:pad + n_W_prev, :], dW, db
    return conv_backward


def _student_pool_backward(mistake):
    def pool_backward(dA, cache, mode="max"):
        A_prev, hparameters = cache
        f, stride = hparameters["f"], hparameters["stride"]
        step = 1 if mistake == "stride" else stride
        m, n_H, n_W, n_C = dA.shape
        dA_prev = np.zeros(A_prev.shape)
        for i in range(m):
            for h in range(n_H):
                for w in range(n_W):
                    vs, hs = h * step, w * step
                    for c in range(n_C):
                        if mode == "max":
                            a_slice = A_prev[i, vs:vs + f, hs:hs + f, c]
                            dA_prev[i, vs:vs + f, hs:hs + f, c] += (a_slice == np.max(a_slice)) * dA[i, h, w, c]
                        else:
                            dA_prev[i, vs:vs + f, hs:hs + f, c] += dA[i, h, w, c] / (f * f)
        return dA_prev
    return pool_backward


@pytest.mark.parametrize("op, make, mistake, said", [
    ("conv_forward", _student_conv, "no_b", "your Z equals the convolution without b"),
    ("conv_forward", _student_conv, "odd", "this case has stride 3 and pad 0"),
    ("pool_forward", _student_pool, "mode", "your output is average pooling: for mode='max'"),
    ("pool_forward", _student_pool, "stride", "your output equals a stride-1 pooling: check the stride in your slice"),
    ("pool_forward", _student_pool, "window", "this case has f 3 and stride 2"),
    ("conv_backward", _student_conv_backward, "stride", "your gradients equal a stride-1 backward: check the stride"),
    ("conv_backward", _student_conv_backward, "odd", "this case has stride 3 and pad 0"),
    ("pool_backward", _student_pool_backward, "stride", "your gradients equal a stride-1 backward: check the stride"),
])
def test_a_wrong_conv_or_pool_is_diagnosed(op, make, mistake, said):
    s = conformance.function_subject(make(mistake), op)
    bad = {c.id: p.message for c, p in conformance.run(s, kinds=["matrix"], quick=True) if p is not None}
    assert bad and any(said in m for m in bad.values()), bad
    if mistake in ("odd", "window"):  # no diagnosis claims what it did not find: no stride hint
        assert not any("your Z equals" in m or "your gradients equal" in m or "check the stride" in m
                       for m in bad.values()), bad
    else:  # the stride hint only where the stride is the mistake
        assert all("check the stride" not in m for m in bad.values()) or mistake == "stride", bad
    right = conformance.function_subject(make(None), op)
    assert all(p is None for _, p in conformance.run(right, kinds=["matrix"], quick=True))


# ------------------------------------------------------------------ --function on the dense functions

STUDENT_DENSE = """
import numpy as np

def my_linear(A, W, b):
    Z = np.dot(W, A) + b
    return Z, (A, W, b)
"""


@pytest.mark.parametrize("right", [True, False])
def test_function_check_of_a_student_linear_forward(tmp_path, capsys, right):
    from fastnn import cli

    src = STUDENT_DENSE if right else STUDENT_DENSE.replace(" + b\n", "\n")  # wrong: b forgotten
    (tmp_path / "nb_dense.py").write_text(src)
    target = f"{tmp_path / 'nb_dense.py'}:my_linear"
    assert cli.main(["check", "--function", target]) == 2  # my_linear is no course name: --as needed
    assert "pass --as one of" in capsys.readouterr().err
    out = tmp_path / "r.json"
    rc = cli.main(["check", "--function", target, "--as", "linear_forward", "--json", str(out)])
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["checks"] >= 10 and {r["op"] for r in doc["results"]} == {"linear_forward"}
    assert {r["id"].split("/")[-1] for r in doc["results"] if r["kind"] == "matrix"} == {"float32", "float64"}
    if right:
        assert rc == 0 and doc["failed"] == 0, text
    else:
        assert rc == 1
        assert "FAIL matrix/linear_forward/square/float64: Z[" in text
        assert "differs: expected" in text
        assert "your Z equals np.dot(W, A) without b: did you forget to add b?" in text
        assert "FAIL golden/linear_forward/course" in text


def _dense_wrong(op, mistake):
    """A student's dense function with one mistake (built on fastnn's own for the rest)."""
    from fastnn import dnn

    if op == "linear_forward":
        return lambda A, W, b: (np.dot(W.T, A) + b, (A, W, b))
    if op == "linear_backward":
        def linear_backward(dZ, cache):
            A, W, b = cache
            m = A.shape[1]
            db = np.sum(dZ, axis=1, keepdims=True) / m
            return np.dot(W.T, dZ), np.dot(dZ, A.T) / (1 if mistake == "no_m" else m), (db if mistake else db.ravel())
        return linear_backward
    if op == "linear_activation_forward":
        return lambda A, W, b, activation: dnn.linear_activation_forward(
            A, W, b, {"relu": "sigmoid", "sigmoid": "relu"}[activation])
    if op == "linear_activation_backward":
        return lambda dA, cache, activation: dnn.linear_backward(dA, cache[0])
    if op == "L_model_forward":
        def L_model_forward(X, parameters):
            A, caches = X, []
            for l in range(1, len(parameters) // 2 + 1):
                A, c = dnn.linear_activation_forward(A, parameters[f"W{l}"], parameters[f"b{l}"], "relu")
                caches.append(c)
            return A, caches
        return L_model_forward
    if op == "compute_cost":
        return lambda AL, Y: -np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL), keepdims=True) / AL.shape[1]
    if op == "L_model_backward":
        def L_model_backward(AL, Y, caches):
            g = dnn.L_model_backward(AL, Y, caches)
            return {k: -v for k, v in g.items()}
        return L_model_backward

    def update_parameters(parameters, grads, learning_rate):
        return {k: v + learning_rate * grads["d" + k] for k, v in parameters.items()}
    return update_parameters


@pytest.mark.parametrize("op, mistake, said", [
    ("linear_forward", "W.T", "your Z equals np.dot(W.T, A) + b: check the transpose of W"),
    ("linear_backward", "no_m", "your dW equals np.dot(dZ, A_prev.T) without the 1/m: divide by m"),
    ("linear_backward", None, "db has shape"),
    ("linear_activation_forward", "swapped", "with activation='relu' apply relu"),
    ("linear_activation_backward", "no_dZ", "your gradients equal linear_backward(dA, linear_cache): compute dZ ="),
    ("L_model_forward", "relu_last", "your last layer applies relu: the output layer is LINEAR -> SIGMOID"),
    ("compute_cost", "no_squeeze", "cost has shape (1, 1), expected (); your cost has shape (1, 1): use np.squeeze(cost)"),
    ("L_model_backward", "sign", "your gradients have the wrong sign: dAL = -(np.divide(Y, AL)"),
    ("update_parameters", "plus", "your W1 equals W1 + learning_rate * dW1: subtract the gradient"),
])
def test_a_wrong_dense_function_is_diagnosed(op, mistake, said):
    s = conformance.function_subject(_dense_wrong(op, mistake), op)
    bad = {c.id: p.message for c, p in conformance.run(s) if p is not None}
    matrix = [m for i, m in bad.items() if i.startswith(f"matrix/{op}/")]
    assert matrix and any(said in m for m in matrix), bad
    assert f"golden/{op}/course" in bad  # the course's printed values catch it too


@pytest.mark.parametrize("op", conformance.DENSE)
def test_the_course_dense_functions_pass(op):
    """fastnn's own dense functions, checked as a student's would be (golden values included)."""
    from fastnn import dnn

    results = conformance.run(conformance.function_subject(getattr(dnn, op), op))
    assert {c.kind for c, _ in results} == {"golden", "matrix", "mutation", "threads"}
    assert [(c.id, p.message) for c, p in results if p is not None] == []


def test_newer_notebooks_dA_numbering_is_accepted():
    """Newer notebooks store layer l's input gradient as dA{l-1} (dA0 for X): both pass."""
    from fastnn import dnn

    def newer(AL, Y, caches):
        g = dnn.L_model_backward(AL, Y, caches)
        return {(f"dA{int(k[2:]) - 1}" if k.startswith("dA") else k): v for k, v in g.items()}

    results = conformance.run(conformance.function_subject(newer, "L_model_backward"), kinds=["golden", "matrix"])
    assert results and all(p is None for _, p in results)


def test_a_function_that_mutates_its_inputs_is_caught():
    def update_parameters(parameters, grads, learning_rate):
        for k in parameters:
            parameters[k] -= learning_rate * grads["d" + k]
        return parameters

    bad = {c.id: p.message for c, p in conformance.run(conformance.function_subject(update_parameters, "update_parameters"))
           if p is not None}
    assert set(bad) == {"mutation/update_parameters/float32", "mutation/update_parameters/float64"}
    assert "modified its input parameters['W1']" in bad["mutation/update_parameters/float64"]


def test_check_usage_errors(capsys):
    from fastnn import cli

    assert cli.main(["check"]) == 2
    assert cli.main(["check", "no_such_backend"]) == 2
    assert cli.main(["check", "--function", "math:sqrt"]) == 2  # not a course function without --as
    assert "not a course function" in capsys.readouterr().err


@pytest.mark.parametrize("args, said", [
    (["--ops", "conv_fwd"], "unknown op 'conv_fwd'; ops are zero_pad, conv_forward"),
    (["--dtypes", "float16"], "unknown dtype in --dtypes 'float16'; dtypes are float32, float64"),
    (["--kinds", "speed"], "unknown kind 'speed'; kinds are golden, matrix"),
    (["--ops", "relu", "--kinds", "gradients"], "the selection matches no checks of backend reference"),
    (["--ops", "linear_forward"], "the selection matches no checks of backend reference"),  # a backend has no dense op
])
def test_check_selection_errors_exit_2(capsys, args, said):
    from fastnn import cli

    assert cli.main(["check", REF, *args]) == 2
    err = capsys.readouterr().err
    assert said in err, err
    if "matches no checks" in said:
        assert "its ops are zero_pad, conv_forward" in err


def test_check_function_selection_that_matches_nothing_exits_2(capsys):
    from fastnn import cli

    assert cli.main(["check", "--function", "fastnn.dnn:linear_forward", "--ops", "conv_forward"]) == 2
    err = capsys.readouterr().err
    assert "matches no checks" in err and "its ops are linear_forward" in err


def test_threads_check_is_bit_for_bit(wrong):
    """A kernel off by one ulp in other threads is within every tolerance, and still caught."""
    import threading

    def relu(x, out):
        np.maximum(x, 0, out=out)
        if threading.current_thread() is not threading.main_thread():
            out[...] = np.nextafter(out, np.inf)

    name = wrong("wrong_threads", "relu", relu)
    bad = _failures(name, ops=["relu"], kinds=["threads"])
    assert set(bad) == {"threads/relu/float32", "threads/relu/float64"}
    assert "concurrent calls must equal serial ones bit for bit" in bad["threads/relu/float64"]


def test_plugin_that_raises_is_recorded_and_its_backend_removed(monkeypatch):
    from fastnn import _plugins

    class EP:
        name, value, dist = "half", "half_plugin", None

        def load(self):
            fastnn.register_backend("half_made")
            raise RuntimeError("boom")

    monkeypatch.setattr(_plugins, "PLUGINS", {})
    _plugins._load_one(EP())
    assert _plugins.PLUGINS["half"]["error"] == "RuntimeError: boom"
    assert "half_made" not in fastnn.available_backends()

    class Hijack(EP):
        name = "hijack"

        def load(self):
            fastnn.register_backend(REF, priority=99)

    _plugins._load_one(Hijack())
    assert "may not replace" in _plugins.PLUGINS["hijack"]["error"]
    assert _dispatch._backends[REF].priority == 0


def test_non_finite_gradients_of_padded_pooling_are_checked(wrong):
    """A pool_backward that loses NaN only where the pooling is padded (fastnn's, not the course's)."""
    ref = _dispatch.kernel_of("pool_backward", REF)

    def lossy(p, A, dA, dA_prev):
        ref(p, A, dA, dA_prev)
        if p.ph:
            np.nan_to_num(dA_prev, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    name = wrong("wrong_padded_nan", "pool_backward", lossy)
    bad = _failures(name, ops=["pool_backward"], kinds=["nan"])
    assert list(bad) == ["nan/pool_backward/propagation"]
    assert "'pad': 1" in bad["nan/pool_backward/propagation"]


def test_a_wrong_variant_is_caught_through_the_wrappers(wrong, capsys):
    """A variant is pinned for its op whether or not it applies, and checked like a backend."""
    from fastnn import cli

    ref = _dispatch.kernel_of("conv_forward", REF)
    name = wrong("with_variant", "conv_forward", ref)
    fastnn.register("conv_forward", name, variant="off", applies=lambda p: False)(
        lambda p, A, W, b, Z: (ref(p, A, W, b, Z), Z.__imul__(1 + 1e-9)))
    assert f"{name}:off" in conformance.variant_candidates()
    assert _failures(name, ops=["conv_forward"], kinds=["matrix"], quick=True) == {}
    bad = _failures(f"{name}:off", kinds=["matrix"], quick=True)
    assert bad and all(i.startswith("matrix/conv_forward/") for i in bad)
    assert all(i.endswith("/float64") for i in bad)  # 1e-9 is within float32's tolerance
    assert cli.main(["check", f"{name}:off", "--quick", "--kinds", "matrix"]) == 1
    assert "FAIL matrix/conv_forward/course/float64" in capsys.readouterr().out
    assert cli.main(["check", f"{name}:nope"]) == 2
    assert "variants: " in capsys.readouterr().err


def test_a_kernel_whose_dW_changes_without_dA_prev_is_caught(wrong):
    """A conv_backward that declares input_grad_optional but gets dW wrong when it skips dA_prev."""
    ref = _dispatch.kernel_of("conv_backward", REF)

    def sloppy(p, A, W, dZ, dA_prev, dW, db):
        ref(p, A, W, dZ, dA_prev, dW, db)
        if dA_prev is None:
            dW *= 1 + np.finfo(dW.dtype).eps  # an ulp off: within tolerance, not the same bits

    sloppy.input_grad_optional = True
    name = wrong("sloppy_no_dA", "conv_backward", sloppy)
    bad = _failures(name, ops=["conv_backward"], kinds=["matrix"], quick=True)
    assert bad and all("dW with input_grad=False" in m and "dropping dA_prev may not change dW" in m
                       for m in bad.values())


def _strict_json(text):
    def no_constant(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=no_constant)


def test_an_error_against_zero_reads_inf_in_the_report_and_the_json(wrong, tmp_path, capsys):
    """An output that should be 0 has an infinite relative error: "inf", not nan_to_num's 1.8e+308,
    and strict JSON ("inf" as a string, never a bare Infinity)."""
    from fastnn import cli

    name = wrong("wrong_plus_one", "relu", lambda x, out: np.add(np.maximum(x, 0), 1, out=out))
    out = tmp_path / "r.json"
    assert cli.main(["check", name, "--ops", "relu", "--kinds", "matrix", "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "max rel err inf;" in text and "e+308" not in text, text
    doc = _strict_json(out.read_text())
    failed = [r for r in doc["results"] if not r["passed"]]
    assert failed and all(r["max_rel"] == "inf" and r["max_abs"] == pytest.approx(1.0) for r in failed), failed


def test_a_workspace_shared_between_threads_is_caught(wrong):
    """A conv_forward that pads into one buffer per shape, shared by every call: right alone
    (the matrix passes), wrong when threads with inputs of their own fill it at once."""
    import time

    ref = _dispatch.kernel_of("conv_forward", REF)
    buffers = {}

    def racy(p, A, W, b, Z):
        buf = buffers.setdefault((p.m, p.Hp, p.Wp, p.C, p.dtype), np.zeros((p.m, p.Hp, p.Wp, p.C), p.dtype))
        buf[:, p.ph:p.ph + p.H, p.pw:p.pw + p.W, :] = A
        time.sleep(1e-4)  # work that releases the GIL, as a nogil kernel or a BLAS call does
        ref(p._replace(H=p.Hp, W=p.Wp, ph=0, pw=0), buf, W, b, Z)

    name = wrong("racy_workspace", "conv_forward", racy)
    bad = _failures(name, ops=["conv_forward"], kinds=["matrix", "threads"], quick=True)
    assert set(bad) == {"threads/conv_forward/float32", "threads/conv_forward/float64"}, bad
    assert "(concurrent vs serial)" in bad["threads/conv_forward/float64"]
    assert "concurrent calls must equal serial ones bit for bit" in bad["threads/conv_forward/float64"]


def test_a_kernel_that_modifies_its_inputs_fails_the_mutation_checks_only(wrong):
    """Every call gets fresh inputs: a conv_backward that scales dZ after using it (its outputs
    right) fails the mutation checks, not the matrix's input_grad=False rerun or the threads'."""
    ref = _dispatch.kernel_of("conv_backward", REF)

    def mutating(p, A, W, dZ, dA_prev, dW, db):
        ref(p, A, W, dZ, dA_prev, dW, db)
        dZ *= 2

    name = wrong("modifies_dZ", "conv_backward", mutating)
    bad = _failures(name, ops=["conv_backward"], kinds=["matrix", "threads", "mutation", "nan"], quick=True)
    # (not noncontig/float64: the wrapper passes the kernel a contiguous copy of a non-contiguous dZ)
    assert set(bad) == {"mutation/conv_backward/float32", "mutation/conv_backward/float64"}, bad
    assert "modified its input dZ" in bad["mutation/conv_backward/float64"]


@pytest.mark.parametrize("op, lossy, said", [
    ("zero_pad", lambda ref: lambda p, X, out: (ref(p, X, out), np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)),
     "X_pad[0, 4, 4, 0] should be nan"),
    ("relu_backward", lambda ref: lambda dA, Z, out: (ref(np.nan_to_num(dA, nan=0.0, posinf=0.0, neginf=0.0), Z, out)),
     "dZ[0, 3] should be nan"),
    ("sigmoid_backward", lambda ref: lambda dA, Z, out: (ref(np.nan_to_num(dA, nan=0.0, posinf=1.0, neginf=-1.0), Z, out)),
     "dZ[0, 0] should be nan"),
])
def test_a_lost_nan_or_inf_in_pad_and_activation_gradients_is_caught(wrong, op, lossy, said):
    """zero_pad and the activations' backward (NaN, +Inf, -Inf in dA at every kind of Z) are checked
    too: kernels that zero them pass every other check (the matrix has no NaN in X or dA)."""
    name = wrong(f"lossy_{op}", op, lossy(_dispatch.kernel_of(op, REF)))
    bad = _failures(name, ops=[op], kinds=["matrix", "nan"])
    assert list(bad) == [f"nan/{op}/propagation"], bad
    assert said in bad[f"nan/{op}/propagation"] and "(NaN and Inf propagate)" in bad[f"nan/{op}/propagation"]


def test_activation_gradients_are_checked_against_central_differences(wrong):
    """relu_backward and sigmoid_backward have a numerical-gradient check of their own."""
    def sigmoid_backward(dA, Z, out):  # s instead of s * (1 - s)
        out[...] = dA / (1 + np.exp(-Z))

    name = wrong("wrong_sigmoid_grad", "sigmoid_backward", sigmoid_backward)
    bad = _failures(name, ops=["relu_backward", "sigmoid_backward"], kinds=["gradients"])
    assert list(bad) == ["gradients/sigmoid_backward/central_differences"], bad
    assert "dZ (vs central differences)" in bad["gradients/sigmoid_backward/central_differences"]
    ids = [c.id for c in conformance.checks(REF, kinds=["gradients"], ops=["relu_backward", "sigmoid_backward"])]
    assert ids == ["gradients/relu_backward/central_differences", "gradients/sigmoid_backward/central_differences"]


def test_a_student_function_that_raises_is_located(tmp_path, capsys, monkeypatch):
    """The report names the student's line (file:line, function, source) and the call's inputs."""
    from fastnn import cli

    src = STUDENT.replace("STEP(stride)", "stride").replace(  # Z one row too tall: the last row's slice is short
        "n_H = int((n_H_prev - f + 2 * pad) / stride) + 1", "n_H = int((n_H_prev - f + 2 * pad) / stride) + 2")
    (tmp_path / "student_nb.py").write_text(src)
    line = src.splitlines().index("                    Z[i, h, w, c] = np.sum(a * W[:, :, :, c]) + float(b[0, 0, 0, c])") + 1
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "--function", "student_nb.py:conv_forward", "--kinds", "matrix", "--quick"]) == 1
    text = capsys.readouterr().out
    assert ("FAIL matrix/conv_forward/odd_sizes/float64: raised ValueError: operands could not be broadcast "
            "together") in text, text
    assert (f"; at student_nb.py:{line} in conv_forward: Z[i, h, w, c] = np.sum(a * W[:, :, :, c]) + "
            "float(b[0, 0, 0, c]); inputs: A_prev (2, 7, 5, 3) float64, W (3, 3, 3, 5) float64, "
            "b (1, 1, 1, 5) float64, hparameters {'stride': 1, 'pad': 1}") in text, text


# ------------------------------------------------------------------ notebooks, conformance.report


def _notebook(path, student_src):
    """A course notebook: markdown, magics, an import of a helper module it does not have here,
    the student's functions, a cell that trains (never to be run) and a cell that does not parse."""
    def code(src):
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                "source": src.splitlines(True)}
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# Convolution model\n"]},
             code("import numpy as np\n%matplotlib inline\n!ls\nnp.random.seed(1)\nSCALE = 1.0\n"),
             code("from public_tests_not_here import *\n"),
             code(student_src),
             code("raise RuntimeError('a cell that trains: --function must not run it')\n"),
             code("def broken(:\n    pass\n")]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.mark.parametrize("mistake", [None, "stride", "raises"])
def test_function_check_of_a_notebook(tmp_path, capsys, monkeypatch, mistake):
    from fastnn import cli

    src = STUDENT.replace("STEP(stride)", "1" if mistake == "stride" else "stride")
    if mistake == "raises":
        src = src.replace("n_H = int((n_H_prev - f + 2 * pad) / stride) + 1", "n_H = int((n_H_prev - f + 2 * pad) / stride) + 2")
    _notebook(tmp_path / "nb.ipynb", src)
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["check", "--function", "nb.ipynb:conv_forward", "--quick", "--kinds", "golden,matrix"])
    out, err = capsys.readouterr()
    assert out.startswith("fastnn check nb.ipynb:conv_forward as conv_forward: "), out + err
    if mistake is None:
        assert rc == 0 and "passed: all" in out, out
    elif mistake == "stride":
        assert rc == 1 and "your Z equals a stride-1 convolution: check the stride in your slice" in out
    else:
        line = src.splitlines().index("                    Z[i, h, w, c] = np.sum(a * W[:, :, :, c]) + float(b[0, 0, 0, c])") + 1
        assert rc == 1 and f"; at nb.ipynb[cell 4]:{line} in conv_forward: Z[i, h, w, c] = np.sum(" in out, out


def test_a_notebook_without_the_function_says_what_it_has(tmp_path, capsys):
    from fastnn import cli

    nb = _notebook(tmp_path / "nb.ipynb", STUDENT.replace("STEP(stride)", "stride"))
    assert cli.main(["check", "--function", f"{nb}:pool_forward"]) == 2
    err = capsys.readouterr().err
    assert f"cannot load {nb}:pool_forward: {nb} defines no 'pool_forward'; its functions: conv_forward, zero_pad" in err
    assert "cell 3, line 1: ModuleNotFoundError: No module named 'public_tests_not_here'" in err
    assert "cell 6 does not parse (SyntaxError" in err
    (tmp_path / "not_a.ipynb").write_text("{ not json")
    assert cli.main(["check", "--function", f"{tmp_path / 'not_a.ipynb'}:conv_forward"]) == 2
    assert "as a Jupyter notebook: JSONDecodeError" in capsys.readouterr().err


def test_report_in_a_notebook_prints_what_the_command_prints(capsys):
    import io

    buf = io.StringIO()
    good = conformance.report(_student_conv(None), kinds=["matrix"], quick=True, file=buf)
    lines = buf.getvalue().splitlines()
    n = len(good.results)
    assert good.passed and n > 2 and lines == [f"fastnn check conv_forward: {n} checks (quick)", f"passed: all {n} checks"]
    assert repr(good) == f"<fastnn check conv_forward: {n} of {n} checks passed>"
    bad = conformance.report(_student_conv("no_b"), kinds=["matrix"], quick=True)  # to stdout
    out = capsys.readouterr().out.splitlines()
    fails = [line for line in out if line.startswith("FAIL matrix/conv_forward/")]
    assert not bad.passed and len(fails) == bad.failed > 0 and out[-1] == f"FAILED: {bad.failed} of {n} checks"
    assert all("your Z equals the convolution without b" in line for line in fails)
    assert bad.as_json()["failed"] == bad.failed
    with pytest.raises(ValueError, match="'my_conv' is not a course function; pass as_= one of"):
        conformance.report(lambda A_prev, W, b, hparameters: None, "my_conv")


# ------------------------------------------------------------------ fastnn check --json, --import


def test_check_json_path_is_checked_before_running(tmp_path, capsys):
    from fastnn import cli

    target = tmp_path / "no_such_dir" / "r.json"
    assert cli.main(["check", REF, "--kinds", "ties", "--json", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"--json {target}: its directory {target.parent} does not exist" in err
    assert "nothing was checked" in err and "Traceback" not in err


WRONG_MODULE = '''
import numpy as np
import fastnn
from fastnn import _dispatch

REF = _dispatch.ground_truth_backend()
fastnn.register_backend("imported_dropsnan", priority=-100)
for op in _dispatch.OPS:
    fastnn.register(op, "imported_dropsnan")(_dispatch.kernel_of(op, REF))
fastnn.register("relu", "imported_dropsnan")(lambda x, out: np.fmax(x, 0, out=out))  # NaN dropped
'''


def test_check_imports_a_module_that_registers_the_backend(tmp_path, capsys):
    from fastnn import cli

    (tmp_path / "mine_backend.py").write_text(WRONG_MODULE)
    assert cli.main(["check", "imported_dropsnan", "--ops", "relu"]) == 2
    assert "unknown backend 'imported_dropsnan'" in capsys.readouterr().err
    try:
        rc = cli.main(["check", "--import", str(tmp_path / "mine_backend.py"), "imported_dropsnan", "--ops", "relu"])
        out = capsys.readouterr().out
        assert rc == 1 and "FAIL nan/relu/propagation: A[0] should be nan (NaN and Inf propagate), got 0.0" in out, out
    finally:
        fastnn.unregister_backend("imported_dropsnan")
    assert cli.main(["check", "--import", "no_such_module_for_fastnn_check", REF]) == 2
    assert "--import no_such_module_for_fastnn_check: ModuleNotFoundError" in capsys.readouterr().err


def test_a_failing_plugin_leaves_the_default_backend_planner_and_recorder_as_they_were(monkeypatch):
    """A plugin that chose its backend as the default (and a planner, a recorder), then failed:
    its backend is removed and so is its choice, or every later call would raise."""
    from fastnn import _plugins

    class EP:
        name, value, dist = "chooser", "chooser_plugin", None

        def load(self):
            fastnn.register_backend("chooser_made", priority=-100)
            fastnn.register("relu", "chooser_made")(_dispatch.kernel_of("relu", REF))
            fastnn.set_backend("chooser_made")
            _dispatch.set_planner(lambda op, p: "chooser_made")
            _dispatch.set_recorder(lambda op, p: None)
            raise RuntimeError("boom")

    monkeypatch.setattr(_plugins, "PLUGINS", {})
    before = (_dispatch._global_choice, _dispatch._planner, _dispatch._recorder)
    for attr, value in zip(("_global_choice", "_planner", "_recorder"), before):
        monkeypatch.setattr(_dispatch, attr, value)  # restored after the test, whatever it finds
    _plugins._load_one(EP())
    assert _plugins.PLUGINS["chooser"]["error"] == "RuntimeError: boom"
    assert "chooser_made" not in fastnn.available_backends()
    assert (_dispatch._global_choice, _dispatch._planner, _dispatch._recorder) == before
    assert fastnn.get_backend() != "chooser_made"
    np.testing.assert_array_equal(fastnn.relu(np.array([-1.0, 2.0]))[0], [0.0, 2.0])


def test_builtin_backends_leave_the_plugins_out(monkeypatch):
    """What fastnn's own tests check (tests/test_matrix.py, test_validation.py, ...): not an installed
    plugin's backend, whose bugs are for `fastnn check` to report, not for fastnn's tests to fail on."""
    from fastnn import _plugins

    monkeypatch.setattr(_plugins, "PLUGINS", {"p": {"value": "p_mod", "distribution": None,
                                                   "backends": ["from_a_plugin"], "error": None}})
    fastnn.register_backend("from_a_plugin", priority=100)
    try:
        assert fastnn.available_backends()[0] == "from_a_plugin"
        assert "from_a_plugin" not in _plugins.builtin_backends() and REF in _plugins.builtin_backends()
        assert _plugins.builtin_backends() == [b for b in fastnn.available_backends() if b != "from_a_plugin"]
    finally:
        fastnn.unregister_backend("from_a_plugin")


def test_the_readme_gives_each_params_type_its_own_fields():
    """README's kernel table: the fields of each params type a kernel gets, as fastnn/_params.py has
    them (it listed their union: PadParams has no fh, K, Ho), and the signatures as fastnn.OPS."""
    import re

    from fastnn import _params

    assert fastnn.OPS is _dispatch.OPS and "OPS" in fastnn.__all__
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+Params)` \| [^|]+ \| `([^`]+)` \|$", readme, re.M))
    assert rows == {name: ", ".join(getattr(_params, name)._fields) for name in ("PadParams", "ConvParams", "PoolParams")}
