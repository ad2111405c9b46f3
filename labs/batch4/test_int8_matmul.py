"""W8A8: step 7, the int8 GEMM exact against integer arithmetic and its fused dequantisation
epilogue (integer inputs made in the test); step 8, the quantisation helpers and SmoothQuant's
smoothing on a layer with outlier channels.

The same tests run interpreted on the CPU and natively on a GPU; the ``large`` GEMM is sized by
device, and the autotuned launch (a GPU-only code path) is GPU-only."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.common.device import has_cuda
from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.kernels import (W8A8Linear, dequantize, int8_matmul, int8_matmul_reference, outlier_layer,
                                quantization_error, quantize_per_channel, quantize_per_token, smooth,
                                smoothing_factors, w8a8_linear, w8a8_linear_reference)

GPU = pytest.mark.gpu
# M, N, K not multiples of any block size (interpreter 16x16x32, GPU 128x128x64)
LARGE = (1000, 3000, 4096 + 37) if has_cuda() else (70, 50, 150)


def randint8(gen, device, *shape):
    return torch.randint(-128, 128, shape, generator=gen, dtype=torch.int8).to(device)


@pytest.mark.step(7)
@pytest.mark.points(2)
@pytest.mark.parametrize("m,n,k", [(37, 29, 70), (16, 16, 32), (1, 5, 3), LARGE,
                                   pytest.param(2048, 2048, 2048, marks=GPU, id="gpu-autotuned-2048")],
                         ids=["37x29x70", "16x16x32", "1x5x3", "large", "gpu-autotuned-2048"])
def test_int8_matmul_is_exact(gen, device, fenced, m, n, k):
    """int8 × int8 → int32 must equal integer arithmetic bit for bit (full range, -128 included)."""
    a, w = randint8(gen, device, m, k), randint8(gen, device, n, k)
    out = fenced((m, n), torch.int32)
    int8_matmul(a, w, out.out)
    assert_close(out.out, int8_matmul_reference(a, w), what=f"int32 accumulator {m}x{n}x{k}")
    out.check(f"int32 accumulator {m}x{n}x{k}")


@pytest.mark.step(7)
@pytest.mark.points(2)
@pytest.mark.hidden
def test_int8_matmul_strided_activation_rows(gen, device, fenced):
    """A rows taken from a wider buffer (row stride != K) still multiply exactly; K-strided operands are refused."""
    big = randint8(gen, device, 20, 96)
    a, w = big[:, :40], randint8(gen, device, 24, 40)
    out = fenced((20, 24), torch.int32)
    int8_matmul(a, w, out.out)
    assert_close(out.out, int8_matmul_reference(a, w), what="int32 accumulator from sliced rows")
    out.check("int32 accumulator from sliced rows")
    with pytest.raises(ValueError, match="contiguous along K"):
        int8_matmul(a, randint8(gen, device, 40, 24).T)


@pytest.mark.step(7)
@pytest.mark.points(2)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_w8a8_epilogue(gen, device, fenced, out_dtype, with_bias):
    """Per-token and per-channel scales drawn per row (a per-tensor scale fails), ragged M and N."""
    m, n, k = 33, 40, 64
    x_q, w_q = randint8(gen, device, m, k), randint8(gen, device, n, k)
    x_scale = (torch.rand(m, generator=gen) * 0.02 + 1e-3).to(device)
    w_scale = (torch.rand(n, generator=gen) * 0.02 + 1e-3).to(device)
    bias = (torch.randn(n, generator=gen)).to(device) if with_bias else None
    out = fenced((m, n), out_dtype)
    w8a8_linear(x_q, x_scale, w_q, w_scale, bias, out_dtype=out_dtype, out=out.out)
    # exact int32 sum, then two float32 multiplies and an add before one rounding to out_dtype
    assert_close(out.out, w8a8_linear_reference(x_q, x_scale, w_q, w_scale, bias), dtype=out_dtype,
                 scale=2.0, what="dequantised output")
    out.check("dequantised output")


@pytest.mark.step(7)
@pytest.mark.points(1)
def test_w8a8_checks_inputs(gen, device):
    x_q, w_q = randint8(gen, device, 8, 32), randint8(gen, device, 16, 32)
    xs, ws = torch.ones(8, device=device), torch.ones(16, device=device)
    assert_close(w8a8_linear(x_q, xs, w_q, ws, out_dtype=torch.float32),
                 w8a8_linear_reference(x_q, xs, w_q, ws), what="unit-scale output")
    with pytest.raises(ValueError, match="nn.Linear"):
        int8_matmul(x_q, randint8(gen, device, 16, 31))
    with pytest.raises(TypeError, match="dtype"):
        int8_matmul(x_q.float(), w_q)
    with pytest.raises(ValueError, match="x_scale"):
        w8a8_linear(x_q, torch.ones(7, device=device), w_q, ws)
    with pytest.raises(ValueError, match="bias"):
        w8a8_linear(x_q, xs, w_q, ws, torch.ones(15, device=device))
    with pytest.raises(TypeError, match="dtype"):
        w8a8_linear(x_q, xs.double(), w_q, ws)


@pytest.mark.step(8)
@pytest.mark.points(1)
@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 16), cols=st.integers(1, 64), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**31 - 1))
def test_quantize_rounds_to_nearest_level(rows, cols, scale, seed):
    """Property: q in [-127, 127], each row's largest |x| maps to ±127, and |dequant(q) - x| <= scale/2."""
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    for quantize in (quantize_per_token, quantize_per_channel):
        q, s = quantize(x)
        assert q.dtype == torch.int8 and s.dtype == torch.float32 and s.shape == (rows,)
        # (int8 abs(-128) is -128: widen before taking |q|)
        assert int(q.int().abs().max()) <= 127, "symmetric int8: -128 is outside [-127, 127]"
        assert (q.int().abs().amax(dim=1) == 127).all(), "each row's absmax must use the full range"
        err = (dequantize(q, s).double() - x).abs()
        assert (err <= s.double()[:, None] * (0.5 + 1e-5)).all(), f"rounding error above half a step: {err.max()}"


@pytest.mark.step(8)
@pytest.mark.points(1)
def test_quantize_zero_rows_and_negative_maxima(rng):
    """An all-zero row quantises to zeros with a positive finite scale (no 0/0); a row whose largest
    magnitude is negative maps it to -127, never -128; values half-way between levels round to the nearer."""
    x = torch.from_numpy(rng.standard_normal((4, 24))).float()
    x[0] = 0.0
    x[1, 5] = -40.0                        # the row's absmax is negative
    x[2] = torch.linspace(-127, 127, 24).round() + 0.3   # absmax 127.3: steps just over 1, no ties
    x[2, 3] = -127.3
    for quantize in (quantize_per_token, quantize_per_channel):
        q, s = quantize(x)
        assert torch.isfinite(s).all() and (s > 0).all(), f"scales must be positive and finite, got {s}"
        assert (q[0] == 0).all(), "an all-zero row must quantise to zeros"
        assert int(q[1, 5]) == -127, f"the negative absmax must map to -127, got {int(q[1, 5])}"
        assert int(q.int().min()) >= -127
        want = torch.clamp(torch.round(x.double() / s.double()[:, None]), -127, 127)
        assert_close(q, want.to(torch.int8), what="q = round(x / scale)")


@pytest.mark.step(8)
@pytest.mark.points(1)
@settings(max_examples=10, deadline=None)
@given(alpha=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_smoothing_keeps_the_product_and_balances_channels(alpha, seed):
    """Property (SmoothQuant eq. 3–4): X diag(s)⁻¹ (W diag(s))ᵀ = X Wᵀ, and the channel maxima
    become max|X'_j| = (a_j w_j)^(1-α) and max|W'_j| = (a_j w_j)^α (equal at α = 0.5)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 24, generator=g, dtype=torch.float64) * torch.rand(24, generator=g, dtype=torch.float64) * 40
    w = torch.randn(16, 24, generator=g, dtype=torch.float64)
    a, wmax = x.abs().amax(0), w.abs().amax(0)
    s = smoothing_factors(a, w, alpha).double()
    xs, ws = smooth(x, w, s)
    assert_close(xs @ ws.T, x @ w.T, dtype=torch.float64, scale=100.0, what="X Wᵀ after smoothing")
    # the factors are float32: compare the balance at float32 precision
    assert_close(xs.abs().amax(0), (a * wmax) ** (1 - alpha), dtype=torch.float32, scale=10.0,
                 what="smoothed activation channel maxima")
    assert_close(ws.abs().amax(0), (a * wmax) ** alpha, dtype=torch.float32, scale=10.0,
                 what="smoothed weight channel maxima")


@pytest.mark.step(8)
@pytest.mark.points(2)
def test_smoothquant_reduces_error_on_outlier_channels(gen):
    """On a layer whose activations have a few 50× channels, W8A8 with SmoothQuant (α = 0.5)
    has under half the output error of plain W8A8; on a layer without outliers W8A8 is within 2%."""
    x, w, bias = outlier_layer(gen, tokens=64, in_features=128, out_features=48, n_outliers=4, magnitude=50.0)
    from mlsys_labs.common.device import torch_device
    dev = torch_device()
    x, w, bias = x.to(dev), w.to(dev), bias.to(dev)
    plain = quantization_error(W8A8Linear(w, bias), x, w, bias)
    smoothed = quantization_error(W8A8Linear(w, bias, alpha=0.5, calibration=x), x, w, bias)
    assert smoothed < 0.5 * plain, f"smoothing should cut the error: plain {plain:.4f}, smoothed {smoothed:.4f}"
    x_plain = torch.randn(64, 128, generator=gen).to(dev)
    assert quantization_error(W8A8Linear(w, bias), x_plain, w, bias) < 0.02
