"""Longitudinal PID on speed with acceleration feed-forward and anti-windup.

    accel = kff * a_ref + kp * e + ki * integral(e) + kd * de/dt,   e = v_ref - v

clipped to [accel_min, accel_max]. Anti-windup by conditional integration:
while the output is saturated and the error pushes further into saturation,
the integrator is held; it is also clamped so that ki * integral stays within
integral_limit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PIDGains:
    kp: float = 1.0  # [1/s]
    ki: float = 0.2  # [1/s^2]
    kd: float = 0.0  # [-]
    kff: float = 1.0  # [-] weight of the reference acceleration
    integral_limit: float = 1.5  # [m/s^2] bound on |ki * integral|

    def __post_init__(self):
        for name in ("kp", "ki", "kd", "kff", "integral_limit"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"PIDGains.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class PIDState:
    integral: float = 0.0  # [m] integral of the speed error
    prev_error: float = math.nan  # [m/s] error at the previous step; nan before the first


def longitudinal_pid(v: float, v_ref: float, a_ref: float, state: PIDState, dt: float, gains: PIDGains,
                     accel_min: float, accel_max: float) -> tuple[float, PIDState]:
    """Acceleration command [m/s^2] within [accel_min, accel_max] and the next controller state."""
    error = v_ref - v
    de = (error - state.prev_error) / dt if math.isfinite(state.prev_error) and dt > 0.0 else 0.0
    integral = state.integral + error * dt
    if gains.ki > 0.0:
        bound = gains.integral_limit / gains.ki
        integral = min(max(integral, -bound), bound)
    else:
        integral = 0.0

    def output(i: float) -> float:
        return gains.kff * a_ref + gains.kp * error + gains.ki * i + gains.kd * de

    raw = output(integral)
    if (raw > accel_max and error > 0.0) or (raw < accel_min and error < 0.0):
        integral = state.integral  # saturated and winding further: hold the integrator
        raw = output(integral)
    accel = min(max(raw, accel_min), accel_max)
    return accel, PIDState(integral=integral, prev_error=error)
