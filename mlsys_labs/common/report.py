"""``mlsys-labs report``: every machine's benchmark figures as Markdown and PNG.

Reads ``benchmarks/results/*.json`` (written by ``record_figure``) and writes, under
``reports/``, ``benchmarks.md`` (one table per machine and lab: value, target,
pass/short) and ``lab<N>-<machine>.png`` (each figure as a fraction of its target, so
every bar reads the same way: at or past the line means the target is met).
"""
from __future__ import annotations

from pathlib import Path

from .bench import figures_for, format_figures, load_results, machine_name, parse_target
from .paths import reports_dir, results_dir
from .plotting import figure, save


def _target_fraction(fig) -> float | None:
    """How far the value is towards its target: ≥ 1 means met (for both ≤ and ≥ targets)."""
    if not fig.target:
        return None
    op, t = parse_target(fig.target)
    if op in (">=", ">"):
        return fig.value / t if t else None
    return t / fig.value if fig.value else None


def write_report() -> list[Path]:
    files = sorted(p for p in results_dir().glob("*.json"))
    if not files:
        return []
    out = reports_dir()
    written: list[Path] = []
    md = ["# Benchmark figures", "", "Each figure is a ratio against a peer measured in the same run, or a fraction "
          "of a ceiling measured on the same machine.", ""]
    for path in files:
        data = load_results(path)
        name = machine_name(data["machine"])
        md += [f"## {name}", ""]
        for lab in sorted(data.get("labs", {}), key=int):
            figs = figures_for(int(lab), path)
            md += [f"### Lab {lab}", "", format_figures(figs), ""]
            scored = [(f.name, _target_fraction(f)) for f in figs if _target_fraction(f) is not None]
            if scored:
                fig, ax = figure(7.5, 0.45 * len(scored) + 1.5)
                labels = [s[0] for s in scored]
                values = [s[1] for s in scored]
                ax.barh(labels, values, color=["tab:green" if v >= 1 else "tab:red" for v in values])
                ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
                ax.set_xlabel("value as a fraction of its target (≥ 1: met)")
                ax.set_title(f"Lab {lab} on {name}", fontsize=9)
                ax.invert_yaxis()
                written.append(save(fig, out / f"lab{lab}-{path.stem}.png"))
    md_path = out / "benchmarks.md"
    md_path.write_text("\n".join(md) + "\n")
    return [md_path] + written
