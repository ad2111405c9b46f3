"""Run under torchrun by the graded tests: every case of ``lab6_cases`` at this world size.

    torchrun --nproc_per_node N labs/batch6/dist_worker.py OUT_DIR SEED [RESUME_FROM]

Each rank writes ``OUT_DIR/rank{r}.pt`` (a dict case -> results).  A failing case is
recorded with its traceback and the others still run (so one bug costs only its tests).
"""
import os
import sys
import traceback
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import lab6_cases  # noqa: E402
from mlsys_labs.zero import Comm  # noqa: E402


SMALL = ["--d-model", "16", "--layers", "1", "--heads", "2", "--block-size", "16", "--batch-size", "8"]


def checkpoint_leg(results: dict, comm, out: str, seed: int, resume_from: str | None) -> None:
    """At 4 ranks: train.py, stage 3, 6 steps, sharded checkpoint.  At 2 ranks (given the 4-rank
    run's output folder): train.py, stage 1, resumes from it to step 10.  Rank 0 logs the losses."""
    from mlsys_labs.zero import train

    common = ["--seed", str(seed), "--loss-log", os.path.join(out, "loss.jsonl"), *SMALL]
    try:
        if comm.world == 4:
            train.main(["--stage", "3", "--steps", "6", "--save-at", "6",
                        "--save-dir", os.path.join(out, "ckpt"), *common])
        elif resume_from:
            train.main(["--stage", "1", "--steps", "10", "--resume", os.path.join(resume_from, "ckpt"), *common])
        else:
            return
        results["checkpoint"] = {"ok": True}
    except Exception:  # noqa: BLE001
        results["checkpoint"] = {"error": traceback.format_exc()}
        print(f"rank {comm.rank} checkpoint leg failed:\n{results['checkpoint']['error']}", file=sys.stderr)


def main() -> None:
    out, seed = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    comm = Comm()
    results = {}
    for name in lab6_cases.CASES_AT[comm.world]:
        try:
            results[name] = lab6_cases.sharded_run(lab6_cases.CASES[name], seed, comm)
        except Exception:  # noqa: BLE001 - reported to the test, which fails with it
            results[name] = {"error": traceback.format_exc()}
            print(f"rank {comm.rank} case {name} failed:\n{results[name]['error']}", file=sys.stderr)
            dist.barrier()  # resynchronise (every rank fails the same way in the same place)
    checkpoint_leg(results, comm, out, seed, sys.argv[3] if len(sys.argv) > 3 else None)
    torch.save(results, os.path.join(out, f"rank{comm.rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
