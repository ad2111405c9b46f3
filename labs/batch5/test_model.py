"""Step 1, the model's pieces (RMSNorm, RoPE, SwiGLU) against float64 formulas on the default
model's weights; step 2, paged attention against dense attention and the whole model through
the paged cache against transformers' LlamaForCausalLM; step 6's greedy engine against
``generate``; step 7, the Triton decode kernel; step 8, int8 weight-only quantisation;
step 9, speculative decoding against plain greedy decoding."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mlsys_labs.common.tolerance import assert_close, poison_like
from mlsys_labs.serving import AttentionMetadata, gather_plan, paged_attention
from mlsys_labs.serving import AttentionBackend
from mlsys_labs.serving import SamplingParams

TIE_MARGIN = 1e-3   # top-2 logit gap below which greedy tokens may legitimately differ


def hf_logits(hf_model, ids):
    with torch.no_grad():
        return hf_model(torch.tensor([ids])).logits[0]


# ------------------------------------------------------------------ step 1: the model's pieces
@pytest.mark.step(1)
@pytest.mark.points(1)
def test_rmsnorm_matches_the_formula(model, rng):
    """x / sqrt(mean(x²) + eps) · weight on the first layer's norm: rows of very different
    scales, rows whose mean square is about eps (where eps must sit inside the root), a row
    with a large mean (mean square, not variance); and float16 rows whose squares overflow
    float16 (the sum of squares must be taken in fp32)."""
    norm = model.model.layers[0].input_layernorm
    D = model.config.hidden_size
    rows = rng.standard_normal((10, D)) * np.concatenate([rng.uniform(1e-2, 1e3, 6), [1, 1, 1, 1]])[:, None]
    rows[6:8] *= np.sqrt(norm.eps)                       # mean square ≈ eps
    rows[8] = rows[8] * 0.1 + 3.0                        # mean 3, small spread
    x = torch.from_numpy(rows).float()
    xd, w = x.double(), norm.weight.detach().double()
    ref = w * xd / torch.sqrt((xd * xd).mean(-1, keepdim=True) + norm.eps)
    with torch.no_grad():
        assert_close(norm(x), ref, dtype=torch.float32, scale=4, what="RMSNorm")
    x16 = torch.from_numpy(rng.standard_normal((3, D)) * 400).half()   # x² up to ~1e6 > float16's 65504
    xd = x16.double()
    ref16 = w * xd / torch.sqrt((xd * xd).mean(-1, keepdim=True) + norm.eps)
    with torch.no_grad():
        assert_close(norm(x16), ref16, dtype=torch.float16, scale=4, what="RMSNorm on float16 input")


@pytest.mark.step(1)
@pytest.mark.points(1)
def test_rope_cos_sin_match_the_formula(model, rng):
    """angle_i = pos · theta^(−2i/d), duplicated (rotate-half layout), at scattered positions up
    to the context length.  The angles are fp32 (as in transformers): error ≤ ~pos · 2⁻²³ rad."""
    from mlsys_labs.serving import rope_cos_sin

    cfg = model.config
    d, theta = cfg.head_dim, cfg.rope_theta
    pos = torch.from_numpy(rng.permutation(cfg.max_position_embeddings)[:40])
    cos, sin = rope_cos_sin(pos, d, theta, torch.float32)
    assert cos.shape == sin.shape == (40, d) and cos.dtype == torch.float32
    inv = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos.double()[:, None] * inv[None]
    ang = torch.cat([ang, ang], -1)
    atol = 4 * cfg.max_position_embeddings * 2.0 ** -23
    assert_close(cos, ang.cos(), atol=atol, rtol=0, what="RoPE cos")
    assert_close(sin, ang.sin(), atol=atol, rtol=0, what="RoPE sin")
    cos16, sin16 = rope_cos_sin(pos, d, theta, torch.float16)     # angles still fp32, then cast
    assert cos16.dtype == torch.float16
    assert_close(cos16, ang.cos(), dtype=torch.float16, what="RoPE cos (float16)")
    assert_close(sin16, ang.sin(), dtype=torch.float16, what="RoPE sin (float16)")


@pytest.mark.step(1)
@pytest.mark.points(1)
def test_apply_rope_rotates_half_the_head(rng):
    """x·cos + rotate_half(x)·sin with rotate_half(a, b) = (−b, a), over [T, heads, d]."""
    from mlsys_labs.serving import apply_rope

    T, H, d = 6, 3, 16
    x = torch.from_numpy(rng.standard_normal((T, H, d))).float()
    ang = torch.from_numpy(rng.uniform(-3, 3, (T, d // 2)))
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    xd = x.double()
    ref = xd * cos[:, None] + torch.cat([-xd[..., d // 2:], xd[..., :d // 2]], -1) * sin[:, None]
    assert_close(apply_rope(x, cos.float(), sin.float()), ref, dtype=torch.float32, scale=4, what="apply_rope")


@pytest.mark.step(1)
@pytest.mark.points(1)
def test_swiglu_mlp_matches_the_formula(model, rng):
    """down(silu(gate(x)) · up(x)) on the first layer's weights."""
    mlp = model.model.layers[0].mlp
    x = torch.from_numpy(rng.standard_normal((5, model.config.hidden_size))).float()
    g = x.double() @ mlp.gate_proj.weight.detach().double().T
    u = x.double() @ mlp.up_proj.weight.detach().double().T
    ref = (g * torch.sigmoid(g) * u) @ mlp.down_proj.weight.detach().double().T
    with torch.no_grad():
        assert_close(mlp(x), ref, dtype=torch.float32, scale=20, what="SwiGLU MLP")   # sums over 256 and 688 terms


# ------------------------------------------------------------------ step 2: the model through the paged cache
@pytest.mark.step(2)
@pytest.mark.points(3)
def test_teacher_forced_logits_match_transformers(model, hf_model, rng):
    """Every position's logits through the paged cache, prompt split into random chunks and
    written to scattered blocks, within fp32 tolerance of transformers in float64."""
    from mlsys_labs.serving import ModelRunner
    from mlsys_labs.serving import Sequence

    ids = [256] + rng.integers(0, 256, int(rng.integers(30, 70))).tolist()
    ref = hf_logits(hf_model, ids)
    runner = ModelRunner(model, num_blocks=16, block_size=8)
    for kv in runner.kv_caches:      # stale keys/values everywhere (a recycled cache): never to be attended to
        kv.copy_(torch.from_numpy(rng.standard_normal(kv.shape) * 10))
    seq = Sequence("tf", ids, SamplingParams())
    seq.block_table = rng.permutation(16)[: -(-len(ids) // 8)].tolist()    # scattered physical blocks
    chunks, got = [], []
    while seq.num_computed_tokens < len(ids):
        n = int(min(rng.integers(1, 20), len(ids) - seq.num_computed_tokens))
        got.append(runner.run_all_logits([seq], [n]))
        seq.num_computed_tokens += n
        chunks.append(n)
    got = torch.cat(got)
    assert_close(got, ref, dtype=torch.float32, scale=20, what=f"logits (chunks {chunks})")  # 4 layers of fp32 rounding


@pytest.mark.step(6)
@pytest.mark.points(3)
def test_greedy_tokens_match_transformers_generate(make_engine, hf_model, rng):
    """Batched greedy decoding equals transformers' ``generate`` token for token, up to the
    first step where transformers' own top-2 logits are near-tied (random weights are flat)."""
    prompts = [[256] + rng.integers(0, 256, int(rng.integers(3, 40))).tolist() for _ in range(4)]
    e = make_engine(num_blocks=64)
    ours = e.generate(prompts, SamplingParams(temperature=0, max_tokens=24, ignore_eos=True))
    compared = 0
    for p, out in zip(prompts, ours):
        ids = torch.tensor([p])
        g = hf_model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=258,
                              output_scores=True, return_dict_in_generate=True)
        ref = g.sequences[0, ids.shape[1]:].tolist()
        for step, score in enumerate(g.scores):
            top2 = torch.topk(score[0], 2).values
            if float(top2[0] - top2[1]) < TIE_MARGIN:
                break
            assert out[0].token_ids[step] == ref[step], f"token {step} differs: ours {out[0].token_ids[:step + 1]}, transformers {ref[:step + 1]}"
            compared += 1
    assert compared >= 24, "too few tokens compared"


def dense_reference(q, k_ctx, v_ctx, q_len):
    """float64 attention of the last q_len context positions (causal), GQA by repetition."""
    H, Hkv = q.shape[1], k_ctx.shape[1]
    k = k_ctx.double().repeat_interleave(H // Hkv, 1)
    v = v_ctx.double().repeat_interleave(H // Hkv, 1)
    L = k.shape[0]
    s = torch.einsum("qhd,khd->hqk", q.double(), k) * q.shape[-1] ** -0.5
    qpos = torch.arange(L - q_len, L)[:, None]
    s = s.masked_fill(torch.arange(L)[None, :] > qpos, float("-inf"))
    return torch.einsum("hqk,khd->qhd", s.softmax(-1), v)


def ragged_context_lengths(rng, B, bs):
    """Context lengths with every edge present: one partial block alone, an exact multiple of
    the block size, and lengths ending part-way into their third or fourth block."""
    fixed = [int(rng.integers(1, bs)), bs * int(rng.integers(2, 4))]
    return (fixed + [bs * int(rng.integers(2, 4)) + int(rng.integers(1, bs)) for _ in range(B - 2)])[:B]


def random_paged_batch(rng, B, H, Hkv, d, bs, nb, decode=False):
    """Random K/V in scattered blocks; slots nobody owns (and the tail of each partial last
    block) hold large stale values (100 ± 100): a read of them shows."""
    kv = torch.from_numpy(rng.standard_normal((2, nb * bs, Hkv, d)) * 100 + 100).float()
    perm = rng.permutation(nb).tolist()
    tables, q_lens, ctx = [], [], []
    for c in ragged_context_lengths(rng, B, bs):
        q_lens.append(1 if decode else int(rng.integers(1, c + 1)))
        ctx.append(c)
        tables.append([perm.pop() for _ in range(-(-c // bs))])
        sl = slots_of(tables[-1], c, bs)
        kv[:, sl] = torch.from_numpy(rng.standard_normal((2, c, Hkv, d))).float()
    q_lens[-1] = 1 if decode else ctx[-1]                 # a whole prompt at once
    return kv, tables, q_lens, ctx


def slots_of(table, c, bs):
    return torch.tensor([table[i // bs] * bs + i % bs for i in range(c)])


@pytest.mark.step(2)
@pytest.mark.points(3)
def test_paged_gather_attention_matches_dense(rng):
    B, H, Hkv, d, bs, nb = 4, 4, 2, 16, 8, 32
    kv, tables, q_lens, ctx = random_paged_batch(rng, B, H, Hkv, d, bs, nb)
    q = torch.from_numpy(rng.standard_normal((sum(q_lens), H, d))).float()
    qs = torch.tensor([0] + np.cumsum(q_lens).tolist())
    key_slots = torch.zeros(B, max(ctx), dtype=torch.long)
    for b in range(B):
        key_slots[b, :ctx[b]] = slots_of(tables[b], ctx[b], bs)
    seq_of_token, row_of_token, mask = gather_plan(qs, torch.tensor(ctx), max(q_lens), max(ctx))
    meta = AttentionMetadata(query_start=qs, context_lens=torch.tensor(ctx), slot_mapping=torch.zeros(0, dtype=torch.long),
                             key_slots=key_slots, block_size=bs, max_query_len=max(q_lens),
                             seq_of_token=seq_of_token, row_of_token=row_of_token, mask=mask)
    out = paged_attention(q, kv, meta, d ** -0.5)
    for b in range(B):
        sl = slots_of(tables[b], ctx[b], bs)
        ref = dense_reference(q[qs[b]:qs[b + 1]], kv[0][sl], kv[1][sl], q_lens[b])
        assert_close(out[qs[b]:qs[b + 1]], ref, dtype=torch.float32, scale=10, what=f"sequence {b}")


@pytest.mark.step(7)
@pytest.mark.points(3)
def test_triton_paged_decode_kernel_matches_dense(rng):
    """The Triton kernel (interpreted on a CPU): one query per sequence over scattered blocks
    of ragged lengths.  Slots outside every context are NaN (an uninitialised cache: the kernel
    must not read them); each sequence's largest score sits in its last block (the running max
    rises, so the running sum and output must be rescaled); two sequences have scores
    above 88, where exp overflows in fp32 without subtracting the running max."""
    from mlsys_labs.serving import triton_decode
    paged_decode_attention = triton_decode.paged_decode_attention

    B, H, Hkv, d, bs, nb = 4, 4, 2, 16, 8, 16
    G = H // Hkv
    kv, tables, _, ctx = random_paged_batch(rng, B, H, Hkv, d, bs, nb, decode=True)
    valid = torch.zeros(nb * bs, dtype=torch.bool)
    for b in range(B):
        valid[slots_of(tables[b], ctx[b], bs)] = True
    kv[:, ~valid] = float("nan")
    base = torch.from_numpy(rng.standard_normal((B, Hkv, d)))
    q = (base.repeat_interleave(G, 1) + 0.3 * torch.from_numpy(rng.standard_normal((B, H, d)))).float()
    for b in range(B):
        last = int(slots_of(tables[b], ctx[b], bs)[-1])
        kv[0, last] = (base[b] / base[b].norm(dim=-1, keepdim=True) * 6).float()   # the top score, last block
    q[1::2] *= 25                                        # sequences 1 and 3: top scores ~100-200
    width = max(len(t) for t in tables)
    bt = torch.tensor([t + [0] * (width - len(t)) for t in tables])
    from mlsys_labs.common.device import torch_device

    dev = torch_device()                       # the kernel runs natively on CUDA, interpreted on a CPU
    out = poison_like(q).to(dev)
    paged_decode_attention(q.to(dev), kv.to(dev), bt.to(dev), torch.tensor(ctx, device=dev), bs, d ** -0.5, out=out)
    out = out.cpu()
    for b in range(B):
        sl = slots_of(tables[b], ctx[b], bs)
        ref = dense_reference(q[b:b + 1], kv[0][sl], kv[1][sl], 1)[0]
        assert_close(out[b], ref, dtype=torch.float32, scale=10, what=f"decode, sequence {b} (context {ctx[b]})")


# ------------------------------------------------------------------ step 8: int8 weight-only
@pytest.mark.step(8)
@pytest.mark.points(2)
def test_int8_per_channel_quantisation_error_bound(rng):
    from mlsys_labs.serving import quant   # taken whole: it brings lab 4's kernels (Triton, numba)
    Int8Linear, quantize_per_channel = quant.Int8Linear, quant.quantize_per_channel

    w = torch.from_numpy(rng.standard_normal((48, 64)) * rng.uniform(0.1, 3, (48, 1))).float()
    w[int(rng.integers(48))] = 0.0                          # an all-zero output channel
    q, scale = quantize_per_channel(w)
    assert bool(torch.isfinite(scale).all()) and bool((scale > 0).all())
    assert q.dtype == torch.int8 and scale.shape == (48,)
    absmax = w.double().abs().amax(1) / 127                  # s_i = max_j |W_ij| / 127, per output channel
    nonzero = absmax > 0
    assert_close(scale[nonzero], absmax[nonzero], dtype=torch.float32, what="per-channel scales")
    assert int(q.abs().max()) <= 127
    err = (q.double() * scale.double()[:, None] - w.double()).abs()
    assert bool((err <= scale.double()[:, None] / 2 + 1e-6).all()), "rounding error above half a step"
    lin = torch.nn.Linear(64, 48, bias=False)
    lin.weight.data.copy_(w)
    x = torch.from_numpy(rng.standard_normal((5, 64))).float()
    ref = x.double() @ (q.double() * scale.double()[:, None]).T
    y = Int8Linear(lin)(x)
    assert_close(y, ref, dtype=torch.float32, scale=10, what="Int8Linear")
    bound = x.double().abs().sum(1, keepdim=True) * absmax[None, :] / 2 + 1e-4   # Σ_j |x_j| · s_i / 2
    assert bool(((y.double() - x.double() @ w.double().T).abs() <= bound).all()), "Int8Linear beyond the rounding bound"


@pytest.mark.step(8)
@pytest.mark.points(2)
def test_int8_model_quality_change_is_small(model, rng):
    """Weight-only int8 on every decoder linear: weights 4x smaller, next-token distributions
    close (mean KL below 0.02 nats) and greedy tokens mostly unchanged."""
    from mlsys_labs.serving import quant
    linear_weight_bytes, quantize_model_int8 = quant.linear_weight_bytes, quant.quantize_model_int8
    from mlsys_labs.serving import ModelRunner
    from mlsys_labs.serving import Sequence

    qmodel = quantize_model_int8(copy.deepcopy(model))
    assert linear_weight_bytes(qmodel) < 0.3 * linear_weight_bytes(model) + 4 * model.lm_head.weight.numel()
    ids = [256] + rng.integers(0, 256, 60).tolist()
    logits = []
    for m in (model, qmodel):
        r = ModelRunner(m, 8, 16)
        s = Sequence("q", ids, SamplingParams())
        s.block_table = list(range(4)) + [4]
        logits.append(r.run_all_logits([s], [len(ids)]).double())
    lp, lq = logits[0].log_softmax(-1), logits[1].log_softmax(-1)
    kl = (lp.exp() * (lp - lq)).sum(-1).mean()
    agree = (logits[0].argmax(-1) == logits[1].argmax(-1)).double().mean()
    assert float(kl) < 0.02, f"KL(fp32 || int8) = {float(kl):.4f}"
    assert float(agree) >= 0.8, f"greedy agreement {float(agree):.2f}"


# ------------------------------------------------------------------ step 9: speculative decoding
@pytest.mark.step(9)
@pytest.mark.points(1.5)
@pytest.mark.parametrize("draft_kind", ["early_exit_1_layer", "int8_copy"])
def test_speculative_decoding_equals_plain_greedy(model, rng, draft_kind):
    """Each draft on its own: output identical to plain greedy decoding, counts consistent;
    the int8 copy (nearly the target) must also be accepted more than half the time."""
    from mlsys_labs.serving import default_draft_path, load_pretrained
    from mlsys_labs.serving import quant
    quantize_model_int8 = quant.quantize_model_int8
    from mlsys_labs.serving import greedy_generate, speculative_generate

    prompt = [256] + rng.integers(0, 256, int(rng.integers(5, 30))).tolist()
    ref = greedy_generate(model, prompt, 30)
    if draft_kind == "int8_copy":
        draft = quantize_model_int8(copy.deepcopy(model))
    else:
        draft = load_pretrained(default_draft_path())
    k = int(rng.integers(2, 6))
    res = speculative_generate(model, draft, prompt, 30, k=k)
    assert res.token_ids == ref, f"{draft_kind} draft, k={k}: output differs from plain greedy decoding"
    assert 0 <= res.accepted <= res.proposed
    assert res.target_passes <= 31 - res.accepted, "each accepted draft token should save a target pass"
    if draft_kind == "int8_copy":
        assert speculative_generate(model, draft, prompt, 30, k=4).acceptance_rate > 0.5


@pytest.mark.step(7)
@pytest.mark.points(2)
def test_engine_with_the_triton_decode_kernel_gives_the_same_tokens(new_engine, rng):
    """The engine's decode steps through the Triton kernel (interpreted here: kept tiny)."""
    p = [256] + rng.integers(0, 256, int(rng.integers(17, 30))).tolist()     # spans two blocks
    sp = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)
    ref = new_engine(num_blocks=8).generate([p], sp)[0][0].token_ids
    got = new_engine(num_blocks=8, attention_backend=AttentionBackend.TRITON).generate([p], sp)
    assert got[0][0].token_ids == ref
