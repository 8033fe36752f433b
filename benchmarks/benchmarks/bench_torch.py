"""ottools.torch: forward + backward against the NumPy call it wraps (same problem, tol).

``library="ottools.torch"`` times the differentiable call and ``.backward()``;
``"ottools"`` the NumPy peer. POT's torch backend is the other natural peer
(``"pot-torch"``: ``ot.sinkhorn2`` on torch tensors, its backward through the plan).
"""

import numpy as np

import ottools

from .common import import_pot, sizes

REG = 0.05
TOL = 1e-6


def _import_torch():
    try:
        import torch

        import ottools.torch as ott
    except ImportError as exc:
        raise NotImplementedError("torch is not installed") from exc
    return torch, ott


def _clouds(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 2)), rng.random((n, 2))


class SinkhornLoss:
    """Entropic OT between point clouds (debias=False) and the Sinkhorn divergence."""

    params = (sizes([500, 2000], [300]), [False, True], ["ottools.torch", "ottools", "pot-torch"])
    param_names = ["n", "debias", "library"]
    timeout = 300

    def setup(self, n, debias, library):
        x, y = _clouds(n)
        if library == "ottools":
            if debias:
                def run():
                    return ottools.sinkhorn_divergence(x, y, reg=REG, tol=TOL)
            else:
                def run():
                    return ottools.sinkhorn(None, None, ottools.cost_matrix(x, y), REG,
                                            tol=TOL).fun
        elif library == "ottools.torch":
            torch, ott = _import_torch()

            def run():
                xt = torch.from_numpy(x).requires_grad_()
                yt = torch.from_numpy(y).requires_grad_()
                loss = ott.sinkhorn_loss(xt, yt, reg=REG, debias=debias, tol=TOL)
                loss.backward()
                return loss.item()
        else:
            ot = import_pot()
            torch, _ = _import_torch()
            if debias:
                raise NotImplementedError("POT's empirical divergence has no torch backward")

            def run():
                xt = torch.from_numpy(x).requires_grad_()
                yt = torch.from_numpy(y)
                M = ot.dist(xt, yt)
                w = torch.full((n,), 1.0 / n, dtype=torch.float64)
                loss = ot.sinkhorn2(w, w, M, REG, stopThr=TOL, numItermax=100_000)
                loss.backward()
                return float(loss.detach())
        self.run = run
        self.run()  # compile / warm up

    def time_forward_backward(self, n, debias, library):
        self.run()
