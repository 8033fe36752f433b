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

from ._jit import FASTMATH_SAFE, jit
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
def plan_from_potentials(loga, logb, cost, reg, f, g):
    """``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)`` with its marginals.

    Returns ``(P, rows, cols, lin, plogr)`` with ``rows``/``cols`` the marginals
    (float64 accumulators, summed from the stored ``P``), ``lin = <P, C>`` and
    ``plogr = sum P_ij (f_i + g_j - C_ij)/reg`` (so that
    ``KL(P | a x b) = plogr - sum(P) + sum(a) sum(b)``). The returned plan, and so the
    reported ``err``, use libm's ``exp`` (not the polynomial of the iterations);
    ``FASTMATH_SAFE`` lets the sums vectorize.
    """
    n, m = cost.shape
    inv = 1.0 / reg
    P = np.empty((n, m), dtype=cost.dtype)
    rows = np.zeros(n, dtype=np.float64)
    cols = np.zeros(m, dtype=np.float64)
    z = np.empty(m, dtype=np.float64)
    lin = 0.0
    plogr = 0.0
    for i in range(n):
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
    return P, rows, cols, lin, plogr


@jit(fastmath=FASTMATH_SAFE)
def scaling_sweep(K, a, b, u, v, bound, omega, tol, maxiter, check_first, cerr, s, t, unew,
                  vk, uk):
    """Fused scaling iterations ``u <- a / (K v)``, ``v <- b / (K^T u)``, in place.

    One pass over the rows of ``K`` per iteration: row ``i`` gives ``(K v)_i``, hence
    ``u_i``, and, while still in cache, adds ``u_i K_i`` to ``K^T u``; ``K`` (float32 or
    float64) is read once per iteration instead of twice. ``u``, ``v`` and ``K^T u`` are
    float64; the row dot products ``K_i . v`` and the products ``K_ij u_i`` run in ``K``'s
    dtype (``vk``, length m, and ``uk``, length 1, hold ``v`` and ``u_i`` in that dtype):
    for float32 this keeps the loop at 16 lanes instead of widening every entry, about
    1.5x faster (a float32 row sum of ``m`` terms in vectorized partial sums: relative
    error ~1e-7, below float32's err floor). ``s``, ``t``, ``unew`` are work arrays
    (m, m, n). ``FASTMATH_SAFE`` (reassociation, no ``nnan``/``ninf``/``afn``) lets the
    row dot products vectorize; the finiteness checks are kept.

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
            t[j] = 0.0
            vk[j] = v[j]
        e = 0.0
        ok = True
        for i in range(n):
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
def build_kernel(cost, f, g, reg, K, x, work):
    """``K_ij = exp((f_i + g_j - C_ij) / reg)`` with the vectorized exponential.

    ``x`` and ``work`` are float64 work arrays of length m.
    """
    n, m = cost.shape
    inv = 1.0 / reg
    for i in range(n):
        fi = f[i]
        for j in range(m):
            x[j] = (fi + g[j] - cost[i, j]) * inv
        exp_into(x, K[i], work)


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
                        check_first, bound, cerr, relax, omega_max, rstate):
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
    """
    n, m = cost.shape
    s = np.empty(m)
    t = np.empty(m)
    unew = np.empty(n)
    vk = np.empty(m, dtype=K.dtype)
    uk = np.empty(1, dtype=K.dtype)
    x = np.empty(m)
    work = np.empty(m)
    nit = 0
    status = 1
    err = np.inf
    omega = rstate[0]
    e_prev = rstate[1]
    fails = int(rstate[2])
    since = int(rstate[3])
    done = int(rstate[4])
    if fails >= 3:
        relax = False
    block = 10 if relax else maxiter
    while nit < maxiter:
        todo = min(block - done, maxiter - nit) if relax else maxiter - nit
        k, status, err = scaling_sweep(K, a, b, u, v, bound, omega, tol, todo,
                                       check_first, cerr, s, t, unew, vk, uk)
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
                    e_prev = err
                else:
                    since += 1
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
            continue
        absorb(f, g, u, v, a, b, reg)
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
        build_kernel(cost, f, g, reg, K, x, work)
    rstate[0] = omega
    rstate[1] = e_prev
    rstate[2] = fails
    rstate[3] = since
    rstate[4] = done
    return nit, status, err
