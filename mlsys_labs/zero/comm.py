"""Collective wrappers that count the bytes each rank sends.

The count is the *algorithmic* traffic of the bandwidth-optimal (ring) algorithms —
what nccl-tests calls bus bytes — for ``n`` bytes of data on ``N`` ranks:

    all-reduce       2(N-1)/N · n      (a reduce-scatter followed by an all-gather)
    reduce-scatter    (N-1)/N · n      (n = the whole input)
    all-gather        (N-1)/N · n      (n = the whole output)

These are the terms of ZeRO §7 (DDP and stages 1-2 move 2Ψ elements per step, stage 3
moves 3Ψ).  The wire traffic of a particular backend can differ: gloo implements
reduce-scatter as an all-reduce followed by a local copy (twice the traffic), which is
why CPU timings of stage 2 are not what the formula promises.

Every call carries a ``tag`` ("grads", "params", "norm", "metrics", ...) so that the
model-state traffic can be compared with the formula apart from small control messages.
PyTorch 2.13 renamed ``reduce_scatter_tensor``/``all_gather_into_tensor`` to
``reduce_scatter_single``/``all_gather_single``; we call whichever exists, without warnings.
"""
from __future__ import annotations

from collections import defaultdict

import torch
import torch.distributed as dist

_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class _Done:
    """A finished 'work handle' for world size 1 (nothing to wait for)."""

    def wait(self):
        return True


class Comm:
    """One process group plus counters: ``sent[tag]`` bytes and ``calls[tag]`` collectives."""

    def __init__(self, group=None):
        self.group = group
        self.rank = dist.get_rank(group) if dist.is_initialized() else 0
        self.world = dist.get_world_size(group) if dist.is_initialized() else 1
        self.sent: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        self.sent.clear()
        self.calls.clear()

    def total(self, *tags: str) -> int:
        return sum(self.sent[t] for t in tags) if tags else sum(self.sent.values())

    def _count(self, tag: str, nbytes: float) -> None:
        # BEGIN SOLUTION [step 1] hint: add the bytes to self.sent[tag] (as an int) and one call to self.calls[tag]
        self.sent[tag] += int(round(nbytes))
        self.calls[tag] += 1
        # END SOLUTION

    def all_reduce(self, tensor: torch.Tensor, *, tag: str, async_op: bool = False):
        """Sum ``tensor`` over ranks in place; counts 2(N-1)/N of its bytes."""
        # BEGIN SOLUTION [step 1] hint: count 2(N-1)/N · tensor bytes, then dist.all_reduce (skip it when N == 1)
        n = self.world
        self._count(tag, 2 * (n - 1) / n * tensor.numel() * tensor.element_size())
        if n == 1:
            return _Done() if async_op else None
        return dist.all_reduce(tensor, group=self.group, async_op=async_op)
        # END SOLUTION

    def reduce_scatter(self, output: torch.Tensor, input: torch.Tensor, *, tag: str,
                       async_op: bool = False):
        """``output`` (len n/N) = this rank's chunk of the sum of ``input`` (len n) over ranks.

        ``output`` may be this rank's own chunk of ``input`` (in place)."""
        # BEGIN SOLUTION [step 1] hint: count (N-1)/N · input bytes, then the reduce-scatter (a copy when N == 1)
        n = self.world
        self._count(tag, (n - 1) / n * input.numel() * input.element_size())
        if n == 1:
            if output.data_ptr() != input.data_ptr():
                output.copy_(input)
            return _Done() if async_op else None
        return _reduce_scatter(output, input, group=self.group, async_op=async_op)
        # END SOLUTION

    def all_gather(self, output: torch.Tensor, input: torch.Tensor, *, tag: str,
                   async_op: bool = False):
        """``output`` (len n) = the concatenation of every rank's ``input`` (len n/N).

        ``input`` may be this rank's own chunk of ``output`` (in place)."""
        # BEGIN SOLUTION [step 1] hint: count (N-1)/N · output bytes, then the all-gather (a copy when N == 1)
        n = self.world
        self._count(tag, (n - 1) / n * output.numel() * output.element_size())
        if n == 1:
            if output.data_ptr() != input.data_ptr():
                output.copy_(input)
            return _Done() if async_op else None
        return _all_gather(output, input, group=self.group, async_op=async_op)
        # END SOLUTION
