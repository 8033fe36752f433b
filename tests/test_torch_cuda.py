"""ottools.torch on CUDA tensors: every function and module returns its value on the
inputs' device and dtype, gradients land on the device of the tensor that needs them, and
both equal the same call on CPU copies (the solve runs on the CPU either way, so they
agree exactly). Skipped without a CUDA GPU; run on a GPU machine with
``python -m pytest tests/test_torch_cuda.py``. ``OTTOOLS_TEST_DEVICE`` names another
device to run them on (``cpu`` checks the tests themselves)."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ottools.torch as ott  # noqa: E402

DEVICE = os.environ.get("OTTOOLS_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                                reason="needs a CUDA GPU")

DTYPES = [torch.float32, torch.float64]


def _pair(arr, dtype, grad=True):
    """The same values as a CUDA leaf and a CPU leaf."""
    cpu = torch.tensor(np.asarray(arr), dtype=dtype)
    gpu = cpu.to(DEVICE)
    if grad:
        cpu.requires_grad_()
        gpu.requires_grad_()
    return gpu, cpu


def _same(gpu_out, cpu_out, dtype, rtol=0.0):
    assert gpu_out.device.type == DEVICE and gpu_out.dtype == dtype
    torch.testing.assert_close(gpu_out.detach().cpu(), cpu_out.detach(), rtol=rtol,
                               atol=0.0)


def _check(fn, tensors, dtype, rtol=0.0):
    """``fn(*tensors)`` on CUDA and on CPU copies: equal values; equal gradients, on the
    device and in the dtype of the tensor that needs them (``rtol`` where torch computes
    part of the value on the device)."""
    pairs = [_pair(t, dtype, grad) for t, grad in tensors]
    vg = fn(*(g for g, _ in pairs))
    vc = fn(*(c for _, c in pairs))
    _same(vg, vc, dtype, rtol)
    vg.sum().backward()
    vc.sum().backward()
    for (g, c), (_, grad) in zip(pairs, tensors):
        if grad:
            assert g.grad is not None and g.grad.device.type == DEVICE
            _same(g.grad, c.grad, dtype, rtol)
    return vg


@pytest.fixture
def pts():
    rng = np.random.default_rng(7)
    x, y = rng.random((40, 3)), rng.random((30, 3)) + 0.2
    a, b = rng.random(40) + 0.1, rng.random(30) + 0.1
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sinkhorn_on_cuda(pts, dtype):
    x, y, a, b = pts
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    _check(lambda a, b, c: ott.sinkhorn(a, b, c, 0.05), [(a, True), (b, True), (cost, True)],
           dtype)
    _check(lambda a, b, c: ott.sinkhorn(a, b, c, 0.05, reg_m=1.0),
           [(a, True), (b, True), (cost, True)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [{}, {"debias": False}, {"reg_m": 0.5},
                                {"metric": "euclidean"}, {"online": True}],
                         ids=["divergence", "entropic", "unbalanced", "euclidean", "online"])
def test_sinkhorn_loss_on_cuda(pts, dtype, kw):
    x, y, a, b = pts
    _check(lambda x, y, a, b: ott.sinkhorn_loss(x, y, a, b, reg=0.05, **kw),
           [(x, True), (y, True), (a, True), (b, True)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_loss_on_cuda(dtype):
    rng = np.random.default_rng(3)
    x, y = rng.random((4, 25, 2)), rng.random((4, 20, 2))
    v = _check(lambda x, y: ott.sinkhorn_loss(x, y, reg=0.05), [(x, True), (y, True)], dtype)
    assert v.shape == (4,)


def test_callable_metric_on_cuda(pts):
    """torch computes the costs on the device (its cdist rounds differently there)."""
    x, y, _, _ = pts
    _check(lambda x, y: ott.sinkhorn_loss(x, y, reg=0.1,
                                          metric=lambda u, v: torch.cdist(u, v) ** 2),
           [(x, True), (y, True)], torch.float64, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sliced_family_on_cuda(pts, dtype):
    x, y, a, b = pts
    for fn in (lambda x, y, a, b: ott.sliced_wasserstein(x, y, a, b, rng=1),
               lambda x, y, a, b: ott.max_sliced_wasserstein(x, y, a, b, rng=1),
               lambda x, y, a, b: ott.distributional_sliced_wasserstein(x, y, a, b, rng=1)):
        _check(fn, [(x, True), (y, True), (a, False), (b, False)], dtype)
    # a torch.Generator on the CPU seeds the directions of CUDA inputs as of CPU ones
    xg, xc = _pair(x, dtype)
    vg = ott.sliced_wasserstein(xg, xg.detach() + 1, rng=torch.Generator().manual_seed(5))
    vc = ott.sliced_wasserstein(xc, xc.detach() + 1, rng=torch.Generator().manual_seed(5))
    _same(vg, vc, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reg", ["auto", 0])
def test_monge_gap_on_cuda(pts, dtype, reg):
    x = pts[0]
    tx = 2.0 * x[::-1] + 0.3
    _check(lambda x, tx: ott.monge_gap(x, tx, reg=reg), [(x, True), (tx, True)], dtype)


def test_modules_train_on_cuda(pts):
    """A few Adam steps on a CUDA parameter through each module: the losses fall, the
    parameter stays on the device."""
    x, y, _, _ = pts
    target = torch.tensor(y, dtype=torch.float32, device=DEVICE)
    for loss_fn in (ott.SinkhornLoss(reg=0.05), ott.SlicedWassersteinLoss(rng=0)):
        z = torch.tensor(x, dtype=torch.float32, device=DEVICE, requires_grad=True)
        opt = torch.optim.Adam([z], lr=0.05)
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = loss_fn(z, target)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert z.device.type == DEVICE and z.grad.device.type == DEVICE
        assert losses[-1] < 0.5 * losses[0]
    lin = torch.nn.Linear(3, 3).to(DEVICE)
    gap = ott.MongeGapRegularizer(reg=0.1)(target, lin(target))
    gap.backward()
    assert gap.device.type == DEVICE and lin.weight.grad.device.type == DEVICE


def test_gradcheck_on_cuda(pts):
    x, y, a, b = pts
    xs = torch.tensor(x[:6], dtype=torch.float64, device=DEVICE, requires_grad=True)
    ys = torch.tensor(y[:5], dtype=torch.float64, device=DEVICE)
    assert torch.autograd.gradcheck(
        lambda x: ott.sinkhorn_loss(x, ys, reg=0.3, tol=1e-13, maxiter=100_000), (xs,))


@pytest.mark.skipif(DEVICE == "cpu", reason="needs a second device")
def test_mixed_devices_and_array_likes(pts):
    x, y, a, b = pts
    xg = torch.tensor(x, device=DEVICE)
    with pytest.raises(ValueError, match=r"same device.*`x` on cuda.*`y` on cpu"):
        ott.sinkhorn_loss(xg, torch.tensor(y), reg=0.1)
    with pytest.raises(ValueError, match=r"same device.*`a` on cpu.*`cost` on cuda"):
        ott.sinkhorn(torch.tensor(a), None, torch.zeros(40, 30, device=DEVICE), 0.1)


def test_array_likes_follow_the_first_tensor(pts):
    x, y, a, b = pts
    xg = torch.tensor(x, device=DEVICE)
    v = ott.sinkhorn_loss(xg, y, a.tolist(), b, reg=0.1)
    assert v.device.type == DEVICE
    torch.testing.assert_close(
        v.cpu(), ott.sinkhorn_loss(torch.tensor(x), y, a.tolist(), b, reg=0.1),
        rtol=0, atol=0)
