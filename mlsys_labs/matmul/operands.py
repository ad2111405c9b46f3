"""Checking and preparing the operands every variant shares (not a lesson: plumbing).

Every ``matmul_*`` takes ``(a, b, out=None)`` with ``a`` of shape (m, k), ``b`` of shape
(k, n), both float32 or both float64, any strides, and returns ``C = A @ B`` of shape
(m, n) — written into ``out`` when given.  Errors are raised here, before any kernel
runs, so a wrong call never reaches compiled code:

- ``TypeError``  for anything but two float32 or two float64 arrays (or an ``out`` of
  another dtype): a matmul silently upcasting would hide a bug in a caller;
- ``ValueError`` for operands that are not 2-D or whose inner dimensions differ, or an
  ``out`` of the wrong shape.
"""
from __future__ import annotations

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_operands(a, b, out=None) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``a`` (m, k), ``b`` (k, n) and ``out`` (m, n); return ``a`` and ``b`` as arrays."""
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        raise TypeError(f"matmul: operands must be numpy arrays, got {type(a).__name__} and {type(b).__name__}")
    if a.dtype not in SUPPORTED_DTYPES or b.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"matmul: dtypes must be float32 or float64, got {a.dtype} and {b.dtype}")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: operands have different dtypes {a.dtype} and {b.dtype}; cast one first")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul: operands must be 2-D, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: inner dimensions differ: a is {a.shape}, b is {b.shape} "
                         f"({a.shape[1]} != {b.shape[0]})")
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"matmul: out must be a numpy array, got {type(out).__name__}")
        if out.shape != (a.shape[0], b.shape[1]):
            raise ValueError(f"matmul: out has shape {out.shape}, expected {(a.shape[0], b.shape[1])}")
        if out.dtype != a.dtype:
            raise TypeError(f"matmul: out has dtype {out.dtype}, expected {a.dtype}")
    return a, b


def output_buffer(a: np.ndarray, b: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """A C-contiguous (m, n) buffer for a kernel to write: ``out`` itself when it is
    C-contiguous and shares no memory with ``a`` or ``b`` (the kernels zero C before
    reading all of A and B), else a fresh array (copied back by :func:`finish`)."""
    if (out is not None and out.flags.c_contiguous
            and not np.shares_memory(out, a) and not np.shares_memory(out, b)):
        return out
    return np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)


def finish(c: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """Return the result, copying it into a non-contiguous ``out`` when one was given."""
    if out is None or out is c:
        return c
    out[...] = c
    return out


def c_or_transposed(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(x, False)`` if ``x`` is C-contiguous, ``(x.T, True)`` if its transpose is (a
    transposed view, as BLAS's ``TRANSA`` flag describes it), else a C-contiguous copy.

    The packing routines read either orientation, so a transposed operand costs nothing
    extra, and the compiled kernels see only C-contiguous arrays (one specialisation).
    """
    if x.flags.c_contiguous:
        return x, False
    if x.T.flags.c_contiguous:
        return x.T, True
    return np.ascontiguousarray(x), False
