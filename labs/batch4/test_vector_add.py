"""Vector add: masks, blocks, and the launcher's checks.

The same tests run interpreted on the CPU and natively on a GPU; the ``large`` length is sized by device."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.common.device import has_cuda
from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.kernels import add, add_reference

pytestmark = pytest.mark.step(1)
LARGE = 50_000_017 if has_cuda() else 100_003   # not a multiple of any block size


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", [1, 1000, 4097, LARGE], ids=["1", "1000", "4097", "large"])
def test_add_matches_float64(randn, fenced, dtype, n):
    x, y = randn(n, dtype=dtype), randn(n, dtype=dtype)
    out = fenced((n,), dtype)
    add(x, y, out.out)
    # one rounding of an exact sum: the dtype's policy
    assert_close(out.out, add_reference(x, y), dtype=dtype, what=f"add n={n}")
    out.check(f"add n={n}")


@pytest.mark.points(1)
@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 3000), log_block=st.integers(4, 10), seed=st.integers(0, 2**31 - 1))
def test_add_any_length_any_block(fenced, device, n, log_block, seed):
    """Property: every element is written exactly right whatever the block size and length,
    and nothing outside the output is."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, generator=g).to(device), torch.randn(n, generator=g).to(device)
    out = fenced((n,), pad=2048)
    add(x, y, out.out, block_size=2 ** log_block)
    assert_close(out.out, add_reference(x, y), dtype=torch.float32, what=f"add n={n} block={2 ** log_block}")
    out.check(f"add n={n} block={2 ** log_block}")


@pytest.mark.points(1)
def test_add_checks_inputs_before_launch(randn):
    x, y = randn(64, 3), randn(64, 3)
    assert_close(add(x, y), add_reference(x, y), what="add of a 2-D tensor")
    with pytest.raises(ValueError, match="shape"):
        add(x, randn(65, 3))
    with pytest.raises(TypeError, match="dtype"):
        add(x, y.half())
    with pytest.raises(TypeError, match="dtype"):
        add(x.to(torch.int32), y.to(torch.int32))
    with pytest.raises(ValueError, match="contiguous"):
        add(x.T, y.T)
    with pytest.raises(ValueError, match="power of two"):
        add(x, y, block_size=100)
