"""Distance matrices over many measures: ``pairwise_distances`` on one and two threads,
beside a Python loop of the single-pair function (ottools, POT for the sliced metric).

Sizes are small (asv runs each case many times); benchmarks/pairwise_speed.py times the
issue's sizes (N = 1000 sliced, N = 200 divergence) and Dask.
"""

import numpy as np

import ottools

from .common import import_pot, sizes


def _clouds(N, lo=100, hi=200, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(lo, hi + 1)), d)) for _ in range(N)]


class PairwiseSliced:
    """SW_2 matrix, 100 shared directions, ragged clouds of 100-200 points in 3-D."""

    params = (sizes([20, 200], [20]), ["threads-1", "threads-2", "loop-ottools", "loop-pot"])
    param_names = ["N", "runner"]
    timeout = 300
    number = 1
    repeat = (1, 5, 60.0)

    def setup(self, N, runner):
        self.xs = _clouds(N)
        kw = {"n_projections": 100}
        if runner == "loop-pot":
            if N > 20:
                raise NotImplementedError("the POT loop is timed at N = 20 only "
                                          "(see pairwise_speed.py)")
            ot = import_pot()

            def run():
                return [[ot.sliced_wasserstein_distance(x, y, n_projections=100, seed=0)
                         for y in self.xs[i + 1:]] for i, x in enumerate(self.xs)]
        elif runner == "loop-ottools":
            def run():
                return [[ottools.sliced_wasserstein(x, y, n_projections=100, rng=0)
                         for y in self.xs[i + 1:]] for i, x in enumerate(self.xs)]
        else:
            jobs = int(runner[-1])

            def run():
                return ottools.pairwise_distances(self.xs, metric="sliced_wasserstein",
                                                  metric_kwargs=kw, rng=0, n_jobs=jobs)
        self.run = run
        ottools.pairwise_distances(self.xs[:4], metric="sliced_wasserstein", rng=0)  # compile

    def time_matrix(self, N, runner):
        self.run()


class PairwiseDivergence:
    """Sinkhorn divergence matrix (reg = 0.5, tol = 1e-9), ragged clouds of 100-200
    points in 3-D: self terms solved once per measure."""

    params = (sizes([12, 30], [12]), ["threads-1", "threads-2", "loop-ottools"])
    param_names = ["N", "runner"]
    timeout = 300
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self, N, runner):
        self.xs = _clouds(N, seed=1)
        if runner == "loop-ottools":
            def run():
                res = [ottools.sinkhorn_divergence(x, y, reg=0.5)
                       for i, x in enumerate(self.xs) for y in self.xs[i + 1:]]
                return sum(not r.success for r in res)
        else:
            jobs = int(runner[-1])

            def run():
                _, status = ottools.pairwise_distances(
                    self.xs, metric="sinkhorn_divergence", metric_kwargs={"reg": 0.5},
                    n_jobs=jobs, return_status=True)
                return int(np.count_nonzero(status))
        self.run = run
        ottools.pairwise_distances(self.xs[:3], metric_kwargs={"reg": 0.5})  # compile

    def time_matrix(self, N, runner):
        self.run()

    def track_failures(self, N, runner):
        return self.run()
