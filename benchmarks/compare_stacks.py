"""Closed-loop A/B of two stack settings over scenario sweeps: the learned predictor against the
baseline, attention on against off, learned perception against oracle.

Each setting runs every sweep variant of the given suites or scenario files (`drivestack bench
--sweep`); the table gives, per scenario file, the mean composite score over its variants, how
many variants scored higher, equal and lower under B than under A, and the at-fault collisions;
then each suite's mean. Rows are paired by variant, so "higher" compares the same world twice.

    python benchmarks/compare_stacks.py highway urban --a predictor=baseline --b predictor=learned
    python benchmarks/compare_stacks.py scenarios/suites/highway/cut_in_close.yaml --b attention=on
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from scenarios.bench import PoolOptions, Progress, make_tasks, run_tasks
from scenarios.loader import load_cases

SETTINGS = {"perception": str, "predictor": str, "attention": lambda v: v == "on", "planner": str}
DEFAULTS = {"perception": "oracle", "predictor": "baseline", "attention": False, "planner": "lattice"}


def parse_setting(text: str) -> dict:
    """'predictor=learned,attention=on' -> the make_tasks keyword arguments, defaults filled in."""
    out = dict(DEFAULTS)
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in SETTINGS or not value:
            raise SystemExit(f"setting '{part}': expected KEY=VALUE with KEY one of {sorted(SETTINGS)}")
        out[key] = SETTINGS[key](value)
    return out


def run_setting(cases: list, setting: dict, workers: int, timeout: float, label: str) -> list[dict]:
    tasks = make_tasks(cases, seed=None, planner=setting["planner"], perception=setting["perception"],
                       predictor=setting["predictor"], attention=setting["attention"])
    return run_tasks(tasks, PoolOptions(workers=workers, timeout=timeout), Progress(len(tasks), label=label)).rows


def at_fault(row: dict) -> int:
    return int(row.get("metrics", {}).get("at_fault_collisions", 0) or 0)


def failed_metrics(row: dict) -> list[str]:
    """The names of the criteria a run failed, each once, in the order they first failed."""
    return list(dict.fromkeys(f["metric"] for f in row.get("failures") or ()))


def paired_interval(a: list[float], b: list[float], seed: int = 0, draws: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of mean(b - a) over paired runs (variants resampled with replacement,
    seeded): an interval that holds 0 says the suite cannot tell the two settings apart."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if diff.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, (draws, diff.size))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def table(cases: list, rows_a: list[dict], rows_b: list[dict]) -> tuple[list[dict], dict]:
    """Per scenario file and per suite: mean scores of A and B, paired wins, errors."""
    by_file: dict = defaultdict(lambda: {"a": [], "b": [], "higher": 0, "equal": 0, "lower": 0, "errors": 0,
                                         "collisions_a": 0, "collisions_b": 0})
    for case, ra, rb in zip(cases, rows_a, rows_b):
        key = (ra.get("suite") or Path(case.path).parent.name, Path(case.path).stem)
        entry = by_file[key]
        if ra.get("error") or rb.get("error") or ra.get("score") is None or rb.get("score") is None:
            entry["errors"] += 1
            continue
        a, b = float(ra["score"]), float(rb["score"])
        entry["a"].append(a)
        entry["b"].append(b)
        entry["higher" if b > a + 1e-9 else "lower" if b < a - 1e-9 else "equal"] += 1
        entry["collisions_a"] += at_fault(ra)
        entry["collisions_b"] += at_fault(rb)
    per_file, suites = [], defaultdict(lambda: {"a": [], "b": []})
    for (suite, name), e in sorted(by_file.items()):
        n = len(e["a"])
        per_file.append({"suite": suite, "scenario": name, "variants": n, "errors": e["errors"],
                         "mean_a": sum(e["a"]) / n if n else math.nan, "mean_b": sum(e["b"]) / n if n else math.nan,
                         "higher": e["higher"], "equal": e["equal"], "lower": e["lower"],
                         "diff_95": paired_interval(e["a"], e["b"]),
                         "collisions_a": e["collisions_a"], "collisions_b": e["collisions_b"]})
        suites[suite]["a"] += e["a"]
        suites[suite]["b"] += e["b"]
    suite_means = {s: {"variants": len(v["a"]), "mean_a": sum(v["a"]) / len(v["a"]),
                       "mean_b": sum(v["b"]) / len(v["b"]), "diff_95": paired_interval(v["a"], v["b"])}
                   for s, v in suites.items() if v["a"]}
    return per_file, suite_means


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="suites (highway, urban, all), folders or scenario files")
    ap.add_argument("--a", default="", help="setting A, e.g. predictor=baseline (defaults: %s)" % DEFAULTS)
    ap.add_argument("--b", default="predictor=learned", help="setting B")
    ap.add_argument("--no-sweep", action="store_true", help="the scenarios as written, not their sweep variants")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0, help="[s] wall clock per run")
    ap.add_argument("--json", default=None, help="write the table and every row's score here")
    args = ap.parse_args()

    cases, errors = load_cases(args.paths, sweep=not args.no_sweep)
    if errors:
        sys.exit("\n".join(str(e) for e in errors))
    a, b = parse_setting(args.a), parse_setting(args.b)
    print(f"{len(cases)} runs per setting; A: {a}; B: {b}")
    start = time.perf_counter()
    rows_a = run_setting(cases, a, args.workers, args.timeout, "A")
    rows_b = run_setting(cases, b, args.workers, args.timeout, "B")
    per_file, suite_means = table(cases, rows_a, rows_b)
    print(f"\n{'suite':<8} {'scenario':<30} {'runs':>4} {'A':>7} {'B':>7} {'B>A':>4} {'B=A':>4} {'B<A':>4} "
          f"{'coll A':>6} {'coll B':>6} {'err':>4}  B - A 95 % interval")
    for r in per_file:
        print(f"{r['suite']:<8} {r['scenario']:<30} {r['variants']:>4} {r['mean_a']:>7.2f} {r['mean_b']:>7.2f} "
              f"{r['higher']:>4} {r['equal']:>4} {r['lower']:>4} {r['collisions_a']:>6} {r['collisions_b']:>6} "
              f"{r['errors']:>4}  [{r['diff_95'][0]:+.2f}, {r['diff_95'][1]:+.2f}]")
    for s, m in sorted(suite_means.items()):
        lo, hi = m["diff_95"]
        print(f"{s:<8} {'(suite mean)':<30} {m['variants']:>4} {m['mean_a']:>7.2f} {m['mean_b']:>7.2f}   "
              f"B - A: 95 % interval [{lo:+.2f}, {hi:+.2f}] (paired bootstrap)")
    print(f"\n{time.perf_counter() - start:.0f} s wall on {args.workers} workers")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"a": a, "b": b, "scenarios": per_file, "suites": suite_means,
             "rows": [{"scenario": c.name, "a": ra.get("score"), "b": rb.get("score"), "error_a": ra.get("error"),
                       "error_b": rb.get("error"), "failed_a": failed_metrics(ra), "failed_b": failed_metrics(rb)}
                      for c, ra, rb in zip(cases, rows_a, rows_b)]}, indent=2))


if __name__ == "__main__":
    main()
