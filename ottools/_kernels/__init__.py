"""Private Numba kernels: C-contiguous arrays of one float dtype in, numbers and status out.

Kernels never raise, print or allocate inside their iteration loops; the public wrappers
validate, cast and build the results.
"""
