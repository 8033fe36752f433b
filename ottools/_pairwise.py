"""Distance matrices over collections of measures: ``pairwise_distances``.

The pairs are cut into tiles, a block of row measures against a block of column
measures, sized from the measured time of a first pair. A tile prepares each of its
measures once (for the sliced distances: projections on the shared directions, sorted)
and reuses them across the tile's rows and columns. Tiles run in the calling thread, on a
local thread pool (the kernels release the GIL) or on a Dask cluster (the measures
scattered once). Each entry depends on its pair only, never on the tiling or on where it
ran, so every backend returns the same matrix.
"""

import itertools
import math
import os
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np

from ._costs import ESTIMATED, checked_cost_matrix, dense_costs, metric_name
from ._kernels import lazy
from ._onedim import (TINY, normalize_weights, pow2_exponent, power_mean_root,
                      wpp_rows)
from ._pool import TICK, deferred_sigint
from ._problem import LinearProblem, Settings
from ._result import CONVERGED, OTConvergenceWarning
from ._sliced import check_projection_memory, draw_directions
from ._sinkhorn import method_options, solve
from ._validation import (
    _as_float_array,
    _check_bool,
    _check_int,
    _check_method,
    _check_options,
    _check_points,
    _check_positive,
    _check_rng,
    _check_weights,
    _result_dtype,
)

__all__ = ["pairwise_distances"]

_k = lazy("_pairwise")

METRICS = ("sinkhorn_divergence", "sinkhorn", "sliced_wasserstein", "wasserstein_1d", "exact")

# metric -> valid keys of metric_kwargs: the keyword arguments of the single-pair
# function, and for the metrics on a ground cost "p" (the Minkowski costs' exponent)
_KWARGS = {
    "wasserstein_1d": ("p",),
    "sliced_wasserstein": ("p", "n_projections", "directions"),
    "sinkhorn_divergence": ("reg", "metric", "p", "method", "tol", "maxiter", "options"),
    "sinkhorn": ("reg", "metric", "p", "method", "tol", "maxiter", "options"),
    "exact": ("metric", "p", "maxiter"),
}
# the ground costs that take "p" (as cost_matrix's p)
_MINKOWSKI = ("minkowski", "minkowski_p")

# Internal status of a divergence pair whose two measures are identical: S = 0 exactly
# (as ``sinkhorn_divergence``), resolved with the self terms; never returned.
_SAME = -1

DISTRIBUTED_HINT = 'pip install "ottools[distributed]"'
PROGRESS_HINT = 'pip install "ottools[progress]"'


# ----------------------------------------------------------------------- validation
def _measures(X, name, one_d):
    """The measures of ``X`` as a list of float arrays: (n,) samples (``one_d``) or
    (n, d) point clouds, each checked (finite, non-empty) under the name ``X[k]``."""
    if isinstance(X, np.ndarray) and not one_d and X.ndim == 2 and X.dtype != object:
        raise ValueError(
            f"`{name}` must be a sequence of point clouds (a list of (n_k, d) arrays or "
            f"an (N, n, d) array); got a 2-D array of shape {X.shape}. Wrap a single "
            f"cloud in a list, or pass `{name}[:, :, None]` for N clouds of 1-D points.")
    try:
        items = list(X)
    except TypeError:
        raise TypeError(f"`{name}` must be a sequence of measures; got "
                        f"{type(X).__name__}.") from None
    if not items:
        raise ValueError(f"`{name}` must hold at least one measure.")
    out = []
    for k, item in enumerate(items):
        nm = f"{name}[{k}]"
        if one_d:
            arr = _as_float_array(item, nm)
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise ValueError(f"`{nm}` must be 1-D samples for metric='wasserstein_1d'; "
                                 f"got shape {arr.shape}.")
            if arr.shape[0] == 0:
                raise ValueError(f"`{nm}` must not be empty.")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"`{nm}` must be finite; got NaN or inf.")
        else:
            arr = _check_points(item, nm)
        out.append(arr)
    if not one_d:
        d = out[0].shape[1]
        for k, arr in enumerate(out):
            if arr.shape[1] != d:
                raise ValueError(f"`{name}[{k}]` has dimension {arr.shape[1]} but `{name}[0]` "
                                 f"has dimension {d}: all measures must live in one space.")
    return out


def _weight_list(weights, clouds, name):
    """``weights`` for ``clouds``: None, or a sequence with one entry (None or an array)
    per measure; returns a list of raw float arrays / None."""
    if weights is None:
        return [None] * len(clouds)
    if isinstance(weights, np.ndarray) and weights.ndim == 1 and weights.dtype != object:
        raise ValueError(f"`{name}` must be a sequence of weight vectors, one per measure; "
                         f"got a 1-D array.")
    try:
        items = list(weights)
    except TypeError:
        raise TypeError(f"`{name}` must be None or a sequence of weight vectors; got "
                        f"{type(weights).__name__}.") from None
    if len(items) != len(clouds):
        raise ValueError(f"`{name}` must have one entry per measure ({len(clouds)}); got "
                         f"{len(items)}.")
    return [None if w is None else _as_float_array(w, f"{name}[{k}]", ndim=1)
            for k, w in enumerate(items)]


def _finish_measures(clouds, weights, name, wname, dtype):
    """``[(x, w), ...]``: contiguous arrays in ``dtype``; ``w`` normalized to sum 1, or
    None when uniform (all weights equal)."""
    out = []
    for k, (x, w) in enumerate(zip(clouds, weights)):
        x = np.ascontiguousarray(x, dtype=dtype)
        if w is not None:
            w = _check_weights(w, x.shape[0], f"{wname}[{k}]", dtype,
                               against=f"`{name}[{k}]` has {x.shape[0]} points")
            w = normalize_weights(w).astype(dtype, copy=False)
            if np.all(w == w[0]):
                w = None
        out.append((x, w))
    return out


def _check_n_jobs(n_jobs):
    """Threads from ``n_jobs`` (scikit-learn's rule): None -> 1, -1 -> all cores,
    -2 -> all but one, ..."""
    if n_jobs is None:
        return 1
    n = _check_int(n_jobs, "n_jobs")
    cores = _cpu_count()
    if n == 0:
        raise ValueError("`n_jobs` must be a positive number of threads or negative "
                         "(-1: all cores); got 0.")
    return n if n > 0 else max(1, cores + 1 + n)


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


# ------------------------------------------------------------------------- engines
class _Sorted:
    """``wasserstein_1d`` (``theta`` None: the samples themselves) and
    ``sliced_wasserstein`` (projections on the directions ``theta`` (L, d)): a measure is
    stored as its sorted projections, computed once per tile and read by every pair of
    the tile."""

    kind = "sorted"
    needs_self = False

    def __init__(self, theta, p, dtype):
        self.theta = theta
        self.p = p
        self.dtype = dtype
        self.L = 1 if theta is None else theta.shape[0]
        self.ex = 0  # the measures' scale: see set_scale
        self.et = 0  # the directions' scale

    def set_scale(self, measures):
        """Coordinates beyond ``2**1000`` (float32: ``2**100``) are scaled down by a power
        of two, exactly, so that projections do not overflow, and directions (which the
        user may give) as the single calls scale them; a distance is multiplied back. Smaller coordinates are
        left alone: one exponent for a collection holding measures at 1e200 and 1e-200
        flushed the small ones to 0; pairs whose sums under/overflow are recomputed in
        the scaled form instead (:meth:`pairs`)."""
        top = max((float(np.abs(x).max()) for x, _ in measures if x.size), default=0.0)
        # (float32: beyond 2**100, whose projections overflowed float32 at 3e38)
        self.ex = pow2_exponent(top, lo=-math.inf, hi=1000 if self.dtype == np.float64
                                else 100)
        if self.theta is not None:
            # (apart from ex, which scales the points: one exponent for both scaled the
            # points by the directions' too, and |theta| = 1e-100 gave 0.316 for 3.6e-101)
            self.et = pow2_exponent(float(np.abs(self.theta).max()))
            self.theta = np.ldexp(self.theta, -self.et).astype(self.dtype)

    def may_run_parallel(self):
        return False

    def prepare(self, block):
        L, dt = self.L, self.dtype
        sizes = np.array([x.shape[0] for x, _ in block], dtype=np.int64)
        uni = np.array([w is None for _, w in block], dtype=np.bool_)
        voff = np.zeros(len(block), dtype=np.int64)
        voff[1:] = np.cumsum(sizes[:-1] * L)
        wsize = np.where(uni, sizes, sizes * L)
        woff = np.zeros(len(block), dtype=np.int64)
        woff[1:] = np.cumsum(wsize[:-1])
        wstep = np.where(uni, 0, sizes).astype(np.int64)
        V = np.empty(int(sizes.sum()) * L, dtype=dt)
        W = np.empty(int(wsize.sum()), dtype=dt)
        for k, (x, w) in enumerate(block):
            n = int(sizes[k])
            P = V[voff[k]:voff[k] + L * n].reshape(L, n)
            if self.ex:
                x = np.ldexp(x, -self.ex).astype(dt)
            if self.theta is None:
                P[0] = x
            else:
                _k.project(x, self.theta, P)
            if w is None:
                P.sort(axis=1)
                W[woff[k]:woff[k] + n] = 1.0 / n
            else:
                idx = np.argsort(P, axis=1)
                P[...] = np.take_along_axis(P, idx, axis=1)
                W[woff[k]:woff[k] + L * n].reshape(L, n)[...] = w[idx]
        return V, voff, sizes, W, woff, wstep, uni

    def pairs(self, R, C, ii, jj):
        out = np.empty(ii.shape[0], dtype=np.float64)
        _k.sliced_pairs(*R, *C, self.L, ii, jj, self.p, out)
        # Pairs whose plain sums left [TINY, inf) (overflow, underflow, NaN from a zero
        # weight on an overflowing term, or measures that coincide) again in the scaled
        # form of the single calls (wpp_rows): inf, 0 or NaN before, with status 0.
        redo = np.flatnonzero(~((out >= TINY) & (out <= np.finfo(np.float64).max)))
        with np.errstate(over="ignore"):
            value = np.maximum(out, 0.0) ** (1.0 / self.p)
        for t in redo:
            (U, a), (V, b) = self._rows(R, ii[t]), self._rows(C, jj[t])
            if out[t] == 0.0 and _same_rows(U, a, V, b):
                continue  # identical measures: 0 exactly (no pass over the rows again)
            q, sc = wpp_rows(U, V, a, b, self.p)
            value[t] = power_mean_root(q, sc, self.p)
        if self.ex or self.et:
            with np.errstate(over="ignore", under="ignore"):
                value = np.ldexp(value, self.ex + self.et)
        if not np.all(value <= np.finfo(self.dtype).max):
            raise ValueError(f"A distance exceeds the range of {self.dtype}: measures too "
                             f"far apart to be represented (rescale them).")
        return value, np.zeros(ii.shape[0], dtype=np.int8)

    def _rows(self, prepared, k):
        """Measure ``k`` of a prepared block as ``wpp_rows``'s arguments: its sorted
        projections (L, n) and their weights (L, n) or None (uniform)."""
        V, voff, sizes, W, woff, wstep, uni = prepared
        n, L = int(sizes[k]), self.L
        U = V[voff[k]:voff[k] + L * n].reshape(L, n)
        return U, (None if uni[k] else W[woff[k]:woff[k] + L * n].reshape(L, n))


def _same_rows(U, a, V, b):
    """Whether two prepared measures (sorted projections and their weights) are equal."""
    if U.shape != V.shape or (a is None) != (b is None):
        return False
    return bool(np.array_equal(U, V) and (a is None or np.array_equal(a, b)))


class _Entropic:
    """``sinkhorn`` (the entropic cost ``W_eps``, ``kind="entropic"``) and
    ``sinkhorn_divergence`` (``kind="divergence"``: the tiles solve the cross problems,
    the self problems ``W_eps(x_i, x_i)`` are solved once per measure; with
    ``"seuclidean"`` / ``"mahalanobis"`` ground costs each pair solves its three,
    ``kind="pair_divergence"``)."""

    def __init__(self, kind, reg, metric, p, method, settings, dtype):
        if kind == "divergence" and not callable(metric) and metric_name(metric) in ESTIMATED:
            # "seuclidean" / "mahalanobis": the three problems of a pair share variances
            # estimated from its two clouds stacked (as sinkhorn_divergence), so a self
            # term belongs to a pair, not to a measure: self terms solved once per measure
            # (their variances from it alone) gave 0.730 for 0.937
            kind = "pair_divergence"
        self.kind = kind
        self.needs_self = kind == "divergence"
        self.reg, self.metric, self.p, self.method = reg, metric, p, method
        self.settings, self.dtype = settings, dtype

    def may_run_parallel(self):
        return True

    def prepare(self, block):
        out = []
        for x, w in block:
            n = x.shape[0]
            out.append((x, np.full(n, 1.0 / n, dtype=self.dtype) if w is None else w))
        return out

    def _solve(self, x, a, y, b, self_transport=False, cost=None):
        if cost is None:
            cost = checked_cost_matrix(x, y, self.metric, self.p)
        cost = np.ascontiguousarray(cost, dtype=self.dtype)
        symmetric = self_transport and np.array_equal(cost, cost.T)
        res = solve(LinearProblem(a, b, cost, self.dtype), self.reg, self.settings,
                    self.method, symmetric=symmetric)
        return float(res.fun), int(res.status)

    def pairs(self, R, C, ii, jj):
        vals = np.empty(ii.shape[0], dtype=np.float64)
        stat = np.empty(ii.shape[0], dtype=np.int8)
        for t in range(ii.shape[0]):
            x, a = R[ii[t]]
            y, b = C[jj[t]]
            same = x.shape == y.shape and np.array_equal(x, y) and np.array_equal(a, b)
            if same and self.kind == "divergence":
                vals[t], stat[t] = np.nan, _SAME
            elif same and self.kind == "pair_divergence":
                vals[t], stat[t] = 0.0, CONVERGED
            elif self.kind == "pair_divergence":
                vals[t], stat[t] = self._pair_divergence(x, a, y, b)
            else:
                vals[t], stat[t] = self._solve(x, a, y, b, self_transport=same)
        return vals, stat

    def _pair_divergence(self, x, a, y, b):
        """``W(x, y) - (W(x, x) + W(y, y)) / 2`` on the ground costs of the pair (see
        ``_costs.dense_costs``) and the first status that is not converged."""
        cost = dense_costs(x, y, self.metric, self.dtype)
        wxy, sxy = self._solve(x, a, y, b, cost=cost(x, y, ("x", "y")))
        wxx, sxx = self._solve(x, a, x, a, True, cost=cost(x, x, ("x", "x")))
        wyy, syy = self._solve(y, b, y, b, True, cost=cost(y, y, ("y", "y")))
        bad = [s for s in (sxy, sxx, syy) if s != CONVERGED]
        return wxy - 0.5 * (wxx + wyy), (bad[0] if bad else CONVERGED)

    def self_terms(self, R):
        vals = np.empty(len(R), dtype=np.float64)
        stat = np.empty(len(R), dtype=np.int8)
        for t, (x, a) in enumerate(R):
            vals[t], stat[t] = self._solve(x, a, x, a, self_transport=True)
        return vals, stat


class _Exact:
    """``exact``: the optimal transport cost ``min <P, C>`` by ``ottools.emd``."""

    kind = "exact"
    needs_self = False

    def __init__(self, metric, p, maxiter, dtype):
        self.metric, self.p, self.maxiter, self.dtype = metric, p, maxiter, dtype

    def may_run_parallel(self):
        return True

    prepare = _Entropic.prepare

    def pairs(self, R, C, ii, jj):
        from ._emd import emd

        vals = np.empty(ii.shape[0], dtype=np.float64)
        stat = np.empty(ii.shape[0], dtype=np.int8)
        kw = {} if self.maxiter is None else {"maxiter": self.maxiter}
        for t in range(ii.shape[0]):
            x, a = R[ii[t]]
            y, b = C[jj[t]]
            cost = np.ascontiguousarray(checked_cost_matrix(x, y, self.metric, self.p),
                                        dtype=self.dtype)
            res = emd(a, b, cost, **kw)
            vals[t], stat[t] = float(res.fun), int(res.status)
        return vals, stat


def _engine(metric, kwargs, d, dtype, rng):
    """The engine of ``metric`` from its checked ``metric_kwargs``."""
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"`metric_kwargs` must be a dict or None; got "
                        f"{type(kwargs).__name__}.")
    kw = _check_options(kwargs, _KWARGS[metric], f"metric={metric!r} in `metric_kwargs`")
    gen = _check_rng(rng)  # checked for every metric: a typo is never silent

    def p_value(default):
        p = _check_positive(kw.get("p", default), "metric_kwargs['p']")
        if p < 1:
            raise ValueError(f"`metric_kwargs['p']` must be >= 1; got {p!r}.")
        return p

    if metric == "wasserstein_1d":
        return _Sorted(None, p_value(1.0), dtype)
    if metric == "sliced_wasserstein":
        p = p_value(2.0)
        L = _check_int(kw.get("n_projections", 100), "metric_kwargs['n_projections']",
                       minimum=1)
        directions = kw.get("directions", "random")
        if isinstance(directions, str):
            _check_method(directions, ("random",), "metric_kwargs['directions']")
            # as sliced_wasserstein(directions="random") draws them: the same rng gives the
            # same directions (a MemoryError naming the size when they would not fit)
            check_projection_memory(L, d, "metric_kwargs['n_projections']")
            theta = draw_directions("random", L, d, gen)
        else:
            theta = _as_float_array(directions, "metric_kwargs['directions']")
            if theta.ndim != 2 or theta.shape[1] != d or theta.shape[0] == 0:
                raise ValueError(f"`metric_kwargs['directions']` must have shape (L, {d}) "
                                 f"with L >= 1; got {theta.shape}.")
            if not np.all(np.isfinite(theta)):
                raise ValueError("`metric_kwargs['directions']` must be finite; got NaN "
                                 "or inf.")
        return _Sorted(np.ascontiguousarray(theta, dtype=dtype), p, dtype)
    cost_metric = kw.get("metric", "sqeuclidean")
    if not callable(cost_metric):
        # an unknown ground cost fails here, not in a tile (by its name: evaluated on zero
        # points, "seuclidean", "braycurtis" and four more are 0 / 0 and were refused)
        metric_name(cost_metric)
    cost_p = 2.0  # (cost_matrix's default)
    if "p" in kw:
        if callable(cost_metric) or metric_name(cost_metric) not in _MINKOWSKI:
            raise TypeError(f"`metric_kwargs['p']` is only used with the ground costs "
                            f"'minkowski' and 'minkowski_p'; got it with "
                            f"metric_kwargs['metric']={cost_metric!r}"
                            f"{'' if 'metric' in kw else ' (the default)'}.")
        cost_p = p_value(2.0)
    maxiter = kw.get("maxiter")
    if maxiter is not None:
        maxiter = _check_int(maxiter, "metric_kwargs['maxiter']", minimum=0)
    if metric == "exact":
        return _Exact(cost_metric, cost_p, maxiter, dtype)
    if "reg" not in kw:
        raise TypeError(f"metric={metric!r} needs `metric_kwargs['reg']`, the entropic "
                        f"regularization (in cost units), e.g. metric_kwargs={{'reg': 0.1}}.")
    reg = _check_positive(kw["reg"], "metric_kwargs['reg']")
    tol = kw.get("tol")
    if tol is not None:
        tol = _check_positive(tol, "metric_kwargs['tol']", allow_zero=True)
    name, opts = method_options(kw.get("method", "auto"), kw.get("options"))
    settings = Settings.from_args(tol, 10_000 if maxiter is None else maxiter, None, dtype,
                                  opts)
    kind = "divergence" if metric == "sinkhorn_divergence" else "entropic"
    return _Entropic(kind, reg, cost_metric, cost_p, name, settings, dtype)


# --------------------------------------------------------------------------- tiles
class _NumbaSerial:
    """Serial kernels in this thread while it runs a tile (Numba's thread count is per
    thread): the tiles are the parallelism (a parallel kernel inside one would
    oversubscribe the cores, or use more than ``n_jobs``), and a pair's value does not
    depend on a thread count (row blocks change the order of float sums)."""

    def __init__(self, on):
        self.on = on
        self.old = None

    def __enter__(self):
        if self.on:
            import numba

            self.old = numba.get_num_threads()
            numba.set_num_threads(1)

    def __exit__(self, *exc):
        if self.old is not None:
            import numba

            numba.set_num_threads(self.old)


def _tile_pairs(nr, nc, upper):
    """Local (row, column) indices of a tile: every pair, or ``i < j`` on a diagonal
    block of a symmetric matrix."""
    if upper:
        ii, jj = np.triu_indices(nr, 1)
    else:
        ii, jj = np.divmod(np.arange(nr * nc), nc)
    return ii.astype(np.int64), jj.astype(np.int64)


def tile_task(engine, rows, cols, serial):
    """One tile: ``(values, statuses)`` of the pairs of ``_tile_pairs`` (``cols`` None:
    the diagonal block of ``rows``, pairs ``i < j``). Runs on the workers."""
    with _NumbaSerial(serial):
        R = engine.prepare(rows)
        C = R if cols is None else engine.prepare(cols)
        ii, jj = _tile_pairs(len(rows), len(rows) if cols is None else len(cols),
                             cols is None)
        return engine.pairs(R, C, ii, jj)


def self_task(engine, rows, serial):
    """The self terms ``W_eps(x_i, x_i)`` of a block: ``(values, statuses)``."""
    with _NumbaSerial(serial):
        return engine.self_terms(engine.prepare(rows))


def _probe(engine, m0, m1, serial, repeat=3):
    """Seconds to prepare one measure and to compute one pair: the fastest of ``repeat``
    runs (the first may compile the kernels; the machine may be busy), two when a pair
    takes over 0.05 s."""
    one = np.zeros(1, np.int64)
    t_prep = t_pair = math.inf
    with _NumbaSerial(serial):  # as the tiles will run
        for k in range(repeat):
            if k == 2 and t_pair > 0.05:
                break
            t0 = time.perf_counter()
            R = engine.prepare([m0])
            C = engine.prepare([m1])
            t2 = time.perf_counter()
            engine.pairs(R, C, one, one)
            t3 = time.perf_counter()
            t_prep = min(t_prep, 0.5 * (t2 - t0))
            t_pair = min(t_pair, t3 - t2)
    return max(t_prep, 1e-7), max(t_pair, 1e-7)


def _block_size(t_prep, t_pair, target, n_pairs, workers, nmax, per_worker=4):
    """Measures per block: a tile of ``B x B`` pairs takes about ``target`` seconds
    (``B^2 t_pair + 2 B t_prep``), and there are at least ``per_worker`` tiles per worker
    thread when the pairs allow it (load balance: the last tiles run while other workers
    have nothing left)."""
    # B^2 t_pair + 2 B t_prep = target
    B = (-t_prep + math.sqrt(t_prep * t_prep + t_pair * target)) / t_pair
    balance = math.sqrt(max(n_pairs, 1) / (per_worker * workers))
    return int(max(1, min(nmax, math.floor(min(B, balance)))))


class _Plan:
    """The tiles of one matrix: blocks of ``B`` measures, the tiles (row block, column
    block or None on the diagonal) and the self-term blocks."""

    def __init__(self, N, M, symmetric, B, needs_self):
        self.B = B
        self.rblocks = [(s, min(s + B, N)) for s in range(0, N, B)]
        self.cblocks = self.rblocks if symmetric else [(s, min(s + B, M))
                                                       for s in range(0, M, B)]
        self.tiles = []
        for r in range(len(self.rblocks)):
            if symmetric:
                if self.rblocks[r][1] - self.rblocks[r][0] > 1:
                    self.tiles.append((r, None))
                self.tiles.extend((r, c) for c in range(r + 1, len(self.cblocks)))
            else:
                self.tiles.extend((r, c) for c in range(len(self.cblocks)))
        self.selfs = []
        if needs_self:
            self.selfs = [("x", r) for r in range(len(self.rblocks))]
            if not symmetric:
                self.selfs += [("y", c) for c in range(len(self.cblocks))]
        self.col = "x" if symmetric else "y"

    def size(self, job):
        """The number of problems a job of :meth:`jobs` solves."""
        (what, k), _, _ = job
        if what == "self":
            which, r = k
            s, e = (self.rblocks if which == "x" else self.cblocks)[r]
            return e - s
        r, c = k
        nr = self.rblocks[r][1] - self.rblocks[r][0]
        if c is None:
            return nr * (nr - 1) // 2
        return nr * (self.cblocks[c][1] - self.cblocks[c][0])

    def jobs(self):
        """``(key, fn, refs)``: the self-term blocks first, then the tiles; ``refs`` name
        the blocks of measures (``("x", r)``, ``("y", c)``, or None: the diagonal)."""
        for which, r in self.selfs:
            yield ("self", (which, r)), self_task, [(which, r)]
        for r, c in self.tiles:
            yield ("tile", (r, c)), tile_task, [("x", r), None if c is None else (self.col, c)]


# ------------------------------------------------------------------------ backends
def _progress_bar(progress, total):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(f"progress=True needs tqdm: {PROGRESS_HINT} (or pip install "
                          f"tqdm).") from None
    return tqdm(total=total, unit="pair", desc="pairwise", smoothing=0.05)


def _run_local(plan, engine, blocks, n_threads, serial, on_done):
    """Run the jobs of ``plan`` in this thread or on a pool of ``n_threads`` threads;
    ``on_done(key, result)`` in this thread as they finish."""
    def args(refs):
        return [None if ref is None else blocks[ref[0]][ref[1]] for ref in refs]

    if n_threads == 1:
        for key, fn, refs in plan.jobs():
            on_done(key, fn(engine, *args(refs), serial))
        return
    pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="ottools-pairwise")
    # the largest jobs first (full tiles, then the half-full diagonal ones, then the self
    # terms): the threads' last jobs are small ones
    jobs = sorted(plan.jobs(), key=lambda job: -plan.size(job))
    # Ctrl-C sets flag.hit (ottools._pool: no KeyboardInterrupt inside the pool's locks);
    # the block's exit raises it.
    with deferred_sigint() as flag:
        try:
            pending = {pool.submit(fn, engine, *args(refs), serial): key
                       for key, fn, refs in jobs}
            while pending and not flag.hit:
                done, _ = wait(pending, timeout=TICK, return_when=FIRST_COMPLETED)
                for fut in done:
                    on_done(pending.pop(fut), fut.result())
        finally:
            # On an error or Ctrl-C: drop the queued tiles; the running ones end in a
            # tile's time.
            pool.shutdown(wait=False, cancel_futures=True)


def _dask_client(scheduler, n_threads):
    """``(client, close)``: the client to use and whether we started it (then we close
    it, and its cluster, at the end)."""
    try:
        import distributed
    except ImportError:
        raise ImportError(f"scheduler={scheduler!r} needs Dask's distributed scheduler: "
                          f"{DISTRIBUTED_HINT}.") from None
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if scheduler == "dask":
        try:
            return distributed.get_client(), False
        except ValueError:
            return distributed.Client(_local_cluster(distributed, n_threads)), True
    return distributed.Client(scheduler), True


# Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in the workers it spawns (and leaks it
# into this process's environment). Setting it fixes glibc's mmap threshold at 128 KiB
# instead of letting it adapt, so every cost matrix and plan of a pair is mapped, faulted
# in page by page and unmapped: the per-pair work took 1.5x as long (3.45 ms against
# 2.33 ms for the divergence of two clouds of 200-500 points, one process, with and
# without the variable).
_DASK_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def _local_cluster(distributed, n_workers):
    """A ``LocalCluster`` of ``n_workers`` single-thread worker processes whose malloc
    keeps its adaptive thresholds (see above); a value of the variable other than Dask's
    default is the user's and is kept."""
    import dask

    leaked = os.environ.get("MALLOC_TRIM_THRESHOLD_") == "65536"
    if leaked:
        del os.environ["MALLOC_TRIM_THRESHOLD_"]
    try:
        with dask.config.set({_DASK_TRIM: None}):
            return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                            processes=True, dashboard_address=":0")
    finally:
        if leaked:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"


def _run_dask(client, engine, plan, blocks, serial, on_done, max_tries=5):
    """Scatter the blocks of measures once, submit the tiles with a bounded number in
    flight, and hand each result to ``on_done`` as it arrives.

    A tile lost with its worker is rescheduled by the Dask scheduler. Scattered data has
    no recipe: a block whose every copy died with a worker is scattered again from this
    process, and the tiles that needed it are resubmitted (at most ``max_tries`` times
    each); a tile that raises is retried twice by Dask, then its error is raised here.
    """
    from distributed import as_completed

    keys = [("x", r) for r in range(len(blocks["x"]))]
    if blocks["y"] is not None:
        keys += [("y", c) for c in range(len(blocks["y"]))]
    futs = dict(zip(keys, client.scatter([blocks[w][k] for w, k in keys], hash=False)))
    threads = max(1, sum(client.nthreads().values()))
    inflight = max(16, 4 * threads)
    running = {}
    tries = {}

    def lost(ref):
        """True when no worker holds the block any more (asks the scheduler)."""
        fut = futs[ref]
        return fut.status != "finished" or not client.who_has([fut]).get(fut.key)

    def data(ref, check=False):
        if ref is None:
            return None
        if futs[ref].status != "finished" or (check and lost(ref)):
            futs[ref].release()
            futs[ref] = client.scatter([blocks[ref[0]][ref[1]]], hash=False)[0]
        return futs[ref]

    def submit(job):
        key, fn, refs = job
        inputs = [data(ref) for ref in refs]
        fut = client.submit(fn, engine, *inputs, serial, pure=False, retries=2)
        running[fut] = job, inputs
        return fut

    def stale(refs, inputs):
        """Some input of a tile was lost: scattered again since, or lost now."""
        return any(ref is not None and (inp is not futs[ref] or lost(ref))
                   for ref, inp in zip(refs, inputs))

    jobs = iter(plan.jobs())
    ac = as_completed([submit(job) for job in itertools.islice(jobs, inflight)])
    try:
        for fut in ac:
            job, inputs = running.pop(fut)
            if fut.status == "cancelled" and stale(job[2], inputs):
                # its measures died with a worker: scatter them again, resubmit the tile
                tries[job[0]] = tries.get(job[0], 0) + 1
                if tries[job[0]] > max_tries:
                    raise RuntimeError(f"pairwise_distances: the measures of tile {job[0]} "
                                       f"were lost with their workers {max_tries} times.")
                for ref in job[2]:
                    data(ref, check=True)
                ac.add(submit(job))
                continue
            on_done(job[0], fut.result())
            fut.release()
            nxt = next(jobs, None)
            if nxt is not None:
                ac.add(submit(nxt))
    finally:
        if running:
            client.cancel(list(running))
        client.cancel(list(futs.values()))


# ------------------------------------------------------------------------ public API
def pairwise_distances(X, Y=None, *, metric="sinkhorn_divergence", weights=None,
                       metric_kwargs=None, n_jobs=None, scheduler=None, progress=False,
                       rng=None, return_status=False):
    r"""Optimal transport distances between every pair of measures of one or two
    collections.

    Parameters
    ----------
    X : sequence of array_like
        ``N`` measures: point clouds of shapes ``(n_k, d)`` (sizes may differ; a 1-D
        array is read as ``n_k`` points in 1-D; an ``(N, n, d)`` array works), or for
        ``metric="wasserstein_1d"`` 1-D samples of shapes ``(n_k,)`` (an ``(N, n)``
        array works). Every measure is checked (finite, non-empty, one dimension ``d``)
        before any pair is computed; errors name it, e.g. ``X[3]``.
    Y : sequence of array_like, optional
        ``M`` measures of the same kind. Default: the distances within ``X``
        (symmetric; only the pairs ``i < j`` are computed).
    metric : str, default "sinkhorn_divergence"
        ``"sinkhorn_divergence"``: :math:`S_\varepsilon` of
        :func:`ottools.sinkhorn_divergence` (the self terms
        :math:`W_\varepsilon(x_i, x_i)` are solved once per measure; with the ground
        costs ``"seuclidean"`` and ``"mahalanobis"``, whose variances come from each
        pair's clouds stacked, once per pair);
        ``"sinkhorn"``: the entropic cost :math:`W_\varepsilon` (``sinkhorn(...).fun``;
        not a distance: its diagonal is not zero); ``"sliced_wasserstein"``:
        :math:`SW_p` of :func:`ottools.sliced_wasserstein`, with one set of directions
        shared by all pairs; ``"wasserstein_1d"``: :math:`W_p` of
        :func:`ottools.wasserstein_1d`; ``"exact"``: the optimal transport cost
        :math:`\min_P \langle P, C \rangle` by ``ottools.emd``.
    weights : sequence, optional
        One weight vector (or None: uniform) per measure of ``X``; when ``Y`` is given,
        a pair ``(weights_X, weights_Y)`` of such sequences (each may be None). Weights
        are non-negative with a positive sum (zeros allowed) and are normalized: every
        measure is a probability.
    metric_kwargs : dict, optional
        Keyword arguments of the single-pair function, checked up front (unknown keys
        raise ``TypeError``): ``p`` (``wasserstein_1d``, default 1;
        ``sliced_wasserstein``, default 2); ``n_projections`` (default 100) and
        ``directions`` (``"random"`` or an ``(L, d)`` array) for
        ``sliced_wasserstein``; ``reg`` (required), ``metric`` (ground cost, default
        ``"sqeuclidean"``, see :func:`ottools.cost_matrix`), ``method``, ``tol``,
        ``maxiter`` and ``options`` for the entropic metrics; ``metric`` and
        ``maxiter`` for ``exact``. With the ground costs ``"minkowski"`` and
        ``"minkowski_p"``, ``p`` is also their exponent (``cost_matrix``'s ``p``,
        >= 1, default 2) for the entropic metrics and ``exact``; with another ground
        cost it raises ``TypeError``.
    n_jobs : int, optional
        Threads of the local run, as in scikit-learn: None means 1 (the calling
        thread), -1 all cores, -2 all but one, and so on. With
        ``scheduler="dask"`` and no running Dask client, the number of worker
        processes of the local cluster started for the call (None: all cores).
        Ignored with a given client or address.
    scheduler : None, "threads", "dask", dask.distributed.Client or str, optional
        None or ``"threads"``: local threads. ``"dask"``: the current Dask client
        (``distributed.get_client()``) if there is one, else a ``LocalCluster`` of
        single-threaded worker processes started and closed for this call. A
        ``Client``, or a scheduler address such as ``"tcp://10.0.0.1:8786"`` (a client
        is connected, then closed). Needs ``pip install "ottools[distributed]"``.
    progress : bool, default False
        Show a progress bar (tqdm, on stderr; ``pip install "ottools[progress]"``).
    rng : {None, int, numpy.random.Generator}, optional
        Randomness of the sliced directions (SPEC 7): the directions are those of
        ``sliced_wasserstein(..., rng=rng)``, so a seed gives the same values pair by
        pair. Checked, unused, for the other metrics.
    return_status : bool, default False
        Also return the status of each pair.

    Returns
    -------
    D : ndarray, shape (N, M), float64
        ``D[i, j]`` is the distance between ``X[i]`` and ``Y[j]`` (``X[j]`` when ``Y``
        is None). With ``Y`` None, ``D`` is exactly symmetric and, for every metric but
        ``"sinkhorn"``, has a zero diagonal (for ``"sinkhorn"`` the diagonal holds
        :math:`W_\varepsilon(x_i, x_i)`). Values are computed in the measures' common
        dtype (float32 when all of them are float32) and returned in float64.
    status : ndarray, shape (N, M), int8
        Only with ``return_status=True``: the status of each entry (the table of
        :class:`ottools.OTResult`: 0 converged, 1 ``maxiter`` reached, 2 non-finite
        values, 4 stalled). For a divergence, the status of the first of its three
        problems that did not converge (cross, then the two self problems). The closed
        forms (sliced, 1-D) are always 0.

    Warns
    -----
    OTConvergenceWarning
        Without ``return_status``, when any pair did not converge: the warning lists
        them (a matrix cannot carry a status; their values are the solvers' last
        iterates).

    Notes
    -----
    *Tiles.* The pairs are cut into tiles, a block of ``B`` row measures against a
    block of ``B`` column measures (on the diagonal of a symmetric matrix, the pairs
    ``i < j`` of one block). ``B`` comes from the measured time of a first pair,
    ``t_pair``, and of preparing one measure, ``t_prep``: ``B^2 t_pair + 2 B t_prep``
    is about 0.5 s locally and ``max(0.5, W / 200)`` s on Dask, ``W`` the worker
    threads (so that at most 200 tiles end per second, a fifth of what a scheduler
    paying about 1 ms per task can take), with at least four tiles per thread when the
    pairs allow. A tile prepares each of its measures once: for the sliced metrics, its
    projections on the shared directions, sorted; each pair then merges sorted
    projections (:math:`O(L (n_i + n_j))`), instead of projecting and sorting both
    measures for every pair.

    *Identical results.* An entry depends only on its two measures and the settings,
    not on the tiling or the thread (projections are plain loops, not BLAS; parallel
    kernels are switched off inside tiles): one thread, many threads and Dask return
    the same matrix, bit for bit, for the sliced and 1-D metrics, and for the entropic
    ones on one machine (tiles run the serial kernels, the same bits compiled afresh or
    loaded from Numba's cache); on CPUs with other vector units the entropic kernels may
    round differently.

    *Dask.* The blocks of measures are scattered once (``client.scatter``; Dask copies a
    block to the workers whose tiles need it); tiles are submitted with at most
    ``max(16, 4 W)`` in flight and their results gathered into the matrix as they
    arrive. A tile lost with its worker is rescheduled by the Dask scheduler; a block
    whose every copy was lost with a worker is scattered again and its tiles
    resubmitted; a tile that raises is retried twice.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> rng = np.random.default_rng(0)
    >>> clouds = [rng.normal(size=(n, 2)) + k for k, n in enumerate([30, 40, 50])]
    >>> D = ottools.pairwise_distances(clouds, metric="sliced_wasserstein", rng=0)
    >>> D.shape, bool(np.all(D == D.T)), float(D[0, 0])
    ((3, 3), True, 0.0)
    >>> d01 = ottools.sliced_wasserstein(clouds[0], clouds[1], rng=0)
    >>> bool(np.isclose(D[0, 1], d01, rtol=1e-12))
    True
    """
    metric = _check_method(metric, METRICS, "metric")
    progress = _check_bool(progress, "progress")
    return_status = _check_bool(return_status, "return_status")
    one_d = metric == "wasserstein_1d"
    symmetric = Y is None
    xs = _measures(X, "X", one_d)
    ys = None if symmetric else _measures(Y, "Y", one_d)
    if symmetric:
        wx = _weight_list(weights, xs, "weights")
        wy = None
    else:
        if weights is None:
            weights = (None, None)
        if not (isinstance(weights, (tuple, list)) and len(weights) == 2):
            raise ValueError("With `Y` given, `weights` must be a pair (weights_X, "
                             "weights_Y), each None or one weight vector per measure.")
        wx = _weight_list(weights[0], xs, "weights[0]")
        wy = _weight_list(weights[1], ys, "weights[1]")
    d = 1 if one_d else xs[0].shape[1]
    if ys is not None and not one_d and ys[0].shape[1] != d:
        raise ValueError(f"`Y` measures have dimension {ys[0].shape[1]} but `X` measures "
                         f"have dimension {d}.")
    arrays = xs + (ys or []) + [w for w in wx + (wy or []) if w is not None]
    dtype = _result_dtype(*{arr.dtype for arr in arrays})
    wname = "weights" if symmetric else "weights[0]"
    mx = _finish_measures(xs, wx, "X", wname, dtype)
    my = None if symmetric else _finish_measures(ys, wy, "Y", "weights[1]", dtype)
    engine = _engine(metric, metric_kwargs, d, dtype, rng)
    if engine.kind == "sorted":
        engine.set_scale(mx + (my or []))

    if isinstance(scheduler, str) and scheduler.lower() in ("threads", "dask"):
        scheduler = scheduler.lower()
    elif isinstance(scheduler, str) and ":" not in scheduler:
        # not an address (host:port or scheme://...): a typo such as "thread" reached
        # distributed, whose message named no argument
        raise ValueError(f"`scheduler` must be None, 'threads', 'dask', a "
                         f"dask.distributed.Client or a scheduler address such as "
                         f"'tcp://10.0.0.1:8786'; got {scheduler!r}.")
    if not (scheduler is None or isinstance(scheduler, str)
            or (hasattr(scheduler, "submit") and hasattr(scheduler, "scatter"))):
        # checked before any comparison: an array compared with "threads" is an array,
        # whose truth value NumPy refuses with a message that names no argument; a
        # Client is what submits and scatters (a concurrent.futures executor only submits,
        # and failed inside dask)
        raise TypeError(f"`scheduler` must be None, 'threads', 'dask', a "
                        f"dask.distributed.Client or an address string; got "
                        f"{type(scheduler).__name__}.")
    local = scheduler is None or scheduler == "threads"
    n_threads = _check_n_jobs(n_jobs) if (local or n_jobs is not None) else _cpu_count()

    N = len(mx)
    M = N if symmetric else len(my)
    n_pairs = N * (N - 1) // 2 if symmetric else N * M
    n_self = (N if symmetric else N + M) if engine.needs_self else 0
    diag_self = symmetric and engine.kind == "entropic"
    if diag_self:
        n_self = N  # W_eps(x_i, x_i) on the diagonal of the "sinkhorn" matrix

    serial = engine.may_run_parallel() and _big(mx, my)
    client, close = (None, False) if local else _dask_client(scheduler, n_threads)
    try:
        if client is not None:
            workers = max(1, sum(client.nthreads().values()))
            target, per_worker = max(0.5, workers / 200.0), 4
        else:
            # a thread pool schedules a tile in microseconds: small tiles, and many per
            # thread, so that the threads finish together
            workers, target, per_worker = n_threads, 0.1, 16
        cols = mx if symmetric else my
        if n_pairs > 4 * workers and N > 1:
            t_prep, t_pair = _probe(engine, mx[0], cols[1 if symmetric else 0], serial)
            B = _block_size(t_prep, t_pair, target, n_pairs, workers, max(N, M),
                            per_worker)
        else:
            B = 1
        plan = _Plan(N, M, symmetric, B, engine.needs_self or diag_self)
        D = np.zeros((N, M), dtype=np.float64)
        S = np.zeros((N, M), dtype=np.int8)
        selfv = {"x": np.zeros(N), "y": np.zeros(M)}
        selfs = {"x": np.zeros(N, np.int8), "y": np.zeros(M, np.int8)}
        bar = _progress_bar(progress, n_pairs + n_self)
        count = [0]

        def on_done(key, result):
            what, k = key
            vals, stat = result
            if what == "self":
                which, r = k
                s, e = (plan.rblocks if which == "x" else plan.cblocks)[r]
                selfv[which][s:e] = vals
                selfs[which][s:e] = stat
            else:
                r, c = k
                r0, r1 = plan.rblocks[r]
                if c is None:
                    ii, jj = _tile_pairs(r1 - r0, r1 - r0, True)
                    ii, jj = ii + r0, jj + r0
                else:
                    c0, c1 = plan.cblocks[c]
                    ii, jj = _tile_pairs(r1 - r0, c1 - c0, False)
                    ii, jj = ii + r0, jj + c0
                D[ii, jj] = vals
                S[ii, jj] = stat
            count[0] += len(vals)
            if bar is not None:
                bar.update(len(vals))

        blocks = {"x": [mx[s:e] for s, e in plan.rblocks],
                  "y": None if symmetric else [my[s:e] for s, e in plan.cblocks]}
        try:
            if client is None:
                _run_local(plan, engine, blocks, n_threads, serial, on_done)
            else:
                _run_dask(client, engine, plan, blocks, serial, on_done)
        finally:
            if bar is not None:
                bar.close()
    finally:
        if close:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()

    if count[0] != n_pairs + n_self:  # every tile accounted for, or no matrix
        raise RuntimeError(f"pairwise_distances: {count[0]} of {n_pairs + n_self} entries "
                           f"were computed; this is a bug, please report it.")
    D, S = _assemble(D, S, selfv, selfs, symmetric, engine.kind)
    if not return_status:
        _warn_failures(S, symmetric, metric)
        return D
    return D, S


def _big(mx, my):
    """True when some pair has enough entries for the parallel kernels (see
    ``ottools._kernels._jit.row_chunks``)."""
    from ._kernels._jit import PARALLEL_MIN_ENTRIES

    nx = max(x.shape[0] for x, _ in mx)
    ny = max(x.shape[0] for x, _ in (my or mx))
    return nx * ny >= PARALLEL_MIN_ENTRIES


def _assemble(D, S, selfv, selfs, symmetric, kind):
    """The matrix from the cross values (upper triangle when symmetric) and the self
    terms: the divergence ``W_ij - (W_ii + W_jj) / 2``, the mirrored lower triangle."""
    if kind == "divergence":
        sx, sy = selfv["x"], (selfv["x"] if symmetric else selfv["y"])
        tx, ty = selfs["x"], (selfs["x"] if symmetric else selfs["y"])
        same = S == _SAME
        D = D - 0.5 * (sx[:, None] + sy[None, :])
        D[same] = 0.0
        cross = np.where(same, CONVERGED, S)
        S = np.where(cross != CONVERGED, cross,
                     np.where(tx[:, None] != CONVERGED, tx[:, None], ty[None, :]))
        S = S.astype(np.int8)
    if symmetric:
        iu = np.triu_indices(D.shape[0], 1)
        out = np.zeros_like(D)
        out[iu] = D[iu]
        D = out + out.T
        st = np.zeros_like(S)
        st[iu] = S[iu]
        S = st + st.T
        if kind == "entropic":
            np.fill_diagonal(D, selfv["x"])
            np.fill_diagonal(S, selfs["x"])
    return D, S


def _warn_failures(S, symmetric, metric):
    bad = np.argwhere(np.triu(S, 0) != CONVERGED if symmetric else S != CONVERGED)
    if bad.size == 0:
        return
    shown = ", ".join(f"({i}, {j}): status {S[i, j]}" for i, j in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    warnings.warn(
        f"{len(bad)} pair(s) of metric={metric!r} did not converge: {shown}{more}. Their "
        f"entries are the solvers' last iterates; pass return_status=True for the status "
        f"of every pair, or raise metric_kwargs['maxiter'] / 'reg'.",
        OTConvergenceWarning, stacklevel=3)
