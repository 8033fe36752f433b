"""Figures of the sliced Wasserstein guide (docs/guide/sliced.rst).

    PYTHONPATH=. python docs/figures/make_sliced.py

Writes ``docs/_static/sliced_estimators.png`` and ``docs/_static/sliced_flow.png``.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import ottools  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "_static")


def estimator_variance(seeds=40):
    rng = np.random.default_rng(0)
    d = 10
    x = rng.normal(size=(500, d))
    y = rng.normal(size=(500, d)) * np.linspace(0.5, 1.5, d) + 1.0
    Ls = [10, 20, 50, 100, 200, 500]
    runs = {
        "mc (random)": dict(),
        "qmc": dict(directions="qmc"),
        "orthogonal": dict(directions="orthogonal"),
        "lower-cv": dict(estimator="lower-cv"),
        "upper-cv": dict(estimator="upper-cv"),
    }
    fig, ax = plt.subplots(figsize=(7.5, 4.0), dpi=100)
    for label, kw in runs.items():
        var = []
        for L in Ls:
            vals = [ottools.sliced_wasserstein(x, y, n_projections=L, rng=s, **kw) ** 2
                    for s in range(seeds)]
            var.append(np.var(vals, ddof=1))
        ax.loglog(Ls, var, "o-", label=label)
    ax.set_xlabel("n_projections L")
    ax.set_ylabel(r"variance of the $SW_2^2$ estimate")
    ax.set_title(f"d = {d}, n = 500, {seeds} seeds per point")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "sliced_estimators.png"))
    plt.close(fig)


def sw_flow_step(x, y, rng, n_projections=50, lr=1.0):
    """One explicit Euler step of the SW_2^2 gradient flow (equal sizes, uniform weights).

    On each direction the optimal 1-D coupling pairs the k-th smallest projection of
    ``x`` with the k-th smallest of ``y``; the gradient of W_2^2 / n w.r.t. ``x_i`` is
    ``2 (theta.x_i - theta.y_sigma(i)) theta``.
    """
    n, d = x.shape
    theta = rng.normal(size=(n_projections, d))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    px, py = theta @ x.T, theta @ y.T                       # (L, n)
    ix = np.argsort(px, axis=1)
    py_sorted = np.sort(py, axis=1)
    target = np.empty_like(px)
    np.put_along_axis(target, ix, py_sorted, axis=1)       # theta.y_sigma(i) for each x_i
    grad = 2.0 * (px - target).T @ theta / n_projections    # n * d SW_2^2 / d x_i
    return x - lr * 0.5 * grad


def gradient_flow():
    rng = np.random.default_rng(3)
    n = 400
    x = rng.normal(size=(n, 2)) * 0.3 + [-2.0, 0.0]
    t = rng.uniform(0, 2 * np.pi, n)
    y = np.c_[np.cos(t), np.sin(t)] * (1.0 + 0.1 * rng.normal(size=n))[:, None] + [1.0, 0.5]
    snaps = {0: x.copy()}
    sw = []
    steps = 200
    for k in range(1, steps + 1):
        x = sw_flow_step(x, y, rng)
        if k in (5, 20, 200):
            snaps[k] = x.copy()
        sw.append(ottools.sliced_wasserstein(x, y, n_projections=200, rng=0))
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.2), dpi=80)
    for ax, (k, xs) in zip(axes, snaps.items()):
        ax.scatter(y[:, 0], y[:, 1], s=3, c="tab:orange", label="target")
        ax.scatter(xs[:, 0], xs[:, 1], s=3, c="tab:blue", label="particles")
        ax.set_title(f"step {k}")
        ax.set_xlim(-3.2, 2.4)
        ax.set_ylim(-1.5, 2.0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(loc="lower left", fontsize=7)
    axes[-1].semilogy(np.arange(1, steps + 1), sw)
    axes[-1].set_xlabel("step")
    axes[-1].set_title(r"$SW_2$ (200 projections)")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "sliced_flow.png"))
    plt.close(fig)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    estimator_variance()
    gradient_flow()
