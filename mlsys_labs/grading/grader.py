"""The grader: run a lab's graded tests against a submission, and score them — in a way
the submission's code cannot forge.

How a submission is graded
--------------------------
1. **Bundles.** The submission's ``mlsys_labs`` (refused if it holds links, device files
   or oversized files) is copied with the instructor's grading infrastructure on top
   (``common``, ``grading``, ``catalog``, ``cli``) into a *bundle* beside the lab's tests:
   one bundle of the visible tests (hidden ones cut out of the sources) and one of the
   hidden tests.  A third bundle holds the instructor's reference with every test.
2. **Sandboxes** (:mod:`mlsys_labs.grading.sandbox`): every bundle runs in its own — own
   filesystem with the bundle read-only, no network, an unprivileged user, limits, and
   nothing that outlives it.  The instructor's checkout, ``--out`` and the grader's
   environment (tokens, secrets) are not reachable from inside.
3. **Differential verdicts.** The reference and the submission run the same tests with
   the same session seed, so every test draws the same inputs.  While a test runs, each
   comparison it makes is recorded: every ``assert_close`` (the value compared, as a
   sample of up to 256 elements plus sums over all of them, with the test's tolerance) and
   every plain ``assert`` that passes (its line).  The grader — outside every sandbox —
   passes a test only if the submission's run says it passed *and* its record matches the
   reference's: the same comparisons, each value within twice the test's own tolerance of
   the reference's (both lie within the tolerance of the test's expected value).  A
   submission that patches pytest, the plugin, the event log or the tolerance helpers still
   has to produce the right values; one that implements nothing has none to show.
4. **Robust running.** pytest's child logs every test's start and end; the grader's own
   watchdog kills the sandbox when a test outlives its timeout (or the child goes silent,
   or the lab's deadline passes), and a crash fails only the running test: the run
   resumes with the tests not yet graded.  A malformed line in the log is ignored.  Which
   tests exist and what they are worth comes from the reference's run, never from the
   submission's.
5. Points come from ``@pytest.mark.points(n)``; a skipped test earns nothing; tests that
   need a GPU are left out of the score on a machine without one (and listed as such).
   Each solution function that matches the public reference after normalising names,
   comments and whitespace is reported (the reference is public: copying can't be
   prevented, but it can be seen).

Output: Gradescope's ``results.json`` (score, max_score, tests[] with name, score,
max_score, status, output, visibility) and a Markdown summary, written only by the
grader, atomically, once every lab is graded.  Hidden tests show their name, points and
verdict only.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..catalog import Lab, get_lab
from ..common import device
from ..common.paths import project_root
from .sandbox import NOBODY, REFERENCE_UID, Limits, Sandbox, isolation, minimal_env

# parts of mlsys_labs that are the instructor's yardsticks, never the submission's
INFRASTRUCTURE = ("common", "grading", "catalog.py", "cli.py", "__init__.py")
GRACE_S = 30.0          # beyond a test's own timeout before the watchdog kills the run
MAX_OUTPUT = 6000       # characters of failure output kept per test


class GradeError(RuntimeError):
    """Grading could not start (bad lab number, no submission, nothing importable)."""


@dataclass
class TestResult:
    name: str
    nodeid: str
    max_score: float
    score: float
    status: str            # "passed" | "failed"
    output: str
    hidden: bool
    duration: float = 0.0


@dataclass
class GradeResult:
    lab: Lab
    submission: Path
    tests: list[TestResult] = field(default_factory=list)
    not_run_gpu: list[str] = field(default_factory=list)
    execution_time: float = 0.0
    isolation: str = ""                     # how the submission's code was isolated (sandbox.describe)
    verified: bool = False                  # verdicts checked against the reference's run
    unverified: list[str] = field(default_factory=list)   # tests the reference itself failed in this run
    copies: list[str] = field(default_factory=list)       # solution functions identical to the reference
    suspicious: list[str] = field(default_factory=list)   # lines reaching for pytest, the grader, frames, ...
    seed: int | None = None

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    @property
    def fraction(self) -> float:
        return self.score / self.max_score if self.max_score else 0.0

    def gradescope(self) -> dict:
        return {
            "score": round(self.score, 4),
            "max_score": round(self.max_score, 4),
            "execution_time": round(self.execution_time, 1),
            "visibility": "visible",
            "stdout_visibility": "visible",
            "output": f"Lab {self.lab.number} — {self.lab.topic}: {self.score:g} / {self.max_score:g}"
                      + (f"; {len(self.not_run_gpu)} GPU-only tests not run (no CUDA GPU)" if self.not_run_gpu else "")
                      + "".join(f"\n{line}" for line in self.notes()),
            # a hidden test shows its name, points and verdict only: its output could quote its source
            "tests": [{
                "name": t.name, "score": t.score, "max_score": t.max_score, "status": t.status,
                "output": "" if t.hidden else t.output, "visibility": "after_published" if t.hidden else "visible",
            } for t in self.tests],
        }

    def markdown(self) -> str:
        pct = 100.0 * self.fraction
        lines = [f"## Lab {self.lab.number} — {self.lab.topic}: {self.score:g} / {self.max_score:g} ({pct:.0f}%)", "",
                 "| test | points | status |", "|---|---|---|"]
        for t in self.tests:
            mark = "✅" if t.status == "passed" else "❌"
            lines.append(f"| `{t.name}`{' (hidden)' if t.hidden else ''} | {t.score:g} / {t.max_score:g} | {mark} {t.status} |")
        failed = [t for t in self.tests if t.status != "passed" and not t.hidden]
        if failed:
            lines += ["", "<details><summary>Failures</summary>", ""]
            for t in failed:
                first = _first_error_line(t.output)
                lines.append(f"- `{t.name}`: {first}")
            lines += ["", "</details>"]
        if self.not_run_gpu:
            lines += ["", f"{len(self.not_run_gpu)} GPU-only tests were not run (no CUDA GPU on this machine)."]
        notes = self.notes()
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        return "\n".join(lines) + "\n"

    def notes(self) -> list[str]:
        """How far this grade can be trusted: isolation, verification, copies."""
        out = []
        if self.isolation:
            out.append(f"Submission code ran {self.isolation}.")
        if self.verified:
            out.append(f"Verdicts checked against the reference's run with the same seed ({self.seed}).")
        elif self.isolation:
            out.append("Verdicts NOT checked against a reference (the checkout graded itself): "
                       "this score is only as trustworthy as the code graded.")
        if self.unverified:
            out.append(f"{len(self.unverified)} tests failed on the reference itself in this run (twice), so the "
                       f"submission's passes could not be checked and earn nothing — a problem for the instructor, "
                       f"regrade: {', '.join(self.unverified[:5])}")
        if self.copies:
            out.append(f"{len(self.copies)} solution functions match the public reference after normalising "
                       f"names and whitespace: {', '.join(self.copies[:8])}"
                       + (" …" if len(self.copies) > 8 else ""))
        if self.suspicious:
            out.append(f"{len(self.suspicious)} lines of the submission reach for pytest, the grader or other "
                       f"processes (read them): {'; '.join(self.suspicious[:6])}" + (" …" if len(self.suspicious) > 6 else ""))
        return out


_FRAME = re.compile(r"^(?P<file>\S*mlsys_labs/(?P<rel>[\w/]+\.py)):(?P<line>\d+): (?:in (?P<func>\w+)|\w+)")
_NOT_IMPLEMENTED = re.compile(r"NotImplementedError: (?P<msg>[^\n]+)")


def failure_summary(output: str) -> str:
    """One line a learner can act on: the first error, and the function that raised it.

    A stub's ``NotImplementedError`` names its function itself; for any other error the
    deepest frame in the lab's own code (not the grading infrastructure) is named."""
    m = _NOT_IMPLEMENTED.search(output)
    if m and m.group("msg").strip():
        return f"NotImplementedError: {m.group('msg').strip()}"[:300]
    first = None
    for line in output.splitlines():
        st = line.strip()
        if st.startswith("E ") or (first is None and st.startswith(("crashed", "timed out", "not run"))):
            first = st[1:].strip() if st.startswith("E ") else st
            break
    if first is None:
        first = next((l.strip() for l in output.splitlines() if "Error" in l), None) \
            or (output.strip().splitlines() or ["(no output)"])[0].strip()
    where = None
    for line in output.splitlines():
        f = _FRAME.match(line.strip())
        if f and not f.group("rel").startswith(("grading/", "common/")):
            where = f"{f.group('func') or '?'} ({'mlsys_labs/' + f.group('rel')}:{f.group('line')})"
    return (first + (f" — raised in {where}" if where else ""))[:300]


def _first_error_line(output: str) -> str:
    return failure_summary(output).replace("|", "\\|")


def _trim(output: str, limit: int = MAX_OUTPUT) -> str:
    """The first line that matters, then the head of the output (where the first error is)."""
    if not output:
        return ""
    body = output if len(output) <= limit else (
        output[:limit] + f"\n… ({len(output) - limit} more characters trimmed)\n")
    return failure_summary(output) + "\n\n" + body


# ------------------------------------------------------------------ the submission tree
MAX_FILE_BYTES = 10 * 2**20       # one file of a submission's package
MAX_PACKAGE_BYTES = 100 * 2**20   # the whole package


def check_submission_files(src: Path) -> None:
    """Refuse what a package of Python sources never needs: symlinks (they could point at
    the instructor's files), device files, pipes and sockets, oversized files."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(src.parent)
            if path.is_symlink():
                raise GradeError(f"the submission contains a symbolic link, {rel}: submit plain files only")
            if name in dirnames:
                continue
            if not path.is_file():
                raise GradeError(f"the submission contains a special file (device, pipe or socket), {rel}")
            if st.st_size > MAX_FILE_BYTES:
                raise GradeError(f"{rel} is {st.st_size / 2**20:.0f} MiB; a file may be at most "
                                 f"{MAX_FILE_BYTES / 2**20:.0f} MiB")
            total += st.st_size
    if total > MAX_PACKAGE_BYTES:
        raise GradeError(f"the submission's mlsys_labs holds {total / 2**20:.0f} MiB; at most "
                         f"{MAX_PACKAGE_BYTES / 2**20:.0f} MiB")


def prepare_submission(submission: Path, root: Path, workdir: Path) -> Path:
    """Copy the submission's ``mlsys_labs`` into ``workdir`` with the instructor's
    infrastructure on top; return ``workdir`` (the folder to put first on PYTHONPATH)."""
    src = submission / "mlsys_labs"
    if src.is_symlink():
        raise GradeError(f"{src} is a symbolic link: submit the package itself")
    if not (src / "__init__.py").is_file():
        raise GradeError(f"no mlsys_labs package in {submission} (expected {src}/__init__.py)")
    check_submission_files(src)
    dst = workdir / "mlsys_labs"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in INFRASTRUCTURE:
        ours = root / "mlsys_labs" / name
        theirs = dst / name
        if theirs.is_dir():
            shutil.rmtree(theirs)
        elif theirs.exists():
            theirs.unlink()
        if ours.is_dir():
            shutil.copytree(ours, theirs, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ours, theirs)
    return workdir


def make_bundle(package_from: Path, root: Path, lab: Lab, dest: Path, *, tests: str) -> Path:
    """A folder a sandbox runs: ``mlsys_labs`` (from ``package_from``, with the
    instructor's infrastructure), the lab's tests — ``tests`` is "visible" (hidden tests cut
    out of the sources), "hidden" or "all" — and ``pyproject.toml``; never the lab's
    mutation catalogue (it quotes the reference)."""
    from .starter import remove_hidden_tests

    prepare_submission(package_from, root, dest)
    shutil.copy2(root / "pyproject.toml", dest / "pyproject.toml")
    src = root / "labs" / f"batch{lab.number}"
    out = dest / "labs" / f"batch{lab.number}"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "mutants.py", "figures"))
    if (root / "labs" / "__init__.py").exists():
        shutil.copy2(root / "labs" / "__init__.py", dest / "labs" / "__init__.py")
    if tests == "visible":
        for path in out.rglob("*.py"):
            kept, _ = remove_hidden_tests(path.read_text(), str(path))
            if kept is None:
                path.unlink()
            else:
                path.write_text(kept)
    for sub in (".mlsys", "reports", "benchmarks/results"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def _child_env(bundle: Path, box: Sandbox, home: Path | None = None) -> dict:
    """A sandbox's environment: nothing of the grader's.  ``home`` (trusted runs only: a
    learner checking their own checkout) keeps that checkout's caches and environment."""
    if home is not None:
        return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(bundle), os.environ.get("PYTHONPATH")])),
                    MLSYS_LABS_HOME=str(home), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    return minimal_env(box.scratch, {"PYTHONPATH": str(bundle), "MLSYS_LABS_HOME": str(bundle)},
                       private_tmp=box.kind != "none")


def _sandbox(work: Path, bundle: Path, kind: str, home: Path | None = None, limits: Limits | None = None,
             uid: int = NOBODY) -> Sandbox:
    """The sandbox for one bundle: its state, reports and results folders writable."""
    scratch = work / "scratch"
    writable = [(scratch / "state", bundle / ".mlsys"), (scratch / "reports", bundle / "reports"),
                (scratch / "results", bundle / "benchmarks" / "results")]
    return Sandbox(work, bundle=bundle, scratch=scratch, kind=kind, extra_writable=writable, home=home,
                   limits=limits or Limits(), uid=uid)


def check_imports(lab: Lab, bundle: Path, box: Sandbox, timeout: float = 300) -> None:
    """Raise GradeError with the one-line cause if the lab's packages do not import."""
    code = "; ".join(f"import mlsys_labs.{p}" for p in lab.packages)
    out = box.scratch / "import-check.out"
    with open(out, "w") as f:
        proc = box.popen([sys.executable, "-c", code], env=_child_env(bundle, box, box.home), cwd=box.scratch, stdout=f)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            box.kill()
            raise GradeError(f"importing the submission's Lab {lab.number} code took over {timeout:.0f} s") from None
    box.kill()
    if rc != 0:
        lines = out.read_text(errors="replace").strip().splitlines() or ["(no error output)"]
        raise GradeError(f"the submission's Lab {lab.number} code does not import: {lines[-1][:500]}")


# ---------------------------------------------------------------------------- running
EVENTS = ("collected", "start", "end", "check")
MAX_EVENT_LINE = 1 << 20       # a longer line is garbage, not an event
MAX_CHECKS_PER_TEST = 20000


def read_events(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """New complete lines of the event log; a malformed line is skipped, never fatal."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(64 * MAX_EVENT_LINE)
    complete = data[: data.rfind(b"\n") + 1]
    events = []
    for line in complete.split(b"\n"):
        if not line or len(line) > MAX_EVENT_LINE:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if not (isinstance(ev, dict) and ev.get("event") in EVENTS):
            continue
        if ev["event"] == "collected":
            if isinstance(ev.get("items"), list) and all(isinstance(i, dict) and isinstance(i.get("nodeid"), str)
                                                         for i in ev["items"]):
                events.append(ev)
        elif isinstance(ev.get("nodeid"), str):
            events.append(ev)
    return events, offset + len(complete)


@dataclass
class Run:
    """What one series of pytest processes over a bundle reported (resumed after crashes)."""
    collected: dict[str, dict] = field(default_factory=dict)
    verdicts: dict[str, dict] = field(default_factory=dict)
    checks: dict[str, list] = field(default_factory=dict)
    output: str = ""


def _pytest_command(lab: Lab, bundle: Path, scratch: Path, *, timeout: float, seed: int | None, record: bool,
                    unneeded: Path | None, select: list[str] | None, pytest_args: tuple[str, ...]) -> list[str]:
    """The pytest command line of one attempt: events to ``events.jsonl``, tests in ``done.json`` skipped."""
    where = [str(bundle / n) for n in select] if select else [str(bundle / "labs" / f"batch{lab.number}")]
    return [sys.executable, "-m", "pytest", *where, "-c", str(bundle / "pyproject.toml"),
            "--rootdir", str(bundle), "--import-mode=importlib", "-p", "no:cacheprovider",
            f"--timeout={timeout:g}", "--grade-log", str(scratch / "events.jsonl"),
            "--grade-skip", str(scratch / "done.json"), "-q", "--no-header", "-p", "no:randomly",
            *(["--seed", str(seed)] if seed is not None else []),
            *(["-o", "enable_assertion_pass_hook=true", "--grade-record"] if record else []),
            *(["--grade-unneeded", str(unneeded)] if unneeded is not None else []), *pytest_args]


@dataclass
class Kill:
    """Why the watchdog stopped a pytest process: the test it blames (``"*"``: every test left) and the text."""
    nodeid: str | None
    text: str
    duration: float


@dataclass
class Watchdog:
    """The grader's own clocks over one pytest process; nothing the child writes extends them.

    A test's clock runs from its "start" event to the next "start" (an "end", real or forged,
    never stops it); the child's silence is measured from its last event of any kind."""
    timeout: float
    grace: float
    deadline: float | None
    output_bytes: int
    running: str | None = None
    started_at: float = field(default_factory=time.time)
    last_event: float = field(default_factory=time.time)

    def hear(self, events: list[dict], now: float) -> None:
        if events:
            self.last_event = now
        for ev in events:
            if ev["event"] == "start":
                self.running, self.started_at = ev["nodeid"], now

    def verdict(self, run: Run, now: float, printed: int) -> Kill | None:
        """A reason to kill the process now, or None."""
        limits = [_number(i.get("timeout"), self.timeout) for i in run.collected.values()] or [self.timeout]
        if self.running is not None:
            limit = _number(run.collected.get(self.running, {}).get("timeout"), self.timeout) + self.grace
            if now - self.started_at > limit:
                return Kill(self.running, f"timed out: still running after {limit:.0f} s (the grader killed "
                                          f"the test process)\n", limit)
        silent = now - self.last_event
        if silent > max(limits) + self.grace + 60:
            return Kill(self.running, f"timed out: the test process was silent for {silent:.0f} s "
                                      f"(the grader killed it)\n", silent)
        if printed > self.output_bytes:
            return Kill(self.running, f"killed: the test process printed more than {self.output_bytes >> 20} MiB\n", 0.0)
        if self.deadline is not None and now > self.deadline:
            return Kill("*", "not run: the lab's time limit for grading was reached\n", 0.0)
        return None


def _watch(proc, box: Sandbox, run: Run, log: Path, out_path: Path, dog: Watchdog, progress, on_verdict) -> Kill | None:
    """Fold the child's events into ``run`` until it exits or the watchdog kills the sandbox."""
    offset, kill = 0, None
    try:
        while True:
            events, offset = read_events(log, offset)
            dog.hear(events, time.time())
            for ev in events:
                _take_event(run, ev, progress, on_verdict)
            if proc.poll() is not None:
                break
            kill = dog.verdict(run, time.time(), out_path.stat().st_size)
            if kill is not None:
                break
            time.sleep(0.2)
    finally:
        box.kill()  # the whole sandbox: any process the tests left behind, detached or not
    for ev in read_events(log, offset)[0]:
        _take_event(run, ev, None, on_verdict)
    return kill


def _settle(run: Run, kill: Kill | None, running: str | None, returncode) -> bool:
    """Record what an ended attempt leaves unsaid; True when the remaining tests need another attempt."""
    failed = lambda text, duration=0.0: {"outcome": "failed", "output": text, "duration": duration}  # noqa: E731
    tail = "\n".join(run.output.strip().splitlines()[-30:])
    if kill is not None and kill.nodeid == "*":
        for n in run.collected:
            run.verdicts.setdefault(n, failed(kill.text))
        return False
    if kill is not None and kill.nodeid is not None:
        run.verdicts[kill.nodeid] = failed(kill.text, kill.duration)   # timed out, whatever it said
        return True
    pending = [n for n in run.collected if n not in run.verdicts]
    if not run.collected or not pending:
        return False
    if running is not None and running not in run.verdicts:
        run.verdicts[running] = failed(f"crashed: the test process died (exit code {returncode})\n{tail}\n")
        return True
    for n in pending:   # exited with tests left and none running (an internal error, a silent child)
        run.verdicts[n] = failed("not run: pytest stopped early\n" + tail)
    return False


def run_tests(lab: Lab, bundle: Path, box: Sandbox, *, timeout: float, pytest_args: tuple[str, ...] = (),
              progress=None, grace: float = GRACE_S, seed: int | None = None, deadline: float | None = None,
              record: bool = True, on_verdict=None, unneeded: Path | None = None,
              select: list[str] | None = None) -> Run:
    """Run the lab's tests in ``bundle`` inside ``box``, resuming after crashes and hangs.

    The grader's own clocks decide (:class:`Watchdog`): a test running longer than its
    timeout + ``grace``, a child silent for longer than the largest timeout + ``grace``, or
    the lab's ``deadline`` (a ``time.time()``) kills the sandbox; nothing the child writes
    extends them.  ``on_verdict(nodeid, outcome)`` hears each verdict as it comes; tests
    listed in the file ``unneeded`` when they are reached are skipped (the reference's run
    skips the tests the submission has already failed: their record would be compared with
    nothing)."""
    scratch, run = box.scratch, Run()
    cmd = _pytest_command(lab, bundle, scratch, timeout=timeout, seed=seed, record=record,
                          unneeded=unneeded, select=select, pytest_args=pytest_args)
    for attempt in itertools.count(1):
        (scratch / "done.json").write_text(json.dumps(sorted(run.verdicts)))
        (scratch / "events.jsonl").unlink(missing_ok=True)
        out_path = box.workdir / f"pytest-{attempt}.out"
        dog = Watchdog(timeout, grace, deadline, box.limits.output_bytes)
        with open(out_path, "w") as out:
            proc = box.popen(cmd, env=_child_env(bundle, box, box.home), cwd=scratch, stdout=out)
            kill = _watch(proc, box, run, scratch / "events.jsonl", out_path, dog, progress, on_verdict)
        run.output = out_path.read_text(errors="replace")
        if not _settle(run, kill, dog.running, proc.returncode):
            return run


def _number(value, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else default


def _take_event(run: Run, ev: dict, progress, on_verdict=None) -> None:
    """Fold one (untrusted) event into the run; anything unexpected is dropped."""
    kind = ev["event"]
    if kind == "collected":
        for item in ev["items"]:
            run.collected.setdefault(item["nodeid"], item)
        if progress is not None:
            progress.reset(total=len(run.collected))
            progress.update(len(run.verdicts))
    elif kind == "end":
        nodeid = ev["nodeid"]
        if nodeid in run.verdicts:
            return  # one verdict per test: a second "end" changes nothing
        outcome = ev.get("outcome") if ev.get("outcome") in ("passed", "failed", "skipped") else "failed"
        run.verdicts[nodeid] = {"outcome": outcome, "output": str(ev.get("output") or "")[:200000],
                                "duration": _number(ev.get("duration"), 0.0)}
        if progress is not None:
            progress.update(1)
        if on_verdict is not None:
            on_verdict(nodeid, outcome)
    elif kind == "check":
        checks = run.checks.setdefault(ev["nodeid"], [])
        if len(checks) < MAX_CHECKS_PER_TEST and ev["nodeid"] not in run.verdicts:
            checks.append(ev)


@dataclass
class GradeSession:
    """One grade of one lab: the settings every run shares, and the bundles and sandboxes it uses.

    Jobs (name → bundle and marker expression): ``visible`` and ``hidden`` run the submission,
    ``reference`` and ``reference-hidden`` the instructor's reference in one sandbox."""
    lab: Lab
    root: Path
    submission: Path
    sandbox: bool
    verify: bool
    seed: int
    timeout: float
    grace: float
    deadline: float
    pytest_args: tuple[str, ...]
    jobs: dict[str, tuple[Path, str]] = field(default_factory=dict)
    boxes: dict[str, Sandbox | None] = field(default_factory=dict)

    def run_job(self, name: str, *, progress=None, on_verdict=None, unneeded: Path | None = None) -> Run:
        bundle, marks = self.jobs[name]
        return run_tests(self.lab, bundle, self.boxes[name], timeout=self.timeout, grace=self.grace,
                         seed=self.seed, deadline=self.deadline, record=self.verify, progress=progress,
                         on_verdict=on_verdict, unneeded=unneeded,
                         pytest_args=(*(("-m", marks) if marks else ()), *self.pytest_args))


class SubmissionFailures:
    """The tests the submission has failed so far, shared with the reference's run as a file
    (it skips them: their record would be compared with nothing).  Two threads report."""

    def __init__(self, path: Path):
        self.path, self.failed, self.lock = path, set(), threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("[]")

    def heard(self, nodeid: str, outcome: str) -> None:
        if outcome != "passed":
            with self.lock:
                self.failed.add(nodeid)
                _write_atomically(self.path, json.dumps(sorted(self.failed)))
                self.path.chmod(0o644)


def _lab_and_paths(lab_number: int, root: Path | None, submission) -> tuple[Lab, Path, Path]:
    root = Path(root or project_root()).resolve()
    try:
        lab = get_lab(int(lab_number))
    except (KeyError, ValueError) as exc:
        raise GradeError(str(exc).strip("'\"")) from None
    tests_dir = root / "labs" / f"batch{lab.number}"
    if not (tests_dir.is_dir() and any(tests_dir.glob("test_*.py"))):
        raise GradeError(f"Lab {lab.number} has no graded tests in {root} yet (expected {tests_dir}/test_*.py)")
    submission = Path(submission or root).resolve()
    if not submission.exists():
        raise GradeError(f"submission path {submission} does not exist")
    return lab, root, submission


def _prepare(session: GradeSession, work: Path, kind: str, limits: Limits | None) -> None:
    """Bundles and sandboxes: the submission's visible and hidden tests, and the reference's."""
    s, lab = session, session.lab
    visible = make_bundle(s.submission, s.root, lab, work / "submission" / "bundle",
                          tests="visible" if s.sandbox else "all")
    s.jobs["visible"] = (visible, "not hidden" if s.sandbox else "")
    if s.sandbox and _has_hidden(s.root / "labs" / f"batch{lab.number}"):
        s.jobs["hidden"] = (make_bundle(s.submission, s.root, lab, work / "hidden" / "bundle", tests="hidden"), "hidden")
    if s.verify:
        reference = make_bundle(s.root, s.root, lab, work / "reference" / "bundle", tests="all")
        s.jobs["reference"] = (reference, "not hidden")
        if "hidden" in s.jobs:
            s.jobs["reference-hidden"] = (reference, "hidden")
    for name, (bundle, _) in s.jobs.items():
        if name != "reference-hidden":
            s.boxes[name] = _sandbox(bundle.parent, bundle, kind, home=None if s.sandbox else s.submission,
                                     limits=limits, uid=REFERENCE_UID if name == "reference" else NOBODY)
    s.boxes["reference-hidden"] = s.boxes.get("reference")


def _run_side_by_side(session: GradeSession, failures: SubmissionFailures, run_reference: bool,
                      show_progress: bool) -> tuple[dict[str, Run], dict[str, Run]]:
    """The submission's visible and hidden runs and the reference's, in three threads."""
    progress = None
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(total=0, desc=f"grading lab {session.lab.number}", unit="test", leave=False)

    def submission(name: str) -> Run:
        return session.run_job(name, progress=progress if name == "visible" else None, on_verdict=failures.heard)

    def reference() -> dict[str, Run]:
        return {name: session.run_job(name, unneeded=failures.path)
                for name in ("reference", "reference-hidden") if name in session.jobs}

    with ThreadPoolExecutor(max_workers=3) as pool:
        ref_future = pool.submit(reference) if run_reference else None
        futures = {name: pool.submit(submission, name) for name in ("visible", "hidden") if name in session.jobs}
        runs = {name: f.result() for name, f in futures.items()}
        ref_runs = ref_future.result() if ref_future is not None else {}
    if progress is not None:
        progress.close()
    return runs, ref_runs


def _recheck_reference(session: GradeSession, runs: dict[str, Run], ref_runs: dict[str, Run]) -> None:
    """A test the submission passed but the reference did not (a flaky test, or a submission
    slowing the machine down): the reference once more, alone, with the submission's sandboxes gone."""
    for name in ("visible", "hidden"):
        if session.boxes.get(name) is not None:
            session.boxes[name].kill()
    ref_all = _merge(ref_runs.values())
    again = [n for run in runs.values() for n, v in run.verdicts.items()
             if v["outcome"] == "passed" and n in ref_all.collected
             and ref_all.verdicts.get(n, {}).get("outcome") != "passed"]
    if again:
        ref_runs["rerun"] = run_tests(session.lab, session.jobs["reference"][0], session.boxes["reference"],
                                      timeout=session.timeout, grace=session.grace, seed=session.seed,
                                      deadline=session.deadline, record=True, select=again[:500])


def grade(lab_number: int, submission: Path | str | None = None, *, timeout: float = 300.0,
          root: Path | None = None, pytest_args: tuple[str, ...] = (), show_progress: bool = False,
          grace: float = GRACE_S, sandbox: bool = True, seed: int | None = None,
          lab_timeout: float = 4 * 3600.0, limits: Limits | None = None,
          reference_cache: Path | None = None, verify: bool = True) -> GradeResult:
    """Grade one lab of a submission (default: this checkout).

    With ``sandbox`` (the default) the submission runs sandboxed and, when it is not the
    checkout itself, its verdicts are checked against the reference's run; without it the
    tests run as plain child processes and their own verdicts count (``mlsys-labs run``:
    a learner checking their own code).  The seed defaults to one per version of the
    instructor's tests and reference, and the reference's run is kept in
    ``reference_cache`` (default ``.mlsys/reference-runs`` of the instructor's checkout):
    grading a class runs the reference once, not once per submission."""
    lab, root, submission = _lab_and_paths(lab_number, root, submission)
    iso = isolation() if sandbox else None
    if iso is not None and not iso.isolated:
        print(f"mlsys-labs grade: WARNING: {iso.describe()}", file=sys.stderr, flush=True)
    verify = verify and sandbox and submission != root   # verify=False: the child's verdicts (an upper bound)
    if verify and reference_cache is None:
        reference_cache = root / ".mlsys" / "reference-runs"
    if seed is None:  # one seed per version of the tests and reference, so the reference's run is
        # kept and reused (knowing the seed helps no one: the reference is public)
        seed = _stable_seed(root, lab) if verify else random.SystemRandom().randrange(2**31)
    t0 = time.time()
    session = GradeSession(lab, root, submission, sandbox, verify, seed, timeout, grace, t0 + lab_timeout, pytest_args)
    cache_file = _reference_cache_file(reference_cache, root, lab, seed, pytest_args, timeout) if verify else None
    cached = _load_run(cache_file) if cache_file is not None else None
    with tempfile.TemporaryDirectory(prefix=f"mlsys-grade-lab{lab.number}-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        try:
            _prepare(session, work, iso.kind if iso is not None else "none", limits)
            check_imports(lab, session.jobs["visible"][0], session.boxes["visible"])
            failures = SubmissionFailures(work / "reference" / "unneeded.json")
            runs, ref_runs = _run_side_by_side(session, failures, verify and cached is None, show_progress)
            if cached is not None:
                ref_runs = {"cached": cached}
            if verify:
                _recheck_reference(session, runs, ref_runs)
                if cache_file is not None and ("rerun" in ref_runs or cached is None):
                    _save_run(cache_file, _merge(ref_runs.values()))   # skipped tests are filled in later
        finally:
            for box in {id(b): b for b in session.boxes.values() if b is not None}.values():
                box.close()
    result = GradeResult(lab=lab, submission=submission, execution_time=time.time() - t0,
                         isolation=iso.describe() if iso is not None else "", verified=verify, seed=seed)
    _score(result, runs, _merge(ref_runs.values()) if verify else None)
    if verify:
        from .review import copied_regions, suspicious_code

        result.copies = copied_regions(root, submission, lab)
        result.suspicious = suspicious_code(submission, lab, root)
    return result


def refused(lab_number: int, reason: str, *, root: Path | None = None, submission: Path | None = None) -> GradeResult:
    """The grade of a submission that could not be graded (refused files, code that does not
    import): every test of the lab failed, each saying why — a complete results file with
    the lab's real maximum, not a missing one."""
    root = Path(root or project_root()).resolve()
    lab = get_lab(int(lab_number))
    result = GradeResult(lab=lab, submission=Path(submission or root), isolation="not run: " + reason[:200])
    with tempfile.TemporaryDirectory(prefix="mlsys-collect-") as tmp:
        log = Path(tmp) / "events.jsonl"
        subprocess.run([sys.executable, "-m", "pytest", str(root / "labs" / f"batch{lab.number}"), "--collect-only", "-q",
                        "-c", str(root / "pyproject.toml"), "--rootdir", str(root), "-p", "no:cacheprovider",
                        "--grade-log", str(log)], cwd=root, capture_output=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=str(root), MLSYS_LABS_HOME=str(root)))
        events, _ = read_events(log)
    prefix = f"labs/batch{lab.number}/"
    for ev in events:
        for item in ev.get("items", []):
            if item.get("gpu") and not device.has_cuda():
                result.not_run_gpu.append(item["nodeid"])
                continue
            nodeid = item["nodeid"]
            result.tests.append(TestResult(
                name=nodeid[len(prefix):] if nodeid.startswith(prefix) else nodeid, nodeid=nodeid,
                max_score=0.0 if item.get("points") == 0 else _number(item.get("points"), 1.0), score=0.0,
                status="failed", output=f"not graded: {reason}", hidden=bool(item.get("hidden"))))
    return result


def _sources_digest(root: Path, lab: Lab) -> str:
    """A hash of what the reference's run depends on: the lab's tests, its packages, the
    grading infrastructure."""
    import hashlib

    h = hashlib.sha256(str(lab.number).encode())
    for base in [root / "labs" / f"batch{lab.number}", root / "pyproject.toml",
                 *(root / "mlsys_labs" / name for name in INFRASTRUCTURE),
                 *(root / "mlsys_labs" / p for p in lab.packages)]:
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base, base.with_suffix(".py")]
        for f in files:
            if f.is_file():
                h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _stable_seed(root: Path, lab: Lab) -> int:
    return int(_sources_digest(root, lab)[:8], 16) % (2**31)


def _reference_cache_file(folder: Path | None, root: Path, lab: Lab, seed: int, pytest_args, timeout) -> Path | None:
    """Where the reference's run for this seed, these arguments and these sources is kept."""
    if folder is None:
        return None
    import hashlib

    key = hashlib.sha256(json.dumps([_sources_digest(root, lab), seed, list(pytest_args), timeout]).encode())
    return Path(folder) / f"lab{lab.number}-seed{seed}-{key.hexdigest()[:16]}.json"


def _load_run(path: Path) -> Run | None:
    try:
        data = json.loads(path.read_text())
        return Run(collected=data["collected"], verdicts=data["verdicts"], checks=data["checks"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_run(path: Path, run: Run) -> None:
    _write_atomically(path, json.dumps({"collected": run.collected, "verdicts": run.verdicts, "checks": run.checks}))


def _merge(runs) -> Run:
    out = Run()
    for run in runs:
        out.collected.update(run.collected)
        out.verdicts.update(run.verdicts)
        out.checks.update(run.checks)
        out.output += run.output
    return out


def _has_hidden(tests_dir: Path) -> bool:
    return any("hidden" in p.read_text(errors="replace") for p in tests_dir.glob("test_*.py"))


def _score(result: GradeResult, runs: dict[str, Run], ref: Run | None) -> None:
    """Per test of the authoritative list (the reference's run when there is one), the
    verdict: the submission's run said passed and, when verified, its record matches."""
    lab = result.lab
    if ref is not None:
        collected = ref.collected
    else:
        collected = {}
        for run in runs.values():
            collected.update(run.collected)
    if not collected:
        out = (ref.output if ref is not None and not ref.collected else runs["visible"].output)
        tail = "\n".join(out.strip().splitlines()[-40:])
        raise GradeError(f"no tests of Lab {lab.number} could be collected against this submission:\n{tail}")
    prefix = f"labs/batch{lab.number}/"
    for nodeid, info in collected.items():
        points = 0.0 if info.get("points") == 0 else _number(info.get("points"), 1.0)
        if info.get("gpu") and not device.has_cuda():
            result.not_run_gpu.append(nodeid)
            continue
        hidden = bool(info.get("hidden"))
        run = runs.get("hidden" if hidden and "hidden" in runs else "visible")
        v = run.verdicts.get(nodeid, {"outcome": "failed", "output": "no verdict recorded"})
        passed = v["outcome"] == "passed"
        output = v.get("output") or ""
        if passed and ref is not None:
            rv = ref.verdicts.get(nodeid, {})
            if rv.get("outcome") == "passed":
                why = compare_checks(ref.checks.get(nodeid, []), run.checks.get(nodeid, []))
                if why:
                    passed = False
                    output = (f"the grader's check against the reference failed: {why}\n"
                              f"(the test reported a pass, but what it compared does not match the reference's run "
                              f"with the same seed)\n")
            else:
                passed = False
                result.unverified.append(nodeid[len(prefix):] if nodeid.startswith(prefix) else nodeid)
                output = ("not gradable in this run: the reference itself failed this test twice with this seed "
                          f"({rv.get('outcome', 'no verdict')}), so the submission's result could not be checked; "
                          "tell the instructor\n")
        name = nodeid[len(prefix):] if nodeid.startswith(prefix) else nodeid
        result.tests.append(TestResult(
            name=name, nodeid=nodeid, max_score=points, score=points if passed else 0.0,
            status="passed" if passed else "failed",
            output=output if passed else _trim(output or "no output recorded"),
            hidden=hidden, duration=_number(v.get("duration"), 0.0)))


# ------------------------------------------------------------------- differential checks
def compare_checks(reference: list[dict], submission: list[dict]) -> str:
    """Why the submission's record of a test's comparisons differs from the reference's
    ("" when it matches).  ``assert_close`` records must agree one by one (count, shape,
    values within twice the test's tolerance, sums over all elements likewise); the same
    plain asserts must have passed."""
    ref_close = [c for c in reference if c.get("kind") == "close"]
    sub_close = [c for c in submission if c.get("kind") == "close"]
    if len(ref_close) != len(sub_close):
        return f"{len(sub_close)} value comparisons recorded, the reference made {len(ref_close)}"
    for i, (r, s) in enumerate(zip(ref_close, sub_close)):
        why = _compare_close(r, s)
        if why:
            return f"comparison {i + 1} ({str(r.get('what', 'result'))[:60]}): {why}"
    # by source text, not line: the visible tests' files have the hidden tests cut out
    ref_asserts = {str(c.get("source")): c.get("line") for c in reference if c.get("kind") == "assert"}
    sub_asserts = {str(c.get("source")) for c in submission if c.get("kind") == "assert"}
    if set(ref_asserts) != sub_asserts:
        missing = sorted(set(ref_asserts) - sub_asserts)
        if missing:
            return f"the assert on line {ref_asserts[missing[0]]} (assert {missing[0][:60]}) never passed"
        return "asserts passed that the reference's run never reached"
    return ""


def _floats(values) -> np.ndarray | None:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.ndim == 1 else None


def _compare_close(r: dict, s: dict) -> str:
    if list(r.get("shape") or []) != list(s.get("shape") or []):
        return f"shape {s.get('shape')} != reference's {r.get('shape')}"
    rtol, atol = _number(r.get("rtol"), 0.0), _number(r.get("atol"), 0.0)
    a, b = _floats(s.get("sample")), _floats(r.get("sample"))
    if a is None or b is None or a.shape != b.shape:
        return "malformed record"
    both_nan = np.isnan(a) & np.isnan(b)
    bound = SLACK * (atol + rtol * np.maximum(np.abs(a), np.abs(b)))
    bad = ~((np.abs(a - b) <= bound) | both_nan)
    if bad.any():
        i = int(np.argmax(bad))
        return f"element {i} of the sample is {a[i]!r}, the reference's {b[i]!r}"
    n = max(1, int(np.prod(r.get("shape") or [1])))
    x, y, sx, sy = (s.get("sum"), r.get("sum"), s.get("abs_sum"), r.get("abs_sum"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y, sx, sy)):
        return "malformed record"
    if not (math.isnan(x) and math.isnan(y)) and not abs(x - y) <= SLACK * (n * atol + rtol * (abs(sx) + abs(sy))):
        return f"the sum over all {n} elements is {x!r}, the reference's {y!r}"
    return ""


SLACK = 2.5   # both values lie within the test's tolerance of its expected value: 2x, and some room


def write_outputs(results: list[GradeResult], out: Path, summary: Path | None = None) -> None:
    """results.json (one lab: Gradescope's format; several: their tests together) + Markdown."""
    if len(results) == 1:
        payload = results[0].gradescope()
    else:
        parts = [r.gradescope() for r in results]
        payload = {"score": sum(p["score"] for p in parts), "max_score": sum(p["max_score"] for p in parts),
                   "execution_time": sum(p["execution_time"] for p in parts), "visibility": "visible",
                   "stdout_visibility": "visible", "output": "\n".join(p["output"] for p in parts),
                   "tests": [dict(t, name=f"lab{r.lab.number}/{t['name']}") for r, p in zip(results, parts)
                             for t in p["tests"]]}
    _write_atomically(Path(out), json.dumps(payload, indent=1))
    if summary is not None:
        _write_atomically(Path(summary), "# mlsys-labs grade\n\n" + "\n".join(r.markdown() for r in results))


def _write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename: a grader stopped midway leaves the old file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # unique per writer
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
