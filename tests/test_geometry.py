"""``ottools.PointCloud``: costs computed on the fly, solved without the dense matrix."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ottools
from ottools import PointCloud


@pytest.mark.parametrize("metric, p", [("sqeuclidean", None), ("euclidean", None),
                                       ("cityblock", None), ("minkowski", 3.0)])
def test_dense_matches_cdist(rng, metric, p):
    from scipy.spatial.distance import cdist

    x, y = rng.normal(size=(13, 3)), rng.normal(size=(9, 3))
    geom = PointCloud(x, y, metric, p=p)
    kw = {"p": p} if p else {}
    np.testing.assert_allclose(geom.dense(), cdist(x, y, metric, **kw), rtol=1e-12,
                               atol=1e-12)
    assert geom.shape == (13, 9) and geom.dtype == np.float64


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(0, 40), d=st.integers(1, 5),
       metric=st.integers(0, 3), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**32 - 1))
def test_transposed_cost_rows_are_the_cost_rows_to_the_bit(n, m, d, metric, dtype, seed):
    # The sweeps read y transposed (contiguous, vectorized loops); emd's arcs and the
    # small blocks read cost_row. Both must give the same bits.
    from ottools._kernels import _online as ko

    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)).astype(dtype), rng.normal(size=(m, d)).astype(dtype)
    sqx = np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64))
    sqy = np.einsum("ij,ij->i", y.astype(np.float64), y.astype(np.float64))
    yt = np.ascontiguousarray(y.T)
    for i in range(n):
        r1, r2 = np.empty(m), np.empty(m)
        ko.cost_row(x, y, i, sqx, sqy, metric, 2.5, 0.75, r1)
        ko.cost_row_t(x, yt, i, sqx, sqy, metric, 2.5, 0.75, r2)
        assert r1.tobytes() == r2.tobytes()


@settings(max_examples=25, deadline=None)
@given(z=st.lists(st.one_of(st.floats(-1e300, 1e300), st.just(np.nan), st.just(-np.inf)),
                  max_size=23))
def test_row_max_and_row_sum(z):
    from ottools._kernels import _lse as ko

    z = np.array(z, dtype=np.float64)
    finite = z[~np.isnan(z)]
    assert ko.row_max(z) == (finite.max() if finite.size else -np.inf)
    w = np.abs(np.nan_to_num(z, nan=1.0, neginf=1.0)) * 1e-300
    np.testing.assert_allclose(ko.row_sum(w), w.sum(), rtol=1e-14, atol=1e-320)


@settings(max_examples=12)
@given(n=st.integers(1, 25), m=st.integers(1, 25), zeros=st.integers(0, 3),
       logreg=st.floats(-2.5, 0), seed=st.integers(0, 2**32 - 1))
def test_online_equals_dense(n, m, zeros, logreg, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, 2)), rng.random((m, 2))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a[:min(zeros, n - 1)] = 0
    b[:min(zeros, m - 1)] = 0
    a, b = a / a.sum(), b / b.sum()
    reg = 10.0**logreg
    geom = PointCloud(x, y)
    on = ottools.sinkhorn(a, b, geom, reg, tol=1e-11)
    de = ottools.sinkhorn(a, b, geom.dense(), reg, tol=1e-11, options={"newton": False})
    assert on.success and de.success
    if n != m:  # (a 1 x 1 or other symmetric dense problem takes the symmetric path)
        assert on.nit == de.nit  # the same iterations, online
    np.testing.assert_allclose(on.plan_dense(), de.plan, rtol=0, atol=1e-10)
    np.testing.assert_allclose(on.f, de.f, atol=1e-8)
    assert on.fun == pytest.approx(de.fun, rel=1e-10, abs=1e-12)


def test_plan_operator_and_barycentric_map(rng):
    x, y = rng.random((40, 2)), rng.random((30, 2))
    geom = PointCloud(x, y)
    res = ottools.sinkhorn(None, None, geom, 0.02, tol=1e-11)
    P = res.plan_dense()
    u, v = rng.random(40), rng.random((30, 2))
    np.testing.assert_allclose(res.plan @ v, P @ v, rtol=1e-12)
    np.testing.assert_allclose(res.plan.T @ u, P.T @ u, rtol=1e-12)
    np.testing.assert_allclose(res.barycentric_map(), (P @ y) * 40, rtol=1e-10)


def test_self_transport_point_cloud_uses_symmetric_iterations(rng):
    x = rng.normal(size=(60, 2))
    on = ottools.sinkhorn(None, None, PointCloud(x, x), 0.05)
    de = ottools.sinkhorn(None, None, ottools.cost_matrix(x, x), 0.05)
    assert on.success and on.nit == de.nit
    np.testing.assert_allclose(on.plan_dense(), de.plan, atol=1e-14)


def test_float32_and_scale(rng):
    x, y = rng.random((30, 2)).astype(np.float32), rng.random((20, 2)).astype(np.float32)
    res = ottools.sinkhorn(None, None, PointCloud(x, y), 0.05)
    assert res.success and res.f.dtype == np.float32 and res.plan_dense().dtype == np.float32
    geom = PointCloud(x, y, scale="max")
    assert geom.dense().max() == pytest.approx(1.0, rel=1e-6)
    med = PointCloud(x, y, "euclidean", scale="median")
    assert 0.5 < float(np.median(med.dense())) < 2.0


def test_divergence_and_monge_gap_online_equal_dense(rng):
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(40, 2)) + 0.5
    d = ottools.sinkhorn_divergence(x, y, reg=0.1)
    o = ottools.sinkhorn_divergence(x, y, reg=0.1, online=True)
    assert d.success and o.success and o.fun == pytest.approx(d.fun, rel=1e-9)
    tx = x @ np.array([[0.0, -1.0], [1.0, 0.0]])
    g1 = ottools.monge_gap(x, tx)
    g2 = ottools.monge_gap(x, tx, online=True)
    assert g1.success and g2.success and g2.fun == pytest.approx(g1.fun, rel=1e-9)
    assert g2.reg == pytest.approx(g1.reg, rel=1e-12)


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((np.full((3, 2), np.nan), np.ones((2, 2))), {}, ValueError, "`x` must be finite"),
    ((np.ones((3, 2)), np.ones((2, 3))), {}, ValueError, "same dimension"),
    ((np.ones((3, 2)), np.ones((2, 2)), "cosine"), {}, ValueError, "Unknown metric 'cosine'"),
    ((np.ones((3, 2)), np.ones((2, 2)), "minkowski"), {}, TypeError, "`p` is required"),
    ((np.ones((3, 2)), np.ones((2, 2))), {"p": 3}, TypeError, "`p` is only used"),
    ((np.ones((3, 2)), np.ones((2, 2))), {"scale": "mean"}, ValueError, "`scale` must be"),
    ((np.ones((3, 2)), np.ones((2, 2))), {"scale": -1.0}, ValueError, "`scale` must be a"),
])
def test_bad_point_clouds(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PointCloud(*args, **kwargs)


def test_methods_that_need_the_dense_cost_are_refused(rng):
    geom = PointCloud(rng.random((5, 2)), rng.random((4, 2)))
    for method in ("scaling", "sns"):
        with pytest.raises(ValueError, match="needs the dense cost matrix"):
            ottools.sinkhorn(None, None, geom, 0.1, method=method)
    with pytest.raises(ValueError, match="`a` must have length 5"):
        ottools.sinkhorn(np.ones(4) / 4, None, geom, 0.1)


def test_dense_plan_that_cannot_fit_raises_memory_error(rng):
    x = rng.random((10**6, 1))
    geom = PointCloud(x, x[:2 * 10**5])
    with pytest.raises(MemoryError, match="The dense plan of this PointCloud problem needs"):
        from ottools._geometry import dense_plan
        dense_plan(geom, np.ones(10**6), np.ones(2 * 10**5), np.zeros(10**6),
                   np.zeros(2 * 10**5), 1.0, np.float64)


def test_online_solve_allocates_no_n_by_m_array():
    # Peak RSS of the solve itself (kernels compiled beforehand) at n = m = 3000: the
    # dense cost alone would need 72 MB, the kernel and the plan as much again.
    code = textwrap.dedent("""
        import resource, numpy as np, ottools
        rng = np.random.default_rng(0)
        small = ottools.PointCloud(rng.random((600, 3)), rng.random((600, 3)))
        ottools.sinkhorn(None, None, small, 0.05, maxiter=3)  # compile (parallel too)
        x, y = rng.random((3000, 3)), rng.random((3000, 3))
        geom = ottools.PointCloud(x, y)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = ottools.sinkhorn(None, None, geom, 0.05, maxiter=20)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024.0, res.nit)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr[-2000:]
    grown_mb, nit = out.stdout.split()
    assert int(nit) == 20
    assert float(grown_mb) < 20.0
