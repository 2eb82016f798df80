"""Sensor rendering time: one camera frame (320x160) and one lidar sweep (32x1024)
of a 4-lane highway with 30 vehicles around the ego.

Each frame counts everything a consumer waits for: posing the actors (scene
update), casting the static scene (Open3D/Embree) and the actors (Numba),
shadows, shading, and every label (semantic, instance, depth, boxes with
occlusion, lane lines, lights; lidar labels and noise). "camera" and "lidar"
render one sensor each (scene update included); "camera + lidar" is
SensorRig.render, both sensors with one Open3D call, the camera drawn on a
worker thread beside the lidar when there are two threads. The world steps
between frames so the traffic moves; stepping is not timed. Medians over
--frames frames, on one thread and on two; the process CPU time shows the
work done whatever else runs on the machine.

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
    out = {"scene update": [], "camera": [], "lidar": [], "camera + lidar": [], "(cpu time of camera + lidar)": []}
    for _ in range(frames):
        world.step()
        t0 = time.perf_counter()
        snap = rig.snapshot(world)
        t1 = time.perf_counter()
        rig.render_camera(snap)
        t2 = time.perf_counter()
        rig.render_lidar(snap)
        t3 = time.perf_counter()
        c3 = time.process_time()
        rig.render(rig.snapshot(world))
        t4 = time.perf_counter()
        c4 = time.process_time()
        out["scene update"].append(t1 - t0)
        out["camera"].append(t2 - t1 + (t1 - t0))
        out["lidar"].append(t3 - t2 + (t1 - t0))
        out["camera + lidar"].append(t4 - t3)
        out["(cpu time of camera + lidar)"].append(c4 - c3)
    return out


def compare_dynamic(rig: SensorRig, world: World, frames: int) -> dict[str, float]:
    """Median ms per frame of three ways to put the moving actors in front of both sensors'
    rays: rebuild one Open3D scene with everything; rebuild a second Open3D scene with
    the actors only and cast every ray at it too; the Numba kernels used here."""
    import open3d as o3d

    from sim.sensors import kernels
    from sim.sensors.camera import camera_rays, prepare
    from sim.sensors.lidar import lidar_pose, lidar_rays

    static_v = np.asarray(rig.static.mesh.vertices, dtype=np.float32)
    static_t = np.asarray(rig.static.mesh.triangles, dtype=np.uint32)
    n_tri = len(rig.actors.mesh)
    actor_t = np.arange(3 * n_tri, dtype=np.uint32).reshape(-1, 3)
    out = {"rebuild one scene (static + actors)": [], "second Open3D scene for the actors": [],
           "Numba kernels (this module)": []}
    for _ in range(frames):
        world.step()
        snap = rig.snapshot(world)
        cam = rig.camera
        rays = np.concatenate([camera_rays(cam, cam.pinhole(snap.R_we, snap.p_we)), lidar_rays(rig.lidar, snap)])
        actor_v = snap.tris.reshape(-1, 3).astype(np.float32)
        cp = prepare(rig, snap, cam)  # camera pose and actor culling, shared by every variant
        t0 = time.perf_counter()
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor.from_numpy(np.concatenate([static_v, actor_v])),
                            o3d.core.Tensor.from_numpy(np.concatenate([static_t, actor_t + len(static_v)])))
        scene.cast_rays(o3d.core.Tensor.from_numpy(rays[:1]), nthreads=rig.threads)  # the BVH is built lazily
        t1 = time.perf_counter()
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor.from_numpy(actor_v), o3d.core.Tensor.from_numpy(actor_t))
        hits = scene.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=rig.threads)
        np.minimum(hits["t_hit"].numpy(), 1e9)
        t2 = time.perf_counter()
        H, W = cam.config.height, cam.config.width
        kernels.raster_actors(snap.tris, rig.actors.tri_start, cp.use, cp.pin.R_wc.T.copy(), cp.pin.o, cp.pin.fx,
                              cp.pin.fy, cp.pin.cx, cp.pin.cy, W, H, cam.config.near, 1e6,
                              np.full((H, W), np.inf, np.float32), np.full((H, W), -1, np.int32),
                              np.zeros(len(snap.boxes), np.int64))
        R_wl, o = lidar_pose(rig.lidar, snap)
        B, A = rig.lidar.dirs.shape[:2]
        kernels.lidar_actors(snap.tris, snap.active[rig.actors.mesh.owner], R_wl.T.copy(), o, rig.lidar.elevation, A,
                             rig.lidar.dirs, np.full((B, A), np.inf, np.float32), np.full((B, A), -1, np.int32))
        t3 = time.perf_counter()
        for key, dt in zip(out, (t1 - t0, t2 - t1, t3 - t2)):
            out[key].append(dt)
    return {k: float(np.median(v) * 1e3) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--vehicles", type=int, default=30)
    ap.add_argument("--compare-dynamic", action="store_true", help="also time the alternatives for the actors")
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
    if args.compare_dynamic:
        rig.threads = 1
        print("actors into both sensors' rays, one thread, median ms per frame: " + ", ".join(
            f"{k} {v:.2f}" for k, v in compare_dynamic(rig, world, max(10, args.frames // 3)).items()))


if __name__ == "__main__":
    main()
