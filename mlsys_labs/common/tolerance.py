"""The tolerance policy: compare against a float64 reference computed at test time.

Tolerances per dtype (relative and absolute), the policy every lab follows (the root README's Conventions):

    float64 ~1e-12   float32 ~1e-5   tf32/float16 ~1e-3   bfloat16 ~1e-2   integers: exact

``assert_close(actual, reference)`` accepts numpy arrays, torch tensors and scalars,
casts both to float64, and on failure reports the worst element, the error and how
many elements are off — and whether any output was never written (NaN poison).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

# Set by the pytest plugin in a grading run: every comparison is reported here (the value
# compared and the tolerance) before it is made, for the grader's check against the
# reference's run.  ``None`` otherwise.
RECORDER: Callable[[dict], None] | None = None
RECORD_SAMPLE = 256   # elements of a compared value kept in a record (evenly spaced), plus sums


def record_comparison(actual: np.ndarray, rtol: float, atol: float, what: str) -> None:
    """Report one comparison to the grader's recorder (if any): shape, tolerance, a sample
    of the value and its sum and absolute sum over every element."""
    if RECORDER is None:
        return
    flat = actual.reshape(-1)
    idx = np.linspace(0, flat.size - 1, num=min(RECORD_SAMPLE, flat.size)).astype(np.int64) if flat.size else []
    finite = np.where(np.isfinite(flat), flat, 0.0)
    RECORDER({"kind": "close", "what": what[:100], "shape": list(actual.shape), "rtol": float(rtol),
              "atol": float(atol), "sample": [float(v) for v in flat[idx]],
              "sum": float(finite.sum()), "abs_sum": float(np.abs(finite).sum())})

# dtype name -> (rtol, atol)
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-12, 1e-12),
    "float32": (1e-5, 1e-6),
    "tf32": (1e-3, 1e-4),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1e-2),
}

_INTEGER_NAMES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}


def dtype_name(x) -> str:
    """'float32', 'bfloat16', ... for numpy arrays, numpy dtypes, torch tensors and torch dtypes."""
    dtype = getattr(x, "dtype", x)
    name = str(dtype)
    return name.replace("torch.", "")


def tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) for a dtype; integers compare exactly."""
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    if name in _INTEGER_NAMES:
        return (0.0, 0.0)
    if name not in TOLERANCES:
        raise KeyError(f"no tolerance policy for dtype {name!r}; known: {sorted(TOLERANCES)}")
    return TOLERANCES[name]


def to_float64(x) -> np.ndarray:
    """Any array-like (numpy, torch on any device, scalar, list) as a float64 numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().to("cpu")
        if not x.dtype.is_floating_point and not x.dtype.is_complex:
            return x.numpy().astype(np.float64)
        return x.double().numpy()
    return np.asarray(x, dtype=np.float64)


def assert_close(actual, reference, *, dtype=None, rtol: float | None = None,
                 atol: float | None = None, scale: float = 1.0, what: str = "result") -> None:
    """Assert ``|actual - reference| <= atol + rtol * |reference|`` elementwise.

    ``dtype`` picks the policy (default: ``actual``'s dtype); ``scale`` loosens it by a
    stated factor where an algorithm accumulates more rounding (say so at the call).
    Integer dtypes must match exactly.
    """
    name = dtype_name(dtype if dtype is not None else actual)
    p_rtol, p_atol = tolerance(name)
    rtol = p_rtol * scale if rtol is None else rtol
    atol = p_atol * scale if atol is None else atol
    a = to_float64(actual)
    r = to_float64(reference)
    record_comparison(a, rtol, atol, what)
    if a.shape != r.shape:
        raise AssertionError(f"{what}: shape {a.shape} != reference shape {r.shape}")
    if a.size == 0:
        return
    unwritten = np.isnan(a) & ~np.isnan(r)
    if unwritten.any():
        idx = np.unravel_index(np.argmax(unwritten), a.shape)
        raise AssertionError(
            f"{what}: {int(unwritten.sum())} of {a.size} elements are NaN where the reference is not "
            f"(first at index {tuple(int(i) for i in idx)}): output never written, or a NaN produced"
        )
    err = np.abs(a - r)
    bound = atol + rtol * np.abs(r)
    bad = ~(err <= bound) & ~(np.isnan(a) & np.isnan(r))
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), a.shape)
        w = tuple(int(i) for i in worst)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {a.size} elements differ beyond {name} tolerance "
            f"(rtol={rtol:g}, atol={atol:g}); worst at {w}: got {a[w]!r}, expected {r[w]!r}, "
            f"|error|={err[w]:.3g}; max |error| overall {np.nanmax(err):.3g}"
        )


def poison_like(x):
    """A buffer shaped like ``x`` filled with NaN (floats) or the dtype's minimum (integers),
    so that elements a kernel never writes show up in the comparison."""
    if hasattr(x, "detach"):
        import torch

        if x.dtype.is_floating_point:
            return torch.full_like(x, float("nan"))
        return torch.full_like(x, torch.iinfo(x.dtype).min)
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        return np.full_like(x, np.nan)
    return np.full_like(x, np.iinfo(x.dtype).min)
