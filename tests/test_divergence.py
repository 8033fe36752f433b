import warnings

import _reference as ref
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import ottools
from ottools import OTConvergenceWarning, sinkhorn_divergence
from ottools._divergence import _sinkhorn_divergence_parts, _solve_symmetric
from ottools._kernels._symmetric import sinkhorn_symmetric


def _clouds(rng, n=30, m=25, d=2):
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) * 0.7 + 0.5


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 15), m=st.integers(1, 15),
       d=st.integers(1, 3), reg=st.sampled_from([0.3, 1.0, 3.0]))
def test_nonnegative_and_symmetric(seed, n, m, d, reg):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always", OTConvergenceWarning)
        s_xy = sinkhorn_divergence(x, y, reg=reg, maxiter=50_000)
        s_yx = sinkhorn_divergence(y, x, reg=reg, maxiter=50_000)
    # Rare near-degenerate draws make Sinkhorn sublinear; those are reported, not tested.
    assume(not any(issubclass(w.category, OTConvergenceWarning) for w in rec))
    assert s_xy >= -1e-8
    np.testing.assert_allclose(s_xy, s_yx, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("reg", [0.05, 0.5, 2.0])
def test_zero_for_identical_inputs(rng, reg):
    x = rng.normal(size=(40, 3))
    a = rng.random(40) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", OTConvergenceWarning)
        assert abs(sinkhorn_divergence(x, x, reg=reg)) <= 1e-8
        assert abs(sinkhorn_divergence(x, x, a / a.sum(), a / a.sum(), reg=reg)) <= 1e-8
    parts = _sinkhorn_divergence_parts(x, x.copy(), reg=reg)
    assert parts.xy.success and parts.xy.method == "symmetric"


@pytest.mark.parametrize("reg", [0.5, 1.0, 5.0])
def test_translation_closed_form(rng, reg):
    # Squared Euclidean cost: S_eps(alpha, alpha + t) = |t|^2 for every eps.
    x = rng.normal(size=(30, 2))
    t = np.array([0.3, -0.4])
    np.testing.assert_allclose(sinkhorn_divergence(x, x + t, reg=reg), 0.25, rtol=1e-7)


def test_positive_for_different_clouds(rng):
    x, y = _clouds(rng)
    assert sinkhorn_divergence(x, y, reg=0.5) > 0.1


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reg", [0.5, 2.0])
def test_matches_pot_with_convention_mapped(rng, weighted, reg):
    ot = pytest.importorskip("ot")
    x, y = _clouds(rng)
    a = b = None
    if weighted:
        a = rng.random(len(x)) + 0.1
        b = rng.random(len(y)) + 0.1
        a, b = a / a.sum(), b / b.sum()
    ours = sinkhorn_divergence(x, y, a, b, reg=reg, tol=1e-11)
    pot = ot.bregman.empirical_sinkhorn_divergence(x, y, reg, a, b, stopThr=1e-12,
                                                   numIterMax=50_000)
    # POT combines the linear costs <P, C> of the three entropic plans (clamped at 0);
    # ottools the entropic costs <P, C> + reg KL(P | a x b). Map with POT's own plans:
    aa = np.full(len(x), 1 / len(x)) if a is None else a
    bb = np.full(len(y), 1 / len(y)) if b is None else b
    kls = []
    for u, v, p, q in ((x, y, aa, bb), (x, x, aa, aa), (y, y, bb, bb)):
        P = ot.sinkhorn(p, q, ot.dist(u, v), reg, stopThr=1e-12, numItermax=50_000)
        kls.append(ref.kl(P, p, q))
    mapped = pot + reg * (kls[0] - 0.5 * kls[1] - 0.5 * kls[2])
    assert pot > 0  # no clamp involved
    np.testing.assert_allclose(ours, mapped, rtol=0, atol=1e-6)
    # ... and the linear parts of our three solves give POT's value directly.
    parts = _sinkhorn_divergence_parts(x, y, a, b, reg=reg, tol=1e-11)
    assert parts.xy.success and parts.xx.success and parts.yy.success
    lin = parts.xy.cost - 0.5 * (parts.xx.cost + parts.yy.cost)
    np.testing.assert_allclose(lin, pot, rtol=0, atol=1e-6)
    np.testing.assert_allclose(parts.value, ours, rtol=1e-12)


def test_other_metrics_and_callables(rng):
    x, y = _clouds(rng, 20, 15)
    s1 = sinkhorn_divergence(x, y, reg=0.5, metric="euclidean")
    s2 = sinkhorn_divergence(x, y, reg=0.5,
                             metric=lambda u, v: ottools.cost_matrix(u, v, "euclidean"))
    np.testing.assert_allclose(s1, s2, rtol=1e-12)
    assert s1 > 0
    parts = _sinkhorn_divergence_parts(x, y, reg=0.5, metric="euclidean")
    assert parts.xy.success and parts.xx.success and parts.yy.success
    assert parts.xx.method == parts.yy.method == "symmetric"


def test_non_symmetric_callable_uses_sinkhorn(rng):
    x, y = _clouds(rng, 12, 10)

    def metric(u, v):  # asymmetric: c(u, v) != c(v, u)
        return ottools.cost_matrix(u, v) + 0.5 * (u[:, :1] - v[:, 0][None, :]).clip(0)

    parts = _sinkhorn_divergence_parts(x, y, reg=0.5, metric=metric)
    assert parts.xx.method != "symmetric" and parts.yy.method != "symmetric"
    assert parts.xx.success and parts.yy.success and parts.xy.success


def test_nearly_symmetric_callable_uses_symmetric_update(rng):
    x, y = _clouds(rng, 12, 10)

    def metric(u, v):  # symmetric up to 4 ulps of max|C| (rounding-level asymmetry)
        c = ottools.cost_matrix(u, v)
        return c + 4 * np.finfo(c.dtype).eps * c.max() * np.tri(*c.shape)

    cxx = metric(x, x)
    assert not np.array_equal(cxx, cxx.T)
    parts = _sinkhorn_divergence_parts(x, y, reg=0.5, metric=metric)
    assert parts.xy.success and parts.xx.success and parts.yy.success
    assert parts.xx.method == parts.yy.method == "symmetric"
    np.testing.assert_allclose(parts.value, sinkhorn_divergence(x, y, reg=0.5), rtol=1e-9)


@pytest.mark.parametrize("n_iter", [1, 2, 5, 30])
def test_symmetric_kernel_matches_naive(rng, n_iter):
    x = rng.normal(size=(25, 2))
    a = rng.random(25) + 0.1
    a /= a.sum()
    C = ottools.cost_matrix(x, x)
    reg = 0.3
    f = np.zeros(25)
    nit, status, err = sinkhorn_symmetric(a, np.log(a), C, reg, f, 0.0, n_iter, True)
    assert nit == n_iter and status == 1
    np.testing.assert_allclose(f, ref.sinkhorn_symmetric(a, C, reg, n_iter), rtol=1e-12,
                               atol=1e-12)
    # err is the marginal error of the state before the last update.
    f_prev = ref.sinkhorn_symmetric(a, C, reg, n_iter - 1) if n_iter > 1 else np.zeros(25)
    P = ref.plan(a, a, C, reg, f_prev, f_prev)
    np.testing.assert_allclose(err, ref.marginal_error(P, a, a), rtol=1e-9, atol=1e-14)


def test_symmetric_solver_matches_sinkhorn(rng, dtype):
    x = rng.normal(size=(30, 2)).astype(dtype)
    a = (rng.random(30) + 0.1).astype(dtype)
    a[3] = 0  # zero weights are excluded, their potential is the c-transform
    a /= a.sum()
    C = ottools.cost_matrix(x, x)
    tol = 1e-9 if dtype == np.float64 else 1e-4
    sym = _solve_symmetric(a, C, 0.5, tol=tol, maxiter=10_000)
    full = ottools.sinkhorn(a, a, C, 0.5, tol=tol)
    assert sym.success and full.success
    assert sym.method == "symmetric"
    assert sym.plan.dtype == dtype and sym.f.dtype == dtype
    rtol = 1e-7 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(sym.fun, full.fun, rtol=rtol)
    np.testing.assert_allclose(sym.plan, full.plan, atol=10 * tol)
    np.testing.assert_allclose(sym.f, sym.g)
    # Sinkhorn determines f_i + g_j; for an isolated point (x[0] here) f_0 - g_0 is a
    # slow mode of plain Sinkhorn, that the symmetric averaging removes.
    np.testing.assert_allclose(sym.f, 0.5 * (full.f + full.g), atol=100 * tol)
    np.testing.assert_allclose(sym.plan, sym.plan.T, atol=1e-12 if dtype == np.float64 else 1e-7)
    # Fewer sweeps than Sinkhorn's two per iteration.
    assert sym.nit < 2 * full.nit


def test_parts_expose_plans_and_potentials(rng):
    x, y = _clouds(rng, 12, 9)
    parts = _sinkhorn_divergence_parts(x, y, reg=0.5)
    assert parts.xy.success and parts.xx.success and parts.yy.success
    assert parts.xy.plan.shape == (12, 9) and parts.xx.plan.shape == (12, 12)
    assert parts.yy.f.shape == (9,) and parts.cost_xy.shape == (12, 9)
    np.testing.assert_allclose(parts.cost_xx, ottools.cost_matrix(x, x))
    np.testing.assert_allclose(parts.value,
                               parts.xy.fun - 0.5 * (parts.xx.fun + parts.yy.fun))


def test_dtype(rng, dtype):
    x, y = _clouds(rng, 20, 15)
    s = sinkhorn_divergence(x.astype(dtype), y.astype(dtype), reg=0.5)
    assert type(s) is np.dtype(dtype).type  # the input dtype, as the sliced distances
    parts = _sinkhorn_divergence_parts(x.astype(dtype), y.astype(dtype), reg=0.5)
    assert parts.xy.success and parts.xx.success and parts.yy.success
    assert parts.xy.plan.dtype == dtype and parts.xx.plan.dtype == dtype
    np.testing.assert_allclose(s, sinkhorn_divergence(x, y, reg=0.5), rtol=1e-3)


def test_nonconvergence_warns_at_the_call_site(rng):
    x, y = _clouds(rng, 20, 15)
    with pytest.warns(OTConvergenceWarning, match=r"not converged.*W\(x, y\)") as rec:
        s = sinkhorn_divergence(x, y, reg=0.01, maxiter=2)
    assert np.isfinite(s)
    assert rec[0].filename == __file__


def test_bad_inputs(rng):
    x, y = _clouds(rng, 5, 4)
    with pytest.raises(TypeError, match="reg"):
        sinkhorn_divergence(x, y)
    with pytest.raises(ValueError, match="`reg` must be a positive finite number"):
        sinkhorn_divergence(x, y, reg=0)
    with pytest.raises(ValueError, match="`reg` must be a positive finite number"):
        sinkhorn_divergence(x, y, reg=-1.0)
    with pytest.raises(ValueError, match="same dimension"):
        sinkhorn_divergence(x, np.ones((4, 3)), reg=1.0)
    with pytest.raises(ValueError, match="Unknown metric 'nope'"):
        sinkhorn_divergence(x, y, reg=1.0, metric="nope")
    with pytest.raises(ValueError, match="`b` must have length 4"):
        sinkhorn_divergence(x, y, None, [0.5, 0.5], reg=1.0)
    with pytest.raises(ValueError, match="same total mass"):
        sinkhorn_divergence(x, y, np.ones(5), None, reg=1.0)
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        sinkhorn_divergence(x, y, reg=1.0, method="nope")
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        sinkhorn_divergence(x, x, reg=1.0, method="nope")  # no cross Sinkhorn solve
    with pytest.raises(ValueError, match="`x` must be finite"):
        sinkhorn_divergence(np.full((5, 2), np.inf), y, reg=1.0)


def test_envelope_gradients_of_parts(rng):
    # The derivatives the torch layer uses, against central finite differences.
    x, y = _clouds(rng, 8, 6)
    a = rng.random(8) + 0.5
    a /= a.sum()
    reg, h = 0.5, 1e-5
    parts = _sinkhorn_divergence_parts(x, y, a, None, reg=reg, tol=1e-13)
    assert parts.xy.success and parts.xx.success and parts.yy.success
    Pxy, Pxx = parts.xy.plan, parts.xx.plan
    grad_x = 2 * (Pxy.sum(1)[:, None] * x - Pxy @ y) - 2 * (Pxx.sum(1)[:, None] * x - Pxx @ x)
    fd = np.zeros_like(x)
    for i in range(8):
        for k in range(2):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd[i, k] = (sinkhorn_divergence(xp, y, a, reg=reg, tol=1e-13)
                        - sinkhorn_divergence(xm, y, a, reg=reg, tol=1e-13)) / (2 * h)
    np.testing.assert_allclose(grad_x, fd, atol=1e-6)
    # Weights: a tangent direction of the simplex (mass moves from sample 0 to 1).
    d = np.zeros(8)
    d[0], d[1] = 1.0, -1.0
    fd_a = (sinkhorn_divergence(x, y, a + h * d, reg=reg, tol=1e-13)
            - sinkhorn_divergence(x, y, a - h * d, reg=reg, tol=1e-13)) / (2 * h)
    np.testing.assert_allclose((parts.xy.f - parts.xx.f) @ d, fd_a, atol=1e-6)
