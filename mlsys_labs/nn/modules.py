"""Layers and models: a :class:`Module` owns parameters (Tensors with
``requires_grad=True``) and sub-modules, and computes ``forward``.

Linear keeps its weight as (in_features, out_features) so the forward is a single
``x @ W + b`` (PyTorch stores the transpose, (out, in): copy ``W.T`` across).
"""
from __future__ import annotations


import numpy as np

from . import functional as F
from . import init
from .attention import scaled_dot_product_attention
from .tensor import Tensor, no_grad


def Parameter(data) -> Tensor:
    return Tensor(data, requires_grad=True)


class Module:
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def children(self) -> list["Module"]:
        out = []
        for value in vars(self).values():
            if isinstance(value, Module):
                out.append(value)
            elif isinstance(value, (list, tuple)):
                out.extend(v for v in value if isinstance(v, Module))
        return out

    def parameters(self) -> list[Tensor]:
        """Every parameter of this module and its sub-modules, in definition order."""
        params = []
        for value in vars(self).values():
            if isinstance(value, Tensor) and value.requires_grad:
                params.append(value)
            elif isinstance(value, Module):
                params.extend(value.parameters())
            elif isinstance(value, (list, tuple)):
                for v in value:
                    if isinstance(v, Module):
                        params.extend(v.parameters())
        return params

    def train(self, mode: bool = True) -> "Module":
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None


class Linear(Module):
    """y = x W + b, W of shape (in, out), Kaiming-uniform initialised (He et al. 2015)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.weight = Parameter(init.kaiming_uniform((in_features, out_features), rng,
                                                     fan_in=in_features, dtype=dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y


class Conv2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, rng: np.random.Generator | None = None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng(0)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = Parameter(init.kaiming_uniform(shape, rng, dtype=dtype))
        self.bias = Parameter(np.zeros(out_channels, dtype=dtype))
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)


class MaxPool2d(Module):
    def __init__(self, kernel: int = 2, stride: int | None = None):
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel, self.stride)


class LayerNorm(Module):
    def __init__(self, dim: int, eps: float = 1e-5, dtype=np.float64):
        self.weight = Parameter(np.ones(dim, dtype=dtype))
        self.bias = Parameter(np.zeros(dim, dtype=dtype))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class BatchNorm(Module):
    """Batch norm over channels (axis 1) of (N, C) or (N, C, H, W) inputs.  Training uses
    the batch's statistics and updates running ones (momentum as PyTorch: new = (1 − m)·old
    + m·batch, unbiased variance); evaluation uses the running statistics."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float64):
        self.weight = Parameter(np.ones(channels, dtype=dtype))
        self.bias = Parameter(np.zeros(channels, dtype=dtype))
        self.running_mean = np.zeros(channels, dtype=dtype)
        self.running_var = np.ones(channels, dtype=dtype)
        self.eps, self.momentum = eps, momentum

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return F.batch_norm(x, self.weight, self.bias, self.eps, self.running_mean, self.running_var)
        axes = (0,) + tuple(range(2, x.ndim))
        count = x.size // x.shape[1]
        m = self.momentum
        self.running_mean = (1 - m) * self.running_mean + m * x.data.mean(axis=axes)
        self.running_var = (1 - m) * self.running_var + m * x.data.var(axis=axes) * count / max(1, count - 1)
        return F.batch_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    def __init__(self, p: float = 0.5, seed: int = 0):
        self.p, self.rng = p, np.random.default_rng(seed)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.rng, training=self.training)


class Embedding(Module):
    def __init__(self, num_embeddings: int, dim: int, rng: np.random.Generator | None = None,
                 dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.weight = Parameter(rng.standard_normal((num_embeddings, dim)).astype(dtype))

    def forward(self, ids) -> Tensor:
        return F.embedding(self.weight, ids)


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class GELU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x)


class Sequential(Module):
    def __init__(self, *layers: Module):
        self.layers = list(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MLP(Module):
    """Linear → ReLU → … → Linear; ``sizes`` = [inputs, hidden…, classes]; returns logits."""

    def __init__(self, sizes: list[int], seed: int = 0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.layers = [Linear(a, b, rng=rng, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class CNN(Module):
    """A small LeNet-style network for 8×8 digits (LeCun et al. 1998; D2L §7.6):
    [conv3×3 → ReLU → max-pool 2] × 2 → linear.  Accepts (N, 64) or (N, 1, 8, 8)."""

    def __init__(self, channels: tuple[int, int] = (32, 64), classes: int = 10, seed: int = 0,
                 dtype=np.float64):
        rng = np.random.default_rng(seed)
        c1, c2 = channels
        self.conv1 = Conv2d(1, c1, 3, padding=1, rng=rng, dtype=dtype)
        self.conv2 = Conv2d(c1, c2, 3, padding=1, rng=rng, dtype=dtype)
        self.head = Linear(c2 * 2 * 2, classes, rng=rng, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2:
            x = x.reshape(x.shape[0], 1, 8, 8)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)   # (N, c1, 4, 4)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)   # (N, c2, 2, 2)
        return self.head(x.reshape(x.shape[0], -1))


class MultiHeadAttention(Module):
    """Multi-head self-attention (Vaswani et al. 2017 §3.2.2): project x (B, T, D) to
    queries, keys and values, split D into ``heads`` heads of D/heads, attend per head,
    concatenate, project back."""

    def __init__(self, dim: int, heads: int, causal: bool = True,
                 rng: np.random.Generator | None = None, dtype=np.float64):
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.heads, self.causal = heads, causal
        self.q = Linear(dim, dim, rng=rng, dtype=dtype)
        self.k = Linear(dim, dim, rng=rng, dtype=dtype)
        self.v = Linear(dim, dim, rng=rng, dtype=dtype)
        self.out = Linear(dim, dim, rng=rng, dtype=dtype)
        for layer in (self.q, self.k, self.v, self.out):   # Xavier, as PyTorch's attention
            layer.weight.data[...] = init.xavier_uniform((dim, dim), rng, dtype=dtype)

    def _split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.reshape(b, t, self.heads, d // self.heads).permute(0, 2, 1, 3)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        heads = scaled_dot_product_attention(q, k, v, causal=self.causal)   # (B, H, T, D/H)
        return self.out(heads.permute(0, 2, 1, 3).reshape(b, t, d))


class TransformerBlock(Module):
    """A pre-norm Transformer block (Xiong et al. 2020; GPT-2):
    x + MHA(LN(x)), then x + MLP(LN(x)) with MLP = Linear(D, 4D) → GELU → Linear(4D, D)."""

    def __init__(self, dim: int, heads: int, hidden: int | None = None, causal: bool = True,
                 seed: int = 0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        hidden = hidden or 4 * dim
        self.ln1 = LayerNorm(dim, dtype=dtype)
        self.attn = MultiHeadAttention(dim, heads, causal=causal, rng=rng, dtype=dtype)
        self.ln2 = LayerNorm(dim, dtype=dtype)
        self.fc1 = Linear(dim, hidden, rng=rng, dtype=dtype)
        self.fc2 = Linear(hidden, dim, rng=rng, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


@no_grad()
def predict(model: Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class predictions (argmax of the logits) in evaluation mode."""
    was_training = model.training
    model.eval()
    out = [model(Tensor(x[i:i + batch_size])).data.argmax(axis=-1) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return np.concatenate(out)


