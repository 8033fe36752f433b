import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Under CI (CI=true, as .ci/run runs) the examples derive from a fixed seed (Hypothesis's
# "ci" profile: derandomize, no example database, reproduction blobs printed), so a
# submission is judged on the same examples every run; local runs keep exploring new ones
# (that is how test_against_pot's k = 1 stall was found).
_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
settings.register_profile(
    "ottools", parent=settings.get_profile("ci") if _CI else None,
    deadline=None, max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ottools")


def python_output(code, timeout=300):
    """The stdout of ``code`` (dedented) run by this interpreter in a fresh process, split
    into words; a failure shows the end of its stderr."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=timeout, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


@pytest.fixture
def rng():
    """A seeded generator: tests are reproducible."""
    return np.random.default_rng(20261123)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def random_problem(rng, n, m, *, d=2, zeros=0, dtype=np.float64, scale=True):
    """Weights (with ``zeros`` zero entries in each) and a squared-Euclidean cost."""
    x = rng.random((n, d))
    y = rng.random((m, d))
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if scale:
        cost /= cost.max()
    a = rng.random(n) + 0.1
    b = rng.random(m) + 0.1
    if zeros:
        a[rng.choice(n, min(zeros, n - 1), replace=False)] = 0
        b[rng.choice(m, min(zeros, m - 1), replace=False)] = 0
    a /= a.sum()
    b /= b.sum()
    return a.astype(dtype), b.astype(dtype), cost.astype(dtype)


@pytest.fixture
def refuse_allocation(monkeypatch):
    """``refuse_allocation(shape, dtype)``: from then on, ``ottools._problem.allocate``
    fails for that request as ``np.empty`` does when memory runs out (other requests and
    every other module are untouched). Returns the list of refused requests."""
    import ottools._problem as problem

    refused = []

    def arm(shape, dtype):
        want = (tuple(shape), np.dtype(dtype))

        class _NumPy:
            def __getattr__(self, name):
                return getattr(np, name)

            @staticmethod
            def empty(s, dtype=None, **kwargs):
                got = (tuple(np.atleast_1d(s).tolist()), np.dtype(dtype))
                if got == want:
                    refused.append(got)
                    raise MemoryError("refused by the test")
                return np.empty(s, dtype=dtype, **kwargs)

        monkeypatch.setattr(problem, "np", _NumPy())
        return refused

    return arm


def returns_within(fn, timeout=60.0):
    """``fn()`` run in a daemon thread: a hang (the kernels release the GIL) fails the test
    after ``timeout`` seconds instead of blocking the suite."""
    import threading

    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 (re-raised below)
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"did not return within {timeout} s")
    if "error" in out:
        raise out["error"]
    return out["value"]
