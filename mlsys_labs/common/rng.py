"""Seeded randomness: fresh inputs every run, any failure reproducible from its seed.

The pytest plugin draws one session seed (printed in the header; fix it with
``--seed N`` or ``MLSYS_SEED``) and gives each test a seed derived from it and the
test's name, so tests are independent of their order.
"""
from __future__ import annotations

import hashlib
import random
import sys

import numpy as np


def derive_seed(base: int, *names: object) -> int:
    """A 32-bit seed from a base seed and any labels (stable across runs and machines)."""
    h = hashlib.sha256(repr((base,) + names).encode()).digest()
    return int.from_bytes(h[:4], "little")


def make_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's legacy and (if already imported) PyTorch's global generators.

    PyTorch is not imported here: a test that uses it has imported it already, and the
    others should not pay its start-up time."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
