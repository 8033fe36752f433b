import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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
from conftest import returns_within


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
    at = projected_wasserstein(x, y, directions=res.direction[None])[0]
    assert res.fun == pytest.approx(np.sqrt(at), rel=1e-12)


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


# ------------------------------------------------------ ascents: statuses and options

def test_failed_line_search_is_stalled_not_converged(rng):
    x, y = _clouds(rng)
    # one trial step of pi radians, no halving: the line search cannot succeed
    res = max_sliced_wasserstein(x, y, rng=0, n_restarts=1,
                                 options={"initial_step": np.pi, "line_search_steps": 1})
    assert res.status == 4 and not res.success
    assert res.nit == 0 and res.rel_increase == np.inf and "Stalled" in res.message
    cand = _unit(np.random.default_rng(0).standard_normal((100, 3)))
    assert res.fun == pytest.approx(np.sqrt(projected_wasserstein(
        x, y, directions=cand).max()), rel=1e-12)  # the best candidate, unchanged


def test_default_tol_per_dtype(rng, dtype):
    x, y = _clouds(rng, dtype=dtype)
    res = max_sliced_wasserstein(x, y, rng=0)
    assert res.success and res.fun.dtype == dtype
    assert 0 <= res.rel_increase <= (1e-7 if dtype == np.float64 else 1e-4)
    dsw = distributional_sliced_wasserstein(x, y, rng=0, tol=1e-3)
    assert dsw.success and 0 <= dsw.rel_increase <= 1e-3


def test_callback_sees_the_iterates_and_can_stop(rng):
    x, y = _clouds(rng)
    seen = []

    def cb(r):
        seen.append((r.nit, r.fun, r.rel_increase, r.restart))
        if len(seen) == 3:
            raise StopIteration

    res = max_sliced_wasserstein(x, y, rng=0, tol=0.0, callback=cb)
    assert res.status == 3 and not res.success and res.nit == 3
    assert [s[0] for s in seen] == [1, 2, 3] and all(s[3] == 0 for s in seen)
    assert seen[-1][1] == pytest.approx(res.fun, rel=1e-12)
    assert all(s[2] > 0 for s in seen) and seen[-1][2] == res.rel_increase
    def stop(r):
        raise StopIteration

    res = distributional_sliced_wasserstein(x, y, rng=0, tol=0.0, callback=stop)
    assert res.status == 3 and res.nit == 1


@pytest.mark.parametrize("options, exc, match", [
    ({"armjio": 0.1}, TypeError, r"Unknown option\(s\) 'armjio'.*'armijo'"),
    ({"armijo": 1.5}, ValueError, r"`options\['armijo'\]` must be in \(0, 1\)"),
    ({"line_search_steps": 0}, ValueError, r"`options\['line_search_steps'\]` must be >= 1"),
    ({"initial_step": "big"}, TypeError, r"`options\['initial_step'\]`"),
    ("fast", TypeError, "`options` must be a dict"),
])
def test_ascent_options_are_validated(rng, options, exc, match):
    x, y = _clouds(rng)
    for fn in (max_sliced_wasserstein, distributional_sliced_wasserstein):
        with pytest.raises(exc, match=match):
            fn(x, y, options=options)


def test_ascent_on_huge_coordinates_and_large_p(rng):
    x, y = _clouds(rng)
    ref = max_sliced_wasserstein(x, y, rng=0)
    big = max_sliced_wasserstein(x * 1e200, y * 1e200, rng=0)
    assert big.success and big.fun == pytest.approx(ref.fun * 1e200, rel=1e-12)
    np.testing.assert_allclose(big.direction, ref.direction, rtol=1e-12)
    # W_p^p overflows for p = 1e6: reported (status 2), with the best candidate's value
    res = max_sliced_wasserstein(x, y, p=1e6, rng=0)
    assert res.status == 2 and not res.success and np.isfinite(res.fun)
    cand = _unit(np.random.default_rng(0).standard_normal((100, 3)))
    best = max(sliced_wasserstein(x, y, p=1e6, directions=t[None]) for t in cand)
    assert res.fun == pytest.approx(best, rel=1e-12)


# ------------------------------------------------ scaled form: overflow and underflow

@pytest.mark.parametrize("scale", [1e200, 1e-200])
@pytest.mark.parametrize("weighted", [False, True])
def test_sliced_scaled_form_for_huge_and_tiny_coordinates(rng, scale, weighted):
    x, y = _clouds(rng)
    a = rng.random(len(x)) if weighted else None
    b = rng.random(len(y)) if weighted else None
    theta = _unit(rng.normal(size=(20, 3)))
    for p in (2, 1.5):
        ref = sliced_wasserstein(x, y, a, b, p=p, directions=theta)
        got = sliced_wasserstein(x * scale, y * scale, a, b, p=p, directions=theta)
        assert np.isfinite(got) and got == pytest.approx(ref * scale, rel=1e-13)
    # huge directions are scaled too (the distance is homogeneous in them)
    got = sliced_wasserstein(x, y, a, b, directions=theta * 1e300)
    assert got == pytest.approx(sliced_wasserstein(x, y, a, b, directions=theta) * 1e300,
                                rel=1e-13)


def test_projected_wasserstein_refuses_an_overflowing_power(rng):
    x, y = _clouds(rng)
    theta = _unit(rng.normal(size=(4, 3)))
    with pytest.raises(ValueError, match="exceeds the range of float64"):
        projected_wasserstein(x * 1e200, y * 1e200, directions=theta)
    got = projected_wasserstein(x * 1e100, y * 1e100, directions=theta)
    np.testing.assert_allclose(got, projected_wasserstein(x, y, directions=theta) * 1e200,
                               rtol=1e-13)


def test_sliced_large_p_is_finite(rng):
    x, y = _clouds(rng, n=40, m=40)
    theta = _unit(rng.normal(size=(10, 3)))
    w_inf = [np.abs(np.sort(x @ t) - np.sort(y @ t)).max() for t in theta]
    for p in (1e3, 1e6):
        got = sliced_wasserstein(x, y, p=p, directions=theta)
        rows = [wasserstein_1d(x @ t, y @ t, p=p) for t in theta]
        top = max(rows)
        ref = top * np.mean((np.array(rows) / top) ** p) ** (1 / p)
        assert np.isfinite(got) and got == pytest.approx(ref, rel=1e-12)
    assert got == pytest.approx(max(w_inf), rel=1e-4)  # p -> inf: max over directions


# -------------------------------------------------------------- vMF: limits and inputs

@pytest.mark.parametrize("kappa", [1e16, 1e20, 1e300])
def test_huge_kappa_returns(kappa):
    mu = np.array([1.0, 2.0, 2.0]) / 3.0
    z = returns_within(lambda: sample_vmf(mu, kappa, 200, rng=0))
    assert np.all(z @ mu >= 1 - 1e-15)
    x = np.random.default_rng(0).normal(size=(30, 3))
    y = x * [2.0, 1.0, 1.0]
    res = returns_within(lambda: distributional_sliced_wasserstein(x, y, kappa=kappa, rng=0))
    msw = max_sliced_wasserstein(x, y, rng=0)
    assert res.success and abs(res.fun - msw.fun) <= 1e-3 * msw.fun
    assert np.abs(res.directions - res.location).max() <= 1e-7  # all directions at eps


@pytest.mark.parametrize("kappa", [1e6, 1e12])
def test_vmf_spread_at_large_kappa(kappa):
    # for large kappa, 1 - mu.theta is Gamma((d-1)/2, 1/kappa) up to O(1/kappa):
    # E|theta - mu|^2 = 2 E[1 - mu.theta] = (d - 1) / kappa
    d = 4
    mu = _unit(np.random.default_rng(1).normal(size=(1, d)))[0]
    z = sample_vmf(mu, kappa, 20000, rng=3)
    sq = np.sum((z - mu) ** 2, axis=1) * kappa
    assert abs(sq.mean() - (d - 1)) <= 4 * sq.std() / np.sqrt(len(sq))
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-15)


def test_vmf_huge_and_tiny_mu():
    z = sample_vmf([1e308, 1e308, 0.0], 50.0, 4000, rng=0)
    mu = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
    expected = ive(1.5, 50.0) / ive(0.5, 50.0)
    c = z @ mu
    assert abs(c.mean() - expected) <= 4 * c.std() / np.sqrt(len(c))
    np.testing.assert_array_equal(sample_vmf([1e308, 1e308, 0.0], 50.0, 10, rng=1),
                                  sample_vmf([1.0, 1.0, 0.0], 50.0, 10, rng=1))
    t = sample_vmf([1e-320, 0.0, 0.0], 50.0, 10, rng=1)
    assert np.all(np.isfinite(t))
    np.testing.assert_array_equal(t, sample_vmf([1.0, 0.0, 0.0], 50.0, 10, rng=1))


def test_vmf_blocks_do_not_change_the_stream(monkeypatch):
    import ottools._sliced as sl

    whole = sample_vmf([0.0, 1.0, 1.0], 5.0, 1000, rng=4)
    calls = []
    kernel = sl._k.vmf_around_e1
    monkeypatch.setattr(sl, "_VMF_BLOCK_VALUES", 3 * 64)
    monkeypatch.setattr(sl, "_k", type("K", (), {
        "vmf_around_e1": staticmethod(lambda g, d, k, out: calls.append(len(out))
                                      or kernel(g, d, k, out)),
        "_VMF_MAX_TRIES": 200}))
    blocked = sample_vmf([0.0, 1.0, 1.0], 5.0, 1000, rng=4)
    assert max(calls) == 64 and sum(calls) == 1000  # bounded kernel calls
    np.testing.assert_array_equal(blocked, whole)


_CTRL_C_CHILD = """
import sys, time, numpy as np, numba, ottools
numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
x = np.random.default_rng(0).normal(size=(100_000, 3))
ottools.sample_vmf([1.0, 0.0], 3.0, 10, rng=0)  # compile
ottools.sliced_wasserstein(x[:10], x[:10] + 1.0, rng=0)
for name, call in (
        ("sample_vmf", lambda: ottools.sample_vmf(np.float32([1.0, 0.0]), 3.0, 40_000_000,
                                                  rng=0)),
        ("sliced", lambda: ottools.sliced_wasserstein(x, x + 1.0, n_projections=20_000,
                                                      rng=0))):
    print("ready", flush=True)
    t0 = time.perf_counter()
    try:
        call()
        print("finished", name, time.perf_counter() - t0, flush=True)
    except KeyboardInterrupt:
        print("interrupted", name, time.perf_counter() - t0, flush=True)
"""


def test_ctrl_c_interrupts_sample_vmf_and_sliced():
    import os
    import signal
    import subprocess
    import sys
    import time

    if os.name != "posix":
        pytest.skip("POSIX signals")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
        os.path.abspath(ottools.__file__))))
    proc = subprocess.Popen([sys.executable, "-c", _CTRL_C_CHILD], stdout=subprocess.PIPE,
                            text=True, env=env)
    lines, waits = [], []
    try:
        for _ in range(2):
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            t0 = time.perf_counter()
            lines.append(proc.stdout.readline())
            waits.append(time.perf_counter() - t0)
    finally:
        proc.kill()
        proc.wait()
    assert lines[0].startswith("interrupted sample_vmf"), lines
    assert lines[1].startswith("interrupted sliced"), lines
    assert max(waits) < 1.0, waits


# ------------------------------------------------------------------------ memory

@pytest.mark.parametrize("call, match", [
    (lambda x, y: sliced_wasserstein(x, y, n_projections=10**10), "`n_projections`=10000000000"),
    (lambda x, y: max_sliced_wasserstein(x, y, n_projections=10**10), "`n_projections`"),
    (lambda x, y: distributional_sliced_wasserstein(x, y, n_projections=10**10),
     "`n_projections`"),
    (lambda x, y: sample_vmf([1.0, 0.0], 1.0, 10**12), r"`size`=1000000000000 samples"),
])
def test_requests_that_cannot_fit_raise_before_allocating(rng, call, match):
    x, y = _clouds(rng, n=5, m=5)
    with pytest.raises(MemoryError, match=match + r".* needs about [0-9.]+ [GT]B"):
        call(x, y)


# ---------------------------------------------------------------------------- batches

@pytest.mark.parametrize("weights", ["none", "shared", "per-pair"])
@pytest.mark.parametrize("estimator", ["mc", "upper-cv"])
def test_sliced_batch_equals_loop_exactly(rng, dtype, weights, estimator):
    B = 4
    x = rng.normal(size=(B, 30, 3)).astype(dtype)
    y = (rng.normal(size=(B, 20, 3)) + 1).astype(dtype)
    if weights == "none":
        a = b = None
    elif weights == "shared":
        a, b = rng.random(30).astype(dtype), rng.random(20).astype(dtype)
    else:
        a, b = rng.random((B, 30)).astype(dtype), rng.random((B, 20)).astype(dtype)
    got = sliced_wasserstein(x, y, a, b, n_projections=40, estimator=estimator, rng=7)
    assert got.shape == (B,) and got.dtype == dtype
    loop = [sliced_wasserstein(x[i], y[i], None if a is None else (a if a.ndim == 1 else a[i]),
                               None if b is None else (b if b.ndim == 1 else b[i]),
                               n_projections=40, estimator=estimator, rng=7)
            for i in range(B)]
    np.testing.assert_array_equal(got, np.array(loop, dtype=dtype))


def _bad_batches(rng):
    x = rng.normal(size=(3, 5, 3))
    y = rng.normal(size=(3, 4, 3))
    a = np.ones((3, 5))
    nan = x.copy()
    nan[2, 0, 1] = np.nan
    neg = a.copy()
    neg[2, 1] = -1.0
    return [
        ((nan, y, a), r"`x\[2\]` must be finite"),
        ((x, y, neg), r"`a\[2\]` must be non-negative"),
        ((x, y[:2], a), r"same number B >= 1 of point clouds"),
        ((x, y[0], a), r"`y` must be one too \(B, m, d\)"),
        ((x, y[..., :2], a), r"`x\[0\]` and `y\[0\]` must have the same dim"),
        ((x, y, a[:2]), r"`a` must have shape \(3, 5\)"),
        ((x, y, a[:, :4]), r"`a\[0\]` must have length 5"),
    ]


def test_sliced_batch_errors_name_the_pair(rng):
    for (x, y, a), match in _bad_batches(rng):
        with pytest.raises(ValueError, match=match):
            sliced_wasserstein(x, y, a, rng=0)


# ---------------------------------------------------- threads do not change results

def test_threads_do_not_change_the_result(rng, monkeypatch):
    import numba

    import ottools._sliced as sl

    x = rng.normal(size=(3000, 3))
    y = rng.normal(size=(2500, 3)) + 0.5
    a = rng.random(3000)
    theta = _unit(rng.normal(size=(64, 3)))
    monkeypatch.setattr(sl, "_BLOCK_VALUES", 3000 * 8)  # 8 blocks
    monkeypatch.setattr(sl, "_THREAD_MIN_VALUES", 0)
    old = numba.get_num_threads()
    try:
        vals = []
        for k in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(k)
            vals.append((sliced_wasserstein(x, y, directions=theta),
                         sliced_wasserstein(x, y, a, directions=theta)))
    finally:
        numba.set_num_threads(old)
    assert vals[0] == vals[-1]
    ref = sliced_pp(x, y, theta, a / a.sum())
    assert vals[0][1] ** 2 == pytest.approx(ref.mean(), rel=1e-12)


# ------------------------------------------------ value-and-gradient entry points

def test_value_and_grad_entry_points(rng):
    from ottools._sliced import (distributional_sliced_value_and_grad,
                                 max_sliced_value_and_grad, sliced_value_and_grad)

    x, y = _clouds(rng, n=12, m=9)
    a = rng.random(12)
    theta = _unit(rng.normal(size=(6, 3)))
    value, gx, gy = sliced_value_and_grad(x, y, a, directions=theta, p=1.5)
    assert value == pytest.approx(sliced_wasserstein(x, y, a, directions=theta, p=1.5),
                                  rel=1e-12)
    assert gx.shape == x.shape and gy.shape == y.shape
    h = 1e-6
    for arr, grad, idx in ((x, gx, (4, 1)), (y, gy, (3, 2))):
        plus, minus = arr.copy(), arr.copy()
        plus[idx] += h
        minus[idx] -= h
        args = [(plus, y) if arr is x else (x, plus), (minus, y) if arr is x else (x, minus)]
        fd = (sliced_wasserstein(*args[0], a, directions=theta, p=1.5)
              - sliced_wasserstein(*args[1], a, directions=theta, p=1.5)) / (2 * h)
        assert grad[idx] == pytest.approx(fd, rel=1e-6, abs=1e-9)
    # degree one in the points: the gradient is scale invariant, the value scales
    big, gxb, gyb = sliced_value_and_grad(x * 1e200, y * 1e200, a, directions=theta, p=1.5)
    assert big == pytest.approx(value * 1e200, rel=1e-13)
    np.testing.assert_allclose(gxb, gx, rtol=1e-12, atol=1e-15)
    for fn, field in ((max_sliced_value_and_grad, "direction"),
                      (distributional_sliced_value_and_grad, "directions")):
        res, gx2, gy2 = fn(x, y, a, p=1.5, rng=0)
        ref = sliced_value_and_grad(x, y, a, directions=np.atleast_2d(res[field]), p=1.5)
        assert ref[0] == pytest.approx(float(res.fun), rel=1e-12)
        np.testing.assert_array_equal(gx2, ref[1])
        np.testing.assert_array_equal(gy2, ref[2])


def test_value_and_grad_scaled_form_for_large_p(rng):
    from ottools._sliced import sliced_value_and_grad

    x, y = _clouds(rng, n=8, m=8)
    x, y = 0.01 * x, 0.01 * y  # |u - v|^p underflows for p = 300
    theta = _unit(rng.normal(size=(3, 3)))
    p = 300.0
    value, gx, _ = sliced_value_and_grad(x, y, directions=theta, p=p)
    assert value == pytest.approx(sliced_wasserstein(x, y, directions=theta, p=p), rel=1e-12)
    assert value > 0 and np.all(np.isfinite(gx)) and np.abs(gx).max() > 0
    h = 1e-9
    idx = np.unravel_index(np.argmax(np.abs(gx)), gx.shape)
    plus, minus = x.copy(), x.copy()
    plus[idx] += h
    minus[idx] -= h
    fd = (sliced_wasserstein(plus, y, directions=theta, p=p)
          - sliced_wasserstein(minus, y, directions=theta, p=p)) / (2 * h)
    assert gx[idx] == pytest.approx(fd, rel=1e-5)


def test_distances_beyond_float64_raise_value_error():
    """The documented ValueError (sliced_wasserstein raised OverflowError; Max-SW and DSW
    returned inf with success)."""
    x, y = np.array([[1.7e308]]), np.array([[-1.7e308]])
    for fn in (ottools.sliced_wasserstein, ottools.max_sliced_wasserstein,
               ottools.distributional_sliced_wasserstein):
        with pytest.raises(ValueError, match="exceeds the range of float64"):
            fn(x, y, rng=0)


def test_ragged_points_qmc_dimension_and_negative_seed_name_the_argument():
    with pytest.raises(ValueError, match=r"`x\[1\]` has shape"):
        ottools.sliced_wasserstein([[1.0, 2.0], [3.0]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="directions='qmc'.*21201"):
        ottools.sliced_wasserstein(np.zeros((2, 21202)), np.ones((2, 21202)),
                                   directions="qmc", n_projections=2, rng=0)
    with pytest.raises(ValueError, match="`rng` must be a non-negative int seed"):
        ottools.sliced_wasserstein(np.zeros((3, 2)), np.ones((3, 2)), rng=-1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weights_whose_sum_overflows(dtype):
    """Weights 1e308 and 1.5e308 (float32: 3e38 and 1e38) are 0.4 and 0.6 (0.75, 0.25);
    their overflowing sum made them 0, then uniform."""
    big = np.finfo(dtype).max
    w = np.array([big / 1.7, big / 1.7 * 1.5] if dtype == np.float64 else [3e38, 1e38],
                 dtype=dtype)
    want = 0.4 if dtype == np.float64 else 0.75
    u, v = np.array([0.0, 1.0], dtype=dtype), np.array([1.0], dtype=dtype)
    value = ottools.wasserstein_1d(u, v, w)
    assert value.dtype == dtype and value == pytest.approx(want, rel=1e-6)
    sw = ottools.sliced_wasserstein(u[:, None], v[:, None], w, p=1, rng=0)
    assert sw == pytest.approx(want, rel=1e-6)


def test_an_overflowing_row_leaves_the_other_rows_of_a_batch_alone():
    """Only the rows whose sum overflows take the rescaled normalization: the others keep
    the bits of their single calls."""
    rng = np.random.default_rng(0)
    u, v = rng.random((3, 7)), rng.random((3, 5))
    w = rng.random((3, 7))
    w[1] = [1e308, 1.5e308, 0, 0, 0, 0, 0]
    out = ottools.wasserstein_1d(u, v, w, axis=1)
    for k in range(3):
        assert out[k] == ottools.wasserstein_1d(u[k], v[k], w[k])


# ------------------------------------------------ float32 range, and W_p^p underflow
def test_float32_projections_near_the_top_of_the_range():
    """Projections of float32 points near 3e38 overflowed float32 (ValueError where the
    distance is 1.8e38; Max-SW 24 % low with success)."""
    x = np.array([[3e38, 3e38], [0, 0]], dtype=np.float32)
    y = np.array([[0, 0], [1, 1]], dtype=np.float32)
    theta = np.array([[0.6, 0.8], [1.0, 0.0]])
    for fn in (lambda u, v: sliced_wasserstein(u, v, p=1, directions=theta),
               lambda u, v: max_sliced_wasserstein(u, v, p=1, rng=0).fun,
               lambda u, v: ottools.pairwise_distances(
                   [u, v], metric="sliced_wasserstein",
                   metric_kwargs={"p": 1, "directions": theta})[0, 1]):
        ref = fn(x.astype(np.float64), y.astype(np.float64))
        assert float(fn(x, y)) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("p, scale", [(8, 1e-6), (4, 1e-12), (2, 1e-25), (8, 1e6)])
def test_float32_ascents_where_w_p_p_leaves_float32(rng, p, scale):
    """W_p^p in float32 underflowed (Max-SW and DSW returned 0 with success) or
    overflowed (status 2, 1 % low)."""
    x, y = _clouds(rng)
    for fn in (max_sliced_wasserstein, distributional_sliced_wasserstein):
        ref = fn(x * scale, y * scale, p=p, rng=0)
        got = fn((x * scale).astype(np.float32), (y * scale).astype(np.float32), p=p, rng=0)
        assert got.success and got.fun.dtype == np.float32
        assert float(got.fun) == pytest.approx(ref.fun, rel=1e-4)


def test_ascents_report_an_underflowing_objective(rng):
    """For p of 2000 no scale keeps W_p^p in float64: all zeros read as a maximum of 0
    with success; now status 2 with the scaled form's value."""
    x, y = _clouds(rng)
    x, y = 0.1 * x, 0.1 * y
    for fn in (max_sliced_wasserstein, distributional_sliced_wasserstein):
        res = fn(x, y, p=2000.0, rng=0)
        assert res.status == 2 and not res.success and res.fun > 0


def test_qmc_directions_with_a_legacy_random_state():
    # A RandomState's generator has no seed sequence, from which SciPy's Sobol scrambling
    # spawns: an AttributeError from SciPy; every other rng consumer accepts it.
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = x + 1.0
    v1 = ottools.sliced_wasserstein(x, y, directions="qmc", rng=np.random.RandomState(0))
    v2 = ottools.sliced_wasserstein(x, y, directions="qmc", rng=np.random.RandomState(0))
    assert v1 == v2
    # a translation by t = (1, 1, 1): SW_2^2 = mean over directions of (t . theta)^2,
    # |t|^2 / 3 = 1 for directions uniform on the sphere
    assert v1 == pytest.approx(1.0, rel=0.05)


def test_rng_refuses_bools_and_names_foreign_generators():
    x, y = np.zeros((3, 2)), np.ones((3, 2))
    with pytest.raises(TypeError, match="got bool"):
        ottools.sliced_wasserstein(x, y, rng=True)
    with pytest.raises(TypeError, match="got bool"):
        ottools.max_sliced_wasserstein(x, y, rng=np.True_)


def test_control_variates_that_carry_nothing_leave_the_mc_estimate():
    """Centred clouds (means equal up to rounding, |dm| 1e-16) made the lower control
    variate rounding noise whose fitted coefficient moved the estimate by up to 18 % from
    MC on the same directions; a cube against an octahedron (equal means and isotropic
    covariances I) make the upper one constant up to rounding. Both now return MC's
    value on the same directions."""
    rng = np.random.default_rng(0)
    d = 5
    x = rng.normal(size=(300, d))
    x -= x.mean(0)
    y = rng.standard_t(3, size=(250, d)) * [1, 2, 1, 1, 0.5]
    y -= y.mean(0)
    assert 0 < np.abs(x.mean(0) - y.mean(0)).max() < 1e-15
    for seed in range(20):
        mc = ottools.sliced_wasserstein(x, y, n_projections=20, rng=seed)
        lo = ottools.sliced_wasserstein(x, y, n_projections=20, rng=seed, estimator="lower-cv")
        assert lo == mc
    cube = np.array([[i, j, k] for i in (-1.0, 1.0) for j in (-1.0, 1.0) for k in (-1.0, 1.0)])
    octa = np.sqrt(3.0) * np.concatenate([np.eye(3), -np.eye(3)])
    for seed in range(20):
        mc = ottools.sliced_wasserstein(cube, octa, n_projections=10, rng=seed)
        up = ottools.sliced_wasserstein(cube, octa, n_projections=10, rng=seed,
                                        estimator="upper-cv")
        assert up == pytest.approx(mc, rel=1e-12)


@pytest.mark.parametrize("p", [40.0, 50.0, 129.0])
def test_float32_gradients_of_large_p_do_not_overflow(p):
    """p |d|^(p - 1) overflowed float32 at p = 50 for differences of 7.7 (the kernel kept
    the gradients in the points' dtype) where W_p^p, summed in float64, did not: SW's
    gradient came back -inf (NaN at p = 129) without an error, and float32 Max-SW and
    v-DSW stopped at once (status 2) where float64 converged. The gradients are float64
    until the end."""
    from ottools._sliced import sliced_value_and_grad

    x = np.array([[-3.9], [-3.8]], dtype=np.float32)
    y = np.array([[3.9], [3.8]], dtype=np.float32)
    value, gx, gy = sliced_value_and_grad(x, y, p=p, directions=np.ones((1, 1)))
    assert value == pytest.approx(7.7, rel=1e-6)
    assert gx.dtype == np.float32 and gy.dtype == np.float32
    np.testing.assert_allclose(gx, [[-0.5], [-0.5]], rtol=1e-5)
    np.testing.assert_allclose(gy, [[0.5], [0.5]], rtol=1e-5)
    rng = np.random.default_rng(0)
    x = rng.uniform(-3.9, -3.0, size=(20, 2))
    y = rng.uniform(3.0, 3.9, size=(20, 2))
    for solve in (ottools.max_sliced_wasserstein, ottools.distributional_sliced_wasserstein):
        r64 = solve(x, y, p=p, rng=0)
        r32 = solve(x.astype(np.float32), y.astype(np.float32), p=p, rng=0)
        assert r64.status == 0 and r32.status == 0, r32.message
        assert r32.fun == pytest.approx(r64.fun, rel=1e-4)  # (float32 ascent tol)


def test_max_sliced_does_not_claim_convergence_on_a_ridge():
    """p = 1, 20 + 25 points in 10-D: the ascent's steps were cut short at a ridge of the
    objective (where the 1-D coupling changes) and their tiny gains passed the relative-
    increase test: "Converged" (status 0) at a direction where the tangent gradient was
    0.2-0.35 of the value and a simplex search climbed 4.8 % higher. Such an ascent now
    stalls (status 4, a message naming the ridge); p = 2 on smooth data still converges
    at a local maximum."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    for d in (2, 3, 5, 10):
        x = rng.normal(size=(20, d))
        y = rng.normal(size=(25, d)) * rng.uniform(0.3, 2, d)
    res = ottools.max_sliced_wasserstein(x, y, p=1.0, rng=3)
    assert res.status == 4 and not res.success and "ridge" in res.message
    assert res.fun > 0.99  # still a value at least that of the best candidate

    x = np.random.default_rng(5).normal(size=(30, 2))
    y = x @ np.array([[2.0, 0.3], [0.3, 0.5]]) + [3.0, 0.0]
    res = ottools.max_sliced_wasserstein(x, y, p=2.0, rng=1)
    assert res.success

    def neg(e):
        e = e / np.linalg.norm(e)
        return -ottools.projected_wasserstein(x, y, directions=e[None], p=2.0)[0]

    best = minimize(neg, res.direction, method="Nelder-Mead",
                    options=dict(xatol=1e-10, fatol=1e-14, maxiter=2000))
    assert (-best.fun) ** 0.5 <= res.fun * (1 + 1e-6)


def test_projected_wasserstein_refuses_an_underflowing_power():
    """W_p^p below the dtype's smallest normal came back as 0 (points of 1e-200 at p = 2,
    float64; 1e-30 in float32) or a subnormal with a few correct bits, while overflow
    raised: both raise now, and identical measures still give an exact 0."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(8, 3))
    for scale, dt in ((1e-200, np.float64), (1e-160, np.float64), (1e-30, np.float32)):
        with pytest.raises(ValueError, match="below the smallest normal"):
            ottools.projected_wasserstein((x * scale).astype(dt), (y * scale).astype(dt),
                                          directions=np.eye(3), p=2)
    small = ottools.projected_wasserstein(x * 1e-100, y * 1e-100, directions=np.eye(3), p=2)
    ref = ottools.projected_wasserstein(x, y, directions=np.eye(3), p=2)
    np.testing.assert_allclose(small, ref * 1e-200, rtol=1e-12)
    assert np.all(ottools.projected_wasserstein(x, x, directions=np.eye(3), p=2) == 0)


# ------------------------------------- zero-weight points far away, far points matched
def _with_far_zero_weight(x, far):
    """``x`` with a zero-weight point at ``far`` in front, and its weights."""
    xf = np.vstack([np.full((1, x.shape[1]), far), x])
    a = np.ones(len(xf))
    a[0] = 0.0
    return xf, a


@pytest.mark.parametrize("p, far", [(4, 1e80), (2, 1e154), (2, 1e160), (20, 1e20),
                                    (2, 1e300)])
@pytest.mark.parametrize("fn", [max_sliced_wasserstein,
                                distributional_sliced_wasserstein])
def test_ascents_ignore_a_far_zero_weight_point(rng, fn, p, far):
    """The scale of the points came from all of them, zero-weight ones included: the real
    points' W_p^p underflowed and the ascent "converged" after 0 iterations with a
    wrong value (p = 4, 1e80: 0.929 where the maximum is at least 1.0747)."""
    x, y = _clouds(rng, n=20, m=15)
    ref = fn(x, y, p=p, rng=0)
    xf, a = _with_far_zero_weight(x, far)
    got = fn(xf, y, a, p=p, rng=0)
    assert (got.status, got.nit) == (ref.status, ref.nit)
    assert got.fun == pytest.approx(ref.fun, rel=1e-12)


@pytest.mark.parametrize("estimator", ["mc", "lower-cv", "upper-cv"])
@pytest.mark.parametrize("far", [1e10, 1e80, 1e154, 1e200, 1e300])
def test_sliced_wasserstein_ignores_a_far_zero_weight_point(rng, estimator, far):
    # the control variates returned 0.0 for different clouds with the point at 1e200
    x, y = _clouds(rng, n=20, m=15)
    ref = sliced_wasserstein(x, y, rng=0, estimator=estimator)
    xf, a = _with_far_zero_weight(x, far)
    got = sliced_wasserstein(xf, y, a, rng=0, estimator=estimator)
    assert got == pytest.approx(ref, rel=1e-12)
    yb = np.stack([y, y])
    batch = sliced_wasserstein(np.stack([xf, xf]), yb, np.stack([a, np.ones(len(a))]),
                               rng=0, estimator=estimator)
    assert batch[0] == got
    theta = _unit(rng.normal(size=(7, 3)))
    np.testing.assert_allclose(projected_wasserstein(xf, y, a, directions=theta),
                               projected_wasserstein(x, y, directions=theta), rtol=1e-12)


@pytest.mark.parametrize("far", [1e154, 1e200])
def test_control_variates_with_matched_far_points_are_not_zero(rng, far):
    """Positive-weight points far away that match each other set the scale: the other
    directions' W_2^2 (rows_power) underflowed and both estimates were 0.0. Estimated in
    units of the largest W_2: the lower one is the MC one (its means differ below their
    rounding), the upper one stays near it."""
    x, y = _clouds(rng, n=20, m=20)
    x[0] = y[0] = far
    mc = sliced_wasserstein(x, y, rng=0)
    assert mc > 0.1
    assert sliced_wasserstein(x, y, rng=0, estimator="lower-cv") == pytest.approx(
        mc, rel=1e-12)
    assert sliced_wasserstein(x, y, rng=0, estimator="upper-cv") == pytest.approx(
        mc, rel=0.05)


@pytest.mark.parametrize("p, far", [(2, 1e154), (2, 1e200), (4, 1e80), (4, 1e40)])
@pytest.mark.parametrize("fn", [max_sliced_wasserstein,
                                distributional_sliced_wasserstein])
def test_ascents_with_matched_far_points_do_not_claim_success(rng, fn, p, far):
    """Matched positive-weight points far away set the scale: the others' W_p^p
    underflowed to a subnormal (few digits, a gradient of norm 0) and the ascent stopped
    at once with status 0. Now either the ascent of the others' objective (times their
    mass, (19/20)^(1/p): the far pair is coupled to itself on every direction), or
    status 2 with the best start's value from the scaled form."""
    x, y = _clouds(rng, n=20, m=20)
    ref = fn(x[1:], y[1:], p=p, rng=0)
    assert ref.fun > 0.1
    x[0] = y[0] = far
    res = fn(x, y, p=p, rng=0)
    mass = (19 / 20) ** (1 / p)
    if res.success:
        assert res.fun == pytest.approx(ref.fun * mass, rel=1e-6)
    else:
        assert res.status == 2
        assert 0.5 * ref.fun * mass < res.fun <= ref.fun * mass * (1 + 1e-9)


@given(seed=st.integers(0, 2**31), log_far=st.floats(-300, 300),
       p=st.sampled_from([1.0, 2.0, 4.0, 7.5]), sign=st.sampled_from([-1.0, 1.0]))
@settings(deadline=None, max_examples=25)
def test_a_zero_weight_point_anywhere_changes_nothing(seed, log_far, p, sign):
    # a zero-weight point does not change the measure, wherever it lies
    gen = np.random.default_rng(seed)
    x, y = gen.normal(size=(12, 3)), gen.normal(size=(9, 3)) + 0.5
    xf, a = _with_far_zero_weight(x, sign * 10.0 ** log_far)
    b = gen.random(9) + 0.1
    assert sliced_wasserstein(xf, y, a, b, p=p, rng=1) == pytest.approx(
        sliced_wasserstein(x, y, None, b, p=p, rng=1), rel=1e-12)
    ref = max_sliced_wasserstein(x, y, None, b, p=p, rng=1)
    got = max_sliced_wasserstein(xf, y, a, b, p=p, rng=1)
    assert (got.status, got.nit) == (ref.status, ref.nit)
    assert got.fun == pytest.approx(ref.fun, rel=1e-12)
    if p == 2.0:
        for est in ("lower-cv", "upper-cv"):
            assert sliced_wasserstein(xf, y, a, b, rng=1, estimator=est) == pytest.approx(
                sliced_wasserstein(x, y, None, b, rng=1, estimator=est), rel=1e-12)
