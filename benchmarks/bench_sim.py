"""Simulator ticks per second: a 4-lane highway with 50 IDM+MOBIL vehicles (plus the ego, driven by IDM+MOBIL too).

Physics only (no sensors, no stack): every tick runs IDM and staggered MOBIL
decisions, pure-pursuit lane keeping, the bicycle model for every vehicle and
the oriented-box collision check among all actors. One core.

    python benchmarks/bench_sim.py [--vehicles 50] [--ticks 4000]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from scenarios.bench import highway_world  # noqa: E402
from sim import traffic as tk  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=50)
    ap.add_argument("--ticks", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    t0 = time.perf_counter()
    world = highway_world(args.vehicles)
    world.step()  # compiles (or loads the cache)
    print(f"first tick (JIT compile or cache load): {time.perf_counter() - t0:.2f} s")
    rates = []
    for _ in range(args.repeats):
        world = highway_world(args.vehicles)
        start = time.perf_counter()
        for _ in range(args.ticks):
            world.step()
        rates.append(args.ticks / (time.perf_counter() - start))
    active = int(world.I[:, tk.ACTIVE].sum())
    lane_changes = int(np.sum(world.F[:, tk.LC_T0] > 0))
    print(f"vehicles: {args.vehicles} + ego on a 4-lane highway, dt {world.dt} s, collisions checked every tick")
    print(f"simulated {args.ticks * world.dt:.0f} s per repeat; still on the road at the end: {active}; "
          f"vehicles that changed lane: {lane_changes}; collisions: {len(world.collisions)}")
    print(f"ticks/s (median of {args.repeats}): {np.median(rates):,.0f}")


if __name__ == "__main__":
    main()
