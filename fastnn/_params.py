"""Argument checking and output shapes: the one place that does either.

Every public kernel call builds one frozen params object here (a ``NamedTuple``:
immutable and cheap to build; a call that repeats the shapes, dtypes and hparameters of one
that passed gets that call's object, :data:`_BUILT`); backends receive it with checked,
normalised, C-contiguous arrays of ``p.dtype`` and never re-validate or re-derive a shape.

Errors name the argument and show what was expected and what was given:
``ValueError`` for a wrong shape or value, ``TypeError`` for a wrong type.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional, Tuple

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
    "same_pads",
    "conv_layout",
    "conv_hparameters",
    "conv_shapes",
    "core_conv",
    "core_pool",
    "pool_divisors",
    "pool_hparameters",
    "LAYOUTS",
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

    core = True  # (every kernel computes a padding: see ConvParams.core)


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
    ph: int  # zero padding on top (and at the bottom: ``pb``)
    pw: int  # zero padding on the left (and on the right: ``pr``)
    Hp: int  # padded height, ph + H + pb
    Wp: int  # padded width, pw + W + pr
    Ho: int  # output height
    Wo: int  # output width
    dtype: np.dtype
    pb: int = 0  # zero padding at the bottom (== ph but for "same" and explicit pairs)
    pr: int = 0  # zero padding on the right (== pw but for "same" and explicit pairs)
    dh: int = 1  # dilation (vertical): tap kh reads padded row ho*sh + kh*dh
    dw: int = 1  # dilation (horizontal)
    G: int = 1  # groups: W is (fh, fw, C // G, K); output channel k reads group k // (K // G)
    #: The caller's arrays: "NHWC" (the course's) or "NCHW" (``hparameters["layout"]``). The
    #: fields above describe the call in NHWC terms either way; the layout is part of the call's
    #: key because it decides what a kernel costs (one that reads channels-first arrays itself,
    #: or one given transposed copies: :func:`fastnn._dispatch.channels_first`).
    layout: str = "NHWC"

    @property
    def core(self) -> bool:
        """The course's convolution: one group, no dilation, the same padding on both sides. A
        kernel gets other params only where it declares it handles them (:mod:`fastnn._lower`)."""
        return self.G == 1 and self.dh == 1 and self.dw == 1 and self.pb == self.ph and self.pr == self.pw

    @property
    def Cg(self) -> int:
        """Input channels per group (W.shape[2])."""
        return self.C // self.G

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of the forward pass."""
        return 2 * self.m * self.Ho * self.Wo * self.K * self.fh * self.fw * (self.C // self.G)


class PoolParams(NamedTuple):
    m: int
    H: int
    W: int
    C: int
    fh: int
    fw: int
    sh: int
    sw: int
    ph: int  # padding on top: -inf for max, zeros for average
    pw: int  # padding on the left
    Hp: int  # ph + H + pb
    Wp: int  # pw + W + pr
    Ho: int
    Wo: int
    mode: str  # "max" or "average"
    ties: str  # "all" or "first" (max backward only)
    dtype: np.dtype
    pb: int = 0  # padding at the bottom
    pr: int = 0  # padding on the right
    #: What an average divides a window's sum by (max: always "area"): "area", fh*fw for every
    #: window (pads count; what every kernel computes); "padded", PyTorch's count_include_pad=True
    #: where ceil_mode lets the last windows run past the padding (the part inside the padded
    #: input); "valid", count_include_pad=False (the input elements in the window).
    divisor: str = "area"

    @property
    def overhang(self) -> bool:
        """Whether the last windows reach past the padded input (ceil_mode)."""
        return (self.Ho - 1) * self.sh + self.fh > self.Hp or (self.Wo - 1) * self.sw + self.fw > self.Wp

    @property
    def core(self) -> bool:
        """The course's pooling (and today's pads): the same padding on both sides, every
        window inside the padded input, an average over fh*fw. A kernel gets other params only
        where it declares it handles them (:mod:`fastnn._lower`)."""
        return self.pb == self.ph and self.pr == self.pw and self.divisor == "area" and not self.overhang


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


#: The array layouts: "NHWC" (the course's, what the kernels compute in) and "NCHW"
#: (channels first, PyTorch's; W then is (n_C, n_C_prev // groups, f_h, f_w)).
LAYOUTS = ("NHWC", "NCHW")
_PAD_FORMS = "an int, an (h, w) pair, ((top, bottom), (left, right)), 'valid' or 'same'"


def conv_out_size(size: int, f: int, pad: int, stride: int, dilation: int = 1,
                  pad_after: Optional[int] = None, ceil_mode: bool = False) -> int:
    """The output size of a window of ``f`` taps ``dilation`` apart sliding at ``stride`` over
    ``size`` padded by ``pad`` in front and ``pad_after`` (default ``pad``) behind.

    The course's ``floor((n + 2 pad - f) / stride) + 1``, with PyTorch's dilation and
    ``ceil_mode`` (rounding up, but the last window must start inside the input or the front
    padding). The one output-size function: params, layers, cases and benchmarks use it.
    """
    if pad_after is None:
        pad_after = pad
    span = size + pad + pad_after - (f - 1) * dilation - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def same_pads(size: int, f: int, stride: int, dilation: int = 1) -> Tuple[int, int]:
    """TensorFlow's "same" padding (front, behind) of one dimension: the output has
    ``ceil(size / stride)`` elements, the total padding is ``max((out - 1) * stride + (f - 1) *
    dilation + 1 - size, 0)``, and an odd one goes behind (bottom, right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (f - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pads(value: Any, what: str):
    """(top, bottom, left, right) of a padding given in any of ``_PAD_FORMS``; ``"same"`` comes
    back as is (it needs the sizes: :func:`same_pads`)."""
    if type(value) is int and value >= 0:  # the common case, kept fast
        return value, value, value, value
    if isinstance(value, str):
        if value == "valid":
            return 0, 0, 0, 0
        if value == "same":
            return value
        raise ValueError(f"{what} must be {_PAD_FORMS}, got {value!r}")
    if isinstance(value, np.ndarray) and value.shape == (2, 2):
        value = value.tolist()
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (tuple, list, np.ndarray)) for v in value)):
        t, b = _pair(value[0], f"{what}[0] (top, bottom)", 0)
        left, right = _pair(value[1], f"{what}[1] (left, right)", 0)
        return t, b, left, right
    try:
        h, w = _pair(value, what, 0)
    except TypeError:
        raise TypeError(f"{what} must be {_PAD_FORMS}, got {value!r}") from None
    return h, h, w, w


def _pad_text(t: int, b: int, left: int, right: int) -> str:
    return f"({t}, {left})" if (t, left) == (b, right) else f"(({t}, {b}), ({left}, {right}))"


def _layout(hp: Mapping) -> str:
    layout = hp.get("layout", "NHWC")
    if layout not in LAYOUTS:
        raise ValueError(f"hparameters['layout'] must be one of {list(LAYOUTS)}, got {layout!r}")
    return layout


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _groups(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"hparameters['groups'] must be a positive int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"hparameters['groups'] must be a positive int (>= 1), got {value!r}")
    return int(value)


def _window_geometry(shape, H, W, fh, fw, sh, sw, pads, what: str, dh: int = 1, dw: int = 1,
                     ceil_mode: bool = False) -> Tuple[int, int, int, int]:
    """(Hp, Wp, Ho, Wo) of sliding a (fh, fw) window (taps dilation apart) over the padded
    input; checks it fits. ``shape`` is A_prev's, for the messages."""
    t, b, left, right = pads
    Hp, Wp = H + t + b, W + left + right
    eh, ew = (fh - 1) * dh + 1, (fw - 1) * dw + 1
    if eh > Hp or ew > Wp:
        dilated = f" dilated to ({eh}, {ew})" if (eh, ew) != (fh, fw) else ""
        raise ValueError(
            f"the {what} ({fh}, {fw}){dilated} is larger than the padded input ({Hp}, {Wp}) "
            f"(A_prev {shape}, pad {_pad_text(*pads)})"
        )
    return (Hp, Wp, conv_out_size(H, fh, t, sh, dh, b, ceil_mode),
            conv_out_size(W, fw, left, sw, dw, right, ceil_mode))


def _check_pixels(shape, H: int, W: int, C: int) -> None:
    if H < 1 or W < 1 or C < 1:  # m = 0 (an empty batch) is fine: the outputs are empty too
        raise ValueError(f"A_prev must have at least one pixel and channel (m = 0 examples is allowed), "
                         f"got shape {shape}")


# --------------------------------------------------------------------------- builders


def pad_params(X: np.ndarray, pad: Any) -> PadParams:
    _check_ndim(X, 4, "X", "(m, n_H, n_W, n_C)")
    ph, pw = _pair(pad, "pad", 0)
    m, H, W, C = X.shape
    return PadParams(m, H, W, C, ph, pw, H + 2 * ph, W + 2 * pw, compute_dtype(X))


# ----------------------------------------------------------------- built params, kept

#: Params already built, by their call's key (:func:`_call_key`): a call that repeats one (every
#: step of a training loop) gets the same immutable params without its checks, which depend only
#: on what the key holds and which it passed the first time. Only calls that passed are kept;
#: the store is emptied when it reaches ``_BUILT_MAX`` keys.
_BUILT: dict = {}
_BUILT_MAX = 1024


def _frozen_hparameters(hp: Any) -> Optional[tuple]:
    """A key for a dict of hparameters whose keys are str and whose values are exact ints,
    bools, strs or tuples of exact ints, each with its type (so ``True`` and ``1``, which the
    checks tell apart, get different keys); None for anything else (built every time)."""
    if type(hp) is not dict:
        return None
    key = []
    for k, v in hp.items():
        t = type(v)
        if t is tuple:
            for x in v:
                if type(x) is not int:
                    return None
        elif t is not int and t is not str and t is not bool:
            return None
        if type(k) is not str:
            return None
        key.append((k, t, v))
    return tuple(key)


def _call_key(arrays: tuple, hparameters: Any, *rest: Any) -> Optional[tuple]:
    """The key of a call on ndarrays (their shapes and dtypes), its hparameters and ``rest``
    (exact strs: the mode, the tie rule); None where any part has no key."""
    hp = _frozen_hparameters(hparameters)
    if hp is None:
        return None
    for r in rest:
        if type(r) is not str:
            return None
    key = [hp, rest]
    for a in arrays:
        if type(a) is not np.ndarray:
            return None
        key.append(a.shape)
        key.append(a.dtype)
    return tuple(key)


def _built(key: Optional[tuple], build, *args):
    """The params kept for ``key``, else ``build(*args)`` (kept under ``key`` unless it is None)."""
    if key is None:
        return build(*args)
    p = _BUILT.get(key)
    if p is None:
        p = build(*args)
        if len(_BUILT) >= _BUILT_MAX:
            _BUILT.clear()
        _BUILT[key] = p
    return p


def conv_params(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray, hparameters: Any) -> ConvParams:
    """Check a convolution's arguments and compute its output shape.

    The params describe the call in NHWC terms whatever ``hparameters["layout"]`` is, which
    they keep as ``layout`` (the wrapper hands NCHW arrays to a kernel as NHWC copies or, where
    the kernel reads them itself, as NHWC-shaped views). A call with the key of one built before
    gets the same params (:data:`_BUILT`).
    """
    return _built(_call_key((A_prev, W, b), hparameters, "conv"), _conv_params, A_prev, W, b, hparameters)


def _conv_params(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray, hparameters: Any) -> ConvParams:
    hp = _hparams(hparameters, ("stride", "pad"), ("dilation", "groups", "layout"), "conv")
    layout = "NHWC" if "layout" not in hp else _layout(hp)
    if layout == "NCHW":
        _check_ndim(A_prev, 4, "A_prev", "NCHW (m, n_C_prev, n_H_prev, n_W_prev)")
        _check_ndim(W, 4, "W", "NCHW (n_C, n_C_prev // groups, f_h, f_w)")
        m, C, H, Wd = A_prev.shape
        K, Cw, fh, fw = W.shape
        b_shapes, b_text = ((K,), (1, K, 1, 1)), f"({K},) (or (1, {K}, 1, 1))"
        w_axis, a_axis = 1, 1
    else:
        _check_ndim(A_prev, 4, "A_prev", "(m, n_H_prev, n_W_prev, n_C_prev)")
        _check_ndim(W, 4, "W", "(f_h, f_w, n_C_prev, n_C)")
        m, H, Wd, C = A_prev.shape
        fh, fw, Cw, K = W.shape
        b_shapes, b_text = ((1, 1, 1, K), (K,)), f"(1, 1, 1, {K}) (or ({K},))"
        w_axis, a_axis = 2, 3
    G = 1 if "groups" not in hp else _groups(hp["groups"])
    if G == 1:
        if Cw != C:
            raise ValueError(
                f"W's input channels must match A_prev's: W.shape[{w_axis}] = {Cw}, A_prev.shape[{a_axis}] = {C} "
                f"(W {W.shape}, A_prev {A_prev.shape})"
            )
    elif C % G or K % G:
        raise ValueError(f"hparameters['groups'] = {G} must divide the input channels ({C}) and the output "
                         f"channels ({K}) (A_prev {A_prev.shape}, W {W.shape})")
    elif Cw * G != C:
        raise ValueError(
            f"W's input channels must be A_prev's divided by the groups: W.shape[{w_axis}] = {Cw}, expected "
            f"{C} // {G} = {C // G} (W {W.shape}, A_prev {A_prev.shape})"
        )
    if fh < 1 or fw < 1 or K < 1:
        raise ValueError(f"W must have non-empty filters and output channels, got shape {W.shape}")
    if b.shape not in b_shapes:
        raise ValueError(f"b must have shape {b_text}, got {b.shape}")
    _check_pixels(A_prev.shape, H, Wd, C)
    sh, sw = _pair(hp["stride"], "hparameters['stride']", 1)
    dh, dw = (1, 1) if "dilation" not in hp else _pair(hp["dilation"], "hparameters['dilation']", 1)
    pads = _pads(hp["pad"], "hparameters['pad']")
    if pads == "same":
        pads = same_pads(H, fh, sh, dh) + same_pads(Wd, fw, sw, dw)
    Hp, Wp, Ho, Wo = _window_geometry(A_prev.shape, H, Wd, fh, fw, sh, sw, pads, "filter", dh, dw)
    return ConvParams(m, H, Wd, C, fh, fw, K, sh, sw, pads[0], pads[2], Hp, Wp, Ho, Wo,
                      compute_dtype(A_prev, W, b), pads[1], pads[3], dh, dw, G, layout)


def conv_layout(hparameters: Mapping) -> str:
    """``"NHWC"`` or ``"NCHW"``: the layout of checked hparameters (after :func:`conv_params`
    or :func:`pool_params` accepted them)."""
    return hparameters.get("layout", "NHWC")


def conv_hparameters(p: ConvParams) -> dict:
    """NHWC hparameters that :func:`conv_params` turns back into ``p`` for NHWC arrays of p's
    shapes (``p._replace(layout="NHWC")``: the layout is the caller's, not a hyper-parameter of
    the arrays :func:`conv_shapes` describes)."""
    return {"stride": (p.sh, p.sw), "pad": ((p.ph, p.pb), (p.pw, p.pr)), "dilation": (p.dh, p.dw), "groups": p.G}


def conv_shapes(p: ConvParams) -> Tuple[tuple, tuple, tuple]:
    """The NHWC shapes of (A_prev, W, Z) of a call with params ``p``."""
    return (p.m, p.H, p.W, p.C), (p.fh, p.fw, p.C // p.G, p.K), (p.m, p.Ho, p.Wo, p.K)


def core_conv(m: int, H: int, W: int, C: int, fh: int, fw: int, K: int, sh: int, sw: int, ph: int, pw: int,
              dtype) -> ConvParams:
    """The params of a course convolution (one group, no dilation, symmetric padding) from
    numbers already checked: what :mod:`fastnn._lower` breaks other convolutions into."""
    Ho, Wo = conv_out_size(H, fh, ph, sh), conv_out_size(W, fw, pw, sw)
    return ConvParams(m, H, W, C, fh, fw, K, sh, sw, ph, pw, H + 2 * ph, W + 2 * pw, Ho, Wo, np.dtype(dtype),
                      ph, pw, 1, 1, 1)


def normalise_mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in POOL_MODES:
        raise ValueError(f"mode must be one of {sorted(set(POOL_MODES))}, got {mode!r}")
    return POOL_MODES[mode]


def pool_params(A_prev: np.ndarray, hparameters: Any, mode: Any, ties: Any = "all") -> PoolParams:
    """Check a pooling call's arguments and compute its output shape (in NHWC terms, as
    :func:`conv_params`, and kept as its params are)."""
    return _built(_call_key((A_prev,), hparameters, "pool", mode, ties), _pool_params, A_prev, hparameters, mode, ties)


def _pool_params(A_prev: np.ndarray, hparameters: Any, mode: Any, ties: Any) -> PoolParams:
    mode = normalise_mode(mode)
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {list(TIE_RULES)}, got {ties!r}")
    hp = _hparams(hparameters, ("f", "stride"), ("pad", "ceil_mode", "count_include_pad", "layout"), "pool")
    if "layout" in hp and _layout(hp) == "NCHW":
        _check_ndim(A_prev, 4, "A_prev", "NCHW (m, n_C_prev, n_H_prev, n_W_prev)")
        m, C, H, W = A_prev.shape
    else:
        _check_ndim(A_prev, 4, "A_prev", "(m, n_H_prev, n_W_prev, n_C_prev)")
        m, H, W, C = A_prev.shape
    _check_pixels(A_prev.shape, H, W, C)
    fh, fw = _pair(hp["f"], "hparameters['f']", 1)
    sh, sw = _pair(hp["stride"], "hparameters['stride']", 1)
    pads = _pads(hp.get("pad", 0), "hparameters['pad']")
    if pads == "same":
        pads = same_pads(H, fh, sh) + same_pads(W, fw, sw)
    if max(pads[:2]) > fh // 2 or max(pads[2:]) > fw // 2:
        raise ValueError(
            f"pooling pad must be at most half the window: pad {_pad_text(*pads)} with f ({fh}, {fw})"
        )
    ceil_mode = "ceil_mode" in hp and _flag(hp["ceil_mode"], "hparameters['ceil_mode']")
    # (average pooling's option: max pooling, given the same dict, ignores it, as it does "pad"'s zeros)
    include = "count_include_pad" not in hp or _flag(hp["count_include_pad"], "hparameters['count_include_pad']")
    Hp, Wp, Ho, Wo = _window_geometry(A_prev.shape, H, W, fh, fw, sh, sw, pads, "pooling window",
                                      ceil_mode=ceil_mode)
    p = PoolParams(m, H, W, C, fh, fw, sh, sw, pads[0], pads[2], Hp, Wp, Ho, Wo, mode, ties, compute_dtype(A_prev),
                   pads[1], pads[3])
    if mode == "average" and (p.overhang or (not include and any(pads))):
        p = p._replace(divisor="padded" if include else "valid")
    return p


def core_pool(m: int, H: int, W: int, C: int, fh: int, fw: int, sh: int, sw: int, mode: str, ties: str,
              dtype) -> PoolParams:
    """The params of an unpadded pooling from numbers already checked (what :mod:`fastnn._lower`
    runs on an input it padded itself)."""
    return PoolParams(m, H, W, C, fh, fw, sh, sw, 0, 0, H, W, conv_out_size(H, fh, 0, sh), conv_out_size(W, fw, 0, sw),
                      mode, ties, np.dtype(dtype), 0, 0)


def pool_divisors(p: PoolParams) -> Tuple[np.ndarray, np.ndarray]:
    """(rows, cols): an average's window (ho, wo) divides its sum by ``rows[ho] * cols[wo]``
    (int64 arrays; see ``PoolParams.divisor``)."""
    def axis(n, f, s, front, behind, n_out):
        start = np.arange(n_out, dtype=np.int64) * s - front
        if p.divisor == "area":
            return np.full(n_out, f, dtype=np.int64)
        if p.divisor == "padded":
            return np.minimum(start + f, n + behind) - start
        return np.minimum(start + f, n) - np.maximum(start, 0)

    return axis(p.H, p.fh, p.sh, p.ph, p.pb, p.Ho), axis(p.W, p.fw, p.sw, p.pw, p.pr, p.Wo)


def pool_hparameters(p: PoolParams) -> dict:
    """NHWC hparameters that :func:`pool_params` turns back into ``p`` (with its mode and ties)."""
    hp = {"f": (p.fh, p.fw), "stride": (p.sh, p.sw), "pad": ((p.ph, p.pb), (p.pw, p.pr))}
    if (p.Ho, p.Wo) != (conv_out_size(p.H, p.fh, p.ph, p.sh, 1, p.pb), conv_out_size(p.W, p.fw, p.pw, p.sw, 1, p.pr)):
        hp["ceil_mode"] = True
    if p.divisor == "valid":
        hp["count_include_pad"] = False
    return hp
