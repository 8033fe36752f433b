"""Batches of entropic problems: ``sinkhorn`` with a cost of shape (B, n, m).

Every problem runs the log-stable sweeps inside one Numba kernel, problems in parallel
(``ottools._kernels._batch``), without the Python driver's overhead per problem. With
``method="log"`` they are plain Sinkhorn: the iterates, iteration counts and statuses of
one ``method="log"`` call per problem. With ``method="auto"`` (the default) they are
over-relaxed by the rule of one problem's driver (the rate of the first 20 sweeps, then
a decision every 10; ``options={"overrelaxation": False}`` turns it off); the batch
does not anneal or take Newton steps, so a problem's iterates are not those of one
``auto`` call, but its result meets the same ``tol``.
The kernel runs on groups of problems (:func:`batch_group`, then groups sized to about
0.2 s at the pace of the first), so that Ctrl-C gets through between groups; a forked
child runs the serial twin; a problem whose costs round away at ``reg``
(``max |C| * eps / reg > 1``) gets status 2, as with one problem.
Internal API: :func:`solve_batch`, called by :func:`ottools.sinkhorn`.
"""

import time

import numpy as np

from ._kernels import KernelStatus, lazy
from ._problem import LinearProblem, Settings, allocate
from ._result import (CONVERGED, MAXITER, NONFINITE, STALLED, _define_result_class,
                      make_result)
from ._sinkhorn import METHODS
from ._sweeps import ABSORB_BOUND
from ._validation import (_as_float_array, _check_balanced, _check_method,
                          _check_option_table, _check_positive, _check_weights, _Option,
                          _result_dtype)

__all__ = []

_kb = lazy("_batch")


def _check_batch(a, b, cost, reg_m, method, init, callback):
    """Validated ``(a, b, cost, dtype)`` of a batch: ``cost`` (B, n, m); ``a`` (B, n) or
    (n,) or None; ``b`` likewise; equal masses per problem (errors name the batch
    index). The costs' finiteness is checked by the kernel, problem by problem, as it
    reads them (:func:`solve_batch`)."""
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
    table = {"check_every": _Option("int", 10, lo=1)}
    if name == "auto":
        table["overrelaxation"] = _Option("bool", True)
    opts = _check_option_table(options, table, f"a batch (method={name!r})")
    relax = bool(opts.get("overrelaxation", False))
    settings = Settings.from_args(tol, maxiter, None, dtype)
    _define_result_class()
    B, n, m = cost.shape
    f, g = np.empty((B, n)), np.empty((B, m))
    P = allocate((B, n, m), dtype, "The plans of the batch")
    nit, code = np.zeros(B, dtype=np.int64), np.zeros(B, dtype=np.int64)
    err, lin, plogr, pmass, cmax = (np.zeros(B) for _ in range(5))
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
        kernel(a64[k0:k1], b64[k0:k1], cost[k0:k1], reg, settings.tol, settings.maxiter,
               ABSORB_BOUND[dtype], relax, f[k0:k1], g[k0:k1], P[k0:k1], nit[k0:k1], code[k0:k1],
               err[k0:k1], lin[k0:k1], plogr[k0:k1], pmass[k0:k1], cmax[k0:k1])
        elapsed = time.perf_counter() - t0
        # the kernel skipped the problems whose costs hold NaN or inf: the first is named
        bad = np.flatnonzero(~np.isfinite(cmax[k0:k1]))
        if bad.size:
            k = k0 + int(bad[0])
            raise ValueError(f"`cost` must be finite; problem {k} of the batch holds NaN or "
                             f"inf.")
        # the next groups: as many problems as this group's pace runs in _GROUP_SECONDS
        if elapsed > 0:
            step = max(step, int(_GROUP_SECONDS * (k1 - k0) / elapsed))
        k0 = k1
    # exp((f + g - C) / reg) without a correct digit (as in ottools.sinkhorn): status 2.
    with np.errstate(over="ignore"):
        floor = np.finfo(dtype).eps * cmax / reg
    hopeless = floor > 1.0
    status = np.where(code == KernelStatus.DONE, CONVERGED,
                      np.where(code == KernelStatus.NONFINITE, NONFINITE, MAXITER))
    status = np.where((status == MAXITER) & (err <= settings.tol), CONVERGED, status)
    status = np.where((status == CONVERGED) & (err > settings.tol), STALLED, status)
    status = np.where(~(np.isfinite(err) & np.isfinite(lin)) | hopeless, NONFINITE, status)
    ma, mb = a64.sum(1), b64.sum(1)
    fun = lin + reg * (plogr - pmass + ma * mb)
    # Zero-weight entries: their c-transform, then the gauge, as for one problem.
    fz, gz = ~np.isfinite(f), ~np.isfinite(g)
    for k in np.flatnonzero(fz.any(1) | gz.any(1)):
        prob = LinearProblem(a64[k].astype(dtype), b64[k].astype(dtype), cost[k], dtype)
        f[k], g[k] = prob.expand(f[k][a64[k] > 0], g[k][b64[k] > 0], reg)
    shift = (np.einsum("km,km->k", g, b64) - np.einsum("kn,kn->k", f, a64)) / (2.0 * ma)
    f += shift[:, None]
    g -= shift[:, None]
    counts = np.bincount(status, minlength=6)
    summary = ", ".join(f"{c} {label}" for c, label in zip(
        counts, ("converged", "at maxiter", "non-finite", "stopped", "stalled",
                 "certified")) if c)
    message = (f"Batch of {B} problems: {summary}. See `status` per problem (table of "
               f"ottools.sinkhorn).")
    if hopeless.any():
        k = int(np.flatnonzero(hopeless)[0])
        message += (f" Non-finite values: in {int(hopeless.sum())} problem(s) (first: "
                    f"{k}), reg={reg:.3g} is below the rounding of the costs (max |C| * "
                    f"eps / reg = {floor[k]:.3g}): exp((f + g - C) / reg) under/overflows "
                    f"without a correct digit. Rescale the costs or increase reg.")
    return make_result(
        fun=fun, cost=lin.copy(), plan=P, f=f.astype(dtype), g=g.astype(dtype), nit=nit,
        err=err, success=status == CONVERGED, status=status.astype(np.int64),
        message=message, method=name, reg=reg)


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


