"""``make_engine(stage, ...)``: 0 = DDP, 1-3 = ZeRO stages."""
from __future__ import annotations

from .ddp import DDP
from .zero1 import ZeRO1
from .zero2 import ZeRO2
from .zero3 import ZeRO3

ENGINES = {0: DDP, 1: ZeRO1, 2: ZeRO2, 3: ZeRO3}


def make_engine(stage: int, model, comm, **options):
    if stage not in ENGINES:
        raise ValueError(f"stage must be one of {sorted(ENGINES)}, got {stage}")
    return ENGINES[stage](model, comm, **options)
