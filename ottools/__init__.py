"""ottools: optimal transport numerics with a Numba core and a SciPy-style API.

Entropic OT
-----------
sinkhorn          Entropic OT: Sinkhorn (log domain, scaling form), Sinkhorn-Newton-Sparse.

Costs
-----
cost_matrix       Pairwise ground costs between point clouds.

Results and warnings
--------------------
OTResult               Result object (a scipy.optimize.OptimizeResult).
OTWarning              Base warning class.
OTConvergenceWarning   Non-convergence where the return value has no status.

``import ottools`` loads NumPy, SciPy and Numba only; the differentiable layer lives in
``ottools.torch`` and is imported on demand.
"""

from ._costs import cost_matrix
from ._result import OTConvergenceWarning, OTResult, OTWarning
from ._sinkhorn import sinkhorn

__version__ = "0.1.0"

__all__ = [
    "OTConvergenceWarning",
    "OTResult",
    "OTWarning",
    "cost_matrix",
    "sinkhorn",
]
