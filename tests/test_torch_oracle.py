"""Every backend against PyTorch's conv2d / max_pool2d / avg_pool2d and their autograd.

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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv_against_torch(backend, name):
    case = CONV_CASES[name]
    A, W, b, hp, dZ = case.make(np.float64, seed=11)
    Z, cache = fastnn.conv_forward(A, W, b, hp, backend=backend)
    dA, dW, db = fastnn.conv_backward(dZ, cache, backend=backend)

    tA = to_nchw(A)
    tW = torch.tensor(np.ascontiguousarray(np.transpose(W, (3, 2, 0, 1))), requires_grad=True)  # (K, C, fh, fw)
    tb = torch.tensor(b.reshape(-1), requires_grad=True)
    tZ = F.conv2d(tA, tW, tb, stride=pair(case.stride), padding=pair(case.pad))
    tZ.backward(torch.tensor(np.ascontiguousarray(np.transpose(dZ, (0, 3, 1, 2)))))

    np.testing.assert_allclose(Z, from_nchw(tZ), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dA, from_nchw(tA.grad), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, np.transpose(tW.grad.numpy(), (2, 3, 1, 0)), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(db.reshape(-1), tb.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("name", sorted(n for n, c in POOL_CASES.items() if not c.ties))
def test_pool_against_torch(backend, name, mode):
    case = POOL_CASES[name]
    A, hp, dA = case.make(np.float64, seed=12)
    out, cache = fastnn.pool_forward(A, hp, mode, backend=backend)
    ties = "first" if mode == "max" else "all"
    grad = fastnn.pool_backward(dA, cache, mode, ties=ties, backend=backend)

    tA = to_nchw(A)
    kw = dict(kernel_size=pair(case.f), stride=pair(case.stride), padding=pair(case.pad))
    if mode == "max":
        tout = F.max_pool2d(tA, **kw)
    else:
        tout = F.avg_pool2d(tA, count_include_pad=True, **kw)
    tout.backward(torch.tensor(np.ascontiguousarray(np.transpose(dA, (0, 3, 1, 2)))))
    np.testing.assert_allclose(out, from_nchw(tout), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, from_nchw(tA.grad), rtol=1e-12, atol=1e-12)


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
