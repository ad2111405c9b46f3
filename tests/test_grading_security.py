"""Attacks on the grader, each built as a real submission and graded for real.

Every attack is a lab-1 starter copy (it implements nothing: its honest score is 0) with
code added to ``mlsys_labs/nn/__init__.py``, which every lab-1 test imports.  Each must
earn exactly its honest score, the grade must complete, no process it started may
outlive the grade, and the instructor's files must be unchanged.  A subset of lab 1's
tests (visible and hidden) keeps each grade to seconds.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from mlsys_labs.common.paths import project_root
from mlsys_labs.grading.grader import GradeError, grade, refused, write_outputs
from mlsys_labs.grading.review import suspicious_code
from mlsys_labs.grading.sandbox import Limits, isolation
from mlsys_labs.grading.starter import write_starter

ROOT = project_root()
# lab 1's autograd tests only (other test files aren't even collected): visible and hidden ones
SUBSET = ("--ignore-glob=/*/test_[!a]*.py",)   # absolute: pytest roots a relative glob at the cwd
HIDDEN_DOCSTRING = "Two backward passes over two graphs sharing a leaf"

pytestmark = pytest.mark.skipif(not isolation().isolated,
                                reason=f"no sandbox on this machine ({isolation().detail})")


@pytest.fixture(scope="module")
def instructor(tmp_path_factory) -> Path:
    """A copy of the instructor's checkout (the attacks aim at it; the real one stays safe)."""
    dest = tmp_path_factory.mktemp("instructor")
    shutil.copytree(ROOT / "mlsys_labs", dest / "mlsys_labs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "labs" / "batch1", dest / "labs" / "batch1", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


@pytest.fixture(scope="module")
def starter(instructor, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("starter") / "copy"
    write_starter(instructor, dest)
    return dest


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _attack(starter: Path, tmp_path: Path, code: str, **subs) -> Path:
    sub = tmp_path / "attack"
    shutil.copytree(starter / "mlsys_labs", sub / "mlsys_labs")
    init = sub / "mlsys_labs" / "nn" / "__init__.py"
    body = textwrap.dedent(code)
    for key, value in subs.items():
        body = body.replace(key, str(value))
    init.write_text(init.read_text() + "\n# --- the attack ---\n" + body)
    return sub


@pytest.fixture(scope="module")
def reference_cache(tmp_path_factory) -> Path:
    """One reference run per seed for the whole module (what an instructor grading a class does)."""
    return tmp_path_factory.mktemp("reference-cache")


@pytest.fixture(scope="module")
def module_seed() -> int:
    from mlsys_labs.grading import pytest_plugin

    return pytest_plugin._SESSION_SEED


def _grade_attack(instructor: Path, sub: Path, tmp_path: Path, marker: str = "", *, cache: Path, seed: int, **kw):
    before = _digest(instructor)
    out = tmp_path / "results.json"
    result = grade(1, sub, root=instructor, timeout=kw.pop("timeout", 120), pytest_args=kw.pop("args", SUBSET),
                   reference_cache=cache, seed=seed, **kw)
    write_outputs([result], out, tmp_path / "results.md")
    time.sleep(1.0)
    assert _digest(instructor) == before, "the submission changed the instructor's files"
    if marker:
        assert not _processes_with(marker), "a process the submission started outlived the grade"
    text = out.read_text()
    assert HIDDEN_DOCSTRING not in text
    return result, json.loads(text)


# ------------------------------------------------------------------------ honest baselines
def test_honest_scores(instructor, starter, tmp_path, reference_cache, module_seed):
    """The starter earns 0 on the subset, the reference copy everything, and a copy with one
    broken operation loses exactly the points its own honest verdicts lose."""
    r0, _ = _grade_attack(instructor, starter, tmp_path, cache=reference_cache, seed=module_seed)
    assert r0.score == 0 and r0.max_score > 10 and r0.verified
    ref_copy = tmp_path / "reference"
    shutil.copytree(instructor / "mlsys_labs", ref_copy / "mlsys_labs")
    full = grade(1, ref_copy, root=instructor, timeout=120, pytest_args=SUBSET, reference_cache=reference_cache,
                 seed=module_seed)
    assert full.score == full.max_score == r0.max_score
    assert any(t.hidden for t in full.tests)
    assert full.copies, "a verbatim copy of the reference must be flagged"
    broken = tmp_path / "broken"
    shutil.copytree(ref_copy, broken)
    tensor = broken / "mlsys_labs" / "nn" / "tensor.py"
    text = tensor.read_text()
    bug = ("tensor.grad = g if tensor.grad is None else tensor.grad + g", "tensor.grad = g")
    assert text.count(bug[0]) == 1
    tensor.write_text(text.replace(*bug))   # a leaf's gradient assigned, not accumulated
    graded = grade(1, broken, root=instructor, timeout=120, pytest_args=SUBSET, reference_cache=reference_cache,
                   seed=module_seed)
    honest = grade(1, broken, root=broken_checkout(broken, instructor), timeout=120, pytest_args=SUBSET, sandbox=False,
                   seed=module_seed)
    lost = {t.name for t in graded.tests if t.status != "passed"}
    assert lost and lost == {t.name for t in honest.tests if t.status != "passed"}
    assert graded.score == honest.score < full.score


def broken_checkout(sub: Path, instructor: Path) -> Path:
    """The submission as a checkout of its own (its code, the instructor's tests)."""
    shutil.copytree(instructor / "labs", sub / "labs", dirs_exist_ok=True)
    shutil.copy2(instructor / "pyproject.toml", sub / "pyproject.toml")
    return sub


# ----------------------------------------------------------------------------- attacks
PLUGIN = """
import gc
import _pytest.config
import pytest as _pytest_mod

class _Forge:
    @_pytest_mod.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        report.outcome, report.longrepr = "passed", None

for _o in gc.get_objects():
    if isinstance(_o, _pytest.config.Config):
        _o.pluginmanager.register(_Forge(), "forge")
        break
"""

REPORT_CLASS = """
import _pytest.reports as _R
_orig_init = _R.TestReport.__init__
def _init(self, *a, **k):
    _orig_init(self, *a, **k)
    self.outcome, self.longrepr = "passed", None
_R.TestReport.__init__ = _init
"""

NO_OP_COMPARISONS = REPORT_CLASS + """
import numpy as _np
import mlsys_labs.common.tolerance as _tol
_tol.assert_close = lambda *a, **k: None
_np.testing.assert_allclose = lambda *a, **k: None
_np.allclose = lambda *a, **k: True
"""

EVENT_LOG = """
import json, sys, threading, time
def _forge_log():
    argv = sys.argv
    if "--grade-log" not in argv:
        return
    path = argv[argv.index("--grade-log") + 1]
    seen = 0
    while True:
        try:
            lines = open(path).read().splitlines()
        except OSError:
            lines = []
        with open(path, "a") as f:
            for line in lines[seen:]:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "collected":
                    ev["items"] = [dict(i, points=1000) for i in ev["items"]]
                    f.write(json.dumps(ev) + "\\n")
                if ev.get("event") == "start":
                    f.write(json.dumps({"event": "end", "nodeid": ev["nodeid"], "outcome": "passed",
                                        "output": "", "duration": 0.0}) + "\\n")
                    f.write(json.dumps({"event": "check", "nodeid": ev["nodeid"], "kind": "assert",
                                        "line": 1, "source": "True"}) + "\\n")
        seen = len(lines)
        time.sleep(0.01)
threading.Thread(target=_forge_log, daemon=True).start()
"""

FAKE_RESULTS_AND_KILL = """
import json, os, signal
for _path in ["OUT_PATH", "INSTRUCTOR/results.json"]:
    try:
        with open(_path, "w") as _f:
            json.dump({"score": 1000, "max_score": 1000, "tests": []}, _f)
    except OSError:
        pass
for _pid in (os.getppid(), 1):
    try:
        os.kill(_pid, signal.SIGKILL)
    except OSError:
        pass
"""

DETACHED_REWRITER = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c",
                  "import time, json; time.sleep(4); json.dump({'score': 1000}, open('OUT_PATH', 'w'))  # MARKER"],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""

PATH_TO_INSTRUCTOR = """
import importlib, sys
sys.path.insert(0, "INSTRUCTOR")
import mlsys_labs as _pkg
_pkg.__path__.insert(0, "INSTRUCTOR/mlsys_labs")
__path__.insert(0, "INSTRUCTOR/mlsys_labs/nn")
for _name in list(sys.modules):
    if _name.startswith("mlsys_labs.nn."):
        try:
            importlib.reload(sys.modules[_name])
        except Exception:
            pass
"""

REWRITE_TESTS = """
import pathlib
_fake = "def test_everything():\\n    assert True\\n"
for _root in [pathlib.Path("INSTRUCTOR"), pathlib.Path(__file__).resolve().parents[2]]:
    for _p in list(_root.glob("labs/batch1/test_*.py")) + list(_root.glob("mlsys_labs/common/tolerance.py")):
        try:
            _p.write_text(_fake)
        except OSError:
            pass
"""

GARBAGE_LOG = """
import sys
if "--grade-log" in sys.argv:
    _path = sys.argv[sys.argv.index("--grade-log") + 1]
    with open(_path, "ab") as _f:
        _f.write(b"not json at all\\n\\x00\\xff\\xfe garbage\\n[1, 2, 3]\\n")
        _f.write(b'{"event": "collected", "items": 7}\\n{"event": "end", "nodeid": 12}\\n')
        _f.write(b'{"event": "end", "nodeid": "x", "duration": "forever", "outcome": {"a": 1}}\\n')
        _f.write(b'{"event": "start", "nodeid": "' + b"y" * (3 << 20) + b'"}\\n')
"""

FAKE_END_THEN_HANG = """
import json, sys, threading, time
import signal
import mlsys_labs.nn.tensor as _t
def _hang(*a, **k):
    signal.signal(signal.SIGALRM, signal.SIG_IGN)   # pytest-timeout's alarm: ignored
    if "--grade-log" in sys.argv:
        path = sys.argv[sys.argv.index("--grade-log") + 1]
        for line in open(path).read().splitlines()[::-1]:
            ev = json.loads(line)
            if ev.get("event") == "start":
                with open(path, "a") as f:
                    f.write(json.dumps({"event": "end", "nodeid": ev["nodeid"], "outcome": "passed"}) + "\\n")
                break
    while True:
        pass
_t.unbroadcast = unbroadcast = _hang   # the module and the package API (tests import the latter)
"""

MEMORY_HOG = """
_hog = bytearray(3 * 2**30)
for _i in range(0, len(_hog), 4096):
    _hog[_i] = 1
"""

LEAK_HIDDEN_AND_SECRETS = """
import os, pathlib
_found = []
for _root in [pathlib.Path("INSTRUCTOR"), pathlib.Path(__file__).resolve().parents[2], pathlib.Path("/")]:
    try:
        for _p in _root.glob("**/test_autograd.py"):
            _found.append(_p.read_text())
    except OSError:
        pass
_LEAK = "LEAK " + repr(dict(os.environ)) + "".join(_found)
import mlsys_labs.nn.tensor as _t
def _leak(*a, **k):
    raise RuntimeError(_LEAK)
_t.unbroadcast = unbroadcast = _leak   # the module and the package API (tests import the latter)
"""

FORK_BOMB = """
import os, subprocess, sys
_procs = []
try:
    for _ in range(300):
        _procs.append(subprocess.Popen([sys.executable, "-I", "-S", "-c", "import time; time.sleep(30)  # MARKER"]))
except OSError:
    pass
"""


@pytest.mark.parametrize("name,code", [
    ("plugin", PLUGIN), ("report-class", REPORT_CLASS), ("no-op-comparisons", NO_OP_COMPARISONS),
    ("event-log", EVENT_LOG), ("path-to-instructor", PATH_TO_INSTRUCTOR), ("rewrite-tests", REWRITE_TESTS),
    ("garbage-log", GARBAGE_LOG),
])
def test_forgery_earns_nothing(name, code, instructor, starter, tmp_path, reference_cache, module_seed):
    marker = f"mlsys-attack-{uuid.uuid4().hex}"
    sub = _attack(starter, tmp_path, code, INSTRUCTOR=instructor, OUT_PATH=tmp_path / "results.json", MARKER=marker)
    result, data = _grade_attack(instructor, sub, tmp_path, marker, cache=reference_cache, seed=module_seed)
    assert result.score == 0 and data["score"] == 0, [t.name for t in result.tests if t.status == "passed"][:5]
    assert data["max_score"] == result.max_score > 10, "the submission changed what the lab is worth"


def test_fake_results_kill_and_detached_rewriter(instructor, starter, tmp_path, reference_cache, module_seed):
    marker = f"mlsys-attack-{uuid.uuid4().hex}"
    out = tmp_path / "results.json"
    sub = _attack(starter, tmp_path, FAKE_RESULTS_AND_KILL + DETACHED_REWRITER,
                  INSTRUCTOR=instructor, OUT_PATH=out, MARKER=marker)
    result, data = _grade_attack(instructor, sub, tmp_path, marker, cache=reference_cache, seed=module_seed)
    assert result.score == 0
    time.sleep(4.0)  # the rewriter would have struck by now
    assert json.loads(out.read_text())["score"] == 0
    assert not (instructor / "results.json").exists()


def test_a_hang_after_a_fake_end_event_is_still_killed(instructor, starter, tmp_path, reference_cache, module_seed):
    sub = _attack(starter, tmp_path, FAKE_END_THEN_HANG)
    t0 = time.time()
    result, _ = _grade_attack(instructor, sub, tmp_path, timeout=5, grace=2, cache=reference_cache, seed=module_seed,
                              args=(*SUBSET, "-k", "test_unbroadcast_sums_to_the_input_shape"))
    assert result.score == 0
    hung = [t for t in result.tests if "unbroadcast_sums" in t.name]
    assert hung and all(t.status == "failed" for t in hung)
    assert any("timed out" in t.output for t in hung)
    assert time.time() - t0 < 600


def test_memory_limit(instructor, starter, tmp_path, reference_cache, module_seed):
    sub = _attack(starter, tmp_path, MEMORY_HOG)
    with pytest.raises(GradeError, match="does not import"):  # killed at import: nothing to grade
        _grade_attack(instructor, sub, tmp_path, limits=Limits(memory_bytes=1 * 2**30), cache=reference_cache, seed=module_seed)


def test_process_limit_and_no_survivors(instructor, starter, tmp_path, reference_cache, module_seed):
    """A submission that starts processes until it can't: limited, and all gone after."""
    marker = f"mlsys-attack-{uuid.uuid4().hex}"
    sub = _attack(starter, tmp_path, FORK_BOMB, MARKER=marker)
    result, _ = _grade_attack(instructor, sub, tmp_path, marker, limits=Limits(processes=160), cache=reference_cache, seed=module_seed)
    assert result.score == 0


def test_hidden_tests_and_secrets_never_reach_the_results(instructor, starter, tmp_path, monkeypatch, reference_cache, module_seed):
    monkeypatch.setenv("GRADER_TOKEN", "s3cr3t-token-value")
    sub = _attack(starter, tmp_path, LEAK_HIDDEN_AND_SECRETS, INSTRUCTOR=instructor)
    result, data = _grade_attack(instructor, sub, tmp_path, cache=reference_cache, seed=module_seed)
    text = json.dumps(data) + (tmp_path / "results.md").read_text()
    assert "LEAK" in text, "the attack's failure output should be shown (it is the visible tests' output)"
    assert "s3cr3t-token-value" not in text
    assert "intermediates_are_not_kept_and_leaves_reuse_backward(rng):" not in text


def test_symlinks_are_refused_with_a_complete_results_file(instructor, starter, tmp_path):
    sub = tmp_path / "linked"
    shutil.copytree(starter / "mlsys_labs", sub / "mlsys_labs")
    shutil.rmtree(sub / "mlsys_labs" / "nn")
    (sub / "mlsys_labs" / "nn").symlink_to(instructor / "mlsys_labs" / "nn")
    with pytest.raises(GradeError, match="symbolic link"):
        grade(1, sub, root=instructor, pytest_args=SUBSET)
    r = refused(1, "the submission contains a symbolic link", root=instructor, submission=sub)
    assert r.score == 0 and r.max_score > 50 and all("symbolic link" in t.output for t in r.tests)


def test_suspicious_code_is_reported(instructor, starter, tmp_path):
    sub = _attack(starter, tmp_path, PLUGIN + REPORT_CLASS + EVENT_LOG)
    from mlsys_labs.catalog import get_lab

    found = suspicious_code(sub, get_lab(1), instructor)
    assert any("_pytest" in f for f in found) and any("gc" in f for f in found)
    assert not suspicious_code(instructor, get_lab(1), instructor)


def test_killing_the_grader_leaves_no_results_and_no_processes(instructor, starter, tmp_path):
    marker = f"mlsys-attack-{uuid.uuid4().hex}"
    sub = _attack(starter, tmp_path, DETACHED_REWRITER.replace("time.sleep(4)", "time.sleep(60)"),
                  OUT_PATH=tmp_path / "elsewhere.json", MARKER=marker)
    out = tmp_path / "results.json"
    proc = subprocess.Popen([sys.executable, "-m", "mlsys_labs.cli", "grade", "--lab", "1", "--submission", str(sub),
                             "--out", str(out)], cwd=instructor, env=dict(os.environ, MLSYS_LABS_HOME=str(instructor)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not _processes_with(marker) and time.time() < deadline:
        time.sleep(0.5)
    assert _processes_with(marker), "the attack's process never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)
    assert not _processes_with(marker), "a sandboxed process outlived the grader"
    assert not out.exists()
