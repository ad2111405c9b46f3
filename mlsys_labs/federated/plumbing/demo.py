"""``mlsys-labs run 7``: the default federated simulation, or ``--deployment``.

Default: four runs on Flower's simulation engine — IID vs non-IID (Dirichlet α = 0.1)
× FedAvg vs FedProx, 10 clients, half of each round's sample drawn, half of the
clients stragglers (FedAvg drops their partial work, FedProx keeps it) — beside the
centralized baseline; prints a per-round accuracy
table and writes ``reports/lab7/{simulation.json, rounds.md, accuracy.png}``.

``--deployment``: a SuperLink and N SuperNodes as real processes on localhost, one
``flwr run``, every process stopped afterwards (and checked).
"""
from __future__ import annotations

import argparse
import json
import time

from mlsys_labs.common.cli_args import at_least
from mlsys_labs.common.paths import reports_dir

from ..config import FedConfig
from ..centralized import train_centralized
from ..server_app import rounds_to_accuracy

SCENARIOS = {
    "IID · FedAvg": dict(partitioning="iid", strategy="fedavg"),
    "IID · FedProx": dict(partitioning="iid", strategy="fedprox"),
    "Dir(0.1) · FedAvg": dict(partitioning="dirichlet:0.1", strategy="fedavg"),
    "Dir(0.1) · FedProx": dict(partitioning="dirichlet:0.1", strategy="fedprox"),
}


def rounds_table(results: dict, centralized: float) -> str:
    names = list(results)
    lines = ["| round | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    n = len(results[names[0]]["rounds"])
    for i in range(n):
        row = [f"{results[k]['rounds'][i]['accuracy']:.3f}" for k in names]
        lines.append(f"| {i + 1} | " + " | ".join(row) + " |")
    lines.append("| rounds to 90% | " + " | ".join(str(rounds_to_accuracy(results[k], 0.9) or "—") for k in names) + " |")
    lines.append("| centralized − final | " + " | ".join(
        f"{centralized - results[k]['final_accuracy']:+.3f}" for k in names) + " |")
    return "\n".join(lines)


def plot(results: dict, centralized: float, path):
    from mlsys_labs.common.plotting import figure, save

    fig, ax = figure()
    for name, h in results.items():
        ax.plot([r["round"] for r in h["rounds"]], [r["accuracy"] for r in h["rounds"]],
                marker="o", markersize=3, label=name, linestyle="-" if "IID" in name else "--",
                color="tab:blue" if "FedAvg" in name else "tab:orange")
    ax.axhline(centralized, color="black", linewidth=1, label=f"centralized ({centralized:.3f})")
    ax.axhline(0.9, color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlabel("round")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.4, 1.0)
    ax.set_title("FedAvg (drops stragglers) vs FedProx (keeps partial work)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return save(fig, path)


def run_default(args) -> int:
    from tqdm import tqdm

    from .simulation import run_simulation

    base = FedConfig(num_clients=args.clients, num_rounds=args.rounds, local_epochs=args.local_epochs,
                     fraction=args.fraction, straggler_fraction=args.stragglers, seed=args.seed)
    out = reports_dir("lab7")
    central = train_centralized(epochs=args.rounds, seed=args.seed)
    results, timings = {}, {}
    for name, changes in tqdm(SCENARIOS.items(), desc=f"simulations ({args.engine})", unit="run"):
        t0 = time.perf_counter()
        results[name] = run_simulation(base.replace(**changes), engine=args.engine)
        timings[name] = time.perf_counter() - t0
    table = rounds_table(results, central["final_accuracy"])
    print(f"\nCentralized baseline: {central['final_accuracy']:.3f} after {args.rounds} epochs\n")
    print(table)
    (out / "rounds.md").write_text(table + "\n")
    (out / "simulation.json").write_text(json.dumps(
        {"engine": args.engine, "config": base.to_run_config(), "centralized": central,
         "runs": results, "seconds": timings}, indent=1))
    png = plot(results, central["final_accuracy"], out / "accuracy.png")
    print(f"\nwrote {out / 'rounds.md'}, {out / 'simulation.json'}, {png}")
    return 0


def run_deployment_demo(args) -> int:
    from .deployment import Deployment, leftover_processes

    cfg = FedConfig(num_clients=args.supernodes, num_rounds=args.deploy_rounds, seed=args.seed,
                    partitioning="dirichlet:1.0", strategy="fedprox")
    deployment = Deployment(args.supernodes)
    print(f"starting a SuperLink on 127.0.0.1:{deployment.port} and {args.supernodes} SuperNodes "
          f"(logs in {deployment.workdir})")
    t0 = time.perf_counter()
    try:
        deployment.start()
        print(f"running {cfg.num_rounds} rounds with `flwr run` ...")
        history = deployment.run(cfg)
    finally:
        deployment.stop()
        left = leftover_processes(deployment.flwr_home)
    for r in history["rounds"]:
        print(f"round {r['round']}: accuracy {r['accuracy']:.3f}  clients {r['aggregated']}")
    print(f"done in {time.perf_counter() - t0:.0f} s; processes left behind: {left or 'none'}")
    (reports_dir("lab7") / "deployment.json").write_text(json.dumps(history, indent=1))
    return 0 if not left else 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mlsys-labs run 7", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deployment", action="store_true", help="real SuperLink + SuperNode processes")
    p.add_argument("--supernodes", type=at_least(1), default=3)
    p.add_argument("--deploy-rounds", type=at_least(1), default=3)
    p.add_argument("--engine", choices=["flower", "inprocess"], default="flower",
                   help="flower: Flower's simulation engine on Ray; inprocess: the same apps without Ray")
    p.add_argument("--clients", type=at_least(1), default=10)
    p.add_argument("--rounds", type=at_least(1), default=20)
    p.add_argument("--local-epochs", type=at_least(1), default=2)
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--stragglers", type=float, default=0.5,
                   help="fixed share of clients that finish only part of their local work each round")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    return run_deployment_demo(args) if args.deployment else run_default(args)


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
