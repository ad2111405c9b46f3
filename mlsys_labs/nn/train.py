"""The training loop: forward, loss, backward, step (D2L §3.4; NNFS ch. 10 and 18)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data import batches, load_digits_split, random_shift
from .functional import cross_entropy
from .modules import CNN, MLP, Module, predict
from .optim import SGD, Adam, Optimizer, WarmupCosine
from .tensor import Tensor


@dataclass
class LearningCurves:
    """Per-epoch figures of one training run (what the demo plots)."""

    train_loss: list[float] = field(default_factory=list)   # mean loss per epoch
    test_accuracy: list[float] = field(default_factory=list)


def accuracy(model: Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x) == y).mean())


def fit(model: Module, optimizer: Optimizer, x: np.ndarray, y: np.ndarray, *, epochs: int,
        batch_size: int = 64, seed: int = 0, schedule=None, x_test=None, y_test=None,
        augment=None, progress: str | None = None) -> LearningCurves:
    """Train ``model`` with cross-entropy for ``epochs`` passes over (x, y).  ``schedule``
    (e.g. :class:`~mlsys_labs.nn.optim.WarmupCosine`) is stepped after every optimizer
    step; ``augment(x_batch, rng)`` transforms each training batch; ``progress`` names a tqdm bar (None: no bar)."""
    rng = np.random.default_rng(seed)
    curves = LearningCurves()
    epochs_iter = range(epochs)
    if progress:
        from tqdm import tqdm

        epochs_iter = tqdm(epochs_iter, desc=progress, unit="epoch")
    model.train()
    for _ in epochs_iter:
        total, count = 0.0, 0
        for xb, yb in batches(x, y, batch_size, rng):
            if augment is not None:
                xb = augment(xb, rng)
            loss = cross_entropy(model(Tensor(xb)), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            total += loss.item() * len(xb)
            count += len(xb)
        curves.train_loss.append(total / count)
        if x_test is not None:
            curves.test_accuracy.append(accuracy(model, x_test, y_test))
            model.train()
        if progress:
            postfix = {"loss": f"{curves.train_loss[-1]:.4f}"}
            if curves.test_accuracy:
                postfix["test acc"] = f"{curves.test_accuracy[-1]:.3f}"
            epochs_iter.set_postfix(postfix)
    return curves


# ------------------------------------------------------------------- the two recipes
# Digits is small (1,437 training images): ±1-pixel shifts (``random_shift``) are what
# lift both models over their targets; measured spread over seeds is in the README.

def train_mlp(seed: int = 0, epochs: int = 30, progress: str | None = None):
    """MLP 64-256-128-10, SGD (momentum 0.9, weight decay 1e-4), warm-up + cosine, batch
    32, shifted digits.  Returns (model, learning curves, test accuracy)."""
    x_train, y_train, x_test, y_test = load_digits_split(seed=0)
    model = MLP([64, 256, 128, 10], seed=seed)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    steps = epochs * -(-len(x_train) // 32)
    curves = fit(model, optimizer, x_train, y_train, epochs=epochs, batch_size=32, seed=seed,
                  schedule=WarmupCosine(optimizer, steps, warmup_steps=20), augment=random_shift,
                  x_test=x_test if progress else None, y_test=y_test, progress=progress)
    return model, curves, accuracy(model, x_test, y_test)


def train_cnn(seed: int = 0, epochs: int = 20, progress: str | None = None):
    """CNN (conv 32 → pool → conv 64 → pool → linear) in float32, Adam 3e-3, warm-up +
    cosine, batch 64, shifted digits.  Returns (model, learning curves, test accuracy)."""
    x_train, y_train, x_test, y_test = load_digits_split(seed=0)
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    model = CNN(channels=(32, 64), seed=seed, dtype=np.float32)
    optimizer = Adam(model.parameters(), lr=3e-3)
    steps = epochs * -(-len(x_train) // 64)
    curves = fit(model, optimizer, x_train, y_train, epochs=epochs, batch_size=64, seed=seed,
                  schedule=WarmupCosine(optimizer, steps, warmup_steps=20), augment=random_shift,
                  x_test=x_test if progress else None, y_test=y_test, progress=progress)
    return model, curves, accuracy(model, x_test, y_test)
