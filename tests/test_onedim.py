import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from ottools import wasserstein_1d

from _reference import wasserstein_1d_pp


def _tol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12


@pytest.mark.parametrize("n, m", [(1, 1), (7, 7), (50, 13), (13, 50)])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_scipy_p1(rng, dtype, n, m, weighted):
    u = rng.normal(size=n).astype(dtype)
    v = (rng.normal(size=m) * 2 + 1).astype(dtype)
    a = rng.random(n).astype(dtype) if weighted else None
    b = rng.random(m).astype(dtype) if weighted else None
    got = wasserstein_1d(u, v, a, b)
    ref = scipy.stats.wasserstein_distance(u.astype(float), v.astype(float),
                                           None if a is None else a.astype(float),
                                           None if b is None else b.astype(float))
    assert got.dtype == dtype
    assert got == pytest.approx(ref, rel=_tol(dtype), abs=_tol(dtype))


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_pot_p2(rng, weighted):
    ot = pytest.importorskip("ot")
    u, v = rng.normal(size=40), rng.exponential(size=25)
    a = rng.random(40) if weighted else None
    b = rng.random(25) if weighted else None
    ref = ot.wasserstein_1d(u, v, None if a is None else a / a.sum(),
                            None if b is None else b / b.sum(), p=2)  # POT returns W_p^p
    assert wasserstein_1d(u, v, a, b, p=2) ** 2 == pytest.approx(ref, rel=1e-12)


@given(
    n=st.integers(1, 30), m=st.integers(1, 30), p=st.sampled_from([1.0, 1.5, 2.0, 3.0]),
    seed=st.integers(0, 2**31), ties=st.booleans(), zeros=st.booleans(),
)
def test_matches_naive_quantile_integral(n, m, p, seed, ties, zeros):
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=n), rng.normal(size=m)
    if ties:  # repeated support points
        u, v = np.round(u), np.round(v)
    a, b = rng.random(n) + 0.01, rng.random(m) + 0.01
    if zeros and n > 1:
        a[0] = 0.0
    got = wasserstein_1d(u, v, a, b, p=p) ** p
    assert got == pytest.approx(wasserstein_1d_pp(u, v, a, b, p), rel=1e-10, abs=1e-12)


def test_columns_are_independent_problems(rng, dtype):
    U = rng.normal(size=(30, 4)).astype(dtype)
    V = rng.normal(size=(20, 4)).astype(dtype)
    b = rng.random(20).astype(dtype)
    got = wasserstein_1d(U, V, None, b, p=2)
    assert got.shape == (4,) and got.dtype == dtype
    ref = [wasserstein_1d(U[:, k], V[:, k], None, b, p=2) for k in range(4)]
    np.testing.assert_allclose(got, ref, rtol=_tol(dtype))


def test_equal_uniform_fast_path_matches_general(rng):
    u, v = rng.normal(size=64), rng.normal(size=64)
    # equal weights take the pairing path; slightly perturbed weights take the merge
    w = np.ones(64)
    w2 = w.copy()
    w2[0] += 1e-12
    assert wasserstein_1d(u, v, w, w, p=3) == pytest.approx(
        wasserstein_1d(u, v, w2, w2, p=3), rel=1e-9)
    assert wasserstein_1d(u, v, p=3) ** 3 == pytest.approx(wasserstein_1d_pp(u, v, p=3),
                                                          rel=1e-12)


def test_metric_sanity(rng):
    u, v, w = rng.normal(size=20), rng.normal(size=15) + 1, rng.normal(size=10) - 1
    assert wasserstein_1d(u, u) == 0.0
    assert wasserstein_1d(u, v, p=2) == pytest.approx(wasserstein_1d(v, u, p=2), rel=1e-14)
    assert wasserstein_1d(u, w, p=2) <= wasserstein_1d(u, v, p=2) + wasserstein_1d(v, w, p=2)
    # translation: W_p(mu, mu + c) = |c| for every p
    assert wasserstein_1d(u, u + 2.5, p=1.7) == pytest.approx(2.5, rel=1e-12)


def test_integers_become_float64():
    assert wasserstein_1d([0, 1, 2], [1, 2, 3]).dtype == np.float64


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(u_values=[], v_values=[1.0]), ValueError, "`u_values` must not be empty"),
    (dict(u_values=[np.nan], v_values=[1.0]), ValueError, "`u_values` must be finite"),
    (dict(u_values=[1.0], v_values=[[1.0]]), ValueError, "same number of dimensions"),
    (dict(u_values=np.ones((2, 2)), v_values=np.ones((2, 3))), ValueError, "columns"),
    (dict(u_values=[1.0], v_values=[1.0], p=0.5), ValueError, "`p` must be >= 1"),
    (dict(u_values=[1.0], v_values=[1.0], p="2"), TypeError, "`p` must be a real"),
    (dict(u_values=[1.0, 2.0], v_values=[1.0], u_weights=[1.0]), ValueError,
     "`u_weights` must have length 2"),
    (dict(u_values=[1.0, 2.0], v_values=[1.0], u_weights=[1.0, -1.0]), ValueError,
     "`u_weights` must be non-negative"),
    (dict(u_values=["a"], v_values=[1.0]), TypeError, "`u_values` must hold real"),
])
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        wasserstein_1d(**kwargs)


# ------------------------------------------------- scaled form: overflow, underflow, p

@pytest.mark.parametrize("scale", [1e200, 1e-200])
@pytest.mark.parametrize("p, weighted", [(2, False), (1.5, True), (3, False)])
def test_scaled_form_for_huge_and_tiny_coordinates(rng, scale, p, weighted):
    # |u - v|^p overflows (or underflows) in float64 while W_p is representable
    u, v = rng.normal(size=30), rng.normal(size=(30 if not weighted else 20)) + 1
    a = rng.random(30) if weighted else None
    b = rng.random(20) if weighted else None
    ref = wasserstein_1d(u, v, a, b, p=p)
    got = wasserstein_1d(u * scale, v * scale, a, b, p=p)
    assert np.isfinite(got) and got > 0
    assert got == pytest.approx(ref * scale, rel=1e-13)


def test_large_p_is_finite_and_tends_to_w_infinity(rng):
    u, v = rng.normal(size=40), rng.normal(size=40) + 0.5
    d = np.abs(np.sort(u) - np.sort(v))
    top = d.max()
    for p in (1e3, 1e6):
        got = wasserstein_1d(u, v, p=p)
        # W_p = top * (mean (d / top)^p)^(1/p), evaluated in the same scaled form
        ref = top * np.mean((d / top) ** p) ** (1 / p)
        assert np.isfinite(got) and got == pytest.approx(ref, rel=1e-12)
    assert wasserstein_1d(u, v, p=1e6) == pytest.approx(top, rel=1e-4)  # -> W_inf


def test_large_p_weighted_matches_scaled_naive(rng):
    u, v = rng.normal(size=12), rng.normal(size=9)
    a, b = rng.random(12), rng.random(9)
    p = 500.0
    got = wasserstein_1d(u, v, a, b, p=p)
    # the naive quantile integral on values divided by the result stays in range
    assert wasserstein_1d_pp(u / got, v / got, a, b, p) == pytest.approx(1.0, rel=1e-10)


def test_distance_beyond_the_float_range_raises():
    with pytest.raises(ValueError, match="exceeds the range of float64"):
        wasserstein_1d([-1.5e308, 0.0], [1.5e308, 1.0e308])
    with pytest.raises(ValueError, match="exceeds the range of float32"):
        wasserstein_1d(np.float32([-3e38]), np.float32([3e38]))


# ---------------------------------------------------------------------------- batches

@pytest.mark.parametrize("weights", ["none", "shared", "per-problem"])
def test_row_batch_equals_loop_exactly(rng, dtype, weights):
    U = rng.normal(size=(5, 30)).astype(dtype)
    V = (rng.normal(size=(5, 20)) + 1).astype(dtype)
    if weights == "none":
        A = B = None
        loop = [wasserstein_1d(U[k], V[k], p=1.5) for k in range(5)]
    elif weights == "shared":
        A, B = rng.random(30).astype(dtype), rng.random(20).astype(dtype)
        loop = [wasserstein_1d(U[k], V[k], A, B, p=1.5) for k in range(5)]
    else:
        A, B = rng.random((5, 30)).astype(dtype), rng.random((5, 20)).astype(dtype)
        loop = [wasserstein_1d(U[k], V[k], A[k], B[k], p=1.5) for k in range(5)]
    got = wasserstein_1d(U, V, A, B, p=1.5, axis=1)
    assert got.shape == (5,) and got.dtype == dtype
    np.testing.assert_array_equal(got, np.array(loop, dtype=dtype))
    # the same problems as columns (axis=0), weights transposed alike
    cols = wasserstein_1d(U.T, V.T, None if A is None or A.ndim == 1 else A.T,
                          None if B is None or B.ndim == 1 else B.T, p=1.5) \
        if weights != "shared" else wasserstein_1d(U.T, V.T, A, B, p=1.5)
    np.testing.assert_array_equal(cols, got)
    assert np.array_equal(wasserstein_1d(U, V, A, B, p=1.5, axis=-1), got)


def test_batch_with_a_scaled_member_equals_loop(rng):
    U = rng.normal(size=(3, 10))
    V = rng.normal(size=(3, 10))
    U[1] *= 1e200
    V[1] *= 1e200
    got = wasserstein_1d(U, V, p=2, axis=1)
    loop = [wasserstein_1d(U[k], V[k], p=2) for k in range(3)]
    np.testing.assert_array_equal(got, loop)
    assert np.all(np.isfinite(got)) and got[1] > 1e199


@pytest.mark.parametrize("kwargs, match", [
    (dict(u_values=np.ones((2, 3)), v_values=np.ones((2, 3)), u_weights=-np.ones((2, 3))),
     r"`u_weights\[:, 0\]` must be non-negative"),
    (dict(u_values=np.ones((3, 2)), v_values=np.ones((3, 2)), axis=1,
          v_weights=[[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]),
     r"`v_weights\[2\]` must have a positive sum"),
    (dict(u_values=[[1.0, 2.0], [1.0, np.nan]], v_values=np.ones((2, 2)), axis=1),
     r"`u_values\[1\]` must be finite"),
    (dict(u_values=[[1.0, 2.0], [1.0, np.inf]], v_values=np.ones((2, 2))),
     r"`u_values\[:, 1\]` must be finite"),
    (dict(u_values=np.ones((3, 2)), v_values=np.ones((4, 2)), axis=1),
     r"same number of rows \(problems\)"),
    (dict(u_values=np.ones((3, 2)), v_values=np.ones((3, 2)), u_weights=np.ones((2, 3))),
     r"`u_weights` must have shape \(3,\) or \(3, 2\)"),
    (dict(u_values=[1.0], v_values=[1.0], axis=2), "`axis` must be 0, 1 or -1"),
    (dict(u_values=[1.0], v_values=[1.0], axis=0.5), "`axis` must be an integer"),
])
def test_batch_errors_name_the_member(kwargs, match):
    exc = TypeError if "integer" in match else ValueError
    with pytest.raises(exc, match=match):
        wasserstein_1d(**kwargs)
