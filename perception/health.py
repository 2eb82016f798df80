"""Sensor health: which sensors still deliver data the stack can use, judged every cycle.

`monitor(camera, lidar, ego, state)` reads like the checklist:
`camera_issue` / `lidar_issue` (what is wrong with this cycle's frame, from the
frame itself and the one before it) -> `remember` (hysteresis: a sensor is lost
once its newest usable frame is older than `lost_after`, and back once its
frames have been usable for `recover_after`) -> `assess` (the mode, and the
range the working sensor still covers). Only the delivered data is read, never
the simulator's ground-truth fault labels (CameraFrame.fault, LidarFrame.fault).

`scheduled_health(sensors, t)` is the verdict of a perfect monitor that reads
the scenario's fault schedule instead of frames: the oracle's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from perception.lidar_objects import LidarObjectConfig
from sim.types import EgoState, PerceptionHealth, SensorStatus


@dataclass(frozen=True)
class HealthConfig:
    # [s] a frame captured longer ago than this is stale and not used: perception places what it sees at the
    # cycle's time, so a frame's age is position error (7.5 m at a closing speed of 30 m/s). A latency of one
    # 10 Hz cycle (0.1 s, 3 m) stays usable, 0.5 s does not
    stale_after: float = 0.25
    # [s] a sensor is lost once its newest usable frame is older than this: one or two unusable frames in a row
    # at 10 Hz are not a fault, a third is (the tracker drops a track after three missed cycles too)
    lost_after: float = 0.25
    # [s] a lost sensor is back once its frames have been usable this long (eleven in a row at 10 Hz). A camera
    # that drops half its frames at random came back every few seconds with five (lead_brake, learned: 18 mode
    # changes in 30 s), and the car's speed limit with it; eleven in a row happen once in 2,000 cycles
    recover_after: float = 0.95
    # [m] the ego moved at least this far between two frames (speed times their time apart): they must differ.
    # Two camera frames differ by 0.43 to 0.72 (mean absolute difference, 0-255 units) 0.05 m apart and by 0.95
    # to 1.42 0.1 m apart, without pixel noise (measured in five of the shipped scenes): it grows with the step
    moving_step: float = 0.2
    frozen_diff: float = 0.5  # [0-255 units] mean absolute difference below which an image repeats the last one
    # [0-255 units] values at or below dark_level are black, at or above bright_level saturated; an image with
    # more than blank_share of its values either way has lost half its content. In the shipped scenes, dusk
    # included, at most 0.3% of the values are at either end (measured every 0.5 s over 10 s of each)
    dark_level: int = 5
    bright_level: int = 250
    blank_share: float = 0.5
    # a sweep with fewer returns than this share of the running normal is sparse. Every beam that looks down
    # returns from the road or from something nearer (23 of the default lidar's 32), so the count of a working
    # lidar changes by a few per cent over a run (at least 0.97 of its running normal in the shipped scenes)
    sparse_share: float = 0.5
    normal_weight: float = 0.1  # weight of each usable sweep's count in the running normal
    # [m] what one sensor alone still sees reliably ahead. The camera's detector was tested within 40 m on every
    # road-user class (cars within 60 m, pedestrians and cyclists within 40 m; README, shipped weights), and its
    # distance estimate flattens out past 50 m (lead_brake with the lidar lost: while a braking car came from 62
    # to 53 m, the detector read 55 to 60 m). The lidar objects reach LidarObjectConfig.max_range
    camera_range: float = 40.0
    lidar_range: float = LidarObjectConfig.max_range
    # [m] what both sensors together report reliably ahead; inf: no limit known (the oracle's). Learned
    # perception's is LEARNED_FUSED_RANGE
    fused_range: float = float("inf")
    # the fault schedule's dropout probability from which a perfect monitor calls a sensor lost: a camera that
    # drops half its frames misses three in a row far more often than it delivers eleven, and a lidar that
    # loses half its returns is sparse (sparse_share)
    lost_dropout: float = 0.5


@dataclass(frozen=True)
class SensorMemory:
    """What the monitor keeps of one sensor from cycle to cycle."""

    usable: bool = False  # this cycle's frame is usable
    issue: str = ""  # the latest unusable frame's issue (sim.types.SENSOR_ISSUES)
    lost: bool = False
    usable_t: float = math.nan  # [s] capture time of the newest usable frame (the first cycle's time before any)
    good_since: float = math.nan  # [s] cycle time from which every frame was usable; nan after an unusable one
    previous: np.ndarray | None = None  # the last delivered image (H, W, 3) or points (N, 4), read-only
    previous_t: float = math.nan  # [s] its capture time
    normal: float = math.nan  # lidar: running mean of the returns in a usable sweep


@dataclass(frozen=True)
class HealthState:
    camera: SensorMemory = SensorMemory()
    lidar: SensorMemory = SensorMemory()


def _should_differ(memory: SensorMemory, frame_t: float, speed: float, cfg: HealthConfig) -> bool:
    """The ego moved far enough since the previous frame that this one must differ from it."""
    return memory.previous is not None and speed * (frame_t - memory.previous_t) >= cfg.moving_step


def camera_issue(frame, t: float, speed: float, memory: SensorMemory, cfg: HealthConfig) -> str:
    """What is wrong with this cycle's camera frame (sim.sensors.frames.CameraFrame or None) at cycle time
    t [s], the ego driving at speed [m/s]; "" if nothing."""
    if frame is None:
        return "missing"
    if t - frame.t > cfg.stale_after:
        return "stale"
    image = frame.image
    if np.count_nonzero(image <= cfg.dark_level) > cfg.blank_share * image.size:
        return "black"
    if np.count_nonzero(image >= cfg.bright_level) > cfg.blank_share * image.size:
        return "saturated"
    if _should_differ(memory, frame.t, speed, cfg) and memory.previous.shape == image.shape and \
            np.abs(image.astype(np.int16) - memory.previous).mean() < cfg.frozen_diff:
        return "frozen"
    return ""


def lidar_issue(frame, t: float, speed: float, memory: SensorMemory, cfg: HealthConfig) -> str:
    """What is wrong with this cycle's lidar sweep (sim.sensors.frames.LidarFrame or None); "" if nothing."""
    if frame is None:
        return "missing"
    if t - frame.t > cfg.stale_after:
        return "stale"
    if len(frame) == 0:
        return "empty"
    if len(frame) < cfg.sparse_share * memory.normal:  # never before a first usable sweep (normal nan)
        return "sparse"
    if _should_differ(memory, frame.t, speed, cfg) and np.array_equal(frame.points, memory.previous):
        return "frozen"
    return ""


def remember(memory: SensorMemory, issue: str, frame, data: np.ndarray | None, t: float,
             cfg: HealthConfig) -> SensorMemory:
    """The sensor's memory after this cycle's frame (None: missing) with `issue` ("" if usable); `data` is its
    image or points. Lost once the newest usable frame is older than lost_after; back after recover_after of
    usable frames."""
    usable = not issue
    usable_t = frame.t if usable else (memory.usable_t if math.isfinite(memory.usable_t) else t)
    good_since = (memory.good_since if math.isfinite(memory.good_since) else t) if usable else math.nan
    if memory.lost:
        lost = not (usable and t - good_since >= cfg.recover_after)
    else:
        lost = t - usable_t > cfg.lost_after
    return replace(memory, usable=usable, issue=issue or memory.issue, lost=lost, usable_t=usable_t,
                   good_since=good_since, previous=memory.previous if frame is None else data,
                   previous_t=memory.previous_t if frame is None else frame.t)


def running_normal(memory: SensorMemory, count: int, cfg: HealthConfig) -> SensorMemory:
    """The lidar's memory with a usable sweep's `count` of returns folded into its running normal."""
    normal = count if math.isnan(memory.normal) else memory.normal + cfg.normal_weight * (count - memory.normal)
    return replace(memory, normal=normal)


def status(name: str, memory: SensorMemory, t: float) -> SensorStatus:
    """What the health reports of a sensor at t [s]: its issue only while it is lost, and the age of its newest
    usable frame."""
    return SensorStatus(name, memory.issue if memory.lost else "", t - memory.usable_t)


def assess(camera: SensorStatus, lidar: SensorStatus, cfg: HealthConfig = HealthConfig()) -> PerceptionHealth:
    """Both sensors working: nominal. One lost: degraded, trusting the range the other covers alone. Both lost,
    or one lost and the other's newest usable frame stale: untrusted."""
    sensors = (camera, lidar)
    working = [s for s in sensors if s.ok]
    if len(working) == len(sensors):
        return PerceptionHealth("nominal", sensors, trusted_range=cfg.fused_range)
    if not working or working[0].age > cfg.stale_after:
        return PerceptionHealth("untrusted", sensors, trusted_range=0.0)
    reach = {"camera": cfg.camera_range, "lidar": cfg.lidar_range}
    return PerceptionHealth("degraded", sensors, trusted_range=reach[working[0].name])


def monitor(camera, lidar, ego: EgoState, state: HealthState, cfg: HealthConfig = HealthConfig()
            ) -> tuple[PerceptionHealth, HealthState]:
    """This cycle's health from the delivered camera frame and lidar sweep (either may be None), and the new
    state; `state.camera.usable` and `state.lidar.usable` say whether this cycle's frames may be used."""
    t = ego.t
    cam = remember(state.camera, camera_issue(camera, t, ego.v, state.camera, cfg), camera,
                   None if camera is None else camera.image, t, cfg)
    lid = remember(state.lidar, lidar_issue(lidar, t, ego.v, state.lidar, cfg), lidar,
                   None if lidar is None else lidar.points, t, cfg)
    if lid.usable:
        lid = running_normal(lid, len(lidar), cfg)
    return assess(status("camera", cam, t), status("lidar", lid, t), cfg), HealthState(cam, lid)


# ----------------------------------------------------------------------------- the schedule (the oracle's)

WINDOW_ISSUES = {"camera": {"dropout": "missing", "freeze": "frozen", "black": "black"},
                 "lidar": {"dropout": "missing", "freeze": "frozen", "black": "empty"}}
DROPOUT_ISSUES = {"camera": "missing", "lidar": "sparse"}  # a frame dropped; returns dropped


def scheduled_status(name: str, config, t: float, cfg: HealthConfig = HealthConfig()) -> SensorStatus:
    """A perfect monitor's verdict on the sensor `name` ("camera" | "lidar") of the rig's `config`
    (sim.sensors.config.CameraConfig or LidarConfig; None: the rig has none) at t [s]: lost while a dropout,
    freeze or black window is active (age since its start), or for the whole run when it is missing, its
    latency is stale or its dropout probability reaches lost_dropout (age since the run's start)."""
    if config is None:
        return SensorStatus(name, "missing", t)
    for f in config.faults:
        if f.active(t) and f.kind in WINDOW_ISSUES[name]:
            return SensorStatus(name, WINDOW_ISSUES[name][f.kind], t - f.start)
    if config.latency > cfg.stale_after:
        return SensorStatus(name, "stale", t)
    if config.dropout >= cfg.lost_dropout:
        return SensorStatus(name, DROPOUT_ISSUES[name], t)
    return SensorStatus(name)


def scheduled_health(sensors, t: float, cfg: HealthConfig = HealthConfig()) -> PerceptionHealth:
    """The health at t [s] of the rig `sensors` (sim.sensors.config.SensorConfig) by its fault schedule."""
    return assess(scheduled_status("camera", sensors.camera, t, cfg), scheduled_status("lidar", sensors.lidar, t, cfg),
                  cfg)
