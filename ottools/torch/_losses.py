"""``torch.nn.Module`` wrappers of the differentiable OT functions (no parameters, no
state but the sliced loss's random generator)."""

from torch import nn

from .._costs import metric_p
from .._onedim import check_p
from .._validation import _check_int, _check_positive
from ._convert import numpy_rng, scalar
from ._entropic import monge_gap, sinkhorn_loss
from ._sliced import sliced_wasserstein

__all__ = ["MongeGapRegularizer", "SinkhornLoss", "SlicedWassersteinLoss"]


# The keyword arguments a module passes on to its function (all but the data and the
# module's own parameters): an unbalanced loss (reg_m), costs on the fly (online) and the
# solver's options were out of reach of the modules.
_PASSED = {"SinkhornLoss": ("reg_m", "method", "tol", "maxiter", "options", "online"),
           "MongeGapRegularizer": ("method", "tol", "maxiter", "options", "online")}


def _solver_kwargs(owner, kwargs):
    valid = _PASSED[owner]
    unknown = set(kwargs) - set(valid)
    if unknown:
        raise TypeError(f"Unknown argument(s) {sorted(unknown)} for {owner}; valid: "
                        f"{', '.join(map(repr, valid))}.")
    return kwargs


class SinkhornLoss(nn.Module):
    """``SinkhornLoss(reg, metric, debias, p=None, **solver_kwargs)(x, y, a, b)`` is
    :func:`ottools.torch.sinkhorn_loss` (``p``: the exponent of ``"minkowski"`` and
    ``"minkowski_p"``, refused with other metrics; ``solver_kwargs``: ``reg_m``,
    ``method``, ``tol``, ``maxiter``, ``options``, ``online``).

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

    def __init__(self, reg, metric="sqeuclidean", debias=True, *, p=None, **solver_kwargs):
        super().__init__()
        self.solver_kwargs = _solver_kwargs("SinkhornLoss", solver_kwargs)
        _check_positive(scalar(reg, "reg"), "reg")  # (at construction, not the first call)
        self.p = metric_p(metric, scalar(p, "p"))
        self.reg, self.metric, self.debias = reg, metric, debias

    def forward(self, x, y, a=None, b=None):
        return sinkhorn_loss(x, y, a, b, reg=self.reg, metric=self.metric, p=self.p,
                             debias=self.debias, **self.solver_kwargs)

    def extra_repr(self):
        p = "" if self.p is None else f", p={self.p}"
        return f"reg={self.reg}, metric={self.metric!r}{p}, debias={self.debias}"


class SlicedWassersteinLoss(nn.Module):
    """``SlicedWassersteinLoss(p, n_projections, directions, rng)(x, y, a=None, b=None)``
    is :func:`ottools.torch.sliced_wasserstein` with fresh directions at every call,
    drawn from one generator seeded by ``rng`` (an unbiased stochastic gradient in
    training, reproducibly).

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
        check_p(scalar(p, "p"))
        _check_int(n_projections, "n_projections", minimum=1)
        self.p, self.n_projections, self.directions = p, n_projections, directions
        self.rng = numpy_rng(rng)

    def forward(self, x, y, a=None, b=None):
        return sliced_wasserstein(x, y, a, b, p=self.p, n_projections=self.n_projections,
                                  directions=self.directions, rng=self.rng)

    def extra_repr(self):
        return f"p={self.p}, n_projections={self.n_projections}"


class MongeGapRegularizer(nn.Module):
    """``MongeGapRegularizer(metric, reg, p=None, **solver_kwargs)(x, tx, a=None)`` is
    :func:`ottools.torch.monge_gap` of the map sampled as ``x -> tx``, to add (times a
    weight) to a fitting loss (``p``: the exponent of ``"minkowski"`` and
    ``"minkowski_p"``, refused with other metrics; ``solver_kwargs``: ``method``,
    ``tol``, ``maxiter``, ``options``, ``online``).

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import MongeGapRegularizer
    >>> gap = MongeGapRegularizer(reg=0)
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> round(gap(x, 2 * x + 1).item(), 6)
    0.0
    """

    def __init__(self, metric="sqeuclidean", reg="auto", *, p=None, **solver_kwargs):
        super().__init__()
        self.solver_kwargs = _solver_kwargs("MongeGapRegularizer", solver_kwargs)
        if not isinstance(reg, str):
            _check_positive(scalar(reg, "reg"), "reg", allow_zero=True)
        self.p = metric_p(metric, scalar(p, "p"))
        self.metric, self.reg = metric, reg

    def forward(self, x, tx, a=None):
        return monge_gap(x, tx, a, metric=self.metric, p=self.p, reg=self.reg,
                         **self.solver_kwargs)

    def extra_repr(self):
        p = "" if self.p is None else f", p={self.p}"
        return f"metric={self.metric!r}{p}, reg={self.reg!r}"
