import subprocess
import sys

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


def test_import_does_not_load_numba_or_scipy_spatial():
    code = (
        "import sys, ottools; "
        "print(','.join(m for m in ('numba', 'scipy.spatial') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
