"""``mlsys-labs``: list the labs, run one, make a starter copy, grade, report, serve.

    mlsys-labs list
    mlsys-labs run N [demo options]          # graded tests, benchmarks, the lab's demo, figures
    mlsys-labs starter DEST
    mlsys-labs grade [--lab N] [--submission PATH] [--out results.json] [--summary results.md] [--seed S] [--reference-cache DIR]
    mlsys-labs mutants [--lab N] [--jobs J]  # do the graded tests catch each catalogued learner bug?
    mlsys-labs report
    mlsys-labs gpu-check [--quick] [--budget S] [--out DIR]   # GPU tests and labs 4–6's GPU benchmarks
    mlsys-labs serve | bench-serve [options] # lab 5's server and load generator (their own options)

Every command is an argparse sub-command whose ``func`` does the work.  Bad input gives a
one-line error and exit status 2; never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

from .catalog import LABS, get_lab
from .common.cli_args import at_least
from .common.paths import project_root, reports_dir


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _lab_number(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise CLIError(f"unknown lab {text!r}: labs are numbered 1–{max(LABS)}") from None
    if n not in LABS:
        raise CLIError(f"unknown lab {n}: labs are numbered 1–{max(LABS)}")
    return n


def _saved_grade(n: int) -> dict | None:
    path = project_root() / "reports" / "grades" / f"lab{n}.json"
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except ValueError:
        return None


def _record_grade(result, by: str, steps: str | None = None) -> None:
    """Keep this checkout's latest score of a lab (from `run` or `grade`) for `list`."""
    import time

    out = reports_dir("grades")
    payload = dict(result.gradescope(), recorded={"by": by, "at": time.strftime("%Y-%m-%d %H:%M"), "steps": steps})
    (out / f"lab{result.lab.number}.json").write_text(json.dumps(payload, indent=1))
    (out / f"lab{result.lab.number}.md").write_text("# mlsys-labs grade\n\n" + result.markdown())


def _checkout_of(folder: Path) -> Path | None:
    """The mlsys-labs checkout (a clone or a starter copy) holding ``folder``, if any."""
    for d in (folder, *folder.parents):
        if (d / "mlsys_labs" / "__init__.py").is_file() and (d / "pyproject.toml").is_file():
            return d
    return None


def _use_this_checkout(argv: list[str]) -> None:
    """Run from inside another checkout (a starter copy) with the command installed from
    this one?  Then that checkout's own package must be graded, run and listed: re-run
    the command with it first on the path, and say so loudly."""
    import os

    here = _checkout_of(Path.cwd().resolve())
    ours = Path(__file__).resolve().parents[1]
    if here is None or here == ours or os.environ.get("MLSYS_LABS_HOME") or os.environ.get("_MLSYS_REEXEC"):
        return
    print(f"mlsys-labs: warning: this command is installed from {ours}, but you are in the checkout {here}; "
          f"using {here}/mlsys_labs and its reports instead (install it there — `make install` — to silence this)",
          file=sys.stderr)
    env = dict(os.environ, _MLSYS_REEXEC="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH")])))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "mlsys_labs.cli", *argv], env)


# ------------------------------------------------------------------------------- list
def cmd_list(args) -> int:
    print(f"{'lab':<4}{'topic':<44}{'status':<12}score")
    for lab in LABS.values():
        grade = _saved_grade(lab.number)
        score = f"{grade['score']:g}/{grade['max_score']:g}" if grade else "—"
        if grade and grade.get("recorded"):
            rec = grade["recorded"]
            steps = f", steps {rec['steps']}" if rec.get("steps") else ""
            score += f"  ({rec.get('by', '?')} {rec.get('at', '')}{steps})"
        status = "ready" if lab.present else "not built"
        print(f"{lab.number:<4}{lab.topic:<44}{status:<12}{score}")
        print(f"{'':<4}readings: {lab.readings}")
        print(f"{'':<4}you build: {lab.builds}")
        print(f"{'':<4}measured against: {lab.peer}; targets: {lab.targets}")
    print(f"\nRun one with `mlsys-labs run N` (or `make lab-N`); each score is the latest `run` or `grade` "
          f"of {project_root()}.")
    return 0


# -------------------------------------------------------------------------------- run
def _print_figures(lab) -> None:
    from .common.bench import figures_for, format_figures, load_results, machine_name

    figures = figures_for(lab.number)
    if not figures:
        print(f"No figures recorded for lab {lab.number} on this machine yet.")
        return
    print(format_figures(figures, machine=machine_name(load_results()["machine"])))


def _run_graded_tests(lab, args) -> bool:
    """Lab N's graded tests (one README step's with ``--step``); True when it scores 100%."""
    from .grading.grader import grade

    steps = f" (step {args.step})" if args.step else ""
    print(f"== Lab {lab.number}: {lab.topic} — graded tests{steps}")
    result = grade(lab.number, project_root(), timeout=args.timeout, show_progress=sys.stderr.isatty(),
                   sandbox=False, pytest_args=("--step", args.step) if args.step else ())
    _record_grade(result, by="run", steps=args.step)
    for t in result.tests:
        if t.status != "passed":
            first = t.output.splitlines()[0] if t.output else "(no output)"
            print(f"  FAILED {t.name} ({t.max_score:g} pts): {first[:200]}")
    print(f"Score: {result.score:g} / {result.max_score:g} ({100 * result.fraction:.0f}%)"
          + (f"; {len(result.not_run_gpu)} GPU-only tests not run here" if result.not_run_gpu else ""))
    return result.fraction >= 1.0


def _run_benchmarks(lab) -> None:
    print(f"\n== Lab {lab.number}: benchmarks (ours against {lab.peer}, same run)")
    proc = subprocess.run([sys.executable, "-m", "pytest", *map(str, lab.benchmark_files), "--benchmark-only",
                           "-q", "--no-header", "-p", "no:cacheprovider", "--benchmark-columns=median,rounds"],
                          cwd=project_root())
    if proc.returncode not in (0, 5):
        print(f"(benchmarks exited with status {proc.returncode})")


def _run_demo(lab, demo_args: list[str]) -> bool:
    """The lab's demo with the command line's extra options; True when it exits 0."""
    print(f"\n== Lab {lab.number}: demo")
    module, func = lab.demo.split(":")
    rc = getattr(importlib.import_module(module), func)(demo_args)
    if rc:
        print(f"(demo exited with status {rc})")
    return not rc


def cmd_run(args) -> int:
    lab = get_lab(_lab_number(args.lab))
    if args.step:
        from .grading.pytest_plugin import parse_steps

        try:
            parse_steps(args.step)
        except Exception as exc:
            raise CLIError(str(exc)) from None
        args.skip_bench = args.skip_demo = True   # one step: its tests only
    if not lab.present:
        raise CLIError(f"Lab {lab.number} ({lab.topic}) has no graded tests in this checkout yet")
    ok = _run_graded_tests(lab, args) if not args.skip_tests else True
    if not args.skip_bench and lab.benchmark_files:
        _run_benchmarks(lab)
    if not args.skip_demo and lab.demo:
        ok = _run_demo(lab, args.demo_args) and ok
    elif args.demo_args:
        raise CLIError(f"unrecognised arguments: {' '.join(args.demo_args)}")
    print(f"\n== Lab {lab.number}: figures against targets")
    _print_figures(lab)
    return 0 if ok else 1


# ---------------------------------------------------------------------------- starter
def cmd_starter(args) -> int:
    from .grading.starter import write_starter

    if args.lab and args.solved_through is None:
        raise CLIError("--lab goes with --solved-through K (the steps of that lab solved, every other lab whole)")
    stats = write_starter(project_root(), Path(args.dest), solved_through=args.solved_through,
                          lab=_lab_number(args.lab) if args.lab else None)
    print(f"Starter copy written to {args.dest}: {stats['files']} files, {stats['regions']} solution regions "
          f"stubbed, {stats['hidden_tests_removed'] + stats['hidden_modules_removed']} hidden tests left out.")
    print(f"Next: cd {args.dest} && make lab-1   (fill in the NotImplementedError stubs until it says 100%)")
    return 0


# ------------------------------------------------------------------------------ grade
def cmd_grade(args) -> int:
    from .catalog import present_labs
    from .grading.grader import GradeError, grade, refused, write_outputs

    labs = [get_lab(_lab_number(args.lab))] if args.lab else present_labs()
    if not labs:
        raise CLIError("no lab has graded tests in this checkout")
    submission = Path(args.submission).resolve() if args.submission else project_root()
    if not submission.exists():
        raise CLIError(f"submission path {submission} does not exist")
    summary = Path(args.summary) if args.summary else Path(args.out).with_suffix(".md")
    for stale in (Path(args.out), summary):  # a grade stopped midway must leave no old score behind
        stale.unlink(missing_ok=True)
    results, refusals = [], []
    for lab in labs:
        try:
            r = grade(lab.number, submission, timeout=args.timeout, show_progress=sys.stderr.isatty(), seed=args.seed,
                      reference_cache=Path(args.reference_cache) if args.reference_cache else None)
        except GradeError as exc:  # refused or unimportable: a complete results file still says why
            refusals.append(exc)
            r = refused(lab.number, str(exc), submission=submission)
        print(f"Lab {lab.number}: {r.score:g} / {r.max_score:g} ({100 * r.fraction:.0f}%)", flush=True)
        results.append(r)
        if submission == project_root().resolve():
            _record_grade(r, by="grade")
    write_outputs(results, Path(args.out), summary)
    total = sum(r.score for r in results)
    maximum = sum(r.max_score for r in results)
    print(f"Total: {total:g} / {maximum:g}; wrote {args.out} and {summary}")
    if refusals:  # the results file says 0 and why; the exit status says it was not graded
        raise refusals[0]
    if args.fail_under is not None and maximum and 100 * total / maximum < args.fail_under:
        return 1
    return 0


# ---------------------------------------------------------------------------- mutants
def _run_mutants_of(n: int, args, seed: int, only: set[str] | None) -> tuple[int, int, bool]:
    """Lab N's catalogue: (killed, missed, problems found)."""
    from .grading.mutants import MIN_PUBLIC, load_catalogue, run_catalogue

    mutants, _ = load_catalogue(project_root(), n)
    print(f"== Lab {n}: {len(mutants) if not only else len(only)} mutants, seed {seed} "
          f"(reproduce: mlsys-labs mutants --lab {n} --seed {seed})", flush=True)
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(only) if only else len(mutants), desc=f"lab {n} mutants", unit="mutant", leave=False)
    report = run_catalogue(project_root(), n, seed=seed, jobs=args.jobs, only=only, test_timeout=args.timeout,
                           progress=(lambda o: bar.update(1)) if bar else None)
    if bar:
        bar.close()
    print(report.table(), flush=True)
    (reports_dir("mutants") / f"lab{n}.json").write_text(json.dumps(report.as_dict(), indent=1))
    problems = report.problems(min_public=0.0 if only else MIN_PUBLIC)
    for p in problems:
        print(f"  PROBLEM {p}")
    return len(report.killed), len(report.outcomes) - len(report.killed), bool(problems)


def cmd_mutants(args) -> int:
    import random

    from .grading.mutants import labs_with_catalogue, load_catalogue

    labs = [_lab_number(args.lab)] if args.lab else labs_with_catalogue(project_root())
    if not labs:
        raise CLIError("no lab has a mutation catalogue (labs/batchN/mutants.py) in this checkout")
    if args.list:
        for n in labs:
            for m in load_catalogue(project_root(), n)[0]:
                print(f"lab {n}  {m.name:<44}{m.file}: {m.why}")
        return 0
    only = set(filter(None, (args.only or "").split(","))) or None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    killed = missed = 0
    failed = False
    for n in labs:
        k, m, problems = _run_mutants_of(n, args, seed, only)
        killed, missed, failed = killed + k, missed + m, failed or problems
    print(f"mutants: {killed} passed, {missed} failed")   # killed = the tests caught the bug
    return 1 if failed else 0


# ------------------------------------------------------------------ report, gpu-check
def cmd_report(args) -> int:
    from .common.report import write_report

    paths = write_report()
    if not paths:
        raise CLIError("no benchmark results yet: run `make lab-N` or `pytest --benchmark-only` first")
    for p in paths:
        print(p)
    return 0


def cmd_gpu_check(args) -> int:
    from .common import gpu_check

    try:
        return gpu_check.run(quick=args.quick, budget=args.budget, out=Path(args.out) if args.out else None)
    except gpu_check.GpuCheckError as exc:
        raise CLIError(str(exc)) from None


# ------------------------------------------------------------------- serve, bench-serve
def _forward_to(target: str):
    """A sub-command that hands its whole remaining command line to ``module:function``
    (which parses it with its own parser: ``mlsys-labs serve --help`` shows the server's options)."""
    def forward(args) -> int:
        module, func = target.split(":")
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise CLIError(f"{module} is not available in this checkout ({exc})") from None
        return getattr(mod, func)(args.forwarded)
    return forward


# ------------------------------------------------------------------------------ parser
def _add_run(sub) -> None:
    r = sub.add_parser("run", help="run lab N: graded tests, benchmarks, demo, figures against targets")
    r.add_argument("lab", help="lab number, 1–7")
    r.add_argument("--skip-tests", action="store_true")
    r.add_argument("--skip-bench", action="store_true")
    r.add_argument("--skip-demo", action="store_true")
    r.add_argument("--step", metavar="STEPS", help="only the graded tests of these README steps (3, 1-3, 2,4)")
    r.add_argument("--timeout", type=at_least(1, float), default=300.0, help="seconds per test (default 300)")
    r.set_defaults(func=cmd_run, own_checkout=True, demo_args=[])   # demo_args: options the parser leaves over


def _add_starter_and_grade(sub) -> None:
    s = sub.add_parser("starter", help="write a learner's copy with the solutions stubbed out")
    s.add_argument("dest")
    s.add_argument("--solved-through", type=at_least(0), metavar="K",
                   help="keep the reference's solution for README steps 1..K (checks that steps stand alone)")
    s.add_argument("--lab", help="with --solved-through: only this lab's steps count; other labs keep the reference")
    s.set_defaults(func=cmd_starter)
    g = sub.add_parser("grade", help="grade a submission: Gradescope results.json + Markdown summary")
    g.add_argument("--lab", help="lab number (default: every lab present)")
    g.add_argument("--submission", help="folder holding the submission's mlsys_labs (default: this checkout)")
    g.add_argument("--out", default="results.json")
    g.add_argument("--summary", help="Markdown summary path (default: OUT with .md)")
    g.add_argument("--timeout", type=at_least(1, float), default=300.0, help="seconds per test (default 300)")
    g.add_argument("--fail-under", type=at_least(0, float), help="exit 1 when the total is below this percentage")
    g.add_argument("--seed", type=int, help="session seed (default: random per grade; fix it to grade a class "
                                            "against one reference run with --reference-cache)")
    g.add_argument("--reference-cache", help="folder keeping the reference's run per seed and sources")
    g.set_defaults(func=cmd_grade, own_checkout=True)


def _add_mutants(sub) -> None:
    m = sub.add_parser("mutants", help="plant each catalogued learner bug in a copy and check the graded tests catch it")
    m.add_argument("--lab", help="lab number (default: every lab with labs/batchN/mutants.py)")
    m.add_argument("--jobs", type=at_least(1), default=2, help="mutants run at once (default 2; a catalogue may cap it)")
    m.add_argument("--only", help="comma-separated entry names")
    m.add_argument("--seed", type=int, help="session seed for every run (default: random, printed)")
    m.add_argument("--timeout", type=at_least(1, float), default=300.0, help="seconds per test (default 300)")
    m.add_argument("--list", action="store_true", help="list the catalogue without running it")
    m.set_defaults(func=cmd_mutants, own_checkout=True)


def _add_gpu_check(sub) -> None:
    from .common.gpu_check import DEFAULT_BUDGET_S

    c = sub.add_parser("gpu-check", help="GPU tests (skips fail) and labs 4–6's GPU benchmarks; writes "
                                         "benchmarks/results/<gpu>.json and gpu-check-<gpu>.md; exit 3 without CUDA")
    c.add_argument("--quick", action="store_true", help="lab 4 only: a smoke test of the machine")
    c.add_argument("--budget", type=at_least(0, float), default=DEFAULT_BUDGET_S, metavar="SECONDS",
                   help=f"stop when this much time has passed (default {DEFAULT_BUDGET_S:.0f})")
    c.add_argument("--out", metavar="DIR", help="folder for the Markdown summary (default benchmarks/results)")
    c.set_defaults(func=cmd_gpu_check)


def _add_forwarding(sub, name: str, target: str, help: str) -> None:
    """``name`` takes every argument after it verbatim (no option of its own, not even -h)."""
    f = sub.add_parser(name, help=help, add_help=False, prefix_chars="\0")
    f.add_argument("forwarded", nargs=argparse.REMAINDER)
    f.set_defaults(func=_forward_to(target))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlsys-labs", description="Hands-on ML-systems labs: run, grade, report.")
    p.set_defaults(own_checkout=False)   # True: run from a starter copy, use that copy's package
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="the labs, their readings and your current scores").set_defaults(
        func=cmd_list, own_checkout=True)
    _add_run(sub)
    _add_starter_and_grade(sub)
    _add_mutants(sub)
    sub.add_parser("report", help="render benchmark results into reports/ (Markdown table, PNG plots)").set_defaults(
        func=cmd_report, own_checkout=True)
    _add_gpu_check(sub)
    _add_forwarding(sub, "serve", "mlsys_labs.serving.plumbing.server:serve_main",
                    "lab 5: start the OpenAI-compatible server on the default model")
    _add_forwarding(sub, "bench-serve", "mlsys_labs.serving.plumbing.loadgen:bench_serve_main",
                    "lab 5: load-test the server (Poisson arrivals)")
    return p


# -------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if "demo_args" not in vars(args):
            parser.error(f"unrecognised arguments: {' '.join(extra)}")
        args.demo_args = extra
    if args.own_checkout:
        _use_this_checkout(argv)
    from .grading.grader import GradeError
    from .grading.mutants import CatalogueError, HarnessError
    from .grading.starter import StarterError

    try:
        return args.func(args)
    except (CLIError, GradeError, StarterError, CatalogueError, HarnessError) as exc:
        print(f"mlsys-labs: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlsys-labs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
