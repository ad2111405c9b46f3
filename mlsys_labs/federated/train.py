"""Local training and evaluation — what one client does in one round.

FedAvg's client (McMahan et al. 2017, Algorithm 1 ClientUpdate) runs E epochs of
minibatch SGD on its own data starting from the global model w_t.  FedProx's client
(Li et al. 2020, Algorithm 2) minimises instead

    h_k(w; w_t) = F_k(w) + μ/2 · ‖w − w_t‖²

whose gradient adds μ(w − w_t): each local step is pulled back towards the global
model, which bounds how far heterogeneous clients drift and makes partial work (a
straggler's few steps) safe to average in.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def single_thread():
    """One torch thread while a client trains (many clients share 2 cores), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def proximal_term(model: nn.Module, global_params: list[torch.Tensor], mu: float) -> torch.Tensor:
    """FedProx's μ/2 · ‖w − w_t‖², summed over all parameters (a differentiable scalar)."""
    # BEGIN SOLUTION hint: sum over parameters of ((w - w_t) ** 2).sum(), times mu / 2
    total = torch.zeros((), dtype=torch.float32)
    for w, w_t in zip(model.parameters(), global_params):
        total = total + ((w - w_t) ** 2).sum()
    return 0.5 * mu * total
    # END SOLUTION


def local_steps(num_examples: int, epochs: int, batch_size: int) -> int:
    """SGD steps in ``epochs`` passes over ``num_examples`` samples."""
    return epochs * math.ceil(num_examples / batch_size)


def train_local(model: nn.Module, x: np.ndarray, y: np.ndarray, *, steps: int, batch_size: int,
                lr: float, mu: float = 0.0, seed: int = 0) -> float:
    """Run ``steps`` minibatch SGD steps on (x, y), in place; returns the mean loss.

    Minibatches come from reshuffled epochs drawn with ``seed`` (reproducible).  With
    ``mu > 0`` the loss adds :func:`proximal_term` against the weights at entry (w_t).
    """
    gen = torch.Generator().manual_seed(seed)
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    global_params = [p.detach().clone() for p in model.parameters()]
    losses = []
    model.train()
    with single_thread():
        # BEGIN SOLUTION hint: loop over minibatches of reshuffled epochs (torch.randperm with gen) until `steps` steps; loss = cross_entropy (+ proximal_term when mu > 0); zero_grad/backward/step
        done = 0
        while done < steps:
            order = torch.randperm(len(ys), generator=gen)
            for start in range(0, len(ys), batch_size):
                if done == steps:
                    break
                batch = order[start:start + batch_size]
                loss = F.cross_entropy(model(xs[batch]), ys[batch])
                if mu > 0:
                    loss = loss + proximal_term(model, global_params, mu)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
                done += 1
        return float(np.mean(losses)) if losses else float("nan")
        # END SOLUTION


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) on (x, y)."""
    model.eval()
    with single_thread():
        logits = model(torch.as_tensor(x))
        labels = torch.as_tensor(y)
        loss = F.cross_entropy(logits, labels).item()
        acc = (logits.argmax(dim=1) == labels).double().mean().item()
    return loss, acc
