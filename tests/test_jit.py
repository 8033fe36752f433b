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
from ottools._kernels import _sinkhorn as k
rng = np.random.default_rng(5)
n, m = 50, 23
a, b, cost = rng.random(n) + 0.1, rng.random(m) + 0.1, rng.random((n, m))
a, b = a / a.sum(), b / b.sum()
f, g = rng.normal(size=n) * 0.01, rng.normal(size=m) * 0.01
out = []
for name in sys.argv[1].split(","):
    P = np.empty_like(cost)
    if name == "serial":
        k.plan_from_potentials(np.log(a), np.log(b), cost, 0.05, f, g, P)
    else:
        k.plan_from_potentials_par(np.log(a), np.log(b), cost, 0.05, f, g, 3, P)
    out.append(P)
np.save(sys.argv[2], np.array(out))
"""


def test_plans_are_the_same_compiled_here_or_loaded_from_the_cache(tmp_path):
    # The serial and the row-block plan kernels, compiled in this order in a fresh cache,
    # then loaded from it in the other order: four plans equal to the bit.
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    script = tmp_path / "plan.py"
    script.write_text(_PLAN_SCRIPT)
    plans = []
    for order in ("serial,par", "par,serial"):
        out = tmp_path / f"{order.replace(',', '_')}.npy"
        subprocess.run([sys.executable, str(script), order, str(out)], env=env, check=True,
                       timeout=300)
        plans.extend(np.load(out))
    assert all(np.array_equal(plans[0], P) for P in plans[1:])
    assert np.all(plans[0] > 0)
