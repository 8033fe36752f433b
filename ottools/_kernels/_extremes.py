"""The smallest and largest entry of a large cost in one pass, with a NaN flag: the
finiteness check of the validation and the cost's range (annealing, rounding floors)
from one read of the array instead of three (``isfinite``, ``min``, ``max``: 17-30 ms at
4000 x 4000 in float64; this kernel 6-9 ms on two threads)."""

import numpy as np
from numba import prange

from ._jit import jit


@jit
def rows_range_extremes(C, r0, r1):
    """``(min, max, has_nan)`` over rows ``r0:r1`` (non-empty). The selects compile to
    vector min/max; NaN is flagged separately (a select drops it)."""
    lo = C[r0, 0]
    hi = lo
    nan = False
    m = C.shape[1]
    for i in range(r0, r1):
        for j in range(m):
            x = C[i, j]
            lo = x if x < lo else lo
            hi = x if x > hi else hi
            nan |= x != x
    return lo, hi, nan


@jit(parallel=True)
def _extremes_par(C, nc):
    n = C.shape[0]
    out = np.empty((nc, 3))
    for c in prange(nc):
        lo, hi, nan = rows_range_extremes(C, c * n // nc, (c + 1) * n // nc)
        out[c, 0] = lo
        out[c, 1] = hi
        out[c, 2] = 1.0 if nan else 0.0
    lo = out[0, 0]
    hi = out[0, 1]
    nan = False
    for c in range(nc):
        lo = min(lo, out[c, 0])
        hi = max(hi, out[c, 1])
        nan = nan or out[c, 2] != 0.0
    return lo, hi, nan


@jit
def extremes(C, chunks):
    """``(min, max, has_nan)`` of a non-empty C-contiguous 2-D array, in ``chunks``
    parallel row blocks (``_jit.row_chunks``: 1 runs serially, no thread launch, as in a
    forked process); min and max as float64."""
    nc = max(1, min(chunks, C.shape[0]))
    if nc == 1:
        lo, hi, nan = rows_range_extremes(C, 0, C.shape[0])
        return np.float64(lo), np.float64(hi), nan
    return _extremes_par(C, nc)

