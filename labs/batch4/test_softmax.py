"""Step 2, the fused row softmax; step 3, the online (single-pass statistics) softmax; both
against float64 torch.softmax.

Every test runs on the CPU (Triton's interpreter) and natively on a GPU (``--require-gpu``):
the same checks, with the ``large`` cases sized by device (small under the interpreter)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.common.device import has_cuda
from mlsys_labs.common.tolerance import assert_close, poison_like
from mlsys_labs.kernels import online_softmax, softmax, softmax_reference

ON_GPU = has_cuda()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]   # no tl.dot here: bf16 runs interpreted too
# the "large" case: a shape the interpreter runs in well under a second, the GPU at full size
FUSED_LARGE = (1024, 4096) if ON_GPU else (3, 3000)
ONLINE_LARGE = ((64, 50000), 1024) if ON_GPU else ((2, 1500), 128)


def large_logit_rows(randn, n_cols, dtype):
    """Rows that overflow exp without the max subtraction (all > 88, the float32 limit), rows that
    underflow to 0/0 (all < -104), a row spanning ±1000, and an ordinary row, in ``dtype``."""
    x = randn(4, n_cols, scale=3.0)
    x[0] += 150.0
    x[1] -= 150.0
    x[2] *= 300.0
    return x.to(dtype)


@pytest.mark.step(2)
@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 100), (3, 1), (2, 1024), FUSED_LARGE], ids=["7x100", "3x1", "2x1024", "large"])
def test_fused_softmax(randn, fenced, dtype, shape):
    x = randn(*shape, dtype=dtype, scale=3.0)
    out = fenced(shape, dtype)
    softmax(x, out.out)
    assert_close(out.out, softmax_reference(x), dtype=dtype, what=f"softmax {shape}")
    out.check(f"softmax {shape}")


@pytest.mark.step(2)
@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_softmax_large_logits(randn, fenced, dtype):
    """Logits whose exp overflows (or underflows to 0/0) unless the row max is subtracted first."""
    x = large_logit_rows(randn, 100, dtype)
    out = fenced(x.shape, dtype)
    softmax(x, out.out)
    assert_close(out.out, softmax_reference(x), dtype=dtype, what="softmax of logits beyond exp's range")
    out.check("softmax of large logits")


@pytest.mark.step(2)
@pytest.mark.points(1)
def test_fused_softmax_strided_rows_and_masked_entries(randn, fenced):
    """Rows of a wider tensor (row stride != width) and -inf entries (a causal mask)."""
    big = randn(6, 128, scale=4.0)
    big[:, 90:] = float("-inf")
    x = big[:, :100]
    out = fenced((6, 100))
    softmax(x, out.out)
    assert_close(out.out, softmax_reference(x), what="softmax of strided rows with -inf")
    out.check("softmax of strided rows")


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
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,block", [((5, 300), 64), ((3, 17), 16), ((2, 256), 64), ONLINE_LARGE],
                         ids=["5x300-b64", "3x17-b16", "2x256-b64", "large"])
def test_online_softmax_rows_longer_than_a_block(randn, fenced, dtype, shape, block):
    x = randn(*shape, dtype=dtype, scale=5.0)
    out = fenced(shape, dtype)
    online_softmax(x, out.out, block_size=block)
    assert_close(out.out, softmax_reference(x), dtype=dtype, what=f"online softmax {shape} block {block}")
    out.check(f"online softmax {shape} block {block}")


@pytest.mark.step(3)
@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_online_softmax_large_logits(randn, fenced, dtype):
    """The same rows as the fused test, streamed 32 columns at a time: the running max must keep
    every exponent <= 0 in both passes."""
    x = large_logit_rows(randn, 100, dtype)
    out = fenced(x.shape, dtype)
    online_softmax(x, out.out, block_size=32)
    assert_close(out.out, softmax_reference(x), dtype=dtype, what="online softmax of logits beyond exp's range")
    out.check("online softmax of large logits")


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
