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

__all__ = ["L_LAYER_DIMS", "L_LAYER_COSTS", "course_cost_line"]

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
