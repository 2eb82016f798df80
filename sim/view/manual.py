"""Manual driving: held keys to an ego command (no pygame; the view maps key codes to names)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from sim.types import Control

DRIVE_KEYS = ("left", "right", "up", "down")


@dataclass(frozen=True)
class ManualConfig:
    wheelbase: float  # [m]
    max_steer: float  # [rad]
    lateral_accel: float = 3.0  # [m/s^2] a held steering key aims at this lateral acceleration
    min_steer: float = 0.25  # [rad] steering at walking pace, where the lateral limit allows full lock
    throttle: float = 2.0  # [m/s^2]
    brake: float = 6.0  # [m/s^2]
    coast: float = 0.3  # [m/s^2] deceleration with no pedal held
    stopped: float = 0.1  # [m/s] slower than this, braking and coasting command zero (no reverse)


def manual_command(held: frozenset[str], v: float, cfg: ManualConfig) -> Control:
    """The command for the held DRIVE_KEYS at ego speed v [m/s].

    Steering holds a lateral acceleration of about cfg.lateral_accel, so the
    same key turns gently at speed and sharply when slow; pedals are on/off.
    """
    steer_mag = math.atan(cfg.wheelbase * cfg.lateral_accel / max(v * v, 1e-6))
    steer_mag = min(max(steer_mag, 0.0), cfg.max_steer)
    if v < 5.0:
        steer_mag = max(steer_mag, min(cfg.min_steer, cfg.max_steer))
    steer = steer_mag * ((1.0 if "left" in held else 0.0) - (1.0 if "right" in held else 0.0))
    if "up" in held and "down" not in held:
        accel = cfg.throttle
    elif "down" in held:
        accel = -cfg.brake if v > cfg.stopped else 0.0
    else:
        accel = -cfg.coast if v > cfg.stopped else 0.0
    return Control(steer=steer, accel=accel, note="manual")
