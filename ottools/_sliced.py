"""Sliced Wasserstein family: SW (with variance-reduced estimators), projected W_p^p,
Max-SW by ascent on the sphere, distributional SW with von Mises-Fisher directions.

Internal entry points for the torch layer (NumPy in, NumPy out; not exported from the
package): :func:`sliced_value_and_grad`, :func:`max_sliced_value_and_grad`,
:func:`distributional_sliced_value_and_grad`.
"""

import math
import os

import numpy as np

from ._onedim import (
    TINY,
    CachedKernels,
    check_p,
    normalize_weights,
    pow2_exponent,
    power_mean_root,
    rows_distance,
    uniform_or_none,
    wpp_grad_rows,
    wpp_rows,
)
from ._pool import pool_map
from ._result import (
    CALLBACK,
    CONVERGED,
    MAXITER,
    NONFINITE,
    STALLED,
    make_result,
    solver_result,
    status_message,
)
from ._validation import (
    _as_float_array,
    _ndim,
    _check_callback,
    _check_int,
    _check_method,
    _check_option_table,
    _check_positive,
    _check_rng,
    _check_samples,
    _Option,
    _result_dtype,
)

__all__ = [
    "distributional_sliced_wasserstein",
    "max_sliced_wasserstein",
    "projected_wasserstein",
    "sample_vmf",
    "sliced_wasserstein",
]

_k = CachedKernels("_sliced")

_DIRECTIONS = ("random", "qmc", "orthogonal")
_ESTIMATORS = ("mc", "lower-cv", "upper-cv")

# Default ``tol`` of the ascents (on the relative increase of the objective per iteration).
_ASCENT_TOL = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-4}

# Options of the ascents on the sphere (Max-SW and v-DSW).
_ASCENT_OPTIONS = {
    "initial_step": _Option("float", 0.1, lo=0.0, lo_open=True),
    "armijo": _Option("float", 1e-4, lo=0.0, hi=1.0, lo_open=True, hi_open=True),
    "line_search_steps": _Option("int", 30, lo=1),
}


# ----------------------------------------------------------------------------- helpers

def _physical_memory():
    """Bytes of physical memory (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _fmt_bytes(nbytes):
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes:.0f} bytes"


def _check_fits(nbytes, what, hint):
    """MemoryError naming ``what`` when ``nbytes`` exceeds the machine's memory (checked
    before allocating)."""
    total = _physical_memory()
    if total is not None and nbytes > total:
        raise MemoryError(f"{what} needs about {_fmt_bytes(nbytes)}, more than this "
                          f"machine's {_fmt_bytes(total)} of memory; {hint}")


def _prepare(x, y, a, b, names=("x", "y", "a", "b")):
    """Validated ``(x, y, a, b, dtype)``: weights normalized, None when uniform."""
    x, y, a, b, dtype = _check_samples(x, y, a, b, names=names)
    a = None if a is None else uniform_or_none(normalize_weights(a))
    b = None if b is None else uniform_or_none(normalize_weights(b))
    return x, y, a, b, dtype


def _positive(z, w):
    """``(z, w, keep)``: the points of positive weight and their weights (None when
    uniform), ``keep`` the boolean mask of those points, or None (with ``z`` and ``w``
    unchanged) when every weight is positive or ``w`` is None. A zero-weight point does
    not change the measure, but it entered the scale of :func:`_scaled`: one at 1e200
    made the other points' W_p^p underflow (Max-SW returned a wrong value with status 0
    after 0 iterations, the control variates 0.0)."""
    if w is None:
        return z, w, None
    keep = w > 0
    if keep.all():
        return z, w, None
    return np.ascontiguousarray(z[keep]), uniform_or_none(w[keep]), keep


def _scaled(arrays, dtype, p=1.0):
    """``(arrays * 2**-e, e)``: a power of two (exact) that brings the largest magnitude
    into [0.5, 1) when it lies outside ``[2**-k, 2**k]``, so that projections, their
    p-th powers and the gradients in ``dtype`` neither overflow nor underflow: ``k`` is
    256 in float64 and 100 in float32 (the projections), and at most 900 / p (float64)
    or 100 / p (float32) for the powers while p is below 900 (100) (float32 points of 1e-6 had W_8^8 = 0 in float32
    and Max-SW returned 0 with success; points of 3e38 overflowed their projections).
    ``e = 0`` leaves them untouched."""
    top = max(max(float(arr.max()), -float(arr.min())) for arr in arrays)
    wide = np.dtype(dtype) == np.float64
    bound, powers = (256, 900.0) if wide else (100, 100.0)
    # (for p > powers no scale keeps every p-th power in range: left to the callers'
    # overflow checks and scaled forms)
    k = bound if p > powers else int(min(bound, powers / max(float(p), 1.0)))
    e = pow2_exponent(top, -k, k)
    if e == 0:
        return list(arrays), 0
    return [np.ascontiguousarray(np.ldexp(arr, -e), dtype=dtype) for arr in arrays], e


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


def check_projection_memory(L, d, name="n_projections"):
    # directions in float64 and in the working dtype, two float64 values per direction
    _check_fits(L * (2 * d + 3) * 8, f"`{name}`={L} (d={d})",
                "use fewer projections, or average the results of several calls.")


_SOBOL_MAX_D = 21201  # scipy.stats.qmc.Sobol's direction numbers


def draw_directions(kind, L, d, rng):
    """(L, d) unit directions (float64): normalized Gaussians, scrambled Sobol points
    mapped through the normal quantile, or stacked Haar-random orthonormal blocks."""
    check_projection_memory(L, d)
    if kind == "random":
        return _unit_rows(rng.standard_normal((L, d)))
    if kind == "qmc":
        from scipy.special import ndtri
        from scipy.stats import qmc

        if d > _SOBOL_MAX_D:
            raise ValueError(f"`directions='qmc'` draws Sobol points, defined up to "
                             f"d = {_SOBOL_MAX_D} dimensions (SciPy's table); got d = {d}. "
                             f"Use directions='random' or 'orthogonal'.")
        if getattr(rng.bit_generator, "seed_seq", None) is None:
            # a legacy RandomState's generator has no seed sequence, which the scrambling
            # spawns from (SciPy raised an AttributeError)
            rng = np.random.default_rng(rng.integers(2 ** 63))
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


_RNG_TYPES = (type(None), int, np.integer, np.random.Generator, np.random.BitGenerator,
              np.random.SeedSequence)


def _get_directions(directions, n_projections, d, dtype, rng):
    # Checked even when an explicit array makes them unused: a typo is never silent.
    L = _check_int(n_projections, "n_projections", minimum=1)
    if isinstance(directions, str):
        kind = _check_method(directions, _DIRECTIONS, "directions")
        theta = draw_directions(kind, L, d, _check_rng(rng))
        return np.ascontiguousarray(theta, dtype=dtype)
    if not isinstance(rng, _RNG_TYPES) or isinstance(rng, bool):
        _check_rng(rng)  # raises for what default_rng refuses
    return _check_directions(directions, d, dtype)


# Projections with d up to this are computed by a kernel (memory-bound, GIL released);
# above, by BLAS (compute-bound; measured at d = 100, n = 10,000: BLAS beside our threads
# 0.19 s, our threads with single-threaded BLAS 0.11 s, serial blocks with BLAS's threads
# 0.17 s).
_KERNEL_MAX_D = 16


def _project(x, theta, xt=None):
    """(L, n) C-contiguous projections ``theta @ x.T`` (``xt``: ``x.T`` made contiguous,
    when the caller already has it)."""
    if x.shape[1] <= _KERNEL_MAX_D:
        out = np.empty((theta.shape[0], x.shape[0]), dtype=x.dtype)
        _k.project_rows(theta, np.ascontiguousarray(x.T) if xt is None else xt, out)
        return out
    return theta @ x.T


# Directions per block: each block projects, sorts and merges about 2**17 values per cloud
# (1 MiB in float64), so the (L, n) projections never leave the cache; one (L, n) product
# for all directions writes and reads L n values through memory instead.
_BLOCK_VALUES = 2**17
# Blocks run on Python threads (the kernels and NumPy's sort release the GIL) once the
# work reaches this many projected values; below, a pool costs more than it saves.
_THREAD_MIN_VALUES = 2**21


def _n_workers(total_values, n_blocks):
    """Threads for the blocks of directions: Numba's thread count
    (``numba.set_num_threads`` / ``NUMBA_NUM_THREADS``), or 1 for small problems."""
    if n_blocks < 2 or total_values < _THREAD_MIN_VALUES:
        return 1
    import numba

    return max(1, min(numba.get_num_threads(), n_blocks))


def _projected_rows(x, y, a, b, theta, p):
    """``(q, s)`` (see :func:`ottools._onedim.wpp_rows`): W_p^p on each direction, by
    projecting, sorting and merging in cache-sized blocks of directions. Threads take
    the blocks one at a time from a shared queue, so a loaded core slows the run by its
    share only; the blocks and their arithmetic do not depend on the number of threads,
    nor do the results."""
    L = theta.shape[0]
    n, m = x.shape[0], y.shape[0]
    step = max(1, min(L, _BLOCK_VALUES // max(n, m)))
    starts = range(0, L, step)
    small_d = x.shape[1] <= _KERNEL_MAX_D
    xt = np.ascontiguousarray(x.T) if small_d else None
    yt = np.ascontiguousarray(y.T) if small_d else None

    def run(lo):
        t = theta[lo:lo + step]
        return wpp_rows(_project(x, t, xt), _project(y, t, yt), a, b, p, overwrite=True)

    # With d > _KERNEL_MAX_D the projections go through BLAS, which runs its own threads:
    # threads of ours on top would oversubscribe the cores, so the blocks stay serial.
    workers = _n_workers(L * (n + m), len(starts)) if small_d else 1
    if workers == 1:
        parts = [run(lo) for lo in starts]
    else:  # on Ctrl-C, the queued blocks are dropped: only the running ones finish
        parts = pool_map(run, starts, workers, "ottools-sliced")
    q = np.concatenate([part[0] for part in parts])
    if all(part[1] is None for part in parts):
        return q, None
    s = np.concatenate([np.ones(len(part[0])) if part[1] is None else part[1]
                        for part in parts])
    return q, s


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


def _projected_wpp_and_grad(x, y, a, b, directions, p, direction_weights=None, scale=1.0,
                            need_theta=True):
    """W_p^p on each direction and the gradients of their weighted sum.

    Inputs are NumPy arrays of one float dtype, already validated: ``x`` (n, d), ``y``
    (m, d), ``a`` (n,) and ``b`` (m,) normalized weights or None for uniform,
    ``directions`` (L, d) used as given, ``p >= 1``, ``direction_weights`` (L,) (default
    ``1/L`` each, so the gradients are those of the mean, ``SW_p^p``). With ``scale``,
    every difference of projections is divided by it first (values in units of
    ``scale``: W_p^p / scale^p, gradients / scale^(p-1)).

    Returns
    -------
    wpp : ndarray (L,)
        :math:`W_p^p(\\theta_l\\sharp\\mu, \\theta_l\\sharp\\nu)`, in float64 (summed in
        float64 by the kernel: in float32 it under/overflowed where the distance did not).
        The gradients are float64 too (float32 ones overflowed at p = 50 where the value
        did not).
    grad_x : ndarray (n, d)
        :math:`\\partial / \\partial x_i \\sum_l w_l W_p^p(\\theta_l)`.
    grad_y : ndarray (m, d)
    grad_directions : ndarray (L, d) or None
        Row ``l``: :math:`w_l\\, \\partial W_p^p(\\theta_l) / \\partial \\theta_l`
        (Euclidean, not projected on the sphere); None unless ``need_theta``.

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
    a = None if a is None else normalize_weights(np.asarray(a, dtype=dtype))
    b = None if b is None else normalize_weights(np.asarray(b, dtype=dtype))
    L = theta.shape[0]
    U = _project(x, theta)
    V = _project(y, theta)
    wpp, GU, GV = wpp_grad_rows(U, V, a, b, float(p), scale)
    if direction_weights is None:
        wl = np.full(L, 1.0 / L)
    else:
        wl = np.asarray(direction_weights, dtype=np.float64)
    GU *= wl[:, None]
    GV *= wl[:, None]
    grad_x = GU.T @ theta
    grad_y = GV.T @ theta
    grad_theta = GU @ x + GV @ y if need_theta else None
    return wpp, grad_x, grad_y, grad_theta


def _overflow_error(dtype, what="The distance"):
    return ValueError(f"{what} exceeds the range of {dtype}: `x` and `y` are too far apart "
                      "to be represented (rescale them).")


# --------------------------------------------------------------------------- public API

def projected_wasserstein(x, y, a=None, b=None, *, directions, p=2):
    r"""W_p^p between the projections of two weighted point clouds on each direction.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Support of the first measure (1-D input is read as (n, 1)).
    y : array_like, shape (m, d)
        Support of the second measure.
    a, b : array_like, shape (n,) and (m,), optional
        Non-negative weights with positive sums (normalized here). Default uniform.
    directions : array_like, shape (L, d)
        Projection directions (keyword-only), used as given (normalize them for sliced
        distances), in the points' dtype (float64 directions leave float32 points in
        float32).
    p : float, default 2
        Order, ``p >= 1``.

    Returns
    -------
    wpp : ndarray, shape (L,)
        :math:`W_p^p(\theta_l\sharp\mu, \theta_l\sharp\nu)` for each direction, in the
        input dtype. Their mean is :math:`SW_p^p`; their spread gives its standard error
        ``wpp.std(ddof=1) / sqrt(L)`` for i.i.d. directions.

    Raises
    ------
    ValueError
        For invalid input (naming the argument), or when a :math:`W_p^p` exceeds the
        range of the dtype (coordinates near 1e200 with ``p = 2``, say) or a positive one
        falls below its smallest normal number (near 1e-160):
        :func:`sliced_wasserstein` and :func:`wasserstein_1d` return :math:`W_p`, which
        they compute in a scaled form that stays finite.

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
    >>> projected_wasserstein(x, y, directions=np.eye(2))
    array([0., 4.])
    """
    x, y, a, b, dtype = _prepare(x, y, a, b)
    p = check_p(p)
    theta = _check_directions(directions, x.shape[1], dtype)
    (x, a, _), (y, b, _) = _positive(x, a), _positive(y, b)
    (x, y), ex = _scaled((x, y), dtype, p)
    (theta,), et = _scaled((theta,), dtype)
    q, s = _projected_rows(x, y, a, b, theta, p)
    with np.errstate(over="ignore", under="ignore"):
        if s is None and ex + et == 0:
            dist = q
            out = q.astype(dtype)
        else:
            dist = rows_distance(q, s, p)
            out = (np.ldexp(dist, ex + et) ** p).astype(dtype)
    if not np.all(np.isfinite(out)):
        k = int(np.flatnonzero(~np.isfinite(out))[0])
        raise ValueError(
            f"W_p^p on direction {k} exceeds the range of {dtype} (`x` and `y` are too "
            "far apart for their p-th power); sliced_wasserstein and wasserstein_1d "
            "return W_p in a scaled form that stays finite."
        )
    # (points of 1e-200 at p = 2 gave 0 for distinct measures, 1e-160 a subnormal with a
    # few correct bits)
    lost = (dist > 0) & (np.abs(out) < np.finfo(dtype).tiny)
    if np.any(lost):
        k = int(np.flatnonzero(lost)[0])
        raise ValueError(
            f"W_p^p on direction {k} is below the smallest normal {dtype} (`x` and `y` "
            "are too close for their p-th power: it underflows); sliced_wasserstein and "
            "wasserstein_1d return W_p in a scaled form that keeps its digits."
        )
    return out


def _check_batch(x, y, a, b):
    """A batch of pairs: ``x`` (B, n, d), ``y`` (B, m, d), weights (B, n) / (B, m), one
    vector shared by all pairs, or None. Returns the validated members and the dtype;
    errors name the member (``x[3]``)."""
    x = _as_float_array(x, "x")
    y = _as_float_array(y, "y")
    if y.ndim != 3:
        raise ValueError(f"`x` is a batch of point clouds (B, n, d) with shape {x.shape}; "
                         f"`y` must be one too (B, m, d); got shape {y.shape}.")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"`x` and `y` must hold the same number B >= 1 of point clouds; "
                         f"got shapes {x.shape} and {y.shape}.")
    B = x.shape[0]
    ws = []
    for w, name, pts in ((a, "a", x), (b, "b", y)):
        if w is None:
            ws.append([None] * B)
            continue
        arr = _as_float_array(w, name)
        if arr.ndim == 1:
            ws.append([arr] * B)
        elif arr.ndim == 2 and arr.shape[0] == B:
            ws.append(list(arr))
        else:
            raise ValueError(f"`{name}` must have shape ({B}, {pts.shape[1]}) (one weight "
                             f"vector per point cloud) or ({pts.shape[1]},); got "
                             f"{arr.shape}.")
    members = []
    dtype = None
    for i in range(B):
        xi, yi, ai, bi, dt = _prepare(x[i], y[i], ws[0][i], ws[1][i],
                                      names=(f"x[{i}]", f"y[{i}]", f"a[{i}]", f"b[{i}]"))
        dtype = dt
        members.append((xi, yi, ai, bi))
    return members, dtype


def _unscaled(f, p, ex, dtype):
    """``f**(1/p) * 2**ex``, the distance of W_p^p = ``f`` on points scaled by ``2**-ex``
    (:func:`_unscaled_distance`)."""
    return _unscaled_distance(max(f, 0.0) ** (1.0 / p), ex, dtype)


def _unscaled_distance(value, ex, dtype):
    """``value * 2**ex``, a distance computed on points scaled by ``2**-ex``; ValueError
    when it exceeds the range of ``dtype`` (Max-SW and DSW returned inf with success)."""
    with np.errstate(over="ignore"):
        value = float(np.ldexp(value, ex))
    if not value <= np.finfo(dtype).max:
        raise _overflow_error(dtype)
    return value


def _sliced_value(x, y, a, b, theta, p, estimator, dtype):
    """SW_p (a float of ``dtype``) of one validated pair on validated directions."""
    (x, a, _), (y, b, _) = _positive(x, a), _positive(y, b)
    (x, y), ex = _scaled((x, y), dtype, p)
    (theta,), et = _scaled((theta,), dtype)
    q, s = _projected_rows(x, y, a, b, theta, p)
    if estimator == "mc":
        value = power_mean_root(q, s, p)
    elif s is None:
        value = _control_variate(x, y, a, b, theta, q, estimator)
    else:
        # W_2^2 of some direction left [TINY, inf) (its plain sum under/overflowed, as
        # rows_power would): the estimate in units of M^2, M = max_l W_l (it is linear
        # in the A_l; rows_power's W_2^2 of 1e-400 made it 0.0)
        w = rows_distance(q, s, p)
        top = float(w.max())
        value = 0.0 if top == 0.0 else top * _control_variate(
            x, y, a, b, theta, (w / top) ** 2, estimator)
    if ex + et:
        try:
            value = math.ldexp(value, ex + et)
        except OverflowError:  # (math.ldexp raises where np.ldexp gives inf)
            value = math.inf
    if not value <= np.finfo(dtype).max:
        raise _overflow_error(dtype)
    return dtype.type(value)


def _control_variate(x, y, a, b, theta, A, estimator):
    """The control-variate estimate of SW_2 from the W_2^2 of each direction ``A``."""
    d = x.shape[1]
    th = theta.astype(np.float64)
    m1, S1 = _moments(x, a)
    m2, S2 = _moments(y, b)
    dm = m1 - m2
    # Means equal up to their rounding (centred clouds: |dm| 1e-16) make C rounding noise,
    # and its fitted gamma a random correction (+18 % against MC on one draw of 20
    # directions, a larger variance than MC's over 300): the means are then equal.
    eps = np.finfo(np.float64).eps
    size = np.abs(m1).max() + np.abs(m2).max() + math.sqrt(np.trace(S1) + np.trace(S2))
    if np.abs(dm).max() <= 64 * d * eps * size:
        dm = np.zeros_like(dm)
    C = (th @ dm) ** 2
    EC = dm @ dm / d
    if estimator == "upper-cv":
        C = C + np.einsum("li,ij,lj->l", th, S1 + S2, th)
        EC += (np.trace(S1) + np.trace(S2)) / d
    est = np.mean(A)
    if A.shape[0] > 1:
        varc = np.var(C, ddof=1)
        # (a C constant up to rounding, e.g. upper-cv with equal isotropic covariances
        # and equal means, carries nothing either)
        if varc > (1e-12 * np.abs(C).mean()) ** 2:
            gamma = np.cov(A, C, ddof=1)[0, 1] / varc
            est = est - gamma * (np.mean(C) - EC)
    return max(float(est), 0.0) ** 0.5


def sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, directions="random",
                       estimator="mc", rng=None):
    r"""Sliced Wasserstein distance between two weighted point clouds, or a batch of pairs.

    Parameters
    ----------
    x : array_like, shape (n, d) or (B, n, d)
        Support of the first measure (1-D input is read as (n, 1)); 3-D input is a batch
        of ``B`` point clouds.
    y : array_like, shape (m, d) or (B, m, d)
        Support of the second measure (a batch when ``x`` is one).
    a, b : array_like, shape (n,) and (m,), or (B, n) and (B, m), optional
        Non-negative weights with positive sums (normalized here). Default uniform. For a
        batch, one weight vector per pair, or one shared by all pairs.
    p : float, default 2
        Order, ``p >= 1``.
    n_projections : int, default 100
        Number of directions ``L`` drawn (ignored when ``directions`` is an array).
    directions : {"random", "qmc", "orthogonal"} or array_like, shape (L, d)
        ``"random"``: normalized Gaussian vectors (uniform on the sphere);
        ``"qmc"``: scrambled Sobol points mapped through the normal quantile function,
        then normalized (:mod:`scipy.stats.qmc`); ``"orthogonal"``: stacked Haar-random
        orthonormal bases (blocks of ``d`` orthogonal directions). An array is used as
        given, as POT's ``projections`` (but transposed: one direction per row), in the
        points' dtype (like ``p``, a parameter: float64 directions leave float32 points
        in float32).
    estimator : {"mc", "lower-cv", "upper-cv"}, default "mc"
        Plain Monte Carlo mean, or the control-variate estimators of [2]_ (``p = 2``).
    rng : {None, int, numpy.random.Generator}, optional
        Randomness for the directions (SPEC 7: passed to
        :func:`numpy.random.default_rng`).

    Returns
    -------
    distance : float or ndarray, shape (B,)
        :math:`SW_p`, a scalar of the input dtype; for a batch, an array whose entry
        ``i`` equals the call on pair ``i`` alone with the same directions (drawn once
        for the whole batch).

    Raises
    ------
    ValueError
        For invalid input, naming the argument (and the pair of a batch, e.g. ``x[3]``),
        or when the distance exceeds the range of the dtype.
    MemoryError
        When ``n_projections`` directions cannot fit in memory (checked before
        allocating).

    Notes
    -----
    With directions :math:`\theta_1, \dots, \theta_L \in S^{d-1}`,

    .. math:: SW_p = \Big(\frac1L \sum_{l=1}^L W_p^p(\theta_l\sharp\mu,
              \theta_l\sharp\nu)\Big)^{1/p}

    (POT's convention: mean over directions, then the p-th root). Projections are one
    matrix product per block of directions; each direction is an exact 1-D problem (sort
    and merge). Large problems run the blocks on Numba's number of threads
    (``numba.set_num_threads``); the result does not depend on it. Where the powers
    would overflow or underflow (coordinates near 1e200, or a large ``p``), the mean is
    computed in a scaled form, :math:`M (\frac1L \sum_l (W_l / M)^p)^{1/p}` with
    :math:`M = \max_l W_l`, which stays finite.

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

    A batch of two pairs, with the same directions for both:

    >>> xb = np.stack([x, 2 * x])
    >>> sliced_wasserstein(xb, xb + 1.0, rng=0).round(1)
    array([1., 1.])
    """
    batch = _ndim(x, "x") == 3
    if batch:
        members, dtype = _check_batch(x, y, a, b)
        d = members[0][0].shape[1]
    else:
        x, y, a, b, dtype = _prepare(x, y, a, b)
        d = x.shape[1]
    p = check_p(p)
    estimator = _check_method(estimator, _ESTIMATORS, "estimator")
    if estimator != "mc" and p != 2:
        raise ValueError(
            f"`estimator={estimator!r}` (control variates) requires p = 2; got p={p!r}. "
            "Use estimator='mc'."
        )
    theta = _get_directions(directions, n_projections, d, dtype, rng)
    if not batch:
        return _sliced_value(x, y, a, b, theta, p, estimator, dtype)
    return np.array([_sliced_value(*member, theta, p, estimator, dtype)
                     for member in members], dtype=dtype)


# ------------------------------------------------------------------------------ ascents

def _ascent_settings(tol, maxiter, callback, options, dtype, where):
    tol = _ASCENT_TOL[dtype] if tol is None else _check_positive(tol, "tol", allow_zero=True)
    maxiter = _check_int(maxiter, "maxiter", minimum=0)
    callback = _check_callback(callback)
    options = _check_option_table(options, _ASCENT_OPTIONS, where)
    return tol, maxiter, callback, options


def _ascent_message(status, rel_increase, tol, nit, halvings):
    detail = f"(rel_increase={rel_increase:.3g}, tol={tol:.3g}, nit={nit})"
    if status == CONVERGED:
        return ("Converged: the relative increase of the objective over the last "
                "iteration is at most tol with a small tangent gradient, or the tangent "
                f"gradient vanished {detail}.")
    if status == MAXITER:
        return ("Maximum number of iterations reached while the relative increase of the "
                f"objective was above tol; increase maxiter or loosen tol {detail}.")
    if status == STALLED and rel_increase <= tol:
        return (f"Stalled at a ridge: the relative increase fell to tol, but with a "
                f"tangent gradient far from 0 in {_KINK_ITERS} iterations in a row (steps "
                "cut short where the optimal 1-D coupling changes): a value at least that "
                f"of the starting direction, but possibly not a local maximum {detail}.")
    if status == STALLED:
        return (f"Stalled: no step along the tangent gradient increased the objective "
                f"({halvings} step halvings) while the last relative increase was above "
                "tol. The iterate sits at a kink of the objective (where the optimal 1-D "
                "coupling changes) or at its rounding floor: a value at least that of "
                f"the starting direction, but possibly not a local maximum {detail}.")
    if status == NONFINITE:
        return ("Non-finite values appeared in the objective or its gradient, or W_p^p "
                "fell below 1e-290 in the points' scaled units, where it has lost digits "
                "(coordinates or p too large for W_p^p, or points of very different "
                "magnitudes); the last finite iterate is returned, with its distance "
                f"from the scaled form {detail}.")
    return status_message(CALLBACK, rel_increase=rel_increase, nit=nit)


# An ascent whose relative increase fell to tol converged only where its tangent gradient
# is at most this times sqrt(max(tol, eps)) |W_p^p| (near a smooth maximum the gradient is about
# 2 sqrt(tol) of the value; at a ridge it stays 0.1-0.4 of it); otherwise it stalls after
# _KINK_ITERS such iterations in a row.
_KINK_GRAD = 100.0
_KINK_ITERS = 10
_EPS = float(np.finfo(np.float64).eps)  # (tol = 0: the gradient's rounding floor)
# An objective below has lost digits (its terms and gradient underflow; ascents stopped
# early with status 0): _onedim's floor of a plain sum of powers.
_UNDERFLOW = TINY


def _norm(v):
    """The Euclidean norm of ``v``, scaled by its largest entry where the plain one may
    have lost its squares (a gradient of 1e-308, from W_p^p near float64's smallest
    normal, had norm 0: the ascent "converged" after 0 iterations). The plain value, to
    the bit, elsewhere."""
    plain = float(np.linalg.norm(v))
    if 1e-150 < plain < 1e150:
        return plain
    top = float(np.max(np.abs(v)))
    if top == 0.0 or not math.isfinite(top):
        return top
    return top * float(np.linalg.norm(v / top))


def _sphere_ascent(fun_grad, theta, tol, maxiter, options, callback=None, report=None):
    """Projected gradient ascent with Armijo backtracking on the unit sphere.

    ``fun_grad(theta) -> (f, g)`` with ``g`` the Euclidean gradient. Steps along the
    tangent gradient, then renormalizes; the step doubles after each accepted move and
    halves while the Armijo condition fails (``options["line_search_steps"]`` halvings at
    most). Stops when the relative increase of ``f`` over one iteration is at most
    ``tol`` with a small tangent gradient (converged; with a large one ``_KINK_ITERS``
    times in a row: stalled at a ridge), when the tangent gradient vanishes (converged),
    when no step is accepted (stalled), after ``maxiter`` iterations, or on non-finite
    values. Returns
    ``(theta, f, nit, status, rel_increase)``; ``rel_increase`` is that of the last
    accepted iteration (inf before the first).
    """
    f, g = fun_grad(theta)
    if not (np.isfinite(f) and np.all(np.isfinite(g))) or 0.0 < f < _UNDERFLOW:
        # (an objective near the underflow has lost digits, its gradient the steps' scale)
        return theta, f, 0, NONFINITE, np.inf
    t = None
    rel = np.inf
    kinks = 0
    c1 = options["armijo"]
    for it in range(1, maxiter + 1):
        gt = g - (g @ theta) * theta
        gn = _norm(gt)
        if gn <= 1e-14 * _norm(g):
            return theta, f, it - 1, CONVERGED, 0.0
        if t is None:
            t = options["initial_step"] / gn  # first move: about initial_step radians
        accepted = False
        for _ in range(options["line_search_steps"]):
            cand = theta + t * gt
            cand /= np.linalg.norm(cand)
            fc, gc = fun_grad(cand)
            if not np.isfinite(fc):
                t *= 0.5
                continue
            if fc >= f + c1 * t * gn * gn:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            return theta, f, it - 1, STALLED, rel
        if not np.all(np.isfinite(gc)):
            return cand, fc, it, NONFINITE, rel
        gain = fc - f
        theta, f, g = cand, fc, gc
        t *= 2.0
        rel = gain / max(abs(f), 1e-300)
        if callback is not None:
            try:
                callback(report(theta, f, it, rel))
            except StopIteration:
                return theta, f, it, CALLBACK, rel
        if rel <= tol:
            if gn <= _KINK_GRAD * math.sqrt(max(tol, _EPS)) * abs(f):
                return theta, f, it, CONVERGED, rel
            # A small gain with a large tangent gradient: a step cut short at a ridge of
            # the objective (the 1-D couplings change; dense for p = 1), not a maximum
            # (tangent gradient 0.2-0.35 of W_p^p where a nearby direction was 4.8 %
            # higher). Stalled after _KINK_ITERS such iterations in a row.
            kinks += 1
            if kinks >= _KINK_ITERS:
                return theta, f, it, STALLED, rel
        else:
            kinks = 0
    return theta, f, maxiter, MAXITER, rel


def _check_ascent_args(p, n_projections):
    p = check_p(p)
    n_projections = _check_int(n_projections, "n_projections", minimum=1)
    return p, n_projections


def max_sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=100, n_restarts=3,
                           maxiter=100, tol=None, rng=None, callback=None, options=None):
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
    tol : float, optional
        An ascent converges when the relative increase of :math:`W_p^p` over one
        iteration is at most ``tol`` with a tangent gradient of at most
        ``100 sqrt(max(tol, eps))`` of :math:`W_p^p` (a small increase with a large
        gradient is a step cut short at a ridge: 10 in a row stall, status 4). Default
        (None): 1e-7 for float64 data, 1e-4 for float32.
    rng : {None, int, numpy.random.Generator}, optional
        Randomness of the candidates (SPEC 7). The candidates are
        ``default_rng(rng).standard_normal((n_projections, d))``, normalized.
    callback : callable, optional
        ``callback(intermediate_result)`` after every accepted iteration of every ascent,
        with an :class:`OTResult` holding ``fun`` (the current :math:`W_p`),
        ``direction``, ``nit``, ``rel_increase`` and ``restart`` (the ascent's index).
        Raising ``StopIteration`` stops (status 3).
    options : dict, optional
        ``initial_step`` (0.1: length in radians of the first step), ``armijo`` (1e-4:
        sufficient-increase constant, in (0, 1)), ``line_search_steps`` (30: step
        halvings before the line search gives up). Unknown keys raise ``TypeError``.

    Returns
    -------
    res : OTResult
        ``fun`` (the distance :math:`\max_\theta W_p`, input dtype), ``direction``
        (unit vector, shape (d,)), ``nit`` (iterations of the returned ascent),
        ``rel_increase`` (relative increase of :math:`W_p^p` in its last accepted
        iteration, what ``tol`` bounds; 0 at a stationary point, inf if no step was
        accepted), ``err`` (0.0: the 1-D couplings are exact, so the marginal error is
        zero), ``success``, ``status`` (0 converged, 1 ``maxiter`` reached, 2
        non-finite values, or :math:`W_p^p` below 1e-290 in the points' scaled units,
        where it has lost digits, 3 stopped by ``callback``, 4 stalled: no step
        increased the objective while ``rel_increase > tol``, at a kink of the
        objective or at its rounding floor, or the increase fell to ``tol`` with a
        large tangent gradient 10 iterations in a row, at a ridge), ``message``,
        ``method`` (``"ascent"``).

    Notes
    -----
    :math:`\max_{\theta\in S^{d-1}} W_p(\theta\sharp\mu, \theta\sharp\nu)`. With the
    optimal 1-D coupling :math:`\pi` of the projections,
    :math:`\nabla_\theta W_p^p = \sum_{ij} \pi_{ij}\, p |\theta^\top(x_i - y_j)|^{p-1}
    \mathrm{sign}(\theta^\top(x_i - y_j))(x_i - y_j)`; the ascent steps along its
    tangent part, renormalizes, and backtracks (Armijo). The objective is not concave:
    the result is at least as large as the best candidate, and a local maximum where the
    ascent converged (status 0: a small tangent gradient); at a ridge of the objective
    (where the 1-D couplings change, dense for p = 1) the steps are cut short and the
    ascent stalls (status 4) without claiming one. The returned
    ascent is the best of the ``n_restarts``. POT's ``max_sliced_wasserstein_distance``
    only takes the maximum over random directions.

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
    p, n_projections = _check_ascent_args(p, n_projections)
    n_restarts = _check_int(n_restarts, "n_restarts", minimum=1)
    tol, maxiter, callback, options = _ascent_settings(tol, maxiter, callback, options,
                                                       dtype, "max_sliced_wasserstein")
    d = x.shape[1]
    cand = draw_directions("random", n_projections, d, _check_rng(rng)).astype(dtype)
    (x, a, _), (y, b, _) = _positive(x, a), _positive(y, b)
    (x, y), ex = _scaled((x, y), dtype, p)
    q, s = _projected_rows(x, y, a, b, cand, p)
    scores = q if s is None else rows_distance(q, s, p)
    order = np.argsort(-scores, kind="stable")[:n_restarts]
    one = np.ones(1, dtype=dtype)

    def fun_grad(theta):
        with np.errstate(over="ignore", invalid="ignore"):  # reported as status 2
            wpp, _, _, gth = _projected_wpp_and_grad(x, y, a, b, theta[None, :], p, one)
        return float(wpp[0]), gth[0].astype(np.float64)

    def value(f):
        return _unscaled(f, p, ex, dtype)

    best = None
    for restart, k in enumerate(order):
        def report(theta, f, it, rel, restart=restart):
            return make_result(fun=value(f), direction=theta.copy(), nit=it,
                               rel_increase=float(rel), restart=restart)

        run = _sphere_ascent(fun_grad, cand[k].astype(np.float64), tol, maxiter, options,
                             callback, report)
        if best is None or (np.isfinite(run[1]) and run[1] > best[1]) or \
                not np.isfinite(best[1]):
            best = run
        if run[3] == CALLBACK:
            best = run
            break
    theta, f, nit, status, rel = best
    if f < _UNDERFLOW and scores[order[0]] > 0:
        # W_p^p underflowed (p too large, or points of very different magnitudes that
        # set the scale): 0, or near float64's smallest normal with digits lost, its
        # gradient no guide (an ascent "converged" after 0 iterations); not a value
        status = NONFINITE
    if np.isfinite(f) and status != NONFINITE:
        fun = value(f)
    else:  # the ascent could not start: the best candidate's value, in the scaled form
        fun = _unscaled_distance(rows_distance(q[order[:1]], None if s is None
                                               else s[order[:1]], p)[0], ex, dtype)
    return solver_result(status, err=0.0, tol=tol, nit=nit, method="ascent",
                         message=_ascent_message(status, rel, tol, nit,
                                                 options["line_search_steps"]),
                         fun=dtype.type(fun), direction=theta.astype(dtype),
                         rel_increase=float(rel))


def _householder(z, mu):
    """Rows of ``z`` reflected by H with H e1 = mu; returns (H z, u, s) with u = e1 - mu."""
    u = -mu.copy()
    u[0] += 1.0
    s = float(u @ u)
    if s < 1e-24:
        return z.copy(), u, 0.0
    return z - np.outer(z @ u, u) * (2.0 / s), u, s


def _unit_vector(mu):
    """``mu / |mu|`` in float64 without overflow or underflow (scaled by a power of two
    first): exact direction for 1e308 and for subnormal entries alike."""
    mu = mu.astype(np.float64)
    e = int(np.frexp(np.abs(mu).max())[1])
    mu = np.ldexp(mu, -e)
    return mu / np.linalg.norm(mu)


# Samples per call of the vMF kernel: about a million values (milliseconds), so that
# Ctrl-C is honoured between calls.
_VMF_BLOCK_VALUES = 2**20


def _vmf_blocks(gen, d, kappa, size, mu=None, out=None):
    """vMF(e1, kappa) samples (float64, (size, d)), drawn in bounded kernel calls; with
    ``mu``, reflected onto ``mu`` and written into ``out`` block by block. The stream of
    draws is the same whatever the block size."""
    step = max(1, _VMF_BLOCK_VALUES // d)
    if out is None:
        out = np.empty((size, d), dtype=np.float64)
    for lo in range(0, size, step):
        z = np.empty((min(step, size - lo), d), dtype=np.float64)
        if _k.vmf_around_e1(gen, d, kappa, z) != 0:
            raise RuntimeError(  # never expected: each try is accepted with p >= 0.65
                f"vMF sampling rejected one sample {_k._VMF_MAX_TRIES} times in a row "
                f"(d={d}, kappa={kappa!r}).")
        out[lo:lo + len(z)] = z if mu is None else _householder(z, mu)[0]
    return out


def sample_vmf(mu, kappa, size, *, rng=None):
    r"""Samples of the von Mises-Fisher distribution on the unit sphere.

    Parameters
    ----------
    mu : array_like, shape (d,)
        Mean direction (normalized here; must be finite and non-zero; any magnitude,
        from subnormal to 1e308).
    kappa : float
        Concentration, ``kappa > 0`` (any finite value: the sampler stays exact as
        ``kappa`` grows, and returns ``mu`` itself once the spread is below rounding).
    size : int
        Number of samples.
    rng : {None, int, numpy.random.Generator}, optional
        Randomness (SPEC 7).

    Returns
    -------
    samples : ndarray, shape (size, d)
        Unit vectors, in the dtype of ``mu`` (float64 for integer input).

    Raises
    ------
    MemoryError
        When ``size`` samples cannot fit in memory (checked before allocating).

    Notes
    -----
    Density :math:`\propto \exp(\kappa \mu^\top\theta)` on :math:`S^{d-1}`. Wood's
    rejection sampler draws the component :math:`w` along :math:`e_1` (envelope from a
    Beta((d-1)/2, (d-1)/2) draw) and a uniform tangent direction; a Householder
    reflection maps :math:`e_1` to :math:`\mu`. The acceptance test is evaluated in a
    form free of cancellation (in terms of :math:`1 - w`), so that it stays exact for
    every ``kappa``. The mean resultant length is :math:`E[\mu^\top\theta] =
    I_{d/2}(\kappa) / I_{d/2-1}(\kappa)`. Samples are drawn in bounded blocks, so that
    Ctrl-C interrupts a long call.

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
    d = mu.shape[0]
    _check_fits(size * d * dtype.itemsize, f"`size`={size} samples in d={d}",
                "draw fewer samples per call.")
    gen = _check_rng(rng)
    out = np.empty((size, d), dtype=dtype)
    return _vmf_blocks(gen, d, kappa, size, _unit_vector(mu), out)


def _dsw_fun_grad(x, y, a, b, z, eps, p, dtype):
    """v-DSW objective at the location ``eps`` (mean W_p^p over the vMF samples ``z``
    moved by the Householder reflection onto ``eps``) and its Euclidean gradient."""
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


def distributional_sliced_wasserstein(x, y, a=None, b=None, *, p=2, kappa=10.0,
                                      n_projections=100, maxiter=100, tol=None, rng=None,
                                      callback=None, options=None):
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
        Concentration of the vMF distribution of directions, ``kappa > 0`` (finite; a
        huge ``kappa`` makes the directions coincide with the location, as in Max-SW).
    n_projections : int, default 100
        Directions sampled from the vMF (fixed along the ascent), and random candidate
        locations scored to pick the start.
    maxiter : int, default 100
        Ascent iterations.
    tol : float, optional
        Converged when the relative increase of the objective over one iteration is at
        most ``tol`` with a small tangent gradient (the rule of
        :func:`max_sliced_wasserstein`). Default (None): 1e-7 for float64 data, 1e-4 for
        float32.
    rng : {None, int, numpy.random.Generator}, optional
        Randomness (SPEC 7).
    callback : callable, optional
        ``callback(intermediate_result)`` after every accepted iteration, with an
        :class:`OTResult` holding ``fun``, ``location``, ``nit`` and ``rel_increase``.
        Raising ``StopIteration`` stops (status 3).
    options : dict, optional
        As in :func:`max_sliced_wasserstein`: ``initial_step``, ``armijo``,
        ``line_search_steps``.

    Returns
    -------
    res : OTResult
        ``fun`` (the distance, input dtype), ``location`` (unit vector (d,), the vMF
        mean), ``directions`` ((n_projections, d): the vMF samples at ``location`` that
        define ``fun``; the torch layer's gradient goes through them), ``kappa``,
        ``n_projections``, ``nit``, ``rel_increase`` (relative increase of the objective
        in the last accepted iteration, what ``tol`` bounds; 0 at a stationary point),
        ``err`` (0.0: the 1-D couplings are exact), ``success``, ``status`` (0
        converged, 1 ``maxiter`` reached, 2 non-finite values, or an objective below
        1e-290 in the points' scaled units, where it has lost digits, 3 stopped by
        ``callback``, 4 stalled: no step increased the objective while
        ``rel_increase > tol``, or the increase fell to ``tol`` with a large tangent
        gradient 10 iterations in a row, at a ridge), ``message``, ``method``
        (``"ascent"``).

    Raises
    ------
    MemoryError
        When ``n_projections`` directions cannot fit in memory (checked before
        allocating).

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
    p, n_projections = _check_ascent_args(p, n_projections)
    kappa = _check_positive(kappa, "kappa")
    tol, maxiter, callback, options = _ascent_settings(
        tol, maxiter, callback, options, dtype, "distributional_sliced_wasserstein")
    d = x.shape[1]
    gen = _check_rng(rng)
    cand = draw_directions("random", n_projections, d, gen).astype(dtype)
    (x, a, _), (y, b, _) = _positive(x, a), _positive(y, b)
    (x, y), ex = _scaled((x, y), dtype, p)
    q, s = _projected_rows(x, y, a, b, cand, p)
    scores = q if s is None else rows_distance(q, s, p)
    start = cand[int(np.argmax(scores))].astype(np.float64)
    z = _vmf_blocks(gen, d, kappa, n_projections)

    def fun_grad(eps):
        with np.errstate(over="ignore", invalid="ignore"):  # reported as status 2
            return _dsw_fun_grad(x, y, a, b, z, eps, p, dtype)

    def value(f):
        return _unscaled(f, p, ex, dtype)

    def report(eps, f, it, rel):
        return make_result(fun=value(f), location=eps.copy(), nit=it,
                           rel_increase=float(rel))

    eps, f, nit, status, rel = _sphere_ascent(fun_grad, start, tol, maxiter, options,
                                              callback, report)
    theta = _householder(z, eps)[0].astype(dtype)
    if f < _UNDERFLOW and np.max(scores) > 0:
        status = NONFINITE  # W_p^p underflowed (see max_sliced_wasserstein): not a value
    if np.isfinite(f) and status != NONFINITE:
        fun = value(f)
    else:  # the objective overflowed: its value in the scaled form
        qd, sd = _projected_rows(x, y, a, b, theta, p)
        fun = _unscaled_distance(power_mean_root(qd, sd, p), ex, dtype)
    return solver_result(status, err=0.0, tol=tol, nit=nit, method="ascent",
                         message=_ascent_message(status, rel, tol, nit,
                                                 options["line_search_steps"]),
                         fun=dtype.type(fun), location=eps.astype(dtype), directions=theta,
                         kappa=kappa, n_projections=n_projections, rel_increase=float(rel))


# -------------------------------------------------------- entry points of the torch layer

def _sliced_value_and_grad(x, y, a, b, theta, p):
    """SW_p on the directions ``theta`` and its gradients w.r.t. ``x`` and ``y``, for
    validated arrays of one dtype: ``(value, grad_x, grad_y)`` (value a float).
    Zero-weight points are left out (their gradients are 0)."""
    (xp, ap, kx), (yp, bp, ky) = _positive(x, a), _positive(y, b)
    if kx is not None or ky is not None:
        value, gxp, gyp = _sliced_value_and_grad(xp, yp, ap, bp, theta, p)
        gx, gy = np.zeros_like(x), np.zeros_like(y)
        gx[slice(None) if kx is None else kx] = gxp
        gy[slice(None) if ky is None else ky] = gyp
        return value, gx, gy
    dtype = x.dtype
    (xs, ys), ex = _scaled((x, y), dtype, p)
    (ts,), et = _scaled((theta,), dtype)
    wpp, gx, gy, _ = _projected_wpp_and_grad(xs, ys, a, b, ts, p, need_theta=False)
    mean = float(np.mean(wpp, dtype=np.float64))
    plain = np.all(np.isfinite(wpp)) and np.isfinite(mean) and mean >= 1e-290
    if plain:
        value = max(mean, 0.0) ** (1.0 / p)
        # d SW_p / d mean = (1/p) mean^(1/p - 1); 0 where the mean is 0 (a subgradient)
        scale = 0.0 if mean <= 0 else (1.0 / p) * mean ** (1.0 / p - 1.0)
        gx, gy = gx * scale, gy * scale
        # (inf * a tiny factor: p |d|^(p - 1) beyond float64 where the mean was not)
        plain = np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))
    if not plain:
        # Scaled form: the value from the rows' (q, s), then the gradient with every
        # difference divided by the value (finite for any p where the value is).
        q, s = _projected_rows(xs, ys, a, b, ts, p)
        value = power_mean_root(q, s, p)
        if value == 0.0:
            gx, gy = np.zeros_like(gx), np.zeros_like(gy)
        else:
            _, gx, gy, _ = _projected_wpp_and_grad(xs, ys, a, b, ts, p, scale=value,
                                                   need_theta=False)
            gx, gy = gx / p, gy / p
    value = np.ldexp(value, ex + et)
    if not np.isfinite(dtype.type(value)):
        raise _overflow_error(dtype)
    with np.errstate(over="ignore"):
        gx, gy = np.ldexp(gx, et).astype(dtype), np.ldexp(gy, et).astype(dtype)
    if not (np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))):
        raise ValueError(f"The gradient of SW_p exceeds the range of {dtype} "
                         f"(`p`={p!r} is too large for these points).")
    return float(value), gx, gy


def sliced_value_and_grad(x, y, a=None, b=None, *, p=2, n_projections=100,
                          directions="random", rng=None):
    """:math:`SW_p` and its gradients: ``(value, grad_x, grad_y)``.

    Internal entry point of the torch layer (NumPy arrays in and out, validated as
    :func:`sliced_wasserstein`, whose value this is for the same arguments and plain
    Monte Carlo). ``value`` is a Python float; ``grad_x`` (n, d) and ``grad_y`` (m, d)
    are in the working dtype: for each direction, the optimal 1-D coupling of the sorted
    projections gives the gradient of :math:`W_p^p` w.r.t. each projected point, carried
    back through :math:`\\theta^\\top x`, then through the mean and the p-th root (0
    where the value is 0).
    """
    x, y, a, b, dtype = _prepare(x, y, a, b)
    p = check_p(p)
    theta = _get_directions(directions, n_projections, x.shape[1], dtype, rng)
    return _sliced_value_and_grad(x, y, a, b, theta, p)


def max_sliced_value_and_grad(x, y, a=None, b=None, **kwargs):
    """``(res, grad_x, grad_y)``: :func:`max_sliced_wasserstein`'s result (same keyword
    arguments) and the gradients of ``res.fun`` w.r.t. ``x`` and ``y`` by Danskin's
    theorem: those of :math:`W_p` on ``res.direction``, held fixed. Internal entry point
    of the torch layer."""
    res = max_sliced_wasserstein(x, y, a, b, **kwargs)
    x, y, a, b, dtype = _prepare(x, y, a, b)
    p = check_p(kwargs.get("p", 2))
    theta = np.ascontiguousarray(res.direction[None, :], dtype=dtype)
    _, gx, gy = _sliced_value_and_grad(x, y, a, b, theta, p)
    return res, gx, gy


def distributional_sliced_value_and_grad(x, y, a=None, b=None, **kwargs):
    """``(res, grad_x, grad_y)``: :func:`distributional_sliced_wasserstein`'s result
    (same keyword arguments) and the gradients of ``res.fun`` w.r.t. ``x`` and ``y`` by
    Danskin's theorem: those of :math:`SW_p` on ``res.directions`` (the vMF samples at
    the optimal location), held fixed. Internal entry point of the torch layer."""
    res = distributional_sliced_wasserstein(x, y, a, b, **kwargs)
    x, y, a, b, dtype = _prepare(x, y, a, b)
    p = check_p(kwargs.get("p", 2))
    theta = np.ascontiguousarray(res.directions, dtype=dtype)
    _, gx, gy = _sliced_value_and_grad(x, y, a, b, theta, p)
    return res, gx, gy
