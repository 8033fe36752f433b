"""Online (lazy) kernels: costs of point clouds computed row by row, never stored.

A row of costs ``C_i. = c(x_i, y_.)`` is computed into a work row of length ``m``, used,
and overwritten by the next row: memory O((n + m) d) plus one row per thread. Metric codes:
0 squared Euclidean ``|x - y|^2`` (``|x|^2 + |y|^2 - 2 x.y``: one dot product per entry),
1 Euclidean, 2 cityblock, 3 Minkowski distance ``(sum_k |x_k - y_k|^p)^(1/p)``, and 4, 5
the Euclidean and Minkowski distances with each pair's differences divided by their
largest magnitude before the powers (:func:`scaled_distance`: clouds whose magnitudes
differ by hundreds of orders, where the plain sums of powers underflow); every cost is
multiplied by ``inv_scale``. The log-sum-exp of a row takes the row's maximum,
then the vectorized exponential of the shifted row (``_lse.exp_into``), so each entry
costs one exponential and ``d`` multiply-adds. The sweeps read ``y`` transposed
(:func:`cost_row_t`, a copy of O(m d) per call), so that the loops over a row's entries
are contiguous and vectorize; the exponentials go to a row of their own, since an
in-place ``exp_into`` does not vectorize (its output aliases its input). Kernels with a
``_par`` twin are serial; the twin runs blocks of rows on Numba's threads.
"""

import math

import numpy as np
from numba import prange

from ._jit import jit
from ._lse import exp_into, shifted_lse

SQEUCLIDEAN, EUCLIDEAN, CITYBLOCK, MINKOWSKI = 0, 1, 2, 3
EUCLIDEAN_SCALED, MINKOWSKI_SCALED = 4, 5


@jit
def scaled_distance(u, v, metric, p):
    """The Euclidean (``metric`` 4) or Minkowski (5) distance between the vectors ``u``
    and ``v``, as ``t (sum_k (|u_k - v_k| / t)^p)^(1/p)`` with ``t = 2**e`` the power of
    two just above the largest ``|u_k - v_k|``: every ratio is below 1 and the largest at
    least 1/2, so no power overflows or underflows unless its term is negligible (points
    1 apart beside points of 1e200, scaled together by one power of two, had squares of
    1e-400 and costs of 0). Division by a power of two is exact: the Euclidean distance
    is that of the plain sum wherever the plain sum neither overflows nor underflows.
    ``inf`` where a difference overflows (then so does the distance)."""
    top = 0.0
    for k in range(u.shape[0]):
        a = abs(u[k] - v[k])
        if a > top:
            top = a
    if top == 0.0 or top == np.inf:
        return top
    e = math.frexp(top)[1]
    s = 0.0
    if metric == EUCLIDEAN_SCALED:
        for k in range(u.shape[0]):
            r = math.ldexp(u[k] - v[k], -e)
            s += r * r
        return math.ldexp(np.sqrt(s), e)
    for k in range(u.shape[0]):
        s += math.ldexp(abs(u[k] - v[k]), -e) ** p
    return math.ldexp(s ** (1.0 / p), e)


@jit
def cost_row(x, y, i, sqx, sqy, metric, p, inv_scale, out):
    """``out[j] = c(x_i, y_j) * inv_scale`` for every ``j``."""
    m, d = y.shape
    if metric == SQEUCLIDEAN:
        xi = x[i]
        for j in range(m):
            s = 0.0
            for k in range(d):
                s += xi[k] * y[j, k]
            c = sqx[i] + sqy[j] - 2.0 * s
            out[j] = (c if c > 0.0 else 0.0) * inv_scale
    elif metric == EUCLIDEAN:
        for j in range(m):
            s = 0.0
            for k in range(d):
                t = x[i, k] - y[j, k]
                s += t * t
            out[j] = np.sqrt(s) * inv_scale
    elif metric == CITYBLOCK:
        for j in range(m):
            s = 0.0
            for k in range(d):
                s += abs(x[i, k] - y[j, k])
            out[j] = s * inv_scale
    elif metric >= EUCLIDEAN_SCALED:
        for j in range(m):
            out[j] = scaled_distance(x[i], y[j], metric, p) * inv_scale
    else:
        for j in range(m):
            s = 0.0
            for k in range(d):
                s += abs(x[i, k] - y[j, k]) ** p
            out[j] = s ** (1.0 / p) * inv_scale


@jit
def cost_row_t(x, yt, i, sqx, sqy, metric, p, inv_scale, out):
    """:func:`cost_row` from the transposed cloud ``yt`` (d, m): the same arithmetic per
    entry (the same sums in the same order, so the same bits), with the loop over the
    ``m`` entries innermost and contiguous, where it vectorizes (about 4x faster at
    d = 3 than the strided loads of :func:`cost_row`)."""
    d, m = yt.shape
    for j in range(m):
        out[j] = 0.0
    if metric == SQEUCLIDEAN:
        for k in range(d):
            xk = x[i, k]
            yk = yt[k]
            for j in range(m):
                out[j] += xk * yk[j]
        sx = sqx[i]
        for j in range(m):
            c = sx + sqy[j] - 2.0 * out[j]
            out[j] = (c if c > 0.0 else 0.0) * inv_scale
    elif metric == EUCLIDEAN:
        for k in range(d):
            xk = x[i, k]
            yk = yt[k]
            for j in range(m):
                t = xk - yk[j]
                out[j] += t * t
        for j in range(m):
            out[j] = np.sqrt(out[j]) * inv_scale
    elif metric == CITYBLOCK:
        for k in range(d):
            xk = x[i, k]
            yk = yt[k]
            for j in range(m):
                out[j] += abs(xk - yk[j])
        for j in range(m):
            out[j] *= inv_scale
    elif metric >= EUCLIDEAN_SCALED:  # (strided reads of yt: extreme clouds only)
        for j in range(m):
            out[j] = scaled_distance(x[i], yt[:, j], metric, p) * inv_scale
    else:
        for k in range(d):
            xk = x[i, k]
            yk = yt[k]
            for j in range(m):
                out[j] += abs(xk - yk[j]) ** p
        for j in range(m):
            out[j] = out[j] ** (1.0 / p) * inv_scale


@jit
def _ctransform_rows(x, yt, sqx, sqy, metric, p, inv_scale, logw, pot, reg, prev, wprev,
                     out, z, W, r0, r1):
    """Rows ``r0:r1`` of :func:`ctransform` (``yt``: the transposed ``y``; ``z``: a work
    row, ``W``: (2, m) work rows); returns ``(finite, e)`` of these rows."""
    m = yt.shape[1]
    inv = 1.0 / reg
    e = 0.0
    ez, work = W[0], W[1]  # the exponentials go to their own row: exp_into vectorizes
    for i in range(r0, r1):
        cost_row_t(x, yt, i, sqx, sqy, metric, p, inv_scale, z)
        for j in range(m):
            z[j] = logw[j] + (pot[j] - z[j]) * inv
        oi = -reg * shifted_lse(z, ez, work)
        if not np.isfinite(oi):
            return False, e
        out[i] = oi
        e += wprev[i] * abs(np.expm1((prev[i] - oi) * inv))
    return True, e


@jit
def ctransform(x, y, sqx, sqy, metric, p, inv_scale, logw, pot, reg, prev, wprev, out, Z, W):
    """Soft c-transform ``out_i = -reg log sum_j exp(logw_j + (pot_j - C_ij) / reg)`` with
    the costs computed on the fly (serial; ``Z``: (1, m) and ``W``: (1, 2, m) work rows).

    Returns ``(finite, e)`` with ``e = sum_i wprev_i |exp((prev_i - out_i) / reg) - 1|``:
    the L1 row error of the plan of ``(prev, pot)`` (as ``_lse.c_transform_rows``). With
    ``x`` and ``y`` exchanged it is the column update.
    """
    return _ctransform_rows(x, np.ascontiguousarray(y.T), sqx, sqy, metric, p, inv_scale,
                            logw, pot, reg, prev, wprev, out, Z[0], W[0], 0, x.shape[0])


@jit(parallel=True)
def ctransform_par(x, y, sqx, sqy, metric, p, inv_scale, logw, pot, reg, prev, wprev, out,
                   Z, W):
    """:func:`ctransform` in ``Z.shape[0]`` parallel row blocks."""
    n = x.shape[0]
    nc = Z.shape[0]
    E = np.zeros(nc)
    F = np.ones(nc)
    yt = np.ascontiguousarray(y.T)
    for c in prange(nc):
        ok, e = _ctransform_rows(x, yt, sqx, sqy, metric, p, inv_scale, logw, pot, reg, prev,
                                 wprev, out, Z[c], W[c], c * n // nc, (c + 1) * n // nc)
        E[c] = e
        F[c] = 1.0 if ok else 0.0
    e = 0.0
    ok = True
    for c in range(nc):
        e += E[c]
        ok = ok and F[c] == 1.0
    return ok, e


@jit
def _stats_rows(x, yt, sqx, sqy, metric, p, inv_scale, loga, logb, f, g, reg, v, rows,
                cols, Pv, B, r0, r1):
    """Rows ``r0:r1`` of :func:`plan_stats` (``yt``: the transposed ``y``; ``B``: (5, m)
    work rows); returns ``(lin, plogr)`` of these rows."""
    m = yt.shape[1]
    inv = 1.0 / reg
    z, c, q, work, ez = B[0], B[1], B[2], B[3], B[4]
    lin = 0.0
    plogr = 0.0
    for i in range(r0, r1):
        cost_row_t(x, yt, i, sqx, sqy, metric, p, inv_scale, c)
        for j in range(m):
            q[j] = (f[i] + g[j] - c[j]) * inv
            z[j] = loga[i] + logb[j] + q[j]
        exp_into(z, ez, work)  # not in place: an aliased output does not vectorize
        r = 0.0
        for j in range(m):
            pij = ez[j]
            r += pij
            cols[j] += pij
            lin += pij * c[j]
            if pij > 0.0:
                plogr += pij * q[j]
            for k in range(v.shape[1]):
                Pv[i, k] += pij * v[j, k]
        rows[i] = r
    return lin, plogr


@jit
def plan_stats(x, y, sqx, sqy, metric, p, inv_scale, loga, logb, f, g, reg, v, B):
    """One pass over the plan ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)`` without
    storing it (``B``: (1, 5, m) work rows): returns ``(rows, cols, lin, plogr, Pv)`` with
    the marginals, ``lin = <P, C>``, ``plogr = sum P_ij (f_i + g_j - C_ij) / reg`` (as
    ``_sinkhorn.plan_from_potentials``) and ``Pv = P v`` for ``v`` (m, k) (k may be 0)."""
    n, m = x.shape[0], y.shape[0]
    rows = np.zeros(n)
    cols = np.zeros(m)
    Pv = np.zeros((n, v.shape[1]))
    lin, plogr = _stats_rows(x, np.ascontiguousarray(y.T), sqx, sqy, metric, p, inv_scale,
                             loga, logb, f, g, reg, v, rows, cols, Pv, B[0], 0, n)
    return rows, cols, lin, plogr, Pv


@jit(parallel=True)
def plan_stats_par(x, y, sqx, sqy, metric, p, inv_scale, loga, logb, f, g, reg, v, B):
    """:func:`plan_stats` in ``B.shape[0]`` parallel row blocks."""
    n, m = x.shape[0], y.shape[0]
    nc = B.shape[0]
    rows = np.zeros(n)
    C = np.zeros((nc, m))
    S = np.zeros((nc, 2))
    Pv = np.zeros((n, v.shape[1]))
    yt = np.ascontiguousarray(y.T)
    for c in prange(nc):
        lc, pc = _stats_rows(x, yt, sqx, sqy, metric, p, inv_scale, loga, logb, f, g, reg, v,
                             rows, C[c], Pv, B[c], c * n // nc, (c + 1) * n // nc)
        S[c, 0] = lc
        S[c, 1] = pc
    cols = np.zeros(m)
    lin = 0.0
    plogr = 0.0
    for c in range(nc):
        lin += S[c, 0]
        plogr += S[c, 1]
        for j in range(m):
            cols[j] += C[c, j]
    return rows, cols, lin, plogr, Pv


@jit
def _extreme_rows(x, yt, sqx, sqy, metric, p, z, r0, r1):
    m = yt.shape[1]
    lo = np.inf
    hi = -np.inf
    s1 = 0.0
    s2 = 0.0
    for i in range(r0, r1):
        cost_row_t(x, yt, i, sqx, sqy, metric, p, 1.0, z)
        for j in range(m):
            c = z[j]
            s1 += c
            s2 += c * c
            if c < lo:
                lo = c
            if c > hi:
                hi = c
    return lo, hi, s1, s2


@jit
def cost_extremes(x, y, sqx, sqy, metric, p, Z):
    """``(min, max, sum, sum of squares)`` of the unscaled costs in one pass (serial;
    ``Z``: (1, m))."""
    return _extreme_rows(x, np.ascontiguousarray(y.T), sqx, sqy, metric, p, Z[0], 0,
                         x.shape[0])


@jit(parallel=True)
def cost_extremes_par(x, y, sqx, sqy, metric, p, Z):
    """:func:`cost_extremes` in ``Z.shape[0]`` parallel row blocks."""
    n = x.shape[0]
    nc = Z.shape[0]
    out = np.empty((nc, 4))
    yt = np.ascontiguousarray(y.T)
    for c in prange(nc):
        lo, hi, s1, s2 = _extreme_rows(x, yt, sqx, sqy, metric, p, Z[c], c * n // nc,
                                       (c + 1) * n // nc)
        out[c, 0] = lo
        out[c, 1] = hi
        out[c, 2] = s1
        out[c, 3] = s2
    return out[:, 0].min(), out[:, 1].max(), out[:, 2].sum(), out[:, 3].sum()


@jit
def cost_block(x, y, rows, cols, sqx, sqy, metric, p, inv_scale):
    """The dense block ``C[rows][:, cols]`` (small blocks only)."""
    out = np.empty((rows.size, cols.size))
    z = np.empty(y.shape[0])
    for a in range(rows.size):
        cost_row(x, y, rows[a], sqx, sqy, metric, p, inv_scale, z)
        for b in range(cols.size):
            out[a, b] = z[cols[b]]
    return out
