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

``--cloud 10000`` measures memory instead: per n, three fresh processes (one at a time)
solve the same problem (n = m uniform points in the unit square, seed 0, squared
Euclidean cost divided by its max) and report wall time and peak resident memory
(``ru_maxrss``, which includes the interpreter and the libraries: about 160 MB with
ottools and its kernels loaded, 500 MB once POT has imported its backends), and the
peak's increment over the resident memory just before the solve:
``ottools.emd`` on an ``ottools.PointCloud`` (no n x m array), ``ottools.emd`` on the
dense cost, and POT's ``ot.emd`` on the dense cost (``ot.dist`` / its max). Each child
is run ``--repeat`` times (medians of the times; the largest peak)::

    flock /tmp/ottools-bench.lock env PYTHONPATH=. python benchmarks/emd_speed.py \\
        --cloud 10000 --repeat 3
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

import ottools  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def stats(ts):
    ts = np.asarray(ts)
    return f"{np.median(ts):8.3f} [{ts.min():.3f}-{ts.max():.3f}]"


def _child(mode, n):
    """One solve in this fresh process; prints a JSON line (time, peak RSS, result)."""
    import resource

    rng = np.random.default_rng(0)
    x, y = rng.random((n, 2)), rng.random((n, 2))
    ottools.emd(None, None, ottools.PointCloud(x[:20], y[:20]))  # load the kernels
    ottools.emd(None, None, np.ones((20, 20)))
    if mode == "pot":
        import ot  # noqa: F401  (its import is not counted in the solve's increment)
    with open("/proc/self/statm") as fh:
        before = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    t = time.perf_counter()
    if mode == "cloud":
        res = ottools.emd(None, None, ottools.PointCloud(x, y, scale="max"))
        fun, ok, nit = res.fun, res.success, res.nit
    elif mode == "dense":
        res = ottools.emd(None, None, ottools.PointCloud(x, y, scale="max").dense())
        fun, ok, nit = res.fun, res.success, res.nit
    else:
        import ot

        M = ot.dist(x, y)
        M /= M.max()
        w = np.full(n, 1.0 / n)
        _, log = ot.emd(w, w, M, numItermax=10**9, log=True)
        fun, ok, nit = float(log["cost"]), log["result_code"] == 1, -1
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(t=dt, peak_mb=peak, extra_mb=peak - before, fun=fun,
                          ok=bool(ok), nit=int(nit))))


def cloud_main(ns, repeat):
    labels = {"cloud": "ottools emd, PointCloud", "dense": "ottools emd, dense cost",
              "pot": "POT ot.emd, dense cost"}
    print(f"ottools {ottools.__version__}; fresh process per solve, {repeat} runs; "
          f"time (cost construction included) median [min-max] s, peak RSS MB")
    for n in ns:
        out = {k: [] for k in labels}
        for _ in range(repeat):
            for mode in labels:  # round-robin
                proc = subprocess.run([sys.executable, __file__, "--_child", mode, str(n)],
                                      capture_output=True, text=True, check=True)
                out[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        ref = out["pot"][0]["fun"]
        print(f"\nn = m = {n}: POT objective {ref:.15g}")
        for mode, label in labels.items():
            rs = out[mode]
            ts = [r["t"] for r in rs]
            diff = max(abs(r["fun"] - ref) / ref for r in rs)
            ok = all(r["ok"] for r in rs)
            ratio = np.median([r["t"] for r in out["pot"]]) / np.median(ts)
            print(f"  {label:<26}{stats(ts)}  peak {max(r['peak_mb'] for r in rs):5.0f} MB "
                  f"(solve {max(r['extra_mb'] for r in rs):5.0f} MB)"
                  f"  optimal {ok}  rel. diff to POT {diff:.1e}  POT/this {ratio:.2f}x",
                  flush=True)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--_child":
        return _child(sys.argv[2], int(sys.argv[3]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cloud", type=int, nargs="+", default=None,
                   help="measure time and peak memory (PointCloud vs dense vs POT)")
    p.add_argument("--n", type=int, nargs="+", default=[1000, 4000])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--reg", type=float, default=1e-3,
                   help="sinkhorn reg for the entropic warm start (cost max is 1)")
    p.add_argument("--sinkhorn-tol", type=float, default=1e-3)
    p.add_argument("--no-pot-warm", action="store_true")
    args = p.parse_args()
    if args.cloud:
        return cloud_main(args.cloud, args.repeat)
    import ot

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "benchmarks"))
    from common import uniform_2d_problem

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
