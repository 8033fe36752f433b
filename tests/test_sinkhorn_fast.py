"""The fast entropic core: vectorized exp, fused scaling sweep, absorption, relaxation."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import _reference as ref
import ottools
from conftest import random_problem
from ottools._kernels import KernelStatus, _lse
from ottools._kernels import _sinkhorn as k


# --- polynomial exp --------------------------------------------------------------------

def test_exp_into_max_relative_error(rng):
    x = np.concatenate([rng.uniform(-708, 709, 200_000), rng.uniform(-1, 1, 50_000),
                        np.linspace(-708, 709, 10_001)])
    out = np.empty_like(x)
    _lse.exp_into(x, out, np.empty_like(x))
    rel = np.abs(out - np.exp(x)) / np.exp(x)
    # About one ulp when compiled alone; up to ~2.4e-14 has been seen when the process
    # compiled it beside the FASTMATH_SAFE kernels (reassociated range reduction). The
    # iterations tolerate this: err is always recomputed from a libm-exp plan.
    assert rel.max() <= 5e-14
    np.testing.assert_allclose(out, ref.exp_poly(x), rtol=5e-14)


def test_exp_into_special_values():
    x = np.array([-np.inf, -800.0, -746.0, 0.0, 800.0, np.inf, np.nan])
    out = np.empty_like(x)
    _lse.exp_into(x, out, np.empty_like(x))
    np.testing.assert_array_equal(out[:6], [0.0, 0.0, 0.0, 1.0, np.inf, np.inf])
    assert np.isnan(out[6])


def test_exp_into_float32(rng):
    x = rng.uniform(-80, 80, 10_000).astype(np.float32)
    out = np.empty_like(x)
    _lse.exp_into(x, out, np.empty(x.size))
    assert out.dtype == np.float32
    expected = np.exp(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(out, expected, rtol=1.2e-7)


# --- kernels against NumPy twins --------------------------------------------------------

@pytest.mark.parametrize("omega", [1.0, 1.05, 1.5, 1.9])
def test_relaxed_power_is_pow_to_rounding(rng, omega):
    """The binomial series inside its bands (five and eleven terms), pow outside; NaN
    and inf pass through."""
    c = k.relax_coefficients(omega)
    old = rng.random(3000) + 0.1
    d = np.concatenate([rng.uniform(-1, 1, 1000) * 2.0 ** -10,  # the short series
                        rng.uniform(-1, 1, 1000) * 2.0 ** -4,   # the long series
                        np.array([2.0 ** -4, -2.0 ** -4, 2.0 ** -10, -2.0 ** -10]),
                        rng.uniform(-0.9, 3, 996)])              # pow
    new = old * (1 + d)
    got = np.array([k.relaxed(o, x, omega, c) for o, x in zip(old, new)])
    want = old * (new / old) ** omega
    assert np.max(np.abs(got - want) / want) <= 4 * np.finfo(float).eps
    assert np.isnan(k.relaxed(1.0, np.nan, omega, c))
    assert k.relaxed(1.0, np.inf, omega, c) == np.inf


@pytest.mark.parametrize("omega", [1.0, 1.05, 1.5, 1.9])
def test_column_update_is_the_relaxed_power(rng, omega):
    """The vectorized column half: the series inside |d| <= 2**-4, pow outside, to
    rounding; the error sum; zero, negative or NaN scalings flagged."""
    m = 301
    b = rng.random(m) + 0.1
    v = b * (1 + rng.normal(size=m) * 0.1)
    d = np.concatenate([rng.uniform(-1, 1, 150) * 2.0 ** -4, rng.uniform(-0.9, 3, 150),
                        [2.0 ** -4]])
    rng.shuffle(d)
    t = b / (v * (1 + d))  # b / (v t) = 1 + d
    s = np.empty(m)
    for sub in (slice(None), slice(0, 7), slice(0, 1)):
        ok, ce = k._update_columns(b[sub], v[sub], t[sub], s[sub], omega)
        want = v[sub] * (b[sub] / (v[sub] * t[sub])) ** omega
        assert ok
        assert np.max(np.abs(s[sub] - want) / want) <= 4 * np.finfo(float).eps
        # (plain: ce is rounding noise, which FMA contraction rounds differently)
        assert ce == pytest.approx(np.abs(s[sub] * t[sub] - b[sub]).sum(), rel=1e-12,
                                   abs=8 * np.finfo(float).eps * b[sub].sum())
    for bad in (0.0, -1.0, np.nan, np.inf):
        t2 = t.copy()
        t2[100] = bad
        assert not k._update_columns(b, v, t2, s, omega)[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_abs_max_by_integer_bits(rng, dtype):
    from ottools._kernels import _extremes

    C = (rng.random((37, 29)) - 0.7).astype(dtype)
    assert _extremes.abs_max(C) == (float(np.abs(C).max()), False)
    C[5, 3] = -4.5
    assert _extremes.abs_max(C) == (4.5, False)
    for bad, want in ((np.inf, np.inf), (-np.inf, np.inf)):
        D = C.copy()
        D[36, 28] = bad
        assert _extremes.abs_max(D) == (want, False)
    D = C.copy()
    D[0, 0] = np.nan
    D[1, 1] = np.inf
    big, nan = _extremes.abs_max(D)
    assert nan and np.isnan(big)
    assert _extremes.abs_max(-np.abs(D[:1, :1]))[1]  # NaN with the sign bit set
    assert _extremes.abs_max(np.zeros((1, 1), dtype)) == (0.0, False)


def test_build_kernel_and_plan_from_potentials(rng):
    a, b, cost = random_problem(rng, 13, 9)
    f, g = rng.normal(size=13) * 0.1, rng.normal(size=9) * 0.1
    K = np.empty_like(cost)
    k.build_kernel(cost, f, g, 0.05, K, np.empty(9), np.empty(9))
    np.testing.assert_allclose(K, np.exp((f[:, None] + g[None, :] - cost) / 0.05),
                               rtol=1e-14)
    P = np.empty_like(cost)
    rows, cols, lin, _ = k.plan_from_potentials(np.log(a), np.log(b), cost, 0.05, f, g, P)
    expected = ref.plan(a, b, cost, 0.05, f, g)
    np.testing.assert_allclose(P, expected, rtol=1e-14)
    np.testing.assert_allclose(rows, expected.sum(1), rtol=1e-13)
    np.testing.assert_allclose(cols, expected.sum(0), rtol=1e-13)
    np.testing.assert_allclose(lin, (expected * cost).sum(), rtol=1e-13)


@pytest.mark.parametrize("chunks", [1, 3])
def test_plan_from_scalings_equals_plan_from_potentials(rng, chunks):
    a, b, cost = random_problem(rng, 13, 9)
    reg = 0.02
    f, g = rng.normal(size=13) * 0.05, rng.normal(size=9) * 0.05
    u, v = a * np.exp(rng.normal(size=13)), b * np.exp(rng.normal(size=9))
    K = np.exp((f[:, None] + g[None, :] - cost) / reg)
    K[0, 0] = 0.0  # an underflowed entry contributes nothing
    if chunks == 1:
        rows, cols, lin, plogr = k.plan_from_scalings(K, u, v, a, b, cost, f, g, reg)
    else:
        rows, cols, lin, plogr = k.plan_from_scalings_par(K, u, v, a, b, cost, f, g, reg,
                                                          chunks)
    f1, g1 = f + reg * np.log(u / a), g + reg * np.log(v / b)
    P = ref.plan(a, b, cost, reg, f1, g1)
    P[0, 0] = 0.0
    np.testing.assert_allclose(K, P, rtol=1e-13)  # K now holds the plan
    np.testing.assert_allclose(rows, P.sum(1), rtol=1e-13)
    np.testing.assert_allclose(cols, P.sum(0), rtol=1e-13)
    assert lin == pytest.approx((P * cost).sum(), rel=1e-13)
    mask = P > 0
    expected = (P[mask] * np.log(P[mask] / np.outer(a, b)[mask])).sum()
    assert plogr == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("omega", [1.0, 1.5])
def test_scaling_sweep_matches_log_domain_twin(rng, omega):
    a, b, cost = random_problem(rng, 11, 7)
    reg = 0.1
    K = np.exp(-cost / reg)
    u, v = a.copy(), b.copy()
    s, t, unew, cerr = np.empty(7), np.empty(7), np.empty(11), np.zeros(1)
    errs = np.full(7, -1.0)
    nit, code = k.scaling_sweep(K, a, b, u, v, np.inf, omega, 0.0, 6, False, cerr, errs,
                                s, t, unew, np.empty(7))
    assert (nit, code) == (6, KernelStatus.BUDGET)
    # errs[k]: the error of the state after k iterations (the entry state's is unknown).
    assert errs[0] == np.inf and np.all(errs[1:6] > 0) and errs[6] == -1.0
    if omega == 1.0:
        f5, g5 = ref.sinkhorn_log(a, b, cost, reg, 5)
        np.testing.assert_allclose(errs[5], ref.marginal_error(ref.plan(a, b, cost, reg, f5,
                                                                         g5), a, b),
                                   rtol=1e-9)
    f, g = ref.sinkhorn_overrelaxed(a, b, cost, reg, 6, omega)
    np.testing.assert_allclose(u[:, None] * K * v[None, :], ref.plan(a, b, cost, reg, f, g),
                               rtol=1e-12, atol=1e-300)
    # cerr holds the exact column error of the state.
    P = u[:, None] * K * v[None, :]
    np.testing.assert_allclose(cerr[0], np.abs(P.sum(0) - b).sum(), rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("n", range(1, 10))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scaling_sweep_rows_in_fours_and_remainders(rng, n, dtype):
    """The row pass takes rows four at a time plus a remainder: one sweep equals the
    formula for every row count, and a zero row anywhere (a scaling of inf) reports
    NONFINITE with the entry state kept."""
    m = 6
    K = (rng.random((n, m)) + 0.1).astype(dtype)
    a, b = rng.random(n) + 0.5, rng.random(m) + 0.5
    a, b = a / a.sum(), b / b.sum()
    u0, v0 = rng.random(n) + 0.5, rng.random(m) + 0.5
    for omega in (1.0, 1.4):
        u, v = u0.copy(), v0.copy()
        errs, cerr = np.empty(2), np.zeros(1)
        nit, code = k.scaling_sweep(K, a, b, u, v, np.inf, omega, 0.0, 1, False, cerr, errs,
                                    np.empty(m), np.empty(m), np.empty(n),
                                    np.empty(m, dtype=dtype))
        assert (nit, code) == (1, KernelStatus.BUDGET)
        K64 = K.astype(np.float64)
        un = u0 * (a / (u0 * (K64 @ v0))) ** omega
        vn = v0 * (b / (v0 * (K64.T @ un))) ** omega
        rtol = 1e-13 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(u, un, rtol=rtol)
        np.testing.assert_allclose(v, vn, rtol=rtol)
    for zero in range(n):
        Kz = K.copy()
        Kz[zero] = 0.0
        u, v = u0.copy(), v0.copy()
        nit, code = k.scaling_sweep(Kz, a, b, u, v, np.inf, 1.0, 0.0, 1, False, np.zeros(1),
                                    np.empty(2), np.empty(m), np.empty(m), np.empty(n),
                                    np.empty(m, dtype=dtype))
        assert (nit, code) == (0, KernelStatus.NONFINITE)
        np.testing.assert_array_equal(u, u0)
        np.testing.assert_array_equal(v, v0)


@pytest.mark.parametrize("bound", [1e50, 10.0])
def test_stabilized_iterates_are_log_domain_iterates(rng, bound, monkeypatch):
    # reg = 1e-3 on a unit cost: exp(-C / reg) underflows; bound=10 absorbs constantly.
    from ottools import _sweeps

    monkeypatch.setitem(_sweeps.ABSORB_BOUND, np.dtype(np.float64), bound)
    a, b, cost = random_problem(rng, 20, 15)
    reg = 1e-3
    res = ottools.sinkhorn(a, b, cost, reg, method="log", tol=0.0, maxiter=9)
    assert (res.nit, res.status) == (9, 1)
    fr, gr = ref.sinkhorn_log(a, b, cost, reg, 9)
    np.testing.assert_allclose(res.plan, ref.plan(a, b, cost, reg, fr, gr), rtol=1e-8,
                               atol=1e-15)


@pytest.mark.parametrize("chunks", [2, 3, 7])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parallel_row_blocks_match_serial_kernels(rng, chunks, dtype):
    # The row-block (prange) paths of the sweep, the kernel build and the plan give the
    # serial results up to the order of the float sums.
    a, b, cost = random_problem(rng, 50, 23)
    a, b, cost = a.astype(dtype), b.astype(dtype), cost.astype(dtype)
    reg = 0.05
    f, g = rng.normal(size=50) * 0.01, rng.normal(size=23) * 0.01
    K1, K2 = np.empty_like(cost), np.empty_like(cost)
    k.build_kernel(cost, f, g, reg, K1, np.empty(23), np.empty(23))
    k.build_kernel_par(cost, f, g, reg, K2, np.empty((chunks, 23)), np.empty((chunks, 23)))
    np.testing.assert_array_equal(K1, K2)
    out = []
    for nc in (1, chunks):
        u, v = a.astype(np.float64), b.astype(np.float64)
        cerr, errs = np.zeros(1), np.empty(5)
        args = (K1, u.copy(), v.copy(), u, v, np.inf, 1.3, 0.0, 5, False, cerr, errs,
                np.empty(23), np.empty(23), np.empty(50), np.empty(23, dtype=dtype))
        if nc == 1:
            nit, code = k.scaling_sweep(*args)
        else:
            nit, code = k.scaling_sweep_par(*args, np.empty((nc, 23)), np.empty((nc, 2)))
        assert (nit, code) == (5, KernelStatus.BUDGET)
        out.append((u, v, errs[4]))
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=rtol)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=rtol)
    assert out[1][2] == pytest.approx(out[0][2], rel=1e-6)
    P1, P2 = np.empty_like(cost), np.empty_like(cost)
    p1 = (P1,) + k.plan_from_potentials(np.log(a), np.log(b), cost, dtype(reg), f, g, P1)
    p2 = (P2,) + k.plan_from_potentials_par(np.log(a), np.log(b), cost, dtype(reg), f, g,
                                            chunks, P2)
    np.testing.assert_array_equal(p1[0], p2[0])
    np.testing.assert_array_equal(p1[1], p2[1])
    np.testing.assert_allclose(p2[2], p1[2], rtol=1e-13)
    assert p2[3] == pytest.approx(p1[3], rel=1e-13)
    assert p2[4] == pytest.approx(p1[4], rel=1e-13, abs=1e-15)


def test_stabilized_falls_back_to_exact_log_iteration(rng):
    # Potentials so far off that every kernel entry underflows: K = 0.
    a, b, cost = random_problem(rng, 12, 10)
    reg = 1e-3
    f0, g0 = np.full(12, -3.0), np.zeros(10)
    res = ottools.sinkhorn(a, b, cost, reg, method="log", tol=0.0, maxiter=5,
                           init=(f0, g0))
    fr, gr = ref.sinkhorn_log(a, b, cost, reg, 5, f=f0, g=g0)
    np.testing.assert_allclose(res.plan, ref.plan(a, b, cost, reg, fr, gr), rtol=1e-8,
                               atol=1e-15)
    assert res.nit == 5 and res.status == 1
    assert np.all(np.isfinite(res.f)) and np.all(np.isfinite(res.g))


# --- public behaviour -------------------------------------------------------------------

@pytest.mark.parametrize("reg", [1e-1, 1e-2, 1e-3])
def test_auto_is_exact_and_matches_plain_log(rng, reg):
    a, b, cost = random_problem(rng, 40, 30)
    res = ottools.sinkhorn(a, b, cost, reg, tol=1e-9, maxiter=50_000)
    assert res.success and res.method == "auto"
    assert res.err <= 1e-9
    assert res.err == pytest.approx(ref.marginal_error(res.plan, a, b), rel=1e-6, abs=1e-15)
    plain = ottools.sinkhorn(a, b, cost, reg, method="log", tol=1e-9, maxiter=50_000)
    assert plain.success
    assert res.nit <= plain.nit
    np.testing.assert_allclose(res.plan, plain.plan, atol=2e-9)
    assert res.fun == pytest.approx(plain.fun, rel=1e-7, abs=1e-9)


def test_auto_matches_pot(rng):
    ot = pytest.importorskip("ot")
    a, b, cost = random_problem(rng, 30, 25)
    res = ottools.sinkhorn(a, b, cost, 0.02, tol=1e-10, maxiter=50_000)
    assert res.success
    P = ot.sinkhorn(a, b, cost, 0.02, method="sinkhorn_log", stopThr=1e-13,
                    numItermax=100_000)
    np.testing.assert_allclose(res.plan, P, atol=1e-9)


def test_float32_log_fallback(rng):
    # float32 kernel, every entry underflowing at the start: the exact log iteration
    # (float64 potentials over the float32 cost) takes over.
    a, b, cost = random_problem(rng, 15, 12, dtype=np.float32)
    res = ottools.sinkhorn(a, b, cost, 1e-2, method="log", tol=1e-4,
                           init=(np.full(15, -2.0), np.zeros(12)))
    assert res.success and res.plan.dtype == np.float32


def test_float32_faster_path_keeps_dtype(rng):
    a, b, cost = random_problem(rng, 50, 40, dtype=np.float32)
    res = ottools.sinkhorn(a, b, cost, 0.02, tol=1e-5)
    assert res.success
    assert res.plan.dtype == res.f.dtype == res.g.dtype == np.float32
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    res64 = ottools.sinkhorn(a64 / a64.sum(), b64 / b64.sum(), cost.astype(np.float64),
                             0.02, tol=1e-9)
    assert res64.success
    np.testing.assert_allclose(res.plan, res64.plan, atol=2e-5)


@pytest.mark.parametrize("method", ["auto", "log", "scaling"])
def test_zero_weights(rng, method):
    a, b, cost = random_problem(rng, 20, 16, zeros=3)
    res = ottools.sinkhorn(a, b, cost, 0.05, method=method, tol=1e-9)
    assert res.success
    np.testing.assert_array_equal(res.plan[a == 0], 0.0)
    np.testing.assert_array_equal(res.plan[:, b == 0], 0.0)
    assert np.all(np.isfinite(res.f)) and np.all(np.isfinite(res.g))


def test_scaling_still_reports_underflow(rng):
    a, b, cost = random_problem(rng, 20, 16)
    cost[0] += 1000.0  # exp(-(C - min C) / reg) underflows on the whole first row
    res = ottools.sinkhorn(a, b, cost, 0.5, method="scaling")
    assert not res.success and res.status == 2
    assert np.all(np.isfinite(res.plan)) and np.all(np.isfinite(res.f))
    for method in ("log", "auto"):
        res = ottools.sinkhorn(a, b, cost, 0.5, method=method, maxiter=50_000)
        assert res.success and res.method == method


@pytest.mark.parametrize("options", [{"epsilon_scaling": True},
                                     {"epsilon_scaling": True, "overrelaxation": True,
                                      "epsilon_decay": 0.1}])
def test_epsilon_scaling_reaches_the_same_plan(rng, options):
    a, b, cost = random_problem(rng, 30, 30)
    res = ottools.sinkhorn(a, b, cost, 2e-3, method="log", tol=1e-9, maxiter=50_000,
                           options=options)
    plain = ottools.sinkhorn(a, b, cost, 2e-3, method="log", tol=1e-9, maxiter=50_000)
    assert res.success and plain.success
    np.testing.assert_allclose(res.plan, plain.plan, atol=5e-9)


def test_callback_blocks_with_overrelaxation(rng):
    a, b, cost = random_problem(rng, 25, 20)
    seen = []

    def callback(r):
        seen.append((r.nit, r.err, r.f.dtype))
        if r.nit >= 30:
            raise StopIteration

    res = ottools.sinkhorn(a, b, cost, 1e-3, method="log", callback=callback,
                           options={"overrelaxation": True})
    assert res.status == 3 and not res.success
    assert [s[0] for s in seen] == [10, 20, 30]
    assert all(s[2] == np.float64 for s in seen)
    # auto: the callback follows every stage (annealing included), nit increasing.
    seen.clear()
    res = ottools.sinkhorn(a, b, cost, 1e-3, callback=callback)
    assert res.status == 3 and res.nit == seen[-1][0] >= 30
    assert all(x[0] < y[0] for x, y in zip(seen, seen[1:]))
    # Driving the kernel in blocks does not change the iterates, relaxed or not.
    for method in ("log", "auto"):
        res2 = ottools.sinkhorn(a, b, cost, 1e-3, method=method, tol=0.0, maxiter=60)
        res3 = ottools.sinkhorn(a, b, cost, 1e-3, method=method, tol=0.0, maxiter=60,
                                callback=lambda r: None)
        assert res2.nit == res3.nit == 60
        np.testing.assert_allclose(res2.plan, res3.plan, rtol=1e-10, atol=1e-300)


def test_unknown_option_is_refused(rng):
    a, b, cost = random_problem(rng, 5, 4)
    with pytest.raises(TypeError, match="overrelax"):
        ottools.sinkhorn(a, b, cost, 0.1, method="scaling",
                         options={"overrelaxation": True})


@given(n=st.integers(1, 12), m=st.integers(1, 12), seed=st.integers(0, 2**31),
       logreg=st.floats(-3, 0))
def test_auto_random_problems(n, m, seed, logreg):
    rng = np.random.default_rng(seed)
    a, b, cost = random_problem(rng, n, m)
    reg = 10.0**logreg
    res = ottools.sinkhorn(a, b, cost, reg, tol=1e-8, maxiter=100_000)
    assert res.success
    assert ref.marginal_error(res.plan, a, b) <= 1e-8 * (1 + 1e-6)
    assert np.all(np.isfinite(res.f)) and np.all(np.isfinite(res.g))


@pytest.mark.parametrize("reg", [1e-2, 1e-3])
def test_refined_overrelaxation_cuts_iterations(rng, reg):
    # Iteration counts, not times: the over-relaxation (rate estimate refined by Young's
    # relation) needs a small fraction of plain Sinkhorn's iterations at small reg, and
    # converges to the same plan.
    a, b, cost = random_problem(rng, 200, 200)
    res = ottools.sinkhorn(a, b, cost, reg, tol=1e-8, maxiter=100_000)
    plain = ottools.sinkhorn(a, b, cost, reg, method="log", tol=1e-8, maxiter=100_000)
    assert res.success and plain.success
    assert res.nit * (2.5 if reg == 1e-2 else 8) <= plain.nit
    np.testing.assert_allclose(res.plan, plain.plan, atol=1e-8)


# --- the schedule of the over-relaxation rule -----------------------------------------

def _decide(errs, early):
    from ottools._kernels import _relax
    st, chk = _relax.new_state(True)
    win = np.ascontiguousarray(errs, dtype=np.float64)
    wait = _relax.update(st, chk, win, win.size, early)
    return st[_relax.OMEGA], wait


@given(st.floats(0.3, 0.995))
def test_early_decision_relaxes_on_a_settled_rate(kappa):
    from ottools._kernels import _relax
    errs = kappa ** np.arange(_relax.EARLY - 1)
    omega, wait = _decide(errs, True)
    assert wait == _relax.DECIDE
    # The rate of the first sweeps under-estimates the asymptotic one: 1 - kappa is
    # taken as EARLY_BOOST times the observed 1 - r.
    boosted = 1 - _relax.EARLY_BOOST * (1 - kappa)
    assert omega == pytest.approx(min(1.9, 2 / (1 + np.sqrt(1 - boosted))), rel=1e-9)
    assert omega > min(1.9, 2 / (1 + np.sqrt(1 - kappa))) or omega == 1.9


@pytest.mark.parametrize("growth", [0.15, 0.3])
def test_early_decision_waits_while_the_rate_grows(growth):
    # Rates still moving fast towards 1 (1 - r shrinking by more than SETTLED_WITHIN a
    # step; small reg: the transient of the first sweeps) would give too small an omega:
    # the rule waits for FIRST sweeps and then uses the rate of the last 10 errors.
    from ottools._kernels import _relax
    rates = 1 - 0.2 * (1 - growth) ** np.arange(_relax.EARLY - 2)
    errs = np.concatenate([[1.0], np.cumprod(rates)])
    omega, wait = _decide(errs, True)
    assert omega == 1.0 and wait == _relax.FIRST - _relax.EARLY
    # Not early: the rate over the window decides at once.
    omega, wait = _decide(errs, False)
    assert omega > 1.0 and wait == _relax.DECIDE


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_c_transform_of_zero_weight_rows_and_columns(dtype):
    # The potentials of zero-weight points: a kernel reading the cost in place (SciPy's
    # logsumexp on copied blocks took ~90 % of a 784-bin histogram problem's call).
    from scipy.special import logsumexp

    rng = np.random.default_rng(0)
    C = (rng.random((40, 30)) * 5).astype(dtype)
    Ct = np.asfortranarray(C)  # any layout
    rows = np.array([0, 7, 39], dtype=np.int64)
    cols = np.array([1, 2, 5, 29], dtype=np.int64)
    pot = rng.normal(size=cols.size)
    logw = np.log(rng.random(cols.size))
    prow = rng.normal(size=rows.size)
    logr = np.log(rng.random(rows.size))
    for reg in (1.0, 1e-3):
        sub = C[np.ix_(rows, cols)].astype(np.float64)
        want_r = -reg * logsumexp(logw[None] + (pot[None] - sub) / reg, axis=1)
        want_c = -reg * logsumexp(logr[:, None] + (prow[:, None] - sub) / reg, axis=0)
        for cost in (C, Ct):
            out = np.empty(rows.size)
            _lse.c_transform_sub(cost, rows, cols, pot, logw, reg, out)
            np.testing.assert_allclose(out, want_r, rtol=1e-13, atol=1e-13 * reg)
            out = np.empty(cols.size)
            _lse.c_transform_sub_cols(cost, rows, cols, prow, logr, reg, out)
            np.testing.assert_allclose(out, want_c, rtol=1e-13, atol=1e-13 * reg)
