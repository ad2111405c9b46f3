"""Lab 6's mutation catalogue: realistic learner bugs, one exact edit each (see `mlsys-labs mutants`).

The killing tests are in-process on purpose (``test_units.py`` at world size 1 and with fake
collectives; ``test_ranks.py`` with 3 ranks as threads), so that a mutant costs seconds, not a
torchrun launch."""
from mlsys_labs.grading.mutants import Mutant

Z = "mlsys_labs/zero/"
U = "labs/batch6/test_units.py"
R = "labs/batch6/test_ranks.py"

MUTANTS = [
    # ------------------------------------------------------------- comm.py (step 1)
    Mutant(
        name="comm-count-forgets-calls",
        file=Z + "comm.py",
        old="        self.calls[tag] += 1\n",
        new="",
        why="adds the bytes but not the call: calls[tag] stays 0, so bytes per call and the count of "
            "collectives per step are lost",
        tests=(U + "::test_comm_counts_ring_bytes_and_calls_the_collective",),
    ),
    Mutant(
        name="comm-all-reduce-counted-as-one-pass",
        file=Z + "comm.py",
        old="        self._count(tag, 2 * (n - 1) / n * tensor.numel() * tensor.element_size())\n",
        new="        self._count(tag, (n - 1) / n * tensor.numel() * tensor.element_size())\n",
        why="counts an all-reduce like a reduce-scatter, forgetting its all-gather half (ring all-reduce "
            "sends 2(N-1)/N of the data)",
        tests=(U + "::test_comm_counts_ring_bytes_and_calls_the_collective",),
    ),
    Mutant(
        name="comm-reduce-scatter-counts-output",
        file=Z + "comm.py",
        old="        self._count(tag, (n - 1) / n * input.numel() * input.element_size())\n",
        new="        self._count(tag, (n - 1) / n * output.numel() * output.element_size())\n",
        why="counts the reduce-scatter by its output (one shard) instead of the whole input: N times too few bytes",
        tests=(U + "::test_comm_counts_ring_bytes_and_calls_the_collective",),
    ),
    Mutant(
        name="comm-all-reduce-drops-async",
        file=Z + "comm.py",
        old="        return dist.all_reduce(tensor, group=self.group, async_op=async_op)\n",
        new="        return dist.all_reduce(tensor, group=self.group)\n",
        why="does not pass async_op through: the collective blocks and no handle comes back to wait on "
            "(no overlap with backward, and handle.wait() fails)",
        tests=(U + "::test_comm_counts_ring_bytes_and_calls_the_collective",),
    ),
    Mutant(
        name="comm-world1-gather-no-copy",
        file=Z + "comm.py",
        old="        self._count(tag, (n - 1) / n * output.numel() * output.element_size())\n"
            "        if n == 1:\n"
            "            if output.data_ptr() != input.data_ptr():\n"
            "                output.copy_(input)\n",
        new="        self._count(tag, (n - 1) / n * output.numel() * output.element_size())\n"
            "        if n == 1:\n"
            "            pass\n",
        why="at world size 1 treats the all-gather as a no-op, forgetting that output and input may be "
            "different tensors (stage 3's gather into a fresh buffer)",
        tests=(U + "::test_comm_at_world_size_one_copies_and_counts_no_bytes",),
    ),
    # ------------------------------------------------------------- flat.py (step 2)
    Mutant(
        name="flat-pads-a-whole-shard-when-divisible",
        file=Z + "flat.py",
        old="    padded = -(-total // world) * world if total else 0\n",
        new="    padded = (total // world + 1) * world if total else 0\n",
        why="rounds up with total // N + 1: adds a whole extra shard of padding when N divides the unit",
        tests=(U + "::test_layout_pads_and_partitions",),
    ),
    Mutant(
        name="flat-rounds-down",
        file=Z + "flat.py",
        old="    padded = -(-total // world) * world if total else 0\n",
        new="    padded = total // world * world if total else 0\n",
        why="rounds the buffer down to a multiple of N: the last elements of a unit whose size N does not "
            "divide fall outside every shard",
        tests=(U + "::test_layout_pads_and_partitions",),
    ),
    # ------------------------------------------------------------- optim.py (step 3)
    Mutant(
        name="adamw-l2-not-decoupled",
        file=Z + "optim.py",
        old="            if self.weight_decay:\n                p.mul_(1 - self.lr * self.weight_decay)\n"
            "            m.lerp_(g, 1 - beta1)\n",
        new="            if self.weight_decay:\n                g = g.add(p, alpha=self.weight_decay)\n"
            "            m.lerp_(g, 1 - beta1)\n",
        why="Adam with L2 regularisation (decay added to the gradient) instead of AdamW's decoupled decay",
        tests=(U + "::test_adamw_matches_torch",),
    ),
    Mutant(
        name="adamw-eps-inside-sqrt",
        file=Z + "optim.py",
        old="            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)\n",
        new="            denom = ((v + self.eps) / bias_correction2).sqrt()\n",
        why="puts eps under the square root (RMSprop style): denominators of small-v elements are ~1e-4, not 1e-8",
        tests=(U + "::test_adamw_matches_torch",),
    ),
    # ------------------------------------------------------------ engine.py (step 4)
    Mutant(
        name="hook-grad-not-freed",
        file=Z + "engine.py",
        old="        p.grad = None\n        self._pending[u] -= 1\n",
        new="        self._pending[u] -= 1\n",
        why="copies the gradient into the bucket but keeps p.grad: twice the gradient memory, and the next "
            "backward accumulates into p.grad and adds the old gradient to the bucket again",
        tests=(U + "::test_grad_hooks_fill_each_bucket_and_fire_it_when_complete",),
    ),
    Mutant(
        name="hook-copies-instead-of-adding",
        file=Z + "engine.py",
        old="        self._grad_bucket(u)[offset:offset + g.numel()].add_(g.reshape(-1))\n",
        new="        self._grad_bucket(u)[offset:offset + g.numel()].copy_(g.reshape(-1))\n",
        why="writes the gradient into the bucket instead of adding it: gradient accumulation over "
            "micro-batches keeps only the last one",
        tests=(U + "::test_grad_hooks_fill_each_bucket_and_fire_it_when_complete",),
    ),
    Mutant(
        name="hook-fires-on-first-parameter",
        file=Z + "engine.py",
        old="        if self._pending[u] == 0:\n            self._launched[u] = True\n",
        new="        if self._pending[u] == len(self.layouts[u].params) - 1:\n            self._launched[u] = True\n",
        why="launches a unit's bucket as soon as its first parameter's gradient arrives: the collective "
            "sends a partial gradient",
        tests=(R + "::test_buckets_launch_last_unit_first_and_complete",),
    ),
    Mutant(
        name="hook-never-fires-buckets",
        file=Z + "engine.py",
        old="        if self._pending[u] == 0:\n            self._launched[u] = True\n            self._bucket_ready(u)\n",
        new="        if self._pending[u] == 0:\n            pass\n",
        why="only counts down and leaves the launch to the end of backward (_launch_unfinished, in "
            "registration order): no overlap, and buckets go out first-to-last",
        tests=(U + "::test_buckets_launch_during_backward",),
    ),
    Mutant(
        name="clip-norm-not-all-reduced",
        file=Z + "engine.py",
        old="        if self.grads_are_sharded:\n            self.comm.all_reduce(sq, tag=\"norm\")\n",
        new="",
        why="clips each shard by its own norm: with sharded gradients no rank knows the global norm",
        tests=(U + "::test_clip_grad_norm_matches_torch",),
    ),
    Mutant(
        name="clip-all-reduces-norms-not-squares",
        file=Z + "engine.py",
        old="        if self.grads_are_sharded:\n            self.comm.all_reduce(sq, tag=\"norm\")\n"
            "        norm = sq.sqrt()\n",
        new="        sq = sq.sqrt()\n        if self.grads_are_sharded:\n            self.comm.all_reduce(sq, tag=\"norm\")\n"
            "        norm = sq\n",
        why="sums the shards' norms instead of their squares (||a|| + ||b|| is not ||(a, b)||); right at N = 1",
        tests=(R + "::test_accumulation_clipping_frozen_3_ranks",),
    ),
    Mutant(
        name="clip-coefficient-not-clamped",
        file=Z + "engine.py",
        old="        coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)\n",
        new="        coef = max_norm / (norm + 1e-6)\n",
        why="always rescales to max_norm: gradients smaller than the threshold are scaled up",
        tests=(U + "::test_clip_grad_norm_matches_torch",),
    ),
    # --------------------------------------------------------------- ddp.py (step 5)
    Mutant(
        name="ddp-sums-not-averages",
        file=Z + "ddp.py",
        old="            self.grads[u].div_(self.world)\n",
        new="",
        why="all-reduces the gradients but does not divide by N: the sum over ranks, N times the mean",
        tests=(R + "::test_stage_matches_single_process_3_ranks",),
    ),
    Mutant(
        name="ddp-averages-every-micro-batch",
        file=Z + "ddp.py",
        old="        for u, handle in self._handles:\n            handle.wait()\n            self.grads[u].div_(self.world)\n",
        new="        for u, handle in self._handles:\n            handle.wait()\n"
            "        for u in range(len(self.grads)):\n            self.grads[u].div_(self.world)\n",
        why="divides the buckets by N after every backward, also the no_sync micro-batches that were not "
            "all-reduced: earlier micro-batches count 1/N too little",
        tests=(R + "::test_accumulation_clipping_frozen_3_ranks",),
    ),
    Mutant(
        name="ddp-ignores-no-sync",
        file=Z + "ddp.py",
        old="        if self._sync:\n            self._handles.append((u, self.comm.all_reduce(",
        new="        if True:\n            self._handles.append((u, self.comm.all_reduce(",
        why="all-reduces on every micro-batch, ignoring sync=False: the same averages, but N-1/N·2Ψ bytes "
            "per extra micro-batch — gradient accumulation without no_sync",
        tests=(R + "::test_gradient_communication_with_accumulation",),
    ),
    Mutant(
        name="ddp-no-wait",
        file=Z + "ddp.py",
        old="        for u, handle in self._handles:\n            handle.wait()\n            self.grads[u].div_(self.world)\n",
        new="        for u, handle in self._handles:\n            self.grads[u].div_(self.world)\n",
        why="divides before the asynchronous all-reduce has finished (no wait): the step reads a bucket the "
            "collective has not written yet",
        tests=(R + "::test_stage_matches_single_process_3_ranks",),
    ),
    # -------------------------------------------------------------- zero1.py (step 6)
    Mutant(
        name="zero1-master-in-bf16",
        file=Z + "zero1.py",
        old="        self.master.append(full32[L.lo:L.hi].clone() if self.mixed else self._own_params(u))\n",
        new="        self.master.append(self._own_params(u))\n",
        why="keeps the 'master' weights in the bf16 parameter buffer under mixed precision: updates smaller "
            "than bf16's resolution are lost",
        tests=(R + "::test_mixed_precision_master_weights_3_ranks",),
    ),
    Mutant(
        name="zero1-reduce-scatter-into-first-chunk",
        file=Z + "zero1.py",
        old="self.comm.reduce_scatter(g[L.lo:L.hi], g, tag=\"grads\", async_op=True)",
        new="self.comm.reduce_scatter(g[:L.shard], g, tag=\"grads\", async_op=True)",
        why="reduce-scatters into the bucket's first chunk on every rank instead of the rank's own [lo, hi): "
            "ranks > 0 update with their local, unreduced gradient",
        tests=(R + "::test_stage_matches_single_process_3_ranks",),
    ),
    Mutant(
        name="zero1-ignores-no-sync",
        file=Z + "zero1.py",
        old="        if self._sync:\n            L, g = self.layouts[u], self.grads[u]\n",
        new="        if True:\n            L, g = self.layouts[u], self.grads[u]\n",
        why="reduce-scatters on every micro-batch in place: the next micro-batch adds into a bucket whose own "
            "chunk is already reduced while the other chunks are not",
        tests=(R + "::test_accumulation_clipping_frozen_3_ranks",),
    ),
    Mutant(
        name="zero1-sums-not-averages",
        file=Z + "zero1.py",
        old="            self.grads[u][L.lo:L.hi].div_(self.world)\n",
        new="",
        why="reduce-scatters the gradients but does not divide by N",
        tests=(R + "::test_stage_matches_single_process_3_ranks",),
    ),
    Mutant(
        name="zero1-mixed-publish-skips-master",
        file=Z + "zero1.py",
        old="            if self.mixed:\n                own.copy_(master)\n",
        new="",
        why="all-gathers the parameter chunks without first writing the updated fp32 master into its own "
            "bf16 chunk: under mixed precision the model never changes",
        tests=(R + "::test_mixed_precision_master_weights_3_ranks",),
    ),
    # -------------------------------------------------------------- zero2.py (step 7)
    Mutant(
        name="zero2-unbounded-in-flight",
        file=Z + "zero2.py",
        old="        while len(self._in_flight) > self.max_in_flight:\n",
        new="        while False:\n",
        why="never retires a reduce-scatter until backward ends: every unit's full gradient bucket is alive "
            "at once, stage 2's gradient memory saving is gone during backward",
        tests=(R + "::test_stage2_frees_gradient_buckets",),
    ),
    Mutant(
        name="zero2-honours-no-sync",
        file=Z + "zero2.py",
        old="        out = torch.empty(self.layouts[u].shard, dtype=self.param_dtype, device=self.device)\n"
            "        handle = self.comm.reduce_scatter(",
        new="        if not self._sync:\n            return\n"
            "        out = torch.empty(self.layouts[u].shard, dtype=self.param_dtype, device=self.device)\n"
            "        handle = self.comm.reduce_scatter(",
        why="copies DDP's no_sync into stage 2: the full buckets of the sync=False micro-batches stay alive "
            "to accumulate into, which is what stage 2 must not keep",
        tests=(R + "::test_gradient_communication_with_accumulation",),
    ),
    Mutant(
        name="zero2-shard-buffer-default-dtype",
        file=Z + "zero2.py",
        old="        out = torch.empty(self.layouts[u].shard, dtype=self.param_dtype, device=self.device)\n",
        new="        out = torch.empty(self.layouts[u].shard, device=self.device)\n",
        why="allocates the reduce-scatter's output with the default dtype (fp32) while the bucket is bf16 "
            "under mixed precision: collectives need one dtype on both sides",
        tests=(R + "::test_mixed_precision_master_weights_3_ranks",),
    ),
    # -------------------------------------------------------------- zero3.py (step 8)
    Mutant(
        name="zero3-mixed-publish-skips-master",
        file=Z + "zero3.py",
        old="        if self.mixed:\n            for shard, master in zip(self.params, self.master):\n",
        new="        if False:\n            for shard, master in zip(self.params, self.master):\n",
        why="does not write the updated fp32 master weights into the bf16 parameter shard under mixed "
            "precision: the shards the next forward gathers never change",
        tests=(R + "::test_mixed_precision_master_weights_3_ranks",),
    ),
    Mutant(
        name="zero3-shard-a-view-of-the-unit",
        file=Z + "zero3.py",
        old="        return full32[L.lo:L.hi].to(self.param_dtype).clone().requires_grad_(True)\n",
        new="        return full32[L.lo:L.hi].to(self.param_dtype).requires_grad_(True)\n",
        why="no clone: in fp32 .to() returns the slice itself, a view that keeps the whole flattened unit "
            "alive on every rank (stage 3 then holds 4Ψ of parameters, not 4Ψ/N)",
        tests=(R + "::test_model_state_memory_3_ranks",),
    ),
    Mutant(
        name="zero3-no-prefetch",
        file=Z + "zero3.py",
        old="        if u + 1 < len(self.layouts):\n            self._start_gather(\"fwd\", u + 1)\n",
        new="",
        why="gathers each unit only when its forward starts: no prefetch, communication never overlaps compute",
        tests=(R + "::test_stage3_frees_gathered_parameters_and_prefetches",),
    ),
    Mutant(
        name="zero3-forward-buffer-kept",
        file=Z + "zero3.py",
        old="        buf = self._forward_buffers.pop(u)\n",
        new="        buf = self._forward_buffers[u]\n",
        why="restores the placeholders but keeps the gathered buffer in its dict: every unit's full "
            "parameters stay alive through forward and backward (invisible after the step, when the "
            "next forward overwrites them)",
        tests=(R + "::test_stage3_frees_gathered_parameters_and_prefetches",),
    ),
    Mutant(
        name="zero3-pack-keeps-saved-views",
        file=Z + "zero3.py",
        old="        if u is None or t.dtype != self.param_dtype:\n            return t\n",
        new="        if True:\n            return t\n",
        why="a saved_tensors_hooks pair that packs nothing: the saved views keep every gathered buffer alive "
            "until backward (the backward gather still happens, so gather counts look right)",
        tests=(R + "::test_stage3_frees_gathered_parameters_and_prefetches",),
    ),
    Mutant(
        name="zero3-backward-buffer-kept",
        file=Z + "zero3.py",
        old="        self._backward_buffer(u)\n        del self._backward_buffers[u]\n",
        new="        self._backward_buffer(u)\n",
        why="does not free a unit's backward gather once its gradient is reduce-scattered: all units' full "
            "parameters are alive at the end of backward (freed later by _finish_backward, so invisible after the step)",
        tests=(R + "::test_stage3_frees_gathered_parameters_and_prefetches",),
    ),
    Mutant(
        name="zero3-unpack-ignores-offset",
        file=Z + "zero3.py",
        old="        return buf.as_strided(packed.size, packed.stride, packed.offset)\n",
        new="        return buf.as_strided(packed.size, packed.stride)\n",
        why="rebuilds a saved parameter view with the right shape and strides but at offset 0: every "
            "saved weight after the unit's first reads the first parameter's elements in backward",
        tests=(U + "::test_each_stage_at_world_size_one",),
    ),
    Mutant(
        name="zero3-grad-not-marked-launched",
        file=Z + "zero3.py",
        old="        self._launched[u] = True\n        self._bucket_ready(u)\n",
        new="        self._bucket_ready(u)\n",
        why="hands the unit's gradient to stage 2's path without marking the unit launched: the end of "
            "backward takes it for a unit that got no gradient and reduce-scatters its bucket a second time",
        tests=(U + "::test_stage3_gathers_each_unit_in_forward_and_again_in_backward",),
    ),
    # ------------------------------------------------------------- memory.py (step 9)
    Mutant(
        name="formula-mixed-k-without-master",
        file=Z + "memory.py",
        old="    p, g, k = (2, 2, 12) if mixed else (4, 4, 8)\n",
        new="    p, g, k = (2, 2, 8) if mixed else (4, 4, 8)\n",
        why="K = 8 under mixed precision too, forgetting the fp32 master copy (ZeRO's K = 12)",
        tests=(U + "::test_model_state_formulas",),
    ),
    Mutant(
        name="comm-formula-stage3-like-ddp",
        file=Z + "memory.py",
        old="    factor = 3 if stage == 3 else 2\n",
        new="    factor = 2\n",
        why="forgets stage 3's second all-gather (in backward): 2Ψ instead of 3Ψ per step",
        tests=(U + "::test_model_state_formulas",),
    ),
    Mutant(
        name="inventory-files-module-parameters",
        file=Z + "memory.py",
        old="        state = dict(engine.model_state())\n",
        new="        state = dict(engine.model_state(), parameters=list(engine.model.parameters()))\n",
        why="files the module's parameters as the parameter bytes: right while they are views of the flat "
            "buffers, but under stage 3 they are empty placeholders and the shards go uncounted",
        tests=(U + "::test_model_state_memory_at_world_size_one",),
    ),
    Mutant(
        name="inventory-forgets-frozen",
        file=Z + "memory.py",
        old="        state[\"frozen\"] = [p for p in engine.model.parameters() if not p.requires_grad]\n",
        new="",
        why="does not file frozen parameters (they are not in the engine's model state): they count as 'other'",
        tests=(U + "::test_inventory_files_frozen_parameters",),
    ),
    # --------------------------------------------------------- checkpoint.py (step 10)
    Mutant(
        name="reshard-floor-shard",
        file=Z + "checkpoint.py",
        old="    shard = -(-numel // world)\n",
        new="    shard = numel // world\n",
        why="rounds the new shard size down: when M does not divide Ψ_u the last elements are lost",
        tests=(U + "::test_reshard_round_trip",),
    ),
    Mutant(
        name="reshard-keeps-old-padding",
        file=Z + "checkpoint.py",
        old="    full = torch.cat(pieces)[:numel]\n    shard = -(-numel // world)\n",
        new="    full = torch.cat(pieces)\n    shard = -(-full.numel() // world)\n    numel = full.numel()\n",
        why="reshards the saved padded vector as it is, old padding included: the new shards are sized for "
            "the old world's padding, and that padding lands inside the new ranks' data",
        tests=(U + "::test_reshard_round_trip",),
    ),
]
