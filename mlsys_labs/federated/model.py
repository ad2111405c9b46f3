"""The model every client trains: a small MLP on 8×8 digits (64 → 64 → 10).

Small on purpose: a federated round ships the whole model twice per client, and on a
2-core machine dozens of clients train it many times per run.  Its weights travel as a
Flower ``ArrayRecord`` built from the ``state_dict`` (names → arrays).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class DigitsMLP(nn.Module):
    def __init__(self, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def new_model(seed: int) -> DigitsMLP:
    """The initial global model w_0, the same for a given seed on every machine."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = DigitsMLP()
    torch.random.set_rng_state(gen_state)
    return model


def get_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """The parameters as float64 numpy arrays (the server aggregates in float64)."""
    return {k: v.detach().cpu().numpy().astype(np.float64) for k, v in model.state_dict().items()}


def set_weights(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    model.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in weights.items()})


def to_record(weights: dict[str, np.ndarray]):
    """Weights → Flower ``ArrayRecord`` (the payload of a Message)."""
    from collections import OrderedDict

    from flwr.app import Array, ArrayRecord

    return ArrayRecord(OrderedDict((k, Array(np.ascontiguousarray(v))) for k, v in weights.items()))


def from_record(record) -> dict[str, np.ndarray]:
    """Flower ``ArrayRecord`` → weights as float64 numpy arrays."""
    return {k: np.asarray(record[k].numpy(), dtype=np.float64) for k in record.keys()}
