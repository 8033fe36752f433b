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
_kkt = lazy("_kkt")

__all__ = []

_POOL = 6        # entries looked at beyond the k-th, per column
_MU = 1e-10      # proximal regularisation, relative to 1 / reg (potentials) and reg (w)
_TIE_TOL = 1e-9  # relative slack of the multiplier bounds in the corrections
MAX_SOLVES = 16
_BALANCE = 1e-10  # relative imbalance of a connected part that :func:`_cover` joins
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
    st = Structure(pj, R[pj, pr], tj, k - lo[tj], gt, R[tj[gt], gr])
    return _cover(obj, st, f, h, (E, R))[0], (f, h)


def _cover(obj, st, f, h, tops):
    """``st`` with every connected part balanced: ``(structure, columns changed)``.

    The KKT system's row and column equations, summed over a connected part of the
    structure's graph (rows and columns joined by strict entries and tie members), say
    that its row weights and column weights have equal sums: a part that misses this
    has no solution, and the proximal term then moves its potentials by about
    ``imbalance / mu`` (on Gaussian-shaped weights at n = 500: 1e4 to 1e10 times
    ``reg max(b)``), after which every column changes. Generic weights have no
    balanced proper part, so there the maximum's structure is connected; a row with no
    entry (a weight far below every column's support) is a part of its own.

    Each unbalanced part is joined to another by the entry closest below the level at
    which it would receive mass, ``max(0, kth_j)`` (``kth_j``: column j's k-th largest
    entry at ``(f, h)``): a row of the part into an outside column if its rows lack
    mass, an outside row into one of its columns if they receive too much; the row
    enters the column as a strict entry if the column has a free slot, into its tie
    group if it has one, else tied with the column's weakest strict entry for one slot.
    ``tops``: the columns' top lists at ``(f, h)`` (:func:`_tops`, at least k long), where
    the joins (``_kernels._kkt.join_parts``) look for their entries first.
    """
    import scipy.sparse
    from scipy.sparse.csgraph import connected_components

    sp = obj.sp
    nr, mc, k = obj.nr, obj.mc, obj.k
    ei = np.concatenate([st.pi, st.gi])
    ej = np.concatenate([st.pj, st.tj[st.gt]]) + nr
    graph = scipy.sparse.coo_array((np.ones(ei.size), (ei, ej)), shape=(nr + mc, nr + mc))
    nc, lab = connected_components(graph, directed=False)
    lr, lc = lab[:nr], lab[nr:]
    wa = np.bincount(lr, weights=sp.ac, minlength=nc)
    wb = np.bincount(lc, weights=sp.bc, minlength=nc)
    imb = wa - wb
    bad = np.abs(imb) > _BALANCE * (wa + wb)
    if not bad.any():
        return st, 0
    E, R = tops
    near = np.maximum(E[:, k - 1], 0.0)
    ai, aj = _kkt.join_parts(lr.astype(np.int64), lc.astype(np.int64), imb, wa, wb,
                             np.flatnonzero(bad), np.ascontiguousarray(f),
                             np.ascontiguousarray(h), near, np.ascontiguousarray(R),
                             sp.cost_t, _BALANCE)
    added = list(zip(ai.tolist(), aj.tolist()))
    if not added:
        return st, 0
    targets = sorted({j for _, j in added})
    strict = {j: st.pi[st.pj == j].tolist() for j in targets}
    nt = st.tj.size
    by_tie = np.argsort(st.gt, kind="stable")  # members grouped by tie, in their order
    size = np.bincount(st.gt, minlength=nt)
    start = np.concatenate([[0], np.cumsum(size)])
    tie_of = {}
    for t, j in enumerate(st.tj.tolist()):
        tie_of.setdefault(j, t)
    groups = {}
    for j in targets:
        if j in tie_of:
            t = tie_of[j]
            groups[j] = [int(st.tr[t]), st.gi[by_tie[start[t]:start[t + 1]]].tolist()]
    for i, j in added:
        if j in groups:
            groups[j][1].append(i)
        elif len(strict[j]) < k:
            strict[j].append(i)
        else:  # full: the weakest strict row and row i share one slot
            rows = strict[j]
            e = f[rows] + h[j] - sp.cost_t[j, rows]
            weakest = rows.pop(int(np.argmin(e)))
            groups[j] = [1, [weakest, i]]
    keep_p = ~np.isin(st.pj, targets)
    pj = np.concatenate([st.pj[keep_p]] + [np.full(len(strict[j]), j, dtype=np.int64)
                                            for j in targets])
    pi = np.concatenate([st.pi[keep_p]] + [np.asarray(strict[j], dtype=np.int64)
                                            for j in targets])
    order = np.argsort(pj, kind="stable")
    # the ties left as they are, then the new and grown groups (members sorted), in
    # column order
    keep_t = ~np.isin(st.tj, list(groups))
    kept = by_tie[keep_t[st.gt[by_tie]]]
    new_j = sorted(groups)
    new_m = [sorted(groups[j][1]) for j in new_j]
    t_col = np.concatenate([st.tj[keep_t], np.array(new_j, dtype=np.int64)])
    by_col = np.argsort(t_col, kind="stable")
    tj = t_col[by_col].astype(np.int64)
    new_r = np.array([groups[j][0] for j in new_j], dtype=np.int64)
    tr = np.concatenate([st.tr[keep_t], new_r])[by_col].astype(np.int64)
    new_size = np.array([len(m) for m in new_m], dtype=np.int64)
    gt = np.repeat(np.arange(tj.size, dtype=np.int64),
                   np.concatenate([size[keep_t], new_size])[by_col])
    m_col = np.concatenate([st.tj[st.gt[kept]],
                            np.repeat(np.array(new_j, dtype=np.int64), new_size)])
    m_row = np.concatenate([st.gi[kept], np.array([i for m in new_m for i in m],
                                                  dtype=np.int64)])
    gi = m_row[np.argsort(m_col, kind="stable")].astype(np.int64)
    return (Structure(pj[order].astype(np.int64), pi[order].astype(np.int64), tj, tr, gt,
                      gi), len(targets))


def solve(obj, st, f0, h0):
    """Solve the KKT system of structure ``st`` (proximal about ``(f0, h0)``):
    ``(f, h, beta, w)``, or None if the factorisation fails."""
    import scipy.sparse
    from scipy.sparse.linalg import splu

    sp = obj.sp
    nr, mc, reg = obj.nr, obj.mc, sp.reg
    nt, nw = st.tj.size, st.gi.size
    iH, iB, iW = nr, nr + mc, nr + mc + nt  # unknowns: f, h, beta, w
    N = nr + mc + nt + nw
    # equations: rows, columns, ties, slot sums (``_kernels._kkt``)
    cp, cg = _costs(sp.cost_t, st)
    indptr, indices, data, rhs = _kkt.kkt_system(
        sp.ac, sp.bc, np.ascontiguousarray(f0, dtype=np.float64),
        np.ascontiguousarray(h0, dtype=np.float64), cp, cg, st.pj, st.pi, st.tj,
        st.tr.astype(np.float64), st.gt, st.gi, reg, _MU * (1.0 / reg), _MU * reg)
    A = scipy.sparse.csc_array((data, indices, indptr), shape=(N, N))
    try:
        lu = splu(A)
        z = lu.solve(rhs)
        z += lu.solve(rhs - A @ z)  # one step of iterative refinement
    except RuntimeError:
        return None
    if not np.all(np.isfinite(z)):
        return None
    return z[:nr], z[iH:iB], z[iB:iW], z[iW:]


def _costs(ct, st):
    """The costs of the strict entries and of the members of ``st``, float64."""
    return (ct[st.pj, st.pi].astype(np.float64),
            ct[st.tj[st.gt], st.gi].astype(np.float64))


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


def _clean(obj, st, sol, E, R, slack):
    """Columns whose structure the corrections of :func:`correct` leave as it is
    (compiled, ``_kernels._kkt.clean_columns``: the corrections then visit the others
    only)."""
    f, h, beta, w = sol
    sp = obj.sp
    cp, cg = _costs(sp.cost_t, st)
    return _kkt.clean_columns(np.ascontiguousarray(f), np.ascontiguousarray(h), beta, w,
                              cp, cg, st.pj, st.pi, st.tj, st.gt, st.gi, E, R, obj.k,
                              sp.reg, slack, _TIE_TOL)


def correct(obj, st, sol, tops=None):
    """The corrected structure after a solve and the number of columns it changes.

    Columns that :func:`_clean` passes keep their entries as they are; the others are
    corrected as the module's docstring says (``_kernels._kkt.correct_structure``): an
    untied column whose top k changed keeps the strict rows still in its positive top k
    and ties the rows that swapped and keep mass, if more of them than free slots; a
    tied column sorts its candidates by their multiplier ``q``. The entries come out in
    column order, as :func:`detect` writes them. ``tops``: :func:`_tops` at the solve's
    ``(f, h)``, ``k + _POOL`` long (computed when not given)."""
    f, h, beta, w = sol
    k = obj.k
    kk = min(obj.nr, k + _POOL)
    E, R = _tops(obj, f, h, kk) if tops is None else tops
    # entries within ``slack`` of zero mass may be in or out (the smooth boundary)
    slack = _TIE_TOL * obj.sp.reg * float(obj.sp.bc.max())
    clean = _clean(obj, st, sol, E, R, slack)
    ct = obj.sp.cost_t
    cp, cg = _costs(ct, st)
    CR = np.take_along_axis(ct, R, axis=1).astype(np.float64)
    *arrays, changes = _kkt.correct_structure(
        np.ascontiguousarray(f), np.ascontiguousarray(h), beta, w, cp, cg, st.pj, st.pi,
        st.tj, st.tr, st.gt, st.gi, E, R, CR, clean, k, obj.sp.reg, slack, _TIE_TOL)
    return Structure(*arrays), int(changes)


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
        tops = _tops(obj, f, h, min(obj.nr, obj.k + _POOL))
        st_new, changes = correct(obj, st, sol, tops)
        st_new, joined = _cover(obj, st_new, f, h, tops)
        changes += joined
        if changes == 0:
            stationarity = residual(obj, st, sol)
            # the proximal terms move the solve's point off the maximum by a relative
            # order of _MU: its value may lie that much below v (on the guide's
            # routing example, 1e-12 relative: 34 times the rounding floor)
            floor = obj.value_floor(v, xn) + _MU * abs(v)
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
