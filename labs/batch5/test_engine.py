"""Step 5, the sampler alone; step 6, the UTF-8-safe decoder alone, then the engine end to end
(no HTTP): stopping rules, n > 1 with copy-on-write, StreamingLLM sinks, per-request
failures, aborts in every state."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsys_labs.serving import (ByteTokenizer, IncrementalDecoder, SamplingParams, SequenceStatus, filter_logits,
                                sample_token)


def prompt_of(rng, lo=5, hi=40):
    return [256] + rng.integers(0, 256, int(rng.integers(lo, hi))).tolist()


def filtered_softmax(logits, temp, k, p):
    """numpy: softmax(logits / temp) restricted to the top-k ∩ top-p nucleus, renormalised
    (top-p on the tempered, top-k-filtered distribution: keep a token while the mass ranked
    above it is < p)."""
    V = len(logits)
    z = logits / temp
    order = np.argsort(-z, kind="stable")
    keep = np.zeros(V, bool)
    keep[order[:k if k else V]] = True
    zk = np.where(keep, z, -np.inf)
    probs = np.exp(zk - zk.max())
    probs /= probs.sum()
    cum_before = np.cumsum(probs[order]) - probs[order]
    nucleus = np.zeros(V, bool)
    nucleus[order[cum_before < p]] = True
    out = np.where(keep & nucleus, probs, 0)
    return out / out.sum()


def mid_nucleus_p(logits, temp, k, rank):
    """A top-p that ends half-way through the token of the given rank (no boundary ties)."""
    probs = filtered_softmax(logits, temp, k, 1.0)
    sorted_p = np.sort(probs)[::-1]
    return float(sorted_p[:rank].sum() + sorted_p[rank] / 2)


@pytest.mark.step(5)
@pytest.mark.points(2)
def test_sampling_distribution_with_temperature_top_k_top_p(rng, seed):
    """Empirical frequencies against the filtered softmax computed in numpy, for temperature
    alone, top-k alone, top-p alone and all three.  The logits are evenly spaced (distinct,
    in random order), the temperature is drawn far from 1 and top-p ends half-way through a
    token, so a sampler that ignores any one parameter is many standard deviations off
    whatever the draws."""
    V, N = 12, 3000
    logits = rng.permutation(V) * 0.5 + rng.uniform(0, 0.05, V)      # gaps 0.45–0.55
    temp = float(rng.uniform(0.35, 0.6) if rng.random() < 0.5 else rng.uniform(1.8, 2.5))
    k = int(rng.integers(2, 7))
    configs = [("temperature", temp, 0, 1.0), ("top-k", 1.0, k, 1.0),
               ("top-p", 1.0, 0, mid_nucleus_p(logits, 1.0, 0, int(rng.integers(1, 6)))),
               ("all three", temp, k + 2, mid_nucleus_p(logits, temp, k + 2, int(rng.integers(1, k + 1))))]
    gen = torch.Generator().manual_seed(seed)
    t = torch.tensor(logits, dtype=torch.float32)
    for name, tp, kk, pp in configs:
        expected = filtered_softmax(logits, tp, kk, pp)
        params = SamplingParams(temperature=tp, top_k=kk, top_p=pp)
        draws = np.array([sample_token(t, params, gen) for _ in range(N)])
        counts = np.bincount(draws, minlength=V)
        what = f"{name} (temperature {tp:.2f}, top_k {kk}, top_p {pp:.3f})"
        assert set(np.flatnonzero(counts)) <= set(np.flatnonzero(expected)), f"{what}: sampled outside top-k ∩ top-p"
        sigma = np.sqrt(N * expected * (1 - expected)) + 1
        assert np.all(np.abs(counts - N * expected) <= 5 * sigma), (what, counts, (N * expected).round())
    assert sample_token(t, SamplingParams(temperature=0), gen) == int(np.argmax(logits))
    f = filter_logits(t, 1, 1.0)
    assert int(torch.isfinite(f).sum()) == 1


@pytest.mark.step(5)
@pytest.mark.points(1)
def test_sampling_uses_the_request_generator_only(rng, seed):
    """Two generators seeded alike give the same draws whatever the global RNG does in
    between; the global RNG is left alone."""
    t = torch.tensor(rng.standard_normal(10) * 0.3, dtype=torch.float32)    # near-uniform: many outcomes
    params = SamplingParams(temperature=1.0)
    runs = []
    with torch.random.fork_rng():
        for global_seed in (seed, seed + 1):
            torch.manual_seed(global_seed)
            gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)) if not runs else runs[0][0])
            first = gen.initial_seed()
            runs.append((first, [sample_token(t, params, gen) for _ in range(40)], torch.rand(3)))
    assert runs[0][1] == runs[1][1], "the same request seed must give the same tokens"
    assert len(set(runs[0][1])) > 1
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        expected_global = torch.rand(3)
    assert torch.equal(runs[0][2], expected_global), "sampling with a generator must not draw from the global RNG"


@pytest.mark.step(6)
@pytest.mark.points(2)
@pytest.mark.hidden
def test_seeded_requests_reproduce_whatever_shares_the_batch(make_engine, rng):
    p = prompt_of(rng)
    sp = SamplingParams(temperature=1.0, top_p=0.9, seed=int(rng.integers(1 << 30)), max_tokens=16, ignore_eos=True)
    alone = make_engine(num_blocks=64).generate([p], sp)[0][0]
    assert alone.finish_reason == "length" and len(alone.token_ids) == 16, f"the request ended {alone.finish_reason!r}"
    alone = alone.token_ids
    others = [prompt_of(rng) for _ in range(3)]
    mixed = make_engine(num_blocks=64).generate(
        others[:2] + [p] + others[2:], [SamplingParams(temperature=1.0, max_tokens=20, ignore_eos=True)] * 2 + [sp]
        + [SamplingParams(temperature=0.5, max_tokens=5)])
    assert mixed[2][0].token_ids == alone


@pytest.mark.step(6)
@pytest.mark.points(2)
def test_stop_strings_stop_tokens_and_max_tokens(make_engine, rng):
    e = make_engine(num_blocks=64)
    p = prompt_of(rng)
    free = e.generate([p], SamplingParams(temperature=0, max_tokens=40, ignore_eos=True))[0][0]
    assert free.finish_reason == "length" and len(free.token_ids) == 40
    assert free.text == ByteTokenizer().decode(free.token_ids), "streamed deltas must add up to the decoded text"
    text = free.text
    k = int(rng.integers(3, max(4, len(text) - 3)))
    stop = text[k:k + 2]
    cut = e.generate([p], SamplingParams(temperature=0, max_tokens=40, ignore_eos=True, stop=[stop]))[0][0]
    assert cut.finish_reason == "stop" and cut.text == text[:text.find(stop)]
    tok = free.token_ids[5]
    st = e.generate([p], SamplingParams(temperature=0, max_tokens=40, ignore_eos=True, stop_token_ids=[tok]))[0][0]
    assert st.finish_reason == "stop" and st.token_ids == free.token_ids[:free.token_ids.index(tok) + 1]
    e.block_manager.assert_all_free()


@pytest.mark.step(6)
@pytest.mark.points(1)
def test_eos_ignore_eos_and_a_partial_last_character(make_engine, rng, forcing):
    """Forced outputs: EOS stops a request (not part of its text) unless ``ignore_eos``; a
    request cut by ``max_tokens`` inside a UTF-8 character still ends with the decoded tail."""
    from mlsys_labs.serving import EOS

    e = make_engine(num_blocks=64)
    p = prompt_of(rng, 3, 10)
    a, b = [int(x) for x in rng.choice(np.arange(97, 123), 2, replace=False)]   # two different letters
    script = [a, 0xE2, 0x82, 0xAC, EOS, b, EOS, 0xF0, 0x9F, 0x98]      # a € EOS b EOS, then 3 of 😀's 4 bytes
    runs = e.generate([p, p, p], [
        SamplingParams(temperature=0, max_tokens=10, logits_processor=forcing(script, len(p))),
        SamplingParams(temperature=0, max_tokens=10, ignore_eos=True, logits_processor=forcing(script, len(p))),
        SamplingParams(temperature=1.0, max_tokens=9, ignore_eos=True, stop_token_ids=[b],
                       logits_processor=forcing(script, len(p)))])
    stop, ignore, stop_id = (r[0] for r in runs)
    assert (stop.finish_reason, stop.token_ids, stop.text) == ("stop", script[:5], chr(a) + "€")
    assert (ignore.finish_reason, ignore.token_ids) == ("length", script)
    assert ignore.text == ByteTokenizer().decode(script) and ignore.text.endswith("\ufffd"), repr(ignore.text)
    assert (stop_id.finish_reason, stop_id.token_ids, stop_id.text) == ("stop", script[:6], chr(a) + "€"), \
        "a stop token ends the request and is not part of the text"
    e.block_manager.assert_all_free()


@pytest.mark.step(6)
@pytest.mark.points(1)
def test_incremental_decoder_never_splits_a_utf8_character(rng):
    text = "héllo wörld → ✓ 😀 " * 3
    d = IncrementalDecoder()
    data = text.encode("utf-8")
    pieces = [d.add(b) for b in data]
    assert "".join(pieces) + d.flush() == text
    assert all("\ufffd" not in piece for piece in pieces)
    for i in range(len(data)):     # each character is emitted as soon as its last byte arrives
        assert "".join(pieces[:i + 1]) == data[:i + 1].decode("utf-8", errors="ignore"), f"after byte {i}"


@pytest.mark.step(6)
@pytest.mark.points(3)
def test_n_choices_share_the_prompt_blocks_copy_on_write(make_engine, rng):
    """n = 3 with a seed: each choice equals a separate request seeded seed + index, although
    the prompt was prefilled once and its last, partial block was copied on write."""
    p = prompt_of(rng, 20, 30)
    if len(p) % 16 == 0:
        p = p + [1]
    seed = int(rng.integers(1 << 30))
    e = make_engine(num_blocks=64, block_size=16)
    out = e.generate([p], SamplingParams(temperature=1.0, n=3, seed=seed, max_tokens=12, ignore_eos=True))[0]
    assert [c.index for c in out] == [0, 1, 2]
    assert e.block_manager.stats.cow_copies >= 2
    assert e.metrics.prefill_tokens_computed == len(p), "the prompt should be prefilled once"
    for i, c in enumerate(out):
        single = make_engine(num_blocks=64).generate(
            [p], SamplingParams(temperature=1.0, seed=seed + i, max_tokens=12, ignore_eos=True))[0][0]
        assert c.token_ids == single.token_ids, f"choice {i}"
    e.block_manager.assert_all_free()


def reference_forward(model, ids, visible):
    """float64 Llama forward written from the formulas, with an arbitrary visibility mask."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    cfg = model.config
    H, Hkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    T = len(ids)
    x = sd["model.embed_tokens.weight"][torch.tensor(ids)]
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None], torch.cat([ang.sin()] * 2, -1)[:, None]

    def norm(v, w):
        return w * v / torch.sqrt((v * v).mean(-1, keepdim=True) + cfg.rms_norm_eps)

    def rope(v):
        return v * cos + torch.cat([-v[..., d // 2:], v[..., :d // 2]], -1) * sin

    for i in range(cfg.num_hidden_layers):
        pre = f"model.layers.{i}."
        h = norm(x, sd[pre + "input_layernorm.weight"])
        q = rope((h @ sd[pre + "self_attn.q_proj.weight"].T).view(T, H, d))
        k = rope((h @ sd[pre + "self_attn.k_proj.weight"].T).view(T, Hkv, d)).repeat_interleave(H // Hkv, 1)
        v = (h @ sd[pre + "self_attn.v_proj.weight"].T).view(T, Hkv, d).repeat_interleave(H // Hkv, 1)
        s = torch.einsum("qhd,khd->hqk", q, k) / d ** 0.5
        s = s.masked_fill(~visible[None], float("-inf"))
        x = x + torch.einsum("hqk,khd->qhd", s.softmax(-1), v).reshape(T, -1) @ sd[pre + "self_attn.o_proj.weight"].T
        h = norm(x, sd[pre + "post_attention_layernorm.weight"])
        g = h @ sd[pre + "mlp.gate_proj.weight"].T
        x = x + (g * torch.sigmoid(g) * (h @ sd[pre + "mlp.up_proj.weight"].T)) @ sd[pre + "mlp.down_proj.weight"].T
    return norm(x, sd["model.norm.weight"]) @ sd["lm_head.weight"].T


@pytest.mark.step(6)
@pytest.mark.points(3)
def test_streaming_llm_sinks_bound_the_cache_and_attend_sinks_plus_window(make_engine, model, hf_model, rng):
    """Generation far beyond the pool: each sequence keeps 1 sink block + the 3 latest blocks,
    and every generated token is the argmax of a float64 reference with exactly that mask."""
    bs, sink, window = 8, 1, 3
    e = make_engine(num_blocks=6, block_size=bs, sink_blocks=sink, window_blocks=window,
                    max_model_len=64)            # prefix caching on (the default): nothing hashed after a drop
    p = prompt_of(rng, 5, 12)
    rid = e.add_request(p, SamplingParams(temperature=0, max_tokens=120, ignore_eos=True))
    tokens = []
    while e.has_unfinished():
        for s in e.scheduler.running:
            assert len(s.block_table) <= sink + window
        tokens += [t for o in e.step() for t in o.new_token_ids]
    e.block_manager.assert_all_free()
    assert len(tokens) == 120 and rid
    full = p + tokens
    T = len(full)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    ref_plain = reference_forward(model, p, causal[:len(p), :len(p)])
    with torch.no_grad():
        hf = hf_model(torch.tensor([p])).logits[0]
    assert torch.allclose(ref_plain, hf, atol=1e-6), "the test's reference disagrees with transformers"
    blk = torch.arange(T) // bs
    visible = causal & ((blk[None, :] < sink) | (blk[None, :] >= blk[:, None] - (window - 1)))
    visible[:len(p), :len(p)] = causal[:len(p), :len(p)]
    ref = reference_forward(model, full, visible)
    for i, t in enumerate(tokens):
        row = ref[len(p) - 1 + i]
        assert float(row[t]) >= float(row.max()) - 1e-3, f"token {i} is not the reference's argmax"


@pytest.mark.step(6)
@pytest.mark.points(2)
def test_an_exception_in_one_request_fails_only_that_request(make_engine, rng):
    e = make_engine(num_blocks=64)

    def broken(ids, logits):
        if len(ids) > 12:
            raise RuntimeError("boom")
        return logits
    good = [prompt_of(rng, 3, 8) for _ in range(2)]
    bad = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True, logits_processor=broken)
    ok = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)
    ref = make_engine(num_blocks=64).generate(good, ok)
    out = e.generate([good[0], prompt_of(rng, 3, 8), good[1]], [ok, bad, ok])
    assert out[1][0].finish_reason == "error"
    assert [out[0][0].token_ids, out[2][0].token_ids] == [r[0].token_ids for r in ref]
    assert e.metrics.requests_failed == 1
    e.block_manager.assert_all_free()


def abort_state(s) -> str:
    if s.status == SequenceStatus.WAITING:
        return "preempted" if s.num_preemptions else "waiting"
    return "mid-prefill" if s.num_computed_tokens < s.num_prompt_tokens else "running"


@pytest.mark.step(6)
@pytest.mark.points(3)
def test_abort_storm_in_every_state_leaves_no_block_allocated(make_engine, rng):
    """Requests aborted while waiting, running (decoding), mid-prefill and after preemption:
    each abort ends every sequence of its request at once (none left in a queue, blocks back),
    afterwards every block is free with reference count 0, and the engine still serves
    correctly.  Each abort picks a state not hit yet when one is on offer, so every seed
    reaches waiting and running ones."""
    e = make_engine(num_blocks=12, block_size=8, max_num_batched_tokens=24)
    for _ in range(16):
        e.add_request(prompt_of(rng, 5, 40), SamplingParams(temperature=1.0, max_tokens=int(rng.integers(5, 40)),
                                                            n=int(rng.integers(1, 3)), ignore_eos=True))
    states = set()
    for step in range(400):
        if not e.has_unfinished():
            break
        e.step()
        if rng.random() >= 0.3:
            continue
        live = {rid: seqs for rid, seqs in e.seqs_by_request.items() if not all(s.is_finished for s in seqs)}
        if not live:
            continue
        by_state = {}
        for rid, seqs in live.items():
            for s in seqs:
                if not s.is_finished:
                    by_state.setdefault(abort_state(s), []).append(rid)
        fresh = sorted(set(by_state) - states)
        pool = by_state[fresh[int(rng.integers(len(fresh)))]] if fresh else sorted(live)
        rid = pool[int(rng.integers(len(pool)))]
        family = list(e.seqs_by_request[rid])
        states |= {abort_state(s) for s in family if not s.is_finished}
        e.abort(rid)
        sched = e.scheduler
        for s in family:
            assert s.is_finished and s.block_table == [], f"aborted {s} still holds blocks or runs"
            assert s not in sched.running and s not in sched.waiting, f"aborted {s} is still queued"
        counts = [0] * e.block_manager.num_blocks
        for s in list(sched.running) + list(sched.waiting):
            for b in s.block_table:
                counts[b] += 1
        assert [b.ref_count for b in e.block_manager.blocks] == counts, "reference counts differ from the block tables"
        assert e.block_manager.num_free_blocks == counts.count(0)
    assert not e.has_unfinished()
    assert {"running", "waiting"} <= states, f"aborts only hit {states}"
    e.block_manager.assert_all_free()
    p = prompt_of(rng)
    ref = make_engine(num_blocks=64).generate([p], SamplingParams(temperature=0, max_tokens=8))
    got = e.generate([p], SamplingParams(temperature=0, max_tokens=8))
    assert ref[0][0].finish_reason != "error" and got[0][0].finish_reason != "error", \
        "the request failed inside the engine (its traceback is in the output)"
    assert got[0][0].token_ids == ref[0][0].token_ids
