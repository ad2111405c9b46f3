"""Vector add: masks, blocks, and the launcher's checks."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.common.tolerance import assert_close, poison_like
from mlsys_labs.kernels import add, add_reference

pytestmark = pytest.mark.step(1)


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", [1, 1000, 4097])
def test_add_matches_float64(randn, dtype, n):
    x, y = randn(n, dtype=dtype), randn(n, dtype=dtype)
    out = poison_like(x)
    add(x, y, out)
    # one rounding of an exact sum: the dtype's policy
    assert_close(out, add_reference(x, y), dtype=dtype, what=f"add n={n}")


@pytest.mark.points(1)
@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 3000), log_block=st.integers(4, 10), seed=st.integers(0, 2**31 - 1))
def test_add_any_length_any_block(device, n, log_block, seed):
    """Property: every element is written exactly right whatever the block size and length."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, generator=g).to(device), torch.randn(n, generator=g).to(device)
    out = poison_like(x)
    add(x, y, out, block_size=2 ** log_block)
    assert_close(out, add_reference(x, y), dtype=torch.float32, what=f"add n={n} block={2 ** log_block}")


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
