"""Where things live.  Everything the labs write stays inside the project folder.

``project_root()`` is the folder holding ``pyproject.toml`` and ``mlsys_labs/`` (the
clone, or a learner's starter copy); outside a checkout it falls back to the current
directory.  Override with ``MLSYS_LABS_HOME``.
"""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def project_root() -> Path:
    env = os.environ.get("MLSYS_LABS_HOME")
    if env:
        return Path(env).resolve()
    candidate = _PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd()


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir(*parts: str) -> Path:
    """Caches and generated artefacts (models, datasets, Flower/Ray state): ``.mlsys/``."""
    return _ensure(project_root().joinpath(".mlsys", *parts))


def reports_dir(*parts: str) -> Path:
    """Human-facing output: plots, Markdown tables, grades: ``reports/``."""
    return _ensure(project_root().joinpath("reports", *parts))


def results_dir() -> Path:
    """Benchmark results, one JSON per machine: ``benchmarks/results/``."""
    return _ensure(project_root() / "benchmarks" / "results")


def labs_dir() -> Path:
    return project_root() / "labs"
