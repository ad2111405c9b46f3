"""Stage 0, data parallelism as in PyTorch DDP (Li et al., VLDB 2020).

Every rank holds everything: parameters, gradients and optimizer states (16Ψ bytes with
fp32 Adam).  Gradients are averaged with one all-reduce per unit-sized *bucket*, launched
from the gradient hooks as soon as the bucket is complete, so it runs while backward is
still computing earlier units (the overlap of DDP §3.2.3).  All ranks then take the same
optimizer step on identical data.
"""
from __future__ import annotations

import torch

from .engine import Engine
from .flat import flatten, views


class DDP(Engine):
    stage = 0
    state_is_sharded = False
    grads_are_sharded = False

    def _setup(self) -> None:
        self.flat_params, self.flat_grads = [], []
        for L in self.layouts:
            full32 = flatten(L, L.params, torch.float32)
            flat = full32.to(self.param_dtype) if self.mixed else full32
            for p, v in zip(L.params, views(L, flat)):
                p.data = v                       # the module's parameters now live in the flat buffer
            self.flat_params.append(flat)
            self.flat_grads.append(torch.zeros_like(flat))
            self.master.append(full32)           # the same tensor as flat when fp32
            self.exp_avg.append(torch.zeros_like(full32))
            self.exp_avg_sq.append(torch.zeros_like(full32))
        self._handles = []
        self._register_grad_hooks()

    def _bucket_ready(self, u: int) -> None:
        # BEGIN SOLUTION [step 5] hint: when syncing, start an async all-reduce of the bucket (tag "grads") and remember the handle
        if self._sync:
            self._handles.append((u, self.comm.all_reduce(self.flat_grads[u], tag="grads", async_op=True)))
        # END SOLUTION

    def _finish_backward(self) -> None:
        self._launch_unfinished()
        # BEGIN SOLUTION [step 5] hint: wait for every handle, then divide those buckets by N (sum -> mean)
        for u, handle in self._handles:
            handle.wait()
            self.flat_grads[u].div_(self.world)
        self._handles = []
        # END SOLUTION

    def _grad_shards(self):
        return self.flat_grads

    def _publish(self) -> None:
        if self.mixed:
            for flat, master in zip(self.flat_params, self.master):
                flat.copy_(master)

    def zero_grad(self) -> None:
        for g in self.flat_grads:
            g.zero_()

    def model_state(self):
        return {"parameters": list(self.flat_params), "gradients": list(self.flat_grads),
                "optimizer": (list(self.master) if self.mixed else []) + self.exp_avg + self.exp_avg_sq}
