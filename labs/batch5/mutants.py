"""Lab 5's mutation catalogue: realistic learner bugs, one exact edit each (see `mlsys-labs mutants`)."""
from mlsys_labs.grading.mutants import Mutant

S = "mlsys_labs/serving/"
T = "labs/batch5/"
BM = T + "test_block_manager.py"
SCHED = T + "test_scheduler.py"
ENG = T + "test_engine.py"
MODEL = T + "test_model.py"

MUTANTS = [
    # ------------------------------------------------------------------ model pieces (step 1)
    Mutant(
        name="rmsnorm-eps-outside-root",
        file=S + "model.py",
        old="x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)",
        new="x = x * (torch.rsqrt(x.pow(2).mean(-1, keepdim=True)) + self.eps)",
        why="adds eps after the reciprocal square root instead of inside it (wrong only where mean x² is near eps)",
        tests=(MODEL + "::test_rmsnorm_matches_the_formula",),
    ),
    Mutant(
        name="rope-angles-in-half-precision",
        file=S + "model.py",
        old="freqs = positions.float()[:, None] * inv_freq[None, :]",
        new="freqs = positions.to(dtype)[:, None] * inv_freq.to(dtype)[None, :]",
        why="computes the angles in the model's dtype: fp16 angles at position 2000 are off by radians",
        tests=(MODEL + "::test_rope_cos_sin_match_the_formula",),
    ),
    Mutant(
        name="rope-rotate-half-sign",
        file=S + "model.py",
        old="rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)",
        new="rotated = torch.cat((x[..., half:], -x[..., :half]), dim=-1)",
        why="rotate_half with the sign on the wrong half: rotates by -theta",
        tests=(MODEL + "::test_apply_rope_rotates_half_the_head",),
    ),
    Mutant(
        name="swiglu-silu-on-up",
        file=S + "model.py",
        old="return self.down_proj(F.silu(gate) * up)",
        new="return self.down_proj(gate * F.silu(up))",
        why="applies SiLU to the up projection instead of the gate",
        tests=(MODEL + "::test_swiglu_mlp_matches_the_formula",),
    ),
    # ------------------------------------------------------------------ paged attention (step 2)
    Mutant(
        name="write-kv-keys-into-values",
        file=S + "attention.py",
        old="kv_cache[1].index_copy_(0, slot_mapping, v)",
        new="kv_cache[1].index_copy_(0, slot_mapping, k)",
        why="copy-paste slip: writes the keys into the value cache too",
        tests=(MODEL + "::test_teacher_forced_logits_match_transformers",),
    ),
    Mutant(
        name="causal-mask-ignores-cache-offset",
        file=S + "attention.py",
        old="q_ctx = (context_lens - q_lens)[:, None] + torch.arange(max_query_len, device=dev)[None, :]",
        new="q_ctx = torch.arange(max_query_len, device=dev)[None, :].expand(B, -1)",
        why="causal mask as if every chunk started at context 0: a decode or later chunk sees only the first keys",
        tests=(MODEL + "::test_paged_gather_attention_matches_dense",),
    ),
    Mutant(
        name="gqa-heads-grouped-round-robin",
        file=S + "attention.py",
        old="qg = qp.view(B, max_q, Hkv, G, d).permute(0, 2, 1, 3, 4)",
        new="qg = qp.view(B, max_q, G, Hkv, d).permute(0, 3, 1, 2, 4)",
        why="maps query head h to KV head h % Hkv (repeat vs repeat_interleave) instead of h // G",
        tests=(MODEL + "::test_paged_gather_attention_matches_dense",),
    ),
    Mutant(
        name="positions-restart-after-prefix-hit",
        file=S + "model_runner.py",
        old="            pos.extend(range(c, c + n))\n",
        new="            pos.extend(range(c - seq.num_cached_tokens, c - seq.num_cached_tokens + n))\n",
        why="counts positions from the first computed token: after a prefix-cache hit every position is "
            "short by the cached tokens",
        tests=(SCHED + "::test_identical_prompts_at_once_and_full_prefix_hit_on_block_boundary",),
    ),
    Mutant(
        name="context-rounded-up-to-whole-blocks",
        file=S + "model_runner.py",
        old="            ctx_lens.append(seq.context_len + n)\n",
        new="            ctx_lens.append(len(seq.block_table) * bs)\n",
        why="takes a sequence's context as all slots of its blocks: stale slots in the partly filled last block are attended",
        tests=(SCHED + "::test_chunked_prefill_gives_the_same_tokens",),
    ),
    # ------------------------------------------------------------------ block manager (step 3)
    Mutant(
        name="eviction-keeps-stale-cache-entry",
        file=S + "block_manager.py",
        old="            if self.cached.get(block.hash) == block_id:\n                del self.cached[block.hash]\n",
        new="",
        why="reuses an evicted block without removing its hash from the cache map: the prefix, computed "
            "again, can never be registered (setdefault keeps the stale entry)",
        tests=(BM + "::test_freed_cached_blocks_are_evicted_least_recently_used_first",),
    ),
    Mutant(
        name="cached-block-never-returns-to-free-pool",
        file=S + "block_manager.py",
        old="            if block.hash is None or not self.enable_prefix_caching:\n"
            "                block.hash, block.token_ids = None, ()\n"
            "            self.free[block_id] = None\n",
        new="            if block.hash is None or not self.enable_prefix_caching:\n"
            "                block.hash, block.token_ids = None, ()\n"
            "                self.free[block_id] = None\n",
        why="thinks a cached block stays 'in the cache' rather than in the free queue: hashed blocks leak on finish/abort/preempt",
        tests=(BM + "::test_full_hit_ending_on_a_block_boundary_leaves_a_token_to_compute",),
    ),
    Mutant(
        name="lookup-allows-full-hit",
        file=S + "block_manager.py",
        old="for h, tokens in self._prefix_hashes(seq, (len(seq) - 1) // self.block_size):",
        new="for h, tokens in self._prefix_hashes(seq, len(seq) // self.block_size):",
        why="a prompt ending on a block boundary hits 100%: no token is left to compute the next token's logits",
        tests=(BM + "::test_full_hit_ending_on_a_block_boundary_leaves_a_token_to_compute",),
    ),
    Mutant(
        name="hash-ignores-parent",
        file=S + "block_manager.py",
        old="    return hash((parent, tokens))\n",
        new="    return hash(tokens)\n",
        why="prefix hashes not chained: a block's hash names its own tokens only, so the same tokens at another "
            "position or after another prefix hit",
        tests=(BM + "::test_prefix_hashes_are_chained_through_every_earlier_block",),
    ),
    Mutant(
        name="commit-chain-skips-hit-blocks",
        file=S + "block_manager.py",
        old="            if block.hash is not None:\n                parent = block.hash\n                continue\n",
        new="            if block.hash is not None:\n                continue\n",
        why="skips already-hashed blocks without carrying their hash along: the first new block after a "
            "prefix hit is hashed as if it started the prompt",
        tests=(BM + "::test_prefix_hashes_are_chained_through_every_earlier_block",),
    ),
    Mutant(
        name="commit-hashes-uncomputed-blocks",
        file=S + "block_manager.py",
        old="for i in range(seq.num_computed_tokens // bs):",
        new="for i in range(len(seq) // bs):",
        why="hashes every full block of the prompt after the first chunk, before its K/V are computed",
        tests=(BM + "::test_only_computed_blocks_are_hashed",),
    ),
    Mutant(
        name="allocate-revived-hit-stays-free",
        file=S + "block_manager.py",
        old="            if block.ref_count == 0:\n                del self.free[block_id]\n            block.ref_count += 1\n",
        new="            block.ref_count += 1\n",
        why="revives a cached block without taking it out of the free queue: it can be handed out twice",
        tests=(BM + "::test_full_hit_ending_on_a_block_boundary_leaves_a_token_to_compute",),
    ),
    Mutant(
        name="copy-on-write-skipped",
        file=S + "block_manager.py",
        old="            if old.ref_count > 1:\n",
        new="            if old.ref_count > 1 and old.hash is not None:\n",
        why="copy-on-write only for cached (hashed) blocks, confusing fork sharing with prefix sharing: the "
            "shared partial block is never copied and forked choices write their next K/V into one block",
        tests=(ENG + "::test_n_choices_share_the_prompt_blocks_copy_on_write",),
    ),
    Mutant(
        name="fork-aliases-block-table",
        file=S + "block_manager.py",
        old="child.block_table = list(parent.block_table)",
        new="child.block_table = parent.block_table",
        why="the child shares the parent's list object: a copy-on-write replaces the block for both",
        tests=(BM + "::test_fork_copies_the_shared_partial_block_on_write",),
    ),
    # ------------------------------------------------------------------ scheduler (step 4)
    Mutant(
        name="check-fits-rejects-exact-context",
        file=S + "scheduler.py",
        old="if total > self.max_model_len:",
        new="if total >= self.max_model_len:",
        why="off by one: rejects a request that exactly fills the context",
        tests=(SCHED + "::test_requests_that_can_never_fit_are_rejected_up_front",),
    ),
    Mutant(
        name="preempt-oldest-running",
        file=S + "scheduler.py",
        old="victim = self.running[-1]",
        new="victim = self.running[0]",
        why="wrong preemption victim: the oldest running sequence (possibly already scheduled this step)",
        tests=(SCHED + "::test_preemption_takes_the_newest_running_sequence",),
    ),
    Mutant(
        name="never-preempts",
        file=S + "scheduler.py",
        old="            while not self.bm.can_append(seq, num_new):\n"
            "                victim = self.running[-1]\n"
            "                self._preempt(victim)\n"
            "                batch.preempted.append(victim)\n"
            "                if victim is seq:\n"
            "                    break\n",
        new="            if not self.bm.can_append(seq, num_new):\n"
            "                continue                                  # wait for blocks to free up\n",
        why="no preemption: a sequence that can't grow waits for blocks that never come back (every "
            "running sequence waits): a deadlock that must fail fast, not hang",
        tests=(SCHED + "::test_preemption_takes_the_newest_running_sequence",),
    ),
    Mutant(
        name="preempt-keeps-blocks",
        file=S + "scheduler.py",
        old="        self.bm.free_seq(seq)\n        seq.num_computed_tokens = 0\n",
        new="        seq.block_table = []\n        seq.num_computed_tokens = 0\n",
        why="a preempted sequence forgets its block table without releasing the blocks: they leak",
        tests=(SCHED + "::test_preemption_takes_the_newest_running_sequence",),
    ),
    Mutant(
        name="admits-in-a-preempting-step",
        file=S + "scheduler.py",
        old="        if batch.preempted:\n            return batch\n",
        new="",
        why="admits waiting requests in a step that just preempted: the victim, at the queue's head, comes "
            "straight back and thrashes (found by the held-out check)",
        tests=(SCHED + "::test_preemption_takes_the_newest_running_sequence",),
    ),
    Mutant(
        name="admission-prompt-not-chunked",
        file=S + "scheduler.py",
        old="            num_new = min(len(seq) - seq.num_computed_tokens, budget, cap)\n            batch.copies",
        new="            num_new = min(len(seq) - seq.num_computed_tokens, cap)\n            batch.copies",
        why="admits a whole prompt whatever budget is left: the step's token budget is exceeded",
        tests=(SCHED + "::test_scheduler_invariants_on_random_workloads",),
    ),
    Mutant(
        name="abort-only-running",
        file=S + "scheduler.py",
        old="seqs = [s for s in list(self.running) + list(self.waiting) if s.request_id == request_id]",
        new="seqs = [s for s in self.running if s.request_id == request_id]",
        why="abort looks only at running sequences: a waiting or preempted request is served anyway",
        tests=(ENG + "::test_abort_storm_in_every_state_leaves_no_block_allocated",),
    ),
    # ------------------------------------------------------------------ sampler (step 5)
    Mutant(
        name="sampler-ignores-temperature",
        file=S + "sampler.py",
        old="filtered = filter_logits(logits.float() / params.temperature, params.top_k, params.top_p)",
        new="filtered = filter_logits(logits.float(), params.top_k, params.top_p)",
        why="temperature only switches greedy on/off; the logits are never divided by it",
        tests=(ENG + "::test_sampling_distribution_with_temperature_top_k_top_p",),
    ),
    Mutant(
        name="sampler-ignores-top-k",
        file=S + "sampler.py",
        old="    if 0 < top_k < V:\n",
        new="    if 0 < top_k < V and top_p < 1.0:\n",
        why="applies top-k only together with top-p (one 'filtering' branch): top-k alone is ignored",
        tests=(ENG + "::test_sampling_distribution_with_temperature_top_k_top_p",),
    ),
    Mutant(
        name="top-p-drops-the-crossing-token",
        file=S + "sampler.py",
        old="remove = before >= top_p",
        new="remove = torch.cumsum(probs, dim=-1) >= top_p",
        why="removes the token whose cumulative mass crosses p: the nucleus is one token short",
        tests=(ENG + "::test_sampling_distribution_with_temperature_top_k_top_p",),
    ),
    Mutant(
        name="sampler-ignores-top-p",
        file=S + "sampler.py",
        old="    if top_p < 1.0:\n",
        new="    if top_p < 1.0 and top_k > 0:\n",
        why="applies top-p only when top-k is set: top-p alone is ignored",
        tests=(ENG + "::test_sampling_distribution_with_temperature_top_k_top_p",),
    ),
    Mutant(
        name="sampler-ignores-seed",
        file=S + "sampler.py",
        old="return int(torch.multinomial(probs, 1, generator=generator))",
        new="return int(torch.multinomial(probs, 1))",
        why="samples from the global RNG, not the request's seeded generator: seeds don't reproduce",
        tests=(ENG + "::test_sampling_uses_the_request_generator_only",),
    ),
    # ------------------------------------------------------------------ stopping, text (step 6)
    Mutant(
        name="utf8-four-byte-lead-as-three",
        file=S + "tokenizer.py",
        old="need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4",
        new="need = 2 if b < 0xE0 else 3",
        why="knows 2- and 3-byte characters only: an emoji is emitted after 3 of its 4 bytes",
        tests=(ENG + "::test_incremental_decoder_never_splits_a_utf8_character",),
    ),
    Mutant(
        name="eos-stops-despite-ignore-eos",
        file=S + "engine.py",
        old="if (token in self.stop_token_ids and not p.ignore_eos) or token in p.stop_token_ids:",
        new="if token in self.stop_token_ids or token in p.stop_token_ids:",
        why="ignore_eos ignored: EOS always stops the request",
        tests=(ENG + "::test_eos_ignore_eos_and_a_partial_last_character",),
    ),
    Mutant(
        name="stop-token-text-included",
        file=S + "engine.py",
        old="            reason = \"stop\"\n            piece = \"\"                # a stop token's own text is not part of the output\n"
            "        else:\n            piece = seq.decoder.add(token)\n",
        new="            reason = \"stop\"\n        piece = seq.decoder.add(token)\n",
        why="decodes every token before the stop check: a stop token's own text ends up in the output "
            "(found by the held-out check)",
        tests=(ENG + "::test_eos_ignore_eos_and_a_partial_last_character",),
    ),
    Mutant(
        name="stop-string-prefix-not-held-back",
        file=S + "engine.py",
        old="hold = 0 if reason else max((len(s) - 1 for s in p.stop), default=0)",
        new="hold = 0",
        why="streams text that may be the start of a stop string: the client receives text that is later cut",
        tests=(ENG + "::test_stop_strings_stop_tokens_and_max_tokens",),
    ),
    Mutant(
        name="finish-without-freeing-blocks",
        file=S + "engine.py",
        old="        if reason:\n            self._finish(seq, reason, now)\n",
        new="        if reason:\n            seq.status = SequenceStatus.FINISHED\n            seq.finish_reason = reason\n"
            "            self.scheduler.running.remove(seq)\n            self.seqs_by_request.pop(seq.request_id, None)\n",
        why="marks a finished sequence done and drops it from the running list, but never frees its blocks",
        tests=(ENG + "::test_stop_strings_stop_tokens_and_max_tokens",),
    ),
    # ------------------------------------------------------------------ Triton decode kernel (step 7)
    Mutant(
        name="triton-stale-slots-score-zero",
        file=S + "triton_decode.py",
        old="        s = tl.where(valid, s, float(\"-inf\"))\n",
        new="",
        why="masks the loads but not the scores: slots past the context score 0 and take softmax mass",
        tests=(MODEL + "::test_triton_paged_decode_kernel_matches_dense",),
    ),
    Mutant(
        name="triton-acc-not-rescaled",
        file=S + "triton_decode.py",
        old="acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)",
        new="acc = acc + tl.sum(p[:, None] * v, axis=0)",
        why="forgets to rescale the accumulator when the running max rises",
        tests=(MODEL + "::test_triton_paged_decode_kernel_matches_dense",),
    ),
    Mutant(
        name="triton-no-max-subtraction",
        file=S + "triton_decode.py",
        old="m_new = tl.maximum(m, tl.max(s, axis=0))",
        new="m_new = tl.maximum(m, 0.0)",
        why="online softmax without the running max (m stays 0): exp overflows for scores above ~88",
        tests=(MODEL + "::test_triton_paged_decode_kernel_matches_dense",),
    ),
    # ------------------------------------------------------------------ int8 weights (step 8)
    Mutant(
        name="int8-per-tensor-scale",
        file="mlsys_labs/kernels/quantization.py",   # quant.py's quantize_per_channel is lab 4's
        old="    scale = t.abs().amax(dim=1).clamp(min=1e-8) / QMAX\n",
        new="    scale = (t.abs().amax().clamp(min=1e-8) / QMAX).expand(t.shape[0])\n",
        why="one scale for the whole tensor instead of one per output channel",
        tests=(MODEL + "::test_int8_per_channel_quantisation_error_bound",),
    ),
    Mutant(
        name="int8-scale-divides",
        file=S + "quant.py",
        old="return torch.nn.functional.linear(x, self.qweight.to(x.dtype)) * self.scale",
        new="return torch.nn.functional.linear(x, self.qweight.to(x.dtype)) / self.scale",
        why="divides by the scale instead of multiplying (inverse of the quantisation step)",
        tests=(MODEL + "::test_int8_per_channel_quantisation_error_bound",),
    ),
    # ------------------------------------------------------------------ speculative decoding (step 9)
    Mutant(
        name="spec-keeps-a-rejected-guess",
        file=S + "speculative.py",
        old="        keep = base + n_ok\n",
        new="        keep = base + n_ok + 1\n",
        why="off by one when rolling back: the first rejected guess stays in both streams",
        tests=(MODEL + "::test_speculative_decoding_equals_plain_greedy",),
    ),]
