"""Ground-cost matrices between point clouds."""

import numpy as np

from ._validation import _check_point_pair, _check_positive, _result_dtype

__all__ = ["cost_matrix"]

_CDIST_METRICS = ("euclidean", "cityblock", "chebyshev", "cosine", "correlation")


def cost_matrix(x, y, metric="sqeuclidean", *, p=2):
    """Pairwise ground costs ``C_ij = c(x_i, y_j)``.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Source points (a 1-D array is read as ``n`` points in 1-D).
    y : array_like, shape (m, d)
        Target points, same ``d``.
    metric : str or callable, default "sqeuclidean"
        ``"sqeuclidean"`` (``|x - y|^2``), ``"euclidean"``, ``"cityblock"``
        (alias ``"l1"``), ``"chebyshev"``, ``"cosine"``, ``"correlation"``
        (all through :func:`scipy.spatial.distance.cdist`), or ``"minkowski"``,
        the ``p``-th power of the Minkowski distance, ``sum_k |x_k - y_k|^p``
        (the cost of the Wasserstein-``p`` distance). A callable
        ``metric(x, y)`` must return the ``(n, m)`` matrix.
    p : float, default 2
        Exponent of ``"minkowski"``; must be >= 1.

    Returns
    -------
    cost : ndarray, shape (n, m)
        float32 if both inputs are float32, else float64.

    Examples
    --------
    >>> import numpy as np
    >>> from ottools import cost_matrix
    >>> cost_matrix(np.array([[0.0], [1.0]]), np.array([[0.0], [3.0]]))
    array([[0., 9.],
           [1., 4.]])
    """
    x, y = _check_point_pair(x, y)
    from scipy.spatial.distance import cdist  # lazy: keeps `import ottools` cheap

    dtype = _result_dtype(x, y)
    pp = _check_positive(p, "p")  # checked for every metric: a typo is never silent
    if pp < 1:
        raise ValueError(f"`p` must be >= 1; got {pp}.")
    if callable(metric):
        out = np.asarray(metric(x, y))
        if out.shape != (x.shape[0], y.shape[0]):
            raise ValueError(
                f"`metric` returned shape {out.shape}; expected {(x.shape[0], y.shape[0])}."
            )
        return np.ascontiguousarray(out, dtype=np.result_type(out.dtype, dtype))
    if not isinstance(metric, str):
        raise TypeError(f"`metric` must be a string or a callable; got {type(metric).__name__}.")
    name = metric.lower()
    if name == "l1":
        name = "cityblock"
    if name == "sqeuclidean":
        xx = x.astype(np.float64, copy=False)
        yy = y.astype(np.float64, copy=False)
        out = cdist(xx, yy, "sqeuclidean")
    elif name == "minkowski":
        xx = x.astype(np.float64, copy=False)
        yy = y.astype(np.float64, copy=False)
        out = cdist(xx, yy, "minkowski", p=pp) ** pp
    elif name in _CDIST_METRICS:
        out = cdist(x.astype(np.float64), y.astype(np.float64), name)
    else:
        valid = ("sqeuclidean", "minkowski", "l1") + _CDIST_METRICS
        raise ValueError(f"Unknown metric {metric!r}; valid: {', '.join(map(repr, valid))}.")
    return np.ascontiguousarray(out, dtype=dtype)
