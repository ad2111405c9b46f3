"""Sharded checkpoints: every rank writes its own shard; any world size can read them back.

A checkpoint directory holds ``meta.json`` (world size, step, per unit its name and Ψ_u)
and ``rank00000.pt`` … one file per rank with that rank's slice [lo, hi) of each unit's
fp32 master weights and Adam moments — the format is the same for every stage, so a
stage-3 run at 4 ranks can resume as a stage-1 run at 2.  Loading at M ranks *reshards*:
the N slices of a unit, concatenated, are its padded flat vector; cut to Ψ_u, re-padded to a
multiple of M, rank m keeps its M-th (PyTorch's Distributed Checkpoint does the same with
per-tensor metadata; here one flat vector per unit is enough).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist

KEYS = ("master", "exp_avg", "exp_avg_sq")


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def save(engine, directory: str | Path, step: int) -> Path:
    """Write this rank's shard; rank 0 writes meta.json.  ``step`` = steps completed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shards = engine.state_shards()
    torch.save({"rank": engine.rank, "world": engine.world, "step": step,
                "units": [{"name": L.names[0].split(".")[0] if L.names else "", "numel": L.numel,
                           "lo": L.lo, "hi": L.hi, **d} for L, d in zip(engine.layouts, shards)]},
               directory / f"rank{engine.rank:05d}.pt")
    if engine.rank == 0:
        meta = {"world": engine.world, "step": step, "stage": engine.stage,
                "units": [{"names": L.names, "numel": L.numel} for L in engine.layouts]}
        (directory / "meta.json").write_text(json.dumps(meta, indent=1))
    _barrier()
    return directory


def reshard(pieces: list[torch.Tensor], numel: int, world: int, rank: int) -> torch.Tensor:
    """This rank's shard, at ``world`` ranks, of a vector saved as ``pieces`` (one per old rank)."""
    # BEGIN SOLUTION [step 10] hint: concatenate, cut to numel, pad to a multiple of world, take the rank-th chunk
    full = torch.cat(pieces)[:numel]
    shard = -(-numel // world)
    padded = torch.zeros(shard * world, dtype=full.dtype)
    padded[:numel] = full
    return padded[rank * shard:(rank + 1) * shard].clone()
    # END SOLUTION


def load_full(directory: str | Path) -> tuple[list[dict[str, torch.Tensor]], int, dict]:
    """Every unit's full, unpadded master weights and moments, the step, and the metadata."""
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    files = [torch.load(directory / f"rank{r:05d}.pt", weights_only=True) for r in range(meta["world"])]
    units = []
    for u, info in enumerate(meta["units"]):
        units.append({k: reshard([f["units"][u][k] for f in files], info["numel"], 1, 0) for k in KEYS})
    return units, meta["step"], meta


def load(engine, directory: str | Path) -> int:
    """Load a checkpoint written at any world size into ``engine``; returns the step to resume at."""
    units, step, meta = load_full(directory)
    names = [info["names"] for info in meta["units"]]
    ours = [L.names for L in engine.layouts]
    if names != ours:
        raise ValueError(f"checkpoint units {names} do not match the model's {ours}")
    engine.load_full_state(units, step)
    return step
