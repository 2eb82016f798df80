"""Paired comparison of two results.json files from `drivestack bench` (or `run`) over the same variants.

Per scenario family: variants, mean score under A and B, how many variants scored higher, equal and
lower under B, the at-fault collisions of each, and the worst drop. Rows pair by scenario name and seed;
a variant in one file only is listed apart.

    python benchmarks/compare_results.py runs/before/results.json runs/after/results.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def load_rows(path: str) -> dict[tuple[str, int], dict]:
    rows = json.loads(Path(path).read_text())["runs"]
    return {(r["scenario"], r["seed"]): r for r in rows}


def compare(a: dict, b: dict) -> tuple[list[tuple], list]:
    families = defaultdict(list)
    for key in sorted(set(a) & set(b)):
        ra, rb = a[key], b[key]
        families[(ra["suite"], ra["family"])].append((key[0], ra, rb))
    table = []
    for (suite, family), pairs in sorted(families.items()):
        sa = [ra["score"] for _, ra, _ in pairs]
        sb = [rb["score"] for _, _, rb in pairs]
        d = [y - x for x, y in zip(sa, sb)]
        worst = min(zip(d, (name for name, _, _ in pairs)))
        table.append((suite, family, len(pairs), sum(sa) / len(sa), sum(sb) / len(sb),
                      sum(x > 1e-9 for x in d), sum(abs(x) <= 1e-9 for x in d), sum(x < -1e-9 for x in d),
                      sum(ra["metrics"].get("at_fault_collisions", 0) or 0 for _, ra, _ in pairs),
                      sum(rb["metrics"].get("at_fault_collisions", 0) or 0 for _, _, rb in pairs), worst))
    return table, sorted(set(a) ^ set(b))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="results.json of A (before)")
    ap.add_argument("b", help="results.json of B (after)")
    args = ap.parse_args(argv)
    a, b = load_rows(args.a), load_rows(args.b)
    table, unpaired = compare(a, b)
    print("| suite | family | variants | A mean | B mean | B higher / equal / lower | collisions A / B | worst drop |")
    print("|---|---|---|---|---|---|---|---|")
    for suite, family, n, ma, mb, hi, eq, lo, ca, cb, (drop, name) in table:
        worst = f"{drop:+.1f} {name}" if drop < -1e-9 else "-"
        print(f"| {suite} | {family} | {n} | {ma:.2f} | {mb:.2f} | {hi} / {eq} / {lo} | {ca} / {cb} | {worst} |")
    n = sum(t[2] for t in table)
    ma = sum(t[2] * t[3] for t in table) / max(n, 1)
    mb = sum(t[2] * t[4] for t in table) / max(n, 1)
    print(f"| | **all** | {n} | **{ma:.2f}** | **{mb:.2f}** | {sum(t[5] for t in table)} / {sum(t[6] for t in table)}"
          f" / {sum(t[7] for t in table)} | {sum(t[8] for t in table)} / {sum(t[9] for t in table)} | |")
    if unpaired:
        print(f"unpaired (in one file only): {len(unpaired)}: " + ", ".join(f"{s} seed {k}" for s, k in unpaired[:10]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
