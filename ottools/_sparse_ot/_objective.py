"""The dual and semi-dual of sparsity-constrained OT as one objective object.

:class:`SparseDual` works on the problem compressed to its positive weights and rescaled
by powers of two (exact in floating point): the cost by ``2**e >= max |cost|`` so that
it lies in [-1, 1], the weights by the power of two nearest their total mass. With
``T = M T'``, ``C = s C'`` the objective ``<T, C> + reg/2 ||T||^2`` is ``M s`` times
``<T', C'> + reg'/2 ||T'||^2`` with ``reg' = reg M / s``: the same plans, potentials in
units of ``s``. Costs near 1e300 or masses near 1e-300 therefore run at the scale of 1.
Everything is computed in float64 (the optimiser's precision), also for float32 input.
"""

import functools
import math

import numpy as np

from .._problem import allocate

__all__ = []


def _pow2_at_least(v):
    """The smallest power of two >= ``v`` (> 0, finite), at most 2**1023 (the largest
    finite one), as a float."""
    m, e = math.frexp(v)  # v = m 2**e, 0.5 <= m < 1
    return math.ldexp(1.0, min(1023, e - 1 if m == 0.5 else e))


def _pow2_nearest(v):
    """The power of two nearest ``v`` (> 0, finite) on a log scale."""
    return math.ldexp(1.0, round(math.log2(v)))


class ScaledProblem:
    """The compressed problem rescaled by powers of two; see the module docstring.

    ``cost_t`` (mc, nr) is the transposed compressed cost / ``s`` in float64, ``ac``,
    ``bc`` the positive weights / ``M``, ``reg`` the rescaled regularisation. Raises
    ``ValueError`` (naming ``reg`` and ``cost``) when ``reg M / s`` leaves the normal
    float64 range: the problem cannot be represented at any scale then.
    """

    def __init__(self, prob, reg):
        costc = prob.costc
        cmax = float(np.max(np.abs(costc))) if costc.size else 0.0
        self.s = _pow2_at_least(cmax) if cmax > 0 else 1.0
        self.M = _pow2_nearest(prob.mass)
        reg_s = reg * self.M / self.s
        tiny = np.finfo(np.float64).tiny
        if not (tiny * 2**60 <= reg_s <= 1.0 / (tiny * 2**60)):
            raise ValueError(
                f"`reg`={reg!r} is out of scale with `cost` (max |cost| = {cmax:.3g}) and "
                f"the total mass {prob.mass:.3g}: reg * mass / max|cost| = {reg_s:.3g} is "
                f"beyond float64's range; rescale `cost` or change `reg`.")
        self.reg = reg_s
        self.cost_t = allocate((costc.shape[1], costc.shape[0]), np.float64,
                               "The transposed float64 cost of sparse OT")
        self.cost_t[...] = costc.T
        self.cost_t /= self.s  # a power of two: exact
        self.ac = prob.ac.astype(np.float64) / self.M
        bc = prob.bc.astype(np.float64) / self.M
        # Equal masses in float64: float32 weights differ by their rounding (~1e-8), and
        # the (semi-)dual grows without bound along f + c (slope: the difference).
        self.bc = bc * (self.ac.sum() / bc.sum())
        self.mass = float(self.ac.sum())
        self.nr = self.ac.size
        self.mc = self.bc.size


# Working sets (:func:`ottools._kernels._sparse.working_set`) from this many entries on.
# Below, the compiled ascent loop (which evaluates full columns, with their hints) is
# faster: at 200 x 200 it took 21 ms against 33 ms for the hard grid problem (d = 2,
# gamma = 1, k = 2); at 400 x 400 the two were even; at 1000 x 1000 the working sets
# took 0.77 s against 1.57 s (notes: rowtimes_ws.py).
_WS_MIN_ENTRIES = 1 << 16
_NO_WS = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0))


class _WorkingSets:
    """The rows that can carry mass in each column, valid while the potentials stay
    within a margin of those they were built at; the evaluations on them equal the full
    ones to the bit (see :func:`ottools._kernels._sparse.working_set`), at the cost of
    the sets' entries instead of all ``n m``.

    Near the solution the iterates move by much less than the scale ``reg b_j`` of a
    column's support, and a set holds a few entries per column. After a full evaluation
    the sets are rebuilt there with a margin of 8 times the last move of the potentials
    (sup norm), at least 4 ``max_j reg b_j``. Sets are kept to ``max(64, 4 min(k, 16))``
    entries per column on average (and an eighth of the matrix): larger ones are given up
    for the next 16 evaluations, twice as many after each further failure."""

    def __init__(self, sp, k, semi):
        self.sp, self.semi = sp, semi
        self.margin0 = 4.0 * float(np.max(sp.reg * sp.bc))
        self.margin = self.margin0
        cap = min(sp.nr * sp.mc // 8, max(64, 4 * min(k, 16)) * sp.mc)
        self.ptr = np.empty(sp.mc + 1, dtype=np.int64)
        self.rows = np.empty(cap, dtype=np.int64)
        self.costs = np.empty(cap)
        self.at = None  # (f, g) the sets were built at
        self.last = None  # the last point evaluated
        self.move = 0.0
        self.pause = 0
        self.backoff = 16

    def _dist(self, f, g, ref):
        d = float(np.max(np.abs(f - ref[0]))) if f.size else 0.0
        if g is not None and g.size:
            d += float(np.max(np.abs(g - ref[1])))
        return d

    def covering(self, f, g):
        """``(ptr, rows, costs)`` if the sets hold every entry that matters at ``(f, g)``,
        else None."""
        if self.at is None and self.pause > 1:
            # no sets, and none built after this evaluation or the next: the move that
            # sizes the margin is not needed yet
            self.last = None
            return None
        self.move = 0.0 if self.last is None else self._dist(f, g, self.last)
        self.last = (f.copy(), None if g is None else g.copy())
        if self.at is None:
            return None
        # semi-dual: twice the move of f; dual: the move of f plus that of g
        if (2.0 if self.semi else 1.0) * self._dist(f, g, self.at) > self.margin:
            return None
        p = self.ptr[-1]
        return self.ptr, self.rows[:p], self.costs[:p]

    def rebuild(self, f, g):
        """New sets at ``(f, g)`` (after a full evaluation there)."""
        if self.pause:
            self.pause -= 1
            return
        from .._kernels import _sparse

        sp = self.sp
        self.margin = max(self.margin0, 8.0 * self.move)
        nnz = _sparse.working_set(f, np.zeros(sp.mc) if g is None else g, sp.cost_t, sp.reg,
                                  sp.bc, self.semi, self.margin, self.ptr, self.rows,
                                  self.costs)
        if nnz < 0:
            self.at, self.pause = None, self.backoff
            self.backoff *= 2
        else:
            self.at = self.last
            self.backoff = 16  # a set that fits: early failures (large moves) are over


class SparseDual:
    """Dual (``semi=False``, variables ``(f, g)``) or semi-dual (``f`` only) of
    sparsity-constrained OT with at most ``k`` non-zeros per column.

    :meth:`value_grad` evaluates the objective to be maximised and its gradient
    ``(a - T 1, b - T^T 1)`` (semi-dual: ``a - T 1``) and caches them at the last point, so
    that asking again for the same point (plan, potentials, error) costs nothing. Every
    evaluation is counted in ``nfev``. The instance owns its scratch buffers: one
    instance per solve, never shared between threads.
    """

    def __init__(self, sp, k, semi):
        from .._kernels import _sparse, _sparse_ascent  # Numba loads on the first solve

        self._k = _sparse
        self._a = _sparse_ascent
        self.sp = sp
        self.semi = semi
        self.k = min(k, sp.nr)
        self.nr, self.mc = sp.nr, sp.mc
        self.nx = sp.nr if semi else sp.nr + sp.mc
        from .._kernels._jit import parallel_ok

        nb = _sparse.column_blocks(sp.mc, sp.nr)
        # Blocks on threads, or (in a process forked after a parallel kernel ran, where
        # OpenMP is not fork-safe) the same blocks one after the other: the same result.
        name = "semi_dual_value_grad" if semi else "dual_value_grad"
        self._fn_ws = getattr(_sparse, name + "_blocks_serial")
        # the semi-dual's serial kernel keeps, per column, the rows of its k + 1 largest
        # entries as hints for the next evaluation (same result; 17-18 us against 29-47 us
        # per evaluation on the iterates of a 200 x 200 problem with k = 2)
        hinted = semi and nb == 1 and self.k <= _sparse.INSERT_K and self.k < sp.nr
        self._hints = (np.full((sp.mc, self.k + 1), -1, dtype=np.int64) if hinted
                       else np.empty((0, 1), dtype=np.int64))
        # with them, bounds that let most columns skip the count of their other rows
        self._bounds = _sparse.new_bounds(sp.mc, sp.nr) if hinted else np.empty(0)
        if nb == 1:
            self._fn = getattr(_sparse, name)
            if semi:
                self._fn = functools.partial(self._fn, hints=self._hints,
                                             bounds=self._bounds)
        elif parallel_ok():
            self._fn = getattr(_sparse, name + "_blocks")
        else:
            self._fn = functools.partial(self._fn_ws, ws=_NO_WS)
        self._ws = None if sp.nr * sp.mc < _WS_MIN_ENTRIES else _WorkingSets(sp, self.k, semi)
        self._vals = np.empty((nb, sp.nr))
        self._idx = np.empty((nb, sp.nr), dtype=np.int64)
        self._acc = np.empty((nb, sp.nr))
        self._gf = np.empty(sp.nr)
        self._gg = np.empty(sp.mc)
        self._tau = np.empty(sp.mc)
        self._x = None
        self._val = math.nan
        self._grad = np.empty(self.nx)
        self.nfev = 0
        # the compiled loop (:func:`ottools._kernels._sparse_ascent.run`) evaluates with
        # the serial kernel on full columns: one block and no working sets
        self.compiled = nb == 1 and self._ws is None
        self.prob = (semi, sp.nr, sp.ac, sp.bc, sp.cost_t, sp.reg, self.k)
        self.scratch = (self._gf, self._gg, self._tau, self._vals, self._idx, self._acc,
                        self._hints, self._bounds)

    def semi_twin(self):
        """The semi-dual of the same problem (cached; for the dual's Newton steps,
        :func:`._newton._dual_step`). Its evaluations are added to this ``nfev`` by the
        caller."""
        twin = getattr(self, "_semi_twin", None)
        if twin is None:
            twin = self._semi_twin = self if self.semi else SparseDual(self.sp, self.k, True)
        return twin

    # ---------------------------------------------------------------- evaluation
    def value_grad(self, x):
        """``(value, gradient)`` at ``x`` (float64, length ``nx``); the gradient is a
        fresh array. Non-finite values are returned as they are (the caller decides)."""
        if self._x is not None and np.array_equal(x, self._x):
            return self._val, self._grad.copy()
        return self.trial(x)

    def trial(self, x):
        """:meth:`value_grad` without looking up the cache first (it is updated): for the
        line search's trial points ``x + t d``, which are new points."""
        sp = self.sp
        f = np.ascontiguousarray(x[:self.nr])
        g = None if self.semi else np.ascontiguousarray(x[self.nr:])
        self.nfev += 1
        ws = None if self._ws is None else self._ws.covering(f, g)
        fn = self._fn if ws is None else functools.partial(self._fn_ws, ws=ws)
        if self.semi:
            val = fn(f, sp.ac, sp.bc, sp.cost_t, sp.reg, self.k, self._gf, self._tau,
                     self._vals, self._idx, self._acc)
            self._grad[:] = self._gf
        else:
            val = fn(f, g, sp.ac, sp.bc, sp.cost_t, sp.reg, self.k, self._gf, self._gg,
                     self._vals, self._idx, self._acc)
            self._grad[:self.nr] = self._gf
            self._grad[self.nr:] = self._gg
        if ws is None and self._ws is not None:
            self._ws.rebuild(f, g)
        self._x = np.array(x, dtype=np.float64, copy=True)
        self._val = float(val)
        return self._val, self._grad.copy()

    def forget(self):
        """Drop the cached point (after the compiled loop evaluated elsewhere)."""
        self._x = None

    def remember(self, x, val, grad):
        """Cache ``(val, grad)`` at ``x``: the compiled loop's last evaluation, whose
        thresholds ``tau`` the scratch holds."""
        self._x = np.array(x, dtype=np.float64, copy=True)
        self._val = float(val)
        self._grad[:] = grad

    def value_floor(self, v, x):
        """The rounding floor of the value ``v`` at ``x``: sums of terms as large as
        ``mass * max|x|`` (potentials in the scaled units), not only ``|v|`` (the terms
        cancel at the optimum)."""
        return 64 * np.finfo(np.float64).eps * (abs(v) + self.sp.mass * float(np.max(np.abs(x))))

    def finite(self, val, grad):
        return math.isfinite(val) and self._k.all_finite(grad)

    def err(self, grad):
        """The marginal error of the plan at the gradient's point, relative to the mass:
        the gradient is ``(a - T 1, b - T^T 1)`` (the semi-dual's columns are exact)."""
        return self._a.abs_sum(grad) / self.sp.mass

    # ---------------------------------------------------------------- potentials, plan
    def potentials(self, x):
        """Compressed ``(f, g)`` at ``x`` in the scaled units (float64). The semi-dual's
        ``g`` is minus the column thresholds, so that the plan has the dual's form."""
        if self.semi:
            self.value_grad(x)  # sets tau at x (cached)
            return np.array(x[:self.nr], dtype=np.float64), -self._tau.copy()
        return np.array(x[:self.nr], dtype=np.float64), np.array(x[self.nr:], dtype=np.float64)

    def plan(self, x):
        """The k-sparse plan at ``x``, column by column (CSC, compressed indices, scaled
        units): ``(indptr, indices, data, row_sums, col_sums, lin, sq)``."""
        sp = self.sp
        f = np.ascontiguousarray(x[:self.nr])
        g = np.zeros(self.mc) if self.semi else np.ascontiguousarray(x[self.nr:])
        vals = np.empty(self.nr)
        idx = np.empty(self.nr, dtype=np.int64)
        return self._k.plan_columns(f, g, sp.cost_t, sp.reg, self.k, self.semi, sp.bc, vals, idx)
