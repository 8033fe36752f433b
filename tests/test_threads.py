"""Thread count under load (``ottools._kernels._jit.threads_for_load``): the probe's
arithmetic, and results that do not depend on how many threads ran the row blocks."""

import numba
import numpy as np
import pytest

import ottools
from ottools._divergence import divergence_value_and_grad
from ottools._kernels import _jit


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _probe(busy, own, clock, cpus=(0, 1)):
    return _jit.LoadProbe(list(cpus), lambda c: busy[0], window=0.2, clock=clock,
                          cpu_time=lambda: own[0])


def test_probe_counts_the_cores_other_processes_use():
    clock, busy, own = _Clock(), [100.0], [5.0]
    p = _probe(busy, own, clock)
    assert p.threads(2) == 2  # no full window yet: the caller's count
    # 1 s: the cores were busy 1.9 s, 0.9 s of it this process: others took one core
    clock.t, busy[0], own[0] = 1.0, 101.9, 5.9
    assert p.threads(2) == 1 and p.free == pytest.approx(1.0)
    assert p.threads(1) == 1
    # a short interval keeps the last answer without reading the counters
    clock.t, busy[0] = 1.05, float("nan")
    assert p.threads(2) == 1
    # next full window: only this process was busy
    clock.t, busy[0], own[0] = 2.0, 103.8, 7.8
    assert p.threads(2) == 2 and p.free == pytest.approx(2.0)
    # half a core taken by others rounds to the two threads
    clock.t, busy[0], own[0] = 3.0, 105.3, 8.8
    assert p.threads(2) == 2 and p.free == pytest.approx(1.5)
    assert p.threads(8) == 2  # never more than the free cores


def test_probe_ignores_a_tenth_of_the_cores_as_noise():
    """16 cores: 1.1 cores of others' load (an idle virtual machine's noise) keeps the 16
    threads (15 would run 16 row blocks in two rounds); 3 cores of it lower them to 13."""
    clock, busy, own = _Clock(), [100.0], [5.0]
    p = _probe(busy, own, clock, cpus=range(16))
    clock.t, busy[0], own[0] = 1.0, 100.0 + 15.0 + 1.1, 20.0
    assert p.threads(16) == 16 and p.free == pytest.approx(16.0)
    clock.t, busy[0], own[0] = 2.0, busy[0] + 13.0 + 3.0, 33.0
    assert p.threads(16) == 13 and p.free == pytest.approx(13.0)


def test_probe_without_counters_keeps_the_callers_count():
    p = _jit.LoadProbe([0, 1], lambda c: None)
    assert p.threads(2) == 2
    assert _jit._proc_stat_busy([10**6]) is None  # a core that does not exist


class _Stub:
    """A probe that always says one core is free, counting its calls."""

    def __init__(self):
        self.calls = 0

    def threads(self, want):
        self.calls += 1
        return 1


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_results_do_not_depend_on_the_threads_that_ran_the_blocks(rng, monkeypatch):
    """Under load the row blocks of the caller's thread count run on fewer threads: the
    plans, potentials and gradients are the same to the bit, the caller's thread count
    is restored, and nested entry points probe once."""
    x, y = rng.random((700, 3)), rng.random((600, 3)) + 0.1  # above 2**18 entries
    cost = ottools.cost_matrix(x, y)
    assert _jit.row_chunks(*cost.shape) > 1
    ref = ottools.sinkhorn(None, None, cost, 0.01)
    ref_v, _, ref_g = divergence_value_and_grad(x, y, reg=0.01, need=(True, True, False,
                                                                       False))
    stub = _Stub()
    monkeypatch.setattr(_jit, "_PROBE", [stub])
    before = numba.get_num_threads()
    res = ottools.sinkhorn(None, None, cost, 0.01)
    assert stub.calls == 1 and numba.get_num_threads() == before
    np.testing.assert_array_equal(res.plan, ref.plan)
    np.testing.assert_array_equal(res.f, ref.f)
    assert res.nit == ref.nit
    v, _, g = divergence_value_and_grad(x, y, reg=0.01, need=(True, True, False, False))
    assert stub.calls == 2 and numba.get_num_threads() == before
    assert v == ref_v
    np.testing.assert_array_equal(g[0], ref_g[0])
    np.testing.assert_array_equal(g[1], ref_g[1])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_batch_pool_workers_share_the_threads_and_keep_the_blocks(rng, monkeypatch):
    """A batch of pairs runs on a pool of threads, each with its share of the caller's
    Numba threads (not all of them: w workers would launch w times as many), while the
    row blocks stay the caller's: every pair's value and gradient equal, to the bit, those
    of the same pair solved in the calling thread."""
    import ottools._divergence as dv

    x, y = rng.random((2, 700, 3)), rng.random((2, 600, 3)) + 0.1  # above 2**18 entries
    assert _jit.row_chunks(700, 600) > 1
    need = (True, True, False, False)
    seen = []
    inner = dv._value_and_grad

    def spy(*args, **kwargs):
        seen.append((numba.get_num_threads(), _jit.user_threads()))
        return inner(*args, **kwargs)

    monkeypatch.setattr(dv, "_value_and_grad", spy)
    user = numba.get_num_threads()
    v, _, g = divergence_value_and_grad(x, y, reg=0.01, need=need)
    assert seen == [(max(1, user // 2), user)] * 2
    assert numba.get_num_threads() == user
    for k in range(2):
        vk, _, gk = inner(x[k], y[k], reg=0.01, need=need)
        assert v[k] == vk
        np.testing.assert_array_equal(g[0][k], gk[0])
        np.testing.assert_array_equal(g[1][k], gk[1])


def test_batch_of_small_pairs_runs_in_the_calling_thread(rng, monkeypatch):
    """Pairs under _POOL_MIN_ENTRIES cost entries are solved as batches of problems in the
    caller's thread (the batch kernel's own threads aside; no pool of pair solves), with
    the plans and x-gradients of each pair alone."""
    import ottools._divergence as dv

    x, y = rng.random((3, 40, 2)), rng.random((3, 50, 2))
    assert 50 ** 2 < dv._POOL_MIN_ENTRIES
    calls = []
    monkeypatch.setattr(dv, "pool_map", lambda *args: calls.append(args))
    v, _, g = divergence_value_and_grad(x, y, reg=0.05)
    assert calls == []
    for k in range(3):
        vk, _, gk = dv._value_and_grad(x[k], y[k], reg=0.05)
        assert v[k] == vk
        np.testing.assert_array_equal(g[0][k], gk[0])


# ------------------------------------------------------------ pools and Ctrl-C (_pool)

def test_pool_map_keeps_the_order_and_raises_a_tasks_error():
    import time

    from ottools import _pool

    assert _pool.pool_map(lambda k: k * k, range(50), 2) == [k * k for k in range(50)]
    ran = []

    def task(k):
        if k == 0:
            raise ValueError("task 0")
        time.sleep(0.01)
        ran.append(k)

    with pytest.raises(ValueError, match="task 0"):
        _pool.pool_map(task, range(200), 2)
    time.sleep(0.05)
    assert len(ran) < 100  # the queued tasks were dropped (all 199 take 1 s on 2 threads)


def test_deferred_sigint_raises_at_the_end_of_the_block_only_on_the_main_thread():
    import signal
    import threading

    from ottools import _pool

    with pytest.raises(KeyboardInterrupt):
        with _pool.deferred_sigint() as flag:
            signal.raise_signal(signal.SIGINT)
            assert flag.hit  # the handler ran and did not raise
            after = True
    assert after
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = []

    def other():
        with _pool.deferred_sigint() as f:
            seen.append((f.hit, signal.getsignal(signal.SIGINT)))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [(False, signal.default_int_handler)]


_CTRL_C_POOL_CHILD = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_pool", sys.argv[1])
pool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pool)

def task(k):
    s = 0.0
    for i in range(2000):
        s += i * 1e-9
    return s

print("ready", flush=True)
try:
    while True:
        pool.pool_map(task, range(3000), 2)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_at_any_moment_of_a_pool_never_hangs():
    # Ctrl-C at random moments of many short pools. With ThreadPoolExecutor.map and a
    # KeyboardInterrupt raised inside its locks, 5 runs in 40 of this loop hung for ever.
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    from ottools import _pool

    if os.name != "posix":
        pytest.skip("POSIX signals")
    rnd = random.Random(0)
    for _ in range(16):
        proc = subprocess.Popen([sys.executable, "-c", _CTRL_C_POOL_CHILD, _pool.__file__],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rnd.uniform(0.05, 0.25))
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=5.0)  # TimeoutExpired if it hangs
            assert out.strip() == "interrupted", out
        finally:
            proc.kill()
            proc.wait()
