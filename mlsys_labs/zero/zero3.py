"""ZeRO stage 3, P_os+g+p: parameters partitioned too (ZeRO §5.3) — stage 2 plus the difference below.

Between steps a rank holds only its 1/N shard of every unit's parameters, gradients and
optimizer states: 16Ψ/N bytes with fp32 Adam.  Whole parameters exist one or two units
at a time:

- forward: before a unit runs, its shards are all-gathered into a full buffer (the next
  unit's gather is already in flight — prefetch); after it runs the buffer is dropped;
- backward: the tensors autograd saved that are views of a gathered buffer were not kept —
  a ``saved_tensors_hooks`` pair replaced them by (unit, size, stride, offset) — so the unit
  is all-gathered again when backward first needs it (prefetching the unit before it);
- when backward reaches the gather itself (``_Gather.backward``), the unit's full gradient
  is complete: it goes down stage 2's path (reduce-scatter into this rank's gradient shard,
  the full bucket freed once that collective is done) and the gathered buffer is freed.

Per step that is all-gather + all-gather + reduce-scatter: 3(N-1)/N·Ψ elements sent, 1.5× DDP.
FSDP (Zhao et al., VLDB 2023) implements the same schedule.

What changes from ``zero2.py``: where the parameters live (``_place_parameters``: a shard, the
module's parameters empty placeholders), how a unit's gradient arrives (whole, from
``_Gather.backward``, instead of per parameter from hooks) and publishing (no all-gather after
the step: the next forward gathers).  Gradient shards, their reduce-scatter and the optimizer
states are stage 2's.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from .flat import views
from .zero2 import ZeRO2


class _ParamRef(NamedTuple):
    """What autograd keeps instead of a saved view of a gathered parameter buffer."""

    unit: int
    size: torch.Size
    stride: tuple
    offset: int


class _Slot(NamedTuple):
    """Where one of a unit's parameters sits in the module tree."""

    module: nn.Module
    attr: str
    placeholder: nn.Parameter


class _Gather(torch.autograd.Function):
    """shard (leaf) -> the unit's gathered full buffer; backward hands the full gradient to stage 2's path."""

    @staticmethod
    def forward(ctx, shard, engine, u):
        ctx.engine, ctx.unit = engine, u
        buf = engine._forward_buffers[u]
        return buf.view_as(buf)

    @staticmethod
    def backward(ctx, grad_full):
        ctx.engine._unit_grad_ready(ctx.unit, grad_full)
        return None, None, None   # the gradient lands in engine.grads[unit], not in shard.grad


def _slots(module: nn.Module, params: list[nn.Parameter]) -> list[_Slot]:
    """The (module, attribute) owning each of ``params``, in ``params``' order."""
    order = {id(p): i for i, p in enumerate(params)}
    found = [_Slot(mod, attr, p) for mod in module.modules() for attr, p in mod._parameters.items()
             if p is not None and id(p) in order]
    return sorted(found, key=lambda s: order[id(s.placeholder)])


class ZeRO3(ZeRO2):
    stage = 3

    def _setup(self) -> None:
        self._slots: list[list[_Slot]] = []
        self._forward_buffers: dict[int, torch.Tensor] = {}
        self._backward_buffers: dict[int, torch.Tensor] = {}
        self._gathers: dict[tuple[str, int], tuple[torch.Tensor, object]] = {}  # (phase, unit) in flight
        self._storage_unit: dict[int, int] = {}   # data_ptr of a gathered buffer -> unit (during its forward)
        super()._setup()

    def _place_parameters(self, u: int, full32: torch.Tensor) -> torch.Tensor:
        """Only this rank's shard, a leaf; the module's parameters become empty placeholders."""
        L = self.layouts[u]
        self._slots.append(_slots(self.modules[u], L.params))
        for p in L.params:
            p.data = torch.empty(0, dtype=self.param_dtype, device=self.device)  # free the replicated copy
        # BEGIN SOLUTION [step 8] hint: return a leaf copy of full32's [lo, hi) in param_dtype that requires grad (a copy: not a view of full32)
        return full32[L.lo:L.hi].to(self.param_dtype).clone().requires_grad_(True)
        # END SOLUTION

    def _own_params(self, u: int) -> torch.Tensor:
        return self.params[u]     # the shard is all this rank keeps

    def _register_grad_hooks(self) -> None:
        """A unit's gradient arrives whole, from ``_Gather.backward``; what needs hooks is forward."""
        self._pending = [len(L.params) for L in self.layouts]
        self._launched = [False] * len(self.layouts)
        for u, module in enumerate(self.modules):
            module.register_forward_pre_hook(lambda m, args, u=u: self._before_forward(u))
            module.register_forward_hook(lambda m, args, out, u=u: self._after_forward(u))

    # ---------------------------------------------------------------- gathers
    def _start_gather(self, phase: str, u: int) -> None:
        if (phase, u) in self._gathers:
            return
        L = self.layouts[u]
        buf = torch.empty(L.padded, dtype=self.param_dtype, device=self.device)
        handle = self.comm.all_gather(buf, self.params[u].detach(), tag="params", async_op=True)
        self._gathers[(phase, u)] = (buf, handle)

    def _wait_gather(self, phase: str, u: int) -> torch.Tensor:
        self._start_gather(phase, u)
        buf, handle = self._gathers.pop((phase, u))
        handle.wait()
        return buf

    def _before_forward(self, u: int) -> None:
        # BEGIN SOLUTION [step 8] hint: wait for (or run) the gather of u, prefetch u+1, remember the buffer's storage, then point the module's parameters at views of _Gather.apply(self.params[u], self, u)
        buf = self._wait_gather("fwd", u)
        if u + 1 < len(self.layouts):
            self._start_gather("fwd", u + 1)
        self._forward_buffers[u] = buf
        self._storage_unit[buf.untyped_storage().data_ptr()] = u
        full = _Gather.apply(self.params[u], self, u)
        for slot, view in zip(self._slots[u], views(self.layouts[u], full)):
            slot.module._parameters[slot.attr] = view
        # END SOLUTION

    def _after_forward(self, u: int) -> None:
        # BEGIN SOLUTION [step 8] hint: put the empty placeholders back and forget the buffer (and its storage entry)
        for slot in self._slots[u]:
            slot.module._parameters[slot.attr] = slot.placeholder
        buf = self._forward_buffers.pop(u)
        self._storage_unit.pop(buf.untyped_storage().data_ptr(), None)
        # END SOLUTION

    # ------------------------------------------------- saved tensors in backward
    def _pack(self, t: torch.Tensor):
        # BEGIN SOLUTION [step 8] hint: a view of a gathered buffer becomes a _ParamRef(unit, size, stride, offset); anything else is kept
        u = self._storage_unit.get(t.untyped_storage().data_ptr())
        if u is None or t.dtype != self.param_dtype:
            return t
        return _ParamRef(u, t.size(), t.stride(), t.storage_offset())
        # END SOLUTION

    def _unpack(self, packed):
        # BEGIN SOLUTION [step 8] hint: a _ParamRef needs the unit's backward buffer (gather it, prefetch unit-1), then as_strided
        if not isinstance(packed, _ParamRef):
            return packed
        buf = self._backward_buffer(packed.unit)
        return buf.as_strided(packed.size, packed.stride, packed.offset)
        # END SOLUTION

    def _backward_buffer(self, u: int) -> torch.Tensor:
        if u not in self._backward_buffers:
            self._backward_buffers[u] = self._wait_gather("bwd", u)
            if u > 0:
                self._start_gather("bwd", u - 1)
        return self._backward_buffers[u]

    def _unit_grad_ready(self, u: int, grad_full: torch.Tensor) -> None:
        # BEGIN SOLUTION [step 8] hint: make sure unit u was gathered for backward (prefetching u-1) and free that buffer; grad_full is the unit's bucket: mark u launched and hand it to stage 2's _bucket_ready
        self._backward_buffer(u)
        del self._backward_buffers[u]
        self._buckets[u] = grad_full.contiguous()
        self._launched[u] = True
        self._bucket_ready(u)
        # END SOLUTION

    # ----------------------------------------------------------- engine hooks
    def __call__(self, *args, **kwargs):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            return self.model(*args, **kwargs)

    def _finish_backward(self) -> None:
        for key in list(self._gathers):
            self._wait_gather(*key)
        self._backward_buffers.clear()
        super()._finish_backward()

    def _publish(self) -> None:
        """The updated shard stays a shard: the next forward gathers it."""
        if self.mixed:
            for shard, master in zip(self.params, self.master):
                shard.data.copy_(master)
