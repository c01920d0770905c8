"""Drop-in replacements for other courses' layer modules, on fastnn's kernels.

:mod:`fastnn.compat.cs231n`: Stanford CS231n's ``fast_layers`` (and its ``_naive`` names and
``layer_utils``' conv sandwiches), NCHW, with no build step. Imported on demand only:
``import fastnn`` does not load it.
"""
