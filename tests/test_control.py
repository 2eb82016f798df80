"""Tracking controller behaviour on a kinematic bicycle simulated inside the test."""
from __future__ import annotations

import math

import numpy as np
import pytest

from control.lateral import PurePursuitGains, VehicleLimits, pure_pursuit, stanley
from control.pid import PIDGains, PIDState, longitudinal_pid
from control.tracking import TrackingConfig, TrackingController, TrackingState
from sim.types import EgoState, Trajectory

WHEELBASE = 2.9  # [m]
STEER_RATE = 0.8  # [rad/s]
DT = 0.05  # [s]


def bicycle(ego: EgoState, steer_cmd: float, accel_cmd: float, dt: float = DT) -> EgoState:
    """Kinematic bicycle at the rear axle, steer-rate limited.

    x += v cos(yaw) dt with yaw taken at the middle of the step: plain Euler
    spirals outward by (v dt)^2 / 2R per step on a circle, an error of the
    integrator, not of the controller under test.
    """
    steer = ego.steer + float(np.clip(steer_cmd - ego.steer, -STEER_RATE * dt, STEER_RATE * dt))
    v = max(ego.v + accel_cmd * dt, 0.0)
    dyaw = ego.v / WHEELBASE * math.tan(steer) * dt
    mid = ego.yaw + 0.5 * dyaw
    return EgoState(x=ego.x + ego.v * math.cos(mid) * dt, y=ego.y + ego.v * math.sin(mid) * dt,
                    yaw=ego.yaw + dyaw, v=v, a=accel_cmd, steer=steer, t=ego.t + dt)


def path_trajectory(xy: np.ndarray, v: float) -> Trajectory:
    """A constant-speed trajectory along a dense polyline, heading and curvature by differences."""
    seg = np.hypot(*np.diff(xy, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    yaw = np.unwrap(np.arctan2(np.gradient(xy[:, 1]), np.gradient(xy[:, 0])))
    kappa = np.gradient(yaw, s)
    n = xy.shape[0]
    return Trajectory(t=s / v, x=xy[:, 0], y=xy[:, 1], yaw=yaw, v=np.full(n, v), a=np.zeros(n), kappa=kappa)


def drive(controller: TrackingController, traj: Trajectory, ego: EgoState, seconds: float,
          error_of) -> np.ndarray:
    """Closed loop for `seconds`; returns the cross-track error after each step."""
    state = None
    errors = []
    for _ in range(int(round(seconds / DT))):
        control, state = controller.step(ego, traj, state)
        assert control.note == ""
        ego = bicycle(ego, control.steer, control.accel)
        errors.append(error_of(ego))
    return np.array(errors)


def circle(radius: float, turns: float = 0.9) -> np.ndarray:
    phi = np.linspace(0.0, 2.0 * math.pi * turns, int(2.0 * math.pi * radius * turns / 0.5))
    return np.column_stack([radius * np.sin(phi), radius * (1.0 - np.cos(phi))])  # counter-clockwise from the origin


def lane_change(offset: float = 3.5, length: float = 60.0) -> np.ndarray:
    x = np.arange(-50.0, 600.0, 0.5)
    u = np.clip((x - 100.0) / length, 0.0, 1.0)
    return np.column_stack([x, offset * (10 * u**3 - 15 * u**4 + 6 * u**5)])


def lane_change_error(xy: np.ndarray):
    """Lateral error to a path y(x); at the path's slope (< 0.1) this is the cross-track error within 0.5 %."""
    def error(ego: EgoState) -> float:
        return float(ego.y - np.interp(ego.x, xy[:, 0], xy[:, 1]))
    return error


@pytest.mark.parametrize("lateral", ["stanley", "pure_pursuit"])
def test_tracks_circle_of_radius_100m_at_20mps(lateral):
    radius, v = 100.0, 20.0
    traj = path_trajectory(circle(radius), v)
    controller = TrackingController(TrackingConfig(lateral=lateral))
    ego = EgoState(x=0.0, y=-1.0, yaw=0.0, v=v, a=0.0, steer=0.0, t=0.0)  # 1 m outside the circle
    errors = drive(controller, traj, ego, 25.0, lambda e: abs(math.hypot(e.x, e.y - radius) - radius))
    assert errors[0] > 0.9
    after_transient = errors[int(5.0 / DT):]
    assert np.sqrt(np.mean(after_transient**2)) < 0.15
    assert np.max(after_transient) < 0.3


@pytest.mark.parametrize("lateral", ["stanley", "pure_pursuit"])
def test_tracks_lane_change_at_20mps(lateral):
    v = 20.0
    xy = lane_change()
    traj = path_trajectory(xy, v)
    controller = TrackingController(TrackingConfig(lateral=lateral))
    ego = EgoState(x=0.0, y=0.5, yaw=0.0, v=v, a=0.0, steer=0.0, t=0.0)
    errors = drive(controller, traj, ego, 20.0, lane_change_error(xy))
    after_transient = errors[int(4.0 / DT):]  # the lane change starts at x = 100 m, t = 5 s
    assert np.sqrt(np.mean(after_transient**2)) < 0.15
    assert abs(errors[-1]) < 0.05


def test_speed_tracking_reaches_reference_and_keeps_lane():
    traj = path_trajectory(np.column_stack([np.arange(0.0, 1000.0), np.zeros(1000)]), 15.0)
    controller = TrackingController()
    ego = EgoState(x=0.0, y=1.0, yaw=0.1, v=5.0, a=0.0, steer=0.0, t=0.0)
    state = None
    for _ in range(int(20.0 / DT)):
        control, state = controller.step(ego, traj, state)
        ego = bicycle(ego, control.steer, control.accel)
    assert ego.v == pytest.approx(15.0, abs=0.1)
    assert abs(ego.y) < 0.05


def test_stanley_feed_forward_alone_on_the_reference():
    """On the reference circle with the right heading, Stanley outputs exactly atan(L kappa)."""
    radius = 50.0
    traj = path_trajectory(circle(radius), 10.0)
    xy = np.column_stack([traj.x, traj.y])
    limits = VehicleLimits()
    i = 200
    steer = stanley(traj.x[i], traj.y[i], traj.yaw[i], 10.0, xy, traj.yaw, traj.kappa, limits,
                    TrackingConfig().stanley)
    assert steer == pytest.approx(math.atan(WHEELBASE / radius), abs=2e-3)
    steer = pure_pursuit(traj.x[i], traj.y[i], traj.yaw[i], 10.0, xy, traj.yaw, limits, PurePursuitGains())
    assert steer == pytest.approx(math.atan(WHEELBASE / radius), abs=2e-3)


def test_pid_anti_windup_bounds_integrator_and_recovers_without_overshoot():
    gains = PIDGains()
    state = PIDState()
    v, target, dt = 0.0, 40.0, 0.05
    history = []
    for k in range(int(30.0 / dt)):
        accel, state = longitudinal_pid(v, target, 0.0, state, dt, gains, accel_min=-8.0, accel_max=3.0)
        if k < int(10.0 / dt):
            assert accel == 3.0  # saturated for the first 10 s
            assert abs(gains.ki * state.integral) <= 1e-9  # no wind-up while saturated
        v += accel * dt
        history.append(v)
    assert abs(gains.ki * state.integral) <= gains.integral_limit
    assert max(history) < target + 0.5  # small overshoot
    assert history[-1] == pytest.approx(target, abs=0.05)


def test_pid_integrator_is_clamped_against_a_persistent_disturbance():
    gains = PIDGains(ki=0.5, integral_limit=1.0)
    state = PIDState()
    v, dt = 10.0, 0.05
    for _ in range(int(60.0 / dt)):  # a drag of 2 m/s^2 the integrator cannot cancel alone
        accel, state = longitudinal_pid(v, 10.0, 0.0, state, dt, gains, accel_min=-8.0, accel_max=3.0)
        v += (accel - 2.0) * dt
    assert gains.ki * state.integral == pytest.approx(1.0)


def test_pid_feed_forward_passes_reference_acceleration():
    accel, _ = longitudinal_pid(10.0, 10.0, 1.2, PIDState(), 0.05, PIDGains(), accel_min=-8.0, accel_max=3.0)
    assert accel == pytest.approx(1.2)


def test_limits_clip_steer_and_accel():
    traj = path_trajectory(np.column_stack([np.arange(0.0, 200.0), np.zeros(200)]), 30.0)
    controller = TrackingController()
    ego = EgoState(x=0.0, y=-20.0, yaw=-1.0, v=0.0, a=0.0, steer=0.0, t=0.0)
    control, _ = controller.step(ego, traj, None)
    assert abs(control.steer) <= 0.6 + 1e-12
    assert control.accel <= 3.0 + 1e-12
    stopped = EgoState(x=0.0, y=0.0, yaw=0.0, v=60.0, a=0.0, steer=0.0, t=0.0)
    control, _ = controller.step(stopped, traj, None)
    assert control.accel >= -8.0 - 1e-12


@pytest.mark.parametrize("where", ["ego", "trajectory"])
def test_non_finite_input_gives_safe_command_with_note(where):
    traj = path_trajectory(np.column_stack([np.arange(0.0, 200.0), np.zeros(200)]), 10.0)
    controller = TrackingController()
    ego = EgoState(x=0.0, y=0.2, yaw=0.0, v=10.0, a=0.0, steer=0.0, t=0.0)
    control, state = controller.step(ego, traj, None)
    assert control.note == ""
    last_steer = control.steer
    if where == "ego":
        ego = EgoState(x=0.5, y=0.2, yaw=0.0, v=math.nan, a=0.0, steer=0.0, t=0.05)
    else:
        v = np.array(traj.v)
        v[3] = np.inf
        traj = Trajectory(t=traj.t, x=traj.x, y=traj.y, yaw=traj.yaw, v=v, a=traj.a, kappa=traj.kappa)
        ego = EgoState(x=0.5, y=0.2, yaw=0.0, v=10.0, a=0.0, steer=0.0, t=0.05)
    control, new_state = controller.step(ego, traj, state)
    assert control.accel == -4.0
    assert control.steer == last_steer
    assert where in control.note
    assert math.isfinite(new_state.pid.integral)


def test_missing_trajectory_gives_safe_command():
    ego = EgoState(x=0.0, y=0.0, yaw=0.0, v=5.0, a=0.0, steer=0.0, t=0.0)
    control, state = TrackingController().step(ego, None, TrackingState(last_steer=math.nan))
    assert control.accel == -4.0 and control.steer == 0.0
    assert "no trajectory" in control.note


def test_time_indexed_reference_uses_trajectory_time():
    xy = np.column_stack([np.arange(0.0, 100.0), np.zeros(100)])
    n = xy.shape[0]
    v = np.linspace(5.0, 15.0, n)
    traj = Trajectory(t=np.arange(n) * 0.1, x=xy[:, 0], y=xy[:, 1], yaw=np.zeros(n), v=v, a=np.zeros(n),
                      kappa=np.zeros(n))
    controller = TrackingController(TrackingConfig(reference="time", pid=PIDGains(ki=0.0)))
    ego = EgoState(x=0.0, y=0.0, yaw=0.0, v=10.0, a=0.0, steer=0.0, t=4.95)  # time says v_ref = 10
    control, _ = controller.step(ego, traj, None)
    assert control.accel == pytest.approx(0.0, abs=1e-9)


def test_config_rejects_unknown_lateral_law():
    with pytest.raises(ValueError, match="lateral"):
        TrackingConfig(lateral="lqr")


def test_holds_the_brake_at_standstill_despite_a_wound_up_integrator():
    n = 20
    stopped = Trajectory(t=np.arange(n) * 0.1, x=np.zeros(n), y=np.zeros(n), yaw=np.zeros(n), v=np.zeros(n),
                         a=np.zeros(n), kappa=np.zeros(n))
    ego = EgoState(x=0.0, y=0.0, yaw=0.0, v=0.0, a=0.0, steer=0.0, t=1.0)
    wound = TrackingState(pid=PIDState(integral=5.0, prev_error=0.0), t=0.95)
    control, state = TrackingController().step(ego, stopped, wound)
    assert control.accel <= -1.0
    assert state.pid.integral == 0.0
