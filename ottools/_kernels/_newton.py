"""Sinkhorn-Newton-Sparse kernels: dense plan pass, sparsification, sparse Newton system.

All kernels work on the compressed problem (every weight > 0) in float64 and never
raise. Convention (Tang et al., ICLR 2024, in cost units):
``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)``,
``rows = P 1``, ``cols = P^T 1``, the dual ascent direction solves
``H Delta = reg * grad F`` with ``H = [[diag(rows), Ps], [Ps^T, diag(cols)]]`` (``Ps`` the
sparsified plan) and the gauge fixed by ``Delta g_j0 = 0``.
"""

import numpy as np

from ._jit import jit
from ._lse import exp_into


@jit
def _phi_series(t):
    """``exp(t) - 1 - t`` for ``|t| < 0.05``, relative error below 1e-16."""
    return t * t * 0.5 * (1.0 + t / 3.0 * (1.0 + t / 4.0 * (1.0 + t / 5.0 * (
        1.0 + t / 6.0 * (1.0 + t / 7.0 * (1.0 + t / 8.0 * (1.0 + t / 9.0)))))))


@jit
def trial_plan(loga, logb, cost, inv_reg, f_new, g_new, df, dg, P_old, P_new, rows, cols, z,
               work):
    """Plan at ``(f_new, g_new)`` plus the curvature part of the dual increase.

    ``df = f_new - f``, ``dg = g_new - g`` are the steps actually taken (differences of
    the stored potentials) and ``P_old`` the plan at ``(f, g)``. Writes the new plan
    and marginals (as ``_sinkhorn.plan_from_potentials``, but with the vectorized
    exponential ``exp_into``; ``z``, ``work``: float64 rows of length m) and returns
    ``S = sum_ij P_old_ij (exp(t_ij) - 1 - t_ij)``, ``t_ij = (df_i + dg_j) * inv_reg``,
    so that the exact dual increase is
    ``F(f_new, g_new) - F(f, g) = <df, a - P_old 1> + <dg, b - P_old^T 1> - reg * S``.
    Every term is a sum of non-negative numbers: it keeps its relative accuracy when
    the increase is far below the rounding error of ``F`` itself (near the optimum).
    Returns ``inf`` if a value overflows.
    """
    n, m = cost.shape
    gb = np.empty(m, dtype=np.float64)
    dgi = np.empty(m, dtype=np.float64)
    for j in range(m):
        gb[j] = logb[j] + g_new[j] * inv_reg
        dgi[j] = dg[j] * inv_reg
        cols[j] = 0.0
    S = 0.0
    for i in range(n):
        base = loga[i] + f_new[i] * inv_reg
        dfi = df[i] * inv_reg
        for j in range(m):
            z[j] = base + gb[j] - cost[i, j] * inv_reg
        exp_into(z, P_new[i], work)
        s = 0.0
        for j in range(m):
            p = P_new[i, j]
            s += p
            cols[j] += p
            t = dfi + dgi[j]
            q = P_old[i, j]
            if abs(t) < 0.05:
                S += q * _phi_series(t)
            else:
                S += p - q - q * t
        rows[i] = s
    ok = np.isfinite(S)
    for i in range(n):
        if not np.isfinite(rows[i]):
            ok = False
    for j in range(m):
        if not np.isfinite(cols[j]):
            ok = False
    if not ok:
        return np.inf
    return S


@jit
def _select(values, lo, hi, target):
    """Quickselect: reorder ``values[lo:hi + 1]`` so that ``values[target]`` holds the
    value of its sorted position, smaller-or-equal entries before it and
    greater-or-equal after it. Hoare partition, median-of-three pivot, expected O(size).
    """
    while lo < hi:
        mid = (lo + hi) // 2
        x, y, z = values[lo], values[mid], values[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        i = lo
        j = hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                tmp = values[i]
                values[i] = values[j]
                values[j] = tmp
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return values[target]


@jit
def kth_largest(values, k):
    """The ``k``-th largest entry of ``values`` (1 <= k <= size), by quickselect
    (expected O(size), no sort); reorders ``values`` in place (pass a copy).
    Values must not be NaN.
    """
    N = values.size
    return _select(values, 0, N - 1, N - k)


_BIN_SHIFT = 50  # a float64's exponent and the top two bits of its mantissa


@jit
def mass_threshold(P, k_min, mass_tol):
    """Threshold ``rho`` for the sparsified Hessian: the largest value of the form
    ``2**e * (1 + q / 4)`` (``q`` in 0..3: four thresholds per octave) such that the
    entries of ``P`` (non-negative) at or above it are at least ``k_min`` and their
    dropped mass is at most ``mass_tol * sum(P)``. One pass over ``P`` (a histogram of
    counts and mass by the leading bits of the entries' float64 representations, whose
    order is the values' order), no copy, no reordering: O(size) with a small constant,
    where selecting the exact ``k``-th largest (:func:`kth_largest`) reorders a copy of
    every entry. Returns ``(rho, k)``, ``k`` the count at or above ``rho``
    (``rho = 0`` keeps every positive entry).
    """
    N = P.size
    flat = P.reshape(N)
    bits = flat.view(np.int64)
    nb = 1 << (63 - _BIN_SHIFT)
    cnt = np.zeros(nb, dtype=np.int64)
    mass = np.zeros(nb, dtype=np.float64)
    total = 0.0
    npos = 0
    for t in range(N):
        v = flat[t]
        if v > 0.0:
            b = bits[t] >> _BIN_SHIFT
            cnt[b] += 1
            mass[b] += v
            total += v
            npos += 1
    if npos == 0:
        return 0.0, 0
    k0 = min(k_min, npos)
    kept = 0.0
    c = 0
    out = np.zeros(1, dtype=np.int64)
    for b in range(nb - 1, 0, -1):
        c += cnt[b]
        kept += mass[b]
        if c >= k0 and total - kept <= mass_tol * total:
            out[0] = b << _BIN_SHIFT
            return out.view(np.float64)[0], c
    return 0.0, npos


@jit
def sparsify_csr(P, rho):
    """CSR arrays of the kept entries of ``P``: ``P_ij >= rho``, plus each row's and
    each column's largest entry (so no row or column of the sparse Hessian is empty);
    exact zeros are never kept.

    Returns ``(indptr, indices, data)`` (int64, int64, float64) in row-major order;
    O(nm), three passes over ``P``.
    """
    n, m = P.shape
    cmax = np.zeros(m, dtype=np.float64)
    for i in range(n):
        for j in range(m):
            if P[i, j] > cmax[j]:
                cmax[j] = P[i, j]
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        rmax = 0.0
        for j in range(m):
            if P[i, j] > rmax:
                rmax = P[i, j]
        c = 0
        for j in range(m):
            p = P[i, j]
            if p > 0.0 and (p >= rho or p == rmax or p == cmax[j]):
                c += 1
        indptr[i + 1] = indptr[i] + c
    nnz = indptr[n]
    indices = np.empty(nnz, dtype=np.int64)
    data = np.empty(nnz, dtype=np.float64)
    for i in range(n):
        rmax = 0.0
        for j in range(m):
            if P[i, j] > rmax:
                rmax = P[i, j]
        k = indptr[i]
        for j in range(m):
            p = P[i, j]
            if p > 0.0 and (p >= rho or p == rmax or p == cmax[j]):
                indices[k] = j
                data[k] = p
                k += 1
    return indptr, indices, data


@jit
def hess_matvec(indptr, indices, data, rows, cols, shift, j0, xf, xg, yf, yg):
    """``(yf, yg) = H (xf, xg)`` with
    ``H = [[(1 + shift) diag(rows), Ps], [Ps^T, (1 + shift) diag(cols)]]``,
    ``Ps`` in CSR; the gauge-fixed unknown ``xg[j0]`` is read as 0 and ``yg[j0]`` set
    to 0 (the (n + m - 1)-dimensional system). One pass over the CSR arrays.
    """
    n = rows.size
    m = cols.size
    d1 = 1.0 + shift
    for j in range(m):
        yg[j] = d1 * cols[j] * xg[j]
    yg[j0] = 0.0
    for i in range(n):
        xi = xf[i]
        s = d1 * rows[i] * xi
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d = data[k]
            if j != j0:
                s += d * xg[j]
                yg[j] += d * xi
        yf[i] = s
    yg[j0] = 0.0


@jit
def newton_cg(indptr, indices, data, rows, cols, shift, j0, bf, bg, tol, maxiter, xf, xg):
    """Jacobi-preconditioned conjugate gradient on the gauge-fixed Newton system.

    Solves ``H x = b`` (see :func:`hess_matvec`, with the relative diagonal ``shift``;
    ``bg[j0]`` is ignored, ``xg[j0] = 0``) from ``x = 0`` until
    ``||H x - b||_2 <= tol ||b||_2``. The preconditioner is the diagonal of ``H``. Writes ``xf``, ``xg``; returns ``(iterations, relres)``
    with ``relres`` the final relative residual (of the recursively updated residual).
    """
    n = rows.size
    m = cols.size
    rf = np.empty(n, dtype=np.float64)
    rg = np.empty(m, dtype=np.float64)
    zf = np.empty(n, dtype=np.float64)
    zg = np.empty(m, dtype=np.float64)
    pf = np.empty(n, dtype=np.float64)
    pg = np.empty(m, dtype=np.float64)
    qf = np.empty(n, dtype=np.float64)
    qg = np.empty(m, dtype=np.float64)
    d1 = 1.0 + shift
    bn = 0.0
    rz = 0.0
    for i in range(n):
        xf[i] = 0.0
        rf[i] = bf[i]
        zf[i] = rf[i] / (d1 * rows[i])
        pf[i] = zf[i]
        bn += rf[i] * rf[i]
        rz += rf[i] * zf[i]
    for j in range(m):
        xg[j] = 0.0
        rg[j] = 0.0 if j == j0 else bg[j]
        zg[j] = rg[j] / (d1 * cols[j])
        pg[j] = zg[j]
        bn += rg[j] * rg[j]
        rz += rg[j] * zg[j]
    bn = np.sqrt(bn)
    if bn == 0.0:
        return 0, 0.0
    relres = 1.0
    it = 0
    while it < maxiter:
        hess_matvec(indptr, indices, data, rows, cols, shift, j0, pf, pg, qf, qg)
        pq = 0.0
        for i in range(n):
            pq += pf[i] * qf[i]
        for j in range(m):
            pq += pg[j] * qg[j]
        if not pq > 0.0:
            break
        alpha = rz / pq
        rn = 0.0
        for i in range(n):
            xf[i] += alpha * pf[i]
            rf[i] -= alpha * qf[i]
            rn += rf[i] * rf[i]
        for j in range(m):
            xg[j] += alpha * pg[j]
            rg[j] -= alpha * qg[j]
            rn += rg[j] * rg[j]
        it += 1
        relres = np.sqrt(rn) / bn
        if relres <= tol:
            break
        rz_new = 0.0
        for i in range(n):
            zf[i] = rf[i] / (d1 * rows[i])
            rz_new += rf[i] * zf[i]
        for j in range(m):
            zg[j] = rg[j] / (d1 * cols[j])
            rz_new += rg[j] * zg[j]
        beta = rz_new / rz
        rz = rz_new
        for i in range(n):
            pf[i] = zf[i] + beta * pf[i]
        for j in range(m):
            pg[j] = zg[j] + beta * pg[j]
    xg[j0] = 0.0
    return it, relres
