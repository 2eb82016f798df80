"""Sensor health: each issue found on synthetic frames, the hysteresis, the modes, and the oracle's schedule."""
from __future__ import annotations

import numpy as np
import pytest

from perception.health import HealthConfig, HealthState, assess, monitor, scheduled_health
from perception.oracle import OraclePerception
from sim.sensors.config import CameraConfig, FaultWindow, LidarConfig, SensorConfig
from sim.sensors.frames import CameraFrame, LidarFrame
from sim.types import CAR, EgoState, SensorStatus

DT = 0.1  # [s] one stack cycle
CFG = HealthConfig()


def camera(t: float, image: np.ndarray | None = None) -> CameraFrame:
    """A frame of mid-grey texture that changes from frame to frame, as a moving ego's does."""
    if image is None:
        image = np.random.default_rng(round(t * 1e3)).integers(40, 200, (16, 24, 3))
    return CameraFrame(image, np.eye(3), np.eye(4), t)


def sweep(t: float, n: int = 1000) -> LidarFrame:
    points = np.random.default_rng(round(t * 1e3) + 7).normal(0.0, 10.0, (n, 4))
    return LidarFrame(points, np.zeros(n), np.zeros(n), t, np.eye(4))


def ego(t: float, v: float = 10.0) -> EgoState:
    return EgoState(x=v * t, y=0.0, yaw=0.0, v=v, a=0.0, steer=0.0, t=t)


def run(frames, v: float = 10.0):
    """Feed (camera, lidar) pairs, one per cycle from t = 0; every cycle's health and final state."""
    state, out = HealthState(), []
    for k, (cam, lid) in enumerate(frames):
        health, state = monitor(cam, lid, ego(round(k * DT, 6), v), state)
        out.append((health, state))
    return out


def t_(k: int) -> float:
    return round(k * DT, 6)


def test_healthy_sensors_are_nominal_with_latency_one_cycle():
    out = run([(camera(t_(k)), sweep(t_(k))) for k in range(10)])
    assert all(h.mode == "nominal" and h.trusted_range == np.inf for h, _ in out)
    assert all(s.camera.usable and s.lidar.usable for _, s in out)
    late = run([(camera(t_(k - 1)) if k else None, sweep(t_(k))) for k in range(10)])  # latency 0.1 s
    assert all(h.mode == "nominal" for h, _ in late)
    assert late[-1][0].sensors[0].age == pytest.approx(0.1)


def test_one_dropped_frame_does_not_flip_the_mode_three_do():
    frames = [(camera(t_(k)) if k not in (3, 6, 7, 8) else None, sweep(t_(k))) for k in range(22)]
    out = run(frames)
    modes = [h.mode for h, _ in out]
    assert modes[3] == modes[4] == "nominal" and not out[3][1].camera.usable
    assert modes[6] == modes[7] == "nominal"  # two in a row: not yet
    assert modes[8] == "degraded"  # the third in a row
    health = out[8][0]
    assert health.sensors[0] == SensorStatus("camera", "missing", pytest.approx(0.3))
    assert health.trusted_range == CFG.lidar_range
    # back after recover_after of usable frames (eleven at 10 Hz), not at the first one
    assert modes[9:19] == ["degraded"] * 10 and modes[19:] == ["nominal"] * 3


def test_stale_frames_lose_the_sensor():
    out = run([(camera(t_(k - 5)) if k >= 5 else None, sweep(t_(k))) for k in range(10)])  # latency 0.5 s
    assert not any(s.camera.usable for _, s in out)
    assert out[-1][0].mode == "degraded" and out[-1][0].sensors[0].issue == "stale"


@pytest.mark.parametrize("value, issue", [(0, "black"), (255, "saturated")])
def test_black_and_saturated_images(value, issue):
    blank = np.full((16, 24, 3), value)
    out = run([(camera(t_(k), blank if k >= 2 else None), sweep(t_(k))) for k in range(6)])
    assert [s.camera.usable for _, s in out[2:]] == [False] * 4
    assert out[-1][0].sensors[0].issue == issue and out[-1][0].mode == "degraded"


def test_a_frozen_image_is_found_while_the_ego_moves_but_not_while_it_stands():
    still = camera(0.0).image
    frames = [(camera(t_(k), still if k >= 2 else None), sweep(t_(k))) for k in range(8)]
    out = run(frames)
    assert out[2][1].camera.usable and not out[3][1].camera.usable  # the first repeat is already suspect
    assert out[-1][0].mode == "degraded" and out[-1][0].sensors[0].issue == "frozen"
    assert out[-1][0].sensors[0].age == pytest.approx(0.5)  # since the frame that then froze
    # a frame that differs only by pixel noise (std 0.3) is still a repeat
    noisy = [np.clip(still + np.random.default_rng(k).normal(0.0, 0.3, still.shape), 0, 255).round()
             for k in range(8)]
    assert run([(camera(t_(k), noisy[k]), sweep(t_(k))) for k in range(8)])[-1][0].mode == "degraded"
    standing = run(frames, v=0.0)
    assert all(h.mode == "nominal" for h, _ in standing)


def test_lidar_empty_sparse_and_frozen_sweeps():
    empty = run([(camera(t_(k)), sweep(t_(k), 0 if k >= 2 else 1000)) for k in range(6)])
    assert empty[-1][0].sensors[1].issue == "empty" and empty[-1][0].trusted_range == CFG.camera_range
    sparse = run([(camera(t_(k)), sweep(t_(k), 300 if k >= 4 else 1000)) for k in range(8)])
    assert sparse[3][1].lidar.normal == pytest.approx(1000.0)
    assert sparse[-1][0].sensors[1].issue == "sparse" and sparse[-1][0].mode == "degraded"
    assert run([(camera(t_(k)), sweep(t_(k), 700)) for k in range(8)])[-1][0].mode == "nominal"
    first = sweep(0.0)
    frozen = run([(camera(t_(k)), LidarFrame(first.points, first.beam, first.azimuth, t_(k), np.eye(4)))
                  for k in range(6)])
    assert frozen[-1][0].sensors[1].issue == "frozen"


def test_both_lost_or_one_lost_and_the_other_stale_is_untrusted():
    out = run([(camera(t_(k)) if k < 2 else None, sweep(t_(k)) if k < 2 else None) for k in range(6)])
    assert out[-1][0].mode == "untrusted" and out[-1][0].trusted_range == 0.0
    assert out[-1][0].describe() == "untrusted: camera missing 0.4 s, lidar missing 0.4 s"
    stale = assess(SensorStatus("camera", "black", 1.0), SensorStatus("lidar", "", 0.3))
    assert stale.mode == "untrusted"


def test_scheduled_health_follows_the_fault_windows():
    sensors = SensorConfig(camera=CameraConfig(faults=(FaultWindow("black", 2.0, 4.0),)),
                           lidar=LidarConfig(faults=(FaultWindow("freeze", 3.0, 5.0),)))
    assert scheduled_health(sensors, 1.0).mode == "nominal"
    at2 = scheduled_health(sensors, 2.5)
    assert at2.mode == "degraded" and at2.trusted_range == CFG.lidar_range
    assert at2.sensors[0] == SensorStatus("camera", "black", 0.5)
    assert scheduled_health(sensors, 3.5).mode == "untrusted"
    assert scheduled_health(sensors, 4.5).trusted_range == CFG.camera_range
    assert scheduled_health(SensorConfig(camera=CameraConfig(latency=0.1)), 1.0).mode == "nominal"
    assert scheduled_health(SensorConfig(camera=CameraConfig(latency=0.5)), 1.0).sensors[0].issue == "stale"
    assert scheduled_health(SensorConfig(camera=CameraConfig(dropout=0.5)), 1.0).mode == "degraded"
    assert scheduled_health(SensorConfig(lidar=LidarConfig(dropout=1.0)), 1.0).sensors[1].issue == "sparse"
    assert scheduled_health(SensorConfig(camera=None), 1.0).sensors[0].issue == "missing"


class _World:
    """Cars ahead of an ego at the origin at 10, 50 and 100 m, all driving at 10 m/s along x."""

    def __init__(self, t: float):
        self.t = t
        self.table = np.array([[x + 10.0 * t, 0.0, 0.0, 10.0, 0.0] for x in (10.0, 50.0, 100.0)])

    def ego_state(self):
        return EgoState(x=0.0, y=0.0, yaw=0.0, v=0.0, a=0.0, steer=0.0, t=self.t)

    def actor_table(self):
        return self.table

    def actor_active(self):
        return np.ones(3, dtype=bool)

    def actor_classes(self):
        return np.full(3, CAR)

    def actor_sizes(self):
        return np.full(3, 4.6), np.full(3, 1.9)

    def light_states(self):
        return {}


def test_oracle_reports_what_the_working_sensor_sees_then_its_memory_then_nothing():
    sensors = SensorConfig(camera=CameraConfig(faults=(FaultWindow("dropout", 1.0, 9.0),)),
                           lidar=LidarConfig(faults=(FaultWindow("black", 2.0, 9.0),)))
    oracle = OraclePerception(sensors=sensors)
    outputs = {t: oracle(_World(t)) for t in (0.5, 1.5, 1.9, 2.0, 2.1, 2.4)}
    xs = {t: sorted(round(o.x) for o in out.objects) for t, out in outputs.items()}
    assert xs[0.5] == [15, 55, 105]  # nominal: the whole max_range
    assert xs[1.5] == [25] and outputs[1.5].range == 60.0  # the camera lost: the lidar's 60 m from the ego
    assert xs[2.0] == [30] and xs[2.1] == [31]  # both lost: the objects of 1.9 s, predicted forward at 10 m/s
    assert outputs[2.0].health.mode == "untrusted"
    assert xs[2.4] == []  # memory over
    plain, followed = OraclePerception(position_noise=0.3, seed=4), OraclePerception(
        position_noise=0.3, seed=4, sensors=SensorConfig())
    for t in (0.0, 0.1):  # without faults the output is the one without sensors, noise draws included
        a, b = plain(_World(t)), followed(_World(t))
        assert [(o.x, o.y, o.vx, o.vy) for o in a.objects] == [(o.x, o.y, o.vx, o.vy) for o in b.objects]
        assert a.range == b.range and b.health.mode == "nominal"
