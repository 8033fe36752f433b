"""Batches of problems: ``sinkhorn`` with a cost of shape (B, n, m)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ottools


def _batch(rng, B=12, n=9, m=7, dtype=np.float64):
    x, y = rng.random((B, n, 2)), rng.random((B, m, 2))
    cost = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
    a = rng.random((B, n)) + 0.1
    b = rng.random((B, m)) + 0.1
    a[2, :3] = 0  # zero weights in one member
    a /= a.sum(1, keepdims=True)
    b /= b.sum(1, keepdims=True)
    return a.astype(dtype), b.astype(dtype), cost.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_equals_per_problem_calls(rng, dtype):
    a, b, cost = _batch(rng, dtype=dtype)
    res = ottools.sinkhorn(a, b, cost, 0.02, method="log")
    assert res.plan.shape == cost.shape and res.plan.dtype == dtype
    assert res.f.dtype == dtype and res.nit.shape == res.status.shape == (12,)
    for k in range(12):
        one = ottools.sinkhorn(a[k], b[k], cost[k], 0.02, method="log")
        assert (one.nit, one.status, one.success) == (res.nit[k], res.status[k],
                                                      res.success[k])
        np.testing.assert_array_equal(res.plan[k], one.plan)
        atol = 1e-13 if dtype == np.float64 else 1e-6
        np.testing.assert_allclose(res.f[k], one.f, atol=atol)
        np.testing.assert_allclose(res.g[k], one.g, atol=atol)
        assert res.fun[k] == pytest.approx(one.fun, rel=1e-12)
        # the error is a float64 sum over float32 entries, summed in another order
        rel = 1e-9 if dtype == np.float64 else 1e-5
        assert res.err[k] == pytest.approx(one.err, rel=rel, abs=1e-15)


def _assert_same_as_one_calls(res, a, b, cost, reg, **kwargs):
    """Every problem of the batch result ``res`` is the result of one ``sinkhorn`` call,
    to the bit: plan, potentials, value, error, iteration count, status, message."""
    stages = []
    for k in range(len(cost)):
        one = ottools.sinkhorn(a[k], b[k], cost[k], reg, **kwargs)
        stages.append(one.stages)
        assert (one.nit, one.status, one.success) == (res.nit[k], res.status[k],
                                                      res.success[k]), k
        assert res.messages[k] == one.message
        np.testing.assert_array_equal(res.plan[k], one.plan)
        np.testing.assert_array_equal(res.f[k], one.f)
        np.testing.assert_array_equal(res.g[k], one.g)
        assert res.fun[k] == one.fun or (np.isnan(res.fun[k]) and np.isnan(one.fun))
        assert res.err[k] == one.err or (np.isnan(res.err[k]) and np.isnan(one.err))
        assert res.cost[k] == one.cost or (np.isnan(res.cost[k]) and np.isnan(one.cost))
    return stages


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_auto_batch_is_over_relaxed_and_equals_per_problem_calls(rng, dtype):
    # method="auto" takes one problem's decisions: over-relaxed sweeps (fewer than plain
    # Sinkhorn), each problem's result that of one auto call.
    a, b, cost = _batch(rng, B=6, n=40, m=30, dtype=dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    auto = ottools.sinkhorn(a, b, cost, 0.02, tol=tol)
    plain = ottools.sinkhorn(a, b, cost, 0.02, tol=tol, method="log")
    assert np.all(auto.success) and np.all(plain.success)
    assert np.all(auto.err <= tol)
    assert auto.nit.sum() < 0.7 * plain.nit.sum()
    stages = _assert_same_as_one_calls(auto, a, b, cost, 0.02, tol=tol)
    assert all(s == ("sweeps",) for s in stages)  # all solved by the batch's kernel
    with pytest.raises(TypeError, match="newton"):  # log's options only, as one log call
        ottools.sinkhorn(a, b, cost, 0.1, method="log", options={"newton": True})


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", [None, {"overrelaxation": False}])
def test_auto_batch_converges_where_one_call_does(rng, dtype, options):
    # At small reg one auto call anneals and finishes with Newton steps (Sinkhorn alone
    # needs far more than maxiter sweeps on 2-D clouds of 64 points at reg 1e-3 of the
    # cost's range): the batch hands those problems back to the one-problem driver, so
    # it converges where one call does, with that call's result.
    B, n = 5, 48
    x, y = rng.normal(size=(B, n, 2)), rng.normal(size=(B, n, 2)) + 0.5
    cost = ((x[:, :, None] - y[:, None]) ** 2).sum(-1).astype(dtype)
    a = np.full((B, n), 1.0 / n, dtype=dtype)
    for rel in (3e-3, 2e-4):  # the Newton stage; epsilon-scaling and the Newton stage
        reg = rel * float(cost.max())
        res = ottools.sinkhorn(a, a, cost, reg, options=options)
        assert np.all(res.success) and np.all(res.nit < 1000)
        stages = _assert_same_as_one_calls(res, a, a, cost, reg, options=options)
    assert all(s[0] == "anneal" for s in stages)  # at 2e-4
    # ... where one call takes Newton steps (at annealing levels or at reg)
    assert any(ottools.sinkhorn(a[i], a[i], cost[i], reg, options=options).nit_newton > 0
               for i in range(B))
    off = ottools.sinkhorn(a, a, cost, reg, options={"newton": False,
                                                     "epsilon_scaling": False}, maxiter=1000)
    assert not np.any(off.success)  # the sweeps alone: honest status 1


def test_self_transport_members_get_the_symmetric_iterations(rng):
    # A member with a == b and a symmetric cost is W(a, a): one auto call runs the
    # averaged symmetric iterations, and so does the batch (handed back).
    a, b, cost = _batch(rng, B=4, n=9, m=9)
    x = rng.random((9, 2))
    cost[1] = ((x[:, None] - x[None]) ** 2).sum(-1)
    b[1] = a[1]
    res = ottools.sinkhorn(a, b, cost, 0.02)
    stages = _assert_same_as_one_calls(res, a, b, cost, 0.02)
    assert ottools.sinkhorn(a[1], b[1], cost[1], 0.02).nit == res.nit[1]
    assert np.all(res.success) and stages[1] == ("sweeps",)


def test_shared_weights_and_honest_status(rng):
    _, _, cost = _batch(rng)
    res = ottools.sinkhorn(None, np.full(7, 1 / 7), cost, 0.02, maxiter=3)
    assert np.all(res.status == 1) and not np.any(res.success) and np.all(res.nit == 3)
    assert "12 at maxiter" in res.message


@pytest.mark.parametrize("options", [{"overrelaxation": True}, {"epsilon_scaling": True}])
def test_log_batch_takes_the_options_of_one_log_call(rng, options):
    """A log batch refused the options one log call takes: over-relaxation runs in the
    kernel, epsilon-scaling hands every problem to the one-problem driver."""
    a, b, cost = _batch(rng)
    res = ottools.sinkhorn(a, b, cost, 0.005, method="log", options=options)
    _assert_same_as_one_calls(res, a, b, cost, 0.005, method="log", options=options)


def test_reg_m_inf_is_the_balanced_batch(rng):
    a, b, cost = _batch(rng)
    res = ottools.sinkhorn(a, b, cost, 0.05, reg_m=np.inf)
    _assert_same_as_one_calls(res, a, b, cost, 0.05, reg_m=np.inf)


def test_stalled_and_overflowing_members_carry_the_message_of_one_call(rng):
    """A member stalled at the rounding floor (float32, tol 1e-14) read the status
    table's text; one call explains the floor (and the same for a plan that overflows)."""
    r = np.random.default_rng(3)
    cost = r.random((2, 5, 3)).astype(np.float32)
    a = r.random((2, 5)).astype(np.float32)
    a /= a.sum(1, keepdims=True)
    b = np.full((2, 3), 1 / 3, dtype=np.float32)
    res = ottools.sinkhorn(a, b, cost, 0.1, tol=1e-14)
    assert np.all(res.status == 4)
    assert "rounding floor of float32" in res.messages[0]
    _assert_same_as_one_calls(res, a, b, cost, 0.1, tol=1e-14)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_members_ending_non_finite_are_one_call(rng):
    """Costs spanning float64's range: the kernel kept its last iterate where one call
    restarts from its starting point (cost +inf against -inf, err inf against 7.9e34);
    such members are handed back to the one-problem driver."""
    C1 = np.array([[-1.61792382e+308, 1.52380684e+308]])
    C2 = np.full((4, 9), 6.95183547e+307)
    C2[0, 0] = -1.61792382e+308
    for C, reg in ((C1, 2.0136028126434578e+306), (C2, 2.035737229614684e+305)):
        cost = np.stack([C, C])
        a, b = np.full((2, C.shape[0]), 1 / C.shape[0]), np.full((2, C.shape[1]),
                                                                  1 / C.shape[1])
        res = ottools.sinkhorn(a, b, cost, reg, method="log")
        assert np.all(res.status == 2)
        _assert_same_as_one_calls(res, a, b, cost, reg, method="log")


def test_batch_errors_name_the_problem(rng):
    a, b, cost = _batch(rng)
    bad = cost.copy()
    bad[5, 0, 0] = np.nan
    with pytest.raises(ValueError, match="problem 5 of the batch holds NaN"):
        ottools.sinkhorn(a, b, bad, 0.1)
    b2 = b.copy()
    b2[4] *= 2
    with pytest.raises(ValueError, match="problem 4 of the batch: `a` and `b` must have"):
        ottools.sinkhorn(a, b2, cost, 0.1)
    with pytest.raises(ValueError, match="`a` holds 3 problems but `cost` holds 12"):
        ottools.sinkhorn(a[:3], b, cost, 0.1)
    with pytest.raises(TypeError, match="`init` not supported for a batch"):
        ottools.sinkhorn(a, b, cost, 0.1, init=(a, b))
    with pytest.raises(ValueError, match="method='sns' is not available for a batch"):
        ottools.sinkhorn(a, b, cost, 0.1, method="sns")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_large_batch_nonfinite_names_the_problem(rng, bad):
    # The kernel checks each problem's costs as it reads them (largest |C|, NaN flag),
    # in groups of problems: the first bad problem is named whatever its group.
    cost = rng.random((260, 64, 64))
    cost[203, 63, 1] = bad
    cost[250, 0, 0] = np.nan
    with pytest.raises(ValueError, match="problem 203 of the batch holds NaN or inf"):
        ottools.sinkhorn(None, None, cost, 0.1)
    with pytest.raises(ValueError, match="problem 0 of the batch holds NaN or inf"):
        ottools.sinkhorn(None, None, cost[203:204], 0.1)
    # The largest |C| counts negative costs: -1e300 has no correct digit in
    # exp(-C / reg), so that problem alone gets status 2, as it would alone.
    cost[203, 63, 1] = -1e300
    cost[250, 0, 0] = 0.5
    res = ottools.sinkhorn(None, None, cost, 0.1)
    assert res.status[203] == 2 and np.flatnonzero(res.status != 0).tolist() == [203]
    assert ottools.sinkhorn(None, None, cost[203], 0.1, method="log").status == 2


def test_overflow_is_status_2_as_for_one_problem(rng):
    a, b, cost = _batch(rng)
    cost[3] *= 1e300  # max |C| * eps / reg ~ 1e286: no correct digit in exp(-C / reg)
    res = ottools.sinkhorn(a, b, cost, 0.02)
    one = ottools.sinkhorn(a[3], b[3], cost[3], 0.02, method="log")
    assert one.status == 2
    assert res.status[3] == 2 and not res.success[3]
    assert np.all(np.delete(res.status, 3) == 0)
    assert "1 non-finite" in res.message
    assert "in 1 problem(s) (first: 3), reg=0.02 is below the rounding" in res.message
    tiny = ottools.sinkhorn(a, b, np.ones_like(cost), 1e-300)
    assert np.all(tiny.status == 2) and "in 12 problem(s) (first: 0)" in tiny.message


def test_groups_of_problems_give_the_same_results(rng, monkeypatch):
    # The batch runs in groups of problems per kernel call (Ctrl-C gets through between
    # them); a problem's result must not depend on its group.
    a, b, cost = _batch(rng)
    whole = ottools.sinkhorn(a, b, cost, 0.02)
    import ottools._batch as batch

    monkeypatch.setattr(batch, "_GROUP_WORK", 1)
    monkeypatch.setattr(batch, "_GROUP_PER_THREAD", 1)
    monkeypatch.setattr(batch, "_GROUP_SECONDS", 0.0)  # every group as small as the first
    assert batch.batch_group(12, 9, 7, 10_000) < 12
    grouped = ottools.sinkhorn(a, b, cost, 0.02)
    for key in ("plan", "f", "g", "nit", "status", "err", "fun"):
        np.testing.assert_array_equal(grouped[key], whole[key])


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), m=st.integers(1, 25),
       log_rel=st.floats(-4.5, 0.0), dtype=st.sampled_from([np.float64, np.float32]),
       zeros=st.booleans(), maxiter=st.sampled_from([0, 5, 10_000]),
       method=st.sampled_from(["auto", "log"]))
@settings(deadline=None, max_examples=40)
def test_every_problem_of_a_batch_is_one_call(seed, n, m, log_rel, dtype, zeros, maxiter,
                                              method):
    # Shapes, weights with zeros, dtypes, reg from easy to far below the cost's range
    # (annealing, Newton steps: handed back), iteration caps: each problem's plan,
    # iteration count and status are those of one call to the bit.
    rng = np.random.default_rng(seed)
    B = 4
    x, y = rng.normal(size=(B, n, 2)) * 3, rng.normal(size=(B, m, 2))
    cost = ((x[:, :, None] - y[:, None]) ** 2).sum(-1).astype(dtype)
    a, b = rng.random((B, n)) + 0.05, rng.random((B, m)) + 0.05
    if zeros:
        a[:, 1:] *= rng.random((B, n - 1)) > 0.3
    a, b = (w / w.sum(1, keepdims=True) for w in (a, b))
    a, b = a.astype(dtype), b.astype(dtype)
    if n == m:  # a self-transport member: the symmetric iterations, as in one call
        cost[0] = ((x[0][:, None] - x[0][None]) ** 2).sum(-1)
        b[0] = a[0]
    reg = 10.0 ** log_rel * float(cost.max())
    res = ottools.sinkhorn(a, b, cost, reg, method=method, maxiter=maxiter)
    _assert_same_as_one_calls(res, a, b, cost, reg, method=method, maxiter=maxiter)


def test_a_ragged_batch_names_the_member(rng):
    # A batch given as a list of arrays of several shapes: the error names the argument
    # and the first member whose shape differs.
    costs = [rng.random((3, 3)), rng.random((3, 3)), rng.random((4, 3))]
    with pytest.raises(ValueError, match=r"`cost\[2\]` has shape \(4, 3\) but `cost\[0\]`"):
        ottools.sinkhorn(None, None, costs, 0.1)
    x = [rng.random((3, 2)), rng.random((4, 2))]
    with pytest.raises(ValueError, match=r"`x\[1\]` has shape \(4, 2\) but `x\[0\]`"):
        ottools.sinkhorn_divergence(x, [rng.random((3, 2))] * 2, reg=0.1)
    res = ottools.sinkhorn(None, None, costs[:2], 0.1)  # a list of equal shapes is a batch
    assert res.fun.shape == (2,) and np.all(res.success)
