"""The layout rules of CONTRIBUTING.md, checked on the code itself.

- infrastructure (``common``, ``grading``, the CLI, the catalogue) and every lab's ``plumbing``
  sub-package keep functions short (about 60 lines at most);
- every lab package's ``__init__`` maps its files to ideas (a docstring naming each lesson
  module) and exports its public API (``__all__``, every name defined);
- graded tests import a lab's code from its public API (``mlsys_labs.<package>`` or
  ``mlsys_labs.<package>.plumbing``), not from the lesson's modules;
- every path the root README's layout table names exists.
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from mlsys_labs.catalog import LABS

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mlsys_labs"
MAX_LINES = 60
PACKAGES = sorted({p for lab in LABS.values() for p in lab.packages})


def _infrastructure_files() -> list[Path]:
    files = [PKG / "cli.py", PKG / "catalog.py", *sorted((PKG / "common").rglob("*.py")),
             *sorted((PKG / "grading").rglob("*.py"))]
    files += sorted(f for pkg in PACKAGES for f in (PKG / pkg / "plumbing").rglob("*.py"))
    return files


def test_infrastructure_functions_are_short():
    long = []
    for path in _infrastructure_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"functions over {MAX_LINES} lines in infrastructure/plumbing:\n" + "\n".join(long)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_init_maps_files_and_exports_its_api(package):
    module = importlib.import_module(f"mlsys_labs.{package}")
    doc = module.__doc__ or ""
    lesson = sorted(p.stem for p in (PKG / package).glob("*.py") if not p.stem.startswith("_"))
    unmapped = [m for m in lesson if not re.search(rf"\b{re.escape(m)}\b", doc)]
    assert not unmapped, f"mlsys_labs.{package}'s docstring does not say what these files teach: {unmapped}"
    exported = getattr(module, "__all__", None)
    assert exported, f"mlsys_labs.{package} has no __all__ (its public API)"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"mlsys_labs.{package}.__all__ names what it does not define: {missing}"


def _lesson_imports(path: Path, package: str) -> list[str]:
    """Imports of a lesson module (``mlsys_labs.<package>.<module>``) in a test file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if len(parts) >= 3 and parts[:2] == ["mlsys_labs", package] and parts[2] != "plumbing":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return found


@pytest.mark.parametrize("number", sorted(LABS), ids=[f"lab{n}" for n in sorted(LABS)])
def test_graded_tests_import_the_public_api(number):
    lab = LABS[number]
    offenders = [hit for path in sorted((ROOT / "labs" / f"batch{number}").glob("test_*.py"))
                 for package in lab.packages for hit in _lesson_imports(path, package)]
    assert not offenders, ("graded tests must import from the lab's public API "
                           f"(mlsys_labs.{lab.package} or its plumbing):\n" + "\n".join(offenders))


def test_the_readme_layout_names_only_what_exists():
    """Every file or folder the layout section names exists: a path from the root, a path
    inside ``mlsys_labs/``, or a lesson file's bare name (it sits in that row's package)."""
    text = (ROOT / "README.md").read_text()
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    names = [n for n in re.findall(r"`([\w./-]+)`", layout) if "/" in n or n.endswith(".py")]
    assert len(names) > 20, "the README's layout section names too few files to find each lab's core"
    everything = {p.name for base in (PKG, ROOT / "benchmarks") for p in base.rglob("*")}
    missing = [n for n in names if "N" not in n and not (ROOT / n).exists() and not (PKG / n).exists()
               and n.rstrip("/") not in everything]
    assert not missing, f"the README's layout names paths that do not exist: {missing}"
