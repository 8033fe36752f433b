import warnings

import _reference as ref
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ottools
from ottools import OTConvergenceWarning, sinkhorn_divergence
from ottools._divergence import _swapped, divergence_parts


def _parts(*args, **kwargs):
    xy, xx, yy, _ = divergence_parts(*args, **kwargs)
    return xy, xx, yy


def _clouds(rng, n=30, m=25, d=2):
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) * 0.7 + 0.5


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 15), m=st.integers(1, 15),
       d=st.integers(1, 3), reg=st.sampled_from([0.3, 1.0, 3.0]))
def test_nonnegative_and_symmetric(seed, n, m, d, reg):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    r_xy = sinkhorn_divergence(x, y, reg=reg, maxiter=50_000)
    r_yx = sinkhorn_divergence(y, x, reg=reg, maxiter=50_000)
    assert r_xy.success and r_yx.success, (r_xy.message, r_yx.message)
    assert r_xy.fun >= -1e-8
    # The cross problem is solved in one orientation: the same computation both ways.
    assert r_xy.fun == r_yx.fun


@pytest.mark.parametrize("reg", [0.05, 0.5, 2.0])
def test_zero_for_identical_inputs(rng, reg):
    x = rng.normal(size=(40, 3))
    a = rng.random(40) + 0.1
    res = sinkhorn_divergence(x, x, reg=reg)
    assert res.success and res.fun == 0.0
    res = sinkhorn_divergence(x, x, a / a.sum(), a / a.sum(), reg=reg)
    assert res.success and res.fun == 0.0
    xy, xx, _ = _parts(x, x.copy(), reg=reg)
    assert xy.success and xy.fun == xx.fun


@pytest.mark.parametrize("reg", [0.5, 1.0, 5.0])
def test_translation_closed_form(rng, reg):
    # Squared Euclidean cost: S_eps(alpha, alpha + t) = |t|^2 for every eps.
    x = rng.normal(size=(30, 2))
    t = np.array([0.3, -0.4])
    np.testing.assert_allclose(sinkhorn_divergence(x, x + t, reg=reg).fun, 0.25, rtol=1e-7)


def test_positive_for_different_clouds(rng):
    x, y = _clouds(rng)
    assert sinkhorn_divergence(x, y, reg=0.5).fun > 0.1


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reg", [0.5, 2.0])
def test_matches_pot_with_convention_mapped(rng, weighted, reg):
    ot = pytest.importorskip("ot")
    x, y = _clouds(rng)
    a = b = None
    if weighted:
        a = rng.random(len(x)) + 0.1
        b = rng.random(len(y)) + 0.1
        a, b = a / a.sum(), b / b.sum()
    ours = sinkhorn_divergence(x, y, a, b, reg=reg, tol=1e-11).fun
    pot = ot.bregman.empirical_sinkhorn_divergence(x, y, reg, a, b, stopThr=1e-12,
                                                   numIterMax=50_000)
    # POT combines the linear costs <P, C> of the three entropic plans (clamped at 0);
    # ottools the entropic costs <P, C> + reg KL(P | a x b). Map with POT's own plans:
    aa = np.full(len(x), 1 / len(x)) if a is None else a
    bb = np.full(len(y), 1 / len(y)) if b is None else b
    kls = []
    for u, v, p, q in ((x, y, aa, bb), (x, x, aa, aa), (y, y, bb, bb)):
        P = ot.sinkhorn(p, q, ot.dist(u, v), reg, stopThr=1e-12, numItermax=50_000)
        kls.append(ref.kl(P, p, q))
    mapped = pot + reg * (kls[0] - 0.5 * kls[1] - 0.5 * kls[2])
    assert pot > 0  # no clamp involved
    np.testing.assert_allclose(ours, mapped, rtol=0, atol=1e-6)
    # ... and the linear parts of our three solves give POT's value directly.
    xy, xx, yy = _parts(x, y, a, b, reg=reg, tol=1e-11)
    assert xy.success and xx.success and yy.success
    lin = xy.cost - 0.5 * (xx.cost + yy.cost)
    np.testing.assert_allclose(lin, pot, rtol=0, atol=1e-6)
    np.testing.assert_allclose(xy.fun - 0.5 * (xx.fun + yy.fun), ours, rtol=1e-12)


def test_other_metrics_and_callables(rng):
    x, y = _clouds(rng, 20, 15)
    s1 = sinkhorn_divergence(x, y, reg=0.5, metric="euclidean")
    s2 = sinkhorn_divergence(x, y, reg=0.5,
                             metric=lambda u, v: ottools.cost_matrix(u, v, "euclidean"))
    assert s1.success and s2.success
    np.testing.assert_allclose(s1.fun, s2.fun, rtol=1e-12)
    assert s1.fun > 0


def test_non_symmetric_callable(rng):
    x, y = _clouds(rng, 12, 10)

    def metric(u, v):  # asymmetric: c(u, v) != c(v, u)
        return ottools.cost_matrix(u, v) + 0.5 * (u[:, :1] - v[:, 0][None, :]).clip(0)

    xy, xx, yy = _parts(x, y, reg=0.5, metric=metric)
    assert xx.success and yy.success and xy.success
    ref_xx = ottools.sinkhorn(None, None, metric(x, x), 0.5)
    np.testing.assert_allclose(xx.plan, ref_xx.plan, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_self_transport_parts_are_symmetric(rng, dtype):
    # W(a, a) with a symmetric cost: the plan is symmetric and the centred potentials
    # coincide (f = g), zero weights included (their potential is the c-transform).
    x = rng.normal(size=(30, 2)).astype(dtype)
    a = (rng.random(30) + 0.1).astype(dtype)
    a[3] = 0
    a /= a.sum()
    xy, xx, _ = _parts(x, x[:7], a, None, reg=0.5)
    assert xx.success and xx.plan.dtype == dtype and xx.f.dtype == dtype
    tol = 1e-9 if dtype == np.float64 else 1e-4
    atol = 10 * tol if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(xx.plan, xx.plan.T, atol=atol)
    if dtype == np.float64:  # float32's tol leaves the slow mode f_i - g_i of Sinkhorn
        np.testing.assert_allclose(xx.f, xx.g, atol=1e-6)
    full = ottools.sinkhorn(a, a, ottools.cost_matrix(x, x), 0.5, tol=tol)
    np.testing.assert_allclose(xx.fun, full.fun, rtol=1e-12 if dtype == np.float64 else 1e-6)


def test_parts_expose_plans_and_potentials(rng):
    x, y = _clouds(rng, 12, 9)
    res = sinkhorn_divergence(x, y, reg=0.5)
    assert res.success and res.xy.success and res.xx.success and res.yy.success
    assert res.xy.plan.shape == (12, 9) and res.xx.plan.shape == (12, 12)
    assert res.yy.f.shape == (9,) and res.nit == res.xy.nit + res.xx.nit + res.yy.nit
    np.testing.assert_allclose(res.xy.plan.sum(1), np.full(12, 1 / 12), atol=1e-9)
    assert res.fun == res.xy.fun - 0.5 * (res.xx.fun + res.yy.fun)
    assert res.err == max(res.xy.err, res.xx.err, res.yy.err)
    # Swapped arguments: the transposed cross problem.
    rev = sinkhorn_divergence(y, x, reg=0.5)
    np.testing.assert_array_equal(rev.xy.plan, res.xy.plan.T)
    np.testing.assert_array_equal(rev.xx.plan, res.yy.plan)


def test_dtype(rng, dtype):
    x, y = _clouds(rng, 20, 15)
    s = sinkhorn_divergence(x.astype(dtype), y.astype(dtype), reg=0.5)
    assert s.success and isinstance(s.fun, float)
    assert s.xy.plan.dtype == dtype and s.xx.plan.dtype == dtype and s.yy.f.dtype == dtype
    np.testing.assert_allclose(s.fun, sinkhorn_divergence(x, y, reg=0.5).fun, rtol=1e-3)


def test_nonconvergence_is_reported(rng):
    x, y = _clouds(rng, 20, 15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the status says it: no warning
        res = sinkhorn_divergence(x, y, reg=0.01, maxiter=2)
    assert not res.success and res.status == 1 and np.isfinite(res.fun)
    assert res.message.startswith("W(x, y): Maximum number of iterations")


def test_bad_inputs(rng):
    x, y = _clouds(rng, 5, 4)
    with pytest.raises(TypeError, match="reg"):
        sinkhorn_divergence(x, y)
    with pytest.raises(ValueError, match="`reg` must be a positive finite number"):
        sinkhorn_divergence(x, y, reg=0)
    with pytest.raises(ValueError, match="`reg` must be a positive finite number"):
        sinkhorn_divergence(x, y, reg=-1.0)
    with pytest.raises(ValueError, match="same dimension"):
        sinkhorn_divergence(x, np.ones((4, 3)), reg=1.0)
    with pytest.raises(ValueError, match="Unknown metric 'nope'"):
        sinkhorn_divergence(x, y, reg=1.0, metric="nope")
    with pytest.raises(ValueError, match="`b` must have length 4: `y` has 4 points"):
        sinkhorn_divergence(x, y, None, [0.5, 0.5], reg=1.0)
    with pytest.raises(ValueError, match="same total mass"):
        sinkhorn_divergence(x, y, np.ones(5), None, reg=1.0)
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        sinkhorn_divergence(x, y, reg=1.0, method="nope")
    with pytest.raises(TypeError, match="Unknown option"):
        sinkhorn_divergence(x, x, reg=1.0, options={"nope": 1})
    with pytest.raises(ValueError, match="`x` must be finite"):
        sinkhorn_divergence(np.full((5, 2), np.inf), y, reg=1.0)


def test_envelope_gradients_of_parts(rng):
    # The derivatives the torch layer uses, against central finite differences.
    x, y = _clouds(rng, 8, 6)
    a = rng.random(8) + 0.5
    a /= a.sum()
    reg, h = 0.5, 1e-5
    xy, xx, yy = _parts(x, y, a, None, reg=reg, tol=1e-13)
    assert xy.success and xx.success and yy.success
    Pxy, Pxx = xy.plan, xx.plan
    grad_x = 2 * (Pxy.sum(1)[:, None] * x - Pxy @ y) - 2 * (Pxx.sum(1)[:, None] * x - Pxx @ x)
    fd = np.zeros_like(x)
    for i in range(8):
        for k in range(2):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd[i, k] = (sinkhorn_divergence(xp, y, a, reg=reg, tol=1e-13).fun
                        - sinkhorn_divergence(xm, y, a, reg=reg, tol=1e-13).fun) / (2 * h)
    np.testing.assert_allclose(grad_x, fd, atol=1e-6)
    # Weights: a tangent direction of the simplex (mass moves from sample 0 to 1).
    d = np.zeros(8)
    d[0], d[1] = 1.0, -1.0
    fd_a = (sinkhorn_divergence(x, y, a + h * d, reg=reg, tol=1e-13).fun
            - sinkhorn_divergence(x, y, a - h * d, reg=reg, tol=1e-13).fun) / (2 * h)
    np.testing.assert_allclose((xy.f - 0.5 * (xx.f + xx.g)) @ d, fd_a, atol=1e-6)


def test_overflowing_points_are_named(rng):
    # The self terms name the cloud that overflows; the cross term names both in the
    # user's order, whichever orientation the cross problem is solved in.
    x, y = _clouds(rng, 6, 5)
    with pytest.raises(ValueError, match=r"cost between `x` and `x` overflows .* divide `x` "):
        sinkhorn_divergence(x * 1e200, y, reg=1.0)
    with pytest.raises(ValueError, match=r"cost between `y` and `y` overflows .* divide `y` "):
        sinkhorn_divergence(x, y * 1e200, reg=1.0)
    big = 1.5e154 + x  # self costs finite (the offsets cancel), cross costs ~4.5e308
    with pytest.raises(ValueError, match=r"between `[xy]` and `[xy]` overflows .* "
                                         r"x\[\d+\] = \[1\.5e\+154"):
        sinkhorn_divergence(big, y, reg=1.0)
    with pytest.raises(ValueError, match=r"between `[xy]` and `[xy]` overflows .* "
                                         r"y\[\d+\] = \[1\.5e\+154"):
        sinkhorn_divergence(y, big, reg=1.0)
    # the online path names the cloud whose squared norms overflow
    for first, second, name in ((x * 1e200, y, "x"), (x, y * 1e200, "y")):
        with pytest.raises(ValueError, match=rf"`{name}` is too large .* of {name}\[0\]"):
            sinkhorn_divergence(first, second, reg=1.0, online=True)


@pytest.mark.parametrize("online", [False, True])
def test_minkowski_is_the_euclidean_distance_on_both_paths(rng, online):
    x, y = _clouds(rng, 12, 10)
    mink = sinkhorn_divergence(x, y, reg=0.1, metric="minkowski", online=online)
    eucl = sinkhorn_divergence(x, y, reg=0.1, metric="euclidean", online=online)
    assert mink.success
    assert mink.fun == eucl.fun


@given(n=st.integers(1, 150), flip=st.booleans(), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
@settings(deadline=None, max_examples=40)
def test_is_symmetric_kernel_is_array_equal_to_transpose(n, flip, seed, dtype):
    """The tiled symmetry test (64 x 64 tiles, sizes across tile borders) answers
    ``np.array_equal(C, C.T)``, for a difference anywhere and for NaN."""
    from ottools._kernels import _symmetric

    r = np.random.default_rng(seed)
    C = r.random((n, n))
    C = (C + C.T).astype(dtype)
    if flip and n > 1:
        i, j = r.choice(n, 2, replace=False)
        C[i, j] = np.nextafter(C[i, j], np.inf) if r.random() < 0.5 else np.nan
    assert _symmetric.is_symmetric(C) == np.array_equal(C, C.T)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), m=st.integers(1, 30),
       d=st.integers(1, 3), log_reg=st.floats(-3.5, 0.0),
       dtype=st.sampled_from([np.float64, np.float32]), weighted=st.booleans(),
       debias=st.booleans(), method=st.sampled_from(["auto", "log"]))
@settings(deadline=None, max_examples=40)
def test_batch_of_small_pairs_equals_each_pair(seed, n, m, d, log_reg, dtype, weighted,
                                               debias, method):
    # Small pairs of a (B, N, D) batch are solved as three batches of problems (one
    # kernel call each, the problems one call would anneal or finish by Newton steps
    # handed back to it): every pair's value, plans, iteration counts and gradients are
    # those of the pair alone, to the bit.
    from ottools._divergence import _value_and_grad, divergence_value_and_grad

    rng = np.random.default_rng(seed)
    B = 4
    x = rng.normal(size=(B, n, d)).astype(dtype)
    y = (rng.normal(size=(B, m, d)) + 0.3).astype(dtype)
    a = b = None
    if weighted:
        a = rng.random((B, n)) * (rng.random((B, n)) > 0.2)
        b = rng.random((B, m)) + 0.05
        a[:, 0] += 0.1
        a, b = (w / w.sum(1, keepdims=True) for w in (a, b))
        a, b = a.astype(dtype), b.astype(dtype)
    if n == m:  # one pair of identical clouds (S = 0 exactly)
        y[1] = x[1]
        if weighted:
            b[1] = a[1]
    kw = dict(reg=10.0 ** log_reg, debias=debias, method=method)
    values, results, grads = divergence_value_and_grad(x, y, a, b, **kw)
    per = len(results) // B
    for k in range(B):
        v, res, g = _value_and_grad(x[k], y[k], None if a is None else a[k],
                                    None if b is None else b[k], **kw)
        assert values[k] == v
        for one, bat in zip(res, results[per * k:per * (k + 1)]):
            assert (one.nit, one.status, one.message) == (bat.nit, bat.status, bat.message)
            np.testing.assert_array_equal(one.plan, bat.plan)
            np.testing.assert_array_equal(one.f, bat.f)
        for i in range(4):
            np.testing.assert_array_equal(grads[i][k], g[i])


def test_batch_of_pairs_in_groups_gives_the_same_results(rng, monkeypatch):
    # The batch path runs in groups of pairs (bounded memory); a pair's value and
    # gradients must not depend on its group.
    import ottools._divergence as dv

    x, y = rng.random((7, 12, 2)), rng.random((7, 9, 2))
    a = rng.random((7, 12)) + 0.1
    a /= a.sum(1, keepdims=True)
    whole = dv.divergence_value_and_grad(x, y, a, None, reg=0.05)
    monkeypatch.setattr(dv, "_PAIRS_GROUP_ENTRIES", 3 * 12 ** 2)  # groups of 3 pairs
    grouped = dv.divergence_value_and_grad(x, y, a, None, reg=0.05)
    np.testing.assert_array_equal(grouped[0], whole[0])
    assert len(grouped[1]) == len(whole[1]) == 21
    for g, w in zip(grouped[2], whole[2]):
        np.testing.assert_array_equal(g, w)
    x[5, 0, 0] = np.inf  # in the second group: named by its index in the batch
    with pytest.raises(ValueError, match="pair 5 of the batch: `x` must be finite"):
        dv.divergence_value_and_grad(x, y, a, None, reg=0.05)


@pytest.mark.parametrize("kind", ["batched", "euclidean", "unbalanced"])
def test_sinkhorn_divergence_on_a_batch_of_pairs(rng, kind):
    # (B, n, d) clouds: fields over the pairs, each pair's result that of one call
    # (the squared Euclidean balanced case through the batched kernels; other metrics and
    # unbalanced problems pair by pair).
    x, y = rng.random((5, 12, 2)), rng.random((5, 9, 2)) + 0.2
    b = rng.random((5, 9)) + 0.1
    b /= b.sum(1, keepdims=True)
    kw = {"batched": {}, "euclidean": {"metric": "euclidean"},
          "unbalanced": {"reg_m": 0.5}}[kind]
    res = sinkhorn_divergence(x, y, None, b, reg=0.05, **kw)
    assert res.fun.shape == res.nit.shape == res.success.shape == (5,)
    assert np.all(res.success) and "5 converged" in res.message
    for k in range(5):
        one = sinkhorn_divergence(x[k], y[k], None, b[k], reg=0.05, **kw)
        assert res.fun[k] == one.fun
        assert res.nit[k] == one.nit and res.status[k] == one.status
        for name in ("xy", "xx", "yy"):
            np.testing.assert_array_equal(res[name][k].plan, one[name].plan)


@pytest.mark.parametrize("kind", ["batched", "euclidean", "unbalanced", "float32"])
@pytest.mark.parametrize("shared", ["a", "b", "both"])
def test_batch_weights_shared_by_every_pair_equal_the_repeated_weights(rng, kind, shared):
    # A batch takes one weight vector (n,) / (m,) shared by every pair, as the batches of
    # ottools.sinkhorn and sliced_wasserstein do: the results of that vector repeated to
    # (B, n) / (B, m), to the bit (it was refused: "`a` must have shape (B, n)").
    B, n, m = 4, 6, 6  # n == m: the pairs solved in both orientations (see _swapped)
    x, y = rng.normal(size=(B, n, 2)), rng.normal(size=(B, m, 2)) + 0.3
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a, b = a / a.sum(), b / b.sum()
    kw = {"batched": {}, "euclidean": {"metric": "euclidean"},
          "unbalanced": {"reg_m": 0.5}, "float32": {}}[kind]
    if kind == "float32":
        x, y, a, b = (v.astype(np.float32) for v in (x, y, a, b))
    if kind == "unbalanced":
        b = 1.5 * b
    sa = a if shared in ("a", "both") else np.tile(a, (B, 1))
    sb = b if shared in ("b", "both") else np.tile(b, (B, 1))
    x[1], y[1] = y[1].copy(), x[1].copy()  # one of the pairs 0, 1 solved swapped
    assert _swapped(x[0], y[0], a, b) != _swapped(x[1], y[1], a, b)
    res = sinkhorn_divergence(x, y, sa, sb, reg=0.1, **kw)
    rep = sinkhorn_divergence(x, y, np.tile(a, (B, 1)), np.tile(b, (B, 1)), reg=0.1, **kw)
    assert np.all(res.success), res.message
    np.testing.assert_array_equal(res.fun, rep.fun)
    np.testing.assert_array_equal(res.nit, rep.nit)
    for k in range(B):
        one = sinkhorn_divergence(x[k], y[k], a, b, reg=0.1, **kw)
        assert res.fun[k] == one.fun
        for name in ("xy", "xx", "yy"):
            np.testing.assert_array_equal(res[name][k].plan, rep[name][k].plan)
            np.testing.assert_array_equal(res[name][k].f, rep[name][k].f)
            np.testing.assert_array_equal(res[name][k].g, one[name].g)
    # lists are array-like weights too; another length names both accepted shapes
    lst = sinkhorn_divergence(x, y, list(a), None if kind == "unbalanced" else list(b),
                              reg=0.1, **kw)
    assert np.all(lst.success)
    with pytest.raises(ValueError, match=r"`a` must have shape \(4, 6\) .* \(6,\) \(one "
                                         r"shared by all pairs\)"):
        sinkhorn_divergence(x, y, a[:-1], None, reg=0.1, **kw)


def test_batch_shared_weights_as_a_tensor_are_refused(rng):
    # A torch tensor as the shared vector is refused as a per-pair one is (it was read
    # through np.asarray, silently dropping its gradient, by a first version).
    torch = pytest.importorskip("torch")
    x, y = rng.random((3, 5, 2)), rng.random((3, 4, 2))
    for a in (torch.full((5,), 0.2), torch.full((3, 5), 0.2)):
        with pytest.raises(TypeError, match="pair 0 of the batch: `a` is a torch.Tensor"):
            sinkhorn_divergence(x, y, a, None, reg=0.1)


def test_sinkhorn_divergence_batch_errors_name_the_pair(rng):
    x, y = rng.random((4, 6, 2)), rng.random((4, 5, 2))
    bad = x.copy()
    bad[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="pair 2 of the batch: `x` must be finite"):
        sinkhorn_divergence(bad, y, reg=0.1)
    with pytest.raises(ValueError, match="`y` holds 3 pairs but `x` holds 4"):
        sinkhorn_divergence(x, y[:3], reg=0.1)
    with pytest.raises(ValueError, match=r"`b` must have shape \(4, 5\) \(one weight "
                                         r"vector per pair\), \(5,\) \(one shared"):
        sinkhorn_divergence(x, y, None, np.ones(6) / 6, reg=0.1)
    b = np.full((4, 5), 0.2)
    b[1] *= 2
    with pytest.raises(ValueError, match="pair 1 of the batch: `a` and `b` must have"):
        sinkhorn_divergence(x, y, None, b, reg=0.1)
    with pytest.raises(ValueError, match="`x` must be 3-D"):
        sinkhorn_divergence(x[0], y, reg=0.1)


def _three_solves(a, b, cxy, cxx, cyy, reg):
    """The divergence from three ``ottools.sinkhorn`` calls (the reference)."""
    parts = [ottools.sinkhorn(p, q, c, reg, tol=1e-11) for p, q, c in
             ((a, b, cxy), (a, a, cxx), (b, b, cyy))]
    assert all(r.success for r in parts)
    return parts[0].fun - 0.5 * (parts[1].fun + parts[2].fun), parts[0].fun


def test_non_symmetric_callable_cross_cost_is_metric_of_x_and_y():
    """The cross problem is solved in one orientation (``_swapped``): with a callable
    that is not symmetric, the swapped orientation solved on metric(y, x) transposed and
    returned the divergence of the reversed pair (1.4997 against 2.2497). Both argument
    orders, so that one of them is solved swapped."""
    from ottools._divergence import _swapped

    def metric(u, v):  # |u - v|^2 + u_0: a valid ground cost, c(u, v) != c(v, u)
        return ((u[:, None] - v[None]) ** 2).sum(-1) + u[:, :1]

    x = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    y = np.array([[0.0, 0.0], [0.5, 0.5]])
    a, b = np.full(3, 1 / 3), np.full(2, 1 / 2)
    assert _swapped(x, y, a, b) != _swapped(y, x, b, a)
    for u, v, p, q in ((x, y, a, b), (y, x, b, a)):
        want, want_xy = _three_solves(p, q, metric(u, v), metric(u, u), metric(v, v), 0.5)
        res = sinkhorn_divergence(u, v, p, q, reg=0.5, metric=metric, tol=1e-11)
        assert res.success
        np.testing.assert_allclose(res.fun, want, rtol=1e-9)
        np.testing.assert_allclose(res.xy.fun, want_xy, rtol=1e-9)
        assert res.xy.plan.shape == (len(u), len(v))
        np.testing.assert_allclose(res.xy.plan.sum(1), p, atol=1e-10)
    # different values: the two orders are two different divergences here
    assert abs(sinkhorn_divergence(x, y, a, b, reg=0.5, metric=metric).fun
               - sinkhorn_divergence(y, x, b, a, reg=0.5, metric=metric).fun) > 0.5


@pytest.mark.parametrize("metric", ["seuclidean", "mahalanobis"])
def test_estimated_metrics_use_one_ground_cost(rng, metric):
    """seuclidean / mahalanobis estimate their variances from the points: the three
    problems took them from x alone, y alone and both (three metrics: 1.673 against
    1.744). The reference: one cost built with cdist(V=...) / cdist(VI=...) from x and
    y stacked, used by three ottools.sinkhorn calls."""
    from scipy.spatial.distance import cdist

    x = rng.normal(size=(10, 3)) * [1.0, 0.1, 2.0]
    y = rng.normal(size=(12, 3)) * [0.1, 3.0, 1.0] + 1.0
    z = np.vstack([x, y])
    kw = ({"V": np.var(z, axis=0, ddof=1)} if metric == "seuclidean" else
          {"VI": np.linalg.inv(np.cov(z.T)).T})

    def c(u, v):
        return cdist(u, v, metric, **kw)

    want, _ = _three_solves(None, None, c(x, y), c(x, x), c(y, y), 0.2)
    for u, v in ((x, y), (y, x)):
        res = sinkhorn_divergence(u, v, reg=0.2, metric=metric, tol=1e-11)
        assert res.success
        np.testing.assert_allclose(res.fun, want, rtol=1e-9)
    # the cross problem is cost_matrix's, and S(x, y) = S(y, x) exactly still
    xy, _, _ = _parts(x, y, reg=0.2, metric=metric)
    np.testing.assert_allclose(xy.plan.sum(1), 1 / 10, atol=1e-10)
    assert (sinkhorn_divergence(x, y, reg=0.2, metric=metric).fun
            == sinkhorn_divergence(y, x, reg=0.2, metric=metric).fun)
    # extreme magnitudes: the same power-of-two scaling for the three problems (exact)
    big = sinkhorn_divergence(x * 2.0**1000, y * 2.0**1000, reg=0.2, metric=metric,
                              tol=1e-11)
    np.testing.assert_allclose(big.fun, want, rtol=1e-9)


def test_estimated_metric_errors_name_the_points(rng):
    with pytest.raises(ValueError, match="`metric`='mahalanobis' cannot be evaluated"):
        sinkhorn_divergence(np.zeros((1, 3)), np.ones((1, 3)), reg=1.0, metric="mahalanobis")
    x, y = rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    x[:, 1] = y[:, 1] = 1.0  # a coordinate of variance 0
    with pytest.raises(ValueError, match="`metric`='seuclidean' is undefined"):
        sinkhorn_divergence(x, y, reg=1.0, metric="seuclidean")


def test_unbalanced_mass_term_of_huge_masses_does_not_raise(rng):
    """The mass term reg / 2 (m_a - m_b)**2 was a Python float power: masses near 1e160
    raised a bare OverflowError, where ottools.sinkhorn returns a result. Now a result
    too, with the failed parts reported (W(a, a) overflows: a value that is not finite)."""
    from ottools._divergence import _value_and_grad

    x, y = rng.normal(size=(6, 2)), rng.normal(size=(4, 2))
    a, b = np.full(6, 1e160), np.ones(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sinkhorn_divergence(x, y, a, b, reg=1.0, reg_m=1.0, maxiter=50)
        assert not res.success and not np.isfinite(res.fun)
        value, results, _ = _value_and_grad(x, y, a, b, reg=1.0, reg_m=1.0, maxiter=50)
        assert not np.isfinite(value) and not all(r.success for r in results)


def test_unbalanced_mass_term_is_computed_without_intermediate_overflow():
    """(m_a - m_b)**2 overflows at a difference of 1.4e154 even where the term is
    representable (a small reg); it is inf where the term itself overflows."""
    from ottools._divergence import _mass_term
    from ottools._result import make_result

    def term(reg, ma, mb):
        return _mass_term(make_result(reg=reg, reg_m=(1.0, 1.0)),
                          make_result(masses=(ma, ma)), make_result(masses=(mb, mb)))

    assert term(1e-20, 1e155, 1.0) == pytest.approx(0.5e-20 * 1e155 * 1e155, rel=1e-15)
    assert term(1.0, 1e160, 1.0) == np.inf
    assert term(2.0, 3.0, 1.0) == 4.0
    assert _mass_term(make_result(reg=1.0), None, None) == 0.0


def test_symmetric_callable_whose_rounding_is_not_keeps_exact_symmetry(rng):
    """|u|^2 + |v|^2 - 2 u.v rounds differently in each order: the swapped solve on
    metric(x, y) transposed broke S(x, y) == S(y, x) (1e-14 apart)."""
    def metric(u, v):
        return (u * u).sum(1)[:, None] + (v * v).sum(1)[None, :] - 2 * u @ v.T

    for _ in range(5):
        x, y = rng.normal(size=(9, 3)), rng.normal(size=(7, 3)) + 0.4
        assert ottools.sinkhorn_divergence(x, y, reg=0.3, metric=metric).fun == \
            ottools.sinkhorn_divergence(y, x, reg=0.3, metric=metric).fun


def _debiased(x, y, reg, metric, p):
    """W(x, y) - (W(x, x) + W(y, y)) / 2 solved on cost_matrix(., ., metric, p=p)."""
    def w(u, v):
        cost = ottools.cost_matrix(u, v, metric, p=p)
        return ottools.sinkhorn(None, None, cost, reg, tol=1e-12).fun

    return w(x, y) - 0.5 * (w(x, x) + w(y, y))


@pytest.mark.parametrize("metric, online", [("minkowski", False), ("minkowski", True),
                                            ("minkowski_p", False)])
def test_p_is_the_minkowski_ground_cost_exponent(rng, metric, online):
    # metric="minkowski" with p != 2 was reachable only through a callable
    x, y = _clouds(rng, 12, 10)
    res = sinkhorn_divergence(x, y, reg=0.1, metric=metric, p=3, online=online, tol=1e-12)
    assert res.success
    assert res.fun == pytest.approx(_debiased(x, y, 0.1, metric, 3), rel=1e-9)
    two = sinkhorn_divergence(x, y, reg=0.1, metric=metric, online=online)
    assert two.fun == sinkhorn_divergence(x, y, reg=0.1, metric=metric, p=2,
                                          online=online).fun
    assert abs(two.fun - res.fun) > 1e-3


def test_p_on_a_batch_of_pairs_is_each_pairs(rng):
    x, y = rng.random((3, 8, 2)), rng.random((3, 7, 2)) + 0.2
    res = sinkhorn_divergence(x, y, reg=0.05, metric="minkowski", p=3)
    assert np.all(res.success)
    for k in range(3):
        one = sinkhorn_divergence(x[k], y[k], reg=0.05, metric="minkowski", p=3)
        assert res.fun[k] == one.fun
        np.testing.assert_array_equal(res.xy[k].plan, one.xy.plan)


def test_p_is_refused_as_cost_matrix_refuses_it(rng):
    x, y = _clouds(rng, 5, 4)
    for metric in ("sqeuclidean", "euclidean", lambda u, v: ottools.cost_matrix(u, v)):
        with pytest.raises(TypeError, match="`p` is only used with metric='minkowski'"):
            sinkhorn_divergence(x, y, reg=0.1, metric=metric, p=3)
    with pytest.raises(TypeError, match="`p` is only used"):  # the default metric
        sinkhorn_divergence(x[None], y[None], reg=0.1, p=3)
    for p in (0.5, 0, -1.0):
        with pytest.raises(ValueError, match="`p` must be"):
            sinkhorn_divergence(x, y, reg=0.1, metric="minkowski", p=p)
    with pytest.raises(ValueError, match="`p` must be >= 1"):
        sinkhorn_divergence(x[None], y[None], reg=0.1, metric="minkowski_p", p=0.5)
    with pytest.raises(ValueError, match="online=True needs a metric"):  # no kernel
        sinkhorn_divergence(x, y, reg=0.1, metric="minkowski_p", p=3, online=True)
