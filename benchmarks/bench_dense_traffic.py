"""Progress in dense traffic: the stack's ego against the simulator's own IDM+MOBIL driver.

    python benchmarks/bench_dense_traffic.py [--seeds 20] [--cars 50] [--duration 60] [--planner lattice]

A four-lane highway (limit 33.3 m/s) with `--cars` IDM+MOBIL cars wishing for 21 to 24 m/s, the ego
starting among them at 22 m/s in the second lane from the right. Each seed is driven twice in the same
traffic: by the stack (oracle perception) and by the simulator's IDM+MOBIL model with the desired speed
the stack aims for (the limit less the planner's 0.4 m/s margin), the ego handed to the traffic model
(World.hand_ego_to_traffic_model). Prints per seed and overall the ego's mean speed, the at-fault
collisions, and the CPU and wall time of each.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from planning.lattice_planner import LatticeConfig  # noqa: E402
from scenarios.loader import parse_scenario  # noqa: E402
from scenarios.metrics import find_collisions  # noqa: E402
from scenarios.runs import ego_route, make_stack  # noqa: E402
from sim.runner import ClosedLoop, run_closed_loop  # noqa: E402
from sim.world import World  # noqa: E402

LIMIT = 33.3  # [m/s]


def dense_highway(cars: int, duration: float):
    return parse_scenario({
        "name": "dense_four_lanes", "duration": duration,
        "road": {"preset": "highway", "params": {"num_lanes": 4, "length": 3000, "speed_limit": LIMIT}},
        "ego": {"lane": "lane_1", "s": 300, "speed": 22, "goal": {"lane": "lane_1", "s": 2950}},
        "traffic": {"count": cars, "s_range": [0, 1200], "speed_range": [21, 24], "min_gap": 10},
    }, "bench_dense_traffic")


def ego_outcome(log) -> tuple[float, int]:
    """Mean ego speed [m/s] over the run and its at-fault collisions."""
    return float(np.mean(log.ego[:, 3])), sum(c.at_fault for c in find_collisions(log))


def drive_stack(scn, seed: int, planner: str):
    world = World(scn, seed)
    log = run_closed_loop(world, make_stack(world, planner), ego_route(world), stop_at_goal=False)
    return ego_outcome(log)


def drive_traffic_model(scn, seed: int):
    world = World(scn, seed)
    world.hand_ego_to_traffic_model(v0=LIMIT - LatticeConfig().speed_margin)
    stack = make_stack(world, "idm")  # recorded but not obeyed: the traffic model drives the ego
    loop = ClosedLoop(world, stack, ego_route(world))
    while not loop.done:
        loop.step()
    return ego_outcome(loop.log())


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--cars", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="[s] per run")
    ap.add_argument("--planner", default="lattice")
    args = ap.parse_args(argv)
    scn = dense_highway(args.cars, args.duration)
    print(f"| seed | {args.planner} mean speed [m/s] | IDM+MOBIL mean speed [m/s] | collisions (stack / model) |")
    print("|---|---|---|---|")
    rows, cpu, wall = [], [0.0, 0.0], [0.0, 0.0]
    for seed in range(args.seeds):  # the two drivers interleaved, seed by seed
        (v_s, c_s), w, c = timed(lambda: drive_stack(scn, seed, args.planner))
        wall[0], cpu[0] = wall[0] + w, cpu[0] + c
        (v_m, c_m), w, c = timed(lambda: drive_traffic_model(scn, seed))
        wall[1], cpu[1] = wall[1] + w, cpu[1] + c
        rows.append((v_s, v_m, c_s, c_m))
        print(f"| {seed} | {v_s:.2f} | {v_m:.2f} | {c_s} / {c_m} |", flush=True)
    a = np.array(rows)
    print(f"| **mean** | **{a[:, 0].mean():.2f}** | **{a[:, 1].mean():.2f}** | {int(a[:, 2].sum())} / "
          f"{int(a[:, 3].sum())} |")
    print(f"stack faster on {int(np.sum(a[:, 0] >= a[:, 1]))} of {len(a)} seeds; time: stack {wall[0]:.0f} s wall "
          f"({cpu[0]:.0f} s CPU), model {wall[1]:.0f} s wall ({cpu[1]:.0f} s CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
