"""Kernels of the pairwise distance matrices: projections, and many 1-D OT problems
between measures whose sorted projections are stored once, read by many pairs.

A block of measures is stored flat: measure ``k`` owns ``L * n_k`` values at
``voff[k]`` (row ``l``, its projections on direction ``l`` sorted ascending, at
``voff[k] + l * n_k``), and weights at ``woff[k]`` with a row step ``wstep[k]`` (0 when
one row of weights serves every direction: uniform weights). The merge itself is the
one of :mod:`ottools._kernels._sliced` (the same arithmetic as ``sliced_wasserstein``).

Serial by design: the parallelism is over tiles of pairs (threads or processes), each
tile one call of :func:`sliced_pairs`.
"""

from ._jit import jit
from ._sliced import wpp_merge, wpp_pairs


@jit
def project(x, theta, out):
    """``out[l, i] = sum_k theta[l, k] x[i, k]`` (accumulated in float64), for ``x`` (n, d),
    ``theta`` (L, d) and ``out`` (L, n): the same projection whatever the process or the
    BLAS threads (a plain loop, no BLAS)."""
    L, d = theta.shape
    n = x.shape[0]
    for l in range(L):
        for i in range(n):
            s = 0.0
            for k in range(d):
                s += float(theta[l, k]) * float(x[i, k])
            out[l, i] = s


@jit
def sliced_pairs(RV, Roff, Rn, RW, RWoff, RWstep, Runi,
                 CV, Coff, Cn, CW, CWoff, CWstep, Cuni, L, ii, jj, p, out):
    """``out[t]`` = mean over the ``L`` directions of W_p^p between row measure ``ii[t]``
    and column measure ``jj[t]`` (float64). Uniform weights on both sides with equal
    sizes pair the sorted values (``wpp_pairs``); otherwise cumulative weights are merged
    (``wpp_merge``)."""
    for t in range(ii.shape[0]):
        i = ii[t]
        j = jj[t]
        n = Rn[i]
        m = Cn[j]
        pairs = Runi[i] and Cuni[j] and n == m
        total = 0.0
        for l in range(L):
            u = RV[Roff[i] + l * n:Roff[i] + (l + 1) * n]
            v = CV[Coff[j] + l * m:Coff[j] + (l + 1) * m]
            if pairs:
                total += wpp_pairs(u, v, p)
            else:
                wu = RW[RWoff[i] + l * RWstep[i]:RWoff[i] + l * RWstep[i] + n]
                wv = CW[CWoff[j] + l * CWstep[j]:CWoff[j] + l * CWstep[j] + m]
                total += wpp_merge(u, wu, v, wv, p)
        out[t] = total / L
