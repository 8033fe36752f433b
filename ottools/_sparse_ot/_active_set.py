r"""Exact active-set solves of the KKT system for ``max_nz < n``: the superlinear finish.

Write a column's entries as ``e_ij = f_i + h_j - c_ij`` (``h = g`` for the dual,
``h = -tau`` for the semi-dual: both formulations share these conditions). At a
maximum, column ``j`` of the relaxed plan has

- a strict support ``P_j``, entries ``e_ij / reg``;
- possibly a *tie group* ``G_j`` at the column's k-th largest entry: its members share
  ``r_j = k - |P_j|`` slots of mass ``v_j = (beta_j + h_j) / reg`` (``beta_j`` the
  common value of ``f_i - c_ij``), member ``i`` receiving ``w_ij`` in ``[0, v_j]`` with
  ``sum_i w_ij = r_j v_j``. This is the mix of the k-subsets' plans that the kink
  certificate of :mod:`._kinks` looks for; ``w / v`` lies in the hypersimplex, the
  convex hull of the r-subsets.

For a fixed structure ``(P, G, r)`` the row sums ``= a``, column sums ``= b``, ties and
slot sums are *linear* in ``(f, h, beta, w)``: one sparse solve gives the maximum if the
structure is right. The structure is guessed from an iterate (entries within ``delta`` of
the k-th tie), then corrected in the manner of a primal-dual active-set method:
``q_i = (e_i - beta_j - h_j) / reg + w_i`` (``w_i = v_j`` on ``P_j``, ``0`` outside)
puts ``i`` in ``P_j`` above ``v_j``, in ``G_j`` on ``[0, v_j]``, outside below 0; an
untied column whose top k changed gets a tie group of the rows that swapped. When a
solve leaves the structure unchanged and meets the marginals, the mixed plan is feasible
for the relaxation with the solve's potentials: the point is certified maximal.

Full steps of this method converge in a few solves from points near the maximum
(relative gap below about 1e-5 on the benchmark grid at n <= 400, less at n = 1000) and
diverge from far ones; the driver therefore tries it when the quasi-Newton progress
suggests a small gap, and an attempt is given up when its structure changes grow
beyond a few columns (changes on the smooth boundary, rows entering or leaving the
support, come and go for several solves near the maximum), or when one correction
changes more than a quarter of the columns. Such a cascade ties nearly every column in
the next system, whose sparse LU then fills in: at n = 1000 one such solve took 1.2 s
against 4 ms for the others, and no attempt on the benchmark grid certified after one
(certified attempts began with at most 9 % of the columns changed). The systems are
regularised by a proximal term ``1e-10 / reg`` on the potentials (the maximiser is not
unique where the support graph splits into balanced parts) and ``-1e-10 reg`` on ``w``
(tie equations may repeat): both keep the sparse LU well posed and move the solution by
far less than the tolerances.
"""

import numpy as np

from .._kernels import lazy

_k = lazy("_sparse")

__all__ = []

_POOL = 6        # entries looked at beyond the k-th, per column
_MU = 1e-10      # proximal regularisation, relative to 1 / reg (potentials) and reg (w)
_TIE_TOL = 1e-9  # relative slack of the multiplier bounds in the corrections
MAX_SOLVES = 16
_CASCADE = 4     # an attempt stops at a correction changing over 1/_CASCADE of the columns


class Structure:
    """Supports and tie groups of all columns, as flat arrays.

    ``pj, pi``: column and row of each strict-support entry. ``tj, tr``: column and slot
    count of each tie group. ``gt, gi``: tie group and row of each member.
    """

    __slots__ = ("pj", "pi", "tj", "tr", "gt", "gi")

    def __init__(self, pj, pi, tj, tr, gt, gi):
        self.pj, self.pi, self.tj, self.tr, self.gt, self.gi = pj, pi, tj, tr, gt, gi


def _tops(obj, f, h, kk):
    """Top ``kk`` entries ``f_i + h_j - c_ij`` of every column, decreasing: (values, rows)."""
    V = np.empty((obj.mc, kk))
    R = np.empty((obj.mc, kk), dtype=np.int64)
    _k.column_tops(np.ascontiguousarray(f), np.ascontiguousarray(h), obj.sp.cost_t, kk, V,
                   R, np.empty(obj.nr), np.empty(obj.nr, dtype=np.int64))
    return V, R


def _offsets(obj, x):
    """``(f, h)`` at ``x``: the semi-dual's ``h`` is minus its column thresholds."""
    f = np.ascontiguousarray(x[:obj.nr])
    if obj.semi:
        return f, obj.potentials(x)[1]
    return f, np.ascontiguousarray(x[obj.nr:])


def detect(obj, x, delta):
    """The structure at ``x``, ties within ``delta`` (absolute) of each column's k-th
    entry (only where that entry carries mass)."""
    k = obj.k
    kk = min(obj.nr, k + _POOL)
    f, h = _offsets(obj, x)
    E, R = _tops(obj, f, h, kk)
    kth = E[:, k - 1]
    near = np.abs(E - kth[:, None]) <= delta
    tied = (kth > 0) & near[:, k] if kk > k else np.zeros(obj.mc, dtype=bool)
    lo = np.argmax(near, axis=1)  # near ranks are contiguous around k - 1
    hi = kk - 1 - np.argmax(near[:, ::-1], axis=1)
    ranks = np.arange(kk)
    inP = np.where(tied[:, None], ranks[None, :] < lo[:, None],
                   (ranks[None, :] < k) & (E > 0))
    pj, pr = np.nonzero(inP)
    tj = np.flatnonzero(tied)
    inG = (ranks[None, :] >= lo[tj, None]) & (ranks[None, :] <= hi[tj, None])
    gt, gr = np.nonzero(inG)
    return Structure(pj, R[pj, pr], tj, k - lo[tj], gt, R[tj[gt], gr]), (f, h)


def solve(obj, st, f0, h0):
    """Solve the KKT system of structure ``st`` (proximal about ``(f0, h0)``):
    ``(f, h, beta, w)``, or None if the factorisation fails."""
    import scipy.sparse
    from scipy.sparse.linalg import splu

    sp = obj.sp
    nr, mc, reg = obj.nr, obj.mc, sp.reg
    ct = sp.cost_t
    nt, nw = st.tj.size, st.gi.size
    iH, iB, iW = nr, nr + mc, nr + mc + nt  # unknowns: f, h, beta, w
    eT, eS = nr + mc, nr + mc + nw          # equations: rows, columns, ties, slot sums
    N = nr + mc + nt + nw
    inv = 1.0 / reg
    mu, nu = _MU * inv, _MU * reg
    pj, pi = st.pj, st.pi
    cP = ct[pj, pi] * inv
    tj, tr = st.tj, st.tr.astype(np.float64)
    gt, gi = st.gt, st.gi
    q = np.arange(nw)
    tt = np.arange(nt)
    I = np.concatenate([pi, pi, nr + pj, nr + pj,            # P entries in rows and columns
                        nr + tj, nr + tj, eS + tt, eS + tt,  # slots in columns, slot sums
                        gi, eT + q, eT + q, eT + q, eS + gt,  # members
                        np.arange(nr + mc), eS + tt])         # proximal terms
    J = np.concatenate([pi, iH + pj, pi, iH + pj,
                        iB + tt, iH + tj, iB + tt, iH + tj,
                        iW + q, gi, iB + gt, iW + q, iW + q,
                        np.arange(nr + mc), iB + tt])
    ones = np.ones(pj.size)
    V = np.concatenate([ones * inv, ones * inv, ones * inv, ones * inv,
                        tr * inv, tr * inv, -tr * inv, -tr * inv,
                        np.ones(nw), np.ones(nw), -np.ones(nw), np.full(nw, -nu),
                        np.ones(nw),
                        np.full(nr + mc, mu), np.full(nt, -mu)])
    rhs = np.zeros(N)
    rhs[:nr] = sp.ac + mu * f0 + _sums(pi, cP, nr)
    rhs[nr:nr + mc] = sp.bc + mu * h0 + _sums(pj, cP, mc)
    rhs[eT:eT + nw] = ct[tj[gt], gi]
    if nt:
        beta0 = _sums(gt, f0[gi] - ct[tj[gt], gi], nt)
        beta0 /= np.bincount(gt, minlength=nt)
        rhs[eS:] = -mu * beta0
    A = scipy.sparse.csc_array((V, (I, J)), shape=(N, N))
    try:
        lu = splu(A)
        z = lu.solve(rhs)
        z += lu.solve(rhs - A @ z)  # one step of iterative refinement
    except RuntimeError:
        return None
    if not np.all(np.isfinite(z)):
        return None
    return z[:nr], z[iH:iB], z[iB:iW], z[iW:]


def _sums(idx, w, n):
    """``bincount`` with weights, float64 also when ``idx`` is empty."""
    return np.bincount(idx, weights=w, minlength=n).astype(np.float64, copy=False)


def residual(obj, st, sol):
    """Marginal error (relative to the mass) of the mixed plan of a solve."""
    f, h, beta, w = sol
    sp = obj.sp
    mass = (f[st.pi] + h[st.pj] - sp.cost_t[st.pj, st.pi]) / sp.reg
    rows = _sums(st.pi, mass, obj.nr) + _sums(st.gi, w, obj.nr)
    cols = _sums(st.pj, mass, obj.mc) + _sums(st.tj[st.gt], w, obj.mc)
    return float(np.abs(rows - sp.ac).sum() + np.abs(cols - sp.bc).sum()) / sp.mass


def _padded(col, vals, n, fill):
    """Values grouped by ``col`` into an (n, width) array padded with ``fill``, in their
    order within each group."""
    order = np.argsort(col, kind="stable")
    c = col[order]
    counts = np.bincount(c, minlength=n)
    width = max(1, int(counts.max()) if counts.size else 1)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full((n, width), fill, dtype=np.asarray(vals).dtype)
    out[c, np.arange(c.size) - start[c]] = vals[order]
    return out


def _clean(obj, st, sol, E, R, slack):
    """Columns whose structure the corrections of :func:`correct` leave as it is
    (vectorised: the corrections then visit the others only)."""
    f, h, beta, w = sol
    reg, k, mc = obj.sp.reg, obj.k, obj.mc
    ct = obj.sp.cost_t
    cols = np.arange(mc)[:, None]
    P = _padded(st.pj, st.pi, mc, -1)
    inP = P >= 0
    eP = np.where(inP, f[P] + h[:, None] - ct[cols, np.maximum(P, 0)], np.inf)
    topk = R[:, :k]
    ok = np.all(~inP | (P[:, :, None] == topk[:, None, :]).any(-1), axis=1)
    strong = E[:, :k] > slack
    ok &= np.all(~strong | (topk[:, :, None] == P[:, None, :]).any(-1), axis=1)
    ok &= np.all(eP >= -slack, axis=1)
    clean = ok
    if st.tj.size:
        tj = st.tj
        nt = tj.size
        bh = beta + h[tj]
        v = bh / reg
        ts = _TIE_TOL * np.abs(v)
        G = _padded(st.gt, st.gi, nt, -1)
        W = _padded(st.gt, w, nt, 0.0)
        inG = G >= 0
        eG = f[np.maximum(G, 0)] + h[tj, None] - ct[tj[:, None], np.maximum(G, 0)]
        qG = (eG - bh[:, None]) / reg + W
        okt = (v > 0) & np.all(~inG | ((qG >= -ts[:, None]) & (qG <= (v + ts)[:, None])),
                               axis=1)
        Pt, inPt = P[tj], inP[tj]
        okt &= np.all(~inPt | ((eP[tj] - bh[:, None]) / reg > ts[:, None]), axis=1)
        pool = R[tj]
        member = ((pool[:, :, None] == Pt[:, None, :]).any(-1)
                  | (pool[:, :, None] == G[:, None, :]).any(-1))
        okt &= np.all(member | ((E[tj] - bh[:, None]) / reg < -ts[:, None]), axis=1)
        clean = ok.copy()
        clean[tj] = okt
    return clean


def correct(obj, st, sol):
    """The corrected structure after a solve and the number of columns it changes.

    Columns that :func:`_clean` passes keep their entries as they are (vectorised);
    only the others are visited in Python. The entries come out in column order, as
    :func:`detect` writes them, so that a structure and its system do not depend on
    which columns were visited."""
    f, h, beta, w = sol
    k, reg = obj.k, obj.sp.reg
    ct = obj.sp.cost_t
    kk = min(obj.nr, k + _POOL)
    E, R = _tops(obj, f, h, kk)
    mc = obj.mc
    # entries within ``slack`` of zero mass may be in or out (the smooth boundary)
    slack = _TIE_TOL * reg * float(obj.sp.bc.max())
    strong = E[:, :k] > slack
    clean = _clean(obj, st, sol, E, R, slack)
    tie_of = np.full(mc, -1)
    tie_of[st.tj] = np.arange(st.tj.size)
    # the old supports and tie groups of the columns to visit
    visit = np.flatnonzero(~clean)
    P_old = {j: [] for j in visit.tolist()}
    for q in np.flatnonzero(~clean[st.pj]).tolist():
        P_old[int(st.pj[q])].append(int(st.pi[q]))
    G_old, W_old = {}, {}
    for q in np.flatnonzero(~clean[st.tj[st.gt]]).tolist():
        t = int(st.gt[q])
        G_old.setdefault(t, []).append(int(st.gi[q]))
        W_old.setdefault(t, []).append(float(w[q]))
    pj, pi, tj, tr, gt, gi = [], [], [], [], [], []  # entries of the visited columns
    changes = 0
    for j in visit.tolist():
        t = int(tie_of[j])
        Pj = P_old[j]
        if t < 0:
            top = R[j, :k][E[j, :k] > 0].tolist()
            topk = set(R[j, :k].tolist())
            if (set(R[j, :k][strong[j]].tolist()) <= set(Pj) <= topk
                    and all(f[i] + h[j] - ct[j, i] >= -slack for i in Pj)):
                new_P, new_G, r = Pj, None, 0
            else:
                keep = [i for i in Pj if i in top]
                moved = sorted(set(Pj).symmetric_difference(top))
                still = [i for i in moved
                         if f[i] + h[j] - ct[j, i] > 0]  # rows that keep mass
                r = k - len(keep)
                if len(still) <= r:
                    new_P, new_G = keep + still, None
                    r = 0
                else:
                    new_P, new_G = keep, still
                changes += 1
        else:
            bh = beta[t] + h[j]
            v = bh / reg
            inP = set(Pj)
            Gt = G_old.get(t, [])
            wj = dict(zip(Gt, W_old.get(t, [])))
            cand = set(R[j].tolist()) | inP | set(Gt)
            if v <= 0:  # the slots carry no mass: no kink, the positive entries stay
                new_P = sorted(i for i in cand if f[i] + h[j] - ct[j, i] > 0)
                new_P = sorted(new_P, key=lambda i: ct[j, i] - f[i])[:k]
                new_G, r = None, 0
                changes += 1
            else:
                qv = {i: (f[i] + h[j] - ct[j, i] - bh) / reg
                      + (v if i in inP else wj.get(i, 0.0)) for i in cand}
                tslack = _TIE_TOL * v
                up = sorted((i for i in cand if qv[i] > v + tslack), key=lambda i: -qv[i])
                mid = [i for i in cand if -tslack <= qv[i] <= v + tslack]
                if len(up) >= k:
                    mid = up[k - 1:] + mid
                    up = up[:k - 1]
                r = k - len(up)
                if len(mid) <= r:
                    new_P, new_G, r = up + mid, None, 0
                else:
                    new_P, new_G = up, mid
                if sorted(new_P) != sorted(Pj) or new_G is None or \
                        sorted(new_G) != sorted(Gt):
                    changes += 1
        pj += [j] * len(new_P)
        pi += list(new_P)
        if new_G is not None:
            gt += [len(tj)] * len(new_G)
            gi += sorted(new_G)
            tj.append(j)
            tr.append(r)
    return _merge(st, clean, pj, pi, tj, tr, gt, gi), changes


def _merge(st, clean, pj, pi, tj, tr, gt, gi):
    """The kept entries of the clean columns of ``st`` and the new entries of the
    visited ones, in column order (stable: a column's entries keep their order)."""
    arr = np.asarray
    keep = clean[st.pj]
    pj = np.concatenate([st.pj[keep], arr(pj, dtype=np.int64)])
    pi = np.concatenate([st.pi[keep], arr(pi, dtype=np.int64)])
    order = np.argsort(pj, kind="stable")
    pj, pi = pj[order], pi[order]
    kept_t = np.flatnonzero(clean[st.tj])  # old group ids kept
    tj = np.concatenate([st.tj[kept_t], arr(tj, dtype=np.int64)])
    tr = np.concatenate([st.tr[kept_t], arr(tr, dtype=np.int64)])
    order_t = np.argsort(tj, kind="stable")
    new_id = np.empty(tj.size, dtype=np.int64)
    new_id[order_t] = np.arange(tj.size)
    old_to_new = np.full(st.tj.size, -1, dtype=np.int64)
    old_to_new[kept_t] = new_id[:kept_t.size]
    keep_m = clean[st.tj[st.gt]]
    gt = np.concatenate([old_to_new[st.gt[keep_m]],
                         new_id[kept_t.size + arr(gt, dtype=np.int64)]])
    gi = np.concatenate([st.gi[keep_m], arr(gi, dtype=np.int64)])
    order_m = np.argsort(gt, kind="stable")
    return Structure(pj, pi, tj[order_t], tr[order_t], gt[order_m], gi[order_m])


def finish(obj, x, v, tol, delta):
    """One attempt from ``x`` (value ``v``): ``(x_best, v_best, g_best, certified,
    stationarity, solves)``. ``x_best`` is None when no solve increased the objective;
    ``certified`` when the last solve's structure held and its mixed plan meets the
    marginals to ``tol`` (``x_best`` is then that solve's point)."""
    st, (f, h) = detect(obj, x, delta)
    best = None
    last_changes = None
    small = max(8, obj.mc // 100)  # changes that may come and go near the maximum
    cascade = max(small, obj.mc // _CASCADE)
    solves = 0
    stationarity = np.nan
    for _ in range(MAX_SOLVES):
        sol = solve(obj, st, f, h)
        solves += 1
        if sol is None:
            break
        f, h = sol[0], sol[1]
        xn = f.copy() if obj.semi else np.concatenate([f, h])
        vn, gn = obj.value_grad(xn)
        if not obj.finite(vn, gn):
            break
        if vn > (v if best is None else best[1]):
            best = (xn, vn, gn)
        st_new, changes = correct(obj, st, sol)
        if changes == 0:
            stationarity = residual(obj, st, sol)
            floor = obj.value_floor(v, xn)
            if stationarity <= tol and vn >= v - floor:
                return xn, vn, gn, True, stationarity, solves
            break
        if last_changes is not None and changes > max(last_changes, small):
            break  # the corrections grow: too far from the maximum
        if changes > cascade:
            break  # a cascade: the next system would tie most columns (costly fill-in)
        last_changes = changes if last_changes is None else min(changes, last_changes)
        st = st_new
    if best is None:
        return None, v, None, False, stationarity, solves
    return best[0], best[1], best[2], False, stationarity, solves
