"""Scaled dot-product attention, composed from the differentiable primitives
(Vaswani et al. 2017 §3.2.1; D2L §11.3):

    Attention(Q, K, V) = softmax(Q Kᵀ / √d + M) V,

with M = −∞ above the diagonal for causal (autoregressive) attention.  No Function of
its own: its gradient comes from matmul, transpose, mul, add and softmax.
"""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .tensor import Tensor


def causal_mask(t_query: int, t_key: int, dtype=np.float64) -> np.ndarray:
    """(t_query, t_key) additive mask: 0 where query i may see key j, −∞ elsewhere.  Query i
    sees keys j ≤ i + (t_key − t_query): aligned at the end, so the last query sees every key
    (with t_query == t_key: j ≤ i)."""
    allowed = np.tril(np.ones((t_query, t_key), dtype=bool), k=t_key - t_query)
    return np.where(allowed, 0.0, -np.inf).astype(dtype)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False,
                                 mask: np.ndarray | None = None) -> Tensor:
    """q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) → (..., Tq, dv).  ``causal`` adds
    :func:`causal_mask` (Tq, Tk); ``mask``, an additive float mask broadcastable to
    (..., Tq, Tk), is added as well (both when both are given)."""
    # BEGIN SOLUTION [step 8] hint: scores = q @ kᵀ · (1/√d), add the mask, softmax over keys, times v
    scores = F.matmul(q, F.transpose(k, -2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        scores = scores + Tensor(causal_mask(q.shape[-2], k.shape[-2], dtype=scores.dtype))
    if mask is not None:
        scores = scores + Tensor(np.asarray(mask, dtype=scores.dtype))
    return F.matmul(F.softmax(scores, axis=-1), v)
    # END SOLUTION
