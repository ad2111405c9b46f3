"""Layers and the Transformer block against the equivalent torch modules with copied
weights, in float64: outputs and the gradients of the input and of every parameter.

The modules (``nn/modules.py``) are given; they are built from your operations and
initializers: LayerNorm, Embedding and BatchNorm are step 6's tests, Linear and Conv2d
step 7's (they need ``nn/init.py``), the attention modules step 8's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.nn import (BatchNorm, Conv2d, Embedding, LayerNorm, Linear, MultiHeadAttention, Tensor,
                           TransformerBlock)



@pytest.fixture(autouse=True)
def _float64_torch_modules():
    """torch modules built in these tests hold float64 parameters."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _copy_linear(ours: Linear, theirs: torch.nn.Linear):
    with torch.no_grad():
        theirs.weight.copy_(_t(ours.weight.data.T))   # ours (in, out), torch (out, in)
        theirs.bias.copy_(_t(ours.bias.data))


def _check_grads(pairs, what):
    for name, ours, theirs in pairs:
        assert ours.grad is not None, f"{what}: {name} got no gradient"
        assert_close(ours.grad, theirs, dtype="float64", scale=1000, what=f"{what}: grad of {name}")


def _randomize(module, rng):
    """Random parameters (LayerNorm's ones and zeros would hide mistakes)."""
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5 + (1.0 if p.ndim == 1 else 0.0)


@pytest.mark.points(1)
@pytest.mark.step(7)
def test_linear_matches_torch(rng):
    n_in, n_out = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    ours, theirs = Linear(n_in, n_out, rng=rng), torch.nn.Linear(n_in, n_out)
    _randomize(ours, rng)
    _copy_linear(ours, theirs)
    x = rng.standard_normal((3, 4, n_in))
    xo, xt = Tensor(x, requires_grad=True), _t(x).requires_grad_()
    out, ref = ours(xo), theirs(xt)
    assert_close(out.data, ref, dtype="float64", scale=10, what="Linear output")
    g = rng.standard_normal(out.shape)
    out.backward(g)
    ref.backward(_t(g))
    _check_grads([("x", xo, xt.grad), ("weight", ours.weight, theirs.weight.grad.T),
                  ("bias", ours.bias, theirs.bias.grad)], "Linear")


@pytest.mark.points(1)
@pytest.mark.step(7)
def test_conv2d_module_matches_torch(rng):
    c, o, k = int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 4))
    stride, padding = int(rng.integers(1, 3)), int(rng.integers(0, 2))
    ours = Conv2d(c, o, k, stride=stride, padding=padding, rng=rng)
    _randomize(ours, rng)
    theirs = torch.nn.Conv2d(c, o, k, stride=stride, padding=padding)
    with torch.no_grad():
        theirs.weight.copy_(_t(ours.weight.data))
        theirs.bias.copy_(_t(ours.bias.data))
    x = rng.standard_normal((2, c, 7, 6))
    xo, xt = Tensor(x, requires_grad=True), _t(x).requires_grad_()
    out, ref = ours(xo), theirs(xt)
    assert_close(out.data, ref, dtype="float64", scale=100, what="Conv2d output")
    g = rng.standard_normal(out.shape)
    out.backward(g)
    ref.backward(_t(g))
    _check_grads([("x", xo, xt.grad), ("weight", ours.weight, theirs.weight.grad),
                  ("bias", ours.bias, theirs.bias.grad)], "Conv2d")


@pytest.mark.points(1)
@pytest.mark.step(6)
def test_layernorm_and_embedding_modules_match_torch(rng):
    v, d = int(rng.integers(3, 9)), int(rng.integers(2, 9))
    emb, ln = Embedding(v, d, rng=rng), LayerNorm(d)
    _randomize(ln, rng)
    t_emb, t_ln = torch.nn.Embedding(v, d), torch.nn.LayerNorm(d)
    with torch.no_grad():
        t_emb.weight.copy_(_t(emb.weight.data))
        t_ln.weight.copy_(_t(ln.weight.data))
        t_ln.bias.copy_(_t(ln.bias.data))
    ids = rng.integers(0, v, (3, 5))
    out, ref = ln(emb(ids)), t_ln(t_emb(torch.as_tensor(ids)))
    assert_close(out.data, ref, dtype="float64", scale=1000, what="LayerNorm(Embedding(ids))")
    g = rng.standard_normal(out.shape)
    out.backward(g)
    ref.backward(_t(g))
    _check_grads([("embedding", emb.weight, t_emb.weight.grad), ("ln weight", ln.weight, t_ln.weight.grad),
                  ("ln bias", ln.bias, t_ln.bias.grad)], "LayerNorm/Embedding")


@pytest.mark.points(1)
@pytest.mark.hidden
@pytest.mark.step(6)
def test_batchnorm_module_running_statistics_match_torch(rng):
    c = int(rng.integers(1, 5))
    ours, theirs = BatchNorm(c, momentum=0.1), torch.nn.BatchNorm2d(c, momentum=0.1)
    for _ in range(3):
        x = rng.standard_normal((4, c, 3, 3)) * 2 + 1
        xo, xt = Tensor(x, requires_grad=True), _t(x).requires_grad_()
        out, ref = ours(xo), theirs(xt)
        assert_close(out.data, ref, dtype="float64", scale=1000, what="BatchNorm training output")
    assert_close(ours.running_mean, theirs.running_mean, dtype="float64", scale=100, what="running mean")
    assert_close(ours.running_var, theirs.running_var, dtype="float64", scale=100, what="running variance")
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, c, 3, 3))
    assert_close(ours(Tensor(x)).data, theirs(_t(x)), dtype="float64", scale=100, what="BatchNorm eval output")


def _causal(t):
    return torch.nn.Transformer.generate_square_subsequent_mask(t, dtype=torch.float64)


def _copy_attention(ours: MultiHeadAttention, theirs: torch.nn.MultiheadAttention):
    with torch.no_grad():
        theirs.in_proj_weight.copy_(_t(np.concatenate([ours.q.weight.data.T, ours.k.weight.data.T,
                                                       ours.v.weight.data.T])))
        theirs.in_proj_bias.copy_(_t(np.concatenate([ours.q.bias.data, ours.k.bias.data, ours.v.bias.data])))
        theirs.out_proj.weight.copy_(_t(ours.out.weight.data.T))
        theirs.out_proj.bias.copy_(_t(ours.out.bias.data))


def _attention_grads(ours: MultiHeadAttention, theirs: torch.nn.MultiheadAttention):
    d = ours.q.weight.shape[0]
    w, b = theirs.in_proj_weight.grad, theirs.in_proj_bias.grad
    return [("q weight", ours.q.weight, w[:d].T), ("k weight", ours.k.weight, w[d:2 * d].T),
            ("v weight", ours.v.weight, w[2 * d:].T), ("q bias", ours.q.bias, b[:d]),
            ("k bias", ours.k.bias, b[d:2 * d]), ("v bias", ours.v.bias, b[2 * d:]),
            ("out weight", ours.out.weight, theirs.out_proj.weight.grad.T),
            ("out bias", ours.out.bias, theirs.out_proj.bias.grad)]


@pytest.mark.points(2)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.step(8)
def test_multi_head_attention_matches_torch(rng, causal):
    heads = int(rng.choice([1, 2, 4]))
    d, t, b = heads * int(rng.integers(1, 4)), int(rng.integers(2, 7)), int(rng.integers(1, 3))
    ours = MultiHeadAttention(d, heads, causal=causal, rng=rng)
    _randomize(ours, rng)
    theirs = torch.nn.MultiheadAttention(d, heads, batch_first=True)
    _copy_attention(ours, theirs)
    x = rng.standard_normal((b, t, d))
    xo, xt = Tensor(x, requires_grad=True), _t(x).requires_grad_()
    out = ours(xo)
    ref, _ = theirs(xt, xt, xt, attn_mask=_causal(t) if causal else None, need_weights=False)
    assert_close(out.data, ref, dtype="float64", scale=1000, what="multi-head attention output")
    g = rng.standard_normal(out.shape)
    out.backward(g)
    ref.backward(_t(g))
    _check_grads([("x", xo, xt.grad)] + _attention_grads(ours, theirs), "multi-head attention")


@pytest.mark.points(4)
@pytest.mark.step(8)
def test_transformer_block_matches_torch_encoder_layer(rng):
    """Pre-norm block == torch.nn.TransformerEncoderLayer(norm_first=True, gelu, no dropout)
    with a causal mask, weights copied: output and every gradient."""
    heads = int(rng.choice([1, 2, 4]))
    d, t, b = heads * int(rng.integers(2, 5)), int(rng.integers(2, 8)), int(rng.integers(1, 3))
    ours = TransformerBlock(d, heads, causal=True, seed=int(rng.integers(2**31)))
    _randomize(ours, rng)
    theirs = torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=0.0, activation="gelu",
                                              batch_first=True, norm_first=True)
    _copy_attention(ours.attn, theirs.self_attn)
    _copy_linear(ours.fc1, theirs.linear1)
    _copy_linear(ours.fc2, theirs.linear2)
    with torch.no_grad():
        for mine, torch_ln in [(ours.ln1, theirs.norm1), (ours.ln2, theirs.norm2)]:
            torch_ln.weight.copy_(_t(mine.weight.data))
            torch_ln.bias.copy_(_t(mine.bias.data))
    x = rng.standard_normal((b, t, d))
    xo, xt = Tensor(x, requires_grad=True), _t(x).requires_grad_()
    out = ours(xo)
    ref = theirs(xt, src_mask=_causal(t), is_causal=True)
    assert_close(out.data, ref, dtype="float64", scale=1000, what="Transformer block output")
    g = rng.standard_normal(out.shape)
    out.backward(g)
    ref.backward(_t(g))
    pairs = [("x", xo, xt.grad)] + _attention_grads(ours.attn, theirs.self_attn)
    pairs += [("fc1 weight", ours.fc1.weight, theirs.linear1.weight.grad.T),
              ("fc1 bias", ours.fc1.bias, theirs.linear1.bias.grad),
              ("fc2 weight", ours.fc2.weight, theirs.linear2.weight.grad.T),
              ("fc2 bias", ours.fc2.bias, theirs.linear2.bias.grad),
              ("ln1 weight", ours.ln1.weight, theirs.norm1.weight.grad), ("ln1 bias", ours.ln1.bias, theirs.norm1.bias.grad),
              ("ln2 weight", ours.ln2.weight, theirs.norm2.weight.grad), ("ln2 bias", ours.ln2.bias, theirs.norm2.bias.grad)]
    _check_grads(pairs, "Transformer block")
