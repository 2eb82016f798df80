"""Sensor settings: plain frozen dataclasses, validated once on construction.

The scenario schema maps its `sensors:` section onto `SensorConfig`; every
field has a default, so `SensorConfig()` is a working rig (one front camera,
one roof lidar, daylight, no faults). Angles are degrees here, at the user's
edge, and radians everywhere inside.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

LIGHTING_NAMES = ("day", "dusk", "overcast")
FAULT_KINDS = ("dropout", "freeze", "black", "exposure")
LIDAR_FAULT_KINDS = ("dropout", "freeze", "black")  # a lidar has no exposure


def _check(owner: str, name: str, ok: bool, expected: str, value) -> None:
    if not ok:
        raise ValueError(f"{owner}.{name}: expected {expected}, got {value!r}")


def _int_in(value, lo: int, hi: int) -> bool:
    return isinstance(value, int) and lo <= value <= hi


@dataclass(frozen=True)
class Mount:
    """A sensor's pose on the ego: position in the ego frame (x forward, y left,
    z up, origin at the rear-axle centre on the ground) and orientation."""

    x: float = 0.0  # [m]
    y: float = 0.0  # [m]
    z: float = 0.0  # [m]
    roll_deg: float = 0.0  # [deg] about the forward axis
    pitch_deg: float = 0.0  # [deg] positive looks down
    yaw_deg: float = 0.0  # [deg] positive looks left

    def __post_init__(self):
        for name in ("x", "y", "z", "roll_deg", "pitch_deg", "yaw_deg"):
            value = getattr(self, name)
            _check("Mount", name, isinstance(value, (int, float)) and math.isfinite(value), "a finite number", value)


@dataclass(frozen=True)
class FaultWindow:
    """A sensor fault active for start <= t < end (sim.sensors.faults says what each kind does)."""

    kind: str  # "dropout" (no frame) | "freeze" (last frame repeats) | "black" (no light, no returns) | "exposure"
    start: float  # [s]
    end: float  # [s]
    gain: float = 1.0  # exposure multiplier while active (kind "exposure")

    def __post_init__(self):
        _check("FaultWindow", "kind", self.kind in FAULT_KINDS, f"one of {FAULT_KINDS}", self.kind)
        _check("FaultWindow", "end", self.end > self.start, f"end > start ({self.start})", self.end)
        _check("FaultWindow", "gain", self.gain >= 0.0, "gain >= 0", self.gain)

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True)
class CameraConfig:
    width: int = 320  # [px]
    height: int = 160  # [px]
    hfov_deg: float = 80.0  # [deg] horizontal field of view; square pixels
    mount: Mount = Mount(x=1.9, y=0.0, z=1.45, pitch_deg=3.0)
    near: float = 0.3  # [m] nothing closer is drawn
    max_label_range: float = 100.0  # [m] objects and lane points farther than this get no label
    pixel_noise: float = 0.0  # [0-255 units] std of additive Gaussian noise
    exposure: float = 1.0  # gain on scene radiance before tone mapping
    dropout: float = 0.0  # probability that a frame is not delivered
    latency: float = 0.0  # [s] a frame captured at t is delivered at the first capture >= t + latency
    faults: tuple[FaultWindow, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "faults", tuple(self.faults))
        _check("CameraConfig", "width", _int_in(self.width, 16, 4096), "an int in [16, 4096]", self.width)
        _check("CameraConfig", "height", _int_in(self.height, 16, 4096), "an int in [16, 4096]", self.height)
        _check("CameraConfig", "hfov_deg", 10.0 <= self.hfov_deg <= 150.0, "degrees in [10, 150]", self.hfov_deg)
        _check("CameraConfig", "near", 0.01 <= self.near <= 5.0, "metres in [0.01, 5]", self.near)
        _check("CameraConfig", "max_label_range", self.max_label_range > self.near, "more than near",
               self.max_label_range)
        _check("CameraConfig", "pixel_noise", self.pixel_noise >= 0.0, ">= 0", self.pixel_noise)
        _check("CameraConfig", "exposure", self.exposure > 0.0, "> 0", self.exposure)
        _check("CameraConfig", "dropout", 0.0 <= self.dropout <= 1.0, "a probability in [0, 1]", self.dropout)
        _check("CameraConfig", "latency", self.latency >= 0.0, "seconds >= 0", self.latency)
        for k, f in enumerate(self.faults):
            _check("CameraConfig", f"faults[{k}]", isinstance(f, FaultWindow), "a FaultWindow", f)


@dataclass(frozen=True)
class LidarConfig:
    beams: int = 32
    azimuth_steps: int = 1024  # per revolution; azimuth 0 looks along the ego's x axis, counter-clockwise
    fov_up_deg: float = 10.0  # [deg] elevation of the top beam
    fov_down_deg: float = -30.0  # [deg] elevation of the bottom beam; beams evenly spaced between
    max_range: float = 100.0  # [m]
    min_range: float = 0.5  # [m]
    range_noise: float = 0.02  # [m] std of Gaussian range noise
    dropout: float = 0.0  # probability that a return is lost
    intensity_noise: float = 0.02  # std of additive intensity noise
    mount: Mount = Mount(x=1.4, y=0.0, z=1.9)
    latency: float = 0.0  # [s] a sweep taken at t is delivered at the first capture >= t + latency
    faults: tuple[FaultWindow, ...] = ()  # of LIDAR_FAULT_KINDS

    def __post_init__(self):
        object.__setattr__(self, "faults", tuple(self.faults))
        _check("LidarConfig", "beams", _int_in(self.beams, 1, 256), "an int in [1, 256]", self.beams)
        _check("LidarConfig", "azimuth_steps", _int_in(self.azimuth_steps, 8, 8192), "an int in [8, 8192]",
               self.azimuth_steps)
        _check("LidarConfig", "fov_up_deg", -89.0 <= self.fov_down_deg < self.fov_up_deg <= 89.0,
               "-89 <= fov_down_deg < fov_up_deg <= 89", (self.fov_down_deg, self.fov_up_deg))
        _check("LidarConfig", "max_range", self.max_range > self.min_range > 0.0, "max_range > min_range > 0",
               (self.min_range, self.max_range))
        _check("LidarConfig", "range_noise", self.range_noise >= 0.0, ">= 0", self.range_noise)
        _check("LidarConfig", "dropout", 0.0 <= self.dropout <= 1.0, "a probability in [0, 1]", self.dropout)
        _check("LidarConfig", "intensity_noise", self.intensity_noise >= 0.0, ">= 0", self.intensity_noise)
        _check("LidarConfig", "latency", self.latency >= 0.0, "seconds >= 0", self.latency)
        for k, f in enumerate(self.faults):
            _check("LidarConfig", f"faults[{k}]", isinstance(f, FaultWindow) and f.kind in LIDAR_FAULT_KINDS,
                   f"a FaultWindow of kind {' | '.join(LIDAR_FAULT_KINDS)} (exposure is the camera's only)", f)


@dataclass(frozen=True)
class SensorConfig:
    """Everything the sensor rig needs besides the world. None switches a sensor off."""

    camera: CameraConfig | None = field(default_factory=CameraConfig)
    lidar: LidarConfig | None = field(default_factory=LidarConfig)
    lighting: str = "day"  # one of LIGHTING_NAMES
    sun_azimuth_deg: float = 35.0  # [deg] world frame, counter-clockwise from east
    threads: int = 1  # 1: all work on the calling thread; 2 or more: a helper process and a drawing thread; 0: cores

    def __post_init__(self):
        _check("SensorConfig", "lighting", self.lighting in LIGHTING_NAMES, f"one of {LIGHTING_NAMES}", self.lighting)
        _check("SensorConfig", "threads", _int_in(self.threads, 0, 1024), "an int in [0, 1024]", self.threads)
        _check("SensorConfig", "sun_azimuth_deg", math.isfinite(self.sun_azimuth_deg), "a finite number",
               self.sun_azimuth_deg)


def sensor_config(spec, threads: int = 1) -> SensorConfig:
    """The rig's settings from a scenario's `sensors:` section (scenarios.schema.SensorsSpec)."""
    def mount(m, default: Mount) -> Mount:
        if m is None:
            return default
        return Mount(x=m.x, y=m.y, z=m.z, roll_deg=m.roll_deg, pitch_deg=m.pitch_deg, yaw_deg=m.yaw_deg)

    camera = lidar = None
    if spec.camera is not None:
        c = spec.camera
        camera = CameraConfig(width=c.width, height=c.height, hfov_deg=c.hfov_deg,
                              mount=mount(c.mount, CameraConfig().mount), pixel_noise=c.pixel_noise,
                              exposure=c.exposure, dropout=c.dropout, latency=c.latency,
                              faults=tuple(FaultWindow(f.kind, f.start, f.end, f.gain) for f in c.faults))
    if spec.lidar is not None:
        li = spec.lidar
        lidar = LidarConfig(beams=li.beams, azimuth_steps=li.azimuth_steps, fov_up_deg=li.fov_up_deg,
                            fov_down_deg=li.fov_down_deg, max_range=li.max_range, range_noise=li.range_noise,
                            dropout=li.dropout, mount=mount(li.mount, LidarConfig().mount), latency=li.latency,
                            faults=tuple(FaultWindow(f.kind, f.start, f.end) for f in li.faults))
    return SensorConfig(camera=camera, lidar=lidar, lighting=spec.lighting, sun_azimuth_deg=spec.sun_azimuth_deg,
                        threads=threads)
