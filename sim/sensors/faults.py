"""Camera effects and faults, as a pure function of (frame, state) -> (frame, state).

Applied in this order to a freshly rendered frame (the exposure gain is
applied by the renderer before tone mapping, see `exposure_gain`):

1. pixel noise: additive Gaussian, config.pixel_noise [0-255 units];
2. "black" window: the image is all zeros;
3. "freeze" window: the image and labels of the last delivered frame repeat
   with the new timestamp (a stuck camera still stamps its frames);
4. dropout: with probability config.dropout, or inside a "dropout" window, no
   frame (None);
5. latency: the frame joins a queue and comes out at the first capture at or
   after t + config.latency, keeping its capture time t.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sim.sensors.config import CameraConfig
from sim.sensors.frames import CameraFrame


@dataclass(frozen=True)
class FaultState:
    pending: tuple[CameraFrame, ...] = ()  # captured, waiting out the latency
    last: CameraFrame | None = None  # the last frame that came out (what a frozen camera repeats)


def exposure_gain(config: CameraConfig, t: float) -> float:
    """Radiance gain at time t: the configured exposure times every active exposure window."""
    gain = config.exposure
    for f in config.faults:
        if f.kind == "exposure" and f.active(t):
            gain *= f.gain
    return gain


def _active(config: CameraConfig, kind: str, t: float) -> bool:
    return any(f.kind == kind and f.active(t) for f in config.faults)


def apply_camera_faults(frame: CameraFrame, state: FaultState, config: CameraConfig,
                        rng: np.random.Generator) -> tuple[CameraFrame | None, FaultState]:
    t = frame.t
    fault = "exposure" if _active(config, "exposure", t) else ""
    if config.pixel_noise > 0.0:
        noisy = frame.image + rng.normal(0.0, config.pixel_noise, frame.image.shape)
        frame = replace(frame, image=np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    if _active(config, "black", t):
        frame = replace(frame, image=np.zeros_like(frame.image))
        fault = "black"
    if _active(config, "freeze", t) and state.last is not None:
        frame = replace(state.last, t=t)
        fault = "freeze"
    if fault:
        frame = replace(frame, fault=fault)
    dropped = (config.dropout > 0.0 and rng.random() < config.dropout) or _active(config, "dropout", t)
    pending = state.pending if dropped else state.pending + (frame,)
    due = [f for f in pending if f.t + config.latency <= t + 1e-9]
    if not due:
        return None, replace(state, pending=pending)
    out = due[-1]
    return out, FaultState(pending=tuple(f for f in pending if f.t > out.t), last=out)
