"""Shared Numba decorator options for every kernel.

``cache=True`` (compiled code is reused across processes), ``nogil=True``,
``error_model="numpy"`` (division by zero gives inf/nan instead of raising).
Never the blanket ``fastmath`` flag (True): it implies ``nnan``/``ninf`` and lets LLVM delete NaN
checks. A reduction that needs reassociation uses ``FASTMATH_SAFE``, a flag set
without ``nnan``, ``ninf`` and ``afn``.
"""

import contextlib
import os
import threading
import time

import numba
import numba.extending

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

# For helpers called once per column or per entry that take arrays and allocate none:
# without Numba's runtime (NRT) they do not update the arrays' reference counts. With it,
# a helper increments the count of each array argument on entry and decrements it on
# exit, atomically (about 20 cycles each), wherever LLVM cannot prove the pair redundant;
# inlining into a function with the runtime does not help (the inlined arguments are new
# references too), inlining into one without it does. In the semi-dual's column helper
# (seven array arguments) those updates took about 60 % of a 200 x 200 evaluation (perf).
# Such a function cannot create arrays (np.empty, slices that outlive it, argsort).
NO_NRT = {"_nrt": False}


def cast_like(arr, x):
    """``x`` converted to ``arr``'s dtype, in compiled code (the overload below): a
    scalar in a kernel's storage dtype without a one-element array to round it through
    (an allocation, which a ``NO_NRT`` function cannot make)."""
    return arr.dtype.type(x)


@numba.extending.overload(cast_like, inline="always")
def _cast_like(arr, x):
    dtype = arr.dtype

    def impl(arr, x):
        return dtype(x)

    return impl


def jit(*args, **kwargs):
    """``numba.njit`` with the project's options (extra keywords override).

    ``fastmath`` and ``_nrt`` are always given (False and True unless the caller says
    otherwise): Numba lets a function that does not set them inherit them from the
    function whose compilation compiles it first. A helper without flags called from a
    ``FASTMATH_SAFE`` kernel then rounded differently depending on which caller compiled
    it, and on whether it came from the on-disk cache (compiled by another caller in
    another process), so that a batch and one call, or the serial and row-block
    kernels, could differ in the last bits; likewise a helper reached first from a
    ``NO_NRT`` function was compiled without the runtime.
    """
    opts = dict(JIT_OPTIONS)
    opts.update(kwargs)
    opts.setdefault("fastmath", False)
    opts.setdefault("_nrt", True)
    if args and callable(args[0]) and len(args) == 1:
        return numba.njit(**opts)(args[0])
    return numba.njit(*args, **opts)


# Below this many entries a parallel launch costs more than it saves.
PARALLEL_MIN_ENTRIES = 1 << 18

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
    else the caller's Numba thread count (``numba.set_num_threads`` /
    ``NUMBA_NUM_THREADS``; not the count :func:`threads_for_load` lowered it to), at most
    one block per 32 rows. The results depend on it only through the order of float
    sums."""
    if n * m < PARALLEL_MIN_ENTRIES or _FORKED[0]:
        return 1
    return max(1, min(user_threads(), n // 32))


# ------------------------------------------------------------------- shared machines
# A parallel region ends when its slowest block does. When another process keeps one of
# the cores busy, a block on that core waits for the scheduler at every region (a
# sweep is one region), and two threads end up slower than one: the torch loss at
# n = 2000 took 0.17-0.23 s on two threads beside one CPU-bound process, 0.11 s on one.
# So the solvers run on as many threads as there are cores that other processes leave
# free, measured over the last fraction of a second from the busy time of the cores
# this process may use (/proc/stat) minus this process's own CPU time. The row blocks
# (and so every result) stay those of the caller's thread count: only who runs them
# changes.

_local = threading.local()


def user_threads():
    """The calling thread's Numba thread count before :func:`threads_for_load` lowered
    it."""
    return getattr(_local, "user", None) or numba.get_num_threads()


# On many cores the load measured for other processes carries noise (daemons; a virtual
# machine's steal time, summed over its cores): 1.1 cores on an idle 16-core machine,
# and 16 threads lowered to 15 ran the 16 row blocks in two rounds, twice the time (the
# torch loss at n = 5000: 2.07 s against 1.05 s). A load under a tenth of the cores
# counts as none (on two cores: under 0.2 of a core, which rounded away already).
_NOISE_SHARE = 0.1


class LoadProbe:
    """Cores left free by other processes, from two samples at least ``window`` seconds
    apart of (wall time, busy seconds of this process's cores, this process's CPU
    seconds). ``read_busy`` returns the busy seconds of the cores (None: unknown)."""

    def __init__(self, cpus, read_busy, window=0.2, clock=time.monotonic,
                 cpu_time=time.process_time):
        self.cpus, self.read_busy, self.window = cpus, read_busy, window
        self.clock, self.cpu_time = clock, cpu_time
        self.prev = self._sample()
        self.free = None

    def _sample(self):
        busy = self.read_busy(self.cpus)
        return None if busy is None else (self.clock(), busy, self.cpu_time())

    def threads(self, want):
        """``want`` or fewer: at most the number of cores other processes left free
        (rounded, at least 1). Unknown load, or no full window yet: the last answer
        (``want`` at first)."""
        if want <= 1 or self.prev is None:
            return want
        if self.clock() - self.prev[0] >= self.window:
            now = self._sample()
            if now is None:
                return want
            dt = now[0] - self.prev[0]
            others = max(0.0, (now[1] - self.prev[1]) - (now[2] - self.prev[2])) / dt
            if others < _NOISE_SHARE * len(self.cpus):
                others = 0.0
            self.free = len(self.cpus) - others
            self.prev = now
        if self.free is None:
            return want
        return max(1, min(want, int(self.free + 0.5)))


def _proc_stat_busy(cpus):
    """Busy seconds (all but idle and iowait; steal counts as busy) of the given cores
    since boot, from
    /proc/stat (Linux); None where it cannot be read."""
    try:
        with open("/proc/stat") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    want = {f"cpu{c}" for c in cpus}
    busy = 0
    seen = 0
    for line in lines:
        parts = line.split()
        if parts and parts[0] in want:
            vals = [int(v) for v in parts[1:9]]  # ... idle, iowait, irq, softirq, steal
            busy += sum(vals) - vals[3] - vals[4]
            seen += 1
    if seen != len(want):
        return None
    return busy / os.sysconf("SC_CLK_TCK")


def _make_probe():
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return LoadProbe(cpus, _proc_stat_busy)


_PROBE = [_make_probe()]


@contextlib.contextmanager
def threads_for_load():
    """Run the block with Numba's thread count lowered to the cores other processes
    leave free (see above); restored after. Nested uses keep the outer decision."""
    probe = _PROBE[0]
    if getattr(_local, "active", False) or probe is None or _FORKED[0]:
        yield
        return
    user = numba.get_num_threads()
    k = probe.threads(user)
    _local.active = True
    outer = getattr(_local, "user", None)  # set by pool_worker: its blocks are kept
    if k < user:
        _local.user = outer or user
        numba.set_num_threads(k)
    try:
        yield
    finally:
        if k < user:
            numba.set_num_threads(user)
            _local.user = outer
        _local.active = False


def pool_share(workers):
    """The Numba threads of each of ``workers`` pool threads that run solves side by side:
    the calling thread's count shared among them (at least 1 each)."""
    return max(1, user_threads() // max(1, workers))


@contextlib.contextmanager
def pool_worker(share, user):
    """In a pool thread that runs solves beside others: Numba's thread count ``share``
    (a new thread starts with the process's count, so ``w`` workers would launch ``w``
    times that many threads), while the row blocks stay those of the caller's ``user``
    threads: the results are those of the same solve in the caller's thread."""
    before = numba.get_num_threads()
    prev = getattr(_local, "user", None)
    numba.set_num_threads(min(share, before))
    _local.user = user
    try:
        yield
    finally:
        numba.set_num_threads(before)
        _local.user = prev
