"""Float32 sweeps for float64 problems (``options["float32_sweeps"]``) against float64
sweeps, in one process, alternating: ``sinkhorn`` (balanced and unbalanced) and
``sinkhorn_divergence`` on n uniform points in [0, 1]^2 against n others (the cost
divided by its max for ``sinkhorn``), at equal ``tol``. Reports medians [min-max] of
``--repeat`` runs after one untimed run of each, the iteration counts and the relative
difference of the results (each solve is within ``tol`` of the solution, so they differ
by about ``tol``).

    flock /tmp/ottools-bench.lock python benchmarks/float32_sweeps.py --n 4000 --repeat 7
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
import ottools  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--reg", type=float, nargs="+", default=[1e-2, 1e-3])
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.n
    rng = np.random.default_rng(0)
    x, y = rng.random((n, 2)), rng.random((n, 2))
    cost = ottools.cost_matrix(x, y)
    cost /= cost.max()
    a = np.full(n, 1.0 / n)
    cases = []
    for reg in args.reg:
        cases.append((f"sinkhorn balanced reg={reg:g}",
                      lambda o, reg=reg: ottools.sinkhorn(a, a, cost, reg, tol=args.tol,
                                                          options=o)))
        cases.append((f"sinkhorn reg_m=1 (masses 1, 1.5) reg={reg:g}",
                      lambda o, reg=reg: ottools.sinkhorn(a, 1.5 * a, cost, reg, reg_m=1.0,
                                                          tol=args.tol, options=o)))
        for rm in (None, 1.0):
            cases.append((f"sinkhorn_divergence reg_m={rm} reg={reg:g}",
                          lambda o, reg=reg, rm=rm: ottools.sinkhorn_divergence(
                              x, y + 0.1, reg=reg, reg_m=rm, tol=args.tol, options=o)))
    for name, run in cases:
        times = {False: [], True: []}
        out = {}
        for low in (False, True):  # compiles, or loads from Numba's cache, each kernel
            run({"float32_sweeps": low})
        for _ in range(args.repeat):
            for low in (False, True):
                t0 = time.perf_counter()
                out[low] = run({"float32_sweeps": low})
                times[low].append(time.perf_counter() - t0)
        r64, r32 = out[False], out[True]
        t64, t32 = np.median(times[False]), np.median(times[True])
        if getattr(r64, "plan", None) is not None:
            diff = np.abs(r32.plan - r64.plan).sum() / np.abs(r64.plan).sum()
            what = "plan"
        else:
            diff = abs(r32.fun - r64.fun) / abs(r64.fun)
            what = "value"
        print(f"n={n} {name}: float64 {t64:.3f} s [{min(times[False]):.3f}-"
              f"{max(times[False]):.3f}] nit {r64.nit} | float32 first {t32:.3f} s "
              f"[{min(times[True]):.3f}-{max(times[True]):.3f}] nit {r32.nit} | "
              f"{t64 / t32:.2f}x | {what} diff {diff:.1e} | success {r32.success}",
              flush=True)


if __name__ == "__main__":
    main()
