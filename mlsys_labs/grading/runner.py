"""Running a lab's tests inside a sandbox, on the grader's own clocks.

pytest's child logs every test's start and end (and, when recording, each comparison a test
makes) to an event log; :func:`run_tests` folds the log into a :class:`Run`.  A
:class:`Watchdog` kills the sandbox when a test outlives its timeout, the child goes silent
or the lab's deadline passes; a crash fails only the running test and the run resumes with
the tests not yet graded.  A malformed line in the log is ignored.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import Lab
from .bundle import _child_env
from .sandbox import Sandbox

GRACE_S = 30.0          # beyond a test's own timeout before the watchdog kills the run
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
        limits = [as_positive(i.get("timeout"), self.timeout) for i in run.collected.values()] or [self.timeout]
        if self.running is not None:
            limit = as_positive(run.collected.get(self.running, {}).get("timeout"), self.timeout) + self.grace
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


def as_positive(value, default: float) -> float:
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
                                "duration": as_positive(ev.get("duration"), 0.0)}
        if progress is not None:
            progress.update(1)
        if on_verdict is not None:
            on_verdict(nodeid, outcome)
    elif kind == "check":
        checks = run.checks.setdefault(ev["nodeid"], [])
        if len(checks) < MAX_CHECKS_PER_TEST and ev["nodeid"] not in run.verdicts:
            checks.append(ev)


def _merge(runs) -> Run:
    out = Run()
    for run in runs:
        out.collected.update(run.collected)
        out.verdicts.update(run.verdicts)
        out.checks.update(run.checks)
        out.output += run.output
    return out


def _load_run(path: Path) -> Run | None:
    try:
        data = json.loads(path.read_text())
        return Run(collected=data["collected"], verdicts=data["verdicts"], checks=data["checks"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_run(path: Path, run: Run) -> None:
    write_atomically(path, json.dumps({"collected": run.collected, "verdicts": run.verdicts, "checks": run.checks}))


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename: a grader stopped midway leaves the old file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # unique per writer
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
