"""The Tensor and reverse-mode automatic differentiation.

A :class:`Tensor` wraps a numpy array.  Every operation on tensors is a
:class:`Function` with a ``forward`` (numpy in, numpy out) and a ``backward`` (the
upstream gradient in, one gradient per input out).  Calling ``Function.apply`` records
the function, its saved context and its inputs on the output tensor; the recorded
functions form a DAG, and :meth:`Tensor.backward` walks it in reverse topological order
applying the chain rule (D2L §2.5 "Automatic Differentiation"; MiniTorch module 1;
Math & Architectures of DL ch. 8 "Training neural networks: forward and backward
propagation").

What a tensor remembers is a :class:`History` (MiniTorch's name): the Function that
computed it, the context its forward saved, and its inputs — the edges of the graph.
Leaves (parameters, data) have none.

Broadcasting is handled once, here: an operation's backward may return a gradient in
the broadcast (output) shape, and :func:`unbroadcast` sums it back to the input's
shape before it is accumulated.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

_GRAD_ENABLED = True


def is_grad_enabled() -> bool:
    return _GRAD_ENABLED


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (evaluation, optimizer updates)."""
    global _GRAD_ENABLED
    previous = _GRAD_ENABLED
    _GRAD_ENABLED = False
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` (in a broadcast shape) back down to ``shape``.

    numpy broadcasting prepends axes of size 1 and stretches axes of size 1; the
    gradient of a stretched input is the sum over the stretched axes (D2L §2.1.4).
    """
    # BEGIN SOLUTION [step 1] hint: sum over the leading axes numpy prepended, then over axes where shape has 1
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)
    # END SOLUTION


class Context:
    """What a Function's forward leaves for its backward."""

    __slots__ = ("saved", "needs_input_grad", "__dict__")

    def __init__(self):
        self.saved: tuple = ()
        self.needs_input_grad: tuple[bool, ...] = ()  # per positional input, as in PyTorch

    def save_for_backward(self, *values: Any) -> None:
        self.saved = values


class Function:
    """One differentiable operation.  Subclasses define two static methods::

        forward(ctx, *inputs: np.ndarray, **options) -> np.ndarray
        backward(ctx, grad_out: np.ndarray) -> np.ndarray | tuple   # one per input

    Tensor inputs are passed positionally (as numpy arrays); non-differentiable
    options (axis, stride, ...) as keywords.  ``backward`` returns one gradient per
    positional input (``None`` where there is none), possibly in the broadcast shape;
    ``ctx.needs_input_grad`` says which inputs want one (an expensive gradient nobody
    needs, like a network's input image's, may be skipped).
    """

    @staticmethod
    def forward(ctx: Context, *inputs, **options):
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad_out: np.ndarray):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options) -> "Tensor":
        """Run ``forward`` on the inputs' arrays; if any input requires grad, the output
        requires grad and records its :class:`History`."""
        ctx = Context()
        ctx.needs_input_grad = tuple(_GRAD_ENABLED and isinstance(x, Tensor) and x.requires_grad for x in inputs)
        arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
        out = Tensor(cls.forward(ctx, *arrays, **options))
        if _GRAD_ENABLED and any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
            out.requires_grad = True
            out.history = History(cls, ctx, inputs)
        return out


@dataclass(frozen=True, slots=True)
class History:
    """How a tensor was computed (one node of the graph): ``function`` is the
    :class:`Function` subclass, ``ctx`` what its forward saved for backward, ``inputs``
    the positional inputs it was applied to (Tensors, or constants that get no
    gradient) — the edges :func:`topological_order` follows."""

    function: type[Function]
    ctx: Context
    inputs: tuple


def topological_order(root: "Tensor") -> list["Tensor"]:
    """Every tensor that ``root`` depends on (requiring grad), each after all its inputs;
    ``root`` last.  Iterative depth-first search (deep graphs would overflow recursion)."""
    # BEGIN SOLUTION [step 1] hint: depth-first post-order over t.history.inputs (leaves have history None), with a visited set
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        if tensor.history is not None:
            for parent in tensor.history.inputs:
                if isinstance(parent, Tensor) and parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order
    # END SOLUTION


class Tensor:
    """A numpy array that remembers how it was computed.

    ``data`` is the array, ``grad`` the accumulated gradient (leaves only, after
    :meth:`backward`), ``requires_grad`` whether gradients flow to it, ``history`` how
    it was computed (None for a leaf, or when no graph was recorded).
    """

    __array_priority__ = 100  # numpy defers to Tensor's reflected operators

    def __init__(self, data, requires_grad: bool = False):
        self.data = data.data if isinstance(data, Tensor) else np.asarray(data)
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self.history: History | None = None

    # -------------------------------------------------------------- basics
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    # ------------------------------------------------------------ autograd
    def backward(self, grad: np.ndarray | None = None) -> None:
        """Accumulate d(self)/d(leaf) · grad into every leaf's ``.grad``.

        ``grad`` defaults to 1 for a scalar; for other outputs pass the upstream
        gradient (same shape as ``self``).
        """
        if grad is None:
            if self.size != 1:
                raise ValueError("backward() without a gradient needs a scalar output")
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"gradient shape {grad.shape} != tensor shape {self.shape}")
        # BEGIN SOLUTION [step 1] hint: visit topological_order(self) in reverse; call each history.function.backward(history.ctx, g); unbroadcast and sum the input gradients
        grads: dict[int, np.ndarray] = {id(self): grad}
        for tensor in reversed(topological_order(self)):
            g = grads.pop(id(tensor), None)
            if g is None:
                continue
            history = tensor.history
            if history is None:  # a leaf: keep its gradient
                tensor.grad = g if tensor.grad is None else tensor.grad + g
                continue
            input_grads = history.function.backward(history.ctx, g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for x, gx in zip(history.inputs, input_grads):
                if gx is None or not isinstance(x, Tensor) or not x.requires_grad:
                    continue
                gx = unbroadcast(np.asarray(gx), x.shape)
                grads[id(x)] = grads[id(x)] + gx if id(x) in grads else gx
        # END SOLUTION

    # ----------------------------------------------------------- operators
    def _lift(self, other) -> "Tensor":
        """A Python number or array as a constant Tensor of this tensor's dtype."""
        if isinstance(other, Tensor):
            return other
        return Tensor(np.asarray(other, dtype=self.dtype if np.isscalar(other) else None))

    def __add__(self, other):
        return F.add(self, self._lift(other))

    def __radd__(self, other):
        return F.add(self._lift(other), self)

    def __sub__(self, other):
        return F.sub(self, self._lift(other))

    def __rsub__(self, other):
        return F.sub(self._lift(other), self)

    def __mul__(self, other):
        return F.mul(self, self._lift(other))

    def __rmul__(self, other):
        return F.mul(self._lift(other), self)

    def __truediv__(self, other):
        return F.div(self, self._lift(other))

    def __rtruediv__(self, other):
        return F.div(self._lift(other), self)

    def __neg__(self):
        return F.neg(self)

    def __pow__(self, exponent: float):
        return F.pow(self, exponent)

    def __matmul__(self, other):
        return F.matmul(self, self._lift(other))

    def __rmatmul__(self, other):
        return F.matmul(self._lift(other), self)

    def __getitem__(self, index):
        return F.getitem(self, index)

    # --------------------------------------------------------- as methods
    def exp(self):
        return F.exp(self)

    def log(self):
        return F.log(self)

    def tanh(self):
        return F.tanh(self)

    def sigmoid(self):
        return F.sigmoid(self)

    def relu(self):
        return F.relu(self)

    def gelu(self):
        return F.gelu(self)

    def sum(self, axis=None, keepdims: bool = False):
        return F.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        return F.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims: bool = False):
        return F.max(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return F.reshape(self, shape)

    def permute(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return F.permute(self, axes)

    def transpose(self, axis1: int = -2, axis2: int = -1):
        return F.transpose(self, axis1, axis2)

    @property
    def T(self):
        return F.permute(self, tuple(reversed(range(self.ndim))))

    def softmax(self, axis: int = -1):
        return F.softmax(self, axis=axis)

    def log_softmax(self, axis: int = -1):
        return F.log_softmax(self, axis=axis)


from . import functional as F  # noqa: E402  (functional builds on Tensor and Function)
