"""The vector width of fastnn's kernels (``FASTNN_NUMBA_VECTOR_WIDTH``, ``fastnn._jit.VECTOR_WIDTH``):
on a CPU with AVX-512 fastnn's kernels, and only they, prefer 512-bit vectors; the tile tables
follow the width; kernels compiled for one width are never loaded for the other; and the other
width's tables (AVX2's, on an AVX-512 machine) still match the reference."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from fastnn import _jit

nb = pytest.importorskip("fastnn.backends.numba")
from fastnn.backends.numba import tiles  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTR = re.compile(r'"prefer-vector-width"="(\d+)"')


def _run(code, env_extra, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "FASTNN_NUMBA_VECTOR_WIDTH")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _saxpy(a, x, y):
    for i in range(x.shape[0]):
        y[i] += a * x[i]


def test_setting_parsed_and_checked():
    assert _jit._vector_width("auto", True) == (512, "512")
    assert _jit._vector_width("", True) == (512, "512")
    assert _jit._vector_width(" 512 ", True) == (512, "512")
    assert _jit._vector_width("256", True) == (256, "256")
    for v in ("auto", "256", "512"):  # no AVX-512: nothing is set, whatever is asked
        assert _jit._vector_width(v, False) == (256, None)
    with pytest.raises(ValueError, match="FASTNN_NUMBA_VECTOR_WIDTH.*'1024'"):
        _jit._vector_width("1024", True)
    assert _jit.has_avx512("+avx2,+avx512f,+fma") and not _jit.has_avx512("+avx2,-avx512f,+fma")


def test_width_follows_the_cpu_features_numba_compiles_for():
    assert _jit.VECTOR_WIDTH == (512 if _jit.has_avx512() and
                                 os.environ.get("FASTNN_NUMBA_VECTOR_WIDTH", "").strip() != "256" else 256)
    assert tiles.WIDTH == _jit.VECTOR_WIDTH and tiles.AVX512 == (_jit.VECTOR_WIDTH == 512)


def test_only_fastnns_functions_get_the_attribute():
    """A fastnn kernel's functions carry the width (where one is set); the user's function, even
    one compiled after it and one it calls, does not, and compiles as Numba would compile it."""
    import numba

    user = numba.njit(_saxpy)

    def caller(a, x, y):
        user(a, x, y)
        for i in range(x.shape[0]):
            y[i] += x[i]

    ours = _jit.kernel(caller, cache=False)
    x = np.arange(64.0, dtype=np.float32)
    y = np.zeros_like(x)
    ours(np.float32(2), x, y)
    again = numba.njit(lambda a, x, y: user(a, x, y))
    again(np.float32(2), x, y)
    ir_ours = "\n".join(ours.inspect_llvm().values())
    for theirs in (user, again):
        assert not ATTR.search("\n".join(theirs.inspect_llvm().values())), "a user's function got fastnn's width"
    widths = set(ATTR.findall(ir_ours))
    assert widths == (set() if _jit._PREFER_WIDTH is None else {_jit._PREFER_WIDTH})
    if _jit.VECTOR_WIDTH == 512:
        asm = "\n".join(ours.inspect_asm().values())
        assert "zmm" in asm, "fastnn kernel compiled without 512-bit vectors"


def test_cache_kept_apart_per_width(tmp_path):
    """Kernels compiled for one width live in a cache directory of their own: another width's
    process never loads them (Numba's own cache key has the CPU, not the width)."""
    if not _jit.has_avx512():
        pytest.skip("no AVX-512: one width only")
    code = ("import numpy as np, fastnn; from fastnn import _jit; "
            "fastnn.conv_forward(np.ones((2, 9, 9, 16), np.float32), np.ones((3, 3, 16, 32), np.float32), "
            "np.zeros((1, 1, 1, 32), np.float32), {'stride': 1, 'pad': 1}, backend='numba'); print(_jit.CACHE_TAG)")
    tags = []
    for width in ("512", "256"):
        out = _run(code, {"FASTNN_CACHE_DIR": str(tmp_path), "FASTNN_NUMBA_VECTOR_WIDTH": width})
        assert out.returncode == 0, out.stderr
        tags.append(out.stdout.split()[-1])
    assert tags[0] != tags[1] and "pvw512" in tags[0] and "pvw256" in tags[1]
    assert sorted(os.listdir(tmp_path / "numba")) == sorted(tags)
    for tag in tags:
        assert any(f.endswith(".nbc") for _, _, fs in os.walk(tmp_path / "numba" / tag) for f in fs)


def test_other_widths_tables_match_reference(tmp_path):
    """On an AVX-512 machine the AVX2 tables (``FASTNN_NUMBA_VECTOR_WIDTH=256``) are not the ones
    the rest of the suite runs: their tile tests run here, in a process of that width."""
    if not _jit.has_avx512():
        pytest.skip("no AVX-512: the suite runs the AVX2 tables")
    other = "256" if _jit.VECTOR_WIDTH == 512 else "512"
    code = ("import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/test_numba.py', '-k', "
            "'tile_variant or few_channel or tiled_conv or parallel_pool', '-x']))")
    out = _run(code, {"FASTNN_CACHE_DIR": str(tmp_path), "FASTNN_NUMBA_VECTOR_WIDTH": other}, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert re.search(r"\d+ passed", out.stdout), out.stdout[-2000:]
