"""The sensor rig: the scene of one world, and the camera and lidar that see it.

Built once per scenario: the static scene (road, paint, curbs, lights, props)
goes into one Open3D RaycastingScene (Embree BVH), and every actor gets a
mesh. Per frame, `snapshot(world)` poses the actor meshes once for all
sensors; `render` (or `render_camera` / `render_lidar`) casts the static
scene with Open3D and the actors with the Numba kernels of
sim.sensors.kernels and keeps the nearer hit per ray (docs/sensors.md says
why the actors are not a second Open3D scene), on two cores with threads >= 2;
`capture` adds the sensors' effects and faults.

Randomness: the look of the scene (style, colours, props) and the sensor noise
come from np.random.SeedSequence(world.seed, spawn_key=(SENSOR_STREAM,)),
children 0 (scene), 1 (actors) and 2 (noise); the world itself uses children
0 and 1 of SeedSequence(world.seed), so rendering never changes the traffic.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from sim.sensors import camera as camera_stages
from sim.sensors import kernels
from sim.sensors import materials as mt
from sim.sensors.actor_meshes import ActorMeshes, build_actor_meshes
from sim.sensors.cast_helper import CastHelper
from sim.sensors.camera import CameraModel
from sim.sensors.config import SensorConfig
from sim.sensors.faults import RigFaultState, apply_camera_faults, apply_lidar_faults, exposure_gain
from sim.sensors.frames import CameraFrame, LidarFrame
from sim.sensors.lidar import LidarModel, lidar_rays, render_lidar
from sim.sensors.lighting import make_lighting
from sim.sensors.road_scene import SceneStyle, StaticScene, build_static_scene
from sim.sensors.shading import GROUND_CLASSES
from sim.sensors.shadow_map import build_shadow_map, empty_shadow_map
from sim.types import frozen_array

SENSOR_STREAM = 2  # spawn key of the sensors' seed sequence under the world seed


def _balanced(share: float, waited: float, tolerance: float, lo: float, hi: float) -> float:
    """The share of work given to a helper, moved by 0.02 towards the side that finished first:
    down if this thread waited for the helper longer than `tolerance` [s], up otherwise."""
    return min(hi, max(lo, share + (-0.02 if waited > tolerance else 0.02)))


def sensor_seeds(seed: int) -> list[np.random.SeedSequence]:
    """Seed sequences for the scene, the actors' looks and the sensor noise of a world seed."""
    return np.random.SeedSequence(int(seed), spawn_key=(SENSOR_STREAM,)).spawn(3)


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The moving part of the scene at one instant, posed once for every sensor.
    Its arrays are made here and marked read-only (not copied)."""

    t: float  # [s]
    R_we: np.ndarray  # (3, 3) ego to world rotation
    p_we: np.ndarray  # (3,) [m] ego origin (rear axle, on the ground) in the world
    boxes: np.ndarray  # (A, 3) actor box centre x, y [m], yaw [rad], world frame
    active: np.ndarray  # (A,) bool
    cls: np.ndarray  # (A,) int, sim.types.CLASS_NAMES
    tris: np.ndarray  # (T, 3, 3) [m] actor triangles in the world
    normals: np.ndarray  # (T, 3) their unit normals
    light_codes: np.ndarray  # (L,) 0 green, 1 yellow, 2 red per road light (at least one entry)


class SensorRig:
    def __init__(self, world, config: SensorConfig | None = None, style: SceneStyle | None = None):
        self.config = config or SensorConfig()
        self.threads = self.config.threads  # see SensorConfig.threads
        self._pool: ThreadPoolExecutor | None = None  # draws the camera beside the lidar (render)
        self._cast_helper: CastHelper | None = None  # casts part of the rays in a second process (render)
        # per sensor combination (camera, lidar): the share of the rays the helper casts and of the image rows
        # the worker shades, each balanced frame by frame
        self._helper_share: dict[tuple[bool, bool], float] = {}
        self._row_share: dict[tuple[bool, bool], float] = {}
        seeds = sensor_seeds(world.seed)
        scene_rng, look_rng = np.random.default_rng(seeds[0]), np.random.default_rng(seeds[1])
        self.noise_rng = np.random.default_rng(seeds[2])
        self.static: StaticScene = build_static_scene(world.road, scene_rng, style)
        length, width = world.actor_sizes()
        self.classes = frozen_array(world.actor_classes(), np.int64)  # (A,) sim.types.CLASS_NAMES
        self.actors: ActorMeshes = build_actor_meshes(self.classes, length, width, look_rng)
        self.lighting = make_lighting(self.config.lighting, self.config.sun_azimuth_deg)
        mesh = self.static.mesh
        self.static_attrs = mesh
        self.static_normals = np.ascontiguousarray(mesh.normals(), dtype=np.float32)
        self.ground = np.isin(mesh.semantic, GROUND_CLASSES)
        paint = self.static.style.paint
        self.paint_albedo = np.array([mt.WHITE_PAINT.albedo, mt.YELLOW_PAINT.albedo]) * paint  # (2, 3) thin paint
        self.head_light = np.array([h.light for h in self.static.heads] or [0], dtype=np.int64)
        self._local = np.ascontiguousarray(self.actors.mesh.triangle_corners())
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(o3d.core.Tensor.from_numpy(np.ascontiguousarray(mesh.vertices, dtype=np.float32)),
                                  o3d.core.Tensor.from_numpy(np.ascontiguousarray(mesh.triangles, dtype=np.uint32)))
        lanes_xy = np.concatenate([ln.xy for ln in world.road.lanes])
        self.shadow_map = build_shadow_map(self._scene, lanes_xy, self.lighting.sun_dir) \
            if self.config.camera is not None else empty_shadow_map()
        cfg = self.config
        self.camera = CameraModel.from_config(cfg.camera) if cfg.camera is not None else None
        self.lidar = LidarModel.from_config(cfg.lidar) if cfg.lidar is not None else None

    # ---- per frame ------------------------------------------------------------------

    def cast(self, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Static hits of world rays (N, 6) float32: t (N,) float32 (inf: none), triangle (N,) uint32."""
        out = self._scene.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=1)
        return out["t_hit"].numpy(), out["primitive_ids"].numpy()

    def snapshot(self, world) -> Snapshot:
        """The world's current instant."""
        ego = world.ego_state()
        codes = world.light_codes() if world.road.lights else np.zeros(1, dtype=np.int8)
        return self.snapshot_at(float(world.t), ego.x, ego.y, ego.yaw, world.actor_table()[:, :3],
                                world.actor_active(), codes)

    def snapshot_from_log(self, log, k: int) -> Snapshot:
        """Step k of a recorded run (sim.log.RunLog) of this rig's world."""
        codes = log.light_states[k] if log.light_states.shape[1] else np.zeros(1, dtype=np.int8)
        x, y, yaw = log.ego[k, :3]
        return self.snapshot_at(float(log.t[k]), x, y, yaw, log.actors[k, :, :3], log.actor_active[k], codes)

    def snapshot_at(self, t: float, x: float, y: float, yaw: float, boxes: np.ndarray, active: np.ndarray,
                    light_codes: np.ndarray) -> Snapshot:
        """Pose the actors: ego rear axle at (x, y) [m] heading yaw [rad]; boxes (A, 3) actor
        box centres and yaws; active (A,) bool; light_codes (L,) 0 green, 1 yellow, 2 red."""
        c, s = np.cos(yaw), np.sin(yaw)
        boxes = np.ascontiguousarray(boxes, dtype=float)
        tris = np.empty_like(self._local)
        normals = np.empty((len(tris), 3), dtype=np.float32)
        if len(tris):
            kernels.pose_triangles(self._local, self.actors.mesh.owner, boxes, tris, normals)
        arrays = {"R_we": np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), "p_we": np.array([x, y, 0.0]),
                  "boxes": boxes.copy(), "active": np.array(active, dtype=bool), "cls": self.classes, "tris": tris,
                  "normals": normals, "light_codes": np.array(light_codes, dtype=np.int64)}
        for a in arrays.values():
            a.flags.writeable = False
        return Snapshot(t=float(t), **arrays)

    def render_camera(self, snap: Snapshot, exposure: float | None = None, with_labels: bool = True) -> CameraFrame:
        """The camera alone (see `render`)."""
        if self.camera is None:
            raise ValueError("this rig has no camera (SensorConfig.camera is None)")
        return self.render(snap, exposure, with_labels=with_labels, lidar=False)[0]

    def render_lidar(self, snap: Snapshot, noise: bool = True, with_labels: bool = True) -> LidarFrame:
        """The lidar alone (see `render`)."""
        if self.lidar is None:
            raise ValueError("this rig has no lidar (SensorConfig.lidar is None)")
        return self.render(snap, noise=noise, with_labels=with_labels, camera=False)[1]

    def render(self, snap: Snapshot, exposure: float | None = None, noise: bool = True, with_labels: bool = True,
               camera: bool = True, lidar: bool = True) -> tuple[CameraFrame | None, LidarFrame | None]:
        """The rig's sensors (those of `camera` and `lidar` it has) at the instant `snap`.

        The camera's and the lidar's static rays are cast together. With two
        or more threads, a helper process (cast_helper.py) casts part of them
        while this process casts the rest; then a worker thread draws the
        actors into the camera and shades the top rows while this thread
        finishes the lidar sweep and shades the other rows (Numba kernels run
        without the GIL). Both splits are balanced frame by frame. Exposure
        defaults to the camera's; noise=False turns the lidar's noise and
        dropout off.
        """
        cam = self.camera if camera else None
        lid = self.lidar if lidar else None
        key = (cam is not None, lid is not None)
        n_cam = len(cam.dirs) if cam is not None else 0
        n = n_cam + (len(lid.dirs_ego) if lid is not None else 0)
        helper = self._helper() if self._parallel() else None
        rays = helper.rays[:n] if helper is not None else np.empty((n, 6), dtype=np.float32)
        if cam is not None:
            camera_stages.camera_rays(cam, cam.pinhole(snap.R_we, snap.p_we), rays[:n_cam])
        if lid is not None:
            lidar_rays(lid, snap, rays[n_cam:])
        if helper is not None:
            share = self._helper_share.setdefault(key, 0.6)
            k = int(round(n * (1.0 - share)))  # this process casts rays [0, k), the helper the rest
            helper.start(k, n - k)
        cp = camera_stages.prepare(self, snap, cam, rays[:n_cam]) if cam is not None else None
        if helper is not None:
            helper.t[:k], helper.prim[:k] = self.cast(rays[:k])
            t0 = time.perf_counter()
            helper.wait()
            self._helper_share[key] = _balanced(share, time.perf_counter() - t0, 2e-4, 0.2, 0.9)
            t, prim = helper.t[:n], helper.prim[:n]
        else:
            t, prim = self.cast(rays)
        gain = (cam.config.exposure if exposure is None else exposure) if cam is not None else 1.0
        hits = (t[:n_cam], prim[:n_cam])
        actors_done = top_done = None
        split = 0
        if cp is not None and self._parallel():
            # the worker draws the actors and shades the top rows while this thread finishes the lidar sweep
            # and then shades the remaining rows
            rows = self._row_share.setdefault(key, 0.7)
            split = int(round(cam.config.height * rows))
            worker = self._worker()
            actors_done = worker.submit(camera_stages.draw_actors, self, snap, cam, cp, hits)
            top_done = worker.submit(lambda: camera_stages.shade(self, snap, cp, hits, actors_done.result(), gain,
                                                                 (0, split)))
        sweep = None
        if lid is not None:
            sweep = render_lidar(self, snap, lid, self.noise_rng if noise else None, with_labels,
                                 hits=(t[n_cam:], prim[n_cam:]), rays=rays[n_cam:])
        frame = None
        if cp is not None:
            if actors_done is not None:
                img = actors_done.result()
                camera_stages.shade(self, snap, cp, hits, img, gain, (split, cam.config.height))
                t0 = time.perf_counter()
                top_done.result()
                self._row_share[key] = _balanced(rows, time.perf_counter() - t0, 1e-4, 0.05, 0.95)
            else:
                img = camera_stages.draw(self, snap, cam, cp, hits, gain)
            frame = camera_stages.finish(self, snap, cam, cp, img, with_labels)
        return frame, sweep

    def _parallel(self) -> bool:
        return (self.threads if self.threads > 0 else (os.cpu_count() or 1)) >= 2

    def _helper(self) -> CastHelper:
        if self._cast_helper is None:
            n_rays = (len(self.camera.dirs) if self.camera is not None else 0) + \
                (len(self.lidar.dirs_ego) if self.lidar is not None else 0)
            mesh = self.static.mesh
            self._cast_helper = CastHelper(mesh.vertices, mesh.triangles, n_rays)
        return self._cast_helper

    def _worker(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sensor-draw")
        return self._pool

    def close(self) -> None:
        """Stop the drawing thread and the ray-casting helper (a later render starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._cast_helper is not None:
            self._cast_helper.close()
            self._cast_helper = None

    def capture(self, world, state: RigFaultState | None = None
                ) -> tuple[CameraFrame | None, LidarFrame | None, RigFaultState]:
        """Every sensor at the world's current instant, with its effects and faults (sim.sensors.faults)."""
        state = state or RigFaultState()
        snap = self.snapshot(world)
        gain = exposure_gain(self.camera.config, snap.t) if self.camera is not None else None
        cam, lidar = self.render(snap, exposure=gain)
        cam_state, lidar_state = state.camera, state.lidar
        if cam is not None:
            cam, cam_state = apply_camera_faults(cam, cam_state, self.camera.config, self.noise_rng)
        if lidar is not None:
            lidar, lidar_state = apply_lidar_faults(lidar, lidar_state, self.lidar.config)
        return cam, lidar, RigFaultState(cam_state, lidar_state)
