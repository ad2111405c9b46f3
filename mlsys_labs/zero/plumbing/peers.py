"""Ours against PyTorch's own sharding, in the same processes and the same run.

    torchrun --nproc_per_node 2 -m mlsys_labs.zero.plumbing.peers OUT.json [--device cuda]

- stage 1 against ``torch.distributed.optim.ZeroRedundancyOptimizer`` (AdamW) under PyTorch DDP;
- stage 3 against FSDP2 (``torch.distributed.fsdp.fully_shard`` on every block and the root).

Both sides start from the same weights and train on the same batches; before any timing counts
the losses of the first steps must agree (a guard against, e.g., FSDP2 on gloo summing instead
of averaging gradients).  Then steps alternate ours/theirs (``common.bench.compare``) and rank 0
writes medians, per-rank model-state bytes of each side, and our memory and bytes sent per step
for stages 0-3 against the ZeRO formulas.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from ...common.bench import compare
from ..comm import Comm
from ..data import CharText, global_batch, load_text, rank_slice
from ..memory import comm_bytes_formula, inventory, model_state_bytes, model_state_formula
from ..model import GPTConfig, build_model
from ..stages import make_engine

CFG = dict(block_size=64, n_layer=2, n_head=4, d_model=128)
BATCH, LR, WD, SEED = 16, 1e-3, 0.01, 0
CHECK_STEPS = 5
PEERS = {1: "ZeroRedundancyOptimizer", 3: "FSDP2 fully_shard"}


@dataclass
class Run:
    """What every measurement of this process shares."""

    cfg: GPTConfig
    ids: torch.Tensor
    device: torch.device
    rank: int
    world: int
    cuda: bool

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


class Batches:
    """One side's global batches in order (step 0, 1, ...), this rank's slice of each."""

    def __init__(self, run: Run):
        self.run, self.step = run, 0

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.run
        x, y = global_batch(r.ids, self.step, BATCH, r.cfg.block_size, SEED)
        self.step += 1
        return rank_slice(x, r.rank, r.world).to(r.device), rank_slice(y, r.rank, r.world).to(r.device)


def _tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None:
            continue
        if hasattr(t, "to_local"):
            t = t.to_local()
        s = t.untyped_storage()
        if s.data_ptr() not in seen:
            seen.add(s.data_ptr())
            total += s.nbytes()
    return total


def _peer_state_bytes(model, opt) -> int:
    params = list(model.parameters())
    inner = opt.optim if hasattr(opt, "optim") else opt  # ZeroRedundancyOptimizer keeps the local optimizer inside
    state = [v for st in inner.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0]
    return _tensor_bytes(params) + _tensor_bytes(p.grad for p in params) + _tensor_bytes(state)


def our_step(engine, batches: Batches, zero_grad: bool = True) -> Callable[[], torch.Tensor]:
    def run():
        x, y = batches()
        loss = engine(x, y)
        engine.backward(loss)
        engine.step()
        if zero_grad:  # (measure memory before: after it the gradients are zeros)
            engine.zero_grad()
        return loss.detach()
    return run


def peer_step(model, opt, batches: Batches) -> Callable[[], torch.Tensor]:
    def run():
        x, y = batches()
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        return loss.detach()
    return run


def build_peer(stage: int, run: Run):
    """PyTorch's own version of ``stage``: DDP + ZeroRedundancyOptimizer (1) or FSDP2 (3)."""
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    model = build_model(run.cfg, SEED).to(run.device)
    if stage == 1:
        peer = DistributedDataParallel(model)
        return peer, ZeroRedundancyOptimizer(peer.parameters(), optimizer_class=torch.optim.AdamW, lr=LR,
                                             weight_decay=WD)
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model, torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)


def _mean_over_ranks(rows: list[list[float]], world: int) -> torch.Tensor:
    t = torch.tensor(rows, dtype=torch.float64)
    dist.all_reduce(t)
    return t / world


def compare_pair(stage: int, run: Run) -> dict:
    """Our stage against PyTorch's: same losses first, then interleaved step times and state bytes."""
    engine = make_engine(stage, build_model(run.cfg, SEED).to(run.device), Comm(), lr=LR, weight_decay=WD)
    peer, opt = build_peer(stage, run)
    ours_batches = Batches(run)
    ours, theirs = our_step(engine, ours_batches), peer_step(peer, opt, Batches(run))
    losses = _mean_over_ranks([[float(ours()) for _ in range(CHECK_STEPS)],
                               [float(theirs()) for _ in range(CHECK_STEPS)]], run.world)
    same = bool(torch.allclose(losses[0], losses[1], rtol=1e-4, atol=0))
    our_step(engine, ours_batches, zero_grad=False)()
    ours_bytes = model_state_bytes(inventory(engine))
    engine.zero_grad()
    peer_bytes = _peer_state_bytes(peer, opt)
    cmp = compare(ours, theirs, warmup=2, repeats=15, sync=run.sync)
    med = torch.tensor([cmp.ours.median, cmp.peer.median], dtype=torch.float64)
    dist.all_reduce(med, op=dist.ReduceOp.MAX)  # a step takes as long as its slowest rank
    return {"peer": PEERS[stage], "ours_median_s": float(med[0]), "peer_median_s": float(med[1]),
            "ratio": float(med[0] / med[1]), "same_loss": same,
            "ours_losses": losses[0].tolist(), "peer_losses": losses[1].tolist(),
            "ours_state_bytes": ours_bytes, "peer_state_bytes": peer_bytes,
            "formula_bytes": model_state_formula(stage, engine.psi, run.world)}


def formula_row(stage: int, run: Run) -> dict:
    """Our memory and bytes sent in one step of ``stage`` against the ZeRO formulas."""
    comm = Comm()
    engine = make_engine(stage, build_model(run.cfg, SEED).to(run.device), comm, lr=LR, weight_decay=WD)
    batches = Batches(run)
    our_step(engine, batches)()
    comm.reset()
    our_step(engine, batches, zero_grad=False)()
    row = {"psi": engine.psi, "psi_padded": engine.psi_padded,
           "state_bytes": model_state_bytes(inventory(engine)),
           "state_formula": model_state_formula(stage, engine.psi, run.world),
           "sent_bytes": comm.total("grads", "params"),
           "sent_formula": comm_bytes_formula(stage, engine.psi, run.world, 4)}
    if run.cuda:
        row["cuda_max_memory_allocated"] = torch.cuda.max_memory_allocated()
    return row


def start(cuda: bool) -> Run:
    """Join the process group (NCCL with one GPU per rank, gloo on CPUs) and load the text."""
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    else:
        torch.set_num_threads(1)
    dist.init_process_group("nccl" if cuda else "gloo")
    data = CharText(load_text())
    return Run(cfg=GPTConfig(vocab_size=data.vocab_size, **CFG), ids=data.split()[0],
               device=torch.device("cuda" if cuda else "cpu"), rank=dist.get_rank(),
               world=dist.get_world_size(), cuda=cuda)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0]
    run = start(cuda="--device" in argv and argv[argv.index("--device") + 1] == "cuda")
    report = {"world": run.world, "device": str(run.device), "config": CFG, "batch": BATCH,
              "pairs": {f"stage{stage}": compare_pair(stage, run) for stage in PEERS},
              "formulas": {f"stage{stage}": formula_row(stage, run) for stage in range(4)}}
    if run.rank == 0:
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
