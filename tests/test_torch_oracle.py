"""Every backend against PyTorch's conv2d / max_pool2d / avg_pool2d and their autograd, on
every named case: the course's calls and every option beyond them.

Skipped with a reason where PyTorch is not installed (`pip install torch==2.13.0`).
Max pooling uses inputs without ties (continuous random values): PyTorch routes a tie's
gradient to one position, the course to all of them.
"""

import numpy as np
import pytest

import fastnn
from fastnn._plugins import builtin_backends
from fastnn.testing.cases import CONV_CASES, POOL_CASES

torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install torch==2.13.0")
F = torch.nn.functional

BACKENDS = builtin_backends()


def to_nchw(x):
    return torch.tensor(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))), requires_grad=True)


def from_nchw(t):
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _tensor(x, layout):
    """A case's array as an NCHW leaf tensor (NHWC arrays transposed)."""
    if layout == "NCHW":
        return torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    return to_nchw(x)


def _array(t, layout):
    """A tensor back in the case's layout."""
    return t.detach().numpy() if layout == "NCHW" else from_nchw(t)


def _pads(p):
    """F.pad's (left, right, top, bottom) of fastnn's params."""
    return (p.pw, p.pr, p.ph, p.pb)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv_against_torch(backend, name):
    """Every option (dilation, groups, "same"/"valid"/uneven padding, NCHW) against conv2d on an
    input padded by F.pad, with PyTorch's dilation and groups."""
    case = CONV_CASES[name]
    A, W, b, hp, dZ = case.make(np.float64, seed=11)
    Z, cache = fastnn.conv_forward(A, W, b, hp, backend=backend)
    dA, dW, db = fastnn.conv_backward(dZ, cache, backend=backend)

    p, layout = case.params, case.layout
    tA = _tensor(A, layout)
    tW = torch.tensor(np.ascontiguousarray(W if layout == "NCHW" else np.transpose(W, (3, 2, 0, 1))),
                      requires_grad=True)  # (K, C // groups, fh, fw)
    tb = torch.tensor(b.reshape(-1), requires_grad=True)
    tZ = F.conv2d(F.pad(tA, _pads(p)), tW, tb, stride=(p.sh, p.sw), dilation=(p.dh, p.dw), groups=p.G)
    tZ.backward(_tensor(dZ, layout).detach())

    np.testing.assert_allclose(Z, _array(tZ, layout), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dA, _array(tA.grad, layout), rtol=1e-12, atol=1e-12)
    tdW = tW.grad.numpy() if layout == "NCHW" else np.transpose(tW.grad.numpy(), (2, 3, 1, 0))
    np.testing.assert_allclose(dW, tdW, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(db.reshape(-1), tb.grad.numpy(), rtol=1e-12, atol=1e-12)


def _pool_params(case):
    shape = (case.m, case.C, case.H, case.W) if case.layout == "NCHW" else (case.m, case.H, case.W, case.C)
    return fastnn._params.pool_params(np.zeros(shape), case.hparameters, "average")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("name", sorted(n for n, c in POOL_CASES.items() if not c.ties))
def test_pool_against_torch(backend, name, mode):
    """Every option (ceil_mode, count_include_pad, "same" and uneven padding, NCHW) against
    max_pool2d / avg_pool2d: even padding as their padding=, uneven as F.pad (-inf, or zeros
    that count) and no padding= (the cases combine uneven padding with neither ceil_mode nor
    count_include_pad=False, which F.pad would change the meaning of)."""
    case = POOL_CASES[name]
    A, hp, dA = case.make(np.float64, seed=12)
    out, cache = fastnn.pool_forward(A, hp, mode, backend=backend)
    ties = "first" if mode == "max" else "all"
    grad = fastnn.pool_backward(dA, cache, mode, ties=ties, backend=backend)

    p, layout = _pool_params(case), case.layout
    tA = _tensor(A, layout)
    x, padding = tA, (p.ph, p.pw)
    if (p.ph, p.pw) != (p.pb, p.pr):
        assert not case.ceil_mode and case.count_include_pad
        x = F.pad(tA, _pads(p), value=-np.inf if mode == "max" else 0.0)
        padding = 0
    kw = dict(kernel_size=pair(case.f), stride=pair(case.stride), padding=padding, ceil_mode=case.ceil_mode)
    if mode == "max":
        tout = F.max_pool2d(x, **kw)
    else:
        tout = F.avg_pool2d(x, count_include_pad=case.count_include_pad, **kw)
    tout.backward(_tensor(dA, layout).detach())
    np.testing.assert_allclose(out, _array(tout, layout), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, _array(tA.grad, layout), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool_first_tie_rule_matches_torch_on_ties(backend):
    """ties="first" is PyTorch's rule, even when the windows hold equal maxima."""
    A, hp, dA = POOL_CASES["ties_p2s2"].make(np.float64, seed=13)
    _, cache = fastnn.pool_forward(A, hp, backend=backend)
    grad = fastnn.pool_backward(dA, cache, ties="first", backend=backend)
    tA = to_nchw(A)
    F.max_pool2d(tA, 2, 2).backward(torch.tensor(np.ascontiguousarray(np.transpose(dA, (0, 3, 1, 2)))))
    np.testing.assert_allclose(grad, from_nchw(tA.grad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_activations_against_torch(backend):
    Z = np.random.RandomState(14).randn(5, 7) * 4
    dA = np.random.RandomState(15).randn(5, 7)
    tZ = torch.tensor(Z, requires_grad=True)
    torch.sigmoid(tZ).backward(torch.tensor(dA))
    np.testing.assert_allclose(fastnn.sigmoid(Z, backend=backend)[0], torch.sigmoid(torch.tensor(Z)).numpy(), rtol=1e-14)
    np.testing.assert_allclose(fastnn.sigmoid_backward(dA, Z, backend=backend), tZ.grad.numpy(), rtol=1e-13, atol=1e-15)
    tZ = torch.tensor(Z, requires_grad=True)
    torch.relu(tZ).backward(torch.tensor(dA))
    np.testing.assert_array_equal(fastnn.relu(Z, backend=backend)[0], torch.relu(torch.tensor(Z)).numpy())
    np.testing.assert_array_equal(fastnn.relu_backward(dA, Z, backend=backend), tZ.grad.numpy())
