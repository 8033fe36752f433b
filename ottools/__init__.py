"""ottools: optimal transport numerics with a Numba core and a SciPy-style API.

Exact OT
--------
emd               Exact OT (earth mover's distance): network simplex, sparse plan, duals.

Entropic OT
-----------
sinkhorn          Entropic OT: Sinkhorn (log domain, scaling form), Sinkhorn-Newton-Sparse.

Sliced and one-dimensional OT
-----------------------------
wasserstein_1d                      Exact 1-D Wasserstein-p distance (weighted, batched).
sliced_wasserstein                  Sliced Wasserstein (MC, QMC, orthogonal, control variates).
projected_wasserstein               W_p^p on each of given directions.
max_sliced_wasserstein              Max-sliced Wasserstein by ascent on the sphere.
distributional_sliced_wasserstein   v-DSW: von Mises-Fisher distributions of directions.
sample_vmf                          Von Mises-Fisher samples (Wood's sampler).
mesh_measure                        Triangle meshes as area measures or oriented varifolds.

Monge gap and divergences
-------------------------
monge_gap             Monge gap of a map from samples (exact or entropic).
sinkhorn_divergence   Debiased Sinkhorn divergence between point clouds.

Many measures
-------------
pairwise_distances    OT distance matrices over collections of measures (threads or Dask).

Sparse and quadratically regularized OT
---------------------------------------
sparsity_constrained_ot   Quadratic regularization, at most max_nz non-zeros per column.
quadratic_ot              Quadratically regularized OT (sparse plans).

Costs
-----
cost_matrix       Pairwise ground costs between point clouds.
PointCloud        A point-cloud cost computed on the fly (O(n) memory), for sinkhorn.

Results and warnings
--------------------
OTResult               Result object (a scipy.optimize.OptimizeResult).
OTWarning              Base warning class.
OTConvergenceWarning   Non-convergence where the return value has no status.

``import ottools`` loads NumPy only: SciPy, Numba and the compiled kernels load on first
use (``OTResult``, a SciPy class, is defined by the first result), and the differentiable
layer lives in ``ottools.torch``, imported on demand.
"""

from ._costs import cost_matrix
from ._geometry import PointCloud
from ._mesh import mesh_measure
from ._onedim import wasserstein_1d
from ._pairwise import pairwise_distances
from ._divergence import sinkhorn_divergence
from ._emd import emd
from ._monge_gap import monge_gap
from ._result import OTConvergenceWarning, OTWarning
from ._sinkhorn import sinkhorn
from ._sliced import (
    distributional_sliced_wasserstein,
    max_sliced_wasserstein,
    projected_wasserstein,
    sample_vmf,
    sliced_wasserstein,
)
from ._sparse_ot import quadratic_ot, sparsity_constrained_ot

__version__ = "0.1.0"

__all__ = [
    "OTConvergenceWarning",
    "OTResult",
    "OTWarning",
    "PointCloud",
    "cost_matrix",
    "distributional_sliced_wasserstein",
    "emd",
    "max_sliced_wasserstein",
    "mesh_measure",
    "monge_gap",
    "pairwise_distances",
    "projected_wasserstein",
    "quadratic_ot",
    "sample_vmf",
    "sinkhorn",
    "sinkhorn_divergence",
    "sliced_wasserstein",
    "sparsity_constrained_ot",
    "wasserstein_1d",
]


def __getattr__(name):
    # OTResult subclasses scipy.optimize.OptimizeResult: defined on first access.
    if name == "OTResult":
        from . import _result

        return _result.OTResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"OTResult"})
