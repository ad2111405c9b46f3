"""2-D convolution by im2col and max-pooling (D2L §7.2–7.5; the im2col lowering of
Chellapilla, Puri & Simard 2006 that turns a convolution into one matrix product;
CS231n's "Convolutional Networks" notes).  The interface is NCHW as in PyTorch; the
"convolution" is the cross-correlation every framework computes.

Memory layout is the lesson's second half (CS:APP §6.5, the memory mountain of this
lab).  A tensor's *shape* is NCHW, but the arrays this file returns are transposed views
whose *memory* order is (C, H, W, N) — the batch innermost, the layout of Krizhevsky's
cuda-convnet.  With the batch innermost:

- ``im2col`` copies runs of N contiguous floats (in NCHW order a run is one image row,
  3–8 floats on 8×8 digits, and the copy is dominated by per-run overhead);
- the convolution is one GEMM, ``W (O, C·kh·kw) @ cols (C·kh·kw, Ho·Wo·N)``, whose
  result (O, Ho·Wo·N) already *is* the output in (C, H, W, N) order — a transpose view,
  no copy;
- ``col2im``'s kh·kw strided adds move runs of N floats too, and the next layer's
  ``im2col`` reads its input in the order it was written.

Elementwise numpy operations keep their input's memory order (``order="K"``), so ReLU,
pooling and their gradients stay in this layout between convolutions for free.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..tensor import Function


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, padding: int) -> np.ndarray:
    """The patches of x (N, C, H, W) as columns: shape (C·kh·kw, Ho·Wo·N), rows ordered
    (c, i, j) like ``weight.reshape(O, -1)``'s columns and columns ordered (ho, wo, n) —
    so that ``weight.reshape(O, -1) @ cols`` is the convolution, batch innermost."""
    # BEGIN SOLUTION [step 5] hint: zero-pad x into a (C, H+2p, W+2p, N) array; sliding_window_view over axes (1, 2), step by stride; transpose to (c, i, j, ho, wo, n); reshape (one copy)
    n, c, h, w = x.shape
    padded = np.zeros((c, h + 2 * padding, w + 2 * padding, n), dtype=x.dtype)
    padded[:, padding:padding + h, padding:padding + w] = x.transpose(1, 2, 3, 0)
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]  # c ho wo n i j
    return windows.transpose(0, 4, 5, 1, 2, 3).reshape(c * kh * kw, -1)
    # END SOLUTION


def col2im(cols: np.ndarray, x_shape: tuple[int, ...], kh: int, kw: int, stride: int,
           padding: int) -> np.ndarray:
    """The adjoint of :func:`im2col`: scatter-add each column (C·kh·kw, Ho·Wo·N) back into
    an image of ``x_shape`` (N, C, H, W) — overlapping patches add up."""
    # BEGIN SOLUTION [step 5] hint: view cols as (c, i, j, ho, wo, n); for each kernel offset (i, j) add [:, i, j] into a strided slice of a zero (C, H+2p, W+2p, N) image; crop the padding; transpose to NCHW
    n, c, h, w = x_shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    patches = cols.reshape(c, kh, kw, ho, wo, n)
    padded = np.zeros((c, h + 2 * padding, w + 2 * padding, n), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] += patches[:, i, j]
    return padded[:, padding:padding + h, padding:padding + w].transpose(3, 0, 1, 2)
    # END SOLUTION


class Conv2d(Function):
    """x (N, C, H, W) ⋆ weight (O, C, kh, kw) + bias (O,) → (N, O, Ho, Wo)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride: int = 1, padding: int = 0):
        # BEGIN SOLUTION [step 5] hint: Y = weight.reshape(O, -1) @ im2col(x), (O, Ho·Wo·N); add the bias per row in place; return Y viewed as (N, O, Ho, Wo)
        o, _, kh, kw = weight.shape
        n, _, h, w = x.shape
        ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
        cols = im2col(x, kh, kw, stride, padding)
        out = weight.reshape(o, -1) @ cols
        if bias is not None:
            out += bias[:, None]
        ctx.save_for_backward(cols, weight)
        ctx.x_shape, ctx.stride, ctx.padding, ctx.has_bias = x.shape, stride, padding, bias is not None
        return out.reshape(o, ho, wo, n).transpose(3, 0, 1, 2)
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 5] hint: G = grad_out as (O, Ho·Wo·N) (channels first, batch last): dW = G colsᵀ, dcols = Wᵀ G, dx = col2im(dcols), db = G summed over its columns
        cols, weight = ctx.saved
        o, _, kh, kw = weight.shape
        g = grad_out.transpose(1, 2, 3, 0).reshape(o, -1)
        grad_w = (g @ cols.T).reshape(weight.shape)
        grad_x = None
        if ctx.needs_input_grad[0]:   # not for a network's input images
            grad_x = col2im(weight.reshape(o, -1).T @ g, ctx.x_shape, kh, kw, ctx.stride, ctx.padding)
        grad_b = g.sum(axis=1) if ctx.has_bias else None
        return grad_x, grad_w, grad_b
        # END SOLUTION


class MaxPool2d(Function):
    """Maximum over kernel×kernel windows of x (N, C, H, W), step ``stride``
    (default: the kernel size; windows that do not fit are dropped, as PyTorch's floor
    mode).  The gradient goes to each window's arg-max — on ties the first maximum in the
    window, row by row, as PyTorch — and adds up where windows overlap.

    Both passes loop over the kh·kw *offsets* inside a window, not over the windows:
    offset (i, j) of every window at once is one strided slice of x, so each pass is
    k² whole-array numpy operations (the same trick as ``col2im``)."""

    @staticmethod
    def forward(ctx, x, kernel: int = 2, stride: int | None = None):
        # BEGIN SOLUTION [step 5] hint: running max over the k² strided slices x[:, :, i::stride, j::stride] (cropped to Ho, Wo); remember the offset i·k + j of each window's first maximum (update only where strictly greater)
        stride = stride or kernel
        ho, wo = output_size(x.shape[2], kernel, stride, 0), output_size(x.shape[3], kernel, stride, 0)
        out = arg = None
        for i in range(kernel):
            for j in range(kernel):
                at_offset = x[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
                if out is None:
                    out, arg = at_offset.copy(order="K"), np.zeros_like(at_offset, dtype=np.int32)
                    continue
                np.putmask(arg, at_offset > out, i * kernel + j)
                np.maximum(out, at_offset, out=out)
        ctx.x_shape, ctx.kernel, ctx.stride, ctx.arg = x.shape, kernel, stride, arg
        return out
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 5] hint: for each window offset, add the gradient where the argmax was that offset
        k, s = ctx.kernel, ctx.stride
        ho, wo = grad_out.shape[2], grad_out.shape[3]
        grad = np.zeros_like(grad_out, shape=ctx.x_shape)   # grad_out's memory order (order="K")
        for i in range(k):
            for j in range(k):
                grad[:, :, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s] += grad_out * (ctx.arg == i * k + j)
        return grad
        # END SOLUTION
