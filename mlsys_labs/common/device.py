"""CUDA or CPU, decided once, and Triton's interpreter switched on where there is no GPU.

Triton reads ``TRITON_INTERPRET`` when it is first imported, so the switch must happen
before any ``import triton``.  The pytest plugin calls :func:`configure_triton` at
start-up; scripts that use Triton call it (or import a lab's kernels, which do) first.
Numba's CUDA simulator is switched on the same way (``NUMBA_ENABLE_CUDASIM``).
"""
from __future__ import annotations

import functools
import os
import shutil
import sys


@functools.lru_cache(maxsize=None)
def has_cuda() -> bool:
    """True when a CUDA GPU is usable by PyTorch (or, without torch, when nvidia-smi exists)."""
    if os.environ.get("MLSYS_FORCE_CPU") == "1":
        return False
    if shutil.which("nvidia-smi") is None and not os.path.exists("/dev/nvidia0"):
        return False  # no NVIDIA driver: skip importing torch just to learn that
    try:
        import torch
    except ImportError:
        return shutil.which("nvidia-smi") is not None
    return bool(torch.cuda.is_available())


def torch_device():
    """``torch.device('cuda')`` when a GPU is present, else CPU."""
    import torch

    return torch.device("cuda" if has_cuda() else "cpu")


def gpu_name() -> str | None:
    if not has_cuda():
        return None
    import torch

    return torch.cuda.get_device_name(0)


def configure_triton() -> bool:
    """Switch Triton (and Numba CUDA) to their CPU interpreters when there is no GPU.

    Returns True when running interpreted.  Raises if Triton was already imported
    without the interpreter on a machine that has no GPU: that import came too early.
    """
    from .paths import state_dir

    # Triton's compile cache stays in the project, not in ~/.triton
    os.environ.setdefault("TRITON_CACHE_DIR", str(state_dir("triton-cache")))
    if has_cuda():
        return False
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "Triton was imported before mlsys_labs.common.device.configure_triton(); "
            "set TRITON_INTERPRET=1 before importing triton on a machine without a GPU"
        )
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"
