"""Step 2, the fused row softmax; step 3, the online (single-pass statistics) softmax; both
against float64 torch.softmax."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.common.tolerance import assert_close, poison_like
from mlsys_labs.kernels import online_softmax, softmax, softmax_reference

GPU = pytest.mark.gpu


@pytest.mark.step(2)
@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=GPU)])
@pytest.mark.parametrize("shape", [(7, 100), (3, 1), (2, 1024)])
def test_fused_softmax(randn, dtype, shape):
    x = randn(*shape, dtype=dtype, scale=3.0)
    out = poison_like(x)
    softmax(x, out)
    assert_close(out, softmax_reference(x), dtype=dtype, what=f"softmax {shape}")


@pytest.mark.step(2)
@pytest.mark.points(1)
def test_fused_softmax_strided_rows_and_masked_entries(randn):
    """Rows of a wider tensor (row stride != width) and -inf entries (a causal mask)."""
    big = randn(6, 128, scale=4.0)
    big[:, 90:] = float("-inf")
    x = big[:, :100]
    out = poison_like(torch.empty(6, 100, device=x.device))
    softmax(x, out)
    assert_close(out, softmax_reference(x), what="softmax of strided rows with -inf")


@pytest.mark.step(2)
@pytest.mark.points(1)
def test_fused_softmax_checks_inputs(randn):
    x = randn(4, 33)
    assert_close(softmax(x), softmax_reference(x), what="softmax")
    with pytest.raises(ValueError, match="dimensions"):
        softmax(randn(8))
    with pytest.raises(ValueError, match="contiguous"):
        softmax(randn(8, 4).T)
    with pytest.raises(TypeError, match="dtype"):
        softmax(x.double())
    with pytest.raises(ValueError, match="online_softmax"):
        softmax(torch.empty(1, 40000, device=x.device))


@pytest.mark.step(3)
@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=GPU)])
@pytest.mark.parametrize("shape,block", [((5, 300), 64), ((3, 17), 16), ((2, 256), 64)])
def test_online_softmax_rows_longer_than_a_block(randn, dtype, shape, block):
    x = randn(*shape, dtype=dtype, scale=5.0)
    out = poison_like(x)
    online_softmax(x, out, block_size=block)
    assert_close(out, softmax_reference(x), dtype=dtype, what=f"online softmax {shape} block {block}")


@pytest.mark.step(3)
@pytest.mark.points(1)
def test_online_softmax_growing_max_and_masked_lanes(randn, device):
    """The running max must be raised block after block (ascending rows) and -inf lanes must not
    poison the sums (the rescale exp(m - m') with m = m' = -inf)."""
    x = randn(4, 200, scale=1.0)
    x[0] = torch.linspace(-30, 30, 200, device=device)       # every block raises the max
    x[1, :150] = float("-inf")                                # whole blocks of -inf first
    x[2, ::3] = float("-inf")                                 # scattered masked lanes
    out = poison_like(x)
    online_softmax(x, out, block_size=32)
    assert_close(out, softmax_reference(x), what="online softmax with rising max and -inf")


@pytest.mark.step(3)
@pytest.mark.points(1)
@settings(max_examples=8, deadline=None)
@given(n_cols=st.integers(1, 400), log_block=st.integers(4, 7), scale=st.floats(0.1, 30.0),
       seed=st.integers(0, 2**31 - 1))
def test_online_softmax_property(device, n_cols, log_block, scale, seed):
    """Property: for any row length and block size, rows match float64 softmax and sum to 1."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(3, n_cols, generator=g) * scale).to(device)
    out = poison_like(x)
    online_softmax(x, out, block_size=2 ** log_block)
    assert_close(out, softmax_reference(x), what=f"online softmax n={n_cols} block={2 ** log_block}")
    assert_close(out.double().sum(-1), torch.ones(3, dtype=torch.float64), dtype=torch.float32,
                 scale=10.0, what="row sums (n·eps rounding: 10x the float32 policy)")


@pytest.mark.step(3)
@pytest.mark.points(2)
@pytest.mark.hidden
def test_online_softmax_huge_values_do_not_overflow(randn):
    x = randn(3, 500, scale=1.0) * 1e4
    out = poison_like(x)
    online_softmax(x, out, block_size=64)
    assert_close(out, softmax_reference(x), what="online softmax of values ~1e4")


@pytest.mark.step(2)
@pytest.mark.points(0.5)
@GPU
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_softmax_large_rows_gpu(randn, dtype):
    x = randn(1024, 4096, dtype=dtype, scale=3.0)
    out = poison_like(x)
    softmax(x, out)
    assert_close(out, softmax_reference(x), dtype=dtype, what="fused softmax 1024x4096")


@pytest.mark.step(3)
@pytest.mark.points(0.5)
@GPU
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_online_softmax_long_rows_gpu(randn, device, dtype):
    y = randn(64, 50000, dtype=dtype, scale=3.0)
    out = poison_like(torch.empty(64, 50000, device=device, dtype=dtype))
    online_softmax(y, out)
    assert_close(out, softmax_reference(y), dtype=dtype, what="online softmax 64x50000")
