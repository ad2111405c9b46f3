"""``mlsys-labs run 4``: every kernel once on built-in inputs, checked against its float64
reference; FlashAttention trained for a few steps; SmoothQuant's accuracy effect measured on a
layer with outlier channels (error against α plotted to ``reports/lab4/``).

On a CPU machine the Triton kernels run under the interpreter and the Numba kernels under
the CUDA simulator, so sizes are small; on a GPU the same code runs natively.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from mlsys_labs.common.device import has_cuda, torch_device, triton_interpreted
from mlsys_labs.common.paths import reports_dir
from mlsys_labs.common.plotting import figure, save

from .. import (W8A8Linear, add, add_reference, attention_reference, block_sum, flash_attention, int8_matmul,
                int8_matmul_reference, online_softmax, outlier_layer, quantization_error, rmsnorm, rmsnorm_reference,
                rope, rope_cache, rope_reference, softmax, softmax_reference, tiled_matmul)


def _max_err(a, b) -> float:
    return float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max())


def check_kernels(dev, gen) -> list[tuple[str, float]]:
    """(kernel, max |error| against float64) for each kernel at a small size."""
    r = lambda *s, dt=torch.float32: torch.randn(*s, generator=gen).to(dt).to(dev)  # noqa: E731
    rows = []
    x, y = r(5000), r(5000)
    rows.append(("vector add fp32 (5000)", _max_err(add(x, y), add_reference(x, y))))
    x = r(16, 300, dt=torch.float16)
    rows.append(("fused softmax fp16 (16x300)", _max_err(softmax(x), softmax_reference(x))))
    rows.append(("online softmax fp16, 64-col blocks (16x300)",
                 _max_err(online_softmax(x, block_size=64), softmax_reference(x))))
    x, w = r(16, 200), r(200)
    rows.append(("RMSNorm fp32 (16x200)", _max_err(rmsnorm(x, w), rmsnorm_reference(x, w))))
    q, k = r(1, 2, 24, 64), r(1, 2, 24, 64)
    cos, sin = rope_cache(24, 64, device=dev)
    oq, ok = rope(q, k, cos, sin)
    rows.append(("RoPE fp32 q,k (1x2x24x64)", max(_max_err(oq, rope_reference(q)), _max_err(ok, rope_reference(k)))))
    q, k, v = (r(1, 2, 48, 64, dt=torch.float16) for _ in range(3))
    rows.append(("FlashAttention fwd fp16 causal (1x2x48x64)",
                 _max_err(flash_attention(q, k, v, True), attention_reference(q, k, v, True)[0])))
    a = torch.randint(-128, 128, (40, 96), generator=gen, dtype=torch.int8).to(dev)
    b = torch.randint(-128, 128, (24, 96), generator=gen, dtype=torch.int8).to(dev)
    rows.append(("int8 GEMM int32 accumulator (40x96x24)", _max_err(int8_matmul(a, b), int8_matmul_reference(a, b))))
    an = torch.randn(20, 24, generator=gen).numpy().astype(np.float32)
    bn = torch.randn(24, 18, generator=gen).numpy().astype(np.float32)
    rows.append(("Numba CUDA tiled matmul fp32 (20x24x18)",
                 float(np.abs(tiled_matmul(an, bn) - an.astype(np.float64) @ bn).max())))
    xn = torch.rand(600, generator=gen).numpy().astype(np.float32)
    rows.append(("Numba CUDA block sum fp32 (600)", abs(block_sum(xn) - float(xn.astype(np.float64).sum()))))
    return rows


def train_attention(dev, gen, steps: int = 8) -> list[float]:
    """Fit a query projection through FlashAttention (the autograd.Function) to a target's outputs."""
    x = torch.randn(1, 2, 32, 32, generator=gen).to(dev)
    w_true = torch.randn(32, 32, generator=gen).to(dev) / 32 ** 0.5
    target = attention_reference(x @ w_true, x, x, causal=True)[0].float()
    w = torch.zeros(32, 32, device=dev, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    losses = []
    for _ in tqdm(range(steps), desc="train attention", leave=False):
        opt.zero_grad()
        loss = ((flash_attention(x @ w, x, x, True) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def smoothquant_sweep(dev, gen, alphas) -> tuple[float, list[float]]:
    """W8A8 output error without smoothing, and with SmoothQuant for each α."""
    x, w, bias = (t.to(dev) for t in outlier_layer(gen, tokens=64, in_features=128, out_features=64,
                                                   n_outliers=4, magnitude=50.0))
    plain = quantization_error(W8A8Linear(w, bias), x, w, bias)
    errs = [quantization_error(W8A8Linear(w, bias, alpha=a, calibration=x), x, w, bias)
            for a in tqdm(alphas, desc="SmoothQuant alpha sweep", leave=False)]
    return plain, errs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mlsys-labs run 4", description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dev = torch_device()
    gen = torch.Generator().manual_seed(args.seed)
    mode = "CUDA GPU" if has_cuda() else ("Triton interpreter + Numba CUDA simulator (CPU)" if triton_interpreted() else "CPU")
    print(f"Lab 4 — GPU kernels, running on: {mode}")

    print("\nKernels against float64 references (max |error|):")
    for name, err in check_kernels(dev, gen):
        print(f"  {name:<46} {err:.2e}")

    losses = train_attention(dev, gen)
    print(f"\nFlashAttention trains: loss {losses[0]:.4f} -> {losses[-1]:.4f} in {len(losses)} Adam steps")

    alphas = [round(a, 2) for a in np.linspace(0.0, 1.0, 11)]
    plain, errs = smoothquant_sweep(dev, gen, alphas)
    best = int(np.argmin(errs))
    print("\nSmoothQuant on a 64x128 -> 64 layer with 4 activation channels 50x the rest (W8A8, int8 kernel):")
    print(f"  relative output error without smoothing: {plain:.4f}")
    print(f"  with smoothing, alpha = 0.5:             {errs[alphas.index(0.5)]:.4f}")
    print(f"  best alpha {alphas[best]}:                      {errs[best]:.4f}")
    fig, ax = figure()
    ax.plot(alphas, errs, "o-", label="W8A8 with SmoothQuant")
    ax.axhline(plain, color="tab:red", linestyle="--", label="W8A8 without smoothing")
    ax.set_xlabel("migration strength α")
    ax.set_ylabel("relative output error ‖Y_int8 − Y‖ / ‖Y‖")
    ax.set_yscale("log")
    ax.set_title("SmoothQuant on a layer with outlier channels")
    ax.legend()
    path = save(fig, reports_dir("lab4") / "smoothquant_error.png")
    print(f"\nPlot: {path}")
    return 0
