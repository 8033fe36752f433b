"""``ottools demo``: every method on a built-in problem, beside POT's, and the figure.

CLI-only (loaded by ``ottools demo``, never by ``import ottools``).
"""

import math
import time
import warnings

import numpy as np

from . import __version__
from ._cli import SINKHORN_METHODS, CliError, Progress, check_memory, output_path
from ._costs import cost_matrix
from ._kernels._relax import EARLY
from ._sinkhorn import sinkhorn

POT_METHODS = ("sinkhorn", "sinkhorn_log", "sinkhorn_stabilized")
PLOT_FORMATS = {".png": "PNG", ".pdf": "PDF", ".svg": "SVG"}
_STATUS = {0: "ok", 1: "maxiter", 2: "non-finite", 3: "callback", 4: "stalled",
           5: "certified"}


def demo_clouds(n=2000, seed=0):
    """The demo's two built-in 2-D point clouds: a noisy crescent and a ring of blobs."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, np.pi, n)
    x = np.c_[np.cos(t), np.sin(t)] * 1.5 + rng.normal(scale=0.12, size=(n, 2))
    k = rng.integers(0, 6, n)
    ang = 2 * np.pi * k / 6
    y = np.c_[np.cos(ang), np.sin(ang)] * 1.2 + np.array([0.4, -0.6])
    y += rng.normal(scale=0.15, size=(n, 2))
    return x, y


def _run_ours(a, b, cost, reg, method, tol, maxiter):
    prog = Progress(f"ottools reg={reg:g}")
    t0 = time.perf_counter()
    res = sinkhorn(a, b, cost, reg, method=method, tol=tol, maxiter=maxiter,
                   callback=prog, options={"check_every": 10})
    dt = time.perf_counter() - t0
    prog.close()
    return res, dt, prog.history


def _run_pot(ot, a, b, cost, reg, method, tol, maxiter):
    """POT run to our accuracy: its criterion is the L2 norm of the column-marginal error
    (rows are exact after each of its iterations), so ``stopThr = tol / sqrt(m)`` implies
    our L1 err <= tol; it may stop below tol (more accurate than needed).
    Returns ``(status, cost, err, nit, seconds)``; ``status`` says why a run has no cost."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        P, log = ot.sinkhorn(a, b, cost, reg, method=method, numItermax=maxiter,
                             stopThr=tol / math.sqrt(b.size), log=True, warn=False)
    dt = time.perf_counter() - t0
    P = np.asarray(P)
    # POT logs the index of its last iteration, counted from 0
    nit = int(log.get("niter", log.get("n_iter", -2))) + 1
    if not np.all(np.isfinite(P)):
        return "FAILED: NaN/inf", float("nan"), float("nan"), nit, dt
    err = float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())
    if not err <= tol:
        if nit >= maxiter:
            return (f"not converged within {maxiter} iterations", float("nan"), err, nit,
                    dt)
        # POT's numerical-error exit returns the iterate before the failure
        return "stopped early, err > tol", float("nan"), err, nit, dt
    return "ok", float(np.sum(P * cost)), err, nit, dt


_POT_CAP_TEXT = ("twice the iterations of ottools' log method (POT's algorithm) plus 100, at "
                 "most --maxiter")


def _pot_cap(args, log_result):
    """POT's iteration cap at one reg: ``--pot-maxiter``, or by default twice the
    iterations of ottools' ``log`` method (POT's algorithm; POT took 51 and 381 where it
    took 50 and 368 at n = 2000) plus 100, at most ``--maxiter``, which it is when that
    run did not converge. A fixed 300 failed every POT row at the demo's reg = 0.01; a
    fixed 10,000 cost 330 s in ``sinkhorn_stabilized``, whose plan underflows there from
    the first iteration (mass 2.5e-7 at n = 2000, POT 0.9.7)."""
    if args.pot_maxiter is not None:
        return args.pot_maxiter
    if not log_result.success:
        return args.maxiter
    return min(args.maxiter, 2 * log_result.nit + 100)


def _table(rows):
    w = max([18] + [len(row[3]) for row in rows])  # the status column
    head = (f"{'library':<8} {'method':<20} {'reg':>8} {'status':<{w}} {'cost':>12} "
            f"{'err':>10} {'nit':>7} {'seconds':>8}")
    lines = [head, "-" * len(head)]
    for lib, method, reg, status, cost, err, nit, sec in rows:
        cst = f"{cost:>12.6g}" if math.isfinite(cost) else f"{'-':>12}"
        er = f"{err:>10.2e}" if math.isfinite(err) else f"{'-':>10}"
        lines.append(f"{lib:<8} {method:<20} {reg:>8.3g} {status:<{w}} {cst} {er} "
                     f"{nit:>7d} {sec:>8.3f}")
    return "\n".join(lines)


# The warm-up: this many iterations of each method reach auto's first over-relaxation
# decision (after EARLY plain sweeps), which runs the controller's kernels; auto goes
# straight to those sweeps (its annealing levels run the same sweep kernels), sns to its
# Newton stage after one warm-up iteration.
_WARMUP_MAXITER = EARLY + 1
_WARMUP_OPTIONS = {"auto": {"epsilon_scaling": False}, "sns": {"warmup": 1}}


def _warm_up(a, b, cost, reg, methods):
    """Compile (or load from Numba's cache) the kernels the timed solves run, so that the
    table's seconds exclude the compilation: a few iterations of each method on the
    problem itself, since the kernels depend on its size (parallel from 2**18 entries,
    float32 first sweeps from 2**22) and dtype, and a Newton stage (``sns``; ``auto``
    shares its kernels)."""
    for method in methods:
        options = {"check_every": 10, **_WARMUP_OPTIONS.get(method, {})}
        sinkhorn(a, b, cost, reg, method=method, maxiter=_WARMUP_MAXITER, callback=_ignore,
                 options=options)


def _ignore(intermediate_result):
    """The warm-up's callback (the timed solves take one: the same code paths)."""


def run_demo(args):
    if args.plot:
        output_path(args.plot, "--plot", PLOT_FORMATS)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError("--plot needs matplotlib (pip install matplotlib)") from None
    n = args.n
    check_memory(n, n, np.float64, 6, f"The demo with n = {n}",
                 "use a smaller --n (the cost and plans grow as n**2).")
    try:
        import ot
    except ImportError:
        ot = None
    x, y = demo_clouds(n)
    cost = cost_matrix(x, y)
    cost /= cost.max()
    a = np.full(n, 1.0 / n)
    b = np.full(n, 1.0 / n)
    print(f"ottools {__version__} demo: two built-in 2-D clouds, n = m = {n}, squared "
          f"Euclidean cost / max; every run stops at err = ||P1-a||_1 + ||P'1-b||_1 <= "
          f"{args.tol:g}")
    if ot is not None and not args.no_pot:
        print("POT runs to the same err: its stopThr = tol/sqrt(m) bounds the L2 norm of its "
              "column error, which implies err <= tol (it may stop lower, i.e. more accurate);"
              " capped at " + (_POT_CAP_TEXT if args.pot_maxiter is None else
                               f"{args.pot_maxiter} iterations")
              + ". err is ours, computed on each plan.")
    elif ot is None:
        print("(POT is not installed: pip install pot to compare.)")
    print("seconds exclude Numba's one-time compilation; a run that did not converge shows "
          "no cost.")
    if args.no_pot:
        ot = None
    methods = list(SINKHORN_METHODS)
    _warm_up(a, b, cost, min(args.reg), methods)
    rows, curves, best = [], {}, None
    for reg in args.reg:
        for method in methods:
            res, dt, hist = _run_ours(a, b, cost, reg, method, args.tol, args.maxiter)
            label = method if res.method == method else f"{method}->{res.method}"
            status = f"{res.status} {_STATUS.get(res.status, '')}".strip()
            cst = res.cost if res.success else float("nan")
            rows.append(("ottools", label, reg, status, cst, res.err, res.nit, dt))
            curves[(reg, f"ottools {label}")] = hist
            if method == methods[0]:
                best = res  # the plot shows the first method's plan at the last reg
            if method == "log":
                cap = _pot_cap(args, res)
        if ot is not None:
            for pm in POT_METHODS:
                status, cst, err, nit, dt = _run_pot(ot, a, b, cost, reg, pm, args.tol, cap)
                rows.append(("POT", pm, reg, status, cst, err, nit, dt))
    print(_table(rows))
    if args.plot:
        _plot(args.plot, x, y, best, curves)
        print(f"figure written to {args.plot}")
    return 0


def _plot(path, x, y, res, curves):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.5))
    P = res.plan
    k = min(400, P.size)
    idx = np.argpartition(P.ravel(), -k)[-k:]
    ii, jj = np.unravel_index(idx, P.shape)
    w = P[ii, jj] / P[ii, jj].max()
    for i, j, wt in zip(ii, jj, w):
        ax0.plot([x[i, 0], y[j, 0]], [x[i, 1], y[j, 1]], color="k", alpha=0.15 + 0.5 * wt, lw=0.6)
    ax0.scatter(*x.T, s=3, c="tab:blue", label="source x")
    ax0.scatter(*y.T, s=3, c="tab:orange", label="target y")
    ax0.set_title(f"{k} strongest links of the plan (reg={res.reg:g}, {res.method})")
    ax0.legend(loc="lower left", markerscale=4)
    ax0.set_aspect("equal")
    styles = ["-", "--", ":", "-."]
    for k, ((reg, label), hist) in enumerate(curves.items()):
        if hist:
            _, err, sec = zip(*hist)
            ax1.loglog(sec, err, styles[k % 4], label=f"{label}, reg={reg:g}")
    ax1.set_xlabel("seconds (callback every 10 iterations)")
    ax1.set_ylabel("err = ||P1-a||_1 + ||P'1-b||_1")
    ax1.set_title("marginal error against time")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise CliError(f"cannot write --plot {path!r}: {exc}") from None
    finally:
        plt.close(fig)
