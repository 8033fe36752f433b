"""Distance matrices over many measures: ``pairwise_distances`` on one thread, on two
threads, on a Dask LocalCluster, against a Python double loop over POT (issue 19).

    flock /tmp/ottools-bench.lock env PYTHONPATH=. python benchmarks/pairwise_speed.py \
        [--quick] [--rounds R] [--div-rounds R] [--pot-pairs K]
        [--only sliced|divergence|scaling] [--scaling-repeats R]

* ``"sliced_wasserstein"``: N = 1000 clouds of 200-500 points in 3-D (uniform weights),
  100 directions shared by all pairs;
* ``"sinkhorn_divergence"``: N = 200 such clouds, squared Euclidean cost, reg = 0.5
  (the clouds are standard normal: the mean cost is 6, so reg is 1/12 of it; at reg = 0.1
  POT's self problems do not converge in its 10,000 iterations), tol = 1e-9;
* configurations, in interleaved rounds (one thread, two threads, Dask, then again), each
  timed whole (tile sizing and, for Dask, scattering included); medians and ranges over
  the rounds, with the CPU time of the process and the load average before each run
  (other jobs on a shared machine take cores: CPU / wall tells what a run got). The Dask
  cluster (``LocalCluster(n_workers=2, threads_per_worker=1)``) is started and warmed up
  (kernels loaded in the workers) before each Dask run and closed after it: its scheduler
  runs in this process, and its event loop would take the GIL during the thread runs;
* a scaling part: N = 300 (sliced) and N = 40 (divergence), the three runners
  interleaved 7 times; the fastest of the short runs is the one that had the cores;
* the POT loop is timed on ``--pot-pairs`` random pairs and extrapolated to all pairs
  (the rate of a Python loop does not depend on which pairs it visits); the same for a
  loop of ottools' single-pair function, for comparison.

The machine is shared: figures are medians of a few runs, and only the ratios measured
in one run mean anything.
"""

import argparse
import contextlib
import os
import time
import warnings

import numpy as np

import ottools


def make_clouds(N, seed=0, lo=200, hi=500, d=3):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(lo, hi + 1)), d)) for _ in range(N)]


def _timed(fn):
    """(wall seconds, CPU seconds of this process, 1-minute load average before, result)."""
    load = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, load, out


def _loop_rate(fn, xs, pairs):
    """Seconds per pair of ``fn(x, y)`` over the sampled pairs (one warm-up call first)."""
    fn(xs[pairs[0][0]], xs[pairs[0][1]])
    t0 = time.perf_counter()
    vals = [fn(xs[i], xs[j]) for i, j in pairs]
    return (time.perf_counter() - t0) / len(pairs), np.array(vals, dtype=float)


def _sample_pairs(N, k, seed=1):
    rng = np.random.default_rng(seed)
    out = set()
    while len(out) < min(k, N * (N - 1) // 2):
        i, j = sorted(rng.choice(N, 2, replace=False))
        out.add((int(i), int(j)))
    return sorted(out)


def _summary(name, times):
    t = np.array(times)
    return f"{name:<26} median {np.median(t):8.2f} s  (min {t.min():.2f}, max {t.max():.2f}, "\
           f"{len(t)} run{'s' if len(t) > 1 else ''})"


def _run(xs, metric, kw, rng, opts, **extra):
    """``_timed`` of one ``pairwise_distances`` run; ``opts["scheduler"] == "cluster"``:
    on a fresh ``_cluster()``, started (and its workers' kernels loaded) before the clock
    starts and closed after it stops."""
    if opts.get("scheduler") != "cluster":
        return _timed(lambda: ottools.pairwise_distances(
            xs, metric=metric, metric_kwargs=kw, rng=rng, **opts, **extra))
    with _cluster() as client:
        ottools.pairwise_distances(xs[:6], metric=metric, metric_kwargs=kw, rng=rng,
                                   scheduler=client)  # workers load the kernels
        return _timed(lambda: ottools.pairwise_distances(
            xs, metric=metric, metric_kwargs=kw, rng=rng, scheduler=client, **extra))


@contextlib.contextmanager
def _cluster():
    """A ``LocalCluster(n_workers=2, threads_per_worker=1)`` and its client. Its scheduler
    runs in this process (an event loop thread that takes the GIL for heartbeats): it
    lives only around the Dask runs, so that it never competes with the thread runs.
    As ``pairwise_distances(scheduler="dask")`` starts its own cluster: workers without
    Dask's MALLOC_TRIM_THRESHOLD_ (1.5x slower per pair with it; docs' Pairwise page)."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_":
                          None}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    with cluster, Client(cluster) as client:
        yield client


def compare(label, xs, metric, kw, rounds, pot_fn, ours_fn, pot_pairs, rng=0):
    N = len(xs)
    n_pairs = N * (N - 1) // 2
    print(f"\n== {label}: N = {N} clouds ({n_pairs:,} pairs), metric={metric!r}, "
          f"metric_kwargs={kw}")
    ottools.pairwise_distances(xs[:6], metric=metric, metric_kwargs=kw, rng=rng)  # compile
    runs = {"one thread": [], "two threads": [], "dask 2 workers x 1 thread": []}
    mats = {}
    for r in range(rounds):
        for name, opts in [("one thread", dict(n_jobs=1)), ("two threads", dict(n_jobs=2)),
                           ("dask 2 workers x 1 thread", dict(scheduler="cluster"))]:
            dt, cpu, load, (D, S) = _run(xs, metric, kw, rng, opts, return_status=True)
            runs[name].append(dt)
            mats[name] = (D, S)
            where = "in workers" if "dask" in name else f"{cpu:7.2f} s"
            print(f"  round {r + 1}: {name:<26} {dt:8.2f} s  ({dt / n_pairs * 1e6:7.1f} us "
                  f"per pair; CPU of this process {where}; load before {load:4.1f}; "
                  f"non-converged: {int(np.count_nonzero(np.triu(S)))})", flush=True)
    D1 = mats["one thread"][0]
    same = all(np.array_equal(D1, D) for D, _ in mats.values())
    pairs = _sample_pairs(N, pot_pairs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_pot, v_pot = _loop_rate(pot_fn, xs, pairs)
    t_ours, v_ours = _loop_rate(ours_fn, xs, pairs)
    ii, jj = np.array(pairs).T
    med = {k: float(np.median(v)) for k, v in runs.items()}
    print(_summary("one thread", runs["one thread"]))
    print(_summary("two threads", runs["two threads"]))
    print(_summary("dask 2 workers x 1 thread", runs["dask 2 workers x 1 thread"]))
    print(f"{'POT loop (extrapolated)':<26} {t_pot * n_pairs:15.1f} s  ({t_pot * 1e3:.2f} ms "
          f"per pair over {len(pairs)} random pairs)")
    print(f"{'ottools loop (extrap.)':<26} {t_ours * n_pairs:15.1f} s  ({t_ours * 1e3:.2f} ms "
          f"per pair, the single-pair function in a Python loop)")
    print(f"identical matrices (1 thread, 2 threads, Dask): {same}; "
          f"max |D - single-pair ottools| on the sample: "
          f"{np.max(np.abs(D1[ii, jj] - v_ours)):.1e}; "
          f"max |D - POT| on the sample: {np.max(np.abs(D1[ii, jj] - v_pot)):.2e}")
    print(f"ratios: two threads / one thread {med['one thread'] / med['two threads']:.2f}x; "
          f"dask / two threads {med['dask 2 workers x 1 thread'] / med['two threads']:.2f} "
          f"(time ratio, lower is better); POT loop / two threads "
          f"{t_pot * n_pairs / med['two threads']:.0f}x, POT loop / dask "
          f"{t_pot * n_pairs / med['dask 2 workers x 1 thread']:.0f}x, POT loop / one thread "
          f"{t_pot * n_pairs / med['one thread']:.0f}x")
    return med


def scaling(xs, metric, kw, repeats):
    """Short runs, interleaved ``repeats`` times: one thread, two threads, Dask. On a
    shared machine the fastest of several short runs is the one that had the cores
    (timeit's rule); the medians show the load."""
    ottools.pairwise_distances(xs[:6], metric=metric, metric_kwargs=kw, rng=0)
    names = ["one thread", "two threads", "dask 2 workers x 1 thread"]
    opts = [dict(n_jobs=1), dict(n_jobs=2), dict(scheduler="cluster")]
    runs = {n: [] for n in names}
    cpus = {n: [] for n in names}
    for _ in range(repeats):
        for name, o in zip(names, opts):
            dt, cpu, _, _ = _run(xs, metric, kw, 0, o)
            runs[name].append(dt)
            cpus[name].append(cpu)
    best = {n: min(v) for n, v in runs.items()}
    med = {n: float(np.median(v)) for n, v in runs.items()}
    print(f"\n== scaling, {metric}, N = {len(xs)} ({len(xs) * (len(xs) - 1) // 2:,} pairs), "
          f"{repeats} interleaved runs each")
    for n in names:
        extra = "" if "dask" in n else \
            f"; CPU/wall of the fastest {cpus[n][int(np.argmin(runs[n]))] / best[n]:.2f}"
        print(f"  {n:<26} fastest {best[n]:7.2f} s, median {med[n]:7.2f} s{extra}")
    print(f"  two threads / one thread: {best['one thread'] / best['two threads']:.2f}x "
          f"(fastest runs), {med['one thread'] / med['two threads']:.2f}x (medians); dask / "
          f"two threads (time): {best[names[2]] / best['two threads']:.2f} (fastest), "
          f"{med[names[2]] / med['two threads']:.2f} (medians)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="N = 200 and 40, one round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the sliced part (3)")
    ap.add_argument("--div-rounds", type=int, default=1,
                    help="rounds of the divergence part (1: about 5 minutes per round)")
    ap.add_argument("--pot-pairs", type=int, default=200,
                    help="pairs sampled for the POT loop (200; 20 for the divergence)")
    ap.add_argument("--only", choices=["sliced", "divergence", "scaling"])
    ap.add_argument("--scaling-repeats", type=int, default=7,
                    help="interleaved runs of the scaling part (7)")
    args = ap.parse_args()
    import ot

    n_sw, n_div = (200, 40) if args.quick else (1000, 200)
    rounds = 1 if args.quick else args.rounds
    div_rounds = 1 if args.quick else args.div_rounds
    print(f"ottools {ottools.__version__}, POT {ot.__version__}, {os.cpu_count()} cores "
          f"(shared machine: medians, ratios within one run)")
    if args.only in (None, "sliced"):
        xs = make_clouds(n_sw)
        L = 100
        compare(
            "sliced Wasserstein", xs, "sliced_wasserstein", {"n_projections": L}, rounds,
            lambda x, y: ot.sliced_wasserstein_distance(x, y, n_projections=L, seed=0),
            lambda x, y: ottools.sliced_wasserstein(x, y, n_projections=L, rng=0),
            args.pot_pairs)
    if args.only in (None, "scaling"):
        scaling(make_clouds(300, seed=3), "sliced_wasserstein", {"n_projections": 100},
                args.scaling_repeats)
        scaling(make_clouds(40, seed=4), "sinkhorn_divergence", {"reg": 0.5},
                args.scaling_repeats)
    if args.only in (None, "divergence"):
        xs = make_clouds(n_div, seed=2)
        reg = 0.5
        compare(
            "Sinkhorn divergence", xs, "sinkhorn_divergence", {"reg": reg}, div_rounds,
            lambda x, y: ot.bregman.empirical_sinkhorn_divergence(x, y, reg),
            lambda x, y: ottools.sinkhorn_divergence(x, y, reg=reg).fun,
            max(5, args.pot_pairs // 10))

if __name__ == "__main__":
    main()
