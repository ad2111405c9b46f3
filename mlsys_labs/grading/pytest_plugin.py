"""The pytest plugin every test run loads (``-p mlsys_labs.grading.pytest_plugin``).

It carries the conventions of CONTRIBUTING.md:

- markers ``points(n)``, ``hidden``, ``gpu``, ``mpi``, ``dist``, ``slow``;
- ``gpu`` tests skip without CUDA, and ``--require-gpu`` turns that skip into a failure;
- one random session seed (``--seed N`` or ``MLSYS_SEED`` to reproduce), with fixtures
  ``seed`` and ``rng`` giving each test its own stream derived from it; Hypothesis draws
  from the same seed and keeps no example database, so ``--seed N`` replays every draw;
  every failure names the seed and the command that reproduces it (also under ``-q``);
- ``step(k)`` marks the README step a test belongs to; ``--step 3`` (or ``1-3``, ``2,4``)
  runs only those steps' tests;
- Triton's interpreter is switched on before any test module imports Triton;
- ``--grade-log FILE`` appends one JSON line per collected set, test start and test end,
  which is how the grader follows a run and survives a crash or a hang in it;
- ``--grade-skip FILE`` deselects tests already graded (the grader's resume after a crash);
- ``--grade-record`` (with ``-o enable_assertion_pass_hook=true``) adds to the log what each
  test compared — every ``assert_close`` value and every passing ``assert`` — which the
  grader checks against the reference's run (the grader's docstring says why).
"""
from __future__ import annotations

import json
import os
import random
import time

import pytest

from mlsys_labs.common import device
from mlsys_labs.common.rng import derive_seed, make_rng, seed_everything

_SESSION_SEED: int | None = None
# What this session graded, for the honesty guard: nodeid -> {"outcome", "points", "lab", ...},
# and per lab the node ids collected (so a lab counts as graded only when all of it ran).
SESSION_RESULTS: dict[str, dict] = {}
SESSION_COLLECTED: dict[int, set[str]] = {}


def pytest_addoption(parser):
    group = parser.getgroup("mlsys-labs")
    group.addoption("--require-gpu", action="store_true", default=False,
                    help="fail, instead of skip, every test marked gpu when no CUDA GPU is present")
    group.addoption("--seed", type=int, default=None,
                    help="session seed for the random inputs (default: random, printed in the header)")
    group.addoption("--step", default=None, metavar="STEPS",
                    help="run only the tests of these README steps: 3, 1-3 or 2,4")
    group.addoption("--grade-log", default=None, help="(grader) append JSON events to this file")
    group.addoption("--grade-skip", default=None, help="(grader) file of node ids to deselect")
    group.addoption("--grade-unneeded", default=None,
                    help="(grader) file of node ids to skip when reached (read at each test's setup)")
    group.addoption("--grade-record", action="store_true", default=False,
                    help="(grader) log what each test compares, for the grader's check against the reference")


def pytest_configure(config):
    global _SESSION_SEED
    for line in [
        "points(n): grading weight of a test (default 1)",
        "hidden: left out of starter copies; graded by the instructor only",
        "gpu: needs CUDA (skipped without it; --require-gpu makes that a failure)",
        "mpi: launches mpiexec",
        "dist: launches several processes",
        "slow: long, but still part of make test",
        "step(k): the README step of its lab the test belongs to (select with --step)",
    ]:
        config.addinivalue_line("markers", line)
    device.configure_triton()
    seed = config.getoption("--seed")
    if seed is None and os.environ.get("MLSYS_SEED"):
        seed = int(os.environ["MLSYS_SEED"])
    _SESSION_SEED = seed if seed is not None else random.SystemRandom().randrange(2**31)
    os.environ.setdefault("MPLBACKEND", "Agg")
    _seed_hypothesis(config, _SESSION_SEED)
    parse_steps(config.getoption("--step"))  # a bad --step is a usage error before anything runs
    if config.getoption("--grade-record") and config.getoption("--grade-log"):
        from mlsys_labs.common import tolerance

        tolerance.RECORDER = _record_check


def _seed_hypothesis(config, seed: int) -> None:
    """Hypothesis draws from the session seed (unless ``--hypothesis-seed`` is given) and
    replays nothing from an example database: ``--seed N`` reproduces its examples too.
    Hypothesis's own CI profile (loaded when ``CI`` is set) derandomizes, which would make
    every seed draw the same examples: this profile turns that off."""
    try:
        from hypothesis import core, settings
    except ImportError:
        return
    settings.register_profile("mlsys-labs", parent=settings.get_profile(settings.get_current_profile_name()),
                              database=None, derandomize=False)
    settings.load_profile("mlsys-labs")
    if config.getoption("hypothesis_seed", None) is None:
        core.global_force_seed = seed


def parse_steps(spec: str | None) -> set[int] | None:
    """``"3"`` -> {3}; ``"1-3"`` -> {1, 2, 3}; ``"2,4"`` -> {2, 4}; None -> None (all)."""
    if spec is None:
        return None
    steps: set[int] = set()
    try:
        for part in str(spec).split(","):
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if a > b:
                    raise ValueError
                steps.update(range(a, b + 1))
            elif part.strip():
                steps.add(int(part))
    except ValueError:
        raise pytest.UsageError(f"--step {spec}: give a step (3), a range (1-3) or a list (2,4)") from None
    if not steps or min(steps) < 1:
        raise pytest.UsageError(f"--step {spec}: steps are numbered from 1")
    return steps


def step_of(item) -> int | None:
    marker = item.get_closest_marker("step")
    if marker is None:
        return None
    if not marker.args or not isinstance(marker.args[0], int) or marker.args[0] < 1:
        raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.step(k) with an integer k >= 1")
    return marker.args[0]


def reproduce_command(nodeid: str | None = None) -> str:
    return f"pytest {nodeid + ' ' if nodeid else ''}--seed {_SESSION_SEED}"


def pytest_report_header(config):
    gpu = device.gpu_name() if device.has_cuda() else "none (Triton interpreter, CUDA simulator)"
    return [f"mlsys-labs: seed {_SESSION_SEED} (reproduce with --seed {_SESSION_SEED}); GPU: {gpu}"]


def points_of(item) -> float:
    marker = item.get_closest_marker("points")
    if marker is None:
        return 1.0
    if not marker.args or not isinstance(marker.args[0], (int, float)) or marker.args[0] < 0:
        raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.points(n) with n >= 0")
    return float(marker.args[0])


def lab_of(item) -> int | None:
    """The lab number from a path like labs/batch3/test_x.py (None outside labs/)."""
    parts = item.path.parts
    for i, part in enumerate(parts[:-1]):
        if part == "labs" and parts[i + 1].startswith("batch"):
            try:
                return int(parts[i + 1][len("batch"):])
            except ValueError:
                return None
    return None


def _timeout_of(item, config) -> float | None:
    marker = item.get_closest_marker("timeout")
    if marker and marker.args:
        return float(marker.args[0])
    value = config.getoption("timeout", None) if config.pluginmanager.hasplugin("timeout") else None
    return float(value) if value else None


_LOG_FILES: dict[str, object] = {}


def _log(config, event: dict, *, sync: bool = True) -> None:
    """Append one event line; ``sync`` forces it to disk (a crash right after loses nothing)."""
    path = config.getoption("--grade-log")
    if not path:
        return
    f = _LOG_FILES.get(path)
    if f is None:
        f = _LOG_FILES[path] = open(path, "a")
    f.write(json.dumps(event) + "\n")
    f.flush()
    if sync:
        os.fsync(f.fileno())


_RUNNING: list = [None]   # node id of the test running now (checks are logged against it)


def _record_check(record: dict) -> None:
    if _CONFIG and _RUNNING[0] is not None:
        _log(_CONFIG[0], {"event": "check", "nodeid": _RUNNING[0], **record}, sync=False)


def _assert_is_in_a_lab_test() -> bool:
    """Is the assert that called the hook in a lab's test code (labs/batchN/)?"""
    import sys

    frame = sys._getframe(2)
    while frame is not None and ("_pytest" in frame.f_code.co_filename or "pluggy" in frame.f_code.co_filename):
        frame = frame.f_back
    return frame is not None and f"{os.sep}labs{os.sep}batch" in frame.f_code.co_filename


_ASSERTS_SEEN: set = set()   # (node id, line, source): the grader compares the set of asserts passed


def pytest_assertion_pass(item, lineno, orig, expl):
    """A passing plain ``assert`` (only called with ``enable_assertion_pass_hook``); each
    assert is logged once per test."""
    if not item.config.getoption("--grade-record") or not _assert_is_in_a_lab_test():
        return  # asserts inside pytest plugins (anyio's, say) pass or not by timing
    key = (item.nodeid, lineno, orig[:200])
    if key not in _ASSERTS_SEEN:
        _ASSERTS_SEEN.add(key)
        _record_check({"kind": "assert", "line": lineno, "source": orig[:200]})


def pytest_collection_modifyitems(session, config, items):
    skip_file = config.getoption("--grade-skip")
    if skip_file and os.path.exists(skip_file):
        done = set(json.loads(open(skip_file).read()))
        keep = [it for it in items if it.nodeid not in done]
        config.hook.pytest_deselected(items=[it for it in items if it.nodeid in done])
        items[:] = keep
    steps = parse_steps(config.getoption("--step"))
    if steps is not None:
        drop = [it for it in items if step_of(it) not in steps]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [it for it in items if step_of(it) in steps]
    require = config.getoption("--require-gpu")
    if not device.has_cuda():
        for item in items:
            if item.get_closest_marker("gpu"):
                if require:
                    item.user_properties.append(("require_gpu_missing", True))
                else:
                    item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (none here)"))


def pytest_collection_finish(session):
    """Log the tests that will run — after every deselection (``-k``, ``-m``, ``--step``)."""
    config, items = session.config, session.items
    for it in items:
        if lab_of(it) is not None:
            SESSION_COLLECTED.setdefault(lab_of(it), set()).add(it.nodeid)
    _log(config, {"event": "collected", "items": [
        {"nodeid": it.nodeid, "points": points_of(it), "hidden": it.get_closest_marker("hidden") is not None,
         "step": step_of(it),
         "gpu": it.get_closest_marker("gpu") is not None, "timeout": _timeout_of(it, config), "lab": lab_of(it)}
        for it in items]})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture is set up (a skipped test must not launch its module's processes)."""
    unneeded = item.config.getoption("--grade-unneeded")
    if unneeded:
        try:
            skip = item.nodeid in set(json.loads(open(unneeded).read()))
        except (OSError, ValueError):
            skip = False
        if skip:
            pytest.skip("not needed: the submission failed this test")
    if dict(item.user_properties).get("require_gpu_missing"):
        pytest.fail("--require-gpu was given but no CUDA GPU is present", pytrace=False)


_CONFIG: list = []


def pytest_runtest_logstart(nodeid, location):
    """Tell the grader's watchdog which test is running now."""
    _RUNNING[0] = nodeid
    if _CONFIG:
        _log(_CONFIG[0], {"event": "start", "nodeid": nodeid, "time": time.time()})


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _CONFIG[:] = [session.config]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.mlsys_points = points_of(item)
    report.mlsys_lab = lab_of(item)
    if report.failed:
        note = (f"mlsys-labs: session seed {_SESSION_SEED} (this test's seed is derived from it); "
                f"reproduce with: {reproduce_command(item.nodeid)}")
        if hasattr(report.longrepr, "addsection"):
            report.longrepr.addsection("seed", note)
        else:
            report.longrepr = f"{report.longrepr}\n{note}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The seed once more under the summary, where ``-q`` still shows it."""
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.write_line(f"mlsys-labs: seed {_SESSION_SEED}; reproduce the failures with "
                                    f"--seed {_SESSION_SEED} (e.g. {reproduce_command()})")


def pytest_runtest_logreport(report):
    """Fold setup/call/teardown into one verdict per test; log it once teardown is done."""
    entry = SESSION_RESULTS.setdefault(report.nodeid, {
        "outcome": "passed", "points": getattr(report, "mlsys_points", 1.0),
        "lab": getattr(report, "mlsys_lab", None), "output": "", "duration": 0.0})
    entry["duration"] += report.duration
    if report.failed:
        entry["outcome"] = "failed"
        entry["output"] += f"[{report.when}] {report.longreprtext}\n"
        if report.capstdout:
            entry["output"] += "--- captured stdout ---\n" + report.capstdout[-4000:]
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        entry["output"] += f"skipped: {reason}\n"
    if report.when == "teardown" and _CONFIG:
        _RUNNING[0] = None
        _log(_CONFIG[0], {"event": "end", "nodeid": report.nodeid, **entry})


@pytest.fixture
def seed(request) -> int:
    """This test's seed: derived from the session seed and the test's id."""
    s = derive_seed(_SESSION_SEED, request.node.nodeid)
    seed_everything(s)
    return s


@pytest.fixture
def rng(seed):
    """A numpy Generator seeded for this test (fresh inputs each session)."""
    return make_rng(seed)
