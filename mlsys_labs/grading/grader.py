"""The grader: run a lab's graded tests against a submission, and score them — in a way
the submission's code cannot forge.

How a submission is graded
--------------------------
1. **Bundles** (:mod:`.bundle`). The submission's ``mlsys_labs`` (refused if it holds links, device files
   or oversized files) is copied with the instructor's grading infrastructure on top
   (``common``, ``grading``, ``catalog``, ``cli``) into a *bundle* beside the lab's tests:
   one bundle of the visible tests (hidden ones cut out of the sources) and one of the
   hidden tests.  A third bundle holds the instructor's reference with every test.
2. **Sandboxes** (:mod:`mlsys_labs.grading.sandbox`): every bundle runs in its own — own
   filesystem with the bundle read-only, no network, an unprivileged user, limits, and
   nothing that outlives it.  The instructor's checkout, ``--out`` and the grader's
   environment (tokens, secrets) are not reachable from inside.
3. **Differential verdicts** (:mod:`.verdicts`). The reference and the submission run the same tests with
   the same session seed, so every test draws the same inputs.  While a test runs, each
   comparison it makes is recorded: every ``assert_close`` (the value compared, as a
   sample of up to 256 elements plus sums over all of them, with the test's tolerance) and
   every plain ``assert`` that passes (its line).  The grader — outside every sandbox —
   passes a test only if the submission's run says it passed *and* its record matches the
   reference's: the same comparisons, each value within twice the test's own tolerance of
   the reference's (both lie within the tolerance of the test's expected value).  A
   submission that patches pytest, the plugin, the event log or the tolerance helpers still
   has to produce the right values; one that implements nothing has none to show.
4. **Robust running** (:mod:`.runner`). pytest's child logs every test's start and end; the grader's own
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

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import Lab, get_lab
from ..common import device
from ..common.paths import project_root
from .bundle import GradeError, _has_hidden, _sandbox, check_imports, make_bundle
from .runner import GRACE_S, Run, as_positive, _load_run, _merge, _save_run, read_events, run_tests, write_atomically
from .sandbox import NOBODY, REFERENCE_UID, Limits, Sandbox, isolation
from .verdicts import compare_checks

MAX_OUTPUT = 6000       # characters of failure output kept per test


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
                write_atomically(self.path, json.dumps(sorted(self.failed)))
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
                max_score=0.0 if item.get("points") == 0 else as_positive(item.get("points"), 1.0), score=0.0,
                status="failed", output=f"not graded: {reason}", hidden=bool(item.get("hidden"))))
    return result


def _sources_digest(root: Path, lab: Lab) -> str:
    """A hash of what the reference's run depends on: the lab's tests, ``pyproject.toml`` and
    the whole ``mlsys_labs`` package — a lab may use another's code (lab 3 trains lab 1's
    MLP, lab 5 quantises with lab 4's quantiser), so any change to the reference counts."""
    import hashlib

    h = hashlib.sha256(str(lab.number).encode())
    for base in [root / "labs" / f"batch{lab.number}", root / "pyproject.toml", root / "mlsys_labs"]:
        files = sorted(p for p in base.rglob("*") if p.suffix in (".py", ".txt", ".json", ".csv")
                       and "__pycache__" not in p.parts) if base.is_dir() else [base]
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
        points = 0.0 if info.get("points") == 0 else as_positive(info.get("points"), 1.0)
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
            hidden=hidden, duration=as_positive(v.get("duration"), 0.0)))




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
    write_atomically(Path(out), json.dumps(payload, indent=1))
    if summary is not None:
        write_atomically(Path(summary), "# mlsys-labs grade\n\n" + "\n".join(r.markdown() for r in results))
