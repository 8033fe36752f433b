"""The Newton stage's passes on a point-cloud cost: the plan is never stored.

The dense Newton stage (``_newton``) keeps the plan ``P`` (n, m) between its passes; here
each pass recomputes the rows of ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)`` from
the clouds (``_online.cost_row_t``) by one function (:func:`_plan_row`), so that a row
computed twice at the same potentials has the same bits (the dense trial plan's
exponents are reassociated: the same entries to rounding). A Newton step makes two kinds
of pass:

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
from ._newton import (BIN_SHIFT, compact_row, hist_block, hist_floor, phi_series,
                      threshold_from_hist)
from ._online import cost_row_t



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
        near = q * phi_series(t)
        far = pn[j] - q - q * t
        si += near if abs(t) < 0.05 else far
    return si


@jit
def _trial_block(c, work, cloud, loga, inv_reg, f_new, f_old, old, rows, cnt, mass, floor):
    """Row block ``c`` of :func:`trial`: its rows' marginals, its column sums and maxima
    (``C[c]``, ``CM[c]`` of ``work``), its histogram (``cnt[c]``, ``mass[c]``) and
    ``out[c] = (S, total, npos)`` (``work`` from :func:`_trial_setup`)."""
    x, yt, sqx, sqy, metric, p, inv_scale = cloud
    gb_new, gb_old, df, dgi, C, CM, B, out = work
    n, m = x.shape[0], yt.shape[1]
    nc = cnt.shape[0]
    cols, cmax, hc, hm = C[c], CM[c], cnt[c], mass[c]
    hc[:] = 0
    hm[:] = 0.0
    cr, z, pn, po, tmp = B[c, 0], B[c, 1], B[c, 2], B[c, 3], B[c, 4]
    bits = pn.view(np.int64)
    S = 0.0
    total = 0.0
    npos = 0
    for i in range(c * n // nc, (c + 1) * n // nc):
        _plan_row(x, yt, i, sqx, sqy, metric, p, inv_scale, loga[i] + f_new[i] * inv_reg,
                  gb_new, inv_reg, cr, z, pn, tmp)
        if old:
            base = loga[i] + f_old[i] * inv_reg
            for j in range(m):
                z[j] = base + gb_old[j] - cr[j] * inv_reg
            exp_into(z, po, tmp)
            S += _curvature_row(pn, po, df[i] * inv_reg, dgi)
        s = 0.0
        for j in range(m):
            v = pn[j]
            s += v
            cols[j] += v
            cmax[j] = v if v > cmax[j] else cmax[j]
        rows[i] = s
        t, k = hist_block(pn, bits, 0, m, hc, hm, floor)
        total += t
        npos += k
    out[c, 0] = S
    out[c, 1] = total
    out[c, 2] = npos


@jit
def _trial_setup(y, logb, inv_reg, f_new, g_new, f_old, g_old, nc):
    """``(yt, work)``: the transposed cloud and the work of :func:`_trial_block`."""
    m = y.shape[0]
    yt = np.ascontiguousarray(y.T)
    gb_new = logb + g_new * inv_reg
    gb_old = logb + g_old * inv_reg
    df = f_new - f_old
    dgi = (g_new - g_old) * inv_reg
    return yt, (gb_new, gb_old, df, dgi, np.zeros((nc, m)), np.zeros((nc, m)),
                np.empty((nc, 5, m)), np.zeros((nc, 3)))


@jit
def _trial_reduce(rows, cols, cmax, work):
    """Sums the blocks' results into ``cols``, ``cmax``; returns ``(S, total, npos)``."""
    C, CM, out = work[4], work[5], work[7]
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
    yt, work = _trial_setup(y, logb, inv_reg, f_new, g_new, f_old, g_old, cnt.shape[0])
    cloud = (x, yt, sqx, sqy, metric, p, inv_scale)
    lo = hist_floor(floor)
    for c in range(cnt.shape[0]):
        _trial_block(c, work, cloud, loga, inv_reg, f_new, f_old, old, rows, cnt, mass, lo)
    return _trial_reduce(rows, cols, cmax, work)


@jit(parallel=True)
def trial_par(x, y, sqx, sqy, metric, p, inv_scale, loga, logb, inv_reg, f_new, g_new,
              f_old, g_old, old, rows, cols, cmax, cnt, mass, floor=0.0):
    """:func:`trial` with its row blocks in parallel."""
    yt, work = _trial_setup(y, logb, inv_reg, f_new, g_new, f_old, g_old, cnt.shape[0])
    cloud = (x, yt, sqx, sqy, metric, p, inv_scale)
    lo = hist_floor(floor)
    for c in prange(cnt.shape[0]):
        _trial_block(c, work, cloud, loga, inv_reg, f_new, f_old, old, rows, cnt, mass, lo)
    return _trial_reduce(rows, cols, cmax, work)


@jit
def threshold(cnt, mass, total, npos, k_min, mass_tol, cap):
    """``_newton.mass_threshold``'s rule (``_newton.threshold_from_hist``) on the block
    histograms ``cnt``, ``mass`` summed, with at most ``cap`` entries at or above the
    threshold (the memory bound of the online stage; at least the top bin's). Returns
    ``(rho, count)``."""
    return threshold_from_hist(cnt.sum(axis=0), mass.sum(axis=0), total, npos, k_min,
                               mass_tol, cap)


@jit
def _kept_block(c, work, cloud, loga, inv_reg, f, rho, peak, ccut):
    """The kept entries of row block ``c`` of :func:`kept_entries`, written in its room
    ``idx[room[c]:room[c + 1]]`` (``work`` from :func:`_kept_setup`); ``found[c]``: the
    number found (more than the room: the block overflowed and only the first fit)."""
    x, yt, sqx, sqy, metric, p, inv_scale = cloud
    gb, room, idx, val, counts, found, B, _ = work
    n, m = x.shape[0], yt.shape[1]
    nc = found.size
    cr, z, pn, tmp = B[c, 0], B[c, 1], B[c, 2], B[c, 3]
    bi = np.empty(m + 1, dtype=np.int64)
    bd = np.empty(m + 1, dtype=np.float64)
    k, k1 = room[c], room[c + 1]
    for i in range(c * n // nc, (c + 1) * n // nc):
        _plan_row(x, yt, i, sqx, sqy, metric, p, inv_scale, loga[i] + f[i] * inv_reg, gb,
                  inv_reg, cr, z, pn, tmp)
        kr = compact_row(pn, rho, peak * row_max(pn), ccut, bi, bd)
        for t in range(min(kr, max(0, k1 - k))):
            idx[k + t] = bi[t]
            val[k + t] = bd[t]
        counts[i] = kr
        k += kr
    found[c] = k - room[c]


@jit
def _kept_setup(n, y, logb, inv_reg, g, rho, cnt, extra, slack):
    """``(yt, work)``: the transposed cloud and the work of :func:`_kept_block`, each row
    block's room: its base (its entries at or above ``rho``, its rows' and all the
    columns' maxima) plus ``extra[c]`` or, with ``slack``, a quarter of the base and two
    entries per row if more (for the entries above the rows' and columns' cuts)."""
    nc, m = cnt.shape[0], y.shape[0]
    yt = np.ascontiguousarray(y.T)
    gb = logb + g * inv_reg
    lo = 0
    if rho > 0.0:
        lo = np.array([rho]).view(np.int64)[0] >> BIN_SHIFT
    room = np.zeros(nc + 1, dtype=np.int64)
    base = np.empty(nc, dtype=np.int64)
    for c in range(nc):
        rows_c = (c + 1) * n // nc - c * n // nc
        base[c] = cnt[c, lo:].sum() + rows_c + m
        more = base[c] // 4 + 2 * rows_c if slack else 0
        room[c + 1] = room[c] + base[c] + max(more, extra[c])
    return yt, (gb, room, np.empty(room[nc], dtype=np.int64),
                np.empty(room[nc], dtype=np.float64), np.zeros(n, dtype=np.int64),
                np.zeros(nc, dtype=np.int64), np.empty((nc, 4, m)), base)


@jit
def _kept_finish(work):
    """The CSR arrays from the blocks' rooms, ``ok`` False if one overflowed, and the
    number of entries each block found beyond its base (at least 0)."""
    gb, room, idx, val, counts, found, B, base = work
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
    return ok, indptr, indices, data, np.maximum(found - base, 0)


@jit
def kept_entries(x, y, sqx, sqy, metric, p, inv_scale, loga, logb, inv_reg, f, g, rho,
                 peak, ccut, cnt, extra):
    """CSR ``(indptr, indices, data)`` of the plan's entries at ``(f, g)`` at or above
    ``rho`` plus each row's and each column's entries at or above its cut (``peak``
    times the row's largest entry; ``ccut``: ``peak`` times the column maxima of
    :func:`trial` at the same potentials), as ``_newton.sparsify_csr``, in one pass.
    Each row block (those of ``cnt``, from :func:`trial` at the same potentials) is
    given room for its entries at or above ``rho``, its rows' and all the columns'
    maxima, plus ``extra`` or a slack if ``peak < 1`` (see :func:`_kept_setup`);
    returns ``ok`` False (arrays empty) if a block found more, and each block's count
    beyond that base (``over``: as ``extra``, the room the same pass takes).
    Serial; :func:`kept_entries_par` runs the blocks in parallel."""
    yt, work = _kept_setup(x.shape[0], y, logb, inv_reg, g, rho, cnt, extra, peak < 1.0)
    cloud = (x, yt, sqx, sqy, metric, p, inv_scale)
    for c in range(cnt.shape[0]):
        _kept_block(c, work, cloud, loga, inv_reg, f, rho, peak, ccut)
    return _kept_finish(work)


@jit(parallel=True)
def kept_entries_par(x, y, sqx, sqy, metric, p, inv_scale, loga, logb, inv_reg, f, g, rho,
                     peak, ccut, cnt, extra):
    """:func:`kept_entries` with its row blocks in parallel."""
    yt, work = _kept_setup(x.shape[0], y, logb, inv_reg, g, rho, cnt, extra, peak < 1.0)
    cloud = (x, yt, sqx, sqy, metric, p, inv_scale)
    for c in prange(cnt.shape[0]):
        _kept_block(c, work, cloud, loga, inv_reg, f, rho, peak, ccut)
    return _kept_finish(work)
