"""``torch.nn.Module`` wrappers of the differentiable OT functions."""

from torch import nn

from ._functions import sinkhorn_loss

__all__ = ["SinkhornLoss"]


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
        ``method``, ``tol``, ``maxiter``, ``options``, passed to every solve.

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
        unknown = set(solver_kwargs) - {"method", "tol", "maxiter", "options"}
        if unknown:
            raise TypeError(f"Unknown argument(s) {sorted(unknown)} for SinkhornLoss; valid: "
                            "'method', 'tol', 'maxiter', 'options'.")
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
