"""Bicycle model against its closed form; separating-axis overlap cases."""
import numpy as np

from sim.bicycle import bicycle_step
from sim.geometry import boxes_overlap, colliding_pairs


def drive_circle(steer, v, wheelbase, dt, steps):
    x = y = yaw = 0.0
    s = steer
    for _ in range(steps):
        x, y, yaw, v, _, s = bicycle_step(x, y, yaw, v, s, steer, 0.0, wheelbase, 0.6, 0.8, 3.0, 8.0, dt)
    return x, y, yaw


def test_bicycle_follows_closed_form_circle():
    wheelbase, steer, v, dt, steps = 2.9, 0.2, 10.0, 0.05, 400
    x, y, yaw = drive_circle(steer, v, wheelbase, dt, steps)
    radius = wheelbase / np.tan(steer)
    theta = v * steps * dt / radius
    assert np.isclose(yaw, theta, atol=1e-9)
    assert np.isclose(x, radius * np.sin(theta), atol=1e-6)
    assert np.isclose(y, radius * (1.0 - np.cos(theta)), atol=1e-6)
    assert np.isclose(np.hypot(x, y - radius), radius, atol=1e-6)


def test_bicycle_respects_steer_rate_and_accel_limits():
    x, y, yaw, v, a, steer = bicycle_step(0.0, 0.0, 0.0, 5.0, 0.0, 0.5, 20.0, 2.9, 0.6, 0.8, 3.0, 8.0, 0.05)
    assert np.isclose(steer, 0.04)  # 0.8 rad/s for 0.05 s
    assert np.isclose(a, 3.0) and np.isclose(v, 5.15)


def test_bicycle_does_not_reverse():
    _, _, _, v, a, _ = bicycle_step(0.0, 0.0, 0.0, 0.1, 0.0, 0.0, -8.0, 2.9, 0.6, 0.8, 3.0, 8.0, 0.05)
    assert v == 0.0 and np.isclose(a, -2.0)


def box(cx, cy, yaw, length=4.0, width=2.0):
    return np.array([cx, cy, yaw, length, width])


def test_sat_disjoint_touching_overlapping_rotated():
    assert not boxes_overlap(box(0, 0, 0), box(10, 0, 0))
    assert not boxes_overlap(box(0, 0, 0), box(4.0, 0, 0))  # edges touch: no penetration
    assert boxes_overlap(box(0, 0, 0), box(3.9, 0, 0))
    assert not boxes_overlap(box(0, 0, 0), box(0, 2.0, 0))  # side by side, touching
    # a box rotated 45 deg whose corner pokes into the other; bounding circles overlap in both cases
    half_diag = np.hypot(1.0, 1.0)
    assert boxes_overlap(box(0, 0, 0), box(2.0 + half_diag - 0.05, 0, np.pi / 4, 2.0, 2.0))
    assert not boxes_overlap(box(0, 0, 0), box(2.0 + half_diag + 0.05, 0, np.pi / 4, 2.0, 2.0))
    # separated only along the rotated box's own axis
    assert not boxes_overlap(box(0, 0, 0.3, 10, 0.5), box(0.0, 1.2, 0.3, 10, 0.5))


def test_colliding_pairs_matches_brute_force():
    rng = np.random.default_rng(3)
    n = 100
    boxes = np.column_stack([rng.uniform(0, 60, n), rng.uniform(0, 30, n), rng.uniform(-np.pi, np.pi, n),
                             rng.uniform(1, 6, n), rng.uniform(0.5, 2.5, n)])
    active = rng.random(n) > 0.1
    got = {tuple(p) for p in colliding_pairs(boxes, active)}
    want = {(i, j) for i in range(n) for j in range(i + 1, n)
            if active[i] and active[j] and boxes_overlap(boxes[i], boxes[j])}
    assert got == want and len(want) > 5
