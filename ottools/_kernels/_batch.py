"""Batches of small entropic problems: the log-stable sweeps of ``_sinkhorn`` run to the
end for each problem, problems in parallel (``prange`` over the batch).

Each problem goes through exactly the steps of ``ottools.sinkhorn(method="log")`` on one
problem (the Python driver's loop, here in Numba): compression to the positive weights,
the kernel ``K = exp((f + g - C) / reg)``, :func:`_sinkhorn.scaling_sweep` with
absorption when a scaling leaves its bound, an exact log-domain iteration when one under
/overflows, and the plan from the scalings. The iterates, iteration counts and statuses
are those of the one-problem calls. Return codes: ``ottools._kernels._codes``.
"""

import numpy as np
from numba import prange

from ._codes import BUDGET, DONE, NONFINITE, OUT_OF_RANGE
from ._extremes import abs_max
from ._jit import jit
from ._relax import EARLY, ENABLED, OMEGA, fail, new_state, update
from ._sinkhorn import (absorb, build_kernel, plan_from_potentials, plan_from_scalings,
                        scaling_sweep, sinkhorn_log)

_CHUNK = 1024  # iterations per sweep call: bounds the error buffer, not the iterates


@jit
def _solve_one(a, b, cost, reg, tol, maxiter, bound, relax, f_out, g_out, P_out):
    """One problem (full-size ``a``, ``b``, ``cost``); writes the compressed-free
    potentials of the positive weights into ``f_out``/``g_out`` (NaN elsewhere) and the
    plan into ``P_out``. Returns ``(nit, code, rows_err, lin, plogr, mass)``.

    ``relax``: over-relaxed sweeps with ``ottools.sinkhorn``'s rule for ``omega``
    (``ottools._sweeps.Relaxation``, the schedule of ``_relax``: EARLY, FIRST, DECIDE);
    else plain Sinkhorn, the iterates of ``method="log"``."""
    n, m = cost.shape
    ri = np.flatnonzero(a > 0)
    ci = np.flatnonzero(b > 0)
    nr, mc = ri.size, ci.size
    ac = np.empty(nr)
    bc = np.empty(mc)
    for i in range(nr):
        ac[i] = a[ri[i]]
    for j in range(mc):
        bc[j] = b[ci[j]]
    # Every weight positive (the common case): no compressed copy, and the kernel (then
    # the plan written over it) lives in P_out. Else compressed copies, scattered back.
    full = nr == n and mc == m
    if full:
        costc = cost
        K = P_out
    else:
        costc = np.empty((nr, mc), dtype=cost.dtype)
        for i in range(nr):
            for j in range(mc):
                costc[i, j] = cost[ri[i], ci[j]]
        K = np.empty((nr, mc), dtype=cost.dtype)
    loga = np.log(ac)
    logb = np.log(bc)
    mass = 0.5 * (ac.sum() + bc.sum())
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
    st, chk = new_state(relax)
    win = np.empty(2 * _CHUNK + 2)  # the finite errors since the last decision
    nw = 0
    decide_at = EARLY
    while nit < maxiter:
        size = min(_CHUNK, maxiter - nit)
        if st[ENABLED] != 0.0:
            size = min(size, decide_at - nit)
        k, code = scaling_sweep(K, ac, bc, u, v, bound, st[OMEGA], tol_abs, size, exact,
                                cerr, errs, s, t, unew, vk)
        if k > 0 or code == DONE:
            exact = True
        nit += k
        if code == DONE:
            break
        if st[ENABLED] != 0.0:
            for i in range(k):
                if np.isfinite(errs[i]) and nw < win.size:
                    win[nw] = errs[i]
                    nw += 1
            if nit >= decide_at and code != NONFINITE:
                decide_at = nit + update(st, chk, win, nw, decide_at == EARLY)
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
    ok = True
    for i in range(nr):
        if not (u[i] > 0.0 and np.isfinite(u[i])):
            ok = False
    for j in range(mc):
        if not (v[j] > 0.0 and np.isfinite(v[j])):
            ok = False
    fp = f + reg * np.log(u / ac)
    gp = g + reg * np.log(v / bc)
    if code != NONFINITE and ok and fresh:
        rows, cols, lin, plogr = plan_from_scalings(K, u, v, ac, bc, costc, f, g, reg)
        P = K
    else:
        P = K if full else np.empty((nr, mc), dtype=cost.dtype)
        rows, cols, lin, plogr = plan_from_potentials(loga, logb, costc, reg, fp, gp, P)
    if full:  # P is P_out
        f_out[:] = fp
        g_out[:] = gp
    else:
        _scatter(ri, ci, fp, gp, P, f_out, g_out, P_out)
    e = 0.0
    for i in range(nr):
        e += abs(rows[i] - ac[i])
    for j in range(mc):
        e += abs(cols[j] - bc[j])
    return nit, code, e / mass, lin, plogr, rows.sum()


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
def _checked_solve(k, a, b, cost, reg, tol, maxiter, bound, relax, f, g, P, nit, code, err,
                   lin, plogr, mass, cmax):
    """Problem ``k`` of the batch: its largest ``|C|`` into ``cmax[k]`` (NaN when its costs
    hold NaN; inf shows), then, if finite, :func:`_solve_one`. The check
    (:func:`ottools._kernels._extremes.abs_max`, 2.7 us at 256 x 256) reads the costs
    just before the solve reads them again from the cache, instead of a separate pass
    over the whole batch from memory (a tenth of the time of a batch of 256 x 256
    problems)."""
    big, nan = abs_max(cost[k])
    cmax[k] = big
    if nan or not np.isfinite(big):
        nit[k], code[k] = 0, NONFINITE  # not solved: the caller raises
        return
    out = _solve_one(a[k], b[k], cost[k], reg, tol, maxiter, bound, relax, f[k], g[k], P[k])
    nit[k], code[k], err[k], lin[k], plogr[k], mass[k] = out


@jit(parallel=True)
def sinkhorn_batch(a, b, cost, reg, tol, maxiter, bound, relax, f, g, P, nit, code, err,
                   lin, plogr, mass, cmax):
    """:func:`_checked_solve` for every problem of the batch (``a`` (B, n), ``b``
    (B, m), ``cost`` (B, n, m), float64 weights), in parallel over problems; outputs per
    problem in ``f`` (B, n), ``g`` (B, m), ``P`` (B, n, m) and the (B,) arrays."""
    for k in prange(cost.shape[0]):
        _checked_solve(k, a, b, cost, reg, tol, maxiter, bound, relax, f, g, P, nit, code,
                       err, lin, plogr, mass, cmax)


@jit
def sinkhorn_batch_serial(a, b, cost, reg, tol, maxiter, bound, relax, f, g, P, nit, code,
                          err, lin, plogr, mass, cmax):
    """:func:`sinkhorn_batch` one problem after the other (no thread launch): the twin for
    a process forked after a parallel kernel ran (``_jit.parallel_ok``). The same
    per-problem results."""
    for k in range(cost.shape[0]):
        _checked_solve(k, a, b, cost, reg, tol, maxiter, bound, relax, f, g, P, nit, code,
                       err, lin, plogr, mass, cmax)
