"""2-D convolution by im2col and max-pooling (D2L §7.2–7.5; the im2col lowering of
Chellapilla, Puri & Simard 2006 that turns a convolution into one matrix product;
CS231n's "Convolutional Networks" notes).  Layout NCHW as in PyTorch; the "convolution"
is the cross-correlation every framework computes."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..tensor import Function


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, padding: int) -> np.ndarray:
    """Patches of x (N, C, H, W) as rows: shape (N·Ho·Wo, C·kh·kw), rows ordered
    (n, ho, wo) and columns (c, i, j) — so that ``cols @ w.reshape(O, -1).T`` is the conv."""
    # BEGIN SOLUTION [step 5] hint: np.pad, sliding_window_view over axes (2, 3), step by stride, transpose, reshape
    n, c, _, _ = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = windows.shape[2], windows.shape[3]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    # END SOLUTION


def col2im(cols: np.ndarray, x_shape: tuple[int, ...], kh: int, kw: int, stride: int,
           padding: int) -> np.ndarray:
    """The adjoint of :func:`im2col`: scatter-add each patch row back into an image of
    ``x_shape`` (overlapping patches add up)."""
    # BEGIN SOLUTION [step 5] hint: for each kernel offset (i, j) add a strided slice of the padded image
    n, c, h, w = x_shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    patches = np.ascontiguousarray(cols.reshape(n, ho, wo, c, kh, kw).transpose(0, 3, 4, 5, 1, 2))  # n c i j ho wo
    padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] += patches[:, :, i, j]
    return padded[:, :, padding:padding + h, padding:padding + w]
    # END SOLUTION


class Conv2d(Function):
    """x (N, C, H, W) ⋆ weight (O, C, kh, kw) + bias (O,) → (N, O, Ho, Wo)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride: int = 1, padding: int = 0):
        # BEGIN SOLUTION [step 5] hint: im2col, one matmul with weight.reshape(O, -1).T, back to NCHW
        o, _, kh, kw = weight.shape
        n, _, h, w = x.shape
        ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
        cols = im2col(x, kh, kw, stride, padding)
        out = cols @ weight.reshape(o, -1).T
        if bias is not None:
            out += bias
        ctx.save_for_backward(cols, weight)
        ctx.x_shape, ctx.stride, ctx.padding, ctx.has_bias = x.shape, stride, padding, bias is not None
        return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 5] hint: grad as (N·Ho·Wo, O): dW = Gᵀ·cols, dcols = G·W, dx = col2im(dcols)
        cols, weight = ctx.saved
        o, _, kh, kw = weight.shape
        g = grad_out.transpose(0, 2, 3, 1).reshape(-1, o)
        grad_w = (g.T @ cols).reshape(weight.shape)
        grad_x = None
        if ctx.needs_input_grad[0]:   # not for a network's input images
            grad_x = col2im(g @ weight.reshape(o, -1), ctx.x_shape, kh, kw, ctx.stride, ctx.padding)
        grad_b = g.sum(axis=0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b
        # END SOLUTION


class MaxPool2d(Function):
    """Maximum over kernel×kernel windows of x (N, C, H, W), step ``stride``
    (default: the kernel size; windows that do not fit are dropped, as PyTorch's floor
    mode).  The gradient goes to each window's arg-max — on ties the first maximum in the
    window, row by row, as PyTorch — and adds up where windows overlap."""

    @staticmethod
    def forward(ctx, x, kernel: int = 2, stride: int | None = None):
        # BEGIN SOLUTION [step 5] hint: windows via sliding_window_view; remember each window's argmax
        stride = stride or kernel
        windows = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
        flat = windows.reshape(*windows.shape[:4], kernel * kernel)
        arg = flat.argmax(axis=-1)
        ctx.x_shape, ctx.kernel, ctx.stride, ctx.arg = x.shape, kernel, stride, arg
        return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 5] hint: for each window offset, add the gradient where the argmax was that offset
        k, s = ctx.kernel, ctx.stride
        ho, wo = grad_out.shape[2], grad_out.shape[3]
        grad = np.zeros(ctx.x_shape, dtype=grad_out.dtype)
        for i in range(k):
            for j in range(k):
                grad[:, :, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s] += grad_out * (ctx.arg == i * k + j)
        return grad
        # END SOLUTION
