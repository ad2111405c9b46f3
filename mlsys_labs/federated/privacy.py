"""Client-side differential privacy: clip the update, add Gaussian noise.

The Gaussian mechanism on a model update (Abadi et al. 2016; McMahan et al. 2018
"Learning Differentially Private Recurrent Language Models", DP-FedAvg; Flower's
``LocalDpMod`` does the same on the client):

    Δ = w_local − w_t,     Δ̄ = Δ · min(1, C / ‖Δ‖₂),     Δ̃ = Δ̄ + N(0, (z·C)² I)

Clipping bounds each client's influence (the L2 sensitivity is C); the noise multiplier
z sets the privacy level: an (ε, δ) guarantee per release follows from z and δ, and over
rounds from a privacy accountant (not computed here).  The norm is taken over *all*
arrays together, as one flat vector.
"""
from __future__ import annotations

import numpy as np

Weights = dict[str, np.ndarray]


def global_norm(update: Weights) -> float:
    """‖Δ‖₂ over every array of the update, as one vector."""
    return float(np.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in update.values())))


def clip_update(update: Weights, clip_norm: float) -> Weights:
    """Δ · min(1, C/‖Δ‖₂): unchanged inside the ball of radius C, scaled onto it outside.

    ``update`` maps array names to numpy arrays; ‖Δ‖₂ is :func:`global_norm` (all arrays as
    one vector).  Returns a new dict, the same names and shapes, float64 arrays."""
    # BEGIN SOLUTION [step 6] hint: scale = min(1, clip_norm / global_norm(update)), 1 for a zero norm; return {name: float64 array * scale}
    norm = global_norm(update)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: np.asarray(a, dtype=np.float64) * scale for k, a in update.items()}
    # END SOLUTION


def add_gaussian_noise(update: Weights, clip_norm: float, noise_multiplier: float,
                       rng: np.random.Generator) -> Weights:
    """Δ + N(0, (z·C)²) elementwise, noise drawn from ``rng``.

    ``update`` maps array names to numpy arrays; returns a new dict, the same names and
    shapes, float64 arrays, with independent noise of std ``noise_multiplier * clip_norm``
    on every element."""
    # BEGIN SOLUTION [step 6] hint: std = noise_multiplier * clip_norm; return {name: float64 array + rng.normal(0.0, std, size=array.shape)}
    std = noise_multiplier * clip_norm
    return {k: np.asarray(a, dtype=np.float64) + rng.normal(0.0, std, size=np.shape(a))
            for k, a in update.items()}
    # END SOLUTION


def privatize(local: Weights, global_weights: Weights, clip_norm: float, noise_multiplier: float,
              rng: np.random.Generator) -> Weights:
    """The weights a client sends: w_t + clipped-and-noised (w_local − w_t)."""
    update = {k: local[k] - global_weights[k] for k in local}
    noisy = add_gaussian_noise(clip_update(update, clip_norm), clip_norm, noise_multiplier, rng)
    return {k: global_weights[k] + noisy[k] for k in local}
