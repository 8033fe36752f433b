"""Exact 1-D optimal transport by sorting: ``wasserstein_1d``, and the row solver that the
sliced distances share.

Internal API (no leading underscore, not exported from the package): :func:`check_p`,
:func:`normalize_weights`, :func:`uniform_or_none`, :func:`pow2_exponent`,
:func:`wpp_rows` with :func:`rows_distance`, :func:`rows_power`,
:func:`power_mean_root`, :func:`wpp_grad_rows`, and :class:`CachedKernels`.
"""

import math

import numpy as np

from ._kernels import lazy
from ._validation import _as_float_array, _check_int, _check_positive, _result_dtype

__all__ = ["wasserstein_1d"]



class CachedKernels(lazy):
    """:class:`ottools._kernels.lazy` that keeps each kernel once looked up, so that hot
    paths (many small problems, batches) skip the import machinery on every call."""

    def __getattr__(self, attr):
        value = super().__getattr__(attr)
        setattr(self, attr, value)
        return value


_k = CachedKernels("_sliced")

# A row's plain sum ``sum mass |u - v|^p`` is kept when it lies in [TINY, inf): terms
# lost to underflow then change it by less than 1e-26 relatively (each is below 2**-1074
# per unit of mass). Rows outside (overflow, underflow, or measures that coincide) are
# recomputed in the scaled form.
TINY = 1e-290


def check_p(p):
    """``p`` as a float >= 1."""
    p = _check_positive(p, "p")
    if p < 1:
        raise ValueError(f"`p` must be >= 1 (W_p is a distance for p >= 1); got {p!r}.")
    return p


def normalize_weights(w):
    """``w / sum(w)`` along the last axis, in the dtype of ``w``. The sum is taken in
    float64, and first over ``w / max(w)`` where it would overflow (weights 1e308 and
    1.5e308, or float32 ones whose sum passes float32's range, became 0 and then read as
    uniform)."""
    keep = w.ndim > 1
    with np.errstate(over="ignore"):
        s = w.sum(axis=-1, dtype=np.float64, keepdims=keep).astype(w.dtype)
    out = (w / s).astype(w.dtype, copy=False)
    if np.all(np.isfinite(s)):
        return out
    # only the rows whose sum overflows (the others keep their bits: a batch's row equals
    # its single call)
    bad = ~np.isfinite(np.atleast_1d(s)[..., 0]) if keep else np.array(True)
    w64 = np.atleast_2d(w)[np.atleast_1d(bad)].astype(np.float64)
    w64 = w64 / w64.max(axis=-1, keepdims=True)
    fixed = (w64 / w64.sum(axis=-1, keepdims=True)).astype(w.dtype)
    if not keep:
        return fixed[0]
    out[bad] = fixed
    return out


def uniform_or_none(w):
    """None when all weights are equal (the uniform fast paths apply); ``w`` may be one
    weight vector or one per row."""
    if w is None:
        return None
    first = w[..., :1]
    return None if np.all(w == first) else w


def pow2_exponent(maxabs, lo=-256, hi=256):
    """``e`` such that ``ldexp(values, -e)`` has its largest magnitude in [0.5, 1), when
    ``maxabs`` (the largest magnitude) lies outside ``[2**lo, 2**hi]``; else 0. Scaling by
    a power of two is exact, and every distance here is homogeneous of degree one, so a
    result computed on scaled values is multiplied back by ``2**e`` (``np.ldexp``)."""
    if not (maxabs > 0) or not math.isfinite(maxabs):
        return 0
    e = math.frexp(maxabs)[1]
    return e if (e > hi or e < lo) else 0


def _sorted_weights(W, idx, shape):
    """Weights in the sorted order of each row: ``W`` (n,) shared or (L, n) per row."""
    if W.ndim == 1:
        return W[idx]
    return np.take_along_axis(W, idx, axis=1)


def wpp_rows(U, V, a, b, p, *, overwrite=False):
    """W_p^p between the rows of ``U`` (L, n) and ``V`` (L, m), as ``(q, s)``.

    ``a`` and ``b``: normalized weights, one vector (n,)/(m,) shared by all rows, one per
    row (L, n)/(L, m), or None for uniform. Returns ``q`` (float64, L) and ``s`` (float64
    L, or None when every row is plain) with ``W_p^p = s**p * q`` per row: rows whose
    plain sum overflows or underflows (large coordinates, large ``p``, measures that
    coincide) are recomputed with ``s`` the largest coupled difference, so that ``q`` stays
    in [smallest mass, 1]. Rows are sorted here (NumPy), then merged by the kernels. With
    ``overwrite``, uniform sides are sorted in place (``U`` and ``V`` must be writable).
    """
    L, n = U.shape
    m = V.shape[1]
    pairs = False
    if a is None and b is None:
        if overwrite:
            U.sort(axis=1)
            V.sort(axis=1)
            Us, Vs = U, V
        else:
            Us = np.sort(U, axis=1)
            Vs = np.sort(V, axis=1)
        wu = np.full((1, n), 1.0 / n, dtype=U.dtype)
        wv = np.full((1, m), 1.0 / m, dtype=U.dtype)
        if n == m:
            pairs = True
            q = _k.wpp_rows_pairs(Us, Vs, p)
        else:
            q = _k.wpp_rows_shared(Us, wu[0], Vs, wv[0], p)
        WU, WV = wu, wv
    else:
        if a is None:
            Us = U if overwrite else U.copy()
            Us.sort(axis=1)
            WU = np.full((1, n), 1.0 / n, dtype=U.dtype)
        else:
            iu = np.argsort(U, axis=1)
            Us = np.take_along_axis(U, iu, axis=1)
            WU = _sorted_weights(a, iu, U.shape)
        if b is None:
            Vs = V if overwrite else V.copy()
            Vs.sort(axis=1)
            WV = np.full((1, m), 1.0 / m, dtype=U.dtype)
        else:
            iv = np.argsort(V, axis=1)
            Vs = np.take_along_axis(V, iv, axis=1)
            WV = _sorted_weights(b, iv, V.shape)
        q = _k.wpp_rows(Us, np.broadcast_to(WU, U.shape) if WU.shape[0] != L else WU,
                        Vs, np.broadcast_to(WV, V.shape) if WV.shape[0] != L else WV, p)
    if q.min() >= TINY and q.max() <= np.finfo(np.float64).max:  # NaN fails both
        return q, None
    s = np.ones(L, dtype=np.float64)
    rows = np.flatnonzero(~((q >= TINY) & np.isfinite(q)))
    _k.wpp_rows_rescaled(Us, np.ascontiguousarray(WU), Vs, np.ascontiguousarray(WV), p,
                         pairs, rows, q, s)
    return q, s


def rows_distance(q, s, p):
    """W_p of each row (float64) from :func:`wpp_rows`'s ``(q, s)``."""
    w = np.maximum(q, 0.0) ** (1.0 / p)
    return w if s is None else w * s


def rows_power(q, s, p):
    """W_p^p of each row (float64; inf where it exceeds the float64 range)."""
    if s is None:
        return q
    with np.errstate(over="ignore"):
        return q * s ** p


def power_mean_root(q, s, p, weights=None):
    """``(sum_l w_l W_l^p)^(1/p)`` (mean over rows when ``weights`` is None), without
    overflow or underflow of the powers: for the plain case the direct formula, else
    ``M (sum_l w_l (W_l / M)^p)^(1/p)`` with ``M = max_l W_l``."""
    if s is None:
        total = float(np.mean(q)) if weights is None else float(weights @ q)
        if np.isfinite(total) and (total >= TINY or total == 0.0):
            return max(total, 0.0) ** (1.0 / p)
    w = rows_distance(q, s, p)
    top = float(w.max())
    if top == 0.0:
        return 0.0
    r = (w / top) ** p
    mean = float(np.mean(r)) if weights is None else float(weights @ r)
    return top * mean ** (1.0 / p)


def wpp_grad_rows(U, V, a, b, p, scale=1.0):
    """W_p^p per row and its gradients ``(wpp, GU, GV)`` w.r.t. the entries of ``U`` and
    ``V`` (see the kernel ``wpp_grad_rows``: with ``scale``, differences are divided by
    it first). ``a``, ``b``: shared normalized weight vectors or None (uniform)."""
    L, n = U.shape
    m = V.shape[1]
    iu = np.argsort(U, axis=1)
    iv = np.argsort(V, axis=1)
    Us = np.take_along_axis(U, iu, axis=1)
    Vs = np.take_along_axis(V, iv, axis=1)
    pairs = a is None and b is None and n == m
    if pairs:
        WU = np.empty((1, 1), dtype=U.dtype)
        WV = WU
    else:
        WU = np.broadcast_to(np.full((1, n), 1.0 / n, dtype=U.dtype), U.shape) if a is None \
            else a[iu]
        WV = np.broadcast_to(np.full((1, m), 1.0 / m, dtype=U.dtype), V.shape) if b is None \
            else b[iv]
    return _k.wpp_grad_rows(Us, WU, iu, Vs, WV, iv, p, pairs, float(scale))


# --------------------------------------------------------------------------- public API

def _axis_name(name, two_d, axis, k):
    """How to name member ``k`` of a batch: ``u_values[:, k]`` (columns) or ``[k]``."""
    if not two_d:
        return f"`{name}`"
    return f"`{name}[:, {k}]`" if axis == 0 else f"`{name}[{k}]`"


def _check_values(arr, name, axis):
    if arr.ndim not in (1, 2):
        raise ValueError(f"`{name}` must be 1-D or 2-D; got shape {arr.shape}.")
    n = arr.shape[axis] if arr.ndim == 2 else arr.shape[0]
    if n == 0 or arr.size == 0:
        raise ValueError(f"`{name}` must not be empty; got shape {arr.shape}.")
    # Two reductions, no temporary: NaN propagates into both, an infinity reaches one.
    ax = None if arr.ndim == 1 else axis
    lo, hi = np.min(arr, axis=ax), np.max(arr, axis=ax)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        if arr.ndim == 1:
            raise ValueError(f"`{name}` must be finite; got NaN or inf.")
        k = int(np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))[0])
        raise ValueError(f"{_axis_name(name, True, axis, k)} must be finite; got NaN or inf.")
    # The largest magnitude per problem (float64): decides the exact rescaling.
    return np.maximum(np.abs(lo), np.abs(hi)).astype(np.float64)


def _check_batch_weights(w, name, values, vname, axis, dtype):
    """Weights for ``values``: a vector shared by every problem, or one per problem (the
    shape of ``values``). Returns them normalized, as one row per problem or shared."""
    arr = _as_float_array(w, name)
    n = values.shape[0] if values.ndim == 1 else values.shape[axis]
    if arr.ndim == 1:
        if arr.shape[0] != n:
            raise ValueError(f"`{name}` must have length {n}: `{vname}` has shape "
                             f"{values.shape}, but `{name}` has length {arr.shape[0]}.")
        rows = arr[None, :]
    elif arr.ndim == 2 and values.ndim == 2 and arr.shape == values.shape:
        rows = arr.T if axis == 0 else arr
    else:
        want = f"({n},)" if values.ndim == 1 else f"({n},) or {values.shape}"
        raise ValueError(f"`{name}` must have shape {want} to match `{vname}` of shape "
                         f"{values.shape}; got {arr.shape}.")
    bad = ~np.isfinite(rows).all(axis=1)
    neg = (rows < 0).any(axis=1)
    with np.errstate(all="ignore"):
        zero = ~(rows.sum(axis=1, dtype=np.float64) > 0)
    for flags, what in ((bad, "must be finite; got NaN or inf"),
                        (neg, "must be non-negative"),
                        (zero, "must have a positive sum")):
        if flags.any():
            k = int(np.flatnonzero(flags)[0])
            label = _axis_name(name, arr.ndim == 2, axis, k)
            raise ValueError(f"{label} {what}.")
    rows = normalize_weights(np.ascontiguousarray(rows, dtype=dtype))
    return uniform_or_none(rows[0] if arr.ndim == 1 else rows)


def wasserstein_1d(u_values, v_values, u_weights=None, v_weights=None, *, p=1, axis=0):
    r"""Exact Wasserstein-p distance between two 1-D empirical distributions, or a batch.

    Parameters
    ----------
    u_values, v_values : array_like, shape (n,) and (m,), or 2-D
        Support points. 2-D inputs hold a batch of ``k`` problems: with ``axis=0`` (the
        default, as POT's ``ot.wasserstein_1d``) the samples run along the first axis,
        one problem per column, shapes (n, k) and (m, k); with ``axis=1`` (or -1) one
        problem per row, shapes (k, n) and (k, m).
    u_weights, v_weights : array_like, optional
        Non-negative weights with a positive sum (normalized here): shape (n,) and (m,),
        shared by every problem of a batch, or the shape of ``u_values`` and
        ``v_values`` for one weight vector per problem. Default uniform.
    p : float, default 1
        Order of the distance, ``p >= 1``.
    axis : {0, 1, -1}, default 0
        The axis of 2-D inputs along which the samples lie (ignored for 1-D input).

    Returns
    -------
    distance : float or ndarray, shape (k,)
        :math:`W_p`, a scalar of the input dtype for 1-D input, an array for 2-D input
        (entry ``i`` equal to the call on problem ``i`` alone).

    Raises
    ------
    ValueError
        For invalid input, naming the argument (and the problem of a batch, e.g.
        ``u_weights[3]``), or when the distance exceeds the range of the dtype.

    Notes
    -----
    With the quantile functions :math:`F^{-1}, G^{-1}`,

    .. math:: W_p^p(\mu, \nu) = \int_0^1 |F^{-1}(t) - G^{-1}(t)|^p \, dt,

    computed exactly by sorting both supports and merging their cumulative weights,
    :math:`O((n + m) \log(n + m))`. Equal sizes with uniform weights reduce to sorting
    and pairing. For ``p = 1`` this equals :func:`scipy.stats.wasserstein_distance`;
    POT's ``ot.wasserstein_1d`` returns :math:`W_p^p` (no root).

    The sum is accumulated in float64. Where :math:`|u_i - v_j|^p` would overflow or
    underflow (coordinates near 1e200, or a large ``p`` such as 1e6), it is computed in
    the scaled form :math:`W_p = s\,(\sum \pi_{ij} (|u_i - v_j| / s)^p)^{1/p}` with
    :math:`s` the largest coupled difference, which stays finite and exact.

    References
    ----------
    .. [1] F. Santambrogio, "Optimal Transport for Applied Mathematicians",
       Birkhaeuser, 2015, Section 2.2.

    Examples
    --------
    >>> import numpy as np
    >>> from ottools import wasserstein_1d
    >>> print(round(float(wasserstein_1d([0.0, 1.0, 3.0], [5.0, 6.0, 8.0])), 6))
    5.0
    >>> print(round(float(wasserstein_1d([0.0, 1.0], [0.0, 1.0, 2.0], [0.5, 0.5], p=2)), 6))
    0.707107

    A batch of three problems, one per row:

    >>> u = np.array([[0.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
    >>> wasserstein_1d(u, u + 0.5, axis=1)
    array([0.5, 0.5, 0.5])
    """
    u = _as_float_array(u_values, "u_values")
    v = _as_float_array(v_values, "v_values")
    axis = _check_int(axis, "axis")
    if axis not in (0, 1, -1):
        raise ValueError(f"`axis` must be 0, 1 or -1; got {axis}.")
    axis = 1 if axis == -1 else axis
    if u.ndim not in (1, 2):
        raise ValueError(f"`u_values` must be 1-D or 2-D; got shape {u.shape}.")
    if v.ndim != u.ndim:
        raise ValueError(
            f"`u_values` and `v_values` must have the same number of dimensions; got "
            f"shapes {u.shape} and {v.shape}."
        )
    if u.ndim == 2 and u.shape[1 - axis] != v.shape[1 - axis]:
        what = "columns" if axis == 0 else "rows (problems)"
        raise ValueError(
            f"`u_values` and `v_values` must have the same number of {what}; got "
            f"shapes {u.shape} and {v.shape}."
        )
    big = np.maximum(_check_values(u, "u_values", axis), _check_values(v, "v_values", axis))
    p = check_p(p)
    uw = None if u_weights is None else _as_float_array(u_weights, "u_weights")
    vw = None if v_weights is None else _as_float_array(v_weights, "v_weights")
    dtype = _result_dtype(u, v, uw, vw)
    a = None if uw is None else _check_batch_weights(uw, "u_weights", u, "u_values", axis,
                                                     dtype)
    b = None if vw is None else _check_batch_weights(vw, "v_weights", v, "v_values", axis,
                                                     dtype)
    if u.ndim == 1:
        U = u.astype(dtype, copy=False)[None, :]
        V = v.astype(dtype, copy=False)[None, :]
    elif axis == 0:
        U = np.ascontiguousarray(u.T, dtype=dtype)
        V = np.ascontiguousarray(v.T, dtype=dtype)
    else:
        U = np.ascontiguousarray(u, dtype=dtype)
        V = np.ascontiguousarray(v, dtype=dtype)
    # Differences of values beyond 2**1000 could overflow: such rows are scaled by a power
    # of two (exact), the distance scaled back.
    e = np.where(np.atleast_1d(big) > 2.0**1000, 4, 0)
    if e.any():
        U = np.ldexp(U, -e[:, None]).astype(dtype, copy=False)
        V = np.ldexp(V, -e[:, None]).astype(dtype, copy=False)
    q, s = wpp_rows(U, V, a, b, p)
    with np.errstate(over="ignore"):
        dist = np.ldexp(rows_distance(q, s, p), e).astype(dtype)
    if not np.all(np.isfinite(dist)):
        k = int(np.flatnonzero(~np.isfinite(dist))[0])
        where = "" if u.ndim == 1 else f" (problem {k})"
        raise ValueError(f"The distance{where} exceeds the range of {dtype}: `u_values` and "
                         f"`v_values` are too far apart to be represented.")
    if u.ndim == 1:
        return dist[0]
    return dist
