"""Point clouds at scale and batches: ottools against POT, GeomLoss and a Python loop.

Usage (from the repository root; each part runs alone)::

    PYTHONPATH=. python benchmarks/scale_speed.py online --n 10000 20000
    PYTHONPATH=. python benchmarks/scale_speed.py online-50k          # RSS and per sweep
    PYTHONPATH=. python benchmarks/scale_speed.py online-small --n 3000 10000
    PYTHONPATH=. python benchmarks/scale_speed.py batch
    PYTHONPATH=. python benchmarks/scale_speed.py batch-small-reg
    PYTHONPATH=. python benchmarks/scale_speed.py torch
    PYTHONPATH=. python benchmarks/scale_speed.py small-pairs

``online``: ``sinkhorn`` on an ``ottools.PointCloud`` (uniform points in [0, 1]^3,
squared Euclidean cost, reg = 1e-2 * the squared diameter) against POT's
``ot.bregman.empirical_sinkhorn(..., isLazy=True)``, both to the same relative marginal
error (ours computed on POT's plan; POT runs plain log-domain Sinkhorn, given the
iteration count our plain ``method="log"`` needs, rounded up to its check period), and
against OTT-JAX's ``PointCloud(batch_size=1000)`` Sinkhorn in float64 and GeomLoss's
online (KeOps) backend at the fastest epsilon-scaling that reaches our value to 1e-6
(``--peers``; each skipped when not installed). OTT-JAX 0.6.0 (its latest release)
fails on its ``batch_size`` path with JAX 0.10 (``batching.is_vmappable`` is gone):
run that comparison in an environment with ``jax[cpu]<0.7``. KeOps is not in the
``bench`` extra (it compiles C++ at first use): ``pip install --target DIR pykeops
keopscore pybind11`` and ``PYTHONPATH=DIR`` bring it in for one run.

``online-50k``: ``sinkhorn_divergence`` at n = m = 50,000 (the dense cost alone: 20 GB),
peak RSS of the process, and the time per sweep against ``(n m) x`` the per-entry time
of the dense log-domain kernel (same algorithm, stored cost) measured at n = 4000 in the
same run.

``online-small``: small ``reg`` on a point cloud (uniform points in [0, 1]^d, d = 2 and
10, squared Euclidean cost divided by its max, reg 1e-3 and 1e-4), default tolerance:
``auto`` online (with its Newton stage) against ``auto`` on the dense cost and against
the online sweeps alone (``options={"newton": False}``, the online default before the
Newton stage), capped at ``--sweep-cap`` sweeps: their time and the err they reached
(memory: ``tests/test_geometry.py::test_online_newton_stage_allocates_no_n_by_m_array``).

``batch``: B = 1000 problems of 64 x 64 and B = 100 of 256 x 256 (uniform 2-D points,
squared Euclidean cost, reg 0.05): one batched call against a Python loop over
``sinkhorn`` and POT's ``ot.batch.solve_batch`` (log-domain Sinkhorn), each to err
<= 1e-6 (ours, computed on every plan).

``batch-small-reg``: B = 200 problems of 64 x 64 (uniform 2-D points, squared Euclidean
cost, default tolerance) at reg 0.05, 0.01, 2e-3 and 5e-4: one batched call against a
Python loop over ``sinkhorn``, interleaved, with how many problems one call anneals or
finishes by Newton steps (the batch hands those back to the one-problem driver).

``torch``: ``ottools.torch.sinkhorn_loss`` forward + backward on (B = 32, N = 1024, D = 3)
float32 batches against GeomLoss's tensorized ``SamplesLoss("sinkhorn", debias=True)``
(points scaled so that its cost ``|x - y|^2 / 2`` is ours) at the fastest ``scaling``
whose value is within 1e-6 (relative) of ours; and a single pair at N = 20,000, where
the dense path would not fit the default budget (the loss switches to point clouds).

``small-pairs``: B = 256 pairs of 64 points (uniform in [0, 1]^2, float64, reg 0.05): the
Sinkhorn divergence of every pair and its gradient with respect to ``x``: ottools' batch
path (``ottools._divergence.divergence_value_and_grad``, what
``ottools.torch.sinkhorn_loss`` runs on (B, N, D) tensors, called on NumPy arrays so that
torch need not be installed) against OTT-JAX's jitted
``jax.vmap(jax.value_and_grad(sinkhorn_divergence))`` at the loosest ``threshold`` whose
values are within 1e-6 (relative) of ours, interleaved (skipped when OTT-JAX does not
import; its environment needs NumPy, SciPy and Numba for ours); then
``ottools.sinkhorn_divergence`` on the same (B, N, 2) batch (values only) against a loop
over the pairs.

Medians over ``--repeat`` round-robin runs in one process; the machine may be busy:
ratios are in the same run.
"""

import argparse
import os
import resource
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ottools  # noqa: E402


def med(fn, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), min(ts), max(ts), out


def err_of(P, a, b):
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()) / float(a.sum())


def online(args):
    import ot

    rng = np.random.default_rng(0)
    for n in args.n:
        x, y = rng.random((n, 3)), rng.random((n, 3))
        reg = 1e-2 * 3.0  # squared diameter of the unit cube
        a = np.full(n, 1.0 / n)
        geom = ottools.PointCloud(x, y)
        ottools.sinkhorn(None, None, ottools.PointCloud(x[:500], y[:500]), reg, tol=1e-6)
        t_ours, lo, hi, res = med(lambda: ottools.sinkhorn(None, None, geom, reg, tol=1e-6),
                                  args.repeat)
        plain = ottools.sinkhorn(None, None, geom, reg, method="log", tol=1e-6)
        iters = int(np.ceil(plain.nit / 10) * 10)
        run = iters if n <= args.pot_full else 10
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f, g = ot.bregman.empirical_sinkhorn(x, y, reg, a, a, numIterMax=run,
                                                 stopThr=0.0, isLazy=True,
                                                 batchSize=1000)
        t_pot = (time.perf_counter() - t0) * iters / run
        if run < iters:  # POT's iterates are those of our plain log sweeps: their err
            print(f"n={n}: POT lazy timed over {run} iterations, extrapolated to {iters}; "
                  f"the err below is our plain log sweeps' after {plain.nit} (the same "
                  f"iterates)", flush=True)
            f = g = None
        # POT's plan is exp(f_i + g_j - C_ij / reg) in its convention: our err on it.
        Pv_rows = np.zeros(n)
        Pv_cols = np.zeros(n)
        for i0 in range(0, n if f is not None else 0, 2000):
            C = ottools.cost_matrix(x[i0:i0 + 2000], y)
            P = np.exp(f[i0:i0 + 2000, None] + g[None, :] - C / reg)
            Pv_rows[i0:i0 + 2000] = P.sum(1)
            Pv_cols += P.sum(0)
        err_pot = (float(np.abs(Pv_rows - a).sum() + np.abs(Pv_cols - a).sum())
                   if f is not None else plain.err)
        line = (f"n={n}: ottools PointCloud auto {t_ours:.2f} s [{lo:.2f}-{hi:.2f}] nit "
                f"{res.nit} err {res.err:.1e} | POT lazy {iters} it {t_pot:.1f} s err "
                f"{err_pot:.1e} | ratio {t_pot / t_ours:.1f}x")
        if "ott" in args.peers:
            line += " | " + ott_online(x, y, reg, a, t_ours)
        if "geomloss" in args.peers:
            line += " | " + geomloss_online(x, y, reg, res.fun, t_ours)
        print(line, flush=True)


def geomloss_online(x, y, reg, value, t_ours):
    """GeomLoss ``SamplesLoss("sinkhorn", debias=False, backend="online")`` (KeOps), float64
    points scaled by sqrt(2) so that its cost ``|x - y|^2 / 2`` is ours and
    ``blur = sqrt(reg)``: the fastest ``scaling`` whose value is within 1e-6 (relative)
    of ours, forward only (each setting run once to compile, then timed)."""
    try:
        import torch
        from geomloss import SamplesLoss
        import pykeops  # noqa: F401
    except ImportError:
        return "GeomLoss online (KeOps) not installed (skipped)"
    xs = torch.tensor(x * np.sqrt(2.0))
    ys = torch.tensor(y * np.sqrt(2.0))
    for scaling in (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99):
        fn = SamplesLoss("sinkhorn", p=2, blur=np.sqrt(reg), scaling=scaling, debias=False,
                         backend="online")
        try:
            fn(xs[:100], ys[:100])
        except Exception as exc:
            return f"GeomLoss online failed ({type(exc).__name__}: {str(exc)[:80]}) (skipped)"
        t0 = time.perf_counter()
        v = float(fn(xs, ys))
        t_g = time.perf_counter() - t0
        rel = abs(v - value) / abs(value)
        if rel <= 1e-6:
            return (f"GeomLoss online scaling {scaling} {t_g:.1f} s (value rel. diff "
                    f"{rel:.1e}) ({t_g / t_ours:.1f}x)")
    return (f"GeomLoss online: no scaling up to 0.99 within 1e-6 (last {t_g:.1f} s, rel. "
            f"diff {rel:.1e}; >= {t_g / t_ours:.1f}x as a lower bound)")


def ott_version():
    import ott

    return getattr(ott, "__version__", "?")


def ott_online(x, y, reg, a, t_ours):
    """OTT-JAX ``PointCloud(batch_size=...)`` Sinkhorn (float64, log-domain), its threshold
    tightened until our err on its plan is <= 1e-6; each setting run once to compile,
    then timed. Skipped when OTT-JAX is not installed."""
    try:
        import jax
        from ott.geometry import pointcloud
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import sinkhorn
    except ImportError:
        return "OTT-JAX not installed (skipped)"
    jax.config.update("jax_enable_x64", True)
    xj, yj, aj = jax.numpy.asarray(x), jax.numpy.asarray(y), jax.numpy.asarray(a)
    for thr in (5e-7, 5e-8, 5e-9):
        geom = pointcloud.PointCloud(xj, yj, epsilon=reg, batch_size=1000)
        solver = jax.jit(sinkhorn.Sinkhorn(threshold=thr, max_iterations=100_000))
        prob = linear_problem.LinearProblem(geom, aj, aj)
        try:
            solver(prob).f.block_until_ready()  # compile
        except Exception as exc:  # OTT 0.6's batched path against a newer JAX
            return (f"OTT-JAX {ott_version()} online path failed with JAX {jax.__version__} "
                    f"({type(exc).__name__}: {str(exc)[:80]}) (skipped)")
        t0 = time.perf_counter()
        out = solver(prob)
        out.f.block_until_ready()
        t_ott = time.perf_counter() - t0
        err = float(np.abs(np.asarray(out.marginal(1)) - a).sum()
                    + np.abs(np.asarray(out.marginal(0)) - a).sum())
        if err <= 1e-6:
            break
    return (f"OTT-JAX threshold {thr:g} {int(out.n_iters)} it {t_ott:.1f} s err {err:.1e} "
            f"({t_ott / t_ours:.1f}x)")


def online_50k(args):
    rng = np.random.default_rng(0)
    n = args.big
    reg = 1e-2 * 3.0
    # Dense per-entry time of the same algorithm (log-domain kernel) at n = 4000.
    xs, ys = rng.random((4000, 3)), rng.random((4000, 3))
    cost = ottools.cost_matrix(xs, ys)
    ottools.sinkhorn(None, None, cost, reg, method="log", tol=0.0, maxiter=2)
    from ottools._kernels import _sinkhorn as ks

    a = np.full(4000, 1 / 4000)
    la = np.log(a)
    f, g = np.zeros(4000), np.zeros(4000)
    ks.sinkhorn_log(a, la, la, cost, reg, f, g, 0.0, 1, False)
    t_d, _, _, _ = med(lambda: ks.sinkhorn_log(a, la, la, cost, reg, f, g, 0.0, 3, False),
                       3)
    per_entry = t_d / 3 / (4000 * 4000)
    del cost
    x, y = rng.random((n, 3)), rng.random((n, 3))
    ottools.sinkhorn(None, None, ottools.PointCloud(x[:600], y[:600]), reg, maxiter=3)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = ottools.sinkhorn_divergence(x, y, reg=reg, tol=1e-6)
    el = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sweeps = res.xy.nit + 0.5 * (res.xx.nit + res.yy.nit)  # a symmetric sweep: half
    print(f"n=m={n}, d=3, reg={reg}: divergence {res.fun:.6g} success {res.success} "
          f"err {res.err:.1e}, {el:.0f} s, nit xy/xx/yy {res.xy.nit}/{res.xx.nit}/"
          f"{res.yy.nit}; peak RSS {rss:.0f} MB (before the solve {rss0:.0f} MB; the dense "
          f"cost alone: {8 * n * n / 2**30:.1f} GiB)")
    print(f"time per sweep {el / sweeps:.2f} s vs (n m) x dense log-domain per-entry time "
          f"at n = 4000 ({per_entry * 1e9:.2f} ns): {per_entry * n * n:.2f} s, ratio "
          f"{el / sweeps / (per_entry * n * n):.2f}")


def batch(args):
    try:
        import ot.batch as otb
    except ImportError:
        otb = None
    rng = np.random.default_rng(0)
    for B, n in ((1000, 64), (100, 256)):
        x, y = rng.random((B, n, 2)), rng.random((B, n, 2))
        cost = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
        reg = 0.05
        ottools.sinkhorn(None, None, cost[:2], reg, tol=1e-6)
        ottools.sinkhorn(None, None, cost[0], reg, tol=1e-6)
        # Batch and loop interleaved, round by round: the shared machine's load changes
        # within seconds, and both see the same.
        tb, tl = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = ottools.sinkhorn(None, None, cost, reg, tol=1e-6)
            tb.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for k in range(B):
                ottools.sinkhorn(None, None, cost[k], reg, tol=1e-6)
            tl.append(time.perf_counter() - t0)
        t_b, lo, hi = float(np.median(tb)), min(tb), max(tb)
        t_l = float(np.median(tl))
        ratios = np.array(tl) / np.array(tb)
        line = (f"B={B} n={n}: batch {t_b:.4f} s [{lo:.4f}-{hi:.4f}] all converged "
                f"{bool(res.success.all())} | loop over sinkhorn {t_l:.4f} s "
                f"[{min(tl):.4f}-{max(tl):.4f}] ({t_l / t_b:.1f}x; per round "
                f"{np.median(ratios):.1f}x [{ratios.min():.1f}-{ratios.max():.1f}])")
        if otb is not None:
            a = np.full(n, 1.0 / n)
            for it in (200, 500, 1000, 2000, 5000):
                t0 = time.perf_counter()
                out = otb.solve_batch(cost, reg=reg, max_iter=it, tol=0.0,
                                      method="log_sinkhorn")
                t_p = time.perf_counter() - t0
                P = np.asarray(out.plan)
                e = max(err_of(P[k], a, a) for k in range(B))
                if e <= 1e-6:
                    break
            line += f" | POT solve_batch {it} it {t_p:.3f} s max err {e:.1e} ({t_p / t_b:.1f}x)"
        print(line, flush=True)


def batch_small_reg(args):
    rng = np.random.default_rng(0)
    B, n = 200, 64
    x, y = rng.random((B, n, 2)), rng.random((B, n, 2))
    cost = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
    for reg in (0.05, 0.01, 2e-3, 5e-4):
        ottools.sinkhorn(None, None, cost[:4], reg)
        tb, tl = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = ottools.sinkhorn(None, None, cost, reg)
            tb.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ones = [ottools.sinkhorn(None, None, cost[k], reg) for k in range(B)]
            tl.append(time.perf_counter() - t0)
        same = all(o.nit == res.nit[k] and np.array_equal(o.plan, res.plan[k])
                   for k, o in enumerate(ones))
        newton = sum("newton" in o.stages for o in ones)
        anneal = sum("anneal" in o.stages for o in ones)
        print(f"B={B} n={n} reg={reg:g}: annealed {anneal}, Newton stage {newton}; batch "
              f"{np.median(tb):.4f} s [{min(tb):.4f}-{max(tb):.4f}] | loop "
              f"{np.median(tl):.4f} s [{min(tl):.4f}-{max(tl):.4f}] "
              f"({np.median(tl) / np.median(tb):.1f}x) | all converged "
              f"{bool(res.success.all())}, batch == loop {same}", flush=True)


def torch_bench(args):
    import math

    import torch

    import ottools.torch as ott
    rng = np.random.default_rng(0)
    B, N, D, reg = 32, 1024, 3, 0.01
    x = torch.tensor(rng.random((B, N, D)), dtype=torch.float32)
    y = torch.tensor(rng.random((B, N, D)) + 0.1, dtype=torch.float32)

    def ours():
        xx = x.clone().requires_grad_()
        loss = ott.sinkhorn_loss(xx, y, reg=reg, tol=1e-5)
        loss.sum().backward()
        return loss.detach().numpy()

    ours()
    t_o, lo, hi, val = med(ours, args.repeat)
    line = f"torch (B={B}, N={N}, D={D}) float32 fwd+bwd: ottools {t_o:.2f} s [{lo:.2f}-{hi:.2f}]"
    try:
        from geomloss import SamplesLoss
    except ImportError:
        SamplesLoss = None
    if SamplesLoss is not None:
        s = math.sqrt(2.0)
        for scaling in (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99):
            loss_fn = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(reg), scaling=scaling,
                                  debias=True, backend="tensorized")

            def peer():
                xx = (x * s).clone().requires_grad_()
                loss = loss_fn(xx, y * s)
                loss.sum().backward()
                return loss.detach().numpy()

            gv = peer()
            if np.max(np.abs(gv - val) / np.abs(val)) <= 1e-6 or scaling == 0.99:
                t_g, _, _, _ = med(peer, args.repeat)
                acc = float(np.max(np.abs(gv - val) / np.abs(val)))
                line += (f" | GeomLoss scaling {scaling} {t_g:.2f} s (value rel. diff "
                         f"{acc:.1e}) ratio {t_g / t_o:.1f}x")
                break
    print(line, flush=True)
    n = 20_000
    xs = torch.tensor(rng.random((n, D)), dtype=torch.float32, requires_grad=True)
    ys = torch.tensor(rng.random((n, D)) + 0.1, dtype=torch.float32)
    t0 = time.perf_counter()
    loss = ott.sinkhorn_loss(xs, ys, reg=reg * 3, tol=1e-5)
    loss.backward()
    print(f"single pair N={n} float32 (dense arrays would need "
          f"{3 * 4 * n * n / 2**30:.1f} GiB per problem: online): {time.perf_counter() - t0:.1f} s, "
          f"value {loss.item():.6g}", flush=True)


def online_small(args):
    rng = np.random.default_rng(0)
    for n in args.n:
        for d in (2, 10):
            x, y = rng.random((n, d)), rng.random((n, d))
            geom = ottools.PointCloud(x, y, scale="max")
            small = ottools.PointCloud(x[:700], y[:700], scale="max")
            ottools.sinkhorn(None, None, small, 1e-4)  # compile, parallel kernels too
            ottools.sinkhorn(None, None, small.dense(), 1e-4)
            for reg in (1e-3, 1e-4):
                line = f"n={n} d={d} reg={reg:g}:"
                t, lo, hi, res = med(lambda: ottools.sinkhorn(None, None, geom, reg),
                                     args.repeat)
                line += (f" online auto {t:.2f} s [{lo:.2f}-{hi:.2f}] nit {res.nit} "
                         f"(newton {res.nit_newton}) err {res.err:.1e} ok {res.success}")
                if n <= args.dense_max:
                    C = geom.dense()
                    td, _, _, rd = med(lambda: ottools.sinkhorn(None, None, C, reg),
                                       args.repeat)
                    line += (f" | dense auto {td:.2f} s nit {rd.nit} err {rd.err:.1e} "
                             f"ok {rd.success} |fun diff| {abs(rd.fun - res.fun):.1e}")
                    del C
                t0 = time.perf_counter()
                rs = ottools.sinkhorn(None, None, geom, reg, maxiter=args.sweep_cap,
                                      options={"newton": False})
                ts = time.perf_counter() - t0
                line += (f" | online sweeps only {ts:.2f} s nit {rs.nit} err {rs.err:.1e} "
                         f"ok {rs.success}")
                if rs.success:
                    line += f" ({ts / t:.1f}x)"
                print(line, flush=True)


def small_pairs(args):
    from ottools._divergence import divergence_value_and_grad

    rng = np.random.default_rng(0)
    B, N, reg = 256, 64, 0.05
    x, y = rng.random((B, N, 2)), rng.random((B, N, 2))
    need = (True, False, False, False)

    def ours():
        return divergence_value_and_grad(x, y, reg=reg, need=need)

    value = ours()[0]
    peer = None
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        from ott.geometry import pointcloud
        from ott.tools import sinkhorn_divergence
    except ImportError as exc:
        print(f"OTT-JAX not importable ({exc}): ottools only", flush=True)
    else:
        xj, yj = jax.numpy.asarray(x), jax.numpy.asarray(y)
        for thr in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
            def div(a, b, thr=thr):
                return sinkhorn_divergence.sinkhorn_divergence(
                    pointcloud.PointCloud, a, b, epsilon=reg,
                    solve_kwargs={"threshold": thr, "max_iterations": 5000})[0]
            fn = jax.jit(jax.vmap(jax.value_and_grad(div)))
            v = np.asarray(jax.block_until_ready(fn(xj, yj))[0])
            rel = float(np.max(np.abs(v - value) / np.abs(value)))
            if rel <= 1e-6:
                peer = (thr, rel, lambda fn=fn: jax.block_until_ready(fn(xj, yj)))
                break
    ts, tp = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ours()
        ts.append(time.perf_counter() - t0)
        if peer is not None:
            t0 = time.perf_counter()
            peer[2]()
            tp.append(time.perf_counter() - t0)
    line = (f"B={B} N={N} d=2 float64: ottools {np.median(ts):.3f} s "
            f"[{min(ts):.3f}-{max(ts):.3f}]")
    if peer is not None:
        line += (f" | OTT-JAX vmap threshold {peer[0]:g} (values within {peer[1]:.1e}) "
                 f"{np.median(tp):.3f} s [{min(tp):.3f}-{max(tp):.3f}] "
                 f"({np.median(tp) / np.median(ts):.1f}x)")
    print(line, flush=True)
    # The NumPy API on the same batch: values only, one call against a loop over pairs.
    ottools.sinkhorn_divergence(x[:2], y[:2], reg=reg)
    tb, tl = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = ottools.sinkhorn_divergence(x, y, reg=reg)
        tb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ones = [ottools.sinkhorn_divergence(x[k], y[k], reg=reg).fun for k in range(B)]
        tl.append(time.perf_counter() - t0)
    rel = float(np.max(np.abs(res.fun - ones) / np.abs(ones)))
    print(f"sinkhorn_divergence on (B={B}, N={N}, 2): one call {np.median(tb):.4f} s "
          f"[{min(tb):.4f}-{max(tb):.4f}] | loop over pairs {np.median(tl):.4f} s "
          f"[{min(tl):.4f}-{max(tl):.4f}] ({np.median(tl) / np.median(tb):.1f}x; values "
          f"within {rel:.1e})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["online", "online-50k", "online-small", "batch",
                                     "batch-small-reg", "torch", "small-pairs"])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 20_000])
    ap.add_argument("--big", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pot-full", type=int, default=10_000,
                    help="online: above this n, POT is timed over 10 iterations and "
                         "extrapolated")
    ap.add_argument("--peers", default="pot,ott,geomloss",
                    help="online: peers besides POT (ott: OTT-JAX, when installed)")
    ap.add_argument("--sweep-cap", type=int, default=1000,
                    help="online-small: most sweeps of the sweeps-only run")
    ap.add_argument("--dense-max", type=int, default=10_000,
                    help="online-small: largest n also solved on the dense cost")
    args = ap.parse_args()
    {"online": online, "online-50k": online_50k, "online-small": online_small,
     "batch": batch, "batch-small-reg": batch_small_reg, "torch": torch_bench,
     "small-pairs": small_pairs}[args.what](args)


if __name__ == "__main__":
    main()
