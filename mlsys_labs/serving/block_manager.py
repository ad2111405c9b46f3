"""The paged KV cache's bookkeeping: reference-counted blocks, prefix caching, copy-on-write.

PagedAttention (Kwon et al., SOSP'23, §4.2–4.4): the cache is a pool of fixed-size blocks;
each sequence owns a *block table* (logical block i → physical block id).  A block may be
shared (a common prefix, or a forked sequence), so it carries a reference count and is
free only at zero.

Prefix caching (vLLM's automatic prefix caching; SGLang's RadixAttention does the same
with a tree): a *full* block is named by a chained hash ``h_i = hash(h_{i-1}, tokens_i)``,
so equal hashes mean equal whole prefixes.  The block keeps its tokens too, and a hit is
accepted only if they match — a hash collision can never serve someone else's keys.
Freed blocks that hold a hash stay in the free queue in least-recently-used order and are
revived by a later hit; allocation takes the oldest free block and forgets its hash.

Copy-on-write (§4.4): a forked sequence (``n > 1``) shares its parent's blocks; the first
write into a shared, partly filled block copies it to a fresh block first.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .sequence import Sequence


def chain_hash(parent: int | None, tokens: tuple[int, ...]) -> int:
    """The prefix hash of a full block: depends on every token before it (via ``parent``)."""
    return hash((parent, tokens))


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] = ()   # the tokens a hashed block holds (collision check)


@dataclass
class BlockStats:
    prefix_queries: int = 0      # full prompt blocks looked up
    prefix_hits: int = 0         # of which found in the cache
    cow_copies: int = 0
    evictions: int = 0           # cached blocks reused for something else

    @property
    def hit_rate(self) -> float:
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else 0.0


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True,
                 hash_fn=chain_hash):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.hash_fn = hash_fn
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))  # LRU first
        self.cached: dict[int, int] = {}     # hash -> block id
        self.stats = BlockStats()

    # ------------------------------------------------------------------ queries
    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    def usage(self) -> float:
        return 1.0 - len(self.free) / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def assert_all_free(self) -> None:
        """After a workload: every block back in the free pool with reference count zero."""
        busy = [b for b in self.blocks if b.ref_count != 0]
        assert not busy, f"blocks still referenced: {busy[:5]}"
        assert len(self.free) == self.num_blocks, f"{self.num_blocks - len(self.free)} blocks missing from the free pool"

    # ---------------------------------------------------------------- the pool
    def _take_free_block(self) -> Block:
        """Pop the least recently freed block; a cached one forgets its hash (eviction)."""
        # BEGIN SOLUTION [step 3] hint: popitem(last=False) from self.free; drop the block's hash from self.cached if it maps to it
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None:
            if self.cached.get(block.hash) == block_id:
                del self.cached[block.hash]
            self.stats.evictions += 1
            block.hash, block.token_ids = None, ()
        assert block.ref_count == 0
        block.ref_count = 1
        return block
        # END SOLUTION

    def _release(self, block_id: int) -> None:
        """Drop one reference; at zero the block joins the free queue's most-recent end."""
        # BEGIN SOLUTION [step 3] hint: decrement ref_count; at zero, append to self.free (a cached block keeps its hash)
        block = self.blocks[block_id]
        assert block.ref_count > 0, f"double free of block {block_id}"
        block.ref_count -= 1
        if block.ref_count == 0:
            if block.hash is None or not self.enable_prefix_caching:
                block.hash, block.token_ids = None, ()
            self.free[block_id] = None
        # END SOLUTION

    # --------------------------------------------------------------- prefix cache
    def _prefix_hashes(self, seq: Sequence, num_blocks: int) -> list[tuple[int, tuple[int, ...]]]:
        out, parent = [], None
        bs = self.block_size
        for i in range(num_blocks):
            tokens = tuple(seq.token_ids[i * bs:(i + 1) * bs])
            parent = self.hash_fn(parent, tokens)
            out.append((parent, tokens))
        return out

    def lookup_prefix(self, seq: Sequence) -> list[int]:
        """Block ids caching the longest prefix of ``seq``'s full blocks, leaving at least one
        token to compute (a 100% hit would leave nothing to produce the next token's logits)."""
        # BEGIN SOLUTION [step 3] hint: hash full blocks covering at most len(seq)-1 tokens; stop at the first miss or token mismatch
        if not self.enable_prefix_caching:
            return []
        hits = []
        for h, tokens in self._prefix_hashes(seq, (len(seq) - 1) // self.block_size):
            block_id = self.cached.get(h)
            if block_id is None or self.blocks[block_id].token_ids != tokens:
                break
            hits.append(block_id)
        return hits
        # END SOLUTION

    def can_allocate(self, seq: Sequence, num_new_tokens: int, reserve: int = 0) -> bool:
        """Could ``seq`` (waiting, no blocks) be admitted with its prefix hit plus ``num_new_tokens``,
        leaving ``reserve`` blocks free?"""
        hits = self.lookup_prefix(seq)
        hit_tokens = len(hits) * self.block_size
        revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        new_tokens = min(num_new_tokens, len(seq) - hit_tokens)
        need = self.blocks_needed(hit_tokens + new_tokens) - len(hits)
        return need + revived + reserve <= len(self.free)

    def allocate(self, seq: Sequence) -> int:
        """Admit ``seq``: take its prefix-cache hits (shared, ref+1) and set ``num_computed_tokens``
        to the tokens they hold.  Returns that number.  New blocks come from :meth:`allocate_slots`."""
        # BEGIN SOLUTION [step 3] hint: for each hit: remove from self.free if ref_count is 0, ref_count += 1, append to the block table
        assert not seq.block_table, f"{seq} already holds blocks"
        hits = self.lookup_prefix(seq)
        if self.enable_prefix_caching:
            self.stats.prefix_queries += (len(seq) - 1) // self.block_size
            self.stats.prefix_hits += len(hits)
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
        seq.num_computed_tokens = len(hits) * self.block_size
        seq.num_cached_tokens = seq.num_computed_tokens
        return seq.num_computed_tokens
        # END SOLUTION

    def num_blocks_to_append(self, seq: Sequence, num_new_tokens: int) -> int:
        """Free blocks needed to write ``num_new_tokens`` more tokens (copy-on-write included)."""
        first_slot = seq.context_len
        need = self.blocks_needed(first_slot + num_new_tokens) - len(seq.block_table)
        if first_slot % self.block_size and self.blocks[seq.block_table[first_slot // self.block_size]].ref_count > 1:
            need += 1   # the shared partial block will be copied
        return max(need, 0)

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        return self.num_blocks_to_append(seq, num_new_tokens) <= len(self.free)

    def allocate_slots(self, seq: Sequence, num_new_tokens: int) -> list[tuple[int, int]]:
        """Make room for ``num_new_tokens`` more tokens.  Returns copy-on-write pairs (src, dst)
        of physical blocks whose contents the model runner must copy before the step."""
        # BEGIN SOLUTION [step 3] hint: copy the shared partial block first (ref_count > 1), then append fresh blocks
        copies = []
        first_slot = seq.context_len
        bs = self.block_size
        if first_slot % bs:
            i = first_slot // bs
            old = self.blocks[seq.block_table[i]]
            if old.ref_count > 1:
                new = self._take_free_block()
                self._release(old.block_id)
                seq.block_table[i] = new.block_id
                copies.append((old.block_id, new.block_id))
                self.stats.cow_copies += 1
        while len(seq.block_table) < self.blocks_needed(first_slot + num_new_tokens):
            seq.block_table.append(self._take_free_block().block_id)
        return copies
        # END SOLUTION

    def commit(self, seq: Sequence) -> None:
        """After a step: give every newly *full and computed* block its prefix hash."""
        # BEGIN SOLUTION [step 3] hint: walk the full computed blocks in order, chaining hashes; register new ones in self.cached
        if not self.enable_prefix_caching or seq.num_dropped_tokens:
            return
        bs = self.block_size
        parent = None
        for i in range(seq.num_computed_tokens // bs):
            block = self.blocks[seq.block_table[i]]
            tokens = tuple(seq.token_ids[i * bs:(i + 1) * bs])
            if block.hash is not None:
                parent = block.hash
                continue
            parent = self.hash_fn(parent, tokens)
            block.hash, block.token_ids = parent, tokens
            self.cached.setdefault(parent, block.block_id)
        # END SOLUTION

    def free_tail(self, seq: Sequence) -> None:
        """Give back blocks past what ``seq``'s tokens need (speculative decoding allocated
        slots for guesses that were rejected; those blocks were never full, so never hashed)."""
        keep = self.blocks_needed(len(seq) - seq.num_dropped_tokens)
        while len(seq.block_table) > keep:
            self._release(seq.block_table.pop())

    def free_seq(self, seq: Sequence) -> None:
        """Release all of ``seq``'s blocks, tail first (so a prefix's head stays cached longest)."""
        for block_id in reversed(seq.block_table):
            self._release(block_id)
        seq.block_table = []

    def fork(self, parent: Sequence, child: Sequence) -> None:
        """``child`` shares every block of ``parent`` (reference counts + 1)."""
        # BEGIN SOLUTION [step 3] hint: copy the block table and bump each block's ref_count
        child.block_table = list(parent.block_table)
        for block_id in child.block_table:
            self.blocks[block_id].ref_count += 1
        # END SOLUTION

    def drop_middle_block(self, seq: Sequence, sink_blocks: int) -> None:
        """StreamingLLM: evict the oldest block after the attention sinks."""
        block_id = seq.block_table.pop(sink_blocks)
        self._release(block_id)
        seq.num_dropped_tokens += self.block_size
