import numpy as np
import pytest
from scipy.special import ive

import ottools
from ottools import (
    distributional_sliced_wasserstein,
    max_sliced_wasserstein,
    projected_wasserstein,
    sample_vmf,
    sliced_wasserstein,
    wasserstein_1d,
)
from ottools._sliced import _projected_wpp_and_grad

from _reference import sliced_pp


def _unit(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _clouds(rng, n=60, m=45, d=3, dtype=np.float64):
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) * np.linspace(0.5, 2.0, d) + 1.0
    return x.astype(dtype), y.astype(dtype)


# ------------------------------------------------------------------ exact values

@pytest.mark.parametrize("p", [1, 2, 1.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_pot_with_same_projections(rng, p, weighted):
    ot = pytest.importorskip("ot")
    x, y = _clouds(rng)
    a = rng.random(len(x)) if weighted else None
    b = rng.random(len(y)) if weighted else None
    theta = _unit(rng.normal(size=(25, 3)))
    ref = ot.sliced_wasserstein_distance(
        x, y, None if a is None else a / a.sum(), None if b is None else b / b.sum(),
        p=p, projections=theta.T)
    got = sliced_wasserstein(x, y, a, b, p=p, directions=theta)
    assert abs(got - ref) <= 1e-10


def test_equal_sizes_fast_path_matches_pot(rng):
    ot = pytest.importorskip("ot")
    x, y = _clouds(rng, n=50, m=50)
    theta = _unit(rng.normal(size=(30, 3)))
    ref = ot.sliced_wasserstein_distance(x, y, projections=theta.T)
    assert abs(sliced_wasserstein(x, y, directions=theta) - ref) <= 1e-10


def test_projected_matches_naive_and_1d(rng, dtype):
    x, y = _clouds(rng, dtype=dtype)
    a = rng.random(len(x)).astype(dtype)
    theta = _unit(rng.normal(size=(8, 3))).astype(dtype)
    got = projected_wasserstein(x, y, a, directions=theta, p=1.5)
    assert got.dtype == dtype and got.shape == (8,)
    ref = sliced_pp(x.astype(float), y.astype(float), theta.astype(float), a.astype(float),
                    None, p=1.5)
    np.testing.assert_allclose(got, ref, rtol=1e-4 if dtype == np.float32 else 1e-11)
    one = [wasserstein_1d(x @ t, y @ t, a, p=1.5) ** 1.5 for t in theta]
    np.testing.assert_allclose(got, one, rtol=1e-4 if dtype == np.float32 else 1e-12)


def test_dtype_and_return_type(rng, dtype):
    x, y = _clouds(rng, dtype=dtype)
    val = sliced_wasserstein(x, y, rng=0)
    assert isinstance(val, np.floating) and val.dtype == dtype


def test_orthogonal_blocks_are_exact_for_translations(rng):
    # y = x + m: W_2^2 on theta is (theta . m)^2, so a full orthonormal block sums to |m|^2
    x = rng.normal(size=(40, 4))
    m = np.array([1.0, -2.0, 0.5, 3.0])
    got = sliced_wasserstein(x, x + m, n_projections=8, directions="orthogonal", rng=1)
    assert got**2 == pytest.approx(m @ m / 4, rel=1e-10)
    rand = sliced_wasserstein(x, x + m, n_projections=8, directions="random", rng=1)
    assert abs(rand**2 - m @ m / 4) > 1e-3  # plain MC is not exact


def test_qmc_directions_beat_mc_on_average():
    x = np.random.default_rng(0).normal(size=(30, 3))
    m = np.array([1.0, 2.0, -1.0])
    exact = m @ m / 3

    def rmse(kind):
        vals = [sliced_wasserstein(x, x + m, n_projections=64, directions=kind, rng=s) ** 2
                for s in range(30)]
        return np.sqrt(np.mean((np.array(vals) - exact) ** 2))

    assert rmse("qmc") < 0.5 * rmse("random")


def test_rng_semantics(rng):
    x, y = _clouds(rng)
    assert sliced_wasserstein(x, y, rng=3) == sliced_wasserstein(x, y, rng=3)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert sliced_wasserstein(x, y, rng=g1) == sliced_wasserstein(x, y, rng=g2)
    assert sliced_wasserstein(x, y, rng=g1) != sliced_wasserstein(x, y, rng=g2.spawn(1)[0])


def test_metric_sanity(rng):
    x, y = _clouds(rng)
    assert sliced_wasserstein(x, x, rng=0) == 0.0
    assert sliced_wasserstein(x, y, rng=0) == pytest.approx(sliced_wasserstein(y, x, rng=0),
                                                           rel=1e-12)
    res = max_sliced_wasserstein(x, x, rng=0)
    assert res.success and res.fun == 0.0


# ------------------------------------------------------------ Gaussians, estimators

def test_gaussian_closed_form_within_standard_error():
    rng = np.random.default_rng(7)
    d, n, L = 3, 20000, 400
    m1, m2 = np.zeros(d), np.array([1.0, -0.5, 0.25])
    A1 = rng.normal(size=(d, d))
    S1 = A1 @ A1.T / d + 0.2 * np.eye(d)
    S2 = np.diag([2.0, 0.5, 1.0])
    x = rng.multivariate_normal(m1, S1, size=n)
    y = rng.multivariate_normal(m2, S2, size=n)
    # exact E_theta[(theta.dm)^2 + (sqrt(theta S1 theta) - sqrt(theta S2 theta))^2]
    th = _unit(np.random.default_rng(8).normal(size=(400_000, d)))
    exact = np.mean((th @ (m1 - m2)) ** 2 + (np.sqrt(np.einsum("li,ij,lj->l", th, S1, th))
                                             - np.sqrt(np.einsum("li,ij,lj->l", th, S2, th))) ** 2)
    theta = _unit(rng.normal(size=(L, d)))
    A = projected_wasserstein(x, y, directions=theta)
    se = A.std(ddof=1) / np.sqrt(L)
    assert sliced_wasserstein(x, y, directions=theta) ** 2 == pytest.approx(A.mean(), rel=1e-12)
    assert abs(A.mean() - exact) <= 3 * se + 2e-3  # 2e-3: sampling error of n = 20,000


def test_control_variates_reduce_variance():
    rng = np.random.default_rng(11)
    d = 5
    x = rng.normal(size=(150, d))
    y = rng.normal(size=(150, d)) * np.linspace(0.5, 1.5, d) + 2.0  # Gaussian-like, apart
    est = {e: np.array([sliced_wasserstein(x, y, n_projections=30, estimator=e, rng=s) ** 2
                        for s in range(200)])
           for e in ("mc", "lower-cv", "upper-cv")}
    mc = est["mc"]
    se = mc.std(ddof=1) / np.sqrt(len(mc))
    for e in ("lower-cv", "upper-cv"):
        assert abs(est[e].mean() - mc.mean()) <= 4 * se
        assert est[e].var() * 5 <= mc.var(), (e, mc.var() / est[e].var())


def test_control_variates_require_p2(rng):
    x, y = _clouds(rng)
    with pytest.raises(ValueError, match="requires p = 2"):
        sliced_wasserstein(x, y, p=1, estimator="lower-cv")


# ----------------------------------------------------------------- Max-SW and v-DSW

def test_max_sw_beats_its_random_candidates(rng):
    x, y = _clouds(rng)
    res = max_sliced_wasserstein(x, y, p=2, n_projections=50, rng=4)
    assert res.success and res.status == 0
    cand = _unit(np.random.default_rng(4).standard_normal((50, 3)))
    assert res.fun >= np.sqrt(projected_wasserstein(x, y, directions=cand).max()) - 1e-12
    assert np.linalg.norm(res.direction) == pytest.approx(1.0, rel=1e-12)
    assert res.fun == pytest.approx(np.sqrt(projected_wasserstein(x, y, directions=res.direction[None])[0]),
                                    rel=1e-12)


def test_max_sw_finds_the_principal_axis():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 3)) * [3.0, 1.0, 1.0]
    y = rng.normal(size=(400, 3))
    res = max_sliced_wasserstein(x, y, n_projections=10, rng=0)
    assert res.success
    # Stopped early: maxiter reached, rel_increase above tol.
    short = max_sliced_wasserstein(x, y, n_projections=10, rng=0, maxiter=1, tol=0.0)
    assert short.status == 1 and not short.success and short.rel_increase > 0
    assert short.err == 0.0 and "Maximum number of iterations" in short.message
    assert abs(res.direction[0]) > 0.98


def test_max_sw_in_one_dimension_is_1d_w(rng, dtype):
    u = rng.normal(size=(30, 1)).astype(dtype)
    v = rng.exponential(size=(20, 1)).astype(dtype)
    res = max_sliced_wasserstein(u, v, p=1.5, rng=0)
    assert res.success and res.fun.dtype == dtype
    assert res.fun == pytest.approx(wasserstein_1d(u[:, 0], v[:, 0], p=1.5),
                                    rel=1e-5 if dtype == np.float32 else 1e-12)


def test_ordering_max_vdsw_sw(rng):
    x, y = _clouds(rng, n=200, m=150)
    L = 400
    theta = _unit(np.random.default_rng(1).normal(size=(L, 3)))
    A = projected_wasserstein(x, y, directions=theta)
    sw2, se = A.mean(), A.std(ddof=1) / np.sqrt(L)
    msw = max_sliced_wasserstein(x, y, rng=0)
    dsw = distributional_sliced_wasserstein(x, y, kappa=5.0, n_projections=200, rng=0)
    assert msw.success and dsw.success
    # what the default tol bounds; err is the marginal error of the exact 1-D couplings
    assert 0 <= msw.rel_increase <= 1e-7 and 0 <= dsw.rel_increase <= 1e-7
    assert msw.err == 0.0 and dsw.err == 0.0
    assert msw.fun >= dsw.fun
    assert dsw.fun**2 >= sw2 - 3 * se
    assert dsw.fun > np.sqrt(sw2)  # the optimized location beats the uniform average
    assert np.linalg.norm(dsw.location) == pytest.approx(1.0, rel=1e-12)


def test_vdsw_tends_to_max_sw_as_kappa_grows(rng):
    x, y = _clouds(rng, n=200, m=150)
    msw = max_sliced_wasserstein(x, y, rng=0).fun
    d_lo = distributional_sliced_wasserstein(x, y, kappa=1.0, rng=0).fun
    d_hi = distributional_sliced_wasserstein(x, y, kappa=500.0, rng=0).fun
    assert d_lo < d_hi <= msw
    assert d_hi == pytest.approx(msw, rel=2e-2)


@pytest.mark.parametrize("d, kappa", [(2, 1.0), (3, 10.0), (5, 0.5), (10, 50.0)])
def test_vmf_mean_resultant_length(d, kappa):
    mu = _unit(np.random.default_rng(d).normal(size=(1, d)))[0]
    z = sample_vmf(mu, kappa, 20000, rng=d)
    assert z.shape == (20000, d)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-12)
    c = z @ mu
    expected = ive(d / 2, kappa) / ive(d / 2 - 1, kappa)
    assert abs(c.mean() - expected) <= 4 * c.std() / np.sqrt(len(c))
    # the mean direction is mu
    mean = z.mean(0)
    assert mean / np.linalg.norm(mean) @ mu > 0.99


def test_vmf_reproducible_and_dtype():
    a = sample_vmf(np.array([1.0, 2.0], dtype=np.float32), 3.0, 5, rng=1)
    b = sample_vmf(np.array([1.0, 2.0], dtype=np.float32), 3.0, 5, rng=1)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------- gradients for the torch layer

@pytest.mark.parametrize("weights", ["uniform-equal", "uniform", "weighted"])
@pytest.mark.parametrize("p", [2.0, 1.5])
def test_projected_wpp_and_grad_finite_differences(rng, weights, p):
    x = rng.normal(size=(12, 3))
    y = rng.normal(size=(12 if weights == "uniform-equal" else 9, 3)) + 0.5
    a = rng.random(12) if weights == "weighted" else None
    b = rng.random(len(y)) if weights == "weighted" else None
    theta = _unit(rng.normal(size=(5, 3)))
    w = rng.random(5)
    wpp, gx, gy, gth = _projected_wpp_and_grad(x, y, a, b, theta, p, w)
    np.testing.assert_allclose(wpp, sliced_pp(x, y, theta, a, b, p), rtol=1e-12)

    def F(x_, y_, t_):
        return w @ sliced_pp(x_, y_, t_, a, b, p)

    h = 1e-6
    for arr, grad, idx in ((x, gx, (3, 1)), (y, gy, (2, 0)), (theta, gth, (4, 2))):
        plus, minus = arr.copy(), arr.copy()
        plus[idx] += h
        minus[idx] -= h
        args_p = [plus if arr is v else v for v in (x, y, theta)]
        args_m = [minus if arr is v else v for v in (x, y, theta)]
        fd = (F(*args_p) - F(*args_m)) / (2 * h)
        assert grad[idx] == pytest.approx(fd, rel=1e-5, abs=1e-8)
    # default weights 1/L: the gradient of SW_p^p
    _, gx1, _, _ = _projected_wpp_and_grad(x, y, a, b, theta, p)
    _, gxw, _, _ = _projected_wpp_and_grad(x, y, a, b, theta, p, np.full(5, 0.2))
    np.testing.assert_allclose(gx1, gxw, rtol=1e-14)


# ------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, exc, match", [
    (lambda x, y: sliced_wasserstein(x, y[:, :2]), ValueError, "same dimension"),
    (lambda x, y: sliced_wasserstein(x, y, n_projections=0), ValueError, "`n_projections`"),
    (lambda x, y: sliced_wasserstein(x, y, n_projections=2.5), TypeError, "`n_projections`"),
    (lambda x, y: sliced_wasserstein(x, y, p=0.5), ValueError, "`p` must be >= 1"),
    (lambda x, y: sliced_wasserstein(x, y, directions="sobol"), ValueError, "directions"),
    (lambda x, y: sliced_wasserstein(x, y, directions=np.ones((4, 2))), ValueError,
     r"`directions` must have shape \(L, 3\)"),
    (lambda x, y: sliced_wasserstein(x, y, estimator="cv"), ValueError, "estimator"),
    (lambda x, y: sliced_wasserstein(x, y, np.ones(3)), ValueError, "`a` must have length"),
    (lambda x, y: sliced_wasserstein(x, y, None, -np.ones(len(y))), ValueError, "`b`"),
    (lambda x, y: sliced_wasserstein(x * np.nan, y), ValueError, "`x` must be finite"),
    (lambda x, y: projected_wasserstein(x, y, directions=np.ones(3)), ValueError, "`directions`"),
    (lambda x, y: max_sliced_wasserstein(x, y, n_restarts=0), ValueError, "`n_restarts`"),
    (lambda x, y: max_sliced_wasserstein(x, y, p=0), ValueError, "`p`"),
    (lambda x, y: distributional_sliced_wasserstein(x, y, kappa=0.0), ValueError, "`kappa`"),
    (lambda x, y: distributional_sliced_wasserstein(x, y, kappa=-1), ValueError, "`kappa`"),
    (lambda x, y: sample_vmf([0.0, 0.0], 1.0, 3), ValueError, "`mu`"),
    (lambda x, y: sample_vmf([1.0, 0.0], 0.0, 3), ValueError, "`kappa`"),
    (lambda x, y: sample_vmf([1.0, 0.0], 1.0, -1), ValueError, "`size`"),
])
def test_bad_input(rng, call, exc, match):
    x, y = _clouds(rng)
    with pytest.raises(exc, match=match):
        call(x, y)


def test_exported():
    for name in ("wasserstein_1d", "sliced_wasserstein", "projected_wasserstein",
                 "max_sliced_wasserstein", "distributional_sliced_wasserstein", "sample_vmf",
                 "mesh_measure"):
        assert name in ottools.__all__


def test_unused_arguments_are_still_checked():
    x = np.zeros((4, 2))
    theta = np.array([[1.0, 0.0]])
    with pytest.raises(TypeError, match="`n_projections` must be an integer"):
        ottools.sliced_wasserstein(x, x, directions=theta, n_projections="x")
    with pytest.raises(TypeError, match="`rng` must be None"):
        ottools.sliced_wasserstein(x, x, directions=theta, rng="junk")
