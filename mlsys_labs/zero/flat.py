"""One unit's trainable parameters as one flat buffer, padded and cut into N shards.

ZeRO §5 partitions each model state into N equal parts; with Ψ_u elements in a unit the
buffer is padded to P_u = ⌈Ψ_u / N⌉·N so that every rank owns ``shard = P_u / N`` of them:
rank r owns elements ``[r·shard, (r+1)·shard)``.  Padding is at most N-1 elements per unit
(this is the "alignment padding" in the memory formulas).  Parameters are packed in
``named_parameters`` order; frozen parameters (``requires_grad=False``) are not packed —
they stay replicated, are not trained, and are not counted in Ψ.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn


@dataclass
class FlatLayout:
    names: list[str]
    shapes: list[torch.Size]
    offsets: list[int]
    numel: int          # Ψ_u: the unit's trainable elements
    padded: int         # P_u: a multiple of world
    world: int
    rank: int
    params: list[nn.Parameter] = field(default_factory=list, repr=False)

    @property
    def shard(self) -> int:
        return self.padded // self.world

    @property
    def lo(self) -> int:
        """First element this rank owns."""
        return self.rank * self.shard

    @property
    def hi(self) -> int:
        return self.lo + self.shard

    def numels(self) -> list[int]:
        return [int(torch.Size(s).numel()) for s in self.shapes]


def plan_layout(module: nn.Module, prefix: str, world: int, rank: int) -> FlatLayout:
    """Offsets of ``module``'s trainable parameters in one flat buffer padded to a multiple of world."""
    named = [(f"{prefix}.{n}", p) for n, p in module.named_parameters() if p.requires_grad]
    # BEGIN SOLUTION [step 2] hint: pack the parameters back to back; pad the total up to a multiple of world
    offsets, total = [], 0
    for _, p in named:
        offsets.append(total)
        total += p.numel()
    padded = -(-total // world) * world if total else 0
    # END SOLUTION
    return FlatLayout(names=[n for n, _ in named], shapes=[p.shape for _, p in named], offsets=offsets,
                      numel=total, padded=padded, world=world, rank=rank, params=[p for _, p in named])


def flatten(layout: FlatLayout, tensors: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """A new padded flat buffer (zeros in the padding) holding ``tensors`` in layout order."""
    flat = torch.zeros(layout.padded, dtype=dtype, device=tensors[0].device if tensors else "cpu")
    for t, off in zip(tensors, layout.offsets):
        flat[off:off + t.numel()] = t.detach().reshape(-1)
    return flat


def views(layout: FlatLayout, flat: torch.Tensor) -> list[torch.Tensor]:
    """The parameters as views into ``flat`` (same storage: writing one writes the other)."""
    return [flat[off:off + n].view(shape) for off, n, shape in zip(layout.offsets, layout.numels(), layout.shapes)]
