"""The ascent driver: quasi-Newton iterations, restarts, kink steps and Newton steps on
one objective, with the stall budget and the per-stage counts and times.

Stages, for a (semi-)dual ``obj`` (:class:`._objective.SparseDual`):

0. For ``max_nz < n``, a start with exact ties that single swaps do not reach (e.g.
   ``f = 0`` on a quantized or grid cost; :func:`._kinks.tied_start`) is tested for a
   certificate by the mix of its tie groups, else moved by a deterministic
   perturbation (:func:`._kinks.untie`) before the ascent (``_untie``).
1. BFGS or L-BFGS (:mod:`._quasi_newton`) until ``err <= tol``, ``maxiter``, the
   callback, or a failed line search.
2. After a failed line search: a restart (memory cleared) if the memory was not empty;
   else, for ``max_nz < n``, a kink step along the least-norm supergradient
   (:mod:`._kinks`), which also certifies a maximum; for ``max_nz >= n`` the rounding
   floor has been reached.
3. With ``newton_switch`` set, semismooth Newton steps on the current smooth piece
   (:mod:`._newton`) replace BFGS once ``err <= newton_switch`` (or, for
   ``max_nz >= n``, when BFGS fails); when they keep failing (a kink), BFGS takes over
   for good.
4. With ``newton_switch`` set and ``max_nz < n``: attempts of the exact active-set
   finish (:mod:`._active_set`) when the objective's progress over the last
   :data:`_KKT_SPAN` iterations falls below a threshold (relative; 1e-5, then a quarter
   after each attempt that does not certify, and the next attempt no sooner than
   ``max(_KKT_SPAN, nit // 2)`` iterations later), and before a kink step or a stall is
   accepted. An attempt tries the tie tolerances of :data:`_KKT_DELTAS` in turn. A certified attempt ends the ascent. Before a kink
   step, an attempt that only increases the objective replaces the step (the memory is
   cleared either way); elsewhere such a point is not taken.

Every accepted iterate goes through the :class:`._stall.StallMonitor`, which stops the
ascent when the objective has not increased by more than 1e-12 (relative) over its
window; once per improvement a window stall first tries a kink step (``max_nz < n``).
The driver returns an :class:`Outcome`; the public layer turns it into a result.

Dense BFGS on an objective without working sets or column blocks (``obj.compiled``:
fewer than 2**16 entries), and without a callback, runs stage 1 and the monitor's and
the finisher's bookkeeping in one compiled call
(:func:`ottools._kernels._sparse_ascent.run`) until something above is due: the same
iterates as the Python loop (tested), without its cost per iteration (the line search
loop, the objective's wrapper, and Numba's dispatch of each kernel, about as much as
the evaluations themselves at 200 x 200). The stall monitor's time of the best value
is then interpolated by evaluations within the call.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from .._result import CALLBACK, CONVERGED, MAXITER, NONFINITE, STALLED
from . import _active_set
from ._kinks import (_NNLS_FLOOR, CERTIFY_EPS, kink_step, supergradient, tied_start,
                     untie)
from ._quasi_newton import BFGS, LBFGS, search
from ._newton import DELTA0, newton_step
from ._stall import StallMonitor

__all__ = []

_KKT_SPAN = 32      # iterations over which progress is measured for the finish
_KKT_FIRST = 1e-5   # relative progress over the span that triggers the first attempt
_KKT_DELTAS = (1e-3, 1e-4, 1e-6)  # tie tolerances an attempt tries, relative to ``reg * max(b)``


class _Finisher:
    """When to try the exact active-set finish (:mod:`._active_set`), and its counts. The
    progress test's state is the array ``state`` and the ring of values ``ring``
    (:mod:`ottools._kernels._sparse_ascent`'s ``F_*`` fields and :func:`due`), shared
    with the compiled loop."""

    def __init__(self, obj, tol, out):
        from .._kernels import _sparse_ascent as K

        self._k = K
        self.obj, self.tol, self.out = obj, tol, out
        self.state = np.zeros(K.F_SIZE)
        self.state[K.F_THR] = _KKT_FIRST
        self.state[K.F_WAIT] = _KKT_SPAN
        self.state[K.F_ON] = 1.0
        self.ring = np.empty(_KKT_SPAN + 1)
        self.tried = None  # the point of the last attempt
        self.width = obj.sp.reg * float(obj.sp.bc.max())

    def due(self, nit, v):
        """Record the value of iteration ``nit``; True when an attempt is due."""
        return self._k.due(self.state, self.ring, nit, v)

    def attempt(self, x, v, nit):
        """``(status, x, v, g)``: CONVERGED (certified), or ``None`` with the point that
        increased the objective, or ``None`` and ``x`` None."""
        if self.tried is not None and np.array_equal(x, self.tried):
            return None, None, v, None
        self.tried = x.copy()
        out = self.out
        t = time.perf_counter()
        best = (None, v, None)
        for rel in _KKT_DELTAS:
            xn, vn, gn, cert, stat, solves = _active_set.finish(
                self.obj, x, v, self.tol, rel * self.width)
            out.kkt_solves += solves
            if cert:
                out.time_kkt += time.perf_counter() - t
                out.certified = True
                out.stationarity = stat
                return CONVERGED, xn, vn, gn
            if xn is not None and vn > best[1]:
                best = (xn, vn, gn)
        out.time_kkt += time.perf_counter() - t
        xn, vn, gn = best
        K = self._k
        self.state[K.F_THR] *= 0.25
        # attempts spaced geometrically
        self.state[K.F_WAIT] = nit + max(_KKT_SPAN, nit // 2)
        return None, xn, vn, gn


@dataclass
class Outcome:
    """Where an ascent ended and what it cost. ``status`` is a result status, with
    ``certified`` (a kink certificate: the public layer picks 0 or 5 from the plan's
    error); ``why`` names the stop for the message ("window", "kink", "floor", "start")."""

    status: int
    x: np.ndarray
    value: float
    grad: np.ndarray
    certified: bool = False
    why: str = ""
    nit: int = 0
    nit_bfgs: int = 0
    n_restarts: int = 0
    n_kink_steps: int = 0
    n_newton: int = 0
    n_kkt: int = 0
    kkt_solves: int = 0
    stationarity: float = math.nan
    time_kink: float = 0.0
    time_newton: float = 0.0
    time_kkt: float = 0.0
    nfev_other: int = 0  # evaluations of another objective (the dual through the semi-dual)
    time_to_best: float = 0.0
    window: int = 0


def ascend(obj, x0, *, tol, maxiter, notify=None, memory=None, stall_window=None,
           newton_switch=None):
    """Maximise ``obj`` from ``x0``; see the module docstring. ``memory``: ``None`` for
    dense BFGS, else the number of L-BFGS pairs. ``notify(x, value, err, nit)`` is called
    after every iteration, and with the point of a certified active-set finish (not
    counted as an iteration), and may raise ``StopIteration``.

    Dense BFGS on an objective the compiled loop can evaluate (``obj.compiled``), without
    ``notify``, runs its iterations in :func:`ottools._kernels._sparse_ascent.run`: the
    same iterations as the Python loop below, which handles the rest."""
    mon = StallMonitor(window=stall_window)
    v, g = obj.value_grad(x0)
    if not obj.finite(v, g):
        return Outcome(NONFINITE, x0, v, g, why="start")
    x = x0
    mon.observe(v, x, obj.nfev, obj.err(g))
    out = Outcome(MAXITER, x, v, g)
    if obj.err(g) <= tol:
        out.status = CONVERGED
        return _close(out, mon)
    if obj.k < obj.nr and tied_start(obj, x):
        if _untie(obj, x, v, g, tol, out, mon):
            out.status = CONVERGED
            return _close(out, mon)
        x, v, g = out.x, out.value, out.grad
    lb = BFGS(obj.nx) if memory is None else LBFGS(obj.nx, mem=memory)
    use_newton = newton_switch is not None
    newton = use_newton and obj.err(g) <= newton_switch
    delta = DELTA0
    status = None
    fin = _Finisher(obj, tol, out) if use_newton and obj.k < obj.nr else None
    loop = (_Compiled(obj, lb, mon, fin, tol, maxiter, newton_switch)
            if memory is None and notify is None and obj.compiled else None)
    kinked_at = -1  # the improvement a window stall last tried a kink step from
    notified = [None]  # the last point the callback saw
    try:
        while status is None:
            if out.nit >= maxiter:
                status = MAXITER
                break
            if mon.stalled(obj.nfev):
                # once per improvement: a kink step from the best point (k < n), which
                # may also certify it; else the stall is final
                if obj.k >= obj.nr or kinked_at == mon.nfev_best:
                    status, out.why = STALLED, "window"
                    break
                kinked_at = mon.nfev_best
                x = mon.best_x.copy()
                v, g = obj.value_grad(x)
                status, xn, vn, gn = _kink(obj, x, v, tol, out, fin)
                if status is not None:
                    if gn is not None:  # certified by the finish at its own point
                        x, v, g = xn, vn, gn
                    break
                lb.reset()
            elif newton:
                t = time.perf_counter()
                xn, vn, gn, delta = newton_step(obj, x, v, g, delta)
                out.time_newton += time.perf_counter() - t
                if xn is None:
                    if delta >= 1.0:  # Newton keeps failing: back to BFGS for good
                        newton = use_newton = False
                        loop = None if loop is None else loop.without_newton()
                        lb.reset()
                    continue
                out.n_newton += 1
            else:
                if loop is not None:
                    K = loop.k
                    ev, x, v, g = loop.run(x, v, g, out)
                    if ev == K.CONVERGED:
                        status = CONVERGED
                        break
                    if ev == K.DUE:
                        status, x, v, g = _attempt(fin, x, v, g, out.nit)
                        continue
                    if ev == K.NEWTON:
                        newton = True
                    if ev != K.LSFAIL:
                        continue  # MAXITER, STALL: the loop's top decides
                    ok = False
                else:
                    d, t0 = lb.direction(g)
                    ls = search(obj.trial, obj.finite, x, v, g, d, t0)
                    ok = ls.ok
                    if ok:
                        xn, vn, gn = ls.x, ls.v, ls.g
                        lb.update(xn - x, g - gn, d, gn)
                        lb.accepted(ls.t)
                        out.nit_bfgs += 1
                if not ok:  # else (xn, vn, gn) is the search's point
                    if lb.count > 0:  # restart from the steepest ascent direction
                        lb.reset()
                        out.n_restarts += 1
                        continue
                    if use_newton and obj.k >= obj.nr:  # BFGS's floor: Newton takes over
                        newton = True
                        continue
                    if obj.k >= obj.nr:
                        status, out.why = STALLED, "floor"
                        break
                    status, xn, vn, gn = _kink(obj, x, v, tol, out, fin)
                    if status is not None:
                        if gn is not None:  # certified by the finish at its own point
                            x, v, g = xn, vn, gn
                        break
                    lb.reset()
            x, v, g = xn, vn, gn
            out.nit += 1
            err = obj.err(g)
            mon.observe(v, x, obj.nfev, err)
            if notify is not None:
                notified[0] = x
                notify(x, v, err, out.nit)
            if err <= tol:
                status = CONVERGED
            elif fin is not None and fin.due(out.nit, v):
                status, x, v, g = _attempt(fin, x, v, g, out.nit)
            elif use_newton and not newton and err <= newton_switch:
                newton = True
        if status == CONVERGED and notify is not None and x is not notified[0]:
            # the finish ended the ascent at its own point: the callback sees it too
            notify(x, v, obj.err(g), out.nit)
    except StopIteration:
        status = CALLBACK
    out.status = status
    if status in (CONVERGED, CALLBACK):
        out.x, out.value, out.grad = x, v, g
    else:  # the best point visited
        out.x = mon.best_x.copy()
        out.value, out.grad = obj.value_grad(out.x)
    return _close(out, mon)


def _attempt(fin, x, v, g, nit):
    """An active-set attempt that is due: ``(status, x, v, g)``, the point moved only when
    certified: moving to a merely better one would clear the quasi-Newton memory, which
    cost more than it gained on the benchmark grid."""
    status, xn, vn, gn = fin.attempt(x, v, nit)
    if status is not None:
        return status, xn, vn, gn
    return None, x, v, g


class _Compiled:
    """The arrays of :func:`ottools._kernels._sparse_ascent.run` for one ascent: the
    current point, gradient and value, scratch, limits and counters; :meth:`run` moves
    the point and the counts between the driver and the loop."""

    def __init__(self, obj, lb, mon, fin, tol, maxiter, newton_switch):
        from .._kernels import _sparse_ascent as K

        self.k = K
        self.obj, self.lb, self.mon = obj, lb, mon
        nx = obj.nx
        self.x, self.g = np.empty(nx), np.empty(nx)
        self.val = np.zeros(1)
        self.work = tuple(np.empty(nx) for _ in range(7))
        if fin is None:
            self.fin, self.ring = np.zeros(K.F_SIZE), np.zeros(1)
        else:
            self.fin, self.ring = fin.state, fin.ring
        # the loop counts in int64: a larger maxiter (any int >= 0 is valid) is no cap
        # there, and a Python int past float64's range would make an object array
        self.lim = np.array([tol, min(maxiter, np.iinfo(np.int64).max), obj.sp.mass,
                             -math.inf if newton_switch is None else newton_switch])
        self.counts = np.zeros(4, dtype=np.int64)

    def without_newton(self):
        self.lim[3] = -math.inf
        return self

    def run(self, x, v, g, out):
        """Iterations from ``(x, v, g)`` until an event: ``(event, x, v, g)``, the
        arrays the loop's own (updated in place by the next run)."""
        K, obj, lb, mon = self.k, self.obj, self.lb, self.mon
        lb.before_run(g)
        if x is not self.x:
            self.x[:] = x
        if g is not self.g:
            self.g[:] = g
        self.val[0] = v
        c = self.counts
        c[K.C_NIT], c[K.C_NIT_BFGS], c[K.C_NFEV] = out.nit, out.nit_bfgs, obj.nfev
        c[K.C_LAST] = -1
        nfev0, t0 = obj.nfev, time.perf_counter()
        ev = K.run(self.x, self.g, self.val, obj.prob, obj.scratch, lb.state, lb.arrays,
                   self.work, mon.state, mon.best_x, self.fin, self.ring, self.lim, c)
        out.nit, out.nit_bfgs, obj.nfev = int(c[K.C_NIT]), int(c[K.C_NIT_BFGS]), int(c[K.C_NFEV])
        mon.ran(nfev0, obj.nfev, t0, time.perf_counter())
        v = float(self.val[0])
        if c[K.C_LAST] >= 0:  # the loop evaluated: the objective's cache is its last point
            obj.remember(self.x, v, self.g) if c[K.C_LAST] else obj.forget()
        lb.after_run(self.g)
        return ev, self.x, v, self.g


def _kink(obj, x, v, tol, out, fin=None):
    """A kink step from ``x`` (k < n): ``(status, x, v, g)`` with ``status`` CONVERGED
    (certified; ``out.certified`` set), STALLED (no direction increases the objective) or
    ``None`` (a step was taken: ``x, v, g`` the new point). With a finisher ``fin``, an
    active-set attempt from ``x`` comes first (once per point)."""
    if fin is not None:
        status, xn, vn, gn = fin.attempt(x, v, out.nit)
        if status is not None:
            return status, xn, vn, gn
        if xn is not None:
            out.n_kkt += 1
            return None, xn, vn, gn
    t = time.perf_counter()
    xn, vn, gn, out.stationarity, cert = kink_step(obj, x, v, tol)
    out.time_kink += time.perf_counter() - t
    if cert:
        out.certified = True
        return CONVERGED, x, v, None
    if xn is None:
        out.why = "kink"
        return STALLED, x, v, None
    out.n_kink_steps += 1
    return None, xn, vn, gn


def _untie(obj, x, v, g, tol, out, mon):
    """A start ``x`` (value ``v``, gradient ``g``) with exact ties that single swaps do
    not reach (:func:`._kinks.tied_start`; e.g. ``f = 0`` on a quantized, grid or
    constant cost, where every column's kinks meet). True when a mix of the tie groups'
    plans meets the marginals there (``out.certified``: a maximum, e.g. a constant cost).
    Else the ascent starts from :func:`._kinks.untie`'s perturbed point (``out.x``,
    ``out.value``, ``out.grad``; the monitor has seen both). Every column's kinks meet
    at the tied point: on the 20 x 15 quantized cost of the tests (k = 3) a step along
    the least-norm supergradient of the whole tie groups gained 1.8e-6 from 0.00070,
    and BFGS then crept to 0.00071 in 10,000 iterations (the maximum: 0.00185); from
    the perturbed start the ascent reaches the maximum in about 1300."""
    t = time.perf_counter()
    width = obj.sp.reg * float(obj.sp.bc.max())
    budget = [_NNLS_FLOOR]  # the least work a kink step's mix may take
    _, stat = supergradient(obj, x, CERTIFY_EPS * width, budget, groups=True)
    out.time_kink += time.perf_counter() - t
    if stat <= tol:
        out.certified, out.stationarity = True, stat
        return True
    xn = untie(obj, x)
    vn, gn = obj.value_grad(xn)
    if obj.finite(vn, gn):
        mon.observe(vn, xn, obj.nfev, obj.err(gn))
        out.x, out.value, out.grad = xn, vn, gn
    return False


def _close(out, mon):
    out.time_to_best = mon.time_best
    out.window = mon.window()
    return out
