"""Inverted dropout (Srivastava et al. 2014; D2L §5.6): zero each element with
probability p and scale the survivors by 1/(1−p) so the expectation is unchanged."""
from __future__ import annotations

import numpy as np

from ..tensor import Function


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p: float, rng: np.random.Generator):
        # BEGIN SOLUTION [step 6] hint: keep where rng.random(x.shape) >= p (draw once, in that order); save the mask/(1−p) on ctx; return x·mask/(1−p)
        scale = (rng.random(x.shape) >= p) / (1.0 - p)
        ctx.save_for_backward(scale.astype(x.dtype))
        return x * ctx.saved[0]
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 6] hint: grad_out times the same mask/(1−p) that forward saved
        scale, = ctx.saved
        return grad_out * scale
        # END SOLUTION
