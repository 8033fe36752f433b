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
error). Quasi-Newton methods are slow here because the Laplacian of a sparse support is
badly conditioned; Newton reaches the rounding floor in a few steps from a BFGS start.

With ``max_nz < n`` the plan's support is the k-sparse one, and the same Laplacian is
the Hessian of the current smooth piece: where the maximum lies inside a piece (the
relaxation is tight there, ``err`` tends to 0) Newton converges the same way; at a kink
its steps fail and the driver returns to BFGS.
"""

import numpy as np

from .._kernels import lazy

_k = lazy("_sparse")

__all__ = []

_MAX_LS = 30
DELTA0 = 1e-6


def _laplacian(obj, x):
    """``-H`` at ``x`` (scipy.sparse CSC), from the support of the plan."""
    import scipy.sparse

    indptr, indices = obj.plan(x)[:2]
    nr, mc = obj.nr, obj.mc
    A = scipy.sparse.csc_array((np.ones(indices.size), indices, indptr), shape=(nr, mc))
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

    L = _laplacian(obj, x)
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
    if t == 1.0:
        delta = max(1e-12, delta / 10.0)
    elif t < 0.1:
        delta = min(1.0, delta * 100.0)
    return xt, vt, gt, delta
