"""Deployment mode: a SuperLink and N SuperNodes as real processes, driven by ``flwr run``.

The shape of a real federation (Flower's deployment engine), here on localhost:

    flower-superlink  --insecure --port P          the coordinator: Fleet API for the
                                                   SuperNodes, Control API for ``flwr``
    flower-supernode  --insecure --superlink 127.0.0.1:P --port Q_i
                      --node-config "partition-id=i num-partitions=N"     × N
    flwr run <app> <connection> --stream --run-config "..."

``flwr run`` packs the app (a FAB: the pyproject.toml naming the ServerApp and
ClientApp), the SuperLink starts the ServerApp in a subprocess, and every SuperNode
starts a ClientApp subprocess for the run.  Across machines the same commands run on
different hosts, with TLS certificates instead of ``--insecure`` and SuperNode
authentication (see the lab README).

Every process started here is in its own session and is stopped — process group and
all — when the run ends or fails; a per-run ``FLWR_HOME`` lets :func:`leftover_processes`
find any process that still carries it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from mlsys_labs.common.paths import state_dir
from mlsys_labs.common.procs import free_port, kill_group

from ..config import FedConfig
from .environment import child_environment

_BIN = Path(sys.executable).parent

APP_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "mlsys-lab7"
version = "1.0.0"
description = "Lab 7: FedAvg/FedProx on digits (the code lives in mlsys_labs.federated)"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "mlsys-labs"

[tool.flwr.app.components]
serverapp = "mlsys_labs.federated.server_app:app"
clientapp = "mlsys_labs.federated.client_app:app"

[tool.flwr.app.config]
{config}
"""


def _toml_value(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else repr(value)


def write_app(app_dir: Path, cfg: FedConfig) -> Path:
    """The Flower app folder ``flwr run`` packs: only a pyproject.toml pointing at our apps."""
    app_dir.mkdir(parents=True, exist_ok=True)
    lines = "\n".join(f"{k} = {_toml_value(v)}" for k, v in cfg.to_run_config().items())
    (app_dir / "pyproject.toml").write_text(APP_PYPROJECT.format(config=lines))
    return app_dir


class Deployment:
    """Start/stop a local SuperLink + N SuperNodes; ``with Deployment(...) as d: d.run(cfg)``."""

    def __init__(self, num_supernodes: int, workdir: Path | None = None):
        self.num_supernodes = num_supernodes
        self.workdir = workdir or state_dir("lab7", "deploy", uuid.uuid4().hex[:8])
        self.flwr_home = self.workdir / "flwr"
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        self.env = child_environment({"FLWR_HOME": str(self.flwr_home)})
        self.port = free_port()
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.logs: dict[str, Path] = {}

    # ---------------------------------------------------------------- processes
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        proc = subprocess.Popen(args, env=self.env, cwd=self.workdir, stdout=open(log, "wb"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def start(self) -> "Deployment":
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "lab7"\n\n[superlink.lab7]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n')
        self._spawn("superlink", [str(_BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1",
                                  "--port", str(self.port), "--disable-runtime-dependency-installation"])
        for i in range(self.num_supernodes):
            self._spawn(f"supernode-{i}", [
                str(_BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                "--host", "127.0.0.1", "--port", str(free_port()),
                "--node-config", f"partition-id={i} num-partitions={self.num_supernodes}"])
        self._wait_for_superlink()
        return self

    def _wait_for_superlink(self, timeout_s: float = 90.0) -> None:
        """Block until the SuperLink accepts connections (it takes seconds to start)."""
        superlink = self.procs[0][1]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if superlink.poll() is not None:
                raise RuntimeError(f"flower-superlink exited with {superlink.returncode}\n" + self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"the SuperLink did not open port {self.port} in {timeout_s} s\n" + self.log_tail())

    def run(self, cfg: FedConfig, timeout_s: float = 300.0) -> dict:
        """``flwr run`` the app with ``cfg`` and return the ServerApp's history."""
        if cfg.num_clients != self.num_supernodes:
            raise ValueError(f"cfg.num_clients={cfg.num_clients} but {self.num_supernodes} SuperNodes")
        results = self.workdir / "history.json"
        cfg = cfg.replace(results_path=str(results))
        app_dir = write_app(self.workdir / "app", cfg)
        out = subprocess.run([str(_BIN / "flwr"), "run", str(app_dir), "lab7", "--stream"],
                             env=self.env, cwd=self.workdir, capture_output=True, text=True,
                             timeout=timeout_s)
        (self.workdir / "flwr-run.log").write_text(out.stdout + out.stderr)
        self.logs["flwr-run"] = self.workdir / "flwr-run.log"
        history = json.loads(results.read_text()) if results.exists() else {}
        if "rounds" not in history:
            raise RuntimeError(f"flwr run ended (exit {out.returncode}) without a history\n"
                               + history.get("error", "") + "\n" + self.log_tail())
        return history

    def log_tail(self, chars: int = 3000) -> str:
        """The end of every process's log (for error messages)."""
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            parts.append(f"--- {name} ---\n{text[-chars:]}")
        return "\n".join(parts)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every process group we started, SIGKILL what is left after ``grace_s``."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for _, proc in self.procs:
            kill_group(proc)  # SIGKILL to the group: ServerApp/ClientApp children too
        # Flower starts its SuperExec helpers detached (a session of their own), out of reach
        # of the group signals above, and they may start a child while shutting down: sweep
        # by the run's FLWR_HOME until nothing carries it.
        deadline = time.monotonic() + grace_s
        while (left := leftover_processes(self.flwr_home)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def __enter__(self) -> "Deployment":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def leftover_processes(marker: Path | str) -> list[int]:
    """Pids of live processes whose environment carries ``FLWR_HOME=<marker>`` (via /proc)."""
    needle = f"FLWR_HOME={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found
