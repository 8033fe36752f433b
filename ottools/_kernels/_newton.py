"""Sinkhorn-Newton-Sparse kernels: dense plan pass, sparsification, sparse Newton system.

All kernels work on the compressed problem (every weight > 0) in float64 and never
raise. Convention (Tang et al., ICLR 2024, in cost units):
``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)``,
``rows = P 1``, ``cols = P^T 1``, the dual ascent direction solves
``H Delta = reg * grad F`` with ``H = [[diag(rows), Ps], [Ps^T, diag(cols)]]`` (``Ps`` the
sparsified plan) and the gauge fixed by ``Delta g_j0 = 0``.
"""

import numpy as np
from numba import prange

from ._jit import FASTMATH_SAFE, jit
from ._lse import exp_into, row_max


@jit(fastmath=FASTMATH_SAFE)
def phi_series(t):
    """``exp(t) - 1 - t`` for ``|t| < 0.05``, relative error below 1e-16."""
    return t * t * 0.5 * (1.0 + t / 3.0 * (1.0 + t / 4.0 * (1.0 + t / 5.0 * (
        1.0 + t / 6.0 * (1.0 + t / 7.0 * (1.0 + t / 8.0 * (1.0 + t / 9.0)))))))


@jit
def kl_curvature(t, d, rho):
    """``rho sum_i t_i phi(-d_i / rho)``, ``phi(x) = exp(x) - 1 - x``: the curvature part
    of the change of a KL-relaxed marginal's dual term ``-rho <w, exp(-f / rho) - 1>``
    along a step ``d`` of ``f``, with ``t = w exp(-f / rho)`` (the increase is
    ``<t, d>`` minus this). 0 for a hard marginal (``rho = inf``)."""
    if not np.isfinite(rho):
        return 0.0
    c = 0.0
    for i in range(t.size):
        x = -d[i] / rho
        c += t[i] * (phi_series(x) if abs(x) < 0.05 else np.expm1(x) - x)
    return rho * c


@jit(inline="always")
def _trial_rows(loga, gb, cost, inv_reg, f_new, df, dgi, P_old, P_new, rows, cols, z, work,
                r0, r1):
    """Rows ``r0:r1`` of :func:`trial_plan`: fills ``P_new`` and ``rows``, adds the column
    sums into ``cols``; returns these rows' part of ``S``. Both forms of each term are
    computed and one is selected (no branch), so that the loop vectorizes.
    Inlined (Numba's ``inline="always"``, under the caller's ``FASTMATH_SAFE``): as a
    separate reassociating function it ran its own code in the process that compiled it
    and the caller's copy, summing in another order, in a process that loaded the caller
    from Numba's cache."""
    m = cost.shape[1]
    S = 0.0
    for i in range(r0, r1):
        base = loga[i] + f_new[i] * inv_reg
        dfi = df[i] * inv_reg
        for j in range(m):
            z[j] = base + gb[j] - cost[i, j] * inv_reg
        exp_into(z, P_new[i], work)
        s = 0.0
        si = 0.0
        for j in range(m):
            p = P_new[i, j]
            s += p
            cols[j] += p
            t = dfi + dgi[j]
            q = P_old[i, j]
            near = q * phi_series(t)
            far = p - q - q * t
            si += near if abs(t) < 0.05 else far
        rows[i] = s
        S += si
    return S


@jit
def _trial_setup(logb, g_new, dg, inv_reg):
    m = logb.size
    gb = np.empty(m, dtype=np.float64)
    dgi = np.empty(m, dtype=np.float64)
    for j in range(m):
        gb[j] = logb[j] + g_new[j] * inv_reg
        dgi[j] = dg[j] * inv_reg
    return gb, dgi


@jit
def _trial_value(S, rows, cols):
    """``S``, or ``inf`` when it or a marginal is not finite."""
    ok = np.isfinite(S)
    for i in range(rows.size):
        if not np.isfinite(rows[i]):
            ok = False
    for j in range(cols.size):
        if not np.isfinite(cols[j]):
            ok = False
    return S if ok else np.inf


@jit(fastmath=FASTMATH_SAFE)
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
    the increase is far below the rounding error of ``F`` itself (near the optimum), in
    any order of summation. Returns ``inf`` if a value overflows. Serial;
    :func:`trial_plan_par` runs row blocks in parallel.
    """
    gb, dgi = _trial_setup(logb, g_new, dg, inv_reg)
    cols[:] = 0.0
    S = _trial_rows(loga, gb, cost, inv_reg, f_new, df, dgi, P_old, P_new, rows, cols, z,
                    work, 0, cost.shape[0])
    return _trial_value(S, rows, cols)


@jit(parallel=True, fastmath=FASTMATH_SAFE)
def trial_plan_par(loga, logb, cost, inv_reg, f_new, g_new, df, dg, P_old, P_new, rows,
                   cols, chunks):
    """:func:`trial_plan` in ``chunks`` parallel row blocks (its own work rows)."""
    n, m = cost.shape
    nc = max(1, min(chunks, n))
    gb, dgi = _trial_setup(logb, g_new, dg, inv_reg)
    C = np.zeros((nc, m), dtype=np.float64)
    Z = np.empty((nc, m), dtype=np.float64)
    W = np.empty((nc, m), dtype=np.float64)
    Sc = np.zeros(nc, dtype=np.float64)
    for c in prange(nc):
        Sc[c] = _trial_rows(loga, gb, cost, inv_reg, f_new, df, dgi, P_old, P_new, rows,
                            C[c], Z[c], W[c], c * n // nc, (c + 1) * n // nc)
    S = 0.0
    for j in range(m):
        cols[j] = 0.0
    for c in range(nc):
        S += Sc[c]
        for j in range(m):
            cols[j] += C[c, j]
    return _trial_value(S, rows, cols)


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


BIN_SHIFT = 50  # a float64's exponent and the top two bits of its mantissa


@jit
def hist_block(flat, bits, t0, t1, cnt, mass, floor):
    """Counts and mass of the positive entries ``flat[t0:t1]`` at or above ``floor`` (a
    bin boundary: :func:`hist_floor`) by the leading bits of their float64
    representations, added into ``cnt``/``mass``; returns their sum and count."""
    total = 0.0
    npos = 0
    for t in range(t0, t1):
        v = flat[t]
        if v >= floor and v > 0.0:  # (rarely true first: predicted)
            b = bits[t] >> BIN_SHIFT
            cnt[b] += 1
            mass[b] += v
            total += v
            npos += 1
    return total, npos


@jit
def threshold_from_hist(cnt, mass, total, npos, k_min, mass_tol, cap=1 << 62):
    """The largest bin boundary with at least ``k_min`` entries at or above it and at
    most ``mass_tol * total`` mass below it, but with at most ``cap`` entries at or
    above it (at least the top bin's): ``(rho, k)``. When no boundary meets the mass
    rule (its sums rounded), the lowest counted one: every entry of the histogram."""
    if npos == 0:
        return 0.0, 0
    k0 = min(k_min, npos)
    kept = 0.0
    c = 0
    out = np.zeros(1, dtype=np.int64)
    for b in range(cnt.size - 1, 0, -1):
        if cnt[b] == 0:
            continue  # (the rule cannot newly hold at an empty bin)
        if c > 0 and c + cnt[b] > cap:
            return out.view(np.float64)[0], c  # the previous boundary
        c += cnt[b]
        kept += mass[b]
        out[0] = b << BIN_SHIFT
        if c >= k0 and total - kept <= mass_tol * total:
            return out.view(np.float64)[0], c
    if c == 0:
        return 0.0, npos  # (every positive entry in bin 0)
    return out.view(np.float64)[0], c


@jit
def hist_floor(floor):
    """``floor`` rounded down to a bin boundary (0 for ``floor <= 0``): the histograms
    count whole bins, so that every entry at or above a threshold they give is counted."""
    if not floor > 0.0:
        return 0.0
    b = (np.array([floor]).view(np.int64)[0] >> BIN_SHIFT) << BIN_SHIFT
    return np.array([b]).view(np.float64)[0]


@jit
def mass_threshold(P, k_min, mass_tol, floor=0.0):
    """Threshold ``rho`` for the sparsified Hessian: the largest value of the form
    ``2**e * (1 + q / 4)`` (``q`` in 0..3: four thresholds per octave) such that the
    entries of ``P`` (non-negative) at or above it are at least ``k_min`` and their
    dropped mass is at most ``mass_tol * sum(P)``. Entries below ``floor`` are left out
    of the counts and sums (their scattered bin updates cost most of the pass where the
    plan has many tiny entries): a floor of ``delta * mass_tol * sum(P) / P.size`` keeps
    the rule within a relative ``delta`` of ``mass_tol``. One pass over ``P`` (a
    histogram of counts and mass by the leading bits of the entries' float64
    representations, whose order is the values' order), no copy, no reordering: O(size)
    with a small constant, where selecting the exact ``k``-th largest
    (:func:`kth_largest`) reorders a copy of every entry. Returns ``(rho, k)``, ``k`` the
    count at or above ``rho`` (``rho = 0`` keeps every positive entry). Serial;
    :func:`mass_threshold_par` splits the pass in blocks.
    """
    N = P.size
    flat = P.reshape(N)
    nb = 1 << (63 - BIN_SHIFT)
    cnt = np.zeros(nb, dtype=np.int64)
    mass = np.zeros(nb, dtype=np.float64)
    total, npos = hist_block(flat, flat.view(np.int64), 0, N, cnt, mass,
                             hist_floor(floor))
    return threshold_from_hist(cnt, mass, total, npos, k_min, mass_tol)


@jit(parallel=True)
def mass_threshold_par(P, k_min, mass_tol, chunks, floor=0.0):
    """:func:`mass_threshold` with the histogram pass in ``chunks`` parallel blocks
    (the same bins; the mass sums in another order)."""
    N = P.size
    flat = P.reshape(N)
    bits = flat.view(np.int64)
    nb = 1 << (63 - BIN_SHIFT)
    nc = max(1, min(chunks, N))
    cnt = np.zeros((nc, nb), dtype=np.int64)
    mass = np.zeros((nc, nb), dtype=np.float64)
    tot = np.zeros(nc, dtype=np.float64)
    npc = np.zeros(nc, dtype=np.int64)
    lo = hist_floor(floor)
    for c in prange(nc):
        tot[c], npc[c] = hist_block(flat, bits, c * N // nc, (c + 1) * N // nc, cnt[c],
                                    mass[c], lo)
    for c in range(1, nc):
        for b in range(nb):
            cnt[0, b] += cnt[c, b]
            mass[0, b] += mass[c, b]
    return threshold_from_hist(cnt[0], mass[0], tot.sum(), npc.sum(), k_min, mass_tol)


@jit
def _col_max_rows(P, cm, r0, r1):
    """``cm_j = max(cm_j, max_i P_ij)`` over rows ``r0:r1``."""
    for i in range(r0, r1):
        for j in range(P.shape[1]):
            p = P[i, j]
            cm[j] = p if p > cm[j] else cm[j]


@jit
def _kept(p, rho, ri, cj):
    """Whether a plan entry ``p`` is kept: at or above ``rho``, or at or above its row's
    cut ``ri`` or its column's ``cj`` (``peak_tol`` times their largest entry: see
    :func:`sparsify_csr`), and positive. Bitwise, no short-circuit branches (about 40 %
    of the entries are positive at n = 4000, 2-D, reg 1e-4, in no pattern)."""
    return ((p >= rho) | (p >= ri) | (p >= cj)) & (p > 0.0)


@jit
def _count_rows(P, rho, peak, cmax, rmax, counts, r0, r1):
    """Each row's cut (``peak`` times its largest entry) and count of kept entries (rows
    ``r0:r1``; ``cmax``: the columns' cuts)."""
    for i in range(r0, r1):
        ri = peak * row_max(P[i])
        rmax[i] = ri
        c = 0
        for j in range(P.shape[1]):
            c += 1 if _kept(P[i, j], rho, ri, cmax[j]) else 0
        counts[i] = c


@jit
def compact_row(row, rho, ri, cmax, bi, bd):
    """The kept entries of ``row`` (row cut ``ri``, column cuts ``cmax``: see
    :func:`_kept`) into ``bi``, ``bd`` (length
    ``m + 1``); returns their count. Every entry is written and the count advances only
    for kept ones: no branch (the fill pass at n = 4000, 2-D, reg 1e-4 took 55 ms with a
    branch per entry, 18 ms without)."""
    k = 0
    for j in range(row.size):
        p = row[j]
        bi[k] = j
        bd[k] = p
        k += 1 if _kept(p, rho, ri, cmax[j]) else 0
    return k


@jit
def _fill_rows(P, rho, cmax, rmax, indptr, indices, data, r0, r1):
    """The kept entries of rows ``r0:r1`` at their CSR positions."""
    m = P.shape[1]
    bi = np.empty(m + 1, dtype=np.int64)
    bd = np.empty(m + 1, dtype=np.float64)
    for i in range(r0, r1):
        k = compact_row(P[i], rho, rmax[i], cmax, bi, bd)
        s = indptr[i]
        for t in range(k):
            indices[s + t] = bi[t]
            data[s + t] = bd[t]


@jit
def _csr_start(counts):
    n = counts.size
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        indptr[i + 1] = indptr[i] + counts[i]
    nnz = indptr[n]
    return indptr, np.empty(nnz, dtype=np.int64), np.empty(nnz, dtype=np.float64)


@jit
def sparsify_csr(P, rho, peak=1.0):
    """CSR arrays of the kept entries of ``P``: ``P_ij >= rho``, plus each row's and
    each column's entries at or above ``peak`` times its largest (``peak`` in (0, 1]; 1:
    the largest only; at least one, so no row or column of the sparse Hessian is empty);
    exact zeros are never kept.

    Returns ``(indptr, indices, data)`` (int64, int64, float64) in row-major order;
    O(nm), three passes over ``P``. Serial; :func:`sparsify_csr_par` runs row blocks in
    parallel (the same arrays).
    """
    n, m = P.shape
    cmax = np.zeros(m, dtype=np.float64)
    _col_max_rows(P, cmax, 0, n)
    cmax *= peak
    rmax = np.empty(n, dtype=np.float64)
    counts = np.empty(n, dtype=np.int64)
    _count_rows(P, rho, peak, cmax, rmax, counts, 0, n)
    indptr, indices, data = _csr_start(counts)
    _fill_rows(P, rho, cmax, rmax, indptr, indices, data, 0, n)
    return indptr, indices, data


@jit(parallel=True)
def sparsify_csr_par(P, rho, chunks, peak=1.0):
    """:func:`sparsify_csr` in ``chunks`` parallel row blocks."""
    n, m = P.shape
    nc = max(1, min(chunks, n))
    CM = np.zeros((nc, m), dtype=np.float64)
    for c in prange(nc):
        _col_max_rows(P, CM[c], c * n // nc, (c + 1) * n // nc)
    cmax = CM[0].copy()
    for c in range(1, nc):
        for j in range(m):
            cmax[j] = CM[c, j] if CM[c, j] > cmax[j] else cmax[j]
    cmax *= peak
    rmax = np.empty(n, dtype=np.float64)
    counts = np.empty(n, dtype=np.int64)
    for c in prange(nc):
        _count_rows(P, rho, peak, cmax, rmax, counts, c * n // nc, (c + 1) * n // nc)
    indptr, indices, data = _csr_start(counts)
    for c in prange(nc):
        _fill_rows(P, rho, cmax, rmax, indptr, indices, data, c * n // nc,
                   (c + 1) * n // nc)
    return indptr, indices, data


@jit
def schur_matvec(indptr, indices, data, d1, d2, j0, y, out):
    """``out = S y`` for the Schur complement of the Newton matrix on ``g``,
    ``S = diag(d2) - Ps^T diag(1 / d1) Ps`` (``d1 = (1 + shift) rows``,
    ``d2 = (1 + shift) cols``, ``Ps`` in CSR), gauge-fixed: ``y[j0]`` is read as 0 and
    ``out[j0]`` set to 0 (no gauge when ``j0 < 0``). One pass over the CSR arrays (row
    ``i`` gives ``(Ps y)_i``, then scatters ``Ps_i (Ps y)_i / d1_i``)."""
    for j in range(d2.size):
        out[j] = d2[j] * y[j]
    _scatter_rows(indptr, indices, data, d1, j0, y, out, 0, d1.size)
    if j0 >= 0:
        out[j0] = 0.0


@jit
def _scatter_rows(indptr, indices, data, d1, j0, y, acc, r0, r1):
    """``acc -= Ps_r^T diag(1 / d1_r) Ps_r y`` over the rows ``r0:r1`` (``y[j0]`` read
    as 0)."""
    for i in range(r0, r1):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j != j0:
                s += data[k] * y[j]
        zi = s / d1[i]
        for k in range(indptr[i], indptr[i + 1]):
            acc[indices[k]] -= data[k] * zi


@jit(parallel=True)
def _schur_matvec_blocks(indptr, indices, data, d1, d2, j0, y, out, bounds, T):
    """:func:`schur_matvec` in parallel row blocks ``bounds[c]:bounds[c + 1]`` (of about
    equal entry counts), each scattering into its row of ``T`` (nc, m)."""
    nc, m = T.shape
    for c in prange(nc):
        for j in range(m):
            T[c, j] = 0.0
        _scatter_rows(indptr, indices, data, d1, j0, y, T[c], bounds[c], bounds[c + 1])
    for j in range(m):
        acc = d2[j] * y[j]
        for c in range(nc):
            acc += T[c, j]
        out[j] = acc
    if j0 >= 0:
        out[j0] = 0.0


@jit
def _entry_blocks(indptr, nc):
    """Row boundaries of ``nc`` blocks holding about equal numbers of CSR entries."""
    n = indptr.size - 1
    bounds = np.empty(nc + 1, dtype=np.int64)
    bounds[0] = 0
    bounds[nc] = n
    nnz = indptr[n]
    for c in range(1, nc):
        bounds[c] = min(n, max(bounds[c - 1], np.searchsorted(indptr, c * nnz // nc)))
    return bounds


# Fewest kept entries for which newton_cg runs its products in parallel blocks (a
# parallel region per CG iteration costs microseconds).
_CG_PARALLEL_MIN_NNZ = 1 << 17


@jit
def newton_cg(indptr, indices, data, rows, cols, shift, j0, bf, bg, tol, maxiter, xf, xg,
              chunks=1):
    """The gauge-fixed Newton system ``H x = b``,
    ``H = [[(1 + shift) diag(rows), Ps], [Ps^T, (1 + shift) diag(cols)]]`` without the
    unknown ``xg[j0]`` (= 0; ``bg[j0]`` is ignored), by conjugate gradients on the Schur
    complement of its ``f`` block (:func:`schur_matvec`), preconditioned by that
    complement's diagonal, then ``xf = (bf - Ps xg) / ((1 + shift) rows)``. ``j0 < 0``:
    no gauge, for unbalanced problems, whose ``rows`` and ``cols`` carry the curvature of
    the marginal penalties and make ``H`` definite.

    The back-substitution zeroes the ``f`` rows of the residual, so the residual of the
    complement is that of the whole system: CG runs from ``x = 0`` until
    ``||H x - b||_2 <= tol ||b||_2``. Jacobi-preconditioned CG on ``H`` itself needs
    thousands of times more iterations where the sparsified plan's graph is nearly
    disconnected (10-D points, small reg: 50,000 against 12 at n = 2000). Writes ``xf``,
    ``xg``; returns ``(iterations, relres)`` with ``relres`` the final relative residual
    (of the recursively updated residual). ``chunks > 1``: the complement's products in
    that many parallel row blocks of about equal entry counts, once the kept entries
    number at least ``_CG_PARALLEL_MIN_NNZ`` (the iterates then differ from the serial
    ones in the order of the sums only).
    """
    n = rows.size
    m = cols.size
    d1 = (1.0 + shift) * rows
    d2 = (1.0 + shift) * cols
    # the complement's diagonal: d2_j - sum_i Ps_ij^2 / d1_i (positive for shift > 0; a
    # value lost to cancellation falls back to d2_j)
    dg = d2.copy()
    for i in range(n):
        for k in range(indptr[i], indptr[i + 1]):
            dg[indices[k]] -= data[k] * data[k] / d1[i]
    for j in range(m):
        if not dg[j] > 1e-12 * d2[j]:
            dg[j] = d2[j]
    # right-hand side of the complement: bg - Ps^T (bf / d1)
    r = np.empty(m, dtype=np.float64)
    for j in range(m):
        r[j] = bg[j]
    bn = 0.0
    for i in range(n):
        bn += bf[i] * bf[i]
        zi = bf[i] / d1[i]
        for k in range(indptr[i], indptr[i + 1]):
            r[indices[k]] -= data[k] * zi
    if j0 >= 0:
        r[j0] = 0.0
    for j in range(m):
        if j != j0:
            bn += bg[j] * bg[j]
    bn = np.sqrt(bn)
    for j in range(m):
        xg[j] = 0.0
    if bn == 0.0:
        for i in range(n):
            xf[i] = 0.0
        return 0, 0.0
    z = np.empty(m, dtype=np.float64)
    p = np.empty(m, dtype=np.float64)
    q = np.empty(m, dtype=np.float64)
    rz = 0.0
    rn = 0.0
    for j in range(m):
        z[j] = r[j] / dg[j]
        p[j] = z[j]
        rz += r[j] * z[j]
        rn += r[j] * r[j]
    relres = np.sqrt(rn) / bn
    it = 0
    nc = chunks if indptr[n] >= _CG_PARALLEL_MIN_NNZ else 1
    bounds = _entry_blocks(indptr, max(1, nc))
    T = np.empty((max(1, nc), m), dtype=np.float64)
    while it < maxiter and relres > tol:
        if nc > 1:
            _schur_matvec_blocks(indptr, indices, data, d1, d2, j0, p, q, bounds, T)
        else:
            schur_matvec(indptr, indices, data, d1, d2, j0, p, q)
        pq = 0.0
        for j in range(m):
            pq += p[j] * q[j]
        if not pq > 0.0:
            break
        alpha = rz / pq
        rn = 0.0
        for j in range(m):
            xg[j] += alpha * p[j]
            r[j] -= alpha * q[j]
            rn += r[j] * r[j]
        it += 1
        relres = np.sqrt(rn) / bn
        if relres <= tol:
            break
        rz_new = 0.0
        for j in range(m):
            z[j] = r[j] / dg[j]
            rz_new += r[j] * z[j]
        beta = rz_new / rz
        rz = rz_new
        for j in range(m):
            p[j] = z[j] + beta * p[j]
    if j0 >= 0:
        xg[j0] = 0.0
    # back-substitution: xf = (bf - Ps xg) / d1
    for i in range(n):
        s = bf[i]
        for k in range(indptr[i], indptr[i + 1]):
            s -= data[k] * xg[indices[k]]
        xf[i] = s / d1[i]
    return it, relres
