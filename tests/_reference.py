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


def select_by_mass(values, k_min, mass_tol):
    """Smallest ``k = k_min * 2**s`` whose top-``k`` entries hold all but ``mass_tol``."""
    v = np.sort(np.ravel(values))[::-1]
    total = v.sum()
    k = min(k_min, v.size)
    while total - v[:k].sum() > mass_tol * total and k < v.size:
        k = min(2 * k, v.size)
    return v[k - 1], k


def sparsify(P, rho):
    """Kept entries (>= rho, or a row's / column's maximum; never zeros) as CSR."""
    import scipy.sparse as sp
    keep = (P >= rho) | (P == P.max(1, keepdims=True)) | (P == P.max(0, keepdims=True))
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
