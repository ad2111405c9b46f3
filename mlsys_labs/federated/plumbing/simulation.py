"""Running a federation on one machine: Flower's simulation engine, or in-process.

**Flower's simulation engine** (``flwr.simulation.run_simulation``, Ray backend): the
ServerApp runs in a thread of this process against an in-memory SuperLink; each
*virtual* SuperNode is only a node id plus a context (its ``partition-id``).  Ray
starts a pool of actor processes — as many as fit ``init_args.num_cpus`` divided by
``client_resources.num_cpus`` — and every message addressed to a virtual node is
queued and handed to the next idle actor, which loads the ClientApp and runs it with
that node's context.  So 10 or 1000 clients map onto, here, 2 worker processes; a
client's state between rounds lives only in its context, never in the actor.

**In-process engine** (:class:`InProcessGrid`): the same ServerApp loop and the same
ClientApp, called one message at a time in this process — no Ray start-up (seconds),
no process boundary.  The graded tests use it for the learning-dynamics checks and
Flower's engine for what only it shows (processes, failures crossing the boundary);
both give the same history for the same seed.
"""
from __future__ import annotations

import logging
import os
import signal
import time

from ...common.procs import descendants
from ..config import FedConfig
from .environment import configure_environment


class InProcessGrid:
    """The two Grid methods the ServerApp uses, delivering messages to ClientApp calls.

    Messages run one after another; a ClientApp that raises produces an error reply,
    as Flower's engines do — except ``NotImplementedError``: a piece of the lab not written
    yet is not a failing client, and it propagates so that the test shows what is missing.
    (No clock: ``timeout`` is accepted and ignored.)
    """

    def __init__(self, client_app, num_nodes: int, first_node_id: int = 1000):
        from flwr.app import Context, RecordDict

        self.client_app = client_app
        self.contexts = {
            first_node_id + i: Context(run_id=1, node_id=first_node_id + i,
                                       node_config={"partition-id": i, "num-partitions": num_nodes},
                                       state=RecordDict(), run_config={})
            for i in range(num_nodes)
        }

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout: float | None = None):
        from flwr.app import Error, Message

        replies = []
        for msg in messages:
            try:
                reply = self.client_app(msg, self.contexts[msg.metadata.dst_node_id])
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001 — a failing client is data, not a crash
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
            replies.append(reply)
        return replies


def stop_processes(pids: set[int], grace_s: float = 15.0) -> None:
    """Wait up to ``grace_s`` for ``pids`` to exit on their own, then SIGKILL the rest and
    wait (reaping our direct children) until they are gone."""
    alive = set(pids)
    for phase_s, kill in ((grace_s, False), (5.0, True)):
        deadline = time.monotonic() + phase_s
        while alive and time.monotonic() < deadline:
            for pid in alive:
                if kill:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass  # not our child: init reaps it
            alive &= set(descendants(os.getpid()))
            if alive:
                time.sleep(0.2)


def run_in_process(cfg: FedConfig) -> dict:
    """The federation of ``cfg`` without Ray: ServerApp loop + ClientApp in this process."""
    configure_environment()
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    from ..client_app import app as client_app
    from ..server_app import run_federation

    # Messages are stamped with the sender's identity; Flower sets it per task process.
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    return run_federation(InProcessGrid(client_app, cfg.num_clients), cfg)


def run_flower_simulation(cfg: FedConfig, num_cpus: int = 2, verbose: bool = False) -> dict:
    """The federation of ``cfg`` on Flower's simulation engine (Ray), Ray stopped after."""
    configure_environment()
    from flwr.simulation import run_simulation

    from ..client_app import app as client_app
    from ..server_app import make_server_app

    history: dict = {}
    children_before = set(descendants(os.getpid()))
    saved_pythonpath = os.environ.get("PYTHONPATH")  # Flower's Ray backend rewrites it
    flwr_logger = logging.getLogger("flwr")
    saved_level = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.ERROR)  # (run_simulation warns it prefers `flwr run`)
    try:
        run_simulation(
            server_app=make_server_app(cfg, history),
            client_app=client_app,
            num_supernodes=cfg.num_clients,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                            "init_args": {"num_cpus": num_cpus, "num_gpus": 0,
                                          "logging_level": "error", "log_to_driver": verbose}},
        )
    finally:
        flwr_logger.setLevel(saved_level)
        import ray

        if ray.is_initialized():
            ray.shutdown()
        # ray.shutdown() returns before its processes (raylet, GCS, workers) have all exited:
        # wait for them, and stop any that stay — the run must leave nothing behind.
        stop_processes(set(descendants(os.getpid())) - children_before)
        if saved_pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_pythonpath
    if not history:
        raise RuntimeError("the simulation ended without a history: the ServerApp failed (see the log above)")
    return history


def run_simulation(cfg: FedConfig, engine: str = "inprocess") -> dict:
    """``engine="flower"``: Flower's Ray-backed engine; ``"inprocess"``: no Ray."""
    if engine == "flower":
        return run_flower_simulation(cfg)
    if engine == "inprocess":
        return run_in_process(cfg)
    raise ValueError(f"unknown engine {engine!r}: flower or inprocess")
