"""`drivestack bench`: parallel runs, isolation of failing runs, baseline check, report.

The suite is tests/fixtures/bench: three tiny scenario files (4 runs with sweeps, 4-5 s each).
tests/fixtures/bench/planners.py registers the test planners "raise", "sleep" and "reckless";
`--planner-module` imports it in every worker.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
from pathlib import Path

import pytest

from scenarios.bench import (
    PoolOptions,
    Progress,
    add_bench_parser,
    comparable,
    compare_with_baseline,
    execute,
    make_tasks,
    run_tasks,
)
from scenarios.loader import load_cases

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
SUITE = [str(FIXTURES / "highway_mini"), str(FIXTURES / "urban_mini")]
PLANNERS = str(FIXTURES / "planners.py")


def bench(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="drivestack")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    return args.func(args)


def load_rows(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["runs"]


@pytest.fixture(scope="module")
def cases():
    found, errors = load_cases(SUITE, sweep=True)
    assert not errors
    return found


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """The suite with the normal planner on one worker: the reference for the other tests."""
    out = tmp_path_factory.mktemp("baseline")
    assert bench(*SUITE, "--sweep", "--workers", "1", "--out", str(out)) == 0
    return out


@pytest.fixture(scope="module")
def reckless(tmp_path_factory, baseline) -> tuple[Path, int, str]:
    """The suite with a planner blind to obstacles, checked against the baseline."""
    out = tmp_path_factory.mktemp("reckless")
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", stdout)
        status = bench(*SUITE, "--sweep", "--workers", "2", "--out", str(out), "--planner-module", PLANNERS,
                       "--planner", "reckless", "--baseline", str(baseline / "results.json"))
    return out, status, stdout.getvalue()


def test_one_and_two_workers_give_identical_rows_in_case_order(baseline, tmp_path, cases, capsys):
    status = bench(*SUITE, "--sweep", "--workers", "2", "--out", str(tmp_path),
                   "--baseline", str(baseline / "results.json"))
    assert status == 0
    assert "0 regressions" in capsys.readouterr().out
    one, two = load_rows(baseline), load_rows(tmp_path)
    assert [r["scenario"] for r in two] == [c.name for c in cases]
    assert [comparable(r) for r in two] == [comparable(r) for r in one]
    assert all(r["error"] is None and Path(r["log"]).is_file() for r in two)


def test_outputs_hold_every_run(baseline, cases):
    doc = json.loads((baseline / "results.json").read_text())
    assert doc["summary"]["runs"] == len(cases) and doc["bench"]["workers"] == 1
    lines = (baseline / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + len(cases)
    assert lines[0].startswith("scenario,family,suite,file,seed") and "wall_time" in lines[0]
    assert "no_at_fault_collision" in lines[0]
    assert len(list((baseline / "logs").glob("*.npz"))) == len(cases)


def test_a_raising_and_a_hanging_run_become_error_rows_and_the_rest_go_on(baseline, cases, tmp_path):
    tasks = make_tasks(cases, log_dir=tmp_path / "logs")
    tasks[1] = dataclasses.replace(tasks[1], planner="raise")
    tasks[2] = dataclasses.replace(tasks[2], planner="sleep")
    run = run_tasks(tasks, PoolOptions(workers=2, timeout=5.0, planner_modules=(PLANNERS,)))
    assert not run.interrupted
    assert [r["scenario"] for r in run.rows] == [c.name for c in cases]
    raised, hung = run.rows[1], run.rows[2]
    assert raised["error"].startswith("RuntimeError: planted planner failure")
    assert "planners.py" in raised["traceback"] and raised["score"] == 0.0
    assert hung["error"].startswith("Timeout") and hung["score"] == 0.0
    assert "in plan" in hung["traceback"]  # the stack the worker dumped where it hung
    assert set(hung) == set(raised)  # a row made by the pool has run_case's fields
    reference = load_rows(baseline)
    for k in (0, 3):
        assert comparable(run.rows[k]) == comparable(reference[k])


def test_a_nan_score_becomes_an_error_row(cases, monkeypatch):
    import scenarios.runs
    from scenarios.metrics import compute_metrics

    def nan_score(*args, **kwargs):
        return dataclasses.replace(compute_metrics(*args, **kwargs), score=float("nan"))

    monkeypatch.setattr(scenarios.runs, "compute_metrics", nan_score)
    row = execute(make_tasks(cases[-1:])[0])  # in this process, as a worker runs it
    assert row["error"].startswith("ValueError: score is not finite") and row["score"] == 0.0


def test_ctrl_c_keeps_the_finished_rows(cases, tmp_path):
    class Interrupt(Progress):
        def update(self, row):
            super().update(row)
            raise KeyboardInterrupt

    tasks = make_tasks(cases, log_dir=tmp_path / "logs")
    run = run_tasks(tasks, PoolOptions(workers=1), Interrupt(len(tasks), stream=io.StringIO()))
    assert run.interrupted
    assert len(run.rows) == 1 and run.rows[0]["scenario"] == cases[0].name


def test_baseline_catches_a_planted_safety_regression(reckless):
    _, status, stdout = reckless
    assert status == 1
    assert "stalled_ahead (seed 0)" in stdout
    assert "no_at_fault_collision 1 -> 0.5" in stdout


def test_report_is_self_contained_with_plots(reckless):
    out, _, _ = reckless
    page = (out / "report.html").read_text()
    assert page.count('aria-label="top-down') >= 2  # the failed runs drawn from their logs
    assert 'aria-label="speed and acceleration"' in page
    assert 'aria-label="score histogram"' in page and 'aria-label="score deltas"' in page
    assert 'class="regressed"' in page and "stalled_ahead" in page
    assert "http" not in page and "<script" not in page and "<link" not in page


def row(name: str, score: float, error: str | None = None, **metrics) -> dict:
    return {"scenario": name, "seed": 0, "score": score, "error": error, "metrics": metrics}


def test_compare_with_baseline_rules():
    base = [row("a", 90.0), row("b", 90.0, no_at_fault_collision=1.0), row("c", 90.0), row("gone", 50.0),
            row("d", 0.0, error="RuntimeError: x")]
    now = [row("a", 88.0), row("b", 90.0, no_at_fault_collision=0.5), row("c", 0.0, error="Timeout: y"),
           row("new", 10.0), row("d", 80.0)]
    deltas = {d.scenario: d for d in compare_with_baseline(now, base, tolerance=2.0)}
    assert not deltas["a"].regressed  # a drop of exactly the tolerance is allowed
    assert deltas["b"].reasons == ("no_at_fault_collision 1 -> 0.5",)
    assert deltas["c"].regressed and deltas["c"].reasons[0].startswith("error: Timeout")
    assert not deltas["d"].regressed and deltas["d"].delta == 80.0
    assert deltas["new"].baseline is None and deltas["gone"].score is None
    assert not deltas["new"].regressed and not deltas["gone"].regressed


def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys):
    assert bench(*SUITE, "--planner", "nope", "--out", str(tmp_path)) == 2
    assert "--planner: unknown planner 'nope'" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{\"runs\": 3}")
    assert bench(*SUITE, "--baseline", str(tmp_path / "bad.json"), "--out", str(tmp_path)) == 2
    assert "bad.json: runs: expected a results.json" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_ray_backend_gives_the_same_rows_as_local_workers(baseline, cases, tmp_path):
    pytest.importorskip("ray")
    tasks = make_tasks(cases, log_dir=tmp_path / "logs")
    run = run_tasks(tasks, PoolOptions(backend="ray", workers=2))
    assert run.backend == "ray" and not run.interrupted
    assert [comparable(r) for r in run.rows] == [comparable(r) for r in load_rows(baseline)]
