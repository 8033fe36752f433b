"""The sparse-OT ascent's inner loop, compiled: dense BFGS iterations with their weak Wolfe
line search, and the bookkeeping of the stall monitor and of the active-set finisher,
until something needs the Python driver (:mod:`ottools._sparse_ot._ascent`).

At 200 x 200 an evaluation costs about 25 us and a BFGS update about 9 us, while the
Python around them (the line search's loop, the objective's wrapper, the monitor, and
Numba's dispatch of each kernel, 4-8 us a call) cost about as much again. :func:`run`
does the same iterations in one call; the driver keeps what happens rarely (restarts,
kink steps, active-set attempts, Newton steps, the user's callback).

The monitor's and the finisher's state live in small float64 arrays that both the
compiled loop and the Python classes update through the functions below
(:func:`observe`, :func:`stalled`, :func:`due`), so that the two share one definition.
"""

import math

import numpy as np

from ._jit import jit
from ._sparse import bfgs_update, dot, dual_value_grad, semi_dual_value_grad, sym_matvec

# why run() returned
MAXITER, STALL, LSFAIL, CONVERGED, DUE, NEWTON = range(6)

# monitor state: best value, its error, evaluations at the last improvement, the error
# then, improvements, whether a best point exists, rtol, the fixed window (-1: none), the
# smallest window
M_BEST, M_BEST_ERR, M_NFEV_BEST, M_ERR_MARK, M_NIMPR, M_HAS, M_RTOL, M_WINDOW, M_MINWIN = \
    range(9)
M_SIZE = 9

# finisher state: progress threshold, first iteration an attempt may come at, values in
# the ring, the ring's next slot, whether attempts are made at all
F_THR, F_WAIT, F_COUNT, F_HEAD, F_ON = range(5)
F_SIZE = 5

# BFGS state: pairs stored, first trial step, whether the last direction came from H,
# whether ``nxt`` holds H g for the current gradient
Q_COUNT, Q_TFIRST, Q_FROMH, Q_NEXT = range(4)
Q_SIZE = 4

# counters: iterations, BFGS iterations, evaluations, and whether the last evaluation
# was at the current point (1), elsewhere (0), or none was made (-1)
C_NIT, C_NIT_BFGS, C_NFEV, C_LAST = range(4)


@jit
def abs_sum(g):
    """``sum_i |g_i|``, in order (the marginal error's numerator)."""
    s = 0.0
    for i in range(g.shape[0]):
        s += abs(g[i])
    return s


@jit
def observe(mon, best_x, value, x, nfev, err):
    """Record an iterate in the monitor's state ``mon`` (see :mod:`ottools._sparse_ot._stall`):
    0 if it is not the best so far, 1 if it is, 2 if it is an improvement (the stall
    clock restarts). ``best_x`` receives the best point."""
    floor = 1e-15 * abs(value)
    if not value > mon[M_BEST] - floor:
        return 0
    res = 1
    gain = value - mon[M_BEST]
    if (gain > mon[M_RTOL] * max(abs(value), 1e-300) or mon[M_HAS] == 0.0
            or err < 0.5 * mon[M_ERR_MARK]):
        mon[M_NFEV_BEST] = nfev
        mon[M_NIMPR] += 1.0
        mon[M_ERR_MARK] = err
        res = 2
    if value >= mon[M_BEST] or err < mon[M_BEST_ERR]:
        mon[M_BEST] = max(value, mon[M_BEST])
        best_x[:] = x
        mon[M_BEST_ERR] = err
        mon[M_HAS] = 1.0
    return res


@jit
def window(mon):
    """The stall window in evaluations: the fixed one, else half the evaluations that
    reached the last improvement, at least the smallest window."""
    if mon[M_WINDOW] >= 0.0:
        return mon[M_WINDOW]
    return max(mon[M_MINWIN], math.floor(mon[M_NFEV_BEST] / 2))


@jit
def stalled(mon, nfev):
    """True when a window has passed since the last improvement."""
    return nfev - mon[M_NFEV_BEST] >= window(mon)


@jit
def due(fin, ring, nit, v):
    """Record the value ``v`` of iteration ``nit``; True when an active-set attempt is
    due: ``nit`` has reached the finisher's wait, and the value rose by at most the
    threshold (relative) over the ring's span (its length minus one iterations)."""
    n = ring.shape[0]
    h = int(fin[F_HEAD])
    ring[h] = v
    h = (h + 1) % n
    fin[F_HEAD] = h
    c = min(fin[F_COUNT] + 1.0, n)
    fin[F_COUNT] = c
    if nit < fin[F_WAIT] or c <= n - 1:
        return False
    return v - ring[h] <= fin[F_THR] * max(abs(v), 1e-300)  # ring[h]: the oldest value


@jit
def first_trial(from_h, t, t0):
    """The first trial step of the next line search after one that accepted ``t`` with
    first trial ``t0`` (see :meth:`ottools._sparse_ot._quasi_newton.BFGS.accepted`)."""
    if from_h:
        return min(1.0, (1.5 if t == t0 else 1.0) * t)
    return 1.0


@jit
def evaluate(x, prob, scratch, grad):
    """Objective at ``x`` (serial kernels, full columns), its gradient into ``grad``.
    ``prob = (semi, nr, a, b, cost_t, reg, k)``, ``scratch = (gf, gg, tau, vals, idx,
    acc, hints, bounds)`` as in :class:`ottools._sparse_ot._objective.SparseDual`."""
    semi, nr, a, b, cost_t, reg, k = prob
    gf, gg, tau, vals, idx, acc, hints, bounds = scratch
    if semi:
        return semi_dual_value_grad(x, a, b, cost_t, reg, k, grad, tau, vals, idx, acc,
                                    hints, bounds)
    val = dual_value_grad(x[:nr], x[nr:], a, b, cost_t, reg, k, gf, gg, vals, idx, acc)
    grad[:nr] = gf
    grad[nr:] = gg
    return val


@jit
def _finite(v, g):
    if not math.isfinite(v):
        return False
    for i in range(g.shape[0]):
        if not np.isfinite(g[i]):
            return False
    return True


@jit
def increases(vt, v0, t, dg0, dgt, floor, c1):
    """A line search's trial ``(t, vt, dgt)`` from ``(v0, dg0)``: sufficient increase, or,
    within the rounding floor of the value, the approximate Wolfe test on the slope."""
    return vt >= v0 + c1 * t * dg0 or (abs(vt - v0) <= floor and (2 * c1 - 1) * dg0 <= dgt)


@jit
def next_trial(t, lo, hi, v_lo, dg_lo, v_hi, interp):
    """The line search's step after trial ``t``: doubled until a bracket ``[lo, hi]``
    exists, then the maximiser of the quadratic through ``(lo, v_lo, slope dg_lo)`` and
    ``(hi, v_hi)`` (when ``interp``: the last trial set ``hi`` by failing the increase)
    kept within [0.1, 0.9] of the bracket: exact on a quadratic piece, a bisection at
    worst. -1 once the bracket has collapsed."""
    if hi == math.inf:
        return 2.0 * t
    width = hi - lo
    if width <= 1e-14 * hi:
        return -1.0
    t = lo + 0.5 * width
    if interp:
        curv = (v_hi - v_lo - dg_lo * width) / (width * width)
        if curv < 0:
            t = lo + min(0.9 * width, max(0.1 * width, -dg_lo / (2.0 * curv)))
    return t


@jit
def search(x, v0, g0, d, t, prob, scratch, xt, gt, xb, gb, counts, c1=1e-4, c2=0.9,
           max_ls=40):
    """The weak Wolfe line search of :mod:`ottools._sparse_ot._quasi_newton`, on the
    compiled objective: ``(code, t, v)`` with ``code`` 1 (a weak Wolfe point, in ``xt``,
    ``gt``), 2 (the best trial that increased the objective, in ``xb``, ``gb``) or 0
    (nothing increased). Counts the evaluations in ``counts[C_NFEV]``."""
    dg0 = dot(g0, d)
    if not dg0 > 0:
        return 0, 0.0, math.nan
    floor = 1e-15 * abs(v0)
    lo, hi = 0.0, math.inf
    v_lo, dg_lo, v_hi = v0, dg0, math.nan
    has_best, best_v, best_t = False, -math.inf, 0.0
    for _ in range(max_ls):
        for i in range(x.shape[0]):
            xt[i] = x[i] + t * d[i]
        vt = evaluate(xt, prob, scratch, gt)
        counts[C_NFEV] += 1
        interp = False
        if not _finite(vt, gt):
            hi = t
        else:
            dgt = dot(gt, d)
            if increases(vt, v0, t, dg0, dgt, floor, c1):
                if vt > v0 and (not has_best or vt > best_v):
                    has_best, best_v, best_t = True, vt, t
                    xb[:] = xt
                    gb[:] = gt
                if dgt <= c2 * dg0:
                    return 1, t, vt
                lo, v_lo, dg_lo = t, vt, dgt
            else:
                hi, v_hi, interp = t, vt, True
        t = next_trial(t, lo, hi, v_lo, dg_lo, v_hi, interp)
        if t < 0:
            break
    if has_best:
        return 2, best_t, best_v
    return 0, 0.0, math.nan


@jit
def run(x, g, val, prob, scratch, qn, bfgs, work, mon, best_x, fin, ring, lim, counts):
    """Dense BFGS iterations from ``x`` (value ``val[0]``, gradient ``g``; all three
    updated in place) until an event, which it returns: MAXITER or STALL (checked before
    an iteration), LSFAIL (the line search found no increase: the driver restarts or
    takes a kink step), CONVERGED (``err <= tol``), DUE (an active-set attempt),
    or NEWTON (``err <= newton_switch``).

    ``qn``: BFGS state (Q_*); ``bfgs = (H, nxt, u, ps, phy, pending)`` as in
    :func:`ottools._kernels._sparse.bfgs_update`; ``work``: seven scratch vectors;
    ``mon``, ``best_x``: the monitor; ``fin``, ``ring``: the finisher (F_ON 0: none);
    ``lim = (tol, maxiter, mass, newton_switch)``; ``counts`` (C_*; C_LAST
    tells the driver whether the objective's scratch, ``tau`` included, belongs to the
    point returned).
    The iterations are those of the Python driver's loop, to the bit.
    """
    H, nxt, u, ps, phy, pending = bfgs
    d, xt, gt, xb, gb, s, y = work
    tol, maxiter, mass, nswitch = lim[0], lim[1], lim[2], lim[3]
    v = val[0]
    while True:
        if counts[C_NIT] >= maxiter:
            return MAXITER
        if stalled(mon, counts[C_NFEV]):
            return STALL
        from_h = qn[Q_COUNT] > 0
        if not from_h:
            norm = math.sqrt(dot(g, g))
            d[:] = g
            t0 = 1.0 / norm if norm > 0 else 1.0
        else:
            if qn[Q_NEXT] != 0.0:
                d[:] = nxt
            else:
                sym_matvec(H, g, d, ps, phy, pending)
            t0 = qn[Q_TFIRST]
        code, t, vn = search(x, v, g, d, t0, prob, scratch, xt, gt, xb, gb, counts)
        counts[C_LAST] = 1 if code == 1 else 0
        if code == 0:
            return LSFAIL
        xn, gn = (xt, gt) if code == 1 else (xb, gb)
        for i in range(x.shape[0]):
            s[i] = xn[i] - x[i]
            y[i] = g[i] - gn[i]
        ok = bfgs_update(H, s, y, d, gn, qn[Q_COUNT] == 0.0, nxt, u, ps, phy, pending)
        qn[Q_NEXT] = 1.0 if ok else 0.0
        if ok:
            qn[Q_COUNT] += 1.0
        qn[Q_TFIRST] = first_trial(from_h, t, t0)
        x[:] = xn
        g[:] = gn
        v = vn
        val[0] = v
        counts[C_NIT] += 1
        counts[C_NIT_BFGS] += 1
        err = abs_sum(g) / mass
        observe(mon, best_x, v, x, counts[C_NFEV], err)
        if err <= tol:
            return CONVERGED
        if fin[F_ON] != 0.0 and due(fin, ring, counts[C_NIT], v):
            return DUE
        if err <= nswitch:
            return NEWTON


def _load_callees():
    """Compile, or load from Numba's cache, the quasi-Newton kernels that :func:`run`
    calls, before :func:`run` itself is compiled or loaded.

    They sum under a reassociation flag (``FASTMATH_SAFE``), so their rounding depends on
    how LLVM vectorises them. :func:`run` carries its own copy, optimised inside it, but
    calls the kernels' own code when that is loaded first. Measured with Numba 0.68: when
    :func:`run` was loaded from the cache before them, it used its copy and took other
    iterates (at rounding level; another iteration count) than the freshly compiled
    loop, or the Python loop calling the same kernels. Loading them first keeps one code
    for every path and every process (tested: the compiled and the Python loop agree to
    the bit)."""
    v = np.ones(2)
    H = np.eye(2)
    dot(v, v)
    sym_matvec(H, v, np.empty(2), np.zeros(2), np.zeros(2), np.zeros(3))
    bfgs_update(H, v, v, v, v, True, np.empty(2), np.empty(2), np.empty(2), np.empty(2),
                np.zeros(3))


_load_callees()
