"""Ground-cost matrices between point clouds, and their gradients with respect to the points."""

import math

import numpy as np

from ._kernels import adapts_threads
from ._validation import _check_point_pair, _check_positive, _reject_tensor, _result_dtype

__all__ = ["cost_matrix"]

# Every metric of scipy.spatial.distance.cdist (SciPy >= 1.11 names that SciPy still ships),
# plus "minkowski_p", the p-th power of the Minkowski distance. Internal API (not exported):
# the CLI lists these names and the torch layer validates against them.
SCIPY_METRICS = (
    "braycurtis", "canberra", "chebyshev", "cityblock", "correlation", "cosine", "dice",
    "euclidean", "hamming", "jaccard", "jensenshannon", "mahalanobis", "minkowski",
    "rogerstanimoto", "russellrao", "seuclidean", "sokalsneath", "sqeuclidean", "yule",
)
METRICS = tuple(sorted(SCIPY_METRICS + ("minkowski_p",)))
ALIASES = {"l1": "cityblock", "l2": "euclidean"}

# How each metric scales with the points, c(s x, s y) = s**k c(x, y): degree k ("p" for the
# p-th power). Points of extreme magnitude are scaled by a power of two before these metrics
# are evaluated (exact), and the costs scaled back; other metrics are evaluated as given.
_DEGREE = {
    "sqeuclidean": 2, "euclidean": 1, "cityblock": 1, "chebyshev": 1, "minkowski": 1,
    "minkowski_p": "p", "cosine": 0, "correlation": 0, "seuclidean": 0, "mahalanobis": 0,
}
EXTREME = 2.0 ** 300  # |coordinates| above this (or all below its inverse) are rescaled


def metric_name(metric):
    """The canonical name of a metric string (aliases resolved), or ValueError listing them."""
    if not isinstance(metric, str):
        raise TypeError(f"`metric` must be a string or a callable; got {type(metric).__name__}.")
    name = ALIASES.get(metric.lower(), metric.lower())
    if name not in METRICS:
        valid = ", ".join(map(repr, METRICS + tuple(ALIASES)))
        raise ValueError(f"Unknown metric {metric!r}; valid: {valid}, or a callable.")
    return name


def _check_p(p):
    pp = _check_positive(p, "p")  # checked for every metric: a typo is never silent
    if pp < 1:
        raise ValueError(f"`p` must be >= 1; got {pp}.")
    return pp


def cost_matrix(x, y, metric="sqeuclidean", *, p=None):
    """Pairwise ground costs ``C_ij = c(x_i, y_j)``.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Source points (a 1-D array is read as ``n`` points in 1-D).
    y : array_like, shape (m, d)
        Target points, same ``d``.
    metric : str or callable, default "sqeuclidean"
        ``"sqeuclidean"`` (``|x - y|^2``), ``"minkowski"`` (the Minkowski distance
        ``(sum_k |x_k - y_k|^p)^(1/p)``, as in SciPy and POT), ``"minkowski_p"`` (its
        ``p``-th power ``sum_k |x_k - y_k|^p``, the ground cost of the Wasserstein-``p``
        distance), or any other metric of :func:`scipy.spatial.distance.cdist`:
        ``"braycurtis"``, ``"canberra"``, ``"chebyshev"``, ``"cityblock"`` (alias
        ``"l1"``), ``"correlation"``, ``"cosine"``, ``"dice"``, ``"euclidean"`` (alias
        ``"l2"``), ``"hamming"``, ``"jaccard"``, ``"jensenshannon"``, ``"mahalanobis"``,
        ``"rogerstanimoto"``, ``"russellrao"``, ``"seuclidean"``, ``"sokalsneath"``,
        ``"yule"`` (computed by SciPy with its defaults; ``"seuclidean"`` and
        ``"mahalanobis"`` estimate the variances from ``x`` and ``y`` stacked). A callable
        ``metric(x, y)`` receives the validated ``(n, d)`` and ``(m, d)`` arrays and must
        return a finite real ``(n, m)`` matrix.
    p : float, optional
        Exponent of ``"minkowski"`` and ``"minkowski_p"``, >= 1 (default 2); refused
        (``TypeError``) with any other metric, where it would have no effect.

    Returns
    -------
    cost : ndarray, shape (n, m)
        float32 if both inputs are float32, else float64 (a callable's output keeps its
        dtype, promoted with the inputs': float64 from float32 points stays float64).

    Raises
    ------
    TypeError
        For ``p`` with a metric other than ``"minkowski"`` and ``"minkowski_p"``.
    ValueError
        For an unknown metric name; where a cost is undefined or not finite (a named metric
        that is undefined for some points, e.g. ``"braycurtis"`` between two zero vectors,
        or finite points whose cost overflows the output dtype: the message names the
        points and the metric); for ``"correlation"`` in 1-D (every 1-D point is a constant
        vector); for a callable whose output has the wrong shape, is complex or holds
        NaN/inf.

    Notes
    -----
    ``"cosine"``: ``1 - <x_i, y_j> / (|x_i| |y_j|)``, where a zero vector is taken to have
    cosine similarity 0 with every vector, so its cost is 1 (the convention of
    scikit-learn's ``cosine_distances`` and of the torch layer; SciPy returns NaN).
    ``"correlation"`` is the cosine cost of the centred vectors ``x_i - mean(x_i)``, with
    the same convention for constant vectors.

    Points of extreme magnitude (above about 1e90 or all below 1e-90) are scaled by a
    power of two before ``"cityblock"``, ``"chebyshev"``, ``"cosine"``,
    ``"correlation"``, ``"seuclidean"`` and ``"mahalanobis"`` are evaluated (exact, as
    these metrics are homogeneous). For such points, and for ``"minkowski"`` and
    ``"minkowski_p"`` whose ``p``-th powers would leave float64's range,
    ``"sqeuclidean"``, ``"euclidean"``, ``"minkowski"`` and ``"minkowski_p"`` are
    computed pair by pair, each pair's differences divided by the power of two above
    their largest before the powers are taken. So a cost is returned whenever its value
    is representable: the Euclidean distance between points 1e200 apart is 1e200 (their
    squared distance, 1e400, raises a ValueError), and points 1 apart keep their
    distance beside a point at 1e200.

    Examples
    --------
    >>> import numpy as np
    >>> from ottools import cost_matrix
    >>> cost_matrix(np.array([[0.0], [1.0]]), np.array([[0.0], [3.0]]))
    array([[0., 9.],
           [1., 4.]])
    >>> cost_matrix([[0.0, 0.0]], [[3.0, 4.0]], "minkowski", p=2)
    array([[5.]])
    >>> cost_matrix([[0.0, 0.0]], [[3.0, 4.0]], "minkowski_p", p=2)
    array([[25.]])
    """
    return named_cost_matrix(x, y, metric, p=p)


@adapts_threads
def named_cost_matrix(x, y, metric="sqeuclidean", *, p=None, names=("x", "y")):
    """:func:`cost_matrix` whose errors call the points ``names`` (internal API: the
    functions that build their costs from other arguments, e.g. ``monge_gap``'s ``x`` and
    ``tx``, name those)."""
    p = metric_p(metric, p)
    x, y = _check_point_pair(x, y, names=names)
    return checked_cost_matrix(x, y, metric, 2.0 if p is None else p, names)


def _check_p_applies(p, metric):
    """TypeError for a ``p`` given with a metric that has no exponent (it was silently
    ignored: ``cost_matrix(x, y, p=3)`` returned the squared Euclidean cost), as
    :class:`ottools.PointCloud` refuses it; the metric's own errors come first."""
    name = metric if callable(metric) else metric_name(metric)
    if name not in ("minkowski", "minkowski_p"):
        what = "a callable `metric`" if callable(metric) else f"metric={metric!r}"
        raise TypeError(f"`p` is only used with metric='minkowski' or 'minkowski_p'; got "
                        f"p={p!r} with {what}.")


def metric_p(metric, p):
    """The checked exponent ``p`` of the functions that take ``metric`` and ``p``
    (``sinkhorn_divergence``, ``monge_gap``, the torch losses), before any solve: None
    stays None (the metrics' default), else the TypeError of :func:`cost_matrix` for a
    metric other than ``"minkowski"`` and ``"minkowski_p"`` (a callable included) and
    ValueError for ``p < 1``."""
    if p is None:
        return None
    _check_p_applies(p, metric)
    return _check_p(p)


def checked_cost_matrix(x, y, metric, p=2, names=("x", "y")):
    """:func:`cost_matrix` of points already validated (float arrays (n, d), (m, d),
    finite) and a checked ``p``: the internal API of loops over many pairs of measures
    checked once (``pairwise_distances``)."""
    dtype = _result_dtype(x, y)
    pp = p
    if callable(metric):
        return _callable_cost(metric, x, y, dtype)
    name = metric_name(metric)
    if name == "correlation" and x.shape[1] == 1:
        raise ValueError(
            f"`metric`='correlation' needs points of dimension >= 2: `{names[0]}` and "
            f"`{names[1]}` have "
            "dimension 1, where every point is a constant vector (no correlation defined)."
        )
    xx = x.astype(np.float64, copy=False)
    yy = y.astype(np.float64, copy=False)
    exponent = 0
    top = None
    per_pair = False
    if name in _DEGREE:
        top = max(np.abs(xx).max(), np.abs(yy).max())
        # (minkowski sums |t|**p: at p = 20 points of 1e-20 gave costs of 0; handled
        # apart when |exponent| p leaves float64's range)
        powers = name in ("minkowski", "minkowski_p") and 0 < top < math.inf and \
            abs(math.frexp(top)[1]) * pp > 900
        if top > EXTREME or 0 < top < 1 / EXTREME or powers:
            if name in _PER_PAIR:
                per_pair = True
            else:
                exponent = math.frexp(top)[1]
                xx = np.ldexp(xx, -exponent)
                yy = np.ldexp(yy, -exponent)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if per_pair:
            out = _per_pair_cost(name, xx, yy, pp)
        elif exactly_symmetric(name, x.shape[1]):  # the kernel, in dtype
            out = _sqeuclidean_dense(xx, yy, dtype)
        else:
            try:
                out = _named_cost(name, xx, yy, pp)
            except (ValueError, np.linalg.LinAlgError) as exc:  # e.g. too few points
                raise ValueError(
                    f"`metric`={name!r} cannot be evaluated on `{names[0]}` and "
                    f"`{names[1]}`: {exc}") from None
        if exponent:
            degree = pp if _DEGREE[name] == "p" else _DEGREE[name]
            shift = degree * exponent
            whole = math.floor(shift)
            out = np.ldexp(out * 2.0 ** (shift - whole), whole)
        out = np.ascontiguousarray(out, dtype=dtype)
    if not surely_finite(name, top, exponent or per_pair, x.shape[1], dtype) and \
            not np.all(np.isfinite(out)):
        _raise_nonfinite(out, name, x, y, dtype, names)
    return out


# The metrics built on sums of powers of the differences: for points of extreme magnitude
# they are computed pair by pair, each pair's differences divided by the power of two
# above their largest first (one power of two for all points, from the largest
# coordinate, turned the squares of distances near 1 beside a point at 1e200 into
# 1e-400, and those costs into 0).
_PER_PAIR = ("euclidean", "minkowski", "sqeuclidean", "minkowski_p")


def _per_pair_cost(name, x, y, p):
    """The float64 cost of a metric of ``_PER_PAIR`` on float64 points, each pair's
    distance ``t (sum_k (|x_k - y_k| / t)^p)^(1/p)`` with ``t`` the power of two above
    its largest difference (kernel ``_online.scaled_distance``; for p = 2 the bits of
    cdist's wherever its sum neither overflows nor underflows), then raised to its power
    for ``"sqeuclidean"`` and ``"minkowski_p"``. Differences overflow only where the
    distance does."""
    from ._kernels import lazy

    ko = lazy("_online")
    q = 2.0 if name in ("euclidean", "sqeuclidean") else p
    code = ko.EUCLIDEAN_SCALED if q == 2.0 else ko.MINKOWSKI_SCALED
    n, m = x.shape[0], y.shape[0]
    out = ko.cost_block(np.ascontiguousarray(x), np.ascontiguousarray(y),
                        np.arange(n, dtype=np.int64), np.arange(m, dtype=np.int64),
                        np.zeros(n), np.zeros(m), code, float(q), 1.0)
    if name in ("sqeuclidean", "minkowski_p"):
        out = out * out if q == 2.0 else out ** q
    return out


def surely_finite(name, top, exponent, d, dtype):
    """True when the costs of a distance-like metric are bounded below the dtype's
    largest value by the points' largest magnitude ``top`` (finite points, no rescaling):
    ``d (2 top)^2`` for sqeuclidean, ``d 2 top`` for the others. Saves a pass over the
    cost matrix."""
    degree = _DEGREE.get(name)
    if top is None or exponent or degree not in (1, 2):
        return False
    bound = d * (2.0 * float(top)) ** degree
    return bound < 0.5 * float(np.finfo(dtype).max)


def _named_cost(name, x, y, p):
    """The float64 cost of a named metric on float64 points."""
    if name in ("cosine", "correlation"):
        if name == "correlation":
            x = x - x.mean(axis=1, keepdims=True)
            y = y - y.mean(axis=1, keepdims=True)
        ux, _ = _unit_rows(x)
        uy, _ = _unit_rows(y)
        return np.clip(1.0 - ux @ uy.T, 0.0, 2.0)
    from scipy.spatial.distance import cdist  # lazy: keeps `import ottools` cheap

    if name == "minkowski":
        return cdist(x, y, "minkowski", p=p)
    if name == "minkowski_p":
        if p == 2:
            return cdist(x, y, "sqeuclidean")
        return cdist(x, y, "minkowski", p=p) ** p
    return cdist(x, y, name)


def _unit_rows(z):
    """Rows of ``z`` scaled to unit Euclidean norm (zero rows stay zero), and the norms.

    Each row is first divided by its largest absolute entry, so that no square overflows.
    """
    top = np.abs(z).max(axis=1, keepdims=True)
    safe = np.where(top > 0, top, 1.0)
    w = z / safe
    nw = np.sqrt(np.einsum("ij,ij->i", w, w))[:, None]
    unit = w / np.where(nw > 0, nw, 1.0)
    return unit, (nw * top)[:, 0]


def _raise_nonfinite(out, name, x, y, dtype, names=("x", "y")):
    nx, ny = names
    i, j = (int(k[0]) for k in np.nonzero(~np.isfinite(out)))
    where = f"{nx}[{i}] = {_fmt(x[i])} and {ny}[{j}] = {_fmt(y[j])}"
    if np.isnan(out[i, j]) or name not in _DEGREE:
        raise ValueError(
            f"`metric`={name!r} is undefined (got {out[i, j]}) between {where}; choose a "
            "metric defined for these points (see the list in `ottools.cost_matrix`)."
        )
    top = max(np.abs(x).max(), np.abs(y).max())
    raise ValueError(
        f"The {name!r} cost between `{nx}` and `{ny}` overflows {np.dtype(dtype).name} "
        f"(largest |coordinate| {top:.3g}; first at {where}): rescale the points, "
        + (f"e.g. divide `{nx}` by a constant factor." if nx == ny else
           f"e.g. divide `{nx}` and `{ny}` by a common factor.")
    )


def _fmt(v, k=4):
    body = ", ".join(f"{t:.4g}" for t in v[:k])
    return f"[{body}{', ...' if v.size > k else ''}]"


def _callable_cost(metric, x, y, dtype):
    """Call a user metric and check what it returns: shape, real, finite."""
    out = metric(x, y)
    _reject_tensor(out, "metric(x, y)")
    try:
        out = np.asarray(out)
    except Exception as exc:
        raise TypeError(f"`metric` must return an array of numbers; {exc}") from None
    want = (x.shape[0], y.shape[0])
    if out.shape != want:
        raise ValueError(f"`metric` returned shape {out.shape}; expected {want}.")
    if out.dtype.kind == "c":
        raise ValueError("`metric` returned complex values; costs must be real.")
    if out.dtype.kind not in "biuf":
        raise TypeError(f"`metric` must return real numbers; got dtype {out.dtype}.")
    out = np.ascontiguousarray(out, dtype=np.result_type(out.dtype, dtype))
    if not np.all(np.isfinite(out)):
        i, j = (int(k[0]) for k in np.nonzero(~np.isfinite(out)))
        raise ValueError(f"`metric` returned a non-finite cost ({out[i, j]}) at [{i}, {j}]; "
                         "costs must be finite.")
    return out


# ----------------------------------------------------------------------------- gradients

# Entries of one (rows, m, d) block of differences in `cost_vjp` (2 MiB in float64).
VJP_BLOCK_ENTRIES = 1 << 18


@adapts_threads
def cost_vjp(P, x, y, metric, p=None, *, block_rows=None, need_y=True):
    """Gradients of ``sum_ij P_ij c(x_i, y_j)`` with respect to ``x`` and ``y``.

    Internal API (not exported; the torch layer's backward pass). ``P`` is an (n, m)
    array or SciPy sparse matrix of weights (a plan), ``x`` (n, d) and ``y`` (m, d) points
    already validated, ``metric`` a metric name and ``p`` the exponent of ``"minkowski"``
    and ``"minkowski_p"`` (None: 2). Returns ``(grad_x, grad_y)`` in the result dtype of
    ``P``, ``x`` and ``y``.

    ``"sqeuclidean"`` in closed form, ``2 (diag(P 1) x - P y)`` and
    ``2 (diag(P^T 1) y - P^T x)``; ``"euclidean"``, ``"cityblock"``, ``"minkowski"``,
    ``"minkowski_p"``, ``"chebyshev"``, ``"cosine"`` and ``"correlation"`` in blocks of
    rows, so that the memory stays O(block * m * d) (``block_rows`` rows at a time; by
    default about 2**18 entries). Where a metric is not differentiable the value is a
    subgradient: 0 for ``x_i = y_j`` (Euclidean, Minkowski) and for zero coordinates of
    ``x_i - y_j`` (cityblock); the first largest coordinate for ``"chebyshev"``; 0 for a
    zero vector (cosine) or a constant one (correlation), whose cost is the constant 1.

    ``need_y=False``: ``grad_y`` is None and is not computed (squared Euclidean; the other
    metrics compute it anyway).

    Raises NotImplementedError for callables and for the other SciPy metrics.
    """
    if callable(metric):
        raise NotImplementedError("cost_vjp has no gradient for a callable `metric`; "
                                  "differentiate the callable itself (e.g. with autograd).")
    name = metric_name(metric)
    if name not in _VJP:
        raise NotImplementedError(f"cost_vjp has no gradient formula for metric {name!r}; "
                                  f"available: {', '.join(map(repr, sorted(_VJP)))}.")
    pp = 2.0 if p is None else _check_p(p)
    import scipy.sparse as sp  # lazy

    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    sparse = sp.issparse(P)
    out_dtype = _result_dtype(x, y, None if sparse else np.asarray(P))
    if (name == "sqeuclidean" and not sparse and x.shape[1] == y.shape[1] <= KERNEL_MAX_D
            and np.asarray(P).ndim == 2 and x.shape[0] == np.shape(P)[0]
            and y.shape[0] == np.shape(P)[1]):
        gx, gy = _sqeuclidean_vjp(np.asarray(P), x, y, need_y)
        return gx.astype(out_dtype, copy=False), (None if gy is None else
                                                   gy.astype(out_dtype, copy=False))
    if sparse:
        P = sp.csr_matrix(P, dtype=np.float64)
    else:
        P = np.asarray(P, dtype=np.float64)
    n, m = P.shape
    if x.shape[0] != n or y.shape[0] != m or x.shape[1] != y.shape[1]:
        raise ValueError(f"cost_vjp: `P` has shape {P.shape}, `x` {x.shape}, `y` {y.shape}.")
    x = x.astype(np.float64, copy=False)
    y = y.astype(np.float64, copy=False)
    if name == "correlation" and x.shape[1] == 1:
        raise ValueError("`metric`='correlation' needs points of dimension >= 2.")
    if name == "sqeuclidean":
        rows = np.asarray(P.sum(axis=1)).ravel()
        cols = np.asarray(P.sum(axis=0)).ravel()
        gx = 2.0 * (rows[:, None] * x - np.asarray(P @ y))
        gy = 2.0 * (cols[:, None] * y - np.asarray(P.T @ x))
    elif name in ("cosine", "correlation"):
        gx, gy = _cosine_vjp(P, x, y, name == "correlation", block_rows)
    else:
        d = x.shape[1]
        step = block_rows or max(1, VJP_BLOCK_ENTRIES // max(1, m * d))
        gx = np.empty_like(x)
        gy = np.zeros_like(y)
        dcost = _VJP[name]
        for i0 in range(0, n, step):
            Pb = P[i0:i0 + step]
            Pb = Pb.toarray() if sparse else Pb
            G = dcost(x[i0:i0 + step, None, :] - y[None, :, :], pp)  # dc / d(x_i - y_j)
            gx[i0:i0 + step] = np.einsum("ij,ijk->ik", Pb, G)
            gy -= np.einsum("ij,ijk->jk", Pb, G)
    return gx.astype(out_dtype, copy=False), gy.astype(out_dtype, copy=False)


# Up to this dimension the squared Euclidean cost and its VJP run as Numba kernels (one
# pass over the matrix; the VJP's column accumulators take (threads, d, m) floats);
# above, as cdist and matrix products.
KERNEL_MAX_D = 16


def exactly_symmetric(metric, d):
    """True when ``cost_matrix(x, x, metric)`` of points of dimension ``d`` is exactly
    symmetric by construction (no check needed): the squared Euclidean cost, computed by
    the kernel, or pair by pair for points of extreme magnitude (``_per_pair_cost``:
    ``|u - v|`` and ``(u - v) / t`` squared do not depend on the order of ``u`` and
    ``v``)."""
    return isinstance(metric, str) and metric_name(metric) == "sqeuclidean" and \
        d <= KERNEL_MAX_D


def _sqeuclidean_dense(x, y, dtype):
    """The (n, m) squared Euclidean cost in ``dtype`` from float64 points (kernel)."""
    from ._kernels import lazy

    out = np.empty((x.shape[0], y.shape[0]), dtype=dtype)
    yT = np.ascontiguousarray(y.T)
    x = np.ascontiguousarray(x)
    chunks = lazy("_jit").row_chunks(*out.shape)
    if chunks > 1:
        lazy("_sqeuclidean").sqeuclidean_cost_par(x, yT, out, chunks)
    else:
        lazy("_sqeuclidean").sqeuclidean_cost(x, yT, out)
    return out


def _sqeuclidean_vjp(P, x, y, need_y):
    """``(grad_x, grad_y)`` in float64 by the one-pass kernel (``grad_y`` None unless
    ``need_y``)."""
    from ._kernels import lazy

    k = lazy("_sqeuclidean")
    P = P if P.dtype in (np.float32, np.float64) else P.astype(np.float64)
    if not P.flags.c_contiguous and P.T.flags.c_contiguous:  # a transposed plan: no copy
        gy, gx = _sqeuclidean_vjp(P.T, y, x, True)
        return gx, (gy if need_y else None)
    P = np.ascontiguousarray(P)
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    yT = np.ascontiguousarray(y.T)
    gx = np.empty_like(x)
    gy = np.empty_like(y) if need_y else np.empty((0, y.shape[1]))
    chunks = lazy("_jit").row_chunks(*P.shape)
    if chunks > 1:
        k.sqeuclidean_vjp_par(P, x, yT, y, need_y, gx, gy, chunks)
    else:
        k.sqeuclidean_vjp(P, x, yT, y, need_y, gx, gy)
    return gx, (gy if need_y else None)


def _scaled(diff):
    """``|diff| / t`` with ``t`` the largest |entry| of each pair (1 where all are 0)."""
    a = np.abs(diff)
    t = a.max(axis=-1, keepdims=True)
    return a / np.where(t > 0, t, 1.0)


def _d_euclidean(diff, p):
    u = _scaled(diff)
    nrm = np.sqrt(np.einsum("...k,...k->...", u, u))[..., None]
    return np.sign(diff) * u / np.where(nrm > 0, nrm, 1.0)


def _d_cityblock(diff, p):
    return np.sign(diff)


def _d_chebyshev(diff, p):
    a = np.abs(diff)
    k = a.argmax(axis=-1)[..., None]
    g = np.zeros_like(diff)
    np.put_along_axis(g, k, np.take_along_axis(np.sign(diff), k, axis=-1), axis=-1)
    return g


def _d_minkowski(diff, p):
    # d/d(diff) (sum |diff|^p)^(1/p) = sign(diff) (|diff| / D)^(p - 1), D the distance.
    if p == 1:
        return np.sign(diff)
    u = _scaled(diff)
    dist = (u ** p).sum(axis=-1, keepdims=True) ** (1.0 / p)
    return np.sign(diff) * (u / np.where(dist > 0, dist, 1.0)) ** (p - 1)


def _d_minkowski_p(diff, p):
    if p == 1:
        return np.sign(diff)
    return p * np.sign(diff) * np.abs(diff) ** (p - 1)


_VJP = {
    "sqeuclidean": None, "cosine": None, "correlation": None,
    "euclidean": _d_euclidean, "cityblock": _d_cityblock, "chebyshev": _d_chebyshev,
    "minkowski": _d_minkowski, "minkowski_p": _d_minkowski_p,
}


def _cosine_vjp(P, x, y, centre, block_rows):
    """Cosine cost ``1 - <u_i, v_j>``, ``u``/``v`` the unit rows: gradients by blocks.

    d c_ij / d x_i = -(v_j - <u_i, v_j> u_i) / |x_i|; correlation: the same on the centred
    points, then projected back through the centring (subtract each row's mean).
    """
    import scipy.sparse as sp

    if centre:
        x = x - x.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
    ux, nx = _unit_rows(x)
    uy, ny = _unit_rows(y)
    n, m = P.shape
    step = block_rows or max(1, VJP_BLOCK_ENTRIES // max(1, m))
    gx = np.empty_like(x)
    acc_y = np.zeros_like(y)
    for i0 in range(0, n, step):
        Pb = P[i0:i0 + step]
        Pb = Pb.toarray() if sp.issparse(Pb) else Pb
        ub = ux[i0:i0 + step]
        W = Pb * (ub @ uy.T)  # P_ij <u_i, v_j>
        gx[i0:i0 + step] = W.sum(axis=1)[:, None] * ub - Pb @ uy
        acc_y += W.sum(axis=0)[:, None] * uy - Pb.T @ ub
    gx /= np.where(nx > 0, nx, np.inf)[:, None]  # zero vectors: gradient 0
    gy = acc_y / np.where(ny > 0, ny, np.inf)[:, None]
    if centre:
        gx -= gx.mean(axis=1, keepdims=True)
        gy -= gy.mean(axis=1, keepdims=True)
    return gx, gy


# Metrics whose parameters SciPy's cdist estimates from the points (``V``, ``VI``): the
# three problems of the divergence take them from ``x`` and ``y`` stacked, once.
ESTIMATED = {"seuclidean": "V", "mahalanobis": "VI"}


def dense_costs(x, y, metric, dtype, p=None):
    """``cost(u, v, names)``: the dense cost matrix (in ``dtype``) of points ``u``, ``v``
    among ``x`` and ``y`` for the three problems of the divergence, errors naming the
    points ``names``. ``"seuclidean"`` and ``"mahalanobis"`` get one ground cost: their
    variances (``V``, ``VI`` of :func:`scipy.spatial.distance.cdist`) estimated once from
    ``x`` and ``y`` stacked, as ``cost_matrix(x, y, metric)`` does, and used for
    ``c(x, x)`` and ``c(y, y)`` too (three ``cost_matrix`` calls estimated them from ``x``
    alone, ``y`` alone and both: S combined three metrics). Points of extreme magnitude
    are scaled by the same power of two (exact: these metrics are invariant). ``p``:
    the exponent of ``"minkowski"`` and ``"minkowski_p"`` (None: 2), refused with the
    other metrics as by :func:`cost_matrix`."""
    name = metric_name(metric) if isinstance(metric, str) else None
    if p is not None:
        _check_p_applies(p, metric)
    if name not in ESTIMATED:
        return lambda u, v, names: named_cost_matrix(u, v, metric, p=p, names=names)
    from scipy.spatial.distance import cdist  # lazy: keeps `import ottools` cheap

    z = np.vstack([x, y]).astype(np.float64)
    top = float(np.abs(z).max())
    e = math.frexp(top)[1] if (top > EXTREME or 0 < top < 1 / EXTREME) else 0
    z = np.ldexp(z, -e)
    if name == "seuclidean":
        param = np.var(z, axis=0, ddof=1)  # SciPy's cdist default
    else:
        n, d = z.shape
        why = (f"the covariance of their {n} points stacked (dimension {d}) needs at "
               f"least {d + 1} points" if n <= d else None)
        if why is None:
            try:
                param = np.linalg.inv(np.cov(z.T)).T  # SciPy's cdist default
            except np.linalg.LinAlgError:
                why = "the covariance of their points stacked is singular"
        if why is not None:
            raise ValueError(f"`metric`='mahalanobis' cannot be evaluated on `x` and `y`: "
                             f"{why}.")

    def cost(u, v, names):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = cdist(np.ldexp(u.astype(np.float64), -e),
                        np.ldexp(v.astype(np.float64), -e), name, **{ESTIMATED[name]: param})
        if not np.all(np.isfinite(out)):
            i, j = (int(k[0]) for k in np.nonzero(~np.isfinite(out)))
            hint = (" (a coordinate constant over `x` and `y` has variance 0)"
                    if name == "seuclidean" else "")
            raise ValueError(f"`metric`={name!r} is undefined (got {out[i, j]}) between "
                             f"{names[0]}[{i}] and {names[1]}[{j}]{hint}; choose a metric "
                             f"defined for these points.")
        return np.ascontiguousarray(out, dtype=dtype)

    return cost
