"""Symmetric int8 quantisation and SmoothQuant's smoothing (Xiao et al. 2023, §4).

Per-row symmetric quantisation:  scale = max|row| / 127,  q = clamp(round(x / scale), -127, 127).
Rows of X are tokens (per-token, ZeroQuant §3.1); rows of W (N, K) are output channels
(per-channel).  Both are applied *outside* the K sum, which is why the int8 GEMM can
dequantise in its epilogue (:mod:`.int8_matmul`).

Activations of large transformers have a few *channels* (columns of X) with values
10–100× the rest (LLM.int8() §4).  Per-token scales cannot help: each token's scale is
set by its outlier channel and the other channels fall into a handful of levels.
SmoothQuant moves the difficulty into the weights with a per-channel factor s:

    Y = X Wᵀ = (X diag(s)⁻¹) (W diag(s))ᵀ,   s_j = max|X_j|^α / max|W_j|^(1-α)   (eq. 4)

mathematically exact, and with α ≈ 0.5 both factors quantise well.  In a real model
diag(s)⁻¹ is folded into the preceding LayerNorm; here it is applied to X explicitly.
"""
from __future__ import annotations

import torch

from .int8_matmul import w8a8_linear

QMAX = 127


def _quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 q, float32 scale per row) with scale = max|row| / 127.  The scale is floored at
    1e-8/127, so an all-zero row divides nothing by zero: it quantises to zeros and dequantises
    to zeros (lab 5's int8 weights use this function too)."""
    if t.dim() != 2 or not t.dtype.is_floating_point:
        raise ValueError(f"quantize: need a 2-D floating tensor, got {t.dtype} of shape {tuple(t.shape)}")
    t = t.detach()  # quantisation is not differentiated (a weight Parameter comes in with requires_grad)
    # BEGIN SOLUTION [step 8] hint: absmax per row in float32 (clamp away from 0), scale = absmax / 127, round-to-nearest then clamp to [-127, 127]
    t = t.float()
    scale = t.abs().amax(dim=1).clamp(min=1e-8) / QMAX
    q = torch.clamp(torch.round(t / scale[:, None]), -QMAX, QMAX).to(torch.int8)
    return q.contiguous(), scale.contiguous()
    # END SOLUTION


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations X (tokens, K) → (int8 Xq, float32 scale per token)."""
    return _quantize_rows(x)


def quantize_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights W (N, K) → (int8 Wq, float32 scale per output channel)."""
    return _quantize_rows(w)


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float32 q · scale (scale broadcast along rows)."""
    return q.float() * scale.float()[:, None]


def smoothing_factors(act_absmax: torch.Tensor, w: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """SmoothQuant eq. 4: s_j = max|X_j|^α / max_n |W_nj|^(1-α), one per input channel j (float32)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if act_absmax.shape != (w.shape[1],):
        raise ValueError(f"act_absmax must be ({w.shape[1]},), got {tuple(act_absmax.shape)}")
    # BEGIN SOLUTION [step 8] hint: per input channel j: act_absmax_j ** alpha / (max over rows of |W[:, j]|) ** (1 - alpha); clamp both away from 0
    a = act_absmax.float().clamp(min=1e-5)
    wmax = w.float().abs().amax(dim=0).clamp(min=1e-5)
    return (a.pow(alpha) / wmax.pow(1.0 - alpha)).clamp(min=1e-5)
    # END SOLUTION


def smooth(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(X diag(s)⁻¹, W diag(s)): the product X Wᵀ is unchanged."""
    # BEGIN SOLUTION [step 8] hint: divide the columns of X by s, multiply the columns of W by s
    return (x / s[None, :]).to(x.dtype), (w * s[None, :]).to(w.dtype)
    # END SOLUTION


class W8A8Linear:
    """A linear layer run as int8 × int8 → int32 with fused dequantisation.

    ``alpha=None`` quantises X and W as they are; a number applies SmoothQuant first, with the
    activation maxima taken from ``calibration`` (a batch of typical inputs).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                 alpha: float | None = None, calibration: torch.Tensor | None = None,
                 out_dtype: torch.dtype = torch.float32):
        if alpha is not None:
            if calibration is None:
                raise ValueError("W8A8Linear: SmoothQuant (alpha) needs calibration activations")
            self.smoothing = smoothing_factors(calibration.abs().amax(dim=0), weight, alpha)
            _, weight = smooth(calibration, weight.float(), self.smoothing)
        else:
            self.smoothing = None
        self.w_q, self.w_scale = quantize_per_channel(weight)
        self.bias = None if bias is None else bias.float().contiguous()
        self.out_dtype = out_dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.smoothing is not None:
            x = x.float() / self.smoothing[None, :]
        x_q, x_scale = quantize_per_token(x)
        return w8a8_linear(x_q, x_scale, self.w_q, self.w_scale, self.bias, out_dtype=self.out_dtype)


def outlier_layer(generator: torch.Generator, tokens: int = 64, in_features: int = 128, out_features: int = 64,
                  n_outliers: int = 4, magnitude: float = 50.0):
    """(X, W, bias) float32 for a linear layer whose activations have ``n_outliers`` channels
    ``magnitude``× larger than the rest — the pattern LLM.int8() §4 and SmoothQuant Fig. 4 report."""
    x = torch.randn(tokens, in_features, generator=generator)
    channels = torch.randperm(in_features, generator=generator)[:n_outliers]
    x[:, channels] *= magnitude
    w = torch.randn(out_features, in_features, generator=generator) / in_features ** 0.5
    bias = torch.randn(out_features, generator=generator) * 0.1
    return x, w, bias


def quantization_error(layer: W8A8Linear, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> float:
    """Relative Frobenius error ‖Y_int8 − Y‖ / ‖Y‖ against the float64 layer."""
    y = x.double() @ w.double().T
    if bias is not None:
        y = y + bias.double()
    y_q = layer(x).double().cpu()
    return float(torch.linalg.norm(y_q - y.cpu()) / torch.linalg.norm(y.cpu()))
