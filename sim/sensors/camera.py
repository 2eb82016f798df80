"""The pinhole camera: calibration, rays, and one rendered frame with its labels.

A frame is made in stages (SensorRig.render runs them): `prepare` (pose,
rays, actor culling, lane lines) -> static hits (Open3D) -> `draw_actors`
(actor hits, shadows, thin paint) and `shade` (Numba only, so they can run
beside other work) -> `finish` (object and traffic-light labels, the frame).
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


def _actor_rects(pin: labels.Pinhole, boxes: np.ndarray, extents: np.ndarray, sun: np.ndarray):
    """Projected boxes (A, 4) u0, v0, u1, v1 of the actors, whether any part is in front
    of the camera (A,), and pixel rectangles (A, 4) i0, i1, j0, j1 where their ground
    shadows may fall (empty when the sun is too low for shadows)."""
    A = len(boxes)
    corners = labels.box_corners(boxes, extents)  # (A, 8, 3)
    foot = corners[:, ::2].copy()  # the four bottom corners
    foot[..., 2] = 0.0
    tips = foot.copy()
    tips[..., :2] -= (sun[:2] / max(sun[2], 0.05))[None, None, :] * extents[:, 5][:, None, None]
    rect, front = labels.project_hull(pin, pin.to_camera(np.concatenate([corners, np.concatenate([foot, tips], 1)])))
    shadow = np.zeros((A, 4), dtype=np.int64)
    shadow[:, 1] = shadow[:, 3] = -1
    if sun[2] >= 0.05:
        r, ok = rect[A:], front[A:]
        shadow[ok, 0] = np.clip(np.floor(r[ok, 0]), 0, pin.width - 1)
        shadow[ok, 1] = np.clip(np.ceil(r[ok, 2]), -1, pin.width - 1)
        shadow[ok, 2] = np.clip(np.floor(r[ok, 1]), 0, pin.height - 1)
        shadow[ok, 3] = np.clip(np.ceil(r[ok, 3]), -1, pin.height - 1)
    return rect[:A], front[:A], shadow


@dataclass(frozen=True, eq=False)
class CameraPass:
    """What one camera frame needs from the scene before drawing (see `prepare`)."""

    pin: labels.Pinhole
    rays: np.ndarray  # (H * W, 6) float32 world rays
    rect: np.ndarray  # (A, 4) projected actor boxes
    front: np.ndarray  # (A,) bool, some of the actor's box lies in front of the camera
    near: np.ndarray  # (A,) bool, active and within ACTOR_RANGE
    use: np.ndarray  # (A,) bool, drawn: near and overlapping the image
    shadow_rects: np.ndarray  # (A, 4) pixel rectangles of the actors' shadows
    lanes: tuple  # LaneLine labels, also used to anti-alias thin paint
    paint_segments: np.ndarray  # (S, 8) for kernels.paint_coverage


@dataclass(frozen=True, eq=False)
class CameraImage:
    """The buffers of one frame: the actor pass fills the first group (`draw_actors`),
    shading the second (`shade`)."""

    depth_dyn: np.ndarray  # (H, W) float32 [m] nearest actor hit, inf for none
    tri_dyn: np.ndarray  # (H, W) int32 actor triangle hit, -1 for none
    own_px: np.ndarray  # (A,) pixels each actor covers drawn alone
    sun_vis: np.ndarray  # (H, W) direct sunlight left by the actors' shadows
    ambient: np.ndarray  # (H, W) ambient light left by the contact shadows
    paint_cov: np.ndarray  # (H, W) float32 coverage of thin paint
    paint_colour: np.ndarray  # (H, W) int8 its colour
    image: np.ndarray  # (H, W, 3) uint8
    semantic: np.ndarray  # (H, W) uint8
    instance: np.ndarray  # (H, W) int32
    depth: np.ndarray  # (H, W) float32 [m]


def prepare(rig, snap, model: CameraModel, rays: np.ndarray | None = None) -> CameraPass:
    """Pose the camera, cull the actors, and find the lane lines in view. `rays`: the
    camera's world rays when the caller made them already (camera_rays)."""
    cfg = model.config
    W, H = cfg.width, cfg.height
    pin = model.pinhole(snap.R_we, snap.p_we)
    rays = camera_rays(model, pin) if rays is None else rays
    rect, front, shadow_rects = _actor_rects(pin, snap.boxes, rig.actors.extents, rig.lighting.sun_dir)
    near = snap.active & (np.hypot(snap.boxes[:, 0] - snap.p_we[0], snap.boxes[:, 1] - snap.p_we[1]) < ACTOR_RANGE)
    use = near & front & (rect[:, 2] > 0) & (rect[:, 0] < W) & (rect[:, 3] > 0) & (rect[:, 1] < H)
    R_ec, t_ec = model.T_ego_cam[:3, :3], model.T_ego_cam[:3, 3]
    lanes = labels.lane_labels(pin, rig.static, snap.R_we, snap.p_we, R_ec, t_ec, cfg.max_label_range)
    segs = _thin_paint_segments(lanes, rig.static.style.line_width, R_ec, t_ec)
    return CameraPass(pin, rays, rect, front, near, use, shadow_rects, lanes, segs)


def draw_actors(rig, snap, model: CameraModel, cp: CameraPass, hits: tuple[np.ndarray, np.ndarray]) -> CameraImage:
    """Actor hits, actor shadows and thin paint (Numba kernels, no GIL held)."""
    cfg = model.config
    W, H = cfg.width, cfg.height
    pin, rays = cp.pin, cp.rays
    t_static, prim = hits
    actors, light = rig.actors, rig.lighting
    img = CameraImage(np.full((H, W), np.inf, dtype=np.float32), np.full((H, W), -1, dtype=np.int32),
                      np.zeros(len(snap.boxes), dtype=np.int64), np.ones((H, W)), np.ones((H, W)),
                      np.zeros((H, W), dtype=np.float32), np.zeros((H, W), dtype=np.int8),
                      np.empty((H, W, 3), dtype=np.uint8), np.empty((H, W), dtype=np.uint8),
                      np.empty((H, W), dtype=np.int32), np.empty((H, W), dtype=np.float32))
    if cp.use.any():
        kernels.raster_actors(snap.tris, actors.tri_start, cp.use, pin.R_wc.T.copy(), pin.o, pin.fx, pin.fy,
                              pin.cx, pin.cy, W, H, cfg.near, 1e6, img.depth_dyn, img.tri_dyn, img.own_px)
    kernels.actor_shadows(rays, t_static, prim, img.depth_dyn, rig.ground, snap.boxes, actors.extents, cp.near,
                          light.sun_dir, light.shadow, W, cp.shadow_rects, img.sun_vis, img.ambient)
    if len(cp.paint_segments):
        kernels.paint_coverage(cp.paint_segments, pin.fx, 3.0, img.paint_cov, img.paint_colour)
    return img


def shade(rig, snap, cp: CameraPass, hits: tuple[np.ndarray, np.ndarray], img: CameraImage, exposure: float,
          rows: tuple[int, int]) -> None:
    """Shade image rows rows[0] to rows[1] - 1 and fill their labels (Numba, no GIL held)."""
    s, d = rig.static_attrs, rig.actors.mesh
    shade_camera(cp.rays, hits[0], hits[1], img.depth_dyn, img.tri_dyn, s.albedo, s.shading, s.semantic, s.owner,
                 s.lamp, rig.static_normals, rig.ground, d.albedo, d.shading, d.semantic, d.instance, snap.normals,
                 rig.head_light, snap.light_codes, img.sun_vis, img.ambient, rig.shadow_map.occlusion,
                 rig.shadow_map.params(), img.paint_cov, img.paint_colour, rig.paint_albedo,
                 lighting_params(rig.lighting, exposure), SRGB_LUT, LAMP_RGB, img.image, img.semantic, img.instance,
                 img.depth, rows[0], rows[1])


def draw(rig, snap, model: CameraModel, cp: CameraPass, hits: tuple[np.ndarray, np.ndarray],
         exposure: float) -> CameraImage:
    """The whole picture: `draw_actors`, then `shade` every row."""
    img = draw_actors(rig, snap, model, cp, hits)
    shade(rig, snap, cp, hits, img, exposure, (0, model.config.height))
    return img


def finish(rig, snap, model: CameraModel, cp: CameraPass, img: CameraImage, with_labels: bool) -> CameraFrame:
    """The frame, with its object and traffic-light labels."""
    truth = None
    if with_labels:
        cfg = model.config
        objects = labels.object_labels(cp.pin, snap.boxes, rig.actors.extents, snap.cls, cp.near, cp.rect, cp.front,
                                       img.own_px, img.instance, snap.R_we, snap.p_we, cfg.max_label_range)
        states = [("green", "yellow", "red")[snap.light_codes[h.light]] for h in rig.static.heads]
        lights = labels.light_labels(cp.pin, rig.static.heads, states, img.semantic, img.depth, cfg.max_label_range)
        truth = CameraLabels(img.semantic, img.instance, img.depth, objects, cp.lanes, lights)
    return CameraFrame(image=img.image, K=model.K, T_ego_cam=model.T_ego_cam, t=snap.t, labels=truth)


def _thin_paint_segments(lanes, line_width: float, R_ec: np.ndarray, t_ec: np.ndarray) -> np.ndarray:
    """(S, 8) image segments u0, v0, z0, u1, v1, z1, width [m], colour (0 white, 1 yellow) of the
    solid and double lines in view, for kernels.paint_coverage (dashed lines keep their gaps)."""
    rows = []
    for ln in lanes:
        if ln.marking.startswith("dashed") or len(ln.uv) < 2:
            continue
        z = (ln.xyz - t_ec) @ R_ec[:, 2]
        width = 2.0 * line_width + 0.12 if ln.marking == "double_yellow" else line_width
        colour = 1.0 if "yellow" in ln.marking else 0.0
        n = len(z) - 1
        rows.append(np.column_stack([ln.uv[:-1], z[:-1], ln.uv[1:], z[1:], np.full(n, width), np.full(n, colour)]))
    return np.concatenate(rows) if rows else np.zeros((0, 8))


def camera_rays(model: CameraModel, pin: labels.Pinhole, out: np.ndarray | None = None) -> np.ndarray:
    """(H * W, 6) float32 world rays of the camera at pose `pin`, row-major pixels."""
    rays = np.empty((len(model.dirs), 6), dtype=np.float32) if out is None else out
    kernels.world_rays(model.dirs, pin.R_wc, pin.o, rays)
    return rays
