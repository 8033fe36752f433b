import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from ottools import cost_matrix
from ottools._costs import METRICS, SCIPY_METRICS, cost_vjp


@given(st.integers(1, 20), st.integers(1, 20), st.integers(1, 4), st.integers(0, 2**31))
def test_sqeuclidean_equals_naive(n, m, d, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    naive = ((x[:, None] - y[None]) ** 2).sum(-1)
    np.testing.assert_allclose(cost_matrix(x, y), naive, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0])
def test_minkowski_is_the_distance_and_minkowski_p_its_power(rng, p):
    # "minkowski" is SciPy's and POT's distance; its p-th power has its own name.
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    naive = (np.abs(x[:, None] - y[None]) ** p).sum(-1)
    np.testing.assert_allclose(cost_matrix(x, y, "minkowski", p=p), naive ** (1 / p),
                               rtol=1e-12)
    np.testing.assert_allclose(cost_matrix(x, y, "minkowski", p=p), cdist(x, y, "minkowski", p=p),
                               rtol=1e-12)
    np.testing.assert_allclose(cost_matrix(x, y, "minkowski_p", p=p), naive, rtol=1e-12)


def test_minkowski_default_p_is_euclidean(rng):
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(6, 3))
    np.testing.assert_allclose(cost_matrix(x, y, "minkowski"), cdist(x, y), rtol=1e-12)
    np.testing.assert_allclose(cost_matrix(x, y, "minkowski_p"), cost_matrix(x, y), rtol=1e-12)


@pytest.mark.parametrize("metric", SCIPY_METRICS)
def test_every_cdist_metric_matches_scipy(rng, metric):
    # Positive coordinates (jensenshannon needs them), some exact zeros and ties (for the
    # boolean metrics), and enough points for mahalanobis' covariance.
    x = rng.integers(0, 3, size=(6, 3)) + rng.random((6, 3)) * (rng.random((6, 3)) < 0.5)
    y = rng.integers(0, 3, size=(5, 3)) + rng.random((5, 3)) * (rng.random((5, 3)) < 0.5)
    x[0] = [1.0, 2.0, 0.5]  # no zero vector: braycurtis, dice, ... are defined everywhere
    y[0] = [0.5, 1.0, 2.0]
    x[np.ptp(x, axis=1) == 0] = [1.0, 2.0, 0.5]  # no constant row (correlation)
    y[np.ptp(y, axis=1) == 0] = [2.0, 0.5, 1.0]
    ours = cost_matrix(x, y, metric)
    np.testing.assert_allclose(ours, cdist(x, y, metric), rtol=1e-12, atol=1e-14)
    assert ours.dtype == np.float64
    assert cost_matrix(x.astype(np.float32), y.astype(np.float32), metric).dtype == np.float32


def test_metric_list_is_the_public_names():
    assert set(SCIPY_METRICS) <= set(METRICS) and "minkowski_p" in METRICS
    with pytest.raises(ValueError, match="braycurtis.*minkowski_p"):
        cost_matrix(np.zeros((2, 2)), np.zeros((2, 2)), "hamming2")


@pytest.mark.parametrize("metric", ["sqeuclidean", "minkowski_p"])
def test_overflowing_costs_raise_naming_points_and_metric(metric):
    x = np.array([[1e200, 0.0], [0.0, 0.0]])
    y = np.array([[0.0, 0.0], [-1e200, 1.0]])
    with pytest.raises(ValueError, match=rf"'{metric}' cost between `x` and `y` overflows "
                                         r"float64.*x\[0\]"):
        cost_matrix(x, y, metric)
    x32 = np.array([[1e20, 0.0]], dtype=np.float32)
    with pytest.raises(ValueError, match="overflows float32"):
        cost_matrix(x32, np.zeros((1, 2), np.float32), metric)


@pytest.mark.parametrize("metric, expected", [
    ("euclidean", [[1e200, 2e200], [0.0, 1e200]]),
    ("cityblock", [[1e200, 2e200], [0.0, 1e200 + 1.0]]),
    ("chebyshev", [[1e200, 2e200], [0.0, 1e200]]),
])
def test_huge_points_with_representable_distances_are_scaled(metric, expected):
    # Degree-1 metrics between points 1e200 apart: the distance is representable, so it is
    # returned (computed on the points scaled by a power of two), where cdist gives inf.
    x = np.array([[1e200, 0.0], [0.0, 0.0]])
    y = np.array([[0.0, 0.0], [-1e200, 1.0]])
    np.testing.assert_allclose(cost_matrix(x, y, metric), expected, rtol=1e-15)


@pytest.mark.parametrize("metric, p", [("euclidean", None), ("minkowski", 3.0),
                                       ("minkowski", 1.5), ("minkowski", 50.0),
                                       ("sqeuclidean", None), ("minkowski_p", 3.0),
                                       ("cityblock", None)])
@pytest.mark.parametrize("far", [1e100, 1e150, 1e200, 1e300, 1e-200])
def test_ordinary_distances_beside_a_point_of_extreme_magnitude(rng, metric, p, far):
    # One power of two for all points, from a point at 1e200, made the squares of the
    # rescaled distances near 1 underflow (1e-400): every such cost was 0, 0.4 % off at
    # 1e160, and emd with the far point at zero weight 0 instead of 0.595.
    x, y = rng.random((5, 3)), rng.random((4, 3))
    xf = x.copy()
    xf[0, 1] = far
    power = {"sqeuclidean": 2.0, "minkowski_p": p}.get(metric, 1.0)
    q = 2.0 if p is None else p
    exact = cdist(x[1:], y, "minkowski", p=1.0 if metric == "cityblock" else q) ** power
    kw = {} if p is None else {"p": p}
    if np.log10(far) * power > 308:  # the far point's own costs overflow
        with pytest.raises(ValueError, match="overflows"):
            cost_matrix(xf, y, metric, **kw)
        return
    C = cost_matrix(xf, y, metric, **kw)
    np.testing.assert_allclose(C[1:], exact, rtol=1e-13)
    if far > 1:  # (the other differences are below its rounding)
        np.testing.assert_allclose(C[0], far ** power, rtol=1e-13)
    else:
        np.testing.assert_allclose(C[0], cdist(xf[:1], y, "minkowski", p=q if metric !=
                                               "cityblock" else 1.0)[0] ** power,
                                   rtol=1e-13)
    a = np.array([0.0, 1.0, 1.0, 1.0, 1.0]) / 4
    from ottools import emd

    assert emd(a, None, C).fun == pytest.approx(emd(None, None, exact).fun, rel=1e-12)


@given(st.integers(0, 2**31), st.floats(1e91, 1e300),
       st.sampled_from([1.0, 1.5, 2.0, 7.0]))
@settings(deadline=None, max_examples=30)
def test_minkowski_of_mixed_magnitudes_is_cdist_of_the_pairs(seed, far, p):
    # each pair computed as cdist does where cdist neither overflows nor underflows
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(3, 3))
    x[0] *= far
    C = cost_matrix(x, y, "minkowski", p=p)
    np.testing.assert_allclose(C[1:], cdist(x[1:], y, "minkowski", p=p), rtol=1e-13)
    np.testing.assert_allclose(
        C[0], cdist(x[:1] / far, y / far, "minkowski", p=p)[0] * far, rtol=1e-13)


def test_tiny_points_euclidean_does_not_underflow():
    x = np.array([[1e-200, 0.0]])
    y = np.array([[0.0, 3e-200], [-1e-200, 1e-201]])
    expected = [[np.hypot(1e-200, 3e-200), np.hypot(2e-200, 1e-201)]]
    np.testing.assert_allclose(cost_matrix(x, y, "euclidean"), expected, rtol=1e-14)


def test_cosine_zero_vector_and_constant_correlation_are_one_not_nan(rng):
    x = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    y = np.array([[0.0, 0.0, 0.0], [3.0, 2.0, 1.0]])
    cos = cost_matrix(x, y, "cosine")
    np.testing.assert_array_equal(cos[0], [1.0, 1.0])
    np.testing.assert_array_equal(cos[:, 0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(cos[1:, 1], cdist(x[1:], y[1:], "cosine")[:, 0], rtol=1e-12)
    cor = cost_matrix(x, y, "correlation")
    np.testing.assert_array_equal(cor[2], [1.0, 1.0])  # constant row: centred to zero
    np.testing.assert_array_equal(cor[:, 0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(cor[1, 1], 2.0, rtol=1e-12)  # perfectly anti-correlated
    with pytest.raises(ValueError, match="`metric`='correlation' needs points of dimension"):
        cost_matrix([1.0, 2.0], [3.0], "correlation")


def test_named_metric_undefined_for_the_points_raises():
    with pytest.raises(ValueError, match=r"`metric`='braycurtis' is undefined .*x\[1\]"):
        cost_matrix([[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0]], "braycurtis")
    with pytest.raises(ValueError, match="`metric`='mahalanobis' cannot be evaluated"):
        cost_matrix(np.zeros((1, 3)), np.ones((1, 3)), "mahalanobis")


@pytest.mark.parametrize("bad, exc, match", [
    (lambda u, v: np.full((len(u), len(v)), np.nan), ValueError, r"`metric` returned a non-finite"),
    (lambda u, v: np.full((len(u), len(v)), np.inf), ValueError, r"`metric` returned a non-finite"),
    (lambda u, v: np.ones((len(u), len(v))) * (1 + 1j), ValueError, "`metric` returned complex"),
    (lambda u, v: np.ones((len(v), len(u))), ValueError, r"`metric` returned shape \(3, 2\)"),
    (lambda u, v: np.full((len(u), len(v)), "a"), TypeError, "`metric` must return real"),
])
def test_callable_metric_output_is_checked(bad, exc, match):
    with pytest.raises(exc, match=match):
        cost_matrix(np.zeros((2, 2)), np.ones((3, 2)), bad)


def test_dtype_and_callable(rng):
    x = rng.random((4, 2)).astype(np.float32)
    assert cost_matrix(x, x).dtype == np.float32
    assert cost_matrix(x, x.astype(np.float64)).dtype == np.float64
    c = cost_matrix(x, x, lambda u, v: np.abs(u[:, None, 0] - v[None, :, 0]))
    assert c.shape == (4, 4) and np.allclose(np.diag(c), 0)
    # 1-D input is n points in 1-D.
    np.testing.assert_allclose(cost_matrix([0.0, 1.0], [2.0]), [[4.0], [1.0]])


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((np.zeros((3, 2)), np.zeros((3, 3))), {}, ValueError, "same dimension"),
        ((np.zeros((3, 2)), np.zeros((3, 2))), {"metric": "hamming2"}, ValueError, "Unknown metric"),
        ((np.zeros((3, 2)), np.zeros((3, 2))), {"metric": 3}, TypeError, "`metric` must be"),
        ((np.zeros((3, 2)), np.zeros((3, 2))), {"metric": "minkowski", "p": 0.5}, ValueError, "`p` must be >= 1"),
        ((np.zeros((0, 2)), np.zeros((3, 2))), {}, ValueError, "`x` must not be empty"),
        ((np.full((2, 2), np.nan), np.zeros((3, 2))), {}, ValueError, "`x` must be finite"),
        ((np.zeros((2, 2, 2)), np.zeros((3, 2))), {}, ValueError, "`x` must be a 2-D array"),
        ((np.zeros((2, 2)), np.zeros((3, 2))), {"metric": lambda u, v: np.zeros(3)}, ValueError, "`metric` returned shape"),
    ],
)
def test_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cost_matrix(*args, **kwargs)


@pytest.mark.parametrize("metric", ["minkowski", "minkowski_p"])
def test_p_is_checked(metric):
    with pytest.raises(ValueError, match="`p` must be >= 1"):
        cost_matrix(np.zeros((2, 2)), np.zeros((3, 2)), metric, p=0.5)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cityblock", "cosine",
                                    lambda u, v: cdist(u, v)])
@pytest.mark.parametrize("p", [3, 2.0, 0.5])
def test_p_with_a_metric_without_exponent_is_refused(rng, metric, p):
    # cost_matrix(x, y, p=3) returned the squared Euclidean cost: p was ignored (as
    # PointCloud does, the call is refused)
    x, y = rng.random((4, 2)), rng.random((3, 2))
    with pytest.raises(TypeError, match=r"`p` is only used with metric='minkowski'"):
        cost_matrix(x, y, metric, p=p)
    assert cost_matrix(x, y, metric).shape == (4, 3)


# ----------------------------------------------------------------------------- cost_vjp

VJP_CASES = [("sqeuclidean", None), ("euclidean", None), ("cityblock", None),
             ("chebyshev", None), ("minkowski", 1.5), ("minkowski", 3.0), ("minkowski", None),
             ("minkowski_p", 1.5), ("minkowski_p", 3.0), ("cosine", None),
             ("correlation", None), ("l1", None)]


def _central_differences(fun, z, h=1e-6):
    g = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = h
        g[idx] = (fun(z + e) - fun(z - e)) / (2 * h)
    return g


@pytest.mark.parametrize("metric, p", VJP_CASES)
def test_cost_vjp_matches_central_differences(rng, metric, p):
    # Points in general position: every metric is differentiable there (no ties, no zeros).
    n, m, d = 4, 5, 3
    x, y, P = rng.normal(size=(n, d)), rng.normal(size=(m, d)), rng.random((n, m))
    kw = {} if p is None else {"p": p}

    def total(u, v):
        return np.sum(P * cost_matrix(u, v, metric, **kw))

    gx, gy = cost_vjp(P, x, y, metric, p)
    np.testing.assert_allclose(gx, _central_differences(lambda u: total(u, y), x),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gy, _central_differences(lambda v: total(x, v), y),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("metric, p", VJP_CASES)
def test_cost_vjp_blocks_and_sparse_plans_agree(rng, metric, p):
    import scipy.sparse as sp

    x, y, P = rng.normal(size=(7, 3)), rng.normal(size=(4, 3)), rng.random((7, 4))
    P[P < 0.4] = 0.0
    full = cost_vjp(P, x, y, metric, p, block_rows=7)
    for blocks in (1, 3):
        for plan in (P, sp.csc_matrix(P)):
            got = cost_vjp(plan, x, y, metric, p, block_rows=blocks)
            np.testing.assert_allclose(got[0], full[0], rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(got[1], full[1], rtol=1e-13, atol=1e-15)


def test_cost_vjp_nondifferentiable_points_give_subgradients():
    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0, 0.0], [3.0, 1.0]])
    P = np.eye(2)
    for metric in ("euclidean", "cityblock", "minkowski", "chebyshev"):
        gx, gy = cost_vjp(P, x, y, metric)
        np.testing.assert_array_equal(gx[0], [0.0, 0.0])  # x_0 = y_0
        assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))
    gx, _ = cost_vjp(P, x, y, "chebyshev")
    np.testing.assert_array_equal(gx[1], [-1.0, 0.0])  # |x_1 - y_1| largest in coordinate 0
    z = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5]])
    gx, gy = cost_vjp(np.ones((2, 2)), z, z[::-1], "cosine")
    np.testing.assert_array_equal(gx[0], 0.0)  # the zero vector's cost is the constant 1
    assert np.all(np.isfinite(gy))


def test_cost_vjp_dtype_and_unsupported_metrics(rng):
    x, y = rng.random((3, 2)).astype(np.float32), rng.random((2, 2)).astype(np.float32)
    gx, gy = cost_vjp(np.ones((3, 2), np.float32), x, y, "euclidean")
    assert gx.dtype == gy.dtype == np.float32
    with pytest.raises(NotImplementedError, match="callable `metric`"):
        cost_vjp(np.ones((3, 2)), x, y, lambda u, v: u @ v.T)
    with pytest.raises(NotImplementedError, match="no gradient formula for metric 'hamming'"):
        cost_vjp(np.ones((3, 2)), x, y, "hamming")
    with pytest.raises(ValueError, match="Unknown metric"):
        cost_vjp(np.ones((3, 2)), x, y, "nope")


def test_cost_vjp_memory_stays_in_blocks(rng):
    import tracemalloc

    n, m, d = 6000, 200, 3  # a full (n, m, d) difference tensor would take 28.8 MB
    x, y, P = rng.random((n, d)), rng.random((m, d)), rng.random((n, m))
    for metric in ("euclidean", "cosine"):
        tracemalloc.start()
        try:
            cost_vjp(P, x, y, metric)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 0.5 * n * m * d * 8, (metric, peak)


@given(n=st.integers(1, 40), m=st.integers(1, 40), d=st.integers(1, 18),
       dtype=st.sampled_from([np.float32, np.float64]), transposed=st.booleans(),
       need_y=st.booleans(), seed=st.integers(0, 2**32 - 1))
@settings(deadline=None, max_examples=40)
def test_sqeuclidean_vjp_one_pass_is_the_formula(n, m, d, dtype, transposed, need_y, seed):
    """The one-pass VJP (d <= 16; matrix products above) equals 2 (diag(P1) x - P y) and
    2 (diag(P^T 1) y - P^T x) computed in float64, for C- and F-ordered plans, in the
    input dtype; ``need_y=False`` skips grad_y (None) where the kernel runs."""


    r = np.random.default_rng(seed)
    P = r.random((n, m)).astype(dtype)
    if transposed:
        P = np.ascontiguousarray(P.T).T
    x, y = r.normal(size=(n, d)).astype(dtype), r.normal(size=(m, d)).astype(dtype)
    gx, gy = cost_vjp(P, x, y, "sqeuclidean", need_y=need_y)
    P64, x64, y64 = P.astype(np.float64), x.astype(np.float64), y.astype(np.float64)
    rx = 2 * (P64.sum(1)[:, None] * x64 - P64 @ y64)
    ry = 2 * (P64.sum(0)[:, None] * y64 - P64.T @ x64)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert gx.dtype == np.dtype(dtype)
    np.testing.assert_allclose(gx, rx, rtol=tol, atol=tol * np.abs(rx).max())
    if gy is None:
        assert not need_y and d <= 16
    else:
        assert gy.dtype == np.dtype(dtype)
        np.testing.assert_allclose(gy, ry, rtol=tol, atol=tol * np.abs(ry).max())


@given(n=st.integers(1, 60), d=st.integers(1, 20),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
@settings(deadline=None, max_examples=30)
def test_sqeuclidean_self_cost_is_exactly_symmetric(n, d, dtype, seed):
    """cost_matrix(x, x) has an exactly zero diagonal and, where ``exactly_symmetric``
    says so, C == C.T to the bit (what lets the divergence skip its symmetry check);
    it equals SciPy's cdist in float64."""
    from ottools._costs import exactly_symmetric

    x = np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)
    C = cost_matrix(x, x)
    assert C.dtype == np.dtype(dtype)
    assert np.all(np.diag(C) == 0)
    if exactly_symmetric("sqeuclidean", d):
        np.testing.assert_array_equal(C, C.T)
    ref = cdist(x.astype(np.float64), x.astype(np.float64), "sqeuclidean")
    np.testing.assert_allclose(C, ref, rtol=1e-12 if dtype == np.float64 else 1e-6,
                               atol=1e-300)
