"""The spinning lidar: beam layout, and one sweep as ego-frame points with labels.

Beams are evenly spaced in elevation from fov_down to fov_up (beam 0 lowest);
azimuth step j looks at 2 pi j / azimuth_steps counter-clockwise from the
sensor's x axis. The whole sweep is taken at one instant: ego and actor
motion within a sweep is not modelled (no rolling-shutter skew).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.sensors import kernels
from sim.sensors.camera import mount_rotation, pose_matrix
from sim.sensors.config import LidarConfig
from sim.sensors.frames import LidarFrame
from sim.sensors.shading import lidar_returns
from sim.types import frozen_array


@dataclass(frozen=True, eq=False)
class LidarModel:
    config: LidarConfig
    elevation: np.ndarray  # (B,) [rad] ascending
    dirs: np.ndarray  # (B, A, 3) unit ray directions in the sensor frame
    dirs_ego: np.ndarray  # (B * A, 3) the same in the ego frame
    T_ego_lidar: np.ndarray  # (4, 4)

    @classmethod
    def from_config(cls, cfg: LidarConfig) -> LidarModel:
        el = np.radians(np.linspace(cfg.fov_down_deg, cfg.fov_up_deg, cfg.beams)) if cfg.beams > 1 else \
            np.radians([0.5 * (cfg.fov_down_deg + cfg.fov_up_deg)])
        az = 2.0 * math.pi * np.arange(cfg.azimuth_steps) / cfg.azimuth_steps
        E, A = np.meshgrid(el, az, indexing="ij")
        dirs = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1)
        m = cfg.mount
        T = pose_matrix(mount_rotation(m), (m.x, m.y, m.z))
        return cls(cfg, frozen_array(el), frozen_array(dirs), frozen_array(dirs.reshape(-1, 3) @ T[:3, :3].T),
                   frozen_array(T))


def lidar_pose(model: LidarModel, snap) -> tuple[np.ndarray, np.ndarray]:
    """Sensor-to-world rotation and the sensor origin in the world at the instant `snap`."""
    T = model.T_ego_lidar
    return snap.R_we @ T[:3, :3], snap.p_we + snap.R_we @ T[:3, 3]


def lidar_rays(model: LidarModel, snap, out: np.ndarray | None = None) -> np.ndarray:
    """(B * A, 6) float32 world rays of the sweep, beam-major."""
    R_wl, o = lidar_pose(model, snap)
    rays = np.empty((model.dirs_ego.shape[0], 6), dtype=np.float32) if out is None else out
    kernels.world_rays(model.dirs.reshape(-1, 3), R_wl, o, rays)
    return rays


def render_lidar(rig, snap, model: LidarModel, rng: np.random.Generator | None = None, with_labels: bool = True,
                 hits: tuple[np.ndarray, np.ndarray] | None = None, rays: np.ndarray | None = None) -> LidarFrame:
    """One sweep of `model` on the rig at the instant `snap`; noise and dropout draw from rng
    (None: no noise, no dropout). A caller that cast the static rays already (rig.render)
    passes them and their hits in."""
    cfg = model.config
    B, A = model.dirs.shape[:2]
    T = model.T_ego_lidar
    R_wl, o = lidar_pose(model, snap)
    if rays is None:
        rays = lidar_rays(model, snap)
    t_static, prim = rig.cast(rays) if hits is None else hits
    rng_dyn = np.full((B, A), np.inf, dtype=np.float32)
    tri_dyn = np.full((B, A), -1, dtype=np.int32)
    actors = rig.actors
    reach = cfg.max_range + 20.0
    use = snap.active & (np.hypot(snap.boxes[:, 0] - o[0], snap.boxes[:, 1] - o[1]) < reach)
    if len(snap.tris):
        kernels.lidar_actors(snap.tris, use[actors.mesh.owner], R_wl.T.copy(), o, model.elevation, A, model.dirs,
                             rng_dyn, tri_dyn)
    n = B * A
    points = np.empty((n, 4), dtype=np.float32)
    label = np.empty(n, dtype=np.uint8)
    instance = np.empty(n, dtype=np.int32)
    ray_index = np.empty(n, dtype=np.int64)
    s, d = rig.static_attrs, actors.mesh
    noisy = rng is not None  # without noise the kernel gets a generator it never draws from
    m = lidar_returns(rays, t_static, prim, rng_dyn.ravel(), tri_dyn.ravel(), model.dirs_ego, T[:3, 3].copy(),
                      rig.static_normals, s.reflectivity, s.semantic, snap.normals, d.reflectivity, d.semantic,
                      d.instance, cfg.min_range, cfg.max_range, rng if noisy else np.random.default_rng(0),
                      cfg.range_noise if noisy else 0.0, cfg.dropout if noisy else 0.0,
                      cfg.intensity_noise if noisy else 0.0, points, label, instance, ray_index)
    idx = ray_index[:m]
    return LidarFrame(points=points[:m], beam=idx // A, azimuth=idx % A, t=snap.t, T_ego_lidar=T,
                      label=label[:m] if with_labels else None, instance=instance[:m] if with_labels else None)
