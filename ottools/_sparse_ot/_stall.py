"""The stall budget: when an ascent has stopped improving, and what it has cost.

An improvement counts when the objective exceeds the best value by more than ``rtol``
(relative, 1e-12 by default), or, at the rounding floor of the value, when the marginal
error has halved since the last improvement. The ascent has stalled when ``window`` evaluations have
passed without one. By default the window is half the evaluations that reached the last
improvement (at least ``min_window``): a stalled solve then costs at most 1.5 times the
evaluations that reached its best value (plus ``min_window``), and the budget grows with
the problem. Decisions use evaluation counts, never the clock, so that a result does not
depend on the machine's load; the clock is only read for the reported times.
"""

import math
import time

import numpy as np

__all__ = []


class StallMonitor:
    """Best point of an ascent and the evaluation count of its last improvement.

    ``window``: a fixed stall window (evaluations), or ``None`` for the default rule
    (``max(min_window, nfev_best // 2)``). The state lives in the array ``state``
    (:mod:`ottools._kernels._sparse_ascent`'s ``M_*`` fields) and the best point in
    ``best_x`` (a copy), which the compiled loop updates with the same functions.
    """

    def __init__(self, *, rtol=1e-12, window=None, min_window=25):
        from .._kernels import _sparse_ascent as K

        self._k = K
        self.state = np.zeros(K.M_SIZE)
        self.state[K.M_BEST] = -math.inf
        self.state[K.M_BEST_ERR] = math.inf
        self.state[K.M_ERR_MARK] = math.inf
        self.state[K.M_RTOL] = rtol
        self.state[K.M_WINDOW] = -1.0 if window is None else window
        self.state[K.M_MINWIN] = min_window
        self.t0 = time.perf_counter()
        self.time_best = 0.0   # seconds from the start to the last improvement
        self.best_x = None

    @property
    def nfev_best(self):
        """Evaluations when the last improvement was seen."""
        return int(self.state[self._k.M_NFEV_BEST])

    def observe(self, value, x, nfev, err=math.inf):
        """Record an iterate (value, point, evaluations so far, its error); True if it is
        the best so far. The stall clock restarts only on an improvement (see the module
        docstring)."""
        if self.best_x is None:
            self.best_x = np.empty_like(x)
        r = self._k.observe(self.state, self.best_x, value, x, nfev, err)
        if r == 2:
            self.time_best = time.perf_counter() - self.t0
        return r > 0

    def ran(self, nfev0, nfev1, t0, t1):
        """After the compiled loop ran evaluations ``nfev0..nfev1`` from time ``t0`` to
        ``t1`` (``perf_counter``): the time of an improvement it saw, interpolated by
        evaluations (the loop does not read the clock)."""
        nb = self.nfev_best
        if nb > nfev0 and nfev1 > nfev0:
            self.time_best = t0 - self.t0 + (t1 - t0) * (nb - nfev0) / (nfev1 - nfev0)

    def window(self):
        return int(self._k.window(self.state))

    def stalled(self, nfev):
        """True when ``window`` evaluations have passed since the last improvement."""
        return self._k.stalled(self.state, nfev)

    def elapsed(self):
        return time.perf_counter() - self.t0
