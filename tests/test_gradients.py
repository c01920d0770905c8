"""The reference (and every backend) against numerical gradients, and the gradient checker itself."""

import numpy as np
import pytest

import fastnn
from fastnn.gradcheck import backward_propagation_n, forward_propagation_n



def _course_case():
    np.random.seed(1)
    x = np.random.randn(4, 3)
    y = np.array([1, 1, 0])
    params = {}
    for key, shape in [("W1", (5, 4)), ("b1", (5, 1)), ("W2", (3, 5)), ("b2", (3, 1)), ("W3", (1, 3)), ("b3", (1, 1))]:
        params[key] = np.random.randn(*shape)
    return x, y, params


def test_gradient_check_n_correct_backward():
    x, y, params = _course_case()
    _, cache = forward_propagation_n(x, y, params)
    grads = backward_propagation_n(x, y, cache)
    diff = fastnn.gradient_check_n(params, grads, x, y, 1e-7)
    assert diff == pytest.approx(1.1890913024229996e-07, rel=1e-9)


def test_gradient_check_n_planted_bugs(capsys):
    x, y, params = _course_case()
    _, cache = forward_propagation_n(x, y, params)
    grads = backward_propagation_n(x, y, cache)
    grads["dW2"] = grads["dW2"] * 2  # the seed's planted bugs
    grads["db1"] = grads["db1"] * 4
    diff = fastnn.gradient_check_n(params, grads, x, y, 1e-7, print_msg=True)
    assert diff == pytest.approx(0.2850931567761623, rel=1e-9)
    assert "There is a mistake" in capsys.readouterr().out


def test_gradient_check_one_dimensional_uses_central_difference(capsys):
    assert fastnn.gradient_check(3, 4, print_msg=True) < 1e-9
    assert "works perfectly fine" in capsys.readouterr().out
    # A wrong derivative is caught (the course's formula (J+ + J-)/(2 theta) would hide it for some x, theta).
    assert fastnn.gradient_check(3, 4, backward=lambda x, t: 2 * x) > 0.3
    # J = theta^2 x at theta = 2: dJ/dtheta = 4x.
    assert fastnn.gradient_check(3.0, 2.0, forward=lambda x, t: t * t * x, backward=lambda x, t: 2 * t * x) < 1e-8


def test_vector_round_trip_and_order():
    x, y, params = _course_case()
    theta, keys = fastnn.dictionary_to_vector(params)
    assert theta.shape == (47, 1)
    assert keys[:20] == ["W1"] * 20 and keys[20:25] == ["b1"] * 5 and keys[-1] == "b3"
    back = fastnn.vector_to_dictionary(theta)  # the course's one-argument form
    assert all(np.array_equal(back[k], params[k]) for k in params)
    shapes = {"Wa": (2, 3), "ba": (2, 1)}
    d = fastnn.vector_to_dictionary(np.arange(8.0), shapes)
    assert d["Wa"].tolist() == [[0, 1, 2], [3, 4, 5]] and d["ba"].tolist() == [[6], [7]]
    with pytest.raises(ValueError, match="theta must hold 8"):
        fastnn.vector_to_dictionary(np.arange(7.0), shapes)
    g = fastnn.gradients_to_vector({"dZ1": np.ones(3), "db1": np.full((5, 1), 2.0), "dW1": np.ones((5, 4))})
    assert g.shape == (25, 1) and g[:20].sum() == 20 and g[20:].sum() == 10


def test_gradient_check_n_generalised_to_a_conv_layer():
    """Any forward(X, Y, params) -> cost can be checked: here conv -> relu -> mean-square."""
    rng = np.random.RandomState(0)
    X = rng.randn(2, 5, 5, 2)
    Y = rng.randn(2, 3, 3, 3)
    params = {"W1": rng.randn(3, 3, 2, 3) * 0.5, "b1": rng.randn(1, 1, 1, 3)}
    hp = {"stride": 1, "pad": 0}

    def forward(X, Y, p):
        Z, _ = fastnn.conv_forward(X, p["W1"], p["b1"], hp)
        return 0.5 * np.sum((Z - Y) ** 2)

    Z, cache = fastnn.conv_forward(X, params["W1"], params["b1"], hp)
    _, dW, db = fastnn.conv_backward(Z - Y, cache)
    assert fastnn.gradient_check_n(params, {"dW1": dW, "db1": db}, X, Y, 1e-6, forward=forward) < 1e-7
    assert fastnn.gradient_check_n(params, {"dW1": dW * 1.01, "db1": db}, X, Y, 1e-6, forward=forward) > 1e-3


# conv and pool backward against central differences, and the tie rules, on every backend: the
# conformance suite's `gradients` and `ties` checks (fastnn.testing.conformance; tests/test_matrix.py).
