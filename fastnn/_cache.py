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
    when the chosen one cannot be created and written (a warning says so; the directory is
    the user's own, mode 0700, else a new one is made).

The choice is made once per process (changing ``FASTNN_CACHE_DIR`` later has no effect).

Inside it: ``plans/`` the planner's measured plans (:mod:`fastnn._plan`; kept by ``clear``,
forgotten with ``fastnn tune --clear``), ``kernels/`` the generated kernel modules (named by a hash of their content,
so a file never changes once written) and ``numba/`` Numba's compiled kernels of fastnn (index
``.nbi`` and object ``.nbc`` files). When ``NUMBA_CACHE_DIR`` is set, Numba's own setting wins
and fastnn's compiled kernels go there (``fastnn info`` shows where).

``fastnn cache clear`` (:func:`clear`) removes those two subdirectories (nothing else that may
be in a directory named by ``FASTNN_CACHE_DIR``); kernels are then generated and compiled again
on first use.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import warnings
from typing import Optional

__all__ = ["ENV_CACHE_DIR", "SUBDIRS", "cache_dir", "kernels_dir", "private_temp_dir", "size", "clear", "describe"]

ENV_CACHE_DIR = "FASTNN_CACHE_DIR"

#: What fastnn keeps in the cache directory (and all that :func:`clear` removes).
SUBDIRS = ("kernels", "numba")

_resolved: Optional[str] = None
_private: Optional[str] = None


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
        return
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
    fallback = private_temp_dir()
    warnings.warn(f"fastnn: cache directory {tried[0]!r} is not writable; using {fallback!r} "
                  f"(set {ENV_CACHE_DIR} to choose one)", RuntimeWarning, stacklevel=2)
    _resolved = fallback
    return fallback


def private_temp_dir() -> str:
    """A directory in the temporary directory that only this user can write: a fixed name
    reused across runs when it is the user's own (mode 0700, not a link), else a new one."""
    global _private
    if _private is not None:
        return _private
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = os.path.join(tempfile.gettempdir(), f"fastnn-cache-{uid if uid is not None else 'user'}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        path = None
    if path is not None:
        st = os.lstat(path)
        if not (stat.S_ISDIR(st.st_mode) and (uid is None or st.st_uid == uid) and not st.st_mode & 0o077):
            path = None
    _private = path if path is not None and _writable(path) else tempfile.mkdtemp(prefix="fastnn-cache-")
    return _private


def _sub(name: str) -> str:
    path = os.path.join(cache_dir(), name)
    os.makedirs(path, exist_ok=True)
    return path


def kernels_dir() -> str:
    """Where generated kernel modules are written."""
    return _sub("kernels")


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
    """Remove fastnn's subdirectories of the cache directory (``SUBDIRS``); returns the bytes
    freed. (A process that already loaded kernels keeps running them; they are generated and
    compiled again on next use.)"""
    freed = 0
    for name in SUBDIRS:
        p = os.path.join(cache_dir(), name)
        if os.path.isdir(p) and not os.path.islink(p):
            freed += size(p)
            shutil.rmtree(p, ignore_errors=True)
    return freed


def describe() -> dict:
    """Where fastnn caches what, and how much (for ``fastnn info``)."""
    import numba

    root = cache_dir()
    numba_user = numba.config.CACHE_DIR or None
    return {
        "dir": root,
        "bytes": sum(size(os.path.join(root, d)) for d in SUBDIRS if os.path.isdir(os.path.join(root, d))),
        "kernel_source": os.path.join(root, "kernels"),
        "compiled_kernels": (os.path.abspath(numba_user) + " (NUMBA_CACHE_DIR)") if numba_user
        else os.path.join(root, "numba"),
    }
