"""Sinkhorn-Newton-Sparse: the Newton stage of ``sinkhorn(method="sns")`` and ``"auto"``.

Tang et al., "Accelerating Sinkhorn Algorithm with Sparse Newton Iterations", ICLR 2024.
:class:`NewtonStage` takes Newton steps on the dual with a sparsified Hessian, solved by
CG on its Schur complement (``_kernels._newton.newton_cg``), and a line search on the
exact dual increase; :func:`warmup`
runs SNS's stage 1 (annealed log-domain Sinkhorn iterations). Both are stages run by the
driver of :mod:`ottools._sinkhorn`, which owns the iteration count, the error history and
the callback: a stage reports every iteration through the driver's ``record`` and
``notify`` and never builds results itself.
"""

import math

import numpy as np

from ._kernels import KernelStatus, lazy
from ._problem import allocate
from ._result import CALLBACK, CONVERGED, MAXITER, NONFINITE, STALLED
from ._sweeps import relaxed_target, translation, ub_log_iteration
from ._validation import _Option

__all__ = []

_kn = lazy("_newton")
_kon = lazy("_online_newton")
_ks = lazy("_sinkhorn")

# The options of the Newton stage (method="sns" and "auto"), checked by the driver.
NEWTON_OPTIONS = {
    "density": _Option("float", 6.0, lo=0.0, lo_open=True),
    "mass_tol": _Option("float", 1e-6, lo=0.0, lo_open=True),
    "peak_tol": _Option("float", 1e-3, lo=0.0, hi=1.0, lo_open=True),
    "density_growth": _Option("float", 2.0, lo=1.0),
    "shift_max": _Option("float", 1e-3, lo=0.0),
    "cg_tol": _Option("float", None, lo=0.0, lo_open=True, hi=1.0, hi_open=True,
                      none_ok=True),  # (>= 1: no CG iteration, zero steps to maxiter)
    "cg_maxiter": _Option("int", None, lo=1, none_ok=True),
    "direct_after": _Option("int", 200, lo=0, none_ok=True),
    "armijo": _Option("float", 1e-4, lo=0.0, hi=1.0, lo_open=True, hi_open=True),
    "backtrack": _Option("float", 0.5, lo=0.0, hi=1.0, lo_open=True, hi_open=True),
    "ls_maxiter": _Option("int", 10, lo=1),
    "fallback_iters": _Option("int", 10, lo=1),
}


# The direct solve of a Newton system (direct_newton): at most this many entries in the
# complement's pattern and in the envelope of its factors (about 12 bytes each: 240 MB),
# and at most this many multiply-adds in the factorization (the squared envelope widths;
# a second or two).
_DIRECT_MAX_ENTRIES = 20_000_000
_DIRECT_MAX_WORK = 2e9
# ... and the relative row sums below which a block of the complement that met a zero
# pivot is singular (one column held).
_DIRECT_SINGULAR = 1e-10


def direct_newton(indptr, indices, data, rows, cols, shift, j0, bf, bg, tol, xf, xg):
    """The system of ``_kernels._newton.newton_cg`` by a sparse factorization of its
    Schur complement ``S = (1 + shift) diag(cols) - Ps^T diag(1 / ((1 + shift) rows)) Ps``
    without the gauge column ``j0`` (none if negative).

    ``S`` is symmetric positive (semi)definite: ordered by reverse Cuthill-McKee (SciPy's
    ``csgraph``), its LU factors without pivoting (SuperLU, natural order) stay inside its
    envelope, so the envelope bounds their memory and time before anything is factorized;
    a complement whose envelope exceeds ``_DIRECT_MAX_ENTRIES`` entries or
    ``_DIRECT_MAX_WORK`` operations (well-mixed plans: 10-D points at moderate reg) is
    refused at the cost of forming it. (SuperLU's incomplete factorization with a fill
    limit, the first version, cost 30 s on such plans before refusing and corrupted the
    heap on some.) After a zero pivot, one column of each block whose rows sum to zero
    is held and the rest factorized again. Writes ``xf``, ``xg`` and returns True where
    the relative residual of the whole system is at most ``tol``; otherwise (refused,
    singular, or inaccurate) returns False and leaves them unchanged."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    n, m = rows.size, cols.size
    counts = np.diff(indptr)
    # the products forming the complement (its entries before merging): a cap of a
    # quarter of the budget refused 1-D plans whose envelope held 2e5 entries (6.2e6)
    if float(counts @ counts) > _DIRECT_MAX_ENTRIES / 2:
        return False
    d1 = (1.0 + shift) * rows
    d2 = (1.0 + shift) * cols
    ps = sp.csr_array((data, indices, indptr), shape=(n, m))
    eq = np.arange(m) != j0
    free = np.flatnonzero(eq)
    if free.size == 0:
        return False
    part = ps[:, free]
    schur = (sp.diags_array(d2[free]) - part.T @ (sp.diags_array(1.0 / d1) @ part)).tocsr()
    # Columns whose complement's diagonal cancelled (an isolated row-column pair with
    # shift below eps: its curvature is the dropped mass, lost in the difference)
    # are singular modes in float64: held like the gauge.
    lost = ~(schur.diagonal() > 1e-12 * d2[free])
    if np.any(lost):
        free = free[~lost]
        part = ps[:, free]
        schur = schur[~lost][:, ~lost].tocsr()
        if free.size == 0:
            return False
    order = reverse_cuthill_mckee(schur, symmetric_mode=True)
    schur = schur[order][:, order].tocsr()
    schur.sort_indices()
    # the envelope: row i from its first entry (the diagonal is stored: positive)
    width = np.arange(free.size) - schur.indices[schur.indptr[:-1]]
    width = np.maximum(width, 0).astype(np.float64)
    if 2.0 * width.sum() > _DIRECT_MAX_ENTRIES or float(width @ width) > _DIRECT_MAX_WORK:
        return False
    with np.errstate(all="ignore"):
        lu = _factor(schur)
        if lu is None:
            # A zero pivot: a block of the complement apart from the gauge whose rows sum
            # to zero (exact marginals: singular along its constant vector; the isolated
            # pairs above are its smallest case). Each such block's column of largest
            # diagonal is held like the gauge; the residual test below, which holds their
            # equations, still decides. Refusing there had CG run to its cap on the next
            # steps (1-D points, reg 6e-8 of the cost range: 1.8 s against 0.3 s).
            keep = _free_of_singular_blocks(schur)
            if keep is None:
                return False
            schur = schur[keep][:, keep].tocsr()
            order = order[keep]
            lu = _factor(schur)
            if lu is None:
                return False
        rhs = bg[free] - part.T @ (bf / d1)
        y = np.zeros(m)
        y[free[order]] = lu.solve(rhs[order])
        x = (bf - ps @ y) / d1
        res = np.concatenate([d1 * x + ps @ y - bf, (ps.T @ x + d2 * y - bg)[eq]])
        norm = math.sqrt(float(bf @ bf) + float(bg[eq] @ bg[eq]))
        ok = bool(np.all(np.isfinite(y))) and float(np.linalg.norm(res)) <= tol * norm
    if ok:
        xf[:] = x
        xg[:] = y
    return ok


def _factor(schur):
    """SuperLU's factors of ``schur`` (CSR, ordered) without pivoting, or None where a
    pivot is exactly zero or memory runs out."""
    from scipy.sparse.linalg import splu

    try:
        return splu(schur.tocsc(), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                    options={"SymmetricMode": True})
    except (RuntimeError, MemoryError):
        return None


def _free_of_singular_blocks(schur):
    """The columns of ``schur`` left free when one column (the largest diagonal) of each
    connected block whose rows sum to zero (at most ``_DIRECT_SINGULAR`` of the block's
    diagonal) is held; None if there is no such block."""
    from scipy.sparse.csgraph import connected_components

    nb, label = connected_components(schur, directed=False)
    diag = schur.diagonal()
    excess = np.bincount(label, np.abs(schur @ np.ones(diag.size)), nb)
    singular = excess <= _DIRECT_SINGULAR * np.bincount(label, diag, nb)
    if not singular.any():
        return None
    keep = np.ones(diag.size, dtype=bool)
    for k in np.flatnonzero(singular):
        members = np.flatnonzero(label == k)
        keep[members[np.argmax(diag[members])]] = False
    return keep


class LogIterations:
    """``iterate(eps, exact)``: one log-domain Sinkhorn iteration at ``eps`` on ``(f, g)``
    (float64, in place): ``_kernels._sinkhorn.sinkhorn_log`` on the dense cost, online
    sweeps on a point cloud. Returns ``(k, code, e)`` as that kernel: with ``exact``
    (``g`` is the column update of ``f`` at ``eps``), ``e`` is the error of the state
    before the iteration, and a converged state is left unchanged (``k = 0``)."""

    def __init__(self, run, f, g):
        self.run, self.f, self.g = run, f, g
        self.sw = run.sweeps(f, g, None) if run.prob.geometry else None
        if self.sw is not None and run.rho is not None:
            self.sw.translate = False  # as ub_log_iteration on the dense cost

    def __call__(self, eps, exact):
        run, f, g = self.run, self.f, self.g
        sw = self.sw
        if sw is None and run.rho is not None:
            return ub_log_iteration(run, eps, f, g, exact)
        if sw is None:
            return _ks.sinkhorn_log(run.a64, run.loga64, run.logb64, run.cost64, eps, f, g,
                                    run.tol_abs, 1, exact)
        sw.set_reg(eps)
        sw.exact = exact
        errs = np.full(2, np.inf)
        k, code = sw.sweep(1, run.tol_abs, 1.0, errs)
        f[:] = sw.f
        g[:] = sw.g
        return k, code, errs[0]


def warmup(run, f, g, count, start):
    """Stage 1 of SNS: ``count`` log-domain Sinkhorn iterations from ``(f, g)`` (float64,
    in place), one kernel call each.

    Epsilon-annealing (``start`` > 0): the first iteration runs at
    ``eps_0 = start * (max(cost) - min(cost))``; the regularization then decreases
    geometrically towards ``reg`` over the first ``count - max(1, count // 5)`` iterations,
    and the last ``max(1, count // 5)`` run at ``reg``. The error of an iteration at a
    larger regularization measures another problem: NaN in the history. Returns the
    driver status reached (None: go on).
    """
    prob, reg = run.prob, run.reg
    eps0 = start * prob.spread
    tail = max(1, count // 5)
    head = count - tail
    schedule = ([eps0 * (reg / eps0) ** (k / head) for k in range(head)]
                if eps0 > reg and head > 0 else [])
    iterate = LogIterations(run, f, g)
    exact = False  # g is the column update of f at reg: the next row pass gives its err
    done = 0
    while done < count:
        if run.remaining() <= 0:
            return MAXITER
        eps = schedule[done] if done < len(schedule) else reg
        at_reg = eps == reg
        k, code, e = iterate(eps, exact and at_reg)
        if exact and at_reg:
            run.amend(e)
        if code == KernelStatus.NONFINITE:
            return NONFINITE
        if code == KernelStatus.DONE:
            return CONVERGED
        done += 1
        run.record(math.nan, stage="warmup", pending=at_reg)
        exact = at_reg
        if done % run.check_every == 0 or done == count:
            if run.notify(f, g, run.last_err(), stage="warmup"):
                return CALLBACK
    return None


# Newton iterations (steps or fallbacks) without halving the error after which the stage
# stops (status 4) near the rounding floor of the plan: nothing improves there, and the
# steps ran to maxiter (9980 Newton steps, err 3e-9 against tol 1e-9: masses 1 and 100,
# reg_m 100, reg 1e-4, where the potentials reached 230 and their rounding alone was 5e-10
# reg; that problem now converges on the working problem of equal masses, see
# _sinkhorn._weight_offsets; float32 weights' mass gap still stops here).
_STALL_STEPS = 50
# ... and only within this factor of the floor: far above it, the steps may crawl for
# long and still converge (2000 x 2000, 10-D, reg 3e-5 of the cost's range: 165 Newton
# steps, err 0.15 after the first 50).
_STALL_FLOOR = 1000.0
# Within this factor of the floor a stall is blamed on the plan's rounding (the message).
_NEAR_FLOOR = 10.0
# A step's gauge column moves to another only with more than this many times its kept
# entries.
_GAUGE_MARGIN = 1.5


class NewtonStage:
    """Sparse Newton steps on the dual of the compressed problem of ``run``.

    ``density`` (kept plan entries as a multiple of ``max(n, m)``), ``mass_tol`` (the
    threshold falls until the dropped mass is at most this fraction, and at most the
    relative marginal error), ``peak_tol`` (each row and column also keeps its entries
    at or above this fraction of its largest), ``density_growth``
    (after a failed step), ``shift_max``
    (Levenberg-Marquardt damping of the Hessian diagonal, adapted, capped by the squared
    relative error times a factor raised by failed steps), ``cg_tol``, ``cg_maxiter``
    (default ``10 (n + m)``), ``armijo``, ``backtrack``, ``ls_maxiter`` (line search),
    ``fallback_iters`` (Sinkhorn iterations after a failed step): see
    :func:`ottools.sinkhorn`. Works in float64.
    """

    def __init__(self, run, *, density, mass_tol, peak_tol, density_growth, shift_max,
                 cg_tol, cg_maxiter, direct_after, armijo, backtrack, ls_maxiter,
                 fallback_iters):
        self.run = run
        n, m = run.prob.costc.shape
        self.n, self.m = n, m
        self.density = density
        self.mass_tol = mass_tol
        self.peak_tol = peak_tol
        self.density_growth = density_growth
        self.shift_max = shift_max
        self.damp = shift_max
        self.theta = 1.0  # the cap of the damping is theta * (err / mass)**2
        self.cg_tol = cg_tol
        self.cg_maxiter = 10 * (n + m) if cg_maxiter is None else cg_maxiter
        self.direct_after = direct_after
        self.armijo, self.backtrack, self.ls_maxiter = armijo, backtrack, ls_maxiter
        self.fallback_iters = fallback_iters
        # Unbalanced problems (run.rho): the targets of the marginals move with the
        # potentials, the Hessian's diagonal carries the penalties' curvature and is
        # definite (no gauge), the line search adds their curvature terms.
        self.rho = run.rho
        # gauge: Delta g_j0 = 0 (balanced problems only), chosen at each step (_gauge)
        self.j0 = int(np.argmax(run.prob.bc)) if self.rho is None else -1
        self.heavy = run.prob.bc >= 0.5 * run.prob.bc.max()
        self.unit = math.ldexp(1.0, -round(math.log2(run.prob.mass)))  # 1 / mass, rounded
        f64 = np.float64
        self.rows = np.empty(n, dtype=f64)
        self.cols = np.empty(m, dtype=f64)
        self.rows_new = np.empty(n, dtype=f64)
        self.cols_new = np.empty(m, dtype=f64)
        self.xf = np.empty(n, dtype=f64)
        self.xg = np.empty(m, dtype=f64)
        # The threshold's histogram leaves out entries below 1e-3 tol_now (the mass
        # rule's fraction) of the mean entry: at most 1e-3 tol_now of the mass (the
        # dense 2-D plan at n = 4000, reg 1e-4 has ~40 % positive entries, nearly all
        # below it; counting them took most of the histogram's pass).
        self.floor = self._floor(mass_tol)
        self.tol_now = mass_tol  # the mass rule of the next sparsification (see _step)
        # give_up: failed steps without halving the error after which the stage stops
        # (status STALLED, gave_up True) so that the driver can re-anneal (auto)
        self.give_up = None
        self.gave_up = False
        self._allocate()

    def _floor(self, mass_tol):
        return 1e-3 * mass_tol * self.run.prob.mass / (self.n * self.m)

    # The plan's passes (the dense stage keeps the plan; OnlineNewtonStage recomputes it).
    def _allocate(self):
        n, m = self.n, self.m
        f64 = np.float64
        what = "The Newton stage (two float64 arrays of the cost's shape)"
        self.P = allocate((n, m), f64, what)
        self.P_new = allocate((n, m), f64, what)
        self.zrow = np.empty(m, dtype=f64)
        self.wrow = np.empty(m, dtype=f64)

    def _targets(self, f, g):
        """The marginals of the optimal plan as functions of ``(f, g)``: ``a`` and ``b``,
        or ``a exp(-f / rho_a)`` and ``b exp(-g / rho_b)`` for relaxed sides."""
        run = self.run
        if self.rho is None:
            return run.a64, run.b64
        return (relaxed_target(run.a64, f, self.rho[0]),
                relaxed_target(run.b64, g, self.rho[1]))

    def _error(self, f, g):
        """The absolute err of the current marginals at ``(f, g)``: the L1 norm of the
        dual's gradient. Unbalanced problems first take the translation-invariant step
        (``(f, g)`` in place): the dual maximised exactly along ``(f + t, g - t)``, which
        leaves the plan as it is. Along that mode the curvature is ``1 / rho`` of the
        mass against ``1 / reg`` elsewhere, and Newton steps from a point far from its
        optimum (``method="sns"``, whose warm-up has no such step; masses 1 and 100
        with ``reg_m = 100`` put it 230 away) failed until maxiter."""
        if self.rho is not None:
            t = translation(self.run.a64, self.run.b64, f, g, self.rho)
            f += t
            g -= t
        ta, tb = self._targets(f, g)
        return float(np.abs(self.rows - ta).sum() + np.abs(self.cols - tb).sum())

    def _dense(self, f, g):
        """The plan and marginals at ``(f, g)``; returns its absolute err (inf if not
        finite)."""
        run = self.run
        r, c, _, _ = run.plan_kernel(run.loga64, run.logb64, run.cost64, run.reg, f, g,
                                     self.P)
        self.rows[:] = r
        self.cols[:] = c
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(c))):
            return math.inf
        return self._error(f, g)

    def _sparsify(self, f, g, keep):
        """CSR of the sparsified plan at ``(f, g)``: at least ``keep`` entries (see
        ``_kernels._newton.mass_threshold``), or None."""
        run = self.run
        if run.chunks > 1:
            rho, keep = _kn.mass_threshold_par(self.P, keep, self.tol_now, run.chunks,
                                               self.floor)
            return _kn.sparsify_csr_par(self.P, rho, run.chunks, self.peak_tol)
        rho, keep = _kn.mass_threshold(self.P, keep, self.tol_now, self.floor)
        return _kn.sparsify_csr(self.P, rho, self.peak_tol)

    def _trial(self, f, g, f_new, g_new, df, dg):
        """The trial plan's marginals into ``rows_new``, ``cols_new``; returns its
        curvature term ``S`` (see ``_kernels._newton.trial_plan``)."""
        run = self.run
        args = (run.loga64, run.logb64, run.cost64, 1.0 / run.reg, f_new, g_new, df, dg,
                self.P, self.P_new, self.rows_new, self.cols_new)
        if run.chunks > 1:
            return _kn.trial_plan_par(*args, run.chunks)
        return _kn.trial_plan(*args, self.zrow, self.wrow)

    def _accept(self):
        """The trial plan becomes the current one."""
        self.P, self.P_new = self.P_new, self.P
        self.rows, self.rows_new = self.rows_new, self.rows
        self.cols, self.cols_new = self.cols_new, self.cols

    def _step(self, f, g, err):
        """One Newton direction and line search; returns the accepted ``(f, g, alpha)``
        or None."""
        run = self.run
        n, m = self.n, self.m
        if not (np.all(self.rows > 0) and np.all(self.cols > 0)):
            return None
        keep = min(n * m, int(math.ceil(self.density * max(n, m))))
        rel = err / run.prob.mass
        # The dropped mass stays below the relative error: once the error fell below
        # mass_tol the steps converged linearly (n = 10,000, d = 10, reg 1e-3 of the
        # largest cost: 18 steps with mass_tol 1e-6 alone, 10 with the error's bound;
        # 1/100 of the error took 10 steps too). The floor of the trial passes'
        # histograms (online) follows.
        self.tol_now = min(self.mass_tol, rel)
        self.floor = self._floor(self.tol_now)
        csr = self._sparsify(f, g, keep)
        if csr is None:
            return None
        indptr, indices, data = csr
        if self.rho is None:
            self.j0 = self._gauge(indices)
        ta, tb = self._targets(f, g)
        gf = ta - self.rows
        gg = tb - self.cols
        rows, cols = self.rows, self.cols
        if self.rho is not None:
            # reg times the penalties' Hessian: diag(reg / rho_a * ta) (0 for a hard side)
            rows = rows + (run.reg / self.rho[0]) * ta
            cols = cols + (run.reg / self.rho[1]) * tb
        # Levenberg-Marquardt damping capped by err**2 (Yamashita-Fukushima): a cap of err
        # itself damps the near-singular modes of near-permutation plans by as much as
        # the error and the steps converged linearly (129 Newton steps on the
        # anisotropic Monge-gap example against 20; 47 against 17 at n = 4000, 10-D,
        # reg 1e-4).
        # After failed steps the cap rises (``theta``): at a near-singular mode the capped
        # shift left the direction unchanged however much ``damp`` grew, and every step
        # failed until maxiter (a 27 x 43 problem, reg 1e-4, method="sns": err 2e-5).
        shift = min(self.damp, self.theta * rel * rel)
        # Inexact Newton: the sparsified Hessian limits the rate to linear anyway, so a
        # CG residual of 1e-2 loses little and saves most CG iterations.
        cg_tol = self.cg_tol if self.cg_tol is not None else 1e-2
        # The system in units of the mass (a power of two: exact, and nothing changes for
        # probability weights): CG's squared norms underflow for masses below ~1e-150.
        s = self.unit
        if s != 1.0:
            rows, cols, data = rows * s, cols * s, data * s
        # The right-hand side without reg (the step in units of reg, scaled after): CG's
        # squared norms of reg * gradient overflowed for costs and reg above ~1e154 (and
        # underflowed below ~1e-154): the same problem at another scale failed.
        self._solve(indptr, indices, data, rows, cols, shift, s * gf, s * gg, cg_tol)
        self.xf *= run.reg
        self.xg *= run.reg
        alpha = 1.0
        for _ in range(self.ls_maxiter):
            f_new = f + alpha * self.xf
            g_new = g + alpha * self.xg
            df = f_new - f  # the steps actually taken (exact differences)
            dg = g_new - g
            lin = float(df @ gf + dg @ gg)
            if not lin > 0.0:
                return None
            S = self._trial(f, g, f_new, g_new, df, dg)
            if self.rho is not None:
                S += (_kn.kl_curvature(ta, df, self.rho[0])
                      + _kn.kl_curvature(tb, dg, self.rho[1])) / run.reg
            if math.isfinite(S) and lin - run.reg * S >= self.armijo * lin:
                return f_new, g_new, alpha
            alpha *= self.backtrack
        return None

    def _gauge(self, indices):
        """The gauge column of a step: among the heavy columns (at least half the
        heaviest's weight), the one with the most kept entries, then the heaviest, if it
        has more than ``_GAUGE_MARGIN`` times the entries of the current one. The
        step is computed relative to it, and the sparsified Hessian's lost mass holds the
        dropped neighbours of each row and column at that frame's zero: a column at the
        edge of the plan's support made those neighbours move far in it. With uniform
        weights the first column was taken: an end of a 1-D chain (n = 2000, reg 6e-8
        of the cost range: not converged after 715 Newton steps, 22 with the gauge
        inside) or a far outlier (391 Newton steps against 35 at n = 1000)."""
        cnt = np.bincount(indices, minlength=self.m)
        bc = self.run.prob.bc
        best = int(np.lexsort((-bc, -np.where(self.heavy, cnt, -1)))[0])
        # Kept only if clearly better than the current gauge: near-ties flipped on the
        # rounding of entries at the threshold, and the online stage (its entries equal
        # the dense ones to 1e-13) then took another path than the dense one.
        return best if cnt[best] > _GAUGE_MARGIN * cnt[self.j0] else self.j0

    def _solve(self, indptr, indices, data, rows, cols, shift, bf, bg, cg_tol):
        """The Newton direction into ``xf``, ``xg`` (see ``_kernels._newton.newton_cg``):
        CG, and after ``direct_after`` CG iterations without reaching ``cg_tol`` a sparse
        factorization of the Schur complement (:func:`direct_newton`) where its envelope
        is small, then CG again from zero for the remaining ``cg_maxiter - direct_after``
        iterations if that was refused or did not reach ``cg_tol`` either. Near-
        permutation plans at small reg (the Monge gap of an optimal map, reg 1.5e-5 of
        the cost range) have weakly linked blocks and a complement of condition number
        near 1 / shift: CG ran to its cap 10 (n + m) on most steps, with residuals above
        1 (n = 1000: 5.5 s against 0.8 s; n = 2000: 18.6 s against 2.0 s)."""
        run = self.run
        budget = self.cg_maxiter
        direct = self.direct_after is not None and self.direct_after < budget
        if direct:
            budget = self.direct_after
        it, relres = _kn.newton_cg(indptr, indices, data, rows, cols, shift, self.j0, bf,
                                   bg, cg_tol, budget, self.xf, self.xg, run.chunks)
        if not direct or relres <= cg_tol:
            return
        if direct_newton(indptr, indices, data, rows, cols, shift, self.j0, bf, bg, cg_tol,
                         self.xf, self.xg):
            return
        _kn.newton_cg(indptr, indices, data, rows, cols, shift, self.j0, bf, bg, cg_tol,
                      self.cg_maxiter - it, self.xf, self.xg, run.chunks)

    def run_steps(self, f, g):
        """Newton steps from ``(f, g)`` (float64 arrays, updated in place) until the
        driver's tolerance, its iteration budget, a callback stop or a non-finite value.
        Returns the driver status."""
        run = self.run
        err = self._dense(f, g)
        if not math.isfinite(err):
            return NONFINITE
        run.amend(err)
        best, since, fails = err, 0, 0
        while True:
            if err <= run.tol_abs:
                return CONVERGED
            if run.remaining() <= 0:
                return MAXITER
            if err < 0.5 * best:
                best, since, fails = err, 0, 0
            elif self.give_up is not None and fails >= self.give_up:
                self.gave_up = True
                return STALLED
            elif since >= _STALL_STEPS and err <= _STALL_FLOOR * self._floor_err(f, g):
                run.message = self._stall_message(f, g, err)
                return STALLED
            since += 1
            step = self._step(f, g, err)
            # Levenberg-Marquardt-style adaptation of the damping.
            if step is not None and step[2] == 1.0:
                self.damp = max(self.damp * 0.1, self.shift_max * 1e-3)
            else:
                self.damp = min(self.damp * 10.0, 1.0) if self.shift_max > 0 else 0.0
            self.theta = (max(1.0, self.theta * 0.01) if step is not None
                          else self.theta * 100.0)
            if step is not None:
                f[:] = step[0]
                g[:] = step[1]
                self._accept()
                err = self._error(f, g)
                run.record(err, stage="newton", newton=True)
            else:
                fails += 1
                self.density = min(self.density * self.density_growth,
                                   (self.n * self.m) / max(self.n, self.m))
                status = self._fallback(f, g)
                if status is not None:
                    return status
                err = self._dense(f, g)
                if not math.isfinite(err):
                    return NONFINITE
                run.amend(err)
            if run.notify(f, g, err / run.prob.mass, stage="newton"):
                return CALLBACK

    def _rounding(self, f, g):
        """The relative rounding error of a plan entry ``exp((f_i + g_j - C_ij) / reg)``:
        ``(max|f| + max|g| + max|C|) * eps / reg``."""
        size = (float(np.abs(f).max()) + float(np.abs(g).max())
                + self.run.prob.cost_scale)  # (a dense cost or a PointCloud's extremes)
        return size * np.finfo(np.float64).eps / self.run.reg

    def _floor_err(self, f, g):
        """The absolute err that the plan's rounding alone may leave: the rounding of an
        entry times the mass, plus the gap between the weights' masses (balanced: float32
        weights keep a gap of float32's rounding, 3.4e-9 for 40 and 30 weights, that no
        plan closes; the Newton steps ran to maxiter at tol 1e-9)."""
        return self._rounding(f, g) * self.run.prob.mass + self._gap()

    def _gap(self):
        run = self.run
        return 0.0 if self.rho is not None else abs(float(run.a64.sum() - run.b64.sum()))

    def _gap_note(self):
        gap = self._gap()
        return (f", and the weights' masses differ by {gap / self.run.prob.mass:.3g} of the "
                f"mass (float rounding of the weights), which no plan closes" if gap else "")

    def _offset_note(self):
        """Where the costs sit far from 0 against their spread (C + 1e6, costs in [0, 2],
        reg 1e-3: status 4 at err 8e-8, where C gave 1e-11), the advice to subtract
        their minimum: it sets the rounding above and does not change the plan."""
        lo, hi = self.run.prob.cost_range
        if not (math.isfinite(lo) and math.isfinite(hi)) or abs(lo) <= max(hi - lo, 0.0):
            return ""
        return (f"the costs' offset (min C = {lo:.3g} against a spread of {hi - lo:.3g}) "
                f"makes most of it: subtract min C (the same plan; fun then drops by "
                f"min C times the mass), or ")

    def _stall_message(self, f, g, err):
        """Why the stage stopped. The stage's err is not quoted: the result's err,
        recomputed from the plan, differs from it by the rounding that stopped it
        (2.6e-9 in the message against 6.5e-9 in ``err``)."""
        run = self.run
        floor = self._floor_err(f, g)
        where = (f"near the rounding floor: the plan exp((f + g - C) / reg) carries a "
                 f"rounding error of about (max|f| + max|g| + max|C|) * eps / reg = "
                 f"{self._rounding(f, g):.3g} per entry"
                 f"{self._gap_note()}; {self._offset_note()}loosen tol "
                 f"or increase reg.")
        if err > _NEAR_FLOOR * floor:
            # Far above the floor (weights over 8 orders on clustered 5-D points, reg 1e-6
            # of the range: 100x above it, where log-domain sweeps went below): the steps
            # themselves fail, and "near the floor" misled.
            where = (f"at about {err / floor:.3g} times the error that the plan's rounding "
                     f"alone leaves ({self._rounding(f, g):.3g} per entry): the Newton "
                     f"steps fail on this problem (weakly coupled blocks of a near-"
                     f"permutation plan, weights over many orders); method='log' with a "
                     f"larger maxiter, or a larger reg or tol, may converge.")
        return (f"Stalled: {_STALL_STEPS} Newton steps did not halve the error "
                f"(tol={run.settings.tol:.3g}) {where}")

    def _fallback(self, f, g):
        """``fallback_iters`` log-domain Sinkhorn iterations after a failed step."""
        run = self.run
        count = min(self.fallback_iters, run.remaining())
        iterate = LogIterations(run, f, g)
        exact = False  # after one iteration g is the column update of f: errors are free
        for _ in range(count):
            k, code, e = iterate(run.reg, exact)
            if exact:
                run.amend(e)
            if code == KernelStatus.NONFINITE:
                return NONFINITE
            if k == 0:
                break
            run.record(math.nan, stage="newton", pending=True)
            exact = True
        return None


# The most entries the online Newton stage keeps above its threshold (unless the density
# asks for more). A cap of 8 times the density's count (480,000 at n = 10,000, 2-D, reg
# 1e-4 of the largest cost) dropped mass that the dense stage keeps (845,000 entries) and
# the steps converged linearly (76 steps, err 5e-7, against 6 steps).
_ONLINE_KEPT_MAX = 1 << 24


class OnlineNewtonStage(NewtonStage):
    """:class:`NewtonStage` on a point-cloud cost (``ottools.PointCloud``): the plan is
    never stored. Each trial pass (``_kernels._online_newton.trial``) recomputes the plan
    at the trial and the current potentials from the clouds and leaves, besides the
    marginals, the column maxima and a histogram of the entries by block of rows; the
    sparsified plan of an accepted point then takes one more pass
    (``kept_entries``). Memory: O((n + m) d) plus the kept entries: at most
    ``cap = max(keep, 2**24)`` (256 MB in CSR) at or above the threshold, which rises
    above the mass rule's when more would be kept, each row's and column's largest, and
    the entries above the rows' and columns' cuts (``peak_tol``), which once past
    ``cap`` (the pass that found them is used) are dropped for the rest of the stage."""

    def _allocate(self):
        n, m = self.n, self.m
        run = self.run
        self.geom = run.prob.costc
        nb = 1 << (63 - _kn.BIN_SHIFT)
        nc = max(1, min(run.chunks, n))
        self.par = nc > 1
        self.hist = [np.zeros((nc, nb), dtype=np.int64), np.zeros((nc, nb))]
        self.hist_new = [np.zeros((nc, nb), dtype=np.int64), np.zeros((nc, nb))]
        self.cmax = np.empty(m)
        self.cmax_new = np.empty(m)
        self.stats = (0.0, 0)  # (total, npos) of the current plan
        self.stats_new = (0.0, 0)
        self.peak_now = self.peak_tol  # 1 once the cuts passed the cap (_sparsify)
        self.extra = np.zeros(nc, dtype=np.int64)  # each block's room for the cuts

    def _pass(self, f_new, g_new, f, g, old):
        run = self.run
        kernel = _kon.trial_par if self.par else _kon.trial
        S, total, npos = kernel(*self.geom.kernel_args(), run.loga64, run.logb64,
                                1.0 / run.reg, f_new, g_new, f, g, old, self.rows_new,
                                self.cols_new, self.cmax_new, *self.hist_new, self.floor)
        self.stats_new = (total, int(npos))
        return S

    def _dense(self, f, g):
        self._pass(f, g, f, g, False)
        self._accept()
        r, c = self.rows, self.cols
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(c))):
            return math.inf
        return self._error(f, g)

    def _sparsify(self, f, g, keep):
        run = self.run
        cap = max(keep, _ONLINE_KEPT_MAX)
        rho, _ = _kon.threshold(*self.hist, *self.stats, keep, self.tol_now, cap)
        kernel = _kon.kept_entries_par if self.par else _kon.kept_entries
        args = (*self.geom.kernel_args(), run.loga64, run.logb64, 1.0 / run.reg, f, g, rho)
        # The rows' and columns' cuts (and tied row maxima) keep entries the histogram
        # does not count: each block's room for them is a quarter more than it found at
        # the previous step (weights over 40 orders of magnitude overflowed a slack of a
        # quarter of the histogram's count at every step), and a block that overflows
        # is given what it found. Past the cap the cuts are dropped for the rest of the
        # stage (the largest entries only, which the histogram's room holds but ties).
        for _ in range(3):
            peak = self.peak_now
            ok, indptr, indices, data, over = kernel(*args, peak, peak * self.cmax,
                                                     self.hist[0], self.extra)
            past = peak < 1.0 and over.sum() > cap
            self.extra = over + over // 4 if ok else over
            if past:
                self.peak_now, self.extra = 1.0, np.zeros_like(over)
            if ok:
                return indptr, indices, data
        return None

    def _trial(self, f, g, f_new, g_new, df, dg):
        return self._pass(f_new, g_new, f, g, True)

    def _accept(self):
        self.rows, self.rows_new = self.rows_new, self.rows
        self.cols, self.cols_new = self.cols_new, self.cols
        self.hist, self.hist_new = self.hist_new, self.hist
        self.cmax, self.cmax_new = self.cmax_new, self.cmax
        self.stats, self.stats_new = self.stats_new, self.stats
