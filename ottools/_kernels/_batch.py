"""Batches of small entropic problems: the log-stable sweeps of ``_sinkhorn`` run to the
end for each problem, problems in parallel (``prange`` over the batch).

Each problem goes through exactly the steps of ``ottools.sinkhorn(method="log")`` on one
problem (the Python driver's loop, here in Numba): compression to the positive weights,
the kernel ``K = exp((f + g - C) / reg)``, :func:`_sinkhorn.scaling_sweep` with
absorption when a scaling leaves its bound, an exact log-domain iteration when one under
/overflows, and the plan from the scalings. The iterates, iteration counts and statuses
are those of the one-problem calls. Return codes: ``ottools._kernels._codes``.

With ``method="auto"`` (the ``rules`` array: :data:`RELAX`, :data:`AUTO`, ...) the kernel
also applies the one-problem driver's decisions, and hands a problem back (code
``HANDOVER``) where that driver would leave the over-relaxed sweeps: a problem it would
anneal (``reg < anneal_below * (max C - min C)``), a self-transport problem (``a == b``,
``C`` symmetric: the symmetric iterations), one whose costs round away at ``reg``
(``max|C| eps / reg > 1``), and one whose observed rate, after ``least`` sweeps, predicts
more than ``newton_after`` further sweeps (the Newton stage). The caller solves those with
the one-problem driver; every other problem ends with the iterates of one ``auto`` call.
"""

import numpy as np
from numba import prange

from ._codes import BUDGET, DONE, HANDOVER, NONFINITE, OUT_OF_RANGE
from ._extremes import abs_max
from ._jit import cast_like, jit
from ._relax import DECIDE, EARLY, ENABLED, OMEGA, SETTLED, fail, new_state, rate, update
from ._symmetric import absorb_symmetric, is_symmetric, sinkhorn_symmetric, symmetric_sweep
from ._sinkhorn import (absorb, build_kernel, plan_from_potentials, plan_from_scalings,
                        scaled_potential, scaling_sweep, sinkhorn_log)

_CHUNK = 1024  # iterations per sweep call: bounds the error buffer, not the iterates

# Fields of the ``rules`` array (float64) of a batch: over-relaxation (0 / 1), the
# one-problem ``auto`` driver's hand-back rules (0 / 1), its ``anneal_below`` (0: never
# anneal), ``newton_after`` (inf: no Newton stage), the sweeps before the Newton stage
# may start, and the machine epsilon of the costs' dtype (the rounding test).
RELAX, AUTO, ANNEAL_BELOW, NEWTON_AFTER, NEWTON_LEAST, ROUNDING_EPS = range(6)
# ... and two more: SELF_TRANSPORT (1: hand back the problems with a == b and a symmetric
# cost, as ``ottools.sinkhorn`` solves them by the symmetric iterations), SYMMETRIC (1:
# every problem is W(a, a) with a symmetric cost, solved by the averaged symmetric
# iterations of one ``auto`` call, :func:`_solve_sym_one`).
SELF_TRANSPORT, SYMMETRIC = 6, 7
# ... and HAND_ALL (1: every problem goes to the one-problem driver: forced
# epsilon-scaling, float32 sweeps, or problems large enough for its parallel row blocks).
HAND_ALL = 8
N_RULES = 9


@jit
def _spread(a, b, cost):
    """``max C - min C`` over the rows and columns of positive weight (float64), as the
    one-problem driver computes it on the compressed cost."""
    n, m = cost.shape
    lo, hi = np.inf, -np.inf
    for i in range(n):
        if a[i] > 0.0:
            for j in range(m):
                if b[j] > 0.0:
                    c = np.float64(cost[i, j])
                    lo = min(lo, c)
                    hi = max(hi, c)
    return hi - lo


@jit
def _hand_back(a, b, cost, reg, big, rules):
    """True for a problem that the one-problem driver solves otherwise than by the
    sweeps (see the module's docstring); ``big`` its largest ``|C|``."""
    if rules[HAND_ALL] != 0.0 or rules[ROUNDING_EPS] * big / reg > 1.0:
        return True  # (or: no correct digit in exp(-C / reg), the driver's status 2)
    if rules[AUTO] == 0.0:
        return False
    n, m = cost.shape
    below = rules[ANNEAL_BELOW]
    if rules[SYMMETRIC] != 0.0:
        return False  # the symmetric iterations never anneal unless forced
    # max C - min C <= 2 max|C| (also after rounding): most problems skip the pass
    if reg < below * (2.0 * big):
        spread = _spread(a, b, cost)
        if spread > 0.0 and reg < below * spread:
            return True
    if n == m and rules[SELF_TRANSPORT] != 0.0:
        for i in range(n):
            if a[i] != b[i]:
                return False
        return is_symmetric(cost)
    return False


@jit
def _newton_due(st, win, nw, nit, tol_abs, rules):
    """The one-problem driver's switch to the Newton stage, taken at a decision of the
    over-relaxation rule: after ``least`` sweeps, once omega has settled, the rate of the
    block ``win[:nw]`` predicts more than ``newton_after`` further sweeps (or stalls)."""
    after = rules[NEWTON_AFTER]
    if not (nit >= rules[NEWTON_LEAST] and after < np.inf):
        return False
    if not (st[ENABLED] == 0.0 or st[OMEGA] == 1.0 or st[SETTLED] >= 1.0):
        return False
    lam = rate(win, 0, nw)
    if lam >= 1.0:
        return True
    err = win[nw - 1] if nw > 0 else np.inf
    if lam > 0.0 and err > tol_abs:
        if tol_abs > 0.0:
            return np.log(tol_abs / err) / np.log(lam) > after
        return True
    return False


@jit
def _compressed(cost, ri, ci, P_out):
    """``(costc, K)``: the cost on the rows ``ri`` and columns ``ci`` of positive weight,
    and the array for its kernel. Every weight positive (the common case): the cost
    itself, and the kernel (then the plan written over it) lives in ``P_out``; else
    compressed copies (scattered back by :func:`_scatter`)."""
    n, m = cost.shape
    nr, mc = ri.size, ci.size
    if nr == n and mc == m:
        return cost, P_out
    costc = np.empty((nr, mc), dtype=cost.dtype)
    for i in range(nr):
        for j in range(mc):
            costc[i, j] = cost[ri[i], ci[j]]
    return costc, np.empty((nr, mc), dtype=cost.dtype)


@jit
def _solve_one(a, b, la, lb, mass, cost, reg, tol, maxiter, bound, rules, f_out, g_out,
               P_out, r_out, c_out):
    """One problem (full-size ``a``, ``b``, ``cost``; ``la``, ``lb`` the logs of the
    weights and ``mass`` the sum of ``a`` as the one-problem driver computes them); writes
    the potentials of the positive weights into ``f_out``/``g_out`` (NaN elsewhere), the plan
    into ``P_out`` and its marginals into ``r_out``, ``c_out``. Returns ``(nit, code, lin,
    plogr)``; code ``HANDOVER`` (nothing written) when the Newton stage is due
    (:func:`_newton_due`).

    ``rules[RELAX]``: over-relaxed sweeps with ``ottools.sinkhorn``'s rule for ``omega``
    (``ottools._sweeps.Relaxation``, the schedule of ``_relax``: EARLY, FIRST, DECIDE);
    else plain Sinkhorn, the iterates of ``method="log"``."""
    ri = np.flatnonzero(a > 0)
    ci = np.flatnonzero(b > 0)
    nr, mc = ri.size, ci.size
    ac, bc = a[ri], b[ci]
    loga, logb = la[ri], lb[ci]
    costc, K = _compressed(cost, ri, ci, P_out)
    tol_abs = 0.9 * tol * mass
    f = np.zeros(nr)
    g = np.zeros(mc)
    u = ac.copy()
    v = bc.copy()
    x = np.empty(mc)
    w = np.empty(mc)
    s, t, unew = np.empty(mc), np.empty(mc), np.empty(nr)
    vk = np.empty(mc, dtype=cost.dtype)
    errs = np.empty(_CHUNK + 1)
    cerr = np.zeros(1)
    build_kernel(costc, f, g, reg, K, x, w)
    exact = False
    fresh = True
    nit = 0
    code = BUDGET
    relax = rules[RELAX] != 0.0
    st, chk = new_state(relax)
    # Decisions (omega, the Newton stage) every few sweeps, as in the driver's stage
    newton = rules[AUTO] != 0.0 and rules[NEWTON_AFTER] < np.inf
    decide = relax or newton
    win = np.empty(2 * _CHUNK + 2)  # the finite errors since the last decision
    nw = 0
    early = relax
    decide_at = EARLY if early else DECIDE
    while nit < maxiter:
        size = min(_CHUNK, maxiter - nit)
        if decide:
            size = min(size, decide_at - nit)
        k, code = scaling_sweep(K, ac, bc, u, v, bound, st[OMEGA], tol_abs, size, exact,
                                cerr, errs, s, t, unew, vk)
        if k > 0 or code == DONE:
            exact = True
        nit += k
        if code == DONE:
            break
        if decide:
            for i in range(k):
                if np.isfinite(errs[i]) and nw < win.size:
                    win[nw] = errs[i]
                    nw += 1
            if nit >= decide_at and code != NONFINITE:
                decide_at = nit + update(st, chk, win, nw, early)
                early = False
                if newton and _newton_due(st, win, nw, nit, tol_abs, rules):
                    return nit, HANDOVER, np.nan, np.nan
                if nw > 0:
                    win[0] = win[nw - 1]
                    nw = 1
        if code == OUT_OF_RANGE:
            absorb(f, g, u, v, ac, bc, reg)
            build_kernel(costc, f, g, reg, K, x, w)
            code = BUDGET
            continue
        if code == NONFINITE:
            fail(st)  # plain Sinkhorn from here on
            decide = newton
            if nit >= maxiter:
                code = BUDGET
                break
            absorb(f, g, u, v, ac, bc, reg)
            k, code, _ = sinkhorn_log(ac, loga, logb, costc, reg, f, g, tol_abs, 1, False)
            cerr[0] = 0.0
            exact = k > 0
            build_kernel(costc, f, g, reg, K, x, w)
            if code == NONFINITE:
                fresh = False
                break
            nit += 1
            code = BUDGET
            nw = 0  # the driver's decisions start again after the exact iteration
            decide_at = nit + DECIDE
    lin, plogr = _finish_one(K, u, v, f, g, ac, bc, loga, logb, costc, reg, code, fresh, ri,
                             ci, f_out, g_out, P_out, r_out, c_out)
    return nit, code, lin, plogr


@jit
def _finish_one(K, u, v, f, g, ac, bc, loga, logb, costc, reg, code, fresh, ri, ci,
                f_out, g_out, P_out, r_out, c_out):
    """The end of one problem's solve: its potentials, its plan (from the scalings when
    ``K`` is fresh and they are positive and finite, else from the potentials, rounded to
    the costs' dtype as the one-problem driver does) and its marginals into the outputs
    (scattered back when compressed, zero marginals at zero weights). Returns
    ``(lin, plogr)``."""
    nr, mc = ac.size, bc.size
    ok = True
    for i in range(nr):
        if not (u[i] > 0.0 and np.isfinite(u[i])):
            ok = False
    for j in range(mc):
        if not (v[j] > 0.0 and np.isfinite(v[j])):
            ok = False
    fp = scaled_potential(f, u, ac, reg)
    gp = scaled_potential(g, v, bc, reg)
    full = P_out.shape[0] == nr and P_out.shape[1] == mc
    if code != NONFINITE and ok and fresh:
        rows, cols, lin, plogr = plan_from_scalings(K, u, v, ac, bc, costc, f, g, reg)
        P = K
    else:
        P = K if full else np.empty((nr, mc), dtype=costc.dtype)
        dt = costc.dtype
        rows, cols, lin, plogr = plan_from_potentials(
            loga.astype(dt), logb.astype(dt), costc, cast_like(costc, reg), fp.astype(dt),
            gp.astype(dt), P)
    if full:  # P is P_out
        f_out[:] = fp
        g_out[:] = gp
        r_out[:] = rows
        c_out[:] = cols
    else:
        _scatter(ri, ci, fp, gp, P, f_out, g_out, P_out)
        r_out[:] = 0.0
        c_out[:] = 0.0
        for i in range(nr):
            r_out[ri[i]] = rows[i]
        for j in range(mc):
            c_out[ci[j]] = cols[j]
    return lin, plogr


@jit
def _solve_sym_one(a, b, la, lb, mass, cost, reg, tol, maxiter, bound, rules, f_out, g_out,
                   P_out, r_out, c_out):
    """``W(a, a)`` with a symmetric cost (``b`` is ``a``): the averaged symmetric
    iterations of one ``auto`` call (``ottools._sweeps.SymSweeps`` in the driver's sweep
    stage: ``u <- sqrt(u a / (K u))`` from a cold start, absorption when ``u / a`` leaves
    its bound, one exact log-domain averaged update when a scaling under/overflows).
    Arguments and returns as :func:`_solve_one`."""
    ri = np.flatnonzero(a > 0)
    nr = ri.size
    ac = a[ri]
    loga = la[ri]
    costc, K = _compressed(cost, ri, ri, P_out)
    tol_abs = 0.9 * tol * mass
    f = np.zeros(nr)
    u = ac.copy()
    x = np.empty(nr)
    w = np.empty(nr)
    unew = np.empty(nr)
    uk = np.empty(nr, dtype=cost.dtype)
    errs = np.empty(_CHUNK + 1)
    build_kernel(costc, f, f, reg, K, x, w)
    cold = True
    fresh = True
    nit = 0
    code = BUDGET
    while nit < maxiter:
        size = min(_CHUNK, maxiter - nit)
        k, code = symmetric_sweep(K, ac, u, bound, tol_abs, size, cold, errs, unew, uk)
        cold = cold and k == 0
        nit += k
        if code == DONE:
            break
        if code == OUT_OF_RANGE:
            absorb_symmetric(f, u, ac, reg)
            build_kernel(costc, f, f, reg, K, x, w)
            code = BUDGET
            continue
        if code == NONFINITE:
            if nit >= maxiter:
                code = BUDGET
                break
            absorb_symmetric(f, u, ac, reg)
            k, code, _ = sinkhorn_symmetric(ac, loga, costc, reg, f, tol_abs, 1, cold)
            cold = cold and k == 0
            build_kernel(costc, f, f, reg, K, x, w)
            if code == DONE:
                break
            if code == NONFINITE:
                fresh = False
                break
            nit += 1
            code = BUDGET
    lin, plogr = _finish_one(K, u, u, f, f, ac, ac, loga, loga, costc, reg, code, fresh, ri,
                             ri, f_out, g_out, P_out, r_out, c_out)
    return nit, code, lin, plogr


@jit
def _scatter(ri, ci, fp, gp, P, f_out, g_out, P_out):
    """The compressed potentials and plan at their rows ``ri`` and columns ``ci`` of the
    full-size outputs (NaN potentials and zero plan entries elsewhere)."""
    n, m = P_out.shape
    for i in range(n):
        f_out[i] = np.nan
        for j in range(m):
            P_out[i, j] = 0.0
    for j in range(m):
        g_out[j] = np.nan
    for i in range(ri.size):
        f_out[ri[i]] = fp[i]
        for j in range(ci.size):
            P_out[ri[i], ci[j]] = P[i, j]
    for j in range(ci.size):
        g_out[ci[j]] = gp[j]


@jit
def _checked_solve(k, a, b, la, lb, wmass, cost, reg, tol, maxiter, bound, rules, f, g, P, R,
                   Cm, counts, stats):
    """Problem ``k`` of the batch: its largest ``|C|`` into ``stats[k, 2]`` (NaN when its
    costs hold NaN; inf shows), then, if finite and not handed back (:func:`_hand_back`:
    code ``HANDOVER``), :func:`_solve_one` (or :func:`_solve_sym_one`): ``counts[k]`` is
    ``(nit, code)``, ``stats[k, :2]`` ``(lin, plogr)``. The check
    (:func:`ottools._kernels._extremes.abs_max`, 2.7 us at 256 x 256) reads the costs
    just before the solve reads them again from the cache, instead of a separate pass
    over the whole batch from memory (a tenth of the time of a batch of 256 x 256
    problems)."""
    big, nan = abs_max(cost[k])
    stats[k, 2] = big
    if nan or not np.isfinite(big):
        counts[k, 0], counts[k, 1] = 0, NONFINITE  # not solved: the caller raises
        return
    if _hand_back(a[k], b[k], cost[k], reg, big, rules):
        counts[k, 0], counts[k, 1] = 0, HANDOVER
        return
    if rules[SYMMETRIC] != 0.0:
        out = _solve_sym_one(a[k], b[k], la[k], lb[k], wmass[k], cost[k], reg, tol, maxiter,
                             bound, rules, f[k], g[k], P[k], R[k], Cm[k])
    else:
        out = _solve_one(a[k], b[k], la[k], lb[k], wmass[k], cost[k], reg, tol, maxiter,
                         bound, rules, f[k], g[k], P[k], R[k], Cm[k])
    counts[k, 0], counts[k, 1], stats[k, 0], stats[k, 1] = out


@jit(parallel=True)
def sinkhorn_batch(a, b, la, lb, wmass, cost, reg, tol, maxiter, bound, rules, f, g, P, R,
                   Cm, counts, stats):
    """:func:`_checked_solve` for every problem of the batch (``a`` (B, n), ``b``
    (B, m), ``cost`` (B, n, m), float64 weights; ``la``, ``lb`` their logs and ``wmass``
    (B,) their masses, as one problem's driver computes them), in parallel over problems;
    outputs per problem in ``f`` (B, n), ``g`` (B, m), ``P`` (B, n, m), the plans'
    marginals ``R`` (B, n), ``Cm`` (B, m), ``counts`` (B, 2) int64 and ``stats`` (B, 3)."""
    for k in prange(cost.shape[0]):
        _checked_solve(k, a, b, la, lb, wmass, cost, reg, tol, maxiter, bound, rules, f, g,
                       P, R, Cm, counts, stats)


@jit
def sinkhorn_batch_serial(a, b, la, lb, wmass, cost, reg, tol, maxiter, bound, rules, f, g,
                          P, R, Cm, counts, stats):
    """:func:`sinkhorn_batch` one problem after the other (no thread launch): the twin for
    a process forked after a parallel kernel ran (``_jit.parallel_ok``). The same
    per-problem results."""
    for k in range(cost.shape[0]):
        _checked_solve(k, a, b, la, lb, wmass, cost, reg, tol, maxiter, bound, rules, f, g,
                       P, R, Cm, counts, stats)
