"""fastnn's per-user cache directory: generated kernel source and compiled Numba kernels.

Nothing is ever written inside the installed package (a read-only or shared site-packages
works, and uninstalling leaves nothing behind). The directory is, in this order:

``FASTNN_CACHE_DIR``
    if set (created if missing);
the platform's user cache directory
    ``platformdirs.user_cache_dir("fastnn")``: ``~/.cache/fastnn`` on Linux (or
    ``$XDG_CACHE_HOME/fastnn``), ``~/Library/Caches/fastnn`` on macOS,
    ``%LOCALAPPDATA%\\fastnn\\Cache`` on Windows;
a private directory in the system's temporary directory
    when neither can be created and written (a warning says so once).

Inside it: ``kernels/`` holds the generated kernel modules (named by a hash of their content,
so a file never changes once written) and ``numba/`` Numba's compiled kernels of fastnn (index
``.nbi`` and object ``.nbc`` files). When ``NUMBA_CACHE_DIR`` is set, Numba's own setting wins
and fastnn's compiled kernels go there (``fastnn info`` shows where).

``fastnn cache clear`` (:func:`clear`) empties the directory; kernels are then generated and
compiled again on first use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from typing import Optional

__all__ = ["ENV_CACHE_DIR", "cache_dir", "kernels_dir", "numba_dir", "size", "clear", "describe"]

ENV_CACHE_DIR = "FASTNN_CACHE_DIR"

_resolved: Optional[str] = None


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def _candidates():
    env = os.environ.get(ENV_CACHE_DIR, "").strip()
    if env:
        yield os.path.abspath(os.path.expanduser(env))
        return  # an explicit choice: never silently write somewhere else instead
    import platformdirs

    yield platformdirs.user_cache_dir("fastnn", appauthor=False)


def cache_dir() -> str:
    """The cache directory (created on first call; see the module docstring)."""
    global _resolved
    if _resolved is not None:
        return _resolved
    tried = []
    for path in _candidates():
        if _writable(path):
            _resolved = path
            return path
        tried.append(path)
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    fallback = os.path.join(tempfile.gettempdir(), f"fastnn-cache-{uid}")
    if not _writable(fallback):
        raise OSError(f"fastnn: no writable cache directory (tried {tried + [fallback]}); "
                      f"set {ENV_CACHE_DIR} to a writable directory")
    warnings.warn(f"fastnn: cache directory {tried[0]!r} is not writable; using {fallback!r} "
                  f"(set {ENV_CACHE_DIR} to choose one)", RuntimeWarning, stacklevel=2)
    _resolved = fallback
    return fallback


def _sub(name: str) -> str:
    path = os.path.join(cache_dir(), name)
    os.makedirs(path, exist_ok=True)
    return path


def kernels_dir() -> str:
    """Where generated kernel modules are written."""
    return _sub("kernels")


def numba_dir() -> str:
    """Where Numba caches fastnn's compiled kernels (unless ``NUMBA_CACHE_DIR`` is set)."""
    return _sub("numba")


def size(path: Optional[str] = None) -> int:
    """Bytes held under ``path`` (default: the cache directory)."""
    total = 0
    for root, _, files in os.walk(path or cache_dir()):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def clear() -> int:
    """Empty the cache directory; returns the bytes freed. (A process that already loaded
    kernels keeps running them; they are generated and compiled again on next use.)"""
    root = cache_dir()
    freed = size(root)
    for entry in os.listdir(root):
        p = os.path.join(root, entry)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass
    return freed


def describe() -> dict:
    """Where fastnn caches what, and how much (for ``fastnn info``)."""
    import numba

    root = cache_dir()
    numba_user = numba.config.CACHE_DIR or None
    return {
        "dir": root,
        "bytes": size(root),
        "kernel_source": os.path.join(root, "kernels"),
        "compiled_kernels": (os.path.abspath(numba_user) + " (NUMBA_CACHE_DIR)") if numba_user
        else os.path.join(root, "numba"),
    }
