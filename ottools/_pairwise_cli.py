"""Command line: ``ottools pairwise FILE... --out D.npy``, a distance matrix between the
measures stored in files (one point cloud per .npy or .csv file).

``add_pairwise_parser(subparsers)`` adds the subcommand to ``ottools``'s parser and
``run_pairwise(args)`` runs it; it prints its own one-line errors (``ottools pairwise: error:
...`` on stderr) and returns the exit status: 0 done, 1 some pairs did not converge,
2 bad input.
"""

import argparse
import os
import sys
import time

import numpy as np

from ._cli import (CliError, metric_type, nonnegative_float, number_type, order_p,
                   output_path, positive_float, positive_int, save_npy, user_names)
from ._pairwise import METRICS, pairwise_distances

__all__ = ["add_pairwise_parser", "run_pairwise"]


class PairwiseInputError(Exception):
    """Bad input of ``ottools pairwise``: one line for the user, exit status 2."""


_seed = number_type(int, lambda v: v >= 0, "an integer >= 0")
# as pairwise_distances' n_jobs (scikit-learn's rule): -1 all cores, -2 all but one, ...
_jobs = number_type(int, lambda v: v != 0, "a positive integer or negative "
                    "(-1: all cores, -2: all but one, ...)")
# the ground costs whose exponent --p sets (the entropic metrics and exact)
_MINKOWSKI = ("minkowski", "minkowski_p")
# The options behind the library's ``metric_kwargs`` keys, for its error messages.
_OPTIONS = {"reg": "--reg", "metric": "--cost", "tol": "--tol", "maxiter": "--maxiter",
            "p": "--p", "n_projections": "--n-projections"}


def add_pairwise_parser(subparsers):
    """Add the ``pairwise`` subcommand to ``subparsers`` (from
    ``ArgumentParser.add_subparsers``); returns its parser."""
    p = subparsers.add_parser(
        "pairwise", help="OT distance matrix between point clouds (.npy or .csv files)",
        description="Distance matrix between the measures in FILE... (one point cloud per "
                    "file: an (n, d) array in .npy, or rows of numbers in .csv; 1-D "
                    "samples for wasserstein_1d), uniform weights. Progress on stderr, "
                    "a summary on stdout.")
    p.add_argument("files", metavar="FILE", nargs="+", help="point clouds, .npy or .csv")
    p.add_argument("--out", metavar="D.npy", required=True,
                   help="where to save the (N, N) float64 matrix (.npy; required)")
    p.add_argument("--metric", default="sinkhorn_divergence",
                   help="one of: " + ", ".join(METRICS) + " (default sinkhorn_divergence)")
    p.add_argument("--reg", type=positive_float, help="entropic regularization (sinkhorn metrics; required there, no default)")
    p.add_argument("--cost", type=metric_type, default=None,
                   help="ground cost of the entropic metrics (see cost_matrix; default sqeuclidean)")
    p.add_argument("--p", type=order_p,
                   help="order p (default: 2 for sliced, 1 for 1-D); with --cost "
                        "minkowski or minkowski_p, their exponent (default 2)")
    p.add_argument("--n-projections", type=positive_int, help="sliced directions (default 100)")
    p.add_argument("--tol", type=nonnegative_float, help="solver tolerance (entropic metrics; default: the per-dtype default)")
    p.add_argument("--maxiter", type=positive_int, help="iteration cap of each solve (default 10000)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the sliced directions (default 0)")
    p.add_argument("--jobs", type=_jobs, default=-1,
                   help="threads (default -1: all cores; -2: all but one, ...); workers "
                        "with --scheduler dask")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="'dask' (a local Dask cluster) or a Dask scheduler address, "
                        "e.g. tcp://10.0.0.1:8786 (needs ottools[distributed]; default: local "
                        "threads)")
    p.add_argument("--status", metavar="S.npy",
                   help="also save the per-pair statuses (default: not saved)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on stderr)")
    p.set_defaults(func=run_pairwise)
    return p


def _load(path):
    if not os.path.isfile(path):
        raise PairwiseInputError(f"no such file: {path!r}")
    try:
        if path.lower().endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        elif path.lower().endswith(".csv"):
            from ._cli import load_text

            arr = load_text(path, ",")  # rows are points; one column: 1-D samples
        else:
            raise PairwiseInputError(f"cannot read {path!r}: expected a .npy or .csv file")
    except PairwiseInputError:
        raise
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PairwiseInputError(f"cannot read {path!r}: {msg}") from None
    return arr


def _metric_kwargs(args, metric):
    kw = {}
    entropic = metric in ("sinkhorn_divergence", "sinkhorn")
    if args.cost is not None and not (entropic or metric == "exact"):
        raise PairwiseInputError(f"--cost applies to the entropic metrics and exact, not to "
                                 f"--metric {metric} (its ground cost is |x - y|^p)")
    cost = "sqeuclidean" if args.cost is None else args.cost
    if entropic:
        if args.reg is None:
            raise PairwiseInputError(f"--reg is required for --metric {metric}")
        kw.update(reg=args.reg, metric=cost)
        if args.tol is not None:
            kw["tol"] = args.tol
    elif args.reg is not None or args.tol is not None:
        raise PairwiseInputError(f"--reg and --tol apply to the entropic metrics, not to "
                                 f"--metric {metric}")
    if metric == "exact":
        kw["metric"] = cost
    if args.maxiter is not None:
        if not (entropic or metric == "exact"):
            raise PairwiseInputError(f"--maxiter does not apply to --metric {metric}")
        kw["maxiter"] = args.maxiter
    if args.p is not None:
        sliced = metric in ("sliced_wasserstein", "wasserstein_1d")
        if not (sliced or cost in _MINKOWSKI):
            raise PairwiseInputError(
                f"--p applies to sliced_wasserstein and wasserstein_1d, and to the "
                f"ground costs minkowski and minkowski_p (--cost), not to --metric "
                f"{metric} with --cost {cost}")
        kw["p"] = args.p
    if args.n_projections is not None:
        if metric != "sliced_wasserstein":
            raise PairwiseInputError("--n-projections applies to sliced_wasserstein only")
        kw["n_projections"] = args.n_projections
    return kw


def _progress_wanted(args, err):
    if args.no_progress:
        return False
    import importlib.util

    if importlib.util.find_spec("tqdm") is None:  # the bar is drawn by pairwise_distances
        print('ottools: no progress bar without tqdm (pip install "ottools[progress]")',
              file=err)
        return False
    return True


def run_pairwise(args, *, stdout=None, stderr=None):
    """Run ``ottools pairwise`` with parsed ``args``; returns the exit status (0 done,
    1 some pairs did not converge, 2 bad input: one line on stderr)."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        metric = args.metric.lower()
        if metric not in METRICS:
            raise PairwiseInputError(f"unknown --metric {args.metric!r}; valid: "
                                     f"{', '.join(METRICS)}")
        kw = _metric_kwargs(args, metric)
        if not args.out.lower().endswith(".npy"):
            raise PairwiseInputError(f"--out must name a .npy file; got {args.out!r}")
        if args.status is not None and not args.status.lower().endswith(".npy"):
            raise PairwiseInputError(f"--status must name a .npy file; got {args.status!r}")
        try:  # before the work (a missing folder raised after the whole matrix)
            for option, path in (("--out", args.out), ("--status", args.status)):
                if path is not None:
                    output_path(path, option, {".npy": "NumPy array"})
        except CliError as exc:
            raise PairwiseInputError(str(exc)) from None
        clouds = [_load(path) for path in args.files]
        progress = _progress_wanted(args, err)
        t0 = time.perf_counter()
        try:
            D, S = pairwise_distances(clouds, metric=metric, metric_kwargs=kw,
                                      n_jobs=args.jobs, scheduler=args.scheduler,
                                      progress=progress, rng=args.seed,
                                      return_status=True)
        except (ValueError, TypeError, NotImplementedError, ImportError, OSError,
                MemoryError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, OSError) and args.scheduler is not None:
                msg = f"cannot use the Dask scheduler {args.scheduler!r}: {msg}"
            # name the files and options, not the list index and metric_kwargs
            names = {f"X[{k}]": repr(path) for k, path in enumerate(args.files)}
            names.update({f"metric_kwargs['{key}']": option
                          for key, option in _OPTIONS.items()})
            raise PairwiseInputError(user_names(msg, names)) from None
        seconds = time.perf_counter() - t0
        try:
            save_npy(args.out, D, "--out")
            if args.status is not None:
                save_npy(args.status, S, "--status")
        except CliError as exc:
            raise PairwiseInputError(str(exc)) from None
    except PairwiseInputError as exc:
        print(f"ottools pairwise: error: {exc}", file=err)
        return 2
    n = D.shape[0]
    bad = np.argwhere(np.triu(S, 1) != 0)
    selfbad = np.flatnonzero(np.diag(S) != 0)  # the solved self terms ("sinkhorn")
    print(f"measures  {n}\npairs     {n * (n - 1) // 2}\nmetric    {metric}", file=out)
    print(f"failures  {len(bad)} (pairs that did not converge)", file=out)
    for i, j in bad[:10]:
        print(f"  {args.files[i]} / {args.files[j]}: status {S[i, j]}", file=out)
    if len(bad) > 10:
        print(f"  ... and {len(bad) - 10} more (--status S.npy saves them all)", file=out)
    if selfbad.size:
        print(f"self terms {selfbad.size} did not converge (the diagonal)", file=out)
        for i in selfbad[:10]:
            print(f"  {args.files[i]} / {args.files[i]}: status {S[i, i]}", file=out)
    print(f"time      {seconds:.3f} s\nwritten   {args.out} ({n}x{n} float64)", file=out)
    return 1 if len(bad) or selfbad.size else 0


def _parser():
    """A stand-alone parser (tests, and ``python -m ottools._pairwise_cli``)."""
    parser = argparse.ArgumentParser(prog="ottools")
    add_pairwise_parser(parser.add_subparsers(dest="command", required=True))
    return parser


if __name__ == "__main__":  # pragma: no cover
    ns = _parser().parse_args()
    sys.exit(ns.func(ns))
