"""Third-party backends as plugins: entry points of the group ``fastnn.backends``.

An installed distribution declares ``[project.entry-points."fastnn.backends"] mine =
"mypkg.fastnn_backend"``; ``import fastnn`` imports that module (which calls
:func:`fastnn.register_backend` and :func:`fastnn.register`), or calls the object when the
entry point names a callable. A plugin that fails is skipped, its partial registrations
removed (and the default backend, planner and recorder it may have set restored), and the
reason kept in :data:`PLUGINS` (``fastnn info`` prints it); ``import fastnn`` never fails
because of one. ``FASTNN_DISABLE_PLUGINS=1`` turns discovery off.
"""

from __future__ import annotations

import os
import types
from typing import Dict, List, Optional

from . import _dispatch

GROUP = "fastnn.backends"
DISABLE_VAR = "FASTNN_DISABLE_PLUGINS"

#: entry point name -> {"value", "distribution", "backends", "error"}.
PLUGINS: Dict[str, dict] = {}


def disabled() -> bool:
    return os.environ.get(DISABLE_VAR, "").strip().lower() not in ("", "0", "false", "no")


def plugin_backends() -> Dict[str, str]:
    """backend name -> the plugin (entry point name) that registered it."""
    return {b: name for name, info in PLUGINS.items() for b in info["backends"]}


def builtin_backends(op: Optional[str] = None) -> List[str]:
    """The registered backends that no plugin registered (fastnn's own, and any registered in
    this process), highest priority first: what fastnn's own tests check, so that an installed
    plugin's bugs do not fail them (``fastnn check`` and the pytest plugin check a plugin)."""
    plugins = plugin_backends()
    return [b for b in _dispatch.available_backends(op) if b not in plugins]


def _state():
    """The process-wide choices a plugin may change besides the registry: the default backend
    (``set_backend``), the planner ``auto`` asks and the call recorder."""
    return _dispatch._global_choice, _dispatch._planner, _dispatch._recorder


def _restore(state) -> None:
    _dispatch._global_choice, _dispatch._planner, _dispatch._recorder = state


def _load_one(ep) -> None:
    dist = getattr(ep, "dist", None)
    info = {"value": ep.value, "distribution": getattr(dist, "name", None), "backends": [], "error": None}
    before = set(_dispatch._backends)
    state = _state()
    _dispatch._plugin_loading, _dispatch._protected = ep.name, set(before)
    try:
        obj = ep.load()
        if callable(obj) and not isinstance(obj, types.ModuleType):
            obj()
    except (Exception, SystemExit) as exc:  # a broken plugin never breaks `import fastnn`
        info["error"] = f"{type(exc).__name__}: {exc}"
        for name in set(_dispatch._backends) - before:
            _dispatch.unregister_backend(name)
        _restore(state)  # e.g. set_backend(its backend): every later call would raise
    else:
        info["backends"] = sorted(set(_dispatch._backends) - before)
    finally:
        _dispatch._plugin_loading, _dispatch._protected = None, set()
    PLUGINS[ep.name] = info


def load_plugins() -> None:
    """Load every ``fastnn.backends`` entry point once (nothing when ``$FASTNN_DISABLE_PLUGINS`` is set)."""
    if disabled():
        return
    try:
        from importlib.metadata import entry_points

        eps = entry_points(group=GROUP)
    except Exception as exc:  # pragma: no cover  (broken metadata on sys.path)
        PLUGINS["<discovery>"] = {"value": "", "distribution": None, "backends": [],
                                  "error": f"{type(exc).__name__}: {exc}"}
        return
    for ep in sorted(eps, key=lambda e: e.name):
        if ep.name not in PLUGINS:
            _load_one(ep)
