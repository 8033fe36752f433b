"""Symmetric Sinkhorn kernels for the self-transport problems ``W_eps(a, a)``.

When both marginals are the same measure and the cost is symmetric, the optimal
potentials coincide (``f = g``) and solve the fixed point ``f = T(f)`` with the
soft-min ``T(f)_i = -reg log sum_j a_j exp((f_j - C_ij) / reg)``. Iterating ``T``
alone oscillates; the averaged update ``f <- (f + T(f)) / 2`` converges (GeomLoss,
Feydy et al. 2019), and it has none of plain Sinkhorn's slow ``f_i - g_i`` modes.

In scaling form (``P = diag(u) K diag(u)``, ``K = exp((f_i + f_j - C_ij) / reg)`` for
absorbed potentials ``f``, as in ``_sinkhorn``) the averaged update is
``u_i <- sqrt(u_i a_i / (K u)_i)``: one pass over ``K`` per iteration
(:func:`symmetric_sweep`). :func:`sinkhorn_symmetric` is the exact log-domain update,
the fallback where a scaling would under/overflow.

Marginal error. The row and column sums of ``P`` are both ``u_i (K u)_i``, so the error
of the state ``u`` is ``2 sum_i |u_i (K u)_i - a_i|``, computed for free by the pass
that updates it. Return codes are those of ``ottools._kernels._codes``.
"""

import numpy as np
from numba import prange

from ._codes import BUDGET, DONE, NONFINITE, OUT_OF_RANGE
from ._jit import FASTMATH_SAFE, jit
from ._lse import c_transform_rows
from ._sinkhorn import dot_row, dots4


@jit
def is_symmetric(C):
    """``C == C.T`` exactly (square ``C``), compared in 64 x 64 tiles so that the
    transposed reads stay in cache; stops at the first difference (NaN never equals)."""
    n = C.shape[0]
    T = 64
    for i0 in range(0, n, T):
        i1 = min(i0 + T, n)
        for j0 in range(i0, n, T):
            j1 = min(j0 + T, n)
            for i in range(i0, i1):
                for j in range(max(j0, i + 1), j1):
                    if not C[i, j] == C[j, i]:
                        return False
    return True


@jit
def absorb_symmetric(f, u, a, reg):
    """Fold the scaling into the potential: ``f += reg log(u / a)``, ``u = a`` (one
    measure: ``g`` is ``f``, ``v`` is ``u``)."""
    for i in range(f.shape[0]):
        f[i] += reg * np.log(u[i] / a[i])
        u[i] = a[i]


@jit
def sinkhorn_symmetric(a, loga, cost, reg, f, tol, maxiter, first_full):
    """Averaged symmetric Sinkhorn ``f <- (f + T(f)) / 2`` in the log domain, in place
    on ``f``.

    ``a``, ``loga``: positive weights and their logs (length n); ``cost``: symmetric,
    C-contiguous (n, n). ``first_full``: the first update sets ``f = T(f)`` (no
    averaging), the usual start from ``f = 0``. Returns ``(nit, code, err)``:
    ``err`` is the marginal error of the returned ``f`` when ``code == DONE``, else of
    the previous iterate (the last finite ``f`` is kept on ``NONFINITE``).
    """
    n = cost.shape[0]
    t = np.empty(n, dtype=f.dtype)
    err = np.inf
    code = BUDGET
    nit = 0
    for it in range(maxiter):
        finite, e = c_transform_rows(a, loga, f, cost, reg, f, t)
        if not finite:
            code = NONFINITE
            break
        e *= 2.0
        err = e
        if e <= tol and not (it == 0 and first_full):
            code = DONE
            break
        if it == 0 and first_full:
            for i in range(n):
                f[i] = t[i]
        else:
            for i in range(n):
                f[i] = 0.5 * (f[i] + t[i])
        nit = it + 1
    return nit, code, err


@jit(fastmath=FASTMATH_SAFE)
def _sym_rows(K, uk, u, a, unew, r0, r1, full):
    """Rows ``r0:r1`` of one symmetric sweep: ``t_i = (K u)_i`` (in K's dtype, ``uk``
    holding ``u``), ``unew_i = sqrt(u_i a_i / t_i)`` (``a_i / t_i`` when ``full``).
    Returns ``(e, ok)``: ``sum_i |u_i t_i - a_i|`` over the rows and whether every new
    scaling is finite and positive."""
    e = 0.0
    ok = True
    i = r0
    while i + 4 <= r1:  # four rows at a time (``_sinkhorn.dots4``), then one by one
        acc0, acc1, acc2, acc3 = dots4(K, uk, i)
        e0, g0 = _sym_scaling(u, a, unew, i, np.float64(acc0), full)
        e1, g1 = _sym_scaling(u, a, unew, i + 1, np.float64(acc1), full)
        e2, g2 = _sym_scaling(u, a, unew, i + 2, np.float64(acc2), full)
        e3, g3 = _sym_scaling(u, a, unew, i + 3, np.float64(acc3), full)
        e += e0
        e += e1
        e += e2
        e += e3
        ok = ok and g0 and g1 and g2 and g3
        i += 4
    while i < r1:
        ei, gi = _sym_scaling(u, a, unew, i, np.float64(dot_row(K, uk, i)), full)
        e += ei
        ok = ok and gi
        i += 1
    return e, ok


@jit(inline="always")
def _sym_scaling(u, a, unew, i, t, full):
    """Row ``i``'s new scaling from ``t = (K u)_i``: writes ``unew[i]``; returns the
    row's error term and whether the scaling is finite and positive."""
    ui = a[i] / t if full else np.sqrt(u[i] * a[i] / t)
    unew[i] = ui
    return abs(u[i] * t - a[i]), np.isfinite(ui) and ui > 0.0


@jit(parallel=True)
def _sym_blocks(K, uk, u, a, unew, E, full):
    """:func:`_sym_rows` over ``E.shape[0]`` parallel row blocks."""
    n = K.shape[0]
    nc = E.shape[0]
    for c in prange(nc):
        ec, okc = _sym_rows(K, uk, u, a, unew, c * n // nc, (c + 1) * n // nc, full)
        E[c, 0] = ec
        E[c, 1] = 1.0 if okc else 0.0
    e = 0.0
    ok = True
    for c in range(nc):
        e += E[c, 0]
        ok = ok and E[c, 1] == 1.0
    return e, ok


@jit
def _sym_commit(u, unew, a, bound):
    lo = 1.0 / bound
    out = False
    for i in range(u.shape[0]):
        u[i] = unew[i]
        r = unew[i] / a[i]
        if r > bound or r < lo:
            out = True
    return out


@jit
def symmetric_sweep(K, a, u, bound, tol, maxiter, first_full, errs, unew, uk):
    """Averaged symmetric iterations in scaling form, ``u <- sqrt(u a / (K u))``, in place
    (serial; :func:`symmetric_sweep_par` runs each pass in parallel row blocks).

    ``K`` (n, n) symmetric, float32 or float64; ``a``, ``u``, ``unew`` float64, ``uk``
    (n,) in K's dtype. ``first_full``: the first update is the full one ``u <- a / (K u)``
    (a cold start). ``errs[k]`` receives the marginal error of the state after ``k``
    iterations (length ``maxiter``). Returns ``(nit, code)``: ``DONE`` when
    ``errs[nit] <= tol``, ``BUDGET``, ``NONFINITE`` (a new scaling zero or non-finite; the
    last finite state is kept) or ``OUT_OF_RANGE`` (``u / a`` left
    ``[1 / bound, bound]``: absorb).
    """
    n = K.shape[0]
    for it in range(maxiter):
        for j in range(n):
            uk[j] = u[j]
        full = first_full and it == 0
        e, ok = _sym_rows(K, uk, u, a, unew, 0, n, full)
        errs[it] = 2.0 * e
        if 2.0 * e <= tol and not full:
            return it, DONE
        if not ok:
            return it, NONFINITE
        if _sym_commit(u, unew, a, bound):
            return it + 1, OUT_OF_RANGE
    return maxiter, BUDGET


@jit
def symmetric_sweep_par(K, a, u, bound, tol, maxiter, first_full, errs, unew, uk, E):
    """:func:`symmetric_sweep` with ``E.shape[0]`` parallel row blocks (``E``: (nc, 2))."""
    n = K.shape[0]
    for it in range(maxiter):
        for j in range(n):
            uk[j] = u[j]
        full = first_full and it == 0
        e, ok = _sym_blocks(K, uk, u, a, unew, E, full)
        errs[it] = 2.0 * e
        if 2.0 * e <= tol and not full:
            return it, DONE
        if not ok:
            return it, NONFINITE
        if _sym_commit(u, unew, a, bound):
            return it + 1, OUT_OF_RANGE
    return maxiter, BUDGET
