"""Lab 2: make the helper module ``matmul_checks`` (the float64 reference and the per-dtype
error bound) importable by the tests, also under ``--import-mode=importlib`` (the grader's)."""
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
