"""Latency of the whole learned perception per stack cycle, stage by stage.

    python benchmarks/bench_perception.py [--scenario FILE] [--cycles 100] [--torch-threads 1]

A scenario (default: the shipped `cruise_dense`, a four-lane highway in dense
traffic) runs in closed loop with learned perception; every cycle's lane CNN, object CNN, lidar objects, fusion,
tracking and light reading are timed inside LearnedPerception.perceive.
Rendering the sensors is the simulator's work and is reported apart. The
first 5 cycles (model warm-up) are left out.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from scenarios.loader import load_cases, shipped_suites_dir
from scenarios.runs import ego_route, make_stack
from sim.runner import ClosedLoop
from sim.world import World

STAGES = ("lanes", "detector", "lidar", "lidar_own", "fusion", "tracking", "lights", "total", "render")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(shipped_suites_dir() / "highway" / "cruise_dense.yaml"))
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--torch-threads", type=int, default=1, help="threads of the CNNs (LearnedConfig.torch_threads)")
    args = parser.parse_args()
    cases, errors = load_cases([args.scenario])
    if errors:
        raise SystemExit(str(errors[0]))
    case = cases[0]
    world = World(case.scenario, case.scenario.seed)
    stack = make_stack(world, "lattice", "learned")
    torch.set_num_threads(args.torch_threads)  # after the perception set its own
    loop = ClosedLoop(world, stack, ego_route(world), duration=(args.cycles + 5) / case.scenario.stack_rate)
    ms: dict[str, list[float]] = {k: [] for k in STAGES}
    objects = []
    start = time.perf_counter()
    try:
        while not loop.done:
            cycles = loop.cycles
            loop.step()
            if loop.cycles > cycles and loop.cycles > 5:
                for k in STAGES:
                    ms[k].append(stack.perception.last.ms.get(k, np.nan))
                objects.append(len(loop.perception.objects))
    finally:
        stack.perception.close()
    wall = time.perf_counter() - start
    print(f"{case.scenario.name}: {len(objects)} cycles, {np.mean(objects):.1f} tracked objects per cycle, "
          f"torch threads {args.torch_threads}, {wall:.1f} s wall for {world.t:.1f} simulated s")
    print(f"{'stage':<10} {'median ms':>10} {'p90 ms':>8}")
    for k in STAGES:
        v = np.array(ms[k])
        note = {"render": "  (simulator, not perception)", "lidar": "  (waiting for the lidar thread after the CNNs)",
                "lidar_own": "  (the lidar thread's own time, beside the CNNs)"}.get(k, "")
        print(f"{k:<10} {np.nanmedian(v):>10.2f} {np.nanpercentile(v, 90):>8.2f}{note}")


if __name__ == "__main__":
    main()
