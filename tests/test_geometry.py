"""``ottools.PointCloud``: costs computed on the fly, solved without the dense matrix."""

import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

import ottools
from conftest import python_output
from ottools import PointCloud
from ottools._kernels import _newton as kn
from ottools._kernels import _online_newton as kon


@pytest.mark.parametrize("metric, p", [("sqeuclidean", None), ("euclidean", None),
                                       ("cityblock", None), ("minkowski", 3.0)])
def test_dense_matches_cdist(rng, metric, p):
    from scipy.spatial.distance import cdist

    x, y = rng.normal(size=(13, 3)), rng.normal(size=(9, 3))
    geom = PointCloud(x, y, metric, p=p)
    kw = {"p": p} if p else {}
    np.testing.assert_allclose(geom.dense(), cdist(x, y, metric, **kw), rtol=1e-12,
                               atol=1e-12)
    assert geom.shape == (13, 9) and geom.dtype == np.float64


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(0, 40), d=st.integers(1, 5),
       metric=st.integers(0, 3), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**32 - 1))
def test_transposed_cost_rows_are_the_cost_rows_to_the_bit(n, m, d, metric, dtype, seed):
    # The sweeps read y transposed (contiguous, vectorized loops); emd's arcs and the
    # small blocks read cost_row. Both must give the same bits.
    from ottools._kernels import _online as ko

    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)).astype(dtype), rng.normal(size=(m, d)).astype(dtype)
    sqx = np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64))
    sqy = np.einsum("ij,ij->i", y.astype(np.float64), y.astype(np.float64))
    yt = np.ascontiguousarray(y.T)
    for i in range(n):
        r1, r2 = np.empty(m), np.empty(m)
        ko.cost_row(x, y, i, sqx, sqy, metric, 2.5, 0.75, r1)
        ko.cost_row_t(x, yt, i, sqx, sqy, metric, 2.5, 0.75, r2)
        assert r1.tobytes() == r2.tobytes()


@settings(max_examples=25, deadline=None)
@given(z=st.lists(st.one_of(st.floats(-1e300, 1e300), st.just(np.nan), st.just(-np.inf)),
                  max_size=23))
def test_row_max_and_row_sum(z):
    from ottools._kernels import _lse as ko

    z = np.array(z, dtype=np.float64)
    finite = z[~np.isnan(z)]
    assert ko.row_max(z) == (finite.max() if finite.size else -np.inf)
    w = np.abs(np.nan_to_num(z, nan=1.0, neginf=1.0)) * 1e-300
    np.testing.assert_allclose(ko.row_sum(w), w.sum(), rtol=1e-14, atol=1e-320)


@settings(max_examples=12)
@given(n=st.integers(1, 25), m=st.integers(1, 25), zeros=st.integers(0, 3),
       logreg=st.floats(-2.5, 0), seed=st.integers(0, 2**32 - 1))
def test_online_equals_dense(n, m, zeros, logreg, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, 2)), rng.random((m, 2))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a[:min(zeros, n - 1)] = 0
    b[:min(zeros, m - 1)] = 0
    a, b = a / a.sum(), b / b.sum()
    reg = 10.0**logreg
    geom = PointCloud(x, y)
    sweeps = {"newton": False}  # (the Newton stage: test_online_newton_stage_equals_...)
    on = ottools.sinkhorn(a, b, geom, reg, tol=1e-11, options=sweeps)
    de = ottools.sinkhorn(a, b, geom.dense(), reg, tol=1e-11, options=sweeps)
    assert on.success and de.success
    if n != m:  # (a 1 x 1 or other symmetric dense problem takes the symmetric path)
        assert on.nit == de.nit  # the same iterations, online
    np.testing.assert_allclose(on.plan_dense(), de.plan, rtol=0, atol=1e-10)
    np.testing.assert_allclose(on.f, de.f, atol=1e-8)
    assert on.fun == pytest.approx(de.fun, rel=1e-10, abs=1e-12)


def test_plan_operator_and_barycentric_map(rng):
    x, y = rng.random((40, 2)), rng.random((30, 2))
    geom = PointCloud(x, y)
    res = ottools.sinkhorn(None, None, geom, 0.02, tol=1e-11)
    P = res.plan_dense()
    u, v = rng.random(40), rng.random((30, 2))
    np.testing.assert_allclose(res.plan @ v, P @ v, rtol=1e-12)
    np.testing.assert_allclose(res.plan.T @ u, P.T @ u, rtol=1e-12)
    np.testing.assert_allclose(res.barycentric_map(), (P @ y) * 40, rtol=1e-10)


def _entropic_map_reference(geom, y, b, g, reg):
    """Naive dense ``sum_j w_ij y_j / sum_j w_ij``, ``w_ij = b_j exp((g_j - C_ij) / reg)``
    (by a row-wise log-sum-exp)."""
    from scipy.special import logsumexp

    with np.errstate(divide="ignore"):
        lw = np.log(b)[None, :] + (g[None, :] - geom.dense()) / reg
    return np.exp(lw - logsumexp(lw, axis=1, keepdims=True)) @ y


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 12), m=st.integers(1, 10),
       metric=st.sampled_from(["sqeuclidean", "euclidean", "cityblock", "minkowski"]),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_barycentric_map_of_zero_weight_sources(seed, n, m, metric, dtype):
    # A zero-weight source has no row of the plan to normalise (it gave 0/0: NaN rows
    # with success=True): its image is the entropic map through g, sum_j w_ij y_j /
    # sum_j w_ij with w_ij = b_j exp((g_j - C_ij) / reg); the positive rows are
    # sum_j P_ij y_j / a_i as before, and the two agree where both are defined.
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, 2)).astype(dtype), rng.random((m, 2)).astype(dtype)
    a = rng.random(n) * (rng.random(n) < 0.6)
    a[rng.integers(n)] = 0.0
    a[n - 1 if a[0] == 0 else 0] += 0.5  # some mass, and a zero
    b = rng.random(m) * (rng.random(m) < 0.8)
    b[0] += 0.5
    a, b = (a / a.sum()).astype(dtype), (b / b.sum()).astype(dtype)
    geom = PointCloud(x, y, metric, p=3.0 if metric == "minkowski" else None)
    reg = 0.05
    res = ottools.sinkhorn(a, b, geom, reg)
    assert res.success, res.message
    T = res.barycentric_map()
    assert T.dtype == dtype and T.shape == (n, 2) and np.all(np.isfinite(T))
    zero, pos = a == 0, a > 0
    g = np.asarray(res.g, dtype=np.float64)
    y64, b64 = y.astype(np.float64), b.astype(np.float64)
    ref = _entropic_map_reference(geom, y64, b64, g, reg)
    tight = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(T[zero], ref[zero], rtol=tight, atol=tight)
    # the positive rows: the plan's rows normalised by a_i, unchanged
    P = res.plan_dense().astype(np.float64)
    np.testing.assert_allclose(T[pos], (P @ y)[pos] / a[pos, None],
                               rtol=tight, atol=tight)
    # ... which is the entropic map at convergence (f the soft c-transform of g)
    loose = 1e-7 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(T[pos], ref[pos], rtol=loose, atol=loose)
    # a zero-weight source's image is a convex combination of the targets of positive
    # weight (the positive rows: up to the marginal error, a_i - sum_j P_ij <= tol)
    lo, hi = y[b > 0].min(0), y[b > 0].max(0)
    assert np.all(T[zero] >= lo - tight) and np.all(T[zero] <= hi + tight)
    assert np.all(T >= lo - loose) and np.all(T <= hi + loose)


def test_barycentric_map_of_many_zero_weight_sources_in_row_blocks(rng):
    # 600 zero-weight sources against 500 targets: over 2**18 pairs, the c-transform and
    # the plan pass of the entropic map run in parallel row blocks (when Numba has more
    # than one thread); the same map as the dense reference.
    from ottools._kernels import _jit

    x, y = rng.random((700, 2)), rng.random((500, 2))
    a = np.zeros(700)
    a[rng.choice(700, 100, replace=False)] = 0.01
    geom = PointCloud(x, y)
    assert 600 * 500 >= _jit.PARALLEL_MIN_ENTRIES
    res = ottools.sinkhorn(a, None, geom, 0.01)
    assert res.success
    T = res.barycentric_map()
    ref = _entropic_map_reference(geom, y, np.full(500, 1 / 500), res.g, 0.01)
    np.testing.assert_allclose(T[a == 0], ref[a == 0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(T[a > 0], ref[a > 0], rtol=1e-7, atol=1e-8)


def test_barycentric_map_of_a_far_zero_weight_source(rng):
    # A zero-weight source far from the targets: every w_ij underflows in a direct
    # evaluation (exp(-1e6 / reg)), the log-sum-exp keeps it: its image is the target
    # that maximises g_j - C_ij. The other rows are, to the bit, the plan's rows
    # (``res.plan @ y``, the same pass over the plan) divided by a_i, as before.
    x, y = rng.random((6, 2)), rng.random((5, 2))
    x[2] = [1e3, -2e3]
    a = np.full(6, 0.2)
    a[2] = 0.0
    res = ottools.sinkhorn(a, None, PointCloud(x, y), 0.05)
    assert res.success
    T = res.barycentric_map()
    C = PointCloud(x, y).dense()
    np.testing.assert_allclose(T[2], y[np.argmax(res.g - C[2])], rtol=1e-12)
    pos = a > 0
    np.testing.assert_array_equal(T[pos], (res.plan @ y)[pos] / a[pos, None])


def test_barycentric_map_of_an_unbalanced_plan_averages_its_rows(rng):
    # With reg_m the plan's rows sum to P 1, not to a (here masses 1 and 2): the map
    # divides each row by its own sum, so every image is an average of the targets
    # (divided by a_i, rows were shrunk towards 0 by (P 1)_i / a_i).
    x, y = rng.random((12, 2)), rng.random((9, 2)) + 3.0
    a, b = np.full(12, 1 / 12), np.full(9, 2 / 9)
    a[4] = 0.0
    res = ottools.sinkhorn(a, b, PointCloud(x, y), 0.05, reg_m=0.5)
    assert res.success
    P = res.plan_dense()
    rows = P.sum(axis=1)
    pos = a > 0
    assert np.max(np.abs(rows[pos] / a[pos] - 1)) > 0.1  # rows far from a: a real test
    T = res.barycentric_map()
    np.testing.assert_allclose(T[pos], (P @ y)[pos] / rows[pos, None], rtol=1e-12)
    assert np.all(T >= y.min(axis=0) - 1e-12) and np.all(T <= y.max(axis=0) + 1e-12)


def test_barycentric_map_of_an_unbalanced_row_that_underflows(rng):
    # A positive-weight source far from every target with a small reg_m: the plan's row
    # underflows to 0 (its mass is given up), and the row divided by its own sum is 0 / 0.
    # A normalised row does not depend on f_i: it is the entropic map through g.
    x, y = rng.random((6, 2)), rng.random((5, 2))
    x[2] = [100.0, 0.0]
    res = ottools.sinkhorn(None, None, PointCloud(x, y), 0.01, reg_m=0.1)
    assert res.success
    P = res.plan_dense()
    assert P[2].sum() == 0.0
    T = res.barycentric_map()
    assert np.all(np.isfinite(T))
    C = PointCloud(x, y).dense()
    np.testing.assert_allclose(T[2], y[np.argmax(res.g - C[2])], rtol=1e-12)
    rows = P.sum(axis=1)
    keep = rows > 0
    np.testing.assert_allclose(T[keep], (P @ y)[keep] / rows[keep, None], rtol=1e-12)


def test_self_transport_point_cloud_uses_symmetric_iterations(rng):
    x = rng.normal(size=(60, 2))
    on = ottools.sinkhorn(None, None, PointCloud(x, x), 0.05)
    de = ottools.sinkhorn(None, None, ottools.cost_matrix(x, x), 0.05)
    assert on.success and on.nit == de.nit
    np.testing.assert_allclose(on.plan_dense(), de.plan, atol=1e-14)


def test_float32_and_scale(rng):
    x, y = rng.random((30, 2)).astype(np.float32), rng.random((20, 2)).astype(np.float32)
    res = ottools.sinkhorn(None, None, PointCloud(x, y), 0.05)
    assert res.success and res.f.dtype == np.float32 and res.plan_dense().dtype == np.float32
    geom = PointCloud(x, y, scale="max")
    assert geom.dense().max() == pytest.approx(1.0, rel=1e-6)
    med = PointCloud(x, y, "euclidean", scale="median")
    assert 0.5 < float(np.median(med.dense())) < 2.0


@pytest.mark.parametrize("n, m, reg", [(48, 1, 1e-6), (48, 2, 1e-5), (5, 3, 1e-5)])
def test_float32_point_cloud_err_is_that_of_the_returned_plan(n, m, reg):
    """The reported err is the returned plan's (``plan_dense()`` and the operator): it was
    measured on the float64 potentials' plan while the plan came from the float32 ones
    (48 x 1, reg 1e-6: err 3e-8 reported, 1.7e-2 in the plan returned)."""
    r = np.random.default_rng(0)
    x, y = r.random((n, 2)).astype(np.float32), r.random((m, 2)).astype(np.float32)
    res = ottools.sinkhorn(None, None, PointCloud(x, y), reg)
    P = res.plan_dense().astype(np.float64)
    held = np.abs(P.sum(1) - 1 / n).sum() + np.abs(P.sum(0) - 1 / m).sum()
    assert abs(held - res.err) <= 1e-6  # float32 rounding of the stored plan
    assert res.success == (res.err <= 1e-4)
    np.testing.assert_allclose(res.plan @ np.ones(m), P.sum(1), rtol=1e-5, atol=1e-9)


def test_newton_stall_check_on_a_point_cloud(rng):
    """The Newton stage's stall check read the rounding of the cost from a dense array
    (a TypeError on a PointCloud at small reg, where the check runs); the online solve
    converges as the dense one does."""
    r = np.random.default_rng(25)
    x, y = r.random((200, 2)), r.random((150, 2))
    geom = PointCloud(x, y, metric="euclidean")
    dense = geom.dense()
    reg = 1e-5 * float(np.ptp(dense))
    on, off = (ottools.sinkhorn(None, None, c, reg) for c in (geom, dense))
    assert on.success and off.success
    np.testing.assert_allclose(on.plan_dense(), off.plan, atol=1e-7)


def test_divergence_and_monge_gap_online_equal_dense(rng):
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(40, 2)) + 0.5
    d = ottools.sinkhorn_divergence(x, y, reg=0.1)
    o = ottools.sinkhorn_divergence(x, y, reg=0.1, online=True)
    assert d.success and o.success and o.fun == pytest.approx(d.fun, rel=1e-9)
    tx = x @ np.array([[0.0, -1.0], [1.0, 0.0]])
    g1 = ottools.monge_gap(x, tx)
    g2 = ottools.monge_gap(x, tx, online=True)
    assert g1.success and g2.success and g2.fun == pytest.approx(g1.fun, rel=1e-9)
    assert g2.reg == pytest.approx(g1.reg, rel=1e-12)


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((np.full((3, 2), np.nan), np.ones((2, 2))), {}, ValueError, "`x` must be finite"),
    ((np.ones((3, 2)), np.ones((2, 3))), {}, ValueError, "same dimension"),
    ((np.ones((3, 2)), np.ones((2, 2)), "cosine"), {}, ValueError, "Unknown metric 'cosine'"),
    ((np.ones((3, 2)), np.ones((2, 2)), "minkowski"), {}, TypeError, "`p` is required"),
    ((np.ones((3, 2)), np.ones((2, 2))), {"p": 3}, TypeError, "`p` is only used"),
    ((np.ones((3, 2)), np.ones((2, 2))), {"scale": "mean"}, ValueError, "`scale` must be"),
    ((np.ones((3, 2)), np.ones((2, 2))), {"scale": -1.0}, ValueError, "`scale` must be a"),
])
def test_bad_point_clouds(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PointCloud(*args, **kwargs)


def test_scaling_on_a_point_cloud_runs_the_log_iterations(rng):
    # No stored kernel to scale: method="scaling" on a PointCloud runs the Sinkhorn
    # iterations in the log domain, those of method="log", to the same plan as the
    # scaling form on the dense cost.
    geom = PointCloud(rng.random((5, 2)), rng.random((4, 2)))
    res = ottools.sinkhorn(None, None, geom, 0.1, method="scaling")
    log = ottools.sinkhorn(None, None, geom, 0.1, method="log")
    dense = ottools.sinkhorn(None, None, geom.dense(), 0.1, method="scaling")
    assert res.success and res.method == "scaling" and res.nit == log.nit
    np.testing.assert_array_equal(res.plan_dense(), log.plan_dense())
    np.testing.assert_allclose(res.plan_dense(), dense.plan, atol=1e-10)
    assert res.fun == pytest.approx(dense.fun, rel=1e-9)
    with pytest.raises(ValueError, match="`a` must have length 5"):
        ottools.sinkhorn(np.ones(4) / 4, None, geom, 0.1)


def test_dense_plan_that_cannot_fit_raises_memory_error(rng):
    x = rng.random((10**6, 1))
    geom = PointCloud(x, x[:2 * 10**5])
    with pytest.raises(MemoryError, match="The dense plan of this PointCloud problem needs"):
        from ottools._geometry import dense_plan
        dense_plan(geom, np.ones(10**6), np.ones(2 * 10**5), np.zeros(10**6),
                   np.zeros(2 * 10**5), 1.0, np.float64)


def test_online_solve_allocates_no_n_by_m_array():
    # Peak RSS of the solve itself (kernels compiled beforehand) at n = m = 3000: the
    # dense cost alone would need 72 MB, the kernel and the plan as much again.
    code = textwrap.dedent("""
        import resource, numpy as np, ottools
        rng = np.random.default_rng(0)
        small = ottools.PointCloud(rng.random((600, 3)), rng.random((600, 3)))
        ottools.sinkhorn(None, None, small, 0.05, maxiter=3)  # compile (parallel too)
        x, y = rng.random((3000, 3)), rng.random((3000, 3))
        geom = ottools.PointCloud(x, y)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = ottools.sinkhorn(None, None, geom, 0.05, maxiter=20)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024.0, res.nit)
        """)
    grown_mb, nit = python_output(code)
    assert int(nit) == 20
    assert float(grown_mb) < 20.0


def test_online_newton_stage_allocates_no_n_by_m_array():
    # n = m = 3000, 2-D, reg 1e-4 of the largest cost: the sweeps alone need thousands of
    # iterations; the Newton stage's trial plans and sparsified plan are recomputed from
    # the clouds (the dense stage holds two 72 MB plans and the 72 MB cost).
    code = textwrap.dedent("""
        import resource, numpy as np, ottools
        rng = np.random.default_rng(0)
        small = ottools.PointCloud(rng.random((600, 2)), rng.random((600, 2)))
        ottools.sinkhorn(None, None, small, 2e-4)  # compile (parallel too)
        x, y = rng.random((3000, 2)), rng.random((3000, 2))
        geom = ottools.PointCloud(x, y)
        reg = 1e-4 * geom.cost_extremes()[1]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = ottools.sinkhorn(None, None, geom, reg)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024.0, res.nit_newton, res.success)
        """)
    grown_mb, nit_newton, success = python_output(code)
    assert success == "True" and int(nit_newton) > 0
    assert float(grown_mb) < 30.0


# ------------------------------------------------------------- online Newton stage


def _newton_state(rng, n=23, m=17, reg=0.02, step=1e-3):
    """Weights, a point cloud, potentials off the optimum and a step from them."""
    x, y = rng.random((n, 2)), rng.random((m, 2))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a, b = a / a.sum(), b / b.sum()
    geom = PointCloud(x, y)
    res = ottools.sinkhorn(a, b, geom, reg, method="log", maxiter=3, tol=0.0)
    f = res.f + 1e-3 * rng.standard_normal(n)
    g = res.g
    f_new = f + step * rng.standard_normal(n)
    return a, b, geom, reg, f, g, f_new, g + step * rng.standard_normal(m)


def _online_trial(par, blocks, geom, a, b, reg, f_new, g_new, f, g, old):
    n, m = geom.shape
    nb = 1 << (63 - kn.BIN_SHIFT)
    out = (np.empty(n), np.empty(m), np.empty(m), np.zeros((blocks, nb), dtype=np.int64),
           np.zeros((blocks, nb)))
    kernel = kon.trial_par if par else kon.trial
    S, total, npos = kernel(*geom.kernel_args(), np.log(a), np.log(b), 1.0 / reg, f_new,
                            g_new, f, g, old, *out)
    return (S, total, npos) + out


@pytest.mark.parametrize("par, blocks", [(False, 1), (False, 3), (True, 1), (True, 3)])
@pytest.mark.parametrize("step", [1e-2, 1e-6])
def test_online_trial_pass_equals_the_dense_trial_plan(rng, par, blocks, step):
    a, b, geom, reg, f, g, f_new, g_new = _newton_state(rng, step=step)
    C = geom.dense()
    n, m = C.shape
    la, lb = np.log(a), np.log(b)
    P = np.empty((n, m))
    ottools._kernels._sinkhorn.plan_from_potentials(la, lb, C, reg, f, g, P)
    P_new, r_new, c_new = np.empty((n, m)), np.empty(n), np.empty(m)
    S0 = kn.trial_plan(la, lb, C, 1 / reg, f_new, g_new, f_new - f, g_new - g, P, P_new,
                       r_new, c_new, np.empty(m), np.empty(m))
    S, total, npos, rows, cols, cmax, cnt, mass = _online_trial(
        par, blocks, geom, a, b, reg, f_new, g_new, f, g, True)
    assert S == pytest.approx(S0, rel=1e-12)
    np.testing.assert_allclose(rows, r_new, rtol=1e-14)
    np.testing.assert_allclose(cols, c_new, rtol=1e-14)
    # (the dense kernel reassociates its exponents: the same entries to rounding)
    np.testing.assert_allclose(cmax, P_new.max(0), rtol=1e-13)
    assert npos == np.count_nonzero(P_new)
    assert total == pytest.approx(P_new.sum(), rel=1e-14)
    # the blocks' histograms are the dense threshold's
    for k_min, mass_tol in [(40, 1e-6), (5, 1e-2), (10**4, 0.0)]:
        rho0, k0 = kn.mass_threshold(P_new, k_min, mass_tol)
        rho, k = kon.threshold(cnt, mass, total, npos, k_min, mass_tol, 10**9)
        assert (rho, k) == (rho0, k0)
        # the sparsified plan in one pass equals the dense sparsification, with the
        # rows' and columns' cuts (peak < 1) or their largest entries only (peak = 1)
        kernel = kon.kept_entries_par if par else kon.kept_entries
        for peak in (1.0, 0.3):
            ok, indptr, indices, data, over = kernel(
                *geom.kernel_args(), np.log(a), np.log(b), 1 / reg, f_new, g_new, rho,
                peak, peak * cmax, cnt, np.zeros(blocks, dtype=np.int64))
            want = kn.sparsify_csr(P_new, rho, peak)
            # (the histogram's room holds the largest entries, here without ties:
            # nothing over it at peak 1)
            assert ok and (peak < 1.0 or not over.any())
            np.testing.assert_array_equal(indptr, want[0])
            np.testing.assert_array_equal(indices, want[1])
            np.testing.assert_allclose(data, want[2], rtol=1e-13)
            assert set(indices) == set(range(cmax.size))  # every column's largest is kept
    # without the old plan: the marginals only, S = 0
    S1, *_ = _online_trial(par, blocks, geom, a, b, reg, f, g, f, g, False)
    assert S1 == 0.0


def test_online_threshold_cap_and_overflowing_block(rng):
    a, b, geom, reg, f, g, _, _ = _newton_state(rng, reg=0.5)
    S, total, npos, rows, cols, cmax, cnt, mass = _online_trial(False, 2, geom, a, b, reg,
                                                                f, g, f, g, False)
    C = geom.dense()
    P = a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - C) / reg)
    free, k_free = kon.threshold(cnt, mass, total, npos, 10**4, 0.0, 10**9)
    assert k_free == npos and free <= P.min()  # mass_tol 0 keeps everything
    # at most `cap` entries: the threshold rises above the mass rule's
    rho, k = kon.threshold(cnt, mass, total, npos, 10**4, 0.0, 100)
    assert 0 < k <= 100 < npos == P.size and rho > 0
    assert k == np.count_nonzero(P >= rho)
    # a histogram that undercounts the plan: the block overflows and says so, with the
    # count it found over its room (here each row's and every column's largest);
    # given that room, the same pass fills it
    args = (*geom.kernel_args(), np.log(a), np.log(b), 1 / reg, f, g, 0.0, 1.0, cmax)
    n, m = P.shape
    ok, indptr, indices, data, over = kon.kept_entries(*args, np.zeros_like(cnt),
                                                       np.zeros(2, dtype=np.int64))
    assert not ok and indices.size == 0
    assert over.sum() == np.count_nonzero(P) - (n + 2 * m)
    ok, indptr, indices, data, over2 = kon.kept_entries(*args, np.zeros_like(cnt), over)
    assert ok and np.array_equal(over2, over)
    want = kn.sparsify_csr(P, 0.0)
    np.testing.assert_array_equal(indices, want[1])
    np.testing.assert_allclose(data, want[2], rtol=1e-13)


@pytest.mark.parametrize("n, m", [(300, 260), (600, 520)])  # serial, parallel passes
def test_online_newton_stage_equals_the_dense_one(n, m, monkeypatch):
    rng = np.random.default_rng(7)
    geom = PointCloud(rng.random((n, 2)), rng.random((m, 2)))
    C = geom.dense()
    reg = 1e-4 * C.max()
    # online, auto's Newton stage may start after fewer sweeps: another path to the same
    # value (at the default tol 1e-9 the two values differed by 5e-10 relative)
    on = ottools.sinkhorn(None, None, geom, reg, tol=1e-12)
    de = ottools.sinkhorn(None, None, C, reg, tol=1e-12)
    assert on.success and on.nit_newton > 0 and on.fun == pytest.approx(de.fun, rel=1e-10)
    # with the dense stage's switch, the same iterations
    import ottools._sinkhorn as sk
    monkeypatch.setattr(sk, "_NEWTON_MIN_SWEEPS_ONLINE", sk.NEWTON_MIN_SWEEPS)
    for method in ("auto", "sns"):
        de = ottools.sinkhorn(None, None, C, reg, method=method)
        on = ottools.sinkhorn(None, None, geom, reg, method=method)
        assert de.success and on.success and on.nit_newton > 0
        assert (on.nit, on.nit_newton) == (de.nit, de.nit_newton)
        np.testing.assert_allclose(on.f, de.f, rtol=0, atol=1e-10 * C.max())
        np.testing.assert_allclose(on.g, de.g, rtol=0, atol=1e-10 * C.max())
        assert on.fun == pytest.approx(de.fun, rel=1e-10)
        assert on.stages[-1] == "newton"


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), m=st.integers(1, 40), zeros=st.integers(0, 3),
       d=st.sampled_from([1, 3]), seed=st.integers(0, 2**32 - 1))
def test_online_sns_equals_dense_sns(n, m, zeros, d, seed):
    # The whole Newton stage (warm-up, steps, fallbacks) online against the dense one,
    # with zero weights (the compressed cloud) and shapes down to 1 x 1.
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, d)), rng.random((m, d))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a[:min(zeros, n - 1)] = 0
    b[:min(zeros, m - 1)] = 0
    a, b = a / a.sum(), b / b.sum()
    geom = PointCloud(x, y, scale="max")
    reg = 1e-3
    on = ottools.sinkhorn(a, b, geom, reg, method="sns")
    de = ottools.sinkhorn(a, b, geom.dense(), reg, method="sns")
    assert on.success == de.success and on.success
    assert (on.nit, on.nit_newton) == (de.nit, de.nit_newton)
    np.testing.assert_allclose(on.plan_dense(), de.plan, rtol=0, atol=1e-10)
    assert on.fun == pytest.approx(de.fun, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("dtype, offset, tol",
                         [(np.float64, 1e7, 1e-9), (np.float32, 100.0, 1e-6)])
def test_squared_euclidean_far_from_the_origin(dtype, offset, tol):
    """|x|^2 + |y|^2 - 2 x.y cancelled for points far from the origin (at 1e7, costs near
    1 off by 0.24; identical points at a cost of 0.125): the kernels read centred points.
    The online cost is then the dense one, and so are the solves."""
    rng = np.random.default_rng(0)
    x = (rng.random((40, 2)) + offset).astype(dtype)
    y = (rng.random((30, 2)) + offset).astype(dtype)
    y[0] = x[0]
    geom = PointCloud(x, y)
    exact = ((x[:, None].astype(np.float64) - y[None].astype(np.float64)) ** 2).sum(-1)
    assert np.abs(geom.dense().astype(np.float64) - exact).max() <= tol
    # identical points: 0 in float64; in float32 the kernel's products round (about half
    # of such pairs gave 0 whatever the centre, mean or median)
    assert geom.dense()[0, 0] <= (0.0 if dtype == np.float64 else tol)
    if dtype == np.float64:
        on = ottools.sinkhorn_divergence(x, y, reg=0.05, online=True)
        off = ottools.sinkhorn_divergence(x, y, reg=0.05, online=False)
        assert on.fun == pytest.approx(off.fun, rel=1e-9)


@pytest.mark.parametrize("metric, p, x, y", [
    ("sqeuclidean", None, [[1e154]], [[-1e154], [1e154]]),
    ("minkowski", 50.0, [[-1e308, 0.0]], [[1e308, 1.0]]),
    ("euclidean", None, [[-1e308]], [[1e308]]),
    ("minkowski", 3.0, [[-1e308, 0.0]], [[1e308, 0.0]]),
])
def test_costs_that_overflow_raise_before_solving(metric, p, x, y):
    """Costs that overflow where the solvers compute them: emd reported inf with success,
    sinkhorn a misleading message or a raw OverflowError."""
    geom = PointCloud(np.array(x), np.array(y), metric, p=p)
    for solve in (lambda: ottools.sinkhorn(None, None, geom, 1.0),
                  lambda: ottools.emd(None, None, geom)):
        with pytest.raises(ValueError, match="overflows float64"):
            solve()


def test_median_scale_is_exact_for_small_clouds(rng):
    """Up to 10,000 pairs scale='median' is the exact median (it drew 10,000 pairs with
    replacement: 0.452 against 0.426 at 37 x 23)."""
    x, y = rng.random((37, 2)), rng.random((23, 2))
    geom = PointCloud(x, y, "euclidean", scale="median")
    assert geom.scale == pytest.approx(float(np.median(PointCloud(x, y, "euclidean")
                                                         .dense())), rel=1e-15)


@pytest.mark.parametrize("metric, p", [("sqeuclidean", None), ("euclidean", None),
                                       ("cityblock", None), ("minkowski", 3.0)])
@pytest.mark.parametrize("shift, spread", [(1e4, 0.1), (1e6, 0.01), (0.0, 1.0)])
def test_cost_std_is_np_std_of_the_costs(metric, p, shift, spread):
    """The one-pass sqrt(E[C^2] - E[C]^2) cancelled for costs with a large mean against
    their spread (a cloud and its far translate: 25 % off at shift 1e6, spread 0.01,
    so monge_gap(reg='auto', online=True) took a wrong reg). The reference: np.std of
    the same costs, dense."""
    rng = np.random.default_rng(26)
    x = rng.normal(size=(40, 2)) * spread
    tx = x + np.array([shift, 0.0])
    geom = PointCloud(x, tx, metric, p=p)
    dense = geom.dense()
    np.testing.assert_allclose(geom.cost_std(), np.std(dense), rtol=1e-12)
    np.testing.assert_allclose(geom.cost_extremes(), (dense.min(), dense.max()), rtol=1e-15)
    if metric == "sqeuclidean":
        on = ottools.monge_gap(x, tx, online=True, maxiter=10)
        off = ottools.monge_gap(x, tx, online=False, maxiter=10)
        # (the online and dense costs differ by rounding: 4e-10 at shift 1e6)
        np.testing.assert_allclose(on.reg, off.reg, rtol=1e-8)


def test_cost_std_of_tiny_costs_is_the_dense_one():
    """Coordinates near 1e-100: the squares of the costs (1e-400) underflow, so the
    one-pass std was 0 and monge_gap(reg='auto', online=True) raised "reg='auto' gives 0"
    where the dense path gives 9e-202 (costs scaled by a power of two)."""
    from ottools._monge_gap import _dense_std

    rng = np.random.default_rng(26)
    for scale in (1e-100, 1e-150):
        x = rng.normal(size=(8, 2)) * scale
        tx = x[:, ::-1].copy()
        geom = PointCloud(x, tx)
        np.testing.assert_allclose(geom.cost_std(), _dense_std(geom.dense()), rtol=1e-12)
        np.testing.assert_allclose(geom.cost_std(), np.std(geom.dense() / scale**2)
                                   * scale**2, rtol=1e-12)
        on = ottools.monge_gap(x, tx, online=True)
        off = ottools.monge_gap(x, tx, online=False)
        assert on.success and off.success
        np.testing.assert_allclose(on.reg, off.reg, rtol=1e-12)


def test_cost_std_takes_one_pass_for_well_conditioned_costs(rng, monkeypatch):
    """The second pass runs only where the one-pass formula is not accurate; cost_extremes
    (read by every point-cloud solve) never takes it."""
    def second_pass(*args):
        raise AssertionError("second pass")

    x, y = rng.normal(size=(30, 3)), rng.normal(size=(20, 3)) + 0.5
    monkeypatch.setattr(PointCloud, "_second_pass", second_pass)
    geom = PointCloud(x, y)
    np.testing.assert_allclose(geom.cost_std(), np.std(geom.dense()), rtol=1e-12)
    far = PointCloud(x, x + 1e6)
    far.cost_extremes()
    with pytest.raises(AssertionError, match="second pass"):
        far.cost_std()


# ------------------------------------------------------------------ review 25 (clouds)
@pytest.mark.parametrize("metric, p, size", [("euclidean", None, 1e-170),
                                             ("minkowski", 3.0, 1e-120),
                                             ("minkowski", 3.0, 1e150),
                                             ("sqeuclidean", None, 1e-160)])
def test_points_whose_powers_leave_float64(rng, metric, p, size):
    """The kernels' squares (|t|**p) of points of 1e-170 underflowed: euclidean costs of
    0 (emd 0, scale='max' said the points coincide); minkowski p = 3 at 1e150 was refused.
    The points are read scaled by a power of two."""
    x, y = rng.random((6, 2)) * size, rng.random((5, 2)) * size
    geom = ottools.PointCloud(x, y, metric, p=p)
    dense = ottools.cost_matrix(x, y, metric, p=p)
    np.testing.assert_allclose(geom.dense(), dense, rtol=1e-13, atol=0)
    assert ottools.emd(None, None, geom).fun == pytest.approx(
        ottools.emd(None, None, dense).fun, rel=1e-13)
    assert ottools.PointCloud(x, y, metric, p=p, scale="max").cost_extremes()[1] == \
        pytest.approx(1.0, rel=1e-13)


def test_cost_matrix_minkowski_of_large_p_is_rescaled(rng):
    """cost_matrix: minkowski p = 20 at 1e-20 gave 0 (p = 400 at 10 still raises: see
    cost_matrix)."""
    for size, p in ((1e-20, 20.0), (1e10, 30.0)):
        x, y = rng.random((5, 3)) * size, rng.random((4, 3)) * size
        t = np.abs(x[:, None] - y[None])
        top = t.max(-1)
        ref = top * ((t / top[..., None]) ** p).sum(-1) ** (1 / p)
        np.testing.assert_allclose(ottools.cost_matrix(x, y, "minkowski", p=p), ref,
                                   rtol=1e-13)


def test_emd_refuses_a_scale_whose_costs_overflow(rng):
    x, y = rng.random((6, 2)) * 100, rng.random((5, 2)) * 100
    """(emd returned inf with status 0)"""
    geom = ottools.PointCloud(x, y, scale=1e-305)
    for solve in (ottools.emd, lambda a, b, c: ottools.sinkhorn(a, b, c, 1.0)):
        with pytest.raises(ValueError, match="cost between `x` and `y` overflows float64"):
            solve(None, None, geom)


@pytest.mark.parametrize("reg", [1e12, 1e16])
def test_huge_reg_online_keeps_the_entropic_terms(rng, reg):
    x, y = rng.random((7, 2)), rng.random((6, 2))
    for reg_m in (None, 1.0):
        on = ottools.sinkhorn(None, None, ottools.PointCloud(x, y), reg, reg_m=reg_m)
        de = ottools.sinkhorn(None, None, ottools.cost_matrix(x, y), reg, reg_m=reg_m)
        assert on.success and on.fun == pytest.approx(de.fun, rel=1e-12)
        assert on.dual_value == pytest.approx(de.dual_value, rel=1e-12)


def test_plan_operator_of_complex_vectors(rng):
    x, y = rng.random((7, 2)), rng.random((6, 2))
    res = ottools.sinkhorn(None, None, ottools.PointCloud(x, y), 0.1)
    P = res.plan_dense()
    v = rng.normal(size=6) + 1j * rng.normal(size=6)
    u = rng.normal(size=7) + 1j * rng.normal(size=7)
    np.testing.assert_allclose(res.plan @ v, P @ v, rtol=1e-12)
    np.testing.assert_allclose(res.plan.T @ u, P.T @ u, rtol=1e-12)


@pytest.mark.parametrize("maxiter", [1, 2, 20])
def test_unbalanced_sns_warmup_online_equals_dense(rng, maxiter):
    """Online, SNS's log-domain iterations took the sweeps' translation step, which the
    dense ones (ub_log_iteration) do not: plans 2e-4 apart after two iterations."""
    x, y = rng.random((12, 2)), rng.random((10, 2))
    a, b = np.full(12, 1 / 12), np.full(10, 1.5 / 10)
    on = ottools.sinkhorn(a, b, ottools.PointCloud(x, y), 0.05, reg_m=0.5, method="sns",
                          maxiter=maxiter)
    de = ottools.sinkhorn(a, b, ottools.cost_matrix(x, y), 0.05, reg_m=0.5, method="sns",
                          maxiter=maxiter)
    np.testing.assert_allclose(on.plan_dense(), de.plan, rtol=0, atol=1e-14)
    assert on.nit == de.nit


def test_dense_refuses_overflowing_costs():
    # dense() returned inf (and NaN for coinciding zero points beside them) where
    # cost_matrix raises; the solvers' message named float64 for float32 points.
    x = np.array([[1e20, 0.0], [0.0, 0.0]], dtype=np.float32)
    y = np.array([[0.0, 0.0]], dtype=np.float32)
    with pytest.raises(ValueError, match="overflows float32"):
        PointCloud(x, y).dense()
    with pytest.raises(ValueError, match="overflows float32"):
        ottools.sinkhorn(None, None, PointCloud(x, y), 1.0)
    with pytest.raises(ValueError, match="overflows float64"):
        PointCloud(x.astype(np.float64) * 1e180, y.astype(np.float64)).dense()


def test_float32_plan_operator_and_map_keep_the_dtype():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2)).astype(np.float32)
    y = rng.normal(size=(5, 2)).astype(np.float32)
    res = ottools.sinkhorn(None, None, PointCloud(x, y), 0.5)
    dense = res.plan_dense()
    assert res.plan.dtype == np.float32 and dense.dtype == np.float32
    v32 = np.arange(5, dtype=np.float32)
    assert (res.plan @ v32).dtype == np.float32
    np.testing.assert_allclose(res.plan @ v32, dense @ v32, rtol=1e-5)
    # a float64 vector gives float64 (np.result_type, as a float32 matrix would)
    assert (res.plan.T @ np.ones(6)).dtype == np.float64
    T = res.barycentric_map()
    assert T.dtype == np.float32
    np.testing.assert_allclose(T, (dense @ y) / dense.sum(axis=1)[:, None], rtol=1e-4)


# ------------------------------------------------- distances beside a point of 1e200
@pytest.mark.parametrize("metric, p", [("euclidean", None), ("minkowski", 3.0),
                                       ("minkowski", 50.0)])
@pytest.mark.parametrize("far", [1e160, 1e200, 1e300])
def test_ordinary_distances_beside_a_far_point(rng, metric, p, far):
    """One power of two for all points (from a point at 1e200) turned the squares of the
    distances near 1 into 1e-400: every ordinary cost was 0 (0.4 % off at 1e160), and emd
    with the far point at zero weight 0. Each pair's differences are now scaled apart."""
    x, y = rng.random((5, 2)), rng.random((4, 2))
    xf = x.copy()
    xf[0] = far
    geom = ottools.PointCloud(xf, y, metric, p=p)
    exact = cdist(x[1:], y, "minkowski", p=2.0 if p is None else p)
    np.testing.assert_allclose(geom.dense()[1:], exact, rtol=1e-14)
    rows, cols = np.divmod(np.arange(4 * 4), 4)
    np.testing.assert_allclose(geom._pair_costs(rows + 1, cols), exact.ravel(),
                               rtol=1e-14)
    a = np.array([0.0, 1.0, 1.0, 1.0, 1.0]) / 4
    assert ottools.emd(a, None, geom).fun == pytest.approx(
        ottools.emd(None, None, exact).fun, rel=1e-13)


@pytest.mark.parametrize("far", [1e6, 1e8, 1e12])
def test_sqeuclidean_costs_beside_a_far_point(rng, far):
    """The kernels' |x|^2 + |y|^2 - 2 x.y on points centred on their mean: one far point
    moved the centre away from the other 179, whose costs (near 1) were 2.9e-8 off at
    1e6 and 4.6e-4 at 1e8. Centred on the coordinates' median, they are cdist's to
    rounding, and the online solve with the far point at zero weight is the dense one."""
    x, y = rng.random((100, 2)), rng.random((80, 2))
    x[0] = far
    exact = cdist(x, y, "sqeuclidean")
    geom = ottools.PointCloud(x, y)
    np.testing.assert_allclose(geom.dense()[1:], exact[1:], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(geom.dense()[0], exact[0], rtol=1e-14)
    a = np.full(100, 1 / 99)
    a[0] = 0.0
    on = ottools.sinkhorn(a, None, geom, 0.05)
    de = ottools.sinkhorn(a[1:], None, exact[1:], 0.05)
    assert on.success and de.success
    assert on.fun == pytest.approx(de.fun, rel=1e-12)
    np.testing.assert_allclose(on.plan_dense()[1:], de.plan, rtol=1e-9, atol=1e-14)


def test_point_cloud_results_pickle(rng, tmp_path):
    """A PointCloud result (plan operator, plan_dense, barycentric_map) and a divergence
    on clouds pickle, and load in a fresh process (a worker's result: lambdas in them
    raised "Can't pickle local object")."""
    import pickle
    import subprocess
    import sys

    x, y = rng.random((30, 2)), rng.random((20, 2))
    a = np.full(30, 1 / 29)
    a[3] = 0.0
    res = ottools.sinkhorn(a, None, PointCloud(x, y), 0.05)
    back = pickle.loads(pickle.dumps(res))
    v, u = rng.random(20), rng.random(30)
    np.testing.assert_array_equal(back.plan @ v, res.plan @ v)
    np.testing.assert_array_equal(back.plan.T @ u, res.plan.T @ u)
    np.testing.assert_array_equal(back.plan_dense(), res.plan_dense())
    np.testing.assert_array_equal(back.barycentric_map(), res.barycentric_map())
    div = ottools.sinkhorn_divergence(x, y, reg=0.05, online=True)
    assert pickle.loads(pickle.dumps(div)).fun == div.fun
    path = tmp_path / "res.pkl"
    path.write_bytes(pickle.dumps(res))
    code = ("import pickle, sys; r = pickle.load(open(sys.argv[1], 'rb')); "
            "print(repr(float(r.plan_dense().sum())))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True)
    assert float(out.stdout) == float(res.plan_dense().sum())

