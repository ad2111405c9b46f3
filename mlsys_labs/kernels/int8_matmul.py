"""W8A8 int8 matrix multiply with the dequantisation fused into the epilogue
(LLM.int8() §3 vector-wise quantisation; SmoothQuant §4 "W8A8"; ZeroQuant §3 token-wise activations).

With per-token activation scales s_x (one per row of X) and per-channel weight scales s_w
(one per output channel, i.e. per row of W, stored (N, K) like ``nn.Linear.weight``):

    Y[m, n] = s_x[m] · s_w[n] · Σ_k Xq[m, k] · Wq[n, k]  (+ bias[n])

The sum is exact in int32 (|Xq·Wq| ≤ 127² and K < 2^31 / 127² ≈ 133 000); the scales
factor out of the sum because they depend only on m and on n, so they are applied once
per output element, after the K loop, in the same kernel — the int32 tile never touches
memory.  Each program computes one BLOCK_M×BLOCK_N tile of Y, walking K in BLOCK_K steps;
programs are visited in GROUP_M-row groups so the tiles of W they share stay in L2
(Triton tutorial 03).  W is read K-contiguous ("B pre-transposed"), the layout int8
tensor-core MMAs want.

Cost, M×K by K×N:  ops = 2·M·N·K (int8 multiply-adds) + 3·M·N (epilogue);
fewest bytes = M·K + N·K (int8) + 4·(M + N) (scales) + M·N·b_out.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mlsys_labs.common.device import triton_interpreted

from ._checks import FLOAT_DTYPES, check_out, check_tensor

# Interpreter: small fixed blocks.  GPU: a fixed configuration below AUTOTUNE_MIN_DIM (tests; each
# autotuned config costs a compile), autotuning over CONFIGS from there on (the benchmarks' sizes).
INTERPRETER_BLOCKS = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, GROUP_M=4)
GPU_BLOCKS = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=4)
AUTOTUNE_MIN_DIM = 2048
CONFIGS = [triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8), num_warps=w, num_stages=s)
           for bm, bn, bk, w, s in [(128, 256, 128, 8, 3), (256, 128, 128, 8, 3), (128, 128, 128, 8, 4),
                                    (128, 128, 64, 4, 4)]]


@triton.jit
def int8_matmul_kernel(A, B, C, A_SCALE, B_SCALE, BIAS, M, N, K,
                       stride_am, stride_ak, stride_bn, stride_bk, stride_cm, stride_cn,
                       DEQUANT: tl.constexpr, HAS_BIAS: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       GROUP_M: tl.constexpr):
    """C tile = A[m-block, :] @ B[n-block, :]ᵀ in int32; with DEQUANT, × a_scale[m] × b_scale[n] (+ bias[n])."""
    # BEGIN SOLUTION [step 7] hint: grouped tile order; acc = tl.zeros(..., tl.int32); acc = tl.dot(a, b, acc, out_dtype=tl.int32) over K blocks (masked); epilogue scales in float32
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (pid % num_pid_in_group) % group_size_m
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = A + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = B + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn   # a [BLOCK_K, BLOCK_N] tile of Wᵀ
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (k0 + offs_k[None, :] < K), other=0)
        b = tl.load(b_ptrs, mask=(k0 + offs_k[:, None] < K) & (offs_n[None, :] < N), other=0)
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c_ptrs = C + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    c_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if DEQUANT:
        a_scale = tl.load(A_SCALE + offs_m, mask=offs_m < M, other=0.0)
        b_scale = tl.load(B_SCALE + offs_n, mask=offs_n < N, other=0.0)
        c = acc.to(tl.float32) * a_scale[:, None] * b_scale[None, :]
        if HAS_BIAS:
            c += tl.load(BIAS + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
        tl.store(c_ptrs, c.to(C.dtype.element_ty), mask=c_mask)
    else:
        tl.store(c_ptrs, acc, mask=c_mask)
    # END SOLUTION


_TUNED = triton.autotune(CONFIGS, key=["M", "N", "K", "DEQUANT"])(int8_matmul_kernel)


def _check_operands(a, w):
    for name, t in (("a", a), ("w", w)):
        check_tensor(name, t, dtypes=(torch.int8,), ndim=2, contiguous=False)
        if t.stride(1) != 1:
            raise ValueError(f"int8 matmul: {name} must be contiguous along K (stride(1) == 1), got strides "
                             f"{t.stride()}; rows may be strided")
    if a.shape[1] != w.shape[1]:
        raise ValueError(f"int8 matmul: a is {tuple(a.shape)} (M, K) but w is {tuple(w.shape)}; "
                         "w must be (N, K) like nn.Linear.weight")
    if a.device != w.device:
        raise ValueError(f"int8 matmul: a on {a.device}, w on {w.device}")
    if a.shape[1] >= 2**31 // 127**2:
        raise ValueError(f"int8 matmul: K = {a.shape[1]} could overflow the int32 accumulator")


def _launch(a, w, c, a_scale, w_scale, bias, dequant):
    M, K = a.shape
    N = w.shape[0]
    dummy = c  # unused pointer arguments when DEQUANT/HAS_BIAS are off
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
    if triton_interpreted():
        kernel, meta = int8_matmul_kernel, INTERPRETER_BLOCKS
    elif min(M, N, K) >= AUTOTUNE_MIN_DIM:
        kernel, meta = _TUNED, {}
    else:
        kernel, meta = int8_matmul_kernel, GPU_BLOCKS
    kernel[grid](a, w, c, a_scale if a_scale is not None else dummy, w_scale if w_scale is not None else dummy,
                  bias if bias is not None else dummy, M, N, K,
                  a.stride(0), a.stride(1), w.stride(0), w.stride(1), c.stride(0), c.stride(1),
                  DEQUANT=dequant, HAS_BIAS=bias is not None, **meta)
    return c


def int8_matmul(a: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """int32 A @ Wᵀ for int8 A (M, K) and int8 W (N, K): the exact accumulator, before dequantisation."""
    _check_operands(a, w)
    shape = (a.shape[0], w.shape[0])
    if out is None:
        out = torch.empty(shape, device=a.device, dtype=torch.int32)
    check_out("out", out, shape, torch.int32, a)
    return _launch(a, w, out, None, None, None, dequant=False)


def w8a8_linear(x_q: torch.Tensor, x_scale: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor,
                bias: torch.Tensor | None = None, *, out_dtype: torch.dtype = torch.float16,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """Y = (s_x ⊗ s_w) ∘ (Xq @ Wqᵀ) + bias, int32 accumulation and dequantisation in one kernel.

    x_scale: (M,) float32 per-token scales; w_scale: (N,) float32 per-output-channel scales.
    """
    _check_operands(x_q, w_q)
    M, N = x_q.shape[0], w_q.shape[0]
    check_tensor("x_scale", x_scale, dtypes=(torch.float32,), ndim=1)
    check_tensor("w_scale", w_scale, dtypes=(torch.float32,), ndim=1)
    if x_scale.shape[0] != M or w_scale.shape[0] != N:
        raise ValueError(f"w8a8_linear: need x_scale ({M},) and w_scale ({N},), got "
                         f"{tuple(x_scale.shape)} and {tuple(w_scale.shape)}")
    if bias is not None:
        check_tensor("bias", bias, dtypes=FLOAT_DTYPES, ndim=1)
        if bias.shape[0] != N:
            raise ValueError(f"w8a8_linear: bias has shape {tuple(bias.shape)}, expected ({N},)")
    if out_dtype not in FLOAT_DTYPES:
        raise TypeError(f"w8a8_linear: out_dtype {out_dtype} unsupported; use one of {FLOAT_DTYPES}")
    if out is None:
        out = torch.empty((M, N), device=x_q.device, dtype=out_dtype)
    check_out("out", out, (M, N), out_dtype, x_q)
    return _launch(x_q, w_q, out, x_scale, w_scale, bias, dequant=True)


def int8_matmul_reference(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Exact integer A @ Wᵀ (int64 on the CPU)."""
    return a.cpu().long() @ w.cpu().long().T


def w8a8_linear_reference(x_q, x_scale, w_q, w_scale, bias=None) -> torch.Tensor:
    """float64 (s_x ⊗ s_w) ∘ (Xq @ Wqᵀ) + bias."""
    y = int8_matmul_reference(x_q, w_q).double() * x_scale.cpu().double()[:, None] * w_scale.cpu().double()[None, :]
    return y if bias is None else y + bias.cpu().double()[None, :]
