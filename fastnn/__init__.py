"""fastnn: the course's NumPy neural-network API on fast, interchangeable backends.

``from fastnn import conv_forward`` replaces a hand-written course function with nothing
else changed. Backends: see :func:`available_backends`; choose with ``backend=``,
:func:`set_backend`, ``with use_backend(...)`` or ``$FASTNN_BACKEND``.
"""

from . import backends as _backends  # noqa: F401  (registers the kernels)
from . import _plan
from ._dispatch import (
    AUTO,
    OPS,
    BackendError,
    available_backends,
    backend_info,
    get_backend,
    register,
    register_backend,
    set_backend,
    unregister_backend,
    use_backend,
)
from .activations import relu, relu_backward, sigmoid, sigmoid_backward
from .conv import (
    conv_backward,
    conv_forward,
    conv_single_step,
    create_mask_from_window,
    distribute_value,
    pool_backward,
    pool_forward,
    zero_pad,
)
from .dnn import (
    L_layer_model,
    L_model_backward,
    L_model_forward,
    compute_cost,
    initialize_parameters,
    initialize_parameters_deep,
    linear_activation_backward,
    linear_activation_forward,
    linear_backward,
    linear_forward,
    predict,
    update_parameters,
)
from .gradcheck import (
    dictionary_to_vector,
    gradient_check,
    gradient_check_n,
    gradients_to_vector,
    vector_to_dictionary,
)

__version__ = "0.1.0"

from ._plan import record, recorded, set_autotune, tune  # noqa: E402  (after __version__: plans are keyed by it)

_plan._install()

from . import _plugins  # noqa: E402  (last: a plugin may `import fastnn` and find it whole)

_plugins.load_plugins()

__all__ = [
    "AUTO", "OPS", "BackendError", "register_backend", "register", "unregister_backend", "available_backends", "backend_info", "get_backend", "set_backend", "use_backend",
    "tune", "set_autotune", "record", "recorded",
    "relu", "relu_backward", "sigmoid", "sigmoid_backward",
    "conv_backward", "conv_forward", "conv_single_step", "create_mask_from_window", "distribute_value",
    "pool_backward", "pool_forward", "zero_pad",
    "L_layer_model", "L_model_backward", "L_model_forward", "compute_cost", "initialize_parameters",
    "initialize_parameters_deep", "linear_activation_backward", "linear_activation_forward", "linear_backward",
    "linear_forward", "predict", "update_parameters",
    "dictionary_to_vector", "gradient_check", "gradient_check_n", "gradients_to_vector", "vector_to_dictionary",
]
