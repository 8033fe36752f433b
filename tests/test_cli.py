import argparse
import io
import math
import re
import subprocess
import sys
import types

import numpy as np
import pytest

import ottools
from ottools import _cli
from ottools._cli import build_parser, main
from ottools._cli_demo import _run_pot, _table, demo_clouds, run_demo
from ottools._costs import METRICS


def _run(argv):
    """main(argv) -> exit status (argparse errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _one_line(err):
    err = err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def clouds(tmp_path, rng):
    x, y = rng.random((30, 2)), rng.random((20, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), x, y


def test_demo_runs_as_module_and_prints_every_method():
    out = subprocess.run(
        [sys.executable, "-m", "ottools", "demo", "--n", "150", "--reg", "0.05", "--no-pot"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("ottools  ")]
    labels = [r[1] for r in rows]
    assert any(lab == "auto" or lab.startswith("auto->") for lab in labels), labels
    for method in ["log", "scaling", "sns"]:
        assert method in labels, method
    for r in rows:
        assert r[3] == "0" and r[4] == "ok", r  # status column: converged


def test_demo_with_pot_and_plot(tmp_path, capsys):
    pytest.importorskip("ot")
    pytest.importorskip("matplotlib")
    png = tmp_path / "demo.png"
    assert main(["demo", "--n", "120", "--reg", "0.1", "--plot", str(png),
                 "--pot-maxiter", "200"]) == 0
    text = capsys.readouterr().out
    assert "POT" in text and "sinkhorn_log" in text
    assert "POT runs to the same err" in text  # the header says how accuracies compare
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


@pytest.mark.parametrize("ext, load", [
    (".npy", np.load),
    (".txt", np.loadtxt),
    (".csv", lambda p: np.loadtxt(p, delimiter=",")),
])
def test_solve_out_writes_exactly_the_named_file(tmp_path, clouds, capsys, ext, load):
    px, py, x, y = clouds
    out = tmp_path / f"plan{ext}"
    assert main(["solve", px, py, "--reg", "0.05", "--method", "log", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x.npy", "y.npy", out.name])
    text = capsys.readouterr().out
    assert f"written to {out} (" in text
    expected = ottools.sinkhorn(None, None, ottools.cost_matrix(x, y), 0.05, method="log")
    np.testing.assert_allclose(load(out), expected.plan, rtol=1e-15, atol=0)


def test_upper_case_npy_names_are_written_as_named(tmp_path, clouds, capsys):
    """np.save appended .npy to PLAN.NPY (the CLI reported a file it had not written)."""
    px, py, x, y = clouds
    assert main(["solve", px, py, "--reg", "0.05", "--out", str(tmp_path / "P.NPY")]) == 0
    assert main(["pairwise", px, py, "--metric", "sliced_wasserstein", "--no-progress",
                 "--out", str(tmp_path / "D.NPY"), "--status", str(tmp_path / "S.Npy")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["x.npy", "y.npy", "P.NPY", "D.NPY", "S.Npy"])
    expected = ottools.sinkhorn(None, None, ottools.cost_matrix(x, y), 0.05)
    np.testing.assert_allclose(np.load(tmp_path / "P.NPY"), expected.plan, rtol=1e-15)
    assert np.load(tmp_path / "D.NPY").shape == (2, 2)


def test_pairwise_write_failure_after_the_matrix_is_one_line(tmp_path, clouds, capsys):
    """A write that fails after the up-front check (here a dangling link) raised a
    traceback after the whole matrix."""
    px, py, _, _ = clouds
    (tmp_path / "D.npy").symlink_to(tmp_path / "gone" / "D.npy")
    code = main(["pairwise", px, py, "--metric", "sliced_wasserstein", "--no-progress",
                 "--out", str(tmp_path / "D.npy")])
    assert code == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith("ottools pairwise: error: cannot write --out"), err


def test_pairwise_counts_failed_pairs_and_self_terms_apart(tmp_path, clouds, capsys):
    """--metric sinkhorn solves the diagonal too: 'failures 3' was printed for 1 pair."""
    px, py, _, _ = clouds
    code = main(["pairwise", px, py, "--metric", "sinkhorn", "--reg", "0.001",
                 "--maxiter", "2", "--no-progress", "--out", str(tmp_path / "D.npy"),
                 "--status", str(tmp_path / "S.npy")])
    out = capsys.readouterr().out
    S = np.load(tmp_path / "S.npy")
    assert code == 1 and S[0, 1] != 0 and S[0, 0] != 0 and S[1, 1] != 0
    assert "pairs     1" in out and "failures  1 (pairs" in out
    assert "self terms 2 did not converge" in out


def test_solve_unreadable_file_exits_2(tmp_path, capsys):
    code = main(["solve", str(tmp_path / "missing.npy"), str(tmp_path / "y.npy"), "--reg", "1"])
    assert code == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith("ottools solve: error: cannot read X file")


def test_solve_mismatched_dimensions_exit_2(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((5, 2)))
    np.save(tmp_path / "y.npy", np.zeros((5, 3)))
    code = main(["solve", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--reg", "1"])
    assert code == 2
    assert "same dimension" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv, match", [
    (["demo", "--n", "0"], "argument --n: must be a positive integer; got 0"),
    (["demo", "--n", "-5"], "argument --n: must be a positive integer; got -5"),
    (["demo", "--n", "2.5"], "argument --n: must be a positive integer"),
    (["demo", "--reg", "0"], "argument --reg: must be a positive finite number; got 0"),
    (["demo", "--reg", "0.1", "nan"], "argument --reg: must be a positive finite number"),
    (["demo", "--tol", "-1"], "argument --tol: must be a finite number >= 0"),
    (["demo", "--plot", "fig.gif"], "--plot 'fig.gif': unknown extension '.gif'"),
    (["solve", "{x}", "{y}", "--reg", "0"], "argument --reg: must be a positive"),
    (["solve", "{x}", "{y}", "--reg", "-1"], "argument --reg: must be a positive"),
    (["solve", "{x}", "{y}", "--reg", "0.1", "--out", "."], r"--out '\.' is a directory"),
    (["solve", "{x}", "{y}", "--reg", "0.1", "--out", "{dir}"], "is a directory"),
    (["solve", "{x}", "{y}", "--reg", "0.1", "--out", "{dir}/no/p.npy"],
     "directory '.*/no' does not exist"),
    (["solve", "{x}", "{y}", "--reg", "0.1", "--out", "{dir}/p.dat"],
     "unknown extension '.dat'; use .npy"),
    (["solve", "{x}", "{y}", "--reg", "0.1", "--out", "{dir}/plan"],
     r"unknown extension '\(none\)'"),
    (["solve", "{x}", "{y}", "--reg", "0.1", "--metric", "foo"],
     "unknown metric 'foo'; valid: braycurtis"),
    (["solve", "{x}", "{y}", "--reg", "0.1", "--method", "newton"], "unknown method 'newton'"),
    (["solve", "{x}", "{y}", "--reg", "0.1", "--maxiter", "0"], "argument --maxiter"),
    (["solve", "{x}", "{y}", "--reg", "0.1", "--metric", "minkowski", "--p", "0.5"],
     "argument --p: must be a finite number >= 1; got 0.5"),
    # --p was silently ignored by the other metrics
    (["solve", "{x}", "{y}", "--reg", "0.1", "--p", "7"],
     "--p applies to the minkowski and minkowski_p metrics, not to --metric sqeuclidean"),
    (["pairwise", "{x}", "{y}", "--reg", "-1", "--out", "{dir}/D.npy"],
     "argument --reg: must be a positive finite number; got -1"),
    (["pairwise", "{x}", "{y}", "--reg", "1", "--jobs", "0", "--out", "{dir}/D.npy"],
     r"argument --jobs: must be a positive integer or negative \(-1: all cores, -2: all "
     r"but one, ...\); got 0"),
    # --p sets the exponent of the Minkowski ground costs only
    (["pairwise", "{x}", "{y}", "--reg", "1", "--p", "3", "--out", "{dir}/D.npy"],
     "--p applies to sliced_wasserstein and wasserstein_1d, and to the ground costs "
     r"minkowski and minkowski_p \(--cost\), not to --metric sinkhorn_divergence with "
     "--cost sqeuclidean"),
    (["pairwise", "{x}", "{y}", "--metric", "sliced_wasserstein", "--seed", "-1",
      "--out", "{dir}/D.npy"], "argument --seed: must be an integer >= 0; got -1"),
    (["pairwise", "{x}", "{y}", "--reg", "1", "--maxiter", "0", "--out", "{dir}/D.npy"],
     "argument --maxiter: must be a positive integer; got 0"),
    (["solve", "{x}", "{y}"], "the following arguments are required: --reg"),
    ([], r"the following arguments are required: \{demo,solve,pairwise\}"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, clouds, capsys, argv, match):
    px, py, _, _ = clouds
    argv = [a.format(x=px, y=py, dir=tmp_path) for a in argv]
    assert _run(argv) == 2
    captured = capsys.readouterr()
    err = _one_line(captured.err)
    assert err.startswith("ottools")
    assert re.search(match, err), err
    assert captured.out == ""  # nothing solved before the check


def test_reg_has_one_meaning_in_demo_and_solve(capsys):
    texts = {}
    for cmd in ("demo", "solve"):
        assert _run([cmd, "--help"]) == 0
        texts[cmd] = " ".join(capsys.readouterr().out.split())
    for cmd, text in texts.items():
        assert "--reg" in text and "in the units of the cost (absolute, not relative" in text, cmd
    assert "relative to the max" not in texts["demo"]


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_has_a_help_text_with_its_default():
    for name, sub in _subparsers().items():
        for action in sub._actions:
            if action.dest == "help" or not action.option_strings:
                continue
            assert action.help, (name, action.dest)
            assert "default" in action.help or "required" in action.help, (name, action.dest)


def test_metric_help_lists_every_accepted_name():
    text = _subparsers()["solve"].format_help()
    for metric in METRICS:
        assert metric in text, metric


def test_solve_float32_input_converges_with_the_default_tol(tmp_path, rng, capsys):
    x, y = rng.random((25, 2)).astype(np.float32), rng.random((20, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "p.npy"
    code = main(["solve", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--reg", "0.05",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    assert "success  True" in capsys.readouterr().out
    assert np.load(out).dtype == np.float32


def test_solve_dtype_option_casts_the_points(clouds, tmp_path, capsys):
    px, py, _, _ = clouds
    out = tmp_path / "p.npy"
    assert main(["solve", px, py, "--reg", "0.05", "--dtype", "float32", "--out", str(out)]) == 0
    assert np.load(out).dtype == np.float32


def test_solve_40000_points_says_how_much_memory_and_what_to_do(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40_000, 2)))
    monkeypatch.setattr(_cli, "available_memory", lambda: 8 * 1024 ** 3)  # an 8 GiB machine
    calls = []
    monkeypatch.setattr(ottools._costs, "cost_matrix", lambda *a, **k: calls.append(1))
    px = str(tmp_path / "x.npy")
    assert main(["solve", px, px, "--reg", "0.1", "--method", "log"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "needs about 23.8 GiB (2 arrays of 40000 x 40000 float64)" in err, err
    assert "about 8.0 GiB is available" in err and "float32" in err and "fewer points" in err
    assert calls == []  # refused before the cost was allocated


def test_solve_too_large_for_this_machine_exits_2(tmp_path, capsys):
    # 10**6 points: the cost alone would need 7.3 TiB, more than any machine running this.
    np.save(tmp_path / "x.npy", np.zeros((10 ** 6, 1)))
    px = str(tmp_path / "x.npy")
    assert main(["solve", px, px, "--reg", "0.1"]) == 2
    assert "GiB" in _one_line(capsys.readouterr().err)


def test_memory_error_during_the_solve_is_one_line(clouds, monkeypatch, capsys):
    px, py, _, _ = clouds

    def boom(*args, **kwargs):
        raise MemoryError("Unable to allocate 11.9 GiB")

    monkeypatch.setattr(ottools._costs, "cost_matrix", boom)
    assert main(["solve", px, py, "--reg", "0.1"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "out of memory (Unable to allocate 11.9 GiB)" in err and "float32" in err


def test_available_memory_is_a_positive_number():
    have = _cli.available_memory()
    assert have is None or have > 0


def test_failed_solve_does_not_print_a_cost_as_if_it_meant_something(clouds, capsys):
    px, py, _, _ = clouds
    assert main(["solve", px, py, "--reg", "0.001", "--method", "log", "--maxiter", "1"]) == 1
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "success  False" in lines["success"]
    assert "not the OT cost, the solve failed" in lines["cost"]


def test_demo_failed_run_shows_status_and_no_cost(capsys):
    args = argparse.Namespace(n=40, reg=[0.001], tol=1e-12, maxiter=2, pot_maxiter=5,
                              no_pot=True, plot=None)
    assert run_demo(args) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines()
            if ln.startswith("ottools  ")]
    assert rows
    for r in rows:
        assert r[3] != "0" and r[5] == "-", r  # failed: a status, and "-" in the cost column


class _FakeOT:
    """``ot.sinkhorn`` returning a fixed plan."""

    def __init__(self, plan, niter):
        self.plan, self.niter = plan, niter

    def sinkhorn(self, a, b, M, reg, **kw):
        return self.plan, {"niter": self.niter}


def test_failed_pot_runs_are_marked():
    a = b = np.full(2, 0.5)
    cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    status, cst, err, nit, _ = _run_pot(_FakeOT(np.full((2, 2), np.nan), 3), a, b, cost,
                                        0.1, "sinkhorn", 1e-6, 10)
    assert status == "FAILED: NaN/inf" and math.isnan(cst)
    # POT logs the index of its last iteration: 9 is the 10th
    status, cst, err, nit, _ = _run_pot(_FakeOT(np.eye(2), 9), a, b, cost, 0.1,
                                        "sinkhorn", 1e-6, 10)
    assert status == "not converged within 10 iterations" and nit == 10
    assert math.isnan(cst) and err == pytest.approx(2.0)
    status, cst, err, nit, _ = _run_pot(_FakeOT(np.eye(2), 4), a, b, cost, 0.1,
                                        "sinkhorn", 1e-6, 10)
    assert status == "stopped early, err > tol" and nit == 5 and math.isnan(cst)
    status, cst, err, nit, _ = _run_pot(_FakeOT(np.eye(2) / 2, 3), a, b, cost, 0.1,
                                        "sinkhorn", 1e-6, 10)
    assert status == "ok" and cst == 0.0 and err == 0.0 and nit == 4
    status = "not converged within 10000 iterations"
    table = _table([("POT", "sinkhorn", 0.1, status, float("nan"), 2.0, 10000, 0.1),
                    ("ottools", "log", 0.1, "0 ok", 0.5, 1e-7, 30, 0.1)])
    lines = table.splitlines()
    assert lines[-2].split()[3:11] == status.split() + ["-", "2.00e+00", "10000"]
    assert len({len(line) for line in lines}) == 1  # the columns stay aligned


def test_pot_runs_to_our_tolerance():
    ot = pytest.importorskip("ot")
    x, y = demo_clouds(60)
    cost = ottools.cost_matrix(x, y)
    cost /= cost.max()
    a = b = np.full(60, 1 / 60)
    for method in ("sinkhorn", "sinkhorn_log"):
        status, _, err, _, _ = _run_pot(ot, a, b, cost, 0.05, method, 1e-7, 5000)
        assert status == "ok" and err <= 1e-7, (method, err)


def test_progress_names_the_reported_method_and_never_prints_err_inf():
    stream = io.StringIO()
    prog = _cli.Progress("ottools reg=0.01", stream=stream)
    prog.t0 -= 10.0
    for nit, err in [(10, math.inf), (20, 0.5)]:
        prog.last = -math.inf
        prog(types.SimpleNamespace(nit=nit, err=err, get=lambda k, d=None: "sns"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert all("ottools reg=0.01 sns:" in ln for ln in lines)
    assert "inf" not in lines[0] and "warm-up" in lines[0]
    assert "err 5.00e-01" in lines[1]
    assert [h[:2] for h in prog.history] == [(20, 0.5)]  # the plot gets finite err only


def test_cli_module_loads_neither_pot_nor_matplotlib_nor_the_demo():
    import inspect

    source = inspect.getsource(_cli)
    assert "matplotlib" not in source and "import ot" not in source and "ot.sinkhorn" not in source
    code = ("import sys, ottools._cli; "
            "print(','.join(m for m in ('ot', 'matplotlib', 'ottools._cli_demo') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


_LOAD_ORDER = """
import sys
import numpy as np
import ottools, ottools._costs as costs, ottools._problem as problem
assert "scipy.optimize" not in sys.modules and "numba" not in sys.modules
seen = []
def loaded():
    return ("scipy.optimize" in sys.modules, "numba" in sys.modules)
def spy(real, name):
    def wrapper(*args, **kwargs):
        seen.append((name, loaded()))
        return real(*args, **kwargs)
    return wrapper
costs.cost_matrix = spy(costs.cost_matrix, "cost_matrix")
class NumPy:  # np.empty inside ottools._problem.allocate, as it runs
    def __getattr__(self, name):
        return getattr(np, name)
    empty = staticmethod(spy(np.empty, "allocate"))
problem.np = NumPy()
{body}
print(seen)
"""


def _load_order(body, tmp_path):
    out = subprocess.run([sys.executable, "-c", _LOAD_ORDER.format(body=body)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    return eval(out.stdout.strip().splitlines()[-1])


def test_solve_loads_scipy_and_numba_before_the_cost(tmp_path):
    # At the memory edge the first `import scipy.optimize` after the large arrays spun in
    # mmap for minutes: the CLI loads SciPy and Numba before it builds the cost.
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((30, 2)))
    np.save(tmp_path / "y.npy", rng.random((20, 2)))
    seen = _load_order("from ottools._cli import main\n"
                       "assert main(['solve', 'x.npy', 'y.npy', '--reg', '0.1', "
                       "'--out', 'p.npy']) == 0", tmp_path)
    assert seen[0] == ("cost_matrix", (True, True))


def test_the_first_large_array_of_a_solve_comes_after_scipy_and_numba(tmp_path):
    # Zero weights: the problem restricted to the positive weights is the first large
    # array, allocated before the solver proper started.
    seen = _load_order(
        "rng = np.random.default_rng(0)\n"
        "a = np.r_[0.0, np.full(29, 1 / 29)]\n"
        "r = ottools.sinkhorn(a, None, rng.random((30, 20)), 0.1)\n"
        "assert r.success", tmp_path)
    assert seen and all(state == (True, True) for _, state in seen), seen


# ----------------------------------------------------------------------------- review: cli


@pytest.mark.parametrize("ext", ["npy", "csv"])
def test_solve_dtype_float32_casts_the_weights_too(clouds, tmp_path, capsys, ext):
    """A float64 --a/--b file (.csv and .txt always are) made --dtype float32 solve in
    float64: a float64 plan, at float64's tol."""
    px, py, _, _ = clouds
    pa, pb = tmp_path / "a.npy", tmp_path / f"b.{ext}"
    np.save(pa, np.full(30, 1 / 30))
    np.save(pb, np.full(20, 1 / 20)) if ext == "npy" else np.savetxt(pb, np.full(20, 1 / 20))
    out = tmp_path / "p.npy"
    assert main(["solve", px, py, "--reg", "0.05", "--dtype", "float32", "--a", str(pa),
                 "--b", str(pb), "--out", str(out)]) == 0
    assert "tol=0.0001," in capsys.readouterr().out  # float32's default tol
    assert np.load(out).dtype == np.float32


def test_solve_memory_guard_takes_the_dtype_of_the_weights(tmp_path, monkeypatch, capsys):
    """float32 points with a float64 --a solve in float64; the guard assumed float32."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40_000, 2), np.float32))
    np.save(tmp_path / "a.npy", np.full(40_000, 1 / 40_000))
    monkeypatch.setattr(_cli, "available_memory", lambda: 8 * 1024 ** 3)
    calls = []
    monkeypatch.setattr(ottools._costs, "cost_matrix", lambda *a, **k: calls.append(1))
    px, pa = str(tmp_path / "x.npy"), str(tmp_path / "a.npy")
    assert main(["solve", px, px, "--reg", "0.1", "--method", "log", "--a", pa]) == 2
    assert "(2 arrays of 40000 x 40000 float64)" in _one_line(capsys.readouterr().err)
    assert main(["solve", px, px, "--reg", "0.1", "--method", "log", "--a", pa,
                 "--dtype", "float32"]) == 2
    assert "(3 arrays of 40000 x 40000 float32)" in _one_line(capsys.readouterr().err)
    assert calls == []


@pytest.mark.parametrize("option, data, match", [
    ("--a", np.full(20, 1 / 20),
     "--a file '{a}' must have length 30: X file '{x}' has 30 points, but --a file '{a}' "
     "has length 20"),
    ("--b", np.full(20, 2 / 20),
     "the uniform source weights and --b file '{a}' must have the same total mass"),
    ("Y", np.array([[0.0, np.nan]]), "Y file '{a}' must be finite"),
])
def test_solve_errors_name_the_files_not_the_arguments(clouds, tmp_path, capsys, option,
                                                      data, match):
    """The library's messages named `a`, `y` and "`cost` has shape (30, 20)"."""
    px, py, _, _ = clouds
    path = str(tmp_path / "data.npy")
    np.save(path, data)
    argv = (["solve", px, path] if option == "Y" else ["solve", px, py, option, path])
    assert main(argv + ["--reg", "0.1"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert match.format(a=path, x=px) in err and "`" not in err, err


def test_pairwise_errors_name_the_options(clouds, tmp_path, capsys):
    """--cost listed "or a callable"; --n-projections was `metric_kwargs['n_projections']`."""
    px, py, _, _ = clouds
    out = str(tmp_path / "D.npy")
    assert _run(["pairwise", px, py, "--metric", "sinkhorn", "--reg", "0.1", "--cost", "foo",
                 "--out", out, "--no-progress"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "argument --cost: unknown metric 'foo'; valid: braycurtis" in err, err
    assert "callable" not in err
    assert _run(["pairwise", px, py, "--metric", "sliced_wasserstein", "--n-projections",
                 str(10 ** 12), "--out", out, "--no-progress"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"ottools pairwise: error: --n-projections={10 ** 12} (d=2) needs "
                          "about"), err
    assert "metric_kwargs" not in err


def test_pairwise_cost_names_are_resolved(clouds, tmp_path, capsys):
    px, py, x, y = clouds
    out = tmp_path / "D.npy"
    assert _run(["pairwise", px, py, "--metric", "exact", "--cost", "L1", "--out", str(out),
                 "--no-progress"]) == 0
    expected = ottools.emd(None, None, ottools.cost_matrix(x, y, "cityblock")).fun
    assert np.load(out)[0, 1] == pytest.approx(expected, rel=1e-12)


def test_pairwise_takes_negative_jobs_and_the_minkowski_exponent(clouds, tmp_path,
                                                                 monkeypatch, capsys):
    """--jobs -2 (all cores but one, as the API's n_jobs) was refused, and --p with
    --cost minkowski / minkowski_p (the ground cost's exponent) too."""
    from ottools import _pairwise_cli

    px, py, x, y = clouds
    seen = []

    def spy(*args, **kw):
        seen.append(kw["n_jobs"])
        return ottools.pairwise_distances(*args, **kw)

    monkeypatch.setattr(_pairwise_cli, "pairwise_distances", spy)
    out = tmp_path / "D.npy"
    for cost in ("minkowski", "minkowski_p"):
        assert _run(["pairwise", px, py, "--metric", "exact", "--cost", cost, "--p", "3",
                     "--jobs", "-2", "--out", str(out), "--no-progress"]) == 0
        expected = ottools.emd(None, None, ottools.cost_matrix(x, y, cost, p=3)).fun
        assert np.load(out)[0, 1] == expected
    assert seen == [-2, -2]
    assert _run(["pairwise", px, py, "--metric", "sinkhorn", "--reg", "0.1", "--cost",
                 "minkowski", "--p", "1.5", "--out", str(out), "--no-progress"]) == 0
    expected = ottools.sinkhorn(None, None, ottools.cost_matrix(x, y, "minkowski", p=1.5),
                                0.1).fun
    assert np.load(out)[0, 1] == pytest.approx(expected, rel=1e-12)


def test_demo_warms_up_on_the_timed_problem(monkeypatch, capsys):
    """The warm-up ran on a 20 x 20 corner: the kernels chosen by size (parallel, float32
    sweeps) and the Newton stage's compiled in the first timed rows on a fresh cache."""
    from ottools import _cli_demo

    calls = []  # (cost shape, method, timed, result)

    def spy(a, b, cost, reg, **kw):
        res = ottools.sinkhorn(a, b, cost, reg, **kw)
        calls.append((cost.shape, kw["method"], isinstance(kw["callback"], _cli.Progress), res))
        return res

    monkeypatch.setattr(_cli_demo, "sinkhorn", spy)
    assert run_demo(build_parser().parse_args(["demo", "--n", "60", "--reg", "0.05",
                                               "--no-pot"])) == 0
    first = next(k for k, call in enumerate(calls) if call[2])
    warm, timed = calls[:first], calls[first:]
    assert all(call[2] for call in timed)
    assert sorted(call[1] for call in warm) == sorted(_cli.SINKHORN_METHODS)
    assert all(call[0] == (60, 60) for call in warm)  # the timed problem's size
    assert any("newton" in call[3].stages for call in warm)
    assert all(call[3].nit <= 10 for call in warm)  # a few iterations each


class _CapOT:
    """``ot.sinkhorn`` recording its ``numItermax``."""

    def __init__(self):
        self.caps = []

    def sinkhorn(self, a, b, M, reg, numItermax, **kw):
        self.caps.append(numItermax)
        return np.outer(a, b), {"niter": 0}


@pytest.mark.parametrize("extra, cap", [
    ([], None),  # twice the iterations of ottools' log, plus 100
    (["--maxiter", "30"], 30),  # at most --maxiter
    (["--pot-maxiter", "40"], 40),
])
def test_demo_caps_pot_by_the_iterations_of_the_same_algorithm(monkeypatch, capsys, extra,
                                                               cap):
    """--pot-maxiter defaulted to 300: every POT row failed at the demo's reg = 0.01."""
    fake = _CapOT()
    monkeypatch.setitem(sys.modules, "ot", fake)
    assert run_demo(build_parser().parse_args(["demo", "--n", "20", "--reg", "0.5"]
                                              + extra)) == 0
    out = capsys.readouterr().out
    log_row = next(ln for ln in out.splitlines() if ln.startswith("ottools  log"))
    cap = 2 * int(log_row.split()[-2]) + 100 if cap is None else cap
    assert fake.caps == [cap] * 3


def test_demo_pot_converges_at_the_default_reg(capsys):
    pytest.importorskip("ot")
    assert run_demo(build_parser().parse_args(["demo", "--n", "300", "--reg", "0.01"])) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("POT  ")]
    assert len(rows) == 3 and all(r[3] == "ok" for r in rows), rows


def test_solve_dtype_float32_cast_beyond_range_says_so(tmp_path, capsys):
    """A finite value beyond float32's range became inf in the cast of --dtype float32,
    and the error read "`x` must be finite" as if the file held it: the line names the
    file, the value and the dtype."""
    x = np.random.default_rng(0).random((5, 2))
    x[2, 1] = 1e100  # (its squared distances fit float64)
    np.save(tmp_path / "x.npy", x)
    px = str(tmp_path / "x.npy")
    assert main(["solve", px, px, "--reg", "0.1", "--dtype", "float32"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "X file" in err and "1e+100" in err and "--dtype float32" in err, err
    assert main(["solve", px, px, "--reg", "0.1"]) in (0, 1)  # float64 holds it
