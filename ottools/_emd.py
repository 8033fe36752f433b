"""Exact (unregularized) optimal transport: ``emd``, a network simplex in Numba."""

import math

import numpy as np

from ._kernels import lazy
from ._problem import LinearProblem
from ._result import CONVERGED, MAXITER, solver_result
from ._validation import (_Option, _check_balanced, _check_int, _check_linear_problem,
                          _check_option_table)

__all__ = ["emd"]

_k = lazy("_emd")

_OPTIONS = {
    "candidates": _Option("int", None, lo=1, none_ok=True),
    "column_candidates": _Option("int", 4, lo=1),
    "block_size": _Option("int", None, lo=1, none_ok=True),
    "rc_tol": _Option("float", 1e-13, lo=0.0, lo_open=True, hi=1e-3),
}
_DEFAULTS = {key: opt.default for key, opt in _OPTIONS.items()}  # (read only)

# Relative gap between the total masses above which the problem is refused: float32
# weights carry rounding of about 1e-7 in their sums (np.full(3, 1/3, np.float32) sums
# to 1 + 3e-8), so they get the package default.
_LOW = (np.float32, np.float16)
_MASS_RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-6}

# Pivots per kernel call: tens of milliseconds at n = m = 4000, so Ctrl-C is honoured
# quickly and the Python overhead between calls is negligible.
_PIVOTS_PER_CALL = 10_000

_MAXITER_MESSAGE = (
    "Maximum number of pivots (maxiter) reached before optimality: the plan is feasible "
    "(a basic solution) but not optimal, and the potentials are not dual feasible; "
    "increase maxiter."
)
_OPTIMAL_MESSAGE = (
    "Optimal: no reduced cost C_ij - f_i - g_j is below -rc_tol * s (see emd's rc_tol)."
)


# The largest |f|, |g| of a warm start, in units of max|C| (see emd's `init`).
_GUIDE_MAX = 64.0


def emd(a, b, cost, *, maxiter=None, init=None, options=None):
    r"""Exact optimal transport (the earth mover's distance) by a network simplex.

    Solves the transport linear program

    .. math::

        \min_{P \ge 0,\; P 1 = a,\; P^T 1 = b} \langle P, C \rangle
        \;=\; \max_{f_i + g_j \le C_{ij}} \langle f, a \rangle + \langle g, b \rangle

    exactly (up to floating point), returning an optimal basic plan (at most
    ``n + m - 1`` non-zeros) and optimal dual potentials. POT's ``ot.emd`` /
    ``ot.emd2`` solve the same problem.

    Parameters
    ----------
    a : array_like, shape (n,), or None
        Source weights: finite, non-negative, positive sum; zeros allowed (``None``:
        uniform). The total masses of ``a`` and ``b`` must agree to 1e-9 (relative;
        1e-6 when the weights are float32, whose sums carry rounding of that order; a
        float32 cost with float64 weights is solved in float64 and keeps 1e-9); a
        smaller gap is taken as rounding and ``b`` is rescaled onto the mass of ``a``.
    b : array_like, shape (m,), or None
        Target weights, as ``a``.
    cost : array_like, shape (n, m), or ottools.PointCloud
        Ground cost, finite (any sign). Rectangular problems are fine. A
        :class:`~ottools.PointCloud` is solved without the dense matrix: the solver
        computes a row of costs when it prices it and an arc's cost when it enters the
        tree, so memory is O((n + m) (d + K)) (the candidate lists, see ``options``)
        instead of ``8 n m`` bytes; the result is the dense solve's to the bit (but
        the potentials of a float32 cloud's zero-weight points, to one float32 ulp).
    maxiter : int, optional
        Maximum number of pivots (simplex iterations). Default ``None``:
        ``max(100_000, 200 (n + m))`` with ``n``, ``m`` the numbers of positive
        weights, far above what random problems need (about ``13 (n + m) / 2``, see
        Notes), as a bound against stalling.
    init : tuple (f, g) of arrays, optional
        Warm start from dual potentials of lengths ``n`` and ``m``, e.g. ``(res.f,
        res.g)`` of a solve with a nearby cost, or those of :func:`ottools.sinkhorn`.
        They replace the cold-start guide potentials (see Notes); the solution does not
        depend on them (up to ties between optimal plans). Potentials beyond 64 times the
        largest ``|C|`` (after centring) are ignored: reduced costs would carry their
        rounding.
    options : dict, optional
        ``candidates`` (``None``: ``min(16, max(8, m // 6))`` for ``m <= 400``
        positive-weight columns, else 32): the length ``K`` of the per-row candidate
        lists that the pivots price (see Notes); ``column_candidates`` (4): per-column
        candidates added to the starting greedy plan; ``block_size`` (``None``:
        ``ceil(sqrt(n K))``): candidates priced per block (more than ``n K`` prices all
        ``n K``); ``rc_tol`` (1e-13, in ``(0, 1e-3]``): a reduced cost counts as
        negative below ``-rc_tol * s``, ``s`` the scale of its rounding:
        ``2 max|pi| + max(0, -min C)`` for the solver's current node potentials ``pi``
        (before centring), at most ``max|C|``. One large "forbidden" cost among small
        ones leaves the small ones their tolerance; but
        while large costs sit in the basis (many "big M" cells, with zero flow) the
        potentials and the tolerance stay near them, and so does the rounding: give such
        cells a moderate cost (well above the others, not orders of magnitude). Much
        smaller values of ``rc_tol`` let rounding noise in the potentials drive pivots
        that never end (``maxiter`` then reports it). An unknown key raises ``TypeError``.

    Returns
    -------
    res : OTResult
        ``plan`` : :class:`scipy.sparse.csr_array` (n, m) in the input dtype, an optimal
        basic plan: at most ``n + m - 1`` non-zeros (explicit zeros are not stored).
        ``fun``, ``cost`` : float, ``<P, C>`` (summed in float64).
        ``f``, ``g`` : ndarrays (n,), (m,) in the input dtype, optimal dual potentials:
        ``f_i + g_j <= C_ij + rc_tol * s`` everywhere (``s`` under ``options``), with
        equality (up to rounding, about 1e-15 of ``max|C|``) on the plan's support;
        centred so that
        ``<f, a> = <g, b>``. Entries of zero weight hold the hard c-transform
        (``f_i = min_j C_ij - g_j`` over the positive-weight ``j``, then ``g_j`` lowered
        where needed so that the zero-weight rows and columns are feasible together).
        ``dual_value`` : float, ``<f, a> + <g, b>``; equals ``fun`` at the optimum up to
        rounding and ``rc_tol``.
        ``err`` : float, the marginal error ``(||P 1 - a||_1 + ||P^T 1 - b||_1) /
        sum(a)`` of ``plan`` (rounding only: every basis is primal feasible).
        ``nit`` : int, the number of pivots.
        ``success``, ``status``, ``message``, ``method`` (``"network_simplex"``).

        ``status``: 0 optimal; 1 ``maxiter`` pivots done before optimality (the plan is
        feasible but not optimal; ``success`` is False). Infeasible problems cannot
        reach the solver: unequal masses are refused by the validation.

    Raises
    ------
    ValueError
        Masses of ``a`` and ``b`` differing by more than 1e-9 (relative; 1e-6 for
        float32 data), negative or
        non-finite weights, non-finite costs, or mismatched shapes; each message names
        the argument.
    TypeError
        Non-numeric input, a bad ``init``, or an unknown option.

    See Also
    --------
    ottools.sinkhorn : entropic OT (a smooth, dense approximation).

    Notes
    -----
    The transport problem is a minimum-cost flow on the complete bipartite graph with
    ``n + m`` nodes, solved by the primal network simplex [1]_ [2]_ on the problem
    compressed to the positive weights, in float64 (float32 input keeps its dtype in
    the outputs). A basis is a spanning tree (parent, depth and child lists, with the
    potentials read from the tree arcs); degenerate pivots, the majority on
    assignment-like problems, cannot cycle: the tree is kept strongly feasible and the
    leaving arc is chosen by Cunningham's rule.

    *Start.* Guide potentials (the double c-transform ``g_j = min_i C_ij``,
    ``f_i = min_j C_ij - g_j``, or ``init``) rank the cells by reduced cost
    ``C_ij - f_i - g_j``; the ``K`` smallest of every row (and a few of every column)
    feed a greedy "matrix minimum" plan, completed row by row; its cells form a forest,
    each tree hung from an artificial root with zero flow and its potentials offset to
    match the guide.

    *Pricing.* The entering arc is the most negative reduced cost of a block of the
    per-row candidate lists (block search [2]_ over ``n K`` arcs instead of all
    ``n m``); when the lists hold none below ``-rc_tol * s`` (``s`` under ``options``),
    one pass over the full cost matrix refills every row's list with its ``K``
    currently smallest reduced costs, and the solver stops when that pass finds none. The final pass
    certifies dual feasibility: it covers every entry of ``cost``.

    *Point clouds.* With ``cost=PointCloud(x, y, ...)`` every pass over the costs
    computes them from the points (one row at a time, the same arithmetic as
    ``PointCloud.dense()``), and the pivots read only the lists and the tree, so no
    ``n x m`` array exists; at n = m = 10,000 in 2-D the solve's memory stays in the tens
    of megabytes (``benchmarks/emd_speed.py --cloud``), where the dense cost alone
    takes 800 MB.

    *Warm starts.* ``init`` changes only the guide. Measured on uniform 2-D points with
    the squared Euclidean cost (benchmarks/emd_speed.py), the potentials of an
    optimal solve cut the pivots about 2-3 fold, but :func:`ottools.sinkhorn` at any
    ``reg`` that helps costs more than the whole cold solve, so ``init=None`` is the
    cold start and an entropic warm start is never run implicitly.

    References
    ----------
    .. [1] N. Bonneel, M. van de Panne, S. Paris, W. Heidrich, "Displacement
       interpolation using Lagrangian mass transport", ACM Trans. Graph. 30(6), 2011
       (SIGGRAPH Asia).
    .. [2] P. Kovács, "Minimum-cost flow algorithms: an experimental evaluation",
       Optimization Methods and Software 30(1), 2015.
    .. [3] W. H. Cunningham, "A network simplex method", Mathematical Programming 11,
       1976.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> cost = np.array([[0.0, 1.0, 4.0], [1.0, 0.0, 1.0]])
    >>> res = ottools.emd([0.5, 0.5], [0.25, 0.5, 0.25], cost)
    >>> res.success, res.method
    (True, 'network_simplex')
    >>> round(res.fun, 12)
    0.5
    >>> res.plan.toarray()
    array([[0.25, 0.25, 0.  ],
           [0.  , 0.25, 0.25]])
    """
    # float32 weights carry float32 rounding in their sums whatever the cost's dtype (a
    # float64 cost made the tolerance 1e-9: np.full(3, 1/3, np.float32) was refused)
    low = (getattr(a, "dtype", None) in _LOW) or (getattr(b, "dtype", None) in _LOW)
    extremes = []  # (min, max) of the cost, which come with its check
    a, b, cost, dtype = _check_linear_problem(a, b, cost, balanced=False, extremes=extremes)
    b = _check_balanced(a, b, rtol=_MASS_RTOL[np.dtype(np.float32) if low else dtype])
    prob = LinearProblem(a, b, cost, dtype, cost_range=extremes[0] if extremes else None)
    scale = 0
    if not prob.geometry and prob.cost_scale > 2.0 ** 1000:
        # Costs near float64's top: differences of potentials overflowed (NaN reduced
        # costs priced nothing, and a plan 66 % above the optimum was called optimal).
        # Solved on the costs scaled by a power of two (exact), the results scaled back.
        scale = math.frexp(prob.cost_scale)[1]
        prob = LinearProblem(a, b, np.ldexp(prob.cost, -scale).astype(dtype), dtype)
        if init is not None:
            init = tuple(np.ldexp(np.asarray(p, dtype=np.float64), -scale) for p in init)
    opts = _DEFAULTS if options is None else _check_option_table(options, _OPTIONS, "emd")
    n, m = prob.ac.size, prob.bc.size
    if maxiter is None:
        maxiter = max(100_000, 200 * (n + m))
    maxiter = _check_int(maxiter, "maxiter", minimum=0)
    guide = None if init is None else prob.init_potentials(init)
    if guide is not None and not (max(float(np.abs(guide[0]).max()),
                                      float(np.abs(guide[1]).max()))
                                  <= _GUIDE_MAX * prob.cost_scale):
        # Potentials far beyond the costs leave reduced costs to their rounding, eps |f|,
        # above rc_tol max|C|: a warm start of 1e16 on costs in [0, 1] ended as optimal
        # with fun 0.45 above the optimum. Ignored (the cold guide).
        guide = None

    if prob.geometry:  # costs computed when a row or an arc needs them
        src = _k.cloud_source(*prob.costc.kernel_args(),
                              low=prob.costc.dtype == np.float32)
    else:
        src = _k.dense_source(prob.costc)
    a64 = prob.ac.astype(np.float64)
    b64 = prob.bc.astype(np.float64)
    b64 *= a64.sum() / b64.sum()  # equal masses in float64 (float32 sums differ)
    if guide is None:  # the double c-transform of the cost, computed in start
        f0 = np.empty(n)
        g0 = np.empty(m)
    else:
        f0, g0 = guide
    K = min(opts["candidates"] or _default_candidates(m), m)
    kc = min(opts["column_candidates"], n)
    lj = np.empty((n, K), dtype=np.int64)
    lc = np.empty((n, K))
    lv = np.empty((n, K))
    ci = np.empty((m, kc), dtype=np.int64)
    cv = np.empty((m, kc))
    tree = _Tree(n + m + 1)
    # The reduced-cost tolerance, rc_tol times the scale of the rounding in
    # C_ij - f_i - g_j where it can be negative: such an entry has C_ij < f_i + g_j, so
    # its rounding is that of 2 max|pi| + max(0, -min C) (pi the current potentials),
    # capped at max|C| (see _k.tolerance). Scaled by max|C| alone, one large cost ("big
    # M" on a forbidden cell: 1e13 among costs in [0, 1]) let every reduced cost of the
    # others pass for zero (a plan 137 % above the optimum called optimal).
    tol_args = (opts["rc_tol"], prob.cost_scale, max(0.0, -prob.cost_range[0]))
    # a block past the n K list entries prices them all, as a block of n K does
    block = min(opts["block_size"] or math.ceil(math.sqrt(n * K)), n * K)
    state = np.zeros(2, dtype=np.int64)  # list position, number of full sweeps
    # the start and the first pivots in one call (a small problem's whole solve)
    nit, optimal = _k.solve_start(src, a64, b64, f0, g0, guide is None, lj, lc, lv, ci, cv,
                                  *tree.arrays(), state, block, *tol_args,
                                  min(_PIVOTS_PER_CALL, maxiter))
    while nit < maxiter and not optimal:
        done, optimal = _k.pivot_round(src, *tree.arrays(), lj, lc, lv, state, block,
                                       *tol_args, min(_PIVOTS_PER_CALL, maxiter - nit))
        nit += done
    if not optimal:  # maxiter pivots done (or maxiter=0): a full pass decides
        optimal = _k.is_optimal(src, tree.pi, lj, lc, lv, _k.tolerance(tree.pi, *tol_args))
    res = _result(prob, tree, src, bool(optimal), nit)
    if scale:
        with np.errstate(over="ignore"):
            for key in ("fun", "cost", "dual_value"):
                res[key] = float(np.ldexp(res[key], scale))
            res.f, res.g = (np.ldexp(p, scale).astype(p.dtype) for p in (res.f, res.g))
    return res


def _default_candidates(m):
    """The default list length ``K``: 32, and 8 to 16 for rows of at most 400 entries,
    where ``K = 32`` made the start and each full pass an insertion sort of a large part
    of every row. Measured on uniform 2-D points (dense cost), POT/ottools time went from
    0.51 to about 1.0 at n = 50, from 0.49 to 0.7 at n = 100 and 0.84 to 1.2 at n = 200.
    (K = 16 was no slower on dense costs up to n = 4000, but a point cloud's full pass
    computes every cost: at n = 10,000 it took 6.0 s against 3.9 s; the cloud and the
    dense solve take the same default, so their results agree to the bit.)"""
    return min(16, max(8, m // 6)) if m <= 400 else 32


class _Tree:
    """The spanning-tree basis (see ``ottools._kernels._emd``), one array per field."""

    def __init__(self, nodes):
        self.parent = np.empty(nodes, dtype=np.int64)
        self.flow = np.zeros(nodes)
        self.cost_up = np.zeros(nodes)
        self.depth = np.zeros(nodes, dtype=np.int64)
        self.first_child = np.empty(nodes, dtype=np.int64)
        self.next_sib = np.empty(nodes, dtype=np.int64)
        self.prev_sib = np.empty(nodes, dtype=np.int64)
        self.pi = np.zeros(nodes)

    def arrays(self):
        return (self.parent, self.flow, self.cost_up, self.depth, self.first_child,
                self.next_sib, self.prev_sib, self.pi)



def _result(prob, tree, src, optimal, nit):
    import scipy.sparse

    n, m = prob.ac.size, prob.bc.size
    data = np.empty(n + m)
    indices = np.empty(n + m, dtype=np.int64)
    indptr = np.empty(prob.shape[0] + 1, dtype=np.int64)
    full = not prob.compressed  # potentials and dual value from the kernel
    f = np.empty(n if full else 0, dtype=prob.dtype)
    g = np.empty(m if full else 0, dtype=prob.dtype)
    cnt, fun, gap, dual_value = _k.plan_arrays(
        src, tree.parent, tree.flow, tree.pi, prob.rows, prob.cols, prob.shape[1],
        prob.ac, prob.bc, data, indices, indptr, f, g, full)
    err = gap / prob.mass
    if not full:
        f, g = prob.expand(-tree.pi[:n], tree.pi[n:n + m], reg=0.0)
        _fix_zero_block(prob, f, g)
        dual_value = float(f.astype(np.float64) @ prob.a.astype(np.float64)
                           + g.astype(np.float64) @ prob.b.astype(np.float64))
    # CSR directly, in scipy's canonical form (sorted, distinct cells): a third of
    # coo -> csr's time, which was a fifth of a small problem's call
    plan = scipy.sparse.csr_array((data[:cnt].astype(prob.dtype, copy=False),
                                   indices[:cnt], indptr), shape=prob.shape)
    status = CONVERGED if optimal else MAXITER
    message = _OPTIMAL_MESSAGE if optimal else _MAXITER_MESSAGE
    return solver_result(status, err=err, tol=0.0, nit=nit, method="network_simplex",
                         message=message, fun=fun, cost=fun, plan=plan, f=f, g=g,
                         dual_value=dual_value)


def _fix_zero_block(prob, f, g):
    """Make ``f_i + g_j <= C_ij`` hold also between zero-weight rows and zero-weight
    columns: ``LinearProblem.expand`` gives each of them the c-transform against the
    positive-weight side only. Lowering ``g_j`` where ``b_j = 0`` changes neither
    ``<g, b>`` nor the centring."""
    n, m = prob.shape
    if prob.rows.size == n or prob.cols.size == m:
        return
    zr = np.setdiff1d(np.arange(n), prob.rows)
    zc = np.setdiff1d(np.arange(m), prob.cols)
    block = prob.block(zr, zc).astype(np.float64) - f[zr, None].astype(np.float64)
    g[zc] = np.minimum(g[zc], block.min(axis=0).astype(g.dtype))
