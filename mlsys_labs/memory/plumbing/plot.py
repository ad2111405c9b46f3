"""The memory mountain as a heat map and as CS:APP's 3-D surface (Fig. 6.41)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mlsys_labs.common import plotting

from ..mountain import Mountain, format_size


def heatmap(mountain: Mountain, path: str | Path, title: str = "Memory mountain: read throughput (GB/s)") -> Path:
    fig, ax = plotting.figure(7.5, 5.5)
    gbs = mountain.throughput / 1e9
    image = ax.imshow(gbs, aspect="auto", origin="lower", cmap="viridis")
    ax.set_xticks(range(len(mountain.strides)), [f"s{s}" for s in mountain.strides])
    ax.set_yticks(range(len(mountain.sizes)), [format_size(w) for w in mountain.sizes])
    ax.set_xlabel("stride (× 8 bytes)")
    ax.set_ylabel("working set")
    for (i, j), v in np.ndenumerate(gbs):
        ax.text(j, i, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="center", fontsize=5,
                color="white" if v < gbs.max() / 2 else "black")
    fig.colorbar(image, ax=ax, label="GB/s")
    ax.set_title(title)
    return plotting.save(fig, path)


def surface(mountain: Mountain, path: str | Path) -> Path:
    fig, _ = plotting.figure(7.5, 5.5)
    fig.clf()
    ax = fig.add_subplot(projection="3d")
    s, w = np.meshgrid(np.arange(len(mountain.strides)), np.arange(len(mountain.sizes)))
    ax.plot_surface(s, w, mountain.throughput / 1e9, cmap="viridis", edgecolor="k", linewidth=0.2)
    ax.set_xticks(range(0, len(mountain.strides), 3), [f"s{mountain.strides[i]}" for i in range(0, len(mountain.strides), 3)])
    ax.set_yticks(range(0, len(mountain.sizes), 2), [format_size(mountain.sizes[i]) for i in range(0, len(mountain.sizes), 2)])
    ax.set_zlabel("GB/s")
    ax.set_title("Memory mountain (CS:APP §6.6.1)")
    return plotting.save(fig, path)
