"""Sparsity-constrained OT: time and dual value of ottools vs POT at n = m = 1000, k = 2.

Problem (issue 5): uniform 2-D points, squared Euclidean cost divided by its max,
uniform weights, reg (gamma) = 0.1, max_nz = 2. POT runs once per formulation (about
20-120 s each, depending on the machine's load) with its defaults (500 L-BFGS-B
iterations, stopThr=1e-9); ottools runs with the smallest ``maxiter`` (to within 10,
found by bisection) at which its dual value is at least POT's, median of ``--repeat``
runs. Prints the ratio POT time / ottools time.

    PYTHONPATH=. python benchmarks/sparse_speed.py [--n 1000] [--repeat 5]
"""

import argparse
import contextlib
import io
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "benchmarks"))
from common import uniform_2d_problem  # noqa: E402

import ottools  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--reg", type=float, default=0.1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--pot-single-blas", action="store_true",
                   help="run POT with BLAS limited to one thread (threadpoolctl), as "
                        "ottools runs L-BFGS-B; separates BLAS oversubscription from "
                        "the objective's cost")
    args = p.parse_args()
    import ot

    a, b, cost = uniform_2d_problem(args.n)
    ottools.sparsity_constrained_ot(a[:5], b[:5], cost[:5, :5], args.reg, args.k)  # compile
    pot = {"semi-dual": ot.smooth.smooth_ot_semi_dual, "dual": ot.smooth.smooth_ot_dual}
    print(f"n = m = {args.n}, k = {args.k}, reg = {args.reg}, "
          f"POT BLAS single-threaded: {args.pot_single_blas}")
    print(f"{'formulation':<11} {'POT s':>8} {'POT dual':>22} {'ottools s':>10} "
          f"{'ottools dual':>22} {'nit':>5} {'ratio':>7}")
    for form, fn in pot.items():
        limit = contextlib.nullcontext()
        if args.pot_single_blas:
            from threadpoolctl import threadpool_limits
            limit = threadpool_limits(limits=1, user_api="blas")
        t = time.perf_counter()
        with limit, contextlib.redirect_stdout(io.StringIO()):  # POT prints per call
            _, log = fn(a, b, cost, args.reg, reg_type="sparsity_constrained",
                        max_nz=args.k, log=True)
        t_pot = time.perf_counter() - t
        v_pot = -float(log["res"].fun)
        def reaches(maxiter):
            res = ottools.sparsity_constrained_ot(a, b, cost, args.reg, args.k,
                                                  formulation=form, tol=0.0,
                                                  maxiter=maxiter)
            return res.dual_value >= v_pot or res.status != 1

        maxiter = int(log["res"].nit)
        while not reaches(maxiter):
            maxiter += 10
        lo = 0  # fewest iterations (to within 10) that reach POT's dual value
        while maxiter - lo > 10:
            mid = (lo + maxiter) // 2
            if reaches(mid):
                maxiter = mid
            else:
                lo = mid
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            res = ottools.sparsity_constrained_ot(a, b, cost, args.reg, args.k,
                                                  formulation=form, tol=0.0,
                                                  maxiter=maxiter)
            times.append(time.perf_counter() - t)
        t_ours = float(np.median(times))
        print(f"{form:<11} {t_pot:8.2f} {v_pot:22.17g} {t_ours:10.3f} "
              f"{res.dual_value:22.17g} {res.nit:5d} {t_pot / t_ours:7.1f}x", flush=True)


if __name__ == "__main__":
    main()
