"""Sinkhorn: time per fixed number of iterations, beside POT."""

import numpy as np

import ottools

from .common import import_pot, marginal_error, sizes, uniform_2d_problem

N_ITER = 10


class SinkhornIterations:
    """Time of ``N_ITER`` iterations (tol=0, so every run does exactly N_ITER)."""

    params = (
        sizes([500, 2000, 4000], [500]),
        [1e-1, 1e-2, 1e-3],
        ["float64", "float32"],
        ["ottools-log", "ottools-scaling", "pot-sinkhorn_log", "pot-sinkhorn"],
    )
    param_names = ["n", "reg", "dtype", "solver"]
    timeout = 300

    def setup(self, n, reg, dtype, solver):
        self.a, self.b, self.cost = uniform_2d_problem(n, dtype=np.dtype(dtype))
        lib, method = solver.split("-", 1)
        if lib == "pot":
            ot = import_pot()
            if method == "sinkhorn_log" and n > 2000:
                raise NotImplementedError("POT sinkhorn_log at n > 2000 is too slow for asv")

            def run():
                return ot.sinkhorn(self.a, self.b, self.cost, reg, method=method,
                                   numItermax=N_ITER, stopThr=0.0, warn=False)
        else:
            if method == "scaling" and reg < 1e-2 and dtype == "float32":
                raise NotImplementedError("scaling form underflows here")

            def run():
                return ottools.sinkhorn(self.a, self.b, self.cost, reg, method=method,
                                        tol=0.0, maxiter=N_ITER).plan
        self.run = run
        self.run()  # compile / warm up

    def time_iterations(self, n, reg, dtype, solver):
        self.run()

    def track_err(self, n, reg, dtype, solver):
        return marginal_error(self.run(), self.a, self.b)


class SinkhornToTolerance:
    """Time to err <= 1e-6 with method='auto', and the iterations it took."""

    params = (sizes([500, 2000], [500]), [1e-1, 1e-2])
    param_names = ["n", "reg"]
    timeout = 300

    def setup(self, n, reg):
        self.a, self.b, self.cost = uniform_2d_problem(n)
        ottools.sinkhorn(self.a, self.b, self.cost, reg, tol=1e-6)

    def time_auto(self, n, reg):
        ottools.sinkhorn(self.a, self.b, self.cost, reg, tol=1e-6)

    def track_nit(self, n, reg):
        return ottools.sinkhorn(self.a, self.b, self.cost, reg, tol=1e-6).nit

    def track_err(self, n, reg):
        return ottools.sinkhorn(self.a, self.b, self.cost, reg, tol=1e-6).err
