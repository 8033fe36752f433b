"""``max_nz = 1`` solved exactly: the (semi-)dual's maximum through the OT linear program.

For k = 1 every semi-dual column plan is ``b_j e_i``, so the semi-dual is
``<f, a> - sum_j b_j s_j + (reg / 2) ||b||^2`` with ``s_j = max_i (f_i - c_ij)``:
piecewise linear, and by LP duality its maximum is ``OT(a, b) + (reg / 2) ||b||^2``,
attained at the row potentials of the unregularized OT problem. The dual's column term
``g_j b_j - [s_j + g_j]_+^2 / (2 reg)`` is largest at ``g_j = reg b_j - s_j``, where the
dual equals the semi-dual: same maximum. HiGHS (SciPy's ``linprog``) solves the LP; its
plan, a vertex with at most ``n + m - 1`` non-zeros, is a mix of each column's tied
one-entry plans and so certifies the maximum.
"""

import numpy as np

__all__ = []

# "auto" takes the LP up to this many positive-weight entries (HiGHS here: 0.1 s at
# 100 x 100, 1.4 s at 300 x 300, 75 s at 1000 x 1000).
AUTO_MAX_ENTRIES = 2**16
# HiGHS's largest iteration limit (an int32 option; linprog refuses larger ones)
_HIGHS_MAXITER = 2**31 - 1


def solve_k1(sp, maxiter):
    """The LP on the scaled problem ``sp``. Returns ``(status, f, plan, nit)``:
    ``status`` 0 (optimal), 1 (HiGHS's iteration limit ``maxiter``) or 4 (no optimum
    reported); ``f`` the row duals, ``plan`` the LP plan (dense (nr, mc)), both ``None``
    unless ``status`` is 0."""
    import scipy.sparse
    from scipy.optimize import linprog

    n, m = sp.nr, sp.mc
    entries = np.arange(n * m)
    a_eq = scipy.sparse.vstack([
        scipy.sparse.csr_array((np.ones(n * m), (np.repeat(np.arange(n), m), entries)),
                               shape=(n, n * m)),
        scipy.sparse.csr_array((np.ones(n * m), (np.tile(np.arange(m), n), entries)),
                               shape=(m, n * m)),
    ]).tocsc()
    b64 = sp.bc * (sp.ac.sum() / sp.bc.sum())  # equal totals in float64
    cost = np.ascontiguousarray(sp.cost_t.T).ravel()
    # HiGHS's presolve can call a feasible problem infeasible when weights are far below
    # its tolerances (1e-56 next to 1e-2 on Liu et al.'s toy problem): retry without it.
    res = None
    # HiGHS takes a 32-bit iteration limit: a larger maxiter (valid here) sets none
    maxiter = min(maxiter, _HIGHS_MAXITER)
    for options in ({"maxiter": maxiter}, {"maxiter": maxiter, "presolve": False}):
        res = linprog(cost, A_eq=a_eq, b_eq=np.concatenate([sp.ac, b64]),
                      bounds=(0.0, None), method="highs", options=options)
        if res.status in (0, 1):
            break
    if res.status == 1:
        return 1, None, None, int(res.nit)
    if res.status != 0:
        return 4, None, None, int(getattr(res, "nit", 0) or 0)
    f = np.ascontiguousarray(res.eqlin.marginals[:n])
    return 0, f, res.x.reshape(n, m), int(res.nit)


def dual_g(sp, f):
    """The dual's best ``g`` for row potentials ``f`` at k = 1: ``reg b_j - max_i (f_i -
    c_ij)`` (see the module docstring)."""
    s_max = np.max(f[None, :] - sp.cost_t, axis=1)
    return sp.reg * sp.bc - s_max
