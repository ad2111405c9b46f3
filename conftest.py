"""What ``pytest`` collects when it is run at the repository root with no path.

``pytest`` alone runs the tests (``testpaths``: ``labs/`` and ``tests/``) and collects no
benchmark.  ``pytest --benchmark-only`` alone runs the benchmarks (``benchmarks/``) and
collects no test: without this switch pytest-benchmark would collect every test of
``testpaths`` and skip each one (none uses its ``benchmark`` fixture), running nothing.
A path given on the command line is always taken as given (``pytest benchmarks
--benchmark-only``, ``pytest labs/batch5``).
"""
from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    benchmark_only = config.pluginmanager.hasplugin("benchmark") and config.getoption("benchmark_only", False)
    if benchmark_only and config.args_source is pytest.Config.ArgsSource.TESTPATHS:
        config.args = [str(config.rootpath / "benchmarks")]
        config.args_source = pytest.Config.ArgsSource.ARGS   # the header must not say "testpaths: labs, tests"
