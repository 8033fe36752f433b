"""Private Numba kernels: C-contiguous arrays of one float dtype in, numbers and status out.

Kernels never raise, print or allocate inside their iteration loops; the public wrappers
validate, cast and build the results.
"""

import importlib


class lazy:
    """``lazy("_sliced")``: the kernel module ``ottools._kernels._sliced``, imported (with
    Numba) on first attribute access. Keeps ``import ottools`` cheap: the first solve pays
    Numba's import once."""

    def __init__(self, name):
        self._name = f"{__name__}.{name}"

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)
