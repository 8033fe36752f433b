"""Shared problem generators for the asv suite and benchmarks/*.py scripts."""

import os

import numpy as np

# CI runs the suite in quick mode on 2 cores: OTTOOLS_BENCH_QUICK=1 keeps sizes (and some
# parameter lists) small: asv starts a process per parameter combination.
QUICK = os.environ.get("OTTOOLS_BENCH_QUICK", "") not in ("", "0")


def sizes(full, quick):
    """Parameter list: ``quick`` when OTTOOLS_BENCH_QUICK is set, else ``full``."""
    return quick if QUICK else full


def uniform_2d_problem(n, m=None, dtype=np.float64, seed=0):
    """Uniform points in the unit square, squared Euclidean cost divided by its max."""
    m = n if m is None else m
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    y = rng.random((m, 2))
    cost = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    np.maximum(cost, 0, out=cost)
    cost /= cost.max()
    a = np.full(n, 1.0 / n)
    b = np.full(m, 1.0 / m)
    return a.astype(dtype), b.astype(dtype), np.ascontiguousarray(cost, dtype=dtype)


# Cold-start floors, the same code in asv (bench_import) and compare_peers.py: what any
# library built like ottools pays in a fresh interpreter before its own code runs.
# IMPORT_FLOOR: NumPy, the only package `import ottools` loads. FIRST_CALL_FLOOR: NumPy,
# scipy.optimize (OTResult's base class), Numba, and one trivial cached kernel (Numba's
# target initialisation on first use costs as much as its import). Each is a
# (stmt, setup) pair as asv's timeraw_ takes it; only stmt is timed.
IMPORT_FLOOR = ("import numpy", "")
# The default path they are compared with: import, then one small solve (SciPy for the
# result class and Numba load on first use, cached kernels).
FIRST_SOLVE = ("import numpy as np, ottools\n"
               "c = np.random.default_rng(0).random((50, 40))\n"
               "ottools.sinkhorn(None, None, c, 0.05)", "")
# asv pastes stmt and setup into a triple-quoted string: no backslashes in them.
_FLOOR_KERNEL = [
    "import numba",
    "@numba.njit(cache=True)",
    "def total(x):",
    "    s = 0.0",
    "    for i in range(x.shape[0]):",
    "        s += x[i]",
    "    return s",
]
FIRST_CALL_FLOOR = (
    "import numpy as np, scipy.optimize, _ottools_floor_kernel\n"
    "_ottools_floor_kernel.total(np.ones(3))",
    "import os, sys, tempfile\n"
    "d = os.path.join(tempfile.gettempdir(), 'ottools-bench-floor')\n"
    "os.makedirs(d, exist_ok=True)\n"
    "p = os.path.join(d, '_ottools_floor_kernel.py')\n"
    "if not os.path.exists(p):\n"
    f"    open(p, 'w').write(chr(10).join({_FLOOR_KERNEL!r}))\n"
    "sys.path.insert(0, d)",
)

# Imported once here, at suite import: asv's forkserver (``launch_method`` in
# asv.conf.json) imports the suite in one process and forks a child per benchmark and
# parameter set, so POT (and torch, which POT loads for its torch backend) and Numba are
# imported once, not in each of the ~140 children (3-5 s each on the 2-core machine).
# Nothing here starts threads (no kernel runs before the fork).
try:
    import ot as _ot
except ImportError:  # POT is an optional peer
    _ot = None
import numba  # noqa: E402, F401  (see above; ottools imports it lazily)


def import_pot():
    """POT, or NotImplementedError (asv skips the benchmark)."""
    if _ot is None:
        raise NotImplementedError("POT is not installed")
    return _ot


def marginal_error(P, a, b):
    """Our err on any plan (POT's included): ||P1 - a||_1 + ||P^T 1 - b||_1."""
    P = np.asarray(P, dtype=np.float64)
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())
