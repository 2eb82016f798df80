"""Sensor rendering time: one camera frame (320x160) and one lidar sweep (32x1024)
of a 4-lane highway with 30 vehicles around the ego.

Each frame counts everything a consumer waits for: posing the actors (scene
update), casting the static scene (Open3D/Embree) and the actors (Numba),
shadows, shading, and every label (semantic, instance, depth, boxes with
occlusion, lane lines, lights; lidar labels and noise). The world steps
between frames so the traffic moves; stepping is not timed. Medians over
--frames frames, on one thread and on two.

    python benchmarks/bench_sensors.py [--frames 60] [--vehicles 30]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from scenarios.schema import Scenario
from sim import traffic as tk
from sim.sensors import SensorConfig, SensorRig
from sim.world import World


def highway_world(vehicles: int, seed: int = 0) -> World:
    scn = Scenario.model_validate({
        "name": "bench_sensors",
        "duration": 600,
        "road": {"preset": "highway", "params": {"num_lanes": 4, "length": 3000}},
        "ego": {"lane": "lane_1", "s": 400, "speed": 25, "goal": {"lane": "lane_1", "s": 2900}},
        "traffic": {"count": vehicles, "s_range": [300, 560], "speed_range": [22, 28], "min_gap": 8,
                    "keep_clear_of_ego": 6, "truck_fraction": 0.15},
    })
    world = World(scn, seed)
    world.F[0, tk.V] = 0.0  # the ego stands still (no stack runs here); traffic drives past it
    return world


def time_frames(rig: SensorRig, world: World, frames: int) -> dict[str, list[float]]:
    out = {"scene update": [], "camera": [], "lidar": [], "camera + lidar": []}
    for _ in range(frames):
        world.step()
        t0 = time.perf_counter()
        snap = rig.snapshot(world)
        t1 = time.perf_counter()
        rig.render_camera(snap)
        t2 = time.perf_counter()
        rig.render_lidar(snap)
        t3 = time.perf_counter()
        rig.render(rig.snapshot(world))
        t4 = time.perf_counter()
        out["scene update"].append(t1 - t0)
        out["camera"].append(t2 - t1 + (t1 - t0))
        out["lidar"].append(t3 - t2 + (t1 - t0))
        out["camera + lidar"].append(t4 - t3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--vehicles", type=int, default=30)
    args = ap.parse_args()

    world = highway_world(args.vehicles)
    t0 = time.perf_counter()
    rig = SensorRig(world, SensorConfig(threads=1))
    build = time.perf_counter() - t0
    snap = rig.snapshot(world)
    rig.render_camera(snap)
    rig.render_lidar(snap)  # compiles the kernels (or loads the cache)
    cam = rig.render_camera(rig.snapshot(world))
    print(f"highway, {args.vehicles} vehicles ({len(cam.labels.objects)} boxed in view), static scene "
          f"{len(rig.static.mesh):,} triangles built in {build:.2f} s, actors {len(rig.actors.mesh):,} triangles")
    print(f"cpu cores: {os.cpu_count()}; load average before timing: {os.getloadavg()[0]:.2f}")
    for threads in (1, 2):
        rig.threads = threads
        time_frames(rig, world, 5)
        res = time_frames(rig, world, args.frames)
        line = ", ".join(f"{k} {np.median(v) * 1e3:.2f}" for k, v in res.items())
        print(f"{threads} thread{'s' if threads > 1 else ' '}: median ms over {args.frames} frames: {line}")


if __name__ == "__main__":
    main()
