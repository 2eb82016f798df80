"""Lateral tracking laws: pure pursuit and Stanley.

Both are pure functions of the vehicle pose (rear-axle centre, as everywhere in
the stack) and a reference path given as arrays; neither keeps state. The path
is the rear-axle path a planner outputs: (P, 2) points with their heading and
curvature.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VehicleLimits:
    wheelbase: float = 2.9  # [m]
    max_steer: float = 0.6  # [rad] front-wheel angle, symmetric
    max_accel: float = 3.0  # [m/s^2]
    max_decel: float = 8.0  # [m/s^2] magnitude of the strongest braking

    def __post_init__(self):
        for name in ("wheelbase", "max_steer", "max_accel", "max_decel"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"VehicleLimits.{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class PurePursuitGains:
    lookahead_time: float = 0.6  # [s] look-ahead distance grows with speed
    min_lookahead: float = 4.0  # [m]
    max_lookahead: float = 30.0  # [m]


@dataclass(frozen=True)
class StanleyGains:
    k_crosstrack: float = 1.5  # [1/s] gain on the front-axle cross-track error
    k_soft: float = 1.0  # [m/s] softening speed, keeps the law finite at standstill
    k_heading: float = 1.0  # [-] gain on the heading error


def wrap(angle: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def nearest_on_path(path_xy: np.ndarray, px: float, py: float) -> tuple[int, float]:
    """Closest point of a polyline to (px, py) as (segment index i, fraction f in [0, 1]).

    The point lies at path_xy[i] + f * (path_xy[i + 1] - path_xy[i]); a one-point
    path gives (0, 0.0). Zero-length segments (a stopped trajectory) are allowed.
    """
    if path_xy.shape[0] < 2:
        return 0, 0.0
    a = path_xy[:-1]
    ab = path_xy[1:] - a
    len2 = np.einsum("ij,ij->i", ab, ab)
    ap = np.array([px, py]) - a
    f = np.where(len2 > 1e-12, np.einsum("ij,ij->i", ap, ab) / np.maximum(len2, 1e-12), 0.0)
    f = np.clip(f, 0.0, 1.0)
    dist2 = np.sum((ap - f[:, None] * ab) ** 2, axis=1)
    i = int(np.argmin(dist2))
    return i, float(f[i])


def _lerp(arr: np.ndarray, i: int, f: float) -> float:
    if i + 1 >= arr.shape[0]:
        return float(arr[i])
    return float(arr[i] + f * (arr[i + 1] - arr[i]))


def _lerp_angle(arr: np.ndarray, i: int, f: float) -> float:
    if i + 1 >= arr.shape[0]:
        return float(arr[i])
    return wrap(float(arr[i]) + f * wrap(float(arr[i + 1] - arr[i])))


def _path_point_at(path_xy: np.ndarray, path_yaw: np.ndarray, cum_s: np.ndarray, s: float) -> np.ndarray:
    """Point at arc length s; beyond the end, extended straight along the last heading."""
    if s >= cum_s[-1]:
        extra = s - cum_s[-1]
        return path_xy[-1] + extra * np.array([math.cos(path_yaw[-1]), math.sin(path_yaw[-1])])
    return np.array([np.interp(s, cum_s, path_xy[:, 0]), np.interp(s, cum_s, path_xy[:, 1])])


def pure_pursuit(x: float, y: float, yaw: float, v: float, path_xy: np.ndarray, path_yaw: np.ndarray,
                 limits: VehicleLimits, gains: PurePursuitGains) -> float:
    """Front-wheel angle [rad] that puts the rear axle on an arc through the look-ahead point.

    The look-ahead point lies lookahead_time * v (clamped) along the path from
    the rear axle's projection. On a circle the law is exact: atan(L / R).
    """
    i, f = nearest_on_path(path_xy, x, y)
    seg = np.hypot(np.diff(path_xy[:, 0]), np.diff(path_xy[:, 1]))
    cum_s = np.concatenate([[0.0], np.cumsum(seg)])
    s_near = cum_s[i] + f * (seg[i] if seg.size else 0.0)
    lookahead = min(max(gains.lookahead_time * max(v, 0.0), gains.min_lookahead), gains.max_lookahead)
    target = _path_point_at(path_xy, path_yaw, cum_s, s_near + lookahead)
    dx, dy = target[0] - x, target[1] - y
    lx = math.cos(yaw) * dx + math.sin(yaw) * dy  # look-ahead point in the vehicle frame
    ly = -math.sin(yaw) * dx + math.cos(yaw) * dy
    dist2 = lx * lx + ly * ly
    if dist2 < 1e-9:
        return 0.0
    curvature = 2.0 * ly / dist2  # = 2 sin(alpha) / distance
    steer = math.atan(limits.wheelbase * curvature)
    return min(max(steer, -limits.max_steer), limits.max_steer)


def stanley(x: float, y: float, yaw: float, v: float, path_xy: np.ndarray, path_yaw: np.ndarray,
            path_kappa: np.ndarray, limits: VehicleLimits, gains: StanleyGains) -> float:
    """Front-wheel angle [rad]: heading error + atan(k e / (k_soft + v)) + atan(L kappa).

    The cross-track error e is taken at the front axle against the path the
    front axle traces when the rear axle follows the reference exactly (each
    reference point moved one wheelbase along its heading), so on a curve the
    heading error vanishes in steady state and the curvature feed-forward
    alone supplies the steady steer, without counting the curve twice.
    """
    L = limits.wheelbase
    front_path = path_xy + L * np.column_stack([np.cos(path_yaw), np.sin(path_yaw)])
    fx, fy = x + L * math.cos(yaw), y + L * math.sin(yaw)
    i, f = nearest_on_path(front_path, fx, fy)
    ref_yaw = _lerp_angle(path_yaw, i, f)
    ref_kappa = _lerp(path_kappa, i, f)
    ref_x, ref_y = _lerp(front_path[:, 0], i, f), _lerp(front_path[:, 1], i, f)
    cross_track = -(fx - ref_x) * math.sin(ref_yaw) + (fy - ref_y) * math.cos(ref_yaw)  # [m] + left of path
    heading_error = wrap(ref_yaw - yaw)
    steer = (gains.k_heading * heading_error
             - math.atan2(gains.k_crosstrack * cross_track, gains.k_soft + max(v, 0.0))
             + math.atan(L * ref_kappa))
    return min(max(steer, -limits.max_steer), limits.max_steer)
