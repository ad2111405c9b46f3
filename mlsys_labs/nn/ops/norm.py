"""Layer normalization (Ba, Kiros & Hinton 2016) and batch normalization (Ioffe &
Szegedy 2015; D2L §8.5), each one Function with its fused backward:

    x̂ = (x − μ) / √(σ² + ε),   y = γ·x̂ + β,
    dx = (1/√(σ² + ε)) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)),   dx̂ = γ·dy,

the means taken over the normalized axes."""
from __future__ import annotations

import numpy as np

from ..tensor import Function


def _normalize_backward(grad_xhat, xhat, rstd, axes):
    return rstd * (grad_xhat - grad_xhat.mean(axis=axes, keepdims=True)
                   - xhat * (grad_xhat * xhat).mean(axis=axes, keepdims=True))


class LayerNorm(Function):
    """Normalize over the last axis of x; weight and bias of shape (D,)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float = 1e-5):
        # BEGIN SOLUTION [step 6] hint: mean and biased variance over axis -1; save x̂ and 1/σ
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        rstd = 1.0 / np.sqrt(var + eps)
        xhat = (x - mean) * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight + bias
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 6] hint: the module docstring's dx with dx̂ = γ·dy; dγ = Σ dy·x̂ and dβ = Σ dy over every axis but the last
        xhat, rstd, weight = ctx.saved
        lead = tuple(range(grad_out.ndim - 1))
        grad_x = _normalize_backward(grad_out * weight, xhat, rstd, -1)
        return grad_x, (grad_out * xhat).sum(axis=lead), grad_out.sum(axis=lead)
        # END SOLUTION


class BatchNorm(Function):
    """Normalize x (N, C) or (N, C, H, W) per channel (axis 1) with the batch's
    statistics, or — when ``mean`` and ``var`` are given (evaluation with running
    statistics) — with those, treated as constants."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float = 1e-5, mean=None, var=None):
        # BEGIN SOLUTION [step 6] hint: reduce over every axis except 1; reshape γ, β, μ, σ² to (1, C, 1, ...)
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        ctx.batch_stats = mean is None
        if ctx.batch_stats:
            mean = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)
        else:
            mean, var = np.reshape(mean, shape), np.reshape(var, shape)
        rstd = 1.0 / np.sqrt(var + eps)
        xhat = (x - mean) * rstd
        weight = weight.reshape(shape)
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.axes = axes
        return xhat * weight + bias.reshape(shape)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 6] hint: with batch statistics μ and σ depend on x too; with given ones they do not
        xhat, rstd, weight = ctx.saved
        grad_xhat = grad_out * weight
        if ctx.batch_stats:
            grad_x = _normalize_backward(grad_xhat, xhat, rstd, ctx.axes)
        else:
            grad_x = grad_xhat * rstd
        return grad_x, (grad_out * xhat).sum(axis=ctx.axes), grad_out.sum(axis=ctx.axes)
        # END SOLUTION
