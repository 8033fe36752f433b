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


def plan_point_gradient(P, x, y):
    """``d/dx_i sum_kl P_kl |x_k - y_l|^2 = 2 sum_j P_ij (x_i - y_j)``, by loops."""
    gx = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            gx[i] += 2.0 * P[i, j] * (x[i] - y[j])
    return gx
