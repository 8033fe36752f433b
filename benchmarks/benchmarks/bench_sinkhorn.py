"""Sinkhorn: time per fixed number of iterations, beside POT."""

import numpy as np

import ottools

from .common import import_pot, marginal_error, sizes, uniform_2d_problem

N_ITER = 10


class SinkhornIterations:
    """Time of ``N_ITER`` iterations (tol=0, so every run does exactly N_ITER)."""

    params = (
        sizes([500, 2000, 4000], [500]),
        sizes([1e-1, 1e-2, 1e-3], [1e-3]),
        ["float64", "float32"],
        ["ottools-log", "ottools-scaling", "pot-sinkhorn_log", "pot-sinkhorn",
         "pot-sinkhorn_stabilized"],
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
    """Time to err <= 1e-6 (our err, on both plans), ottools "auto" beside POT.

    POT iterates plain Sinkhorn: it runs the number of iterations our plain
    ``method="log"`` needs (rounded up to POT's check period of 10) with ``stopThr=0``,
    in its scaling form (``pot-sinkhorn``, its fastest method where it converges) or
    its log form (``pot-sinkhorn_log``, n <= 1000 only). ``track_err`` shows the err of
    the plan each one returns.
    """

    params = (sizes([500, 2000, 4000], [500]), [1e-2, 1e-3],
              ["ottools-auto", "ottools-log", "pot-sinkhorn", "pot-sinkhorn_log"])
    param_names = ["n", "reg", "solver"]
    timeout = 600

    def setup(self, n, reg, solver):
        self.a, self.b, self.cost = uniform_2d_problem(n)
        lib, method = solver.split("-", 1)
        if lib == "pot":
            ot = import_pot()
            if method == "sinkhorn_log" and n > 1000:
                raise NotImplementedError("POT sinkhorn_log at n > 1000 is too slow for asv")
            plain = ottools.sinkhorn(self.a, self.b, self.cost, reg, method="log",
                                     tol=1e-6, maxiter=100_000)
            n_iter = int(np.ceil(plain.nit / 10) * 10)

            def run():
                return ot.sinkhorn(self.a, self.b, self.cost, reg, method=method,
                                   numItermax=n_iter, stopThr=0.0, warn=False)
        else:
            def run():
                return ottools.sinkhorn(self.a, self.b, self.cost, reg, method=method,
                                        tol=1e-6, maxiter=100_000).plan
        self.run = run
        self.run()  # compile / warm up

    def time_to_tolerance(self, n, reg, solver):
        self.run()

    def track_err(self, n, reg, solver):
        return marginal_error(self.run(), self.a, self.b)
