"""Figure of docs/guide/monge_gap.rst: writes docs/_static/monge_gap.png.

Run from the repository root: ``python docs/figures/make_monge_gap.py``.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import ottools  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), os.pardir, "_static", "monge_gap.png")


def main():
    rng = np.random.default_rng(0)
    n = 100
    x = rng.normal(size=(n, 2)) * [1.0, 0.3]
    A = np.array([[1.2, 0.4], [0.4, 0.8]])  # symmetric positive definite: an OT map
    R = np.array([[0.0, -1.0], [1.0, 0.0]])  # rotation by 90 degrees: not an OT map
    ts = np.linspace(0, 1, 11)
    regs = (0.03, 0.1)
    exact, entropic, auto = [], {r: [] for r in regs}, []
    for t in ts:
        tx = x @ ((1 - t) * A + t * R).T
        exact.append(ottools.monge_gap(x, tx, reg=0).fun)
        for r in regs:
            res = ottools.monge_gap(x, tx, reg=r, tol=1e-5, maxiter=20_000)
            entropic[r].append(res.fun if res.success else np.nan)
        res = ottools.monge_gap(x, tx, tol=1e-5)
        auto.append(res.fun if res.success else np.nan)

    eps = np.geomspace(0.03, 3.0, 9)
    tx = x @ A.T
    bias = []
    for e in eps:
        res = ottools.monge_gap(x, tx, reg=e, tol=1e-5, maxiter=20_000)
        bias.append(res.fun if res.success else np.nan)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.6), dpi=110)
    ax1.plot(ts, exact, "k-", lw=2, label="exact (reg=0)")
    for r, ls in zip(regs, ("--", ":")):
        ax1.plot(ts, entropic[r], "C0" + ls, label=f"entropic, reg={r}")
    ax1.plot(ts, auto, "C1-.", label='entropic, reg="auto"')
    ax1.set_xlabel(r"$t$ in $T_t = ((1-t)A + tR)\,x$")
    ax1.set_ylabel("Monge gap")
    ax1.set_title("OT map ($t=0$) to a rotation ($t=1$)")
    ax1.legend(fontsize=8)

    ax2.loglog(eps, bias, "C0o-", label="entropic gap of the OT map")
    ax2.loglog(eps, eps * np.log(n), "k--", label=r"$\varepsilon \log n$")
    ax2.loglog(eps, 2 * eps * np.log(n), "k:", label=r"$2\varepsilon \log n$")
    ax2.set_xlabel(r"reg $\varepsilon$")
    ax2.set_ylabel("gap (exact gap is 0)")
    ax2.set_title(f"Entropic bias, n = {n}")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
