"""Lab 4's mutation catalogue: realistic learner bugs in the kernels, one exact edit each (see `mlsys-labs mutants`).

Every entry costs a pytest start-up with torch, Triton and Numba (~5 s of CPU), so the catalogue keeps one
or two bugs per mistake and kernel.  Also tried, killed by the public tests, and left out for time: the
block offset pid instead of pid·BLOCK_SIZE; other=0 in the online softmax's statistics pass; RMSNorm's
unmasked store; dK scaled by sm_scale·log2 e; D = rowsum(dO); one weight maximum for all of SmoothQuant's
channels; the bias indexed by token; B's tile loaded transposed in the Numba matmul.
Left out as equivalent: the fused softmax computed in the storage dtype (Triton's tl.exp and tl.sum upcast
float16 to float32 themselves); clamping to [-128, 127] with scale absmax/127 (round(x/scale) never
reaches -128); masking the K tail of only one GEMM operand (the other's zeros cancel it); in the
backward kernels, scores of padded query rows or keys left unmasked (their rows load as zeros, so
every term they add is a finite P times 0).
FlashAttention's three kernels share their masks (``_visible``, ``_load_rows``, ``_store_rows``) and the
key-block split (``_key_blocks``): one entry plants such a bug in all of them at once.
"""
from mlsys_labs.grading.mutants import Mutant

K = "mlsys_labs/kernels/"
T = "labs/batch4/"
ADD = T + "test_vector_add.py"
SM = T + "test_softmax.py"
RR = T + "test_rmsnorm_rope.py"
FA = T + "test_flash_attention.py"
I8 = T + "test_int8_matmul.py"
NB = T + "test_numba_cuda.py"

MUTANTS = [
    # ------------------------------------------------------------------ vector add (step 1)
    Mutant(
        name="add-mask-inclusive",
        file=K + "vector_add.py",
        old="    mask = offsets < n_elements\n",
        new="    mask = offsets <= n_elements\n",
        why="off by one at the ragged tail: one element past the end is read and stored",
        tests=(ADD + "::test_add_matches_float64",),
    ),
    Mutant(
        name="add-store-unmasked",
        file=K + "vector_add.py",
        old="    tl.store(out_ptr + offsets, x + y, mask=mask)\n",
        new="    tl.store(out_ptr + offsets, x + y)\n",
        why="masks the loads but not the store: the last block writes past the output",
        tests=(ADD + "::test_add_matches_float64",),
    ),
    # -------------------------------------------------------------- fused softmax (step 2)
    Mutant(
        name="softmax-pad-other-zero",
        file=K + "softmax.py",
        old='    x = tl.load(in_ptr + row * in_row_stride + cols, mask=mask, other=-float("inf")).to(tl.float32)\n',
        new='    x = tl.load(in_ptr + row * in_row_stride + cols, mask=mask, other=0.0).to(tl.float32)\n',
        why="masked lanes load 0 instead of -inf: each padding lane adds exp(0 - max) to the denominator",
        tests=(SM + "::test_fused_softmax",),
    ),
    Mutant(
        name="softmax-no-max-subtraction",
        file=K + "softmax.py",
        old="    z = x - tl.max(x, axis=0)\n",
        new="    z = x\n",
        why="skips the max subtraction (it cancels mathematically): exp overflows for logits above 88",
        tests=(SM + "::test_fused_softmax_large_logits",),
    ),
    Mutant(
        name="softmax-store-unmasked",
        file=K + "softmax.py",
        old="    tl.store(out_ptr + row * out_row_stride + cols, y.to(out_ptr.dtype.element_ty), mask=mask)\n",
        new="    tl.store(out_ptr + row * out_row_stride + cols, y.to(out_ptr.dtype.element_ty))\n",
        why="stores the whole power-of-two block: the last row's padding lands past the output",
        tests=(SM + "::test_fused_softmax",),
    ),
    Mutant(
        name="softmax-out-uses-input-stride",
        file=K + "softmax.py",
        old="    tl.store(out_ptr + row * out_row_stride + cols,",
        new="    tl.store(out_ptr + row * in_row_stride + cols,",
        why="one row stride for input and output: wrong as soon as the input is a strided view",
        tests=(SM + "::test_fused_softmax_strided_rows_and_masked_entries",),
    ),
    # ------------------------------------------------------------- online softmax (step 3)
    Mutant(
        name="online-no-rescale-of-sum",
        file=K + "online_softmax.py",
        old="        d = d * tl.exp(m - shift) + tl.exp(x - shift)\n",
        new="        d = d + tl.exp(x - shift)\n",
        why="forgets to rescale the running sum by exp(m - m') when the max grows",
        tests=(SM + "::test_online_softmax_growing_max_and_masked_lanes",),
    ),
    Mutant(
        name="online-no-neg-inf-guard",
        file=K + "online_softmax.py",
        old='        shift = tl.where(m_new > -float("inf"), m_new, 0.0)\n',
        new="        shift = m_new\n",
        why="no guard for lanes that have seen only -inf: exp(-inf - -inf) = NaN poisons the row",
        tests=(SM + "::test_online_softmax_growing_max_and_masked_lanes",),
    ),
    Mutant(
        name="online-lane-merge-without-rescale",
        file=K + "online_softmax.py",
        old="    d_row = tl.sum(d * tl.exp(m - m_row), axis=0)",
        new="    d_row = tl.sum(d, axis=0)",
        why="sums the lanes' partial sums without bringing each to the row's common max",
        tests=(SM + "::test_online_softmax_rows_longer_than_a_block",),
    ),
    Mutant(
        name="online-floor-block-count",
        file=K + "online_softmax.py",
        old="    d = tl.zeros([BLOCK_SIZE], dtype=tl.float32)\n    for start in range(0, n_cols, BLOCK_SIZE):\n",
        new="    d = tl.zeros([BLOCK_SIZE], dtype=tl.float32)\n"
            "    for start in range(0, n_cols // BLOCK_SIZE * BLOCK_SIZE, BLOCK_SIZE):\n",
        why="n_cols // BLOCK_SIZE blocks in the statistics pass: the ragged tail never enters max and sum",
        tests=(SM + "::test_online_softmax_rows_longer_than_a_block",),
    ),
    Mutant(
        name="online-second-pass-unshifted",
        file=K + "online_softmax.py",
        old="        y = tl.exp(x - m_row) / d_row\n",
        new="        y = tl.exp(x) / (d_row * tl.exp(m_row))\n",
        why="undoes the shift in the normalising pass (exp(x)/Σexp(x) rewritten): overflows for large logits",
        tests=(SM + "::test_online_softmax_large_logits",),
    ),
    # --------------------------------------------------------------------- RMSNorm (step 4)
    Mutant(
        name="rmsnorm-mean-over-block",
        file=K + "rmsnorm.py",
        old="    ms = tl.sum(x * x, axis=0) / n_cols\n",
        new="    ms = tl.sum(x * x, axis=0) / BLOCK_SIZE\n",
        why="divides by the padded block length instead of the row length",
        tests=(RR + "::test_rmsnorm_matches_torch",),
    ),
    Mutant(
        name="rmsnorm-eps-outside-sqrt",
        file=K + "rmsnorm.py",
        old="    y = x * tl.rsqrt(ms + eps) * w\n",
        new="    y = x / (tl.sqrt(ms) + eps) * w\n",
        why="adds eps to the RMS instead of to the mean square (LayerNorm-style std + eps)",
        tests=(RR + "::test_rmsnorm_rows_near_eps_and_huge_rows",),
    ),
    Mutant(
        name="rmsnorm-eps-dropped",
        file=K + "rmsnorm.py",
        old="    y = x * tl.rsqrt(ms + eps) * w\n",
        new="    y = x * tl.rsqrt(ms) * w\n",
        why="forgets eps: rows with a tiny or zero mean square blow up",
        tests=(RR + "::test_rmsnorm_rows_near_eps_and_huge_rows",),
    ),
    Mutant(
        name="rmsnorm-stats-in-storage-dtype",
        file=K + "rmsnorm.py",
        old="    x = tl.load(X + row * x_row_stride + cols, mask=mask, other=0.0).to(tl.float32)\n",
        new="    x = tl.load(X + row * x_row_stride + cols, mask=mask, other=0.0)\n",
        why="sums x² in float16: overflows (inf) for rows with |x| above 256",
        tests=(RR + "::test_rmsnorm_rows_near_eps_and_huge_rows",),
    ),
    # ------------------------------------------------------------------------ RoPE (step 4)
    Mutant(
        name="rope-interleaved-pairs",
        file=K + "rope.py",
        old="    ptr = base + rows[:, None] * (2 * HALF) + cols[None, :]\n"
            "    x1 = tl.load(X + ptr, mask=mask, other=0.0).to(tl.float32)\n"
            "    x2 = tl.load(X + ptr + HALF, mask=mask, other=0.0).to(tl.float32)\n"
            "    tl.store(XO + ptr, (x1 * cos - x2 * sin).to(XO.dtype.element_ty), mask=mask)\n"
            "    tl.store(XO + ptr + HALF,",
        new="    ptr = base + rows[:, None] * (2 * HALF) + 2 * cols[None, :]\n"
            "    x1 = tl.load(X + ptr, mask=mask, other=0.0).to(tl.float32)\n"
            "    x2 = tl.load(X + ptr + 1, mask=mask, other=0.0).to(tl.float32)\n"
            "    tl.store(XO + ptr, (x1 * cos - x2 * sin).to(XO.dtype.element_ty), mask=mask)\n"
            "    tl.store(XO + ptr + 1,",
        why="pairs features (2i, 2i+1) (GPT-J's interleaved layout) instead of (i, i + d/2) (rotate-half)",
        tests=(RR + "::test_rope_matches_transformers",),
    ),
    Mutant(
        name="rope-rotates-backwards",
        file=K + "rope.py",
        old="(x1 * cos - x2 * sin)",
        new="(x1 * cos + x2 * sin)",
        why="sign error in the first half: x1 cos + x2 sin (not a rotation at all)",
        tests=(RR + "::test_rope_matches_transformers",),
    ),
    Mutant(
        name="rope-ignores-positions",
        file=K + "rope.py",
        old="    pos = tl.load(POS + rows, mask=row_mask, other=0)\n",
        new="    pos = rows\n",
        why="uses the token's index as its position, ignoring the positions argument",
        tests=(RR + "::test_rope_matches_transformers",),
    ),
    Mutant(
        name="rope-no-row-mask",
        file=K + "rope.py",
        old="    mask = row_mask[:, None]\n",
        new="    mask = cols[None, :] < HALF\n",
        why="masks only the feature axis, not the token rows past N in the ragged last block: "
            "stores past the output",
        tests=(RR + "::test_rope_matches_transformers",),
    ),
    # -------------------------------------------------------- FlashAttention forward (step 5)
    Mutant(
        name="fa-causal-excludes-diagonal",
        file=K + "flash_attention.py",
        old="        ok = ok & (q_idx >= k_idx)\n",
        new="        ok = ok & (q_idx > k_idx)\n",
        why="causal off by one: a query may not attend to its own key (the mask shared by all three kernels)",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-fwd-causal-stops-before-diagonal-block",
        file=K + "flash_attention.py",
        old="        hi = tl.minimum((start_m + 1) * BLOCK_M, N_CTX)\n",
        new="        hi = start_m * BLOCK_M\n",
        why="causal loop bound excludes the diagonal block (only the blocks strictly below it)",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-diagonal-block-taken-as-full",
        file=K + "flash_attention.py",
        old="        n_full = start_m * BLOCK_M // BLOCK_N * BLOCK_N\n",
        new="        n_full = hi // BLOCK_N * BLOCK_N\n",
        why="causal: runs every whole key block up to the end of the query block unmasked, the diagonal "
            "included: rows see the keys of their future",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-edge-block-taken-as-full",
        file=K + "flash_attention.py",
        old="        n_full = N_CTX // BLOCK_N * BLOCK_N\n",
        new="        n_full = tl.cdiv(N_CTX, BLOCK_N) * BLOCK_N\n",
        why="rounds the unmasked key range up: the ragged last key block is loaded and scored without its "
            "mask (reads past the sequence)",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-fwd-acc-not-rescaled",
        file=K + "flash_attention.py",
        old="        acc = acc * alpha[:, None] + tl.dot(",
        new="        acc = acc + tl.dot(",
        why="rescales the running sum l by alpha but not the output accumulator",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-fwd-m-starts-at-zero",
        file=K + "flash_attention.py",
        old="    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float(\"inf\")\n",
        new="    m_i = tl.zeros([BLOCK_M], dtype=tl.float32)\n",
        why="initialises the running max at 0 instead of -inf: a row whose scores are all very negative underflows to 0/0",
        tests=(FA + "::test_forward_large_logits",),
    ),
    Mutant(
        name="fa-ragged-keys-unmasked",
        file=K + "flash_attention.py",
        old="    ok = k_idx < N_CTX\n    if CAUSAL:\n        ok = ok & (q_idx >= k_idx)\n",
        new="    ok = k_idx >= 0\n    if CAUSAL:\n        ok = ok & (q_idx >= k_idx)\n",
        why="masks only the causal triangle: padded keys of the ragged last block (loaded as 0) get score 0 and weight",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-edge-load-unmasked",
        file=K + "flash_attention.py",
        old="    if MASK:\n        tile = tl.load(ptrs, mask=rows[:, None] < N_CTX, other=0.0)\n",
        new="    if MASK:\n        tile = tl.load(ptrs)\n",
        why="masks the scores of the edge block but loads its rows unmasked: rows past N read whatever follows "
            "(0·NaN and garbage reach the sums)",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-fwd-lse-base2",
        file=K + "flash_attention.py",
        old="(m_i + tl.log2(l_i)) / LOG2E",
        new="(m_i + tl.log2(l_i))",
        why="stores the log-sum-exp in base 2 (the exp2 domain) instead of the natural log",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-fwd-exp-instead-of-exp2",
        file=K + "flash_attention.py",
        old="        alpha = tl.exp2(m_i - m_new)\n        p = tl.exp2(s - m_new[:, None])\n",
        new="        alpha = tl.exp(m_i - m_new)\n        p = tl.exp(s - m_new[:, None])\n",
        why="natural exp on scores already multiplied by log2(e): softmax at the wrong temperature",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-store-unmasked",
        file=K + "flash_attention.py",
        old="    tl.store(ptrs, tile.to(ptr.dtype.element_ty), mask=rows[:, None] < N_CTX)\n",
        new="    tl.store(ptrs, tile.to(ptr.dtype.element_ty))\n",
        why="stores every row of the last block, including those past N: writes past O (and dQ, dK, dV)",
        tests=(FA + "::test_forward_output_and_logsumexp",),
    ),
    Mutant(
        name="fa-fwd-q-read-with-k-strides",
        file=K + "flash_attention.py",
        old="    q = _load_rows(Q, offs_m, offs_d, stride_qn, stride_qd, N_CTX, True)\n    qk_scale",
        new="    q = _load_rows(Q, offs_m, offs_d, stride_kn, stride_kd, N_CTX, True)\n    qk_scale",
        why="reads Q through K's strides (copy-paste): right only while q and k share a layout",
        tests=(FA + "::test_forward_reads_strided_inputs",),
    ),
    # ------------------------------------------------------- FlashAttention backward (step 6)
    Mutant(
        name="fa-bwd-dkdv-causal-starts-a-row-late",
        file=K + "flash_attention.py",
        old="        lo = start_n * BLOCK_N // BLOCK_M * BLOCK_M       # earlier query rows cannot see these keys\n",
        new="        lo = start_n * BLOCK_N + 1\n",
        why="starts the causal query loop one row past the diagonal (strictly later queries only)",
        tests=(FA + "::test_backward_matches_autograd_of_plain_attention",),
    ),
    Mutant(
        name="fa-bwd-dkdv-diagonal-taken-as-full",
        file=K + "flash_attention.py",
        old="        full_lo = tl.cdiv((start_n + 1) * BLOCK_N, BLOCK_M) * BLOCK_M",
        new="        full_lo = lo",
        why="dK/dV: the query blocks on the diagonal go through the unmasked loop: future queries' terms are added",
        tests=(FA + "::test_backward_matches_autograd_of_plain_attention",),
    ),
    Mutant(
        name="fa-bwd-dkdv-edge-taken-as-full",
        file=K + "flash_attention.py",
        old="    full_hi = N_CTX // BLOCK_M * BLOCK_M\n",
        new="    full_hi = N_CTX\n",
        why="dK/dV: the unmasked query loop runs to N, so the ragged last query block is loaded past the sequence",
        tests=(FA + "::test_backward_matches_autograd_of_plain_attention",),
    ),
    Mutant(
        name="fa-bwd-dq-unscaled",
        file=K + "flash_attention.py",
        old="    dq = dq * sm_scale\n",
        new="",
        why="applies the softmax scale to dK but forgets it for dQ (scale in one pass only)",
        tests=(FA + "::test_backward_matches_autograd_of_plain_attention",),
    ),
    Mutant(
        name="fa-bwd-lse-not-converted-to-base2",
        file=K + "flash_attention.py",
        old="        p_t = tl.exp2(s_t - lse[None, :] * LOG2E)\n",
        new="        p_t = tl.exp2(s_t - lse[None, :])\n",
        why="subtracts the natural-log LSE inside exp2 when recomputing P in the dK/dV kernel",
        tests=(FA + "::test_backward_matches_autograd_of_plain_attention",),
    ),
    Mutant(
        name="fa-bwd-dq-forgets-delta",
        file=K + "flash_attention.py",
        old="        ds = p * (dp - delta[:, None])\n",
        new="        ds = p * dp\n",
        why="dS = P ∘ dP: drops the softmax Jacobian's D term",
        tests=(FA + "::test_backward_matches_autograd_of_plain_attention",),
    ),
    Mutant(
        name="fa-bwd-lse-delta-swapped",
        file=K + "flash_attention.py",
        old="    _launch(\"dkdv\", (q, k, v, do, lse, delta, dk, dv,",
        new="    _launch(\"dkdv\", (q, k, v, do, delta, lse, dk, dv,",
        why="passes D and the LSE in the wrong order to one of the kernels",
        tests=(FA + "::test_backward_matches_autograd_of_plain_attention",),
    ),
    Mutant(
        name="fa-bwd-dv-written-with-k-strides",
        file=K + "flash_attention.py",
        old="    _store_rows(DV, offs_n, offs_d, stride_vn, stride_vd, N_CTX, dv)\n",
        new="    _store_rows(DV, offs_n, offs_d, stride_kn, stride_kd, N_CTX, dv)\n",
        why="writes dV through K's strides (copy-paste from the dK store): right only while k and v share a layout",
        tests=(FA + "::test_backward_reads_strided_inputs",),
    ),
    # --------------------------------------------------------------------- int8 GEMM (step 7)
    Mutant(
        name="int8-k-tail-unmasked",
        file=K + "int8_matmul.py",
        old="        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (k0 + offs_k[None, :] < K), other=0)\n"
            "        b = tl.load(b_ptrs, mask=(k0 + offs_k[:, None] < K) & (offs_n[None, :] < N), other=0)\n",
        new="        a = tl.load(a_ptrs, mask=offs_m[:, None] < M, other=0)\n"
            "        b = tl.load(b_ptrs, mask=offs_n[None, :] < N, other=0)\n",
        why="masks the M and N edges but not the K tail: K not a multiple of BLOCK_K sums the next row's values",
        tests=(I8 + "::test_int8_matmul_is_exact",),
    ),
    Mutant(
        name="int8-last-group-not-shrunk",
        file=K + "int8_matmul.py",
        old="    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)\n",
        new="    group_size_m = GROUP_M\n",
        why="grouped tile order assumes every group has GROUP_M rows of tiles: tiles of the last group are skipped",
        tests=(I8 + "::test_int8_matmul_is_exact",),
    ),
    Mutant(
        name="int8-store-mask-rows-only",
        file=K + "int8_matmul.py",
        old="    c_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)\n",
        new="    c_mask = offs_m[:, None] < M\n",
        why="store masked on rows only: the ragged N edge spills into the next row and past the output",
        tests=(I8 + "::test_int8_matmul_is_exact",),
    ),
    Mutant(
        name="int8-per-tensor-activation-scale",
        file=K + "int8_matmul.py",
        old="        a_scale = tl.load(A_SCALE + offs_m, mask=offs_m < M, other=0.0)\n"
            "        b_scale = tl.load(B_SCALE + offs_n, mask=offs_n < N, other=0.0)\n"
            "        c = acc.to(tl.float32) * a_scale[:, None] * b_scale[None, :]\n",
        new="        a_scale = tl.load(A_SCALE)\n"
            "        b_scale = tl.load(B_SCALE + offs_n, mask=offs_n < N, other=0.0)\n"
            "        c = acc.to(tl.float32) * a_scale * b_scale[None, :]\n",
        why="one activation scale for the whole tensor (the first token's) instead of one per token",
        tests=(I8 + "::test_w8a8_epilogue",),
    ),
    Mutant(
        name="int8-weight-scale-indexed-by-token",
        file=K + "int8_matmul.py",
        old="        b_scale = tl.load(B_SCALE + offs_n, mask=offs_n < N, other=0.0)\n",
        new="        b_scale = tl.load(B_SCALE + offs_m, mask=offs_m < M, other=0.0)\n",
        why="per-channel weight scales indexed by the tile's rows (tokens) instead of its columns",
        tests=(I8 + "::test_w8a8_epilogue",),
    ),
    # ------------------------------------------------------- quantisation, SmoothQuant (step 8)
    Mutant(
        name="quant-scale-by-128",
        file=K + "quantization.py",
        old="    scale = t.abs().amax(dim=1).clamp(min=1e-8) / QMAX\n"
            "    q = torch.clamp(torch.round(t / scale[:, None]), -QMAX, QMAX).to(torch.int8)\n",
        new="    scale = t.abs().amax(dim=1).clamp(min=1e-8) / 128\n"
            "    q = torch.clamp(torch.round(t / scale[:, None]), -128, 127).to(torch.int8)\n",
        why="uses the asymmetric int8 range [-128, 127] with scale absmax/128: negative maxima hit -128, "
            "positive ones are clipped",
        tests=(I8 + "::test_quantize_zero_rows_and_negative_maxima",),
    ),
    Mutant(
        name="quant-truncates",
        file=K + "quantization.py",
        old="torch.clamp(torch.round(t / scale[:, None]), -QMAX, QMAX)",
        new="torch.clamp(torch.trunc(t / scale[:, None]), -QMAX, QMAX)",
        why="truncates toward zero (the int cast) instead of rounding to the nearest level",
        tests=(I8 + "::test_quantize_rounds_to_nearest_level",),
    ),
    Mutant(
        name="quant-per-tensor-scale",
        file=K + "quantization.py",
        old="    scale = t.abs().amax(dim=1).clamp(min=1e-8) / QMAX\n",
        new="    scale = (t.abs().amax().clamp(min=1e-8) / QMAX).expand(t.shape[0])\n",
        why="one scale for the whole tensor instead of one per row (per token / per channel)",
        tests=(I8 + "::test_quantize_rounds_to_nearest_level",),
    ),
    Mutant(
        name="quant-zero-row-unguarded",
        file=K + "quantization.py",
        old="    scale = t.abs().amax(dim=1).clamp(min=1e-8) / QMAX\n",
        new="    scale = t.abs().amax(dim=1) / QMAX\n",
        why="no floor on the scale: an all-zero row divides 0 by 0",
        tests=(I8 + "::test_quantize_zero_rows_and_negative_maxima",),
    ),
    Mutant(
        name="smooth-alpha-exponents-swapped",
        file=K + "quantization.py",
        old="    return (a.pow(alpha) / wmax.pow(1.0 - alpha)).clamp(min=1e-5)\n",
        new="    return (a.pow(1.0 - alpha) / wmax.pow(alpha)).clamp(min=1e-5)\n",
        why="swaps the exponents of eq. 4: alpha migrates difficulty the wrong way",
        tests=(I8 + "::test_smoothing_keeps_the_product_and_balances_channels",),
    ),
    Mutant(
        name="smooth-direction-inverted",
        file=K + "quantization.py",
        old="    return (x / s[None, :]).to(x.dtype), (w * s[None, :]).to(w.dtype)\n",
        new="    return (x * s[None, :]).to(x.dtype), (w / s[None, :]).to(w.dtype)\n",
        why="multiplies X and divides W: the product is unchanged but the outliers get worse, not better",
        tests=(I8 + "::test_smoothing_keeps_the_product_and_balances_channels",),
    ),
    # ------------------------------------------------------------------- Numba CUDA (step 9)
    Mutant(
        name="tiled-floor-tile-count",
        file=K + "numba_matmul.py",
        old="    for t in range((k_dim + TILE - 1) // TILE):\n",
        new="    for t in range(k_dim // TILE):\n",
        why="floor instead of ceiling tile count: the K tail (K not a multiple of TILE) is never summed",
        tests=(NB + "::test_tiled_matmul",),
    ),
    Mutant(
        name="reduction-tree-stops-at-two",
        file=K + "numba_reduction.py",
        old="    while stride > 0:\n",
        new="    while stride > 1:\n",
        why="stops the tree one step early: buf[1] is never added into buf[0]",
        tests=(NB + "::test_block_sum",),
    ),
    Mutant(
        name="reduction-no-grid-stride",
        file=K + "numba_reduction.py",
        old="    while i < x.shape[0]:\n        acc += x[i]\n        i += step\n",
        new="    if i < x.shape[0]:\n        acc += x[i]\n",
        why="one element per thread: correct only while the grid covers the input (n <= blocks·THREADS)",
        tests=(NB + "::test_block_sum",),
    ),
]
