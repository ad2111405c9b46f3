"""What bare ``pytest`` and ``pytest --benchmark-only`` collect at the repository root: the
tests and only the tests, or every benchmark and only the benchmarks (root ``conftest.py``)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mlsys_labs.common.paths import project_root

pytestmark = pytest.mark.slow


def collected(*args: str) -> list[str]:
    """Node ids ``pytest --collect-only -q ARGS`` lists, run at the root as a user would."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          cwd=project_root(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines() if "::" in line and not line.startswith(" ")]


def test_benchmark_only_at_the_root_collects_every_benchmark_and_no_test():
    ids = collected("--benchmark-only")
    assert ids, "pytest --benchmark-only collected nothing"
    assert all(i.startswith("benchmarks/") for i in ids), [i for i in ids if not i.startswith("benchmarks/")][:5]
    assert set(ids) == set(collected("benchmarks")), "not the same benchmarks as `pytest benchmarks` collects"


def test_plain_pytest_collects_the_tests_and_no_benchmark():
    ids = collected()
    assert not [i for i in ids if i.startswith("benchmarks/")]
    assert {i.split("/")[0] for i in ids} == {"labs", "tests"}, "testpaths are labs/ and tests/"
    lab5 = collected("labs/batch5")
    assert lab5 and all(i.startswith("labs/batch5/") for i in lab5)
    assert set(lab5) <= set(ids)
