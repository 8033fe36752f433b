"""Exact OT: ottools.emd against POT's ot.emd (single thread), cold and warm started.

Usage (from the repository root; timing jobs must not overlap)::

    flock /tmp/ottools-bench.lock env PYTHONPATH=. python benchmarks/emd_speed.py
    flock /tmp/ottools-bench.lock env PYTHONPATH=. python benchmarks/emd_speed.py \\
        --n 1000 4000 10000 --repeat 3

Problem: ``common.uniform_2d_problem(n)`` (n = m uniform points in the unit square,
squared Euclidean cost divided by its max, uniform weights). Per n, the solvers run
round-robin ``--repeat`` times in this one process (medians and min-max; the ratios
hold on a busy machine because both sides see the same load):

- ``POT``: ``ot.emd(a, b, M, numItermax=10**9)`` (POT's network simplex is single
  threaded; its result code is checked to be optimal);
- ``cold``: ``ottools.emd(a, b, M)``;
- ``warm (sinkhorn)``: ``ottools.sinkhorn(a, b, M, reg, tol=sinkhorn_tol)`` then
  ``ottools.emd(..., init=(f, g))``: both times are shown, and the total;
- ``POT warm``: ``ot.emd(..., potentials_init=(f, g))`` from the same potentials;
- ``warm (optimal duals)``: ``init`` = the potentials of the cold solve, the best a warm
  start can give (re-solves with a nearby cost get close to it).

The objectives are compared (relative difference to POT's). Ratios are POT time /
ottools time (> 1: ottools faster).
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmarks"))
from common import uniform_2d_problem  # noqa: E402

import ottools  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def stats(ts):
    ts = np.asarray(ts)
    return f"{np.median(ts):8.3f} [{ts.min():.3f}-{ts.max():.3f}]"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1000, 4000])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--reg", type=float, default=1e-3,
                   help="sinkhorn reg for the entropic warm start (cost max is 1)")
    p.add_argument("--sinkhorn-tol", type=float, default=1e-3)
    p.add_argument("--no-pot-warm", action="store_true")
    args = p.parse_args()
    import ot

    warm_up = uniform_2d_problem(20)
    ottools.emd(*warm_up)  # compile / load the cached kernels
    ottools.sinkhorn(*warm_up, 0.1)
    print(f"ottools {ottools.__version__}, POT {ot.__version__}; sinkhorn warm start: "
          f"reg={args.reg:g}, tol={args.sinkhorn_tol:g}; medians [min-max] of "
          f"{args.repeat} runs, seconds")
    for n in args.n:
        a, b, cost = uniform_2d_problem(n)
        t = {k: [] for k in ("pot", "cold", "sink", "warm", "potwarm", "oracle")}
        for _ in range(args.repeat):
            dt, (_, log) = timed(lambda: ot.emd(a, b, cost, numItermax=10**9, log=True))
            assert log["result_code"] == 1, log["warning"]  # OPTIMAL
            t["pot"].append(dt)
            pot_cost = float(log["cost"])
            dt, cold = timed(lambda: ottools.emd(a, b, cost))
            assert cold.success
            t["cold"].append(dt)
            dt, ent = timed(lambda: ottools.sinkhorn(a, b, cost, args.reg,
                                                     tol=args.sinkhorn_tol))
            t["sink"].append(dt)
            dt, warm = timed(lambda: ottools.emd(a, b, cost, init=(ent.f, ent.g)))
            assert warm.success
            t["warm"].append(dt)
            if not args.no_pot_warm:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    dt, (_, wlog) = timed(lambda: ot.emd(
                        a, b, cost, numItermax=10**9, log=True,
                        potentials_init=(ent.f.astype(float), ent.g.astype(float))))
                assert wlog["result_code"] == 1
                t["potwarm"].append(dt)
            dt, oracle = timed(lambda: ottools.emd(a, b, cost, init=(cold.f, cold.g)))
            t["oracle"].append(dt)
        med = {k: float(np.median(v)) if v else np.nan for k, v in t.items()}
        agree = max(abs(r.fun - pot_cost) / pot_cost for r in (cold, warm, oracle))
        print(f"\nn = m = {n}: objective {pot_cost:.15g}, max relative difference to "
              f"POT {agree:.1e}; pivots cold {cold.nit}, warm {warm.nit}, "
              f"optimal duals {oracle.nit}; plan nnz {cold.plan.nnz} (<= {2 * n - 1})")
        print(f"  {'POT ot.emd':<34}{stats(t['pot'])}")
        print(f"  {'ottools cold':<34}{stats(t['cold'])}   POT/ottools "
              f"{med['pot'] / med['cold']:.2f}x")
        print(f"  {'sinkhorn (warm-start potentials)':<34}{stats(t['sink'])}   "
              f"nit {ent.nit}")
        print(f"  {'ottools warm (emd only)':<34}{stats(t['warm'])}   POT/ottools "
              f"{med['pot'] / med['warm']:.2f}x, "
              f"cold/warm {med['cold'] / med['warm']:.2f}x")
        total = med["sink"] + med["warm"]
        print(f"  {'ottools warm incl. sinkhorn':<34}{total:8.3f}   cold/(sinkhorn+warm) "
              f"{med['cold'] / total:.2f}x")
        if not args.no_pot_warm:
            print(f"  {'POT warm (potentials_init)':<34}{stats(t['potwarm'])}   "
                  f"POT warm/ottools warm {med['potwarm'] / med['warm']:.2f}x")
        print(f"  {'ottools warm (optimal duals)':<34}{stats(t['oracle'])}   "
              f"cold/warm {med['cold'] / med['oracle']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
