"""The sparse-OT figure of this checkout against another commit's, in one run.

Usage (from the repository root; serialize timing jobs)::

    flock /tmp/ottools-bench.lock python benchmarks/sparse_vs_commit.py --old dc949fb

Problem: the published figure of ``sparse_speed.py --figure`` (n = m = 1000 uniform 2-D
points, squared Euclidean cost divided by its max, reg = 0.1, max_nz = 2, seed 0), both
formulations. POT's ``smooth_ot_*_dual(..., reg_type="sparsity_constrained")`` runs once
per formulation (BLAS on one thread when threadpoolctl is installed) and sets the target:
its dual value. Each version (this tree, and ``--old`` checked out as a git worktree in a
temporary folder) runs in its own Python processes on the same saved problem:

* ``reach``: the fewest ``maxiter`` (to within 10, by bisection, ``tol=0``) at which its
  dual value is at least POT's, then the time of a solve with that ``maxiter``: the
  figure both versions published;
* ``default``: the time and dual value of a solve with the version's defaults.

Timed solves alternate between the versions (``--repeat`` rounds, a fresh process per
solve after one warm-up solve in it); medians and min-max are printed.
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from sparse_speed import problem, run_pot  # noqa: E402

# Runs inside each version's tree: ``python -c CHILD npz form k reg mode arg``.
CHILD = r"""
import json, sys, time
import numpy as np
import ottools
z = np.load(sys.argv[1])
a, b, cost = z["a"], z["b"], z["cost"]
form, k, reg, mode, arg = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], \
    float(sys.argv[6])
solve = ottools.sparsity_constrained_ot
solve(a[:5] / a[:5].sum(), b[:5] / b[:5].sum(), cost[:5, :5], reg, k, formulation=form)
if mode == "bisect":
    def reaches(maxiter):
        res = solve(a, b, cost, reg, k, formulation=form, tol=0.0, maxiter=maxiter)
        return res.dual_value >= arg or res.status != 1
    hi = 100
    while not reaches(hi):
        hi *= 2
    lo = 0
    while hi - lo > 10:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    print(json.dumps({"maxiter": hi}))
else:
    kw = {} if mode == "default" else {"tol": 0.0, "maxiter": int(arg)}
    t = time.perf_counter()
    res = solve(a, b, cost, reg, k, formulation=form, **kw)
    t = time.perf_counter() - t
    print(json.dumps({"time": t, "value": float(res.dual_value), "nit": int(res.nit),
                      "status": int(res.status)}))
"""


def child(tree, *args):
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], cwd=tree, env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the commit to compare with")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reach-only", action="store_true",
                    help="time only the solves to POT's value, not the default solves")
    args = ap.parse_args()
    reg, k = 0.1, 2
    a, b, cost = problem(args.n, 2, 0)
    tmp = tempfile.mkdtemp(prefix="ottools-old-")
    old = os.path.join(tmp, "tree")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", old, args.old],
                   check=True, capture_output=True)
    try:
        npz = os.path.join(tmp, "problem.npz")
        np.savez(npz, a=a, b=b, cost=cost)
        trees = {"new": ROOT, f"old {args.old}": old}
        print(f"n = m = {args.n}, d = 2, reg = {reg}, k = {k}; POT BLAS one thread; "
              f"{args.repeat} alternating rounds", flush=True)
        for form in ("semi-dual", "dual"):
            with contextlib.redirect_stdout(io.StringIO()):
                pot = run_pot(a, b, cost, reg, k, form, "one")
            print(f"{form}: POT {pot['time']:.2f} s, dual {pot['value']:.17g}", flush=True)
            maxiter = {v: child(t, npz, form, k, reg, "bisect", pot["value"])["maxiter"]
                       for v, t in trees.items()}
            modes = ("reach",) if args.reach_only else ("reach", "default")
            runs = {(v, m): [] for v in trees for m in modes}
            for _ in range(args.repeat):
                for v, t in trees.items():
                    runs[v, "reach"].append(child(t, npz, form, k, reg, "maxiter",
                                                  maxiter[v]))
                    if not args.reach_only:
                        runs[v, "default"].append(child(t, npz, form, k, reg, "default",
                                                        0))
            for (v, m), rs in runs.items():
                ts = [r["time"] for r in rs]
                med = float(np.median(ts))
                rel = (rs[-1]["value"] - pot["value"]) / abs(pot["value"])
                extra = f"maxiter {maxiter[v]:5d}" if m == "reach" else \
                    f"status {rs[-1]['status']}, nit {rs[-1]['nit']}"
                print(f"  {v:<14} {m:<8} {med:8.3f} s (min {min(ts):.3f}, max "
                      f"{max(ts):.3f})  POT/this {pot['time'] / med:6.1f}x  "
                      f"value - POT's (rel) {rel:+.1e}  {extra}", flush=True)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
