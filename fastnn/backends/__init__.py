"""Backends register their kernels with :mod:`fastnn._dispatch` when imported.

Importing this package imports every backend module listed in ``BACKEND_MODULES``.
A backend whose optional dependency is missing may raise ``ImportError`` from its module;
it is then skipped and the reason kept in ``UNAVAILABLE`` (``fastnn info`` prints it).
"""

import importlib

BACKEND_MODULES = (
    "reference",
    "numba",
    "im2col",
)

UNAVAILABLE = {}

for _name in BACKEND_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ImportError as exc:  # an optional dependency of that backend is missing
        UNAVAILABLE[_name] = f"{type(exc).__name__}: {exc}"
