"""The state of the entropic iterations: one class per kind of sweep, one interface.

Every class holds potentials (float64) and whatever the kernels iterate on, and offers
``set_reg(reg)`` (absorb, rebuild for a new regularization), ``sweep(maxiter, tol, omega,
errs) -> (nit, code)`` (bounded kernel calls; ``errs[k]`` the absolute error of the state
after ``k`` iterations), ``log_step(tol)`` (the exact fallback), ``potentials()`` and
``plan()``; the driver of :mod:`ottools._sinkhorn` runs them (its ``run`` object gives
the problem, the float64 weights and the thread blocks). :class:`Relaxation` is the
over-relaxation controller. Internal API (names without a leading underscore, not
exported).
"""

import math

import numpy as np

from ._kernels import KernelStatus, lazy
from ._problem import allocate

__all__ = []

_k = lazy("_sinkhorn")
_ko = lazy("_online")
_kub = lazy("_unbalanced")
_ksym = lazy("_symmetric")
_lse = lazy("_lse")
_kr = lazy("_relax")

# Absorption bound of the log-stable sweeps: scalings u / a, v / b stay in
# [1 / bound, bound]; an underflowed kernel entry (< tiny) times bound**2 stays far below
# rounding (see ottools/_kernels/_sinkhorn.py).
ABSORB_BOUND = {np.dtype(np.float64): 1e50, np.dtype(np.float32): 1e10}

# Float32 sweeps for float64 problems (``Sweeps(..., low=True)``; ``sinkhorn``'s
# ``options["float32_sweeps"]``, by default from LOW_MIN_ENTRIES entries): a large kernel
# is read once per sweep, and in float32 that read is half as long (n = 4000: 2.8 ms
# against 4.5 ms a sweep on 2 cores). Float32 row sums reach relative errors of about 1e-7
# (the marginal error floor of float32 solves, 6e-8 to 9e-8 at n = 3000 to 10,000), so at
# LOW_SWITCH (relative to the mass), or a fraction of the tolerance if larger
# (:meth:`Sweeps.sweep`), the float64 plan of the state measures its error and float64
# sweeps, if any are needed, go on from it; LOW_PATIENCE float32 sweeps without progress
# (a floor above the switch) hand over too.
LOW_MIN_ENTRIES = 1 << 22
LOW_SWITCH = 3e-7
LOW_PATIENCE = 30


class Sweeps:
    """Absorption-stabilized scaling iterations on the compressed problem.

    The plan is ``P = diag(u) K diag(v)`` with ``K = exp((f + g - C) / reg)`` for absorbed
    float64 potentials ``f``, ``g`` (``K`` in the problem's dtype); ``bound`` is the
    absorption bound (``inf``: the plain scaling form, which never absorbs).
    """

    def __init__(self, run, f, g, bound, low=False):
        self.run = run
        prob = run.prob
        n, m = prob.costc.shape
        self.a, self.b = run.a64, run.b64
        self.f, self.g = f.copy(), g.copy()
        self.u, self.v = self.a.copy(), self.b.copy()
        # ``low``: float32 sweeps first (see LOW_SWITCH), then prob.dtype.
        self.low = bool(low) and prob.dtype == np.float64
        self.bound64 = bound
        self.low_switch = LOW_SWITCH * prob.mass
        self.low_rebuilds = 0
        self.low_sweeps = 0
        self.low_best = math.inf  # the best float32 error, and the sweep count then
        self.low_best_at = 0
        self.low_margin = 0.5  # the float32 phase stops at low_margin * tol (or the switch)
        # One float64 array holds the kernel: in the float32 phase its first half.
        self.buf = allocate((n, m), prob.dtype, "The kernel of the scaling iterations")
        self._allocate(np.float32 if self.low else prob.dtype)
        self.chunks = run.chunks
        self.s, self.t, self.unew = np.empty(m), np.empty(m), np.empty(n)
        nc = self.chunks
        self.T, self.E = np.empty((nc, m)), np.empty((nc, 2))
        self.X, self.W = np.empty((nc, m)), np.empty((nc, m))
        self.cerr = np.zeros(1)
        self.exact = False  # cerr[0] holds the column error of the current state
        self.reg = None
        self.fresh = False  # K matches (f, g): the plan can be taken from the scalings
        self.planned = None  # (rows, cols, lin, plogr) while K holds the current plan

    def _allocate(self, dtype):
        """The kernel ``K`` (and ``vk``) in ``dtype``, with its absorption bound: ``buf``
        itself, or a float32 view of its first half (the pages touched by the float32
        phase are reused by the float64 kernel)."""
        n, m = self.buf.shape
        if np.dtype(dtype) == self.buf.dtype:
            self.K = self.buf
        else:
            self.K = self.buf.reshape(-1).view(dtype)[:n * m].reshape(n, m)
        self.vk = np.empty(m, dtype=dtype)
        self.bound = ABSORB_BOUND[np.dtype(dtype)] if self.low else self.bound64

    def to_float64(self):
        """End the float32 phase; returns the float64 error of the current state (None
        if already in float64).

        One pass of exponentials writes the float64 plan of the current potentials
        ``(f, g)`` with its marginals (``run.plan_kernel``): they give the state's exact
        error (:meth:`errors`), and the plan is the float64 kernel of that state with
        unit scalings, ``K = P = exp((F + G - C) / reg)`` for the absorbed potentials
        ``F = f + reg log a``, ``G = g + reg log b``: no separate rebuild, the column error
        is known (``cerr``, so the next sweep measures the state exactly), and a state
        already within tolerance keeps this plan as the result (:meth:`plan`)."""
        if not self.low:
            return None
        run = self.run
        f, g = self.potentials()
        self.low = False
        self._allocate(run.prob.dtype)
        rows, cols, lin, plogr = run.plan_kernel(run.loga64, run.logb64, run.prob.costc,
                                                 self.reg, f, g, self.K)
        row_err, col_err = self.errors(f, g, rows, cols)
        self.f = f + self.reg * run.loga64
        self.g = g + self.reg * run.logb64
        self.u[:] = 1.0
        self.v[:] = 1.0
        self.cerr[0] = col_err
        self.exact = True
        self.fresh = True
        self._derived()
        self.planned = (rows, cols, lin, plogr)
        return row_err + col_err

    def _low_progress(self, errs, k, code):
        """After a float32 kernel call of ``k`` sweeps ending with ``code`` (``errs``: its
        errors): True when the float64 kernel should take over. That is at the problem's
        ``reg`` when the errors reached the switch (DONE), after a non-finite float32
        scaling, when absorptions (each a rebuild) come more often than every 8 sweeps,
        or when the error has not dropped below 0.9 times its best for LOW_PATIENCE
        sweeps (a float32 floor above the switch)."""
        self.low_sweeps += k
        if code == KernelStatus.OUT_OF_RANGE:
            self.low_rebuilds += 1
        final = self.reg == self.run.reg
        if (final and code == KernelStatus.DONE) or code == KernelStatus.NONFINITE:
            return True
        if self.low_rebuilds > 2 + self.low_sweeps // 8:
            return True
        e = errs[np.isfinite(errs)]
        if e.size >= 3 and e[0] > 0 and e[-1] > 0:
            # Stop where the switch's float64 error (the float32 one plus about 1e-7
            # relative) is within tol, at most 2 float32 sweeps early: rate**2, in
            # [0.5, 0.85].
            lam = (e[-1] / e[0]) ** (1.0 / (e.size - 1))
            self.low_margin = min(0.85, max(0.5, lam * lam))
        if e.size and e.min() < 0.9 * self.low_best:
            self.low_best = float(e.min())
            self.low_best_at = self.low_sweeps
        return final and self.low_sweeps - self.low_best_at > LOW_PATIENCE

    def errors(self, f, g, rows, cols):
        """``(row error, column error)`` (absolute) of the plan of potentials ``(f, g)``
        with marginals ``rows``, ``cols``: the sweeps' own measure."""
        return (float(np.abs(rows - self.a).sum()), float(np.abs(cols - self.b).sum()))

    def _derived(self):
        """Quantities derived from the absorbed potentials (after each rebuild)."""

    def set_reg(self, reg):
        """Absorb the scalings and build ``K`` for ``reg`` (a new problem if it changed)."""
        if self.reg is not None:
            self.absorb()
        if reg != self.reg:
            self.exact = False
            self.low_best, self.low_best_at = math.inf, self.low_sweeps
        self.reg = reg
        self.rebuild()

    def absorb(self):
        _k.absorb(self.f, self.g, self.u, self.v, self.a, self.b, self.reg)
        self.planned = None

    def set_potentials(self, f, g):
        """Go on from the potentials ``(f, g)`` (float64, in cost units) at the current
        ``reg``: absorbed, unit scalings, the kernel rebuilt, the column error unknown."""
        run = self.run
        self.f = f + self.reg * run.loga64
        self.g = g + self.reg * run.logb64
        self.u[:] = 1.0
        self.v[:] = 1.0
        self.exact = False
        self.rebuild()

    def rebuild(self):
        cost = self.run.prob.costc
        if self.chunks > 1:
            _k.build_kernel_par(cost, self.f, self.g, self.reg, self.K, self.X, self.W)
        else:
            _k.build_kernel(cost, self.f, self.g, self.reg, self.K, self.X[0], self.W[0])
        self.fresh = True
        self.planned = None
        self._derived()

    def sweep(self, maxiter, tol, omega, errs):
        """Up to ``maxiter`` iterations, absorbing as needed; ``errs`` (length maxiter)
        receives the errors (absolute) of the states after 0, 1, ... iterations (inf
        where unknown). Returns ``(nit, code)``: DONE, BUDGET or NONFINITE.

        In the float32 phase (``low``) at the problem's ``reg``, the kernel stops at
        ``max(c tol, LOW_SWITCH * mass)`` (``c``: the square of the observed rate, in
        [0.5, 0.85]); then (or see :meth:`_low_progress`) the
        float64 plan of the state measures its error (:meth:`to_float64`), and float64
        sweeps go on from the same state unless it is within ``tol``: DONE is only ever
        decided in float64. At an annealing level (another ``reg``) the float32 errors
        decide."""
        done = 0
        while True:
            final = self.low and self.reg == self.run.reg
            stop = max(self.low_margin * tol, self.low_switch) if final else tol
            k, code = self._kernel(maxiter - done, stop, omega, errs[done:])
            if k > 0 or code == KernelStatus.DONE:
                self.exact = True
            if k > 0:
                self.planned = None
            if self.low and self._low_progress(errs[done:done + k + 1], k, code):
                e = self.to_float64()
                done += k
                errs[done] = e
                if e <= tol:
                    return done, KernelStatus.DONE
                if done < maxiter:
                    continue
                return done, KernelStatus.BUDGET
            done += k
            if code == KernelStatus.OUT_OF_RANGE:
                self.absorb()
                self.rebuild()
                if done < maxiter:
                    continue
                code = KernelStatus.BUDGET
            return done, code

    def _kernel(self, maxiter, tol, omega, errs):
        """One kernel call: ``(nit, code)`` (codes of ``ottools._kernels._codes``)."""
        args = (self.K, self.a, self.b, self.u, self.v, self.bound, omega, tol, maxiter,
                self.exact, self.cerr, errs, self.s, self.t, self.unew, self.vk)
        if self.chunks > 1:
            return _k.scaling_sweep_par(*args, self.T, self.E)
        return _k.scaling_sweep(*args)

    def log_step(self, tol):
        """One exact log-domain iteration from the current potentials: the fallback when
        a scaling under/overflows. Returns ``(nit, code, err)``."""
        self.absorb()
        run = self.run
        k, code, err = _k.sinkhorn_log(self.a, run.loga64, run.logb64, run.prob.costc,
                                       self.reg, self.f, self.g, tol, 1, False)
        self.cerr[0] = 0.0  # g is the exact column update of f
        self.exact = k > 0
        self.rebuild()
        return k, code, err

    def potentials(self):
        """The float64 potentials of the current plan (the starting ones before any
        kernel was built: a stage that ran no sweep, e.g. ``maxiter=0``)."""
        if self.reg is None:
            return self.f.copy(), self.g.copy()
        return (_k.scaled_potential(self.f, self.u, self.a, self.reg),
                _k.scaled_potential(self.g, self.v, self.b, self.reg))

    def plan(self):
        """``(P, rows, cols, lin, plogr)`` from the scalings, written over ``K``; None if
        ``K`` is stale or a scaling is not positive and finite."""
        self.to_float64()
        if self.planned is not None:  # K holds the plan of the current state
            out, self.planned = self.planned, None
            self.fresh = False
            return (self.K,) + out
        # positive and finite: NaN fails the first test, inf the second
        if not (self.fresh and self.u.min() > 0 and self.v.min() > 0
                and self.u.max() < math.inf and self.v.max() < math.inf):
            return None
        cost = self.run.prob.costc
        if self.chunks > 1:
            out = _k.plan_from_scalings_par(self.K, self.u, self.v, self.a, self.b, cost,
                                            self.f, self.g, self.reg, self.chunks)
        else:
            out = _k.plan_from_scalings(self.K, self.u, self.v, self.a, self.b, cost,
                                        self.f, self.g, self.reg)
        self.fresh = False
        return (self.K,) + tuple(out)


class SymSweeps(Sweeps):
    """Averaged symmetric iterations for ``W(a, a)`` with a symmetric cost: one set of
    potentials and scalings (``g`` is ``f``, ``v`` is ``u``), ``u <- sqrt(u a / (K u))``
    (see ``ottools._kernels._symmetric``); the exact log-domain averaged update is the
    fallback."""

    def __init__(self, run, f, bound, cold, low=False):
        super().__init__(run, f, f, bound, low)
        self.g, self.v = self.f, self.u  # one measure, one potential
        self.cold = cold

    def _allocate(self, dtype):
        super()._allocate(dtype)
        self.uk = np.empty(self.buf.shape[0], dtype=dtype)

    def to_float64(self):
        e = super().to_float64()
        self.g, self.v = self.f, self.u  # tied again (F = G, unit scalings)
        return e

    def absorb(self):
        _ksym.absorb_symmetric(self.f, self.u, self.a, self.reg)  # the batches' kernel too

    def _kernel(self, maxiter, tol, omega, errs):
        args = (self.K, self.a, self.u, self.bound, tol, maxiter, self.cold, errs,
                self.unew, self.uk)
        if self.chunks > 1:
            k, code = _ksym.symmetric_sweep_par(*args, self.E)
        else:
            k, code = _ksym.symmetric_sweep(*args)
        self.cold = self.cold and k == 0
        return k, code

    def log_step(self, tol):
        self.absorb()
        run = self.run
        k, code, err = _ksym.sinkhorn_symmetric(self.a, run.loga64, run.prob.costc,
                                                self.reg, self.f, tol, 1, self.cold)
        self.cold = self.cold and k == 0
        self.rebuild()
        return k, code, err

    def potentials(self):
        if self.reg is None:
            return self.f.copy(), self.f.copy()
        f = _k.scaled_potential(self.f, self.u, self.a, self.reg)
        return f, f.copy()


class OnlineSweeps:
    """Log-domain sweeps on a point-cloud cost (``ottools.PointCloud``): each half-sweep is
    a soft c-transform whose costs are computed row by row and dropped
    (``ottools._kernels._online``), O((n + m) d) memory. Same interface as
    :class:`Sweeps`; no scaling form (there is no stored kernel), so every sweep costs
    ``2 n m`` exponentials."""

    def __init__(self, run, f, g, bound=None):
        self.run = run
        self.geom = run.prob.costc
        self.geom_t = self.geom.transposed()
        n, m = self.geom.shape
        self.f, self.g = f.copy(), g.copy()
        self.fnew, self.gnew = np.empty(n), np.empty(m)
        nc_r, nc_c = _k.row_chunks(n, m), _k.row_chunks(m, n)
        self.rows_args = (np.empty((nc_r, m)), np.empty((nc_r, 2, m)))
        self.cols_args = (np.empty((nc_c, n)), np.empty((nc_c, 2, n)))
        self.par = (nc_r > 1, nc_c > 1)
        self.reg = None
        self.exact = False
        self.fresh = False
        self.cerr = 0.0

    def set_reg(self, reg):
        if reg != self.reg:
            self.exact = False
            self.cerr = 0.0
        self.reg = reg

    def absorb(self):
        pass

    def set_potentials(self, f, g):
        """Go on from the potentials ``(f, g)`` (the column error unknown)."""
        self.f[:] = f
        self.g[:] = g
        self.exact = False

    def _ctransform(self, cols, pot, prev, out):
        run = self.run
        if cols:
            geom, logw, wprev, work, par = (self.geom_t, run.loga64, run.b64, self.cols_args,
                                            self.par[1])
        else:
            geom, logw, wprev, work, par = (self.geom, run.logb64, run.a64, self.rows_args,
                                            self.par[0])
        args = geom.kernel_args() + (logw, pot, self.reg, prev, wprev, out) + work
        return _ko.ctransform_par(*args) if par else _ko.ctransform(*args)

    def sweep(self, maxiter, tol, omega, errs):
        """As :meth:`Sweeps.sweep`; ``omega > 1`` over-relaxes in the log domain,
        ``f <- f + omega (T(g) - f)``. The row error of a state comes with the next row
        pass; its column error is known when ``g`` is updated: ``T(f)`` is computed there,
        so ``sum_j b_j |exp((g_j - T(f)_j) / reg) - 1|`` is exact (zero when ``omega = 1``).
        """
        for it in range(maxiter):
            ok, e = self._ctransform(False, self.g, self.f, self.fnew)
            checked = it > 0 or self.exact
            e += self.cerr
            errs[it] = e if checked else np.inf
            if checked and e <= tol:
                return it, KernelStatus.DONE
            if not ok:
                return it, KernelStatus.NONFINITE
            if omega != 1.0:
                self.fnew += (omega - 1.0) * (self.fnew - self.f)
            ok, _ = self._ctransform(True, self.fnew, self.g, self.gnew)
            if not ok:
                return it, KernelStatus.NONFINITE
            self.f[:] = self.fnew
            if omega != 1.0:
                d = self.g - self.gnew
                self.g[:] = self.gnew - (omega - 1.0) * d
                self.cerr = float(self.run.b64 @ np.abs(np.expm1((1.0 - omega) * d
                                                                 / self.reg)))
            else:
                self.g[:] = self.gnew
                self.cerr = 0.0
            self.exact = True
        return maxiter, KernelStatus.BUDGET

    def log_step(self, tol):
        k, code = self.sweep(1, tol, 1.0, np.full(2, np.inf))
        return k, code, math.inf

    def potentials(self):
        return self.f.copy(), self.g.copy()

    def plan(self):
        return None


class OnlineSymSweeps(OnlineSweeps):
    """The averaged symmetric iterations ``f <- (f + T(f)) / 2`` of ``W(a, a)`` on a
    point-cloud cost (``x`` against itself): one online c-transform per sweep."""

    def __init__(self, run, f, cold):
        super().__init__(run, f, f)
        self.cold = cold

    def sweep(self, maxiter, tol, omega, errs):
        for it in range(maxiter):
            ok, e = self._ctransform(False, self.f, self.f, self.fnew)
            full = self.cold and it == 0
            errs[it] = 2.0 * e
            if 2.0 * e <= tol and not full:
                return it, KernelStatus.DONE
            if not ok:
                return it, KernelStatus.NONFINITE
            if full:
                self.f[:] = self.fnew
            else:
                self.f += 0.5 * (self.fnew - self.f)
            self.cold = False
        return maxiter, KernelStatus.BUDGET

    def potentials(self):
        return self.f.copy(), self.f.copy()


def tau(rho, eps):
    """The damping ``rho / (rho + eps)`` of a KL-relaxed marginal (1 when hard)."""
    return 1.0 if math.isinf(rho) else rho / (rho + eps)


def relaxed_target(w, pot, rho):
    """The optimal marginal ``w exp(-pot / rho)`` of a KL-relaxed side (``w`` if hard)."""
    if math.isinf(rho):
        return w
    with np.errstate(over="ignore"):  # inf: far from the optimum (the callers test it)
        return w * np.exp(-pot / rho)


def translation(a, b, f, g, rho):
    """The ``t`` maximising the unbalanced dual along ``(f + t, g - t)``, which leaves the
    plan as it is: ``log(A / B) / (1 / rho_a + 1 / rho_b)``,
    ``A = sum_i a_i exp(-f_i / rho_a)`` (``sum(a)`` for a hard side), ``B`` the same for
    ``g`` (as ``_kernels._unbalanced._translate``); 0 when not finite."""
    (ra, rb) = rho
    A, B = relaxed_target(a, f, ra).sum(), relaxed_target(b, g, rb).sum()
    with np.errstate(all="ignore"):  # (A / B may underflow: math.log(0) raises)
        t = ((math.log(A) - math.log(B)) / (1.0 / ra + 1.0 / rb) if A > 0 and B > 0
             else math.nan)
    return t if math.isfinite(t) else 0.0


class UbOnlineSweeps(OnlineSweeps):
    """The damped log-domain sweeps of an unbalanced problem on a point-cloud cost:
    ``f <- tau_a T(g)``, ``g <- tau_b T(f)`` (``T`` the online c-transform, over-relaxed in
    the log domain when ``omega > 1``), each followed by the translation step
    (:func:`translation`), as the dense sweeps of ``_kernels._unbalanced``.

    The error of a state is that of the dense sweeps, ``sum_i |P1_i - a_i exp(-f_i /
    rho_a)| + (columns)``: its row part comes with the next row pass (``P1_i = a_i
    exp((f_i - T(g)_i) / reg)``), its column part when ``g`` is updated (the plan's columns
    from ``T(f)``, unchanged by the translation; their targets moved with ``g``)."""

    def __init__(self, run, f, g, bound=None):
        super().__init__(run, f, g)
        self.rho = run.rho
        # the translation step after each sweep; off for SNS's log-domain iterations,
        # which have none on the dense cost (ub_log_iteration): online and dense warm-ups
        # differed by 2e-4 in the plan after two iterations
        self.translate = True

    def sweep(self, maxiter, tol, omega, errs):
        run = self.run
        (ra, rb), eps = self.rho, self.reg
        a, b = run.a64, run.b64
        ta, tb = tau(ra, eps), tau(rb, eps)
        for it in range(maxiter):
            ok, _ = self._ctransform(False, self.g, self.f, self.fnew)
            checked = it > 0 or self.exact
            with np.errstate(over="ignore", invalid="ignore"):
                e = float(np.abs(a * np.exp((self.f - self.fnew) / eps)
                                 - relaxed_target(a, self.f, ra)).sum()) + self.cerr
            errs[it] = e if checked else np.inf
            if checked and e <= tol:
                return it, KernelStatus.DONE
            if not ok:
                return it, KernelStatus.NONFINITE
            self.fnew *= ta
            if omega != 1.0:
                self.fnew += (omega - 1.0) * (self.fnew - self.f)
            ok, _ = self._ctransform(True, self.fnew, self.g, self.gnew)
            if not ok:
                return it, KernelStatus.NONFINITE
            cf = self.gnew.copy()  # T(f) at the new f: the plan's columns
            g = tb * cf
            if omega != 1.0:
                g -= (omega - 1.0) * (self.g - g)
            self.f[:] = self.fnew
            t = translation(a, b, self.f, g, self.rho) if self.translate else 0.0
            with np.errstate(over="ignore", invalid="ignore"):  # (inf: not converged)
                cols = b * np.exp((g - cf) / eps)
                self.f += t
                self.g[:] = g - t
                self.cerr = float(np.abs(cols - relaxed_target(b, self.g, rb)).sum())
            self.exact = True
        return maxiter, KernelStatus.BUDGET


def ub_log_iteration(run, eps, f, g, exact):
    """One exact damped log-domain iteration of the unbalanced problem of ``run`` at
    ``eps`` on the float64 potentials ``(f, g)``, in place: ``f <- tau_a c(g)``, then
    ``g <- tau_b c(f)`` (``c`` the c-transforms at ``eps``). Returns ``(k, code, e)`` as
    ``_kernels._sinkhorn.sinkhorn_log`` with one iteration: with ``exact`` (``g`` is the
    damped column update of ``f``, whose column error is zero) ``e`` is the error of the
    entry state, ``sum_i |P1_i - a_i exp(-f_i / rho_a)|``, and a state within the
    driver's tolerance is left unchanged (``k = 0``, DONE). Nothing changes when a value
    is not finite (NONFINITE)."""
    (ra, rb), cost = run.rho, run.prob.costc
    n, m = cost.shape
    fnew = np.empty(n)
    finite, _ = _lse.c_transform_rows(run.a64, run.logb64, g, cost, eps, f, fnew)
    if not finite:
        return 0, KernelStatus.NONFINITE, math.inf
    e = math.inf
    if exact:
        with np.errstate(over="ignore", invalid="ignore"):  # (inf: not converged)
            e = float(np.abs(run.a64 * np.exp((f - fnew) / eps)
                             - relaxed_target(run.a64, f, ra)).sum())
        if e <= run.tol_abs:
            return 0, KernelStatus.DONE, e
    fnew *= tau(ra, eps)
    out = np.empty(m)
    _lse.col_lse(run.loga64, fnew, cost, 1.0 / eps, np.empty(m), np.empty(m), out)
    gnew = -tau(rb, eps) * eps * out
    if not np.all(np.isfinite(gnew)):
        return 0, KernelStatus.NONFINITE, e
    f[:] = fnew
    g[:] = gnew
    return 1, KernelStatus.BUDGET, e


class UbSweeps(Sweeps):
    """Unbalanced sweeps: the damped updates of ``ottools._kernels._unbalanced`` on the
    same absorbed kernel; ``run.rho = (rho_a, rho_b)``."""

    def __init__(self, run, f, g, bound, low=False):
        super().__init__(run, f, g, bound, low)
        self.rho = run.rho
        # The translation steps' total since the last absorption, applied to the absorbed
        # potentials there (F + t, G - t) and read by :meth:`potentials`: accumulated
        # step by step across kernel calls, so that how a run is split into calls (a
        # callback's period) never changes the iterates (F += per call rounded otherwise).
        self.shift = np.zeros(1)

    def absorb(self):
        self.f += self.shift[0]
        self.g -= self.shift[0]
        self.shift[0] = 0.0
        super().absorb()

    def potentials(self):
        f, g = super().potentials()
        return f + self.shift[0], g - self.shift[0]

    def to_float64(self):
        low = self.low
        out = super().to_float64()  # absorbed potentials from potentials(): shift in them
        if low:
            self.shift[0] = 0.0
        return out

    def errors(self, f, g, rows, cols):
        (ra, rb) = self.rho
        return (float(np.abs(rows - relaxed_target(self.a, f, ra)).sum()),
                float(np.abs(cols - relaxed_target(self.b, g, rb)).sum()))

    def _derived(self):
        (ra, rb), eps = self.rho, self.reg
        self.tau = (tau(ra, eps), tau(rb, eps))
        self.k = (0.0 if math.isinf(ra) else eps / ra, 0.0 if math.isinf(rb) else eps / rb)
        self.pa = np.zeros_like(self.f) if math.isinf(ra) else -self.f / (ra + eps)
        self.qa = np.zeros_like(self.f) if math.isinf(ra) else -self.f / ra
        self.pb = np.zeros_like(self.g) if math.isinf(rb) else -self.g / (rb + eps)
        self.qb = np.zeros_like(self.g) if math.isinf(rb) else -self.g / rb

    def _kernel(self, maxiter, tol, omega, errs):
        (ra, rb), eps = self.rho, self.reg
        args = (self.K, self.a, self.b, self.u, self.v, self.pa, self.qa, self.pb, self.qb,
                self.tau[0], self.k[0], self.tau[1], self.k[1], 1.0 / ra, 1.0 / rb, eps,
                self.bound, tol, maxiter, self.exact, self.cerr, errs, self.s, self.t,
                self.unew, self.vk)
        if self.chunks > 1:
            out = _kub.unbalanced_sweep_par(*args, self.T, self.E, omega, self.shift)
        else:
            out = _kub.unbalanced_sweep(*args, omega, self.shift)
        # The translation steps moved the absorbed potentials (K and the scalings kept):
        # self.shift, applied at the next absorption.
        return out

    def log_step(self, tol):
        """One exact damped log-domain iteration (the fallback): :func:`ub_log_iteration`."""
        self.absorb()
        k, code, _ = ub_log_iteration(self.run, self.reg, self.f, self.g, False)
        if code != KernelStatus.NONFINITE:
            self.cerr[0] = 0.0
            self.exact = True
        self.rebuild()
        return k, code, math.inf


class Relaxation:
    """The over-relaxation parameter ``omega`` from the observed rates of the error: the
    rule of ``ottools._kernels._relax`` (one copy, shared with the batches' kernel) on
    its state array."""

    def __init__(self, enabled):
        self.state, self.checks = _kr.new_state(bool(enabled))

    @property
    def omega(self):
        return float(self.state[_kr.OMEGA])

    @property
    def enabled(self):
        return bool(self.state[_kr.ENABLED])

    @property
    def settled(self):
        return int(self.state[_kr.SETTLED])

    def update(self, errs, early=False):
        """Adjust ``omega`` after a block whose known errors (in order) are ``errs`` (a
        float64 array, finite entries only; ``early``: the first decision of a stage,
        after ``EARLY`` plain sweeps); returns the number of sweeps before the next
        decision."""
        return int(_kr.update(self.state, self.checks, errs, errs.size, early))

    def fail(self):
        """A relaxed step under/overflowed: plain Sinkhorn from here on."""
        _kr.fail(self.state)
