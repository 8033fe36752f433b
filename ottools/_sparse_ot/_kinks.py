"""Kinks of the (semi-)dual for ``max_nz < n``: the least-norm supergradient, a step along
it, and the certificate of a maximum.

With at most ``k`` non-zeros per column, a column's contribution is the largest of smooth
pieces, one per support; the objective has a kink where column ``j``'s k-th and
(k+1)-th largest entries of ``x_j`` tie (within ``eps``) and swapping them changes the
column's plan. The plans of both supports are supergradient pieces, and so is every mix:
the objective is maximal at a point iff some mix meets the marginals. The least-norm mix
``d = grad - E lam`` (``E[:, l]`` the change of the marginals under swap ``l``,
``lam >= 0`` summing to at most 1 per column) is a small constrained least-squares
problem; ``||d||_1`` relative to the mass is the *stationarity* of the point, and ``d``
an ascent direction when it is not zero. Only single swaps near the k-th entry are
considered: a subset of the superdifferential, so a small stationarity still certifies
a maximum (up to the objective change of ties within ``eps``).

Single swaps from the tie-broken plan span the whole superdifferential of a column only
when its tie at the k-th entry holds one kept row or one other row. A *tie group* with
``r >= 2`` kept and ``t >= 2`` other rows (exact ties of a quantized or grid cost, e.g.
at the start ``f = 0``) has the hypersimplex of the r-subsets as its mixes, of which
the single swaps reach a corner only: the least-norm element over that corner need not
be an ascent direction, and it certifies less (a constant 10 x 10 cost, k = 2: f = 0 is
the maximum, stationarity 0.8 over the swaps, 2e-12 over the groups).

Such exact ties meet at a start like ``f = 0`` on a quantized cost, where no direction
gains much (:func:`tied_start`, :func:`untie`, and the driver's ``_untie``: the ascent
starts from a deterministic perturbation of it unless a group mix certifies it).
For the tie tolerances up to :data:`CERTIFY_EPS` such columns are therefore mixed as
whole groups (:func:`_group_supergradient`, as the active-set finish of
:mod:`._active_set` does): each member ``i`` holds a share ``mu_i`` in ``[0, 1]`` of
its plan value, ``sum mu = r``.
"""

import math

import numpy as np

from .._kernels import lazy

_k = lazy("_sparse")

__all__ = []

# Tie tolerances, relative to the width ``reg * max(b)`` of a column's support: the first
# certifies (pieces within it are within about eps * sum(b) of the maximum in value), the
# larger ones only propose directions.
CERTIFY_EPS = 1e-7
STEP_EPS = (1e-10, 1e-7, 1e-4, 1e-2, 1.0)

# The exact least-norm mix (a dense NNLS) of one kink step may cost, in units of
# ``(rows + columns) * (swaps + columns)**2``, at most this many times the entries the
# evaluations so far have read (``nfev * n * m``), and never less than _NNLS_FLOOR; beyond,
# the plain gradient is the direction of that tie tolerance, and it certifies nothing. A
# count, not a clock: the iterates do not depend on the machine's load. (Measured: a
# unit of the first costs about 2.5 times an entry of an evaluation.)
_NNLS_WORK = 0.5
_NNLS_FLOOR = 1e7


def _simplex_threshold(w, z):
    """Row-wise simplex thresholds: ``tau`` with ``sum_r [w_r - tau]_+ = z`` for rows of
    ``w`` sorted in decreasing order."""
    cs = np.cumsum(w, axis=1)
    r = np.arange(1, w.shape[1] + 1)
    t = (cs - z[:, None]) / r
    rho = np.sum(w > t, axis=1) - 1  # w_r > t_r holds exactly for r < rho + 1
    return t[np.arange(w.shape[0]), np.maximum(rho, 0)]


def _column_plans(W, z, reg, semi):
    """Plan values of columns whose kept entries are the rows of ``W``."""
    if semi:
        Ws = -np.sort(-W, axis=1)
        return np.maximum(W - _simplex_threshold(Ws, z)[:, None], 0.0) / reg
    return np.maximum(W, 0.0) / reg


def _tops(obj, f, g, kk):
    """The ``kk`` largest entries of every column, decreasing: ``(values, rows)``."""
    nr, mc = obj.nr, obj.mc
    V = np.empty((mc, kk))
    top = np.empty((mc, kk), dtype=np.int64)
    _k.column_tops(f, g, obj.sp.cost_t, kk, V, top, np.empty(nr), np.empty(nr, np.int64))
    return V, top


def supergradient(obj, x, eps, budget=None, memo=None, groups=False):
    """Least-norm supergradient at ``x`` over the swaps tied within ``eps`` (absolute, in
    the units of ``x``): ``(d, stationarity)`` with ``d`` of length ``obj.nx`` and
    ``stationarity = ||d||_1 / mass``. Without ties ``d`` is the gradient.

    A swap exchanges one of the ``L = 4`` smallest kept entries of a column for one of
    the ``L`` largest others (``p < k <= q`` in decreasing order), when the two are
    within ``eps`` and the swap changes the plan. ``budget``: a one-element list, the
    work left for the exact mix (see :data:`_NNLS_WORK`; None: no limit), decreased by
    what it costs. ``memo``: a dict kept between calls at the same ``x``; a set of swaps
    already solved is not solved again. ``groups``: when some column's tie is more than
    single swaps reach (see :func:`_needs_groups`), mix whole tie groups instead
    (:func:`_group_supergradient`; within its size and work limits, else the swaps)."""
    import scipy.sparse

    sp, k, nr, mc, semi = obj.sp, obj.k, obj.nr, obj.mc, obj.semi
    _, grad = obj.value_grad(x)
    if k >= nr:
        return grad, obj.err(grad)
    L = min(4, nr - k)  # the largest others (as many as there are)
    f = np.ascontiguousarray(x[:nr])
    g = np.zeros(mc) if semi else np.ascontiguousarray(x[nr:])
    V, top = _tops(obj, f, g, k + L)
    z = sp.reg * sp.bc
    T0 = _column_plans(V[:, :k], z, sp.reg, semi)
    if groups and _needs_groups(V, T0, k, L, nr, eps):
        out = _group_supergradient(obj, f, g, eps, budget, memo)
        if out is not None:
            return out
    r_all, v_all, c_all, col_of = [], [], [], []
    base = 0
    for p in range(max(0, k - 4), k):  # (k - L missed kept ones when nr - k < 4)
        for q in range(k, k + L):
            J = np.flatnonzero(V[:, p] - V[:, q] <= eps)
            if J.size == 0:
                continue
            W = V[J, :k].copy()
            W[:, p] = V[J, q]
            rows1 = top[J, :k].copy()
            rows1[:, p] = top[J, q]
            T1 = _column_plans(W, z[J], sp.reg, semi)
            keep = (T0[J, p] > 0) | (T1[:, p] > 0)  # else the swap leaves the plan as is
            if not keep.any():
                continue
            J, T1, rows1 = J[keep], T1[keep], rows1[keep]
            ids = base + np.arange(J.size)
            base += J.size
            # column ids[l] of E: the change of (a - T 1, b - T^T 1) when column J[l]
            # takes the swapped plan (the gradient becomes grad - E[:, l])
            r_all += [rows1.ravel(), top[J, :k].ravel()]
            v_all += [T1.ravel(), -T0[J].ravel()]
            c_all += [np.repeat(ids, k), np.repeat(ids, k)]
            if not semi:
                r_all.append(nr + J)
                v_all.append(T1.sum(axis=1) - T0[J].sum(axis=1))
                c_all.append(ids)
            col_of.append(J)
    if not col_of:
        return grad, obj.err(grad)
    col_of = np.concatenate(col_of)
    parts = (col_of, np.concatenate(r_all), np.concatenate(c_all), np.concatenate(v_all))
    if memo is not None and "swaps" in memo and all(
            np.array_equal(p, q) for p, q in zip(parts, memo["swaps"])):
        return memo["result"]
    E = scipy.sparse.csr_array((parts[3], (parts[1], parts[2])),
                               shape=(obj.nx, col_of.size))
    lam = _mix_weights(E, grad, col_of, budget)
    d = grad - E @ lam
    out = d, float(np.abs(d).sum()) / sp.mass
    if memo is not None:
        memo["swaps"], memo["result"] = parts, out
    return out


def _needs_groups(V, T0, k, L, nr, eps):
    """Whether some column's tie at its k-th entry (``V``: its ``k + L`` largest entries,
    ``T0`` the plan of the first ``k``) is more than the single swaps reach: ``r >= 2``
    kept and ``t >= 2`` other rows tied within ``eps`` (the hypersimplex of the r-subsets
    has corners no mix of the swaps reaches), more tied kept rows than the swaps look at
    (4), or a tie that may go on beyond the ``L`` others looked at. Only columns whose
    k-th entry carries mass count: elsewhere a swap leaves the plan as it is."""
    live = T0[:, k - 1] > 0
    r = np.sum(V[:, :k] - V[:, k:k + 1] <= eps, axis=1)
    t = np.sum(V[:, k - 1:k] - V[:, k:] <= eps, axis=1)
    edge = (t >= L) & (k + L < nr)
    return bool(np.any(live & (((r >= 2) & (t >= 2)) | ((r > 4) & (t >= 1)) | edge)))


def tied_start(obj, x):
    """Whether some column at ``x`` has an exact tie at its k-th entry that is more than
    single swaps reach (:func:`_needs_groups` with ``eps = 0``): the ascent's start on a
    quantized, grid or constant cost (``f = 0``), where every column's kinks meet."""
    k, nr = obj.k, obj.nr
    if k >= nr:
        return False
    L = min(4, nr - k)
    f = np.ascontiguousarray(x[:nr])
    g = np.zeros(obj.mc) if obj.semi else np.ascontiguousarray(x[nr:])
    V, _ = _tops(obj, f, g, k + L)
    T0 = _column_plans(V[:, :k], obj.sp.reg * obj.sp.bc, obj.sp.reg, obj.semi)
    return _needs_groups(V, T0, k, L, nr, 0.0)


def untie(obj, x):
    """``x`` with its ``f`` moved by a deterministic perturbation: row ``i`` by
    ``width * (frac(i phi) - 1/2)`` (``phi`` the golden ratio's fractional part, so
    that no two rows move alike; ``width = reg max(b)``, the scale over which a column's
    support changes)."""
    nr = obj.nr
    width = obj.sp.reg * float(obj.sp.bc.max())
    phi = 0.5 * (math.sqrt(5.0) - 1.0)
    u = np.mod(np.arange(1, nr + 1) * phi, 1.0) - 0.5
    xn = np.array(x, dtype=np.float64)
    xn[:nr] += width * u
    return xn


# At most this many group members are mixed (one dense bounded least-squares problem, as
# the swaps' NNLS up to 1500 swaps); beyond, the single swaps are mixed.
_GROUP_MAX = 1500


def _group_supergradient(obj, f, g, eps, budget=None, memo=None):
    """Least-norm supergradient at ``(f, g)`` with whole tie groups: ``(d, stationarity)``
    as :func:`supergradient`, or None when the groups exceed :data:`_GROUP_MAX` members
    or the work ``budget``.

    Column ``j``'s group holds its ``r`` kept rows within ``eps`` of its first other row
    and its other rows within ``eps`` of its k-th kept one (all of them: the columns'
    tops are extended until the tie ends). Member ``i`` holds a share ``mu_i`` in
    ``[0, 1]`` of its plan value ``w_i`` (at the kept rows' simplex threshold for the
    semi-dual), ``sum_i mu_i = r``; the other kept rows keep their values. At exact ties
    (``w_i`` all equal) these are the mixes of the r-subsets' plans, the column's whole
    superdifferential; within ``eps`` they are up to the plan change of such ties, as
    the swaps are. The least-norm mix is a bounded least-squares problem (SciPy's
    ``bvls``, the sums as heavily weighted rows as in :func:`_mix_weights`), its shares
    then projected onto the constraints, so that ``d`` is exactly such a mix.
    """
    from scipy.optimize import lsq_linear

    sp, k, nr, mc, semi = obj.sp, obj.k, obj.nr, obj.mc, obj.semi
    L = min(4, nr - k)
    while True:  # extend the tops until every live column's tie ends within them
        V, top = _tops(obj, f, g, k + L)
        T0 = _column_plans(V[:, :k], sp.reg * sp.bc, sp.reg, semi)
        live = T0[:, k - 1] > 0
        if k + L >= nr or not np.any(live & (V[:, k - 1] - V[:, -1] <= eps)):
            break
        L = min(nr - k, 4 * L)
    tied_kept = (V[:, :k] - V[:, k:k + 1] <= eps) & live[:, None]
    tied_other = (V[:, k - 1:k] - V[:, k:] <= eps) & live[:, None]
    cols = np.flatnonzero(tied_other[:, 0])  # columns with a tie that changes the plan
    # the base plan: every column's first k rows (as the evaluation's tie-breaking)
    row_sum = np.bincount(top[:, :k].ravel(), weights=T0.ravel(), minlength=nr)
    base = sp.ac - row_sum
    if not semi:
        base = np.concatenate([base, sp.bc - T0.sum(axis=1)])
    if cols.size == 0:
        return base, float(np.abs(base).sum()) / sp.mass
    if semi:
        tau = _simplex_threshold(-np.sort(-V[cols, :k], axis=1), sp.reg * sp.bc[cols])
    else:
        tau = np.zeros(cols.size)
    member = np.concatenate([tied_kept[cols], tied_other[cols]], axis=1)
    gj, pos = np.nonzero(member)  # group (index into cols) and position of each member
    rows = np.concatenate([top[cols, :k], top[cols, k:]], axis=1)[gj, pos]
    vals = np.concatenate([V[cols, :k], V[cols, k:]], axis=1)[gj, pos]
    w = np.maximum(vals - tau[gj], 0.0) / sp.reg
    mu0 = (pos < k).astype(np.float64)
    r = np.bincount(gj, weights=mu0, minlength=cols.size)
    nl, ng = w.size, cols.size
    if nl > _GROUP_MAX:
        return None
    key = (cols, rows, w, base)
    if memo is not None and "groups" in memo and all(
            np.array_equal(p, q) for p, q in zip(key, memo["groups"])):
        return memo["group_result"]
    # d = base - E (mu - mu0), E[:, l] = w_l at the member's row (and, for the dual, its
    # column's entry of the gradient)
    urows, ridx = np.unique(rows, return_inverse=True)
    nu = urows.size + (ng if not semi else 0)
    if budget is not None:
        work = float(nu + ng) * float(nl + ng) ** 2
        if work > budget[0]:
            return None
        budget[0] -= work
    Es = np.zeros((nu, nl))
    Es[ridx, np.arange(nl)] = w
    target = base[urows] + np.bincount(ridx, weights=w * mu0, minlength=urows.size)
    if not semi:
        Es[urows.size + gj, np.arange(nl)] = w
        gcol = nr + cols
        target = np.concatenate([target, base[gcol] + np.bincount(gj, weights=w * mu0,
                                                                  minlength=ng)])
    big = 1e3 * max(1.0, float(np.abs(Es).max()) * np.sqrt(nu))
    A = np.zeros((nu + ng, nl))
    A[:nu] = Es
    A[nu + gj, np.arange(nl)] = big
    rhs = np.concatenate([target, big * r])
    mu = lsq_linear(A, rhs, bounds=(0.0, 1.0), method="bvls", tol=1e-12).x
    mu = _project_hypersimplex(np.clip(mu, 0.0, 1.0), gj, r, ng)
    d = base.copy()
    np.subtract.at(d, rows, w * (mu - mu0))
    if not semi:
        np.subtract.at(d, nr + cols[gj], w * (mu - mu0))
    out = d, float(np.abs(d).sum()) / sp.mass
    if memo is not None:
        memo["groups"], memo["group_result"] = key, out
    return out


def _project_hypersimplex(mu, grp, r, ng):
    """Euclidean projection of each group's shares ``mu`` (group ``grp[l]``) onto
    ``{0 <= mu <= 1, sum mu = r}``: ``clip(mu - t, 0, 1)`` with the group's shift ``t``
    found by bisection (the sum decreases in ``t``)."""
    lo = np.full(ng, -1.0) + np.minimum.reduceat(mu, _starts(grp, ng))
    hi = np.maximum.reduceat(mu, _starts(grp, ng)).copy()
    for _ in range(100):
        t = 0.5 * (lo + hi)
        s = np.bincount(grp, weights=np.clip(mu - t[grp], 0.0, 1.0), minlength=ng)
        above = s > r
        lo = np.where(above, t, lo)
        hi = np.where(above, hi, t)
    out = np.clip(mu - (0.5 * (lo + hi))[grp], 0.0, 1.0)
    # the bisection leaves a sum off by rounding: spread it over the free shares
    s = np.bincount(grp, weights=out, minlength=ng)
    free = (out > 0.0) & (out < 1.0)
    nfree = np.bincount(grp, weights=free.astype(np.float64), minlength=ng)
    fix = np.where(nfree > 0, (r - s) / np.maximum(nfree, 1.0), 0.0)
    return np.clip(out + free * fix[grp], 0.0, 1.0)


def _starts(grp, ng):
    """First index of each group in ``grp`` (sorted, every group present)."""
    return np.searchsorted(grp, np.arange(ng))


def _mix_weights(E, grad, col_of, budget=None):
    """``argmin ||grad - E lam||`` over ``lam >= 0`` with sum at most 1 per column
    (``col_of[l]`` the column of swap ``l``).

    With a slack weight per column the constraint is ``sum = 1`` over the column's swaps
    and its slack; the equality constraints enter as heavily weighted rows of a
    non-negative least-squares problem (Lawson and Hanson, "Solving Least Squares
    Problems", ch. 22), solved exactly by SciPy's active-set ``nnls``. Up to 1500 swaps;
    beyond, the first swap of each column with box bounds (``lsq_linear``). An exact
    problem over ``budget`` (see :func:`supergradient`) is not solved: no mix.
    """
    from scipy.optimize import lsq_linear, nnls

    uniq, inv = np.unique(col_of, return_inverse=True)
    nl, ng = E.shape[1], uniq.size
    Ec = E.tocsr()
    rows = np.flatnonzero(np.diff(Ec.indptr))
    if nl <= 1500 and budget is not None:
        work = float(rows.size + ng) * float(nl + ng) ** 2
        if work > budget[0]:
            return np.zeros(nl)  # over budget: no mix (the plain gradient)
        budget[0] -= work
    if nl > 1500:
        first = np.zeros(nl, dtype=bool)
        first[np.unique(inv, return_index=True)[1]] = True
        lam = np.zeros(nl)
        lam[first] = lsq_linear(E[:, first], grad, bounds=(0.0, 1.0), method="trf",
                                tol=1e-12, lsmr_tol="auto").x
        return lam
    # rows no swap touches keep their residual whatever lam is: leave them out
    Es = Ec[rows].toarray()
    nr = rows.size
    w = 1e3 * max(1.0, float(np.abs(Es).max()) * np.sqrt(nr))
    A = np.zeros((nr + ng, nl + ng))
    A[:nr, :nl] = Es
    A[nr + inv, np.arange(nl)] = w
    A[nr + np.arange(ng), nl + np.arange(ng)] = w  # the slacks
    rhs = np.concatenate([grad[rows], np.full(ng, w)])
    try:
        lam = nnls(A, rhs, maxiter=20 * (nl + ng))[0][:nl]
    except RuntimeError:  # nnls's iteration limit: no mix (the plain gradient)
        return np.zeros(nl)
    sums = np.bincount(inv, weights=lam, minlength=ng)
    return lam / np.maximum(sums, 1.0)[inv]


def kink_step(obj, x, v0, tol, max_ls=30):
    """One ascent step from a stall point ``x`` (value ``v0``) of L-BFGS, for ``k < n``.

    Tries the tie tolerances of :data:`STEP_EPS` from the smallest: builds the least-norm
    supergradient ``d`` and line-searches along it (doubling while the value increases,
    halving until it does; at most ``max_ls`` evaluations per direction). Returns
    ``(x_new, v_new, g_new, stationarity, certified)``: ``certified`` when the
    stationarity at a tie tolerance up to :data:`CERTIFY_EPS` is at most ``tol``
    (``x_new`` is then ``x``); ``x_new`` is ``None`` when no direction increases the
    objective. ``stationarity`` is the smallest measured.
    """
    width = obj.sp.reg * float(obj.sp.bc.max())
    tried = []
    best_measure = np.inf
    budget = [max(_NNLS_FLOOR, _NNLS_WORK * obj.nfev * obj.nr * obj.mc)]
    memo = {}
    for rel in STEP_EPS:
        d, measure = supergradient(obj, x, rel * width, budget, memo,
                                   groups=rel <= CERTIFY_EPS)
        best_measure = min(best_measure, measure)
        if measure <= tol and rel <= CERTIFY_EPS:
            v, g = obj.value_grad(x)
            return x, v, g, measure, True
        if any(np.array_equal(d, e) for e in tried):
            continue
        tried.append(d)
        s = obj.sp.reg
        best = None
        for _ in range(max_ls):
            xt = x + s * d
            vt, gt = obj.value_grad(xt)
            if obj.finite(vt, gt) and vt > (v0 if best is None else best[1]):
                best = (xt, vt, gt)
                s *= 2.0
            elif best is not None:
                break
            else:
                s *= 0.5
        if best is not None:
            return best[0], best[1], best[2], best_measure, False
    return None, v0, None, best_measure, False
