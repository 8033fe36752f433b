"""Entropic optimal transport: ``sinkhorn`` and its solvers."""

from dataclasses import dataclass

import numpy as np

from ._kernels import lazy
from ._result import (CALLBACK, CONVERGED, MAXITER, NONFINITE, STALLED, make_result,
                      status_message)
from ._sns import _solve_sns
from ._validation import (
    _as_float_array,
    _check_balanced,
    _check_callback,
    _check_cost,
    _check_int,
    _check_method,
    _check_options,
    _check_positive,
    _check_tol,
    _check_weights,
    _result_dtype,
)

__all__ = ["sinkhorn"]


_k = lazy("_sinkhorn")


@dataclass
class _Problem:
    """A validated entropic problem, compressed to the positive weights."""

    a: np.ndarray  # full weights, dtype
    b: np.ndarray
    cost: np.ndarray  # full cost, dtype
    reg: float
    dtype: np.dtype
    rows: np.ndarray  # indices of positive a
    cols: np.ndarray
    ac: np.ndarray  # compressed, C-contiguous
    bc: np.ndarray
    costc: np.ndarray
    loga: np.ndarray
    logb: np.ndarray
    f0: np.ndarray  # compressed initial potentials
    g0: np.ndarray
    tol: float  # the kernels' stopping tolerance: a margin below user_tol (see _prepare)
    maxiter: int
    callback: object
    user_tol: float  # the user's tol, checked on the final plan

    @property
    def compressed(self):
        return self.rows.size < self.a.size or self.cols.size < self.b.size


def _prepare(a, b, cost, reg, tol, maxiter, init, callback):
    cost = _check_cost(cost)
    n, m = cost.shape
    a_arr = None if a is None else _as_float_array(a, "a", ndim=1)
    b_arr = None if b is None else _as_float_array(b, "b", ndim=1)
    dtype = _result_dtype(cost, a_arr, b_arr)
    a = _check_weights(a_arr, n, "a", dtype)
    b = _check_weights(b_arr, m, "b", dtype)
    b = _check_balanced(a, b)
    reg = _check_positive(reg, "reg")
    maxiter = _check_int(maxiter, "maxiter", minimum=0)
    callback = _check_callback(callback)
    tol = _check_tol(tol, dtype)
    cost = np.ascontiguousarray(cost, dtype=dtype)
    rows = np.flatnonzero(a > 0)
    cols = np.flatnonzero(b > 0)
    if rows.size < n or cols.size < m:
        costc = np.ascontiguousarray(cost[np.ix_(rows, cols)])
    else:
        costc = cost
    ac = np.ascontiguousarray(a[rows])
    bc = np.ascontiguousarray(b[cols])
    if init is None:
        f0 = np.zeros(rows.size, dtype=dtype)
        g0 = np.zeros(cols.size, dtype=dtype)
    else:
        if not (isinstance(init, (tuple, list)) and len(init) == 2):
            raise TypeError("`init` must be a pair (f, g) of potentials, or None.")
        f_init = _as_float_array(init[0], "init[0]", ndim=1, dtype=dtype)
        g_init = _as_float_array(init[1], "init[1]", ndim=1, dtype=dtype)
        if f_init.shape[0] != n or g_init.shape[0] != m:
            raise ValueError(
                f"`init` potentials must have lengths ({n}, {m}); "
                f"got ({f_init.shape[0]}, {g_init.shape[0]})."
            )
        if not (np.all(np.isfinite(f_init)) and np.all(np.isfinite(g_init))):
            raise ValueError("`init` potentials must be finite.")
        f0 = np.ascontiguousarray(f_init[rows])
        g0 = np.ascontiguousarray(g_init[cols])
    with np.errstate(divide="ignore"):
        loga = np.log(ac)
        logb = np.log(bc)
    # Kernels estimate err from the potentials; the final err is recomputed from the plan and
    # differs by rounding. Stopping at 0.9 tol keeps `success` (err <= tol on the plan)
    # reachable at the cost of a few more iterations.
    return _Problem(a, b, cost, reg, dtype, rows, cols, ac, bc, costc, loga, logb,
                    f0, g0, 0.9 * tol, maxiter, callback, tol)


def _expand(prob, fc, gc):
    """Full potentials: zero-weight entries get their c-transform (finite, optimal)."""
    if not prob.compressed:
        return fc.copy(), gc.copy()
    n, m = prob.cost.shape
    reg = prob.reg
    f = np.empty(n, dtype=prob.dtype)
    g = np.empty(m, dtype=prob.dtype)
    f[prob.rows] = fc
    g[prob.cols] = gc
    from scipy.special import logsumexp

    zr = np.setdiff1d(np.arange(n), prob.rows)
    zc = np.setdiff1d(np.arange(m), prob.cols)
    if zr.size:
        z = prob.logb[None, :] + (gc[None, :] - prob.cost[np.ix_(zr, prob.cols)]) / reg
        f[zr] = -reg * logsumexp(z, axis=1)
    if zc.size:
        z = prob.loga[:, None] + (fc[:, None] - prob.cost[np.ix_(prob.rows, zc)]) / reg
        g[zc] = -reg * logsumexp(z, axis=0)
    return f, g


def _run_blocks(prob, step, potentials, method, check_every, tol=None):
    """Run ``step(maxiter, check_first) -> (nit, status, err)`` to the end.

    Without a callback, one kernel call runs the whole loop. With one, the kernel runs
    in blocks of ``check_every`` iterations and the callback sees an ``OTResult`` with
    the current potentials ``f``, ``g``, ``nit`` and ``err`` (the marginal error of the
    previous iterate) after each block; ``StopIteration`` stops with status 3.
    """
    if prob.callback is None:
        nit, status, _ = step(prob.maxiter, False)
        return nit, status
    total, status, check_first = 0, MAXITER, False
    while total < prob.maxiter:
        block = min(check_every, prob.maxiter - total)
        nit, status, err = step(block, check_first)
        total += nit
        check_first = True
        if status != MAXITER:
            break
        f, g = _expand(prob, *potentials())
        inter = make_result(f=f, g=g, nit=total, err=float(err), method=method)
        try:
            prob.callback(inter)
        except StopIteration:
            status = CALLBACK
            break
    return total, status


# Absorption bound of the log-stable method: scalings u / a, v / b stay in
# [1 / bound, bound]; an underflowed kernel entry (< tiny) times bound**2 stays far below
# rounding (see ottools/_kernels/_sinkhorn.py).
_ABSORB_BOUND = {np.dtype(np.float64): 1e50, np.dtype(np.float32): 1e10}


class _Stabilized:
    """State of the absorption-stabilized iteration: float64 potentials and scalings,
    the kernel ``K = exp((f + g - C) / reg)`` in the problem's dtype."""

    def __init__(self, prob):
        self.prob = prob
        self.a = prob.ac.astype(np.float64)
        self.b = prob.bc.astype(np.float64)
        self.loga = np.log(self.a)
        self.logb = np.log(self.b)
        self.f = prob.f0.astype(np.float64)
        self.g = prob.g0.astype(np.float64)
        self.u = self.a.copy()
        self.v = self.b.copy()
        self.K = np.empty(prob.costc.shape, dtype=prob.dtype)
        self.bound = _ABSORB_BOUND[prob.dtype]
        n, m = prob.costc.shape
        self.chunks = _k.row_chunks(n, m)
        self._x = np.empty((self.chunks, m))
        self._work = np.empty((self.chunks, m))
        self.cerr = np.zeros(1)
        self.relax = False
        self.omega_max = 1.9
        self.rstate = np.array([1.0, np.inf, 0.0, 0.0, 0.0, np.inf, 0.0, 1.0])  # relaxation state
        self.reg_now = 1.0  # the reg that K was built for

    def set_reg(self, reg):
        """Absorb the scalings and build ``K`` for ``reg``."""
        _k.absorb(self.f, self.g, self.u, self.v, self.a, self.b, self.reg_now)
        _k.build_kernel(self.prob.costc, self.f, self.g, reg, self.K, self._x, self._work)
        self.reg_now = reg

    def run(self, tol, maxiter, check_first):
        return _k.sinkhorn_stabilized(self.a, self.b, self.loga, self.logb,
                                      self.prob.costc, self.reg_now, self.f, self.g, self.K,
                                      self.u, self.v, tol, maxiter, check_first, self.bound,
                                      self.cerr, self.relax, self.omega_max, self.rstate,
                                      self.chunks)

    def potentials(self):
        reg = self.reg_now
        return (self.f + reg * np.log(self.u / self.a),
                self.g + reg * np.log(self.v / self.b))


def _solve_log(prob, *, check_every=10, epsilon_scaling=False, epsilon_decay=0.5,
               epsilon_start=None, overrelaxation=False):
    """Log-stable Sinkhorn: absorption-stabilized scaling, with optional epsilon-scaling.

    The iterates are exactly those of log-domain Sinkhorn (block coordinate ascent on the
    dual), computed as ``P = diag(u) K diag(v)`` with ``K = exp((f + g - C) / reg)`` for
    absorbed potentials ``f``, ``g``: one fused pass over ``K`` per iteration, and the
    scalings are absorbed into ``f``, ``g`` (``K`` rebuilt with a vectorized exponential)
    once they leave ``[1e-50, 1e50]`` (float64) or ``[1e-10, 1e10]`` (float32). A zero or
    non-finite scaling is replaced by an exact log-sum-exp iteration, so no value ever
    under/overflows (Schmitzer 2019).

    Options
    -------
    check_every : int, default 10
        Iterations per block between two callback calls (only used with a callback).
    epsilon_scaling : bool, default False
        Solve first at a larger regularization, then multiply it by ``epsilon_decay``
        per stage down to ``reg``, warm-starting the potentials (GeomLoss, OTT-JAX).
        Intermediate stages stop at ``err <= max(tol, 1e-3)``. ``nit`` counts all stages.
    epsilon_decay : float in (0, 1), default 0.5
    epsilon_start : float, default the range of the cost (max - min)
    overrelaxation : bool, default False
        Over-relaxed Sinkhorn (Thibault et al. 2021) at the final ``reg``: after 20
        plain iterations the observed linear rate ``kappa`` of ``err`` sets
        ``omega = min(1.9, 2 / (1 + sqrt(1 - kappa)))`` and both updates become
        ``u <- u (a / (u K v))**omega``; if the error grows 100-fold or has not
        decreased over 50 iterations, plain Sinkhorn resumes (and the rate is estimated
        again, at most three times). ``err`` stays the exact L1 marginal error of the
        returned plan.
    """
    check_every = _check_int(check_every, "check_every", minimum=1)
    decay = _check_positive(epsilon_decay, "epsilon_decay")
    if decay >= 1:
        raise ValueError(f"`epsilon_decay` must be in (0, 1); got {decay}.")
    st = _Stabilized(prob)
    nit_total = 0
    if epsilon_scaling:
        costc = prob.costc
        eps0 = (float(costc.max() - costc.min()) if epsilon_start is None
                else _check_positive(epsilon_start, "epsilon_start"))
        eps = eps0
        stage_tol = max(prob.tol, 1e-3)
        while eps > prob.reg and nit_total < prob.maxiter:
            st.set_reg(eps)
            nit, status, _ = st.run(stage_tol, prob.maxiter - nit_total, False)
            nit_total += nit
            if status == NONFINITE:
                fc, gc = st.potentials()
                return fc, gc, nit_total, status, {}
            eps *= decay
    st.set_reg(prob.reg)
    st.relax = bool(overrelaxation)
    remaining = prob.maxiter - nit_total
    dt = prob.dtype

    def step(maxiter, check_first):
        return st.run(prob.tol, maxiter, check_first)

    def potentials():
        fc, gc = st.potentials()
        return fc.astype(dt), gc.astype(dt)

    sub = _Problem(**{**prob.__dict__, "maxiter": remaining})
    nit, status = _run_blocks(sub, step, potentials, "log", check_every)
    fc, gc = st.potentials()
    extras = {}
    if (st.rstate[7] == 1.0 and status != NONFINITE and np.all(st.u > 0)
            and np.all(st.v > 0) and np.all(np.isfinite(fc)) and np.all(np.isfinite(gc))):
        # The plan from the scalings: no second pass of exponentials.
        rows, cols, lin, plogr = _k.plan_from_scalings(
            st.K, st.u, st.v, st.a, st.b, prob.costc, st.f, st.g, st.reg_now, st.chunks)
        extras["_planned"] = (st.K, rows, cols, lin, plogr)
    return fc, gc, nit_total + nit, status, extras


def _solve_scaling(prob, *, check_every=10):
    """Scaling (matrix) form ``u <- a / (K v)``, ``v <- b / (K^T u)``.

    One fused pass over ``K`` per iteration (``K v`` and ``K^T u`` together, see
    ``ottools/_kernels/_sinkhorn.py``), scalings in float64. Fast, but
    ``K = exp(-C / reg)`` under/overflows once the cost range exceeds about 700 ``reg``
    (float64) or 80 ``reg`` (float32): the run then stops with status 2 and the last
    finite iterate.

    Options
    -------
    check_every : int, default 10
        Iterations per block between two callback calls (only used with a callback).
    """
    check_every = _check_int(check_every, "check_every", minimum=1)
    reg = prob.reg
    dt = prob.dtype
    cmin = float(prob.costc.min())
    K = np.exp(-(prob.costc - dt.type(cmin)) / dt.type(reg))
    a = prob.ac.astype(np.float64)
    b = prob.bc.astype(np.float64)
    with np.errstate(over="ignore", under="ignore"):
        u = a * np.exp((prob.f0.astype(np.float64) - cmin) / reg)
        v = b * np.exp(prob.g0.astype(np.float64) / reg)
    n, m = K.shape
    s, t, unew = np.empty(m), np.empty(m), np.empty(n)
    cerr = np.zeros(1)
    vk = np.empty(m, dtype=dt)
    nc = _k.row_chunks(n, m)
    T, E = np.empty((nc, m)), np.empty((nc, 2))

    def step(maxiter, check_first):
        nit, status, err = _k.scaling_sweep(K, a, b, u, v, np.inf, 1.0, prob.tol, maxiter,
                                            check_first, cerr, s, t, unew, vk, T, E)
        return nit, status, err

    def potentials():
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            f = reg * np.log(u / a) + cmin
            g = reg * np.log(v / b)
        return f, g

    def potentials_dt():
        f, g = potentials()
        return f.astype(dt), g.astype(dt)

    nit, status = _run_blocks(prob, step, potentials_dt, "scaling", check_every)
    f, g = potentials()
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(g))):
        # Underflow before the first finite update: fall back to the initial potentials.
        f, g, status = prob.f0.copy(), prob.g0.copy(), NONFINITE
    return f, g, nit, status, {}


_METHODS = {"log": _solve_log, "scaling": _solve_scaling, "sns": _solve_sns}
_OPTIONS = {
    "log": ("check_every", "epsilon_scaling", "epsilon_decay", "epsilon_start",
            "overrelaxation"),
    "scaling": ("check_every",),
    "sns": ("warmup", "warmup_start", "density", "mass_tol", "density_growth", "shift_max",
            "cg_tol", "cg_maxiter", "armijo", "backtrack", "ls_maxiter", "fallback_iters",
            "check_every"),
}


def _auto_method(prob):
    """The documented rule of ``method="auto"``: ``(name, default options)``.

    The log-stable method costs the same per iteration as the scaling form (one fused
    pass over the kernel) and never under/overflows, so "auto" always resolves to
    ``"log"``, with ``overrelaxation=True`` (several times fewer iterations at small
    ``reg``, see docs/guide/performance.rst); options the user gives win.
    """
    return "log", {"overrelaxation": True}


def _finish(prob, fc, gc, nit, status, method, extras):
    """Plan, costs and honest error from the potentials (or from the plan a solver
    already built for them, ``extras["_planned"]``)."""
    extras = dict(extras)
    planned = extras.pop("_planned", None)
    if planned is None:
        Pc = np.empty(prob.costc.shape, dtype=prob.dtype)
        planned = (Pc,) + _k.plan_from_potentials(
            prob.loga, prob.logb, prob.costc, prob.dtype.type(prob.reg), fc, gc,
            _k.row_chunks(*prob.costc.shape), Pc)
    Pc, rows, cols, lin, plogr = planned
    err = float(np.abs(rows - prob.ac).sum() + np.abs(cols - prob.bc).sum())
    mass = float(rows.sum())
    ma, mb = float(prob.a.sum(dtype=np.float64)), float(prob.b.sum(dtype=np.float64))
    kl = plogr - mass + ma * mb
    f, g = _expand(prob, fc, gc)
    # Gauge: f + c, g - c leave the plan unchanged; centre so that <f, a> = <g, b>.
    shift = (float(g @ prob.b) - float(f @ prob.a)) / (2.0 * ma)
    f = (f + shift).astype(prob.dtype)
    g = (g - shift).astype(prob.dtype)
    if prob.compressed:
        plan = np.zeros(prob.cost.shape, dtype=prob.dtype)
        plan[np.ix_(prob.rows, prob.cols)] = Pc
    else:
        plan = Pc
    dual = float(f @ prob.a) + float(g @ prob.b) - prob.reg * (mass - ma * mb)
    tol = prob.user_tol
    if status == MAXITER and err <= tol:
        status = CONVERGED
    if status == CONVERGED and err > tol:
        status = STALLED
        message = (f"The iteration's error reached tol, but the error recomputed from the "
                   f"plan is {err:.3g} > tol={tol:.3g}: tol is below the rounding "
                   f"floor of {prob.dtype}; loosen tol.")
    else:
        message = status_message(status, err=err, tol=tol, nit=nit)
    res = make_result(
        fun=float(lin + prob.reg * kl),
        cost=float(lin),
        dual_value=dual,
        plan=plan,
        f=f,
        g=g,
        nit=int(nit),
        err=err,
        success=status == CONVERGED,
        status=int(status),
        message=message,
        method=method,
        reg=prob.reg,
    )
    res.update(extras)
    return res


def sinkhorn(a, b, cost, reg, *, method="auto", tol=None, maxiter=10_000, init=None,
             callback=None, options=None):
    r"""Entropic optimal transport by Sinkhorn's algorithm.

    Solves

    .. math::

        \min_{P \in U(a, b)} \langle P, C \rangle + \mathrm{reg}\,\mathrm{KL}(P \| a \otimes b)

    whose optimal plan is exactly POT's ``ot.sinkhorn(a, b, M, reg)`` plan (the two
    objectives differ by a constant on :math:`U(a, b)`).

    Parameters
    ----------
    a : array_like, shape (n,), or None
        Source weights: finite, non-negative, positive sum; zeros allowed. ``None`` means
        uniform. Must have the same total mass as ``b`` up to 1e-6 (relative); a smaller gap
        is taken as rounding and ``b`` is rescaled onto the mass of ``a``.
    b : array_like, shape (m,), or None
        Target weights, as ``a``.
    cost : array_like, shape (n, m)
        Ground cost, finite. Rectangular problems are fine.
    reg : float
        Entropic regularization :math:`\varepsilon > 0`, in the units of ``cost``.
    method : {"auto", "log", "scaling", "sns"}, default "auto"
        ``"log"``: log-stable Sinkhorn, stable for every ``reg``: the iterates of
        log-domain Sinkhorn, computed by absorption-stabilized scaling (see Notes).
        ``"scaling"``: the plain matrix-scaling form; it under/overflows when
        ``(max(cost) - min(cost)) / reg`` exceeds a few hundred. ``"sns"``:
        Sinkhorn-Newton-Sparse [3]_, a few Sinkhorn iterations then Newton steps with a
        sparsified Hessian; reaches tight tolerances at small ``reg`` in tens of
        iterations where Sinkhorn needs thousands (never chosen by ``"auto"``).
        ``"auto"``: ``"log"`` with ``overrelaxation=True`` (the same cost per iteration
        as ``"scaling"``, several times fewer iterations at small ``reg``); echoed in
        ``res.method``.
    tol : float, optional
        Stop when the marginal error ``err = ||P 1 - a||_1 + ||P^T 1 - b||_1`` of the
        returned plan is at most ``tol`` (checked exactly at every iteration). Default
        ``1e-9`` for float64 and ``1e-4`` for float32 (whose rounding floor is about
        ``1e-6`` to ``1e-5``, depending on ``reg``).
    maxiter : int, default 10000
        Maximum number of iterations (one iteration updates ``f`` then ``g``).
    init : tuple (f, g) of arrays, optional
        Warm start: initial potentials of lengths ``n`` and ``m`` (e.g. ``(res.f, res.g)``
        of a previous solve).
    callback : callable, optional
        ``callback(intermediate_result)`` is called every ``options["check_every"]``
        iterations with an :class:`OTResult` holding ``f``, ``g``, ``nit``, ``err`` (of the
        previous iterate) and ``method``; raising ``StopIteration`` stops the solver
        (status 3).
    options : dict, optional
        Per-method knobs; an unknown key raises ``TypeError``.

        - ``"log"``: ``check_every`` (10), ``epsilon_scaling`` (False: solve at
          decreasing regularizations from ``epsilon_start`` (the cost range) down to
          ``reg``, dividing by ``1/epsilon_decay`` (0.5) per stage, warm-starting the
          potentials; ``nit`` counts every stage), ``overrelaxation`` (False; True under
          ``"auto"``: over-relaxed updates ``u <- u (a / (u K v))**omega`` with
          ``omega = min(1.9, 2 / (1 + sqrt(1 - kappa)))`` from the observed rate
          ``kappa`` of plain Sinkhorn's error, refined while relaxed by Young's
          relation between the relaxed rate and ``kappa``, safeguarded by a return to
          plain Sinkhorn when the error stops decreasing).
        - ``"scaling"``: ``check_every`` (10).
        - ``"sns"``: ``warmup`` (20 Sinkhorn iterations before the Newton stage),
          ``warmup_start`` (0.1: the first warm-up iteration runs at this fraction of the
          cost range, the regularization then decreases geometrically to ``reg``; 0: all
          at ``reg``), ``density`` (6.0:
          minimum kept plan entries, as a multiple of ``max(n, m)``), ``mass_tol`` (1e-6:
          the kept count doubles until the dropped plan mass is at most this fraction),
          ``density_growth`` (2.0: ``density`` factor after a failed Newton step),
          ``shift_max`` (1e-3: initial relative damping of the Hessian diagonal,
          adapted Levenberg-Marquardt style and capped by ``err``), ``cg_tol`` (1e-8: relative residual of the conjugate gradient),
          ``cg_maxiter`` (``10 (n + m)``), ``armijo`` (1e-4), ``backtrack`` (0.5),
          ``ls_maxiter`` (10: trial steps of the line search), ``fallback_iters`` (10:
          Sinkhorn iterations after a failed Newton step), ``check_every`` (10: callback
          period in the Sinkhorn stage; every Newton iteration calls it). The work is
          done in float64 (float32 input is cast back: its err floor is about 1e-6).

    Returns
    -------
    res : OTResult
        ``plan`` : ndarray (n, m), the transport plan, with
        ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)``.
        ``f``, ``g`` : ndarrays (n,), (m,), the dual potentials in cost units, centred so
        that ``<f, a> = <g, b>``. Entries of zero weight hold their c-transform.
        ``cost`` : float, ``<P, C>``.
        ``fun`` : float, ``<P, C> + reg KL(P || a x b)`` (generalized KL), the objective.
        ``dual_value`` : float, the dual objective
        ``<f, a> + <g, b> - reg (sum(P) - sum(a) sum(b))``; equals ``fun`` at convergence.
        ``err`` : float, ``||P 1 - a||_1 + ||P^T 1 - b||_1`` computed from ``plan``.
        ``nit``, ``success``, ``status``, ``message``, ``method``, ``reg``.
        ``method="sns"`` adds ``nit_sinkhorn``, ``nit_newton`` (``nit`` is their sum) and
        ``err_history`` (ndarray (nit,), the err after every iteration).

        ``status``: 0 converged (``err <= tol``); 1 ``maxiter`` reached; 2 non-finite
        values (under/overflow of the scaling form; the last finite iterate is
        returned); 3 stopped by ``callback``; 4 stalled: the iteration's error reached
        ``tol`` but the error recomputed from the plan is above it (``tol`` below the
        rounding floor of the dtype).

    Notes
    -----
    Log-domain updates (algorithms.md section 1):
    ``f_i <- -reg log sum_j b_j exp((g_j - C_ij) / reg)``, then the same for ``g``.
    After a ``g`` update the column marginals are exact; the row marginals of the
    current iterate come for free with the next ``f`` update, so ``err`` is checked at
    every iteration. POT measures the L2 norm of one marginal every 10 iterations: to
    compare with POT, compute this ``err`` on POT's plan.

    ``"log"`` runs these iterations as ``P = diag(u) K diag(v)`` with
    ``K = exp((f + g - C) / reg)`` for absorbed potentials: one fused pass over ``K`` per
    iteration (``K v`` and ``K^T u`` together), the scalings folded into ``f``, ``g`` and
    ``K`` rebuilt (with a vectorized exponential, relative error about 2e-16, up to
    2.4e-14 seen) once they leave ``[1e-50, 1e50]`` (``[1e-10, 1e10]`` in float32), and
    an exact log-sum-exp iteration wherever a scaling would under/overflow [4]_. The
    returned plan is ``diag(u) K diag(v)`` (no further exponential), and ``err`` is
    summed from it. Over-relaxation follows [5]_. Problems of at least 2**18 entries run
    in parallel row blocks over Numba's threads (``numba.set_num_threads``).

    References
    ----------
    .. [1] M. Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport",
       NeurIPS 2013.
    .. [2] G. Peyré, M. Cuturi, "Computational Optimal Transport", 2019, chapter 4.
    .. [3] X. Tang, M. Shavlovsky, H. Rahmanian, E. Tardini, K. K. Thekumparampil,
       T. Xiao, L. Ying, "Accelerating Sinkhorn Algorithm with Sparse Newton
       Iterations", ICLR 2024.
    .. [4] B. Schmitzer, "Stabilized Sparse Scaling Algorithms for Entropy Regularized
       Transport Problems", SIAM J. Sci. Comput. 41(3), 2019.
    .. [5] A. Thibault, L. Chizat, C. Dossal, N. Papadakis, "Overrelaxed
       Sinkhorn-Knopp Algorithm for Regularized Optimal Transport", Algorithms 14(5), 2021.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = ottools.sinkhorn([0.5, 0.5], [0.5, 0.5], cost, reg=0.1)
    >>> res.success, res.method
    (True, 'log')
    >>> np.round(res.plan, 4)
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    prob = _prepare(a, b, cost, reg, tol, maxiter, init, callback)
    name = _check_method(method, ("auto",) + tuple(_METHODS))
    auto_opts = {}
    if name == "auto":
        name, auto_opts = _auto_method(prob)
    where = f"method={method!r}" + (f" (resolved to {name!r})" if method != name else "")
    opts = {**auto_opts, **_check_options(options, _OPTIONS[name], where)}
    fc, gc, nit, status, extras = _METHODS[name](prob, **opts)
    return _finish(prob, fc, gc, nit, status, name, extras)
