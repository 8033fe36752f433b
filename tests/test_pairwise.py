import concurrent.futures
import os
import sys

import numpy as np
import pytest

import ottools
from ottools import OTConvergenceWarning, pairwise_distances
from ottools import _pairwise as pw
from ottools._pairwise_cli import _parser


def clouds(rng, N, d=2, lo=5, hi=25, dtype=np.float64):
    """Ragged point clouds, shifted apart so that the distances differ."""
    return [(rng.normal(size=(int(rng.integers(lo, hi)), d)) + 0.3 * k).astype(dtype)
            for k in range(N)]


def direct(fun, xs, ys=None, ws=None, vs=None, diag=False):
    """The matrix of a single-pair function, pair by pair."""
    ys = xs if ys is None else ys
    ws = [None] * len(xs) if ws is None else ws
    vs = ws if vs is None else vs
    out = np.zeros((len(xs), len(ys)))
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            if y is not x or diag:
                out[i, j] = fun(x, y, ws[i], vs[j])
    return out


# ------------------------------------------------------------------ values
def test_sliced_matches_single_pair_calls_with_shared_directions(rng):
    xs = clouds(rng, 7, d=3)
    D = pairwise_distances(xs, metric="sliced_wasserstein", rng=5,
                           metric_kwargs={"n_projections": 40, "p": 2})
    E = direct(lambda x, y, a, b: ottools.sliced_wasserstein(x, y, n_projections=40, rng=5),
               xs)
    np.testing.assert_allclose(D, E, rtol=1e-12, atol=0)
    # another seed, other directions: other values
    D2 = pairwise_distances(xs, metric="sliced_wasserstein", rng=6,
                            metric_kwargs={"n_projections": 40})
    assert not np.allclose(D, D2, rtol=1e-6)


def test_sliced_weights_with_zeros_and_given_directions(rng):
    xs = clouds(rng, 5, d=2)
    ws = [None if k == 2 else rng.random(len(x)) * (rng.random(len(x)) > 0.3) + 0.0
          for k, x in enumerate(xs)]
    for w in ws:
        if w is not None:
            w[0] = 1.0  # positive sum
    theta = rng.normal(size=(9, 2))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    D = pairwise_distances(xs, metric="sliced_wasserstein", weights=ws,
                           metric_kwargs={"directions": theta, "p": 1.5})
    E = direct(lambda x, y, a, b: ottools.sliced_wasserstein(x, y, a, b, directions=theta,
                                                             p=1.5), xs, ws=ws)
    np.testing.assert_allclose(D, E, rtol=1e-12)
    # a zero-weight point is no point at all
    far = [np.vstack([x, [[50.0, 50.0]]]) for x in xs]
    wf = [np.r_[np.ones(len(x)) if w is None else w, 0.0] for x, w in zip(xs, ws)]
    Df = pairwise_distances(far, metric="sliced_wasserstein", weights=wf,
                            metric_kwargs={"directions": theta, "p": 1.5})
    np.testing.assert_allclose(Df, D, rtol=1e-12)


def test_wasserstein_1d_matches_scipy_ragged_weighted(rng):
    from scipy.stats import wasserstein_distance

    xs = [rng.normal(size=int(rng.integers(1, 30))) + k for k in range(6)]
    ws = [rng.random(len(x)) + 0.1 for x in xs]
    ws[3][0] = 0.0
    D = pairwise_distances(np.array(xs, dtype=object), metric="wasserstein_1d", weights=ws)
    E = direct(lambda x, y, a, b: wasserstein_distance(x, y, a, b), xs, ws=ws)
    np.testing.assert_allclose(D, E, rtol=1e-12, atol=1e-14)
    A = rng.normal(size=(4, 11))  # an (N, n) array: N samples
    D2 = pairwise_distances(A, metric="wasserstein_1d", metric_kwargs={"p": 2})
    E2 = direct(lambda x, y, a, b: ottools.wasserstein_1d(x, y, p=2), list(A))
    np.testing.assert_allclose(D2, E2, rtol=1e-12)


def test_divergence_matches_single_pair_calls(rng):
    xs = clouds(rng, 5, d=2)
    ws = [rng.random(len(x)) for x in xs]
    ws[1][:3] = 0.0
    kw = {"reg": 0.2}
    D, S = pairwise_distances(xs, weights=ws, metric_kwargs=kw, return_status=True)
    E = direct(lambda x, y, a, b: ottools.sinkhorn_divergence(x, y, a / a.sum(),
                                                              b / b.sum(), reg=0.2).fun,
               xs, ws=ws)
    # the same problems, solved to tol = 1e-9 (the cross problem in its own orientation)
    np.testing.assert_allclose(D, E, rtol=1e-7, atol=1e-9)
    assert np.all(S == 0)
    assert np.all(D[~np.eye(5, dtype=bool)] > 0)


def test_every_ground_cost_of_cost_matrix_is_accepted(rng):
    """The ground cost was checked by evaluating it between two zero points, where
    braycurtis, dice, jensenshannon, seuclidean and sokalsneath are 0 / 0 and mahalanobis
    needs d + 1 points: six metrics of cost_matrix were refused, blaming points the user
    never gave. Every one now gives the single calls' values (positive points: the
    boolean metrics read them as True, jensenshannon as probability vectors)."""
    from ottools._costs import METRICS

    xs = [np.abs(x) + 0.1 for x in clouds(rng, 3, d=3, lo=6, hi=9)]
    for gm in METRICS:
        D = pairwise_distances(xs, metric="exact", metric_kwargs={"metric": gm})
        E = direct(lambda x, y, a, b: ottools.emd(None, None,
                                                  ottools.cost_matrix(x, y, gm)).fun, xs)
        np.testing.assert_allclose(D, E, rtol=1e-12, atol=1e-15, err_msg=gm)
    with pytest.raises(ValueError, match="Unknown metric 'nope'"):
        pairwise_distances(xs, metric="exact", metric_kwargs={"metric": "nope"})


@pytest.mark.parametrize("gm", ["seuclidean", "mahalanobis"])
def test_divergence_with_estimated_ground_costs_is_that_of_each_pair(rng, gm):
    """seuclidean / mahalanobis estimate their variances from the points: the three
    problems of sinkhorn_divergence share those of x and y stacked. The pairwise self
    terms were solved once per measure with its own variances (0.730 against 0.937):
    each pair now solves its three problems on its own ground cost."""
    xs = clouds(rng, 4, d=2, lo=8, hi=14)
    kw = {"reg": 0.5, "metric": gm}
    D, S = pairwise_distances(xs, metric="sinkhorn_divergence", metric_kwargs=kw,
                              return_status=True)
    E = direct(lambda x, y, a, b: ottools.sinkhorn_divergence(x, y, reg=0.5, metric=gm).fun,
               xs)
    np.testing.assert_allclose(D, E, rtol=1e-7, atol=1e-9)
    assert np.all(S == 0) and np.all(np.diag(D) == 0) and np.array_equal(D, D.T)
    R = pairwise_distances(xs[:2], xs[1:], metric="sinkhorn_divergence", metric_kwargs=kw)
    np.testing.assert_allclose(R, E[:2, 1:], rtol=1e-7, atol=1e-9)
    assert R[1, 0] == 0.0  # the same measure on both sides


@pytest.mark.parametrize("scale", [1e-300, 1e-100, 1e-10, 1e100, 1e300])
def test_sliced_with_directions_of_extreme_norm(rng, scale):
    """Directions beyond [2**-256, 2**256] are scaled by a power of two, and the
    exponent was also applied to the points: |theta| = 1e-100 gave 0.316 for 3.6e-101.
    Each entry equals the single call on the same directions."""
    xs = clouds(rng, 3, d=2)
    theta = rng.normal(size=(7, 2)) * scale
    D = pairwise_distances(xs, metric="sliced_wasserstein",
                           metric_kwargs={"directions": theta})
    E = direct(lambda x, y, a, b: ottools.sliced_wasserstein(x, y, directions=theta), xs)
    np.testing.assert_allclose(D, E, rtol=1e-12)


def test_entropic_cost_matrix_has_its_self_terms_on_the_diagonal(rng):
    xs = clouds(rng, 4, d=2, lo=5, hi=12)
    D = pairwise_distances(xs, metric="sinkhorn", metric_kwargs={"reg": 0.5})

    def w_eps(x, y, a, b):
        return ottools.sinkhorn(None, None, ottools.cost_matrix(x, y), 0.5).fun

    E = direct(w_eps, xs, diag=True)
    np.testing.assert_allclose(D, E, rtol=1e-7)
    assert np.all(np.diag(D) > 0)  # W_eps(x, x) is not zero: not a distance
    assert np.array_equal(D, D.T)


def test_rectangular_is_the_block_of_the_full_matrix(rng):
    xs = clouds(rng, 7, d=2)
    for metric, kw in [("sliced_wasserstein", None), ("sinkhorn_divergence", {"reg": 0.3})]:
        full = pairwise_distances(xs, metric=metric, metric_kwargs=kw, rng=1)
        block = pairwise_distances(xs[:3], xs[3:], metric=metric, metric_kwargs=kw, rng=1)
        assert block.shape == (3, 4)
        np.testing.assert_array_equal(block, full[:3, 3:])


def test_symmetric_zero_diagonal_and_identical_measures(rng):
    xs = clouds(rng, 5, d=2)
    xs[4] = xs[1].copy()  # a duplicate: distance exactly 0, as sinkhorn_divergence gives
    for metric, kw in [("sliced_wasserstein", None), ("sinkhorn_divergence", {"reg": 0.3})]:
        D = pairwise_distances(xs, metric=metric, metric_kwargs=kw)
        assert D.dtype == np.float64 and D.shape == (5, 5)
        assert np.array_equal(D, D.T)
        assert np.all(np.diag(D) == 0)
        assert D[1, 4] == 0.0
        assert np.all(D[np.triu_indices(5, 1)][np.arange(10) != 6] > 0)  # (1, 4) is #6


def test_float32_measures(rng):
    xs = clouds(rng, 4, d=3, dtype=np.float32)
    D = pairwise_distances(xs, metric="sliced_wasserstein", rng=0)
    assert D.dtype == np.float64
    E = direct(lambda x, y, a, b: ottools.sliced_wasserstein(x, y, rng=0), xs)
    np.testing.assert_allclose(D, E, rtol=2e-5)
    D32, S = pairwise_distances(xs, metric="sinkhorn_divergence", metric_kwargs={"reg": 0.5},
                                return_status=True)
    D64 = pairwise_distances([x.astype(np.float64) for x in xs], metric_kwargs={"reg": 0.5})
    assert np.all(S == 0)
    np.testing.assert_allclose(D32, D64, rtol=1e-3, atol=1e-4)
    assert not np.array_equal(D32, D64)  # solved in float32, not silently upcast


@pytest.mark.parametrize("B", [1, 2, 3, 7])
def test_tiling_and_threads_do_not_change_a_bit(rng, monkeypatch, B):
    xs = clouds(rng, 8, d=2)
    ys = clouds(rng, 5, d=2)
    ref = {m: (pairwise_distances(xs, metric=m, metric_kwargs=kw, rng=3),
               pairwise_distances(xs, ys, metric=m, metric_kwargs=kw, rng=3))
           for m, kw in [("sliced_wasserstein", None), ("sinkhorn_divergence", {"reg": 0.3})]}
    monkeypatch.setattr(pw, "_block_size", lambda *args: B)
    for (m, (full, rect)), jobs in zip(ref.items(), [2, -1]):
        kw = {"reg": 0.3} if m == "sinkhorn_divergence" else None
        np.testing.assert_array_equal(
            pairwise_distances(xs, metric=m, metric_kwargs=kw, rng=3, n_jobs=jobs), full)
        np.testing.assert_array_equal(
            pairwise_distances(xs, ys, metric=m, metric_kwargs=kw, rng=3, n_jobs=jobs), rect)


def test_block_size_rule():
    # a tile of B x B pairs takes about `target` seconds, prepare cost included
    B = pw._block_size(1e-3, 1e-4, 0.5, 10**9, 2, 10**6)
    assert abs(B * B * 1e-4 + 2 * B * 1e-3 - 0.5) < 0.5 * 0.05
    # at least four tiles per thread
    assert pw._block_size(1e-6, 1e-6, 0.5, 1000, 2, 1000) == 11
    assert pw._block_size(1.0, 10.0, 0.5, 10, 2, 10) == 1


# ------------------------------------------------------------------ statuses
def test_status_reports_non_converged_pairs(rng):
    xs = clouds(rng, 4, d=2)
    kw = {"reg": 0.01, "maxiter": 2}
    D, S = pairwise_distances(xs, metric_kwargs=kw, return_status=True)
    assert S.dtype == np.int8 and S.shape == (4, 4)
    assert np.all(S[np.triu_indices(4, 1)] == 1)  # maxiter reached
    assert np.all(np.diag(S) == 0) and np.array_equal(S, S.T)
    direct_res = ottools.sinkhorn_divergence(xs[0], xs[1], reg=0.01, maxiter=2)
    assert direct_res.status == 1
    with pytest.warns(OTConvergenceWarning, match=r"6 pair\(s\).*did not converge.*\(0, 1\)"):
        D2 = pairwise_distances(xs, metric_kwargs=kw)
    np.testing.assert_array_equal(D2, D)


def test_divergence_status_is_the_first_failing_problem():
    # cross statuses (upper triangle), self statuses: measure 2's self problem failed
    D = np.zeros((4, 4))
    S = np.zeros((4, 4), dtype=np.int8)
    S[0, 1], S[0, 3] = 4, pw._SAME
    selfv = {"x": np.array([1.0, 2.0, 3.0, 1.0]), "y": np.zeros(4)}
    selfs = {"x": np.array([0, 0, 1, 0], dtype=np.int8), "y": np.zeros(4, np.int8)}
    D, S = pw._assemble(D, S, selfv, selfs, True, "divergence")
    expected = np.zeros((4, 4), dtype=np.int8)
    expected[0, 1] = 4           # the cross problem first
    expected[0, 2] = expected[1, 2] = expected[2, 3] = 1  # then the self problems
    expected = expected + expected.T
    np.testing.assert_array_equal(S, expected)
    assert D[0, 3] == D[3, 0] == 0.0  # identical measures: exactly 0
    assert D[1, 2] == -2.5 and D[2, 1] == -2.5


# ------------------------------------------------------------------ validation
def test_nan_cloud_named_before_any_work(rng, monkeypatch):
    xs = clouds(rng, 6, d=2)
    xs[3][2, 1] = np.nan
    calls = []
    monkeypatch.setattr(pw, "_probe", lambda *a: calls.append(a))
    monkeypatch.setattr(pw, "tile_task", lambda *a: calls.append(a))
    with pytest.raises(ValueError, match=r"`X\[3\]` must be finite"):
        pairwise_distances(xs, metric="sliced_wasserstein")
    with pytest.raises(ValueError, match=r"`Y\[3\]` must be finite"):
        pairwise_distances(xs[:2], xs, metric="sliced_wasserstein")
    assert calls == []


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(metric="wasserstein"), ValueError, "Unknown metric 'wasserstein'"),
    (dict(metric="sinkhorn_divergence"), TypeError, r"needs `metric_kwargs\['reg'\]`"),
    (dict(metric_kwargs={"reg": 0.1, "n_projections": 3}), TypeError,
     "Unknown option.*'n_projections'.*valid: 'maxiter', 'method'"),
    (dict(metric="sliced_wasserstein", metric_kwargs={"p": 0.5}), ValueError, "must be >= 1"),
    (dict(metric="sliced_wasserstein", metric_kwargs={"directions": "qmc"}), ValueError,
     "Unknown metric_kwargs"),
    (dict(metric_kwargs={"reg": -1.0}), ValueError, r"`metric_kwargs\['reg'\]` must be a "
                                                    "positive"),
    (dict(metric_kwargs={"reg": 0.1, "metric": "nope"}), ValueError, "Unknown metric 'nope'"),
    (dict(metric_kwargs=[1]), TypeError, "`metric_kwargs` must be a dict"),
    (dict(n_jobs=0), ValueError, "`n_jobs` must be"),
    (dict(n_jobs=1.5), TypeError, "`n_jobs` must be an integer"),
    (dict(progress="yes"), TypeError, "`progress` must be True or False"),
    (dict(scheduler=3), TypeError, "`scheduler` must be"),
    # an array is no scheduler: its own message, not NumPy's truth-value error
    (dict(scheduler=np.ones(3)), TypeError, "`scheduler` must be None.*got ndarray"),
    (dict(scheduler=np.array([])), TypeError, "`scheduler` must be None.*got ndarray"),
    (dict(scheduler=np.array([]), n_jobs=2), TypeError, "`scheduler` must be None"),
    # an executor with submit but no scatter is no dask Client (it failed inside dask)
    (dict(scheduler=concurrent.futures.ThreadPoolExecutor(1)), TypeError,
     "`scheduler` must be None.*got ThreadPoolExecutor"),
    (dict(rng="seed"), TypeError, "`rng` must be"),
    (dict(weights=[None, None]), ValueError, r"one entry per measure \(4\); got 2"),
    (dict(weights=[None, [1.0, -1.0], None, None]), ValueError, r"`weights\[1\]`"),
])
def test_bad_arguments(rng, kwargs, exc, match):
    xs = clouds(rng, 4, d=2)
    kw = dict(metric_kwargs={"reg": 0.1}) if "metric" not in kwargs else {}
    kw.update(kwargs)
    with pytest.raises(exc, match=match):
        pairwise_distances(xs, **kw)


def test_minkowski_ground_cost_takes_p(rng):
    """``metric_kwargs['p']`` is cost_matrix's exponent of the Minkowski ground costs
    for the entropic metrics and exact (no other way to set it without a callable);
    refused with another ground cost, where it would be ignored."""
    xs = clouds(rng, 3, d=2)
    for cost in ("minkowski", "minkowski_p"):
        C = ottools.cost_matrix(xs[0], xs[1], cost, p=3)
        D = pairwise_distances(xs, metric="exact", metric_kwargs={"metric": cost, "p": 3})
        assert D[0, 1] == ottools.emd(None, None, C).fun
        D = pairwise_distances(xs, metric="sinkhorn",
                               metric_kwargs={"reg": 0.1, "metric": cost, "p": 3})
        expected = ottools.sinkhorn(None, None, C, 0.1).fun
        assert D[0, 1] == pytest.approx(expected, rel=1e-12)
    D = pairwise_distances(xs, metric="exact", metric_kwargs={"metric": "minkowski"})
    C = ottools.cost_matrix(xs[0], xs[1], "minkowski")  # p = 2, the default of both
    assert D[0, 1] == ottools.emd(None, None, C).fun
    for kw in ({"p": 3}, {"metric": "euclidean", "p": 3}, {"metric": _l1, "p": 3}):
        with pytest.raises(TypeError, match=r"`metric_kwargs\['p'\]` is only used with "
                                            "the ground costs 'minkowski' and"):
            pairwise_distances(xs, metric="exact", metric_kwargs=kw)
    with pytest.raises(TypeError, match=r"metric_kwargs\['metric'\]='sqeuclidean' \(the "
                                        r"default\)\.$"):
        pairwise_distances(xs, metric="exact", metric_kwargs={"p": 3})
    with pytest.raises(ValueError, match=r"`metric_kwargs\['p'\]` must be >= 1"):
        pairwise_distances(xs, metric="sinkhorn_divergence",
                           metric_kwargs={"reg": 0.1, "metric": "minkowski", "p": 0.5})


def _l1(x, y):
    return np.abs(x[:, None] - y[None]).sum(-1)


def test_bad_collections(rng):
    with pytest.raises(ValueError, match=r"`X\[2\]` has dimension 3 but `X\[0\]` has "
                                         "dimension 2"):
        pairwise_distances([np.zeros((3, 2)), np.ones((4, 2)), np.ones((2, 3))],
                           metric="sliced_wasserstein")
    with pytest.raises(ValueError, match="sequence of point clouds.*Wrap a single cloud"):
        pairwise_distances(rng.random((10, 2)), metric="sliced_wasserstein")
    with pytest.raises(ValueError, match="at least one measure"):
        pairwise_distances([], metric="sliced_wasserstein")
    with pytest.raises(ValueError, match=r"`X\[1\]` must not be empty"):
        pairwise_distances([np.ones((2, 2)), np.ones((0, 2))], metric="sliced_wasserstein")
    with pytest.raises(ValueError, match=r"`X\[0\]` must be 1-D samples"):
        pairwise_distances([np.ones((3, 2))], metric="wasserstein_1d")
    with pytest.raises(ValueError, match="`Y` measures have dimension 3"):
        pairwise_distances([np.ones((3, 2))], [np.ones((3, 3))], metric="sliced_wasserstein")
    with pytest.raises(ValueError, match=r"a pair \(weights_X, weights_Y\)"):
        pairwise_distances([np.ones((3, 2))], [np.ones((3, 2))], weights=[None],
                           metric="sliced_wasserstein")
    one = pairwise_distances([np.ones((3, 2))], metric="sliced_wasserstein")
    np.testing.assert_array_equal(one, np.zeros((1, 1)))


def test_exact_equals_pot(rng):
    ot = pytest.importorskip("ot")
    xs = clouds(rng, 4, d=2)
    D = pairwise_distances(xs, metric="exact")
    E = direct(lambda x, y, a, b: ot.emd2([], [], ot.dist(x, y)), xs)
    np.testing.assert_allclose(D, E, rtol=1e-10)


def test_optional_dependencies_missing(rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    xs = clouds(rng, 3)
    with pytest.raises(ImportError, match=r'pip install "ottools\[distributed\]"'):
        pairwise_distances(xs, metric="sliced_wasserstein", scheduler="dask")
    with pytest.raises(ImportError, match=r'pip install "ottools\[progress\]"'):
        pairwise_distances(xs, metric="sliced_wasserstein", progress=True)


def test_progress_bar_counts_every_entry(rng, capsys):
    pytest.importorskip("tqdm")
    xs = clouds(rng, 5)
    pairwise_distances(xs, metric_kwargs={"reg": 0.5}, progress=True)
    err = capsys.readouterr().err
    assert "pairwise" in err and "15/15" in err  # 10 pairs + 5 self terms


# ------------------------------------------------------------------ Dask
class KillFirstWorkerCall:
    """A ground cost that kills the worker process running its first call (once: a marker
    file remembers it), then behaves as the squared Euclidean cost."""

    def __init__(self, marker):
        self.marker = str(marker)
        self.parent = os.getpid()

    def __call__(self, x, y):
        if os.getpid() != self.parent and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def same(remote, local, metric):
    """Bit for bit for the sorting metrics. The entropic kernels, compiled afresh in this
    process and loaded from Numba's cache in the workers, may round differently in the
    last bit (``ottools.sinkhorn`` alone shows it): a relative 1e-14, well inside their
    tolerance, and exactly 0 where the local entry is 0."""
    if metric in ("sliced_wasserstein", "wasserstein_1d"):
        np.testing.assert_array_equal(remote, local)
    else:
        np.testing.assert_allclose(remote, local, rtol=1e-14, atol=0)
        np.testing.assert_array_equal(remote == 0, local == 0)


@pytest.fixture(scope="module")
def dask_cluster():
    # One LocalCluster (2 worker processes) for the module's two Dask tests, closed after
    # them; the kill test runs last (it leaves a restarted worker behind).
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield cluster, client


def test_dask_gives_the_local_matrix(rng, dask_cluster):
    cluster, client = dask_cluster
    xs = clouds(rng, 12, d=3, lo=10, hi=40)
    ys = clouds(rng, 3, d=3)
    cases = [("sliced_wasserstein", None, client),
             ("sinkhorn_divergence", {"reg": 0.3}, cluster.scheduler_address),
             ("wasserstein_1d", None, "dask")]
    for metric, kw, sched in cases:
        X = [x[:, 0] for x in xs] if metric == "wasserstein_1d" else xs
        Y = [y[:, 0] for y in ys] if metric == "wasserstein_1d" else ys
        local = pairwise_distances(X, metric=metric, metric_kwargs=kw, rng=2)
        remote = pairwise_distances(X, metric=metric, metric_kwargs=kw, rng=2,
                                    scheduler=sched)
        same(remote, local, metric)
        same(pairwise_distances(X, Y, metric=metric, metric_kwargs=kw, rng=2, scheduler=sched),
             pairwise_distances(X, Y, metric=metric, metric_kwargs=kw, rng=2), metric)
    assert not client.status == "closed"  # a given client stays open


def test_dask_worker_killed_mid_run_gives_the_complete_matrix(rng, tmp_path, dask_cluster,
                                                              monkeypatch):
    cluster, client = dask_cluster
    xs = clouds(rng, 10, d=2, lo=10, hi=30)
    marker = tmp_path / "killed"
    kw = {"reg": 0.5, "metric": KillFirstWorkerCall(marker)}
    local = pairwise_distances(xs, metric="sinkhorn", metric_kwargs=kw)
    assert not marker.exists()  # the local run (this process) killed nothing
    # One measure per block: 10 blocks scattered over the 2 workers, so the worker that
    # dies at its first tile takes with it blocks that exist nowhere else.
    monkeypatch.setattr(pw, "_block_size", lambda *args: 1)
    remote = pairwise_distances(xs, metric="sinkhorn", metric_kwargs=kw, scheduler=client)
    assert marker.exists()  # a worker died while running a tile
    same(remote, local, "sinkhorn")
    logs = "\n".join(msg for _, msg in client.get_scheduler_logs(n=200))
    assert "lose scattered data" in logs  # blocks were lost, scattered again


# ------------------------------------------------------------------ CLI
def _cli(argv, capsys):
    ns = _parser().parse_args(argv)
    code = ns.func(ns)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_cli_writes_the_matrix(rng, tmp_path, capsys, fmt):
    xs = clouds(rng, 4, d=2)
    files = []
    for k, x in enumerate(xs):
        path = tmp_path / f"c{k}.{fmt}"
        np.save(path, x) if fmt == "npy" else np.savetxt(path, x, delimiter=",")
        files.append(str(path))
    out = tmp_path / "D.npy"
    code, text, err = _cli(["pairwise", *files, "--metric", "sliced_wasserstein",
                            "--out", str(out), "--jobs", "2", "--seed", "4",
                            "--n-projections", "30"], capsys)
    assert code == 0, err
    expected = pairwise_distances(xs, metric="sliced_wasserstein", rng=4,
                                  metric_kwargs={"n_projections": 30})
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-12 if fmt == "npy" else 1e-9)
    assert "pairs     6" in text and "failures  0" in text and "time" in text
    if pytest.importorskip("tqdm"):
        assert "pairwise" in err and "6/6" in err  # the bar, on stderr


def test_cli_reports_failures_and_statuses(rng, tmp_path, capsys):
    files = []
    for k, x in enumerate(clouds(rng, 3, d=2)):
        files.append(str(tmp_path / f"c{k}.npy"))
        np.save(files[-1], x)
    out, st = tmp_path / "D.npy", tmp_path / "S.npy"
    code, text, _ = _cli(["pairwise", *files, "--reg", "0.01", "--maxiter", "2",
                          "--out", str(out), "--status", str(st), "--no-progress"], capsys)
    assert code == 1
    assert "failures  3" in text and "c0.npy" in text and "status 1" in text
    assert np.load(st)[0, 1] == 1


@pytest.mark.parametrize("argv, match", [
    (["--metric", "sinkhorn_divergence"], "--reg is required"),
    (["--metric", "nope"], "unknown --metric 'nope'"),
    (["--metric", "sliced_wasserstein", "--reg", "1"], "--reg and --tol apply"),
    (["--metric", "sliced_wasserstein", "--cost", "cityblock"], "--cost applies to the"),
    (["--metric", "sliced_wasserstein", "--extra"], "NAN"),
    (["--metric", "sliced_wasserstein", "--missing"], "no such file"),
    (["--metric", "sliced_wasserstein", "--txt"], "expected a .npy or .csv"),
    (["--metric", "sliced_wasserstein", "--badcsv"], "cannot read"),
    (["--metric", "sliced_wasserstein", "--emptycsv"], "holds no numbers"),
    (["--metric", "sliced_wasserstein", "--n-projections", "10000000000000"],
     "--n-projections=10000000000000 .*needs about"),
    (["--metric", "sliced_wasserstein", "--status", "/nonexistent/S.npy"],
     "--status '/nonexistent/S.npy': directory '/nonexistent' does not exist"),
])
def test_cli_bad_input_exits_2_with_one_line(rng, tmp_path, capsys, argv, match):
    files = []
    for k, x in enumerate(clouds(rng, 2, d=2)):
        files.append(str(tmp_path / f"c{k}.npy"))
        np.save(files[-1], x)
    flag = argv[-1]
    if flag == "--extra":
        bad = rng.random((5, 2))
        bad[1, 1] = np.nan
        np.save(tmp_path / "nan.npy", bad)
        files.append(str(tmp_path / "nan.npy"))
        match = r"'.*nan\.npy' must be finite"
    elif flag == "--missing":
        files.append(str(tmp_path / "missing.npy"))
    elif flag == "--txt":
        (tmp_path / "c.txt").write_text("1 2\n")
        files.append(str(tmp_path / "c.txt"))
    elif flag == "--badcsv":
        (tmp_path / "c.csv").write_text("1,2\n3,x\n")
        files.append(str(tmp_path / "c.csv"))
    elif flag == "--emptycsv":
        (tmp_path / "e.csv").write_text("")
        files.append(str(tmp_path / "e.csv"))
    if flag.startswith("--") and flag in ("--extra", "--missing", "--txt", "--badcsv",
                                          "--emptycsv"):
        argv = argv[:-1]
    code, text, err = _cli(["pairwise", *files, *argv, "--out", str(tmp_path / "D.npy"),
                            "--no-progress"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ottools pairwise: error: ")
    import re

    assert re.search(match, lines[0]), lines[0]
    assert not (tmp_path / "D.npy").exists()


def test_cli_reads_a_one_row_csv_as_one_point(rng, tmp_path, capsys):
    """A CSV of one row is one point of dimension d (it was read as d 1-D samples)."""
    x = clouds(rng, 1, d=2)[0]
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "one.csv").write_text("0.25,0.75\n")
    out = tmp_path / "D.npy"
    code, _, err = _cli(["pairwise", str(tmp_path / "x.npy"), str(tmp_path / "one.csv"),
                         "--metric", "sliced_wasserstein", "--seed", "0", "--out", str(out),
                         "--no-progress"], capsys)
    assert code == 0, err
    want = pairwise_distances([x, np.array([[0.25, 0.75]])], metric="sliced_wasserstein",
                              rng=0)
    np.testing.assert_array_equal(np.load(out), want)


@pytest.mark.parametrize("s", [1e160, 1e-170])
def test_sorted_metrics_at_extreme_scales_equal_single_calls(rng, s):
    """Coordinates at 1e160 gave inf and at 1e-170 gave 0 (status 0): the collection is
    scaled by a power of two as the single calls scale a pair, and pairs whose plain sums
    under/overflow are recomputed in the scaled form."""
    xs = [(rng.normal(size=(20, 3)) + k) * s for k in range(3)]
    D = pairwise_distances(xs, metric="sliced_wasserstein", rng=1)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        one = ottools.sliced_wasserstein(xs[i], xs[j], rng=1)
        assert D[i, j] == pytest.approx(one, rel=1e-12)
    us = [x[:, 0] for x in xs]
    D = pairwise_distances(us, metric="wasserstein_1d", metric_kwargs={"p": 3})
    assert D[0, 1] == pytest.approx(ottools.wasserstein_1d(us[0], us[1], p=3), rel=1e-12)


def test_measures_of_very_different_scales_in_one_collection():
    """One exponent for the whole collection flushed measures at 1e-200 to 0 when another
    sat at 1e200; each pair is the single call's."""
    A, B = np.array([0.0, 1e-200]), np.array([0.5e-200])
    D = pairwise_distances([A, B, np.array([1e200])], metric="wasserstein_1d")
    assert D[0, 1] == pytest.approx(ottools.wasserstein_1d(A, B), rel=1e-12)
    assert D[0, 1] > 0


def test_identical_measures_are_not_recomputed(monkeypatch):
    """Pairs at distance 0 are recomputed in the scaled form only when the measures
    differ (identical ones gave a Python call per pair)."""
    import ottools._pairwise as pw

    calls = []
    real = pw.wpp_rows
    monkeypatch.setattr(pw, "wpp_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.random.default_rng(0).random((6, 2))
    D = pairwise_distances([x] * 12, metric="sliced_wasserstein", rng=0)
    assert np.all(D == 0) and not calls


def test_zero_weight_on_a_far_point():
    """0 * inf gave NaN (status 0): the pair is recomputed in the scaled form."""
    u, v = np.array([0.0, 1e200]), np.array([1.0])
    D = pairwise_distances([u, v], weights=[np.array([1.0, 0.0]), None],
                           metric="wasserstein_1d", metric_kwargs={"p": 2})
    assert D[0, 1] == D[1, 0] == ottools.wasserstein_1d(u, v, [1.0, 0.0], p=2) == 1.0


def test_scheduler_typo_and_huge_projection_counts_name_the_argument():
    xs = [np.zeros((3, 2)), np.ones((3, 2))]
    with pytest.raises(ValueError, match="`scheduler` must be None, 'threads', 'dask'"):
        pairwise_distances(xs, metric="sliced_wasserstein", scheduler="thread")
    with pytest.raises(MemoryError, match=r"`metric_kwargs\['n_projections'\]`"):
        pairwise_distances(xs, metric="sliced_wasserstein",
                           metric_kwargs={"n_projections": 10**13})


def test_cli_without_tqdm_runs_without_a_bar(rng, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    files = []
    for k, x in enumerate(clouds(rng, 3, d=2)):
        files.append(str(tmp_path / f"c{k}.npy"))
        np.save(files[-1], x)
    code, text, err = _cli(["pairwise", *files, "--metric", "sliced_wasserstein",
                            "--out", str(tmp_path / "D.npy")], capsys)
    assert code == 0
    assert err.strip() == 'ottools: no progress bar without tqdm (pip install "ottools[progress]")'
    assert np.load(tmp_path / "D.npy").shape == (3, 3)


def _malloc_trim_env():
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_own_cluster_keeps_malloc_adaptive(monkeypatch):
    """The cluster that scheduler="dask" starts runs its workers without the
    MALLOC_TRIM_THRESHOLD_ that Dask's nanny sets (per-pair work 1.5x slower with it), even
    when an earlier cluster leaked it into this process; the leaked value is restored."""
    distributed = pytest.importorskip("distributed")
    from ottools._pairwise import _local_cluster

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as a nanny leaves it
    with _local_cluster(distributed, 1) as cluster, distributed.Client(cluster) as client:
        assert list(client.run(_malloc_trim_env).values()) == [None]
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"
