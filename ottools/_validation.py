"""Validation helpers used once, at the public boundary. Each names the argument."""

import math
import operator
import sys

import numpy as np

__all__ = []


def _reject_tensor(x, name):
    """Raise TypeError for torch tensors (gradients would be dropped silently)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        raise TypeError(
            f"`{name}` is a torch.Tensor; the NumPy API would drop its gradient. "
            "Use the differentiable functions in `ottools.torch` instead, or pass "
            "`tensor.detach().cpu().numpy()`."
        )


def _as_float_array(x, name, *, ndim=None, dtype=None):
    """`x` as a float ndarray (ints and bools become float64); checks ``ndim``."""
    _reject_tensor(x, name)
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists, objects numpy cannot hold
        raise TypeError(f"`{name}` must be array-like of numbers; {exc}") from None
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise TypeError(f"`{name}` must hold real numbers; got dtype {arr.dtype}.")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-D; got shape {arr.shape}.")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def _result_dtype(*arrays):
    """Common float dtype: float32 stays float32, ints become float64."""
    present = [a for a in arrays if a is not None]
    dt = np.result_type(*present, np.float32) if present else np.dtype(np.float64)
    if dt not in (np.float32, np.float64):
        dt = np.dtype(np.float64)
    return np.dtype(dt)


def _check_weights(w, n, name, dtype=np.float64):
    """Weights of length ``n``: finite, non-negative, positive sum; None -> uniform."""
    if w is None:
        return np.full(n, 1.0 / n, dtype=dtype)
    arr = _as_float_array(w, name, ndim=1)
    if arr.shape[0] != n:
        raise ValueError(f"`{name}` must have length {n} to match the data; got {arr.shape[0]}.")
    if arr.shape[0] == 0:
        raise ValueError(f"`{name}` must not be empty.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite; got NaN or inf.")
    if np.any(arr < 0):
        raise ValueError(f"`{name}` must be non-negative; got min {arr.min():.3g}.")
    if not arr.sum() > 0:
        raise ValueError(f"`{name}` must have a positive sum.")
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_balanced(a, b, names=("a", "b"), rtol=1e-6):
    """Balanced problems: total masses must agree to ``rtol`` (relative).

    Returns ``b`` rescaled onto the mass of ``a``: a gap below ``rtol`` is rounding (float32
    weights, normalized data), and left in place it would keep the marginal error above
    any ``tol`` smaller than the gap.
    """
    sa, sb = float(np.sum(a, dtype=np.float64)), float(np.sum(b, dtype=np.float64))
    if abs(sa - sb) > rtol * max(sa, sb):
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same total mass (relative "
            f"tolerance {rtol:g}); got {sa:.9g} and {sb:.9g}. Normalize them first."
        )
    if abs(sa - sb) <= 64 * np.finfo(np.float64).eps * max(sa, sb):
        return b  # float64 rounding of the sums: nothing to fix
    return np.ascontiguousarray(b.astype(np.float64) * (sa / sb), dtype=b.dtype)


def _check_cost(cost, name="cost"):
    """A non-empty, finite 2-D float array."""
    arr = _as_float_array(cost, name, ndim=2)
    if arr.size == 0:
        raise ValueError(f"`{name}` must not be empty; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise ValueError(f"`{name}` must be finite; got {bad}.")
    return arr


def _check_points(x, name):
    """Samples as a non-empty, finite (n, d) array; 1-D input is read as (n, 1)."""
    arr = _as_float_array(x, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array (n, d); got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"`{name}` must not be empty; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite; got NaN or inf.")
    return arr


def _check_positive(x, name, *, allow_zero=False):
    """A finite real number > 0 (or >= 0 with ``allow_zero``), returned as float."""
    _reject_tensor(x, name)
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        if not (isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "iuf"):
            raise TypeError(f"`{name}` must be a real number; got {type(x).__name__}.")
    val = float(x)
    ok = math.isfinite(val) and (val >= 0 if allow_zero else val > 0)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be a {kind} finite number; got {val!r}.")
    return val


def _check_int(x, name, *, minimum=None):
    """An integer (``operator.index``: NumPy integers accepted, floats refused)."""
    _reject_tensor(x, name)
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an integer; got bool.")
    try:
        val = operator.index(x)
    except TypeError:
        raise TypeError(f"`{name}` must be an integer; got {type(x).__name__} {x!r}.") from None
    if minimum is not None and val < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {val}.")
    return val


def _check_method(method, valid, name="method"):
    """Lower-cased method name, or ValueError listing the valid ones."""
    if not isinstance(method, str):
        raise TypeError(f"`{name}` must be a string; got {type(method).__name__}.")
    m = method.lower()
    if m not in valid:
        raise ValueError(f"Unknown {name} {method!r}; valid: {', '.join(map(repr, valid))}.")
    return m


def _check_options(options, valid, where):
    """A copy of ``options`` (dict); TypeError naming unknown keys and the valid ones."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"`options` must be a dict; got {type(options).__name__}.")
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"Unknown option(s) {', '.join(map(repr, unknown))} for {where}; valid: "
            f"{', '.join(map(repr, sorted(valid))) or 'none'}."
        )
    return dict(options)


def _check_callback(callback):
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable or None; got {type(callback).__name__}.")
    return callback


def _check_point_pair(x, y, names=("x", "y")):
    """Two point clouds (n, d) and (m, d) of the same dimension, via `_check_points`."""
    x = _check_points(x, names[0])
    y = _check_points(y, names[1])
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same dimension; got shapes "
            f"{x.shape} and {y.shape}."
        )
    return x, y


# Default ``tol`` (marginal error, L1) per working dtype: float32 cannot reach 1e-9.
DEFAULT_TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}


def _check_tol(tol, dtype):
    """``tol`` as a float >= 0; ``None`` gives the per-dtype default (DEFAULT_TOL)."""
    if tol is None:
        return DEFAULT_TOL[np.dtype(dtype)]
    return _check_positive(tol, "tol", allow_zero=True)


def _check_rng(rng, name="rng"):
    """``numpy.random.default_rng(rng)`` (SPEC 7), with a TypeError naming ``rng``."""
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"`{name}` must be None, an int seed, a SeedSequence, a BitGenerator or a "
            f"Generator; got {type(rng).__name__} ({exc})."
        ) from None
