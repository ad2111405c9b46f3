"""AdamW (Loshchilov & Hutter 2019) on flat fp32 shards.

Element for element the same arithmetic as ``torch.optim.AdamW(foreach=False)``, so a
sharded run can be compared with single-process PyTorch at fp32 rounding: the update of
element i needs only element i of the parameter, gradient and the two moments — which is
why ZeRO can partition the optimizer states at all (ZeRO §5.1).
"""
from __future__ import annotations

import torch


class ShardAdamW:
    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.step_count = 0

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
             exp_avg_sqs: list[torch.Tensor]) -> None:
        """One AdamW step on every (param, grad, m, v) quadruple, in place."""
        self.step_count += 1
        beta1, beta2 = self.betas
        # BEGIN SOLUTION [step 3] hint: decoupled weight decay, lerp m, update v, bias corrections, addcdiv (torch's order)
        t = float(self.step_count)
        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        step_size = self.lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
            if self.weight_decay:
                p.mul_(1 - self.lr * self.weight_decay)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)
        # END SOLUTION
