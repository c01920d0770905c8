"""Kernel caches live in the per-user cache directory, never in the package; generated kernel
modules are written once, atomically, and never tracked; the SLP switch is scoped to fastnn's
kernels; ``fastnn cache`` and ``fastnn info`` show and clear the cache."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _cache, _jit

PACKAGE = os.path.dirname(os.path.abspath(fastnn.__file__))
REPO = os.path.dirname(PACKAGE)

# A small workload that compiles kernels of every kind: generated conv tiles and pooling
# blocks, hand-written kernels, the im2col backend's generated short-row kernels.
WORKLOAD = (
    "import numpy as np, fastnn; rng = np.random.default_rng(0); "
    "A = rng.standard_normal((2, 8, 8, 3)); W = rng.standard_normal((3, 3, 3, 16)); b = np.zeros((1, 1, 1, 16)); "
    "[fastnn.conv_backward(*[fastnn.conv_forward(A, W, b, {'stride': 1, 'pad': 1}, backend=be)[i] for i in (0, 1)], "
    "backend=be) for be in ('numba', 'im2col')]; "
    "fastnn.pool_forward(np.ones((2, 8, 8, 32)), {'f': 2, 'stride': 2}, 'max', backend='numba'); "
)


def _numba_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
                  for f in fs if f.endswith((".nbi", ".nbc")))


def _run(code, env_extra, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "FASTNN_CACHE_DIR")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_kernels_cache_in_fastnn_cache_dir_not_in_package(tmp_path):
    before = _numba_files(PACKAGE)
    out = _run(WORKLOAD + "print('ok')", {"FASTNN_CACHE_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert _numba_files(PACKAGE) == before, "Numba cache files inside the package"
    cached = _numba_files(tmp_path / "numba")
    # hand-written kernels (package files) and generated ones (cache files) alike
    assert any("kernels.pad_copy" in f for f in cached), cached
    assert any("numba_conv_" in f for f in cached) and any("numba_pool_" in f for f in cached), cached
    assert any("im2col_px_" in f for f in cached) and any("columns." in f for f in cached), cached
    generated = sorted(os.listdir(tmp_path / "kernels"))
    assert {re.sub(r"_[0-9a-f]{20}\.py$", "", f) for f in generated if f.endswith(".py")} == {
        "numba_conv", "numba_pool", "numba_depthwise", "im2col_px"}


def test_numba_cache_dir_is_respected(tmp_path):
    ours, numbas = tmp_path / "fastnn", tmp_path / "numba-user"
    out = _run(WORKLOAD + "print('ok')", {"FASTNN_CACHE_DIR": str(ours), "NUMBA_CACHE_DIR": str(numbas)})
    assert out.returncode == 0, out.stderr
    assert _numba_files(numbas), "nothing compiled into NUMBA_CACHE_DIR"
    assert not (ours / "numba").exists() or _numba_files(ours / "numba") == []
    assert os.listdir(ours / "kernels")  # the generated source still lives in fastnn's directory
    assert _numba_files(PACKAGE) == []


def test_second_process_loads_compiled_kernels_from_cache(tmp_path):
    code = WORKLOAD + "import fastnn.backends.numba as nb; print(sum(len(d.overloads) for d in [*nb._CONV.FWD.values(), *nb._CONV.FWD_ROWS.values()]))"
    first = _run(code, {"FASTNN_CACHE_DIR": str(tmp_path)})
    assert first.returncode == 0, first.stderr
    files = {f: os.path.getmtime(tmp_path / "numba" / f) for f in _numba_files(tmp_path / "numba")}
    kernels = {f: os.path.getmtime(tmp_path / "kernels" / f) for f in os.listdir(tmp_path / "kernels")}
    second = _run(code.replace("print(", "print(sum(d.stats.cache_hits.total() for d in [*nb._CONV.FWD.values(), *nb._CONV.FWD_ROWS.values()]), "),
                  {"FASTNN_CACHE_DIR": str(tmp_path)})
    assert second.returncode == 0, second.stderr
    hits, used = map(int, second.stdout.split())
    assert used >= 1 and hits == used  # every forward tile it ran came from the cache
    assert {f: os.path.getmtime(tmp_path / "kernels" / f) for f in os.listdir(tmp_path / "kernels")} == kernels
    assert {f: os.path.getmtime(tmp_path / "numba" / f) for f in files} == files


def test_read_only_package_copy_works_and_stays_untouched(tmp_path):
    """A copy of the package in a directory nothing may be written to (a system
    site-packages): kernels compile and cache in the user directory, the copy is unchanged."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "fastnn", ignore=shutil.ignore_patterns("__pycache__"))
    listing = sorted(os.path.relpath(os.path.join(d, f), site) for d, _, fs in os.walk(site) for f in fs)
    for d, dirs, fs in os.walk(site):
        for name in fs + dirs:
            os.chmod(os.path.join(d, name), 0o555 if name in dirs else 0o444)
    os.chmod(site, 0o555)
    try:
        out = _run(WORKLOAD + "print(fastnn.__file__)", {"FASTNN_CACHE_DIR": str(tmp_path / "cache"),
                                                        "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"},
                   cwd=str(tmp_path))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(site / "fastnn" / "__init__.py")
        after = sorted(os.path.relpath(os.path.join(d, f), site) for d, _, fs in os.walk(site) for f in fs)
        assert after == listing
        assert _numba_files(tmp_path / "cache" / "numba")
    finally:
        for d, dirs, _ in os.walk(site):
            os.chmod(d, 0o755)


def test_unwritable_cache_dir_falls_back_with_a_warning(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = ("import warnings, fastnn._cache as c; "
            "warnings.simplefilter('always'); print(c.cache_dir())")
    out = _run(code, {"FASTNN_CACHE_DIR": str(blocker / "cache")})
    assert out.returncode == 0, out.stderr
    assert "not writable" in out.stderr and str(blocker / "cache") in out.stderr
    assert out.stdout.strip() != str(blocker / "cache") and os.path.isdir(out.stdout.strip())


def test_generated_module_written_once_atomically_and_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache, "_resolved", str(tmp_path))
    src = "import numpy as np\n\nfrom fastnn._jit import kernel\n\n\n@kernel\ndef twice(x, out):\n" \
          "    for i in range(x.shape[0]):\n        out[i] = 2 * x[i]\n"
    mod = _jit.load_generated("test_twice", src)
    path = mod.__file__
    assert os.path.dirname(path) == str(tmp_path / "kernels") and os.path.basename(path).startswith("test_twice_")
    with open(path) as f:
        text = f.read()
    assert text.endswith(src) and "sha256" in text.splitlines()[1]  # the depends-on stamp
    out = np.empty(3)
    mod.twice(np.arange(3.0), out)
    assert out.tolist() == [0.0, 2.0, 4.0]
    mtime = os.path.getmtime(path)
    assert _jit.load_generated("test_twice", src) is mod
    assert os.path.getmtime(path) == mtime
    other = _jit.load_generated("test_twice", src.replace("2 * x[i]", "3 * x[i]"))
    assert other.__file__ != path and os.path.exists(path)
    assert not [f for f in os.listdir(tmp_path / "kernels") if f.endswith(".tmp")]
    # a damaged file (never produced by the atomic writer, but a disk can lie) is rewritten
    with open(other.__file__, "w") as f:
        f.write("garbage(")
    sys.modules.pop("fastnn._generated.test_twice")
    again = _jit.load_generated("test_twice", src.replace("2 * x[i]", "3 * x[i]"))
    again.twice(np.arange(3.0), out)
    assert out.tolist() == [0.0, 3.0, 6.0]
    sys.modules.pop("fastnn._generated.test_twice")


def test_slp_vectoriser_is_scoped_to_fastnn_kernels():
    """fastnn's kernels compile with LLVM's SLP vectoriser; Numba's setting is left as it was,
    so a user's own function compiles as Numba would compile it."""
    import numba

    def f(a, b, out):
        x0 = a[0] * b[0]
        x1 = a[1] * b[1]
        x2 = a[2] * b[2]
        x3 = a[3] * b[3]
        out[0] = x0
        out[1] = x1
        out[2] = x2
        out[3] = x3

    if not _jit.SLP_VECTORIZE:
        pytest.skip("FASTNN_NUMBA_SLP=0")
    before = numba.config.SLP_VECTORIZE
    ours, theirs = _jit.kernel(f, cache=False), numba.njit(f)
    a, out = np.arange(4.0), np.empty(4)
    ours(a, a, out)
    theirs(a, a, out)
    assert numba.config.SLP_VECTORIZE == before
    ir_ours, ir_theirs = (next(iter(d.inspect_llvm().values())) for d in (ours, theirs))
    assert re.search(r"<\d+ x double>", ir_ours), "fastnn kernel compiled without SLP"
    if not before:
        assert not re.search(r"<\d+ x double>", ir_theirs), "the user's function got fastnn's SLP setting"


def test_numba_settings_untouched_by_import_and_calls():
    code = (WORKLOAD + "import numba, numba.core.caching as c; "
            "print(numba.config.SLP_VECTORIZE, numba.config.CACHE_DIR or '-', "
            "[k.__name__ for k in (getattr(c, 'CacheImpl', None) or c._CacheImpl)._locator_classes][1:])")
    plain = _run("import numba, numba.core.caching as c; print(numba.config.SLP_VECTORIZE, "
                 "numba.config.CACHE_DIR or '-', [k.__name__ for k in (getattr(c, 'CacheImpl', None) "
                 "or c._CacheImpl)._locator_classes])", {})
    used = _run(code, {})
    assert plain.returncode == 0 and used.returncode == 0, used.stderr
    assert used.stdout == plain.stdout  # only fastnn's locator is added, in front


def test_no_generated_kernel_module_is_tracked():
    if not os.path.isdir(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files", "fastnn"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    assert files
    for f in files:
        if f.endswith(".py"):
            with open(os.path.join(REPO, f)) as fh:
                head = fh.read(2000)
            assert "GENERATED" not in head and "do not edit" not in head.lower(), f


def test_cli_cache_info_and_clear(tmp_path):
    env = {"FASTNN_CACHE_DIR": str(tmp_path)}
    assert _run(WORKLOAD, env).returncode == 0
    assert _numba_files(tmp_path / "numba")
    info = _run("from fastnn.cli import main; main(['info', '--json'])", env)
    assert info.returncode == 0, info.stderr
    cache = json.loads(info.stdout)["cache"]
    assert cache["dir"] == str(tmp_path) and cache["bytes"] == _cache.size(str(tmp_path)) > 0
    text = _run("from fastnn.cli import main; main(['info'])", env).stdout
    assert str(tmp_path) in text
    out = _run("from fastnn.cli import main; raise SystemExit(main(['cache', 'clear']))", env)
    assert out.returncode == 0 and "cleared" in out.stdout, out.stderr
    assert os.listdir(tmp_path) == []
    assert _run(WORKLOAD + "print('ok')", env).stdout.strip() == "ok"  # compiles again


def test_unwritable_numba_cache_dir_never_puts_files_in_the_package(tmp_path):
    """A NUMBA_CACHE_DIR that cannot be written: Numba would fall back to a __pycache__ beside
    the source; fastnn's kernels go to fastnn's own directory instead."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    before = _numba_files(PACKAGE)
    out = _run(WORKLOAD + "print('ok')", {"FASTNN_CACHE_DIR": str(tmp_path / "cache"),
                                         "NUMBA_CACHE_DIR": str(blocker / "numba")})
    assert out.returncode == 0, out.stderr
    assert _numba_files(PACKAGE) == before
    assert _numba_files(tmp_path / "cache" / "numba")


def test_slp_survives_a_numba_environment_change(monkeypatch):
    """Numba re-reads its NUMBA_* settings at each compilation when the environment changed;
    that must not switch SLP off under a fastnn compile."""
    import numba

    if not _jit.SLP_VECTORIZE:
        pytest.skip("FASTNN_NUMBA_SLP=0")

    def g(a, out):
        y0 = a[0] + a[4]
        y1 = a[1] + a[5]
        y2 = a[2] + a[6]
        y3 = a[3] + a[7]
        out[0] = y0
        out[1] = y1
        out[2] = y2
        out[3] = y3

    monkeypatch.setenv("NUMBA_DEBUG_CACHE", "0")  # a changed NUMBA_* variable
    ours = _jit.kernel(g, cache=False)
    ours(np.arange(8.0), np.empty(4))
    assert re.search(r"<\d+ x double>", next(iter(ours.inspect_llvm().values())))
    assert numba.config.SLP_VECTORIZE == 0 or os.environ.get("NUMBA_SLP_VECTORIZE")


def test_clear_removes_only_fastnns_subdirectories(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache, "_resolved", str(tmp_path))
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "x.py").write_text("x = 1\n")
    (tmp_path / "numba").mkdir()
    (tmp_path / "numba" / "k.nbi").write_bytes(b"12345")
    (tmp_path / "notes.txt").write_text("the user's own file")
    (tmp_path / "project").mkdir()
    assert _cache.clear() == len("x = 1\n") + 5
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "project"]
