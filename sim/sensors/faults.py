"""Sensor effects and faults, as pure functions of (frame, state) -> (frame, state).

Applied in this order to a freshly rendered frame (the camera's exposure gain
is applied by the renderer before tone mapping, see `exposure_gain`):

1. camera pixel noise: additive Gaussian, config.pixel_noise [0-255 units];
2. "black" window: the camera image is all zeros; the lidar sweep has no
   returns (a blinded or blocked sensor);
3. "freeze" window: the last delivered frame (image or points, and labels)
   repeats with the new timestamp (a stuck sensor still stamps its frames);
4. dropout: inside a "dropout" window, or for the camera with probability
   config.dropout, no frame (None); the lidar's config.dropout is per return
   and is drawn by the renderer;
5. latency: the frame joins a queue and comes out at the first capture at or
   after t + config.latency, keeping its capture time t.

Steps 3 to 5 are the same for both sensors (`deliver`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sim.sensors.config import CameraConfig, FaultWindow, LidarConfig
from sim.sensors.frames import CameraFrame, LidarFrame


@dataclass(frozen=True)
class FaultState:
    """One sensor's frames between captures."""

    pending: tuple = ()  # frames captured and waiting out the latency
    last: CameraFrame | LidarFrame | None = None  # the last frame that came out (what a frozen sensor repeats)


@dataclass(frozen=True)
class RigFaultState:
    """Every sensor's fault state, carried by the caller from capture to capture (SensorRig.capture)."""

    camera: FaultState = FaultState()
    lidar: FaultState = FaultState()


def exposure_gain(config: CameraConfig, t: float) -> float:
    """Radiance gain at time t: the configured exposure times every active exposure window."""
    gain = config.exposure
    for f in config.faults:
        if f.kind == "exposure" and f.active(t):
            gain *= f.gain
    return gain


def _active(faults: tuple[FaultWindow, ...], kind: str, t: float) -> bool:
    return any(f.kind == kind and f.active(t) for f in faults)


def deliver(frame: CameraFrame | LidarFrame, state: FaultState, faults: tuple[FaultWindow, ...], latency: float,
            fault: str = "", dropped: bool = False) -> tuple[CameraFrame | LidarFrame | None, FaultState]:
    """Steps 3 to 5 for a camera or lidar frame: freeze, dropout (`dropped`: a random draw said so),
    latency. `fault` labels the frame ("" if earlier steps left it as rendered). Returns the frame that
    comes out at this capture (or None) and the new state."""
    t = frame.t
    if _active(faults, "freeze", t) and state.last is not None:
        frame = replace(state.last, t=t)
        fault = "freeze"
    if fault:
        frame = replace(frame, fault=fault)
    dropped = dropped or _active(faults, "dropout", t)
    pending = state.pending if dropped else state.pending + (frame,)
    due = [f for f in pending if f.t + latency <= t + 1e-9]
    if not due:
        return None, replace(state, pending=pending)
    out = due[-1]
    return out, FaultState(pending=tuple(f for f in pending if f.t > out.t), last=out)


def apply_camera_faults(frame: CameraFrame, state: FaultState, config: CameraConfig,
                        rng: np.random.Generator) -> tuple[CameraFrame | None, FaultState]:
    """The camera's effects and faults, steps 1 to 5; the noise and the dropout draw from `rng`."""
    t = frame.t
    fault = "exposure" if _active(config.faults, "exposure", t) else ""
    if config.pixel_noise > 0.0:
        noisy = frame.image + rng.normal(0.0, config.pixel_noise, frame.image.shape)
        frame = replace(frame, image=np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    if _active(config.faults, "black", t):
        frame = replace(frame, image=np.zeros_like(frame.image))
        fault = "black"
    dropped = config.dropout > 0.0 and rng.random() < config.dropout
    return deliver(frame, state, config.faults, config.latency, fault, dropped)


def apply_lidar_faults(frame: LidarFrame, state: FaultState, config: LidarConfig
                       ) -> tuple[LidarFrame | None, FaultState]:
    """The lidar's faults (no random draws: its noise and per-return dropout are the renderer's)."""
    fault = ""
    if _active(config.faults, "black", frame.t):
        frame = replace(frame, points=frame.points[:0], beam=frame.beam[:0], azimuth=frame.azimuth[:0],
                        label=None if frame.label is None else frame.label[:0],
                        instance=None if frame.instance is None else frame.instance[:0])
        fault = "black"
    return deliver(frame, state, config.faults, config.latency, fault)
