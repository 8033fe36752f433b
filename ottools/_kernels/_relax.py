"""The over-relaxation rule of the scaling sweeps, one copy for every driver: the
Python driver of ``ottools._sinkhorn`` (through ``ottools._sweeps.Relaxation``) and the
batches' kernel (``_batch._solve_one``).

Plain sweeps first (``FIRST`` of them); the linear rate ``kappa`` of their errors sets
``omega = min(OMEGA_MAX, 2 / (1 + sqrt(1 - kappa)))`` (Thibault et al. 2021). Decisions
follow every ``DECIDE`` sweeps. While relaxed, each block's rate ``lam`` refines ``kappa``
through Young's relation for 2-cyclic iterations,
``kappa = (lam + omega - 1)**2 / (lam omega**2)``, and ``omega`` grows to its optimum.
Safeguard: if the error grows 100-fold, or has not decreased over the last 5 blocks,
plain Sinkhorn resumes and the rate is estimated again (after the third failure, plain
Sinkhorn for good).

The state is a float64 array ``[omega, enabled, fails, best, settled, nchecks]``
(:func:`new_state`) and a ring ``checks`` of the last 6 block-end errors since relaxing.
"""

import numpy as np

from ._jit import jit

FIRST = 20     # plain sweeps before the first rate estimate
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
def update(st, chk, win, nw):
    """Adjust the state after a block whose finite errors (in order) are ``win[:nw]``."""
    if st[1] == 0.0 or nw < 2:
        return
    last = win[nw - 1]
    if st[0] == 1.0:
        w = from_rate(rate(win, max(0, nw - 11), nw))
        if w > 1.0:
            st[0], st[3], st[4], st[5] = w, last, 0.0, 1.0
            chk[0] = last
        return
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
        return
    st[4] += 1.0
    lam = rate(win, 0, nw)
    if st[4] >= 2.0 and 0.0 < lam < 1.0:
        w = st[0]
        w_new = from_rate((lam + w - 1.0) ** 2 / (lam * w * w))
        if w_new > w + 1e-3:
            st[0] = w_new
            st[4] = 0.0


@jit
def fail(st):
    """A relaxed step under/overflowed: plain Sinkhorn from here on."""
    st[0] = 1.0
    st[1] = 0.0
