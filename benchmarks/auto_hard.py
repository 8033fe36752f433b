"""``sinkhorn(method="auto")`` on structured problems where its stages used to struggle,
and on the uniform grid, against its previous settings, in one run.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/auto_hard.py                 # n = 1000, 3 rounds
    PYTHONPATH=. python benchmarks/auto_hard.py --n 2000 --repeat 5 --only clusters

Problems (squared Euclidean costs but ``w1``, uniform weights, tol 1e-9, float64):

- ``grid``: n uniform points in [0, 1]^d for each measure (d = 2, 10), the cost divided
  by its max, reg 1e-3 and 1e-4 (the problems of ``benchmarks/auto_grid.py``), and 2-D
  at 1e-6;
- ``clusters``: 6 Gaussian clusters in 5-D (centres 10 apart, spread 0.3), the targets'
  cluster masses 0.4, 0.3, 0.1, 0.1, 0.05, 0.05 against equal ones, reg 1e-2 and 1e-3
  (6.7e-6 and 6.7e-7 of the cost's range);
- ``nearperm``: x standard normal in 2-D against its image by the optimal map
  ``1.2 x + 0.1`` (the Monge gap's plan), reg 1e-3 (1.5e-5 of the range);
- ``1-D``: n standard normal points against n others times 1.5 plus 0.3 (sorted),
  reg 6e-8 of the cost's range;
- ``outlier``: two standard normal clouds in 2-D, one target moved to (1000, 1000),
  reg 1e-2, the cost and its transpose;
- ``w1``: the Euclidean (not squared) cost of n uniform points in [0, 1]^2 against n
  others, divided by its max, reg 1e-4 and 3e-4 (its entropic plan splits into weakly
  coupled blocks: the annealing levels end far from balanced);
- ``hist``: histograms on a regular grid of n points in [0, 1] (spacing h), a mixture of
  two Gaussian bumps (widths 0.05 and 0.1) against one (0.08), so that the weights span
  about 85 orders of magnitude, reg 0.3, 1 and 10 times h**2.

Settings, round-robin in this process (the first, untimed calls compile):

- ``now``: the defaults;
- ``before``: session 26's Newton steps, ``peak_tol = 1`` (the sparsified plan keeps
  each row's and column's largest entry only, below the mass rule's threshold), the
  gauge of every step at the heaviest column, the first one for uniform weights
  (``NewtonStage._gauge`` replaced for these calls), and no second factorization
  holding a column of each singular block after a zero pivot (``_sns._DIRECT_SINGULAR
  = -1``); or with ``--before
  JSON`` these options instead and today's code (``'{"anneal_sweeps_max": 3,
  "anneal_newton": false, "direct_after": null, "peak_tol": 1}'``: session 25's
  settings, but the gauge and the held columns).

The table gives the median time (min-max), iterations, Newton steps, whether both
converged, the ratio of the medians and the relative difference of the values.
"""

import argparse
import json
import os
import statistics
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ottools  # noqa: E402

SETTINGS = {"now": None, "before": {"peak_tol": 1.0}}
HEAVIEST_GAUGE = [True]  # "before" runs session 26's gauge and direct solves


def _heaviest(stage, indices):
    return int(np.argmax(stage.run.prob.bc))


def grid(n, d):
    rng = np.random.default_rng(0)
    cost = ottools.cost_matrix(rng.random((n, d)), rng.random((n, d)))
    return cost / cost.max()


def clusters(n):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 5)) * 10
    x = centres[rng.integers(0, 6, n)] + rng.normal(size=(n, 5)) * 0.3
    y = (centres[rng.choice(6, n, p=[.4, .3, .1, .1, .05, .05])]
         + rng.normal(size=(n, 5)) * 0.3)
    return ottools.cost_matrix(x, y)


def nearperm(n):
    x = np.random.default_rng(1).normal(size=(n, 2))
    return ottools.cost_matrix(x, 1.2 * x + 0.1)


def oned(n):
    rng = np.random.default_rng(0)
    x, y = np.sort(rng.normal(size=n)), np.sort(rng.normal(size=n) * 1.5 + 0.3)
    return ottools.cost_matrix(x[:, None], y[:, None])


def outlier(n):
    rng = np.random.default_rng(zlib.crc32(b"outlier"))
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    y[0] = [1e3, 1e3]
    return ottools.cost_matrix(x, y)


def w1(n):
    rng = np.random.default_rng(0)
    cost = ottools.cost_matrix(rng.random((n, 2)), rng.random((n, 2)), "euclidean")
    return cost / cost.max()


def hist(n):
    t = np.linspace(0.0, 1.0, n)
    a = np.exp(-((t - 0.3) / 0.05) ** 2) + 0.5 * np.exp(-((t - 0.7) / 0.1) ** 2)
    b = np.exp(-((t - 0.6) / 0.08) ** 2)
    return a / a.sum(), b / b.sum(), ottools.cost_matrix(t, t)


def cases(n, only):
    out = []
    if only in (None, "grid"):
        for d in (2, 10):
            for reg in (1e-3, 1e-4):
                out.append((f"grid d={d}", reg, lambda d=d: grid(n, d)))
        out.append(("grid d=2", 1e-6, lambda: grid(n, 2)))
    if only in (None, "clusters"):
        for reg in (1e-2, 1e-3):
            out.append(("clusters", reg, lambda: clusters(n)))
    if only in (None, "nearperm"):
        out.append(("nearperm", 1e-3, lambda: nearperm(n)))
    if only in (None, "1-D"):
        out.append(("1-D", 6e-8, lambda: oned(n)))
    if only in (None, "outlier"):
        out.append(("outlier", 1e-2, lambda: outlier(n)))
        out.append(("outlier.T", 1e-2, lambda: np.ascontiguousarray(outlier(n).T)))
    if only in (None, "w1"):
        for reg in (1e-4, 3e-4):
            out.append(("w1", reg, lambda: w1(n)))
    if only in (None, "hist"):
        for q in (0.3, 1.0, 10.0):
            out.append(("hist", q / (n - 1) ** 2, lambda: hist(n)))
    return out


def solve(cost, reg, options, a=None, b=None, before=False):
    from ottools import _sns

    gauge, singular = _sns.NewtonStage._gauge, _sns._DIRECT_SINGULAR
    if before and HEAVIEST_GAUGE[0]:
        _sns.NewtonStage._gauge = _heaviest
        _sns._DIRECT_SINGULAR = -1.0
    try:
        t = time.perf_counter()
        res = ottools.sinkhorn(a, b, cost, reg, tol=1e-9, options=options)
        return time.perf_counter() - t, res
    finally:
        _sns.NewtonStage._gauge, _sns._DIRECT_SINGULAR = gauge, singular


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["grid", "clusters", "nearperm", "1-D", "outlier",
                                       "w1", "hist"])
    ap.add_argument("--before", type=json.loads, default=None,
                    help="the options of the 'before' setting, as JSON")
    args = ap.parse_args(argv)
    if args.before is not None:
        SETTINGS["before"] = args.before
        HEAVIEST_GAUGE[0] = False
    for key, options in SETTINGS.items():
        solve(nearperm(100), 1e-3, options, before=key == "before")
        solve(grid(100, 2), 1e-4, options, before=key == "before")
    print(f"{'problem':>10} {'reg':>6} {'setting':>7} {'time s (min-max)':>24} "
          f"{'nit':>6} {'newton':>6}  ok")
    for name, reg, make in cases(args.n, args.only):
        cost, a, b = make(), None, None
        if name == "hist":
            a, b, cost = cost
        if name == "1-D":
            reg *= float(cost.max() - cost.min())  # a fraction of the range
        times = {k: [] for k in SETTINGS}
        last = {}
        for _ in range(args.repeat):
            for key, options in SETTINGS.items():
                dt, res = solve(cost, reg, options, a, b, before=key == "before")
                times[key].append(dt)
                last[key] = res
        for key in SETTINGS:
            ts, res = times[key], last[key]
            print(f"{name:>10} {reg:>6.0e} {key:>7} {statistics.median(ts):>9.3f} "
                  f"({min(ts):.3f}-{max(ts):.3f}) {res.nit:>6d} {res.nit_newton:>6d}  "
                  f"{'yes' if res.success else 'NO'}")
        ratio = statistics.median(times["before"]) / statistics.median(times["now"])
        a, b = last["now"].fun, last["before"].fun
        print(f"{'':>10} {'':>6} before / now: {ratio:.2f}x, values differ by "
              f"{abs(a - b) / abs(b):.1e} (relative)")


if __name__ == "__main__":
    main()
