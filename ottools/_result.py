"""Result object, status codes and warnings shared by every ottools solver.

``OTResult`` subclasses :class:`scipy.optimize.OptimizeResult`, and importing
:mod:`scipy.optimize` costs more than the rest of ``import ottools`` together, so the class
is defined on first access (PEP 562 module ``__getattr__``): by the first solver that
returns a result, or by ``ottools.OTResult``. Solvers build results through
:func:`make_result`.
"""

import threading

__all__ = ["OTResult", "OTWarning", "OTConvergenceWarning", "STATUS_MESSAGES"]

# Status table (listed in every solver's Returns section, as scipy.optimize.linprog does).
CONVERGED = 0
MAXITER = 1
NONFINITE = 2
CALLBACK = 3
STALLED = 4
CERTIFIED = 5

STATUS_MESSAGES = {
    CONVERGED: "Converged: the marginal error is at most tol.",
    MAXITER: (
        "Maximum number of iterations reached before the marginal error fell below tol; "
        "increase maxiter, loosen tol, or increase reg."
    ),
    NONFINITE: (
        "Non-finite values appeared (underflow or overflow); the last finite iterate is "
        "returned. Use method='log' or a larger reg."
    ),
    CALLBACK: "Stopped by the callback (StopIteration).",
    STALLED: (
        "Stalled before the marginal error fell below tol: at the rounding floor of the "
        "dtype, or at a point the solver cannot improve; loosen tol."
    ),
    CERTIFIED: (
        "The dual objective is certified maximal, but the plan built from it misses the "
        "marginals by more than tol (the relaxation is not tight for this problem)."
    ),
}


_RESULT_DOC = """Result of an ottools solver.

    A ``dict`` with attribute access and SciPy's ``repr``: a subclass of
    :class:`scipy.optimize.OptimizeResult`, so ``res.success``, ``res.fun``
    and ``res.message`` work as in :mod:`scipy.optimize`. The fields of each
    solver are listed in its Returns section. Every iterative solver fills

    ``fun``, ``cost``, ``plan``, ``f``, ``g``, ``nit``, ``err``, ``success``,
    ``status``, ``message`` and ``method``.

    Status codes: 0 converged, 1 ``maxiter`` reached, 2 non-finite values
    (the last finite iterate is returned), 3 stopped by ``callback``, 4 stalled above
    ``tol`` (rounding floor of the dtype, or no further progress possible), 5 the dual is
    certified maximal but its plan misses the marginals by more than ``tol`` (sparse OT).
    ``success`` is True only for status 0.
    """


_DEFINE_LOCK = threading.Lock()


def _define_result_class():
    # One class per process, even when two threads return their first result together.
    with _DEFINE_LOCK:
        cls = globals().get("OTResult")
        if cls is None:
            from scipy.optimize import OptimizeResult

            cls = type("OTResult", (OptimizeResult,),
                       {"__doc__": _RESULT_DOC, "__module__": __name__})
            globals()["OTResult"] = cls  # later lookups no longer reach __getattr__
        return cls


def __getattr__(name):
    if name == "OTResult":
        return _define_result_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_result(**fields):
    """An :class:`OTResult` holding ``fields`` (defines the class on first use)."""
    cls = globals().get("OTResult") or _define_result_class()
    return cls(**fields)


def solver_result(status, *, err, tol, nit, method, message=None, **fields):
    """The one result builder of the iterative solvers: ``success``, ``status``,
    ``message`` (from the status table unless given), ``err``, ``nit``, ``method`` and the
    solver's own ``fields``."""
    if message is None:
        message = status_message(status, err=float(err), tol=float(tol), nit=int(nit))
    return make_result(success=status == CONVERGED, status=int(status), message=message,
                       err=float(err), nit=int(nit), method=method, **fields)


class OTWarning(UserWarning):
    """Base class of the warnings ottools emits."""


class OTConvergenceWarning(OTWarning):
    """A solver did not converge and its return value cannot carry a status."""


def status_message(status, **details):
    """The message of ``status``, with ``details`` (e.g. err, tol) appended."""
    msg = STATUS_MESSAGES[status]
    if details:
        extra = ", ".join(f"{k}={_fmt(v)}" for k, v in details.items())
        msg = f"{msg} ({extra})"
    return msg


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
