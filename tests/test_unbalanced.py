"""Unbalanced entropic OT: ``sinkhorn(..., reg_m=...)`` and the unbalanced divergence."""

import textwrap
import warnings

import numpy as np
import pytest

import ottools
from conftest import python_output


def _problem(rng, n=20, m=15, zeros=0, scale_b=1.7):
    x, y = rng.random((n, 2)), rng.random((m, 2))
    cost = ottools.cost_matrix(x, y)
    a, b = rng.random(n) + 0.1, (rng.random(m) + 0.1) * scale_b
    if zeros:
        a[:zeros] = 0
        b[-zeros:] = 0
    return a, b, cost


def _pot_plan(a, b, cost, reg, reg_m):
    ot = pytest.importorskip("ot")
    with np.errstate(all="ignore"):
        return ot.unbalanced.sinkhorn_unbalanced(a, b, cost, reg, reg_m,
                                                 method="sinkhorn_stabilized", stopThr=1e-15,
                                                 numItermax=200_000)


@pytest.mark.parametrize("method", ["auto", "sns"])
@pytest.mark.parametrize("reg, reg_m", [(0.1, 1.0), (0.05, 0.3), (0.02, (0.5, 2.0)),
                                        (0.02, (np.inf, 0.5))])
def test_plan_equals_pot(rng, reg, reg_m, method):
    a, b, cost = _problem(rng)
    if np.isinf(np.atleast_1d(reg_m)[0]):
        a *= b.sum() / a.sum() * 0.8  # semi-relaxed: the plan's mass is sum(a)
    res = ottools.sinkhorn(a, b, cost, reg, reg_m=reg_m, tol=1e-12, maxiter=100_000,
                           method=method)
    if method == "sns":
        assert res.nit_newton > 0
    assert res.success and res.err <= 1e-12
    np.testing.assert_allclose(res.plan, _pot_plan(a, b, cost, reg, reg_m), rtol=0,
                               atol=1e-9)
    # Strong duality, the objective's terms and the plan's marginals.
    assert res.fun == pytest.approx(res.dual_value, rel=1e-10)
    assert res.fun == pytest.approx(sum(res.terms.values()), rel=1e-12)
    np.testing.assert_allclose(res.marginals[0], res.plan.sum(1), rtol=1e-12)
    np.testing.assert_allclose(res.marginals[1], res.plan.sum(0), rtol=1e-12)
    # Optimality: the marginals are the relaxed targets a exp(-f / rho_a), b exp(-g / rho_b).
    ra, rb = (reg_m, reg_m) if np.isscalar(reg_m) else reg_m
    np.testing.assert_allclose(res.marginals[0], a * np.exp(-res.f / ra), rtol=1e-9)
    np.testing.assert_allclose(res.marginals[1], b * np.exp(-res.g / rb), rtol=1e-9)


@pytest.mark.parametrize("reg, reg_m", [(1e-3, 1.0), (1e-2, (0.5, np.inf))])
def test_over_relaxed_sweeps_reach_the_plain_plan_in_fewer_sweeps(rng, reg, reg_m):
    """`auto` over-relaxes the unbalanced sweeps too (omega from the observed rate): the
    same plan as plain damped sweeps, to the tolerance, in fewer sweeps."""
    x, y = rng.random((300, 2)), rng.random((250, 2))
    cost = ottools.cost_matrix(x, y)
    cost /= cost.max()
    a, b = np.full(300, 1 / 300), np.full(250, 1.3 / 250)
    plain = ottools.sinkhorn(a, b, cost, reg, reg_m=reg_m, tol=1e-11, maxiter=100_000,
                             options={"overrelaxation": False, "newton": False})
    fast = ottools.sinkhorn(a, b, cost, reg, reg_m=reg_m, tol=1e-11, maxiter=100_000,
                            options={"newton": False})
    assert plain.success and fast.success
    assert fast.nit < plain.nit / 2
    np.testing.assert_allclose(fast.plan, plain.plan, rtol=0, atol=1e-9 * plain.plan.max())


@pytest.mark.parametrize("method", ["auto", "log"])
@pytest.mark.parametrize("reg_m", [10.0, (10.0, np.inf), (np.inf, 10.0)])
def test_large_translation_of_the_potentials(rng, method, reg_m):
    """Masses 1 and 1.3, reg_m = 10, reg = 1e-3 of the largest cost: the optimal
    potentials sit about rho log(1.14) = 1.3 = 1300 reg away from the balanced ones, a
    translation no scaling can hold (exp(1300) overflows). The translation-invariant step
    moves the absorbed potentials; the solve converges to the optimum (the first-order
    conditions and strong duality hold), where it used to stall and end non-finite."""
    n, m = 60, 50
    x, y = rng.random((n, 2)), rng.random((m, 2)) + 0.1
    cost = ottools.cost_matrix(x, y)
    cost /= cost.max()
    a, b = rng.random(n) + 0.1, np.full(m, 1.3 / m)
    a /= a.sum()
    reg = 1e-3
    res = ottools.sinkhorn(a, b, cost, reg, reg_m=reg_m, tol=1e-10, maxiter=50_000,
                           method=method)
    assert res.success, res.message
    ra, rb = (reg_m, reg_m) if np.isscalar(reg_m) else reg_m
    P = a[:, None] * b[None, :] * np.exp((res.f[:, None] + res.g[None, :] - cost) / reg)
    np.testing.assert_allclose(res.plan, P, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(P.sum(1), a * np.exp(-res.f / ra), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(P.sum(0), b * np.exp(-res.g / rb), rtol=1e-8, atol=1e-14)
    assert res.fun == pytest.approx(res.dual_value, rel=1e-9)
    # The mass moved: between the two masses, at the hard side's mass when one is hard.
    mass = P.sum()
    if np.isinf(ra):
        assert mass == pytest.approx(1.0, rel=1e-9)
    elif np.isinf(rb):
        assert mass == pytest.approx(1.3, rel=1e-9)
    else:
        assert 1.0 < mass < 1.3


def test_newton_steps_finish_where_the_sweeps_crawl():
    """5-D points, reg 1e-3 of the largest cost, reg_m = 10, masses 1 and 1.3: the damped
    sweeps need thousands of iterations (2765 for this problem at tol 1e-8); `auto`
    switches to Newton steps on the unbalanced dual (the penalties' curvature on the
    Hessian's diagonal) and reaches the same optimum in a tenth of the iterations."""
    rng = np.random.default_rng(0)
    n, d, reg, reg_m = 200, 5, 1e-3, 10.0
    x, y = rng.random((n, d)), rng.random((n, d)) + 0.1
    cost = ottools.cost_matrix(x, y)
    cost /= cost.max()
    a, b = rng.random(n) + 0.1, np.full(n, 1.3 / n)
    a /= a.sum()
    plain = ottools.sinkhorn(a, b, cost, reg, reg_m=reg_m, tol=1e-9, maxiter=100_000,
                             options={"newton": False})
    res = ottools.sinkhorn(a, b, cost, reg, reg_m=reg_m, tol=1e-9, maxiter=100_000)
    assert plain.success and res.success
    assert res.nit_newton > 0 and res.nit < plain.nit / 10, (res.nit, plain.nit)
    # First-order conditions at the Newton stage's potentials, and the same plan.
    P = a[:, None] * b[None, :] * np.exp((res.f[:, None] + res.g[None, :] - cost) / reg)
    np.testing.assert_allclose(P.sum(1), a * np.exp(-res.f / reg_m), rtol=1e-7, atol=1e-13)
    np.testing.assert_allclose(P.sum(0), b * np.exp(-res.g / reg_m), rtol=1e-7, atol=1e-13)
    assert np.abs(res.plan - plain.plan).sum() <= 1e-7 * plain.plan.sum()
    assert res.fun == pytest.approx(res.dual_value, rel=1e-9)


def _far_problem(reg, dtype=np.float64, n=50, m=40, d=2):
    """Masses 1 and 100 with reg_m = 100: the optimal potentials sit near -230 and 230."""
    rng = np.random.default_rng(7)
    x, y = rng.random((n, d)), rng.random((m, d))
    cost = ottools.cost_matrix(x, y)
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a /= a.sum()
    b *= 100.0 / b.sum()
    return a.astype(dtype), b.astype(dtype), cost.astype(dtype)


def test_newton_steps_translate_the_potentials():
    """method='sns' from its warm-up (no translation step there): the Newton stage takes
    the translation-invariant step before each step; it used to fail every step and end
    at maxiter with err 40 (200 x 150, 5-D)."""
    a, b, cost = _far_problem(1e-3, n=200, m=150, d=5)
    res = ottools.sinkhorn(a, b, cost, 1e-3, reg_m=100.0, method="sns")
    assert res.success and res.nit < 200, (res.nit, res.message)
    # (tol 3e-10: the rounding of potentials near 230 at reg 1e-3 is about 1e-10)
    ref = ottools.sinkhorn(a, b, cost, 1e-3, reg_m=100.0, tol=3e-10,
                           options={"newton": False}, maxiter=100_000)
    assert ref.success
    np.testing.assert_allclose(res.plan, ref.plan, rtol=0, atol=1e-8 * ref.plan.max())
    assert res.f.mean() == pytest.approx(-230, abs=5)


def test_float32_plan_of_far_potentials():
    """float32 at reg 1e-3 with potentials near +-230: the plan is computed from centred
    potentials (the float32 rounding of 230 is 1.5 % of an entry at reg 1e-3: err was
    0.1 against tol 1e-4, the plan 6e-3 away from float64's), and matches the float64
    plan to its tolerance."""
    a, b, cost = _far_problem(1e-3, np.float32)
    res = ottools.sinkhorn(a, b, cost, 1e-3, reg_m=100.0)
    assert res.success and res.plan.dtype == np.float32, res.message
    ref = ottools.sinkhorn(a.astype(np.float64), b.astype(np.float64),
                           cost.astype(np.float64), 1e-3, reg_m=100.0)
    assert np.abs(res.plan - ref.plan).sum() <= 1e-4 * ref.plan.sum()


def test_far_potentials_converge_on_the_working_problem():
    """reg 1e-4 with potentials near +-230: their float64 rounding alone is ~5e-10 reg per
    plan entry, and the Newton stage stalled at err 3e-9 > tol = 1e-9 (status 4; 9980
    Newton steps before that stop). The solvers now work on the equivalent problem of
    weights a e^alpha, b e^beta of equal masses, whose potentials are of the costs' size:
    converged in tens of steps, and the result is that of the problem as given (its
    plan from the returned potentials, its targets, a zero duality gap)."""
    a, b, cost = _far_problem(1e-4)
    reg, rho = 1e-4, 100.0
    for method in ("auto", "sns"):
        res = ottools.sinkhorn(a, b, cost, reg, reg_m=rho, method=method)
        assert res.success and res.status == 0 and res.nit < 500, res.message
        assert res.err <= 1e-9
        assert np.abs(res.f).max() > 200 and np.abs(res.g).max() > 200  # as given
        ta, tb = a * np.exp(-res.f / rho), b * np.exp(-res.g / rho)
        P = res.plan
        err = (np.abs(P.sum(1) - ta).sum() + np.abs(P.sum(0) - tb).sum()) / np.sqrt(a.sum() * b.sum())
        assert err == pytest.approx(res.err, rel=1e-6, abs=1e-13)
        own = a[:, None] * b[None, :] * np.exp((res.f[:, None] + res.g[None, :] - cost) / reg)
        assert np.abs(own - P).sum() <= 1e-7 * P.sum()  # (the rounding of f, g: 5e-10)
        assert res.fun == pytest.approx(res.dual_value, rel=1e-8)
        kl_a = (P.sum(1) * np.log(P.sum(1) / a) - P.sum(1) + a).sum()
        assert res.terms["relax_a"] == pytest.approx(rho * kl_a, rel=1e-10)


def test_weight_offsets_leave_every_field_of_the_problem_as_given():
    """Unbalanced problems whose potentials sit far from the costs (masses 1 and 100 or
    3 and 0.2, reg_m 1e3, semi-relaxed, unequal reg_m): the same plan, potentials,
    objective terms and duality gap as a reference log-domain solve of the problem as
    given (scipy's logsumexp, damped iterations to a fixed point)."""
    from scipy.special import logsumexp

    rng = np.random.default_rng(3)
    n, m = 30, 20
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 0.5
    cost = ottools.cost_matrix(x, y)
    reg = 0.5
    for ma, mb, (ra, rb) in [(1.0, 100.0, (1e3, 1e3)), (3.0, 0.2, (1e3, np.inf)),
                             (1.0, 50.0, (np.inf, 200.0)), (2.0, 90.0, (300.0, 2e3))]:
        a = rng.random(n) + 0.1
        a *= ma / a.sum()
        b = rng.random(m) + 0.1
        b *= mb / b.sum()
        res = ottools.sinkhorn(a, b, cost, reg, reg_m=(ra, rb), tol=1e-12)
        assert res.success
        f, g = np.zeros(n), np.zeros(m)
        ta, tb = (1.0 if np.isinf(r) else r / (r + reg) for r in (ra, rb))
        for _ in range(200000):
            f_old = f
            f = -ta * reg * logsumexp(np.log(b)[None, :] + (g[None, :] - cost) / reg, axis=1)
            g = -tb * reg * logsumexp(np.log(a)[:, None] + (f[:, None] - cost) / reg, axis=0)
            if np.abs(f - f_old).max() < 1e-13 * max(1.0, np.abs(f).max()):
                break
        P = a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - cost) / reg)
        scale = max(1.0, np.abs(f).max())
        np.testing.assert_allclose(res.f, f, rtol=0, atol=1e-9 * scale)
        np.testing.assert_allclose(res.g, g, rtol=0, atol=1e-9 * scale)
        assert np.abs(res.plan - P).sum() <= 1e-8 * P.sum()
        kl = lambda p, w: (p * np.log(p / w) - p + w).sum()  # noqa: E731
        assert res.terms["cost"] == pytest.approx((P * cost).sum(), rel=1e-9)
        assert res.terms["entropy"] == pytest.approx(
            reg * kl(P, a[:, None] * b[None, :]), rel=1e-8, abs=1e-9 * abs(res.fun))
        if np.isfinite(ra):
            assert res.terms["relax_a"] == pytest.approx(ra * kl(P.sum(1), a), rel=1e-8)
        assert res.fun == pytest.approx(res.dual_value, rel=1e-9)


@pytest.mark.parametrize("reg, reg_m", [(0.1, 1.0), (0.05, (0.3, 2.0)), (0.05, (np.inf, 0.5))])
def test_plan_equals_ott_after_mapping(rng, reg, reg_m):
    """OTT-JAX's unbalanced Sinkhorn (``tau = reg_m / (reg_m + reg)``) takes its entropy
    relative to the counting measure: its plan is ours for the cost
    ``C + reg log(a_i b_j)`` (the mapping of the docs), and the balanced plans agree on
    the cost itself."""
    pytest.importorskip("ott")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn as ott_sinkhorn

    a, b, cost = _problem(rng)
    ra, rb = (reg_m, reg_m) if np.isscalar(reg_m) else reg_m
    tau = [1.0 if np.isinf(r) else r / (r + reg) for r in (ra, rb)]
    if np.isinf(ra):
        a *= b.sum() / a.sum() * 0.8
    geom = geometry.Geometry(cost_matrix=jnp.asarray(cost), epsilon=reg)
    solver = ott_sinkhorn.Sinkhorn(threshold=1e-13, max_iterations=200_000)
    out = solver(linear_problem.LinearProblem(geom, a=jnp.asarray(a), b=jnp.asarray(b),
                                              tau_a=tau[0], tau_b=tau[1]))
    assert bool(out.converged)
    mapped = cost + reg * np.log(np.outer(a, b))
    res = ottools.sinkhorn(a, b, mapped, reg, reg_m=reg_m, tol=1e-13, maxiter=100_000)
    assert res.success
    np.testing.assert_allclose(res.plan, np.asarray(out.matrix), rtol=0, atol=1e-11)
    # Without the mapping the plans differ (by a few percent here): the convention matters.
    plain = ottools.sinkhorn(a, b, cost, reg, reg_m=reg_m, tol=1e-13, maxiter=100_000)
    assert np.abs(plain.plan - np.asarray(out.matrix)).max() > 1e-4
    a1, b1 = a / a.sum(), b / b.sum()
    out = solver(linear_problem.LinearProblem(geom, a=jnp.asarray(a1), b=jnp.asarray(b1)))
    bal = ottools.sinkhorn(a1, b1, cost, reg, tol=1e-13)
    np.testing.assert_allclose(bal.plan, np.asarray(out.matrix), rtol=0, atol=1e-11)


_CLOUD_CASES = [(2, 1e-2, 1.0), (2, 1e-3, (10.0, np.inf)), (10, 1e-3, 10.0),
                (5, 1e-4, (1.0, 0.3))]


@pytest.mark.parametrize("method, d, reg, reg_m",
                         [(m, *c) for m in ("auto", "sns") for c in _CLOUD_CASES]
                         + [("log", *_CLOUD_CASES[0])])
def test_point_cloud_equals_dense(rng, method, d, reg, reg_m):
    """Unbalanced problems on a PointCloud cost (costs computed on the fly): the damped
    online sweeps with the translation step, and the online Newton stage, reach the dense
    solve's plan to 1e-10 (float64), zero weights included. (Plain log sweeps only at
    reg 1e-2: below, they need tens of thousands of iterations on both paths.)"""
    n, m = 60, 45
    x, y = rng.random((n, d)), rng.random((m, d)) + 0.1
    a, b = rng.random(n) + 0.1, np.full(m, 1.3 / m)
    a[:3] = 0
    a /= a.sum()
    kw = dict(reg_m=reg_m, method=method, tol=1e-11, maxiter=20_000)
    online = ottools.sinkhorn(a, b, ottools.PointCloud(x, y), reg, **kw)
    dense = ottools.sinkhorn(a, b, ottools.cost_matrix(x, y), reg, **kw)
    assert online.success and dense.success, (online.message, dense.message)
    P = online.plan_dense()
    np.testing.assert_allclose(P, dense.plan, rtol=0, atol=1e-10 * dense.plan.max())
    assert online.fun == pytest.approx(dense.fun, rel=1e-10)
    np.testing.assert_allclose(online.marginals[0], dense.marginals[0], rtol=0, atol=1e-12)
    if reg < 1e-2 and method != "log":
        assert online.nit_newton > 0


def test_online_unbalanced_solve_allocates_no_n_by_m_array():
    """Peak RSS of an unbalanced PointCloud solve at n = m = 3000 (kernels compiled
    beforehand): the dense cost alone would need 72 MB."""
    code = textwrap.dedent("""
        import resource, numpy as np, ottools
        rng = np.random.default_rng(0)
        b = np.full(600, 1.3 / 600)
        small = ottools.PointCloud(rng.random((600, 3)), rng.random((600, 3)))
        ottools.sinkhorn(None, b, small, 0.05, reg_m=1.0, maxiter=30)  # compile
        x, y = rng.random((3000, 3)), rng.random((3000, 3))
        b = np.full(3000, 1.3 / 3000)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = ottools.sinkhorn(None, b, ottools.PointCloud(x, y), 0.05, reg_m=1.0)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024.0, res.success)
        """)
    grown_mb, success = python_output(code)
    assert success == "True" and float(grown_mb) < 20.0


@pytest.mark.parametrize("reg_m", [1.0, (0.5, np.inf)])
def test_divergence_and_loss_online_equal_dense(rng, reg_m):
    """`online=True` (the path above the dense memory budget) with `reg_m`: the same
    divergence and, through the torch loss, the same gradient as the dense path; it used
    to raise."""
    x, y = rng.random((120, 2)), rng.random((90, 2))
    a, b = np.full(120, 1 / 120), np.full(90, 1.4 / 90)
    on = ottools.sinkhorn_divergence(x, y, a, b, reg=1e-2, reg_m=reg_m, online=True,
                                     tol=1e-11)
    off = ottools.sinkhorn_divergence(x, y, a, b, reg=1e-2, reg_m=reg_m, online=False,
                                      tol=1e-11)
    assert on.success and off.success
    assert on.fun == pytest.approx(off.fun, rel=1e-9, abs=1e-15) and on.fun > 0
    torch = pytest.importorskip("torch")
    from ottools.torch import sinkhorn_loss

    grads = []
    for online in (True, False):
        X = torch.tensor(x, requires_grad=True)
        loss = sinkhorn_loss(X, torch.tensor(y), torch.tensor(a), torch.tensor(b), reg=1e-2,
                             reg_m=reg_m, online=online, tol=1e-11)
        grads.append(torch.autograd.grad(loss, X)[0].numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=0, atol=1e-9)


def test_zero_weights_rectangular_and_float32(rng):
    a, b, cost = _problem(rng, 12, 9, zeros=2)
    res = ottools.sinkhorn(a, b, cost, 0.05, reg_m=0.5, tol=1e-12, maxiter=100_000)
    assert res.success
    assert np.all(res.plan[a == 0] == 0) and np.all(res.plan[:, b == 0] == 0)
    assert np.all(np.isfinite(res.f)) and np.all(np.isfinite(res.g))
    # POT's solvers fail on zero weights ("numerical errors at iteration 0"): compare on the
    # positive-weight problem, which is the same problem (a zero weight forces a zero row).
    keep_a, keep_b = a > 0, b > 0
    np.testing.assert_allclose(
        res.plan[np.ix_(keep_a, keep_b)],
        _pot_plan(a[keep_a], b[keep_b], cost[np.ix_(keep_a, keep_b)], 0.05, 0.5), atol=1e-9)
    r32 = ottools.sinkhorn(a.astype(np.float32), b.astype(np.float32),
                           cost.astype(np.float32), 0.05, reg_m=0.5)
    assert r32.success and r32.plan.dtype == r32.f.dtype == np.float32
    assert r32.marginals[0].dtype == r32.marginals[1].dtype == np.float32  # were float64
    np.testing.assert_allclose(r32.plan, res.plan, atol=1e-4 * res.plan.sum())  # float32 tol


def test_large_reg_m_tends_to_the_balanced_plan(rng):
    a, b, cost = _problem(rng, scale_b=1.0)
    a, b = a / a.sum(), b / b.sum()
    bal = ottools.sinkhorn(a, b, cost, 0.05, tol=1e-12)
    unb = ottools.sinkhorn(a, b, cost, 0.05, reg_m=1e6, tol=1e-12, maxiter=100_000)
    assert bal.success and unb.success
    np.testing.assert_allclose(unb.plan, bal.plan, atol=1e-6)
    # inf on both sides is the balanced problem itself.
    inf = ottools.sinkhorn(a, b, cost, 0.05, reg_m=np.inf, tol=1e-12)
    np.testing.assert_array_equal(inf.plan, bal.plan)


@pytest.mark.parametrize("method", ["log", "auto"])
@pytest.mark.parametrize("reg_m", [1e-10, (1e-300, 1.0), (1e-12, np.inf)])
def test_tiny_reg_m_converges(rng, method, reg_m):
    # rho far below reg: the absorbed sweeps hold f to reg x the rounding of the scalings,
    # and the targets a exp(-f / rho) amplify it by 1 / rho ("log" ran 10,000 sweeps to
    # err 7e-9 at 1e-10, 0.44 at (1e-300, 1)). Exact damped log iterations: a few.
    a, b, cost = _problem(rng, scale_b=1.0)
    if np.isinf(np.atleast_1d(reg_m)[-1]):
        b *= a.sum() / b.sum()
    res = ottools.sinkhorn(a, b, cost, 0.05, reg_m=reg_m, method=method, tol=1e-12)
    assert res.success and res.err <= 1e-12 and res.nit <= 5
    np.testing.assert_allclose(res.plan, _pot_plan(a, b, cost, 0.05, reg_m), rtol=0,
                               atol=1e-12 * a.sum())
    ra, rb = (reg_m, reg_m) if np.isscalar(reg_m) else reg_m
    np.testing.assert_allclose(res.marginals[0], a * np.exp(-res.f / ra), rtol=1e-9)
    if np.isfinite(rb):
        np.testing.assert_allclose(res.marginals[1], b * np.exp(-res.g / rb), rtol=1e-9)
    else:
        np.testing.assert_allclose(res.marginals[1], b, rtol=1e-9)


def test_tol_zero_keeps_the_sweeps_and_newton_steps(rng):
    """tol = 0 (run to maxiter) read as 'the rounding floor binds': the exact damped
    iterations at every reg_m, 2000 of them to err 1e-4 (the sweeps and Newton steps:
    5e-15 in 136)."""
    a, b, cost = _problem(rng, n=60, m=50, scale_b=1.0)
    res = ottools.sinkhorn(a, b, cost, 1e-3, reg_m=1.0, tol=0.0, maxiter=300)
    assert "newton" in res.stages and res.err < 1e-12


@pytest.mark.parametrize("check_every", [1, 7, 10])
def test_a_callback_never_changes_the_unbalanced_iterates(rng, check_every):
    """The translation steps' shift was added to the absorbed potentials at the end of
    each kernel call: a callback's period (how the sweeps split into calls) moved the
    iterates by 1e-17."""
    a, b, cost = _problem(rng, n=60, m=50, scale_b=1.0)
    ref = ottools.sinkhorn(a, b, cost, 1e-3, reg_m=1.0)
    seen = []
    res = ottools.sinkhorn(a, b, cost, 1e-3, reg_m=1.0, callback=lambda r: seen.append(r.nit),
                           options={"check_every": check_every})
    assert seen and res.nit == ref.nit
    np.testing.assert_array_equal(res.f, ref.f)
    np.testing.assert_array_equal(res.plan, ref.plan)


def test_semi_relaxed_keeps_the_hard_marginal(rng):
    a, b, cost = _problem(rng)
    res = ottools.sinkhorn(a, b, cost, 0.02, reg_m=(0.5, np.inf), tol=1e-11, maxiter=100_000)
    assert res.success
    np.testing.assert_allclose(res.plan.sum(0), b, rtol=1e-9)  # hard
    assert not np.allclose(res.plan.sum(1), a, rtol=1e-3)      # relaxed
    assert res.terms["relax_b"] == 0.0


def test_divergence_is_zero_for_equal_measures_and_positive_otherwise(rng):
    x, y = rng.normal(size=(25, 2)), rng.normal(size=(20, 2)) + 0.3
    a, b = rng.random(25) + 0.1, (rng.random(20) + 0.1) * 2
    same = ottools.sinkhorn_divergence(x, x, a, a, reg=0.2, reg_m=1.0)
    assert same.success and abs(same.fun) <= 1e-12
    diff = ottools.sinkhorn_divergence(x, y, a, b, reg=0.2, reg_m=1.0)
    assert diff.success and diff.fun > 0.01
    assert ottools.sinkhorn_divergence(y, x, b, a, reg=0.2, reg_m=1.0).fun == diff.fun


def test_divergence_matches_geomloss_after_mapping(rng):
    geomloss = pytest.importorskip("geomloss")
    torch = pytest.importorskip("torch")
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(25, 2)) + 0.5
    a, b = rng.random(30) + 0.2, (rng.random(25) + 0.2) * 1.5
    blur, reach = 0.5, 1.0
    # GeomLoss (p = 2): cost |x - y|^2 / 2, eps = blur^2, rho = reach^2.
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur, reach=reach, scaling=0.999,
                                debias=True, backend="tensorized")
    t = torch.from_numpy
    expected = float(loss(t(a), t(x), t(b), t(y)))
    res = ottools.sinkhorn_divergence(x / np.sqrt(2), y / np.sqrt(2), a, b, reg=blur**2,
                                      reg_m=reach**2, tol=1e-12)
    assert res.success
    assert res.fun == pytest.approx(expected, rel=3e-5)  # GeomLoss: 0.999 eps-steps


@pytest.mark.parametrize("reg_m, exc, match", [
    (0.0, ValueError, "`reg_m` must be positive"),
    (-1.0, ValueError, "`reg_m` must be positive"),
    (np.nan, ValueError, "`reg_m` must be positive"),
    ((1.0, 2.0, 3.0), ValueError, r"`reg_m` must be a number or a pair .* got 3 values"),
    ("1", TypeError, "`reg_m` must hold real numbers"),
    (True, TypeError, "`reg_m` must hold real numbers"),
])
def test_bad_reg_m(reg_m, exc, match):
    with pytest.raises(exc, match=match):
        ottools.sinkhorn([0.5, 0.5], [0.5, 0.5], np.eye(2), 0.1, reg_m=reg_m)


def test_unequal_masses_point_to_reg_m():
    with pytest.raises(ValueError, match="same total mass.*relax the marginals with `reg_m`"):
        ottools.sinkhorn([0.5, 0.5], [1.0, 1.0], np.eye(2), 0.1)
    for method in ("scaling", "sns"):
        res = ottools.sinkhorn([0.5, 0.5], [1.0, 1.0], np.eye(2), 0.1, reg_m=1.0,
                               method=method)
        assert res.success


@pytest.mark.parametrize("reg_m", [(2.0, 0.7), (0.7, 2.0), (0.5, np.inf)])
def test_divergence_with_a_pair_reg_m_is_its_three_problems(rng, reg_m):
    """``reg_m = (r_a, r_b)`` relaxes a's marginal by r_a and b's by r_b in the cross
    problem, whichever orientation the divergence solves it in (the swapped orientation
    kept the pair: 0.841 against 1.600), and S(x, y; (r_a, r_b)) = S(y, x; (r_b, r_a))."""
    x, y = rng.random((9, 2)), rng.random((7, 2)) + 0.3
    a, b = rng.random(9) + 0.1, 0.5 * (rng.random(7) + 0.1)
    reg = 0.1
    kw = dict(reg=reg, tol=1e-12, maxiter=100_000)
    parts = [ottools.sinkhorn(u, v, ottools.cost_matrix(p, q), reg, reg_m=reg_m, tol=1e-12,
                              maxiter=100_000).fun
             for p, q, u, v in ((x, y, a, b), (x, x, a, a), (y, y, b, b))]
    want = parts[0] - 0.5 * (parts[1] + parts[2]) + 0.5 * reg * (a.sum() - b.sum()) ** 2
    for res in (ottools.sinkhorn_divergence(x, y, a, b, reg_m=reg_m, **kw),
                ottools.sinkhorn_divergence(y, x, b, a, reg_m=reg_m[::-1], **kw)):
        assert res.success
        assert res.fun == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_relaxation_terms_of_a_large_reg_m_do_not_cancel(rng):
    """rho KL(P1 | a) summed as rho sum w phi(P1 / a - 1): the plain sum cancelled to about
    rho * 1e-16 (reg_m 1e15: fun 0.286 against 0.175 balanced, negative relax terms). With
    equal masses the unbalanced value lies below the balanced one, and its relaxation
    terms are the rounding-free KL of the returned plan's marginals."""
    x, y = rng.random((20, 2)), rng.random((15, 2))
    C = ottools.cost_matrix(x, y)
    a, b = np.full(20, 1 / 20), np.full(15, 1 / 15)
    bal = ottools.sinkhorn(a, b, C, 0.05, tol=1e-12).fun
    for rm in (1e8, 1e12, 1e15):
        res = ottools.sinkhorn(a, b, C, 0.05, reg_m=rm, method="sns", tol=1e-12)
        assert res.success
        assert res.terms["relax_a"] >= 0 and res.terms["relax_b"] >= 0
        rows, cols = res.marginals
        d = (rows - a) / a  # (exact differences: P1 is close to a)
        assert np.abs(d).max() < 1e-6
        kl = rm * np.sum(a * (d * d / 2 - d ** 3 / 6 + d ** 4 / 12))  # to |d|**5
        assert res.terms["relax_a"] == pytest.approx(kl, rel=1e-9, abs=1e-300)
        assert res.fun <= bal + 1e-9
        assert res.fun == pytest.approx(bal, abs=1e-6)


def test_garbage_warm_start_gives_finite_values(rng):
    """init = (1e6, -1e6) on an unbalanced problem: NaN value and err with inf in the plan
    (dense), a raw math domain error (PointCloud: log(A / B) with A / B underflowing).
    Now the starting point with status 2 (dense), or a solve from there."""
    x, y = rng.random((25, 2)), rng.random((20, 2))
    a, b = np.full(25, 1 / 25), np.full(20, 1.5 / 20)
    init = (np.full(25, 1e6), np.full(20, -1e6))
    C = ottools.cost_matrix(x, y)
    for method in ("scaling", "sns", "log"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            res = ottools.sinkhorn(a, b, C, 1e-3, reg_m=0.5, method=method, init=init)
        assert res.status in (0, 2)
        assert np.isfinite(res.fun) and np.isfinite(res.err)
        assert np.all(np.isfinite(res.plan)) and np.all(np.isfinite(res.f))
    res = ottools.sinkhorn(a, b, ottools.PointCloud(x, y), 0.05, reg_m=0.5, init=init)
    ref = ottools.sinkhorn(a, b, C, 0.05, reg_m=0.5)
    assert res.success and res.fun == pytest.approx(ref.fun, rel=1e-7)


def test_err_is_relative_to_the_mass_at_which_the_penalties_balance():
    """err was relative to sum(a): masses 0.0034 and 946 with b hard (a plan of mass 946)
    asked the marginals for 3e-12 of 946, below their float64 rounding, and auto stopped
    with status 4 once its iterations reached tol (10,000 sweeps to maxiter before the
    working problem of equal masses). It is now relative to sum(a)**(1 - w) sum(b)**w,
    w = (reg_m_b + reg) / (reg_m_a + reg_m_b + 2 reg): sum(b) here, converged; and the
    reported err is that formula on the returned plan and potentials."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(144, 1)), rng.normal(size=(275, 1)) + 0.7
    cost = ottools.cost_matrix(x, y)
    a, b = rng.random(144), rng.random(275)
    a *= 0.0034 / a.sum()
    b *= 946.0 / b.sum()
    reg = 0.34
    for reg_m in [(74.4, np.inf), (74.4, 300.0), (np.inf, 50.0)]:
        ra, rb = reg_m
        res = ottools.sinkhorn(a, b, cost, reg, reg_m=reg_m)
        assert res.success, (reg_m, res.message)
        w = 0.0 if np.isinf(ra) else (1.0 if np.isinf(rb) else (rb + reg) / (ra + rb + 2 * reg))
        mass = a.sum() ** (1 - w) * b.sum() ** w
        ta = a if np.isinf(ra) else a * np.exp(-res.f / ra)
        tb = b if np.isinf(rb) else b * np.exp(-res.g / rb)
        P = res.plan
        err = (np.abs(P.sum(1) - ta).sum() + np.abs(P.sum(0) - tb).sum()) / mass
        assert res.err == pytest.approx(err, rel=1e-6, abs=1e-15)
        assert res.err <= 1e-9


def test_reg_m_as_a_zero_d_array():
    """reg_m=np.array(1.0) (what tensor.detach().cpu().numpy() gives for a 0-d tensor,
    the fix a torch reg_m's message suggests) raised a bare "len() of unsized object":
    it is the number, and a 0-d array of a non-number is refused naming reg_m."""
    rng = np.random.default_rng(0)
    a, b, cost = rng.random(6), rng.random(5), rng.random((6, 5))
    ref = ottools.sinkhorn(a, b, cost, 0.1, reg_m=1.0)
    res = ottools.sinkhorn(a, b, cost, 0.1, reg_m=np.array(1.0))
    assert res.fun == ref.fun and res.reg_m == (1.0, 1.0)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(5, 2))
    d = ottools.sinkhorn_divergence(x, y, reg=0.1, reg_m=np.array(2.0))
    assert d.fun == ottools.sinkhorn_divergence(x, y, reg=0.1, reg_m=2.0).fun
    with pytest.raises(TypeError, match="`reg_m` must hold real numbers"):
        ottools.sinkhorn(a, b, cost, 0.1, reg_m=np.array("x"))
