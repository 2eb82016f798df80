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


def render_lidar(rig, snap, model: LidarModel, rng: np.random.Generator | None = None,
                 with_labels: bool = True) -> LidarFrame:
    """One sweep of `model` on the rig at the instant `snap`; noise and dropout draw from rng
    (None: no noise, no dropout)."""
    cfg = model.config
    B, A = model.dirs.shape[:2]
    T = model.T_ego_lidar
    R_wl = snap.R_we @ T[:3, :3]
    o = snap.p_we + snap.R_we @ T[:3, 3]
    rays = np.empty((B * A, 6), dtype=np.float32)
    kernels.world_rays(model.dirs.reshape(-1, 3), R_wl, o, rays)
    t_static, prim = rig.cast(rays)
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
    valid = np.empty(n, dtype=bool)
    s, d = rig.static_attrs, actors.mesh
    lidar_returns(rays, t_static, prim, rng_dyn.ravel(), tri_dyn.ravel(), model.dirs_ego, T[:3, 3].copy(),
                  rig.static_normals, s.reflectivity, s.semantic, snap.normals, d.reflectivity, d.semantic,
                  d.instance, cfg.min_range, cfg.max_range, points, label, instance, valid)
    idx = np.flatnonzero(valid)
    if rng is not None and cfg.dropout > 0.0:
        idx = idx[rng.random(len(idx), dtype=np.float32) >= cfg.dropout]
    pts = points[idx]
    if rng is not None and cfg.range_noise > 0.0:  # along the ray
        pts[:, :3] += (rng.standard_normal(len(idx), dtype=np.float32) * np.float32(cfg.range_noise))[:, None] \
            * model.dirs_ego[idx]
    if rng is not None and cfg.intensity_noise > 0.0:
        pts[:, 3] += rng.standard_normal(len(idx), dtype=np.float32) * np.float32(cfg.intensity_noise)
    np.clip(pts[:, 3], 0.0, 1.0, out=pts[:, 3])
    return LidarFrame(points=pts, beam=idx // A, azimuth=idx % A, t=snap.t, T_ego_lidar=T,
                      label=label[idx] if with_labels else None, instance=instance[idx] if with_labels else None)
