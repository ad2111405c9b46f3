"""Child processes that always stop: a free port, a timeout, the whole group killed.

Labs that launch real components (``mpiexec``, ``torchrun``, a server, Flower's SuperLink
and SuperNodes) start them in a new process session, so that one ``killpg`` reaches
every descendant — also when the launcher itself has already exited.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group ``proc`` leads (started with ``start_new_session=True``)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    if sig == signal.SIGKILL:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool


def run_group(cmd: list[str], *, timeout: float, env: dict | None = None, cwd=None,
              merge_stderr: bool = False, capture: bool = True) -> Finished:
    """Run ``cmd`` in its own process group; on timeout (or any exit) kill the whole group.

    ``returncode`` is -9 after a timeout.  With ``merge_stderr`` the child's stderr is
    folded into ``stdout``; with ``capture=False`` the child writes to this terminal
    (progress bars stay live) and ``stdout``/``stderr`` come back empty.
    """
    t0 = time.monotonic()
    pipe = subprocess.PIPE if capture else None
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=pipe,
                            stderr=(subprocess.STDOUT if merge_stderr else subprocess.PIPE) if capture else None,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
        out, err = proc.communicate()
    finally:
        kill_group(proc)  # descendants the launcher left behind
    return Finished(-9 if timed_out else proc.returncode, out or "", err or "", time.monotonic() - t0, timed_out)


def descendants(pid: int) -> list[int]:
    """Live (non-zombie) descendant processes of ``pid``, read from ``/proc`` (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
