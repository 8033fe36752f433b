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


def test_import_does_not_load_numba():
    # Kernels load on first use: `import ottools` stays cheap (scipy.optimize, which
    # OTResult subclasses from, is the bulk of what is left).
    code = "import sys, ottools; print('numba' if 'numba' in sys.modules else '')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
