"""Elementwise operations.  Each backward returns the gradient in the broadcast (output)
shape; the engine's ``unbroadcast`` sums it back to each input's shape.

The derivatives are the ones of D2L §5.1 (activation functions) and NNFS ch. 9.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from ..tensor import Function


class Add(Function):
    """a + b."""

    @staticmethod
    def forward(ctx, a, b):
        # BEGIN SOLUTION [step 2] hint: return a + b (numpy broadcasts; the engine sums each gradient back to its input's shape)
        return a + b
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: both inputs receive grad_out
        return grad_out, grad_out
        # END SOLUTION


class Sub(Function):
    """a - b."""

    @staticmethod
    def forward(ctx, a, b):
        # BEGIN SOLUTION [step 2] hint: return a − b
        return a - b
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: one gradient per input: d(a−b)/da = 1, d(a−b)/db = −1
        return grad_out, -grad_out
        # END SOLUTION


class Mul(Function):
    """a * b."""

    @staticmethod
    def forward(ctx, a, b):
        # BEGIN SOLUTION [step 2] hint: save a and b on ctx (backward needs both); return a·b
        ctx.save_for_backward(a, b)
        return a * b
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: d(ab)/da = b
        a, b = ctx.saved
        return grad_out * b, grad_out * a
        # END SOLUTION


class Div(Function):
    """a / b."""

    @staticmethod
    def forward(ctx, a, b):
        # BEGIN SOLUTION [step 2] hint: save a and b on ctx (backward needs both); return a / b
        ctx.save_for_backward(a, b)
        return a / b
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: d(a/b)/db = -a/b²
        a, b = ctx.saved
        return grad_out / b, -grad_out * a / (b * b)
        # END SOLUTION


class Neg(Function):
    """-a."""

    @staticmethod
    def forward(ctx, a):
        # BEGIN SOLUTION [step 2] hint: return −a
        return -a
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: d(−a)/da = −1
        return -grad_out
        # END SOLUTION


class Pow(Function):
    """a ** p for a constant exponent p."""

    @staticmethod
    def forward(ctx, a, exponent: float):
        # BEGIN SOLUTION [step 2] hint: save a and the exponent on ctx; return a ** exponent
        ctx.save_for_backward(a)
        ctx.exponent = exponent
        return a ** exponent
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: p · a^(p-1)
        a, = ctx.saved
        p = ctx.exponent
        return grad_out * p * a ** (p - 1)
        # END SOLUTION


class Exp(Function):
    """e^a."""

    @staticmethod
    def forward(ctx, a):
        # BEGIN SOLUTION [step 2] hint: save the output e^a on ctx (backward reuses it); return it
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: reuse the forward output
        out, = ctx.saved
        return grad_out * out
        # END SOLUTION


class Log(Function):
    """Natural logarithm."""

    @staticmethod
    def forward(ctx, a):
        # BEGIN SOLUTION [step 2] hint: save a on ctx; return ln a
        ctx.save_for_backward(a)
        return np.log(a)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: d(ln a)/da = 1/a
        a, = ctx.saved
        return grad_out / a
        # END SOLUTION


class Tanh(Function):
    """tanh(a); d/da = 1 - tanh²(a)."""

    @staticmethod
    def forward(ctx, a):
        # BEGIN SOLUTION [step 2] hint: save the output tanh(a) on ctx (backward reuses it); return it
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: 1 - tanh² from the saved output
        out, = ctx.saved
        return grad_out * (1.0 - out * out)
        # END SOLUTION


class Sigmoid(Function):
    """σ(a) = 1 / (1 + e^-a), computed without overflow for large |a|; σ' = σ(1 - σ)."""

    @staticmethod
    def forward(ctx, a):
        # BEGIN SOLUTION [step 2] hint: use e^-|a| so that nothing overflows
        e = np.exp(-np.abs(a))
        out = np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        ctx.save_for_backward(out)
        return out
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: reuse the forward output saved on ctx
        s, = ctx.saved
        return grad_out * s * (1.0 - s)
        # END SOLUTION


class ReLU(Function):
    """max(a, 0)."""

    @staticmethod
    def forward(ctx, a):
        # BEGIN SOLUTION [step 2] hint: save the mask a > 0 on ctx; return max(a, 0)
        ctx.save_for_backward(a > 0)
        return np.maximum(a, 0)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: grad_out where a > 0, zero elsewhere — also at a == 0 exactly (as PyTorch)
        positive, = ctx.saved
        return grad_out * positive
        # END SOLUTION


class GELU(Function):
    """GELU(a) = a·Φ(a) with Φ the standard normal CDF (Hendrycks & Gimpel 2016, exact
    erf form, as ``torch.nn.GELU()``)."""

    @staticmethod
    def forward(ctx, a):
        # BEGIN SOLUTION [step 2] hint: Φ(a) = (1 + erf(a/√2)) / 2
        cdf = 0.5 * (1.0 + erf(a / math.sqrt(2.0)))
        ctx.save_for_backward(a, cdf)
        return a * cdf
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 2] hint: d/da aΦ(a) = Φ(a) + a·φ(a), φ the normal density
        a, cdf = ctx.saved
        pdf = np.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
        return grad_out * (cdf + a * pdf)
        # END SOLUTION
