"""Sparsity-constrained / quadratically regularized OT kernels: value and gradient in one pass.

All kernels work on the compressed problem (every weight > 0) and read the cost
transposed, ``cost_t`` of shape (m, n) and C-contiguous, so that column ``j`` of the
plan is the contiguous row ``cost_t[j]``. ``reg`` is gamma, ``k`` the most non-zeros per
column.

Per column ``j`` only a few entries can carry mass, and they are found in O(n):

- dual: ``t_j = [x]_+ / reg`` restricted to the ``k`` largest entries, ``x = f + g_j - c_j``.
  Only positive entries are candidates; if there are more than ``k``, a quickselect
  (expected O(count), no sort) keeps the ``k`` largest.
- semi-dual: ``t_j = [x - tau_j]_+ / reg`` restricted to the ``k`` largest entries of
  ``x = f - c_j``, with ``sum(t_j) = b_j`` (the k-sparse simplex projection of
  ``x / (reg b_j)``, scaled by ``b_j``). The support of a simplex projection lies in
  ``{x_i > max(x) - reg b_j}``: one pass keeps the ``k`` largest entries above the
  running ``max(x) - reg b_j`` (sorted by insertion for ``k <= 16``; else buffered, then
  a quickselect and a sort), and those (<= k) values give the threshold ``tau_j``.

Value and gradient come in two twins: a serial kernel, and a ``parallel=True`` one that
runs fixed blocks of columns over Numba's threads (from 2**23 entries on), each block
with its own selection buffers and row-sum accumulator, summed in block order at the
end. The number of blocks
depends on the problem size only (:func:`column_blocks`), never on the thread count, so
results are the same whatever ``numba.set_num_threads`` says and whatever other threads
do; small problems use the serial twin and never compile the parallel one.

The loops over columns (``_dual_cols``, ``_semi_cols``), the quickselect, the sort,
the count and ``column_tops`` are compiled without Numba's runtime (``NO_NRT``,
:mod:`._jit`); they create no arrays. With the runtime, every call of a helper, inlined
or not, incremented and decremented the reference counts of its array arguments with
atomic instructions: read by ``perf``, about 60 % of a 200 x 200 semi-dual evaluation.
The column functions (``_dual_column``, ``_semi_column``) and ``_prune`` are inlined
into those loops at Numba's IR level (``inline="always"``), so a column costs no call
either: the evaluation at the hard grid problem's maximum went from 21 us to 7 us. In
those loops a column is a slice (``cost_t[j]``, free without the runtime) indexed from
0: indexed as ``flat[lo + r]``, Numba's test for negative indices kept the count
scalar.

The quasi-Newton helpers (:func:`lbfgs_direction`, :func:`bfgs_update`, :func:`sym_matvec`,
:func:`dot`) keep the optimiser's vector
algebra out of BLAS, whose threaded reductions may round differently with the thread
count.
"""

import numpy as np
from numba import prange

from ._jit import FASTMATH_SAFE, NO_NRT, jit


@jit(**NO_NRT)
def _quickselect(vals, idx, cnt, k):
    """Reorder ``vals[:cnt]`` (and ``idx``) so that the first ``k`` are the ``k`` largest.

    Expected O(cnt): Lomuto partitions (descending) around a median-of-three pivot.
    """
    lo = 0
    hi = cnt - 1
    target = k - 1
    while lo < hi:
        mid = (lo + hi) // 2
        # median of three moved to hi
        if vals[mid] > vals[lo]:
            vals[mid], vals[lo] = vals[lo], vals[mid]
            idx[mid], idx[lo] = idx[lo], idx[mid]
        if vals[hi] > vals[lo]:
            vals[hi], vals[lo] = vals[lo], vals[hi]
            idx[hi], idx[lo] = idx[lo], idx[hi]
        if vals[mid] > vals[hi]:
            vals[mid], vals[hi] = vals[hi], vals[mid]
            idx[mid], idx[hi] = idx[hi], idx[mid]
        pivot = vals[hi]
        store = lo
        for r in range(lo, hi):
            if vals[r] > pivot:
                vals[r], vals[store] = vals[store], vals[r]
                idx[r], idx[store] = idx[store], idx[r]
                store += 1
        vals[hi], vals[store] = vals[store], vals[hi]
        idx[hi], idx[store] = idx[store], idx[hi]
        if store == target:
            return
        elif store > target:
            hi = store - 1
        else:
            lo = store + 1


@jit(**NO_NRT)
def _sort_pairs(vals, idx, cnt, by_idx):
    """Sort ``(vals, idx)[:cnt]`` together: descending ``vals``, or ascending ``idx``
    with ``by_idx`` (canonical sparse column order). Insertion sort for short runs."""
    if cnt <= 32:
        for r in range(1, cnt):
            v = vals[r]
            ii = idx[r]
            s = r - 1
            while s >= 0 and ((idx[s] > ii) if by_idx else (vals[s] < v)):
                vals[s + 1] = vals[s]
                idx[s + 1] = idx[s]
                s -= 1
            vals[s + 1] = v
            idx[s + 1] = ii
    else:  # heap sort, in place (no allocation: see NO_NRT)
        for start in range(cnt // 2 - 1, -1, -1):
            _sift(vals, idx, start, cnt, by_idx)
        for end in range(cnt - 1, 0, -1):
            vals[0], vals[end] = vals[end], vals[0]
            idx[0], idx[end] = idx[end], idx[0]
            _sift(vals, idx, 0, end, by_idx)


@jit(inline="always")
def _sort_ints(v, cnt):
    """Sort ``v[:cnt]`` in increasing order (insertion: a few entries)."""
    for r in range(1, cnt):
        x = v[r]
        s = r - 1
        while s >= 0 and v[s] > x:
            v[s + 1] = v[s]
            s -= 1
        v[s + 1] = x


@jit(inline="always")
def _later(vals, idx, p, q, by_idx):
    """Whether entry ``p`` sorts after entry ``q`` (see :func:`_sort_pairs`)."""
    return idx[p] > idx[q] if by_idx else vals[p] < vals[q]


@jit(inline="always")
def _sift(vals, idx, root, end, by_idx):
    """Sift entry ``root`` down the heap ``[0, end)`` (the entry sorting last on top)."""
    while 2 * root + 1 < end:
        child = 2 * root + 1
        if child + 1 < end and _later(vals, idx, child + 1, child, by_idx):
            child += 1
        if not _later(vals, idx, child, root, by_idx):
            return
        vals[root], vals[child] = vals[child], vals[root]
        idx[root], idx[child] = idx[child], idx[root]
        root = child


@jit(inline="always")
def _prune(vals, idx, cnt, k, floor):
    """Drop entries <= ``floor``, then keep the ``k`` largest; returns ``(cnt, kth)`` where
    ``kth`` is the smallest kept value when ``k`` were kept, else ``floor``."""
    c = 0
    for r in range(cnt):
        if vals[r] > floor:
            vals[c] = vals[r]
            idx[c] = idx[r]
            c += 1
    if c < k:
        return c, floor
    if c > k:
        _quickselect(vals, idx, c, k)
    kth = vals[0]
    for r in range(1, k):
        if vals[r] < kth:
            kth = vals[r]
    return k, kth


@jit(inline="always")
def _dual_column(f, gj, crow, rows, ws, k, vals, idx):
    """Support of one dual column: ``vals[:cnt] = x`` (> 0) at rows ``idx[:cnt]``, cnt <= k.
    ``crow`` is the column's cost, or with ``ws`` the costs of the rows ``rows`` of its
    working set.

    Buffered selection: entries above the running threshold (0, then the k-th largest so
    far) are appended; when the buffer of ``cap`` entries is full it is cut back to the
    ``k`` largest and the threshold rises. O(n) with few writes.
    """
    cap = min(f.shape[0], max(2 * k, k + 64))
    thr = 0.0
    cnt = 0
    for r in range(crow.shape[0]):
        i = rows[r] if ws else r
        x = f[i] + gj - crow[r]
        if x > thr:
            vals[cnt] = x
            idx[cnt] = i
            cnt += 1
            if cnt == cap:
                cnt, thr = _prune(vals, idx, cnt, k, thr)
    if cnt > k:
        cnt, thr = _prune(vals, idx, cnt, k, 0.0)
    return cnt


# Up to this many entries per column, the k largest are kept sorted while scanning
# (insertion), instead of buffered, selected and sorted afterwards.
INSERT_K = 16


@jit(inline="always")
def _insert_sorted(vals, idx, cnt, k, x, i):
    """Insert ``x`` (row ``i``) into ``vals[:cnt]``, ``idx[:cnt]``, kept in decreasing
    order with at most ``k`` entries (when full, the smallest drops; ``x`` goes after
    entries equal to it); returns the new count."""
    p = cnt if cnt < k else k - 1
    while p > 0 and vals[p - 1] < x:
        vals[p] = vals[p - 1]
        idx[p] = idx[p - 1]
        p -= 1
    vals[p] = x
    idx[p] = i
    return cnt + 1 if cnt < k else cnt


@jit(**NO_NRT)
def _count_above(f, crow, thr, t1, t2):
    """How many ``x_r = f[r] - crow[r]`` exceed ``thr``, ``t1`` and ``t2`` (vectorised:
    integer counts, where a running maximum would not be without fast-math's no-NaN flag;
    a loop indexed as ``flat[lo + r]`` was not, Numba's test for negative indices kept it
    scalar, 5x slower)."""
    c0 = 0
    c1 = 0
    c2 = 0
    for r in range(crow.shape[0]):
        x = f[r] - crow[r]
        c0 += x > thr
        c1 += x > t1
        c2 += x > t2
    return c0, c1, c2


@jit(inline="always")
def _semi_column(f, crow, rows, ws, z, k, vals, idx, hints, j, bounds, drift):
    """One semi-dual column: ``vals[:cnt] = x - tau > 0`` at rows ``idx[:cnt]``; returns
    ``(cnt, tau, xt)`` with ``xt = sum_r x_r (x_r - tau)`` (for the objective).
    ``crow``, ``rows``, ``ws`` as in :func:`_dual_column`.

    ``z = reg * b_j``: ``sum_r (x_r - tau) = z``, i.e. the column sums to ``b_j`` once
    divided by ``reg``. One pass: an entry is kept while it exceeds both the running
    ``max(x) - z`` and the k-th largest value so far. For ``k <= 16`` the kept entries
    stay sorted (:func:`_insert_sorted`: an entry equal to one kept goes after it);
    larger ``k`` buffer them as in ``_dual_column`` and select and sort at the end. The
    insertion took 27 us against 36 us for a 200 x 200 evaluation with k = 2 (8
    candidates per column): the buffer's quickselect and sort cost more than the scan.

    ``hint = hints[j]`` (full columns, ``k <= 16`` and ``k < n``; else ``hints`` is empty
    or ignored): ``k + 1`` rows in increasing
    order (``-1`` pads), those of the ``k + 1`` largest entries at an earlier point,
    which the call replaces with this point's. They bound the scan's threshold from
    below: ``max_hint x - z`` is at most the final ``max(x) - z``, and below the smallest
    of ``k + 1`` entries lies no entry of the ``k + 1`` largest. When no other row
    exceeds that bound (one vectorised count over the column; most columns once the
    iterates settle) only the hinted rows are scanned, in row order; else the whole
    column from the bound. Either way the scan keeps what a scan from ``-inf`` keeps,
    in the same order: the same result to the bit.

    ``bounds[j]`` and ``drift`` (with hints; see :func:`semi_dual_value_grad`) may show
    that no other row can exceed that bound, without the count.
    """
    insert = k <= INSERT_K
    # hints need the sorted insertion and k + 1 <= n entries; else they are ignored
    hinted = hints.shape[0] > 0 and insert and k < f.shape[0]
    kk = k + 1 if hinted else k  # the scan keeps k + 1 when they become the hint
    cap = min(f.shape[0], max(2 * k, k + 64))
    xmax = -np.inf
    thr = -np.inf
    cnt = 0
    nscan = crow.shape[0]  # rows scanned: all, or only the hinted ones
    only_hint = False
    nh = 0
    fresh = np.inf  # the column's bound after this call (see below)
    if hinted and hints[j, 0] >= 0:
        xlo = np.inf
        xhi = -np.inf
        for r in range(kk):
            i = hints[j, r]
            if i < 0:
                break
            x = f[i] - crow[i]
            xlo = min(xlo, x)
            xhi = max(xhi, x)
            nh += 1
        thr = xhi - z
        if nh == kk:  # just below xlo (a double or more; libm's nextafter costs more)
            below = xlo - (abs(xlo) * 2.3e-16 + 5e-324)
            if not below < xlo:  # inf, nan
                below = np.nextafter(xlo, -np.inf)
            thr = max(thr, below)
        # the other rows lie at most at bounds[j] + drift (inf: unknown); with a margin
        # far above the rounding of the sums that give it
        other = bounds[j] + drift
        if other + 1e-9 * (abs(other) + abs(thr) + drift) < thr:
            only_hint = True
            nscan = nh
            fresh = bounds[j]
        else:
            # and how far below the bound they lie: at least the column's gap, or
            # four times that (the gap grows, stays, or shrinks fourfold)
            m = hints.shape[0]
            gap = bounds[m + j] if bounds[m + j] > 0.0 else z
            t1 = thr - gap
            t4 = thr - 4.0 * gap
            above, near, far = _count_above(f, crow, thr, t1, t4)
            for r in range(nh):
                i = hints[j, r]
                x = f[i] - crow[i]
                above -= x > thr
                near -= x > t1
                far -= x > t4
            if above == 0:  # no other row is a candidate
                only_hint = True
                nscan = nh
                if far == 0:
                    fresh = t4 - drift
                    bounds[m + j] = 4.0 * gap
                elif near == 0:
                    fresh = t1 - drift
                else:
                    bounds[m + j] = 0.25 * gap
    if only_hint:  # the scan below on the hinted rows (hints imply k <= 16: insertion)
        for r in range(nscan):
            i = hints[j, r]
            x = f[i] - crow[i]
            if x > thr:
                if x > xmax:
                    xmax = x
                    if xmax - z > thr:
                        thr = xmax - z
                cnt = _insert_sorted(vals, idx, cnt, kk, x, i)
                if cnt == kk and vals[kk - 1] > thr:
                    thr = vals[kk - 1]
    else:  # (one loop with the row source inside it ran the full scan 40 % slower)
        for r in range(nscan):
            i = rows[r] if ws else r
            x = f[i] - crow[r]
            if x > thr:
                if x > xmax:
                    xmax = x
                    if xmax - z > thr:
                        thr = xmax - z
                if insert:
                    cnt = _insert_sorted(vals, idx, cnt, kk, x, i)
                    if cnt == kk and vals[kk - 1] > thr:
                        thr = vals[kk - 1]
                else:
                    vals[cnt] = x
                    idx[cnt] = i
                    cnt += 1
                    if cnt == cap:
                        cnt, kth = _prune(vals, idx, cnt, k, xmax - z)
                        thr = max(kth, xmax - z)
    if hinted:
        # the bound stays (or becomes) valid while the hinted rows stay the same
        bounds[j] = fresh if only_hint and cnt == nh else np.inf
        for r in range(kk):
            hints[j, r] = idx[r] if r < cnt else -1
        _sort_ints(hints[j], cnt)
        cnt = min(cnt, k)
    floor = xmax - z
    if insert:  # entries kept before the maximum rose may have fallen below the floor
        while cnt > 0 and not vals[cnt - 1] > floor:
            cnt -= 1
    else:
        cnt, kth = _prune(vals, idx, cnt, k, floor)
    if cnt == 0:  # z underflows against xmax: all mass on the argmax
        for r in range(crow.shape[0]):
            i = rows[r] if ws else r
            if f[i] - crow[r] == xmax:
                vals[0] = xmax
                idx[0] = i
                cnt = 1
                break
    if k > INSERT_K:
        _sort_pairs(vals, idx, cnt, False)
    # simplex threshold on the (sorted) top values: largest rho with v_rho > (S_rho - z)/rho
    csum = 0.0
    tau = vals[0] - z
    rho = 1
    for r in range(cnt):
        csum += vals[r]
        t = (csum - z) / (r + 1)
        if vals[r] > t:
            tau = t
            rho = r + 1
    xt = 0.0
    for r in range(rho):
        x = vals[r]
        vals[r] = x - tau
        xt += x * (x - tau)
    return rho, tau, xt


# ------------------------------------------------------------------ working sets
@jit(inline="always")
def _no_ws():
    """Empty working sets: the kernels read the full columns."""
    return (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float64))


@jit
def working_set(f, g, cost_t, reg, b, semi, margin, ptr, rows, costs):
    """The rows of each column that can carry mass near ``f`` (and ``g``), with their
    costs: column ``j`` keeps the rows ``rows[ptr[j]:ptr[j + 1]]`` (increasing) where
    ``x = f_i - c_ij`` is at least ``max_i x - reg b_j - margin`` (semi-dual) or
    ``-g_j - margin`` (dual). For potentials within ``margin / 2`` (semi-dual, sup norm
    of the change of ``f``) or ``margin`` (dual, change of ``f`` plus that of ``g_j``),
    every entry that the full kernels would keep is in the set, and the evaluation on the
    sets equals the full one to the bit (same candidates, same sums in the same order).
    Returns the number of entries, or -1 when they do not fit in ``rows``."""
    m, n = cost_t.shape
    cap = rows.shape[0]
    p = 0
    for j in range(m):
        crow = cost_t[j]
        if semi:
            xmax = -np.inf
            for i in range(n):
                x = f[i] - crow[i]
                if x > xmax:
                    xmax = x
            floor = xmax - reg * b[j] - margin
        else:
            floor = -g[j] - margin
        ptr[j] = p
        for i in range(n):
            if f[i] - crow[i] >= floor:
                if p == cap:
                    return -1
                rows[p] = i
                costs[p] = crow[i]
                p += 1
    ptr[m] = p
    return p


# ------------------------------------------------------------------ value and gradient
# Columns are cut into blocks: at most _MAX_BLOCKS, at least _BLOCK_COLUMNS columns each,
# from PARALLEL_MIN_ENTRIES entries on. Measured on the 2-core development machine under
# load (benchmarks/sparse_speed.py's problems): at 1000 x 1000 the serial kernel takes
# 1.0 ms and the parallel one 16 ms (median; OpenMP threads waiting for busy cores), at
# 2000 x 2000 7 ms against 17 ms: the parallel twin only pays on large problems and idle
# cores, hence the high threshold.
PARALLEL_MIN_ENTRIES = 1 << 23
_MAX_BLOCKS = 16
_BLOCK_COLUMNS = 32


def column_blocks(m, n):
    """Number of column blocks for an (n, m) problem: 1 (the serial twin) below
    ``PARALLEL_MIN_ENTRIES`` entries, else ``min(16, m // 32)``: a function of the size
    only, so that the order of the float sums, hence the result, never depends on the
    number of threads."""
    if n * m < PARALLEL_MIN_ENTRIES:
        return 1
    return max(1, min(_MAX_BLOCKS, m // _BLOCK_COLUMNS))


@jit(**NO_NRT)
def _dual_cols(f, g, cost_t, ws, reg, k, rowsum, grad_g, b, vals, idx, j0, j1):
    """Columns ``j0:j1`` of the dual: adds the row sums of ``T`` into ``rowsum``, writes
    ``grad_g``; returns ``(sum_j g_j b_j, sum_j |x_j|^2)`` over the kept entries. Reads
    the full columns of ``cost_t``, or with ``ws = (ptr, rows, costs)`` non-empty the
    working sets (:func:`working_set`)."""
    ptr, rows, costs = ws
    inv = 1.0 / reg
    gb = 0.0
    sq_all = 0.0
    for j in range(j0, j1):
        gb += g[j] * b[j]
        if ptr.shape[0]:
            lo, hi = ptr[j], ptr[j + 1]
            cnt = _dual_column(f, g[j], costs[lo:hi], rows[lo:hi], True, k, vals, idx)
        else:
            cnt = _dual_column(f, g[j], cost_t[j], rows, False, k, vals, idx)
        s = 0.0
        sq = 0.0
        for r in range(cnt):
            x = vals[r]
            s += x
            sq += x * x
            rowsum[idx[r]] += x * inv
        sq_all += sq
        grad_g[j] = b[j] - s * inv
    return gb, sq_all


@jit(**NO_NRT)
def _semi_cols(f, b, cost_t, ws, reg, k, rowsum, tau, vals, idx, j0, j1, hints, bounds,
               drift):
    """Columns ``j0:j1`` of the semi-dual: adds the row sums of ``T`` into ``rowsum``,
    writes ``tau``; returns the columns' part of the objective. ``ws`` as in
    :func:`_dual_cols`; ``hints``: a hint per column (:func:`_semi_column`), or none
    (shape (0, 1)), unused on working sets; with them ``bounds`` and ``drift`` as in
    :func:`semi_dual_value_grad`."""
    ptr, rows, costs = ws
    inv = 1.0 / reg
    obj = 0.0
    for j in range(j0, j1):
        if ptr.shape[0]:
            lo, hi = ptr[j], ptr[j + 1]
            cnt, tj, xt = _semi_column(f, costs[lo:hi], rows[lo:hi], True, reg * b[j], k,
                                       vals, idx, hints[:0], j, bounds, 0.0)
        else:
            cnt, tj, xt = _semi_column(f, cost_t[j], rows, False, reg * b[j], k, vals, idx,
                                       hints, j, bounds, drift)
        tau[j] = tj
        sq = 0.0
        for r in range(cnt):
            t = vals[r] * inv
            sq += t * t
            rowsum[idx[r]] += t
        # <t, x> - reg/2 |t|^2 with t = (x - tau)/reg, as tau b_j + reg/2 |t|^2 (sum t =
        # b_j): <t, x> = sum x (x - tau) / reg cancelled to n eps |x|^2 / reg (50 x 1 at
        # reg 1e-4: a stall at err 2e-3, dual_value above the optimum)
        obj -= tj * b[j] + 0.5 * reg * sq
    return obj


@jit(inline="always")
def _rows_finish(f, a, acc, nc, grad_f):
    """``<f, a>`` and ``grad_f = a - sum_{c < nc} acc[c]`` (blocks summed in order)."""
    obj = 0.0
    for i in range(f.shape[0]):
        obj += f[i] * a[i]
        t = 0.0
        for c in range(nc):
            t += acc[c, i]
        grad_f[i] = a[i] - t
    return obj


@jit
def dual_value_grad(f, g, a, b, cost_t, reg, k, grad_f, grad_g, vals, idx, acc):
    """Dual objective ``<f,a> + <g,b> - sum_j delta_k(f + g_j - c_j)`` and its gradient
    (serial twin).

    ``grad_f = a - T 1``, ``grad_g = b - T^T 1`` are written in place; returns the value
    (accumulated in float64). ``vals``/``idx``/``acc`` are scratch of shape (1, n).
    """
    acc[0, :] = 0.0
    gb, sq = _dual_cols(f, g, cost_t, _no_ws(), reg, k, acc[0], grad_g, b, vals[0], idx[0],
                        0, g.shape[0])
    return _rows_finish(f, a, acc, 1, grad_f) + gb - 0.5 * sq / reg


@jit(parallel=True)
def dual_value_grad_blocks(f, g, a, b, cost_t, reg, k, grad_f, grad_g, vals, idx, acc):
    """:func:`dual_value_grad` over ``nc = acc.shape[0]`` column blocks in parallel, each
    with its own scratch row ``vals[c]``, ``idx[c]``, ``acc[c]``."""
    m = g.shape[0]
    nc = acc.shape[0]
    S = np.zeros((nc, 2))
    for c in prange(nc):
        acc[c, :] = 0.0
        gb, sq = _dual_cols(f, g, cost_t, _no_ws(), reg, k, acc[c], grad_g, b, vals[c],
                            idx[c], c * m // nc, (c + 1) * m // nc)
        S[c, 0] = gb
        S[c, 1] = sq
    gb = 0.0
    sq = 0.0
    for c in range(nc):
        gb += S[c, 0]
        sq += S[c, 1]
    return _rows_finish(f, a, acc, nc, grad_f) + gb - 0.5 * sq / reg


@jit
def dual_value_grad_blocks_serial(f, g, a, b, cost_t, reg, k, grad_f, grad_g, vals, idx,
                                  acc, ws):
    """:func:`dual_value_grad_blocks` with its blocks one after the other (no thread
    launch; the same sums in the same order, hence the same result): the twin for a
    process forked after a parallel kernel ran (``_jit.parallel_ok``), and the evaluation
    on working sets ``ws = (ptr, rows, costs)`` (:func:`working_set`; empty arrays: the
    full columns)."""
    m = g.shape[0]
    nc = acc.shape[0]
    gb = 0.0
    sq = 0.0
    for c in range(nc):
        acc[c, :] = 0.0
        gbc, sqc = _dual_cols(f, g, cost_t, ws, reg, k, acc[c], grad_g, b, vals[c], idx[c],
                              c * m // nc, (c + 1) * m // nc)
        gb += gbc
        sq += sqc
    return _rows_finish(f, a, acc, nc, grad_f) + gb - 0.5 * sq / reg


def new_bounds(m, n):
    """The bounds of :func:`semi_dual_value_grad` before the first evaluation: none known
    (``inf``), gaps not set (0: ``reg b_j`` at first), no last point (``nan``), no
    drift."""
    bounds = np.full(2 * m + n + 1, np.inf)
    bounds[m:2 * m] = 0.0
    bounds[2 * m:2 * m + n] = np.nan
    bounds[2 * m + n] = 0.0
    return bounds


@jit(inline="always")
def _drift(f, bounds, m):
    """Add ``max(0, max_i (f_i - last_i))`` to the drift ``bounds[2m + n]`` and make ``f``
    the last point (``last = bounds[2m:2m + n]``); returns the drift. After a non-finite
    move (or the first call, where the last point is ``nan``) every column's bound is
    dropped (``inf``) instead."""
    n = f.shape[0]
    last = bounds[2 * m:2 * m + n]
    rise = 0.0
    ok = True
    for i in range(n):
        e = f[i] - last[i]
        if e > rise:
            rise = e
        elif not e <= rise:  # nan
            ok = False
        last[i] = f[i]
    if ok and rise < np.inf:
        bounds[2 * m + n] += rise
    else:
        bounds[:m] = np.inf
    return bounds[2 * m + n]


@jit
def semi_dual_value_grad(f, a, b, cost_t, reg, k, grad_f, tau, vals, idx, acc, hints,
                         bounds):
    """Semi-dual objective ``<f,a> - sum_j b_j max_{y in D_k} (<y, x_j> - reg b_j |y|^2 / 2)``
    with ``x_j = f - c_j``, and its gradient ``a - T 1`` (in place; serial twin).
    ``tau[j]`` receives the column thresholds (``g = -tau`` gives the plan in dual form).
    Returns the value. Scratch of shape (1, n) as in :func:`dual_value_grad`. ``hints``
    (m, k + 1) for ``k <= 16`` and ``k < n`` (:func:`_semi_column`; ``-1`` at first), else
    shape (0, 1): the same result, faster when they are those of a nearby point.

    ``bounds`` (with hints: length ``2 m + n + 1``, from :func:`new_bounds`; else unused)
    lets most columns skip the count of the rows outside their hint. ``bounds[2m + n]`` is
    the drift ``D``: the sum, over the evaluations, of ``max_i (f_i - f_prev,i)`` (and
    ``bounds[2m:2m + n]`` the last ``f``), which bounds how much any entry ``x_ij`` rose
    since an earlier evaluation. ``bounds[j]`` is ``t - D_then``, where every row outside
    the hint lay at most at ``t`` when the column was last counted, ``inf`` when unknown
    or when the hinted rows changed since. While ``bounds[j] + D`` (with a margin of
    1e-9 relative) is below the column's threshold no other row can be a candidate, and
    the count is skipped. ``bounds[m + j]`` is the column's gap: the count also counts the
    rows above ``thr - gap`` and ``thr - 4 gap``, and ``t`` is the lower of the two that
    no other row exceeds (the gap grows fourfold, stays, or shrinks fourfold when
    neither). On the hard grid problem (200 x 200, gamma = 1, k = 2) 75 % of the column
    evaluations skip their count.
    """
    acc[0, :] = 0.0
    drift = _drift(f, bounds, b.shape[0]) if hints.shape[0] else 0.0
    obj = _semi_cols(f, b, cost_t, _no_ws(), reg, k, acc[0], tau, vals[0], idx[0], 0,
                     b.shape[0], hints, bounds, drift)
    return _rows_finish(f, a, acc, 1, grad_f) + obj


@jit(parallel=True)
def semi_dual_value_grad_blocks(f, a, b, cost_t, reg, k, grad_f, tau, vals, idx, acc):
    """:func:`semi_dual_value_grad` over ``acc.shape[0]`` column blocks in parallel."""
    m = b.shape[0]
    nc = acc.shape[0]
    S = np.zeros(nc)
    for c in prange(nc):
        acc[c, :] = 0.0
        S[c] = _semi_cols(f, b, cost_t, _no_ws(), reg, k, acc[c], tau, vals[c], idx[c],
                          c * m // nc, (c + 1) * m // nc, np.empty((0, 1), np.int64),
                          np.empty(0), 0.0)
    obj = 0.0
    for c in range(nc):
        obj += S[c]
    return _rows_finish(f, a, acc, nc, grad_f) + obj


@jit
def semi_dual_value_grad_blocks_serial(f, a, b, cost_t, reg, k, grad_f, tau, vals, idx, acc,
                                       ws):
    """:func:`semi_dual_value_grad_blocks` with its blocks one after the other (the twin
    for a forked process, and the evaluation on working sets, as
    :func:`dual_value_grad_blocks_serial`)."""
    m = b.shape[0]
    nc = acc.shape[0]
    obj = 0.0
    for c in range(nc):
        acc[c, :] = 0.0
        obj += _semi_cols(f, b, cost_t, ws, reg, k, acc[c], tau, vals[c], idx[c],
                          c * m // nc, (c + 1) * m // nc, np.empty((0, 1), np.int64),
                          np.empty(0), 0.0)
    return _rows_finish(f, a, acc, nc, grad_f) + obj


# ------------------------------------------------------------------------- L-BFGS
@jit
def all_finite(x):
    """Whether every entry of ``x`` is finite (stops at the first that is not)."""
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return False
    return True


@jit(fastmath=FASTMATH_SAFE)
def dot(x, y):
    """``sum_i x_i y_i`` (no BLAS: the same rounding whatever the thread count). The
    reduction may be reassociated (vectorised) at compile time: a fixed order for a given
    build, NaN and inf semantics kept."""
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * y[i]
    return s


@jit
def lbfgs_direction(g, S, Y, rho, order, count, out):
    """``out = H g``: the L-BFGS two-loop recursion over the ``count`` stored pairs.

    ``S[p]``, ``Y[p]`` (rows of (mem, N) arrays) hold the steps and the gradient changes
    of the function minimised (``y = grad_new - grad_old`` of ``-F`` when ``F`` is
    maximised), ``rho[p] = 1 / (s_p . y_p)``; ``order[:count]`` lists the rows from the
    oldest to the newest pair. ``H`` is the inverse-Hessian estimate seeded with
    ``(s . y) / (y . y)`` of the newest pair; ``out`` is an ascent direction of ``F``
    when ``g`` is its gradient.
    """
    n = g.shape[0]
    alpha = np.empty(count)
    for i in range(n):
        out[i] = g[i]
    for c in range(count - 1, -1, -1):
        p = order[c]
        a_ = rho[p] * dot(S[p], out)
        alpha[c] = a_
        for i in range(n):
            out[i] -= a_ * Y[p, i]
    if count > 0:
        p = order[count - 1]
        scale = dot(S[p], Y[p]) / dot(Y[p], Y[p])
        for i in range(n):
            out[i] *= scale
    for c in range(count):
        p = order[c]
        beta = rho[p] * dot(Y[p], out)
        for i in range(n):
            out[i] += (alpha[c] - beta) * S[p, i]


# --------------------------------------------------------------------------- plans
@jit
def plan_columns(f, g, cost_t, reg, k, semi, b, vals, idx):
    """Sparse plan, column by column (CSC): ``(indptr, indices, data, row_sums, col_sums,
    lin, sq)`` with ``lin = <T, C>`` and ``sq = |T|_F^2`` (float64 sums).

    Dual form (``semi=False``): ``t_j = top_k [f + g_j - c_j]_+ / reg``. Semi-dual form:
    the projection with ``z = reg b_j`` (``g`` is ignored). Row indices are sorted within
    each column.
    """
    m = cost_t.shape[0]
    n = cost_t.shape[1]
    inv = 1.0 / reg
    none = np.empty(0, dtype=np.int64)
    nohints = np.empty((0, 1), dtype=np.int64)
    nobound = np.empty(0)
    counts = np.zeros(m, dtype=np.int64)
    for j in range(m):
        if semi:
            cnt, tj, xt = _semi_column(f, cost_t[j], none, False, reg * b[j], k, vals, idx,
                                       nohints, j, nobound, 0.0)
        else:
            cnt = _dual_column(f, g[j], cost_t[j], none, False, k, vals, idx)
        counts[j] = cnt
    indptr = np.zeros(m + 1, dtype=np.int64)
    for j in range(m):
        indptr[j + 1] = indptr[j] + counts[j]
    nnz = indptr[m]
    indices = np.empty(nnz, dtype=np.int64)
    data = np.empty(nnz, dtype=f.dtype)
    row_sums = np.zeros(n, dtype=np.float64)
    col_sums = np.zeros(m, dtype=np.float64)
    lin = 0.0
    sq = 0.0
    for j in range(m):
        if semi:
            cnt, tj, xt = _semi_column(f, cost_t[j], none, False, reg * b[j], k, vals, idx,
                                       nohints, j, nobound, 0.0)
        else:
            cnt = _dual_column(f, g[j], cost_t[j], none, False, k, vals, idx)
        _sort_pairs(vals, idx, cnt, True)
        p = indptr[j]
        crow = cost_t[j]
        s = 0.0
        for r in range(cnt):
            t = vals[r] * inv
            i = idx[r]
            indices[p + r] = i
            data[p + r] = t
            t = data[p + r]  # sums of the stored (possibly float32) values
            s += t
            row_sums[i] += t
            lin += t * crow[i]
            sq += t * t
        col_sums[j] = s
    return indptr, indices, data, row_sums, col_sums, lin, sq


@jit(**NO_NRT)
def column_tops(f, g, cost_t, kk, top_vals, top_rows, vals, idx):
    """The ``kk`` largest entries of ``x_j = f + g_j - c_j`` of every column, in
    decreasing order: ``top_vals[j]``, ``top_rows[j]`` (shape (m, kk)). Kept sorted while
    scanning for ``kk <= 16``, else buffered selection as in the plan kernels;
    ``vals``/``idx`` are scratch of length n."""
    m = cost_t.shape[0]
    n = cost_t.shape[1]
    cap = min(n, max(2 * kk, kk + 64))
    insert = kk <= INSERT_K
    for j in range(m):
        crow = cost_t[j]
        gj = g[j]
        thr = -np.inf
        cnt = 0
        for i in range(n):
            x = f[i] + gj - crow[i]
            if x > thr or cnt < kk:
                if insert:  # kept sorted while scanning, as in _semi_column
                    cnt = _insert_sorted(vals, idx, cnt, kk, x, i)
                    if cnt == kk:
                        thr = vals[kk - 1]
                else:
                    vals[cnt] = x
                    idx[cnt] = i
                    cnt += 1
                    if cnt == cap:
                        cnt, thr = _prune(vals, idx, cnt, kk, -np.inf)
        if not insert:
            if cnt > kk:
                cnt, thr = _prune(vals, idx, cnt, kk, -np.inf)
            _sort_pairs(vals, idx, cnt, False)
        for r in range(kk):
            top_vals[j, r] = vals[r]
            top_rows[j, r] = idx[r]


@jit(fastmath=FASTMATH_SAFE)
def sym_matvec(H, x, out, ps, phy, pending):
    """``out = H x`` for the symmetric estimate whose upper triangle ``H`` holds, after
    adding to that triangle the pending rank-two correction
    ``c ps ps^T - rho (ps phy^T + phy ps^T)`` (``pending = (rho, c, flag)``, applied and
    cleared when ``flag`` is set). One pass over the triangle does both: half the memory
    traffic of a full matrix-vector product, and none for a separate update."""
    n = x.shape[0]
    rho, c = pending[0], pending[1]
    add = pending[2] != 0.0
    pending[2] = 0.0
    for i in range(n):
        out[i] = 0.0
    for i in range(n):
        # slices from the diagonal, indexed from 0: LLVM vectorises these loops, not
        # the same loops over range(i, n)
        row = H[i, i:]
        xs = x[i:]
        o = out[i:]
        xi = x[i]
        acc = 0.0
        if add:
            s_ = ps[i:]
            h_ = phy[i:]
            a1 = c * ps[i] - rho * phy[i]
            a2 = rho * ps[i]
            for j in range(row.shape[0]):
                h = row[j] + (a1 * s_[j] - a2 * h_[j])
                row[j] = h
                acc += h * xs[j]
                o[j] += h * xi
        else:
            for j in range(row.shape[0]):
                h = row[j]
                acc += h * xs[j]
                o[j] += h * xi
        out[i] += acc - row[0] * xi  # the diagonal was counted twice


@jit(fastmath=FASTMATH_SAFE)
def bfgs_update(H, s, y, d, g_new, first, nxt, u, ps, phy, pending):
    """One BFGS update of the symmetric inverse-Hessian estimate (the upper triangle of
    ``H``, see :func:`sym_matvec`) with the pair ``(s, y)`` taken along ``d``
    (``= H g_old`` unless ``first``), and the next direction ``nxt = H_new g_new``.
    Returns False (nothing changed) when the curvature ``s . y`` is not positive.

    ``H_new = H - rho (s Hy^T + Hy s^T) + c s s^T`` with ``rho = 1 / (s . y)``,
    ``Hy = H y`` and ``c = rho**2 y . Hy + rho``. The correction is not added here: it is
    left pending in ``ps``, ``phy``, ``pending`` and added by the next pass over ``H``,
    the one that computes ``u = H g_new`` of the next update (``H y = d - u`` as
    ``y = g_old - g_new``). So an iteration costs one pass over half of ``H``.
    ``first``: ``H`` is first set to ``(s . y) / (y . y)`` times the identity. ``u``:
    scratch of length n.
    """
    n = s.shape[0]
    sy = dot(s, y)
    yy = dot(y, y)
    if not (sy > 1e-300 and sy < np.inf and yy > 0.0):
        return False
    if first:
        gamma = sy / yy
        pending[2] = 0.0
        for i in range(n):
            for j in range(i, n):
                H[i, j] = 0.0
            H[i, i] = gamma
            u[i] = gamma * g_new[i]
            phy[i] = gamma * y[i]
    else:
        sym_matvec(H, g_new, u, ps, phy, pending)
        for i in range(n):
            phy[i] = d[i] - u[i]
    rho = 1.0 / sy
    c = rho * rho * dot(y, phy) + rho
    hg = dot(phy, g_new)
    sg = dot(s, g_new)
    for i in range(n):
        nxt[i] = u[i] - rho * (s[i] * hg + phy[i] * sg) + c * sg * s[i]
        ps[i] = s[i]
    pending[0] = rho
    pending[1] = c
    pending[2] = 1.0
    return True
