"""The problem layer: validated problem data and solver settings, shared by every solver.

:class:`LinearProblem` holds the data of a linear OT problem (weights, cost, dtype) as
validated once by :func:`ottools._validation._check_linear_problem`, and what every solver
derives from it: the problem compressed to the positive weights (``ac``, ``bc``,
``costc``), potentials expanded back to the full index sets (a soft or hard
c-transform for the zero-weight entries), the gauge (``f + c``, ``g - c``), warm starts
and plans embedded back into the full shape. :class:`Settings` holds how to solve it
(``tol``, ``maxiter``, ``callback``, the method's checked options), kept apart from the
data so that one problem can be solved under several settings (stages, the three
problems of a divergence).
"""

import copy
import functools
import math
import sys
from dataclasses import dataclass, replace

import numpy as np

from ._kernels import lazy
from ._validation import (
    _as_float_array,
    _check_callback,
    _check_int,
    _check_linear_problem,
    _check_tol,
)

__all__ = []

_lse = lazy("_lse")


class LinearProblem:
    """A validated linear OT problem ``(a, b, cost)`` in one float dtype.

    Attributes: ``a`` (n,), ``b`` (m,), ``cost`` (n, m, C-contiguous), ``dtype``;
    ``rows``, ``cols`` (indices of the positive weights); ``ac``, ``bc``, ``costc`` (the
    compressed problem, C-contiguous); ``loga``, ``logb`` (their logs); ``mass``
    (``sum(a)`` as a float; unbalanced solves take the mass at which the penalties
    balance, ``sum(a)**(1 - w) sum(b)**w``, see :meth:`with_mass` and
    ``_sinkhorn._balance_mass``). Read-only by convention: solvers never modify them.
    """

    def __init__(self, a, b, cost, dtype, cost_range=None):
        self.a, self.b, self.cost, self.dtype = a, b, cost, np.dtype(dtype)
        self.rows = np.flatnonzero(a > 0)
        self.cols = np.flatnonzero(b > 0)
        n, m = cost.shape
        self.compressed = self.rows.size < n or self.cols.size < m
        self.ac = np.ascontiguousarray(a[self.rows])
        self.bc = np.ascontiguousarray(b[self.cols])
        # A geometry (``ottools.PointCloud``) computes its costs on the fly.
        self.geometry = getattr(cost, "_ottools_geometry", False)
        if self.geometry:
            self.costc = cost.subset(self.rows, self.cols) if self.compressed else cost
        else:
            self.costc = self._compressed_cost(cost) if self.compressed else cost
        # Total mass (of a; b has it too in a balanced problem): err is relative to it.
        self.mass = float(self.ac.sum(dtype=np.float64))
        # (min, max) of the validated cost (see _check_cost's ``extremes``), which are
        # those of ``costc`` when nothing was compressed (the cast to ``dtype`` is exact)
        self._range = None
        if cost_range is not None and not (self.compressed or self.geometry):
            self._range = cost_range

    @functools.cached_property
    def loga(self):
        """``log(ac)`` (positive weights only; computed on first use)."""
        return np.log(self.ac)

    @functools.cached_property
    def logb(self):
        """``log(bc)``."""
        return np.log(self.bc)

    def _compressed_cost(self, cost):
        """``cost[rows][:, cols]`` (C-contiguous) through :func:`allocate`, copied in
        blocks of rows (no full-size temporary)."""
        rows, cols = self.rows, self.cols
        out = allocate((rows.size, cols.size), cost.dtype,
                       "The cost restricted to the positive weights")
        step = max(1, (1 << 22) // max(1, cost.shape[1]))
        for i0 in range(0, rows.size, step):
            out[i0:i0 + step] = cost[rows[i0:i0 + step]][:, cols]
        return out

    @classmethod
    def from_args(cls, a, b, cost, *, balanced=True, mass_rtol=1e-6, hint=""):
        """Validate the public arguments (errors name them) and build the problem."""
        extremes = []
        a, b, cost, dtype = _check_linear_problem(a, b, cost, balanced=balanced,
                                                  mass_rtol=mass_rtol, hint=hint,
                                                  extremes=extremes)
        return cls(a, b, cost, dtype, cost_range=extremes[0] if extremes else None)

    @property
    def shape(self):
        return self.cost.shape

    def with_mass(self, mass):
        """A shallow copy whose ``mass`` (the scale of the solvers' ``err``) is ``mass``."""
        out = copy.copy(self)
        out.mass = float(mass)
        return out

    @property
    def cost_range(self):
        """``(min, max)`` of the compressed cost, as floats (computed once)."""
        if self._range is None:
            if self.geometry:
                self._range = tuple(float(v) for v in self.costc.cost_extremes())
            else:
                self._range = (float(self.costc.min()), float(self.costc.max()))
        return self._range

    @property
    def spread(self):
        """``max(C) - min(C)`` over the compressed problem."""
        lo, hi = self.cost_range
        return hi - lo

    @property
    def cost_scale(self):
        """``max |C|`` over the compressed problem."""
        lo, hi = self.cost_range
        return max(abs(lo), abs(hi))

    # ----------------------------------------------------------------- potentials
    def init_potentials(self, init, *, semi=False, name="init", centre=True):
        """Compressed float64 starting potentials from ``init`` (None or a pair (f, g)).

        The problem is invariant under ``(f + c, g - c)``: a warm start is re-centred
        (``<f, a> = <g, b>``) so that a large gauge constant costs no precision in the
        iterations. ``semi``: ``g`` may be ``None`` (semi-dual solvers).
        """
        nr, mc = self.rows.size, self.cols.size
        if init is None:
            return np.zeros(nr), np.zeros(mc)
        if not (isinstance(init, (tuple, list)) and len(init) == 2):
            raise TypeError(f"`{name}` must be a pair (f, g) of potentials, or None.")
        n, m = self.shape
        f = _as_float_array(init[0], f"{name}[0]", ndim=1, dtype=np.float64)
        if init[1] is None and semi:
            g = None
        elif init[1] is None:
            raise TypeError(f"`{name}[1]` (g) is required by this solver.")
        else:
            g = _as_float_array(init[1], f"{name}[1]", ndim=1, dtype=np.float64)
        if f.shape[0] != n or (g is not None and g.shape[0] != m):
            got = (f.shape[0], None if g is None else g.shape[0])
            raise ValueError(f"`{name}` potentials must have lengths ({n}, {m}) to match "
                             f"`cost` of shape {self.shape}; got {got}.")
        if not (np.all(np.isfinite(f)) and (g is None or np.all(np.isfinite(g)))):
            raise ValueError(f"`{name}` potentials must be finite.")
        fc = np.ascontiguousarray(f[self.rows])
        if g is None:
            return fc, np.zeros(mc)
        gc = np.ascontiguousarray(g[self.cols])
        if not centre:
            return fc, gc
        shift = self.gauge_shift(fc, gc, self.ac, self.bc)
        return fc + shift, gc - shift

    def gauge_shift(self, f, g, a, b):
        """The ``c`` that centres ``(f + c, g - c)`` so that ``<f, a> = <g, b>``."""
        ma = float(a.sum(dtype=np.float64))
        return ((float(g @ b.astype(np.float64, copy=False))
                 - float(f @ a.astype(np.float64, copy=False))) / (2 * ma))

    def expand(self, fc, gc, reg=0.0, tau=(1.0, 1.0), centre=True, dtype=None):
        """Full, centred potentials in the problem's dtype (or ``dtype``) from compressed
        ones.

        Zero-weight entries get their c-transform against the positive ones: the soft
        one ``-reg log sum_j b_j exp((g_j - C_ij) / reg)`` for ``reg > 0`` (the entropic
        optimality condition; times ``tau`` for a KL-relaxed marginal), the hard one
        ``min_j (C_ij - g_j)`` for ``reg = 0`` (the largest value that keeps the entry out
        of the support). Then (``centre``) the gauge is fixed so that ``<f, a> = <g, b>``;
        unbalanced problems have no gauge freedom (``centre=False``).
        """
        fc = np.asarray(fc, dtype=np.float64)
        gc = np.asarray(gc, dtype=np.float64)
        if not self.compressed:
            f, g = fc, gc  # (copied below, by the cast or the shift)
        else:
            n, m = self.shape
            f = np.empty(n)
            g = np.empty(m)
            f[self.rows] = fc
            g[self.cols] = gc
            zr = np.setdiff1d(np.arange(n), self.rows)
            zc = np.setdiff1d(np.arange(m), self.cols)
            if zr.size:
                f[zr] = tau[0] * self._c_transform_rows(zr, gc, reg)
            if zc.size:
                g[zc] = tau[1] * self._c_transform_cols(zc, fc, reg)
        dt = self.dtype if dtype is None else dtype
        if not centre:
            return f.astype(dt), g.astype(dt)
        shift = self.gauge_shift(f, g, self.a, self.b)
        return (f + shift).astype(dt, copy=False), (g - shift).astype(dt, copy=False)

    def block(self, rows, cols):
        """The dense cost block ``C[rows][:, cols]`` (a point cloud's rounded to the
        problem's dtype, as ``PointCloud.dense()`` stores it)."""
        if self.geometry:
            return self.cost.block(rows, cols).astype(self.dtype, copy=False)
        return self.cost[np.ix_(rows, cols)]

    def _c_transform_rows(self, zr, gc, reg):
        """The c-transform of the rows ``zr`` against ``(gc, b)`` (see :meth:`expand`):
        a kernel reading a dense cost in place (SciPy's logsumexp on a copied block took
        ~90 % of a 784-bin histogram problem's call), else the block's."""
        if reg > 0 and not self.geometry:
            out = np.empty(zr.size)
            _lse.c_transform_sub(self.cost, zr.astype(np.int64, copy=False),
                                 self.cols.astype(np.int64, copy=False),
                                 gc, self.logb, float(reg), out)
            return out
        return self._c_transform(self.block(zr, self.cols), gc, self.logb, reg)

    def _c_transform_cols(self, zc, fc, reg):
        """The c-transform of the columns ``zc`` against ``(fc, a)``."""
        if reg > 0 and not self.geometry:
            out = np.empty(zc.size)
            _lse.c_transform_sub_cols(self.cost, self.rows.astype(np.int64, copy=False),
                                      zc.astype(np.int64, copy=False), fc, self.loga,
                                      float(reg), out)
            return out
        return self._c_transform(self.block(self.rows, zc).T, fc, self.loga, reg)

    @staticmethod
    def _c_transform(C, pot, logw, reg):
        """Rows of ``C`` against ``pot``: soft (``reg > 0``) or hard c-transform."""
        C = C.astype(np.float64)
        if reg > 0:
            from scipy.special import logsumexp

            return -reg * logsumexp(logw[None, :] + (pot[None, :] - C) / reg, axis=1)
        return np.min(C - pot[None, :], axis=1)

    # ----------------------------------------------------------------------- plans
    def embed(self, Pc):
        """The full (n, m) dense plan from the compressed one (zeros elsewhere)."""
        if not self.compressed:
            return Pc
        plan = np.zeros(self.shape, dtype=Pc.dtype)
        plan[np.ix_(self.rows, self.cols)] = Pc
        return plan

    def marginal_error(self, rows, cols):
        """``err``: the L1 marginal error of a plan with these (compressed) marginals,
        relative to the total mass (identical to the absolute one for probability
        weights)."""
        e = float(np.abs(rows - self.ac).sum() + np.abs(cols - self.bc).sum())
        return e / self.mass


@dataclass(frozen=True)
class Settings:
    """How to solve: ``tol`` (on the relative marginal error), ``maxiter``, ``callback``
    and the method's checked ``options`` (a dict, see
    :func:`ottools._validation._check_option_table`)."""

    tol: float
    maxiter: int
    callback: object = None
    options: dict = None

    @classmethod
    def from_args(cls, tol, maxiter, callback, dtype, options=None):
        return cls(tol=_check_tol(tol, dtype),
                   maxiter=_check_int(maxiter, "maxiter", minimum=0),
                   callback=_check_callback(callback), options=dict(options or {}))

    def but(self, **changes):
        """A copy with ``changes`` (e.g. another ``maxiter`` for a stage)."""
        return replace(self, **changes)


def load_solver_modules():
    """Load what a solve needs besides NumPy (SciPy's result class, Numba) now: at the
    memory edge, the first ``import scipy.optimize`` after the large arrays started
    OpenBLAS, which spun in mmap for minutes, and a late Numba import failed to load
    ``libllvmlite.so``."""
    if "numba" not in sys.modules or "scipy.optimize" not in sys.modules:
        import numba  # noqa: F401

        from ._result import _define_result_class

        _define_result_class()


def allocate(shape, dtype, what):
    """``np.empty(shape, dtype)``, or a ``MemoryError`` that says what needed how much and
    how to need less. The solver's modules are loaded first (:func:`load_solver_modules`),
    so that every large array of a solve comes after them."""
    load_solver_modules()
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError:
        size = float(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
        raise MemoryError(
            f"{what} needs {size / 2**30:.3g} GiB (an array of shape {tuple(shape)} in "
            f"{np.dtype(dtype)}), which could not be allocated. Use float32 inputs or "
            f"fewer points.") from None


def budget_blocks(entries, block_entries=1 << 24, most=1000):
    """Iterations per kernel call so that one call visits about ``block_entries`` cost
    entries (tens of milliseconds): bounded blocks keep Ctrl-C responsive and the Python
    overhead between blocks negligible."""
    return int(max(1, min(most, block_entries // max(1, entries))))


def rate(errors):
    """Geometric mean rate ``(e_last / e_first) ** (1 / k)`` of a run of errors (NaN when
    not computable)."""
    e = np.asarray(errors, dtype=np.float64)
    e = e[np.isfinite(e)]
    if e.size < 2 or not (e[0] > 0 and e[-1] > 0):
        return math.nan
    return float((e[-1] / e[0]) ** (1.0 / (e.size - 1)))
