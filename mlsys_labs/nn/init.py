"""Weight initialization that keeps activation variance constant through depth.

- Xavier/Glorot (Glorot & Bengio 2010): Var(w) = 2 / (fan_in + fan_out) — for tanh-like units.
- Kaiming/He (He et al. 2015 §2.2): Var(w) = gain² / fan_in with gain √2 for ReLU.

(D2L §5.4 "Numerical Stability and Initialization".)  A uniform U(−b, b) has variance
b²/3, so b = √3 · std.
"""
from __future__ import annotations

import math

import numpy as np


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: Linear (out, in); Conv (O, C, kh, kw) → (C·kh·kw, O·kh·kw)."""
    if len(shape) < 2:
        raise ValueError("fan_in/fan_out need a weight with at least 2 dimensions")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def kaiming_normal(shape, rng: np.random.Generator, gain: float = math.sqrt(2.0),
                   dtype=np.float64, fan_in: int | None = None) -> np.ndarray:
    # BEGIN SOLUTION [step 7] hint: std = gain / √fan_in
    fan_in = fan_in or fans(shape)[0]
    return (rng.standard_normal(shape) * (gain / math.sqrt(fan_in))).astype(dtype)
    # END SOLUTION


def kaiming_uniform(shape, rng: np.random.Generator, gain: float = math.sqrt(2.0),
                    dtype=np.float64, fan_in: int | None = None) -> np.ndarray:
    # BEGIN SOLUTION [step 7] hint: bound = gain · √(3 / fan_in)
    fan_in = fan_in or fans(shape)[0]
    bound = gain * math.sqrt(3.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
    # END SOLUTION


def xavier_normal(shape, rng: np.random.Generator, gain: float = 1.0, dtype=np.float64) -> np.ndarray:
    # BEGIN SOLUTION [step 7] hint: std = gain · √(2 / (fan_in + fan_out))
    fan_in, fan_out = fans(shape)
    return (rng.standard_normal(shape) * (gain * math.sqrt(2.0 / (fan_in + fan_out)))).astype(dtype)
    # END SOLUTION


def xavier_uniform(shape, rng: np.random.Generator, gain: float = 1.0, dtype=np.float64) -> np.ndarray:
    # BEGIN SOLUTION [step 7] hint: bound = gain · √(6 / (fan_in + fan_out))
    fan_in, fan_out = fans(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
    # END SOLUTION
