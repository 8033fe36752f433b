"""Differentiable sliced Wasserstein distances (SW, Max-SW, v-DSW): the core's NumPy
``*_value_and_grad`` entry points through :func:`._convert.apply`. The weights are not
differentiable: a tensor that requires grad is refused rather than silently ignored."""

import torch

from .. import _sliced as _sl
from ._convert import apply, clouds, eager, numpy_rng, scalar

__all__ = ["distributional_sliced_wasserstein", "max_sliced_wasserstein",
           "sliced_wasserstein"]


def _call(where, x, y, a, b, compute):
    """Convert, check, run ``compute(x, y, a, b) -> (value, gx, gy, result or None)`` on
    NumPy arrays through the envelope pattern."""
    x, y, a, b, _ = clouds(("x", "y"), x, y, a, b)
    for t, name in ((a, "a"), (b, "b")):
        if t is not None and t.requires_grad:
            raise NotImplementedError(
                f"ottools.torch.{where} is not differentiable in `{name}` yet; pass a "
                f"tensor that does not require grad (e.g. `{name}.detach()`).")

    def fn(need, x, y, a, b):
        value, gx, gy, res = compute(x, y, a, b)
        return (value, (gx if need[0] else None, gy if need[1] else None, None, None),
                [] if res is None else [res])

    return apply(where, fn, x, y, a, b)

@eager
def sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, directions="random",
                       estimator="mc", rng=None):
    r"""``ottools.sliced_wasserstein`` (same parameters, same directions for the same
    ``rng``) as a tensor, differentiable in ``x`` (n, d) and ``y`` (m, d).

    Only ``estimator="mc"`` (the control-variate estimators have no gradient here); ``rng``
    may also be a ``torch.Generator`` (pass a generator, or use
    :class:`SlicedWassersteinLoss`, to draw new directions at every training step). The
    weights and ``directions`` are not differentiable: a tensor that requires grad is
    refused. Gradients
    go through the optimal 1-D coupling of each direction's sorted projections (Bonneel
    et al., J. Math. Imaging Vis. 2015), computed with the value: O((n + m) d) memory.

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
    if not isinstance(estimator, str):
        raise TypeError(f"`estimator` must be a string; got {type(estimator).__name__}.")
    if estimator.lower() != "mc":
        raise ValueError(f"`estimator={estimator!r}` is not differentiable here; "
                         "ottools.torch.sliced_wasserstein supports estimator='mc' only.")
    if isinstance(directions, torch.Tensor):
        if directions.requires_grad:
            raise NotImplementedError(
                "ottools.torch.sliced_wasserstein is not differentiable in `directions`; "
                "pass a tensor that does not require grad (e.g. `directions.detach()`).")
        directions = directions.detach().cpu().numpy()
    p = scalar(p, "p")
    rng = numpy_rng(rng)

    def compute(x, y, a, b):
        value, gx, gy = _sl.sliced_value_and_grad(x, y, a, b, p=p,
                                                  n_projections=n_projections,
                                                  directions=directions, rng=rng)
        return value, gx, gy, None

    return _call("sliced_wasserstein", x, y, a, b, compute)


def _ascent(where, core, x, y, a, b, rng, **kw):
    """Max-SW and v-DSW: the core's ascent, differentiated at the direction(s) it returns
    (Danskin's theorem)."""
    rng = numpy_rng(rng)

    def compute(x, y, a, b):
        res, gx, gy = core(x, y, a, b, rng=rng, **kw)
        return float(res.fun), gx, gy, res

    return _call(where, x, y, a, b, compute)


@eager
def max_sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, n_restarts=3,
                           maxiter=100, tol=None, rng=None, options=None):
    r"""``ottools.max_sliced_wasserstein(...).fun`` (same parameters but ``callback``;
    ``rng`` may be a ``torch.Generator``) as a tensor, differentiable in ``x`` and ``y``.

    Danskin's theorem: the gradient is that of :math:`W_p(\theta^*)` at the returned
    (locally maximizing) direction, held fixed. Weights as in :func:`sliced_wasserstein`;
    an ascent that does not converge warns.

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
    return _ascent("max_sliced_wasserstein", _sl.max_sliced_value_and_grad, x, y, a, b,
                   rng, p=scalar(p, "p"), n_projections=n_projections,
                   n_restarts=n_restarts, maxiter=maxiter, tol=tol, options=options)


@eager
def distributional_sliced_wasserstein(x, y, a=None, b=None, *, p=2, kappa=10.0,
                                      n_projections=100, maxiter=100, tol=None, rng=None,
                                      options=None):
    r"""``ottools.distributional_sliced_wasserstein(...).fun`` (v-DSW; same parameters
    but ``callback``, ``rng`` may be a ``torch.Generator``) as a tensor, differentiable in
    ``x`` and ``y``.

    Danskin's theorem at the returned vMF location: the gradient of the mean of
    :math:`W_p^p` over the final directions (``res.directions``), then of the p-th root.
    Weights as in :func:`sliced_wasserstein`; an ascent that does not converge warns.

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
    return _ascent("distributional_sliced_wasserstein",
                   _sl.distributional_sliced_value_and_grad, x, y, a, b, rng,
                   p=scalar(p, "p"), kappa=scalar(kappa, "kappa"),
                   n_projections=n_projections, maxiter=maxiter, tol=tol, options=options)
