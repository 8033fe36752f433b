"""The two worked examples of the torch guide, as functions (not part of the package).

The documentation's figure script (``docs/figures/make_torch.py``) and the test suite
(``tests/test_torch.py``, at reduced size) run the same code; it needs torch and SciPy.
"""

import numpy as np
import torch
from scipy.linalg import sqrtm

import ottools
from ottools.torch import MongeGapRegularizer, SinkhornLoss, SlicedWassersteinLoss

__all__ = ["fit_gaussian_map", "gaussian_ot_map", "sliced_flow", "two_moons"]


def two_moons(n, *, noise=0.06, rng=None):
    """``n`` points on two interleaved half circles (the flow's target)."""
    rng = np.random.default_rng(rng)
    t = rng.uniform(0.0, np.pi, n)
    upper = rng.random(n) < 0.5
    pts = np.where(upper[:, None],
                   np.c_[np.cos(t), np.sin(t)],
                   np.c_[1.0 - np.cos(t), 0.5 - np.sin(t)])
    return pts + noise * rng.standard_normal((n, 2))


def sliced_flow(n=300, steps=200, *, n_projections=50, step_size=1.0, record=None, seed=0):
    """Gradient flow of a point cloud towards two moons, driven by SW_2^2.

    The particles ``x`` (a Gaussian blob) follow ``x <- x - step_size * (n / 2) *
    grad SW_2^2(x, y)`` (plain SGD on the tensor ``x``; ``n / 2`` makes one unit of
    ``step_size`` move each particle towards its matched projections), with fresh random
    directions at every step from :class:`SlicedWassersteinLoss`.

    Returns
    -------
    dict
        ``x0``, ``y`` (target), ``x`` (final), ``snapshots`` ({step: array}),
        ``steps`` and ``sw`` (arrays: SW_2 between the cloud and the target, measured
        with 500 fixed directions by :func:`ottools.sliced_wasserstein`).
    """
    rng = np.random.default_rng(seed)
    y = two_moons(n, rng=rng)
    x0 = 0.25 * rng.standard_normal((n, 2)) + [-1.5, 1.5]
    record = set(record or ())
    x = torch.tensor(x0, requires_grad=True)
    yt = torch.tensor(y)
    loss_fn = SlicedWassersteinLoss(n_projections=n_projections, rng=rng)
    opt = torch.optim.SGD([x], lr=step_size * n / 2)

    def measure(pts):
        return float(ottools.sliced_wasserstein(pts, y, n_projections=500, rng=12345))

    hist_steps, hist_sw, snapshots = [0], [measure(x0)], {}
    if 0 in record:
        snapshots[0] = x0.copy()
    for it in range(1, steps + 1):
        opt.zero_grad()
        loss = loss_fn(x, yt) ** 2
        loss.backward()
        opt.step()
        if it in record or it == steps or it % max(1, steps // 50) == 0:
            pts = x.detach().numpy().copy()
            hist_steps.append(it)
            hist_sw.append(measure(pts))
            if it in record:
                snapshots[it] = pts
    return {"x0": x0, "y": y, "x": x.detach().numpy().copy(), "snapshots": snapshots,
            "steps": np.array(hist_steps), "sw": np.array(hist_sw)}


def gaussian_ot_map(cov1, cov2):
    r"""``A = S1^{-1/2} (S1^{1/2} S2 S1^{1/2})^{1/2} S1^{-1/2}``: the OT map between
    Gaussians is ``x -> m2 + A (x - m1)`` (squared Euclidean cost)."""
    r1 = np.real(sqrtm(cov1))
    ir1 = np.linalg.inv(r1)
    return ir1 @ np.real(sqrtm(r1 @ cov2 @ r1)) @ ir1


_M1, _S1 = np.zeros(2), np.array([[1.0, 0.6], [0.6, 1.0]])
_M2, _S2 = np.array([2.0, 1.0]), np.array([[0.5, -0.3], [-0.3, 1.5]])


def _mlp(hidden, seed):
    torch.manual_seed(seed)  # reproducible initialization (same for both fits)
    return torch.nn.Sequential(
        torch.nn.Linear(2, hidden), torch.nn.SiLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
        torch.nn.Linear(hidden, 2),
    ).double()


def _fit(lam, *, n, steps, hidden, lr, reg, gap_reg, seed):
    rng = np.random.default_rng(seed)
    L1, L2 = np.linalg.cholesky(_S1), np.linalg.cholesky(_S2)
    net = _mlp(hidden, seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    fit = SinkhornLoss(reg=reg, tol=1e-5)
    gap = MongeGapRegularizer(reg=gap_reg, tol=1e-5)
    for _ in range(steps):
        x = torch.from_numpy(_M1 + rng.standard_normal((n, 2)) @ L1.T)
        y = torch.from_numpy(_M2 + rng.standard_normal((n, 2)) @ L2.T)
        tx = net(x)
        loss = fit(tx, y)
        if lam:
            loss = loss + lam * gap(x, tx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def fit_gaussian_map(n=128, steps=150, *, lam=1.0, hidden=64, lr=3e-3, reg=0.5, gap_reg=0.25,
                     n_test=2000, seed=0):
    r"""Fit a map ``T_theta`` (an MLP) from N(m1, S1) to N(m2, S2), with and without the
    Monge gap, and compare both with the closed-form OT map.

    Each fit minimizes, over mini-batches of ``n`` fresh samples, the Sinkhorn divergence
    between ``T(x)`` and target samples (:class:`SinkhornLoss`, ``reg``), plus
    ``lam`` times the entropic Monge gap of ``x -> T(x)`` (:class:`MongeGapRegularizer`,
    ``gap_reg``) for the regularized fit. Both start from the same initialization and
    see the same mini-batches.

    Returns
    -------
    dict
        ``mse_regularized``, ``mse_unregularized``: mean squared distance between
        ``T(x)`` and the OT map ``m2 + A (x - m1)`` on ``n_test`` fresh samples;
        ``fit_regularized``, ``fit_unregularized``: their Sinkhorn divergence to target
        samples; ``x``, ``t_reg``, ``t_unreg``, ``t_ot`` (test points and their
        images), ``y`` (target samples), ``A``.
    """
    A = gaussian_ot_map(_S1, _S2)
    kw = dict(n=n, steps=steps, hidden=hidden, lr=lr, reg=reg, gap_reg=gap_reg, seed=seed)
    reg_net = _fit(lam, **kw)
    unreg_net = _fit(0.0, **kw)
    rng = np.random.default_rng(seed + 1)
    x = _M1 + rng.standard_normal((n_test, 2)) @ np.linalg.cholesky(_S1).T
    y = _M2 + rng.standard_normal((n_test, 2)) @ np.linalg.cholesky(_S2).T
    t_ot = _M2 + (x - _M1) @ A.T
    out = {"x": x, "y": y, "t_ot": t_ot, "A": A}
    for name, net in (("regularized", reg_net), ("unregularized", unreg_net)):
        with torch.no_grad():
            tx = net(torch.from_numpy(x)).numpy()
        key = "t_reg" if name == "regularized" else "t_unreg"
        out[key] = tx
        out[f"mse_{name}"] = float(((tx - t_ot) ** 2).sum(1).mean())
        sub = slice(0, 500)
        out[f"fit_{name}"] = float(SinkhornLoss(reg=reg, tol=1e-5)(
            torch.from_numpy(tx[sub]), torch.from_numpy(y[sub])))
    return out
