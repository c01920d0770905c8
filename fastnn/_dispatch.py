"""The one backend registry of fastnn.

Every kernel op is looked up here by ``(op, backend)``. A backend is a name plus a
priority; a kernel is registered for one op of one backend with one decorator::

    from fastnn._dispatch import register_backend, register

    register_backend("mybackend", priority=5, description="what it is")

    @register("conv_forward", "mybackend")
    def conv_forward(p, A_prev, W, b, Z): ...

Which backend runs a call is decided, first match wins, by

1. the ``backend=`` keyword of the public function,
2. the innermost ``with fastnn.use_backend(name):`` block (a :mod:`contextvars`
   variable, so threads and asyncio tasks do not see each other's choice),
3. ``fastnn.set_backend(name)`` (process-wide),
4. the ``FASTNN_BACKEND`` environment variable (a name that is not registered is ignored
   with a warning, once per value),
5. ``"auto"``: the candidate the planner's plan names for the call's key (:mod:`fastnn._plan`:
   measured by ``fastnn tune``, or on first sight with autotuning on), else the registered
   backend of highest priority that has the op.

*Variants.* Within a backend, a kernel may come in variants (tile shapes, strategies) that
compute the same op within the tolerances; each is declared here with a predicate saying
for which calls it is an alternative to the backend's own choice::

    @register("conv_forward", "mybackend", variant="wide", applies=lambda p: p.K >= 32)
    def conv_forward_wide(p, A_prev, W, b, Z): ...

A *candidate* is a backend's own kernel (named by the backend, ``"numba"``) or one of its
variants (``"numba:p4t8"``). Only ``auto`` runs variants, and only the one a plan names:
a pinned backend (``backend="numba"``) always runs its own kernel, so its bits never depend
on a plan (:func:`pin_candidates`, which runs a named variant, is the conformance suite's). :func:`candidates` lists, for one call, what the planner may time.

Backend names live in this registry alone: no other module branches on a name.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional

__all__ = [
    "OPS",
    "AUTO",
    "BackendError",
    "register_backend",
    "register",
    "ground_truth_backend",
    "available_backends",
    "backend_info",
    "set_backend",
    "get_backend",
    "use_backend",
    "resolve",
    "channels_first",
    "resolve_name",
    "unregister_backend",
    "kernel_of",
    "candidates",
    "handles",
    "variants",
    "set_planner",
    "get_planner",
    "set_recorder",
    "get_recorder",
    "pin_candidates",
    "env_problem",
]

#: The kernel ops every backend may implement, with the signature its kernels share.
#: ``p`` is the frozen params object built by :mod:`fastnn._params`; all arrays are
#: C-contiguous, of dtype ``p.dtype`` (except for a convolution kernel that declares
#: ``channels_first``: see :func:`channels_first`); outputs are allocated by the wrapper
#: (uninitialised, ``np.empty``) and every element must be written by the kernel.
OPS: Dict[str, str] = {
    "zero_pad": "(p: PadParams, X, out) -> None",
    "conv_forward": "(p: ConvParams, A_prev, W, b, Z) -> None; b has shape (K,)",
    "conv_backward": "(p: ConvParams, A_prev, W, dZ, dA_prev, dW, db) -> None; db has shape (K,); "
                     "a kernel with the attribute input_grad_optional = True gets dA_prev None when "
                     "the caller wants no input gradient (others get an array, then dropped)",
    "pool_forward": "(p: PoolParams, A_prev, A) -> None",
    "pool_backward": "(p: PoolParams, A_prev, dA, dA_prev) -> None",
    "relu": "(x, out) -> None",
    "relu_backward": "(dA, Z, out) -> None",
    "sigmoid": "(x, out) -> None",
    "sigmoid_backward": "(dA, Z, out) -> None",
}

AUTO = "auto"
ENV_VAR = "FASTNN_BACKEND"

# ``os.environ.get`` of an unset variable raises and catches a KeyError inside ``os.environ``,
# a noticeable share of a small convolution's whole call (the figure is in
# docs/bench/measured-notes.md). The variable is still read on every call, but its absence is
# checked in the dict behind ``os.environ`` (CPython's ``os._Environ._data``, updated by every
# ``os.environ`` assignment); where that is missing, or ``os.environ`` was replaced by another
# object, the check is skipped.
_ENVIRON = os.environ
try:
    _ENV_DATA, _ENV_KEY = _ENVIRON._data, _ENVIRON.encodekey(ENV_VAR)  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover  (not CPython's os._Environ)
    _ENV_DATA, _ENV_KEY = None, None


def _env_choice() -> str:
    """``$FASTNN_BACKEND``, or ``"auto"`` where it is unset, empty or names no registered backend
    (that last with a warning, once per value: see :func:`env_problem`)."""
    if _ENV_DATA is not None and _ENV_KEY not in _ENV_DATA and os.environ is _ENVIRON:
        return AUTO
    name = os.environ.get(ENV_VAR) or AUTO
    if name in _backends or name == AUTO:
        return name
    if name not in _env_warned:
        _env_warned.add(name)
        warnings.warn(env_problem(name), RuntimeWarning, stacklevel=2)
    return AUTO


def env_problem(name: Optional[str] = None) -> Optional[str]:
    """What is wrong with ``$FASTNN_BACKEND`` (or ``name``), or None: a value naming no registered
    backend is ignored (``"auto"`` runs instead), and this says so (``fastnn info`` shows it)."""
    if name is None:
        name = os.environ.get(ENV_VAR) or AUTO
    if name in _backends or name == AUTO:
        return None
    return (f"{ENV_VAR}={name!r} names no registered backend; available: {', '.join([AUTO] + available_backends())}. "
            f"Ignoring it: the default ({AUTO!r}) runs instead")


class BackendError(ValueError):
    """An unknown backend name, or a backend that lacks the requested op."""


class _Backend(NamedTuple):
    name: str
    priority: int
    description: str


_backends: Dict[str, _Backend] = {}
_ground_truth: Optional[str] = None
_kernels: Dict[str, Dict[str, Callable]] = {op: {} for op in OPS}
# op -> candidate name ("backend" or "backend:variant") -> kernel: every kernel auto may run.
_candidates: Dict[str, Dict[str, Callable]] = {op: {} for op in OPS}
# op -> backend -> variant -> applies(p) predicate.
_variants: Dict[str, Dict[str, Dict[str, Callable]]] = {op: {} for op in OPS}
SEP = ":"
_global_choice: Optional[str] = None
_env_warned: set = set()  # the $FASTNN_BACKEND values already warned about
_context_choice: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "fastnn_backend", default=None
)
# op -> name of the "auto" kernel, recomputed when the registry changes.
_auto_cache: Dict[str, str] = {}
# ``planner(op, p) -> backend name or None``, asked by "auto" for calls that pass their params
# (None: no plan to consult, so "auto" costs nothing more than the default rule).
_planner: Optional[Callable] = None
# The entry point being loaded by fastnn._plugins (None otherwise): a plugin may add backends,
# never replace or extend one that was registered before it.
_plugin_loading: Optional[str] = None
_protected: set = set()  # the backends registered before that plugin


# op -> candidate, pinned for this thread or task by :func:`pin_candidates` (None: nothing pinned).
_pinned: contextvars.ContextVar[Optional[Dict[str, str]]] = contextvars.ContextVar(
    "fastnn_pinned_candidates", default=None
)


@contextlib.contextmanager
def pin_candidates(pins: Dict[str, str]) -> Iterator[None]:
    """Within the block (this thread or asyncio task only), each ``op`` of ``pins`` runs the
    candidate ``pins[op]`` (``"numba:p4t8"``), whatever the backend asked for and whether or
    not the variant applies: how the conformance suite checks a variant through the wrappers.
    Not a way to choose kernels: only ``auto`` runs variants in use."""
    for op, cand in pins.items():
        kernel_of(op, cand)  # raises BackendError for an unknown candidate
    token = _pinned.set({**(_pinned.get() or {}), **pins})
    try:
        yield
    finally:
        _pinned.reset(token)


# ``recorder(op, p)``, told of every call that passes its params, whichever backend runs it
# (:func:`fastnn._plan.record`); None when nothing records.
_recorder: Optional[Callable] = None


def set_recorder(recorder: Optional[Callable]) -> None:
    """Install the call recorder (:func:`fastnn._plan.record` does), or None."""
    global _recorder
    _recorder = recorder


def set_planner(planner: Optional[Callable]) -> None:
    """Install the planner ``auto`` asks (:mod:`fastnn._plan` does), or None."""
    global _planner
    _planner = planner


def get_planner() -> Optional[Callable]:
    """The planner ``auto`` asks now (None: the default rule alone)."""
    return _planner


def get_recorder() -> Optional[Callable]:
    """The call recorder installed now, or None."""
    return _recorder


def kernel_of(op: str, backend: str) -> Callable:
    """The kernel registered for ``op`` by candidate ``backend`` (a backend's name, or
    ``"backend:variant"``; no choice involved)."""
    try:
        return _candidates[op][backend]
    except KeyError:
        raise BackendError(f"backend {backend!r} has no kernel for op {op!r}; candidates with {op!r}: "
                           f"{', '.join(_candidates[op])}") from None


def variants(op: str, backend: str) -> List[str]:
    """The variant names ``backend`` declares for ``op`` (in declaration order)."""
    return list(_variants[op].get(backend, {}))


def handles(kernel: Callable, p) -> bool:
    """Whether ``kernel`` computes a call with params ``p`` itself. Every kernel computes the
    course's calls (``p.core``: one group, no dilation, symmetric padding, average over the
    whole window); a kernel gets others (groups, dilation, uneven padding, ceil_mode, other
    divisors of an average) only where its ``handles(p)`` attribute says so, and
    :mod:`fastnn._lower` breaks the rest into course calls."""
    if p is None or p.core:
        return True
    h = getattr(kernel, "handles", None)
    return h is not None and bool(h(p))


def channels_first(kernel: Callable, p) -> bool:
    """Whether a ``conv_forward`` or ``conv_backward`` kernel reads and writes a call's
    channels-first arrays itself (``"layout": "NCHW"``): its ``channels_first(p)`` attribute
    says so for ``p`` (which it also :func:`handles`). Such a kernel is passed the C-contiguous
    NCHW arrays (A_prev and Z; A_prev, dZ and dA_prev) as their NHWC-shaped views
    (``.transpose(0, 2, 3, 1)``: the op's one signature; the views' strides tell it) and
    PyTorch's (K, C_g, fh, fw) filters as their HWCK-shaped view (``.transpose(2, 3, 1, 0)``);
    b, dW and db as for any call (dW C-contiguous HWCK); any other kernel gets C-contiguous NHWC
    copies, transposed by the wrapper."""
    cf = getattr(kernel, "channels_first", None)
    return cf is not None and handles(kernel, p) and bool(cf(p))


def candidates(op: str, p=None) -> List[str]:
    """What ``auto`` may run for ``op``: each backend having it (highest priority first), each
    followed by its variants that apply to the call's params ``p`` (all of them when ``p``
    is None); for params beyond the course's, only the kernels that handle them (:func:`handles`)."""
    out = []
    for name in available_backends(op):
        if handles(_kernels[op][name], p):
            out.append(name)
        for v, applies in _variants[op].get(name, {}).items():
            cand = name + SEP + v
            if p is None or (applies(p) and handles(_candidates[op][cand], p)):
                out.append(cand)
    return out


def register_backend(name: str, priority: int = 0, description: str = "", *, ground_truth: bool = False) -> None:
    """Declare a backend, before registering its kernels with :func:`register`.

    Parameters
    ----------
    name : str
        The backend's name (not ``"auto"``, without ``":"``), as passed to ``backend=``.
    priority : int, optional
        Higher wins under ``"auto"`` when no plan names another; the built-in ones are 0-20.
        A plugin that is not meant to become the default should use a negative priority.
    description : str, optional
        One line for ``fastnn info``.
    ground_truth : bool, optional
        Marks the backend every other one is checked against (fastnn's ``reference``; leave it False).

    Returns
    -------
    None

    Examples
    --------
    >>> import fastnn
    >>> fastnn.register_backend("mine", priority=-10, description="my NumPy kernels")
    >>> "mine" in fastnn.available_backends()
    True
    >>> fastnn.unregister_backend("mine")
    """
    global _ground_truth
    if not isinstance(name, str) or not name or name == AUTO or SEP in name:
        raise ValueError(f"backend name must be a non-empty string other than {AUTO!r}, without "
                         f"{SEP!r}, got {name!r}")
    if _plugin_loading is not None and name in _backends:
        raise BackendError(f"plugin {_plugin_loading!r} may not replace the registered backend {name!r}")
    if ground_truth and _plugin_loading is not None:
        raise BackendError(f"plugin {_plugin_loading!r} may not declare a ground-truth backend")
    _backends[name] = _Backend(name, int(priority), description)
    if ground_truth:
        _ground_truth = name
    _auto_cache.clear()


def ground_truth_backend() -> str:
    """The name of the backend registered with ``ground_truth=True``."""
    if _ground_truth is None or _ground_truth not in _backends:
        raise BackendError("no ground-truth backend is registered")
    return _ground_truth


def unregister_backend(name: str) -> None:
    """Remove a backend and its kernels (a backend made for a test, or an example).

    Parameters
    ----------
    name : str
        The backend's name; an unknown name is ignored.

    Returns
    -------
    None

    Examples
    --------
    >>> import fastnn
    >>> fastnn.register_backend("scratch")
    >>> fastnn.unregister_backend("scratch")
    >>> "scratch" in fastnn.available_backends()
    False
    """
    _backends.pop(name, None)
    for table in _kernels.values():
        table.pop(name, None)
    for op, table in _candidates.items():
        for c in [c for c in table if c == name or c.startswith(name + SEP)]:
            del table[c]
        _variants[op].pop(name, None)
    _auto_cache.clear()


def register(op: str, backend: str, variant: Optional[str] = None,
             applies: Optional[Callable] = None) -> Callable[[Callable], Callable]:
    """Decorator registering a kernel of ``op`` for ``backend`` (declared by :func:`register_backend`).

    A kernel has the signature :data:`OPS` gives for its op, e.g. ``conv_forward(p, A_prev, W,
    b, Z)``. It may assume what the public wrapper guarantees: arguments already checked,
    ``p`` the frozen params of :mod:`fastnn._params` (shapes, strides, pads, ``p.dtype``),
    every array C-contiguous of dtype ``p.dtype`` (a convolution kernel with a ``channels_first``
    attribute may also get NHWC-shaped views of NCHW arrays: :func:`channels_first`),
    ``b`` and ``db`` of shape ``(K,)``, and a
    batch of at least one example. It fills every element of the outputs the wrapper
    allocated (uninitialised), returns None, and never modifies its inputs.

    Parameters
    ----------
    op : str
        One of :data:`OPS`: ``zero_pad``, ``conv_forward``, ``conv_backward``, ``pool_forward``,
        ``pool_backward``, ``relu``, ``relu_backward``, ``sigmoid``, ``sigmoid_backward``.
    backend : str
        The backend's name.
    variant : str, optional
        Register an alternative kernel that only ``auto``'s plans run (``"backend:variant"``).
    applies : callable, optional
        For a variant: ``applies(p)`` says for which calls it is an alternative.

    Returns
    -------
    decorator : callable
        Registers the function it decorates and returns it unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn
    >>> fastnn.register_backend("mine", priority=-10)
    >>> @fastnn.register("relu", "mine")
    ... def relu(x, out):
    ...     np.maximum(x, 0, out=out)
    >>> fastnn.relu(np.array([-1.0, 2.0]), backend="mine")[0]
    array([0., 2.])
    >>> fastnn.unregister_backend("mine")
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; ops are: {', '.join(OPS)}")
    if variant is not None and (not isinstance(variant, str) or not variant or SEP in variant):
        raise ValueError(f"variant must be a non-empty string without {SEP!r}, got {variant!r}")
    if variant is None and applies is not None:
        raise ValueError("applies= is only for a variant: a backend's own kernel runs every call")

    def deco(fn: Callable) -> Callable:
        if _plugin_loading is not None and backend in _protected:
            raise BackendError(f"plugin {_plugin_loading!r} may not add kernels to the backend {backend!r}")
        if backend not in _backends:
            raise BackendError(
                f"backend {backend!r} is not declared; call register_backend({backend!r}) first"
            )
        if variant is None:
            _kernels[op][backend] = fn
            _candidates[op][backend] = fn
        else:
            _variants[op].setdefault(backend, {})[variant] = applies or (lambda p: True)
            _candidates[op][backend + SEP + variant] = fn
        _auto_cache.clear()
        return fn

    return deco


def available_backends(op: Optional[str] = None) -> List[str]:
    """The registered backends' names, highest priority first.

    Parameters
    ----------
    op : str, optional
        Only the backends that implement this op (one of :data:`OPS`, e.g. ``"conv_forward"``).

    Returns
    -------
    names : list of str
        E.g. ``['numba', 'im2col', 'reference']``; ``"auto"`` picks the first that has the op
        when no plan names another.

    Examples
    --------
    >>> import fastnn
    >>> "reference" in fastnn.available_backends("conv_forward")
    True
    """
    names = sorted(_backends.values(), key=lambda b: (-b.priority, b.name))
    if op is None:
        return [b.name for b in names]
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; ops are: {', '.join(OPS)}")
    return [b.name for b in names if b.name in _kernels[op]]


def backend_info() -> List[dict]:
    """What each registered backend is and does.

    Returns
    -------
    info : list of dict
        One dict per backend, highest priority first: ``"name"``, ``"priority"``,
        ``"description"`` and ``"ops"`` (the ops it implements).

    Examples
    --------
    >>> import fastnn
    >>> [b["name"] for b in fastnn.backend_info()] == fastnn.available_backends()
    True
    """
    return [
        {
            "name": name,
            "priority": _backends[name].priority,
            "description": _backends[name].description,
            "ops": [op for op in OPS if name in _kernels[op]],
            "variants": {op: variants(op, name) for op in OPS if variants(op, name)},
        }
        for name in available_backends()
    ]


def _check_name(name: Optional[str], what: str) -> Optional[str]:
    if name is None or name == AUTO:
        return name
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a backend name (str) or None, got {type(name).__name__}")
    if name not in _backends:
        raise BackendError(
            f"unknown backend {name!r}; available backends: "
            f"{', '.join([AUTO] + available_backends())}"
        )
    return name


def set_backend(name: Optional[str]) -> None:
    """Choose the process-wide default backend.

    Parameters
    ----------
    name : str or None
        A name from :func:`available_backends`; ``None`` or ``"auto"`` restores the automatic
        choice. ``backend=`` and ``with use_backend(...)`` still win over it.

    Returns
    -------
    None

    Raises
    ------
    BackendError
        An unknown name (the message lists the backends).

    Examples
    --------
    >>> import fastnn
    >>> fastnn.set_backend("reference")
    >>> fastnn.get_backend()
    'reference'
    >>> fastnn.set_backend(None)
    """
    global _global_choice
    _global_choice = _check_name(name, "set_backend(name)")


def get_backend() -> str:
    """The backend choice in force here: ``use_backend``, else ``set_backend``, else ``$FASTNN_BACKEND``.

    Returns
    -------
    name : str
        A backend name, or ``"auto"`` when nothing was chosen (an unknown ``$FASTNN_BACKEND``
        is ignored with a warning).

    Examples
    --------
    >>> import fastnn
    >>> with fastnn.use_backend("reference"):
    ...     fastnn.get_backend()
    'reference'
    """
    name = _context_choice.get()
    if name is None:
        name = _global_choice
    if name is None:
        name = _env_choice()
    return name


@contextlib.contextmanager
def use_backend(name: Optional[str]) -> Iterator[str]:
    """Run a block on one backend: ``with use_backend("numba"): ...`` (this thread or asyncio task only).

    Parameters
    ----------
    name : str or None
        A name from :func:`available_backends`, or ``None`` / ``"auto"`` for the automatic choice.

    Returns
    -------
    context manager
        Entering it yields the name in force inside the block; leaving it restores the previous choice.

    Raises
    ------
    BackendError
        An unknown name (the message lists the backends).

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn
    >>> with fastnn.use_backend("reference") as name:
    ...     A, cache = fastnn.relu(np.array([-1.0, 2.0]))
    >>> name, A
    ('reference', array([0., 2.]))
    """
    _check_name(name, "use_backend(name)")
    token = _context_choice.set(name if name is not None else AUTO)
    try:
        yield name if name is not None else AUTO
    finally:
        _context_choice.reset(token)


def _auto(op: str) -> str:
    name = _auto_cache.get(op)
    if name is None:
        having = available_backends(op)
        if not having:
            raise BackendError(f"no backend implements op {op!r}")
        name = _auto_cache[op] = having[0]
    return name


def resolve(op: str, backend: Optional[str] = None, p=None) -> Callable:
    """The kernel that runs ``op`` for this call (see the module docstring for the order);
    ``p``, the call's params object, lets ``auto`` consult the planner."""
    if _recorder is not None and p is not None:
        _recorder(op, p)
    pins = _pinned.get()
    if pins is not None and op in pins:
        return _candidates[op][pins[op]]
    name = backend
    if name is None:
        name = _context_choice.get()
        if name is None:
            name = _global_choice
            if name is None:
                name = _env_choice()
    table = _kernels[op]
    fn = table.get(name) if type(name) is str else None
    if fn is not None:
        return fn
    if name == AUTO:
        if p is not None and _planner is not None:
            planned = _planner(op, p)
            if planned is not None:
                fn = _candidates[op].get(planned)
                if fn is not None:
                    return fn
        return table[_auto(op)]
    if not isinstance(name, str):
        raise TypeError(f"backend must be a backend name (str) or None, got {type(name).__name__}")
    having = available_backends(op)
    if name not in _backends:
        raise BackendError(
            f"unknown backend {name!r} for op {op!r}; backends with {op!r}: "
            f"{', '.join([AUTO] + having)}"
        )
    raise BackendError(
        f"backend {name!r} has no kernel for op {op!r}; backends with {op!r}: {', '.join(having)}"
    )


def resolve_name(op: str, backend: Optional[str] = None, p=None) -> str:
    """The candidate :func:`resolve` would pick (``"auto"`` resolved to a concrete name: a
    backend, or ``"backend:variant"``)."""
    fn = resolve(op, backend, p)
    for name, kernel in _candidates[op].items():
        if kernel is fn:
            return name
    raise AssertionError("unreachable")  # pragma: no cover
