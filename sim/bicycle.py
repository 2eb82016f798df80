"""Kinematic bicycle model, shared by the ego and every simulated vehicle.

State at the rear-axle centre: x, y [m], yaw [rad], v [m/s], steer [rad].
Within one step the steering angle moves toward its command at most
max_steer_rate*dt, the speed changes by the clipped acceleration, and the
rear axle moves exactly along the arc of the mean speed and the new steer, so
a constant steer and speed trace the closed-form circle R = wheelbase / tan(steer).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class VehicleParams:
    length: float = 4.7  # [m]
    width: float = 1.9  # [m]
    wheelbase: float = 2.9  # [m]
    max_steer: float = 0.6  # [rad]
    max_steer_rate: float = 0.8  # [rad/s]
    max_accel: float = 3.0  # [m/s^2]
    max_decel: float = 8.0  # [m/s^2]

    @property
    def center_offset(self) -> float:
        """Box centre ahead of the rear axle [m]: the body overhangs both axles equally."""
        return 0.5 * self.wheelbase


@njit(cache=True)
def bicycle_step(x, y, yaw, v, steer, steer_cmd, accel_cmd, wheelbase, max_steer, max_steer_rate,
                 max_accel, max_decel, dt):
    """One step of the kinematic bicycle. Returns x, y, yaw, v, a, steer."""
    dmax = max_steer_rate * dt
    new_steer = steer + min(max(steer_cmd - steer, -dmax), dmax)
    new_steer = min(max(new_steer, -max_steer), max_steer)
    a = min(max(accel_cmd, -max_decel), max_accel)
    new_v = v + a * dt
    if new_v < 0.0:  # no reversing: stop within the step
        new_v = 0.0
        a = -v / dt
    v_mid = 0.5 * (v + new_v)
    curvature = np.tan(new_steer) / wheelbase
    dyaw = v_mid * curvature * dt
    if abs(dyaw) < 1e-9:
        nx = x + v_mid * dt * np.cos(yaw + 0.5 * dyaw)
        ny = y + v_mid * dt * np.sin(yaw + 0.5 * dyaw)
    else:
        radius = 1.0 / curvature
        nx = x + radius * (np.sin(yaw + dyaw) - np.sin(yaw))
        ny = y - radius * (np.cos(yaw + dyaw) - np.cos(yaw))
    return nx, ny, yaw + dyaw, new_v, a, new_steer
