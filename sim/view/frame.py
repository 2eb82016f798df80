"""What one frame of the view shows, gathered before anything is drawn.

`FrameData` is a plain frozen message (read-only NumPy arrays, SI units, world
frame): the live view builds one per frame from the world and the closed loop,
the replay builds one from a RunLog step, and `sim.view.draw.Renderer` draws any
of them the same way. Nothing here imports pygame.

Sensor panels take a camera image (H, W, 3) uint8 and a lidar point cloud
(N, 4) x, y, z [m] in the ego frame plus intensity; `read_sensors` gets them
from a `SensorFeed` (sim.view.sensor_feed renders them from the world), and
`sensors_from_record` takes the frames learned perception used in its latest
cycle together with what it saw in them (`CameraOverlay`, `LidarOverlay`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sim.log import RunLog
from sim.types import CLASS_NAMES, EgoState, Prediction, frozen_array

LAYERS = ("markings", "route", "plan", "candidates", "predictions", "labels", "legend",
          "detections", "lanes seen", "heads read", "attention", "fused objects")
LAYER_TITLES = {
    "markings": "lane markings, crosswalks",
    "route": "route",
    "plan": "chosen trajectory",
    "candidates": "candidate fan",
    "predictions": "predictions",
    "labels": "actor ids and speeds",
    "legend": "legend",
    "detections": "camera: 2D detections",
    "lanes seen": "camera: lane lines perceived",
    "heads read": "camera: traffic-light heads read",
    "attention": "camera: attention heatmap",
    "fused objects": "lidar: fused objects",
}
LIGHT_NAMES = ("green", "yellow", "red")  # index = sim.log.LIGHT_CODES


@dataclass(frozen=True)
class ActorLayer:
    """The actors present in this frame (the ego is not among them)."""

    ids: np.ndarray  # (N,) int, actor id (row of the world's actor matrices, 1..n)
    names: tuple[str, ...]  # (N,)
    cls: np.ndarray  # (N,) int, index into sim.types.CLASS_NAMES
    box: np.ndarray  # (N, 5) box centre x, y [m], yaw [rad], length, width [m]
    speed: np.ndarray  # (N,) [m/s]
    accel: np.ndarray  # (N,) [m/s^2]

    def __post_init__(self):
        object.__setattr__(self, "ids", frozen_array(np.reshape(self.ids, -1), np.int64))
        object.__setattr__(self, "cls", frozen_array(np.reshape(self.cls, -1), np.int64))
        object.__setattr__(self, "box", frozen_array(np.reshape(self.box, (-1, 5))))
        object.__setattr__(self, "speed", frozen_array(np.reshape(self.speed, -1)))
        object.__setattr__(self, "accel", frozen_array(np.reshape(self.accel, -1)))
        object.__setattr__(self, "names", tuple(self.names))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def index_of(self, actor_id: int) -> int:
        """Row of actor `actor_id`, or -1 when it is not in this frame."""
        rows = np.flatnonzero(self.ids == actor_id)
        return int(rows[0]) if len(rows) else -1


@dataclass(frozen=True)
class PredictionLayer:
    ids: np.ndarray  # (A,) int, actor ids
    xy: np.ndarray  # (A, K, T, 2) [m] every mode of every agent
    prob: np.ndarray  # (A, K) mode probabilities
    dt: float = 0.1  # [s] between prediction points

    def __post_init__(self):
        object.__setattr__(self, "ids", frozen_array(np.reshape(self.ids, -1), np.int64))
        object.__setattr__(self, "xy", frozen_array(self.xy))
        object.__setattr__(self, "prob", frozen_array(self.prob))

    @classmethod
    def empty(cls) -> PredictionLayer:
        return cls(np.zeros(0, np.int64), np.zeros((0, 1, 1, 2)), np.zeros((0, 1)))

    @classmethod
    def of(cls, prediction: Prediction | None) -> PredictionLayer:
        if prediction is None:
            return cls.empty()
        return cls(prediction.agent_ids, prediction.xy, prediction.prob, prediction.dt)


@dataclass(frozen=True)
class CameraOverlay:
    """What learned perception saw in its camera image, in that image's pixels (u right, v down; pixel
    centres at integer + 0.5, so pixel (i, j) covers u in [i, i + 1), v in [j, j + 1))."""

    boxes: np.ndarray  # (D, 4) [px] u0, v0, u1, v1 of the 2D detections
    labels: tuple[str, ...]  # (D,) detector class names ("car", ..., "light_red")
    scores: np.ndarray  # (D,) [0, 1]
    lanes: tuple[np.ndarray, ...] = ()  # (N_i, 2) [px] perceived lane lines, the parts in front of the camera
    head_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (L, 4) [px] light heads read
    head_states: tuple[str, ...] = ()  # (L,) "red" | "yellow" | "green" | "" (not read)
    attention: np.ndarray | None = None  # (h, w) map over the whole image summing to 1, or None

    def __post_init__(self):
        object.__setattr__(self, "boxes", frozen_array(np.reshape(self.boxes, (-1, 4))))
        object.__setattr__(self, "scores", frozen_array(np.reshape(self.scores, -1)))
        object.__setattr__(self, "labels", tuple(str(c) for c in self.labels))
        object.__setattr__(self, "lanes", tuple(frozen_array(np.reshape(p, (-1, 2))) for p in self.lanes))
        object.__setattr__(self, "head_boxes", frozen_array(np.reshape(self.head_boxes, (-1, 4))))
        object.__setattr__(self, "head_states", tuple(str(s) for s in self.head_states))
        if len(self.labels) != len(self.boxes) or len(self.scores) != len(self.boxes):
            raise ValueError(f"CameraOverlay: {len(self.boxes)} boxes need as many labels and scores, got "
                             f"{len(self.labels)} and {len(self.scores)}")
        if len(self.head_states) != len(self.head_boxes):
            raise ValueError(f"CameraOverlay: {len(self.head_boxes)} head boxes need as many states, got "
                             f"{len(self.head_states)}")
        if self.attention is not None:
            attention = np.asarray(self.attention)
            if attention.ndim != 2 or not attention.size:
                raise ValueError(f"CameraOverlay.attention must be an (h, w) map, got shape {attention.shape}")
            object.__setattr__(self, "attention", frozen_array(attention))


@dataclass(frozen=True)
class LidarOverlay:
    """What learned perception made of the sweep: the fused objects it handed to the tracker."""

    boxes: np.ndarray  # (F, 5) box centre x, y [m] ego frame, yaw [rad], length, width [m]
    cls: np.ndarray  # (F,) int, index into sim.types.CLASS_NAMES

    def __post_init__(self):
        object.__setattr__(self, "boxes", frozen_array(np.reshape(self.boxes, (-1, 5))))
        object.__setattr__(self, "cls", frozen_array(np.reshape(self.cls, -1), np.int64))


@dataclass(frozen=True)
class SensorImages:
    camera: np.ndarray | None  # (H, W, 3) uint8 RGB, or None
    lidar: np.ndarray | None  # (N, 4) x, y, z [m] ego frame, intensity; or None
    camera_note: str = "camera: not available"  # shown when camera is None
    lidar_note: str = "lidar: not available"  # shown when lidar is None
    camera_overlay: CameraOverlay | None = None  # drawn over the camera image; None with oracle perception
    lidar_overlay: LidarOverlay | None = None  # drawn over the lidar panel; None with oracle perception
    source: str = ""  # where the frames come from, shown in the panel titles ("" for the sensor feed)

    def __post_init__(self):
        if self.camera is not None:
            image = np.asarray(self.camera)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"camera image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
            object.__setattr__(self, "camera", frozen_array(image, np.uint8))
        if self.lidar is not None:
            points = np.asarray(self.lidar)
            if points.ndim != 2 or points.shape[1] != 4:
                raise ValueError(f"lidar points must be (N, 4) x, y, z, intensity, got {points.shape}")
            object.__setattr__(self, "lidar", frozen_array(points))


class SensorFeed(Protocol):
    """Where the view's camera and lidar panels come from."""

    def camera_image(self) -> np.ndarray | None: ...  # (H, W, 3) uint8 RGB of the latest frame

    def lidar_points(self) -> np.ndarray | None: ...  # (N, 4) x, y, z [m] ego frame, intensity


def read_sensors(feed: SensorFeed | None) -> SensorImages:
    """The latest camera image and lidar cloud, or placeholders when there is no feed."""
    if feed is None:
        return SensorImages(None, None)
    return SensorImages(feed.camera_image(), feed.lidar_points(),
                        camera_note="camera: no frame yet", lidar_note="lidar: no sweep yet")


def sensors_from_record(record, attention: np.ndarray | None = None) -> SensorImages:
    """The frames one learned-perception cycle used, with what it saw in them.

    `record` is a perception.learned.CycleRecord (camera: CameraFrame, lidar:
    LidarFrame, detections, lanes, heads, fusion), or None before the first
    cycle; `attention` is the cycle's PerceptionOutput.attention.
    """
    if record is None or record.camera is None:
        return SensorImages(None, None, camera_note="camera: perception has not finished a frame yet",
                            lidar_note="lidar: perception has not finished a frame yet", source="perceived")
    camera, lidar = record.camera, record.lidar
    dets = record.detections
    heads = record.heads
    overlay = CameraOverlay(
        boxes=np.array([d.box for d in dets], dtype=float).reshape(-1, 4), labels=tuple(d.cls for d in dets),
        scores=np.array([d.score for d in dets], dtype=float),
        lanes=tuple(p for lane in record.lanes for p in project_to_image(lane.xy, camera.K, camera.T_ego_cam)),
        head_boxes=np.array([box for _, box, _, _ in heads], dtype=float).reshape(-1, 4),
        head_states=tuple(state for _, _, state, _ in heads), attention=attention)
    fused = record.fusion.detections if record.fusion is not None else ()
    lidar_overlay = LidarOverlay(boxes=np.array([[d.x, d.y, d.yaw, d.length, d.width] for d in fused],
                                                dtype=float).reshape(-1, 5),
                                 cls=np.array([d.cls for d in fused], dtype=np.int64))
    return SensorImages(camera.image, lidar.points[:, :4] if lidar is not None else None,
                        camera_overlay=overlay, lidar_overlay=lidar_overlay, source="perceived")


def project_to_image(xy: np.ndarray, K: np.ndarray, T_ego_cam: np.ndarray, z: float = 0.0,
                     near: float = 0.5) -> list[np.ndarray]:
    """Image polylines (M_i, 2) [px] of the ground polyline `xy` (N, 2) [m] (ego frame, at height z [m]).

    T_ego_cam maps the camera's optical frame (x right, y down, z forward) to the
    ego frame; points closer than `near` [m] in front of the camera are left out,
    splitting the line where it passes behind the camera."""
    xy = np.reshape(np.asarray(xy, dtype=float), (-1, 2))
    R, t = np.asarray(T_ego_cam)[:3, :3], np.asarray(T_ego_cam)[:3, 3]
    p_cam = (np.column_stack([xy, np.full(len(xy), z)]) - t) @ R  # (N, 3) camera frame
    ahead = p_cam[:, 2] > near
    uvw = p_cam[ahead] @ np.asarray(K).T
    uv = uvw[:, :2] / uvw[:, 2:3]
    runs = np.split(np.arange(len(uv)), np.flatnonzero(np.diff(np.flatnonzero(ahead)) > 1) + 1)
    return [uv[r] for r in runs if len(r) >= 2]


@dataclass(frozen=True)
class Hud:
    """The numbers and words of the heads-up display."""

    title: str  # scenario name and seed
    mode: str  # "autopilot" | "manual" | "replay"
    t: float  # [s] simulation time
    t_end: float  # [s] scenario duration (live) or last logged time (replay)
    speed_mps: float  # [m/s] ego speed
    accel_mps2: float  # [m/s^2] ego acceleration
    steer_rad: float  # [rad] ego front-wheel angle
    score: float  # [0, 100], NaN until computed
    score_label: str  # "score so far" | "final score"
    behaviour: str  # the planner's active behaviour
    planner: str
    perception: str
    latency_ms: tuple[tuple[str, float], ...]  # (stage, [ms]) of the latest stack cycle
    fps: float  # frames drawn per wall-clock second
    rate: str  # simulation speed: "x0.5" | "x1" | "x2" | "max"
    paused: bool
    status: str = ""  # a line for the user (goal reached, key feedback); "" for none
    lights: tuple[tuple[str, str], ...] = ()  # (light name, state)
    perception_frames: str = ""  # perception off the simulation's clock: "12 of 140 dropped"; "" when in step
    health: str = ""  # perception's health (PerceptionHealth.describe()); "" before the first cycle


@dataclass(frozen=True)
class ViewState:
    """Where the top-down view looks and what it shows."""

    center: tuple[float, float]  # [m] world point at the centre of the top-down view
    scale: float  # [px/m]
    layers: frozenset[str] = frozenset(LAYERS)  # LAYERS shown
    selected: int = -1  # actor id whose state and prediction are shown, -1 for none
    show_help: bool = False


@dataclass(frozen=True)
class Timeline:
    """The replay's time slider."""

    t: float  # [s] current time
    t_end: float  # [s] last logged time
    marks: tuple[tuple[float, str], ...] = ()  # (time [s], label) of events and collisions
    playing: bool = False


@dataclass(frozen=True)
class FrameData:
    ego: EgoState
    ego_box: np.ndarray  # (5,) box centre x, y [m], yaw [rad], length, width [m]
    actors: ActorLayer
    lights: tuple[tuple[str, str], ...]  # (light name, "green" | "yellow" | "red")
    route_xy: np.ndarray  # (P, 2) [m] route centreline
    plan_xy: np.ndarray  # (T, 2) [m] chosen trajectory, (0, 2) when there is none
    plan_t: np.ndarray  # (T,) [s] absolute time of each trajectory point
    candidates: tuple[np.ndarray, ...]  # (N_i, 2) [m] candidate paths the planner weighed, () if it shows none
    prediction: PredictionLayer
    sensors: SensorImages
    hud: Hud
    view: ViewState
    timeline: Timeline | None = None  # replay only
    inspector: tuple[str, ...] = ()  # lines on the selected actor, () for none
    notes: tuple[str, ...] = ()  # layers with nothing to show and why ("predictions: not in log")

    def __post_init__(self):
        object.__setattr__(self, "ego_box", frozen_array(self.ego_box))
        object.__setattr__(self, "route_xy", frozen_array(np.reshape(self.route_xy, (-1, 2))))
        object.__setattr__(self, "plan_xy", frozen_array(np.reshape(self.plan_xy, (-1, 2))))
        object.__setattr__(self, "plan_t", frozen_array(np.reshape(self.plan_t, -1)))
        object.__setattr__(self, "candidates", tuple(frozen_array(np.reshape(c, (-1, 2))) for c in self.candidates))
        object.__setattr__(self, "lights", tuple((str(n), str(s)) for n, s in self.lights))


# ---- gathering ------------------------------------------------------------------------------


def ego_box(x: float, y: float, yaw: float, length: float, width: float, center_offset: float) -> np.ndarray:
    """(5,) ego box from the rear-axle pose: centre x, y [m], yaw [rad], length, width [m]."""
    return np.array([x + center_offset * math.cos(yaw), y + center_offset * math.sin(yaw), yaw, length, width])


def actors_from_world(world) -> ActorLayer:
    table = world.actor_table()
    keep = np.flatnonzero(world.actor_active())
    length, width = world.actor_sizes()
    box = np.column_stack([table[:, 0], table[:, 1], table[:, 2], length, width])[keep]
    names = world.names[1:]
    return ActorLayer(ids=keep + 1, names=tuple(names[i] for i in keep), cls=np.asarray(world.actor_classes())[keep],
                      box=box, speed=table[keep, 3], accel=table[keep, 4])


def actors_from_log(log: RunLog, k: int) -> ActorLayer:
    keep = np.flatnonzero(log.actor_active[k])
    return ActorLayer(ids=np.asarray(log.actor_ids)[keep], names=tuple(log.actor_names[i] for i in keep),
                      cls=np.asarray(log.actor_cls)[keep], box=log.actor_boxes(k)[keep],
                      speed=log.actors[k, keep, 3], accel=log.actors[k, keep, 4])


def plan_from_log(log: RunLog, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The trajectory in force at step k: xy (T, 2), t (T,), and its stack cycle (-1 before the first)."""
    cycle = int(np.searchsorted(log.stack_t, log.t[k] + 1e-9, side="right")) - 1
    if cycle < 0:
        return np.zeros((0, 2)), np.zeros(0), -1
    plan = log.plans[cycle]
    plan = plan[np.all(np.isfinite(plan[:, :3]), axis=1)]
    return plan[:, 1:3], plan[:, 0], cycle


def inspect_actor(actors: ActorLayer, prediction: PredictionLayer, actor_id: int) -> tuple[str, ...]:
    """Lines describing the selected actor: its state, then each predicted mode."""
    i = actors.index_of(actor_id)
    if i < 0:
        return ()
    cx, cy, yaw, length, width = actors.box[i]
    lines = [f"#{actor_id} {actors.names[i]} ({CLASS_NAMES[int(actors.cls[i])]})",
             f"x {cx:8.1f} m   y {cy:8.1f} m",
             f"heading {math.degrees(yaw):6.1f} deg",
             f"speed {actors.speed[i]:5.1f} m/s   accel {actors.accel[i]:+5.1f} m/s2",
             f"size {length:.1f} x {width:.1f} m"]
    rows = np.flatnonzero(prediction.ids == actor_id)
    if not len(rows):
        lines.append("prediction: none")
        return tuple(lines)
    a = int(rows[0])
    horizon = prediction.xy.shape[2] * prediction.dt
    lines.append(f"prediction: {prediction.xy.shape[1]} mode(s) over {horizon:.1f} s")
    for m in range(prediction.xy.shape[1]):
        end = prediction.xy[a, m, -1]
        lines.append(f"  mode {m}: p {prediction.prob[a, m]:.2f}  ends at ({end[0]:.1f}, {end[1]:.1f})")
    return tuple(lines)


def lights_from_codes(names, codes) -> tuple[tuple[str, str], ...]:
    return tuple((str(n), LIGHT_NAMES[int(c)]) for n, c in zip(names, codes))


def actor_at(actors: ActorLayer, xy, margin: float = 1.0) -> int:
    """Id of the actor whose box (grown by margin [m]) holds the point xy [m], nearest centre first; -1 if none."""
    if not len(actors):
        return -1
    box = actors.box
    dx, dy = xy[0] - box[:, 0], xy[1] - box[:, 1]
    c, s = np.cos(box[:, 2]), np.sin(box[:, 2])
    along, across = c * dx + s * dy, -s * dx + c * dy
    inside = (np.abs(along) <= 0.5 * box[:, 3] + margin) & (np.abs(across) <= 0.5 * box[:, 4] + margin)
    if not inside.any():
        return -1
    dist = np.where(inside, np.hypot(dx, dy), np.inf)
    return int(actors.ids[int(np.argmin(dist))])
