"""The ClientApp: what runs on every SuperNode (or virtual client) when a message arrives.

Flower's Message API (``flwr.clientapp.ClientApp``): the server sends a ``Message``
whose ``RecordDict`` carries the global model (an ``ArrayRecord`` under ``"arrays"``)
and instructions (a ``ConfigRecord`` under ``"config"``); the handler replies with
``Message(content, reply_to=msg)``.  The partition a client holds comes from its
node config (``partition-id``, ``num-partitions``) — set by the simulation engine for
virtual clients and by ``flower-supernode --node-config`` for real ones.

An exception raised here does not crash the federation: Flower turns it into an error
reply, which the server counts as a failed client and leaves out of the round.
"""
from __future__ import annotations

import numpy as np
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from mlsys_labs.common.rng import derive_seed

from .data import client_data
from .model import DigitsMLP, from_record, get_weights, set_weights, to_record
from .privacy import privatize
from .train import local_steps, train_local

app = ClientApp()


def _partition(context: Context) -> tuple[int, int]:
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


@app.query()
def describe(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node holds and how many examples it has."""
    cfg = msg.content["config"]
    pid, n_parts = _partition(context)
    x, _ = client_data(str(cfg["partitioning"]), pid, n_parts, int(cfg["seed"]))
    steps = local_steps(len(x), int(cfg["local-epochs"]), int(cfg["batch-size"]))
    return Message(RecordDict({"metrics": MetricRecord(
        {"partition-id": pid, "num-examples": len(x), "full-steps": steps})}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training from the global model; optional FedProx term and DP noise."""
    cfg = msg.content["config"]
    pid, n_parts = _partition(context)
    rnd = int(cfg["server-round"])
    failing = {int(p) for p in str(cfg["fail-partitions"]).split(",") if p.strip()}
    if pid in failing and int(cfg["fail-round"]) in (0, rnd):
        raise RuntimeError(f"client {pid} failed in round {rnd} (injected fault)")

    seed = int(cfg["seed"])
    x, y = client_data(str(cfg["partitioning"]), pid, n_parts, seed)
    model = DigitsMLP()
    global_weights = from_record(msg.content["arrays"])
    set_weights(model, global_weights)
    loss = train_local(model, x, y, steps=int(cfg["steps"]), batch_size=int(cfg["batch-size"]),
                       lr=float(cfg["lr"]), mu=float(cfg["mu"]), seed=derive_seed(seed, "train", rnd, pid))
    weights = get_weights(model)
    if float(cfg["clip-norm"]) > 0:
        noise_rng = np.random.default_rng(derive_seed(seed, "dp", rnd, pid))
        weights = privatize(weights, global_weights, float(cfg["clip-norm"]),
                            float(cfg["noise-multiplier"]), noise_rng)
    metrics = MetricRecord({"partition-id": pid, "num-examples": len(x), "train-loss": loss,
                            "steps": int(cfg["steps"])})
    return Message(RecordDict({"arrays": to_record(weights), "metrics": metrics}), reply_to=msg)


__all__ = ["app"]
