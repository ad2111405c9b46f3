"""Reductions over axes: sum, mean, max (D2L §2.3.6)."""
from __future__ import annotations

import numpy as np

from ..tensor import Function


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def expand_reduced(grad: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """A gradient of a reduction (keepdims or not) broadcast back to the input's ``shape``."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
    return np.broadcast_to(grad.reshape(kept), shape)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims: bool = False):
        # BEGIN SOLUTION [step 3] hint: save the input's shape and normalize_axes(axis, a.ndim) on ctx; return the sum over those axes, keepdims honoured
        ctx.shape, ctx.axes = a.shape, normalize_axes(axis, a.ndim)
        return np.sum(a, axis=ctx.axes, keepdims=keepdims)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 3] hint: every summed element gets the gradient of the sum (expand_reduced)
        return expand_reduced(grad_out, ctx.shape, ctx.axes)
        # END SOLUTION


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims: bool = False):
        # BEGIN SOLUTION [step 3] hint: as Sum, and also save how many elements each mean averages (the product of the reduced axes' sizes)
        ctx.shape, ctx.axes = a.shape, normalize_axes(axis, a.ndim)
        ctx.count = int(np.prod([a.shape[i] for i in ctx.axes]))
        return np.mean(a, axis=ctx.axes, keepdims=keepdims)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 3] hint: the gradient of the sum (expand_reduced) divided by the number of elements averaged
        return expand_reduced(grad_out, ctx.shape, ctx.axes) / ctx.count
        # END SOLUTION


class Max(Function):
    """Maximum over axes.  The gradient goes to the arg-max (split evenly between ties,
    as ``torch.amax``)."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims: bool = False):
        # BEGIN SOLUTION [step 3] hint: save each element's share of the gradient: 1/k for each of k tied maxima, 0 for the rest; return the max, keepdims honoured
        axes = normalize_axes(axis, a.ndim)
        out = np.max(a, axis=axes, keepdims=True)
        is_max = a == out
        ctx.save_for_backward((is_max / is_max.sum(axis=axes, keepdims=True)).astype(a.dtype))
        ctx.shape, ctx.axes = a.shape, axes
        return out if keepdims else np.squeeze(out, axis=axes)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 3] hint: expand_reduced(grad_out, ...) times the shares saved in forward (ties split the gradient evenly)
        share, = ctx.saved
        return expand_reduced(grad_out, ctx.shape, ctx.axes) * share
        # END SOLUTION
