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
