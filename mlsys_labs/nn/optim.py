"""Optimizers and a learning-rate schedule, with PyTorch's update rules so the two can
be compared step by step (D2L ch. 12; Kingma & Ba 2015 "Adam"; Loshchilov & Hutter
2019 "Decoupled Weight Decay Regularization" for AdamW)."""
from __future__ import annotations

import math

import numpy as np

from .tensor import Tensor


class Optimizer:
    def __init__(self, params, lr: float):
        self.params: list[Tensor] = list(params)
        self.lr = lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """g ← ∇ + λ·w;  v ← μ·v + g;  w ← w − η·v   (v = g on the first step, as PyTorch)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.velocity: list[np.ndarray | None] = [None] * len(self.params)

    def step(self) -> None:
        # BEGIN SOLUTION [step 9] hint: update p.data in place; skip parameters whose grad is None; keep one velocity per parameter (v = g on its first step)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                v = self.velocity[i]
                v = g.copy() if v is None else self.momentum * v + g
                self.velocity[i] = v
                g = v
            p.data -= self.lr * g
        # END SOLUTION


class Adam(Optimizer):
    """Adam: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², w ← w − η·m̂/(√v̂ + ε) with the
    bias corrections m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ).  ``weight_decay`` is L2 added to g."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]
        self.t = 0

    def step(self) -> None:
        # BEGIN SOLUTION [step 9] hint: t += 1 once per step; AdamW shrinks w by (1 − η·λ) instead of adding λw to g
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                if self.decoupled:
                    p.data *= 1.0 - self.lr * self.weight_decay
                else:
                    g = g + self.weight_decay * p.data
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * g * g
            m_hat = m / (1.0 - b1 ** self.t)
            v_hat = v / (1.0 - b2 ** self.t)
            p.data -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        # END SOLUTION


class AdamW(Adam):
    """Adam with decoupled weight decay: w ← w − η·λ·w before the Adam update."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class WarmupCosine:
    """Linear warm-up then cosine decay (Loshchilov & Hutter 2017 "SGDR"; Goyal et al.
    2017 for warm-up).  Call :meth:`step` once per optimizer step.

    lr(t) = base · (1/W + (1 − 1/W) · t/W)                         for t < W
    lr(t) = min + (base − min) · (1 + cos(π (t − W)/(T − W))) / 2  for W ≤ t ≤ T

    — the same as PyTorch's ``SequentialLR([LinearLR(1/W), CosineAnnealingLR(T − W, min)])``.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0,
                 min_lr: float = 0.0):
        self.optimizer, self.base_lr = optimizer, optimizer.lr
        self.total, self.warmup, self.min_lr = total_steps, warmup_steps, min_lr
        self.t = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, t: int) -> float:
        # BEGIN SOLUTION [step 9] hint: the two formulas of the class docstring; hold min_lr after T
        w = self.warmup
        if t < w:
            return self.base_lr * (1.0 / w + (1.0 - 1.0 / w) * t / w)
        progress = min(t - w, self.total - w) / max(1, self.total - w)
        return self.min_lr + (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0
        # END SOLUTION

    def step(self) -> float:
        self.t += 1
        self.optimizer.lr = self.lr_at(self.t)
        return self.optimizer.lr
