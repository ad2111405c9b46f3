"""Fused RMSNorm against torch's own rms_norm in float64; fused RoPE against Hugging Face
transformers' apply_rotary_pos_emb in float64, and RoPE's defining property.

The same tests run interpreted on the CPU and natively on a GPU; the ``large`` cases are sized by device."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.common.device import has_cuda
from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.kernels import rmsnorm, rope, rope_cache

ON_GPU = has_cuda()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]   # no tl.dot here: bf16 runs interpreted too
RMS_LARGE = (4096, 8192) if ON_GPU else (3, 3000)
ROPE_LARGE = (4, 32, 2048, 128) if ON_GPU else (1, 2, 37, 128)

pytestmark = pytest.mark.step(4)


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,cols", [(9, 70), (4, 256), RMS_LARGE], ids=["9x70", "4x256", "large"])
def test_rmsnorm_matches_torch(randn, fenced, dtype, rows, cols):
    x, w = randn(rows, cols, dtype=dtype, scale=2.0), randn(cols, dtype=dtype)
    out = fenced((rows, cols), dtype)
    rmsnorm(x, w, eps=1e-5, out=out.out)
    ref = torch.nn.functional.rms_norm(x.double(), (cols,), w.double(), eps=1e-5)
    # statistics in float32, one rounding of y (and w's) to the dtype
    assert_close(out.out, ref, dtype=dtype, scale=2.0, what=f"rmsnorm {rows}x{cols}")
    out.check(f"rmsnorm {rows}x{cols}")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_rmsnorm_rows_near_eps_and_huge_rows(randn, fenced, dtype):
    """Where eps matters and where float16 statistics overflow: rows whose mean square is 0,
    eps/100, eps and 100·eps (y differs by 10x if eps is dropped or added outside the square
    root), a row of |x| ~ 1000 (x² overflows float16: the statistics must be float32), an ordinary row."""
    eps = 1e-4
    x = randn(6, 70, scale=1.0)
    x = x / x.pow(2).mean(-1, keepdim=True).sqrt()                     # every row: mean square 1
    ms = torch.tensor([0.0, eps / 100, eps, 100 * eps, 1e6, 1.0], device=x.device)
    x = (x * ms.sqrt()[:, None]).to(dtype)
    w = randn(70, dtype=dtype)
    out = fenced(x.shape, dtype)
    rmsnorm(x, w, eps=eps, out=out.out)
    ref = torch.nn.functional.rms_norm(x.double(), (70,), w.double(), eps=eps)
    assert_close(out.out, ref, dtype=dtype, scale=2.0, what="rmsnorm of rows with mean square 0, eps/100, eps, "
                 "100 eps, 1e6, 1")
    out.check("rmsnorm near eps")


@pytest.mark.points(1)
def test_rmsnorm_checks_inputs(randn):
    x, w = randn(5, 48), randn(48)
    assert_close(rmsnorm(x, w), torch.nn.functional.rms_norm(x.double(), (48,), w.double(), eps=1e-6),
                 scale=2.0, what="rmsnorm")
    with pytest.raises(ValueError, match="weight"):
        rmsnorm(x, randn(47))
    with pytest.raises(ValueError, match="contiguous"):
        rmsnorm(randn(48, 5).T, w)
    with pytest.raises(TypeError, match="dtype"):
        rmsnorm(x.half(), w.to(torch.int32))


def hf_rope(x, positions, base=10000.0):
    """transformers' rotate-half RoPE in float64, with cos/sin built from RoFormer's θ_i = base^(-2i/d)."""
    # imported here, not at the top: transformers takes seconds to import and only RoPE needs it
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = positions.double().cpu()[:, None] * inv_freq[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos()[None].to(x.device), emb.sin()[None].to(x.device)
    rotated, _ = apply_rotary_pos_emb(x.double(), x.double(), cos, sin)
    return rotated


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,h,n,d", [(2, 3, 20, 32), (1, 2, 7, 64), ROPE_LARGE], ids=["2x3x20x32", "1x2x7x64", "large"])
def test_rope_matches_transformers(randn, gen, device, fenced, dtype, b, h, n, d):
    """Token counts not a multiple of the launcher's 16-token block; positions drawn, not 0..N-1."""
    q, k = randn(b, h, n, d, dtype=dtype), randn(b, h, n, d, dtype=dtype)
    cos, sin = rope_cache(max(64, 2 * n), d, device=device)
    positions = torch.randint(0, max(64, 2 * n), (n,), generator=gen, dtype=torch.int32).to(device)
    out_q, out_k = fenced(q.shape, dtype), fenced(k.shape, dtype)
    rope(q, k, cos, sin, positions, out_q=out_q.out, out_k=out_k.out)
    # float32 table, float32 rotation, one rounding to the dtype
    assert_close(out_q.out, hf_rope(q, positions), dtype=dtype, scale=2.0, what="rotated q")
    assert_close(out_k.out, hf_rope(k, positions), dtype=dtype, scale=2.0, what="rotated k")
    out_q.check("rotated q")
    out_k.check("rotated k")


@pytest.mark.points(1)
@settings(max_examples=6, deadline=None)
@given(m=st.integers(0, 40), n=st.integers(0, 40), shift=st.integers(0, 20), seed=st.integers(0, 2**31 - 1))
def test_rope_scores_depend_only_on_relative_position(device, m, n, shift, seed):
    """Property (RoFormer eq. 16): <R(m)q, R(n)k> = <R(m+t)q, R(n+t)k>, and rotations keep norms."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 1, 2, 32, generator=g).to(device)
    k = torch.randn(1, 1, 2, 32, generator=g).to(device)
    cos, sin = rope_cache(64, 32, device=device)
    q2 = q[:, :, :1].expand(1, 1, 2, 32).contiguous()
    k2 = k[:, :, :1].expand(1, 1, 2, 32).contiguous()
    pos_q = torch.tensor([m, m + shift], dtype=torch.int32, device=device)
    pos_k = torch.tensor([n, n + shift], dtype=torch.int32, device=device)
    rq, _ = rope(q2, q2, cos, sin, pos_q)
    rk, _ = rope(k2, k2, cos, sin, pos_k)
    scores = (rq[0, 0].double() * rk[0, 0].double()).sum(-1)
    assert_close(scores[1], scores[0], dtype=torch.float32, scale=10.0, what="score after shifting both positions")
    assert_close(rq[0, 0].double().norm(dim=-1), q2[0, 0].double().norm(dim=-1), dtype=torch.float32, scale=10.0,
                 what="norm of the rotated vector")


@pytest.mark.points(1)
@pytest.mark.hidden
def test_rope_default_positions_and_checks(randn, device):
    q, k = randn(1, 2, 9, 16), randn(1, 2, 9, 16)
    cos, sin = rope_cache(9, 16, device=device)
    out_q, out_k = rope(q, k, cos, sin)
    pos = torch.arange(9, device=device)
    assert_close(out_q, hf_rope(q, pos), scale=2.0, what="q with default positions")
    assert_close(out_k, hf_rope(k, pos), scale=2.0, what="k with default positions")
    with pytest.raises(ValueError, match="positions"):
        rope(q, k, cos, sin, torch.arange(9, device=device, dtype=torch.int32) + 1)
    with pytest.raises(ValueError, match="head dim"):
        rope(randn(1, 1, 4, 24), randn(1, 1, 4, 24), *rope_cache(4, 24, device=device))
