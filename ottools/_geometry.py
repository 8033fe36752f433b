"""How costs are read: a point-cloud cost computed on the fly (``PointCloud``) and the
plan it yields as an operator.

A :class:`PointCloud` stands in for the ``(n, m)`` cost matrix of ``sinkhorn``: the
kernels of ``ottools._kernels._online`` compute each row of costs when they need it, so
memory stays O((n + m) d). Internal API for the solvers: ``PointCloud.subset``,
``.block``, ``.cost_extremes``, ``.kernel_args`` and :class:`PlanOperator`.
"""

import math
import threading

import numpy as np

from ._kernels import lazy
from ._validation import _check_point_pair, _check_positive, _result_dtype

__all__ = ["PointCloud"]

_ko = lazy("_online")

_METRICS = {"sqeuclidean": 0, "euclidean": 1, "cityblock": 2, "minkowski": 3}
# the kernels' codes of the same metrics with each pair's differences scaled (_online)
_SCALED_CODES = {"euclidean": 4, "minkowski": 5}
_ALIASES = {"l1": "cityblock", "l2": "euclidean"}  # those of ottools.cost_matrix


def _online_name(metric):
    """The kernel's name of a metric string (aliases resolved; None if it has none)."""
    if not isinstance(metric, str):
        return None
    name = _ALIASES.get(metric.lower(), metric.lower())
    return name if name in _METRICS else None


# Dense problems above this many bytes (cost, kernel and plan: 3 n m itemsize) are solved
# on a PointCloud by the functions that build their own costs (``online=None``).
DENSE_BUDGET = 2 * 2**30


def use_online(n, m, dtype, metric, online):
    """Whether to solve on a :class:`PointCloud`: ``online`` True/False, or (None) when the
    dense matrices of an (n, m) problem would exceed :data:`DENSE_BUDGET` and ``metric``
    has an online kernel."""
    supported = _online_name(metric) is not None
    if online is None:
        return supported and 3.0 * n * m * np.dtype(dtype).itemsize > DENSE_BUDGET
    if online and not supported:
        raise ValueError(f"online=True needs a metric with an online kernel "
                         f"({', '.join(map(repr, _METRICS))}); got {metric!r}.")
    return bool(online)


def point_cloud(x, y, metric, names=("x", "y"), p=None):
    """The :class:`PointCloud` of ``cost_matrix(x, y, metric, p=p)`` with its defaults:
    for the functions that switch between a dense cost and an online one (``"minkowski"``
    is the distance with ``p = 2`` unless ``p`` is given, as in
    :func:`ottools.cost_matrix`). Points whose squared norms overflow are refused naming
    the caller's argument (``names``)."""
    for z, name in zip((x, y), names):
        z64 = np.asarray(z, dtype=np.float64)
        with np.errstate(over="ignore"):
            sq = np.einsum("ij,ij->i", z64, z64)
        if not np.all(np.isfinite(sq)):
            i = int(np.flatnonzero(~np.isfinite(sq))[0])
            raise ValueError(f"`{name}` is too large for a cost computed on the fly: the "
                             f"squared norm of {name}[{i}] overflows float64; rescale the "
                             f"points.")
    if p is None and _online_name(metric) == "minkowski":
        p = 2.0
    return PointCloud(x, y, metric, p=p)


def _work(chunks, m, rows=1):
    """Per-block float64 work rows: shape (chunks, m) or (chunks, rows, m)."""
    return np.empty((chunks, m) if rows == 1 else (chunks, rows, m))


def _chunks(n, m):
    return lazy("_jit").row_chunks(n, m)


class PointCloud:
    r"""The cost ``C_ij = c(x_i, y_j) / scale`` between two point clouds, computed on the
    fly instead of stored.

    Pass it as ``cost`` to :func:`ottools.sinkhorn` (``method="auto"`` or ``"log"``): the
    solver computes each row of costs when it needs it and drops it, so memory stays
    O((n + m) d) where the dense matrix needs ``8 n m`` bytes (20 GB at n = m = 50,000).

    Parameters
    ----------
    x : array_like, shape (n, d)
        Source points (1-D input is read as ``n`` points in 1-D).
    y : array_like, shape (m, d)
        Target points, same ``d``.
    metric : {"sqeuclidean", "euclidean", "cityblock", "minkowski"}, default "sqeuclidean"
        ``|x - y|^2``, ``|x - y|``, ``sum_k |x_k - y_k|``, or the Minkowski distance
        ``(sum_k |x_k - y_k|^p)^(1/p)``.
    p : float, optional
        Exponent of ``"minkowski"`` (``p >= 1``, required there, refused elsewhere).
    scale : float or {"max", "median"}, optional
        The cost is divided by it. ``"max"``: the largest cost (one pass over the pairs,
        no storage); ``"median"``: the median cost, exact up to 10,000 pairs, else
        estimated from 10,000 pairs drawn with a fixed seed.

    Attributes
    ----------
    shape : tuple
        ``(n, m)``.
    dtype : numpy.dtype
        float32 if both clouds are float32, else float64.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> rng = np.random.default_rng(0)
    >>> geom = ottools.PointCloud(rng.random((300, 2)), rng.random((200, 2)))
    >>> res = ottools.sinkhorn(None, None, geom, 0.01)
    >>> res.success, res.plan.shape
    (True, (300, 200))
    >>> dense = ottools.sinkhorn(None, None, geom.dense(), 0.01)
    >>> bool(np.abs(res.plan_dense() - dense.plan).max() < 1e-9)
    True
    """

    _ottools_geometry = True

    def __init__(self, x, y, metric="sqeuclidean", *, p=None, scale=None):
        x, y = _check_point_pair(x, y)
        dtype = _result_dtype(x, y)
        if not isinstance(metric, str):
            raise TypeError(f"`metric` must be a string; got {type(metric).__name__}.")
        name = _online_name(metric)
        if name is None:
            raise ValueError(f"Unknown metric {metric!r} for a PointCloud; valid: "
                             f"{', '.join(map(repr, _METRICS))} (or the aliases 'l1', "
                             f"'l2').")
        if name == "minkowski":
            if p is None:
                raise TypeError("`p` is required with metric='minkowski'.")
            p = _check_positive(p, "p")
            if p < 1:
                raise ValueError(f"`p` must be >= 1; got {p!r}.")
        elif p is not None:
            raise TypeError(f"`p` is only used with metric='minkowski'; got p={p!r} with "
                            f"metric={metric!r}.")
        self.x = np.ascontiguousarray(x, dtype=dtype)
        self.y = np.ascontiguousarray(y, dtype=dtype)
        self.dtype = np.dtype(dtype)
        self.metric, self.p = name, (2.0 if p is None else float(p))
        self.code = _METRICS[name]
        x64 = self.x.astype(np.float64)
        y64 = self.y.astype(np.float64)
        if self.metric == "sqeuclidean":
            # The kernels compute |x|^2 + |y|^2 - 2 x.y, which cancels for points far from
            # the origin (at 1e7, costs near 1 were off by 0.24): they read the points
            # centred on their coordinates' median (the cost is translation-invariant),
            # in the points' dtype. x and y stay the user's points. (On the mean, one far
            # point moved the centre away from all the others: a point at 1e8 among 180
            # in the unit square put their costs 4.6e-4 off, 2.9e-8 at 1e6.)
            c = np.median(np.concatenate([x64, y64]), axis=0)
            x64, y64 = x64 - c, y64 - c
            self._kx = np.ascontiguousarray(x64.astype(dtype))
            self._ky = np.ascontiguousarray(y64.astype(dtype))
            x64, y64 = self._kx.astype(np.float64), self._ky.astype(np.float64)
        else:  # differences computed directly
            self._kx, self._ky = self.x, self.y
        # Points whose powers in the kernels (squares; |t|**p for minkowski) would
        # under/overflow float64 are read scaled by 2**-e (exact; every metric here is
        # homogeneous, of degree `_deg`): the kernels' costs are then multiplied by
        # 2**(e deg) (`_factor`). Points of 1e-170 gave euclidean costs of 0 (emd 0, and
        # scale='max' said the points coincide); minkowski p = 3 at 1e150 was refused.
        self._deg = 2 if self.metric == "sqeuclidean" else 1
        # (2 at least: the kernels' squared norms _sqx, _sqy are formed for every metric)
        power = 2.0 if self.metric != "minkowski" else max(self.p, 2.0)
        top = max(float(np.abs(x64).max(initial=0.0)), float(np.abs(y64).max(initial=0.0)))
        e = math.frexp(top)[1] if top > 0 and math.isfinite(top) else 0
        self._e = e if abs(e) * power > 900 else 0
        if self._e and self.metric in ("euclidean", "minkowski"):
            # ... and their Euclidean and Minkowski costs computed with each pair's
            # differences divided by their largest magnitude before the powers (one
            # power of two for all points turned distances near 1 beside a point at
            # 1e200 into 0: their squares, 1e-400, underflowed)
            self.code = _SCALED_CODES[self.metric]
        if self._e:
            x64, y64 = np.ldexp(x64, -self._e), np.ldexp(y64, -self._e)
            self._kx = np.ascontiguousarray(x64.astype(dtype))
            self._ky = np.ascontiguousarray(y64.astype(dtype))
            x64, y64 = self._kx.astype(np.float64), self._ky.astype(np.float64)
        self._sqx = np.einsum("ij,ij->i", x64, x64)
        self._sqy = np.einsum("ij,ij->i", y64, y64)
        if not (np.all(np.isfinite(self._sqx)) and np.all(np.isfinite(self._sqy))):
            raise ValueError("`x` and `y` are too large: their squared norms overflow; "
                             "rescale the points.")
        self._extremes = None
        self.scale = self._resolve_scale(scale)
        self._extremes = None
        # the kernels' factor, 2**(e deg) / scale (1 / scale when e = 0, to the bit); inf
        # where it overflows (the costs do: cost_extremes raises)
        mant, ex = math.frexp(self.scale)
        try:
            self._factor = math.ldexp(1.0 / mant, self._e * self._deg - ex)
        except OverflowError:
            self._factor = math.inf

    # ------------------------------------------------------------------ internals
    def _resolve_scale(self, scale):
        if scale is None:
            return 1.0
        if isinstance(scale, str):
            kind = scale.lower()
            if kind == "max":
                self.scale = 1.0
                hi = self.cost_extremes()[1]
                if not math.isfinite(hi):
                    raise ValueError(f"scale='max': the largest {self.metric!r} cost "
                                     f"overflows {self.dtype}; rescale the points.")
                if not hi > 0:
                    raise ValueError("scale='max': every cost is 0 (the points coincide).")
                return float(hi)
            if kind == "median":
                n, m = self.shape
                if n * m <= 10_000:  # every pair: the exact median
                    i, j = np.divmod(np.arange(n * m), m)
                else:
                    rng = np.random.default_rng(0)
                    i, j = rng.integers(0, n, 10_000), rng.integers(0, m, 10_000)
                med = float(np.median(self._pair_costs(i, j)))
                if not med > 0:
                    raise ValueError("scale='median': the median cost is 0.")
                return med
            raise ValueError(f"`scale` must be a positive number, 'max' or 'median'; got "
                             f"{scale!r}.")
        return _check_positive(scale, "scale")

    def _pair_costs(self, i, j):
        """``c(x_i, y_j)`` (unscaled) of the user's points, float64."""
        d = self.x[i].astype(np.float64) - self.y[j].astype(np.float64)
        if self._e:
            d = np.ldexp(d, -self._e)
        if self.metric == "sqeuclidean":
            c = np.einsum("ij,ij->i", d, d)
        elif self.metric == "cityblock":
            c = np.abs(d).sum(1)
        else:
            q = 2.0 if self.metric == "euclidean" else self.p
            # each pair's differences by the power of two above their largest (see
            # __init__ and _online.scaled_distance)
            t = np.frexp(np.abs(d).max(axis=1, initial=0.0))[1] if self._e else 0
            d = np.ldexp(d, -np.asarray(t)[..., None]) if self._e else d
            c = np.sqrt(np.einsum("ij,ij->i", d, d)) if q == 2.0 else \
                (np.abs(d) ** q).sum(1) ** (1.0 / q)
            c = np.ldexp(c, t) if self._e else c
        return np.ldexp(c, self._e * self._deg) if self._e else c

    def _user_units(self, v):
        """A statistic of the kernels' costs (points scaled by ``2**-e``) in the units of
        the scaled cost: ``v 2**(e deg) / scale``."""
        if self._e:
            with np.errstate(over="ignore", under="ignore"):
                v = float(np.ldexp(v, self._e * self._deg))
        return v / self.scale

    def kernel_args(self):
        """The leading arguments of the online kernels."""
        return (self._kx, self._ky, self._sqx, self._sqy, self.code, self.p, self._factor)

    def transposed(self):
        """The point cloud of ``C^T`` (``y`` against ``x``)."""
        t = object.__new__(PointCloud)
        t.__dict__.update(self.__dict__)
        t.x, t.y, t._sqx, t._sqy = self.y, self.x, self._sqy, self._sqx
        t._kx, t._ky = self._ky, self._kx
        return t

    def subset(self, rows, cols):
        """The point cloud of ``C[rows][:, cols]`` (same metric and scale)."""
        s = object.__new__(PointCloud)
        s.__dict__.update(self.__dict__)
        s.x, s.y = self.x[rows], self.y[cols]
        s._kx, s._ky = self._kx[rows], self._ky[cols]
        s._sqx, s._sqy = self._sqx[rows], self._sqy[cols]
        s._extremes = None
        return s

    def block(self, rows, cols):
        """The dense float64 block ``C[rows][:, cols]`` (for small blocks)."""
        return _ko.cost_block(self._kx, self._ky, np.asarray(rows, dtype=np.int64),
                              np.asarray(cols, dtype=np.int64), self._sqx, self._sqy,
                              self.code, self.p, self._factor)

    # The one-pass variance ``s2 / k - mean^2`` keeps about ``-log2(eps * s2 / (k var))``
    # bits: above this ratio of the mean square to the variance (costs with a large mean
    # against their spread, e.g. a cloud and its far translate: 25 % off at a shift of 1e6
    # and a spread of 0.01), :meth:`cost_std` takes a second pass over the pairs.
    _ONE_PASS_RATIO = 2.0**12
    # A largest cost below this (in the pass's units) has squares near or under the float64
    # underflow (2**-1022; coordinates near 1e-100 gave s2 = 0 and std 0 where np.std
    # gives 9e-202): the second pass then, on costs scaled by a power of two.
    _TINY_COST = 2.0**-400

    def _first_pass(self):
        """``{lo, hi, mean, std}`` of the unscaled costs from one pass over the pairs,
        cached; ``std`` (the one-pass ``sqrt(s2 / k - mean^2)``) only where it is accurate,
        else :meth:`_stats` adds it from :meth:`_second_pass`."""
        if self._extremes is None:
            n, m = self.shape
            nc = _chunks(n, m)
            kernel = _ko.cost_extremes_par if nc > 1 else _ko.cost_extremes
            args = (self._kx, self._ky, self._sqx, self._sqy, self.code, self.p,
                    _work(nc, m))
            lo, hi, s1, s2 = kernel(*args)
            if not (math.isfinite(lo) and math.isfinite(hi)) or _above(
                    hi, self._e * self._deg, float(np.finfo(self.dtype).max)):
                # costs that overflow where the solvers compute them (they reported inf
                # with success, or a raw OverflowError), or the dtype of the points
                # (float32 points at 1e20 beside the origin: costs of 1e40, finite in the
                # kernels' float64)
                raise ValueError(f"The {self.metric!r} cost between `x` and `y` overflows "
                                 f"{self.dtype}; rescale the points.")
            e = 0
            if not (math.isfinite(s1) and math.isfinite(s2)):
                # Finite costs whose squares overflow (above ~1e154): the same pass on
                # points scaled by a power of two (every metric here is homogeneous, of
                # degree 2 for "sqeuclidean", else 1), the statistics scaled back exactly.
                top = max(float(np.abs(self._kx).max()), float(np.abs(self._ky).max()))
                e = math.frexp(top)[1]
                x = np.ldexp(self._kx.astype(np.float64), -e)
                y = np.ldexp(self._ky.astype(np.float64), -e)
                lo, hi, s1, s2 = kernel(x, y, np.einsum("ij,ij->i", x, x),
                                        np.einsum("ij,ij->i", y, y), self.code, self.p,
                                        _work(nc, m))
                e *= 2 if self.metric == "sqeuclidean" else 1
            k = float(n) * m
            mean = s1 / k
            var = s2 / k - mean * mean
            # (costs that are all equal have variance 0, whatever the rounding of var)
            reliable = lo == hi or (var > 0 and s2 / k <= self._ONE_PASS_RATIO * var
                                    and hi >= self._TINY_COST)
            self._extremes = {"lo": math.ldexp(lo, e), "hi": math.ldexp(hi, e),
                              "mean": math.ldexp(mean, e)}
            if reliable:
                self._extremes["std"] = 0.0 if lo == hi else math.ldexp(math.sqrt(var), e)
        return self._extremes

    def _stats(self):
        """``(min, max, mean, std)`` of the (scaled) costs: one pass over the pairs (two
        for the standard deviation of costs whose one-pass variance cancels or whose
        squares underflow), cached."""
        st = self._first_pass()
        if "std" not in st:
            st["mean"], st["std"] = self._second_pass(st["hi"], st["mean"])
        return tuple(self._user_units(st[key]) for key in ("lo", "hi", "mean", "std"))

    def _second_pass(self, hi, mean):
        """``(mean, std)`` of the unscaled costs by a second pass over the pairs (by row
        blocks of about 2**20 costs): the sums of ``d = C / 2**e - mean / 2**e`` and of
        ``d^2``, ``2**e`` the power of two above ``hi`` (``max C``), so that no square
        overflows or underflows where it matters, and ``var = mean(d^2) - mean(d)^2``
        (the corrected two-pass formula: exact to first order in the error of ``mean``)."""
        n, m = self.shape
        e = math.frexp(hi)[1]
        shift = math.ldexp(mean, -e)
        # 2**-e as a factor where it is a normal float (exact, and 8x faster than ldexp)
        factor = math.ldexp(1.0, -e) if abs(e) < 1000 else None
        cols = np.arange(m, dtype=np.int64)
        step = max(1, (1 << 20) // max(m, 1))
        t1 = t2 = 0.0
        for i0 in range(0, n, step):
            rows = np.arange(i0, min(n, i0 + step), dtype=np.int64)
            d = _ko.cost_block(self._kx, self._ky, rows, cols, self._sqx, self._sqy,
                               self.code, self.p, 1.0).ravel()
            if factor is None:
                d = np.ldexp(d, -e)
            else:
                d *= factor
            d -= shift
            t1 += float(d.sum())
            t2 += float(np.vdot(d, d))
        k = float(n) * m
        dm = t1 / k
        var = max(t2 / k - dm * dm, 0.0)
        return math.ldexp(shift + dm, e), math.ldexp(math.sqrt(var), e)

    def cost_extremes(self):
        """``(min, max)`` of the (scaled) costs (one pass, cached)."""
        st = self._first_pass()
        lo, hi = self._user_units(st["lo"]), self._user_units(st["hi"])
        if not math.isfinite(hi):  # in the units of the scaled cost (points read scaled)
            raise ValueError(f"The {self.metric!r} cost between `x` and `y` overflows "
                             f"float64; rescale the points.")
        return lo, hi

    def cost_std(self):
        """The standard deviation of the (scaled) costs (one pass, or two where the
        one-pass formula is not accurate: see :meth:`_stats`; cached)."""
        return self._stats()[3]

    def diagonal(self):
        """``c(x_i, y_i)`` for ``i < min(n, m)`` (scaled)."""
        k = min(self.shape)
        idx = np.arange(k)
        return self._pair_costs(idx, idx) / self.scale

    # ------------------------------------------------------------------ public
    @property
    def shape(self):
        return (self.x.shape[0], self.y.shape[0])

    @property
    def ndim(self):
        return 2

    def dense(self):
        """The dense ``(n, m)`` cost matrix, in ``dtype`` (a ``MemoryError`` saying how
        much it needs when it does not fit; a ``ValueError`` when a cost overflows
        ``dtype``, as :func:`ottools.cost_matrix`)."""
        from ._problem import allocate

        n, m = self.shape
        out = allocate((n, m), self.dtype, "The dense cost matrix of this PointCloud")
        step = max(1, (1 << 22) // max(m, 1))
        for i0 in range(0, n, step):
            with np.errstate(over="ignore"):
                out[i0:i0 + step] = self.block(np.arange(i0, min(n, i0 + step)),
                                               np.arange(m))
            if not np.all(np.isfinite(out[i0:i0 + step])):
                # (inf, and NaN from inf * 0 where coinciding points sit beside them)
                raise ValueError(f"The {self.metric!r} cost between `x` and `y` overflows "
                                 f"{self.dtype}; rescale the points.")
        return out

    def __repr__(self):
        n, m = self.shape
        extra = f", p={self.p:g}" if self.metric == "minkowski" else ""
        return (f"PointCloud(n={n}, m={m}, d={self.x.shape[1]}, metric={self.metric!r}"
                f"{extra}, scale={self.scale:g}, dtype={self.dtype})")


def _plan_stats(geom, loga, logb, f, g, reg, v):
    """``(rows, cols, lin, plogr, P v)`` of the plan of ``(f, g)`` without storing it."""
    n, m = geom.shape
    nc = _chunks(n, m)
    args = geom.kernel_args() + (loga, logb, f, g, reg, np.ascontiguousarray(v),
                                 _work(nc, m, rows=5))
    return _ko.plan_stats_par(*args) if nc > 1 else _ko.plan_stats(*args)


class PlanOperator:
    """The entropic plan ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)`` of a
    :class:`PointCloud` problem as an operator: ``P @ v`` and ``P.T @ u`` computed on the
    fly (one pass over the pairs each), never stored. A
    :class:`scipy.sparse.linalg.LinearOperator` (``.matvec``, ``.rmatvec``, ``@``),
    picklable (its class, ``_PlanOperatorImpl``, is defined with SciPy on first use).
    Built by the solver; use ``res.plan_dense()`` for the dense matrix."""

    def __new__(cls, geom, a, b, f, g, reg):
        return _plan_operator_class()(geom, a, b, f, g, reg)


_PLAN_LOCK = threading.Lock()


def _plan_operator_class():
    """The LinearOperator subclass of :class:`PlanOperator`, defined once per process
    (SciPy imported on first use; a module-level name, so that pickle finds it)."""
    with _PLAN_LOCK:
        cls = globals().get("_PlanOperatorImpl")
        if cls is not None:
            return cls
        from scipy.sparse.linalg import LinearOperator

        class _PlanOperatorImpl(LinearOperator):
            def __init__(self, geom, a, b, f, g, reg):
                with np.errstate(divide="ignore"):
                    self._loga = np.log(a.astype(np.float64))
                    self._logb = np.log(b.astype(np.float64))
                self._f = np.asarray(f, dtype=np.float64)
                self._g = np.asarray(g, dtype=np.float64)
                self._geom, self._geom_t, self._reg = geom, geom.transposed(), reg
                super().__init__(geom.dtype, geom.shape)

            def _apply(self, transposed, V):
                V = np.asarray(V)
                if np.iscomplexobj(V):  # (a real plan: real and imaginary parts apart;
                    # the imaginary part was dropped with a ComplexWarning)
                    return self._apply(transposed, V.real) + \
                        1j * self._apply(transposed, V.imag)
                geom = self._geom_t if transposed else self._geom
                la, lb = (self._logb, self._loga) if transposed else (self._loga, self._logb)
                p, q = (self._g, self._f) if transposed else (self._f, self._g)
                out = np.result_type(geom.dtype, V.dtype)  # (float32 stays float32)
                V = np.asarray(V, dtype=np.float64).reshape(geom.shape[1], -1)
                return _plan_stats(geom, la, lb, p, q, self._reg, V)[4].astype(
                    out, copy=False)

            def _matmat(self, V):
                return self._apply(False, V)

            def _rmatmat(self, U):
                return self._apply(True, U)

            def _matvec(self, v):
                return self._matmat(v)[:, 0]

            def _rmatvec(self, u):
                return self._rmatmat(u)[:, 0]

        _PlanOperatorImpl.__module__ = __name__
        _PlanOperatorImpl.__qualname__ = "_PlanOperatorImpl"
        globals()["_PlanOperatorImpl"] = cls = _PlanOperatorImpl
        return cls


def __getattr__(name):
    if name == "_PlanOperatorImpl":  # (unpickling a plan in a fresh process)
        return _plan_operator_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def dense_plan(geom, a, b, f, g, reg, dtype):
    """The dense plan of a :class:`PointCloud` problem, guarded by a clear MemoryError."""
    from ._problem import allocate

    n, m = geom.shape
    need = allocate((n, m), dtype, "The dense plan of this PointCloud problem")
    with np.errstate(divide="ignore", under="ignore"):
        loga = np.log(a.astype(np.float64))
        logb = np.log(b.astype(np.float64))
        step = max(1, (1 << 22) // max(m, 1))
        cols = np.arange(m)
        for i0 in range(0, n, step):
            rows = np.arange(i0, min(n, i0 + step))
            C = geom.block(rows, cols)
            need[rows] = np.exp(loga[rows, None] + logb[None, :]
                                + (f[rows, None].astype(np.float64) + g[None, :] - C) / reg)
    return need


def _above(v, e, limit):
    """``v * 2**e > limit`` without overflowing (``math.ldexp`` raises)."""
    try:
        return math.ldexp(v, e) > limit
    except OverflowError:
        return True


def barycentric_map(geom, a, b, f, g, reg, by_rows=False):
    """``T(x_i) = sum_j P_ij y_j / a_i`` for ``a_i > 0`` (``by_rows``: divided by the
    plan's row sums ``(P 1)_i`` instead, an unbalanced plan's rows); for ``a_i = 0`` (no
    row of the plan to normalise) the entropic map through the column potential,
    ``sum_j w_ij y_j / sum_j w_ij`` with ``w_ij = b_j exp((g_j - C_ij) / reg)``: the
    first formula when ``f_i`` is the soft c-transform of ``g`` (:func:`_entropic_map`),
    and the second formula's value whatever ``f_i`` (a row divided by its own sum does
    not depend on it), so ``by_rows`` takes it also for rows whose sum underflowed
    below the smallest normal float64 (a source far from every target, ``reg_m``
    small: 0 / 0 otherwise).
    """
    with np.errstate(divide="ignore"):
        loga, logb = np.log(a.astype(np.float64)), np.log(b.astype(np.float64))
    g = np.asarray(g, dtype=np.float64)
    stats = _plan_stats(geom, loga, logb, np.asarray(f, dtype=np.float64), g, reg,
                        geom.y.astype(np.float64))
    Py = stats[4]
    den = stats[0] if by_rows else a.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = Py / den[:, None]
    zero = np.flatnonzero((a == 0) | ~(den >= np.finfo(np.float64).tiny) if by_rows
                           else a == 0)
    if zero.size:
        out[zero] = _entropic_map(geom, zero, logb, g, reg)
    return out.astype(geom.dtype, copy=False)


def _entropic_map(geom, rows, logb, g, reg):
    """``sum_j w_ij y_j / sum_j w_ij``, ``w_ij = b_j exp((g_j - C_ij) / reg)``, for the
    source points ``rows``, on the fly (O(len(rows) d) memory besides the clouds): the
    soft c-transform ``h_i = -reg log sum_j w_ij`` by one pass (log-sum-exp, no
    overflow), then the plan ``exp(log b_j + (h_i + g_j - C_ij) / reg)``, whose rows sum
    to 1 up to rounding, applied to ``y`` by a second; every row NaN if one ``h_i`` is
    not finite (the kernel's flag covers them all).
    Columns with ``b_j = 0`` hold no mass and are left out."""
    cols = np.flatnonzero(np.isfinite(logb))
    sub = geom.subset(rows, cols)
    k, m = sub.shape
    nc = _chunks(k, m)
    h = np.empty(k)
    zeros = np.zeros(k)
    lb, gc = np.ascontiguousarray(logb[cols]), np.ascontiguousarray(g[cols])
    args = sub.kernel_args() + (lb, gc, reg, zeros, zeros, h, _work(nc, m),
                                _work(nc, m, rows=2))
    finite, _ = _ko.ctransform_par(*args) if nc > 1 else _ko.ctransform(*args)
    if not finite:
        return np.full((k, geom.y.shape[1]), math.nan)
    rows_sum, _, _, _, Py = _plan_stats(sub, zeros, lb, h, gc, reg,
                                        sub.y.astype(np.float64))
    return Py / rows_sum[:, None]
