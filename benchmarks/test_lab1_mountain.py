"""Lab 1 benchmark: this machine's memory mountain on CS:APP's grid (16 KiB … 256 MiB ×
stride 1 … 16, best of 3 per cell), its table and heat map under reports/lab1/, and
the figures that summarise it:

- peak read throughput (the L1 ridge), GB/s;
- L1 / DRAM: (16 KiB, stride 1) over (256 MiB, stride 16) — target ≥ 3;
- DRAM stride-1 read throughput as a fraction of the machine's copy bandwidth ceiling
  (``common.ceilings``: numpy copy, read + write bytes counted).
"""
from __future__ import annotations

from mlsys_labs.common.bench import machine_name, record_figure
from mlsys_labs.common.ceilings import machine_ceilings
from mlsys_labs.common.paths import reports_dir
from mlsys_labs.memory import default_sizes, memory_mountain
from mlsys_labs.memory.plumbing import plot as mountain_plot
from mlsys_labs.memory.mountain import KiB, MiB

LAB = 1


def test_memory_mountain(benchmark):
    sizes = default_sizes(16 * KiB, 256 * MiB)
    mountain = benchmark.pedantic(lambda: memory_mountain(sizes, range(1, 17), repeats=3), rounds=1, iterations=1)
    out = reports_dir("lab1")
    (out / "memory_mountain.md").write_text(f"Measured on {machine_name()}\n\n{mountain.table()}\n")
    mountain_plot.heatmap(mountain, out / "memory_mountain_heatmap.png")
    mountain_plot.surface(mountain, out / "memory_mountain_surface.png")
    l1, dram_s16, dram_s1 = mountain.at(16 * KiB, 1), mountain.at(256 * MiB, 16), mountain.at(256 * MiB, 1)
    benchmark.extra_info.update({"peak_GBps": mountain.peak / 1e9, "l1_s1_GBps": l1 / 1e9,
                                 "dram_s1_GBps": dram_s1 / 1e9, "dram_s16_GBps": dram_s16 / 1e9})
    record_figure(LAB, "memory mountain: peak read throughput", value=mountain.peak / 1e9, unit="GB/s",
                  detail={"grid": "16 KiB-256 MiB x stride 1-16", "table": mountain.table()})
    record_figure(LAB, "memory mountain: (16 KiB, s1) / (256 MiB, s16) throughput", value=l1 / dram_s16, unit="x",
                  target=">= 3", detail={"l1_s1_GBps": l1 / 1e9, "dram_s16_GBps": dram_s16 / 1e9})
    ceiling = machine_ceilings()["bandwidth_bytes"]
    record_figure(LAB, "memory mountain: (256 MiB, s1) read / copy bandwidth ceiling", value=dram_s1 / ceiling,
                  unit="", peer="numpy copy bandwidth (common.ceilings)",
                  detail={"dram_s1_GBps": dram_s1 / 1e9, "copy_ceiling_GBps": ceiling / 1e9})
