"""Sinkhorn kernels: log-domain and scaling form, and the plan from potentials.

All kernels work on the compressed problem (every weight > 0). Status codes are those of
``ottools._result``: 0 converged, 1 maxiter, 2 non-finite values.

Marginal error. After a ``g`` update the column marginals are exact, so the error of the
state ``(f, g)`` is its row error ``sum_i |P1_i - a_i|``; the next ``f`` update computes it
for free: ``P1_i = a_i exp((f_i - f_new_i) / reg)``. The kernels therefore check the state
they would return, exactly, at every iteration, for ``n`` extra exponentials.

Absorption-stabilized scaling (Schmitzer 2019, "Stabilized sparse scaling algorithms for
entropy regularized transport problems", section 3.2). The plan is written
``P_ij = u_i K_ij v_j`` with ``K_ij = exp((f_i + g_j - C_ij) / reg)`` for absorbed
potentials ``f``, ``g``; the iterations update the scalings ``u``, ``v`` with one fused
sweep over ``K`` per iteration (:func:`scaling_sweep`), and once ``u / a`` or ``v / b``
leave ``[1 / bound, bound]`` they are absorbed into ``f``, ``g`` and ``K`` is rebuilt
with the vectorized exponential :func:`ottools._kernels._lse.exp_into`. An entry of ``K``
lost to underflow (< 1e-308, or 1e-38 in float32) could only matter after being scaled by
``bound**2``; ``bound`` (1e50 in float64, 1e10 in float32) keeps that far below rounding.
If a scaling still becomes zero or non-finite, one exact log-domain iteration
(:func:`sinkhorn_log`) replaces the sweep, so the method never under/overflows.
"""

import numpy as np
from numba import prange

from ._jit import FASTMATH_SAFE, jit, row_chunks  # noqa: F401 (row_chunks re-exported)
from ._lse import c_transform_rows, col_lse, exp_into


@jit
def sinkhorn_log(a, loga, logb, cost, reg, f, g, tol, maxiter, check_first):
    """Log-domain Sinkhorn, in place on ``f`` and ``g``.

    Returns ``(nit, status, err)``; ``err`` is the marginal error of the returned
    ``(f, g)`` when ``status == 0``, else of the previous iterate (inf if unknown).
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
    status = 1
    nit = 0
    for it in range(maxiter):
        finite, e = c_transform_rows(a, logb, g, cost, reg, f, fnew)
        if not finite:
            status = 2
            break
        if (it > 0 or check_first) and e <= tol:
            err = e
            status = 0
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
            status = 2
            break
        f[:] = fnew
        g[:] = gnew
        nit = it + 1
    return nit, status, err


@jit(fastmath=FASTMATH_SAFE)
def _plan_rows(loga, logb, cost, inv, f, g, P, rows, cols, z, r0, r1):
    """Rows ``r0:r1`` of :func:`plan_from_potentials`: fills ``P`` and ``rows``, adds the
    column sums into ``cols``; returns ``(lin, plogr)`` of these rows."""
    m = cost.shape[1]
    lin = 0.0
    plogr = 0.0
    for i in range(r0, r1):
        fi = f[i]
        lai = loga[i]
        for j in range(m):
            zj = (fi + g[j] - cost[i, j]) * inv
            z[j] = zj
            P[i, j] = np.exp(lai + logb[j] + zj)
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


@jit(parallel=True)
def plan_from_potentials(loga, logb, cost, reg, f, g, chunks, P):
    """``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)`` written into ``P`` (n, m), with
    its marginals: the one plan-from-potentials kernel (``sinkhorn``'s result and the
    dense steps of ``method="sns"``).

    Returns ``(rows, cols, lin, plogr)`` with ``rows``/``cols`` the marginals
    (float64 accumulators, summed from the stored ``P``), ``lin = <P, C>`` and
    ``plogr = sum P_ij (f_i + g_j - C_ij)/reg`` (so that
    ``KL(P | a x b) = plogr - sum(P) + sum(a) sum(b)``). The returned plan, and so the
    reported ``err``, use libm's ``exp`` (not the polynomial of the iterations);
    ``FASTMATH_SAFE`` lets the sums vectorize. ``chunks`` row blocks run in parallel
    (:func:`ottools._kernels._jit.row_chunks`; 1 is serial).
    """
    n, m = cost.shape
    inv = 1.0 / reg
    nc = max(1, min(chunks, n))
    rows = np.zeros(n, dtype=np.float64)
    cols = np.zeros(m, dtype=np.float64)
    if nc == 1:
        lin, plogr = _plan_rows(loga, logb, cost, inv, f, g, P, rows, cols,
                                np.empty(m, dtype=np.float64), 0, n)
        return rows, cols, lin, plogr
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


@jit(fastmath=FASTMATH_SAFE)
def _scaled_rows(K, u, v, lu, lv, cost, inv, f, g, rows, cols, r0, r1):
    """Rows ``r0:r1`` of :func:`plan_from_scalings`; returns ``(lin, plogr)``."""
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
        for j in range(m):
            K[i, j] = ui * K[i, j] * v[j]
            p = np.float64(K[i, j])
            r += p
            cols[j] += p
            lr += p * cost[i, j]
            if p > 0.0:
                pr += p * ((fi + g[j] - cost[i, j]) * inv + li + lv[j])
        rows[i] = r
        lin += lr
        plogr += pr
    return lin, plogr


@jit(parallel=True)
def plan_from_scalings(K, u, v, a, b, cost, f, g, reg, chunks):
    """The plan ``P = diag(u) K diag(v)`` written over ``K``, with the outputs of
    :func:`plan_from_potentials` but no exponential: ``(rows, cols, lin, plogr)``.

    ``K = exp((f + g - C) / reg)`` for absorbed potentials ``f, g`` (as left by
    :func:`sinkhorn_stabilized`); ``P`` is the plan of the potentials
    ``f + reg log(u / a)``, ``g + reg log(v / b)``. Each entry is three float64 products
    of a kernel entry computed to about 2 ulp (``exp_into``), which is as close to the
    exact plan as ``exp`` of the summed potentials (whose argument alone carries a
    rounding error of ``|arg| * 1e-16``); ``rows``, ``cols`` and so ``err`` are summed
    from the stored ``P``. ``plogr = sum P_ij log(P_ij / (a_i b_j))`` over ``P_ij > 0``.
    """
    n, m = cost.shape
    inv = 1.0 / reg
    nc = max(1, min(chunks, n))
    lu = np.log(u / a)
    lv = np.log(v / b)
    rows = np.zeros(n, dtype=np.float64)
    cols = np.zeros(m, dtype=np.float64)
    if nc == 1:
        lin, plogr = _scaled_rows(K, u, v, lu, lv, cost, inv, f, g, rows, cols, 0, n)
        return rows, cols, lin, plogr
    C = np.zeros((nc, m), dtype=np.float64)
    S = np.zeros((nc, 2), dtype=np.float64)
    for c in prange(nc):
        lc, pc = _scaled_rows(K, u, v, lu, lv, cost, inv, f, g, rows, C[c],
                              c * n // nc, (c + 1) * n // nc)
        S[c, 0] = lc
        S[c, 1] = pc
    lin, plogr = _sum_blocks(S, C, cols)
    return rows, cols, lin, plogr


@jit(fastmath=FASTMATH_SAFE)
def _sweep_rows(K, vk, u, a, unew, t, r0, r1, omega):
    """Rows ``r0:r1`` of one scaling sweep: ``unew_i = a_i / (K v)_i`` (over-relaxed
    when ``omega != 1``) and ``t = sum_i unew_i K_i`` (overwritten). Returns
    ``(e, ok)``: the row error ``sum_i |u_i (K v)_i - a_i|`` of the entry state, and
    whether every new scaling is finite and positive (in float64 and in K's dtype)."""
    m = K.shape[1]
    relax = omega != 1.0
    uk = np.empty(1, dtype=K.dtype)
    for j in range(m):
        t[j] = 0.0
    e = 0.0
    ok = True
    for i in range(r0, r1):
        acc = K[i, 0] * vk[0]
        for j in range(1, m):
            acc += K[i, j] * vk[j]
        acc = np.float64(acc)
        e += abs(u[i] * acc - a[i])
        ui = a[i] / acc
        if relax:
            ui = u[i] * (ui / u[i]) ** omega
        unew[i] = ui
        uk[0] = ui
        uki = uk[0]
        if np.isfinite(ui) and ui > 0.0 and uki > 0.0 and np.isfinite(uki):
            for j in range(m):
                t[j] += K[i, j] * uki
        else:
            ok = False
    return e, ok


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


@jit
def scaling_sweep(K, a, b, u, v, bound, omega, tol, maxiter, check_first, cerr, s, t, unew,
                  vk, T, E):
    """Fused scaling iterations ``u <- a / (K v)``, ``v <- b / (K^T u)``, in place.

    One pass over the rows of ``K`` per iteration: row ``i`` gives ``(K v)_i``, hence
    ``u_i``, and, while still in cache, adds ``u_i K_i`` to ``K^T u``; ``K`` (float32 or
    float64) is read once per iteration instead of twice. ``u``, ``v`` and ``K^T u`` are
    float64; the row dot products ``K_i . v`` and the products ``K_ij u_i`` run in ``K``'s
    dtype (``vk``, length m, holds ``v`` in that dtype): for float32 this keeps the loop
    at 16 lanes instead of widening every entry, about 1.5x faster (a float32 row sum of
    ``m`` terms in vectorized partial sums: relative error ~1e-7, below float32's err
    floor). ``s``, ``t``, ``unew`` are work arrays (m, m, n). ``FASTMATH_SAFE``
    (reassociation, no ``nnan``/``ninf``/``afn``) lets the row dot products vectorize;
    the finiteness checks are kept. ``T`` (nc, m) and ``E`` (nc, 2): with ``nc > 1`` the
    sweep runs ``nc`` row blocks in parallel (see :func:`_sweep`); the iterates are
    those of the serial sweep up to the order of the ``K^T u`` sums.

    ``omega`` > 1 over-relaxes both updates, ``u <- u (a / (u K v))**omega`` (Thibault
    et al. 2021); ``omega = 1`` is Sinkhorn. The column error of the current state is
    known exactly when ``v`` is updated (``sum_j |v_j (K^T u)_j - b_j|``, zero up to
    rounding when ``omega = 1``) and kept in ``cerr[0]``; its row error comes with the next
    sweep, so ``err`` is the exact L1 marginal error of the state it describes.

    Returns ``(nit, status, err)`` as :func:`sinkhorn_log`, with one more status: 4 when
    the accepted iterate has ``u / a`` or ``v / b`` outside ``[1 / bound, bound]`` (the
    caller absorbs them; ``bound = inf`` never stops). A zero or non-finite scaling
    stops with status 2 and the last finite iterate. ``check_first`` says whether
    ``cerr[0]`` holds the column error of the entry state.
    """
    n, m = K.shape
    lo = 1.0 / bound
    relax = omega != 1.0
    err = np.inf
    status = 1
    nit = 0
    for it in range(maxiter):
        for j in range(m):
            vk[j] = v[j]
        e, ok = _sweep(K, vk, u, a, unew, t, T, E, omega)
        checked = it > 0 or check_first
        e += cerr[0]
        if checked and e <= tol:
            err = e
            status = 0
            break
        err = e if checked else np.inf
        if not ok:
            status = 2
            break
        ce = 0.0
        for j in range(m):
            vj = b[j] / t[j]
            if relax:
                vj = v[j] * (vj / v[j]) ** omega
            if not (np.isfinite(vj) and vj > 0.0):
                ok = False
            s[j] = vj
            ce += abs(vj * t[j] - b[j])
        if not ok:
            status = 2
            break
        cerr[0] = ce
        out = False
        for i in range(n):
            u[i] = unew[i]
            r = unew[i] / a[i]
            if r > bound or r < lo:
                out = True
        for j in range(m):
            v[j] = s[j]
            r = s[j] / b[j]
            if r > bound or r < lo:
                out = True
        nit = it + 1
        if out:
            status = 4
            break
    return nit, status, err


@jit
def _build_rows(cost, f, g, inv, K, x, work, r0, r1):
    """Rows ``r0:r1`` of :func:`build_kernel`."""
    m = cost.shape[1]
    for i in range(r0, r1):
        fi = f[i]
        for j in range(m):
            x[j] = (fi + g[j] - cost[i, j]) * inv
        exp_into(x, K[i], work)


@jit(parallel=True)
def build_kernel(cost, f, g, reg, K, X, W):
    """``K_ij = exp((f_i + g_j - C_ij) / reg)`` with the vectorized exponential.

    ``X`` and ``W`` are float64 work arrays of shape (nc, m): ``nc`` row blocks run in
    parallel (1: serial).
    """
    n = cost.shape[0]
    inv = 1.0 / reg
    nc = X.shape[0]
    if nc <= 1:
        _build_rows(cost, f, g, inv, K, X[0], W[0], 0, n)
        return
    for c in prange(nc):
        _build_rows(cost, f, g, inv, K, X[c], W[c], c * n // nc, (c + 1) * n // nc)


@jit
def absorb(f, g, u, v, a, b, reg):
    """Fold the scalings into the potentials: ``f += reg log(u / a)``, ``u = a``; same for g."""
    for i in range(f.shape[0]):
        f[i] += reg * np.log(u[i] / a[i])
        u[i] = a[i]
    for j in range(g.shape[0]):
        g[j] += reg * np.log(v[j] / b[j])
        v[j] = b[j]


@jit
def relaxation_from_rate(kappa, omega_max):
    """Over-relaxation ``2 / (1 + sqrt(1 - kappa))`` for an observed linear rate ``kappa``
    of Sinkhorn's error (Thibault et al. 2021, eq. for the asymptotically optimal
    parameter), capped at ``omega_max``; 1 when the rate is unknown or >= 1."""
    if not (kappa > 0.0 and kappa < 1.0):
        return 1.0
    w = 2.0 / (1.0 + np.sqrt(1.0 - kappa))
    return w if w < omega_max else omega_max


@jit
def sinkhorn_stabilized(a, b, loga, logb, cost, reg, f, g, K, u, v, tol, maxiter,
                        check_first, bound, cerr, relax, omega_max, rstate, chunks):
    """Log-stable Sinkhorn by absorption (see the module note), in place.

    On entry ``K`` must hold ``exp((f_i + g_j - C_ij) / reg)`` and ``P = u K v`` the
    current plan; ``f, g, u, v`` are float64, ``a, b`` the float64 weights and
    ``loga, logb`` their logs; ``cerr[0]`` the column error of the entry state (used when
    ``check_first``). Returns ``(nit, status, err)`` as :func:`sinkhorn_log`; status 2
    only if an exact log-domain iteration itself fails.

    ``relax``: after two blocks of 10 plain iterations, estimate the linear rate
    ``kappa`` of the error and over-relax with :func:`relaxation_from_rate`. Safeguard:
    if the error grows 100-fold, or has not decreased over 5 blocks, go back to plain
    Sinkhorn and estimate again (after the third failure, plain Sinkhorn for good).
    While over-relaxed, each block's rate ``lam`` refines the estimate through Young's
    relation for 2-cyclic iterations, ``kappa = (lam + omega - 1)**2 / (lam omega**2)``,
    and ``omega`` grows to the optimum it gives.

    ``rstate`` (length 8) carries the relaxation state between calls; on return
    ``rstate[7]`` is 1 if ``K`` matches the returned ``f, g`` (so that
    :func:`plan_from_scalings` may use it), else 0. ``chunks``: parallel row blocks.
    """
    n, m = cost.shape
    nc = max(1, min(chunks, n))
    s = np.empty(m)
    t = np.empty(m)
    unew = np.empty(n)
    vk = np.empty(m, dtype=K.dtype)
    T = np.empty((nc, m))
    E = np.empty((nc, 2))
    X = np.empty((nc, m))
    W = np.empty((nc, m))
    nit = 0
    status = 1
    err = np.inf
    omega = rstate[0]
    e_prev = rstate[1]
    fails = int(rstate[2])
    since = int(rstate[3])
    done = int(rstate[4])
    e_last = rstate[5]
    settled = int(rstate[6])
    fresh = 1.0
    if fails >= 3:
        relax = False
    block = 10 if relax else maxiter
    while nit < maxiter:
        todo = min(block - done, maxiter - nit) if relax else maxiter - nit
        k, status, err = scaling_sweep(K, a, b, u, v, bound, omega, tol, todo,
                                       check_first, cerr, s, t, unew, vk, T, E)
        nit += k
        done += k
        if status == 0:
            break
        if k > 0:
            check_first = True
        if status == 1:
            if relax and done >= block:
                done = 0
            else:
                continue  # maxiter reached inside a block
            if relax:
                if omega == 1.0:
                    if np.isfinite(e_prev) and e_prev > 0.0 and np.isfinite(err):
                        omega = relaxation_from_rate((err / e_prev) ** (1.0 / block),
                                                     omega_max)
                        since = 0
                        settled = 0
                    e_prev = err
                else:
                    since += 1
                    settled += 1
                    bad = not (err <= 100.0 * e_prev)
                    if since % 5 == 0:
                        bad = bad or err >= e_prev
                        e_prev = err
                    if bad:
                        omega = 1.0
                        e_prev = np.inf
                        fails += 1
                        if fails >= 3:
                            relax = False
                            block = maxiter
                    elif settled >= 2 and err < e_last:
                        # Young's relation for a 2-cyclic iteration: the relaxed rate
                        # lam and omega give the plain rate kappa (exact for
                        # omega <= omega_opt, and kappa -> omega's own optimum beyond).
                        lam = (err / e_last) ** (1.0 / block)
                        kap = (lam + omega - 1.0) ** 2 / (lam * omega * omega)
                        w = relaxation_from_rate(kap, omega_max)
                        if w > omega + 1e-3:
                            omega = w
                            settled = 0
                e_last = err
            continue
        absorb(f, g, u, v, a, b, reg)
        fresh = 0.0
        if status == 2:
            if nit >= maxiter:
                status = 1
                break
            if omega > 1.0:
                # A relaxed step failed: plain Sinkhorn from here on.
                omega = 1.0
                fails = 3
                relax = False
                block = maxiter
            k, status, err = sinkhorn_log(a, loga, logb, cost, reg, f, g, tol, 1,
                                          check_first)
            nit += k
            done += k
            cerr[0] = 0.0
            if status == 0 or status == 2:
                break
            check_first = True
        status = 1
        build_kernel(cost, f, g, reg, K, X, W)
        fresh = 1.0
    rstate[0] = omega
    rstate[1] = e_prev
    rstate[2] = fails
    rstate[3] = since
    rstate[4] = done
    rstate[5] = e_last
    rstate[6] = settled
    rstate[7] = fresh
    return nit, status, err
