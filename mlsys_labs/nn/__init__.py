"""Lab 1: neural networks from scratch — reverse-mode autograd on numpy.

    from mlsys_labs.nn import Tensor, MLP, cross_entropy, SGD, no_grad

- ``tensor``      Tensor, Function, the backward pass (topological sort), no_grad
- ``ops/``        one Function per operation (forward + backward)
- ``functional``  the operations as functions of Tensors
- ``attention``   scaled dot-product attention (composed), causal mask
- ``modules``     Linear, Conv2d, LayerNorm, BatchNorm, Embedding, MLP, CNN, attention, Transformer block
- ``optim``       SGD (momentum, weight decay), Adam, AdamW, warm-up + cosine schedule
- ``init``        Kaiming and Xavier initialization
- ``data``        the digits data set, split and batched
- ``train``       the training loop
- ``demo``        ``mlsys-labs run 1``
"""
from .attention import causal_mask, scaled_dot_product_attention
from .functional import cross_entropy
from .modules import (CNN, MLP, BatchNorm, Conv2d, Dropout, Embedding, Linear, LayerNorm, Module,
                      MultiHeadAttention, TransformerBlock)
from .optim import SGD, Adam, AdamW, WarmupCosine
from .tensor import Function, Tensor, is_grad_enabled, no_grad

__all__ = ["Tensor", "Function", "no_grad", "is_grad_enabled", "cross_entropy", "Module", "Linear",
           "Conv2d", "LayerNorm", "BatchNorm", "Dropout", "Embedding", "MLP", "CNN",
           "MultiHeadAttention", "TransformerBlock", "SGD", "Adam", "AdamW", "WarmupCosine",
           "scaled_dot_product_attention", "causal_mask"]
