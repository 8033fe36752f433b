"""Symmetric Sinkhorn kernel for the self-transport problems ``W_eps(a, a)``.

When both marginals are the same measure and the cost is symmetric, the optimal
potentials coincide (``f = g``) and solve the fixed point ``f = T(f)`` with the
soft-min ``T(f)_i = -reg log sum_j a_j exp((f_j - C_ij) / reg)``. Iterating ``T``
alone oscillates; the averaged update ``f <- (f + T(f)) / 2`` converges (GeomLoss,
Feydy et al. 2019). One iteration costs one row log-sum-exp sweep, half a Sinkhorn
iteration.

Marginal error. For ``P_ij = a_i a_j exp((f_i + f_j - C_ij) / reg)`` the row sums are
``P1_i = a_i exp((f_i - T(f)_i) / reg)`` and the column sums are equal to them, so the
error ``||P1 - a||_1 + ||P^T 1 - a||_1`` of the current ``f`` is
``2 sum_i a_i |expm1((f_i - T(f)_i) / reg)|``, computed for free with ``T(f)``.
Status codes are those of ``ottools._result``.
"""

import numpy as np

from ._jit import jit
from ._lse import c_transform_rows


@jit
def sinkhorn_symmetric(a, loga, cost, reg, f, tol, maxiter, first_full):
    """Averaged symmetric Sinkhorn ``f <- (f + T(f)) / 2``, in place on ``f``.

    ``a``, ``loga``: positive weights and their logs (length n); ``cost``: symmetric,
    C-contiguous (n, n). ``first_full``: the first update sets ``f = T(f)`` (no
    averaging), the usual start from ``f = 0``. Returns ``(nit, status, err)``:
    ``err`` is the marginal error of the returned ``f`` when ``status == 0``, else of
    the previous iterate; status 0 converged, 1 maxiter, 2 non-finite values (the last
    finite ``f`` is kept).
    """
    n = cost.shape[0]
    t = np.empty(n, dtype=f.dtype)
    err = np.inf
    status = 1
    nit = 0
    for it in range(maxiter):
        finite, e = c_transform_rows(a, loga, f, cost, reg, f, t)
        if not finite:
            status = 2
            break
        e *= 2.0
        err = e
        if e <= tol and not (it == 0 and first_full):
            status = 0
            break
        if it == 0 and first_full:
            for i in range(n):
                f[i] = t[i]
        else:
            for i in range(n):
                f[i] = 0.5 * (f[i] + t[i])
        nit = it + 1
    return nit, status, err
