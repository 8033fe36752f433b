"""Sparsity-constrained OT against POT on a grid of problems: time, dual value, stages.

Problems: n = m points uniform in [0, 1]^d, squared Euclidean cost divided by its max,
uniform weights; ``reg`` (gamma) and ``max_nz`` (k) from the grid; both formulations;
``--seeds`` draws of the points. POT runs ``ot.smooth.smooth_ot_semi_dual`` /
``smooth_ot_dual(..., reg_type="sparsity_constrained", max_nz=k)`` with its defaults,
with BLAS limited to one thread (threadpoolctl, if installed) and, with
``--pot-threads both``, also with its default threads. ottools runs with its defaults
(``tol=None``, ``maxiter=10000``); its time is the median of ``--repeat`` runs. A row
passes when ottools's dual value is at least POT's minus 1e-9 (relative) and its time at
most 1/5 of POT's (each POT variant). "reach" is the time ottools's iterates take to
reach POT's value (from its callback's clock), the ratio at equal dual values. Stage
columns: status, iterations, quasi-Newton iterations, restarts, kink steps, evaluations,
time to the best value, time in kink steps.

    flock /tmp/ottools-bench.lock python benchmarks/sparse_speed.py \\
        --n 200 400 --d 2 --reg 0.01 0.1 1 --k 2 5 --seeds 0

``--figure``: the published figure instead (n = m = 1000, k = 2, reg = 0.1, d = 2): the
time ottools needs to reach POT's dual value (smallest ``maxiter``, to within 10, found
by bisection), against POT's full run; ``--method`` picks ottools's method.

``--pot-cache FILE`` keeps POT's results (JSON) between runs: POT is deterministic, so
only its times are reused (say so when quoting ratios).
"""

import argparse
import contextlib
import io
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
import ottools  # noqa: E402


def problem(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    y = rng.random((n, d))
    cost = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    np.maximum(cost, 0, out=cost)
    cost /= cost.max()
    a = np.full(n, 1.0 / n)
    return a, a.copy(), np.ascontiguousarray(cost)


def run_pot(a, b, cost, reg, k, form, threads):
    import ot

    fn = ot.smooth.smooth_ot_semi_dual if form == "semi-dual" else ot.smooth.smooth_ot_dual
    limit = contextlib.nullcontext()
    if threads == "one":
        try:
            from threadpoolctl import threadpool_limits
            limit = threadpool_limits(limits=1, user_api="blas")
        except ImportError:
            pass
    with limit, contextlib.redirect_stdout(io.StringIO()):
        t = time.perf_counter()
        _, log = fn(a, b, cost, reg, reg_type="sparsity_constrained", max_nz=k, log=True)
        elapsed = time.perf_counter() - t
    return {"time": elapsed, "value": -float(log["res"].fun), "nit": int(log["res"].nit)}


def run_ours(a, b, cost, reg, k, form, repeat, **kw):
    times, res = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        res = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation=form, **kw)
        times.append(time.perf_counter() - t)
    return res, float(np.median(times)), (min(times), max(times))


def time_to_reach(a, b, cost, reg, k, form, target):
    """Seconds until ottools's iterate first reaches ``target`` (its callback's clock:
    the callback's own cost is included), or NaN if it never does."""
    hit = []
    t0 = time.perf_counter()

    def cb(r):
        if not hit and r.dual_value >= target:
            hit.append(time.perf_counter() - t0)

    ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation=form, callback=cb)
    return hit[0] if hit else float("nan")


def _get(res, name, default=-1):
    """A stage field (absent from results of older versions: ``default``)."""
    return res.get(name, default)


def grid(args):
    cache = {}
    if args.pot_cache and os.path.exists(args.pot_cache):
        with open(args.pot_cache) as fh:
            cache = json.load(fh)
    variants = ["one"] if args.pot_threads == "one" else ["one", "default"]
    ottools.sparsity_constrained_ot(None, None, np.eye(4), 0.1, 2)  # compile
    ottools.sparsity_constrained_ot(None, None, np.eye(4), 0.1, 2, formulation="dual")
    hdr = (f"{'n':>5} {'d':>2} {'reg':>5} {'k':>2} {'form':<9} {'seed':>4} | "
           + " ".join(f"{'POT' + v[0] + ' s':>9}" for v in variants)
           + f" {'ours s':>8} {'ratio':>6} {'reach s':>8} {'ratio':>6} {'rel value':>10} "
             f"{'st':>2} {'nit':>5} "
             f"{'bfgs':>5} {'rst':>4} {'kink':>4} {'nfev':>6} {'t_best':>7} {'t_kink':>6} ok")
    print(hdr, flush=True)
    n_ok = n_all = 0
    ratios, reach = [], []
    for n in args.n:
        for d in args.d:
            for seed in args.seeds:
                a, b, cost = problem(n, d, seed)
                for reg in args.reg:
                    for k in args.k:
                        for form in args.forms:
                            key = f"{n}-{d}-{seed}-{reg}-{k}-{form}"
                            pots = {}
                            for v in variants:
                                ck = f"{key}-{v}"
                                if ck not in cache:
                                    cache[ck] = run_pot(a, b, cost, reg, k, form, v)
                                pots[v] = cache[ck]
                            res, t_ours, _ = run_ours(a, b, cost, reg, k, form, args.repeat)
                            v_pot = pots["one"]["value"]
                            t_reach = time_to_reach(a, b, cost, reg, k, form,
                                                    v_pot - 1e-9 * abs(v_pot))
                            t_pot = min(p["time"] for p in pots.values())
                            reach.append(t_pot / t_reach)
                            rel = (res.dual_value - v_pot) / abs(v_pot)
                            ratio = t_pot / t_ours
                            ok = rel >= -1e-9 and ratio >= 5
                            n_ok += ok
                            n_all += 1
                            ratios.append(ratio)
                            print(f"{n:5d} {d:2d} {reg:5g} {k:2d} {form:<9} {seed:4d} | "
                                  + " ".join(f"{pots[v]['time']:9.3f}" for v in variants)
                                  + f" {t_ours:8.3f} {ratio:6.1f} {t_reach:8.3f} "
                                    f"{t_pot / t_reach:6.1f} {rel:10.2e} "
                                    f"{res.status:2d} {res.nit:5d} {_get(res, 'nit_bfgs'):5d} "
                                    f"{_get(res, 'n_restarts'):4d} "
                                    f"{_get(res, 'n_kink_steps'):4d} {_get(res, 'nfev'):6d} "
                                    f"{_get(res, 'time_to_best', -1.0):7.3f} "
                                    f"{_get(res, 'time_kink', -1.0):6.2f} "
                                    f"{'yes' if ok else 'NO'}", flush=True)
                            if args.pot_cache:
                                with open(args.pot_cache, "w") as fh:
                                    json.dump(cache, fh)
    r, q = np.array(ratios), np.array(reach)
    print(f"{n_ok}/{n_all} rows pass; POT time / ottools time: full solve median "
          f"{np.median(r):.1f} (min {r.min():.1f}, max {r.max():.1f}); to POT's value "
          f"median {np.nanmedian(q):.1f} (min {np.nanmin(q):.1f}, max {np.nanmax(q):.1f})")


def figure(args):
    a, b, cost = problem(1000, 2, 0)
    reg, k = 0.1, 2
    ottools.sparsity_constrained_ot(None, None, np.eye(4), reg, k)  # compile
    print(f"{'formulation':<11} {'POT s':>8} {'POT dual':>22} {'ottools s':>10} "
          f"{'ottools dual':>22} {'nit':>5} {'ratio':>7}")
    for form in ("semi-dual", "dual"):
        pot = run_pot(a, b, cost, reg, k, form, "one")

        def reaches(maxiter):
            res = ottools.sparsity_constrained_ot(a, b, cost, reg, k, formulation=form,
                                                  tol=0.0, maxiter=maxiter,
                                                  method=args.method)
            return res.dual_value >= pot["value"] or res.status != 1

        maxiter = pot["nit"]
        while not reaches(maxiter):
            maxiter += 10
        lo = 0
        while maxiter - lo > 10:
            mid = (lo + maxiter) // 2
            if reaches(mid):
                maxiter = mid
            else:
                lo = mid
        res, t_ours, _ = run_ours(a, b, cost, reg, k, form, args.repeat, tol=0.0,
                                  maxiter=maxiter, method=args.method)
        print(f"{form:<11} {pot['time']:8.2f} {pot['value']:22.17g} {t_ours:10.3f} "
              f"{res.dual_value:22.17g} {res.nit:5d} {pot['time'] / t_ours:7.1f}x",
              flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[200, 400, 1000])
    p.add_argument("--d", type=int, nargs="+", default=[2, 10])
    p.add_argument("--reg", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    p.add_argument("--k", type=int, nargs="+", default=[2, 3, 5])
    p.add_argument("--forms", nargs="+", default=["semi-dual", "dual"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--pot-threads", choices=["one", "both"], default="one")
    p.add_argument("--pot-cache", default=None)
    p.add_argument("--figure", action="store_true")
    p.add_argument("--method", default="auto", help="ottools's method (--figure only)")
    args = p.parse_args()
    figure(args) if args.figure else grid(args)


if __name__ == "__main__":
    main()
