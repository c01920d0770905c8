"""Bad input gets a clear error naming the argument; dtypes follow the input; nothing is mutated."""

import numpy as np
import pytest

import fastnn
from fastnn._dispatch import ground_truth_backend
from fastnn._plugins import builtin_backends

BACKENDS = builtin_backends()
REF = ground_truth_backend()
HP = {"stride": 1, "pad": 1}


def conv_args(m=2, H=5, W=5, C=3, f=3, K=4):
    rng = np.random.RandomState(0)
    return rng.randn(m, H, W, C), rng.randn(f, f, C, K), rng.randn(1, 1, 1, K)


# ------------------------------------------------------------------- conv errors


@pytest.mark.parametrize(
    "mutate, exc, pattern",
    [
        (lambda A, W, b, hp: (A[0], W, b, hp), ValueError, r"A_prev must be 4-D .* got 3-D array of shape \(5, 5, 3\)"),
        (lambda A, W, b, hp: (A, W[0], b, hp), ValueError, r"W must be 4-D .* got 3-D"),
        (lambda A, W, b, hp: (A, W[:, :, :2], b, hp), ValueError, r"W.shape\[2\] = 2, A_prev.shape\[3\] = 3"),
        (lambda A, W, b, hp: (A, W, b[..., :3], hp), ValueError, r"b must have shape \(1, 1, 1, 4\).*got \(1, 1, 1, 3\)"),
        (lambda A, W, b, hp: (A, W, b, {"stride": 0, "pad": 1}), ValueError, r"hparameters\['stride'\] must be positive"),
        (lambda A, W, b, hp: (A, W, b, {"stride": -1, "pad": 1}), ValueError, r"stride'\] must be positive"),
        (lambda A, W, b, hp: (A, W, b, {"stride": 1, "pad": -1}), ValueError, r"hparameters\['pad'\] must be non-negative"),
        (lambda A, W, b, hp: (A, W, b, {"stride": 1.5, "pad": 1}), TypeError, r"stride'\] must be an int .* got 1.5"),
        (lambda A, W, b, hp: (A, W, b, {"stride": (1, 2, 3), "pad": 1}), ValueError, r"int or an \(h, w\) pair"),
        (lambda A, W, b, hp: (A, W, b, {"stride": True, "pad": 1}), TypeError, r"stride"),
        (lambda A, W, b, hp: (A, W, b, {"stride": 1}), ValueError, r"missing key\(s\) \['pad'\]"),
        (lambda A, W, b, hp: (A, W, b, {"strides": 1, "pad": 0}), ValueError, r"unknown key 'strides'; did you mean 'stride'"),
        (lambda A, W, b, hp: (A, W, b, {"stride": 1, "pad": 0, "p": 1}), ValueError, r"unknown key 'p' expected keys"),
        (lambda A, W, b, hp: (A[:, :0], W, b, hp), ValueError, r"at least one pixel and channel \(m = 0 examples is allowed\), got shape \(2, 0, 5, 3\)"),
        (lambda A, W, b, hp: (A, W, b, [1, 1]), TypeError, r"hparameters must be a dict"),
        (lambda A, W, b, hp: (A[:, :1, :1], W, b, {"stride": 1, "pad": 0}), ValueError, r"filter \(3, 3\) is larger than the padded input \(1, 1\)"),
        (lambda A, W, b, hp: (A.astype(complex), W, b, hp), TypeError, r"A_prev must be a real array, got complex"),
        (lambda A, W, b, hp: (A.astype(str), W, b, hp), TypeError, r"A_prev must be a numeric array"),
        (lambda A, W, b, hp: (A, np.array(W, dtype=object), b, hp), TypeError, r"W must be a numeric array"),
    ],
)
def test_conv_forward_errors(mutate, exc, pattern):
    args = mutate(*conv_args(), dict(HP))
    with pytest.raises(exc, match=pattern):
        fastnn.conv_forward(*args)


def test_conv_backward_errors():
    A, W, b = conv_args()
    Z, cache = fastnn.conv_forward(A, W, b, HP)
    with pytest.raises(ValueError, match=r"dZ must have the shape of the forward output \(2, 5, 5, 4\), got \(2, 5, 5, 3\)"):
        fastnn.conv_backward(Z[..., :3], cache)
    with pytest.raises(ValueError, match=r"cache must be the tuple \(A_prev, W, b, hparameters\)"):
        fastnn.conv_backward(Z, cache[:3])
    with pytest.raises(TypeError, match="dZ must be a real array"):
        fastnn.conv_backward(Z.astype(complex), cache)


@pytest.mark.parametrize(
    "args, exc, pattern",
    [
        # groups that do not divide the channels, or W not of the grouped shape
        (((2, 5, 5, 6), (3, 3, 2, 4), {"groups": 4}), ValueError,
         r"hparameters\['groups'\] = 4 must divide the input channels \(6\) and the output channels \(4\)"),
        (((2, 5, 5, 6), (3, 3, 2, 4), {"groups": 2}), ValueError,
         r"W.shape\[2\] = 2, expected 6 // 2 = 3"),
        (((2, 5, 5, 6), (3, 3, 1, 6), {"groups": 0}), ValueError, r"hparameters\['groups'\] must be a positive int \(>= 1\), got 0"),
        (((2, 5, 5, 6), (3, 3, 3, 6), {"groups": 2.0}), TypeError, r"hparameters\['groups'\] must be a positive int, got 2.0"),
        (((2, 5, 5, 6), (3, 3, 3, 6), {"groups": True}), TypeError, r"hparameters\['groups'\]"),
        # dilation < 1, and a window larger than the padded input once dilated
        (((2, 5, 5, 3), (3, 3, 3, 4), {"dilation": 0}), ValueError, r"hparameters\['dilation'\] must be positive \(>= 1\)"),
        (((2, 5, 5, 3), (3, 3, 3, 4), {"dilation": (1, 4)}), ValueError,
         r"filter \(3, 3\) dilated to \(3, 9\) is larger than the padded input \(7, 7\)"),
        # paddings: unknown strings, negative or malformed pairs
        (((2, 5, 5, 3), (3, 3, 3, 4), {"pad": "full"}), ValueError,
         r"hparameters\['pad'\] must be an int, an \(h, w\) pair, \(\(top, bottom\), \(left, right\)\), 'valid' or 'same', got 'full'"),
        (((2, 5, 5, 3), (3, 3, 3, 4), {"pad": ((1, -1), (0, 0))}), ValueError, r"pad'\]\[0\] \(top, bottom\) must be non-negative"),
        (((2, 5, 5, 3), (3, 3, 3, 4), {"pad": ((1, 2, 3), (0, 0))}), ValueError, r"pad'\]\[0\] \(top, bottom\) must be an int or an \(h, w\) pair"),
        (((2, 5, 5, 3), (3, 3, 3, 4), {"pad": None}), TypeError, r"hparameters\['pad'\] must be an int, an \(h, w\) pair"),
        # layouts: unknown, and W (or b) not of the layout's shape
        (((2, 5, 5, 3), (3, 3, 3, 4), {"layout": "nhwc"}), ValueError, r"hparameters\['layout'\] must be one of \['NHWC', 'NCHW'\], got 'nhwc'"),
        (((2, 3, 5, 5), (4, 2, 3, 3), {"layout": "NCHW"}), ValueError, r"W.shape\[1\] = 2, A_prev.shape\[1\] = 3"),
    ],
)
def test_conv_option_errors(args, exc, pattern):
    """The options beyond the course get the same kind of error: the argument, what was expected, what came."""
    a_shape, w_shape, extra = args
    hp = {"stride": 1, "pad": 1, **extra}
    K = w_shape[0] if hp.get("layout") == "NCHW" else w_shape[3]
    with pytest.raises(exc, match=pattern):
        fastnn.conv_forward(np.zeros(a_shape), np.zeros(w_shape), np.zeros(K), hp)


@pytest.mark.parametrize(
    "hp, pattern",
    [
        ({"f": 2, "stride": 2, "ceil_mode": 1}, r"hparameters\['ceil_mode'\] must be True or False, got 1"),
        ({"f": 2, "stride": 2, "count_include_pad": "no"}, r"hparameters\['count_include_pad'\] must be True or False"),
        ({"f": 3, "stride": 2, "pad": ((1, 2), (0, 0))}, r"pooling pad must be at most half the window: pad \(\(1, 2\), \(0, 0\)\)"),
        ({"f": 2, "stride": 2, "layout": "CHW"}, r"hparameters\['layout'\] must be one of"),
        ({"f": 2, "stride": 2, "pad": "half"}, r"hparameters\['pad'\] must be an int, an \(h, w\) pair"),
    ],
)
def test_pool_option_errors(hp, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        fastnn.pool_forward(np.zeros((2, 5, 5, 3)), hp, "average")


def test_nchw_shape_errors_speak_nchw():
    A, W, b = np.zeros((2, 3, 6, 6)), np.zeros((4, 3, 3, 3)), np.zeros(4)
    hp = {"stride": 1, "pad": 1, "layout": "NCHW"}
    Z, cache = fastnn.conv_forward(A, W, b, hp)
    assert Z.shape == (2, 4, 6, 6)
    with pytest.raises(ValueError, match=r"dZ must have the shape of the forward output \(2, 4, 6, 6\), got \(2, 6, 6, 4\)"):
        fastnn.conv_backward(np.zeros((2, 6, 6, 4)), cache)
    with pytest.raises(ValueError, match=r"b must have shape \(4,\) \(or \(1, 4, 1, 1\)\), got \(1, 1, 1, 4\)"):
        fastnn.conv_forward(A, W, np.zeros((1, 1, 1, 4)), hp)
    out, pcache = fastnn.pool_forward(A, {"f": 2, "stride": 2, "layout": "NCHW"})
    assert out.shape == (2, 3, 3, 3)
    with pytest.raises(ValueError, match=r"dA must have the shape of the forward output \(2, 3, 3, 3\), got \(3, 3, 3\)"):
        fastnn.pool_backward(out[0], pcache)


def test_max_pooling_ignores_count_include_pad():
    """One hparameters dict serves both modes, as the course's notebook passes it."""
    A = np.random.RandomState(1).randn(2, 5, 5, 3)
    hp = {"f": 3, "stride": 2, "pad": 1, "count_include_pad": False}
    np.testing.assert_array_equal(fastnn.pool_forward(A, hp, "max")[0],
                                  fastnn.pool_forward(A, {"f": 3, "stride": 2, "pad": 1}, "max")[0])
    assert not np.array_equal(fastnn.pool_forward(A, hp, "average")[0],
                              fastnn.pool_forward(A, {"f": 3, "stride": 2, "pad": 1}, "average")[0])


# ------------------------------------------------------------------- pool errors


@pytest.mark.parametrize(
    "hp, mode, exc, pattern",
    [
        ({"f": 2, "stride": 2}, "min", ValueError, r"mode must be one of .*got 'min'"),
        ({"f": 2}, "max", ValueError, r"missing key\(s\) \['stride'\]"),
        ({"f": 2, "strid": 2}, "max", ValueError, r"unknown key 'strid'; did you mean 'stride'"),
        ({"f": 2, "stride": 2, "padd": 1}, "max", ValueError, r"unknown key 'padd'; did you mean 'pad'"),
        ({"f": 0, "stride": 2}, "max", ValueError, r"hparameters\['f'\] must be positive"),
        ({"f": 9, "stride": 1}, "max", ValueError, r"pooling window \(9, 9\) is larger than the padded input \(5, 5\)"),
        ({"f": 2, "stride": 0}, "average", ValueError, r"stride'\] must be positive"),
        ({"f": 2, "stride": 1, "pad": 2}, "max", ValueError, r"pooling pad must be at most half the window"),
    ],
)
def test_pool_errors(hp, mode, exc, pattern):
    A = np.zeros((2, 5, 5, 3))
    with pytest.raises(exc, match=pattern):
        fastnn.pool_forward(A, hp, mode)


def test_pool_backward_errors():
    A = np.random.RandomState(0).randn(2, 6, 6, 3)
    out, cache = fastnn.pool_forward(A, {"f": 2, "stride": 2})
    with pytest.raises(ValueError, match=r"dA must have the shape of the forward output \(2, 3, 3, 3\), got \(2, 3, 3\)"):
        fastnn.pool_backward(out[..., 0], cache)
    with pytest.raises(ValueError, match=r"ties must be one of"):
        fastnn.pool_backward(out, cache, ties="last")
    with pytest.raises(ValueError, match=r"cache must be the tuple \(A_prev, hparameters\)"):
        fastnn.pool_backward(out, (A,))


def test_more_clear_errors():
    with pytest.raises(ValueError, match=r"pool: hparameters has an unknown key 'p'"):
        fastnn.pool_forward(np.zeros((1, 4, 4, 1)), {"f": 2, "stride": 2, "p": 1})
    with pytest.raises(ValueError, match="2-D A_prev and W"):
        fastnn.linear_backward(np.ones((1, 3)), (np.ones(3), np.ones((1, 3)), np.ones((1, 1))))
    with pytest.raises(ValueError, match="caches must hold one cache per layer"):
        fastnn.L_model_backward(np.array([[0.5]]), np.array([[1]]), [])
    with pytest.raises(TypeError, match="backend must be a backend name"):
        fastnn.relu(np.ones(2), backend=["numba"])
    with pytest.raises(TypeError, match="layer_dims must be integers"):
        fastnn.initialize_parameters_deep([2.7, 3])
    assert fastnn.distribute_value(2.0, np.int64(2)).shape == (2, 2)
    big_endian = np.ones(3, dtype=">f4")
    assert fastnn.relu(big_endian)[0].dtype == np.float32


def test_float32_dense_training_stays_float32_with_integer_labels():
    X = np.random.RandomState(0).rand(4, 5).astype(np.float32)
    Y = np.array([[1, 0, 1, 0, 1]])
    params = fastnn.L_layer_model(X, Y, [4, 3, 1], num_iterations=2, seed=1)
    assert {v.dtype for v in params.values()} == {np.dtype(np.float32)}
    AL, caches = fastnn.L_model_forward(X, params)
    assert fastnn.compute_cost(AL, Y).dtype == np.float32
    assert {g.dtype for g in fastnn.L_model_backward(AL, Y, caches).values()} == {np.dtype(np.float32)}
    new = fastnn.update_parameters(params, fastnn.L_model_backward(AL, Y, caches), np.float64(0.1))
    assert {v.dtype for v in new.values()} == {np.dtype(np.float32)}


def test_activation_errors():
    with pytest.raises(ValueError, match=r"dA must have the shape of the cached Z \(2, 3\), got \(3, 2\)"):
        fastnn.relu_backward(np.ones((3, 2)), np.ones((2, 3)))
    with pytest.raises(TypeError, match="Z must be a real array"):
        fastnn.sigmoid(np.ones(3, dtype=complex))
    with pytest.raises(ValueError, match="activation must be one of"):
        fastnn.linear_activation_forward(np.ones((2, 1)), np.ones((1, 2)), np.ones((1, 1)), "tanh")
    with pytest.raises(ValueError, match=r"W's columns must match A's rows"):
        fastnn.linear_forward(np.ones((3, 1)), np.ones((1, 2)), np.ones((1, 1)))


def test_zero_pad_errors():
    with pytest.raises(ValueError, match="pad must be non-negative"):
        fastnn.zero_pad(np.ones((1, 2, 2, 1)), -1)
    with pytest.raises(ValueError, match="X must be 4-D"):
        fastnn.zero_pad(np.ones((2, 2)), 1)


# ------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtypes, expected, expected_A_alone",
    [
        ((np.float32, np.float32, np.float32), np.float32, np.float32),
        ((np.float64, np.float64, np.float64), np.float64, np.float64),
        ((np.int64, np.int64, np.int64), np.float64, np.float64),
        ((np.bool_, np.int32, np.int8), np.float64, np.float64),
        ((np.float32, np.float64, np.float32), np.float64, np.float32),  # NumPy promotion
        ((np.float16, np.float16, np.float16), np.float32, np.float32),
        ((np.uint8, np.float32, np.float32), np.float32, np.float64),
        ((">f8", ">f8", ">f8"), np.float64, np.float64),  # computed (and returned) in native byte order
        ((">f4", np.float32, ">f4"), np.float32, np.float32),
    ],
)
def test_output_dtype_follows_input(backend, dtypes, expected, expected_A_alone):
    A, W, b = conv_args()
    A, W, b = (x.astype(dt) for x, dt in zip((A, W, b), dtypes))
    Z, cache = fastnn.conv_forward(A, W, b, HP, backend=backend)
    assert Z.dtype == expected
    for g in fastnn.conv_backward(Z, cache, backend=backend):
        assert g.dtype == expected
    P, pc = fastnn.pool_forward(A, {"f": 2, "stride": 2}, backend=backend)
    assert P.dtype == expected_A_alone
    assert fastnn.pool_backward(P, pc, backend=backend).dtype == expected_A_alone
    assert fastnn.relu(A, backend=backend)[0].dtype == expected_A_alone
    assert fastnn.sigmoid(A, backend=backend)[0].dtype == expected_A_alone
    assert fastnn.zero_pad(A, 1, backend=backend).dtype == expected_A_alone


def test_mixed_dtype_backward_promotes():
    A, W, b = (x.astype(np.float32) for x in conv_args())
    Z, cache = fastnn.conv_forward(A, W, b, HP)
    assert all(g.dtype == np.float64 for g in fastnn.conv_backward(Z.astype(np.float64), cache))


def test_float32_path_has_no_float64_buffers(monkeypatch):
    """Every array a kernel receives in a float32 call is float32."""
    from fastnn import _dispatch

    seen = []
    original = _dispatch.resolve

    def spy(op, backend=None, p=None):
        fn = original(op, backend, p)

        def wrapped(*args):
            seen.extend((op, a.dtype) for a in args if isinstance(a, np.ndarray))
            return fn(*args)

        return wrapped

    import fastnn._lower
    import fastnn.activations

    monkeypatch.setattr(fastnn._lower, "resolve", spy)
    monkeypatch.setattr(fastnn.activations, "resolve", spy)
    A, W, b = (x.astype(np.float32) for x in conv_args())
    Z, cache = fastnn.conv_forward(A, W, b, HP)
    fastnn.conv_backward(Z, cache)
    P, pc = fastnn.pool_forward(Z, {"f": 2, "stride": 1})
    fastnn.pool_backward(P, pc)
    fastnn.relu_backward(*fastnn.relu(Z))
    fastnn.sigmoid_backward(*fastnn.sigmoid(Z))
    assert len({op for op, _ in seen}) == 8
    assert {dt for _, dt in seen} == {np.dtype(np.float32)}


# ------------------------------------------------------------ NaN, Inf, mutation
# Every backend is held to the ground truth's NaN/Inf propagation and to never modifying its
# inputs by the conformance suite (kinds "nan" and "mutation", tests/test_matrix.py; the dense
# functions' by tests/test_conformance.py::test_the_course_dense_functions_pass). Here: the
# ground truth's own propagation, which that suite takes as given.


def test_the_ground_truth_propagates_nan_and_inf():
    A, W, b = conv_args()
    A[0, 2, 2, 0] = np.nan
    A[1, 0, 0, 1] = np.inf
    Z, _ = fastnn.conv_forward(A, W, b, HP, backend=REF)
    assert np.isnan(Z[0, 1:4, 1:4]).all() and np.isnan(Z[0]).sum() == 9 * 4  # the windows holding the NaN
    assert np.isinf(Z[1, :2, :2]).all() and not np.isnan(Z[1]).any()
    for mode in ("max", "average"):
        P, _ = fastnn.pool_forward(A, {"f": 2, "stride": 1}, mode, backend=REF)
        assert np.isnan(P[0, 1:3, 1:3, 0]).all() and np.isposinf(P[1, 0, 0, 1])
    r, _ = fastnn.relu(np.array([np.nan, -1.0, 2.0]), backend=REF)
    assert np.isnan(r[0]) and r[1:].tolist() == [0.0, 2.0]


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("hp", [{"f": 2, "stride": 2}, {"f": 3, "stride": 1}, {"f": 2, "stride": 3}, {"f": 3, "stride": 2, "pad": 1}])
def test_the_ground_truth_propagates_non_finite_gradients(hp):
    """inf and NaN in dA reach dA_prev as in the course's `mask * dA` (0 * inf = NaN)."""
    rng = np.random.RandomState(7)
    A = rng.randn(2, 7, 7, 9)
    out, cache = fastnn.pool_forward(A, hp, "max", backend=REF)
    dA = rng.randn(*out.shape)
    dA[0, 0, 0, :3] = [np.inf, -np.inf, np.nan]
    for mode in ("max", "average"):
        for ties in ("all", "first"):
            got = fastnn.pool_backward(dA, cache, mode, ties=ties, backend=REF)
            assert np.isnan(got[0, :, :, 2]).any() and not np.isnan(got[1]).any(), (mode, ties)
    Ac, W, b = conv_args(m=2, H=6, W=6, C=3, f=3, K=4)
    Z, ccache = fastnn.conv_forward(Ac, W, b, {"stride": 2, "pad": 2}, backend=REF)
    dZ = rng.randn(*Z.shape)
    dZ[1, 0, 0, 0] = np.nan
    dA_prev, dW, db = fastnn.conv_backward(dZ, ccache, backend=REF)
    db = db.ravel()
    assert np.isnan(db[0]) and not np.isnan(db[1:]).any()
    assert not np.isnan(dA_prev[0]).any() and np.isnan(dA_prev[1]).any()


def test_hparameters_pairs_and_int_agree():
    A, W, b = conv_args()
    Z1, _ = fastnn.conv_forward(A, W, b, {"stride": 1, "pad": 1})
    Z2, _ = fastnn.conv_forward(A, W, b, {"stride": (1, 1), "pad": [1, 1]})
    Z3, _ = fastnn.conv_forward(A, W, b, {"stride": np.int64(1), "pad": np.int32(1)})
    np.testing.assert_array_equal(Z1, Z2)
    np.testing.assert_array_equal(Z1, Z3)
    P1, _ = fastnn.pool_forward(A, {"f": 2, "stride": 2})
    P2, _ = fastnn.pool_forward(A, {"f": (2, 2), "stride": (2, 2)}, mode="max")
    np.testing.assert_array_equal(P1, P2)
    avg, _ = fastnn.pool_forward(A, {"f": 2, "stride": 2}, mode="avg")
    np.testing.assert_array_equal(avg, fastnn.pool_forward(A, {"f": 2, "stride": 2}, mode="average")[0])


def test_accepts_lists_and_flat_bias():
    A, W, b = conv_args(m=1, H=3, W=3, C=1, f=2, K=2)
    Z1, _ = fastnn.conv_forward(A.tolist(), W.tolist(), b.ravel(), {"stride": 1, "pad": 0})
    Z2, _ = fastnn.conv_forward(A, W, b, {"stride": 1, "pad": 0})
    np.testing.assert_allclose(Z1, Z2, rtol=1e-15)
    _, cache = fastnn.conv_forward(A, W, b.ravel(), {"stride": 1, "pad": 0})
    assert fastnn.conv_backward(Z2, cache)[2].shape == (2,)


def test_params_kept_for_a_repeated_call_are_the_ones_its_checks_give(monkeypatch):
    """A call that repeats a key gets the params built the first time (the same object); a key
    holds the values' types (True is not 1 to the checks), the shapes and dtypes of every array;
    a dict changed in place gets its new values; what has no key (lists, NumPy ints) is built
    each time and still checked; failed calls are never kept; the store is bounded."""
    from fastnn import _params as P

    monkeypatch.setattr(P, "_BUILT", {})
    A, W, b = conv_args()
    hp = {"stride": 1, "pad": 1}
    p = P.conv_params(A, W, b, hp)
    assert P.conv_params(A, W, b, dict(hp)) is p and len(P._BUILT) == 1
    mixed = P.conv_params(A.astype(np.float32), W, b, hp)  # (promoted: equal params, a key of its own)
    assert mixed == p and mixed is not p and len(P._BUILT) == 2
    p32 = P.conv_params(A.astype(np.float32), W.astype(np.float32), b.astype(np.float32), hp)
    assert p32.dtype == np.float32 and p32 is not p
    assert P.conv_params(A[:1], W, b, hp).m == 1
    with pytest.raises(TypeError, match="stride"):
        P.conv_params(A, W, b, {"stride": True, "pad": 1})
    with pytest.raises(ValueError, match="b must have shape"):
        P.conv_params(A, W, b[..., :3], hp)
    hp["pad"] = 0
    assert P.conv_params(A, W, b, hp).Ho == 3
    hp["pad"] = [1, 1]  # (no key: built, and the same as the int's)
    assert P.conv_params(A, W, b, hp) == p
    n = len(P._BUILT)
    assert P.conv_params(A, W, b, {"stride": np.int64(1), "pad": 1}) == p and len(P._BUILT) == n
    hp = {"f": 2, "stride": 2, "ceil_mode": True}
    q = P.pool_params(A, hp, "max")
    assert P.pool_params(A, hp, "max") is q and P.pool_params(A, hp, "average").mode == "average"
    assert P.pool_params(A, hp, "max", "first").ties == "first"
    with pytest.raises(TypeError, match="ceil_mode"):
        P.pool_params(A, {"f": 2, "stride": 2, "ceil_mode": 1}, "max")
    with pytest.raises(TypeError, match="hparameters\\['f'\\]"):
        P.pool_params(A, {"f": True, "stride": 2}, "max")
    assert P.pool_params(A, {"f": 1, "stride": 2}, "max").fh == 1
    with pytest.raises(TypeError, match="hparameters\\['f'\\]"):
        P.pool_params(A, {"f": True, "stride": 2}, "max")
    assert all(v is not None for v in P._BUILT.values())
    monkeypatch.setattr(P, "_BUILT_MAX", 3)
    for pad in range(3):
        P.conv_params(A, W, b, {"stride": 1, "pad": pad})
    assert len(P._BUILT) <= 3
