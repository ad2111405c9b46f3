"""The mutation harness (``mlsys-labs mutants``) and the labs' catalogues.

The harness must be able to fail: on a toy lab, a bug the tests catch is *killed* (by
the right test, public or hidden), an edit no test can see *survives*, an edit whose old
text is gone is *stale*, and a kill by a test that fails on the reference too is no kill.  Every
catalogue in the repository must still apply to the code as it is (cheap: no test runs).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mlsys_labs.common.paths import project_root
from mlsys_labs.grading.mutants import (CatalogueError, Mutant, Report, labs_with_catalogue, load_catalogue,
                                        run_catalogue, stale_reason)

ROOT = project_root()
TOY_CATALOGUE = '''
from mlsys_labs.grading.mutants import Mutant

MUTANTS = [
    Mutant("double-adds-two", "mlsys_labs/nn/__init__.py", "return 2 * x", "return 2 + x",
           "adds instead of multiplying", tests=("labs/batch1/test_toy.py::test_double",)),
    Mutant("double-abs", "mlsys_labs/nn/__init__.py", "return 2 * x", "return 2 * abs(x)",
           "forgets the sign (only the hidden test has a negative input)"),
    Mutant("comment-only", "mlsys_labs/nn/__init__.py", "# BEGIN SOLUTION hint: multiply by two",
           "# BEGIN SOLUTION hint: multiply by 2", "an edit no test can see"),
    Mutant("gone", "mlsys_labs/nn/__init__.py", "return 3 * x", "return 4 * x", "old text not in the file"),
]
'''
TOY_SUITE = ("labs/batch1/test_toy.py::test_double", "labs/batch1/test_toy.py::test_counter",
             "labs/batch1/test_toy.py::test_hidden_double_negative")


def test_toy_catalogue_killed_survived_stale(toy_repo):
    (toy_repo / "labs" / "batch1" / "mutants.py").write_text(TOY_CATALOGUE)
    report = run_catalogue(toy_repo, 1, seed=7, jobs=2, suite=TOY_SUITE)
    by_name = {o.mutant.name: o for o in report.outcomes}
    assert by_name["double-adds-two"].status == "killed" and by_name["double-adds-two"].public
    assert by_name["double-adds-two"].by.endswith("test_toy.py::test_double")
    assert by_name["double-abs"].status == "killed" and not by_name["double-abs"].public
    assert by_name["double-abs"].by.endswith("test_hidden_double_negative")
    assert by_name["comment-only"].status == "survived"
    assert by_name["gone"].status == "stale" and "0 times" in by_name["gone"].detail
    problems = report.problems()
    assert any(p.startswith("comment-only: survived") for p in problems)
    assert any(p.startswith("gone: stale") for p in problems)
    assert "2/4 killed, 1 by public tests" in report.table()
    # the working tree is never touched
    assert "return 2 * x" in (toy_repo / "mlsys_labs" / "nn" / "__init__.py").read_text()


def test_public_share_below_90_percent_is_a_problem():
    m = Mutant("a", "f.py", "x", "y", "why")
    from mlsys_labs.grading.mutants import Outcome

    report = Report(lab=1, seed=1, outcomes=[Outcome(m, "killed", public=False)] + [
        Outcome(Mutant(f"b{i}", "f.py", "x", "y", "why"), "killed", public=True) for i in range(8)])
    assert any("by public tests" in p for p in report.problems())
    report.outcomes.append(Outcome(Mutant("c", "f.py", "x", "y", "why"), "killed", public=True))
    assert report.problems() == []       # 9 of 10 public: enough


def test_a_kill_by_a_test_that_fails_on_the_reference_is_no_kill(toy_repo):
    """The toy lab has a test that always fails: the edit no test can see, "caught" by it
    under -x, is reported invalid, not killed — from the command line, exit status 1."""
    import os

    (toy_repo / "labs" / "batch1" / "mutants.py").write_text(TOY_CATALOGUE)
    proc = subprocess.run([sys.executable, "-m", "mlsys_labs.cli", "mutants", "--lab", "1", "--seed", "3"],
                          cwd=toy_repo, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(toy_repo), "MLSYS_LABS_HOME": str(toy_repo)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = next(l for l in proc.stdout.splitlines() if l.startswith("comment-only"))
    assert "invalid" in row and "test_always_fails also fails on the unmutated reference" in row, row
    assert next(l for l in proc.stdout.splitlines() if l.startswith("double-adds-two")).split()[1] == "killed"
    assert "PROBLEM comment-only: labs/batch1/test_toy.py::test_always_fails also fails" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("mutants: ") and " failed" in proc.stdout


def test_malformed_catalogues_are_refused(tmp_path):
    lab = tmp_path / "labs" / "batch1"
    lab.mkdir(parents=True)
    (lab / "mutants.py").write_text(textwrap.dedent('''
        from mlsys_labs.grading.mutants import Mutant
        MUTANTS = [Mutant("a", "f.py", "x", "y", "why"), Mutant("a", "f.py", "x", "z", "why")]
    '''))
    with pytest.raises(CatalogueError, match="two entries"):
        load_catalogue(tmp_path, 1)
    (lab / "mutants.py").write_text("from mlsys_labs.grading.mutants import Mutant\n"
                                    "MUTANTS = [Mutant('a', 'f.py', 'x', 'y', '  ')]\n")
    with pytest.raises(CatalogueError, match="which learner mistake"):
        load_catalogue(tmp_path, 1)


CATALOGUED = labs_with_catalogue(ROOT)


@pytest.mark.parametrize("lab", CATALOGUED, ids=[f"lab{n}" for n in CATALOGUED])
def test_every_catalogue_entry_still_applies(lab):
    """A catalogue can't rot: every old text occurs exactly once, in a file of the lab's own packages."""
    from mlsys_labs.catalog import get_lab

    mutants, _ = load_catalogue(ROOT, lab)
    assert len(mutants) >= 20, f"lab {lab}'s catalogue has {len(mutants)} entries (at least 20 wanted)"
    packages = get_lab(lab).packages
    for m in mutants:
        assert stale_reason(ROOT, m) is None, f"{m.name}: {stale_reason(ROOT, m)}"
        parts = m.file.split("/")
        assert parts[0] == "mlsys_labs" and parts[1] in packages, f"{m.name} edits {m.file}, outside lab {lab}'s code"
