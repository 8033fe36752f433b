r"""Sparsity-constrained and quadratically regularized OT: the public functions.

Module map: :mod:`._objective` (the rescaled compressed problem and the dual /
semi-dual objective: cached value and gradient, potentials, plan),
:mod:`._quasi_newton` (BFGS and L-BFGS with a weak Wolfe line search), :mod:`._stall` (the stall budget),
:mod:`._kinks` (least-norm supergradient, kink steps, certificates), :mod:`._newton`
(semismooth Newton steps for ``max_nz >= n``), :mod:`._ascent` (the driver of those
stages), :mod:`._lp` (``max_nz = 1`` by the linear program). This module validates,
dispatches on ``method`` and builds the result.
"""

import math
import time

import numpy as np

from .._geometry import PointCloud
from .._problem import LinearProblem, Settings
from .._result import (CERTIFIED, CONVERGED, MAXITER, NONFINITE, STALLED,
                       make_result, solver_result, status_message)
from .._validation import (_check_int, _check_method, _check_option_table,
                           _check_positive, _Option)
from . import _lp
from ._ascent import ascend
from ._objective import ScaledProblem, SparseDual

__all__ = ["sparsity_constrained_ot", "quadratic_ot"]

_FORMULATIONS = ("semi-dual", "dual")
_METHODS = ("auto", "bfgs", "lbfgs", "newton", "lp")
# Dense BFGS costs O(nx**2) per iteration against O(n m) for an evaluation: it is used
# while nx <= 1024 (where Python's overhead dominates anyway) or nx**2 <= 2 n m (the
# semi-dual, nx = n), up to 4096 variables (its matrix: 128 MiB); L-BFGS otherwise.
# Measured at n = m = 1000 (dual, nx = 2000): BFGS 3.3 s to POT's dual value against
# 0.48 s for L-BFGS.
_DENSE_MAX_VARS = 4096
_DENSE_ALWAYS = 1024


def _dense(nx, nr, mc):
    return nx <= _DENSE_ALWAYS or (nx <= _DENSE_MAX_VARS and nx * nx <= 2 * nr * mc)
_STALL = {"stall_window": _Option("int", None, lo=1, none_ok=True)}
_OPTIONS = {
    "bfgs": _STALL,
    "lbfgs": {"maxcor": _Option("int", 10, lo=1), **_STALL},
    "newton": {"newton_switch": _Option("float", None, lo=0.0, lo_open=True, none_ok=True),
               **_STALL},
    "lp": {},
}


def _resolve_method(method, k, nr, mc):
    """``"auto"``: the LP for ``max_nz = 1`` up to 65,536 positive-weight entries, else
    ``"newton"`` (BFGS, then Newton steps once the error is small)."""
    if method != "auto":
        return method
    if k == 1 and nr * mc <= _lp.AUTO_MAX_ENTRIES:
        return "lp"
    return "newton" if k >= 2 or nr == 1 else "bfgs"


def _check_method_args(method, k, nr, callback, init):
    """Arguments a method cannot honour raise, as ``scipy.optimize.linprog`` does."""
    if method == "lp":
        if k != 1:
            raise ValueError(f"method='lp' solves max_nz=1 only; got max_nz={k} (after "
                             f"capping at the {nr} positive source weights).")
        for name, value in (("callback", callback), ("init", init)):
            if value is not None:
                raise ValueError(
                    f"`{name}` is not supported by method='lp' (HiGHS has neither "
                    f"callbacks nor warm starts); use method='bfgs', or drop `{name}`.")
    if method == "newton" and k == 1 and nr > 1:
        raise ValueError(
            "method='newton' needs smooth pieces: max_nz >= 2 (max_nz = 1 is piecewise "
            "linear). Use method='lp' or method='bfgs'.")


def _full_potentials(prob, sp, fc, gc):
    """Full, centred potentials in the problem's dtype from scaled compressed ones.

    Zero-weight entries get the hard c-transform (:meth:`LinearProblem.expand`). A
    column of zero weight is then lowered, where needed, below ``C_ij - f_i`` for the rows
    of zero weight too, so that ``f_i + g_j - C_ij <= 0`` (the documented plan formula
    gives 0) also where both weights are zero; its weight being zero, the gauge is
    unchanged.
    """
    f, g = prob.expand(fc * sp.s, gc * sp.s, reg=0.0)
    zr = np.flatnonzero(prob.a == 0)
    zc = np.flatnonzero(prob.b == 0)
    if zr.size and zc.size:
        bound = np.min(prob.cost[np.ix_(zr, zc)].astype(np.float64)
                       - f[zr].astype(np.float64)[:, None], axis=0)
        gz = np.minimum(g[zc].astype(np.float64), bound)
        gd = gz.astype(prob.dtype)
        up = gd.astype(np.float64) > gz  # rounded up: take the next value down
        gd[up] = np.nextafter(gd[up], prob.dtype.type(-np.inf))
        g[zc] = gd
    return f, g


def _plan(prob, sp, indptr, indices, data):
    """The full CSC plan in the problem's dtype from compressed scaled columns; returns
    ``(plan, err, lin, sq)`` measured on the returned (rounded) values; ``sq`` is
    ``(top, t)`` with ``sum v^2 = top^2 t``."""
    import scipy.sparse

    n, m = prob.shape
    vals = (data * sp.M).astype(prob.dtype)
    v64 = vals.astype(np.float64)
    col_of = np.repeat(np.arange(sp.mc), np.diff(indptr))
    row_sums = np.bincount(indices, weights=v64, minlength=sp.nr)
    col_sums = np.bincount(col_of, weights=v64, minlength=sp.mc)
    err = prob.marginal_error(row_sums, col_sums)
    lin = float(np.sum(v64 * prob.costc[indices, col_of].astype(np.float64)))
    # sum v^2 as top^2 sum (v / top)^2 (top a power of two): the plain sum under/overflows
    # at masses of 1e-200 / 1e200 (fun lost its quadratic term, or was inf)
    top = math.ldexp(1.0, math.frexp(float(np.abs(v64).max()))[1]) if v64.size else 1.0
    sq = (top, float(np.sum((v64 / top) ** 2)))
    rows = prob.rows[indices] if prob.compressed else indices
    if prob.compressed:
        counts = np.zeros(m, dtype=np.int64)
        counts[prob.cols] = np.diff(indptr)
        indptr = np.concatenate([[0], np.cumsum(counts)])
    plan = scipy.sparse.csc_array((vals, rows, indptr), shape=(n, m))
    return plan, err, lin, sq


def _message(status, out, err, tol, nit, formulation, k, nr, window):
    stat = out.stationarity
    if status == CONVERGED and out.certified:
        return (f"Converged: the {formulation} is certified maximal (a mix of the tied "
                f"columns' plans meets the marginals to stationarity={stat:.3g} <= "
                f"tol={tol:.3g}), and the returned plan, one of the tied plans per "
                f"column, meets them too: err={err:.3g} (nit={nit}).")
    if status == CERTIFIED:
        return (f"Certified maximum, plan off the marginals: the {formulation} is maximal "
                f"(a mix of the tied columns' plans meets the marginals to "
                f"stationarity={stat:.3g} <= tol={tol:.3g}), but the returned plan, one "
                f"of the tied plans per column, misses them by err={err:.3g} > tol: the "
                f"relaxation is not tight for this problem (nit={nit}).")
    if status == STALLED:
        if out.why == "window":
            what = (f"the dual value did not increase by more than 1e-12 (relative) over "
                    f"the last {window} evaluations")
        elif out.why == "kink":
            what = ("neither a quasi-Newton step nor a step along the least-norm "
                    "supergradient of the tied columns increases the dual")
        else:
            what = "the iterations reached the rounding floor of the dual value"
        tail = ("" if math.isnan(stat) else f", stationarity={stat:.3g}")
        advice = ("loosen tol" if k >= nr else
                  "the point is not certified maximal; loosen tol or accept the plan")
        return (f"Stalled: {what}; the best point is returned (err={err:.3g}{tail}, "
                f"tol={tol:.3g}, nit={nit}): {advice}.")
    if status == NONFINITE and out.why == "start":
        return ("Non-finite values at the starting point (from `init`, or `cost` and "
                "`reg` so far apart that the objective overflows); nothing was solved.")
    if status == MAXITER:
        return status_message(MAXITER, err=err, tol=tol, nit=nit) + (
            " The dual value was still increasing.")
    return status_message(status, err=err, tol=tol, nit=nit)


def _solve(a, b, cost, reg, max_nz, formulation, method, tol, maxiter, init, callback,
           options):
    """Validate, dispatch on ``method`` and build the result."""
    t_start = time.perf_counter()
    if isinstance(cost, PointCloud):
        # The solvers read the whole cost many times: a point cloud's dense matrix (a
        # MemoryError that says how much when it does not fit).
        cost = cost.dense()
    prob = LinearProblem.from_args(a, b, cost)
    reg = _check_positive(reg, "reg")
    if max_nz is not None:
        max_nz = _check_int(max_nz, "max_nz", minimum=1)
    formulation = _check_method(formulation, _FORMULATIONS, name="formulation")
    method = _check_method(method, _METHODS)
    settings = Settings.from_args(tol, maxiter, callback, prob.dtype)
    tol, maxiter, callback = settings.tol, settings.maxiter, settings.callback
    semi = formulation == "semi-dual"
    nr, mc = prob.rows.size, prob.cols.size
    k = nr if max_nz is None else min(max_nz, nr)
    if k * mc < nr:
        raise ValueError(
            f"`max_nz`={max_nz} is too small: {mc} target(s) of positive weight with at most "
            f"{k} non-zeros each cannot serve the {nr} sources of positive weight "
            f"(no feasible plan; the dual would be unbounded).")
    method = _resolve_method(method, k, nr, mc)
    _check_method_args(method, k, nr, callback, init)
    opts = _check_option_table(options, _OPTIONS[method], f"method={method!r}")
    f0, g0 = prob.init_potentials(init, semi=semi)
    if semi and f0.size:
        # the semi-dual is invariant under f + c: subtract the median entry (an entry, so
        # that nearby entries subtract exactly, e.g. a constant 1e300 leaves zeros)
        f0 = f0 - np.partition(f0, f0.size // 2)[f0.size // 2]
    sp = ScaledProblem(prob, reg)
    obj = SparseDual(sp, k, semi)
    x0 = f0 / sp.s if semi else np.concatenate([f0, g0]) / sp.s

    def notify(x, value, err, nit):
        if callback is None:
            return
        fc, gc = obj.potentials(x)
        f, g = _full_potentials(prob, sp, fc, gc)
        callback(make_result(f=f, g=g, nit=nit, err=err, dual_value=value * sp.M * sp.s,
                             method=method, formulation=formulation))

    lp_plan = None
    if method == "lp":
        lp_status, f_lp, lp_plan, nit = _lp.solve_k1(sp, maxiter)
        if lp_status == 0:
            x = f_lp if semi else np.concatenate([f_lp, _lp.dual_g(sp, f_lp)])
        else:
            x = x0
        value, grad = obj.value_grad(x)
        out = _LPOutcome(lp_status, x, value, grad, nit, lp_plan, sp)
    else:
        if method == "lbfgs":
            memory = opts["maxcor"]
        else:
            memory = None if _dense(obj.nx, nr, mc) else 10
        switch = None
        if method == "newton":
            switch = opts["newton_switch"]
            if switch is None:  # smooth: early; k < n: where the relaxation looks tight
                switch = 1e-3 if k >= nr else 1e-6
        if method == "newton" and not semi and init is None and callback is None:
            out = _dual_through_semi(obj, x0, tol, maxiter, memory, opts["stall_window"],
                                     switch)
        else:
            out = ascend(obj, x0, tol=tol, maxiter=maxiter,
                         notify=None if callback is None else notify, memory=memory,
                         stall_window=opts["stall_window"], newton_switch=switch)
    x = out.x
    if lp_plan is not None:
        # column j sends b_j from its largest LP entry
        indices = np.argmax(lp_plan, axis=0)
        indptr, data = np.arange(mc + 1), sp.bc.copy()
    else:
        indptr, indices, data = obj.plan(x)[:3]
    plan, err, lin, sq = _plan(prob, sp, indptr, indices, data)
    status = out.status
    if out.certified:
        status = CONVERGED if err <= tol else CERTIFIED
    elif status == CONVERGED and err > tol:
        # the gradient's error met tol, the rounded plan's does not
        status, out.why = STALLED, "floor"
    fc, gc = obj.potentials(x)
    f, g = _full_potentials(prob, sp, fc, gc)
    message = _message(status, out, err, tol, out.nit, formulation, k, nr, out.window)
    return solver_result(
        status, err=err, tol=tol, nit=out.nit, method=method, message=message,
        fun=lin + 0.5 * reg * sq[0] * sq[0] * sq[1], cost=lin,
        dual_value=out.value * sp.M * sp.s,
        plan=plan, f=f, g=g, formulation=formulation, reg=reg, max_nz=max_nz,
        stationarity=out.stationarity, nfev=obj.nfev + out.nfev_other, nit_bfgs=out.nit_bfgs,
        n_restarts=out.n_restarts, n_kink_steps=out.n_kink_steps, n_newton=out.n_newton,
        n_kkt=out.n_kkt, kkt_solves=out.kkt_solves,
        time=time.perf_counter() - t_start, time_to_best=out.time_to_best,
        time_kink=out.time_kink, time_newton=out.time_newton, time_kkt=out.time_kkt)


_COUNTS = ("nit", "nit_bfgs", "n_restarts", "n_kink_steps", "n_newton", "n_kkt",
           "kkt_solves", "time_kink", "time_newton", "time_kkt")


def _dual_through_semi(obj, x0, tol, maxiter, memory, stall_window, switch):
    """The dual (method "newton") through the semi-dual first.

    The semi-dual is the tighter relaxation: its maximum bounds the dual's from above.
    Its ascent (``nr`` variables, dense BFGS up to 1024 of them, and the active-set
    finish) is faster than the dual's, and at its certified maximum ``f`` the dual's
    value at ``(f, -tau)`` (``tau`` the column thresholds) equalled it on every problem
    of the benchmark grid: that point is then a maximum of the dual, certified by the
    same mix of plans (a plan of the semi-dual's relaxation is one of the dual's).
    For ``max_nz >= n`` (``quadratic_ot``) both are exact, and the dual's L-BFGS above
    1024 variables never reached the Newton switch (n = 513: maxiter, err 3e-3, where
    the semi-dual converged in 1166 iterations). Otherwise the dual's own ascent
    continues from there with the iterations left.
    """
    sp, nr, mc = obj.sp, obj.nr, obj.mc
    t0 = time.perf_counter()
    semi = SparseDual(sp, obj.k, True)
    out_s = ascend(semi, np.zeros(nr), tol=tol, maxiter=maxiter,
                   memory=None if _dense(nr, nr, mc) else 10, stall_window=stall_window,
                   newton_switch=switch)
    if out_s.status == NONFINITE:
        out = ascend(obj, x0, tol=tol, maxiter=maxiter, memory=memory,
                     stall_window=stall_window, newton_switch=switch)
        out.nfev_other = semi.nfev
        return out
    fc, gc = semi.potentials(out_s.x)
    x = np.concatenate([fc, gc])
    v, g = obj.value_grad(x)
    # max_nz >= n: both formulations are exact and the semi-dual's plan (g = -tau) is
    # the dual's, so a converged semi-dual is a converged dual when the dual's own error
    # at (f, -tau) meets tol too
    smooth_done = (obj.k >= nr and out_s.status == CONVERGED and obj.finite(v, g)
                   and obj.err(g) <= tol)
    if smooth_done or (out_s.certified and obj.finite(v, g)
                       and v >= out_s.value - obj.value_floor(v, x)):
        out = out_s
        out.x, out.value, out.grad = x, v, g
        out.nfev_other = semi.nfev
        return out
    t_semi = time.perf_counter() - t0
    out = ascend(obj, x, tol=tol, maxiter=max(0, maxiter - out_s.nit), memory=memory,
                 stall_window=stall_window, newton_switch=switch)
    for name in _COUNTS:
        setattr(out, name, getattr(out, name) + getattr(out_s, name))
    out.time_to_best += t_semi  # the dual's ascent starts after the semi-dual's
    out.nfev_other = semi.nfev
    return out


class _LPOutcome:
    """An :class:`._ascent.Outcome`-like record of the LP route."""

    nit_bfgs = n_restarts = n_kink_steps = n_newton = n_kkt = kkt_solves = nfev_other = 0
    time_to_best = time_kink = time_newton = time_kkt = 0.0
    window = 0

    def __init__(self, lp_status, x, value, grad, nit, plan, sp):
        self.x, self.value, self.grad, self.nit = x, value, grad, nit
        self.why = "lp"
        if lp_status == 0:
            self.status, self.certified = CONVERGED, True
            self.stationarity = float(
                np.abs(plan.sum(1) - sp.ac).sum() + np.abs(plan.sum(0) - sp.bc).sum()
            ) / sp.mass
        else:
            self.status = MAXITER if lp_status == 1 else STALLED
            self.certified = False
            self.stationarity = math.nan


def sparsity_constrained_ot(a, b, cost, reg, max_nz, *, formulation="semi-dual",
                            method="auto", tol=None, maxiter=10_000, init=None,
                            callback=None, options=None):
    r"""Optimal transport with a quadratic regularization and at most ``max_nz`` non-zeros
    per column of the plan.

    Solves, through its dual or semi-dual (Liu, Puigcerver and Blondel, 2023),

    .. math::

        \min_{T \in U(a, b),\ \|t_j\|_0 \le k\ \forall j}
        \langle T, C \rangle + \frac{\gamma}{2} \sum_j \|t_j\|_2^2,

    where :math:`t_j` is column ``j`` of the plan (the mass target ``j`` receives),
    :math:`\gamma` = ``reg`` and :math:`k` = ``max_nz``. Same problem as POT's
    ``ot.smooth.smooth_ot_dual`` / ``smooth_ot_semi_dual`` with
    ``reg_type="sparsity_constrained"``.

    Parameters
    ----------
    a : array_like, shape (n,), or None
        Source weights: finite, non-negative, positive sum; zeros allowed. ``None`` means
        uniform. Must have the same total mass as ``b`` up to 1e-6 (relative); a smaller gap
        is taken as rounding and ``b`` is rescaled onto the mass of ``a``.
    b : array_like, shape (m,), or None
        Target weights, as ``a``.
    cost : array_like, shape (n, m), or ottools.PointCloud
        Ground cost, finite. Rectangular problems are fine. A ``PointCloud`` is made dense
        (``cost.dense()``; ``MemoryError`` with the size when it would not fit).
    reg : float
        :math:`\gamma > 0`, weight of the squared-L2 term, in the units of ``cost``
        divided by mass. ``reg * mass / max|cost|`` must lie within float64's normal
        range (about 1e-290 to 1e290), else ``ValueError``.
    max_nz : int
        :math:`k \ge 1`, the most non-zeros per column (``operator.index``: NumPy
        integers accepted). ``max_nz >= n`` is quadratically regularized OT
        (:func:`quadratic_ot`). ``max_nz * m`` (positive-weight entries) must be at
        least the number of positive source weights, else no plan is feasible
        (``ValueError``).
    formulation : {"semi-dual", "dual"}, default "semi-dual"
        ``"semi-dual"``: maximise over ``f`` only; every column of the plan sums exactly to
        ``b`` and only the rows carry an error. ``"dual"``: maximise over ``(f, g)``; both
        marginals carry an error. For ``k < n`` the semi-dual is at least as tight a
        relaxation (its maximum is >= the dual's); they agree where the relaxation is
        tight (e.g. ``k >= n``).
    method : {"auto", "newton", "bfgs", "lbfgs", "lp"}, default "auto"
        ``"bfgs"``: dense BFGS with a weak Wolfe line search, restarts and kink steps
        (see Notes), while its ``O(nx**2)`` update costs less than about two objective
        evaluations or ``nx <= 1024`` (``nx`` = ``n``, or ``n + m`` for the dual; at
        most 4096), else the same with 10 pairs of limited memory. ``"lbfgs"``: limited memory throughout
        (``options["maxcor"]`` pairs). ``"newton"``: ``"bfgs"``, then semismooth Newton
        steps on the current smooth piece once ``err <= options["newton_switch"]``;
        they converge where the maximum lies inside a piece (always for
        ``max_nz >= n``), and hand back to BFGS at a kink; for ``max_nz < n`` also
        exact active-set KKT solves that certify a maximum at a kink (see the guide);
        the dual (without ``init`` or ``callback``) is solved through the semi-dual
        first, whose certified maximum is the dual's when the dual's value there
        equals it (for ``max_nz >= n``, where both are exact: whose converged maximum
        is the dual's when the dual's own ``err`` there meets ``tol``); ``max_nz >= 2``. ``"lp"``:
        the exact linear program for ``max_nz = 1`` (else ``ValueError``); HiGHS has no
        callback and no warm start, so ``callback`` or ``init`` given with it raise
        ``ValueError`` (as ``scipy.optimize.linprog`` refuses what its method cannot
        honour). ``"auto"``: ``"lp"`` for ``max_nz = 1`` up to 65,536 positive-weight
        entries, ``"bfgs"`` for larger ``max_nz = 1`` problems, ``"newton"`` otherwise.
        ``res.method`` says which ran.
    tol : float, optional
        Stop when the marginal error ``err = (||T 1 - a||_1 + ||T^T 1 - b||_1) / sum(a)``
        (relative to the total mass; the L1 norm of the objective's gradient) of the
        current iterate is at most ``tol``, checked after every iteration. ``None``:
        1e-9 for float64 input, 1e-4 for float32. float32 input is solved in float64 and
        its plan returned in float32, whose rounding puts a floor of about 1e-7 under
        ``err``. For ``max_nz < n`` ``err`` need not vanish at the maximum (see Notes);
        there ``tol`` also bounds the *stationarity* that certifies a maximum (status 5).
        ``tol`` only decides when to stop, never which steps are taken: a smaller ``tol``
        continues the same iterations and returns a dual value at least as high. (POT
        passes its ``stopThr`` to SciPy as ``ftol`` and ``gtol``, which measure the
        objective's relative decrease and the gradient's max-norm.)
    maxiter : int, default 10000
        Maximum number of iterations (quasi-Newton, kink and Newton steps; simplex
        iterations for ``"lp"``).
    init : tuple (f, g), optional
        Warm start: potentials of lengths ``n`` and ``m`` (e.g. ``(res.f, res.g)``),
        re-centred (the problem is invariant under ``f + c, g - c``); the semi-dual uses
        ``f`` only (also re-centred) and accepts ``g=None``.
    callback : callable, optional
        ``callback(intermediate_result)`` is called after every iteration with an
        :class:`OTResult` holding ``f``, ``g``, ``nit``, ``err``, ``dual_value``,
        ``method`` and ``formulation``, and once more with the point of a certified
        active-set finish (same ``nit``), so that its last call sees the returned dual
        value; raising ``StopIteration`` stops the solver (status 3).
    options : dict, optional
        Method options (unknown keys raise ``TypeError``). ``"stall_window"`` (int or
        None, all but ``"lp"``): stop (status 4) after this many objective evaluations
        without an increase of the dual value beyond 1e-12 (relative); ``None`` (default)
        is half the evaluations that reached the last increase, at least 25.
        ``"maxcor"`` (``"lbfgs"``, default 10): the number of stored pairs (memory is
        taken as pairs are stored, so a large value costs only what the solve stores).
        ``"newton_switch"`` (``"newton"``, float or None): switch from BFGS to Newton
        once ``err`` is below it; ``None`` (default) is 1e-3 for ``max_nz >= n`` and
        1e-6 otherwise (an error that small suggests a tight relaxation).

    Returns
    -------
    res : OTResult
        ``plan`` : ``scipy.sparse.csc_array`` (n, m), at most ``max_nz`` non-zeros per
        column, row indices sorted. Column ``j`` is ``[f + g_j - c_j]_+ / reg`` restricted
        to its ``max_nz`` largest entries (at exact ties, either).
        ``f``, ``g`` : ndarrays (n,), (m,), the potentials, centred so that
        ``<f, a> = <g, b>``. For the semi-dual, ``g`` is minus the column thresholds of the
        k-sparse simplex projections (not optimised, but the plan has the same form).
        Zero-weight entries hold the largest potential that keeps them empty (the
        formula above gives 0 there, also where both weights are zero).
        ``fun`` : float, the primal objective ``<T, C> + reg/2 ||T||_F^2`` of the returned
        plan. ``cost`` : float, ``<T, C>``.
        ``dual_value`` : float, the maximised objective (dual or semi-dual) at the returned
        potentials; a lower bound on ``fun`` at the optimum.
        ``err`` : float, the relative marginal error (see ``tol``) of ``plan``.
        ``stationarity`` : float, the relative L1 norm of the least-norm supergradient
        at the last kink test (NaN if none ran; for ``"lp"``, the LP plan's error).
        ``nit`` : iterations (see ``maxiter``); ``nit_bfgs``, ``n_kink_steps``,
        ``n_newton``: its quasi-Newton, kink and Newton steps; ``n_restarts``: restarts
        of the quasi-Newton memory; ``nfev``: objective evaluations.
        ``time`` : seconds of the whole call; ``time_to_best``: seconds until the last
        increase of the dual value beyond 1e-12 (relative); ``time_kink``,
        ``time_newton``: seconds in kink and Newton steps.
        ``success``, ``status``, ``message``, ``method``, ``formulation``, ``reg``,
        ``max_nz``.

        ``status``: 0 converged (``err <= tol``); 1 ``maxiter`` reached (the best point
        is returned); 2 non-finite values (e.g. an overflowing ``init``; the message
        says so); 3 stopped by ``callback``; 4 stalled: the dual value did not increase
        by more than 1e-12 (relative) over the stall window, or no step increases it,
        without a certificate (the best point is returned; the message gives ``err``
        and the stationarity); 5 certified maximum whose plan misses the marginals: a
        mix of the tied columns' plans meets them to ``stationarity <= tol``, so no
        other potentials give a higher dual value, but the returned plan (one of the
        tied plans per column) has ``err > tol`` (the relaxation is not tight for this
        problem). ``success`` is True for status 0 only.

    See Also
    --------
    quadratic_ot : the same without the cardinality constraint.

    Notes
    -----
    Dual: :math:`\max_{f, g} \langle f, a\rangle + \langle g, b\rangle - \sum_j
    \delta_k(f + g_j - c_j)` with :math:`\delta_k(x) = \frac{1}{2\gamma}\sum_{k\
    \mathrm{largest}} [x_i]_+^2`. Semi-dual: :math:`\max_f \langle f, a\rangle - \sum_j
    b_j \max_{y \in \Delta_k} \langle y, f - c_j\rangle - \frac{\gamma b_j}{2}\|y\|^2`,
    whose maximiser is the k-sparse simplex projection of :math:`(f - c_j)/(\gamma b_j)`
    (keep the ``k`` largest entries, project them on the simplex; Kyrillidis et al.,
    2013). The primal is not convex: both relaxations give lower bounds, and the
    returned plan is feasible for the sparsity constraint but only approximately for
    the row (and, for the dual, column) marginals, up to ``err``.

    Each objective evaluation is one O(nm) pass over the cost, column by column, with
    an O(n) selection of the at most ``k`` entries that carry mass. For ``k < n`` the
    objective is concave but only piecewise smooth, with kinks where a column's k-th
    and (k+1)-th largest entries tie, and its smooth pieces are badly conditioned.
    BFGS with a weak Wolfe line search keeps making progress across kinks (Lewis and
    Overton, 2013), where SciPy's L-BFGS-B stops; a failed line search restarts the
    memory, and after a failed steepest-ascent step the solver builds the least-norm
    supergradient from the tied columns (mixes of their plans: a small non-negative
    least-squares problem) and steps along it. When that supergradient has relative L1
    norm ``<= tol`` the point is a certified maximum. The stall window (see
    ``options``) ends the ascent when the dual value stops increasing; a stalled solve
    thus costs at most about 1.5 times the evaluations that reached its best value.
    Decisions depend on evaluation counts only, never on the clock, and the column
    blocks that run in parallel (from 2**18 entries on) are fixed by the problem size,
    so a result does not depend on the thread count, on other threads or on the
    process history.

    The problem is rescaled internally by powers of two (exactly): the cost to
    ``[-1, 1]``, the weights to unit mass; costs near 1e300 are solved as costs near 1.

    ``max_nz = 1``: every semi-dual column plan is ``b_j e_i``, so the semi-dual is
    :math:`\langle f, a\rangle - \sum_j b_j \max_i (f_i - c_{ij}) + \frac{\gamma}{2}
    \|b\|^2`, piecewise linear; maximising the dual over ``g`` alone gives the same
    function. By LP duality the maximum of both is :math:`\mathrm{OT}(a, b) +
    \frac{\gamma}{2}\|b\|^2`, reached at the row potentials of the unregularized OT
    problem, which ``method="lp"`` computes with SciPy's ``linprog`` (HiGHS; about 1.4 s
    at 300 x 300). The LP plan (a mix of the tied column plans) certifies the maximum;
    the returned plan keeps each column's largest LP entry, so ``err`` is zero (status 0)
    when the LP plan has one non-zero per column (e.g. uniform weights of equal size)
    and the status is 5 otherwise.

    References
    ----------
    .. [1] T. Liu, J. Puigcerver, M. Blondel, "Sparsity-Constrained Optimal Transport",
       ICLR 2023, arXiv:2209.15466.
    .. [2] A. Kyrillidis, S. Becker, V. Cevher, C. Koch, "Sparse projections onto the
       simplex", ICML 2013.
    .. [3] A. S. Lewis, M. L. Overton, "Nonsmooth optimization via quasi-Newton
       methods", Math. Program. 141, 2013.
    .. [4] M. Blondel, V. Seguy, A. Rolet, "Smooth and Sparse Optimal Transport",
       AISTATS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> cost = np.array([[0.0, 1.0, 4.0], [1.0, 0.0, 1.0], [4.0, 1.0, 0.0]])
    >>> res = ottools.sparsity_constrained_ot(None, None, cost, reg=0.5, max_nz=1)
    >>> res.success, res.method
    (True, 'lp')
    >>> np.round(res.plan.toarray(), 4)
    array([[0.3333, 0.    , 0.    ],
           [0.    , 0.3333, 0.    ],
           [0.    , 0.    , 0.3333]])
    """
    if max_nz is None:
        raise TypeError("`max_nz` must be an integer; got None (use quadratic_ot).")
    return _solve(a, b, cost, reg, max_nz, formulation, method, tol, maxiter, init,
                  callback, options)


def quadratic_ot(a, b, cost, reg, *, formulation="dual", method="auto", tol=None,
                 maxiter=10_000, init=None, callback=None, options=None):
    r"""Quadratically regularized optimal transport (sparse plans, no cardinality limit).

    Solves

    .. math::

        \min_{T \in U(a, b)} \langle T, C \rangle + \frac{\gamma}{2} \|T\|_F^2

    through its dual or semi-dual (Blondel, Seguy and Rolet, 2018) with the machinery of
    :func:`sparsity_constrained_ot` at ``max_nz = n``. Same problem as POT's
    ``ot.smooth.smooth_ot_dual(a, b, M, reg, reg_type="l2")``.

    Parameters
    ----------
    a, b : array_like or None
        Source and target weights, as in :func:`sparsity_constrained_ot`.
    cost : array_like, shape (n, m), or ottools.PointCloud
        Ground cost, finite (a ``PointCloud`` is made dense, as in
        :func:`sparsity_constrained_ot`).
    reg : float
        :math:`\gamma > 0`.
    formulation : {"dual", "semi-dual"}, default "dual"
        As in :func:`sparsity_constrained_ot`; here both are exact and reach the same
        plan.
    method : {"auto", "newton", "bfgs", "lbfgs"}, default "auto"
        ``"auto"`` is ``"newton"``: BFGS until ``err <= options["newton_switch"]``
        (default 1e-3), then semismooth Newton steps (see Notes). The others as in
        :func:`sparsity_constrained_ot`.
    tol : float, optional
        Stop when the relative marginal error ``err`` (see
        :func:`sparsity_constrained_ot`) is at most ``tol``; ``None``: 1e-9 for float64,
        1e-4 for float32 (solved in float64; the float32 plan's rounding floor is about
        1e-7).
    maxiter : int, default 10000
        Maximum number of iterations (BFGS and Newton steps).
    init : tuple (f, g), optional
        Warm start, as in :func:`sparsity_constrained_ot`.
    callback : callable, optional
        As in :func:`sparsity_constrained_ot`.
    options : dict, optional
        As in :func:`sparsity_constrained_ot`.

    Returns
    -------
    res : OTResult
        The fields of :func:`sparsity_constrained_ot` (``plan`` a
        ``scipy.sparse.csc_array``), with ``max_nz=None``.

        ``status``: 0 converged (``err <= tol``); 1 ``maxiter`` reached; 2 non-finite
        values; 3 stopped by ``callback``; 4 stalled at the rounding floor before
        ``err <= tol`` (the message says so).

    See Also
    --------
    sparsity_constrained_ot

    Notes
    -----
    The dual is concave and piecewise quadratic:
    :math:`\max_{f,g} \langle f, a\rangle + \langle g, b\rangle - \frac{1}{2\gamma}
    \sum_{ij} [f_i + g_j - C_{ij}]_+^2`, and the plan is
    :math:`T_{ij} = [f_i + g_j - C_{ij}]_+ / \gamma`: sparse for small ``reg``. At the
    optimum ``fun == dual_value``. Its generalized Hessian is a graph Laplacian over the
    plan's support, badly conditioned when the support is sparse, which makes
    first-order and quasi-Newton methods slow near the optimum; semismooth Newton steps
    (a sparse factorization, Levenberg-Marquardt damping and a line search; Lorenz,
    Manns and Meyer, 2021) reach ``err`` of about 1e-14 in a few steps.

    References
    ----------
    .. [1] M. Blondel, V. Seguy, A. Rolet, "Smooth and Sparse Optimal Transport",
       AISTATS 2018.
    .. [2] D. A. Lorenz, P. Manns, C. Meyer, "Quadratically regularized optimal
       transport", Appl. Math. Optim. 83, 2021.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = ottools.quadratic_ot([0.5, 0.5], [0.5, 0.5], cost, reg=1.0)
    >>> res.success, res.plan.nnz
    (True, 2)
    >>> round(res.fun, 6) == round(res.dual_value, 6)
    True
    """
    return _solve(a, b, cost, reg, None, formulation, method, tol, maxiter, init,
                  callback, options)
