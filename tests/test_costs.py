import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from ottools import cost_matrix


@given(st.integers(1, 20), st.integers(1, 20), st.integers(1, 4), st.integers(0, 2**31))
def test_sqeuclidean_equals_naive(n, m, d, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    naive = ((x[:, None] - y[None]) ** 2).sum(-1)
    np.testing.assert_allclose(cost_matrix(x, y), naive, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0])
def test_minkowski_is_pth_power(rng, p):
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    naive = (np.abs(x[:, None] - y[None]) ** p).sum(-1)
    np.testing.assert_allclose(cost_matrix(x, y, "minkowski", p=p), naive, rtol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "cityblock", "chebyshev", "cosine"])
def test_cdist_metrics(rng, metric):
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(4, 2))
    np.testing.assert_allclose(cost_matrix(x, y, metric), cdist(x, y, metric))
    assert np.array_equal(cost_matrix(x, y, "l1"), cost_matrix(x, y, "cityblock"))


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


def test_p_is_checked_for_every_metric():
    with pytest.raises(ValueError, match="`p` must be >= 1"):
        cost_matrix(np.zeros((2, 2)), np.zeros((3, 2)), "euclidean", p=0.5)
