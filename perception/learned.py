"""Learned perception: the car drives on what its camera and lidar see.

Every stack cycle `LearnedPerception(world)` renders the sensor rig at the
world's instant (the simulator's part; its time is not perception latency),
then `perceive(camera, lidar, ego)` runs the pipeline:

    sensor health       each frame checked; missing, stale, frozen, black or empty ones are left out
                        (perception.health), and the output says which sensor is lost
    lane CNN            camera -> ego-frame lane lines (sim.types.LaneEstimate)
    object CNN          camera -> 2D boxes with class, score and distance
    lidar objects       sweep  -> ground removal, clusters, oriented boxes
    fusion              camera class + lidar position and extent (perception.fusion)
    map checks          lidar-only objects must stand on or beside the road; headings follow the lane
    tracking            constant-velocity Kalman + Hungarian (perception.tracking)
    traffic lights      the map's light heads projected into the image, their state read from the pixels

The output is the oracle's type, sim.types.PerceptionOutput. What the map
supplies is what an HD map supplies to a real car: where roads and light heads
are. Whether an object is there, where it is, what it is and which lamp is lit
all come from the sensors. The ego pose comes from the simulator, standing in
for localisation.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from perception.detector import Detection2D, Detector
from perception.fusion import Calibration, FusionConfig, FusionResult, fuse
from perception.health import HealthConfig, HealthState, monitor
from perception.lanes import LaneDetector
from perception.lidar_objects import LidarObject, LidarObjectConfig, detect_lidar_objects
from perception.tracking import Detection, Tracker, TrackerConfig
from sim.types import CYCLIST, PEDESTRIAN, EgoState, LaneEstimate, PerceptionOutput

WEIGHTS = Path(__file__).parent / "weights"
LIGHT_STATES = ("red", "yellow", "green")
# [m] how far ahead learned perception reliably reports a car: a stopped car straight ahead was first reported
# at 46 m (stationary_at_range) and 47 m (lead_brake_one_lane) closing at 28-30 m/s, and intermittently at 60 m
# standing still: the lidar objects reach 60 m, a track needs three hits, and camera-only tracks of far cars
# rarely confirm (their range is too uncertain). The planner keeps to a speed it can stop from within it
LEARNED_FUSED_RANGE = 50.0
HEAD_SIZE = (0.36, 1.0)  # [m] width and height of a light head's housing (sim.sensors.road_scene.HEAD_SIZE)


@dataclass(frozen=True)
class LearnedConfig:
    max_range: float = 80.0  # [m] tracks farther from the ego are not reported
    road_margin: float = 1.0  # [m] a lidar-only vehicle's centre may be this far outside a lane
    # [m] a lidar-only person out of the camera's view may stand this far outside a lane (the pavement);
    # farther out than road_margin its track is reported only once it moves (Detection.moving_only)
    person_margin: float = 6.0
    light_range: float = 60.0  # [m] light heads farther from the camera are not read
    light_confidence: float = 0.6  # a head's reading below this probability counts as not read
    light_memory: float = 1.0  # [s] a light's last reading stands this long when its heads are not seen
    unknown_range: float = 40.0  # [m] a light with a head facing us this near but unread is reported "unknown"
    lidar_thread: bool = True  # run the lidar objects on a thread beside the CNNs
    # torch's intra-op threads for the CNNs. One: the lidar thread takes the second core, and OpenMP threads
    # that outnumber the free cores wait on each other for up to a second a cycle (measured on 2 cores)
    torch_threads: int = 1


# ----------------------------------------------------------------------------- the map


class LaneIndex:
    """Nearest-lane queries on the map: distance to a lane centreline, its half width and heading."""

    def __init__(self, road, step: float = 1.0):
        pts, half, heading = [], [], []
        for lane in road.lanes:
            s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(lane.xy, axis=0).T))])
            at = np.arange(0.0, s[-1] + 1e-9, step)
            pts.append(np.column_stack([np.interp(at, s, lane.xy[:, 0]), np.interp(at, s, lane.xy[:, 1])]))
            half.append(np.full(len(at), 0.5 * lane.width))
            heading.append(np.arctan2(np.interp(at, s, np.sin(lane.heading)), np.interp(at, s, np.cos(lane.heading))))
        self.xy = np.vstack(pts)
        self.half_width = np.concatenate(half)
        self.heading = np.concatenate(heading)
        self.tree = cKDTree(self.xy)

    def query(self, xy: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """(N,) [m] distance outside the nearest lane (negative inside) and (N,) [rad] that lane's heading."""
        xy = np.atleast_2d(xy)
        k = min(k, len(self.xy))
        dist, idx = self.tree.query(xy, k=k)
        dist, idx = dist.reshape(len(xy), k), idx.reshape(len(xy), k)
        outside = dist - self.half_width[idx]
        best = np.argmin(outside, axis=1)
        rows = np.arange(len(xy))
        return outside[rows, best], self.heading[idx[rows, best]]


def lane_heading_yaw(yaw: float, lane_heading: float) -> float:
    """A box heading known only up to pi (lidar) or not at all (NaN: camera), resolved by the lane's."""
    if not math.isfinite(yaw):
        return lane_heading
    flipped = yaw + math.pi
    if abs(math.remainder(flipped - lane_heading, 2 * math.pi)) < abs(math.remainder(yaw - lane_heading, 2 * math.pi)):
        yaw = flipped
    return math.remainder(yaw, 2 * math.pi)


# ----------------------------------------------------------------------------- models, loaded once per process


@functools.lru_cache(maxsize=None)
def shipped_lane_detector() -> LaneDetector:
    return LaneDetector.from_file(WEIGHTS / "lanes.pt")


@functools.lru_cache(maxsize=None)
def shipped_detector() -> Detector:
    return Detector.load(WEIGHTS / "detector.pt")


@functools.lru_cache(maxsize=None)
def shipped_light_classifier():
    """The traffic-light crop classifier, or None when this build has none (the detector's light classes
    are read instead)."""
    path = WEIGHTS / "light_state.pt"
    if not path.is_file():
        return None
    from perception.light_state import LightStateClassifier

    return LightStateClassifier.load(path)


# ----------------------------------------------------------------------------- traffic lights


def head_boxes(heads, ego: EgoState, calib: Calibration, max_range: float) -> list[tuple[int, np.ndarray, float]]:
    """(head index, (4,) [px] box, distance [m]) of every light head that faces the camera and is wholly in view."""
    c, s = math.cos(ego.yaw), math.sin(ego.yaw)
    out = []
    cam = calib.origin
    for k, head in enumerate(heads):
        dx, dy = head.centre[0] - ego.x, head.centre[1] - ego.y
        p_ego = np.array([c * dx + s * dy, -s * dx + c * dy, head.centre[2]])
        to_cam = cam[:2] - p_ego[:2]
        dist = float(np.linalg.norm(p_ego - cam))
        facing = head.facing - ego.yaw
        if dist > max_range or math.cos(facing) * to_cam[0] + math.sin(facing) * to_cam[1] <= 0.5 * dist:
            continue
        p = calib.to_camera(p_ego)
        if p[2] < 1.0:
            continue
        u, v = calib.K[0, 0] * p[0] / p[2] + calib.K[0, 2], calib.K[1, 1] * p[1] / p[2] + calib.K[1, 2]
        hw = 0.5 * HEAD_SIZE[0] * calib.K[0, 0] / p[2]
        hh = 0.5 * HEAD_SIZE[1] * calib.K[1, 1] / p[2]
        box = np.array([u - hw, v - hh, u + hw, v + hh])
        # a head cut by the image border cannot be read (close under a light, only its bottom lamp shows)
        if box[0] < 0 or box[1] < 0 or box[2] > calib.width or box[3] > calib.height:
            continue
        out.append((k, box, dist))
    return out


def read_heads(image: np.ndarray, boxes: list[np.ndarray], detections: list[Detection2D],
               classifier) -> list[tuple[str, float]]:
    """(state, confidence) of each projected head box.

    A detector light box near the projected one refines where the head is (the map and the pose are
    not exact); the crop classifier, when there is one, reads the state, else the detector's class does."""
    lights = [d for d in detections if d.cls.startswith("light_")]
    refined, from_detector = [], []
    for box in boxes:
        size = max(box[2] - box[0], box[3] - box[1], 4.0)
        centre = 0.5 * (box[:2] + box[2:])
        best, best_d = None, 1.5 * size
        for d in lights:
            dc = 0.5 * (np.array(d.box[:2]) + np.array(d.box[2:]))
            dist = float(np.hypot(*(dc - centre)))
            if dist < best_d:
                best, best_d = d, dist
        refined.append(np.array(best.box) if best is not None else box)
        from_detector.append((best.cls[len("light_"):], best.score) if best is not None else ("", 0.0))
    if classifier is None or not boxes:
        return from_detector
    states, prob = classifier.classify(image, np.array(refined))
    return [(st, float(p.max())) for st, p in zip(states, prob)]


# ----------------------------------------------------------------------------- the pipeline


@dataclass
class CycleRecord:
    """What one cycle saw, for the view's overlays and for evaluation."""

    t: float = 0.0
    camera: object = None  # sim.sensors.frames.CameraFrame
    lidar: object = None  # sim.sensors.frames.LidarFrame
    detections: list = field(default_factory=list)  # Detection2D
    lidar_objects: list = field(default_factory=list)  # LidarObject
    fusion: FusionResult | None = None
    lanes: tuple = ()
    heads: list = field(default_factory=list)  # (light name, box, state, confidence)
    ms: dict = field(default_factory=dict)  # stage -> [ms]


class LearnedPerception:
    """Camera and lidar frames in, tracked objects, lanes and light states out."""

    name = "learned"

    def __init__(self, road, rig, lanes: LaneDetector, detector: Detector, light_classifier=None,
                 config: LearnedConfig = LearnedConfig(), tracker: TrackerConfig = TrackerConfig(),
                 lidar: LidarObjectConfig = LidarObjectConfig(), fusion: FusionConfig = FusionConfig(),
                 health: HealthConfig = HealthConfig(fused_range=LEARNED_FUSED_RANGE)):
        self.road, self.rig = road, rig
        self.lane_detector, self.detector, self.light_classifier = lanes, detector, light_classifier
        self.config, self.lidar_config, self.fusion_config = config, lidar, fusion
        self.tracker = Tracker(tracker)
        if config.torch_threads > 0:
            torch.set_num_threads(config.torch_threads)  # process-wide: this process runs the car
        self.lanes_index = LaneIndex(road)
        self.heads = rig.static.heads if rig is not None else ()
        self.health_config = health
        self._health = HealthState()
        self._faults = None
        self._executor: ThreadPoolExecutor | None = None
        self._lights: dict[str, tuple[str, float]] = {}  # light name -> (state, time read)
        self.last = CycleRecord()

    @classmethod
    def for_world(cls, world, threads: int = 1) -> "LearnedPerception":
        """The shipped models on the world's sensor rig (the scenario's `sensors:` section)."""
        from sim.sensors.config import sensor_config
        from sim.sensors.rig import SensorRig

        config = sensor_config(world.scenario.sensors, threads=threads)
        if config.camera is None or config.lidar is None:
            raise ValueError(f"scenario '{world.scenario.name}': learned perception needs both a camera and a "
                             f"lidar; the `sensors:` section turns off "
                             f"{'the camera' if config.camera is None else 'the lidar'}")
        return cls(world.road, SensorRig(world, config), shipped_lane_detector(), shipped_detector(),
                   shipped_light_classifier())

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self.rig is not None:
            self.rig.close()

    def __call__(self, world) -> PerceptionOutput:
        t0 = time.perf_counter()
        camera, lidar, self._faults = self.rig.capture(world, self._faults)
        render = time.perf_counter() - t0
        out = self.perceive(camera, lidar, world.ego_state())
        self.last.ms["render"] = render * 1e3
        return out

    def perceive(self, camera, lidar, ego: EgoState) -> PerceptionOutput:
        """One cycle on given frames (camera: sim.sensors.frames.CameraFrame, lidar: LidarFrame; None when the
        sensor delivered none). Frames the health monitor finds unusable are left out and the pipeline runs on
        the rest; with neither, the tracks are predicted forward (and age out by the tracker's rules) and the
        lights keep their memory."""
        rec = CycleRecord(t=ego.t, camera=camera, lidar=lidar)
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            rec.ms[stage] = (now - clock) * 1e3
            clock = now

        start = clock
        health, self._health = monitor(camera, lidar, ego, self._health, self.health_config)
        camera = camera if self._health.camera.usable else None
        points = lidar.points if self._health.lidar.usable else None
        calib = None if camera is None else Calibration(np.asarray(camera.K), np.asarray(camera.T_ego_cam),
                                                        camera.width, camera.height)
        # the lidar pipeline (NumPy, SciPy and Numba, mostly without the GIL) runs beside the two CNNs
        lidar_job = self._pool().submit(self._lidar_objects, points) \
            if self.config.lidar_thread and points is not None else None
        if camera is not None:
            rec.lanes = self.lane_detector.detect(camera.image, camera.K, camera.T_ego_cam)
            lap("lanes")
            rec.detections = self.detector.detect(camera.image, camera.K, camera.T_ego_cam)
            lap("detector")
        if points is not None:
            rec.lidar_objects, rec.ms["lidar_own"] = (lidar_job.result() if lidar_job is not None
                                                      else self._lidar_objects(points))
            lap("lidar")  # with the lidar thread: the wait for it after the CNNs
        rec.fusion = fuse(rec.detections, rec.lidar_objects, calib, self._keep_lidar(ego), self.fusion_config,
                          points, lidar_lost=self._health.lidar.lost)
        lidar_only = range(len(rec.fusion.matched), len(rec.fusion.matched) + len(rec.fusion.lidar_only))
        detections = self._on_map(rec.fusion.detections, ego, lidar_only)
        lap("fusion")
        objects = self.tracker.update(detections, ego.t, ego=ego)
        objects = tuple(o for o in objects if math.hypot(o.x - ego.x, o.y - ego.y) <= self.config.max_range)
        lap("tracking")
        lights = self._read_lights(camera.image, rec, ego, calib) if camera is not None else self._remembered(ego.t)
        lap("lights")
        rec.ms["total"] = (time.perf_counter() - start) * 1e3
        self.last = rec
        return PerceptionOutput(t=ego.t, objects=objects, lanes=tuple(rec.lanes), light_states=lights,
                                latency=rec.ms["total"] * 1e-3, range=self.config.max_range, health=health)

    def _lidar_objects(self, points: np.ndarray) -> tuple[list[LidarObject], float]:
        t0 = time.perf_counter()
        return detect_lidar_objects(points, self.lidar_config), (time.perf_counter() - t0) * 1e3

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lidar-objects")
        return self._executor

    # ---- map checks ------------------------------------------------------------------

    def _keep_lidar(self, ego: EgoState):
        """Which unmatched lidar objects stand on their own: vehicles on a lane, people beside one."""
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        cfg = self.config

        def keep(obj: LidarObject, in_view: bool) -> bool:
            # a pedestrian-sized cluster is as often a tree trunk or a pole: in the camera's view only the
            # camera can vouch for it; outside the view it must stand on the road itself
            if obj.cls in (PEDESTRIAN, CYCLIST) and in_view:
                return False
            xy = np.array([ego.x + c * obj.x - s * obj.y, ego.y + s * obj.x + c * obj.y])
            outside, _ = self.lanes_index.query(xy)
            return bool(outside[0] <= (cfg.person_margin if obj.cls in (PEDESTRIAN, CYCLIST) else cfg.road_margin))

        return keep

    def _on_map(self, detections: tuple[Detection, ...], ego: EgoState, lidar_only=()) -> list[Detection]:
        """Headings resolved by the lane each detection stands in (lidar: up to pi; camera: unknown); the
        lidar-only ones (indices `lidar_only`) off the road marked `moving_only`."""
        if not detections:
            return []
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        xy = np.array([[ego.x + c * d.x - s * d.y, ego.y + s * d.x + c * d.y] for d in detections])
        outside, heading = self.lanes_index.query(xy)
        off_road = {i for i in lidar_only if outside[i] > self.config.road_margin}
        out = []
        for i, (d, h) in enumerate(zip(detections, heading)):
            yaw = lane_heading_yaw(d.yaw + ego.yaw if math.isfinite(d.yaw) else float("nan"), float(h)) - ego.yaw
            out.append(dataclasses.replace(d, yaw=math.remainder(yaw, 2 * math.pi), moving_only=i in off_road))
        return out

    # ---- traffic lights --------------------------------------------------------------

    def _read_lights(self, image: np.ndarray, rec: CycleRecord, ego: EgoState, calib: Calibration) -> dict:
        cfg = self.config
        seen = head_boxes(self.heads, ego, calib, cfg.light_range)
        readings = read_heads(image, [box for _, box, _ in seen], rec.detections, self.light_classifier)
        best: dict[str, tuple[str, float]] = {}
        unread: set[str] = set()
        for (k, box, dist), (state, conf) in zip(seen, readings):
            name = self.heads[k].name
            rec.heads.append((name, box, state, conf))
            if state in LIGHT_STATES and conf >= cfg.light_confidence:
                if conf > best.get(name, ("", 0.0))[1]:
                    best[name] = (state, conf)
            elif dist <= cfg.unknown_range:
                unread.add(name)
        for name, (state, _) in best.items():
            self._lights[name] = (state, ego.t)
        states = self._remembered(ego.t)
        for name in unread - set(best):
            states.setdefault(name, "unknown")
        return states

    def _remembered(self, t: float) -> dict:
        """The lights read within the last light_memory seconds before t [s], with their last state."""
        return {name: st for name, (st, t_read) in self._lights.items() if t - t_read <= self.config.light_memory}
