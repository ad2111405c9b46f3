"""The scheduler: continuous batching under a token budget, chunked prefill, preemption by
recomputation, FCFS admission, rejection of requests that can never fit — first on random
workloads without a model (hypothesis; step 4), then on the real engine against a reference
run (step 6: the engine needs step 5's sampler and step 6's stopping rules)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.serving import (BlockManager, EngineConfig, RequestRejected, SamplingParams, Scheduler, Sequence,
                                SequenceStatus)


def run_fake_workload(requests, cfg: EngineConfig, seed: int, check=lambda *a: None):
    """Drive the scheduler with a fake model (tokens from a seeded RNG); returns the sequences."""
    bm = BlockManager(cfg.num_blocks, cfg.block_size, cfg.enable_prefix_caching)
    sched = Scheduler(cfg, bm, max_model_len=10_000)
    rnd = random.Random(seed)
    seqs = []
    for i, (prompt, max_tokens, arrive_step) in enumerate(requests):
        seqs.append((arrive_step, Sequence(f"r{i}", prompt, SamplingParams(max_tokens=max_tokens), arrival_time=i)))
    admitted_order = []
    step = 0
    while step < 5000:
        for arrive, s in seqs:
            if arrive == step:
                sched.add(s)
        if not sched.has_work() and step > max(a for a, _ in seqs):
            break
        before = list(sched.running)
        batch = sched.schedule()
        for s in sched.running:
            if s.seq_id not in admitted_order:
                admitted_order.append(s.seq_id)
        check(sched, bm, batch, cfg, before)
        for s, n in zip(batch.seqs, batch.num_new_tokens):
            s.num_computed_tokens += n
            bm.commit(s)
            if s.num_computed_tokens == len(s):
                s.token_ids.append(rnd.randrange(256))
                if s.num_output_tokens >= s.params.max_tokens:
                    sched.finish(s, "length")
        step += 1
    return [s for _, s in seqs], bm, sched, admitted_order


def step_invariants(sched, bm, batch, cfg, before=()):
    """After one ``schedule()``; ``before``: the running list as the step began."""
    assert batch.preempted == list(reversed(before))[:len(batch.preempted)], \
        "preemption must take the newest running sequences first"
    assert not (batch.preempted and set(map(id, batch.seqs)) - set(map(id, before))), \
        "nobody is admitted in a step that preempted"
    assert batch.num_tokens <= cfg.max_num_batched_tokens, "token budget exceeded"
    assert len(sched.running) <= cfg.max_num_seqs
    assert len(set(id(s) for s in batch.seqs)) == len(batch.seqs), "a sequence scheduled twice in a step"
    for s, n in zip(batch.seqs, batch.num_new_tokens):
        assert s.status == SequenceStatus.RUNNING
        assert 1 <= n <= len(s) - s.num_computed_tokens
        assert len(s.block_table) * cfg.block_size >= s.context_len + n, "no room for the scheduled tokens"
    counts = [0] * bm.num_blocks
    for s in sched.running:
        for b in s.block_table:
            counts[b] += 1
    for s in sched.waiting:
        assert s.block_table == [] and s.num_computed_tokens == 0
    assert [b.ref_count for b in bm.blocks] == counts, "reference counts differ from the block tables"
    assert len(bm.free) == counts.count(0)
    for s in sched.running:      # a hashed block can be hit by others: its K/V must be computed
        for i, b in enumerate(s.block_table):
            if bm.blocks[b].hash is not None:
                assert (i + 1) * cfg.block_size <= s.num_computed_tokens, \
                    f"block {i} of {s} is in the prefix cache but its keys are not computed yet"


workloads = st.lists(st.tuples(st.lists(st.integers(0, 3), min_size=1, max_size=40),   # few symbols: shared prefixes
                               st.integers(1, 24), st.integers(0, 6)), min_size=1, max_size=10)


@pytest.mark.step(4)
@pytest.mark.points(4)
@settings(max_examples=30, deadline=None)
@given(reqs=workloads, num_blocks=st.integers(5, 24), budget=st.integers(1, 48),
       max_seqs=st.integers(1, 6), caching=st.booleans(), seed=st.integers(0, 2**16))
def test_scheduler_invariants_on_random_workloads(reqs, num_blocks, budget, max_seqs, caching, seed):
    cfg = EngineConfig(block_size=4, num_blocks=num_blocks, max_num_batched_tokens=budget,
                       max_num_seqs=max_seqs, enable_prefix_caching=caching)
    fits = [(p, m, a) for p, m, a in reqs if -(-(len(p) + m) // 4) <= num_blocks]
    if not fits:
        return
    seqs, bm, sched, order = run_fake_workload(fits, cfg, seed, step_invariants)
    assert all(s.is_finished for s in seqs), "a request never finished (deadlock or starvation)"
    assert all(s.num_output_tokens == s.params.max_tokens for s in seqs)
    bm.assert_all_free()
    # FCFS: the first admission of each sequence follows arrival order (ties: submission order)
    first = {sid: i for i, sid in enumerate(order)}
    by_arrival = sorted(seqs, key=lambda s: (next(a for (p, m, a), t in zip(fits, seqs) if t is s), s.arrival_time))
    assert [first[s.seq_id] for s in by_arrival] == sorted(first[s.seq_id] for s in by_arrival)


@pytest.mark.step(4)
@pytest.mark.points(1)
def test_preemption_takes_the_newest_running_sequence(rng):
    """Three decoding sequences, no free block: the oldest needs a new block, so the newest is
    preempted (blocks freed, back at the head of the queue) and the other two still run.
    Nobody is admitted in that step, although the freed blocks and the budget left would
    let the victim back in at once (to be preempted again)."""
    bs = 4
    cfg = EngineConfig(block_size=bs, num_blocks=7, max_num_batched_tokens=6, max_num_seqs=4)
    bm = BlockManager(7, bs, enable_prefix_caching=False)
    sched = Scheduler(cfg, bm, max_model_len=100)
    seqs = []
    for i, prompt_len in enumerate([bs, bs + 1, 3 * bs + 1]):   # oldest ends on a block boundary
        s = Sequence(f"r{i}", rng.integers(0, 256, prompt_len).tolist(), SamplingParams(max_tokens=8),
                     arrival_time=i)
        bm.allocate(s)
        bm.allocate_slots(s, prompt_len)
        s.num_computed_tokens = prompt_len
        s.token_ids.append(int(rng.integers(256)))            # its first output token, not yet computed
        s.status = SequenceStatus.RUNNING
        sched.running.append(s)
        seqs.append(s)
    oldest, middle, newest = seqs
    assert bm.num_free_blocks == 0
    batch = sched.schedule()
    assert batch.preempted == [newest], f"preempted {batch.preempted}, expected the newest sequence"
    assert batch.seqs == [oldest, middle] and batch.num_new_tokens == [1, 1]
    assert newest.status == SequenceStatus.WAITING and list(sched.waiting) == [newest]
    assert newest.block_table == [] and newest.num_computed_tokens == 0
    assert len(oldest.block_table) == 2 and bm.num_free_blocks == 3


@pytest.mark.step(4)
@pytest.mark.points(2)
def test_requests_that_can_never_fit_are_rejected_up_front():
    cfg = EngineConfig(block_size=4, num_blocks=8)
    sched = Scheduler(cfg, BlockManager(8, 4), max_model_len=64)
    with pytest.raises(RequestRejected):
        sched.add(Sequence("big", [1] * 30, SamplingParams(max_tokens=4)))   # 34 tokens > 32 slots
    with pytest.raises(RequestRejected):
        sched.add(Sequence("long", [1] * 20, SamplingParams(max_tokens=50)))  # beyond max_model_len
    with pytest.raises(RequestRejected):
        sched.add(Sequence("empty", [], SamplingParams(max_tokens=4)))
    ok = Sequence("ok", [1] * 28, SamplingParams(max_tokens=4))              # exactly the pool
    sched.add(ok)
    assert list(sched.waiting) == [ok]
    roomy = Scheduler(EngineConfig(block_size=4, num_blocks=64), BlockManager(64, 4), max_model_len=64)
    edge = Sequence("edge", [1] * 20, SamplingParams(max_tokens=44))         # exactly the context length
    roomy.add(edge)
    assert list(roomy.waiting) == [edge]


# ------------------------------------------------------------- on the real engine
def greedy(n):
    return SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)


def tokens_of(outs, n):
    """Each request's greedy tokens, checked to be a full run of ``n`` (a request that failed
    inside the engine ends with no tokens: two failed runs must not compare equal)."""
    for c in outs:
        assert c[0].finish_reason == "length" and len(c[0].token_ids) == n, \
            f"request {c[0].request_id} ended {c[0].finish_reason!r} after {len(c[0].token_ids)} of {n} tokens (see its traceback in the output)"
    return [c[0].token_ids for c in outs]


@pytest.fixture(scope="module")
def reference_outputs(new_engine):
    """Greedy outputs with a roomy cache, no chunking, no prefix cache: the reference."""

    def ref(prompts, n):
        e = new_engine(num_blocks=256, enable_prefix_caching=False)
        return tokens_of(e.generate(prompts, greedy(n)), n)

    return ref


@pytest.mark.step(6)
@pytest.mark.points(3)
def test_preemption_just_past_a_block_boundary_recomputes_exactly(make_engine, reference_outputs, rng):
    """Prompts of 15 tokens (+BOS = 16): the first decode crosses a block boundary and needs
    a new block, which is what runs out; re-prefill after preemption must not drop a token."""
    prompts = [rng.integers(0, 256, 16).tolist() for _ in range(4)]
    ref = reference_outputs(prompts, 20)
    e = make_engine(num_blocks=7, block_size=16, enable_prefix_caching=False)
    got = tokens_of(e.generate(prompts, greedy(20)), 20)
    assert e.scheduler.num_preemptions > 0, "the workload was meant to preempt"
    assert got == ref
    e.block_manager.assert_all_free()


@pytest.mark.step(6)
@pytest.mark.points(3)
def test_preempted_request_readmitted_with_a_prefix_hit(make_engine, reference_outputs, rng):
    shared = rng.integers(0, 256, 40).tolist()
    prompts = [shared + rng.integers(0, 256, 3).tolist() for _ in range(4)]
    ref = reference_outputs(prompts, 24)
    e = make_engine(num_blocks=10, block_size=8, enable_prefix_caching=True)
    seqs = []
    orig_allocate = e.block_manager.allocate

    def spy(seq):
        n = orig_allocate(seq)
        if seq.num_preemptions:
            seqs.append(n)
        return n
    e.block_manager.allocate = spy
    got = tokens_of(e.generate(prompts, greedy(24)), 24)
    assert e.scheduler.num_preemptions > 0
    assert any(n > 0 for n in seqs), "a preempted request should come back with a prefix-cache hit"
    assert got == ref
    e.block_manager.assert_all_free()


@pytest.mark.step(6)
@pytest.mark.points(2)
def test_chunked_prefill_gives_the_same_tokens(make_engine, reference_outputs, rng):
    prompts = [rng.integers(0, 256, int(rng.integers(20, 60))).tolist() for _ in range(3)]
    ref = reference_outputs(prompts, 12)
    e = make_engine(num_blocks=64, max_num_batched_tokens=int(rng.integers(5, 17)))
    assert tokens_of(e.generate(prompts, greedy(12)), 12) == ref
    e.block_manager.assert_all_free()


@pytest.mark.step(6)
@pytest.mark.points(2)
def test_identical_prompts_at_once_and_full_prefix_hit_on_block_boundary(make_engine, reference_outputs, rng):
    prompt = rng.integers(0, 256, 31).tolist()          # + BOS = 32 tokens: ends on a block boundary
    ref = reference_outputs([prompt], 10)[0]
    e = make_engine(num_blocks=32, block_size=16)
    outs = e.generate([prompt, prompt], greedy(10))      # two identical prompts in the same step
    assert tokens_of(outs, 10) == [ref, ref]
    again = e.generate([prompt], greedy(10))             # now a full hit: 32 cached tokens
    assert tokens_of(again, 10) == [ref]
    assert e.block_manager.stats.prefix_hits > 0
    e.block_manager.assert_all_free()
