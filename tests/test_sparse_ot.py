"""Tests of sparsity_constrained_ot and quadratic_ot (Liu, Puigcerver and Blondel, ICLR
2023; Blondel, Seguy and Rolet, AISTATS 2018)."""

import concurrent.futures
import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

import ottools
from ottools._kernels import _sparse as _k
from ottools._validation import DEFAULT_TOL

import _reference as ref
from conftest import random_problem, returns_within

FORMS = ["semi-dual", "dual"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _kernel_inputs(rng, n, m, dtype=np.float64):
    a, b, cost = random_problem(rng, n, m, dtype=dtype)
    f = (rng.standard_normal(n) * 0.3).astype(dtype)
    g = (rng.standard_normal(m) * 0.3).astype(dtype)
    return a, b, cost, f, g


def _marginal_error(P, a, b):
    """The documented ``err``: L1 marginal error relative to the total mass."""
    P = P.astype(np.float64)
    return (np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()) / a.sum()


def _assert_plan_formula(P, f, g, cost, reg, k):
    """The documented plan: column j keeps its (at most) k largest entries of
    ``x = f + g_j - c_j`` that are positive, with values ``x / reg``. At exact ties any
    choice is valid, so the kept entries are checked to be among the k largest."""
    X = f.astype(np.float64)[:, None] + g.astype(np.float64)[None, :] - cost
    for j in range(P.shape[1]):
        kept = np.flatnonzero(P[:, j])
        assert kept.size <= k
        np.testing.assert_allclose(P[kept, j], X[kept, j] / reg, rtol=1e-9, atol=1e-12)
        rest = np.setdiff1d(np.arange(P.shape[0]), kept)
        if rest.size:
            bar = X[kept, j].min() if kept.size == k else 0.0
            assert X[rest, j].max() <= bar + 1e-12


def _assert_done(res, tol):
    """max_nz < n: status 0 means err <= tol; status 5 a certified maximum whose plan
    misses the marginals (stationarity <= tol < err); status 4 an honest stall (err > tol);
    never success with err > tol."""
    if res.success:
        assert res.status == 0 and res.err <= tol
    elif res.status == 5:
        assert res.stationarity <= tol < res.err and "Certified maximum" in res.message
    else:
        assert res.status == 4 and "Stalled" in res.message and res.err > tol


# --- kernels against their naive NumPy twins ------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 5, 40, 100])
def test_dual_kernel_matches_reference(rng, k):
    n, m = 40, 30
    a, b, cost, f, g = _kernel_inputs(rng, n, m)
    reg = 0.05
    gf, gg = np.empty(n), np.empty(m)
    vals, idx, acc = np.empty((1, n)), np.empty((1, n), np.int64), np.empty((1, n))
    val = _k.dual_value_grad(f, g, a, b, np.ascontiguousarray(cost.T), reg, min(k, n),
                             gf, gg, vals, idx, acc)
    rval, rgf, rgg = ref.sparse_dual_value_grad(f, g, a, b, cost, reg, k)
    np.testing.assert_allclose(val, rval, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gf, rgf, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gg, rgg, rtol=1e-10, atol=1e-12)


_NO_HINTS = np.empty((0, 1), np.int64)
_NO_BOUNDS = np.empty(0)


@pytest.mark.parametrize("k", [1, 2, 5, 16, 17, 40, 100])  # sorted insertion to k = 16
def test_semi_dual_kernel_matches_reference(rng, k):
    n, m = 40, 30
    a, b, cost, f, _ = _kernel_inputs(rng, n, m)
    reg = 0.05
    gf, tau = np.empty(n), np.empty(m)
    vals, idx, acc = np.empty((1, n)), np.empty((1, n), np.int64), np.empty((1, n))
    val = _k.semi_dual_value_grad(f, a, b, np.ascontiguousarray(cost.T), reg, min(k, n),
                                  gf, tau, vals, idx, acc, _NO_HINTS, _NO_BOUNDS)
    rval, rgf = ref.sparse_semi_dual_value_grad(f, a, b, cost, reg, k)
    np.testing.assert_allclose(val, rval, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gf, rgf, rtol=1e-10, atol=1e-12)


@settings(deadline=None, max_examples=60)
@given(n=st.integers(2, 40), m=st.integers(1, 30), k=st.integers(1, 16),
       ties=st.booleans(), steps=st.lists(st.sampled_from([0.0, 1e-9, 1e-4, 1e-2, 1.0]),
                                          min_size=1, max_size=6),
       seed=st.integers(0, 2**16))
def test_semi_dual_hints_give_the_same_evaluation(n, m, k, ties, steps, seed):
    """Hints carried from point to point (the rows of each column's k + 1 largest
    entries at the last point) give the evaluation without hints to the bit: value,
    gradient and thresholds, also with tied costs and potentials, and for moves from
    none to large."""
    assume(k < n)
    r = np.random.default_rng(seed)
    cost = (r.integers(0, 4, (n, m)) if ties else r.random((n, m))).astype(np.float64)
    a, b = np.full(n, 1.0 / n), r.random(m) + 0.1
    b /= b.sum()
    ct = np.ascontiguousarray(cost.T)
    reg = 10.0 ** r.uniform(-4, 1) / n
    f = np.round(r.standard_normal(n), 1) if ties else r.standard_normal(n) * 0.1
    hints = np.full((m, k + 1), -1, np.int64)
    bounds = _k.new_bounds(m, n)
    scratch = [np.empty((1, n)), np.empty((1, n), np.int64), np.empty((1, n))]
    for step in [0.0] + steps:
        f = f + step * r.standard_normal(n)
        outs = []
        for h, bd in ((_NO_HINTS, _NO_BOUNDS), (hints, bounds)):
            gf, tau = np.empty(n), np.empty(m)
            val = _k.semi_dual_value_grad(f, a, b, ct, reg, k, gf, tau, *scratch, h, bd)
            outs.append(np.concatenate([[val], gf, tau]))
        np.testing.assert_array_equal(outs[1], outs[0])
        assert ((hints >= -1) & (hints < n)).all()
        # a column's bound plus the drift is at least its other rows' largest entry (to
        # rounding: the kernel's margin is 1e-9 relative)
        x = f[:, None] - cost
        for j in np.flatnonzero(np.isfinite(bounds[:m])):
            other = np.delete(x[:, j], hints[j][hints[j] >= 0])
            top = bounds[j] + bounds[-1]
            assert other.size == 0 or other.max() <= top + 1e-12 * (abs(top) + bounds[-1])


def test_block_kernels_match_serial(rng):
    """The parallel twins (3 column blocks) give the serial value and gradient."""
    n, m, k, reg = 40, 30, 2, 0.05
    a, b, cost, f, g = _kernel_inputs(rng, n, m)
    ct = np.ascontiguousarray(cost.T)
    out = []
    for fn, nb in [(_k.dual_value_grad, 1), (_k.dual_value_grad_blocks, 3)]:
        gf, gg = np.empty(n), np.empty(m)
        val = fn(f, g, a, b, ct, reg, k, gf, gg, np.empty((nb, n)),
                 np.empty((nb, n), np.int64), np.empty((nb, n)))
        out.append(np.concatenate([[val], gf, gg]))
    for fn, nb in [(functools.partial(_k.semi_dual_value_grad, hints=_NO_HINTS,
                                        bounds=_NO_BOUNDS), 1),
                   (_k.semi_dual_value_grad_blocks, 3)]:
        gf, tau = np.empty(n), np.empty(m)
        val = fn(f, a, b, ct, reg, k, gf, tau, np.empty((nb, n)),
                 np.empty((nb, n), np.int64), np.empty((nb, n)))
        out.append(np.concatenate([[val], gf, tau]))
    np.testing.assert_allclose(out[1], out[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out[3], out[2], rtol=1e-12, atol=1e-15)


def test_column_blocks_ignore_threads():
    """The block count (hence the order of float sums) depends on the size only."""
    import numba

    before = numba.get_num_threads()
    try:
        counts = set()
        for t in range(1, before + 1):
            numba.set_num_threads(t)
            counts.add(_k.column_blocks(4000, 3000))
    finally:
        numba.set_num_threads(before)
    assert counts == {16} and _k.column_blocks(30, 40) == 1
    assert _k.column_blocks(10, 2**23 // 10) == 1 and _k.column_blocks(2**12, 2**11) == 16


@given(n=st.integers(1, 300), k=st.integers(1, 20), seed=st.integers(0, 2**31))
def test_buffered_selection_keeps_k_largest(n, k, seed):
    """The buffered quickselect (prunes at 2k / k + 64 entries) equals a sort, ties aside."""
    r = np.random.default_rng(seed)
    x = r.standard_normal(n)
    vals, idx = np.empty(n), np.empty(n, np.int64)
    expect = np.sort(x[x > 0])[::-1][:k]
    # the full column, and a working set: a subset of the rows holding the positive ones
    rows = np.flatnonzero((x > 0) | (r.random(n) < 0.5))
    for crow, rws, ws in ((np.zeros(n), np.empty(0, np.int64), False),
                          (np.zeros(rows.size), rows, True)):
        cnt = _k._dual_column(x, 0.0, crow, rws, ws, min(k, n), vals, idx)
        assert cnt == expect.size
        np.testing.assert_array_equal(np.sort(vals[:cnt])[::-1], expect)
        np.testing.assert_array_equal(x[idx[:cnt]], vals[:cnt])


@settings(deadline=None, max_examples=40)
@given(cnt=st.integers(0, 120), ties=st.booleans(), by_idx=st.booleans(),
       seed=st.integers(0, 2**31))
def test_sort_pairs_sorts_in_place(cnt, ties, by_idx, seed):
    """``_sort_pairs`` (insertion up to 32 entries, an in-place heap sort above) sorts the
    pairs together: decreasing values, or increasing rows; entries past ``cnt`` stay."""
    r = np.random.default_rng(seed)
    n = cnt + 3
    vals = np.round(r.standard_normal(n), 1) if ties else r.standard_normal(n)
    idx = r.permutation(n).astype(np.int64)
    v0, i0 = vals.copy(), idx.copy()
    _k._sort_pairs(vals, idx, cnt, by_idx)
    key = i0[:cnt] if by_idx else -v0[:cnt]
    np.testing.assert_array_equal(np.sort(key), idx[:cnt] if by_idx else -vals[:cnt])
    # the pairs stay pairs
    assert sorted(zip(idx[:cnt], vals[:cnt])) == sorted(zip(i0[:cnt], v0[:cnt]))
    np.testing.assert_array_equal(vals[cnt:], v0[cnt:])
    np.testing.assert_array_equal(idx[cnt:], i0[cnt:])


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 60), m=st.integers(1, 40), k=st.integers(1, 6),
       semi=st.booleans(), seed=st.integers(0, 2**31), frac=st.floats(0.0, 1.0))
def test_working_sets_give_the_full_evaluation_to_the_bit(n, m, k, semi, seed, frac):
    """Sets built at (f0, g0) with a margin serve every point whose potentials moved by
    at most the margin's bound (semi-dual: margin / 2 in f; dual: margin for the move of f
    plus that of g): value, gradient and thresholds equal the full kernels' bit for bit."""
    r = np.random.default_rng(seed)
    a, b, cost, f0, g0 = _kernel_inputs(r, n, m)
    b = b * (a.sum() / b.sum())
    ct = np.ascontiguousarray(cost.T)
    reg, k = 0.05, min(k, n)
    margin = 0.05 + 0.3 * r.random()
    ptr, rows, costs = np.empty(m + 1, np.int64), np.empty(n * m, np.int64), np.empty(n * m)
    nnz = _k.working_set(f0, g0, ct, reg, b, semi, margin, ptr, rows, costs)
    assert nnz >= (m if semi else 0)  # a semi-dual column keeps at least its maximum
    # a move at the bound, split between f and g for the dual
    step = frac * margin * (0.5 if semi else 1.0)
    sf = step if semi else step * r.random()
    f = f0 + sf * r.uniform(-1.0, 1.0, n)
    g = g0 + (step - sf) * r.uniform(-1.0, 1.0, m)
    ws = (ptr, rows[:ptr[-1]], costs[:ptr[-1]])
    none = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    out = []
    for sets in (none, ws):
        gf, gg = np.empty(n), np.empty(m)
        scratch = (np.empty((1, n)), np.empty((1, n), np.int64), np.empty((1, n)))
        if semi:
            val = _k.semi_dual_value_grad_blocks_serial(f, a, b, ct, reg, k, gf, gg,
                                                        *scratch, sets)
        else:
            val = _k.dual_value_grad_blocks_serial(f, g, a, b, ct, reg, k, gf, gg,
                                                   *scratch, sets)
        out.append(np.concatenate([[val], gf, gg]))
    np.testing.assert_array_equal(out[1], out[0])


@pytest.mark.parametrize("formulation", ["semi-dual", "dual"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_working_sets_do_not_change_the_solve(formulation, dtype, monkeypatch):
    """The solver with working sets returns the result of the full evaluations to the
    bit: same iterates, plan, potentials and counts. With working sets the ascent runs in
    the Python loop, without them in the compiled loop
    (``ottools._kernels._sparse_ascent.run``): this also checks that the two loops take
    the same iterates."""
    from ottools._sparse_ot import _objective

    r = np.random.default_rng(3)
    x, y = r.random((260, 2)), r.random((240, 2))
    cost = ottools.cost_matrix(x, y).astype(dtype)
    a = r.random(260).astype(dtype)
    a[::7] = 0
    b = np.full(240, a.sum() / 240, dtype=dtype)
    results = []
    for on in (True, False):
        monkeypatch.setattr(_objective, "_WS_MIN_ENTRIES", 1 << 15 if on else 1 << 62)
        results.append(ottools.sparsity_constrained_ot(a, b, cost, 0.05, 3,
                                                       formulation=formulation))
    ws, full = results
    assert ws.nit == full.nit and ws.nfev == full.nfev and ws.status == full.status
    assert ws.dual_value == full.dual_value
    np.testing.assert_array_equal(ws.f, full.f)
    np.testing.assert_array_equal(ws.g, full.g)
    assert (ws.plan != full.plan).nnz == 0


@pytest.mark.parametrize("kk", [1, 5, 16, 17, 50])  # sorted insertion up to 16
def test_column_tops_matches_sort(rng, kk):
    n, m = 50, 7
    _, _, cost, f, g = _kernel_inputs(rng, n, m)
    V, R = np.empty((m, kk)), np.empty((m, kk), np.int64)
    _k.column_tops(f, g, np.ascontiguousarray(cost.T), kk, V, R, np.empty(n),
                   np.empty(n, np.int64))
    X = f[:, None] + g[None, :] - cost
    np.testing.assert_array_equal(V, -np.sort(-X, axis=0)[:kk].T)
    np.testing.assert_array_equal(np.take_along_axis(X.T, R, axis=1), V)


def test_plan_kernel_matches_reference(rng):
    n, m, k, reg = 30, 20, 3, 0.05
    a, b, cost, f, g = _kernel_inputs(rng, n, m)
    ct = np.ascontiguousarray(cost.T)
    vals, idx = np.empty(n), np.empty(n, np.int64)
    for semi, expect in [(False, ref.sparse_dual_plan(f, g, cost, reg, k)),
                         (True, ref.sparse_semi_dual_plan(f, b, cost, reg, k))]:
        indptr, indices, data, rs, cs, lin, sq = _k.plan_columns(f, g, ct, reg, k, semi, b,
                                                                 vals, idx)
        P = scipy.sparse.csc_array((data, indices, indptr), shape=(n, m))
        assert P.has_canonical_format
        np.testing.assert_allclose(P.toarray(), expect, atol=1e-12)
        np.testing.assert_allclose(rs, expect.sum(1), atol=1e-12)
        np.testing.assert_allclose(cs, expect.sum(0), atol=1e-12)
        np.testing.assert_allclose(lin, (expect * cost).sum(), atol=1e-12)
        np.testing.assert_allclose(sq, (expect ** 2).sum(), atol=1e-10)


def test_quasi_newton_kernels(rng):
    """Two-loop recursion and the BFGS update against their textbook dense forms."""
    N, mem = 12, 4
    S, Y = rng.standard_normal((mem, N)), rng.standard_normal((mem, N))
    Y += 3 * S  # positive curvature s . y > 0
    rho = 1 / np.einsum("ij,ij->i", S, Y)
    g = rng.standard_normal(N)
    order = np.array([2, 3, 0, 1])  # oldest .. newest rows of the ring buffer
    out = np.empty(N)
    _k.lbfgs_direction(g, S, Y, rho, order, mem, out)
    H = np.eye(N) * (S[1] @ Y[1]) / (Y[1] @ Y[1])
    for p in order:
        V = np.eye(N) - rho[p] * np.outer(Y[p], S[p])
        H = V.T @ H @ V + rho[p] * np.outer(S[p], S[p])
    np.testing.assert_allclose(out, H @ g, rtol=1e-10)
    # dense update, also returning the next direction H_new g_new
    H0 = H.copy()
    s, y = S[0], Y[0]
    g_old = rng.standard_normal(N)
    g_new = g_old - y
    d = H0 @ g_old
    # the kernels keep the upper triangle, and a correction pending (zeros below: the
    # lower triangle is never read)
    H = np.triu(H0) + np.tril(rng.standard_normal((N, N)), -1)
    ps, phy, pending = np.empty(N), np.empty(N), np.zeros(3)
    nxt, u = np.empty(N), np.empty(N)
    assert _k.bfgs_update(H, s, y, d, g_new, False, nxt, u, ps, phy, pending)
    V = np.eye(N) - np.outer(y, s) / (s @ y)
    expect = V.T @ H0 @ V + np.outer(s, s) / (s @ y)
    np.testing.assert_allclose(nxt, expect @ g_new, rtol=1e-10, atol=1e-12)
    assert pending[2] == 1  # the correction waits for the next pass over H
    x = rng.standard_normal(N)
    _k.sym_matvec(H, x, out, ps, phy, pending)
    np.testing.assert_allclose(out, expect @ x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.triu(H), np.triu(expect), rtol=1e-10, atol=1e-12)
    assert pending[2] == 0
    # a second update reads the first one's correction in its pass over H
    s2, y2 = S[2], Y[2]
    d2 = expect @ g_new
    g2 = g_new - y2
    assert _k.bfgs_update(H, s2, y2, d2, g2, False, nxt, u, ps, phy, pending)
    V = np.eye(N) - np.outer(y2, s2) / (s2 @ y2)
    expect = V.T @ expect @ V + np.outer(s2, s2) / (s2 @ y2)
    np.testing.assert_allclose(nxt, expect @ g2, rtol=1e-10, atol=1e-12)
    _k.sym_matvec(H, x, out, ps, phy, pending)
    np.testing.assert_allclose(out, expect @ x, rtol=1e-10, atol=1e-12)
    before = H.copy(), pending.copy()
    assert not _k.bfgs_update(H, s, -y, d, g_new, False, nxt, u, ps, phy, pending)  # s.y<0
    np.testing.assert_array_equal(H, before[0])
    np.testing.assert_array_equal(pending, before[1])


def _objective(a, b, cost, reg, k, semi):
    from ottools._problem import LinearProblem
    from ottools._sparse_ot._objective import ScaledProblem, SparseDual

    prob = LinearProblem.from_args(a, b, cost)
    return SparseDual(ScaledProblem(prob, reg), k, semi)


@pytest.mark.parametrize("semi", [True, False])
def test_supergradient(rng, semi):
    """Without ties the least-norm supergradient is the gradient (naive twin); at a tie
    the least-norm mix of the two plans is found."""
    from ottools._sparse_ot._kinks import supergradient

    n, m, k, reg = 12, 9, 2, 0.5  # max |cost| = 1: the scaled problem is the problem
    a, b, cost, f, g = _kernel_inputs(rng, n, m)
    obj = _objective(a, b, cost, reg, k, semi)
    x = f if semi else np.concatenate([f, g])
    d, measure = supergradient(obj, x, -1.0)
    if semi:
        expect = ref.sparse_semi_dual_value_grad(f, a, b, cost, reg, k)[1]
    else:
        expect = np.concatenate(ref.sparse_dual_value_grad(f, g, a, b, cost, reg, k)[1:])
    np.testing.assert_allclose(d, expect, atol=1e-12)
    np.testing.assert_allclose(measure, np.abs(expect).sum(), rtol=1e-12)
    # one column, two sources tied 1e-3 apart, k = 1: the kept row takes all of b = 1,
    # the gradient is (-0.5, 0.5); the half-half mix meets a exactly
    obj = _objective(np.array([0.5, 0.5]), np.array([1.0]), np.ones((2, 1)), 0.1, 1, True)
    d, measure = supergradient(obj, np.array([1e-3, 0.0]), 1e-2)
    assert measure < 1e-12
    d, measure = supergradient(obj, np.array([1e-3, 0.0]), 1e-4)
    np.testing.assert_allclose(d, [-0.5, 0.5], atol=1e-15)


# --- against POT ------------------------------------------------------------------------

def _pot_solve(ot, a, b, cost, reg, k, formulation):
    fn = ot.smooth.smooth_ot_semi_dual if formulation == "semi-dual" else ot.smooth.smooth_ot_dual
    kw = dict(reg_type="l2") if k is None else dict(reg_type="sparsity_constrained", max_nz=k)
    G, log = fn(a, b, cost, reg, log=True, **kw)
    return G, -float(log["res"].fun), bool(log["res"].success)


@settings(max_examples=20)
@given(n=st.integers(2, 9), m=st.integers(2, 9), k=st.integers(1, 8),
       reg=st.sampled_from([0.05, 0.2, 1.0]), seed=st.integers(0, 2**31),
       formulation=st.sampled_from(FORMS))
def test_against_pot(n, m, k, reg, seed, formulation):
    ot = pytest.importorskip("ot")
    k = max(1, min(k, n - 1), -(-n // m))  # k * m >= n, else no plan is feasible
    a, b, cost = random_problem(np.random.default_rng(seed), n, m)
    res = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation=formulation,
                                          tol=1e-10)
    G, pot_value, pot_ok = _pot_solve(ot, a, b, cost, reg, k, formulation)
    # When no plan with <= k non-zeros per column meets the marginals (e.g. n = m = 2,
    # k = 1 and a not a permutation of b) the primal is infeasible and the dual unbounded:
    # POT runs off to ~1e28 there. A bounded dual is at most max(cost) + reg / 2.
    assume(np.isfinite(pot_value) and pot_value <= cost.max() + reg)
    _assert_done(res, 1e-10)
    assert res.dual_value >= pot_value - 1e-9 * abs(pot_value)
    assert (np.diff(res.plan.indptr) <= k).all()
    # Plans are unique only where the relaxation is tight (POT's plan meets the marginals)
    # and both reached the same maximum; there they must agree.
    pot_err = _marginal_error(G, a, b)
    if pot_ok and res.success and pot_err <= 1e-6 and res.err <= 1e-6:
        np.testing.assert_allclose(res.plan.toarray(), G, atol=2e-4 * G.max())


def test_certified_maximum_is_status_5():
    """k < n, relaxation not tight: err stays large, but a mix of the tied columns' plans
    meets the marginals, which certifies the semi-dual's maximum: status 5, success False
    (it was success=True with err > tol), at least POT's value. Whether a given problem
    ends at a certified tie or stalls just off one (status 4, at another tie tolerance)
    depends on the iterates' rounding, so several problems are solved: every status is
    honest, and most are certificates."""
    ot = pytest.importorskip("ot")
    statuses = []
    for seed in range(6):
        a, b, cost = random_problem(np.random.default_rng(seed), 15, 20)
        res = ottools.sparsity_constrained_ot(a, b, cost, 1.0, 4, tol=1e-5)
        statuses.append(res.status)
        _, pot_value, _ = _pot_solve(ot, a, b, cost, 1.0, 4, "semi-dual")
        assert res.dual_value >= pot_value - 1e-9 * abs(pot_value)
        if res.status == 5:
            assert not res.success
            assert res.stationarity <= 1e-5 < res.err
            assert "Certified maximum" in res.message
        else:
            assert res.status in (0, 4)
            assert res.success == (res.status == 0) == (res.err <= 1e-5)
    assert statuses.count(5) >= 3, statuses


def test_k1_by_quasi_newton_is_honest():
    """k = 1 without the LP: the semi-dual is piecewise linear; the solver ends with a
    status that says what it reached (stalled or certified), never status 0 with
    err > tol, and at least POT's value."""
    ot = pytest.importorskip("ot")
    a, b, cost = random_problem(np.random.default_rng(0), 15, 20)
    res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, 1, method="bfgs", tol=1e-5)
    assert res.method == "bfgs"
    _assert_done(res, 1e-5)
    assert not res.success  # this problem's LP plan splits columns: err > 0 at the max
    _, pot_value, _ = _pot_solve(ot, a, b, cost, 0.1, 1, "semi-dual")
    assert res.dual_value >= pot_value - 1e-9 * abs(pot_value)


@settings(max_examples=15)
@given(n=st.integers(2, 12), m=st.integers(1, 12), zeros=st.integers(0, 2),
       reg=st.sampled_from([1e-3, 0.1, 1.0]), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.float32, np.float64]), formulation=st.sampled_from(FORMS))
def test_k1_is_exact_ot(n, m, zeros, reg, seed, dtype, formulation):
    """max_nz = 1: the semi-dual (and the dual maximised over g) is piecewise linear with
    maximum OT(a, b) + reg/2 ||b||^2 by LP duality (POT's emd2 is the reference), reached
    exactly; never below POT's value (POT stalls below it)."""
    ot = pytest.importorskip("ot")
    a, b, cost = random_problem(np.random.default_rng(seed), n, m, zeros=zeros)
    assume(np.count_nonzero(b) >= np.count_nonzero(a))  # else no plan is feasible
    tol = 1e-9 if dtype == np.float64 else 1e-6
    res = ottools.sparsity_constrained_ot(a.astype(dtype), b.astype(dtype),
                                          cost.astype(dtype), reg, 1, formulation=formulation,
                                          tol=tol)
    exact = ot.emd2(a, b, cost) + 0.5 * reg * float(np.sum(b * b))
    assert res.method == "lp"
    # the LP certifies the maximum; the plan keeps one entry per column: it meets the
    # marginals (status 0) unless the LP plan splits a column (status 5)
    assert res.stationarity <= tol and res.status in (0, 5)
    assert (res.status == 0) == (res.err <= tol)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(res.dual_value, exact, rtol=rtol, atol=rtol)
    _, pot_value, _ = _pot_solve(ot, a, b, cost, reg, 1, formulation)
    assume(np.isfinite(pot_value) and pot_value <= cost.max() + reg)  # as in test_against_pot
    assert res.dual_value >= pot_value - rtol * abs(pot_value)
    # one non-zero per column of positive weight, columns sum to b, zero rows stay empty
    P = res.plan.toarray()
    assert P.dtype == dtype and res.f.dtype == dtype
    assert ((P > 0).sum(0) == (b > 0)).all()
    np.testing.assert_allclose(P.sum(0), b.astype(dtype), rtol=1e-6)
    assert (P[a == 0] == 0).all()
    np.testing.assert_allclose(res.err, _marginal_error(P, a, b), rtol=1e-4, atol=1e-6)


def _paper_toy():
    """Liu et al.'s toy problem: 100 bins, Gaussian marginals, squared distance / max."""
    x = np.arange(100.0)
    a = np.exp(-0.5 * ((x - 20) / 5) ** 2)
    b = np.exp(-0.5 * ((x - 60) / 10) ** 2)
    cost = (x[:, None] - x[None, :]) ** 2
    return a / a.sum(), b / b.sum(), cost / cost.max()


@pytest.mark.parametrize("formulation", FORMS)
def test_k1_exact_with_tiny_weights(formulation):
    """The paper's toy problem: Gaussian weights down to 5e-56, which HiGHS's presolve
    calls infeasible; the LP is retried without presolve and still gives the maximum."""
    ot = pytest.importorskip("ot")
    a, b, cost = _paper_toy()
    res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, 1, formulation=formulation)
    assert res.method == "lp" and res.status in (0, 5) and res.stationarity <= 1e-9
    exact = ot.emd2(a, b, cost) + 0.05 * float(b @ b)
    np.testing.assert_allclose(res.dual_value, exact, rtol=1e-10)


def test_returns_the_best_point_visited():
    """Paper's toy problem, k = 2: the result is the best point the iterations visited
    (it once returned a worse end point, 0.1662574 instead of 0.1662582), and not a
    success (the relaxation is not tight)."""
    a, b, cost = _paper_toy()
    seen = []
    res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, 2,
                                          callback=lambda r: seen.append(r.dual_value))
    # Within the value's rounding floor (1e-15 relative) the point of smaller marginal
    # error counts as the best (ottools._sparse_ot._stall): a value 1 ulp below the
    # largest seen is the same point for this test (a fresh environment gave one).
    assert res.dual_value >= max(seen) * (1 - 1e-15) and res.dual_value >= 0.1662582
    # stalled, certified, or still climbing (by 1e-12 relative) at maxiter
    assert not res.success and res.status in (1, 4, 5)


@pytest.mark.parametrize("formulation", FORMS)
def test_large_k_is_quadratic_ot_and_pot_l2(rng, formulation):
    ot = pytest.importorskip("ot")
    a, b, cost = random_problem(rng, 12, 9)
    reg = 0.1
    r1 = ottools.sparsity_constrained_ot(a, b, cost, reg, 12, formulation=formulation,
                                         tol=1e-7)
    r2 = ottools.quadratic_ot(a, b, cost, reg, formulation=formulation, tol=1e-7)
    assert r1.success and r2.success
    np.testing.assert_allclose(r1.plan.toarray(), r2.plan.toarray(), atol=1e-7)
    G, pot_value, _ = _pot_solve(ot, a, b, cost, reg, None, formulation)
    np.testing.assert_allclose(r2.plan.toarray(), G, atol=1e-3 * G.max())
    assert r2.dual_value >= pot_value - 1e-9 * abs(pot_value)
    # quadratic OT is convex: no duality gap at the optimum
    np.testing.assert_allclose(r2.fun, r2.dual_value, rtol=1e-7)


def test_formulations_agree_where_tight(rng):
    """k >= n: the relaxation is tight, dual and semi-dual give the same plan and value."""
    a, b, cost = random_problem(rng, 15, 11)
    rd = ottools.quadratic_ot(a, b, cost, 0.2, formulation="dual")
    rs = ottools.quadratic_ot(a, b, cost, 0.2, formulation="semi-dual")
    assert rd.success and rs.success and rd.err <= 1e-9 and rs.err <= 1e-9
    np.testing.assert_allclose(rd.plan.toarray(), rs.plan.toarray(), atol=1e-9)
    np.testing.assert_allclose(rd.dual_value, rs.dual_value, rtol=1e-12)
    # the semi-dual's g (minus its column thresholds) matches the dual's g
    np.testing.assert_allclose(rd.g, rs.g, atol=1e-8)


@pytest.mark.parametrize("formulation", FORMS)
def test_k1_small_reg_is_assignment(rng, formulation):
    n = 12
    x, y = rng.random((n, 2)), rng.random((n, 2))
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    cost /= cost.max()
    rows, cols = linear_sum_assignment(cost)
    res = ottools.sparsity_constrained_ot(None, None, cost, 1e-3, 1, formulation=formulation)
    assert res.success
    P = res.plan.toarray()
    assert (np.diff(res.plan.indptr) == 1).all()
    np.testing.assert_array_equal(P.argmax(0)[cols], rows)
    np.testing.assert_allclose(P[rows, cols], 1 / n, rtol=1e-5)


# --- invariants -------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 4])
def test_semi_dual_columns_exact_and_at_most_k(rng, dtype, k):
    a, b, cost = random_problem(rng, 15, 20, dtype=dtype)
    res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, k, tol=1e-5)
    _assert_done(res, 1e-5)
    P = res.plan
    assert isinstance(P, scipy.sparse.csc_array)
    assert P.dtype == dtype and res.f.dtype == dtype and res.g.dtype == dtype
    assert (np.diff(P.indptr) <= k).all()
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(P.sum(0), b, rtol=rtol)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    np.testing.assert_allclose(res.err, _marginal_error(P.toarray(), a64, b64), rtol=1e-9,
                               atol=1e-15)
    # fun is the primal objective of the returned plan
    Pd = P.toarray().astype(np.float64)
    np.testing.assert_allclose(res.fun, (Pd * cost).sum() + 0.05 * (Pd ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(res.cost, (Pd * cost).sum(), rtol=1e-6)


def test_dual_at_most_k_and_both_marginals(rng):
    a, b, cost = random_problem(rng, 25, 18)
    res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, 2, formulation="dual", tol=1e-7)
    _assert_done(res, 1e-7)
    P = res.plan.toarray()
    assert ((P > 0).sum(0) <= 2).all()
    np.testing.assert_allclose(res.err, _marginal_error(P, a, b), rtol=1e-10)
    # delta_k <= delta_n pointwise, so the k-sparse dual is at least the quadratic one
    full = ottools.quadratic_ot(a, b, cost, 0.1, formulation="dual")
    assert full.success and res.dual_value >= full.dual_value - 1e-12
    _assert_plan_formula(P, res.f, res.g, cost, 0.1, 2)


@pytest.mark.parametrize("formulation", FORMS)
def test_zero_weights_and_rectangular(rng, formulation):
    a, b, cost = random_problem(rng, 14, 9, zeros=3)
    res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, 3, formulation=formulation,
                                          tol=1e-8)
    _assert_done(res, 1e-8)
    assert res.plan.shape == (14, 9) and res.f.shape == (14,) and res.g.shape == (9,)
    P = res.plan.toarray()
    assert (P[a == 0] == 0).all() and (P[:, b == 0] == 0).all()
    ra, rb = a > 0, b > 0
    sub = ottools.sparsity_constrained_ot(a[ra], b[rb], cost[np.ix_(ra, rb)], 0.1, 3,
                                          formulation=formulation, tol=1e-8)
    np.testing.assert_allclose(P[np.ix_(ra, rb)], sub.plan.toarray(), atol=1e-12)
    np.testing.assert_allclose(res.dual_value, sub.dual_value, rtol=1e-12)
    # zero-weight entries keep their rows/columns empty: f_i + g_j - c_ij <= 0
    X = res.f[:, None] + res.g[None, :] - cost
    assert (X[~ra] <= 1e-12).all() and (X[:, ~rb] <= 1e-12).all()


@pytest.mark.parametrize("formulation", FORMS)
def test_plan_formula_where_both_weights_are_zero(formulation):
    """a = b = [.5, .5, 0], C = 1 - I, reg 0.5: the documented formula
    ``[f_i + g_j - C_ij]_+ / reg`` (top max_nz per column) gives the plan everywhere; it
    gave 3.5 at (2, 2), where the plan is 0."""
    a = b = np.array([0.5, 0.5, 0.0])
    cost = 1.0 - np.eye(3)
    for res in (ottools.quadratic_ot(a, b, cost, 0.5, formulation=formulation),
                ottools.sparsity_constrained_ot(a, b, cost, 0.5, 2, formulation=formulation)):
        assert res.success
        formula = ref.sparse_dual_plan(res.f, res.g, cost, 0.5, 2)
        np.testing.assert_allclose(res.plan.toarray(), formula, atol=1e-12)
        np.testing.assert_allclose(res.plan.toarray(), np.diag([0.5, 0.5, 0.0]), atol=1e-12)


def test_float32_stays_float32(rng):
    a, b, cost = random_problem(rng, 10, 8, dtype=np.float32)
    for form in FORMS:
        res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, 2, formulation=form, tol=1e-5)
        _assert_done(res, 1e-5)
        assert res.plan.dtype == np.float32 and res.f.dtype == np.float32
        assert res.g.dtype == np.float32
    ints = ottools.quadratic_ot([1, 1], [1, 1], [[0, 1], [1, 0]], 1.0)
    assert ints.success and ints.plan.dtype == np.float64


@pytest.mark.parametrize("formulation", FORMS)
def test_float32_reaches_its_floor(formulation):
    """float32 problems are solved in float64 and reach err <= 1e-6 (the rounding of the
    float32 plan is about 1e-7); they stopped at status 4 with err 6.5e-4 to 4.9e-2."""
    for seed in range(5):
        a, b, cost = random_problem(np.random.default_rng(seed), 30, 25, dtype=np.float32)
        res = ottools.quadratic_ot(a, b, cost, 0.1, formulation=formulation, tol=1e-6)
        assert res.success and res.err <= 1e-6 and res.plan.dtype == np.float32
        r64 = ottools.quadratic_ot(a.astype(np.float64), b.astype(np.float64),
                                   cost.astype(np.float64), 0.1, formulation=formulation)
        np.testing.assert_allclose(res.plan.toarray(), r64.plan.toarray(),
                                   atol=1e-6 * r64.plan.max())


@pytest.mark.parametrize("formulation", FORMS)
def test_sparsity_constrained_float32_reaches_its_floor(formulation):
    """The float32 item for sparsity_constrained_ot itself, with a binding constraint
    (max_nz = 4 columns full): where the float64 solve converges, the float32 one reaches
    tol = 1e-7 (the float32 plan's rounding floor) and its plan is the float64 one to
    float32's eps times the largest entry; it stopped at status 4, 26-200x above."""
    for seed in (3, 4, 6):
        a, b, cost = random_problem(np.random.default_rng(seed), 30, 25, dtype=np.float32)
        res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, 4, formulation=formulation,
                                              tol=1e-7)
        r64 = ottools.sparsity_constrained_ot(a.astype(np.float64), b.astype(np.float64),
                                              cost.astype(np.float64), 0.1, 4,
                                              formulation=formulation)
        assert r64.success and np.diff(r64.plan.tocsc().indptr).max() == 4
        assert res.success and res.err <= 1e-7, res.message
        assert res.plan.dtype == np.float32
        np.testing.assert_allclose(res.plan.toarray(), r64.plan.toarray(), rtol=0,
                                   atol=np.finfo(np.float32).eps * r64.plan.max())


@pytest.mark.parametrize("formulation", FORMS)
def test_float64_default_tol_converges(formulation):
    """4 of 10 float64 problems ended at status 4 with err 1.1e-6 to 1.9e-6 against the
    default tol; now every one converges at the default (1e-9)."""
    for seed in range(10):
        a, b, cost = random_problem(np.random.default_rng(seed), 30, 25)
        res = ottools.quadratic_ot(a, b, cost, 0.1, formulation=formulation)
        assert res.status == 0 and res.err <= 1e-9, (seed, res.message)


def test_tighter_tol_is_never_worse_dual():
    """The reported case: formulation="dual", max_nz = 2, 100 Gaussian points, unit reg,
    tol 1e-8 against 1e-10 (row error 5.3e-4 against 2.1e-3). The tighter run continues
    the looser one (same dual values along the way), ends at a dual value at least as
    high, and its plan's row error is no worse (to rounding)."""
    eps = np.finfo(np.float64).eps
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(100, 2)), rng.normal(size=(100, 2))
        cost = ottools.cost_matrix(x, y)
        a = np.full(100, 0.01)
        runs = []
        for tol in (1e-8, 1e-10):
            seen = []
            res = ottools.sparsity_constrained_ot(
                a, a, cost, 1.0, 2, formulation="dual", tol=tol,
                callback=lambda r, seen=seen: seen.append(r.dual_value))
            row_err = float(np.abs(res.plan.sum(axis=1) - a).sum())
            runs.append((res, seen, row_err))
        (loose, s1, e1), (tight, s2, e2) = runs
        assert s2[:len(s1)] == s1
        assert tight.dual_value >= loose.dual_value
        assert e2 <= e1 + 64 * eps, (seed, e1, e2)


def test_tighter_tol_is_never_worse():
    """A tighter tol gave a worse plan (dual, max_nz = 2, 100 points, unit reg: row error
    5.3e-4 at tol 1e-8, 2.1e-3 at 1e-10): tol steered the restarts. Now tol only stops
    the iterations: the tighter run continues the looser one (the same iterates) and
    returns a dual value at least as high. Here tol 1e-5 stops at a certified maximum or
    a stall (which one depends on the iterates' rounding); 1e-9 goes on until the stall
    budget ends or the certificate holds within it."""
    a, b, cost = random_problem(np.random.default_rng(0), 15, 20)
    runs = []
    for tol in (1e-5, 1e-9):
        seen = []
        res = ottools.sparsity_constrained_ot(a, b, cost, 1.0, 4, tol=tol,
                                              callback=lambda r: seen.append(r.dual_value))
        runs.append((res, seen))
    (loose, s1), (tight, s2) = runs
    assert loose.status in (4, 5) and tight.status in (4, 5) and tight.nit >= loose.nit
    assert s2[:len(s1)] == s1
    assert tight.dual_value >= loose.dual_value


@pytest.mark.parametrize("big", [2.0**997, 2.0**1023])  # about 1.3e300 and 9e307
@pytest.mark.parametrize("formulation", FORMS)
def test_huge_costs_are_bounded(big, formulation):
    """Costs near 1e300 ran past 60 s on 5 x 5 problems; now the problem is rescaled by a
    power of two (exact: the iterates are those of the unit-scale problem) and solved, or
    refused with an error naming `reg` and `cost` when reg / max|cost| leaves float64.
    Each call runs under a watchdog: a regression fails after 60 s instead of hanging."""
    a, b, cost = random_problem(np.random.default_rng(0), 5, 5)
    for fn in (lambda c, r: ottools.sparsity_constrained_ot(a, b, c, r, 2, tol=1e-8,
                                                            formulation=formulation),
               lambda c, r: ottools.quadratic_ot(a, b, c, r, formulation=formulation)):
        res = returns_within(lambda: fn(cost * big, 0.1 * big))
        unit = fn(cost, 0.1)
        assert res.status == unit.status and res.nit == unit.nit
        np.testing.assert_array_equal(res.plan.toarray(), unit.plan.toarray())
        np.testing.assert_array_equal(res.f / big, unit.f)
        assert res.dual_value / big == unit.dual_value
    for fn in (lambda c: ottools.quadratic_ot(a, b, c, 0.1, formulation=formulation),
               lambda c: ottools.sparsity_constrained_ot(a, b, c, 0.1, 2,
                                                         formulation=formulation)):
        with pytest.raises(ValueError, match="`reg`=0.1 is out of scale with `cost`"):
            returns_within(lambda: fn(np.where(cost > 0.5, 1e308, -1e308)))


def test_nonfinite_start_is_a_status_not_a_private_exception():
    """A warm start whose objective overflows gave a private _NonFinite exception: now
    status 2 with a message naming `init`. The semi-dual is invariant under f + c, so
    there a constant 1e300 is re-centred away and the solve goes on."""
    a, b, cost = random_problem(np.random.default_rng(0), 5, 5)
    huge = (np.full(5, 1e300), np.full(5, 1e300))
    for fn in (ottools.quadratic_ot,
               lambda *args, **kw: ottools.sparsity_constrained_ot(*args, 2, **kw)):
        res = fn(a, b, cost, 0.1, formulation="dual", init=huge)
        assert res.status == 2 and not res.success and "`init`" in res.message
        res = fn(a, b, cost, 0.1, formulation="semi-dual", init=huge)
        plain = fn(a, b, cost, 0.1, formulation="semi-dual")
        assert res.status == plain.status and res.dual_value == plain.dual_value


# --- status, stall budget, callback, warm start, output --------------------------------

def test_maxiter_status(rng):
    a, b, cost = random_problem(rng, 30, 30)
    res = ottools.sparsity_constrained_ot(a, b, cost, 0.01, 2, maxiter=3, tol=1e-12)
    assert not res.success and res.status == 1 and res.nit == 3
    assert "Maximum number of iterations" in res.message
    assert np.isfinite(res.dual_value) and np.isfinite(res.fun)


@pytest.mark.parametrize("method", ["bfgs", "lbfgs", "newton", "lp"])
@pytest.mark.parametrize("formulation", FORMS)
def test_maxiter_beyond_int64_runs_as_default(rng, method, formulation):
    """Any int >= 0 is a valid maxiter, as in the other solvers: 2**64 and 10**400 (past
    the kernel's int64 counter and float64) and 2**31 (past HiGHS's int32 limit) give
    the result of the default 10000 on a problem that converges well before it."""
    a, b, cost = random_problem(rng, 5, 6)
    k = 1 if method == "lp" else 2
    base = ottools.sparsity_constrained_ot(a, b, cost, 0.1, k, method=method,
                                           formulation=formulation)
    for maxiter in (2**31, 2**64, 10**400):
        res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, k, method=method,
                                              formulation=formulation, maxiter=maxiter)
        assert res.status == base.status and res.nit == base.nit
        assert res.dual_value == base.dual_value
    res = ottools.quadratic_ot(a, b, cost, 0.1, maxiter=2**64)
    assert res.dual_value == ottools.quadratic_ot(a, b, cost, 0.1).dual_value


def test_stall_budget_and_stage_counts(rng):
    """A stalled solve stops within its window after the last improvement (1e-12
    relative), returns the best point and reports the stages it went through."""
    a, b, cost = random_problem(rng, 40, 40)
    res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, 2, options={"stall_window": 30})
    assert res.status in (4, 5)
    assert res.nit == res.nit_bfgs + res.n_kink_steps + res.n_newton + res.n_kkt
    assert res.n_newton == 0 and res.nfev >= res.nit
    assert 0 <= res.time_to_best <= res.time
    if res.status == 4:
        assert "1e-12" in res.message or "supergradient" in res.message


def test_callback_and_stop(rng):
    a, b, cost = random_problem(rng, 20, 20)
    seen = []

    def cb(intermediate_result):
        assert isinstance(intermediate_result, ottools.OTResult)
        seen.append((intermediate_result.nit, intermediate_result.err,
                     intermediate_result.dual_value))
        if intermediate_result.nit == 4:
            raise StopIteration

    res = ottools.sparsity_constrained_ot(a, b, cost, 0.05, 2, formulation="dual",
                                          tol=1e-12, callback=cb)
    assert not res.success and res.status == 3 and res.nit == 4
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    np.testing.assert_allclose(res.dual_value, seen[-1][2], rtol=1e-12)
    assert "callback" in res.message


@pytest.mark.parametrize("formulation", FORMS)
def test_warm_start(rng, formulation):
    a, b, cost = random_problem(rng, 20, 16)
    res = ottools.quadratic_ot(a, b, cost, 0.1, formulation=formulation)
    assert res.success
    again = ottools.quadratic_ot(a, b, cost, 0.1, formulation=formulation,
                                 init=(res.f, res.g))
    assert again.success and again.nit == 0
    np.testing.assert_allclose(again.plan.toarray(), res.plan.toarray(), atol=1e-12)
    # a gauge shift of 1e10 is undone by the re-centring
    shifted = ottools.quadratic_ot(a, b, cost, 0.1, formulation=formulation,
                                   init=(res.f + 1e10, res.g - 1e10))
    assert shifted.success and shifted.nit <= 3


def test_no_stdout(rng, capsys):
    a, b, cost = random_problem(rng, 8, 8)
    ottools.sparsity_constrained_ot(a, b, cost, 0.1, 2)
    ottools.sparsity_constrained_ot(a, b, cost, 0.1, 2, formulation="dual")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


# --- process history and threads --------------------------------------------------------

_CHILD = """
import json, sys
import numpy as np
import ottools
import ottools._kernels._sparse as K
K.PARALLEL_MIN_ENTRIES = 1 << 18  # the parallel column blocks at a test's size
rng = np.random.default_rng(3)
x, y = rng.random((560, 2)), rng.random((520, 2))
cost = ((x[:, None] - y[None]) ** 2).sum(-1)
res = ottools.sparsity_constrained_ot(None, None, cost / cost.max(), 0.05, 2, maxiter=40)
print(json.dumps([res.status, res.nit, res.dual_value.hex(), res.f.tolist(),
                  res.plan.data.tolist()]))
"""


def test_result_does_not_depend_on_the_process():
    """Two fresh processes with different Numba thread counts (the 560 x 520 problem runs
    the parallel column blocks, their threshold lowered) give bit-identical results; the
    block count used to follow the thread count, and with it the order of the float
    sums."""
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True,
                              text=True, env=env, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout))
    assert outs[0] == outs[1]


def test_threads_and_history_do_not_change_results(monkeypatch):
    """Concurrent solves from threads, and solves after other solves and a change of the
    thread count, equal the serial results exactly (BLAS thread limits and thread-count
    dependent block sums were shared state)."""
    import numba

    # 520 x 510 entries: past the (lowered) size where the columns run in parallel blocks
    monkeypatch.setattr(_k, "PARALLEL_MIN_ENTRIES", 1 << 18)
    probs = [random_problem(np.random.default_rng(s), 520, 510) for s in range(2)]

    def solve(i):
        a, b, cost = probs[i % 2]
        res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, 2 + i % 2,
                                              formulation=FORMS[i // 2], maxiter=15)
        return res.dual_value, res.f.copy(), res.plan.data.copy()

    serial = [solve(i) for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(solve, range(4)))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        ottools.quadratic_ot(*random_problem(np.random.default_rng(9), 30, 20), 0.1)
        later = [solve(i) for i in range(4)]
    finally:
        numba.set_num_threads(before)
    for s, t, l in zip(serial, threaded, later):
        for u, v, w in zip(s, t, l):
            np.testing.assert_array_equal(u, v)
            np.testing.assert_array_equal(u, w)


def test_transposed_cost_memory_error_says_how_much(rng, refuse_allocation):
    a, b, cost = random_problem(rng, 30, 20, dtype=np.float32)
    refused = refuse_allocation((20, 30), np.float64)
    for f in (ottools.sparsity_constrained_ot, ottools.quadratic_ot):
        args = (a, b, cost, 0.1, 3) if f is ottools.sparsity_constrained_ot else (a, b, cost,
                                                                                  0.1)
        with pytest.raises(MemoryError, match=r"^The transposed float64 cost of sparse OT "
                                              r"needs 4.47e-06 GiB"):
            f(*args)
    assert len(refused) == 2


# --- bad input --------------------------------------------------------------------------

def test_bad_inputs(rng):
    a, b, cost = random_problem(rng, 5, 4)
    f = ottools.sparsity_constrained_ot
    with pytest.raises(ValueError, match="`max_nz` must be >= 1"):
        f(a, b, cost, 0.1, 0)
    with pytest.raises(TypeError, match="`max_nz` must be an integer"):
        f(a, b, cost, 0.1, 2.0)
    with pytest.raises(TypeError, match="`max_nz` must be an integer"):
        f(a, b, cost, 0.1, None)
    with pytest.raises(TypeError, match="`max_nz` must be an integer; got bool"):
        f(a, b, cost, 0.1, True)
    assert f(a, b, cost, 0.1, np.int64(2)).max_nz == 2
    with pytest.raises(ValueError, match="`reg` must be a positive"):
        f(a, b, cost, 0.0, 2)
    with pytest.raises(ValueError, match="`max_nz`=1 is too small: 4 target"):
        f(a, b, cost, 0.1, 1)  # 5 sources, 4 targets with one non-zero each
    with pytest.raises(ValueError, match="`max_nz`=1 is too small: 1 target"):
        f([0.5, 0.0, 0.5], [0.0, 1.0, 0.0], np.ones((3, 3)), 0.1, 1)
    with pytest.raises(ValueError, match="`reg` must be a positive"):
        ottools.quadratic_ot(a, b, cost, -1.0)
    with pytest.raises(ValueError, match="Unknown formulation 'primal'"):
        f(a, b, cost, 0.1, 2, formulation="primal")
    with pytest.raises(ValueError, match="same total mass"):
        f(a, 2 * b, cost, 0.1, 2)
    with pytest.raises(ValueError, match="`b` must have length 4: `cost` has shape"):
        f(a, b[:3], cost, 0.1, 2)
    with pytest.raises(ValueError, match="`cost` must be finite"):
        f(a, b, np.where(cost > 0.5, np.nan, cost), 0.1, 2)
    with pytest.raises(ValueError, match="`tol` must be a non-negative"):
        f(a, b, cost, 0.1, 2, tol=-1)
    with pytest.raises(TypeError, match="`callback` must be callable"):
        f(a, b, cost, 0.1, 2, callback=3)
    with pytest.raises(TypeError, match="`init` must be a pair"):
        f(a, b, cost, 0.1, 2, init=np.zeros(5))
    with pytest.raises(ValueError, match="`init` potentials must have lengths \\(5, 4\\)"):
        f(a, b, cost, 0.1, 2, formulation="dual", init=(np.zeros(5), np.zeros(3)))
    with pytest.raises(TypeError, match="`init\\[1\\]` \\(g\\) is required"):
        f(a, b, cost, 0.1, 2, formulation="dual", init=(np.zeros(5), None))


def test_lbfgs_memory_grows_to_maxcor(rng):
    """The L-BFGS ring buffer, allocated as pairs arrive (past its first slots, through
    a doubling, to a wrap at ``mem``), gives the two-loop direction over the newest
    ``min(count, mem)`` pairs since the last reset, oldest first."""
    from ottools._sparse_ot._quasi_newton import LBFGS

    N = 7
    for mem in (3, LBFGS._FIRST_SLOTS + 5, 10**30):
        lb, pairs = LBFGS(N, mem=mem), []
        for it in range(2 * LBFGS._FIRST_SLOTS + 30):
            if it == 40:
                lb.reset()
                pairs = []
            s = rng.standard_normal(N)
            y = s * 3 + rng.standard_normal(N) * 0.1  # s . y > 0
            assert lb.update(s, y)
            pairs = (pairs + [(s, y)])[-mem:]
            assert lb.count == len(pairs)
            assert lb.rho.size <= min(mem, max(LBFGS._FIRST_SLOTS, 2 * (it + 1)))
            g = rng.standard_normal(N)
            S = np.array([p[0] for p in pairs])
            Y = np.array([p[1] for p in pairs])
            expect = np.empty(N)
            rho = np.array([1.0 / _k.dot(p[0], p[1]) for p in pairs])
            _k.lbfgs_direction(g, S, Y, rho,
                               np.arange(len(pairs)), len(pairs), expect)
            np.testing.assert_array_equal(lb.direction(g)[0], expect)


@pytest.mark.parametrize("maxcor", [2**40, 2**63, 10**400],
                         ids=["2**40", "2**63", "1e400"])
def test_lbfgs_huge_maxcor_runs(rng, maxcor):
    """A maxcor beyond what could be allocated runs as one past the iterations done
    (no pair is ever dropped in either), the memory grown past its first 64 slots."""
    a, b, cost = random_problem(rng, 40, 40)
    f = ottools.sparsity_constrained_ot
    ref_ = f(a, b, cost, 0.1, 2, method="lbfgs", maxiter=200, options={"maxcor": 201})
    assert ref_.nit_bfgs > 64
    res = f(a, b, cost, 0.1, 2, method="lbfgs", maxiter=200, options={"maxcor": maxcor})
    assert res.nit == ref_.nit and res.status == ref_.status
    assert res.dual_value == ref_.dual_value
    np.testing.assert_array_equal(res.f, ref_.f)


def test_bad_method_and_options(rng):
    a, b, cost = random_problem(rng, 6, 6)
    f = ottools.sparsity_constrained_ot
    with pytest.raises(ValueError, match="Unknown method 'sgd'"):
        f(a, b, cost, 0.1, 2, method="sgd")
    with pytest.raises(TypeError, match="Unknown option\\(s\\) 'maxcor' for method='bfgs'"):
        f(a, b, cost, 0.1, 2, method="bfgs", options={"maxcor": 5})
    with pytest.raises(TypeError, match="`options\\['maxcor'\\]` must be an integer"):
        f(a, b, cost, 0.1, 2, method="lbfgs", options={"maxcor": 2.5})
    with pytest.raises(ValueError, match="`options\\['stall_window'\\]` must be >= 1"):
        f(a, b, cost, 0.1, 2, options={"stall_window": 0})
    with pytest.raises(ValueError, match="method='lp' solves max_nz=1 only"):
        f(a, b, cost, 0.1, 2, method="lp")
    # HiGHS has no callback and no warm start: given to the LP they raise, as in linprog
    with pytest.raises(ValueError, match="`callback` is not supported by method='lp'"):
        f(a, b, cost, 0.1, 1, callback=lambda r: None)
    with pytest.raises(ValueError, match="`init` is not supported by method='lp'"):
        f(a, b, cost, 0.1, 1, init=(np.zeros(6), np.zeros(6)))
    with pytest.raises(ValueError, match="method='newton' needs smooth pieces"):
        f(a, b, cost, 0.1, 1, method="newton")
    # the methods that honour them take them
    res = f(a, b, cost, 0.1, 1, method="lbfgs", callback=lambda r: None,
            options={"maxcor": 3})
    assert res.method == "lbfgs"
    assert ottools.quadratic_ot(a, b, cost, 0.1, method="bfgs").method == "bfgs"


def test_kink_certificate_has_a_work_budget(monkeypatch):
    """The exact least-norm mix of a kink step (a dense NNLS) runs only within a work
    budget set by the evaluations so far (counts, not a clock: a 0.55 s NNLS once took
    most of a stalled n = 200 solve). With no budget, nothing is certified: the stall is
    reported as such, never as a certificate. (``method="bfgs"``: without the
    active-set finish, which certifies by its own solve.)"""
    from ottools._sparse_ot import _kinks

    a, b, cost = random_problem(np.random.default_rng(0), 15, 20)
    res = ottools.sparsity_constrained_ot(a, b, cost, 1.0, 4, tol=1e-5, method="bfgs")
    assert res.status == 5
    monkeypatch.setattr(_kinks, "_NNLS_FLOOR", 0.0)
    monkeypatch.setattr(_kinks, "_NNLS_WORK", 0.0)
    res = ottools.sparsity_constrained_ot(a, b, cost, 1.0, 4, tol=1e-5, method="bfgs")
    assert res.status in (1, 4) and not res.success and res.err > 1e-5
    assert "not certified" in res.message or res.status == 1


# --- the active-set finish (max_nz < n) -------------------------------------------------

def _uniform_cloud(n, seed):
    """Uniform weights on random points: columns tie at the maximum (a relaxation that is
    not tight, the case where quasi-Newton iterations crawl)."""
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, 2)), rng.random((n, 2))
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    cost /= cost.max()  # max 1 and mass 1: the scaled problem is the problem
    a = np.full(n, 1.0 / n)
    return a, a.copy(), cost


@pytest.mark.parametrize("formulation", FORMS)
@pytest.mark.parametrize("reg,k", [(0.1, 2), (1.0, 3)])
def test_active_set_finish_certifies_the_maximum(formulation, reg, k):
    """The finish certifies the maximum by an exact solve of the KKT system. Checked
    independently: the least-norm mix of the kink module (an NNLS over the swaps) meets
    the marginals at the returned potentials, BFGS alone reaches no higher value, and
    POT's value is lower (it stops early)."""
    from ottools._sparse_ot._kinks import CERTIFY_EPS, supergradient

    a, b, cost = _uniform_cloud(80, 3)
    res = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation=formulation)
    _assert_done(res, DEFAULT_TOL[np.dtype(np.float64)])
    assert res.status in (0, 5) and res.kkt_solves > 0 and res.time_kkt > 0
    assert res.nit == res.nit_bfgs + res.n_kink_steps + res.n_newton + res.n_kkt
    semi = formulation == "semi-dual"
    obj = _objective(a, b, cost, reg, k, semi)
    x = res.f if semi else np.concatenate([res.f, res.g])
    _, measure = supergradient(obj, x, CERTIFY_EPS * reg * b.max())
    assert measure <= 1e-8
    slow = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation=formulation,
                                           method="bfgs")
    assert slow.kkt_solves == 0
    assert res.dual_value >= slow.dual_value - 1e-12 * abs(slow.dual_value)
    ot = pytest.importorskip("ot")
    pot_value = _pot_solve(ot, a, b, cost, reg, k, formulation)[1]
    assert res.dual_value >= pot_value - 1e-9 * abs(pot_value)


@pytest.mark.parametrize("formulation", FORMS)
def test_callback_sees_the_certified_point(formulation):
    """When the active-set finish certifies the maximum at its own point, the callback
    is called with that point too: its last call has the returned dual value and
    potentials (the iterations before the finish come first, in order)."""
    a, b, cost = _uniform_cloud(80, 3)
    seen = []
    res = ottools.sparsity_constrained_ot(a, b, cost, 1.0, 2, formulation=formulation,
                                          callback=seen.append)
    assert res.status == 5 and res.kkt_solves > 0
    assert [r.nit for r in seen[:-1]] == list(range(1, res.nit + 1))
    assert seen[-1].nit == res.nit
    assert seen[-1].dual_value == res.dual_value
    np.testing.assert_array_equal(seen[-1].f, res.f)
    assert seen[-1].dual_value > seen[-2].dual_value


@settings(deadline=None, max_examples=25)
@given(n=st.integers(3, 40), m=st.integers(3, 40), k=st.integers(2, 4),
       zeros=st.integers(0, 2), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.float64, np.float32]), formulation=st.sampled_from(FORMS))
def test_active_set_finish_shapes_zero_weights_dtypes(n, m, k, zeros, seed, dtype,
                                                      formulation):
    """Rectangular problems, zero weights (the compressed problem) and float32: the
    default (with the finish) is honest about its status and reaches at least the value
    of BFGS alone."""
    a, b, cost = random_problem(np.random.default_rng(seed), n, m, zeros=zeros, dtype=dtype)
    assume(k * np.count_nonzero(b) >= np.count_nonzero(a))
    res = ottools.sparsity_constrained_ot(a, b, cost, 0.3, k, formulation=formulation)
    slow = ottools.sparsity_constrained_ot(a, b, cost, 0.3, k, formulation=formulation,
                                           method="bfgs")
    assert res.f.dtype == dtype and res.plan.dtype == dtype
    _assert_done(res, DEFAULT_TOL[np.dtype(dtype)])
    rtol = 1e-9 if dtype == np.float64 else 1e-5
    assert res.dual_value >= slow.dual_value - rtol * abs(slow.dual_value)


@settings(deadline=None, max_examples=40)
@given(n=st.integers(3, 30), m=st.integers(3, 30), k=st.integers(2, 4),
       reg=st.sampled_from([0.05, 0.3, 1.0]), noise=st.sampled_from([0.0, 1e-6, 1e-3, 0.1]),
       delta=st.sampled_from([1e-6, 1e-3, 1e-1]), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.float64, np.float32]), formulation=st.sampled_from(FORMS))
def test_active_set_kernels_match_their_twins(n, m, k, reg, noise, delta, seed, dtype,
                                              formulation):
    """The finish's compiled pieces against naive twins, on the structures it meets:
    read from points near and far from the maximum (noise relative to ``reg``), with
    narrow and wide tie tolerances, float64 and float32 costs. The KKT system equals the COO assembly (duplicates
    summed by SciPy), in canonical CSC form; the clean columns, the corrected structure
    (rows in order, slot counts, members) and the count of changed columns equal the
    column-by-column Python corrections."""
    from ottools._sparse_ot import _active_set as A

    rng = np.random.default_rng(seed)
    a, b, cost = random_problem(rng, n, m, dtype=dtype)
    assume(k * m >= n and k < n)
    semi = formulation == "semi-dual"
    res = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation=formulation)
    obj = _objective(a, b, cost, reg, k, semi)
    x = res.f if semi else np.concatenate([res.f, res.g])
    x = x + noise * reg * rng.standard_normal(x.size)
    sp = obj.sp
    st_, (f0, h0) = A.detect(obj, x, delta * reg * float(sp.bc.max()))
    indptr, indices, data, rhs = A._kkt.kkt_system(
        sp.ac, sp.bc, f0, h0, *A._costs(sp.cost_t, st_), st_.pj, st_.pi, st_.tj,
        st_.tr.astype(np.float64), st_.gt, st_.gi, reg, A._MU / reg, A._MU * reg)
    N = rhs.size
    ours = scipy.sparse.csc_array((data, indices, indptr), shape=(N, N))
    twin, twin_rhs = ref.kkt_matrix(obj.nr, obj.mc, sp.ac, sp.bc, f0, h0, sp.cost_t, st_,
                                    reg, A._MU / reg, A._MU * reg)
    assert ours.has_canonical_format
    np.testing.assert_allclose(ours.toarray(), twin.toarray(), rtol=1e-14, atol=0)
    np.testing.assert_allclose(rhs, twin_rhs, rtol=1e-14, atol=1e-300)
    sol = A.solve(obj, st_, f0, h0)
    assume(sol is not None and all(np.all(np.isfinite(z)) for z in sol))
    kk = min(obj.nr, k + A._POOL)
    E, R = A._tops(obj, sol[0], sol[1], kk)
    slack = A._TIE_TOL * reg * float(sp.bc.max())
    clean = A._clean(obj, st_, sol, E, R, slack)
    new, changes = A.correct(obj, st_, sol)
    t_clean, columns, t_changes = ref.correct_structure(k, reg, sp.cost_t, st_, sol, E, R,
                                                        slack, A._TIE_TOL)
    np.testing.assert_array_equal(clean, t_clean)
    assert changes == t_changes
    assert np.all(np.diff(new.pj) >= 0) and np.all(np.diff(new.tj) > 0)
    assert np.all(np.diff(new.gt) >= 0)
    for j in range(obj.mc):
        rows, group = columns[j]
        assert new.pi[new.pj == j].tolist() == rows
        t = np.flatnonzero(new.tj == j)
        if group is None:
            assert t.size == 0
        else:
            assert t.size == 1 and new.tr[t[0]] == group[0]
            assert new.gi[new.gt == t[0]].tolist() == group[1]


def test_active_set_attempt_from_far_gives_up(monkeypatch):
    """From the starting point the structure guessed is wrong: the attempt stops without
    a certificate, and a point it returns never has a lower value. Its first correction
    changes every column (a cascade): no system is solved after it, since the next one
    would tie nearly every column (the costly fill-in of the sparse LU)."""
    from ottools._sparse_ot import _active_set

    changes = []
    correct = _active_set.correct

    def spy(obj, st, sol, *tops):
        out = correct(obj, st, sol, *tops)
        changes.append(out[1])
        return out

    monkeypatch.setattr(_active_set, "correct", spy)
    a, b, cost = _uniform_cloud(60, 1)
    obj = _objective(a, b, cost, 0.1, 2, True)
    x0 = np.zeros(60)
    v0 = obj.value_grad(x0)[0]
    x, v, g, cert, _, solves = _active_set.finish(obj, x0, v0, 1e-9, 1e-4)
    assert not cert and 1 <= solves <= _active_set.MAX_SOLVES
    assert x is None or v > v0
    assert changes[0] > 60 // _active_set._CASCADE and solves == 1


@pytest.mark.parametrize("reg,k", [(0.1, 2), (1.0, 2), (0.3, 3)])
def test_dual_through_the_semi_dual(reg, k):
    """``formulation="dual"`` (max_nz < n, the default method) goes through the
    semi-dual, whose maximum bounds the dual's from above: the dual's value at the
    result equals the semi-dual's maximum, the result's ``g`` is the dual's potential
    there (checked by re-evaluating the dual), and the dual's own ascent (the same
    method with ``init``, which skips the semi-dual) reaches no higher value."""
    a, b, cost = _uniform_cloud(70, 5)
    semi = ottools.sparsity_constrained_ot(a, b, cost, reg, k)
    dual = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation="dual")
    assert semi.status in (0, 5) and dual.status in (0, 5)
    np.testing.assert_allclose(dual.dual_value, semi.dual_value, rtol=1e-12)
    obj = _objective(a, b, cost, reg, k, False)
    v = obj.value_grad(np.concatenate([dual.f, dual.g]))[0]
    np.testing.assert_allclose(v, dual.dual_value, rtol=1e-12)
    assert dual.nfev > semi.nfev - 1  # the semi-dual's evaluations are counted
    own = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation="dual",
                                          init=(np.zeros(70), np.zeros(70)))
    assert own.dual_value <= dual.dual_value + 1e-12 * abs(dual.dual_value)


def test_point_cloud_cost_is_its_dense_matrix(rng):
    """A PointCloud as ``cost`` (an AttributeError from deep inside before) solves the
    problem of its dense matrix."""
    x, y = rng.random((7, 2)), rng.random((5, 2))
    geom = ottools.PointCloud(x, y)
    for fn, args in ((ottools.sparsity_constrained_ot, (0.1, 2)),
                     (ottools.quadratic_ot, (0.1,))):
        res, ref = (fn(None, None, c, *args) for c in (geom, geom.dense()))
        assert res.status == ref.status and res.fun == ref.fun
        np.testing.assert_array_equal(res.plan.toarray(), ref.plan.toarray())


@pytest.mark.parametrize("s", [1e-200, 1e200])
def test_fun_at_extreme_masses(rng, s):
    """fun = <P, C> + reg/2 |P|^2 with the square summed at the plan's scale: at masses
    of 1e-200 the quadratic term underflowed (0.15987 against 0.16304), at 1e200 it
    overflowed to inf. With reg = 0.1 / s the problem is that of mass 1 scaled."""
    C = rng.random((12, 9))
    a, b = np.full(12, 1 / 12), np.full(9, 1 / 9)
    for fn, args in ((ottools.sparsity_constrained_ot, (3,)), (ottools.quadratic_ot, ())):
        ref = fn(a, b, C, 0.1, *args)
        res = fn(a * s, b * s, C, 0.1 / s, *args)
        assert res.success and ref.success
        assert res.fun / s == pytest.approx(ref.fun, rel=1e-7)


@pytest.mark.parametrize("n, m", [(50, 1), (20, 20), (50, 40)])
def test_semi_dual_value_without_cancellation(n, m):
    """The semi-dual column term <t, x> - reg/2 |t|^2 summed as sum x (x - tau) / reg
    cancelled to n eps |x|^2 / reg: stalls at reg 1e-4 (err 2e-3 for 50 x 1, where the
    only plan is a) and a dual_value above the optimum. Now tau b_j + reg/2 |t|^2."""
    rng = np.random.default_rng(3)
    a = rng.random(n) + 0.1
    a /= a.sum()
    b = np.ones(1) if m == 1 else rng.random(m) + 0.1
    b /= b.sum()
    C = rng.random((n, m))
    res = ottools.quadratic_ot(a, b, C, 1e-4, formulation="semi-dual")
    assert res.status == 0 and res.err <= 1e-9
    # weak duality, up to the plan's infeasibility (err of mass at costs below 1)
    assert res.dual_value <= res.fun + res.err * C.max() + 1e-15
    if m == 1:  # one feasible plan: T = a, optimum <c, a> + reg/2 |a|^2
        opt = C[:, 0] @ a + 0.5e-4 * a @ a
        assert res.dual_value == pytest.approx(opt, rel=1e-14)
        assert res.dual_value <= opt + 1e-16
    ref = ottools.quadratic_ot(a, b, C, 1e-4, formulation="dual", tol=1e-10)
    assert res.fun == pytest.approx(ref.fun, rel=1e-8)


def test_kink_certificate_when_fewer_than_four_rows_are_left_out():
    """The swaps of the certificate reached only the last nr - k kept entries of a column
    (nr - k < 4): a constant cost, whose maximum f = 0 every swap certifies, and a
    random 3-row problem under bfgs/lbfgs ended at status 4."""
    a = np.array([0.1905416861752492, 0.22698685207931485, 0.297783169415642,
                  0.2846882923297939])
    b = np.array([0.8260539664530655, 0.17394603354693453])
    for form in ("semi-dual", "dual"):
        res = ottools.sparsity_constrained_ot(a, b, np.zeros((4, 2)), 0.1, 3,
                                              formulation=form)
        assert res.status == 5 and res.stationarity < 1e-10
    a = np.array([0.12338828897222498, 0.4620375505511592, 0.41457416047661577, 0.0])
    b = np.array([0.2411161733580392, 0.036831186439003925, 0.3007729243387602,
                  0.26943376871370056, 0.14194191848957402, 0.0, 0.00990402866092226])
    C = np.array([
        [0.9917448929479346, 0.021682473723917628, 0.9909734607433263, 0.29620757236084005,
         0.4608652140308759, 0.545471452311808, 0.2895531860961642],
        [0.22049757029073724, 0.05056919522688941, 0.8234330044314044, 0.9723093710442625,
         0.125557475910951, 0.8598308385500755, 0.7205394471173371],
        [0.7502253411766355, 0.3878054604022535, 0.05757491001785908, 0.6904231236078299,
         0.962126428598185, 0.6587582466894398, 0.2340523135811453],
        [0.5367352640993169, 0.12167514305103067, 0.7178785461495898, 0.6728641938888136,
         0.44679399936959696, 0.008664493702769449, 0.06036607189347276]])
    values = []
    for method in ("auto", "bfgs", "lbfgs"):
        res = ottools.sparsity_constrained_ot(a, b, C, 1.7049831446829542, 2, method=method)
        assert res.status == 5, (method, res.status, res.stationarity)
        values.append(res.dual_value)
    np.testing.assert_allclose(values, values[0], rtol=1e-9)


@pytest.mark.parametrize("reg", [0.01, 0.1, 1.0])
def test_quadratic_ot_on_gaussian_tails(reg):
    """The guide's toy problem: Gaussian histograms whose weights span ~56 orders of
    magnitude. The plan's support split into many components (empty rows, rows joined only
    to tail columns) on which the Hessian is blind; the damped steps were unrelated to the
    distance to the next kink: the semi-dual stopped at maxiter (9701 Newton steps, err
    2e-6), the dual took 313 steps (and at reg 0.01 never left BFGS). Each unbalanced
    component now moves exactly to its next kink first; the dual steps through the
    semi-dual."""
    x = np.arange(100.0)
    a = np.exp(-0.5 * ((x - 20) / 5) ** 2)
    a /= a.sum()
    b = np.exp(-0.5 * ((x - 60) / 10) ** 2)
    b /= b.sum()
    C = (x[:, None] - x[None, :]) ** 2
    C /= C.max()
    semi = ottools.quadratic_ot(a, b, C, reg, formulation="semi-dual")
    dual = ottools.quadratic_ot(a, b, C, reg, formulation="dual")
    for res in (semi, dual):
        assert res.status == 0 and res.err <= 1e-9
        P = res.plan.toarray()
        assert np.abs(P.sum(axis=1) - a).sum() + np.abs(P.sum(axis=0) - b).sum() <= 1e-9
        assert res.dual_value <= res.fun + res.err + 1e-12
        assert res.fun - res.dual_value <= 1e-9  # (a zero duality gap at the optimum)
    assert semi.n_newton <= 30 and dual.n_newton <= 100
    assert np.abs(semi.plan.toarray() - dual.plan.toarray()).sum() <= 1e-8
    assert semi.fun == pytest.approx(dual.fun, rel=1e-9)


def test_quadratic_ot_dual_above_1024_variables_converges():
    """n = m = 513 (1026 dual variables): the dual's ascent took L-BFGS, which never
    reached the Newton switch (maxiter, err 3e-3) where the semi-dual converged in 1166
    iterations. The dual now goes through the semi-dual and returns its converged maximum
    when the dual's own err there meets tol: the same plan, a zero duality gap."""
    rng = np.random.default_rng(0)
    n = 513
    x, y = rng.random((n, 2)), rng.random((n, 2))
    C = ((x[:, None] - y[None]) ** 2).sum(-1)
    a = np.exp(-((x - 0.3) ** 2).sum(1) / (2 * 0.2 ** 2))
    a /= a.sum()
    b = np.exp(-((y - 0.7) ** 2).sum(1) / (2 * 0.25 ** 2))
    b /= b.sum()
    reg = 0.01 * C.max()
    dual = ottools.quadratic_ot(a, b, C, reg)  # formulation="dual", the default
    assert dual.status == 0 and dual.err <= 1e-9, dual.message
    P = dual.plan.toarray()
    assert np.abs(P.sum(axis=1) - a).sum() + np.abs(P.sum(axis=0) - b).sum() <= 1e-9
    assert abs(dual.fun - dual.dual_value) <= 1e-9 * abs(dual.fun)
    semi = ottools.quadratic_ot(a, b, C, reg, formulation="semi-dual")
    assert np.abs(semi.plan.toarray() - P).sum() <= 1e-8


# --- exact ties: tie groups and tied starts ---------------------------------------------

@pytest.mark.parametrize("semi", [True, False])
def test_supergradient_mixes_whole_tie_groups(semi):
    """One column, ten rows tied (constant cost), k = 2: the tie-broken plan gives rows 0
    and 1 half of b each. The least-norm mix of the 2-subsets' plans is the centre of the
    hypersimplex (a fifth of a share each), which meets a exactly; mixes of single swaps
    from the tie-broken plan (at most one share moved) do not reach it."""
    from ottools._sparse_ot._kinks import supergradient, tied_start

    n, reg = 10, 0.1
    obj = _objective(np.full(n, 0.1), np.array([1.0]), np.ones((n, 1)), reg, 2, semi)
    # semi-dual: f = 0; dual: g = 1.05 makes every entry 0.05, the kept ones 0.5 each
    x = np.zeros(n) if semi else np.concatenate([np.zeros(n), [1.05]])
    assert tied_start(obj, x)
    d, measure = supergradient(obj, x, 1e-12, groups=True)
    assert measure < 1e-12
    np.testing.assert_allclose(d, 0.0, atol=1e-12)
    _, swaps = supergradient(obj, x, 1e-12)
    assert swaps > 0.1


def test_tied_start_is_only_a_tie_swaps_do_not_reach():
    """The toy problem's ties at f = 0 (rows j - d and j + d of column j) are single
    swaps: its start is not perturbed; a quantized cost's start is."""
    from ottools._sparse_ot._kinks import tied_start

    x = np.arange(100.0)
    a = np.exp(-0.5 * ((x - 20) / 5) ** 2); a /= a.sum()
    b = np.exp(-0.5 * ((x - 60) / 10) ** 2); b /= b.sum()
    cost = (x[:, None] - x[None, :]) ** 2 / 99.0**2
    for k in (2, 3, 5):
        assert not tied_start(_objective(a, b, cost, 0.1, k, True), np.zeros(100))
    a, b, cost = _quantized_problem()
    assert tied_start(_objective(a, b, cost, 0.05, 2, True), np.zeros(20))


def _quantized_problem():
    r = np.random.default_rng(5)
    x = r.random((20, 2)); y = r.random((15, 2))
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    cost = np.round(cost / cost.max() * 4) / 4  # multiples of 0.25: large tie groups
    a = r.random(20) + 0.1; a /= a.sum()
    b = r.random(15) + 0.1; b /= b.sum()
    return a, b, cost


@pytest.mark.parametrize("k", [2, 3])
def test_quantized_cost_reaches_the_maximum(k):
    """On a cost rounded to multiples of 0.25 the default semi-dual stalled at its first
    iteration (status 4, nit 1) at 0.00105 (k = 2) and 0.00070 (k = 3), below the k = n
    maximum, a lower bound for every k (the k-sparse column term is a max over a
    smaller set). It now reaches the dual's BFGS value, with a certificate or an
    honest stall."""
    a, b, cost = _quantized_problem()
    reg = 0.05
    bound = ottools.quadratic_ot(a, b, cost, reg, formulation="semi-dual").dual_value
    dual = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation="dual",
                                           method="bfgs").dual_value
    res = ottools.sparsity_constrained_ot(a, b, cost, reg, k)
    assert res.nit > 1
    assert res.dual_value >= bound
    assert res.dual_value >= dual - 1e-9 * abs(dual)
    assert res.status in (0, 4, 5)
    if res.status == 5:
        assert res.stationarity <= 1e-9
    if res.status == 4:
        assert "not certified" in res.message


@pytest.mark.parametrize("formulation", FORMS)
def test_constant_cost_is_certified(formulation):
    """A constant cost (10 x 10, uniform weights, k = 2): f = 0 is a maximum (a circulant
    plan with two entries per column attains 1 + reg / (2 k) sum b**2); the mix of the
    whole tie groups certifies it at once, where the single swaps did not (status 4)."""
    n, reg, k = 10, 0.05, 2
    w = np.full(n, 1.0 / n)
    res = ottools.sparsity_constrained_ot(w, w, np.ones((n, n)), reg, k,
                                          formulation=formulation)
    assert res.status == 5, res.message
    assert res.stationarity <= 1e-9
    np.testing.assert_allclose(res.dual_value, 1 + reg / (2 * k) * np.sum(w**2), rtol=1e-12)


def _gaussian_weights_cloud(n, s, seed):
    """n standard Gaussian points in 2-D each side, weights proportional to
    ``exp(-|x|^2 / (2 s^2))`` (the smallest about 1e-14 of the largest at s = 0.5),
    squared Euclidean cost divided by its max."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    cost /= cost.max()
    a = np.exp(-(x * x).sum(1) / (2 * s * s))
    b = np.exp(-(y * y).sum(1) / (2 * s * s))
    return a / a.sum(), b / b.sum(), cost


def _parts(obj, st_):
    """Labels of the rows and columns of the structure's connected parts, and each
    part's relative imbalance ``|sum a - sum b| / (sum a + sum b)``."""
    from scipy.sparse.csgraph import connected_components

    nr, mc = obj.nr, obj.mc
    ei = np.concatenate([st_.pi, st_.gi])
    ej = np.concatenate([st_.pj, st_.tj[st_.gt]]) + nr
    graph = scipy.sparse.coo_array((np.ones(ei.size), (ei, ej)), shape=(nr + mc,) * 2)
    nc, lab = connected_components(graph, directed=False)
    wa = np.bincount(lab[:nr], weights=obj.sp.ac, minlength=nc)
    wb = np.bincount(lab[nr:], weights=obj.sp.bc, minlength=nc)
    return lab, np.abs(wa - wb) / (wa + wb)


@pytest.mark.parametrize("formulation", FORMS)
def test_active_set_structure_has_balanced_parts(monkeypatch, formulation):
    """Summed over a connected part of the guessed structure, the KKT equations say
    that its row and column weights are equal: on Gaussian-shaped weights the entries
    near the ties leave unbalanced parts (rows of tiny weight with no entry at all),
    whose solve moved the potentials by ``imbalance / mu`` (1e4 to 1e10 times
    ``reg max(b)`` at n = 500). The structure read from an iterate has balanced parts
    and an entry in every row, keeps at most k slots per column, and its solve stays
    within a few column widths of the iterate."""
    from ottools._sparse_ot import _active_set as A

    reg, k = 0.1, 2
    semi = formulation == "semi-dual"
    a, b, cost = _gaussian_weights_cloud(100, 0.5, 0)
    res = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation=formulation,
                                          method="bfgs", maxiter=300)
    obj = _objective(a, b, cost, reg, k, semi)
    x = res.f if semi else np.concatenate([res.f, res.g])
    width = reg * float(obj.sp.bc.max())

    def moved(st_, f0, h0):
        sol = A.solve(obj, st_, f0, h0)
        return np.max(np.abs(sol[0] - f0)) / width

    with monkeypatch.context() as mp:  # the guess as it was: unbalanced parts
        mp.setattr(A, "_cover", lambda obj, st_, f, h, tops: (st_, 0))
        raw, (f0, h0) = A.detect(obj, x, 1e-3 * width)
        assert _parts(obj, raw)[1].max() > 1e-3
        assert moved(raw, f0, h0) > 1e3
    st_, (f0, h0) = A.detect(obj, x, 1e-3 * width)
    lab, imbalance = _parts(obj, st_)
    assert imbalance.max() <= 1e-10
    assert np.all(np.isin(np.arange(obj.nr), np.concatenate([st_.pi, st_.gi])))
    slots = np.bincount(st_.pj, minlength=obj.mc)
    slots[st_.tj] += st_.tr
    assert slots.max() <= k
    members = np.bincount(st_.gt, minlength=st_.tj.size)
    assert np.all(members > st_.tr) and np.all(st_.tr >= 1)
    assert moved(st_, f0, h0) < 1e3


@settings(deadline=None, max_examples=80)
@given(n=st.integers(2, 30), m=st.integers(2, 20), k=st.integers(1, 3),
       pool=st.sampled_from([0, 1, 2, 6, 20]), levels=st.sampled_from([0, 2, 4]),
       parts=st.integers(1, 10), tiny=st.booleans(), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_join_parts_matches_its_twin(n, m, k, pool, levels, parts, tiny, seed, dtype):
    """The joins of the finish's cover (``_kkt.join_parts``) against the dense twin: the
    same entries in the same order, and the same parts after. Integer costs and
    potentials (``levels``) make many gaps equal (the first in ``(j, i)`` order wins);
    short top lists (``pool`` 0: k entries) and rows of tiny weight leave columns whose
    list holds no row of the side looked for (their full scans); long ones list every
    row, or come from the selection kernel's buffered path (more than 16 entries)."""
    from ottools._kernels import _kkt

    rng = np.random.default_rng(seed)
    k = min(k, n)
    kk = min(n, k + pool)
    if levels:
        cost = rng.integers(0, levels, (n, m)).astype(dtype)
        f = rng.integers(0, levels, n).astype(np.float64)
        h = rng.integers(0, levels, m).astype(np.float64)
    else:
        cost = rng.random((n, m)).astype(dtype)
        f, h = rng.standard_normal(n) * 0.3, rng.standard_normal(m) * 0.3
    ct = np.ascontiguousarray(cost.T)
    a, b = rng.random(n), rng.random(m)
    if tiny:
        a[rng.random(n) < 0.3] *= 1e-12
    a, b = a / a.sum(), b / b.sum()
    lr, lc = rng.integers(0, parts, n), rng.integers(0, parts, m)
    wa = np.bincount(lr, weights=a, minlength=parts)
    wb = np.bincount(lc, weights=b, minlength=parts)
    imb = wa - wb
    todo = np.flatnonzero(np.abs(imb) > 1e-10 * (wa + wb))
    V, R = np.empty((m, kk)), np.empty((m, kk), dtype=np.int64)
    _k.column_tops(f, h, ct, kk, V, R, np.empty(n), np.empty(n, dtype=np.int64))
    near = np.maximum(V[:, k - 1], 0.0)
    twin = ref.join_parts(lr, lc, imb, wa, wb, todo, f, h, near, ct, 1e-10)
    ours = [x.copy() for x in (lr, lc, imb, wa, wb)]
    ai, aj = _kkt.join_parts(*ours, todo, f, h, near, R, ct, 1e-10)
    assert ai.tolist() == twin[0] and aj.tolist() == twin[1]
    np.testing.assert_array_equal(ours[0], twin[2])
    np.testing.assert_array_equal(ours[1], twin[3])


def test_active_set_cover_allocates_no_gap_matrix(monkeypatch):
    """The cover's joins take their entries from the columns' top lists, scanning a
    column in full only where its list holds none: on the Gaussian-shaped weights at
    n = 300, whose structure read from an iterate has unbalanced parts, the cover's
    allocations (as tracemalloc sees them: NumPy's and Python's) peak under a quarter of
    one n x m float64 matrix (84 kB: the graph of the parts, the new structure), and its
    parts are balanced. With the dense gaps it built before, they peaked at 1.5 MB."""
    import tracemalloc

    from ottools._sparse_ot import _active_set as A

    reg, k, n = 0.1, 2, 300
    a, b, cost = _gaussian_weights_cloud(n, 0.5, 0)
    res = ottools.sparsity_constrained_ot(a, b, cost, reg, k, method="bfgs", maxiter=300)
    obj = _objective(a, b, cost, reg, k, True)
    with monkeypatch.context() as mp:
        mp.setattr(A, "_cover", lambda obj, st_, f, h, tops: (st_, 0))
        raw, (f0, h0) = A.detect(obj, res.f, 1e-3 * reg * float(obj.sp.bc.max()))
    assert _parts(obj, raw)[1].max() > 1e-3
    tops = A._tops(obj, f0, h0, min(n, k + A._POOL))
    A._cover(obj, raw, f0, h0, tops)  # compiled
    tracemalloc.start()
    try:
        st_, joined = A._cover(obj, raw, f0, h0, tops)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert joined > 0 and _parts(obj, st_)[1].max() <= 1e-10
    assert peak < n * n * 8 / 4


def test_gaussian_weights_certified():
    """Weights spanning 14 orders of magnitude (Gaussian-shaped, n = 500): the default
    method certifies the maximum of both formulations (it reached maxiter before the
    structure's parts were balanced). The plans keep at most k entries per column, the
    semi-dual's columns meet b, the mix of tied plans meets the marginals (checked
    again by the kink module's least-norm supergradient at the returned potentials),
    BFGS alone reaches no higher value, and the dual's value is the semi-dual's."""
    from ottools._sparse_ot._kinks import CERTIFY_EPS, supergradient

    reg, k = 0.1, 2
    tol = DEFAULT_TOL[np.dtype(np.float64)]
    a, b, cost = _gaussian_weights_cloud(500, 0.5, 0)
    res = ottools.sparsity_constrained_ot(a, b, cost, reg, k)
    dual = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation="dual")
    for r in (res, dual):
        _assert_done(r, tol)
        assert r.status in (0, 5) and r.stationarity <= tol
        assert np.diff(r.plan.indptr).max() <= k
    np.testing.assert_allclose(res.plan.sum(axis=0), b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dual.dual_value, res.dual_value, rtol=1e-12)
    obj = _objective(a, b, cost, reg, k, True)
    _, measure = supergradient(obj, res.f, CERTIFY_EPS * reg * b.max())
    assert measure <= 1e-8
    slow = ottools.sparsity_constrained_ot(a, b, cost, reg, k, method="bfgs")
    assert res.dual_value >= slow.dual_value - 1e-12 * abs(slow.dual_value)
