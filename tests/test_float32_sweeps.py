"""Float32 sweeps for float64 problems (``options["float32_sweeps"]``): the float64 kernel
takes over near the float32 floor and decides convergence, so results match the float64
path to the tolerance; marginals, dtypes and the switch itself are checked."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ottools
import ottools._sinkhorn as sinkhorn_module
from conftest import random_problem
from ottools import _sweeps


@pytest.fixture
def switches(monkeypatch):
    """Records ``(float32 sweeps, float32 rebuilds)`` at each switch to float64."""
    log = []
    orig = _sweeps.Sweeps.to_float64

    def spy(self):
        if self.low:
            log.append((self.low_sweeps, self.low_rebuilds))
        return orig(self)

    monkeypatch.setattr(_sweeps.Sweeps, "to_float64", spy)
    return log


@pytest.fixture
def kernel_dtypes(monkeypatch):
    """The dtypes of the kernels that sweeps ran on."""
    seen = []
    orig = _sweeps.Sweeps.sweep

    def spy(self, *args):
        seen.append(self.K.dtype)
        return orig(self, *args)

    monkeypatch.setattr(_sweeps.Sweeps, "sweep", spy)
    return seen


def _marginal_err(res, a, b):
    P = res.plan
    return (np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()) / a.sum()


@pytest.mark.parametrize("reg_m", [None, 1.0])
@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_matches_float64_path(reg_m, tol, switches):
    rng = np.random.default_rng(3)
    a, b, cost = random_problem(rng, 70, 55)
    if reg_m is not None:
        b = 1.5 * b
    kw = dict(reg_m=reg_m, tol=tol)
    r64 = ottools.sinkhorn(a, b, cost, 0.05, options={"float32_sweeps": False}, **kw)
    r32 = ottools.sinkhorn(a, b, cost, 0.05, options={"float32_sweeps": True}, **kw)
    assert switches and switches[0][0] > 0  # float32 sweeps ran, then float64
    assert r32.success and r64.success
    assert r32.plan.dtype == np.float64 and r32.f.dtype == np.float64
    assert r32.err <= tol
    # Both within tol of the solution: plans agree to a few tol (relative L1).
    d = np.abs(r32.plan - r64.plan).sum() / np.abs(r64.plan).sum()
    assert d <= 20 * tol
    assert abs(r32.nit - r64.nit) <= 3
    if reg_m is None:
        assert _marginal_err(r32, a, b) <= tol


def test_annealed_small_reg(kernel_dtypes):
    # Annealing levels in float32, then sweeps and Newton steps at reg.
    rng = np.random.default_rng(4)
    a, b, cost = random_problem(rng, 60, 60, d=5)
    r64 = ottools.sinkhorn(a, b, cost, 1e-4, tol=1e-8, options={"float32_sweeps": False})
    assert np.float32 not in kernel_dtypes
    r32 = ottools.sinkhorn(a, b, cost, 1e-4, tol=1e-8, options={"float32_sweeps": True})
    assert r32.success and r64.success
    assert np.float32 in kernel_dtypes
    assert np.abs(r32.plan - r64.plan).sum() <= 1e-6
    assert np.isclose(r32.cost, r64.cost, rtol=1e-6)


def test_frequent_absorptions_switch_early(switches):
    # No annealing at a small reg: the scalings leave float32's absorption bound (1e10)
    # again and again; the float64 kernel takes over instead of rebuilding each time.
    rng = np.random.default_rng(5)
    a, b, cost = random_problem(rng, 40, 40)
    opts = {"float32_sweeps": True, "epsilon_scaling": False, "newton": False}
    r32 = ottools.sinkhorn(a, b, 100 * cost, 0.05, tol=1e-9, maxiter=100_000, options=opts)
    opts["float32_sweeps"] = False
    r64 = ottools.sinkhorn(a, b, 100 * cost, 0.05, tol=1e-9, maxiter=100_000, options=opts)
    assert r32.success and r64.success
    assert switches
    sweeps, rebuilds = switches[0]
    assert rebuilds >= 1 and rebuilds > 2 + sweeps // 8
    assert np.abs(r32.plan - r64.plan).sum() <= 1e-7


def test_budget_in_float32_phase_gives_honest_err(switches):
    rng = np.random.default_rng(6)
    a, b, cost = random_problem(rng, 50, 40)
    res = ottools.sinkhorn(a, b, cost, 0.01, tol=1e-12, maxiter=4,
                           options={"float32_sweeps": True})
    assert not res.success and res.status == 1
    assert switches == [(4, 0)]  # the plan is taken in float64
    assert res.plan.dtype == np.float64 and np.all(np.isfinite(res.plan))
    assert np.isclose(res.err, _marginal_err(res, a, b), rtol=1e-9)


def test_default_from_size(monkeypatch, switches):
    rng = np.random.default_rng(7)
    a, b, cost = random_problem(rng, 30, 20)
    ottools.sinkhorn(a, b, cost, 0.05)
    assert not switches  # 600 entries: below the default size
    monkeypatch.setattr(sinkhorn_module, "LOW_MIN_ENTRIES", 600)
    res = ottools.sinkhorn(a, b, cost, 0.05)
    assert switches and res.success
    # float32 problems and the explicit methods never take the mixed path
    switches.clear()
    ottools.sinkhorn(a.astype(np.float32), b.astype(np.float32), cost.astype(np.float32),
                     0.05)
    ottools.sinkhorn(a, b, cost, 0.05, method="log")
    assert not switches


@given(n=st.integers(2, 30), m=st.integers(2, 30), zeros=st.integers(0, 3),
       reg_m=st.sampled_from([None, 0.5]), seed=st.integers(0, 2**16))
def test_hypothesis_shapes_and_zero_weights(n, m, zeros, reg_m, seed):
    rng = np.random.default_rng(seed)
    a, b, cost = random_problem(rng, n, m, zeros=zeros)
    kw = dict(reg_m=reg_m, tol=1e-9)
    r64 = ottools.sinkhorn(a, b, cost, 0.1, options={"float32_sweeps": False}, **kw)
    r32 = ottools.sinkhorn(a, b, cost, 0.1, options={"float32_sweeps": True}, **kw)
    assert r32.success == r64.success
    assert r32.plan.shape == (n, m) and r32.plan.dtype == np.float64
    assert np.abs(r32.plan - r64.plan).sum() <= 1e-7
    assert np.all(r32.plan[a == 0] == 0) and np.all(r32.plan[:, b == 0] == 0)


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_symmetric_self_transport(tol, kernel_dtypes):
    # W(a, a) with a symmetric cost: the averaged symmetric sweeps, float32 first.
    rng = np.random.default_rng(8)
    x = rng.random((80, 3))
    cost = ((x[:, None] - x[None]) ** 2).sum(-1)
    a = rng.random(80) + 0.1
    a /= a.sum()
    r64 = ottools.sinkhorn(a, a, cost, 0.02, tol=tol, options={"float32_sweeps": False})
    assert np.float32 not in kernel_dtypes
    r32 = ottools.sinkhorn(a, a, cost, 0.02, tol=tol, options={"float32_sweeps": True})
    assert np.float32 in kernel_dtypes
    assert r32.success and r64.success and r32.err <= tol
    assert np.abs(r32.plan - r64.plan).sum() <= 20 * tol
    np.testing.assert_allclose(r32.plan, r32.plan.T, rtol=0, atol=1e-15)
    np.testing.assert_allclose(r32.f, r32.g, rtol=0, atol=1e-12)


@pytest.mark.parametrize("d, reg", [(10, 1e-3), (2, 1e-3)])
def test_float32_default_tol_is_reached_at_small_reg(d, reg):
    """The dense plan was built from the potentials cast to float32: a rounding floor of
    max|C| eps32 / reg (10-D points, reg 1e-3: status 4 at err 5.7e-4 against the
    default tol 1e-4, where the plan of the float64 potentials has err 9e-8)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, d)).astype(np.float32)
    y = (rng.normal(size=(400, d)) + 0.5).astype(np.float32)
    C = ottools.cost_matrix(x, y)  # reg / max C: about 1e-5
    res = ottools.sinkhorn(None, None, C, reg)
    assert res.success and res.err <= 1e-4 and res.plan.dtype == np.float32
    # the err of the float32 plan itself, summed in float64: within the default tol
    P = res.plan.astype(np.float64)
    assert np.abs(P.sum(1) - 1 / 400).sum() + np.abs(P.sum(0) - 1 / 400).sum() <= 1e-4
