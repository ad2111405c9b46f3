"""Headless matplotlib: every plot is a PNG file, no display needed."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def figure(width: float = 6.4, height: float = 4.2):
    """A new (fig, ax) pair."""
    return plt.subplots(figsize=(width, height))


def save(fig, path: str | Path) -> Path:
    """Save ``fig`` as a PNG (folders created), close it, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
