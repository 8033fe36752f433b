"""Figures of docs/guide/torch.rst: writes docs/_static/torch_flow.png and
docs/_static/torch_monge_map.png, and prints the numbers quoted in the guide.

Run from the repository root: ``python docs/figures/make_torch.py``.
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "examples"))
from torch_examples import fit_gaussian_map, sliced_flow  # noqa: E402

STATIC = os.path.join(os.path.dirname(__file__), os.pardir, "_static")


def flow_figure():
    record = (0, 5, 20, 200)
    r = sliced_flow(n=400, steps=200, record=record, seed=0)
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.4),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.3]})
    for ax, step in zip(axes[:4], record):
        ax.scatter(*r["y"].T, s=4, c="0.75", label="target")
        ax.scatter(*r["snapshots"][step].T, s=4, c="C0", label="particles")
        ax.set_title(f"step {step}")
        ax.set_xlim(-2.3, 2.3)
        ax.set_ylim(-1.0, 2.3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(loc="lower right", fontsize=7, markerscale=3)
    ax = axes[4]
    ax.semilogy(r["steps"], r["sw"], "C0")
    ax.set_xlabel("SGD step")
    ax.set_ylabel(r"$SW_2$ to the target (500 directions)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(STATIC, "torch_flow.png"), dpi=80)
    plt.close(fig)
    print(f"flow: SW_2 {r['sw'][0]:.3f} -> {r['sw'][-1]:.4f} "
          f"({r['sw'][0] / r['sw'][-1]:.0f}x lower) in {r['steps'][-1]} steps")


def monge_figure():
    r = fit_gaussian_map(n=128, steps=300, seed=0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
    k = slice(0, 30)
    for ax, key, title in ((axes[0], "t_unreg", "Sinkhorn divergence only"),
                           (axes[1], "t_reg", "Sinkhorn divergence + Monge gap")):
        ax.scatter(*r["y"][:600].T, s=3, c="0.8", label="target samples")
        ax.scatter(*r["x"][:600].T, s=3, c="C0", alpha=0.4, label="source samples")
        x, t, ot = r["x"][k], r[key][k], r["t_ot"][k]
        for i in range(x.shape[0]):
            ax.plot([x[i, 0], ot[i, 0]], [x[i, 1], ot[i, 1]], c="k", lw=0.5, alpha=0.5)
            ax.plot([x[i, 0], t[i, 0]], [x[i, 1], t[i, 1]], c="C3", lw=0.8, alpha=0.8)
        ax.plot([], [], c="k", lw=0.5, label="closed-form OT map")
        ax.plot([], [], c="C3", lw=0.8, label=r"fitted $T_\theta$")
        mse = r["mse_unregularized" if key == "t_unreg" else "mse_regularized"]
        ax.set_title(f"{title}\nMSE to the OT map: {mse:.3f}")
        ax.set_aspect("equal")
    axes[0].legend(loc="lower left", fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(os.path.join(STATIC, "torch_monge_map.png"), dpi=80)
    plt.close(fig)
    print(f"monge: MSE to the OT map, regularized {r['mse_regularized']:.4f}, "
          f"unregularized {r['mse_unregularized']:.4f}; Sinkhorn divergence to the target "
          f"{r['fit_regularized']:.4f} / {r['fit_unregularized']:.4f}")


def main():
    os.makedirs(STATIC, exist_ok=True)
    flow_figure()
    monge_figure()


if __name__ == "__main__":
    main()
