"""ZeRO stage 2, P_os+g: gradients partitioned too (ZeRO §5.2) — stage 1 plus the difference below.

As backward completes a unit, its gradient bucket is reduce-scattered and the bucket is
freed: each rank keeps only the averaged gradient of its own shard.  The full-size bucket
exists only while that unit's collective is in flight (at most ``max_in_flight`` of them),
so gradient memory falls from 4Ψ to 4Ψ/N: 4Ψ + 12Ψ/N with fp32 Adam.  Communication is
the same reduce-scatter + all-gather as stage 1.  With gradient accumulation the
reduce-scatter runs every micro-batch (there is no full gradient left to accumulate into).

What changes from ``zero1.py``: where the gradients live (``_place_gradients``: a shard;
``_grad_bucket``: a transient full bucket) and the gradient collective (into a new shard-sized
tensor, added to the kept shard when it completes).  Optimizer states and the parameter
all-gather are stage 1's.
"""
from __future__ import annotations

import torch

from .zero1 import ZeRO1


class ZeRO2(ZeRO1):
    stage = 2
    max_in_flight = 2

    def _setup(self) -> None:
        self._buckets: list[torch.Tensor | None] = [None] * len(self.layouts)  # transient, allocated by backward
        self._in_flight: list[tuple[int, object, torch.Tensor]] = []          # (unit, handle, output shard)
        super()._setup()

    def _place_gradients(self, u: int) -> torch.Tensor:
        """Only this rank's averaged gradient shard is kept."""
        return torch.zeros(self.layouts[u].shard, dtype=self.param_dtype, device=self.device)

    def _grad_bucket(self, u: int) -> torch.Tensor:
        if self._buckets[u] is None:
            self._buckets[u] = torch.zeros(self.layouts[u].padded, dtype=self.param_dtype, device=self.device)
        return self._buckets[u]

    def _retire_oldest(self) -> None:
        u, handle, out = self._in_flight.pop(0)
        handle.wait()
        self.grads[u].add_(out.div_(self.world))
        self._buckets[u] = None  # free the full bucket

    def _bucket_ready(self, u: int) -> None:
        # BEGIN SOLUTION [step 7] hint: async reduce-scatter the bucket into a new shard-sized tensor (tag "grads"); keep at most max_in_flight, retiring the oldest
        out = torch.empty(self.layouts[u].shard, dtype=self.param_dtype, device=self.device)
        handle = self.comm.reduce_scatter(out, self._buckets[u], tag="grads", async_op=True)
        self._in_flight.append((u, handle, out))
        while len(self._in_flight) > self.max_in_flight:
            self._retire_oldest()
        # END SOLUTION

    def _finish_backward(self) -> None:
        self._launch_unfinished()
        while self._in_flight:
            self._retire_oldest()

    def _grad_shards(self) -> list[torch.Tensor]:
        return self.grads
