"""Where Flower and Ray keep their state: inside the project, never in the user's home.

Flower reads ``FLWR_HOME`` (its config.toml, installed apps, SuperLink state), Ray
``RAY_TMPDIR`` (session logs and the unix sockets of its processes — the socket path
must stay under ~107 bytes, so the folder name is kept short), scikit-learn
``SCIKIT_LEARN_DATA`` and uv ``UV_CACHE_DIR``.  Telemetry is switched off and the
Hugging Face hub put offline: nothing here may reach the network at run time.

:func:`configure_environment` runs when ``mlsys_labs.federated`` is imported, before
any Flower or Ray module loads; child processes (SuperLink, SuperNodes, ``flwr run``)
get the same variables through :func:`child_environment`.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from mlsys_labs.common.paths import state_dir

_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding mlsys_labs/


def _ray_tmpdir() -> Path:
    """A short folder for Ray: the project-local one when its path is short enough."""
    local = state_dir("lab7", "ray")
    # Ray puts sockets at <tmp>/session_<date>_<pid>/sockets/plasma_store (~70 bytes more).
    if len(str(local)) <= 36:
        return local
    short = Path(tempfile.gettempdir()) / f"mlsys-ray-{os.getuid()}"
    short.mkdir(parents=True, exist_ok=True)
    return short


def configure_environment() -> dict[str, str]:
    """Set the variables (once, without overriding the user's) and return them."""
    values = {
        "FLWR_HOME": str(state_dir("lab7", "flwr")),
        "RAY_TMPDIR": str(_ray_tmpdir()),
        "SCIKIT_LEARN_DATA": str(state_dir("lab7", "sklearn")),
        "UV_CACHE_DIR": str(state_dir("lab7", "uv")),
        "FLWR_TELEMETRY_ENABLED": "0",
        "HF_HUB_OFFLINE": "1",
        "RAY_DEDUP_LOGS": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    for key, value in values.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in values}


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours, and this checkout of mlsys_labs first
    on ``PYTHONPATH`` (so a SuperNode's ClientApp runs the same code as the test)."""
    env = dict(os.environ)
    env.update(configure_environment())
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(_PACKAGE_ROOT) + (os.pathsep + path if path else "")
    # Flower's daemons start their helpers (flower-superexec, flwr-serverapp) by name.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")  # one thread per process: 2 cores, many processes
    env.update(extra or {})
    return env
