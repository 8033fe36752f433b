"""Exact 1-D optimal transport by sorting: ``wasserstein_1d`` and the shared row solver."""

import numpy as np

from ._kernels import lazy
from ._validation import _as_float_array, _check_positive, _check_weights, _result_dtype

__all__ = ["wasserstein_1d"]

_k = lazy("_sliced")


def _check_p(p):
    """``p`` as a float >= 1."""
    p = _check_positive(p, "p")
    if p < 1:
        raise ValueError(f"`p` must be >= 1 (W_p is a distance for p >= 1); got {p!r}.")
    return p


def _normalize(w):
    s = w.sum(dtype=np.float64)
    return (w / w.dtype.type(s)).astype(w.dtype, copy=False)


def _wpp_rows(U, V, a, b, p, overwrite=False):
    """W_p^p (float64 array, one per row) between the rows of ``U`` (L, n) and ``V`` (L, m).

    ``a`` (n,) and ``b`` (m,) are normalized weights shared by all rows, or None for
    uniform. Rows are sorted here (NumPy), then merged by the kernels. With
    ``overwrite``, uniform sides are sorted in place (U and V must be writable).
    """
    n, m = U.shape[1], V.shape[1]
    if a is None and b is None:
        if overwrite:
            U.sort(axis=1)
            V.sort(axis=1)
            Us, Vs = U, V
        else:
            Us = np.sort(U, axis=1)
            Vs = np.sort(V, axis=1)
        if n == m:
            return _k.wpp_rows_pairs(Us, Vs, p)
        wu = np.full(n, 1.0 / n, dtype=U.dtype)
        wv = np.full(m, 1.0 / m, dtype=U.dtype)
        return _k.wpp_rows_shared(Us, wu, Vs, wv, p)
    if a is None:
        Us = np.sort(U, axis=1)
        WU = np.full((1, n), 1.0 / n, dtype=U.dtype)
    else:
        iu = np.argsort(U, axis=1)
        Us = np.take_along_axis(U, iu, axis=1)
        WU = a[iu]
    if b is None:
        Vs = np.sort(V, axis=1)
        WV = np.full((1, m), 1.0 / m, dtype=U.dtype)
    else:
        iv = np.argsort(V, axis=1)
        Vs = np.take_along_axis(V, iv, axis=1)
        WV = b[iv]
    if WU.shape[0] == 1 and U.shape[0] > 1:
        WU = np.broadcast_to(WU, U.shape)
    if WV.shape[0] == 1 and V.shape[0] > 1:
        WV = np.broadcast_to(WV, V.shape)
    return _k.wpp_rows(Us, WU, Vs, WV, p)


def _wpp_grad_rows(U, V, a, b, p):
    """W_p^p per row and its gradients ``(wpp, GU, GV)`` w.r.t. the entries of U and V."""
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
    return _k.wpp_grad_rows(Us, WU, iu, Vs, WV, iv, p, pairs)


def _uniform_or_none(w):
    """None when all weights are equal (the uniform fast paths apply)."""
    return None if w is None or np.all(w == w[0]) else w


def wasserstein_1d(u_values, v_values, u_weights=None, v_weights=None, *, p=1):
    r"""Exact Wasserstein-p distance between two 1-D empirical distributions.

    Parameters
    ----------
    u_values, v_values : array_like, shape (n,) and (m,), or (n, k) and (m, k)
        Support points. 2-D inputs hold ``k`` problems, one per column (the same
        number of columns on both sides).
    u_weights, v_weights : array_like, shape (n,) and (m,), optional
        Non-negative weights with a positive sum (normalized here), shared by all
        columns. Default uniform.
    p : float, default 1
        Order of the distance, ``p >= 1``.

    Returns
    -------
    distance : float or ndarray, shape (k,)
        :math:`W_p`, a scalar of the input dtype for 1-D input, an array for 2-D input.

    Notes
    -----
    With the quantile functions :math:`F^{-1}, G^{-1}`,

    .. math:: W_p^p(\mu, \nu) = \int_0^1 |F^{-1}(t) - G^{-1}(t)|^p \, dt,

    computed exactly by sorting both supports and merging their cumulative weights,
    :math:`O((n + m) \log(n + m))`. Equal sizes with uniform weights reduce to sorting
    and pairing. For ``p = 1`` this equals :func:`scipy.stats.wasserstein_distance`;
    POT's ``ot.wasserstein_1d`` returns :math:`W_p^p` (no root).

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
    """
    u = _as_float_array(u_values, "u_values")
    v = _as_float_array(v_values, "v_values")
    if u.ndim not in (1, 2):
        raise ValueError(f"`u_values` must be 1-D or 2-D; got shape {u.shape}.")
    if v.ndim != u.ndim:
        raise ValueError(
            f"`u_values` and `v_values` must have the same number of dimensions; got "
            f"shapes {u.shape} and {v.shape}."
        )
    if u.ndim == 2 and u.shape[1] != v.shape[1]:
        raise ValueError(
            f"`u_values` and `v_values` must have the same number of columns; got "
            f"shapes {u.shape} and {v.shape}."
        )
    for arr, name in ((u, "u_values"), (v, "v_values")):
        if arr.shape[0] == 0:
            raise ValueError(f"`{name}` must not be empty.")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` must be finite; got NaN or inf.")
    p = _check_p(p)
    uw = None if u_weights is None else _as_float_array(u_weights, "u_weights", ndim=1)
    vw = None if v_weights is None else _as_float_array(v_weights, "v_weights", ndim=1)
    dtype = _result_dtype(u, v, uw, vw)
    a = None if uw is None else _normalize(_check_weights(uw, u.shape[0], "u_weights", dtype))
    b = None if vw is None else _normalize(_check_weights(vw, v.shape[0], "v_weights", dtype))
    a, b = _uniform_or_none(a), _uniform_or_none(b)
    if u.ndim == 1:
        U = u.astype(dtype, copy=False)[None, :]
        V = v.astype(dtype, copy=False)[None, :]
    else:
        U = np.ascontiguousarray(u.T, dtype=dtype)
        V = np.ascontiguousarray(v.T, dtype=dtype)
    wpp = _wpp_rows(U, V, a, b, p)
    dist = np.maximum(wpp, 0.0) ** (1.0 / p)
    if u.ndim == 1:
        return dtype.type(dist[0])
    return dist.astype(dtype)
