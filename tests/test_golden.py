"""Every value the course prints, reproduced with np.random.seed and the legacy generator.

The conv/pool/zero_pad goldens are checks of the conformance suite (fastnn.testing.conformance,
values in fastnn.testing.course), run on every in-repo backend by tests/test_matrix.py.
"""

import numpy as np
import pytest

import fastnn
from fastnn import dnn



def close(actual, expected, decimals=8):
    # The course prints 8-12 significant digits; compare to what it printed.
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=0, atol=0.5 * 10.0 ** -decimals)


# --------------------------------------------------------------------------- CNN


def test_conv_single_step():
    np.random.seed(1)
    a_slice_prev = np.random.randn(4, 4, 3)
    W = np.random.randn(4, 4, 3)
    b = np.random.randn(1, 1, 1)
    Z = fastnn.conv_single_step(a_slice_prev, W, b)
    assert type(Z) == np.float64  # the course's grader checks exactly this
    close(Z, -6.99908945068, 11)


@pytest.mark.parametrize("dtypes, expected", [
    (("float64", "float64", "float64"), np.float64),
    (("float32", "float32", "float32"), np.float32),
    (("float32", "float64", "float32"), np.float64),  # NumPy's promotion
    (("int64", "int64", "int64"), np.float64),  # integers compute in float64
])
def test_conv_single_step_returns_a_numpy_scalar_of_the_computed_dtype(dtypes, expected):
    rng = np.random.RandomState(0)
    a, W, b = (rng.standard_normal(s).round(1).astype(d) if d != "int64" else rng.randint(-5, 5, s)
               for s, d in zip(((3, 3, 2), (3, 3, 2), (1, 1, 1)), dtypes))
    Z = fastnn.conv_single_step(a, W, b)
    assert type(Z) is expected
    dt = np.dtype(expected)
    np.testing.assert_allclose(Z, np.sum(a.astype(dt) * W.astype(dt)) + b.astype(dt).item(),
                               rtol=1e-12 if dt == np.float64 else 1e-6)


def test_create_mask_from_window():
    np.random.seed(1)
    x = np.random.randn(2, 3)
    close(x, [[1.62434536, -0.61175641, -0.52817175], [-1.07296862, 0.86540763, -2.3015387]])
    mask = fastnn.create_mask_from_window(x)
    assert mask.dtype == bool
    assert mask.tolist() == [[True, False, False], [False, False, False]]
    # The course's rule marks every maximum.
    assert fastnn.create_mask_from_window(np.array([[1, 3], [3, 2]])).tolist() == [[False, True], [True, False]]


def test_distribute_value():
    a = fastnn.distribute_value(2, (2, 2))
    assert a.tolist() == [[0.5, 0.5], [0.5, 0.5]]
    assert fastnn.distribute_value(np.float32(3), (1, 3)).dtype == np.float32
    assert fastnn.distribute_value(6, (2, 3)).sum() == 6


# -------------------------------------------------------------------------- DNN


def test_initialize_parameters_deep_sqrt_seed3():
    p = fastnn.initialize_parameters_deep([5, 4, 3], seed=3)
    close(p["W1"], [[0.79989897, 0.19521314, 0.04315498, -0.83337927, -0.12405178],
                    [-0.15865304, -0.03700312, -0.28040323, -0.01959608, -0.21341839],
                    [-0.58757818, 0.39561516, 0.39413741, 0.76454432, 0.02237573],
                    [-0.18097724, -0.24389238, -0.69160568, 0.43932807, -0.49241241]])
    close(p["W2"], [[-0.59252326, -0.10282495, 0.74307418, 0.11835813],
                    [-0.51189257, -0.3564966, 0.31262248, -0.08025668],
                    [-0.38441818, -0.11501536, 0.37252813, 0.98805539]])
    assert np.all(p["b1"] == 0) and p["b1"].shape == (4, 1) and p["b2"].shape == (3, 1)


def test_initialize_parameters_deep_seed_does_not_touch_global_state():
    np.random.seed(123)
    expected_next = np.random.RandomState(123).randn()
    fastnn.initialize_parameters_deep([5, 4, 3], seed=3)
    assert np.random.randn() == expected_next


def test_initialize_parameters_global_generator_like_the_course():
    # The course's first notebook: np.random.seed(3) inside, scale 0.01.
    np.random.seed(3)
    p = fastnn.initialize_parameters_deep([5, 4, 3], scale=0.01)
    np.random.seed(3)
    close(p["W1"], np.random.randn(4, 5) * 0.01, 15)
    assert p["W1"][0, 0] == pytest.approx(0.0178862847, abs=1e-10)
    q = fastnn.initialize_parameters_deep([5, 4, 3], scale=0.01, seed=3)
    assert np.array_equal(p["W1"], q["W1"]) and np.array_equal(p["W2"], q["W2"])
    two = fastnn.initialize_parameters(3, 2, 1, seed=1)
    np.random.seed(1)
    close(two["W1"], np.random.randn(2, 3) * 0.01, 15)
    close(two["W2"], np.random.randn(1, 2) * 0.01, 15)
    assert two["b1"].shape == (2, 1) and two["b2"].shape == (1, 1)


def test_linear_forward():
    np.random.seed(1)
    A, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    Z, cache = fastnn.linear_forward(A, W, b)
    close(Z, [[3.26295337, -1.23429987]])
    assert cache[0] is A and cache[1] is W and cache[2] is b  # (A_prev, W, b), not (Z, W, b)


def test_linear_activation_forward():
    np.random.seed(2)
    A_prev, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    A, cache = fastnn.linear_activation_forward(A_prev, W, b, activation="sigmoid")
    close(A, [[0.96890023, 0.11013289]])
    (lin, Z) = cache
    assert lin[0] is A_prev
    A, _ = fastnn.linear_activation_forward(A_prev, W, b, activation="relu")
    close(A, [[3.43896131, 0.0]])


def test_sigmoid_relu_course_checks():
    s, cache = fastnn.sigmoid(np.array([0, 2]))
    assert round(s[0], 5) == 0.5 and round(s[1], 5) == 0.8808
    r, cache = fastnn.relu(np.array([-1.0, 0.0, 2.5]))
    assert r.tolist() == [0.0, 0.0, 2.5]


def test_L_model_forward():
    np.random.seed(1)
    X = np.random.randn(4, 2)
    params = {"W1": np.random.randn(3, 4), "b1": np.random.randn(3, 1),
              "W2": np.random.randn(1, 3), "b2": np.random.randn(1, 1)}
    AL, caches = fastnn.L_model_forward(X, params)
    close(AL, [[0.17007265, 0.2524272]])
    assert len(caches) == 2


def test_compute_cost():
    Y = np.asarray([[1, 1, 1]])
    AL = np.array([[0.8, 0.9, 0.4]])
    cost = fastnn.compute_cost(AL, Y)
    assert np.shape(cost) == ()
    assert float(cost) == pytest.approx(0.414931599615397, rel=1e-14)


def test_linear_backward():
    np.random.seed(1)
    dZ = np.random.randn(1, 2)
    A, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    dA_prev, dW, db = fastnn.linear_backward(dZ, (A, W, b))
    close(dA_prev, [[0.51822968, -0.19517421], [-0.40506361, 0.15255393], [2.37496825, -0.89445391]])
    close(dW, [[-0.10076895, 1.40685096, 1.64992505]])
    close(db, [[0.50629448]])


def _linear_activation_backward_case():
    np.random.seed(2)
    dA = np.random.randn(1, 2)
    A, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    Z = np.random.randn(1, 2)
    return dA, ((A, W, b), Z)


def test_linear_activation_backward():
    dA, cache = _linear_activation_backward_case()
    dA_prev, dW, db = fastnn.linear_activation_backward(dA, cache, activation="sigmoid")
    close(dA_prev, [[0.11017994, 0.01105339], [0.09466817, 0.00949723], [-0.05743092, -0.00576154]])
    close(dW, [[0.10266786, 0.09778551, -0.01968084]])
    close(db, [[-0.05729622]])
    dA_prev, dW, db = fastnn.linear_activation_backward(dA, cache, activation="relu")
    close(dA_prev, [[0.44090989, 0.0], [0.37883606, 0.0], [-0.2298228, 0.0]])
    close(dW, [[0.44513824, 0.37371418, -0.10478989]])
    close(db, [[-0.20837892]])


def test_L_model_backward():
    np.random.seed(3)
    AL = np.random.randn(1, 2)
    Y = np.array([[1, 0]])
    A1, W1, b1, Z1 = np.random.randn(4, 2), np.random.randn(3, 4), np.random.randn(3, 1), np.random.randn(3, 2)
    A2, W2, b2, Z2 = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1), np.random.randn(1, 2)
    caches = (((A1, W1, b1), Z1), ((A2, W2, b2), Z2))
    grads = fastnn.L_model_backward(AL, Y, caches)
    close(grads["dW1"], [[0.41010002, 0.07807203, 0.13798444, 0.10502167], [0, 0, 0, 0],
                         [0.05283652, 0.01005865, 0.01777766, 0.0135308]])
    close(grads["db1"], [[-0.22007063], [0.0], [-0.02835349]])
    close(grads["dA1"], [[0.0, 0.52257901], [0.0, -0.3269206], [0.0, -0.32070404], [0.0, -0.74079187]])
    np.testing.assert_array_almost_equal(grads["dA2"], [[0.12913, -0.44014], [-0.14176, 0.48317], [0.01664, -0.05671]], 5)


def test_update_parameters():
    np.random.seed(2)
    params = {"W1": np.random.randn(3, 4), "b1": np.random.randn(3, 1),
              "W2": np.random.randn(1, 3), "b2": np.random.randn(1, 1)}
    np.random.seed(3)
    grads = {"dW1": np.random.randn(3, 4), "db1": np.random.randn(3, 1),
             "dW2": np.random.randn(1, 3), "db2": np.random.randn(1, 1)}
    before = {k: v.copy() for k, v in params.items()}
    new = fastnn.update_parameters(params, grads, 0.1)
    np.testing.assert_array_almost_equal(new["W1"], [[-0.59562, -0.09992, -2.14585, 1.82662],
                                                     [-1.7657, -0.80627, 0.51116, -1.18259],
                                                     [-1.05357, -0.86129, 0.68284, 2.20375]], 5)
    np.testing.assert_array_almost_equal(new["b1"], [[-0.04659], [-1.28888], [0.53405]], 5)
    np.testing.assert_array_almost_equal(new["W2"], [[-0.55569, 0.0354, 1.32964]], 5)
    np.testing.assert_array_almost_equal(new["b2"], [[-0.8461]], 5)
    assert all(np.array_equal(params[k], before[k]) for k in params), "update_parameters mutated its input"
    assert new is not params


def test_predict_prints_accuracy(capsys):
    params = {"W1": np.array([[1.0]]), "b1": np.array([[0.0]])}
    p = dnn.predict(np.array([[-2.0, 3.0, 1.0]]), np.array([[0, 1, 0]]), params)
    assert p.tolist() == [[0.0, 1.0, 1.0]]
    assert "Accuracy: 0.666" in capsys.readouterr().out
