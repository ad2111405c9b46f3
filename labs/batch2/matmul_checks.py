"""Lab 2 test helpers: the float64 reference and the per-dtype error bound for a matmul."""
from __future__ import annotations

import numpy as np

from mlsys_labs.common.tolerance import assert_close

def assert_matmul_close(c, a, b, what="C"):
    """|C - A@B| <= (k + 2) eps |A| @ |B| elementwise, the reference in float64.

    The bound is the standard one for any summation order (Higham, "Accuracy and
    Stability of Numerical Algorithms", §3.5: |C - fl(AB)| <= gamma_k |A||B|, with
    gamma_k ~ k u, u = eps/2), so blocked or vectorised (reassociated) sums pass and a
    wrong element fails: float32 eps 1.2e-7, float64 eps 2.2e-16.
    """
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ref = a64 @ b64
    assert c.shape == ref.shape, f"{what}: shape {c.shape}, expected {ref.shape}"
    assert c.dtype == a.dtype, f"{what}: dtype {c.dtype}, expected {a.dtype}"
    eps = np.finfo(a.dtype).eps
    k = a.shape[1]
    bound = (k + 2) * eps * (np.abs(a64) @ np.abs(b64)) + np.finfo(a.dtype).tiny
    c64 = c.astype(np.float64)
    if np.isnan(c64).any():   # unwritten elements of a poisoned output: let the shared check name them
        assert_close(c64, ref, dtype=a.dtype, what=what)
    err = np.abs(c64 - ref)
    bad = err > bound
    if bad.any():
        w = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} elements beyond (k+2) eps |A||B| "
                             f"({a.dtype}, k={k}); worst at {tuple(int(i) for i in w)}: got {c64[w]!r}, "
                             f"expected {ref[w]!r}, |error| {err[w]:.3g} > bound {bound[w]:.3g}")

def random_matrix(rng, shape, dtype):
    """Standard normal entries (both signs, so sums cancel and errors show)."""
    return rng.standard_normal(shape).astype(dtype)

