"""Stage 0, data parallelism as in PyTorch DDP (Li et al., VLDB 2020).

Every rank holds everything: parameters, gradients and optimizer states (16Ψ bytes with
fp32 Adam).  Gradients are averaged with one all-reduce per unit-sized *bucket*, launched
from the gradient hooks as soon as the bucket is complete, so it runs while backward is
still computing earlier units (the overlap of DDP §3.2.3).  All ranks then take the same
optimizer step on identical data.

This is the base the ZeRO stages are written against: each of them overrides where one more
model state lives (``zero1.py``: optimizer states, ``zero2.py``: gradients, ``zero3.py``:
parameters) and the collectives that keeps consistent.
"""
from __future__ import annotations

import torch

from .engine import Engine
from .flat import views


class DDP(Engine):
    stage = 0

    # ------------------------------------------------------- where the states live: all whole
    def _setup(self) -> None:
        self._handles: list[tuple[int, object]] = []   # (unit, async all-reduce) launched this backward
        super()._setup()

    def _place_parameters(self, u: int, full32: torch.Tensor) -> torch.Tensor:
        """One flat buffer per unit; the module's parameters become views into it."""
        L = self.layouts[u]
        flat = full32.to(self.param_dtype) if self.mixed else full32
        for p, v in zip(L.params, views(L, flat)):
            p.data = v                       # the module's parameters now live in the flat buffer
        return flat

    def _place_gradients(self, u: int) -> torch.Tensor:
        """One full gradient bucket per unit, for the whole run."""
        return torch.zeros(self.layouts[u].padded, dtype=self.param_dtype, device=self.device)

    def _place_optimizer_state(self, u: int, full32: torch.Tensor) -> None:
        """Master weights and moments for the whole unit."""
        self.master.append(full32)           # the same tensor as the parameters when fp32
        self.exp_avg.append(torch.zeros_like(full32))
        self.exp_avg_sq.append(torch.zeros_like(full32))

    # --------------------------------------------------------------------- the collectives
    def _bucket_ready(self, u: int) -> None:
        # BEGIN SOLUTION [step 5] hint: when syncing, start an async all-reduce of the bucket (tag "grads") and remember the handle
        if self._sync:
            self._handles.append((u, self.comm.all_reduce(self.grads[u], tag="grads", async_op=True)))
        # END SOLUTION

    def _finish_backward(self) -> None:
        self._launch_unfinished()
        # BEGIN SOLUTION [step 5] hint: wait for every handle, then divide those buckets by N (sum -> mean)
        for u, handle in self._handles:
            handle.wait()
            self.grads[u].div_(self.world)
        self._handles = []
        # END SOLUTION

    def _grad_shards(self) -> list[torch.Tensor]:
        return self.grads

    def _publish(self) -> None:
        if self.mixed:
            for flat, master in zip(self.params, self.master):
                flat.copy_(master)
