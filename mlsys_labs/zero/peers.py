"""Ours against PyTorch's own sharding, in the same processes and the same run.

    torchrun --nproc_per_node 2 -m mlsys_labs.zero.peers OUT.json [--device cuda]

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

import torch
import torch.distributed as dist

from ..common.bench import compare
from .comm import Comm
from .data import CharText, global_batch, load_text, rank_slice
from .memory import comm_bytes_formula, inventory, model_state_bytes, model_state_formula
from .model import GPTConfig, build_model
from .stages import make_engine

CFG = dict(block_size=64, n_layer=2, n_head=4, d_model=128)
BATCH, LR, WD, SEED = 16, 1e-3, 0.01, 0
CHECK_STEPS = 5


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
    state = [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0]
    if hasattr(opt, "optim"):  # ZeroRedundancyOptimizer keeps the local optimizer inside
        state = [v for st in opt.optim.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0]
    return _tensor_bytes(params) + _tensor_bytes(p.grad for p in params) + _tensor_bytes(state)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0]
    cuda = "--device" in argv and argv[argv.index("--device") + 1] == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    else:
        torch.set_num_threads(1)
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda" if cuda else "cpu")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = CharText(load_text())
    ids = data.split()[0]
    cfg = GPTConfig(vocab_size=data.vocab_size, **CFG)
    step_no = {"ours": 0, "peer": 0}

    def batch(who):
        x, y = global_batch(ids, step_no[who], BATCH, cfg.block_size, SEED)
        step_no[who] += 1
        return rank_slice(x, rank, world).to(device), rank_slice(y, rank, world).to(device)

    def our_step(engine, zero_grad=True):
        def run():
            x, y = batch("ours")
            loss = engine(x, y)
            engine.backward(loss)
            engine.step()
            if zero_grad:  # (stage 3 frees its gradient shards here; measure memory before)
                engine.zero_grad()
            return loss.detach()
        return run

    def peer_step(model, opt):
        def run():
            x, y = batch("peer")
            loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=False)
            return loss.detach()
        return run

    report = {"world": world, "device": str(device), "config": CFG, "batch": BATCH, "pairs": {}}
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    for stage, peer_name in ((1, "ZeroRedundancyOptimizer"), (3, "FSDP2 fully_shard")):
        step_no.update(ours=0, peer=0)
        engine = make_engine(stage, build_model(cfg, SEED).to(device), Comm(), lr=LR, weight_decay=WD)
        peer_model = build_model(cfg, SEED).to(device)
        if stage == 1:
            peer = DistributedDataParallel(peer_model)
            opt = ZeroRedundancyOptimizer(peer.parameters(), optimizer_class=torch.optim.AdamW, lr=LR,
                                          weight_decay=WD)
        else:
            for block in peer_model.blocks:
                fully_shard(block)
            fully_shard(peer_model)
            peer = peer_model
            opt = torch.optim.AdamW(peer.parameters(), lr=LR, weight_decay=WD)
        ours, theirs = our_step(engine), peer_step(peer, opt)
        ours_losses = [float(ours()) for _ in range(CHECK_STEPS)]
        peer_losses = [float(theirs()) for _ in range(CHECK_STEPS)]
        t = torch.tensor([ours_losses, peer_losses], dtype=torch.float64)
        dist.all_reduce(t)
        t /= world
        same = bool(torch.allclose(t[0], t[1], rtol=1e-4, atol=0))
        our_step(engine, zero_grad=False)()
        ours_bytes = model_state_bytes(inventory(engine))
        engine.zero_grad()
        peer_bytes = _peer_state_bytes(peer, opt)
        cmp = compare(ours, theirs, warmup=2, repeats=15,
                      sync=torch.cuda.synchronize if cuda else (lambda: None))
        med = torch.tensor([cmp.ours.median, cmp.peer.median], dtype=torch.float64)
        dist.all_reduce(med, op=dist.ReduceOp.MAX)  # a step takes as long as its slowest rank
        report["pairs"][f"stage{stage}"] = {
            "peer": peer_name, "ours_median_s": float(med[0]), "peer_median_s": float(med[1]),
            "ratio": float(med[0] / med[1]), "same_loss": same,
            "ours_losses": t[0].tolist(), "peer_losses": t[1].tolist(),
            "ours_state_bytes": ours_bytes, "peer_state_bytes": peer_bytes,
            "formula_bytes": model_state_formula(stage, engine.psi, world)}
        del engine, peer, peer_model, opt

    formulas = {}
    for stage in range(4):
        comm = Comm()
        engine = make_engine(stage, build_model(cfg, SEED).to(device), comm, lr=LR, weight_decay=WD)
        step_no["ours"] = 0
        our_step(engine)()
        comm.reset()
        our_step(engine, zero_grad=False)()
        inv = inventory(engine)
        formulas[f"stage{stage}"] = {
            "psi": engine.psi, "psi_padded": engine.psi_padded, "state_bytes": model_state_bytes(inv),
            "state_formula": model_state_formula(stage, engine.psi, world),
            "sent_bytes": comm.total("grads", "params"),
            "sent_formula": comm_bytes_formula(stage, engine.psi, world, 4)}
        if cuda:
            formulas[f"stage{stage}"]["cuda_max_memory_allocated"] = torch.cuda.max_memory_allocated()
        del engine
    report["formulas"] = formulas
    if rank == 0:
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
