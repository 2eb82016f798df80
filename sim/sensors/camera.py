"""The pinhole camera: calibration, rays, and one rendered frame with its labels.

`render_camera` reads like the pipeline: rays for this pose -> static hits
(Open3D) -> actor hits (Numba) -> actor shadows -> shading -> labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.sensors import kernels, labels
from sim.sensors.config import CameraConfig, Mount
from sim.sensors.frames import CameraFrame, CameraLabels
from sim.sensors.shading import LAMP_RGB, SRGB_LUT, lighting_params, shade_camera
from sim.types import frozen_array

# the optical frame (x right, y down, z forward) seen from the ego frame (x forward, y left, z up)
R_EGO_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
ACTOR_RANGE = 250.0  # [m] actors farther than this from the ego are not drawn


def mount_rotation(m: Mount) -> np.ndarray:
    """Rz(yaw) Ry(pitch) Rx(roll); positive pitch turns the x axis down."""
    r, p, y = (math.radians(a) for a in (m.roll_deg, m.pitch_deg, m.yaw_deg))
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(r), -math.sin(r)], [0.0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0.0, math.sin(p)], [0.0, 1.0, 0.0], [-math.sin(p), 0.0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0.0], [math.sin(y), math.cos(y), 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def pose_matrix(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


@dataclass(frozen=True, eq=False)
class CameraModel:
    config: CameraConfig
    K: np.ndarray  # (3, 3)
    T_ego_cam: np.ndarray  # (4, 4) optical frame to ego frame
    dirs: np.ndarray  # (H * W, 3) ray directions in the optical frame, z = 1 (so ray t is depth)

    @classmethod
    def from_config(cls, cfg: CameraConfig) -> CameraModel:
        W, H = cfg.width, cfg.height
        f = 0.5 * W / math.tan(0.5 * math.radians(cfg.hfov_deg))
        K = np.array([[f, 0.0, 0.5 * W], [0.0, f, 0.5 * H], [0.0, 0.0, 1.0]])
        m = cfg.mount
        T = pose_matrix(mount_rotation(m) @ R_EGO_OPTICAL, (m.x, m.y, m.z))
        u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
        dirs = np.column_stack([((u - K[0, 2]) / f).ravel(), ((v - K[1, 2]) / f).ravel(), np.ones(W * H)])
        return cls(cfg, frozen_array(K), frozen_array(T), frozen_array(dirs))

    def pinhole(self, R_we: np.ndarray, p_we: np.ndarray) -> labels.Pinhole:
        """The camera at the ego pose (R_we, p_we) in the world."""
        K, T = self.K, self.T_ego_cam
        return labels.Pinhole(K[0, 0], K[1, 1], K[0, 2], K[1, 2], self.config.width, self.config.height,
                              self.config.near, R_we @ T[:3, :3], p_we + R_we @ T[:3, 3])


def _shadow_rects(pin: labels.Pinhole, boxes: np.ndarray, extents: np.ndarray, use: np.ndarray,
                  sun: np.ndarray) -> np.ndarray:
    """Pixel rectangles (A, 4) i0, i1, j0, j1 where each actor's ground shadow may fall."""
    rects = np.zeros((len(boxes), 4), dtype=np.int64)
    rects[:, 1] = rects[:, 3] = -1
    if sun[2] < 0.05 or not use.any():
        return rects
    flat = extents.copy()
    flat[:, 4] = flat[:, 5] = 0.0
    foot = labels.box_corners(boxes, flat)[:, ::2]  # (A, 4, 3) footprint on the ground
    shift = -(sun[:2] / sun[2])[None, None, :] * extents[:, 5][:, None, None]
    tips = foot.copy()
    tips[..., :2] += shift
    rect, front = labels.project_hull(pin, pin.to_camera(np.concatenate([foot, tips], axis=1)))
    ok = use & front
    rects[ok, 0] = np.clip(np.floor(rect[ok, 0]), 0, pin.width - 1)
    rects[ok, 1] = np.clip(np.ceil(rect[ok, 2]), -1, pin.width - 1)
    rects[ok, 2] = np.clip(np.floor(rect[ok, 1]), 0, pin.height - 1)
    rects[ok, 3] = np.clip(np.ceil(rect[ok, 3]), -1, pin.height - 1)
    return rects


def render_camera(rig, snap, model: CameraModel, exposure: float = 1.0, with_labels: bool = True) -> CameraFrame:
    """One frame of `model` on the rig at the instant `snap` (a rig.Snapshot)."""
    cfg = model.config
    W, H = cfg.width, cfg.height
    pin = model.pinhole(snap.R_we, snap.p_we)
    rays = np.empty((W * H, 6), dtype=np.float32)
    kernels.world_rays(model.dirs, pin.R_wc, pin.o, rays)
    t_static, prim = rig.cast(rays)
    depth_dyn = np.full((H, W), np.inf, dtype=np.float32)
    tri_dyn = np.full((H, W), -1, dtype=np.int32)
    own_px = np.zeros(len(snap.boxes), dtype=np.int64)
    use = snap.active & (np.hypot(snap.boxes[:, 0] - snap.p_we[0], snap.boxes[:, 1] - snap.p_we[1]) < ACTOR_RANGE)
    actors = rig.actors
    if len(snap.tris):
        kernels.raster_actors(snap.tris, actors.tri_start, use, pin.R_wc.T.copy(), pin.o, pin.fx, pin.fy, pin.cx,
                              pin.cy, W, H, cfg.near, 1e6, depth_dyn, tri_dyn, own_px)
    sun_vis = np.ones((H, W))
    ambient = np.ones((H, W))
    light = rig.lighting
    rects = _shadow_rects(pin, snap.boxes, actors.extents, use, light.sun_dir)
    kernels.actor_shadows(rays, t_static, prim, depth_dyn, rig.ground, snap.boxes, actors.extents, use,
                          light.sun_dir, light.shadow, W, rects, sun_vis, ambient)
    image = np.empty((H, W, 3), dtype=np.uint8)
    semantic = np.empty((H, W), dtype=np.uint8)
    instance = np.empty((H, W), dtype=np.int32)
    depth = np.empty((H, W), dtype=np.float32)
    s, d = rig.static_attrs, actors.mesh
    shade_camera(rays, t_static, prim, depth_dyn, tri_dyn, s.albedo, s.shading, s.semantic, s.owner, s.lamp,
                 rig.static_normals, d.albedo, d.shading, d.semantic, d.instance, snap.normals, rig.head_light,
                 snap.light_codes, sun_vis, ambient, lighting_params(light, exposure), SRGB_LUT, LAMP_RGB,
                 image, semantic, instance, depth)
    truth = None
    if with_labels:
        R_ec, t_ec = model.T_ego_cam[:3, :3], model.T_ego_cam[:3, 3]
        objects = labels.object_labels(pin, snap.boxes, actors.extents, snap.cls, use, own_px, instance, snap.R_we,
                                       snap.p_we, cfg.max_label_range)
        lanes = labels.lane_labels(pin, rig.static.markings, snap.R_we, snap.p_we, R_ec, t_ec, cfg.max_label_range)
        states = [("green", "yellow", "red")[snap.light_codes[h.light]] for h in rig.static.heads]
        lights = labels.light_labels(pin, rig.static.heads, states, semantic, depth, cfg.max_label_range)
        truth = CameraLabels(semantic, instance, depth, objects, lanes, lights)
    return CameraFrame(image=image, K=model.K, T_ego_cam=model.T_ego_cam, t=snap.t, labels=truth)
