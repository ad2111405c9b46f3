"""``mlsys-labs run 3``: the lab end to end on this machine.

1. sweep our collectives against MPICH's own at p = 2 (OSU-style, 8 B … 16 MiB by
   default) with the cost model's steps timed in the same loop, printing the table, the
   model's predictions and its error taken apart (``model_p2.md``);
2. plot latency and bus bandwidth against size (ours vs built-in) and model vs measurement;
3. train lab 1's MLP data-parallel on 4 ranks with our allreduce and with MPI's;
4. with ``--sweep-ranks 4,8,16`` (a machine with that many cores, or a cluster), sweep the
   allreduces at each p and plot the latency/bandwidth crossover.

Plots and tables go to ``reports/lab3/``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tqdm import tqdm

from mlsys_labs.common.bench import machine_name
from mlsys_labs.common.cli_args import at_least
from mlsys_labs.common.paths import reports_dir

from ..costmodel import choose_allreduce
from .launch import oversubscribed, run_mpi
from .osu import format_decomposition, format_table, summarize
from .plots import plot_crossover, plot_model, plot_sweep


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="mlsys-labs run 3")
    ap.add_argument("--ranks", type=at_least(1), default=2, help="ranks for the sweep (default 2: one per core here)")
    ap.add_argument("--max-bytes", default="16M")
    ap.add_argument("--sgd-ranks", type=at_least(1), default=4)
    ap.add_argument("--hostfile", default=None, help="run on a cluster: mpiexec -f HOSTFILE")
    ap.add_argument("--sweep-ranks", default="", help="e.g. 4,8,16: allreduce sweeps at these p (crossover plot)")
    args = ap.parse_args(argv)
    out_dir = reports_dir("lab3")
    steps = tqdm(total=3, desc="lab 3", unit="step")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "osu.json"
        steps.set_postfix_str(f"OSU sweep on {args.ranks} ranks")
        proc = run_mpi(args.ranks, ["-m", "mlsys_labs.collectives.plumbing.osu", "--max-bytes", args.max_bytes,
                                    "--out", str(out)], timeout=1200, hostfile=args.hostfile,
                       yield_when_idle=oversubscribed(args.ranks))
        if proc.returncode != 0:
            print(proc.stderr[-4000:])
            return proc.returncode or 1
        report = json.loads(out.read_text())
    steps.update()
    (out_dir / f"osu_p{args.ranks}.json").write_text(json.dumps(report, indent=1))
    table = format_table(report["rows"])
    (out_dir / f"osu_p{args.ranks}.md").write_text(table)
    paths = plot_sweep(report, out_dir, machine=machine_name()) + [plot_model(report, out_dir)]
    steps.update()

    steps.set_postfix_str(f"data-parallel SGD on {args.sgd_ranks} ranks")
    sgd = run_mpi(args.sgd_ranks, ["-m", "mlsys_labs.collectives.sgd", "--steps", "30"], timeout=600,
                  hostfile=args.hostfile)
    steps.update()
    paths += _crossover(args, out_dir, steps)
    steps.close()

    _print_figures(report, table, out_dir)
    print(sgd.stdout.strip() or sgd.stderr[-2000:])
    print("plots: " + ", ".join(str(p) for p in paths))
    return 0 if sgd.returncode == 0 else sgd.returncode


def _crossover(args, out_dir: Path, steps) -> list[Path]:
    """With ``--sweep-ranks``: an allreduce sweep at each p, and the crossover plot."""
    crossover = []
    for p in [int(v) for v in args.sweep_ranks.split(",") if v]:
        steps.set_postfix_str(f"allreduce sweep on {p} ranks")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "osu.json"
            swept = run_mpi(p, ["-m", "mlsys_labs.collectives.plumbing.osu", "--collectives", "allreduce", "--max-bytes",
                                args.max_bytes, "--out", str(out)], timeout=1200, hostfile=args.hostfile,
                            yield_when_idle=oversubscribed(p))
            if swept.returncode == 0:
                crossover.append(json.loads(out.read_text()))
                (out_dir / f"osu_allreduce_p{p}.md").write_text(format_table(crossover[-1]["rows"]))
            else:
                print(swept.stderr[-2000:])
    return [plot_crossover(crossover, out_dir)] if crossover else []


def _print_figures(report: dict, table: str, out_dir: Path) -> None:
    """The sweep's table, the calibration, auto's picks, the lab's figures; model_pP.md."""
    s = summarize(report)
    params = report["params"]
    print(table)
    print(f"\nMachine: {machine_name()}; {report['mpi']}; p = {report['p']}")
    if params:
        print(f"calibrated in the sweep: eager α = {1e6 * params['alpha']:.2f} µs, β = {1e9 * params['beta']:.3f} ns/B; "
              f"rendezvous (≥ {params['rendezvous_from']} B) α = {1e6 * params['alpha_rndv']:.2f} µs, "
              f"β = {1e9 * params['beta_rndv']:.3f} ns/B; γ (largest size) = {1e9 * params['gamma']:.3f} ns/B")
        for p in (2, 4, 16, 64):
            picks = {n: choose_allreduce(n, p, _params(params)) for n in (8, 2**16, 2**20, 2**24)}
            print(f"  auto allreduce at p = {p:2d}: " + ", ".join(f"{n} B → {a}" for n, a in picks.items()))
    print(f"ring allreduce / built-in at ≥ 4 MiB (worst): {s['ring_over_builtin_4MiB_worst']:.2f}×  (target ≤ 1.3)")
    print(f"cost model |error| at ≥ 64 KiB, allreduce: worst {s['model_error_allreduce_worst']:.2f}, "
          f"median {s['model_error_allreduce_median']:.2f}  (target ≤ 0.3); of it, worst: the α-β lines "
          f"{s['line_error_allreduce_worst']:.2f}, beyond the measured steps {s['steps_error_allreduce_worst']:.2f}")
    (out_dir / f"model_p{report['p']}.md").write_text(format_decomposition(s["model_decomposition"]))


def _params(d: dict):
    from ..costmodel import CostParams

    return CostParams(**d)
