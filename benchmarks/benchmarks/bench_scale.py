"""Unbalanced OT, batches of small problems and point clouds (costs on the fly), beside
POT where its solver finishes within asv's limits.

The scripts give the ratios of the issues' targets in one process (``benchmarks/
unbalanced_speed.py``, ``benchmarks/scale_speed.py batch`` and ``online``); here each
configuration is timed on its own, so that a regression shows per solver.
"""

import warnings

import numpy as np

import ottools

from .common import import_pot, sizes, uniform_2d_problem

REG_M = 1.0


class UnbalancedToTolerance:
    """KL-relaxed marginals (masses 1 and 1.5, ``reg_m = 1``): ours at ``tol = 1e-6``,
    POT's ``sinkhorn_unbalanced`` at the ``stopThr`` that ``unbalanced_speed.py`` found to
    reach the same plan accuracy at n = 4000 (translation invariant: 1e-8; stabilized:
    1e-12). ``track_plan_error``: ``|P - P*|_1 / |P*|_1`` against our plan at tol 1e-12
    (the script's accuracy is 1e-6)."""

    params = (sizes([1000, 4000], [500]), sizes([1e-2, 1e-3], [1e-2]),
              ["ottools-auto", "pot-sinkhorn_translation_invariant",
               "pot-sinkhorn_stabilized"])
    param_names = ["n", "reg", "solver"]
    timeout = 600

    def setup(self, n, reg, solver):
        a, b, cost = uniform_2d_problem(n)
        b = 1.5 * b
        lib, method = solver.split("-", 1)
        if lib == "pot":
            ot = import_pot()
            if method == "sinkhorn_stabilized" and n > 1000:
                raise NotImplementedError("POT's stabilized method takes minutes here")
            thr = 1e-8 if method == "sinkhorn_translation_invariant" else 1e-12

            def run():
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    return ot.unbalanced.sinkhorn_unbalanced(
                        a, b, cost, reg, REG_M, method=method, stopThr=thr,
                        numItermax=200_000)

            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    ot.unbalanced.sinkhorn_unbalanced(a[:5], b[:5], cost[:5, :5], reg,
                                                      REG_M, method=method)
            except (ValueError, KeyError, TypeError) as exc:
                raise NotImplementedError(f"this POT lacks {method}") from exc
        else:
            def run():
                return ottools.sinkhorn(a, b, cost, reg, reg_m=REG_M, tol=1e-6,
                                        maxiter=200_000).plan
        self.ref = ottools.sinkhorn(a, b, cost, reg, reg_m=REG_M, tol=1e-12,
                                    maxiter=200_000).plan
        self.run = run
        self.run()  # compile / warm up

    def time_solve(self, n, reg, solver):
        self.run()

    def track_plan_error(self, n, reg, solver):
        P = np.asarray(self.run(), dtype=np.float64)
        return float(np.abs(P - self.ref).sum() / np.abs(self.ref).sum())


class Float32Sweeps:
    """``sinkhorn`` (``auto``, tol 1e-6) on float64 dense costs of at least 2**22 entries,
    with the float32 first phase (``options["float32_sweeps"]``, the default there) and
    without; ``benchmarks/float32_sweeps.py`` alternates both in one process."""

    params = (sizes([2048, 4000], [2048]), [1e-2, 1e-3], [True, False])
    param_names = ["n", "reg", "float32_sweeps"]
    timeout = 300

    def setup(self, n, reg, low):
        a, b, cost = uniform_2d_problem(n)

        def run():
            return ottools.sinkhorn(a, b, cost, reg, tol=1e-6,
                                    options={"float32_sweeps": low})

        self.run = run
        self.run()

    def time_solve(self, n, reg, low):
        self.run()

    def track_nit(self, n, reg, low):
        return int(self.run().nit)


def _batch_or_loop(cost, reg, solver, **kwargs):
    """A runner for the (B, n, m) costs: one batched ``sinkhorn`` call
    (``"ottools-batch"``) or a Python loop over the problems; returns the mean ``nit``."""
    if solver == "ottools-batch":
        return lambda: ottools.sinkhorn(None, None, cost, reg, **kwargs).nit.mean()
    return lambda: np.mean([ottools.sinkhorn(None, None, c, reg, **kwargs).nit
                            for c in cost])


class SinkhornBatch:
    """B problems of n x n (uniform points in the unit square, ``reg = 0.05``, tol 1e-6):
    one batched call against a Python loop over ``sinkhorn`` (the same iterates)."""

    params = (["1000x64", "100x256"], ["ottools-batch", "ottools-loop"])
    param_names = ["shape", "solver"]
    timeout = 300

    def setup(self, shape, solver):
        B, n = (int(s) for s in shape.split("x"))
        rng = np.random.default_rng(0)
        x, y = rng.random((B, n, 2)), rng.random((B, n, 2))
        cost = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
        self.run = _batch_or_loop(cost, 0.05, solver, tol=1e-6)
        self.run()

    def time_solve(self, shape, solver):
        self.run()

    def track_mean_nit(self, shape, solver):
        return float(self.run())


class SinkhornBatchSmallReg:
    """B = 200 problems of 64 x 64 (uniform points in the unit square, default tol) at
    ``reg`` from easy to annealed: one batched call against a Python loop over
    ``sinkhorn``. At small ``reg`` the batch hands the problems that one call anneals or
    finishes by Newton steps back to that driver, so both run at about the same speed."""

    params = ([0.05, 2e-3, 5e-4], ["ottools-batch", "ottools-loop"])
    param_names = ["reg", "solver"]
    timeout = 300

    def setup(self, reg, solver):
        rng = np.random.default_rng(0)
        x, y = rng.random((200, 64, 2)), rng.random((200, 64, 2))
        cost = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
        self.run = _batch_or_loop(cost, reg, solver)
        self.run()

    def time_solve(self, reg, solver):
        self.run()

    def track_mean_nit(self, reg, solver):
        return float(self.run())


class DivergenceBatch:
    """``sinkhorn_divergence`` on B = 256 pairs of 64 points (uniform in the unit square,
    reg 0.05): one call on the (B, N, 2) batch against a loop over the pairs."""

    params = (["ottools-batch", "ottools-loop"],)
    param_names = ["solver"]
    timeout = 300

    def setup(self, solver):
        rng = np.random.default_rng(0)
        x, y = rng.random((256, 64, 2)), rng.random((256, 64, 2))
        if solver == "ottools-batch":
            def run():
                return ottools.sinkhorn_divergence(x, y, reg=0.05).fun.sum()
        else:
            def run():
                return sum(ottools.sinkhorn_divergence(x[k], y[k], reg=0.05).fun
                           for k in range(256))
        self.run = run
        self.run()

    def time_divergence(self, solver):
        self.run()


class OnlineSinkhorn:
    """n uniform points in the unit cube on each side, ``reg = 1e-2`` times the squared
    diameter, tol 1e-6 (our err): ``PointCloud`` costs computed on the fly, beside the dense
    cost (ours) and POT's lazy ``empirical_sinkhorn`` for our plain sweeps' iteration
    count (n <= 2000: it is about 10x slower than ours)."""

    params = (sizes([2000, 10000], [1000]),
              ["ottools-online", "ottools-dense", "pot-empirical_sinkhorn_lazy"])
    param_names = ["n", "solver"]
    timeout = 600

    def setup(self, n, solver):
        rng = np.random.default_rng(0)
        x, y = rng.random((n, 3)), rng.random((n, 3))
        reg = 1e-2 * 3.0
        geom = ottools.PointCloud(x, y)
        if solver == "ottools-online":
            def run():
                return ottools.sinkhorn(None, None, geom, reg, tol=1e-6).nit
        elif solver == "ottools-dense":
            cost = ottools.cost_matrix(x, y)

            def run():
                return ottools.sinkhorn(None, None, cost, reg, tol=1e-6).nit
        else:
            ot = import_pot()
            if n > 2000:
                raise NotImplementedError("POT's lazy solver takes minutes here")
            plain = ottools.sinkhorn(None, None, geom, reg, method="log", tol=1e-6)
            iters = int(np.ceil(plain.nit / 10) * 10)
            a = np.full(n, 1.0 / n)

            def run():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ot.bregman.empirical_sinkhorn(x, y, reg, a, a, numIterMax=iters,
                                                  stopThr=0.0, isLazy=True, batchSize=1000)
                return iters
        self.run = run
        self.run()

    def time_solve(self, n, solver):
        self.run()

    def track_nit(self, n, solver):
        return float(self.run())
