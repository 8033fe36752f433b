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

__all__ = []


class StallMonitor:
    """Best point of an ascent and the evaluation count of its last improvement.

    ``window``: a fixed stall window (evaluations), or ``None`` for the default rule
    (``max(min_window, nfev_best // 2)``).
    """

    def __init__(self, *, rtol=1e-12, window=None, min_window=25):
        self.rtol, self.fixed_window, self.min_window = rtol, window, min_window
        self.t0 = time.perf_counter()
        self.best_value = -math.inf
        self.best_x = None
        self.best_err = math.inf
        self.nfev_best = 0     # evaluations when the last improvement was seen
        self.time_best = 0.0   # seconds from the start to that point
        self.n_improvements = 0
        self.err_mark = math.inf  # the error at the last improvement

    def observe(self, value, x, nfev, err=math.inf):
        """Record an iterate (value, point, evaluations so far, its error); True if it is
        the best so far. The stall clock restarts only on an improvement (see the module
        docstring)."""
        floor = 1e-15 * abs(value)
        if not value > self.best_value - floor:
            return False
        gain = value - self.best_value
        if (gain > self.rtol * max(abs(value), 1e-300) or self.best_x is None
                or err < 0.5 * self.err_mark):
            self.nfev_best = nfev
            self.time_best = time.perf_counter() - self.t0
            self.n_improvements += 1
            self.err_mark = err
        if value >= self.best_value or err < self.best_err:
            self.best_value = max(value, self.best_value)
            self.best_x = x
            self.best_err = err
        return True

    def window(self):
        if self.fixed_window is not None:
            return self.fixed_window
        return max(self.min_window, self.nfev_best // 2)

    def stalled(self, nfev):
        """True when ``window`` evaluations have passed since the last improvement."""
        return nfev - self.nfev_best >= self.window()

    def elapsed(self):
        return time.perf_counter() - self.t0
