"""The training text and its batches.

The text is the opening of Shakespeare's *Coriolanus* (Act I, 16 000 characters; public
domain), as it appears in the "tiny Shakespeare" file of Karpathy's char-rnn
(``data/tinyshakespeare/input.txt``).  It ships inside the package (``data/coriolanus.txt``).

Batches are a function of the step number only: step ``s`` draws one *global* batch of
``batch_size`` windows from a generator seeded by ``(seed, s)``; rank ``r`` of ``N`` takes
the contiguous slice ``r·B/N … (r+1)·B/N`` of it.  So the data-parallel run sees exactly the
single-process batch, and a run resumed at step ``s`` — at any world size — sees what an
uninterrupted run would have.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

TEXT_PATH = Path(__file__).with_name("data") / "coriolanus.txt"


def load_text() -> str:
    return TEXT_PATH.read_text(encoding="utf-8")


@dataclass
class CharText:
    """A text encoded as integer ids over its own character vocabulary."""

    text: str

    def __post_init__(self):
        self.chars = sorted(set(self.text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.ids = torch.tensor([self.stoi[c] for c in self.text], dtype=torch.long)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def split(self, train_fraction: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
        n = int(len(self.ids) * train_fraction)
        return self.ids[:n], self.ids[n:]


def global_batch(ids: torch.Tensor, step: int, batch_size: int, block_size: int, seed: int = 0):
    """(x, y) of shape (batch_size, block_size): windows and their next characters."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(ids) - block_size - 1, (batch_size,), generator=g)
    x = torch.stack([ids[s:s + block_size] for s in starts.tolist()])
    y = torch.stack([ids[s + 1:s + 1 + block_size] for s in starts.tolist()])
    return x, y


def rank_slice(batch: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous share of a global batch (the batch size must divide evenly)."""
    b = batch.shape[0]
    if b % world:
        raise ValueError(f"global batch {b} does not split over {world} ranks")
    per = b // world
    return batch[rank * per:(rank + 1) * per]
