import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ottools
from ottools import monge_gap

import _reference as ref


def _cloud(rng, n, d=2, scale=(2.0, 0.5)):
    """An anisotropic Gaussian cloud (distinct points a.s.)."""
    return rng.normal(size=(n, d)) * np.asarray(scale)[:d]


def _spd(rng, d):
    B = rng.normal(size=(d, d))
    return B @ B.T + 0.5 * np.eye(d)


def _rotation(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 40), d=st.integers(1, 4))
def test_exact_gap_zero_for_spd_affine_map(seed, n, d):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    tx = x @ _spd(rng, d).T + rng.normal(size=d)
    res = monge_gap(x, tx, reg=0)
    assert res.success and res.method == "assignment"
    assert abs(res.fun) <= 1e-10 * max(1.0, res.displacement)
    assert res.reg == 0.0


def test_exact_gap_positive_for_rotation(rng):
    x = _cloud(rng, 50)
    res = monge_gap(x, x @ _rotation(np.pi / 2).T, reg=0)
    assert res.success
    # Population values: displacement 8.5, W2^2 = 4.5, gap 4 (a rotation by 90 degrees of an
    # anisotropic cloud is not a gradient of a convex function).
    assert res.fun > 0.25 * res.displacement > 0
    np.testing.assert_allclose(res.fun, res.displacement - res.ot_cost)


def test_exact_gap_matches_linear_sum_assignment(rng):
    from scipy.optimize import linear_sum_assignment
    x, tx = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    C = ((x[:, None] - tx[None]) ** 2).sum(-1)
    r, c = linear_sum_assignment(C)
    res = monge_gap(x, tx, reg=0)
    assert res.success
    np.testing.assert_allclose(res.ot_cost, C[r, c].mean(), rtol=1e-12)
    np.testing.assert_allclose(res.displacement, np.trace(C) / 30, rtol=1e-12)
    P = res.ot_result.plan
    np.testing.assert_allclose(P.sum(0), 1 / 30)
    np.testing.assert_allclose(P.sum(1), 1 / 30)


@pytest.mark.parametrize("mapname", ["spd", "rotation"])
def test_entropic_bias_bounds(rng, mapname):
    # For n uniform samples: reg log n <= gap_reg - gap_0 <= 2 reg log n (see Notes).
    n = 25
    x = _cloud(rng, n) / 3
    M = _spd(rng, 2) / 3 if mapname == "spd" else _rotation(np.pi / 2)
    tx = x @ M.T
    ex = monge_gap(x, tx, reg=0)
    assert ex.success
    exact = ex.fun
    for reg in (0.5, 0.1, 0.05):
        res = monge_gap(x, tx, reg=reg, tol=1e-10)
        assert res.success
        diff = res.fun - exact
        assert diff >= reg * np.log(n) - 1e-8
        assert diff <= 2 * reg * np.log(n) + 1e-8


def test_entropic_gap_tends_to_exact(rng):
    n = 15
    x = _cloud(rng, n) / 3
    tx = x @ _rotation(2.0).T
    exact = monge_gap(x, tx, reg=0).fun
    errs = []
    # (Below reg ~ 0.01 here Sinkhorn enters its slow, sublinear regime; the bias
    # bounds of test_entropic_bias_bounds give the rate: gap_reg - gap_0 = O(reg log n).)
    regs = (0.3, 0.1, 0.03)
    for reg in regs:
        res = monge_gap(x, tx, reg=reg, method="log", tol=1e-9)
        assert res.success
        errs.append(res.fun - exact)
    assert errs[0] > errs[1] > errs[2] > 0
    assert errs[2] <= 2 * regs[2] * np.log(n) + 1e-8


@pytest.mark.parametrize("weighted", [False, True])
def test_entropic_value_matches_pot_plan(rng, weighted):
    ot = pytest.importorskip("ot")
    n, reg = 20, 0.2
    x = rng.normal(size=(n, 2))
    tx = x @ _rotation(1.0).T + 0.3 * rng.normal(size=(n, 2))
    a = rng.random(n) + 0.2 if weighted else np.full(n, 1.0 / n)
    a /= a.sum()
    res = monge_gap(x, tx, a if weighted else None, reg=reg, tol=1e-11)
    assert res.success
    C = ot.dist(x, tx)
    P = ot.sinkhorn(a, a, C, reg, stopThr=1e-12, numItermax=50_000)
    ot_cost = (P * C).sum() - reg * ref.entropy(P)
    disp = (a * np.diag(C)).sum()
    np.testing.assert_allclose(res.ot_cost, ot_cost, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.displacement, disp, rtol=1e-12)
    np.testing.assert_allclose(res.fun, disp - ot_cost, rtol=0, atol=1e-8)
    # The two conventions: ot_cost = <P,C> + reg KL(P|a x a) - 2 reg H(a).
    h_a = -(a * np.log(a)).sum()
    np.testing.assert_allclose(res.ot_cost, res.ot_result.fun - 2 * reg * h_a, atol=1e-8)


@pytest.mark.parametrize("reg", [0, 0.3, "auto"])
def test_joint_permutation_invariance(rng, reg):
    n = 30
    x = _cloud(rng, n)
    tx = x @ _rotation(0.7).T + 1.0
    perm = rng.permutation(n)
    # tol 1e-12: two solves that stop anywhere below tol = 1e-9 differ in the value by
    # up to err times the potentials' scale (4e-9 here); the check is of the invariance
    r1 = monge_gap(x, tx, reg=reg, tol=1e-12)
    r2 = monge_gap(x[perm], tx[perm], reg=reg, tol=1e-12)
    assert r1.success and r2.success
    np.testing.assert_allclose(r2.fun, r1.fun, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(r2.reg, r1.reg, rtol=1e-12)
    np.testing.assert_allclose(r2.ot_result.plan, r1.ot_result.plan[np.ix_(perm, perm)],
                               atol=1e-9)


def test_auto_reg_is_five_percent_of_cost_std(rng):
    x, tx = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    res = monge_gap(x, tx)
    assert res.success
    C = ottools.cost_matrix(x, tx)
    np.testing.assert_allclose(res.reg, 0.05 * C.std(), rtol=1e-12)
    assert res.ot_result.reg == res.reg


def test_metric_names_and_callables_agree(rng):
    x, tx = rng.normal(size=(15, 2)), rng.normal(size=(15, 2))
    for reg in (0, 0.5):
        r1 = monge_gap(x, tx, metric="euclidean", reg=reg)
        r2 = monge_gap(x, tx, metric=lambda u, v: ottools.cost_matrix(u, v, "euclidean"),
                       reg=reg)
        assert r1.success and r2.success
        np.testing.assert_allclose(r1.fun, r2.fun, rtol=1e-12)
    r = monge_gap(x, tx, metric="euclidean", reg=0)
    assert r.success
    np.testing.assert_allclose(r.displacement, np.linalg.norm(x - tx, axis=1).mean())


def test_dtype(rng, dtype):
    x = (_cloud(rng, 20) / 3).astype(dtype)
    tx = (x @ _spd(rng, 2).T / 3).astype(dtype)
    ex = monge_gap(x, tx, reg=0)
    assert ex.success and ex.ot_result.plan.dtype == dtype
    assert abs(ex.fun) <= 1e-5 * ex.displacement
    res = monge_gap(x, tx, reg=0.5)
    assert res.success
    assert res.ot_result.plan.dtype == dtype
    res64 = monge_gap(x.astype(np.float64), tx.astype(np.float64), reg=0.5)
    np.testing.assert_allclose(res.fun, res64.fun, rtol=1e-4)


def test_nonconvergence_is_reported(rng):
    x = _cloud(rng, 20)
    res = monge_gap(x, x @ _rotation(1.0).T, reg=1e-3, maxiter=3)
    assert not res.success
    assert res.status == 1
    assert "Maximum number of iterations" in res.message
    assert np.isfinite(res.fun)


def test_bad_inputs(rng):
    x = rng.normal(size=(5, 2))
    with pytest.raises(ValueError, match="`x` and `tx` must have the same shape"):
        monge_gap(x, x[:4])
    with pytest.raises(ValueError, match="`x` and `tx` must have the same shape"):
        monge_gap(x, np.ones((5, 3)))
    with pytest.raises(ValueError, match="`reg` must be a non-negative finite number"):
        monge_gap(x, x + 1, reg=-0.1)
    with pytest.raises(ValueError, match="`reg` must be a non-negative number or 'auto'"):
        monge_gap(x, x + 1, reg="big")
    with pytest.raises(TypeError, match="`reg` must be a real number"):
        monge_gap(x, x + 1, reg=[0.1])
    with pytest.raises(ValueError, match="Unknown metric 'nope'"):
        monge_gap(x, x + 1, metric="nope")
    with pytest.raises(ValueError, match="`a` must have length 5"):
        monge_gap(x, x + 1, [0.5, 0.5], reg=0.1)
    with pytest.raises(ValueError, match="`method` must be 'auto' with reg=0"):
        monge_gap(x, x + 1, reg=0, method="log")
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        monge_gap(x, x + 1, reg=0.1, method="nope")
    with pytest.raises(ValueError, match="reg='auto' gives 0"):
        monge_gap(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="`tx` must be finite"):
        monge_gap(x, np.full((5, 2), np.nan))


def test_tol_is_checked_for_the_exact_gap_too():
    x = np.eye(3)
    with pytest.raises(TypeError, match="`tol` must be a real number"):
        ottools.monge_gap(x, x, reg=0, tol="abc")


def test_exact_gap_with_weights_is_emd(rng):
    # Non-uniform weights: exact OT by the network simplex (was a ValueError).
    ot = pytest.importorskip("ot")
    x = rng.normal(size=(12, 2))
    tx = x @ _rotation(1.0).T
    a = rng.random(12) + 0.1
    a /= a.sum()
    res = monge_gap(x, tx, a, reg=0)
    assert res.success and res.method == "network_simplex"
    ot_cost = ot.emd2(a, a, ottools.cost_matrix(x, tx))
    assert res.ot_cost == pytest.approx(ot_cost, rel=1e-12)
    assert res.fun == pytest.approx(float(a @ ((x - tx) ** 2).sum(1)) - ot_cost, rel=1e-10)


def test_overflowing_points_are_named_x_and_tx(rng):
    x = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match=r"'sqeuclidean' cost between `x` and `tx` overflows "
                                         r"float64 .* first at x\[\d+\] = .* and tx\[\d+\]"):
        monge_gap(x * 1e200, (x + 1.0) * 1e200)
    # the online path (costs computed on the fly) names them too
    with pytest.raises(ValueError, match=r"`tx` is too large .* squared norm of tx\[0\]"):
        monge_gap(x, x * 1e200, online=True)


@pytest.mark.parametrize("online, metric, e", [(False, "sqeuclidean", 266),
                                               (True, "sqeuclidean", 266),
                                               (True, "euclidean", 508)])
def test_auto_reg_with_huge_finite_costs_is_the_scaled_one(rng, online, metric, e):
    # Costs near 1e160 (or 1e153 for a distance) are finite but the sum of their squares
    # overflows: np.std gave inf (reg=inf), the online pass NaN. Scaling the points by
    # 2**e scales every cost by a power of two exactly, so reg='auto' and the gap scale
    # exactly too.
    x = _cloud(rng, 30)
    tx = x @ _rotation(np.pi / 2).T
    c = 2.0 ** (2 * e if metric == "sqeuclidean" else e)
    res = monge_gap(x * 2.0**e, tx * 2.0**e, metric=metric, online=online)
    res0 = monge_gap(x, tx, metric=metric, online=online)
    assert res.success and res0.success
    assert res.reg == res0.reg * c
    assert res.fun == res0.fun * c
    assert res.ot_cost == res0.ot_cost * c


def test_nonfinite_metric_is_refused(rng):
    x = rng.normal(size=(6, 2))

    def inf_diagonal(u, v):
        return np.where(np.eye(len(u), len(v)) > 0, np.inf, 1.0)

    for reg in (0, 0.5, "auto"):
        with pytest.raises(ValueError, match=r"`metric` returned a non-finite cost \(inf\)"):
            monge_gap(x, x + 1.0, metric=inf_diagonal, reg=reg)


@pytest.mark.parametrize("online", [False, True])
def test_minkowski_is_the_euclidean_distance_on_both_paths(rng, online):
    # cost_matrix's "minkowski" defaults to p = 2; the online path used to raise
    # "`p` is required".
    x = _cloud(rng, 20)
    tx = x @ _rotation(1.0).T
    mink = monge_gap(x, tx, metric="minkowski", online=online)
    eucl = monge_gap(x, tx, metric="euclidean", online=online)
    assert mink.success
    assert mink.fun == eucl.fun and mink.reg == eucl.reg


def test_reg_zero_checks_options_and_one_point_has_gap_zero():
    """Options were accepted unchecked with reg=0; one point made reg='auto' ask whether
    the points were all equal (its costs have no spread): its gap is 0 at every reg."""
    x = np.random.default_rng(0).random((5, 2))
    with pytest.raises(TypeError, match="Unknown option"):
        ottools.monge_gap(x, x + 1, reg=0, options={"foo": 1})
    one = np.array([[0.0, 0.0]])
    for reg in ("auto", 0.3):
        res = ottools.monge_gap(one, one + 1, reg=reg)
        assert res.success and res.fun == 0.0


@pytest.mark.parametrize("reg", ["auto", 0])
def test_weights_are_normalized(reg):
    # Weights given as counts: the gap of the normalized measure (it was 6.71 for
    # a = ones(6) against 1.27 for a = None; the entropic term is not homogeneous).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2))
    tx = x @ np.array([[0.0, -1.0], [1.0, 0.0]])
    ref = monge_gap(x, tx, reg=reg).fun
    assert monge_gap(x, tx, np.ones(6), reg=reg).fun == pytest.approx(ref, rel=1e-12)
    w = rng.random(6)
    assert monge_gap(x, tx, 7.0 * w, reg=reg).fun == pytest.approx(
        monge_gap(x, tx, w / w.sum(), reg=reg).fun, rel=1e-12)


@pytest.mark.parametrize("metric, online", [("minkowski", False), ("minkowski", True),
                                            ("minkowski_p", False)])
@pytest.mark.parametrize("reg", [0.1, "auto"])
def test_p_is_the_minkowski_ground_cost_exponent(rng, metric, online, reg):
    # metric="minkowski" with p != 2 was reachable only through a callable
    x = _cloud(rng, 15)
    tx = x @ _rotation(1.0).T
    cost = ottools.cost_matrix(x, tx, metric, p=3)
    res = monge_gap(x, tx, metric=metric, p=3, reg=reg, online=online, tol=1e-12)
    def by_hand(u, v):
        return ottools.cost_matrix(u, v, metric, p=3)

    by_callable = monge_gap(x, tx, metric=by_hand, reg=reg, tol=1e-12)
    assert res.success
    assert res.reg == pytest.approx(by_callable.reg, rel=1e-12)
    assert res.displacement == pytest.approx(np.mean(np.diagonal(cost)), rel=1e-12)
    assert res.fun == pytest.approx(by_callable.fun, rel=1e-9)
    assert abs(res.fun - monge_gap(x, tx, metric=metric, reg=res.reg).fun) > 1e-3


def test_p_exact_gap_and_refusals(rng):
    x = _cloud(rng, 12)
    tx = x[::-1] + 0.2
    res = monge_gap(x, tx, metric="minkowski_p", p=3, reg=0)
    ref_cost = ottools.cost_matrix(x, tx, "minkowski_p", p=3)
    exact = ottools.emd(None, None, ref_cost)
    assert res.ot_cost == pytest.approx(exact.fun, rel=1e-12)
    for metric in ("sqeuclidean", "cityblock", lambda u, v: ottools.cost_matrix(u, v)):
        with pytest.raises(TypeError, match="`p` is only used with metric='minkowski'"):
            monge_gap(x, tx, metric=metric, p=3)
    with pytest.raises(ValueError, match="`p` must be >= 1"):
        monge_gap(x, tx, metric="minkowski", p=0.5)
