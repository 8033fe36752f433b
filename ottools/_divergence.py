"""Sinkhorn divergence between point clouds: three entropic problems, one driver."""

import contextlib
import functools
import os

import numpy as np

from ._costs import (cost_matrix, dense_costs, exactly_symmetric, metric_p,
                     named_cost_matrix)
from ._geometry import point_cloud, use_online
from ._kernels import adapts_threads, lazy
from ._pool import pool_map
from ._problem import LinearProblem, Settings
from ._result import CONVERGED, make_result
from ._sinkhorn import method_options, sinkhorn, solve
from ._validation import (_as_float_array, _check_balanced, _check_bool, _check_positive,
                          _check_reg_m, _check_samples, _check_weights, _ndim)

__all__ = ["sinkhorn_divergence"]

_k_sym = lazy("_symmetric")


def _swapped(x, y, a, b):
    """True when ``(y, b)`` sorts before ``(x, a)``: the cross problem is always solved in
    one orientation, so that ``S(x, y)`` and ``S(y, x)`` are the same computation."""
    kx = (x.shape, x.tobytes(), b"" if a is None else a.tobytes())
    ky = (y.shape, y.tobytes(), b"" if b is None else b.tobytes())
    return ky < kx


def _symmetrized(cost):
    """``(cost, True)`` for a symmetric cost, ``((C + C^T) / 2, True)`` when it is symmetric
    up to 16 ulps of ``max|C|`` (e.g. a callable computing ``|x|^2 + |y|^2 - 2 x.y``),
    else ``(cost, False)``: only a symmetric cost gets the symmetric iterations."""
    if _k_sym.is_symmetric(cost):
        return cost, True
    atol = 16 * np.finfo(cost.dtype).eps * float(np.max(np.abs(cost)))
    if np.all(np.abs(cost - cost.T) <= atol):
        return np.ascontiguousarray(0.5 * (cost + cost.T)), True
    return cost, False


def _dense_transposed(plan_dense):
    """The transpose of ``plan_dense()`` (a partial of it pickles, a lambda did not)."""
    return plan_dense().T


def _transposed(res):
    """The result of the transposed problem (plan^T, f and g exchanged)."""
    out = make_result(**res)
    if isinstance(res.plan, np.ndarray):
        out.plan = res.plan.T  # a view (the gradients read it in place)
    else:  # an operator (PointCloud problems)
        out.plan = res.plan.T
        out.plan_dense = functools.partial(_dense_transposed, res.plan_dense)
        out.pop("barycentric_map", None)
    out.f, out.g = res.g, res.f
    for key in ("marginals", "masses", "reg_m"):
        if key in res:
            out[key] = tuple(reversed(res[key]))
    if "terms" in res:
        out.terms = {**res.terms, "relax_a": res.terms["relax_b"],
                     "relax_b": res.terms["relax_a"]}
    return out


def _mass_term(xy, xx, yy):
    """The mass term ``reg / 2 (sum(a) - sum(b))**2`` of the unbalanced divergence (0 for a
    balanced one), as NumPy float64 arithmetic: inf where it overflows (masses near 1e160
    raised a bare OverflowError from Python's ``**``), as the entropic values do."""
    if getattr(xy, "reg_m", None) is None:
        return 0.0
    diff = np.float64(xx.masses[0]) - np.float64(yy.masses[0])
    with np.errstate(over="ignore"):
        return float(0.5 * np.float64(xy.reg) * diff * diff)


@adapts_threads
def divergence_parts(x, y, a=None, b=None, *, reg, reg_m=None, metric="sqeuclidean",
                     p=None, method="auto", tol=None, maxiter=10_000, options=None,
                     online=None):
    """Validate, build the three cost matrices and solve: ``(xy, xx, yy, dtype)``, the
    :class:`OTResult` of each entropic problem ``W(a, b)``, ``W(a, a)``, ``W(b, b)``.

    Internal entry point of :func:`sinkhorn_divergence` and of the differentiable layer
    (envelope gradients from the plans and potentials, no re-solve):
    ``dS/dC_xy = xy.plan``, ``dS/dC_xx = -xx.plan / 2``, ``dS/dC_yy = -yy.plan / 2``;
    ``dS/da = xy.f - (xx.f + xx.g) / 2`` and ``dS/db = xy.g - (yy.f + yy.g) / 2`` (centred
    potentials; defined up to a constant on the simplex).
    """
    p = metric_p(metric, p)
    x, y, a, b, dtype = _check_samples(x, y, a, b)
    reg = _check_positive(reg, "reg")
    name, opts = method_options(method, options)
    a = _check_weights(a, x.shape[0], "a", dtype)
    b = _check_weights(b, y.shape[0], "b", dtype)
    rho = _check_reg_m(reg_m)
    if rho is not None and all(np.isinf(rho)):
        rho = None
    if rho is None:
        b = _check_balanced(a, b, hint=", or relax the marginals with `reg_m`")
    settings = Settings.from_args(tol, maxiter, None, dtype, opts)
    swap = _swapped(x, y, a, b)
    if swap:
        x, y, a, b = y, x, b, a

    if online is not None:
        online = _check_bool(online, "online")

    names = {"x": "y", "y": "x"} if swap else {"x": "x", "y": "y"}  # the user's names

    # The cross problem of the swapped pair relaxes b's marginal by reg_m's second entry
    # (reg_m=(2.0, 0.7) gave 0.841 against 1.600; W(a, a) with (r_a, r_b) is W(a, a) with
    # (r_b, r_a) by transposition, so the self problems take the pair as given).
    rho_xy = rho[::-1] if (swap and rho is not None) else rho

    costs = None  # dense_costs of the pair, made on first use

    def solve_pair(u, v, wu, wv, self_transport=False, pair=("x", "y")):
        nonlocal costs
        if use_online(u.shape[0], v.shape[0], dtype, metric, online):
            cost = point_cloud(u, v, metric, names=(names[pair[0]], names[pair[1]]), p=p)
            symmetric = self_transport
        else:
            if costs is None:
                costs = dense_costs(x, y, metric, dtype, p)
            cost = np.ascontiguousarray(
                costs(u, v, (names[pair[0]], names[pair[1]])), dtype=dtype)
            if swap and callable(metric) and not self_transport:
                # A callable's cross cost is metric(x, y) of the user's x and y, whatever
                # the orientation solved: a non-symmetric callable gave the divergence of
                # the reversed pair (its metric(y, x) transposed). A symmetric one (up to
                # its rounding) keeps the solved orientation's costs, so that S(x, y) ==
                # S(y, x) exactly.
                user = np.ascontiguousarray(
                    costs(v, u, (names[pair[1]], names[pair[0]])).T, dtype=dtype)
                top = float(np.max(np.abs(cost), initial=0.0))
                if not np.allclose(user, cost, rtol=0, atol=1e-12 * top):
                    cost = user
            symmetric = self_transport and exactly_symmetric(metric, u.shape[1])
        if self_transport and not symmetric:
            cost, symmetric = _symmetrized(cost)
        return solve(LinearProblem(wu, wv, cost, dtype), reg, settings, name,
                     symmetric=symmetric, rho=rho if self_transport else rho_xy)

    xx = solve_pair(x, x, a, a, True, ("x", "x"))
    yy = solve_pair(y, y, b, b, True, ("y", "y"))
    if x.shape == y.shape and np.array_equal(x, y) and np.array_equal(a, b):
        xy = xx  # the same problem: S(x, x) = 0 exactly
    else:
        xy = solve_pair(x, y, a, b)
    if swap:
        return _transposed(xy), yy, xx, dtype
    return xy, xx, yy, dtype


def sinkhorn_divergence(x, y, a=None, b=None, *, reg, reg_m=None, metric="sqeuclidean",
                        p=None, method="auto", tol=None, maxiter=10_000, options=None,
                        online=None):
    r"""Debiased Sinkhorn divergence between two weighted point clouds.

    .. math::

        S_\varepsilon(\alpha, \beta) = W_\varepsilon(\alpha, \beta)
        - \tfrac12 W_\varepsilon(\alpha, \alpha) - \tfrac12 W_\varepsilon(\beta, \beta),

    with :math:`\alpha = \sum_i a_i \delta_{x_i}`, :math:`\beta = \sum_j b_j \delta_{y_j}`
    and :math:`W_\varepsilon` the entropic cost
    :math:`\min_{P \in U(a, b)} \langle P, C \rangle + \varepsilon\,\mathrm{KL}(P \| a \otimes b)`,
    i.e. ``ottools.sinkhorn(...).fun``.

    Parameters
    ----------
    x : array_like, shape (n, d) or (B, n, d)
        Source samples (1-D input is read as ``n`` points in 1-D). A 3-D ``x`` (with
        ``y`` of shape (B, m, d)) is a batch of ``B`` pairs: see *Returns*.
    y : array_like, shape (m, d) or (B, m, d)
        Target samples, same ``d``.
    a, b : array_like, shape (n,) and (m,), or (B, n) and (B, m) for a batch, optional
        Weights (``None``: uniform). Same total mass (relative tolerance 1e-6). A batch
        takes one weight vector per pair, or one vector (n,), (m,) shared by all pairs
        (the same results as that vector repeated to (B, n), (B, m)).
    reg : float
        Entropic regularization :math:`\varepsilon > 0`, in cost units. Required.
    reg_m : float or pair, optional
        Unbalanced divergence (Séjourné et al. [3]_): the three problems relax their
        marginals with ``reg_m`` (see :func:`ottools.sinkhorn`) and the value gains the
        mass term ``reg / 2 (sum(a) - sum(b))**2``; masses may differ. GeomLoss's
        ``SamplesLoss("sinkhorn", p=2, blur=sqrt(reg), reach=sqrt(reg_m), debias=True)``
        is this value for the cost ``|x - y|^2 / 2`` (pass ``x / sqrt(2)``, ``y / sqrt(2)``).
    metric : str or callable, default "sqeuclidean"
        Ground cost, any name accepted by :func:`ottools.cost_matrix`, or a callable
        ``metric(x, y) -> (n, m) array``: the three problems' costs are ``c(x, y)``,
        ``c(x, x)`` and ``c(y, y)`` (a callable's cross cost is ``metric(x, y)`` whatever
        the orientation solved). ``"seuclidean"`` and ``"mahalanobis"`` estimate their
        variances (``V``, ``VI`` of :func:`scipy.spatial.distance.cdist`) once, from ``x``
        and ``y`` stacked (as ``cost_matrix(x, y, metric)`` does), and use them for the
        three problems, so that :math:`S_\varepsilon` has one ground cost
        (``cost_matrix(x, x, "seuclidean")`` alone estimates them from ``x`` only).
    p : float, optional
        Exponent of the ground costs ``"minkowski"`` and ``"minkowski_p"`` (``p >= 1``;
        default 2), as :func:`ottools.cost_matrix`'s ``p``, for the three problems, dense
        or online. Refused (``TypeError``) with any other ``metric``, a callable included.
    method : str, default "auto"
        Sinkhorn method of the three problems (see :func:`ottools.sinkhorn`); ``"auto"``
        converges at every ``reg`` (epsilon-scaling, over-relaxed sweeps, Newton finish).
    tol : float, optional
        Relative marginal error at which each of the three solves stops (see
        :func:`ottools.sinkhorn`). Default 1e-9 (float64) or 1e-4 (float32).
    maxiter : int, default 10000
        Iteration cap of each solve.
    options : dict, optional
        Options of ``method``, used by the three solves (see :func:`ottools.sinkhorn`).
    online : bool, optional
        Solve on :class:`ottools.PointCloud` costs computed on the fly (O((n + m) d)
        memory) instead of dense matrices. Default (None): online when a problem's dense
        arrays (cost, kernel and plan, ``3 n m`` numbers) would exceed 2 GiB
        (``ottools._geometry.DENSE_BUDGET``) and ``metric`` is ``"sqeuclidean"``,
        ``"euclidean"``, ``"cityblock"`` or ``"minkowski"`` (the distance, with ``p``).
        The parts' ``plan`` is then an operator.

    Returns
    -------
    res : OTResult
        ``fun`` : float, :math:`S_\varepsilon(\alpha, \beta)`. Non-negative up to the
        solver tolerance (Feydy et al. [1]_); not clamped at 0.
        ``xy``, ``xx``, ``yy`` : the :class:`OTResult` of each entropic problem
        (:func:`ottools.sinkhorn`'s fields: ``fun``, ``plan``, ``f``, ``g``, ...).
        ``nit`` : their iterations together; ``err`` : the largest of their errors;
        ``success`` : all three converged; ``status`` and ``message`` : those of the
        first problem that did not converge (``xy``, ``xx``, ``yy`` in that order), else
        0; ``method``, ``reg``.

        For a batch of pairs, ``fun``, ``nit``, ``err``, ``success`` and ``status`` are
        arrays of shape (B,), ``xy``, ``xx``, ``yy`` lists of the pairs' results, and
        ``message`` sums up the batch. Each pair's result is that of the call on that
        pair, to the bit (values, plans, potentials, iteration counts). Pairs
        under 2**18 cost entries with the squared Euclidean cost, balanced weights and
        ``method`` "auto" or "log" are solved as three batches of problems (one Numba
        kernel each, see :func:`ottools.sinkhorn`); other pairs one by one (on a thread
        pool when large).

    Notes
    -----
    *Convention.* ``W_eps`` is ``<P, C> + eps KL(P || a x b)``, the value of
    :func:`ottools.sinkhorn` (``res.fun``) and the dual objective. OTT-JAX's
    ``<P, C> - eps H(P)`` (H the Shannon entropy) differs from it by
    ``eps (H(a) + H(b))`` for normalized weights, a term that cancels in
    :math:`S_\varepsilon`: both conventions give the same divergence.
    POT's ``ot.bregman.empirical_sinkhorn_divergence`` instead combines the *linear*
    costs ``L = <P_eps, C>`` of the three entropic plans (and clamps at 0); the two
    are related by

    ``S_ottools = S_POT + eps (KL(P_xy) - KL(P_xx) / 2 - KL(P_yy) / 2)``,

    with ``KL(P) = KL(P || a x b)`` of each optimal plan. POT's value is not a
    debiased entropic cost and can be negative before its clamp; ottools' value is
    the quantity of [1]_ (positive, zero iff the measures are equal, convex in each
    argument).

    *Symmetry.* The cross problem is solved in one orientation whatever the order of the
    arguments, so ``sinkhorn_divergence(x, y).fun == sinkhorn_divergence(y, x).fun``
    exactly, and ``sinkhorn_divergence(x, x).fun == 0``. (A callable ``metric`` that is not
    symmetric, ``metric(x, y) != metric(y, x).T``, defines a divergence that is not
    symmetric either: the cross problem then solves on ``metric(x, y)`` transposed.)

    References
    ----------
    .. [1] J. Feydy, T. Séjourné, F.-X. Vialard, S. Amari, A. Trouvé, G. Peyré,
       "Interpolating between Optimal Transport and MMD using Sinkhorn Divergences",
       AISTATS 2019.
    .. [2] A. Genevay, G. Peyré, M. Cuturi, "Learning Generative Models with Sinkhorn
       Divergences", AISTATS 2018.
    .. [3] T. Séjourné, J. Feydy, F.-X. Vialard, A. Trouvé, G. Peyré, "Sinkhorn
       Divergences for Unbalanced Optimal Transport", 2019, arXiv:1910.12958.

    Examples
    --------
    >>> import numpy as np
    >>> import ottools
    >>> x = np.array([[0.0], [1.0], [2.0]])
    >>> ottools.sinkhorn_divergence(x, x, reg=1.0).fun
    0.0

    For the squared Euclidean cost a translation by ``t`` has divergence ``|t|^2``
    for every ``reg``:

    >>> res = ottools.sinkhorn_divergence(x, x + 0.5, reg=1.0)
    >>> res.success, round(res.fun, 6)
    (True, 0.25)
    """
    p = metric_p(metric, p)  # (before any solve, and once for a batch)
    if _ndim(x, "x") == 3 or _ndim(y, "y") == 3:
        return _divergence_batch(x, y, a, b, reg=reg, reg_m=reg_m, metric=metric, p=p,
                                 method=method, tol=tol, maxiter=maxiter, options=options,
                                 online=online)
    xy, xx, yy, _ = divergence_parts(x, y, a, b, reg=reg, reg_m=reg_m, metric=metric, p=p,
                                     method=method, tol=tol, maxiter=maxiter,
                                     options=options, online=online)
    parts = (xy, xx, yy)
    failed = [p for p in parts if not p.success]
    first = failed[0] if failed else xy
    names = {id(xy): "W(x, y)", id(xx): "W(x, x)", id(yy): "W(y, y)"}
    message = ("Converged: the three entropic problems reached tol." if not failed else
               " | ".join(f"{names[id(p)]}: {p.message}" for p in failed))
    # Unbalanced: the mass term of Sejourne et al. (zero for equal masses).
    value = float(xy.fun - 0.5 * (xx.fun + yy.fun)) + _mass_term(xy, xx, yy)
    return make_result(
        fun=value, xy=xy, xx=xx, yy=yy,
        nit=int(xy.nit + xx.nit + yy.nit), err=float(max(p.err for p in parts)),
        success=not failed, status=int(first.status) if failed else CONVERGED,
        message=message, method=xy.method, reg=xy.reg)


def _divergence_batch(x, y, a, b, **kwargs):
    """:func:`sinkhorn_divergence` of each pair of a batch ``x`` (B, n, d), ``y``
    (B, m, d), weights (B, n), (B, m), shared (n,), (m,) or None: one result whose fields
    are arrays over the pairs (``xy``, ``xx``, ``yy``: lists of the pairs' results)."""
    x = _as_float_array(x, "x", ndim=3)
    y = _as_float_array(y, "y", ndim=3)
    # batch sizes checked by divergence_value_and_grad (_check_pairs) before any solve
    values, results, _ = divergence_value_and_grad(x, y, a, b, need=(False,) * 4, **kwargs)
    B = len(x)
    xy, xx, yy = results[0::3], results[1::3], results[2::3]
    nit = np.array([p.nit + q.nit + r.nit for p, q, r in zip(xy, xx, yy)], dtype=np.int64)
    err = np.array([max(p.err, q.err, r.err) for p, q, r in zip(xy, xx, yy)])
    status = np.array([next((int(r.status) for r in parts if not r.success), CONVERGED)
                       for parts in zip(xy, xx, yy)], dtype=np.int64)
    success = np.array([all(r.success for r in parts) for parts in zip(xy, xx, yy)])
    bad = np.flatnonzero(~success)
    message = (f"Batch of {B} pairs: {B - bad.size} converged."
               if not bad.size else
               f"Batch of {B} pairs: {B - bad.size} converged, {bad.size} did not (first: "
               f"pair {bad[0]}). See `status` per pair and the pairs' `xy`, `xx`, `yy`.")
    return make_result(fun=np.asarray(values, dtype=np.float64), xy=xy, xx=xx, yy=yy,
                       nit=nit, err=err, success=success, status=status, message=message,
                       method=xy[0].method, reg=xy[0].reg)


def _check_pairs(x, y, a, b):
    """The batch sizes of a batch of pairs ``x`` (B, n, d), ``y`` (B, m, d) and their
    weights (B, n), (B, m), shared (n,), (m,) or None agree, and ``B > 0``: ValueError
    naming the argument and the sizes otherwise (checked before any solve). Returns
    ``(a, b)`` with a shared vector as a list holding it once per pair, so that each
    pair is solved as if the user had passed the weights repeated to one row per pair."""
    if len(y) != len(x):
        raise ValueError(f"`y` holds {len(y)} pairs but `x` holds {len(x)}.")
    if len(x) == 0:
        raise ValueError("`x` must hold at least one pair; got shape (0, ...).")
    out = []
    for w, name, pts in ((a, "a", x), (b, "b", y)):
        shape = np.shape(pts)[:2]
        if w is not None and np.shape(w) == shape[1:]:
            w = [w] * shape[0]  # (the user's object: a tensor is refused per pair)
        elif w is not None and np.shape(w) != shape:
            raise ValueError(f"`{name}` must have shape {shape} (one weight vector per "
                             f"pair), ({shape[1]},) (one shared by all pairs) or be "
                             f"None; got shape {np.shape(w)}.")
        out.append(w)
    return tuple(out)


# Pairs whose cost matrices have fewer than 2**18 entries (solved without row blocks) go
# through the batch path (:func:`_small_pairs`), in groups whose largest cost matrices
# hold about _PAIRS_GROUP_ENTRIES entries together (each group stacks three costs and
# three plans). It beat the pool of pair solves at every such size (forward and
# backward, 2-D, reg 0.05): 128 pairs of 96 points 30 ms against 123 ms; 64 of 160,
# 69 against 89; 32 of 256, 53 against 59; 16 of 400, 45 against 58.
_PAIRS_GROUP_ENTRIES = 1 << 23

# Otherwise (other metrics, methods or options), pairs whose largest cost matrix has
# fewer entries run one after the other in the calling thread: their solves are mostly
# Python (three calls of the driver and the
# gradients, about 0.6 ms a pair at 64 x 64 against 0.1 ms of kernels), and two threads
# running Python take turns on the GIL, slower than one (forward and backward, 2-D:
# B = 256 pairs of 64 points 164-205 ms on one thread against 242-299 ms on two; 128
# pairs of 96 points 98-125 against 127-156 ms; about equal at 160 points; at 256
# points two threads win, 98 ms against 135 ms).
_POOL_MIN_ENTRIES = 20_000


def divergence_value_and_grad(x, y, a=None, b=None, **kwargs):
    """:func:`_value_and_grad` of one pair, or of each pair of a batch ``x`` (B, n, d),
    ``y`` (B, m, d) (weights (B, n), (B, m), shared (n,), (m,) or None): as batches of
    problems (:func:`_small_pairs`) where it applies, else pair by pair, on a thread pool
    for large pairs (the kernels release the GIL): values (B,), the results of every pair,
    gradients stacked over the batch."""
    if np.ndim(x) != 3:
        return _value_and_grad(x, y, a, b, **kwargs)
    a, b = _check_pairs(x, y, a, b)
    if kwargs.get("p") is not None:  # refused once, not as "pair 0 of the batch"
        kwargs["p"] = metric_p(kwargs.get("metric", "sqeuclidean"), kwargs["p"])
    workers = min(len(x), os.cpu_count() or 1)
    side = max(np.shape(x)[1], np.shape(y)[1])
    if side ** 2 < lazy("_jit").PARALLEL_MIN_ENTRIES:
        # one-thread solves (no row blocks): the batch path, in groups of pairs
        step = max(1, _PAIRS_GROUP_ENTRIES // side ** 2)
        outs = []
        for k0 in range(0, len(x), step):
            sl = slice(k0, k0 + step)
            out = _small_pairs(x[sl], y[sl], None if a is None else a[sl],
                               None if b is None else b[sl], first=k0, **kwargs)
            if out is None:
                break
            outs.append(out)
        else:
            return (np.concatenate([o[0] for o in outs]), [r for o in outs for r in o[1]],
                    tuple(None if outs[0][2][i] is None else
                          np.concatenate([o[2][i] for o in outs]) for i in range(4)))
    if side ** 2 < _POOL_MIN_ENTRIES:
        workers = 1
    jit = lazy("_jit")
    user = jit.user_threads()
    share = jit.pool_share(workers)

    def one(k):
        with jit.pool_worker(share, user), _pair_errors(k):
            return _value_and_grad(x[k], y[k], None if a is None else a[k],
                                   None if b is None else b[k], **kwargs)

    if workers == 1:
        outs = [one(k) for k in range(len(x))]
    else:
        outs = pool_map(one, range(len(x)), workers, "ottools-batch")
    grads = tuple(None if outs[0][2][i] is None else np.stack([o[2][i] for o in outs])
                  for i in range(4))
    return np.array([o[0] for o in outs]), [r for o in outs for r in o[1]], grads


@contextlib.contextmanager
def _pair_errors(k):
    """Errors raised for pair ``k`` of a batch name it (``pair 3 of the batch: ...``)."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"pair {k} of the batch: {exc}") from None


def _small_pairs(x, y, a=None, b=None, *, reg, reg_m=None, metric="sqeuclidean", p=None,
                 debias=True, need=(True,) * 4, method="auto", tol=None, maxiter=10_000,
                 options=None, online=None, first=0):
    """:func:`divergence_value_and_grad` on a batch of small pairs (squared Euclidean cost,
    balanced, ``method`` "auto" or "log", dense): every pair validated, oriented and given
    its costs as :func:`divergence_parts` does, then the ``B`` problems of each kind
    (``xy``, ``xx``, ``yy``) solved by one batch call (``ottools._batch.run_batch``: one
    Numba kernel, the problems that one call would anneal or finish by Newton steps handed
    back to it), so that every pair's plans, potentials and iteration counts are those of
    :func:`_value_and_grad` on that pair, to the bit (errors name pair ``first + k``).
    Returns None where this path does not apply."""
    from ._batch import run_batch
    from ._costs import KERNEL_MAX_D, metric_name

    if online is not None:
        online = _check_bool(online, "online")
    if not (reg_m is None and p is None and online is not True and isinstance(metric, str)
            and metric_name(metric) == "sqeuclidean" and np.shape(x)[2] <= KERNEL_MAX_D
            and method in ("auto", "log") and (options is None or method == "auto")):
        return None
    reg = _check_positive(reg, "reg")
    name, opts = method_options(method, options)
    B = len(x)
    pairs = []
    for k in range(B):
        with _pair_errors(first + k):
            xk, yk, ak, bk, dtype = _check_samples(x[k], y[k], None if a is None else a[k],
                                                   None if b is None else b[k])
            ak = _check_weights(ak, xk.shape[0], "a", dtype)
            bk = _check_weights(bk, yk.shape[0], "b", dtype)
            bk = _check_balanced(ak, bk, hint=", or relax the marginals with `reg_m`")
        swap = debias and _swapped(xk, yk, ak, bk)
        pairs.append((yk, xk, bk, ak, True) if swap else (xk, yk, ak, bk, False))
    dtype = pairs[0][0].dtype
    if any(p[0].dtype != dtype for p in pairs) or use_online(
            pairs[0][0].shape[0], pairs[0][1].shape[0], dtype, metric, online):
        return None
    settings = Settings.from_args(tol, maxiter, None, dtype, opts)
    # The costs of every kind, in the order of divergence_parts (xx, yy, xy)
    kinds = [(0, 0), (1, 1), (0, 1)] if debias else [(0, 1)]
    points = [np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])]
    costs = {kind: _pair_costs(points[kind[0]], points[kind[1]], dtype) for kind in kinds}
    if any(c is None for c in costs.values()):
        # points to rescale, or costs that may overflow: pair by pair, the errors of
        # each pair alone (the user's names of the solved orientation's points)
        each = {kind: [] for kind in kinds}
        for k, p in enumerate(pairs):
            names = ("y", "x") if p[4] else ("x", "y")
            with _pair_errors(first + k):
                for i, j in kinds:
                    each[i, j].append(np.ascontiguousarray(named_cost_matrix(
                        p[i], p[j], metric, names=(names[i], names[j])), dtype=dtype))
        costs = {kind: np.stack(c) for kind, c in each.items()}

    def solve_all(i, j, sym):
        u, v, cost = points[i], points[j], costs[i, j]
        wa = np.stack([p[i + 2] for p in pairs]).astype(np.float64)
        wb = np.stack([p[j + 2] for p in pairs]).astype(np.float64)
        res = run_batch(wa, wb, cost, dtype, reg, name, settings, self_transport=False,
                        symmetric=sym)
        results = [make_result(fun=float(res.fun[k]), cost=float(res.cost[k]),
                               plan=res.plan[k], f=res.f[k], g=res.g[k], nit=int(res.nit[k]),
                               err=float(res.err[k]), success=bool(res.success[k]),
                               status=int(res.status[k]), message=res.messages[k],
                               method=name, reg=reg) for k in range(B)]
        if not (need[0] or need[1]):
            return results, None
        # the cost's gradients of every pair (the kernel of ottools._costs.cost_vjp)
        u64, v64 = u.astype(np.float64), v.astype(np.float64)
        gu, gv = np.empty_like(u64), np.empty_like(v64)
        lazy("_sqeuclidean").sqeuclidean_vjp_batch(
            res.plan, u64, np.ascontiguousarray(v64.transpose(0, 2, 1)), v64, gu, gv)
        return results, (gu.astype(dtype, copy=False), gv.astype(dtype, copy=False))

    xy, dxy = solve_all(0, 1, False)
    if debias:
        xx, dxx = solve_all(0, 0, True)
        yy, dyy = solve_all(1, 1, True)
    need_x, need_y = need[0], need[1]
    values, results, grads = [], [], []
    for k in range(B):
        xk, yk, ak, bk, swap = pairs[k]
        # the cost's gradients in the solved orientation: (d/d first, d/d second) points
        if dxy is not None:
            gxy = (dxy[0][k], dxy[1][k])
        if debias:
            pxy, pxx, pyy = xy[k], xx[k], yy[k]
            if dxy is not None:
                gxx, gyy = (dxx[0][k], dxx[1][k]), (dyy[0][k], dyy[1][k])
            if xk.shape == yk.shape and np.array_equal(xk, yk) and np.array_equal(ak, bk):
                pxy = pxx  # the same problem: S(x, x) = 0 exactly
                gxy = gxx if dxy is not None else None
            if swap:  # back to the caller's orientation
                pxy, pxx, pyy = _transposed(pxy), pyy, pxx
                xk, yk, ak, bk = yk, xk, bk, ak
                if dxy is not None:
                    gxy, gxx, gyy = gxy[::-1], gyy, gxx
                    if min(pxy.plan.shape) == 1:
                        # a one-row plan's transpose is contiguous: cost_vjp then sums
                        # in the caller's orientation (other sums): as the pair alone
                        gxy = cost_vjp(pxy.plan, xk, yk, metric)
            value = float(pxy.fun - 0.5 * (pxx.fun + pyy.fun))
            parts = (pxy, pxx, pyy)
        else:
            value, parts = float(xy[k].fun), (xy[k],)
        values.append(value)
        results.extend(parts)
        _, _, ga, gb = _grads(parts, xk, yk, ak, bk, metric, debias,
                              (False, False) + tuple(need[2:]), dtype)
        gx = gy = None
        if need_x:
            gx = gxy[0] - 0.5 * (gxx[0] + gxx[1]) if debias else gxy[0]
        if need_y:
            gy = gxy[1] - 0.5 * (gyy[0] + gyy[1]) if debias else gxy[1]
        cast = (lambda g: None if g is None else np.asarray(g, dtype=dtype))
        grads.append((cast(gx), cast(gy), ga, gb))
    stacked = tuple(None if grads[0][i] is None else np.stack([g[i] for g in grads])
                    for i in range(4))
    return np.array(values), results, stacked


def _pair_costs(u, v, dtype):
    """The squared Euclidean costs (B, n, m) of the pairs ``u`` (B, n, d), ``v`` (B, m, d)
    by one kernel call, each that of ``cost_matrix(u[k], v[k])``; None when a pair's
    points would be rescaled or its costs are not surely finite (see
    ``ottools._costs.checked_cost_matrix``)."""
    from ._costs import EXTREME, surely_finite

    u64 = u.astype(np.float64, copy=False)
    v64 = v.astype(np.float64, copy=False)
    top = np.maximum(np.abs(u64).max(axis=(1, 2)), np.abs(v64).max(axis=(1, 2)))
    if np.any((top > EXTREME) | ((top > 0) & (top < 1 / EXTREME))) or not all(
            surely_finite("sqeuclidean", t, 0, u.shape[2], dtype) for t in top):
        return None
    out = np.empty((u.shape[0], u.shape[1], v.shape[1]), dtype=dtype)
    lazy("_sqeuclidean").sqeuclidean_cost_batch(
        np.ascontiguousarray(u64), np.ascontiguousarray(v64.transpose(0, 2, 1)), out)
    return out


def sinkhorn_value_and_grad(a, b, cost, reg, **kwargs):
    """``(res, (d fun / d a, d fun / d b, d fun / d cost))`` of ``ottools.sinkhorn``: the
    potentials (:func:`weight_grads`; ``None`` weights are uniform) and the plan."""
    res = sinkhorn(a, b, cost, reg, **kwargs)
    n, m = res.plan.shape
    a = np.full(n, 1.0 / n) if a is None else a
    b = np.full(m, 1.0 / m) if b is None else b
    return res, weight_grads(res, a, b) + (res.plan,)


@adapts_threads
def _value_and_grad(x, y, a=None, b=None, *, reg, reg_m=None, metric="sqeuclidean",
                    p=None, debias=True, need=(True,) * 4, method="auto", tol=None,
                    maxiter=10_000, options=None, online=None):
    """The differentiable layer's entry point (NumPy in and out): the entropic cost
    ``W(a, b)`` (``debias=False``) or the divergence ``S`` and their gradients with respect
    to ``x``, ``y``, ``a``, ``b`` (those flagged in ``need``; None elsewhere), by the
    envelope theorem from the plans and potentials of the solved problems: ``dW/dx`` is
    ``sum_j P_ij grad_x c(x_i, y_j)`` (:func:`ottools._costs.cost_vjp`, closed form for the
    squared Euclidean cost), ``dW/da`` from the potential (:func:`weight_grads`). Returns
    ``(value, results, grads)`` with ``results`` the solved :class:`OTResult` objects (to
    check ``success``). Named metrics only (callables: differentiate the cost itself);
    ``p`` the exponent of ``"minkowski"`` and ``"minkowski_p"``, in the costs and their
    gradients."""
    p = metric_p(metric, p)
    if not debias:
        xx = yy = None
        x, y, a, b, dtype = _check_samples(x, y, a, b)
        reg = _check_positive(reg, "reg")
        rho = _check_reg_m(reg_m)
        name, opts = method_options(method, options)
        a = _check_weights(a, x.shape[0], "a", dtype)
        b = _check_weights(b, y.shape[0], "b", dtype)
        if rho is not None and all(np.isinf(rho)):
            rho = None
        if rho is None:
            b = _check_balanced(a, b, hint=", or relax the marginals with `reg_m`")
        settings = Settings.from_args(tol, maxiter, None, dtype, opts)
        if online is not None:
            online = _check_bool(online, "online")
        cost = (point_cloud(x, y, metric, p=p)
                if use_online(x.shape[0], y.shape[0], dtype, metric, online)
                else np.ascontiguousarray(cost_matrix(x, y, metric, p=p), dtype=dtype))
        xy = solve(LinearProblem(a, b, cost, dtype), reg, settings, name, rho=rho)
        value = float(xy.fun)
        results = (xy,)
    else:
        xy, xx, yy, dtype = divergence_parts(x, y, a, b, reg=reg, reg_m=reg_m, metric=metric,
                                             p=p, method=method, tol=tol, maxiter=maxiter,
                                             options=options, online=online)
        x, y, a, b, _ = _check_samples(x, y, a, b)
        a = _check_weights(a, x.shape[0], "a", dtype)
        b = _check_weights(b, y.shape[0], "b", dtype)
        if getattr(xy, "reg_m", None) is None:  # the weights solved: b on a's mass
            b = _check_balanced(a, b)
        value = float(xy.fun - 0.5 * (xx.fun + yy.fun)) + _mass_term(xy, xx, yy)
        results = (xy, xx, yy)
    return value, results, _grads(results, x, y, a, b, metric, debias, need, dtype, p)


def _grads(results, x, y, a, b, metric, debias, need, dtype, p=None):
    """The gradients of :func:`_value_and_grad` (those flagged in ``need``, None
    elsewhere) from the solved problems ``results``: ``(xy,)`` or ``(xy, xx, yy)``."""
    xy = results[0]
    xx, yy = (results[1], results[2]) if debias else (None, None)
    need_x, need_y, need_a, need_b = need
    gx = gy = ga = gb = None
    if need_x or need_y:
        gx, gy = cost_vjp(xy.plan, x, y, metric, p, need_y=need_y)
        if debias:
            if need_x:
                u, v = cost_vjp(xx.plan, x, x, metric, p)
                gx = gx - 0.5 * (u + v)
            if need_y:
                u, v = cost_vjp(yy.plan, y, y, metric, p)
                gy = gy - 0.5 * (u + v)
    if need_a or need_b:
        ga, gb = weight_grads(xy, a, b)
    if need_a:
        if debias:
            ga = ga - 0.5 * sum(weight_grads(xx, a, a))
            if getattr(xy, "reg_m", None) is not None:
                ga = ga + xy.reg * (xx.masses[0] - yy.masses[0])
    if need_b:
        if debias:
            gb = gb - 0.5 * sum(weight_grads(yy, b, b))
            if getattr(xy, "reg_m", None) is not None:
                gb = gb - xy.reg * (xx.masses[0] - yy.masses[0])
    ga, gb = (ga if need_a else None), (gb if need_b else None)
    cast = (lambda g: None if g is None else np.asarray(g, dtype=dtype))
    return cast(gx), cast(gy), cast(ga), cast(gb)


def cost_vjp(P, x, y, metric, p=None, need_y=True):
    """:func:`ottools._costs.cost_vjp`, also for a plan given as an operator (point-cloud
    problems; squared Euclidean cost: ``2 (diag(P 1) x - P y)`` by matrix products)."""
    from ._costs import cost_vjp as dense_vjp

    if isinstance(P, np.ndarray) or hasattr(P, "tocsr"):
        return dense_vjp(P, x, y, metric, p, need_y=need_y)
    if not (isinstance(metric, str) and metric.lower() == "sqeuclidean"):
        raise NotImplementedError("gradients of point-cloud (online) problems are available "
                                  "for metric='sqeuclidean'; use online=False.")
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    rows = P @ np.ones(y.shape[0])
    cols = P.T @ np.ones(x.shape[0])
    return (2.0 * (rows[:, None] * x64 - P @ y64), 2.0 * (cols[:, None] * y64 - P.T @ x64))


def weight_grads(res, a, b):
    """``(d fun / d a, d fun / d b)`` of a solved entropic problem (weights ``a``, ``b``):
    the derivatives of the dual objective at its optimum, ``f - reg (P1 / a - sum(b))``
    for a hard marginal (``P1 = a`` there), ``-rho (exp(-f / rho) - 1) - reg (P1 / a -
    sum(b))`` for a relaxed one; likewise for ``b``.

    Balanced, the potentials are defined up to ``(f + c, g - c)``, and so is the
    gradient: only directions that keep the masses equal (``sum(da) = sum(db)``) exist.
    Of the representatives, the one with ``sum(d/da) = sum(d/db)`` (orthogonal to the
    gauge direction): exact along every such direction (scaling both weights, a = s p,
    b = s q, included: the potentials centred each on its own missed it, dW/ds -0.03
    against 0.74), and a gradient step keeps the masses equal."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ma, mb = float(a.sum()), float(b.sum())
    rho = getattr(res, "reg_m", None)
    if rho is None:
        ga = np.asarray(res.f, dtype=np.float64) - res.reg * (1.0 - mb)
        gb = np.asarray(res.g, dtype=np.float64) - res.reg * (1.0 - ma)
        c = (gb.sum() - ga.sum()) / (ga.size + gb.size)
        return ga + c, gb - c
    return tuple(_relaxed_grad(res, w, other, side, rho[side])
                 for side, (w, other) in enumerate(((a, mb), (b, ma))))


def _relaxed_grad(res, w, other, side, r):
    """The weight gradient of one side of an unbalanced problem (:func:`weight_grads`)."""
    pot = np.asarray(res.f if side == 0 else res.g, dtype=np.float64)
    marg = res.marginals[side]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(w > 0, marg / w, np.exp(-pot / r) if np.isfinite(r) else 1.0)
    relax = pot if np.isinf(r) else -r * np.expm1(-pot / r)
    return relax - res.reg * (ratio - other)
