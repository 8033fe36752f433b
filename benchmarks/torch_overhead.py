"""Overhead of the differentiable layer: ottools.torch forward + backward vs the NumPy call.

Usage::

    PYTHONPATH=. python benchmarks/torch_overhead.py [--n 2000] [--reg 0.05] [--repeats 7]
        [--dtype float64] [--torch-threads N]

Each row times, on the same problem (uniform points in the unit square, uniform weights,
squared Euclidean cost, same ``tol``), a torch call plus ``.backward()`` against its NumPy
peer, interleaved, and prints the median times and their ratio (target: <= 1.3).

- ``sinkhorn_loss(debias=False)`` vs ``ottools.sinkhorn(a, b, cost_matrix(x, y), reg)``;
- ``sinkhorn(a, b, cost)`` (cost given) vs ``ottools.sinkhorn(a, b, cost, reg)``;
- ``sinkhorn_loss(debias=True)`` vs the three NumPy solves of the divergence.
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
    ta, tb = [], []
    for _ in range(repeats):
        for run, acc in ((run_a, ta), (run_b, tb)):
            t0 = time.perf_counter()
            run()
            acc.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


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
        return [ottools.sinkhorn(None, None, ottools.cost_matrix(u, v), args.reg, **kw)
                for u, v in ((x, y), (x, x), (y, y))]

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
         "3 x sinkhorn(cost_matrix)", np_divergence),
    ]
    print(f"{'torch call':40s} {'NumPy peer':30s} {'torch s':>9s} {'NumPy s':>9s} "
          f"{'ratio':>6s}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ottools.OTConvergenceWarning)
        for name_t, run_t, name_n, run_n in rows:
            run_t()
            t_torch, t_np = _median_pair(run_t, run_n, args.repeats)
            print(f"{name_t:40s} {name_n:30s} {t_torch:9.4f} {t_np:9.4f} "
                  f"{t_torch / t_np:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
