"""Lab 3's test harness: launch ``mpiexec -n p`` on mpi_checks.py once per p and hand
each collective family's verdict to its own test.

Process start-up dominates on a 2-core machine, so one launch checks every family at a
given p (hundreds of cases) and the results are cached for the session.  Every launch
has a timeout and its whole process group is killed on expiry; inside, a rank that hears
nothing from the others for CASE_DEADLINE_S aborts the launch (a deadlock fails fast).
When a launch dies, the family it was in is failed with the ranks' stderr, and the
families not yet checked are relaunched — one deadlock costs only its own points.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsys_labs.collectives.launch import run_mpi

WORKER = Path(__file__).with_name("mpi_checks.py")
FAMILIES = ("barrier", "bcast", "reduce", "allreduce", "reduce_scatter", "allgather", "alltoall",
            "validation", "message_counts", "allreduce_auto", "calibration")
# beyond p = 5, only the families whose non-power-of-two fold changes shape with rem = p − 2^⌊lg p⌋
FOLD_FAMILIES = ("allreduce", "reduce_scatter", "allgather")
LAUNCH_TIMEOUT_S = 240.0


class MpiChecks:
    """Session cache: p -> family -> {"failures": [...], "cases": n, "stderr": ...}."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.results: dict[int, dict[str, dict]] = {}

    def family(self, p: int, name: str, seed: int) -> dict:
        if p not in self.results:
            self.results[p] = self._run_all(p, seed)
        return self.results[p][name]

    def _run_all(self, p: int, seed: int) -> dict[str, dict]:
        results: dict[str, dict] = {}
        pending = list(FAMILIES if p <= 5 else FOLD_FAMILIES)
        attempt = 0
        while pending:
            attempt += 1
            path = self.workdir / f"p{p}-attempt{attempt}.jsonl"
            proc = run_mpi(p, [str(WORKER), str(path), str(seed), ",".join(pending)], timeout=LAUNCH_TIMEOUT_S)
            stderr = (proc.stderr or "")[-6000:]
            events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
            started = [e["family"] for e in events if e["event"] == "start"]
            for e in events:
                if e["event"] == "end":
                    results[e["family"]] = {**e, "stderr": stderr, "returncode": proc.returncode}
            unfinished = [f for f in pending if f not in results]
            if not unfinished:
                break
            died = (f"mpiexec -n {p} exited with {proc.returncode} before finishing "
                    f"(a crash, an abort after a deadlock, or the {LAUNCH_TIMEOUT_S:.0f} s timeout)")
            in_progress = [f for f in started if f not in results]
            if not in_progress:  # died before any family started (an import error): all fail alike
                for f in unfinished:
                    results[f] = {"family": f, "failures": [died], "cases": 0, "stderr": stderr,
                                  "returncode": proc.returncode}
                break
            results[in_progress[0]] = {"family": in_progress[0], "failures": [died + " during this family"],
                                       "cases": 0, "stderr": stderr, "returncode": proc.returncode}
            pending = [f for f in unfinished if f != in_progress[0]]
        return results


@pytest.fixture(scope="session")
def mpi_checks(tmp_path_factory) -> MpiChecks:
    return MpiChecks(tmp_path_factory.mktemp("lab3-mpi"))


@pytest.fixture
def family_passes(mpi_checks, seed):
    """``family_passes(p, name)``: fail with every rank's errors and the children's stderr
    (so a starter's NotImplementedError shows in the test's output)."""
    return lambda p, name: _assert_family_passed(mpi_checks, p, name, seed)


def _assert_family_passed(checks: MpiChecks, p: int, name: str, seed: int) -> None:
    result = checks.family(p, name, seed)
    if result["failures"] or result.get("cases", 0) == 0:
        failures = "\n  ".join(result["failures"][:12]) or "no case ran"
        pytest.fail(f"{name} on {p} ranks ({result.get('cases', 0)} cases run):\n  {failures}\n"
                    f"--- stderr of the ranks (tail) ---\n{result['stderr']}", pytrace=False)


