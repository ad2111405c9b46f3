"""The grader: run a lab's graded tests against a submission, robustly, and score them.

How a submission is graded
--------------------------
1. The submission's ``mlsys_labs`` (a starter copy a learner filled in) is copied into a
   fresh folder, and the grading infrastructure (``common``, ``grading``, ``catalog``,
   ``cli``) is replaced by the instructor's own, so the lab code is the learner's and the
   yardsticks are not.  The tests themselves (hidden ones included) come from the
   instructor's ``labs/batchN``.
2. pytest runs in a child process with that folder first on ``PYTHONPATH`` and a timeout
   per test.  The pytest plugin logs every test's start and end; a watchdog kills the
   child's whole process group when a test outlives its timeout (an endless loop in C or
   numba that pytest-timeout cannot interrupt), and a crash (a segfault, ``os._exit``)
   fails only the test that was running: the run resumes with the tests not yet graded.
3. Points come from ``@pytest.mark.points(n)``; a skipped test earns nothing; tests that
   need a GPU are left out of the score on a machine without one (and listed as such).

Output: Gradescope's ``results.json`` (score, max_score, tests[] with name, score,
max_score, status, output, visibility) and a Markdown summary.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import Lab, get_lab
from ..common import device
from ..common.procs import kill_group
from ..common.paths import project_root

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
                      + (f"; {len(self.not_run_gpu)} GPU-only tests not run (no CUDA GPU)" if self.not_run_gpu else ""),
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
        return "\n".join(lines) + "\n"


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
    infrastructure on top; return the folder to put first on PYTHONPATH."""
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


def _child_env(pythonpath: Path, submission: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(pythonpath) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MLSYS_LABS_HOME"] = str(submission)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def check_imports(lab: Lab, pythonpath: Path, submission: Path, timeout: float = 300) -> None:
    """Raise GradeError with the one-line cause if the lab's packages do not import."""
    code = "; ".join(f"import mlsys_labs.{p}" for p in lab.packages)
    proc = subprocess.run([sys.executable, "-c", code], env=_child_env(pythonpath, submission),
                          capture_output=True, text=True, timeout=timeout, cwd=pythonpath)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no error output)"])[-1]
        raise GradeError(f"the submission's Lab {lab.number} code does not import: {last}")


# ---------------------------------------------------------------------------- running
def read_events(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """New complete lines of the event log; a malformed line is skipped, never fatal."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]
    events = []
    for line in complete.decode(errors="replace").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and ev.get("event") in ("collected", "start", "end") and (
                ev["event"] == "collected" or isinstance(ev.get("nodeid"), str)):
            events.append(ev)
    return events, offset + len(complete)


def run_tests(lab: Lab, pythonpath: Path, submission: Path, *, root: Path, timeout: float,
              workdir: Path, pytest_args: tuple[str, ...] = (), progress=None, grace: float = GRACE_S) -> tuple[dict, dict, str]:
    """Run the lab's tests, resuming after crashes and hangs.

    Returns (collected: nodeid -> info, verdicts: nodeid -> entry, the last run's output).
    """
    log = workdir / "events.jsonl"
    skip = workdir / "done.json"
    collected: dict[str, dict] = {}
    verdicts: dict[str, dict] = {}
    output = ""
    attempts = 0
    while True:
        attempts += 1
        skip.write_text(json.dumps(sorted(verdicts)))
        cmd = [sys.executable, "-m", "pytest", str(root / "labs" / f"batch{lab.batch}"), "-c", str(root / "pyproject.toml"),
               "--rootdir", str(root), "--import-mode=importlib", "-p", "no:cacheprovider",
               f"--timeout={timeout:g}", "--grade-log", str(log), "--grade-skip", str(skip),
               "-q", "--no-header", "-p", "no:randomly", *pytest_args]
        out_path = workdir / f"pytest-{attempts}.out"
        with open(out_path, "w") as out:
            proc = subprocess.Popen(cmd, env=_child_env(pythonpath, submission), cwd=workdir,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            offset, running, started_at, killed = 0, None, 0.0, None
            try:
                while True:
                    events, offset = read_events(log, offset)
                    for ev in events:
                        if ev["event"] == "collected":
                            for item in ev["items"]:
                                collected.setdefault(item["nodeid"], item)
                            if progress is not None:
                                progress.reset(total=len(collected))
                                progress.update(len(verdicts))
                        elif ev["event"] == "start":
                            running, started_at = ev["nodeid"], time.time()
                        elif ev["event"] == "end":
                            verdicts[ev["nodeid"]] = ev
                            running = None
                            if progress is not None:
                                progress.update(1)
                    if proc.poll() is not None:
                        break
                    if running is not None:
                        limit = (collected.get(running, {}).get("timeout") or timeout) + grace
                        if time.time() - started_at > limit:
                            killed = (running, limit)
                            kill_group(proc)
                            break
                    time.sleep(0.2)
            finally:
                kill_group(proc)  # and any children the tests left behind (mpiexec, servers)
        events, offset = read_events(log, offset)
        for ev in events:
            if ev["event"] == "end":
                verdicts[ev["nodeid"]] = ev
        log.unlink(missing_ok=True)
        output = out_path.read_text(errors="replace")
        if killed:
            nodeid, limit = killed
            verdicts[nodeid] = {"outcome": "failed", "output": f"timed out: still running after {limit:.0f} s "
                                f"(the grader killed the test process)\n", "duration": limit}
            continue
        pending = [n for n in collected if n not in verdicts]
        if not collected:
            break  # nothing collected: a collection error, reported by the caller
        if not pending:
            break
        if running is not None and running not in verdicts:
            tail = "\n".join(output.strip().splitlines()[-30:])
            verdicts[running] = {"outcome": "failed", "duration": 0.0,
                                 "output": f"crashed: the test process died (exit code {proc.returncode})\n{tail}\n"}
            continue
        # exited with tests left and none running (e.g. an internal error): fail them all
        for n in pending:
            verdicts[n] = {"outcome": "failed", "duration": 0.0,
                           "output": "not run: pytest stopped early\n" + "\n".join(output.strip().splitlines()[-30:])}
        break
    return collected, verdicts, output


def grade(lab_number: int, submission: Path | str | None = None, *, timeout: float = 300.0,
          root: Path | None = None, pytest_args: tuple[str, ...] = (), show_progress: bool = False,
          grace: float = GRACE_S) -> GradeResult:
    """Grade one lab of a submission (default: this checkout)."""
    root = Path(root or project_root()).resolve()
    try:
        lab = get_lab(int(lab_number))
    except (KeyError, ValueError) as exc:
        raise GradeError(str(exc).strip("'\"")) from None
    tests_dir = root / "labs" / f"batch{lab.batch}"
    if not (tests_dir.is_dir() and any(tests_dir.glob("test_*.py"))):
        raise GradeError(f"Lab {lab.number} has no graded tests in {root} yet (expected {tests_dir}/test_*.py)")
    submission = Path(submission or root).resolve()
    if not submission.exists():
        raise GradeError(f"submission path {submission} does not exist")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=f"mlsys-grade-lab{lab.number}-") as tmp:
        work = Path(tmp)
        pythonpath = prepare_submission(submission, root, work / "src")
        check_imports(lab, pythonpath, submission)
        run_dir = work / "run"
        run_dir.mkdir()
        progress = None
        if show_progress:
            from tqdm import tqdm

            progress = tqdm(total=0, desc=f"grading lab {lab.number}", unit="test", leave=False)
        try:
            collected, verdicts, output = run_tests(lab, pythonpath, submission, root=root, timeout=timeout,
                                                    workdir=run_dir, pytest_args=pytest_args, progress=progress,
                                                    grace=grace)
        finally:
            if progress is not None:
                progress.close()
    result = GradeResult(lab=lab, submission=submission, execution_time=time.time() - t0)
    if not collected:
        tail = "\n".join(output.strip().splitlines()[-40:])
        raise GradeError(f"no tests of Lab {lab.number} could be collected against this submission:\n{tail}")
    prefix = f"labs/batch{lab.batch}/"
    for nodeid, info in collected.items():
        if info.get("gpu") and not device.has_cuda():
            result.not_run_gpu.append(nodeid)
            continue
        v = verdicts.get(nodeid, {"outcome": "failed", "output": "no verdict recorded"})
        passed = v["outcome"] == "passed"
        name = nodeid[len(prefix):] if nodeid.startswith(prefix) else nodeid
        result.tests.append(TestResult(
            name=name, nodeid=nodeid, max_score=info["points"], score=info["points"] if passed else 0.0,
            status="passed" if passed else "failed",
            output=(v.get("output") or "") if passed else _trim(v.get("output") or "no output recorded"),
            hidden=info.get("hidden", False), duration=v.get("duration", 0.0)))
    return result


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
