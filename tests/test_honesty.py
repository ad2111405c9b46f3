"""The honesty guard, over every lab present in this checkout.

- The starter copy (solutions stubbed) scores at most 10% of each lab's points, and each
  of its failures comes from ``NotImplementedError`` — not from an import error.
- The reference scores 100%.  When this session already ran the lab's graded tests
  (``make test`` runs ``labs/`` before ``tests/``), their verdicts are reused;
  otherwise the reference is graded here through the grader.
- Lab 1: breaking one operation's backward (``Sigmoid.backward``) loses exactly the
  points of that operation's tests.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from mlsys_labs.catalog import present_labs
from mlsys_labs.common import device
from mlsys_labs.common.paths import project_root
from mlsys_labs.grading import pytest_plugin
from mlsys_labs.grading.grader import grade
from mlsys_labs.grading.starter import write_starter

ROOT = project_root()
LABS = [lab.number for lab in present_labs()]
IMPORT_FAILURES = ("ModuleNotFoundError", "ImportError", "SyntaxError", "IndentationError")

pytestmark = pytest.mark.skipif(not LABS, reason="no lab present yet")


@pytest.fixture(scope="session")
def starter_copy(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("honesty") / "starter"
    write_starter(ROOT, dest)
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=[f"lab{n}" for n in LABS])
def test_starter_scores_at_most_10_percent_by_not_implemented(lab, starter_copy):
    result = grade(lab, starter_copy, root=ROOT, timeout=300, verify=False)  # an upper bound
    assert result.max_score > 0
    assert result.fraction <= 0.10, (
        f"the starter of lab {lab} scores {100 * result.fraction:.0f}% > 10%: tests passing without a solution: "
        + ", ".join(t.name for t in result.tests if t.status == "passed"))
    for t in result.tests:
        if t.status == "passed":
            continue
        for bad in IMPORT_FAILURES:
            assert bad not in t.output, f"{t.name} fails on the starter with {bad}, not NotImplementedError:\n{t.output[-1500:]}"
        assert "NotImplementedError" in t.output, (
            f"{t.name} fails on the starter without NotImplementedError in its output:\n{t.output[-1500:]}")


def _session_verdicts(lab: int) -> dict | None:
    """This session's verdicts for every collected test of the lab, or None if it didn't run whole."""
    collected = pytest_plugin.SESSION_COLLECTED.get(lab)
    results = pytest_plugin.SESSION_RESULTS
    if not collected or any(n not in results for n in collected):
        return None
    return {n: results[n] for n in collected}


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=[f"lab{n}" for n in LABS])
def test_reference_scores_100_percent(lab):
    verdicts = _session_verdicts(lab)
    if verdicts is not None:
        failed = {n: v for n, v in verdicts.items()
                  if v["outcome"] != "passed" and not (v["outcome"] == "skipped" and not device.has_cuda()
                                                       and "CUDA" in v["output"])}
        assert not failed, f"the reference fails lab {lab}'s graded tests: {sorted(failed)}"
        assert any(v["outcome"] == "passed" for v in verdicts.values())
        return
    result = grade(lab, ROOT, root=ROOT, timeout=300)
    failed = [t for t in result.tests if t.status != "passed"]
    assert not failed, "the reference fails: " + "; ".join(f"{t.name}: {t.output[-400:]}" for t in failed)
    assert result.fraction == 1.0


def _break_sigmoid_backward(package: Path) -> Path:
    """Append to the module defining ``class Sigmoid`` a wrapper that scales its gradient by 1.5."""
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == "Sigmoid" and any(
                    isinstance(f, ast.FunctionDef) and f.name == "backward" for f in node.body):
                path.write_text(path.read_text() + '''

# --- deliberately broken by the honesty guard: sigmoid's gradient scaled by 1.5 ---
def _broken_backward(*args, _orig=Sigmoid.__dict__["backward"], **kwargs):
    fn = _orig.__func__ if isinstance(_orig, (staticmethod, classmethod)) else _orig
    if isinstance(_orig, classmethod):
        args = (Sigmoid,) + args
    out = fn(*args, **kwargs)
    return tuple(None if g is None else g * 1.5 for g in out) if isinstance(out, tuple) else out * 1.5


Sigmoid.backward = (staticmethod(_broken_backward) if isinstance(Sigmoid.__dict__["backward"], staticmethod)
                    else _broken_backward)
''')
                return path
    raise AssertionError("lab 1 has no `class Sigmoid` with a `backward` method")


@pytest.mark.slow
@pytest.mark.skipif(1 not in LABS, reason="lab 1 not present")
def test_broken_backward_loses_exactly_that_operations_points(tmp_path):
    sub = tmp_path / "broken"
    shutil.copytree(ROOT / "mlsys_labs", sub / "mlsys_labs", ignore=shutil.ignore_patterns("__pycache__"))
    _break_sigmoid_backward(sub / "mlsys_labs" / "nn")
    result = grade(1, sub, root=ROOT, timeout=300)
    failed = {t.name for t in result.tests if t.status != "passed"}
    sigmoid = {t.name for t in result.tests if "sigmoid" in t.name.lower()}
    assert sigmoid, "lab 1 has no test named after sigmoid"
    assert failed == sigmoid, f"expected exactly the sigmoid tests to fail; failed: {sorted(failed)}"
    lost = result.max_score - result.score
    assert lost == sum(t.max_score for t in result.tests if t.name in sigmoid) > 0


def _unique_docstring_line(path: Path) -> str:
    """The module docstring's first line (text no test can observe), if it occurs once."""
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith('"""') and text.count(first) == 1, f"{path} opens with no unique docstring line"
    return first


@pytest.mark.skipif(1 not in LABS, reason="lab 1 not present")
def test_mutation_harness_reports_an_uncatchable_entry_as_survived():
    """The harness can fail: an edit to a docstring of lab 1's code (which no test could
    catch) is reported as survived, a real bug next to it as killed, on the real lab."""
    from mlsys_labs.grading.mutants import Mutant, run_mutant

    path = ROOT / "mlsys_labs" / "nn" / "ops" / "elementwise.py"
    line = _unique_docstring_line(path)
    suite = ("labs/batch1/test_ops.py",)
    planted = Mutant("docstring-edit", "mlsys_labs/nn/ops/elementwise.py", line, line.replace('"""', '"""(edited) ', 1),
                     "an edit no test can see")
    outcome = run_mutant(ROOT, 1, planted, seed=11, suite=suite)
    assert outcome.status == "survived", (outcome.by, outcome.detail)
    source = (ROOT / "mlsys_labs" / "nn" / "ops" / "elementwise.py").read_text()
    assert source.count("class Sigmoid(") == 1
    real = Mutant("sigmoid-renamed-away", "mlsys_labs/nn/ops/elementwise.py", "class Sigmoid(",
                  "class _Sigmoid(", "the sigmoid op is missing")
    outcome = run_mutant(ROOT, 1, real, seed=11, suite=suite)
    assert outcome.status == "killed" and outcome.public, outcome
