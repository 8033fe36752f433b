"""Sliced family: SW against POT on the same projections, 1-D OT against SciPy."""

import numpy as np

import ottools

from .common import import_pot, sizes


def _clouds(n, d=3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d)) * np.linspace(0.5, 2.0, d) + 1.0
    return x.astype(dtype), y.astype(dtype)


def _directions(L, d, seed=1):
    theta = np.random.default_rng(seed).normal(size=(L, d))
    return theta / np.linalg.norm(theta, axis=1, keepdims=True)


class SlicedWasserstein:
    """SW_2 at d = 3 with 500 given projections (uniform weights), beside POT."""

    params = (sizes([1_000, 10_000, 100_000], [1_000]), ["ottools", "pot"])
    param_names = ["n", "library"]
    timeout = 600
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self, n, library):
        if library == "pot" and n > 10_000:
            raise NotImplementedError("POT takes ~34 s at n = 100,000: see sliced_speed.py")
        self.x, self.y = _clouds(n)
        self.theta = _directions(500, 3)
        if library == "pot":
            ot = import_pot()

            def run():
                return ot.sliced_wasserstein_distance(self.x, self.y, projections=self.theta.T)
        else:
            def run():
                return ottools.sliced_wasserstein(self.x, self.y, directions=self.theta)
        self.run = run
        if library == "ottools":
            self.run()  # compile / warm up

    def time_sliced(self, n, library):
        self.run()

    def track_value(self, n, library):
        return float(self.run())


class SlicedWeighted:
    """Weighted, unequal sizes (merge of cumulative weights), float32 and float64."""

    params = (sizes([10_000, 100_000], [10_000]), ["float64", "float32"])
    param_names = ["n", "dtype"]
    timeout = 300

    def setup(self, n, dtype):
        self.x, self.y = _clouds(n, dtype=np.dtype(dtype))
        self.y = self.y[: n // 2]
        rng = np.random.default_rng(2)
        self.a = rng.random(n).astype(dtype)
        self.b = rng.random(n // 2).astype(dtype)
        self.theta = _directions(100, 3).astype(dtype)
        ottools.sliced_wasserstein(self.x, self.y, self.a, self.b, directions=self.theta)

    def time_weighted(self, n, dtype):
        ottools.sliced_wasserstein(self.x, self.y, self.a, self.b, directions=self.theta)


class SlicedBatch:
    """A batch of B pairs of 256-point clouds (d = 3, 100 directions drawn once)."""

    params = (sizes([16, 256], [16]),)
    param_names = ["B"]
    timeout = 300

    def setup(self, B):
        rng = np.random.default_rng(3)
        self.x = rng.normal(size=(B, 256, 3))
        self.y = rng.normal(size=(B, 256, 3)) + 1.0
        ottools.sliced_wasserstein(self.x[:2], self.y[:2], rng=0)

    def time_batch(self, B):
        ottools.sliced_wasserstein(self.x, self.y, rng=0)


class SlicedThreads:
    """SW_2 at n = 100,000, d = 3, L = 500 with 1 and 2 Numba threads."""

    params = (sizes([100_000], [10_000]), [1, 2])
    param_names = ["n", "threads"]
    timeout = 300
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self, n, threads):
        import numba

        if threads > numba.config.NUMBA_NUM_THREADS:
            raise NotImplementedError("fewer CPUs than threads")
        self.x, self.y = _clouds(n)
        self.theta = _directions(500, 3)
        self.old = numba.get_num_threads()
        numba.set_num_threads(threads)
        ottools.sliced_wasserstein(self.x, self.y, directions=self.theta)

    def teardown(self, n, threads):
        import numba

        numba.set_num_threads(self.old)

    def time_sliced(self, n, threads):
        ottools.sliced_wasserstein(self.x, self.y, directions=self.theta)


class Estimators:
    """Estimators at equal cost: time, and the squared error over 20 seeds (track_)."""

    params = (["mc", "lower-cv", "upper-cv", "qmc", "orthogonal"],)
    param_names = ["estimator"]
    timeout = 300

    def setup(self, estimator):
        self.x, self.y = _clouds(2_000, d=10)
        self.kw = (dict(estimator=estimator) if estimator.endswith("cv") or estimator == "mc"
                   else dict(directions=estimator))
        self.exact = ottools.sliced_wasserstein(self.x, self.y, n_projections=20_000,
                                                directions="orthogonal", rng=0) ** 2
        ottools.sliced_wasserstein(self.x, self.y, n_projections=50, rng=0, **self.kw)

    def time_estimator(self, estimator):
        ottools.sliced_wasserstein(self.x, self.y, n_projections=50, rng=0, **self.kw)

    def track_mse(self, estimator):
        vals = [ottools.sliced_wasserstein(self.x, self.y, n_projections=50, rng=s,
                                           **self.kw) ** 2 for s in range(20)]
        return float(np.mean((np.array(vals) - self.exact) ** 2))


class MaxSliced:
    """Max-SW (ascent) and v-DSW at n = 2,000, d = 10."""

    timeout = 300

    def setup(self):
        self.x, self.y = _clouds(2_000, d=10)
        ottools.max_sliced_wasserstein(self.x[:50], self.y[:50], rng=0)
        ottools.distributional_sliced_wasserstein(self.x[:50], self.y[:50], rng=0)

    def time_max_sliced(self):
        ottools.max_sliced_wasserstein(self.x, self.y, rng=0)

    def time_distributional(self):
        ottools.distributional_sliced_wasserstein(self.x, self.y, rng=0)

    def track_max_sliced_nit(self):
        return ottools.max_sliced_wasserstein(self.x, self.y, rng=0).nit

    def track_max_sliced_rel_increase(self):
        return ottools.max_sliced_wasserstein(self.x, self.y, rng=0).rel_increase


class Wasserstein1D:
    """Exact 1-D W_1 beside scipy.stats.wasserstein_distance."""

    params = (sizes([10_000, 1_000_000], [10_000]), ["uniform", "weighted"],
              ["ottools", "scipy"])
    param_names = ["n", "weights", "library"]
    timeout = 300

    def setup(self, n, weights, library):
        rng = np.random.default_rng(0)
        self.u, self.v = rng.normal(size=n), rng.exponential(size=n)
        self.w = (rng.random(n), rng.random(n)) if weights == "weighted" else (None, None)
        if library == "scipy":
            from scipy.stats import wasserstein_distance as fn
        else:
            fn = ottools.wasserstein_1d
        self.fn = fn
        fn(self.u[:10], self.v[:10])

    def time_wasserstein_1d(self, n, weights, library):
        self.fn(self.u, self.v, *self.w)


class SampleVMF:
    params = ([3, 100],)
    param_names = ["d"]

    def setup(self, d):
        self.mu = np.ones(d)
        ottools.sample_vmf(self.mu, 10.0, 10, rng=0)

    def time_sample_vmf(self, d):
        ottools.sample_vmf(self.mu, 10.0, 100_000, rng=0)


class SlicedColdStart:
    timeout = 120

    def timeraw_first_sliced(self):
        return """
        import numpy as np, ottools
        x = np.random.default_rng(0).normal(size=(50, 3))
        ottools.sliced_wasserstein(x, x + 1.0, rng=0)
        ottools.wasserstein_1d(x[:, 0], x[:, 1], np.ones(50), None)
        """
