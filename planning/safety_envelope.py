"""The longitudinal safety envelope: a hard floor under every plan.

RSS-style (Shalev-Shwartz et al., 2017): at every checked instant of a
candidate plan, every object ahead in the ego's path must be far enough away
that, were it to brake as hard as it can from then on, the ego could still
stop behind it, reacting after `reaction` and braking with the vehicle's real
capability:

    required = v r + a+ r^2 / 2 + (v + a+ r)^2 / (2 b_ego) - v_obj^2 / (2 b_obj) + standstill

with v, a+ the plan's speed and (positive part of its) acceleration, v_obj the
object's speed along the route. An object is in the path at an instant when
its lane overlaps the ego's lateral position then, so a lane change is checked
against both lanes while it crosses. Objects move along the route from their
measured state: constant speed, or their measured braking extrapolated to a
stop. Comfort bounds never enter: they are costs elsewhere; this is physics.

Only objects in the lane a candidate ends in are held against it: a plan that
leaves a lane (to pass a stalled car or a slow lead) escapes sideways, and the
collision check guards the swerve itself, while the lane it moves into is held
to the envelope from the moment the car overlaps it.

`envelope_margins` is the Numba kernel; `envelope_margins_reference` is the
NumPy reference the tests hold it against. `emergency_decel` sizes the
fallback braking when no candidate keeps the envelope.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class EnvelopeParams:
    reaction: float = 0.3  # [s] the stack's cycle plus the actuation delay before the brakes bite
    ego_decel: float = 8.0  # [m/s^2] the vehicle's full braking (the scenario's ego.vehicle.max_decel)
    # share of ego_decel counted on: the braking must build up (the jerk of the emergency plan) and the
    # controller tracks the plan with a small lag
    ego_decel_share: float = 0.85
    object_decel: float = 8.0  # [m/s^2] the hardest braking assumed of a vehicle ahead
    vru_decel: float = 4.0  # [m/s^2] of a pedestrian or cyclist moving along the route
    standstill: float = 2.0  # [m] bumper gap left when both have stopped
    lateral_margin: float = 0.2  # [m] added to the half widths when deciding that an object is in the path
    every: int = 2  # check every this many plan samples (0.2 s at the planner's 0.1 s)

    def __post_init__(self):
        for name in ("reaction", "standstill", "lateral_margin"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0.0):
                raise ValueError(f"EnvelopeParams.{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        for name in ("ego_decel", "object_decel", "vru_decel", "ego_decel_share"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0.0):
                raise ValueError(f"EnvelopeParams.{name} must be a finite number > 0, got {getattr(self, name)!r}")
        if self.every < 1:
            raise ValueError(f"EnvelopeParams.every must be >= 1, got {self.every!r}")

    @property
    def ego_brake(self) -> float:
        """[m/s^2] the ego's braking counted on."""
        return self.ego_decel * self.ego_decel_share


@dataclass(frozen=True)
class PathObjects:
    """Objects that may stand in the ego's path, in route coordinates at the planning instant."""

    s: np.ndarray  # (J,) [m] box centre along the route
    d: np.ndarray  # (J,) [m] lateral offset, left positive
    v: np.ndarray  # (J,) [m/s] speed along the route, >= 0
    a: np.ndarray  # (J,) [m/s^2] measured acceleration along the route, <= 0 (braking is extrapolated)
    length: np.ndarray  # (J,) [m]
    width: np.ndarray  # (J,) [m]
    decel: np.ndarray  # (J,) [m/s^2] hardest braking assumed of each

    @staticmethod
    def none() -> "PathObjects":
        z = np.zeros(0)
        return PathObjects(z, z, z, z, z, z, z)

    def __len__(self) -> int:
        return int(self.s.shape[0])


def object_motion(objects: PathObjects, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(J, N) centre s [m] and speed [m/s] of every object at times t [s] from now: its measured braking
    carried on to a stop, or its speed held."""
    v0, a0 = objects.v[:, None], objects.a[:, None]
    braking = a0 < 0.0
    t_stop = np.where(braking, v0 / np.where(braking, -a0, 1.0), np.inf)
    tt = np.minimum(t[None, :], t_stop)
    return objects.s[:, None] + v0 * tt + 0.5 * a0 * tt * tt, np.maximum(v0 + a0 * tt, 0.0)


@njit(cache=True)
def _required_gap(v, a, v_obj, reaction, ego_brake, obj_decel, standstill):
    """[m] bumper gap the ego needs at speed v, acceleration a, behind an object at v_obj."""
    a_up = max(a, 0.0)
    v_r = v + a_up * reaction
    need = v * reaction + 0.5 * a_up * reaction * reaction + v_r * v_r / (2.0 * ego_brake)
    need -= v_obj * v_obj / (2.0 * obj_decel)
    return max(need, 0.0) + standstill


@njit(cache=True)
def envelope_margins(lon, lat, lat_index, lon_index, active, obj_s, obj_v, obj_d, obj_length, obj_width,
                     obj_decel, ego_front, ego_rear_to_centre, ego_width, reaction, ego_brake, standstill,
                     lateral_margin, every):
    """(C,) [m] the smallest gap minus required gap over each active candidate's checked samples and the
    objects in its path then (+inf when none is ever in its path; NaN for inactive candidates).

    lon (n_lon, 4, N) s and derivatives, lat (n_lat, 4, N) d and derivatives; obj_s, obj_v (J, N) each
    object's centre along the route and speed at the plan's sample times.
    """
    n_c = lat_index.shape[0]
    n_t = lon.shape[2]
    n_j = obj_s.shape[0]
    out = np.full(n_c, np.nan)
    end_lane = np.empty(n_j, dtype=np.int64)
    for c in range(n_c):
        if not active[c]:
            continue
        lo, la = lon_index[c], lat_index[c]
        d_end = lat[la, 0, n_t - 1]
        n_end = 0
        for j in range(n_j):  # the objects in the lane the plan ends in, first
            if abs(d_end - obj_d[j]) < 0.5 * (ego_width + obj_width[j]) + lateral_margin:
                end_lane[n_end] = j
                n_end += 1
        worst = np.inf
        for t in range(0, n_t, every):
            s_e, v_e, a_e, d_e = lon[lo, 0, t], lon[lo, 1, t], lon[lo, 2, t], lat[la, 0, t]
            centre = s_e + ego_rear_to_centre
            for q in range(n_end):
                j = end_lane[q]
                if obj_s[j, t] <= centre:
                    continue  # beside or behind: not ahead of the ego
                if abs(d_e - obj_d[j]) >= 0.5 * (ego_width + obj_width[j]) + lateral_margin:
                    continue  # not in the path at this instant
                gap = obj_s[j, t] - 0.5 * obj_length[j] - (s_e + ego_front)
                m = gap - _required_gap(v_e, a_e, obj_v[j, t], reaction, ego_brake, obj_decel[j], standstill)
                if m < worst:
                    worst = m
        out[c] = worst
    return out


def envelope_margins_reference(lon, lat, lat_index, lon_index, active, obj_s, obj_v, obj_d, obj_length,
                               obj_width, obj_decel, ego_front, ego_rear_to_centre, ego_width, reaction, ego_brake,
                               standstill, lateral_margin, every) -> np.ndarray:
    """NumPy twin of envelope_margins (the tests' oracle)."""
    steps = np.arange(0, lon.shape[2], every)
    s_e, v_e, a_e = (lon[lon_index][:, i][:, steps] for i in range(3))  # (C, n)
    d_e = lat[lat_index][:, 0][:, steps]
    d_end = lat[lat_index][:, 0, -1]
    o_s, o_v = obj_s[:, steps][None], obj_v[:, steps][None]  # (1, J, n)
    ahead = o_s > (s_e + ego_rear_to_centre)[:, None]
    reach = (0.5 * (ego_width + obj_width) + lateral_margin)[None, :, None]
    in_path = (np.abs(d_e[:, None] - obj_d[None, :, None]) < reach) & (
        np.abs(d_end[:, None, None] - obj_d[None, :, None]) < reach)
    a_up = np.maximum(a_e, 0.0)[:, None]
    v, v_r = v_e[:, None], (v_e + np.maximum(a_e, 0.0) * reaction)[:, None]
    need = v * reaction + 0.5 * a_up * reaction ** 2 + v_r ** 2 / (2.0 * ego_brake)
    need = np.maximum(need - o_v ** 2 / (2.0 * obj_decel[None, :, None]), 0.0) + standstill
    gap = o_s - 0.5 * obj_length[None, :, None] - (s_e + ego_front)[:, None]
    m = np.where(ahead & in_path, gap - need, np.inf)
    out = m.reshape(m.shape[0], -1).min(axis=1) if m.size else np.full(len(lat_index), np.inf)
    return np.where(active, out, np.nan)


def emergency_decel(objects: PathObjects, s0: float, v0: float, d0: float, ego_front: float, ego_width: float,
                    params: EnvelopeParams, least: float, jerk: float, dt: float = 0.05,
                    horizon: float = 10.0) -> float:
    """[m/s^2] the gentlest braking in [least, params.ego_decel] that stops the ego, holding its lateral
    offset d0, at least the standstill gap behind every object in its lane as the object is measured to
    move (its braking carried on to a stop); the full braking when none does. The braking builds up at
    jerk [m/s^3] from zero."""
    in_lane = (np.abs(objects.d - d0) < 0.5 * (ego_width + objects.width) + params.lateral_margin) & (objects.s > s0)
    if not np.any(in_lane) or v0 <= 0.0:
        return least
    t = np.arange(0.0, horizon + 1e-9, dt)
    o_s, _ = object_motion(PathObjects(*(getattr(objects, f)[in_lane] for f in
                                         ("s", "d", "v", "a", "length", "width", "decel"))), t)
    rear = o_s - 0.5 * objects.length[in_lane][:, None]
    for b in np.linspace(least, params.ego_decel, 15):
        s, _, _ = braking_profile(s0, v0, 0.0, b, jerk, dt, len(t))
        if np.all(rear - (s + ego_front)[None, :] >= params.standstill):
            return float(b)
    return float(params.ego_decel)


def braking_profile(s0: float, v0: float, a0: float, decel: float, jerk: float, dt: float,
                    n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,) positions [m], speeds [m/s] and accelerations [m/s^2] braking from v0 to a stop, the
    deceleration building up from a0 (<= 0) at jerk [m/s^3] to decel [m/s^2]."""
    s, v, a = np.empty(n), np.empty(n), np.empty(n)
    s[0], v[0], a[0] = s0, max(v0, 0.0), min(a0, 0.0)
    for k in range(1, n):
        a[k] = max(a[k - 1] - jerk * dt, -decel) if v[k - 1] > 0.0 else 0.0
        v[k] = max(v[k - 1] + a[k] * dt, 0.0)
        s[k] = s[k - 1] + 0.5 * (v[k - 1] + v[k]) * dt
        if v[k] == 0.0:
            a[k] = 0.0
    return s, v, a
