"""Lab 2 test helpers: the float64 reference and the per-dtype error bound for a matmul; a fake clock."""
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



PAD = 23   # canary elements on each side of a guarded buffer (odd: no block size divides it)


class Guarded:
    """A C-contiguous matrix that is a view into a larger buffer, with ``PAD`` canary
    elements before and after it: a kernel that writes (or, for an input, reads) past
    the matrix's first or last element shows up.

    Output canaries are -0.0: any store, even ``+= 0.0`` (which turns -0.0 into +0.0),
    changes their bits.  Input canaries are NaN: a read past the end poisons the result.
    """

    def __init__(self, shape, dtype, fill=np.nan, canary=-0.0):
        m, n = shape
        self.buf = np.full(m * n + 2 * PAD, canary, dtype=dtype)
        self.expected = self.buf.copy()
        self.array = self.buf[PAD:PAD + m * n].reshape(m, n)
        self.array[...] = fill
        self.expected[PAD:PAD + m * n] = 0

    def assert_canaries_intact(self, what="C"):
        bits = np.uint64 if self.buf.itemsize == 8 else np.uint32
        got = self.buf.copy()
        got[PAD:PAD + self.array.size] = 0
        diff = np.flatnonzero(got.view(bits) != self.expected.view(bits))
        where = [int(i) - PAD if i < PAD else int(i) - PAD - self.array.size + 1 for i in diff[:8]]
        assert diff.size == 0, (f"{what}: {diff.size} elements outside the matrix were written "
                                f"(offsets {where}: negative = before its first element, positive = "
                                f"after its last); now {got[diff[:8]].tolist()}")


def guarded_input(x):
    """A copy of ``x`` (2-D, C-contiguous) with NaN right before and after it in memory."""
    g = Guarded(x.shape, x.dtype, canary=np.nan)
    g.array[...] = x
    return g.array


def assert_bits_equal(actual, expected, what):
    """Bit-for-bit equality (NaN payloads and the sign of zero included)."""
    a, e = np.ascontiguousarray(actual), np.ascontiguousarray(expected)
    same = a.view(np.uint8).reshape(a.shape + (-1,)) == e.view(np.uint8).reshape(e.shape + (-1,))
    bad = ~same.all(axis=-1)
    assert not bad.any(), (f"{what}: {int(bad.sum())} elements changed that must not be touched, "
                           f"first at {tuple(int(i) for i in np.argwhere(bad)[0])}")


class FakeClock:
    """time.perf_counter that only moves when a fake kernel advances ``now``."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self):
        return self.now
