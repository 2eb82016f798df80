"""Trajectory tracking: a lateral law plus the longitudinal PID, behind actuator guards.

`TrackingController.step(ego, trajectory, state) -> (Control, state)` is a pure
function of its arguments and the controller's configuration; the state it
returns is passed back in on the next call (None on the first).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from control.lateral import (PurePursuitGains, StanleyGains, VehicleLimits, nearest_on_path, pure_pursuit,
                             stanley)
from control.pid import PIDGains, PIDState, longitudinal_pid
from sim.types import Control, EgoState, Trajectory

LATERAL_LAWS = ("stanley", "pure_pursuit")
REFERENCES = ("nearest", "time")


@dataclass(frozen=True)
class TrackingConfig:
    lateral: str = "stanley"  # "stanley" | "pure_pursuit"
    reference: str = "nearest"  # speed reference at the ego's nearest trajectory point, or at time ego.t
    stanley: StanleyGains = field(default_factory=StanleyGains)
    pure_pursuit: PurePursuitGains = field(default_factory=PurePursuitGains)
    pid: PIDGains = field(default_factory=PIDGains)
    limits: VehicleLimits = field(default_factory=VehicleLimits)
    first_dt: float = 0.05  # [s] step assumed on the first call, before a previous time exists
    safe_accel: float = -4.0  # [m/s^2] commanded whenever an input or output is not finite
    standstill_speed: float = 0.2  # [m/s] reference and ego both slower, reference not accelerating: hold
    hold_decel: float = 1.0  # [m/s^2] braking that holds the car at standstill

    def __post_init__(self):
        if self.lateral not in LATERAL_LAWS:
            raise ValueError(f"TrackingConfig.lateral must be one of {LATERAL_LAWS}, got {self.lateral!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"TrackingConfig.reference must be one of {REFERENCES}, got {self.reference!r}")
        if not (math.isfinite(self.first_dt) and self.first_dt > 0.0):
            raise ValueError(f"TrackingConfig.first_dt must be a positive number, got {self.first_dt!r}")
        if not (math.isfinite(self.safe_accel) and self.safe_accel < 0.0):
            raise ValueError(f"TrackingConfig.safe_accel must be a negative number, got {self.safe_accel!r}")
        for name in ("standstill_speed", "hold_decel"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0.0):
                raise ValueError(f"TrackingConfig.{name} must be a finite number >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class TrackingState:
    pid: PIDState = field(default_factory=PIDState)
    last_steer: float = 0.0  # [rad] last finite steer command
    t: float = math.nan  # [s] time of the last step; nan before the first


_EGO_FIELDS = ("x", "y", "yaw", "v", "t")
_TRAJ_FIELDS = ("t", "x", "y", "yaw", "v", "a", "kappa")


def _input_problem(ego: EgoState, traj: Trajectory | None) -> str:
    """Why the inputs cannot be tracked, or "" when they can."""
    bad = [name for name in _EGO_FIELDS if not math.isfinite(getattr(ego, name))]
    if bad:
        return f"non-finite ego state ({', '.join(bad)})"
    if traj is None or len(traj) == 0:
        return "no trajectory"
    bad = [name for name in _TRAJ_FIELDS if not np.all(np.isfinite(getattr(traj, name)))]
    if bad:
        return f"non-finite trajectory ({', '.join(bad)})"
    return ""


class TrackingController:
    """Follows a Trajectory with a lateral law and the speed PID, within VehicleLimits."""

    def __init__(self, config: TrackingConfig | None = None):
        self.config = config or TrackingConfig()

    def step(self, ego: EgoState, traj: Trajectory | None,
             state: TrackingState | None = None) -> tuple[Control, TrackingState]:
        state = state or TrackingState()
        problem = _input_problem(ego, traj)
        if problem:
            return self._safe(state, ego, problem)
        cfg, lim = self.config, self.config.limits
        dt = ego.t - state.t if math.isfinite(state.t) else cfg.first_dt
        if not 0.0 < dt <= 1.0:
            dt = cfg.first_dt

        path_xy = np.column_stack([traj.x, traj.y])
        if cfg.lateral == "stanley":
            steer = stanley(ego.x, ego.y, ego.yaw, ego.v, path_xy, traj.yaw, traj.kappa, lim, cfg.stanley)
        else:
            steer = pure_pursuit(ego.x, ego.y, ego.yaw, ego.v, path_xy, traj.yaw, lim, cfg.pure_pursuit)

        v_ref, a_ref = self._speed_reference(ego, traj, path_xy)
        accel, pid_state = longitudinal_pid(ego.v, v_ref, a_ref, state.pid, dt, cfg.pid,
                                            accel_min=-lim.max_decel, accel_max=lim.max_accel)
        if v_ref < cfg.standstill_speed and a_ref <= 0.0 and ego.v < cfg.standstill_speed:
            accel = min(accel, -cfg.hold_decel)  # hold the brake; no integral may creep the car forward
            pid_state = PIDState()
        if not (math.isfinite(steer) and math.isfinite(accel)):
            return self._safe(state, ego, "non-finite controller output")
        steer = min(max(steer, -lim.max_steer), lim.max_steer)
        return Control(steer=steer, accel=accel), TrackingState(pid=pid_state, last_steer=steer, t=ego.t)

    def _speed_reference(self, ego: EgoState, traj: Trajectory, path_xy: np.ndarray) -> tuple[float, float]:
        """(v_ref [m/s], a_ref [m/s^2]) at the nearest trajectory point or at time ego.t."""
        if self.config.reference == "time":
            ref = traj.sample(ego.t)
            return ref["v"], ref["a"]
        i, f = nearest_on_path(path_xy, ego.x, ego.y)
        j = min(i + 1, len(traj) - 1)
        return (float(traj.v[i] + f * (traj.v[j] - traj.v[i])),
                float(traj.a[i] + f * (traj.a[j] - traj.a[i])))

    def _safe(self, state: TrackingState, ego: EgoState, why: str) -> tuple[Control, TrackingState]:
        """Brake at safe_accel and hold the last finite steer; the PID state is kept unpoisoned."""
        lim = self.config.limits
        steer = state.last_steer if math.isfinite(state.last_steer) else 0.0
        steer = min(max(steer, -lim.max_steer), lim.max_steer)
        t = ego.t if math.isfinite(ego.t) else state.t
        control = Control(steer=steer, accel=self.config.safe_accel, note=f"safe stop: {why}")
        return control, TrackingState(pid=state.pid, last_steer=steer, t=t)
