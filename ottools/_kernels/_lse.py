"""Stabilized log-sum-exp helpers shared by the entropic kernels."""

import numpy as np

from ._jit import jit


@jit
def row_lse(logw, pot, cost, inv_reg, i):
    """``log sum_j exp(logw_j + (pot_j - cost[i, j]) * inv_reg)`` for row ``i``."""
    m = cost.shape[1]
    mx = -np.inf
    for j in range(m):
        t = logw[j] + (pot[j] - cost[i, j]) * inv_reg
        if t > mx:
            mx = t
    if not np.isfinite(mx):
        return mx
    s = 0.0
    for j in range(m):
        s += np.exp(logw[j] + (pot[j] - cost[i, j]) * inv_reg - mx)
    return mx + np.log(s)


@jit
def col_lse(logw, pot, cost, inv_reg, out_max, out_sum, out):
    """Column log-sum-exp ``out_j = log sum_i exp(logw_i + (pot_i - cost[i, j]) * inv_reg)``.

    Streams the rows of the C-contiguous ``cost`` twice (max, then sum), using
    ``out_max`` and ``out_sum`` (length m) as work space.
    """
    n, m = cost.shape
    for j in range(m):
        out_max[j] = -np.inf
        out_sum[j] = 0.0
    for i in range(n):
        r = logw[i] + pot[i] * inv_reg
        for j in range(m):
            t = r - cost[i, j] * inv_reg
            if t > out_max[j]:
                out_max[j] = t
    for i in range(n):
        r = logw[i] + pot[i] * inv_reg
        for j in range(m):
            out_sum[j] += np.exp(r - cost[i, j] * inv_reg - out_max[j])
    for j in range(m):
        out[j] = out_max[j] + np.log(out_sum[j])
