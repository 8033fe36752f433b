"""Network simplex kernels for exact OT on the complete bipartite graph (``ottools.emd``).

The graph has ``n`` source nodes (``0 .. n-1``, supplies ``a``), ``m`` sink nodes
(``n .. n+m-1``, demands ``b``), one arc ``i -> j`` per cost entry, and an artificial
root ``R = n + m``. A basis is a spanning tree of the ``n + m + 1`` nodes stored by
node: ``parent[u]``, ``flow[u]`` and ``cost_up[u]`` (the flow and the cost of the arc
between ``u`` and its parent: no pivot reads the cost matrix for the tree),
``depth[u]``, the children as doubly linked lists (``first_child``, ``next_sib``,
``prev_sib``) and the potentials ``pi`` with ``pi[n + j] - pi[i] = C[i, j]`` on every
tree arc, so that the reduced cost of an arc is ``C[i, j] + pi[i] - pi[n + j]``
(``f = -pi[:n]``, ``g = pi[n:n + m]``). A pivot re-hangs the subtree below the leaving
arc from the entering arc (reversing the parent pointers on the path between them) and
recomputes that subtree's depths and potentials from the parents, so the potentials
carry no rounding accumulated over pivots.

Artificial arcs ``u -> R`` join the components of the starting forest to the root. They
start with zero flow, are oriented towards the root (upward), and never carry flow: a
cycle through ``R`` traverses one of them forwards and another one backwards, so its
flow change is 0. Once one leaves the tree it is gone for good (it is never priced).
Their only role is to let the starting forest be any forest; their "cost" is the free
offset of each component's potentials, chosen to match the guide potentials.

Degenerate pivots (most pivots on assignment-like problems) cannot cycle: every tree arc
with zero flow points upward (the tree is *strongly feasible*: the starting tree has
positive flows on real arcs and zero-flow arcs pointing up), and the leaving arc is the
last blocking arc met when the cycle is traversed from its apex in the direction of the
entering arc (Cunningham's rule), which keeps the tree strongly feasible.

Pricing, in two levels. Each row keeps a list of ``K`` candidate arcs (its ``K``
smallest reduced costs when the list was last filled, with their costs). The entering
arc comes from a block search (Grigoriadis; the rule of LEMON and of POT's solver) over
these lists: blocks of ``block`` list entries, from where the last search stopped; the
most negative reduced cost of the first block that has one below ``-eps`` enters. When
a whole pass over the lists finds none, a full sweep over the cost matrix refills every
row's list; a sweep that finds no reduced cost below ``-eps`` ends the solve: the basis
is then optimal to ``eps``, certified on every entry.

Costs come from a *source* (:func:`dense_source` or :func:`cloud_source`): a dense
matrix read in place, or two point clouds whose costs are computed when a row or an
arc needs them (``_online.cost_row``; :func:`_entry` repeats its arithmetic, so an arc
has the same cost whichever way it is read). Nothing of size ``n m`` is stored for a
point cloud: the lists are ``(n, K)``, the tree ``O(n + m)``, and a full sweep computes
each row into one work row.

The kernels never raise and allocate only at entry; the state persists in the arrays the
caller owns, so the pivot loop can run in bounded calls.
"""

import math

import numpy as np

from ._codes import BUDGET, DONE
from ._jit import jit
from ._online import (CITYBLOCK, EUCLIDEAN, EUCLIDEAN_SCALED, SQEUCLIDEAN, cost_row,
                      scaled_distance)

DENSE = -1
_UNUSED_2D = np.empty((1, 1))  # the fields a source does not use
_UNUSED_1D = np.empty(1)


def dense_source(C):
    """The cost source of a dense float64 matrix (read in place)."""
    C = np.ascontiguousarray(C, dtype=np.float64)
    return (C, _UNUSED_2D, _UNUSED_2D, _UNUSED_1D, _UNUSED_1D, DENSE, 0.0, 1.0, False)


def cloud_source(x, y, sqx, sqy, metric, p, inv_scale, low=False):
    """The cost source of two point clouds (the arguments of ``_online.cost_row``, in
    their dtype: float32 points take the arithmetic of ``PointCloud.dense()``).
    ``low``: each cost rounded to float32, as a float32 cloud's ``PointCloud.dense()``
    stores it, so that the solve is the dense one's to the bit."""
    return (_UNUSED_2D, np.ascontiguousarray(x), np.ascontiguousarray(y),
            np.ascontiguousarray(sqx), np.ascontiguousarray(sqy), int(metric), float(p),
            float(inv_scale), bool(low))


@jit
def source_shape(src):
    """``(n, m)`` of a cost source."""
    if src[5] == DENSE:
        return src[0].shape[0], src[0].shape[1]
    return src[1].shape[0], src[2].shape[0]


@jit
def _row(src, i, buf):
    """Row ``i`` of the costs: a view of the matrix, or computed into ``buf``."""
    C, x, y, sqx, sqy, metric, p, inv_scale, low = src
    if metric == DENSE:
        return C[i]
    cost_row(x, y, i, sqx, sqy, metric, p, inv_scale, buf)
    if low:
        for j in range(buf.shape[0]):
            buf[j] = np.float64(np.float32(buf[j]))
    return buf


@jit
def _entry(src, i, j):
    """``C_ij``, with the arithmetic of ``_online.cost_row`` for point clouds (rounded to
    float32 for a ``low`` source)."""
    c = _entry64(src, i, j)
    if src[8]:
        return np.float64(np.float32(c))
    return c


@jit
def _entry64(src, i, j):
    """``C_ij`` in float64."""
    C, x, y, sqx, sqy, metric, p, inv_scale, _ = src
    if metric == DENSE:
        return C[i, j]
    d = x.shape[1]
    s = 0.0
    if metric == SQEUCLIDEAN:
        for k in range(d):
            s += x[i, k] * y[j, k]
        c = sqx[i] + sqy[j] - 2.0 * s
        return (c if c > 0.0 else 0.0) * inv_scale
    if metric == EUCLIDEAN:
        for k in range(d):
            t = x[i, k] - y[j, k]
            s += t * t
        return np.sqrt(s) * inv_scale
    if metric == CITYBLOCK:
        for k in range(d):
            s += abs(x[i, k] - y[j, k])
        return s * inv_scale
    if metric >= EUCLIDEAN_SCALED:
        return scaled_distance(x[i], y[j], metric, p) * inv_scale
    for k in range(d):
        s += abs(x[i, k] - y[j, k]) ** p
    return s ** (1.0 / p) * inv_scale


@jit
def entries(src, rows, cols, out):
    """``out[t] = C[rows[t], cols[t]]``."""
    for t in range(rows.size):
        out[t] = _entry(src, rows[t], cols[t])


@jit
def column_minima(src, g):
    """``g_j = min_i C_ij``: the first half of the cold-start guide (see
    :func:`start_lists`)."""
    n, m = source_shape(src)
    buf = np.empty(m)
    crow = _row(src, 0, buf)
    for j in range(m):
        g[j] = crow[j]
    for i in range(1, n):
        crow = _row(src, i, buf)
        for j in range(m):
            g[j] = min(g[j], crow[j])


# A row's bound guess (see start_lists): the last row's smallest list value plus this
# many times its list's spread, and the factor of each further guess (at most
# _GUESS_TRIES). On uniform 2-D points with K = 32 (m = 1000), 1.4 counts 47 candidates
# a row on average, and a fifth of the rows need a second guess.
_GUESS = 1.4
_GUESS_GROWTH = 1.4
_GUESS_TRIES = 6
# At most this many candidates are sorted by counting ranks (else inserted one by one).
_RANK_MAX = 96


@jit
def _gather_flagged(words, flags, hit):
    """The indices ``t`` with ``flags[t] = 1`` written to ``hit`` in increasing order;
    their count. ``flags`` (uint8, 0 or 1, padded with zeros to whole words) is read
    eight at a time through ``words`` (its uint64 view): words of no flag are skipped,
    and within a word every index is written, the count advancing by its flag."""
    nh = 0
    for q in range(words.shape[0]):
        if words[q] != 0:
            for t in range(8 * q, 8 * q + 8):
                hit[nh] = t
                nh += flags[t]
    return nh


@jit
def start_lists(src, f0, g0, cold, lj, lc, lv, ci, cv):
    """One pass over ``C`` ranking the cells by the guide's reduced costs
    ``r_ij = C_ij - f0_i - g0_j``: the ``K`` smallest of every row (columns ``lj``,
    costs ``lc``, values ``lv``, all (n, K)) and the ``kc`` smallest of every column
    (rows ``ci``, values ``cv``, (m, kc)), each list ascending, ties in index order
    (the lists of a scan inserting each entry in index order).

    ``cold``: ``f0`` is computed here first, row by row, as ``f0_i = min_j C_ij - g0_j``
    (with ``g0`` the column minima this is the double c-transform: dual feasible, a zero
    reduced cost in every row and column; :func:`_first_min_diff`).

    Per row, one vectorizable pass writes the reduced costs to a work row and flags the
    entries that can enter a list: those at most ``theta``, a bound of the row's
    ``K``-th smallest value, and those below their column's ``kc``-th smallest so far.
    ``theta`` is a guess from the last row's list, made a bound by counting at least
    ``K`` entries at most it (else larger guesses are counted, then ``theta = inf``).
    The flagged entries, found eight flags at a time, enter the column lists one by one
    in index order, and the row's candidates (the entries at most ``theta``: every entry
    of the row's list is one) are sorted by counting each one's rank among them, or
    when there are many of them, or no bound, inserted one by one.

    A scan inserting every entry below the row's current ``K``-th smallest value (140
    insertions a row at m = 1000) took 8 ms at n = m = 1000 and 68 ms at 4000.
    """
    n, m = source_shape(src)
    K = lj.shape[1]
    kc = ci.shape[1]
    buf = np.empty(m)
    rb = np.empty(m)  # the row's reduced costs
    hit = np.empty(m + 8, dtype=np.int64)
    cr = np.empty(m)  # the row's candidates: values and columns
    cj = np.empty(m, dtype=np.int64)
    rank = np.empty(min(m, _RANK_MAX), dtype=np.int64)
    occ = np.empty(min(m, _RANK_MAX), dtype=np.int64)
    nw = (m + 7) // 8
    flags = np.zeros(8 * nw, dtype=np.uint8)  # the padding stays 0
    words = flags.view(np.uint64)
    cthr = np.full(m, np.inf)  # the kc-th smallest of each column so far
    for j in range(m):
        for t in range(kc):
            cv[j, t] = np.inf
            ci[j, t] = 0
    low = 0.0  # the last row's smallest value and spread (none yet: an infinite guess)
    spread = np.inf
    for i in range(n):
        crow = _row(src, i, buf)
        if cold:
            f0[i] = _first_min_diff(crow, g0)
        fi = f0[i]
        theta = low + _GUESS * spread
        cnt = 0
        for j in range(m):
            r = crow[j] - fi - g0[j]
            rb[j] = r
            le = r <= theta
            cnt += le
            flags[j] = np.uint8(le) | np.uint8(r < cthr[j])
        if not cnt >= K:  # not a bound: larger guesses, then none
            step = _GUESS
            theta = np.inf
            for _ in range(_GUESS_TRIES):
                step *= _GUESS_GROWTH
                guess = low + step * spread
                cnt = 0
                for j in range(m):
                    cnt += rb[j] <= guess
                if cnt >= K:
                    theta = guess
                    break
            for j in range(m):
                flags[j] = np.uint8(rb[j] <= theta) | np.uint8(rb[j] < cthr[j])
        nh = _gather_flagged(words, flags, hit)
        nr = 0  # the row's candidates, in index order
        for h in range(nh):
            j = hit[h]
            r = rb[j]
            if r <= theta:
                cr[nr] = r
                cj[nr] = j
                nr += 1
            if r < cthr[j]:
                _insert_sorted(cv[j], ci[j], kc, r, i)
                cthr[j] = cv[j, kc - 1]
        row_v = lv[i]
        row_j = lj[i]
        if nr <= _RANK_MAX and theta < np.inf:
            # at least K candidates (the count): a stable sort by ranks, each one the
            # number of smaller candidates (a vectorizable count over candidates) plus
            # that of equal ones placed before
            for a in range(nr):
                rank[a] = 0
                occ[a] = 0
            for b in range(nr):
                x = cr[b]
                for a in range(nr):
                    rank[a] += x < cr[a]
            for a in range(nr):
                p = rank[a]
                q = p + occ[p]
                occ[p] += 1
                if q < K:
                    row_v[q] = cr[a]
                    row_j[q] = cj[a]
        else:
            for t in range(K):
                row_v[t] = np.inf
                row_j[t] = 0
            top = np.inf  # the K-th smallest of the row so far
            for a in range(nr):
                if cr[a] < top:
                    _insert_sorted(row_v, row_j, K, cr[a], cj[a])
                    top = row_v[K - 1]
        for t in range(K):
            lc[i, t] = crow[row_j[t]]
        low = row_v[0]
        spread = row_v[K - 1] - low


@jit
def _first_min_diff(crow, g):
    """``min_j crow_j - g_j`` as a scan in index order takes it (``d < best`` replaces
    ``best``, from ``inf``): the first difference equal to the minimum, so ``-0.0`` or
    ``+0.0`` as the first zero is. Four running minima over interleaved entries (a
    single one waits for each comparison: 2.6 cycles an entry at m = 4000); the
    minimum's value is theirs, and only zeros of both signs among them send a scan
    for the first zero."""
    m = crow.shape[0]
    b0 = np.inf
    b1 = np.inf
    b2 = np.inf
    b3 = np.inf
    for q in range(m // 4):
        j = 4 * q
        b0 = min(b0, crow[j] - g[j])
        b1 = min(b1, crow[j + 1] - g[j + 1])
        b2 = min(b2, crow[j + 2] - g[j + 2])
        b3 = min(b3, crow[j + 3] - g[j + 3])
    for j in range(m // 4 * 4, m):
        b0 = min(b0, crow[j] - g[j])
    best = min(min(b0, b1), min(b2, b3))
    if best == 0.0:
        neg = 0
        for v in (b0, b1, b2, b3):
            if v == 0.0:
                neg += math.copysign(1.0, v) < 0.0
        if 0 < neg < (b0 == 0.0) + (b1 == 0.0) + (b2 == 0.0) + (b3 == 0.0):
            for j in range(m):
                d = crow[j] - g[j]
                if d == 0.0:
                    return d
    return best


@jit
def _insert_sorted(vals, idx, k, v, t):
    """Insert ``(v, t)`` into the ascending ``vals[:k]`` (the largest entry drops out);
    the caller has checked ``v < vals[k - 1]``."""
    p = k - 1
    while p > 0 and vals[p - 1] > v:
        vals[p] = vals[p - 1]
        idx[p] = idx[p - 1]
        p -= 1
    vals[p] = v
    idx[p] = t


@jit
def start(src, a, b, f0, g0, cold, lj, lc, lv, ci, cv, parent, flow, cost_up, depth,
          first_child, next_sib, prev_sib, pi):
    """The starting basis in one call: the cold guide's column minima (``cold``), the
    candidate lists, the greedy plan and its tree (:func:`column_minima`,
    :func:`start_lists`, :func:`greedy_basis`, :func:`build_tree`). ``a``, ``b``:
    float64 copies (consumed)."""
    n, m = source_shape(src)
    if cold:
        column_minima(src, g0)
    start_lists(src, f0, g0, cold, lj, lc, lv, ci, cv)
    cell_i = np.empty(n + m, dtype=np.int64)
    cell_j = np.empty(n + m, dtype=np.int64)
    cell_x = np.empty(n + m)
    ncell = greedy_basis(src, a, b, f0, g0, lj, lv, ci, cv, cell_i, cell_j, cell_x)
    build_tree(src, ncell, cell_i, cell_j, cell_x, f0, g0, parent, flow, cost_up, depth,
               first_child, next_sib, prev_sib, pi)


@jit
def greedy_basis(src, a, b, f0, g0, lj, lv, ci, cv, cell_i, cell_j, cell_x):
    """A feasible starting plan whose cells form a forest (at most ``n + m - 1`` cells).

    Candidates: the row lists ``(lj, lv)`` and column lists ``(ci, cv)`` of
    :func:`start_lists`; taken in increasing reduced cost, a candidate whose row and
    column both have mass left gets the smaller of the two, which exhausts that row or
    column (the "matrix minimum" rule). Rows still holding mass are then served one by
    one by the cheapest column with mass left. Every cell exhausts a row or a column that
    was alive, so the cells are acyclic.

    ``a`` and ``b`` are float64 copies (consumed). Returns the number of cells written to
    ``cell_i``, ``cell_j``, ``cell_x`` (length >= n + m).
    """
    n, m = source_shape(src)
    K = lj.shape[1]
    kc = ci.shape[1]
    nc = n * K + m * kc
    cand_v = np.empty(nc)
    cand_i = np.empty(nc, dtype=np.int64)
    cand_j = np.empty(nc, dtype=np.int64)
    p = 0
    for i in range(n):
        for t in range(K):
            cand_v[p] = lv[i, t]
            cand_i[p] = i
            cand_j[p] = lj[i, t]
            p += 1
    for j in range(m):
        for t in range(kc):
            cand_v[p] = cv[j, t]
            cand_i[p] = ci[j, t]
            cand_j[p] = j
            p += 1
    order = stable_argsort(cand_v)  # stable: deterministic ties
    ncell = 0
    for t in range(nc):
        p = order[t]
        i = cand_i[p]
        j = cand_j[p]
        if a[i] > 0.0 and b[j] > 0.0:
            ncell = _assign(a, b, i, j, cell_i, cell_j, cell_x, ncell)
    # Rows with mass left: the cheapest live column, until the row is exhausted.
    live = np.empty(m, dtype=np.int64)
    nlive = 0
    for j in range(m):
        if b[j] > 0.0:
            live[nlive] = j
            nlive += 1
    buf = np.empty(m)
    for i in range(n):
        if not (a[i] > 0.0 and nlive > 0):
            continue
        # the row once (a view of a dense matrix): a call of _entry per live column
        # cost ~70 ns, mostly its tuple's reference counts (19 ms of a 784-bin problem)
        crow = _row(src, i, buf)
        while a[i] > 0.0 and nlive > 0:
            best = np.inf
            bt = 0
            fi = f0[i]
            for t in range(nlive):
                j = live[t]
                r = crow[j] - fi - g0[j]
                if r < best:
                    best = r
                    bt = t
            j = live[bt]
            ncell = _assign(a, b, i, j, cell_i, cell_j, cell_x, ncell)
            if not b[j] > 0.0:
                nlive -= 1
                live[bt] = live[nlive]
    return ncell


# Radix digits of 11 bits (2048 counters, 16 KB each): six passes over 64-bit keys.
_RADIX_BITS = 11
_RADIX_PASSES = 6
# Below this many keys Numba's merge sort is as fast as the radix passes, whose six
# histograms of 2048 counters are cleared and scanned whatever the number of keys
# (random keys: 16 us each at 1024, 3.9 against 7.8 us at 256, 35 against 27 at 2048).
_RADIX_MIN = 1024


@jit
def stable_argsort(v):
    """``np.argsort(v, kind="stable")`` of a contiguous float64 array, in the same
    order: NaN last, ``-0.0`` equal to ``+0.0``, ties in index order.

    An LSD radix sort of the keys' order-preserving unsigned transform (sign bit
    flipped for non-negative values, all bits for negative ones; zeros and NaN mapped
    to one key each), stable, skipping the digits that all keys share. Numba's merge
    sort took 68-93 ns an entry at 18,000-144,000 entries (the candidates of the
    500 to 4000-point uniform 2-D starts: 2.7 ms at n = 1000, whose solve takes
    32 ms); this takes 13-17 ns an entry (13 against 18 at 4000 keys).
    """
    nk = v.shape[0]
    if nk < _RADIX_MIN:
        return np.argsort(v, kind="mergesort")
    bits = v.view(np.uint64)
    top = np.uint64(1) << np.uint64(63)
    ones = ~np.uint64(0)
    nb = 1 << _RADIX_BITS
    mask = np.uint64(nb - 1)
    ka = np.empty(nk, dtype=np.uint64)
    ia = np.empty(nk, dtype=np.int64)
    hist = np.zeros((_RADIX_PASSES, nb), dtype=np.int64)
    for t in range(nk):
        x = v[t]
        if x == 0.0:
            k = top  # +0.0 and -0.0
        elif x != x:
            k = ones  # NaN, after +inf
        else:
            k = bits[t]
            if k & top:
                k = ~k
            else:
                k = k | top
        ka[t] = k
        ia[t] = t
        for d in range(_RADIX_PASSES):
            hist[d, np.int64((k >> np.uint64(d * _RADIX_BITS)) & mask)] += 1
    kb = np.empty(nk, dtype=np.uint64)
    ib = np.empty(nk, dtype=np.int64)
    for d in range(_RADIX_PASSES):
        h = hist[d]
        if h[np.int64((ka[0] >> np.uint64(d * _RADIX_BITS)) & mask)] == nk:
            continue  # one digit for all keys: the pass would not move them
        s = 0
        for c in range(nb):
            cnt = h[c]
            h[c] = s
            s += cnt
        sh = np.uint64(d * _RADIX_BITS)
        for t in range(nk):
            k = ka[t]
            c = np.int64((k >> sh) & mask)
            q = h[c]
            h[c] = q + 1
            kb[q] = k
            ib[q] = ia[t]
        ka, kb = kb, ka
        ia, ib = ib, ia
    return ia


@jit
def _assign(a, b, i, j, cell_i, cell_j, cell_x, ncell):
    """Send ``min(a_i, b_j)`` from ``i`` to ``j``; the smaller side becomes exactly 0."""
    if a[i] <= b[j]:
        x = a[i]
        b[j] -= x
        a[i] = 0.0
    else:
        x = b[j]
        a[i] -= x
        b[j] = 0.0
    cell_i[ncell] = i
    cell_j[ncell] = j
    cell_x[ncell] = x
    return ncell + 1


@jit
def build_tree(src, ncell, cell_i, cell_j, cell_x, f0, g0, parent, flow, cost_up, depth,
               first_child, next_sib, prev_sib, pi):
    """The starting tree: the forest of cells, each component hung from the root by a
    zero-flow artificial arc, its potentials offset to match the guide ``(f0, g0)`` on
    average. Fills the tree arrays (length ``n + m + 1``)."""
    n, m = source_shape(src)
    nn = n + m
    root = nn
    deg = np.zeros(nn + 1, dtype=np.int64)
    for t in range(ncell):
        deg[cell_i[t] + 1] += 1
        deg[n + cell_j[t] + 1] += 1
    for u in range(nn):
        deg[u + 1] += deg[u]
    fill = deg[:nn].copy()
    adj = np.empty(2 * ncell, dtype=np.int64)
    adj_x = np.empty(2 * ncell)
    for t in range(ncell):
        u = cell_i[t]
        v = n + cell_j[t]
        adj[fill[u]] = v
        adj_x[fill[u]] = cell_x[t]
        fill[u] += 1
        adj[fill[v]] = u
        adj_x[fill[v]] = cell_x[t]
        fill[v] += 1
    for u in range(nn + 1):
        parent[u] = -1
        first_child[u] = -1
        next_sib[u] = -1
        prev_sib[u] = -1
    depth[root] = 0
    pi[root] = 0.0
    stack = np.empty(nn, dtype=np.int64)
    members = np.empty(nn, dtype=np.int64)
    for s in range(nn):
        if parent[s] != -1:
            continue
        parent[s] = root
        flow[s] = 0.0
        cost_up[s] = 0.0
        depth[s] = 1
        pi[s] = 0.0
        _add_child(root, s, first_child, next_sib, prev_sib)
        top = 0
        stack[0] = s
        nmem = 0
        while top >= 0:
            u = stack[top]
            top -= 1
            members[nmem] = u
            nmem += 1
            for p in range(deg[u], deg[u + 1]):
                v = adj[p]
                if v == parent[u]:
                    continue
                parent[v] = u
                flow[v] = adj_x[p]
                cost_up[v] = _entry(src, u, v - n) if u < n else _entry(src, v, u - n)
                depth[v] = depth[u] + 1
                _add_child(u, v, first_child, next_sib, prev_sib)
                pi[v] = _pi_from_parent(n, v, u, pi, cost_up)
                top += 1
                stack[top] = v
        shift = 0.0
        for t in range(nmem):
            u = members[t]
            guide = -f0[u] if u < n else g0[u - n]
            shift += guide - pi[u]
        shift /= nmem
        for t in range(nmem):
            pi[members[t]] += shift


@jit
def _pi_from_parent(n, u, p, pi, cost_up):
    """The potential of ``u`` that gives its (real) tree arc to ``p`` reduced cost 0."""
    if u < n:
        return pi[p] - cost_up[u]
    return pi[p] + cost_up[u]


@jit
def _add_child(p, u, first_child, next_sib, prev_sib):
    c = first_child[p]
    next_sib[u] = c
    prev_sib[u] = -1
    if c != -1:
        prev_sib[c] = u
    first_child[p] = u


@jit
def _remove_child(p, u, first_child, next_sib, prev_sib):
    nx = next_sib[u]
    pv = prev_sib[u]
    if pv == -1:
        first_child[p] = nx
    else:
        next_sib[pv] = nx
    if nx != -1:
        prev_sib[nx] = pv


@jit
def _price_list(pi, n, lj, lc, state, block, eps):
    """Block search over the candidate lists from entry ``state[0]``: ``(i, j, C_ij)`` of
    the most negative reduced cost (below ``-eps``) in the first block that has one (the
    cost read from the list, which holds ``C_ij`` as :func:`_entry` computes it), or
    ``(-1, -1, 0.0)`` after a pass over all lists without one."""
    nr, K = lj.shape
    total = nr * K
    e = state[0]
    i = e // K
    t = e - i * K
    bi = -1
    bj = -1
    bc = 0.0
    best = -eps
    scanned = 0
    cnt = 0
    while scanned < total:
        seg = min(K - t, total - scanned, block - cnt)
        thr = best - pi[i]
        for s in range(t, t + seg):
            c = lc[i, s]
            r = c - pi[n + lj[i, s]]
            if r < thr:
                thr = r
                bi = i
                bj = lj[i, s]
                bc = c
        best = thr + pi[i]
        scanned += seg
        cnt += seg
        t += seg
        if t == K:
            t = 0
            i += 1
            if i == nr:
                i = 0
        if cnt == block:
            if bi >= 0:
                break
            cnt = 0
    state[0] = i * K + t
    return bi, bj, bc


@jit
def _sweep(src, pi, lj, lc, lv, eps):
    """Full pricing: every row's list becomes its ``K`` smallest current reduced costs.
    Returns True when some reduced cost is below ``-eps``.

    Within a row the order of ``C_ij - pi_{n+j}`` is that of the reduced costs. The old
    list bounds the new ``K``-th smallest value (``theta``, the largest current value
    of the old entries), so one vectorizable pass writes the row's values and flags
    those at most ``theta``, and only the flagged entries, found eight flags at a time,
    go through the insertion scan (in index order, with its shrinking ``theta``). A
    count over chunks of 16 entries, which did not vectorize, and a scan of the chunks
    with a flagged entry took 2.5 ms a sweep at n = m = 1000 (two sweeps a solve).
    """
    n, m = source_shape(src)
    K = lj.shape[1]
    buf = np.empty(m)
    pj = pi[n:n + m]
    rb = np.empty(m)  # the row's C_ij - pi_{n+j}
    hit = np.empty(m + 8, dtype=np.int64)
    nw = (m + 7) // 8
    flags = np.zeros(8 * nw, dtype=np.uint8)  # the padding stays 0
    words = flags.view(np.uint64)
    found = False
    for i in range(n):
        crow = _row(src, i, buf)
        row_v = lv[i]
        row_j = lj[i]
        theta = -np.inf
        for t in range(K):
            v = crow[row_j[t]] - pj[row_j[t]]
            if v > theta:
                theta = v
            row_v[t] = np.inf
        for j in range(m):
            r = crow[j] - pj[j]
            rb[j] = r
            flags[j] = r <= theta
        nh = _gather_flagged(words, flags, hit)
        for h in range(nh):
            jj = hit[h]
            r = rb[jj]
            if r <= theta:
                _insert_sorted(row_v, row_j, K, r, jj)
                if row_v[K - 1] < theta:
                    theta = row_v[K - 1]
        for t in range(K):
            lc[i, t] = crow[row_j[t]]
        if row_v[0] < -eps - pi[i]:  # the test of _price_list
            found = True
    return found


@jit
def pivots(src, parent, flow, cost_up, depth, first_child, next_sib, prev_sib, pi, lj, lc,
           lv, state, block, eps, budget):
    """Run at most ``budget`` pivots. Returns ``(code, pivots_done)``: ``DONE`` when no
    reduced cost is below ``-eps`` (optimal), ``BUDGET`` otherwise. ``state[1]`` counts
    the full sweeps."""
    n, m = source_shape(src)
    root = n + m
    for it in range(budget):
        i, jc, cin = _price_list(pi, n, lj, lc, state, block, eps)
        if i < 0:
            state[1] += 1
            if not _sweep(src, pi, lj, lc, lv, eps):
                return DONE, it
            state[0] = 0
            i, jc, cin = _price_list(pi, n, lj, lc, state, block, eps)
            if i < 0:  # rounding between the two passes: trust the list
                return DONE, it
        j = n + jc
        # apex of the cycle
        u = i
        v = j
        while u != v:
            du = depth[u]
            dv = depth[v]
            if du >= dv:
                u = parent[u]
            if dv >= du:
                v = parent[v]
        join = u
        # Leaving arc: the cycle runs join -> ... -> i -> j -> ... -> join; Cunningham's
        # rule takes the last blocking arc in that order (strict on the i-side walked
        # upwards, non-strict on the j-side walked upwards).
        delta = np.inf
        leave = -1
        leave_iside = True
        u = i
        while u != join:
            if u < n or parent[u] == root:  # traversed against its direction
                if flow[u] < delta:
                    delta = flow[u]
                    leave = u
            u = parent[u]
        u = j
        while u != join:
            if u >= n and parent[u] != root:
                if flow[u] <= delta:
                    delta = flow[u]
                    leave = u
                    leave_iside = False
            u = parent[u]
        if leave < 0:  # cannot happen: every cycle has an arc traversed backwards
            return DONE, it
        if delta > 0.0:
            u = i
            while u != join:
                if u < n or parent[u] == root:
                    flow[u] -= delta
                else:
                    flow[u] += delta
                u = parent[u]
            u = j
            while u != join:
                if u >= n and parent[u] != root:
                    flow[u] -= delta
                else:
                    flow[u] += delta
                u = parent[u]
        # Re-hang the subtree below the leaving arc from the entering arc, reversing
        # the stem from the entering endpoint q up to the leaving node.
        if leave_iside:
            q = i
            newp = j
        else:
            q = j
            newp = i
        prev = newp
        prev_flow = delta
        prev_cost = cin  # C[i, jc], from the list
        u = q
        while True:
            nxt = parent[u]
            nxt_flow = flow[u]
            nxt_cost = cost_up[u]
            _remove_child(nxt, u, first_child, next_sib, prev_sib)
            parent[u] = prev
            flow[u] = prev_flow
            cost_up[u] = prev_cost
            _add_child(prev, u, first_child, next_sib, prev_sib)
            if u == leave:
                break
            prev = u
            prev_flow = nxt_flow
            prev_cost = nxt_cost
            u = nxt
        # Depths and potentials of the moved subtree, from the parents (preorder).
        u = q
        while True:
            p = parent[u]
            depth[u] = depth[p] + 1
            pi[u] = _pi_from_parent(n, u, p, pi, cost_up)
            c = first_child[u]
            if c != -1:
                u = c
                continue
            while u != q and next_sib[u] == -1:
                u = parent[u]
            if u == q:
                break
            u = next_sib[u]
    return BUDGET, budget


@jit
def tolerance(pi, rc_tol, cap, neg):
    """The pricing tolerance ``rc_tol * min(2 max|pi| + neg, cap)`` (see ``ottools.emd``'s
    ``rc_tol``): ``cap`` is ``max|C|``, ``neg`` is ``max(0, -min C)``. A NaN potential
    gives ``cap``, as NumPy's ``max`` propagating it would."""
    big = abs(pi[0])
    for u in range(1, pi.size):
        v = abs(pi[u])
        if v > big or v != v:
            big = v
    s = 2.0 * big + neg
    return rc_tol * (s if s < cap else cap)


@jit
def pivot_round(src, parent, flow, cost_up, depth, first_child, next_sib, prev_sib, pi, lj,
                lc, lv, state, block, rc_tol, cap, neg, budget):
    """One call of the driver's loop: at most ``budget`` :func:`pivots` under the
    tolerance of the potentials at the start. Returns ``(pivots_done, optimal)``. When
    the pivots find nothing to price and the tolerance has shrunk since the start (a
    large cost left the basis), a full sweep at the current tolerance decides."""
    eps = tolerance(pi, rc_tol, cap, neg)
    code, done = pivots(src, parent, flow, cost_up, depth, first_child, next_sib, prev_sib,
                        pi, lj, lc, lv, state, block, eps, budget)
    if code != DONE:
        return done, False
    now = tolerance(pi, rc_tol, cap, neg)
    return done, now >= eps or not _sweep(src, pi, lj, lc, lv, now)


@jit
def solve_start(src, a, b, f0, g0, cold, lj, lc, lv, ci, cv, parent, flow, cost_up, depth,
                first_child, next_sib, prev_sib, pi, state, block, rc_tol, cap, neg, budget):
    """:func:`start`, then the first :func:`pivot_round`, in one call (a small problem
    is solved in it). Returns ``(pivots_done, optimal)``."""
    start(src, a, b, f0, g0, cold, lj, lc, lv, ci, cv, parent, flow, cost_up, depth,
          first_child, next_sib, prev_sib, pi)
    return pivot_round(src, parent, flow, cost_up, depth, first_child, next_sib, prev_sib,
                       pi, lj, lc, lv, state, block, rc_tol, cap, neg, budget)


@jit
def is_optimal(src, pi, lj, lc, lv, eps):
    """True when no reduced cost is below ``-eps`` (a full sweep; refreshes the lists)."""
    return not _sweep(src, pi, lj, lc, lv, eps)


@jit
def tree_plan(n, m, parent, flow, rows, cols, vals):
    """The plan's cells: real tree arcs with positive flow. Returns their number."""
    root = n + m
    cnt = 0
    for u in range(n + m):
        p = parent[u]
        if p == root or not flow[u] > 0.0:
            continue
        if u < n:
            rows[cnt] = u
            cols[cnt] = p - n
        else:
            rows[cnt] = p
            cols[cnt] = u - n
        vals[cnt] = flow[u]
        cnt += 1
    return cnt


@jit
def plan_arrays(src, parent, flow, pi, rows, cols, width, a, b, data, indices, indptr, f, g,
                potentials):
    """The result's arrays from the final tree, in one call.

    The plan's cells (:func:`tree_plan`) as CSR of the full problem in ``data``,
    ``indices``, ``indptr`` (``rows``, ``cols`` map the compressed indices to the full
    ones, ``width`` is the full number of columns). ``a``, ``b``: the compressed weights
    (any float dtype, read as float64). Returns ``(cells, fun, gap, dual_value)``:
    ``fun = <P, C>`` summed in tree (node) order, ``gap`` the marginal error
    ``||P 1 - a||_1 + ||P^T 1 - b||_1`` (marginals summed in that order), and, when
    ``potentials`` (no zero weights: ``f``, ``g`` have lengths ``n``, ``m``), the centred
    potentials ``f = -pi[:n] + s``, ``g = pi[n:n + m] - s`` (``<f, a> = <g, b>``) written
    in the dtype of ``f`` and ``g``, and ``dual_value = <f, a> + <g, b>`` of the written
    values (float64 sums); else ``dual_value`` is 0 and ``f``, ``g`` are left alone."""
    n, m = source_shape(src)
    cell_i = np.empty(n + m, dtype=np.int64)
    cell_j = np.empty(n + m, dtype=np.int64)
    vals = np.empty(n + m)
    cnt = tree_plan(n, m, parent, flow, cell_i, cell_j, vals)
    row_sums = np.zeros(n)
    col_sums = np.zeros(m)
    key = np.empty(cnt, dtype=np.int64)
    fun = 0.0
    for t in range(cnt):
        i = cell_i[t]
        j = cell_j[t]
        fun += vals[t] * _entry(src, i, j)
        row_sums[i] += vals[t]
        col_sums[j] += vals[t]
        key[t] = rows[i] * width + cols[j]
    order = np.argsort(key)  # the cells are distinct: any sort gives this order
    indptr[:] = 0
    for s in range(cnt):
        t = order[s]
        data[s] = vals[t]
        indices[s] = cols[cell_j[t]]
        indptr[rows[cell_i[t]] + 1] += 1
    for r in range(indptr.size - 1):
        indptr[r + 1] += indptr[r]
    gap = 0.0
    for i in range(n):
        gap += abs(row_sums[i] - np.float64(a[i]))
    for j in range(m):
        gap += abs(col_sums[j] - np.float64(b[j]))
    dual = 0.0
    if potentials:
        fa = 0.0
        gb = 0.0
        mass = 0.0
        for i in range(n):
            fa -= pi[i] * np.float64(a[i])
            mass += np.float64(a[i])
        for j in range(m):
            gb += pi[n + j] * np.float64(b[j])
        shift = (gb - fa) / (2.0 * mass)
        for i in range(n):
            f[i] = -pi[i] + shift
            dual += np.float64(f[i]) * np.float64(a[i])
        for j in range(m):
            g[j] = pi[n + j] - shift
            dual += np.float64(g[j]) * np.float64(b[j])
    return cnt, fun, gap, dual
