"""Newton steps on near-permutation plans: the direct solve of the Newton system against
conjugate gradients alone.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/newton_direct.py                # n = 500, 1000, 2000
    PYTHONPATH=. python benchmarks/newton_direct.py --n 1000 --repeat 5

Problem: the Monge gap of an optimal map, ``x`` standard normal in 2-D and
``T(x) = 1.2 x + 0.1`` (the gradient of a convex function, so the identity coupling is
optimal), ``ottools.monge_gap(x, T(x), reg=1e-3)`` (``reg`` about 1.5e-5 of the cost's
range): the entropic plan is nearly a permutation and its sparsified Newton matrix has
weakly linked blocks. Both variants run ``sinkhorn``'s default ``method="auto"``
(annealed sweeps, then Newton steps), one with the default ``direct_after = 200`` (a
sparse LU factorization of the Schur complement once 200 CG iterations did not reach
``cg_tol``), one with ``direct_after = None`` (CG only, up to ``cg_maxiter = 10 (n + m)``
per step: the behaviour before the direct solve). They run round-robin ``--repeat``
times in this process (the first, untimed call compiles); the table gives the median
time (min-max), the Newton steps, the relative marginal error each reached and the
relative difference of the two values.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ottools  # noqa: E402


def problem(n, seed=1):
    x = np.random.default_rng(seed).normal(size=(n, 2))
    return x, 1.2 * x + 0.1


def run(x, tx, direct_after):
    t = time.perf_counter()
    res = ottools.monge_gap(x, tx, reg=1e-3, options={"direct_after": direct_after})
    return time.perf_counter() - t, res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[500, 1000, 2000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    run(*problem(100), 200)
    run(*problem(100), None)
    print(f"{'n':>6} {'variant':>12} {'time s (min-max)':>24} {'newton':>7} {'err':>9}")
    for n in args.n:
        x, tx = problem(n)
        times = {200: [], None: []}
        out = {}
        for _ in range(args.repeat):
            for variant in (200, None):
                dt, res = run(x, tx, variant)
                times[variant].append(dt)
                out[variant] = res
        for variant in (200, None):
            ts, res = times[variant], out[variant]
            inner = res.ot_result
            name = "direct 200" if variant else "CG only"
            print(f"{n:>6} {name:>12} {statistics.median(ts):>9.3f} "
                  f"({min(ts):.3f}-{max(ts):.3f}) {inner.nit_newton:>7d} "
                  f"{inner.err:>9.1e}{'' if inner.success else '  not converged'}")
        a, b = out[200].fun, out[None].fun
        ratio = statistics.median(times[None]) / statistics.median(times[200])
        print(f"{n:>6} CG only / direct: {ratio:.1f}x; values differ by "
              f"{abs(a - b) / abs(b):.1e} (relative)")


if __name__ == "__main__":
    main()
