"""Private Numba kernels: C-contiguous arrays of one float dtype in, numbers and status out.

Kernels never raise, print or allocate inside their iteration loops; the public wrappers
validate, cast and build the results.
"""

import enum
import functools
import importlib

from . import _codes


class KernelStatus(enum.IntEnum):
    """Names of the kernels' return codes (``ottools._kernels._codes``)."""

    DONE = _codes.DONE
    BUDGET = _codes.BUDGET
    NONFINITE = _codes.NONFINITE
    OUT_OF_RANGE = _codes.OUT_OF_RANGE
    HANDOVER = _codes.HANDOVER


class lazy:
    """``lazy("_sliced")``: the kernel module ``ottools._kernels._sliced``, imported (with
    Numba) on first attribute access. Keeps ``import ottools`` cheap: the first solve pays
    Numba's import once."""

    def __init__(self, name):
        self._name = f"{__name__}.{name}"
        self._module = None

    def __getattr__(self, attr):
        mod = self._module
        if mod is None:  # imported once, then read without the import machinery
            mod = self._module = importlib.import_module(self._name)
        return getattr(mod, attr)


def adapts_threads(fn):
    """Run ``fn`` under ``_jit.threads_for_load()``: its parallel kernels use only the
    cores that other processes leave free (results unchanged). Numba loads on the first
    call, not at decoration."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with importlib.import_module(f"{__name__}._jit").threads_for_load():
            return fn(*args, **kwargs)

    return wrapper
