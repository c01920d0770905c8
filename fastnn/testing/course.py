"""Numbers the course prints, for tests that compare fastnn's runs with the notebook's.

:data:`L_LAYER_COSTS` is the output of the application notebook's 5-layer model
("Deep Neural Network for Image Classification: Application", Coursera's Deep Learning
specialisation): ``np.random.seed(1)``, then ``L_layer_model(train_x, train_y,
[12288, 20, 7, 5, 1], num_iterations=2500, print_cost=True)`` on the cat/non-cat data prints
``Cost after iteration %i: %f`` for i = 0, 100, ..., 2400. Each value is the cost computed in
iteration i, before that iteration's update. The notebook copy among the project's seeds has
its output cells stripped; these are the values the notebook prints when run.
``tests/test_data.py`` checks ``fastnn.L_layer_model(..., print_cost=True)`` against all 25
lines, ``tests/test_train.py`` the first lines of ``fastnn train --model dnn``.
"""

from __future__ import annotations

from typing import Dict

__all__ = ["L_LAYER_DIMS", "L_LAYER_COSTS", "course_cost_line", "CONV_FORWARD", "CONV_BACKWARD", "POOL_FORWARD",
           "POOL_BACKWARD", "DENSE"]

L_LAYER_DIMS = (12288, 20, 7, 5, 1)

#: iteration -> the cost the notebook prints for it (``%f``: six decimals).
L_LAYER_COSTS: Dict[int, str] = {
    0: "0.771749", 100: "0.672053", 200: "0.648263", 300: "0.611507", 400: "0.567047",
    500: "0.540138", 600: "0.527930", 700: "0.465477", 800: "0.369126", 900: "0.391747",
    1000: "0.315187", 1100: "0.272700", 1200: "0.237419", 1300: "0.199601", 1400: "0.189263",
    1500: "0.161189", 1600: "0.148214", 1700: "0.137775", 1800: "0.129740", 1900: "0.121225",
    2000: "0.113821", 2100: "0.107839", 2200: "0.102855", 2300: "0.100897", 2400: "0.092878",
}


def course_cost_line(i: int) -> str:
    """The notebook's line for iteration ``i``: ``Cost after iteration 100: 0.672053``."""
    return f"Cost after iteration {i}: {L_LAYER_COSTS[i]}"


# The convolution notebook's printed values ("Convolutional Model: step by step"), each after
# ``np.random.seed(1)`` and the draws :mod:`fastnn.testing.conformance` repeats.
CONV_FORWARD = {
    "Z_mean": 0.0489952035289,
    "Z[3, 2, 1]": [-0.61490741, -6.7439236, -2.55153897, 1.75698377, 3.56208902, 0.53036437,
                   5.18531798, 8.75898442],
}
CONV_BACKWARD = {"dA_mean": 1.45243777754, "dW_mean": 1.72699145831, "db_mean": 7.83923256462}
POOL_FORWARD = {
    "max": [[[[1.74481176, 1.6924546, 2.10025514]]], [[[1.19891788, 1.51981682, 2.18557541]]]],
    "average": [[[[-0.09498456, 0.11180064, -0.14263511]]], [[[-0.09525108, 0.28325018, 0.33035185]]]],
}
POOL_BACKWARD = {
    "max": [[0.0, 0.0], [5.05844394, -1.68282702], [0.0, 0.0]],
    "average": [[0.08485462, 0.2787552], [1.26461098, -0.25749373], [1.17975636, -0.53624893]],
}

# The step-by-step L-layer notebook's printed values ("Building your Deep Neural Network: Step by
# Step"), each after its test case's ``np.random.seed(...)`` and draws, which
# :mod:`fastnn.testing.conformance` repeats (``update_parameters``: its test case's assertions,
# five decimals).
DENSE = {
    "linear_forward": {"Z": [[3.26295337, -1.23429987]]},
    "linear_activation_forward": {"sigmoid": [[0.96890023, 0.11013289]], "relu": [[3.43896131, 0.0]]},
    "L_model_forward": {"AL": [[0.17007265, 0.2524272]], "len(caches)": 2},
    "compute_cost": {"cost": 0.414931599615397},
    "linear_backward": {"dA_prev": [[0.51822968, -0.19517421], [-0.40506361, 0.15255393], [2.37496825, -0.89445391]],
                        "dW": [[-0.10076895, 1.40685096, 1.64992505]], "db": [[0.50629448]]},
    "linear_activation_backward": {
        "sigmoid": {"dA_prev": [[0.11017994, 0.01105339], [0.09466817, 0.00949723], [-0.05743092, -0.00576154]],
                    "dW": [[0.10266786, 0.09778551, -0.01968084]], "db": [[-0.05729622]]},
        "relu": {"dA_prev": [[0.44090989, 0.0], [0.37883606, 0.0], [-0.2298228, 0.0]],
                 "dW": [[0.44513824, 0.37371418, -0.10478989]], "db": [[-0.20837892]]},
    },
    "L_model_backward": {
        "dW1": [[0.41010002, 0.07807203, 0.13798444, 0.10502167], [0.0, 0.0, 0.0, 0.0],
                [0.05283652, 0.01005865, 0.01777766, 0.0135308]],
        "db1": [[-0.22007063], [0.0], [-0.02835349]],
        "dA1": [[0.0, 0.52257901], [0.0, -0.3269206], [0.0, -0.32070404], [0.0, -0.74079187]],
    },
    "update_parameters": {
        "W1": [[-0.59562, -0.09992, -2.14585, 1.82662], [-1.7657, -0.80627, 0.51116, -1.18259],
               [-1.05357, -0.86129, 0.68284, 2.20375]],
        "b1": [[-0.04659], [-1.28888], [0.53405]], "W2": [[-0.55569, 0.0354, 1.32964]], "b2": [[-0.8461]],
    },
}
