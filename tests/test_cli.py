"""The mlsys-labs command as a user meets it: clear one-line errors, never a traceback."""
from __future__ import annotations

import os
import json
import shutil
import subprocess
import sys

import pytest


def run_cli(*args, cwd=None, env=None, installed=False):
    """``installed``: as the console script runs — the current folder not on sys.path (``-P``)."""
    return subprocess.run([sys.executable, *(["-P"] if installed else []), "-m", "mlsys_labs.cli", *args],
                          capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


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


def _closed_port() -> str:
    from mlsys_labs.common.procs import free_port

    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("args, flag, message", [
    (("serve", "--num-blocks", "0"), "--num-blocks", "must be at least 1, got 0"),
    (("serve", "--block-size", "x"), "--block-size", "'x' is not an integer"),
    (("serve", "--max-num-queued-reqs", "-3"), "--max-num-queued-reqs", "must be at least 1"),
    (("serve", "--max-request-bytes", "0"), "--max-request-bytes", "must be at least 1"),
    (("serve", "--port", "70000"), "--port", "a port is 1-65535"),
    (("serve", "--num-speculative-tokens", "-1"), "--num-speculative-tokens", "must be at least 0"),
    (("serve", "--device", "tpu"), "--device", "invalid choice"),
    (("serve", "--model", "/no/such/model"), "--model", "no config.json"),
    (("bench-serve", "--rates", "2,x"), "--rates", "'x' is not a rate"),
    (("bench-serve", "--rates", "0"), "--rates", "a rate must be positive"),
    (("bench-serve", "--input-len", "9:3"), "--input-len", "need 1 <= lo <= hi"),
    (("bench-serve", "--num-prompts", "0"), "--num-prompts", "must be at least 1"),
    (("bench-serve", "--url", None), "--url", "no OpenAI-compatible server answers there"),
    (("mutants", "--jobs", "0"), "--jobs", "must be at least 1"),
    (("grade", "--timeout", "-5"), "--timeout", "must be at least 1"),
    (("grade", "--fail-under", "x"), "--fail-under", "'x' is not a number"),
    (("gpu-check", "--budget", "nan"), "--budget", "must be at least 0"),
])
def test_a_bad_option_value_is_a_usage_error_naming_the_flag(args, flag, message, capsys):
    """Checked before anything starts (no server, no engine, no run): exit 2, and the last
    line of stderr names the flag and what is wrong with the value."""
    from mlsys_labs.cli import main

    args = [a if a is not None else _closed_port() for a in args]
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    last = err.strip().splitlines()[-1]
    assert flag in last and message in last and "Traceback" not in err, err


@pytest.mark.parametrize("module, args, flag", [
    ("mlsys_labs.nn.plumbing.demo", ["--largest-mib", "0"], "--largest-mib"),
    ("mlsys_labs.matmul.plumbing.demo", ["--n", "-4"], "--n"),
    ("mlsys_labs.zero.train", ["--accumulate", "0"], "--accumulate"),
    ("mlsys_labs.zero.plumbing.demo", ["--nproc", "0"], "--nproc"),
    ("mlsys_labs.federated.plumbing.demo", ["--rounds", "x"], "--rounds"),
    ("mlsys_labs.serving.plumbing.demo", ["--requests", "0"], "--requests"),
    ("mlsys_labs.serving.plumbing.checkpoint", ["/tmp/unused", "--kv-heads", "0"], "--kv-heads"),
    ("mlsys_labs.serving.plumbing.backlog", ["--bursts", "0"], "--bursts"),
])
def test_every_lab_command_refuses_a_bad_value_before_it_starts(module, args, flag, capsys):
    import importlib

    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as exc:
        (mod.parse if hasattr(mod, "parse") else mod.main)(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and flag in err.strip().splitlines()[-1], err


def test_the_mpi_programs_refuse_a_bad_value_before_mpi_starts():
    for args, flag in [(["-m", "mlsys_labs.collectives.sgd", "--steps", "0"], "--steps"),
                       (["-m", "mlsys_labs.collectives.sgd", "--algorithm", "tree"], "--algorithm"),
                       (["-m", "mlsys_labs.collectives.plumbing.osu", "--scale", "0"], "--scale")]:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and flag in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_engine_config_refuses_sizes_that_could_never_serve():
    from mlsys_labs.serving import EngineConfig

    for field in ("block_size", "num_blocks", "max_num_batched_tokens", "max_num_seqs", "max_model_len"):
        with pytest.raises(ValueError, match=field):
            EngineConfig(**{field: 0})
    with pytest.raises(ValueError, match="dtype"):
        EngineConfig(dtype="float8")
    import numpy as np

    assert EngineConfig(num_blocks=np.int64(4)).num_blocks == 4      # numpy integers are integers


def test_submission_without_package_and_one_that_does_not_import(toy_repo, tmp_path):
    env = {"MLSYS_LABS_HOME": str(toy_repo)}
    (tmp_path / "empty").mkdir()
    proc = run_cli("grade", "--lab", "1", "--submission", str(tmp_path / "empty"), cwd=toy_repo, env=env)
    assert proc.returncode == 2 and "no mlsys_labs package" in proc.stderr and "Traceback" not in proc.stderr
    broken = tmp_path / "broken"
    shutil.copytree(toy_repo / "mlsys_labs", broken / "mlsys_labs")
    (broken / "mlsys_labs" / "nn" / "__init__.py").write_text("def f(:\n")
    stale = toy_repo / "results.json"
    stale.write_text('{"score": 1000, "max_score": 1000, "tests": []}')   # left by an earlier run
    proc = run_cli("grade", "--lab", "1", "--submission", str(broken), cwd=toy_repo, env=env)
    assert proc.returncode == 2 and "does not import" in proc.stderr and "SyntaxError" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    # still a complete results file, the grader's own: every test 0, each saying why
    data = json.loads(stale.read_text())
    assert data["score"] == 0 and data["max_score"] > 0 and data["tests"]
    assert all("does not import" in t["output"] for t in data["tests"] if t["visibility"] == "visible")


def test_report_without_results_is_a_clear_error(tmp_path):
    proc = run_cli("report", env={"MLSYS_LABS_HOME": str(tmp_path)})
    assert proc.returncode == 2 and "no benchmark results yet" in proc.stderr


STEP_TESTS = '''
import pytest
from mlsys_labs.nn import Counter, double


@pytest.mark.step(1)
@pytest.mark.points(3)
def test_step1_double():
    assert double(21) == 42


@pytest.mark.step(2)
@pytest.mark.points(2)
def test_step2_counter():
    assert Counter().add(2, 3) == 5
'''


def test_a_starter_copy_is_the_learners_own(toy_repo, tmp_path):
    """From inside a starter copy, with the command installed from another checkout: the
    copy's own package is graded, its scores recorded and listed there, nothing of the
    other checkout's figures or scores shows, and --step runs one step's tests alone."""
    (toy_repo / "labs" / "batch1" / "test_steps.py").write_text(STEP_TESTS)
    (toy_repo / "benchmarks" / "results").mkdir(parents=True)
    (toy_repo / "benchmarks" / "results" / "this-machine.json").write_text('{"machine": {}, "labs": {}}')
    (toy_repo / "reports" / "grades").mkdir(parents=True)
    (toy_repo / "reports" / "grades" / "lab1.json").write_text('{"score": 99, "max_score": 99}')
    other = {"PYTHONPATH": str(toy_repo)}      # the command as installed from the other checkout
    copy = tmp_path / "mine"
    proc = run_cli("starter", str(copy), cwd=toy_repo, env=other)
    assert proc.returncode == 0, proc.stderr
    assert not (copy / "benchmarks" / "results").exists() and not (copy / "reports").exists()
    # the learner writes step 1 only
    init = copy / "mlsys_labs" / "nn" / "__init__.py"
    lines = init.read_text().splitlines(keepends=True)
    k = next(i for i, l in enumerate(lines) if "Lab 1 (nn) double" in l)
    lines[k] = lines[k][: len(lines[k]) - len(lines[k].lstrip())] + "return 2 * x\n"
    init.write_text("".join(lines))
    proc = run_cli("run", "1", "--step", "1", cwd=copy, env=other, installed=True)
    assert "warning: this command is installed from" in proc.stderr and str(copy) in proc.stderr
    assert "Score: 3 / 3" in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli("run", "1", "--step", "2", cwd=copy, env=other, installed=True)
    assert "Score: 0 / 2" in proc.stdout and "NotImplementedError: Lab 1 (nn) Counter.add" in proc.stdout, proc.stdout
    listed = run_cli("list", cwd=copy, env=other, installed=True).stdout
    row = next(l for l in listed.splitlines() if l.startswith("1 "))
    assert "0/2" in row and "run" in row and "99" not in row, row
    proc = run_cli("grade", "--lab", "1", "--out", str(tmp_path / "r.json"), cwd=copy, env=other, installed=True)
    assert proc.returncode == 0, proc.stderr
    import re

    score, maximum = re.search(r"Lab 1: (\S+) / (\S+)", proc.stdout).groups()
    row = next(l for l in run_cli("list", cwd=copy, env=other, installed=True).stdout.splitlines() if l.startswith("1 "))
    assert "grade" in row and f"{score}/{maximum}" in row and score != "0", row
    assert (toy_repo / "reports" / "grades" / "lab1.json").read_text() == '{"score": 99, "max_score": 99}'


def test_bad_step_is_a_one_line_error():
    proc = run_cli("run", "1", "--step", "two")
    assert proc.returncode == 2 and "--step two" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command, option", [("serve", "--port"), ("bench-serve", "--rates")])
def test_forwarding_commands_show_their_own_options(command, option):
    """``serve`` and ``bench-serve`` hand every argument, ``--help`` included, to lab 5's parsers."""
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"usage: mlsys-labs {command}" in proc.stdout and option in proc.stdout, proc.stdout


def test_unknown_option_of_a_command_is_a_usage_error():
    proc = run_cli("report", "--no-such-option")
    assert proc.returncode == 2 and "unrecognised arguments: --no-such-option" in proc.stderr
