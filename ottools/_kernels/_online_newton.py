"""The Newton stage's passes on a point-cloud cost: the plan is never stored.

The dense Newton stage (``_newton``) keeps the plan ``P`` (n, m) between its passes; here
each pass recomputes the rows of ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)`` from
the clouds (``_online.cost_row_t``), in the same arithmetic as the dense trial plan, so
that a row computed twice at the same potentials has the same bits. A Newton step makes
two kinds of pass:

- :func:`trial` at the trial potentials: the marginals, the curvature part ``S`` of the
  dual increase (as ``_newton.trial_plan``; the plan at the current potentials is
  recomputed, a second exponential per entry), and, for the sparsification of the next
  step, the column maxima and a histogram of the entries by the leading bits of their
  float64 representations (counts and mass per block of rows: ``_newton``'s bins);
- :func:`kept_entries` at the accepted potentials: the entries at or above the
  threshold plus each row's and column's largest, in CSR, sized in advance from the
  histogram of each row block (one pass, no count pass).

Memory O((n + m) d + kept entries + blocks * m). The row blocks are those of the
histogram array (its first axis); each kernel has a ``_par`` twin running them in
parallel.
"""

import numpy as np
from numba import prange

from ._jit import FASTMATH_SAFE, jit
from ._lse import exp_into, row_max
from ._newton import _BIN_SHIFT, _phi_series, compact_row, hist_floor
from ._online import cost_row_t

_NBINS = 1 << (63 - _BIN_SHIFT)


@jit
def _plan_row(x, yt, i, sqx, sqy, metric, p, inv_scale, base, gb, inv_reg, c, z, out,
              work):
    """``out_j = exp(base + gb_j - C_ij * inv_reg)`` (row ``i`` of the plan, ``base =
    log a_i + f_i / reg``, ``gb_j = log b_j + g_j / reg``) with the costs in ``c``.
    Compiled without reassociation: every pass computes the same bits."""
    m = yt.shape[1]
    cost_row_t(x, yt, i, sqx, sqy, metric, p, inv_scale, c)
    for j in range(m):
        z[j] = base + gb[j] - c[j] * inv_reg
    exp_into(z, out, work)


@jit(fastmath=FASTMATH_SAFE)
def _curvature_row(pn, po, dfi, dgi):
    """``sum_j P_old_j (exp(t_j) - 1 - t_j)``, ``t_j = dfi + dgi_j``: the series near 0,
    ``P_new - P_old - P_old t`` elsewhere (both computed, one selected: vectorizes)."""
    si = 0.0
    for j in range(pn.size):
        t = dfi + dgi[j]
        q = po[j]
        near = q * _phi_series(t)
        far = pn[j] - q - q * t
        si += near if abs(t) < 0.05 else far
    return si


@jit
def _trial_rows(x, yt, sqx, sqy, metric, p, inv_scale, loga, gb_new, gb_old, inv_reg,
                f_new, f_old, df, dgi, old, rows, cols, cmax, cnt, mass, floor, B, r0, r1):
    """Rows ``r0:r1`` of :func:`trial` (``B``: (5, m) work rows); returns
    ``(S, total, npos)`` of these rows."""
    m = yt.shape[1]
    c, z, pn, po, work = B[0], B[1], B[2], B[3], B[4]
    bits = pn.view(np.int64)
    S = 0.0
    total = 0.0
    npos = 0
    for i in range(r0, r1):
        _plan_row(x, yt, i, sqx, sqy, metric, p, inv_scale, loga[i] + f_new[i] * inv_reg,
                  gb_new, inv_reg, c, z, pn, work)
        if old:
            base = loga[i] + f_old[i] * inv_reg
            for j in range(m):
                z[j] = base + gb_old[j] - c[j] * inv_reg
            exp_into(z, po, work)
            S += _curvature_row(pn, po, df[i] * inv_reg, dgi)
        s = 0.0
        for j in range(m):
            v = pn[j]
            s += v
            cols[j] += v
            cmax[j] = v if v > cmax[j] else cmax[j]
            if v >= floor and v > 0.0:  # (rarely true first: predicted)
                b = bits[j] >> _BIN_SHIFT
                cnt[b] += 1
                mass[b] += v
                total += v
                npos += 1
        rows[i] = s
    return S, total, npos


@jit
def _trial_setup(y, logb, inv_reg, f_new, g_new, f_old, g_old, nc):
    m = y.shape[0]
    yt = np.ascontiguousarray(y.T)
    gb_new = logb + g_new * inv_reg
    gb_old = logb + g_old * inv_reg
    df = f_new - f_old
    dgi = (g_new - g_old) * inv_reg
    return (yt, gb_new, gb_old, df, dgi, np.zeros((nc, m)), np.zeros((nc, m)),
            np.empty((nc, 5, m)), np.zeros((nc, 3)))


@jit
def _trial_reduce(rows, cols, cmax, C, CM, out):
    """Sums the blocks' results into ``cols``, ``cmax``; returns ``(S, total, npos)``."""
    S = 0.0
    total = 0.0
    npos = 0
    m = cols.size
    for j in range(m):
        cols[j] = 0.0
        cmax[j] = 0.0
    for c in range(C.shape[0]):
        S += out[c, 0]
        total += out[c, 1]
        npos += int(out[c, 2])
        for j in range(m):
            cols[j] += C[c, j]
            cmax[j] = CM[c, j] if CM[c, j] > cmax[j] else cmax[j]
    ok = np.isfinite(S)
    for i in range(rows.size):
        ok = ok and np.isfinite(rows[i])
    for j in range(m):
        ok = ok and np.isfinite(cols[j])
    return (S if ok else np.inf), total, npos


@jit
def trial(x, y, sqx, sqy, metric, p, inv_scale, loga, logb, inv_reg, f_new, g_new, f_old,
          g_old, old, rows, cols, cmax, cnt, mass, floor=0.0):
    """One pass over the plan at ``(f_new, g_new)``: writes its marginals ``rows``,
    ``cols``, the column maxima ``cmax`` and, per row block ``c``, the histogram
    ``cnt[c]``, ``mass[c]`` (``(blocks, 2**13)``; the blocks are ``cnt.shape[0]``) of its
    positive entries at or above ``floor`` (see ``_newton.mass_threshold``). With
    ``old``, also the curvature ``S = sum_ij P_old_ij (exp(t_ij) - 1 - t_ij)`` of the
    step from ``(f_old, g_old)`` (``t_ij = (df_i + dg_j) / reg``, the steps taken), so
    that the exact dual increase is ``<df, a - P_old 1> + <dg, b - P_old^T 1> - reg S``
    (see ``_newton.trial_plan``).
    Returns ``(S, total, npos)``: ``S`` is ``inf`` when it or a marginal is not finite;
    ``total`` and ``npos`` the sum and count of the entries in the histogram. Serial;
    :func:`trial_par` runs the blocks in parallel.
    """
    n = x.shape[0]
    nc = cnt.shape[0]
    yt, gb_new, gb_old, df, dgi, C, CM, B, out = _trial_setup(y, logb, inv_reg, f_new,
                                                              g_new, f_old, g_old, nc)
    lo = hist_floor(floor)
    for c in range(nc):
        cnt[c] = 0
        mass[c] = 0.0
        s, t, k = _trial_rows(x, yt, sqx, sqy, metric, p, inv_scale, loga, gb_new, gb_old,
                              inv_reg, f_new, f_old, df, dgi, old, rows, C[c], CM[c],
                              cnt[c], mass[c], lo, B[c], c * n // nc, (c + 1) * n // nc)
        out[c, 0] = s
        out[c, 1] = t
        out[c, 2] = k
    return _trial_reduce(rows, cols, cmax, C, CM, out)


@jit(parallel=True)
def trial_par(x, y, sqx, sqy, metric, p, inv_scale, loga, logb, inv_reg, f_new, g_new,
              f_old, g_old, old, rows, cols, cmax, cnt, mass, floor=0.0):
    """:func:`trial` with its row blocks in parallel."""
    n = x.shape[0]
    nc = cnt.shape[0]
    yt, gb_new, gb_old, df, dgi, C, CM, B, out = _trial_setup(y, logb, inv_reg, f_new,
                                                              g_new, f_old, g_old, nc)
    lo = hist_floor(floor)
    for c in prange(nc):
        cnt[c] = 0
        mass[c] = 0.0
        s, t, k = _trial_rows(x, yt, sqx, sqy, metric, p, inv_scale, loga, gb_new, gb_old,
                              inv_reg, f_new, f_old, df, dgi, old, rows, C[c], CM[c],
                              cnt[c], mass[c], lo, B[c], c * n // nc, (c + 1) * n // nc)
        out[c, 0] = s
        out[c, 1] = t
        out[c, 2] = k
    return _trial_reduce(rows, cols, cmax, C, CM, out)


@jit
def threshold(cnt, mass, total, npos, k_min, mass_tol, cap):
    """``_newton.mass_threshold``'s rule on the block histograms ``cnt``, ``mass``: the
    largest bin boundary ``rho`` with at least ``k_min`` entries at or above it and at
    most ``mass_tol * total`` mass below it, but with at most ``cap`` entries at or above
    it (the memory bound of the online stage; at least the top bin). Returns
    ``(rho, count)``."""
    if npos == 0:
        return 0.0, 0
    nc = cnt.shape[0]
    k0 = min(k_min, npos)
    kept = 0.0
    count = 0
    out = np.zeros(1, dtype=np.int64)
    for b in range(_NBINS - 1, 0, -1):
        cb = 0
        mb = 0.0
        for c in range(nc):
            cb += cnt[c, b]
            mb += mass[c, b]
        if cb == 0:
            continue
        if count > 0 and count + cb > cap:
            break  # the previous boundary (out) stands
        count += cb
        kept += mb
        out[0] = b << _BIN_SHIFT
        if count >= k0 and total - kept <= mass_tol * total:
            break
    return out.view(np.float64)[0], count


@jit
def _kept_rows(x, yt, sqx, sqy, metric, p, inv_scale, loga, gb, inv_reg, f, rho, cmax,
               counts, indices, data, k0, k1, B, r0, r1):
    """The kept entries of rows ``r0:r1`` written at ``k0:k1`` (``B``: (4, m) work rows);
    returns the number found (more than ``k1 - k0``: the block overflowed and only the
    first fit)."""
    m = yt.shape[1]
    c, z, pn, work = B[0], B[1], B[2], B[3]
    bi = np.empty(m + 1, dtype=np.int64)
    bd = np.empty(m + 1, dtype=np.float64)
    k = k0
    for i in range(r0, r1):
        _plan_row(x, yt, i, sqx, sqy, metric, p, inv_scale, loga[i] + f[i] * inv_reg, gb,
                  inv_reg, c, z, pn, work)
        kr = compact_row(pn, rho, row_max(pn), cmax, bi, bd)
        for t in range(min(kr, max(0, k1 - k))):
            indices[k + t] = bi[t]
            data[k + t] = bd[t]
        counts[i] = kr
        k += kr
    return k - k0


@jit
def _kept_setup(n, y, logb, inv_reg, g, rho, cnt):
    """Work arrays of :func:`kept_entries`: each row block's room (its entries at or
    above ``rho``, its rows' and all the columns' maxima)."""
    nc, m = cnt.shape[0], y.shape[0]
    yt = np.ascontiguousarray(y.T)
    gb = logb + g * inv_reg
    lo = 0
    if rho > 0.0:
        lo = np.array([rho]).view(np.int64)[0] >> _BIN_SHIFT
    room = np.zeros(nc + 1, dtype=np.int64)
    for c in range(nc):
        rows_c = (c + 1) * n // nc - c * n // nc
        room[c + 1] = room[c] + cnt[c, lo:].sum() + rows_c + m
    return (yt, gb, room, np.empty(room[nc], dtype=np.int64),
            np.empty(room[nc], dtype=np.float64), np.zeros(n, dtype=np.int64),
            np.zeros(nc, dtype=np.int64), np.empty((nc, 4, m)))


@jit
def _kept_finish(room, idx, val, counts, found):
    nc = found.size
    n = counts.size
    ok = True
    for c in range(nc):
        ok = ok and found[c] <= room[c + 1] - room[c]
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        indptr[i + 1] = indptr[i] + counts[i]
    nnz = indptr[n] if ok else 0
    indices = np.empty(nnz, dtype=np.int64)
    data = np.empty(nnz, dtype=np.float64)
    if ok:
        k = 0
        for c in range(nc):
            for t in range(room[c], room[c] + found[c]):
                indices[k] = idx[t]
                data[k] = val[t]
                k += 1
    return ok, indptr, indices, data


@jit
def kept_entries(x, y, sqx, sqy, metric, p, inv_scale, loga, logb, inv_reg, f, g, rho,
                 cmax, cnt):
    """CSR ``(indptr, indices, data)`` of the plan's entries at ``(f, g)`` at or above
    ``rho`` plus each row's and each column's largest (``cmax`` from :func:`trial` at
    the same potentials), as ``_newton.sparsify_csr``, in one pass. Each row block (those
    of ``cnt``, from :func:`trial` at the same potentials) is given room for its entries
    at or above ``rho``, its rows' and all the columns' maxima; returns ``ok`` False
    (arrays empty) if a block found more (a plan other than the histogram's). Serial;
    :func:`kept_entries_par` runs the blocks in parallel."""
    n = x.shape[0]
    nc = cnt.shape[0]
    yt, gb, room, idx, val, counts, found, B = _kept_setup(n, y, logb, inv_reg, g, rho, cnt)
    for c in range(nc):
        found[c] = _kept_rows(x, yt, sqx, sqy, metric, p, inv_scale, loga, gb, inv_reg, f,
                              rho, cmax, counts, idx, val, room[c], room[c + 1], B[c],
                              c * n // nc, (c + 1) * n // nc)
    return _kept_finish(room, idx, val, counts, found)


@jit(parallel=True)
def kept_entries_par(x, y, sqx, sqy, metric, p, inv_scale, loga, logb, inv_reg, f, g, rho,
                     cmax, cnt):
    """:func:`kept_entries` with its row blocks in parallel."""
    n = x.shape[0]
    nc = cnt.shape[0]
    yt, gb, room, idx, val, counts, found, B = _kept_setup(n, y, logb, inv_reg, g, rho, cnt)
    for c in prange(nc):
        found[c] = _kept_rows(x, yt, sqx, sqy, metric, p, inv_scale, loga, gb, inv_reg, f,
                              rho, cmax, counts, idx, val, room[c], room[c + 1], B[c],
                              c * n // nc, (c + 1) * n // nc)
    return _kept_finish(room, idx, val, counts, found)
