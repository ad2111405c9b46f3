"""Shared by the graded tests and the worker they launch under torchrun: the tiny model,
the cases, the single-process PyTorch reference and one sharded training run.

The model is deliberately tiny (d_model 9, 2 blocks, 16 characters of context): 4 ranks
share 2 cores in the tests.  d_model = 9 makes every block 1089 parameters, so the units
do not divide by 2 or 4 and the padding paths run.  ``threaded_run`` trains the same way on
ranks that are threads of the calling process (``thread_ranks.py``); its 3-rank cases use
``AT3`` (d_model 8, global batch 6), whose units do not divide by 3.
"""
from __future__ import annotations

import traceback

import torch

from mlsys_labs.zero import CharText, GPTConfig, build_model, global_batch, load_text, rank_slice

STEPS = 20
BATCH = 8          # global batch (sequences); divides by 1, 2, 4 ranks and by 2 micro-batches (a case's "batch" overrides it)
BLOCK = 16
LR, BETAS, EPS, WD = 1e-2, (0.9, 0.99), 1e-8, 0.1
CLIP = 0.05        # small enough that clipping is active on most steps


def text_ids() -> tuple[torch.Tensor, int]:
    data = CharText(load_text())
    return data.split()[0], data.vocab_size


def config(vocab: int, case: dict | None = None) -> GPTConfig:
    """d_model 9, 2 blocks by default; a case may set ``d_model``/``n_head``/``n_layer`` (the
    3-rank cases use d_model 8: every unit's size is then indivisible by 3)."""
    case = case or {}
    return GPTConfig(vocab_size=vocab, block_size=BLOCK, n_layer=case.get("n_layer", 2),
                     n_head=case.get("n_head", 3), d_model=case.get("d_model", 9))


# name -> options; "mixed" = bf16 compute with fp32 master weights
CASES = {
    "stage0": dict(stage=0),
    "stage1": dict(stage=1),
    "stage2": dict(stage=2),
    "stage3": dict(stage=3),
    "stage0_accum_clip_frozen": dict(stage=0, accum=2, clip=True, freeze=True),
    "stage1_accum_clip_frozen": dict(stage=1, accum=2, clip=True, freeze=True),
    "stage2_accum_clip_frozen": dict(stage=2, accum=2, clip=True, freeze=True),
    "stage3_accum_clip_frozen": dict(stage=3, accum=2, clip=True, freeze=True),
    "stage1_bf16": dict(stage=1, mixed=True),
    "stage2_bf16": dict(stage=2, mixed=True),
    "stage3_bf16": dict(stage=3, mixed=True),
}
CASES_AT = {2: list(CASES), 4: ["stage0", "stage1", "stage2", "stage3", "stage3_accum_clip_frozen", "stage3_bf16"]}


def fresh_model(case: dict, seed: int, vocab: int):
    model = build_model(config(vocab, case), seed)
    if case.get("freeze"):
        model.embed.pos.weight.requires_grad_(False)  # a frozen parameter inside a sharded unit
    return model


def reference_run(case: dict, seed: int, ranks: int | list[int] = 1,
                  steps: int = STEPS) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Single-process PyTorch: the global batch, ``torch.optim.AdamW``, ``clip_grad_norm_``.

    The gradient is formed as the data-parallel run forms it — per rank slice, accumulated
    over its micro-batches, then summed over ranks in rank order and divided by the number of
    ranks — so that, run on one thread (as torchrun's workers are), fp32 agrees to rounding
    (Adam turns a last-bit difference in a near-zero gradient into a visible step).

    ``ranks`` may be a list (the world size of each step: a run resumed at another world size).

    Mixed precision (``case["mixed"]``): the model computes in bf16, its fp32 master copies are
    what AdamW updates (the gradients cast to fp32), and the model is re-cast after each step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ids, vocab = text_ids()
        model = fresh_model(case, seed, vocab)
        params = [p for p in model.parameters() if p.requires_grad]
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        if case.get("mixed"):
            master = [p.detach().clone().requires_grad_(True) for p in params]
            model.to(torch.bfloat16)
        else:
            master = params
        opt = torch.optim.AdamW(master, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, foreach=False)
        losses = []
        per_step = ranks if isinstance(ranks, list) else [ranks] * steps
        for step in range(len(per_step)):
            ranks = per_step[step]
            x, y = global_batch(ids, step, case.get("batch", BATCH), BLOCK, seed)
            opt.zero_grad()
            for p in params:
                p.grad = None
            accum, loss, total = case.get("accum", 1), 0.0, None
            for r in range(ranks):
                xr, yr = rank_slice(x, r, ranks), rank_slice(y, r, ranks)
                for xm, ym in zip(xr.chunk(accum), yr.chunk(accum)):
                    part = model(xm, ym) / accum
                    part.backward()
                    loss += part.item() / ranks
                grads = [p.grad for p in params]
                total = grads if total is None else [t + g for t, g in zip(total, grads)]
                for p in params:
                    p.grad = None
            for p, t in zip(params, total):
                p.grad = t / ranks
            if case.get("mixed"):
                for m, p in zip(master, params):
                    m.grad = p.grad.float()
            if case.get("clip"):
                torch.nn.utils.clip_grad_norm_(master, CLIP, foreach=False)
            opt.step()
            if case.get("mixed"):
                with torch.no_grad():
                    for m, p in zip(master, params):
                        p.copy_(m)
            losses.append(loss)
        return losses, {n: m.detach().clone() for n, m in zip(names, master)}
    finally:
        torch.set_num_threads(threads)


def sharded_run(case: dict, seed: int, comm) -> dict:
    """The same training on this rank's slice of each global batch with a ZeRO engine."""
    import torch.distributed as dist

    from mlsys_labs.zero import inventory, make_engine

    ids, vocab = text_ids()
    model = fresh_model(case, seed, vocab)
    engine = make_engine(case["stage"], model, comm, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD,
                         param_dtype=torch.bfloat16 if case.get("mixed") else torch.float32,
                         clip_norm=CLIP if case.get("clip") else None)
    accum = case.get("accum", 1)
    losses, step_bytes = [], {}
    for step in range(STEPS):
        if step == STEPS - 1:
            comm.reset()
        x, y = global_batch(ids, step, case.get("batch", BATCH), BLOCK, seed)
        x, y = rank_slice(x, comm.rank, comm.world), rank_slice(y, comm.rank, comm.world)
        total = 0.0
        for k, (xm, ym) in enumerate(zip(x.chunk(accum), y.chunk(accum))):
            loss = engine(xm, ym) / accum
            engine.backward(loss, sync=(k == accum - 1))
            total += loss.item()
        engine.step()
        if step == STEPS - 1:
            step_bytes = dict(comm.sent)
            try:        # memory.py is a later step than the stages: its failure fails only the memory tests
                inv, inv_error = inventory(engine), None
            except Exception:  # noqa: BLE001
                inv, inv_error = None, traceback.format_exc()
        engine.zero_grad()
        t = torch.tensor([total], dtype=torch.float64)
        dist.all_reduce(t)
        losses.append(float(t) / comm.world)
    params = engine.full_master()
    return {"losses": losses, "params": params, "bytes": step_bytes, "inventory": inv, "inventory_error": inv_error,
            "psi": engine.psi, "psi_padded": engine.psi_padded,
            "units": [(L.numel, L.padded) for L in engine.layouts]}


# ------------------------------------------------------------- ranks as threads (thread_ranks.py)
# 3 ranks: every unit of the d_model-8 model is indivisible by 3 (592, 872, 872, 538 elements;
# 464 in the embeddings with the position table frozen); global batch 6 = 3 ranks x 2 micro-batches.
AT3 = dict(d_model=8, n_head=2, batch=6)


def threaded_run(case: dict, seed: int, world: int, steps: int = STEPS, *, start: int = 0,
                 resume: str | None = None, save: str | None = None, setup=None, observe=None) -> dict:
    """``case`` trained for steps [start, steps) on ``world`` ranks that are threads of this process
    (``thread_ranks.run_ranks``), each rank on its slice of every global batch.

    ``resume``/``save``: a checkpoint directory to load before the first step / write after the last.
    ``setup(engine, comm)`` is called on each rank once its engine is made;
    ``observe(rank, engine, comm, step, phase)`` is called at "forward" (after the forward of a
    micro-batch), "backward" (after its ``engine.backward``) and "step" (after ``engine.step``).
    Returns the loss per step (the mean over ranks), every trainable parameter's fp32 master value
    (gathered), the engines and their comms (rank order)."""
    from mlsys_labs.zero import checkpoint, make_engine
    from thread_ranks import run_ranks

    ids, vocab = text_ids()
    models = [fresh_model(case, seed, vocab) for _ in range(world)]  # built here: build_model seeds the global RNG
    accum = case.get("accum", 1)
    observe = observe or (lambda *a: None)

    def rank(comm):
        engine = make_engine(case["stage"], models[comm.rank], comm, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD,
                             param_dtype=torch.bfloat16 if case.get("mixed") else torch.float32,
                             clip_norm=CLIP if case.get("clip") else None)
        if setup is not None:
            setup(engine, comm)
        if resume:
            got = checkpoint.load(engine, resume)
            assert got == start, f"the checkpoint says step {got}, expected {start}"
        losses = []
        for step in range(start, steps):
            x, y = global_batch(ids, step, case.get("batch", BATCH), BLOCK, seed)
            x, y = rank_slice(x, comm.rank, comm.world), rank_slice(y, comm.rank, comm.world)
            total = 0.0
            for k, (xm, ym) in enumerate(zip(x.chunk(accum), y.chunk(accum))):
                loss = engine(xm, ym) / accum
                observe(comm.rank, engine, comm, step, "forward")
                engine.backward(loss, sync=(k == accum - 1))
                observe(comm.rank, engine, comm, step, "backward")
                total += loss.item()
            engine.step()
            observe(comm.rank, engine, comm, step, "step")
            engine.zero_grad()
            losses.append(total)
        if save:
            checkpoint.save(engine, save, steps)
        return losses, engine.full_master(), engine, comm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = run_ranks(world, rank)
    finally:
        torch.set_num_threads(threads)
    per_rank = [o[0] for o in out]
    losses = [sum(per_rank[r][i] for r in range(world)) / world for i in range(steps - start)]
    return {"losses": losses, "params": out[0][1], "engines": [o[2] for o in out], "comms": [o[3] for o in out]}
