"""The shared infrastructure: tolerance policy, seeds, figures, results and the report."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlsys_labs.common import bench, tolerance
from mlsys_labs.common.rng import derive_seed


def test_assert_close_accepts_within_and_rejects_beyond_policy(rng):
    ref = rng.standard_normal((17, 5))
    tolerance.assert_close(ref.astype(np.float32), ref)  # float32 rounding is within 1e-5
    bad = ref.astype(np.float32).copy()
    bad[3, 2] += 1e-2
    with pytest.raises(AssertionError, match=r"1 of 85 elements differ.*worst at \(3, 2\)"):
        tolerance.assert_close(bad, ref)


def test_assert_close_torch_dtypes_and_integers(rng):
    ref = rng.standard_normal(64)
    tolerance.assert_close(torch.tensor(ref, dtype=torch.bfloat16), ref)
    with pytest.raises(AssertionError):
        tolerance.assert_close(torch.tensor(ref, dtype=torch.bfloat16), ref, dtype=torch.float32)
    ints = rng.integers(-100, 100, 32)
    tolerance.assert_close(ints.astype(np.int32), ints)
    off = ints.copy()
    off[0] += 1
    with pytest.raises(AssertionError, match="int64 tolerance"):
        tolerance.assert_close(off, ints)


def test_poison_shows_unwritten_elements(rng):
    ref = rng.standard_normal((4, 4))
    out = tolerance.poison_like(ref)
    out[:, :3] = ref[:, :3]
    with pytest.raises(AssertionError, match="4 of 16 elements are NaN"):
        tolerance.assert_close(out, ref)
    assert torch.isnan(tolerance.poison_like(torch.zeros(3))).all()
    assert (tolerance.poison_like(np.zeros(3, np.int32)) == np.iinfo(np.int32).min).all()


def test_shape_mismatch_and_unknown_dtype():
    with pytest.raises(AssertionError, match="shape"):
        tolerance.assert_close(np.zeros(3), np.zeros(4))
    with pytest.raises(KeyError, match="no tolerance policy"):
        tolerance.tolerance("complex256")


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(1, "a") == derive_seed(1, "a")
    assert len({derive_seed(1, "a"), derive_seed(1, "b"), derive_seed(2, "a")}) == 3


@pytest.mark.parametrize("target, value, passed", [("<= 1.5", 1.2, True), ("<= 1.5", 1.6, False),
                                                   (">= 0.6", 0.61, True), (">= 0.6", 0.3, False)])
def test_figure_verdicts(target, value, passed):
    assert bench.Figure(lab=1, name="x", value=value, target=target).passed is passed


def test_bad_target_rejected():
    with pytest.raises(ValueError, match="target must look like"):
        bench.record_figure(lab=1, name="x", value=1.0, target="about 2")


def test_compare_times_both_and_ratio():
    import time

    cmp = bench.compare(lambda: time.sleep(0.004), lambda: time.sleep(0.002), repeats=3, warmup=0)
    assert len(cmp.ours.times) == len(cmp.peer.times) == 3
    assert cmp.ratio == pytest.approx(cmp.ours.median / cmp.peer.median)


def test_record_figure_results_file_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSYS_LABS_HOME", str(tmp_path))
    bench.record_figure(lab=2, name="packed / BLAS", value=0.7, unit="x", target=">= 0.6", peer="BLAS")
    bench.record_figure(lab=2, name="packed / BLAS", value=0.5, unit="x", target=">= 0.6", peer="BLAS")
    bench.record_figure(lab=2, name="threads speed-up", value=1.8, unit="x", target=">= 1.6")
    path = bench.results_path()
    data = json.loads(path.read_text())
    assert path.parent == tmp_path / "benchmarks" / "results"
    assert data["machine"]["cores"] >= 1 and "cpu" in data["machine"]
    figs = {f.name: f for f in bench.figures_for(2)}
    assert figs["packed / BLAS"].value == 0.5 and figs["packed / BLAS"].passed is False
    from mlsys_labs.common.report import write_report

    written = write_report()
    md = (tmp_path / "reports" / "benchmarks.md").read_text()
    assert "packed / BLAS" in md and "short" in md and "pass" in md
    assert any(p.suffix == ".png" and p.stat().st_size > 1000 for p in written)


def test_run_group_kills_descendants_on_timeout(tmp_path):
    """A launcher whose child outlives it: the timeout reaches the grandchild too."""
    import os
    import sys

    from mlsys_labs.common.procs import free_port, run_group

    pidfile = tmp_path / "pid"
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(600)")
    done = run_group([sys.executable, "-c", code], timeout=3)
    assert done.timed_out and done.returncode == -9
    grandchild = int(pidfile.read_text())
    import time

    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{grandchild}/stat") as f:
            if f.read().split()[2] == "Z":  # a zombie is dead, only not yet reaped
                break
        time.sleep(0.1)
    else:
        raise AssertionError("the grandchild survived the timeout")
    ok = run_group([sys.executable, "-c", "print('hi')"], timeout=30)
    assert ok.returncode == 0 and ok.stdout.strip() == "hi" and not ok.timed_out
    assert 0 < free_port() < 65536


def test_editing_a_numba_function_reaches_its_caller_compiled_in_another_file(toy_repo):
    """numba's own cache checks only the caller's file: an edited callee in another file
    would be served stale.  The cache folder is keyed by the sources, so it is not."""
    pytest.importorskip("numba")
    import os
    import subprocess
    import sys

    nn = toy_repo / "mlsys_labs" / "nn"
    (nn / "jit_a.py").write_text("from numba import njit\n\n\n@njit(cache=True)\ndef f(x):\n    return x + 1\n")
    (nn / "jit_b.py").write_text("from numba import njit\n\nfrom .jit_a import f\n\n\n"
                                 "@njit(cache=True)\ndef g(x):\n    return f(x) * 10\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "_MLSYS_NUMBA_CACHE_DIR")}
    env.update(PYTHONPATH=str(toy_repo), MLSYS_LABS_HOME=str(toy_repo))
    run = lambda: subprocess.run([sys.executable, "-c", "from mlsys_labs.nn.jit_b import g; print(g(1))"],  # noqa: E731
                                 cwd=toy_repo, env=env, capture_output=True, text=True, timeout=300)
    first = run()
    assert first.returncode == 0 and first.stdout.strip() == "20", first.stderr[-2000:]
    assert any((toy_repo / ".mlsys" / "numba-cache").rglob("*.nbi")), "nothing was cached"
    (nn / "jit_a.py").write_text((nn / "jit_a.py").read_text().replace("x + 1", "x + 2"))
    second = run()
    assert second.returncode == 0 and second.stdout.strip() == "30", (second.stdout, second.stderr[-2000:])


HYPOTHESIS_TEST = '''
import os
from hypothesis import given, settings, strategies as st


@settings(max_examples=15)
@given(st.lists(st.integers(), min_size=1))
def test_draws(xs):
    with open(os.environ["DRAWS_FILE"], "a") as f:
        f.write(repr(xs) + "\\n")


def test_fails_on_purpose(rng):
    assert rng.integers(10) < 0
'''


def test_seed_reproduces_hypothesis_draws_and_every_failure_names_it(toy_repo, tmp_path):
    import os
    import subprocess
    import sys

    (toy_repo / "labs" / "batch1" / "test_hyp.py").write_text(HYPOTHESIS_TEST)

    def draws(seed: int) -> tuple[str, str]:
        out = tmp_path / f"draws-{seed}-{len(list(tmp_path.iterdir()))}.txt"
        proc = subprocess.run([sys.executable, "-m", "pytest", "labs/batch1/test_hyp.py", "-q", "-p", "no:cacheprovider",
                               "--seed", str(seed)], cwd=toy_repo, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(toy_repo), "DRAWS_FILE": str(out)})
        return out.read_text(), proc.stdout

    first, stdout = draws(123)
    again, _ = draws(123)
    other, _ = draws(124)
    assert first == again, "the same --seed drew different Hypothesis examples"
    assert first != other, "a different --seed drew the same Hypothesis examples"
    failure = stdout[stdout.index("test_fails_on_purpose"):]
    assert "reproduce with: pytest labs/batch1/test_hyp.py::test_fails_on_purpose --seed 123" in failure
    assert not (toy_repo / ".hypothesis" / "examples").exists(), "an example database was written"
