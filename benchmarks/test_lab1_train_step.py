"""Lab 1 benchmarks: one training step (forward, cross-entropy, backward, SGD with
momentum) of our numpy autograd against the same model in PyTorch on the CPU — same
batch, same initial weights (ours copied into torch), same dtype — timed interleaved in
one run.  Both sides are pinned to one thread (numpy's BLAS via threadpoolctl, torch via
``set_num_threads``): at these sizes a second thread only adds noise on a 2-core machine.

Sizes as the lab trains them: MLP 64-256-128-10 and CNN conv32-conv64 on 8×8 digits,
batch 64.  Target for both fp32 steps: ≤ 1.5× PyTorch's time (the ratio of medians).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from mlsys_labs.common.bench import compare, record_figure
from mlsys_labs.nn import CNN, MLP, SGD, Tensor, cross_entropy, load_digits_split

LAB = 1
BATCH = 64
TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(previous)


def _batch(dtype):
    x, y, _, _ = load_digits_split(seed=0)
    return x[:BATCH].astype(dtype), y[:BATCH]


def _t(a, dtype):
    return torch.tensor(np.ascontiguousarray(a), dtype=dtype)


def torch_mlp(ours: MLP, dtype) -> torch.nn.Sequential:
    layers = []
    for layer in ours.layers:
        lin = torch.nn.Linear(*layer.weight.shape, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(_t(layer.weight.data.T, dtype))
            lin.bias.copy_(_t(layer.bias.data, dtype))
        layers += [lin, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def torch_cnn(ours: CNN, dtype) -> torch.nn.Sequential:
    nn = torch.nn
    c1, c2 = ours.conv1.weight.shape[0], ours.conv2.weight.shape[0]
    model = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(c1, c2, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(c2 * 4, 10, dtype=dtype))
    with torch.no_grad():
        for mine, theirs in [(ours.conv1, model[0]), (ours.conv2, model[3])]:
            theirs.weight.copy_(_t(mine.weight.data, dtype))
            theirs.bias.copy_(_t(mine.bias.data, dtype))
        model[7].weight.copy_(_t(ours.head.weight.data.T, dtype))
        model[7].bias.copy_(_t(ours.head.bias.data, dtype))
    return model


def _steps(ours_model, torch_model, x, y, torch_x, lr=0.05):
    opt = SGD(ours_model.parameters(), lr=lr, momentum=0.9)
    t_opt = torch.optim.SGD(torch_model.parameters(), lr=lr, momentum=0.9)
    t_y = torch.as_tensor(y)

    def ours_step():
        loss = cross_entropy(ours_model(Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    def torch_step():
        loss = torch.nn.functional.cross_entropy(torch_model(torch_x), t_y)
        t_opt.zero_grad()
        loss.backward()
        t_opt.step()
        return loss

    return ours_step, torch_step


def _same_first_loss(ours_step, torch_step, dtype):
    """Before timing: the two steps compute the same loss (same model, same batch)."""
    a, b = ours_step().item(), torch_step().item()
    assert abs(a - b) <= (1e-4 if dtype == np.float32 else 1e-10) * max(1.0, abs(b)), (a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["fp32", "fp64"])
def test_mlp_train_step(benchmark, dtype):
    x, y = _batch(dtype)
    ours = MLP([64, 256, 128, 10], seed=0, dtype=dtype)
    theirs = torch_mlp(ours, TORCH_DTYPES[dtype])
    ours_step, torch_step = _steps(ours, theirs, x, y, _t(x, TORCH_DTYPES[dtype]))
    _same_first_loss(ours_step, torch_step, dtype)
    cmp = compare(ours_step, torch_step, warmup=20, repeats=201)
    benchmark.extra_info.update(cmp.as_dict())
    benchmark.pedantic(ours_step, rounds=20, iterations=5)
    name = "fp32" if dtype == np.float32 else "fp64"
    record_figure(LAB, f"MLP train step time ({name}, batch {BATCH}): ours / PyTorch", value=cmp.ratio, unit="x",
                  target="<= 1.5" if dtype == np.float32 else None, peer="PyTorch CPU (1 thread each)",
                  detail={**cmp.as_dict(), "model": "MLP 64-256-128-10", "batch": BATCH})


def test_cnn_train_step(benchmark):
    dtype = np.float32
    x, y = _batch(dtype)
    ours = CNN(channels=(32, 64), seed=0, dtype=dtype)
    theirs = torch_cnn(ours, torch.float32)
    ours_step, torch_step = _steps(ours, theirs, x, y, _t(x.reshape(-1, 1, 8, 8), torch.float32))
    _same_first_loss(ours_step, torch_step, dtype)
    cmp = compare(ours_step, torch_step, warmup=5, repeats=61)
    benchmark.extra_info.update(cmp.as_dict())
    benchmark.pedantic(ours_step, rounds=5, iterations=1)
    record_figure(LAB, f"CNN train step time (fp32, batch {BATCH}): ours / PyTorch", value=cmp.ratio, unit="x",
                  target="<= 1.5", peer="PyTorch CPU (1 thread each)",
                  detail={**cmp.as_dict(), "model": "CNN conv32-pool-conv64-pool-linear", "batch": BATCH})
