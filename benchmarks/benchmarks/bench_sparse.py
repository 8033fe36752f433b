"""Sparsity-constrained and quadratically regularized OT, beside POT."""

import contextlib
import io

import ottools

from .common import import_pot, sizes, uniform_2d_problem

N_ITER = 50


class SparsityConstrained:
    """``N_ITER`` iterations from zero (POT: numItermax=N_ITER, stopThr=0)."""

    params = (
        sizes([200, 1000], [200]),
        [2, 10],
        ["semi-dual", "dual"],
        ["ottools", "pot"],
    )
    param_names = ["n", "max_nz", "formulation", "library"]
    timeout = 300

    def setup(self, n, max_nz, formulation, library):
        self.a, self.b, self.cost = uniform_2d_problem(n)
        reg = 0.1
        if library == "pot":
            ot = import_pot()
            fn = (ot.smooth.smooth_ot_semi_dual if formulation == "semi-dual"
                  else ot.smooth.smooth_ot_dual)

            def run():
                with contextlib.redirect_stdout(io.StringIO()):
                    G, log = fn(self.a, self.b, self.cost, reg,
                                reg_type="sparsity_constrained", max_nz=max_nz,
                                numItermax=N_ITER, stopThr=0.0, log=True)
                return -float(log["res"].fun)
        else:
            def run():
                return ottools.sparsity_constrained_ot(
                    self.a, self.b, self.cost, reg, max_nz, formulation=formulation,
                    tol=0.0, maxiter=N_ITER).dual_value
        self.run = run
        self.run()  # compile / warm up

    def time_iterations(self, n, max_nz, formulation, library):
        self.run()

    def track_dual_value(self, n, max_nz, formulation, library):
        return self.run()


class SparsityConstrainedDefaults:
    """A full solve with the defaults (to convergence, a certificate or the stall
    budget), beside POT's full solve with its defaults: time, dual value, and for
    ottools the evaluations, the active-set solves and the time to the best value."""

    params = (sizes([200, 400], [200]), [2, 5], ["semi-dual", "dual"], ["ottools", "pot"])
    param_names = ["n", "max_nz", "formulation", "library"]
    timeout = 300

    def setup(self, n, max_nz, formulation, library):
        self.a, self.b, self.cost = uniform_2d_problem(n)
        self.args = (max_nz, formulation, library)
        self.res = self.solve()

    def solve(self):
        max_nz, formulation, library = self.args
        if library == "pot":
            ot = import_pot()
            fn = (ot.smooth.smooth_ot_semi_dual if formulation == "semi-dual"
                  else ot.smooth.smooth_ot_dual)
            with contextlib.redirect_stdout(io.StringIO()):
                _, log = fn(self.a, self.b, self.cost, 0.1,
                            reg_type="sparsity_constrained", max_nz=max_nz, log=True)
            return {"dual_value": -float(log["res"].fun)}
        return ottools.sparsity_constrained_ot(self.a, self.b, self.cost, 0.1, max_nz,
                                               formulation=formulation)

    def time_solve(self, n, max_nz, formulation, library):
        self.solve()

    def track_dual_value(self, n, max_nz, formulation, library):
        return self.res["dual_value"]

    def _ours(self, name, library):
        return float(self.res[name]) if library == "ottools" else float("nan")

    def track_nfev(self, n, max_nz, formulation, library):
        return self._ours("nfev", library)

    def track_kkt_solves(self, n, max_nz, formulation, library):
        return self._ours("kkt_solves", library)

    def track_time_to_best_fraction(self, n, max_nz, formulation, library):
        if library != "ottools":
            return float("nan")
        return self.res.time_to_best / self.res.time


class QuadraticToTolerance:
    """quadratic_ot to err <= 1e-6 and to the default (1e-9), and the iterations it took."""

    params = (sizes([200, 1000], [200]), ["dual", "semi-dual"], [1e-6, 1e-9])
    param_names = ["n", "formulation", "tol"]
    timeout = 300

    def setup(self, n, formulation, tol):
        self.a, self.b, self.cost = uniform_2d_problem(n)
        self.formulation_, self.tol_ = formulation, tol
        self.solve()

    def solve(self):
        return ottools.quadratic_ot(self.a, self.b, self.cost, 0.1,
                                    formulation=self.formulation_, tol=self.tol_)

    def time_solve(self, n, formulation, tol):
        self.solve()

    def track_nit(self, n, formulation, tol):
        return self.solve().nit

    def track_err(self, n, formulation, tol):
        return self.solve().err
