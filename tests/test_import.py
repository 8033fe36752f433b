import ast
import re
import subprocess
import sys
from pathlib import Path

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


# ----------------------------------------------------------------------------- docs

ROOT = Path(__file__).resolve().parents[1]


def _all_of(path):
    """``__all__`` of a module, read without importing it (ottools.torch needs torch)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"no __all__ in {path}")


def _api_sections():
    """docs/api.rst as [(heading, currentmodule, [autosummary names])]."""
    lines = (ROOT / "docs" / "api.rst").read_text().splitlines()
    sections, module, in_summary = [], None, False
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line.strip() and re.fullmatch(r"([-=^~])\1{2,}", lines[i + 1]):
            sections.append([line.strip(), module, []])
            in_summary = False
        elif line.startswith(".. currentmodule::"):
            module = line.split("::")[1].strip()
            if sections:
                sections[-1][1] = module
        elif line.startswith(".. autosummary::"):
            in_summary = True
        elif in_summary and line.startswith("   ") and not line.strip().startswith(":"):
            if line.strip():
                sections[-1][2].append(line.strip())
        elif line.strip() and not line.startswith(" "):
            in_summary = False
    return sections[1:]  # the page title


def test_api_reference_lists_every_public_name_under_a_heading_with_no_empty_heading():
    sections = _api_sections()
    for heading, _, names in sections:
        if heading.startswith("Differentiable layer"):
            continue  # the torch section's own subsections hold its names
        assert names, f"empty heading {heading!r} in docs/api.rst"
    listed = {(module, name) for _, module, names in sections for name in names}
    expected = {("ottools", n) for n in _all_of(ROOT / "ottools" / "__init__.py")}
    expected |= {("ottools.torch", n) for n in _all_of(ROOT / "ottools" / "torch" / "__init__.py")}
    assert listed == expected, (expected - listed, listed - expected)
    flat = [name for _, module, names in sections for name in names]
    assert len(flat) == len(set(zip([m for _, m, ns in sections for _ in ns], flat)))


def test_docs_cite_papers_not_missing_files_or_internal_issue_numbers():
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.rst")),
             *sorted((ROOT / "ottools").rglob("*.py"))]
    for path in texts:
        text = path.read_text()
        assert "algorithms.md" not in text, path
        if path.suffix == ".rst" or path.name == "README.md":
            assert not re.search(r"\bissue (#\s*)?\d+", text, re.IGNORECASE), path
