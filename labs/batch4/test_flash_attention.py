"""FlashAttention-2: step 5, the forward (O and log-sum-exp) against float64 plain attention and
the launcher's checks; step 6, the backward against torch autograd of plain attention in float64.

The same tests run interpreted on the CPU and natively on a GPU (``--require-gpu``); the ``large``
cases are sized by device.  Only bf16 (the interpreter has no bf16 tl.dot) and the autotuned
launches (a GPU-only code path) are GPU-only."""
import math

import pytest
import torch

from mlsys_labs.common.device import has_cuda
from mlsys_labs.common.tolerance import assert_close, poison_like
from mlsys_labs.kernels import (attention_reference, flash_attention, flash_attention_backward,
                                flash_attention_forward)

GPU = pytest.mark.gpu
ON_GPU = has_cuda()
# Tolerance factors over the dtype policy, and why: the forward rounds P to the input dtype
# before P·V (as FlashAttention does) on top of rounding O; the backward also rounds dS and P
# before its three products and sums N terms in each.
FWD_SCALE = {torch.float32: 2.0, torch.float16: 2.0, torch.bfloat16: 2.0}
BWD_SCALE = {torch.float32: 5.0, torch.float16: 5.0, torch.bfloat16: 5.0}

# (batch, heads, tokens, head dim, dtype): tokens not a multiple of the block on purpose
CPU_CASES = [
    pytest.param(1, 2, 40, 32, torch.float32, id="fp32-d32-N40"),
    pytest.param(1, 2, 40, 64, torch.float16, id="fp16-d64-N40"),
    pytest.param(2, 1, 24, 128, torch.float16, id="fp16-d128-N24"),
]
GPU_CASES = [
    pytest.param(*((2, 3, 1000, 64) if ON_GPU else (1, 1, 17, 64)), torch.float16, id="fp16-d64-large"),
    pytest.param(*((1, 2, 257, 64) if ON_GPU else (1, 1, 33, 64)), torch.float32, id="fp32-d64-large"),
    # bf16 tl.dot: the interpreter computes it wrongly (the launcher refuses it), so GPU only
    pytest.param(2, 3, 1000, 128, torch.bfloat16, marks=GPU, id="gpu-bf16-d128-N1000"),
]


def nan_tailed(t, pad):
    """``t`` copied to the front of a larger allocation whose tail is NaN: a kernel that reads
    past the end (an edge block loaded without its mask) gets NaN, never memory it doesn't own."""
    buf = torch.full((t.numel() + pad,), float("nan"), dtype=t.dtype, device=t.device)
    buf[: t.numel()] = t.flatten()
    return buf[: t.numel()].view(t.shape)


def qkv(randn, b, h, n, d, dtype):
    return tuple(nan_tailed(randn(b, h, n, d, dtype=dtype), pad=128 * d) for _ in range(3))


@pytest.mark.step(5)
@pytest.mark.points(2)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("b,h,n,d,dtype", CPU_CASES + GPU_CASES)
def test_forward_output_and_logsumexp(randn, fenced, b, h, n, d, dtype, causal):
    q, k, v = qkv(randn, b, h, n, d, dtype)
    out = fenced(q.shape, dtype, pad=128 * d)     # a whole GPU block of rows past the end
    o, lse = flash_attention_forward(q, k, v, causal=causal, out=out.out)
    o_ref, lse_ref = attention_reference(q, k, v, causal=causal)
    assert o is out.out
    assert_close(o, o_ref, dtype=dtype, scale=FWD_SCALE[dtype], what="attention output O")
    # the LSE is kept in float32 whatever the inputs' dtype
    assert_close(lse, lse_ref, dtype=torch.float32, scale=10.0, what="log-sum-exp (float32, N-term sums)")
    out.check("attention output O")


@pytest.mark.step(5)
@pytest.mark.points(1)
def test_forward_large_logits(randn, fenced):
    """Scores of hundreds (exp overflows float32 beyond 88): every row but the first has large
    positive maxima, and query 0 is planted so that its only causal score is -300 — its
    softmax is 1 on that key, but exp(-300 - m) underflows unless m starts at -inf, not 0."""
    n, d = 40, 32
    q, k, v = qkv(randn, 1, 2, n, d, torch.float16)
    q, k = q * 6, k * 6
    k0 = k[:, :, 0].float()
    q[:, :, 0] = (-300 * math.sqrt(d) * k0 / (k0 * k0).sum(-1, keepdim=True)).half()
    out = fenced(q.shape, torch.float16, pad=128 * d)
    o, lse = flash_attention_forward(q, k, v, causal=True, out=out.out)
    o_ref, lse_ref = attention_reference(q, k, v, causal=True)
    assert_close(o, o_ref, dtype=torch.float16, scale=FWD_SCALE[torch.float16], what="O of large logits")
    # scores of ~1e3 carry float32 rounding of ~1e-4 into the LSE: 10x the float16 policy
    assert_close(lse, lse_ref, dtype=torch.float16, scale=10.0, what="LSE of large logits")
    out.check("O of large logits")


@pytest.mark.step(5)
@pytest.mark.points(1)
def test_forward_custom_scale(randn):
    q, k, v = qkv(randn, 1, 2, 33, 32, torch.float32)
    o, lse = flash_attention_forward(q, k, v, causal=True, sm_scale=0.3, out=poison_like(q))
    o_ref, lse_ref = attention_reference(q, k, v, causal=True, sm_scale=0.3)
    assert_close(o, o_ref, scale=2.0, what="O with sm_scale=0.3")
    assert_close(lse, lse_ref, scale=10.0, what="LSE with sm_scale=0.3")


def _reference_grads(q, k, v, do, causal, sm_scale=None):
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    o, _ = attention_reference(*leaves, causal=causal, sm_scale=sm_scale)
    o.backward(do.double())
    return [t.grad for t in leaves]


@pytest.mark.step(6)
@pytest.mark.points(3)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("b,h,n,d,dtype", CPU_CASES + GPU_CASES)
def test_backward_matches_autograd_of_plain_attention(randn, fenced, b, h, n, d, dtype, causal):
    q, k, v = qkv(randn, b, h, n, d, dtype)
    do = randn(b, h, n, d, dtype=dtype)
    ref = _reference_grads(q, k, v, do, causal)
    # 1) the kernels, writing into poisoned buffers fenced by canaries
    o, lse = flash_attention_forward(q, k, v, causal=causal)
    bufs = [fenced(q.shape, dtype, pad=128 * d) for _ in range(3)]
    flash_attention_backward(q, k, v, o, lse, do, causal=causal, dq=bufs[0].out, dk=bufs[1].out, dv=bufs[2].out)
    for name, got, want in zip(("dQ", "dK", "dV"), bufs, ref):
        assert_close(got.out, want, dtype=dtype, scale=BWD_SCALE[dtype], what=f"{name} (kernel)")
        got.check(f"{name} (kernel)")
    # 2) through torch.autograd: the Function wires the same kernels into a graph
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    flash_attention(*leaves, causal=causal).backward(do)
    for name, leaf, want in zip(("dQ", "dK", "dV"), leaves, ref):
        assert_close(leaf.grad, want, dtype=dtype, scale=BWD_SCALE[dtype], what=f"{name} (autograd)")


@pytest.mark.step(6)
@pytest.mark.points(1)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_backward_custom_scale(randn, causal):
    """sm_scale = 0.3 (not 1/√d) must reach the backward too: P's recomputation, dQ and dK."""
    q, k, v = qkv(randn, 1, 2, 33, 32, torch.float32)
    do = randn(1, 2, 33, 32)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    flash_attention(*leaves, causal=causal, sm_scale=0.3).backward(do)
    for name, leaf, want in zip(("dQ", "dK", "dV"), leaves, _reference_grads(q, k, v, do, causal, sm_scale=0.3)):
        assert_close(leaf.grad, want, scale=BWD_SCALE[torch.float32], what=f"{name} with sm_scale=0.3")


@pytest.mark.step(6)
@pytest.mark.points(1)
def test_trains_inside_a_graph(randn):
    """Gradients flow through projections around the attention (the Function composes)."""
    x = randn(1, 1, 24, 32)
    wq = (randn(32, 32) / math.sqrt(32)).requires_grad_()
    loss = (flash_attention(x @ wq, x, x, causal=True) ** 2).sum()
    loss.backward()
    wq_ref = wq.detach().double().requires_grad_()
    o_ref, _ = attention_reference(x.double() @ wq_ref, x.double(), x.double(), causal=True)
    (o_ref ** 2).sum().backward()
    assert_close(wq.grad, wq_ref.grad, scale=10.0, what="dL/dWq through flash attention")


@pytest.mark.step(6)
@pytest.mark.points(2)
@pytest.mark.hidden
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_backward_single_token_and_odd_length(randn, causal):
    for n in (1, 17):
        q, k, v = qkv(randn, 1, 1, n, 32, torch.float32)
        do = randn(1, 1, n, 32)
        ref = _reference_grads(q, k, v, do, causal)
        o, lse = flash_attention_forward(q, k, v, causal=causal)
        got = flash_attention_backward(q, k, v, o, lse, do, causal=causal,
                                       dq=poison_like(q), dk=poison_like(q), dv=poison_like(q))
        for name, g, want in zip(("dQ", "dK", "dV"), got, ref):
            assert_close(g, want, scale=BWD_SCALE[torch.float32], what=f"{name} N={n}")


def strided_qkv(randn, b, h, n, d):
    """Three layouts a caller hands over without copying: q a (B, N, H, d) projection output seen
    as (B, H, N, d), k with the feature axis strided, v the first N tokens of a longer cache."""
    q = randn(b, n, h, d).transpose(1, 2)
    k = randn(b, h, d, n).transpose(2, 3)
    v = randn(b, h, n + 9, d)[:, :, :n]
    assert not any(t.is_contiguous() for t in (q, k, v)) and len({q.stride(), k.stride(), v.stride()}) == 3
    return q, k, v


@pytest.mark.step(5)
@pytest.mark.points(1)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_forward_reads_strided_inputs(randn, causal):
    """The kernels address every tensor through its own strides: no .contiguous() copy is needed."""
    q, k, v = strided_qkv(randn, 2, 2, 40, 32)
    o, lse = flash_attention_forward(q, k, v, causal=causal)
    o_ref, lse_ref = attention_reference(q, k, v, causal=causal)
    assert_close(o, o_ref, scale=FWD_SCALE[torch.float32], what="O of strided q, k, v")
    assert_close(lse, lse_ref, scale=10.0, what="LSE of strided q, k, v")


@pytest.mark.step(6)
@pytest.mark.points(1)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_backward_reads_strided_inputs(randn, causal):
    """dQ, dK, dV of strided q, k, v and a strided dO (written with their inputs' strides), and
    through autograd, where the views come from leaves of other shapes."""
    b, h, n, d = 2, 2, 40, 32
    q, k, v = strided_qkv(randn, b, h, n, d)
    do = randn(b, n, h, d).transpose(1, 2)
    ref = _reference_grads(q, k, v, do, causal)
    o, lse = flash_attention_forward(q, k, v, causal=causal)
    got = flash_attention_backward(q, k, v, o, lse, do, causal=causal)
    for name, g, want in zip(("dQ", "dK", "dV"), got, ref):
        assert_close(g, want, scale=BWD_SCALE[torch.float32], what=f"{name} of strided inputs")
    q_leaf, k_leaf = (t.detach().clone().requires_grad_() for t in (q.transpose(1, 2), k.transpose(2, 3)))
    v_leaf = torch.cat([v, torch.zeros_like(v[:, :, :9])], 2).requires_grad_()
    flash_attention(q_leaf.transpose(1, 2), k_leaf.transpose(2, 3), v_leaf[:, :, :n], causal=causal).backward(do)
    for name, g, want in zip(("dQ", "dK", "dV"), (q_leaf.grad.transpose(1, 2), k_leaf.grad.transpose(2, 3),
                                                  v_leaf.grad[:, :, :n]), ref):
        assert_close(g, want, scale=BWD_SCALE[torch.float32], what=f"{name} of strided inputs (autograd)")
    assert not v_leaf.grad[:, :, n:].any(), "dV of the tokens past the view must stay 0"


@pytest.mark.step(5)
@pytest.mark.points(1)
def test_checks_inputs_before_launch(randn, interpreted):
    q, k, v = qkv(randn, 1, 1, 16, 32, torch.float32)
    o, _ = flash_attention_forward(q, k, v)
    assert_close(o, attention_reference(q, k, v)[0], scale=2.0, what="O")
    with pytest.raises(ValueError, match="head dim 48"):
        flash_attention_forward(*qkv(randn, 1, 1, 16, 48, torch.float32))
    with pytest.raises(ValueError, match="shape"):
        flash_attention_forward(q, randn(1, 1, 17, 32), v)
    with pytest.raises(TypeError, match="dtype"):
        flash_attention_forward(q, k.half(), v)
    with pytest.raises(TypeError, match="dtype"):
        flash_attention_forward(q.double(), k.double(), v.double())
    with pytest.raises(ValueError, match="contiguous"):  # inputs may be strided views; the output it writes may not
        flash_attention_forward(q, k, v, out=torch.empty_like(q).transpose(2, 3).contiguous().transpose(2, 3))
    with pytest.raises(ValueError, match="dimensions"):
        flash_attention_forward(q[0], k[0], v[0])
    if interpreted:
        with pytest.raises(TypeError, match="interpreter"):
            flash_attention_forward(q.bfloat16(), k.bfloat16(), v.bfloat16())


@pytest.mark.step(5)
@pytest.mark.points(1)
@GPU
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_autotuned_long_sequence_forward_gpu(randn, causal):
    """From AUTOTUNE_MIN_N tokens on the forward launcher autotunes: every config must be right, and the chosen one is checked."""
    q, k, v = qkv(randn, 1, 2, 2048, 128, torch.bfloat16)
    o, lse = flash_attention_forward(q, k, v, causal=causal, out=poison_like(q))
    o_ref, lse_ref = attention_reference(q, k, v, causal=causal)
    assert_close(o, o_ref, scale=FWD_SCALE[torch.bfloat16], what="O, N=2048")
    assert_close(lse, lse_ref, dtype=torch.float32, scale=10.0, what="LSE, N=2048")


@pytest.mark.step(6)
@pytest.mark.points(1)
@GPU
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_autotuned_long_sequence_backward_gpu(randn, causal):
    """The backward launchers autotune from AUTOTUNE_MIN_N tokens on too."""
    q, k, v = qkv(randn, 1, 2, 2048, 128, torch.bfloat16)
    do = randn(1, 2, 2048, 128, dtype=torch.bfloat16)
    o, lse = flash_attention_forward(q, k, v, causal=causal)
    got = flash_attention_backward(q, k, v, o, lse, do, causal=causal,
                                   dq=poison_like(q), dk=poison_like(q), dv=poison_like(q))
    for name, g, want in zip(("dQ", "dK", "dV"), got, _reference_grads(q, k, v, do, causal)):
        assert_close(g, want, scale=BWD_SCALE[torch.bfloat16], what=f"{name}, N=2048")
