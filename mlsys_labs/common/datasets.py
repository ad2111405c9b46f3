"""The digits data set both lab 1 and lab 7 train on, split one way.

scikit-learn's bundled handwritten digits (1,797 8×8 images, 10 classes; Alpaydin & Kaynak
1998, the UCI "optdigits" test set), read offline from the CSV scikit-learn ships — without
importing scikit-learn, which costs seconds in every process that loads the data (each
ClientApp a Flower SuperNode starts) — and split into a stratified train/test pair that is a
pure function of the seed: the same split on every machine and in every process.  Two splitters,
because each lab's seeded targets were set on its own: lab 1 keeps scikit-learn's
``train_test_split``, lab 7 a numpy per-class split that needs no scikit-learn import.
"""
from __future__ import annotations

import functools

import numpy as np

NUM_CLASSES = 10


@functools.lru_cache(maxsize=1)
def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """(x, y): 1797 × 64 pixel values 0–16 (float64) and labels 0–9 — the same data as
    ``sklearn.datasets.load_digits``.  Cached: callers get new arrays from it, never these."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-learn (which bundles the digits data set) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(np.int64)


def split_per_class(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices, both sorted: each class shuffled by ``default_rng(seed)`` and its first
    round(test_fraction · n_c) held out.  numpy only (lab 7: every ClientApp process loads it)."""
    rng = np.random.default_rng(seed)
    test = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.append(idx[: int(round(test_fraction * len(idx)))])
    test_idx = np.sort(np.concatenate(test))
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def split_sklearn(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices in the shuffled order of scikit-learn's
    ``train_test_split(stratify=y, random_state=seed)`` (lab 1: its seeded accuracy targets were set on it)."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=y)
    return train, test


def load_digits_split(seed: int = 0, test_fraction: float = 0.2, *, standardize: bool = False,
                      dtype=np.float64, split=split_sklearn):
    """(x_train, y_train, x_test, y_test): 64 features per image in ``dtype``, int64 labels;
    ``split(y, test_fraction, seed)`` picks the stratified held-out set (the same on every machine).

    Features are pixels / 16, in [0, 1] (lab 1).  With ``standardize`` they are then centred and
    scaled per pixel by the training split's mean and std (+ 0.1, so that the always-blank border
    pixels are not blown up) — lab 7, where in a real federation these would be public constants
    agreed beforehand (like ImageNet's normalisation), not statistics gathered from the clients."""
    x, y = _bundled_digits()
    x = (x / 16.0).astype(dtype)
    train, test = split(y, test_fraction, seed)
    if standardize:
        mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 0.1
        x = ((x - mean) / std).astype(dtype)
    return x[train], y[train], x[test], y[test]
