"""ZeRO stage 1, P_os: optimizer states partitioned (ZeRO §5.1).

Parameters and gradients stay whole on every rank; the fp32 master weights (under mixed
precision) and Adam's two moments exist only for this rank's shard [lo, hi) of each unit.
Per step, each rank needs the averaged gradient of its shard only — a reduce-scatter, half
an all-reduce — updates that shard, and all-gathers the updated parameters: 2(N-1)/N·Ψ
elements sent, the same as DDP.  Memory with fp32 Adam: 4Ψ + 4Ψ + 8Ψ/N.

Both collectives run in place: the reduce-scatter writes into this rank's own chunk of the
gradient bucket, the all-gather reads from this rank's own chunk of the parameter buffer.
"""
from __future__ import annotations

import torch

from .engine import Engine
from .flat import flatten, views


class ZeRO1(Engine):
    stage = 1

    def _setup(self) -> None:
        self.flat_params, self.flat_grads = [], []
        for L in self.layouts:
            full32 = flatten(L, L.params, torch.float32)
            flat = full32.to(self.param_dtype) if self.mixed else full32
            for p, v in zip(L.params, views(L, flat)):
                p.data = v
            self.flat_params.append(flat)
            self.flat_grads.append(torch.zeros_like(flat))
            # BEGIN SOLUTION [step 6] hint: master = this rank's slice [lo, hi) (a view of flat when fp32, an fp32 copy otherwise); moments of that size
            self.master.append(full32[L.lo:L.hi].clone() if self.mixed else flat[L.lo:L.hi])
            self.exp_avg.append(torch.zeros(L.shard, dtype=torch.float32, device=self.device))
            self.exp_avg_sq.append(torch.zeros(L.shard, dtype=torch.float32, device=self.device))
            # END SOLUTION
        self._handles = []
        self._register_grad_hooks()

    def _bucket_ready(self, u: int) -> None:
        # BEGIN SOLUTION [step 6] hint: when syncing, async reduce-scatter the bucket into its own [lo, hi) chunk (tag "grads")
        if self._sync:
            L, g = self.layouts[u], self.flat_grads[u]
            self._handles.append((u, self.comm.reduce_scatter(g[L.lo:L.hi], g, tag="grads", async_op=True)))
        # END SOLUTION

    def _finish_backward(self) -> None:
        self._launch_unfinished()
        # BEGIN SOLUTION [step 6] hint: wait for every handle, then divide this rank's chunk by N
        for u, handle in self._handles:
            handle.wait()
            L = self.layouts[u]
            self.flat_grads[u][L.lo:L.hi].div_(self.world)
        self._handles = []
        # END SOLUTION

    def _grad_shards(self):
        return [g[L.lo:L.hi] for L, g in zip(self.layouts, self.flat_grads)]

    def _publish(self) -> None:
        # BEGIN SOLUTION [step 6] hint: copy master into this rank's chunk (mixed precision), then all-gather every unit in place (tag "params"), async, wait all
        handles = []
        for L, flat, master in zip(self.layouts, self.flat_params, self.master):
            own = flat[L.lo:L.hi]
            if self.mixed:
                own.copy_(master)
            handles.append(self.comm.all_gather(flat, own, tag="params", async_op=True))
        for h in handles:
            h.wait()
        # END SOLUTION

    def zero_grad(self) -> None:
        for g in self.flat_grads:
            g.zero_()

    def model_state(self):
        return {"parameters": list(self.flat_params), "gradients": list(self.flat_grads),
                "optimizer": (list(self.master) if self.mixed else []) + self.exp_avg + self.exp_avg_sq}
