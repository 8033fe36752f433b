"""The project's Numba decorator (``ottools._kernels._jit.jit``): compiled code must not
depend on which function, or which process, compiled a kernel first."""

import importlib
import os
import pkgutil
import subprocess
import sys

import numpy as np
from numba.core.dispatcher import Dispatcher

import ottools
from ottools._kernels._jit import FASTMATH_SAFE, jit


def _dispatchers():
    names = [m.name for m in pkgutil.walk_packages(ottools.__path__, "ottools.")
             if "torch" not in m.name and not m.name.endswith("__main__")]
    for name in names:
        for attr, obj in vars(importlib.import_module(name)).items():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == name:
                yield f"{name}.{attr}", obj


def test_every_kernel_states_the_flags_numba_would_otherwise_inherit():
    # Numba compiles a function that leaves `fastmath` or `_nrt` unset with the flags of
    # the function whose compilation reached it first.
    found = dict(_dispatchers())
    assert len(found) > 100
    unset = sorted(name for name, d in found.items()
                   if "fastmath" not in d.targetoptions or "_nrt" not in d.targetoptions)
    assert unset == []


def _pair():
    # A fresh helper without flags (a sequential sum, which reassociation would split
    # into vector partial sums) and a FASTMATH_SAFE caller; cache=False: new code each call.
    @jit(cache=False)
    def helper(x):
        s = 0.0
        for j in range(x.shape[0]):
            s += x[j] * x[j]
        return s

    @jit(fastmath=FASTMATH_SAFE, cache=False)
    def caller(x):
        return helper(x)

    return helper, caller


def test_a_helper_rounds_the_same_whichever_caller_compiles_it(rng):
    x = rng.normal(size=1001) * np.exp(rng.normal(size=1001) * 3)
    expected = 0.0
    for v in x:
        expected += v * v
    helper, caller = _pair()
    via_caller = caller(x)            # compiles the helper from the flagged caller
    assert helper(x) == via_caller == expected
    helper, caller = _pair()
    alone = helper(x)                 # compiles the helper first, on its own
    assert caller(x) == alone == expected


_PLAN_SCRIPT = """
import sys
import numpy as np
from ottools._kernels import _newton as kn
from ottools._kernels import _sinkhorn as k
rng = np.random.default_rng(5)
n, m, reg = 80, 70, 0.05
a, b, cost = rng.random(n) + 0.1, rng.random(m) + 0.1, rng.random((n, m))
a, b = a / a.sum(), b / b.sum()
f, g = rng.normal(size=n) * 0.01, rng.normal(size=m) * 0.01
u, v = a * np.exp(rng.normal(size=n) * 0.1), b * np.exp(rng.normal(size=m) * 0.1)
df, dg = rng.normal(size=n) * 1e-3, rng.normal(size=m) * 1e-3
P_old = np.exp((f[:, None] + g - cost) / reg) * a[:, None] * b
out = {}
for name in sys.argv[1].split(","):
    P, rows, cols = np.empty_like(cost), np.empty(n), np.empty(m)
    if name.startswith("potentials"):
        args = (np.log(a), np.log(b), cost, reg, f, g)
        r = (k.plan_from_potentials(*args, P) if name.endswith("serial")
             else k.plan_from_potentials_par(*args, 3, P))
    elif name.startswith("scalings"):
        P[:] = np.exp((f[:, None] + g - cost) / reg)
        args = (P, u, v, a, b, cost, f, g, reg)
        r = (k.plan_from_scalings(*args) if name.endswith("serial")
             else k.plan_from_scalings_par(*args, 3))
    else:
        args = (np.log(a), np.log(b), cost, 1 / reg, f + df, g + dg, df, dg, P_old, P, rows,
                cols)
        r = (kn.trial_plan(*args, np.empty(m), np.empty(m)) if name.endswith("serial")
             else kn.trial_plan_par(*args, 3))
        r = (rows, cols, r)
    out[name] = np.concatenate([P.ravel()] + [np.ravel(x) for x in r])
np.savez(sys.argv[2], **out)
"""


def test_plans_are_the_same_compiled_here_or_loaded_from_the_cache(tmp_path):
    # The serial plan kernels (from potentials, from scalings, the Newton stage's trial
    # plan), compiled in one order in a fresh cache, then loaded from it in the other: the
    # plans, marginals and sums equal to the bit (at 80 x 70 the row sums of the plan from
    # potentials differed while its row loop was a separate reassociating function: its
    # own code fresh, its caller's copy cached). The row-block kernels give the serial
    # plans in either process (their sums only up to order; across processes they may
    # differ in the last bits: README).
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    script = tmp_path / "plan.py"
    script.write_text(_PLAN_SCRIPT)
    names = [f"{kind}_{mode}" for kind in ("potentials", "scalings", "trial")
             for mode in ("serial", "par")]
    runs = []
    for order in (names, names[::-1]):
        out = tmp_path / f"{order[0]}.npz"
        subprocess.run([sys.executable, str(script), ",".join(order), str(out)], env=env,
                       check=True, timeout=600)
        runs.append(dict(np.load(out)))
    n, m = 80, 70
    for kind in ("potentials", "scalings", "trial"):
        ser = runs[0][f"{kind}_serial"]
        assert np.all(np.isfinite(ser))
        assert np.array_equal(ser, runs[1][f"{kind}_serial"]), kind
        for run in runs:
            par = run[f"{kind}_par"]
            assert np.array_equal(ser[:n * m], par[:n * m]), kind
            np.testing.assert_allclose(par[n * m:], ser[n * m:], rtol=1e-13)
