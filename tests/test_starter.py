"""The starter transformation: regions stubbed, hidden tests dropped, errors for bad regions."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import pytest

from mlsys_labs.grading.starter import BEGIN, StarterError, _marker_lines, remove_hidden_tests, stub_source


def _stub(src: str) -> str:
    return stub_source(textwrap.dedent(src), lab_label="Lab 9 (toy)")[0]


def test_region_becomes_raise_with_lab_function_and_hint():
    out = _stub('''
        def f(x):
            """Doc stays."""
            y = x + 1
            # BEGIN SOLUTION hint: square it
            return y * y
            # END SOLUTION
    ''')
    assert '"""Doc stays."""' in out and "y = x + 1" in out and "y * y" not in out
    assert "raise NotImplementedError('Lab 9 (toy) f: square it')" in out
    ns: dict = {}
    exec(out, ns)
    with pytest.raises(NotImplementedError, match="square it"):
        ns["f"](2)


def test_method_name_is_qualified_and_default_hint_points_only_to_what_exists():
    out = _stub('''
        class Tensor:
            def exp(self):
                # BEGIN SOLUTION
                return 1
                # END SOLUTION

            def log(self):
                """Natural log."""
                # BEGIN SOLUTION
                return 0
                # END SOLUTION
    ''')
    assert "Lab 9 (toy) Tensor.exp: see this lab's README" in out     # no docstring to point to
    assert "Lab 9 (toy) Tensor.log: see the docstring of Tensor.log" in out


def test_step_tag_named_in_the_stub_and_solved_through_keeps_earlier_steps():
    src = textwrap.dedent('''
        def one():
            # BEGIN SOLUTION [step 1] hint: return one
            return 1
            # END SOLUTION

        def two():
            # BEGIN SOLUTION [step 2] hint: return two
            return 2
            # END SOLUTION
    ''')
    out, n = stub_source(src, lab_label="Lab 9 (toy)")
    assert n == 2 and "Lab 9 (toy) one [step 1]: return one" in out and "[step 2]: return two" in out
    out, n = stub_source(src, lab_label="Lab 9 (toy)", solved_through=1)
    ns: dict = {}
    exec(out, ns)
    assert n == 1 and ns["one"]() == 1
    with pytest.raises(NotImplementedError, match=r"two \[step 2\]"):
        ns["two"]()


def test_several_regions_counted():
    src = textwrap.dedent('''
        def a():
            # BEGIN SOLUTION
            return 1
            # END SOLUTION
        def b():
            # BEGIN SOLUTION
            return 2
            # END SOLUTION
    ''')
    out, n = stub_source(src, lab_label="L")
    assert n == 2 and out.count("raise NotImplementedError") == 2


def test_marker_inside_a_string_is_not_a_marker():
    src = 'def f():\n    """\n    # BEGIN SOLUTION\n    """\n    return 1\n'
    out, n = stub_source(src, lab_label="L")
    assert n == 0 and out == src


@pytest.mark.parametrize("src, message", [
    ("def f():\n    # BEGIN SOLUTION\n    return 1\n", "never closed"),
    ("def f():\n    return 1\n    # END SOLUTION\n", "without a BEGIN"),
    ("def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n", "nested"),
    ("# BEGIN SOLUTION\nX = 1\n# END SOLUTION\n", "inside a function"),
    ("def f():\n    # BEGIN SOLUTION\n    if True:\n    # END SOLUTION\n        return 1\n", "does not parse"),
])
def test_bad_regions_are_reported(src, message):
    with pytest.raises(StarterError, match=message):
        stub_source(src, lab_label="L", filename="x.py")


def test_hidden_tests_removed_with_their_decorators():
    src = textwrap.dedent('''
        import pytest

        @pytest.mark.points(2)
        def test_visible():
            assert True

        @pytest.mark.points(3)
        @pytest.mark.hidden
        def test_secret():
            assert True

        @pytest.mark.hidden
        class TestSecretGroup:
            def test_x(self):
                pass
    ''')
    out, removed = remove_hidden_tests(src)
    assert removed == 2
    tree = ast.parse(out)
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert names == ["test_visible"] and "points(3)" not in out


def test_module_marked_hidden_is_dropped_whole():
    out, _ = remove_hidden_tests("import pytest\npytestmark = [pytest.mark.hidden]\ndef test_a():\n    pass\n")
    assert out is None


def test_cli_starter_copy_imports_cleanly_and_has_no_solutions(tmp_path):
    """The real repository's starter: every package imports, no solution text is left."""
    dest = tmp_path / "starter"
    proc = subprocess.run([sys.executable, "-m", "mlsys_labs.cli", "starter", str(dest)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "pyproject.toml").exists() and (dest / "Makefile").exists()
    assert not (dest / ".venv").exists() and not (dest / ".git").exists()
    leftover = [p for p in (dest / "mlsys_labs").rglob("*.py")
                if any(BEGIN.match(p.read_text().splitlines()[i]) for i in _marker_lines(p.read_text()))]
    assert not leftover, f"solution regions left in {leftover}"
    packages = sorted(p.name for p in (dest / "mlsys_labs").iterdir() if (p / "__init__.py").exists())
    code = "import importlib; [importlib.import_module('mlsys_labs.' + p) for p in %r]" % packages
    imp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=dest,
                         env={"PYTHONPATH": str(dest), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg",
                              "TRITON_INTERPRET": "1", "NUMBA_ENABLE_CUDASIM": "1", "HOME": str(tmp_path)})
    assert imp.returncode == 0, imp.stderr[-3000:]
    again = subprocess.run([sys.executable, "-m", "mlsys_labs.cli", "starter", str(dest)], capture_output=True, text=True)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr


def test_solved_through_one_lab_keeps_every_other_lab_whole(tmp_path):
    """``--solved-through K --lab 3``: lab 3's steps > K stubbed, lab 1 (which lab 3's SGD uses) whole."""
    from mlsys_labs.common.paths import project_root
    from mlsys_labs.grading.starter import write_starter

    stats = write_starter(project_root(), tmp_path / "copy", solved_through=1, lab=3)
    stubbed = [p.relative_to(tmp_path / "copy").as_posix() for p in (tmp_path / "copy" / "mlsys_labs").rglob("*.py")
               if "grading" not in p.parts
               and ("NotImplementedError('Lab" in p.read_text() or 'NotImplementedError("Lab' in p.read_text())]
    assert stats["regions"] > 0 and stubbed
    assert all(p.startswith("mlsys_labs/collectives/") for p in stubbed), stubbed
    with pytest.raises(StarterError, match="solved_through"):
        write_starter(project_root(), tmp_path / "other", lab=3)
