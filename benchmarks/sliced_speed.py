"""Speed of the sliced family against its peers (ratios measured in the same run).

    PYTHONPATH=. python benchmarks/sliced_speed.py [--quick] [--state idle|loaded|both]
        [--threads 1,2] [--repeat 5] [--pot-repeat 1] [--n 100000] [--skip-1d]

* ``sliced_wasserstein`` vs POT's ``sliced_wasserstein_distance`` at d = 3, 500
  projections, n = m = 100,000 (``--n``), the same explicit projections. Each state
  (``idle``: nothing started by the script; ``loaded``: beside a CPU-bound process,
  ``python -c "while True: pass"``, started before and killed after the state's runs)
  times ottools with each Numba thread count of ``--threads`` (``numba.set_num_threads``)
  and POT, round-robin: repeat ``k`` runs every thread count, then POT while ``k <
  --pot-repeat`` (POT takes a minute or more at n = 100,000). Rows print the medians
  (min-max) and the ratio of the medians; the load average is printed before each state,
  since other jobs on the machine count too. Run it under ``flock
  /tmp/ottools-bench.lock`` so that two timing jobs never overlap.
* ``wasserstein_1d`` vs ``scipy.stats.wasserstein_distance`` at n = 1,000,000
  (medians of 5), unless ``--skip-1d``.
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import scipy.stats

import ottools


def _times(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def _fmt(times):
    t = np.asarray(times)
    return f"{np.median(t):7.3f} s ({t.min():.3f}-{t.max():.3f})"


def _load_average():
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def _start_hog():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def sliced_vs_pot(n, states, threads, repeat, pot_repeat, d=3, L=500):
    import numba
    import ot

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d)) * np.linspace(2.0, 0.5, d) + 1.0
    theta = rng.normal(size=(L, d))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    ottools.sliced_wasserstein(x[:100], y[:100], directions=theta)  # compile
    default_threads = numba.get_num_threads()
    print(f"sliced_wasserstein vs POT {ot.__version__}: n = m = {n:,}, d = {d}, L = {L}, "
          f"same directions; {os.cpu_count()} CPUs")
    for state in states:
        print(f"-- {state}: {_load_average()}", flush=True)
        hog = _start_hog() if state == "loaded" else None
        try:
            if hog is not None:
                time.sleep(1.0)  # let the competing process reach full speed
            ours = {k: [] for k in threads}
            pot = []
            values = {}
            for rep in range(max(repeat, pot_repeat)):
                if rep < repeat:
                    for k in threads:
                        numba.set_num_threads(k)
                        t, values["ottools"] = _times(
                            lambda: ottools.sliced_wasserstein(x, y, directions=theta), 1)
                        ours[k] += t
                if rep < pot_repeat:
                    t, values["pot"] = _times(
                        lambda: ot.sliced_wasserstein_distance(x, y, projections=theta.T), 1)
                    pot += t
        finally:
            numba.set_num_threads(default_threads)
            if hog is not None:
                hog.kill()
                hog.wait()
        diff = abs(float(values["ottools"]) - float(values["pot"]))
        print(f"   POT sliced_wasserstein_distance   {_fmt(pot)}   |value diff| {diff:.1e}")
        for k in threads:
            ratio = np.median(pot) / np.median(ours[k])
            print(f"   ottools, {k} Numba thread{'s' if k > 1 else ' '}        "
                  f"{_fmt(ours[k])}   POT/ottools {ratio:6.1f}x")
        print(f"   ({_load_average()} after the state)", flush=True)


def onedim_vs_scipy(n, repeats=5):
    rng = np.random.default_rng(1)
    u = rng.normal(size=n)
    v = rng.exponential(size=n)
    ottools.wasserstein_1d(u[:10], v[:10])  # compile
    for label, uw, vw in (("uniform", None, None), ("weighted", rng.random(n), rng.random(n))):
        t_ours, v_ours = _times(lambda: ottools.wasserstein_1d(u, v, uw, vw), repeats)
        t_sp, v_sp = _times(lambda: scipy.stats.wasserstein_distance(u, v, uw, vw), repeats)
        print(f"wasserstein_1d n={n:,} {label:>8}: ottools {_fmt(t_ours)}, "
              f"SciPy {_fmt(t_sp)}, ratio SciPy/ottools "
              f"{np.median(t_sp) / np.median(t_ours):5.1f}x, "
              f"|diff| {abs(float(v_ours) - float(v_sp)):.1e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="n = 10,000, one repeat, 1-D at n = 100,000")
    parser.add_argument("--state", choices=("idle", "loaded", "both"), default="idle")
    parser.add_argument("--threads", default=None,
                        help="comma-separated Numba thread counts (default: Numba's)")
    parser.add_argument("--repeat", type=int, default=5, help="ottools runs per thread count")
    parser.add_argument("--pot-repeat", type=int, default=1, help="POT runs per state")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--skip-1d", action="store_true")
    args = parser.parse_args(argv)
    import numba

    threads = ([int(k) for k in args.threads.split(",")] if args.threads
               else [numba.get_num_threads()])
    states = ["idle", "loaded"] if args.state == "both" else [args.state]
    n = 10_000 if args.quick else args.n
    sliced_vs_pot(n, states, threads, 1 if args.quick else args.repeat, args.pot_repeat)
    if not args.skip_1d:
        onedim_vs_scipy(100_000 if args.quick else 1_000_000)


if __name__ == "__main__":
    main()
