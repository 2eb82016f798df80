"""Camera-lidar fusion: class from the camera, position and extent from the lidar.

`fuse(camera, lidar, calib)` reads like the textbook late-fusion step:
`project_box` every lidar box into the image -> `association_cost` (1 - IoU,
gated by the camera's own distance estimate) -> linear_sum_assignment ->
`merge` the matched pairs -> `camera_only` objects the lidar missed (placed on
the ground plane or along the ray at the estimated distance) -> lidar-only
objects outside the camera's view. Everything is in the ego frame (x forward,
y left, z up, origin at the rear axle on the ground). The result is the
tracker's input (perception.tracking.Detection).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from perception.detector import Detection2D
from perception.lidar_objects import LidarObject, to_detections
from perception.tracking import Detection
from sim.types import CAR, CYCLIST, PEDESTRIAN, TRUCK

# detector class name -> sim.types class; traffic-light classes are not road users
CAMERA_CLASS = {"car": CAR, "truck": TRUCK, "pedestrian": PEDESTRIAN, "cyclist": CYCLIST}
# [m] length, width and height assumed for an object seen by the camera alone
CLASS_SIZE = {CAR: (4.6, 1.85, 1.5), TRUCK: (9.0, 2.5, 3.2), PEDESTRIAN: (0.6, 0.6, 1.75), CYCLIST: (1.8, 0.7, 1.7)}
UNKNOWN_YAW = float("nan")  # a camera-only object's heading; the caller may take it from the map
# [m] std of a box centre: lidar boxes are within decimetres near by and coarser far away (fewer beams on the
# object, a partly seen box grown to a prior); the camera's distance estimate is good to a few per cent
LIDAR_SIGMA_FLOOR, LIDAR_SIGMA_PER_M = 0.15, 0.012
CAMERA_SIGMA_FLOOR, CAMERA_SIGMA_PER_M = 0.5, 0.08
FRUSTUM_SIGMA_FLOOR, FRUSTUM_SIGMA_PER_M = 0.3, 0.01  # camera bearing, lidar range


def lidar_sigma(obj: LidarObject) -> float:
    return LIDAR_SIGMA_FLOOR + LIDAR_SIGMA_PER_M * math.hypot(obj.x, obj.y)


@dataclass(frozen=True)
class Calibration:
    """The camera as the fusion needs it: intrinsics, pose in the ego frame, image size."""

    K: np.ndarray  # (3, 3)
    T_ego_cam: np.ndarray  # (4, 4) camera optical frame (x right, y down, z forward) to ego frame
    width: int  # [px]
    height: int  # [px]

    def to_camera(self, p_ego: np.ndarray) -> np.ndarray:
        """(..., 3) ego-frame points to the camera's optical frame."""
        R, t = self.T_ego_cam[:3, :3], self.T_ego_cam[:3, 3]
        return (np.asarray(p_ego) - t) @ R

    def ray(self, u: float, v: float) -> np.ndarray:
        """(3,) unit direction in the ego frame of the ray through image point (u, v)."""
        d = self.T_ego_cam[:3, :3] @ np.linalg.solve(self.K, np.array([u, v, 1.0]))
        return d / np.linalg.norm(d)

    @property
    def origin(self) -> np.ndarray:
        return self.T_ego_cam[:3, 3]


@dataclass(frozen=True)
class FusionConfig:
    min_iou: float = 0.2  # camera box and projected lidar box overlap at least this much to match
    distance_gate: float = 0.35  # relative disagreement of the camera's and the lidar's distance that rejects a pair
    distance_gate_floor: float = 4.0  # [m] ... but never below this
    duplicate_gate: float = 0.12  # a camera-only object nearer another object than this share of its range is that
    duplicate_gate_floor: float = 3.0  # [m] object, but never nearer than this
    min_camera_score: float = 0.35  # camera detections below this score do not make objects on their own
    ground_plane_range: float = 25.0  # [m] nearer than this a camera-only object is placed on the ground plane
    near: float = 0.5  # [m] lidar box corners closer to the camera plane than this are behind it
    frustum_shrink: float = 0.2  # share of a camera box's width and height cut from each side for frustum ranging
    frustum_shrink_above: float = 12.0  # [px] ... for boxes at least this wide and high
    frustum_min_height: float = 0.3  # [m] returns lower than this are road
    frustum_min_points: int = 2  # fewer returns in the box: no lidar range
    frustum_depth: float = 1.5  # [m] returns this far behind the nearest in the box belong to the object


def box_corners(obj: LidarObject) -> np.ndarray:
    """(8, 3) corners of a lidar box in the ego frame, from the ground to its top."""
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    hl, hw = 0.5 * obj.length, 0.5 * obj.width
    xy = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]]) @ np.array([[c, s], [-s, c]]) + (obj.x, obj.y)
    return np.vstack([np.column_stack([xy, np.zeros(4)]), np.column_stack([xy, np.full(4, obj.height)])])


def project_box(obj: LidarObject, calib: Calibration, near: float) -> np.ndarray | None:
    """(4,) [px] u0, v0, u1, v1 of the lidar box's image, clipped to the image; None when it is not in view."""
    p = calib.to_camera(box_corners(obj))
    if np.all(p[:, 2] < near):
        return None
    p = p[p[:, 2] >= near]  # a box half behind the camera: its visible part (wide enough for matching)
    uv = p[:, :2] / p[:, 2:3] @ calib.K[:2, :2].T + calib.K[:2, 2]
    u0, v0 = uv.min(axis=0)
    u1, v1 = uv.max(axis=0)
    u0, u1 = max(u0, 0.0), min(u1, calib.width)
    v0, v1 = max(v0, 0.0), min(v1, calib.height)
    if u1 <= u0 or v1 <= v0:
        return None
    return np.array([u0, v0, u1, v1])


def nearest_distance(obj: LidarObject, point: np.ndarray) -> float:
    """[m] from `point` (3,) to the nearest point of the lidar box (ground to top)."""
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    dx, dy = point[0] - obj.x, point[1] - obj.y
    u, v = c * dx + s * dy, -s * dx + c * dy  # in the box's frame
    du = max(abs(u) - 0.5 * obj.length, 0.0)
    dv = max(abs(v) - 0.5 * obj.width, 0.0)
    dz = max(point[2] - obj.height, 0.0, -point[2])
    return math.sqrt(du * du + dv * dv + dz * dz)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0.0 or h <= 0.0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def association_cost(camera: list[Detection2D], lidar: list[LidarObject], boxes: list[np.ndarray | None],
                     calib: Calibration, cfg: FusionConfig) -> np.ndarray:
    """(C, L) 1 - IoU of each camera box with each projected lidar box; inf for pairs outside the gates."""
    cost = np.full((len(camera), len(lidar)), np.inf)
    for j, (obj, box) in enumerate(zip(lidar, boxes)):
        if box is None:
            continue
        d_lidar = nearest_distance(obj, calib.origin)  # the detector's distance is to the nearest point too
        for i, det in enumerate(camera):
            overlap = iou(np.asarray(det.box), box)
            gate = max(cfg.distance_gate * d_lidar, cfg.distance_gate_floor)
            if overlap >= cfg.min_iou and abs(det.distance - d_lidar) <= gate:
                cost[i, j] = 1.0 - overlap
    return cost


def merge(det: Detection2D, obj: LidarObject) -> Detection:
    """A matched pair: the camera's class and the lidar's box; a small road user keeps its class's size."""
    cls = CAMERA_CLASS[det.cls]
    length, width = obj.length, obj.width
    if cls in (PEDESTRIAN, CYCLIST):
        prior = CLASS_SIZE[cls]
        length, width = min(length, prior[0] + 0.5), min(width, prior[1] + 0.5)
    return Detection(x=obj.x, y=obj.y, yaw=obj.yaw, length=length, width=width, cls=cls,
                     score=max(det.score, min(1.0, obj.n_points / 50.0)), sigma=lidar_sigma(obj))


@dataclass(frozen=True)
class ImagePoints:
    """A lidar sweep's returns above the road, projected into the camera image once per cycle."""

    uv: np.ndarray  # (M, 2) [px]
    range: np.ndarray  # (M,) [m] from the camera


def project_points(points: np.ndarray, calib: Calibration, cfg: FusionConfig) -> ImagePoints:
    """The returns of `points` (N, 3+) ego frame that are above the road and in front of the camera."""
    cam = calib.to_camera(np.asarray(points)[points[:, 2] > cfg.frustum_min_height, :3])
    cam = cam[cam[:, 2] > 1.0]
    uv = cam[:, :2] / cam[:, 2:3] @ calib.K[:2, :2].T + calib.K[:2, 2]
    return ImagePoints(uv, np.linalg.norm(cam, axis=1))


def frustum_range(det: Detection2D, points: ImagePoints | None, cfg: FusionConfig) -> float:
    """[m] from the camera to the nearest face of the object in the box, measured by the lidar returns that
    fall inside the (shrunk) box; nan with too few. Beyond the lidar objects' reach a far car has only a
    handful of returns, too few to cluster but plenty to range it to centimetres."""
    if points is None or len(points.range) == 0:
        return float("nan")
    u0, v0, u1, v1 = det.box
    # a big box's edges hold the background; a far car's box is a few pixels and every one counts
    shrink = cfg.frustum_shrink if min(u1 - u0, v1 - v0) >= cfg.frustum_shrink_above else 0.0
    du, dv = shrink * (u1 - u0), shrink * (v1 - v0)
    u, v = points.uv[:, 0], points.uv[:, 1]
    inside = (u >= u0 + du) & (u <= u1 - du) & (v >= v0 + dv) & (v <= v1 - dv)
    if np.count_nonzero(inside) < cfg.frustum_min_points:
        return float("nan")
    rng = np.sort(points.range[inside])
    # the object is the nearest surface in its box: the lowest returns, past a stray one or two
    near = rng[rng <= rng[min(1, len(rng) - 1)] + cfg.frustum_depth]
    if len(near) < cfg.frustum_min_points:
        return float("nan")
    return float(np.median(near))


def camera_only(det: Detection2D, calib: Calibration, cfg: FusionConfig, points: ImagePoints | None = None
                ) -> Detection:
    """An object the lidar objects missed, placed along the camera's ray through its box.

    Its range comes from the lidar returns inside the box when there are enough (`frustum_range`); near
    objects otherwise stand on the ground plane (the ray through the bottom centre of the box meets the
    road at the object's nearest face); farther away a pixel of box bottom is metres of range, so the
    detector's own distance estimate is used."""
    length, width, _ = CLASS_SIZE[CAMERA_CLASS[det.cls]]
    u0, v0, u1, v1 = det.box
    origin = calib.origin
    centre_ray = calib.ray(0.5 * (u0 + u1), 0.5 * (v0 + v1))
    measured = frustum_range(det, points, cfg)
    face, sigma_floor, sigma_per_m = None, CAMERA_SIGMA_FLOOR, CAMERA_SIGMA_PER_M
    if math.isfinite(measured):
        face, sigma_floor, sigma_per_m = origin + measured * centre_ray, FRUSTUM_SIGMA_FLOOR, FRUSTUM_SIGMA_PER_M
    else:
        bottom = calib.ray(0.5 * (u0 + u1), v1)
        if bottom[2] < -1e-3:
            p = origin - origin[2] / bottom[2] * bottom
            if math.hypot(p[0] - origin[0], p[1] - origin[1]) < cfg.ground_plane_range:
                face = p
        if face is None:
            face = origin + det.distance * centre_ray
    heading = math.atan2(face[1] - origin[1], face[0] - origin[0])
    x = face[0] + 0.5 * length * math.cos(heading)  # from the nearest face to the box centre, along the ray
    y = face[1] + 0.5 * length * math.sin(heading)
    rng = math.hypot(x - origin[0], y - origin[1])
    return Detection(x=float(x), y=float(y), yaw=UNKNOWN_YAW, length=length, width=width, cls=CAMERA_CLASS[det.cls],
                     score=det.score, sigma=max(sigma_floor, sigma_per_m * rng), camera_only=True)


@dataclass(frozen=True)
class FusionResult:
    detections: tuple[Detection, ...]  # tracker input, ego frame
    matched: tuple[tuple[int, int], ...]  # (camera index, lidar index) pairs
    camera_only: tuple[int, ...]  # camera indices placed without the lidar
    lidar_only: tuple[int, ...]  # lidar indices kept without a camera match
    lidar_boxes: tuple  # the projected image box of each lidar object, or None (drawn by the view)


def fuse(camera: list[Detection2D], lidar: list[LidarObject], calib: Calibration | None, keep_lidar,
         cfg: FusionConfig = FusionConfig(), points: np.ndarray | None = None, lidar_lost: bool = False
         ) -> FusionResult:
    """Fused detections of one cycle. `keep_lidar(obj, in_view) -> bool` decides which unmatched lidar
    objects stand on their own (the caller knows the map; the camera vouches for nothing there).
    `calib` None: no camera frame this cycle, so no lidar object is in its view. `points` (N, 3+) ego frame:
    the lidar sweep, to range camera-only objects (`frustum_range`). `lidar_lost` (perception.health): the
    lidar could not have confirmed the camera-only objects, so they are not marked `camera_only`."""
    users = [i for i, d in enumerate(camera) if d.cls in CAMERA_CLASS]
    cams = [camera[i] for i in users]
    boxes = [project_box(o, calib, cfg.near) if calib is not None else None for o in lidar]
    cost = association_cost(cams, lidar, boxes, calib, cfg)
    pairs: list[tuple[int, int]] = []
    if cams and lidar:
        finite = np.where(np.isfinite(cost), cost, 1e6)
        rows, cols = linear_sum_assignment(finite)
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if np.isfinite(cost[r, c])]
    out = [merge(cams[i], lidar[j]) for i, j in pairs]
    matched_cam = {i for i, _ in pairs}
    matched_lidar = {j for _, j in pairs}
    lidar_only = [j for j in range(len(lidar)) if j not in matched_lidar and keep_lidar(lidar[j], boxes[j] is not None)]
    out += [dataclasses.replace(d, sigma=lidar_sigma(lidar[j]))
            for j, d in zip(lidar_only, to_detections([lidar[j] for j in lidar_only]))]
    # a camera box the lidar did not confirm stands alone only where no other object already is: an
    # unmatched box on top of a lidar object is the same object with a poor distance estimate
    cam_only = []
    candidates = [i for i in range(len(cams)) if i not in matched_cam and cams[i].score >= cfg.min_camera_score]
    projected = project_points(points, calib, cfg) if candidates and points is not None else None
    for i in candidates:
        d = camera_only(cams[i], calib, cfg, projected)
        if lidar_lost:
            d = dataclasses.replace(d, camera_only=False)
        reach = max(cfg.duplicate_gate_floor, cfg.duplicate_gate * math.hypot(d.x, d.y))
        if all(math.hypot(d.x - o.x, d.y - o.y) > reach for o in out) and all(
                math.hypot(d.x - o.x, d.y - o.y) > reach for o in lidar):
            cam_only.append(i)
            out.append(d)
    return FusionResult(detections=tuple(out), matched=tuple((users[i], j) for i, j in pairs),
                        camera_only=tuple(users[i] for i in cam_only), lidar_only=tuple(lidar_only),
                        lidar_boxes=tuple(boxes))
