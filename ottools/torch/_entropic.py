"""Differentiable entropic OT: ``sinkhorn``, ``sinkhorn_loss`` and ``monge_gap``, each
a check of its tensors and the core's NumPy ``*_value_and_grad`` entry point through
:func:`._convert.apply`. A callable ``metric`` is differentiated by torch through the
costs it returns, each term then being :func:`sinkhorn` on them."""

import numpy as np
import torch

from .._costs import cost_matrix, metric_name, metric_p
from .._divergence import divergence_value_and_grad, sinkhorn_value_and_grad
from .._geometry import use_online
from .._monge_gap import monge_gap_value_and_grad
from .._validation import _check_bool, _check_reg_m
from ._convert import (apply, as_tensor, check_ndim, clouds, dtypes, eager, numpy,
                       same_device, scalar, scalar_or_pair)

__all__ = ["monge_gap", "sinkhorn", "sinkhorn_loss"]


@eager
def sinkhorn(a, b, cost, reg, *, reg_m=None, method="auto", tol=None, maxiter=10_000,
             init=None, options=None):
    r"""``ottools.sinkhorn(a, b, cost, reg, ...).fun`` as a tensor, differentiable in
    ``a``, ``b`` (None: uniform) and ``cost`` (n, m).

    The other parameters are those of :func:`ottools.sinkhorn` (``init`` may hold
    tensors). The value is on the inputs' device, in their promoted dtype. Gradients
    (envelope theorem, see :doc:`/guide/torch`): ``d/d cost`` is the plan, ``d/d a`` the
    potential ``f - reg (1 - sum(b))`` in the gauge where the two weight gradients have
    equal sums (balanced weights move only with equal masses; with ``reg_m``: the
    relaxed dual's derivative ``-reg_m (exp(-f / reg_m) - 1) - reg (P1 / a - sum(b))``),
    likewise for ``b``. A
    solve that does not converge warns (:class:`ottools.OTConvergenceWarning`).

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
    if init is not None and not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise TypeError("`init` must be a pair (f, g) of potentials, or None.")
    reg = scalar(reg, "reg")
    reg_m = scalar_or_pair(reg_m, "reg_m")

    def fn(need, a, b, c):
        f0 = None if init is None else tuple(numpy(as_tensor(p, "init"), c.dtype)
                                             for p in init)
        res, grads = sinkhorn_value_and_grad(a, b, c, reg, reg_m=reg_m, method=method,
                                             tol=tol, maxiter=maxiter, init=f0,
                                             options=options)
        return res.fun, tuple(g if nd else None for g, nd in zip(grads, need)), [res]

    return apply("sinkhorn", fn, a, b, cost)


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check_online_gradient(where, metric, online, problems, tensors):
    """Before any solve: gradients in the points of a problem solved on a cost computed on
    the fly (``online=True``, or the automatic switch for large problems) exist for the
    squared Euclidean cost only (``ottools._divergence.cost_vjp``); refuse the others,
    naming ``metric``. ``problems``: ``(n, m, points)`` for each problem solved (a
    divergence's ``W(x, x)`` may switch alone), checked when one of its ``points``
    requires grad; ``tensors``: all the inputs, for the computation dtype. Returns
    ``online`` checked."""
    if online is not None:
        online = _check_bool(online, "online")
    dtype = dtypes(*tensors)[1]
    if any(any(t.requires_grad for t in points) and use_online(n, m, dtype, metric, online)
           for n, m, points in problems) and metric_name(metric) != "sqeuclidean":
        how = "online=True" if online else "the automatic online switch for large inputs"
        raise NotImplementedError(
            f"ottools.torch.{where}: gradients in the points of a cost computed on the fly "
            f"({how}) need metric='sqeuclidean'; got metric={metric!r}. Pass "
            f"online=False (dense costs), or points that do not require grad.")
    return online


def _mass_term(a, b, reg, reg_m):
    """The mass term of the unbalanced divergence, ``reg / 2 (sum(a) - sum(b))**2`` (zero
    for balanced problems), as a tensor that torch differentiates: the term that
    :func:`ottools.sinkhorn_divergence` adds when ``reg_m`` relaxes a marginal (None
    weights: mass 1)."""
    rho = _check_reg_m(reg_m)
    if rho is None or all(np.isinf(rho)):
        return None
    mass_a = 1.0 if a is None else a.sum()
    mass_b = 1.0 if b is None else b.sum()
    return 0.5 * reg * (mass_a - mass_b) ** 2


def _torch_metric_loss(x, y, a, b, reg, metric, debias, kwargs):
    """A callable metric: torch differentiates the costs it returns; each entropic term is
    :func:`sinkhorn` on them (with ``reg_m``, the divergence gains the mass term of
    :func:`_mass_term`, as in :func:`ottools.sinkhorn_divergence`)."""
    def term(u, v, wu, wv):
        c = metric(u, v)
        if not isinstance(c, torch.Tensor) or tuple(c.shape) != (u.shape[0], v.shape[0]):
            raise ValueError(f"`metric` must return a tensor of shape "
                             f"{(u.shape[0], v.shape[0])}.")
        return sinkhorn(wu, wv, c, reg, **kwargs)

    value = term(x, y, a, b)
    if debias:
        value = value - 0.5 * (term(x, x, a, a) + term(y, y, b, b))
        mass = _mass_term(a, b, reg, kwargs["reg_m"])
        if mass is not None:
            value = value + mass
    return value


@eager
def sinkhorn_loss(x, y, a=None, b=None, *, reg, reg_m=None, metric="sqeuclidean", p=None,
                  debias=True, method="auto", tol=None, maxiter=10_000, options=None,
                  online=None):
    r"""Sinkhorn divergence (``debias=True``) or entropic OT cost between point clouds,
    differentiable in ``x``, ``y``, ``a`` and ``b``.

    The value of :func:`ottools.sinkhorn_divergence` (``debias=False``: of
    ``ottools.sinkhorn(a, b, cost_matrix(x, y, metric), reg).fun``), with the same
    parameters, on the device of ``x`` in the inputs' promoted dtype (float32 end to
    end). ``x`` (n, d) and ``y`` (m, d) may be batches (B, n, d) and (B, m, d), with
    weights (B, n) and (B, m), or (n,) and (m,) shared by every pair (the losses of those
    weights repeated to (B, n), (B, m); the gradient of a shared vector sums its pairs'):
    the value is then a (B,) tensor of per-pair losses. ``metric`` may also be a
    callable taking two tensors and returning the cost tensor, which torch then
    differentiates. ``p`` is the exponent of the ground costs ``"minkowski"`` and
    ``"minkowski_p"`` (default 2; a TypeError with any other metric, a callable
    included), in the value and the gradients. GeomLoss's
    ``SamplesLoss("sinkhorn", p=2, blur=s, reach=r)`` is
    ``reg=s**2, reg_m=r**2`` on the points divided by ``sqrt(2)``. Gradients are
    computed by the forward solve (:doc:`/guide/torch`); a solve that does not converge
    warns. On costs computed on the fly (``online``), gradients in ``x`` and ``y`` need
    ``metric="sqeuclidean"``: other metrics raise NotImplementedError before the solve
    when ``x`` or ``y`` requires grad.

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
    x, y, a, b, batch = clouds(("x", "y"), x, y, a, b, batch=True)
    if not (isinstance(metric, str) or callable(metric)):
        raise TypeError(f"`metric` must be a string or a callable; got "
                        f"{type(metric).__name__}.")
    if not isinstance(debias, (bool, np.bool_)):
        raise TypeError(f"`debias` must be True or False; got {type(debias).__name__} "
                        f"{debias!r}.")
    p = metric_p(metric, scalar(p, "p"))
    reg = scalar(reg, "reg")
    reg_m = scalar_or_pair(reg_m, "reg_m")
    kwargs = dict(reg_m=reg_m, method=method, tol=tol, maxiter=maxiter, options=options)
    if callable(metric):
        if batch:
            raise ValueError("A callable `metric` with a batch: loop over the pairs.")
        if online is not None:  # refused as by ottools.sinkhorn_divergence (no kernel)
            use_online(x.shape[-2], y.shape[-2], np.float64, metric,
                       _check_bool(online, "online"))
        return _torch_metric_loss(x, y, a, b, reg, metric, debias, kwargs)
    cost_matrix(np.zeros((1, 1)), np.zeros((1, 1)), metric)  # validates the name early
    n, m = x.shape[-2], y.shape[-2]
    problems = [(n, m, (x, y))] + ([(n, n, (x,)), (m, m, (y,))] if debias else [])
    online = _check_online_gradient("sinkhorn_loss", metric, online, problems,
                                    (x, y, a, b))

    def fn(need, *arrays):
        value, res, grads = divergence_value_and_grad(
            *arrays, reg=reg, metric=metric, p=p, debias=debias, need=need, online=online,
            **kwargs)
        return value, grads, res

    return apply("sinkhorn_loss", fn, x, y, a, b)

@eager
def monge_gap(x, tx, a=None, *, metric="sqeuclidean", p=None, reg="auto", method="auto",
              tol=None, maxiter=10_000, options=None, online=None):
    r"""``ottools.monge_gap(x, tx, a, ...).fun`` as a tensor, differentiable in ``x``
    (n, d) and ``tx`` (n, d), the images of ``x`` under a map (e.g. a network's output).

    Same parameters and conventions as :func:`ottools.monge_gap` (``p``: the exponent of
    ``"minkowski"`` and ``"minkowski_p"``, in the value and the gradients); the weights
    ``a`` are not differentiable, nor is the ``reg`` chosen by ``"auto"`` (computed in the
    forward pass, then held constant). With :math:`P` the inner problem's plan and
    :math:`C_{ij} = c(x_i, T(x_j))`, the gradient is that of
    :math:`\langle \mathrm{diag}(a) - P, C\rangle` (envelope theorem). On costs
    computed on the fly (``online``), these gradients need ``metric="sqeuclidean"``
    (NotImplementedError before the solve otherwise).

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
    x, tx, a, _, _ = clouds(("x", "tx"), x, tx, a, None)
    if a is not None and a.requires_grad:
        raise NotImplementedError("monge_gap is not differentiable in `a` (the weights): "
                                  "pass a detached tensor.")
    if not isinstance(metric, str):
        raise TypeError(f"`metric` must be a metric name here; got "
                        f"{type(metric).__name__}.")
    p = metric_p(metric, scalar(p, "p"))
    if not isinstance(reg, str):
        reg = scalar(reg, "reg")
    if isinstance(reg, str) or not (_is_number(reg) and float(reg) == 0):
        online = _check_online_gradient("monge_gap", metric, online,
                                        [(x.shape[0], x.shape[0], (x, tx))], (x, tx, a))

    def fn(need, x, tx, a):
        res, grads = monge_gap_value_and_grad(
            x, tx, a, need=need[:2], metric=metric, p=p, reg=reg, method=method, tol=tol,
            maxiter=maxiter, options=options, online=online)
        return res.fun, grads + (None,), [res]

    return apply("monge_gap", fn, x, tx, a)
