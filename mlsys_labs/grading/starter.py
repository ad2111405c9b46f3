"""Starter copies: the repository with every solution region turned into a stub.

Under ``mlsys_labs/`` each region

    # BEGIN SOLUTION [hint: ...]
    ...
    # END SOLUTION

becomes ``raise NotImplementedError("Lab N (package) function: hint")`` at the BEGIN
line's indentation; signatures, docstrings and everything outside the regions stay.
In ``labs/`` every test marked ``@pytest.mark.hidden`` is removed (a module whose
``pytestmark`` includes ``hidden`` is left out whole).  The copy installs and imports
cleanly — :func:`write_starter` checks that the stubbed sources still parse.
"""
from __future__ import annotations

import ast
import io
import re
import shutil
import subprocess
import tokenize
from pathlib import Path

from ..catalog import lab_of_package

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION\b(?P<rest>.*)$")
END = re.compile(r"^[ \t]*# END SOLUTION\b")
_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:async\s+)?(?:def|class)\s+(?P<name>\w+)")

# never copied into a starter (generated state, environments, results of this machine)
_SKIP_DIRS = {".git", ".venv", "venv", ".mlsys", "reports", "__pycache__", ".pytest_cache",
              ".hypothesis", ".benchmarks", "build", "dist", ".whl", ".gl"}


class StarterError(ValueError):
    """A solution region that cannot be stubbed (unbalanced, or outside a function)."""


def _enclosing_name(lines: list[str], index: int, indent: int) -> str:
    """Dotted name of the def/class chain enclosing line ``index`` (innermost last)."""
    names, limit = [], indent
    for line in reversed(lines[:index]):
        m = _DEF.match(line)
        if m and len(m.group("indent").expandtabs()) < limit:
            names.append(m.group("name"))
            limit = len(m.group("indent").expandtabs())
            if limit == 0:
                break
    return ".".join(reversed(names))


_STEP = re.compile(r"^\s*\[step\s+(?P<step>\d+)\]")


def _step_and_hint(rest: str) -> tuple[int | None, str]:
    """``"[step 2] hint: reuse ctx"`` -> (2, "reuse ctx")."""
    rest = rest.strip()
    step = None
    m = _STEP.match(rest)
    if m:
        step = int(m.group("step"))
        rest = rest[m.end():].strip()
    if rest.lower().startswith("hint:"):
        rest = rest[5:].strip()
    return step, rest


def _has_docstring(tree: ast.AST | None, line: int) -> bool:
    """Whether the innermost function (or class) holding 1-based ``line`` has a docstring."""
    if tree is None:
        return False
    best = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                node.lineno <= line <= (node.end_lineno or node.lineno):
            if best is None or node.lineno > best.lineno:
                best = node
    return best is not None and ast.get_docstring(best) is not None


def _marker_lines(source: str) -> set[int]:
    """0-based numbers of the lines whose only token is a comment (so a marker quoted in a
    docstring or a string is not a marker)."""
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and not tok.line[: tok.start[1]].strip():
            lines.add(tok.start[0] - 1)
    return lines


def stub_source(source: str, *, lab_label: str, filename: str = "<source>", readme: str | None = None,
                solved_through: int | None = None) -> tuple[str, int]:
    """Replace every solution region in ``source``; return (new source, number of regions stubbed).

    A region's ``[step K]`` tag goes into its message; with ``solved_through`` the regions
    of steps ≤ K keep the reference's code (a copy "solved through step K", to check that
    each README step's tests pass on their own).  A region without a hint points to the
    function's docstring (when it has one) and the lab's README."""
    lines = source.splitlines(keepends=True)
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError:
        tree = None
    markers = _marker_lines(source)
    begin = lambda k: BEGIN.match(lines[k]) if k in markers else None  # noqa: E731
    end = lambda k: END.match(lines[k]) if k in markers else None  # noqa: E731
    out: list[str] = []
    count, i = 0, 0
    while i < len(lines):
        m = begin(i)
        if not m:
            if end(i):
                raise StarterError(f"{filename}:{i + 1}: '# END SOLUTION' without a BEGIN")
            out.append(lines[i])
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and not end(j):
            if begin(j):
                raise StarterError(f"{filename}:{j + 1}: nested '# BEGIN SOLUTION' (region opened at line {start + 1})")
            j += 1
        if j == len(lines):
            raise StarterError(f"{filename}:{start + 1}: '# BEGIN SOLUTION' is never closed")
        indent = m.group("indent")
        where = _enclosing_name(lines, start, len(indent.expandtabs()))
        if not where:
            raise StarterError(f"{filename}:{start + 1}: a solution region must sit inside a function body")
        step, hint = _step_and_hint(m.group("rest"))
        if solved_through is not None and step is not None and step <= solved_through:
            out.extend(lines[start:j + 1])
            i = j + 1
            continue
        if not hint:
            where_to_read = readme or "this lab's README"
            hint = (f"see the docstring of {where} and {where_to_read}" if _has_docstring(tree, start + 1)
                    else f"see {where_to_read}")
        label = f"{lab_label} {where}" + (f" [step {step}]" if step is not None else "")
        message = f"{label}: {hint}"
        out.append(f"{indent}raise NotImplementedError({message!r})\n")
        count += 1
        i = j + 1
    new = "".join(out)
    try:
        ast.parse(new, filename=filename)
    except SyntaxError as exc:
        raise StarterError(f"{filename}: the stubbed source does not parse ({exc.msg}, line {exc.lineno}); "
                           "a region must cover whole statements of one function body") from exc
    return new, count


def _is_hidden_marker(node: ast.AST) -> bool:
    """True for ``pytest.mark.hidden`` / ``mark.hidden`` (called or not)."""
    if isinstance(node, ast.Call):
        node = node.func
    return isinstance(node, ast.Attribute) and node.attr == "hidden" and (
        (isinstance(node.value, ast.Attribute) and node.value.attr == "mark")
        or (isinstance(node.value, ast.Name) and node.value.id == "mark"))


def remove_hidden_tests(source: str, filename: str = "<test>") -> tuple[str | None, int]:
    """Drop hidden tests from a test module's source: (new source, tests removed); the
    source is None when the whole module is hidden."""
    tree = ast.parse(source, filename=filename)
    lines = source.splitlines(keepends=True)
    cut: list[tuple[int, int]] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
            if any(_is_hidden_marker(v) for v in values):
                return None, 0
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if any(_is_hidden_marker(d) for d in node.decorator_list):
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                cut.append((first - 1, node.end_lineno))
    for a, b in sorted(cut, reverse=True):
        del lines[a:b]
    return "".join(lines), len(cut)


def _tracked_files(root: Path) -> list[Path] | None:
    """Files git tracks plus untracked-but-not-ignored ones; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    files = [root / p for p in out.decode().split("\0") if p]
    return [f for f in files if f.is_file()]


def _all_files(root: Path) -> list[Path]:
    files = _tracked_files(root)
    if files is not None:
        return files
    result = []
    for path in root.rglob("*"):
        if path.is_file() and not any(part in _SKIP_DIRS for part in path.relative_to(root).parts):
            result.append(path)
    return result


def _instructor_only(rel: Path) -> bool:
    """Files a learner's copy never carries: the mutation catalogues (they spell out the
    reference's code) and this checkout's measured figures and reports (a copy shows
    only what it measured itself)."""
    if rel.parts[0] == "labs" and rel.name == "mutants.py":
        return True
    return rel.parts[:2] == ("benchmarks", "results")


def write_starter(root: Path, dest: Path, *, solved_through: int | None = None, lab: int | None = None) -> dict:
    """Write a learner's copy of the repository at ``root`` into ``dest`` (which must not
    exist or be empty).  Returns counts: files, regions stubbed, hidden tests removed.

    ``solved_through=K`` keeps the reference's solution of every region tagged
    ``[step k]`` with k ≤ K (for checking that each step's tests pass on their own);
    with ``lab=N`` that applies to lab N only and every other lab keeps its reference
    code (lab 3's SGD step needs lab 1's optimizer, whatever lab 1's steps are)."""
    root, dest = Path(root).resolve(), Path(dest).resolve()
    only_lab = lab
    if only_lab is not None and solved_through is None:
        raise StarterError("lab= only makes sense with solved_through=K")
    if dest.exists() and any(dest.iterdir()):
        raise StarterError(f"{dest} exists and is not empty: choose a new folder")
    if root == dest:
        raise StarterError("the starter copy must go to a new folder, not the repository itself")
    stats = {"files": 0, "regions": 0, "hidden_tests_removed": 0, "hidden_modules_removed": 0}
    for src in _all_files(root):
        rel = src.relative_to(root)
        if any(part in _SKIP_DIRS for part in rel.parts) or _instructor_only(rel):
            continue
        target = dest / rel
        if rel.parts[0] == "mlsys_labs" and src.suffix == ".py":
            text = src.read_text()
            package = rel.parts[1] if len(rel.parts) > 2 else None
            owner = lab_of_package(package) if package else None
            label = f"Lab {owner.number} ({package})" if owner else f"mlsys_labs.{'.'.join(rel.with_suffix('').parts[1:])}"
            readme = f"labs/batch{owner.number}/README.md" if owner else None
            keep = solved_through
            if solved_through is not None and only_lab is not None and (owner is None or owner.number != only_lab):
                keep = 10**6      # another lab: the reference, whole
            text, n = stub_source(text, lab_label=label, filename=str(rel), readme=readme, solved_through=keep)
            stats["regions"] += n
            _write(target, text)
        elif rel.parts[0] == "labs" and src.suffix == ".py" and src.name.startswith("test_"):
            new, removed = remove_hidden_tests(src.read_text(), filename=str(rel))
            if new is None:
                stats["hidden_modules_removed"] += 1
                continue
            stats["hidden_tests_removed"] += removed
            _write(target, new)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        stats["files"] += 1
    return stats


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
