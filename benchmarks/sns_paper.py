"""Reproduce the shape of Tang et al. (ICLR 2024), Table 1: Sinkhorn-Newton-Sparse against
log-domain Sinkhorn at reg = 1/1200 on costs scaled to [0, 1], to err <= 1e-9.

Problems: (1) random assignment n = 500, C ~ U[0, 1]; (2) W1 and W2 between two Gaussian
mixtures on a 1-D grid of n = 1000 points; (3) a pair of scikit-learn digits upsampled to
28 x 28 (MNIST-like), L1 and squared-L2 ground costs between pixel positions.

For every problem it prints iterations and seconds to err <= 1e-9 for ottools SNS, ottools
log-Sinkhorn and POT ``ot.sinkhorn(method="sinkhorn_log")`` (err is always *our* measure,
||P1 - a||_1 + ||P^T 1 - b||_1, computed on each plan). The Sinkhorn runs are capped in time
(``--cap`` seconds each, default 60): when a run stops before 1e-9, the iterations to 1e-9
are extrapolated from the linear rate of its last recorded errors (marked "~" and "extrap").
SNS runs with its defaults everywhere: 20 warm-up Sinkhorn iterations, the first 16
annealed from reg = 0.1 (0.1 of the cost range) down to 1/1200 (option ``warmup_start``).

Usage::

    PYTHONPATH=. python benchmarks/sns_paper.py [--cap 60] [--pot-cap 15] [--only rand,...]
"""

import argparse
import math
import sys
import time

import numpy as np

import ottools

REG = 1.0 / 1200.0
TOL = 1e-9


def problem_random(n=500, seed=0):
    rng = np.random.default_rng(seed)
    a = np.full(n, 1.0 / n)
    return a, a.copy(), rng.random((n, n)), {}


def _mixture(x, comps):
    from scipy.stats import norm
    w = sum(c * norm.pdf(x, mu, s) for c, mu, s in comps)
    return w / w.sum()


def problem_1d(p, n=1000):
    x = np.linspace(0.0, 1.0, n)
    a = _mixture(x, [(0.6, 0.25, 0.06), (0.4, 0.6, 0.1)])
    b = _mixture(x, [(0.3, 0.4, 0.08), (0.7, 0.8, 0.05)])
    C = np.abs(x[:, None] - x[None, :]) ** p
    return a, b, C / C.max(), {}


def digits_pair(i=0, j=1):
    """Two scikit-learn digits (8 x 8), bilinearly upsampled to 28 x 28, as weights."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    imgs = load_digits().images
    out = []
    for k in (i, j):
        im = np.clip(zoom(imgs[k].astype(np.float64), 3.5, order=1), 0.0, None)
        out.append(im.ravel() / im.sum())
    return out


def problem_digits(metric):
    a, b = digits_pair()
    yy, xx = np.mgrid[0:28, 0:28]
    pos = np.column_stack([yy.ravel(), xx.ravel()]).astype(np.float64)
    metric_name = "cityblock" if metric == "L1" else "sqeuclidean"
    C = ottools.cost_matrix(pos, pos, metric=metric_name)
    # Solve on the pixels with positive mass (ottools compresses zero weights itself;
    # POT would not, and would waste time on them).
    ra, rb = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    C = C[np.ix_(ra, rb)]
    return a[ra], b[rb], C / C.max(), {}


PROBLEMS = {
    "rand": ("random assignment, n=500", lambda: problem_random()),
    "w1": ("1-D mixtures W1, n=1000", lambda: problem_1d(1)),
    "w2": ("1-D mixtures W2, n=1000", lambda: problem_1d(2)),
    "digits-l1": ("digits 28x28, L1 cost", lambda: problem_digits("L1")),
    "digits-l2": ("digits 28x28, sq. L2 cost", lambda: problem_digits("L2")),
}


def marginal_error(P, a, b):
    P = np.asarray(P, dtype=np.float64)
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def extrapolate(its, errs, target=TOL):
    """Iterations to ``target`` from the linear rate of the last half of (its, errs)."""
    its, errs = np.asarray(its, float), np.asarray(errs, float)
    keep = np.isfinite(errs) & (errs > 0)
    its, errs = its[keep], errs[keep]
    if errs.size < 4:
        return math.nan
    h = errs.size // 2
    slope, icpt = np.polyfit(its[h:], np.log(errs[h:]), 1)
    if slope >= 0:
        return math.inf
    return (math.log(target) - icpt) / slope


def run_sns(a, b, C, options, repeats=3):
    ottools.sinkhorn(a, b, C, REG, method="sns", tol=TOL, maxiter=20, options=options)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = ottools.sinkhorn(a, b, C, REG, method="sns", tol=TOL, maxiter=5000,
                               options=options)
        times.append(time.perf_counter() - t0)
    return res, float(np.median(times))


def run_log(a, b, C, cap):
    """Our log-Sinkhorn to TOL, stopped by a callback after ``cap`` seconds."""
    ottools.sinkhorn(a, b, C, REG, method="log", tol=TOL, maxiter=2)  # compile
    its, errs = [], []
    t0 = time.perf_counter()

    def cb(r):
        its.append(r.nit)
        errs.append(r.err)
        if time.perf_counter() - t0 > cap:
            raise StopIteration

    res = ottools.sinkhorn(a, b, C, REG, method="log", tol=TOL, maxiter=10**7,
                           callback=cb, options={"check_every": 50})
    return res, time.perf_counter() - t0, its, errs


def run_pot(a, b, C, cap):
    """POT sinkhorn_log in blocks of 50 iterations (warm-started), capped at ``cap`` s."""
    try:
        import ot
    except ImportError:
        return None
    its, errs = [], []
    t0 = time.perf_counter()
    u = v = None
    total = 0
    block = 50
    while True:
        kw = {} if u is None else {"warmstart": (u, v)}
        P, log = ot.sinkhorn(a, b, C, REG, method="sinkhorn_log", numItermax=block,
                             stopThr=0.0, log=True, warn=False, **kw)
        u, v = log["log_u"], log["log_v"]
        total += block
        e = marginal_error(P, a, b)
        its.append(total)
        errs.append(e)
        if e <= TOL or time.perf_counter() - t0 > cap:
            break
    return total, time.perf_counter() - t0, its, errs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cap", type=float, default=60.0, help="seconds per log-Sinkhorn run")
    ap.add_argument("--pot-cap", type=float, default=15.0, help="seconds per POT run")
    ap.add_argument("--only", default=",".join(PROBLEMS))
    args = ap.parse_args(argv)
    print(f"reg = 1/1200, tol = {TOL:g}; Sinkhorn runs capped at {args.cap:g} s (ottools) "
          f"and {args.pot_cap:g} s (POT); '~' = extrapolated from the linear rate.")
    hdr = (f"{'problem':28s} {'SNS it (S+N)':>13s} {'SNS s':>7s} {'err':>8s} | "
           f"{'log it':>9s} {'log s':>8s} | {'it ratio':>8s} {'time ratio':>10s} | "
           f"{'POT it':>8s} {'POT s':>7s} {'POT err':>8s}")
    print(hdr)
    rows = []
    for key in args.only.split(","):
        title, make = PROBLEMS[key]
        a, b, C, info = make()
        opts = {}  # SNS defaults everywhere (warmup 20, annealed from 0.1 of the cost range)
        sns, t_sns = run_sns(a, b, C, opts)
        log, t_log, its, errs = run_log(a, b, C, args.cap)
        if log.success:
            n_log, s_log, mark = log.nit, t_log, " "
        else:
            n_log = extrapolate(its, errs)
            s_log = t_log / log.nit * n_log
            mark = "~"
        pot = run_pot(a, b, C, args.pot_cap)
        if pot is None:
            pot_s = f"{'-':>8s} {'-':>7s} {'-':>8s}"
        else:
            pot_s = f"{pot[0]:8d} {pot[1]:7.1f} {pot[3][-1]:8.1e}"
        n_sns = sns.nit
        line = (f"{title:28s} {n_sns:5d} ({sns.nit_sinkhorn}+{sns.nit_newton})"
                .ljust(42) + f" {t_sns:7.2f} {sns.err:8.1e} | {mark}{n_log:8.0f} "
                f"{mark}{s_log:7.1f} | {n_log / n_sns:8.0f} {s_log / t_sns:10.0f} | {pot_s}")
        print(line, flush=True)
        rows.append(dict(problem=key, sns=sns, t_sns=t_sns, n_log=n_log, s_log=s_log,
                         log_capped=not log.success, log_nit_run=log.nit, log_err=log.err))
    print("log-Sinkhorn 'capped' rows ran", ", ".join(
        f"{r['problem']}: {r['log_nit_run']} it to err {r['log_err']:.1e}"
        for r in rows if r["log_capped"]) or "none")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
