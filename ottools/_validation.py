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
            f"`{name}` is a torch.Tensor, which this argument does not take: pass a "
            f"number or a NumPy array (`tensor.item()`, `tensor.detach().cpu().numpy()`). "
            f"To differentiate, use `ottools.torch`, whose functions take tensors for the "
            f"points, weights, costs and regularization."
        )


def _reject_sparse(x, name, alternative=""):
    """Raise TypeError for a SciPy sparse matrix or array, which NumPy would wrap as a
    0-D object array; ``alternative`` names other accepted input after the dense array
    (e.g. ``" or an ottools.PointCloud"``)."""
    sparse = sys.modules.get("scipy.sparse")  # (not imported: x cannot be one)
    if sparse is not None and sparse.issparse(x):
        # (a sparse vector is 2-D: its dense array is `.toarray().ravel()`)
        dense = f"{name}.toarray()" if min(x.shape) != 1 else f"{name}.toarray().ravel()"
        raise TypeError(
            f"`{name}` is a scipy.sparse {type(x).__name__}, which is not accepted: pass "
            f"a dense NumPy array (`{dense}`){alternative}."
        )


def _check_ragged(x, name):
    """Raise ValueError naming the first member of a list or tuple ``x`` whose shape
    differs from the first member's (a batch given as a list of arrays of several
    shapes); return quietly otherwise."""
    if not isinstance(x, (list, tuple)) or len(x) < 2:
        return
    try:
        first = np.shape(x[0])
    except Exception:
        return
    for k in range(1, len(x)):
        try:
            shape = np.shape(x[k])
        except Exception:
            continue  # itself ragged: numpy's message
        if shape != first:
            raise ValueError(f"`{name}[{k}]` has shape {shape} but `{name}[0]` has shape "
                             f"{first}: the members of a batch must share one shape.")


def _ndim(x, name):
    """``np.ndim(x)``; a ragged batch raises the error of :func:`_check_ragged`."""
    try:
        return np.ndim(x)
    except ValueError:
        _check_ragged(x, name)
        raise


def _as_float_array(x, name, *, ndim=None, dtype=None):
    """`x` as a float ndarray (ints and bools become float64); checks ``ndim``."""
    if type(x) is np.ndarray and x.dtype.kind == "f":
        arr = x  # (the common case: nothing to convert or reject)
    else:
        _reject_tensor(x, name)
        _reject_sparse(x, name)
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists, objects numpy cannot hold
            _check_ragged(x, name)
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


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _result_dtype(*arrays):
    """Common float dtype: float32 stays float32, ints become float64."""
    present = [a for a in arrays if a is not None]
    kinds = [getattr(a, "dtype", a) for a in present]  # (arrays or dtypes)
    if kinds and kinds.count(kinds[0]) == len(kinds) and kinds[0] in _FLOATS:
        return np.dtype(kinds[0])  # (the common case, without np.result_type's cost)
    dt = np.result_type(*present, np.float32) if present else np.dtype(np.float64)
    if dt not in (np.float32, np.float64):
        dt = np.dtype(np.float64)
    return np.dtype(dt)


def _check_weights(w, n, name, dtype=np.float64, *, against=None):
    """Weights of length ``n``: finite, non-negative, positive sum; None -> uniform.

    ``against`` describes what fixes ``n`` in the error message, e.g.
    ``"`cost` has shape (200, 10)"`` (default: "the data has n points").
    """
    if w is None:
        return np.full(n, 1.0 / n, dtype=dtype)
    arr = _as_float_array(w, name, ndim=1)
    if arr.shape[0] != n:
        why = against or f"the data has {n} points"
        raise ValueError(f"`{name}` must have length {n}: {why}, but `{name}` has length "
                         f"{arr.shape[0]}.")
    if arr.shape[0] == 0:
        raise ValueError(f"`{name}` must not be empty.")
    # Two reductions check everything: NaN propagates through min and max.
    lo, hi = arr.min(), arr.max()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"`{name}` must be finite; got NaN or inf.")
    if lo < 0:
        raise ValueError(f"`{name}` must be non-negative; got min {lo:.3g}.")
    if not hi > 0:  # (a positive sum; the sum itself may overflow)
        raise ValueError(f"`{name}` must have a positive sum.")
    return np.ascontiguousarray(arr, dtype=dtype)


_EPS64 = float(np.finfo(np.float64).eps)


def _check_balanced(a, b, names=("a", "b"), rtol=1e-6, hint=""):
    """Balanced problems: total masses must agree to ``rtol`` (relative).

    Returns ``b`` rescaled onto the mass of ``a``: a gap below ``rtol`` is rounding (float32
    weights, normalized data), and left in place it would keep the marginal error above
    any ``tol`` smaller than the gap.
    """
    sa, sb = float(a.sum(dtype=np.float64)), float(b.sum(dtype=np.float64))
    if abs(sa - sb) > rtol * max(sa, sb):
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same total mass (relative "
            f"tolerance {rtol:g}); got {sa:.9g} and {sb:.9g}. Normalize them first{hint}."
        )
    if abs(sa - sb) <= 64 * _EPS64 * max(sa, sb):
        return b  # float64 rounding of the sums: nothing to fix
    return np.ascontiguousarray(b.astype(np.float64) * (sa / sb), dtype=b.dtype)


# From this many entries, one kernel pass checks a cost and gives its range.
_EXTREMES_MIN_ENTRIES = 1 << 20


def _check_cost(cost, name="cost", extremes=None):
    """A non-empty, finite 2-D float array. ``extremes``: a list that receives the
    ``(min, max)`` of the array as floats, which come with the check (large C-contiguous
    arrays: one kernel pass; others: ``min`` and ``max``, through which NaN propagates)."""
    _reject_sparse(cost, name, " or an `ottools.PointCloud`")
    arr = _as_float_array(cost, name, ndim=2)
    if arr.size == 0:
        raise ValueError(f"`{name}` must not be empty; got shape {arr.shape}.")
    if arr.size >= _EXTREMES_MIN_ENTRIES and arr.flags.c_contiguous:
        from ._kernels import _extremes, _jit

        lo, hi, nan = _extremes.extremes(arr, _jit.row_chunks(*arr.shape))
        if nan or not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"`{name}` must be finite; got {'NaN' if nan else 'inf'}.")
    else:
        lo, hi = arr.min(), arr.max()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = "NaN" if np.isnan(arr).any() else "inf"
            raise ValueError(f"`{name}` must be finite; got {bad}.")
    if extremes is not None:
        extremes.append((float(lo), float(hi)))
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


def _check_rng(rng, name="rng", *, also=()):
    """``numpy.random.default_rng(rng)`` (SPEC 7), with a TypeError naming ``rng`` and what
    it accepts (``also``: further accepted types, listed last)."""
    try:
        if isinstance(rng, (bool, np.bool_)):  # (default_rng took True as the seed 1)
            raise TypeError("a bool is not a seed")
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
            raise ValueError(f"`{name}` must be a non-negative int seed; got {rng}.") from None
        kinds = ["None", "an int seed", "a SeedSequence", "a BitGenerator", "a Generator",
                 *also]
        raise TypeError(
            f"`{name}` must be {', '.join(kinds[:-1])} or {kinds[-1]}; got "
            f"{_type_name(rng)} ({exc})."
        ) from None


def _type_name(x):
    """``type(x).__name__``, qualified by its module outside NumPy and the builtins (a
    ``torch.Generator`` read as "Generator" beside "a Generator" accepted)."""
    t = type(x)
    mod = t.__module__.split(".")[0]
    return t.__name__ if mod in ("builtins", "numpy") else f"{mod}.{t.__name__}"


def _check_bool(x, name):
    """A genuine boolean (Python or NumPy): strings such as "no" are refused, not truthy."""
    _reject_tensor(x, name)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    raise TypeError(f"`{name}` must be True or False; got {type(x).__name__} {x!r}.")


def _check_linear_problem(a, b, cost, *, balanced=True, mass_rtol=1e-6,
                          names=("a", "b", "cost"), hint="", extremes=None):
    """The data of a linear OT problem: ``(a, b, cost, dtype)``, validated once.

    ``cost`` a non-empty finite (n, m) array; ``a``, ``b`` weights of lengths n and m
    (``None``: uniform) that are finite, non-negative with positive sums; ``dtype`` the
    common float dtype (float32 stays float32, ints become float64). With ``balanced``
    the masses must agree to ``mass_rtol`` (relative) and ``b`` is rescaled onto the mass
    of ``a`` when they differ by rounding (see :func:`_check_balanced`). ``extremes``:
    see :func:`_check_cost`.
    """
    na, nb, nc = names
    geometry = getattr(cost, "_ottools_geometry", False)  # a PointCloud: validated already
    if not geometry:
        cost = _check_cost(cost, nc, extremes)
    n, m = cost.shape
    a_arr = None if a is None else _as_float_array(a, na, ndim=1)
    b_arr = None if b is None else _as_float_array(b, nb, ndim=1)
    dtype = _result_dtype(cost.dtype, a_arr, b_arr)
    a = _check_weights(a_arr, n, na, dtype,
                       against=f"`{nc}` has shape {cost.shape} ({n} rows)")
    b = _check_weights(b_arr, m, nb, dtype,
                       against=f"`{nc}` has shape {cost.shape} ({m} columns)")
    if balanced:
        b = _check_balanced(a, b, (na, nb), rtol=mass_rtol, hint=hint)
    if geometry:
        return a, b, cost, dtype
    return a, b, np.ascontiguousarray(cost, dtype=dtype), dtype


def _check_samples(x, y, a=None, b=None, *, names=("x", "y", "a", "b")):
    """Two weighted point clouds: ``(x, y, a, b, dtype)``.

    ``x`` (n, d) and ``y`` (m, d) finite and non-empty (1-D input is read as points in
    1-D), cast to the common dtype; ``a`` and ``b`` validated weights in that dtype, or
    ``None`` where given as ``None`` (uniform).
    """
    nx, ny, na, nb = names
    x, y = _check_point_pair(x, y, (nx, ny))
    a_arr = None if a is None else _as_float_array(a, na, ndim=1)
    b_arr = None if b is None else _as_float_array(b, nb, ndim=1)
    dtype = _result_dtype(x, y, a_arr, b_arr)
    if a_arr is not None:
        a_arr = _check_weights(a_arr, x.shape[0], na, dtype,
                               against=f"`{nx}` has {x.shape[0]} points")
    if b_arr is not None:
        b_arr = _check_weights(b_arr, y.shape[0], nb, dtype,
                               against=f"`{ny}` has {y.shape[0]} points")
    return (np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(y, dtype=dtype),
            a_arr, b_arr, dtype)


# ----------------------------------------------------------------------------- options
class _Option:
    """One entry of a solver's option table: a default and a checker.

    ``kind``: "int" (``minimum``), "float" (an interval given by ``lo``/``hi`` with
    ``lo_open``/``hi_open``), "bool", or "choice" (``choices``). ``none_ok``: ``None`` is
    a valid value (meaning "derived from the problem").
    """

    __slots__ = ("kind", "default", "lo", "hi", "lo_open", "hi_open", "none_ok", "choices")

    def __init__(self, kind, default, *, lo=None, hi=None, lo_open=False, hi_open=False,
                 none_ok=False, choices=()):
        self.kind, self.default = kind, default
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        self.none_ok, self.choices = none_ok, choices

    def check(self, value, name):
        if value is None and self.none_ok:
            return None
        if self.kind == "bool":
            return _check_bool(value, name)
        if self.kind == "choice":
            return _check_method(value, self.choices, name=name)
        if self.kind == "int":
            return _check_int(value, name, minimum=self.lo)
        val = _check_real(value, name)
        lo_bad = self.lo is not None and (val <= self.lo if self.lo_open else val < self.lo)
        hi_bad = self.hi is not None and (val >= self.hi if self.hi_open else val > self.hi)
        if lo_bad or hi_bad:
            left = "(" if self.lo_open or self.lo is None else "["  # (inf: never finite)
            right = ")" if self.hi_open or self.hi is None else "]"
            lo = "-inf" if self.lo is None else f"{self.lo:g}"
            hi = "inf" if self.hi is None else f"{self.hi:g}"
            raise ValueError(f"`{name}` must be in {left}{lo}, {hi}{right}; got {val!r}.")
        return val


def _check_real(x, name):
    """A finite real number (any sign), returned as float."""
    _reject_tensor(x, name)
    if isinstance(x, (bool, np.bool_)) or not isinstance(
            x, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a real number; got {type(x).__name__}.")
    val = float(x)
    if not math.isfinite(val):
        raise ValueError(f"`{name}` must be finite; got {val!r}.")
    return val


def _check_option_table(options, table, where):
    """``options`` (dict or None) checked against ``table`` (name -> :class:`_Option`):
    every value validated (errors name ``options['key']``), defaults filled in.
    Unknown keys raise ``TypeError`` naming them and the valid ones."""
    given = _check_options(options, tuple(table), where)
    return {key: (opt.check(given[key], f"options['{key}']") if key in given
                  else opt.default)
            for key, opt in table.items()}


def _check_reg_m(reg_m):
    """``reg_m`` (KL relaxation of the marginals) as a pair ``(rho_a, rho_b)`` of floats in
    ``(0, inf]``, or None (balanced). A number applies to both marginals; ``inf`` keeps that
    marginal hard."""
    if reg_m is None:
        return None
    _reject_tensor(reg_m, "reg_m")
    if isinstance(reg_m, np.ndarray) and reg_m.ndim == 0:
        # (what the torch message's tensor.detach().cpu().numpy() gives for a 0-d tensor:
        # len() of it raised a bare TypeError)
        reg_m = reg_m[()]
    if isinstance(reg_m, (tuple, list, np.ndarray)):
        if len(reg_m) != 2:
            raise ValueError(f"`reg_m` must be a number or a pair (reg_m_a, reg_m_b); got "
                             f"{len(reg_m)} values.")
        pair = tuple(reg_m)
    else:
        pair = (reg_m, reg_m)
    out = []
    for k, v in zip(("reg_m", "reg_m"), pair):
        if isinstance(v, (bool, np.bool_)) or not isinstance(
                v, (int, float, np.integer, np.floating)):
            raise TypeError(f"`reg_m` must hold real numbers; got {type(v).__name__}.")
        v = float(v)
        if not v > 0:  # NaN too
            raise ValueError(f"`reg_m` must be positive (inf keeps a marginal hard); got "
                             f"{v!r}.")
        out.append(v)
    return tuple(out)
