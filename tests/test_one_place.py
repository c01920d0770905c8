"""The README's "one place" claims: each rule is written once and every user calls it."""

import pathlib
import re

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn._params import _pair, conv_out_size
from fastnn.bench import workloads
from fastnn.testing.tolerance import assert_close, mismatch, tolerance

PACKAGE = pathlib.Path(fastnn.__file__).parent
REPO = PACKAGE.parent
#: ``(n + 2 p - f) // s + 1`` spelt out (whatever the names), or with the padding left out, or
#: its span named first (``span // s + 1``).
OUT_SIZE = re.compile(r"(\(\s*\w+\s*(\+\s*2\s*\*\s*\w+\s*)?-\s*\w+\s*\)|\b\w+)\s*//\s*\w+\s*\+\s*1\b")


def _sources():
    """The package (less the backends' kernel index arithmetic), the benchmark suite and the scripts."""
    files = [p for p in PACKAGE.rglob("*.py") if "backends" not in p.relative_to(PACKAGE).parts]
    files += list((REPO / "bench").glob("*.py")) + list((REPO / "scripts").glob("*.py"))
    return sorted(files)


def _lines_matching(pattern):
    return [str(p.relative_to(REPO)) for p in _sources() for line in p.read_text().splitlines()
            if pattern.search(line)]


def test_output_size_formula_is_written_once():
    assert _lines_matching(OUT_SIZE) == ["fastnn/_params.py"]


def test_pair_parser_is_defined_once():
    assert _lines_matching(re.compile(r"^\s*def _pair\b")) == ["fastnn/_params.py"]


def test_pair_parser_reads_ints_pairs_and_refuses_the_rest():
    assert _pair(3) == (3, 3) and _pair((2, 1)) == (2, 1) and _pair([0, 4]) == (0, 4)
    assert _pair(np.array([2, 3])) == (2, 3) and type(_pair(np.int64(2))[0]) is int
    with pytest.raises(ValueError, match=r"stride must be positive \(>= 1\), got 0"):
        _pair(0, "stride", 1)
    with pytest.raises(ValueError, match="an int or an"):
        _pair((1, 2, 3))
    with pytest.raises(TypeError, match="pad must be an int"):
        _pair(1.5, "pad")


@pytest.mark.parametrize("H, W, f, s, p", [(7, 9, 3, 2, 1), (8, 8, 2, 2, 0), (5, 6, 3, 1, 2), (11, 10, 2, 3, 0)])
def test_layer_output_shapes_are_the_kernels(H, W, f, s, p):
    """The layers' shape arithmetic (``conv_out_size``) gives what the kernels return."""
    x = np.random.RandomState(0).standard_normal((1, H, W, 3))
    conv = nn.Conv2D(3, 4, f, stride=s, pad=p)
    conv.build(np.random.RandomState(1), np.float64)
    assert conv.output_shape((H, W, 3)) == conv.forward(x, train=False).shape[1:]
    assert conv.output_shape((H, W, 3))[:2] == (conv_out_size(H, f, p, s), conv_out_size(W, f, p, s))
    for pool in (nn.MaxPool2D(f, s), nn.AvgPool2D(f, s)):
        assert pool.output_shape((H, W, 3)) == pool.forward(x, train=False).shape[1:]


# ------------------------------------------------------------------ the tolerance rule


@pytest.mark.parametrize("dtype, rel", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_tolerance_rule_by_dtype(dtype, rel):
    """Half the allowed error passes, three times it fails, in the tests and in the bench alike."""
    e = np.linspace(-300.0, 300.0, 25).astype(dtype)
    assert tolerance(dtype) == (rel, rel)
    assert tolerance(dtype, e) == (rel, rel * 300.0)  # atol scaled by the largest magnitude
    allowed = rel * 300.0 + rel * abs(float(e[3]))  # atol + rtol |expected|
    near, far = e.copy(), e.copy()
    near[3] += allowed / 2
    far[3] += allowed * 3
    assert near[3] != e[3]
    assert_close(near, e, dtype, "near")
    with pytest.raises(AssertionError, match=r"far: 1 of 25 differ"):
        assert_close(far, e, dtype, "far")
    assert workloads.compare_outputs((near,), (e,), dtype, ("x",)) is None
    assert workloads.compare_outputs((far,), (e,), dtype, ("x",)) == mismatch(far, e, dtype, "x")


def test_tolerance_rule_nan_inf_dtype_shape():
    e = np.array([1.0, np.nan, np.inf, -np.inf])
    assert_close(e.copy(), e, np.float64)
    for bad in ([1.0, 0.0, np.inf, -np.inf], [1.0, np.nan, -np.inf, -np.inf]):
        with pytest.raises(AssertionError, match="1 of 4 differ"):
            assert_close(np.array(bad), e, np.float64)
    with pytest.raises(AssertionError, match="dtype float32, expected float64"):
        assert_close(e.astype(np.float32), e, np.float64)
    with pytest.raises(AssertionError, match=r"shape \(3,\), expected \(4,\)"):
        assert_close(e[:3], e, np.float64)
