"""Differential verdicts: does a test's record of comparisons match the reference's?

While a test runs, the plugin records every ``assert_close`` (shape, tolerance, a sample of
up to 256 elements and sums over all of them) and every plain ``assert`` that passed.  A
submission's pass counts only if its record matches the reference's from the same seed: the
same comparisons, each value within ``SLACK`` times the test's own tolerance of the
reference's (both lie within the tolerance of the test's expected value), the same asserts.
"""
from __future__ import annotations

import math

import numpy as np

from .runner import as_positive

SLACK = 2.5   # both values lie within the test's tolerance of its expected value: 2x, and some room


def compare_checks(reference: list[dict], submission: list[dict]) -> str:
    """Why the submission's record of a test's comparisons differs from the reference's
    ("" when it matches).  ``assert_close`` records must agree one by one (count, shape,
    values within twice the test's tolerance, sums over all elements likewise); the same
    plain asserts must have passed."""
    ref_close = [c for c in reference if c.get("kind") == "close"]
    sub_close = [c for c in submission if c.get("kind") == "close"]
    if len(ref_close) != len(sub_close):
        return f"{len(sub_close)} value comparisons recorded, the reference made {len(ref_close)}"
    for i, (r, s) in enumerate(zip(ref_close, sub_close)):
        why = _compare_close(r, s)
        if why:
            return f"comparison {i + 1} ({str(r.get('what', 'result'))[:60]}): {why}"
    # by source text, not line: the visible tests' files have the hidden tests cut out
    ref_asserts = {str(c.get("source")): c.get("line") for c in reference if c.get("kind") == "assert"}
    sub_asserts = {str(c.get("source")) for c in submission if c.get("kind") == "assert"}
    if set(ref_asserts) != sub_asserts:
        missing = sorted(set(ref_asserts) - sub_asserts)
        if missing:
            return f"the assert on line {ref_asserts[missing[0]]} (assert {missing[0][:60]}) never passed"
        return "asserts passed that the reference's run never reached"
    return ""


def _floats(values) -> np.ndarray | None:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.ndim == 1 else None


def _compare_close(r: dict, s: dict) -> str:
    if list(r.get("shape") or []) != list(s.get("shape") or []):
        return f"shape {s.get('shape')} != reference's {r.get('shape')}"
    rtol, atol = as_positive(r.get("rtol"), 0.0), as_positive(r.get("atol"), 0.0)
    a, b = _floats(s.get("sample")), _floats(r.get("sample"))
    if a is None or b is None or a.shape != b.shape:
        return "malformed record"
    both_nan = np.isnan(a) & np.isnan(b)
    bound = SLACK * (atol + rtol * np.maximum(np.abs(a), np.abs(b)))
    bad = ~((np.abs(a - b) <= bound) | both_nan)
    if bad.any():
        i = int(np.argmax(bad))
        return f"element {i} of the sample is {a[i]!r}, the reference's {b[i]!r}"
    n = max(1, int(np.prod(r.get("shape") or [1])))
    x, y, sx, sy = (s.get("sum"), r.get("sum"), s.get("abs_sum"), r.get("abs_sum"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y, sx, sy)):
        return "malformed record"
    if not (math.isnan(x) and math.isnan(y)) and not abs(x - y) <= SLACK * (n * atol + rtol * (abs(sx) + abs(sy))):
        return f"the sum over all {n} elements is {x!r}, the reference's {y!r}"
    return ""

