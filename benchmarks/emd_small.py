"""Exact OT where POT's network simplex is faster: grid histograms and small problems.

Usage (from the repository root; timing jobs must not overlap)::

    flock /tmp/ottools-bench.lock env PYTHONPATH=. python benchmarks/emd_small.py --repeat 5

Problems: 28 x 28 grid histograms (Gaussian blobs at (10, 12) and (16, 14), widths 3 and
4, bins below 1e-3 of the peak set to 0: 382 and 643 positive bins; and the same with a
1e-4 floor added, 784 x 784), squared Euclidean grid cost divided by its max; uniform
2-D points, n = m = 20, 100, 1000 (seed 0). ``ottools.emd`` and ``ot.emd2`` alternate
``--repeat`` times in this one process after a warm-up (medians); the ratio is POT time /
ottools time (> 1: ottools faster), and the two optimal values are compared.
"""

import argparse
import time

import numpy as np

import ottools


def problems():
    g = np.stack(np.meshgrid(np.arange(28), np.arange(28), indexing="ij"), -1)
    g = g.reshape(-1, 2).astype(float)
    Cg = ottools.cost_matrix(g, g)
    Cg /= Cg.max()

    def blob(c, s, floor):
        h = np.exp(-((g - c) ** 2).sum(1) / (2 * s * s))
        h[h < 1e-3 * h.max()] = 0
        h += floor
        return h / h.sum()

    out = {}
    for floor in (0.0, 1e-4):
        out[f"grid 28x28, floor {floor:g}"] = (blob(np.array([10.0, 12.0]), 3, floor),
                                              blob(np.array([16.0, 14.0]), 4, floor), Cg)
    rng = np.random.default_rng(0)
    for n in (20, 100, 1000):
        X, Y = rng.random((n, 2)), rng.random((n, 2))
        C = ottools.cost_matrix(X, Y)
        C /= C.max()
        out[f"uniform 2-D, n = {n}"] = (np.full(n, 1 / n), np.full(n, 1 / n), C)
    return out


def main():
    import ot

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for name, (a, b, C) in problems().items():
        ottools.emd(a, b, C)
        ot.emd2(a, b, C)
        to, tp = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            v = ottools.emd(a, b, C).fun
            to.append(time.perf_counter() - t)
            t = time.perf_counter()
            w = ot.emd2(a, b, C)
            tp.append(time.perf_counter() - t)
        mo, mp = np.median(to), np.median(tp)
        print(f"{name}: ottools {mo * 1e3:.3f} ms [{min(to) * 1e3:.3f}-{max(to) * 1e3:.3f}] | "
              f"POT {mp * 1e3:.3f} ms [{min(tp) * 1e3:.3f}-{max(tp) * 1e3:.3f}] | "
              f"POT/ottools {mp / mo:.2f} | |value difference| {abs(v - w):.1e}", flush=True)


if __name__ == "__main__":
    main()
