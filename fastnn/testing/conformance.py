"""The conformance suite: every check a backend (or one course-style function) must pass.

``fastnn check BACKEND`` and ``fastnn check --function module:attr`` run it; a third-party
backend's own pytest suite runs it in one line::

    from fastnn.testing import conformance
    test_mine = conformance.make_test("mine")          # one parametrised test per check

Kinds of check: ``golden`` (the values the course prints), ``matrix`` (every named case of
:mod:`fastnn.testing.cases` x dtype x op against the ground truth, at the one tolerance rule of
:mod:`fastnn.testing.tolerance`), ``gradients`` (every backward against central differences of
its forward), ``bad_input`` (the wrapper's errors reach the user unchanged), ``mutation`` (inputs
are never modified), ``nan`` (NaN, +Inf and -Inf in the data and the incoming gradient propagate
as in the ground truth), ``ties`` (the max-pool tie rules), ``threads`` (concurrent calls, each
thread with inputs of its own, equal serial ones bit for bit).

:func:`report` runs a selection and prints what ``fastnn check`` prints (in a notebook:
``conformance.report(conv_forward)``); a check whose subject raised says where and with what inputs.

The dense functions of the course's L-layer network (:data:`DENSE`: ``linear_forward`` ...
``update_parameters``) have no kernels; ``--function`` checks a student's against fastnn's on
the course's printed values and named cases in float32 and float64, and a failing output says
which mistake it equals where one is recognised ("your Z equals np.dot(W, A) without b").
"""

from __future__ import annotations

import dataclasses
import os
import sysconfig
import threading
import traceback
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .. import _dispatch
from . import course
from .cases import CONV_CASES, DTYPES, POOL_CASES
from .tolerance import tolerance

__all__ = ["Check", "Problem", "Subject", "Report", "backend_subject", "variant_candidates", "function_subject",
           "checks", "run", "report", "make_test", "FUNCTIONS", "KINDS", "DENSE", "ALL_OPS"]

KINDS = ("golden", "matrix", "gradients", "bad_input", "mutation", "nan", "ties", "threads")
#: The dense functions of the course's L-layer network: no kernels of their own, checked as
#: user functions (``--function``) against fastnn's.
DENSE = ("linear_forward", "linear_activation_forward", "L_model_forward", "compute_cost",
         "linear_backward", "linear_activation_backward", "L_model_backward", "update_parameters")
NET_OPS = ("L_model_forward", "L_model_backward", "update_parameters")
#: Every op a selection (``ops=``, ``--ops``) may name: the kernels' and the dense functions.
ALL_OPS = tuple(_dispatch.OPS) + DENSE
#: The course functions ``--function`` accepts, and the op (kernel) each one checks.
FUNCTIONS = ("zero_pad", "conv_forward", "conv_backward", "pool_forward", "pool_backward",
             "relu", "sigmoid", "relu_backward", "sigmoid_backward") + DENSE
QUICK_CONV = ("course", "odd_sizes", "stride_gt_f", "nonsquare", "noncontig", "groups_dilated_uneven",
              "nchw_grouped_dilated_same")
QUICK_POOL = ("course", "overlap_p3s2", "padded", "ties", "noncontig", "ceil_exclude_pad", "nchw")
CONV_GRAD = ("course", "odd_sizes", "stride_gt_f", "pad_gt_f", "nonsquare", "strided_nonsquare_pad", "channel1",
             "dilated_nonsquare_strided", "dilation3_stride2", "depthwise_multiplier_s2", "same_even_f",
             "uneven_pad", "nchw_grouped_dilated_same", "groups_dilated_uneven")
POOL_GRAD = ("course_backward", "overlap_p3s2", "nonsquare", "stride_gt_f", "padded", "nontiling",
             "ceil_padded", "ceil_exclude_pad", "same", "uneven_pad", "nchw")


@dataclasses.dataclass
class Problem:
    """What a failing check found: one line, and where the worst error is."""
    message: str
    max_abs: Optional[float] = None
    max_rel: Optional[float] = None
    where: Optional[str] = None


@dataclasses.dataclass
class Check:
    """One check: ``run()`` returns None when it passes, else a :class:`Problem`."""
    id: str
    kind: str
    op: str
    fn: Callable[[], Optional[Problem]]

    def run(self) -> Optional[Problem]:
        try:
            return self.fn()
        except Exception as exc:  # noqa: BLE001  (the subject raised: that is the finding)
            return Problem(f"raised {_raised(exc)}")

    def assert_passes(self) -> None:
        problem = self.run()
        if problem is not None:
            raise AssertionError(f"{self.id}: {problem.message}")


class Subject:
    """What is checked: course-signature callables per op (``fns``), the rest from the ground truth."""

    def __init__(self, name: str, fns: Dict[str, Callable], is_backend: bool):
        self.name, self.is_backend = name, is_backend
        self.fns = {op: _noting_inputs(op, fn) for op, fn in fns.items()}
        self.ref = {**_wrapped(_dispatch.ground_truth_backend()), **_dense_refs()}
        self.strict_dtype = is_backend

    def has(self, op: str) -> bool:
        return op in self.fns

    def __getattr__(self, op: str) -> Callable:
        fns = self.__dict__.get("fns", {})
        if op in fns:
            return fns[op]
        if op in ALL_OPS:
            return self.__dict__["ref"][op]
        raise AttributeError(op)


#: The course's argument names of each function, for the inputs of a call that raised.
_ARGNAMES = {"zero_pad": ("X", "pad"), "conv_forward": ("A_prev", "W", "b", "hparameters"),
             "conv_backward": ("dZ", "cache"), "pool_forward": ("A_prev", "hparameters", "mode"),
             "pool_backward": ("dA", "cache", "mode", "ties"), "relu": ("Z",), "sigmoid": ("Z",),
             "relu_backward": ("dA", "cache"), "sigmoid_backward": ("dA", "cache")}


def _noting_inputs(op: str, fn: Callable) -> Callable:
    """``fn``, whose exceptions (re-raised unchanged) carry the op and the arguments of the call
    that raised, for :func:`_raised`."""
    def call(*args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as exc:
            if not hasattr(exc, "_fastnn_inputs"):
                try:
                    exc._fastnn_inputs = (op, args, kw)
                except AttributeError:  # pragma: no cover  (an exception type without a __dict__)
                    pass
            raise
    return call


def _describe(x, depth=0) -> str:
    """An argument as its shape: ``(2, 7, 5, 3) float64``; tuples and dicts item by item."""
    if isinstance(x, np.ndarray):
        return f"{x.shape} {x.dtype}"
    if isinstance(x, (tuple, list)) and depth < 3:
        return "(" + ", ".join(_describe(v, depth + 1) for v in x) + ("," if len(x) == 1 else "") + ")"
    if isinstance(x, dict) and depth < 3 and any(isinstance(v, np.ndarray) for v in x.values()):
        return "{" + ", ".join(f"{k!r}: {_describe(v, depth + 1)}" for k, v in x.items()) + "}"
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _theirs(filename: str) -> bool:
    """A frame of the code under check: not Python's, NumPy's or fastnn's own (its backends'
    kernels excepted)."""
    path = os.path.abspath(filename)
    if path.startswith(_BACKENDS_DIR):
        return True
    return not (path.startswith(_NUMPY_DIR) or path.startswith(_FASTNN_DIR) or
                (path.startswith(_STDLIB_DIR) and "-packages" not in path))


_FASTNN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_BACKENDS_DIR = os.path.join(_FASTNN_DIR, "backends") + os.sep
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__)) + os.sep
_STDLIB_DIR = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep


def _raised(exc: BaseException) -> str:
    """``Type: message``, where in the code under check it was raised (its innermost frame of
    that code: file:line, the function and the source line), and the inputs of the call."""
    text = f"{type(exc).__name__}: {str(exc).strip()}"
    try:
        return text + _raised_where(exc)
    except Exception:  # noqa: BLE001  (an argument whose repr raises: the message alone)
        return text


def _raised_where(exc: BaseException) -> str:
    text = ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _theirs(f.filename)]
    if frames:
        f = frames[-1]
        name = f.filename
        if os.path.isabs(name) and name.startswith(os.getcwd() + os.sep):
            name = os.path.relpath(name)
        text += f"; at {name}:{f.lineno} in {f.name}" + (f": {f.line.strip()}" if f.line else "")
    noted = getattr(exc, "_fastnn_inputs", None)
    if noted is not None:
        op, args, kw = noted
        names = list(_ARGNAMES.get(op) or _DENSE_ARGNAMES.get(op) or ())
        names += [f"argument {i + 1}" for i in range(len(names), len(args))]
        text += "; inputs: " + ", ".join([f"{n} {_describe(a)}" for n, a in zip(names, args)] +
                                         [f"{k}={_describe(v)}" for k, v in kw.items()])
    return text


def _wrapped(backend: str) -> Dict[str, Callable]:
    import fastnn

    def pool_backward(dA, cache, mode="max", ties="all"):
        return fastnn.pool_backward(dA, cache, mode, ties=ties, backend=backend)

    fns = {
        "zero_pad": lambda X, pad: fastnn.zero_pad(X, pad, backend=backend),
        "conv_forward": lambda A, W, b, hp: fastnn.conv_forward(A, W, b, hp, backend=backend),
        "conv_backward": lambda dZ, cache, **kw: fastnn.conv_backward(dZ, cache, backend=backend, **kw),
        "pool_forward": lambda A, hp, mode="max": fastnn.pool_forward(A, hp, mode, backend=backend),
        "pool_backward": pool_backward,
    }
    for name in ("relu", "sigmoid"):
        fns[name] = (lambda f: lambda Z: f(Z, backend=backend))(getattr(fastnn, name))
        fns[name + "_backward"] = (lambda f: lambda dA, c: f(dA, c, backend=backend))(getattr(fastnn, name + "_backward"))
    return {op: fn for op, fn in fns.items() if backend in _dispatch.available_backends(op)}


def backend_subject(name: str) -> Subject:
    """A registered backend, called through fastnn's public wrappers with ``backend=name``; or
    one of its variants, ``"backend:variant"``, pinned (:func:`fastnn._dispatch.pin_candidates`)
    for the ops that declare it, so every candidate the planner may choose passes the same suite."""
    if _dispatch.SEP in name:
        return _variant_subject(name)
    if name not in _dispatch.available_backends():
        raise _dispatch.BackendError(f"unknown backend {name!r}; available backends: "
                                     f"{', '.join(_dispatch.available_backends())}")
    return Subject(name, _wrapped(name), True)


def variant_candidates() -> List[str]:
    """Every ``"backend:variant"`` candidate registered, in registry order (each once)."""
    return list(dict.fromkeys(c for op in _dispatch.OPS for c in _dispatch.candidates(op) if _dispatch.SEP in c))


def _variant_subject(name: str) -> Subject:
    backend = name.split(_dispatch.SEP)[0]
    ops = [op for op in _dispatch.OPS if name in _dispatch.candidates(op)]
    if not ops:
        raise _dispatch.BackendError(f"unknown variant {name!r}; variants: {', '.join(variant_candidates()) or 'none'}")

    def pinned(op, fn):
        def call(*args, **kw):
            with _dispatch.pin_candidates({op: name}):
                return fn(*args, **kw)
        return call

    fns = _wrapped(backend)
    return Subject(name, {op: pinned(op, fns[op]) for op in ops}, True)


def function_subject(fn: Callable, as_: str, label: str = "") -> Subject:
    """A user's function with the course's signature, checked as the course function ``as_``."""
    if as_ not in FUNCTIONS:
        raise ValueError(f"as_ must be one of {list(FUNCTIONS)}, got {as_!r}")
    if as_ == "pool_backward":
        user = fn
        fn = lambda dA, cache, mode="max", ties="all": user(dA, cache, mode)  # noqa: E731
    return Subject(label or as_, {as_: fn}, False)


# ----------------------------------------------------------------------------- comparing


def _v(x) -> str:
    """An element as a student reads it: ``1.5``, ``nan``, ``inf``."""
    try:
        return repr(float(x))
    except (TypeError, ValueError):
        return repr(x)


def _fmt_index(idx) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def compare(got, expected, dtype, what: str, strict_dtype: bool = True,
            rtol: Optional[float] = None, atol: Optional[float] = None) -> Optional[Problem]:
    """None when ``got`` equals ``expected`` under the tolerance rule (or the given rtol/atol), else
    a Problem naming the first element that differs, with the largest abs/rel errors."""
    e = np.asarray(expected)
    try:
        a = np.asarray(got)
    except Exception:  # noqa: BLE001
        return Problem(f"{what} is a {type(got).__name__}, expected an array of shape {e.shape}")
    if a.shape != e.shape:
        return Problem(f"{what} has shape {a.shape}, expected {e.shape}")
    if strict_dtype and a.dtype != np.dtype(dtype):
        return Problem(f"{what} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    if a.dtype.kind not in "fiub":
        return Problem(f"{what} has dtype {a.dtype}, expected a real array")
    r, t = tolerance(dtype, e)
    rtol = r if rtol is None else rtol
    atol = t if atol is None else atol
    bad = ~np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return None
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        err = np.abs(a.astype(np.float64) - e.astype(np.float64))
        rel = err / np.abs(e.astype(np.float64))
    # NaN (a NaN or Inf against a number) and Inf (an error against an expected 0) both read "inf":
    # nan_to_num alone would turn inf into the largest float, 1.8e+308
    err = np.where(bad, np.nan_to_num(err, nan=np.inf, posinf=np.inf), 0.0)
    rel = np.where(bad, np.nan_to_num(rel, nan=np.inf, posinf=np.inf), 0.0)
    first = tuple(np.argwhere(bad)[0])
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    msg = (f"{what}{_fmt_index(first)} differs: expected {_v(e[first])}, got {_v(a[first])} "
           f"({int(bad.sum())} of {bad.size} differ; max abs err {float(err.max()):.3g} at "
           f"{_fmt_index(worst)}, max rel err {float(rel.max()):.3g}; rtol {rtol:.3g}, atol {atol:.3g})")
    return Problem(msg, float(err.max()), float(rel.max()), _fmt_index(worst))


def _first(*problems):
    for p in problems:
        if p is not None:
            return p
    return None


_memo: Dict[tuple, object] = {}
_memo_lock = threading.Lock()


def _ref(key, compute):
    """The ground truth's result for ``key``, computed once per process."""
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    value = compute()
    with _memo_lock:
        _memo[key] = value
    return value


def _hint(s: Subject, op: str, case) -> str:
    """What the failing case has, stated neutrally (its stride and pad, or window and stride): a
    hint to look at them names none as the mistake; :func:`_diagnose` does when it finds one."""
    if s.is_backend or not hasattr(case, "stride"):
        return ""
    if op.startswith("pool"):
        return f"; this case has f {case.f} and stride {case.stride}"
    return f"; this case has stride {case.stride} and pad {case.pad}"


_STRIDE_HINT = "check the stride in your slice (vert_start = h * stride, horiz_start = w * stride)"


def _stride1_backward(s: Subject, op: str, args):
    """The ground truth's backward as a student's loop gives it with the stride left out (window
    ``(h, w)`` at ``(h, w)`` instead of ``(h * stride, w * stride)``): the stride-1 backward of
    the padded input's top-left corner that those windows cover, put back in place."""
    if op == "conv_backward":
        dZ, (A, W, b, hp) = args
        pad, f = hp["pad"], W.shape[0]
    else:
        dZ, (A, hp), mode = args[:3]
        pad, f = 0, hp["f"]
    A_pad = np.pad(A, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, w = dZ.shape[1] + f - 1, dZ.shape[2] + f - 1
    corner = A_pad[:, :h, :w, :]
    if op == "conv_backward":
        d_corner, dW, db = s.ref["conv_backward"](dZ, (corner, W, b, {"stride": 1, "pad": 0}))
    else:
        d_corner = s.ref["pool_backward"](dZ, (corner, {"stride": 1, "f": f}), mode)
    d_pad = np.zeros(A_pad.shape, d_corner.dtype)
    d_pad[:, :h, :w, :] = d_corner
    dA = d_pad[:, pad:pad + A.shape[1], pad:pad + A.shape[2], :]
    return (dA, dW, db) if op == "conv_backward" else (dA,)


def _diagnose_backward(s: Subject, op: str, args, got, want, dtype) -> str:
    """The stride hint for a backward whose every wrong output equals :func:`_stride1_backward`'s."""
    hp = args[1][-1]
    if s.is_backend or hp.get("stride", 1) == 1:
        return ""
    try:
        alt = _stride1_backward(s, op, args)
    except Exception:  # noqa: BLE001  (the mistake does not apply to these shapes)
        return ""
    got = got if op == "conv_backward" else (got,)
    wrong = [(g, a) for g, a, w in zip(got, alt, want) if not _same(g, w, dtype)]
    if wrong and all(_same(g, a, dtype) for g, a in wrong):
        return f"; your gradients equal a stride-1 backward: {_STRIDE_HINT}"
    return ""


def _matches(got, alt, dtype) -> bool:
    """``got`` equals ``alt``, or ``alt``'s top-left corner of ``got``'s height and width (a
    mistake that kept the right output shape), under the tolerance rule."""
    try:
        g, a = np.asarray(got, dtype=np.float64), np.asarray(alt, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if g.ndim != a.ndim or any(x > y for x, y in zip(g.shape, a.shape)) or (
            g.ndim == 4 and (g.shape[0], g.shape[3]) != (a.shape[0], a.shape[3])):
        return False
    a = a[tuple(slice(0, n) for n in g.shape)]
    return g.size > 0 and compare(g, a, dtype, "", False) is None


def _diagnose(s: Subject, op: str, args, got, dtype) -> str:
    """The course mistake whose result the student's output equals, as a hint ("" if none does):
    the ground truth run with the mistaken hyper-parameters (stride 1, no pad, no b, swapped
    stride and pad; pooling: the other mode, stride 1, f and stride swapped)."""
    if s.is_backend:
        return ""
    if op == "conv_forward":
        A, W, b, hp = args
        stride, pad = hp["stride"], hp["pad"]
        tries = [({"stride": 1, "pad": pad}, b, f"your Z equals a stride-1 convolution: {_STRIDE_HINT}"),
                 ({"stride": stride, "pad": 0}, b, "your Z equals the convolution without padding: pad A_prev "
                  "(A_prev_pad = zero_pad(A_prev, pad)) and slice A_prev_pad"),
                 ({"stride": stride, "pad": pad}, np.zeros_like(b), "your Z equals the convolution without b: "
                  "add b[:, :, :, c] to each window's sum (conv_single_step)"),
                 ({"stride": pad, "pad": stride}, b, "your Z equals the convolution with stride and pad swapped: "
                  "stride = hparameters['stride'], pad = hparameters['pad']")]
        for hp2, b2, text in tries:
            if hp2 == hp and b2 is b:
                continue
            try:
                alt = s.ref["conv_forward"](A, W, b2, hp2)[0]
            except Exception:  # noqa: BLE001  (the mistake is impossible here, e.g. stride 0)
                continue
            if _matches(got, alt, dtype):
                return "; " + text
        return ""
    if op == "pool_forward":
        A, hp, mode = args
        other = {"max": "average", "average": "max"}[mode]
        tries = [(hp, other, f"your output is {other} pooling: for mode={mode!r} take the window's "
                             f"{'np.max' if mode == 'max' else 'np.mean'}"),
                 ({**hp, "stride": 1}, mode, f"your output equals a stride-1 pooling: {_STRIDE_HINT}"),
                 ({**hp, "f": hp["stride"], "stride": hp["f"]}, mode, "your output equals the pooling with f and "
                                                                      "stride swapped: f = hparameters['f']")]
        for hp2, mode2, text in tries:
            if hp2 == hp and mode2 == mode:
                continue
            try:
                alt = s.ref["pool_forward"](A, hp2, mode2)[0]
            except Exception:  # noqa: BLE001
                continue
            if _matches(got, alt, dtype):
                return "; " + text
    return ""


def _course_ok(case) -> bool:
    """Cases a course-style function can take: int stride and pad, square window, no pool
    padding, none of the options beyond the course (``case.course``)."""
    return case.course


# --------------------------------------------------------------------------------- checks


def _matrix_conv(s: Subject, case, dtype, op):
    def fn():
        A, W, b, hp, dZ = case.make(dtype, seed=1)
        key = ("conv", case, np.dtype(dtype).name)  # the case itself: a caller's may reuse a name
        Z_ref, grads_ref = _ref(key, lambda: (s.ref["conv_forward"](A, W, b, hp)[0],
                                              s.ref["conv_backward"](dZ, (A, W, b, hp))))
        if op == "conv_forward":
            Z, cache = s.conv_forward(A, W, b, hp)
            p = compare(Z, Z_ref, dtype, "Z", s.strict_dtype)
            if p is not None:
                p.message += _diagnose(s, op, (A, W, b, hp), Z, dtype) or _hint(s, op, case)
                return p
            if not (cache[0] is A and cache[1] is W and cache[2] is b and cache[3] is hp):
                p = Problem("cache must be (A_prev, W, b, hparameters), the arguments as passed")
        else:
            grads = s.conv_backward(*_copy_args((dZ, (A, W, b, hp))))  # fresh inputs for each call: a
            p = _first(*(compare(g, r, dtype, n, s.strict_dtype)        # kernel that modifies them fails
                         for n, g, r in zip(("dA_prev", "dW", "db"), grads, grads_ref)))  # the mutation check
            if p is not None:
                p.message += (_diagnose_backward(s, op, (dZ, (A, W, b, hp)), grads, grads_ref, dtype)
                              or _hint(s, op, case))
                return p
            if s.is_backend:  # without the input gradient: None, and the same dW, db bits
                none, dW, db = s.conv_backward(*_copy_args((dZ, (A, W, b, hp))), input_grad=False)
                p = (Problem(f"with input_grad=False dA_prev must be None, got {type(none).__name__}")
                     if none is not None else
                     _first(*(_bitwise(g, r, f"{n} with input_grad=False", ("with dA_prev", "without"),
                                       "dropping dA_prev may not change dW or db")
                              for n, g, r in (("dW", dW, grads[1]), ("db", db, grads[2])))))
        return p
    return fn


def _matrix_pool(s: Subject, case, dtype, op, mode, ties):
    def fn():
        A, hp, dA = case.make(dtype, seed=2)
        key = ("pool", case, np.dtype(dtype).name, mode, ties)
        out_ref, g_ref = _ref(key, lambda: (s.ref["pool_forward"](A, hp, mode)[0],
                                            s.ref["pool_backward"](dA, (A, hp), mode, ties)))
        if op == "pool_forward":
            out, cache = s.pool_forward(A, hp, mode)
            p = compare(out, out_ref, dtype, "A", s.strict_dtype)
            if p is not None:
                p.message += _diagnose(s, op, (A, hp, mode), out, dtype) or _hint(s, op, case)
                return p
            if not (cache[0] is A and cache[1] is hp):
                p = Problem("cache must be (A_prev, hparameters), the arguments as passed")
        else:
            got = s.pool_backward(dA, (A, hp), mode, ties)
            p = compare(got, g_ref, dtype, "dA_prev", s.strict_dtype)
            if p is not None:
                p.message += _diagnose_backward(s, op, (dA, (A, hp), mode), got, (g_ref,), dtype) or _hint(s, op, case)
        return p
    return fn


def _matrix_zero_pad(s, dtype, pad):
    def fn():
        X, *_ = CONV_CASES["odd_sizes"].make(dtype)
        return compare(s.zero_pad(X, pad), s.ref["zero_pad"](X, pad), dtype, "X_pad", s.strict_dtype)
    return fn


def _activation_inputs(dtype):
    rng = np.random.RandomState(3)
    Z = (rng.standard_normal((7, 13)) * 5).astype(dtype)
    Z[0, :3] = [0.0, -0.0, 800.0]
    Z[1, :2] = [-800.0, np.nan]
    return Z, rng.standard_normal(Z.shape).astype(dtype)


def _matrix_activation(s, dtype, op):
    def fn():
        Z, dA = _activation_inputs(dtype)
        with np.errstate(all="ignore"):
            if op.endswith("_backward"):
                return compare(getattr(s, op)(dA, Z), s.ref[op](dA, Z), dtype, "dZ", s.strict_dtype)
            A, cache = getattr(s, op)(Z)
            return _first(compare(A, s.ref[op](Z)[0], dtype, "A", s.strict_dtype),
                          None if cache is Z else Problem("cache must be Z itself"))
    return fn


def _golden(s: Subject, op):
    def close(got, expected, decimals, what):
        return compare(np.asarray(got, dtype=float), np.asarray(expected, dtype=float), np.float64,
                       f"{what} (the course prints)", False, rtol=0.0, atol=0.5 * 10.0 ** -decimals)

    def fn():
        rng = np.random.RandomState(1)  # the course's np.random.seed(1)
        if op == "zero_pad":
            x = rng.randn(4, 3, 3, 2)
            x_pad = s.zero_pad(x, 2)
            if np.shape(x_pad) != (4, 7, 7, 2):
                return Problem(f"x_pad has shape {np.shape(x_pad)}, expected (4, 7, 7, 2)")
            if not np.all(x_pad[1, 1] == 0) or not np.array_equal(x_pad[:, 2:-2, 2:-2, :], x):
                return Problem("x_pad must be x with 2 zeros on each side of its height and width")
            return None
        if op in ("conv_forward", "conv_backward"):
            A, W, b = rng.randn(10, 4, 4, 3), rng.randn(2, 2, 3, 8), rng.randn(1, 1, 1, 8)
            hp = {"pad": 2, "stride": 2}
            Z, cache = s.conv_forward(A, W, b, hp)
            g = course.CONV_FORWARD
            if op == "conv_forward":
                if np.shape(Z) != (10, 4, 4, 8):
                    return Problem(f"Z has shape {np.shape(Z)}, expected (10, 4, 4, 8)")
                return _first(close(np.mean(Z), g["Z_mean"], 13, "Z's mean"),
                              close(Z[3, 2, 1], g["Z[3, 2, 1]"], 8, "Z[3, 2, 1]"))
            dA, dW, db = s.conv_backward(Z, cache)
            g = course.CONV_BACKWARD
            return _first(close(np.mean(dA), g["dA_mean"], 11, "dA_mean"),
                          close(np.mean(dW), g["dW_mean"], 11, "dW_mean"),
                          close(np.mean(db), g["db_mean"], 11, "db_mean"))
        if op == "pool_forward":
            A = rng.randn(2, 4, 4, 3)
            hp = {"stride": 1, "f": 4}
            return _first(*(close(s.pool_forward(A, hp, mode)[0], course.POOL_FORWARD[mode], 8, f"A ({mode})")
                            for mode in ("max", "average")))
        A = rng.randn(5, 5, 3, 2)
        hp = {"stride": 1, "f": 2}
        _, cache = s.pool_forward(A, hp)
        dA = rng.randn(5, 4, 2, 2)
        return _first(*(close(s.pool_backward(dA, cache, mode)[1, 1], course.POOL_BACKWARD[mode], 8,
                              f"dA_prev[1, 1] ({mode})") for mode in ("max", "average")))
    return fn


def _numerical_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def _gradient_conv(s, name):
    def fn():
        case = CONV_CASES[name]
        if case.m * case.H * case.W * case.C > 300:
            case = type(case)(**{**case.__dict__, "m": 1})
        A, W, b, hp, dZ = case.make(np.float64, seed=5)
        A, W, b, dZ = (np.array(x) for x in (A, W, b, dZ))

        def loss():  # L = sum(Z * dZ), so dL/dZ = dZ
            return float(np.sum(s.conv_forward(A, W, b, hp)[0] * dZ))

        _, cache = s.conv_forward(A, W, b, hp)
        grads = s.conv_backward(dZ, cache)
        return _first(*(compare(got, _numerical_grad(loss, wrt), np.float64, f"{n} (vs central differences)",
                                s.strict_dtype, rtol=1e-6, atol=1e-7)
                        for n, got, wrt in zip(("dA_prev", "dW", "db"), grads, (A, W, b))))
    return fn


def _gradient_pool(s, name, mode):
    def fn():
        A, hp, dA = POOL_CASES[name].make(np.float64, seed=6)
        A, dA = np.array(A), np.array(dA)

        def loss():
            return float(np.sum(s.pool_forward(A, hp, mode)[0] * dA))

        _, cache = s.pool_forward(A, hp, mode)
        got = s.pool_backward(dA, cache, mode)
        p = compare(got, _numerical_grad(loss, A), np.float64, "dA_prev (vs central differences)",
                    s.strict_dtype, rtol=1e-6, atol=1e-7)
        if p is None and mode == "max" and s.is_backend:  # no ties: both rules agree
            first = s.pool_backward(dA, cache, mode, "first")
            if not np.array_equal(first, got):
                p = Problem("without ties, ties='first' must give what ties='all' gives")
        return p
    return fn


def _gradient_activation(s, op):
    """relu_backward, sigmoid_backward against central differences of the forward (relu's Z kept
    away from its kink at 0)."""
    def fn():
        rng = np.random.RandomState(8)
        Z = rng.uniform(0.1, 3.0, (3, 5)) * rng.choice([-1.0, 1.0], (3, 5))
        dA = rng.standard_normal(Z.shape)
        forward = getattr(s, op[:-len("_backward")])

        def loss():
            return float(np.sum(forward(Z)[0] * dA))

        got = getattr(s, op)(dA.copy(), Z.copy())
        return compare(got, _numerical_grad(loss, Z), np.float64, "dZ (vs central differences)",
                       s.strict_dtype, rtol=1e-6, atol=1e-7)
    return fn


def _ties(s):
    def fn():
        A = np.array([[1.0, 3.0, 3.0], [0.0, 3.0, 2.0], [3.0, 1.0, 1.0]]).reshape(1, 3, 3, 1)
        _, cache = s.pool_forward(A, {"f": 3, "stride": 1})
        dA = np.array([[[[2.0]]]])
        every = np.asarray(s.pool_backward(dA, cache))[0, :, :, 0]
        if every.tolist() != [[0, 2, 2], [0, 2, 0], [2, 0, 0]]:
            return Problem(f"ties='all' (the course: every maximum gets the gradient) gave {every.tolist()}")
        if s.is_backend:
            first = np.asarray(s.pool_backward(dA, cache, "max", "first"))[0, :, :, 0]
            if first.tolist() != [[0, 2, 0], [0, 0, 0], [0, 0, 0]]:
                return Problem(f"ties='first' (the first maximum only) gave {first.tolist()}")
        return None
    return fn


def _conv_args(m=2, H=5, W=5, C=3, f=3, K=4):
    rng = np.random.RandomState(0)
    return rng.randn(m, H, W, C), rng.randn(f, f, C, K), rng.randn(1, 1, 1, K)


def _bad_inputs():
    """(op, label, call(fns)) of bad calls: the error must be the ground truth's."""
    A, W, b = _conv_args()
    hp = {"stride": 1, "pad": 1}
    Z = np.zeros((2, 5, 5, 4))
    P = np.zeros((2, 2, 2, 3))
    return [
        ("conv_forward", "3-D A_prev", lambda f: f["conv_forward"](A[0], W, b, hp)),
        ("conv_forward", "channel mismatch", lambda f: f["conv_forward"](A, W[:, :, :2], b, hp)),
        ("conv_forward", "stride 0", lambda f: f["conv_forward"](A, W, b, {"stride": 0, "pad": 1})),
        ("conv_forward", "misspelt key", lambda f: f["conv_forward"](A, W, b, {"strides": 1, "pad": 0})),
        ("conv_forward", "complex A_prev", lambda f: f["conv_forward"](A.astype(complex), W, b, hp)),
        ("conv_backward", "dZ of the wrong shape", lambda f: f["conv_backward"](Z[..., :3], (A, W, b, hp))),
        ("conv_backward", "short cache", lambda f: f["conv_backward"](Z, (A, W, b))),
        ("pool_forward", "mode 'min'", lambda f: f["pool_forward"](A, {"f": 2, "stride": 2}, "min")),
        ("pool_forward", "window too large", lambda f: f["pool_forward"](A, {"f": 9, "stride": 1})),
        ("pool_backward", "dA of the wrong shape", lambda f: f["pool_backward"](P[..., 0], (A, {"f": 2, "stride": 2}))),
        ("pool_backward", "ties 'last'", lambda f: f["pool_backward"](P, (A, {"f": 2, "stride": 2}), "max", "last")),
        ("zero_pad", "negative pad", lambda f: f["zero_pad"](A, -1)),
        ("relu_backward", "dA of the wrong shape", lambda f: f["relu_backward"](np.ones((3, 2)), np.ones((2, 3)))),
    ]


def _bad_input(s, call):
    def fn():
        try:
            call(s.ref)
        except Exception as exc:  # noqa: BLE001
            want = exc
        else:  # pragma: no cover
            raise AssertionError("the ground truth accepted a bad call")
        try:
            call(s.fns)
        except Exception as exc:  # noqa: BLE001
            if type(exc) is not type(want) or str(exc) != str(want):
                return Problem(f"raised {type(exc).__name__}: {exc}; expected {type(want).__name__}: {want}")
            return None
        return Problem(f"accepted it; expected {type(want).__name__}: {want}")
    return fn


def _calls(op, dtype, noncontig=False, seed=3):
    """The inputs and the call of ``op`` for the mutation and thread checks, drawn from ``seed``."""
    if op in ("pool_forward", "pool_backward"):
        PA, php, PdA = POOL_CASES["noncontig" if noncontig else "overlap_p3s2"].make(dtype, seed=seed)
        if op == "pool_forward":
            return {"A_prev": PA}, php, lambda f: (f.pool_forward(PA, php, "max"), f.pool_forward(PA, php, "average"))
        return {"A_prev": PA, "dA": PdA}, php, lambda f: (f.pool_backward(PdA, (PA, php), "max"),
                                                          f.pool_backward(PdA, (PA, php), "average"))
    A, W, b, hp, dZ = CONV_CASES["noncontig" if noncontig else "odd_sizes"].make(dtype, seed=seed)
    if op == "conv_forward":
        return {"A_prev": A, "W": W, "b": b}, hp, lambda f: f.conv_forward(A, W, b, hp)
    if op == "conv_backward":
        return {"A_prev": A, "W": W, "b": b, "dZ": dZ}, hp, lambda f: f.conv_backward(dZ, (A, W, b, hp))
    if op == "zero_pad":
        return {"X": A}, {}, lambda f: f.zero_pad(A, 2)
    X = dZ.reshape(dZ.shape[0], -1)
    if op.endswith("_backward"):
        return {"dA": X, "cache (Z)": X[::-1].copy()}, {}, lambda f: getattr(f, op)(X, X[::-1].copy())
    return {"Z": X}, {}, lambda f: getattr(f, op)(X)


def _mutation(s, op, dtype, noncontig):
    def fn():
        arrays, hp, call = _calls(op, dtype, noncontig)
        arrays = {k: v for k, v in arrays.items() if k != "cache (Z)"}
        before = {k: v.copy() for k, v in arrays.items()}
        hp_before = dict(hp)
        with np.errstate(all="ignore"):
            call(s)
        for k, v in arrays.items():
            if not np.array_equal(v, before[k], equal_nan=True):
                changed = np.argwhere(~((v == before[k]) | (np.isnan(v) & np.isnan(before[k]))))
                return Problem(f"modified its input {k}: {len(changed)} elements changed, the first at "
                               f"{_fmt_index(changed[0])} ({_v(before[k][tuple(changed[0])])} -> {_v(v[tuple(changed[0])])})",
                               where=_fmt_index(changed[0]))
        if hp != hp_before:
            return Problem(f"modified hparameters: {hp_before} -> {hp}")
        return None
    return fn


def _nan(s, op):
    """NaN, +Inf and -Inf in the inputs (the data, and the incoming gradient of a backward) come
    out where the ground truth puts them. Where the result is a selection (max pooling, relu,
    zero_pad) the finite values must be the ground truth's too; arithmetic (a convolution, an
    average: a backend may multiply by 1 / area) is held to the tolerance rule by the value checks."""
    def fn():
        A, W, b = _conv_args()
        A[0, 2, 2, 0] = np.nan
        A[1, 0, 0, 1] = np.inf
        with np.errstate(all="ignore"):
            if op == "conv_forward":
                hp = {"stride": 1, "pad": 1}
                Z, Z_ref = s.conv_forward(A, W, b, hp)[0], s.ref["conv_forward"](A, W, b, hp)[0]
                return _nonfinite(Z, Z_ref, "Z", exact=False)
            if op == "pool_forward":
                for mode in ("max", "average"):
                    hp = {"f": 2, "stride": 1}
                    p = _nonfinite(s.pool_forward(A, hp, mode)[0], s.ref["pool_forward"](A, hp, mode)[0],
                                   f"A ({mode})", exact=mode == "max")
                    if p:
                        return p
                return None
            if op in ("relu", "sigmoid"):
                x = np.array([np.nan, -1.0, 2.0, np.inf, -np.inf])
                return _nonfinite(getattr(s, op)(x)[0], s.ref[op](x)[0], "A", exact=False)
            if op in ("relu_backward", "sigmoid_backward"):  # every dA value at every Z value
                Z = np.tile([-2.0, -0.0, 0.0, 3.0, np.nan, np.inf, -np.inf], (4, 1))
                dA = np.repeat(np.array([[np.nan], [np.inf], [-np.inf], [1.5]]), Z.shape[1], axis=1)
                return _nonfinite(getattr(s, op)(dA, Z), s.ref[op](dA, Z), "dZ", exact=op == "relu_backward")
            if op == "zero_pad":
                A[1, 4, 0, 2] = -np.inf
                return _nonfinite(s.zero_pad(A, 2), s.ref["zero_pad"](A, 2), "X_pad", exact=True)
            rng = np.random.RandomState(7)
            if op == "pool_backward":
                Ap = rng.randn(2, 7, 7, 9)
                hps = [{"f": 2, "stride": 2}, {"f": 3, "stride": 1}, {"f": 2, "stride": 3}]
                if s.is_backend:  # pooling pad is fastnn's, not the course's
                    hps.append({"f": 3, "stride": 2, "pad": 1})
                for hp in hps:
                    out, cache = s.ref["pool_forward"](Ap, hp, "max")
                    dA = rng.randn(*out.shape)
                    dA[0, 0, 0, :3] = [np.inf, -np.inf, np.nan]
                    dA[1, -1, -1, 8] = np.nan
                    for mode in ("max", "average"):
                        for ties in (("all", "first") if s.is_backend else ("all",)):
                            p = _nonfinite(s.pool_backward(dA, cache, mode, ties),
                                           s.ref["pool_backward"](dA, cache, mode, ties),
                                           f"dA_prev ({mode}, ties={ties}, {hp})", exact=mode == "max")
                            if p:
                                return p
                return None
            if op == "conv_backward":
                Ac, Wc, bc = _conv_args(m=2, H=6, W=6, C=3, f=3, K=4)
                hp = {"stride": 2, "pad": 2}
                Z, cache = s.ref["conv_forward"](Ac, Wc, bc, hp)
                dZ = rng.randn(*Z.shape)
                dZ[0, 1, 1, 2] = np.inf
                dZ[1, 0, 0, 0] = np.nan
                dZ[1, 1, 0, 3] = -np.inf
                return _first(*(_nonfinite(g, r, n, exact=False) for n, g, r in
                                zip(("dA_prev", "dW", "db"), s.conv_backward(dZ, cache), s.ref["conv_backward"](dZ, cache))))
        return None
    return fn


def _nonfinite(got, ref, what, exact):
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return Problem(f"{what} has shape {got.shape}, expected {ref.shape}")
    for test, name in ((np.isnan, "nan"), (np.isposinf, "inf"), (np.isneginf, "-inf")):
        diff = np.argwhere(test(got) != test(ref))
        if len(diff):
            i = tuple(diff[0])
            return Problem(f"{what}{_fmt_index(i)} should be {_v(ref[i])} (NaN and Inf propagate), got {_v(got[i])}",
                           where=_fmt_index(i))
    if exact and not np.array_equal(got, ref, equal_nan=True):
        i = tuple(np.argwhere(~((got == ref) | (np.isnan(got) & np.isnan(ref))))[0])
        return Problem(f"{what}{_fmt_index(i)} differs: expected {_v(ref[i])}, got {_v(got[i])}", where=_fmt_index(i))
    return None


#: Rounds of the thread check: each thread repeats its call this many times while the others run theirs.
THREAD_ROUNDS = 12


def _threads(s, op, dtype, n_threads=4, rounds=THREAD_ROUNDS, calls=None):
    """Concurrent calls equal serial ones bit for bit. Thread ``k`` has inputs of its own (seed
    ``3 + k``, one shape for all: a kernel that shares a workspace between calls of a shape mixes
    them up), drawn afresh for every call (a kernel that modifies its inputs fails the mutation
    check, not this one), and repeats its call ``rounds`` times, each result compared with its
    own serial one. ``calls``: zero-argument callables returning a list of arrays, each making
    fresh inputs (default: ``n_threads`` of ``op``'s :func:`_calls`)."""
    def fn():
        fns = calls or [(lambda seed: lambda: _as_tuple(_calls(op, dtype, seed=seed)[2](s)))(3 + k)
                        for k in range(n_threads)]
        n = len(fns)
        serial = [c() for c in fns]
        results: List[list] = [[] for _ in range(n)]
        errors: List[BaseException] = []
        barrier = threading.Barrier(n)

        def worker(k):
            try:
                barrier.wait(30)
                for _ in range(rounds):
                    results[k].append(fns[k]())
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        ts = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        if errors:
            return Problem(f"a concurrent call raised {_raised(errors[0])}")
        for k in range(n):
            for got in results[k]:
                for i, (g, e) in enumerate(zip(got, serial[k])):
                    p = _bitwise(g, e, f"output {i} of thread {k} (concurrent vs serial)")
                    if p:
                        return p
        return None
    return fn


def _bitwise(got, expected, what, labels=("serial", "concurrent"),
             why="concurrent calls must equal serial ones bit for bit") -> Optional[Problem]:
    """None when ``got`` is ``expected`` bit for bit (shape, dtype and every element, NaN at the
    same places): a pinned backend is bit-stable, so concurrency may not change one bit."""
    g, e = np.asarray(got), np.asarray(expected)
    if g.shape != e.shape or g.dtype != e.dtype:
        return Problem(f"{what} has shape {g.shape} and dtype {g.dtype}, expected {e.shape} and {e.dtype}")
    if np.array_equal(g, e, equal_nan=True):
        return None
    bad = ~((g == e) | (np.isnan(g) & np.isnan(e)))
    first = tuple(np.argwhere(bad)[0])
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(bad, np.abs(g.astype(np.float64) - e.astype(np.float64)), 0.0)
    worst = np.unravel_index(int(np.argmax(np.nan_to_num(err, nan=np.inf))), err.shape)
    return Problem(f"{what}{_fmt_index(first)} differs: {labels[0]} {_v(e[first])}, {labels[1]} {_v(g[first])} "
                   f"({int(bad.sum())} of {bad.size} differ, max abs err {float(np.nanmax(err)):.3g} at "
                   f"{_fmt_index(worst)}; {why})",
                   float(np.nanmax(err)), None, _fmt_index(worst))


def _as_tuple(out):
    """Every array in a call's result (caches left out)."""
    flat = []
    for x in out if isinstance(out, tuple) else (out,):
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], (tuple, np.ndarray)) and isinstance(x[0], np.ndarray):
            flat.append(x[0])
        elif isinstance(x, np.ndarray):
            flat.append(x)
    return flat


# ------------------------------------------------------------------ the dense (L-layer) functions


def _dense_refs() -> Dict[str, Callable]:
    """fastnn's dense functions, their activations pinned to the ground truth."""
    from .. import dnn

    gt = _dispatch.ground_truth_backend()

    def pinned(f):
        def call(*args):
            with _dispatch.use_backend(gt):
                return f(*args)
        return call

    return {op: pinned(getattr(dnn, op)) for op in DENSE}


def _dense_params(rng, dims, dtype):
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = (rng.standard_normal((dims[l], dims[l - 1])) / np.sqrt(dims[l - 1])).astype(dtype)
        params[f"b{l}"] = (rng.standard_normal((dims[l], 1)) * 0.5).astype(dtype)
    return params


#: (n, n_prev, m) of the linear cases: "square" lets a transposed W show as one.
LINEAR_CASES = {"course": (1, 3, 2), "square": (4, 4, 5), "wide": (5, 3, 7), "one_example": (3, 4, 1)}
#: layer_dims and m of the network cases.
NET_CASES = {"one_layer": ((3, 1), 2), "two_layers": ((4, 3, 1), 3), "three_layers": ((5, 4, 3, 1), 4)}
COST_CASES = ("course", "mixed", "one_example")


def _dense_cases(op) -> Sequence[str]:
    if op in ("linear_forward", "linear_backward", "linear_activation_forward", "linear_activation_backward"):
        return list(LINEAR_CASES)
    return COST_CASES if op == "compute_cost" else list(NET_CASES)


def _dense_args(op, case, dtype, refs, seed=11):
    """Fresh arguments of ``op`` for the named case (activations: one case per activation)."""
    rng = np.random.RandomState(seed + sum(map(ord, op + case)))
    if op == "compute_cost":
        if case == "course":
            return (np.array([[0.8, 0.9, 0.4]], dtype=dtype), np.array([[1, 1, 1]]))
        m = 7 if case == "mixed" else 1
        return (rng.uniform(0.05, 0.95, (1, m)).astype(dtype), rng.randint(0, 2, (1, m)))
    if op in NET_OPS:
        dims, m = NET_CASES[case]
        params = _dense_params(rng, dims, dtype)
        X = rng.standard_normal((dims[0], m)).astype(dtype)
        if op == "L_model_forward":
            return (X, params)
        if op == "update_parameters":
            grads = {f"d{k}": rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
            return (params, grads, 0.1)
        AL, caches = refs["L_model_forward"](X, params)
        return (AL, rng.randint(0, 2, (1, m)), caches)
    n, n_prev, m = LINEAR_CASES[case]
    A = rng.standard_normal((n_prev, m)).astype(dtype)
    W = rng.standard_normal((n, n_prev)).astype(dtype)
    b = rng.standard_normal((n, 1)).astype(dtype)
    dZ = rng.standard_normal((n, m)).astype(dtype)
    if op == "linear_forward":
        return (A, W, b)
    if op == "linear_backward":
        return (dZ, (A, W, b))
    act = "relu" if n % 2 else "sigmoid"  # both activations over the cases
    if op == "linear_activation_forward":
        return (A, W, b, act)
    Z = rng.standard_normal((n, m)).astype(dtype)
    return (dZ, ((A, W, b), Z), act)


def _copy_args(x):
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, (tuple, list)):
        return type(x)(_copy_args(v) for v in x)
    if isinstance(x, dict):
        return {k: _copy_args(v) for k, v in x.items()}
    return x


def _arrays_in(x, path):
    """(name, array) of every array in nested tuples, lists and dicts (for the mutation check)."""
    if isinstance(x, np.ndarray):
        return [(path, x)]
    if isinstance(x, (tuple, list)):
        return [a for i, v in enumerate(x) for a in _arrays_in(v, f"{path}[{i}]")]
    if isinstance(x, dict):
        return [a for k in sorted(x) for a in _arrays_in(x[k], f"{path}[{k!r}]")]
    return []


_DENSE_ARGNAMES = {"linear_forward": ("A", "W", "b"), "linear_activation_forward": ("A_prev", "W", "b", "activation"),
                   "L_model_forward": ("X", "parameters"), "compute_cost": ("AL", "Y"),
                   "linear_backward": ("dZ", "cache"), "linear_activation_backward": ("dA", "cache", "activation"),
                   "L_model_backward": ("AL", "Y", "caches"),
                   "update_parameters": ("parameters", "grads", "learning_rate")}


def _dense_outputs(op, result, args):
    """The named outputs of a dense call, in the order they are compared."""
    if op in ("linear_forward", "linear_activation_forward", "L_model_forward"):
        if not isinstance(result, tuple) or len(result) != 2:
            raise _Shape(f"{op} must return a pair ({'AL' if op == 'L_model_forward' else 'Z' if op == 'linear_forward' else 'A'}, "
                         f"cache), got {type(result).__name__}")
        return {{"linear_forward": "Z", "linear_activation_forward": "A", "L_model_forward": "AL"}[op]: result[0]}
    if op == "compute_cost":
        return {"cost": result}
    if op in ("linear_backward", "linear_activation_backward"):
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise _Shape(f"{op} must return (dA_prev, dW, db), got {type(result).__name__}")
        return dict(zip(("dA_prev", "dW", "db"), result))
    if not isinstance(result, dict):
        raise _Shape(f"{op} must return a dict, got {type(result).__name__}")
    if op == "update_parameters":
        return {k: result.get(k) for k in args[0]}
    L = len(args[2])
    shift = 1 if "dA0" in result and f"dA{L}" not in result else 0  # newer notebooks: dA{l-1} is layer l's input
    out = {}
    for l in range(1, L + 1):
        out[f"dW{l}"], out[f"db{l}"] = result.get(f"dW{l}"), result.get(f"db{l}")
        out[f"dA{l}"] = result.get(f"dA{l - shift}")
    return out


class _Shape(Exception):
    """A result that is not the course's structure (a pair, a triple, a dict)."""


def _same(got, alt, dtype) -> bool:
    """``got`` equals ``alt`` under the tolerance rule (False when either is not an array of one shape)."""
    try:
        g, a = np.asarray(got, dtype=np.float64), np.asarray(alt, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return g.shape == a.shape and compare(g, a, dtype, "", False) is None


def _act(name, Z):
    with np.errstate(all="ignore"):
        return np.maximum(0, Z) if name == "relu" else 1 / (1 + np.exp(-Z))


def _act_back(name, dA, Z):
    with np.errstate(all="ignore"):
        if name == "relu":
            return np.where(Z <= 0, 0, dA)
        s = 1 / (1 + np.exp(-Z))
        return dA * s * (1 - s)


def _lin_back(dZ, A, W, b, per_m=True):
    m = max(A.shape[1], 1) if per_m else 1
    return {"dA_prev": W.T @ dZ, "dW": dZ @ A.T / m, "db": (np.sum(dZ, axis=1, keepdims=True) / m).reshape(b.shape)}


def _net_forward(X, params, hidden, last):
    L = len(params) // 2
    A, caches = X, []
    for l in range(1, L + 1):
        W, b = params[f"W{l}"], params[f"b{l}"]
        Z = W @ A + b
        caches.append(((A, W, b), Z))
        A = _act(last if l == L else hidden, Z)
    return A, caches


def _dense_mistakes(op, args):
    """``(output, alternative(), hint)``: common mistakes, each as the result it would give."""
    other = {"relu": "sigmoid", "sigmoid": "relu"}
    if op == "linear_forward":
        A, W, b = args
        return [("Z", lambda: W @ A, "your Z equals np.dot(W, A) without b: did you forget to add b?"),
                ("Z", lambda: W.T @ A + b, "your Z equals np.dot(W.T, A) + b: check the transpose of W "
                                          "(Z = np.dot(W, A) + b)"),
                ("Z", lambda: W @ A - b, "your Z equals np.dot(W, A) - b: check the sign of b"),
                ("Z", lambda: (W @ A + b).T, "your Z is transposed: Z = np.dot(W, A) + b has shape (W.shape[0], A.shape[1])")]
    if op == "linear_activation_forward":
        A, W, b, act = args
        return [("A", lambda: _act(other[act], W @ A + b),
                 f"your A equals {other[act]}(Z): with activation={act!r} apply {act}"),
                ("A", lambda: W @ A + b, "your A equals Z = np.dot(W, A_prev) + b: did you forget to apply the activation?"),
                ("A", lambda: _act(act, W @ A), f"your A equals {act}(np.dot(W, A_prev)) without b: did you forget to add b?")]
    if op in ("linear_backward", "linear_activation_backward"):
        if op == "linear_backward":
            dZ, (A, W, b) = args
            found = []
        else:
            dA, ((A, W, b), Z), act = args
            dZ = _act_back(act, dA, Z)
            found = [(n, (lambda n=n: _lin_back(dA, A, W, b)[n]),
                      f"your gradients equal linear_backward(dA, linear_cache): compute dZ = "
                      f"{act}_backward(dA, activation_cache) first") for n in ("dA_prev", "dW", "db")]
            found += [(n, (lambda n=n: _lin_back(_act_back(other[act], dA, Z), A, W, b)[n]),
                       f"your gradients go back through {other[act]}: with activation={act!r} use "
                       f"{act}_backward(dA, activation_cache)") for n in ("dA_prev", "dW", "db")]
        m = A.shape[1]
        return found + [
            ("dW", lambda: dZ @ A.T, "your dW equals np.dot(dZ, A_prev.T) without the 1/m: divide by m = A_prev.shape[1]"),
            ("dW", lambda: (dZ @ A.T / m).T, "your dW is transposed: dW = np.dot(dZ, A_prev.T) / m has W's shape"),
            ("db", lambda: np.sum(dZ, axis=1, keepdims=True),
             "your db equals np.sum(dZ, axis=1, keepdims=True) without the 1/m: divide by m"),
            ("db", lambda: np.sum(dZ, axis=1) / m, "your db has lost its second axis: use np.sum(dZ, axis=1, keepdims=True) / m"),
            ("db", lambda: np.sum(dZ) / m, "your db sums over every axis: use np.sum(dZ, axis=1, keepdims=True) / m"),
            ("dA_prev", lambda: W.T @ dZ / m, "your dA_prev has a 1/m: dA_prev = np.dot(W.T, dZ), without it"),
            ("dA_prev", lambda: W @ dZ, "your dA_prev equals np.dot(W, dZ): check the transpose of W (dA_prev = np.dot(W.T, dZ))"),
        ]
    if op == "L_model_forward":
        X, params = args
        return [("AL", lambda: _net_forward(X, params, "relu", "relu")[0],
                 "your last layer applies relu: the output layer is LINEAR -> SIGMOID"),
                ("AL", lambda: _net_forward(X, params, "sigmoid", "sigmoid")[0],
                 "your hidden layers apply sigmoid: they are LINEAR -> RELU, only the last is LINEAR -> SIGMOID")]
    if op == "compute_cost":
        AL, Y = args
        Yf = Y.astype(np.float64)

        def cost():
            with np.errstate(all="ignore"):
                return -np.sum(Yf * np.log(AL) + (1 - Yf) * np.log(1 - AL)) / AL.shape[1]
        return [("cost", lambda: np.reshape(cost(), (1, 1)), "your cost has shape (1, 1): use np.squeeze(cost)"),
                ("cost", lambda: cost() * AL.shape[1], "your cost is the sum over the examples: divide by m"),
                ("cost", lambda: -cost(), "your cost has the wrong sign: cost = -1/m * sum(Y log(AL) + (1 - Y) log(1 - AL))")]
    if op == "update_parameters":
        params, grads, lr = args
        out = []
        for k in params:
            out += [(k, (lambda k=k: params[k] + lr * grads["d" + k]),
                     f"your {k} equals {k} + learning_rate * d{k}: subtract the gradient"),
                    (k, (lambda k=k: params[k] - grads["d" + k]),
                     f"your {k} equals {k} - d{k}: multiply the gradient by learning_rate"),
                    (k, (lambda k=k: params[k]),
                     f"your {k} was not updated: loop over all L = len(parameters) // 2 layers (l = 1 .. L)")]
        return out
    if op == "L_model_backward":
        AL, Y, caches = args
        L = len(caches)
        Yf = Y.reshape(AL.shape).astype(np.float64)
        dAL = -(Yf / AL - (1 - Yf) / (1 - AL))

        def backward(dAL, hidden, last):
            g, dA = {}, dAL
            for l in range(L, 0, -1):
                (A, W, b), Z = caches[l - 1]
                r = _lin_back(_act_back(last if l == L else hidden, dA, Z), A, W, b)
                g[f"dA{l}"], g[f"dW{l}"], g[f"db{l}"] = r["dA_prev"], r["dW"], r["db"]
                dA = r["dA_prev"]
            return g
        names = [f"{d}{l}" for l in range(1, L + 1) for d in ("dW", "db", "dA")]
        return ([(n, (lambda n=n: backward(-dAL, "relu", "sigmoid")[n]),
                  "your gradients have the wrong sign: dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))")
                 for n in names]
                + [(n, (lambda n=n: backward(dAL, "relu", "relu")[n]),
                    "your last layer goes back through relu_backward: the output layer is sigmoid") for n in names]
                + [(n, (lambda n=n: backward(dAL, "sigmoid", "sigmoid")[n]),
                    "your hidden layers go back through sigmoid_backward: they are relu") for n in names])
    return []


_DENSE_FALLBACK = {
    "linear_forward": "Z = np.dot(W, A) + b",
    "linear_activation_forward": "A = g(Z) with Z = np.dot(W, A_prev) + b and g the activation named",
    "linear_backward": "dW = np.dot(dZ, A_prev.T) / m, db = np.sum(dZ, axis=1, keepdims=True) / m, dA_prev = np.dot(W.T, dZ)",
    "linear_activation_backward": "dZ = relu_backward(dA, activation_cache) (or sigmoid_backward), then linear_backward(dZ, linear_cache)",
    "L_model_forward": "[LINEAR -> RELU] x (L-1) -> LINEAR -> SIGMOID, with L = len(parameters) // 2",
    "compute_cost": "cost = -1/m * np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL)), then np.squeeze(cost)",
    "L_model_backward": "dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL)); layer L goes back through sigmoid, the others through relu",
    "update_parameters": "W = W - learning_rate * dW and b = b - learning_rate * db for every layer",
}


def _dense_compare(s: Subject, op, got, want, args, dtype) -> Optional[Problem]:
    """The first output of ``got`` that differs from ``want``, with the diagnosis of the mistake."""
    try:
        g, w = _dense_outputs(op, got, args), _dense_outputs(op, want, args)
    except _Shape as exc:
        return Problem(str(exc))
    for name, expected in w.items():
        if g.get(name) is None:
            return Problem(f"the result has no {name!r}; it has {sorted(k for k, v in g.items() if v is not None)}")
        p = compare(g[name], expected, dtype, name, False)
        if p is None:
            continue
        hint = None
        for out, alt, text in _dense_mistakes(op, args):
            try:
                hit = out == name and _same(g[name], alt(), dtype)
            except Exception:  # noqa: BLE001  (the mistake does not apply to these shapes)
                hit = False
            if hit:
                hint = text
                break
        p.message += f"; {hint or 'check: ' + _DENSE_FALLBACK[op]}"
        return p
    if op in ("linear_forward", "linear_activation_forward", "L_model_forward"):
        return _dense_cache(op, got[1], want[1], args, dtype)
    return None


def _dense_cache(op, cache, want, args, dtype) -> Optional[Problem]:
    if op == "L_model_forward":
        if not isinstance(cache, (list, tuple)) or len(cache) != len(want):
            n = len(cache) if isinstance(cache, (list, tuple)) else type(cache).__name__
            return Problem(f"caches has {n} entries, expected {len(want)} (one per layer: L = len(parameters) // 2)")
        return None
    if op == "linear_forward":
        if not (isinstance(cache, tuple) and len(cache) == 3 and all(
                np.array_equal(c, a) for c, a in zip(cache, args))):
            return Problem("cache must be (A, W, b), the arguments as passed, for linear_backward")
        return None
    if not (isinstance(cache, tuple) and len(cache) == 2 and isinstance(cache[0], tuple) and len(cache[0]) == 3):
        return Problem("cache must be (linear_cache, activation_cache): ((A_prev, W, b), Z)")
    p = compare(cache[1], want[1], dtype, "activation_cache (Z)", False)
    if p is not None:
        p.message += "; the activation cache is Z = np.dot(W, A_prev) + b, before the activation"
    return p


def _matrix_dense(s: Subject, op, case, dtype):
    def fn():
        args = _dense_args(op, case, dtype, s.ref)
        want = s.ref[op](*_copy_args(args))
        with np.errstate(all="ignore"):
            got = getattr(s, op)(*args)
        return _dense_compare(s, op, got, want, args, dtype)
    return fn


def _golden_dense(s: Subject, op):
    def close(got, expected, decimals, what):
        return compare(np.asarray(got, dtype=float), np.asarray(expected, dtype=float), np.float64,
                       f"{what} (the course prints)", False, rtol=0.0, atol=0.5 * 10.0 ** -decimals)

    def fn():
        g = course.DENSE[op]
        if op == "compute_cost":
            return close(s.compute_cost(np.array([[0.8, 0.9, 0.4]]), np.array([[1, 1, 1]])), g["cost"], 12, "cost")
        if op == "update_parameters":
            rng = np.random.RandomState(2)
            params = {"W1": rng.randn(3, 4), "b1": rng.randn(3, 1), "W2": rng.randn(1, 3), "b2": rng.randn(1, 1)}
            rng = np.random.RandomState(3)
            grads = {"dW1": rng.randn(3, 4), "db1": rng.randn(3, 1), "dW2": rng.randn(1, 3), "db2": rng.randn(1, 1)}
            new = s.update_parameters(params, grads, 0.1)
            # the test case's np.testing.assert_array_almost_equal(..., decimal=5): |error| < 1.5e-5
            return _first(*(compare(np.asarray(new[k], dtype=float), np.asarray(g[k]), np.float64,
                                    f"{k} (the course's test case)", False, rtol=0.0, atol=1.5e-5) for k in g))
        if op == "L_model_backward":
            rng = np.random.RandomState(3)
            AL, Y = rng.randn(1, 2), np.array([[1, 0]])
            caches = tuple(((rng.randn(*a), rng.randn(*w), rng.randn(*b)), rng.randn(*z)) for a, w, b, z in
                           (((4, 2), (3, 4), (3, 1), (3, 2)), ((3, 2), (1, 3), (1, 1), (1, 2))))
            grads = _dense_outputs(op, s.L_model_backward(AL, Y, caches), (AL, Y, caches))
            return _first(*(close(grads[k], g[k], 8, k) for k in g))
        rng = np.random.RandomState(1 if op in ("linear_forward", "linear_backward", "L_model_forward") else 2)
        if op == "linear_forward":
            return close(s.linear_forward(rng.randn(3, 2), rng.randn(1, 3), rng.randn(1, 1))[0], g["Z"], 8, "Z")
        if op == "linear_activation_forward":
            A, W, b = rng.randn(3, 2), rng.randn(1, 3), rng.randn(1, 1)
            return _first(*(close(s.linear_activation_forward(A, W, b, act)[0], g[act], 8, f"A ({act})")
                            for act in ("sigmoid", "relu")))
        if op == "L_model_forward":
            X = rng.randn(4, 2)
            params = {"W1": rng.randn(3, 4), "b1": rng.randn(3, 1), "W2": rng.randn(1, 3), "b2": rng.randn(1, 1)}
            AL, caches = s.L_model_forward(X, params)
            if len(caches) != g["len(caches)"]:
                return Problem(f"caches has {len(caches)} entries, expected {g['len(caches)']} (the course prints)")
            return close(AL, g["AL"], 8, "AL")
        if op == "linear_backward":
            dZ, A, W, b = rng.randn(1, 2), rng.randn(3, 2), rng.randn(1, 3), rng.randn(1, 1)
            return _first(*(close(x, g[k], 8, k) for k, x in zip(("dA_prev", "dW", "db"), s.linear_backward(dZ, (A, W, b)))))
        dA, A, W, b, Z = rng.randn(1, 2), rng.randn(3, 2), rng.randn(1, 3), rng.randn(1, 1), rng.randn(1, 2)
        return _first(*(close(x, g[act][k], 8, f"{k} ({act})") for act in ("sigmoid", "relu")
                        for k, x in zip(("dA_prev", "dW", "db"), s.linear_activation_backward(dA, ((A, W, b), Z), act))))
    return fn


def _mutation_dense(s: Subject, op, dtype):
    def fn():
        args = _dense_args(op, _dense_cases(op)[-1], dtype, s.ref)
        arrays = [a for name, x in zip(_DENSE_ARGNAMES[op], args) for a in _arrays_in(x, name)]
        before = [a.copy() for _, a in arrays]
        with np.errstate(all="ignore"):
            getattr(s, op)(*args)
        for (name, a), b in zip(arrays, before):
            if not np.array_equal(a, b, equal_nan=True):
                i = tuple(np.argwhere(~((a == b) | (np.isnan(a) & np.isnan(b))))[0])
                return Problem(f"modified its input {name}: {name}{_fmt_index(i)} {_v(b[i])} -> {_v(a[i])} "
                               f"(compute new arrays, e.g. W = W - learning_rate * dW, not W -= ...)", where=_fmt_index(i))
        return None
    return fn


def _flat_arrays(x):
    if isinstance(x, dict):
        return [a for k in sorted(x) for a in _flat_arrays(x[k])]
    if isinstance(x, (tuple, list)):
        return [a for v in x for a in _flat_arrays(v)]
    return [np.asarray(x)]


def _threads_dense(s: Subject, op, dtype):
    cases = _dense_cases(op)

    def call(k):
        return _flat_arrays(getattr(s, op)(*_dense_args(op, cases[k % len(cases)], dtype, s.ref)))

    return _threads(s, op, dtype, calls=[(lambda k=k: call(k)) for k in range(4)])


def checks(subject, *, ops: Optional[Sequence[str]] = None, dtypes: Optional[Sequence] = None,
           kinds: Optional[Sequence[str]] = None, quick: bool = False,
           conv_cases: Optional[Sequence] = None, pool_cases: Optional[Sequence] = None) -> List[Check]:
    """The checks for ``subject`` (a backend name or a :class:`Subject`).

    Parameters
    ----------
    subject : str or Subject
        A registered backend's name, or :func:`function_subject` of a user's function.
    ops : sequence of str, optional
        Only these ops (of :data:`fastnn._dispatch.OPS`); default all the subject has.
    dtypes : sequence, optional
        Default float32 and float64 for a backend, float64 for a function.
    kinds : sequence of str, optional
        Only these kinds (:data:`KINDS`).
    quick : bool, optional
        A few named cases per op instead of all.
    conv_cases, pool_cases : sequence of ConvCase / PoolCase, optional
        The matrix checks on these cases (:mod:`fastnn.testing.cases`' classes, e.g. a backend's
        own shapes) instead of the named ones.

    Returns
    -------
    checks : list of Check
    """
    s = backend_subject(subject) if isinstance(subject, str) else subject
    ref_name = _dispatch.ground_truth_backend()
    is_ref = s.is_backend and s.name == ref_name
    dts = [np.dtype(d) for d in (dtypes or (DTYPES if s.is_backend else (np.float64,)))]
    want_ops = [op for op in (ops or ALL_OPS) if s.has(op)]
    kernel_ops = [op for op in want_ops if op in _dispatch.OPS]
    want_kinds = set(kinds or KINDS)
    out: List[Check] = []

    def add(kind, op, ident, fn):
        if kind in want_kinds and op in want_ops:
            out.append(Check(f"{kind}/{op}/{ident}", kind, op, fn))

    conv = [c for c in (CONV_CASES.values() if conv_cases is None else conv_cases)
            if (not quick or conv_cases is not None or c.name in QUICK_CONV) and (s.is_backend or _course_ok(c))]
    pool = [c for c in (POOL_CASES.values() if pool_cases is None else pool_cases)
            if (not quick or pool_cases is not None or c.name in QUICK_POOL) and (s.is_backend or _course_ok(c))]
    f64 = np.dtype(np.float64) in dts
    for op in ("zero_pad", "conv_forward", "conv_backward", "pool_forward", "pool_backward"):
        if f64:
            add("golden", op, "course", _golden(s, op))
    for dt in dts:
        n = dt.name
        if not is_ref:
            for c in conv:
                for op in ("conv_forward", "conv_backward"):
                    add("matrix", op, f"{c.name}/{n}", _matrix_conv(s, c, dt, op))
            for c in pool:
                for mode in ("max", "average"):
                    add("matrix", "pool_forward", f"{c.name}/{mode}/{n}", _matrix_pool(s, c, dt, "pool_forward", mode, "all"))
                    for ties in (("all", "first") if mode == "max" and s.is_backend else ("all",)):
                        add("matrix", "pool_backward", f"{c.name}/{mode}/ties={ties}/{n}",
                            _matrix_pool(s, c, dt, "pool_backward", mode, ties))
            for pad in (0, 1, 3) + (((2, 0),) if s.is_backend else ()):
                add("matrix", "zero_pad", f"pad={pad}/{n}", _matrix_zero_pad(s, dt, pad))
            for op in ("relu", "sigmoid", "relu_backward", "sigmoid_backward"):
                add("matrix", op, n, _matrix_activation(s, dt, op))
        else:  # the ground truth against itself but for conv_backward's input_grad=False: no dA_prev, same dW, db
            for c in conv:
                add("matrix", "conv_backward", f"{c.name}/{n}", _matrix_conv(s, c, dt, "conv_backward"))
        for op in kernel_ops:
            add("mutation", op, n, _mutation(s, op, dt, False))
            add("threads", op, n, _threads(s, op, dt))
    if f64:
        for op in kernel_ops:
            add("mutation", op, "noncontig/float64", _mutation(s, op, np.float64, True))
        for name in (CONV_GRAD[:2] if quick else CONV_GRAD):
            if s.is_backend or _course_ok(CONV_CASES[name]):
                add("gradients", "conv_backward", name, _gradient_conv(s, name))
        for name in (POOL_GRAD[:2] if quick else POOL_GRAD):
            if s.is_backend or _course_ok(POOL_CASES[name]):
                for mode in ("max", "average"):
                    add("gradients", "pool_backward", f"{name}/{mode}", _gradient_pool(s, name, mode))
        for op in ("relu_backward", "sigmoid_backward"):
            add("gradients", op, "central_differences", _gradient_activation(s, op))
        add("ties", "pool_backward", "rules", _ties(s))
        for op in ("zero_pad", "conv_forward", "conv_backward", "pool_forward", "pool_backward",
                   "relu", "sigmoid", "relu_backward", "sigmoid_backward"):
            add("nan", op, "propagation", _nan(s, op))
        if s.is_backend:
            for op, label, call in _bad_inputs():
                add("bad_input", op, label.replace(" ", "_"), _bad_input(s, call))
    dense_dts = [np.dtype(d) for d in (dtypes or DTYPES)]  # dense functions keep float32 naturally
    for op in (o for o in DENSE if o in want_ops):
        if np.dtype(np.float64) in dense_dts:
            add("golden", op, "course", _golden_dense(s, op))
        for dt in dense_dts:
            for case in (_dense_cases(op)[:2] if quick else _dense_cases(op)):
                add("matrix", op, f"{case}/{dt.name}", _matrix_dense(s, op, case, dt))
            add("mutation", op, dt.name, _mutation_dense(s, op, dt))
            add("threads", op, dt.name, _threads_dense(s, op, dt))
    return out


def run(subject, **select) -> List[tuple]:
    """Run :func:`checks` and return ``[(check, problem or None), ...]``."""
    return [(c, c.run()) for c in checks(subject, **select)]


def _number(x):
    """An error for the JSON report: a float, or "inf", "-inf", "nan" where it is not finite
    (strict JSON has no Infinity or NaN), None where there is none."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else "nan" if np.isnan(x) else "inf" if x > 0 else "-inf"


@dataclasses.dataclass
class Report:
    """What :func:`report` ran: ``results`` is ``[(check, problem or None), ...]``."""
    title: str
    quick: bool
    results: List[tuple]

    @property
    def failed(self) -> int:
        return sum(p is not None for _, p in self.results)

    @property
    def passed(self) -> bool:
        return self.failed == 0

    def as_json(self) -> dict:
        """The report as JSON (schema ``fastnn-check/1``; strict: write it with ``allow_nan=False``)."""
        return {"schema": "fastnn-check/1", "subject": self.title, "quick": self.quick,
                "checks": len(self.results), "failed": self.failed,
                "results": [{"id": c.id, "kind": c.kind, "op": c.op, "passed": p is None,
                             "message": p and p.message, "max_abs": _number(p and p.max_abs),
                             "max_rel": _number(p and p.max_rel), "where": p and p.where}
                            for c, p in self.results]}

    def __repr__(self) -> str:
        return f"<fastnn check {self.title}: {len(self.results) - self.failed} of {len(self.results)} checks passed>"


def report(subject, as_: Optional[str] = None, *, ops: Optional[Sequence[str]] = None,
           dtypes: Optional[Sequence] = None, kinds: Optional[Sequence[str]] = None, quick: bool = False,
           file=None) -> Report:
    """Run the checks of ``subject`` and print the report ``fastnn check`` prints: one line per
    failing check, as it fails, then the count. In a notebook, after defining ``conv_forward``::

        from fastnn.testing import conformance
        conformance.report(conv_forward)

    Parameters
    ----------
    subject : str, callable or Subject
        A registered backend (or ``"backend:variant"``); a function with the course's signature,
        the course function its name says (``as_`` to name another); or a :class:`Subject`.
    as_ : str, optional
        Which course function (:data:`FUNCTIONS`) a function is.
    ops, dtypes, kinds, quick
        The selection, as for :func:`checks`.
    file : text stream, optional
        Where to print (default ``sys.stdout``).

    Returns
    -------
    Report
        ``.passed``, ``.failed``, ``.results``, ``.as_json()``.

    Raises
    ------
    ValueError
        A function that is no course function without ``as_``, or a selection that matches no checks.
    """
    import sys

    file = sys.stdout if file is None else file
    if isinstance(subject, str):
        s, title = backend_subject(subject), f"backend {subject}"
    elif isinstance(subject, Subject):
        s = subject
        title = f"backend {s.name}" if s.is_backend else " as ".join(dict.fromkeys((s.name, *s.fns)))
    elif callable(subject):
        name = as_ or getattr(subject, "__name__", "")
        if name not in FUNCTIONS:
            raise ValueError(f"{name!r} is not a course function; pass as_= one of {', '.join(FUNCTIONS)}")
        s = function_subject(subject, name, getattr(subject, "__name__", name))
        title = " as ".join(dict.fromkeys((s.name, name)))
    else:
        raise TypeError(f"subject must be a backend name, a function or a Subject, got {type(subject).__name__}")
    selected = checks(s, ops=ops, dtypes=dtypes, kinds=kinds, quick=quick)
    if not selected:
        raise ValueError(f"the selection matches no checks of {title} (ops {', '.join(ops) if ops else 'all'}, "
                         f"dtypes {', '.join(np.dtype(d).name for d in dtypes) if dtypes else 'default'}, "
                         f"kinds {', '.join(kinds) if kinds else 'all'}); its ops are "
                         f"{', '.join(op for op in ALL_OPS if s.has(op))}")
    print(f"fastnn check {title}: {len(selected)} checks{' (quick)' if quick else ''}", file=file, flush=True)
    results = []
    for c in selected:
        p = c.run()
        results.append((c, p))
        if p is not None:
            print(f"FAIL {c.id}: {p.message}", file=file, flush=True)
    out = Report(title, quick, results)
    print(f"FAILED: {out.failed} of {len(results)} checks" if out.failed else f"passed: all {len(results)} checks",
          file=file, flush=True)
    return out


def make_test(backends, **select):
    """A pytest test function parametrised over every check of ``backends`` (a name or a list).

    ``test_mine = conformance.make_test("mine")`` in a test module runs the whole suite; the
    keywords are those of :func:`checks` (``quick=True``, ``ops=[...]``, ``dtypes=[...]``).
    """
    import pytest

    names = [backends] if isinstance(backends, str) else list(backends)
    params = [pytest.param(c, id=f"{b}/{c.id}") for b in names for c in checks(b, **select)]

    @pytest.mark.parametrize("fastnn_check", params)
    def test_conformance(fastnn_check):
        fastnn_check.assert_passes()

    return test_conformance
