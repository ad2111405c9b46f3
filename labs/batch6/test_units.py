"""In-process tests, by README step: the byte-counting collectives (1, with fake collectives at
4 ranks), layouts (2), AdamW (3), the gradient hooks and clipping on a minimal engine made here (4),
every stage at world size 1 (5–8: DDP, stages 1–3), the formulas and the memory inventory (9),
resharding (10)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.common.tolerance import assert_close, poison_like
from mlsys_labs.zero import (Comm, Engine, ShardAdamW, comm_bytes_formula, inventory, make_engine, model_state_bytes,
                             model_state_formula, plan_layout, reshard)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab6_cases as C  # noqa: E402

STAGE_STEP = {0: 5, 1: 6, 2: 7, 3: 8}   # DDP is step 5, ZeRO stage k step 5 + k


def stages(*ks):
    """Stage parameters, each marked with its README step."""
    return [pytest.param(k, marks=pytest.mark.step(STAGE_STEP[k])) for k in ks]


# ------------------------------------------------------------------ step 1: counted collectives
RING_FACTOR = {"all_reduce": 2 * 3 / 4, "reduce_scatter": 3 / 4, "all_gather": 3 / 4}   # N = 4


@pytest.mark.step(1)
@pytest.mark.points(1)
@pytest.mark.parametrize("op", ["all_reduce", "reduce_scatter", "all_gather"])
def test_comm_counts_ring_bytes_and_calls_the_collective(monkeypatch, op):
    """At N = 4 (collectives replaced by fakes): the ring algorithm's bytes are counted under the
    tag — all-reduce 2(N−1)/N of the tensor, reduce-scatter (N−1)/N of the input, all-gather
    (N−1)/N of the output — one call per collective, and the collective itself runs once on the
    caller's tensors, passing async_op through and returning its handle."""
    from mlsys_labs.zero import comm as comm_module   # the module whose collectives the fakes replace

    seen = []

    def fake(*args, **kwargs):
        seen.append((args, kwargs))
        return "handle"
    monkeypatch.setattr(comm_module.dist, "all_reduce", fake)
    monkeypatch.setattr(comm_module, "_reduce_scatter", fake)
    monkeypatch.setattr(comm_module, "_all_gather", fake)
    comm = Comm()
    comm.world, comm.rank = 4, 1
    big, small = torch.zeros(1000, dtype=torch.bfloat16), torch.zeros(250, dtype=torch.bfloat16)
    if op == "all_reduce":
        handle, tensors, counted = comm.all_reduce(big, tag="grads", async_op=True), [big], big
    elif op == "reduce_scatter":
        handle, tensors, counted = comm.reduce_scatter(small, big, tag="grads", async_op=True), [small, big], big
    else:
        handle, tensors, counted = comm.all_gather(big, small, tag="grads", async_op=True), [big, small], big
    want = RING_FACTOR[op] * counted.numel() * counted.element_size()
    assert comm.sent["grads"] == want and isinstance(comm.sent["grads"], int), dict(comm.sent)
    assert comm.calls["grads"] == 1 and comm.total() == want
    assert len(seen) == 1, f"{op} should run the collective once, ran it {len(seen)} times"
    args, kwargs = seen[0]
    assert [a for a in args if isinstance(a, torch.Tensor)] == tensors or \
        all(any(a is t for a in args) for t in tensors), f"{op} called with other tensors"
    assert kwargs.get("async_op") is True and handle == "handle"


@pytest.mark.step(1)
@pytest.mark.points(1)
def test_comm_at_world_size_one_copies_and_counts_no_bytes():
    """N = 1, no process group: nothing is sent (0 bytes, but the call is counted), reduce-scatter
    and all-gather copy (in place is a no-op), and async_op gives a handle whose wait() returns."""
    comm = Comm()
    assert comm.world == 1
    x = torch.arange(6, dtype=torch.float32)
    out = torch.full((6,), float("nan"))
    comm.reduce_scatter(out, x, tag="grads")
    assert torch.equal(out, x)
    out = torch.full((6,), float("nan"))
    comm.all_gather(out, x, tag="params")
    assert torch.equal(out, x)
    comm.reduce_scatter(x, x, tag="grads")       # in place
    comm.all_gather(x, x, tag="params")
    assert torch.equal(x, torch.arange(6, dtype=torch.float32))
    handle = comm.all_reduce(x, tag="norm", async_op=True)
    handle.wait()
    assert torch.equal(x, torch.arange(6, dtype=torch.float32))
    assert dict(comm.sent) == {"grads": 0, "params": 0, "norm": 0}
    assert dict(comm.calls) == {"grads": 2, "params": 2, "norm": 1}


# ---------------------------------------------------------- step 4: hooks and clipping, alone
class _BucketEngine(Engine):
    """Only the shared logic of ``engine.py``: a full fp32 bucket per unit, no collective
    (``_bucket_ready`` records the unit), nothing sharded — so no stage of yours is needed."""

    stage = 0
    state_is_sharded = False

    def __init__(self, *args, sharded_grads=False, **kwargs):
        self.grads_are_sharded = sharded_grads
        super().__init__(*args, **kwargs)

    def _setup(self):
        self.grads = [torch.zeros(L.padded) for L in self.layouts]
        self.ready = []
        self._register_grad_hooks()

    def _bucket_ready(self, u):
        self.ready.append(u)

    def _finish_backward(self):
        self._launch_unfinished()


@pytest.mark.step(4)
@pytest.mark.points(2)
def test_grad_hooks_fill_each_bucket_and_fire_it_when_complete(seed):
    """Each parameter's gradient lands in its unit's bucket at its offset and is freed; a unit
    fires once, when its last parameter is done (last unit first); a second backward adds."""
    import copy

    ids, vocab = C.text_ids()
    model = C.fresh_model({}, seed, vocab)
    ref = copy.deepcopy(model)
    engine = _BucketEngine(model, Comm())
    x, y = C.global_batch(ids, 0, C.BATCH, C.BLOCK, seed)
    ref(x, y).backward()
    grads = dict(zip([id(p) for p in model.parameters()], [q.grad for q in ref.parameters()]))
    for k in (1, 2):
        engine.backward(engine(x, y))
        assert engine.ready == list(range(len(engine.layouts)))[::-1] * k, engine.ready
        assert all(p.grad is None for p in model.parameters()), "p.grad must be freed once it is in the bucket"
        for u, L in enumerate(engine.layouts):
            bucket = engine.grads[u]
            for p, off in zip(L.params, L.offsets):
                assert_close(bucket[off:off + p.numel()], k * grads[id(p)].reshape(-1),
                             what=f"unit {u} bucket at offset {off} after {k} backward(s)")
            assert torch.all(bucket[L.numel:] == 0), "padding must stay zero"


@pytest.mark.step(4)
@pytest.mark.points(1)
@pytest.mark.parametrize("max_norm", [0.05, 1e6], ids=["clipping", "not_clipping"])
@pytest.mark.parametrize("sharded", [False, True], ids=["whole_grads", "sharded_grads"])
def test_clip_grad_norm_matches_torch(seed, max_norm, sharded):
    """The global norm and the scaled gradients equal torch.nn.utils.clip_grad_norm_'s; sharded
    gradients all-reduce their sum of squares (tag "norm"), whole ones do not."""
    ids, vocab = C.text_ids()
    engine = _BucketEngine(C.fresh_model({}, seed, vocab), Comm(), sharded_grads=sharded)
    g = torch.Generator().manual_seed(seed)
    grads = [torch.randn(n, generator=g) * 0.1 for n in (5, 37, 1)]
    params = [nn.Parameter(torch.zeros_like(t)) for t in grads]
    for p, t in zip(params, grads):
        p.grad = t.clone()
    ref_norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)
    ref = [p.grad for p in params]
    norm = engine.clip_grad_norm_(grads, max_norm)
    assert_close(norm, float(ref_norm), dtype=torch.float32, what="global norm")
    for i, (got, want) in enumerate(zip(grads, ref)):
        assert_close(got, want, dtype=torch.float32, what=f"clipped gradient {i}")
    assert engine.comm.calls.get("norm", 0) == (1 if sharded else 0)


@pytest.mark.step(2)
@pytest.mark.points(2)
@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(1, 7), st.integers(1, 7)), min_size=1, max_size=4),
       world=st.integers(1, 8), frozen=st.integers(0, 3))
def test_layout_pads_and_partitions(sizes, world, frozen):
    """Offsets pack the trainable parameters back to back; padding < N; the N shards tile [0, P)."""
    module = nn.Sequential(*[nn.Linear(a, b) for a, b in sizes])
    params = list(module.parameters())
    if frozen < len(params):
        params[frozen].requires_grad_(False)
    trainable = [p for p in module.parameters() if p.requires_grad]
    layouts = [plan_layout(module, "m", world, r) for r in range(world)]
    L = layouts[0]
    numel = sum(p.numel() for p in trainable)
    assert L.numel == numel
    assert L.padded % world == 0 and 0 <= L.padded - numel < world, (L.padded, numel, world)
    expected, off = [], 0
    for p in trainable:
        expected.append(off)
        off += p.numel()
    assert L.offsets == expected
    covered = sorted((M.lo, M.hi) for M in layouts)
    assert covered[0][0] == 0 and covered[-1][1] == L.padded
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:])), covered


@pytest.mark.step(10)
@pytest.mark.points(2)
@settings(max_examples=30, deadline=None)
@given(numel=st.integers(1, 200), old=st.integers(1, 6), new=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_reshard_round_trip(numel, old, new, seed):
    """Shards saved at N ranks (their padding NaN), resharded to M: each new shard holds ⌈Ψ/M⌉
    elements, and they concatenate back to the same vector followed by zeros."""
    g = torch.Generator().manual_seed(seed)
    full = torch.randn(numel, generator=g, dtype=torch.float64)
    shard = -(-numel // old)
    # the old padding holds NaN (a sentinel): it must not reach the new shards, whose padding is zeros
    padded = torch.cat([full, torch.full((shard * old - numel,), float("nan"), dtype=full.dtype)])
    pieces = list(padded.split(shard))
    out = [reshard(pieces, numel, new, r) for r in range(new)]
    assert [o.numel() for o in out] == [-(-numel // new)] * new, \
        f"every new rank's shard must hold ceil({numel}/{new}) elements: {[o.numel() for o in out]}"
    assert_close(torch.cat(out)[:numel], full, what=f"reshard {old} -> {new} ranks")
    assert torch.all(torch.cat(out)[numel:] == 0), "padding must be zeros"


@pytest.mark.step(3)
@pytest.mark.points(2)
def test_adamw_matches_torch(rng):
    """ShardAdamW on a flat vector = torch.optim.AdamW(foreach=False) element for element."""
    x0 = torch.from_numpy(rng.standard_normal(37)).float()
    grads = [torch.from_numpy(rng.standard_normal(37)).float() for _ in range(5)]
    ref = x0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([ref], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=False)
    ours = x0.clone()
    m, v = poison_like(ours).zero_(), torch.zeros_like(ours)
    adam = ShardAdamW(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for g in grads:
        ref.grad = g.clone()
        opt.step()
        adam.step([ours], [g.clone()], [m], [v])
    assert_close(ours, ref.detach(), rtol=1e-6, atol=1e-7, what="AdamW parameters")
    assert_close(m, opt.state[ref]["exp_avg"], rtol=1e-6, atol=1e-9, what="exp_avg")


@pytest.mark.step(9)
@pytest.mark.points(1)
@pytest.mark.parametrize("mixed", [False, True])
def test_model_state_formulas(mixed, rng):
    """ZeRO Figure 1: bytes per rank of parameters + gradients + optimizer states."""
    psi, n = int(rng.integers(1000, 10**6)), int(rng.integers(2, 64))
    p, g, k = (2, 2, 12) if mixed else (4, 4, 8)
    table = {0: 16 * psi, 1: (p + g) * psi + k * psi / n, 2: p * psi + (g + k) * psi / n, 3: 16 * psi / n}
    for stage, want in table.items():
        assert model_state_formula(stage, psi, n, mixed) == pytest.approx(want, rel=1e-12), stage
    for stage, factor in ((0, 2), (1, 2), (2, 2), (3, 3)):
        assert comm_bytes_formula(stage, psi, n, 2 if mixed else 4) == pytest.approx(
            factor * (n - 1) / n * psi * (2 if mixed else 4), rel=1e-12)


@pytest.mark.points(2)
@pytest.mark.parametrize("stage", stages(0, 1, 2, 3))
def test_each_stage_at_world_size_one(stage, seed):
    """At N = 1 every engine is plain training: loss and parameters equal PyTorch's."""
    case = {"stage": stage}
    ref_losses, ref_params = C.reference_run(case, seed, ranks=1)
    ids, vocab = C.text_ids()
    model = C.fresh_model(case, seed, vocab)
    comm = Comm()
    engine = make_engine(stage, model, comm, lr=C.LR, betas=C.BETAS, eps=C.EPS, weight_decay=C.WD,
                         clip_norm=None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = []
        for step in range(C.STEPS):
            x, y = C.global_batch(ids, step, C.BATCH, C.BLOCK, seed)
            loss = engine(x, y)
            engine.backward(loss)
            engine.step()
            engine.zero_grad()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-6, atol=0, what=f"stage {stage} losses")
    got = engine.full_master()
    for name, ref in ref_params.items():
        assert_close(got[name], ref, rtol=1e-6, atol=1e-6, what=f"stage {stage} {name}")


@pytest.mark.step(9)
@pytest.mark.points(1)
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_model_state_memory_at_world_size_one(stage, seed):
    """memory.inventory after a training step at N = 1: parameters + gradients + Adam = 16Ψ bytes."""
    ids, vocab = C.text_ids()
    engine = make_engine(stage, C.fresh_model({"stage": stage}, seed, vocab), Comm(), lr=C.LR)
    x, y = C.global_batch(ids, 0, C.BATCH, C.BLOCK, seed)
    engine.backward(engine(x, y))
    engine.step()
    inv = inventory(engine)
    assert model_state_bytes(inv) == 16 * engine.psi_padded, inv


@pytest.mark.step(9)
@pytest.mark.points(1)
@pytest.mark.parametrize("stage", [1, 3])
def test_inventory_files_frozen_parameters(stage, seed):
    """A frozen parameter (replicated, not trained, not in Ψ) is filed under "frozen", and the model
    states still sum to 16Ψ at N = 1."""
    ids, vocab = C.text_ids()
    model = C.fresh_model({"freeze": True}, seed, vocab)
    frozen = model.embed.pos.weight
    engine = make_engine(stage, model, Comm(), lr=C.LR)
    x, y = C.global_batch(ids, 0, C.BATCH, C.BLOCK, seed)
    engine.backward(engine(x, y))
    engine.step()
    inv = inventory(engine)
    assert inv["frozen"] == frozen.numel() * frozen.element_size(), inv
    assert model_state_bytes(inv) == 16 * engine.psi_padded, inv


class _RecordingComm(Comm):
    """World size 1, remembering the size of every gradient collective in launch order."""

    def __init__(self):
        super().__init__()
        self.grad_sizes = []

    def all_reduce(self, tensor, *, tag, async_op=False):
        if tag == "grads":
            self.grad_sizes.append(tensor.numel())
        return super().all_reduce(tensor, tag=tag, async_op=async_op)

    def reduce_scatter(self, output, input, *, tag, async_op=False):
        if tag == "grads":
            self.grad_sizes.append(input.numel())
        return super().reduce_scatter(output, input, tag=tag, async_op=async_op)


@pytest.mark.points(2)
@pytest.mark.parametrize("stage", stages(0, 1, 2))
def test_buckets_launch_during_backward(stage, seed):
    """The gradient hooks launch each unit's collective while backward is still running — last unit
    first — not after it (that is the overlap); a plain ``loss.backward()`` must already have
    launched one per unit."""
    case = {"stage": stage}
    ids, vocab = C.text_ids()
    model = C.fresh_model(case, seed, vocab)
    comm = _RecordingComm()
    engine = make_engine(stage, model, comm)
    x, y = C.global_batch(ids, 0, C.BATCH, C.BLOCK, seed)
    engine(x, y).backward()  # not engine.backward: nothing runs after autograd returns
    padded = [L.padded for L in engine.layouts]
    assert comm.grad_sizes == padded[::-1], \
        f"gradient collectives launched during backward, by size: {comm.grad_sizes}; units (forward order): {padded}"


class _GatherLog(Comm):
    def __init__(self):
        super().__init__()
        self.gathered = []

    def all_gather(self, output, input, *, tag, async_op=False):
        if tag == "params":
            self.gathered.append(output.numel())
        return super().all_gather(output, input, tag=tag, async_op=async_op)


@pytest.mark.step(8)
@pytest.mark.points(2)
def test_stage3_gathers_each_unit_in_forward_and_again_in_backward(seed):
    """Stage 3 keeps no whole parameters: forward gathers units first to last, backward gathers
    them again last to first (saved views were not kept), then each gradient is reduce-scattered."""
    ids, vocab = C.text_ids()
    model = C.fresh_model({}, seed, vocab)
    comm = _GatherLog()
    engine = make_engine(3, model, comm)
    x, y = C.global_batch(ids, 0, C.BATCH, C.BLOCK, seed)
    loss = engine(x, y)
    padded = [L.padded for L in engine.layouts]
    assert comm.gathered == padded, f"forward gathers {comm.gathered}, units {padded}"
    assert all(p.numel() == 0 for p in model.parameters() if p.requires_grad), \
        "after forward the module's parameters must be empty placeholders again (shards only)"
    engine.backward(loss)
    assert comm.gathered == padded + padded[::-1], f"gathers {comm.gathered}, units {padded}"
    assert comm.calls["grads"] == len(padded)
