"""``fastnn info``: backends, versions, thread counts and the kernel cache."""

from __future__ import annotations

import json
import os
import platform
import sys
import warnings

HELP = "print the registered backends, library versions, thread counts and the kernel cache"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.add_argument("--explain", action="append", metavar="SPEC", default=[],
                        help="show which kernel auto runs for this call and why (repeatable), e.g. "
                             "conv,m=8,h=14,w=14,c=256,f=3,k=256,stride=1,pad=1,dtype=float32")


def installed_version(dist: str):
    """The installed version of the distribution ``dist`` from its metadata (without importing it), or None."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def collect() -> dict:
    import numpy as np

    import fastnn
    from fastnn._dispatch import env_problem
    from fastnn import _plugins
    from fastnn.backends import UNAVAILABLE

    with warnings.catch_warnings():  # an unknown $FASTNN_BACKEND: shown as backend_env_problem instead
        warnings.simplefilter("ignore", RuntimeWarning)
        in_force = fastnn.get_backend()
    info = {
        "fastnn": fastnn.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "backend_in_force": in_force,
        "backend_env_problem": env_problem(),  # an unknown $FASTNN_BACKEND, or None
        "backends": fastnn.backend_info(),
        "unavailable_backends": dict(UNAVAILABLE),
        "plugins": {k: dict(v) for k, v in _plugins.PLUGINS.items()},
        "plugins_disabled": _plugins.disabled(),
    }
    try:
        import numba

        from ..backends.numba.config import num_threads
        from ..backends.numba.threads import poll_us

        info["numba"] = numba.__version__
        info["numba_threads"] = num_threads()  # fastnn's threads per numba kernel call
        # how long its threads poll before they block (0: never; not on CPUs other than x86-64,
        # nor with a single usable CPU)
        try:
            info["numba_spin_us"] = poll_us()
        except ValueError as exc:  # (a bad FASTNN_SPIN_US: shown, as the first threaded call would raise it)
            info["numba_spin_us"] = f"invalid: {exc}"
        from .._jit import SLP_VECTORIZE

        info["numba_slp"] = SLP_VECTORIZE
    except ImportError:  # pragma: no cover - numba is a dependency
        info["numba"] = None
    info["h5py"] = installed_version("h5py")
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
            for d in threadpool_info()
        ]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    info["dask"] = installed_version("dask")  # the fastnn[dask] extra (fastnn.dask, train --dask); not imported
    info["torch"] = installed_version("torch")  # read from its metadata: importing torch takes seconds
    torch = sys.modules.get("torch")
    if torch is not None:  # its thread count only where something imported it already
        info["torch_threads"] = torch.get_num_threads()
    from .. import _plan
    from .._cache import describe

    info["cache"] = describe()
    stored = _plan.plans()
    took = sorted(e["tuning_s"] for e in stored.values() if "tuning_s" in e)
    info["plans"] = {"file": _plan.plan_file(), "keys": len(stored), "autotune": _plan.autotune_enabled(),
                     "autotune_budget_s": _plan.AUTOTUNE_BUDGET_S,
                     "tuning_s_per_key": ({"median": took[len(took) // 2], "max": took[-1], "total": sum(took)}
                                          if took else None)}
    return info


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


def _explain(specs) -> int:
    from .. import _plan

    try:
        calls = [c for spec in specs for c in _plan.parse_call(spec)]
    except ValueError as exc:
        print(f"fastnn info: error: --explain: {exc}", file=sys.stderr)
        return 2
    for op, p in calls:
        print(_plan.explain(op, p))
    return 0


def run(args) -> int:
    if args.explain:
        return _explain(args.explain)
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"fastnn {info['fastnn']}  (python {info['python']}, {info['platform']}, {info['cpu_count']} CPUs)")
    for k in ("numpy", "numba", "h5py", "torch"):
        print(f"  {k:<8} {info.get(k) or 'not installed'}")
    print(f"  dask     {info['dask'] or 'not installed'} (fastnn.dask, `fastnn train --dask`: pip install 'fastnn[dask]')")
    if "numba_threads" in info:
        spin = info["numba_spin_us"]
        spin = f"poll {spin} us before blocking" if isinstance(spin, int) else spin
        print(f"  numba backend threads: {info['numba_threads']} (FASTNN_NUM_THREADS or Numba's setting); "
              f"{spin} (FASTNN_SPIN_US)")
    cache = info["cache"]
    print(f"  cache    {cache['dir']} ({_size(cache['bytes'])}; FASTNN_CACHE_DIR; `fastnn cache clear` empties it)")
    print(f"           compiled kernels in {cache['compiled_kernels']}")
    plans = info["plans"]
    autotune = f"on, up to {plans['autotune_budget_s']:g} s of timing per new key" if plans["autotune"] else "off"
    print(f"  plans    {plans['keys']} keys in {plans['file']} (`fastnn tune`; autotune {autotune}, FASTNN_AUTOTUNE)")
    if plans["tuning_s_per_key"]:
        t = plans["tuning_s_per_key"]
        print(f"           tuning took {t['median']:.2f} s per key (median; at most {t['max']:.2f} s, "
              f"{t['total']:.0f} s in all); `fastnn info --explain SPEC` shows a call's choice")
    blas = info["blas"]
    if isinstance(blas, list):
        for d in blas:
            print(f"  {d['internal_api']}: {d['num_threads']} threads, {d['version']} ({d['architecture']})")
    print(f"backend in force: {info['backend_in_force']}")
    if info["backend_env_problem"]:
        print(f"  WARNING: {info['backend_env_problem']}")
    print("backends (highest priority first; 'auto' picks the first that has the op):")
    for b in info["backends"]:
        print(f"  {b['name']:<10} priority {b['priority']:>3}  {b['description']}")
        print(f"  {'':<10} ops: {', '.join(b['ops'])}")
        for op, vs in b.get("variants", {}).items():
            print(f"  {'':<10} {op} variants (for auto's plans): {', '.join(vs)}")
    for name, why in info["unavailable_backends"].items():
        print(f"  {name:<10} UNAVAILABLE: {why}")
    if info["plugins_disabled"]:
        print("plugins: off (FASTNN_DISABLE_PLUGINS)")
    elif info["plugins"]:
        print("plugins (entry points 'fastnn.backends'; FASTNN_DISABLE_PLUGINS=1 turns them off):")
        for name, p in info["plugins"].items():
            where = f"{p['value']} ({p['distribution']})" if p["distribution"] else p["value"]
            if p["error"]:
                print(f"  {name:<10} {where}: FAILED to load, skipped: {p['error']}")
            else:
                print(f"  {name:<10} {where}: backends {', '.join(p['backends']) or '(none)'}")
    sys.stdout.flush()
    return 0
