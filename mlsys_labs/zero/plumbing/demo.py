"""``mlsys-labs run 6``: train the small GPT on *Coriolanus* at 2 ranks with DDP and each ZeRO
stage (one torchrun launch), plot the learning curves (they coincide: the stages change where
the bytes live, not the arithmetic), and print memory and bytes sent against the ZeRO formulas.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...common.cli_args import at_least
from ...common.paths import reports_dir
from .launch import torchrun


def _worker(argv: list[str]) -> int:
    """Inside torchrun: one process group, train.py once per stage."""
    from datetime import timedelta

    import torch.distributed as dist

    from .. import train

    out, steps, stages = Path(argv[0]), argv[1], argv[2].split(",")
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    try:
        for stage in stages:
            log = out / f"stage{stage}.jsonl"
            if dist.get_rank() == 0 and log.exists():
                log.unlink()
            dist.barrier()
            train.main(["--stage", stage, "--steps", steps, "--loss-log", str(log)])
    finally:
        dist.destroy_process_group()
    return 0


def _plot_curves(out: Path, rows: list[dict], nproc: int) -> Path:
    from ...common.plotting import figure, save

    fig, ax = figure()
    for row in rows:
        stage, records = row["stage"], row["records"]
        ax.plot([r["step"] for r in records], [r["loss"] for r in records],
                label=f"stage {stage}" + (" (DDP)" if stage == 0 else ""), lw=2.5 - 0.4 * stage)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/char)")
    ax.set_title(f"char-level GPT on Coriolanus, {nproc} ranks (gloo)")
    ax.legend()
    return save(fig, out / "learning_curve.png")


def _plot_memory(out: Path, rows: list[dict], psi: int, nproc: int) -> Path:
    from ...common.plotting import figure, save
    from ..memory import model_state_formula

    fig, ax = figure()
    labels = [f"stage {row['stage']}" for row in rows]
    bottom = [0.0] * len(rows)
    for cat in ("parameters", "gradients", "optimizer"):
        vals = [row["last"]["inventory"][cat] / 2**20 for row in rows]
        ax.bar(labels, vals, bottom=bottom, label=cat)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.plot(labels, [model_state_formula(row["stage"], psi, row["last"]["world"]) / 2**20 for row in rows],
            "k_", markersize=40, label="ZeRO formula")
    ax.set_ylabel("MiB per rank (live-tensor inventory)")
    ax.set_title(f"model states per rank, Ψ = {psi:,}, N = {nproc}, fp32 Adam")
    ax.legend()
    return save(fig, out / "memory_per_rank.png")


def _print_table(rows: list[dict], psi: int, nproc: int) -> None:
    from ..memory import comm_bytes_formula, model_state_bytes, model_state_formula

    print(f"\nΨ = {psi} parameters, N = {nproc} ranks, fp32 Adam")
    print("| stage | final loss | model states per rank (measured) | formula | bytes sent per step | formula |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        s, last = row["stage"], row["last"]
        world = last["world"]
        print(f"| {s} | {last['loss']:.3f} | {model_state_bytes(last['inventory']):,} B | "
              f"{model_state_formula(s, psi, world):,.0f} B | "
              f"{last['bytes_sent']:,} B | {comm_bytes_formula(s, psi, world, 4):,.0f} B |")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--worker":
        return _worker(argv[1:])
    p = argparse.ArgumentParser(prog="mlsys-labs run 6")
    p.add_argument("--steps", type=at_least(1), default=120)
    p.add_argument("--nproc", type=at_least(1), default=2)
    p.add_argument("--stages", default="0,1,2,3")
    args = p.parse_args(argv)
    out = reports_dir("lab6")
    target = ["-m", "mlsys_labs.zero.plumbing.demo", "--worker", str(out), str(args.steps), args.stages]
    print(f"lab 6: torchrun --nproc_per_node {args.nproc} {' '.join(target)}", flush=True)
    code = torchrun(args.nproc, target, timeout=900, capture=False).returncode
    if code != 0:
        print(f"lab 6 demo: torchrun exited with {code}")
        return code
    rows = []
    for stage in args.stages.split(","):
        records = [json.loads(line) for line in (out / f"stage{stage}.jsonl").read_text().splitlines()]
        rows.append({"stage": int(stage), "records": records, "last": records[-1]})
    psi = rows[-1]["last"]["psi"]
    path = _plot_curves(out, rows, args.nproc)
    mem_path = _plot_memory(out, rows, psi, args.nproc)
    _print_table(rows, psi, args.nproc)
    print(f"\nlearning curve: {path}\nmemory per rank: {mem_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
