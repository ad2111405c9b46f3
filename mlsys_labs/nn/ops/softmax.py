"""Softmax, log-softmax and cross-entropy, computed stably by subtracting the row
maximum first (D2L §4.1.2 and §4.4 "Softmax Regression Implementation from Scratch";
NNFS ch. 4–5 and 9).  Cross-entropy is fused with log-softmax: its gradient with
respect to the logits is simply (softmax − one-hot) / N."""
from __future__ import annotations

import numpy as np

from ..tensor import Function


class Softmax(Function):
    @staticmethod
    def forward(ctx, a, axis: int = -1):
        # BEGIN SOLUTION [step 4] hint: subtract the max along the axis before exponentiating
        e = np.exp(a - a.max(axis=axis, keepdims=True))
        s = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(s)
        ctx.axis = axis
        return s
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 4] hint: the Jacobian-vector product is s ⊙ (g − Σ g·s)
        s, = ctx.saved
        return s * (grad_out - (grad_out * s).sum(axis=ctx.axis, keepdims=True))
        # END SOLUTION


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, a, axis: int = -1):
        # BEGIN SOLUTION [step 4] hint: a − max − log Σ exp(a − max)
        shifted = a - a.max(axis=axis, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 4] hint: g − softmax · Σ g
        out, = ctx.saved
        return grad_out - np.exp(out) * grad_out.sum(axis=ctx.axis, keepdims=True)
        # END SOLUTION


class CrossEntropy(Function):
    """Mean over the batch of −log softmax(logits)[target]; logits (N, C), targets (N,)
    integer class indices."""

    @staticmethod
    def forward(ctx, logits, targets):
        # BEGIN SOLUTION [step 4] hint: log-softmax, then pick the target column of each row
        targets = np.asarray(targets)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        ctx.save_for_backward(log_probs, targets)
        n = logits.shape[0]
        return np.asarray(-log_probs[np.arange(n), targets].mean())
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 4] hint: (softmax − one-hot) / N, times the upstream scalar
        log_probs, targets = ctx.saved
        n = log_probs.shape[0]
        grad = np.exp(log_probs)
        grad[np.arange(n), targets] -= 1.0
        return grad * (grad_out / n)
        # END SOLUTION
