"""Lab 6 — ZeRO-style sharded data-parallel training on ``torch.distributed``.

Rajbhandari, Rasley, Ruwase & He, *ZeRO: Memory Optimizations Toward Training Trillion
Parameter Models* (SC'20) is the blueprint.  The lesson, one file per idea:

- ``comm``        collective wrappers that count the bytes each rank sends (ZeRO §7; ring algorithms)
- ``flat``        one unit's parameters laid out in a flat, padded buffer cut into N shards (ZeRO §5)
- ``optim``       AdamW on flat fp32 shards (PyTorch's arithmetic, element for element; ZeRO §5.1)
- ``engine``      what every stage shares: units, gradient hooks → buckets (PyTorch DDP, VLDB'20 §3.2),
                  clipping by the global norm, the step, the three model states' placement
- ``ddp``         stage 0: everything whole, bucketed all-reduce overlapped with backward
- ``zero1``       ``ZeRO1(DDP)``: optimizer states sharded — reduce-scatter + all-gather (ZeRO §5.1)
- ``zero2``       ``ZeRO2(ZeRO1)``: gradients sharded too, full buckets freed in flight (ZeRO §5.2)
- ``zero3``       ``ZeRO3(ZeRO2)``: parameters sharded too, gathered per unit with prefetch (ZeRO §5.3; FSDP)
- ``memory``      an inventory of live tensors per category, and the paper's formulas (ZeRO §3, Figure 1)
- ``checkpoint``  sharded save at N ranks, load at M ranks (resharding)

What they run on: ``model`` (a small character-level GPT whose top-level pieces are the sharding
units), ``data`` (Shakespeare's *Coriolanus*, Act I, and its batches), ``stages`` (``make_engine``)
and ``train`` (``torchrun -m mlsys_labs.zero.train --stage {0,1,2,3}``, the training loop).
The launcher, the benchmark harness against PyTorch's own sharding and the demo are in
:mod:`plumbing`.
"""
from . import checkpoint
from .checkpoint import reshard
from .comm import Comm
from .data import CharText, global_batch, load_text, rank_slice
from .ddp import DDP
from .engine import Engine
from .flat import FlatLayout, plan_layout
from .memory import comm_bytes_formula, inventory, model_state_bytes, model_state_formula
from .model import GPT, GPTConfig, build_model
from .optim import ShardAdamW
from .stages import make_engine
from .zero1 import ZeRO1
from .zero2 import ZeRO2
from .zero3 import ZeRO3

__all__ = ["CharText", "Comm", "DDP", "Engine", "FlatLayout", "GPT", "GPTConfig", "ShardAdamW", "ZeRO1",
           "ZeRO2", "ZeRO3", "build_model", "checkpoint", "comm_bytes_formula", "global_batch", "inventory",
           "load_text", "make_engine", "model_state_bytes", "model_state_formula", "plan_layout",
           "rank_slice", "reshard"]
