"""Tests of emd, the exact OT solver (algorithms.md section 10.4)."""

import copy

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment, linprog

import ottools
from ottools._kernels import _emd as _k

from conftest import random_problem


def _linprog_value(a, b, cost):
    """The transport LP solved by HiGHS (the reference optimum)."""
    n, m = cost.shape
    a_eq = scipy.sparse.vstack([
        scipy.sparse.kron(scipy.sparse.eye(n), np.ones((1, m))),
        scipy.sparse.kron(np.ones((1, n)), scipy.sparse.eye(m)),
    ]).tocsc()
    b64 = b.astype(np.float64) * (a.astype(np.float64).sum() / b.astype(np.float64).sum())
    res = linprog(cost.astype(np.float64).ravel(), A_eq=a_eq,
                  b_eq=np.concatenate([a.astype(np.float64), b64]), bounds=(0, None),
                  method="highs")
    assert res.status == 0
    return res.fun


def _assert_certificate(res, a, b, cost, *, tol=1e-10):
    """An optimal basic solution: feasible sparse plan (<= n + m - 1 non-zeros), dual
    feasible potentials, complementary slackness, zero duality gap, centring."""
    n, m = cost.shape
    a64, b64, C = (x.astype(np.float64) for x in (a, b, cost))
    scale = float(max(np.abs(C).max(), 1e-300))
    assert res.success and res.status == 0 and res.method == "network_simplex"
    assert isinstance(res.plan, scipy.sparse.csr_array) and res.plan.shape == (n, m)
    assert res.plan.nnz <= n + m - 1
    P = res.plan.toarray().astype(np.float64)
    assert P.min() >= 0
    mass = a64.sum()
    ftol = 1e-12 if a.dtype == np.float64 else 1e-6
    np.testing.assert_allclose(P.sum(1), a64, atol=ftol * mass)
    np.testing.assert_allclose(P.sum(0), b64, atol=ftol * mass)
    assert res.err == pytest.approx(
        (np.abs(P.sum(1) - a64).sum() + np.abs(P.sum(0) - b64).sum()) / mass,
        abs=ftol)
    assert res.fun == res.cost
    # fun is summed from the float64 flows; the plan holds them in the input dtype
    assert res.fun == pytest.approx(np.sum(P * C), rel=ftol, abs=ftol * 1e-3 * scale)
    f, g = res.f.astype(np.float64), res.g.astype(np.float64)
    assert res.f.shape == (n,) and res.g.shape == (m,)
    rc = C - f[:, None] - g[None, :]
    assert rc.min() >= -tol * scale  # dual feasible (zero-weight entries included)
    assert np.all(np.abs(rc[P > 0]) <= tol * scale)  # complementary slackness
    assert f @ a64 == pytest.approx(g @ b64, abs=tol * scale * mass)  # centring
    assert res.dual_value == pytest.approx(res.fun, rel=tol, abs=tol * scale * mass)


# --- against POT, SciPy (HiGHS, linear_sum_assignment) ------------------------------

@pytest.mark.parametrize("n, m, zeros", [(1, 1, 0), (1, 7, 0), (9, 1, 0), (12, 12, 0),
                                         (30, 45, 0), (60, 60, 10), (57, 23, 5),
                                         (5, 60, 2)])
def test_against_pot_and_linprog(rng, n, m, zeros):
    ot = pytest.importorskip("ot")
    a, b, cost = random_problem(rng, n, m, zeros=zeros)
    res = ottools.emd(a, b, cost)
    _assert_certificate(res, a, b, cost)
    assert res.fun == pytest.approx(ot.emd2(a, b, cost), rel=1e-12, abs=1e-16)
    assert res.fun == pytest.approx(_linprog_value(a, b, cost), rel=1e-12, abs=1e-16)


@pytest.mark.parametrize("n", [1, 2, 10, 60])
def test_uniform_square_is_the_assignment(rng, n):
    """A unique optimal assignment (random costs): the plan is the permutation of
    scipy.optimize.linear_sum_assignment, with mass 1/n."""
    cost = rng.random((n, n))
    rows, cols = linear_sum_assignment(cost)
    res = ottools.emd(None, None, cost)
    _assert_certificate(res, np.full(n, 1.0 / n), np.full(n, 1.0 / n), cost)
    P = res.plan.toarray()
    expected = np.zeros((n, n))
    expected[rows, cols] = 1.0 / n
    np.testing.assert_allclose(P, expected, atol=1e-15)
    assert res.fun == pytest.approx(cost[rows, cols].sum() / n, rel=1e-12)


def test_larger_problem_matches_pot(rng):
    ot = pytest.importorskip("ot")
    x, y = rng.random((300, 2)), rng.random((250, 2))
    cost = ottools.cost_matrix(x, y)
    a = rng.random(300)
    a[::7] = 0
    a /= a.sum()
    b = np.full(250, 1 / 250)
    res = ottools.emd(a, b, cost)
    _assert_certificate(res, a, b, cost)
    assert res.fun == pytest.approx(ot.emd2(a, b, cost, numItermax=10**7), rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("n", [1000, 4000])
def test_large_uniform_2d_matches_pot(rng, n):
    ot = pytest.importorskip("ot")
    x, y = rng.random((n, 2)), rng.random((n, 2))
    cost = ottools.cost_matrix(x, y)
    res = ottools.emd(None, None, cost)
    assert res.success
    assert res.plan.nnz <= 2 * n - 1
    assert res.fun == pytest.approx(ot.emd2([], [], cost, numItermax=10**8), rel=1e-12)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 30))
    m = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2**32 - 1))
    r = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["uniform", "random", "zeros", "integer"]))
    a = np.full(n, 1.0 / n) if kind == "uniform" else r.random(n) + 0.01
    b = np.full(m, 1.0 / m) if kind == "uniform" else r.random(m) + 0.01
    if kind == "zeros":
        a[r.random(n) < 0.4] = 0
        b[r.random(m) < 0.4] = 0
        a[r.integers(n)] += 0.5
        b[r.integers(m)] += 0.5
    a /= a.sum()
    b /= b.sum()
    # "integer": many ties, many optimal plans (degenerate pivots)
    cost = (r.integers(0, 3, (n, m)).astype(float) if kind == "integer"
            else r.standard_normal((n, m)) * draw(st.sampled_from([1e-3, 1.0, 1e3])))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    return a.astype(dtype), b.astype(dtype), cost.astype(dtype)


@given(problems())
def test_hypothesis_certificate_and_linprog(problem):
    a, b, cost = problem
    res = ottools.emd(a, b, cost)
    assert res.plan.dtype == a.dtype and res.f.dtype == a.dtype and res.g.dtype == a.dtype
    if a.dtype == np.float64:
        _assert_certificate(res, a, b, cost)
        scale = np.abs(cost).max()
        assert res.fun == pytest.approx(_linprog_value(a, b, cost), rel=1e-12,
                                        abs=1e-14 * scale)
    else:
        # float32 data, float64 work: the float64 solve of the same numbers, with
        # potentials rounded to float32
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        exact = ottools.emd(a64, b64 * (a64.sum() / b64.sum()), cost.astype(np.float64))
        assert res.fun == pytest.approx(exact.fun, rel=1e-6,
                                        abs=1e-6 * float(np.abs(cost).max()))
        _assert_certificate(res, a, b, cost, tol=1e-6)


# --- properties of the result ---------------------------------------------------------

def test_float32_keeps_dtype(rng):
    a, b, cost = random_problem(rng, 20, 15, zeros=3, dtype=np.float32)
    res = ottools.emd(a, b, cost)
    assert res.plan.dtype == np.float32
    assert res.f.dtype == np.float32 and res.g.dtype == np.float32
    assert isinstance(res.fun, float)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = ottools.emd(a64, b64 * (a64.sum() / b64.sum()), cost.astype(np.float64))
    assert res.fun == pytest.approx(ref.fun, rel=1e-6)
    _assert_certificate(res, a, b, cost, tol=1e-6)


_CLOUD_METRICS = [("sqeuclidean", None), ("euclidean", None), ("cityblock", None),
                  ("minkowski", 1.5), ("minkowski", 3.0)]


@given(n=st.integers(1, 30), m=st.integers(1, 30), d=st.integers(1, 4),
       metric=st.sampled_from(_CLOUD_METRICS), zeros=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_point_cloud_is_the_dense_solve(n, m, d, metric, zeros, dtype, seed):
    """``cost=PointCloud``: the costs computed on the fly are those of ``dense()`` to the
    bit, so the pivots, the plan and the potentials are the dense solve's; the
    certificate holds against the dense cost (weights with zeros, float32 included: the
    float32 cloud's costs rounded as ``dense()`` stores them)."""
    r = np.random.default_rng(seed)
    x, y = r.normal(size=(n, d)).astype(dtype), r.normal(size=(m, d)).astype(dtype)
    a, b = r.random(n) + 0.05, r.random(m) + 0.05
    if zeros and n > 1:
        a[r.random(n) < 0.3] = 0.0
        a[0] = max(a[0], 0.05)
    if zeros and m > 1:
        b[r.random(m) < 0.3] = 0.0
        b[-1] = max(b[-1], 0.05)
    a, b = a / a.sum(), b / b.sum()
    a, b = a.astype(dtype), b.astype(dtype)
    geom = ottools.PointCloud(x, y, metric[0], p=metric[1], scale="max")
    res = ottools.emd(a, b, geom)
    dense = geom.dense()
    assert res.plan.dtype == res.f.dtype == dense.dtype == np.dtype(dtype)
    ref = ottools.emd(a, b, dense)
    assert res.nit == ref.nit and res.fun == ref.fun
    np.testing.assert_array_equal(res.plan.toarray(), ref.plan.toarray())
    np.testing.assert_array_equal(res.f, ref.f)
    np.testing.assert_array_equal(res.g, ref.g)
    _assert_certificate(res, a, b, dense, tol=1e-6 if dtype == np.float32 else 1e-10)


def test_point_cloud_never_forms_the_cost(rng, monkeypatch):
    """Without zero weights nothing asks the point cloud for a dense matrix or block
    (the solve holds O((n + m) d) memory besides the (n, K) candidate lists), and the
    optimum is POT's."""
    ot = pytest.importorskip("ot")
    x, y = rng.random((400, 2)), rng.random((300, 2))
    a, b = rng.random(400) + 0.1, rng.random(300) + 0.1
    a, b = a / a.sum(), b / b.sum()
    geom = ottools.PointCloud(x, y)
    dense = geom.dense()

    def refuse(*args, **kwargs):
        raise AssertionError("a dense cost was formed")

    monkeypatch.setattr(ottools.PointCloud, "dense", refuse)
    monkeypatch.setattr(ottools.PointCloud, "block", refuse)
    res = ottools.emd(a, b, geom)
    monkeypatch.undo()
    assert res.fun == pytest.approx(ot.emd2(a, b, dense, numItermax=10**8), rel=1e-12)
    _assert_certificate(res, a, b, dense)


def test_zero_weights_give_empty_rows_and_feasible_potentials(rng):
    a, b, cost = random_problem(rng, 25, 20, zeros=8)
    res = ottools.emd(a, b, cost)
    _assert_certificate(res, a, b, cost)
    P = res.plan.toarray()
    assert np.all(P[a == 0] == 0) and np.all(P[:, b == 0] == 0)
    # the zero-weight rows hold the hard c-transform against the positive columns
    pos = b > 0
    zr = np.flatnonzero(a == 0)
    hard = np.min(cost[np.ix_(zr, pos)] - res.g[pos], axis=1)
    np.testing.assert_allclose(res.f[zr], hard, atol=1e-12)


def test_cost_shift_and_scale(rng):
    """<P, C + s> = <P, C> + s * mass, and scaling C scales the value."""
    a, b, cost = random_problem(rng, 30, 20, zeros=2)
    base = ottools.emd(a, b, cost).fun
    assert ottools.emd(a, b, cost + 1e3).fun == pytest.approx(base + 1e3, rel=1e-12)
    assert ottools.emd(a, b, -cost).fun == pytest.approx(_linprog_value(a, b, -cost),
                                                         rel=1e-12)
    assert ottools.emd(a, b, 1e-6 * cost).fun == pytest.approx(1e-6 * base, rel=1e-12)


def test_all_equal_costs():
    res = ottools.emd([0.2, 0.3, 0.5], [0.5, 0.5], np.full((3, 2), 2.0))
    assert res.success and res.fun == pytest.approx(2.0, rel=1e-15)
    assert res.plan.nnz <= 4


@pytest.mark.parametrize("options", [{"candidates": 1}, {"candidates": 2, "block_size": 1},
                                     {"column_candidates": 1}, {"candidates": 1000},
                                     {"block_size": 10**9}, {"block_size": 2**63},
                                     {"block_size": 10**400}, {"rc_tol": 1e-15}])
def test_options_do_not_change_the_optimum(rng, options):
    a, b, cost = random_problem(rng, 40, 35, zeros=4)
    ref = ottools.emd(a, b, cost)
    res = ottools.emd(a, b, cost, options=options)
    _assert_certificate(res, a, b, cost)
    assert res.fun == pytest.approx(ref.fun, rel=1e-12)
    if options.get("block_size", 0) > 10**8:
        # a block of at least the n K list entries prices the whole list: capped, the
        # huge blocks are that block, to the bit
        whole = ottools.emd(a, b, cost, options={"block_size": 10**8})
        assert res.nit == whole.nit and res.fun == whole.fun
        np.testing.assert_array_equal(res.plan.toarray(), whole.plan.toarray())
        np.testing.assert_array_equal(res.f, whole.f)


@pytest.mark.parametrize("n, m", [(20, 20), (50, 70), (100, 100), (130, 90)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_candidates_match_pot_and_full_lists(rng, n, m, dtype):
    """The default list length (8 to 16 for m <= 400, see _default_candidates) against
    K = 32 and POT on uniform 2-D points; the potentials computed in plan_arrays are
    centred (<f, a> = <g, b>) and certify the plan."""
    ot = pytest.importorskip("ot")
    x, y = rng.random((n, 2)), rng.random((m, 2))
    cost = ((x[:, None] - y[None]) ** 2).sum(-1).astype(dtype)
    a, b = np.full(n, 1 / n, dtype), np.full(m, 1 / m, dtype)
    res = ottools.emd(a, b, cost)
    full = ottools.emd(a, b, cost, options={"candidates": 32})
    assert res.success and res.f.dtype == dtype and res.plan.dtype == dtype
    c64 = cost.astype(np.float64)
    pot = ot.emd2(a.astype(np.float64), b.astype(np.float64), c64, numItermax=10**7)
    assert res.fun == pytest.approx(pot, rel=1e-12)
    assert res.fun == pytest.approx(full.fun, rel=1e-12)
    fa = res.f.astype(np.float64) @ a.astype(np.float64)
    gb = res.g.astype(np.float64) @ b.astype(np.float64)
    assert fa == pytest.approx(gb, rel=1e-6 if dtype == np.float32 else 1e-12, abs=1e-12)
    assert res.dual_value == pytest.approx(fa + gb, rel=1e-15, abs=1e-15)
    if dtype == np.float64:
        _assert_certificate(res, a, b, cost)


def test_warm_start(rng):
    a, b, cost = random_problem(rng, 60, 50)
    cold = ottools.emd(a, b, cost)
    warm = ottools.emd(a, b, cost, init=(cold.f, cold.g))
    _assert_certificate(warm, a, b, cost)
    assert warm.fun == pytest.approx(cold.fun, rel=1e-12)
    assert warm.nit < cold.nit
    # a gauge constant in init changes nothing (init is re-centred)
    shifted = ottools.emd(a, b, cost, init=(cold.f + 5.0, cold.g - 5.0))
    assert shifted.nit < cold.nit
    assert shifted.fun == pytest.approx(cold.fun, rel=1e-12)
    # entropic potentials (from sinkhorn) as a warm start
    ent = ottools.sinkhorn(a, b, cost, 0.01)
    res = ottools.emd(a, b, cost, init=(ent.f, ent.g))
    _assert_certificate(res, a, b, cost)
    assert res.fun == pytest.approx(cold.fun, rel=1e-12)


def test_maxiter_status_is_honest(rng):
    a, b, cost = random_problem(rng, 40, 40)
    full = ottools.emd(a, b, cost)
    assert full.success and full.nit > 3
    for maxiter in (0, 3):
        res = ottools.emd(a, b, cost, maxiter=maxiter)
        assert res.status == 1 and not res.success and res.nit == maxiter
        assert "maxiter" in res.message
        P = res.plan.toarray()  # a feasible basic plan, not an optimal one
        assert res.plan.nnz <= 79 and P.min() >= 0 and res.err < 1e-12
        np.testing.assert_allclose(P.sum(1), a, atol=1e-14)
        assert res.fun > full.fun * (1 + 1e-9)
        rc = cost - res.f[:, None] - res.g[None, :]
        assert rc.min() < -1e-12  # its potentials are not dual feasible
    res = ottools.emd(a, b, cost, maxiter=full.nit)
    assert res.success and res.nit == full.nit and res.fun == full.fun
    # an optimal start needs no pivot: maxiter=0 then reports success
    one = ottools.emd([1.0], [0.5, 0.5], [[1.0, 2.0]], maxiter=0)
    assert one.success and one.nit == 0 and one.fun == pytest.approx(1.5)


def test_deterministic(rng):
    a, b, cost = random_problem(rng, 30, 30)
    r1, r2 = ottools.emd(a, b, cost), ottools.emd(a, b, cost)
    assert r1.nit == r2.nit and r1.fun == r2.fun
    assert (r1.plan != r2.plan).nnz == 0


# --- bad input --------------------------------------------------------------------------

def test_unequal_masses_raise():
    cost = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"same total mass \(relative tolerance 1e-09\)"):
        ottools.emd([0.5, 0.5], [0.5, 0.5 + 1e-8], cost)
    # float32 data: their own rounding (1e-6)
    third = np.full(3, 1 / 3, dtype=np.float32)
    assert ottools.emd(third, third[:1] * 3, np.ones((3, 1), np.float32)).success
    with pytest.raises(ValueError, match=r"same total mass \(relative tolerance 1e-06\)"):
        ottools.emd(third, np.array([1.00001], np.float32), np.ones((3, 1), np.float32))
    # below 1e-9 relative: rounding, accepted (b rescaled onto the mass of a)
    res = ottools.emd([0.5, 0.5], [0.5, 0.5 + 1e-11], cost)
    assert res.success and res.err < 1e-12


@pytest.mark.parametrize("bad, name", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_cost_raises(bad, name):
    cost = np.ones((3, 2))
    cost[1, 1] = bad
    with pytest.raises(ValueError, match=f"`cost` must be finite; got {name}"):
        ottools.emd(None, None, cost)


def test_bad_weights_and_shapes_raise():
    cost = np.ones((3, 2))
    with pytest.raises(ValueError, match="`a` must be non-negative"):
        ottools.emd([0.6, 0.6, -0.2], None, cost)
    with pytest.raises(ValueError, match="`b` must have length 2"):
        ottools.emd(None, [1.0], cost)
    with pytest.raises(ValueError, match="`a` must be finite"):
        ottools.emd([np.nan, 0.5, 0.5], None, cost)
    with pytest.raises(ValueError, match="`cost` must be 2-D"):
        ottools.emd(None, None, np.ones(3))
    with pytest.raises(TypeError, match="`cost` must hold real numbers"):
        ottools.emd(None, None, np.array([["a", "b"]]))


def test_bad_arguments_raise():
    cost = np.ones((3, 2))
    with pytest.raises(ValueError, match="`maxiter` must be >= 0"):
        ottools.emd(None, None, cost, maxiter=-1)
    with pytest.raises(TypeError, match="`maxiter` must be an integer"):
        ottools.emd(None, None, cost, maxiter=1.5)
    with pytest.raises(TypeError, match=r"Unknown option\(s\) 'pivot'"):
        ottools.emd(None, None, cost, options={"pivot": "dantzig"})
    with pytest.raises(ValueError, match=r"`options\['candidates'\]` must be >= 1"):
        ottools.emd(None, None, cost, options={"candidates": 0})
    with pytest.raises(ValueError, match=r"`options\['rc_tol'\]` must be in"):
        ottools.emd(None, None, cost, options={"rc_tol": 0.5})
    with pytest.raises(ValueError, match="`init` potentials must have lengths"):
        ottools.emd(None, None, cost, init=(np.zeros(3), np.zeros(3)))
    with pytest.raises(TypeError, match="`init` must be a pair"):
        ottools.emd(None, None, cost, init=np.zeros(5))
    with pytest.raises(ValueError, match="`init` potentials must be finite"):
        ottools.emd(None, None, cost, init=(np.array([0, np.nan, 0]), np.zeros(2)))


# --- kernels against naive NumPy -------------------------------------------------------

def test_cold_guide_is_the_double_c_transform(rng):
    """column_minima, then start_lists(cold=True): g = min_i C, f = min_j (C - g)."""
    n, m, K, kc = 13, 40, 4, 2
    cost = rng.standard_normal((n, m))
    f, g = np.empty(n), np.empty(m)
    _k.column_minima(_k.dense_source(cost), g)
    np.testing.assert_array_equal(g, cost.min(0))
    lj, lc, lv = np.empty((n, K), np.int64), np.empty((n, K)), np.empty((n, K))
    ci, cv = np.empty((m, kc), np.int64), np.empty((m, kc))
    _k.start_lists(_k.dense_source(cost), f, g, True, lj, lc, lv, ci, cv)
    np.testing.assert_array_equal(f, (cost - g).min(1))
    r = cost - f[:, None] - g[None, :]
    np.testing.assert_array_equal(lv, np.sort(r, axis=1)[:, :K])
    assert np.all(lv[:, 0] == 0)


def test_lists_and_sweep_kernels(rng):
    """start_lists: the K smallest reduced costs per row (and kc per column), ascending;
    the sweep refreshes each row's list to its K smallest current reduced costs."""
    n, m, K, kc = 17, 70, 5, 3  # m not a multiple of the chunk length 16
    cost = rng.random((n, m))
    f0, g0 = rng.random(n), rng.random(m)
    lj, lc, lv = np.empty((n, K), np.int64), np.empty((n, K)), np.empty((n, K))
    ci, cv = np.empty((m, kc), np.int64), np.empty((m, kc))
    _k.start_lists(_k.dense_source(cost), f0, g0, False, lj, lc, lv, ci, cv)
    r0 = cost - f0[:, None] - g0[None, :]
    np.testing.assert_array_equal(lj, np.argsort(r0, axis=1, kind="stable")[:, :K])
    np.testing.assert_array_equal(lv, np.sort(r0, axis=1)[:, :K])
    np.testing.assert_array_equal(lc, np.take_along_axis(cost, lj, axis=1))
    np.testing.assert_array_equal(ci.T, np.argsort(r0, axis=0, kind="stable")[:kc])
    pi = np.concatenate([rng.random(n), rng.random(m), [0.0]])
    found = _k._sweep(_k.dense_source(cost), pi, lj, lc, lv, 0.0)
    r = cost + pi[:n, None] - pi[None, n:n + m]
    expected = np.sort(r, axis=1)[:, :K]
    np.testing.assert_allclose(lv + pi[:n, None], expected, atol=1e-14)
    np.testing.assert_allclose(np.take_along_axis(r, lj, axis=1), expected, atol=1e-14)
    np.testing.assert_array_equal(lc, np.take_along_axis(cost, lj, axis=1))
    assert found == bool(r.min() < 0)
    pi[n:n + m] = -10.0  # every reduced cost positive
    assert not _k._sweep(_k.dense_source(cost), pi, lj, lc, lv, 0.0)


def _first_of_min(d):
    """Each row's minimum as a scan in index order keeps it: the first entry equal to
    it (the sign of a zero is that of the first zero)."""
    return np.take_along_axis(d, np.argmin(d, axis=1)[:, None], axis=1)[:, 0]


@given(n=st.integers(1, 30), m=st.integers(1, 300), kind=st.sampled_from(
    ["uniform", "scaled rows", "ties", "signed zeros"]), cold=st.booleans(),
    k=st.integers(1, 40), kc=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_start_lists_are_each_rows_and_columns_stable_order(n, m, kind, cold, k, kc,
                                                             seed):
    """start_lists against a stable sort of every row and column of the reduced costs,
    to the bit (zeros' signs included), on costs whose rows make its bound guesses fail
    (rows scaled by powers of ten), overshoot (ties), or give zeros of both signs."""
    r = np.random.default_rng(seed)
    if kind == "uniform":
        cost = r.random((n, m))
    elif kind == "scaled rows":
        cost = r.random((n, m)) * 10.0 ** r.integers(-4, 5, n)[:, None]
    elif kind == "ties":
        cost = r.integers(0, 3, (n, m)).astype(float)
    else:
        cost = r.choice(np.array([-0.0, 0.0, 1.0, 2.0]), size=(n, m))
    K, kc = min(k, m), min(kc, n)
    src = _k.dense_source(cost)
    g0 = np.empty(m)
    _k.column_minima(src, g0)
    if cold:
        f0 = np.empty(n)
        f_ref = _first_of_min(cost - g0)
    else:
        f0 = r.random(n)
        g0 = g0 + r.random(m)
        f_ref = f0.copy()
    lj, lc, lv = np.empty((n, K), np.int64), np.empty((n, K)), np.empty((n, K))
    ci, cv = np.empty((m, kc), np.int64), np.empty((m, kc))
    _k.start_lists(src, f0, g0, cold, lj, lc, lv, ci, cv)
    assert f0.tobytes() == f_ref.tobytes()
    red = cost - f_ref[:, None] - g0[None, :]
    rows = np.argsort(red, axis=1, kind="stable")[:, :K]
    cols = np.argsort(red, axis=0, kind="stable")[:kc]
    np.testing.assert_array_equal(lj, rows)
    assert lv.tobytes() == np.take_along_axis(red, rows, axis=1).tobytes()
    assert lc.tobytes() == np.take_along_axis(cost, rows, axis=1).tobytes()
    np.testing.assert_array_equal(ci.T, cols)
    assert cv.T.tobytes() == np.take_along_axis(red, cols, axis=0).tobytes()


@given(pool=st.sampled_from([(-0.0, 0.0), (-0.0, 0.0, 1.0), (-1.0, -0.0, 0.0, 0.5)]),
       m=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_first_min_diff_is_the_first_minimum(pool, m, seed):
    """The cold guide's row minimum over four running minima is the scan's, zeros'
    signs included."""
    r = np.random.default_rng(seed)
    c, g = r.choice(np.array(pool), size=m), r.choice(np.array([-0.0, 0.0]), size=m)
    expected = _first_of_min((c - g)[None, :])[0]
    got = _k._first_min_diff(c, g)
    assert got == expected and np.signbit(got) == np.signbit(expected)


@given(n=st.integers(1, 25), m=st.integers(1, 25), seed=st.integers(0, 2**32 - 1))
def test_greedy_basis_is_a_feasible_forest(n, m, seed):
    r = np.random.default_rng(seed)
    cost = r.integers(0, 4, (n, m)).astype(float)  # ties
    a, b = r.random(n) + 0.01, r.random(m) + 0.01
    a /= a.sum()
    b *= a.sum() / b.sum()
    f0, g0 = np.empty(n), np.empty(m)
    _k.column_minima(_k.dense_source(cost), g0)
    K, kc = min(3, m), min(2, n)
    lj, lc, lv = np.empty((n, K), np.int64), np.empty((n, K)), np.empty((n, K))
    ci, cv = np.empty((m, kc), np.int64), np.empty((m, kc))
    _k.start_lists(_k.dense_source(cost), f0, g0, True, lj, lc, lv, ci, cv)
    ci_, cj_, cx_ = np.empty(n + m, np.int64), np.empty(n + m, np.int64), np.empty(n + m)
    src = _k.dense_source(cost)
    cnt = _k.greedy_basis(src, a.copy(), b.copy(), f0, g0, lj, lv, ci, cv, ci_, cj_, cx_)
    assert 1 <= cnt <= n + m - 1
    assert np.all(cx_[:cnt] > 0)
    P = np.zeros((n, m))
    np.add.at(P, (ci_[:cnt], cj_[:cnt]), cx_[:cnt])
    np.testing.assert_allclose(P.sum(1), a, atol=1e-15)
    np.testing.assert_allclose(P.sum(0), b, atol=1e-15)
    parent = list(range(n + m))  # union-find: the cells are acyclic

    def root(u):
        while parent[u] != u:
            u = parent[u]
        return u

    for i, j in zip(ci_[:cnt], cj_[:cnt]):
        ri, rj = root(i), root(n + j)
        assert ri != rj
        parent[ri] = rj


_SPECIAL_KEYS = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1.0, -1.0,
                 np.finfo(float).max, -np.finfo(float).max]


@given(pool=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64)
                     | st.sampled_from(_SPECIAL_KEYS), min_size=1, max_size=12),
       n=st.integers(0, 5000), spread=st.sampled_from([0.0, 0.3, 1.0]),
       seed=st.integers(0, 2**32 - 1))
def test_stable_argsort_is_numpys_stable_order(pool, n, spread, seed):
    """The radix sort of greedy_basis's candidates (below and above _RADIX_MIN): the
    order of np.argsort(kind="stable") to the index, with ties (a few values drawn
    many times), signed zeros (equal), infinities, NaN (last), subnormals; ``spread``
    of the keys are distinct normal draws of both signs."""
    r = np.random.default_rng(seed)
    v = np.asarray(pool, dtype=np.float64)[r.integers(len(pool), size=n)]
    distinct = r.random(n) < spread
    v[distinct] = r.standard_normal(int(distinct.sum())) * 10.0 ** r.integers(-300, 300)
    np.testing.assert_array_equal(_k.stable_argsort(v), np.argsort(v, kind="stable"))


def test_stable_argsort_is_numbas_merge_sort():
    """The same order as Numba's merge sort, which greedy_basis used before (its float
    comparison puts NaN last and takes -0.0 == 0.0), on keys above _RADIX_MIN."""
    @_k.jit(cache=False)
    def merge(v):
        return np.argsort(v, kind="mergesort")

    r = np.random.default_rng(7)
    v = np.asarray(_SPECIAL_KEYS)[r.integers(len(_SPECIAL_KEYS), size=4 * _k._RADIX_MIN)]
    v[::3] = np.round(r.standard_normal(v[::3].size), 1)
    np.testing.assert_array_equal(_k.stable_argsort(v), merge(v))


def test_a_warm_start_far_beyond_the_costs_is_ignored(rng):
    """Potentials of 1e16 on costs in [0, 1]: reduced costs carried their rounding and
    the solve ended as optimal 0.45 above the optimum; such a guide is ignored."""
    ot = pytest.importorskip("ot")
    C = rng.random((30, 20))
    a, b = np.full(30, 1 / 30), np.full(20, 1 / 20)
    want = ot.emd2(a, b, C)
    for s in (1e6, 1e16, 1e20):
        init = (rng.normal(size=30) * s, rng.normal(size=20) * s)
        res = ottools.emd(a, b, C, init=init)
        assert res.success and res.fun == pytest.approx(want, rel=1e-12)
        _assert_certificate(res, a, b, C)


@pytest.mark.parametrize("s", [1e308, 1.7e308, -1e308])
def test_costs_near_the_top_of_float64(rng, s):
    """Differences of potentials overflowed (NaN reduced costs): a plan 66 % above the
    optimum was called optimal. Solved on costs scaled by a power of two."""
    ot = pytest.importorskip("ot")
    C = rng.random((30, 20))
    C = C if s > 0 else 2 * C - 1
    a, b = np.full(30, 1 / 30), np.full(20, 1 / 20)
    res = ottools.emd(a, b, C * abs(s))
    assert res.success
    assert res.fun / abs(s) == pytest.approx(ot.emd2(a, b, C), rel=1e-12)
    # the certificate at scale 1 (C - f - g would overflow here)
    unit = copy.copy(res)
    for key in ("fun", "cost", "dual_value", "f", "g"):
        unit[key] = res[key] / abs(s)
    _assert_certificate(unit, a, b, C)


@pytest.mark.parametrize("big", [1e3, 1e11, 1e13, 1e100])
def test_one_forbidden_cell_keeps_the_others_exact(big):
    """A "big M" cost on one cell: the tolerance scaled by max|C| let every reduced cost
    of the others pass for zero (1e13 among costs in [0, 1]: a plan 137 % above the
    optimum, status 0)."""
    rng = np.random.default_rng(0)
    n = 100
    C = rng.random((n, n))
    C[0, 0] = big
    a = np.full(n, 1 / n)
    res = ottools.emd(a, a, C)
    r, c = linear_sum_assignment(C)
    assert res.success
    assert res.fun == pytest.approx(C[r, c].sum() / n, rel=1e-13)
    assert (C - res.f[:, None] - res.g[None, :]).min() >= -1e-13


def test_float32_weights_with_a_float64_cost():
    # float32 probability weights carry float32 rounding in their sums (1/3 and 1/7:
    # 1.00000003 and 1.00000004); a float64 cost made the mass tolerance 1e-9 and refused
    # them, where sinkhorn and a float32 cost accept them.
    rng = np.random.default_rng(0)
    C = ottools.cost_matrix(rng.normal(size=(3, 2)), rng.normal(size=(7, 2)))
    a = np.full(3, 1 / 3, dtype=np.float32)
    b = np.full(7, 1 / 7, dtype=np.float32)
    res = ottools.emd(a, b, C)
    ref = ottools.emd(np.full(3, 1 / 3), np.full(7, 1 / 7), C)
    assert res.success
    assert res.fun == pytest.approx(ref.fun, rel=1e-6)
    with pytest.raises(ValueError, match="same total mass"):
        ottools.emd(a, b * np.float32(1.001), C)
