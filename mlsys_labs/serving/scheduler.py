"""Iteration-level scheduling with continuous batching (Orca, Yu et al., OSDI'22, §3–4).

Each engine step the scheduler picks which sequences advance and by how many tokens,
within a token budget (``max_num_batched_tokens``) and a sequence cap (``max_num_seqs``):

1. running sequences first, oldest first: a decode takes one token, an unfinished prompt
   takes a chunk of what the budget leaves (chunked prefill, Sarathi / vLLM V1);
2. when the block pool cannot hold a running sequence's next tokens, the most recently
   admitted running sequence is *preempted by recomputation*: its blocks are freed and it
   goes back to the front of the queue to be prefilled again later (vLLM §4.5);
3. if nothing was preempted, waiting sequences are admitted first-come-first-served while
   budget, sequence slots and blocks last (their prefix-cache hits cost nothing), keeping a
   watermark of one free block per running sequence (vLLM keeps a watermark too): admitting
   into the very last blocks only buys a preemption and a recomputation a few steps later.

A request that could never fit — longer than the context or than the whole pool — is
rejected when it arrives instead of waiting forever.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .block_manager import BlockManager
from .config import EngineConfig
from .sequence import Sequence, SequenceStatus


class RequestRejected(ValueError):
    """The request can never be served with this engine's context length or cache size."""


@dataclass
class ScheduledBatch:
    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    copies: list[tuple[int, int]] = field(default_factory=list)   # copy-on-write (src, dst) blocks
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)

    def __bool__(self) -> bool:
        return bool(self.seqs)


class Scheduler:
    def __init__(self, cfg: EngineConfig, block_manager: BlockManager, max_model_len: int):
        self.cfg = cfg
        self.bm = block_manager
        self.max_model_len = max_model_len
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    # ------------------------------------------------------------------ admission
    def check_fits(self, num_prompt_tokens: int, max_tokens: int) -> None:
        """Raise :class:`RequestRejected` for a request that could never complete."""
        # BEGIN SOLUTION [step 4] hint: empty prompt, prompt + max_tokens beyond max_model_len, or more blocks than the pool holds
        if num_prompt_tokens < 1:
            raise RequestRejected("the prompt is empty")
        total = num_prompt_tokens + max_tokens
        if self.cfg.streaming:
            return          # StreamingLLM's cache is bounded: any length fits
        if total > self.max_model_len:
            raise RequestRejected(f"prompt ({num_prompt_tokens} tokens) plus max_tokens ({max_tokens}) is "
                                  f"{total} tokens, beyond the context length {self.max_model_len}")
        if self.bm.blocks_needed(total) > self.bm.num_blocks:
            raise RequestRejected(f"{total} tokens need {self.bm.blocks_needed(total)} KV blocks; "
                                  f"the cache has only {self.bm.num_blocks}")
        # END SOLUTION

    @property
    def token_capacity(self) -> int:
        """The most tokens (prompt + output) one sequence can ever hold here."""
        if self.cfg.streaming:
            return self.max_model_len
        return min(self.max_model_len, self.bm.num_blocks * self.bm.block_size)

    def add(self, seq: Sequence) -> None:
        self.check_fits(seq.num_prompt_tokens, seq.params.max_tokens)
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # ------------------------------------------------------------------ one step
    def _preempt(self, seq: Sequence) -> None:
        """Recomputation: free every block; the sequence will be prefilled again from scratch."""
        self.bm.free_seq(seq)
        seq.num_computed_tokens = 0
        seq.num_dropped_tokens = 0
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.running.remove(seq)
        self.waiting.appendleft(seq)

    def _chunk_cap(self) -> int:
        """StreamingLLM: a chunk must fit the window with room to spare (see _make_room)."""
        if self.cfg.streaming:
            return max(1, (self.cfg.window_blocks - 1) * self.bm.block_size)
        return 1 << 30

    def _make_room_streaming(self, seq: Sequence, num_new: int) -> None:
        """StreamingLLM: evict the oldest non-sink blocks so sinks + window bound the cache."""
        limit = self.cfg.sink_blocks + self.cfg.window_blocks
        while self.bm.blocks_needed(seq.context_len + num_new) > limit and len(seq.block_table) > self.cfg.sink_blocks + 1:
            self.bm.drop_middle_block(seq, self.cfg.sink_blocks)

    def schedule(self) -> ScheduledBatch:
        """One step's batch, by the module docstring's rules 1–3: ``seqs`` and their
        ``num_new_tokens`` (each ≥ 1; in all ≤ ``max_num_batched_tokens``; a chunk ≤
        ``_chunk_cap()``), with slots allocated for them (``allocate_slots``' copy-on-write pairs
        go into ``copies``); ``preempted`` lists the sequences preempted this step (then nobody
        is admitted).  Admitted sequences move from ``waiting`` to ``running`` as RUNNING, at
        most ``max_num_seqs`` running; with StreamingLLM call ``_make_room_streaming`` first."""
        # BEGIN SOLUTION [step 4] hint: running first (preempt the newest running sequence when blocks run out), then admit waiting FCFS if nothing was preempted
        batch = ScheduledBatch()
        budget = self.cfg.max_num_batched_tokens
        cap = self._chunk_cap()
        for seq in list(self.running):
            if budget == 0:
                break
            if seq.status != SequenceStatus.RUNNING:     # preempted earlier in this loop
                continue
            num_new = min(len(seq) - seq.num_computed_tokens, budget, cap)
            if num_new == 0:
                continue
            if self.cfg.streaming:
                self._make_room_streaming(seq, num_new)
            while not self.bm.can_append(seq, num_new):
                victim = self.running[-1]
                self._preempt(victim)
                batch.preempted.append(victim)
                if victim is seq:
                    break
            if seq.status != SequenceStatus.RUNNING:
                break
            batch.copies += self.bm.allocate_slots(seq, num_new)
            batch.seqs.append(seq)
            batch.num_new_tokens.append(num_new)
            budget -= num_new
        if batch.preempted:
            return batch
        while self.waiting and budget > 0 and len(self.running) < self.cfg.max_num_seqs:
            seq = self.waiting[0]
            # watermark: keep one free block per running sequence (each may need a new block soon);
            # admitting into the last free blocks only buys a preemption and a recomputation later
            if not self.bm.can_allocate(seq, min(budget, cap), reserve=len(self.running)):
                break                                     # FCFS: nobody overtakes the head
            self.bm.allocate(seq)
            num_new = min(len(seq) - seq.num_computed_tokens, budget, cap)
            batch.copies += self.bm.allocate_slots(seq, num_new)
            self.waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            batch.seqs.append(seq)
            batch.num_new_tokens.append(num_new)
            budget -= num_new
        return batch
        # END SOLUTION

    # ------------------------------------------------------------------ endings
    def finish(self, seq: Sequence, reason: str) -> None:
        """Stop ``seq`` (done, aborted or failed) and give its blocks back."""
        if seq.status == SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status == SequenceStatus.WAITING:
            self.waiting.remove(seq)
        if seq.status != SequenceStatus.FINISHED:
            self.bm.free_seq(seq)
            seq.status = SequenceStatus.FINISHED
            seq.finish_reason = reason

    def abort(self, request_id: str) -> list[Sequence]:
        seqs = [s for s in list(self.running) + list(self.waiting) if s.request_id == request_id]
        for s in seqs:
            self.finish(s, "abort")
        return seqs
