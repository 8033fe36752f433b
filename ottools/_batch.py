"""Batches of entropic problems: ``sinkhorn`` with a cost of shape (B, n, m).

Every problem runs the log-stable sweeps inside one Numba kernel, problems in parallel
(``ottools._kernels._batch``), without the Python driver's overhead per problem. With
``method="log"`` they are plain Sinkhorn: the iterates, iteration counts and statuses of
one ``method="log"`` call per problem. With ``method="auto"`` (the default) the kernel
takes the decisions of one problem's driver (over-relaxation; the switch to Newton steps)
and hands back the problems that driver would solve otherwise than by over-relaxed
sweeps (epsilon-scaling at small ``reg``, the Newton stage, self-transport problems):
those are solved one by one by that driver (:func:`_solve_handed`). Either way each
problem's result is that of one ``sinkhorn`` call with the same arguments, to the bit
(plan, potentials, value, error, iteration count, status, message): the sums that decide
them (masses, marginal errors, the gauge) are taken as that call takes them. Problems
of at least 2**18 entries, which one call would run in parallel row blocks (other
sums) when Numba has several threads, are all handed back.
The kernel runs on groups of problems (:func:`batch_group`, then groups sized to about
0.2 s at the pace of the first), so that Ctrl-C gets through between groups; a forked
child runs the serial twin; a problem whose costs round away at ``reg``
(``max |C| * eps / reg > 1``) gets status 2, as with one problem.
Internal API: :func:`solve_batch`, called by :func:`ottools.sinkhorn`.
"""

import time
from collections.abc import Sequence

import numpy as np

from ._kernels import KernelStatus, lazy
from ._pool import pool_map
from ._problem import LinearProblem, Settings, allocate
from ._result import (CONVERGED, MAXITER, NONFINITE, STALLED, _define_result_class,
                      make_result, status_message)
from ._sinkhorn import (NEWTON_MIN_SWEEPS, METHODS, check_reg_normal, entropy_needed,
                        entropy_terms, floor_message, is_self_transport, method_options,
                        overflow_message, solve)
from ._sweeps import ABSORB_BOUND, LOW_MIN_ENTRIES
from ._validation import (_as_float_array, _check_balanced, _check_method,
                          _check_positive, _check_reg_m, _check_weights, _result_dtype)

__all__ = []

_kb = lazy("_batch")


def _check_batch(a, b, cost, reg_m, method, init, callback):
    """Validated ``(a, b, cost, dtype)`` of a batch: ``cost`` (B, n, m); ``a`` (B, n) or
    (n,) or None; ``b`` likewise; equal masses per problem (errors name the batch
    index). The costs' finiteness is checked by the kernel, problem by problem, as it
    reads them (:func:`solve_batch`)."""
    rho = _check_reg_m(reg_m)
    if rho is not None and all(np.isinf(rho)):
        reg_m = None  # the balanced problem, as for one call
    if reg_m is not None or init is not None or callback is not None:
        bad = [k for k, v in (("reg_m", reg_m), ("init", init), ("callback", callback))
               if v is not None]
        raise TypeError(f"{', '.join(f'`{k}`' for k in bad)} not supported for a batch of "
                        f"problems (cost of shape (B, n, m)); solve them one by one.")
    if method not in ("auto", "log"):
        raise ValueError(f"method={method!r} is not available for a batch of problems; "
                         f"batches run the log-stable sweeps ('auto' or 'log').")
    cost = _as_float_array(cost, "cost", ndim=3)
    B, n, m = cost.shape
    if cost.size == 0:
        raise ValueError(f"`cost` must not be empty; got shape {cost.shape}.")
    weights = []
    for w, name, size in ((a, "a", n), (b, "b", m)):
        arr = None if w is None else _as_float_array(w, name)
        if arr is not None and arr.ndim not in (1, 2):
            raise ValueError(f"`{name}` must be (B, {size}) or ({size},) for a batch; got "
                             f"shape {arr.shape}.")
        if arr is not None and arr.ndim == 2 and arr.shape[0] != B:
            raise ValueError(f"`{name}` holds {arr.shape[0]} problems but `cost` holds {B}.")
        weights.append(arr)
    dtype = _result_dtype(cost, *weights)
    against = f"`cost` has shape {cost.shape}"
    out = []
    for arr, name, size in zip(weights, ("a", "b"), (n, m)):
        if arr is None or arr.ndim == 1:  # one vector for every problem: checked once
            try:
                w = _check_weights(arr, size, name, dtype, against=against)
            except ValueError as exc:
                raise ValueError(f"problem 0 of the batch: {exc}") from None
            out.append(np.repeat(w[None], B, axis=0))
            continue
        if not (arr.shape[1] == size and size > 0 and np.all(np.isfinite(arr))
                and not np.any(arr < 0) and np.all(arr.sum(axis=1) > 0)):
            for k in range(B):  # the first bad problem, with the one-problem message
                try:
                    _check_weights(arr[k], size, name, dtype, against=against)
                except ValueError as exc:
                    raise ValueError(f"problem {k} of the batch: {exc}") from None
        out.append(np.ascontiguousarray(arr, dtype=dtype))
    aw, bw = out
    bw = _balanced_rows(aw, bw)
    # float64 copies of the dtype-rounded weights: what one problem's solver uses.
    return (aw.astype(np.float64), bw.astype(np.float64),
            np.ascontiguousarray(cost, dtype=dtype), np.dtype(dtype))


def _balanced_rows(aw, bw, rtol=1e-6):
    """:func:`ottools._validation._check_balanced` for every problem (rows of ``aw``,
    ``bw``) at once; the rows to rescale, and the first that fails, go through it one
    by one (the same rescaled weights and message); errors name the problem."""
    sa, sb = aw.sum(axis=1, dtype=np.float64), bw.sum(axis=1, dtype=np.float64)
    big = np.maximum(sa, sb)
    gap = np.abs(sa - sb)
    bad = np.flatnonzero(gap > rtol * big)
    if bad.size:
        k = int(bad[0])
        try:
            _check_balanced(aw[k], bw[k])
        except ValueError as exc:
            raise ValueError(f"problem {k} of the batch: {exc}") from None
    fix = np.flatnonzero(gap > 64 * np.finfo(np.float64).eps * big)
    if fix.size:
        bw = bw.copy()
        for k in fix:
            bw[k] = _check_balanced(aw[k], bw[k])
    return bw


def solve_batch(a, b, cost, reg, *, reg_m, method, tol, maxiter, init, callback, options):
    """``sinkhorn`` on a batch (B, n, m): every problem by the log-stable sweeps, in
    parallel over problems (``ottools._kernels._batch``); one result of arrays."""
    name = _check_method(method, METHODS)
    a64, b64, cost, dtype = _check_batch(a, b, cost, reg_m, name, init, callback)
    reg = _check_positive(reg, "reg")
    check_reg_normal(reg)
    # every option of one call (log's over-relaxation runs in the kernel; epsilon-scaling
    # hands every problem back to the one-problem driver, as auto's does)
    _, opts = method_options(name, options)
    settings = Settings.from_args(tol, maxiter, None, dtype, opts)
    return run_batch(a64, b64, cost, dtype, reg, name, settings)


def run_batch(a64, b64, cost, dtype, reg, name, settings, *, self_transport=True,
              symmetric=False):
    """The batch of validated problems (float64 weights ``a64`` (B, n), ``b64`` (B, m),
    balanced; ``cost`` (B, n, m) in ``dtype``) by ``name`` ("auto" or "log") with
    ``settings`` (its options checked): each problem's result that of the one-problem
    driver's ``solve``. ``self_transport``: problems with ``a == b`` and a symmetric cost
    get the symmetric iterations (as in :func:`ottools.sinkhorn`; False: as in any other
    problem, as a divergence's cross problem). ``symmetric``: every problem is ``W(a, a)``
    with a symmetric cost (a divergence's ``xx`` and ``yy``)."""
    opts = settings.options
    _define_result_class()
    B, n, m = cost.shape
    rules = _rules(name, opts, dtype, n, m)
    rules[_kb.SELF_TRANSPORT] = float(self_transport and name == "auto")
    rules[_kb.SYMMETRIC] = float(symmetric and name == "auto")
    la, lb, wmass = _driver_terms(a64, b64, dtype)
    f, g = np.empty((B, n)), np.empty((B, m))
    P = allocate((B, n, m), dtype, "The plans of the batch")
    R, Cm = np.zeros((B, n)), np.zeros((B, m))
    counts, stats = np.zeros((B, 2), dtype=np.int64), np.zeros((B, 3))
    # Groups of problems per kernel call, so that Ctrl-C gets through between calls; in a
    # process forked after a parallel kernel ran, the serial twin (OpenMP is not
    # fork-safe). A problem's result never depends on its group.
    kernel = (_kb.sinkhorn_batch if lazy("_jit").parallel_ok()
              else _kb.sinkhorn_batch_serial)
    step = batch_group(B, n, m, settings.maxiter)
    k0 = 0
    while k0 < B:
        k1 = min(B, k0 + step)
        t0 = time.perf_counter()
        kernel(a64[k0:k1], b64[k0:k1], la[k0:k1], lb[k0:k1], wmass[k0:k1], cost[k0:k1], reg,
               settings.tol, settings.maxiter, ABSORB_BOUND[dtype], rules, f[k0:k1],
               g[k0:k1], P[k0:k1], R[k0:k1], Cm[k0:k1], counts[k0:k1], stats[k0:k1])
        elapsed = time.perf_counter() - t0
        # the kernel skipped the problems whose costs hold NaN or inf: the first is named
        bad = np.flatnonzero(~np.isfinite(stats[k0:k1, 2]))
        if bad.size:
            k = k0 + int(bad[0])
            raise ValueError(f"`cost` must be finite; problem {k} of the batch holds NaN or "
                             f"inf.")
        # the next groups: as many problems as this group's pace runs in _GROUP_SECONDS
        if elapsed > 0:
            step = max(step, int(_GROUP_SECONDS * (k1 - k0) / elapsed))
        k0 = k1
    nit, code = counts[:, 0].copy(), counts[:, 1]
    lin, plogr, cmax = stats[:, 0].copy(), stats[:, 1], stats[:, 2]
    err, pmass = _marginal_terms(R, Cm, a64, b64, wmass)
    # Handed back: the problems the kernel left to the driver, and those it ended with
    # non-finite values (rare, degenerate: one call then restarts from its own starting
    # point or keeps other potentials than the kernel's last iterate).
    late = (code == KernelStatus.NONFINITE) | ~(np.isfinite(err) & np.isfinite(lin))
    handed = np.flatnonzero((code == KernelStatus.HANDOVER) | late)
    code = np.where(late, KernelStatus.HANDOVER, code)
    ones = _solve_handed(handed, a64, b64, cost, reg, dtype, name, settings,
                         self_transport, symmetric)
    for arr in (f, g, err, lin):  # placeholders, replaced below
        arr[handed] = 0.0
    status = np.where(code == KernelStatus.DONE, CONVERGED,
                      np.where(code == KernelStatus.NONFINITE, NONFINITE, MAXITER))
    status = np.where((status == MAXITER) & (err <= settings.tol), CONVERGED, status)
    status = np.where((status == CONVERGED) & (err > settings.tol), STALLED, status)
    status = np.where(~(np.isfinite(err) & np.isfinite(lin)), NONFINITE, status)
    own = _own_messages(status, code, err, lin, a64, b64, cost, reg, dtype, settings.tol)
    ma, mb = a64.sum(1), b64.sum(1)
    fun = lin + reg * (plogr - pmass + ma * mb)
    # reg large against the costs: the terms entry by entry, as one call (not for the
    # problems handed back: their one-call results replace these). (cmax is over every
    # entry, one call's max|C| over the positive weights': the rule could differ only for
    # costs larger on zero-weight rows, within a factor of the threshold.)
    for k in np.flatnonzero(entropy_needed(reg, cmax) & np.isfinite(lin)):
        if k not in handed and np.isfinite(f[k][a64[k] > 0]).all() and \
                np.isfinite(g[k][b64[k] > 0]).all():
            fun[k] = lin[k] + reg * entropy_terms(a64[k], b64[k], cost[k], reg, f[k], g[k])[0]
    # The gauge <f, a> = <g, b>, as one problem's driver sets it (ottools._problem's
    # gauge_shift: dot products, here one stacked matmul, the same sums); zero-weight
    # entries first get their c-transform (LinearProblem.expand, which also sets it).
    shift = ((np.matmul(g[:, None, :], b64[:, :, None]) -
              np.matmul(f[:, None, :], a64[:, :, None]))[:, 0, 0] / (2 * ma))
    fz, gz = ~np.isfinite(f), ~np.isfinite(g)
    expanded = np.flatnonzero(fz.any(1) | gz.any(1))
    for k in expanded:
        prob = LinearProblem(a64[k].astype(dtype), b64[k].astype(dtype), cost[k], dtype)
        f[k], g[k] = prob.expand(f[k][a64[k] > 0], g[k][b64[k] > 0], reg)
        shift[k] = 0.0
    f += shift[:, None]
    g -= shift[:, None]
    # The handed-back problems: the results of their one-problem calls.
    for k, one in zip(handed, ones):
        f[k], g[k], P[k] = one.f, one.g, one.plan
        fun[k], lin[k], nit[k], err[k] = one.fun, one.cost, one.nit, one.err
        status[k] = one.status
    # exp((f + g - C) / reg) without a correct digit (as in ottools.sinkhorn): status 2,
    # reported in the batch's message.
    with np.errstate(over="ignore"):
        floor = np.finfo(dtype).eps * cmax / reg
    hopeless = (floor > 1.0) & (status == NONFINITE)
    tally = np.bincount(status, minlength=6)
    summary = ", ".join(f"{c} {label}" for c, label in zip(
        tally, ("converged", "at maxiter", "non-finite", "stopped", "stalled",
                 "certified")) if c)
    message = (f"Batch of {B} problems: {summary}. See `status` per problem (table of "
               f"ottools.sinkhorn).")
    if hopeless.any():
        k = int(np.flatnonzero(hopeless)[0])
        message += (f" Non-finite values: in {int(hopeless.sum())} problem(s) (first: "
                    f"{k}), reg={reg:.3g} is below the rounding of the costs (max |C| * "
                    f"eps / reg = {floor[k]:.3g}): exp((f + g - C) / reg) under/overflows "
                    f"without a correct digit. Rescale the costs or increase reg.")
    # one message per problem: the handed-back problems' own, else that of the status
    own.update({int(k): one.message for k, one in zip(handed, ones)})
    messages = _Messages(status, err, nit, settings.tol, own)
    return make_result(
        fun=fun, cost=lin.copy(), plan=P, f=f.astype(dtype), g=g.astype(dtype), nit=nit,
        err=err, success=status == CONVERGED, status=status.astype(np.int64),
        message=message, messages=messages, method=name, reg=reg)


def _own_messages(status, code, err, lin, a64, b64, cost, reg, dtype, tol):
    """The messages one call builds from its problem rather than its status (see
    ``ottools._sinkhorn._finish``): a plan that under/overflowed, and a plan whose err
    missed the tol that the iteration reached, for the problems the kernel solved."""
    own = {}
    hard = (status == STALLED) | ~(np.isfinite(err) & np.isfinite(lin))
    for k in np.flatnonzero(hard & (code != KernelStatus.HANDOVER)):
        rows, cols = a64[k] > 0, b64[k] > 0
        costc = cost[k][np.ix_(rows, cols)]
        scale = max(abs(float(costc.min())), abs(float(costc.max())))
        if not (np.isfinite(err[k]) and np.isfinite(lin[k])):
            own[int(k)] = overflow_message(scale, reg)
        else:
            with np.errstate(over="ignore"):
                floor = float(np.finfo(dtype).eps * scale / reg)
            own[int(k)] = floor_message(float(err[k]), tol, dtype, floor)
    return own


class _Messages(Sequence):
    """The batch's ``messages``: problem ``k``'s message, built when read (formatting a
    thousand of them took 2.7 ms, a tenth of a batch of 1000 problems of 64 x 64)."""

    def __init__(self, status, err, nit, tol, own):
        self._status, self._err, self._nit, self._tol, self._own = status, err, nit, tol, own

    def __len__(self):
        return len(self._status)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = range(len(self))[k]  # negative indices, IndexError
        if k in self._own:
            return self._own[k]
        return status_message(int(self._status[k]), err=float(self._err[k]),
                              tol=float(self._tol), nit=int(self._nit[k]))

    def __repr__(self):
        return f"<{len(self)} messages, one per problem>"


def _marginal_terms(R, Cm, a64, b64, wmass):
    """``(err, plan mass)`` of every problem from its plan's marginals ``R``, ``Cm``
    (zero at zero weights), summed as one problem's driver sums them
    (``LinearProblem.marginal_error`` and ``rows.sum()`` over the compressed problem,
    NumPy's pairwise sums; a row of a 2-D array is summed as the 1-D array)."""
    err = (np.abs(R - a64).sum(axis=1) + np.abs(Cm - b64).sum(axis=1)) / wmass
    pmass = R.sum(axis=1)
    for k in np.flatnonzero((a64 <= 0).any(axis=1) | (b64 <= 0).any(axis=1)):
        ri, ci = a64[k] > 0, b64[k] > 0
        err[k] = (float(np.abs(R[k][ri] - a64[k][ri]).sum()
                        + np.abs(Cm[k][ci] - b64[k][ci]).sum()) / wmass[k])
        pmass[k] = R[k][ri].sum()
    return err, pmass


def _driver_terms(a64, b64, dtype):
    """The logs of the weights (float64 casts of the logs in ``dtype``, -inf at zero
    weights) and the masses ``sum(a)`` (float64 sums of the positive weights), computed
    as one problem's driver computes them (``ottools._problem.LinearProblem``): the
    batch's iterates and stopping tests are then those of one call to the bit."""
    with np.errstate(divide="ignore"):
        la = np.log(a64.astype(dtype)).astype(np.float64)
        lb = np.log(b64.astype(dtype)).astype(np.float64)
    wmass = a64.sum(axis=1)
    for k in np.flatnonzero((a64 <= 0).any(axis=1)):  # the sum over a compressed copy
        wmass[k] = a64[k][a64[k] > 0].sum()
    return la, lb, wmass


def _rules(name, opts, dtype, n, m):
    """The ``rules`` array of the batch kernel (``ottools._kernels._batch``): the
    decisions of one ``method`` call with options ``opts``, for problems of ``n x m``
    costs in ``dtype``. ``HAND_ALL`` where one call would take another path for every
    problem: forced epsilon-scaling, float32 sweeps, or parallel row blocks (problems of
    at least 2**18 entries when Numba runs several threads)."""
    kb = _kb
    rules = np.zeros(kb.N_RULES)
    rules[kb.ROUNDING_EPS] = np.finfo(dtype).eps
    rules[kb.NEWTON_AFTER] = np.inf
    if lazy("_jit").row_chunks(n, m) > 1:
        # one call would run parallel row blocks (other sums): every problem goes to it
        rules[kb.HAND_ALL] = 1.0
    rules[kb.RELAX] = float(opts["overrelaxation"])
    if name != "auto":
        if opts["epsilon_scaling"]:
            rules[kb.HAND_ALL] = 1.0
        return rules
    rules[kb.AUTO] = 1.0
    if opts["newton"]:
        rules[kb.NEWTON_AFTER] = opts["newton_after"]
    rules[kb.NEWTON_LEAST] = NEWTON_MIN_SWEEPS
    low = opts["float32_sweeps"]
    if low is None:  # as ottools._sinkhorn._float32_sweeps decides for a dense cost
        low = n * m >= LOW_MIN_ENTRIES
    anneal = opts["epsilon_scaling"]
    if anneal or (low and np.dtype(dtype) == np.float64):
        rules[kb.HAND_ALL] = 1.0  # every problem: the driver's own path
    elif anneal is None:
        rules[kb.ANNEAL_BELOW] = opts["anneal_below"]
    return rules


# Handed-back problems whose cost has fewer entries run one after the other in the
# calling thread (their solves are mostly Python: two threads only take turns on the
# GIL); larger ones on a pool of threads (the kernels release the GIL).
_POOL_MIN_ENTRIES = 20_000


def _solve_handed(ks, a64, b64, cost, reg, dtype, name, settings, self_transport,
                  symmetric):
    """The one-problem driver on each problem ``ks`` of the batch (their weights as the
    batch validated them), as :func:`ottools.sinkhorn` runs it: the results of the
    problems the kernel handed back. ``self_transport``, ``symmetric``: see
    :func:`run_batch`."""
    if not len(ks):
        return []
    jit = lazy("_jit")
    B, n, m = cost.shape
    workers = min(len(ks), jit.user_threads())
    if n * m < _POOL_MIN_ENTRIES:
        workers = 1
    user = jit.user_threads()
    share = jit.pool_share(workers)
    auto = name == "auto"

    def one(k):
        with jit.pool_worker(share, user):
            # the weights as the batch balanced them (from_args would rescale b again)
            prob = LinearProblem(a64[k].astype(dtype), b64[k].astype(dtype), cost[k], dtype)
            sym = auto and (symmetric or (self_transport and is_self_transport(prob)))
            return solve(prob, reg, settings, name, symmetric=sym)

    if workers == 1:
        return [one(k) for k in ks]
    return pool_map(one, ks, workers, "ottools-batch")


# Entries times iterations the first kernel call may visit at most (a few tenths of a
# second), and the fewest problems per call per thread (keeps the threads' loads
# balanced). Later calls take as many problems as the first ran in _GROUP_SECONDS: a
# kernel launch and its Python call cost tens of microseconds, as much as a small problem.
_GROUP_WORK = 1 << 27
_GROUP_PER_THREAD = 8
_GROUP_SECONDS = 0.2


def batch_group(B, n, m, maxiter):
    """Problems per kernel call: the worst case (every problem at ``maxiter``) bounded by
    ``_GROUP_WORK`` entry-iterations, but at least ``_GROUP_PER_THREAD`` problems per
    thread (a single problem runs to its end inside one call)."""
    import numba

    least = _GROUP_PER_THREAD * numba.get_num_threads()
    return int(min(B, max(least, _GROUP_WORK // max(1, n * m * max(1, maxiter)))))


