"""Command line: ``ottools solve`` and ``ottools pairwise`` here; ``ottools demo`` in ``_cli_demo``.

Bad arguments, unreadable files and problems too large for the memory end with exit status
2 and one line on stderr; a solve that does not converge exits 1; success exits 0.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

from . import __version__
from . import _sinkhorn
from ._costs import ALIASES, METRICS, metric_name

SINKHORN_METHODS = _sinkhorn.METHODS
OUT_FORMATS = {".npy": "NumPy binary", ".txt": "text, space-separated",
               ".csv": "text, comma-separated"}
GIB = 1024.0 ** 3
# Peak memory of a solve, in (n, m) arrays of the working dtype beside the cost: the plan
# (log, scaling), plus the sparsified Hessian's work arrays (SNS; "auto" may switch to it).
_SOLVE_ARRAYS = {"log": 2, "scaling": 2}
_SOLVE_ARRAYS_DEFAULT = 5


class CliError(Exception):
    """An error reported as one line on stderr, with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2) instead of usage + message."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ----------------------------------------------------------------------------- argument types

def number_type(convert, ok, wanted, bad=None):
    """An argparse type: ``convert(text)`` (int or float), refused unless ``ok(value)``,
    with "must be {wanted}" (``bad``: the wording for a value that converts but fails)."""
    def parse(text):
        try:
            val = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}; got {text!r}") from None
        if not ok(val):
            shown = val if convert is int else text
            raise argparse.ArgumentTypeError(f"must be {bad or wanted}; got {shown}")
        return val
    return parse


positive_int = number_type(int, lambda v: v >= 1, "a positive integer")
positive_float = number_type(float, lambda v: math.isfinite(v) and v > 0, "a positive number",
                             "a positive finite number")
nonnegative_float = number_type(float, lambda v: math.isfinite(v) and v >= 0,
                                "a number >= 0", "a finite number >= 0")
# the order p >= 1 of a Minkowski cost or a Wasserstein distance
order_p = number_type(float, lambda v: math.isfinite(v) and v >= 1, "a number >= 1",
                      "a finite number >= 1")


def save_npy(path, arr, option):
    """``np.save`` to exactly ``path`` (given a name, np.save appends ``.npy`` unless it
    ends in lower-case ``.npy``: ``PLAN.NPY`` became ``PLAN.NPY.npy``); a ``CliError``
    naming ``option`` when it cannot be written."""
    try:
        with open(path, "wb") as fh:
            np.save(fh, arr)
    except OSError as exc:
        raise CliError(f"cannot write {option} {path!r}: {exc}") from None


def metric_type(text):
    """An argparse type: a metric name of ``cost_matrix`` (aliases resolved); the
    command line cannot pass a callable, so the error lists the names only."""
    try:
        return metric_name(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown metric {text!r}; valid: {', '.join(METRICS + tuple(ALIASES))}") from None


def user_names(message, names):
    """``message`` of a library error with each argument name in backticks (the keys of
    ``names``, e.g. ``"x"``) replaced by what the user typed (``"X file 'x.npy'"``)."""
    for name, shown in names.items():
        message = message.replace(f"`{name}`", shown)
    return message


def _method(text):
    if text.lower() not in SINKHORN_METHODS:
        raise argparse.ArgumentTypeError(
            f"unknown method {text!r}; valid: {', '.join(SINKHORN_METHODS)}")
    return text.lower()


def output_path(path, option, formats):
    """Check, before any work, that ``path`` names a file that can be written."""
    if not path or os.path.isdir(path) or path.endswith(("/", os.sep)) or \
            os.path.basename(path) in (".", ".."):
        raise CliError(f"{option} {path!r} is a directory; give a file name ending in "
                       f"{_ext_list(formats)}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in formats:
        raise CliError(f"{option} {path!r}: unknown extension {ext or '(none)'!r}; use "
                       f"{_ext_list(formats)}")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise CliError(f"{option} {path!r}: directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise CliError(f"{option} {path!r}: directory {folder!r} is not writable")
    return path


def _ext_list(formats):
    return ", ".join(f"{e} ({what})" for e, what in formats.items())


# ----------------------------------------------------------------------------- memory

def available_memory():
    """Bytes this process can still allocate (None if unknown): the least of the free
    memory, the cgroup's remaining limit and the address-space limit (ulimit -v)."""
    bounds = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    bounds.append(int(line.split()[1]) * 1024)
    except OSError:
        try:
            bounds.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as fh:
                bounds.append(int(limit) - int(fh.read()))
    except (OSError, ValueError):
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            bounds.append(soft - used)
    except (ImportError, OSError, ValueError):
        pass
    return max(0, min(bounds)) if bounds else None


def check_memory(n, m, dtype, arrays, what, advice):
    """CliError (before allocating) when ``arrays`` (n, m) arrays of ``dtype`` do not fit."""
    need = float(n) * m * np.dtype(dtype).itemsize * arrays
    have = available_memory()
    if have is not None and need > 0.9 * have:
        raise CliError(
            f"{what} needs about {need / GIB:.1f} GiB ({arrays} arrays of {n} x {m} "
            f"{np.dtype(dtype).name}) but about {have / GIB:.1f} GiB is available; {advice}")


def solve_arrays(method, dtype):
    """(n, m) arrays of ``dtype`` at the peak of a solve, the cost included."""
    arrays = _SOLVE_ARRAYS.get(method, _SOLVE_ARRAYS_DEFAULT)
    # cost_matrix evaluates in float64, then casts: float32 briefly holds 8 + 4 bytes.
    return max(arrays, 3 if np.dtype(dtype) == np.float32 else 1)


# ----------------------------------------------------------------------------- progress

class Progress:
    """Callback printing iterations and err on stderr once a run lasts over a second.

    Each line names the method the intermediate result reports (``inter.method``).
    """

    def __init__(self, label, stream=None):
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = self.last = time.perf_counter()
        self.history = []  # (nit, err, seconds) for finite err only
        self.shown = False

    def __call__(self, inter):
        now = time.perf_counter()
        err = float(inter.err)
        if math.isfinite(err):
            self.history.append((inter.nit, err, now - self.t0))
        if now - self.t0 > 1.0 and now - self.last > (0.2 if self.tty else 2.0):
            self.last = now
            self.shown = True
            shown = f"err {err:.2e}" if math.isfinite(err) else "err not yet measured (warm-up)"
            method = inter.get("method") or "?"
            line = f"  {self.label} {method}: nit {inter.nit:>7d}  {shown}"
            if self.tty:
                print("\r" + line.ljust(70), end="", file=self.stream, flush=True)
            else:
                print(line, file=self.stream, flush=True)

    def close(self):
        if self.shown and self.tty:
            print("\r" + " " * 70 + "\r", end="", file=self.stream, flush=True)


# ----------------------------------------------------------------------------- solve

def load_text(path, delimiter=None, points=True):
    """A text file of numbers: ``points``, rows are points (one row: one point of
    dimension d, shape (1, d)) and one column is 1-D samples (n,); else a vector (one
    row or one column). An empty file raises ValueError (NumPy only warned)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "input contained no data"
        try:
            arr = np.loadtxt(path, delimiter=delimiter, ndmin=2 if points else 1)
        except UserWarning:
            raise ValueError("the file holds no numbers") from None
    if points and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr


def _load(path, name, dtype):
    ext = os.path.splitext(path)[1].lower()
    points = name in ("X", "Y")
    try:
        if ext == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif ext == ".csv":
            arr = load_text(path, ",", points)
        elif ext == ".txt":
            arr = load_text(path, None, points)
        else:
            raise ValueError(f"unknown extension {ext or '(none)'!r}; use .npy, .csv or .txt")
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"expected numbers, got dtype {arr.dtype}")
        if not dtype:
            return arr
        with np.errstate(over="ignore"):
            out = arr.astype(dtype, copy=False)
        if np.isfinite(arr).all() and not np.isfinite(out).all():
            # (the cast's inf was reported as "must be finite", as if the file held it)
            big = float(np.abs(arr[~np.isfinite(out)]).max())
            raise ValueError(f"a value of {big:.3g} is beyond the range of --dtype {dtype} "
                             f"(largest {np.finfo(dtype).max:.3g}); rescale the data or "
                             f"use --dtype float64")
        return out
    except (OSError, ValueError, EOFError) as exc:
        raise CliError(f"cannot read {name} file {path!r}: {exc}") from None


def _save(path, plan):
    ext = os.path.splitext(path)[1].lower()
    fmt = "%.9g" if plan.dtype == np.float32 else "%.17g"
    if ext == ".npy":
        save_npy(path, plan, "--out")
        return OUT_FORMATS[ext]
    try:
        np.savetxt(path, plan, fmt=fmt, delimiter="," if ext == ".csv" else " ")
    except OSError as exc:
        raise CliError(f"cannot write --out {path!r}: {exc}") from None
    return OUT_FORMATS[ext]


def cmd_solve(args):
    if args.p is not None and args.metric not in ("minkowski", "minkowski_p"):
        raise CliError(f"--p applies to the minkowski and minkowski_p metrics, not to "
                       f"--metric {args.metric}")
    if args.out:
        output_path(args.out, "--out", OUT_FORMATS)
    # The weights too take --dtype: a float64 weight file (.csv and .txt always are)
    # made the solve float64 behind --dtype float32.
    x = _load(args.x, "X", args.dtype)
    y = _load(args.y, "Y", args.dtype)
    a = None if args.a is None else _load(args.a, "--a", args.dtype)
    b = None if args.b is None else _load(args.b, "--b", args.dtype)
    # What a solve loads (SciPy's result class, Numba) is loaded before the large arrays.
    import numba  # noqa: F401
    import scipy.optimize  # noqa: F401

    from ._costs import cost_matrix
    from ._validation import _check_balanced, _check_samples

    names = {"x": f"X file {args.x!r}", "y": f"Y file {args.y!r}",
             "a": "the uniform source weights" if args.a is None else f"--a file {args.a!r}",
             "b": "the uniform target weights" if args.b is None else f"--b file {args.b!r}",
             "cost": "the cost between X and Y"}
    try:
        # Checked here, against the points, so that the errors name the files; the memory
        # guard takes the dtype of the solve (that of x, y, a and b together).
        x, y, a, b, dtype = _check_samples(x, y, a, b)
        n, m = x.shape[0], y.shape[0]
        if a is not None or b is not None:  # the library's message suggests `reg_m`
            _check_balanced(np.full(n, 1 / n) if a is None else a,
                            np.full(m, 1 / m) if b is None else b)
        arrays = solve_arrays(args.method, dtype)
        advice = ("use float32 (--dtype float32 halves it), fewer points"
                  + ("" if args.method in _SOLVE_ARRAYS else ", or --method log") + ".")
        check_memory(n, m, dtype, arrays, f"Solving {n} x {m} points (method {args.method!r})",
                     advice)
        cost = cost_matrix(x, y, metric=args.metric, p=args.p)
        prog = Progress("ottools")
        res = _sinkhorn.sinkhorn(a, b, cost, args.reg, method=args.method, tol=args.tol,
                                 maxiter=args.maxiter, callback=prog)
        prog.close()
    except (ValueError, TypeError) as exc:
        raise CliError(user_names(str(exc), names)) from None
    except MemoryError as exc:
        raise CliError(f"out of memory ({exc}); use --dtype float32 or fewer points") from None
    print(f"method   {res.method}\nsuccess  {res.success}\nstatus   {res.status}: {res.message}")
    note = "" if res.success else "  (of the last iterate: not the OT cost, the solve failed)"
    print(f"cost     {res.cost:.10g}{note}\nfun      {res.fun:.10g}{note}\n"
          f"err      {res.err:.3e}\nnit      {res.nit}")
    if args.out:
        kind = _save(args.out, res.plan)
        which = "plan" if res.success else "plan of the last iterate (not converged)"
        print(f"{which} ({res.plan.shape[0]} x {res.plan.shape[1]}, {res.plan.dtype}) "
              f"written to {args.out} ({kind})")
    return 0 if res.success else 1


def cmd_demo(args):
    from ._cli_demo import run_demo  # POT comparison and plotting live there

    return run_demo(args)


# ----------------------------------------------------------------------------- parser

REG_HELP = ("entropic regularization epsilon, in the units of the cost (absolute, not "
            "relative to the cost)")


def build_parser():
    p = Parser(prog="ottools", description="Optimal transport numerics.")
    p.add_argument("--version", action="version", version=f"ottools {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{demo,solve,pairwise}")
    tol_help = ("stop when err = ||P1-a||_1 + ||P'1-b||_1, relative to the total mass, is "
                "at most TOL (default: the library's per-dtype default, 1e-9 for float64 "
                "and 1e-4 for float32)")

    d = sub.add_parser("demo", help="solve a built-in problem with every method (and POT's)",
                       description="Two built-in 2-D point clouds, squared Euclidean cost "
                       "divided by its maximum (so costs lie in [0, 1]), solved by every "
                       "method and, when installed, by POT.")
    d.add_argument("--n", type=positive_int, default=2000,
                   help="points per cloud (default: 2000)")
    d.add_argument("--reg", type=positive_float, nargs="+", default=[0.05, 0.01],
                   help=REG_HELP + "; the demo's cost has maximum 1 (default: 0.05 0.01)")
    d.add_argument("--tol", type=nonnegative_float, default=1e-6,
                   help=tol_help.replace("(default: the library's per-dtype default, 1e-9 "
                                         "for float64 and 1e-4 for float32)",
                                         "(default: 1e-6)") + "; POT is run to the same err")
    d.add_argument("--maxiter", type=positive_int, default=10_000,
                   help="iteration cap for ottools (default: 10000)")
    d.add_argument("--pot-maxiter", type=positive_int, default=None,
                   help="iteration cap for POT (default: twice the iterations of ottools' "
                        "log method, the same algorithm, plus 100, at most --maxiter)")
    d.add_argument("--no-pot", action="store_true",
                   help="skip POT even if installed (default: off)")
    d.add_argument("--plot", metavar="FILE.png",
                   help="save a figure of the plan and err curves, .png, .pdf or .svg "
                        "(default: none)")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("solve", help="entropic OT between two point clouds (.npy, .csv, .txt)",
                       description="Entropic OT between two point clouds: prints the result "
                       "and optionally saves the plan. Exit status 0: converged; 1: not "
                       "converged; 2: bad arguments or input.")
    s.add_argument("x", metavar="X", help="source points, (n, d), in .npy, .csv or .txt")
    s.add_argument("y", metavar="Y", help="target points, (m, d), in .npy, .csv or .txt")
    s.add_argument("--reg", type=positive_float, required=True, help=REG_HELP + " (required)")
    s.add_argument("--method", type=_method, default="auto",
                   help=f"solver: {', '.join(SINKHORN_METHODS)} (default: auto)")
    names = ", ".join(METRICS + tuple(ALIASES))
    s.add_argument("--metric", type=metric_type, default="sqeuclidean",
                   help=f"ground cost, one of: {names} (default: sqeuclidean)")
    s.add_argument("--p", type=order_p, default=None,
                   help="exponent of the minkowski and minkowski_p metrics, >= 1 (default: 2)")
    s.add_argument("--a", help="source weights file (default: uniform)")
    s.add_argument("--b", help="target weights file (default: uniform)")
    s.add_argument("--dtype", choices=("float64", "float32"),
                   help="cast the points and weights to this dtype; float32 halves the "
                        "memory (default: the files' common dtype; .csv and .txt read as "
                        "float64)")
    s.add_argument("--tol", type=nonnegative_float, default=None, help=tol_help)
    s.add_argument("--maxiter", type=positive_int, default=10_000,
                   help="iteration cap (default: 10000)")
    s.add_argument("--out", metavar="PLAN",
                   help="save the plan; the extension picks the format: "
                        f"{_ext_list(OUT_FORMATS)} (default: not saved)")
    s.set_defaults(func=cmd_solve)
    from ._pairwise_cli import add_pairwise_parser

    add_pairwise_parser(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"ottools {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ottools {args.command}: interrupted", file=sys.stderr)
        return 130
