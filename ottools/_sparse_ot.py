"""Sparsity-constrained and quadratically regularized OT: L-BFGS-B on jitted (semi-)duals."""

import contextlib

import numpy as np

from ._kernels import lazy
from ._result import (CALLBACK, CONVERGED, MAXITER, NONFINITE, STALLED, make_result,
                      status_message)
from ._validation import (
    _as_float_array,
    _check_balanced,
    _check_callback,
    _check_cost,
    _check_int,
    _check_method,
    _check_positive,
    _check_weights,
    _result_dtype,
)

__all__ = ["sparsity_constrained_ot", "quadratic_ot"]

_k = lazy("_sparse")

_FORMULATIONS = ("dual", "semi-dual")
_MAX_RESTARTS = 50
# max_nz = 1 (either formulation): solved as the OT linear program up to this many
# positive-weight entries (HiGHS here: 0.1 s at 100 x 100, 1.4 s at 300 x 300, 75 s at
# 1000 x 1000).
_LP_MAX_ENTRIES = 2**16


class _NonFinite(Exception):
    """Raised inside the objective when a value or gradient is not finite."""


def _single_threaded_blas():
    """Limit BLAS to one thread while L-BFGS-B runs, if ``threadpoolctl`` is installed.

    L-BFGS-B's BLAS calls work on vectors of length n + m: threading them costs
    synchronisation and nothing else, and on a busy machine OpenBLAS threads spinning on
    each other made ``setulb`` 40x slower than the objective (22 ms per iteration at
    n = m = 1000). Without ``threadpoolctl`` this is a no-op.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _prepare_init(init, n, m, rows, cols, dtype, semi):
    """Compressed starting potentials from ``init`` (None, or a pair (f, g))."""
    nr, mc = rows.size, cols.size
    if init is None:
        return np.zeros(nr, dtype=np.float64), np.zeros(mc, dtype=np.float64)
    if not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise TypeError("`init` must be a pair (f, g) of potentials, or None.")
    f_init = _as_float_array(init[0], "init[0]", ndim=1, dtype=np.float64)
    if f_init.shape[0] != n:
        raise ValueError(f"`init[0]` must have length {n}; got {f_init.shape[0]}.")
    if not np.all(np.isfinite(f_init)):
        raise ValueError("`init` potentials must be finite.")
    f0 = np.ascontiguousarray(f_init[rows])
    if init[1] is None:
        if not semi:
            raise TypeError("`init[1]` (g) is required by the dual formulation.")
        return f0, np.zeros(mc, dtype=np.float64)
    g_init = _as_float_array(init[1], "init[1]", ndim=1, dtype=np.float64)
    if g_init.shape[0] != m:
        raise ValueError(f"`init[1]` must have length {m}; got {g_init.shape[0]}.")
    if not np.all(np.isfinite(g_init)):
        raise ValueError("`init` potentials must be finite.")
    return f0, np.ascontiguousarray(g_init[cols])


def _k1_lp(ac, bc, cost):
    """Maximum of the ``max_nz = 1`` (semi-)dual through the OT linear program.

    For k = 1 every semi-dual column plan is ``b_j e_i``, so the semi-dual is
    ``<f, a> - sum_j b_j s_j + (reg / 2) ||b||^2`` with ``s_j = max_i (f_i - c_ij)``:
    piecewise linear, and by LP duality its maximum is ``OT(a, b) + (reg / 2) ||b||^2``,
    attained at the row potentials of the unregularized OT problem. The dual's column
    term ``g_j b_j - [s_j + g_j]_+^2 / (2 reg)`` is largest at ``g_j = reg b_j - s_j``,
    where the dual equals the semi-dual: same maximum. HiGHS solves the LP (a vertex: at
    most ``n + m - 1`` non-zeros). Returns ``(f, plan, nit)`` with the row duals ``f`` and
    the LP plan (n, m), or ``None`` if HiGHS does not report an optimum.
    """
    import scipy.sparse
    from scipy.optimize import linprog

    n, m = cost.shape
    entries = np.arange(n * m)
    a_eq = scipy.sparse.vstack([
        scipy.sparse.csr_array((np.ones(n * m), (np.repeat(np.arange(n), m), entries)),
                               shape=(n, n * m)),
        scipy.sparse.csr_array((np.ones(n * m), (np.tile(np.arange(m), n), entries)),
                               shape=(m, n * m)),
    ]).tocsc()
    a64 = ac.astype(np.float64)
    b64 = bc.astype(np.float64)
    b64 *= a64.sum() / b64.sum()  # equal totals in float64 (float32 inputs differ by ~1e-8)
    # HiGHS's presolve can call a feasible problem infeasible when weights are far below
    # its tolerances (1e-56 next to 1e-2 on the paper's toy problem): retry without it.
    for options in ({}, {"presolve": False}):
        res = linprog(np.asarray(cost, dtype=np.float64).ravel(), A_eq=a_eq,
                      b_eq=np.concatenate([a64, b64]), bounds=(0.0, None), method="highs",
                      options=options)
        if res.status == 0:
            break
    else:
        return None
    return np.ascontiguousarray(res.eqlin.marginals[:n]), res.x.reshape(n, m), int(res.nit)


def _solve(a, b, cost, reg, max_nz, formulation, tol, maxiter, init, callback):
    """Validate, compress zero weights, run L-BFGS-B, and build the result."""
    cost = _check_cost(cost)
    n, m = cost.shape
    a_arr = None if a is None else _as_float_array(a, "a", ndim=1)
    b_arr = None if b is None else _as_float_array(b, "b", ndim=1)
    dtype = _result_dtype(cost, a_arr, b_arr)
    a = _check_weights(a_arr, n, "a", dtype)
    b = _check_weights(b_arr, m, "b", dtype)
    b = _check_balanced(a, b)
    reg = _check_positive(reg, "reg")
    if max_nz is not None:
        max_nz = _check_int(max_nz, "max_nz", minimum=1)
    formulation = _check_method(formulation, _FORMULATIONS, name="formulation")
    tol = _check_positive(tol, "tol", allow_zero=True)
    maxiter = _check_int(maxiter, "maxiter", minimum=0)
    callback = _check_callback(callback)
    semi = formulation == "semi-dual"

    rows = np.flatnonzero(a > 0)
    cols = np.flatnonzero(b > 0)
    nr, mc = rows.size, cols.size
    compressed = nr < n or mc < m
    sub = cost[np.ix_(rows, cols)] if compressed else cost
    cost_t = np.ascontiguousarray(sub.T, dtype=dtype)
    ac = np.ascontiguousarray(a[rows])
    bc = np.ascontiguousarray(b[cols])
    k = nr if max_nz is None else min(max_nz, nr)
    if k * mc < nr:
        raise ValueError(
            f"`max_nz`={max_nz} is too small: {mc} target(s) of positive weight with at most "
            f"{k} non-zeros each cannot serve the {nr} sources of positive weight "
            f"(no feasible plan; the dual would be unbounded).")
    f0, g0 = _prepare_init(init, n, m, rows, cols, dtype, semi)

    dt = dtype.type
    regd = dt(reg)
    nc = _k.row_chunks(mc, nr)  # parallel blocks of columns
    vals = np.empty((nc, nr), dtype=dtype)
    idx = np.empty((nc, nr), dtype=np.int64)
    acc = np.empty((nc, nr), dtype=np.float64)
    grad_f = np.empty(nr, dtype=dtype)
    grad_g = np.empty(mc, dtype=dtype)
    tau = np.empty(mc, dtype=dtype)
    nx = nr if semi else nr + mc
    gbuf = np.empty(nx, dtype=np.float64)
    last = {"x": None, "val": None, "err": None}

    def evaluate(x):
        f = np.ascontiguousarray(x[:nr], dtype=dtype)
        if semi:
            val = _k.semi_dual_value_grad(f, ac, bc, cost_t, regd, k, grad_f, tau, vals, idx,
                                          acc)
            np.negative(grad_f, out=gbuf)
        else:
            g = np.ascontiguousarray(x[nr:], dtype=dtype)
            val = _k.dual_value_grad(f, g, ac, bc, cost_t, regd, k, grad_f, grad_g, vals,
                                     idx, acc)
            np.negative(grad_f, out=gbuf[:nr])
            np.negative(grad_g, out=gbuf[nr:])
        if not (np.isfinite(val) and np.all(np.isfinite(gbuf))):
            raise _NonFinite
        last["x"] = x.copy()
        last["val"] = float(val)
        # The gradient is (a - T1, b - T^T1): its L1 norm is the marginal error.
        last["err"] = float(np.abs(gbuf).sum())
        return -float(val), gbuf.copy()

    def state_at(x):
        if last["x"] is None or not np.array_equal(x, last["x"]):
            evaluate(x)
        return last["val"], last["err"]

    def expand(x):
        fc = x[:nr]
        if semi:
            state_at(x)
            gc = -tau.astype(np.float64)
        else:
            gc = x[nr:]
        return _expand(cost, rows, cols, fc, gc, a, b, dtype)

    flags = {"status": None, "x": None, "nit": 0, "measure": None, "stationary": False,
             "plan_rows": None}
    x0 = f0 if semi else np.concatenate([f0, g0])

    def scipy_callback(intermediate_result):
        x = intermediate_result.x
        flags["nit"] += 1
        flags["x"] = x.copy()
        val, err = state_at(x)
        if err <= tol:
            flags["status"] = CONVERGED
            raise StopIteration
        if callback is not None:
            f, g = expand(x)
            inter = make_result(f=f, g=g, nit=flags["nit"], err=err, dual_value=val,
                                method="L-BFGS-B", formulation=formulation)
            try:
                callback(inter)
            except StopIteration:
                flags["status"] = CALLBACK
                raise

    def ascend(xs, plain_first):
        """L-BFGS-B with restarts from ``xs``; sets ``flags``, returns SciPy's message.

        max_nz < n: the (semi-)dual is concave but not smooth (kinks where a column's k-th
        and (k+1)-th largest entries tie) and L-BFGS-B stalls at kinks. After a stall,
        either restart it (memory cleared) while a run increases the dual
        (``plain_first``), or step along the least-norm supergradient built from the
        tied columns' plans (:func:`_kink_step`) and restart from there.
        """
        from scipy.optimize import minimize  # SciPy loads on first use

        msg = ""
        best = -np.inf
        for _restart in range(_MAX_RESTARTS + 1):
            with _single_threaded_blas():
                res = minimize(
                    evaluate, xs, method="L-BFGS-B", jac=True, callback=scipy_callback,
                    options=dict(maxiter=maxiter - flags["nit"],
                                 maxfun=max(15000, 20 * maxiter), ftol=0.0, gtol=0.0,
                                 maxcor=10),
                )
            msg = str(res.message)
            if flags["status"] is not None:
                break
            flags["x"] = res.x
            if res.status == 1 or flags["nit"] >= maxiter:
                flags["status"] = MAXITER
                break
            msg = "stalled: " + msg.rstrip(": ")
            if k >= nr:
                break
            value = -float(res.fun)
            improved = value > best + 4 * np.finfo(np.float64).eps * abs(value)
            best = max(best, value)
            if plain_first and improved:
                xs = res.x
                continue
            xs, measure = _kink_step(evaluate, state_at, res.x, semi, nr, mc, ac, bc,
                                     cost_t, regd, k, tol)
            flags["measure"] = measure
            if xs is None:  # stationary: a mix of the tied plans meets the marginals
                flags["status"] = CONVERGED
                flags["stationary"] = True
                break
            if xs is res.x:  # no supergradient step increases the objective
                if improved and not plain_first:
                    continue  # plain restart
                break
            flags["x"] = xs
            flags["nit"] += 1
            if flags["nit"] >= maxiter:
                flags["status"] = MAXITER
                break
        return msg

    scipy_msg = ""
    try:
        _, err0 = state_at(x0)
        if err0 <= tol:
            flags["status"] = CONVERGED
            flags["x"] = x0
        elif maxiter == 0:
            flags["status"] = MAXITER
            flags["x"] = x0
        else:
            if k == 1 and nr * mc <= _LP_MAX_ENTRIES:  # k = 1 also when n = 1
                lp = _k1_lp(ac, bc, sub)
                if lp is not None:
                    x0, lp_plan, flags["nit"] = lp
                    if not semi:  # the best g for these f (see _k1_lp)
                        s_max = np.max(x0[:, None] - sub, axis=0)
                        x0 = np.concatenate([x0, float(regd) * bc - s_max])
                    # The certificate: the LP plan, a mix of each column's tied plans.
                    flags["measure"] = float(np.abs(lp_plan.sum(1) - ac).sum()
                                             + np.abs(lp_plan.sum(0) - bc).sum())
                    if flags["measure"] <= tol:
                        flags.update(status=CONVERGED, stationary=True, x=x0,
                                     plan_rows=np.argmax(lp_plan, axis=0))
            if flags["status"] is None:
                scipy_msg = ascend(x0, plain_first=True)
            if flags["status"] is None and k < nr:
                # Stalled without a certificate: the two orders of restarts and
                # supergradient steps end at different kinks; run the other, keep the best.
                first = (flags["x"], flags["measure"], scipy_msg, state_at(flags["x"])[0])
                msg2 = ascend(x0, plain_first=False)
                # Keep the better end point, also when the second run used up maxiter.
                if (flags["status"] in (None, MAXITER)
                        and state_at(flags["x"])[0] < first[3]):
                    flags["x"], flags["measure"], scipy_msg = first[:3]
                    flags["status"] = None
                else:
                    scipy_msg = msg2
    except _NonFinite:
        flags["status"] = NONFINITE
        if flags["x"] is None:
            flags["x"] = x0

    x = flags["x"]
    status = flags["status"]
    dual_value, err_grad = state_at(x)
    if status is None:  # L-BFGS-B (and, for k < n, the kink steps) cannot go further
        status = CONVERGED if err_grad <= tol else MAXITER
    return _finish(x, nr, mc, rows, cols, n, m, cost, cost_t, a, b, ac, bc, regd, k, semi,
                   tau, dtype, dual_value, status, flags["nit"], tol, scipy_msg,
                   formulation, max_nz, flags["stationary"], flags["measure"],
                   flags["plan_rows"])


def _simplex_threshold(w, z):
    """Row-wise simplex thresholds: ``tau`` with ``sum_r [w_r - tau]_+ = z`` for rows of
    ``w`` sorted in decreasing order."""
    cs = np.cumsum(w, axis=1)
    r = np.arange(1, w.shape[1] + 1)
    t = (cs - z[:, None]) / r
    rho = np.sum(w > t, axis=1) - 1  # w_r > t_r holds exactly for r < rho + 1
    return t[np.arange(w.shape[0]), np.maximum(rho, 0)]


def _column_plans(W, z, reg, semi):
    """Plan values ``t`` of columns whose kept entries are the rows of ``W``."""
    if semi:
        Ws = -np.sort(-W, axis=1)
        return np.maximum(W - _simplex_threshold(Ws, z)[:, None], 0.0) / reg
    return np.maximum(W, 0.0) / reg


def _kink_direction(x, semi, nr, mc, ac, bc, cost_t, reg, k, eps):
    """Least-norm element of an approximate superdifferential of the (semi-)dual at ``x``.

    For ``k < n`` a column is a kink of the objective where one of its k largest entries
    of ``x_j`` and one of the others tie (within ``eps``) and swapping them changes the
    column's plan: both plans are supergradient pieces, and so is any mix. The least-norm
    element over the mixes, ``d = grad - sum_s lam_s e_s`` (``e_s`` the change of
    ``(T 1, T^T 1)`` under swap ``s``, ``lam >= 0``, at most 1 in total per column), is a
    small constrained least-squares problem. Returns ``(d, ||d||_1)`` in float64;
    ``||d||_1`` is the marginal error of the best fractional mix of the tied plans, zero
    at a maximum. Only single swaps among the ``L = 4`` entries on either side of the
    k-th are considered: a subset of the superdifferential, so ``||d||_1 <= tol`` still
    certifies (approximate) stationarity.
    """
    import scipy.sparse

    reg = float(reg)
    f = x[:nr]
    X = f[None, :] - cost_t.astype(np.float64)
    if not semi:
        X += x[nr:, None]
    L = min(4, nr - k)
    top = np.argpartition(-X, k + L - 1, axis=1)[:, :k + L]
    V = np.take_along_axis(X, top, axis=1)
    order = np.argsort(-V, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    V = np.take_along_axis(V, order, axis=1)
    z = reg * bc.astype(np.float64)
    T0 = _column_plans(V[:, :k], z, reg, semi)
    nx = nr if semi else nr + mc
    grad = np.zeros(nx)
    grad[:nr] = ac
    np.subtract.at(grad, top[:, :k].ravel(), T0.ravel())
    if not semi:
        grad[nr:] = bc - T0.sum(axis=1)
    r_all, v_all, c_all, col_of = [], [], [], []
    for p in range(max(0, k - L), k):
        for q in range(k, k + L):
            J = np.flatnonzero(V[:, p] - V[:, q] <= eps)
            if J.size == 0:
                continue
            W = V[J, :k].copy()
            W[:, p] = V[J, q]
            rows1 = top[J, :k].copy()
            rows1[:, p] = top[J, q]
            T1 = _column_plans(W, z[J], reg, semi)
            keep = (T0[J, p] > 0) | (T1[:, p] > 0)  # else the swap leaves the plan as is
            if not keep.any():
                continue
            J, T1, rows1 = J[keep], T1[keep], rows1[keep]
            base = len(col_of) and sum(c.size for c in col_of)
            ids = base + np.arange(J.size)
            r_all += [rows1.ravel(), top[J, :k].ravel()]
            v_all += [T1.ravel(), -T0[J].ravel()]
            c_all += [np.repeat(ids, k), np.repeat(ids, k)]
            if not semi:
                r_all.append(nr + J)
                v_all.append(T1.sum(axis=1) - T0[J].sum(axis=1))
                c_all.append(ids)
            col_of.append(J)
    if not col_of:
        return grad, float(np.abs(grad).sum())
    col_of = np.concatenate(col_of)
    E = scipy.sparse.csr_array(
        (np.concatenate(v_all), (np.concatenate(r_all), np.concatenate(c_all))),
        shape=(nx, col_of.size))
    lam = _mix_weights(E, grad, col_of)
    d = grad - E @ lam
    return d, float(np.abs(d).sum())


def _mix_weights(E, grad, col_of):
    """``argmin ||grad - E lam||`` over ``lam >= 0`` with sum at most 1 per column."""
    from scipy.optimize import lsq_linear, minimize

    uniq, inv, counts = np.unique(col_of, return_inverse=True, return_counts=True)
    if counts.max() == 1:  # one swap per column: a box
        if E.shape[1] <= 200:
            return lsq_linear(E.toarray(), grad, bounds=(0.0, 1.0), method="bvls").x
        return lsq_linear(E, grad, bounds=(0.0, 1.0), method="trf", tol=1e-12).x
    if E.shape[1] > 400:  # keep the first swap of each column
        first = np.zeros(E.shape[1], dtype=bool)
        first[np.unique(inv, return_index=True)[1]] = True
        lam = np.zeros(E.shape[1])
        lam[first] = _mix_weights(E[:, first], grad, col_of[first])
        return lam
    Ed = E.toarray()
    multi = np.flatnonzero(counts > 1)
    A = np.zeros((multi.size, E.shape[1]))
    for r, u in enumerate(multi):
        A[r, inv == u] = 1.0
    res = minimize(lambda v: 0.5 * float(np.sum((grad - Ed @ v) ** 2)),
                   np.zeros(E.shape[1]), jac=lambda v: -(Ed.T @ (grad - Ed @ v)),
                   method="SLSQP", bounds=[(0.0, 1.0)] * E.shape[1],
                   constraints=[dict(type="ineq", fun=lambda v: 1.0 - A @ v,
                                     jac=lambda v: -A)],
                   options=dict(ftol=1e-16, maxiter=500))
    return np.clip(res.x, 0.0, 1.0)


_KINK_EPS = (1e-10, 1e-7, 1e-4, 1e-2, 1e-1, 1.0, 10.0, 100.0)
_CERTIFY_EPS = 1e-7


def _kink_step(evaluate, state_at, x, semi, nr, mc, ac, bc, cost_t, reg, k, tol):
    """One ascent step from a stall point ``x`` of L-BFGS-B, for ``k < n``.

    Tries tie tolerances ``eps`` (relative to ``reg * max(b)``, the width of a column's
    support) from the smallest: builds the least-norm supergradient ``d`` of
    :func:`_kink_direction` and line-searches along it. Returns ``(None, measure)`` when
    ``measure = ||d||_1 <= tol`` (stationary), ``(x_new, measure)`` after an increase, and
    ``(x, smallest measure)`` when no direction increases the objective.
    """
    val0 = state_at(x)[0]
    scale = float(reg) * float(bc.max())
    tried = []
    best_measure = np.inf
    for rel in _KINK_EPS:
        d, measure = _kink_direction(x, semi, nr, mc, ac, bc, cost_t, reg, k, rel * scale)
        best_measure = min(best_measure, measure)
        # Pieces tied within eps are within about eps * sum(b) of the maximum in value, so
        # a mix at a small eps certifies the maximum; larger eps only give directions.
        if measure <= tol and rel <= _CERTIFY_EPS:
            return None, measure
        if any(np.array_equal(d, e) for e in tried):
            continue
        tried.append(d)
        # backtracking / expanding line search on the concave objective along d
        s = float(reg)
        best_s, best_v = 0.0, val0
        for _ in range(60):
            v = -evaluate(x + s * d)[0]
            if v > best_v:
                best_s, best_v = s, v
                s *= 2.0
            elif best_s > 0.0:
                break
            else:
                s *= 0.5
        if best_s > 0.0:
            return x + best_s * d, measure
    return x, best_measure


def _expand(cost, rows, cols, fc, gc, a, b, dtype):
    """Full potentials: a zero-weight entry gets the largest value that keeps it empty."""
    n, m = cost.shape
    f = np.empty(n, dtype=np.float64)
    g = np.empty(m, dtype=np.float64)
    f[rows] = fc
    g[cols] = gc
    zr = np.setdiff1d(np.arange(n), rows)
    zc = np.setdiff1d(np.arange(m), cols)
    if zr.size:
        f[zr] = np.min(cost[np.ix_(zr, cols)] - gc[None, :], axis=1)
    if zc.size:
        g[zc] = np.min(cost[np.ix_(rows, zc)] - fc[:, None], axis=0)
    # Gauge: f + s, g - s leave the plan and the dual value unchanged; centre so that
    # <f, a> = <g, b>.
    shift = (float(g @ b) - float(f @ a)) / (2.0 * float(a.sum(dtype=np.float64)))
    return (f + shift).astype(dtype), (g - shift).astype(dtype)


def _finish(x, nr, mc, rows, cols, n, m, cost, cost_t, a, b, ac, bc, regd, k, semi, tau,
            dtype, dual_value, status, nit, tol, scipy_msg, formulation, max_nz, stationary,
            measure, plan_rows=None):
    import scipy.sparse

    fc = np.ascontiguousarray(x[:nr], dtype=dtype)
    if semi:
        gc = -tau.astype(np.float64)  # tau of x, set by state_at
        gk = np.zeros(mc, dtype=dtype)
    else:
        gk = np.ascontiguousarray(x[nr:], dtype=dtype)
        gc = x[nr:]
    if plan_rows is None:
        vals = np.empty(nr, dtype=dtype)
        idx = np.empty(nr, dtype=np.int64)
        indptr, indices, data, row_sums, col_sums, lin, sq = _k.plan_columns(
            fc, gk, cost_t, regd, k, semi, bc, vals, idx)
    else:  # max_nz = 1 by the LP: column j sends b_j from row plan_rows[j]
        indptr = np.arange(mc + 1)
        indices = plan_rows
        data = bc.astype(dtype)
        row_sums = np.bincount(plan_rows, weights=bc, minlength=nr)
        col_sums = bc
        lin = float(np.sum(bc * cost_t[np.arange(mc), plan_rows], dtype=np.float64))
        sq = float(np.sum(np.square(bc, dtype=np.float64)))
    err = float(np.abs(row_sums - ac).sum() + np.abs(col_sums - bc).sum())
    if nr < n or mc < m:
        counts = np.zeros(m, dtype=np.int64)
        counts[cols] = np.diff(indptr)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        indices = rows[indices]
    plan = scipy.sparse.csc_array((data, indices, indptr), shape=(n, m))
    f, g = _expand(cost, rows, cols, np.asarray(x[:nr], dtype=np.float64), gc, a, b, dtype)
    if plan_rows is not None:
        message = (f"Converged: the {formulation} is maximal (max_nz=1: its maximum is "
                   f"the unregularized OT linear program's plus reg/2 ||b||^2, solved exactly "
                   f"by HiGHS; a mix of the tied columns' plans, the LP plan, meets the "
                   f"marginals to {measure:.3g} <= tol={tol:.3g}); the returned plan keeps "
                   f"each column's largest LP entry: err={err:.3g} (nit={nit} simplex "
                   f"iterations).")
    elif stationary:
        message = (f"Converged: the dual is maximal (max_nz < n, a kink: a mix of the tied "
                   f"columns' plans meets the marginals to {measure:.3g} <= tol={tol:.3g}); "
                   f"the returned plan takes one of the tied plans per column: err={err:.3g} "
                   f"(nit={nit}).")
    elif status == CONVERGED and err > tol:
        status = STALLED
        message = (f"The gradient's marginal error reached tol, but the error recomputed "
                   f"from the plan is {err:.3g} > tol={tol:.3g}: tol is below the rounding "
                   f"floor of {dtype}; loosen tol.")
    elif status == MAXITER and scipy_msg.startswith("stalled"):
        status = STALLED
        if k < nr:
            message = (f"Stalled: neither L-BFGS-B ({scipy_msg}) nor a step along the "
                       f"least-norm supergradient of the tied columns increases the dual, "
                       f"and no mix of tied plans meets the marginals to tol "
                       f"(err={err:.3g}, stationarity="
                       f"{float('nan') if measure is None else measure:.3g}, tol={tol:.3g}, "
                       f"nit={nit}): loosen tol.")
        else:
            message = (f"L-BFGS-B stopped before the marginal error reached tol "
                       f"({scipy_msg}; err={err:.3g}, tol={tol:.3g}, nit={nit}): the dual "
                       f"cannot be improved further at this precision; loosen tol.")
    else:
        message = status_message(status, err=err, tol=tol, nit=nit)
    return make_result(
        fun=float(lin + 0.5 * float(regd) * sq),
        cost=float(lin),
        dual_value=float(dual_value),
        plan=plan,
        f=f,
        g=g,
        nit=int(nit),
        err=err,
        success=status == CONVERGED,
        status=int(status),
        message=message,
        method="L-BFGS-B" if plan_rows is None else "highs",
        formulation=formulation,
        reg=float(regd),
        max_nz=max_nz,
    )



def sparsity_constrained_ot(a, b, cost, reg, max_nz, *, formulation="semi-dual", tol=1e-6,
                            maxiter=10_000, init=None, callback=None):
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
    cost : array_like, shape (n, m)
        Ground cost, finite. Rectangular problems are fine.
    reg : float
        :math:`\gamma > 0`, weight of the squared-L2 term, in the units of ``cost``
        divided by mass.
    max_nz : int
        :math:`k \ge 1`, the most non-zeros per column (``operator.index``: NumPy
        integers accepted). ``max_nz >= n`` is quadratically regularized OT
        (:func:`quadratic_ot`). ``max_nz * m`` (positive-weight entries) must be at
        least the number of positive source weights, else no plan is feasible
        (``ValueError``).
    formulation : {"semi-dual", "dual"}, default "semi-dual"
        ``"semi-dual"``: maximise over ``f`` only; every column of the plan sums exactly to
        ``b`` and the rows converge to ``a``. ``"dual"``: maximise over ``(f, g)``; both
        marginals converge. For ``k < n`` the semi-dual is the tighter relaxation (its
        value is >= the dual's); the two agree where the relaxation is tight (e.g. k >= n).
    tol : float, default 1e-6
        Stop when the marginal error ``err = ||T 1 - a||_1 + ||T^T 1 - b||_1`` of the
        current iterate is at most ``tol``; it is the L1 norm of the (semi-)dual's
        gradient, checked after every L-BFGS-B iteration. float32 cannot go much below
        ``1e-6``. For ``max_nz < n`` the dual is a relaxation of a non-convex problem:
        ``err`` need not vanish at its maximum, and the objective has kinks where
        L-BFGS-B stalls. After a stall the solver builds the least-norm supergradient
        from the columns whose k-th and (k+1)-th largest entries tie (mixes of their
        two plans), steps along it and restarts L-BFGS-B. It also stops, with success,
        when that least-norm supergradient has L1 norm ``<= tol`` (a mix of the tied
        plans meets the marginals: a certified maximum, "stationarity" in the
        message); ``err`` is still that of the returned plan. (POT passes its
        ``stopThr`` to SciPy as ``ftol`` and ``gtol``, which measure the objective's
        relative decrease and the gradient's max-norm.)
    maxiter : int, default 10000
        Maximum number of L-BFGS-B iterations.
    init : tuple (f, g), optional
        Warm start: potentials of lengths ``n`` and ``m`` (e.g. ``(res.f, res.g)``); the
        semi-dual uses ``f`` only and accepts ``g=None``.
    callback : callable, optional
        ``callback(intermediate_result)`` is called after every L-BFGS-B iteration with an
        :class:`OTResult` holding ``f``, ``g``, ``nit``, ``err``, ``dual_value``,
        ``method`` and ``formulation``; raising ``StopIteration`` stops the solver
        (status 3).

    Returns
    -------
    res : OTResult
        ``plan`` : ``scipy.sparse.csc_array`` (n, m), at most ``max_nz`` non-zeros per
        column, row indices sorted. Column ``j`` is ``[f + g_j - c_j]_+ / reg`` restricted
        to its ``max_nz`` largest entries.
        ``f``, ``g`` : ndarrays (n,), (m,), the potentials, centred so that
        ``<f, a> = <g, b>``. For the semi-dual, ``g`` is minus the column thresholds of the
        k-sparse simplex projections (not optimised, but the plan has the same form).
        Zero-weight entries hold the largest potential that keeps them empty.
        ``fun`` : float, the primal objective ``<T, C> + reg/2 ||T||_F^2`` of the returned
        plan. ``cost`` : float, ``<T, C>``.
        ``dual_value`` : float, the maximised objective (dual or semi-dual) at the returned
        potentials; a lower bound on ``fun`` at the optimum.
        ``err`` : float, ``||T 1 - a||_1 + ||T^T 1 - b||_1`` computed from ``plan``.
        ``nit`` : L-BFGS-B iterations plus supergradient steps (simplex iterations for
        the exact ``max_nz = 1`` case, see Notes). ``success``, ``status``,
        ``message``, ``method`` (``"L-BFGS-B"``, or ``"highs"`` for that exact case),
        ``formulation``, ``reg``, ``max_nz``.

        ``status``: 0 converged (``err <= tol``, or, for ``max_nz < n``, a certified
        maximum as described under ``tol``; the message says which); 1 ``maxiter``
        reached; 2 non-finite values (the last finite iterate is returned); 3 stopped
        by ``callback``; 4 stalled: neither L-BFGS-B nor a supergradient step increases
        the dual and no certificate was found (typical for ``max_nz = 1`` beyond the
        exact LP's size limit, see Notes; the message starts with
        "Stalled" and gives ``err`` and the stationarity reached), or, for ``max_nz >= n``, L-BFGS-B
        stalled at the rounding floor before ``err <= tol``.

    See Also
    --------
    quadratic_ot : the same without the cardinality constraint.

    Notes
    -----
    Dual (algorithms.md section 3):
    :math:`\max_{f, g} \langle f, a\rangle + \langle g, b\rangle - \sum_j \delta_k(f + g_j
    - c_j)` with :math:`\delta_k(x) = \frac{1}{2\gamma}\sum_{k\ \mathrm{largest}}
    [x_i]_+^2`. Semi-dual: :math:`\max_f \langle f, a\rangle - \sum_j b_j \max_{y \in
    \Delta_k} \langle y, f - c_j\rangle - \frac{\gamma b_j}{2}\|y\|^2`, whose maximiser is
    the k-sparse simplex projection of :math:`(f - c_j)/(\gamma b_j)` (keep the ``k``
    largest entries, project them on the simplex). The primal is not convex: both
    relaxations give lower bounds, and the returned plan is feasible for the sparsity
    constraint but only approximately for the row (and, for the dual, column)
    marginals, up to ``err``.

    Each objective evaluation is one O(nm) pass over the cost, column by column, with
    an O(n) selection of the at most ``k`` entries that carry mass (a quickselect, never
    a sort of the column); only those entries are sorted. The optimiser is SciPy's
    L-BFGS-B (memory 10) with its own stopping rules switched off (``ftol = gtol = 0``)
    so that ``tol`` means the marginal error above. For ``max_nz < n``, at a stall, the
    tied columns (k-th and (k+1)-th largest entries of ``x_j`` within ``eps``, tried from
    ``1e-10`` to ``1`` times ``reg * max(b)``) give the supergradient pieces; the
    least-norm mix is a bounded least-squares problem (SciPy's ``lsq_linear``, or SLSQP
    when a column has several tied swaps), followed by a doubling/halving line search.

    ``max_nz = 1``: every semi-dual column plan is ``b_j e_i``, so the semi-dual is
    :math:`\langle f, a\rangle - \sum_j b_j \max_i (f_i - c_{ij}) + \frac{\gamma}{2}
    \|b\|^2`, piecewise linear, where L-BFGS-B stalls short of the maximum; maximising the
    dual over ``g`` alone gives the same function. By LP duality the maximum of both is
    :math:`\mathrm{OT}(a, b) + \frac{\gamma}{2}\|b\|^2`, reached at the row potentials of
    the unregularized OT problem: up to 65,536 entries of positive weight it is solved
    exactly as that linear program (SciPy's ``linprog``, HiGHS; about 1.4 s at 300 x 300),
    ``callback`` and ``init`` unused. The LP plan (a mix of the tied column plans)
    certifies the maximum; the returned plan keeps each column's largest LP entry, so
    ``err`` is zero when the LP plan has one non-zero per column (e.g. uniform weights of
    equal size). Larger problems take the L-BFGS-B route above.

    References
    ----------
    .. [1] T. Liu, J. Puigcerver, M. Blondel, "Sparsity-Constrained Optimal Transport",
       ICLR 2023, arXiv:2209.15466.
    .. [2] A. Kyrillidis, S. Becker, V. Cevher, C. Koch, "Sparse projections onto the
       simplex", ICML 2013.
    .. [3] M. Blondel, V. Seguy, A. Rolet, "Smooth and Sparse Optimal Transport",
       AISTATS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> cost = np.array([[0.0, 1.0, 4.0], [1.0, 0.0, 1.0], [4.0, 1.0, 0.0]])
    >>> res = ottools.sparsity_constrained_ot(None, None, cost, reg=0.5, max_nz=1)
    >>> res.success, res.formulation
    (True, 'semi-dual')
    >>> np.round(res.plan.toarray(), 4)
    array([[0.3333, 0.    , 0.    ],
           [0.    , 0.3333, 0.    ],
           [0.    , 0.    , 0.3333]])
    """
    if max_nz is None:
        raise TypeError("`max_nz` must be an integer; got None (use quadratic_ot).")
    return _solve(a, b, cost, reg, max_nz, formulation, tol, maxiter, init, callback)


def quadratic_ot(a, b, cost, reg, *, formulation="dual", tol=1e-6, maxiter=10_000,
                 init=None, callback=None):
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
    cost : array_like, shape (n, m)
        Ground cost, finite.
    reg : float
        :math:`\gamma > 0`.
    formulation : {"dual", "semi-dual"}, default "dual"
        As in :func:`sparsity_constrained_ot`; here both relaxations are exact and reach
        the same plan.
    tol : float, default 1e-6
        Stop when ``||T 1 - a||_1 + ||T^T 1 - b||_1 <= tol`` (the gradient's L1 norm),
        checked after every L-BFGS-B iteration.
    maxiter : int, default 10000
        Maximum number of L-BFGS-B iterations.
    init : tuple (f, g), optional
        Warm start, as in :func:`sparsity_constrained_ot`.
    callback : callable, optional
        As in :func:`sparsity_constrained_ot`.

    Returns
    -------
    res : OTResult
        The fields of :func:`sparsity_constrained_ot` (``plan`` a
        ``scipy.sparse.csc_array``), with ``max_nz=None``.

        ``status``: 0 converged (``err <= tol``); 1 ``maxiter`` reached; 2 non-finite
        values; 3 stopped by ``callback``; 4 L-BFGS-B stalled at the rounding floor
        before ``err <= tol`` (the message says so).

    See Also
    --------
    sparsity_constrained_ot

    Notes
    -----
    The dual is concave and smooth:
    :math:`\max_{f,g} \langle f, a\rangle + \langle g, b\rangle - \frac{1}{2\gamma}
    \sum_{ij} [f_i + g_j - C_{ij}]_+^2`, and the plan is
    :math:`T_{ij} = [f_i + g_j - C_{ij}]_+ / \gamma`: sparse for small ``reg``. At the
    optimum ``fun == dual_value``.

    References
    ----------
    .. [1] M. Blondel, V. Seguy, A. Rolet, "Smooth and Sparse Optimal Transport",
       AISTATS 2018.

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
    return _solve(a, b, cost, reg, None, formulation, tol, maxiter, init, callback)
