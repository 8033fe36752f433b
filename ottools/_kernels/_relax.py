"""The over-relaxation rule of the scaling sweeps, one copy for every driver: the
Python driver of ``ottools._sinkhorn`` (through ``ottools._sweeps.Relaxation``) and the
batches' kernel (``_batch._solve_one``).

Plain sweeps first; the linear rate ``kappa`` of their errors sets
``omega = min(OMEGA_MAX, 2 / (1 + sqrt(1 - kappa)))`` (Thibault et al. 2021). The first
decision comes after ``EARLY`` plain sweeps and relaxes only if the rate has settled (the
last two single-step rates agree: their ``1 - r`` within ``SETTLED_WITHIN`` relative);
the rate of the first sweeps still grows towards the asymptotic one, so the decision takes
``1 - kappa = EARLY_BOOST (1 - r)``, erring towards a larger ``omega``: past the optimum
the relaxed rate degrades gently (as ``omega - 1``), below it steeply. Otherwise
the next decision comes after ``FIRST`` sweeps, on the rate of the last 10. Relaxing
early matters: each sweep before it removes less error than a relaxed one, and the
switch itself costs a transient of a few sweeps wherever it happens (at n = 4000,
reg 1e-2 with KL-relaxed marginals: 25 sweeps to 1e-6 instead of 33 with a decision after
10 sweeps on the rate of 3-sweep spans; on a grid of 75 balanced and unbalanced
problems, none took more sweeps, and a batch of 200 took 24 % fewer). Decisions then
follow every ``DECIDE`` sweeps: :func:`update` returns the sweeps to wait. While relaxed,
each block's rate ``lam`` refines ``kappa`` through Young's relation for 2-cyclic
iterations, ``kappa = (lam + omega - 1)**2 / (lam omega**2)``, and ``omega`` grows to its
optimum.
Safeguard: if the error grows 100-fold, or has not decreased over the last 5 blocks,
plain Sinkhorn resumes and the rate is estimated again (after the third failure, plain
Sinkhorn for good).

The state is a float64 array ``[omega, enabled, fails, best, settled, nchecks]``
(:func:`new_state`) and a ring ``checks`` of the last 6 block-end errors since relaxing.
"""

import numpy as np

from ._jit import jit

EARLY = 7      # plain sweeps before the first decision (relax if the rate has settled)
FIRST = 20     # plain sweeps before the rate estimate when it had not settled at EARLY
SETTLED_WITHIN = 0.1
EARLY_BOOST = 0.7  # the first decision's 1 - kappa, as a fraction of the observed 1 - r
DECIDE = 10    # sweeps between two decisions
OMEGA_MAX = 1.9

OMEGA, ENABLED, SETTLED = 0, 1, 4  # fields of the state read by the drivers


@jit
def new_state(enabled):
    """``(state, checks)`` of a rule that has not decided yet (``omega = 1``)."""
    st = np.zeros(6)
    st[OMEGA] = 1.0
    st[ENABLED] = 1.0 if enabled else 0.0
    st[3] = np.inf
    return st, np.empty(6)


@jit
def rate(e, i0, i1):
    """``(e[i1-1] / e[i0]) ** (1 / (i1 - i0 - 1))`` (NaN when not computable)."""
    if i1 - i0 < 2 or not (e[i0] > 0.0 and e[i1 - 1] > 0.0):
        return np.nan
    return (e[i1 - 1] / e[i0]) ** (1.0 / (i1 - i0 - 1))


@jit
def from_rate(kappa):
    """The optimal ``omega`` of a plain-sweep rate ``kappa`` (1 when not in (0, 1))."""
    if not (0.0 < kappa < 1.0):
        return 1.0
    return min(OMEGA_MAX, 2.0 / (1.0 + np.sqrt(1.0 - kappa)))


@jit
def early_rate(win, nw):
    """``1 - EARLY_BOOST (1 - r)`` for the rate ``r`` of the last step of ``win[:nw]``,
    if the step before had the same rate (``1 - r`` within ``SETTLED_WITHIN`` relative),
    else NaN."""
    if nw < 3:
        return np.nan
    r1 = rate(win, nw - 3, nw - 1)
    r2 = rate(win, nw - 2, nw)
    if 0.0 < r1 < 1.0 and 0.0 < r2 < 1.0 and abs(r2 - r1) <= SETTLED_WITHIN * (1.0 - r2):
        return 1.0 - EARLY_BOOST * (1.0 - r2)
    return np.nan


@jit
def update(st, chk, win, nw, early):
    """Adjust the state after a block whose finite errors (in order) are ``win[:nw]``;
    ``early``: the decision after the first ``EARLY`` plain sweeps of a driver's stage.
    Returns the number of sweeps before the next decision."""
    if st[1] == 0.0 or nw < 2:
        return DECIDE
    last = win[nw - 1]
    if st[0] == 1.0:
        if early and st[2] == 0.0:
            kappa = early_rate(win, nw)
            if not kappa > 0.0:
                return FIRST - EARLY
        else:
            kappa = rate(win, max(0, nw - 11), nw)
        w = from_rate(kappa)
        if w > 1.0:
            st[0], st[3], st[4], st[5] = w, last, 0.0, 1.0
            chk[0] = last
        return DECIDE
    nc = int(st[5])
    bad = not (last <= 100.0 * st[3])
    if nc >= 5 and not last < chk[(nc - 5) % 6]:
        bad = True
    chk[nc % 6] = last
    st[5] = nc + 1
    st[3] = min(st[3], last)
    if bad:
        st[0] = 1.0
        st[2] += 1.0
        st[1] = 1.0 if st[2] < 3.0 else 0.0
        return DECIDE
    st[4] += 1.0
    lam = rate(win, 0, nw)
    if st[4] >= 2.0 and 0.0 < lam < 1.0:
        w = st[0]
        w_new = from_rate((lam + w - 1.0) ** 2 / (lam * w * w))
        if w_new > w + 1e-3:
            st[0] = w_new
            st[4] = 0.0
    return DECIDE


@jit
def fail(st):
    """A relaxed step under/overflowed: plain Sinkhorn from here on."""
    st[0] = 1.0
    st[1] = 0.0
