"""Argument checking and output shapes: the one place that does either.

Every public kernel call builds one frozen params object here (a ``NamedTuple``:
immutable and cheap to build); backends receive it with checked, normalised,
C-contiguous arrays of ``p.dtype`` and never re-validate or re-derive a shape.

Errors name the argument and show what was expected and what was given:
``ValueError`` for a wrong shape or value, ``TypeError`` for a wrong type.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple, Tuple

import numpy as np

__all__ = [
    "ConvParams",
    "PoolParams",
    "PadParams",
    "as_array",
    "compute_dtype",
    "as_kernel_input",
    "conv_params",
    "pool_params",
    "pad_params",
    "conv_out_size",
    "check_same_shape",
    "normalise_mode",
    "POOL_MODES",
    "TIE_RULES",
]

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)

#: Accepted pooling mode spellings and what they mean.
POOL_MODES = {"max": "max", "average": "average", "avg": "average", "mean": "average"}
#: Max-pool backward tie rules: "all" (the course: every position equal to the window's
#: maximum receives the gradient) or "first" (only the first maximum in row-major window
#: order, as PyTorch does).
TIE_RULES = ("all", "first")


class PadParams(NamedTuple):
    m: int
    H: int
    W: int
    C: int
    ph: int
    pw: int
    Hp: int
    Wp: int
    dtype: np.dtype


class ConvParams(NamedTuple):
    m: int  # batch
    H: int  # input height
    W: int  # input width
    C: int  # input channels
    fh: int  # kernel height
    fw: int  # kernel width
    K: int  # output channels
    sh: int  # stride (vertical)
    sw: int  # stride (horizontal)
    ph: int  # zero padding (top and bottom)
    pw: int  # zero padding (left and right)
    Hp: int  # padded height
    Wp: int  # padded width
    Ho: int  # output height
    Wo: int  # output width
    dtype: np.dtype

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of the forward pass."""
        return 2 * self.m * self.Ho * self.Wo * self.K * self.fh * self.fw * self.C


class PoolParams(NamedTuple):
    m: int
    H: int
    W: int
    C: int
    fh: int
    fw: int
    sh: int
    sw: int
    ph: int  # padding: -inf for max, zeros for average (counted in the divisor)
    pw: int
    Hp: int
    Wp: int
    Ho: int
    Wo: int
    mode: str  # "max" or "average"
    ties: str  # "all" or "first" (max backward only)
    dtype: np.dtype


# ---------------------------------------------------------------------------- arrays


def as_array(x: Any, name: str) -> np.ndarray:
    """``x`` as an ndarray of a real numeric (or bool) dtype, without copying."""
    a = x if type(x) is np.ndarray else np.asarray(x)
    kind = a.dtype.kind
    if kind in "fiub":
        return a
    if kind == "c":
        raise TypeError(f"{name} must be a real array, got complex dtype {a.dtype}")
    raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype} ({type(x).__name__})")


def compute_dtype(*arrays: np.ndarray) -> np.dtype:
    """NumPy's promotion of the inputs; integers and bools compute in float64, float16 in float32."""
    dt = arrays[0].dtype
    if dt is F64 or dt is F32:  # the common case, kept fast (NumPy's native float dtypes are singletons)
        for a in arrays:
            if a.dtype is not dt:
                break
        else:
            return dt
    for a in arrays[1:]:
        if a.dtype != dt:
            dt = np.result_type(*arrays)
            break
    if not dt.isnative:
        dt = dt.newbyteorder("=")
    if dt == F64:
        return F64
    if dt == F32:
        return F32
    if dt.kind in "iub":
        return F64
    if dt == np.float16:
        return F32
    raise TypeError(f"unsupported dtype {dt}: fastnn computes in float32 or float64")


def as_kernel_input(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous ``a`` of ``dtype`` (no copy when it already is)."""
    if a.dtype == dtype and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=dtype)


def _check_ndim(a: np.ndarray, ndim: int, name: str, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D {layout}, got {a.ndim}-D array of shape {a.shape}"
        )


def check_same_shape(a: np.ndarray, name_a: str, b: np.ndarray, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} must have the shape of {name_b} {b.shape}, got {a.shape}")


# ---------------------------------------------------------------------- hparameters


def _pair(value: Any, what: str = "value", minimum: int = 0) -> Tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum, as an (h, w) tuple.

    The one parser of windows, strides and pads (the params builders, the named test cases
    and the benchmark workloads); ``what`` names the argument in the error.
    """
    if type(value) is int and value >= minimum:  # the common case, kept fast
        return value, value
    if isinstance(value, (tuple, list, np.ndarray)):
        items = list(np.asarray(value, dtype=object).ravel()) if isinstance(value, np.ndarray) else list(value)
        if len(items) != 2:
            raise ValueError(f"{what} must be an int or an (h, w) pair, got {value!r}")
    else:
        items = [value, value]
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(
                f"{what} must be an int or an (h, w) pair of ints, got {value!r} ({type(v).__name__})"
            )
        v = int(v)
        if v < minimum:
            rel = "positive" if minimum == 1 else "non-negative"
            raise ValueError(f"{what} must be {rel} (>= {minimum}), got {value!r}")
        out.append(v)
    return out[0], out[1]


def _hparams(hparameters: Any, required: Tuple[str, ...], optional: Tuple[str, ...], where: str) -> dict:
    if type(hparameters) is dict and len(hparameters) == len(required):  # the common case, kept fast:
        for key in required:                                               # exactly the required keys
            if key not in hparameters:
                break
        else:
            return hparameters
    if type(hparameters) is not dict and not isinstance(hparameters, Mapping):
        raise TypeError(
            f"{where}: hparameters must be a dict with keys {list(required)}, "
            f"got {type(hparameters).__name__}"
        )
    known = required + optional
    for key in hparameters:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{where}: hparameters has an unknown key {key!r}{hint} "
            f"expected keys {list(required)}" + (f" (optional {list(optional)})" if optional else "")
        )
    missing = [k for k in required if k not in hparameters]
    if missing:
        raise ValueError(
            f"{where}: hparameters is missing key(s) {missing}; expected keys {list(required)}, "
            f"got {list(hparameters)}"
        )
    return hparameters  # type: ignore[return-value]


def conv_out_size(size: int, f: int, pad: int, stride: int) -> int:
    """The course's ``floor((n + 2 pad - f) / stride) + 1``."""
    return (size + 2 * pad - f) // stride + 1


def _window_geometry(A_prev, fh, fw, sh, sw, ph, pw, what: str) -> Tuple[int, int, int, int]:
    """(Hp, Wp, Ho, Wo) of sliding a (fh, fw) window over the padded A_prev; checks it fits."""
    m, H, W, C = A_prev.shape
    if H < 1 or W < 1 or C < 1:  # m = 0 (an empty batch) is fine: the outputs are empty too
        raise ValueError(f"A_prev must have at least one pixel and channel (m = 0 examples is allowed), "
                         f"got shape {A_prev.shape}")
    Hp, Wp = H + 2 * ph, W + 2 * pw
    if fh > Hp or fw > Wp:
        raise ValueError(
            f"the {what} ({fh}, {fw}) is larger than the padded input ({Hp}, {Wp}) "
            f"(A_prev {A_prev.shape}, pad ({ph}, {pw}))"
        )
    return Hp, Wp, conv_out_size(H, fh, ph, sh), conv_out_size(W, fw, pw, sw)


# --------------------------------------------------------------------------- builders


def pad_params(X: np.ndarray, pad: Any) -> PadParams:
    _check_ndim(X, 4, "X", "(m, n_H, n_W, n_C)")
    ph, pw = _pair(pad, "pad", 0)
    m, H, W, C = X.shape
    return PadParams(m, H, W, C, ph, pw, H + 2 * ph, W + 2 * pw, compute_dtype(X))


def conv_params(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray, hparameters: Any) -> ConvParams:
    """Check a convolution's arguments and compute its output shape."""
    _check_ndim(A_prev, 4, "A_prev", "(m, n_H_prev, n_W_prev, n_C_prev)")
    _check_ndim(W, 4, "W", "(f_h, f_w, n_C_prev, n_C)")
    m, H, Wd, C = A_prev.shape
    fh, fw, Cw, K = W.shape
    if Cw != C:
        raise ValueError(
            f"W's input channels must match A_prev's: W.shape[2] = {Cw}, A_prev.shape[3] = {C} "
            f"(W {W.shape}, A_prev {A_prev.shape})"
        )
    if fh < 1 or fw < 1 or K < 1:
        raise ValueError(f"W must have non-empty (f_h, f_w, ., n_C), got shape {W.shape}")
    if b.shape != (1, 1, 1, K) and b.shape != (K,):
        raise ValueError(f"b must have shape (1, 1, 1, {K}) (or ({K},)), got {b.shape}")
    hp = _hparams(hparameters, ("stride", "pad"), (), "conv")
    sh, sw = _pair(hp["stride"], "hparameters['stride']", 1)
    ph, pw = _pair(hp["pad"], "hparameters['pad']", 0)
    Hp, Wp, Ho, Wo = _window_geometry(A_prev, fh, fw, sh, sw, ph, pw, "filter")
    return ConvParams(m, H, Wd, C, fh, fw, K, sh, sw, ph, pw, Hp, Wp, Ho, Wo, compute_dtype(A_prev, W, b))


def normalise_mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in POOL_MODES:
        raise ValueError(f"mode must be one of {sorted(set(POOL_MODES))}, got {mode!r}")
    return POOL_MODES[mode]


def pool_params(A_prev: np.ndarray, hparameters: Any, mode: Any, ties: Any = "all") -> PoolParams:
    """Check a pooling call's arguments and compute its output shape."""
    mode = normalise_mode(mode)
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {list(TIE_RULES)}, got {ties!r}")
    _check_ndim(A_prev, 4, "A_prev", "(m, n_H_prev, n_W_prev, n_C_prev)")
    m, H, W, C = A_prev.shape
    hp = _hparams(hparameters, ("f", "stride"), ("pad",), "pool")
    fh, fw = _pair(hp["f"], "hparameters['f']", 1)
    sh, sw = _pair(hp["stride"], "hparameters['stride']", 1)
    ph, pw = _pair(hp.get("pad", 0), "hparameters['pad']", 0)
    if ph > fh // 2 or pw > fw // 2:
        raise ValueError(
            f"pooling pad must be at most half the window: pad ({ph}, {pw}) with f ({fh}, {fw})"
        )
    Hp, Wp, Ho, Wo = _window_geometry(A_prev, fh, fw, sh, sw, ph, pw, "pooling window")
    return PoolParams(m, H, W, C, fh, fw, sh, sw, ph, pw, Hp, Wp, Ho, Wo, mode, ties, compute_dtype(A_prev))
