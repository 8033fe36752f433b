"""Quasi-Newton ascent (dense BFGS, or limited-memory L-BFGS) with a weak Wolfe line
search, for concave objectives that may have kinks.

SciPy's L-BFGS-B searches for strong Wolfe points, which do not exist across a kink of a
piecewise-smooth function, and gives up there ("ABNORMAL_TERMINATION_IN_LNSRCH"). The weak
Wolfe conditions (sufficient increase, and a directional derivative that has dropped
below ``c2`` times its initial value) are met past a kink too, and a bracketing search
(doubling, then safeguarded quadratic interpolation) finds such a point in a few
evaluations (Lewis and Overton,
"Nonsmooth optimization via quasi-Newton methods", Math. Program. 141, 2013). Near the
rounding floor of the value, where no increase can be seen, the approximate Wolfe test of
Hager and Zhang (SIAM J. Optim. 16, 2005) lets the slope decide.

Dense BFGS keeps the full inverse-Hessian estimate (``nx**2`` numbers, ``O(nx**2)`` per
iteration): on the sparsity-constrained duals, piecewise smooth with badly conditioned
pieces, it reaches a given dual value in far fewer evaluations than L-BFGS and keeps
improving where L-BFGS creeps (Lewis and Overton, section 6, recommend full BFGS for
nonsmooth problems for the same reason). L-BFGS keeps ``mem`` pairs: the choice for
large ``nx``.

The vector algebra runs in small Numba kernels, not BLAS, so that the iterates do not
depend on BLAS's thread count.
"""

import math

import numpy as np

__all__ = []


class LineSearch:
    """Outcome of :func:`search`: ``ok`` (a weak Wolfe point, or a partial step with
    an increase), ``t``, ``x``, ``v``, ``g``; ``x`` is ``None`` when nothing increased."""

    __slots__ = ("ok", "t", "x", "v", "g")

    def __init__(self, ok, t=0.0, x=None, v=math.nan, g=None):
        self.ok, self.t, self.x, self.v, self.g = ok, t, x, v, g


class LBFGS:
    """L-BFGS memory (``mem`` pairs), for maximisation.

    The pairs are those of the minimised function ``-F``: ``s = x_new - x_old``,
    ``y = -(g_new - g_old)``. :meth:`reset` forgets them (a restart); the next direction is
    then the gradient, scaled to a unit first step. The ring buffer starts with room for
    at most ``_FIRST_SLOTS`` pairs and doubles (up to ``mem``) when full: a large ``mem``
    (any int >= 1 is valid) takes memory for the pairs actually stored, not ``mem`` rows
    of ``nx`` up front.
    """

    _FIRST_SLOTS = 64

    def __init__(self, nx, mem=10):
        from .._kernels import _sparse

        self._k = _sparse
        self.mem = mem
        slots = min(mem, self._FIRST_SLOTS)
        self.S = np.zeros((slots, nx))
        self.Y = np.zeros((slots, nx))
        self.rho = np.zeros(slots)
        self.count = 0
        self.head = 0  # next slot of the ring buffer
        self._d = np.empty(nx)

    def reset(self):
        self.count = 0
        self.head = 0

    def direction(self, g):
        """An ascent direction ``H g`` (a fresh array) and the first trial step."""
        if self.count == 0:
            norm = math.sqrt(self._k.dot(g, g))
            return g.copy(), (1.0 / norm if norm > 0 else 1.0)
        order = (self.head - self.count + np.arange(self.count)) % self.rho.size
        self._k.lbfgs_direction(g, self.S, self.Y, self.rho, order, self.count, self._d)
        return self._d.copy(), 1.0

    def accepted(self, t):
        """The step the line search accepted (unused: L-BFGS always tries 1 first)."""

    def update(self, s, y, d=None, g_new=None):
        """Store the pair if its curvature ``s . y`` is positive (else skip it)."""
        sy = self._k.dot(s, y)
        if not (sy > 1e-300 and math.isfinite(sy) and self._k.dot(y, y) > 0):
            return False
        if self.count == self.rho.size < self.mem:
            self._grow()
        self.S[self.head] = s
        self.Y[self.head] = y
        self.rho[self.head] = 1.0 / sy
        self.head = (self.head + 1) % self.rho.size
        self.count = min(self.count + 1, self.mem)
        return True

    def _grow(self):
        """Twice the slots (at most ``mem``), the pairs kept from the oldest to the
        newest in the first ``count`` of them."""
        order = (self.head - self.count + np.arange(self.count)) % self.rho.size
        slots = min(self.mem, 2 * self.rho.size)
        for name in ("S", "Y", "rho"):
            old = getattr(self, name)
            new = np.zeros((slots,) + old.shape[1:])
            new[:self.count] = old[order]
            setattr(self, name, new)
        self.head = self.count



class BFGS:
    """Dense BFGS inverse-Hessian estimate ``H`` (nx, nx; its upper triangle), for
    maximisation.

    Pairs as in :class:`LBFGS`. The first pair seeds ``H`` with ``(s . y) / (y . y)``
    times the identity before its update; :meth:`reset` drops ``H`` (a restart). An
    iteration costs one pass over the triangle
    (:func:`ottools._kernels._sparse.bfgs_update`, which adds the previous update's
    correction while it computes ``H g``), and leaves the next direction. The scalar
    state (pairs, first trial step, ...) is the array ``state``
    (:mod:`ottools._kernels._sparse_ascent`'s ``Q_*`` fields), shared with the compiled
    loop, which takes ``arrays`` as its ``bfgs`` argument.
    """

    def __init__(self, nx):
        from .._kernels import _sparse, _sparse_ascent

        self._k = _sparse
        self._a = _sparse_ascent
        self.H = np.zeros((nx, nx))
        self.state = np.zeros(_sparse_ascent.Q_SIZE)
        self.state[_sparse_ascent.Q_TFIRST] = 1.0
        self._next = np.empty(nx)
        self._next_for = None  # the gradient _next belongs to
        self._u = np.empty(nx)
        self._ps = np.empty(nx)  # the correction not yet added to H: s, H y,
        self._phy = np.empty(nx)
        self._pending = np.zeros(3)  # rho, c, and whether there is one
        self.arrays = (self.H, self._next, self._u, self._ps, self._phy, self._pending)

    @property
    def count(self):
        return int(self.state[self._a.Q_COUNT])

    @property
    def t_first(self):
        return float(self.state[self._a.Q_TFIRST])

    def reset(self):
        self.state[self._a.Q_COUNT] = 0.0
        self.state[self._a.Q_TFIRST] = 1.0
        self._next_for = None
        self._pending[2] = 0.0

    def direction(self, g):
        self.state[self._a.Q_FROMH] = self.count > 0
        if self.count == 0:
            norm = math.sqrt(self._k.dot(g, g))
            return g.copy(), (1.0 / norm if norm > 0 else 1.0)
        if self._next_for is g:
            return self._next.copy(), self.t_first
        d = np.empty_like(g)
        self._k.sym_matvec(self.H, g, d, self._ps, self._phy, self._pending)
        return d, self.t_first

    def accepted(self, t):
        """The first trial step of the next search, at most 1 (on the kinked duals the
        full quasi-Newton step often overshoots): 1.5 times the step just accepted when
        the search took its first trial, else that step itself; 1 after a
        steepest-ascent step, whose length has other units
        (:func:`ottools._kernels._sparse_ascent.first_trial`).

        Twice the accepted step, whatever the search did, made the first trial fail the
        sufficient increase in about 60 % of the iterations on the benchmark grid (two
        evaluations each). The rule above took 18 % fewer evaluations on its 72 problems
        of n <= 400 (8,624 against 10,514, iterations 6,601 against 6,480) and 23 % fewer
        at n = 1000 (11,865 against 15,477)."""
        q = self.state
        q[self._a.Q_TFIRST] = self._a.first_trial(q[self._a.Q_FROMH] != 0.0, t,
                                                  q[self._a.Q_TFIRST])

    def update(self, s, y, d, g_new):
        """Update with the pair ``(s, y)`` taken along direction ``d`` (``= H g_old``
        when the memory is not empty), ``g_new`` the new gradient."""
        ok = self._k.bfgs_update(self.H, s, y, d, g_new, self.count == 0, self._next,
                                 self._u, self._ps, self._phy, self._pending)
        self._next_for = g_new if ok else None
        self.state[self._a.Q_COUNT] += bool(ok)
        return ok

    def before_run(self, g):
        """Before the compiled loop continues from gradient ``g``: whether the next
        direction is ready."""
        self.state[self._a.Q_NEXT] = self._next_for is g

    def after_run(self, g):
        """After the compiled loop stopped at gradient ``g`` (its array)."""
        self._next_for = g if self.state[self._a.Q_NEXT] else None


def search(fun, finite, x, v0, g0, d, t, c1=1e-4, c2=0.9, max_ls=40):
    """Weak Wolfe line search for ``max F`` from ``x`` along ``d`` (``g0 . d > 0``).

    ``fun(x) -> (value, gradient)``; a non-finite trial counts as too long a step.
    Returns a :class:`LineSearch`: a weak Wolfe point when found within ``max_ls``
    trials, else the best trial that increased ``F`` (``ok`` True, a partial step), else
    ``ok`` False. ``c1``, ``c2``: the sufficient-increase and curvature constants.
    """
    from .._kernels._sparse import dot
    from .._kernels._sparse_ascent import increases, next_trial

    dg0 = dot(g0, d)
    if not dg0 > 0:
        return LineSearch(False)
    floor = 1e-15 * abs(v0)  # below this an increase cannot be seen in float64
    lo, hi = 0.0, math.inf
    v_lo, dg_lo, v_hi = v0, dg0, math.nan
    best = None
    for _ in range(max_ls):
        xt = x + t * d
        vt, gt = fun(xt)
        interp = False
        if not finite(vt, gt):
            hi = t
        else:
            dgt = dot(gt, d)
            if increases(vt, v0, t, dg0, dgt, floor, c1):
                if vt > v0 and (best is None or vt > best.v):
                    best = LineSearch(True, t, xt, vt, gt)
                if dgt <= c2 * dg0:  # weak Wolfe point (or approximate Wolfe)
                    return LineSearch(True, t, xt, vt, gt)
                lo, v_lo, dg_lo = t, vt, dgt
            else:
                hi, v_hi, interp = t, vt, True
        t = next_trial(t, lo, hi, v_lo, dg_lo, v_hi, interp)
        if t < 0:
            break
    return best if best is not None else LineSearch(False)
