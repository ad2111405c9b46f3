"""Step 3, the block manager alone: reference counts, prefix caching (chained hashes, tokens
kept, LRU of freed cached blocks) and copy-on-write forks.  Nothing here runs a model."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.serving import BlockManager, SamplingParams, Sequence

pytestmark = pytest.mark.step(3)


def seq_of(tokens, i=0):
    return Sequence(f"r{i}", list(tokens), SamplingParams(max_tokens=4), arrival_time=0.0)


def admit(bm: BlockManager, seq: Sequence) -> list:
    """Allocate like the scheduler does: prefix hits, then slots for every remaining token."""
    bm.allocate(seq)
    copies = bm.allocate_slots(seq, len(seq) - seq.num_computed_tokens)
    seq.num_computed_tokens = len(seq)
    bm.commit(seq)
    return copies


def check_refcounts(bm: BlockManager, seqs) -> None:
    """Invariant: a block's count equals the block tables naming it; free ⇔ count 0."""
    counts = [0] * bm.num_blocks
    for s in seqs:
        for b in s.block_table:
            counts[b] += 1
    assert [b.ref_count for b in bm.blocks] == counts
    assert set(bm.free) == {i for i, c in enumerate(counts) if c == 0}


@pytest.mark.points(2)
def test_allocate_and_free_counts(rng):
    bm = BlockManager(num_blocks=16, block_size=4, enable_prefix_caching=False)
    seqs = [seq_of(rng.integers(0, 256, int(rng.integers(1, 14))).tolist(), i) for i in range(3)]
    for s in seqs:
        admit(bm, s)
        assert len(s.block_table) == -(-len(s) // 4)
    check_refcounts(bm, seqs)
    assert len({b for s in seqs for b in s.block_table}) == sum(len(s.block_table) for s in seqs)
    for s in seqs:
        bm.free_seq(s)
    bm.assert_all_free()


@pytest.mark.points(2)
def test_prefix_hit_shares_full_blocks_only(rng):
    bm = BlockManager(num_blocks=32, block_size=4)
    prefix = rng.integers(0, 256, 10).tolist()            # 2 full blocks + 2 tokens
    a = seq_of(prefix + [1, 2, 3], 0)
    admit(bm, a)
    b = seq_of(prefix + [7, 8, 9, 10], 1)
    bm.allocate(b)
    assert b.num_computed_tokens == 8, "the two full blocks of the shared prefix should hit"
    assert b.block_table == a.block_table[:2]
    assert all(bm.blocks[x].ref_count == 2 for x in b.block_table)
    c = seq_of([prefix[0] + 1] + prefix[1:] + [1, 2, 3], 2)   # differs in the first token: no hit at all
    bm.allocate(c)
    assert c.num_computed_tokens == 0


@pytest.mark.points(2)
def test_full_hit_ending_on_a_block_boundary_leaves_a_token_to_compute(rng):
    """A 100% hit must still compute the last token (its logits give the next token)."""
    bm = BlockManager(num_blocks=16, block_size=4)
    prompt = rng.integers(0, 256, 12).tolist()            # exactly 3 blocks
    a = seq_of(prompt, 0)
    admit(bm, a)
    bm.free_seq(a)
    b = seq_of(prompt, 1)
    bm.allocate(b)
    assert 0 < len(b) - b.num_computed_tokens <= 4
    assert b.num_computed_tokens == 8
    check_refcounts(bm, [b])          # the revived hits left the free queue
    copies = bm.allocate_slots(b, len(b) - b.num_computed_tokens)
    assert copies == []
    assert len(b.block_table) == 3 and bm.blocks[b.block_table[2]].ref_count == 1
    check_refcounts(bm, [b])


@pytest.mark.points(1)
def test_freed_cached_blocks_are_evicted_least_recently_used_first(rng):
    bm = BlockManager(num_blocks=6, block_size=2)
    old, new = seq_of([1, 2, 3, 4, 5], 0), seq_of([6, 7, 8, 9, 10], 1)
    admit(bm, old)
    admit(bm, new)
    bm.free_seq(old)
    bm.free_seq(new)          # free order: old's blocks, then new's (most recent last)
    filler = seq_of(rng.integers(0, 256, 6).tolist(), 2)      # takes 3 blocks: the oldest free ones
    admit(bm, filler)
    assert len(bm.lookup_prefix(seq_of([6, 7, 8, 9, 10]))) == 2, "the recently freed prefix should stay cached"
    assert bm.lookup_prefix(seq_of([1, 2, 3, 4, 5])) == [], "the least recently freed prefix should be evicted first"
    assert bm.lookup_prefix(seq_of(filler.token_ids + [0])) == filler.block_table, \
        "blocks reused after an eviction must be cached under their new contents"
    again = seq_of([1, 2, 3, 4, 5], 3)       # the evicted prefix computed once more: cached again
    admit(bm, again)
    assert bm.lookup_prefix(seq_of([1, 2, 3, 4, 5])) == again.block_table[:2], \
        "an evicted prefix computed again must be found again (a stale cache entry hides it)"
    check_refcounts(bm, [filler, again])


def distinct_blocks(rng, n, bs):
    """``n`` blocks of ``bs`` random byte tokens, pairwise different."""
    blocks = []
    while len(blocks) < n:
        b = rng.integers(0, 256, bs).tolist()
        if b not in blocks:
            blocks.append(b)
    return blocks


@pytest.mark.points(2)
def test_prefix_hashes_are_chained_through_every_earlier_block(rng):
    """A block's hash names its whole prefix, not its own tokens: the same block of tokens at
    another position, after another prefix, or repeated within one prompt is a different
    cache entry.  (The prompts share a block's tokens but not what comes before it; a hit
    there would serve keys computed at other positions over other context.)"""
    bs = 4
    X, Y, Z = distinct_blocks(rng, 3, bs)
    bm = BlockManager(num_blocks=32, block_size=bs)
    a = seq_of(X + Y + [7], 0)
    admit(bm, a)
    assert bm.lookup_prefix(seq_of(Y + Z + [7], 1)) == [], "Y at position 0 must not hit Y cached after X"
    assert bm.lookup_prefix(seq_of(X + Y + [9], 1)) == a.block_table[:2]
    rep = seq_of(Y + Y + Y + [1], 2)          # one block's tokens three times in one prompt
    admit(bm, rep)
    assert len(set(rep.block_table[:3])) == 3 and not set(rep.block_table) & set(a.block_table)
    assert bm.lookup_prefix(seq_of(Y + Y + Y + [2], 3)) == rep.block_table[:3], \
        "a repeated block must hit its own position's block"
    # a prefix hit, then a new full block: its hash must chain from the hit blocks' hashes
    b = seq_of(X + Y + Z + [5], 4)
    admit(bm, b)
    assert b.block_table[:2] == a.block_table[:2] and b.num_cached_tokens == 2 * bs
    assert bm.lookup_prefix(seq_of(X + Y + Z + [6], 5)) == b.block_table[:3], \
        "the block computed after a prefix hit should be cached under the chained hash"
    assert bm.lookup_prefix(seq_of(Z + [6], 5)) == [], "Z after X, Y must not hit Z at position 0"
    check_refcounts(bm, [a, rep, b])
    for s in (a, rep, b):
        bm.free_seq(s)
    bm.assert_all_free()


@pytest.mark.points(1)
def test_only_computed_blocks_are_hashed(rng):
    """Chunked prefill: a block whose keys and values are not computed yet must not be found
    by another request (it would read slots nobody has written)."""
    bs = 4
    bm = BlockManager(num_blocks=16, block_size=bs)
    tokens = rng.integers(0, 256, 3 * bs + 2).tolist()
    s = seq_of(tokens, 0)
    bm.allocate(s)
    bm.allocate_slots(s, len(s))              # room for the whole prompt, computed in chunks
    probe = seq_of(tokens + [1], 1)
    for computed, full in [(bs - 1, 0), (bs + 1, 1), (3 * bs, 3)]:
        s.num_computed_tokens = computed
        bm.commit(s)
        assert bm.lookup_prefix(probe) == s.block_table[:full], \
            f"after {computed} computed tokens only {full} full block(s) may be cached"
    bm.free_seq(s)
    bm.assert_all_free()


@pytest.mark.points(2)
@pytest.mark.hidden
def test_hash_collisions_never_serve_wrong_tokens():
    bm = BlockManager(num_blocks=8, block_size=2, hash_fn=lambda parent, tokens: 42)   # everything collides
    a = seq_of([1, 2, 3, 4, 5], 0)
    admit(bm, a)
    b = seq_of([9, 9, 9, 9, 9], 1)
    assert bm.lookup_prefix(b) == []
    bm.allocate(b)
    assert b.num_computed_tokens == 0


@pytest.mark.points(2)
def test_fork_copies_the_shared_partial_block_on_write(rng):
    bm = BlockManager(num_blocks=16, block_size=4)
    parent = seq_of(rng.integers(0, 256, 10).tolist(), 0)       # blocks: full, full, partial (2 tokens)
    admit(bm, parent)
    child = parent.fork(1)
    bm.fork(parent, child)
    check_refcounts(bm, [parent, child])
    assert all(bm.blocks[b].ref_count == 2 for b in parent.block_table)
    child.token_ids.append(5)
    copies = bm.allocate_slots(child, 1)
    assert copies == [(parent.block_table[2], child.block_table[2])]
    assert child.block_table[:2] == parent.block_table[:2] and child.block_table[2] != parent.block_table[2]
    parent.token_ids.append(6)
    assert bm.allocate_slots(parent, 1) == [], "the parent is the block's only owner now: no copy"
    check_refcounts(bm, [parent, child])
    bm.free_seq(parent)
    bm.free_seq(child)
    bm.assert_all_free()


@pytest.mark.points(3)
@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["admit", "fork", "append", "free"]),
                              st.integers(0, 10), st.integers(1, 9)), min_size=1, max_size=40))
def test_reference_counts_stay_consistent(ops):
    """Property: any mix of admissions (sharing prefixes), forks, appends and frees keeps
    every block's count equal to its owners, and freeing everything returns every block."""
    bm = BlockManager(num_blocks=64, block_size=4)
    live: list[Sequence] = []
    base = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]
    for op, a, b in ops:
        if op == "admit":
            s = seq_of(base[: a + 1] + [a] * b, len(live))
            if bm.can_allocate(s, len(s)):
                admit(bm, s)
                live.append(s)
        elif op == "fork" and live:
            p = live[a % len(live)]
            c = p.fork(1)
            bm.fork(p, c)
            live.append(c)
        elif op == "append" and live:
            s = live[a % len(live)]
            if bm.can_append(s, b):
                s.token_ids += [b] * b
                bm.allocate_slots(s, b)
                s.num_computed_tokens = len(s)
                bm.commit(s)
        elif op == "free" and live:
            bm.free_seq(live.pop(a % len(live)))
        check_refcounts(bm, live)
    for s in live:
        bm.free_seq(s)
    bm.assert_all_free()
