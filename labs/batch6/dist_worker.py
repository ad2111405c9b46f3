"""Run under torchrun by the graded tests: every case of ``lab6_cases`` at this world size.

    torchrun --nproc_per_node N labs/batch6/dist_worker.py OUT_DIR SEED

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
    torch.save(results, os.path.join(out, f"rank{comm.rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
