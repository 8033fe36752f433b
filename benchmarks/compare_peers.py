"""ottools against POT at equal accuracy: ratio tables for the entropic core.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/compare_peers.py            # n = 4000
    PYTHONPATH=. python benchmarks/compare_peers.py --n 1000   # quicker

Problem: ``common.uniform_2d_problem(n)``: uniform points in the unit square, squared
Euclidean cost divided by its max, uniform weights. Every figure is a median over
``--repeat`` runs in this one process, so the ratios hold even on a busy machine.

1. Time per iteration (tol = 0, stopThr = 0): the median over repeats of
   ``(T(N2) - T(N1)) / (N2 - N1)`` (the two runs back to back) so that set-up and plan
   construction cancel; ``nan`` if load made it non-positive. POT's ``sinkhorn_log`` runs N1 = 1, N2 = 3 only
   (it costs about a second per iteration at n = 4000). The floor is the time to read the
   cost matrix twice (two ``cost.sum()``), what a two-matvec iteration must at least do.
2. Time to ``err <= tol`` (tol = 1e-6), with ``err = ||P1 - a||_1 + ||P^T 1 - b||_1``
   computed by us on both plans; ottools ``auto`` and POT's scaling solvers timed
   round-robin, medians of ``--repeat``. POT's solvers iterate plain Sinkhorn, so they run the
   number of iterations our plain ``method="log"`` needed (rounded up to POT's check
   period of 10) with ``stopThr=0``; the table shows the err of POT's plan. POT's
   ``sinkhorn_log`` is timed for 3 iterations and extrapolated (marked ``*``).
3. Cold start, in fresh interpreters: ``import ottools`` and ``import`` + a first small
   solve with a warm Numba cache (what asv's ``timeraw_`` measures), each beside the same
   steps for the dependencies alone (``common.IMPORT_FLOOR`` / ``FIRST_CALL_FLOOR``).
"""

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks.common import (  # noqa: E402
    FIRST_CALL_FLOOR,
    FIRST_SOLVE,
    IMPORT_FLOOR,
    marginal_error,
    uniform_2d_problem,
)

import ottools  # noqa: E402


def median_time(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def pot_run(ot, a, b, cost, reg, method, n_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ot.sinkhorn(a, b, cost, reg, method=method, numItermax=n_iter, stopThr=0.0,
                           warn=False)


def ours_run(a, b, cost, reg, method, n_iter, options=None):
    return ottools.sinkhorn(a, b, cost, reg, method=method, tol=0.0, maxiter=n_iter,
                            options=options).plan


def per_iteration(n, dtype, reg, repeat, ot):
    """Rows ``(solver, seconds per iteration)`` and the read-twice floor.

    The solvers are timed round-robin (each repeat runs every solver once), so that load
    from other processes hits them alike; ``(median T(N2) - median T(N1)) / (N2 - N1)``.
    """
    a, b, cost = uniform_2d_problem(n, dtype=np.dtype(dtype))
    solvers = [("ottools log", "ours", "log"), ("ottools scaling", "ours", "scaling")]
    if ot is not None:
        solvers += [("POT sinkhorn", "pot", "sinkhorn"),
                    ("POT sinkhorn_stabilized", "pot", "sinkhorn_stabilized"),
                    ("POT sinkhorn_log", "pot", "sinkhorn_log")]
    runs = []
    for label, lib, method in solvers:
        if lib == "ours":
            ours_run(a, b, cost, reg, method, 2)  # compile / warm up
            runs.append((label, 5, 85, lambda k, m=method: ours_run(a, b, cost, reg, m, k)))
        else:
            n1, n2 = (1, 3) if method == "sinkhorn_log" else (5, 85)
            runs.append((label, n1, n2,
                         lambda k, m=method: pot_run(ot, a, b, cost, reg, m, k)))
    times = {label: ([], []) for label, *_ in runs}
    floor = []
    for r in range(repeat):
        for label, n1, n2, run in runs:
            if "sinkhorn_log" in label and n >= 4000 and r >= 2:
                continue  # about a second per iteration: two repeats are enough
            for k, store in ((n1, times[label][0]), (n2, times[label][1])):
                t0 = time.perf_counter()
                run(k)
                store.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cost.sum()
        cost.sum()
        floor.append(time.perf_counter() - t0)
    rows = []
    for label, n1, n2, _ in runs:
        t1, t2 = times[label]
        # Median of the per-repeat differences (each pair ran back to back); a
        # non-positive one means load swamped the run: reported as nan, not as 0.
        d = float(np.median(np.subtract(t2, t1))) / (n2 - n1)
        rows.append((label, d if d > 0 else float("nan")))
    return rows, float(np.median(floor))


def callback_intervals(n, reg, repeat):
    """ottools log seconds per iteration in float64 and float32, as the median interval
    between callbacks (every 5 iterations) over ``repeat`` interleaved 60-iteration runs:
    no set-up to subtract, so robust on a busy machine."""
    data = {dt: uniform_2d_problem(n, dtype=np.dtype(dt)) for dt in ("float64", "float32")}
    gaps = {dt: [] for dt in data}
    for _ in range(repeat):
        for dt, (a, b, cost) in data.items():
            stamps = []
            ottools.sinkhorn(a, b, cost, reg, method="log", tol=0.0, maxiter=60,
                             callback=lambda r: stamps.append(time.perf_counter()),
                             options={"check_every": 5})
            gaps[dt].extend(np.diff(stamps) / 5)
    return {dt: float(np.median(g)) for dt, g in gaps.items()}


def to_tolerance(n, reg, tol, repeat, ot, log_per_it=None):
    """Rows ``(solver, seconds, nit, err on its plan, extrapolated)``.

    ottools ``auto`` and POT's ``sinkhorn`` / ``sinkhorn_stabilized`` are timed
    round-robin (each repeat runs each once; medians), so that load from other processes
    hits them alike.
    """
    a, b, cost = uniform_2d_problem(n)
    ottools.sinkhorn(a, b, cost, reg, tol=tol)  # warm up
    plain = ottools.sinkhorn(a, b, cost, reg, method="log", tol=tol, maxiter=100_000)
    t_plain = median_time(
        lambda: ottools.sinkhorn(a, b, cost, reg, method="log", tol=tol, maxiter=100_000),
        1)
    n_pot = int(np.ceil(plain.nit / 10.0) * 10)
    out = {}

    def ours():
        out["auto"] = ottools.sinkhorn(a, b, cost, reg, tol=tol, maxiter=100_000)

    runs = [("auto", ours)]
    if ot is not None:
        for method in ("sinkhorn", "sinkhorn_stabilized"):
            def run(method=method):
                out[method] = pot_run(ot, a, b, cost, reg, method, n_pot)
            runs.append((method, run))
    times = {label: [] for label, _ in runs}
    for _ in range(repeat):
        for label, fn in runs:
            t0 = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t0)
    res = out["auto"]
    rows = [(f"ottools auto ({res.method}, overrelaxed)", float(np.median(times["auto"])),
             res.nit, marginal_error(res.plan, a, b), False),
            ("ottools log (plain)", t_plain, plain.nit, marginal_error(plain.plan, a, b),
             False)]
    if ot is None:
        return rows
    for method in ("sinkhorn", "sinkhorn_stabilized"):
        rows.append((f"POT {method}", float(np.median(times[method])), n_pot,
                     marginal_error(out[method], a, b), False))
    # sinkhorn_log: 3 iterations, plan included, then the remaining iterations at the
    # measured per-iteration cost.
    t3 = median_time(lambda: pot_run(ot, a, b, cost, reg, "sinkhorn_log", 3), 1)
    per_it = log_per_it if log_per_it is not None else t3 / 3
    rows.append(("POT sinkhorn_log", t3 + per_it * (n_pot - 3), n_pot, float("nan"), True))
    return rows


def _fresh_seconds(stmt, setup=""):
    """Seconds of ``stmt`` in a fresh interpreter (``setup`` untimed), as asv's
    ``timeraw_`` times it."""
    code = (f"{setup}\nimport time\nt0 = time.perf_counter()\n{stmt}\n"
            "print(time.perf_counter() - t0)")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out)


def cold_start(repeat):
    """Fresh-interpreter seconds: (import ottools, its floor, import + first solve, floor).

    The floors (``common.IMPORT_FLOOR`` / ``FIRST_CALL_FLOOR``, shared with asv's
    bench_import) time the dependencies alone: NumPy; NumPy, scipy.optimize and Numba
    running one trivial cached kernel. Medians of ``repeat`` rounds, after one untimed
    round that fills the Numba caches.
    """
    cases = [("import ottools", ""), IMPORT_FLOOR, FIRST_SOLVE, FIRST_CALL_FLOOR]
    for case in cases:
        _fresh_seconds(*case)
    # Round-robin, so that load drifts hit every figure alike.
    rows = [[_fresh_seconds(*case) for case in cases] for _ in range(repeat)]
    return tuple(float(v) for v in np.median(np.array(rows), axis=0))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--reg", type=float, default=1e-2, help="reg of the per-iteration table")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-tolerance", action="store_true")
    p.add_argument("--cold-start-only", action="store_true",
                   help="only the cold-start table (fresh interpreters; no POT)")
    args = p.parse_args(argv)
    if args.cold_start_only:
        return print_cold_start(args.repeat)
    try:
        import ot
    except ImportError:
        ot = None
        print("POT is not installed: ottools only.")
    n = args.n
    print(f"# ottools vs POT, n = m = {n}, uniform 2-D points, sqeuclidean / max, "
          f"median of {args.repeat}\n")
    log_per_it = None
    per = {}
    for dtype in ("float64", "float32"):
        rows, floor = per_iteration(n, dtype, args.reg, args.repeat, ot)
        per[dtype] = dict(rows)
        print(f"## Time per iteration, {dtype}, reg = {args.reg:g}")
        print(f"{'solver':28s} {'ms/it':>9s} {'vs ottools log':>15s} {'vs floor':>9s}")
        ours = dict(rows)["ottools log"]
        for label, t in rows:
            print(f"{label:28s} {1e3 * t:9.2f} {t / ours:14.1f}x {t / floor:8.2f}x")
        print(f"{'floor: read cost twice':28s} {1e3 * floor:9.2f}\n")
        if dtype == "float64":
            log_per_it = dict(rows).get("POT sinkhorn_log")
    f64, f32 = per["float64"]["ottools log"], per["float32"]["ottools log"]
    print(f"float32 / float64 speed-up per iteration (ottools log, tables above): "
          f"{f64 / f32:.2f}x")
    gaps = callback_intervals(n, args.reg, args.repeat)
    print(f"ottools log per iteration from callback intervals: float64 "
          f"{1e3 * gaps['float64']:.2f} ms, float32 {1e3 * gaps['float32']:.2f} ms, "
          f"speed-up {gaps['float64'] / gaps['float32']:.2f}x\n")
    if not args.skip_tolerance:
        for reg in (1e-2, 1e-3):
            rows = to_tolerance(n, reg, args.tol, args.repeat, ot,
                                log_per_it if reg == args.reg else None)
            print(f"## Time to err <= {args.tol:g}, float64, reg = {reg:g}")
            print(f"{'solver':40s} {'s':>8s} {'nit':>6s} {'err (ours)':>11s} "
                  f"{'vs auto':>8s}")
            t0 = rows[0][1]
            for label, t, nit, err, extra in rows:
                mark = "*" if extra else " "
                print(f"{label:40s} {t:7.2f}{mark} {nit:6d} {err:11.2e} {t / t0:7.1f}x")
            print("* extrapolated from 3 timed iterations\n")
    print_cold_start(args.repeat)


def print_cold_start(repeat):
    imp, imp_floor, first, first_floor = cold_start(repeat)
    print(f"## Cold start (fresh interpreter, warm Numba cache; medians of {repeat})\n"
          f"import ottools: {imp:.3f} s (import numpy alone: {imp_floor:.3f} s)\n"
          f"import + first sinkhorn (50 x 40): {first:.3f} s (dependency floor: NumPy, "
          f"scipy.optimize, Numba and one cached kernel: {first_floor:.3f} s; "
          f"ratio {first / first_floor:.2f})")


if __name__ == "__main__":
    main()
