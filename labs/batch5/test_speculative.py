"""Step 9, speculative decoding inside the engine (``EngineConfig.speculative``): prompt-lookup
guesses ride in the continuous batch over the paged cache and the prefix cache.

The reference is the same engine with speculation off, in the same run: tokens, text and
finish reasons must be identical under batching, a tight token budget (guesses cut short),
a small cache (preemption), shared prefixes, stop strings and sampled requests beside
greedy ones; every block comes back.  :func:`ngram_propose` is checked against a
brute-force search over all matches."""
from __future__ import annotations

import pytest

from mlsys_labs.serving import SamplingParams, SpeculativeConfig
from mlsys_labs.serving import ngram_propose

pytestmark = pytest.mark.step(9)


def brute_force_lookup(ids, k, n_min, n_max):
    """Every (n, start) whose n tokens equal the last n and are followed by a token; the longest
    n wins, then the latest start."""
    L = len(ids)
    matches = [(n, s) for n in range(n_min, n_max + 1) for s in range(L - n)
               if n < L and ids[s:s + n] == ids[L - n:]]
    if not matches:
        return []
    n, s = max(matches)
    return ids[s + n:s + n + k]


@pytest.mark.points(1)
def test_ngram_propose_finds_the_longest_latest_match(rng):
    """Small alphabets (many matches, of several lengths) and a few hand cases."""
    assert ngram_propose([1, 2, 3, 9, 1, 2, 3], 3, 1, 3) == [9, 1, 2]
    assert ngram_propose([5, 1, 7, 1, 8, 1], 2, 1, 2) == [8, 1]          # the latest match of [1]
    assert ngram_propose([4, 2, 6, 9, 3, 2, 6, 1, 2], 4, 1, 2) == [6, 1, 2]   # latest [2], not the longer-ago [2, 6]
    assert ngram_propose([1, 2, 3], 2, 1, 3) == []
    assert ngram_propose([7], 2, 1, 3) == []
    for _ in range(300):
        ids = rng.integers(0, int(rng.integers(2, 6)), int(rng.integers(1, 25))).tolist()
        k, n_min = int(rng.integers(1, 5)), int(rng.integers(1, 3))
        n_max = n_min + int(rng.integers(0, 3))
        assert ngram_propose(ids, k, n_min, n_max) == brute_force_lookup(ids, k, n_min, n_max), (ids, k, n_min, n_max)


def repetitive_prompts(rng, count, shared=()):
    """Prompts that repeat a random phrase (what prompt lookup feeds on), some with a shared head."""
    out = []
    for i in range(count):
        phrase = rng.integers(0, 256, int(rng.integers(3, 10))).tolist()
        head = list(shared) if i % 2 else []
        out.append([256] + head + phrase * int(rng.integers(2, 5)))
    return out


def guesses_that_hit(prompt, generated, k=4, n_min=1, n_max=3):
    """How many tokens prompt lookup guesses right on the reference's own greedy output: the
    verify loop replayed (the first token comes from the prefill; a guess is accepted while it
    equals the next greedy token, and the step adds one token of its own)."""
    accepted, i = 0, 1
    while i < len(generated):
        guess = brute_force_lookup(prompt + generated[:i], k, n_min, n_max)
        a = 0
        while a < len(guess) and i + a + 1 < len(generated) and guess[a] == generated[i + a]:
            a += 1
        accepted, i = accepted + a, i + a + 1
    return accepted


def prompts_with_hits(new_engine, rng, params, shared=()):
    """One repetitive prompt per ``params``, each drawn until the reference engine's greedy
    output gives prompt lookup at least one right guess — planted, not left to the seed's luck
    (a random model need not continue the phrase it was shown)."""
    ref, out = new_engine(num_blocks=96), []
    for i, p in enumerate(params):
        for _ in range(200):
            prompt = repetitive_prompts(rng, 2, shared)[i % 2]
            generated = ref.generate([prompt], p)[0][0].token_ids
            if guesses_that_hit(prompt, list(generated)) > 0:
                out.append(prompt)
                break
        else:
            pytest.fail("no prompt among 200 gave prompt lookup a right guess on this model")
    return out


def run_both(new_engine, prompts, params, **cfg):
    ref = new_engine(**cfg)
    spec = new_engine(**cfg, speculative=SpeculativeConfig(num_speculative_tokens=4, prompt_lookup_max=3))
    want, got = ref.generate(prompts, params), spec.generate(prompts, params)
    for w, g in zip(want, got):
        for a, b in zip(w, g):
            assert (b.token_ids, b.text, b.finish_reason) == (a.token_ids, a.text, a.finish_reason)
    spec.block_manager.assert_all_free()
    return ref, spec


@pytest.mark.points(2)
@pytest.mark.parametrize("case", ["roomy", "tight-budget", "budget-2", "small-cache"])
def test_engine_output_is_identical_with_speculation(new_engine, rng, case):
    """A batch of greedy requests with different lengths, stop strings and a shared prefix:
    identical output with speculation on; guesses were verified and some accepted (the counts
    add up); under a small cache sequences were preempted and still came out the same."""
    cfg = {"roomy": dict(num_blocks=96),
           "tight-budget": dict(num_blocks=96, max_num_batched_tokens=9),
           "budget-2": dict(num_blocks=96, max_num_batched_tokens=2),     # every guess past the first is cut
           "small-cache": dict(num_blocks=14, block_size=8, max_num_batched_tokens=64)}[case]
    shared = rng.integers(0, 256, 20).tolist()
    # under the small cache every request runs long: six of them need several times the cache
    lengths = [40] * 6 if case == "small-cache" else [int(rng.integers(8, 40)) for _ in range(6)]
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True,
                             stop=["\x00\x01"] if i == 3 else []) for i, n in enumerate(lengths)]
    prompts = prompts_with_hits(new_engine, rng, params, shared)
    ref, spec = run_both(new_engine, prompts, params, **cfg)
    st = spec.spec_stats
    assert st.num_drafts > 0 and 0 < st.num_accepted_tokens <= st.num_draft_tokens
    assert st.num_emitted_tokens == st.num_accepted_tokens + st.num_drafts
    assert st.tokens_per_step > 1 and 0 < st.acceptance_rate <= 1
    assert spec.metrics.generation_tokens == ref.metrics.generation_tokens
    if case == "small-cache":
        assert spec.scheduler.num_preemptions > 0, "the small cache should have forced a preemption"


@pytest.mark.points(1)
def test_each_accepted_guess_saves_one_step(new_engine, rng):
    """One sequence: every accepted guess is a decode step not taken, and nothing is computed
    twice (an accepted guess's keys and values are already in the cache)."""
    params = SamplingParams(temperature=0, max_tokens=48, ignore_eos=True)
    prompt = prompts_with_hits(new_engine, rng, [params])[0]
    ref, spec = run_both(new_engine, [prompt], params, num_blocks=32)
    assert spec.spec_stats.num_accepted_tokens > 0
    assert spec.metrics.steps == ref.metrics.steps - spec.spec_stats.num_accepted_tokens
    assert spec.metrics.prefill_tokens_computed == ref.metrics.prefill_tokens_computed == len(prompt)


@pytest.mark.points(1)
def test_sampled_requests_are_not_speculated(new_engine, rng):
    """Seeded sampled requests beside greedy ones: the sampled ones are left alone (same seeded
    tokens as without speculation), only the greedy ones are drafted for."""
    prompts = repetitive_prompts(rng, 4)
    params = [SamplingParams(temperature=0.8 if i % 2 else 0, seed=i, max_tokens=24, ignore_eos=True)
              for i in range(4)]
    _, spec = run_both(new_engine, prompts, params, num_blocks=64)
    only_sampled = new_engine(num_blocks=64, speculative=SpeculativeConfig())
    only_sampled.generate(prompts[1::2], params[1::2])
    assert spec.spec_stats.num_drafts > 0 and only_sampled.spec_stats.num_drafts == 0
