"""Sinkhorn divergence between point clouds, with a symmetric solver for ``W_eps(a, a)``."""

import warnings
from typing import NamedTuple

import numpy as np

from ._costs import cost_matrix
from ._kernels import lazy
from ._result import OTConvergenceWarning
from ._sinkhorn import _METHODS, _finish, _prepare, sinkhorn
from ._validation import (
    _as_float_array,
    _check_int,
    _check_method,
    _check_point_pair,
    _check_positive,
    _check_tol,
    _check_weights,
    _result_dtype,
)

__all__ = ["sinkhorn_divergence"]

_ks = lazy("_symmetric")


def _solve_symmetric(a, cost, reg, *, tol, maxiter):
    """``W_eps(a, a)`` for a symmetric ``cost`` by the averaged symmetric update.

    Returns an :class:`OTResult` with the fields of :func:`ottools.sinkhorn` (``f`` equal
    to ``g``, ``method="symmetric"``); ``fun`` is ``<P, C> + reg KL(P || a x a)``.
    Validation and the result are shared with ``sinkhorn`` (``_prepare``/``_finish``).
    """
    prob = _prepare(a, a, cost, reg, tol, maxiter, None, None)
    dt = prob.dtype.type
    f = prob.f0.copy()
    nit, status, _ = _ks.sinkhorn_symmetric(prob.ac, prob.loga, prob.costc, dt(prob.reg), f,
                                            dt(prob.tol), prob.maxiter, True)
    return _finish(prob, f, f.copy(), nit, status, "symmetric", {})


def _symmetrized(cost):
    """``(C + C^T) / 2`` if ``C`` is square and symmetric up to 16 ulps of ``max|C|``
    (e.g. a callable using ``|x|^2 + |y|^2 - 2 x.y``), else None."""
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        return None
    if np.array_equal(cost, cost.T):
        return cost
    atol = 16 * np.finfo(cost.dtype).eps * float(np.max(np.abs(cost)))
    if np.all(np.abs(cost - cost.T) <= atol):
        return np.ascontiguousarray(0.5 * (cost + cost.T))
    return None


def _self_transport(w, cost, reg, *, tol, maxiter, method):
    """``W_eps(w, w)``: the symmetric update when ``cost`` is symmetric, else ``sinkhorn``."""
    sym = _symmetrized(cost)
    if sym is not None:
        return _solve_symmetric(w, sym, reg, tol=tol, maxiter=maxiter)
    return sinkhorn(w, w, cost, reg, method=method, tol=tol, maxiter=maxiter)


class _DivergenceParts(NamedTuple):
    """The three entropic problems of a Sinkhorn divergence.

    ``value = xy.fun - (xx.fun + yy.fun) / 2``; each part is an :class:`OTResult` with
    ``plan``, ``f``, ``g`` (potentials in cost units), ``fun``, ``cost``, ``success``.
    ``cost_xy``, ``cost_xx``, ``cost_yy`` are the cost matrices from ``metric`` (before
    the rounding-level symmetrization of :func:`_symmetrized`).

    Envelope theorem (no re-solve): ``dS/dC_xy = xy.plan``, ``dS/dC_xx = -xx.plan / 2``,
    ``dS/dC_yy = -yy.plan / 2``; ``dS/da = xy.f - xx.f`` and ``dS/db = xy.g - yy.f``
    (centred potentials; defined up to a constant on the simplex).
    """

    value: float
    xy: "OTResult"
    xx: "OTResult"
    yy: "OTResult"
    cost_xy: np.ndarray
    cost_xx: np.ndarray
    cost_yy: np.ndarray


def _sinkhorn_divergence_parts(x, y, a=None, b=None, *, reg, metric="sqeuclidean",
                               method="auto", tol=None, maxiter=10_000):
    """Validate, build the three cost matrices, solve, and return :class:`_DivergenceParts`.

    No warning is emitted: callers check ``parts.xy.success`` etc. This is the entry
    point of the differentiable layer (gradients by the envelope theorem from the plans
    and potentials, without re-solving).
    """
    x, y = _check_point_pair(x, y)
    a_arr = None if a is None else _as_float_array(a, "a", ndim=1)
    b_arr = None if b is None else _as_float_array(b, "b", ndim=1)
    reg = _check_positive(reg, "reg")
    maxiter = _check_int(maxiter, "maxiter", minimum=0)
    method = _check_method(method, ("auto",) + tuple(_METHODS))
    cxy = cost_matrix(x, y, metric)
    cxx = cost_matrix(x, x, metric)
    cyy = cost_matrix(y, y, metric)
    dtype = _result_dtype(cxy, a_arr, b_arr)
    tol = _check_tol(tol, dtype)
    a = _check_weights(a_arr, x.shape[0], "a", dtype)
    b = _check_weights(b_arr, y.shape[0], "b", dtype)
    if a.shape == b.shape and np.array_equal(a, b):
        # Equal weights and a symmetric cost (e.g. y is x): a self-transport problem too.
        xy = _self_transport(a, cxy, reg, tol=tol, maxiter=maxiter, method=method)
    else:
        xy = sinkhorn(a, b, cxy, reg, method=method, tol=tol, maxiter=maxiter)
    xx = _self_transport(a, cxx, reg, tol=tol, maxiter=maxiter, method=method)
    yy = _self_transport(b, cyy, reg, tol=tol, maxiter=maxiter, method=method)
    value = xy.fun - 0.5 * (xx.fun + yy.fun)
    return _DivergenceParts(float(value), xy, xx, yy, cxy, cxx, cyy)


def _warn_unconverged(parts, stacklevel):
    """One :class:`OTConvergenceWarning` listing the parts that did not converge."""
    bad = [f"W(x, y): {parts.xy.message}" if not parts.xy.success else None,
           f"W(x, x): {parts.xx.message}" if not parts.xx.success else None,
           f"W(y, y): {parts.yy.message}" if not parts.yy.success else None]
    bad = [s for s in bad if s]
    if bad:
        warnings.warn("sinkhorn_divergence: not converged; the value is inaccurate. "
                      + " | ".join(bad), OTConvergenceWarning, stacklevel=stacklevel + 1)


def sinkhorn_divergence(x, y, a=None, b=None, *, reg, metric="sqeuclidean", method="auto",
                        tol=None, maxiter=10_000):
    r"""Debiased Sinkhorn divergence between two weighted point clouds.

    .. math::

        S_\varepsilon(\alpha, \beta) = W_\varepsilon(\alpha, \beta)
        - \tfrac12 W_\varepsilon(\alpha, \alpha) - \tfrac12 W_\varepsilon(\beta, \beta),

    with :math:`\alpha = \sum_i a_i \delta_{x_i}`, :math:`\beta = \sum_j b_j \delta_{y_j}`
    and :math:`W_\varepsilon` the entropic cost
    :math:`\min_{P \in U(a, b)} \langle P, C \rangle + \varepsilon\,\mathrm{KL}(P \| a \otimes b)`,
    i.e. ``ottools.sinkhorn(...).fun``.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Source samples (1-D input is read as ``n`` points in 1-D).
    y : array_like, shape (m, d)
        Target samples, same ``d``.
    a, b : array_like, shape (n,) and (m,), optional
        Weights (``None``: uniform). Same total mass (relative tolerance 1e-6).
    reg : float
        Entropic regularization :math:`\varepsilon > 0`, in cost units. Required.
    metric : str or callable, default "sqeuclidean"
        Ground cost, any name accepted by :func:`ottools.cost_matrix`, or a callable
        ``metric(x, y) -> (n, m) array``.
    method : str, default "auto"
        Sinkhorn method of the cross problem :math:`W_\varepsilon(\alpha, \beta)` (see
        :func:`ottools.sinkhorn`). The symmetric problems always use the log-domain
        symmetric update (see Notes).
    tol : float, optional
        Marginal error ``||P 1 - a||_1 + ||P^T 1 - b||_1`` at which each of the three
        solves stops. Default 1e-9 (float64) or 1e-4 (float32).
    maxiter : int, default 10000
        Iteration cap of each solve.

    Returns
    -------
    value : numpy float scalar
        :math:`S_\varepsilon(\alpha, \beta)` in the input dtype (``np.float64``, a
        ``float``, or ``np.float32``), as the sliced distances. Non-negative up to the
        solver tolerance (Feydy et al. [1]_); not clamped at 0.

    Warns
    -----
    OTConvergenceWarning
        If any of the three solves does not reach ``tol`` within ``maxiter`` (a float
        cannot carry a status); the message names the failing problem(s).

    Notes
    -----
    *Convention.* ``W_eps`` is ``<P, C> + eps KL(P || a x b)``, the value of
    :func:`ottools.sinkhorn` (``res.fun``) and the dual objective. OTT-JAX's
    ``<P, C> - eps H(P)`` (H the Shannon entropy) differs from it by
    ``eps (H(a) + H(b))`` for normalized weights, a term that cancels in
    :math:`S_\varepsilon`: both conventions give the same divergence.
    POT's ``ot.bregman.empirical_sinkhorn_divergence`` instead combines the *linear*
    costs ``L = <P_eps, C>`` of the three entropic plans (and clamps at 0); the two
    are related by

    ``S_ottools = S_POT + eps (KL(P_xy) - KL(P_xx) / 2 - KL(P_yy) / 2)``,

    with ``KL(P) = KL(P || a x b)`` of each optimal plan. POT's value is not a
    debiased entropic cost and can be negative before its clamp; ottools' value is
    the quantity of [1]_ (positive, zero iff the measures are equal, convex in each
    argument).

    *Symmetric problems.* For :math:`W_\varepsilon(\alpha, \alpha)` the potentials
    coincide, ``f = g``, and solve ``f = T(f)`` with the soft-min
    ``T(f)_i = -eps log sum_j a_j exp((f_j - C_ij) / eps)``. The averaged update
    ``f <- (f + T(f)) / 2`` (GeomLoss [1]_) converges with one log-sum-exp sweep per
    iteration, half the work of a Sinkhorn iteration. It requires a symmetric cost
    matrix: every named metric gives one; a callable's matrix that is symmetric up to
    16 ulps of its largest entry is symmetrized, ``(C + C^T) / 2``; otherwise plain
    Sinkhorn is used. When ``a == b`` and ``cost_matrix(x, y)`` is symmetric (for
    instance ``y`` is ``x``), the cross problem is solved the same way, so that
    ``sinkhorn_divergence(x, x, reg=reg)`` is 0 up to rounding.

    References
    ----------
    .. [1] J. Feydy, T. Séjourné, F.-X. Vialard, S. Amari, A. Trouvé, G. Peyré,
       "Interpolating between Optimal Transport and MMD using Sinkhorn Divergences",
       AISTATS 2019.
    .. [2] A. Genevay, G. Peyré, M. Cuturi, "Learning Generative Models with Sinkhorn
       Divergences", AISTATS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> x = np.array([[0.0], [1.0], [2.0]])
    >>> bool(abs(ottools.sinkhorn_divergence(x, x, reg=1.0)) < 1e-8)
    True

    For the squared Euclidean cost a translation by ``t`` has divergence ``|t|^2``
    for every ``reg``:

    >>> round(float(ottools.sinkhorn_divergence(x, x + 0.5, reg=1.0)), 6)
    0.25
    """
    parts = _sinkhorn_divergence_parts(x, y, a, b, reg=reg, metric=metric, method=method,
                                       tol=tol, maxiter=maxiter)
    _warn_unconverged(parts, stacklevel=2)
    return parts.xy.plan.dtype.type(parts.value)
