"""Flower's own engines: the simulation engine (Ray) and deployment (real processes).

README step 5: they run once local training is written (steps 1–5)."""
import os
import shutil
import time
from pathlib import Path

import pytest

from mlsys_labs.common.procs import descendants
from mlsys_labs.federated import FedConfig
from mlsys_labs.federated.plumbing import run_flower_simulation, run_in_process

pytestmark = pytest.mark.step(5)

FAULTY = FedConfig(num_clients=4, num_rounds=3, fraction=0.75, fail_partitions="1,2", fail_round=2,
                   partitioning="dirichlet:1.0")


def describe(pids) -> str:
    """pid: command line, for assertion messages."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmd = "(gone)"
        out.append(f"{pid}: {cmd[:200]}")
    return "\n".join(out)


@pytest.fixture(scope="module")
def flower_run(request):
    """One Flower simulation (Ray start-up is seconds: shared by the tests below)."""
    from mlsys_labs.common.rng import derive_seed
    from mlsys_labs.grading import pytest_plugin

    seed = derive_seed(pytest_plugin._SESSION_SEED, "flower_run") % 10_000
    cfg = FAULTY.replace(seed=seed)
    before = set(descendants(os.getpid()))
    history, local, error = None, None, None
    try:
        local = run_in_process(cfg)  # the reference; fails fast (no Ray start) on missing pieces
        history = run_flower_simulation(cfg)
    except Exception as exc:  # noqa: BLE001 — reported by each test that needs the run
        error = exc
    deadline = time.monotonic() + 10  # a few seconds' grace for processes already exiting
    while (left := sorted(set(descendants(os.getpid())) - before)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return cfg, history, local, error, describe(left) if left else ""


def _need(flower_run):
    cfg, history, local, error, _ = flower_run
    if error is not None:
        raise AssertionError(f"the Flower simulation failed: {type(error).__name__}: {error}") from error
    return cfg, history, local


@pytest.mark.points(2)
@pytest.mark.dist
def test_flower_simulation_survives_a_raising_client(flower_run):
    cfg, history, _ = _need(flower_run)
    r1, r2, r3 = history["rounds"]
    faulty = [p for p in r2["sampled"] if p in (1, 2)]  # 3 of 4 sampled: at least one of them
    assert len(r2["sampled"]) == 3 and faulty
    assert r2["failed"] == len(faulty), r2
    assert r2["aggregated"] == [p for p in r2["sampled"] if p not in faulty], r2
    assert "injected fault" in r2["errors"][0]
    assert r3["aggregated"] == r3["sampled"] and r3["failed"] == 0
    assert history["final_accuracy"] > 0.5


@pytest.mark.points(2)
@pytest.mark.dist
def test_flower_engine_and_in_process_engine_agree_bit_for_bit(flower_run):
    """Same seed, same ServerApp and ClientApp: Ray workers or this process, same model."""
    cfg, history, local = _need(flower_run)
    assert [r["sampled"] for r in history["rounds"]] == [r["sampled"] for r in local["rounds"]]
    assert [r["accuracy"] for r in history["rounds"]] == [r["accuracy"] for r in local["rounds"]]
    assert history["weights_digest"] == local["weights_digest"]


@pytest.mark.points(1)
@pytest.mark.dist
def test_flower_simulation_leaves_no_ray_process(flower_run):
    _need(flower_run)
    left = flower_run[4]
    assert not left, f"processes left after the simulation:\n{left}"


@pytest.mark.points(3)
@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_deployment_with_3_supernodes_runs_and_leaves_nothing(seed):
    from mlsys_labs.federated.plumbing import Deployment, leftover_processes

    cfg = FedConfig(num_clients=3, num_rounds=2, partitioning="iid", seed=seed % 10_000)
    local = run_in_process(cfg)  # the reference (and a fast failure before any process starts)
    deployment = Deployment(3)
    history, error = None, None
    try:
        deployment.start()
        running = leftover_processes(deployment.flwr_home)
        history = deployment.run(cfg, timeout_s=300)
    except Exception as exc:  # noqa: BLE001
        error = exc
    finally:
        deployment.stop()
    left = leftover_processes(deployment.flwr_home)
    logs = deployment.log_tail(2000)
    assert error is None, f"deployment failed: {type(error).__name__}: {error}\n{logs}"
    assert len(running) >= 4, f"expected a SuperLink and 3 SuperNodes running, saw pids {running}"
    assert not left, f"processes left behind after stop():\n{describe(left)}\n{logs}"
    assert [r["round"] for r in history["rounds"]] == [1, 2]
    assert all(r["aggregated"] == [0, 1, 2] for r in history["rounds"]), history["rounds"]
    # the deployed run computes exactly what the in-process engine computes
    assert history["weights_digest"] == local["weights_digest"]
    shutil.rmtree(deployment.workdir, ignore_errors=True)  # logs kept only when the test fails
