"""Closed-loop metrics of one recorded run, in the style of nuPlan's closed-loop score.

    score = prod(multipliers) * weighted_mean(weighted metrics) * 100

Multipliers (a safety failure sends the score to zero or halves it):
    no_at_fault_collision, drivable_area_compliance, driving_direction_compliance,
    making_progress, red_light_compliance
Weighted metrics (weight):
    progress (5), ttc_within_bound (5), speed_limit_compliance (4), comfort (2)

Everything here is a pure function of a RunLog and the road it ran on.
`compute_metrics` calls one function per metric, in the order above; each
returns a `MetricValue` with the value, the failures that explain a value below
one, and the raw figures it measured.

The road is used through its public contract (sim/road.py): `drivable(xy,
margin=...)`, `locate(xy, yaw)`, `speed_limit_at(xy, yaw)`, `lanes[i].s /
.heading / .name`, and `stop_lines` with `.lane`, `.s`, `.xy` and `.light`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numba import njit
from scipy.signal import savgol_filter

from sim.geometry import boxes_overlap, wrap_angle
from sim.log import LIGHT_CODES, RunLog
from sim.types import CLASS_NAMES, STATIC

MULTIPLIERS = ("no_at_fault_collision", "drivable_area_compliance", "driving_direction_compliance",
               "making_progress", "red_light_compliance")
WEIGHTS = {"progress": 5.0, "ttc_within_bound": 5.0, "speed_limit_compliance": 4.0, "comfort": 2.0}

# Collisions
STOPPED_SPEED = 0.1  # [m/s] an ego slower than this is stopped
REAR_CONTACT_MARGIN = 0.5  # [m] contact zone ahead of the ego's rear bumper that still counts as "rear"
REAR_HEADING_TOL = math.radians(45.0)  # [rad] a rear-ender drives roughly the ego's way
STATIC_COLLISION_MULTIPLIER = 0.5
# Drivable area
DRIVABLE_MARGIN = 0.3  # [m] how far a corner may stick out of the drivable area
# Driving direction
DIRECTION_WINDOW = 1.0  # [s]
WRONG_WAY_FAIL = 6.0  # [m] progress against the lane within one window that scores 0
WRONG_WAY_WARN = 2.0  # [m] ... that scores 0.5
# Progress
MIN_PROGRESS_RATIO = 0.2
ROUTE_SEARCH_BEHIND = 5.0  # [m] how far back along the route the local projection may look
ROUTE_SEARCH_AHEAD = 5.0  # [m] how far ahead of the ego's last step the local projection may look
REACH_GOAL_RATIO = 0.98
GOAL_TOLERANCE = 1.0  # [m] along the route: this close to the goal counts as reached
# Time to collision
TTC_BOUND = 0.95  # [s]
TTC_HORIZON = 3.0  # [s]
TTC_STEP = 0.1  # [s]
# Speed limit
MAX_OVERSPEED = 2.23  # [m/s] overspeed that, held for the whole run, scores 0
# Comfort (nuPlan's bounds)
LON_ACCEL_MIN, LON_ACCEL_MAX = -4.05, 2.40  # [m/s^2]
LAT_ACCEL_MAX = 4.89  # [m/s^2]
JERK_MAX = 8.37  # [m/s^3]
LON_JERK_MAX = 4.13  # [m/s^3]
YAW_RATE_MAX = 0.95  # [rad/s]
YAW_ACCEL_MAX = 1.93  # [rad/s^2]
SMOOTHING_WINDOW = 0.5  # [s] Savitzky-Golay window over the logged ego states

RED = LIGHT_CODES["red"]
CRITERIA_KEYS = ("min_score", "reach_goal", "no_collision")


@dataclass(frozen=True)
class Failure:
    metric: str  # metric name, or "criteria.<key>"
    time: float  # [s] when it happened (first occurrence)
    actor: str  # actor name, or "" when no actor is involved
    why: str  # a sentence with the numbers


@dataclass(frozen=True)
class MetricValue:
    """What one metric function returns."""

    value: float  # [0, 1]
    failures: tuple[Failure, ...] = ()
    figures: dict = field(default_factory=dict)  # raw figures for MetricsResult.metrics


@dataclass(frozen=True)
class MetricsResult:
    score: float  # [0, 100]
    metrics: MappingProxyType  # name -> float, read-only; see compute_metrics for the names
    failures: tuple[Failure, ...]
    passed: bool  # every pass criterion held

    def to_dict(self) -> dict:
        """Plain types for JSON reports."""
        return {"score": self.score, "passed": self.passed, "metrics": dict(self.metrics),
                "failures": [vars(f) for f in self.failures]}


@dataclass(frozen=True)
class Collision:
    actor: int  # index into the log's actors
    name: str
    time: float  # [s] first contact
    at_fault: bool
    why: str


def compute_metrics(log: RunLog, road, criteria: dict | None = None) -> MetricsResult:
    """Score one run. `criteria` holds the scenario's pass criteria (CRITERIA_KEYS; None values are unset).

    metrics holds every multiplier and weighted metric by name, and the raw figures
    min_ttc [s], max_overspeed [m/s], route_completion, collisions, at_fault_collisions,
    red_light_violations, max_abs_lat_accel [m/s^2], max_abs_jerk [m/s^3], duration [s], score.
    """
    criteria = _check_criteria(criteria)
    _check_log(log)
    ratio, _ = route_progress(log)
    collisions = find_collisions(log)
    multipliers = {
        "no_at_fault_collision": no_at_fault_collision(log, collisions),
        "drivable_area_compliance": drivable_area_compliance(log, road),
        "driving_direction_compliance": driving_direction_compliance(log, road),
        "making_progress": making_progress(log, ratio),
        "red_light_compliance": red_light_compliance(log, road),
    }
    weighted = {
        "progress": progress(log, ratio),
        "ttc_within_bound": ttc_within_bound(log),
        "speed_limit_compliance": speed_limit_compliance(log, road),
        "comfort": comfort(log),
    }
    score = 100.0 * composite_score({k: m.value for k, m in multipliers.items()},
                                    {k: m.value for k, m in weighted.items()})

    metrics: dict[str, float] = {}
    failures: list[Failure] = []
    for name, m in {**multipliers, **weighted}.items():
        metrics[name] = float(m.value)
        metrics.update(m.figures)
        failures.extend(m.failures)
    metrics["collisions"] = float(len(collisions))
    metrics["route_completion"] = float(ratio)
    metrics["duration"] = float(log.t[-1] - log.t[0])
    metrics["score"] = float(score)

    criteria_failures = check_criteria(criteria, score, ratio, collisions, float(log.t[-1]))
    return MetricsResult(score=float(score), metrics=MappingProxyType(metrics),
                         failures=tuple(failures) + criteria_failures, passed=not criteria_failures)


def composite_score(multipliers: dict[str, float], weighted: dict[str, float]) -> float:
    """prod(multipliers) * sum(w_i m_i) / sum(w_i), in [0, 1]."""
    product = float(np.prod([multipliers[k] for k in MULTIPLIERS]))
    mean = sum(WEIGHTS[k] * weighted[k] for k in WEIGHTS) / sum(WEIGHTS.values())
    return product * mean


def check_criteria(criteria: dict, score: float, ratio: float, collisions: tuple[Collision, ...],
                   t_end: float) -> tuple[Failure, ...]:
    out = []
    min_score = criteria.get("min_score")
    if min_score is not None and score < min_score:
        out.append(Failure("criteria.min_score", t_end, "", f"score {score:.1f} is below the required {min_score:.1f}"))
    if criteria.get("reach_goal") and ratio < REACH_GOAL_RATIO:
        out.append(Failure("criteria.reach_goal", t_end, "",
                           f"the ego completed {100 * ratio:.1f}% of the route; reaching the goal needs "
                           f"{100 * REACH_GOAL_RATIO:.0f}%"))
    if criteria.get("no_collision") and collisions:
        first = min(collisions, key=lambda c: c.time)
        out.append(Failure("criteria.no_collision", first.time, first.name,
                           f"{len(collisions)} collision(s); the first: {first.why}"))
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# Multipliers


def find_collisions(log: RunLog) -> tuple[Collision, ...]:
    """First contact of the ego box with each actor (SAT overlap at a logged step), with fault.

    Fault rule, judged at the first contact step k:
    - not at fault when the ego is stopped: |v| < STOPPED_SPEED at step k and at step k - 1
      (both, so that braking into an obstacle and stopping inside it still counts);
    - not at fault when the actor hits the ego's rear: the ego is driving forward, the actor is
      not static, its centre in the ego box frame lies behind x = -ego_length/2 + REAR_CONTACT_MARGIN
      (behind the rear bumper, plus a little for a contact at the corner), and its heading is
      within REAR_HEADING_TOL of the ego's;
    - at fault otherwise.
    """
    ego_boxes = log.ego_boxes()
    first = _first_contacts(ego_boxes, _actor_boxes(log), log.actor_active.astype(np.bool_))
    v = log.ego[:, 3]
    out = []
    for i in np.flatnonzero(first >= 0):
        k = int(first[i])
        cx, cy, yaw = log.actors[k, i, :3]
        ex, ey, eyaw = ego_boxes[k, :3]
        x_rel = (cx - ex) * math.cos(eyaw) + (cy - ey) * math.sin(eyaw)
        rel_heading = float(wrap_angle(yaw - eyaw))
        name, cls = log.actor_names[i], CLASS_NAMES[log.actor_cls[i]]
        what = f"ego ({v[k]:.1f} m/s) and {name} ({cls}, {log.actors[k, i, 3]:.1f} m/s) touched at t={log.t[k]:.2f} s"
        if abs(v[k]) < STOPPED_SPEED and abs(v[max(k - 1, 0)]) < STOPPED_SPEED:
            at_fault, why = False, f"{what}; the ego was stopped"
        elif (v[k] > 0.0 and log.actor_cls[i] != STATIC
              and x_rel < -0.5 * log.ego_length + REAR_CONTACT_MARGIN
              and abs(rel_heading) < REAR_HEADING_TOL):
            at_fault, why = False, f"{what}; {name} hit the ego's rear ({x_rel:.1f} m behind the ego's centre)"
        else:
            at_fault, why = True, f"{what}; the ego is at fault"
        out.append(Collision(int(i), name, float(log.t[k]), at_fault, why))
    return tuple(sorted(out, key=lambda c: (c.time, c.actor)))


def no_at_fault_collision(log: RunLog, collisions: tuple[Collision, ...]) -> MetricValue:
    """0 after an at-fault collision with a vehicle, pedestrian or cyclist; 0.5 with a static object."""
    value, failures = 1.0, []
    for c in collisions:
        if not c.at_fault:
            continue
        factor = STATIC_COLLISION_MULTIPLIER if log.actor_cls[c.actor] == STATIC else 0.0
        value = min(value, factor)
        failures.append(Failure("no_at_fault_collision", c.time, c.name, c.why))
    n_at_fault = sum(c.at_fault for c in collisions)
    return MetricValue(value, tuple(failures), {"at_fault_collisions": float(n_at_fault)})


def drivable_area_compliance(log: RunLog, road) -> MetricValue:
    """0 when any ego corner is more than DRIVABLE_MARGIN outside the drivable area at any step."""
    corners = ego_corners(log)  # (T, 4, 2)
    inside = np.asarray(road.drivable(corners.reshape(-1, 2), margin=DRIVABLE_MARGIN), dtype=bool)
    outside = ~inside.reshape(corners.shape[:2])
    bad_steps = np.flatnonzero(outside.any(axis=1))
    if len(bad_steps) == 0:
        return MetricValue(1.0)
    k = int(bad_steps[0])
    c = corners[k, int(np.argmax(outside[k]))]
    why = (f"an ego corner at ({c[0]:.1f}, {c[1]:.1f}) m is more than {DRIVABLE_MARGIN} m outside the drivable "
           f"area at t={log.t[k]:.2f} s ({len(bad_steps) * log.dt:.2f} s off the drivable area in all)")
    return MetricValue(0.0, (Failure("drivable_area_compliance", float(log.t[k]), "", why),))


def driving_direction_compliance(log: RunLog, road) -> MetricValue:
    """Ego progress against the direction of the lane it is in, over any DIRECTION_WINDOW.

    Each step's rear-axle displacement is projected on the heading of the lane located at the
    step's start (road.locate without yaw, so a wrong-way ego finds the lane it is in, not the one
    it points along); steps off every lane count zero. Inside a junction the connectors overlap, and
    a turn crosses the others: there the ego is judged against the connector it drives along (located
    with its yaw), and only where none runs its way against the one it is on. The largest negative
    sum over a window scores: more than WRONG_WAY_FAIL m -> 0, more than WRONG_WAY_WARN m -> 0.5, else 1.

    Overtaking through the oncoming lane where its centre-side marking is dashed (passing allowed)
    is not wrong-way driving; its length is reported as "oncoming_lane_distance".
    """
    xy = log.ego[:, :2]
    along = np.zeros(len(xy) - 1)  # [m] per-step progress along the lane direction
    lanes = np.full(len(xy) - 1, -1)
    overtaking = 0.0  # [m] driven in an oncoming lane that may be used for passing
    for k in range(len(xy) - 1):
        lane_id, s, _ = road.locate(xy[k], None)
        if lane_id < 0:
            continue
        if road.lanes[lane_id].kind == "connector":
            along_id, along_s, _ = road.locate(xy[k], float(log.ego[k, 2]))
            if along_id >= 0 and road.lanes[along_id].kind == "connector":
                lane_id, s = along_id, along_s
        lane = road.lanes[lane_id]
        heading = lane_heading(lane, s)
        step = (xy[k + 1, 0] - xy[k, 0]) * math.cos(heading) + (xy[k + 1, 1] - xy[k, 1]) * math.sin(heading)
        if step < 0.0 and lane.left_opposite >= 0 and lane.left_marking.startswith("dashed"):
            overtaking -= step
            continue
        along[k] = step
        lanes[k] = lane_id
    n = max(1, int(round(DIRECTION_WINDOW / log.dt)))
    csum = np.concatenate([[0.0], np.cumsum(along)])
    window = csum[min(n, len(along)):] - csum[:len(csum) - min(n, len(along))]  # progress over each window
    k_end = int(np.argmin(window))
    against = max(0.0, -float(window[k_end]))
    figures = {"max_wrong_way_progress": against, "oncoming_lane_distance": overtaking}
    if against <= WRONG_WAY_WARN:
        return MetricValue(1.0, (), figures)
    value = 0.0 if against > WRONG_WAY_FAIL else 0.5
    k_last = k_end + min(n, len(along))  # the window ends at this step
    lane_id = int(lanes[k_last - 1]) if lanes[k_last - 1] >= 0 else int(lanes[lanes >= 0][0])
    why = (f"the ego drove {against:.1f} m against the direction of lane {road.lanes[lane_id].name} within "
           f"{DIRECTION_WINDOW:.1f} s ending at t={log.t[k_last]:.2f} s (limits {WRONG_WAY_WARN} m -> 0.5, "
           f"{WRONG_WAY_FAIL} m -> 0)")
    return MetricValue(value, (Failure("driving_direction_compliance", float(log.t[k_last]), "", why),), figures)


def making_progress(log: RunLog, ratio: float) -> MetricValue:
    """1 when the route progress ratio reaches MIN_PROGRESS_RATIO."""
    if ratio >= MIN_PROGRESS_RATIO:
        return MetricValue(1.0)
    why = f"the ego completed {100 * ratio:.1f}% of the route, below the {100 * MIN_PROGRESS_RATIO:.0f}% minimum"
    return MetricValue(0.0, (Failure("making_progress", float(log.t[-1]), "", why),))


def red_light_compliance(log: RunLog, road) -> MetricValue:
    """0 when the ego's front bumper crosses a stop line whose light is red at that step.

    A crossing at step k: the bumper midpoint goes from before the line (step k - 1) to on or past
    it (step k), measured along the line's lane direction, and lies within the line's extent
    widened by half the ego width. Stop lines without a light (stop signs) are not judged here.
    """
    bumper = front_bumper(log)  # (T, 2)
    light_index = {name: j for j, name in enumerate(log.light_names)}
    crossings = []  # (step, stop line index, light name)
    for n_line, line in enumerate(road.stop_lines):
        if line.light == "":
            continue
        if line.light not in light_index:
            raise ValueError(f"stop line {n_line} is controlled by light {line.light!r}, which the run log does "
                             f"not record (log.light_names: {list(log.light_names)})")
        a, b = np.asarray(line.xy, dtype=float)
        centre, u = 0.5 * (a + b), b - a
        half = 0.5 * float(np.hypot(*u))
        u = u / (2.0 * half)
        normal = np.array([-u[1], u[0]])
        heading = lane_heading(road.lanes[line.lane], line.s)
        if normal @ np.array([math.cos(heading), math.sin(heading)]) < 0.0:
            normal = -normal  # points the way traffic on the lane drives
        ahead = (bumper - centre) @ normal  # [m] signed distance past the line
        lateral = np.abs((bumper - centre) @ u)
        crossed = (ahead[:-1] < 0.0) & (ahead[1:] >= 0.0) & (lateral[1:] <= half + 0.5 * log.ego_width)
        red = log.light_states[1:, light_index[line.light]] == RED
        crossings += [(int(k) + 1, n_line, line.light) for k in np.flatnonzero(crossed & red)]
    figures = {"red_light_violations": float(len(crossings))}
    if not crossings:
        return MetricValue(1.0, (), figures)
    failures = tuple(
        Failure("red_light_compliance", float(log.t[k]), "",
                f"the ego's front bumper crossed stop line {n_line} at t={log.t[k]:.2f} s at "
                f"{log.ego[k, 3]:.1f} m/s while light {light!r} was red")
        for k, n_line, light in sorted(crossings))
    return MetricValue(0.0, failures, figures)


# ----------------------------------------------------------------------------------------------
# Weighted metrics


def route_progress(log: RunLog) -> tuple[float, np.ndarray]:
    """(progress ratio in [0, 1], (T,) arc length [m] of the ego rear axle along log.route_xy).

    The first step is projected on the whole route; each later step only on the part within
    ROUTE_SEARCH_BEHIND m behind and (step length + ROUTE_SEARCH_AHEAD) m ahead of the previous
    projection, so a route that folds back near itself does not make the ego jump along it.
    ratio = (max reached - start) / (goal_s - start), clipped to [0, 1]; 1 when the ego starts at the goal
    or comes within GOAL_TOLERANCE of it.
    """
    route = np.asarray(log.route_xy, dtype=float)
    route_s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(route, axis=0).T))])
    s = _route_arclength(route, route_s, np.ascontiguousarray(log.ego[:, :2], dtype=float),
                         ROUTE_SEARCH_BEHIND, ROUTE_SEARCH_AHEAD)
    span = log.goal_s - s[0]
    if span <= 1e-6:
        return 1.0, s
    if s.max() >= log.goal_s - GOAL_TOLERANCE:
        return 1.0, s
    return float(np.clip((s.max() - s[0]) / span, 0.0, 1.0)), s


def progress(log: RunLog, ratio: float) -> MetricValue:
    """The route progress ratio itself (see route_progress)."""
    if ratio >= 1.0:
        return MetricValue(1.0)
    why = f"the ego completed {100 * ratio:.1f}% of the route to the goal at s={log.goal_s:.1f} m"
    return MetricValue(ratio, (Failure("progress", float(log.t[-1]), "", why),))


def time_to_collision(log: RunLog) -> tuple[np.ndarray, np.ndarray]:
    """(T,) time to collision [s] (inf when none within TTC_HORIZON) and (T,) actor index (-1 when none).

    At each step with the ego moving forward (v > STOPPED_SPEED), the ego and every active actor
    are moved on at constant velocity (their heading and speed at that step) at TTC_STEP intervals
    up to TTC_HORIZON; the TTC is the first sampled time their boxes overlap. Actors whose centre is
    behind the ego's rear bumper are ignored (the ego is not at fault for being rear-ended), and so
    are actors already touching the ego (that is a collision, judged by find_collisions).
    """
    return _ttc_kernel(log.ego_boxes(), np.ascontiguousarray(log.ego[:, 3]), _actor_boxes(log),
                       np.ascontiguousarray(log.actors[:, :, 3]), log.actor_active.astype(np.bool_),
                       TTC_HORIZON, TTC_STEP, STOPPED_SPEED)


def ttc_within_bound(log: RunLog) -> MetricValue:
    """1 when the time to collision stays above TTC_BOUND at every step."""
    ttc, who = time_to_collision(log)
    k = int(np.argmin(ttc))
    figures = {"min_ttc": float(ttc[k])}
    below = np.flatnonzero(ttc <= TTC_BOUND)
    if len(below) == 0:
        return MetricValue(1.0, (), figures)
    first = int(below[0])
    name = log.actor_names[who[first]]
    why = (f"time to collision with {name} fell to {ttc[first]:.1f} s at t={log.t[first]:.2f} s (bound "
           f"{TTC_BOUND} s; minimum {ttc[k]:.1f} s with {log.actor_names[who[k]]} at t={log.t[k]:.2f} s)")
    return MetricValue(0.0, (Failure("ttc_within_bound", float(log.t[first]), name, why),), figures)


def speed_limit_compliance(log: RunLog, road) -> MetricValue:
    """max(0, 1 - integral(overspeed dt) / (MAX_OVERSPEED * duration)), overspeed = max(0, v - limit).

    The limit is the road's at the ego rear axle; off the road it is unlimited. The integral is
    the trapezoid rule over the logged steps.
    """
    limit = np.array([road.speed_limit_at(log.ego[k, :2], log.ego[k, 2]) for k in range(len(log.t))], dtype=float)
    over = np.maximum(0.0, log.ego[:, 3] - limit)
    integral = float(np.sum(0.5 * (over[1:] + over[:-1]) * np.diff(log.t)))  # [m]
    duration = float(log.t[-1] - log.t[0])
    value = max(0.0, 1.0 - integral / (MAX_OVERSPEED * duration))
    k = int(np.argmax(over))
    figures = {"max_overspeed": float(over[k])}
    if integral <= 0.0:
        return MetricValue(1.0, (), figures)
    first = int(np.flatnonzero(over > 0.0)[0])
    why = (f"the ego exceeded the speed limit from t={log.t[first]:.2f} s, by up to {over[k]:.2f} m/s "
           f"({log.ego[k, 3]:.2f} m/s in a {limit[k]:.2f} m/s zone at t={log.t[k]:.2f} s); {integral:.2f} m of "
           f"overspeed over {duration:.1f} s gives {value:.3f}")
    return MetricValue(value, (Failure("speed_limit_compliance", float(log.t[first]), "", why),), figures)


def ego_dynamics(log: RunLog) -> dict[str, np.ndarray]:
    """(T,) smoothed ego derivatives: lon_accel, lat_accel [m/s^2], jerk, lon_jerk [m/s^3], yaw_rate
    [rad/s], yaw_accel [rad/s^2].

    Savitzky-Golay (quadratic) derivatives of the logged speed and unwrapped yaw over about
    SMOOTHING_WINDOW, so one physics step's quantisation does not read as a spike. The lateral
    acceleration is v * yaw_rate; jerk is the magnitude of (d lon_accel/dt, d lat_accel/dt).
    """
    n = len(log.t)
    window = int(round(SMOOTHING_WINDOW / log.dt)) // 2 * 2 + 1
    window = min(max(window, 3), n if n % 2 else n - 1)
    if window < 3:
        zero = np.zeros(n)
        return {k: zero for k in ("lon_accel", "lat_accel", "jerk", "lon_jerk", "yaw_rate", "yaw_accel")}

    def d(x, order):
        return savgol_filter(x, window, 2, deriv=order, delta=log.dt, mode="interp")

    v, yaw = log.ego[:, 3], np.unwrap(log.ego[:, 2])
    lon_accel, lon_jerk = d(v, 1), d(v, 2)
    yaw_rate, yaw_accel = d(yaw, 1), d(yaw, 2)
    lat_accel = savgol_filter(v, window, 2, mode="interp") * yaw_rate
    jerk = np.hypot(lon_jerk, d(lat_accel, 1))
    return {"lon_accel": lon_accel, "lat_accel": lat_accel, "jerk": jerk, "lon_jerk": lon_jerk,
            "yaw_rate": yaw_rate, "yaw_accel": yaw_accel}


def comfort(log: RunLog) -> MetricValue:
    """1 when every smoothed ego derivative (ego_dynamics) stays within nuPlan's comfort bounds."""
    dyn = ego_dynamics(log)
    checks = (  # name, signal, lower, upper, unit
        ("longitudinal acceleration", dyn["lon_accel"], LON_ACCEL_MIN, LON_ACCEL_MAX, "m/s^2"),
        ("lateral acceleration", dyn["lat_accel"], -LAT_ACCEL_MAX, LAT_ACCEL_MAX, "m/s^2"),
        ("jerk", dyn["jerk"], -JERK_MAX, JERK_MAX, "m/s^3"),
        ("longitudinal jerk", dyn["lon_jerk"], -LON_JERK_MAX, LON_JERK_MAX, "m/s^3"),
        ("yaw rate", dyn["yaw_rate"], -YAW_RATE_MAX, YAW_RATE_MAX, "rad/s"),
        ("yaw acceleration", dyn["yaw_accel"], -YAW_ACCEL_MAX, YAW_ACCEL_MAX, "rad/s^2"),
    )
    failures = []
    for name, x, lo, hi, unit in checks:
        out = np.flatnonzero((x < lo) | (x > hi))
        if len(out) == 0:
            continue
        k, worst = int(out[0]), int(np.argmax(np.abs(x)))
        failures.append(Failure("comfort", float(log.t[k]), "",
                                f"{name} {x[k]:.2f} {unit} at t={log.t[k]:.2f} s is outside [{lo}, {hi}] {unit} "
                                f"(extreme {x[worst]:.2f} {unit} at t={log.t[worst]:.2f} s)"))
    figures = {"max_abs_lat_accel": float(np.max(np.abs(dyn["lat_accel"]))),
               "max_abs_jerk": float(np.max(np.abs(dyn["jerk"])))}
    return MetricValue(0.0 if failures else 1.0, tuple(failures), figures)


# ----------------------------------------------------------------------------------------------
# Geometry helpers


def lane_heading(lane, s: float) -> float:
    """[rad] lane heading at the centreline point nearest arc length s."""
    k = int(np.clip(np.searchsorted(lane.s, s), 0, len(lane.s) - 1))
    if k > 0 and abs(lane.s[k - 1] - s) < abs(lane.s[k] - s):
        k -= 1
    return float(lane.heading[k])


def ego_corners(log: RunLog) -> np.ndarray:
    """(T, 4, 2) [m] ego box corners, counter-clockwise from front-left."""
    return _corners_np(log.ego_boxes())


def front_bumper(log: RunLog) -> np.ndarray:
    """(T, 2) [m] middle of the ego's front bumper."""
    reach = log.ego_center_offset + 0.5 * log.ego_length
    yaw = log.ego[:, 2]
    return np.column_stack([log.ego[:, 0] + reach * np.cos(yaw), log.ego[:, 1] + reach * np.sin(yaw)])


def _actor_boxes(log: RunLog) -> np.ndarray:
    """(T, N, 5) actor boxes: cx, cy, yaw, length, width."""
    T, N = log.actor_active.shape
    out = np.empty((T, N, 5))
    out[:, :, :3] = log.actors[:, :, :3]
    out[:, :, 3] = np.asarray(log.actor_length, dtype=float)[None, :]
    out[:, :, 4] = np.asarray(log.actor_width, dtype=float)[None, :]
    return out


def _check_log(log: RunLog) -> None:
    T = len(log.t)
    if T < 2:
        raise ValueError(f"run log {log.scenario!r} has {T} step(s); metrics need at least 2")
    if len(log.route_xy) < 2:
        raise ValueError(f"run log {log.scenario!r}: route_xy needs at least 2 points, got {len(log.route_xy)}")
    N = len(log.actor_names)
    expected = {"ego": (T, 6), "actors": (T, N, 5), "actor_active": (T, N), "light_states": (T, len(log.light_names))}
    for name, shape in expected.items():
        if getattr(log, name).shape != shape:
            raise ValueError(f"run log {log.scenario!r}: {name} must have shape {shape}, got {getattr(log, name).shape}")


def _check_criteria(criteria: dict | None) -> dict:
    criteria = {k: v for k, v in (criteria or {}).items() if v is not None}
    unknown = sorted(set(criteria) - set(CRITERIA_KEYS))
    if unknown:
        raise ValueError(f"unknown pass criteria {unknown}; expected some of {list(CRITERIA_KEYS)}")
    return criteria


# ----------------------------------------------------------------------------------------------
# Kernels (Numba) and the NumPy reference of the TTC kernel, for tests


@njit(cache=True)
def _first_contacts(ego_boxes, actor_boxes, active):
    """(N,) first step at which each actor's box overlaps the ego's, -1 if never."""
    T, N = active.shape
    first = np.full(N, -1, np.int64)
    for k in range(T):
        r_ego = 0.5 * np.sqrt(ego_boxes[k, 3] ** 2 + ego_boxes[k, 4] ** 2)
        for i in range(N):
            if first[i] >= 0 or not active[k, i]:
                continue
            dx = actor_boxes[k, i, 0] - ego_boxes[k, 0]
            dy = actor_boxes[k, i, 1] - ego_boxes[k, 1]
            rr = r_ego + 0.5 * np.sqrt(actor_boxes[k, i, 3] ** 2 + actor_boxes[k, i, 4] ** 2)
            if dx * dx + dy * dy >= rr * rr:
                continue
            if boxes_overlap(ego_boxes[k], actor_boxes[k, i]):
                first[i] = k
    return first


@njit(cache=True)
def _ttc_kernel(ego_boxes, ego_v, actor_boxes, actor_v, active, horizon, step, min_speed):
    """See time_to_collision. Broad phase: skip an actor whose centre never comes within the sum of
    the two bounding radii of the ego's centre under constant relative velocity over the horizon."""
    T, N = active.shape
    n_tau = int(np.round(horizon / step))
    ttc = np.full(T, np.inf)
    who = np.full(T, -1, np.int64)
    eb = np.empty(5)
    ab = np.empty(5)
    for k in range(T):
        v = ego_v[k]
        if v <= min_speed:
            continue
        ex, ey, eyaw = ego_boxes[k, 0], ego_boxes[k, 1], ego_boxes[k, 2]
        c, s = np.cos(eyaw), np.sin(eyaw)
        evx, evy = v * c, v * s
        r_ego = 0.5 * np.sqrt(ego_boxes[k, 3] ** 2 + ego_boxes[k, 4] ** 2)
        eb[:] = ego_boxes[k]
        for i in range(N):
            if not active[k, i]:
                continue
            px = actor_boxes[k, i, 0] - ex
            py = actor_boxes[k, i, 1] - ey
            if px * c + py * s < -0.5 * ego_boxes[k, 3]:
                continue  # behind the ego's rear bumper
            avx = actor_v[k, i] * np.cos(actor_boxes[k, i, 2])
            avy = actor_v[k, i] * np.sin(actor_boxes[k, i, 2])
            wx, wy = avx - evx, avy - evy
            ww = wx * wx + wy * wy
            tau_star = 0.0
            if ww > 0.0:
                tau_star = min(max(-(px * wx + py * wy) / ww, 0.0), horizon)
            dx, dy = px + wx * tau_star, py + wy * tau_star
            rr = r_ego + 0.5 * np.sqrt(actor_boxes[k, i, 3] ** 2 + actor_boxes[k, i, 4] ** 2)
            if dx * dx + dy * dy >= rr * rr:
                continue
            if boxes_overlap(ego_boxes[k], actor_boxes[k, i]):
                continue  # already touching: a collision, not a time to collision
            ab[:] = actor_boxes[k, i]
            for m in range(1, n_tau + 1):
                tau = m * step
                if tau >= ttc[k]:
                    break
                eb[0], eb[1] = ex + evx * tau, ey + evy * tau
                ab[0], ab[1] = actor_boxes[k, i, 0] + avx * tau, actor_boxes[k, i, 1] + avy * tau
                if boxes_overlap(eb, ab):
                    ttc[k] = tau
                    who[k] = i
                    break
    return ttc, who


def time_to_collision_reference(ego_box, ego_v, actor_boxes, actor_v, active,
                                horizon=TTC_HORIZON, step=TTC_STEP, min_speed=STOPPED_SPEED):
    """NumPy reference of one step of _ttc_kernel (no broad phase): (ttc [s], actor index or -1)."""
    ego_box, actor_boxes = np.asarray(ego_box, float), np.asarray(actor_boxes, float)
    if ego_v <= min_speed:
        return np.inf, -1
    heading = np.array([np.cos(ego_box[2]), np.sin(ego_box[2])])
    rel = actor_boxes[:, :2] - ego_box[:2]
    keep = active & (rel @ heading >= -0.5 * ego_box[3]) & ~_overlap_np(ego_box[None], actor_boxes)
    tau = step * np.arange(1, int(round(horizon / step)) + 1)  # (M,)
    ego_moved = np.repeat(ego_box[None], len(tau), axis=0)
    ego_moved[:, :2] += ego_v * tau[:, None] * heading
    actor_vel = actor_v[:, None] * np.column_stack([np.cos(actor_boxes[:, 2]), np.sin(actor_boxes[:, 2])])
    actor_moved = np.repeat(actor_boxes[:, None], len(tau), axis=1)  # (N, M, 5)
    actor_moved[:, :, :2] += tau[None, :, None] * actor_vel[:, None, :]
    hit = _overlap_np(ego_moved[None], actor_moved) & keep[:, None]  # (N, M)
    first = np.where(hit.any(axis=1), np.argmax(hit, axis=1), len(tau))
    if first.min() == len(tau):
        return np.inf, -1
    i = int(np.argmin(first))
    return float(tau[first[i]]), i


def _overlap_np(b1, b2):
    """Vectorised separating-axis test of boxes (..., 5), broadcast; same rule as boxes_overlap."""
    b1, b2 = np.broadcast_arrays(b1, b2)
    c1, c2 = _corners_np(b1), _corners_np(b2)
    separated = np.zeros(b1.shape[:-1], dtype=bool)
    for yaw in (b1[..., 2], b2[..., 2]):
        for axis in (np.stack([np.cos(yaw), np.sin(yaw)], -1), np.stack([-np.sin(yaw), np.cos(yaw)], -1)):
            p1 = np.einsum("...kj,...j->...k", c1, axis)
            p2 = np.einsum("...kj,...j->...k", c2, axis)
            separated |= (p1.max(-1) <= p2.min(-1) + 1e-9) | (p2.max(-1) <= p1.min(-1) + 1e-9)
    return ~separated


def _corners_np(b):
    """(..., 4, 2) corners of boxes (..., 5), counter-clockwise from front-left."""
    c, s = np.cos(b[..., 2])[..., None], np.sin(b[..., 2])[..., None]
    a = 0.5 * b[..., 3:4] * np.array([1.0, -1.0, -1.0, 1.0])
    w = 0.5 * b[..., 4:5] * np.array([1.0, 1.0, -1.0, -1.0])
    return np.stack([b[..., 0:1] + a * c - w * s, b[..., 1:2] + a * s + w * c], axis=-1)


@njit(cache=True)
def _route_arclength(route, route_s, xy, behind, ahead):
    """(T,) arc length of each point's projection on the route polyline, local after the first step."""
    T = xy.shape[0]
    n_seg = route.shape[0] - 1
    out = np.empty(T)
    for k in range(T):
        if k == 0:
            lo_s, hi_s = -np.inf, np.inf
        else:
            moved = np.sqrt((xy[k, 0] - xy[k - 1, 0]) ** 2 + (xy[k, 1] - xy[k - 1, 1]) ** 2)
            lo_s, hi_s = out[k - 1] - behind, out[k - 1] + moved + ahead
        best_d2, best_s = np.inf, 0.0
        j0 = max(0, np.searchsorted(route_s, lo_s) - 1)
        for j in range(j0, n_seg):
            if route_s[j] > hi_s:
                break
            dx, dy = route[j + 1, 0] - route[j, 0], route[j + 1, 1] - route[j, 1]
            l2 = dx * dx + dy * dy
            if l2 < 1e-12:
                continue
            u = ((xy[k, 0] - route[j, 0]) * dx + (xy[k, 1] - route[j, 1]) * dy) / l2
            seg_len = np.sqrt(l2)
            u = min(max(u, (lo_s - route_s[j]) / seg_len, 0.0), (hi_s - route_s[j]) / seg_len, 1.0)
            px, py = route[j, 0] + u * dx - xy[k, 0], route[j, 1] + u * dy - xy[k, 1]
            d2 = px * px + py * py
            if d2 < best_d2:
                best_d2, best_s = d2, route_s[j] + u * seg_len
        out[k] = best_s if best_d2 < np.inf else out[k - 1]
    return out


def tracking_errors(log: RunLog) -> tuple[np.ndarray, np.ndarray]:
    """(T,) cross-track [m] and heading [rad] errors of the ego against the plan it was tracking.

    At each physics step the active plan is the latest one made at or before that time; the
    error is the signed distance from the rear axle to the plan's polyline and the yaw difference
    at the nearest point. Steps before the first plan are NaN.
    """
    cte = np.full(len(log.t), np.nan)
    heading = np.full(len(log.t), np.nan)
    for k, t in enumerate(log.t):
        c = int(np.searchsorted(log.stack_t, t + 1e-9)) - 1
        if c < 0:
            continue
        plan = log.plans[c]
        plan = plan[np.isfinite(plan[:, 1])]
        if len(plan) < 2:
            continue
        p = log.ego[k, :2]
        a, b = plan[:-1, 1:3], plan[1:, 1:3]
        seg = b - a
        u = np.clip(np.einsum("ij,ij->i", p - a, seg) / np.maximum(np.einsum("ij,ij->i", seg, seg), 1e-12), 0.0, 1.0)
        foot = a + u[:, None] * seg
        j = int(np.argmin(np.hypot(*(p - foot).T)))
        yaw = plan[j, 3] + u[j] * math.remainder(plan[j + 1, 3] - plan[j, 3], 2 * math.pi)
        normal = np.array([-math.sin(yaw), math.cos(yaw)])
        cte[k] = float((p - foot[j]) @ normal)
        heading[k] = math.remainder(log.ego[k, 2] - yaw, 2 * math.pi)
    return cte, heading
