"""Sensor messages: camera and lidar frames with their ground truth.

Frozen dataclasses of read-only NumPy arrays (copied in), as in sim.types.
Camera optical frame: x right, y down, z forward. A pixel (u, v) has its
centre at (u + 0.5, v + 0.5) in the image coordinates used by K and by every
pixel label below. Ego frame: x forward, y left, z up, origin at the
rear-axle centre on the ground.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.types import _freeze_fields, frozen_array

# Per-pixel and per-point semantic classes. The actor classes keep the names of
# sim.types.CLASS_NAMES so that a label maps back to an actor class by name.
SEMANTIC_CLASSES = ("sky", "road", "lane_marking", "crosswalk", "stop_line", "curb", "sidewalk", "terrain",
                    "building", "vegetation", "pole", "traffic_light", "barrier",
                    "car", "truck", "pedestrian", "cyclist", "static")
SEMANTIC_ID = {name: k for k, name in enumerate(SEMANTIC_CLASSES)}


@dataclass(frozen=True)
class ObjectLabels:
    """2D boxes of the actors in view (struct of arrays, M objects)."""

    track_id: np.ndarray  # (M,) int, the actor's id (its row in the world's actor matrices, plus 1)
    cls: np.ndarray  # (M,) int, index into sim.types.CLASS_NAMES
    box: np.ndarray  # (M, 4) [px] u0, v0, u1, v1: the projected 3D box, clipped to the image
    box3d: np.ndarray  # (M, 7) ego frame: x, y, z of the box centre [m], length, width, height [m], yaw [rad]
    distance: np.ndarray  # (M,) [m] from the camera to the nearest point of the 3D box
    truncation: np.ndarray  # (M,) [0, 1] share of the projected box area outside the image
    occlusion: np.ndarray  # (M,) [0, 1] share of the actor's own pixels hidden by something nearer
    visible_px: np.ndarray  # (M,) int, pixels of the instance mask that show this actor

    def __post_init__(self):
        _freeze_fields(self, ("box", "box3d", "distance", "truncation", "occlusion"))
        _freeze_fields(self, ("track_id", "cls", "visible_px"), np.int64)

    def __len__(self) -> int:
        return int(self.track_id.shape[0])


@dataclass(frozen=True)
class LaneLine:
    """One painted lane line in view, as an image polyline and its ground points."""

    uv: np.ndarray  # (K, 2) [px] image polyline, near to far
    xyz: np.ndarray  # (K, 3) [m] the same points in the ego frame (on the road surface)
    marking: str  # sim.road.MARKINGS: "solid_white", "dashed_white", "solid_yellow", "double_yellow", ...
    offset: float  # [m] lateral offset of the line beside the ego (positive left); nan if it does not pass the ego

    def __post_init__(self):
        _freeze_fields(self, ("uv", "xyz"))


@dataclass(frozen=True)
class LightLabel:
    """One traffic-light head in front of the camera."""

    name: str  # the light (sim.road.TrafficLight.name) the head shows
    state: str  # "green" | "yellow" | "red"
    box: np.ndarray  # (4,) [px] u0, v0, u1, v1 of the head housing, clipped to the image
    distance: float  # [m] camera to head centre
    visible: bool  # some of the head's pixels show in the image
    facing: bool  # the lamps face the camera (the head governs traffic going the camera's way)

    def __post_init__(self):
        _freeze_fields(self, ("box",))


@dataclass(frozen=True)
class CameraLabels:
    semantic: np.ndarray  # (H, W) uint8, index into SEMANTIC_CLASSES
    instance: np.ndarray  # (H, W) int32, actor track id, 0 for no actor
    depth: np.ndarray  # (H, W) float32 [m] along the optical axis, inf for sky
    objects: ObjectLabels
    lanes: tuple[LaneLine, ...]
    lights: tuple[LightLabel, ...]

    def __post_init__(self):
        object.__setattr__(self, "semantic", frozen_array(self.semantic, np.uint8))
        object.__setattr__(self, "instance", frozen_array(self.instance, np.int32))
        object.__setattr__(self, "depth", frozen_array(self.depth, np.float32))
        object.__setattr__(self, "lanes", tuple(self.lanes))
        object.__setattr__(self, "lights", tuple(self.lights))


@dataclass(frozen=True)
class CameraFrame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    K: np.ndarray  # (3, 3) intrinsics; pixel centres at integer + 0.5
    T_ego_cam: np.ndarray  # (4, 4) camera (optical frame) to ego frame
    t: float  # [s] capture time
    labels: CameraLabels | None = None
    fault: str = ""  # the fault that altered this frame ("freeze", "black", "exposure"), "" if none

    def __post_init__(self):
        object.__setattr__(self, "image", frozen_array(self.image, np.uint8))
        _freeze_fields(self, ("K", "T_ego_cam"))
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"CameraFrame.image must have shape (H, W, 3), got {self.image.shape}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class LidarFrame:
    points: np.ndarray  # (N, 4) float32 x, y, z [m] ego frame, intensity [0, 1]
    beam: np.ndarray  # (N,) int, 0 = lowest beam
    azimuth: np.ndarray  # (N,) int, azimuth step; 0 looks along the sensor's x axis, counter-clockwise
    t: float  # [s] the whole sweep is taken at this instant (no motion within a sweep)
    T_ego_lidar: np.ndarray  # (4, 4) sensor to ego frame; points are already in the ego frame
    label: np.ndarray | None = None  # (N,) uint8 index into SEMANTIC_CLASSES
    instance: np.ndarray | None = None  # (N,) int32 actor track id, 0 for no actor
    fault: str = ""  # the fault that altered this sweep ("freeze", "black"), "" if none

    def __post_init__(self):
        object.__setattr__(self, "points", frozen_array(self.points, np.float32))
        _freeze_fields(self, ("T_ego_lidar",))
        object.__setattr__(self, "beam", frozen_array(self.beam, np.int16))
        object.__setattr__(self, "azimuth", frozen_array(self.azimuth, np.int16))
        if self.label is not None:
            object.__setattr__(self, "label", frozen_array(self.label, np.uint8))
        if self.instance is not None:
            object.__setattr__(self, "instance", frozen_array(self.instance, np.int32))
        n = self.points.shape[0]
        if self.points.shape != (n, 4):
            raise ValueError(f"LidarFrame.points must have shape (N, 4), got {self.points.shape}")
        for name in ("beam", "azimuth", "label", "instance"):
            a = getattr(self, name)
            if a is not None and a.shape != (n,):
                raise ValueError(f"LidarFrame.{name} must have shape ({n},), got {a.shape}")

    def __len__(self) -> int:
        return int(self.points.shape[0])
