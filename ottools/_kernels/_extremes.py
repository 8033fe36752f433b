"""The smallest and largest entry of a large cost in one pass, with a NaN flag: the
finiteness check of the validation and the cost's range (annealing, rounding floors)
from one read of the array instead of three (``isfinite``, ``min``, ``max``: 17-30 ms at
4000 x 4000 in float64; this kernel 6-9 ms on two threads)."""

import numba.extending
import numpy as np
from numba import prange

from ._jit import jit


@jit
def _rows_extremes(C, r0, r1):
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
        lo, hi, nan = _rows_extremes(C, c * n // nc, (c + 1) * n // nc)
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
        lo, hi, nan = _rows_extremes(C, 0, C.shape[0])
        return np.float64(lo), np.float64(hi), nan
    return _extremes_par(C, nc)


def _abs_bits(C):
    """(Stub of the overload below.)"""


@numba.extending.overload(_abs_bits, inline="always")
def _abs_bits_impl(C):
    """``(bits, sign mask, bits of inf)``: ``C`` flattened (C-contiguous) and viewed as
    the signed integers of its width."""
    if C.dtype == numba.types.float32:
        def impl(C):
            return C.reshape(-1).view(np.int32), np.int32(0x7FFFFFFF), np.int32(0x7F800000)
    else:
        def impl(C):
            return (C.reshape(-1).view(np.int64), np.int64(0x7FFFFFFFFFFFFFFF),
                    np.int64(0x7FF0000000000000))
    return impl


@jit
def abs_max(C):
    """``(max |x|, has_nan)`` of a non-empty C-contiguous float32 or float64 array (the
    maximum as float64; NaN when a NaN is present, inf when an inf is). With the sign
    bit cleared, the bits of a float compare as integers in the order of ``|x|``, with
    inf above every finite value and NaN above inf: one integer max reduction, which
    vectorizes (a floating-point one keeps NaN semantics only as a serial loop: 32 us at
    256 x 256 in float64, against 2.7 us)."""
    bits, mask, inf = _abs_bits(C)
    big = bits[0] & mask
    for j in range(1, bits.size):
        x = bits[j] & mask
        big = x if x > big else big
    if big > inf:
        return np.nan, True
    out = np.empty(1, dtype=bits.dtype)
    out[0] = big
    return np.float64(out.view(C.dtype)[0]), False
