"""Speed of the sliced family against its peers (ratios measured in the same process).

    PYTHONPATH=. python benchmarks/sliced_speed.py [--quick]

* ``sliced_wasserstein`` vs POT's ``sliced_wasserstein_distance`` at d = 3, 500
  projections, n = m = 10,000 and 100,000, the same explicit projections (POT at 100k
  takes about half a minute: it runs once; ottools runs are medians of 3);
* ``wasserstein_1d`` vs ``scipy.stats.wasserstein_distance`` at n = 1,000,000
  (medians of 5).
"""

import sys
import time

import numpy as np
import scipy.stats

import ottools


def _median_time(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def sliced_vs_pot(n, pot_repeats, ours_repeats=3, d=3, L=500):
    import ot

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d)) * [2.0, 1.0, 0.5] + 1.0
    theta = rng.normal(size=(L, d))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    ottools.sliced_wasserstein(x[:100], y[:100], directions=theta)  # compile
    t_ours, v_ours = _median_time(
        lambda: ottools.sliced_wasserstein(x, y, directions=theta), ours_repeats)
    t_pot, v_pot = _median_time(
        lambda: ot.sliced_wasserstein_distance(x, y, projections=theta.T), pot_repeats)
    print(f"sliced_wasserstein n={n:>7,} d={d} L={L}: ottools {t_ours:8.3f} s, "
          f"POT {t_pot:8.3f} s, ratio POT/ottools {t_pot / t_ours:6.1f}x, "
          f"|diff| {abs(float(v_ours) - float(v_pot)):.1e}")
    return t_pot / t_ours


def onedim_vs_scipy(n, repeats=5):
    rng = np.random.default_rng(1)
    u = rng.normal(size=n)
    v = rng.exponential(size=n)
    ottools.wasserstein_1d(u[:10], v[:10])  # compile
    for label, uw, vw in (("uniform", None, None), ("weighted", rng.random(n), rng.random(n))):
        t_ours, v_ours = _median_time(lambda: ottools.wasserstein_1d(u, v, uw, vw), repeats)
        t_sp, v_sp = _median_time(
            lambda: scipy.stats.wasserstein_distance(u, v, uw, vw), repeats)
        print(f"wasserstein_1d n={n:,} {label:>8}: ottools {t_ours:7.4f} s, "
              f"SciPy {t_sp:7.4f} s, ratio SciPy/ottools {t_sp / t_ours:5.1f}x, "
              f"|diff| {abs(float(v_ours) - float(v_sp)):.1e}")


def main(quick=False):
    if quick:
        sliced_vs_pot(10_000, 1)
        onedim_vs_scipy(100_000)
        return
    sliced_vs_pot(10_000, 3)
    sliced_vs_pot(100_000, 1)
    onedim_vs_scipy(1_000_000)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
