"""Differentiable optimal transport for PyTorch, over the ottools Numba core.

The functions (``sinkhorn``, ``sinkhorn_loss``, ``monge_gap`` and the sliced family) and
modules (``SinkhornLoss``, ``SlicedWassersteinLoss``, ``MongeGapRegularizer``) have the
names, parameters and values of the NumPy API, with tensors in and out: the solve runs
on the CPU in the forward pass, which also computes the gradients (envelope theorem;
nothing is unrolled). See the guide "Differentiable OT with PyTorch". This subpackage is
the only part of ottools that imports torch.
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "ottools.torch needs PyTorch, which is not installed. Install it with "
        '`pip install "ottools[torch]"`.'
    ) from exc

from ._entropic import monge_gap, sinkhorn, sinkhorn_loss
from ._sliced import (
    distributional_sliced_wasserstein,
    max_sliced_wasserstein,
    sliced_wasserstein,
)
from ._losses import MongeGapRegularizer, SinkhornLoss, SlicedWassersteinLoss

__all__ = [
    "MongeGapRegularizer",
    "SinkhornLoss",
    "SlicedWassersteinLoss",
    "distributional_sliced_wasserstein",
    "max_sliced_wasserstein",
    "monge_gap",
    "sinkhorn",
    "sinkhorn_loss",
    "sliced_wasserstein",
]
