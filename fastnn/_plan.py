"""The planner behind ``auto``: the fastest known backend for each call's key.

A *key* is the op, the dtype, every shape and hyper-parameter of the call's params object
(:mod:`fastnn._params`) and fastnn's thread count. A *plan* maps keys to backends; plans are
measured by :func:`tune` and stored in one file per machine in fastnn's cache directory
(``<cache>/plans/plans-<machine>.json``, the machine being the CPU model and features and the
fastnn, Numba and NumPy versions: a plan measured elsewhere, or before an upgrade, is not
used).

What ``auto`` runs for a call (:func:`choose`, asked by :func:`fastnn._dispatch.resolve`):

1. the candidate (a backend, or a backend's variant) the plan names for the call's key, when
   it still exists and applies;
2. with autotuning on (``FASTNN_AUTOTUNE=1`` or :func:`set_autotune`), a key seen for the first
   time is tuned then, within ``AUTOTUNE_BUDGET_S`` seconds of timing, and the plan saved;
3. otherwise the default rule: the registered backend of highest priority that has the op
   (what ``auto`` always ran before plans existed, so a missing plan is never slower).

Tuning a key (:func:`tune_key`): every candidate for the call (each backend that has the op,
the ground truth excluded, and each variant a backend declares for such calls:
:func:`fastnn._dispatch.candidates`) is first checked against the ground truth on a reduced version of the shape (one image, a few
output pixels, all channels) under the one tolerance rule; one that fails is never chosen.
The others are timed in alternating rounds of blocks on seeded inputs of the key's shape (never
the user's arrays), and the median per backend decides, except that the default rule's
choice is kept unless the fastest beat it by ``MARGIN`` in their paired rounds (noise on a
shared host moves single medians by more than the few percent between close candidates), and
then again in fresh rounds of the two alone (``CONFIRM_SHARE`` of the key's budget is kept for
them: a stall of the host that fell on the default's blocks in the race does not make a slower
candidate the plan). A backward op is timed in pairs with
the forward ``auto`` runs for it (training runs them so), which counts what a backend costs the
forward after it. A channels-first convolution's key (``"layout": "NCHW"``) is checked and timed
through the public functions with the candidate pinned (:func:`fastnn._dispatch.pin_candidates`):
what it costs there includes the transposed copies the wrapper makes for a kernel that does not
read NCHW arrays itself, which the kernel's own time would hide. What stays unmeasured: a
BLAS-based choice's effect on *other* ops that follow it (a numba ReLU or pooling right after an
im2col convolution), see ``docs/bench/backend-notes.md``.

Plan files are written atomically (:mod:`fastnn._files`) under an advisory file lock: two
processes tuning at once merge their keys and lose none. A file that cannot be read, does not
parse, has another schema or another machine's key is ignored with one warning.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from . import _cache, _dispatch
from . import _params as P
from ._files import atomic_write

__all__ = ["choose", "tune", "tune_key", "set_autotune", "autotune_enabled", "plan_file", "plans",
           "clear_plans", "explain", "key_of", "table_shapes", "parse_call", "record", "recorded", "save_record",
           "TUNABLE_OPS", "AUTOTUNE_BUDGET_S", "SCHEMA"]

SCHEMA = "fastnn-plans/1"
ENV_AUTOTUNE = "FASTNN_AUTOTUNE"
#: The ops whose backend the planner chooses per key (the others follow the default rule).
TUNABLE_OPS = ("conv_forward", "conv_backward", "pool_forward", "pool_backward")
#: Seconds of timing per key when autotuning a key seen for the first time.
AUTOTUNE_BUDGET_S = 1.0

_lock = threading.RLock()
_plans: Optional[Dict[str, dict]] = None  # key string -> entry, loaded on first use
_memo: Dict[tuple, Optional[str]] = {}  # (op, params, threads) -> backend or None
_autotune = os.environ.get(ENV_AUTOTUNE, "").strip().lower() not in ("", "0", "false", "no", "off")
_warned = False


# ------------------------------------------------------------------------ keys


try:
    from .backends.numba.config import num_threads as _threads  # fastnn's threads per kernel call
except ImportError:  # pragma: no cover - numba is a dependency
    def _threads() -> int:
        return os.cpu_count() or 1


def key_of(op: str, p, threads: Optional[int] = None) -> str:
    """The plan key of a call: ``op|dtype|field=value,...|t<threads>`` (a convolution's layout
    only where it is not the course's NHWC: the keys of NHWC calls read as before it counted)."""
    fields = ",".join(f"{k}={v}" for k, v in p._asdict().items()
                      if k != "dtype" and not (k == "layout" and v == "NHWC"))
    return f"{op}|{np.dtype(p.dtype).name}|{fields}|t{_threads() if threads is None else threads}"


@functools.lru_cache(maxsize=None)
def _machine() -> str:
    import numba
    from llvmlite import binding

    from . import __version__

    return json.dumps({"cpu": binding.get_host_cpu_name(), "features": binding.get_host_cpu_features().flatten(),
                       "processor": platform.processor() or platform.machine(), "fastnn": __version__,
                       "numba": numba.__version__, "numpy": np.__version__}, sort_keys=True)


def machine() -> dict:
    """What a plan is valid for: the CPU (LLVM's name and features) and the versions."""
    return json.loads(_machine())


def plan_file() -> str:
    """This machine's plan file."""
    digest = hashlib.sha256(_machine().encode()).hexdigest()[:16]
    return os.path.join(_cache.cache_dir(), "plans", f"plans-{digest}.json")


# ------------------------------------------------------------------- the file


def _warn_once(msg: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"fastnn: {msg}; ignoring it (auto uses the default rule)", RuntimeWarning, stacklevel=4)


def _read(path: str) -> Dict[str, dict]:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        _warn_once(f"plan file {path} cannot be read ({type(exc).__name__}: {exc})")
        return {}
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("plans"), dict):
        _warn_once(f"plan file {path} is not a {SCHEMA} file")
        return {}
    if data.get("machine") != machine():
        _warn_once(f"plan file {path} was measured on another machine or versions")
        return {}
    return {k: v for k, v in data["plans"].items()
            if isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("backend"), str)}


@contextlib.contextmanager
def _file_lock(path: str):
    """An advisory lock on ``path + '.lock'`` (POSIX ``flock``; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: atomic replace only
        yield
        return
    with open(path + ".lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _save(new: Dict[str, dict]) -> None:
    """Merge ``new`` into this machine's plan file (re-read under the lock: nothing is lost)."""
    global _plans
    path = plan_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with _file_lock(path):
        merged = _read(path)
        merged.update(new)
        data = {"schema": SCHEMA, "machine": machine(), "plans": dict(sorted(merged.items()))}
        atomic_write(path, (json.dumps(data, indent=1) + "\n").encode(), mode=0o644)
    with _lock:
        _plans = merged  # (other processes' keys included)
        _memo.clear()
    _install()


def _loaded() -> Dict[str, dict]:
    global _plans
    if _plans is None:
        with _lock:
            if _plans is None:
                _plans = _read(plan_file())
    return _plans


def plans() -> Dict[str, dict]:
    """This machine's plans: key -> {"backend", "times_s", "rejected", "tuned"} (a copy)."""
    return {k: dict(v) for k, v in _loaded().items()}


def clear_plans() -> None:
    """Forget this machine's plans (the file too)."""
    global _plans
    path = plan_file()
    with _file_lock(path) if os.path.isdir(os.path.dirname(path)) else contextlib.nullcontext():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    with _lock:
        _plans = {}
        _memo.clear()
    _install()


def _reload() -> None:
    """Read the plan file again (after another process wrote it)."""
    global _plans
    with _lock:
        _plans = None
        _memo.clear()
    _install()


# --------------------------------------------------------------------- choosing


def set_autotune(on: bool) -> bool:
    """Tune a key the first time ``auto`` sees it (as PyTorch's ``cudnn.benchmark``).

    Parameters
    ----------
    on : bool
        True: each new key (op, dtype, shapes, hyper-parameters, threads) is timed on its first
        ``auto`` call and the fastest backend stored; False: only stored plans are used.

    Returns
    -------
    previous : bool
        The setting before this call.

    Examples
    --------
    >>> import fastnn
    >>> previous = fastnn.set_autotune(False)
    >>> fastnn.set_autotune(previous)
    False
    """
    global _autotune
    old, _autotune = _autotune, bool(on)
    _memo.clear()
    _install()
    return old


def autotune_enabled() -> bool:
    return _autotune


def choose(op: str, p) -> Optional[str]:
    """The backend the plan names for this call (tuning it first when autotuning), or None:
    the default rule then applies."""
    if op not in TUNABLE_OPS:
        return None
    threads = _threads()
    memo_key = (op, p, threads)
    try:
        return _memo[memo_key]
    except KeyError:
        pass
    entry = _loaded().get(key_of(op, p, threads))
    if entry is None and _autotune:
        entry = tune_key(op, p, budget_s=AUTOTUNE_BUDGET_S, threads=threads)
    if entry is None and _through_wrappers(p):  # (an NCHW key with no plan of its own: its NHWC
        entry = _loaded().get(key_of(op, p._replace(layout="NHWC"), threads))  # twin's, as before)
    name = entry["backend"] if entry is not None else None
    if name is not None and name not in _dispatch.candidates(op, p):
        name = None  # a backend or variant that is gone, lost the op, or does not apply
    _memo[memo_key] = name
    return name


def explain(op: str, p) -> str:
    """Which backend ``auto`` runs for this call, and why."""
    default = _dispatch.available_backends(op)[0]
    if op not in TUNABLE_OPS:
        return f"{op}: {default} (default rule: highest priority; {op} is not tuned)"
    key = key_of(op, p)
    entry = _loaded().get(key)
    ref = _dispatch.ground_truth_backend()
    cands = [c for c in _dispatch.candidates(op, p) if c.split(_dispatch.SEP)[0] != ref]
    if entry is None:
        how = ("autotuning will time the candidates on first use" if _autotune
               else "no plan for this key: `fastnn tune --call SPEC` times the candidates")
        return f"{op}: {default} (default rule: highest priority; {how})\n  key {key}\n  candidates {', '.join(cands)}"
    times = ", ".join(f"{b} {t * 1e3:.3f} ms" for b, t in sorted(entry.get("times_s", {}).items(), key=lambda x: x[1]))
    rejected = entry.get("rejected") or {}
    lines = [f"{op}: {entry['backend']} (plan, tuned {entry.get('tuned', '?')}: median {times})", f"  key {key}"]
    if "timed_with" in entry:
        lines.append(f"  timed in pairs with {entry['timed_with']}")
    if "kept_default" in entry:
        lines.append(f"  kept the default rule's choice: {entry['kept_default']}")
    if "confirmed" in entry:
        lines.append(f"  confirmed against the default rule's choice: {entry['confirmed']}")
    lines += [f"  rejected {b}: {why}" for b, why in rejected.items()]
    return "\n".join(lines)


def _install() -> None:
    """Let ``auto`` ask the planner only when there is something to ask (no cost otherwise)."""
    active = _autotune or bool(_plans) or (_plans is None and os.path.exists(plan_file()))
    _dispatch.set_planner(choose if active else None)


# ----------------------------------------------------------------------- tuning


def _inputs(op: str, p, seed: int = 0) -> tuple:
    """Seeded arrays for ``op``'s kernel at ``p`` (inputs, then allocated outputs)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(p.dtype)

    def arr(*shape):
        return rng.standard_normal(shape).astype(dt)

    if op in ("conv_forward", "conv_backward"):
        a, w, z = P.conv_shapes(p)
        if op == "conv_forward":
            return (arr(*a), arr(*w), arr(p.K)), (np.empty(z, dt),)
        return (arr(*a), arr(*w), arr(*z)), (np.empty(a, dt), np.empty(w, dt), np.empty(p.K, dt))
    if op == "pool_forward":
        return (arr(p.m, p.H, p.W, p.C),), (np.empty((p.m, p.Ho, p.Wo, p.C), dt),)
    if op == "pool_backward":
        return (arr(p.m, p.H, p.W, p.C), arr(p.m, p.Ho, p.Wo, p.C)), (np.empty((p.m, p.H, p.W, p.C), dt),)
    raise ValueError(f"op {op!r} is not tunable; tunable ops: {', '.join(TUNABLE_OPS)}")


def _nchw_inputs(p, seed: int = 0) -> tuple:
    """Seeded channels-first (A_prev, W, b, dZ, hparameters) of an NCHW convolution's key."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(p.dtype)

    def arr(*shape):
        return rng.standard_normal(shape).astype(dt)

    hp = dict(P.conv_hparameters(p), layout="NCHW")
    return arr(p.m, p.C, p.H, p.W), arr(p.K, p.C // p.G, p.fh, p.fw), arr(p.K), arr(p.m, p.K, p.Ho, p.Wo), hp


def _wrapped_call(op: str, p, pins: Dict[str, str], ins: tuple) -> callable:
    """A call of the public function for ``op`` on ``ins`` (:func:`_nchw_inputs`), with ``pins``
    deciding the kernels; it returns the op's outputs."""
    from . import conv

    A, W, b, dZ, hp = ins

    def call():
        token = _tuning.set(True)  # (not recorded: :func:`record`)
        try:
            with _dispatch.pin_candidates(pins):
                if op == "conv_forward":
                    return conv.conv_forward(A, W, b, hp)[:1]
                if "conv_forward" in pins:  # (timed in pairs, as a training step runs them)
                    conv.conv_forward(A, W, b, hp)
                return conv.conv_backward(dZ, (A, W, b, hp))
        finally:
            _tuning.reset(token)

    return call


def _through_wrappers(p) -> bool:
    """Whether a key is checked and timed through the public functions (see the module docstring)."""
    return getattr(p, "layout", "NHWC") != "NHWC"


def _reduced(p, m: int = 1, rows: int = 3):
    """``p`` for ``m`` images (at most p's) and at most ``rows`` x 9 output pixels (all
    channels, the same window and options: every tile of up to 8 pixels a variant runs still
    fits a row where it fits the full shape)."""
    conv = isinstance(p, P.ConvParams)
    dh, dw = (p.dh, p.dw) if conv else (1, 1)

    def dim(n, f, s, pads, n_out):  # n_out outputs need f + (n_out - 1) s input rows with the padding
        return max(1, min(n, f + (n_out - 1) * s - pads))

    H = dim(p.H, (p.fh - 1) * dh + 1, p.sh, p.ph + p.pb, rows)
    W = dim(p.W, (p.fw - 1) * dw + 1, p.sw, p.pw + p.pr, 9)
    shape = (min(m, p.m), H, W, p.C)
    if conv:
        return P.conv_params(_zeros(shape, p.dtype), _zeros(P.conv_shapes(p)[1], p.dtype), _zeros((p.K,), p.dtype),
                             P.conv_hparameters(p))._replace(layout=p.layout)
    return P.pool_params(_zeros(shape, p.dtype), P.pool_hparameters(p), p.mode, p.ties)


def _check(op: str, p, name: str) -> Optional[str]:
    """None when backend ``name`` matches the ground truth on the reduced shape, else why not."""
    from .testing.tolerance import mismatch

    q = _reduced(p)
    wrapped = _through_wrappers(q)
    if wrapped:  # (the public functions on NCHW arrays: what such a key runs)
        # Whether a kernel reads NCHW arrays itself may depend on the call's size (numba's
        # small calls take copies): the reduced call grows, images first, then rows, until the
        # candidate takes the path it takes on the full call.
        kernel, grow = _dispatch.kernel_of(op, name), 1
        want = _dispatch.channels_first(kernel, p)
        while _dispatch.channels_first(kernel, q) != want and (q.m < p.m or q.Ho < p.Ho):
            grow *= 2
            q = _reduced(p, m=grow, rows=3 if grow <= p.m else 3 * grow // max(p.m, 1))
        nchw = _nchw_inputs(q, seed=1)

        def run(n):
            return _wrapped_call(op, q, {op: n}, nchw)()
    else:
        ins, like = _inputs(op, q, seed=1)

        def run(n):
            got = tuple(np.empty_like(o) for o in like)
            _dispatch.kernel_of(op, n)(q, *ins, *got)
            return got

    ref_outs = run(_dispatch.ground_truth_backend())
    try:
        outs = run(name)
    except Exception as exc:  # noqa: BLE001 - a candidate that fails is rejected, not fatal
        return f"raised {type(exc).__name__}: {exc}"
    for o, r in zip(outs, ref_outs):
        why = mismatch(o, r, q.dtype, f"{op} on {name}" + (" (NCHW arrays)" if wrapped else ""))
        if why:
            return why
    return None


#: After switching to a candidate, untimed calls run for at least this long before its timed
#: calls: a BLAS-based candidate's idle OpenBLAS workers keep spinning for a while after its
#: last GEMM and slow the next candidate's kernels (``docs/bench/backend-notes.md``); timed
#: back to back, the candidate after a GEMM one looks up to 2x slower than it runs in a loop.
SETTLE_S = 0.15
#: Timed calls per candidate per round (their median is the round's time).
BLOCK = 3


def timed_block(fn, n: int = BLOCK, settle_s: float = SETTLE_S) -> float:
    """Median seconds of ``n`` calls of ``fn``, after untimed calls for ``settle_s`` (at least one)."""
    t_switch = time.perf_counter()
    fn()
    while time.perf_counter() - t_switch < settle_s:
        fn()
    block = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        block.append(time.perf_counter() - t0)
    return statistics.median(block)


#: After two rounds, a candidate slower than this times the best so far is timed no more
#: (its median stays in the plan entry): most variants lose clearly, and dropping them
#: keeps a key's tuning near its budget.
PRUNE = 1.3
#: The settle time is cut to fit the budget (``budget_s / (4 * candidates)``), never below this.
MIN_SETTLE_S = 0.04


def _time(calls: Dict[str, callable], budget_s: float, min_rounds: int = 3, max_rounds: int = 25,
          rounds_out: Optional[Dict[str, List[float]]] = None) -> Dict[str, float]:
    """Median seconds per call of each candidate, timed in rounds of one :func:`timed_block`
    per candidate, the order reversed every other round, until ``budget_s`` is spent (at least
    ``min_rounds`` for the candidates still in the race): the median over rounds.

    To stay near the budget: one call of each candidate (after one untimed) estimates its time; one slower
    than twice the best estimate is not timed further (its estimate stays in the result); the
    calls per block shrink (down to one) and the settle time too (``MIN_SETTLE_S``) when the
    rounds would not fit; from the second round on, a candidate slower than ``PRUNE`` times the
    best median is dropped. A key whose single calls take longer than the budget takes about
    ``min_rounds`` x 2 calls of each candidate left. ``rounds_out``, a dict, receives each
    timed candidate's per-round times (round ``r`` of two candidates timed side by side)."""
    est = {}
    for n, fn in calls.items():
        fn()  # warm-up: a kernel the reduced check did not run compiles here
        t0 = time.perf_counter()
        fn()
        est[n] = time.perf_counter() - t0
    best_est = min(est.values())
    names = [n for n in calls if est[n] <= 2 * best_est or len(calls) <= 2]
    times: Dict[str, List[float]] = {n: [] for n in names}
    per_round = sum(est[n] for n in names)
    n_calls = max(1, min(BLOCK, int(budget_s / (min_rounds * max(per_round, 1e-9))) - 1))
    settle = max(MIN_SETTLE_S, min(SETTLE_S, budget_s / (4 * max(1, len(names)))))
    start = time.perf_counter()
    for r in range(max_rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            times[n].append(timed_block(calls[n], n=n_calls, settle_s=settle))
        if r >= 1 and len(names) > 2:
            best = min(statistics.median(times[n]) for n in names)
            names = [n for n in names if statistics.median(times[n]) <= PRUNE * best] or names
        if r + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break
    out = {n: est[n] for n in calls if n not in times}
    out.update({n: statistics.median(v) for n, v in times.items()})
    if rounds_out is not None:
        rounds_out.update(times)
    return out


#: A candidate replaces the default rule's choice only when it took at most this fraction of
#: the default's time (the median of their per-round ratios) and won most of the rounds
#: they were timed side by side in: on a noisy host a candidate a few percent faster by its
#: median alone is as often a fluctuation as a win, and the default is never slower than
#: what ``auto`` ran before plans existed.
MARGIN = 0.97
#: The share of a key's budget kept for confirming a winner (:func:`_confirm`).
CONFIRM_SHARE = 0.25


def _paired(rounds: Dict[str, List[float]], a: str, b: str) -> Tuple[float, int, int]:
    """``a``'s time over ``b``'s in the rounds they were timed side by side in: the median of
    the per-round ratios, the rounds ``a`` won, and how many rounds."""
    ra, rb = rounds.get(a, []), rounds.get(b, [])
    n = min(len(ra), len(rb))
    ratios = [ra[i] / rb[i] for i in range(n)]
    return (statistics.median(ratios) if n else 1.0), sum(r < 1.0 for r in ratios), n


def _pick(times: Dict[str, float], rounds: Dict[str, List[float]], default: str) -> Tuple[str, Optional[str]]:
    """The candidate to store, and why the default was kept (None when it was not): the
    fastest by median unless ``default`` was timed beside it and the fastest did not beat it
    by :data:`MARGIN` in their paired rounds."""
    best = min(times, key=times.__getitem__)
    if best == default or default not in rounds or best not in rounds:
        return best, None
    ratio, won, n = _paired(rounds, best, default)
    if n and ratio <= MARGIN and 2 * won > n:
        return best, None
    return default, (f"{best} took {ratio:.3f}x {default}'s time over {n} paired rounds "
                     f"(a plan needs <= {MARGIN} and most rounds won)")


def _confirm(calls: Dict[str, callable], best: str, default: str, budget_s: float) -> Tuple[str, str]:
    """A winner over the default rule's choice timed against it again, the two alone, in fresh
    rounds within ``budget_s``: it stays the choice only if it wins these by :data:`MARGIN`
    too. The race's rounds give each candidate a short block every round, and a stall of this
    host (seconds long, often on one core) that fell on the default's blocks made a slower
    variant the plan (session 14: a pointwise layer's p8t32 at half the GEMM rate). The
    rounds are the last ``CONFIRM_SHARE`` of the key's budget, which the race leaves unspent.
    Returns the choice and what the fresh rounds showed."""
    rounds: Dict[str, List[float]] = {}
    times = _time({best: calls[best], default: calls[default]}, budget_s, rounds_out=rounds)
    again, kept = _pick(times, rounds, default)
    if again == best:
        ratio, won, n = _paired(rounds, best, default)
        return best, f"{best} took {ratio:.3f}x {default}'s time over {n} fresh paired rounds ({won} won)"
    return default, (kept or f"{default} was the faster in fresh rounds") + ", timed again after the race"


#: A backward op is timed in pairs with its forward, as training runs them: a backward on a
#: BLAS (im2col) backend leaves OpenBLAS's workers spinning and slows the numba forward that
#: follows, a cost that timing the backward alone would hide.
_FORWARD_OF = {"conv_backward": "conv_forward", "pool_backward": "pool_forward"}


def _forward_backend(op: str, p, threads) -> str:
    """The backend ``auto`` runs the forward of backward ``op`` on (tuning it first if needed)."""
    fwd = _FORWARD_OF[op]
    q = p._replace(ties="all") if isinstance(p, P.PoolParams) else p
    entry = _loaded().get(key_of(fwd, q, threads))
    if entry is None:
        entry = tune_key(fwd, q, budget_s=AUTOTUNE_BUDGET_S, threads=threads)
    name = entry["backend"] if entry is not None else None
    return name if name in _dispatch.candidates(fwd, q) else _dispatch.available_backends(fwd)[0]


def _candidate_calls(op: str, p, candidates, threads) -> Dict[str, callable]:
    """One call per candidate on seeded inputs; a backward op with its forward first."""
    if _through_wrappers(p):
        ins = _nchw_inputs(p)
        fwd = {} if op not in _FORWARD_OF else {_FORWARD_OF[op]: _forward_backend(op, p, threads)}
        return {n: _wrapped_call(op, p, {**fwd, op: n}, ins) for n in candidates}
    ins, outs = _inputs(op, p)
    if op not in _FORWARD_OF:
        return {n: (lambda k=_dispatch.kernel_of(op, n): k(p, *ins, *outs)) for n in candidates}
    fwd_op = _FORWARD_OF[op]
    fwd = _dispatch.kernel_of(fwd_op, _forward_backend(op, p, threads))
    q = p._replace(ties="all") if isinstance(p, P.PoolParams) else p
    fwd_ins, fwd_outs = _inputs(fwd_op, q)

    def pair(k):
        def call():
            fwd(q, *fwd_ins, *fwd_outs)
            k(p, *ins, *outs)
        return call

    return {n: pair(_dispatch.kernel_of(op, n)) for n in candidates}


def tune_key(op: str, p, *, budget_s: float = 2.0, threads: Optional[int] = None, save: bool = True) -> Optional[dict]:
    """Measure every candidate backend for this key and store the fastest (see the module
    docstring). Returns the plan entry, or None when no candidate passed the check."""
    t_start = time.perf_counter()
    ref = _dispatch.ground_truth_backend()
    candidates = [c for c in _dispatch.candidates(op, p) if c.split(_dispatch.SEP)[0] != ref]
    rejected = {}
    for name in list(candidates):
        why = _check(op, p, name)
        if why is not None:
            rejected[name] = why
            candidates.remove(name)
    if not candidates:
        entry = None
    else:
        calls = _candidate_calls(op, p, candidates, threads)
        rounds: Dict[str, List[float]] = {}
        default = _dispatch.available_backends(op)[0]
        confirm_s = CONFIRM_SHARE * budget_s if default in calls else 0.0
        times = _time(calls, budget_s - confirm_s, rounds_out=rounds) if len(calls) > 1 else {}  # (one: nothing to time)
        best, kept = _pick(times, rounds, default) if times else (candidates[0], None)
        confirmed = None
        if times and best != default and confirm_s:
            choice, why = _confirm(calls, best, default, confirm_s)
            if choice == best:
                confirmed = why
            else:
                best, kept = default, why
        entry = {"backend": best, "times_s": times, "rejected": rejected,
                 "tuned": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if kept is not None:
            entry["kept_default"] = kept
        if confirmed is not None:
            entry["confirmed"] = confirmed
        if op in _FORWARD_OF:
            entry["timed_with"] = f"{_FORWARD_OF[op]} on {_forward_backend(op, p, threads)}"
        entry["tuning_s"] = round(time.perf_counter() - t_start, 3)  # checks and timing, this key only
    if entry is not None and save:
        _save({key_of(op, p, threads): entry})
    return entry


def table_shapes() -> List[str]:
    """Names of the built-in table's shapes (convolutions and poolings)."""
    from .testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES

    return sorted(set(BENCH_CONV_SHAPES) | set(BENCH_POOL_SHAPES))


def _lowered_calls(A, W, b, hp, dZ) -> List[Tuple[str, object]]:
    """The (op, params) of the course calls a convolution beyond the course's runs as, where the
    default rule's backend does not compute it itself (fastnn._lower), recorded from one run."""
    from .conv import conv_backward, conv_forward

    backend = _dispatch.available_backends("conv_forward")[0]
    with record() as calls:
        _, cache = conv_forward(A, W, b, hp, backend=backend)
        conv_backward(dZ, cache, backend=backend)
    return [(op, q) for op, q in calls if q.core]


def _table_params(dtypes, ops, shapes=None) -> List[Tuple[str, object]]:
    """(op, params) of the built-in benchmark table."""
    from .testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES

    out = []
    for dt in dtypes:
        for name, case in BENCH_CONV_SHAPES.items():
            if shapes and name not in shapes:
                continue
            A, W, b, hp, dZ = case.make(dt, seed=0)
            p = P.conv_params(A, W, b, hp)
            out += [(op, p) for op in ("conv_forward", "conv_backward") if op in ops]
            if not p.core:  # and the course calls fastnn._lower may run it as (recorded from one run)
                out += [k for k in _lowered_calls(A, W, b, hp, dZ) if k[0] in ops and k not in out]
        for name, case in BENCH_POOL_SHAPES.items():
            if shapes and name not in shapes:
                continue
            A, hp, _ = case.make(dt, seed=0)
            for m in ("max", "average"):
                p = P.pool_params(A, hp, m)
                out += [(op, p) for op in ("pool_forward", "pool_backward") if op in ops]
    return out


def tune(calls: Optional[Iterable[Tuple[str, object]]] = None, *, ops: Iterable[str] = TUNABLE_OPS,
         dtypes: Iterable = (np.float32, np.float64), shapes: Optional[Iterable[str]] = None,
         budget_s: float = 2.0, progress=None) -> Dict[str, dict]:
    """Time every candidate backend per key and store the fastest as the plan ``auto`` follows.

    Parameters
    ----------
    calls : iterable of (str, params), optional
        Pairs of op and params object to tune; default the built-in benchmark table.
    ops : iterable of str, optional
        The table's ops to tune (default all tunable ops).
    dtypes : iterable of dtype, optional
        The table's dtypes (default float32 and float64).
    shapes : iterable of str, optional
        The table's shape names (default all).
    budget_s : float, optional
        Seconds of timing per key (default 2).
    progress : callable, optional
        Called as tuning proceeds (what ``fastnn tune`` shows).

    Returns
    -------
    plans : dict of str to dict
        The stored plan entry of each key tuned (``"backend"``, ``"times_s"``, ``"rejected"``, ...).

    Examples
    --------
    >>> import fastnn
    >>> plans = fastnn.tune(ops=["pool_forward"], dtypes=["float64"], shapes=["seed"], budget_s=0.1)  # doctest: +SKIP
    """
    ops = tuple(ops)
    bad = [o for o in ops if o not in TUNABLE_OPS]
    if bad:
        raise ValueError(f"ops must be among {', '.join(TUNABLE_OPS)}, got {bad[0]!r}")
    todo = list(calls) if calls is not None else _table_params(tuple(np.dtype(d) for d in dtypes), ops,
                                                              set(shapes) if shapes else None)
    unique = {}  # one timing per key: calls of the same key (a layer and a lowered call that
    for op, p in todo:  # is the same course call) would be tuned twice, the later run overwriting
        unique.setdefault(key_of(op, p), (op, p))
    todo = list(unique.values())
    found = {}
    for i, (op, p) in enumerate(todo):
        entry = tune_key(op, p, budget_s=budget_s)
        if entry is not None:
            found[key_of(op, p)] = entry
        if progress is not None:
            progress(i + 1, len(todo), op, p, entry)
    _install()
    return found


# ------------------------------------------------------------- calls by name


_SPEC_OPS = {"conv": ("conv_forward", "conv_backward"), "conv_forward": ("conv_forward",),
             "conv_backward": ("conv_backward",), "pool": ("pool_forward", "pool_backward"),
             "pool_forward": ("pool_forward",), "pool_backward": ("pool_backward",)}
_SPEC_KEYS = {"conv": ("m", "h", "w", "c", "f", "k", "stride", "pad", "dtype", "layout"),
              "pool": ("m", "h", "w", "c", "f", "stride", "pad", "mode", "ties", "dtype")}
SPEC_HELP = ("conv,m=8,h=14,w=14,c=256,f=3,k=256,stride=1,pad=1,dtype=float32 or "
             "pool,m=8,h=14,w=14,c=96,f=2,stride=2,mode=max,dtype=float64 (f, stride, pad: N or NxM; "
             "conv's layout: NHWC, the default, or NCHW; "
             "op: conv, conv_forward, conv_backward, pool, pool_forward, pool_backward)")


def _zeros(shape, dtype):
    """A read-only zero array of ``shape`` that allocates nothing (for params only)."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def parse_call(spec: str) -> List[Tuple[str, object]]:
    """The (op, params) pairs a call spec names (``SPEC_HELP``), validated as the public
    functions validate their arguments."""
    parts = [t.strip() for t in str(spec).split(",") if t.strip()]
    if not parts or parts[0] not in _SPEC_OPS:
        raise ValueError(f"a call spec starts with one of {', '.join(_SPEC_OPS)}, got {spec!r}; e.g. {SPEC_HELP}")
    ops = _SPEC_OPS[parts[0]]
    family = "conv" if ops[0].startswith("conv") else "pool"
    vals = {}
    for t in parts[1:]:
        k, eq, v = t.partition("=")
        k = k.strip().lower()
        if not eq or k not in _SPEC_KEYS[family]:
            raise ValueError(f"in call spec {spec!r}: {t!r} is not key=value with a key among "
                             f"{', '.join(_SPEC_KEYS[family])}")
        vals[k] = v.strip()
    missing = [k for k in ("m", "h", "w", "c", "f") + (("k",) if family == "conv" else ()) if k not in vals]
    if missing:
        raise ValueError(f"call spec {spec!r} lacks {', '.join(missing)}; e.g. {SPEC_HELP}")

    def num(k, default=None):
        v = vals.get(k, default)
        try:
            n = tuple(int(x) for x in str(v).lower().split("x"))
        except ValueError:
            raise ValueError(f"in call spec {spec!r}: {k}={v!r} is not an integer or NxM") from None
        if len(n) not in (1, 2):
            raise ValueError(f"in call spec {spec!r}: {k}={v!r} is not an integer or NxM")
        return n[0] if len(n) == 1 else n

    try:
        dt = np.dtype(vals.get("dtype", "float64"))
    except TypeError:
        raise ValueError(f"in call spec {spec!r}: dtype={vals['dtype']!r} is not a dtype") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"in call spec {spec!r}: dtype must be float32 or float64, got {dt.name}")
    m, H, W, C = (num(k) for k in ("m", "h", "w", "c"))
    if any(not isinstance(x, int) for x in (m, H, W, C)):
        raise ValueError(f"in call spec {spec!r}: m, h, w and c are single integers")
    f = num("f")
    fh, fw = (f, f) if isinstance(f, int) else f
    A = _zeros((m, H, W, C), dt)
    if family == "conv":
        K = num("k")
        p = P.conv_params(A, _zeros((fh, fw, C, K), dt), _zeros((1, 1, 1, K), dt),
                          {"stride": num("stride", 1), "pad": num("pad", 0)})
        layout = vals.get("layout", "NHWC")
        if layout not in P.LAYOUTS:
            raise ValueError(f"in call spec {spec!r}: layout must be one of {', '.join(P.LAYOUTS)}, "
                             f"got {vals['layout']!r}")
        return [(op, p._replace(layout=layout)) for op in ops]
    hp = {"f": f, "stride": num("stride", 1)}
    if "pad" in vals:
        hp["pad"] = num("pad")
    p = P.pool_params(A, hp, vals.get("mode", "max"), vals.get("ties", "all"))
    return [(op, p) for op in ops]


def params_dict(p) -> dict:
    """``p`` as JSON-able fields (the dtype by name; a convolution's layout only where it is
    NCHW, so that an NHWC call's record reads as before the layout counted)."""
    d = p._asdict()
    d["dtype"] = np.dtype(d["dtype"]).name
    if d.get("layout") == "NHWC":
        del d["layout"]
    return d


def params_from_dict(op: str, d: dict):
    """The params object of a recorded call, rebuilt through the validating builders (a
    field that does not match what they derive is an error)."""
    if op not in TUNABLE_OPS:
        raise ValueError(f"op {op!r} is not tunable; tunable ops: {', '.join(TUNABLE_OPS)}")
    dt = np.dtype(d["dtype"])
    A = _zeros((d["m"], d["H"], d["W"], d["C"]), dt)
    pads = ((d["ph"], d.get("pb", d["ph"])), (d["pw"], d.get("pr", d["pw"])))
    hp = {"stride": (d["sh"], d["sw"]), "pad": pads}
    if op.startswith("conv"):
        G = d.get("G", 1)
        hp.update(dilation=(d.get("dh", 1), d.get("dw", 1)), groups=G)
        p = P.conv_params(A, _zeros((d["fh"], d["fw"], d["C"] // G if G else 0, d["K"]), dt),
                          _zeros((1, 1, 1, d["K"]), dt), hp)
        if "layout" in d:  # (absent: NHWC; a record from before the layout counted holds NCHW calls so too)
            if d["layout"] not in P.LAYOUTS:
                raise ValueError(f"recorded params {d}: layout must be one of {', '.join(P.LAYOUTS)}")
            p = p._replace(layout=d["layout"])
    else:
        hp["f"] = (d["fh"], d["fw"])
        floor_hw = tuple(P.conv_out_size(n, f, a, s, 1, b) for n, f, s, (a, b) in
                         ((d["H"], d["fh"], d["sh"], pads[0]), (d["W"], d["fw"], d["sw"], pads[1])))
        if (d["Ho"], d["Wo"]) != floor_hw:
            hp["ceil_mode"] = True
        if d.get("divisor") == "valid":
            hp["count_include_pad"] = False
        p = P.pool_params(A, hp, d["mode"], d["ties"])
    full = params_dict(p)
    if set(d) - set(full) or any(full[k] != d[k] for k in d):
        raise ValueError(f"recorded params {d} do not match what fastnn derives for them")
    return p


# ------------------------------------------------------------------ recording

ENV_RECORD = "FASTNN_RECORD"
RECORD_SCHEMA = "fastnn-record/1"
_recording: Dict[Tuple[str, object], int] = {}  # (op, params) -> calls, while recording
_record_depth = 0
# True while this thread or task runs the tuner's calls of the public functions (not recorded)
_tuning: contextvars.ContextVar[bool] = contextvars.ContextVar("fastnn_tuning", default=False)


def _record_call(op: str, p) -> None:
    if op in TUNABLE_OPS and not _tuning.get():
        k = (op, p)
        _recording[k] = _recording.get(k, 0) + 1  # (a lost count under a thread race is harmless)


def _start_recording() -> None:
    global _record_depth
    with _lock:
        _record_depth += 1
        _dispatch.set_recorder(_record_call)


def _stop_recording() -> None:
    global _record_depth
    with _lock:
        _record_depth -= 1
        if _record_depth <= 0:
            _record_depth = 0
            _dispatch.set_recorder(None)


def recorded(path: str) -> List[Tuple[str, object]]:
    """The calls a record file holds (what :func:`record` wrote), most called first.

    Parameters
    ----------
    path : str
        The record file.

    Returns
    -------
    calls : list of (str, params)
        Pairs of op and params object, as :func:`tune` takes them.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A file that is not a record file.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import fastnn
    >>> path = os.path.join(tempfile.mkdtemp(), "calls.json")
    >>> with fastnn.record(path):
    ...     A, cache = fastnn.pool_forward(np.ones((1, 4, 4, 1)), {"f": 2, "stride": 2})
    >>> [op for op, p in fastnn.recorded(path)]
    ['pool_forward']
    """
    return [(op, p) for op, p, _ in _read_record(path, strict=True)]


def _read_record(path: str, strict: bool = False):
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode())
        if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA or not isinstance(data.get("calls"), list):
            raise ValueError(f"not a {RECORD_SCHEMA} file")
        out = [(c["op"], params_from_dict(c["op"], c["params"]), int(c["count"])) for c in data["calls"]]
    except FileNotFoundError:
        if strict:
            raise
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if strict:
            raise ValueError(f"record file {path} cannot be read: {type(exc).__name__}: {exc}") from None
        warnings.warn(f"fastnn: record file {path} cannot be read ({exc}); starting a new one", RuntimeWarning,
                      stacklevel=3)
        return []
    return sorted(out, key=lambda c: -c[2])


def save_record(path: str, calls: Optional[Dict[Tuple[str, object], int]] = None) -> int:
    """Merge ``calls`` (default: what was recorded so far) into the record file ``path``
    (counts add up; atomic, under a file lock). Returns the number of distinct calls in it."""
    calls = dict(_recording if calls is None else calls)
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with _file_lock(path):
        merged = {(op, p): n for op, p, n in _read_record(path)}
        for k, n in calls.items():
            merged[k] = merged.get(k, 0) + n
        rows = [{"op": op, "params": params_dict(p), "count": n}
                for (op, p), n in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0][0], str(kv[0][1])))]
        atomic_write(path, (json.dumps({"schema": RECORD_SCHEMA, "calls": rows}, indent=1) + "\n").encode(),
                     mode=0o644)
    return len(rows)


@contextlib.contextmanager
def record(path: Optional[str] = None):
    """Record the shapes of the convolutions and poolings run inside a ``with`` block, to tune them later.

    Parameters
    ----------
    path : str, optional
        A record file: the block's calls are merged into it when the block ends (for
        ``fastnn.tune(fastnn.recorded(path))`` or ``fastnn tune --record path``).
        ``FASTNN_RECORD=path`` records a whole program instead (written at exit).

    Returns
    -------
    context manager
        Entering it yields a dict, filled when the block ends, mapping each (op, params) run
        inside (every backend, the planner's key fields) to its call count.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn
    >>> with fastnn.record() as calls:
    ...     A, cache = fastnn.pool_forward(np.ones((1, 4, 4, 1)), {"f": 2, "stride": 2})
    >>> [(op, n) for (op, p), n in calls.items()]
    [('pool_forward', 1)]
    """
    _start_recording()
    before = dict(_recording)
    mine: Dict[Tuple[str, object], int] = {}
    try:
        yield mine
    finally:
        _stop_recording()
        for k, n in _recording.items():
            if n - before.get(k, 0) > 0:
                mine[k] = n - before.get(k, 0)
        if path is not None:
            save_record(path, mine)


def _record_from_env() -> None:
    path = os.environ.get(ENV_RECORD, "").strip()
    if not path:
        return
    import atexit

    _start_recording()

    def write():
        try:
            n = save_record(path)
        except OSError as exc:
            print(f"fastnn: could not write the record {path} ({exc})", file=sys.stderr)
        else:
            print(f"fastnn: recorded {len(_recording)} distinct calls in {path} ({n} in all); "
                  f"`fastnn tune --record {path}` tunes them", file=sys.stderr)

    atexit.register(write)


_record_from_env()
