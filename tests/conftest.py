"""Fixtures for the infrastructure tests: a throwaway repository with a tiny lab in it.

``toy_repo`` builds, in a temporary folder, a repository shaped like this one: the real
infrastructure (``mlsys_labs/common``, ``grading``, ``catalog``, ``cli``), a one-file
lab-1 package ``mlsys_labs/nn`` with two solution regions, and ``labs/batch1`` tests
that pass, fail, hang, crash, are hidden or carry points — everything the grader and
the starter must handle, at a cost of seconds.
"""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from mlsys_labs.common.paths import project_root

ROOT = project_root()

TOY_PACKAGE = '''
"""A toy lab package."""


def double(x):
    """Return 2x."""
    # BEGIN SOLUTION hint: multiply by two
    return 2 * x
    # END SOLUTION


class Counter:
    def add(self, a, b):
        # BEGIN SOLUTION
        return a + b
        # END SOLUTION


def spin():
    """Busy loop the grader must be able to kill (no Python-level interruption)."""
    import signal
    import time
    signal.signal(signal.SIGALRM, signal.SIG_IGN)  # pytest-timeout's alarm can't stop it
    while True:
        time.sleep(0.05)
'''

TOY_TESTS = '''
import os
import pytest
from mlsys_labs.nn import Counter, double, spin


@pytest.mark.points(3)
def test_double():
    assert double(21) == 42


@pytest.mark.points(2)
def test_counter():
    assert Counter().add(2, 3) == 5


@pytest.mark.hidden
@pytest.mark.points(5)
def test_hidden_double_negative():
    assert double(-4) == -8


def test_always_fails():
    assert double(1) == 3, "this test is wrong on purpose"


@pytest.mark.skip(reason="skipped tests earn nothing")
def test_skipped():
    pass


@pytest.mark.gpu
@pytest.mark.points(4)
def test_needs_gpu():
    assert double(1) == 2
'''

CRASH_TEST = '''
import os
import pytest


@pytest.mark.points(1)
def test_a_crash():
    os._exit(3)


@pytest.mark.points(1)
@pytest.mark.timeout(1)
def test_b_hang():
    from mlsys_labs.nn import spin
    spin()


@pytest.mark.points(1)
def test_c_after_crash_and_hang():
    from mlsys_labs.nn import double
    assert double(2) == 4
'''


def make_toy_repo(dest: Path, *, with_crash: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    pkg = dest / "mlsys_labs"
    pkg.mkdir()
    for name in ("__init__.py", "catalog.py", "cli.py"):
        shutil.copy2(ROOT / "mlsys_labs" / name, pkg / name)
    for name in ("common", "grading"):
        shutil.copytree(ROOT / "mlsys_labs" / name, pkg / name, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "nn").mkdir()
    (pkg / "nn" / "__init__.py").write_text(textwrap.dedent(TOY_PACKAGE))
    (pkg / "memory").mkdir()  # lab 1 spans two packages
    (pkg / "memory" / "__init__.py").write_text('"""toy"""\n')
    tests = dest / "labs" / "batch1"
    tests.mkdir(parents=True)
    (tests / "test_toy.py").write_text(textwrap.dedent(TOY_TESTS))
    if with_crash:
        (tests / "test_crash.py").write_text(textwrap.dedent(CRASH_TEST))
    return dest


@pytest.fixture
def toy_repo(tmp_path) -> Path:
    return make_toy_repo(tmp_path / "repo")


@pytest.fixture
def toy_repo_with_crash(tmp_path) -> Path:
    return make_toy_repo(tmp_path / "repo", with_crash=True)
