"""Server-side aggregation: how the replies of one round become the next global model.

All strategies see the same thing — the global weights w_t and, for each client k that
replied in time, its locally trained weights w_k and its number of examples n_k — and
differ only in the step they take:

- **FedAvg** (McMahan et al. 2017, Alg. 1):  w_{t+1} = Σ_k n_k w_k / Σ_k n_k.
- **FedProx** (Li et al. 2020): the same average; the difference is on the client (the
  proximal term μ, see ``train.py``) and in what it accepts: a straggler's partial work
  is averaged in, where FedAvg drops the clients that did not finish their epochs.
- **FedAvgM** (Hsu, Qi & Brown 2019): server momentum on the pseudo-gradient
  Δ_t = w_t − avg_t:  v ← β v + Δ_t,  w_{t+1} = w_t − η v.
- **FedAdam** (Reddi et al. 2021, "Adaptive Federated Optimization", Alg. 2): Adam on
  the pseudo-gradient:  m ← β₁m + (1−β₁)Δ,  v ← β₂v + (1−β₂)Δ²,  w ← w + η m/(√v + τ)
  with Δ = avg_t − w_t (a step *towards* the clients' average).

The math is numpy in float64; ``server_app.py`` moves weights in and out of Flower's
``ArrayRecord`` messages around it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Weights = dict[str, np.ndarray]


def weighted_average(results: list[tuple[Weights, int]]) -> Weights:
    """Σ_k n_k w_k / Σ_k n_k for every array name (FedAvg's aggregate), in float64.

    ``results`` holds one ``(weights, n_k)`` per client that replied: ``weights`` maps each
    array name to a numpy array (the same names and shapes for every client), ``n_k`` is the
    client's number of training examples.  Returns a new dict: the same names and shapes,
    float64 arrays."""
    if not results:
        raise ValueError("nothing to aggregate: no client replied")
    # BEGIN SOLUTION [step 2] hint: total = sum of n_k; for each name: sum over clients of (n_k / total) * w_k[name] as float64 arrays; return {name: average}
    total = float(sum(n for _, n in results))
    names = results[0][0].keys()
    return {name: sum(np.asarray(w[name], dtype=np.float64) * (n / total) for w, n in results)
            for name in names}
    # END SOLUTION


@dataclass
class FedAvg:
    """Weighted averaging; replies that did partial work (stragglers) are dropped."""

    keeps_partial_work: bool = False
    mu: float = 0.0  # the proximal coefficient sent to the clients (0: plain local SGD)

    def aggregate(self, global_weights: Weights, results: list[tuple[Weights, int]]) -> Weights:
        return weighted_average(results)


@dataclass
class FedProx(FedAvg):
    """FedAvg's average, clients minimise F_k + μ/2‖w − w_t‖², partial work kept."""

    keeps_partial_work: bool = True
    mu: float = 0.1


@dataclass
class FedAvgM(FedAvg):
    """Server momentum (Hsu et al. 2019): v ← βv + (w_t − avg), w ← w_t − η v.

    ``aggregate(w_t, results)`` returns w_{t+1} (a dict of float64 arrays, the names of
    ``w_t``); avg is :func:`weighted_average` of ``results``.  ``velocity`` (one array per
    name) carries v from one round to the next: it is None before the first round, and the
    first round sets v = Δ — exactly ``torch.optim.SGD(lr=η, momentum=β)`` stepping on the
    gradient Δ = w_t − avg."""

    server_lr: float = 1.0
    momentum: float = 0.9
    velocity: Weights | None = field(default=None, repr=False)

    def aggregate(self, global_weights: Weights, results: list[tuple[Weights, int]]) -> Weights:
        avg = weighted_average(results)
        # BEGIN SOLUTION [step 3] hint: per name: delta = w_t - avg; self.velocity = momentum * velocity + delta (the first round: velocity = delta); return {name: w_t - server_lr * velocity}
        delta = {k: global_weights[k] - avg[k] for k in avg}
        if self.velocity is None:
            self.velocity = delta
        else:
            self.velocity = {k: self.momentum * self.velocity[k] + delta[k] for k in avg}
        return {k: global_weights[k] - self.server_lr * self.velocity[k] for k in avg}
        # END SOLUTION


@dataclass
class FedAdam(FedAvg):
    """Adam on the server (Reddi et al. 2021 Alg. 2, no bias correction).

    ``aggregate(w_t, results)`` returns w_{t+1} (a dict of float64 arrays, the names of
    ``w_t``) with Δ = avg − w_t, avg = :func:`weighted_average` of ``results``;
    ``m`` and ``v`` (one array per name, None before the first round = zeros) carry the
    moments from one round to the next."""

    server_lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    m: Weights | None = field(default=None, repr=False)
    v: Weights | None = field(default=None, repr=False)

    def aggregate(self, global_weights: Weights, results: list[tuple[Weights, int]]) -> Weights:
        avg = weighted_average(results)
        # BEGIN SOLUTION [step 3] hint: per name: delta = avg - w_t; self.m = beta1*m + (1-beta1)*delta; self.v = beta2*v + (1-beta2)*delta**2 (m, v start at zeros); return {name: w_t + server_lr * m / (np.sqrt(v) + tau)}
        delta = {k: avg[k] - global_weights[k] for k in avg}
        if self.m is None:
            self.m = {k: np.zeros_like(d) for k, d in delta.items()}
            self.v = {k: np.zeros_like(d) for k, d in delta.items()}
        self.m = {k: self.beta1 * self.m[k] + (1 - self.beta1) * delta[k] for k in avg}
        self.v = {k: self.beta2 * self.v[k] + (1 - self.beta2) * delta[k] ** 2 for k in avg}
        return {k: global_weights[k] + self.server_lr * self.m[k] / (np.sqrt(self.v[k]) + self.tau)
                for k in avg}
        # END SOLUTION


def make_strategy(name: str, mu: float = 0.1) -> FedAvg:
    """``"fedavg"``, ``"fedprox"``, ``"fedavgm"`` or ``"fedadam"`` with the lab's defaults."""
    if name == "fedavg":
        return FedAvg()
    if name == "fedprox":
        return FedProx(mu=mu)
    if name == "fedavgm":
        return FedAvgM()
    if name == "fedadam":
        return FedAdam()
    raise ValueError(f"unknown strategy {name!r}: fedavg, fedprox, fedavgm, fedadam")
