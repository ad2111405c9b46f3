"""ZeRO stage 1, P_os: optimizer states partitioned (ZeRO §5.1) — DDP plus the difference below.

Parameters and gradients stay whole on every rank; the fp32 master weights (under mixed
precision) and Adam's two moments exist only for this rank's shard [lo, hi) of each unit.
Per step, each rank needs the averaged gradient of its shard only — a reduce-scatter, half
an all-reduce — updates that shard, and all-gathers the updated parameters: 2(N-1)/N·Ψ
elements sent, the same as DDP.  Memory with fp32 Adam: 4Ψ + 4Ψ + 8Ψ/N.

What changes from ``ddp.py``: where the optimizer states live (``_place_optimizer_state``),
the gradient collective (reduce-scatter instead of all-reduce), which gradients the step
reads (``_grad_shards``) and how the parameters are published (an all-gather).  Both
collectives run in place: the reduce-scatter writes into this rank's own chunk of the
gradient bucket, the all-gather reads from this rank's own chunk of the parameter buffer.
"""
from __future__ import annotations

import torch

from .ddp import DDP


class ZeRO1(DDP):
    stage = 1
    state_is_sharded = True
    grads_are_sharded = True     # the step reads only this rank's [lo, hi) chunk of each bucket

    def _own_params(self, u: int) -> torch.Tensor:
        """This rank's elements [lo, hi) of unit u's parameters (a view)."""
        L = self.layouts[u]
        return self.params[u][L.lo:L.hi]

    def _place_optimizer_state(self, u: int, full32: torch.Tensor) -> None:
        L = self.layouts[u]
        # BEGIN SOLUTION [step 6] hint: master = this rank's slice [lo, hi) (_own_params(u) when fp32, an fp32 copy of full32's slice otherwise); moments of that size
        self.master.append(full32[L.lo:L.hi].clone() if self.mixed else self._own_params(u))
        self.exp_avg.append(torch.zeros(L.shard, dtype=torch.float32, device=self.device))
        self.exp_avg_sq.append(torch.zeros(L.shard, dtype=torch.float32, device=self.device))
        # END SOLUTION

    def _bucket_ready(self, u: int) -> None:
        # BEGIN SOLUTION [step 6] hint: when syncing, async reduce-scatter the bucket into its own [lo, hi) chunk (tag "grads")
        if self._sync:
            L, g = self.layouts[u], self.grads[u]
            self._handles.append((u, self.comm.reduce_scatter(g[L.lo:L.hi], g, tag="grads", async_op=True)))
        # END SOLUTION

    def _finish_backward(self) -> None:
        self._launch_unfinished()
        # BEGIN SOLUTION [step 6] hint: wait for every handle, then divide this rank's chunk by N
        for u, handle in self._handles:
            handle.wait()
            L = self.layouts[u]
            self.grads[u][L.lo:L.hi].div_(self.world)
        self._handles = []
        # END SOLUTION

    def _grad_shards(self) -> list[torch.Tensor]:
        return [g[L.lo:L.hi] for L, g in zip(self.layouts, self.grads)]

    def _publish(self) -> None:
        # BEGIN SOLUTION [step 6] hint: copy master into _own_params(u) (mixed precision), then all-gather every unit in place (tag "params"), async, wait all
        handles = []
        for u, master in enumerate(self.master):
            own = self._own_params(u)
            if self.mixed:
                own.copy_(master)
            handles.append(self.comm.all_gather(self.params[u], own, tag="params", async_op=True))
        for h in handles:
            h.wait()
        # END SOLUTION
