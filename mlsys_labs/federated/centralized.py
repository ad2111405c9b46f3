"""The centralized baseline: the same model, the same optimiser, all the training data
in one place — the accuracy federated learning tries to reach without moving the data."""
from __future__ import annotations

from .data import federation_digits
from .model import new_model
from .train import evaluate, local_steps, train_local


def train_centralized(epochs: int = 20, batch_size: int = 32, lr: float = 0.2, seed: int = 0) -> dict:
    """Train on the whole training split; returns per-epoch test accuracy."""
    x, y, x_test, y_test = federation_digits(seed)
    model = new_model(seed)
    history = []
    for epoch in range(1, epochs + 1):
        train_local(model, x, y, steps=local_steps(len(x), 1, batch_size), batch_size=batch_size,
                    lr=lr, seed=seed * 1000 + epoch)
        loss, acc = evaluate(model, x_test, y_test)
        history.append({"epoch": epoch, "accuracy": acc, "loss": loss})
    return {"epochs": history, "final_accuracy": history[-1]["accuracy"]}
