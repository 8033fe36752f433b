"""``sinkhorn(method="auto")`` on the grid of hard and easy problems, against its
predecessor, POT and GeomLoss, at equal accuracy.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/auto_grid.py                  # n = 1000, both d, all reg
    PYTHONPATH=. python benchmarks/auto_grid.py --n 4000 --repeat 3
    PYTHONPATH=. python benchmarks/auto_grid.py --peers pot,geomloss

Problem: n points uniform in [0, 1]^d for each measure (d = 2 and 10), squared Euclidean
cost divided by its max, uniform weights, reg in {1e-1, 1e-2, 1e-3, 1e-4}. Every
solver runs round-robin ``--repeat`` times in this process; the table gives medians (and
min-max) of the time to ``err <= 1e-6`` (relative L1 marginal error computed by us on
every plan), and the ratios to ottools in the same run:

- ``auto``: ``ottools.sinkhorn(method="auto")`` (epsilon-scaling, over-relaxed sweeps,
  Newton finish).
- ``relaxed log``: the previous default, over-relaxed log-stable sweeps without
  epsilon-scaling or Newton steps (``method="log", options={"overrelaxation": True}``).
- POT: ``ot.sinkhorn`` with ``method="sinkhorn"`` (scaling) and ``"sinkhorn_log"``,
  which iterate plain Sinkhorn: they need the iterations our plain ``method="log"`` needs
  to reach the same err (the same iterates), ``N``. Each POT method is timed for 20
  iterations and charged ``N`` times its time per iteration (marked ``*``: extrapolated;
  a method whose plan under/overflows is skipped). When plain Sinkhorn itself would run
  past ``--plain-cap`` iterations, ``N`` is extrapolated from the rate of its last 1000
  iterations (marked ``**``).
- OTT-JAX (``--peers ott``): ``ott.solvers.linear.sinkhorn.Sinkhorn(threshold=1e-6)``
  on a ``PointCloud`` of the scaled points, float64, jitted (compiled before timing);
  its plan's err is checked with ours; a run that does not converge within
  ``--ott-cap`` iterations is reported with its time (a lower bound).
- GeomLoss: ``SamplesLoss("sinkhorn", p=2, blur=sqrt(reg), debias=False)`` on the points
  scaled by ``sqrt(2 / max C)`` (GeomLoss's cost is ``|x - y|^2 / 2`` and its epsilon
  ``blur**p``), so that its value is our entropic cost ``fun``; the fastest ``scaling``
  in 0.9, 0.99, 0.995, 0.999, 0.9995 whose value is within 1e-6 (relative) of ours is reported (GeomLoss
  has no marginal tolerance: its accuracy is set by the number of epsilon steps). The
  scalings are tried in increasing order; once a run that missed our value took more than
  ``--geomloss-budget`` times auto's time, the search stops and that run's time is
  reported as a lower bound (a larger scaling runs more epsilon levels, one symmetric
  update each, so it costs more).
"""

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ottools  # noqa: E402

TOL = 1e-6


def problem(n, d, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, d)), rng.random((n, d))
    cost = ottools.cost_matrix(x, y)
    cmax = float(cost.max())
    return x, y, cost / cmax, cmax


def marginal_error(P, a, b):
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()) / float(a.sum())


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def plain_iterations(a, cost, reg, cap):
    """Iterations plain Sinkhorn needs to err <= TOL: ``(N, extrapolated)``."""
    res = ottools.sinkhorn(a, a, cost, reg, method="log", tol=TOL, maxiter=cap)
    if res.success:
        return res.nit, False
    h = res.err_history[-1000:]
    h = h[np.isfinite(h) & (h > 0)]
    rate = (h[-1] / h[0]) ** (1.0 / max(h.size - 1, 1))
    if not rate < 1:
        return math.inf, True
    return res.nit + math.log(TOL / h[-1]) / math.log(rate), True


def pot_time(ot, method, a, cost, reg, n_iter):
    """POT's time for ``n_iter`` plain Sinkhorn iterations, from 20 timed iterations;
    None if its plan is not finite."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        P = ot.sinkhorn(a, a, cost, reg, method=method, numItermax=20, stopThr=0.0,
                        warn=False)
        t = time.perf_counter() - t0
    if not np.all(np.isfinite(P)) or not P.sum() > 0:
        return None
    return t / 20 * n_iter


def geomloss_solver(x, y, cmax, reg, ours_fun, scalings, t_ours, budget):
    """The fastest GeomLoss scaling whose value is within 1e-6 of ours.

    Returns ``(scaling, fn, None)``, or ``(None, None, (scaling, seconds, rel_err))``
    when no scaling reached our value: the last scaling tried, the time of its one run and
    its relative error. Scalings are tried in increasing order, and the search stops once
    a run that missed took more than ``budget`` times ``t_ours``: GeomLoss runs one
    symmetric update per epsilon level, and a larger scaling runs more levels, so any
    scaling that reaches our value costs at least that run (a lower bound)."""
    import torch
    from geomloss import SamplesLoss

    s = math.sqrt(2.0 / cmax)
    xt = torch.from_numpy(x * s)
    yt = torch.from_numpy(y * s)
    SamplesLoss("sinkhorn", p=2, blur=0.5, debias=False,
                backend="tensorized")(xt[:10], yt[:10])  # warm-up
    missed = None
    for scaling in scalings:
        loss = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(reg), scaling=scaling,
                           debias=False, backend="tensorized")
        t0 = time.perf_counter()
        val = float(loss(xt, yt))
        t = time.perf_counter() - t0
        rel = abs(val - ours_fun) / abs(ours_fun)
        if rel <= 1e-6:
            return scaling, lambda loss=loss: float(loss(xt, yt)), None
        missed = (scaling, t, rel)
        if t > budget * t_ours:
            break
    return None, None, missed


def ott_solver(x, y, cmax, reg, cap):
    """OTT-JAX's Sinkhorn (float64, jitted, PointCloud on the points scaled by
    ``1 / sqrt(max C)`` so that its squared Euclidean cost is ours, absolute epsilon,
    ``threshold = TOL`` on its marginal error, at most ``cap`` iterations):
    ``(fn, out)``, ``fn()`` a timed solve returning the plan."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    s = 1.0 / math.sqrt(cmax)
    geom = pointcloud.PointCloud(jax.numpy.asarray(x * s), jax.numpy.asarray(y * s),
                                 epsilon=reg)
    solver = sinkhorn.Sinkhorn(threshold=TOL, max_iterations=cap)
    run = jax.jit(lambda g: solver(linear_problem.LinearProblem(g)))
    out = run(geom)  # compile

    def fn():
        o = run(geom)
        o.f.block_until_ready()
        return o

    return fn, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000])
    ap.add_argument("--d", type=int, nargs="+", default=[2, 10])
    ap.add_argument("--reg", type=float, nargs="+", default=[1e-1, 1e-2, 1e-3, 1e-4])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers", default="relaxed,pot,geomloss")
    ap.add_argument("--ott-cap", type=int, default=3000,
                    help="iteration cap of OTT-JAX's Sinkhorn (the time to it is reported "
                         "when it does not converge: a lower bound)")
    ap.add_argument("--geomloss-budget", type=float, default=20.0,
                    help="stop raising GeomLoss's scaling once a run that missed our value "
                         "took this many times auto's time (reported as a lower bound)")
    ap.add_argument("--plain-cap", type=int, default=200_000,
                    help="iterations of plain Sinkhorn before extrapolating from its rate")
    ap.add_argument("--relaxed-cap", type=int, default=100_000,
                    help="iteration cap of the previous default (relaxed log)")
    args = ap.parse_args()
    peers = set(args.peers.split(","))
    ot = None
    if "pot" in peers:
        try:
            import ot
        except ImportError:
            print("POT not installed: skipped")
    has_geomloss = False
    if "geomloss" in peers:
        try:
            import geomloss  # noqa: F401
            has_geomloss = True
        except ImportError:
            print("GeomLoss not installed: skipped")
    has_ott = False
    if "ott" in peers:
        try:
            import ott  # noqa: F401
            has_ott = True
        except ImportError:
            print("OTT-JAX not installed: skipped")
    small = np.random.default_rng(1).random((40, 40))
    ottools.sinkhorn(None, None, small, 1e-3, tol=TOL)  # compile
    print(f"time to err <= {TOL:g} (relative L1 marginal error), median [min-max] of "
          f"{args.repeat}; ratio = peer / auto")
    for n in args.n:
        a = np.full(n, 1.0 / n)
        for d in args.d:
            x, y, cost, cmax = problem(n, d)
            for reg in args.reg:
                ottools.sinkhorn(a, a, cost, reg, tol=TOL)  # parallel kernels compiled
                runs = {"auto": lambda: ottools.sinkhorn(a, a, cost, reg, tol=TOL,
                                                         maxiter=100_000)}
                notes = {}
                if "relaxed" in peers:
                    runs["relaxed log"] = lambda: ottools.sinkhorn(
                        a, a, cost, reg, method="log", tol=TOL, maxiter=args.relaxed_cap,
                        options={"overrelaxation": True})
                ref = runs["auto"]()
                t_ref, _ = timed(runs["auto"])
                pot_rows = []
                if ot is not None:
                    N, extra = plain_iterations(a, cost, reg, args.plain_cap)
                    for method in ("sinkhorn", "sinkhorn_log"):
                        t = pot_time(ot, method, a, cost, reg, N)
                        mark = "**" if extra else "*"
                        pot_rows.append((f"POT {method} ({N:.0f} it){mark}", t))
                if has_ott:
                    fn, out = ott_solver(x, y, cmax, reg, args.ott_cap)
                    e = marginal_error(np.asarray(out.matrix), a, a)
                    if bool(out.converged) and e <= 1.5 * TOL:
                        runs[f"OTT-JAX ({int(out.n_iters)} it)"] = fn
                    else:
                        t_ott, _ = timed(fn)
                        notes["OTT-JAX"] = (f"not converged after {int(out.n_iters)} iterations "
                                            f"({t_ott:.2f} s, our err {e:.1e})")
                if has_geomloss:
                    sc, fn, missed = geomloss_solver(
                        x, y, cmax, reg, ref.fun, (0.9, 0.99, 0.995, 0.999, 0.9995),
                        t_ref, args.geomloss_budget)
                    if fn is not None:
                        runs[f"GeomLoss s={sc}"] = fn
                    else:
                        sc, t_miss, rel = missed
                        notes["GeomLoss"] = (
                            f"no scaling <= {sc} reached 1e-6 of our value (s={sc}: "
                            f"rel. error {rel:.1e} in {t_miss:.2f} s, one run): "
                            "x{:.1f} or more (lower bound)", t_miss)
                times = {k: [] for k in runs}
                results = {}
                for _ in range(args.repeat):
                    for k, fn in runs.items():
                        t, out = timed(fn)
                        times[k].append(t)
                        results[k] = out
                t_auto = float(np.median(times["auto"]))
                r = results["auto"]
                print(f"\nn={n} d={d} reg={reg:g}: auto status {r.status} nit {r.nit} "
                      f"(newton {r.nit_newton}, stages {'+'.join(r.stages)}) err {r.err:.1e}")
                for k, ts in times.items():
                    med = float(np.median(ts))
                    extra = ""
                    res = results[k]
                    if hasattr(res, "status"):
                        extra = f" status {res.status} nit {res.nit} err {res.err:.1e}"
                    print(f"  {k:32s} {med:9.3f} s [{min(ts):.3f}-{max(ts):.3f}]  "
                          f"x{med / t_auto:8.1f}{extra}")
                for k, t in pot_rows:
                    if t is None:
                        print(f"  {k:32s} plan under/overflows: not converging")
                    else:
                        print(f"  {k:32s} {t:9.3f} s (extrapolated)       x{t / t_auto:8.1f}")
                for k, v in notes.items():
                    if isinstance(v, tuple):  # a lower bound: its time over auto's
                        v = v[0].format(v[1] / t_auto)
                    print(f"  {k:32s} {v}")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
