"""Data-parallel SGD: every rank holds the whole model, computes gradients on its share
of each global mini-batch, and the ranks average the gradients with an allreduce before
the same optimizer step (Li et al., "PyTorch Distributed", VLDB 2020, §2; Goyal et al. 2017).

The global batch of B examples is split in p shards (sizes differing by at most one).
Rank r's loss is the mean over its b_r examples, so the gradient of the global mean is

    ∇ = Σ_r (b_r / B) · ∇_r           — one sum-allreduce of the scaled local gradients.

All gradients travel in one flat buffer (one allreduce per step, as DDP's buckets do).
Every rank starts from the same weights (same seed) and applies the same update, so the
weights stay identical on every rank — and equal to serial training on the full batch,
up to floating-point reassociation of the sum.

Uses lab 1's autograd (``mlsys_labs.nn``): MLP, cross_entropy, SGD.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mlsys_labs.common.cli_args import at_least
from mlsys_labs.nn import MLP, SGD, Tensor, cross_entropy
from mlsys_labs.nn.data import load_digits_split


def batch_schedule(n_examples: int, batch_size: int, steps: int, seed: int) -> list[np.ndarray]:
    """The global mini-batches (example indices), the same on every rank."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n_examples) for _ in range(steps * batch_size // n_examples + 1)])
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def train_data_parallel(comm, allreduce_sum: Callable[[np.ndarray], np.ndarray], *,
                        sizes: tuple[int, ...] = (64, 32, 10), steps: int = 20, batch_size: int = 64,
                        lr: float = 0.2, momentum: float = 0.9, seed: int = 0) -> tuple[list[np.ndarray], list[float]]:
    """Train lab 1's MLP on the digits with gradients summed by ``allreduce_sum(flat)``.

    Returns (the final weights as arrays, the global training loss per step).
    """
    rank, p = comm.Get_rank(), comm.Get_size()
    x, y, _, _ = load_digits_split(seed=0)
    model = MLP(list(sizes), seed=seed)
    params = model.parameters()
    opt = SGD(params, lr=lr, momentum=momentum)
    losses = []
    for idx in batch_schedule(len(x), batch_size, steps, seed):
        shard = np.array_split(idx, p)[rank]
        opt.zero_grad()
        weight = len(shard) / len(idx)
        # BEGIN SOLUTION [step 7] hint: local mean loss on the shard → backward; flatten weight·grad of every parameter into one buffer; allreduce_sum it; copy the slices back into p.grad; opt.step(); append the global loss (comm.allreduce of weight·loss) to losses
        loss = cross_entropy(model(Tensor(x[shard])), y[shard])
        loss.backward()
        flat = np.concatenate([weight * q.grad.reshape(-1) for q in params])
        flat = allreduce_sum(flat)
        offset = 0
        for q in params:
            q.grad = flat[offset:offset + q.data.size].reshape(q.data.shape).copy()
            offset += q.data.size
        opt.step()
        losses.append(float(comm.allreduce(weight * float(loss.data))))  # reporting only (MPI's own)
        # END SOLUTION
    return [q.data.copy() for q in params], losses


def main(argv: list[str] | None = None) -> int:
    """``mpiexec -n 4 python -m mlsys_labs.collectives.sgd [--steps N] [--out weights.npz]``:
    train twice (our ring allreduce, then MPI's Allreduce) and compare the weights."""
    import argparse

    from mpi4py import MPI

    from .allreduce import ALGORITHMS, allreduce

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=at_least(1), default=20)
    ap.add_argument("--batch-size", type=at_least(1), default=64)
    ap.add_argument("--algorithm", default="ring", choices=ALGORITHMS + ("auto",))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="rank 0 saves both runs' weights here (.npz)")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD

    def ours(flat):
        return allreduce(comm, flat, "sum", algorithm=args.algorithm)

    def builtin(flat):
        out = np.empty_like(flat)
        comm.Allreduce(flat, out, op=MPI.SUM)
        return out

    common = dict(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    w_ours, loss_ours = train_data_parallel(comm, ours, **common)
    w_mpi, loss_mpi = train_data_parallel(comm, builtin, **common)
    if comm.Get_rank() == 0:
        worst = max(float(np.max(np.abs(a - b))) for a, b in zip(w_ours, w_mpi))
        print(f"data-parallel SGD on {comm.Get_size()} ranks, {args.steps} steps: loss {loss_ours[0]:.3f} → "
              f"{loss_ours[-1]:.3f} (ours) / {loss_mpi[-1]:.3f} (MPI); max |w_ours − w_MPI| = {worst:.2e}")
        if args.out:
            np.savez(args.out, **{f"ours_{i}": w for i, w in enumerate(w_ours)},
                     **{f"mpi_{i}": w for i, w in enumerate(w_mpi)},
                     loss_ours=np.array(loss_ours), loss_mpi=np.array(loss_mpi))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
