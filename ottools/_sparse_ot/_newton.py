"""Semismooth Newton steps for quadratically regularized OT (``max_nz >= n``), and for the
smooth pieces of the sparsity-constrained duals.

Without the cardinality constraint the (semi-)dual is concave and piecewise quadratic
with a Lipschitz gradient: a generalized Hessian exists everywhere and is a sparse graph
Laplacian over the plan's support ``A`` (Lorenz, Manns and Meyer, "Quadratically
regularized optimal transport", Appl. Math. Optim. 83, 2021):

- dual, variables ``(f, g)``: ``-H = [[diag(A 1), A], [A^T, diag(A^T 1)]] / reg``;
- semi-dual, variable ``f``: ``-H = (diag(A 1) - A diag(1 / A^T 1) A^T) / reg`` (each
  column's simplex projection moves its support's entries together).

Both are singular (the gauge ``f + c, g - c``, and rows or columns outside the support),
so the step solves ``(-H + delta I / reg) d = grad`` with a Levenberg-Marquardt ``delta``
that shrinks after full steps and grows after short ones, followed by a backtracking
line search on the objective (or, at the rounding floor of the value, on the marginal
error). For ``max_nz >= n`` the unbalanced components of the support first move to their
next kinks (:func:`_connect`), the dual steps through the semi-dual (:func:`_dual_step`),
and a full step along which the value still rises is doubled. Quasi-Newton methods are slow here because the Laplacian of a sparse support is
badly conditioned; Newton reaches the rounding floor in a few steps from a BFGS start.

With ``max_nz < n`` the plan's support is the k-sparse one, and the same Laplacian is
the Hessian of the current smooth piece: where the maximum lies inside a piece (the
relaxation is tight there, ``err`` tends to 0) Newton converges the same way; at a kink
its steps fail and the driver returns to BFGS.
"""

import math

import numpy as np

from .._kernels import lazy

_k = lazy("_sparse")

__all__ = []

_MAX_LS = 30
DELTA0 = 1e-6


def _connect(obj, x, g):
    """Shift the unbalanced components of the support graph onto their neighbours:
    ``(x, rows, cols)`` with the shifted point and the boundary entries it activated.

    The generalized Hessian is the Laplacian of the support graph (rows and columns joined
    by the plan's entries); on a component with rows ``R`` and columns ``K`` it is blind
    to ``f_R + c, g_K - c`` (semi-dual: ``f_R + c``, the thresholds of ``K`` follow), along
    which the objective is linear with slope ``s = a(R) - b(K)`` (the sum of the
    component's gradient) until an entry between it and another component activates.
    With weights spanning many orders of magnitude (Gaussian tails) the support splits
    into many such components: empty rows (and, in the dual, columns), rows whose columns
    carry no other row (semi-dual), and the Levenberg-Marquardt term turned each
    unbalanced one into a step of ``s reg / delta``, unrelated to the distance to its
    next kink: far too long (the line search then shortened the whole step, and
    ``delta`` grew: thousands of short steps) or, for tiny weights, far too short.

    Here each unbalanced component, smallest first, moves exactly to its next kink (the
    nearest inactive entry to a row of it when ``s > 0``, to a column of it when
    ``s < 0``; an increase of the objective by ``s`` times the move), and the entry
    reached joins it to its neighbour (with which it moves from then on). The entries
    reached, at zero mass, enter the Laplacian, which is then singular only along the
    gauge (and along components already balanced)."""
    import scipy.sparse
    from scipy.sparse.csgraph import connected_components

    nr, mc, sp = obj.nr, obj.mc, obj.sp
    none = np.empty(0, dtype=np.int64)
    indptr, indices = obj.plan(x)[:2]
    A = scipy.sparse.csc_array((np.ones(indices.size), indices, indptr), shape=(nr, mc))
    G = scipy.sparse.block_array([[None, A], [A.T, None]], format="csr")
    ncomp, lab = connected_components(G, directed=False)
    if ncomp == 1:
        return x, none, none
    gf = np.asarray(g[:nr], dtype=np.float64)
    # the slope of each component: its rows' gradient minus its columns' (semi-dual:
    # the columns' is zero)
    s = np.bincount(lab[:nr], weights=gf, minlength=ncomp)
    if not obj.semi:
        s -= np.bincount(lab[nr:], weights=g[nr:], minlength=ncomp)
    size = np.bincount(lab, minlength=ncomp)
    f, gg = obj.potentials(x)
    f, gg = f.copy(), gg.copy()
    rlab, clab = lab[:nr].copy(), lab[nr:].copy()
    C = sp.cost_t  # (mc, nr)
    er, ec = [], []
    for k in np.argsort(size, kind="stable"):
        if s[k] == 0.0 or size[k] == 0:
            continue
        inR, inK = rlab == k, clab == k
        if s[k] > 0:  # raise the rows: the nearest entry from them to another column
            R, out = np.flatnonzero(inR), np.flatnonzero(~inK)
            if R.size == 0 or out.size == 0:
                continue
            sub = gg[out][:, None] - C[np.ix_(out, R)] + f[R][None, :]
            q = np.unravel_index(np.argmax(sub), sub.shape)
            c, i, j = -sub[q], R[q[1]], out[q[0]]
            tgt = clab[j]
        else:  # lower them: the nearest entry from another row to a column of it
            K, out = np.flatnonzero(inK), np.flatnonzero(~inR)
            if K.size == 0 or out.size == 0:
                continue
            sub = gg[K][:, None] - C[np.ix_(K, out)] + f[out][None, :]
            q = np.unravel_index(np.argmax(sub), sub.shape)
            c, i, j = sub[q], out[q[1]], K[q[0]]
            tgt = rlab[i]
        if not (math.isfinite(c) and c * s[k] >= 0.0):
            continue
        f[inR] += c
        gg[inK] -= c
        er.append(i)
        ec.append(j)
        rlab[inR] = tgt
        clab[inK] = tgt
        s[tgt] += s[k]
        size[tgt] += size[k]
        s[k], size[k] = 0.0, 0
    if not er:
        return x, none, none
    xn = np.array(x, dtype=np.float64, copy=True)
    xn[:nr] = f
    if not obj.semi:
        xn[nr:] = gg
    return xn, np.array(er, dtype=np.int64), np.array(ec, dtype=np.int64)


def _laplacian(obj, x, extra_rows=None, extra_cols=None):
    """``-H`` at ``x`` (scipy.sparse CSC), from the support of the plan and the entries
    ``(extra_rows, extra_cols)`` (at zero mass, see :func:`_connect`)."""
    import scipy.sparse

    indptr, indices = obj.plan(x)[:2]
    nr, mc = obj.nr, obj.mc
    A = scipy.sparse.csc_array((np.ones(indices.size), indices, indptr), shape=(nr, mc))
    if extra_rows is not None and extra_rows.size:
        A = A + scipy.sparse.csc_array(
            (np.ones(extra_rows.size), (extra_rows, extra_cols)), shape=(nr, mc))
        A = scipy.sparse.csc_array(A)
        A.sum_duplicates()
        A.data[:] = 1.0  # an entry both in the support and reached: once
    rows = np.asarray(A.sum(axis=1)).ravel()
    cols = np.asarray(A.sum(axis=0)).ravel()
    if obj.semi:
        L = scipy.sparse.diags_array(rows) - A @ scipy.sparse.diags_array(
            1.0 / np.maximum(cols, 1.0)) @ A.T
    else:
        L = scipy.sparse.block_array([[scipy.sparse.diags_array(rows), A],
                                      [A.T, scipy.sparse.diags_array(cols)]])
    return scipy.sparse.csc_array(L) / obj.sp.reg


def newton_step(obj, x, v, g, delta):
    """One damped Newton step from ``x`` (value ``v``, gradient ``g``).

    Returns ``(x_new, v_new, g_new, delta_new)``; ``x_new`` is ``None`` when no step
    along the Newton direction improves the objective or the error (``delta`` grows).
    """
    import scipy.sparse
    from scipy.sparse.linalg import splu

    if not obj.semi and obj.k >= obj.nr:
        return _dual_step(obj, x, v, g, delta)
    er = ec = None
    if obj.k >= obj.nr:  # quadratic OT: move the unbalanced components to their kinks
        xs, er, ec = _connect(obj, x, g)
        if er.size:
            vs, gs = obj.value_grad(xs)
            if obj.finite(vs, gs) and vs >= v - obj.value_floor(v, x):
                x, v, g = xs, vs, gs
            else:
                er = ec = None
    L = _laplacian(obj, x, er, ec)
    n = L.shape[0]
    M = (L + scipy.sparse.eye_array(n, format="csc") * (delta / obj.sp.reg)).tocsc()
    try:
        lu = splu(M)
        d = lu.solve(g)
        d += lu.solve(g - M @ d)  # one step of iterative refinement
    except RuntimeError:  # singular to working precision
        return None, v, g, min(1.0, delta * 100.0)
    if not np.all(np.isfinite(d)):
        return None, v, g, min(1.0, delta * 100.0)
    dg = _k.dot(d, g)
    err0 = obj.err(g)
    floor = obj.value_floor(v, x)
    t = 1.0
    for _ in range(_MAX_LS):
        xt = x + t * d
        vt, gt = obj.value_grad(xt)
        if obj.finite(vt, gt):
            if vt - v > floor and vt >= v + 1e-4 * t * dg:
                break
            if abs(vt - v) <= floor and obj.err(gt) < err0:
                break  # at the rounding floor of the value: the error decides
        t *= 0.5
    else:
        return None, v, g, min(1.0, delta * 100.0)
    if t == 1.0 and obj.k >= obj.nr:
        # a full step along which the objective still increases (the model under-
        # estimated it: nearly linear pieces, e.g. columns of tiny weight that change
        # rows): doubled while the value increases
        for _ in range(_MAX_LS):
            if _k.dot(d, gt) <= 0.5 * dg:
                break
            x2 = x + 2.0 * t * d
            v2, g2 = obj.value_grad(x2)
            if not (obj.finite(v2, g2) and v2 - vt > obj.value_floor(vt, xt)):
                break
            xt, vt, gt, t = x2, v2, g2, 2.0 * t
    if t >= 1.0:
        delta = max(1e-12, delta / 10.0)
    elif t < 0.1:
        delta = min(1.0, delta * 100.0)
    return xt, vt, gt, delta


def _dual_step(obj, x, v, g, delta):
    """A Newton step of the dual (``max_nz >= n``) through the semi-dual: the semi-dual's
    Newton step from ``f``, then ``g = -tau``, the column thresholds there.

    Maximising the dual over ``g`` alone gives the semi-dual, so the dual's value at
    ``(f, -tau(f))`` is the semi-dual's at ``f`` and at least the dual's at ``(f, g)``,
    and its error is the semi-dual's (the columns are met exactly). Newton steps on the
    dual itself crawled where the weights span many orders of magnitude: a row of
    negligible weight nearly tied between two columns (its potential a kink of the
    columns') took up the excess mass of one of them at every step, one row after the
    other (the Laplacian of the support holds one entry of such a row, the model none of
    the kink); the semi-dual's columns are exact and have no such rows.
    """
    nr = obj.nr
    semi = obj.semi_twin()
    n0 = semi.nfev
    f = np.array(x[:nr], dtype=np.float64, copy=True)
    vs, gs = semi.value_grad(f)
    fn = None
    if semi.finite(vs, gs):
        fn, _, _, delta = newton_step(semi, f, vs, gs, delta)
    moved = fn is not None
    fc, gc = semi.potentials(f if fn is None else fn)
    xn = np.concatenate([fc, gc])
    obj.nfev += semi.nfev - n0
    vn, gn = obj.value_grad(xn)
    floor = obj.value_floor(v, x)
    if not obj.finite(vn, gn) or vn < v - floor or not (moved or vn - v > floor):
        return None, v, g, min(1.0, delta * 100.0)
    return xn, vn, gn, delta
