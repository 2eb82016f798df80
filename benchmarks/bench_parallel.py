"""Parallel speed-up of `drivestack bench`: the shipped suites' sweep variants on 1, then 2 workers.

Oracle perception and the IDM planner, logs written as `drivestack bench` writes them. Prints
the wall time per worker count, the speed-up over the first, and whether every worker count gave
the same rows (wall-clock fields aside). --duration-cap caps every scenario's duration to keep the
benchmark short; the output says so.

    python benchmarks/bench_parallel.py [--suites highway urban] [--workers 1,2] [--duration-cap 12]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

from scenarios.bench import PoolOptions, Progress, comparable, make_tasks, run_tasks
from scenarios.loader import load_cases


def cap_durations(cases: list, cap: float | None) -> list:
    if cap is None:
        return cases
    return [dataclasses.replace(c, scenario=c.scenario.model_copy(update={"duration": min(c.scenario.duration, cap)}))
            for c in cases]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suites", nargs="+", default=["highway", "urban"], help="suites, folders or files")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts, run in this order")
    ap.add_argument("--duration-cap", type=float, default=None, help="[s] cap on every scenario's duration")
    ap.add_argument("--timeout", type=float, default=600.0, help="[s] wall clock per run")
    args = ap.parse_args()

    cases, errors = load_cases(args.suites, sweep=True)
    if errors:
        sys.exit("\n".join(str(e) for e in errors))
    full = sum(c.scenario.duration for c in cases)
    cases = cap_durations(cases, args.duration_cap)
    counts = [int(w) for w in args.workers.split(",")]
    print(f"{len(cases)} sweep variants from {', '.join(args.suites)}; oracle perception, idm planner; "
          f"{os.cpu_count()} CPUs")
    if args.duration_cap is None:
        print(f"full scenario durations: {full:,.0f} simulated s in all")
    else:
        capped = sum(c.scenario.duration for c in cases)
        print(f"durations capped at {args.duration_cap:g} s: {capped:,.0f} simulated s in all "
              f"(uncapped {full:,.0f} s)")

    results = []
    for workers in counts:
        with tempfile.TemporaryDirectory(prefix="bench-parallel-") as out:
            tasks = make_tasks(cases, log_dir=out)
            start = time.perf_counter()
            run = run_tasks(tasks, PoolOptions(workers=workers, timeout=args.timeout),
                            Progress(len(tasks), label=f"{workers} worker{'s' if workers != 1 else ''}"))
            wall = time.perf_counter() - start
        if run.interrupted:
            sys.exit("interrupted")
        errors = sum(1 for r in run.rows if r["error"])
        results.append((workers, wall, run.rows, errors))

    print(f"{'workers':>7}  {'wall [s]':>9}  {'runs/s':>7}  {'speed-up':>8}  errors")
    base = results[0][1]
    for workers, wall, rows, errors in results:
        print(f"{workers:>7}  {wall:>9.1f}  {len(rows) / wall:>7.2f}  {base / wall:>8.2f}  {errors}")
    same = all([comparable(r) for r in rows] == [comparable(r) for r in results[0][2]] for _, _, rows, _ in results)
    print(f"rows identical across worker counts (wall-clock fields aside): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
