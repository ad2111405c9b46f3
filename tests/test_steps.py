"""The learner's path, over every lab present: steps that stand alone and hints that are true.

- Every graded test carries ``@pytest.mark.step(k)`` and every solution region its
  ``[step k]``; each step of a lab has tests.
- A copy solved through step K (``starter --solved-through K``) passes steps 1..K and
  fails step K+1 with ``NotImplementedError`` (lab 1, K = 1, 2, 3: the cheap lab; the
  other labs' authors check theirs the same way).
- Every stub's hint names only what exists; nothing in the repository cites a file
  outside it.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlsys_labs.catalog import get_lab, present_labs
from mlsys_labs.common.paths import project_root
from mlsys_labs.grading.grader import grade
from mlsys_labs.grading.starter import BEGIN, _marker_lines, _step_and_hint, write_starter

ROOT = project_root()
LABS = [lab.number for lab in present_labs()]


def _collected(lab: int, tmp_path: Path) -> list[dict]:
    log = tmp_path / f"collect-{lab}.jsonl"
    proc = subprocess.run([sys.executable, "-m", "pytest", f"labs/batch{lab}", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "--grade-log", str(log)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return next(e["items"] for e in events if e["event"] == "collected")


def _regions(lab: int) -> list[tuple[str, int | None, str]]:
    """(file:line, step, hint) of every solution region of the lab's packages."""
    out = []
    for package in get_lab(lab).packages:
        for path in sorted((ROOT / "mlsys_labs" / package).rglob("*.py")):
            text = path.read_text()
            lines = text.splitlines()
            for i in sorted(_marker_lines(text)):
                m = BEGIN.match(lines[i])
                if m:
                    step, hint = _step_and_hint(m.group("rest"))
                    out.append((f"{path.relative_to(ROOT)}:{i + 1}", step, hint))
    return out


@pytest.mark.parametrize("lab", LABS, ids=[f"lab{n}" for n in LABS])
def test_every_test_and_region_belongs_to_a_step(lab, tmp_path):
    items = _collected(lab, tmp_path)
    missing = [it["nodeid"] for it in items if it.get("step") is None]
    assert not missing, f"lab {lab}: graded tests without @pytest.mark.step(k): {missing[:10]}"
    regions = _regions(lab)
    untagged = [where for where, step, _ in regions if step is None]
    assert not untagged, f"lab {lab}: solution regions without [step k]: {untagged[:10]}"
    test_steps = {it["step"] for it in items}
    region_steps = {step for _, step, _ in regions}
    assert region_steps <= test_steps, f"lab {lab}: steps {sorted(region_steps - test_steps)} have code but no test"
    readme = (ROOT / "labs" / f"batch{lab}" / "README.md").read_text()
    assert "--step" in readme, f"lab {lab}'s README does not say how to run one step"


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2, 3])
def test_lab1_steps_stand_alone(k, tmp_path):
    if 1 not in LABS:
        pytest.skip("lab 1 not present")
    copy = tmp_path / f"solved-through-{k}"
    write_starter(ROOT, copy, solved_through=k, lab=1)
    done = grade(1, copy, root=ROOT, timeout=300, pytest_args=("--step", f"1-{k}"), verify=False)
    assert done.tests, f"no test in steps 1-{k}"
    failed = [f"{t.name}: {t.output.splitlines()[0] if t.output else ''}" for t in done.tests if t.status != "passed"]
    assert not failed, f"steps 1..{k} solved, yet these of their tests fail: {failed}"
    nxt = grade(1, copy, root=ROOT, timeout=300, pytest_args=("--step", str(k + 1)), verify=False)
    assert nxt.tests, f"step {k + 1} has no tests"
    passing = [t.name for t in nxt.tests if t.status == "passed"]
    assert not passing, f"step {k + 1}'s tests pass with only steps 1..{k} written: {passing}"
    assert all("NotImplementedError" in t.output.splitlines()[0] for t in nxt.tests), \
        [t.output.splitlines()[0] for t in nxt.tests if "NotImplementedError" not in t.output.splitlines()[0]]


_PATHLIKE = re.compile(r"\b([\w./-]+\.(?:py|md))\b")


@pytest.mark.parametrize("lab", LABS, ids=[f"lab{n}" for n in LABS])
def test_hints_point_only_to_what_exists(lab):
    names = {p.name for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts}
    bad = []
    for where, _, hint in _regions(lab):
        if re.search(r"docstring above|LABS\.md|ANCHORS", hint):
            bad.append(f"{where}: {hint}")
        for ref in _PATHLIKE.findall(hint):
            if Path(ref).name not in names:
                bad.append(f"{where}: names {ref}, which is not in the repository")
    assert not bad, "\n".join(bad)


def test_the_repository_cites_nothing_outside_it():
    pattern = re.compile(r"shared/(?:LABS|ANCHORS)|ANCHORS\.md|\bLABS\.md|\.\./shared/")
    offenders = []
    for path in ROOT.rglob("*"):
        if not path.is_file() or path.suffix not in (".py", ".md", ".toml", ".txt", ".yml", ".yaml", ".cfg") or \
                any(part in (".venv", ".git", ".mlsys", "reports", "node_modules") for part in path.relative_to(ROOT).parts):
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line) and path.name != "test_steps.py":
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)
