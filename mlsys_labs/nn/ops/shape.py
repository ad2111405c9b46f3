"""Operations that move elements without arithmetic: reshape, permute, indexing,
concatenate, stack.  Their backward moves the gradient back (D2L §2.1)."""
from __future__ import annotations

import numpy as np

from ..tensor import Function


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        # BEGIN SOLUTION [step 3] hint: save the input's shape on ctx; return a.reshape(shape)
        ctx.shape = a.shape
        return a.reshape(shape)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 3] hint: grad_out reshaped back to the input's shape
        return grad_out.reshape(ctx.shape)
        # END SOLUTION


class Permute(Function):
    """Reorder the axes (``transpose`` is the two-axis case)."""

    @staticmethod
    def forward(ctx, a, axes):
        # BEGIN SOLUTION [step 3] hint: save the axes on ctx; return np.transpose(a, axes)
        ctx.axes = tuple(axes)
        return np.transpose(a, ctx.axes)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 3] hint: apply the inverse permutation (np.argsort of the axes)
        return np.transpose(grad_out, np.argsort(ctx.axes))
        # END SOLUTION


class GetItem(Function):
    """a[index] for basic slices and numpy fancy (integer-array) indexing.  With fancy
    indices an element may be picked several times, so the backward scatter-adds."""

    @staticmethod
    def forward(ctx, a, index):
        # BEGIN SOLUTION [step 3] hint: save the input's shape and the index on ctx; return a[index]
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 3] hint: np.add.at (a plain += loses repeated indices)
        grad = np.zeros(ctx.shape, dtype=grad_out.dtype)
        np.add.at(grad, ctx.index, grad_out)
        return grad
        # END SOLUTION


class Concatenate(Function):
    """Join tensors along an existing axis."""

    @staticmethod
    def forward(ctx, *arrays, axis: int = 0):
        # BEGIN SOLUTION [step 3] hint: save the axis and each input's size along it on ctx; return np.concatenate(arrays, axis)
        ctx.axis = axis
        ctx.sizes = [x.shape[axis] for x in arrays]
        return np.concatenate(arrays, axis=axis)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 3] hint: one gradient per input: np.split grad_out at the cumulative sizes along the axis
        return tuple(np.split(grad_out, np.cumsum(ctx.sizes)[:-1], axis=ctx.axis))
        # END SOLUTION


class Stack(Function):
    """Join tensors of one shape along a new axis."""

    @staticmethod
    def forward(ctx, *arrays, axis: int = 0):
        # BEGIN SOLUTION [step 3] hint: save the new axis (as an index of the output, ≥ 0) and the number of inputs on ctx; return np.stack
        out = np.stack(arrays, axis=axis)
        ctx.axis, ctx.count = axis % out.ndim, len(arrays)
        return out
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 3] hint: one gradient per input: grad_out's i-th slice along the stacked axis
        return tuple(np.take(grad_out, i, axis=ctx.axis) for i in range(ctx.count))
        # END SOLUTION
