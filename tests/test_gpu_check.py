"""``make gpu-check`` / ``scripts/gpu-check`` as a practitioner meets it on a machine without
network: a prepared Python (torch, pytest, … already installed) is used as it is, nothing is
installed, and without CUDA the run still goes end to end with the GPU parts skipped and counted."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from mlsys_labs.common import device
from mlsys_labs.common.paths import project_root

ROOT = project_root()
GUARD = '''import os, sys
with open(os.environ["INSTALL_LOG"], "a") as f:
    f.write(" ".join(["{name}", *sys.argv[1:]]) + "\\n")
sys.exit(1)
'''


def prepared_python(where: Path, log: Path) -> Path:
    """A venv that sees this environment's packages (torch, pytest, …) and whose pip, like a
    ``pip``/``pip3``/``make`` on the PATH, only records that it was called and fails."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "prepared.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    (site / "pip").mkdir()
    (site / "pip" / "__init__.py").write_text("")
    (site / "pip" / "__main__.py").write_text(GUARD.format(name="python -m pip"))
    bin_dir = where / "guards"
    bin_dir.mkdir()
    for tool in ("pip", "pip3", "make"):
        (bin_dir / tool).write_text(f"#!{python}\n" + GUARD.format(name=tool))
        (bin_dir / tool).chmod(0o755)
    return python


def offline_env(where: Path, python: Path, log: Path) -> dict:
    return {**os.environ, "PYTHON": str(python), "INSTALL_LOG": str(log),
            "PATH": f"{where / 'guards'}{os.pathsep}{os.environ['PATH']}",
            "PIP_INDEX_URL": "http://127.0.0.1:9/", "PIP_NO_INDEX": "1", "PIP_RETRIES": "0"}


def collected(*args: str) -> int:
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    return sum(1 for line in proc.stdout.splitlines() if "::" in line)


def test_a_spent_budget_is_a_failure(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mlsys_labs.cli", "gpu-check", "--budget", "0", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the time budget was spent" in proc.stdout
    assert list(tmp_path.glob("gpu-check-*.md"))


@pytest.mark.slow
def test_prepared_python_without_network_runs_end_to_end(tmp_path):
    if device.has_cuda():
        pytest.skip("this machine has a GPU: gpu-check would run it for real (minutes)")
    log = tmp_path / "install-attempts.log"
    python = prepared_python(tmp_path / "prepared", log)
    env = offline_env(tmp_path / "prepared", python, log)
    guard = subprocess.run([str(python), "-m", "pip", "install", "torch"], env=env, capture_output=True, timeout=60)
    assert guard.returncode == 1 and log.read_text() == "python -m pip install torch\n"   # the guard is live
    log.unlink()
    out = tmp_path / "out"
    proc = subprocess.run(["sh", str(ROOT / "scripts" / "gpu-check"), "--quick", "--out", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 3, text          # 3: no CUDA, ran end to end, GPU parts skipped
    assert f"using the current Python: {python} (nothing installed)" in text
    assert f"gpu-check: {python} (Python" in text, "the check itself did not run on the prepared Python"
    assert not log.exists(), f"an install was attempted: {log.read_text()}"
    n_tests = collected("labs/batch4", "-m", "gpu")
    n_bench = collected("benchmarks/test_lab4_ceilings.py", "benchmarks/test_lab4_softmax.py", "-m", "gpu",
                        "-k", "ceilings or 2048")
    assert n_tests > 0 and n_bench > 0
    assert f"{n_tests} GPU tests skipped: no CUDA" in text, text[-3000:]
    assert f"{n_bench} GPU benchmarks skipped: no CUDA" in text, text[-3000:]
    summary = (out / next(p.name for p in out.glob("gpu-check-*.md"))).read_text()
    assert re.search(rf"\| GPU tests \| {n_tests} \| 0 \| 0 \| {n_tests} \| 0 \|", summary), summary
    assert "lab 4 natively | 0 | 0 | 0 | 0 | 0 | 0 | not run: no CUDA" in summary
