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
