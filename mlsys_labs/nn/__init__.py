"""Lab 1: neural networks from scratch — reverse-mode autograd on numpy.

    from mlsys_labs.nn import Tensor, MLP, cross_entropy, SGD, no_grad

The lesson, file by file (what it teaches → where to read about it):

- ``tensor.py``      Tensor, Function, History (a tensor's node of the graph), no_grad;
                     ``unbroadcast``, ``topological_order`` and ``Tensor.backward`` —
                     reverse-mode differentiation → D2L §2.5, MiniTorch module 1
- ``ops/``           one Function (forward + backward) per operation:
  ``elementwise.py``   +, −, ×, ÷, pow, exp, log, tanh, sigmoid, ReLU, GELU → D2L §5.1, NNFS ch. 9
  ``matmul.py``        batched matrix product → D2L §2.3.9
  ``reduce.py``        sum, mean, max over axes → D2L §2.3.6
  ``shape.py``         reshape, permute, indexing, concatenate, stack → D2L §2.1
  ``softmax.py``       stable softmax, log-softmax, fused cross-entropy → D2L §4.1, §4.4
  ``conv.py``          conv2d by im2col as one GEMM in a batch-innermost layout, max-pool
                       → D2L §7.2–7.5, Chellapilla et al. 2006, CS:APP §6.5
  ``norm.py``          layer norm, batch norm → Ba et al. 2016, Ioffe & Szegedy 2015, D2L §8.5
  ``dropout.py``       inverted dropout → Srivastava et al. 2014, D2L §5.6
  ``embedding.py``     embedding lookup → Bengio et al. 2003
- ``functional.py``  the operations as functions of Tensors (what models call)
- ``attention.py``   scaled dot-product attention composed from the ops, causal mask
                     → Vaswani et al. 2017 §3.2.1, D2L §11.3
- ``init.py``        Kaiming and Xavier initialization → He et al. 2015, Glorot & Bengio 2010, D2L §5.4
- ``modules.py``     Module, Linear, Conv2d, LayerNorm, BatchNorm, Dropout, Embedding, MLP,
                     CNN, MultiHeadAttention, TransformerBlock → D2L ch. 5–7, 11
- ``optim.py``       SGD (momentum, weight decay), Adam, AdamW, warm-up + cosine → D2L ch. 12,
                     Kingma & Ba 2015, Loshchilov & Hutter 2019
- ``data.py``        the digits data set, split, batched and shifted
- ``train.py``       the training loop and the two recipes the tests train → D2L §3.4, NNFS ch. 10

Not the lesson: ``plumbing/`` (the ``mlsys-labs run 1`` demo and its plots).
"""
from . import functional, init
from .attention import causal_mask, scaled_dot_product_attention
from .data import load_digits_split
from .functional import cross_entropy
from .modules import (CNN, MLP, BatchNorm, Conv2d, Dropout, Embedding, Linear, LayerNorm, Module,
                      MultiHeadAttention, TransformerBlock)
from .optim import SGD, Adam, AdamW, WarmupCosine
from .tensor import Function, History, Tensor, is_grad_enabled, no_grad, topological_order, unbroadcast
from .train import LearningCurves, fit, train_cnn, train_mlp

__all__ = ["Tensor", "Function", "History", "no_grad", "is_grad_enabled", "topological_order", "unbroadcast",
           "cross_entropy", "Module", "Linear", "Conv2d", "LayerNorm", "BatchNorm", "Dropout", "Embedding",
           "MLP", "CNN", "MultiHeadAttention", "TransformerBlock", "SGD", "Adam", "AdamW", "WarmupCosine",
           "scaled_dot_product_attention", "causal_mask", "fit", "train_mlp", "train_cnn", "LearningCurves",
           "load_digits_split", "functional", "init"]
