"""Unbalanced `auto` on a grid of problems: iterations, Newton steps and failures.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/unbalanced_grid.py            # default options
    PYTHONPATH=. python benchmarks/unbalanced_grid.py --no-newton  # sweeps only

Problems: n points uniform in [0, 1]^d against n others shifted by 0.1, squared Euclidean
cost divided by its max, random row weights of mass 1 against uniform column weights of
mass 1.3; n, d in (300, 2), (1000, 2), (1000, 10), (500, 5), seeds 0-2, reg in 1e-1,
3e-2, 1e-2, 3e-3, 1e-3, reg_m in 0.1, 1, 10; tol 1e-8, maxiter 10,000. Prints one line per
solve that did not converge and the totals.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ottools  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-newton", action="store_true", help="options={'newton': False}")
    args = ap.parse_args()
    opts = {"newton": False} if args.no_newton else {}
    total = newton = fails = count = 0
    worst = (0, None)
    t = 0.0
    for n, d in ((300, 2), (1000, 2), (1000, 10), (500, 5)):
        for seed in range(3):
            rng = np.random.default_rng(seed)
            x, y = rng.random((n, d)), rng.random((n, d)) + 0.1
            cost = ottools.cost_matrix(x, y)
            cost /= cost.max()
            a = rng.random(n) + 0.1
            a /= a.sum()
            b = np.full(n, 1.3 / n)
            for reg in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3):
                for reg_m in (0.1, 1.0, 10.0):
                    t0 = time.perf_counter()
                    res = ottools.sinkhorn(a, b, cost, reg, reg_m=reg_m, tol=1e-8,
                                           options=opts)
                    t += time.perf_counter() - t0
                    count += 1
                    total += res.nit
                    newton += res.nit_newton
                    key = (n, d, seed, reg, reg_m)
                    if res.nit > worst[0]:
                        worst = (res.nit, key)
                    if not res.success:
                        fails += 1
                        print(f"n={n} d={d} seed={seed} reg={reg:g} reg_m={reg_m:g}: "
                              f"status {res.status}, {res.nit} iterations, err {res.err:.1e}",
                              flush=True)
    print(f"{count} solves: {total} iterations ({newton} Newton steps), {fails} not "
          f"converged, most iterations {worst[0]} at (n, d, seed, reg, reg_m) = {worst[1]}; "
          f"{t:.1f} s")


if __name__ == "__main__":
    main()
