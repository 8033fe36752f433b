"""Differentiable OT operations: one ``torch.autograd.Function`` per operation.

Every forward pass detaches its inputs, moves them to CPU NumPy arrays and calls the
same solver as the NumPy API (``ottools.sinkhorn`` ...); the results come back as tensors
on the input's device and dtype. Every backward pass uses the envelope theorem
(algorithms.md section 6): the derivative of an optimal value with respect to the data is
the derivative of the objective at the optimal plan / potentials, so no iteration is
unrolled and no solver state is kept beyond the plan and the potentials.
"""

import os
import sys
import warnings

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import _sliced as _sl
from .._costs import cost_matrix
from .._divergence import divergence_parts
from .._validation import _check_tol
from .._monge_gap import monge_gap as _np_monge_gap
from .._result import OTConvergenceWarning
from .._sinkhorn import sinkhorn as _np_sinkhorn
from .._validation import _result_dtype

__all__ = [
    "distributional_sliced_wasserstein",
    "max_sliced_wasserstein",
    "monge_gap",
    "sinkhorn",
    "sinkhorn_loss",
    "sliced_wasserstein",
]


_OTTOOLS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


# ---------------------------------------------------------------------------------------
# Conversions and checks shared by every operation
# ---------------------------------------------------------------------------------------

def _warn(message):
    """Warn with ``OTConvergenceWarning`` at the first frame outside ottools and torch."""
    level, frame = 2, sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not (fname.startswith(_OTTOOLS_DIR) or fname.startswith(_TORCH_DIR)):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, OTConvergenceWarning, stacklevel=level)


def _tensor(x, name, like=None):
    """``x`` as a tensor (array-likes are converted, on ``like``'s device)."""
    if x is None or isinstance(x, torch.Tensor):
        return x
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise TypeError(f"`{name}` must be a tensor or array-like of numbers; {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must hold real numbers; got dtype {arr.dtype}.")
    device = like.device if isinstance(like, torch.Tensor) else None
    return torch.as_tensor(arr, device=device)


def _dtypes(*tensors):
    """(torch dtype of the outputs, NumPy dtype of the computation).

    Float dtypes follow ``torch.promote_types``; integer-only input gives float64.
    float16 and bfloat16 are computed in float32 and returned in their own dtype.
    """
    dt = None
    for t in tensors:
        if t is not None:
            dt = t.dtype if dt is None else torch.promote_types(dt, t.dtype)
    if dt is None or not dt.is_floating_point:
        dt = torch.float64
    return dt, np.dtype(np.float64 if dt == torch.float64 else np.float32)


def _same_device(tensors, names):
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        listed = ", ".join(f"`{n}` on {t.device}" for t, n in zip(tensors, names)
                           if t is not None)
        raise ValueError(f"All tensors must be on the same device; got {listed}.")


def _numpy(t, np_dtype):
    """A detached CPU NumPy copy (or view) of ``t`` in ``np_dtype``; None stays None."""
    if t is None:
        return None
    tdt = torch.float64 if np_dtype == np.float64 else torch.float32
    return t.detach().to(device="cpu", dtype=tdt).resolve_conj().resolve_neg().numpy()


def _back(arr, device, dtype):
    """A NumPy array (or float) as a tensor on ``device`` in ``dtype``."""
    if np.isscalar(arr) or np.ndim(arr) == 0:
        return torch.tensor(float(arr), dtype=dtype, device=device)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=dtype)


def _batch_error(name, shape, expected):
    return ValueError(
        f"`{name}` must be {expected}; got shape {tuple(shape)}. Batch dimensions are not "
        "supported yet: loop over the batch."
    )


def _check_ndim(t, name, ndim, expected):
    if t is not None and t.ndim != ndim:
        raise _batch_error(name, t.shape, expected)
    return t


def _points(x, name):
    """(n, d) points; a 1-D tensor is read as n points in 1-D (as the NumPy API does)."""
    if x.ndim == 1:
        return x[:, None]
    if x.ndim != 2:
        raise _batch_error(name, x.shape, "a 2-D tensor (n, d)")
    return x


def _scalar(v, name):
    """A Python float from a number or a 0-d tensor that needs no gradient."""
    if isinstance(v, torch.Tensor):
        if v.requires_grad:
            raise TypeError(f"`{name}` is not differentiable; pass a number or a detached "
                            "tensor.")
        if v.numel() != 1:
            raise ValueError(f"`{name}` must be a number; got a tensor of shape "
                             f"{tuple(v.shape)}.")
        return v.item()
    return v


def _tol(tol, np_dtype):
    """``tol=None``: the per-dtype default of the point-cloud API (float32 cannot reach
    the 1e-9 of float64)."""
    return _check_tol(tol, np_dtype)


# ---------------------------------------------------------------------------------------
# Ground costs in torch (backward of non-squared-Euclidean metrics) and their VJPs
# ---------------------------------------------------------------------------------------

def _safe_norm(d):
    """Euclidean norm over the last axis with a zero (not NaN) gradient at 0."""
    sq = (d * d).sum(-1)
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))),
                       torch.zeros_like(sq))


def _unit(z):
    n = _safe_norm(z)
    return z / torch.where(n > 0, n, torch.ones_like(n))[..., None]


def _torch_cost(x, y, metric):
    """``cost_matrix(x, y, metric)`` in torch (differentiable); ``metric`` may be callable."""
    if callable(metric):
        return metric(x, y)
    name = metric.lower()
    if name in ("sqeuclidean", "minkowski"):  # minkowski with the default p = 2
        return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if name == "euclidean":
        return _safe_norm(x[:, None, :] - y[None, :, :])
    if name in ("cityblock", "l1"):
        return (x[:, None, :] - y[None, :, :]).abs().sum(-1)
    if name == "chebyshev":
        return (x[:, None, :] - y[None, :, :]).abs().amax(-1)
    if name == "cosine":
        return 1.0 - _unit(x) @ _unit(y).T
    if name == "correlation":
        return 1.0 - _unit(x - x.mean(1, keepdim=True)) @ _unit(y - y.mean(1, keepdim=True)).T
    raise ValueError(f"Unknown metric {metric!r}.")  # cost_matrix refused it already


def _cost_vjp(P, x, y, metric, need_x=True, need_y=True):
    """Gradients of ``sum_ij P_ij c(x_i, y_j)`` with respect to ``x`` and ``y``.

    Squared Euclidean in closed form, ``2 (diag(P 1) x - P y)`` (two matrix products);
    other metrics by torch autograd of the cost, in blocks of rows so that the memory
    stays bounded (about 4 million entries of ``x_i - y_j`` at a time).
    """
    if not (need_x or need_y):
        return None, None
    if isinstance(metric, str) and metric.lower() in ("sqeuclidean", "minkowski"):
        gx = 2.0 * (P.sum(1)[:, None] * x - P @ y) if need_x else None
        gy = 2.0 * (P.sum(0)[:, None] * y - P.T @ x) if need_y else None
        return gx, gy
    n, m = P.shape
    block = max(1, (1 << 22) // max(1, m * x.shape[1]))
    gx = torch.zeros_like(x) if need_x else None
    gy = torch.zeros_like(y) if need_y else None
    with torch.enable_grad():
        yy = y.detach().requires_grad_(need_y)
        for i0 in range(0, n, block):
            xb = x[i0:i0 + block].detach().requires_grad_(need_x)
            s = (P[i0:i0 + block] * _torch_cost(xb, yy, metric)).sum()
            inputs = [t for t, need in ((xb, need_x), (yy, need_y)) if need]
            grads = torch.autograd.grad(s, inputs)
            k = 0
            if need_x:
                gx[i0:i0 + block] = grads[0]
                k = 1
            if need_y:
                gy += grads[k]
    return gx, gy


def _centred(v):
    """``v`` minus its mean: the gradient tangent to ``{sum(a) = const}``."""
    return v - v.mean()


# ---------------------------------------------------------------------------------------
# sinkhorn
# ---------------------------------------------------------------------------------------

class _SinkhornFunction(torch.autograd.Function):
    """Entropic OT cost; d/dcost = plan, d/da = centred f, d/db = centred g."""

    @staticmethod
    def forward(a, b, cost, reg, kwargs, state):
        np_dtype, dtype, device = state["np_dtype"], state["dtype"], cost.device
        res = _np_sinkhorn(_numpy(a, np_dtype), _numpy(b, np_dtype), _numpy(cost, np_dtype),
                           reg, **kwargs)
        state["res"] = res
        need_a, need_b, need_cost = state["need"]
        empty = cost.new_empty(0, dtype=dtype)
        plan = _back(res.plan, device, dtype) if need_cost else empty
        f = _back(res.f, device, dtype) if need_a else empty
        g = _back(res.g, device, dtype) if need_b else empty
        return _back(res.fun, device, dtype), plan, f, g

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b, cost = inputs[:3]
        _, plan, f, g = output
        ctx.mark_non_differentiable(plan, f, g)
        ctx.save_for_backward(plan, f, g)
        ctx.dtypes = tuple(None if t is None else t.dtype for t in (a, b, cost))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value, _grad_plan, _grad_f, _grad_g):
        plan, f, g = ctx.saved_tensors
        da, db, dc = ctx.dtypes
        ga = gb = gc = None
        if ctx.needs_input_grad[0]:
            ga = (grad_value * _centred(f)).to(da)
        if ctx.needs_input_grad[1]:
            gb = (grad_value * _centred(g)).to(db)
        if ctx.needs_input_grad[2]:
            gc = (grad_value * plan).to(dc)
        return ga, gb, gc, None, None, None


def sinkhorn(a, b, cost, reg, *, method="auto", tol=None, maxiter=10_000, init=None,
             options=None):
    r"""Entropic OT cost as a differentiable 0-d tensor.

    The value is ``ottools.sinkhorn(a, b, cost, reg, ...).fun``,
    :math:`\min_{P \in U(a, b)} \langle P, C \rangle + \mathrm{reg}\,\mathrm{KL}(P \| a
    \otimes b)`, computed by the NumPy solver.

    Parameters
    ----------
    a : Tensor, shape (n,), or None
        Source weights (``None``: uniform). Differentiable.
    b : Tensor, shape (m,), or None
        Target weights, same total mass as ``a``. Differentiable.
    cost : Tensor, shape (n, m)
        Ground cost. Differentiable. Batch dimensions are refused.
    reg : float
        Entropic regularization (not differentiable).
    method, maxiter, init, options
        As in :func:`ottools.sinkhorn` (``init`` may hold tensors).
    tol : float, optional
        As in :func:`ottools.sinkhorn`; default (``None``) ``1e-9`` for float64 and
        ``1e-4`` for float32 (float32 cannot reach ``1e-9``), as
        :func:`ottools.sinkhorn_divergence`.

    Returns
    -------
    value : Tensor, shape ()
        The entropic cost ``fun``, on the device and in the dtype of ``cost`` (promoted
        with those of ``a`` and ``b``).

    Warns
    -----
    OTConvergenceWarning
        If the solver stops without converging (its message is repeated).

    Notes
    -----
    Gradients by the envelope theorem at the solved problem (algorithms.md section 6):
    ``d value / d cost = plan``; ``d value / d a = f - mean(f)`` and
    ``d value / d b = g - mean(g)``, the dual potentials centred so that the gradients
    are tangent to the simplex (the value is only defined for balanced weights, so any
    constant could be added; a perturbation that keeps the masses equal sees the same
    derivative). Exact up to the solver's ``tol``; nothing is unrolled, and the backward
    pass keeps only the plan (when ``cost`` needs a gradient) and the potentials.
    A CUDA tensor is copied to host memory for the solve and the results are copied
    back.

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
    cost = _tensor(cost, "cost")
    if cost is None:
        raise TypeError("`cost` must be a tensor; got None.")
    a = _check_ndim(_tensor(a, "a", cost), "a", 1, "a 1-D tensor (n,)")
    b = _check_ndim(_tensor(b, "b", cost), "b", 1, "a 1-D tensor (m,)")
    _check_ndim(cost, "cost", 2, "a 2-D tensor (n, m)")
    _same_device((a, b, cost), ("a", "b", "cost"))
    dtype, np_dtype = _dtypes(a, b, cost)
    if init is not None:
        if not (isinstance(init, (tuple, list)) and len(init) == 2):
            raise TypeError("`init` must be a pair (f, g) of potentials, or None.")
        init = tuple(_numpy(_tensor(p, "init"), np_dtype) for p in init)
    kwargs = dict(method=method, tol=_tol(tol, np_dtype), maxiter=maxiter, init=init,
                  options=options)
    need = tuple(t is not None and t.requires_grad for t in (a, b, cost))
    state = {"dtype": dtype, "np_dtype": np_dtype, "need": need}
    value = _SinkhornFunction.apply(a, b, cost, _scalar(reg, "reg"), kwargs, state)[0]
    res = state["res"]
    if not res.success:
        _warn(f"ottools.torch.sinkhorn did not converge: {res.message}")
    return value


# ---------------------------------------------------------------------------------------
# sinkhorn_loss
# ---------------------------------------------------------------------------------------

def _np_metric(metric):
    """``metric`` for the NumPy API: names unchanged; a torch callable wrapped to take and
    return NumPy arrays (evaluated without gradient)."""
    if isinstance(metric, str):
        return metric

    def fn(u, v):
        with torch.no_grad():
            c = metric(torch.from_numpy(u), torch.from_numpy(v))
        if not isinstance(c, torch.Tensor) or tuple(c.shape) != (u.shape[0], v.shape[0]):
            raise ValueError(f"`metric` must return a tensor of shape "
                             f"{(u.shape[0], v.shape[0])}.")
        return c.detach().to(dtype=torch.from_numpy(u).dtype).numpy()
    return fn


def _divergence_problems(x, y, a, b, reg, metric, debias, kwargs):
    """The entropic problems of ``sinkhorn_loss`` as NumPy ``OTResult`` objects.

    ``{"xy": W(a, b)}`` and, when ``debias``, ``"xx"``: W(a, a), ``"yy"``: W(b, b),
    from the NumPy ``sinkhorn_divergence``'s private entry point (same validation, the
    symmetric solver for the self-transport terms); ``debias=False`` solves ``xy`` with
    :func:`ottools.sinkhorn` alone.
    """
    np_metric = _np_metric(metric)
    if not debias:
        cost = cost_matrix(x, y, np_metric)
        kwargs = {**kwargs, "tol": _check_tol(kwargs["tol"], _result_dtype(cost, a, b))}
        return {"xy": _np_sinkhorn(a, b, cost, reg, **kwargs)}
    xy, xx, yy, _ = divergence_parts(x, y, a, b, reg=reg, metric=np_metric, **kwargs)
    return {"xy": xy, "xx": xx, "yy": yy}


class _SinkhornLossFunction(torch.autograd.Function):
    """W(a, b) [- W(a, a)/2 - W(b, b)/2] between point clouds; envelope gradients."""

    @staticmethod
    def forward(x, y, a, b, reg, metric, debias, kwargs, state):
        np_dtype, dtype, device = state["np_dtype"], state["dtype"], x.device
        xn, yn = _numpy(x, np_dtype), _numpy(y, np_dtype)
        an, bn = _numpy(a, np_dtype), _numpy(b, np_dtype)
        results = _divergence_problems(xn, yn, an, bn, reg, metric, debias, kwargs)
        state["results"] = results
        need_x, need_y, need_a, need_b = state["need"]
        empty = x.new_empty(0, dtype=dtype)

        def t(arr, needed):
            return _back(arr, device, dtype) if needed else empty

        xy = results["xy"]
        value = xy.fun
        out = [t(xy.plan, need_x or need_y), t(xy.f, need_a), t(xy.g, need_b)]
        if debias:
            xx, yy = results["xx"], results["yy"]
            value -= 0.5 * (xx.fun + yy.fun)
            out += [t(xx.plan, need_x), t(xx.f + xx.g, need_a),
                    t(yy.plan, need_y), t(yy.f + yy.g, need_b)]
        return (_back(value, device, dtype), *out)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, y, a, b = inputs[:4]
        ctx.metric, ctx.debias = inputs[5], inputs[6]
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(x, y, *output[1:])
        ctx.dtypes = tuple(None if t is None else t.dtype for t in (x, y, a, b))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value, *_unused):
        x, y, P, f, g, *sym = ctx.saved_tensors
        need_x, need_y, need_a, need_b = ctx.needs_input_grad[:4]
        dt = P.dtype if P.numel() else (f.dtype if f.numel() else g.dtype)
        xd, yd = x.detach().to(dt), y.detach().to(dt)
        gx, gy = _cost_vjp(P, xd, yd, ctx.metric, need_x, need_y)
        ga = _centred(f) if need_a else None
        gb = _centred(g) if need_b else None
        if ctx.debias:
            Pxx, sxx, Pyy, syy = sym
            if need_x:
                u, v = _cost_vjp(Pxx, xd, xd, ctx.metric)
                gx = gx - 0.5 * (u + v)
            if need_y:
                u, v = _cost_vjp(Pyy, yd, yd, ctx.metric)
                gy = gy - 0.5 * (u + v)
            if need_a:
                ga = ga - 0.5 * _centred(sxx)
            if need_b:
                gb = gb - 0.5 * _centred(syy)
        grads = [gx, gy, ga, gb]
        grads = [None if gr is None else (grad_value * gr).to(d)
                 for gr, d in zip(grads, ctx.dtypes)]
        return (*grads, None, None, None, None, None)


def sinkhorn_loss(x, y, a=None, b=None, *, reg, metric="sqeuclidean", debias=True,
                  method="auto", tol=None, maxiter=10_000):
    r"""Entropic OT cost or Sinkhorn divergence between point clouds, differentiable.

    With ``debias=True`` (default) the Sinkhorn divergence

    .. math::

        S_\varepsilon(\alpha, \beta) = W_\varepsilon(\alpha, \beta)
        - \tfrac12 W_\varepsilon(\alpha, \alpha) - \tfrac12 W_\varepsilon(\beta, \beta),

    with :math:`\alpha = \sum_i a_i \delta_{x_i}`, :math:`\beta = \sum_j b_j \delta_{y_j}`
    and :math:`W_\varepsilon` the entropic cost ``ottools.sinkhorn(...).fun`` for the
    cost matrix ``ottools.cost_matrix(x, y, metric)``: the value of
    :func:`ottools.sinkhorn_divergence` (whose symmetric solver handles the two
    self-transport terms). With ``debias=False``, :math:`W_\varepsilon(\alpha, \beta)`
    alone, ``ottools.sinkhorn(a, b, cost_matrix(x, y, metric), reg).fun``.

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Source points (1-D: n points in 1-D). Differentiable.
    y : Tensor, shape (m, d)
        Target points. Differentiable.
    a, b : Tensor, shape (n,) and (m,), or None
        Weights (``None``: uniform), with equal total masses. Differentiable.
    reg : float
        Entropic regularization, in the units of the cost.
    metric : str or callable, default "sqeuclidean"
        A name accepted by :func:`ottools.cost_matrix` (``"minkowski"`` with its
        default ``p = 2``), or a callable ``metric(x, y)`` taking torch tensors and
        returning the ``(n, m)`` cost tensor (differentiable in torch).
    debias : bool, default True
        Subtract the two symmetric terms (Sinkhorn divergence: non-negative, zero for
        equal measures).
    method, tol, maxiter
        As in :func:`ottools.sinkhorn_divergence` (``tol=None``: ``1e-9`` for float64,
        ``1e-4`` for float32), used by every solve.

    Returns
    -------
    value : Tensor, shape ()
        On the device of ``x``, in the promoted dtype of the inputs.

    Warns
    -----
    OTConvergenceWarning
        If one of the solves stops without converging.

    Notes
    -----
    Envelope gradients (algorithms.md section 6): with ``P`` the optimal plan of
    :math:`W_\varepsilon(\alpha, \beta)`,
    :math:`\partial W / \partial x_i = \sum_j P_{ij} \nabla_x c(x_i, y_j)`
    (squared Euclidean: :math:`2 \sum_j P_{ij} (x_i - y_j)`, two matrix products;
    other metrics by torch autograd of the cost in row blocks), and
    :math:`\partial W / \partial a = f - \mathrm{mean}(f)`; the symmetric terms
    contribute through both of their arguments. The backward pass keeps the plans and
    potentials, not the iterations. A CUDA tensor makes a round trip through host memory.

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
    x = _tensor(x, "x")
    y = _tensor(y, "y", x)
    if x is None or y is None:
        raise TypeError("`x` and `y` must be tensors; got None.")
    x, y = _points(x, "x"), _points(y, "y")
    a = _check_ndim(_tensor(a, "a", x), "a", 1, "a 1-D tensor (n,)")
    b = _check_ndim(_tensor(b, "b", x), "b", 1, "a 1-D tensor (m,)")
    _same_device((x, y, a, b), ("x", "y", "a", "b"))
    if not (isinstance(metric, str) or callable(metric)):
        raise TypeError(f"`metric` must be a string or a callable; got "
                        f"{type(metric).__name__}.")
    if isinstance(metric, str):
        cost_matrix(np.zeros((1, 1)), np.zeros((1, 1)), metric)  # validates the name
    dtype, np_dtype = _dtypes(x, y, a, b)
    kwargs = dict(method=method, tol=tol, maxiter=maxiter)
    need = tuple(t is not None and t.requires_grad for t in (x, y, a, b))
    state = {"dtype": dtype, "np_dtype": np_dtype, "need": need}
    value = _SinkhornLossFunction.apply(x, y, a, b, _scalar(reg, "reg"), metric,
                                        bool(debias), kwargs, state)[0]
    for name, res in state["results"].items():
        if not res.success:
            _warn(f"ottools.torch.sinkhorn_loss: the {name} problem did not converge: "
                  f"{res.message}")
    return value


# ---------------------------------------------------------------------------------------
# Sliced family: gradients through the 1-D couplings of the projections
# ---------------------------------------------------------------------------------------

def _no_weight_grad(a, b, where):
    for t, name in ((a, "a"), (b, "b")):
        if t is not None and t.requires_grad:
            raise NotImplementedError(
                f"ottools.torch.{where} is not differentiable in `{name}` yet; pass a "
                "tensor that does not require grad (e.g. `{name}.detach()`)."
            )


class _SlicedFunction(torch.autograd.Function):
    """Base of the sliced operations: ``forward`` runs ``state["solve"]``, which returns
    ``(value, grad_x, grad_y)`` (NumPy); the gradients are kept, O(n + m) memory."""

    @staticmethod
    def forward(x, y, a, b, state):
        np_dtype, dtype, device = state["np_dtype"], state["dtype"], x.device
        value, gx, gy = state["solve"](_numpy(x, np_dtype), _numpy(y, np_dtype),
                                       _numpy(a, np_dtype), _numpy(b, np_dtype))
        need_x, need_y = state["need"]
        empty = x.new_empty(0, dtype=dtype)
        return (_back(value, device, dtype),
                _back(gx, device, dtype) if need_x else empty,
                _back(gy, device, dtype) if need_y else empty)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, y = inputs[:2]
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(*output[1:])
        ctx.dtypes = (x.dtype, y.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value, _gx, _gy):
        gx, gy = ctx.saved_tensors
        out_x = (grad_value * gx).to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        out_y = (grad_value * gy).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        return out_x, out_y, None, None, None


class _SlicedWassersteinFunction(_SlicedFunction):
    """SW_p on given directions: mean of the 1-D W_p^p, then the p-th root."""


class _MaxSlicedWassersteinFunction(_SlicedFunction):
    """Max-SW: W_p on the maximizing direction (Danskin: gradient at the maximizer)."""


class _DistributionalSlicedWassersteinFunction(_SlicedFunction):
    """v-DSW: the vMF Monte Carlo mean at the maximizing location (Danskin)."""


def _sliced_call(function, x, y, a, b, where, make_solve):
    x = _tensor(x, "x")
    y = _tensor(y, "y", x)
    if x is None or y is None:
        raise TypeError("`x` and `y` must be tensors; got None.")
    x, y = _points(x, "x"), _points(y, "y")
    a = _check_ndim(_tensor(a, "a", x), "a", 1, "a 1-D tensor (n,)")
    b = _check_ndim(_tensor(b, "b", x), "b", 1, "a 1-D tensor (m,)")
    _same_device((x, y, a, b), ("x", "y", "a", "b"))
    _no_weight_grad(a, b, where)
    dtype, np_dtype = _dtypes(x, y, a, b)
    state = {"dtype": dtype, "np_dtype": np_dtype, "need": (x.requires_grad, y.requires_grad)}
    state["solve"] = make_solve(state)
    value = function.apply(x, y, a, b, state)[0]
    res = state.get("res")
    if res is not None and not res.success:
        _warn(f"ottools.torch.{where} did not converge: {res.message}")
    return value


def sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, directions="random",
                       estimator="mc", rng=None):
    r"""Sliced Wasserstein distance, differentiable in ``x`` and ``y``.

    Same parameters and value as :func:`ottools.sliced_wasserstein` (the same directions
    for the same ``rng``), with tensors in and a 0-d tensor out.

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Support of the first measure. Differentiable.
    y : Tensor, shape (m, d)
        Support of the second measure. Differentiable.
    a, b : Tensor, shape (n,) and (m,), or None
        Weights (normalized); not differentiable yet (a tensor that requires grad is
        refused rather than silently ignored).
    p : float, default 2
    n_projections : int, default 100
    directions : {"random", "qmc", "orthogonal"} or array_like, shape (L, d)
    estimator : {"mc"}, default "mc"
        Only the plain Monte Carlo mean (the control-variate estimators of the NumPy API
        have no gradient here).
    rng : {None, int, numpy.random.Generator}, optional
        Randomness of the directions (SPEC 7). Pass a ``Generator`` (or use
        :class:`SlicedWassersteinLoss`) to draw new directions at every call in training.

    Returns
    -------
    value : Tensor, shape ()
        :math:`SW_p`, on the device of ``x``, in the promoted dtype.

    Notes
    -----
    For each direction, the optimal 1-D coupling :math:`\pi_l` of the sorted projections
    gives :math:`\partial W_p^p / \partial u_i = \sum_j \pi_{l,ij}\, p |u_i -
    v_j|^{p-1} \mathrm{sign}(u_i - v_j)`, carried back through :math:`u_i = \theta_l^\top
    x_i` (Bonneel et al., J. Math. Imaging Vis. 2015); then the chain rule through the
    mean and the p-th root. The forward pass computes these gradients along with the
    value (same sort) and keeps them: O((n + m) d) memory.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import sliced_wasserstein
    >>> x = torch.zeros(4, 2, dtype=torch.float64, requires_grad=True)
    >>> y = torch.ones(4, 2, dtype=torch.float64)
    >>> value = sliced_wasserstein(x, y, directions=torch.eye(2).numpy())
    >>> value.backward()
    >>> round(value.item(), 6), x.grad[0].tolist()
    (1.0, [-0.125, -0.125])
    """
    if isinstance(estimator, str) and estimator.lower() != "mc":
        raise ValueError(f"`estimator={estimator!r}` is not differentiable here; "
                         "ottools.torch.sliced_wasserstein supports estimator='mc' only.")
    if isinstance(directions, torch.Tensor):
        directions = directions.detach().cpu().numpy()

    def make_solve(state):
        def solve(x, y, a, b):
            return _sl.sliced_value_and_grad(x, y, a, b, p=p, n_projections=n_projections,
                                             directions=directions, rng=rng)
        return solve

    return _sliced_call(_SlicedWassersteinFunction, x, y, a, b, "sliced_wasserstein",
                        make_solve)


def max_sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, n_restarts=3,
                           maxiter=100, tol=None, rng=None):
    r"""Max-sliced Wasserstein distance, differentiable in ``x`` and ``y``.

    The value is ``ottools.max_sliced_wasserstein(...).fun`` (same parameters); see that
    function for the ascent.

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Differentiable.
    y : Tensor, shape (m, d)
        Differentiable.
    a, b : Tensor, shape (n,) and (m,), or None
        Weights; not differentiable yet (refused if they require grad).
    p, n_projections, n_restarts, maxiter, tol, rng
        As in :func:`ottools.max_sliced_wasserstein`.

    Returns
    -------
    value : Tensor, shape ()
        On the device of ``x``, in the promoted dtype.

    Warns
    -----
    OTConvergenceWarning
        If the ascent on the sphere stops without converging.

    Notes
    -----
    By Danskin's theorem the gradient of :math:`\max_\theta W_p(\theta)` is the gradient
    of :math:`W_p(\theta^*)` at the returned direction :math:`\theta^*`, held fixed:
    the 1-D coupling of the projections on :math:`\theta^*`, carried back to the points.
    The ascent finds a local maximum; the gradient is that of the value returned.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import max_sliced_wasserstein
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g, dtype=torch.float64, requires_grad=True)
    >>> y = x.detach() + torch.tensor([3.0, 0.0], dtype=torch.float64)
    >>> value = max_sliced_wasserstein(x, y, rng=0)
    >>> value.backward()
    >>> print(f"{value.item():.3f} {x.grad[:, 0].sum().item():.3f}")
    3.000 -1.000
    """
    def make_solve(state):
        def solve(x, y, a, b):
            res, gx, gy = _sl.max_sliced_value_and_grad(
                x, y, a, b, p=p, n_projections=n_projections, n_restarts=n_restarts,
                maxiter=maxiter, tol=tol, rng=rng)
            state["res"] = res
            return float(res.fun), gx, gy
        return solve

    return _sliced_call(_MaxSlicedWassersteinFunction, x, y, a, b, "max_sliced_wasserstein",
                        make_solve)


def distributional_sliced_wasserstein(x, y, a=None, b=None, *, p=2, kappa=10.0,
                                      n_projections=100, maxiter=100, tol=None, rng=None):
    r"""Distributional sliced Wasserstein (v-DSW), differentiable in ``x`` and ``y``.

    The value is ``ottools.distributional_sliced_wasserstein(...).fun`` (same
    parameters).

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Differentiable.
    y : Tensor, shape (m, d)
        Differentiable.
    a, b : Tensor, shape (n,) and (m,), or None
        Weights; not differentiable yet (refused if they require grad).
    p, kappa, n_projections, maxiter, tol, rng
        As in :func:`ottools.distributional_sliced_wasserstein`.

    Returns
    -------
    value : Tensor, shape ()
        On the device of ``x``, in the promoted dtype.

    Warns
    -----
    OTConvergenceWarning
        If the ascent on the vMF location stops without converging.

    Notes
    -----
    Danskin's theorem at the returned location: the gradient is that of the Monte Carlo
    mean of :math:`W_p^p` over the final directions (``res.directions``, the vMF
    samples moved to the optimal location), through their 1-D couplings, then the
    p-th root.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import distributional_sliced_wasserstein
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g, dtype=torch.float64, requires_grad=True)
    >>> y = x.detach() + torch.tensor([3.0, 0.0], dtype=torch.float64)
    >>> value = distributional_sliced_wasserstein(x, y, kappa=50.0, rng=0)
    >>> value.backward()
    >>> print(f"{value.item():.2f} {x.grad[:, 0].sum().item():.2f}")
    2.97 -0.99
    """
    def make_solve(state):
        def solve(x, y, a, b):
            res, gx, gy = _sl.distributional_sliced_value_and_grad(
                x, y, a, b, p=p, kappa=kappa, n_projections=n_projections,
                maxiter=maxiter, tol=tol, rng=rng)
            state["res"] = res
            return float(res.fun), gx, gy
        return solve

    return _sliced_call(_DistributionalSlicedWassersteinFunction, x, y, a, b,
                        "distributional_sliced_wasserstein", make_solve)


# ---------------------------------------------------------------------------------------
# Monge gap
# ---------------------------------------------------------------------------------------

class _MongeGapFunction(torch.autograd.Function):
    """sum_i a_i c(x_i, tx_i) - OT(x, tx): gradient of <diag(a) - P, C(x, tx)>."""

    @staticmethod
    def forward(x, tx, a, metric, reg, kwargs, state):
        np_dtype, dtype, device = state["np_dtype"], state["dtype"], x.device
        xn, txn, an = _numpy(x, np_dtype), _numpy(tx, np_dtype), _numpy(a, np_dtype)
        res = _np_monge_gap(xn, txn, an, metric=_np_metric(metric), reg=reg, **kwargs)
        state["res"] = res
        if any(state["need"]):
            w = np.full(xn.shape[0], 1.0 / xn.shape[0]) if an is None else an
            D = np.diag(w.astype(np_dtype)) - res.ot_result.plan
            D = _back(D, device, dtype)
        else:
            D = x.new_empty(0, dtype=dtype)
        return _back(res.fun, device, dtype), D

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, tx = inputs[:2]
        ctx.metric = inputs[3]
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, tx, output[1])
        ctx.dtypes = (x.dtype, tx.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value, _gD):
        x, tx, D = ctx.saved_tensors
        need_x, need_tx = ctx.needs_input_grad[:2]
        gx, gtx = _cost_vjp(D, x.detach().to(D.dtype), tx.detach().to(D.dtype), ctx.metric,
                            need_x, need_tx)
        gx = None if gx is None else (grad_value * gx).to(ctx.dtypes[0])
        gtx = None if gtx is None else (grad_value * gtx).to(ctx.dtypes[1])
        return gx, gtx, None, None, None, None, None


def monge_gap(x, tx, a=None, *, metric="sqeuclidean", reg="auto", method="auto", tol=None,
              maxiter=10_000):
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
    metric : str or callable, default "sqeuclidean"
        A name accepted by :func:`ottools.cost_matrix`, or a callable ``metric(x, y)``
        taking torch tensors and returning the ``(n, m)`` cost tensor.
    reg : float or "auto", default "auto"
        As in :func:`ottools.monge_gap` (``"auto"``: 0.05 times the standard deviation
        of the cost matrix, computed in the forward pass and then held constant).
    method, tol, maxiter
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
    x = _tensor(x, "x")
    tx = _tensor(tx, "tx", x)
    if x is None or tx is None:
        raise TypeError("`x` and `tx` must be tensors; got None.")
    x, tx = _points(x, "x"), _points(tx, "tx")
    a = _check_ndim(_tensor(a, "a", x), "a", 1, "a 1-D tensor (n,)")
    _same_device((x, tx, a), ("x", "tx", "a"))
    _no_weight_grad(a, None, "monge_gap")
    if not (isinstance(metric, str) or callable(metric)):
        raise TypeError(f"`metric` must be a string or a callable; got "
                        f"{type(metric).__name__}.")
    dtype, np_dtype = _dtypes(x, tx, a)
    if not isinstance(reg, str):
        reg = _scalar(reg, "reg")
    kwargs = dict(method=method, tol=tol, maxiter=maxiter)
    state = {"dtype": dtype, "np_dtype": np_dtype, "need": (x.requires_grad, tx.requires_grad)}
    value = _MongeGapFunction.apply(x, tx, a, metric, reg, kwargs, state)[0]
    res = state["res"]
    if not res.success:
        _warn(f"ottools.torch.monge_gap did not converge: {res.message}")
    return value
