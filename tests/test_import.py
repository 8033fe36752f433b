import subprocess
import sys

import pytest

import ottools


def test_import_loads_no_optional_dependency():
    code = (
        "import sys, ottools; "
        "bad = [m for m in ('torch', 'ot', 'matplotlib', 'sklearn') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_all_names_exist():
    for name in ottools.__all__:
        assert hasattr(ottools, name), name
    assert isinstance(ottools.__version__, str)


def _fresh(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_import_loads_numpy_only():
    # SciPy and Numba load on first use (OTResult, a scipy.optimize class, is defined by the
    # first result): `import ottools` costs NumPy's import and little more.
    code = ("import sys, ottools; "
            "print(','.join(m for m in ('scipy', 'numba', 'llvmlite') if m in sys.modules))")
    assert _fresh(code) == ""


def test_result_class_defined_on_first_use():
    code = (
        "import sys, pickle, ottools, numpy as np; "
        "res = ottools.sinkhorn(None, None, np.array([[0.0, 1.0], [1.0, 0.0]]), 0.5); "
        "import scipy.optimize; "
        "assert type(res) is ottools.OTResult, type(res); "
        "assert isinstance(res, scipy.optimize.OptimizeResult); "
        "assert issubclass(ottools.OTResult, scipy.optimize.OptimizeResult); "
        "assert ottools.OTResult.__qualname__ == 'OTResult'; "
        "assert 'OTResult' in dir(ottools); "
        "sys.stdout.buffer.write(pickle.dumps(res))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    # Unpickled in a fresh interpreter, where the class is not defined yet.
    load = ("import sys, pickle; res = pickle.loads(sys.stdin.buffer.read()); "
            "import ottools; print(type(res) is ottools.OTResult, res.success, res.nit)")
    back = subprocess.run([sys.executable, "-c", load], input=out.stdout, capture_output=True,
                          check=True)
    assert back.stdout.decode().split()[:2] == ["True", "True"]


def test_result_class_is_one_class_across_threads():
    code = (
        "import threading, ottools._result as r; seen = []; "
        "ts = [threading.Thread(target=lambda: seen.append(type(r.make_result(fun=1.0)))) "
        "for _ in range(8)]; "
        "[t.start() for t in ts]; [t.join() for t in ts]; "
        "print(len(seen), len(set(seen)), seen[0] is r.OTResult)"
    )
    assert _fresh(code) == "8 1 True"


def test_unknown_attribute_raises():
    import ottools._result

    with pytest.raises(AttributeError, match="no_such_name"):
        ottools.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_name"):
        ottools._result.no_such_name  # noqa: B018
