"""The squared Euclidean cost and its vector-Jacobian product, one pass over the matrix.

For ``W = sum_ij P_ij |x_i - y_j|^2``: ``dW/dx_i = 2 (r_i x_i - (P y)_i)`` and
``dW/dy_j = 2 (c_j y_j - (P^T x)_j)`` with ``r = P 1``, ``c = P^T 1``. Done with NumPy
this reads the (n, m) plan five times (a float64 copy of a float32 plan, two sums, two
matrix products); here each row of ``P`` is read from memory once and stays in cache for
the ``2 d + 2`` vectorized passes over it, with float64 accumulation whatever ``P``'s
dtype. For small ``d`` only (the caller's choice): the column terms take (blocks, d, m)
accumulators. The dense cost itself (:func:`sqeuclidean_cost`) is written in its final
dtype from float64 sums of squared differences, without a float64 copy.
"""

import numpy as np
from numba import prange

from ._jit import FASTMATH_SAFE, jit


@jit(fastmath=FASTMATH_SAFE)
def _rows(P, x, yT, r0, r1, need_y, gx, cols, ptx):
    """Rows ``r0:r1``: ``gx`` rows, and (``need_y``) their share of ``c`` (``cols``) and
    ``P^T x`` (``ptx``, (d, m))."""
    m = P.shape[1]
    d = x.shape[1]
    for i in range(r0, r1):
        prow = P[i]
        s = 0.0
        for j in range(m):
            s += np.float64(prow[j])
        for k in range(d):
            yk = yT[k]
            t = 0.0
            for j in range(m):
                t += np.float64(prow[j]) * yk[j]
            gx[i, k] = 2.0 * (s * x[i, k] - t)
        if need_y:
            for j in range(m):
                cols[j] += np.float64(prow[j])
            for k in range(d):
                xik = x[i, k]
                pk = ptx[k]
                for j in range(m):
                    pk[j] += np.float64(prow[j]) * xik


@jit
def _finish_y(y, cols, ptx, gy):
    m, d = y.shape
    for j in range(m):
        for k in range(d):
            gy[j, k] = 2.0 * (cols[j] * y[j, k] - ptx[k, j])


@jit
def sqeuclidean_vjp(P, x, yT, y, need_y, gx, gy):
    """``gx`` (n, d) and, when ``need_y``, ``gy`` (m, d): the gradients above (serial).
    ``x``, ``y`` float64 (n, d), (m, d); ``yT`` = ``y.T`` C-contiguous; ``P`` (n, m)
    float32 or float64, C-contiguous."""
    m = P.shape[1]
    d = x.shape[1]
    cols = np.zeros(m)
    ptx = np.zeros((d, m))
    _rows(P, x, yT, 0, P.shape[0], need_y, gx, cols, ptx)
    if need_y:
        _finish_y(y, cols, ptx, gy)


@jit
def sqeuclidean_vjp_batch(P, X, YT, Y, GX, GY):
    """:func:`sqeuclidean_vjp` (``need_y``) of every pair ``P[k]``, ``X[k]``, ``Y[k]``
    into ``GX[k]``, ``GY[k]`` (one call for a batch of small pairs; each gradient that of
    one call)."""
    for k in range(P.shape[0]):
        sqeuclidean_vjp(P[k], X[k], YT[k], Y[k], True, GX[k], GY[k])


@jit(parallel=True)
def sqeuclidean_vjp_par(P, x, yT, y, need_y, gx, gy, chunks):
    """:func:`sqeuclidean_vjp` in ``chunks`` parallel row blocks (each with its own column
    accumulators, summed at the end)."""
    n, m = P.shape
    d = x.shape[1]
    nc = max(1, min(chunks, n))
    C = np.zeros((nc, m))
    T = np.zeros((nc, d, m))
    for c in prange(nc):
        _rows(P, x, yT, c * n // nc, (c + 1) * n // nc, need_y, gx, C[c], T[c])
    if need_y:
        cols = C[0].copy()
        ptx = T[0].copy()
        for c in range(1, nc):
            cols += C[c]
            ptx += T[c]
        _finish_y(y, cols, ptx, gy)


@jit
def _sq_cost_rows(x, yT, r0, r1, out, acc):
    """Rows ``r0:r1`` of ``out[i, j] = sum_k (x_ik - y_jk)^2``, summed over ``k`` in
    order in float64 (``acc``: length m), stored in ``out``'s dtype. The same operations
    give ``(i, j)`` and ``(j, i)`` of a cloud against itself (the square of a difference
    is that of its negation), so such a cost is exactly symmetric."""
    d, m = yT.shape
    for i in range(r0, r1):
        for j in range(m):
            acc[j] = 0.0
        for k in range(d):
            xik = x[i, k]
            yk = yT[k]
            for j in range(m):
                t = xik - yk[j]
                acc[j] += t * t
        for j in range(m):
            out[i, j] = acc[j]


@jit
def sqeuclidean_cost(x, yT, out):
    """The dense squared Euclidean cost (serial): ``x`` (n, d), ``yT`` (d, m) float64."""
    _sq_cost_rows(x, yT, 0, x.shape[0], out, np.empty(yT.shape[1]))


@jit
def sqeuclidean_cost_batch(X, YT, out):
    """:func:`sqeuclidean_cost` of every pair ``X[k]`` (n, d), ``YT[k]`` (d, m) into
    ``out[k]`` (one call for a batch of small pairs; each cost that of one call)."""
    acc = np.empty(YT.shape[2])
    for k in range(X.shape[0]):
        _sq_cost_rows(X[k], YT[k], 0, X.shape[1], out[k], acc)


@jit(parallel=True)
def sqeuclidean_cost_par(x, yT, out, chunks):
    """:func:`sqeuclidean_cost` in ``chunks`` parallel row blocks."""
    n = x.shape[0]
    m = yT.shape[1]
    nc = max(1, min(chunks, n))
    A = np.empty((nc, m))
    for c in prange(nc):
        _sq_cost_rows(x, yT, c * n // nc, (c + 1) * n // nc, out, A[c])
