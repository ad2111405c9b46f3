"""The mlsys-labs command as a user meets it: clear one-line errors, never a traceback."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "mlsys_labs.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


def test_list_shows_every_lab_with_readings():
    proc = run_cli("list")
    assert proc.returncode == 0, proc.stderr
    for n, word in [(1, "autograd"), (2, "BLAS"), (3, "MPI"), (4, "Triton"), (5, "KV"), (6, "ZeRO"), (7, "Flower")]:
        assert word in proc.stdout, f"lab {n}'s row lacks {word!r}"
    assert "readings:" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("run", "9"), "unknown lab 9"),
    (("run", "x"), "unknown lab 'x'"),
    (("grade", "--lab", "0"), "unknown lab 0"),
    (("grade", "--lab", "1", "--submission", "/no/such/path"), "does not exist"),
])
def test_bad_input_is_one_line_error(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_submission_without_package_and_one_that_does_not_import(toy_repo, tmp_path):
    env = {"MLSYS_LABS_HOME": str(toy_repo)}
    (tmp_path / "empty").mkdir()
    proc = run_cli("grade", "--lab", "1", "--submission", str(tmp_path / "empty"), cwd=toy_repo, env=env)
    assert proc.returncode == 2 and "no mlsys_labs package" in proc.stderr and "Traceback" not in proc.stderr
    broken = tmp_path / "broken"
    shutil.copytree(toy_repo / "mlsys_labs", broken / "mlsys_labs")
    (broken / "mlsys_labs" / "nn" / "__init__.py").write_text("def f(:\n")
    proc = run_cli("grade", "--lab", "1", "--submission", str(broken), cwd=toy_repo, env=env)
    assert proc.returncode == 2 and "does not import" in proc.stderr and "SyntaxError" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_report_without_results_is_a_clear_error(tmp_path):
    proc = run_cli("report", env={"MLSYS_LABS_HOME": str(tmp_path)})
    assert proc.returncode == 2 and "no benchmark results yet" in proc.stderr


def test_gpu_check_without_gpu_says_so():
    from mlsys_labs.common import device

    if device.has_cuda():
        pytest.skip("this machine has a GPU; gpu-check would run for real")
    proc = run_cli("gpu-check")
    assert proc.returncode == 2 and "needs a CUDA GPU" in proc.stderr
