r"""Sparsity-constrained and quadratically regularized OT: the public functions.

Module map: :mod:`._objective` (the rescaled compressed problem and the dual /
semi-dual objective: cached value and gradient, potentials, plan), :mod:`._lbfgs`
(L-BFGS with a weak Wolfe line search), :mod:`._stall` (the stall budget),
:mod:`._kinks` (least-norm supergradient, kink steps, certificates), :mod:`._newton`
(semismooth Newton steps for ``max_nz >= n``), :mod:`._ascent` (the driver of those
stages), :mod:`._lp` (``max_nz = 1`` by the linear program). This module validates,
dispatches on ``method`` and builds the result.
"""

import math
import time

import numpy as np

from .._problem import LinearProblem, Settings
from .._result import (CALLBACK, CERTIFIED, CONVERGED, MAXITER, NONFINITE, STALLED,
                       make_result, solver_result, status_message)
from .._validation import (_check_int, _check_method, _check_option_table,
                           _check_positive, _Option)
from . import _lp
from ._ascent import ascend
from ._objective import ScaledProblem, SparseDual

__all__ = ["sparsity_constrained_ot", "quadratic_ot"]

_FORMULATIONS = ("semi-dual", "dual")
_METHODS = ("auto", "bfgs", "lbfgs", "newton", "lp")
# Dense BFGS up to this many variables (its matrix: 128 MiB), L-BFGS beyond.
_DENSE_MAX_VARS = 4096
_STALL = {"stall_window": _Option("int", None, lo=1, none_ok=True)}
_OPTIONS = {
    "bfgs": _STALL,
    "lbfgs": {"maxcor": _Option("int", 10, lo=1), **_STALL},
    "newton": {"newton_switch": _Option("float", 1e-3, lo=0.0, lo_open=True), **_STALL},
    "lp": {},
}


def _resolve_method(method, k, nr, nx):
    """``"auto"``: the LP for ``max_nz = 1`` up to 65,536 positive-weight entries,
    Newton for ``max_nz >= n`` (quadratically regularized OT), else dense BFGS up to
    4096 variables and L-BFGS beyond."""
    if method != "auto":
        return method
    if k == 1 and nr * (nx if nx == nr else nx - nr) <= _lp.AUTO_MAX_ENTRIES:
        return "lp"
    if k >= nr:
        return "newton"
    return "bfgs" if nx <= _DENSE_MAX_VARS else "lbfgs"


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
                    f"callbacks nor warm starts); use method='lbfgs', or drop `{name}`.")
    if method == "newton" and k < nr:
        raise ValueError(
            f"method='newton' needs a smooth objective: max_nz >= the number of positive "
            f"source weights ({nr}); got max_nz={k}. Use method='lbfgs'.")


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
    ``(plan, err, lin, sq)`` measured on the returned (rounded) values."""
    import scipy.sparse

    n, m = prob.shape
    vals = (data * sp.M).astype(prob.dtype)
    v64 = vals.astype(np.float64)
    col_of = np.repeat(np.arange(sp.mc), np.diff(indptr))
    row_sums = np.bincount(indices, weights=v64, minlength=sp.nr)
    col_sums = np.bincount(col_of, weights=v64, minlength=sp.mc)
    err = prob.marginal_error(row_sums, col_sums)
    lin = float(np.sum(v64 * prob.costc[indices, col_of].astype(np.float64)))
    sq = float(np.sum(v64 * v64))
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
            what = ("neither L-BFGS nor a step along the least-norm supergradient of the "
                    "tied columns increases the dual")
        else:
            what = "L-BFGS reached the rounding floor of the dual value"
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
    method = _resolve_method(method, k, nr, nr if semi else nr + mc)
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
            memory = None if obj.nx <= _DENSE_MAX_VARS else 10
        out = ascend(obj, x0, tol=tol, maxiter=maxiter, notify=notify, memory=memory,
                     stall_window=opts["stall_window"],
                     newton_switch=opts.get("newton_switch"))
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
        fun=lin + 0.5 * reg * sq, cost=lin, dual_value=out.value * sp.M * sp.s,
        plan=plan, f=f, g=g, formulation=formulation, reg=reg, max_nz=max_nz,
        stationarity=out.stationarity, nfev=obj.nfev, nit_bfgs=out.nit_bfgs,
        n_restarts=out.n_restarts, n_kink_steps=out.n_kink_steps, n_newton=out.n_newton,
        time=time.perf_counter() - t_start, time_to_best=out.time_to_best,
        time_kink=out.time_kink, time_newton=out.time_newton)


class _LPOutcome:
    """An :class:`._ascent.Outcome`-like record of the LP route."""

    nit_bfgs = n_restarts = n_kink_steps = n_newton = 0
    time_to_best = time_kink = time_newton = 0.0
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
    """
    if max_nz is None:
        raise TypeError("`max_nz` must be an integer; got None (use quadratic_ot).")
    return _solve(a, b, cost, reg, max_nz, formulation, method, tol, maxiter, init,
                  callback, options)


def quadratic_ot(a, b, cost, reg, *, formulation="dual", method="auto", tol=None,
                 maxiter=10_000, init=None, callback=None, options=None):
    r"""Quadratically regularized optimal transport (sparse plans, no cardinality limit).
    """
    return _solve(a, b, cost, reg, None, formulation, method, tol, maxiter, init,
                  callback, options)
