"""Sliced Wasserstein family: SW (with variance-reduced estimators), projected W_p^p,
Max-SW by ascent on the sphere, distributional SW with von Mises-Fisher directions."""

import numpy as np

from ._kernels import lazy
from ._onedim import _check_p, _normalize, _uniform_or_none, _wpp_grad_rows, _wpp_rows
from ._result import CONVERGED, MAXITER, NONFINITE, make_result
from ._validation import (
    _as_float_array,
    _check_int,
    _check_method,
    _check_point_pair,
    _check_positive,
    _check_rng,
    _check_weights,
    _result_dtype,
)

__all__ = [
    "distributional_sliced_wasserstein",
    "max_sliced_wasserstein",
    "projected_wasserstein",
    "sample_vmf",
    "sliced_wasserstein",
]

_k = lazy("_sliced")

_DIRECTIONS = ("random", "qmc", "orthogonal")
_ESTIMATORS = ("mc", "lower-cv", "upper-cv")

_ASCENT_MESSAGES = {
    CONVERGED: "Converged: the relative increase of the objective fell below tol.",
    MAXITER: "Maximum number of iterations reached before the objective stalled; "
             "increase maxiter or loosen tol.",
    NONFINITE: "Non-finite values appeared in the objective or its gradient.",
}


# ----------------------------------------------------------------------------- helpers

def _prepare(x, y, a, b):
    """Validated (x, y, a, b, dtype): weights normalized, None when uniform."""
    x, y = _check_point_pair(x, y)
    a_arr = None if a is None else _as_float_array(a, "a", ndim=1)
    b_arr = None if b is None else _as_float_array(b, "b", ndim=1)
    dtype = _result_dtype(x, y, a_arr, b_arr)
    x = np.ascontiguousarray(x, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=dtype)
    a = None if a_arr is None else _normalize(_check_weights(a_arr, x.shape[0], "a", dtype))
    b = None if b_arr is None else _normalize(_check_weights(b_arr, y.shape[0], "b", dtype))
    return x, y, _uniform_or_none(a), _uniform_or_none(b), dtype


def _check_directions(directions, d, dtype, name="directions"):
    arr = _as_float_array(directions, name)
    if arr.ndim != 2 or arr.shape[1] != d or arr.shape[0] == 0:
        raise ValueError(f"`{name}` must have shape (L, {d}) with L >= 1; got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite; got NaN or inf.")
    return np.ascontiguousarray(arr, dtype=dtype)


def _unit_rows(z):
    nrm = np.linalg.norm(z, axis=1, keepdims=True)
    nrm[nrm == 0] = 1.0
    return z / nrm


def _draw_directions(kind, L, d, rng):
    """(L, d) unit directions (float64): normalized Gaussians, scrambled Sobol points
    mapped through the normal quantile, or stacked Haar-random orthonormal blocks."""
    if kind == "random":
        return _unit_rows(rng.standard_normal((L, d)))
    if kind == "qmc":
        from scipy.special import ndtri
        from scipy.stats import qmc

        sobol = qmc.Sobol(d, scramble=True, rng=rng)
        pts = sobol.random_base2(max(int(np.ceil(np.log2(L))), 0))[:L]
        pts = np.clip(pts, 1e-12, 1 - 1e-12)
        return _unit_rows(ndtri(pts))
    blocks = []
    for _ in range(-(-L // d)):
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        q *= np.sign(np.diag(r))  # Haar measure on O(d)
        blocks.append(q.T)
    return np.ascontiguousarray(np.vstack(blocks)[:L])


def _get_directions(directions, n_projections, d, dtype, rng):
    # Checked even when an explicit array makes them unused: a typo is never silent.
    L = _check_int(n_projections, "n_projections", minimum=1)
    gen = _check_rng(rng)
    if isinstance(directions, str):
        kind = _check_method(directions, _DIRECTIONS, "directions")
        theta = _draw_directions(kind, L, d, gen)
        return np.ascontiguousarray(theta, dtype=dtype)
    return _check_directions(directions, d, dtype)


def _project(x, theta):
    """(L, n) C-contiguous projections ``theta @ x.T`` (one BLAS product)."""
    return theta @ x.T


# Directions per block: each block projects, sorts and merges about 2**17 values per cloud
# (1 MiB in float64), so the (L, n) projections never leave the cache; one (L, n) product
# for all directions writes and reads L n values through memory instead.
_BLOCK_VALUES = 2**17


def _projected_wpp(x, y, a, b, theta, p):
    """W_p^p (float64, one per direction), projecting and sorting in cache-sized blocks."""
    L = theta.shape[0]
    step = max(1, min(L, _BLOCK_VALUES // max(x.shape[0], y.shape[0])))
    if step >= L:
        return _wpp_rows(_project(x, theta), _project(y, theta), a, b, p, overwrite=True)
    out = np.empty(L, dtype=np.float64)
    for s in range(0, L, step):
        t = theta[s:s + step]
        out[s:s + step] = _wpp_rows(_project(x, t), _project(y, t), a, b, p, overwrite=True)
    return out


def _moments(x, w):
    """Weighted mean and (population) covariance of the empirical measure."""
    if w is None:
        mean = x.mean(axis=0, dtype=np.float64)
        xc = x - mean
        return mean, (xc.T @ xc) / x.shape[0]
    w = w.astype(np.float64)
    mean = w @ x
    xc = x - mean
    return mean, (xc * w[:, None]).T @ xc


def _projected_wpp_and_grad(x, y, a, b, directions, p, direction_weights=None):
    """W_p^p on each direction and the gradients of their weighted sum.

    Private entry point shared by Max-SW, v-DSW and the torch layer. Inputs are NumPy
    arrays of one float dtype, already validated: ``x`` (n, d), ``y`` (m, d), ``a`` (n,)
    and ``b`` (m,) weights (normalized here) or None for uniform, ``directions`` (L, d)
    used as given, ``p >= 1``, ``direction_weights`` (L,) (default ``1/L`` each, so the
    gradients are those of the mean, ``SW_p^p``).

    Returns
    -------
    wpp : ndarray (L,)
        :math:`W_p^p(\\theta_l\\sharp\\mu, \\theta_l\\sharp\\nu)`, in the dtype of ``x``.
    grad_x : ndarray (n, d)
        :math:`\\partial / \\partial x_i \\sum_l w_l W_p^p(\\theta_l)`.
    grad_y : ndarray (m, d)
    grad_directions : ndarray (L, d)
        Row ``l``: :math:`w_l\\, \\partial W_p^p(\\theta_l) / \\partial \\theta_l`
        (Euclidean, not projected on the sphere).

    Notes
    -----
    For each direction the optimal 1-D coupling :math:`\\pi` of the sorted projections
    gives :math:`\\partial W_p^p / \\partial u_i = \\sum_j \\pi_{ij}\\, p |u_i - v_j|^{p-1}
    \\mathrm{sign}(u_i - v_j)` and the opposite for :math:`v_j`; then
    :math:`u_i = \\theta^\\top x_i` carries it back to ``x`` and ``theta``. Where the
    coupling is not unique (ties) this is one element of the superdifferential.
    """
    x = np.ascontiguousarray(x)
    dtype = x.dtype
    y = np.ascontiguousarray(y, dtype=dtype)
    theta = np.ascontiguousarray(directions, dtype=dtype)
    a = None if a is None else _normalize(np.asarray(a, dtype=dtype))
    b = None if b is None else _normalize(np.asarray(b, dtype=dtype))
    L = theta.shape[0]
    U = _project(x, theta)
    V = _project(y, theta)
    wpp, GU, GV = _wpp_grad_rows(U, V, a, b, float(p))
    if direction_weights is None:
        wl = np.full(L, 1.0 / L, dtype=dtype)
    else:
        wl = np.asarray(direction_weights, dtype=dtype)
    GU *= wl[:, None]
    GV *= wl[:, None]
    grad_x = GU.T @ theta
    grad_y = GV.T @ theta
    grad_theta = GU @ x + GV @ y
    return wpp.astype(dtype), grad_x, grad_y, grad_theta


# --------------------------------------------------------------------------- public API

def projected_wasserstein(x, y, directions, a=None, b=None, *, p=2):
    r"""W_p^p between the projections of two weighted point clouds on each direction.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Support of the first measure (1-D input is read as (n, 1)).
    y : array_like, shape (m, d)
        Support of the second measure.
    directions : array_like, shape (L, d)
        Projection directions, used as given (normalize them for sliced distances).
    a, b : array_like, shape (n,) and (m,), optional
        Non-negative weights with positive sums (normalized here). Default uniform.
    p : float, default 2
        Order, ``p >= 1``.

    Returns
    -------
    wpp : ndarray, shape (L,)
        :math:`W_p^p(\theta_l\sharp\mu, \theta_l\sharp\nu)` for each direction, in the
        input dtype. Their mean is :math:`SW_p^p`; their spread gives its standard error
        ``wpp.std(ddof=1) / sqrt(L)`` for i.i.d. directions.

    Notes
    -----
    One matrix product projects both clouds; each direction is then an exact 1-D OT
    problem, solved by sorting and merging cumulative weights (see
    :func:`wasserstein_1d`).

    Examples
    --------
    >>> import numpy as np
    >>> from ottools import projected_wasserstein
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0]])
    >>> y = x + [0.0, 2.0]
    >>> projected_wasserstein(x, y, np.eye(2))
    array([0., 4.])
    """
    x, y, a, b, dtype = _prepare(x, y, a, b)
    p = _check_p(p)
    theta = _check_directions(directions, x.shape[1], dtype)
    return _projected_wpp(x, y, a, b, theta, p).astype(dtype)


def sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, directions="random",
                       estimator="mc", rng=None):
    r"""Sliced Wasserstein distance between two weighted point clouds.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Support of the first measure (1-D input is read as (n, 1)).
    y : array_like, shape (m, d)
        Support of the second measure.
    a, b : array_like, shape (n,) and (m,), optional
        Non-negative weights with positive sums (normalized here). Default uniform.
    p : float, default 2
        Order, ``p >= 1``.
    n_projections : int, default 100
        Number of directions ``L`` drawn (ignored when ``directions`` is an array).
    directions : {"random", "qmc", "orthogonal"} or array_like, shape (L, d)
        ``"random"``: normalized Gaussian vectors (uniform on the sphere);
        ``"qmc"``: scrambled Sobol points mapped through the normal quantile function,
        then normalized (:mod:`scipy.stats.qmc`); ``"orthogonal"``: stacked Haar-random
        orthonormal bases (blocks of ``d`` orthogonal directions). An array is used as
        given, as POT's ``projections`` (but transposed: one direction per row).
    estimator : {"mc", "lower-cv", "upper-cv"}, default "mc"
        Plain Monte Carlo mean, or the control-variate estimators of [2]_ (``p = 2``).
    rng : {None, int, numpy.random.Generator}, optional
        Randomness for the directions (SPEC 7: passed to
        :func:`numpy.random.default_rng`).

    Returns
    -------
    distance : float
        :math:`SW_p`, a scalar of the input dtype.

    Notes
    -----
    With directions :math:`\theta_1, \dots, \theta_L \in S^{d-1}`,

    .. math:: SW_p = \Big(\frac1L \sum_{l=1}^L W_p^p(\theta_l\sharp\mu,
              \theta_l\sharp\nu)\Big)^{1/p}

    (POT's convention: mean over directions, then the p-th root). Projections are one
    matrix product; each direction is an exact 1-D problem (sort and merge).

    Control variates (``p = 2``): with weighted means :math:`m_1, m_2`, covariances
    :math:`\Sigma_1, \Sigma_2`, :math:`\Delta m = m_1 - m_2` and
    :math:`A_l = W_2^2(\theta_l\sharp\mu, \theta_l\sharp\nu)`, the lower control variate
    is :math:`C(\theta) = (\theta^\top\Delta m)^2` with :math:`E[C] = \|\Delta m\|^2/d`,
    the upper one :math:`C(\theta) = (\theta^\top\Delta m)^2 + \theta^\top\Sigma_1\theta
    + \theta^\top\Sigma_2\theta` with :math:`E[C] = (\|\Delta m\|^2 + \mathrm{tr}\Sigma_1
    + \mathrm{tr}\Sigma_2)/d` (expectations for uniform directions on the sphere). The
    estimate of :math:`SW_2^2` is :math:`\bar A - \hat\gamma(\bar C - E[C])` with
    :math:`\hat\gamma = \widehat{\mathrm{Cov}}(A, C) / \widehat{\mathrm{Var}}(C)`;
    negative estimates are clipped to 0 before the root. Same cost as plain MC; the
    variance drops most when the measures are near Gaussian or far apart.

    References
    ----------
    .. [1] N. Bonneel, J. Rabin, G. Peyre, H. Pfister, "Sliced and Radon Wasserstein
       barycenters of measures", J. Math. Imaging Vis. 51 (2015) 22-45.
    .. [2] K. Nguyen, N. Ho, "Sliced Wasserstein Estimation with Control Variates",
       ICLR 2024, arXiv:2305.00402.

    Examples
    --------
    >>> import numpy as np
    >>> from ottools import sliced_wasserstein
    >>> x = np.random.default_rng(0).normal(size=(200, 3))
    >>> print(f"{sliced_wasserstein(x, x + 1.0, rng=0):.1f}")
    1.0
    """
    x, y, a, b, dtype = _prepare(x, y, a, b)
    p = _check_p(p)
    estimator = _check_method(estimator, _ESTIMATORS, "estimator")
    if estimator != "mc" and p != 2:
        raise ValueError(
            f"`estimator={estimator!r}` (control variates) requires p = 2; got p={p!r}. "
            "Use estimator='mc'."
        )
    d = x.shape[1]
    theta = _get_directions(directions, n_projections, d, dtype, rng)
    A = _projected_wpp(x, y, a, b, theta, p)
    if estimator == "mc":
        return dtype.type(np.mean(A) ** (1.0 / p))
    th = theta.astype(np.float64)
    m1, S1 = _moments(x, a)
    m2, S2 = _moments(y, b)
    dm = m1 - m2
    C = (th @ dm) ** 2
    EC = dm @ dm / d
    if estimator == "upper-cv":
        C = C + np.einsum("li,ij,lj->l", th, S1 + S2, th)
        EC += (np.trace(S1) + np.trace(S2)) / d
    est = np.mean(A)
    if A.shape[0] > 1:
        varc = np.var(C, ddof=1)
        if varc > 0:
            gamma = np.cov(A, C, ddof=1)[0, 1] / varc
            est = est - gamma * (np.mean(C) - EC)
    return dtype.type(max(est, 0.0) ** 0.5)


def _sphere_ascent(fun_grad, theta, maxiter, tol):
    """Projected gradient ascent with Armijo backtracking on the unit sphere.

    ``fun_grad(theta) -> (f, g)`` with ``g`` the Euclidean gradient. Steps along the
    tangent gradient, then renormalizes; the step doubles after each accepted move and
    halves while the Armijo condition fails (30 halvings: stationary, converged).
    Stops when the relative increase of ``f`` is at most ``tol``. Returns
    ``(theta, f, nit, status, err)`` with ``err`` the relative increase of the last
    iteration (0 at a stationary point, where no step increases ``f``; inf if unknown).
    """
    f, g = fun_grad(theta)
    if not (np.isfinite(f) and np.all(np.isfinite(g))):
        return theta, f, 0, NONFINITE, np.inf
    t = None
    err = np.inf
    for it in range(1, maxiter + 1):
        gt = g - (g @ theta) * theta
        gn = float(np.linalg.norm(gt))
        if gn <= 1e-14 * max(float(np.linalg.norm(g)), 1e-300):
            return theta, f, it - 1, CONVERGED, 0.0
        if t is None:
            t = 0.1 / gn  # first move: about 0.1 radian
        accepted = False
        for _ in range(30):
            cand = theta + t * gt
            cand /= np.linalg.norm(cand)
            fc, gc = fun_grad(cand)
            if not np.isfinite(fc):
                t *= 0.5
                continue
            if fc >= f + 1e-4 * t * gn * gn:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            return theta, f, it, CONVERGED, 0.0
        if not np.all(np.isfinite(gc)):
            return cand, fc, it, NONFINITE, np.inf
        gain = fc - f
        theta, f, g = cand, fc, gc
        t *= 2.0
        err = gain / max(abs(f), 1e-300)
        if err <= tol:
            return theta, f, it, CONVERGED, err
    return theta, f, maxiter, MAXITER, err


def _check_ascent_args(p, maxiter, tol, n_projections):
    p = _check_p(p)
    maxiter = _check_int(maxiter, "maxiter", minimum=0)
    tol = _check_positive(tol, "tol", allow_zero=True)
    n_projections = _check_int(n_projections, "n_projections", minimum=1)
    return p, maxiter, tol, n_projections


def max_sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, n_restarts=3,
                           maxiter=100, tol=1e-7, rng=None):
    r"""Max-sliced Wasserstein distance, by gradient ascent on the sphere.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Support of the first measure (1-D input is read as (n, 1)).
    y : array_like, shape (m, d)
        Support of the second measure.
    a, b : array_like, shape (n,) and (m,), optional
        Non-negative weights with positive sums (normalized here). Default uniform.
    p : float, default 2
        Order, ``p >= 1``.
    n_projections : int, default 100
        Random candidate directions (normalized Gaussians) scored first.
    n_restarts : int, default 3
        Ascents started from the best candidates (at most ``n_projections``).
    maxiter : int, default 100
        Iterations per ascent.
    tol : float, default 1e-7
        An ascent stops when the relative increase of :math:`W_p^p` over one iteration
        is at most ``tol`` (or no step satisfies the Armijo condition).
    rng : {None, int, numpy.random.Generator}, optional
        Randomness of the candidates (SPEC 7). The candidates are
        ``default_rng(rng).standard_normal((n_projections, d))``, normalized.

    Returns
    -------
    res : OTResult
        ``fun`` (the distance :math:`\max_\theta W_p`, input dtype), ``direction``
        (unit vector, shape (d,)), ``nit`` (iterations of the returned ascent),
        ``err`` (relative increase of :math:`W_p^p` in its last iteration, what ``tol``
        bounds; 0 at a stationary point), ``success``, ``status`` (0 converged, 1
        ``maxiter`` reached, 2 non-finite values), ``message``, ``method``
        (``"ascent"``).

    Notes
    -----
    :math:`\max_{\theta\in S^{d-1}} W_p(\theta\sharp\mu, \theta\sharp\nu)`. With the
    optimal 1-D coupling :math:`\pi` of the projections,
    :math:`\nabla_\theta W_p^p = \sum_{ij} \pi_{ij}\, p |\theta^\top(x_i - y_j)|^{p-1}
    \mathrm{sign}(\theta^\top(x_i - y_j))(x_i - y_j)`; the ascent steps along its
    tangent part, renormalizes, and backtracks (Armijo). The objective is not concave:
    the result is a local maximum at least as large as the best candidate. POT's
    ``max_sliced_wasserstein_distance`` only takes the maximum over random directions.

    References
    ----------
    .. [1] I. Deshpande et al., "Max-Sliced Wasserstein Distance and its use for GANs",
       CVPR 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from ottools import max_sliced_wasserstein
    >>> x = np.random.default_rng(0).normal(size=(300, 2))
    >>> res = max_sliced_wasserstein(x, x + [3.0, 0.0], rng=0)
    >>> print(res.success, f"{res.fun:.2f}", np.round(np.abs(res.direction), 1))
    True 3.00 [1. 0.]
    """
    x, y, a, b, dtype = _prepare(x, y, a, b)
    p, maxiter, tol, n_projections = _check_ascent_args(p, maxiter, tol, n_projections)
    n_restarts = _check_int(n_restarts, "n_restarts", minimum=1)
    d = x.shape[1]
    cand = _draw_directions("random", n_projections, d, _check_rng(rng))
    cand = cand.astype(dtype)
    scores = _projected_wpp(x, y, a, b, cand, p)
    order = np.argsort(-scores, kind="stable")[:n_restarts]
    one = np.ones(1, dtype=dtype)

    def fun_grad(theta):
        wpp, _, _, gth = _projected_wpp_and_grad(x, y, a, b, theta[None, :], p, one)
        return float(wpp[0]), gth[0].astype(np.float64)

    best = None
    for k in order:
        run = _sphere_ascent(fun_grad, cand[k].astype(np.float64), maxiter, tol)
        if best is None or (np.isfinite(run[1]) and run[1] > best[1]):
            best = run
    theta, f, nit, status, err = best
    return make_result(fun=dtype.type(max(f, 0.0) ** (1.0 / p)), direction=theta.astype(dtype),
                       nit=nit, err=float(err), success=status == CONVERGED, status=status,
                       message=_ASCENT_MESSAGES[status], method="ascent")


def sample_vmf(mu, kappa, size, *, rng=None):
    r"""Samples of the von Mises-Fisher distribution on the unit sphere.

    Parameters
    ----------
    mu : array_like, shape (d,)
        Mean direction (normalized here; must be non-zero).
    kappa : float
        Concentration, ``kappa > 0``.
    size : int
        Number of samples.
    rng : {None, int, numpy.random.Generator}, optional
        Randomness (SPEC 7).

    Returns
    -------
    samples : ndarray, shape (size, d)
        Unit vectors, in the dtype of ``mu`` (float64 for integer input).

    Notes
    -----
    Density :math:`\propto \exp(\kappa \mu^\top\theta)` on :math:`S^{d-1}`. Wood's
    rejection sampler draws the component :math:`w` along :math:`e_1` (envelope from a
    Beta((d-1)/2, (d-1)/2) draw) and a uniform tangent direction; a Householder
    reflection maps :math:`e_1` to :math:`\mu`. The mean resultant length is
    :math:`E[\mu^\top\theta] = I_{d/2}(\kappa) / I_{d/2-1}(\kappa)`.

    References
    ----------
    .. [1] A. T. A. Wood, "Simulation of the von Mises Fisher distribution",
       Commun. Stat. Simul. Comput. 23 (1994) 157-164.

    Examples
    --------
    >>> import numpy as np
    >>> from ottools import sample_vmf
    >>> z = sample_vmf([0.0, 0.0, 1.0], 50.0, 1000, rng=0)
    >>> print(z.shape, np.allclose(np.linalg.norm(z, axis=1), 1.0), z[:, 2].mean() > 0.95)
    (1000, 3) True True
    """
    mu = _as_float_array(mu, "mu", ndim=1)
    dtype = _result_dtype(mu)
    if mu.shape[0] == 0 or not np.all(np.isfinite(mu)) or not np.any(mu != 0):
        raise ValueError("`mu` must be a finite, non-zero vector of length d >= 1.")
    kappa = _check_positive(kappa, "kappa")
    size = _check_int(size, "size", minimum=0)
    z = _k.vmf_around_e1(_check_rng(rng), mu.shape[0], kappa, size)
    mu = mu.astype(np.float64) / np.linalg.norm(mu.astype(np.float64))
    return _householder(z, mu)[0].astype(dtype)


def _householder(z, mu):
    """Rows of ``z`` reflected by H with H e1 = mu; returns (H z, u, s) with u = e1 - mu."""
    u = -mu.copy()
    u[0] += 1.0
    s = float(u @ u)
    if s < 1e-24:
        return z.copy(), u, 0.0
    return z - np.outer(z @ u, u) * (2.0 / s), u, s


def distributional_sliced_wasserstein(x, y, a=None, b=None, *, p=2, kappa=10.0,
                                      n_projections=100, maxiter=100, tol=1e-7, rng=None):
    r"""Distributional sliced Wasserstein with von Mises-Fisher directions (v-DSW).

    Parameters
    ----------
    x : array_like, shape (n, d)
        Support of the first measure (1-D input is read as (n, 1)).
    y : array_like, shape (m, d)
        Support of the second measure.
    a, b : array_like, shape (n,) and (m,), optional
        Non-negative weights with positive sums (normalized here). Default uniform.
    p : float, default 2
        Order, ``p >= 1``.
    kappa : float, default 10.0
        Concentration of the vMF distribution of directions, ``kappa > 0``.
    n_projections : int, default 100
        Directions sampled from the vMF (fixed along the ascent), and random candidate
        locations scored to pick the start.
    maxiter : int, default 100
        Ascent iterations.
    tol : float, default 1e-7
        Stop when the relative increase of the objective over one iteration is at most
        ``tol``.
    rng : {None, int, numpy.random.Generator}, optional
        Randomness (SPEC 7).

    Returns
    -------
    res : OTResult
        ``fun`` (the distance, input dtype), ``location`` (unit vector (d,), the vMF
        mean), ``directions`` ((n_projections, d): the vMF samples at ``location`` that
        define ``fun``; the torch layer's gradient goes through them), ``kappa``,
        ``n_projections``, ``nit``, ``err`` (relative increase of the objective in the
        last iteration, what ``tol`` bounds; 0 at a stationary point), ``success``,
        ``status`` (0 converged, 1 ``maxiter`` reached, 2 non-finite values),
        ``message``, ``method`` (``"ascent"``).

    Notes
    -----
    .. math:: \text{v-DSW}_p = \max_{\epsilon\in S^{d-1}} \Big(E_{\theta\sim
              \mathrm{vMF}(\epsilon,\kappa)} W_p^p(\theta\sharp\mu,
              \theta\sharp\nu)\Big)^{1/p}.

    The expectation is a Monte Carlo mean over ``n_projections`` reparameterized
    samples: Wood's sampler draws them around :math:`e_1` once, and a Householder
    reflection :math:`H_\epsilon` (:math:`H_\epsilon e_1 = \epsilon`) moves them, so
    the objective is a deterministic, differentiable function of :math:`\epsilon`
    (gradients through the 1-D couplings, then through :math:`H_\epsilon`), ascended on
    the sphere with Armijo backtracking from the best of ``n_projections`` random
    locations (scored by their own :math:`W_p^p`). The value lies between
    :math:`SW_p` and Max-SW (up to Monte Carlo error).

    References
    ----------
    .. [1] K. Nguyen, D. Nguyen, N. Ho, "Self-Attention Amortized Distributional
       Projection Optimization for Sliced Wasserstein Point-Cloud Reconstruction",
       ICML 2023, arXiv:2301.04791.

    Examples
    --------
    >>> import numpy as np
    >>> from ottools import distributional_sliced_wasserstein
    >>> x = np.random.default_rng(0).normal(size=(300, 2))
    >>> res = distributional_sliced_wasserstein(x, x + [3.0, 0.0], kappa=50.0, rng=0)
    >>> print(res.success, f"{res.fun:.1f}", np.round(np.abs(res.location), 1))
    True 3.0 [1. 0.]
    """
    x, y, a, b, dtype = _prepare(x, y, a, b)
    p, maxiter, tol, n_projections = _check_ascent_args(p, maxiter, tol, n_projections)
    kappa = _check_positive(kappa, "kappa")
    d = x.shape[1]
    gen = _check_rng(rng)
    cand = _draw_directions("random", n_projections, d, gen).astype(dtype)
    scores = _projected_wpp(x, y, a, b, cand, p)
    start = cand[int(np.argmax(scores))].astype(np.float64)
    z = _k.vmf_around_e1(gen, d, kappa, n_projections)

    def fun_grad(eps):
        theta, u, s = _householder(z, eps)
        wpp, _, _, gth = _projected_wpp_and_grad(x, y, a, b, theta.astype(dtype), p)
        g = gth.astype(np.float64)  # rows: (1/L) dW_l / dtheta_l
        if s == 0.0:  # H = I near eps = e1: gradient of the identity branch
            return float(np.mean(wpp)), g.sum(axis=0)
        # theta = z - 2 c u / s with c = u.z; d eps = -d u
        c = z @ u
        ug = g @ u
        # dF/du = -(2/s)(z (u.g) + c g) + (4/s^2) c (u.g) u, and dF/deps = -dF/du
        grad_rows = (2.0 / s) * (z * ug[:, None] + g * c[:, None]) \
            - (4.0 / (s * s)) * (c * ug)[:, None] * u[None, :]
        return float(np.mean(wpp)), grad_rows.sum(axis=0)

    eps, f, nit, status, err = _sphere_ascent(fun_grad, start, maxiter, tol)
    return make_result(fun=dtype.type(max(f, 0.0) ** (1.0 / p)), location=eps.astype(dtype),
                       directions=_householder(z, eps)[0].astype(dtype),
                       kappa=kappa, n_projections=n_projections, nit=nit, err=float(err),
                       success=status == CONVERGED, status=status,
                       message=_ASCENT_MESSAGES[status], method="ascent")
