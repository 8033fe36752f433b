"""The torch layer's one pattern: tensors in, the NumPy entry point, tensors out.

Every differentiable function of ``ottools.torch`` computes its value and the gradients
of that value in the forward pass, by a private NumPy ``*_value_and_grad`` entry point of
the core (the envelope theorem makes the gradients by-products of the solve: potentials,
plans, couplings). :class:`Envelope` is the one ``torch.autograd.Function``: its forward
runs such an entry point and keeps the gradients; its backward multiplies them by the
incoming gradient. Nothing is unrolled and the backward pass costs one multiplication.
"""

import os
import sys
import warnings

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .._result import OTConvergenceWarning
from .._validation import _check_ragged, _check_rng

__all__ = []

_OTTOOLS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def warn_unconverged(where, results):
    """One OTConvergenceWarning at the user's frame if a result did not converge (a
    tensor cannot carry a status)."""
    bad = [r.message for r in results if r is not None and not r.success]
    if not bad:
        return
    level, frame = 2, sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not (fname.startswith(_OTTOOLS_DIR) or fname.startswith(_TORCH_DIR)):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(f"ottools.torch.{where} did not converge: " + " | ".join(bad),
                  OTConvergenceWarning, stacklevel=level)


def as_tensor(x, name, like=None):
    """``x`` as a tensor (array-likes converted on ``like``'s device); None stays None.
    Complex and non-numeric data are refused (a complex cost would lose its imaginary
    part silently)."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"`{name}` must be real; got a complex tensor ({x.dtype}).")
        return x
    try:
        arr = np.asarray(x)
    except Exception as exc:
        _check_ragged(x, name)
        raise TypeError(f"`{name}` must be a tensor or array-like of numbers; {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must hold real numbers; got dtype {arr.dtype}.")
    device = like.device if isinstance(like, torch.Tensor) else None
    return torch.as_tensor(arr, device=device)


def dtypes(*tensors):
    """(torch dtype of the outputs, NumPy dtype of the computation): float dtypes follow
    ``torch.promote_types``; integer-only input gives float64; float16/bfloat16 are
    computed in float32."""
    dt = None
    for t in tensors:
        if t is not None:
            dt = t.dtype if dt is None else torch.promote_types(dt, t.dtype)
    if dt is None or not dt.is_floating_point:
        dt = torch.float64
    return dt, np.dtype(np.float64 if dt == torch.float64 else np.float32)


def same_device(tensors, names):
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        listed = ", ".join(f"`{n}` on {t.device}" for t, n in zip(tensors, names)
                           if t is not None)
        raise ValueError(f"All tensors must be on the same device; got {listed}.")


def check_ndim(t, name, ndims, expected):
    if t is not None and t.ndim not in ndims:
        raise ValueError(f"`{name}` must be {expected}; got shape {tuple(t.shape)}.")
    return t


def clouds(names, x, y, a, b, batch=False):
    """Point tensors ``(x, y, a, b, batched)``: points (n, d) (1-D input: n points in
    1-D; with ``batch``, also a batch (B, n, d) of both) and their weights (or None), all
    on one device; ``names`` of the two point arguments for the messages. A batch's
    weights are (B, n) or a vector (n,) shared by every pair, returned repeated to
    (B, n)."""
    nx, ny = names
    x = as_tensor(x, nx)
    y = as_tensor(y, ny, x)
    if x is None or y is None:
        raise TypeError(f"`{nx}` and `{ny}` must be tensors; got None.")
    batched = batch and x.ndim == 3
    pts = []
    for t, name in ((x, nx), (y, ny)):
        t = t[:, None] if t.ndim == 1 else t
        check_ndim(t, name, (2, 3) if batch else (2,),
                   "a tensor (n, d) or a batch (B, n, d)" if batch else "a 2-D tensor (n, d)")
        if (t.ndim == 3) != batched:
            raise ValueError(f"`{name}` must be {'a batch (B, n, d)' if batched else '(n, d)'}"
                             f" like `{nx}`; got shape {tuple(t.shape)}.")
        pts.append(t)
    wd = (1, 2) if batched else (1,)
    ws = []
    for w, name, pn in ((a, "a", nx), (b, "b", ny)):
        expected = f"weights of shape {pn}.shape[:-1]" + (
            f" or {pn}.shape[1:-1] (shared by the pairs)" if batched else "")
        ws.append(check_ndim(as_tensor(w, name, x), name, wd, expected))
    a, b = ws
    same_device((*pts, a, b), (nx, ny, "a", "b"))
    if batched:
        # A vector shared by every pair becomes one row per pair (the pairs' solves are
        # those of the repeated weights; autograd sums the rows' gradients). Another
        # length is left to the NumPy batch check, which names the expected shapes.
        a, b = (w.repeat(len(p), 1)
                if w is not None and w.ndim == 1 and w.shape[0] == p.shape[1] else w
                for w, p in ((a, pts[0]), (b, pts[1])))
    return (*pts, a, b, batched)


def numpy(t, np_dtype):
    """A detached CPU NumPy copy (or view) of ``t`` in ``np_dtype``; None stays None."""
    if t is None:
        return None
    tdt = torch.float64 if np_dtype == np.float64 else torch.float32
    return t.detach().to(device="cpu", dtype=tdt).resolve_conj().resolve_neg().numpy()


def scalar(v, name):
    """A Python number from a number or a 0-d tensor that needs no gradient."""
    if isinstance(v, torch.Tensor):
        if v.requires_grad:
            raise TypeError(f"`{name}` is not differentiable; pass a number or a detached "
                            "tensor.")
        if v.numel() != 1:
            raise ValueError(f"`{name}` must be a number; got a tensor of shape "
                             f"{tuple(v.shape)}.")
        return v.item()
    return v


def scalar_or_pair(v, name):
    """``v`` with its tensors as Python numbers (see :func:`scalar`): a number, a 0-d
    tensor, a tensor of two numbers or a tuple/list of numbers or 0-d tensors (e.g.
    ``reg_m`` and its pair ``(reg_m_a, reg_m_b)``); anything else unchanged, for the
    NumPy API's checks."""
    if isinstance(v, torch.Tensor) and v.ndim == 1 and v.numel() == 2:
        if v.requires_grad:
            scalar(v, name)  # raises
        return tuple(v.tolist())
    if isinstance(v, (tuple, list)):
        return type(v)(scalar(e, name) for e in v)
    return scalar(v, name)


def numpy_rng(rng):
    """``rng`` for the NumPy API as a ``numpy.random.Generator``: a ``torch.Generator``
    seeds one from its state (so that a seeded torch generator gives reproducible
    directions); anything else goes through ``numpy.random.default_rng`` (SPEC 7), with a
    TypeError naming ``rng`` and what it accepts."""
    if isinstance(rng, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
    return _check_rng(rng, also=("a torch.Generator",))


class Envelope(torch.autograd.Function):
    """``value = fn(*inputs)`` with its gradients computed alongside.

    ``fn(*inputs) -> (value, grads)``: ``value`` a float or an array (then the gradients
    are per batch member: ``grads[k]`` has the batch as its first axis), ``grads`` one
    NumPy array or None per input. Backward: ``grad_output * grad`` (broadcast over the
    batch), cast to each input's dtype; inputs without a gradient get None.
    """

    @staticmethod
    def forward(fn, *inputs):
        value, grads = fn(*inputs)
        like = next(t for t in inputs if isinstance(t, torch.Tensor))
        dtype = dtypes(*(t for t in inputs if isinstance(t, torch.Tensor)))[0]
        out = [torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=dtype,
                               device=like.device)]
        for g, t in zip(grads, inputs):
            if g is None or not isinstance(t, torch.Tensor):
                out.append(torch.empty(0, dtype=dtype, device=like.device))
            else:
                out.append(torch.from_numpy(np.ascontiguousarray(g)).to(device=t.device))
        return tuple(out)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(*output[1:])
        ctx.dtypes = [t.dtype if isinstance(t, torch.Tensor) else None for t in inputs[1:]]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, *_unused):
        out = [None]  # fn
        for g, dt, need in zip(ctx.saved_tensors, ctx.dtypes, ctx.needs_input_grad[1:]):
            if not need or g.numel() == 0:
                out.append(None)
                continue
            scale = grad.reshape(grad.shape + (1,) * (g.ndim - grad.ndim)) if grad.ndim \
                else grad
            out.append((scale * g).to(dt))
        return tuple(out)


def eager(fn):
    """``fn`` run as it is under ``torch.compile``: a graph break around the call (Dynamo
    traced into the NumPy checks and Numba's dispatcher and crashed)."""
    return torch.compiler.disable(fn)


def apply(where, fn, *inputs):
    """The value tensor of ``fn`` through :class:`Envelope`, in the inputs' promoted dtype:
    ``fn(need, *arrays) -> (value, grads, results)`` receives the inputs as NumPy arrays in
    the computation dtype and which of them need a gradient; a result that did not
    converge gives one warning naming ``where``."""
    dtype, np_dtype = dtypes(*inputs)
    results = []
    # Which inputs need a gradient, read here: inside torch.func transforms the forward
    # pass sees unwrapped tensors without requires_grad (torch.func.grad got zeros), and
    # under torch.no_grad none is needed.
    grad_on = torch.is_grad_enabled()
    need = tuple(grad_on and isinstance(t, torch.Tensor) and t.requires_grad for t in inputs)

    def run(*tensors):
        value, grads, res = fn(need, *(numpy(t, np_dtype) for t in tensors))
        results.extend(res)
        return value, grads

    value = Envelope.apply(run, *inputs)[0].to(dtype)
    warn_unconverged(where, results)
    return value
