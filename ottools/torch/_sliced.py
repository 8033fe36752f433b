"""Differentiable sliced Wasserstein distances: SW, Max-SW and v-DSW.

Each function calls the core's NumPy ``*_value_and_grad`` entry point (gradients through
the optimal 1-D couplings of the projections, then through the projections; Danskin's
theorem at the maximising direction for Max-SW and v-DSW) through
:class:`._convert.Envelope`. The weights are not differentiable (a tensor that requires
grad is refused rather than silently ignored).
"""

import torch

from .. import _sliced as _sl
from ._convert import (apply, as_tensor, check_ndim, dtypes, numpy, numpy_rng, same_device,
                       warn_unconverged)

__all__ = ["distributional_sliced_wasserstein", "max_sliced_wasserstein",
           "sliced_wasserstein"]


def _call(where, x, y, a, b, compute):
    """Convert, check, run ``compute(x, y, a, b) -> (value, gx, gy, result or None)`` on
    NumPy arrays through the envelope pattern."""
    x = as_tensor(x, "x")
    y = as_tensor(y, "y", x)
    if x is None or y is None:
        raise TypeError("`x` and `y` must be tensors; got None.")
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    check_ndim(x, "x", (2,), "a 2-D tensor (n, d)")
    check_ndim(y, "y", (2,), "a 2-D tensor (m, d)")
    a = check_ndim(as_tensor(a, "a", x), "a", (1,), "a 1-D tensor (n,)")
    b = check_ndim(as_tensor(b, "b", x), "b", (1,), "a 1-D tensor (m,)")
    same_device((x, y, a, b), ("x", "y", "a", "b"))
    for t, name in ((a, "a"), (b, "b")):
        if t is not None and t.requires_grad:
            raise NotImplementedError(
                f"ottools.torch.{where} is not differentiable in `{name}` yet; pass a "
                f"tensor that does not require grad (e.g. `{name}.detach()`).")
    dtype, np_dtype = dtypes(x, y, a, b)
    results = []

    def fn(x_t, y_t, a_t, b_t):
        value, gx, gy, res = compute(numpy(x_t, np_dtype), numpy(y_t, np_dtype),
                                     numpy(a_t, np_dtype), numpy(b_t, np_dtype))
        results.append(res)
        return value, (gx if x_t.requires_grad else None,
                       gy if y_t.requires_grad else None, None, None)

    value = apply(fn, x, y, a, b).to(dtype)
    warn_unconverged(where, [r for r in results if r is not None])
    return value


def sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, directions="random",
                       estimator="mc", rng=None):
    r"""Sliced Wasserstein distance, differentiable in ``x`` and ``y``.

    Same parameters and value as :func:`ottools.sliced_wasserstein` (the same directions
    for the same ``rng``), with tensors in and a 0-d tensor out.

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Support of the first measure. Differentiable.
    y : Tensor, shape (m, d)
        Support of the second measure. Differentiable.
    a, b : Tensor, shape (n,) and (m,), or None
        Weights (normalized); not differentiable yet (a tensor that requires grad is
        refused rather than silently ignored).
    p : float, default 2
    n_projections : int, default 100
    directions : {"random", "qmc", "orthogonal"} or array_like, shape (L, d)
    estimator : {"mc"}, default "mc"
        Only the plain Monte Carlo mean (the control-variate estimators of the NumPy API
        have no gradient here).
    rng : {None, int, numpy.random.Generator, torch.Generator}, optional
        Randomness of the directions (SPEC 7). Pass a ``Generator`` (or use
        :class:`SlicedWassersteinLoss`) to draw new directions at every call in training.

    Returns
    -------
    value : Tensor, shape ()
        :math:`SW_p`, on the device of ``x``, in the promoted dtype.

    Notes
    -----
    For each direction, the optimal 1-D coupling :math:`\pi_l` of the sorted projections
    gives :math:`\partial W_p^p / \partial u_i = \sum_j \pi_{l,ij}\, p |u_i -
    v_j|^{p-1} \mathrm{sign}(u_i - v_j)`, carried back through :math:`u_i = \theta_l^\top
    x_i` (Bonneel et al., J. Math. Imaging Vis. 2015); then the chain rule through the
    mean and the p-th root. The forward pass computes these gradients along with the
    value (same sort) and keeps them: O((n + m) d) memory.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import sliced_wasserstein
    >>> x = torch.zeros(4, 2, dtype=torch.float64, requires_grad=True)
    >>> y = torch.ones(4, 2, dtype=torch.float64)
    >>> value = sliced_wasserstein(x, y, directions=torch.eye(2).numpy())
    >>> value.backward()
    >>> round(value.item(), 6), x.grad[0].tolist()
    (1.0, [-0.125, -0.125])
    """
    if isinstance(estimator, str) and estimator.lower() != "mc":
        raise ValueError(f"`estimator={estimator!r}` is not differentiable here; "
                         "ottools.torch.sliced_wasserstein supports estimator='mc' only.")
    if isinstance(directions, torch.Tensor):
        directions = directions.detach().cpu().numpy()
    rng = numpy_rng(rng)

    def compute(x, y, a, b):
        value, gx, gy = _sl.sliced_value_and_grad(x, y, a, b, p=p,
                                                  n_projections=n_projections,
                                                  directions=directions, rng=rng)
        return value, gx, gy, None

    return _call("sliced_wasserstein", x, y, a, b, compute)

def max_sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, n_restarts=3,
                           maxiter=100, tol=None, rng=None):
    r"""Max-sliced Wasserstein distance, differentiable in ``x`` and ``y``.

    The value is ``ottools.max_sliced_wasserstein(...).fun`` (same parameters); see that
    function for the ascent.

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Differentiable.
    y : Tensor, shape (m, d)
        Differentiable.
    a, b : Tensor, shape (n,) and (m,), or None
        Weights; not differentiable yet (refused if they require grad).
    p, n_projections, n_restarts, maxiter, tol, rng
        As in :func:`ottools.max_sliced_wasserstein`; ``rng`` may also be a
        ``torch.Generator``.

    Returns
    -------
    value : Tensor, shape ()
        On the device of ``x``, in the promoted dtype.

    Warns
    -----
    OTConvergenceWarning
        If the ascent on the sphere stops without converging.

    Notes
    -----
    By Danskin's theorem the gradient of :math:`\max_\theta W_p(\theta)` is the gradient
    of :math:`W_p(\theta^*)` at the returned direction :math:`\theta^*`, held fixed:
    the 1-D coupling of the projections on :math:`\theta^*`, carried back to the points.
    The ascent finds a local maximum; the gradient is that of the value returned.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import max_sliced_wasserstein
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g, dtype=torch.float64, requires_grad=True)
    >>> y = x.detach() + torch.tensor([3.0, 0.0], dtype=torch.float64)
    >>> value = max_sliced_wasserstein(x, y, rng=0)
    >>> value.backward()
    >>> print(f"{value.item():.3f} {x.grad[:, 0].sum().item():.3f}")
    3.000 -1.000
    """
    rng = numpy_rng(rng)

    def compute(x, y, a, b):
        res, gx, gy = _sl.max_sliced_value_and_grad(
            x, y, a, b, p=p, n_projections=n_projections, n_restarts=n_restarts,
            maxiter=maxiter, tol=tol, rng=rng)
        return float(res.fun), gx, gy, res

    return _call("max_sliced_wasserstein", x, y, a, b, compute)

def distributional_sliced_wasserstein(x, y, a=None, b=None, *, p=2, kappa=10.0,
                                      n_projections=100, maxiter=100, tol=None, rng=None):
    r"""Distributional sliced Wasserstein (v-DSW), differentiable in ``x`` and ``y``.

    The value is ``ottools.distributional_sliced_wasserstein(...).fun`` (same
    parameters).

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Differentiable.
    y : Tensor, shape (m, d)
        Differentiable.
    a, b : Tensor, shape (n,) and (m,), or None
        Weights; not differentiable yet (refused if they require grad).
    p, kappa, n_projections, maxiter, tol, rng
        As in :func:`ottools.distributional_sliced_wasserstein`; ``rng`` may also be a
        ``torch.Generator``.

    Returns
    -------
    value : Tensor, shape ()
        On the device of ``x``, in the promoted dtype.

    Warns
    -----
    OTConvergenceWarning
        If the ascent on the vMF location stops without converging.

    Notes
    -----
    Danskin's theorem at the returned location: the gradient is that of the Monte Carlo
    mean of :math:`W_p^p` over the final directions (``res.directions``, the vMF
    samples moved to the optimal location), through their 1-D couplings, then the
    p-th root.

    Examples
    --------
    >>> import torch
    >>> from ottools.torch import distributional_sliced_wasserstein
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g, dtype=torch.float64, requires_grad=True)
    >>> y = x.detach() + torch.tensor([3.0, 0.0], dtype=torch.float64)
    >>> value = distributional_sliced_wasserstein(x, y, kappa=50.0, rng=0)
    >>> value.backward()
    >>> print(f"{value.item():.2f} {x.grad[:, 0].sum().item():.2f}")
    2.97 -0.99
    """
    rng = numpy_rng(rng)

    def compute(x, y, a, b):
        res, gx, gy = _sl.distributional_sliced_value_and_grad(
            x, y, a, b, p=p, kappa=kappa, n_projections=n_projections, maxiter=maxiter,
            tol=tol, rng=rng)
        return float(res.fun), gx, gy, res

    return _call("distributional_sliced_wasserstein", x, y, a, b, compute)
