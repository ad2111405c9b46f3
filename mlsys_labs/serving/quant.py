"""Int8 weight-only quantisation of the linear layers (W8A16-style, "weight-only int8").

Each output channel ``i`` of a weight ``W [out, in]`` gets its own scale
``s_i = max_j |W_ij| / 127`` and ``Q = round(W / s)`` in int8 — per-channel absmax
quantisation (LLM.int8(), Dettmers et al. 2022, §3.1 "vector-wise quantisation"; AWQ,
Lin et al. 2023, keeps weights int8/int4 and activations in floating point the same way).
Because the scale is per output channel, ``x Wᵀ = (x Qᵀ) · s``: the matmul runs on the
integer weights (cast to the activation dtype) and the scale is applied to the output.
The weights take a quarter of their fp32 memory; the rounding error per weight is at most ``s_i / 2``.
"""
from __future__ import annotations

import torch
from torch import nn

# (Q int8 [out, in], scale fp32 [out]) with W ≈ Q · scale[:, None]: lab 4's per-row quantiser, one for both labs
from mlsys_labs.kernels.quantization import quantize_per_channel


class Int8Linear(nn.Module):
    """A bias-free linear layer holding int8 weights and per-output-channel scales."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        q, scale = quantize_per_channel(linear.weight)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION [step 8] hint: (x @ Q^T) * scale
        return torch.nn.functional.linear(x, self.qweight.to(x.dtype)) * self.scale
        # END SOLUTION


def quantize_model_int8(model: nn.Module, include_lm_head: bool = False) -> nn.Module:
    """Replace every ``nn.Linear`` in the decoder layers (and optionally the LM head) in place."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and (include_lm_head or not full.endswith("lm_head")):
                setattr(module, child_name, Int8Linear(child))
    return model


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes held by the linear layers' weights (and scales)."""
    total = 0
    for m in model.modules():
        if isinstance(m, Int8Linear):
            total += m.qweight.numel() * m.qweight.element_size() + m.scale.numel() * m.scale.element_size()
        elif isinstance(m, nn.Linear):
            total += m.weight.numel() * m.weight.element_size()
    return total
