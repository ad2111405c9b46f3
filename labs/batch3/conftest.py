"""Lab 3's test harness: launch ``mpiexec -n p`` on mpi_checks.py once per p and hand
each group's verdict (one collective's one algorithm, or the argument check, or the
calibration) to its own test.

Process start-up dominates on a 2-core machine, so one launch checks every group the
session's selected tests need at a given p (``-k allreduce`` launches only the allreduce
groups), and the results are cached for the session.  Every launch has a timeout and its
whole process group is killed on expiry; inside, a rank that hears nothing from the others
for CASE_DEADLINE_S aborts the launch (a deadlock fails fast).  When a launch dies, the
group it was in is failed — with the exception a rank raised, when one did, else as a
deadlock with the ranks' stderr — and the groups not yet checked are relaunched: one
failure costs only its own points, and each test's message holds only its own group's
errors.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlsys_labs.collectives.plumbing import run_mpi

WORKER = Path(__file__).with_name("mpi_checks.py")
LAUNCH_TIMEOUT_S = 240.0


def pytest_configure(config):
    # the plugin registers `step` too; registering it twice is harmless
    config.addinivalue_line("markers", "step(k): the README step a test belongs to")


class MpiChecks:
    """Session cache: p -> group -> {"failures": [...], "cases": n, ...}."""

    def __init__(self, workdir: Path, wanted: dict[int, list[str]]):
        self.workdir = workdir
        self.wanted = wanted  # p -> the groups the session's selected tests ask for
        self.results: dict[int, dict[str, dict]] = {}
        self.launches = 0

    def group(self, p: int, name: str, seed: int) -> dict:
        done = self.results.setdefault(p, {})
        if name not in done:
            pending = [g for g in self.wanted.get(p, []) if g not in done]
            self._run(p, pending if name in pending else [name] + pending, seed)
        return done[name]

    def _run(self, p: int, pending: list[str], seed: int) -> None:
        results = self.results[p]
        while pending:
            self.launches += 1
            path = self.workdir / f"p{p}-launch{self.launches}.jsonl"
            proc = run_mpi(p, [str(WORKER), str(path), str(seed), ",".join(pending)], timeout=LAUNCH_TIMEOUT_S)
            events = _jsonl(path)
            for e in events:
                if e["event"] == "end":
                    results[e["group"]] = {**e, "launch": None}
            unfinished = [g for g in pending if g not in results]
            if not unfinished:
                return
            started = [e["group"] for e in events if e["event"] == "start" and e["group"] not in results]
            raised = [e for r in range(p) for e in _jsonl(Path(f"{path}.rank{r}"))]
            stderr = proc.stderr or ""
            died = (f"mpiexec -n {p} exited with {proc.returncode} before finishing "
                    f"(a crash, an abort after an exception or a deadlock, or the {LAUNCH_TIMEOUT_S:.0f} s timeout)")
            if not started:  # died before any group started (an import error): all fail alike
                for g in unfinished:
                    results[g] = {"group": g, "failures": [], "cases": 0, "launch": died,
                                  "stderr": _tail(stderr, 40)}
                return
            g = started[0]
            own = [e for e in raised if e["group"] == g]
            results[g] = {"group": g, "failures": own, "cases": None, "launch": died,
                          "stderr": "" if own else _own_lines(stderr, g)}
            pending = [u for u in unfinished if u != g]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _tail(text: str, lines: int) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept)


def _own_lines(stderr: str, group: str) -> str:
    """The stderr lines about this group (the ranks' deadlock reports), else the tail."""
    own = [line for line in stderr.splitlines() if f"] {group} / " in line]
    return "\n".join(own[:12]) if own else _tail(stderr, 30)


@pytest.fixture(scope="session")
def mpi_checks(request, tmp_path_factory) -> MpiChecks:
    wanted: dict[int, list[str]] = {}
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "group" in params and "p" in params:
            groups = wanted.setdefault(params["p"], [])
            if params["group"] not in groups:
                groups.append(params["group"])
    return MpiChecks(tmp_path_factory.mktemp("lab3-mpi"), wanted)


@pytest.fixture
def mpi_group(mpi_checks, seed):
    """``mpi_group(p, group)``: fail with this group's errors only — the first error line
    first (``NotImplementedError: Lab 3 (collectives) allreduce_ring: ... (rank 2, in
    allreduce_ring ...)``), then the ranks' tracebacks."""
    return lambda p, group: _assert_group_passed(mpi_checks, p, group, seed)


def _assert_group_passed(checks: MpiChecks, p: int, group: str, seed: int) -> None:
    result = checks.group(p, group, seed)
    failures, launch = result["failures"], result.get("launch")
    if not failures and not launch and result.get("cases"):
        return
    lines = []
    if failures:
        first = failures[0]
        lines.append(first["first"])
        ranks = ", ".join(str(f["rank"]) for f in failures)
        lines.append(f"{group} on {p} ranks failed in case {first['label']!r} (raised on rank(s) {ranks})")
        def error(f):  # the error line without its "(rank r, in ...)" tail
            return re.sub(r" \(rank \d+(, in [^)]*\))?\)$", "", f["first"])
        same = [str(f["rank"]) for f in failures[1:] if error(f) == error(first)]
        if same:
            lines.append(f"  the same error on rank(s) {', '.join(same)}")
        others = [f["first"] for f in failures[1:] if error(f) != error(first)]
        lines += [f"  also: {o}" for o in others[:4]]
        if launch:
            lines.append(f"{launch}; the other ranks were left waiting for the rank(s) that raised")
        lines.append(f"--- traceback (rank {first['rank']}) ---")
        lines.append(_tail(first["traceback"], 25))
    elif launch:
        deadlock = "deadlock" in result.get("stderr", "")
        lines.append(f"{'Deadlock' if deadlock else 'Crash'} in {group} on {p} ranks (no rank raised an exception): "
                     f"{launch}")
        lines.append("--- stderr of the ranks ---")
        lines.append(result.get("stderr", ""))
    else:
        lines.append(f"{group} on {p} ranks: no case ran")
    pytest.fail("\n".join(lines), pytrace=False)
