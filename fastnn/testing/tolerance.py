"""The one tolerance rule for a backend's outputs against the ground truth's.

Used by the equivalence tests and by ``fastnn bench``'s check before timing. float64 is
held to 1e-12 and float32 to 1e-5, relative; the absolute tolerance is the same number
scaled by the largest finite magnitude of the expected result (at least 1), so that large
sums are judged relatively and values near zero are not judged against zero alone. NaN
matches NaN, an infinity the same infinity; dtype and shape must be equal.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

__all__ = ["TOLERANCES", "tolerance", "mismatch", "assert_close"]

#: rtol and (unscaled) atol by dtype.
TOLERANCES: Dict[type, Dict[str, float]] = {
    np.float64: {"rtol": 1e-12, "atol": 1e-12},
    np.float32: {"rtol": 1e-5, "atol": 1e-5},
}


def tolerance(dtype, expected: Optional[np.ndarray] = None) -> Tuple[float, float]:
    """``(rtol, atol)`` for ``dtype``; atol scaled by ``expected``'s largest finite magnitude (at least 1)."""
    tol = TOLERANCES[np.dtype(dtype).type]
    scale = 1.0
    if expected is not None:
        e = np.asarray(expected)
        scale = max(1.0, float(np.max(np.abs(e[np.isfinite(e)]), initial=0.0)))
    return tol["rtol"], tol["atol"] * scale


def mismatch(actual, expected, dtype, what: str = "") -> Optional[str]:
    """None when ``actual`` equals ``expected`` under the rule, else one line saying what differs."""
    dtype = np.dtype(dtype)
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        return f"{what}: shape {a.shape}, expected {e.shape}"
    if a.dtype != dtype:
        return f"{what}: dtype {a.dtype}, expected {dtype}"
    rtol, atol = tolerance(dtype, e)
    bad = ~np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        with np.errstate(invalid="ignore"):
            err = float(np.nanmax(np.abs(a.astype(np.float64) - e.astype(np.float64))))
        return f"{what}: {int(bad.sum())} of {bad.size} differ (max abs err {err:.3g}, atol {atol:.3g})"
    return None


def assert_close(actual, expected, dtype, what: str = "") -> None:
    """Raise ``AssertionError`` (the :func:`mismatch` line) unless ``actual`` equals ``expected`` under the rule."""
    msg = mismatch(actual, expected, dtype, what)
    if msg is not None:
        raise AssertionError(msg)
