"""The safety suite's table from a results.json of `drivestack bench safety --sweep`.

Per family: variants, mean score, errors, at-fault collisions, how many of them were avoidable
(scenarios/avoidability.py), the impact speed of each unavoidable one beside the counterfactual's without
braking, and how many runs entered a fallback or a degraded mode (the row's `modes`). Then every collision.

    python benchmarks/safety_table.py runs/safety/results.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def table(rows: list[dict]) -> list[str]:
    families = defaultdict(list)
    for r in rows:
        families[r["family"]].append(r)
    out = ["| family | variants | mean score | errors | at-fault collisions | avoidable | "
           "unavoidable: impact speed (without braking) [m/s] | runs with a fallback or degraded mode |",
           "|---|---|---|---|---|---|---|---|"]
    totals = [0, 0, 0, 0]
    for family, rs in sorted(families.items()):
        hit = [r for r in rs if r["metrics"].get("at_fault_collisions")]
        avoidable = [r for r in hit if r["metrics"].get("avoidable_collision") == 0.0]
        speeds = ", ".join(f"{r['metrics']['impact_speed']:.1f} ({r['metrics']['impact_speed_no_brake']:.1f})"
                           for r in hit if r["metrics"].get("avoidable_collision") == 1.0) or "-"
        errors = sum(1 for r in rs if r["error"])
        out.append(f"| {family} | {len(rs)} | {sum(r['score'] for r in rs) / len(rs):.1f} | {errors} | {len(hit)} | "
                   f"{len(avoidable)} | {speeds} | {sum(1 for r in rs if r.get('modes'))} |")
        totals = [totals[0] + len(rs), totals[1] + errors, totals[2] + len(hit), totals[3] + len(avoidable)]
    mean = sum(r["score"] for r in rows) / max(len(rows), 1)
    out.append(f"| **all** | {totals[0]} | {mean:.1f} | {totals[1]} | {totals[2]} | {totals[3]} | | |")
    return out


def collisions(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        m = r["metrics"]
        if r["error"]:
            out.append(f"error: {r['scenario']}: {r['error'].splitlines()[0]}")
        elif m.get("at_fault_collisions"):
            verdict = "avoidable" if m.get("avoidable_collision") == 0.0 else "unavoidable"
            out.append(f"{verdict}: {r['scenario']}: impact {m['impact_speed']:.1f} m/s (counterfactual braking "
                       f"{m['impact_speed_braking']:.1f}, without braking {m['impact_speed_no_brake']:.1f}), "
                       f"hazard at {m['hazard_time']:.2f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="results.json")
    rows = json.loads(Path(ap.parse_args(argv).results).read_text())["runs"]
    print("\n".join(table(rows) + [""] + collisions(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
