"""Overhead of the differentiable layer: ottools.torch forward + backward vs the NumPy call.

Usage::

    PYTHONPATH=. python benchmarks/torch_overhead.py [--n 2000] [--reg 0.05] [--repeats 7]
        [--dtype float64] [--torch-threads N]

Each row times, on the same problem (uniform points in the unit square, uniform weights,
squared Euclidean cost, same ``tol``), a torch call plus ``.backward()`` against its NumPy
peer, interleaved, and prints the median wall-clock times, their ratio (target: <= 1.3) and
the ratio of median process CPU times (steadier on a shared machine).

- ``sinkhorn_loss(debias=False)`` vs ``ottools.sinkhorn(a, b, cost_matrix(x, y), reg)``;
- ``sinkhorn(a, b, cost)`` (cost given) vs ``ottools.sinkhorn(a, b, cost, reg)``;
- ``sinkhorn_loss(debias=True)`` vs ``ottools.sinkhorn_divergence(x, y, reg)``.
"""

import argparse
import statistics
import sys
import time
import warnings

import numpy as np
import torch

import ottools
import ottools.torch as ott


def _median_pair(run_a, run_b, repeats):
    """Medians of wall-clock and process CPU times of two interleaved callables."""
    wa, wb, ca, cb = [], [], [], []
    for _ in range(repeats):
        for run, wall, cpu in ((run_a, wa, ca), (run_b, wb, cb)):
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
    med = statistics.median
    return med(wa), med(wb), med(ca), med(cb)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=2)
    parser.add_argument("--reg", type=float, default=0.05)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: leave torch's choice)")
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    rng = np.random.default_rng(0)
    dt = np.dtype(args.dtype)
    tdt = torch.float64 if dt == np.float64 else torch.float32
    x = rng.random((args.n, args.d)).astype(dt)
    y = rng.random((args.n, args.d)).astype(dt)
    cost = ottools.cost_matrix(x, y)
    kw = dict(tol=args.tol)

    def np_points():
        return ottools.sinkhorn(None, None, ottools.cost_matrix(x, y), args.reg, **kw)

    def np_cost():
        return ottools.sinkhorn(None, None, cost, args.reg, **kw)

    def np_divergence():
        return ottools.sinkhorn_divergence(x, y, reg=args.reg, **kw)

    def torch_loss(debias):
        def run():
            xt = torch.from_numpy(x).requires_grad_()
            yt = torch.from_numpy(y).requires_grad_()
            ott.sinkhorn_loss(xt, yt, reg=args.reg, debias=debias, **kw).backward()
        return run

    def torch_cost():
        ct = torch.from_numpy(cost).requires_grad_()
        ott.sinkhorn(None, None, ct, args.reg, **kw).backward()

    res = np_cost()  # compiles the kernels
    print(f"n = m = {args.n}, d = {args.d}, reg = {args.reg}, tol = {args.tol}, "
          f"dtype = {args.dtype}, method = {res.method}, nit = {res.nit}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = [
        ("sinkhorn_loss(debias=False) fwd+bwd", torch_loss(False),
         "sinkhorn(cost_matrix(x, y))", np_points),
        ("sinkhorn(cost) fwd+bwd", torch_cost, "sinkhorn(cost)", np_cost),
        ("sinkhorn_loss(debias=True) fwd+bwd", torch_loss(True),
         "sinkhorn_divergence(x, y)", np_divergence),
    ]
    print(f"{'torch call':37s} {'NumPy peer':28s} {'torch s':>8s} {'NumPy s':>8s} "
          f"{'ratio':>6s} {'CPU-time ratio':>14s}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ottools.OTConvergenceWarning)
        for name_t, run_t, name_n, run_n in rows:
            run_t()
            t_torch, t_np, c_torch, c_np = _median_pair(run_t, run_n, args.repeats)
            print(f"{name_t:37s} {name_n:28s} {t_torch:8.4f} {t_np:8.4f} "
                  f"{t_torch / t_np:6.2f} {c_torch / c_np:14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
