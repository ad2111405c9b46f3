"""What a grade starts from: the submission's files checked, and the *bundles* the sandboxes run.

A bundle is the submission's ``mlsys_labs`` with the instructor's infrastructure (``common``,
``grading``, ``catalog``, ``cli``) copied on top, beside the lab's tests — the visible ones
(hidden tests cut out of the sources), the hidden ones, or all of them for the reference —
and ``pyproject.toml``; never the lab's mutation catalogue (it quotes the reference).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..catalog import Lab
from .sandbox import NOBODY, Limits, Sandbox, minimal_env

# parts of mlsys_labs that are the instructor's yardsticks, never the submission's
INFRASTRUCTURE = ("common", "grading", "catalog.py", "cli.py", "__init__.py")


class GradeError(RuntimeError):
    """Grading could not start (bad lab number, no submission, nothing importable)."""


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


def _has_hidden(tests_dir: Path) -> bool:
    return any("hidden" in p.read_text(errors="replace") for p in tests_dir.glob("test_*.py"))
