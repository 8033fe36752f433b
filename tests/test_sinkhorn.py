import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ottools
from ottools import OTResult, sinkhorn

import _reference as ref
from conftest import random_problem


@st.composite
def problems(draw, dtype=np.float64, reg_range=(1e-3, 1.0)):
    n = draw(st.integers(1, 60))
    m = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    zeros_a = draw(st.integers(0, max(0, n - 1)))
    zeros_b = draw(st.integers(0, max(0, m - 1)))
    x = rng.random((n, 2))
    y = rng.random((m, 2))
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    a = rng.random(n) + 0.05
    b = rng.random(m) + 0.05
    a[rng.permutation(n)[:zeros_a]] = 0
    b[rng.permutation(m)[:zeros_b]] = 0
    a /= a.sum()
    b /= b.sum()
    lo, hi = np.log10(reg_range[0]), np.log10(reg_range[1])
    reg = 10 ** draw(st.floats(lo, hi)) * max(cost.max(), 1e-12)
    return a.astype(dtype), b.astype(dtype), cost.astype(dtype), float(reg)


def pot_plan(a, b, cost, reg):
    ot = pytest.importorskip("ot")
    a64, b64, c64 = (np.asarray(t, dtype=np.float64) for t in (a, b, cost))
    b64 = b64 * (a64.sum() / b64.sum())  # float32 masses differ by rounding: POT would stall
    with np.errstate(divide="ignore"):
        return ot.sinkhorn(a64, b64, c64, reg, method="sinkhorn_log", stopThr=1e-13,
                           numItermax=50_000, warn=False)


# ---------------------------------------------------------------- agreement with POT
@settings(max_examples=20)
@given(problems())
def test_plan_equals_pot_float64(prob):
    a, b, cost, reg = prob
    res = sinkhorn(a, b, cost, reg, tol=1e-10, maxiter=100_000)
    if not res.success:
        # Sinkhorn's linear rate can need > 1e5 iterations at reg = 1e-3 max(C): then the
        # failure must be honest (status 1, finite plan), and POT cannot converge either.
        assert res.status == 1 and np.all(np.isfinite(res.plan)) and np.isfinite(res.err)
        assume(False)
    assert res.err <= 1e-10
    P = pot_plan(a, b, cost, reg)
    assume(ref.marginal_error(P, a, b) <= 1e-9)  # compare only where POT converged too
    np.testing.assert_allclose(res.plan, P, rtol=0, atol=1e-7)


@settings(max_examples=20)
@given(problems(dtype=np.float32, reg_range=(1e-2, 1.0)))
def test_plan_equals_pot_float32(prob):
    a, b, cost, reg = prob
    res = sinkhorn(a, b, cost, reg, tol=1e-4, maxiter=20_000)
    assert res.success, res.message
    assert res.plan.dtype == np.float32 and res.f.dtype == np.float32
    np.testing.assert_allclose(res.plan, pot_plan(a, b, cost, reg), rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["log", "scaling"])
def test_methods_agree(rng, method):
    a, b, cost = random_problem(rng, 40, 30, zeros=3)
    ref_res = sinkhorn(a, b, cost, 0.05, method="log", tol=1e-12)
    res = sinkhorn(a, b, cost, 0.05, method=method, tol=1e-12)
    assert res.success and res.method == method
    np.testing.assert_allclose(res.plan, ref_res.plan, atol=1e-12)
    np.testing.assert_allclose(res.f, ref_res.f, atol=1e-9)
    np.testing.assert_allclose(res.g, ref_res.g, atol=1e-9)


# ---------------------------------------------------------------- invariants
@given(problems())
def test_success_means_err_below_tol_and_strong_duality(prob):
    a, b, cost, reg = prob
    res = sinkhorn(a, b, cost, reg, tol=1e-9, maxiter=100_000)
    assert isinstance(res, OTResult)
    assert np.all(np.isfinite(res.plan)) and np.all(np.isfinite(res.f)) and np.all(np.isfinite(res.g))
    assert res.success == (res.status == 0)
    if res.success:
        assert res.err <= 1e-9
        # err is what it says: recompute it from the plan.
        assert abs(ref.marginal_error(res.plan, a, b) - res.err) <= 1e-12
        # fun = <P,C> + reg KL(P|a x b) equals the dual objective at convergence.
        P = res.plan
        mask = P > 0
        kl = np.sum(P[mask] * np.log(P[mask] / np.outer(a, b)[mask])) - P.sum() + 1.0
        assert res.fun == pytest.approx(res.cost + reg * kl, rel=1e-8, abs=1e-10)
        assert res.cost == pytest.approx(np.sum(P * cost), rel=1e-10, abs=1e-14)
        dual = res.f @ a + res.g @ b - reg * (P.sum() - 1.0)
        assert res.dual_value == pytest.approx(dual, rel=1e-10, abs=1e-12)
        scale = max(abs(res.fun), reg, 1e-12)
        assert abs(res.fun - res.dual_value) <= 1e-6 * scale + 10 * res.err * np.abs(cost).max()


def test_potentials_reproduce_plan_and_are_centred(rng):
    a, b, cost = random_problem(rng, 25, 35, zeros=4)
    res = sinkhorn(a, b, cost, 0.02, tol=1e-12)
    assert res.success
    np.testing.assert_allclose(ref.plan(a, b, cost, 0.02, res.f, res.g), res.plan, atol=1e-15)
    assert res.f @ a == pytest.approx(res.g @ b, abs=1e-12)
    assert np.all(res.plan[a == 0] == 0) and np.all(res.plan[:, b == 0] == 0)


def test_cost_tends_to_emd(rng):
    ot = pytest.importorskip("ot")
    a, b, cost = random_problem(rng, 30, 20)
    exact = ot.emd2(a, b, cost)
    gaps = []
    for reg in [1e-1, 1e-2, 1e-3, 1e-4]:
        res = sinkhorn(a, b, cost, reg, tol=1e-10, maxiter=1_000_000)
        assert res.success, res.message
        gaps.append(res.cost - exact)
    assert gaps[-1] < 1e-3 * exact + 1e-6
    assert all(g >= -1e-9 for g in gaps)
    assert gaps[-1] < gaps[0]


def test_symmetry_of_transposed_problem(rng):
    a, b, cost = random_problem(rng, 20, 15)
    r1 = sinkhorn(a, b, cost, 0.03, tol=1e-12)
    r2 = sinkhorn(b, a, cost.T, 0.03, tol=1e-12)
    np.testing.assert_allclose(r1.plan, r2.plan.T, atol=1e-12)
    assert r1.fun == pytest.approx(r2.fun, rel=1e-10)


# ---------------------------------------------------------------- naive twins
@pytest.mark.parametrize("k", [1, 2, 7])
def test_log_iterations_equal_naive_twin(rng, k):
    a, b, cost = random_problem(rng, 17, 23)
    res = sinkhorn(a, b, cost, 0.05, method="log", tol=0.0, maxiter=k)
    f, g = ref.sinkhorn_log(a, b, cost, 0.05, k)
    assert res.nit == k and res.status == 1
    np.testing.assert_allclose(res.plan, ref.plan(a, b, cost, 0.05, f, g), atol=1e-13)


@pytest.mark.parametrize("k", [1, 3])
def test_scaling_iterations_equal_naive_twin(rng, k):
    a, b, cost = random_problem(rng, 12, 9)
    res = sinkhorn(a, b, cost, 0.1, method="scaling", tol=0.0, maxiter=k)
    u, v = ref.sinkhorn_scaling(a, b, cost, 0.1, k)
    P = u[:, None] * np.exp(-cost / 0.1) * v[None, :]
    assert res.nit == k
    np.testing.assert_allclose(res.plan, P, atol=1e-13)


# ---------------------------------------------------------------- options, callback, init
def test_auto_echoes_and_matches_log(rng):
    a, b, cost = random_problem(rng, 30, 30)
    for reg in [0.1, 1e-3]:
        res = sinkhorn(a, b, cost, reg, maxiter=100_000)
        plain = sinkhorn(a, b, cost, reg, method="log", maxiter=100_000)
        assert res.method == "auto" and res.success and plain.success
        assert res.nit <= plain.nit  # over-relaxation never costs iterations here
        np.testing.assert_allclose(res.plan, plain.plan, atol=1e-9)


def test_scaling_underflow_reports_nonfinite_without_nan(rng):
    a, b, cost = random_problem(rng, 20, 20)
    res = sinkhorn(a, b, cost * 100, 1e-2, method="scaling")
    assert res.status == 2 and not res.success
    assert "Non-finite" in res.message
    assert np.all(np.isfinite(res.plan)) and np.all(np.isfinite(res.f))
    # auto never under/overflows: it answers in the log domain.
    res = sinkhorn(a, b, cost * 100, 1e-2, maxiter=100_000)
    assert res.success and res.method == "auto"


def test_scaling_kernel_underflow_is_reported_not_converged():
    """Kernel entries that underflow to 0 leave the scaling form another problem, on the
    rest of the support: it converged there and reported success with a plan off by 0.17
    (POT's log-domain plan and SNS agree). Now: status 2, and the plan is that of the
    returned potentials; balanced and unbalanced."""
    C = np.array([[0.08, 0.27, 0.62, 0.93], [0.08, 0.63, 0.78, 0.51],
                  [0.75, 0.88, 0.50, 0.79]])
    a = np.array([0.2, 0.8, 0.9])
    b = np.array([0.2, 0.2, 0.5, 0.4]) * 1.9 / 1.3
    res = sinkhorn(a, b, C, 1e-3, method="scaling")
    assert res.status == 2 and not res.success and "Underflow" in res.message
    P = np.outer(a, b) * np.exp((res.f[:, None] + res.g[None, :] - C) / 1e-3)
    np.testing.assert_allclose(res.plan, P, rtol=1e-9)
    good = sinkhorn(a, b, C, 1e-3, method="sns")
    assert good.success
    f, g = ref.sinkhorn_log(a, b, C, 1e-3, 20_000)
    np.testing.assert_allclose(good.plan, ref.plan(a, b, C, 1e-3, f, g), atol=1e-8)
    C2 = np.array([[0.82, 0.34, 0.04, 0.57], [0.15, 0.72, 0.35, 0.46],
                   [0.98, 0.78, 0.84, 0.56], [0.94, 0.02, 0.89, 0.39]])
    a2, b2 = np.array([0.3, 0.6, 1.0, 0.4]), np.array([1.0, 0.6, 1.1, 0.9])
    res = sinkhorn(a2, b2, C2, 1e-3, reg_m=1.0, method="scaling")
    assert res.status == 2 and not res.success and "Underflow" in res.message


def test_scaling_kernel_underflow_where_the_plan_has_no_mass_converges():
    """Entries exp(-1000) are 0 in the kernel and in the optimal plan alike: the plan of
    the potentials confirms the scaling form's answer."""
    C = np.array([[0.0, 1000.0, 1.0], [1000.0, 0.0, 1000.0], [1.0, 1000.0, 0.0]])
    a = np.full(3, 1 / 3)
    res = sinkhorn(a, a, C, 1.0, method="scaling")
    assert res.success and res.status == 0
    np.testing.assert_allclose(res.plan, sinkhorn(a, a, C, 1.0, method="log").plan,
                               atol=1e-12)


def test_float32_small_reg_stays_finite(rng):
    a, b, cost = random_problem(rng, 30, 30, dtype=np.float32)
    res = sinkhorn(a, b, cost, 1e-3, tol=1e-4, maxiter=20_000)
    assert res.plan.dtype == np.float32
    assert np.all(np.isfinite(res.plan)) and res.success
    ref64 = sinkhorn(a.astype(float), b.astype(float), cost.astype(float), 1e-3, tol=1e-10,
                     maxiter=100_000)
    np.testing.assert_allclose(res.plan, ref64.plan, atol=2e-4)


def test_maxiter_gives_honest_failure(rng):
    a, b, cost = random_problem(rng, 30, 30)
    res = sinkhorn(a, b, cost, 1e-3, maxiter=5)
    assert not res.success and res.status == 1 and res.nit == 5
    assert "maxiter" in res.message and res.err > 1e-9


def test_warm_start_cuts_iterations(rng):
    a, b, cost = random_problem(rng, 40, 40)
    cold = sinkhorn(a, b, cost, 0.01, method="log", tol=1e-10)
    warm = sinkhorn(a, b, cost, 0.01, method="log", tol=1e-10, init=(cold.f, cold.g))
    assert warm.success and warm.nit <= 1 < cold.nit
    np.testing.assert_allclose(warm.plan, cold.plan, atol=1e-10)


def test_epsilon_scaling_converges_to_same_plan(rng):
    a, b, cost = random_problem(rng, 40, 40)
    plain = sinkhorn(a, b, cost, 1e-3, method="log", tol=1e-10, maxiter=100_000)
    scaled = sinkhorn(a, b, cost, 1e-3, method="log", tol=1e-10, maxiter=100_000,
                      options={"epsilon_scaling": True})
    assert scaled.success
    np.testing.assert_allclose(scaled.plan, plain.plan, atol=1e-9)


@pytest.mark.parametrize("method", ["log", "scaling"])
def test_callback_sees_progress_and_can_stop(rng, method):
    a, b, cost = random_problem(rng, 20, 20)
    seen = []

    def cb(inter):
        assert isinstance(inter, OTResult)
        seen.append((inter.nit, inter.err))
        if inter.nit >= 30:
            raise StopIteration

    res = sinkhorn(a, b, cost, 1e-3, method=method, callback=cb, options={"check_every": 10})
    assert [s[0] for s in seen] == [10, 20, 30]
    assert res.status == 3 and not res.success and res.nit == 30
    assert "callback" in res.message
    # The callback path gives the same answer as the single-call path.
    full = sinkhorn(a, b, cost, 0.05, method=method, tol=1e-11)
    cbres = sinkhorn(a, b, cost, 0.05, method=method, tol=1e-11, callback=lambda r: None)
    assert cbres.success and cbres.nit == full.nit
    np.testing.assert_allclose(cbres.plan, full.plan, atol=1e-14)


def test_lists_and_int_arrays_are_accepted():
    res = sinkhorn([1, 1], [1, 1], np.array([[0, 1], [1, 0]]), 0.5)
    assert res.success and res.plan.dtype == np.float64
    assert ottools.sinkhorn(None, None, [[0.0, 2.0, 1.0]], 1.0).plan.shape == (1, 3)


def test_float32_stays_float32(rng):
    a, b, cost = random_problem(rng, 10, 12, dtype=np.float32)
    for method in ["log", "scaling"]:
        res = sinkhorn(a, b, cost, 0.1, method=method, tol=1e-5)
        assert res.success
        assert res.plan.dtype == res.f.dtype == res.g.dtype == np.float32


# ---------------------------------------------------------------- bad input
C = np.ones((3, 2))
A = np.full(3, 1 / 3)
B = np.full(2, 1 / 2)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(a=[-0.5, 1.0, 0.5]), ValueError, "`a` must be non-negative"),
        (dict(a=[np.nan, 0.5, 0.5]), ValueError, "`a` must be finite"),
        (dict(b=[np.inf, 0.5]), ValueError, "`b` must be finite"),
        (dict(a=[0.0, 0.0, 0.0]), ValueError, "`a` must have a positive sum"),
        (dict(b=[0.3, 0.3]), ValueError, "same total mass"),
        (dict(a=[0.5, 0.5]), ValueError, r"`a` must have length 3: `cost` has shape \(3, 2\) \(3 rows\), but `a` has length 2"),
        (dict(b=[[0.5, 0.5]]), ValueError, "`b` must be 1-D"),
        (dict(cost=np.ones(3)), ValueError, "`cost` must be 2-D"),
        (dict(cost=np.ones((0, 2)), a=None), ValueError, "`cost` must not be empty"),
        (dict(cost=np.array([[0, np.nan], [1, 1], [1, 1]])), ValueError, "`cost` must be finite; got NaN"),
        (dict(cost=np.array([[0, np.inf], [1, 1], [1, 1]])), ValueError, "`cost` must be finite; got inf"),
        (dict(cost=np.array([["a", "b"]] * 3)), TypeError, "`cost` must hold real numbers"),
        (dict(reg=0.0), ValueError, "`reg` must be a positive finite number"),
        (dict(reg=-0.1), ValueError, "`reg` must be a positive finite number; got -0.1"),
        (dict(reg=np.nan), ValueError, "`reg` must be a positive"),
        (dict(reg="0.1"), TypeError, "`reg` must be a real number"),
        (dict(method="newton"), ValueError, "Unknown method 'newton'; valid: 'auto', 'log'"),
        (dict(options={"tolerance": 1}), TypeError, "Unknown option\\(s\\) 'tolerance'"),
        (dict(method="log", options={"check_evry": 1}), TypeError, "'check_evry' for method='log'"),
        (dict(maxiter=10.5), TypeError, "`maxiter` must be an integer"),
        (dict(maxiter=-1), ValueError, "`maxiter` must be >= 0"),
        (dict(tol=-1.0), ValueError, "`tol` must be a non-negative"),
        (dict(init=(np.zeros(2), np.zeros(2))), ValueError, "`init` potentials must have lengths"),
        (dict(init=np.zeros(3)), TypeError, "`init` must be a pair"),
        (dict(callback=3), TypeError, "`callback` must be callable"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = dict(a=A, b=B, cost=C, reg=0.1)
    args.update(kwargs)
    a, b, cost, reg = args.pop("a"), args.pop("b"), args.pop("cost"), args.pop("reg")
    with pytest.raises(exc, match=match):
        sinkhorn(a, b, cost, reg, **args)


@pytest.mark.parametrize("kind", ["csr_array", "coo_matrix"])
def test_scipy_sparse_is_refused_with_pointer(kind):
    """A sparse cost (or weight vector) is refused by the shared validation with a
    message that names it and says what to pass, not "got dtype object"."""
    import scipy.sparse

    sparse = getattr(scipy.sparse, kind)
    msg = (rf"`cost` is a scipy.sparse {kind}, which is not accepted: pass a dense NumPy "
           r"array \(`cost.toarray\(\)`\) or an `ottools.PointCloud`")
    for solve in (lambda c: sinkhorn(None, None, c, 0.1),
                  lambda c: ottools.emd(None, None, c),
                  lambda c: ottools.sparsity_constrained_ot(None, None, c, 0.1, 2)):
        with pytest.raises(TypeError, match=msg):
            solve(sparse(C))
    # (a sparse vector is 2-D: the hint flattens it)
    with pytest.raises(TypeError,
                       match=r"`a` is a scipy.sparse .*`a.toarray\(\).ravel\(\)`\)\.$"):
        sinkhorn(sparse(A[None]), None, C, 0.1)


def test_torch_tensor_is_refused_with_pointer():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="ottools.torch"):
        sinkhorn(None, None, torch.ones(3, 2), 0.1)
    with pytest.raises(TypeError, match="`a` is a torch.Tensor"):
        sinkhorn(torch.full((3,), 1 / 3), None, C, 0.1)


def test_mass_gap_below_rtol_is_rescaled_and_converges(rng):
    a, b, cost = random_problem(rng, 15, 12)
    res = sinkhorn(a, b * (1 + 5e-7), cost, 0.05, tol=1e-10)
    assert res.success and res.err <= 1e-10
    np.testing.assert_allclose(res.plan.sum(0), b, rtol=1e-6)


def test_default_tol_follows_dtype(rng):
    a, b, cost = random_problem(rng, 30, 20, dtype=np.float32)
    for method in ["auto", "log", "scaling", "sns"]:
        res = sinkhorn(a, b, cost, 0.05, method=method)
        assert res.success and res.err <= 1e-4 and res.plan.dtype == np.float32, method
    res64 = sinkhorn(a.astype(float), b.astype(float), cost.astype(float), 0.05)
    assert res64.success and res64.err <= 1e-9


def test_auto_has_its_own_checked_options(rng):
    a, b, cost = random_problem(rng, 20, 20)
    res = sinkhorn(a, b, cost, 0.1, options={"epsilon_scaling": True})
    assert res.success and res.method == "auto" and res.stages[0] == "anneal"
    res = sinkhorn(a, b, cost, 0.1, options={"density": 2.0, "newton_after": 1.0})
    assert res.success
    with pytest.raises(TypeError, match="'warmup' for method='auto'"):
        sinkhorn(a, b, cost, 0.1, options={"warmup": 2})


# ----------------------------------------------------------- large costs: one checking pass
@pytest.mark.parametrize("bad, name", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
@pytest.mark.parametrize("order", ["C", "F"])
def test_large_cost_nonfinite_named(bad, name, order):
    # From 2**20 entries a kernel pass checks the cost (C order); F order takes NumPy's.
    rng = np.random.default_rng(0)
    cost = np.asarray(rng.random((1030, 1020)), order=order)
    cost[1029, 3] = bad
    with pytest.raises(ValueError, match=f"`cost` must be finite; got {name}"):
        ottools.sinkhorn(None, None, cost, 0.1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_cost_range_from_the_check(dtype):
    from ottools._problem import LinearProblem

    rng = np.random.default_rng(1)
    cost = (rng.random((1024, 1025)) * 7 - 3).astype(dtype)
    prob = LinearProblem.from_args(None, None, cost)
    assert prob._range == (float(cost.min()), float(cost.max()))
    assert prob.cost_range == (float(cost.min()), float(cost.max()))
    # with a zero weight the range is that of the compressed cost
    a = np.full(1024, 1.0 / 1023)
    a[np.argmin(cost.min(1))] = 0.0
    prob = LinearProblem.from_args(a, None, cost, balanced=False)
    assert prob.cost_range == (float(prob.costc.min()), float(prob.costc.max()))
    assert prob.cost_range[0] > float(cost.min())


# ------------------------------------------------------------------ review 25
def test_scaling_overflow_returns_a_bounded_last_iterate(rng):
    """method='scaling' at status 2: u of 1.6e308 made u / a overflow, the potentials
    inf, and the result the zero start, whose plan overflowed for costs in [-5, -4]
    (plan inf, fun NaN); now the last iterate's f with g its exact column update."""
    C = rng.random((4, 5)) - 5.0
    a, b = np.full(4, 1 / 4), np.full(5, 1 / 5)
    res = ottools.sinkhorn(a, b, C, reg=1e-3, method="scaling")
    assert res.status == 2 and not res.success
    for v in (res.fun, res.cost, res.dual_value, res.err):
        assert np.isfinite(v)
    assert np.all(np.isfinite(res.plan)) and np.all(np.isfinite(res.f))
    np.testing.assert_allclose(res.plan.sum(0), b, rtol=1e-12)  # the columns: exact
    assert res.nit > 0 and np.ptp(res.f) > 0  # the iterate, not the (constant) start


@pytest.mark.parametrize("reg", [1e12, 1e14, 1e16])
@pytest.mark.parametrize("method", ["auto", "log", "scaling", "sns"])
def test_huge_reg_keeps_the_entropic_terms(rng, reg, method):
    """reg far above the costs: P -> a b^T, fun -> <a b^T, C>. The plain sums of the
    entropic terms cancelled to reg * 1e-16 (1e14: fun 0.489 against 0.467; 1e16: 2.69,
    with success); a batch member equals its one call."""
    C = rng.random((12, 9))
    a, b = rng.random(12), rng.random(9)
    a, b = a / a.sum(), b / b.sum()
    res = ottools.sinkhorn(a, b, C, reg, method=method)
    ref = float(a @ C @ b)
    assert res.success
    assert res.fun == pytest.approx(ref, rel=1e-12)
    assert res.dual_value == pytest.approx(ref, rel=1e-12)
    if method in ("auto", "log"):
        batch = ottools.sinkhorn(np.stack([a, a]), np.stack([b, b]), np.stack([C, C]), reg,
                                 method=method)
        assert batch.fun[0] == res.fun


def test_subnormal_reg_is_refused():
    with pytest.raises(ValueError, match="`reg` must be at least 2.225e-308"):
        ottools.sinkhorn(None, None, np.zeros((3, 3)), 1e-310)
    with pytest.raises(ValueError, match="`reg` must be at least"):
        ottools.sinkhorn(None, None, np.zeros((2, 3, 3)), 1e-310)
    res = ottools.sinkhorn(None, None, np.zeros((3, 3)), 1e-300)
    assert res.success and np.allclose(res.plan, 1 / 9)


@pytest.mark.parametrize("method, opts", [("auto", {}), ("log", {"epsilon_scaling": True})])
def test_callback_every_check_every_iterations_through_the_annealing(method, opts):
    """The count restarted at each annealing level (3 sweeps each in auto): no callback
    during the 35 sweeps of annealing, then irregular ones."""
    rng = np.random.default_rng(1)
    x, y = rng.random((40, 2)), rng.random((30, 2))
    C = ((x[:, None] - y[None]) ** 2).sum(-1)
    nits = []
    ottools.sinkhorn(None, None, C, 1e-4, method=method, maxiter=100,
                     callback=lambda ir: nits.append(ir.nit), options=opts)
    assert nits[:4] == [10, 20, 30, 40]
