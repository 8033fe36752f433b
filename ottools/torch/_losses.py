"""``torch.nn.Module`` wrappers of the differentiable OT functions."""

from torch import nn

from ._convert import numpy_rng
from ._entropic import monge_gap, sinkhorn_loss
from ._sliced import sliced_wasserstein

__all__ = ["MongeGapRegularizer", "SinkhornLoss", "SlicedWassersteinLoss"]


class SinkhornLoss(nn.Module):
    """:func:`ottools.torch.sinkhorn_loss` as a module (no parameters, no state).

    Parameters
    ----------
    reg : float
        Entropic regularization.
    metric : str or callable, default "sqeuclidean"
    debias : bool, default True
        Sinkhorn divergence (True) or entropic OT cost (False).
    **solver_kwargs
        ``method``, ``tol``, ``maxiter``, passed to every solve.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import SinkhornLoss
    >>> loss_fn = SinkhornLoss(reg=0.1)
    >>> x = torch.zeros(3, 2, requires_grad=True)
    >>> loss = loss_fn(x, torch.ones(4, 2))
    >>> loss.backward()
    >>> round(loss.item(), 4)
    2.0
    """

    def __init__(self, reg, metric="sqeuclidean", debias=True, **solver_kwargs):
        super().__init__()
        unknown = set(solver_kwargs) - {"method", "tol", "maxiter"}
        if unknown:
            raise TypeError(f"Unknown argument(s) {sorted(unknown)} for SinkhornLoss; valid: "
                            "'method', 'tol', 'maxiter'.")
        self.reg = reg
        self.metric = metric
        self.debias = debias
        self.solver_kwargs = solver_kwargs

    def forward(self, x, y, a=None, b=None):
        """The loss between ``x`` (weights ``a``) and ``y`` (weights ``b``)."""
        return sinkhorn_loss(x, y, a, b, reg=self.reg, metric=self.metric,
                             debias=self.debias, **self.solver_kwargs)

    def extra_repr(self):
        return f"reg={self.reg}, metric={self.metric!r}, debias={self.debias}"


class SlicedWassersteinLoss(nn.Module):
    """:func:`ottools.torch.sliced_wasserstein` as a module, with fresh directions per call.

    Parameters
    ----------
    p : float, default 2
    n_projections : int, default 100
    directions : {"random", "qmc", "orthogonal"} or array_like, default "random"
    rng : {None, int, numpy.random.Generator, torch.Generator}, optional
        Seeds one ``numpy.random.Generator`` kept by the module: every call draws new
        directions from it (an unbiased stochastic gradient in training), reproducibly.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import SlicedWassersteinLoss
    >>> loss_fn = SlicedWassersteinLoss(n_projections=20, rng=0)
    >>> x = torch.zeros(5, 3, requires_grad=True)
    >>> loss = loss_fn(x, torch.zeros(5, 3))
    >>> loss.backward()
    >>> loss.item(), x.grad.abs().max().item()
    (0.0, 0.0)
    """

    def __init__(self, p=2, n_projections=100, directions="random", rng=None):
        super().__init__()
        self.p = p
        self.n_projections = n_projections
        self.directions = directions
        self.rng = numpy_rng(rng)

    def forward(self, x, y, a=None, b=None):
        """The sliced distance between ``x`` (weights ``a``) and ``y`` (weights ``b``)."""
        return sliced_wasserstein(x, y, a, b, p=self.p, n_projections=self.n_projections,
                                  directions=self.directions, rng=self.rng)

    def extra_repr(self):
        return f"p={self.p}, n_projections={self.n_projections}"


class MongeGapRegularizer(nn.Module):
    """:func:`ottools.torch.monge_gap` as a module: ``module(x, tx)`` is the Monge gap of
    the map sampled as ``x -> tx``, to add (times a weight) to a fitting loss.

    Parameters
    ----------
    metric : str or callable, default "sqeuclidean"
    reg : float or "auto", default "auto"
    **solver_kwargs
        ``method``, ``tol``, ``maxiter``.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import MongeGapRegularizer
    >>> gap = MongeGapRegularizer(reg=0)
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> round(gap(x, 2 * x + 1).item(), 6)
    0.0
    """

    def __init__(self, metric="sqeuclidean", reg="auto", **solver_kwargs):
        super().__init__()
        unknown = set(solver_kwargs) - {"method", "tol", "maxiter"}
        if unknown:
            raise TypeError(f"Unknown argument(s) {sorted(unknown)} for MongeGapRegularizer; "
                            "valid: 'method', 'tol', 'maxiter'.")
        self.metric = metric
        self.reg = reg
        self.solver_kwargs = solver_kwargs

    def forward(self, x, tx, a=None):
        """The Monge gap of ``x -> tx`` (weights ``a``)."""
        return monge_gap(x, tx, a, metric=self.metric, reg=self.reg, **self.solver_kwargs)

    def extra_repr(self):
        return f"metric={self.metric!r}, reg={self.reg!r}"
