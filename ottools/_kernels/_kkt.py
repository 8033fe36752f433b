"""The active-set finish of sparsity-constrained OT (``ottools._sparse_ot._active_set``):
its KKT system assembled as a CSC matrix, the columns a solve leaves as they are, the
corrected structure, and the joins that balance the structure's connected parts.

A structure is given by flat arrays in column order (as ``_active_set.Structure``):
strict-support entries ``(pj, pi)`` with ``pj`` non-decreasing; tie groups ``(tj, tr)``
with ``tj`` increasing; members ``(gt, gi)`` with ``gt`` non-decreasing. The kernels
take the costs they read gathered in float64 (``cp`` at the strict entries, ``cg`` at the
members, ``CR`` at the top entries): one compiled version serves float32 and float64
problems (a version of the three kernels takes about 8 s to compile). The joins
(:func:`join_parts`) scan whole columns of the cost where a column's top list holds no
row of the side they look for, so they read the cost itself, in its dtype: a version
per dtype, about 1.5 s to compile, and only once a structure has an unbalanced part.

At 200 x 200 the NumPy assembly (concatenated COO triplets, then SciPy's conversion and
duplicate sums) took 0.6-0.7 ms per system and the vectorised column test 0.35 ms,
together as much as the sparse LU itself: written here, they take tens of microseconds.
"""

import numpy as np

from ._jit import jit


@jit
def _offsets(keys, size):
    """``start`` (size + 1): ``start[c]:start[c + 1]`` are the positions of key ``c`` once
    the entries are grouped by key (counts, then their running sums)."""
    start = np.zeros(size + 1, dtype=np.int64)
    for q in range(keys.shape[0]):
        start[keys[q] + 1] += 1
    for c in range(size):
        start[c + 1] += start[c]
    return start


@jit
def _columns(pj, tj, gt, mc):
    """``(pcol, tie_of, gstart)``: the strict entries of column ``j`` are
    ``pcol[j]:pcol[j + 1]``, its tie group ``tie_of[j]`` (-1: none), whose members are
    ``gstart[t]:gstart[t + 1]``."""
    tie_of = np.full(mc, -1, dtype=np.int64)
    for t in range(tj.shape[0]):
        tie_of[tj[t]] = t
    return _offsets(pj, mc), tie_of, _offsets(gt, tj.shape[0])


@jit
def kkt_system(ac, bc, f0, h0, cp, cg, pj, pi, tj, tr, gt, gi, reg, mu, nu):
    """The KKT system of a structure, proximal about ``(f0, h0)``:
    ``(indptr, indices, data, rhs)`` of a CSC matrix in canonical form (sorted rows, no
    duplicates). Unknowns ``(f, h, beta, w)``; equations: rows, columns, ties, slot sums
    (see ``_active_set``). ``mu`` is the proximal weight of the potentials (and of
    ``beta``, with the opposite sign), ``nu`` the one of ``w`` in the tie equations."""
    nr, mc = ac.shape[0], bc.shape[0]
    np_, nt, nw = pj.shape[0], tj.shape[0], gi.shape[0]
    iH, iB, iW = nr, nr + mc, nr + mc + nt
    eT, eS = nr + mc, nr + mc + nw
    N = nr + mc + nt + nw
    inv = 1.0 / reg
    # the strict entries by row (stable: increasing column), members by row
    prow = _offsets(pi, nr)
    grow = _offsets(gi, nr)
    by_row = np.empty(np_, dtype=np.int64)
    fill = prow[:-1].copy()
    for q in range(np_):
        by_row[fill[pi[q]]] = pj[q]
        fill[pi[q]] += 1
    mem_row = np.empty(nw, dtype=np.int64)
    fill = grow[:-1].copy()
    for q in range(nw):
        mem_row[fill[gi[q]]] = q
        fill[gi[q]] += 1
    pcol, tie_of, gstart = _columns(pj, tj, gt, mc)

    nnz = nr + mc + 2 * np_ + 3 * nt + 5 * nw
    indptr = np.empty(N + 1, dtype=np.int32)
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz)
    p = 0
    for i in range(nr):  # f_i: its row, the columns of its strict entries, its ties
        indptr[i] = p
        d = 0.0
        for _ in range(prow[i], prow[i + 1]):
            d += inv
        indices[p] = i
        data[p] = d + mu
        p += 1
        for r in range(prow[i], prow[i + 1]):
            indices[p] = nr + by_row[r]
            data[p] = inv
            p += 1
        for r in range(grow[i], grow[i + 1]):
            indices[p] = eT + mem_row[r]
            data[p] = 1.0
            p += 1
    rows = np.empty(nr, dtype=np.int64)
    for j in range(mc):  # h_j: the rows of its strict entries, its column, its slot sum
        indptr[iH + j] = p
        c = 0
        for q in range(pcol[j], pcol[j + 1]):  # sorted by insertion (a few entries)
            i = pi[q]
            s = c
            while s > 0 and rows[s - 1] > i:
                rows[s] = rows[s - 1]
                s -= 1
            rows[s] = i
            c += 1
        for s in range(c):
            indices[p] = rows[s]
            data[p] = inv
            p += 1
        d = 0.0
        for _ in range(c):
            d += inv
        t = tie_of[j]
        if t >= 0:
            d += tr[t] * inv
        indices[p] = nr + j
        data[p] = d + mu
        p += 1
        if t >= 0:
            indices[p] = eS + t
            data[p] = -tr[t] * inv
            p += 1
    for t in range(nt):  # beta_t: its column, its members' ties, its slot sum
        indptr[iB + t] = p
        indices[p] = nr + tj[t]
        data[p] = tr[t] * inv
        p += 1
        for q in range(gstart[t], gstart[t + 1]):
            indices[p] = eT + q
            data[p] = -1.0
            p += 1
        indices[p] = eS + t
        data[p] = -tr[t] * inv - mu
        p += 1
    for q in range(nw):  # w_q: its row, its tie, its slot sum
        indptr[iW + q] = p
        indices[p] = gi[q]
        data[p] = 1.0
        indices[p + 1] = eT + q
        data[p + 1] = -nu
        indices[p + 2] = eS + gt[q]
        data[p + 2] = 1.0
        p += 3
    indptr[N] = p

    rhs = np.zeros(N)
    sr = np.zeros(nr)
    sc = np.zeros(mc)
    for q in range(np_):
        c = cp[q] * inv
        sr[pi[q]] += c
        sc[pj[q]] += c
    for i in range(nr):
        rhs[i] = ac[i] + mu * f0[i] + sr[i]
    for j in range(mc):
        rhs[nr + j] = bc[j] + mu * h0[j] + sc[j]
    for q in range(nw):
        rhs[eT + q] = cg[q]
    for t in range(nt):
        s = 0.0
        for q in range(gstart[t], gstart[t + 1]):
            s += f0[gi[q]] - cg[q]
        cnt = gstart[t + 1] - gstart[t]
        rhs[eS + t] = -mu * (s / cnt) if cnt > 0 else 0.0
    return indptr, indices, data, rhs


@jit
def _member(R, j, r, rows, lo, hi):
    """Whether ``R[j, r]`` is among ``rows[lo:hi]``."""
    x = R[j, r]
    for s in range(lo, hi):
        if rows[s] == x:
            return True
    return False


@jit
def clean_columns(f, h, beta, w, cp, cg, pj, pi, tj, gt, gi, E, R, k, reg, slack,
                  tie_tol):
    """Columns whose structure the corrections of ``_active_set.correct`` leave as they
    are, after a solve ``(f, h, beta, w)``; ``E``, ``R``: the values and rows of every
    column's top entries at the solve (decreasing; at least ``k``).

    Untied column: its strict rows are among its top ``k``, hold every top-``k`` row above
    ``slack``, and none is below ``-slack``. Tied column (group ``t``, slot mass
    ``v = (beta_t + h_j) / reg > 0``): every member's multiplier
    ``q = (e - beta_t - h_j) / reg + w`` lies in ``[0, v]``, every strict row is above the
    tie by more than the tolerance, and every other top row is below it."""
    mc = h.shape[0]
    kk = R.shape[1]
    clean = np.ones(mc, dtype=np.bool_)
    pcol, tie_of, gstart = _columns(pj, tj, gt, mc)
    for j in range(mc):
        p0, p1 = pcol[j], pcol[j + 1]
        t = tie_of[j]
        if t < 0:
            ok = True
            for q in range(p0, p1):  # strict rows among the top k, none below -slack
                i = pi[q]
                found = False
                for r in range(k):
                    if R[j, r] == i:
                        found = True
                if not found or not (f[i] + h[j] - cp[q] >= -slack):
                    ok = False
            for r in range(k):  # every strong top row is a strict row
                if E[j, r] > slack and not _member(R, j, r, pi, p0, p1):
                    ok = False
            clean[j] = ok
            continue
        bh = beta[t] + h[j]
        v = bh / reg
        ts = tie_tol * abs(v)
        ok = v > 0
        for q in range(gstart[t], gstart[t + 1]):
            i = gi[q]
            qg = (f[i] + h[j] - cg[q] - bh) / reg + w[q]
            if not (qg >= -ts and qg <= v + ts):
                ok = False
        for q in range(p0, p1):
            i = pi[q]
            if not ((f[i] + h[j] - cp[q] - bh) / reg > ts):
                ok = False
        for r in range(kk):
            if _member(R, j, r, pi, p0, p1) or _member(R, j, r, gi, gstart[t],
                                                        gstart[t + 1]):
                continue
            if not ((E[j, r] - bh) / reg < -ts):
                ok = False
        clean[j] = ok
    return clean


@jit
def _sort_by(keys, items, vals, n, ascending):
    """Stable insertion sort of ``items[:n]`` and ``vals[:n]`` by ``keys[:n]``."""
    for s in range(1, n):
        kx, ix, vx = keys[s], items[s], vals[s]
        u = s
        while u > 0 and ((keys[u - 1] > kx) if ascending else (keys[u - 1] < kx)):
            keys[u] = keys[u - 1]
            items[u] = items[u - 1]
            vals[u] = vals[u - 1]
            u -= 1
        keys[u] = kx
        items[u] = ix
        vals[u] = vx


@jit
def _sort_ints(x, n):
    """Insertion sort of ``x[:n]`` (a few entries; Numba's ``sort`` takes seconds to
    compile)."""
    for s in range(1, n):
        v = x[s]
        u = s
        while u > 0 and x[u - 1] > v:
            x[u] = x[u - 1]
            u -= 1
        x[u] = v


@jit
def _same_rows(x, nx, y, ny, buf1, buf2):
    """Whether ``x[:nx]`` and ``y[:ny]`` hold the same rows (as sorted lists)."""
    if nx != ny:
        return False
    for s in range(nx):
        buf1[s] = x[s]
        buf2[s] = y[s]
    _sort_ints(buf1, nx)
    _sort_ints(buf2, ny)
    for s in range(nx):
        if buf1[s] != buf2[s]:
            return False
    return True


@jit
def _fill_or_tie(mid, n_mid, newp, n_p, newg, r):
    """The ``r`` free slots of a column: the rows ``mid[:n_mid]`` become strict entries
    (appended to ``newp[:n_p]``) if they fit, else they share the slots as a tie group
    (``newg``). Returns ``(n_p, n_g, r)`` (``r = 0`` without a group)."""
    if n_mid <= r:
        for s in range(n_mid):
            newp[n_p] = mid[s]
            n_p += 1
        return n_p, 0, 0
    for s in range(n_mid):
        newg[s] = mid[s]
    return n_p, n_mid, r


@jit
def _add(cand, ce, cc, n, i, e, c):
    """Append row ``i`` (entry ``e``, cost ``c``) to the candidates unless present."""
    for s in range(n):
        if cand[s] == i:
            return n
    cand[n] = i
    ce[n] = e
    cc[n] = c
    return n + 1


@jit
def correct_structure(f, h, beta, w, cp, cg, pj, pi, tj, tr, gt, gi, E, R, CR, clean, k,
                      reg, slack, tie_tol):
    """The corrected structure after a solve ``(f, h, beta, w)`` and the number of
    columns it changes: ``(pj, pi, tj, tr, gt, gi, changes)`` in column order. ``cp``,
    ``cg``: the costs of the strict entries and of the members; ``E``, ``R``, ``CR``: the
    values, rows and costs of every column's top entries at the solve. Columns marked
    ``clean`` (:func:`clean_columns`) keep their entries; the others follow the rules of
    ``_active_set.correct``, with their candidates in this order: top rows by rank,
    strict rows, members (first occurrence). New members are written sorted by row."""
    mc = h.shape[0]
    kk = R.shape[1]
    np_, nw = pj.shape[0], gi.shape[0]
    pcol, tie_of, gstart = _columns(pj, tj, gt, mc)
    cap_p = np_ + mc * k
    cap_g = nw + mc * (kk + k)
    opj = np.empty(cap_p, dtype=np.int64)
    opi = np.empty(cap_p, dtype=np.int64)
    otj = np.empty(mc, dtype=np.int64)
    otr = np.empty(mc, dtype=np.int64)
    ogt = np.empty(cap_g, dtype=np.int64)
    ogi = np.empty(cap_g, dtype=np.int64)
    width = kk + k + nw + 1
    cand = np.empty(width, dtype=np.int64)  # candidate rows, their entries and costs
    ce = np.empty(width)
    cc = np.empty(width)
    key = np.empty(width)
    tmp = np.empty(width)
    up = np.empty(width, dtype=np.int64)
    upe = np.empty(width)
    mid = np.empty(width, dtype=np.int64)
    newp = np.empty(width, dtype=np.int64)
    newg = np.empty(width, dtype=np.int64)
    b1 = np.empty(width, dtype=np.int64)
    b2 = np.empty(width, dtype=np.int64)
    npo = 0
    nto = 0
    ngo = 0
    changes = 0
    for j in range(mc):
        p0, p1 = pcol[j], pcol[j + 1]
        t = tie_of[j]
        g0 = gstart[t] if t >= 0 else 0
        g1 = gstart[t + 1] if t >= 0 else 0
        if clean[j]:
            for q in range(p0, p1):
                opj[npo] = j
                opi[npo] = pi[q]
                npo += 1
            if t >= 0:
                otj[nto] = j
                otr[nto] = tr[t]
                for q in range(g0, g1):
                    ogt[ngo] = nto
                    ogi[ngo] = gi[q]
                    ngo += 1
                nto += 1
            continue
        n_p = 0  # the new strict rows, in order
        n_g = 0  # the new members
        r = 0
        if t < 0:
            unchanged = True
            for q in range(p0, p1):
                i = pi[q]
                intop = False
                for s in range(k):
                    if R[j, s] == i:
                        intop = True
                if not intop or not (f[i] + h[j] - cp[q] >= -slack):
                    unchanged = False
            for s in range(k):
                if E[j, s] > slack and not _member(R, j, s, pi, p0, p1):
                    unchanged = False
            if unchanged:
                for q in range(p0, p1):
                    newp[n_p] = pi[q]
                    n_p += 1
            else:
                # keep the strict rows still in the positive top k; the rows in exactly
                # one of (strict rows, positive top k), by row, that keep mass fill
                # the free slots, or are tied in them if more
                n_m = 0
                for q in range(p0, p1):
                    i = pi[q]
                    top = False
                    for s in range(k):
                        if R[j, s] == i and E[j, s] > 0:
                            top = True
                    if top:
                        newp[n_p] = i
                        n_p += 1
                    else:
                        cand[n_m] = i
                        ce[n_m] = f[i] + h[j] - cp[q]
                        n_m += 1
                for s in range(k):
                    if E[j, s] > 0 and not _member(R, j, s, pi, p0, p1):
                        cand[n_m] = R[j, s]
                        ce[n_m] = E[j, s]
                        n_m += 1
                for s in range(n_m):
                    key[s] = cand[s]
                _sort_by(key, cand, ce, n_m, True)
                n_still = 0
                for s in range(n_m):
                    if ce[s] > 0:
                        mid[n_still] = cand[s]
                        n_still += 1
                n_p, n_g, r = _fill_or_tie(mid, n_still, newp, n_p, newg, k - n_p)
                changes += 1
        else:
            bh = beta[t] + h[j]
            v = bh / reg
            n_c = 0
            for s in range(kk):
                n_c = _add(cand, ce, cc, n_c, R[j, s], E[j, s], CR[j, s])
            for q in range(p0, p1):
                n_c = _add(cand, ce, cc, n_c, pi[q], f[pi[q]] + h[j] - cp[q], cp[q])
            for q in range(g0, g1):
                n_c = _add(cand, ce, cc, n_c, gi[q], f[gi[q]] + h[j] - cg[q], cg[q])
            if v <= 0:  # the slots carry no mass: the positive entries stay, by row
                n_pos = 0
                for s in range(n_c):
                    if ce[s] > 0:
                        up[n_pos] = cand[s]
                        upe[n_pos] = cc[s] - f[cand[s]]
                        key[n_pos] = up[n_pos]
                        n_pos += 1
                _sort_by(key, up, upe, n_pos, True)
                for s in range(n_pos):
                    key[s] = upe[s]
                _sort_by(key, up, upe, n_pos, True)  # then by cost minus f (stable)
                for s in range(min(n_pos, k)):
                    newp[n_p] = up[s]
                    n_p += 1
                changes += 1
            else:
                tslack = tie_tol * v
                n_up = 0
                for s in range(n_c):
                    i = cand[s]
                    extra = 0.0
                    strict = False
                    for q in range(p0, p1):
                        if pi[q] == i:
                            strict = True
                    if strict:
                        extra = v
                    else:
                        for q in range(g0, g1):
                            if gi[q] == i:
                                extra = w[q]
                    key[s] = (ce[s] - bh) / reg + extra  # the multiplier q of row i
                    if key[s] > v + tslack:
                        up[n_up] = i
                        upe[n_up] = key[s]
                        n_up += 1
                _sort_by(upe, up, tmp, n_up, False)  # by decreasing q (stable)
                n_mid = 0
                if n_up >= k:  # the k-th and lower of them join the tie
                    for s in range(k - 1, n_up):
                        mid[n_mid] = up[s]
                        n_mid += 1
                    n_up = k - 1
                for s in range(n_c):
                    if key[s] >= -tslack and key[s] <= v + tslack:
                        mid[n_mid] = cand[s]
                        n_mid += 1
                for s in range(n_up):
                    newp[n_p] = up[s]
                    n_p += 1
                n_p, n_g, r = _fill_or_tie(mid, n_mid, newp, n_p, newg, k - n_up)
                same = n_g > 0 and _same_rows(newp, n_p, pi[p0:p1], p1 - p0, b1, b2)
                if same:
                    same = _same_rows(newg, n_g, gi[g0:g1], g1 - g0, b1, b2)
                if not same:
                    changes += 1
        for s in range(n_p):
            opj[npo] = j
            opi[npo] = newp[s]
            npo += 1
        if n_g > 0:
            _sort_ints(newg, n_g)
            otj[nto] = j
            otr[nto] = r
            for s in range(n_g):
                ogt[ngo] = nto
                ogi[ngo] = newg[s]
                ngo += 1
            nto += 1
    return (opj[:npo].copy(), opi[:npo].copy(), otj[:nto].copy(), otr[:nto].copy(),
            ogt[:ngo].copy(), ogi[:ngo].copy(), changes)


@jit
def join_parts(lr, lc, imb, wa, wb, todo, f, h, near, R, ct, balance):
    """The joins of ``_active_set._cover``: ``(rows, columns)`` of the entries added, in
    order. ``lr``, ``lc``: the part of every row and column; ``imb``, ``wa``, ``wb``: each
    part's imbalance and row and column weights (all five updated as parts merge);
    ``todo``: the unbalanced parts, popped from the end. ``near``: the level at which each
    column gives mass, ``R``: its top rows at ``(f, h)`` (rows by decreasing entry
    ``e_ij = f_i + h_j - ct[j, i]``; ``ct`` in the problem's dtype).

    A part ``c`` still unbalanced by more than ``balance`` times its weight takes the
    entry of least gap ``near_j - e_ij`` (the first in ``(j, i)`` order among equal gaps)
    with ``i`` in its rows and ``j`` outside if its rows lack mass (``imb > 0``), else
    ``i`` outside and ``j`` in its columns; the part across the entry merges into ``c``,
    which is looked at again. A column's top list holds its nearest rows of the set
    when it holds one whose entry lies strictly above its last entry's (or lists every
    row); the gap of that last entry bounds the column's other rows from below, so only
    the columns with no such row and a bound not above the least gap found are scanned
    in full: no n x m gaps."""
    nr, mc, kk = lr.shape[0], lc.shape[0], R.shape[1]
    nc = imb.shape[0]
    stack = np.empty(todo.shape[0] + nc, dtype=np.int64)
    for q in range(todo.shape[0]):
        stack[q] = todo[q]
    top = todo.shape[0]
    ai = np.empty(nc, dtype=np.int64)
    aj = np.empty(nc, dtype=np.int64)
    na = 0
    rows = np.empty(nr, dtype=np.int64)
    pending = np.empty(mc, dtype=np.int64)
    bounds = np.empty(mc)
    while top > 0:
        top -= 1
        c = stack[top]
        if not abs(imb[c]) > balance * (wa[c] + wb[c]):
            continue  # joined into a balanced part, or into another part (zeroed)
        lack = imb[c] > 0  # rows of c into outside columns; else outside rows into c's
        n_rows = 0
        for i in range(nr):
            if (lr[i] == c) == lack:
                rows[n_rows] = i
                n_rows += 1
        if n_rows == 0:
            continue
        best = np.inf
        bj = -1
        bi = -1
        n_pend = 0
        for j in range(mc):
            if (lc[j] == c) == lack:
                continue
            hj, nj = h[j], near[j]
            low = np.inf
            li = -1
            for r in range(kk):
                i = R[j, r]
                if (lr[i] == c) == lack:
                    g = nj - (f[i] + hj - ct[j, i])
                    if g < low or (g == low and i < li):
                        low, li = g, i
            last = R[j, kk - 1]
            bound = nj - (f[last] + hj - ct[j, last])
            if li >= 0 and (kk == nr or low < bound):
                if low < best:  # columns come in increasing order
                    best, bj, bi = low, j, li
            else:
                pending[n_pend] = j
                bounds[n_pend] = bound
                n_pend += 1
        for p in range(n_pend):
            if bounds[p] > best:
                continue
            j = pending[p]
            hj, nj = h[j], near[j]
            for t in range(n_rows):
                i = rows[t]
                g = nj - (f[i] + hj - ct[j, i])
                if g < best or (g == best and (j < bj or (j == bj and i < bi))):
                    best, bj, bi = g, j, i
        if bj < 0:
            continue  # no column on the other side
        ai[na] = bi
        aj[na] = bj
        na += 1
        d = lc[bj] if lack else lr[bi]
        for i in range(nr):
            if lr[i] == d:
                lr[i] = c
        for j in range(mc):
            if lc[j] == d:
                lc[j] = c
        imb[c] += imb[d]
        wa[c] += wa[d]
        wb[c] += wb[d]
        imb[d] = 0.0
        wa[d] = 0.0
        wb[d] = 0.0
        stack[top] = c
        top += 1
    return ai[:na].copy(), aj[:na].copy()
