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
