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
