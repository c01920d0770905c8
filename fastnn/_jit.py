"""The one place that holds fastnn's Numba compile options, its kernel cache and its
generated kernel modules.

Every fastnn kernel (the ``numba`` backend's and the ``im2col`` backend's column loops) is
made by :func:`kernel` (``@kernel`` or ``@kernel(fastmath=FASTMATH_CONV)``), helpers inlined
into them by :func:`inline`; kernel modules never spell Numba options themselves.

What :func:`kernel` adds to ``numba.njit``, for fastnn's kernels only:

* **Options** ``NJIT``: cached on disk, ``nogil`` (the numba backend runs chunks of one
  kernel on several threads, :mod:`fastnn.backends.numba.threads`).
* **Cache location**: compiled kernels are cached in fastnn's per-user cache directory
  (:mod:`fastnn._cache`), never next to the source inside the installed package. A Numba
  cache locator is put first in Numba's list of locators; it claims only files of the
  fastnn package and of its generated-kernel directory, and steps aside when
  ``NUMBA_CACHE_DIR`` is set (then Numba's own locator puts everything there) or when
  ``NUMBA_CACHE_LOCATOR_CLASSES`` replaces Numba's list. A user's other Numba functions keep
  Numba's locators and settings.
* **SLP vectoriser** (``FASTNN_NUMBA_SLP``, default ``1``): LLVM's SLP vectoriser, which Numba
  0.68 leaves off, is switched on while a fastnn kernel compiles and restored right after
  (under Numba's compiler lock, which every compilation holds; Numba's settings are first
  re-read from the environment, as Numba itself does at each compilation, so a changed
  ``NUMBA_*`` variable cannot reset the switch mid-compile). fastnn's dispatchers are of a
  subclass (:class:`SlpDispatcher`), so a kernel unpickled in another process keeps it. The register-tiled
  convolution kernels need it: without it their scalar accumulators stay scalar. What stays
  global: ``numba.config.SLP_VECTORIZE`` reads 1 *during* a fastnn compilation, so a thread
  that reads it then, without taking the compiler lock, sees 1. ``FASTNN_NUMBA_SLP=0`` leaves
  it alone (fastnn stays correct, slower).
* **Vector width** (``FASTNN_NUMBA_VECTOR_WIDTH``: ``auto``, the default, ``512`` or ``256``;
  :data:`VECTOR_WIDTH`): on a CPU with AVX-512 (in the features Numba compiles for: the
  host's, or ``NUMBA_CPU_FEATURES``), LLVM's tuning for Intel's AVX-512 CPUs prefers 256-bit
  vectors, so fastnn's kernels would use half the width and half the registers they have.
  There each function lowered for a fastnn kernel gets the LLVM function attribute
  ``"prefer-vector-width"="512"`` (``auto``; ``256`` sets ``"256"``) before it is optimised:
  the vectorisers and the code generator then use the 32 zmm registers, and the tile tables
  (:mod:`fastnn.backends.numba.tiles`) are those sized for them. Only fastnn's code: the
  attribute is set by fastnn's compiler pipeline (:class:`VectorWidthCompiler`), in the
  code library of the kernel being compiled, never on Numba's shared helpers or the user's
  functions, and Numba's settings are not touched. Without AVX-512 (AVX2 hosts) nothing
  is set and :data:`VECTOR_WIDTH` is 256.
* **Cache key**: Numba keys a cached kernel on its signature, the CPU, its bytecode and its
  source file, not on compile options; fastnn's compiled kernels are therefore kept apart
  per Numba version, SLP setting, vector width (where one is set) and option set
  (``<cache>/numba/<tag>/``, :data:`CACHE_TAG`).
  If fastnn's directory cannot be written, they go to a private temporary directory, never
  beside the package's source (Numba's in-tree fallback).

Generated kernels (:func:`load_generated`): register tiles are written by templates
(``templates.py`` of each backend) as Python source, which is written to
``<cache>/kernels/<name>_<hash>.py`` (the hash of the source and of the files it depends on:
a file never changes once written, so Numba's cache of it stays valid, and an edit to a
template or to a helper it calls gives a new file) atomically (:mod:`fastnn._files`: two
processes never see half a file), then imported from there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Iterable

import numba
from numba.core import caching as _caching
from numba.core import codegen as _codegen
from numba.core import compiler as _compiler
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher

from . import _cache
from ._files import atomic_write

__all__ = ["NJIT", "FASTMATH_CONV", "SLP_VECTORIZE", "VECTOR_WIDTH", "CACHE_TAG", "kernel", "inline",
           "load_generated"]


def _env_flag(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v.strip() == "":
        return default
    return v.strip().lower() not in ("0", "false", "no", "off")


#: Whether fastnn's kernels compile with LLVM's SLP vectoriser (see the module docstring).
SLP_VECTORIZE = _env_flag("FASTNN_NUMBA_SLP", True)


def _compile_features() -> str:
    """The CPU features Numba's JIT compiles for (as its codegen picks them: ``NUMBA_CPU_FEATURES``
    where set, else the host's, less AVX where ``NUMBA_ENABLE_AVX=0``)."""
    if numba.config.CPU_FEATURES is not None:
        return numba.config.CPU_FEATURES
    return _codegen.get_host_cpu_features()


def has_avx512(features=None) -> bool:
    """Whether the features Numba compiles for (or ``features``, LLVM's ``+a,-b`` form) have AVX-512F."""
    return "+avx512f" in (_compile_features() if features is None else features).split(",")


def _vector_width(setting: str, avx512: bool):
    """(the width the tiles are sized for, the ``prefer-vector-width`` attribute or None)."""
    v = setting.strip().lower()
    if v not in ("", "auto", "256", "512"):
        raise ValueError(f"FASTNN_NUMBA_VECTOR_WIDTH must be auto, 256 or 512, got {setting!r}")
    if not avx512:
        return 256, None  # (AVX2 and older: LLVM's choice, as always)
    width = 256 if v == "256" else 512
    return width, str(width)


#: The vector width fastnn's kernels are compiled and tiled for: 512 on a CPU with AVX-512
#: (unless ``FASTNN_NUMBA_VECTOR_WIDTH=256``), else 256 (see the module docstring).
VECTOR_WIDTH, _PREFER_WIDTH = _vector_width(os.environ.get("FASTNN_NUMBA_VECTOR_WIDTH", "auto"), has_avx512())

#: Fast-math flags for the convolution kernels: ``contract`` lets LLVM fuse multiply-adds
#: (FMA). No ``reassoc`` (it makes the loop vectoriser turn reductions into slow gathers
#: and changes summation order) and no ``nnan``/``ninf`` (NaN and inf propagate as in NumPy).
FASTMATH_CONV = {"contract", "arcp", "nsz"}

#: Options for every kernel: cached on disk, releases the GIL (so chunks run in parallel).
NJIT = dict(cache=True, nogil=True)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: The compiled-kernel cache's subdirectory: what Numba's cache key leaves out.
CACHE_TAG = "numba{}-slp{}{}-{}".format(
    numba.__version__, int(SLP_VECTORIZE), "" if _PREFER_WIDTH is None else f"-pvw{_PREFER_WIDTH}",
    hashlib.sha256(repr((sorted(NJIT.items()), sorted(FASTMATH_CONV))).encode()).hexdigest()[:8])

# ------------------------------------------------------------------- cache locator

# (public names since Numba 0.61, underscored before)
_UserProvided = getattr(_caching, "UserProvidedCacheLocator", None) or _caching._UserProvidedCacheLocator
_CacheImpl = getattr(_caching, "CacheImpl", None) or _caching._CacheImpl


def _norm(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _ours(py_file: str) -> bool:
    try:
        dirs = (_PACKAGE_DIR, os.path.join(_cache.cache_dir(), "kernels"))
    except OSError:
        dirs = (_PACKAGE_DIR,)
    path = _norm(py_file)
    return any(path.startswith(_norm(d) + os.sep) for d in dirs)


class FastnnCacheLocator(_UserProvided):
    """Numba cache locator for fastnn's kernels: ``<fastnn cache>/numba/<CACHE_TAG>/<dir>_<hash>/``.
    For a fastnn file it never lets Numba fall back to the in-tree locator (a ``__pycache__``
    inside the package): ``NUMBA_CACHE_DIR`` when set and writable, else fastnn's directory,
    else a private temporary one."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(self._root(), CACHE_TAG, self.get_suitable_cache_subpath(py_file))

    @staticmethod
    def _root() -> str:
        return os.path.join(_cache.cache_dir(), "numba")

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _ours(py_file):
            return None  # Numba's own locators decide
        if numba.config.CACHE_DIR:
            loc = _UserProvided.from_function(py_func, py_file)
            if loc is not None:
                return loc
        for kind in (cls, _TempCacheLocator):
            try:
                loc = super(_UserProvided, kind).from_function(py_func, py_file)
            except OSError:
                loc = None
            if loc is not None:
                return loc
        return None


class _TempCacheLocator(FastnnCacheLocator):
    @staticmethod
    def _root() -> str:
        return _cache.private_temp_dir()


_locator_lock = threading.Lock()


def _install_locator() -> None:
    with _locator_lock:
        classes = _CacheImpl._locator_classes
        if FastnnCacheLocator not in classes:
            classes.insert(0, FastnnCacheLocator)


# -------------------------------------------------------------------- decorators


class _VectorWidthLibrary(_codegen.JITCodeLibrary):
    """A code library whose own functions (those lowered into it, not the linked-in helpers
    of other libraries) prefer ``_PREFER_WIDTH``-bit vectors, set before any optimisation."""

    def add_ir_module(self, ir_module):
        attr = f'"prefer-vector-width"="{_PREFER_WIDTH}"'
        for fn in ir_module.functions:
            if fn.blocks:  # a definition
                # (llvmlite's attribute set takes only enum attributes by name; a string
                # attribute is printed as it is)
                set.add(fn.attributes, attr)
        super().add_ir_module(ir_module)


class VectorWidthCompiler(_compiler.Compiler):
    """Numba's standard pipeline, lowering into a :class:`_VectorWidthLibrary`."""

    def _compile_core(self):
        if self.state.library is None:
            library = _VectorWidthLibrary(self.state.targetctx.codegen(), self.state.func_id.func_qualname)
            library.enable_object_caching()  # (as Numba's lowering pass does for its own)
            self.state.library = library
        return super()._compile_core()


class SlpDispatcher(CPUDispatcher):
    """A Numba dispatcher that compiles with the SLP vectoriser on (``FASTNN_NUMBA_SLP``),
    restoring Numba's setting after (every compilation, a cache load included, goes through
    :meth:`compile`), and where a vector width is set through :class:`VectorWidthCompiler`."""

    def compile(self, sig):
        with global_compiler_lock:
            if _PREFER_WIDTH is not None:  # (set here: a dispatcher rebuilt from a pickle has the default)
                self._compiler.pipeline_class = VectorWidthCompiler
            if not SLP_VECTORIZE:
                return super().compile(sig)
            numba.core.config.reload_config()  # what Numba's pipeline does first: no reset later
            old = numba.config.SLP_VECTORIZE
            numba.config.SLP_VECTORIZE = 1
            try:
                return super().compile(sig)
            finally:
                numba.config.SLP_VECTORIZE = old


def kernel(fn=None, **options):
    """``numba.njit`` with fastnn's options ``NJIT`` (and ``options``, e.g. ``fastmath``), cached
    in fastnn's cache directory, compiled with the SLP vectoriser and the vector width (see the
    module docstring).
    Use as ``@kernel`` or ``@kernel(fastmath=FASTMATH_CONV)``."""
    if fn is None:
        return lambda f: kernel(f, **options)
    _install_locator()
    dispatcher = numba.njit(**{**NJIT, **options})(fn)
    if SLP_VECTORIZE or _PREFER_WIDTH is not None:
        dispatcher.__class__ = SlpDispatcher
    return dispatcher


def inline(fn):
    """A helper inlined into the kernels that call it (Numba IR inlining, no call)."""
    return numba.njit(inline="always")(fn)


# ----------------------------------------------------------- generated kernel modules

_load_lock = threading.Lock()


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_generated(name: str, source: str, depends: Iterable[str] = ()) -> ModuleType:
    """Import the generated module ``source`` as ``fastnn._generated.<name>`` from the cache
    directory (see the module docstring). ``depends``: source files whose njit functions it
    calls; their content is part of the hash, so editing one compiles the kernels again."""
    deps = sorted({os.path.abspath(d) for d in depends} | {os.path.abspath(__file__)})
    stamp = "".join(f"# depends on {os.path.relpath(d, _PACKAGE_DIR)} sha256 {_file_digest(d)}\n" for d in deps)
    text = f"# Generated by fastnn ({name}): do not edit; made from its templates at import.\n{stamp}{source}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    modname = f"fastnn._generated.{name}"
    with _load_lock:
        mod = sys.modules.get(modname)
        if mod is not None and getattr(mod, "__fastnn_digest__", None) == digest:
            return mod
        path = os.path.join(_cache.kernels_dir(), f"{name}_{digest}.py")
        try:
            with open(path, "rb") as f:
                intact = f.read() == text.encode()
        except OSError:
            intact = False
        if not intact:  # (a file is only ever rewritten with the same bytes)
            try:
                atomic_write(path, text.encode(), mode=0o644)
            except OSError:  # e.g. Windows: another process has it open; fine if it is whole
                with open(path, "rb") as f:
                    if f.read() != text.encode():
                        raise
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        mod.__fastnn_digest__ = digest
        sys.modules[modname] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[modname]
            raise
        return mod
