"""The benchmark workloads: one op (forward, or forward + backward) on one named shape in one dtype.

Shared by ``fastnn bench`` and the pytest-benchmark suite in ``bench/``. The shapes come
from :mod:`fastnn.testing.cases` (``BENCH_CONV_SHAPES``, ``BENCH_POOL_SHAPES``) plus the
dense layers of the course's cat network. Every workload can

* build seeded inputs (``make``) and a zero-argument callable running it on a fastnn
  backend (``fastnn_call``) or on PyTorch (``torch_call``, input conversion done before,
  outside the callable),
* give a REDUCED version of itself (``reduced()``: batch 2, about 5 x 5 outputs, same
  window, stride, padding and channels) on which the reference backend (the course's
  loops) finishes in milliseconds, for the equivalence check,
* say how much work it is (``flops``, ``bytes``) for the rates and bounds.

Nothing here names a backend: backends come from :func:`fastnn.available_backends`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import fastnn
from fastnn._dispatch import AUTO, ground_truth_backend
from fastnn._params import _pair, conv_out_size, conv_params, pool_params
from fastnn.testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES, ConvCase, PoolCase
from fastnn.testing.tolerance import mismatch

__all__ = [
    "REF",
    "TORCH",
    "PASSES",
    "FAMILIES",
    "DENSE_DIMS",
    "DENSE_M",
    "Workload",
    "ConvWorkload",
    "PoolWorkload",
    "DenseWorkload",
    "all_workloads",
    "shape_names",
    "op_names",
    "backends_for",
    "compare_outputs",
    "torch_module",
    "torch_installed",
]

#: The ground-truth backend every other one is checked against (the course's loops).
REF = ground_truth_backend()  # the role, asked of the registry
#: The name of the external PyTorch anchor in tables and parametrisations (not a fastnn backend).
TORCH = "torch"
PASSES = ("fwd", "fwd+bwd")
FAMILIES = ("conv", "maxpool", "avgpool", "dense")
#: The course's cat network (application notebook): layer sizes and number of training examples.
DENSE_DIMS = (12288, 20, 7, 5, 1)
DENSE_M = 209
DENSE_LR = 0.0075
SEED = 0
#: Reduced shapes: this batch and (about) this many output rows and columns.
REDUCED_M = 2
REDUCED_OUT = 5


def torch_module():
    """``torch`` if it is installed, else None (PyTorch is an optional anchor only). Imports it."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return torch


def torch_installed() -> bool:
    """Whether ``torch`` can be imported, without importing it."""
    import importlib.util

    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def _reduced_len(n: int, f: int, s: int, p: int, target: int = REDUCED_OUT, d: int = 1) -> int:
    """An input length giving ``target`` outputs for window f (taps d apart), stride s, pad p
    (n if it gives fewer)."""
    if conv_out_size(n, f, p, s, d) <= target:
        return n
    return max(1, (target - 1) * s + (f - 1) * d + 1 - 2 * p)


def _reduced_case(c):
    """The same window, stride, padding, dilation, groups, layout and channels on a small batch
    and image (the table's pads are ints or pairs)."""
    (fh, fw), (sh, sw), (ph, pw) = _pair(c.f), _pair(c.stride), _pair(c.pad)
    dh, dw = _pair(getattr(c, "dilation", 1))
    return dataclasses.replace(
        c, m=min(c.m, REDUCED_M), H=_reduced_len(c.H, fh, sh, ph, d=dh), W=_reduced_len(c.W, fw, sw, pw, d=dw)
    )


def compare_outputs(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], dtype, names: Sequence[str]) -> Optional[str]:
    """None when every output matches the reference's, else what differs: the tests' rule,
    :func:`fastnn.testing.tolerance.mismatch`, output by output."""
    if len(actual) != len(expected):
        return f"{len(actual)} outputs, expected {len(expected)}"
    for name, a, e in zip(names, actual, expected):
        msg = mismatch(a, e, dtype, name)
        if msg is not None:
            return msg
    return None


@dataclasses.dataclass(frozen=True)
class Workload:
    """One op on one shape in one dtype (subclasses fill in the work)."""

    family: str
    pass_: str
    shape: str
    dtype: np.dtype
    is_reduced: bool = False

    #: fastnn dispatch ops the workload calls (a backend must have all of them)
    required_ops: Tuple[str, ...] = ()
    #: names of the outputs compared by the equivalence check
    output_names: Tuple[str, ...] = ()

    @property
    def op(self) -> str:
        return f"{self.family}.{self.pass_}"

    @property
    def dtype_name(self) -> str:
        return np.dtype(self.dtype).name

    @property
    def key(self) -> Tuple[str, str, str]:
        return (self.op, self.shape, self.dtype_name)

    @property
    def id(self) -> str:
        return f"{self.op}-{self.shape}-{self.dtype_name}"

    # overridden ---------------------------------------------------------------
    @property
    def dims(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def flops(self) -> Optional[float]:
        return None

    @property
    def bytes(self) -> Optional[float]:
        """Bytes the workload moves (read + written) at the least, for memory-bound ops."""
        return None

    @property
    def working_set(self) -> Optional[float]:
        """Bytes of the distinct arrays it touches (what the copy bound is measured on)."""
        return self.bytes

    @property
    def ref_units(self) -> float:
        """Iterations of the reference's Python loops (its time scales with this)."""
        return 1.0

    def reduced(self) -> "Workload":  # pragma: no cover - abstract
        raise NotImplementedError

    def make(self) -> tuple:  # pragma: no cover - abstract
        """The seeded inputs (the same arrays whichever backend runs them)."""
        raise NotImplementedError

    def fastnn_call(self, backend, data: Optional[tuple] = None) -> Callable[[], tuple]:  # pragma: no cover
        """A zero-argument callable running the workload on ``backend``: a backend name, or a
        dict op -> backend name (each op on its own backend, as ``auto`` may run them).
        ``data``: the inputs from :meth:`make` (made here when None), shared, never modified."""
        raise NotImplementedError

    def params(self, data: Optional[tuple] = None) -> Dict[str, object]:
        """op -> the params object of the call (what ``auto``'s planner keys on); empty for ops
        that take none."""
        return {}

    @property
    def inputs_key(self) -> tuple:
        """Workloads with equal keys make equal inputs (the forward and the forward+backward of a
        shape, max and average pooling), so the runner makes them once."""
        return (type(self).__name__, getattr(self, "case", None), self.dtype_name, self.is_reduced)

    def torch_layouts(self) -> Tuple[str, ...]:
        return ("default",)

    def torch_call(self, layout: str, data: Optional[tuple] = None
                   ) -> Tuple[Callable[[], tuple], Callable[[tuple], tuple]]:  # pragma: no cover
        """(fn, to_numpy): fn runs the op on prepared tensors; to_numpy converts its result (untimed)."""
        raise NotImplementedError


def _per_op(backend, op: str) -> str:
    """The backend of ``op`` when ``backend`` is a name or a dict op -> name."""
    return backend[op] if isinstance(backend, dict) else backend


def backends_for(workload: Workload) -> List[str]:
    """The registered fastnn backends implementing every op the workload needs, highest priority first."""
    having = None
    for op in workload.required_ops:
        names = fastnn.available_backends(op)
        having = names if having is None else [n for n in having if n in names]
    return list(having or [])


# ------------------------------------------------------------------------------ conv


@dataclasses.dataclass(frozen=True)
class ConvWorkload(Workload):
    case: ConvCase = None  # type: ignore[assignment]

    def __post_init__(self):
        object.__setattr__(self, "required_ops", ("conv_forward",) if self.pass_ == "fwd" else ("conv_forward", "conv_backward"))
        object.__setattr__(self, "output_names", ("Z",) if self.pass_ == "fwd" else ("Z", "dA_prev", "dW", "db"))

    @property
    def dims(self) -> str:
        c = self.case
        fh, fw = _pair(c.f)
        sh, sw = _pair(c.stride)
        ph, pw = _pair(c.pad)
        f = f"{fh}" if fh == fw else f"{fh}x{fw}"
        s = f"{sh}" if sh == sw else f"{sh}x{sw}"
        p = f"{ph}" if ph == pw else f"{ph}x{pw}"
        dh, dw = _pair(c.dilation)
        extra = (f" d{dh}" if dh == dw else f" d{dh}x{dw}") if (dh, dw) != (1, 1) else ""
        extra += (" dw" if c.groups == c.C else f" g{c.groups}") if c.groups > 1 else ""
        extra += " NCHW" if c.layout == "NCHW" else ""
        return f"{c.m}x{c.H}x{c.W}x{c.C} f{f} K{c.K} s{s} p{p}{extra}"

    @property
    def depthwise(self) -> bool:
        """A depthwise layer (groups = C_in): memory-bound, judged by the copy bound, not GEMM's."""
        return self.case.groups == self.case.C and self.case.groups > 1

    @property
    def flops(self) -> Optional[float]:
        if self.depthwise:
            return None
        return float(self.case.flops * (1 if self.pass_ == "fwd" else 3))

    @property
    def bytes(self) -> Optional[float]:
        """A depthwise layer's least traffic: forward reads A_prev and writes Z; the backward
        also reads dZ and A_prev again and writes dA_prev (W, dW: a few kB)."""
        if not self.depthwise:
            return None
        c = self.case
        Ho, Wo = c.out_hw
        n_in, n_out = c.m * c.H * c.W * c.C, c.m * Ho * Wo * c.K
        moved = n_in + n_out if self.pass_ == "fwd" else 3 * n_in + 2 * n_out
        return float(moved * np.dtype(self.dtype).itemsize)

    @property
    def working_set(self) -> Optional[float]:
        if not self.depthwise:
            return None
        c = self.case
        Ho, Wo = c.out_hw
        arrays = c.m * c.H * c.W * c.C + c.m * Ho * Wo * c.K
        return float((arrays if self.pass_ == "fwd" else 2 * arrays) * np.dtype(self.dtype).itemsize)

    @property
    def ref_units(self) -> float:
        Ho, Wo = self.case.out_hw
        return float(self.case.m * Ho * Wo * self.case.K)

    def reduced(self) -> "ConvWorkload":
        return dataclasses.replace(self, case=_reduced_case(self.case), is_reduced=True)

    def make(self):
        return self.case.make(self.dtype, seed=SEED)

    def fastnn_call(self, backend, data=None):
        A, W, b, hp, dZ = self.make() if data is None else data
        fwd = _per_op(backend, "conv_forward")
        if self.pass_ == "fwd":
            def fn():
                return (fastnn.conv_forward(A, W, b, hp, backend=fwd)[0],)
        else:
            bwd = _per_op(backend, "conv_backward")

            def fn():
                Z, cache = fastnn.conv_forward(A, W, b, hp, backend=fwd)
                return (Z,) + tuple(fastnn.conv_backward(dZ, cache, backend=bwd))
        return fn

    def params(self, data=None):
        A, W, b, hp, _ = self.make() if data is None else data
        p = conv_params(A, W, b, hp)
        return {op: p for op in self.required_ops}

    def torch_layouts(self):
        return ("NCHW", "channels_last")

    def torch_call(self, layout: str, data=None):
        torch = torch_module()
        F = torch.nn.functional
        A, W, b, hp, dZ = self.make() if data is None else data
        c = self.case
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        nchw = c.layout == "NCHW"  # (the case's arrays, fastnn's results: NCHW already)
        to_t = (lambda a: a) if nchw else (lambda a: a.transpose(0, 3, 1, 2))  # noqa: E731
        x = torch.from_numpy(np.ascontiguousarray(to_t(A))).contiguous(memory_format=fmt)
        w = torch.from_numpy(np.ascontiguousarray(W if nchw else W.transpose(3, 2, 0, 1))).contiguous(memory_format=fmt)
        bias = torch.from_numpy(b.reshape(-1).copy())
        g = torch.from_numpy(np.ascontiguousarray(to_t(dZ))).contiguous(memory_format=fmt)
        kw = dict(stride=_pair(c.stride), padding=_pair(c.pad), dilation=_pair(c.dilation), groups=c.groups)
        back = (lambda t: t.detach().contiguous().numpy()) if nchw else (  # noqa: E731
            lambda t: t.detach().permute(0, 2, 3, 1).contiguous().numpy())
        if self.pass_ == "fwd":
            def fn():
                with torch.no_grad():
                    return (F.conv2d(x, w, bias, **kw),)

            def to_numpy(out):
                return (back(out[0]),)
        else:
            x.requires_grad_(True)
            w.requires_grad_(True)
            bias.requires_grad_(True)

            def fn():
                y = F.conv2d(x, w, bias, **kw)
                return (y,) + tuple(torch.autograd.grad(y, (x, w, bias), g))

            def to_numpy(out):
                y, dx, dw, db = out
                dw = dw.detach().contiguous().numpy() if nchw else dw.detach().permute(2, 3, 1, 0).contiguous().numpy()
                return back(y), back(dx), dw, db.detach().reshape(b.shape).numpy()
        return fn, to_numpy


# ------------------------------------------------------------------------------ pool


@dataclasses.dataclass(frozen=True)
class PoolWorkload(Workload):
    case: PoolCase = None  # type: ignore[assignment]

    @property
    def mode(self) -> str:
        return "max" if self.family == "maxpool" else "average"

    def __post_init__(self):
        object.__setattr__(self, "required_ops", ("pool_forward",) if self.pass_ == "fwd" else ("pool_forward", "pool_backward"))
        object.__setattr__(self, "output_names", ("A",) if self.pass_ == "fwd" else ("A", "dA_prev"))

    @property
    def dims(self) -> str:
        c = self.case
        fh, fw = _pair(c.f)
        sh, sw = _pair(c.stride)
        f = f"{fh}" if fh == fw else f"{fh}x{fw}"
        s = f"{sh}" if sh == sw else f"{sh}x{sw}"
        pad = "" if c.pad == 0 else f" p{c.pad}"
        return f"{c.m}x{c.H}x{c.W}x{c.C} f{f} s{s}{pad}"

    @property
    def bytes(self) -> float:
        c = self.case
        Ho, Wo = c.out_hw
        n_in, n_out = c.m * c.H * c.W * c.C, c.m * Ho * Wo * c.C
        moved = n_in + n_out  # forward: read the input, write the output
        if self.pass_ == "fwd+bwd":
            # backward: read dA, write dA_prev (and max pooling re-reads the input)
            moved += n_out + n_in + (n_in if self.mode == "max" else 0)
        return float(moved * np.dtype(self.dtype).itemsize)

    @property
    def working_set(self) -> float:
        c = self.case
        Ho, Wo = c.out_hw
        n_in, n_out = c.m * c.H * c.W * c.C, c.m * Ho * Wo * c.C
        arrays = n_in + n_out if self.pass_ == "fwd" else 2 * (n_in + n_out)  # (+ dA and dA_prev)
        return float(arrays * np.dtype(self.dtype).itemsize)

    @property
    def ref_units(self) -> float:
        Ho, Wo = self.case.out_hw
        return float(self.case.m * Ho * Wo * self.case.C)

    def reduced(self) -> "PoolWorkload":
        return dataclasses.replace(self, case=_reduced_case(self.case), is_reduced=True)

    def make(self):
        return self.case.make(self.dtype, seed=SEED)

    def fastnn_call(self, backend, data=None):
        A, hp, dA = self.make() if data is None else data
        mode = self.mode
        fwd = _per_op(backend, "pool_forward")
        if self.pass_ == "fwd":
            def fn():
                return (fastnn.pool_forward(A, hp, mode, backend=fwd)[0],)
        else:
            bwd = _per_op(backend, "pool_backward")

            def fn():
                out, cache = fastnn.pool_forward(A, hp, mode, backend=fwd)
                return out, fastnn.pool_backward(dA, cache, mode, backend=bwd)
        return fn

    def params(self, data=None):
        A, hp, _ = self.make() if data is None else data
        p = pool_params(A, hp, self.mode)
        return {op: p for op in self.required_ops}

    def torch_layouts(self):
        return ("NCHW", "channels_last")

    def torch_call(self, layout: str, data=None):
        torch = torch_module()
        F = torch.nn.functional
        A, hp, dA = self.make() if data is None else data
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        x = torch.from_numpy(np.ascontiguousarray(A.transpose(0, 3, 1, 2))).contiguous(memory_format=fmt)
        g = torch.from_numpy(np.ascontiguousarray(dA.transpose(0, 3, 1, 2))).contiguous(memory_format=fmt)
        kw = dict(kernel_size=_pair(self.case.f), stride=_pair(self.case.stride), padding=_pair(self.case.pad))
        if self.mode == "max":
            pool = lambda t: F.max_pool2d(t, **kw)  # noqa: E731  (pads with -inf, as fastnn)
        else:
            pool = lambda t: F.avg_pool2d(t, count_include_pad=True, **kw)  # noqa: E731  (pads count, as fastnn)
        nhwc = lambda t: t.detach().permute(0, 2, 3, 1).contiguous().numpy()  # noqa: E731
        if self.pass_ == "fwd":
            def fn():
                with torch.no_grad():
                    return (pool(x),)
        else:
            x.requires_grad_(True)

            def fn():
                y = pool(x)
                return (y,) + tuple(torch.autograd.grad(y, (x,), g))

        def to_numpy(out):
            return tuple(nhwc(t) for t in out)

        return fn, to_numpy


# ----------------------------------------------------------------------------- dense


@dataclasses.dataclass(frozen=True)
class DenseWorkload(Workload):
    """The course's L-layer cat network: forward (``L_model_forward``) or one training step.

    The step is forward, cost, ``L_model_backward`` and ``update_parameters``; its outputs
    checked are AL and every dW, db. The backend choice reaches the activations (relu,
    sigmoid and their backward passes); the linear layers are NumPy's BLAS in every backend.
    """

    dims_: Tuple[int, ...] = DENSE_DIMS
    m: int = DENSE_M

    @property
    def inputs_key(self) -> tuple:
        return (type(self).__name__, self.dims_, self.m, self.dtype_name, self.is_reduced)

    def __post_init__(self):
        object.__setattr__(self, "required_ops", ("relu", "sigmoid") if self.pass_ == "fwd"
                           else ("relu", "sigmoid", "relu_backward", "sigmoid_backward"))
        L = len(self.dims_) - 1
        grads = tuple(n for l in range(1, L + 1) for n in (f"dW{l}", f"db{l}"))
        object.__setattr__(self, "output_names", ("AL",) if self.pass_ == "fwd" else ("AL",) + grads)

    @property
    def dims(self) -> str:
        return f"[{','.join(map(str, self.dims_))}] m={self.m}"

    @property
    def flops(self) -> float:
        fwd = 2.0 * self.m * sum(a * b for a, b in zip(self.dims_[:-1], self.dims_[1:]))
        return fwd * (1 if self.pass_ == "fwd" else 3)

    @property
    def ref_units(self) -> float:
        return float(self.m)

    def reduced(self) -> "DenseWorkload":
        return dataclasses.replace(self, m=min(self.m, 32), is_reduced=True)

    def make(self):
        rng = np.random.RandomState(SEED)
        X = rng.rand(self.dims_[0], self.m).astype(self.dtype)
        Y = (rng.rand(1, self.m) > 0.5).astype(self.dtype)
        params = fastnn.initialize_parameters_deep(self.dims_, seed=1, dtype=self.dtype)
        return X, Y, params

    def fastnn_call(self, backend, data=None):
        X, Y, params = self.make() if data is None else data
        L = len(self.dims_) - 1
        if isinstance(backend, dict):  # (the activations are not planned: one backend runs them all)
            names = set(backend.values())
            backend = names.pop() if len(names) == 1 else AUTO
        if self.pass_ == "fwd":
            def fn():
                with fastnn.use_backend(backend):
                    return (fastnn.L_model_forward(X, params)[0],)
        else:
            def fn():
                with fastnn.use_backend(backend):
                    AL, caches = fastnn.L_model_forward(X, params)
                    fastnn.compute_cost(AL, Y)
                    grads = fastnn.L_model_backward(AL, Y, caches)
                    fastnn.update_parameters(params, grads, DENSE_LR)
                return (AL,) + tuple(grads[f"d{k}{l}"] for l in range(1, L + 1) for k in ("W", "b"))
        return fn

    def torch_call(self, layout: str, data=None):
        torch = torch_module()
        X, Y, params = self.make() if data is None else data
        L = len(self.dims_) - 1
        x, y = torch.from_numpy(X), torch.from_numpy(Y)
        Ws = [torch.from_numpy(params[f"W{l}"].copy()) for l in range(1, L + 1)]
        bs = [torch.from_numpy(params[f"b{l}"].copy()) for l in range(1, L + 1)]

        def forward():
            A = x
            for l in range(L - 1):
                A = torch.relu(Ws[l] @ A + bs[l])
            return torch.sigmoid(Ws[L - 1] @ A + bs[L - 1])

        if self.pass_ == "fwd":
            def fn():
                with torch.no_grad():
                    return (forward(),)
        else:
            for t in Ws + bs:
                t.requires_grad_(True)
            leaves = [t for pair in zip(Ws, bs) for t in pair]

            def fn():
                AL = forward()
                cost = -(y * torch.log(AL) + (1 - y) * torch.log(1 - AL)).sum() / self.m
                grads = torch.autograd.grad(cost, leaves)
                with torch.no_grad():
                    [t - DENSE_LR * gr for t, gr in zip(leaves, grads)]
                return (AL,) + tuple(grads)

        def to_numpy(out):
            return tuple(t.detach().numpy() for t in out)

        return fn, to_numpy


# ------------------------------------------------------------------------- the table


def all_workloads(dtypes: Sequence = (np.float32, np.float64)) -> List[Workload]:
    """Every benchmark workload: conv, max and average pooling on the shared shape tables, and the cat network."""
    out: List[Workload] = []
    for pass_ in PASSES:
        for name, case in BENCH_CONV_SHAPES.items():
            for dt in dtypes:
                out.append(ConvWorkload("conv", pass_, name, np.dtype(dt), case=case))
    for family in ("maxpool", "avgpool"):
        for pass_ in PASSES:
            for name, case in BENCH_POOL_SHAPES.items():
                for dt in dtypes:
                    out.append(PoolWorkload(family, pass_, name, np.dtype(dt), case=case))
    for pass_ in PASSES:
        for dt in dtypes:
            out.append(DenseWorkload("dense", pass_, "cat_net", np.dtype(dt)))
    return out


def shape_names() -> List[str]:
    seen: Dict[str, None] = {}
    for w in all_workloads(dtypes=(np.float64,)):
        seen.setdefault(w.shape, None)
    return list(seen)


def op_names() -> List[str]:
    return [f"{f}.{p}" for f in FAMILIES for p in PASSES]
