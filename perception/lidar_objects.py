"""Objects from one lidar sweep: ground removal, clustering, an oriented box per cluster.

`detect_lidar_objects(points, config)` reads like the pipeline:
`remove_ground` -> `cluster_points` -> `fit_box` per cluster -> `keep_object`.
Everything is in the ego frame (x forward, y left, z up, origin at the rear axle
on the ground) and deterministic: no random sampling anywhere.

Ground and clusters come from grids (a min-height ground grid, a bird's-eye occupancy grid labelled
with scipy.ndimage), which are deterministic by construction; about 6-12 ms per 32 x 1024 sweep.
Open3D's RANSAC `segment_plane` and `cluster_dbscan` have not been timed against them yet.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from perception.tracking import Detection
from sim.types import CAR, PEDESTRIAN, TRUCK, frozen_array


@dataclass(frozen=True)
class LidarObjectConfig:
    ground_cell: float = 1.0  # [m] cell of the min-height ground grid
    ground_margin: float = 0.25  # [m] points less than this above the local ground are ground
    max_range: float = 60.0  # [m] points farther (in x, y) from the ego origin are not clustered
    max_height: float = 12.0  # [m] points higher above the ground are ignored (bridges, wires)
    cluster_cell: float = 0.4  # [m] cell of the bird's-eye occupancy grid
    cluster_reach: int = 2  # occupied cells up to this many cells apart (in x and in y) join one cluster
    min_points: int = 5  # clusters with fewer points are dropped
    min_top: float = 1.0  # [m] clusters whose highest point is lower are dropped (barriers, curbs, posts)
    max_top: float = 4.3  # [m] clusters whose highest point is higher are dropped (trees, walls, signs)
    max_length: float = 14.0  # [m] longer clusters are dropped (buildings, hedges, guard rails)
    max_width: float = 3.5  # [m] wider clusters are dropped
    car_length: float = 4.6  # [m] prior a partly seen vehicle's box is grown to, away from the sensor
    car_width: float = 1.85  # [m]
    angle_step_deg: float = 1.0  # [deg] resolution of the box orientation search

    def __post_init__(self):
        for name in ("ground_cell", "ground_margin", "max_range", "max_height", "cluster_cell", "min_top", "max_top",
                     "max_length", "max_width", "car_length", "car_width", "angle_step_deg"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"LidarObjectConfig.{name}: expected a finite number > 0, got {value!r}")
        if not (isinstance(self.cluster_reach, int) and self.cluster_reach >= 1):
            raise ValueError(f"LidarObjectConfig.cluster_reach: expected an int >= 1, got {self.cluster_reach!r}")
        if not (isinstance(self.min_points, int) and self.min_points >= 1):
            raise ValueError(f"LidarObjectConfig.min_points: expected an int >= 1, got {self.min_points!r}")


@dataclass(frozen=True)
class LidarObject:
    x: float  # [m] box centre, ego frame
    y: float  # [m]
    yaw: float  # [rad] heading of the box's length axis, in (-pi/2, pi/2]
    length: float  # [m]
    width: float  # [m]
    height: float  # [m] highest point above the local ground
    n_points: int  # points in the cluster
    indices: np.ndarray  # (n_points,) int, rows of the input points

    def __post_init__(self):
        object.__setattr__(self, "indices", frozen_array(self.indices, np.int64))

    @property
    def cls(self) -> int:
        """sim.types class guessed from the box size."""
        if max(self.length, self.width) < 1.2:
            return PEDESTRIAN
        return TRUCK if self.length > 6.5 else CAR


def detect_lidar_objects(points: np.ndarray, config: LidarObjectConfig | None = None) -> list[LidarObject]:
    """Objects in one sweep, `points` (N, 4) x, y, z [m] ego frame and intensity; sorted by distance."""
    cfg = config or LidarObjectConfig()
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    height = height_above_ground(xyz, cfg.ground_cell)
    rng = np.hypot(xyz[:, 0], xyz[:, 1])
    keep = np.flatnonzero((height > cfg.ground_margin) & (height < cfg.max_height) & (rng < cfg.max_range))
    objects = []
    for members in cluster_points(xyz[keep, :2], cfg.cluster_cell, cfg.cluster_reach):
        if members.size < cfg.min_points:
            continue
        idx = keep[members]
        obj = fit_box(xyz[idx, :2], float(height[idx].max()), idx, cfg)
        if keep_object(obj, cfg):
            objects.append(obj)
    objects.sort(key=lambda o: (math.hypot(o.x, o.y), o.x, o.y))
    return objects


def height_above_ground(xyz: np.ndarray, cell: float) -> np.ndarray:
    """(N,) [m] height of each point above the local ground: the lowest point among the 3 x 3 grid cells
    around its own. The neighbourhood lets a cell covered by a car borrow the road seen beside it."""
    ij = np.floor(xyz[:, :2] / cell).astype(np.int64)
    lo = ij.min(axis=0)
    ij -= lo - 1  # one empty cell of margin on each side
    shape = tuple(ij.max(axis=0) + 2)
    ground = np.full(shape, np.inf)
    np.minimum.at(ground, (ij[:, 0], ij[:, 1]), xyz[:, 2])
    ground = ndimage.minimum_filter(ground, size=3, mode="nearest")
    return xyz[:, 2] - ground[ij[:, 0], ij[:, 1]]


def cluster_points(xy: np.ndarray, cell: float, reach: int) -> list[np.ndarray]:
    """Clusters of bird's-eye points, each as sorted rows of `xy`: occupied cells at most `reach` cells
    apart in x and in y are joined, so that a car whose flat hood the beams skip stays one cluster."""
    if xy.shape[0] == 0:
        return []
    ij = np.floor(xy / cell).astype(np.int64)
    ij -= ij.min(axis=0)
    occupied = np.zeros(tuple(ij.max(axis=0) + 1), dtype=bool)
    occupied[ij[:, 0], ij[:, 1]] = True
    near = ndimage.binary_dilation(occupied, structure=np.ones((reach + 1, reach + 1), dtype=bool))
    labels, n = ndimage.label(near, structure=np.ones((3, 3), dtype=bool))
    point_label = labels[ij[:, 0], ij[:, 1]]
    order = np.argsort(point_label, kind="stable")
    bounds = np.searchsorted(point_label[order], np.arange(1, n + 2))
    return [order[bounds[k]:bounds[k + 1]] for k in range(n)]


def min_area_angle(xy: np.ndarray, step_deg: float) -> float:
    """[rad] in [0, pi/2): the orientation whose axis-aligned rectangle around `xy` has the least area."""
    angles = np.deg2rad(np.arange(0.0, 90.0, step_deg))
    c, s = np.cos(angles), np.sin(angles)
    u = xy[:, :1] * c + xy[:, 1:] * s  # (N, A) coordinates along each candidate axis
    v = -xy[:, :1] * s + xy[:, 1:] * c
    area = np.ptp(u, axis=0) * np.ptp(v, axis=0)
    return float(angles[int(np.argmin(area))])


def _grow_away(lo: float, hi: float, target: float, sensor: float) -> tuple[float, float]:
    """An interval [lo, hi] grown to `target` length on the side away from `sensor` (all along one axis)."""
    if hi - lo >= target:
        return lo, hi
    if abs(sensor - lo) <= abs(sensor - hi):
        return lo, lo + target
    return hi - target, hi


def fit_box(xy: np.ndarray, top: float, indices: np.ndarray, cfg: LidarObjectConfig) -> LidarObject:
    """The minimum-area rectangle around a cluster's bird's-eye points, grown to a vehicle's size.

    The lidar sees only the faces of a car that turn towards it, so a car seen from behind is a short
    line. A cluster that looks like part of a vehicle is grown to the car prior away from the sensor
    (the ego origin); when its longest visible side is no longer than a car is wide, its length axis is
    taken to be the one closer to the line of sight."""
    centroid = xy.mean(axis=0)
    theta = min_area_angle(xy - centroid, cfg.angle_step_deg)
    axes = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])  # rows: u, v
    uv = xy @ axes.T
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    extent = hi - lo
    long_axis = int(np.argmax(extent))
    if extent.max() > 1.2:  # a vehicle, perhaps seen in part
        if extent.max() <= cfg.car_width + 0.4:
            sight = axes @ centroid  # line of sight from the ego origin, in (u, v)
            long_axis = int(np.argmax(np.abs(sight)))
        target = np.empty(2)
        target[long_axis], target[1 - long_axis] = cfg.car_length, cfg.car_width
        for k in range(2):
            lo[k], hi[k] = _grow_away(lo[k], hi[k], target[k], 0.0)  # the ego origin is 0 in (u, v)
    centre = 0.5 * (lo + hi) @ axes
    yaw = theta if long_axis == 0 else theta + 0.5 * math.pi
    yaw = math.atan2(math.sin(yaw), math.cos(yaw))
    if yaw <= -0.5 * math.pi:
        yaw += math.pi
    elif yaw > 0.5 * math.pi:
        yaw -= math.pi
    return LidarObject(x=float(centre[0]), y=float(centre[1]), yaw=yaw, length=float(hi[long_axis] - lo[long_axis]),
                       width=float(hi[1 - long_axis] - lo[1 - long_axis]), height=top, n_points=int(indices.size),
                       indices=indices)


def keep_object(obj: LidarObject, cfg: LidarObjectConfig) -> bool:
    """Size rules: road users are between `min_top` and `max_top` tall and no bigger than a truck."""
    return cfg.min_top <= obj.height <= cfg.max_top and obj.length <= cfg.max_length and obj.width <= cfg.max_width


def to_detections(objects: list[LidarObject]) -> list[Detection]:
    """Tracker input (ego frame); the score grows with the points behind a box, 1 from 50 points."""
    return [Detection(x=o.x, y=o.y, yaw=o.yaw, length=o.length, width=o.width, cls=o.cls,
                      score=min(1.0, o.n_points / 50.0)) for o in objects]
