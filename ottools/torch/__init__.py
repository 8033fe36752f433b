"""Differentiable optimal transport for PyTorch, over the ottools Numba core.

Functions
---------
sinkhorn          Entropic OT cost (0-d tensor), differentiable in ``a``, ``b``, ``cost``.
sinkhorn_loss     Entropic OT / Sinkhorn divergence between point clouds,
                  differentiable in ``x``, ``y``, ``a``, ``b``.
sliced_wasserstein                 Sliced Wasserstein distance, differentiable in x, y.
max_sliced_wasserstein             Max-sliced Wasserstein distance, differentiable in x, y.
distributional_sliced_wasserstein  v-DSW, differentiable in x, y.
monge_gap         Monge gap of a map x -> tx, differentiable in ``tx`` and ``x``.

Modules (``torch.nn.Module``)
-----------------------------
SinkhornLoss            ``sinkhorn_loss`` as a module.
SlicedWassersteinLoss   ``sliced_wasserstein`` as a module (fresh directions per call).
MongeGapRegularizer     ``monge_gap`` as a module.

Each function takes and returns tensors; the forward pass detaches its inputs, runs
the NumPy solver on the CPU (a CUDA tensor makes a round trip through host memory) and
returns the value on the input's device and dtype; the backward pass uses the envelope
theorem (plans and dual potentials of the solved problem), never unrolled iterations.
``sinkhorn_loss`` takes batches of pairs (B, N, D). A solver that does not
converge emits :class:`ottools.OTConvergenceWarning`.

This subpackage is the only part of ottools that imports torch; ``import ottools``
does not load it.
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
