"""Plots of an OSU sweep (osu.py's report): latency and bus bandwidth against message
size, ours against the built-in, one panel per collective."""
from __future__ import annotations

from pathlib import Path

from mlsys_labs.common.plotting import figure, save


def plot_sweep(report: dict, outdir: Path, machine: str = "") -> list[Path]:
    """Write ``latency.png`` and ``busbw.png`` into ``outdir``; return their paths."""
    rows = report["rows"]
    collectives = list(dict.fromkeys(r["collective"] for r in rows))
    paths = []
    for metric, label, scale, name in (("t_avg", "time per call (µs)", 1e6, "latency"),
                                       ("busbw", "bus bandwidth (GB/s)", 1e-9, "busbw")):
        cols = 3
        nrows = (len(collectives) + cols - 1) // cols
        fig, axes = figure(width=5.0 * cols, height=3.6 * nrows)
        fig.clf()
        for i, collective in enumerate(collectives):
            ax = fig.add_subplot(nrows, cols, i + 1)
            mine = [r for r in rows if r["collective"] == collective]
            for variant in dict.fromkeys(r["variant"] for r in mine):
                pts = [(r["bytes"], r[metric] * scale) for r in mine if r["variant"] == variant]
                style = dict(color="black", linewidth=2.2) if variant == "builtin" else dict(linewidth=1.2)
                ax.plot(*zip(*pts), marker="o", markersize=3, label="MPI built-in" if variant == "builtin" else variant,
                        **style)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{collective} (p = {report['p']})")
            ax.set_xlabel("message size (bytes)")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        if machine:
            fig.suptitle(machine, fontsize=9)
        paths.append(save(fig, Path(outdir) / f"{name}.png"))
    return paths


def plot_model(report: dict, outdir: Path, collective: str = "allreduce") -> Path:
    """Measured (median) against predicted time for our algorithms of one collective."""
    fig, ax = figure()
    rows = [r for r in report["rows"] if r["collective"] == collective and "predicted" in r]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        line, = ax.plot([r["bytes"] for r in mine], [1e6 * r["t_med"] for r in mine], marker="o", markersize=3,
                        label=f"{variant} measured (median)")
        ax.plot([r["bytes"] for r in mine], [1e6 * r["predicted"] for r in mine], linestyle="--",
                color=line.get_color(), label=f"{variant} model")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    params = report.get("params") or {}
    ax.set_title(f"{collective}, p = {report['p']}: rendezvous α = {1e6 * params.get('alpha_rndv', 0):.1f} µs, "
                 f"β = {1e9 * params.get('beta_rndv', 0):.2f} ns/B; γ timed per size", fontsize=9)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("time per call (µs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, Path(outdir) / f"model_{collective}.png")


def plot_crossover(reports: list[dict], outdir: Path, collective: str = "allreduce") -> Path:
    """One panel per rank count: each algorithm's time / the built-in's against size —
    where the latency-bound algorithm stops winning and the bandwidth-bound ones start."""
    cols = len(reports)
    fig, _ = figure(width=4.6 * cols, height=3.8)
    fig.clf()
    for i, report in enumerate(reports):
        ax = fig.add_subplot(1, cols, i + 1)
        rows = [r for r in report["rows"] if r["collective"] == collective]
        builtin = {r["bytes"]: r["t_avg"] for r in rows if r["variant"] == "builtin"}
        for variant in dict.fromkeys(r["variant"] for r in rows if r["variant"] != "builtin"):
            mine = [r for r in rows if r["variant"] == variant]
            ax.plot([r["bytes"] for r in mine], [r["t_avg"] / builtin[r["bytes"]] for r in mine], marker="o",
                    markersize=3, label=variant)
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{collective}, p = {report['p']}")
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("time / MPI built-in")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, Path(outdir) / f"crossover_{collective}.png")
