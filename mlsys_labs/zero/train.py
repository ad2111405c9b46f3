"""Training entry point: ``torchrun --standalone --nproc_per_node 2 -m mlsys_labs.zero.train --stage 3``.

One machine: ``--standalone --nproc_per_node N``.  Several machines: on each,
``torchrun --nnodes M --nproc_per_node N --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m mlsys_labs.zero.train ...``
(the same command everywhere; HOST is any one of the machines).  gloo on CPUs, NCCL on GPUs.

Each step: every rank takes its slice of the step's global batch (``data.py``), runs
``--accumulate`` micro-batches, the engine averages gradients and updates (``--stage``);
the loss printed is the global batch's.  ``--save-dir/--save-at`` write a sharded checkpoint,
``--resume`` continues from one written at any world size.  ``--die-rank/--die-at`` make one
rank exit in the middle of a step (after its forward), to see the run fail instead of hang.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from ..common.cli_args import at_least
from . import checkpoint
from .comm import Comm
from .data import CharText, global_batch, load_text, rank_slice
from .memory import comm_bytes_formula, inventory, model_state_bytes, model_state_formula
from .model import GPTConfig, build_model
from .stages import make_engine


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", type=int, default=2, choices=[0, 1, 2, 3], help="0 = DDP, 1-3 = ZeRO stage")
    p.add_argument("--steps", type=at_least(1), default=100)
    p.add_argument("--batch-size", type=at_least(1), default=16, help="global batch (sequences)")
    p.add_argument("--block-size", type=at_least(1), default=64)
    p.add_argument("--d-model", type=at_least(1), default=64)
    p.add_argument("--layers", type=at_least(1), default=2)
    p.add_argument("--heads", type=at_least(1), default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=at_least(0, float), default=0.01)
    p.add_argument("--clip", type=at_least(0, float), default=1.0, help="max global gradient norm (0: off)")
    p.add_argument("--accumulate", type=at_least(1), default=1, help="micro-batches per step")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: bf16 parameters, gradients and collectives, fp32 master weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss-log", help="rank 0 appends one JSON line per step here")
    p.add_argument("--save-dir")
    p.add_argument("--save-at", type=int, default=-1, help="save after this many steps")
    p.add_argument("--resume", help="a checkpoint directory (any world size, any stage)")
    p.add_argument("--die-rank", type=int, default=-1)
    p.add_argument("--die-at", type=int, default=-1)
    p.add_argument("--timeout", type=at_least(1, float), default=60.0, help="collective timeout, seconds")
    return p.parse_args(argv)


def build_engine(args, device: torch.device):
    """The model on ``device`` wrapped in the ``--stage`` engine, and the training token ids."""
    comm = Comm()
    data = CharText(load_text())
    train_ids, _ = data.split()
    cfg = GPTConfig(vocab_size=data.vocab_size, block_size=args.block_size, n_layer=args.layers,
                    n_head=args.heads, d_model=args.d_model)
    model = build_model(cfg, args.seed).to(device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    engine = make_engine(args.stage, model, comm, lr=args.lr, weight_decay=args.weight_decay,
                         param_dtype=dtype, clip_norm=args.clip or None)
    return engine, comm, train_ids


def train_step(engine, comm: Comm, args, train_ids: torch.Tensor, step: int, device: torch.device) -> dict:
    """One optimizer step over ``--accumulate`` micro-batches of this rank's slice; the global loss."""
    t0 = time.perf_counter()
    sent_before = comm.total("grads", "params")
    x, y = global_batch(train_ids, step, args.batch_size, args.block_size, args.seed)
    x = rank_slice(x, comm.rank, comm.world).to(device)
    y = rank_slice(y, comm.rank, comm.world).to(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for k, (xm, ym) in enumerate(zip(x.chunk(args.accumulate), y.chunk(args.accumulate))):
        loss = engine(xm, ym) / args.accumulate
        if comm.rank == args.die_rank and step == args.die_at:
            print(f"rank {comm.rank}: simulated failure in the middle of step {step}", file=sys.stderr, flush=True)
            os._exit(17)
        engine.backward(loss, sync=k == args.accumulate - 1)
        total += loss.detach().double()
    engine.step()
    inv = inventory(engine) if step == args.steps - 1 else None
    engine.zero_grad()
    comm.all_reduce(total, tag="metrics")
    record = {"step": step, "loss": float(total) / comm.world, "seconds": time.perf_counter() - t0,
              "bytes_sent": comm.total("grads", "params") - sent_before, "world": comm.world,
              "stage": args.stage, "psi": engine.psi, "psi_padded": engine.psi_padded}
    if inv is not None:
        record["inventory"] = inv
    return record


def print_summary(args, engine, comm: Comm, record: dict) -> None:
    """The last step's model states and bytes sent against the ZeRO formulas."""
    mixed = args.precision == "bf16"
    measured = model_state_bytes(record["inventory"])
    formula = model_state_formula(args.stage, engine.psi, comm.world, mixed)
    sent = comm_bytes_formula(args.stage, engine.psi, comm.world, 2 if mixed else 4)
    sent *= 1 if args.stage < 2 else args.accumulate
    print(f"stage {args.stage}, N={comm.world}, Ψ={engine.psi}: model states {measured} B per rank "
          f"(formula {formula:.0f}); sent {record['bytes_sent']} B in the last step (formula {sent:.0f})",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    owns_group = not dist.is_initialized()  # the tests call main() inside a running group
    if owns_group:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=args.timeout))
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(1)
    try:
        engine, comm, train_ids = build_engine(args, device)
        start = checkpoint.load(engine, args.resume) if args.resume else 0
        comm.reset()
        log = open(args.loss_log, "a") if args.loss_log and comm.rank == 0 else None
        for step in range(start, args.steps):
            record = train_step(engine, comm, args, train_ids, step, device)
            if log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if comm.rank == 0 and (step % 10 == 0 or step == args.steps - 1):
                print(f"step {step:4d}  loss {record['loss']:.4f}  {record['seconds'] * 1e3:.0f} ms", flush=True)
            if args.save_dir and step + 1 == args.save_at:
                checkpoint.save(engine, args.save_dir, step + 1)
        if comm.rank == 0 and args.steps > start:
            print_summary(args, engine, comm, record)
        if log:
            log.close()
    finally:
        if owns_group:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
