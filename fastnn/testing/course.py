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
           "POOL_BACKWARD"]

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
