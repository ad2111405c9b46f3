"""The differentiable operations as plain functions of Tensors (what models call).

Each is one :class:`Function` from ``ops/``; attention (``attention.py``) is composed
from them.
"""
from __future__ import annotations

import numpy as np

from .ops.conv import Conv2d, MaxPool2d
from .ops.dropout import Dropout
from .ops.elementwise import GELU, Add, Div, Exp, Log, Mul, Neg, Pow, ReLU, Sigmoid, Sub, Tanh
from .ops.embedding import Embedding
from .ops.matmul import MatMul
from .ops.norm import BatchNorm, LayerNorm
from .ops.reduce import Max, Mean, Sum
from .ops.shape import Concatenate, GetItem, Permute, Reshape, Stack
from .ops.softmax import CrossEntropy, LogSoftmax, Softmax


def add(a, b):
    return Add.apply(a, b)


def sub(a, b):
    return Sub.apply(a, b)


def mul(a, b):
    return Mul.apply(a, b)


def div(a, b):
    return Div.apply(a, b)


def neg(a):
    return Neg.apply(a)


def pow(a, exponent: float):  # noqa: A001 - the operation's name
    return Pow.apply(a, exponent=exponent)


def exp(a):
    return Exp.apply(a)


def log(a):
    return Log.apply(a)


def tanh(a):
    return Tanh.apply(a)


def sigmoid(a):
    return Sigmoid.apply(a)


def relu(a):
    return ReLU.apply(a)


def gelu(a):
    return GELU.apply(a)


def matmul(a, b):
    return MatMul.apply(a, b)


def sum(a, axis=None, keepdims: bool = False):  # noqa: A001
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a, axis=None, keepdims: bool = False):
    return Mean.apply(a, axis=axis, keepdims=keepdims)


def max(a, axis=None, keepdims: bool = False):  # noqa: A001
    return Max.apply(a, axis=axis, keepdims=keepdims)


def reshape(a, shape):
    return Reshape.apply(a, shape=tuple(shape))


def permute(a, axes):
    return Permute.apply(a, axes=tuple(axes))


def transpose(a, axis1: int = -2, axis2: int = -1):
    axes = list(range(a.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return Permute.apply(a, axes=tuple(axes))


def _plain_index(index):
    """Tensors inside an index are used by value (indices carry no gradient)."""
    from .tensor import Tensor

    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def getitem(a, index):
    return GetItem.apply(a, index=_plain_index(index))


def concatenate(tensors, axis: int = 0):
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis: int = 0):
    return Stack.apply(*tensors, axis=axis)


def softmax(a, axis: int = -1):
    return Softmax.apply(a, axis=axis)


def log_softmax(a, axis: int = -1):
    return LogSoftmax.apply(a, axis=axis)


def cross_entropy(logits, targets) -> "Tensor":  # noqa: F821
    """Mean cross-entropy of logits (N, C) against integer targets (N,)."""
    return CrossEntropy.apply(logits, targets=np.asarray(_plain_index(targets)))


def conv2d(x, weight, bias=None, stride: int = 1, padding: int = 0):
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)


def max_pool2d(x, kernel: int = 2, stride: int | None = None):
    return MaxPool2d.apply(x, kernel=kernel, stride=stride)


def layer_norm(x, weight, bias, eps: float = 1e-5):
    return LayerNorm.apply(x, weight, bias, eps=eps)


def batch_norm(x, weight, bias, eps: float = 1e-5, mean=None, var=None):
    return BatchNorm.apply(x, weight, bias, eps=eps, mean=mean, var=var)


def dropout(x, p: float, rng: np.random.Generator, training: bool = True):
    """Identity when not training or p == 0."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return Dropout.apply(x, p=p, rng=rng)


def embedding(weight, ids):
    return Embedding.apply(weight, ids=np.asarray(_plain_index(ids)))
