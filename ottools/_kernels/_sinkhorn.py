"""Sinkhorn kernels: log-domain and scaling form, and the plan from potentials.

All kernels work on the compressed problem (every weight > 0) and return the codes of
``ottools._kernels._codes``; the control (blocks, absorption, over-relaxation, stages,
fallbacks) lives in the Python driver of ``ottools._sinkhorn``. Kernels with a ``_par``
twin are serial; the twin runs row blocks on Numba's threads and is compiled only when a
problem is large enough to use it (``row_chunks``).

Marginal error. After a ``g`` update the column marginals are exact, so the error of the
state ``(f, g)`` is its row error ``sum_i |P1_i - a_i|``; the next ``f`` update computes it
for free: ``P1_i = a_i exp((f_i - f_new_i) / reg)``. The kernels therefore check the state
they would return, exactly, at every iteration, for ``n`` extra exponentials.

Absorption-stabilized scaling (Schmitzer 2019, "Stabilized sparse scaling algorithms for
entropy regularized transport problems", section 3.2). The plan is written
``P_ij = u_i K_ij v_j`` with ``K_ij = exp((f_i + g_j - C_ij) / reg)`` for absorbed
potentials ``f``, ``g``; the iterations update the scalings ``u``, ``v`` with one fused
sweep over ``K`` per iteration (:func:`scaling_sweep`), and once ``u / a`` or ``v / b``
leave ``[1 / bound, bound]`` the sweep stops (``OUT_OF_RANGE``) and the driver absorbs
them into ``f``, ``g`` (:func:`absorb`) and rebuilds ``K`` with the vectorized
exponential :func:`ottools._kernels._lse.exp_into` (:func:`build_kernel`). An entry of
``K`` lost to underflow (< 1e-308, or 1e-38 in float32) could only matter after being
scaled by ``bound**2``; ``bound`` (1e50 in float64, 1e10 in float32) keeps that far below
rounding. If a scaling still becomes zero or non-finite (``NONFINITE``), the driver
replaces the sweep by one exact log-domain iteration (:func:`sinkhorn_log`), so the
method never under/overflows.
"""

import numpy as np
from numba import prange

from ._codes import BUDGET, DONE, NONFINITE, OUT_OF_RANGE
from ._jit import FASTMATH_SAFE, NO_NRT, cast_like, jit, row_chunks  # noqa: F401 (row_chunks re-exported)
from ._lse import c_transform_rows, col_lse, exp_into


@jit
def sinkhorn_log(a, loga, logb, cost, reg, f, g, tol, maxiter, check_first):
    """Log-domain Sinkhorn, in place on ``f`` and ``g``.

    Returns ``(nit, code, err)`` (codes of ``ottools._kernels._codes``); ``err`` is the
    marginal error of the returned ``(f, g)`` when ``code == DONE``, else of the previous
    iterate (inf if unknown).
    ``check_first`` says whether ``g`` is the exact update of ``f`` on entry (columns
    exact), so that the entry state may be accepted.
    """
    n, m = cost.shape
    inv = 1.0 / reg
    fnew = np.empty(n, dtype=f.dtype)
    cmax = np.empty(m, dtype=f.dtype)
    csum = np.empty(m, dtype=f.dtype)
    gnew = np.empty(m, dtype=f.dtype)
    err = np.inf
    status = BUDGET
    nit = 0
    for it in range(maxiter):
        finite, e = c_transform_rows(a, logb, g, cost, reg, f, fnew)
        if not finite:
            status = NONFINITE
            break
        if (it > 0 or check_first) and e <= tol:
            err = e
            status = DONE
            break
        err = e if (it > 0 or check_first) else np.inf
        col_lse(loga, fnew, cost, inv, cmax, csum, gnew)
        for j in range(m):
            gj = -reg * gnew[j]
            if not np.isfinite(gj):
                finite = False
                break
            gnew[j] = gj
        if not finite:
            status = NONFINITE
            break
        f[:] = fnew
        g[:] = gnew
        nit = it + 1
    return nit, status, err


@jit(**NO_NRT)
def _plan_args(fi, g, crow, inv, lai, logb, z, w):
    """One row's exponents ``z_j = (f_i + g_j - C_ij) / reg`` and
    ``w_j = log a_i + log b_j + z_j``, without fast-math flags: reassociated or contracted
    (as the caller's flags would allow once inlined) they round differently in the
    serial and the row-block kernels, whose plans must be equal to the bit."""
    for j in range(g.shape[0]):
        zj = (fi + g[j] - crow[j]) * inv
        z[j] = zj
        w[j] = lai + logb[j] + zj


@jit(inline="always")
def _plan_rows(loga, logb, cost, inv, f, g, P, rows, cols, z, r0, r1):
    """Rows ``r0:r1`` of :func:`plan_from_potentials`: fills ``P`` and ``rows``, adds the
    column sums into ``cols``; returns ``(lin, plogr)`` of these rows.
    Inlined (Numba's ``inline="always"``, under the caller's ``FASTMATH_SAFE``): as a
    separate reassociating function it ran its own code in the process that compiled it
    and the caller's copy, summing in another order, in a process that loaded the caller
    from Numba's cache."""
    m = cost.shape[1]
    lin = 0.0
    plogr = 0.0
    w, work = np.empty(m), np.empty(m)
    for i in range(r0, r1):
        _plan_args(f[i], g, cost[i], inv, loga[i], logb, z, w)
        exp_into(w, P[i], work)
        r = 0.0
        lr = 0.0
        pr = 0.0
        for j in range(m):
            p = np.float64(P[i, j])
            r += p
            cols[j] += p
            lr += p * cost[i, j]
            pr += p * z[j]
        rows[i] = r
        lin += lr
        plogr += pr
    return lin, plogr


@jit
def _sum_blocks(S, C, cols):
    """Sum the per-block outputs of the plan kernels: adds the column sums ``C`` (nc, m)
    into ``cols`` and returns the summed ``(lin, plogr)`` of ``S`` (nc, 2)."""
    lin = 0.0
    plogr = 0.0
    for c in range(S.shape[0]):
        lin += S[c, 0]
        plogr += S[c, 1]
        for j in range(cols.shape[0]):
            cols[j] += C[c, j]
    return lin, plogr


@jit(fastmath=FASTMATH_SAFE)
def plan_from_potentials(loga, logb, cost, reg, f, g, P):
    """``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)`` written into ``P`` (n, m), with
    its marginals: the one plan-from-potentials kernel (``sinkhorn``'s result and the
    dense steps of the Newton stage). Serial; :func:`plan_from_potentials_par` runs row
    blocks in parallel.

    Returns ``(rows, cols, lin, plogr)`` with ``rows``/``cols`` the marginals
    (float64 accumulators, summed from the stored ``P``), ``lin = <P, C>`` and
    ``plogr = sum P_ij (f_i + g_j - C_ij)/reg`` (so that
    ``KL(P | a x b) = plogr - sum(P) + sum(a) sum(b)``). The entries use the
    polynomial exponential of the sweeps (:func:`ottools._kernels._lse.exp_into`, within
    about 2 ulp of libm's); ``FASTMATH_SAFE`` lets the sums vectorize.
    """
    n, m = cost.shape
    rows = np.zeros(n, dtype=np.float64)
    cols = np.zeros(m, dtype=np.float64)
    lin, plogr = _plan_rows(loga, logb, cost, 1.0 / reg, f, g, P, rows, cols,
                            np.empty(m, dtype=np.float64), 0, n)
    return rows, cols, lin, plogr


@jit(parallel=True, fastmath=FASTMATH_SAFE)
def plan_from_potentials_par(loga, logb, cost, reg, f, g, chunks, P):
    """:func:`plan_from_potentials` in ``chunks`` parallel row blocks (see
    :func:`ottools._kernels._jit.row_chunks`)."""
    n, m = cost.shape
    inv = 1.0 / reg
    nc = max(1, min(chunks, n))
    rows = np.zeros(n, dtype=np.float64)
    cols = np.zeros(m, dtype=np.float64)
    C = np.zeros((nc, m), dtype=np.float64)
    Z = np.empty((nc, m), dtype=np.float64)
    S = np.zeros((nc, 2), dtype=np.float64)
    for c in prange(nc):
        lc, pc = _plan_rows(loga, logb, cost, inv, f, g, P, rows, C[c], Z[c],
                            c * n // nc, (c + 1) * n // nc)
        S[c, 0] = lc
        S[c, 1] = pc
    lin, plogr = _sum_blocks(S, C, cols)
    return rows, cols, lin, plogr


@jit(**NO_NRT)
def _scale_row(krow, ui, v):
    """``krow_j = u_i krow_j v_j`` without fast-math flags (as :func:`_plan_args`)."""
    for j in range(v.shape[0]):
        krow[j] = ui * krow[j] * v[j]


@jit(inline="always")
def _scaled_rows(K, u, v, lu, lv, cost, inv, f, g, rows, cols, r0, r1):
    """Rows ``r0:r1`` of :func:`plan_from_scalings`; returns ``(lin, plogr)``. The term
    of a zero entry is a select, not a branch, so that the sums vectorize (1.5x faster
    at 64 x 64 and 256 x 256: a tenth of a batch's per-problem time went here).
    Inlined (Numba's ``inline="always"``, under the caller's ``FASTMATH_SAFE``): as a
    separate reassociating function it ran its own code in the process that compiled it
    and the caller's copy, summing in another order, in a process that loaded the caller
    from Numba's cache."""
    m = cost.shape[1]
    lin = 0.0
    plogr = 0.0
    for i in range(r0, r1):
        ui = u[i]
        fi = f[i]
        li = lu[i]
        r = 0.0
        lr = 0.0
        pr = 0.0
        krow = K[i]
        crow = cost[i]
        _scale_row(krow, ui, v)
        for j in range(m):
            p = np.float64(krow[j])
            c = crow[j]
            r += p
            cols[j] += p
            lr += p * c
            t = p * ((fi + g[j] - c) * inv + li + lv[j])
            pr += t if p > 0.0 else 0.0
        rows[i] = r
        lin += lr
        plogr += pr
    return lin, plogr


@jit(fastmath=FASTMATH_SAFE)
def plan_from_scalings(K, u, v, a, b, cost, f, g, reg):
    """The plan ``P = diag(u) K diag(v)`` written over ``K``, with the outputs of
    :func:`plan_from_potentials` but no exponential: ``(rows, cols, lin, plogr)``.
    Serial; :func:`plan_from_scalings_par` runs row blocks in parallel.

    ``K = exp((f + g - C) / reg)`` for absorbed potentials ``f, g``; ``P`` is the plan of
    the potentials ``f + reg log(u / a)``, ``g + reg log(v / b)``. Each entry is three
    float64 products of a kernel entry computed to about 2 ulp (``exp_into``), which is as
    close to the exact plan as ``exp`` of the summed potentials (whose argument alone
    carries a rounding error of ``|arg| * 1e-16``); ``rows``, ``cols`` and so ``err`` are
    summed from the stored ``P``. ``plogr = sum P_ij log(P_ij / (a_i b_j))`` over
    ``P_ij > 0``.
    """
    n, m = cost.shape
    lu = np.log(u / a)
    lv = np.log(v / b)
    rows = np.zeros(n, dtype=np.float64)
    cols = np.zeros(m, dtype=np.float64)
    lin, plogr = _scaled_rows(K, u, v, lu, lv, cost, 1.0 / reg, f, g, rows, cols, 0, n)
    return rows, cols, lin, plogr


@jit(parallel=True, fastmath=FASTMATH_SAFE)
def plan_from_scalings_par(K, u, v, a, b, cost, f, g, reg, chunks):
    """:func:`plan_from_scalings` in ``chunks`` parallel row blocks."""
    n, m = cost.shape
    inv = 1.0 / reg
    nc = max(1, min(chunks, n))
    lu = np.log(u / a)
    lv = np.log(v / b)
    rows = np.zeros(n, dtype=np.float64)
    cols = np.zeros(m, dtype=np.float64)
    C = np.zeros((nc, m), dtype=np.float64)
    S = np.zeros((nc, 2), dtype=np.float64)
    for c in prange(nc):
        lc, pc = _scaled_rows(K, u, v, lu, lv, cost, inv, f, g, rows, C[c],
                              c * n // nc, (c + 1) * n // nc)
        S[c, 0] = lc
        S[c, 1] = pc
    lin, plogr = _sum_blocks(S, C, cols)
    return rows, cols, lin, plogr


# Over-relaxed scalings ``old * (new / old) ** omega``, the ratio ``r = 1 + d``. ``pow``
# costs 7-10 ns a call, as much as a 64 x 64 sweep's whole matrix pass, and the first
# relaxed sweeps call it for most rows and columns (their |d| ~ 1e-3 - 1e-2: +1.4 us a
# sweep at 64 x 64, +6 us at 256 x 256, a quarter of a batch's per-problem time). Inside
# |d| <= 2**-4 the power is the binomial series ``sum_k C(omega, k) d**k`` instead: to the
# fifth power where |d| <= 2**-10 (near convergence; the next term is below
# 0.005 * 2**-60 relative for 1 <= omega <= 2), else to the eleventh (the next term is
# below 0.04 * 2**-53 relative: |C(omega, 12)| < 0.0012 for 1 <= omega <= 2). Either is
# exact to rounding. Outside the band, and for NaN or inf, ``pow`` itself.
_SERIES_BAND = 2.0 ** -10
_WIDE_BAND = 2.0 ** -4


@jit(fastmath=FASTMATH_SAFE, **NO_NRT)
def relax_coefficients(omega):
    """The binomial coefficients ``C(omega, k)``, k = 1..11, for :func:`relaxed`."""
    c1 = omega
    c2 = c1 * (omega - 1.0) / 2.0
    c3 = c2 * (omega - 2.0) / 3.0
    c4 = c3 * (omega - 3.0) / 4.0
    c5 = c4 * (omega - 4.0) / 5.0
    c6 = c5 * (omega - 5.0) / 6.0
    c7 = c6 * (omega - 6.0) / 7.0
    c8 = c7 * (omega - 7.0) / 8.0
    c9 = c8 * (omega - 8.0) / 9.0
    c10 = c9 * (omega - 9.0) / 10.0
    c11 = c10 * (omega - 10.0) / 11.0
    return c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11


@jit(inline="always")
def _binomial11(d, c):
    """``(1 + d) ** omega`` by the binomial series to ``d**11`` (``c``:
    :func:`relax_coefficients`), Horner's scheme, no branch (vectorizes inlined)."""
    h = c[10]
    h = c[9] + d * h
    h = c[8] + d * h
    h = c[7] + d * h
    h = c[6] + d * h
    h = c[5] + d * h
    h = c[4] + d * h
    h = c[3] + d * h
    h = c[2] + d * h
    h = c[1] + d * h
    h = c[0] + d * h
    return 1.0 + d * h


@jit(fastmath=FASTMATH_SAFE, **NO_NRT)
def relaxed_ratio(old, r, omega, c):
    """``old * r ** omega`` (``c``: :func:`relax_coefficients` of ``omega``)."""
    d = r - 1.0
    ad = abs(d)
    if ad <= _SERIES_BAND:
        return old * (1.0 + d * (c[0] + d * (c[1] + d * (c[2] + d * (c[3] + d * c[4])))))
    if ad <= _WIDE_BAND:
        return old * _binomial11(d, c)
    return old * r ** omega


@jit(fastmath=FASTMATH_SAFE, **NO_NRT)
def relaxed(old, new, omega, c):
    """``old * (new / old) ** omega``."""
    return relaxed_ratio(old, new / old, omega, c)


@jit(inline="always")
def dots4(K, vk, i):
    """``(K v)_i`` for rows ``i`` to ``i + 3``, in K's dtype: four chains in one pass
    over ``v`` (one row's chain alone is bound by its latency). The caller's fastmath
    flags apply (inlined)."""
    m = K.shape[1]
    v0 = vk[0]
    acc0 = K[i, 0] * v0
    acc1 = K[i + 1, 0] * v0
    acc2 = K[i + 2, 0] * v0
    acc3 = K[i + 3, 0] * v0
    for j in range(1, m):
        v = vk[j]
        acc0 += K[i, j] * v
        acc1 += K[i + 1, j] * v
        acc2 += K[i + 2, j] * v
        acc3 += K[i + 3, j] * v
    return acc0, acc1, acc2, acc3


@jit(inline="always")
def dot_row(K, vk, i):
    """``(K v)_i`` in K's dtype (the rows left over by :func:`dots4`)."""
    acc = K[i, 0] * vk[0]
    for j in range(1, K.shape[1]):
        acc += K[i, j] * vk[j]
    return acc


@jit(inline="always")
def _new_scaling(u, a, unew, i, acc, relax, omega, c, K, damped, pa, qa, tau, kr):
    """Row ``i``'s new scaling from ``acc = (K v)_i``: writes ``unew[i]``; returns the
    row's error term, the scaling in K's dtype, and whether it is finite and positive.
    ``damped``: the KL-relaxed update of ``_unbalanced`` (``pa``, ``qa``, ``tau``,
    ``kr`` as there), else ``a_i / acc``."""
    if damped:
        e = abs(u[i] * acc - a[i] * np.exp(qa[i] - kr * np.log(u[i] / a[i])))
        ui = a[i] * np.exp(pa[i] - tau * np.log(acc))
        if relax:
            ui = relaxed(u[i], ui, omega, c)
    else:
        p = u[i] * acc
        e = abs(p - a[i])
        if relax:  # one division: the ratio a / (u K v) itself
            ui = relaxed_ratio(u[i], a[i] / p, omega, c)
        else:
            ui = a[i] / acc
    unew[i] = ui
    uki = cast_like(K, ui)
    return e, uki, np.isfinite(ui) and ui > 0.0 and uki > 0.0 and np.isfinite(uki)


_NO_DAMP = np.empty(0)


@jit(fastmath=FASTMATH_SAFE, **NO_NRT)
def row_pass(K, vk, u, a, unew, t, r0, r1, omega, damped, pa, qa, tau, kr):
    """Rows ``r0:r1`` of one scaling sweep: ``unew_i = a_i / (K v)_i`` (``damped``: the
    KL-relaxed update of ``_unbalanced``; over-relaxed when ``omega != 1``) and
    ``t = sum_i unew_i K_i`` (overwritten). Returns ``(e, ok)``: the row error of the
    entry state (``sum_i |u_i (K v)_i - a_i|`` when not damped), and whether every new
    scaling is finite and positive (in float64 and in K's dtype).

    Rows go four at a time: one pass over ``v`` feeds four independent dot products, and
    ``t`` is read and written once per four rows: 1.4x-1.6x faster than row by row from
    64 x 64 to 3000 x 3000 (the row pass was bound by the latency of each row's chain,
    not by memory). The iterates equal those of the row-by-row pass to rounding (the
    reassociation of ``FASTMATH_SAFE`` may group the sums differently). When ``ok`` is
    False the caller discards ``t``."""
    m = K.shape[1]
    relax = omega != 1.0
    c = relax_coefficients(omega)
    for j in range(m):
        t[j] = 0.0
    e = 0.0
    ok = True
    i = r0
    while i + 4 <= r1:
        acc0, acc1, acc2, acc3 = dots4(K, vk, i)
        e0, w0, g0 = _new_scaling(u, a, unew, i, np.float64(acc0), relax, omega, c, K,
                                  damped, pa, qa, tau, kr)
        e1, w1, g1 = _new_scaling(u, a, unew, i + 1, np.float64(acc1), relax, omega, c, K,
                                  damped, pa, qa, tau, kr)
        e2, w2, g2 = _new_scaling(u, a, unew, i + 2, np.float64(acc2), relax, omega, c, K,
                                  damped, pa, qa, tau, kr)
        e3, w3, g3 = _new_scaling(u, a, unew, i + 3, np.float64(acc3), relax, omega, c, K,
                                  damped, pa, qa, tau, kr)
        e += e0
        e += e1
        e += e2
        e += e3
        if g0 and g1 and g2 and g3:
            for j in range(m):
                t[j] = (((t[j] + K[i, j] * w0) + K[i + 1, j] * w1) + K[i + 2, j] * w2
                        ) + K[i + 3, j] * w3
        else:
            ok = False
        i += 4
    while i < r1:
        ei, wi, gi = _new_scaling(u, a, unew, i, np.float64(dot_row(K, vk, i)), relax,
                                  omega, c, K, damped, pa, qa, tau, kr)
        e += ei
        if gi:
            for j in range(m):
                t[j] += K[i, j] * wi
        else:
            ok = False
        i += 1
    return e, ok


@jit(**NO_NRT)
def _sweep_rows(K, vk, u, a, unew, t, r0, r1, omega):
    """:func:`row_pass` without damping (the balanced sweep)."""
    return row_pass(K, vk, u, a, unew, t, r0, r1, omega, False, _NO_DAMP, _NO_DAMP, 1.0,
                    0.0)


@jit(parallel=True)
def _sweep(K, vk, u, a, unew, t, T, E, omega):
    """:func:`_sweep_rows` over all rows: serial when ``T`` has one row, else its
    ``nc`` rows are the per-block ``K^T u`` accumulators of ``nc`` parallel row blocks
    (``E``, shape (nc, 2), their errors and flags), summed into ``t``."""
    n, m = K.shape
    nc = T.shape[0]
    if nc <= 1:
        return _sweep_rows(K, vk, u, a, unew, t, 0, n, omega)
    for c in prange(nc):
        ec, okc = _sweep_rows(K, vk, u, a, unew, T[c], c * n // nc, (c + 1) * n // nc,
                              omega)
        E[c, 0] = ec
        E[c, 1] = 1.0 if okc else 0.0
    e = 0.0
    ok = True
    for c in range(nc):
        e += E[c, 0]
        ok = ok and E[c, 1] == 1.0
    for j in range(m):
        acc = 0.0
        for c in range(nc):
            acc += T[c, j]
        t[j] = acc
    return e, ok


_FLOAT64_MAX = np.finfo(np.float64).max


@jit(fastmath=FASTMATH_SAFE, **NO_NRT)
def _update_columns(b, v, t, s, omega):
    """Column half of a sweep: ``s_j = b_j / (K^T u)_j`` (over-relaxed when
    ``omega != 1``). Returns ``(ok, ce)``: whether every new scaling is finite and positive,
    and the column error ``sum_j |s_j t_j - b_j|`` of the new state.

    Branch-free loops, so that they vectorize: over-relaxed, every column takes the
    eleven-term series of :func:`relaxed_ratio` (exact to rounding for
    ``|d| <= 2**-4``), then the columns outside that band (or NaN) take ``pow`` in a
    second, rarely entered loop; the flags are counts (a comparison that is false for
    NaN counts it). At 64 columns the call took 0.6-0.75 us relaxed and 0.35 us plain,
    as much as the rest of a 64 x 64 sweep. The sum ``ce`` is reassociated."""
    m = b.shape[0]
    if omega == 1.0:
        bad = 0
        ce = 0.0
        for j in range(m):
            vj = b[j] / t[j]
            s[j] = vj
            bad += 0 if (vj > 0.0 and vj <= _FLOAT64_MAX) else 1
            ce += abs(vj * t[j] - b[j])
        return bad == 0, ce
    c = relax_coefficients(omega)
    out = 0
    for j in range(m):
        d = b[j] / (v[j] * t[j]) - 1.0
        out += 0 if abs(d) <= _WIDE_BAND else 1
        s[j] = v[j] * _binomial11(d, c)
    if out > 0:
        for j in range(m):
            r = b[j] / (v[j] * t[j])
            if not abs(r - 1.0) <= _WIDE_BAND:
                s[j] = v[j] * r ** omega
    bad = 0
    ce = 0.0
    for j in range(m):
        vj = s[j]
        bad += 0 if (vj > 0.0 and vj <= _FLOAT64_MAX) else 1
        ce += abs(vj * t[j] - b[j])
    return bad == 0, ce


@jit(**NO_NRT)
def commit_scalings(u, unew, v, s, a, b, bound):
    """Accept the new scalings; True if one left ``[1 / bound, bound]`` (relative to its
    weight): the caller absorbs them into the potentials."""
    lo = 1.0 / bound
    out = False
    for i in range(u.shape[0]):
        u[i] = unew[i]
        if unew[i] > bound * a[i] or unew[i] < lo * a[i]:  # (no division)
            out = True
    for j in range(v.shape[0]):
        v[j] = s[j]
        if s[j] > bound * b[j] or s[j] < lo * b[j]:
            out = True
    return out


@jit
def scaling_sweep(K, a, b, u, v, bound, omega, tol, maxiter, check_first, cerr, errs, s, t,
                  unew, vk):
    """Fused scaling iterations ``u <- a / (K v)``, ``v <- b / (K^T u)``, in place (serial).

    One pass over the rows of ``K`` per iteration: row ``i`` gives ``(K v)_i``, hence
    ``u_i``, and, while still in cache, adds ``u_i K_i`` to ``K^T u``; ``K`` (float32 or
    float64) is read once per iteration instead of twice. ``u``, ``v`` and ``K^T u`` are
    float64; the row dot products ``K_i . v`` and the products ``K_ij u_i`` run in ``K``'s
    dtype (``vk``, length m, holds ``v`` in that dtype): for float32 this keeps the loop
    at 16 lanes instead of widening every entry (a float32 row sum of ``m`` terms in
    vectorized partial sums: relative error ~1e-7, below float32's err floor). ``s``,
    ``t``, ``unew`` are work arrays (m, m, n). ``FASTMATH_SAFE`` (reassociation, no
    ``nnan``/``ninf``/``afn``) lets the row dot products vectorize; the finiteness checks
    are kept.

    ``omega`` > 1 over-relaxes both updates, ``u <- u (a / (u K v))**omega`` (Thibault
    et al. 2021); ``omega = 1`` is Sinkhorn. The column error of the current state is
    known exactly when ``v`` is updated (zero up to rounding when ``omega = 1``) and kept
    in ``cerr[0]``; its row error comes with the next sweep, so the error of each state is
    exact. ``errs[k]`` receives the L1 marginal error of the state after ``k`` iterations
    of this call, for the states whose row pass ran (``errs[0]``: the entry state, ``inf``
    unless ``check_first`` says that ``cerr[0]`` holds its column error); the error of the
    state after the last iteration comes with the next call. ``errs``: length ``maxiter``.

    Returns ``(nit, code)`` with the codes of ``ottools._kernels._codes``: ``DONE`` when
    ``errs[nit] <= tol`` (the state after ``nit`` iterations is kept); ``BUDGET`` after
    ``maxiter`` iterations; ``NONFINITE`` when a new scaling is zero or non-finite (the
    state after ``nit`` iterations, the last finite one, is kept); ``OUT_OF_RANGE`` after
    an iteration whose scalings ``u / a`` or ``v / b`` left ``[1 / bound, bound]``
    (``bound = inf`` never stops).
    """
    n, m = K.shape
    for it in range(maxiter):
        for j in range(m):
            vk[j] = v[j]
        e, ok = _sweep_rows(K, vk, u, a, unew, t, 0, n, omega)
        code = _after_sweep(e, ok, it, check_first, cerr, errs, tol, b, v, t, s, omega, u,
                            unew, a, bound)
        if code == DONE or code == NONFINITE:
            return it, code
        if code == OUT_OF_RANGE:
            return it + 1, code
    return maxiter, BUDGET


@jit
def scaling_sweep_par(K, a, b, u, v, bound, omega, tol, maxiter, check_first, cerr, errs, s,
                      t, unew, vk, T, E):
    """:func:`scaling_sweep` with each sweep in ``T.shape[0]`` parallel row blocks (``T``
    (nc, m) the per-block ``K^T u`` accumulators, ``E`` (nc, 2) their errors and flags).
    The iterates are those of the serial sweep up to the order of the ``K^T u`` sums."""
    n, m = K.shape
    for it in range(maxiter):
        for j in range(m):
            vk[j] = v[j]
        e, ok = _sweep(K, vk, u, a, unew, t, T, E, omega)
        code = _after_sweep(e, ok, it, check_first, cerr, errs, tol, b, v, t, s, omega, u,
                            unew, a, bound)
        if code == DONE or code == NONFINITE:
            return it, code
        if code == OUT_OF_RANGE:
            return it + 1, code
    return maxiter, BUDGET


@jit(**NO_NRT)
def _after_sweep(e, ok, it, check_first, cerr, errs, tol, b, v, t, s, omega, u, unew, a,
                 bound):
    """The rest of iteration ``it`` once the row pass gave ``(e, ok)``: record the error
    of the entry state, then stop (``DONE``, ``NONFINITE``) or update the columns and
    commit (``BUDGET``: go on; ``OUT_OF_RANGE``: committed, the caller absorbs)."""
    checked = it > 0 or check_first
    e += cerr[0]
    errs[it] = e if checked else np.inf
    if checked and e <= tol:
        return DONE
    if not ok:
        return NONFINITE
    ok, ce = _update_columns(b, v, t, s, omega)
    if not ok:
        return NONFINITE
    cerr[0] = ce
    if commit_scalings(u, unew, v, s, a, b, bound):
        return OUT_OF_RANGE
    return BUDGET


@jit(**NO_NRT)
def _build_rows(cost, f, g, inv, K, x, work, r0, r1):
    """Rows ``r0:r1`` of :func:`build_kernel`."""
    m = cost.shape[1]
    for i in range(r0, r1):
        fi = f[i]
        for j in range(m):
            x[j] = (fi + g[j] - cost[i, j]) * inv
        exp_into(x, K[i], work)


@jit
def build_kernel(cost, f, g, reg, K, x, work):
    """``K_ij = exp((f_i + g_j - C_ij) / reg)`` with the vectorized exponential (serial;
    ``x``, ``work``: float64 arrays of length m)."""
    _build_rows(cost, f, g, 1.0 / reg, K, x, work, 0, cost.shape[0])


@jit(parallel=True)
def build_kernel_par(cost, f, g, reg, K, X, W):
    """:func:`build_kernel` in ``X.shape[0]`` parallel row blocks (``X``, ``W``: float64
    work arrays of shape (nc, m))."""
    n = cost.shape[0]
    inv = 1.0 / reg
    nc = X.shape[0]
    for c in prange(nc):
        _build_rows(cost, f, g, inv, K, X[c], W[c], c * n // nc, (c + 1) * n // nc)


@jit
def scaled_potential(f, u, a, reg):
    """``f + reg log(u / a)``: the potential of absorbed ``f`` with scaling ``u`` (a new
    array; -inf where ``u`` is 0). One copy for the drivers' sweeps and the batches'
    kernel, so that both round the logarithm alike."""
    out = np.empty(f.shape[0])
    for i in range(f.shape[0]):
        r = u[i] / a[i]
        if np.isfinite(r) and r > 0.0:
            out[i] = f[i] + reg * np.log(r)
        else:  # u / a beyond float64 (u of 1.6e308 with a = 1/4): inf where u is finite
            out[i] = f[i] + reg * (np.log(u[i]) - np.log(a[i]))
    return out


@jit
def absorb(f, g, u, v, a, b, reg):
    """Fold the scalings into the potentials: ``f += reg log(u / a)``, ``u = a``; same for g."""
    for i in range(f.shape[0]):
        f[i] += reg * np.log(u[i] / a[i])
        u[i] = a[i]
    for j in range(g.shape[0]):
        g[j] += reg * np.log(v[j] / b[j])
        v[j] = b[j]
