"""Figures of docs/guide/sparse.rst: writes PNGs into docs/_static/.

    PYTHONPATH=. python docs/figures/make_sparse.py
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import ottools  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), os.pardir, "_static")


def gaussian(x, mean, std):
    h = np.exp(-0.5 * ((x - mean) / std) ** 2)
    return h / h.sum()


def toy_plans():
    """The paper's toy problem: plans for k = 1, 2, 5 and n (quadratic OT)."""
    n = 100
    x = np.arange(n, dtype=np.float64)
    a, b = gaussian(x, 20, 5), gaussian(x, 60, 10)
    cost = (x[:, None] - x[None, :]) ** 2
    cost /= cost.max()
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), constrained_layout=True)
    for ax, k in zip(axes, [1, 2, 5, n]):
        if k == n:
            res = ottools.quadratic_ot(a, b, cost, 0.1, formulation="semi-dual")
            title = f"k = n = {n} (quadratic_ot)"
        else:
            res = ottools.sparsity_constrained_ot(a, b, cost, 0.1, k)
            title = f"k = {k}"
        P = res.plan.toarray()
        ax.imshow(P[:60, 20:100] > 0, cmap="Greys", origin="lower", aspect="auto",
                  extent=(19.5, 99.5, -0.5, 59.5), interpolation="nearest")
        ax.set_title(f"{title}\nnnz = {res.plan.nnz}, err = {res.err:.1e}", fontsize=9)
        ax.set_xlabel("target bin j")
    axes[0].set_ylabel("source bin i")
    fig.savefig(os.path.join(OUT, "sparse_toy_plans.png"), dpi=90)
    plt.close(fig)


def moe_routing():
    """Tokens routed to experts; each expert receives at most k tokens."""
    rng = np.random.default_rng(0)
    n_tokens, n_experts, k = 48, 6, 10
    tokens = rng.standard_normal((n_tokens, 2))
    experts = 2.0 * np.stack([np.cos(np.arange(n_experts) * 2 * np.pi / n_experts),
                              np.sin(np.arange(n_experts) * 2 * np.pi / n_experts)], 1)
    cost = -tokens @ experts.T  # negative affinity
    cost -= cost.min()
    cost /= cost.max()
    res = ottools.sparsity_constrained_ot(None, None, cost, 0.05, k)
    P = res.plan.toarray()
    greedy = cost.argmin(1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    colors = plt.cm.tab10(np.arange(n_experts))
    for ax, assign, title in [
        (axes[0], greedy, f"greedy top-1: loads {np.bincount(greedy, minlength=n_experts)}"),
        (axes[1], P.argmax(1), f"sparsity-constrained OT (k = {k}): loads "
                               f"{(P > 0).sum(0)}"),
    ]:
        for e in range(n_experts):
            ax.scatter(*experts[e], s=250, marker="*", color=colors[e], edgecolor="k",
                       zorder=3)
        for i in range(n_tokens):
            if ax is axes[1]:
                for e in np.flatnonzero(P[i] > 0):
                    ax.plot(*np.stack([tokens[i], experts[e]]).T, color=colors[e],
                            alpha=0.25 + 0.75 * P[i, e] / P.max(), lw=1)
            ax.scatter(*tokens[i], s=18, color=colors[assign[i]], zorder=2)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(os.path.join(OUT, "sparse_moe_routing.png"), dpi=90)
    plt.close(fig)
    return res


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    toy_plans()
    moe_routing()
