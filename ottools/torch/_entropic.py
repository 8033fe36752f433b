"""Differentiable entropic OT: ``sinkhorn``, ``sinkhorn_loss`` and ``monge_gap``.

Each function converts its tensors once, calls the core's NumPy entry point (the same
solver as the NumPy API) and returns the value through :class:`._convert.Envelope`, whose
backward multiplies the gradients computed in the forward pass (envelope theorem).
A callable ``metric`` is differentiated by torch through the cost it returns: the loss is
then built from :func:`sinkhorn` on those costs (d value / d cost = the plan).
"""

import os

import numpy as np
import torch

from .._costs import cost_matrix
from .._divergence import divergence_value_and_grad
from .._monge_gap import monge_gap_value_and_grad
from .._sinkhorn import sinkhorn as np_sinkhorn
from ._convert import (apply, as_tensor, check_ndim, dtypes, numpy, same_device, scalar,
                       warn_unconverged)

__all__ = ["monge_gap", "sinkhorn", "sinkhorn_loss"]


def _sinkhorn_grads(res, a, b):
    """Gradients of ``res.fun`` w.r.t. ``(a, b, cost)``: centred potentials (balanced) or
    the relaxed dual's derivative (``reg_m``), and the plan."""
    from .._divergence import weight_grad

    aa = np.full(res.plan.shape[0], 1.0 / res.plan.shape[0]) if a is None else a
    bb = np.full(res.plan.shape[1], 1.0 / res.plan.shape[1]) if b is None else b
    return weight_grad(res, aa, bb, 0), weight_grad(res, aa, bb, 1), res.plan


def sinkhorn(a, b, cost, reg, *, reg_m=None, method="auto", tol=None, maxiter=10_000,
             init=None, options=None):
    r"""Entropic OT cost as a differentiable tensor.

    The value is ``ottools.sinkhorn(a, b, cost, reg, ...).fun``,
    :math:`\min_P \langle P, C \rangle + \mathrm{reg}\,\mathrm{KL}(P \| a \otimes b)`
    (plus the marginal penalties with ``reg_m``), computed by the NumPy solver.

    Parameters
    ----------
    a : Tensor, shape (n,), or None
        Source weights (``None``: uniform). Differentiable.
    b : Tensor, shape (m,), or None
        Target weights. Differentiable.
    cost : Tensor, shape (n, m)
        Ground cost. Differentiable.
    reg : float
        Entropic regularization (not differentiable).
    reg_m, method, tol, maxiter, init, options
        As in :func:`ottools.sinkhorn` (``init`` may hold tensors; ``tol=None``: the
        per-dtype default).

    Returns
    -------
    value : Tensor, shape ()
        ``fun``, on the device and in the promoted dtype of the inputs.

    Warns
    -----
    OTConvergenceWarning
        If the solver stops without converging (its message is repeated).

    Notes
    -----
    Envelope theorem at the solution: ``d value / d cost = plan``; ``d value / d a`` is
    ``f`` centred (the value is defined for equal masses only, so the gradient is taken
    tangent to the simplex), or with ``reg_m`` the derivative of the relaxed dual,
    ``-reg_m (exp(-f / reg_m) - 1) - reg (P1 / a - sum(b))``; likewise for ``b``. Exact up
    to the solver's ``tol``; nothing is unrolled. A CUDA tensor makes a round trip through
    host memory.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import sinkhorn
    >>> cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64,
    ...                     requires_grad=True)
    >>> value = sinkhorn(None, None, cost, reg=0.1)
    >>> value.backward()
    >>> cost.grad.round(decimals=4)
    tensor([[0.5000, 0.0000],
            [0.0000, 0.5000]], dtype=torch.float64)
    """
    cost = as_tensor(cost, "cost")
    if cost is None:
        raise TypeError("`cost` must be a tensor; got None.")
    check_ndim(cost, "cost", (2,), "a 2-D tensor (n, m)")
    a = check_ndim(as_tensor(a, "a", cost), "a", (1,), "a 1-D tensor (n,)")
    b = check_ndim(as_tensor(b, "b", cost), "b", (1,), "a 1-D tensor (m,)")
    same_device((a, b, cost), ("a", "b", "cost"))
    dtype, np_dtype = dtypes(a, b, cost)
    if init is not None:
        if not (isinstance(init, (tuple, list)) and len(init) == 2):
            raise TypeError("`init` must be a pair (f, g) of potentials, or None.")
        init = tuple(numpy(as_tensor(p, "init"), np_dtype) for p in init)
    reg = scalar(reg, "reg")
    results = []

    def fn(a_t, b_t, c_t):
        an, bn = numpy(a_t, np_dtype), numpy(b_t, np_dtype)
        res = np_sinkhorn(an, bn, numpy(c_t, np_dtype), reg, reg_m=reg_m, method=method,
                           tol=tol, maxiter=maxiter, init=init, options=options)
        results.append(res)
        ga, gb, gc = _sinkhorn_grads(res, an, bn)
        return res.fun, (ga if a_t is not None else None, gb if b_t is not None else None,
                         gc)

    value = apply(fn, a, b, cost).to(dtype)
    warn_unconverged("sinkhorn", results)
    return value


def _points(x, name, batch):
    """(n, d) points ((B, n, d) in a batch); 1-D input is n points in 1-D."""
    if x.ndim == 1:
        return x[:, None]
    check_ndim(x, name, (2, 3), "a tensor (n, d) or a batch (B, n, d)")
    if (x.ndim == 3) != batch:
        raise ValueError(f"`{name}` must be {'a batch (B, n, d)' if batch else '(n, d)'} "
                         f"like `x`; got shape {tuple(x.shape)}.")
    return x


def _torch_metric_loss(x, y, a, b, reg, metric, debias, kwargs):
    """A callable metric: torch differentiates the costs it returns; each entropic term is
    :func:`sinkhorn` on them."""
    def term(u, v, wu, wv):
        c = metric(u, v)
        if not isinstance(c, torch.Tensor) or tuple(c.shape) != (u.shape[0], v.shape[0]):
            raise ValueError(f"`metric` must return a tensor of shape "
                             f"{(u.shape[0], v.shape[0])}.")
        return sinkhorn(wu, wv, c, reg, **kwargs)

    value = term(x, y, a, b)
    if debias:
        value = value - 0.5 * (term(x, x, a, a) + term(y, y, b, b))
    return value


def sinkhorn_loss(x, y, a=None, b=None, *, reg, reg_m=None, metric="sqeuclidean",
                  debias=True, method="auto", tol=None, maxiter=10_000, options=None,
                  online=None):
    r"""Entropic OT cost or Sinkhorn divergence between point clouds, differentiable.

    With ``debias=True`` (default) the value of :func:`ottools.sinkhorn_divergence`,

    .. math::

        S_\varepsilon(\alpha, \beta) = W_\varepsilon(\alpha, \beta)
        - \tfrac12 W_\varepsilon(\alpha, \alpha) - \tfrac12 W_\varepsilon(\beta, \beta)

    (unbalanced with ``reg_m``, mass term included); with ``debias=False``,
    :math:`W_\varepsilon(\alpha, \beta)` alone, ``ottools.sinkhorn(a, b, C, reg).fun``.

    Parameters
    ----------
    x : Tensor, shape (n, d) or (B, n, d)
        Source points (1-D: n points in 1-D). A 3-D tensor is a batch of ``B`` pairs:
        the value is then a (B,) tensor, one loss per pair, with per-pair gradients.
        Differentiable.
    y : Tensor, shape (m, d) or (B, m, d)
        Target points. Differentiable.
    a, b : Tensor, shape (n,) and (m,) (or (B, n), (B, m)), or None
        Weights (``None``: uniform). Differentiable.
    reg : float
        Entropic regularization, in the units of the cost.
    reg_m : float or pair, optional
        Unbalanced OT (see :func:`ottools.sinkhorn`). GeomLoss's
        ``SamplesLoss("sinkhorn", p=2, blur=b, reach=r)`` is ``reg=b**2``,
        ``reg_m=r**2`` on the points divided by ``sqrt(2)``.
    metric : str or callable, default "sqeuclidean"
        A name accepted by :func:`ottools.cost_matrix`, or a callable ``metric(x, y)``
        taking torch tensors and returning the (n, m) cost tensor (differentiated by
        torch through the costs).
    debias : bool, default True
        Subtract the two symmetric terms (Sinkhorn divergence).
    method, tol, maxiter, options, online
        As in :func:`ottools.sinkhorn_divergence` (``tol=None``: the per-dtype default).

    Returns
    -------
    value : Tensor, shape () (or (B,) for a batch)
        On the device of ``x``, in the promoted dtype of the inputs.

    Warns
    -----
    OTConvergenceWarning
        If one of the solves stops without converging.

    Notes
    -----
    The forward pass solves the (three) problems once, in the inputs' dtype (float32 end
    to end for float32 tensors), and computes the gradients there: with ``P`` the optimal
    plan, :math:`\partial W / \partial x_i = \sum_j P_{ij} \nabla_x c(x_i, y_j)` (squared
    Euclidean: :math:`2 \sum_j P_{ij} (x_i - y_j)`, two matrix products; other named
    metrics in row blocks), :math:`\partial W / \partial a` the (centred) potential; the
    symmetric terms contribute through both of their arguments. The backward pass
    multiplies them by the incoming gradient. Batches are solved pair by pair on a
    thread pool (the kernels release the GIL).

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import sinkhorn_loss
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64,
    ...                  requires_grad=True)
    >>> y = x.detach() + torch.tensor([0.5, 0.0], dtype=torch.float64)
    >>> loss = sinkhorn_loss(x, y, reg=0.2)
    >>> loss.backward()
    >>> round(loss.item(), 4), x.grad[:, 0].round(decimals=4).tolist()
    (0.25, [-0.5, -0.5])
    """
    x = as_tensor(x, "x")
    y = as_tensor(y, "y", x)
    if x is None or y is None:
        raise TypeError("`x` and `y` must be tensors; got None.")
    batch = x.ndim == 3
    x, y = _points(x, "x", batch), _points(y, "y", batch)
    wdims = (2,) if batch else (1,)
    a = check_ndim(as_tensor(a, "a", x), "a", wdims, "weights of shape x.shape[:-1]")
    b = check_ndim(as_tensor(b, "b", x), "b", wdims, "weights of shape y.shape[:-1]")
    same_device((x, y, a, b), ("x", "y", "a", "b"))
    if not (isinstance(metric, str) or callable(metric)):
        raise TypeError(f"`metric` must be a string or a callable; got "
                        f"{type(metric).__name__}.")
    if not isinstance(debias, (bool, np.bool_)):
        raise TypeError(f"`debias` must be True or False; got {type(debias).__name__} "
                        f"{debias!r}.")
    reg = scalar(reg, "reg")
    kwargs = dict(reg_m=reg_m, method=method, tol=tol, maxiter=maxiter, options=options)
    if callable(metric):
        if batch:
            raise ValueError("A callable `metric` with a batch: loop over the pairs.")
        return _torch_metric_loss(x, y, a, b, reg, metric, debias, kwargs)
    cost_matrix(np.zeros((1, 1)), np.zeros((1, 1)), metric)  # validates the name early
    dtype, np_dtype = dtypes(x, y, a, b)
    results = []

    def one(xn, yn, an, bn, need):
        value, res, grads = divergence_value_and_grad(
            xn, yn, an, bn, reg=reg, metric=metric, debias=debias, need=need,
            online=online, **kwargs)
        results.extend(res)
        return value, grads

    def fn(x_t, y_t, a_t, b_t):
        need = (x_t.requires_grad, y_t.requires_grad, a_t is not None and a_t.requires_grad,
                b_t is not None and b_t.requires_grad)
        xn, yn = numpy(x_t, np_dtype), numpy(y_t, np_dtype)
        an, bn = numpy(a_t, np_dtype), numpy(b_t, np_dtype)
        if not batch:
            return one(xn, yn, an, bn, need)
        from concurrent.futures import ThreadPoolExecutor

        B = xn.shape[0]
        pick = (lambda w, k: None if w is None else w[k])
        with ThreadPoolExecutor(max_workers=min(B, os.cpu_count() or 1)) as pool:
            outs = list(pool.map(lambda k: one(xn[k], yn[k], pick(an, k), pick(bn, k),
                                               need), range(B)))
        values = np.array([o[0] for o in outs])
        grads = tuple(None if outs[0][1][i] is None else np.stack([o[1][i] for o in outs])
                      for i in range(4))
        return values, grads

    value = apply(fn, x, y, a, b).to(dtype)
    warn_unconverged("sinkhorn_loss", results)
    return value


def monge_gap(x, tx, a=None, *, metric="sqeuclidean", reg="auto", method="auto", tol=None,
              maxiter=10_000, options=None, online=None):
    r"""Monge gap of a map from its samples, differentiable in ``tx`` and ``x``.

    The value is ``ottools.monge_gap(x, tx, a, ...).fun`` (same parameters and
    conventions: entropic :math:`\langle P, C\rangle - \mathrm{reg}\, H(P)` for
    ``reg > 0``, exact assignment for ``reg = 0``):

    .. math:: \sum_i a_i c(x_i, T(x_i)) - W_{c,\varepsilon}\Big(\sum_i a_i \delta_{x_i},
              \sum_i a_i \delta_{T(x_i)}\Big).

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Reference samples. Differentiable.
    tx : Tensor, shape (n, d)
        Their images :math:`T(x_i)`, typically the output of a network. Differentiable.
    a : Tensor, shape (n,), or None
        Weights (``None``: uniform); not differentiable.
    metric : str, default "sqeuclidean"
        A name accepted by :func:`ottools.cost_matrix` that has a gradient formula
        (see :func:`ottools.sinkhorn_loss`).
    reg : float or "auto", default "auto"
        As in :func:`ottools.monge_gap` (``"auto"``: 0.05 times the standard deviation
        of the cost matrix, computed in the forward pass and then held constant).
    method, tol, maxiter, options, online
        As in :func:`ottools.monge_gap`.

    Returns
    -------
    value : Tensor, shape ()

    Warns
    -----
    OTConvergenceWarning
        If the inner Sinkhorn solve does not converge.

    Notes
    -----
    Envelope theorem: with :math:`P` the optimal plan of the inner problem and
    :math:`C_{ij} = c(x_i, T(x_j))`, the value's gradient is that of
    :math:`\langle \mathrm{diag}(a) - P, C\rangle`; for the squared Euclidean cost,
    :math:`\partial / \partial T(x_j) = 2 a_j (T(x_j) - x_j) - 2 \sum_i P_{ij}
    (T(x_j) - x_i)`. The regularization chosen by ``reg="auto"`` is not differentiated.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import monge_gap
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    >>> tx = x.flip(1).requires_grad_()
    >>> gap = monge_gap(x, tx, reg=0)
    >>> gap.backward()
    >>> round(gap.item(), 6), tx.grad.shape
    (2.666667, torch.Size([3, 2]))
    """
    x = as_tensor(x, "x")
    tx = as_tensor(tx, "tx", x)
    if x is None or tx is None:
        raise TypeError("`x` and `tx` must be tensors; got None.")
    x, tx = _points(x, "x", False), _points(tx, "tx", False)
    a = check_ndim(as_tensor(a, "a", x), "a", (1,), "a 1-D tensor (n,)")
    same_device((x, tx, a), ("x", "tx", "a"))
    if a is not None and a.requires_grad:
        raise NotImplementedError("monge_gap is not differentiable in `a` (the weights): "
                                  "pass a detached tensor.")
    if not isinstance(metric, str):
        raise TypeError(f"`metric` must be a metric name here; got "
                        f"{type(metric).__name__}.")
    dtype, np_dtype = dtypes(x, tx, a)
    if not isinstance(reg, str):
        reg = scalar(reg, "reg")
    results = []

    def fn(x_t, tx_t, a_t):
        res, grads = monge_gap_value_and_grad(
            numpy(x_t, np_dtype), numpy(tx_t, np_dtype), numpy(a_t, np_dtype),
            need=(x_t.requires_grad, tx_t.requires_grad), metric=metric, reg=reg,
            method=method, tol=tol, maxiter=maxiter, options=options, online=online)
        results.append(res)
        return res.fun, grads + (None,)

    value = apply(fn, x, tx, a).to(dtype)
    warn_unconverged("monge_gap", results)
    return value

