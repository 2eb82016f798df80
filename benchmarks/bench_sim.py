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

from scenarios.schema import Scenario  # noqa: E402
from sim import traffic as tk  # noqa: E402
from sim.world import World  # noqa: E402


def highway_world(vehicles: int, seed: int = 0) -> World:
    scn = Scenario.model_validate({
        "name": "bench_highway",
        "duration": 600,
        "road": {"preset": "highway", "params": {"num_lanes": 4, "length": 10000}},
        "ego": {"lane": "lane_1", "s": 200, "speed": 25, "goal": {"lane": "lane_1", "s": 9900}},
        "traffic": {"count": vehicles, "s_range": [0, 2500], "speed_range": [20, 32], "min_gap": 10},
    })
    world = World(scn, seed)
    # the ego joins the traffic as one more IDM+MOBIL driver: no stack runs here
    world.I[0, tk.MODE], world.I[0, tk.MOBIL] = tk.LANE_FOLLOW, 1
    world.F[0, [tk.V0, tk.TGAP, tk.AMAX, tk.BCOMF, tk.S0, tk.DELTA]] = 28.0, 1.5, 1.5, 2.0, 2.5, 4.0
    world.F[0, [tk.POLITE, tk.LC_THRESH, tk.BSAFE]] = 0.3, 0.2, 4.0
    return world


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
