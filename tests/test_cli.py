import subprocess
import sys

import numpy as np
import pytest

import ottools
from ottools._cli import demo_clouds, main


def test_demo_runs_as_module_and_prints_every_method():
    out = subprocess.run(
        [sys.executable, "-m", "ottools", "demo", "--n", "150", "--reg", "0.05", "--no-pot"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("ottools  auto->") for line in lines)
    for method in ["log", "scaling", "sns"]:
        assert any(line.split()[:2] == ["ottools", method] for line in lines), method


def test_demo_with_pot_and_plot(tmp_path, capsys):
    pytest.importorskip("ot")
    pytest.importorskip("matplotlib")
    png = tmp_path / "demo.png"
    assert main(["demo", "--n", "120", "--reg", "0.1", "--plot", str(png),
                 "--pot-maxiter", "200"]) == 0
    text = capsys.readouterr().out
    assert "POT" in text and "sinkhorn_log" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_clouds_are_fixed():
    x1, y1 = demo_clouds(100)
    x2, y2 = demo_clouds(100)
    assert x1.shape == y1.shape == (100, 2)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_solve_matches_api_and_saves_plan(tmp_path, rng, capsys, fmt):
    x, y = rng.random((30, 2)), rng.random((20, 2))
    px, py = tmp_path / f"x.{fmt}", tmp_path / f"y.{fmt}"
    if fmt == "npy":
        np.save(px, x)
        np.save(py, y)
    else:
        np.savetxt(px, x, delimiter=",")
        np.savetxt(py, y, delimiter=",")
    out = tmp_path / "plan.npy"
    code = main(["solve", str(px), str(py), "--reg", "0.05", "--method", "log",
                 "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "success  True" in text
    expected = ottools.sinkhorn(None, None, ottools.cost_matrix(x, y), 0.05, method="log")
    np.testing.assert_allclose(np.load(out), expected.plan, atol=1e-12)


def test_solve_with_weights(tmp_path, rng):
    x, y = rng.random((10, 2)), rng.random((12, 2))
    a = rng.random(10)
    a /= a.sum()
    for name, arr in [("x", x), ("y", y), ("a", a)]:
        np.save(tmp_path / f"{name}.npy", arr)
    code = main(["solve", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--reg", "0.1",
                 "--a", str(tmp_path / "a.npy"), "--out", str(tmp_path / "p.npy")])
    assert code == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy").sum(1), a, atol=1e-8)


def test_solve_unreadable_file_exits_2(tmp_path, capsys):
    code = main(["solve", str(tmp_path / "missing.npy"), str(tmp_path / "y.npy"), "--reg", "1"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ottools: error: cannot read X file") and "\n" not in err


def test_solve_mismatched_dimensions_exit_2(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((5, 2)))
    np.save(tmp_path / "y.npy", np.zeros((5, 3)))
    code = main(["solve", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--reg", "1"])
    assert code == 2
    assert "same dimension" in capsys.readouterr().err


def test_solve_bad_reg_exit_2(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((5, 2)))
    code = main(["solve", str(tmp_path / "x.npy"), str(tmp_path / "x.npy"), "--reg", "-1"])
    assert code == 2
    assert "`reg` must be a positive" in capsys.readouterr().err
