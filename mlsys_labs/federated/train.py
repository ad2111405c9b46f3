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
    """FedProx's μ/2 · ‖w − w_t‖², summed over all parameters (a differentiable scalar).

    ``global_params`` are w_t, one float32 tensor per ``model.parameters()`` in the same
    order (detached: no gradient flows into them).  Returns a 0-dim float32 tensor whose
    gradient with respect to each parameter w is μ (w − w_t)."""
    # BEGIN SOLUTION [step 4] hint: zip(model.parameters(), global_params); sum of ((w - w_t) ** 2).sum() over the pairs, times mu / 2; keep it a torch tensor (no .item()) so it can be backpropagated
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

    Minibatches come from reshuffled epochs drawn with ``seed`` (reproducible): each epoch
    is ``torch.randperm(len(y), generator=gen)`` cut into consecutive batches of
    ``batch_size`` (the last one of an epoch may be smaller and is a step too), and epochs
    follow one another until exactly ``steps`` steps are done.  The loss of a step is the
    mean cross-entropy of the batch, plus :func:`proximal_term` against the weights at
    entry (w_t, ``global_params``) when ``mu > 0``; the optimiser is plain SGD at ``lr``
    (``opt``).  Returns the mean of the step losses (a float; nan for 0 steps).
    """
    gen = torch.Generator().manual_seed(seed)
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    global_params = [p.detach().clone() for p in model.parameters()]
    losses = []
    model.train()
    with single_thread():
        # BEGIN SOLUTION [step 5] hint: while fewer than `steps` steps: order = torch.randperm(len(ys), generator=gen), batches order[i:i + batch_size]; loss = F.cross_entropy(model(xs[b]), ys[b]) (+ proximal_term(model, global_params, mu) if mu > 0); opt.zero_grad(), loss.backward(), opt.step(); return the mean of loss.item()
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
