"""Figure of docs/guide/sns.rst: err vs iteration and vs seconds, SNS against log-Sinkhorn.

Writes ``docs/_static/sns_convergence.png``. Problems from ``benchmarks/sns_paper.py``
(reg = 1/1200 on costs in [0, 1]); the log-Sinkhorn runs stop after ``CAP`` seconds.
The annealed warm-up iterations of SNS (err not computed at reg) are not plotted.

    PYTHONPATH=. python docs/figures/make_sns.py
"""

import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import ottools  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
import sns_paper  # noqa: E402

CAP = 30.0
PROBLEMS = ["rand", "w1", "w2", "digits-l2"]


def trace(a, b, C, method, options, cap=None):
    """(nit, seconds, err) after every callback; warm (compiled) run."""
    ottools.sinkhorn(a, b, C, sns_paper.REG, method=method, tol=1e-9, maxiter=3,
                     options=options)
    its, secs, errs = [], [], []
    t0 = time.perf_counter()

    def cb(r):
        t = time.perf_counter() - t0
        its.append(r.nit)
        secs.append(t)
        errs.append(r.err)
        if cap is not None and t > cap:
            raise StopIteration

    res = ottools.sinkhorn(a, b, C, sns_paper.REG, method=method, tol=1e-9,
                           maxiter=10**7, callback=cb, options=options)
    if method == "sns":
        # the callback sees the err of the previous iterate in stage 1; use the history
        errs = list(res.err_history[np.array(its) - 1])
    if not its or its[-1] != res.nit:  # the last iterate (a converged log run included)
        its.append(res.nit)
        secs.append(time.perf_counter() - t0)
        errs.append(res.err)
    return np.array(its), np.array(secs), np.array(errs)


def main():
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, key in enumerate(PROBLEMS):
        title, make = sns_paper.PROBLEMS[key]
        a, b, C, _ = make()
        runs = [("sns", {"check_every": 1}, "-", "SNS"),
                ("log", {"check_every": 20}, ":", "log-Sinkhorn")]
        for method, opts, ls, label in runs:
            its, secs, errs = trace(a, b, C, method, opts, None if method == "sns" else CAP)
            print(f"{key:10s} {method:4s} nit={its[-1]:6d} s={secs[-1]:6.2f} err={errs[-1]:.1e}")
            keep = np.isfinite(errs)
            axes[0].semilogy(its[keep], errs[keep], ls, color=colors[k],
                             label=f"{label}, {title}")
            axes[1].semilogy(secs[keep], errs[keep], ls, color=colors[k])
    for ax, xl in zip(axes, ["iterations", "seconds"]):
        ax.axhline(1e-9, color="0.6", lw=0.8)
        ax.set_xlabel(xl)
        ax.set_xscale("symlog", linthresh=100 if xl == "iterations" else 1)
        ax.set_ylim(1e-15, 1e2)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("marginal error err")
    axes[0].legend(fontsize=6.5, loc="lower left")
    fig.suptitle(f"reg = 1/1200; log-Sinkhorn stopped after {CAP:g} s", fontsize=9)
    fig.tight_layout()
    out = os.path.join(HERE, "..", "_static", "sns_convergence.png")
    fig.savefig(out, dpi=110)
    print("wrote", os.path.normpath(out), os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
