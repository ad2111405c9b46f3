"""Mutation testing of the graded tests: does each realistic learner bug lose points?

A lab's catalogue (``labs/batchN/mutants.py``) lists bugs learners really make, each as
one exact edit to the reference (``old`` text → ``new`` text in one file) and a line
saying which mistake it models.  For each entry the harness

1. copies the project (``mlsys_labs``, the lab's tests, ``pyproject.toml``) into a
   temporary folder — never the working tree — and applies the edit there; an ``old``
   that no longer occurs exactly once makes the entry *stale* (the catalogue can't rot
   silently when the code changes);
2. runs the lab's public graded tests with ``-x`` in a fresh process with fresh caches
   (numba's cache, bytecode, Triton's cache all inside the temporary folder): first the
   entry's ``tests`` (where the bug should show; speed only), then the whole lab, then
   the hidden tests if the public ones missed it;
3. records *killed* (by which test, public or hidden) or *survived*.

A mutant is a test of the tests: a survivor means a learner could make that mistake and
still get full marks.  Afterwards every killing test is run once more on the unmutated
reference with the same seed: a kill by a test that fails on correct code too is no kill.

    mlsys-labs mutants --lab 2 --jobs 2
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..common.procs import kill_group
from .grader import read_events

MIN_PUBLIC = 0.90          # share of the catalogue the public tests alone must kill
TEST_TIMEOUT_S = 300.0     # per test (pytest-timeout), as in grading
RUN_TIMEOUT_S = 900.0      # per pytest process: a hang past this counts as a kill by timeout


@dataclass(frozen=True)
class Mutant:
    """One realistic learner bug: replace ``old`` (which must occur exactly once in
    ``file``) by ``new``.  ``why`` names the mistake; ``tests`` are pytest arguments
    to try first (where the bug should be caught) — they only make the run faster."""
    name: str
    file: str
    old: str
    new: str
    why: str
    tests: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What the graded tests made of one mutant."""
    mutant: Mutant
    status: str            # "killed" | "survived" | "stale" | "invalid" (killed by a test the reference fails too)
    by: str = ""           # the killing test's node id (or what stopped the run)
    public: bool = False   # killed by a public (non-hidden) test
    seconds: float = 0.0
    detail: str = ""       # the killing failure's first lines, or why the entry is stale


class CatalogueError(ValueError):
    """A catalogue that can't be used as written (missing, malformed, duplicate names)."""


class HarnessError(RuntimeError):
    """The tests could not be run at all (bad pytest arguments, a reference that fails)."""


# ------------------------------------------------------------------------ the catalogue
def catalogue_path(root: Path, lab: int) -> Path:
    return Path(root) / "labs" / f"batch{lab}" / "mutants.py"


def labs_with_catalogue(root: Path) -> list[int]:
    return [n for n in range(1, 8) if catalogue_path(root, n).is_file()]


def load_catalogue(root: Path, lab: int) -> tuple[list[Mutant], int | None]:
    """(the entries, the catalogue's ``MAX_JOBS`` or None)."""
    path = catalogue_path(root, lab)
    if not path.is_file():
        raise CatalogueError(f"lab {lab} has no mutation catalogue ({path} is missing)")
    spec = importlib.util.spec_from_file_location(f"_mlsys_mutants_lab{lab}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mutants = list(getattr(module, "MUTANTS", []))
    if not mutants:
        raise CatalogueError(f"{path} defines no MUTANTS")
    seen: set[str] = set()
    for m in mutants:
        if not isinstance(m, Mutant):
            raise CatalogueError(f"{path}: every entry of MUTANTS must be a Mutant, got {type(m).__name__}")
        if m.name in seen:
            raise CatalogueError(f"{path}: two entries are named {m.name!r}")
        if not m.why.strip():
            raise CatalogueError(f"{path}: {m.name} does not say which learner mistake it models")
        if m.old == m.new:
            raise CatalogueError(f"{path}: {m.name} changes nothing (old == new)")
        seen.add(m.name)
    return mutants, getattr(module, "MAX_JOBS", None)


def stale_reason(root: Path, m: Mutant) -> str | None:
    """Why the edit can't be applied to the code as it is now (None when it can)."""
    path = Path(root) / m.file
    if not path.is_file():
        return f"{m.file} does not exist"
    count = path.read_text().count(m.old)
    if count != 1:
        return f"the old text occurs {count} times in {m.file} (it must occur exactly once)"
    return None


# ---------------------------------------------------------------------------- running
def _copy_project(root: Path, lab: int, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    shutil.copytree(root / "mlsys_labs", dest / "mlsys_labs", ignore=ignore)
    shutil.copytree(root / "labs" / f"batch{lab}", dest / "labs" / f"batch{lab}", ignore=ignore)
    shutil.copy2(root / "pyproject.toml", dest / "pyproject.toml")


def fresh_env(copy: Path) -> dict:
    """The child's environment: the copy first on the path, every cache inside the copy."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["MLSYS_LABS_HOME"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["NUMBA_CACHE_DIR"] = str(copy / ".mlsys" / "numba-cache")
    env["TRITON_CACHE_DIR"] = str(copy / ".mlsys" / "triton-cache")
    env.pop("MLSYS_SEED", None)
    return env


def _pytest(copy: Path, args: list[str], seed: int, log: Path, test_timeout: float,
            run_timeout: float) -> tuple[str, int | None]:
    """Run pytest on the copy with its fresh caches and the grade log; (output, exit code,
    None when it ran past ``run_timeout`` and was killed)."""
    log.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", *args, "-q", "--no-header", "-p", "no:cacheprovider",
           "--seed", str(seed), f"--timeout={test_timeout:g}", "--grade-log", str(log)]
    proc = subprocess.Popen(cmd, cwd=copy, env=fresh_env(copy), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=run_timeout)
        return out, proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return proc.communicate()[0], None
    finally:
        kill_group(proc)


def _run_pytest(copy: Path, args: list[str], marker: str, seed: int, log: Path,
                test_timeout: float, run_timeout: float) -> tuple[str | None, str]:
    """Run pytest with ``-x``; return (the first failing node id or None, its output)."""
    out, code = _pytest(copy, [*args, "-x", "-m", marker], seed, log, test_timeout, run_timeout)
    if code is None:
        return _last_started(log) or "(timeout)", f"the tests ran past {run_timeout:.0f} s (a hang)\n{out[-2000:]}"
    if code in (0, 5):     # all passed, or nothing selected
        return None, out
    if code in (3, 4):     # pytest's internal or usage error: says nothing about the mutant
        raise HarnessError(f"pytest {' '.join(args)} could not run (exit {code}):\n{out[-1500:]}")
    failed = _first_failure(log)
    if failed is None:     # a collection error, an internal error or a crash
        failed = _last_started(log) or "(collection)"
    return failed, out


def _events(log: Path) -> list[dict]:
    return read_events(log)[0]


def _first_failure(log: Path) -> str | None:
    for ev in _events(log):
        if ev.get("event") == "end" and ev.get("outcome") == "failed":
            return ev.get("nodeid")
    return None


def _last_started(log: Path) -> str | None:
    started = [ev["nodeid"] for ev in _events(log) if ev.get("event") == "start"]
    ended = {ev.get("nodeid") for ev in _events(log) if ev.get("event") == "end"}
    pending = [n for n in started if n not in ended]
    return pending[-1] if pending else None


def _first_lines(output: str, n: int = 6) -> str:
    lines = [l for l in output.splitlines() if l.startswith("E ") or "Error" in l]
    return "\n".join((lines or output.strip().splitlines()[-n:])[:n])


def run_mutant(root: Path, lab: int, m: Mutant, *, seed: int, suite: tuple[str, ...] | None = None,
               test_timeout: float = TEST_TIMEOUT_S, run_timeout: float = RUN_TIMEOUT_S) -> Outcome:
    """Apply one mutant in a temporary copy and run the graded tests against it.

    ``suite``: the pytest arguments that stand for "the whole lab" (default
    ``labs/batchN``); the honesty tests narrow it to stay fast."""
    root = Path(root).resolve()
    t0 = time.time()
    reason = stale_reason(root, m)
    if reason:
        return Outcome(m, "stale", detail=reason)
    suite = tuple(suite) if suite else (f"labs/batch{lab}",)
    with tempfile.TemporaryDirectory(prefix=f"mlsys-mutant-{m.name[:40]}-") as tmp:
        copy = Path(tmp)
        _copy_project(root, lab, copy)
        target = copy / m.file
        target.write_text(target.read_text().replace(m.old, m.new, 1))
        log = copy / "events.jsonl"
        phases = []
        if m.tests:
            phases.append((list(m.tests), "not hidden", True))
        phases.append((list(suite), "not hidden", True))
        phases.append((list(suite), "hidden", False))
        for args, marker, public in phases:
            failed, out = _run_pytest(copy, args, marker, seed, log, test_timeout, run_timeout)
            if failed is not None:
                return Outcome(m, "killed", by=failed, public=public, seconds=time.time() - t0,
                               detail=_first_lines(out))
    return Outcome(m, "survived", seconds=time.time() - t0)


def verify_kills(root: Path, lab: int, outcomes: list[Outcome], *, seed: int,
                 test_timeout: float = TEST_TIMEOUT_S, run_timeout: float = RUN_TIMEOUT_S) -> None:
    """Run every killing test on the unmutated reference, same seed: a kill counts only
    if that test passes there (a test that fails on correct code says nothing of a bug).
    Such outcomes become ``"invalid"``.  Cheaper and more to the point than running the
    whole suite on the reference first."""
    tests = sorted({o.by for o in outcomes if o.status == "killed" and "::" in o.by})
    if not tests:
        return
    with tempfile.TemporaryDirectory(prefix="mlsys-mutant-reference-") as tmp:
        copy = Path(tmp)
        _copy_project(Path(root).resolve(), lab, copy)
        log = copy / "events.jsonl"
        out, _ = _pytest(copy, tests, seed, log, test_timeout, run_timeout)
        passed = {ev["nodeid"] for ev in _events(log) if ev.get("event") == "end" and ev.get("outcome") == "passed"}
    for o in outcomes:
        if o.status == "killed" and "::" in o.by and o.by not in passed:
            o.status = "invalid"
            o.detail = (f"{o.by} also fails on the unmutated reference (seed {seed}), so it proves nothing "
                        f"about this bug\n{_first_lines(out)}")


@dataclass
class Report:
    lab: int
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def killed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "killed"]

    @property
    def public_fraction(self) -> float:
        return sum(o.public for o in self.killed) / len(self.outcomes) if self.outcomes else 0.0

    def problems(self, min_public: float = MIN_PUBLIC) -> list[str]:
        out = [f"{o.mutant.name}: survived ({o.mutant.why})" for o in self.outcomes if o.status == "survived"]
        out += [f"{o.mutant.name}: {o.detail.splitlines()[0]}" for o in self.outcomes if o.status == "invalid"]
        out += [f"{o.mutant.name}: stale — {o.detail}" for o in self.outcomes if o.status == "stale"]
        if self.outcomes and len(self.outcomes) == len(self.killed) and self.public_fraction < min_public:
            out.append(f"only {100 * self.public_fraction:.0f}% killed by public tests (< {100 * min_public:.0f}%)")
        return out

    def table(self) -> str:
        rows = [f"{'mutant':<44}{'verdict':<10}{'by':<8}{'s':>6}  killing test / why"]
        for o in self.outcomes:
            who = "public" if o.public else ("hidden" if o.status == "killed" else "")
            what = o.by if o.status == "killed" else (o.detail or o.mutant.why)
            rows.append(f"{o.mutant.name[:43]:<44}{o.status:<10}{who:<8}{o.seconds:>6.1f}  {what}")
        n, k = len(self.outcomes), len(self.killed)
        rows.append(f"Lab {self.lab}: {k}/{n} killed, {sum(o.public for o in self.killed)} by public tests "
                    f"({100 * self.public_fraction:.0f}%); seed {self.seed}")
        return "\n".join(rows)

    def as_dict(self) -> dict:
        return {"lab": self.lab, "seed": self.seed, "outcomes": [
            {**asdict(o), "mutant": asdict(o.mutant)} for o in self.outcomes]}


def run_catalogue(root: Path, lab: int, *, seed: int, jobs: int = 1, only: set[str] | None = None,
                  progress=None, test_timeout: float = TEST_TIMEOUT_S, suite: tuple[str, ...] | None = None) -> Report:
    mutants, max_jobs = load_catalogue(root, lab)
    if only:
        unknown = only - {m.name for m in mutants}
        if unknown:
            raise CatalogueError(f"lab {lab}'s catalogue has no entry named {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.name in only]
    jobs = max(1, min(jobs, max_jobs or jobs, len(mutants)))
    report = Report(lab=lab, seed=seed)

    def one(m: Mutant) -> Outcome:
        o = run_mutant(root, lab, m, seed=seed, test_timeout=test_timeout, suite=suite)
        if progress is not None:
            progress(o)
        return o

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        report.outcomes = list(pool.map(one, mutants))
    verify_kills(root, lab, report.outcomes, seed=seed, test_timeout=test_timeout)
    return report
