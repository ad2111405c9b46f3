"""Input checks every launcher runs before it launches: a clear ``ValueError``/``TypeError``
here beats a wrong answer or an illegal memory access inside a kernel."""
from __future__ import annotations

import torch

from mlsys_labs.common.device import triton_interpreted

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_tensor(name: str, t, *, dtypes=None, ndim: int | None = None, contiguous: bool = True) -> None:
    """Raise before launch when ``t`` is not a tensor a kernel can read.

    Under the Triton interpreter (no GPU) kernels read CPU tensors; on a GPU they need CUDA tensors.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} has dtype {str(t.dtype).replace('torch.', '')}; supported: {allowed}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() first); strides {t.stride()}")
    if not triton_interpreted() and not t.is_cuda:
        raise ValueError(f"{name} is on {t.device}; Triton kernels need CUDA tensors (or TRITON_INTERPRET=1)")


def check_same(what: str, **tensors) -> None:
    """All tensors share dtype and device (``what`` names the group in the message)."""
    items = list(tensors.items())
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.dtype != first.dtype:
            raise TypeError(f"{what}: {name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}")
        if t.device != first.device:
            raise ValueError(f"{what}: {name} is on {t.device} but {first_name} is on {first.device}")


def check_out(name: str, out, shape, dtype, like) -> None:
    """A caller-supplied output buffer must have the right shape, dtype and device, and be contiguous."""
    check_tensor(name, out, dtypes=(dtype,))
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    if out.device != like.device:
        raise ValueError(f"{name} is on {out.device}, inputs on {like.device}")
