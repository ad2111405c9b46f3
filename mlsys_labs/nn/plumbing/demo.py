"""``mlsys-labs run 1``: train the MLP and the CNN on digits, plot their learning curves,
and measure this machine's memory mountain (CS:APP §6.6.1), all under reports/lab1/."""
from __future__ import annotations

import argparse
import time

from threadpoolctl import threadpool_limits

from mlsys_labs.common import plotting
from mlsys_labs.common.bench import machine_name
from mlsys_labs.common.cli_args import at_least
from mlsys_labs.common.paths import reports_dir

from ..train import LearningCurves, train_cnn, train_mlp


def plot_learning_curves(curves: dict[str, LearningCurves], path) -> None:
    fig, (loss_ax, acc_ax) = plotting.plt.subplots(1, 2, figsize=(10, 4))
    for name, h in curves.items():
        epochs = range(1, len(h.train_loss) + 1)
        loss_ax.plot(epochs, h.train_loss, marker=".", label=name)
        acc_ax.plot(epochs, [100 * a for a in h.test_accuracy], marker=".", label=name)
    loss_ax.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log", title="Training loss")
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(90, 100), title="Test accuracy on digits")
    acc_ax.axhline(97, color="C0", linestyle=":", linewidth=1)
    acc_ax.axhline(98, color="C1", linestyle=":", linewidth=1)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    plotting.save(fig, path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mlsys-labs run 1", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="model and shuffling seed (default 0)")
    parser.add_argument("--largest-mib", type=at_least(1), default=256, help="largest working set of the mountain (MiB)")
    parser.add_argument("--skip-mountain", action="store_true", help="train only")
    args = parser.parse_args(argv)
    out = reports_dir("lab1")
    print(f"Lab 1 on {machine_name()}; outputs in {out}")

    with threadpool_limits(1):   # small matrices: one BLAS thread is fastest and least noisy
        t0 = time.perf_counter()
        _, mlp_history, mlp_acc = train_mlp(seed=args.seed, progress="MLP 64-256-128-10")
        mlp_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, cnn_history, cnn_acc = train_cnn(seed=args.seed, progress="CNN conv32-conv64")
        cnn_s = time.perf_counter() - t0
    curves = out / "learning_curves.png"
    plot_learning_curves({"MLP": mlp_history, "CNN": cnn_history}, curves)
    print(f"MLP test accuracy {100 * mlp_acc:.2f}% (target ≥ 97%) in {mlp_s:.1f} s")
    print(f"CNN test accuracy {100 * cnn_acc:.2f}% (target ≥ 98%) in {cnn_s:.1f} s")
    print(f"learning curves: {curves}")

    if not args.skip_mountain:
        from mlsys_labs.memory import default_sizes, memory_mountain
        from mlsys_labs.memory.plumbing import plot as mountain_plot
        from mlsys_labs.memory.mountain import KiB, MiB

        mountain = memory_mountain(default_sizes(16 * KiB, args.largest_mib * MiB), progress=True)
        (out / "memory_mountain.md").write_text(f"Measured on {machine_name()}\n\n{mountain.table()}\n")
        heat = mountain_plot.heatmap(mountain, out / "memory_mountain_heatmap.png")
        surf = mountain_plot.surface(mountain, out / "memory_mountain_surface.png")
        top, bottom = mountain.at(mountain.sizes[0], 1), mountain.at(mountain.sizes[-1], 16)
        print(mountain.table())
        print(f"peak read throughput {mountain.peak / 1e9:.1f} GB/s; (16 KiB, s1) / "
              f"({args.largest_mib} MiB, s16) = {top / bottom:.1f}x (target ≥ 3x)")
        print(f"mountain: {heat}, {surf}, {out / 'memory_mountain.md'}")
    return 0
