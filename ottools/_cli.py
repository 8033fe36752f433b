"""Command line: ``ottools demo`` and ``ottools solve``."""

import argparse
import sys
import time

import numpy as np

from . import __version__
from ._costs import cost_matrix
from ._sinkhorn import METHODS, sinkhorn


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


class _Progress:
    """Callback printing iterations and err on stderr once a run lasts over a second."""

    def __init__(self, label, stream=None):
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = self.last = time.perf_counter()
        self.history = []
        self.shown = False

    def __call__(self, inter):
        now = time.perf_counter()
        self.history.append((inter.nit, inter.err, now - self.t0))
        if now - self.t0 > 1.0 and now - self.last > (0.2 if self.tty else 2.0):
            self.last = now
            self.shown = True
            line = f"  {self.label}: nit {inter.nit:>7d}  err {inter.err:.2e}"
            if self.tty:
                print("\r" + line, end="", file=self.stream, flush=True)
            else:
                print(line, file=self.stream, flush=True)

    def close(self):
        if self.shown and self.tty:
            print("\r" + " " * 70 + "\r", end="", file=self.stream, flush=True)


def _run_ours(a, b, cost, reg, method, tol, maxiter):
    prog = _Progress(f"ottools {method} reg={reg:g}")
    opts = {"check_every": 10}
    t0 = time.perf_counter()
    res = sinkhorn(a, b, cost, reg, method=method, tol=tol, maxiter=maxiter,
                   callback=prog, options=opts)
    dt = time.perf_counter() - t0
    prog.close()
    return res, dt, prog.history


def _run_pot(ot, a, b, cost, reg, method, tol, maxiter):
    t0 = time.perf_counter()
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        P, log = ot.sinkhorn(a, b, cost, reg, method=method, numItermax=maxiter,
                             stopThr=tol, log=True, warn=False)
    dt = time.perf_counter() - t0
    P = np.asarray(P)
    err = float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())
    nit = int(log.get("niter", log.get("n_iter", -1)))
    return P, err, nit, dt


def _table(rows):
    head = f"{'library':<8} {'method':<20} {'reg':>8} {'cost':>12} {'err':>10} {'nit':>7} {'seconds':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r[0]:<8} {r[1]:<20} {r[2]:>8.3g} {r[3]:>12.6g} {r[4]:>10.2e} "
                     f"{r[5]:>7d} {r[6]:>8.3f}")
    return "\n".join(lines)


def cmd_demo(args):
    x, y = demo_clouds(args.n)
    cost = cost_matrix(x, y)
    cost /= cost.max()
    a = np.full(args.n, 1.0 / args.n)
    b = np.full(args.n, 1.0 / args.n)
    print(f"ottools {__version__} demo: two built-in 2-D clouds, n = m = {args.n}, "
          f"squared Euclidean cost / max, tol = {args.tol:g} (err = ||P1-a||_1 + ||P'1-b||_1);\n"
          "seconds exclude Numba's one-time compilation")
    try:
        import ot
    except ImportError:
        ot = None
        print("(POT is not installed: pip install pot to compare.)")
    if args.no_pot:
        ot = None
    rows, curves, best = [], {}, None
    methods = list(METHODS)
    # Compile the kernels first (cached on disk afterwards), so the table times solves.
    for method in methods:
        sinkhorn(a[:20] * (args.n / 20), b[:20] * (args.n / 20), cost[:20, :20], args.reg[-1],
                 method=method, maxiter=30, callback=lambda r: None)
    for reg in args.reg:
        for method in methods:
            res, dt, hist = _run_ours(a, b, cost, reg, method, args.tol, args.maxiter)
            label = method if method != "auto" else f"auto->{res.method}"
            rows.append(("ottools", label, reg, res.cost, res.err, res.nit, dt))
            curves[(reg, f"ottools {label}")] = hist
            if method == "auto":
                best = res  # the plot shows auto's plan at the last reg
        if ot is not None:
            for pm in ["sinkhorn", "sinkhorn_log", "sinkhorn_stabilized"]:
                P, err, nit, dt = _run_pot(ot, a, b, cost, reg, pm, args.tol, args.pot_maxiter)
                cst = float(np.sum(P * cost)) if np.all(np.isfinite(P)) else float("nan")
                rows.append(("POT", pm, reg, cst, err, nit, dt))
    print(_table(rows))
    if ot is not None:
        print("POT's err is ours, computed on its plan; POT stops on its own criterion "
              f"(L2 of one marginal) or at {args.pot_maxiter} iterations.")
    if args.plot:
        _plot(args.plot, x, y, best, curves)
        print(f"figure written to {args.plot}")
    return 0


def _plot(path, x, y, res, curves):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("ottools: error: --plot needs matplotlib (pip install matplotlib)")
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
    fig.savefig(path, dpi=110)


def _load(path, name):
    try:
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.loadtxt(path, delimiter=",", ndmin=1)
    except Exception as exc:
        raise _CliError(f"cannot read {name} file {path!r}: {exc}") from None
    return arr


class _CliError(Exception):
    pass


def cmd_solve(args):
    x = _load(args.x, "X")
    y = _load(args.y, "Y")
    a = None if args.a is None else _load(args.a, "--a")
    b = None if args.b is None else _load(args.b, "--b")
    try:
        cost = cost_matrix(x, y, metric=args.metric)
        prog = _Progress(f"{args.method} reg={args.reg:g}")
        res = sinkhorn(a, b, cost, args.reg, method=args.method, tol=args.tol,
                       maxiter=args.maxiter, callback=prog)
        prog.close()
    except (ValueError, TypeError) as exc:
        raise _CliError(str(exc)) from None
    print(f"method   {res.method}\nsuccess  {res.success}\nstatus   {res.status}: {res.message}")
    print(f"cost     {res.cost:.10g}\nfun      {res.fun:.10g}\nerr      {res.err:.3e}\nnit      {res.nit}")
    if args.out:
        np.save(args.out, res.plan)
        print(f"plan ({res.plan.shape[0]}x{res.plan.shape[1]}) written to {args.out}")
    return 0 if res.success else 1


def build_parser():
    p = argparse.ArgumentParser(prog="ottools", description="Optimal transport numerics.")
    p.add_argument("--version", action="version", version=f"ottools {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="solve a built-in problem with every method (and POT's)")
    d.add_argument("--n", type=int, default=2000, help="points per cloud (default 2000)")
    d.add_argument("--reg", type=float, nargs="+", default=[0.05, 0.01],
                   help="regularizations, relative to the max cost (default 0.05 0.01)")
    d.add_argument("--tol", type=float, default=1e-6, help="marginal error target (1e-6)")
    d.add_argument("--maxiter", type=int, default=10_000)
    d.add_argument("--pot-maxiter", type=int, default=300, help="iteration cap for POT (300)")
    d.add_argument("--no-pot", action="store_true", help="skip POT even if installed")
    d.add_argument("--plot", metavar="FILE.png", help="save a figure of the plan and err curves")
    d.set_defaults(func=cmd_demo)
    s = sub.add_parser("solve", help="entropic OT between two point clouds (.npy or .csv)")
    s.add_argument("x", metavar="X", help="source points, (n, d) .npy or .csv")
    s.add_argument("y", metavar="Y", help="target points, (m, d) .npy or .csv")
    s.add_argument("--reg", type=float, required=True, help="entropic regularization")
    s.add_argument("--method", default="auto", help="auto (default), " + ", ".join(METHODS[1:]))
    s.add_argument("--metric", default="sqeuclidean", help="ground cost (see cost_matrix)")
    s.add_argument("--a", help="source weights file (default uniform)")
    s.add_argument("--b", help="target weights file (default uniform)")
    s.add_argument("--tol", type=float, default=1e-9)
    s.add_argument("--maxiter", type=int, default=10_000)
    s.add_argument("--out", metavar="PLAN.npy", help="save the plan")
    s.set_defaults(func=cmd_solve)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except _CliError as exc:
        print(f"ottools: error: {exc}", file=sys.stderr)
        return 2
