"""Return codes of the kernels: their own small table, distinct from the result statuses.

Plain integers (Numba folds module-level ints into constants); :class:`KernelStatus` in
``ottools._kernels`` names them for Python code. A driver translates a kernel's code into
a result status (``ottools._result``): ``DONE`` -> converged, ``BUDGET`` -> keep going or
maxiter, ``NONFINITE`` -> non-finite values, ``OUT_OF_RANGE`` -> absorb the scalings
and rebuild the kernel, then keep going; ``HANDOVER`` (batches) -> the problem is
solved by the one-problem driver instead.
"""

DONE = 0          # the stopping test passed
BUDGET = 1        # the iteration budget of this call is spent
NONFINITE = 2     # a value under/overflowed; the last finite iterate is kept
OUT_OF_RANGE = 3  # scalings left their absorption bounds: absorb, rebuild, continue
HANDOVER = 4      # a batch member that needs the one-problem driver (annealing, Newton)
