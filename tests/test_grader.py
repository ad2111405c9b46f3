"""The grader on a toy lab: points, hidden tests, skips, GPU tests, crashes and hangs."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from mlsys_labs.common import device
from mlsys_labs.grading.grader import GradeError, grade, write_outputs
from mlsys_labs.grading.starter import write_starter



def _by_name(result):
    return {t.name.split("::")[-1]: t for t in result.tests}


def test_points_hidden_skips_and_gpu(toy_repo):
    r = grade(1, toy_repo, root=toy_repo, timeout=60)
    tests = _by_name(r)
    assert tests["test_double"].score == 3 and tests["test_double"].max_score == 3
    assert tests["test_counter"].score == 2
    assert tests["test_hidden_double_negative"].hidden and tests["test_hidden_double_negative"].score == 5
    assert tests["test_always_fails"].status == "failed" and "wrong on purpose" in tests["test_always_fails"].output
    assert tests["test_skipped"].status == "failed" and tests["test_skipped"].score == 0, "a skip must not earn points"
    if not device.has_cuda():
        assert "test_needs_gpu" not in tests and len(r.not_run_gpu) == 1
        assert r.max_score == 3 + 2 + 5 + 1 + 1
    assert r.score == 10


def test_gradescope_json_and_markdown(toy_repo, tmp_path):
    r = grade(1, toy_repo, root=toy_repo, timeout=60)
    write_outputs([r], tmp_path / "results.json", tmp_path / "results.md")
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["score"] == r.score and data["max_score"] == r.max_score
    for t in data["tests"]:
        assert set(t) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert t["status"] in ("passed", "failed")
    vis = {t["name"].split("::")[-1]: t["visibility"] for t in data["tests"]}
    assert vis["test_hidden_double_negative"] == "after_published" and vis["test_double"] == "visible"
    md = (tmp_path / "results.md").read_text()
    assert "10 / 12" in md.replace(".0", "") and "test_always_fails" in md


def test_submission_code_is_graded_not_the_reference(toy_repo, tmp_path):
    """The submission's lab code is imported, whatever the instructor's copy holds."""
    sub = tmp_path / "sub"
    shutil.copytree(toy_repo / "mlsys_labs", sub / "mlsys_labs")
    path = sub / "mlsys_labs" / "nn" / "__init__.py"
    path.write_text(path.read_text().replace("return 2 * x", "return 2 * x + 1"))
    r = _by_name(grade(1, sub, root=toy_repo, timeout=60))
    assert r["test_double"].status == "failed" and r["test_counter"].status == "passed"


def test_submission_cannot_replace_the_yardsticks(toy_repo, tmp_path):
    """A submission's own grading plugin or tolerance module is ignored."""
    sub = tmp_path / "sub"
    shutil.copytree(toy_repo / "mlsys_labs", sub / "mlsys_labs")
    (sub / "mlsys_labs" / "grading" / "pytest_plugin.py").write_text("raise SystemExit('tampered')\n")
    r = grade(1, sub, root=toy_repo, timeout=60)
    assert r.score == 10


def test_crash_and_hang_fail_only_their_test(toy_repo_with_crash):
    repo = toy_repo_with_crash
    r = _by_name(grade(1, repo, root=repo, timeout=1, grace=2))
    assert r["test_a_crash"].status == "failed" and "crashed" in r["test_a_crash"].output
    assert r["test_b_hang"].status == "failed" and "timed out" in r["test_b_hang"].output.lower()
    assert r["test_c_after_crash_and_hang"].status == "passed", "the grade must resume after a crash or a hang"
    assert r["test_double"].status == "passed"


def test_submission_that_does_not_import(toy_repo, tmp_path):
    sub = tmp_path / "sub"
    shutil.copytree(toy_repo / "mlsys_labs", sub / "mlsys_labs")
    (sub / "mlsys_labs" / "nn" / "__init__.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(GradeError, match="does not import.*not_a_module_anywhere"):
        grade(1, sub, root=toy_repo, timeout=60)


def test_missing_submission_and_unknown_lab(toy_repo, tmp_path):
    with pytest.raises(GradeError, match="does not exist"):
        grade(1, tmp_path / "nowhere", root=toy_repo)
    with pytest.raises(GradeError, match="unknown lab"):
        grade(9, toy_repo, root=toy_repo)
    with pytest.raises(GradeError, match="no mlsys_labs package"):
        (tmp_path / "empty").mkdir()
        grade(1, tmp_path / "empty", root=toy_repo)


def test_starter_of_toy_repo_scores_zero_with_not_implemented(toy_repo, tmp_path):
    dest = tmp_path / "starter"
    stats = write_starter(toy_repo, dest)
    assert stats["regions"] == 2 and stats["hidden_tests_removed"] == 1
    assert "test_hidden_double_negative" not in (dest / "labs" / "batch1" / "test_toy.py").read_text()
    r = grade(1, dest, root=toy_repo, timeout=60)
    tests = _by_name(r)
    assert tests["test_double"].score == 0 and "NotImplementedError" in tests["test_double"].output
    assert "Lab 1 (nn) double: multiply by two" in tests["test_double"].output
    assert "Lab 1 (nn) Counter.add" in tests["test_counter"].output


def test_cli_grade_writes_results(toy_repo, tmp_path):
    out = tmp_path / "out" / "results.json"
    proc = subprocess.run([sys.executable, "-m", "mlsys_labs.cli", "grade", "--lab", "1", "--submission",
                           str(toy_repo), "--out", str(out)], capture_output=True, text=True,
                          env={**__import__("os").environ, "MLSYS_LABS_HOME": str(toy_repo)}, cwd=toy_repo)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["score"] == 10
    assert out.with_suffix(".md").exists()


def test_require_gpu_turns_gpu_skips_into_failures(toy_repo):
    from mlsys_labs.common import device

    if device.has_cuda():
        pytest.skip("a GPU is present: the gpu test runs for real")
    test = toy_repo / "labs" / "batch1" / "test_toy.py"
    plain = subprocess.run([sys.executable, "-m", "pytest", f"{test}::test_needs_gpu", "-q", "-p", "no:cacheprovider"],
                           capture_output=True, text=True, cwd=toy_repo)
    assert plain.returncode == 0 and "1 skipped" in plain.stdout
    strict = subprocess.run([sys.executable, "-m", "pytest", f"{test}::test_needs_gpu", "-q", "--require-gpu",
                             "-p", "no:cacheprovider"], capture_output=True, text=True, cwd=toy_repo)
    assert strict.returncode == 1 and "1 error" in strict.stdout and "--require-gpu was given" in strict.stdout


def test_garbage_in_the_event_log_does_not_stop_the_grade(toy_repo):
    """A test (or submission) that writes malformed lines into the grader's event log: the
    grade still completes and every other test keeps its verdict."""
    (toy_repo / "labs" / "batch1" / "test_garbage.py").write_text(
        "import pytest\n\n\n"
        "def test_writes_garbage(request):\n"
        "    path = request.config.getoption('--grade-log')\n"
        "    if path:\n"
        "        with open(path, 'a') as f:\n"
        "            f.write('{not json\\n[1, 2]\\n\\x00\\xff garbage\\n{\"event\": \"end\"}\\n')\n"
    )
    r = grade(1, toy_repo, root=toy_repo, timeout=60)
    tests = _by_name(r)
    assert tests["test_writes_garbage"].status == "passed"
    assert tests["test_double"].score == 3 and tests["test_always_fails"].status == "failed"


def test_first_line_of_a_failure_names_the_stub_or_the_raising_function():
    from mlsys_labs.grading.grader import failure_summary

    stub = ("[call] def test_x():\n>       raise NotImplementedError('Lab 1 (nn) Sum.forward [step 3]: sum it')\n"
            "E       NotImplementedError: Lab 1 (nn) Sum.forward [step 3]: sum it\n")
    assert failure_summary(stub) == "NotImplementedError: Lab 1 (nn) Sum.forward [step 3]: sum it"
    crash = ("    def test_y():\n>       f(x)\n\nlabs/batch1/test_ops.py:12: \n_ _ _\n"
             "mlsys_labs/nn/ops/reduce.py:40: in forward\n    return a.sum(axis=9)\n"
             "E   numpy.exceptions.AxisError: axis 9 is out of bounds\n"
             "mlsys_labs/common/tolerance.py:10: in assert_close\n")
    line = failure_summary(crash)
    assert line.startswith("numpy.exceptions.AxisError: axis 9") and "forward (mlsys_labs/nn/ops/reduce.py:40)" in line


def test_symlinks_special_and_huge_files_are_refused(toy_repo, tmp_path):
    import os

    for make, message in [
        (lambda pkg: (pkg / "nn" / "peek.py").symlink_to(toy_repo / "mlsys_labs" / "nn" / "__init__.py"), "symbolic link"),
        (lambda pkg: os.mkfifo(pkg / "nn" / "pipe"), "special file"),
        (lambda pkg: (pkg / "nn" / "big.bin").write_bytes(b"\0" * (11 * 2**20)), "at most 10 MiB"),
    ]:
        sub = tmp_path / message.replace(" ", "-")
        shutil.copytree(toy_repo / "mlsys_labs", sub / "mlsys_labs")
        make(sub / "mlsys_labs")
        with pytest.raises(GradeError, match=message):
            grade(1, sub, root=toy_repo, timeout=60)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "mlsys_labs").symlink_to(toy_repo / "mlsys_labs")
    with pytest.raises(GradeError, match="symbolic link"):
        grade(1, linked, root=toy_repo, timeout=60)


def test_hidden_tests_show_no_output_to_the_student(toy_repo, tmp_path):
    (toy_repo / "labs" / "batch1" / "test_secret.py").write_text(
        "import pytest\n\n\n@pytest.mark.hidden\ndef test_secret_case():\n"
        "    assert 'SECRET-INPUT' == 'expected'\n")
    r = grade(1, toy_repo, root=toy_repo, timeout=60)
    secret = next(t for t in r.tests if t.name.endswith("test_secret_case"))
    assert secret.status == "failed" and "SECRET-INPUT" in secret.output     # the instructor's record has it
    hidden = [t for t in r.gradescope()["tests"] if t["visibility"] == "after_published"]
    assert hidden and all(t["output"] == "" for t in hidden)
    assert "SECRET-INPUT" not in json.dumps(r.gradescope()) and "SECRET-INPUT" not in r.markdown()
