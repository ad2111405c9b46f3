"""``mlsys-labs gpu-check``: every GPU test and the GPU benchmarks of labs 4–6 in one go.

It runs on the Python that runs it and installs nothing (``scripts/gpu-check`` picks that
Python: the current one when it has torch, else the project's venv).  Three phases, each a
pytest run in its own process group, all inside one time budget (``--budget``, default 8 min),
in this order so that what the budget leaves out comes last:

1. **GPU tests** — every test marked ``gpu`` under ``labs/``, with ``--require-gpu`` (a skip
   is a failure);
2. **GPU benchmarks** — ``benchmarks/test_lab{4,5,6}_*.py -m gpu --benchmark-only``; their
   figures go to ``benchmarks/results/<gpu>.json`` (``record_figure``);
3. **lab 4 natively** — lab 4's other tests, which on a GPU compile and run every kernel for
   the card (under the interpreter they are part of ``make test``).

Each run logs its collected tests and outcomes (the plugin's ``--grade-log``), so the counts
survive a run stopped by the budget.  The summary — environment, counts, elapsed time, the
figures of this run — is printed and written as Markdown to ``<out>/gpu-check-<machine>.md``.

Without CUDA the check still runs end to end: the GPU tests and benchmarks are collected and
skipped, and counted ("N GPU tests skipped: no CUDA"); lab 4's native run is left out.

Exit status: 0 — a CUDA GPU ran everything and all passed within the budget; 1 — a test or
benchmark failed, or the budget ran out; 2 — this Python lacks torch or pytest (a one-line
error); 3 — no CUDA GPU here: the run went end to end, every GPU part skipped and counted.
``--quick`` keeps to lab 4 (its GPU tests; vector add and softmax natively; the ceilings and one
softmax size benchmarked): a smoke test of the machine in a minute or two.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import device
from .paths import project_root, results_dir
from .procs import kill_group

NO_CUDA = 3
DEFAULT_BUDGET_S = 480.0
TESTED = "Python 3.11–3.12, torch ≥ 2.8, triton 3.6–3.8"
NUMBA_PROBE = """
import numpy as np
from numba import cuda
@cuda.jit
def one(a):
    a[0] = 1.0
a = cuda.to_device(np.zeros(1, np.float32))
one[1, 1](a)
assert a.copy_to_host()[0] == 1.0
"""


class GpuCheckError(Exception):
    """This Python cannot run the check (printed as one line, exit status 2)."""


@dataclass
class Phase:
    """One pytest run of the check."""

    name: str
    args: list[str]
    needs_cuda: bool = False   # left out (not run) without CUDA
    what: str = "tests"


@dataclass
class PhaseResult:
    name: str
    what: str
    ran: bool
    note: str = ""
    collected: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    unfinished: int = 0          # collected but never finished: the budget ran out, or pytest crashed
    out_of_time: bool = False    # the budget ran out before or during this run
    seconds: float = 0.0
    returncode: int | None = None
    skip_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        if self.out_of_time:
            return False
        return not self.ran or (self.failed == 0 and self.unfinished == 0 and self.returncode in (0, 5))


@dataclass
class Environment:
    python: str
    cuda: bool
    gpu: str | None
    versions: dict[str, str | None]
    numba_cuda_ok: bool
    numba_cuda_note: str = ""

    def warnings(self) -> list[str]:
        out = []
        if not (3, 11) <= sys.version_info[:2] <= (3, 12):
            out.append(f"Python {sys.version.split()[0]} is outside the tested range ({TESTED})")
        if _version_tuple(self.versions.get("torch")) < (2, 8):
            out.append(f"torch {self.versions.get('torch')} is older than 2.8 ({TESTED})")
        triton = _version_tuple(self.versions.get("triton"))
        if triton and not (3, 6) <= triton[:2] <= (3, 8):
            out.append(f"triton {self.versions.get('triton')} is outside the tested range ({TESTED})")
        return out


def _version_tuple(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "").split("+")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def probe_environment() -> Environment:
    """What this Python has: torch (required), CUDA, and the versions the labs depend on."""
    for module in ("torch", "pytest", "numpy"):
        try:
            __import__(module)
        except ImportError as exc:
            raise GpuCheckError(f"{sys.executable} cannot import {module} ({exc}); run scripts/gpu-check, "
                                "which falls back to the project's venv") from None
    import torch

    dists = ("torch", "triton", "numba", "numba-cuda", "transformers", "pytest", "pytest-benchmark",
             "pytest-timeout", "hypothesis")
    versions = {d: _version(d) for d in dists}
    versions["torch"] = torch.__version__
    versions["CUDA (torch)"] = torch.version.cuda
    cuda = device.has_cuda()
    env = Environment(python=f"{sys.executable} (Python {sys.version.split()[0]})", cuda=cuda,
                      gpu=device.gpu_name() if cuda else None, versions=versions, numba_cuda_ok=True)
    if cuda:
        try:
            probe = subprocess.run([sys.executable, "-c", NUMBA_PROBE], capture_output=True, text=True, timeout=300)
            env.numba_cuda_ok, last = probe.returncode == 0, (probe.stderr.strip().splitlines() or ["no output"])[-1]
        except subprocess.TimeoutExpired:
            env.numba_cuda_ok, last = False, "a one-element kernel took over 300 s"
        if not env.numba_cuda_ok:
            env.numba_cuda_note = (f"Numba cannot compile for this GPU ({last[:160]}); "
                                   'pip install "numba-cuda[cu12]" provides NVVM and libdevice')
    return env


def plan(quick: bool, env: Environment) -> list[Phase]:
    """The three pytest runs (a smaller selection with ``quick``)."""
    numba = [] if env.numba_cuda_ok else ["--ignore=labs/batch4/test_numba_cuda.py"]
    if quick:
        gpu_tests = ["labs/batch4", "-m", "gpu"]
        native = ["labs/batch4/test_vector_add.py", "labs/batch4/test_softmax.py", "-m", "not gpu"]
        benches = ["benchmarks/test_lab4_ceilings.py", "benchmarks/test_lab4_softmax.py", "-k",
                   "ceilings or 2048"]
    else:
        gpu_tests = ["labs", "-m", "gpu"]
        native = ["labs/batch4", "-m", "not gpu"]
        benches = sorted(str(p.relative_to(project_root()))
                         for n in (4, 5, 6) for p in (project_root() / "benchmarks").glob(f"test_lab{n}_*.py"))
    require = ["--require-gpu"] if env.cuda else []
    bench_opts = ["-m", "gpu", "--benchmark-only", "--benchmark-columns=median,rounds"]
    return [Phase("GPU tests", gpu_tests + require + numba),
            Phase("GPU benchmarks", benches + bench_opts, what="benchmarks"),
            Phase("lab 4 natively", native + require + numba, needs_cuda=True)]


def read_log(path: Path, result: PhaseResult) -> None:
    """Fold the plugin's ``--grade-log`` events into counts."""
    if not path.exists():
        return
    finished = set()
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue   # a line cut by a kill
        if event.get("event") == "collected":
            result.collected = len(event["items"])
        elif event.get("event") == "end":
            finished.add(event["nodeid"])
            outcome = event.get("outcome")
            setattr(result, outcome, getattr(result, outcome) + 1)
            if outcome == "skipped":
                reason = event.get("output", "").strip().removeprefix("skipped: ")[:120] or "(no reason)"
                result.skip_reasons[reason] = result.skip_reasons.get(reason, 0) + 1
    result.unfinished = result.collected - len(finished)


def run_phase(phase: Phase, env: Environment, deadline: float, logs: Path) -> PhaseResult:
    result = PhaseResult(phase.name, phase.what, ran=False)
    if phase.needs_cuda and not env.cuda:
        result.note = "not run: no CUDA (under the interpreter these tests are part of `make test`)"
        return result
    left = deadline - time.monotonic()
    if left < 5:
        result.note, result.out_of_time = "not run: the time budget was spent", True
        return result
    log = logs / f"{phase.name.replace(' ', '-')}.jsonl"
    cmd = [sys.executable, "-m", "pytest", *phase.args, "-q", "-p", "no:cacheprovider", "--grade-log", str(log)]
    print(f"\n== gpu-check: {phase.name} ({left:.0f} s of the budget left)\n$ python {shlex.join(cmd[1:])}", flush=True)
    t0 = time.monotonic()
    result.returncode, result.out_of_time = run_within(cmd, left)
    result.ran, result.seconds = True, time.monotonic() - t0
    read_log(log, result)
    if result.out_of_time:
        result.note = f"stopped: the time budget ran out ({result.unfinished} not finished)"
    elif result.returncode not in (0, 1, 5):   # 2: interrupted (a collection error), 3: internal error, 4: usage
        result.note = f"pytest exited with status {result.returncode} (see its output above)"
    return result


def run_within(cmd: list[str], seconds: float, grace: float = 60.0) -> tuple[int, bool]:
    """Run pytest in its own process group for at most ``seconds``: then Ctrl-C (pytest tears its
    fixtures down, so launchers stop their own process groups), and after ``grace`` SIGKILL.
    Returns (exit status, whether the time ran out)."""
    proc = subprocess.Popen(cmd, cwd=project_root(), stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc.wait(timeout=seconds), False
    except subprocess.TimeoutExpired:
        print("\ngpu-check: the time budget ran out: interrupting pytest", flush=True)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        return proc.returncode if proc.returncode is not None else -9, True
    finally:
        kill_group(proc)   # whatever is left of the group


def _count_line(r: PhaseResult, cuda: bool) -> str:
    if not r.ran:
        return f"{r.name}: {r.note}"
    if not cuda and r.collected and r.skipped == r.collected and not r.out_of_time:
        return f"{r.skipped} GPU {r.what} skipped: no CUDA ({r.seconds:.0f} s)"
    line = (f"{r.name}: {r.passed} passed, {r.failed} failed, {r.skipped} skipped"
            f"{f', {r.unfinished} not finished' if r.unfinished else ''} of {r.collected} ({r.seconds:.0f} s)")
    return line + (f"; {r.note}" if r.note else "")


def summary(env: Environment, results: list[PhaseResult], elapsed: float, budget: float, since: float) -> str:
    """The Markdown summary: the machine, what ran, the counts, and this run's figures."""
    from .bench import figures_for, format_figures, machine_name

    lines = [f"# GPU check on {machine_name()}", "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {elapsed:.0f} s of a {budget:.0f} s budget; "
             f"{env.python}", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v or 'absent'} |" for k, v in env.versions.items()]
    lines += [""] + [f"- warning: {w}" for w in env.warnings()]
    if env.numba_cuda_note:
        lines.append(f"- labs/batch4/test_numba_cuda.py skipped: {env.numba_cuda_note}")
    lines += ["", "| phase | collected | passed | failed | skipped | not finished | seconds | note |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.collected} | {r.passed} | {r.failed} | {r.skipped} | {r.unfinished} | "
                     f"{r.seconds:.0f} | {r.note} |")
    lines += ["", *(f"- {_count_line(r, env.cuda)}" for r in results)]
    for r in results:
        lines += [f"- {r.name}, skipped {n}×: {reason}" for reason, n in r.skip_reasons.items()
                  if env.cuda or "CUDA" not in reason]
    for lab in (4, 5, 6):
        figures = [f for f in figures_for(lab) if f.measured_at >= since]
        if figures:
            lines += ["", f"## Lab {lab}", "", format_figures(figures)]
    return "\n".join(lines) + "\n"


def exit_status(env: Environment, results: list[PhaseResult]) -> int:
    if not all(r.ok for r in results):
        return 1
    return 0 if env.cuda else NO_CUDA


def run(quick: bool = False, budget: float = DEFAULT_BUDGET_S, out: Path | None = None) -> int:
    """The whole check; returns the exit status (see the module docstring)."""
    from .bench import machine_slug

    start, since = time.monotonic(), time.time()
    env = probe_environment()
    print(f"gpu-check: {env.python}; GPU: {env.gpu or 'none (no CUDA)'}; budget {budget:.0f} s"
          f"{'; quick' if quick else ''}", flush=True)
    for w in env.warnings():
        print(f"gpu-check: warning: {w}", flush=True)
    if env.numba_cuda_note:
        print(f"gpu-check: labs/batch4/test_numba_cuda.py skipped: {env.numba_cuda_note}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as logs:
        for phase in plan(quick, env):
            results.append(run_phase(phase, env, start + budget, Path(logs)))
    elapsed = time.monotonic() - start
    text = summary(env, results, elapsed, budget, since)
    path = (out or results_dir()) / f"gpu-check-{machine_slug()}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if env.cuda and any(r.what == "benchmarks" and r.passed for r in results):
        from .report import write_report

        write_report()
    print("\n== gpu-check: summary")
    for r in results:
        print(f"  {_count_line(r, env.cuda)}")
    status = exit_status(env, results)
    print(f"gpu-check: {elapsed:.0f} s; wrote {path}; exit status {status}"
          f"{' (no CUDA: GPU parts skipped, nothing verified)' if status == NO_CUDA else ''}", flush=True)
    return status
