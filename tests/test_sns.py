"""Sinkhorn-Newton-Sparse: ``ottools.sinkhorn(..., method="sns")`` and its kernels."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ottools
from ottools._kernels import _newton as kn
from ottools._kernels import _sinkhorn as ks

import _reference as ref
from conftest import random_problem


def _assignment(rng, n):
    a = np.full(n, 1.0 / n)
    return a, a.copy(), rng.random((n, n))


# ---------------------------------------------------------------- kernels vs twins


def _state(rng, n=13, m=9, reg=0.05, zeros=0):
    a, b, cost = random_problem(rng, n, m, zeros=zeros)
    res = ottools.sinkhorn(a, b, cost, reg, method="log", maxiter=3, tol=0.0)
    f = res.f + 1e-3 * rng.standard_normal(n)  # not optimal: both marginals off
    return a, b, cost, reg, f, res.g


def test_plan_from_potentials_equals_twin(rng):
    # The dense step of SNS uses sinkhorn's plan kernel.
    a, b, cost, reg, f, g = _state(rng)
    n, m = cost.shape
    P = np.empty((n, m))
    rows, cols, _, _ = ks.plan_from_potentials(np.log(a), np.log(b), cost, reg, f, g, P)
    P0, r0, c0 = ref.plan_marginals(a, b, cost, reg, f, g)
    np.testing.assert_allclose(P, P0, rtol=1e-12, atol=0)
    np.testing.assert_allclose(rows, r0, rtol=1e-12)
    np.testing.assert_allclose(cols, c0, rtol=1e-12)


def _trial(chunks, *args):
    """``trial_plan`` (chunks 0) or its parallel twin in ``chunks`` row blocks."""
    if chunks:
        return kn.trial_plan_par(*args, chunks)
    m = args[2].shape[1]
    return kn.trial_plan(*args, np.empty(m), np.empty(m))


@pytest.mark.parametrize("chunks", [0, 1, 3])
@pytest.mark.parametrize("step", [1e-2, 1e-5, 1e-9])
def test_trial_plan_gives_the_exact_dual_increase(rng, step, chunks):
    a, b, cost, reg, f, g = _state(rng)
    n, m = cost.shape
    la, lb = np.log(a), np.log(b)
    P, rows, cols = ref.plan_marginals(a, b, cost, reg, f, g)
    f_new = f + step * rng.standard_normal(n)
    g_new = g + step * rng.standard_normal(m)
    df, dg = f_new - f, g_new - g
    P_new, r_new, c_new = np.empty((n, m)), np.empty(n), np.empty(m)
    S = _trial(chunks, la, lb, cost, 1 / reg, f_new, g_new, df, dg, P, P_new, r_new, c_new)
    np.testing.assert_allclose(r_new, P_new.sum(1), rtol=1e-13)
    np.testing.assert_allclose(c_new, P_new.sum(0), rtol=1e-13)
    inc = df @ (a - rows) + dg @ (b - cols) - reg * S
    exact = ref.dual_objective(a, b, cost, reg, f_new, g_new) - ref.dual_objective(
        a, b, cost, reg, f, g)
    np.testing.assert_allclose(P_new, ref.plan(a, b, cost, reg, f_new, g_new), rtol=1e-12)
    # long double resolves increments down to ~1e-18 of F: compare where it can.
    assert abs(inc - float(exact)) <= 1e-6 * abs(float(exact)) + 1e-17


@pytest.mark.parametrize("chunks", [0, 3])
def test_trial_plan_reports_overflow(rng, chunks):
    a, b, cost, reg, f, g = _state(rng)
    n, m = cost.shape
    P, _, _ = ref.plan_marginals(a, b, cost, reg, f, g)
    f_new = f + 1e3
    out = np.empty((n, m)), np.empty(n), np.empty(m)
    S = _trial(chunks, np.log(a), np.log(b), cost, 1 / reg, f_new, g, f_new - f,
               np.zeros(m), P, *out)
    assert S == np.inf


@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]) | st.floats(0, 10),
                min_size=1, max_size=60), st.data())
def test_kth_largest_equals_sort(values, data):
    v = np.array(values, dtype=np.float64)
    k = data.draw(st.integers(1, v.size))
    assert kn.kth_largest(v.copy(), k) == ref.kth_largest(v, k)


@pytest.mark.parametrize("spread", [1.0, 30.0, 300.0])
@pytest.mark.parametrize("k_min", [1, 50, 700, 10**6])
@pytest.mark.parametrize("mass_tol", [0.0, 1e-12, 1e-6, 1e-2])
@pytest.mark.parametrize("chunks", [0, 3])
def test_mass_threshold_is_the_largest_admissible(rng, spread, k_min, mass_tol, chunks):
    P = np.exp(-spread * rng.random((300, 200)))
    P[5] = 0.0
    P[7, :50] = P[7, 50]  # ties
    if chunks:
        rho, k = kn.mass_threshold_par(P, k_min, mass_tol, chunks)
    else:
        rho, k = kn.mass_threshold(P, k_min, mass_tol)
    pos = P[P > 0]
    total = pos.sum()

    def admissible(t, slack=1e-14):  # slack: the sums' rounding
        kept = pos[pos >= t]
        return (kept.size >= min(k_min, pos.size)
                and total - kept.sum() <= (mass_tol + slack) * total)

    assert k == np.count_nonzero(pos >= rho) and admissible(rho)
    if rho > 0 and mass_tol > 0:  # the next threshold up (a quarter octave) is not
        e = np.floor(np.log2(rho))
        q = round((rho / 2**e - 1) * 4)
        up = 2**e * (1 + (q + 1) / 4) if q < 3 else 2 ** (e + 1)
        assert not admissible(up, slack=-1e-14)
    assert kn.mass_threshold(np.zeros((3, 4)), 2, 1e-6) == (0.0, 0)
    assert kn.mass_threshold_par(np.zeros((3, 4)), 2, 1e-6, 2) == (0.0, 0)


@pytest.mark.parametrize("chunks", [0, 3])
def test_mass_threshold_floor_leaves_out_only_tiny_mass(rng, chunks):
    P = np.exp(-300.0 * rng.random((300, 200)))  # most entries tiny, all positive
    total, mass_tol = P.sum(), 1e-6
    floor = 1e-3 * mass_tol * total / P.size
    lo = kn.hist_floor(floor)
    assert floor / 1.25 < lo <= floor and kn.hist_floor(0.0) == 0.0
    if chunks:
        rho, k = kn.mass_threshold_par(P, 50, mass_tol, chunks, floor)
    else:
        rho, k = kn.mass_threshold(P, 50, mass_tol, floor)
    kept = P[P >= rho]
    assert k == kept.size >= 50 and rho >= lo
    # the mass rule holds to within the left-out mass (at most 1e-3 mass_tol)
    assert total - kept.sum() <= 1.001 * mass_tol * total
    # a weaker rule than the exact one: never a lower threshold
    assert rho >= kn.mass_threshold(P, 50, mass_tol)[0]


@pytest.mark.parametrize("peak", [1.0, 0.05, 1e-3])
def test_sparsify_csr_equals_twin(rng, peak):
    a, b, cost, reg, f, g = _state(rng, 30, 20)
    P = ref.plan(a, b, cost, reg, f, g)
    P[3, :] = 0.0  # an empty row keeps nothing
    rho = ref.kth_largest(P, 40)
    indptr, indices, data = kn.sparsify_csr(P, rho, peak)
    S0 = ref.sparsify(P, rho, peak)
    if peak < 1.0:  # the rows' and columns' cuts add entries below rho
        assert S0.nnz > ref.sparsify(P, rho).nnz
    np.testing.assert_array_equal(indptr, S0.indptr)
    np.testing.assert_array_equal(indices, S0.indices)
    np.testing.assert_array_equal(data, S0.data)
    # every non-empty row and column keeps at least its largest entry
    assert np.all(np.diff(indptr)[P.max(1) > 0] >= 1)
    assert set(indices) == set(np.flatnonzero(P.max(0) > 0))
    for chunks in (1, 4):  # the parallel twin gives the same arrays
        for got, want in zip(kn.sparsify_csr_par(P, rho, chunks, peak),
                             (indptr, indices, data)):
            np.testing.assert_array_equal(got, want)


def _sparse_system(rng, n=25, m=18, keep=60):
    a, b, cost, reg, f, g = _state(rng, n, m)
    P, rows, cols = ref.plan_marginals(a, b, cost, reg, f, g)
    indptr, indices, data = kn.sparsify_csr(P, ref.kth_largest(P, keep))
    return a, b, P, rows, cols, indptr, indices, data


@pytest.mark.parametrize("chunks", [2, 3])
def test_newton_cg_in_parallel_blocks_solves_the_same_system(rng, chunks):
    # every entry kept: 400 x 400 > _CG_PARALLEL_MIN_NNZ, so the blocks run
    n = m = 400
    assert n * m >= kn._CG_PARALLEL_MIN_NNZ
    a, b, P, rows, cols, indptr, indices, data = _sparse_system(rng, n, m, keep=n * m)
    bf, bg = a - rows, b - cols
    j0, shift = 7, 1e-4
    out = []
    for c in (1, chunks):
        xf, xg = np.empty(n), np.empty(m)
        it, relres = kn.newton_cg(indptr, indices, data, rows, cols, shift, j0, bf, bg,
                                  1e-11, 10 * (n + m), xf, xg, c)
        assert relres <= 1e-11 and xg[j0] == 0.0
        out.append(np.r_[xf, xg])
    np.testing.assert_allclose(out[1], out[0], rtol=1e-8, atol=1e-9 * np.abs(out[0]).max())
    # the blocks split the entries evenly and cover every row once
    bounds = kn._entry_blocks(indptr, chunks)
    assert bounds[0] == 0 and bounds[-1] == n and np.all(np.diff(bounds) >= 0)
    per = np.diff(indptr[bounds])
    assert per.max() - per.min() <= 2 * np.diff(indptr).max()


@pytest.mark.parametrize("shift", [0.0, 1e-3])
def test_schur_matvec_equals_dense_complement(rng, shift):
    a, b, P, rows, cols, indptr, indices, data = _sparse_system(rng)
    n, m = P.shape
    j0 = 4
    y = rng.standard_normal(m)
    out = np.empty(m)
    kn.schur_matvec(indptr, indices, data, (1 + shift) * rows, (1 + shift) * cols, j0, y,
                    out)
    import scipy.sparse as sp
    H = ref.newton_matrix(sp.csr_array((data, indices, indptr), shape=(n, m)), rows, cols,
                          shift, j0)
    # the complement of the f block of the gauge-fixed matrix, by dense algebra
    S = H[n:, n:] - H[n:, :n] @ np.linalg.solve(H[:n, :n], H[:n, n:])
    want = S @ np.delete(y, j0)
    np.testing.assert_allclose(np.delete(out, j0), want, rtol=1e-12,
                               atol=1e-14 * np.abs(want).max())
    assert out[j0] == 0.0


@pytest.mark.parametrize("j0", [3, -1])
def test_direct_newton_solves_the_gauge_fixed_system(rng, j0):
    from ottools import _sns
    a, b, P, rows, cols, indptr, indices, data = _sparse_system(rng)
    n, m = P.shape
    shift = 1e-6
    bf, bg = a - rows, b - cols
    xf, xg = np.empty(n), np.empty(m)
    assert _sns.direct_newton(indptr, indices, data, rows, cols, shift, j0, bf, bg, 1e-10,
                              xf, xg)
    import scipy.sparse as sp
    Ps = sp.csr_array((data, indices, indptr), shape=(n, m))
    if j0 >= 0:
        H = ref.newton_matrix(Ps, rows, cols, shift, j0)
        want = np.linalg.solve(H, np.r_[bf, np.delete(bg, j0)])
        got = np.r_[xf, np.delete(xg, j0)]
        assert xg[j0] == 0.0
    else:  # no gauge: the whole (definite once shifted) system
        H = np.block([[np.diag((1 + shift) * rows), Ps.toarray()],
                      [Ps.T.toarray(), np.diag((1 + shift) * cols)]])
        want = np.linalg.solve(H, np.r_[bf, bg])
        got = np.r_[xf, xg]
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9 * np.abs(want).max())


def test_direct_newton_holds_a_column_of_a_singular_block(monkeypatch):
    from ottools import _sns
    import scipy.sparse as sp
    # two blocks of the kept graph: rows 0-1 / columns 0-1 with the gauge, rows 2-3 /
    # columns 2-3 apart, whose exact marginals (shift 0) make their complement block
    # singular (a zero pivot) though no diagonal cancels
    P = np.zeros((4, 4))
    P[:2, :2] = [[0.2, 0.1], [0.05, 0.3]]
    P[2:, 2:] = 0.25  # (powers of two: the second pivot of its block is exactly 0)
    rows, cols = P.sum(1), P.sum(0)
    csr = sp.csr_array(P)
    indptr, indices = csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
    bf = np.array([0.01, -0.02, 0.003, -0.001])
    H = np.block([[np.diag(rows), P], [P.T, np.diag(cols)]])

    def solve(bg, tol):
        xf, xg = np.full(4, 7.0), np.full(4, 7.0)
        ok = _sns.direct_newton(indptr, indices, csr.data, rows, cols, 0.0, 0, bf, bg,
                                tol, xf, xg)
        return ok, xf, xg

    # the second block's sums agree: every equation but the gauge's holds
    bg = np.array([0.0, 0.004, 0.0025, -0.0005])
    ok, xf, xg = solve(bg, 1e-8)
    assert ok and xg[0] == 0.0 and (xg[2] == 0.0 or xg[3] == 0.0)  # gauge, held column
    np.testing.assert_allclose(np.delete(H @ np.r_[xf, xg], 4), np.delete(np.r_[bf, bg], 4),
                               atol=1e-15)
    # sums that differ by 1e-4: the held column's equation carries it, the step stays
    # bounded (a lifted diagonal had put 1e6 along the block's null mode), and the
    # residual test decides
    bg2 = bg + np.array([0.0, 0.0, 0.0, 1e-4])
    ok, xf, xg = solve(bg2, 1e-2)
    assert ok and np.abs(np.r_[xf, xg]).max() < 1.0
    assert not solve(bg2, 1e-3)[0]
    # no block counted singular: refused, outputs untouched
    monkeypatch.setattr(_sns, "_DIRECT_SINGULAR", -1.0)
    ok, xf, xg = solve(bg, 1e-8)
    assert not ok and np.all(xf == 7.0) and np.all(xg == 7.0)


def test_direct_newton_holds_cancelled_columns_and_checks_its_residual():
    from ottools import _sns
    # rows 0-1 / columns 0-1 share entries; row 2 and column 2 form an isolated pair
    # whose complement's diagonal cancels (shift 0: cols - P^2 / rows = 0 exactly)
    P = np.array([[0.2, 0.1, 0.0], [0.05, 0.3, 0.0], [0.0, 0.0, 0.35]])
    rows, cols = P.sum(1), P.sum(0)
    import scipy.sparse as sp
    csr = sp.csr_array(P)
    indptr, indices = csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
    data = csr.data
    bf = np.array([0.01, -0.02, 0.003])
    bg = np.array([0.0, 0.004, 0.003])  # the pair's equations agree: consistent
    xf, xg = np.full(3, 7.0), np.full(3, 7.0)
    assert _sns.direct_newton(indptr, indices, data, rows, cols, 0.0, 0, bf, bg, 1e-10, xf,
                              xg)
    H = np.block([[np.diag(rows), P], [P.T, np.diag(cols)]])
    x = np.r_[xf, xg]
    assert xg[0] == 0.0 and xg[2] == 0.0  # the gauge and the held column
    # every equation but the gauge's (j0 = 0) holds
    np.testing.assert_allclose(np.delete(H @ x, 3), np.delete(np.r_[bf, bg], 3), atol=1e-14)
    # an inconsistent pair leaves a residual above tol: refused, outputs untouched
    bg2 = np.array([0.0, 0.004, -0.05])
    xf, xg = np.full(3, 7.0), np.full(3, 7.0)
    assert not _sns.direct_newton(indptr, indices, data, rows, cols, 0.0, 0, bf, bg2, 1e-2,
                                  xf, xg)
    assert np.all(xf == 7.0) and np.all(xg == 7.0)


def test_direct_newton_refuses_a_wide_envelope_before_factorizing(monkeypatch):
    # A well-mixed pattern (random columns: 10-D points at moderate reg): after reverse
    # Cuthill-McKee its envelope is near dense; refused from the envelope alone (the
    # incomplete LU with a fill limit spent 30 s on such plans, and corrupted the heap on
    # some). No factorization may run.
    from ottools import _sns
    import scipy.sparse.linalg as spl

    def no_factorization(*args, **kwargs):
        raise AssertionError("factorized")

    monkeypatch.setattr(spl, "splu", no_factorization)
    rng = np.random.default_rng(0)
    n = m = 3000
    k = 12
    indices = np.sort(rng.choice(m, size=(n, k)), axis=1)
    indices = np.array([np.unique(r) for r in indices], dtype=object)
    counts = np.array([r.size for r in indices])
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    indices = np.concatenate(indices).astype(np.int64)
    data = rng.random(indices.size) / (n * k)
    rows = np.bincount(np.repeat(np.arange(n), counts), weights=data, minlength=n) * 1.1
    cols = np.bincount(indices, weights=data, minlength=m) * 1.1
    xf, xg = np.full(n, 3.0), np.full(m, 3.0)
    assert not _sns.direct_newton(indptr, indices, data, rows, cols, 1e-6, 0,
                                  rng.standard_normal(n) * 1e-4,
                                  rng.standard_normal(m) * 1e-4, 1e-2, xf, xg)
    assert np.all(xf == 3.0) and np.all(xg == 3.0)


def test_direct_newton_refuses_a_pattern_above_its_budget(rng, monkeypatch):
    from ottools import _sns
    a, b, P, rows, cols, indptr, indices, data = _sparse_system(rng)
    n, m = P.shape
    monkeypatch.setattr(_sns, "_DIRECT_MAX_ENTRIES", 4 * int(np.diff(indptr).max()) ** 2)
    xf, xg = np.full(n, 3.0), np.full(m, 3.0)
    assert not _sns.direct_newton(indptr, indices, data, rows, cols, 1e-6, 0, a - rows,
                                  b - cols, 1e-10, xf, xg)
    assert np.all(xf == 3.0) and np.all(xg == 3.0)


def test_near_permutation_plans_take_direct_newton_steps(monkeypatch):
    # The Monge gap of an optimal map at reg ~1.5e-5 of the cost range: the plan is
    # nearly a permutation and CG stalls on its weakly linked blocks; the factorized
    # steps reach the same solution as CG alone.
    from ottools import _sns
    calls = []
    real = _sns.direct_newton

    def spy(*args):
        ok = real(*args)
        calls.append(ok)
        return ok

    monkeypatch.setattr(_sns, "direct_newton", spy)
    x = np.random.default_rng(1).normal(size=(300, 2))
    y = 1.2 * x + 0.1
    cost = ottools.cost_matrix(x, y)
    res = ottools.sinkhorn(None, None, cost, 1e-3, tol=1e-10)
    assert res.success and "newton" in res.stages
    assert sum(calls) >= 1
    assert np.abs(res.plan.sum(1) - 1 / 300).sum() + np.abs(res.plan.sum(0) - 1 / 300).sum() \
        <= 1e-10
    ref_res = ottools.sinkhorn(None, None, cost, 1e-3, tol=1e-10,
                               options={"direct_after": None})
    assert ref_res.success
    # (the dual is nearly flat along the blocks: the potentials differ, the plans not)
    assert np.abs(res.plan - ref_res.plan).sum() <= 1e-9
    assert abs(res.fun - ref_res.fun) <= 1e-9 * abs(ref_res.fun)


@pytest.mark.parametrize("cg_tol", [1e-4, 1e-10])
def test_newton_cg_reaches_cg_tol(rng, cg_tol):
    a, b, P, rows, cols, indptr, indices, data = _sparse_system(rng)
    n, m = P.shape
    j0, shift = 2, 1e-4
    bf, bg = a - rows, b - cols
    xf, xg = np.empty(n), np.empty(m)
    it, relres = kn.newton_cg(indptr, indices, data, rows, cols, shift, j0, bf, bg, cg_tol,
                              10 * (n + m), xf, xg)
    import scipy.sparse as sp
    H = ref.newton_matrix(sp.csr_array((data, indices, indptr), shape=(n, m)), rows, cols,
                          shift, j0)
    rhs = np.r_[bf, np.delete(bg, j0)]
    x = np.r_[xf, np.delete(xg, j0)]
    assert 0 < it < 10 * (n + m)
    assert relres <= cg_tol
    assert np.linalg.norm(H @ x - rhs) <= 1.01 * cg_tol * np.linalg.norm(rhs)
    assert xg[j0] == 0.0
    if cg_tol < 1e-8:
        np.testing.assert_allclose(x, np.linalg.solve(H, rhs), rtol=1e-6,
                                   atol=1e-8 * np.abs(x).max())


# ---------------------------------------------------------------- the solver


@pytest.mark.parametrize("n, m, zeros", [(40, 40, 0), (35, 22, 0), (30, 45, 3)])
def test_plan_equals_log_sinkhorn(rng, n, m, zeros):
    a, b, cost = random_problem(rng, n, m, zeros=zeros)
    reg = 0.01
    res = ottools.sinkhorn(a, b, cost, reg, method="sns", tol=1e-12)
    ref_res = ottools.sinkhorn(a, b, cost, reg, method="log", tol=1e-12, maxiter=100_000)
    assert res.success and ref_res.success
    assert res.method == "sns"
    assert res.err <= 1e-12
    np.testing.assert_allclose(res.plan, ref_res.plan, rtol=0, atol=1e-8 / (n * m))
    assert abs(res.fun - ref_res.fun) <= 1e-10
    if zeros:
        assert np.all(res.plan[a == 0] == 0) and np.all(res.plan[:, b == 0] == 0)
        assert np.all(np.isfinite(res.f)) and np.all(np.isfinite(res.g))
    assert res.nit == res.nit_sinkhorn + res.nit_newton
    assert res.nit_newton >= 1
    assert res.err_history.shape == (res.nit,)
    # The last err of the history is the final state's, computed from the Newton stage's
    # plan (vectorized exp); res.err from the returned plan (libm exp): equal to the
    # rounding of a sum of n + m terms.
    np.testing.assert_allclose(res.err_history[-1], res.err, rtol=0,
                               atol=(n + m) * np.finfo(float).eps)


def test_plan_equals_pot(rng):
    ot = pytest.importorskip("ot")
    a, b, cost = random_problem(rng, 30, 25)
    res = ottools.sinkhorn(a, b, cost, 0.02, method="sns", tol=1e-11)
    P = ot.sinkhorn(a, b, cost, 0.02, method="sinkhorn_log", stopThr=1e-13,
                    numItermax=100_000)
    assert res.success
    np.testing.assert_allclose(res.plan, P, atol=1e-9)


def test_random_assignment_converges_in_few_iterations(rng):
    """The paper's problem 1, smaller: reg = 1/1200 on U[0, 1] costs."""
    a, b, cost = _assignment(rng, 200)
    res = ottools.sinkhorn(a, b, cost, 1 / 1200, method="sns", tol=1e-9)
    assert res.success
    assert res.err <= 1e-9
    assert res.nit <= 60
    assert res.nit_sinkhorn == 20
    # plan's marginals, recomputed independently
    assert ref.marginal_error(res.plan, a, b) <= 1e-9


def test_dual_never_decreases(rng):
    a, b, cost = _assignment(rng, 60)
    reg = 1 / 300
    duals = []

    def cb(r):
        duals.append(float(ref.dual_objective(a, b, cost, reg, r.f, r.g)))

    res = ottools.sinkhorn(a, b, cost, reg, method="sns", tol=1e-12, callback=cb,
                           options={"warmup": 10, "check_every": 5})
    assert res.success
    assert len(duals) >= res.nit_newton + 2
    d = np.array(duals)
    assert np.all(np.diff(d) >= -1e-15 * np.abs(d[1:]))
    assert d[-1] > d[0]
    np.testing.assert_allclose(d[-1], res.fun, rtol=1e-9)


def test_err_history_and_rates(rng):
    a, b, cost = _assignment(rng, 100)
    res = ottools.sinkhorn(a, b, cost, 1 / 600, method="sns", tol=1e-10,
                           options={"warmup": 15, "warmup_start": 0})
    assert res.success
    h = res.err_history
    assert np.all(np.isfinite(h)) and h.shape == (res.nit,)
    assert res.nit_sinkhorn == 15
    # stage 1 is monotone (Sinkhorn); stage 2 is superlinear: some Newton step shrinks
    # the error twentyfold (a Sinkhorn step here shrinks it by a few percent).
    assert np.all(np.diff(h[:15]) <= 0)
    assert h[-1] <= 1e-10
    assert np.max(h[14:-1] / h[15:]) > 20
    assert h[13] / h[14] < 1.2
    assert res.nit_newton <= 30


def test_float32(rng):
    a, b, cost = random_problem(rng, 30, 20, dtype=np.float32)
    res = ottools.sinkhorn(a, b, cost, 0.02, method="sns", tol=1e-5)
    assert res.success
    assert res.plan.dtype == np.float32 and res.f.dtype == np.float32
    ref_res = ottools.sinkhorn(a.astype(np.float64), b.astype(np.float64),
                               cost.astype(np.float64), 0.02, method="sns", tol=1e-10)
    np.testing.assert_allclose(res.plan, ref_res.plan, atol=1e-6)


def test_l1_cost_with_non_unique_plan():
    """A 1-D grid with |x - y| cost: the optimal plan is not unique at reg -> 0."""
    x = np.linspace(0, 1, 80)
    a = np.exp(-((x - 0.3) / 0.1) ** 2)
    b = np.exp(-((x - 0.6) / 0.15) ** 2)
    a, b = a / a.sum(), b / b.sum()
    cost = np.abs(x[:, None] - x[None, :])
    res = ottools.sinkhorn(a, b, cost, 1 / 500, method="sns", tol=1e-10)
    log = ottools.sinkhorn(a, b, cost, 1 / 500, method="log", tol=1e-10, maxiter=200_000)
    assert res.success and log.success
    np.testing.assert_allclose(res.plan, log.plan, atol=1e-9)


def test_annealed_warmup():
    """warmup_start: the first warm-up iterations run at larger regularizations (err
    not computed: NaN), the last warmup // 5 at reg; on an L1 grid problem (where
    Sinkhorn at reg first spends hundreds of iterations moving the potentials) it saves
    Newton steps, and the plan is the same."""
    x = np.linspace(0, 1, 150)
    a = np.exp(-((x - 0.25) / 0.06) ** 2) + 0.6 * np.exp(-((x - 0.6) / 0.1) ** 2)
    b = 0.4 * np.exp(-((x - 0.4) / 0.08) ** 2) + np.exp(-((x - 0.8) / 0.05) ** 2)
    a, b = a / a.sum(), b / b.sum()
    cost = np.abs(x[:, None] - x[None, :])
    reg = 1 / 800
    ann = ottools.sinkhorn(a, b, cost, reg, method="sns", tol=1e-10,
                           options={"warmup": 20, "warmup_start": 0.1})
    flat = ottools.sinkhorn(a, b, cost, reg, method="sns", tol=1e-10,
                            options={"warmup": 20, "warmup_start": 0})
    log = ottools.sinkhorn(a, b, cost, reg, method="log", tol=1e-10, maxiter=100_000)
    assert ann.success and flat.success and log.success
    h = ann.err_history
    assert np.all(np.isnan(h[:16])) and np.all(np.isfinite(h[16:]))
    assert np.all(np.isfinite(flat.err_history))
    assert ann.nit < flat.nit
    assert ann.nit < log.nit / 5
    np.testing.assert_allclose(ann.plan, log.plan, atol=1e-10)
    np.testing.assert_allclose(flat.plan, log.plan, atol=1e-10)


def test_init_and_warmup_zero(rng):
    a, b, cost = random_problem(rng, 25, 25)
    first = ottools.sinkhorn(a, b, cost, 0.05, method="log", tol=1e-3)
    res = ottools.sinkhorn(a, b, cost, 0.05, method="sns", tol=1e-11,
                           init=(first.f, first.g), options={"warmup": 0})
    assert res.success
    assert res.nit_sinkhorn == 0 or res.nit_newton > 0
    ref_res = ottools.sinkhorn(a, b, cost, 0.05, method="log", tol=1e-11, maxiter=100_000)
    np.testing.assert_allclose(res.plan, ref_res.plan, atol=1e-10)


def test_single_row_and_column(rng):
    cost = rng.random((1, 5))
    b = rng.random(5)
    b /= b.sum()
    res = ottools.sinkhorn([1.0], b, cost, 0.1, method="sns")
    assert res.success
    np.testing.assert_allclose(res.plan[0], b, atol=1e-9)


def test_callback_stop(rng):
    a, b, cost = _assignment(rng, 50)
    calls = []

    def cb(r):
        calls.append(r.nit)
        if r.nit >= 22:
            raise StopIteration

    res = ottools.sinkhorn(a, b, cost, 1 / 1200, method="sns", callback=cb,
                           options={"check_every": 10})
    assert not res.success
    assert res.status == 3
    assert calls[:2] == [10, 20]
    assert res.nit == calls[-1]


def test_maxiter_reached(rng):
    a, b, cost = _assignment(rng, 50)
    res = ottools.sinkhorn(a, b, cost, 1 / 1200, method="sns", maxiter=21)
    assert not res.success
    assert res.status == 1
    assert res.nit == 21 and res.nit_newton == 1
    assert "maximum number of iterations" in res.message.lower()
    assert np.all(np.isfinite(res.plan))


def test_failed_newton_falls_back_to_sinkhorn(rng):
    """With one trial step and a tiny Armijo window, failures trigger Sinkhorn steps."""
    a, b, cost = random_problem(rng, 30, 30)
    res = ottools.sinkhorn(a, b, cost, 0.002, method="sns", tol=1e-9,
                           options={"warmup": 0, "ls_maxiter": 1, "armijo": 0.999,
                                    "fallback_iters": 3, "density": 0.5, "mass_tol": 1.0})
    assert res.success
    # Every Newton step fails here: the solve is fallback blocks of log-domain Sinkhorn
    # iterations from the start, i.e. plain Sinkhorn (to one iteration: the two paths
    # compute the stopping err with different exponentials).
    assert res.nit_newton == 0 and res.nit_sinkhorn >= 3
    log = ottools.sinkhorn(a, b, cost, 0.002, method="log", tol=1e-9, maxiter=100_000)
    assert abs(res.nit - log.nit) <= 1
    np.testing.assert_allclose(res.plan, log.plan, atol=1e-9)


@pytest.mark.parametrize("online", [False, True])
def test_dropped_mass_stays_below_the_error(monkeypatch, online):
    """The sparsified Hessian drops at most min(mass_tol, err / mass) of the plan's mass:
    with mass_tol alone the steps converged linearly once err fell below it."""
    from ottools import _sns

    rng = np.random.default_rng(7)
    x, y = rng.random((300, 10)), rng.random((300, 10))
    geom = ottools.PointCloud(x, y, scale="max")
    seen = []
    cls = _sns.OnlineNewtonStage if online else _sns.NewtonStage
    step, sparsify = cls._step, cls._sparsify

    def spy_step(self, f, g, err):
        self.err_seen = err
        return step(self, f, g, err)

    def spy_sparsify(self, f, g, keep):
        csr = sparsify(self, f, g, keep)
        total = float(self.rows.sum())
        seen.append((total - float(csr[2].sum()), total, self.err_seen / total))
        return csr

    monkeypatch.setattr(cls, "_step", spy_step)
    monkeypatch.setattr(cls, "_sparsify", spy_sparsify)
    mass_tol = 1e-6
    res = ottools.sinkhorn(None, None, geom if online else geom.dense(), 1e-3,
                           method="sns", tol=1e-12,
                           options={"density": 0.5, "mass_tol": mass_tol})
    assert res.success
    assert min(rel for _, _, rel in seen) < 1e-3 * mass_tol  # the rule was exercised
    for dropped, total, rel in seen:
        assert dropped <= 1.001 * min(mass_tol, rel) * total + 1e-15 * total


def _histograms(n):
    """Gaussian bumps on a regular 1-D grid: weights over about 85 orders of magnitude."""
    t = np.linspace(0.0, 1.0, n)
    a = np.exp(-((t - 0.3) / 0.05) ** 2) + 0.5 * np.exp(-((t - 0.7) / 0.1) ** 2)
    b = np.exp(-((t - 0.6) / 0.08) ** 2)
    return t, a / a.sum(), b / b.sum()


def test_rows_and_columns_keep_their_entries_above_the_peak_cut():
    """Histograms whose weights span many orders of magnitude: the mass rule drops every
    entry of the light rows and columns but their largest (n = 2000, reg = 4 h**2:
    232 Newton steps at alpha 1/16 to 1/128, 15 s); the cut at peak_tol of each row's
    and column's largest keeps their shape."""
    t, a, b = _histograms(400)
    reg = 0.3 * (t[1] - t[0]) ** 2
    C = ottools.cost_matrix(t, t)
    runs = {peak: ottools.sinkhorn(a, b, C, reg, options={"peak_tol": peak})
            for peak in (1.0, 1e-3)}
    on = ottools.sinkhorn(a, b, ottools.PointCloud(t[:, None], t[:, None]), reg)
    assert all(r.success for r in runs.values()) and on.success
    assert runs[1e-3].nit_newton < runs[1.0].nit_newton  # (46 against 83)
    assert runs[1e-3].fun == pytest.approx(runs[1.0].fun, rel=1e-9)
    assert on.fun == pytest.approx(runs[1e-3].fun, rel=1e-9)
    P = runs[1e-3].plan
    assert np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum() <= 1e-9


def test_online_cuts_above_the_memory_cap_fall_back_to_the_largest_entries(monkeypatch):
    """The online stage sizes each row block's room by the histogram of the entries;
    entries above the rows' and columns' cuts are not counted. A block that overflows is
    given what it found; past the memory cap the cuts are dropped."""
    from ottools import _sns
    from ottools._kernels import _online_newton as kon

    calls = []
    kept = kon.kept_entries

    def spy(*args):
        out = kept(*args)
        calls.append((args[-4], out[0], out[4].sum()))
        return out

    monkeypatch.setattr(kon, "kept_entries", spy)
    rng = np.random.default_rng(5)
    geom = ottools.PointCloud(rng.random((40, 2)), rng.random((30, 2)))
    reg = 0.01 * geom.cost_extremes()[1]  # (the mass rule keeps every entry at 0.05)
    # a tiny cut keeps every entry, more than the room: a second pass with room for all,
    # and the next steps' first passes with that room (and a quarter more)
    res = ottools.sinkhorn(None, None, geom, reg, method="sns",
                           options={"peak_tol": 1e-300, "density": 1.0})
    assert res.success and res.nit_newton > 0
    assert [ok for _, ok, _ in calls] == [False] + [True] * (len(calls) - 1)
    assert all(peak == 1e-300 for peak, _, _ in calls)
    assert calls[0][2] == calls[1][2] > 0
    # with a cap below that, the pass after the overflow and those of the next steps
    # keep the largest entries only, in the histogram's room
    calls.clear()
    monkeypatch.setattr(_sns, "_ONLINE_KEPT_MAX", 0)
    res = ottools.sinkhorn(None, None, geom, reg, method="sns",
                           options={"peak_tol": 1e-300, "density": 1.0})
    assert res.success and res.nit_newton > 1
    assert calls[0][:2] == (1e-300, False)
    assert all(call == (1.0, True, 0) for call in calls[1:])


def test_online_pass_that_overflows_on_tied_maxima_is_rerun(monkeypatch):
    """Duplicate target points tie each row's largest entry: more entries than the
    histogram's room at peak_tol = 1 (the largest only); the pass is rerun with the room
    it found, and the step is not lost."""
    from ottools._kernels import _online_newton as kon

    calls = []
    kept = kon.kept_entries

    def spy(*args):
        out = kept(*args)
        calls.append(bool(out[0]))
        return out

    monkeypatch.setattr(kon, "kept_entries", spy)
    from ottools import _sns

    monkeypatch.setattr(_sns, "_ONLINE_KEPT_MAX", 0)  # the cap is keep: a tight room
    rng = np.random.default_rng(1)
    x, y = rng.random((120, 2)), np.repeat(rng.random((12, 2)), 10, axis=0)
    geom = ottools.PointCloud(x, y)
    reg = 1e-3 * geom.cost_extremes()[1]
    res = ottools.sinkhorn(None, None, geom, reg, method="sns", maxiter=200,
                           options={"peak_tol": 1.0, "density": 1.0})
    assert res.nit_newton > 0 and not all(calls)  # some passes overflowed ...
    assert all(calls[i + 1] for i, ok in enumerate(calls) if not ok)  # ... then fit


@pytest.mark.parametrize("method, reg", [("sns", 1e-4), ("sns", 1e-5), ("auto", 1e-5)])
def test_failed_steps_raise_the_damping_cap(method, reg):
    # A near-singular mode of a small near-permutation plan: with the damping capped by
    # (err / mass)**2 alone, every step failed from err 2e-5 on, until maxiter.
    rng = np.random.default_rng(256)
    n, m = rng.integers(1, 60), rng.integers(1, 60)
    rng.integers(0, 4), rng.choice([1, 3])  # (the draws of the search that found it)
    x, y = rng.random((n, 3)), rng.random((m, 3))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a[:2], b[:2] = 0.0, 0.0
    a, b = a / a.sum(), b / b.sum()
    C = ottools.cost_matrix(x, y)
    C /= C.max()
    res = ottools.sinkhorn(a, b, C, reg, method=method)
    assert res.success and res.nit < 1000 and res.nit_newton > 0
    P = res.plan
    assert np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum() <= 1e-9


def test_unknown_option():
    with pytest.raises(TypeError, match="Unknown option.*'densty'.*'density'"):
        ottools.sinkhorn(None, None, np.eye(3), 0.1, method="sns", options={"densty": 2})


@pytest.mark.parametrize("opt, val, err, match", [
    ("density", 0.0, ValueError, r"`options\['density'\]` must be in \(0, inf\)"),
    ("armijo", 1.5, ValueError, r"`options\['armijo'\]` must be in \(0, 1\)"),
    ("backtrack", -1, ValueError, r"`options\['backtrack'\]` must be in \(0, 1\)"),
    ("warmup", 2.5, TypeError, r"`options\['warmup'\]` must be an integer"),
    ("warmup_start", -0.1, ValueError, r"`options\['warmup_start'\]` must be"),
    ("cg_maxiter", 0, ValueError, r"`options\['cg_maxiter'\]` must be >= 1"),
    ("density_growth", 0.5, ValueError, r"`options\['density_growth'\]` must be in \[1, inf\)"),
    ("density", "2", TypeError, r"`options\['density'\]` must be a real number"),
])
def test_bad_options(opt, val, err, match):
    with pytest.raises(err, match=match):
        ottools.sinkhorn(None, None, np.eye(3), 0.1, method="sns", options={opt: val})


def test_threads_give_the_serial_results(rng):
    # 600 x 600: past the size where the sweeps run parallel row blocks; both solves end
    # in the Newton stage. Concurrent solves must not see each other (shared buffers,
    # thread-count dependent sums).
    import threading

    a, b, cost = _assignment(rng, 600)
    regs = (1 / 1200, 1 / 600)
    serial = [ottools.sinkhorn(a, b, cost, reg, method="sns") for reg in regs]
    out = [None, None]

    def work(k):
        out[k] = ottools.sinkhorn(a, b, cost, regs[k], method="sns")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for s, r in zip(serial, out):
        assert s.success and s.nit_newton > 0
        assert r is not None, "a thread did not finish"
        assert (r.nit, r.nit_newton, r.status) == (s.nit, s.nit_newton, s.status)
        np.testing.assert_array_equal(r.plan, s.plan)
        np.testing.assert_array_equal(r.f, s.f)


@pytest.mark.parametrize("method", ["auto", "sns"])
def test_newton_steps_are_scale_invariant(method):
    """The same problem with the cost and reg scaled by s: CG's right-hand side held
    reg * gradient, whose squared norm overflowed above s ~ 1e154 (and underflowed
    below ~1e-154): 10,000 iterations and err 0.2 at s = 1e160. Same plan at every s."""
    C = np.random.default_rng(0).random((4, 5))
    base = ottools.sinkhorn(None, None, C, 1e-3, method=method)
    assert base.success and base.nit_newton > 0
    for s in (1e-200, 1e-160, 1e160, 1e200):
        res = ottools.sinkhorn(None, None, C * s, 1e-3 * s, method=method)
        assert res.success and res.nit_newton > 0
        np.testing.assert_allclose(res.plan, base.plan, atol=1e-9)


@pytest.mark.parametrize("method", ["sns", "auto"])
def test_float32_weights_mass_gap_is_part_of_the_floor(method):
    """float32 weights keep a mass gap (3.4e-9 here) that no plan closes: the Newton steps
    ran to maxiter at tol 1e-9 ("increase maxiter"); they stop as stalled (status 4)."""
    rng = np.random.default_rng(2)
    C = rng.random((40, 30))
    a, b = rng.random(40), rng.random(30)
    a, b = (w / w.sum() for w in (a, b))
    a32, b32, C32 = a.astype(np.float32), b.astype(np.float32), C.astype(np.float32)
    res = ottools.sinkhorn(a32, b32, C32, 1e-3, method=method, tol=1e-9)
    assert res.status == 4 and res.nit < 1000 and "Stalled" in res.message
    # the message names the gap (the plan's rounding alone is 3e-13 here), not the
    # stage's own err (the result's err, from the float32 plan, is 2.4e-8)
    assert "near the rounding floor" in res.message
    assert "masses differ by 3.4" in res.message and "err=" not in res.message


def test_stall_far_above_the_floor_blames_the_steps(monkeypatch):
    """A stall more than _NEAR_FLOOR times above the floor is not blamed on the plan's
    rounding (clustered 5-D points, weights over 8 orders, reg 1e-6 of the range
    stalled at 100 times the floor, where log-domain sweeps went below): the message
    says the steps fail and what may converge. (The factor set to 0 here, so that a
    problem that stalls fast stands for one that stalls far above the floor.)"""
    monkeypatch.setattr(ottools._sns, "_NEAR_FLOOR", 0.0)
    rng = np.random.default_rng(2)
    C = rng.random((40, 30))
    a, b = rng.random(40), rng.random(30)
    a, b = (w / w.sum() for w in (a, b))
    res = ottools.sinkhorn(a.astype(np.float32), b.astype(np.float32),
                           C.astype(np.float32), 1e-3, tol=1e-9)
    assert res.status == 4 and "the Newton steps fail" in res.message
    assert "method='log'" in res.message and "near the rounding floor" not in res.message


@pytest.mark.parametrize("method", ["sns", "auto"])
def test_warm_start_far_off_the_gauge_converges(method):
    """A warm start of spread 1e4 x the cost range leaves a gauge of 3e4 after the first
    sweeps: the Newton steps stalled at err 2e-8 (status 4) where log converged. The
    stage centres the potentials when their gauge exceeds max|C|."""
    rng = np.random.default_rng(2)
    C = rng.random((40, 30))
    a, b = rng.random(40), rng.random(30)
    a, b = a / a.sum(), b / b.sum()
    for s in (1e4, 1e5):
        init = (rng.normal(size=40) * s, rng.normal(size=30) * s)
        res = ottools.sinkhorn(a, b, C, 1e-3, method=method, init=init)
        assert res.success and res.err <= 1e-9


def test_cg_tol_of_one_or_more_is_refused():
    """cg_tol >= 1 stops CG before its first iteration: ~270 Newton steps that moved
    nothing, to maxiter."""
    with pytest.raises(ValueError, match=r"`options\['cg_tol'\]` must be in \(0, 1\); got 2"):
        ottools.sinkhorn(None, None, np.eye(3), 0.1, method="sns", options={"cg_tol": 2.0})


def test_stall_from_a_cost_offset_says_to_subtract_it():
    # Costs in [0, 2] shifted by 1e6: the Newton stage's plan exp((f + g - C) / reg)
    # rounds at 1e6 eps / reg (status 4 at err ~1e-7, where C itself gives 1e-11); the
    # message names the offset, and following it converges to the same plan.
    rng = np.random.default_rng(3)
    C = ottools.cost_matrix(rng.random((60, 2)), rng.random((45, 2)))
    a, b = rng.random(60), rng.random(45)
    a, b = a / a.sum(), b / b.sum()
    shifted = C + 1e6
    res = ottools.sinkhorn(a, b, shifted, 1e-3)
    assert res.status == 4
    assert "the costs' offset (min C = 1e+06" in res.message
    assert "subtract min C" in res.message
    fixed = ottools.sinkhorn(a, b, shifted - shifted.min(), 1e-3)
    assert fixed.success
    # (the stalled plan's mass is off by its err: <P, C> by 1e6 err)
    assert fixed.fun + shifted.min() == pytest.approx(res.fun, rel=1e-7)
    assert np.abs(fixed.plan - res.plan).sum() < 1e-6
    plain = ottools.sinkhorn(a, b, C, 1e-3)  # no offset: no such advice
    assert plain.success and "offset" not in plain.message

