"""The data: scikit-learn's bundled handwritten digits (1,797 8×8 images, 10 classes;
Alpaydin & Kaynak 1998, the UCI "optdigits" test set), offline, with a fixed seeded
stratified train/test split."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from mlsys_labs.common.datasets import load_digits_split  # noqa: F401  (the one digits loader, shared with lab 7)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int,
            rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mini-batches of (x, y), shuffled by ``rng`` when given."""
    order = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


def random_shift(x: np.ndarray, rng: np.random.Generator, max_shift: int = 1) -> np.ndarray:
    """Data augmentation: each 8×8 image (rows of 64) moved by up to ``max_shift`` pixels
    in each direction, zero-filled (D2L §14.1 "Image Augmentation")."""
    images = x.reshape(-1, 8, 8)
    pad = max_shift
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    dy = rng.integers(0, 2 * pad + 1, len(x))
    dx = rng.integers(0, 2 * pad + 1, len(x))
    rows = dy[:, None] + np.arange(8)[None, :]           # (n, 8)
    cols = dx[:, None] + np.arange(8)[None, :]
    out = padded[np.arange(len(x))[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.reshape(x.shape)
