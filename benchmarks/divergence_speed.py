"""Sinkhorn divergence and the torch loss against POT and GeomLoss, at equal accuracy.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/divergence_speed.py divergence --n 5000
    PYTHONPATH=. python benchmarks/divergence_speed.py torch --n 2000 5000

``divergence``: ``ottools.sinkhorn_divergence`` on two clouds of n uniform points in
[0, 1]^3 (the second shifted by 0.1), squared Euclidean cost, eps = 0.01, at
``tol`` = 1e-6 and 1e-9, against POT's ``ot.bregman.empirical_sinkhorn_divergence``
(which combines the linear costs of its three plans: another quantity, see the docs)
and OTT-JAX's ``ott.tools.sinkhorn_divergence`` (float64, jitted; skipped when not
installed; its converged value is compared with ours).
Each library's value is compared with its own value at a much tighter tolerance (ours:
tol 1e-11; POT: stopThr 1e-12; OTT-JAX: threshold 1e-11), and each is run at its loosest
tolerance (from 1e-4, 1e-5, 1e-6 for ours; 1e-5, 1e-7, 1e-9 for POT; 1e-2 down to 1e-9
for OTT-JAX) whose value is within 1e-6 (relative) of that converged value.

``torch``: ``ottools.torch.sinkhorn_loss`` forward + backward in float32 at n = 2000 and
5000 (same clouds), against GeomLoss's ``SamplesLoss("sinkhorn", p=2, debias=True)``
(tensorized; points scaled by sqrt(2) so that its cost ``|x - y|^2 / 2`` is ours) at
``scaling`` 0.5 (its default-like fast setting) and at the smallest scaling whose
gradient has cosine >= 0.9999 with the converged one (ours at tol 1e-9 in float64);
gradient accuracy reported for every row; and against OTT-JAX's divergence
(``jax.value_and_grad``, jitted, float32 then float64) at the loosest threshold whose
gradient reaches that cosine.

Medians over ``--repeat`` runs in one process (the machine may be busy: ratios are in
the same run).
"""

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ottools  # noqa: E402


def clouds(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)), rng.random((n, 3)) + 0.1


def timed(fn, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), min(ts), max(ts), out


def divergence(args):
    import ot

    for n in args.n:
        x, y = clouds(n)
        reg = 0.01
        ottools.sinkhorn_divergence(x[:300], y[:300], reg=reg)
        ref = ottools.sinkhorn_divergence(x, y, reg=reg, tol=1e-11).fun
        for tol in (1e-4, 1e-5, 1e-6):  # the loosest tol whose value is within 1e-6
            t, lo, hi, res = timed(lambda: ottools.sinkhorn_divergence(x, y, reg=reg, tol=tol),
                                   args.repeat)
            err = abs(res.fun - ref) / abs(ref)
            print(f"n={n} ottools tol={tol:g}: {t:.2f} s [{lo:.2f}-{hi:.2f}] value rel. error "
                  f"{err:.1e}, nit xy/xx/yy {res.xy.nit}/"
                  f"{res.xx.nit}/{res.yy.nit} stages {'+'.join(res.xy.stages)}", flush=True)
            if err <= 1e-6:
                break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pref = float(ot.bregman.empirical_sinkhorn_divergence(x, y, reg, stopThr=1e-12,
                                                                  numIterMax=100_000))
            for thr in (1e-5, 1e-7, 1e-9):
                t, lo, hi, val = timed(lambda: float(ot.bregman.empirical_sinkhorn_divergence(
                    x, y, reg, stopThr=thr, numIterMax=100_000)), 1)
                err = abs(val - pref) / abs(pref)
                print(f"n={n} POT stopThr={thr:g}: {t:.2f} s value rel. error {err:.1e}",
                      flush=True)
                if err <= 1e-6:
                    break
        ott_divergence(x, y, reg, args.repeat)


def ott_divergence(x, y, reg, repeat):
    """OTT-JAX's ``sinkhorn_divergence`` (float64, jitted, PointCloud geometry with its
    squared Euclidean cost, absolute epsilon), tightened until its value is within 1e-6
    of its own value at threshold 1e-11; skipped when OTT-JAX is not installed."""
    try:
        import jax
        from ott.geometry import pointcloud
        from ott.tools import sinkhorn_divergence as ott_sd
    except ImportError:
        print("OTT-JAX not installed: skipped", flush=True)
        return
    jax.config.update("jax_enable_x64", True)
    xj, yj = jax.numpy.asarray(x), jax.numpy.asarray(y)

    def make(thr):
        kw = {"threshold": thr, "max_iterations": 100_000}
        return jax.jit(lambda u, v: ott_sd.sinkhorn_divergence(
            pointcloud.PointCloud, u, v, epsilon=reg, solve_kwargs=kw)[0])

    n = x.shape[0]
    ref_fn = make(1e-11)
    ref = float(ref_fn(xj, yj))
    ours = ottools.sinkhorn_divergence(x, y, reg=reg, tol=1e-11).fun
    print(f"n={n} OTT-JAX {ott_version()} converged value vs ours: rel. diff "
          f"{abs(ref - ours) / abs(ours):.1e}", flush=True)
    for thr in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-9):
        fn = make(thr)
        float(fn(xj, yj))  # compile
        t, lo, hi, val = timed(lambda: float(fn(xj, yj).block_until_ready()), repeat)
        err = abs(val - ref) / abs(ref)
        print(f"n={n} OTT-JAX threshold={thr:g}: {t:.2f} s [{lo:.2f}-{hi:.2f}] value rel. "
              f"error {err:.1e}", flush=True)
        if err <= 1e-6:
            break


def ott_version():
    import ott
    return getattr(ott, "__version__", "?")


def torch_loss(args):
    import torch

    import ottools.torch as ott

    try:
        from geomloss import SamplesLoss
    except ImportError:
        SamplesLoss = None
    reg = 0.01
    for n in args.n:
        x, y = clouds(n)
        g_ref = ott.sinkhorn_loss(torch.tensor(x, requires_grad=True), torch.tensor(y),
                                  reg=reg, tol=1e-9)
        xr = torch.tensor(x, requires_grad=True)
        ott.sinkhorn_loss(xr, torch.tensor(y), reg=reg, tol=1e-9).backward()
        g_ref = xr.grad.numpy().ravel()
        xf, yf = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)

        def cosine(g):
            g = np.asarray(g, dtype=np.float64).ravel()
            return float(g @ g_ref / np.linalg.norm(g) / np.linalg.norm(g_ref))

        def ours():
            xx = xf.clone().requires_grad_()
            loss = ott.sinkhorn_loss(xx, yf, reg=reg)
            loss.backward()
            return loss.item(), xx.grad.numpy()

        ours()
        t_o, lo, hi, (v, g) = timed(ours, args.repeat)
        print(f"n={n} ottools float32 fwd+bwd {t_o:.2f} s [{lo:.2f}-{hi:.2f}] gradient "
              f"cosine {cosine(g):.6f}", flush=True)
        if SamplesLoss is None:
            continue
        s = math.sqrt(2.0)
        for scaling in (0.5, 0.7, 0.8, 0.9, 0.95):
            loss_fn = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(reg), scaling=scaling,
                                  debias=True, backend="tensorized")

            def peer():
                xx = (xf * s).clone().requires_grad_()
                loss = loss_fn(xx, yf * s)
                loss.backward()
                return loss.item(), xx.grad.numpy() * s  # d/dx = s d/d(sx)

            t_g, _, _, (vg, gg) = timed(peer, args.repeat)
            c = cosine(gg)
            print(f"n={n} GeomLoss scaling {scaling}: {t_g:.2f} s gradient cosine {c:.6f}, "
                  f"ratio {t_g / t_o:.1f}x", flush=True)
            if c >= 0.9999:
                break
        ott_loss(x, y, reg, cosine, t_o, args.repeat)


def ott_loss(x, y, reg, cosine, t_ours, repeat):
    """OTT-JAX's ``sinkhorn_divergence`` value and gradient in x (``jax.value_and_grad``,
    jitted, implicit differentiation, its default), float32 then float64, at the loosest
    threshold whose gradient has cosine >= 0.9999 with the converged one."""
    try:
        import jax
        from ott.geometry import pointcloud
        from ott.tools import sinkhorn_divergence as ott_sd
    except ImportError:
        print("OTT-JAX not installed: skipped", flush=True)
        return
    n = x.shape[0]
    for dtype in ("float32", "float64"):
        # float32 runs with x64 off (OTT's error branch mixes dtypes otherwise)
        jax.config.update("jax_enable_x64", dtype == "float64")
        xj, yj = jax.numpy.asarray(x, dtype=dtype), jax.numpy.asarray(y, dtype=dtype)
        for thr in (1e-2, 1e-3, 1e-4, 1e-5):
            kw = {"threshold": thr, "max_iterations": 100_000}
            fn = jax.jit(jax.value_and_grad(lambda u, v: ott_sd.sinkhorn_divergence(
                pointcloud.PointCloud, u, v, epsilon=reg, solve_kwargs=kw)[0]))
            fn(xj, yj)[1].block_until_ready()  # compile

            def peer():
                v, g = fn(xj, yj)
                return float(v), np.asarray(g.block_until_ready())

            t, lo, hi, (v, g) = timed(peer, repeat)
            c = cosine(g)
            print(f"n={n} OTT-JAX {dtype} threshold={thr:g}: {t:.2f} s [{lo:.2f}-{hi:.2f}] "
                  f"gradient cosine {c:.6f}, ratio {t / t_ours:.1f}x", flush=True)
            if c >= 0.9999:
                break


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["divergence", "torch"])
    ap.add_argument("--n", type=int, nargs="+", default=[5000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    (divergence if args.what == "divergence" else torch_loss)(args)


if __name__ == "__main__":
    main()
