"""Unbalanced Sinkhorn sweeps: KL-relaxed marginals in the absorption-stabilized form.

Problem: ``<P, C> + eps KL(P | a x b) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)``. The
update of ``f`` is the balanced c-transform damped by ``tau_a = rho_a / (rho_a + eps)``
(Chizat, Peyré, Schmitzer, Vialard 2018): ``f_i <- -tau_a eps log sum_j b_j
exp((g_j - C_ij) / eps)``. With the plan written ``P = diag(u) K diag(v)``,
``K = exp((F_i + G_j - C_ij) / eps)`` for absorbed potentials ``F``, ``G`` and
``u_i = a_i exp((f_i - F_i) / eps)``, the update reads

``log(u_i / a_i) = -F_i / (rho_a + eps) - tau_a log (K v)_i``

(``pa_i = -F_i / (rho_a + eps)`` is precomputed after each absorption; one log and one
exp per row, the pass over ``K`` is the balanced one). At the optimum the row sums are
``a_i exp(-f_i / rho_a)``: the error of a state is the L1 norm of the dual's gradient,
``sum_i |P1_i - a_i exp(-f_i / rho_a)| + (same for the columns)``, with
``log(target_i / a_i) = qa_i - (eps / rho_a) log(u_i / a_i)``, ``qa_i = -F_i / rho_a``.
It equals ``sum_i t_i |exp((f_i - f_i^new) / (tau_a eps)) - 1|``, a weighted change of
the potentials between sweeps. ``rho = inf`` gives ``tau = 1``, ``pa = qa = 0``: the
balanced sweep. Return codes are those of ``ottools._kernels._codes``.
"""

import numpy as np
from numba import prange

from ._codes import BUDGET, DONE, NONFINITE, OUT_OF_RANGE
from ._jit import jit
from ._sinkhorn import commit_scalings, relax_coefficients, relaxed, row_pass


@jit
def _ub_rows(K, vk, u, a, pa, qa, tau, kr, unew, t, r0, r1, omega):
    """Rows ``r0:r1`` of one unbalanced sweep (``_sinkhorn.row_pass`` with the damped
    update): ``unew`` (over-relaxed when ``omega != 1``) and ``t = sum_i unew_i K_i``
    (overwritten). Returns ``(e, ok)``: the row error of the entry state and whether
    every new scaling is finite and positive."""
    return row_pass(K, vk, u, a, unew, t, r0, r1, omega, True, pa, qa, tau, kr)


@jit(parallel=True)
def _ub_blocks(K, vk, u, a, pa, qa, tau, kr, unew, t, T, E, omega):
    """:func:`_ub_rows` in ``T.shape[0]`` parallel row blocks, summed into ``t``."""
    n, m = K.shape
    nc = T.shape[0]
    for c in prange(nc):
        ec, okc = _ub_rows(K, vk, u, a, pa, qa, tau, kr, unew, T[c], c * n // nc,
                           (c + 1) * n // nc, omega)
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
def _ub_columns(b, t, s, pb, qb, tau, kc, v, omega):
    """Column half: ``s_j = b_j exp(pb_j - tau log t_j)`` (over-relaxed from ``v`` when
    ``omega != 1``); returns ``(ok, ce)`` with the column error of the new state (zero up
    to rounding without relaxation: the damped c-transform is exact)."""
    relax = omega != 1.0
    c = relax_coefficients(omega)
    ok = True
    ce = 0.0
    for j in range(b.shape[0]):
        sj = b[j] * np.exp(pb[j] - tau * np.log(t[j]))
        if relax:
            sj = relaxed(v[j], sj, omega, c)
        if not (np.isfinite(sj) and sj > 0.0):
            ok = False
        s[j] = sj
        ce += abs(sj * t[j] - b[j] * np.exp(qb[j] - kc * np.log(sj / b[j])))
    return ok, ce


@jit
def _translate(u, v, a, b, pa, qa, pb, qb, ka, kb, ia, ib, reg, shift):
    """The translation-invariant step (Séjourné, Vialard, Peyré 2022): the dual is
    maximised exactly along ``(f + t, g - t)``, which leaves ``f_i + g_j`` and so the
    entropic term unchanged: ``t = log(A / B) / (1 / rho_a + 1 / rho_b)`` with
    ``A = sum_i a_i exp(-f_i / rho_a)`` and ``B = sum_j b_j exp(-g_j / rho_b)``
    (``ia = 1 / rho_a``, ``ib = 1 / rho_b``; ``A = sum(a)`` for a hard side). It removes
    the slow mode of the damped iterations when ``rho`` is large against ``eps``.

    The step moves the absorbed potentials, ``F + t`` and ``G - t``: ``K`` and the
    scalings stay as they are (``t / eps`` may be far beyond what a scaling holds: masses
    1 and 1.3 with ``rho = 10`` give ``t = -1.31``, ``exp(t / eps) = 0`` at ``eps = 1e-3``),
    the constants ``pa``, ``qa``, ``pb``, ``qb`` follow, and ``shift[0]`` accumulates
    ``t`` for the caller, which adds it to ``F`` and subtracts it from ``G``. Returns
    ``t`` (0 when not finite)."""
    A = 0.0
    for i in range(u.shape[0]):
        A += a[i] * np.exp(qa[i] - ka * np.log(u[i] / a[i]))
    B = 0.0
    for j in range(v.shape[0]):
        B += b[j] * np.exp(qb[j] - kb * np.log(v[j] / b[j]))
    t = np.log(A / B) / (ia + ib)
    if not np.isfinite(t):
        return 0.0
    if ia > 0.0:
        da, dq = t / (1.0 / ia + reg), t * ia
        for i in range(u.shape[0]):
            pa[i] -= da
            qa[i] -= dq
    if ib > 0.0:
        db, dq = t / (1.0 / ib + reg), t * ib
        for j in range(v.shape[0]):
            pb[j] += db
            qb[j] += dq
    shift[0] += t
    return t


@jit
def _ub_tail(e, ok, it, check_first, cerr, errs, tol, b, t, s, pa, qa, pb, qb, tau_b, ka, kb,
             ia, ib, reg, u, unew, v, a, bound, omega, shift):
    checked = it > 0 or check_first
    e += cerr[0]
    errs[it] = e if checked else np.inf
    if checked and e <= tol:
        return DONE
    if not ok:
        return NONFINITE
    ok, ce = _ub_columns(b, t, s, pb, qb, tau_b, kb, v, omega)
    if not ok:
        return NONFINITE
    out = commit_scalings(u, unew, v, s, a, b, bound)
    if ia > 0.0 or ib > 0.0:
        if _translate(u, v, a, b, pa, qa, pb, qb, ka, kb, ia, ib, reg, shift) != 0.0:
            # The plan is unchanged; the column targets moved with g: the column error
            # of the new state is recomputed.
            ce = 0.0
            for j in range(v.shape[0]):
                ce += abs(v[j] * t[j] - b[j] * np.exp(qb[j] - kb * np.log(v[j] / b[j])))
    cerr[0] = ce
    if out:
        return OUT_OF_RANGE
    return BUDGET


@jit
def unbalanced_sweep(K, a, b, u, v, pa, qa, pb, qb, tau_a, ka, tau_b, kb, ia, ib, reg, bound,
                     tol, maxiter, check_first, cerr, errs, s, t, unew, vk, omega, shift):
    """Unbalanced sweeps in place (serial; :func:`unbalanced_sweep_par` runs row blocks in
    parallel). Arguments and returns as ``_sinkhorn.scaling_sweep`` (``omega`` and
    ``shift`` last), plus the per-row/column constants of the module note: ``pa``, ``qa``
    (n,), ``pb``, ``qb`` (m,), ``tau_a``, ``tau_b``, ``ka = eps / rho_a``,
    ``kb = eps / rho_b``, ``ia = 1 / rho_a``, ``ib = 1 / rho_b`` and ``reg = eps``; each
    iteration ends with the translation-invariant step (:func:`_translate`) when a
    marginal is relaxed, which updates the constants in place and adds its translation
    to ``shift[0]`` (the caller's absorbed potentials become ``F + shift``,
    ``G - shift``)."""
    n = K.shape[0]
    m = K.shape[1]
    for it in range(maxiter):
        for j in range(m):
            vk[j] = v[j]
        e, ok = _ub_rows(K, vk, u, a, pa, qa, tau_a, ka, unew, t, 0, n, omega)
        code = _ub_tail(e, ok, it, check_first, cerr, errs, tol, b, t, s, pa, qa, pb, qb,
                        tau_b, ka, kb, ia, ib, reg, u, unew, v, a, bound, omega, shift)
        if code == DONE or code == NONFINITE:
            return it, code
        if code == OUT_OF_RANGE:
            return it + 1, code
    return maxiter, BUDGET


@jit
def unbalanced_sweep_par(K, a, b, u, v, pa, qa, pb, qb, tau_a, ka, tau_b, kb, ia, ib, reg,
                         bound, tol, maxiter, check_first, cerr, errs, s, t, unew, vk, T, E,
                         omega, shift):
    """:func:`unbalanced_sweep` with each pass in ``T.shape[0]`` parallel row blocks."""
    m = K.shape[1]
    for it in range(maxiter):
        for j in range(m):
            vk[j] = v[j]
        e, ok = _ub_blocks(K, vk, u, a, pa, qa, tau_a, ka, unew, t, T, E, omega)
        code = _ub_tail(e, ok, it, check_first, cerr, errs, tol, b, t, s, pa, qa, pb, qb,
                        tau_b, ka, kb, ia, ib, reg, u, unew, v, a, bound, omega, shift)
        if code == DONE or code == NONFINITE:
            return it, code
        if code == OUT_OF_RANGE:
            return it + 1, code
    return maxiter, BUDGET
