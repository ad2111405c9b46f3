"""What an instructor should look at in a submission: copies of the reference, and code
that reaches for the grader.

**Copies.** 
The reference is public in this repository, so copying cannot be prevented — but it can
be seen.  For every function that holds a solution region (``# BEGIN SOLUTION``), the
submission's function of the same name in the same file is compared with the
reference's as a token stream with comments, docstrings, whitespace and line breaks
dropped and every identifier renamed in order of first use (``a, b = x, y`` and
``p, q = u, v`` read the same).  Identical streams are reported; short functions (fewer
than ``MIN_TOKENS`` tokens, where two honest solutions often coincide) are not.

**Reaching for the grader.** Lab code never needs pytest, the grading package, the
garbage collector's object list, stack frames, ``ctypes`` or ``/proc``, nor to assign into
the project's shared ``common`` helpers.  :func:`suspicious_code` lists every such line
of the submission's lab packages (a static scan: it shows the plain attempts, not an
obfuscated one — the sandbox and the grader's checks are the defence; this is the flag).
"""
from __future__ import annotations

import ast
import io
import keyword
import tokenize
from pathlib import Path

from ..catalog import Lab
from .starter import BEGIN, _enclosing_name

MIN_TOKENS = 40
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENCODING, tokenize.ENDMARKER}


def normalised_tokens(source: str) -> list[str]:
    """The token stream of ``source`` with names canonical and layout dropped."""
    names: dict[str, str] = {}
    out = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    for tok in tokens:
        if tok.type in _SKIP:
            continue
        if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
            out.append(names.setdefault(tok.string, f"n{len(names)}"))
        else:
            out.append(tok.string)
    return out


def _functions(source: str) -> dict[str, str]:
    """qualified name -> source of the function without its docstring."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    out: dict[str, str] = {}

    def visit(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    body = child.body
                    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                            and isinstance(body[0].value.value, str):
                        body = body[1:]
                    out[name] = "\n".join(ast.get_source_segment(source, stmt, padded=True) or "" for stmt in body)
                visit(child, name + ".")

    visit(tree, "")
    return out


def solution_functions(path: Path) -> list[str]:
    """Qualified names of the functions in ``path`` holding a solution region."""
    lines = path.read_text().splitlines()
    names = []
    for i, line in enumerate(lines):
        m = BEGIN.match(line)
        if m:
            name = _enclosing_name(lines, i, len(m.group("indent").expandtabs()))
            if name and name not in names:
                names.append(name)
    return names


def copied_regions(root: Path, submission: Path, lab: Lab) -> list[str]:
    """``file:function`` for each solution function of ``lab`` that the submission has
    exactly as the reference (after normalising), longest first."""
    found = []
    for package in lab.packages:
        for ref_file in sorted((root / "mlsys_labs" / package).rglob("*.py")):
            rel = ref_file.relative_to(root)
            sub_file = submission / rel
            if not sub_file.is_file() or sub_file.is_symlink():
                continue
            wanted = solution_functions(ref_file)
            if not wanted:
                continue
            ref_funcs = _functions(ref_file.read_text())
            sub_funcs = _functions(sub_file.read_text(errors="replace"))
            for name in wanted:
                ref_tokens = normalised_tokens(ref_funcs.get(name, ""))
                if len(ref_tokens) >= MIN_TOKENS and ref_tokens == normalised_tokens(sub_funcs.get(name, "")):
                    found.append((len(ref_tokens), f"{rel}:{name}"))
    return [name for _, name in sorted(found, reverse=True)]


# modules lab code has no business importing (the grader, pytest's internals, raw memory,
# other processes' state)
_FORBIDDEN_MODULES = ("pytest", "_pytest", "pluggy", "mlsys_labs.grading", "ctypes", "gc", "inspect",
                      "atexit", "resource", "faulthandler")
_FORBIDDEN_CALLS = {"_getframe", "currentframe", "get_objects", "get_referrers", "settrace", "setprofile",
                    "setsid", "setpgid", "kill", "killpg", "fork", "forkpty", "daemon"}


def _suspicious_in(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            names = []
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in _FORBIDDEN_MODULES):
                found.append((node.lineno, f"imports {name}"))
                break
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in _FORBIDDEN_CALLS:
                found.append((node.lineno, f"calls {name}()"))
            if name in ("__import__", "import_module"):
                found.append((node.lineno, "imports a module by name at run time"))
            for kw in node.keywords:
                if kw.arg in ("start_new_session", "preexec_fn"):
                    found.append((node.lineno, f"starts a process with {kw.arg}"))
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                text = ast.unparse(t)
                if isinstance(t, ast.Attribute) and any(k in text for k in ("tolerance", "common", "grading",
                                                                            "pytest", "sys.modules", "__path__")):
                    found.append((node.lineno, f"assigns to {text}"))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                "/proc/" in node.value or "grade-log" in node.value or "events.jsonl" in node.value):
            found.append((node.lineno, f"mentions {node.value[:40]!r}"))
        if isinstance(node, ast.Attribute) and node.attr in ("__path__", "__code__", "__globals__", "f_back", "f_locals"):
            found.append((node.lineno, f"touches .{node.attr}"))
    return found


def _scan(root: Path, lab: Lab) -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {}
    for package in lab.packages:
        base = root / "mlsys_labs" / package
        files = [base.with_suffix(".py")] if base.with_suffix(".py").is_file() else sorted(base.rglob("*.py"))
        for path in files:
            if path.is_symlink() or not path.is_file():
                continue
            try:
                tree = ast.parse(path.read_text(errors="replace"))
            except SyntaxError:
                continue
            out[str(path.relative_to(root))] = sorted(set(_suspicious_in(tree)))
    return out


def suspicious_code(submission: Path, lab: Lab, reference: Path) -> list[str]:
    """``file:line: what`` for each line of the submission's lab packages that reaches for
    pytest, the grader, frames, raw memory or other processes — beyond what the reference's
    same file does (the reference starts servers and counts live tensors, legitimately)."""
    ours = _scan(reference, lab)
    out = []
    for rel, items in _scan(submission, lab).items():
        allowed: dict[str, int] = {}
        for _, what in ours.get(rel, []):
            allowed[what] = allowed.get(what, 0) + 1
        for line, what in items:
            if allowed.get(what, 0) > 0:
                allowed[what] -= 1
                continue
            out.append(f"{rel}:{line}: {what}")
    return out
