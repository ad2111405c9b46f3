"""The training loop: forward, loss, backward, step (D2L §3.4; NNFS ch. 10, 17)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data import batches
from .functional import cross_entropy
from .modules import Module, predict
from .optim import Optimizer
from .tensor import Tensor


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)   # mean loss per epoch
    test_accuracy: list[float] = field(default_factory=list)


def accuracy(model: Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x) == y).mean())


def fit(model: Module, optimizer: Optimizer, x: np.ndarray, y: np.ndarray, *, epochs: int,
        batch_size: int = 64, seed: int = 0, schedule=None, x_test=None, y_test=None,
        progress: str | None = None) -> History:
    """Train ``model`` with cross-entropy for ``epochs`` passes over (x, y).  ``schedule``
    (e.g. :class:`~mlsys_labs.nn.optim.WarmupCosine`) is stepped after every optimizer
    step; ``progress`` names a tqdm bar (None: no bar)."""
    rng = np.random.default_rng(seed)
    history = History()
    epochs_iter = range(epochs)
    if progress:
        from tqdm import tqdm

        epochs_iter = tqdm(epochs_iter, desc=progress, unit="epoch")
    model.train()
    for _ in epochs_iter:
        total, count = 0.0, 0
        for xb, yb in batches(x, y, batch_size, rng):
            loss = cross_entropy(model(Tensor(xb)), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            total += loss.item() * len(xb)
            count += len(xb)
        history.train_loss.append(total / count)
        if x_test is not None:
            history.test_accuracy.append(accuracy(model, x_test, y_test))
            model.train()
        if progress:
            postfix = {"loss": f"{history.train_loss[-1]:.4f}"}
            if history.test_accuracy:
                postfix["test acc"] = f"{history.test_accuracy[-1]:.3f}"
            epochs_iter.set_postfix(postfix)
    return history
