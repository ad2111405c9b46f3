"""Lab 6 — ZeRO-style sharded data-parallel training on ``torch.distributed``.

Rajbhandari, Rasley, Ruwase & He, *ZeRO: Memory Optimizations Toward Training Trillion
Parameter Models* (SC'20) is the blueprint.  One file per role:

- ``model``       a small character-level GPT whose top-level pieces are the sharding units
- ``data``        a public-domain text (Shakespeare's *Coriolanus*, Act I) and its batches
- ``comm``        collective wrappers that count the bytes each rank sends
- ``flat``        one unit's parameters laid out in a flat, padded buffer cut into N shards
- ``optim``       AdamW on flat fp32 shards (PyTorch's arithmetic, element for element)
- ``engine``      what every stage shares: units, gradient hooks, clipping, the step
- ``ddp``         stage 0: bucketed all-reduce overlapped with backward
- ``zero1``/``zero2``/``zero3``  the three ZeRO stages
- ``checkpoint``  sharded save at N ranks, load at M ranks
- ``memory``      an inventory of live tensors per category, and the paper's formulas
- ``train``       ``torchrun -m mlsys_labs.zero.train --stage {0,1,2,3}``
- ``demo``        ``mlsys-labs run 6``: learning curves, memory and bytes against the formulas
"""
from .comm import Comm
from .data import CharText, global_batch, load_text, rank_slice
from .engine import Engine
from .memory import comm_bytes_formula, inventory, model_state_formula
from .model import GPT, GPTConfig
from .stages import make_engine

__all__ = ["Comm", "CharText", "Engine", "GPT", "GPTConfig", "comm_bytes_formula", "global_batch",
           "inventory", "load_text", "make_engine", "model_state_formula", "rank_slice"]
