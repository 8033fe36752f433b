"""Monge gap and Sinkhorn divergence: time, iterations and accuracy, beside POT.

Tolerances differ in meaning (ottools: L1 error of both marginals at every iteration;
POT: L2 error of one marginal every 10 iterations), so each solver also reports
``track_abs_err``: the distance of its value to the same quantity solved at 1e-12.
"""

import numpy as np

import ottools

from .common import import_pot, sizes

TOL = 1e-6


def _clouds(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) * [1.0, 0.3]
    y = rng.normal(size=(n, 2)) * 0.5 + [0.5, 0.0]
    return x, y


class SinkhornDivergence:
    """``S_eps(x, y)``: ottools (symmetric update for W(a, a)) against POT."""

    params = (sizes([200, 1000], [200]), [0.1, 1.0], ["ottools", "pot"])
    param_names = ["n", "reg", "library"]
    timeout = 300

    def setup(self, n, reg, library):
        self.x, self.y = _clouds(n)
        if library == "pot":
            ot = import_pot()

            def run(tol):
                return float(ot.bregman.empirical_sinkhorn_divergence(
                    self.x, self.y, reg, stopThr=tol, numIterMax=100_000))
        else:
            def run(tol):
                return ottools.sinkhorn_divergence(self.x, self.y, reg=reg, tol=tol,
                                                   maxiter=100_000).fun
        self.run = run
        self.ref = run(1e-12)  # also compiles / warms up

    def time_divergence(self, n, reg, library):
        self.run(TOL)

    def track_abs_err(self, n, reg, library):
        return abs(self.run(TOL) - self.ref)


class SelfTransport:
    """``W_eps(a, a)``: ``auto`` (the averaged symmetric update) against plain Sinkhorn."""

    params = (sizes([200, 500], [200]), [0.1, 1.0], ["auto", "sinkhorn-log"])
    param_names = ["n", "reg", "solver"]
    timeout = 300

    def setup(self, n, reg, solver):
        x, _ = _clouds(n)
        self.cost = ottools.cost_matrix(x, x)
        self.a = np.full(n, 1.0 / n)
        if solver == "auto":
            def run():
                return ottools.sinkhorn(self.a, self.a, self.cost, reg, tol=TOL,
                                        maxiter=100_000)
        else:
            def run():
                return ottools.sinkhorn(self.a, self.a, self.cost, reg, method="log",
                                        tol=TOL, maxiter=100_000)
        self.run = run
        self.run()

    def time_solve(self, n, reg, solver):
        self.run()

    def track_nit(self, n, reg, solver):
        return self.run().nit

    def track_err(self, n, reg, solver):
        return self.run().err


class MongeGap:
    """Exact (assignment) and entropic (reg="auto") Monge gap of a rotation."""

    params = (sizes([200, 1000], [200]), ["exact", "auto"])
    param_names = ["n", "reg"]
    timeout = 300

    def setup(self, n, reg):
        x, _ = _clouds(n)
        self.x = x
        self.tx = x @ np.array([[0.0, -1.0], [1.0, 0.0]]).T
        self.reg = 0 if reg == "exact" else "auto"
        ottools.monge_gap(self.x, self.tx, reg=self.reg)

    def time_monge_gap(self, n, reg):
        ottools.monge_gap(self.x, self.tx, reg=self.reg)

    def track_nit(self, n, reg):
        return ottools.monge_gap(self.x, self.tx, reg=self.reg).nit
