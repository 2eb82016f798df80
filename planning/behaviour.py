"""The behaviour layer: what the lattice planner should aim for this cycle.

Rules in priority order (as in CARLA's behaviour agent): red lights and stop
lines first, then pedestrians on crosswalks or walking into the lane, then yielding to
oncoming traffic before a left turn, then the road's speed and the lead
vehicle; lane changes to overtake, to pass a blocked lane or to merge come from
the lattice's costs over the lateral offsets allowed here. Every hard "do not
go past here" becomes a virtual wall the collision check treats as an obstacle.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planning.base import PlannerInput, Route
from sim.types import PEDESTRIAN, VULNERABLE

YELLOW_STOP_DECEL = 3.0  # [m/s^2] stop for yellow only when this suffices
MAX_STOP_DECEL = 6.0  # [m/s^2] a red light that needs more is driven through (it turned while too close)
COMFORT_LAT_ACCEL = 2.5  # [m/s^2] curve speed from the road's curvature
CROSSWALK_REACH = 2.5  # [m] a pedestrian this close to a crosswalk on the route is about to use it
LEFT_TURN_GAP = 6.0  # [s] oncoming traffic closer than this in time makes the ego wait before turning left
LEFT_TURN_REACH = 2.0  # [m] a predicted position this near the turn's path (centre to centre) conflicts with it
LEFT_TURN_RISK = 0.1  # oncoming modes conflicting with the turn must add up to more than this to hold the ego
WALL_LENGTH = 1.0  # [m] virtual wall depth along the route
PEDESTRIAN_LOOKAHEAD = 4.0  # [s] a pedestrian's straight walk this far ahead is checked against the ego lane
PEDESTRIAN_CLEARANCE = 1.0  # [m] beyond the lane edge that still counts as in the way
PASSABLE_MARKINGS = ("dashed_white", "dashed_yellow")


@dataclass(frozen=True)
class Wall:
    s: float  # [m] along the route: the ego's front must stay behind it
    reason: str


@dataclass(frozen=True)
class Decision:
    behaviour: str  # what limits the ego now, for the log and the view
    v_desired: float  # [m/s]
    v_max: float  # [m/s] hard cap (speed limit)
    walls: tuple[Wall, ...] = ()
    d_min: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,) [m] per route point
    d_max: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _route_index(route: Route, s: float) -> int:
    return int(np.clip(np.searchsorted(route.s, s), 0, len(route.s) - 1))


def lateral_bounds(route: Route, road, ego_half_width: float, allow_opposite: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest lateral offset of the ego's centre line along the route.

    A same-direction neighbour lane (and, where the marking may be crossed and
    passing is allowed, the oncoming lane) widens the corridor by a lane; a
    parking lane or a kerb does not.
    """
    n = len(route.s)
    d_min, d_max = np.empty(n), np.empty(n)
    cache: dict[int, tuple[float, float]] = {}
    for i in range(n):
        lane_id = int(route.lane_of_point[i])
        if lane_id not in cache:
            lane = road.lanes[lane_id]
            half = 0.5 * lane.width - ego_half_width - 0.1
            hi = lo = half
            left = lane.left if lane.left >= 0 and road.lanes[lane.left].kind != "parking" else -1
            if left >= 0 and lane.left_marking in PASSABLE_MARKINGS + ("none",):
                hi = 0.5 * lane.width + road.lanes[left].width - ego_half_width - 0.1
            elif allow_opposite and lane.left_opposite >= 0 and lane.left_marking in PASSABLE_MARKINGS:
                hi = 0.5 * lane.width + road.lanes[lane.left_opposite].width - ego_half_width - 0.1
            right = lane.right if lane.right >= 0 and road.lanes[lane.right].kind not in ("parking",) else -1
            if right >= 0 and lane.right_marking in PASSABLE_MARKINGS + ("none",):
                lo = 0.5 * lane.width + road.lanes[right].width - ego_half_width - 0.1
            cache[lane_id] = (-lo, hi)
        d_min[i], d_max[i] = cache[lane_id]
    _widen_for_ending_lanes(route, road, ego_half_width, d_min)
    return d_min, d_max


ENDING_LANE_MARGIN = 10.0  # [m] the corridor leaves an ending lane this far before its end


def _widen_for_ending_lanes(route: Route, road, ego_half_width: float, d_min: np.ndarray) -> None:
    """Widen d_min (in place) by a lane that runs on the right of the route's lane without being its
    neighbour: an acceleration lane, whose left neighbour is the through lane while the through lane,
    which goes on without it, lists no right one. The route leaves such a lane early; the corridor
    keeps it until ENDING_LANE_MARGIN before its end, so a merging car that finds no gap drives on in
    it instead of stopping where the route leaves it."""
    for lane in road.lanes:
        through = road.lanes[lane.left] if lane.left >= 0 else None
        if through is None or through.right == lane.id or lane.kind == "parking" \
                or lane.left_marking not in PASSABLE_MARKINGS:
            continue
        on = np.flatnonzero(route.lane_of_point == through.id)
        if len(on) == 0:
            continue
        s, d = road.to_frenet(lane.id, route.xy[on])
        beside = (s > 0.0) & (s < lane.s[-1] - ENDING_LANE_MARGIN) & \
            (np.abs(d - 0.5 * (lane.width + through.width)) < 1.0)
        widest = -(0.5 * through.width + lane.width - ego_half_width - 0.1)
        d_min[on[beside]] = np.minimum(d_min[on[beside]], widest)


def curve_speed(route: Route, s_from: float, s_to: float) -> float:
    """The speed at which the sharpest bend between s_from and s_to stays comfortable."""
    a, b = _route_index(route, s_from), _route_index(route, s_to) + 1
    kappa = float(np.max(np.abs(route.kappa[a:b]))) if b > a else 0.0
    return float(np.sqrt(COMFORT_LAT_ACCEL / kappa)) if kappa > 1e-4 else np.inf


def light_walls(inp: PlannerInput, ego_s: float, front: float) -> list[Wall]:
    """A wall at every stop line ahead whose light says stop."""
    walls = []
    v = max(inp.ego.v, 0.0)
    for stop in inp.route.stops:
        gap = stop.s - (ego_s + front)
        if gap < -1.0 or gap > 150.0 or not stop.light:
            continue
        state = inp.perception.light_states.get(stop.light, "green")
        if state == "green":
            continue
        needed = v * v / (2.0 * max(gap, 0.1))  # deceleration needed to stop at the line
        # a light whose head is in view but unread is treated like yellow: stop if that is comfortable
        if state in ("yellow", "unknown") and needed > YELLOW_STOP_DECEL:
            continue
        if state == "red" and needed > MAX_STOP_DECEL and gap < v * 1.0:
            continue
        walls.append(Wall(stop.s, f"{state}_light"))
    return walls


def crosswalk_walls(inp: PlannerInput, ego_s: float, front: float) -> list[Wall]:
    """A wall before each crosswalk on the route that a pedestrian is on or about to step onto."""
    route, road = inp.route, inp.road
    walls = []
    for s0, s1 in route.crosswalks:
        if s1 < ego_s or s0 - (ego_s + front) > 60.0:
            continue
        cw = _crosswalk_at(road, route, 0.5 * (s0 + s1))
        if cw is None:
            continue
        for obj in inp.perception.objects:
            if obj.cls not in VULNERABLE:
                continue
            if _near_polygon(cw.polygon, np.array([obj.x, obj.y]), np.array([obj.vx, obj.vy])):
                walls.append(Wall(s0 - 1.0, "crosswalk"))
                break
    return walls


def _crosswalk_at(road, route: Route, s: float):
    xy = route.xy[_route_index(route, s)]
    for cw in road.crosswalks:
        lo, hi = cw.polygon.min(axis=0) - 1.0, cw.polygon.max(axis=0) + 1.0
        if np.all(xy >= lo) and np.all(xy <= hi):
            return cw
    return None


def _near_polygon(poly: np.ndarray, p: np.ndarray, v: np.ndarray) -> bool:
    """On the crosswalk, or within reach of it and not walking away."""
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    if np.all(p >= lo) and np.all(p <= hi):
        return True
    nearest = np.clip(p, lo, hi)
    gap = float(np.hypot(*(nearest - p)))
    if gap > CROSSWALK_REACH:
        return False
    return float(np.dot(v, nearest - p)) >= -0.1


def pedestrian_walls(inp: PlannerInput, ego_s: float, front: float) -> list[Wall]:
    """A wall before the point where a pedestrian, walking on as now, comes into the ego's lane.

    Pedestrians stepping out between parked cars are yielded to like those on a crosswalk.
    """
    from planning.route import project_to_route

    route = inp.route
    walls = []
    tau = np.arange(0.0, PEDESTRIAN_LOOKAHEAD + 1e-9, 0.5)
    for obj in inp.perception.objects:
        if obj.cls != PEDESTRIAN:
            continue
        path = np.column_stack([obj.x + obj.vx * tau, obj.y + obj.vy * tau])
        s, d = project_to_route(route, path, hint_s=ego_s)
        s, d = np.atleast_1d(s), np.atleast_1d(d)
        k = _route_index(route, float(s[0]))
        inside = np.abs(d) < 0.5 * float(route.width[k]) + PEDESTRIAN_CLEARANCE
        ahead = s > ego_s + front - 1.0
        hits = np.flatnonzero(inside & ahead & (s < ego_s + 80.0))
        if len(hits):
            wall = float(s[hits].min()) - 1.5
            gap = wall - (ego_s + front)
            # a wall the car cannot stop for would only block every plan: then the pedestrian's own
            # predicted path in the collision check decides (brake or steer around)
            if gap > 0.0 and inp.ego.v ** 2 / (2.0 * gap) <= MAX_STOP_DECEL:
                walls.append(Wall(wall, "yield_pedestrian"))
    return walls


def left_turn_walls(inp: PlannerInput, ego_s: float, front: float) -> list[Wall]:
    """Before a left-turn connector, wait at its start while oncoming traffic is close in time.

    An oncoming vehicle counts when its predicted modes that come within LEFT_TURN_REACH of the turn's
    path within LEFT_TURN_GAP add up to more than LEFT_TURN_RISK: a car predicted to turn away (into the
    lane beside the ego's exit, or in front of the ego on a wide junction) or to stop short does not
    hold the ego. A vehicle standing near the junction holds it whatever its modes say (it may pull
    away at any moment), and so does one the prediction does not cover, when its time to the turn at
    its current speed is within LEFT_TURN_GAP.
    """
    route, road = inp.route, inp.road
    walls = []
    seen = set()
    rows = {int(a): k for k, a in enumerate(inp.prediction.agent_ids)} if inp.prediction is not None else {}
    for i in range(_route_index(route, ego_s), _route_index(route, ego_s + 80.0)):
        lane_id = int(route.lane_of_point[i])
        if lane_id in seen:
            continue
        seen.add(lane_id)
        lane = road.lanes[lane_id]
        if lane.kind != "connector" or lane.turn != "left":
            continue
        entry_s = float(route.s[i])
        if entry_s - 1.0 < ego_s + front - 2.0:  # already committed into the turn
            continue
        entry_heading = float(lane.heading[0])
        centre = lane.xy[len(lane.xy) // 2]
        for obj in inp.perception.objects:
            if obj.cls == PEDESTRIAN:
                continue
            speed = float(np.hypot(obj.vx, obj.vy))
            heading = float(np.arctan2(obj.vy, obj.vx)) if speed > 0.5 else obj.yaw
            if np.cos(heading - entry_heading) > -0.7:  # not oncoming
                continue
            to_centre = centre - np.array([obj.x, obj.y])
            ahead = float(np.dot(to_centre, [np.cos(heading), np.sin(heading)]))
            if ahead < -5.0:  # already past the conflict
                continue
            if speed <= 0.5:
                holds = ahead < 15.0
            elif obj.id in rows:
                holds = turn_conflict_mass(inp.prediction, rows[obj.id], lane.xy) > LEFT_TURN_RISK
            else:
                holds = ahead / speed < LEFT_TURN_GAP
            if holds:
                walls.append(Wall(entry_s - 1.0, "yield_left_turn"))
                break
    return walls


def turn_conflict_mass(pred, row: int, path: np.ndarray) -> float:
    """Probability of agent `row`'s modes that come within LEFT_TURN_REACH of `path` (P, 2) in the first
    LEFT_TURN_GAP seconds."""
    steps = min(int(round(LEFT_TURN_GAP / pred.dt)), pred.xy.shape[2])
    pts = pred.xy[row, :, :steps]  # (K, S, 2)
    lo, hi = path.min(axis=0) - LEFT_TURN_REACH, path.max(axis=0) + LEFT_TURN_REACH
    near_box = np.all((pts >= lo) & (pts <= hi), axis=2)  # (K, S)
    mass = 0.0
    for k in np.flatnonzero((pred.prob[row] > 0.0) & near_box.any(axis=1)):
        cand = pts[k, near_box[k]]
        gap = np.hypot(*(cand[:, None, :] - path[None, :, :]).transpose(2, 0, 1)).min()
        if gap < LEFT_TURN_REACH:
            mass += float(pred.prob[row, k])
    return mass


def decide(inp: PlannerInput, ego_s: float, front: float, ego_half_width: float, allow_opposite: bool,
           speed_margin: float = 0.4, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> Decision:
    """`bounds`: this route's lateral_bounds when the caller keeps them (they depend on the route only)."""
    route = inp.route
    k = _route_index(route, ego_s)
    limit = float(route.speed_limit[k]) - speed_margin
    v_max = limit
    v_curve = curve_speed(route, ego_s, ego_s + max(30.0, 3.0 * inp.ego.v))
    v_desired = min(limit, v_curve)
    walls = []
    walls += light_walls(inp, ego_s, front)
    walls += crosswalk_walls(inp, ego_s, front)
    walls += pedestrian_walls(inp, ego_s, front)
    walls += left_turn_walls(inp, ego_s, front)
    goal_gap = route.goal_s - ego_s
    d_min, d_max = bounds if bounds is not None else lateral_bounds(route, inp.road, ego_half_width, allow_opposite)
    if walls:
        nearest = min(walls, key=lambda w: w.s)
        behaviour = nearest.reason
    elif v_curve < limit:
        behaviour = "curve"
    else:
        behaviour = "cruise"
    if goal_gap < 2.0 * max(inp.ego.v, 1.0):
        behaviour = "goal"
    return Decision(behaviour=behaviour, v_desired=v_desired, v_max=v_max, walls=tuple(walls), d_min=d_min, d_max=d_max)
