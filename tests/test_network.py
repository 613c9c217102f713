"""The network (utils/network.py) and its runs (utils/finetune.py) against naive per-chain code: torch.autograd
one chain at a time, an update written out by hand, the engine's noise streams."""
import math

import numpy as np
import pytest
import torch

from utils import engine, finetune
from utils.network import MLP, Phase, Recipe


def problem(k, *, n=9, d=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    X /= X.norm(dim=1, keepdim=True)
    y = (2 * torch.randint(0, 2, (n,), generator=g) - 1).to(dtype) if k == 2 else torch.randint(0, k, (n,), generator=g)
    return X, y


def autograd_gradient(model, theta_c, X, y):
    """The mean loss's gradient of ONE chain, written from the definition and differentiated by autograd."""
    d, H, out = X.shape[1], model.hidden, model.out
    t = theta_c.detach().clone().requires_grad_(True)
    W1, b1 = t[:d * H].view(d, H), t[d * H:d * H + H]
    W2, b2 = t[d * H + H:d * H + H + H * out].view(H, out), t[d * H + H + H * out:]
    z = torch.tanh(math.sqrt(d) * X @ W1 + b1) @ W2 + b2
    if out == 1:
        loss = torch.nn.functional.softplus(-y * z[:, 0]).mean()
    else:
        loss = torch.nn.functional.cross_entropy(z, y)
    (grad,) = torch.autograd.grad(loss, t)
    return loss.detach(), grad


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("per_chain", [False, True])
def test_batched_gradient_matches_a_per_chain_autograd_loop(k, per_chain):
    model = MLP(k, hidden=5)
    X, y = problem(k)
    C = 4
    theta = torch.randn(C, model.params(X.shape[1]), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    yt, data, _ = model.prepare(X, y)
    if per_chain:   # a different batch per chain: rows shifted by the chain's index
        idx = torch.stack([torch.roll(torch.arange(X.shape[0]), c)[:5] for c in range(C)])
        batch, labels = data[idx], yt[idx]
    else:
        idx = torch.arange(X.shape[0]).expand(C, -1)
        batch, labels = data, yt
    got = model.gradient(theta, batch, labels)
    logits = model.forward(theta, batch)[0]
    for c in range(C):
        loss, ref = autograd_gradient(model, theta[c], X[idx[c]], y[idx[c]])
        torch.testing.assert_close(got[c], ref, rtol=0, atol=1e-6)
        assert float(model.loss_values(logits, labels)[c].mean()) == pytest.approx(float(loss), rel=1e-12)


def test_numpy_statistics_match_autograd():
    """The audit's per-row losses and per-row gradients come from the same batched code."""
    model = MLP(2, hidden=3)
    X, y = problem(2, n=5, d=4)
    theta = torch.randn(3, model.params(4), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    L = model.loss(theta.numpy(), X.numpy(), y.numpy())
    G = model.loss_gradients(theta[1].numpy(), X.numpy(), y.numpy())
    assert L.shape == (3, 5) and G.shape == (5, model.params(4))
    for j in range(5):
        loss, grad = autograd_gradient(model, theta[1], X[j:j + 1], y[j:j + 1])
        assert L[1, j] == pytest.approx(float(loss), rel=1e-12)
        np.testing.assert_allclose(G[j], grad.numpy(), rtol=0, atol=1e-12)
    assert model.input_dim(theta.numpy()) == 4


def test_one_update_written_out():
    """x1 = Pi_C2(x0 (1 - gamma lam) - gamma Clip_C1(g(x0))) + sigma xi, xi chain c's own stream."""
    model = MLP(3, hidden=4)
    X, y = problem(3, n=8, d=5)
    task = finetune.to_net_task(X, y, model, dtype="float64")
    x0 = finetune.init_networks(model, C=3, d=5, generator=engine.generator_for(0, "i"), dtype="float64")
    x0[0] *= 20.0     # a large chain: its gradient and its model get clipped
    phase = Phase(gamma=0.3, lam=0.2, grad_clip=0.05, model_clip=1.5, sigma=0.7)
    got = finetune.run_networks(x0, task, phase=phase, steps=1, batch_size=8, generator=engine.generator_for(0, "n"))
    g = model.gradient(x0, task.data, task.y)
    g = g * torch.clamp(0.05 / g.norm(dim=1, keepdim=True), max=1.0)
    x = x0 * (1 - 0.3 * 0.2) - 0.3 * g
    x = x * torch.clamp(1.5 / x.norm(dim=1, keepdim=True), max=1.0)
    with engine.ChainNoise(engine.generator_for(0, "n"), tuple(x0.shape), 1, dtype=torch.float64) as noise:
        x = x + 0.7 * noise.next()
    torch.testing.assert_close(got, x, rtol=0, atol=1e-12)
    assert not torch.equal(got, x0)


def test_mini_batches_follow_each_chains_order():
    """Update u uses block (offset + u) mod ceil(n/b) of the chain's order; the last block may be short."""
    model = MLP(2, hidden=3)
    X, y = problem(2, n=7, d=4)
    task = finetune.to_net_task(X, y, model, dtype="float64")
    x0 = finetune.init_networks(model, C=2, d=4, generator=engine.generator_for(3, "i"), dtype="float64")
    perms = engine.make_perms(2, 7, generator=engine.generator_for(3, "p"))
    phase = Phase(gamma=0.5)
    got = finetune.run_networks(x0, task, phase=phase, steps=2, batch_size=3, perms=perms, offset=2)
    x = x0.clone()
    for block in (2, 0):     # blocks of 3: [0:3], [3:6], [6:7]; offset 2 starts at the short one
        for c in range(2):
            rows = perms[c, 3 * block:3 * block + 3]
            x[c] -= 0.5 * autograd_gradient(model, x[c], X[rows], y[rows])[1]
    torch.testing.assert_close(got, x, rtol=0, atol=1e-12)


def test_chain_results_do_not_depend_on_the_number_of_chains():
    model = MLP(2, hidden=4)
    X, y = problem(2, n=10, d=5)
    task = finetune.to_net_task(X, y, model, dtype="float64")
    phase = Phase(gamma=0.2, lam=0.1, grad_clip=1.0, sigma=0.3)
    runs = []
    for C in (2, 5):
        x0 = finetune.init_networks(model, C=C, d=5, generator=engine.generator_for(1, "i"), dtype="float64")
        perms = engine.make_perms(C, 10, generator=engine.generator_for(1, "p"))
        runs.append(finetune.run_networks(x0, task, phase=phase, steps=6, batch_size=4, perms=perms,
                                          generator=engine.generator_for(1, "n")))
    torch.testing.assert_close(runs[0], runs[1][:2], rtol=0, atol=0)


def test_shared_orders_equal_per_chain_copies_of_one_order():
    """One order for all chains (a stride-0 view) runs as shared products, with the same numbers."""
    model = MLP(2, hidden=4)
    X, y = problem(2, n=12, d=5)
    task = finetune.to_net_task(X, y, model, dtype="float64")
    x0 = finetune.init_networks(model, C=3, d=5, generator=engine.generator_for(2, "i"), dtype="float64")
    order = engine.make_perms(1, 12, generator=engine.generator_for(2, "p"))
    phase = Phase(gamma=0.4, grad_clip=0.5)
    shared = finetune.run_networks(x0, task, phase=phase, steps=5, batch_size=4, perms=order.expand(3, 12))
    copies = finetune.run_networks(x0, task, phase=phase, steps=5, batch_size=4, perms=order.repeat(3, 1).clone())
    torch.testing.assert_close(shared, copies, rtol=0, atol=1e-12)


def test_float32_follows_float64():
    model = MLP(2, hidden=8)
    X, y = problem(2, n=40, d=10)
    out = {}
    x0 = finetune.init_networks(model, C=2, d=10, generator=engine.generator_for(4, "i"), dtype="float64")
    for dt in ("float32", "float64"):
        task = finetune.to_net_task(X, y, model, dtype=dt)
        out[dt] = finetune.run_networks(x0, task, phase=Phase(gamma=0.5, lam=0.01, grad_clip=1.0), steps=20,
                                        batch_size=40)
    assert out["float32"].dtype == torch.float32
    out["float32"] = out["float32"].double()
    torch.testing.assert_close(out["float32"], out["float64"], rtol=1e-4, atol=1e-5)


def test_accuracy_counts_right_predictions():
    model = MLP(3, hidden=4)
    X, y = problem(3, n=30, d=5)
    theta = torch.randn(4, model.params(5), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = finetune.accuracy(theta, X, y, model)
    for c in range(4):
        z = model.forward(theta[c:c + 1], X * math.sqrt(5))[0][0]
        assert got[c] == pytest.approx(float((z.argmax(dim=1) == y).double().mean()))


def test_clip_models_and_the_recipe():
    theta = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    torch.testing.assert_close(finetune.clip_models(theta, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))
    r = Recipe(variant="model", C0=2.0)
    assert r.radius == 2.0 and r.constants(1e-3).C2 == 2.0
    assert r.epoch(267) == 3 and Recipe(batch_size="full").epoch(267) == 1
    fc = Recipe().constants(1e-3)   # C0 5, C1 1, lr 0.5, decay 1e-3: c^T = 1 - lam C0 / C1 at T ~ 10
    assert Recipe().steps(fc, 100) == 10


def test_divergence_is_an_error_and_the_linear_engine_refuses_networks():
    model = MLP(2, hidden=3)
    X, y = problem(2, n=6, d=4)
    task = finetune.to_net_task(X, y, model, dtype="float64")
    x0 = finetune.init_networks(model, C=1, d=4, generator=engine.generator_for(0, "i"), dtype="float64")
    with pytest.raises(engine.DivergenceError, match="lr="):
        finetune.run_networks(x0, task, phase=Phase(gamma=1e200, lam=1e200), steps=2, batch_size=6)
    with pytest.raises(ValueError, match="not strongly convex"):
        model.check_clipping(M=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_matches_cpu():
    model = MLP(2, hidden=8)
    X, y = problem(2, n=40, d=10)
    out = {}
    for dev in ("cpu", "cuda"):
        task = finetune.to_net_task(X, y, model, device=dev, dtype="float64")
        x0 = finetune.init_networks(model, C=3, d=10, generator=engine.generator_for(4, "i", device=dev),
                                    device=dev, dtype="float64")
        out[dev] = finetune.run_networks(x0, task, phase=Phase(gamma=0.5, grad_clip=1.0), steps=10,
                                         batch_size=40).cpu()
    torch.testing.assert_close(out["cuda"], out["cpu"], rtol=1e-9, atol=1e-10)
