"""Entropic optimal transport: ``sinkhorn``, its methods and the driver that runs them.

The kernels (``ottools._kernels._sinkhorn``, ``_newton``) only iterate; everything else
is here, in Python, between kernel calls of bounded length: the stages of a solve
(epsilon-scaling, sweeps at the target ``reg``, Newton steps), absorption of the
scalings, the over-relaxation parameter, fallbacks, the error history, the callback and
Ctrl-C (a ``KeyboardInterrupt`` lands between two blocks).

Internal API for the other modules (no leading underscore, not exported):
``solve(problem, reg, settings, method, init)`` returns the :class:`OTResult` of
:func:`sinkhorn` for a validated :class:`ottools._problem.LinearProblem`;
``method_options(method, options)`` checks a method's options.
"""

import functools
import math

import numpy as np

from ._geometry import PlanOperator, _plan_stats, barycentric_map, dense_plan
from ._kernels import KernelStatus, adapts_threads, lazy
from ._problem import LinearProblem, Settings, allocate, budget_blocks, rate
from ._result import (CALLBACK, CONVERGED, MAXITER, NONFINITE, STALLED,
                      _define_result_class, make_result, solver_result)
from ._sns import NEWTON_OPTIONS, NewtonStage, OnlineNewtonStage, warmup
from ._sweeps import (ABSORB_BOUND, LOW_MIN_ENTRIES, OnlineSweeps, OnlineSymSweeps,
                      Relaxation, Sweeps, SymSweeps, UbOnlineSweeps, UbSweeps,
                      relaxed_target, tau, ub_log_iteration)
from ._validation import (_check_method, _check_option_table, _check_positive, _check_reg_m,
                          _ndim, _Option)

__all__ = ["sinkhorn"]

_k = lazy("_sinkhorn")
_lse = lazy("_lse")
_k_sym = lazy("_symmetric")
_kr = lazy("_relax")  # the over-relaxation rule and its schedule (EARLY, FIRST, DECIDE)
_jit = lazy("_jit")


_CHECK_EVERY = _Option("int", 10, lo=1)
_ANNEAL_OPTIONS = {
    "epsilon_decay": _Option("float", 0.5, lo=0.0, hi=1.0, lo_open=True, hi_open=True),
    "epsilon_start": _Option("float", None, lo=0.0, lo_open=True, none_ok=True),
}
_OPTIONS = {
    "scaling": {"check_every": _CHECK_EVERY},
    "log": {"check_every": _CHECK_EVERY,
            "epsilon_scaling": _Option("bool", False),
            **_ANNEAL_OPTIONS,
            "overrelaxation": _Option("bool", False)},
    "sns": {"check_every": _CHECK_EVERY,
            "warmup": _Option("int", 20, lo=0),
            "warmup_start": _Option("float", 0.1, lo=0.0),
            **NEWTON_OPTIONS},
    "auto": {"check_every": _CHECK_EVERY,
             "epsilon_scaling": _Option("bool", None, none_ok=True),
             "anneal_below": _Option("float", 1e-3, lo=0.0, lo_open=True),
             **_ANNEAL_OPTIONS,
             "anneal_sweeps": _Option("int", 3, lo=1),
             "anneal_sweeps_max": _Option("int", 10, lo=1),
             "anneal_newton": _Option("bool", True),
             "overrelaxation": _Option("bool", True),
             "newton": _Option("bool", True),
             "newton_after": _Option("float", 500.0, lo=0.0, lo_open=True),
             "float32_sweeps": _Option("bool", None, none_ok=True),
             **NEWTON_OPTIONS},
}
METHODS = ("auto", "log", "scaling", "sns")


def method_options(method, options):
    """``(name, checked options)`` of ``method`` (one of :data:`METHODS`)."""
    name = _check_method(method, METHODS)
    return name, _check_option_table(options, _OPTIONS[name], f"method={name!r}")


# ----------------------------------------------------------------------------- sweeps
# ----------------------------------------------------------------------------- driver
class _Run:
    """One solve: the problem, its settings, the iteration count, the error history
    (relative errors; NaN where not measured), the stages that ran and the callback."""

    def __init__(self, prob, reg, settings, method, rho=None):
        self.prob, self.reg, self.settings, self.method = prob, reg, settings, method
        self.rho = rho  # (rho_a, rho_b) of an unbalanced problem, else None
        opts = settings.options
        self.check_every = opts.get("check_every", 10)
        n, m = prob.costc.shape
        self.chunks = _k.row_chunks(n, m)
        self.plan_kernel = (_PlanPar(self.chunks) if self.chunks > 1
                            else _k.plan_from_potentials)
        # Kernels estimate err from the potentials; the final err is recomputed from the
        # plan and differs by rounding: stopping at 0.9 tol keeps success reachable.
        self.tol_abs = 0.9 * settings.tol * prob.mass
        self.a64 = prob.ac.astype(np.float64)
        self.b64 = prob.bc.astype(np.float64)
        self.loga64 = prob.loga.astype(np.float64)
        self.logb64 = prob.logb.astype(np.float64)
        # The weights as given (float64): the objective's terms are theirs.
        self.weights = (self.a64, self.b64)
        self.offset = _weight_offsets(prob, reg, rho)
        if self.offset is not None:
            _, _, al, be = self.offset
            self.a64 = self.a64 * math.exp(al)
            self.b64 = self.b64 * math.exp(be)
            self.loga64 = self.loga64 + al
            self.logb64 = self.logb64 + be
        self._cost64 = None
        self.hist = np.full(64, np.nan)
        self.nit = 0
        self.nit_newton = 0
        self.stages = []
        self._pending = False
        self.stopped = False
        self.message = None  # a message of the driver's own, overriding the status table
        self.lost = 0  # method="scaling": kernel entries that underflowed (see _finish)
        self.restarted = False  # _finish fell back to the starting point

    @property
    def cost64(self):
        if self._cost64 is None:
            costc = self.prob.costc
            if costc.dtype == np.float64 and costc.flags.c_contiguous:
                self._cost64 = costc
            else:  # a float32 problem's Newton stage: the memory edge's largest array
                self._cost64 = allocate(costc.shape, np.float64,
                                        "The float64 copy of the cost (Newton stage of a "
                                        "float32 problem)")
                self._cost64[...] = costc
        return self._cost64

    def remaining(self):
        return self.settings.maxiter - self.nit

    def working(self, f, g):
        """The solvers' potentials ``(f + s_a, g - s_b)`` of the potentials ``(f, g)`` of
        the problem as given (see :func:`_weight_offsets`; the same arrays without an
        offset)."""
        if self.offset is None:
            return f, g
        sa, sb, _, _ = self.offset
        return f + sa, g - sb

    def given(self, f, g):
        """The inverse of :meth:`working`: the potentials of the problem as given."""
        if self.offset is None:
            return f, g
        sa, sb, _, _ = self.offset
        return f - sa, g + sb

    def sweeps(self, f0, g0, bound, low=False):
        """The sweeps object of this problem (balanced, unbalanced, or online); ``low``:
        float32 sweeps first on a float64 dense cost (``ottools._sweeps.Sweeps``)."""
        if self.prob.geometry:
            return (OnlineSweeps if self.rho is None else UbOnlineSweeps)(self, f0, g0)
        return (Sweeps if self.rho is None else UbSweeps)(self, f0, g0, bound, low)

    # ---------------------------------------------------------------- history
    def _stage(self, stage):
        if not self.stages or self.stages[-1] != stage:
            self.stages.append(stage)

    def record(self, err_abs, stage, newton=False, pending=False):
        """One iteration done; ``err_abs`` the absolute error of the new state (NaN if
        unknown; ``pending``: it will be known after the next row pass)."""
        self.nit += 1
        self.nit_newton += bool(newton)
        if self.nit >= self.hist.size:
            self.hist = np.concatenate([self.hist, np.full(self.hist.size, np.nan)])
        self.hist[self.nit] = err_abs / self.prob.mass
        self._pending = pending
        self._stage(stage)

    def amend(self, err_abs):
        """The error of the current state, measured late (see ``record``)."""
        if self._pending:
            self.hist[self.nit] = err_abs / self.prob.mass
            self._pending = False

    def record_block(self, errs, k, code, stage, measured):
        """A sweeps block of ``k`` iterations whose kernel filled ``errs`` (absolute
        errors of the states after 0..k iterations of the block; see
        :func:`ottools._kernels._sinkhorn.scaling_sweep`). ``measured``: the sweeps ran at
        ``reg`` (at another regularization the errors measure another problem: NaN)."""
        e0 = float(errs[0])
        if measured and math.isfinite(e0):
            self.amend(e0)
        if k <= 0:
            return
        end_known = code in (KernelStatus.DONE, KernelStatus.NONFINITE)
        # the k iterations at once: what k calls of ``record`` would store (inf, the
        # kernel's "unknown", becomes NaN)
        start = self.nit + 1
        while start + k > self.hist.size:
            self.hist = np.concatenate([self.hist, np.full(self.hist.size, np.nan)])
        vals = self.hist[start:start + k]
        if measured:
            np.divide(errs[1:k + 1], self.prob.mass, out=vals)
            vals[np.isinf(vals)] = np.nan
        else:
            vals[:] = np.nan
        if not end_known:
            vals[-1] = np.nan
        self.nit += k
        self._pending = measured and not end_known
        self._stage(stage)

    def last_err(self):
        """The most recent known relative error (inf if none)."""
        h = self.hist[:self.nit + 1]
        h = h[np.isfinite(h)]
        return float(h[-1]) if h.size else math.inf

    def history(self):
        return self.hist[1:self.nit + 1].copy()

    # ---------------------------------------------------------------- callback
    def notify(self, f, g, err, stage):
        """Call the callback (if any) with the current iterate; True if it asked to stop."""
        cb = self.settings.callback
        if cb is None:
            return False
        fe, ge = _expand(self, *self.given(f, g))
        inter = make_result(f=fe, g=ge, nit=self.nit, err=float(err), method=self.method,
                            stage=stage, nit_newton=self.nit_newton)
        try:
            cb(inter)
        except StopIteration:
            self.stopped = True
            return True
        return False


def _balance_mass(prob, reg, rho):
    """The scale of an unbalanced problem's ``err``: the mass at which its penalties
    balance, ``sum(a)**(1 - w) * sum(b)**w`` with ``w = (rho_b + reg) / (rho_a + rho_b +
    2 reg)`` (``sum(b)`` when ``b`` is hard, ``sqrt(sum(a) sum(b))`` for equal ``rho``):
    the equal mass of the working problem (:func:`_weight_offsets`), about the plan's.
    Relative to ``sum(a)`` alone, masses 0.0034 and 946 with ``b`` hard (a plan of 946)
    asked the marginals for 3e-12 of 946, below their float64 rounding (status 4 once
    the iterations reached tol); relative to the larger mass, masses 1 and 100 (a plan
    of 10) got a tolerance 10 times looser than balanced problems'."""
    ra, rb = rho
    ma = prob.mass
    mb = float(prob.bc.sum(dtype=np.float64))
    if math.isinf(ra) and math.isinf(rb):
        return ma
    w = 0.0 if math.isinf(ra) else (1.0 if math.isinf(rb) else (rb + reg) / (ra + rb + 2 * reg))
    return math.exp((1.0 - w) * math.log(ma) + w * math.log(mb))


def _weight_offsets(prob, reg, rho):
    """``(s_a, s_b, alpha, beta)`` of the equivalent unbalanced problem on which the
    solvers work, or None (balanced, or offsets small against the costs).

    Unbalanced potentials are not translation-invariant: they move by about ``reg_m``
    times the log of the masses' ratio (masses 1 and 100 with ``reg_m = 1e3``: ``f``
    near -2300, ``g`` near +2300), and each plan entry ``exp((f_i + g_j - C_ij) / reg)``
    carries their rounding, ``eps (|f| + |g|) / reg`` (1e-9 at ``reg = 1e-3``: the Newton
    steps stalled at err 6.5e-9 against tol 1e-9, where the log-domain sweeps needed
    59,000 iterations). With ``f~ = f + s_a``, ``g~ = g - s_b`` and the weights ``a
    e^alpha``, ``b e^beta``, ``alpha = s_a / rho_a``, ``beta = -s_b / rho_b``, the targets
    ``a e^alpha exp(-f~ / rho_a)`` and the plan ``a e^alpha b e^beta exp((f~ + g~ - C) /
    reg)`` are those of ``(f, g)`` exactly when ``alpha + beta + (s_a - s_b) / reg = 0``;
    ``alpha - beta = log(m_b / m_a)`` makes the two masses equal, where the potentials
    are of the size of the costs (a hard side keeps its weights: ``alpha = 0`` or
    ``beta = 0``)."""
    if rho is None or prob.ac.size == 0 or prob.bc.size == 0:
        return None
    ra, rb = rho
    ma = float(prob.ac.sum(dtype=np.float64))
    mb = float(prob.bc.sum(dtype=np.float64))
    r = math.log(mb) - math.log(ma)
    # s_b = kappa s_a; alpha - beta = s_a (1 / rho_a + kappa / rho_b) = r
    kappa = (1.0 / ra + 1.0 / reg) / (1.0 / rb + 1.0 / reg)
    sa = r / (1.0 / ra + kappa / rb)
    sb = kappa * sa
    if not (math.isfinite(sa) and math.isfinite(sb)) or abs(sa) + abs(sb) <= prob.cost_scale:
        return None
    return sa, sb, sa / ra, -sb / rb


class _PlanPar:
    """``plan_from_potentials`` with the serial signature, running row blocks in
    parallel."""

    def __init__(self, chunks):
        self.chunks = chunks

    def __call__(self, loga, logb, cost, reg, f, g, P):
        return _k.plan_from_potentials_par(loga, logb, cost, reg, f, g, self.chunks, P)


# Sweeps at reg before the Newton stage may start (its rate estimate needs a few blocks).
# On a point cloud a sweep costs two exponentials per entry and a Newton step about two
# sweeps, so the stage may start after 20: 1.1x-1.7x faster online at n = 1000 and 3000,
# 2-D and 10-D, reg 1e-3 and 1e-4; on the dense cost 20 was 0.9x-1.2x, so 40 stays.
NEWTON_MIN_SWEEPS = 40
_NEWTON_MIN_SWEEPS_ONLINE = 20


def _sweep_stage(run, sw, *, stage, tol_abs, relax=None, newton_after=None, budget=None,
                 fallback=True, more=None, report=None):
    """Sweeps at ``sw.reg`` until ``tol_abs``, the budget, a callback stop, or
    (``newton_after``) until the observed rate predicts more than ``newton_after`` further
    sweeps. A scaling that under/overflows is replaced by an exact log-domain iteration
    (``fallback``) or ends the stage (status 2). ``more = (extra, loose)``: once the budget
    is spent, ``extra`` more sweeps if the last known absolute error is above ``loose``.
    ``report`` (a dict) receives that error as ``"err"`` when the stage ends on its budget.
    Returns the driver status (None: switch to the next stage).

    Decisions (the over-relaxation parameter, the switch to Newton steps) are taken every
    ``DECIDE`` sweeps of ``ottools._kernels._relax`` (the first after its ``EARLY`` plain
    sweeps, then ``FIRST`` if the rate had not settled) whatever the callback's period, so
    that a callback never changes the iterates; kernel calls are bounded (Ctrl-C lands
    between two of them).
    """
    n, m = run.prob.costc.shape
    callback = run.settings.callback is not None
    relax = relax or Relaxation(False)
    at_reg = sw.reg == run.reg
    budget = run.remaining() if budget is None else min(budget, run.remaining())
    newton = newton_after is not None and at_reg
    least = _NEWTON_MIN_SWEEPS_ONLINE if run.prob.geometry else NEWTON_MIN_SWEEPS
    decide = relax.enabled or newton
    every = run.check_every if callback else None
    big = max(10, budget_blocks(n * m, 1 << 20))
    errs = np.empty(max(big, every or 0, 20) + 2)
    done = 0
    window = []
    early = relax.enabled and relax.omega == 1.0
    next_decision = _kr.EARLY if early else _kr.DECIDE
    # callbacks every `every` iterations of the whole solve (the annealing levels, a
    # stage each, are shorter than `every`: they called none)
    next_cb = (run.nit // every + 1) * every if callback else None
    last = math.inf  # the last known absolute error of the stage
    while True:
        if budget <= 0:
            if more is None or not last > more[1] or run.remaining() <= 0:
                if report is not None:
                    report["err"] = last
                break
            budget = min(more[0], run.remaining())
            more = None
        size = min(budget, big)
        if decide:
            size = min(size, next_decision - done)
        if callback:
            size = min(size, next_cb - run.nit)
        errs[:size + 1] = np.inf
        k, code = sw.sweep(size, tol_abs, relax.omega, errs)
        budget -= k
        done += k
        if k > 0 and math.isfinite(errs[k - 1]):
            last = float(errs[k - 1])
        run.record_block(errs, k, code, stage, measured=at_reg)
        if code == KernelStatus.DONE:
            return CONVERGED
        if decide:
            window.append(errs[:k][np.isfinite(errs[:k])])
        if code == KernelStatus.NONFINITE:
            if not fallback:
                return NONFINITE
            relax.fail()
            decide = newton
            if budget <= 0:
                break
            k, code, e = sw.log_step(tol_abs)
            if code == KernelStatus.DONE:
                run.amend(e)
                return CONVERGED
            if code == KernelStatus.NONFINITE:
                return NONFINITE
            run.record(math.nan, stage, pending=at_reg)
            budget -= 1
            done += 1
            window = []
            next_decision = done + _kr.DECIDE
            continue
        if decide and done >= next_decision:
            # (float64, finite, contiguous: what Relaxation.update takes)
            block_errs = np.concatenate(window) if window else np.empty(0)
            next_decision = done + relax.update(block_errs, early)
            early = False
            window = [block_errs[-1:]]
            if newton and done >= least and (
                    not relax.enabled or relax.omega == 1.0 or relax.settled >= 1):
                # Predicted further sweeps at the rate of this block.
                lam = rate(block_errs)
                if lam >= 1.0:
                    return None  # stalled: Newton steps finish
                err = float(block_errs[-1]) if block_errs.size else math.inf
                if lam > 0.0 and err > tol_abs:
                    # tol = 0 (run to maxiter): no finite count of sweeps reaches it
                    further = (math.log(tol_abs / err) / math.log(lam) if tol_abs > 0
                               else math.inf)
                    if further > newton_after:
                        return None
        if callback and run.nit >= next_cb:
            next_cb = (run.nit // every + 1) * every
            if run.notify(*sw.potentials(), run.last_err(), stage):
                return CALLBACK
    return MAXITER


# The relative error above which an annealing level of ``auto`` takes more sweeps
# (``anneal_sweeps_max``).
_ANNEAL_LOOSE = 0.05


def _anneal(run, sw, schedule, *, sweeps, level_tol, relax=None, more=None, newton=None):
    """Epsilon-scaling: a few sweeps at each regularization of ``schedule`` (decreasing,
    above ``reg``), warm-starting the potentials (``more``: see :func:`_sweep_stage`);
    ``newton`` (a :class:`_LevelNewton`): Newton steps at the levels it wants
    (:meth:`_LevelNewton.wanted`). The errors measure other problems:
    NaN in the history.
    Returns the driver status reached (None: go on)."""
    for eps in schedule:
        if run.remaining() <= 0:
            return MAXITER
        sw.set_reg(eps)
        report = {}
        status = _sweep_stage(run, sw, stage="anneal", tol_abs=level_tol, budget=sweeps,
                              relax=relax, more=more, report=report)
        if status in (NONFINITE, CALLBACK):
            return status
        if newton is not None and newton.wanted(eps, report.get("err", 0.0)):
            if newton(sw, eps) == CALLBACK:
                return CALLBACK
    return None


# Newton iterations (steps and fallback sweeps) at most per annealing level, and the
# levels that take them: below this fraction of the cost's range (_LevelNewton).
_LEVEL_NEWTON_STEPS = 10
_LEVEL_NEWTON_BELOW = 1e-4


class _LevelRun:
    """The driver's ``run`` as a Newton stage sees it at an annealing level ``reg``: the
    tolerance is the level's, its iterations count (with NaN errors: they measure another
    problem; at most ``left``), no late error is amended, and the callback comes every
    ``check_every`` iterations of the whole solve."""

    def __init__(self, run):
        self._run = run
        self.reg = run.reg
        self.tol_abs = run.tol_abs
        self.left = 0
        self.message = None
        self.called = run.nit

    def __getattr__(self, name):
        return getattr(self._run, name)

    def remaining(self):
        return min(self._run.remaining(), self.left)

    def record(self, err_abs, stage, newton=False, pending=False):
        self.left -= 1
        self._run.record(math.nan, "anneal", newton=newton)

    def amend(self, err_abs):
        pass

    def notify(self, f, g, err, stage):
        run = self._run
        every = run.check_every
        if run.settings.callback is None or run.nit // every == self.called // every:
            return False
        self.called = run.nit
        return run.notify(f, g, math.nan, "anneal")


class _LevelNewton:
    """Newton steps at an annealing level (``auto``, balanced problems) below ``below``
    (``_LEVEL_NEWTON_BELOW`` times the cost's range: where sweeps converge slowly) whose
    sweeps left the error above the level's tolerance: until that tolerance or
    ``_LEVEL_NEWTON_STEPS`` iterations, then the sweeps go on from the result.

    The sweeps leave each level near 0.04 of the mass; at small ``reg`` those errors
    compound: 1-D at ``reg`` 6e-8 of the range (n = 1000) reached ``reg`` at 0.7 and the
    final Newton stage did not converge in 2457 steps (64 s); uniform 2-D points at 1e-6
    took 282 Newton steps (2.9 s; 26 and 0.34 s with the level steps). Above 1e-4 of the
    range the sweeps and the final stage do well alone, and a Newton step on a level's
    denser plan costs 15-25 sweeps (2-D points at ``reg`` 1e-4 with level steps from
    1e-3 of the range: 1.7 times slower). Levels above it take them too from the first
    whose sweeps, with the extension of ``anneal_sweeps_max`` when it exceeds
    ``anneal_sweeps``, left the error above ``loose`` (the extension's threshold) on:
    the Euclidean cost of uniform 2-D points (n = 1000, ``reg`` 1e-4 of the largest
    cost) ends every level from 1e-2 down near 0.06-0.08, and the final stage crawled
    from there (203 damped Newton steps, 1.8 s, with 1e-13 of the mass dropped from its
    Hessian: not the sparsification; its plan falls apart into blocks, 38 components of
    the entries above 1e-12 of the largest, whose relative masses only the sweeps and
    steps at larger regularizations move) where level steps give 29 in all and 0.43 s.
    The stage (two float64 arrays of the cost's shape) is built at its first use."""

    def __init__(self, run, level_tol, below, loose):
        self.run = run
        self.level_tol = level_tol
        self.below = below
        self.loose = loose
        self.loose_seen = False
        self.stage = None
        self.view = None

    def wanted(self, eps, err):
        """Whether the level ``eps`` whose sweeps left the absolute error ``err`` above
        the level's tolerance takes Newton steps: below ``below``, and at any level from
        the first whose sweeps (with the extension of ``anneal_sweeps_max`` when it
        exceeds ``anneal_sweeps``) left it above ``loose`` on: the smaller levels
        balance no better (W1 cost of 2-D points, n = 1000, reg 1e-4: 38 Newton steps in
        all with the loose levels alone, 29 and 0.43 s against 0.49 s with the levels
        after them, min-max 0.42-0.43 / 0.48-0.59 over 3 rounds)."""
        self.loose_seen = self.loose_seen or err > self.loose
        return err > self.level_tol and (eps < self.below or self.loose_seen)

    def __call__(self, sw, eps):
        run = self.run
        if self.stage is None:
            self.view = _LevelRun(run)
            self.stage = _build_newton_stage(self.view)
        view = self.view
        view.reg = eps
        view.tol_abs = self.level_tol
        view.left = _LEVEL_NEWTON_STEPS
        view.called = run.nit  # (the sweeps called back at the multiples up to here)
        f, g = sw.potentials()
        f = np.ascontiguousarray(f, dtype=np.float64)
        g = np.ascontiguousarray(g, dtype=np.float64)
        status = self.stage.run_steps(f, g)
        if status == CALLBACK:
            return CALLBACK
        if status != NONFINITE and np.all(np.isfinite(f)) and np.all(np.isfinite(g)):
            sw.set_potentials(f, g)
        return None

    def release(self):
        self.stage = self.view = None


def _schedule(run, opts, start=None):
    """Regularizations ``eps_0 * decay**k`` above ``reg``, ``eps_0`` the given start or the
    range of the cost (max - min)."""
    eps0 = opts["epsilon_start"] if opts["epsilon_start"] is not None else start
    if eps0 is None:
        eps0 = run.prob.spread
    out = []
    eps = eps0
    while eps > run.reg and len(out) < 200:
        out.append(eps)
        eps *= opts["epsilon_decay"]
    return out


# Exact log-domain iterations a warm start of the scaling form may take before its kernel
# is built for good (each one balances the potentials: one is enough unless init is wild).
_WARM_LOG_STEPS = 5


def _solve_scaling(run, f0, g0, warm=False):
    """The plain scaling form ``u <- a / (K v)``, ``v <- b / (K^T u)``: the kernel is built
    once around the starting potentials and never rebuilt; an under/overflow ends the solve
    (status 2). A warm start (``warm``) whose kernel under/overflows before the first sweep
    (potentials far from balanced, e.g. ``g = 0`` with costs of 1000 at ``reg`` 0.1) is
    first moved by exact log-domain iterations (at most ``_WARM_LOG_STEPS``), then the
    scaling form starts around the balanced potentials."""
    sw = run.sweeps(f0, g0, math.inf)
    sw.set_reg(run.reg)
    start = run.nit
    status = _sweep_stage(run, sw, stage="sweeps", tol_abs=run.tol_abs, fallback=False)
    steps = 0
    while (warm and status == NONFINITE and run.nit == start and steps < _WARM_LOG_STEPS
           and run.remaining() > 0):
        k, code, e = sw.log_step(run.tol_abs)
        steps += 1
        if code == KernelStatus.DONE:
            run.amend(e)
            return sw.potentials() + (CONVERGED, None)
        if code == KernelStatus.NONFINITE:
            break
        run.record(math.nan, "sweeps", pending=True)
        start = run.nit
        status = _sweep_stage(run, sw, stage="sweeps", tol_abs=run.tol_abs, fallback=False)
    if status == NONFINITE:
        # The scalings' last finite state may hold u of 1e308 (a plan of 1e160, err
        # 5e160, from costs in [-5, -4] at reg 1e-3): its f with g the exact column
        # update, so that the plan returned is bounded (each column holds b_j).
        return _rebalance(run, *sw.potentials()) + (NONFINITE, None)
    # Kernel entries below the smallest normal number lost their digits (0 or subnormal):
    # the iterations solved another problem, on the rest of the support, if the plan of
    # the potentials has mass there. Its plan (from the potentials, exact exponentials)
    # then measures err, and _finish reports the loss (a 3 x 4 problem at reg 1e-3, costs
    # up to 0.93: success with err 8e-10 before, plan entries off by 0.17).
    run.lost = int(np.count_nonzero(sw.K < np.finfo(sw.K.dtype).tiny))
    return sw.potentials() + (status, None if run.lost else sw)


def _solve_log(run, f0, g0):
    """Log-stable Sinkhorn (absorption-stabilized scaling), optionally annealed and
    over-relaxed."""
    opts = run.settings.options
    sw = run.sweeps(f0, g0, ABSORB_BOUND[run.prob.dtype])
    if opts["epsilon_scaling"]:
        status = _anneal(run, sw, _schedule(run, opts), sweeps=run.settings.maxiter,
                         level_tol=max(run.tol_abs, 1e-3 * run.prob.mass))
        if status is not None:
            return sw.potentials() + (status, None)
    if run.rho is not None and not run.prob.geometry and _ub_floor_binds(run):
        return _ub_exact_stage(run, *sw.potentials())
    sw.set_reg(run.reg)
    status = _sweep_stage(run, sw, stage="sweeps", tol_abs=run.tol_abs,
                          relax=Relaxation(opts["overrelaxation"]))
    return sw.potentials() + (status, sw)


def _ub_floor_binds(run):
    """Whether the absorbed unbalanced sweeps would stall above ``tol``. They hold ``f = F
    + reg log(u / a)``, to ``reg`` times the rounding of ``u``, and the targets ``a
    exp(-f / rho)`` amplify that by ``1 / rho``: a floor of about ``(reg / rho) eps`` of
    the mass (reg_m 1e-10 at reg 0.05 stalled at err 7e-9 for 10,000 sweeps). Only for a
    ``rho`` small against ``reg`` (a floor above 1e-12 of the mass: ``rho`` below
    ``reg / 4500``): ``tol = 0``, run to ``maxiter``, took the exact iterations at every
    ``rho`` (2000 of them to err 1e-4 where the sweeps and the Newton finish reached
    5e-15 in 136)."""
    floor = run.reg / min(run.rho) * np.finfo(np.float64).eps * run.prob.mass
    return floor > run.tol_abs and floor > 1e-12 * run.prob.mass


def _ub_exact_stage(run, f, g):
    """The damped log-domain iterations on the potentials themselves
    (:func:`ottools._sweeps.ub_log_iteration`: two passes of exponentials each), for an
    unbalanced problem whose ``rho`` is so small against ``reg`` that the absorbed sweeps
    stall above ``tol`` (:func:`_ub_floor_binds`). A damping ``rho / (rho + reg)`` that small
    contracts fast: a few iterations. Returns ``(f, g, status, None)``."""
    f = np.array(f, dtype=np.float64)
    g = np.array(g, dtype=np.float64)
    every = run.check_every if run.settings.callback is not None else None
    exact = False
    while run.remaining() > 0:
        k, code, e = ub_log_iteration(run, run.reg, f, g, exact)
        if exact:
            run.amend(e)
        if code == KernelStatus.DONE:
            return f, g, CONVERGED, None
        if code == KernelStatus.NONFINITE:
            return f, g, NONFINITE, None
        run.record(math.nan, "sweeps", pending=True)
        exact = True
        if every and run.nit % every == 0 and run.notify(f, g, run.last_err(), "sweeps"):
            return f, g, CALLBACK, None
    return f, g, MAXITER, None


def _build_newton_stage(run):
    """The Newton stage of ``run`` (or of its view at an annealing level): online on a
    point cloud, with the Newton options of the run."""
    opts = run.settings.options
    kind = OnlineNewtonStage if run.prob.geometry else NewtonStage
    return kind(run, **{k: opts[k] for k in NEWTON_OPTIONS})


def _newton_stage(run, f, g, give_up=None):
    """Newton steps from ``(f, g)``; returns ``(f, g, status, gave_up)``: ``gave_up`` when
    ``give_up`` failed steps came without halving the error (None: never)."""
    stage = _build_newton_stage(run)
    stage.give_up = give_up
    f = np.ascontiguousarray(f, dtype=np.float64)
    g = np.ascontiguousarray(g, dtype=np.float64)
    if run.rho is None:
        # A gauge far off the costs (a warm start of spread 1e4 x the cost range leaves
        # f near -3e4, g near +3e4 after its first sweeps) costs eps |f| / reg per plan
        # entry: the steps stalled at err 2e-8 where log converged. Centred then.
        c = run.prob.gauge_shift(f, g, run.a64, run.b64)
        if abs(c) > run.prob.cost_scale:
            f = f + c
            g = g - c
    status = stage.run_steps(f, g)
    return f, g, status, stage.gave_up


def _solve_sns(run, f0, g0, warm):
    """Sinkhorn-Newton-Sparse: annealed log-domain warm-up (at ``reg`` only from a warm
    start), then Newton steps."""
    opts = run.settings.options
    f, g = f0.copy(), g0.copy()
    status = warmup(run, f, g, min(opts["warmup"], run.settings.maxiter),
                    0.0 if warm else opts["warmup_start"])
    if status is not None:
        return f, g, status, None
    f, g, status, _ = _newton_stage(run, f, g)
    return f, g, status, None


def _float32_sweeps(run):
    """``options["float32_sweeps"]`` of ``auto``, None resolved: True for float64 dense
    costs of at least ``LOW_MIN_ENTRIES`` entries (``ottools._sweeps``)."""
    low = run.settings.options.get("float32_sweeps")
    if low is None:
        n, m = run.prob.costc.shape
        low = not run.prob.geometry and n * m >= LOW_MIN_ENTRIES
    return bool(low)


def _solve_auto(run, f0, g0, warm):
    """Epsilon-scaling when ``reg`` is small against the cost's range, over-relaxed
    log-stable sweeps at ``reg``, and Newton steps once the observed rate predicts more
    than ``newton_after`` further sweeps (see :func:`sinkhorn`)."""
    opts = run.settings.options
    prob = run.prob
    if run.rho is not None and not prob.geometry and _ub_floor_binds(run):
        return _ub_exact_stage(run, f0, g0)
    spread = prob.spread
    sw = run.sweeps(f0, g0, ABSORB_BOUND[prob.dtype], _float32_sweeps(run))
    anneal = opts["epsilon_scaling"]
    if anneal is None:
        anneal = spread > 0 and run.reg < opts["anneal_below"] * spread
        if anneal and warm:
            # A warm start close to the solution skips the annealing.
            sw.set_reg(run.reg)
            errs = np.full(3, np.inf)
            k, code = sw.sweep(2, run.tol_abs, 1.0, errs)
            run.record_block(errs, k, code, "sweeps", measured=True)
            if code == KernelStatus.DONE:
                return sw.potentials() + (CONVERGED, sw)
            anneal = not (errs[1] <= 1e-2 * prob.mass)
    if anneal:
        # More sweeps at a level while its relative error is above _ANNEAL_LOOSE:
        # clusters of unequal masses (6 in 5-D, n = 1000, reg 6.7e-6 of the range) left
        # each level at 0.16 and the Newton steps wandered (496 of them, 2.8 s; 48 and
        # 0.5 s with the extension), where the uniform grids' levels end below 0.07
        # (0-14 more sweeps, the same Newton steps).
        level_tol = max(run.tol_abs, 1e-2 * prob.mass)
        loose = max(level_tol, _ANNEAL_LOOSE * prob.mass)
        extra = opts["anneal_sweeps_max"] - opts["anneal_sweeps"]
        newton = (_LevelNewton(run, level_tol, _LEVEL_NEWTON_BELOW * spread, loose)
                  if opts["newton"] and opts["anneal_newton"] and run.rho is None
                  else None)
        status = _anneal(run, sw, _schedule(run, opts), sweeps=opts["anneal_sweeps"],
                         level_tol=level_tol, more=(extra, loose) if extra > 0 else None,
                         newton=newton)
        if newton is not None:
            newton.release()
        if status is not None:
            return sw.potentials() + (status, None)
    status = _final_sweeps(run, sw)
    if status is not None:
        return sw.potentials() + (status, sw)
    f, g = sw.potentials()
    f, g, status, gave_up = _newton_stage(
        run, f, g, give_up=_REANNEAL_FAILS if anneal and run.rho is None else None)
    if not gave_up or run.remaining() <= 0:
        return f, g, status, None
    # The Newton steps fail from where the annealing left the potentials: clusters whose
    # mass the coarse levels' few sweeps did not balance before the levels decoupled
    # them (6 clusters in 5-D, weights over 8 orders of magnitude, reg 1e-6 of the range:
    # the error froze near 9e-5, where neither the sweeps (10,000 of them) nor the Newton
    # steps (their Hessian is block diagonal to 1e-15: ~850 components) move mass across
    # the blocks; 366 Newton steps and 60-165 s, status 4). Annealed again from the
    # range, each level swept to 1e-3 of the mass (at most _REANNEAL_SWEEPS), then the
    # sweeps and the Newton stage as before: 1.3 s.
    # (stopped by maxiter or a callback before it is done, the solve returns the Newton
    # stage's point, not a coarser one: maxiter=131 on that problem gave err 1.98 where
    # the Newton stage had left 9.3e-5)
    f_n, g_n, err_n = f.copy(), g.copy(), run.last_err()
    sw.set_potentials(f, g)
    status = _anneal(run, sw, _schedule(run, opts), sweeps=_REANNEAL_SWEEPS,
                     level_tol=max(run.tol_abs, 1e-3 * prob.mass))
    if status is not None:
        return f_n, g_n, status, None
    status = _final_sweeps(run, sw)
    if status is not None:
        if status != CONVERGED and not run.last_err() <= err_n:
            return f_n, g_n, status, None
        return sw.potentials() + (status, sw)
    f, g = sw.potentials()
    f, g, status, _ = _newton_stage(run, f, g)
    return f, g, status, None


def _final_sweeps(run, sw):
    """Over-relaxed sweeps at ``reg`` (stage 2 of ``auto``), handing over to the Newton
    stage when their rate predicts more than ``newton_after`` further sweeps."""
    opts = run.settings.options
    sw.set_reg(run.reg)
    return _sweep_stage(run, sw, stage="sweeps", tol_abs=run.tol_abs,
                        relax=Relaxation(opts["overrelaxation"]),
                        newton_after=opts["newton_after"] if opts["newton"] else None)


# Failed Newton steps (without halving the error) after which an annealed ``auto`` solve
# anneals again with tighter levels (_solve_auto), and the sweeps per level then.
_REANNEAL_FAILS = 4
_REANNEAL_SWEEPS = 50


def _solve_symmetric(run, f0, cold):
    """``W(a, a)`` with a symmetric cost: averaged symmetric sweeps (annealed only with
    ``options["epsilon_scaling"] = True``)."""
    opts = run.settings.options
    spread = run.prob.spread
    sw = (OnlineSymSweeps(run, f0, cold) if run.prob.geometry
          else SymSweeps(run, f0, ABSORB_BOUND[run.prob.dtype], cold, _float32_sweeps(run)))
    # The averaged iterations converge in tens of sweeps from a cold start at every reg
    # (measured: 14-22 sweeps at reg / range from 1e-2 down to 2e-6); annealing costs a
    # kernel rebuild per level for nothing, so it runs only when asked for.
    if opts.get("epsilon_scaling") and spread > 0:
        status = _anneal(run, sw, _schedule(run, opts), sweeps=opts.get("anneal_sweeps", 3),
                         level_tol=max(run.tol_abs, 1e-2 * run.prob.mass))
        if status is not None:
            return sw.potentials() + (status, None)
    sw.set_reg(run.reg)
    status = _sweep_stage(run, sw, stage="sweeps", tol_abs=run.tol_abs)
    return sw.potentials() + (status, sw)


_SOLVERS = {"scaling": _solve_scaling, "log": _solve_log}


def solve(prob, reg, settings, method, init=None, symmetric=False, rho=None):
    """Solve the entropic problem ``prob`` at ``reg`` with ``method`` (checked options in
    ``settings.options``); the :class:`OTResult` of :func:`sinkhorn`.

    ``symmetric``: the caller guarantees ``a == b`` and a symmetric cost (a
    self-transport problem ``W(a, a)``); ``method="auto"`` then runs the averaged
    symmetric iterations, which have none of Sinkhorn's slow ``f_i - g_i`` modes.
    ``rho``: ``(rho_a, rho_b)``, the KL relaxation of the marginals (unbalanced), or None.

    Problems under ``PARALLEL_MIN_ENTRIES`` entries run serial kernels only (one row
    block, ``row_chunks``): they skip the thread-count probe of ``adapts_threads`` (a few
    microseconds of a small problem's call).
    """
    n, m = prob.costc.shape
    solver = _solve if n * m < _jit.PARALLEL_MIN_ENTRIES else _solve_adapting
    return solver(prob, reg, settings, method, init, symmetric, rho)


def _solve(prob, reg, settings, method, init, symmetric, rho):
    check_reg_normal(reg)
    if rho is not None:
        prob = prob.with_mass(_balance_mass(prob, reg, rho))
    _define_result_class()  # SciPy before the large arrays: at the memory edge, its
    run = _Run(prob, reg, settings, method, rho)  # import would start OpenBLAS after them
    f0, g0 = run.working(*prob.init_potentials(init, centre=rho is None))
    floor = _rounding_floor(prob, reg)
    if floor > 1.0:
        # exp((f + g - C) / reg) has no correct digit: nothing to iterate on.
        run.message = (f"Non-finite values: reg={reg:.3g} is below the rounding of the "
                       f"costs (max |C| * eps / reg = {floor:.3g}): exp((f + g - C) / reg) "
                       f"under/overflows without a correct digit. Rescale the cost or "
                       f"increase reg.")
        return _finish(run, f0, g0, NONFINITE, None)
    if init is None and method == "scaling" and not prob.geometry:
        f0 = f0 + prob.cost_range[0]  # K = exp(-(C - min C) / reg): no row underflows
    if method == "auto" and symmetric and rho is None:
        f, g, status, sw = _solve_symmetric(run, 0.5 * (f0 + g0), init is None)
    elif method == "auto":
        f, g, status, sw = _solve_auto(run, f0, g0, init is not None)
    elif method == "sns":
        f, g, status, sw = _solve_sns(run, f0, g0, init is not None)
    elif method == "scaling" and prob.geometry:
        # No stored kernel to scale: the same Sinkhorn iterations in the log domain, those
        # of "log" (each sweep recomputes exp((f + g - C) / reg), as the scaling form
        # would recompute exp(-C / reg)).
        run.settings = settings.but(options={**method_options("log", None)[1],
                                             **settings.options})
        f, g, status, sw = _solve_log(run, f0, g0)
    elif method == "scaling":
        f, g, status, sw = _solve_scaling(run, f0, g0, init is not None)
    else:
        f, g, status, sw = _SOLVERS[method](run, f0, g0)
    if run.stopped:
        status = CALLBACK
    if run.stages and run.stages[-1] in ("anneal", "warmup") and status != CONVERGED:
        # Stopped at a larger regularization: its potentials may give an overflowing plan
        # at reg. Re-balance g by its c-transform at reg (columns exact, plan finite).
        f, g = _rebalance(run, f, g)
        sw = None
    planned = sw.plan() if (sw is not None and status != NONFINITE) else None
    return _finish(run, f, g, status, planned)


_solve_adapting = adapts_threads(_solve)


def check_reg_normal(reg):
    """A subnormal ``reg`` (below 2.2e-308) makes ``1 / reg`` overflow: NaN plans at every
    cost. ValueError naming it."""
    tiny = float(np.finfo(np.float64).tiny)
    if reg < tiny:
        raise ValueError(f"`reg` must be at least {tiny:.4g}, the smallest normal float64 "
                         f"(1 / reg overflows below it); got {reg!r}.")


def _rebalance(run, f, g):
    """``(f, g~)`` with ``g~`` the c-transform of ``f`` at ``run.reg`` (float64)."""
    f = np.asarray(f, dtype=np.float64)
    if not np.all(np.isfinite(f)):
        return f, g
    tau_b = 1.0 if run.rho is None else tau(run.rho[1], run.reg)
    if run.prob.geometry:
        sw = OnlineSweeps(run, f, np.asarray(g, dtype=np.float64))
        sw.set_reg(run.reg)
        sw._ctransform(True, sw.f, sw.g, sw.gnew)
        return f, tau_b * sw.gnew
    m = run.prob.costc.shape[1]
    out = np.empty(m)
    _lse.col_lse(run.loga64, f, run.prob.costc, 1.0 / run.reg, np.empty(m), np.empty(m),
                 out)
    return f, -tau_b * run.reg * out


def entropy_needed(reg, cost_scale):
    """Whether the plain sums of the entropic terms cancel beyond 1e-13 of the costs:
    ``reg`` above about 450 ``max|C|`` (their error is ``reg eps`` of the masses' product,
    the value is of the order of the costs); then :func:`entropy_terms`. (Tested against
    the value ``<P, C>`` instead, it fired for every plan of cost near 0, a divergence's
    well-separated self terms: a pass of n m exponentials for nothing.)"""
    return reg * np.finfo(np.float64).eps > 1e-13 * cost_scale


def entropy_terms(a, b, cost, reg, f, g):
    """``(KL(P | a x b), sum(P) - sum(a) sum(b))`` of the plan of ``(f, g)`` (float64
    weights ``a``, ``b``, the dense ``cost`` or a PointCloud; entries of zero weight are
    skipped) entry by entry: with ``x = (f_i + g_j - C_ij) / reg``, ``P = a b e^x``, the
    sums of ``a_i b_j (x e^x - e^x + 1)`` and ``a_i b_j (e^x - 1)``. Where ``reg`` is large
    against the costs, ``x`` is tiny and the plain sums ``sum P log(P / ab) - sum P + sum
    a sum b`` cancelled to ``reg * 1e-16`` (costs in [0, 1] at reg 1e14: fun 0.489
    against 0.467, at 1e16: 2.69, with success). Float64, one pass of exponentials, by
    blocks of rows of about 2**20 entries (no n x m temporaries)."""
    ri, cj = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    cloud = getattr(cost, "_ottools_geometry", False)
    step = max(1, (1 << 20) // max(cj.size, 1))
    kl = dm = 0.0
    for k in range(0, ri.size, step):
        rows = ri[k:k + step]
        c = (cost.block(rows, cj) if cloud
             else np.asarray(cost)[np.ix_(rows, cj)].astype(np.float64))
        part = _entropy_block(a[rows], b[cj], c, reg, f[rows], g[cj])
        kl += part[0]
        dm += part[1]
    return kl, dm


def _entropy_block(a, b, c, reg, f, g):
    """:func:`entropy_terms` of one block (positive weights, float64 costs ``c``)."""
    x = (f[:, None] + g[None, :] - c) / reg
    w = a[:, None] * b[None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        em1 = np.expm1(x)
        h = x * (em1 + 1.0) - em1
        small = np.abs(x) < 0.1
        if np.any(small):
            # x e^x - e^x + 1 = sum_{k >= 2} (k - 1) x^k / k!: 17 terms, the next below
            # 1e-20 relative for |x| < 0.1 (the plain form cancels there)
            t = x[small]
            acc = np.zeros_like(t)
            for k in range(18, 1, -1):
                acc = (k - 1) / math.factorial(k) + t * acc
            h[small] = t * t * acc
        return float(np.sum(w * h)), float(np.sum(w * em1))


def _kl_term(p, w, rho):
    """``rho KL(p | w)`` (generalized KL; 0 for a hard marginal, which is met), summed as
    ``rho sum_i w_i phi(d_i)`` with ``d = p / w - 1`` and ``phi(d) = (1 + d) log(1 + d) -
    d >= 0``: the plain sum ``p log(p / w) - p + w`` cancels to about ``rho * 1e-16``
    (reg_m = 1e15: fun 0.286 against 0.175, reg_m = 1e20: -11102, with success)."""
    if math.isinf(rho):
        return 0.0
    from scipy.special import xlogy

    d = (p - w) / w  # w > 0: the compressed problem's weights
    phi = xlogy(1.0 + d, 1.0 + d) - d
    small = np.abs(d) < 0.1
    if np.any(small):
        # phi(d) = sum_{k >= 2} (-d)**k / (k (k - 1)): 18 terms, the next below 1e-21
        # relative for |d| < 0.1
        t = d[small]
        h = np.zeros_like(t)
        for k in range(19, 1, -1):
            h = 1.0 / (k * (k - 1)) - t * h
        phi[small] = t * t * h
    return float(rho * np.sum(w * phi))


def _dual_term(w, pot, rho):
    """``-rho <w, exp(-pot / rho) - 1>`` (``<w, pot>`` for a hard marginal)."""
    if math.isinf(rho):
        return float(w @ pot)
    return float(-rho * (w @ np.expm1(-pot / rho)))


def _rounding_floor(prob, reg):
    """``eps * max|C| / reg``: the rounding error of ``(f + g - C) / reg``."""
    with np.errstate(over="ignore"):
        return float(np.finfo(prob.dtype).eps * prob.cost_scale / reg)


def overflow_message(cost_scale, reg):
    """The message of a plan that under/overflowed (status 2; also a batch's)."""
    return (f"Non-finite values: the plan exp((f + g - C) / reg) under/overflowed "
            f"(max |C| / reg = {cost_scale / reg:.3g}); "
            f"rescale the cost or increase reg. The last finite iterate is returned.")


def floor_message(err, tol, dtype, floor):
    """The message of an iteration that reached tol while its plan did not (status 4;
    also a batch's); ``floor``: the rounding floor ``eps max|C| / reg``."""
    return (f"The iteration's error reached tol, but the error recomputed from the "
            f"plan is {err:.3g} > tol={tol:.3g}: tol is below the rounding floor of "
            f"{dtype} (max |C| * eps / reg = {floor:.3g}); loosen tol.")


def _expand(run, fc, gc, dtype=None):
    """The full potentials in the problem's dtype or ``dtype`` (``LinearProblem.expand``:
    centred when balanced; unbalanced ones with the relaxed c-transforms, not centred)."""
    if run.rho is None:
        return run.prob.expand(fc, gc, run.reg, dtype=dtype)
    ra, rb = run.rho
    return run.prob.expand(fc, gc, run.reg, tau=(tau(ra, run.reg), tau(rb, run.reg)),
                           centre=False, dtype=dtype)


def _cold_start(prob):
    """The cold start's potentials ``(min C, 0)``: ``exp((min C - C) / reg) <= 1``, a
    finite plan whatever the costs' sign (zeros overflowed for costs in [-5, -4])."""
    f, g = prob.init_potentials(None)
    return f + prob.cost_range[0], g


def _finish(run, fc, gc, status, planned):
    """Plan, costs and honest error from the potentials (or from the plan the sweeps
    already hold)."""
    prob, reg = run.prob, run.reg
    dt = prob.dtype
    fc = np.asarray(fc, dtype=np.float64)
    gc = np.asarray(gc, dtype=np.float64)
    if not (np.isfinite(fc).all() and np.isfinite(gc).all()):
        fc, gc = _cold_start(prob)
        status = NONFINITE
        planned = None
    if prob.geometry:
        rows, cols, lin, plogr, _ = _plan_stats(prob.costc, run.loga64, run.logb64, fc, gc,
                                                reg, np.empty((prob.costc.shape[1], 0)))
        Pc = None
    else:
        if planned is None:
            Pc = allocate(prob.costc.shape, dt, "The transport plan")
            # The plan depends on f_i + g_j only. Unbalanced potentials are not centred
            # (masses 1 and 100 with reg_m = 100: f near -230, g near 230): centred, they
            # keep their digits in float32 (rounding 1.5e-5 at 230 is 1.5 % of an entry
            # at reg 1e-3).
            # The exponents in float64 from the float64 potentials, the plan stored in
            # the problem's dtype (its marginals, and err, summed from the stored plan):
            # built from potentials cast to float32, the plan's rounding floor was
            # max|C| eps32 / reg (10-D points at reg 1e-3: status 4 at err 5.7e-4 with
            # the float32 default tol 1e-4, where this plan has err 9e-8).
            c = 0.0 if run.rho is None else 0.5 * (float(gc.mean()) - float(fc.mean()))
            planned = (Pc,) + tuple(run.plan_kernel(run.loga64, run.logb64, prob.costc,
                                                    float(reg), fc + c, gc - c, Pc))
        Pc, rows, cols, lin, plogr = planned
    mass = float(rows.sum())
    ma, mb = float(prob.a.sum(dtype=np.float64)), float(prob.b.sum(dtype=np.float64))
    # The objective is that of the weights as given (the plan and the targets are the
    # same on the working problem, see _weight_offsets): log(P / (a b)) is alpha + beta
    # more than the plan kernel's log(P / (a~ b~)).
    fo, go = run.given(fc, gc)
    a0, b0 = run.weights
    kl = plogr - mass + ma * mb
    if run.offset is not None:
        kl += (run.offset[2] + run.offset[3]) * mass
    dm = mass - ma * mb  # the dual's mass term, sum(P) - sum(a) sum(b)
    if math.isfinite(lin) and entropy_needed(reg, prob.cost_scale):
        kl, dm = entropy_terms(a0, b0, prob.costc, reg, fo, go)
    extra = {}
    if run.rho is None:
        err = prob.marginal_error(rows, cols)
        f, g = _expand(run, fc, gc)
        fd, gd = f.astype(np.float64, copy=False), g.astype(np.float64, copy=False)
        dual = (float(fd @ prob.a.astype(np.float64, copy=False))
                + float(gd @ prob.b.astype(np.float64, copy=False))
                - reg * dm)
        fun = float(lin + reg * kl)
    else:
        (ra, rb), a64, b64 = run.rho, run.a64, run.b64
        ta, tb = relaxed_target(a64, fc, ra), relaxed_target(b64, gc, rb)
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite: restarted below
            err = float(np.abs(rows - ta).sum() + np.abs(cols - tb).sum()) / prob.mass
            f, g = _expand(run, fo, go)
            terms = {"cost": float(lin), "entropy": float(reg * kl),
                     "relax_a": _kl_term(rows, a0, ra), "relax_b": _kl_term(cols, b0, rb)}
            fun = float(sum(terms.values()))
            dual = (_dual_term(a0, fo, ra) + _dual_term(b0, go, rb) - reg * dm)
        # (in the problem's dtype, as the plan: float32 stays float32)
        rows_full = np.zeros(prob.shape[0], dtype=dt)
        cols_full = np.zeros(prob.shape[1], dtype=dt)
        rows_full[prob.rows] = rows
        cols_full[prob.cols] = cols
        extra = dict(marginals=(rows_full, cols_full), masses=(ma, mb), terms=terms,
                     reg_m=run.rho)
    if not (math.isfinite(err) and math.isfinite(lin)) and not run.restarted:
        # Finite potentials whose plan or targets are not (a warm start of +-1e6 on an
        # unbalanced problem: NaN value and err, inf in the plan; the scaling form's last
        # iterate where its kernel overflowed): f with g re-balanced, its exact column
        # update (each column of the plan then holds its target: finite), else the
        # cold start (the starting point: costs in [-5, -4] overflowed from zeros, a NaN
        # value). (Not on fun alone: its KL(P | a x b) holds sum(a) sum(b), beyond float64
        # for masses of 1e200.)
        run.restarted = True
        # (unbalanced: g's damped update may still overflow, +-1e6 gave f + g of 2000)
        f1, g1 = _rebalance(run, fc, gc) if run.rho is None else (None, None)
        if g1 is None or not np.all(np.isfinite(g1)):
            f1, g1 = _cold_start(prob)
        return _finish(run, f1, g1, NONFINITE, None)
    if prob.geometry:
        # The plan of the float64 potentials, whose marginals gave err (float32 ones, the
        # returned f and g, gave another plan: 48 x 1 points, reg 1e-6: err 3e-8 reported,
        # 1.7e-2 held); as the dense path, whose plan is not that of the centred f and g.
        geom, a, b = prob.cost, prob.a, prob.b
        f64, g64 = _expand(run, fo, go, np.float64)
        plan = PlanOperator(geom, a, b, f64, g64, reg)
        # (partials, not lambdas: the result pickles, e.g. back from a worker process)
        extra["plan_dense"] = functools.partial(dense_plan, geom, a, b, f64, g64, reg, dt)
        extra["barycentric_map"] = functools.partial(barycentric_map, geom, a, b, f64, g64,
                                                     reg, by_rows=run.rho is not None)
    else:
        plan = prob.embed(Pc)
    tol = run.settings.tol
    message = run.message
    if message is None and not (math.isfinite(err) and math.isfinite(lin)):
        status = NONFINITE
        message = overflow_message(prob.cost_scale, reg)
    elif status == MAXITER and err <= tol:
        status = CONVERGED
    elif status == CONVERGED and err > tol and run.lost:
        if not run.restarted:
            # g re-balanced from f (its exact column update): a bounded plan (the
            # potentials' own plan held entries of 1e210 for costs in [-5, -4]).
            run.restarted = True
            f1, g1 = _rebalance(run, fc, gc)
            if np.all(np.isfinite(g1)):
                return _finish(run, f1, g1, CONVERGED, None)
        status = NONFINITE
        message = (f"Underflow: exp((f + g - C) / reg) of the scaling form's kernel fell "
                   f"below the smallest normal {dt} in {run.lost} entries (max |C| / reg = "
                   f"{prob.cost_scale / reg:.3g}); the iterations converged on the rest of "
                   f"the support, and the plan of their potentials has err {err:.3g} > "
                   f"tol={tol:.3g}. Use method='log' or 'auto' (log-stable), or increase "
                   f"reg.")
    elif status == CONVERGED and err > tol:
        status = STALLED
        message = floor_message(err, tol, dt, _rounding_floor(prob, reg))
    fields = dict(fun=fun, cost=float(lin), dual_value=dual, plan=plan,
                  f=f, g=g, reg=reg, nit_sinkhorn=run.nit - run.nit_newton,
                  nit_newton=run.nit_newton, err_history=run.history(),
                  stages=tuple(run.stages), **extra)
    return solver_result(status, err=err, tol=tol, nit=run.nit, method=run.method,
                         message=message, **fields)


def sinkhorn(a, b, cost, reg, *, reg_m=None, method="auto", tol=None, maxiter=10_000,
             init=None, callback=None, options=None):
    r"""Entropic optimal transport by Sinkhorn's algorithm, with a Newton finish.

    Solves

    .. math::

        \min_{P \in U(a, b)} \langle P, C \rangle + \mathrm{reg}\,\mathrm{KL}(P \| a \otimes b)

    whose optimal plan is exactly POT's ``ot.sinkhorn(a, b, M, reg)`` plan (the two
    objectives differ by a constant on :math:`U(a, b)`).

    Parameters
    ----------
    a : array_like, shape (n,), or None
        Source weights: finite, non-negative, positive sum; zeros allowed. ``None`` means
        uniform. Must have the same total mass as ``b`` up to 1e-6 (relative); a smaller gap
        is taken as rounding and ``b`` is rescaled onto the mass of ``a``.
    b : array_like, shape (m,), or None
        Target weights, as ``a``.
    cost : array_like, shape (n, m), or (B, n, m), or ottools.PointCloud
        Ground cost, finite. Rectangular problems are fine. A 3-D array is a batch of
        ``B`` problems (``a``, ``b`` then of shape (B, n), (B, m), or shared (n,), (m,),
        or None; ``method`` "auto" or "log" with any of its ``options``; no ``init``,
        ``callback`` or finite ``reg_m``), solved in parallel over problems by one Numba
        kernel of log-stable sweeps, each problem's result that of one call with the same
        arguments, to the bit: the problems that one call would anneal, finish by Newton
        steps or solve by the symmetric iterations (and problems large enough for
        parallel row blocks) are handed back to that call, one by one. The result's fields are arrays
        over the batch (``plan`` (B, n, m), ``f``, ``g``, ``fun``, ``cost``, ``nit``,
        ``err``, ``success``, ``status``; ``messages``, one per problem). A
        :class:`ottools.PointCloud` computes the costs on the fly (O((n + m) d) memory;
        every ``method``, the Newton stage keeping only the sparsified plan's entries):
        ``plan`` is then a :class:`scipy.sparse.linalg.LinearOperator`, and the result
        adds ``plan_dense()`` and ``barycentric_map()``: an (n, d) array,
        ``T(x_i) = sum_j P_ij y_j / a_i`` where ``a_i > 0``; where ``a_i = 0``, the
        entropic map through ``g``, ``sum_j w_ij y_j / sum_j w_ij`` with
        ``w_ij = b_j exp((g_j - C_ij) / reg)`` (log-sum-exp stable; the first formula
        whenever ``f_i`` is the soft c-transform of ``g``, as at convergence of a balanced
        problem); NaN only where that sum is not finite. With ``reg_m`` the rows of ``P``
        sum to ``P 1``, not to ``a``: there ``T(x_i) = sum_j P_ij y_j / (P 1)_i``, an
        average of the targets (the entropic map through ``g`` where that row sum
        underflows).
    reg : float
        Entropic regularization :math:`\varepsilon > 0`, in the units of ``cost``.
    reg_m : float or pair of floats, optional
        Unbalanced OT: the marginal constraints are replaced by the penalties
        ``reg_m_a KL(P 1 | a) + reg_m_b KL(P^T 1 | b)`` (generalized KL), so ``a`` and ``b``
        may have different masses. A number applies to both sides; ``inf`` keeps that
        marginal hard (``(reg_m_a, inf)``: semi-relaxed). ``None`` (default) or ``inf`` on
        both sides: the balanced problem. Conventions of the peers: POT's ``reg_m`` is the
        same; OTT-JAX's ``tau_a = reg_m_a / (reg_m_a + reg)``, but its entropy is relative
        to the counting measure, not ``a x b``: its plan is ours for the cost
        ``C_ij + reg log(a_i b_j)`` (the two agree only when balanced); GeomLoss's
        ``reach`` is ``reg_m ** (1 / p)`` (and its ``blur`` is ``reg ** (1 / p)``, its
        cost ``|x - y|^p / p``). See Notes.
    method : {"auto", "log", "scaling", "sns"}, default "auto"
        ``"auto"``: the hybrid below, which converges at every ``reg``: epsilon-scaling
        when ``reg`` is small against the range of the cost, over-relaxed log-stable
        sweeps at ``reg``, and Sinkhorn-Newton-Sparse steps [3]_ once the observed linear
        rate predicts more than ``newton_after`` further sweeps. ``"log"``: log-stable
        Sinkhorn, stable for every ``reg``: the iterates of log-domain Sinkhorn, computed
        by absorption-stabilized scaling (see Notes). ``"scaling"``: the plain
        matrix-scaling form; it under/overflows when ``(max(cost) - min(cost)) / reg``
        exceeds a few hundred (status 2); from a warm start ``init`` whose kernel would
        under/overflow, it first takes (at most 5) exact log-domain iterations, then
        scales around the balanced potentials; on a :class:`ottools.PointCloud` (no stored
        kernel) it runs the same iterations in the log domain, those of ``"log"``.
        ``"sns"``: Sinkhorn-Newton-Sparse, 20 annealed
        log-domain iterations then Newton steps with a sparsified Hessian.
    tol : float, optional
        Stop when the relative marginal error
        ``err = (||P 1 - a||_1 + ||P^T 1 - b||_1) / sum(a)`` of the returned plan is at
        most ``tol`` (checked exactly at every iteration; for probability weights it is
        the absolute L1 error). Default ``1e-9`` for float64 and ``1e-4`` for float32
        (whose rounding floor is about ``1e-6`` to ``1e-5``, depending on ``reg``).
    maxiter : int, default 10000
        Maximum number of iterations: sweeps (one sweep updates ``f`` then ``g``), at
        every regularization of the epsilon-scaling, plus Newton steps.
    init : tuple (f, g) of arrays, optional
        Warm start: initial potentials of lengths ``n`` and ``m`` (e.g. ``(res.f, res.g)``
        of a previous solve). The problem is invariant under ``(f + c, g - c)``: the
        potentials are re-centred first. ``"auto"`` skips the epsilon-scaling when two
        sweeps from them reach a relative error of ``1e-2``.
    callback : callable, optional
        ``callback(intermediate_result)`` is called after every block of
        ``options["check_every"]`` sweeps and every Newton step, with an
        :class:`OTResult` holding ``f``, ``g``, ``nit``, ``nit_newton``, ``err`` (the
        latest known error), ``stage`` and ``method``; raising ``StopIteration`` stops
        the solver (status 3).
    options : dict, optional
        Per-method knobs, each validated (a wrong type or value raises an error naming
        ``options['name']``; an unknown key raises ``TypeError``).

        - every method: ``check_every`` (10: sweeps between two callback calls).
        - ``"auto"``: ``epsilon_scaling`` (None: anneal when
          ``reg < anneal_below * (max(cost) - min(cost))``; True / False force it),
          ``anneal_below`` (1e-3), ``epsilon_start`` (default the range of the cost),
          ``epsilon_decay`` (0.5: the factor between two regularizations of the
          schedule), ``anneal_sweeps`` (3: sweeps per regularization above ``reg``,
          fewer once the relative error is ``1e-2``), ``anneal_sweeps_max`` (10: more
          sweeps at a level, up to this many, while the relative error is above
          ``0.05``), ``anneal_newton`` (True: Newton steps, at most 10, at a level
          below ``1e-4`` times the cost's range whose sweeps left the relative error
          above ``1e-2``; balanced problems), ``overrelaxation`` (True),
          ``newton`` (True: allow the Newton finish), ``newton_after`` (500: switch to
          Newton steps when the rate of the last block of sweeps predicts more further
          sweeps than this, or when the error stalls), ``float32_sweeps`` (None: True
          for float64 dense costs of at least ``2**22`` entries: the sweeps read a
          float32 kernel, half the memory traffic, until the relative error is below
          ``max(c tol, 3e-7)``, ``c`` in [0.5, 0.85]; then the float64 plan of that state
          measures its error, and float64 sweeps finish if it is above ``tol``: results
          keep float64 accuracy; 1.2x-1.3x at n = 4000, ``benchmarks/float32_sweeps.py``),
          and the Newton options of ``"sns"`` below.
        - ``"log"``: ``epsilon_scaling`` (False: solve at decreasing regularizations from
          ``epsilon_start`` (the cost range) down to ``reg``, multiplying by
          ``epsilon_decay`` (0.5) per stage and stopping each stage at a relative error
          of ``max(tol, 1e-3)``), ``overrelaxation`` (False: over-relaxed updates
          ``u <- u (a / (u K v))**omega`` with ``omega = min(1.9, 2 / (1 + sqrt(1 -
          kappa)))`` from the observed rate ``kappa`` of plain Sinkhorn's error, refined
          while relaxed by Young's relation, safeguarded by a return to plain Sinkhorn
          when the error stops decreasing).
        - ``"scaling"``: ``check_every`` only.
        - ``"sns"``: ``warmup`` (20 Sinkhorn iterations before the Newton stage),
          ``warmup_start`` (0.1: the first warm-up iteration runs at this fraction of the
          cost range, the regularization then decreases geometrically to ``reg``; 0, or a
          warm start ``init``: all at ``reg``), ``density`` (6.0: minimum kept plan entries, as a multiple of
          ``max(n, m)``), ``mass_tol`` (1e-6: the kept threshold falls until the dropped
          plan mass is at most this fraction, and at most the current relative ``err``),
          ``peak_tol`` (1e-3: each row and column also keeps its entries at or above this
          fraction of its largest; 1: its largest only),
          ``density_growth`` (2.0: ``density`` factor
          after a failed Newton step), ``shift_max`` (1e-3: initial relative damping of
          the Hessian diagonal, adapted Levenberg-Marquardt style and capped by ``err**2``),
          ``cg_tol`` (1e-2: relative residual of the conjugate gradient, on the Schur
          complement of the ``f`` block), ``cg_maxiter``
          (``10 (n + m)``), ``direct_after`` (200: CG iterations after which a sparse LU
          factorization of that complement, SciPy's SuperLU, solves the step where its
          envelope after reverse Cuthill-McKee is small; None: CG only), ``armijo``
          (1e-4), ``backtrack`` (0.5), ``ls_maxiter`` (10: trial steps of the line
          search), ``fallback_iters`` (10: Sinkhorn iterations after a failed Newton
          step). The Newton stage works in float64 (float32 input
          is cast back: its err floor is about 1e-6).

    Returns
    -------
    res : OTResult
        ``plan`` : ndarray (n, m), the transport plan, with
        ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)``.
        ``f``, ``g`` : ndarrays (n,), (m,), the dual potentials in cost units, centred so
        that ``<f, a> = <g, b>``. Entries of zero weight hold their c-transform.
        ``cost`` : float, ``<P, C>``.
        ``fun`` : float, ``<P, C> + reg KL(P || a x b)`` (generalized KL), the objective.
        ``dual_value`` : float, the dual objective
        ``<f, a> + <g, b> - reg (sum(P) - sum(a) sum(b))``; equals ``fun`` at convergence.
        ``err`` : float, the relative marginal error computed from ``plan``.
        ``nit`` : sweeps plus Newton steps; ``nit_sinkhorn``, ``nit_newton`` : each.
        ``err_history`` : ndarray (nit,), the relative error after every iteration (NaN
        where it was not measured: iterations at a larger regularization, or whose error
        came with no later row pass).
        ``stages`` : tuple of the stages that ran, in order: ``"anneal"``, ``"warmup"``,
        ``"sweeps"``, ``"newton"``.
        With ``reg_m``: ``fun`` is the unbalanced objective
        ``<P, C> + reg KL(P | a x b) + reg_m_a KL(P 1 | a) + reg_m_b KL(P^T 1 | b)``;
        ``terms`` (dict ``cost``, ``entropy``, ``relax_a``, ``relax_b``: its four terms),
        ``marginals`` (``(P 1, P^T 1)``), ``masses`` (``(sum(a), sum(b))``), ``reg_m``; ``f``,
        ``g`` are not centred (no gauge freedom); ``err`` is the L1 norm of the dual's
        gradient relative to the mass at which the penalties balance,
        ``sum(a)**(1 - w) * sum(b)**w`` with ``w = (reg_m_b + reg) / (reg_m_a + reg_m_b
        + 2 reg)`` (``sqrt(sum(a) sum(b))`` for equal ``reg_m``, ``sum(b)`` when ``b``
        is hard: about the plan's mass):
        ``sum_i |P1_i - a_i exp(-f_i / reg_m_a)| + (same for the columns)``, the distance of
        the plan's marginals to their optimal values, equivalently a weighted change of the
        potentials over one sweep, ``sum_i t_i |exp((f_i - f_i') / (tau_a reg)) - 1|`` with
        ``tau_a = reg_m_a / (reg_m_a + reg)`` (for hard marginals, the marginal error).
        ``success``, ``status``, ``message``, ``method`` (the method given),
        ``reg``.

        ``status``: 0 converged (``err <= tol``); 1 ``maxiter`` reached; 2 non-finite
        values (under/overflow of the scaling form, or a ``reg`` so small against the
        cost that the plan cannot be represented; the last finite iterate is returned,
        for the scaling form its ``f`` with ``g`` the exact column update, a bounded plan);
        3 stopped by ``callback``; 4 stalled: the iteration's error reached ``tol`` but
        the error recomputed from the plan is above it (``tol`` below the rounding floor
        of the dtype), or 50 Newton steps in a row did not halve the error: near the
        floor of the plan's rounding, ``(max|f| + max|g| + max|C|) * eps / reg`` (with
        float32 weights, their masses' gap), or far above it where the steps fail (the
        message says which; ``auto`` first anneals again after failing steps).

    Notes
    -----
    Unbalanced problems (``reg_m``): the updates are the balanced ones damped by
    ``tau = reg_m / (reg_m + reg)`` [7]_, ``f_i <- -tau_a reg log sum_j b_j exp((g_j -
    C_ij) / reg)``, run in the same absorption-stabilized form, each sweep followed by the
    translation-invariant step [8]_ (the dual maximised exactly along ``(f + t, g - t)``, in
    closed form), which removes the slow mode of the damped iterations when ``reg_m`` is
    large against ``reg``. ``"auto"`` anneals, over-relaxes and takes Newton steps as for
    balanced problems, and ``"sns"`` applies too: the gradient of the dual is
    ``(a exp(-f / reg_m_a) - P 1, b exp(-g / reg_m_b) - P^T 1)``, the Newton matrix gains
    the penalties' curvature on its diagonal (``reg / reg_m_a * a exp(-f / reg_m_a)``;
    definite, so no gauge), and the line search adds their curvature terms to the exact
    dual increase; the log-domain iterations (warm-up, fallback) are the damped ones.

    Log-domain updates:
    ``f_i <- -reg log sum_j b_j exp((g_j - C_ij) / reg)``, then the same for ``g``.
    After a ``g`` update the column marginals are exact; the row marginals of the
    current iterate come for free with the next ``f`` update, so ``err`` is checked at
    every iteration. POT measures the L2 norm of one marginal every 10 iterations: to
    compare with POT, compute this ``err`` on POT's plan.

    The sweeps run these iterations as ``P = diag(u) K diag(v)`` with
    ``K = exp((f + g - C) / reg)`` for absorbed potentials: one fused pass over ``K`` per
    iteration (``K v`` and ``K^T u`` together), the scalings folded into ``f``, ``g`` and
    ``K`` rebuilt (with a vectorized exponential, relative error about 2e-16) once they
    leave ``[1e-50, 1e50]`` (``[1e-10, 1e10]`` in float32), and an exact log-sum-exp
    iteration wherever a scaling would under/overflow [4]_. Over-relaxation follows [5]_,
    epsilon-scaling [6]_. The Newton stage solves ``H Delta = reg grad F`` with the
    plan's largest entries as the off-diagonal block of the Hessian, by preconditioned
    conjugate gradients, with a line search on the exact dual increase [3]_. Problems of
    at least 2**18 entries run in parallel row blocks over Numba's threads
    (``numba.set_num_threads``). The solver runs in blocks of bounded length, so Ctrl-C
    interrupts it within a fraction of a second.

    References
    ----------
    .. [1] M. Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport",
       NeurIPS 2013.
    .. [2] G. Peyré, M. Cuturi, "Computational Optimal Transport", 2019, chapter 4.
    .. [3] X. Tang, M. Shavlovsky, H. Rahmanian, E. Tardini, K. K. Thekumparampil,
       T. Xiao, L. Ying, "Accelerating Sinkhorn Algorithm with Sparse Newton
       Iterations", ICLR 2024.
    .. [4] B. Schmitzer, "Stabilized Sparse Scaling Algorithms for Entropy Regularized
       Transport Problems", SIAM J. Sci. Comput. 41(3), 2019.
    .. [5] A. Thibault, L. Chizat, C. Dossal, N. Papadakis, "Overrelaxed
       Sinkhorn-Knopp Algorithm for Regularized Optimal Transport", Algorithms 14(5), 2021.
    .. [6] J. Feydy, "Geometric data analysis, beyond convolutions", PhD thesis, 2020,
       chapter 3.
    .. [7] L. Chizat, G. Peyré, B. Schmitzer, F.-X. Vialard, "Scaling algorithms for
       unbalanced optimal transport problems", Math. Comp. 87, 2018.
    .. [8] T. Séjourné, F.-X. Vialard, G. Peyré, "Faster unbalanced optimal transport:
       translation invariant Sinkhorn and 1-D Frank-Wolfe", AISTATS 2022.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = ottools.sinkhorn([0.5, 0.5], [0.5, 0.5], cost, reg=0.1)
    >>> res.success, res.method
    (True, 'auto')
    >>> np.round(res.plan, 4)
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    if (not getattr(cost, "_ottools_geometry", False)) and _ndim(cost, "cost") == 3:
        from ._batch import solve_batch  # a batch of problems (B, n, m)

        return solve_batch(a, b, cost, reg, reg_m=reg_m, method=method, tol=tol,
                           maxiter=maxiter, init=init, callback=callback, options=options)
    rho = _check_reg_m(reg_m)
    if rho is not None and all(math.isinf(r) for r in rho):
        rho = None  # both marginals hard: the balanced problem
    prob = LinearProblem.from_args(a, b, cost, balanced=rho is None,
                                   hint=", or relax the marginals with `reg_m`")
    reg = _check_positive(reg, "reg")
    name, opts = method_options(method, options)
    settings = Settings.from_args(tol, maxiter, callback, prob.dtype, opts)
    symmetric = name == "auto" and rho is None and is_self_transport(prob)
    return solve(prob, reg, settings, name, init, symmetric=symmetric, rho=rho)


def is_self_transport(prob):
    """``a == b`` and a symmetric cost: ``W(a, a)``, solved by the symmetric iterations."""
    n, m = prob.shape
    if not (n == m and _equal(prob.a, prob.b)):
        return False
    if prob.geometry:
        return np.array_equal(prob.cost.x, prob.cost.y)
    C = prob.cost
    # the first row against the first column rules out most costs without a full
    # (transposed, cache-unfriendly) pass over C
    return _equal(C[0], C[:, 0]) and bool(_k_sym.is_symmetric(C))


def _equal(x, y):
    """``np.array_equal`` of two arrays of one shape, without its wrapper's conversions."""
    return bool((x == y).all())
