"""Shared Numba decorator options for every kernel.

``cache=True`` (compiled code is reused across processes), ``nogil=True``,
``error_model="numpy"`` (division by zero gives inf/nan instead of raising).
Never the blanket ``fastmath`` flag (True): it implies ``nnan``/``ninf`` and lets LLVM delete NaN
checks. A reduction that needs reassociation uses ``FASTMATH_SAFE``, a flag set
without ``nnan``, ``ninf`` and ``afn``.
"""

import os

import numba

# GNU OpenMP (Numba's threading layer here) keeps its idle workers spinning for about
# 300,000 iterations after each parallel region. Between two kernel launches (Python
# work, the serial parts of a solve) the spinning worker takes a core, and when another
# process needs that core too, it slows the thread doing the work: the torch loss at
# n = 2000 ran 0.32-0.46 s beside one CPU-bound process, 0.22-0.24 s with sleeping
# workers (0.17-0.19 s either way on an idle machine: benchmarks/divergence_speed.py).
# So idle workers sleep, unless the user chose otherwise. libgomp reads the variable when
# Numba loads it, at the first parallel launch, after this module is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

JIT_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")

# Reassociation and contraction only: NaN/inf semantics are kept.
FASTMATH_SAFE = {"nsz", "arcp", "contract", "reassoc"}


def jit(*args, **kwargs):
    """``numba.njit`` with the project's options (extra keywords override)."""
    opts = dict(JIT_OPTIONS)
    opts.update(kwargs)
    if args and callable(args[0]) and len(args) == 1:
        return numba.njit(**opts)(args[0])
    return numba.njit(*args, **opts)


# Below this many entries a parallel launch costs more than it saves.
_PARALLEL_MIN_ENTRIES = 1 << 18

# Set in a process forked from this one: GNU OpenMP (Numba's default threading layer
# here) is not fork-safe, and a child that launches a parallel kernel after its parent
# did hangs or dies. Children run the serial twins instead.
_FORKED = [False]


def _mark_forked():
    _FORKED[0] = True


os.register_at_fork(after_in_child=_mark_forked)


def parallel_ok():
    """False in a process forked from one that imported the kernels (see above)."""
    return not _FORKED[0]


def row_chunks(n, m):
    """Number of row blocks for the kernels that run ``parallel=True`` over rows of an
    (n, m) array: 1 (serial, no thread launch) under 2**18 entries or in a forked child,
    else Numba's thread count (``numba.set_num_threads`` / ``NUMBA_NUM_THREADS``), at most
    one block per 32 rows. The results depend on it only through the order of float
    sums."""
    if n * m < _PARALLEL_MIN_ENTRIES or _FORKED[0]:
        return 1
    return max(1, min(numba.get_num_threads(), n // 32))
