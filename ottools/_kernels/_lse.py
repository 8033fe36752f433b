"""Stabilized log-sum-exp helpers shared by the entropic kernels."""

import numpy as np

from ._jit import FASTMATH_SAFE, NO_NRT, jit


@jit
def row_max(z):
    """The largest entry of ``z`` other than NaN (``-inf`` if none): four running maxima,
    which the compiler vectorizes (one running maximum does not: without ``nnan`` a
    maximum is not reassociated). Exact, so the same as the plain loop's."""
    m = z.shape[0]
    m0 = m1 = m2 = m3 = -np.inf
    j = 0
    while j + 4 <= m:
        a, b, c, d = z[j], z[j + 1], z[j + 2], z[j + 3]
        m0 = a if a > m0 else m0
        m1 = b if b > m1 else m1
        m2 = c if c > m2 else m2
        m3 = d if d > m3 else m3
        j += 4
    mx = max(max(m0, m1), max(m2, m3))
    while j < m:
        mx = z[j] if z[j] > mx else mx
        j += 1
    return mx


@jit(fastmath=FASTMATH_SAFE)
def row_sum(z):
    """The sum of ``z``, reassociated (vectorized partial sums)."""
    s = 0.0
    for j in range(z.shape[0]):
        s += z[j]
    return s


@jit
def shifted_lse(z, ez, work):
    """``log sum_j exp(z_j)`` by the largest entry and the vectorized exponential (``z``
    is shifted in place; ``ez``, ``work``: float64 rows of its length). A non-finite
    maximum is returned as it is."""
    mx = row_max(z)
    if not np.isfinite(mx):
        return mx
    for j in range(z.shape[0]):
        z[j] -= mx
    exp_into(z, ez, work)
    return mx + np.log(row_sum(ez))


@jit
def col_lse(logw, pot, cost, inv_reg, out_max, out_sum, out):
    """Column log-sum-exp ``out_j = log sum_i exp(logw_i + (pot_i - cost[i, j]) * inv_reg)``.

    Streams the rows of the C-contiguous ``cost`` twice (max, then sum), using
    ``out_max`` and ``out_sum`` (length m) as work space; the exponentials of a row are
    taken together (``exp_into``).
    """
    n, m = cost.shape
    for j in range(m):
        out_max[j] = -np.inf
        out_sum[j] = 0.0
    for i in range(n):
        r = logw[i] + pot[i] * inv_reg
        for j in range(m):
            t = r - cost[i, j] * inv_reg
            if t > out_max[j]:
                out_max[j] = t
    z, ez, work = np.empty(m), np.empty(m), np.empty(m)
    for i in range(n):
        r = logw[i] + pot[i] * inv_reg
        for j in range(m):
            z[j] = r - cost[i, j] * inv_reg - out_max[j]
        exp_into(z, ez, work)
        for j in range(m):
            out_sum[j] += ez[j]
    for j in range(m):
        out[j] = out_max[j] + np.log(out_sum[j])


# Polynomial exponential -------------------------------------------------------------
# exp(x) = 2**k * exp(r), k = round(x / ln 2), |r| <= ln(2) / 2, exp(r) by its Taylor
# polynomial of degree 13 (truncation error < 4e-18). Only +, *, floor, casts and integer
# shifts: LLVM vectorizes the loop (pip's llvmlite has no vectorized libm exp). Full
# accuracy for -708 <= x <= 709; below, results tend to 0 and are flushed to 0 under
# about 1e-308 (harmless for kernel entries); above 709.4, inf.
# Max relative error against np.exp: 4.5e-16 (measured in tests/test_sinkhorn_fast.py).
# Compiled with contraction only (``contract``: the multiply-adds become fused
# multiply-adds; NaN and inf semantics kept): 0.57 against 1.05 ns per entry on this
# machine's AVX-512 (the polynomial's 13 steps are one instruction each instead of two),
# the same 2.2e-16 largest relative error over 1e6 arguments in [-708, 709].
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125
_LN2_LO = 1.4286068203094173e-06
_EXP_LO = -746.0
_EXP_HI = 710.0


@jit(fastmath={"contract"}, **NO_NRT)
def exp_into(x, out, work):
    """``out[j] = exp(x[j])`` for 1-D arrays, vectorizable (see the module note).

    ``x`` and ``out`` may be float32 or float64 (computed in float64, rounded on store);
    ``work`` is a float64 scratch array of the same length. NaN stays NaN, -inf gives 0,
    +inf gives inf.
    """
    m = x.shape[0]
    bits = work.view(np.int64)
    for j in range(m):
        t = np.float64(x[j])
        t = _EXP_LO if t < _EXP_LO else t
        t = _EXP_HI if t > _EXP_HI else t
        k = np.floor(t * _LOG2E + 0.5)
        r = (t - k * _LN2_HI) - k * _LN2_LO
        p = 1.6059043836821613e-10
        p = p * r + 2.08767569878681e-09
        p = p * r + 2.505210838544172e-08
        p = p * r + 2.755731922398589e-07
        p = p * r + 2.7557319223985893e-06
        p = p * r + 2.48015873015873e-05
        p = p * r + 0.0001984126984126984
        p = p * r + 0.001388888888888889
        p = p * r + 0.008333333333333333
        p = p * r + 0.041666666666666664
        p = p * r + 0.16666666666666666
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        ki = np.int64(k) + 1023
        ki = 0 if ki < 0 else ki
        ki = 2047 if ki > 2047 else ki
        bits[j] = ki << 52
        out[j] = p * work[j]


@jit
def c_transform_rows(a, logw, pot, cost, reg, prev, out):
    """``out_i = -reg log sum_j exp(logw_j + (pot_j - cost[i, j]) / reg)`` for every row.

    Returns ``(finite, e)`` with ``e = sum_i a_i |exp((prev_i - out_i) / reg) - 1|``: the
    L1 row error of the plan of ``(prev, pot)`` (its rows sum to
    ``a_i exp((prev_i - out_i) / reg)``), for free. Stops at the first non-finite entry
    (``finite`` False; ``out`` partly written).
    """
    inv = 1.0 / reg
    e = 0.0
    m = cost.shape[1]
    z, ez, work = np.empty(m), np.empty(m), np.empty(m)
    for i in range(cost.shape[0]):
        for j in range(m):
            z[j] = logw[j] + (pot[j] - cost[i, j]) * inv
        oi = -reg * shifted_lse(z, ez, work)
        if not np.isfinite(oi):
            return False, e
        out[i] = oi
        e += a[i] * abs(np.expm1((prev[i] - oi) * inv))
    return True, e


@jit
def c_transform_sub(cost, rows, cols, pot, logw, reg, out):
    """``out_k = -reg log sum_l exp(logw_l + (pot_l - cost[rows[k], cols[l]]) / reg)``:
    the soft c-transform of the rows ``rows`` of ``cost`` against the columns ``cols``
    (the potentials of zero-weight rows; no copy of the block)."""
    m = cols.shape[0]
    inv = 1.0 / reg
    z, ez, work = np.empty(m), np.empty(m), np.empty(m)
    for k in range(rows.shape[0]):
        r = rows[k]
        for j in range(m):
            z[j] = logw[j] + (pot[j] - np.float64(cost[r, cols[j]])) * inv
        out[k] = -reg * shifted_lse(z, ez, work)


@jit
def c_transform_sub_cols(cost, rows, cols, pot, logw, reg, out):
    """``out_k = -reg log sum_l exp(logw_l + (pot_l - cost[rows[l], cols[k]]) / reg)``:
    the soft c-transform of the columns ``cols`` against the rows ``rows``, streaming the
    rows of ``cost`` twice (maxima, then sums) as :func:`col_lse`."""
    m = cols.shape[0]
    inv = 1.0 / reg
    mx = np.full(m, -np.inf)
    s = np.zeros(m)
    for l in range(rows.shape[0]):
        r = rows[l]
        base = logw[l] + pot[l] * inv
        for k in range(m):
            t = base - np.float64(cost[r, cols[k]]) * inv
            if t > mx[k]:
                mx[k] = t
    z, ez, work = np.empty(m), np.empty(m), np.empty(m)
    for l in range(rows.shape[0]):
        r = rows[l]
        base = logw[l] + pot[l] * inv
        for k in range(m):
            z[k] = base - np.float64(cost[r, cols[k]]) * inv - mx[k]
        exp_into(z, ez, work)
        for k in range(m):
            s[k] += ez[k]
    for k in range(m):
        out[k] = -reg * (mx[k] + np.log(s[k])) if np.isfinite(mx[k]) else -reg * mx[k]
