"""IDM baseline planner: the route centreline at the speed of the Intelligent Driver Model.

The reference baseline of closed-loop planning benchmarks. The path is the
route's own centreline (lane changes only where the route has them); the
speed comes from integrating IDM forward over the horizon against whatever
binds first, in priority order:

1. stop lines: red lights, yellow lights the ego can still stop for at
   <= yellow_max_decel, and stop signs until the ego has stopped at them;
2. vulnerable road users on or near a crosswalk on the route ahead;
3. tracked objects whose most likely predicted position lies in the ego's
   lane (half the route width + half their extent across it + a margin);
4. the free road: the speed limit or the configured desired speed, lowered
   ahead of curves so lateral acceleration stays <= max_lat_accel.

Stops are virtual stopped obstacles. Every candidate gives an IDM
acceleration and the smallest wins, so a far red light is not hidden by a
nearer moving car. Objects move along their prediction while the ego moves,
and the gap is re-evaluated at every step. The plan's acceleration rises at
most max_jerk_up (braking is never delayed). As a guard the plan never puts
the ego's front past a line it stops for or into an object ahead in its lane.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planning.base import PlannerInput, Route
from planning.route import project_to_route
from sim.types import VULNERABLE, PerceptionOutput, Prediction, Trajectory

_INF = np.inf


@dataclass(frozen=True)
class IDMConfig:
    desired_speed: float | None = None  # [m/s] None: the route's speed limit; never above the limit
    time_gap: float = 1.5  # T [s]
    max_accel: float = 1.5  # a [m/s^2]
    comfort_decel: float = 2.0  # b [m/s^2]
    min_gap: float = 2.5  # s0 [m]
    delta: float = 4.0  # free-road exponent
    max_decel: float = 8.0  # [m/s^2] strongest braking the plan may ask for
    max_jerk_up: float = 2.5  # [m/s^3] how fast the acceleration may rise (braking onset is never limited)
    horizon: float = 8.0  # [s]
    dt: float = 0.1  # [s]
    max_lat_accel: float = 2.5  # [m/s^2] curve speed: v^2 |kappa| <= this
    anticipation_decel: float = 1.0  # [m/s^2] how early the free speed falls before a curve or a lower limit
    speed_preview: float = 1.0  # [s] the free speed is read this far ahead of the ego's front
    overspeed_gain: float = 2.0  # [1/s] above the free speed, brake at least this times the excess
    lateral_margin: float = 0.0  # [m] added to the in-lane test for objects (0: touching the lane edge counts)
    anticipation: float = 1.0  # [s] an object about to enter the lane already counts as in it
    hard_gap: float = 0.5  # [m] the plan never brings the ego's front closer to an object in its lane
    yellow_max_decel: float = 3.0  # [m/s^2] stop for yellow only if this suffices
    stop_line_margin: float = 0.5  # [m] the ego's front comes to rest this far before a stop line
    stop_release_dist: float = 3.0  # [m] stopped within this of a stop-sign line, the ego may go
    stop_release_speed: float = 0.2  # [m/s] "stopped" at a stop sign
    crosswalk_margin: float = 1.0  # [m] the ego's front comes to rest this far before a crosswalk
    crosswalk_near: float = 2.5  # [m] how far beyond the lane edge a pedestrian counts as at the crosswalk
    crosswalk_lookahead: float = 3.0  # [s] predicted positions within this count too
    ego_front: float = 3.8  # [m] rear axle to front bumper

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if name == "desired_speed" and value is None:
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0.0):
                raise ValueError(f"IDMConfig.{name} must be a finite number >= 0, got {value!r}")
        for name in ("time_gap", "max_accel", "comfort_decel", "delta", "dt", "horizon", "max_lat_accel",
                     "anticipation_decel"):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"IDMConfig.{name} must be > 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class ObjectTracks:
    """Tracked objects along the route at the plan times (O objects, N times)."""

    centre_s: np.ndarray  # (O, N) [m] route arc length of the box centre
    rear_s: np.ndarray  # (O, N) [m] route arc length of the box's rear extent
    d: np.ndarray  # (O, N) [m] lateral offset of the centre from the route, + left
    v: np.ndarray  # (O, N) [m/s] speed along the route
    in_lane: np.ndarray  # (O, N) bool: overlaps the ego's lane now
    in_path: np.ndarray  # (O, N) bool: in the lane now or within `anticipation` seconds
    vulnerable: np.ndarray  # (O,) bool: pedestrian or cyclist


@dataclass(frozen=True)
class VirtualStop:
    rest: float  # [m] route s where the ego's front should come to rest
    hard: float  # [m] route s the ego's front must not pass
    why: str  # "red_light" | "yellow_light" | "stop_sign" | "crosswalk" | "route_end"


class IDMPlanner:
    """Route-following IDM baseline; `plan(PlannerInput) -> Trajectory`."""

    name = "idm"

    def __init__(self, config: IDMConfig | None = None):
        self.config = config or IDMConfig()
        self.behaviour = "cruise"  # what bound the first step of the latest plan, for the run log

    def plan(self, inp: PlannerInput) -> Trajectory:
        cfg, ego, route = self.config, inp.ego, inp.route
        n = int(round(cfg.horizon / cfg.dt)) + 1
        times = ego.t + cfg.dt * np.arange(n)
        s_ego, _ = project_to_route(route, (ego.x, ego.y), yaw=ego.yaw)
        v_ego = max(ego.v, 0.0) if math.isfinite(ego.v) else 0.0
        reach = max(v_ego, float(np.max(route.speed_limit))) * cfg.horizon + 60.0  # [m] farthest that matters

        free_speed = free_speed_profile(route, cfg)
        tracks = object_tracks(inp.perception, inp.prediction, route, s_ego, reach, times, cfg)
        prev_end = _previous_end_s(inp.previous, route, s_ego, reach)
        stops = (stop_line_stops(route, inp.perception.light_states, s_ego, v_ego, prev_end, cfg)
                 + crosswalk_stops(route, tracks, s_ego, times, cfg)
                 + [VirtualStop(rest=route.s[-1] + cfg.ego_front, hard=route.s[-1] + cfg.ego_front,
                                why="route_end")])
        a_ego = min(max(ego.a, -cfg.max_decel), cfg.max_accel) if math.isfinite(ego.a) else 0.0
        s, v, a, why = integrate_idm(s_ego, v_ego, a_ego, route.s, free_speed, tracks, stops, cfg)
        self.behaviour = why
        return trajectory_along_route(route, times, s, v, a)


def free_speed_profile(route: Route, cfg: IDMConfig) -> np.ndarray:
    """(P,) [m/s] desired speed at each route point: limit, desired speed and curves, anticipated.

    A point's speed is capped so that braking at anticipation_decel from it
    meets every lower cap ahead: v_i^2 = min_j>=i (cap_j^2 + 2 b (s_j - s_i)).
    """
    cap = np.array(route.speed_limit, dtype=np.float64)
    if cfg.desired_speed is not None:
        cap = np.minimum(cap, cfg.desired_speed)
    cap = np.minimum(cap, np.sqrt(cfg.max_lat_accel / np.maximum(np.abs(route.kappa), 1e-9)))
    two_b = 2.0 * cfg.anticipation_decel
    ahead = np.minimum.accumulate((cap ** 2 + two_b * route.s)[::-1])[::-1]
    return np.sqrt(np.maximum(ahead - two_b * route.s, 0.0))


def _positions_at(times: np.ndarray, ts: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N, 2) positions at `times` from samples (ts, xy): linear, extended at the last velocity."""
    out = np.column_stack([np.interp(times, ts, xy[:, 0]), np.interp(times, ts, xy[:, 1])])
    if ts.shape[0] >= 2:
        vel = (xy[-1] - xy[-2]) / (ts[-1] - ts[-2])
        late = times > ts[-1]
        out[late] = xy[-1] + (times[late] - ts[-1])[:, None] * vel
    return out


def object_tracks(perception: PerceptionOutput, prediction: Prediction, route: Route, s_ego: float,
                  reach: float, times: np.ndarray, cfg: IDMConfig) -> ObjectTracks:
    """Every tracked object along the route at the plan times, on its most likely predicted mode.

    An object without a (finite) prediction keeps its measured velocity. Beyond
    the end of the prediction an object keeps its last predicted velocity.
    """
    objs = [o for o in perception.objects
            if all(math.isfinite(q) for q in (o.x, o.y, o.length, o.width))]
    n = times.shape[0]
    if not objs:
        empty = np.zeros((0, n))
        return ObjectTracks(empty, empty, empty, empty, empty.astype(bool), empty.astype(bool),
                            np.zeros(0, dtype=bool))
    rows = {int(a): r for r, a in enumerate(prediction.agent_ids)}
    pred_t = prediction.t0 + prediction.dt * np.arange(1, prediction.xy.shape[2] + 1)
    later = pred_t > perception.t
    pos = np.empty((len(objs), n, 2))
    yaw = np.empty((len(objs), n))
    for i, o in enumerate(objs):
        yaw0 = o.yaw if math.isfinite(o.yaw) else 0.0
        r = rows.get(int(o.id))
        k = int(np.argmax(prediction.prob[r])) if r is not None else 0
        if r is not None and np.any(later) and np.all(np.isfinite(prediction.xy[r, k])):
            ts = np.concatenate([[perception.t], pred_t[later]])
            xy = np.concatenate([[[o.x, o.y]], prediction.xy[r, k][later]])
            yaws = np.unwrap(np.concatenate([[yaw0], np.nan_to_num(prediction.yaw[r, k][later], nan=yaw0)]))
        else:
            vx = o.vx if math.isfinite(o.vx) else 0.0
            vy = o.vy if math.isfinite(o.vy) else 0.0
            ts = np.array([perception.t, perception.t + 1.0])
            xy = np.array([[o.x, o.y], [o.x + vx, o.y + vy]])
            yaws = np.array([yaw0, yaw0])
        pos[i] = _positions_at(times, ts, xy)
        yaw[i] = np.interp(times, ts, yaws)

    s, d = project_to_route(route, pos.reshape(-1, 2), hint_s=s_ego, window=(-30.0, reach), fallback=False)
    s, d = s.reshape(len(objs), n), d.reshape(len(objs), n)
    heading = np.interp(s, route.s, np.unwrap(route.heading))
    rel = yaw - heading
    length = np.array([o.length for o in objs])[:, None]
    width = np.array([o.width for o in objs])[:, None]
    across = 0.5 * (length * np.abs(np.sin(rel)) + width * np.abs(np.cos(rel)))  # half extent across the route
    along = 0.5 * (length * np.abs(np.cos(rel)) + width * np.abs(np.sin(rel)))
    in_lane = np.abs(d) <= 0.5 * np.interp(s, route.s, route.width) + across + cfg.lateral_margin
    steps = int(round(cfg.anticipation / cfg.dt))
    padded = np.concatenate([in_lane, np.repeat(in_lane[:, -1:], steps, axis=1)], axis=1)
    in_path = np.lib.stride_tricks.sliding_window_view(padded, steps + 1, axis=1).any(axis=-1)
    v = np.gradient(s, cfg.dt, axis=1) if n > 1 else np.zeros_like(s)
    return ObjectTracks(centre_s=s, rear_s=s - along, d=d, v=v, in_lane=in_lane, in_path=in_path,
                        vulnerable=np.array([o.cls in VULNERABLE for o in objs]))


def _previous_end_s(previous, route: Route, s_ego: float, reach: float) -> float:
    """Route s of the previous plan's last point (-inf without one): where it had decided to go."""
    if not isinstance(previous, Trajectory) or len(previous) == 0:
        return -_INF
    end = (float(previous.x[-1]), float(previous.y[-1]))
    if not all(math.isfinite(q) for q in end):
        return -_INF
    return project_to_route(route, end, hint_s=s_ego, window=(-30.0, reach))[0]


def stop_line_stops(route: Route, light_states: dict, s_ego: float, v_ego: float, prev_end: float,
                    cfg: IDMConfig) -> list[VirtualStop]:
    """Virtual stops at the stop lines ahead that the ego must obey.

    red: stop, unless stopping needs more than max_decel, or more than
    yellow_max_decel after the previous plan already went through on yellow.
    yellow: stop if braking at yellow_max_decel suffices. green or unknown: go.
    stop sign: stop until stopped within stop_release_dist of the line (or the
    previous plan went through it).
    """
    front = s_ego + cfg.ego_front
    out = []
    for stop in route.stops:
        dist = stop.s - front
        if dist < 0.0:
            continue  # the front is already past the line
        rest = stop.s - cfg.stop_line_margin
        need = v_ego ** 2 / (2.0 * max(rest - front, 0.1))  # [m/s^2] braking to rest at the line
        committed = prev_end + cfg.ego_front > stop.s + 0.1
        if not stop.light:
            released = committed or (dist <= cfg.stop_release_dist and v_ego <= cfg.stop_release_speed)
            if not released:
                out.append(VirtualStop(rest=rest, hard=stop.s, why="stop_sign"))
            continue
        state = light_states.get(stop.light, "green")
        if state in ("yellow", "unknown") and need <= cfg.yellow_max_decel:  # unknown: a head in view, unread
            out.append(VirtualStop(rest=rest, hard=stop.s, why="yellow_light"))
        elif state == "red":
            too_late = need > cfg.max_decel or (committed and need > cfg.yellow_max_decel)
            if not too_late:
                out.append(VirtualStop(rest=rest, hard=stop.s, why="red_light"))
    return out


def crosswalk_stops(route: Route, tracks: ObjectTracks, s_ego: float, times: np.ndarray,
                    cfg: IDMConfig) -> list[VirtualStop]:
    """Virtual stops before crosswalks ahead with a pedestrian or cyclist on or near them.

    Near: within crosswalk_near of the lane edge and within a metre of the
    crossing along the route, now or within crosswalk_lookahead seconds.
    """
    front = s_ego + cfg.ego_front
    soon = times - times[0] <= cfg.crosswalk_lookahead
    s = tracks.centre_s[tracks.vulnerable][:, soon]
    d = tracks.d[tracks.vulnerable][:, soon]
    half_width = 0.5 * np.interp(s, route.s, route.width)
    out = []
    for start, end in route.crosswalks:
        if start <= front:
            continue  # already on it: clear it rather than stop on it
        near = (s >= start - 1.0) & (s <= end + 1.0) & (np.abs(d) <= half_width + cfg.crosswalk_near)
        if np.any(near):
            out.append(VirtualStop(rest=start - cfg.crosswalk_margin, hard=start, why="crosswalk"))
    return out


def idm_accel(v: float, v0: float, gap: np.ndarray, v_lead: np.ndarray, cfg: IDMConfig) -> np.ndarray:
    """IDM acceleration [m/s^2] behind leaders at `gap` [m] moving at `v_lead` [m/s].

    Above v0 the free-road part a (1 - (v/v0)^delta) is made at least
    overspeed_gain times the excess (plain IDM sheds a small excess too slowly
    to meet a curve's speed) and floored at -comfort_decel (it sheds a large
    excess far too steeply).
    """
    v0 = max(v0, 0.1)
    free = cfg.max_accel * (1.0 - (v / v0) ** cfg.delta)
    if v > v0:
        free = max(min(free, -cfg.overspeed_gain * (v - v0)), -cfg.comfort_decel)
    s_star = cfg.min_gap + np.maximum(0.0, v * cfg.time_gap
                                      + v * (v - v_lead) / (2.0 * math.sqrt(cfg.max_accel * cfg.comfort_decel)))
    return free - cfg.max_accel * (s_star / np.maximum(gap, 0.1)) ** 2


def integrate_idm(s_ego: float, v_ego: float, a_ego: float, route_s: np.ndarray, free_speed: np.ndarray,
                  tracks: ObjectTracks, stops: list[VirtualStop],
                  cfg: IDMConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Ego s, v, a along the route at the plan times, and what bound the first step.

    At each step every leader (objects in the path ahead of the ego's rear
    axle, and the virtual stops) gives an IDM acceleration; the smallest is
    applied, within [-max_decel, max_accel], rising from the ego's current
    acceleration a_ego at most max_jerk_up. The ego's front never passes a
    stop's hard line nor comes within hard_gap of the rear of an object ahead
    in its lane.
    """
    n = tracks.centre_s.shape[1]
    s = np.empty(n)
    v = np.empty(n)
    s[0], v[0] = s_ego, v_ego
    stop_rest = np.array([st.rest for st in stops])
    stop_hard = np.array([st.hard for st in stops])
    why_first = "cruise"
    a_prev = a_ego
    for k in range(n - 1):
        front = s[k] + cfg.ego_front
        v0 = float(np.min(np.interp([front, front + v[k] * cfg.speed_preview], route_s, free_speed)))
        ahead = tracks.in_path[:, k] & (tracks.centre_s[:, k] > s[k])
        gaps = np.concatenate([tracks.rear_s[ahead, k] - front, stop_rest + cfg.min_gap - front])
        v_lead = np.concatenate([tracks.v[ahead, k], np.zeros(len(stops))])
        acc_all = idm_accel(v[k], v0, gaps, v_lead, cfg)
        j = int(np.argmin(acc_all))
        acc = float(acc_all[j])
        if k == 0:
            free = float(idm_accel(v[k], v0, np.array([_INF]), np.zeros(1), cfg)[0])
            if acc < free - 0.05:  # a leader that changes the command noticeably
                why_first = "follow" if j < int(ahead.sum()) else stops[j - int(ahead.sum())].why
        acc = min(max(acc, -cfg.max_decel), cfg.max_accel, a_prev + cfg.max_jerk_up * cfg.dt)
        v_next = v[k] + acc * cfg.dt
        if v_next < 0.0:  # comes to rest within the step
            ds = v[k] ** 2 / (2.0 * -acc) if acc < 0.0 else 0.0
            v_next = 0.0
        else:
            ds = 0.5 * (v[k] + v_next) * cfg.dt
        s_next = s[k] + ds
        blocking = tracks.in_lane[:, k + 1] & (tracks.rear_s[:, k + 1] > front)  # overlaps are past guarding
        limit = min(float(np.min(stop_hard, initial=_INF)),
                    float(np.min(tracks.rear_s[blocking, k + 1], initial=_INF)) - cfg.hard_gap)
        if s_next + cfg.ego_front > limit:
            s_next = max(s[k], limit - cfg.ego_front)
            v_next = 0.0
        s[k + 1], v[k + 1] = s_next, v_next
        a_prev = (v_next - v[k]) / cfg.dt
    a = np.empty(n)
    a[:-1] = np.diff(v) / cfg.dt
    a[-1] = a[-2] if n > 1 else 0.0
    return s, v, a, why_first


def trajectory_along_route(route: Route, times: np.ndarray, s: np.ndarray, v: np.ndarray,
                           a: np.ndarray) -> Trajectory:
    """Trajectory at route arc lengths s: position, heading and curvature from the route.

    Before the route's start and past its end the route is extended straight.
    """
    xy = np.column_stack([np.interp(s, route.s, route.xy[:, 0]), np.interp(s, route.s, route.xy[:, 1])])
    for outside, i, base in ((s < route.s[0], 0, route.s[0]), (s > route.s[-1], -1, route.s[-1])):
        if np.any(outside):
            direction = np.array([math.cos(route.heading[i]), math.sin(route.heading[i])])
            xy[outside] = route.xy[i] + (s[outside] - base)[:, None] * direction
    heading = np.interp(s, route.s, np.unwrap(route.heading))
    yaw = (heading + np.pi) % (2.0 * np.pi) - np.pi
    kappa = np.interp(s, route.s, route.kappa)
    return Trajectory(t=times, x=xy[:, 0], y=xy[:, 1], yaw=yaw, v=v, a=a, kappa=kappa)
