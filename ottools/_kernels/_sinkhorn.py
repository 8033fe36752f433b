"""Sinkhorn kernels: log-domain and scaling form, and the plan from potentials.

All kernels work on the compressed problem (every weight > 0). Status codes are those of
``ottools._result``: 0 converged, 1 maxiter, 2 non-finite values.

Marginal error. After a ``g`` update the column marginals are exact, so the error of the
state ``(f, g)`` is its row error ``sum_i |P1_i - a_i|``; the next ``f`` update computes it
for free: ``P1_i = a_i exp((f_i - f_new_i) / reg)``. The kernels therefore check the state
they would return, exactly, at every iteration, for ``n`` extra exponentials.
"""

import numpy as np

from ._jit import jit
from ._lse import col_lse, row_lse


@jit
def sinkhorn_log(a, loga, logb, cost, reg, f, g, tol, maxiter, check_first):
    """Log-domain Sinkhorn, in place on ``f`` and ``g``.

    Returns ``(nit, status, err)``; ``err`` is the marginal error of the returned
    ``(f, g)`` when ``status == 0``, else of the previous iterate (inf if unknown).
    ``check_first`` says whether ``g`` is the exact update of ``f`` on entry (columns
    exact), so that the entry state may be accepted.
    """
    n, m = cost.shape
    inv = 1.0 / reg
    fnew = np.empty(n, dtype=f.dtype)
    cmax = np.empty(m, dtype=f.dtype)
    csum = np.empty(m, dtype=f.dtype)
    gnew = np.empty(m, dtype=f.dtype)
    err = np.inf
    status = 1
    nit = 0
    for it in range(maxiter):
        e = 0.0
        finite = True
        for i in range(n):
            fi = -reg * row_lse(logb, g, cost, inv, i)
            if not np.isfinite(fi):
                finite = False
                break
            fnew[i] = fi
            e += a[i] * abs(np.expm1((f[i] - fi) * inv))
        if not finite:
            status = 2
            break
        if (it > 0 or check_first) and e <= tol:
            err = e
            status = 0
            break
        err = e if (it > 0 or check_first) else np.inf
        col_lse(loga, fnew, cost, inv, cmax, csum, gnew)
        for j in range(m):
            gj = -reg * gnew[j]
            if not np.isfinite(gj):
                finite = False
                break
            gnew[j] = gj
        if not finite:
            status = 2
            break
        f[:] = fnew
        g[:] = gnew
        nit = it + 1
    return nit, status, err


@jit
def sinkhorn_scaling(a, b, K, u, v, tol, maxiter, check_first):
    """Scaling-form Sinkhorn ``u <- a / (K v)``, ``v <- b / (K^T u)``, in place.

    Returns ``(nit, status, err)`` as :func:`sinkhorn_log`. On under/overflow
    (a zero or non-finite scaling) stops with status 2 and the last finite iterate.
    """
    n, m = K.shape
    Kv = np.empty(n, dtype=K.dtype)
    KTu = np.empty(m, dtype=K.dtype)
    unew = np.empty(n, dtype=K.dtype)
    vnew = np.empty(m, dtype=K.dtype)
    err = np.inf
    status = 1
    nit = 0
    for it in range(maxiter):
        np.dot(K, v, Kv)
        e = 0.0
        ok = True
        for i in range(n):
            e += abs(u[i] * Kv[i] - a[i])
            ui = a[i] / Kv[i]
            if not (np.isfinite(ui) and ui > 0.0):
                ok = False
            unew[i] = ui
        if (it > 0 or check_first) and e <= tol:
            err = e
            status = 0
            break
        if not ok:
            status = 2
            break
        err = e if (it > 0 or check_first) else np.inf
        np.dot(unew, K, KTu)
        for j in range(m):
            vj = b[j] / KTu[j]
            if not (np.isfinite(vj) and vj > 0.0):
                ok = False
            vnew[j] = vj
        if not ok:
            status = 2
            break
        u[:] = unew
        v[:] = vnew
        nit = it + 1
    return nit, status, err


@jit
def plan_from_potentials(loga, logb, cost, reg, f, g):
    """``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)`` with its marginals.

    Returns ``(P, rows, cols, lin, plogr)`` with ``rows``/``cols`` the marginals
    (float64 accumulators), ``lin = <P, C>`` and ``plogr = sum P_ij (f_i + g_j - C_ij)/reg``
    (so that ``KL(P | a x b) = plogr - sum(P) + sum(a) sum(b)``).
    """
    n, m = cost.shape
    inv = 1.0 / reg
    P = np.empty((n, m), dtype=cost.dtype)
    rows = np.zeros(n, dtype=np.float64)
    cols = np.zeros(m, dtype=np.float64)
    lin = 0.0
    plogr = 0.0
    for i in range(n):
        r = 0.0
        for j in range(m):
            z = (f[i] + g[j] - cost[i, j]) * inv
            p = np.exp(loga[i] + logb[j] + z)
            P[i, j] = p
            r += p
            cols[j] += p
            lin += p * cost[i, j]
            plogr += p * z
        rows[i] = r
    return P, rows, cols, lin, plogr
