"""End to end on real data: the MLP and the CNN learn scikit-learn's digits (seeded:
split seed 0, model seed 0) past their targets; the API lab 3 builds on keeps its shape."""
from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mlsys_labs.nn import MLP, SGD, Tensor, cross_entropy, load_digits_split, no_grad, train_cnn, train_mlp

pytestmark = pytest.mark.step(9)   # nothing new to write: your whole lab, trained


@pytest.mark.points(1)
def test_data_parallel_api_contract(rng):
    """What lab 3 (MPI data-parallel SGD) imports: one SGD step on a batch lowers the loss."""
    x_train, y_train, x_test, y_test = load_digits_split(seed=0, test_fraction=0.2)
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    assert x_train.dtype == np.float64 and y_train.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    model = MLP([64, 32, 10], seed=int(rng.integers(1000)))
    params = model.parameters()
    assert len(params) == 4 and all(isinstance(p.data, np.ndarray) for p in params)
    opt = SGD(params, lr=0.5, momentum=0.0, weight_decay=0.0)
    xb, yb = x_train[:128], y_train[:128]
    loss = cross_entropy(model(Tensor(xb)), yb)
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.data.shape for p in params)
    opt.step()
    with no_grad():
        after = cross_entropy(model(Tensor(xb)), yb)
    assert not after.requires_grad
    assert after.item() < loss.item(), f"one SGD step did not lower the loss ({loss.item()} -> {after.item()})"


@pytest.mark.points(3)
def test_mlp_reaches_97_percent_on_digits():
    with threadpool_limits(1):
        _, _, acc = train_mlp(seed=0)
    assert acc >= 0.97, f"MLP test accuracy {acc:.4f} < 0.97"


@pytest.mark.points(4)
@pytest.mark.slow
def test_cnn_reaches_98_percent_on_digits():
    with threadpool_limits(1):
        _, _, acc = train_cnn(seed=0)
    assert acc >= 0.98, f"CNN test accuracy {acc:.4f} < 0.98"
