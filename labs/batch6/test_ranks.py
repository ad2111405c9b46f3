"""3 data-parallel ranks as threads of the test process (``thread_ranks.py``): fast, and able to
look inside a step.

World size 3 with the d_model-8 model (``lab6_cases.AT3``): no unit's size divides by 3, so
every unit is padded (by 1 or 2 elements) and the last rank's shard holds the padding.

Tolerances.  The in-process collectives sum in rank order, the order
``lab6_cases.reference_run`` sums the per-rank gradients in, so the reference engines agree with
single-process PyTorch to the bit.  A correct engine may still round differently — dividing by
N before the collective instead of after (as PyTorch DDP does), or summing the squares for
clipping in another order — and Adam turns last-bit differences of near-zero gradients into
visible steps (measured over seeds: ≤ 5e-7 in fp32, ≤ 8e-6 with clipping).  So fp32 losses are
compared at rtol 1e-6 and parameters at rtol 1e-5 with atol 2e-5 (0.2% of the learning rate;
5e-5 with clipping), except the attention's key bias (see ``key_bias``).  Under bf16 mixed
precision any reordering changes bf16 roundings and 20 Adam steps amplify them to ~4e-2: there
the losses are compared at the bf16 policy (rtol 1e-2) and the master weights are checked to
hold fp32 values, not bf16 ones.

Tests of one stage belong to that stage's README step (DDP 5, ZeRO stage k: 5 + k); the
checkpoint test is step 10 and the frozen-parameter inventory step 9.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef

from mlsys_labs.common.tolerance import assert_close

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab6_cases as C  # noqa: E402

STAGE_STEP = {0: 5, 1: 6, 2: 7, 3: 8}
WORLD = 3
STEPS = 10   # AdamW steps of the correctness tests (half the torchrun tests' 20: these are about the sums)


def stages(*ks):
    return [pytest.param(k, marks=pytest.mark.step(STAGE_STEP[k])) for k in ks]


def key_bias(name: str, d_model: int) -> slice | None:
    """The key part of an attention's qkv bias.  Its gradient is zero in exact arithmetic
    (softmax is invariant to adding q·b_k to every score of a row), so what backward computes
    for it is rounding noise, which Adam normalises into steps of ±lr: two correct summation
    orders give two different random walks, so it is not compared."""
    return slice(d_model, 2 * d_model) if name.endswith("qkv.bias") else None


def check(res: dict, case: dict, seed: int, world: int, *, params_atol: float | None, what: str,
          ranks=None, loss_rtol: float = 1e-6) -> None:
    ref_losses, ref_params = C.reference_run(case, seed, ranks=ranks or world, steps=len(res["losses"]))
    assert_close(torch.tensor(res["losses"]), torch.tensor(ref_losses), rtol=loss_rtol, atol=0,
                 what=f"{what}: loss per step")
    if params_atol is None:
        return
    for name, ref in ref_params.items():
        got = res["params"][name].clone()
        kb = key_bias(name, case.get("d_model", 9))
        if kb is not None:
            got[kb] = ref[kb]
        assert_close(got, ref, rtol=1e-5, atol=params_atol, what=f"{what}: {name} after {len(ref_losses)} AdamW steps")


@pytest.fixture
def lab_seed(seed) -> int:
    """This test's seed (derived from the session seed; ``--seed`` reproduces it), for the model and data."""
    return seed % 100_000


def padded_units(res: dict) -> None:
    layouts = res["engines"][0].layouts
    assert all(L.padded > L.numel for L in layouts), \
        f"the 3-rank model must need padding in every unit: {[(L.numel, L.padded) for L in layouts]}"


# ------------------------------------------------------------------ correctness
@pytest.mark.points(2)
@pytest.mark.parametrize("stage", stages(0, 1, 2, 3))
def test_stage_matches_single_process_3_ranks(stage, lab_seed):
    """fp32, 3 ranks, every unit padded: losses and parameters = single-process PyTorch's."""
    case = dict(stage=stage, **C.AT3)
    res = C.threaded_run(case, lab_seed, WORLD, STEPS)
    padded_units(res)
    check(res, case, lab_seed, WORLD, params_atol=2e-5, what=f"stage {stage} at 3 ranks")


@pytest.mark.points(2)
@pytest.mark.parametrize("stage", stages(0, 1, 2, 3))
def test_accumulation_clipping_frozen_3_ranks(stage, lab_seed):
    """2 micro-batches per rank, clipping by the global norm (active), the position table frozen:
    losses and parameters = PyTorch's; the frozen table is untouched."""
    case = dict(stage=stage, accum=2, clip=True, freeze=True, **C.AT3)
    res = C.threaded_run(case, lab_seed, WORLD, STEPS)
    check(res, case, lab_seed, WORLD, params_atol=5e-5, what=f"stage {stage} at 3 ranks, accumulation")
    ids, vocab = C.text_ids()
    initial = C.fresh_model(case, lab_seed, vocab).embed.pos.weight
    for r, engine in enumerate(res["engines"]):
        assert torch.equal(engine.model.embed.pos.weight.detach(), initial.detach()), \
            f"rank {r}: the frozen position table changed"


@pytest.mark.points(2)
@pytest.mark.parametrize("stage", stages(1, 2, 3))
def test_mixed_precision_master_weights_3_ranks(stage, lab_seed):
    """bf16 parameters, gradients and collectives, fp32 master weights: the losses follow the
    single-process bf16 reference (bf16 policy), and the master weights AdamW updated are fp32
    values — fewer than 1% of them representable in bf16 (a master kept in bf16: all of them,
    and every update below ~0.4% of a weight is lost)."""
    case = dict(stage=stage, mixed=True, **C.AT3)
    res = C.threaded_run(case, lab_seed, WORLD, STEPS)
    check(res, case, lab_seed, WORLD, params_atol=None, loss_rtol=1e-2, what=f"stage {stage} bf16 at 3 ranks")
    master = torch.cat([t.reshape(-1) for t in res["params"].values()])
    in_bf16 = (master == master.bfloat16().float()).double().mean().item()
    assert in_bf16 < 0.01, f"{100 * in_bf16:.0f}% of the master weights are bf16 values: the master copy is not fp32"


# ------------------------------------------------- communication inside a step
@pytest.mark.points(2)
@pytest.mark.parametrize("stage", stages(0, 1, 2, 3))
def test_gradient_communication_with_accumulation(stage, lab_seed):
    """2 micro-batches: DDP and stage 1 communicate no gradient in the ``sync=False`` backward and
    one collective per unit in the last; stages 2 and 3 reduce-scatter every unit in every
    micro-batch.  Bytes per step (our own ring count, at the padded Ψ, fp32):
    DDP 2(N−1)/N·Ψ·4 all-reduced; stage 1 (N−1)/N·Ψ·4 reduce-scattered + as much all-gathered;
    stage 2 twice the reduce-scatter + the all-gather; stage 3 2 × 3(N−1)/N·Ψ·4."""
    case = dict(stage=stage, accum=2, **C.AT3)
    grads_per_backward = {r: [] for r in range(WORLD)}
    step_bytes = {r: [] for r in range(WORLD)}
    seen = {r: 0 for r in range(WORLD)}

    def observe(rank, engine, comm, step, phase):
        n = sum(1 for _, tag, _ in comm.log if tag == "grads")
        if phase == "backward":
            grads_per_backward[rank].append(n - seen[rank])
        seen[rank] = n
        if phase == "step":
            step_bytes[rank].append(comm.sent["grads"] + comm.sent["params"])
            comm.sent.clear()

    res = C.threaded_run(case, lab_seed, WORLD, steps=2, observe=observe)
    units, psi = len(res["engines"][0].layouts), res["engines"][0].psi_padded
    want_calls = [0, units] * 2 if stage < 2 else [units, units] * 2
    n = WORLD
    want_bytes = {0: 2 * (n - 1) / n, 1: 2 * (n - 1) / n, 2: 3 * (n - 1) / n, 3: 6 * (n - 1) / n}[stage] * psi * 4
    for r in range(WORLD):
        assert grads_per_backward[r] == want_calls, \
            f"rank {r}: gradient collectives per backward {grads_per_backward[r]}, expected {want_calls} " \
            f"(sync=False, then sync=True, for 2 steps; {units} units)"
        for b in step_bytes[r][1:]:   # the first step's count includes the setup, if any
            assert b == pytest.approx(want_bytes, abs=4 * units), \
                f"rank {r}: {b} bytes of gradients + parameters per step, expected {want_bytes:.0f}"


def _local_unit_grads(case: dict, seed: int, rank: int, world: int) -> list[torch.Tensor]:
    """This rank's own (not yet averaged) gradient of step 0, per unit, padded as the engine pads it."""
    ids, vocab = C.text_ids()
    model = C.fresh_model(case, seed, vocab)
    x, y = C.global_batch(ids, 0, case["batch"], C.BLOCK, seed)
    model(C.rank_slice(x, rank, world), C.rank_slice(y, rank, world)).backward()
    out = []
    for _, unit in model.units():
        flat = torch.cat([p.grad.reshape(-1) for p in unit.parameters() if p.requires_grad])
        out.append(torch.cat([flat, flat.new_zeros(-flat.numel() % world)]))
    return out


@pytest.mark.points(2)
@pytest.mark.parametrize("stage", stages(0, 1, 2, 3))
def test_buckets_launch_last_unit_first_and_complete(stage, lab_seed):
    """In backward each rank launches one gradient collective per unit, in the order backward
    completes them — head, last block, …, embeddings (the reverse of registration) — each on the
    unit's complete local gradient (not a partial one, not another unit's; divided by N already
    or not)."""
    case = dict(stage=stage, **C.AT3)
    launched = {r: [] for r in range(WORLD)}

    def setup(engine, comm):
        def hook(c, kind, tag, inp, out):
            if tag == "grads" and len(launched[c.rank]) < len(engine.layouts):
                launched[c.rank].append(inp.detach().float().clone())
        comm.on_collective.append(hook)

    C.threaded_run(case, lab_seed, WORLD, steps=1, setup=setup)
    for r in range(WORLD):
        want = _local_unit_grads(case, lab_seed, r, WORLD)
        order = list(range(len(want)))[::-1]
        assert [t.numel() for t in launched[r]] == [want[u].numel() for u in order], \
            f"rank {r}: gradient collectives by size {[t.numel() for t in launched[r]]}, units last to first " \
            f"{[want[u].numel() for u in order]}"
        for got, u in zip(launched[r], order):
            # the local gradient, or that divided by N already (averaging before the collective is fine)
            matches = [v for v in range(len(want)) if want[v].numel() == got.numel()
                       and any(torch.allclose(got, want[v] * f, rtol=1e-5, atol=1e-8) for f in (1.0, 1.0 / WORLD))]
            assert u in matches, \
                f"rank {r}: the collective launched for unit {u} (last to first) holds " \
                f"{'the gradient of unit ' + str(matches) if matches else 'no complete unit gradient'}"


# ------------------------------------------------------------------ memory inside a step
def _live(refs) -> int:
    return sum(not w.expired() for w in refs)


@pytest.mark.step(8)
@pytest.mark.points(3)
def test_stage3_frees_gathered_parameters_and_prefetches(lab_seed):
    """Stage 3, 6 units, 3 ranks: at every collective a rank launches, at most 2 gathered
    (full) parameter buffers are alive on it — the unit running and the one prefetched — and
    none after forward's last unit has run nor after backward (measured through weak
    references to the storages the all-gathers fill).  Before each unit's forward runs, the
    next unit's gather has been launched (prefetch)."""
    case = dict(stage=3, n_layer=4, **C.AT3)
    refs = {r: [] for r in range(WORLD)}
    peak = {r: (0, "") for r in range(WORLD)}
    after = {r: [] for r in range(WORLD)}
    prefetch = {r: [] for r in range(WORLD)}
    base = {r: 0 for r in range(WORLD)}
    sizes = {}

    def gathers(comm) -> int:
        return sum(1 for kind, tag, _ in comm.log if kind == "all_gather" and tag == "params")

    def setup(engine, comm):
        sizes[comm.rank] = engine.layouts

        def hook(c, kind, tag, inp, out):
            n = _live(refs[c.rank])
            if n > peak[c.rank][0]:
                peak[c.rank] = (n, f"{kind} #{len(c.log)} ({tag})")
            if kind == "all_gather" and tag == "params":
                refs[c.rank].append(StorageWeakRef(out.untyped_storage()))
        comm.on_collective.append(hook)
        for u, module in enumerate(engine.modules):   # runs after the engine's own pre-hook
            module.register_forward_pre_hook(
                lambda m, args, u=u, comm=comm: prefetch[comm.rank].append((u, gathers(comm) - base[comm.rank])))

    def observe(rank, engine, comm, step, phase):
        after[rank].append((phase, _live(refs[rank])))
        base[rank] = gathers(comm)

    C.threaded_run(case, lab_seed, WORLD, steps=2, setup=setup, observe=observe)
    units = len(sizes[0])
    for r in range(WORLD):
        assert peak[r][0] <= 2, \
            f"rank {r}: {peak[r][0]} gathered parameter buffers alive at once (at {peak[r][1]}; " \
            f"{units} units of ~{sizes[r][1].padded} elements): gathered units are not freed after use"
        leaks = [(phase, n) for phase, n in after[r] if n]
        assert not leaks, f"rank {r}: gathered parameter buffers still alive (phase, count): {leaks}"
        assert [u for u, _ in prefetch[r]] == list(range(units)) * 2, prefetch[r]
        late = [(u, n) for u, n in prefetch[r] if n < min(u + 2, units)]
        assert not late, \
            f"rank {r}: (unit, gathers launched in this forward when its forward starts) {late}: the next " \
            f"unit's gather must already be in flight (prefetch)"


@pytest.mark.step(7)
@pytest.mark.points(2)
def test_stage2_frees_gradient_buckets(lab_seed):
    """Stage 2, 6 units, 3 ranks: a unit's full gradient bucket lives only while its reduce-scatter
    is in flight — at most ``max_in_flight`` (2) older buckets alive when a rank launches the next,
    none after backward."""
    case = dict(stage=2, n_layer=4, **C.AT3)
    refs = {r: [] for r in range(WORLD)}
    peak = {r: 0 for r in range(WORLD)}
    after = {r: [] for r in range(WORLD)}

    def setup(engine, comm):
        def hook(c, kind, tag, inp, out):
            if kind == "reduce_scatter" and tag == "grads":
                peak[c.rank] = max(peak[c.rank], _live(refs[c.rank]))
                refs[c.rank].append(StorageWeakRef(inp.untyped_storage()))
        comm.on_collective.append(hook)

    def observe(rank, engine, comm, step, phase):
        after[rank].append((phase, _live(refs[rank])))

    C.threaded_run(case, lab_seed, WORLD, steps=2, setup=setup, observe=observe)
    for r in range(WORLD):
        assert peak[r] <= 2, f"rank {r}: {peak[r]} full gradient buckets alive when launching another (max 2 in flight)"
        leaks = [(phase, n) for phase, n in after[r] if n]
        assert not leaks, f"rank {r}: full gradient buckets still alive (phase, count): {leaks}"


# ---------------------------------------------------------------------- checkpoints
@pytest.mark.step(10)
@pytest.mark.points(3)
def test_checkpoint_reshards_3_to_2_to_3(tmp_path, lab_seed):
    """Stage 3 at 3 ranks trains 4 steps and saves; DDP at 2 ranks resumes, trains 4 more and
    saves; stage 1 at 3 ranks resumes for 4 more.  Losses and final parameters = one
    uninterrupted single-process run (gradients summed over 3, 2, then 3 ranks), at the fp32
    tolerances of ``check``."""
    legs = [(3, 3, 0, 4), (0, 2, 4, 8), (1, 3, 8, 12)]
    losses, prev, res = [], None, None
    for i, (stage, world, start, stop) in enumerate(legs):
        case = dict(stage=stage, **C.AT3)
        save = str(tmp_path / f"ckpt{i}")
        res = C.threaded_run(case, lab_seed, world, stop, start=start, resume=prev, save=save)
        losses += res["losses"]
        prev = save
    ranks = [w for _, w, a, b in legs for _ in range(a, b)]
    ref_losses, ref_params = C.reference_run(dict(stage=0, **C.AT3), lab_seed, ranks=ranks)
    assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-6, atol=0,
                 what="loss curve: stage 3 at 3 ranks, DDP at 2, stage 1 at 3")
    for name, ref in ref_params.items():
        got = res["params"][name].clone()
        kb = key_bias(name, 8)
        if kb is not None:
            got[kb] = ref[kb]
        assert_close(got, ref, rtol=1e-5, atol=2e-5, what=f"{name} after resharding twice")


# ---------------------------------------------------------------------- memory formula
@pytest.mark.step(9)
@pytest.mark.points(1)
@pytest.mark.parametrize("stage,mixed", [(0, False), (1, False), (2, False), (3, False), (3, True)])
def test_model_state_memory_3_ranks(stage, mixed, lab_seed):
    """After a step at 3 ranks (every unit padded), each rank's inventory of parameters + gradients +
    optimizer states = the ZeRO formula at the padded Ψ exactly (the formula written out here)."""
    from mlsys_labs.zero import inventory, model_state_bytes

    case = dict(stage=stage, mixed=mixed, **C.AT3)
    measured = {}

    def observe(rank, engine, comm, step, phase):
        if phase == "step":
            measured[rank] = inventory(engine)

    res = C.threaded_run(case, lab_seed, WORLD, steps=1, observe=observe)
    psi, n = res["engines"][0].psi_padded, WORLD
    p, g, k = (2, 2, 12) if mixed else (4, 4, 8)
    want = {0: (p + g + k) * psi, 1: (p + g) * psi + k * psi / n, 2: p * psi + (g + k) * psi / n,
            3: (p + g + k) * psi / n}[stage]
    for r in range(WORLD):
        got = model_state_bytes(measured[r])
        assert got == want, f"rank {r}: {measured[r]} sums to {got} B, formula {want:.0f} B (Ψ padded = {psi})"
