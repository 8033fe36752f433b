"""Monge gap of a map given by samples: how far ``x -> T(x)`` is from optimal transport."""

import math

import numpy as np

from ._costs import metric_p, named_cost_matrix
from ._geometry import point_cloud, use_online
from ._onedim import normalize_weights
from ._problem import LinearProblem, Settings
from ._result import CONVERGED, make_result
from ._sinkhorn import method_options, solve
from ._validation import (_check_bool, _check_points, _check_positive, _check_samples,
                          _check_weights, _reject_tensor)

__all__ = ["monge_gap"]

# reg="auto": this fraction of the standard deviation of the cost matrix (OTT-JAX default).
_AUTO_REG_FRACTION = 0.05
# Relative spread under which weights count as uniform for the exact (assignment) gap.
_UNIFORM_RTOL = 1e-9


def _plan_negentropy(res, a, reg):
    """``sum_ij P_ij log P_ij`` of the entropic plan of ``res`` (dense or an operator)."""
    if isinstance(res.plan, np.ndarray):
        from scipy.special import xlogy

        plan = res.plan.astype(np.float64, copy=False)
        return float(xlogy(plan, plan).sum())
    # sum P log P = KL(P | a x a) + sum P log(a_i a_j) + sum(P) - sum(a)^2, with
    # KL = (fun - cost) / reg and the marginals from two passes of the operator.
    n = a.shape[0]
    rows, cols = res.plan @ np.ones(n), res.plan.T @ np.ones(n)
    with np.errstate(divide="ignore"):
        loga = np.where(a > 0, np.log(a.astype(np.float64)), 0.0)
    ma = float(a.sum(dtype=np.float64))
    return float((res.fun - res.cost) / reg + rows @ loga + cols @ loga + rows.sum() - ma * ma)


def _check_reg(reg, cost_std, n=2):
    """``reg`` as a float >= 0; ``"auto"`` -> 0.05 * std(cost) (``cost_std()``); with one
    point (``n == 1``: the gap is 0 at every reg), 1."""
    _reject_tensor(reg, "reg")
    if isinstance(reg, str):
        if reg.lower() != "auto":
            raise ValueError(f"`reg` must be a non-negative number or 'auto'; got {reg!r}.")
        if n == 1:  # (the costs' spread is 0: the error below misled)
            return 1.0
        val = _AUTO_REG_FRACTION * float(cost_std())
        if not math.isfinite(val):
            raise ValueError(f"reg='auto': the standard deviation of the costs c(x_i, tx_j) "
                             f"is not finite ({val / _AUTO_REG_FRACTION}): the points `x` "
                             f"and `tx` are too large for this metric; rescale them or pass "
                             f"`reg` explicitly.")
        if not val > 0:
            raise ValueError("reg='auto' gives 0: every cost c(x_i, tx_j) is the same (are "
                             "the points `x` and `tx` all equal?); pass `reg` explicitly.")
        return val
    return _check_positive(reg, "reg", allow_zero=True)


def _dense_std(cost):
    """``std(cost)`` in float64, computed on ``cost / max|cost|`` (a power of two) so that
    no square overflows: costs near 1e160 have a finite standard deviation."""
    top = float(np.max(np.abs(cost)))
    if not (top > 0 and math.isfinite(top)):
        return 0.0 if top == 0 else math.nan
    e = math.frexp(top)[1]
    return math.ldexp(float(np.std(np.ldexp(cost.astype(np.float64), -e))), e)


def _weights(a, n, dtype):
    """The checked weights ``a`` normalized to sum 1 (uniform for None)."""
    w = _check_weights(a, n, "a", dtype)
    return w if a is None else normalize_weights(w)


def _assignment(a, cost):
    """Exact OT between ``a`` and itself as an ``OTResult``: an assignment problem for
    uniform weights (:func:`scipy.optimize.linear_sum_assignment`, the plan a permutation
    times the weight), else the network simplex of :func:`ottools.emd`."""
    mean = float(np.mean(a, dtype=np.float64))
    if np.max(np.abs(a - mean)) > _UNIFORM_RTOL * mean:
        from ._emd import emd

        return emd(a, a, cost)
    from scipy.optimize import linear_sum_assignment

    cost64 = cost.astype(np.float64, copy=False)
    rows, cols = linear_sum_assignment(cost64)
    value = mean * float(cost64[rows, cols].sum())
    plan = np.zeros(cost.shape, dtype=cost.dtype)
    plan[rows, cols] = mean
    return make_result(
        fun=value, cost=value, plan=plan, col_ind=cols, nit=0, err=0.0, success=True,
        status=CONVERGED, message="Optimal assignment (scipy.optimize.linear_sum_assignment).",
        method="assignment", reg=0.0,
    )


def monge_gap(x, tx, a=None, *, metric="sqeuclidean", p=None, reg="auto", method="auto",
              tol=None, maxiter=10_000, options=None, online=None):
    r"""Monge gap of a map from its samples: displacement cost minus optimal cost.

    .. math::

        \mathcal{M}(T) = \sum_i a_i\, c(x_i, T(x_i))
        - W_{c,\varepsilon}\Big(\sum_i a_i \delta_{x_i}, \sum_i a_i \delta_{T(x_i)}\Big),

    zero (for ``reg=0``) iff the pairing ``x_i -> T(x_i)`` is a ``c``-optimal
    transport between the two empirical measures (Uscidda & Cuturi [1]_).

    Parameters
    ----------
    x : array_like, shape (n, d)
        Reference samples (1-D input is read as ``n`` points in 1-D).
    tx : array_like, shape (n, d)
        Their images ``T(x_i)``, row by row; same shape as ``x``.
    a : array_like, shape (n,), optional
        Weights of the samples (``None``: uniform), used on both sides; normalized here
        to sum 1 (counts work: the gap is defined between probability measures, and its
        entropic term is not proportional to the mass).
    metric : str or callable, default "sqeuclidean"
        Ground cost ``c``: any name accepted by :func:`ottools.cost_matrix`, or a callable
        ``metric(x, y) -> (n, m) array``.
    p : float, optional
        Exponent of the ground costs ``"minkowski"`` and ``"minkowski_p"`` (``p >= 1``;
        default 2), as :func:`ottools.cost_matrix`'s ``p``, dense or online. Refused
        (``TypeError``) with any other ``metric``, a callable included.
    reg : float or "auto", default "auto"
        Entropic regularization :math:`\varepsilon \ge 0` in cost units. ``"auto"``:
        ``0.05 * std(C)`` with ``C = cost_matrix(x, tx, metric, p=p)`` (OTT-JAX's
        default). ``0``:
        the exact gap: for uniform weights an assignment problem solved by
        :func:`scipy.optimize.linear_sum_assignment`, for other weights exact OT by
        :func:`ottools.emd` (network simplex).
    method : str, default "auto"
        Sinkhorn method for ``reg > 0`` (see :func:`ottools.sinkhorn`; ``"auto"``
        converges at every ``reg``). With ``reg=0`` only ``"auto"`` is accepted.
    tol : float, optional
        Sinkhorn tolerance on the relative marginal error (see :func:`ottools.sinkhorn`).
        Default 1e-9 (float64) or 1e-4 (float32).
    maxiter : int, default 10000
        Sinkhorn iteration cap.
    options : dict, optional
        Options of ``method`` (see :func:`ottools.sinkhorn`).
    online : bool, optional
        Entropic gap on a :class:`ottools.PointCloud` cost computed on the fly (O(n d)
        memory). Default (None): when the dense arrays (``3 n^2`` numbers) would exceed
        2 GiB and ``metric`` has an online kernel, as in
        :func:`ottools.sinkhorn_divergence`.

    Returns
    -------
    res : OTResult
        ``fun`` : float, the Monge gap ``displacement - ot_cost``.
        ``displacement`` : float, ``sum_i a_i c(x_i, T(x_i))``.
        ``ot_cost`` : float, the optimal cost: for ``reg > 0``
        ``<P, C> - reg H(P)`` with ``H(P) = -sum_ij P_ij log P_ij`` and ``P`` the entropic
        plan (OTT-JAX's ``ent_reg_cost``); for ``reg = 0`` the exact optimal cost.
        ``reg`` : float, the regularization used (resolved from ``"auto"``).
        ``ot_result`` : OTResult, the inner solve: :func:`ottools.sinkhorn`'s result for
        ``reg > 0`` (``plan``, ``f``, ``g``, ...); for ``reg = 0`` and uniform weights a
        result with ``plan`` (a permutation matrix times the weight), ``col_ind`` (the
        assignment ``x_i -> T(x_{col_ind[i]})``), ``fun = cost``,
        ``method="assignment"``; for other weights :func:`ottools.emd`'s result (a
        sparse ``plan``, ``f``, ``g``).
        ``nit``, ``err``, ``success``, ``status``, ``message``, ``method``: those of
        ``ot_result``. ``status``: 0 converged; 1 ``maxiter`` reached; 2 non-finite
        values (see :func:`ottools.sinkhorn`).

    Notes
    -----
    *Entropic convention and bias.* For ``reg > 0`` the optimal cost is
    ``<P, C> - reg H(P)`` (OTT-JAX's convention), not ottools' Sinkhorn objective
    ``<P, C> + reg KL(P || a x a)`` (``ot_result.fun``); for weights summing to 1 they
    differ by ``2 reg H(a)``: ``ot_cost = ot_result.fun - 2 reg H(a)`` at convergence.
    The entropic gap is biased upwards: with ``n`` uniform weights the permutation plan
    has entropy ``log n``, so for every map

    ``reg log n <= gap_reg - gap_0 <= 2 reg log n``,

    and for an optimal map (``gap_0 = 0``) the entropic gap is at least
    ``reg log n``, not 0. It tends to the exact gap as ``reg -> 0``.

    *Oracles.* For the squared Euclidean cost, gradients of convex functions are
    optimal (Brenier): ``x -> A x + t`` with ``A`` symmetric positive definite has exact
    gap 0; a rotation by a large angle of an anisotropic cloud has a positive gap.

    References
    ----------
    .. [1] T. Uscidda, M. Cuturi, "The Monge Gap: A Regularizer to Learn All Transport
       Maps", ICML 2023.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> res = ottools.monge_gap(x, 2.0 * x + 1.0, reg=0)
    >>> res.fun
    0.0
    >>> res = ottools.monge_gap(x, x[:, ::-1], reg=0)    # swap the coordinates
    >>> round(res.fun, 6), round(res.displacement, 6), round(res.ot_cost, 6)
    (2.666667, 3.333333, 0.666667)
    >>> res = ottools.monge_gap(x, 0.5 * x + 1.0, reg=1.0)  # entropic: biased
    >>> res.success, bool(res.fun >= 1.0 * np.log(3))
    (True, True)
    """
    p = metric_p(metric, p)
    if _check_points(x, "x").shape != _check_points(tx, "tx").shape:
        raise ValueError(f"`x` and `tx` must have the same shape; got "
                         f"{np.shape(x)} and {np.shape(tx)}.")
    x, tx, a, _, dtype = _check_samples(x, tx, a, None, names=("x", "tx", "a", "b"))
    n = x.shape[0]
    a = _weights(a, n, dtype)
    if online is not None:
        online = _check_bool(online, "online")
    if not isinstance(reg, str):  # a NumPy 0 (np.int64, np.float32) is the exact gap too
        _reject_tensor(reg, "reg")
        reg = _check_positive(reg, "reg", allow_zero=True)
    online = reg != 0 and use_online(n, n, dtype, metric, online)
    if online:
        cost = point_cloud(x, tx, metric, names=("x", "tx"), p=p)
        reg = _check_reg(reg, cost.cost_std, n)
        diag = cost.diagonal()
    else:
        cost = np.ascontiguousarray(
            named_cost_matrix(x, tx, metric, p=p, names=("x", "tx")), dtype=dtype)
        reg = _check_reg(reg, lambda: _dense_std(cost), n)
        diag = np.diagonal(cost)
    if reg == 0:
        if not (isinstance(method, str) and method.lower() == "auto"):
            raise ValueError(
                f"`method` must be 'auto' with reg=0 (the exact gap uses "
                f"scipy.optimize.linear_sum_assignment); got {method!r}."
            )
        # checked even when unused (an unknown option was silently accepted)
        Settings.from_args(tol, maxiter, None, dtype, method_options(method, options)[1])
        inner = _assignment(a, cost)
        ot_cost = inner.fun
    else:
        name, opts = method_options(method, options)
        settings = Settings.from_args(tol, maxiter, None, dtype, opts)
        inner = solve(LinearProblem(a, a, cost, dtype), reg, settings, name)
        ot_cost = inner.cost + reg * _plan_negentropy(inner, a, reg)
    a64 = a.astype(np.float64)
    displacement = float(a64 @ diag.astype(np.float64))
    return make_result(
        fun=displacement - ot_cost,
        displacement=displacement,
        ot_cost=float(ot_cost),
        reg=float(reg),
        ot_result=inner,
        nit=inner.nit,
        err=inner.err,
        success=inner.success,
        status=inner.status,
        message=inner.message,
        method=inner.method,
    )


def monge_gap_value_and_grad(x, tx, a=None, *, need=(True, True), **kwargs):
    """The differentiable layer's entry point (NumPy in and out): the result of
    :func:`monge_gap` and the gradients of its value with respect to ``x`` and ``tx``
    (those flagged in ``need``): by the envelope theorem, those of
    ``<diag(a) - P, C(x, tx)>`` with ``P`` the optimal plan (entropic or exact), through
    :func:`ottools._costs.cost_vjp` (named metrics only)."""
    import scipy.sparse

    from ._divergence import cost_vjp

    res = monge_gap(x, tx, a, **kwargs)
    if not any(need):
        return res, (None, None)
    metric = kwargs.get("metric", "sqeuclidean")
    p = metric_p(metric, kwargs.get("p"))
    x, tx, a, _, dtype = _check_samples(x, tx, a, None, names=("x", "tx", "a", "b"))
    a = _weights(a, x.shape[0], dtype)
    gdx, gdt = cost_vjp(scipy.sparse.diags_array(a.astype(np.float64)).tocsr(), x, tx,
                        metric, p)
    gpx, gpt = cost_vjp(res.ot_result.plan, x, tx, metric, p)
    return res, ((gdx - gpx).astype(dtype) if need[0] else None,
                 (gdt - gpt).astype(dtype) if need[1] else None)
