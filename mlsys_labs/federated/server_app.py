"""The ServerApp: the federated rounds, driven over Flower's Message API.

One round (McMahan et al. 2017, Alg. 1; Li et al. 2020, Alg. 2):

1. sample a fraction C of the clients (at least ``min_clients``);
2. send each a TRAIN message with the global weights w_t and its instructions (local
   steps, lr, μ, DP settings) — stragglers are told to do only part of the work;
3. wait for replies (up to ``round_timeout`` seconds, if set): a client that raised
   replies with an *error*, a client that is late does not reply at all — both are
   left out and the round goes on with the rest (``Grid.send_and_receive``);
4. the strategy aggregates the replies it accepts (FedAvg drops partial work, FedProx
   keeps it) into w_{t+1};
5. the server evaluates w_{t+1} on the held-out test set (centralized evaluation).

Before round 1 a QUERY message asks every node which partition it holds, so sampling
and aggregation order are by partition id — independent of the random node ids a
SuperLink hands out, and so reproducible for a fixed seed.

``app`` is the module-level ServerApp that ``flwr run`` loads in deployment (settings
from the run config); :func:`make_server_app` builds one around a :class:`FedConfig`
for the simulation engines.
"""
from __future__ import annotations

import hashlib
import json
import time
import traceback

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from .config import FedConfig
from .data import federation_digits
from .model import DigitsMLP, from_record, get_weights, new_model, set_weights, to_record
from .strategies import make_strategy
from .train import evaluate


def sample_clients(partition_ids: list[int], fraction: float, min_clients: int,
                   rng: np.random.Generator) -> list[int]:
    """max(⌊C·K⌋, min_clients) distinct clients, uniformly at random, sorted."""
    k = min(len(partition_ids), max(int(fraction * len(partition_ids)), min_clients))
    return sorted(int(p) for p in rng.choice(partition_ids, size=k, replace=False))


def _client_config(cfg: FedConfig) -> dict:
    return {"partitioning": cfg.partitioning, "seed": cfg.seed, "local-epochs": cfg.local_epochs,
            "batch-size": cfg.batch_size, "lr": cfg.lr, "mu": 0.0, "clip-norm": cfg.clip_norm,
            "noise-multiplier": cfg.noise_multiplier, "fail-partitions": cfg.fail_partitions,
            "fail-round": cfg.fail_round}


def discover_clients(grid: Grid, cfg: FedConfig, wait_s: float = 120.0) -> dict[int, dict]:
    """partition-id → {node-id, num-examples, full-steps}, once ``num_clients`` nodes are up."""
    deadline = time.monotonic() + wait_s
    while len(list(grid.get_node_ids())) < cfg.num_clients:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(grid.get_node_ids()))} of {cfg.num_clients} nodes connected")
        time.sleep(0.5)
    content = RecordDict({"config": ConfigRecord(_client_config(cfg))})
    messages = [Message(content=content, message_type=MessageType.QUERY, dst_node_id=node)
                for node in grid.get_node_ids()]
    clients, errors = {}, []
    for reply in grid.send_and_receive(messages):
        if reply.has_error():
            errors.append(reply.error.reason)
            continue
        m = reply.content["metrics"]
        clients[int(m["partition-id"])] = {"node-id": reply.metadata.src_node_id,
                                           "num-examples": int(m["num-examples"]),
                                           "full-steps": int(m["full-steps"])}
    if len(clients) < cfg.min_clients:
        raise RuntimeError(f"only {len(clients)} of {len(messages)} clients answered the query; "
                           f"their errors:\n" + "\n".join(errors[:3]))
    return clients


def weights_digest(weights: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(weights):
        h.update(k.encode())
        h.update(np.ascontiguousarray(weights[k], dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def run_federation(grid: Grid, cfg: FedConfig) -> dict:
    """All rounds; returns the history: per-round accuracy, loss and who took part."""
    rng = np.random.default_rng(cfg.seed)
    clients = discover_clients(grid, cfg)
    pids = sorted(clients)
    n_stragglers = int(round(cfg.straggler_fraction * len(pids)))
    stragglers = sorted(int(p) for p in rng.choice(pids, size=n_stragglers, replace=False))
    strategy = make_strategy(cfg.strategy, cfg.mu)
    weights = get_weights(new_model(cfg.seed))
    _, _, x_test, y_test = federation_digits(cfg.seed)
    model = DigitsMLP()
    rounds = []
    for rnd in range(1, cfg.num_rounds + 1):
        sampled = sample_clients(pids, cfg.fraction, cfg.min_clients, rng)
        messages = []
        for pid in sampled:
            full = clients[pid]["full-steps"]
            # A straggler manages a random part of its work: 1 ≤ steps < full (Li et al. 2020,
            # the systems-heterogeneity experiments: stragglers run fewer local epochs).
            steps = int(rng.integers(1, full)) if pid in stragglers and full > 1 else full
            config = ConfigRecord({**_client_config(cfg), "mu": strategy.mu, "steps": steps,
                                   "server-round": rnd})
            content = RecordDict({"arrays": to_record(weights), "config": config})
            messages.append(Message(content=content, message_type=MessageType.TRAIN,
                                    dst_node_id=clients[pid]["node-id"]))
        replies = list(grid.send_and_receive(messages, timeout=cfg.round_timeout or None))
        failed, partial, accepted = [], [], []
        for reply in replies:
            if reply.has_error():
                failed.append(reply.error.reason)
                continue
            m = reply.content["metrics"]
            pid = int(m["partition-id"])
            if int(m["steps"]) < clients[pid]["full-steps"] and not strategy.keeps_partial_work:
                partial.append(pid)
                continue
            accepted.append((pid, from_record(reply.content["arrays"]), int(m["num-examples"])))
        accepted.sort(key=lambda r: r[0])  # a fixed order: float sums are order-dependent
        if accepted:
            weights = strategy.aggregate(weights, [(w, n) for _, w, n in accepted])
        set_weights(model, weights)
        loss, acc = evaluate(model, x_test, y_test)
        rounds.append({"round": rnd, "accuracy": acc, "loss": loss, "sampled": sampled,
                       "aggregated": [p for p, _, _ in accepted], "failed": len(failed),
                       "timed_out": len(sampled) - len(replies), "dropped_partial": partial,
                       "errors": failed[:3]})
    return {"config": cfg.to_run_config(), "stragglers": stragglers, "rounds": rounds,
            "final_accuracy": rounds[-1]["accuracy"] if rounds else float("nan"),
            "weights_digest": weights_digest(weights)}


def rounds_to_accuracy(history: dict, target: float) -> int | None:
    """The first round whose test accuracy reaches ``target`` (None if none did)."""
    for r in history["rounds"]:
        if r["accuracy"] >= target:
            return r["round"]
    return None


def make_server_app(cfg: FedConfig, sink: dict) -> ServerApp:
    """A ServerApp running :func:`run_federation` with ``cfg``; the history lands in ``sink``."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        sink.update(run_federation(grid, cfg))

    return server


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Deployment entry point (``flwr run``): settings from the run config, history to JSON."""
    cfg = FedConfig.from_run_config(context.run_config)
    history: dict = {"error": "the ServerApp was interrupted"}
    try:
        history = run_federation(grid, cfg)
    except Exception:  # the caller of `flwr run` only sees this file: say what went wrong
        history = {"error": traceback.format_exc()}
        raise
    finally:
        if cfg.results_path:
            with open(cfg.results_path, "w") as f:
                json.dump(history, f, indent=1)
