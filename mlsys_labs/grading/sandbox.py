"""Where a submission's code runs: a sandbox it cannot see out of, and cannot outlive.

Linux namespaces do the work (the same kernel features as containers and bubblewrap;
:mod:`mlsys_labs.grading.sandbox_init` is the first process inside):

- **a filesystem of its own**: a new root holding the system's programs and libraries,
  Python and its virtual environment — all read-only — the grading bundle (the
  submission's package, the grading infrastructure, the tests; never the instructor's
  checkout) read-only, and one writable scratch folder; fresh ``/tmp`` and ``/dev/shm``;
- **no network**: a network namespace with only loopback (tests still start local servers);
- **an unprivileged user** (``nobody``) when the grader runs as root, or a user namespace
  whose root has given up every capability when it does not;
- **nothing outlives it**: the sandbox is a PID namespace; when its first process exits,
  or the grader dies (parent-death signal), the kernel kills every process in it;
- **limits**: memory for the whole sandbox (a memory cgroup where the grader may make
  one, else per process), processes, CPU time, file size, open files.

Where namespaces are unavailable (not Linux, or neither root nor user namespaces
allowed), :func:`isolation` says so and the grader runs the tests unsandboxed, with the
limits it can still set — and says so on every run and in the summary.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..common.procs import kill_group

INIT = Path(__file__).with_name("sandbox_init.py")
NOBODY = 65534            # the submission's sandboxes run as this user
REFERENCE_UID = 65533     # the reference's: the submission can't signal it or use up its process limit
SYSTEM_READ_ONLY = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt", "/sys")


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use."""
    memory_bytes: int = 16 * 2**30   # the whole sandbox (cgroup); per process without a cgroup
    processes: int = 4096            # RLIMIT_NPROC (threads count too)
    cpu_seconds: int = 4 * 3600      # CPU time of one process
    file_bytes: int = 16 * 2**30     # the largest file it may write (Ray's object store is a file)
    output_bytes: int = 64 * 2**20   # what pytest may print (the grader's watchdog enforces it)
    open_files: int = 4096
    tmp_bytes: int = 4 * 2**30       # /tmp and /dev/shm, each (memory-backed)

    def rlimits(self, *, with_memory: bool) -> dict[str, int]:
        out = {"RLIMIT_NPROC": self.processes, "RLIMIT_CPU": self.cpu_seconds,
               "RLIMIT_FSIZE": self.file_bytes, "RLIMIT_NOFILE": self.open_files, "RLIMIT_CORE": 0}
        if with_memory:
            out["RLIMIT_AS"] = self.memory_bytes
        return out


@dataclass(frozen=True)
class Isolation:
    """How a submission is isolated on this machine."""
    kind: str      # "namespaces" (root: the tests run as nobody) | "user-namespace" | "none"
    detail: str

    @property
    def isolated(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        if self.isolated:
            who = "as user nobody" if self.kind == "namespaces" else "in a user namespace without capabilities"
            return (f"sandboxed: own filesystem (read-only bundle), no network, own PID namespace, "
                    f"limits, {who}")
        return f"NOT sandboxed ({self.detail}): the submission's code could read or change this machine's files"


_ISOLATION: Isolation | None = None


def isolation() -> Isolation:
    """Probe once per process: can a sandbox be built here?"""
    global _ISOLATION
    if _ISOLATION is None:
        _ISOLATION = _probe()
    return _ISOLATION


def _probe() -> Isolation:
    if os.environ.get("MLSYS_NO_SANDBOX"):
        return Isolation("none", "MLSYS_NO_SANDBOX is set")
    if not sys.platform.startswith("linux"):
        return Isolation("none", f"namespaces need Linux, this is {sys.platform}")
    kind = "namespaces" if os.geteuid() == 0 else "user-namespace"
    with tempfile.TemporaryDirectory(prefix="mlsys-sandbox-probe-") as tmp:
        box = Sandbox(Path(tmp), bundle=None, scratch=Path(tmp) / "scratch", kind=kind, limits=Limits())
        try:
            out = Path(tmp) / "out"
            with open(out, "w") as f:
                proc = box.popen([sys.executable, "-c", "print('ok')"], env=minimal_env(Path(tmp) / "scratch"),
                                 cwd=Path(tmp) / "scratch", stdout=f)
                rc = proc.wait(timeout=60)
            text = out.read_text()
        except (OSError, subprocess.SubprocessError) as exc:
            return Isolation("none", f"the sandbox could not start: {exc}")
        finally:
            box.close()
    if rc != 0 or "ok" not in text:
        last = (text.strip().splitlines() or ["no output"])[-1]
        return Isolation("none", f"the sandbox could not start here ({last})")
    return Isolation(kind, "")


def minimal_env(scratch: Path, extra: dict | None = None, *, private_tmp: bool = False) -> dict:
    """The environment a sandboxed process sees: nothing of the grader's (no tokens,
    no secrets), only what Python and the tests need, and caches in the scratch folder;
    ``private_tmp``: the process runs in a sandbox with a ``/tmp`` of its own."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        # a sandbox's /tmp is its own (and short: Ray's socket paths must fit in 107 bytes)
        "HOME": str(scratch / "home"), "TMPDIR": "/tmp" if private_tmp else str(scratch / "tmp"), "LANG": "C.UTF-8",
        "USER": "mlsys-grade", "LOGNAME": "mlsys-grade",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(scratch / "mpl"), "NUMBA_CACHE_DIR": str(scratch / "numba"),
        "TRITON_CACHE_DIR": str(scratch / "triton"), "XDG_CACHE_HOME": str(scratch / "cache"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
    }
    for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MLSYS_SEED"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(extra or {})
    return env


def _memory_cgroup(name: str) -> Path | None:
    """A fresh memory cgroup under this process's own (v1 or v2), or None if not allowed."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            break
    else:
        base = Path("/sys/fs/cgroup") / next((l.split(":", 2)[2] for l in lines if l.startswith("0::")), "/").lstrip("/")
    try:
        group = base / name
        group.mkdir()
        return group
    except OSError:
        return None


@dataclass
class Sandbox:
    """One sandbox: ``popen`` starts a command in it; ``close`` kills everything in it."""
    workdir: Path
    bundle: Path | None            # read-only inside
    scratch: Path                  # writable inside
    kind: str = "namespaces"
    limits: Limits = field(default_factory=Limits)
    devices: tuple[str, ...] = ()  # extra /dev entries (GPUs)
    extra_writable: list = field(default_factory=list)   # (scratch subfolder, path inside) pairs
    home: Path | None = None       # trusted runs only (kind "none"): the checkout whose caches to use
    uid: int = NOBODY              # the user the commands run as (kind "namespaces")
    _procs: list = field(default_factory=list)
    _cgroup: Path | None = None

    def __post_init__(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        for sub in ("home", "tmp", "mpl", "numba", "triton", "cache"):
            (self.scratch / sub).mkdir(exist_ok=True)
        for src, _ in self.extra_writable:
            Path(src).mkdir(parents=True, exist_ok=True)
        if self.kind == "namespaces":
            for path in [self.scratch, *self.scratch.rglob("*")]:
                os.chown(path, self.uid, self.uid)
        if not self.devices:
            self.devices = tuple(d for d in os.listdir("/dev") if d.startswith("nvidia"))

    def popen(self, argv: list[str], *, env: dict, cwd: Path, stdout) -> subprocess.Popen:
        if self.kind == "none":
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=lambda: _set_rlimits(self.limits.rlimits(with_memory=True)))
            self._procs.append(proc)
            return proc
        if self.kind == "namespaces" and self._cgroup is None:
            self._cgroup = _memory_cgroup(f"mlsys-grade-{os.getpid()}-{id(self):x}")
            if self._cgroup is not None:
                limit = "memory.limit_in_bytes" if (self._cgroup / "memory.limit_in_bytes").exists() else "memory.max"
                try:
                    (self._cgroup / limit).write_text(str(self.limits.memory_bytes))
                except OSError:
                    self._cgroup = None
        newroot = Path(tempfile.mkdtemp(prefix="root-", dir=self.workdir))
        spec = {
            "argv": [str(a) for a in argv], "env": env, "cwd": str(cwd), "newroot": str(newroot),
            "ro": self._read_only(), "rw": [[str(self.scratch), str(self.scratch)],
                   *([str(src), str(dst)] for src, dst in self.extra_writable)],
            "devices": list(self.devices), "userns": self.kind == "user-namespace",
            "uid": self.uid if self.kind == "namespaces" else None, "gid": self.uid,
            "rlimits": self.limits.rlimits(with_memory=self._cgroup is None),
            "shm_size": self.limits.tmp_bytes, "tmp_size": self.limits.tmp_bytes,
            "cgroup_procs": str(self._cgroup / "cgroup.procs") if self._cgroup else None,
        }
        spec_path = newroot.with_suffix(".json")
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.Popen([sys.executable, "-I", "-S", str(INIT), str(spec_path)], env={}, cwd="/",
                                stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)
        self._procs.append(proc)
        return proc

    def _read_only(self) -> list[str]:
        paths = list(SYSTEM_READ_ONLY)
        for p in (sys.base_prefix, sys.prefix, str(Path(sys.executable).resolve().parents[1])):
            if p not in paths and not any(p.startswith(q + "/") for q in SYSTEM_READ_ONLY):
                paths.append(p)
        if self.bundle is not None:
            paths.append(str(self.bundle))
        return paths

    def kill(self) -> None:
        """Kill every process of the sandbox (the namespace goes with its first process)."""
        for proc in self._procs:
            kill_group(proc)
        if self._cgroup is not None:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (self._cgroup / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)

    def close(self) -> None:
        self.kill()
        if self._cgroup is not None:
            for _ in range(50):
                try:
                    self._cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
            self._cgroup = None


def _set_rlimits(limits: dict[str, int]) -> None:
    import resource

    for name, value in limits.items():
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError):
            pass


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the grader dies."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)
