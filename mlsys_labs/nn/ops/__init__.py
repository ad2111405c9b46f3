"""One :class:`~mlsys_labs.nn.tensor.Function` subclass per differentiable operation.

- ``elementwise``  add, sub, mul, div, neg, pow, exp, log, tanh, sigmoid, relu, gelu
- ``matmul``       batched matrix product
- ``reduce``       sum, mean, max over axes
- ``shape``        reshape, permute, indexing (slices and fancy), concatenate, stack
- ``softmax``      stable softmax, log-softmax, cross-entropy
- ``conv``         conv2d by im2col, max-pool
- ``norm``         layer norm, batch norm
- ``dropout``      inverted dropout
- ``embedding``    embedding lookup
"""
