"""Messages that cross package boundaries.

Frozen dataclasses of read-only NumPy arrays, SI units. World frame: x east,
y north, z up. Ego frame: x forward, y left, origin at the rear-axle centre.
Yaw is counter-clockwise in radians; time is seconds from scenario start.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


def frozen_array(a, dtype=np.float64) -> np.ndarray:
    """Copy `a` into a new read-only array, so a frozen message stays frozen."""
    out = np.array(a, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


def _freeze_fields(obj, names: tuple[str, ...], dtype=np.float64) -> None:
    for name in names:
        object.__setattr__(obj, name, frozen_array(getattr(obj, name), dtype))


# Actor classes shared by the simulator, perception and planning.
CLASS_NAMES = ("car", "truck", "pedestrian", "cyclist", "static")
CAR, TRUCK, PEDESTRIAN, CYCLIST, STATIC = range(5)
VULNERABLE = (PEDESTRIAN, CYCLIST)


@dataclass(frozen=True)
class EgoState:
    x: float  # [m] rear-axle centre, world frame
    y: float  # [m]
    yaw: float  # [rad]
    v: float  # [m/s] longitudinal speed
    a: float  # [m/s^2] longitudinal acceleration
    steer: float  # [rad] front-wheel angle
    t: float  # [s]


@dataclass(frozen=True)
class Control:
    steer: float  # [rad] commanded front-wheel angle
    accel: float  # [m/s^2] commanded longitudinal acceleration
    note: str = ""  # set by a controller that substituted a safe command


@dataclass(frozen=True)
class Trajectory:
    t: np.ndarray  # (T,) [s] absolute time
    x: np.ndarray  # (T,) [m]
    y: np.ndarray  # (T,) [m]
    yaw: np.ndarray  # (T,) [rad]
    v: np.ndarray  # (T,) [m/s]
    a: np.ndarray  # (T,) [m/s^2]
    kappa: np.ndarray  # (T,) [1/m]

    def __post_init__(self):
        _freeze_fields(self, ("t", "x", "y", "yaw", "v", "a", "kappa"))
        n = self.t.shape[0]
        for name in ("x", "y", "yaw", "v", "a", "kappa"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"Trajectory.{name} must have shape ({n},), got {getattr(self, name).shape}")

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def sample(self, t: float) -> dict[str, float]:
        """Linear interpolation of every field at absolute time t (clamped)."""
        return {name: float(np.interp(t, self.t, getattr(self, name))) for name in ("x", "y", "yaw", "v", "a", "kappa")}


@dataclass(frozen=True)
class TrackedObject:
    id: int
    cls: int  # index into CLASS_NAMES
    x: float  # [m] box centre, world frame
    y: float  # [m]
    yaw: float  # [rad]
    vx: float  # [m/s] world frame
    vy: float  # [m/s]
    length: float  # [m]
    width: float  # [m]
    covariance: np.ndarray = field(default_factory=lambda: np.eye(4) * 0.01)  # (4, 4) over x, y, vx, vy
    relevance: float = 1.0  # [0, 1] from the attention module; 1 when attention is off
    score: float = 1.0  # [0, 1] confidence that the object exists (learned perception's mean detection score)

    def __post_init__(self):
        _freeze_fields(self, ("covariance",))

    @property
    def speed(self) -> float:
        return float(np.hypot(self.vx, self.vy))


@dataclass(frozen=True)
class LaneEstimate:
    xy: np.ndarray  # (N, 2) [m] polyline in the ego frame
    marking: str  # "solid" | "dashed"
    position: int  # -2, -1 (left of ego lane), 1, 2 (right); ego boundaries are -1 and 1
    confidence: float

    def __post_init__(self):
        _freeze_fields(self, ("xy",))


SENSOR_ISSUES = ("missing", "stale", "frozen", "black", "saturated", "empty", "sparse")
PERCEPTION_MODES = ("nominal", "degraded", "untrusted")


@dataclass(frozen=True)
class SensorStatus:
    """One sensor's health as the stack judged it this cycle, from the data it delivered."""

    name: str  # "camera" | "lidar"
    issue: str = ""  # "" when healthy, else one of SENSOR_ISSUES
    age: float = 0.0  # [s] since the sensor last delivered a usable frame

    @property
    def ok(self) -> bool:
        return not self.issue


@dataclass(frozen=True)
class PerceptionHealth:
    """What perception can still be trusted with.

    `mode` "nominal": every sensor healthy; "degraded": one sensor lost, the
    other still sees (objects within `trusted_range` are reported); "untrusted":
    no sensor can be relied on, and the planner brings the car to a minimal-risk
    stop.
    """

    mode: str = "nominal"  # one of PERCEPTION_MODES
    sensors: tuple[SensorStatus, ...] = ()
    trusted_range: float = float("inf")  # [m] the distance within which an object ahead would be seen

    def __post_init__(self):
        if self.mode not in PERCEPTION_MODES:
            raise ValueError(f"PerceptionHealth.mode must be one of {PERCEPTION_MODES}, got {self.mode!r}")

    def describe(self) -> str:
        """'degraded: camera frozen 0.6 s' style text for the log and the view."""
        faults = [f"{s.name} {s.issue} {s.age:.1f} s" for s in self.sensors if not s.ok]
        return self.mode + (": " + ", ".join(faults) if faults else "")


NOMINAL = PerceptionHealth()


@dataclass(frozen=True)
class PerceptionOutput:
    t: float  # [s]
    objects: tuple[TrackedObject, ...]
    lanes: tuple[LaneEstimate, ...] = ()
    # light name -> "green" | "yellow" | "red" | "unknown" (a head in view whose lamp could not be read)
    light_states: dict = field(default_factory=dict)
    attention: np.ndarray | None = None  # (h, w) map summing to 1, or None
    latency: float = 0.0  # [s]
    range: float = float("inf")  # [m] objects beyond this distance are not reported
    health: PerceptionHealth = NOMINAL  # the sensors' state and what the planner may still trust


@dataclass(frozen=True)
class Prediction:
    agent_ids: np.ndarray  # (A,) int
    xy: np.ndarray  # (A, K, T, 2) [m] world frame
    prob: np.ndarray  # (A, K) mode probabilities, rows sum to 1
    dt: float  # [s] between prediction steps; xy[:, :, 0] is at t0 + dt
    t0: float  # [s]
    length: np.ndarray  # (A,) [m]
    width: np.ndarray  # (A,) [m]
    yaw: np.ndarray  # (A, K, T) [rad]
    # (A,) int: each agent's mode that brakes to a stop along its likeliest path, -1 for none. The planner
    # treats it as a contingency (it would brake too); None: no agent has one
    stop_mode: np.ndarray | None = None

    def __post_init__(self):
        _freeze_fields(self, ("xy", "prob", "length", "width", "yaw"))
        object.__setattr__(self, "agent_ids", frozen_array(self.agent_ids, np.int64))
        if self.stop_mode is None:
            object.__setattr__(self, "stop_mode", frozen_array(np.full(len(self.agent_ids), -1), np.int64))
        else:
            object.__setattr__(self, "stop_mode", frozen_array(self.stop_mode, np.int64))
            if self.stop_mode.shape != self.agent_ids.shape or np.any(self.stop_mode >= self.prob.shape[1]):
                raise ValueError(f"Prediction.stop_mode: expected one mode index (or -1) per agent, "
                                 f"{self.agent_ids.shape}, got {self.stop_mode.tolist()}")


class Planner(Protocol):
    name: str

    def plan(self, inp) -> Trajectory: ...


class Predictor(Protocol):
    def predict(self, perception: PerceptionOutput, horizon: float, dt: float) -> Prediction: ...
