"""Naive NumPy twins of the Numba kernels (stumpy's tests/naive.py pattern)."""

import numpy as np
from scipy.special import logsumexp


def sinkhorn_log(a, b, cost, reg, n_iter, f=None, g=None):
    """``n_iter`` log-domain Sinkhorn iterations (f then g), all weights > 0."""
    f = np.zeros(len(a)) if f is None else f.astype(np.float64).copy()
    g = np.zeros(len(b)) if g is None else g.astype(np.float64).copy()
    C = cost.astype(np.float64)
    la, lb = np.log(a.astype(np.float64)), np.log(b.astype(np.float64))
    for _ in range(n_iter):
        f = -reg * logsumexp(lb[None, :] + (g[None, :] - C) / reg, axis=1)
        g = -reg * logsumexp(la[:, None] + (f[:, None] - C) / reg, axis=0)
    return f, g


def sinkhorn_scaling(a, b, cost, reg, n_iter):
    """``n_iter`` scaling-form iterations from ``u = a``, ``v = b``."""
    K = np.exp(-cost.astype(np.float64) / reg)
    u, v = a.astype(np.float64).copy(), b.astype(np.float64).copy()
    for _ in range(n_iter):
        u = a / (K @ v)
        v = b / (K.T @ u)
    return u, v


def plan(a, b, cost, reg, f, g):
    """``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)``."""
    return a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - cost) / reg)


def marginal_error(P, a, b):
    """``||P 1 - a||_1 + ||P^T 1 - b||_1``."""
    return np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()


def wasserstein_1d_pp(u, v, wu=None, wv=None, p=1.0):
    """W_p^p between 1-D weighted samples by integrating the quantile functions
    piecewise over the union of the cumulative-weight breakpoints."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    wu = np.full(len(u), 1.0 / len(u)) if wu is None else np.asarray(wu, np.float64) / np.sum(wu)
    wv = np.full(len(v), 1.0 / len(v)) if wv is None else np.asarray(wv, np.float64) / np.sum(wv)
    iu, iv = np.argsort(u), np.argsort(v)
    u, wu, v, wv = u[iu], wu[iu], v[iv], wv[iv]
    cu, cv = np.cumsum(wu), np.cumsum(wv)
    cu[-1] = cv[-1] = 1.0  # both totals are 1 up to rounding
    t = np.unique(np.concatenate([[0.0], np.minimum(cu, 1.0), np.minimum(cv, 1.0)]))
    mid = 0.5 * (t[1:] + t[:-1])
    qu = u[np.minimum(np.searchsorted(cu, mid), len(u) - 1)]
    qv = v[np.minimum(np.searchsorted(cv, mid), len(v) - 1)]
    return float(np.sum(np.diff(t) * np.abs(qu - qv) ** p))


def sliced_pp(x, y, theta, a=None, b=None, p=2.0):
    """W_p^p of the projections on each row of ``theta`` (naive loop)."""
    return np.array([wasserstein_1d_pp(x @ t, y @ t, a, b, p) for t in theta])


def sinkhorn_symmetric(a, cost, reg, n_iter):
    """``n_iter`` averaged symmetric updates from ``f = 0``, the first one unaveraged:
    ``f <- T(f)`` then ``f <- (f + T(f)) / 2`` with
    ``T(f)_i = -reg log sum_j a_j exp((f_j - C_ij) / reg)``."""
    C = cost.astype(np.float64)
    la = np.log(a.astype(np.float64))
    f = np.zeros(len(a))
    for k in range(n_iter):
        t = -reg * logsumexp(la[None, :] + (f[None, :] - C) / reg, axis=1)
        f = t if k == 0 else 0.5 * (f + t)
    return f


def entropy(P):
    """Shannon entropy ``-sum P log P`` (0 log 0 = 0)."""
    P = np.asarray(P, dtype=np.float64)
    nz = P[P > 0]
    return float(-(nz * np.log(nz)).sum())


def kl(P, a, b):
    """Generalized ``KL(P || a x b) = sum P log(P / ab) - sum P + sum a sum b``."""
    P = np.asarray(P, dtype=np.float64)
    Q = np.outer(a, b)
    nz = P > 0
    return float((P[nz] * np.log(P[nz] / Q[nz])).sum() - P.sum() + Q.sum())


# --- sparsity-constrained / quadratic OT (ottools/_kernels/_sparse.py) -------------------


def sparse_simplex_projection(v, k, z=1.0):
    """Euclidean projection of ``v`` on ``{y >= 0, sum(y) = z, ||y||_0 <= k}`` by sorting:
    keep the ``k`` largest entries, project them on the simplex (Kyrillidis et al.)."""
    v = np.asarray(v, dtype=np.float64)
    top = np.argsort(-v, kind="stable")[:k]
    u = v[top]
    css = np.cumsum(u)
    r = np.arange(1, u.size + 1)
    rho = np.nonzero(u - (css - z) / r > 0)[0][-1]
    tau = (css[rho] - z) / (rho + 1)
    y = np.zeros_like(v)
    y[top] = np.maximum(u - tau, 0)
    return y


def sparse_dual_plan(f, g, cost, reg, k):
    """Dense plan of the dual: each column keeps its ``k`` largest ``[f + g_j - c_ij]_+ / reg``."""
    X = f[:, None].astype(np.float64) + g[None, :] - cost.astype(np.float64)
    T = np.zeros_like(X)
    for j in range(X.shape[1]):
        top = np.argsort(-X[:, j], kind="stable")[:k]
        T[top, j] = np.maximum(X[top, j], 0) / reg
    return T


def sparse_dual_value_grad(f, g, a, b, cost, reg, k):
    """Dual objective ``<f,a> + <g,b> - sum_j delta_k(.)`` and its gradient ``(a - T1, b - T^T1)``."""
    T = sparse_dual_plan(f, g, cost, reg, k)
    val = f @ a + g @ b - 0.5 * reg * (T ** 2).sum()
    return val, a - T.sum(1), b - T.sum(0)


def sparse_semi_dual_plan(f, b, cost, reg, k):
    """Dense plan of the semi-dual: ``t_j = b_j proj_{D_k}((f - c_j) / (reg b_j))``."""
    X = f[:, None].astype(np.float64) - cost.astype(np.float64)
    T = np.zeros_like(X)
    for j in range(X.shape[1]):
        T[:, j] = b[j] * sparse_simplex_projection(X[:, j] / (reg * b[j]), k)
    return T


def sparse_semi_dual_value_grad(f, a, b, cost, reg, k):
    """Semi-dual objective and its gradient ``a - T1``."""
    X = f[:, None].astype(np.float64) - cost.astype(np.float64)
    T = sparse_semi_dual_plan(f, b, cost, reg, k)
    val = f @ a - ((T * X).sum() - 0.5 * reg * (T ** 2).sum())
    return val, a - T.sum(1)


# ---- Sinkhorn-Newton-Sparse (ottools/_kernels/_newton.py) ----


def plan_marginals(a, b, cost, reg, f, g):
    """Plan, row sums and column sums from the potentials."""
    P = plan(a, b, cost, reg, f, g)
    return P, P.sum(1), P.sum(0)


def dual_objective(a, b, cost, reg, f, g, dtype=np.longdouble):
    """``F(f, g) = <f, a> + <g, b> - reg sum_ij a_i b_j (exp((f_i + g_j - C_ij)/reg) - 1)``,
    evaluated naively in ``dtype`` (long double by default)."""
    a, b, C = (np.asarray(v, dtype=dtype) for v in (a, b, cost))
    f, g = np.asarray(f, dtype=dtype), np.asarray(g, dtype=dtype)
    reg = dtype(reg)
    E = a[:, None] * b[None, :] * (np.exp((f[:, None] + g[None, :] - C) / reg) - 1)
    return (f * a).sum() + (g * b).sum() - reg * E.sum()


def kth_largest(values, k):
    """By a full sort (the kernel uses quickselect)."""
    return np.sort(np.ravel(values))[::-1][k - 1]


def sparsify(P, rho, peak=1.0):
    """Kept entries (>= rho, or >= peak times a row's / column's maximum; never zeros)
    as CSR."""
    import scipy.sparse as sp
    keep = ((P >= rho) | (P >= peak * P.max(1, keepdims=True))
            | (P >= peak * P.max(0, keepdims=True)))
    keep &= P > 0
    return sp.csr_array(np.where(keep, P, 0.0))


def newton_matrix(Ps, rows, cols, shift, j0):
    """Dense gauge-fixed Newton matrix ``[[(1+s) D_r, Ps], [Ps^T, (1+s) D_c]]`` without
    the unknown ``g_j0`` (size n + m - 1)."""
    Ps = Ps.toarray() if hasattr(Ps, "toarray") else np.asarray(Ps)
    n, m = Ps.shape
    H = np.block([[np.diag((1 + shift) * rows), Ps], [Ps.T, np.diag((1 + shift) * cols)]])
    keep = np.r_[np.arange(n + m) != n + j0]
    return H[np.ix_(keep, keep)]


def plan_point_gradient(P, x, y):
    """``d/dx_i sum_kl P_kl |x_k - y_l|^2 = 2 sum_j P_ij (x_i - y_j)``, by loops."""
    gx = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            gx[i] += 2.0 * P[i, j] * (x[i] - y[j])
    return gx


# --- fast entropic core (issue 3) ------------------------------------------------------


def exp_poly(x):
    """NumPy twin of ``_lse.exp_into``: 2**k times the degree-13 Taylor polynomial."""
    from math import factorial

    t = np.clip(np.asarray(x, dtype=np.float64), -746.0, 710.0)
    k = np.floor(t * 1.4426950408889634 + 0.5)
    r = (t - k * 0.693145751953125) - k * 1.4286068203094173e-06
    p = sum(r**i / factorial(i) for i in range(14))
    ki = np.clip(k + 1023, 0, 2047).astype(np.int64)
    return p * (ki << 52).view(np.float64)


def sinkhorn_overrelaxed(a, b, cost, reg, n_iter, omega, f=None, g=None):
    """``n_iter`` over-relaxed log-domain iterations ``f <- (1 - w) f + w T(g)``."""
    f = np.zeros(len(a)) if f is None else f.astype(np.float64).copy()
    g = np.zeros(len(b)) if g is None else g.astype(np.float64).copy()
    C = cost.astype(np.float64)
    la, lb = np.log(a.astype(np.float64)), np.log(b.astype(np.float64))
    for _ in range(n_iter):
        ft = -reg * logsumexp(lb[None, :] + (g[None, :] - C) / reg, axis=1)
        f = (1 - omega) * f + omega * ft
        gt = -reg * logsumexp(la[:, None] + (f[:, None] - C) / reg, axis=0)
        g = (1 - omega) * g + omega * gt
    return f, g


def kkt_matrix(nr, mc, ac, bc, f0, h0, ct, st, reg, mu, nu):
    """The active-set finish's KKT system (``ottools._kernels._kkt.kkt_system``) from COO
    triplets, duplicates summed by SciPy: ``(csc matrix, rhs)``."""
    import scipy.sparse

    nt, nw = st.tj.size, st.gi.size
    iH, iB, iW = nr, nr + mc, nr + mc + nt
    eT, eS = nr + mc, nr + mc + nw
    N = nr + mc + nt + nw
    inv = 1.0 / reg
    pj, pi, tj, tr, gt, gi = st.pj, st.pi, st.tj, st.tr.astype(np.float64), st.gt, st.gi
    q, tt = np.arange(nw), np.arange(nt)
    I = np.concatenate([pi, pi, nr + pj, nr + pj, nr + tj, nr + tj, eS + tt, eS + tt,
                        gi, eT + q, eT + q, eT + q, eS + gt, np.arange(nr + mc), eS + tt])
    J = np.concatenate([pi, iH + pj, pi, iH + pj, iB + tt, iH + tj, iB + tt, iH + tj,
                        iW + q, gi, iB + gt, iW + q, iW + q, np.arange(nr + mc), iB + tt])
    one = np.ones(pj.size) * inv
    V = np.concatenate([one, one, one, one, tr * inv, tr * inv, -tr * inv, -tr * inv,
                        np.ones(nw), np.ones(nw), -np.ones(nw), np.full(nw, -nu),
                        np.ones(nw), np.full(nr + mc, mu), np.full(nt, -mu)])
    cP = ct[pj, pi].astype(np.float64) * inv
    rhs = np.zeros(N)
    rhs[:nr] = ac + mu * f0 + np.bincount(pi, weights=cP, minlength=nr)
    rhs[nr:nr + mc] = bc + mu * h0 + np.bincount(pj, weights=cP, minlength=mc)
    rhs[eT:eT + nw] = ct[tj[gt], gi]
    if nt:
        beta0 = np.bincount(gt, weights=f0[gi] - ct[tj[gt], gi], minlength=nt)
        rhs[eS:] = -mu * beta0 / np.bincount(gt, minlength=nt)
    return scipy.sparse.csc_array((V, (I, J)), shape=(N, N)), rhs


def correct_structure(k, reg, ct, st, sol, E, R, slack, tie_tol):
    """The corrections of the active-set finish column by column in Python (the twin of
    ``_kkt.clean_columns`` then ``_kkt.correct_structure``): ``(clean, columns, changes)``
    with ``columns[j] = (strict rows, (slots, members) or None)``: the members of a new
    group sorted by row, those of a kept group in their order."""
    f, h, beta, w = sol
    mc = h.size
    tie_of = {int(t): g for g, t in enumerate(st.tj)}
    P = {j: [int(i) for i in st.pi[st.pj == j]] for j in range(mc)}
    G = {g: [int(i) for i in st.gi[st.gt == g]] for g in range(st.tj.size)}
    W = {g: [float(x) for x in w[st.gt == g]] for g in range(st.tj.size)}
    e = lambda i, j: f[i] + h[j] - ct[j, i]  # noqa: E731
    clean, columns, changes = np.zeros(mc, dtype=bool), {}, 0
    for j in range(mc):
        Pj, t = P[j], tie_of.get(j, -1)
        topk = [int(i) for i in R[j, :k]]
        strong = [int(R[j, r]) for r in range(k) if E[j, r] > slack]
        if t < 0:
            ok = (all(i in topk for i in Pj) and all(i in Pj for i in strong)
                  and all(e(i, j) >= -slack for i in Pj))
            clean[j] = ok
            if ok:
                columns[j] = (Pj, None)
                continue
            top = [int(R[j, r]) for r in range(k) if E[j, r] > 0]
            keep = [i for i in Pj if i in top]
            still = [i for i in sorted(set(Pj) ^ set(top)) if e(i, j) > 0]
            r = k - len(keep)
            columns[j] = (keep + still, None) if len(still) <= r else (keep, (r, still))
            changes += 1
            continue
        bh = beta[t] + h[j]
        v = bh / reg
        ts = tie_tol * abs(v)
        Gt, wj = G[t], dict(zip(G[t], W[t]))
        qv = lambda i: (e(i, j) - bh) / reg + (v if i in Pj else wj.get(i, 0.0))  # noqa
        others = [int(i) for i in R[j] if int(i) not in Pj and int(i) not in Gt]
        ok = (v > 0 and all(-ts <= qv(i) <= v + ts for i in Gt)
              and all((e(i, j) - bh) / reg > ts for i in Pj)
              and all((E[j, list(R[j]).index(i)] - bh) / reg < -ts for i in others))
        clean[j] = ok
        if ok:
            columns[j] = (Pj, (int(st.tr[t]), Gt))
            continue
        cand = list(dict.fromkeys([int(i) for i in R[j]] + Pj + Gt))
        if v <= 0:
            pos = sorted(i for i in cand if e(i, j) > 0)
            columns[j] = (sorted(pos, key=lambda i: ct[j, i] - f[i])[:k], None)
            changes += 1
            continue
        up = sorted((i for i in cand if qv(i) > v + tie_tol * v), key=lambda i: -qv(i))
        mid = [i for i in cand if -tie_tol * v <= qv(i) <= v + tie_tol * v]
        if len(up) >= k:
            mid, up = up[k - 1:] + mid, up[:k - 1]
        r = k - len(up)
        new = (up + mid, None) if len(mid) <= r else (up, (r, sorted(mid)))
        if new[1] is None or sorted(new[0]) != sorted(Pj) or sorted(new[1][1]) != sorted(Gt):
            changes += 1
        columns[j] = new
    return clean, columns, changes


def join_parts(lr, lc, imb, wa, wb, todo, f, h, near, ct, balance):
    """The joins of ``_kkt.join_parts`` over the dense gaps ``near_j - e_ij`` (every
    entry of the two sides at each join): ``(rows, columns, lr, lc)``."""
    lr, lc, imb, wa, wb = (np.array(x) for x in (lr, lc, imb, wa, wb))
    gaps = near[:, None] - (f[None, :] + h[:, None] - ct)  # (m, n)
    stack, ai, aj = [int(c) for c in todo], [], []
    while stack:
        c = stack.pop()
        if not abs(imb[c]) > balance * (wa[c] + wb[c]):
            continue
        lack = imb[c] > 0
        rows = [i for i in range(lr.size) if (lr[i] == c) == lack]
        cols = [j for j in range(lc.size) if (lc[j] == c) != lack]
        if not rows or not cols:
            continue
        least = min(gaps[j, i] for j in cols for i in rows)
        j, i = min((j, i) for j in cols for i in rows if gaps[j, i] == least)
        ai.append(i)
        aj.append(j)
        d = lc[j] if lack else lr[i]
        lr[lr == d] = c
        lc[lc == d] = c
        imb[c], wa[c], wb[c] = imb[c] + imb[d], wa[c] + wa[d], wb[c] + wb[d]
        imb[d] = wa[d] = wb[d] = 0.0
        stack.append(c)
    return ai, aj, lr, lc
