"""Sinkhorn-Newton-Sparse (SNS): the ``method="sns"`` solver of :func:`ottools.sinkhorn`.

Tang et al., "Accelerating Sinkhorn Algorithm with Sparse Newton Iterations", ICLR 2024;
algorithms.md section 2. Stage 1 runs log-domain Sinkhorn iterations; stage 2 takes
Newton steps on the dual with a sparsified Hessian, solved by Jacobi-preconditioned CG,
and a line search on the exact dual increase.
"""

import math

import numpy as np

from ._kernels import lazy
from ._result import CALLBACK, CONVERGED, MAXITER, NONFINITE, make_result
from ._validation import _check_int, _check_positive

__all__ = []

_kn = lazy("_newton")
_ks = lazy("_sinkhorn")
_k = lazy("_sinkhorn")


def _check_fraction(x, name):
    val = _check_positive(x, name)
    if val >= 1:
        raise ValueError(f"`{name}` must be in (0, 1); got {val!r}.")
    return val


def _solve_sns(prob, *, warmup=20, warmup_start=0.1, density=6.0, mass_tol=1e-6,
               density_growth=2.0, shift_max=1e-3, cg_tol=1e-8,
               cg_maxiter=None, armijo=1e-4, backtrack=0.5, ls_maxiter=10,
               fallback_iters=10, check_every=10):
    """Sinkhorn-Newton-Sparse on the compressed problem ``prob``.

    Options
    -------
    warmup : int, default 20
        Log-domain Sinkhorn iterations of stage 1 (the paper's N1).
    warmup_start : float, default 0.1
        Epsilon-annealing of stage 1: the first warm-up iteration runs at
        ``eps_0 = warmup_start * (max(cost) - min(cost))``; the regularization then
        decreases geometrically towards ``reg`` over the first
        ``warmup - max(1, warmup // 5)`` iterations, and the last ``max(1, warmup // 5)``
        run at ``reg``. It moves the potentials across the cost range in a few
        iterations, where Sinkhorn at ``reg`` spends hundreds (L1 costs, non-unique
        optimal plans). ``0`` (or ``eps_0 <= reg``): every warm-up iteration at ``reg``
        (the paper's stage 1). The err of an iteration at a larger regularization is
        not computed: NaN in ``err_history``.
    density : float, default 6.0
        Entries of the plan kept in the sparse Hessian, as a multiple of ``max(n, m)``
        (``ceil(density * max(n, m))`` largest entries, plus each row's and column's
        largest entry). Capped at the full plan. This is the minimum: see ``mass_tol``.
    mass_tol : float, default 1e-6
        Adaptive density: the kept count doubles until the dropped plan mass is at most
        ``mass_tol`` times the total (smooth costs at small ``reg`` spread each row of
        the plan over many entries). ``mass_tol=1`` keeps exactly ``density``.
    density_growth : float, default 2.0
        Factor applied to ``density`` after a failed Newton step.
    shift_max : float, default 1e-3
        Levenberg-Marquardt damping of the Hessian: its diagonal is multiplied by
        ``1 + min(d, err / sum(a))``, where ``d`` starts at ``shift_max``, is divided
        by 10 after a full Newton step (down to ``shift_max / 1000``) and multiplied by
        10 after a shortened or failed one (up to 1). It bounds the condition number
        when the kept graph is nearly disconnected (L1 costs) and vanishes at the
        optimum, so the local convergence stays fast. ``0`` disables it.
    cg_tol : float, default 1e-8
        Relative residual ``||H x - b||_2 <= cg_tol ||b||_2`` of the conjugate gradient.
    cg_maxiter : int, default ``10 (n + m)``
        Conjugate-gradient iterations per Newton step.
    armijo : float in (0, 1), default 1e-4
        Sufficient-increase constant: a step is accepted when
        ``F(z + alpha Delta) - F(z) >= armijo * <grad F, alpha Delta>``.
    backtrack : float in (0, 1), default 0.5
        Step shrink factor of the line search (starting at ``alpha = 1``).
    ls_maxiter : int, default 10
        Trial steps before the Newton step is declared failed.
    fallback_iters : int, default 10
        Sinkhorn iterations taken after a failed Newton step (then ``density`` grows).
    check_every : int, default 10
        Stage-1 iterations between two callback calls; in stage 2 the callback is
        called after every iteration.

    Returns ``(f, g, nit, status, extras)``; extras ``nit_sinkhorn``, ``nit_newton``
    and ``err_history`` (the marginal error after every iteration, float64 array of
    length ``nit``; its last entry is NaN after a callback stop in stage 1, where
    that error was not computed).
    """
    warmup = _check_int(warmup, "warmup", minimum=0)
    warmup_start = _check_positive(warmup_start, "warmup_start", allow_zero=True)
    density = _check_positive(density, "density")
    mass_tol = _check_positive(mass_tol, "mass_tol")
    density_growth = _check_positive(density_growth, "density_growth")
    if density_growth < 1:
        raise ValueError(f"`density_growth` must be >= 1; got {density_growth!r}.")
    shift_max = _check_positive(shift_max, "shift_max", allow_zero=True)
    cg_tol = _check_positive(cg_tol, "cg_tol")
    armijo = _check_fraction(armijo, "armijo")
    backtrack = _check_fraction(backtrack, "backtrack")
    ls_maxiter = _check_int(ls_maxiter, "ls_maxiter", minimum=1)
    fallback_iters = _check_int(fallback_iters, "fallback_iters", minimum=1)
    check_every = _check_int(check_every, "check_every", minimum=1)
    n, m = prob.costc.shape
    cg_maxiter = (10 * (n + m) if cg_maxiter is None
                  else _check_int(cg_maxiter, "cg_maxiter", minimum=1))

    # Everything runs in float64 (float32 input: the result is cast back by the caller).
    f64 = np.float64
    ac = prob.ac.astype(f64)
    bc = prob.bc.astype(f64)
    loga = prob.loga.astype(f64)
    logb = prob.logb.astype(f64)
    cost = np.ascontiguousarray(prob.costc, dtype=f64)
    reg = float(prob.reg)
    inv = 1.0 / reg
    tol = float(prob.tol)
    maxiter = prob.maxiter
    f = prob.f0.astype(f64)
    g = prob.g0.astype(f64)
    callback = prob.callback
    full = n * m
    mass = float(ac.sum())
    damp = shift_max
    shift_min = shift_max * 1e-3
    j0 = int(np.argmax(bc))  # gauge: Delta g_j0 = 0 on the heaviest column

    hist = []
    state = {"exact": False, "pending": False, "nit_s": 0, "nit_n": 0}

    def record(err):
        if state["pending"]:
            hist[-1] = err
            state["pending"] = False

    # Stage-1 regularizations: geometric from eps_0 down to reg, the last `tail` at reg.
    schedule = []
    eps0 = warmup_start * float(cost.max() - cost.min())
    tail = max(1, warmup // 5)
    head = warmup - tail
    if eps0 > reg and head > 0:
        schedule = [eps0 * (reg / eps0) ** (k / head) for k in range(head)]

    def sinkhorn_iters(count):
        """``count`` Sinkhorn iterations, one kernel call each, recording err.

        Iteration ``k`` of stage 1 runs at ``schedule[k]`` (then at ``reg``); ``exact``
        says that ``g`` is the column update of ``f`` at ``reg``, so that the kernel's
        first row update gives the err of the entry iterate.
        """
        status = MAXITER
        done = 0
        for _ in range(count):
            k_s = state["nit_s"]
            eps = schedule[k_s] if k_s < len(schedule) else reg
            at_reg = eps == reg
            k, status, e = _k.sinkhorn_log(ac, loga, logb, cost, eps, f, g, tol, 1,
                                           state["exact"] and at_reg)
            if state["exact"] and at_reg:
                record(float(e))
            if k == 0:
                break
            done += 1
            hist.append(math.nan)
            state["pending"] = at_reg
            state["exact"] = at_reg
            state["nit_s"] += 1
        return done, status

    def result(status):
        extras = {"nit_sinkhorn": state["nit_s"], "nit_newton": state["nit_n"],
                  "err_history": np.array(hist, dtype=f64)}
        nit = state["nit_s"] + state["nit_n"]
        return (f.astype(prob.dtype), g.astype(prob.dtype), nit, status, extras)

    def notify(err):
        """Callback with the current iterate; True if it asked to stop."""
        if callback is None:
            return False
        from ._sinkhorn import _expand
        fe, ge = _expand(prob, f.astype(prob.dtype), g.astype(prob.dtype))
        inter = make_result(f=fe, g=ge, nit=state["nit_s"] + state["nit_n"], err=float(err),
                            method="sns", nit_sinkhorn=state["nit_s"],
                            nit_newton=state["nit_n"])
        try:
            callback(inter)
        except StopIteration:
            return True
        return False

    # ---- Stage 1: warm-up Sinkhorn, callback every check_every iterations.
    todo = min(warmup, maxiter)
    while todo > 0:
        block = min(check_every, todo)
        done, status = sinkhorn_iters(block)
        todo -= done
        if status == NONFINITE:
            return result(NONFINITE)
        if status == CONVERGED:
            return result(CONVERGED)
        if done < block:
            break
        last = hist[-2] if len(hist) > 1 else math.nan
        if callback is not None and notify(last if math.isfinite(last) else math.inf):
            return result(CALLBACK)

    # ---- Stage 2: sparse Newton.
    P = np.empty((n, m), dtype=f64)
    P_new = np.empty((n, m), dtype=f64)
    work = np.empty(full, dtype=f64)
    rows = np.empty(n, dtype=f64)
    cols = np.empty(m, dtype=f64)
    rows_new = np.empty(n, dtype=f64)
    cols_new = np.empty(m, dtype=f64)
    xf = np.empty(n, dtype=f64)
    xg = np.empty(m, dtype=f64)

    chunks = _ks.row_chunks(n, m)

    def dense():
        r, c, _, _ = _ks.plan_from_potentials(loga, logb, cost, reg, f, g, chunks, P)
        rows[:] = r
        cols[:] = c
        ok = bool(np.all(np.isfinite(rows)) and np.all(np.isfinite(cols)))
        err = float(np.abs(rows - ac).sum() + np.abs(cols - bc).sum()) if ok else math.inf
        return ok, err

    ok, err = dense()
    if not ok:
        return result(NONFINITE)
    record(err)
    while True:
        if err <= tol:
            return result(CONVERGED)
        if state["nit_s"] + state["nit_n"] >= maxiter:
            return result(MAXITER)
        accepted = False
        if np.all(rows > 0) and np.all(cols > 0):
            keep = min(full, int(math.ceil(density * max(n, m))))
            work[:] = P.reshape(-1)
            rho, keep = _kn.select_by_mass(work, keep, mass_tol)
            indptr, indices, data = _kn.sparsify_csr(P, rho)
            gf = ac - rows
            gg = bc - cols
            shift = min(damp, err / mass)
            _kn.newton_cg(indptr, indices, data, rows, cols, shift, j0, reg * gf, reg * gg,
                          cg_tol, cg_maxiter, xf, xg)
            alpha = 1.0
            for _ in range(ls_maxiter):
                f_new = f + alpha * xf
                g_new = g + alpha * xg
                df = f_new - f  # the steps actually taken (exact differences)
                dg = g_new - g
                lin = float(df @ gf + dg @ gg)
                if not lin > 0.0:
                    break
                S = _kn.trial_plan(loga, logb, cost, inv, f_new, g_new, df, dg, P, P_new,
                                   rows_new, cols_new)
                if math.isfinite(S) and lin - reg * S >= armijo * lin:
                    accepted = True
                    break
                alpha *= backtrack
        # Levenberg-Marquardt-style adaptation of the damping.
        if accepted and alpha == 1.0:
            damp = max(damp * 0.1, shift_min)
        else:
            damp = min(damp * 10.0, 1.0) if shift_max > 0 else 0.0
        if accepted:
            f[:] = f_new
            g[:] = g_new
            P, P_new = P_new, P
            rows, rows_new = rows_new, rows
            cols, cols_new = cols_new, cols
            err = float(np.abs(rows - ac).sum() + np.abs(cols - bc).sum())
            state["nit_n"] += 1
            state["exact"] = False
            hist.append(err)
        else:
            density = min(density * density_growth, full / max(n, m))
            count = min(fallback_iters, maxiter - state["nit_s"] - state["nit_n"])
            done, status = sinkhorn_iters(count)
            if status == NONFINITE:
                return result(NONFINITE)
            ok, err = dense()
            if not ok:
                return result(NONFINITE)
            record(err)
        if notify(err):
            return result(CALLBACK)
