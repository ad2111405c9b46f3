"""Where the bytes are: an inventory of live tensors by category, and ZeRO's formulas.

ZeRO §3.1 counts the *model states* of mixed-precision Adam training: 2Ψ bytes of fp16
parameters, 2Ψ of fp16 gradients and KΨ = 12Ψ of optimizer states (fp32 master weights,
momentum, variance).  Partitioning them over N ranks (§5, Figure 1) gives

    stage            mixed precision (K = 12)     fp32 Adam (4 + 4 + 8)
    0 (DDP)          16Ψ                          16Ψ
    1  P_os          4Ψ + 12Ψ/N                   8Ψ + 8Ψ/N
    2  P_os+g        2Ψ + 14Ψ/N                   4Ψ + 12Ψ/N
    3  P_os+g+p      16Ψ/N                        16Ψ/N

and communication (§7.2) of 2Ψ elements per step for DDP and stages 1-2 (reduce-scatter +
all-gather, or the all-reduce made of them) and 3Ψ for stage 3, each times (N-1)/N.

``inventory`` measures instead of assuming: it walks every live tensor the garbage collector
can see plus the ones the engine holds, counts each storage once, and files it under the
engine's category for it (or "other": activations, data, the caller's own copies).
"""
from __future__ import annotations

import gc

import torch


def model_state_formula(stage: int, psi: float, world: int, mixed: bool = False) -> float:
    """Bytes of parameters + gradients + optimizer states per rank (ZeRO Figure 1)."""
    # BEGIN SOLUTION [step 9] hint: bytes per element (p, g, K) = (2, 2, 12) mixed or (4, 4, 8) fp32; divide by N what the stage partitions
    p, g, k = (2, 2, 12) if mixed else (4, 4, 8)
    n = world
    return {0: (p + g + k) * psi,
            1: (p + g) * psi + k * psi / n,
            2: p * psi + (g + k) * psi / n,
            3: (p + g + k) * psi / n}[stage]
    # END SOLUTION


def comm_bytes_formula(stage: int, psi: float, world: int, elem_bytes: int) -> float:
    """Bytes each rank sends per step with ring collectives (ZeRO §7.2)."""
    # BEGIN SOLUTION [step 9] hint: 2 (DDP, stages 1-2) or 3 (stage 3) times (N-1)/N · Ψ · b
    factor = 3 if stage == 3 else 2
    return factor * (world - 1) / world * psi * elem_bytes
    # END SOLUTION


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    s = t.untyped_storage()
    return (str(t.device), s.data_ptr())


def inventory(engine=None) -> dict[str, int]:
    """Bytes of live tensor storage by category: parameters, gradients, optimizer, frozen, other.

    Every storage is counted once (a parameter that is a view of a flat buffer is the buffer)."""
    # BEGIN SOLUTION [step 9] hint: map the storages of engine.model_state() (and frozen parameters) to categories; add every torch.Tensor gc.get_objects() finds; sum storage nbytes once per storage
    category: dict[tuple[str, int], str] = {}
    storages: dict[tuple[str, int], int] = {}
    if engine is not None:
        state = dict(engine.model_state())
        state["frozen"] = [p for p in engine.model.parameters() if not p.requires_grad]
        for cat, tensors in state.items():
            for t in tensors:
                key = _storage_key(t)
                category.setdefault(key, cat)
                storages[key] = t.untyped_storage().nbytes()
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor) and not obj.is_meta and obj.layout == torch.strided:
            try:
                key = _storage_key(obj)
                storages.setdefault(key, obj.untyped_storage().nbytes())
            except RuntimeError:  # tensors without storage (e.g. some wrappers)
                continue
    out = {"parameters": 0, "gradients": 0, "optimizer": 0, "frozen": 0, "other": 0}
    for key, nbytes in storages.items():
        if key[1] == 0:
            continue  # empty placeholders
        out[category.get(key, "other")] += nbytes
    return out
    # END SOLUTION


def model_state_bytes(inv: dict[str, int]) -> int:
    return inv["parameters"] + inv["gradients"] + inv["optimizer"]
