"""Numba CUDA kernels (run by Numba's CUDA simulator without a GPU): shared-memory tiled
matmul and the block reduction, against numpy in float64.  The same tests run on a GPU, where the
``large`` cases are sized for it (the simulator runs one Python thread per CUDA thread: small here)."""
import numpy as np
import pytest

from mlsys_labs.common.device import has_cuda
from mlsys_labs.common.tolerance import assert_close, poison_like
from mlsys_labs.kernels import block_sum, tiled_matmul

ON_GPU = has_cuda()
MATMUL_LARGE = (1000, 700, 900) if ON_GPU else (17, 16, 5)
SUM_LARGE = (10_000_000, 64) if ON_GPU else (129, 1)

pytestmark = pytest.mark.step(9)


@pytest.mark.points(3)
@pytest.mark.parametrize("m,k,n", [(19, 23, 17), MATMUL_LARGE], ids=["19x23x17", "large"])
def test_tiled_matmul(rng, m, k, n):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = tiled_matmul(a, b, out=poison_like(np.empty((m, n), np.float32)))
    # float32 sums of k products: the float32 policy scaled by k's growth, atol by sqrt(k)·|a||b|
    assert_close(out, a.astype(np.float64) @ b, dtype="float32", scale=10.0, what=f"tiled matmul {m}x{k}x{n}")


@pytest.mark.points(1)
@pytest.mark.hidden
def test_tiled_matmul_checks_and_thin_shapes(rng):
    a = rng.standard_normal((3, 40)).astype(np.float32)
    b = rng.standard_normal((40, 2)).astype(np.float32)
    assert_close(tiled_matmul(a, b, out=poison_like(np.empty((3, 2), np.float32))), a.astype(np.float64) @ b,
                 dtype="float32", scale=10.0, what="3x40x2 matmul")
    with pytest.raises(ValueError, match="inner"):
        tiled_matmul(a, b.T.copy())
    with pytest.raises(TypeError, match="float32"):
        tiled_matmul(a.astype(np.float64), b)


@pytest.mark.points(2)
@pytest.mark.parametrize("n,max_blocks", [(1, 64), (700, 64), (700, 2), SUM_LARGE], ids=["1", "700", "700-2blocks", "large"])
def test_block_sum(rng, n, max_blocks):
    """Fewer blocks than n/THREADS (max_blocks) makes every thread visit several elements: the grid-stride loop."""
    x = rng.random(n).astype(np.float32)
    total = block_sum(x, max_blocks=max_blocks)
    # float32 partial sums of positive values: relative error ~ (n/threads)·eps, stated as 10x the policy
    assert_close(total, x.astype(np.float64).sum(), dtype="float32", scale=10.0, what=f"sum of {n}")
