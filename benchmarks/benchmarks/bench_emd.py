"""Exact OT: ottools.emd beside POT's ot.emd (network simplex, single thread)."""

import numpy as np

import ottools

from .common import import_pot, marginal_error, sizes, uniform_2d_problem


class ExactOT:
    """Time of an exact solve of the uniform 2-D problem, cold start; ``track_cost``
    shows that both reach the same optimum, ``track_err`` the plan's marginal error."""

    params = (sizes([500, 1000, 2000], [300]), ["ottools", "pot"])
    param_names = ["n", "library"]
    timeout = 300

    def setup(self, n, library):
        self.a, self.b, self.cost = uniform_2d_problem(n)
        if library == "pot":
            ot = import_pot()

            def run():
                plan, log = ot.emd(self.a, self.b, self.cost, numItermax=10**9, log=True)
                return plan, float(log["cost"])
        else:
            def run():
                res = ottools.emd(self.a, self.b, self.cost)
                return res.plan.toarray(), res.fun
        self.run = run
        self.run()  # compile / warm up

    def time_solve(self, n, library):
        self.run()

    def track_cost(self, n, library):
        return self.run()[1]

    def track_err(self, n, library):
        return marginal_error(self.run()[0], self.a, self.b)


class ExactOTWarmStart:
    """Time of an exact solve warm-started from the optimal potentials of the same
    problem (ottools ``init=``, POT ``potentials_init=``): what a warm start can give at
    best; ``track_nit`` shows the pivots left (ottools only)."""

    params = (sizes([1000, 2000], [300]), ["ottools", "pot"])
    param_names = ["n", "library"]
    timeout = 300

    def setup(self, n, library):
        self.a, self.b, self.cost = uniform_2d_problem(n)
        ref = ottools.emd(self.a, self.b, self.cost)
        f, g = ref.f, ref.g
        if library == "pot":
            ot = import_pot()
            if "potentials_init" not in ot.emd.__code__.co_varnames:
                raise NotImplementedError("this POT has no potentials_init")

            def run():
                ot.emd(self.a, self.b, self.cost, numItermax=10**9, potentials_init=(f, g))
                return np.nan
        else:
            def run():
                return ottools.emd(self.a, self.b, self.cost, init=(f, g)).nit
        self.run = run
        self.run()

    def time_solve(self, n, library):
        self.run()

    def track_nit(self, n, library):
        return self.run()
