"""The world: a road and its actors built from a scenario, stepped at a fixed dt.

The actors' state lives in the traffic kernel's matrices (sim.traffic); this
class builds them, fires scripted events when their triggers hold, and hands
out read-only views. Every random draw comes from generators seeded by the run
seed, so the same scenario and seed give the same trace, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.schema import (ActorSpec, DistanceTrigger, IDMSpec, MobilSpec, Scenario, TimeGapTrigger,
                              TimeTrigger)
from sim import traffic as tk
from sim.presets import build_road
from sim.types import CAR, CYCLIST, PEDESTRIAN, STATIC, TRUCK, EgoState, frozen_array

# type -> (class, length [m], width [m], wheelbase [m])
ACTOR_TYPES = {
    "car": (CAR, 4.6, 1.9, 2.8),
    "van": (CAR, 5.3, 2.05, 3.3),
    "truck": (TRUCK, 12.0, 2.5, 7.5),
    "pedestrian": (PEDESTRIAN, 0.6, 0.6, 0.0),
    "cyclist": (CYCLIST, 1.8, 0.6, 1.1),
    "static": (STATIC, 4.6, 1.9, 2.8),
}
LIGHT_STATE_NAMES = ("green", "yellow", "red")


@dataclass(frozen=True)
class RoadArrays:
    """The road packed for the traffic kernel (see sim.traffic)."""

    pts: np.ndarray
    ps: np.ndarray
    pk: np.ndarray  # (M,) [1/m] curvature at each point
    kmax: np.ndarray  # (L,) [1/m] each lane's largest |curvature|
    start: np.ndarray
    width: np.ndarray
    length: np.ndarray
    left: np.ndarray
    right: np.ndarray
    succ: np.ndarray
    nsucc: np.ndarray
    stop_s: np.ndarray
    stop_light: np.ndarray
    dead_end: np.ndarray
    aabb: np.ndarray


def road_arrays(road) -> RoadArrays:
    lanes = road.lanes
    L = len(lanes)
    sizes = [len(lane.s) for lane in lanes]
    start = np.zeros(L + 1, dtype=np.int64)
    start[1:] = np.cumsum(sizes)
    succ = -np.ones((L, 4), dtype=np.int64)
    nsucc = np.zeros(L, dtype=np.int64)
    for lane in lanes:
        nsucc[lane.id] = min(len(lane.successors), 4)
        succ[lane.id, : nsucc[lane.id]] = lane.successors[:4]
    light_index = {light.name: k for k, light in enumerate(road.lights)}
    stop_s = np.full(L, np.nan)
    stop_light = -np.ones(L, dtype=np.int64)
    for stop in road.stop_lines:
        if stop.light:
            stop_s[stop.lane] = stop.s
            stop_light[stop.lane] = light_index[stop.light]
    aabb = np.array([[*lane.xy.min(axis=0), *lane.xy.max(axis=0)] for lane in lanes])
    return RoadArrays(
        pts=np.concatenate([lane.xy for lane in lanes]).astype(np.float64),
        ps=np.concatenate([lane.s for lane in lanes]).astype(np.float64),
        pk=np.concatenate([lane.kappa for lane in lanes]).astype(np.float64),
        kmax=np.array([float(np.abs(lane.kappa).max()) for lane in lanes]),
        start=start,
        width=np.array([lane.width for lane in lanes]),
        length=np.array([lane.length for lane in lanes]),
        # traffic changes lanes only into driving lanes, never into a parking lane
        left=np.array([_drivable_neighbour(road, lane.left) for lane in lanes], dtype=np.int64),
        right=np.array([_drivable_neighbour(road, lane.right) for lane in lanes], dtype=np.int64),
        succ=succ,
        nsucc=nsucc,
        stop_s=stop_s,
        stop_light=stop_light,
        dead_end=np.array([1 if (lane.kind == "accel" and not lane.successors) else 0 for lane in lanes], dtype=np.int64),
        aabb=aabb,
    )


def _drivable_neighbour(road, lane_id: int) -> int:
    return lane_id if lane_id >= 0 and road.lanes[lane_id].kind != "parking" else -1


@dataclass
class _Pending:
    actor: int  # row in the actor matrices
    trigger: object
    action: object


class World:
    """Road, actors and clock of one scenario run."""

    def __init__(self, scenario: Scenario, seed: int | None = None):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else int(seed)
        streams = np.random.SeedSequence(self.seed).spawn(2)
        self.rng = np.random.default_rng(streams[0])  # world randomness: traffic placement
        self.sensor_seed = streams[1]  # for perception noise, kept apart from the world's draws
        self.road = build_road(scenario.road.preset, scenario.road.params)
        self.arrays = road_arrays(self.road)
        self.dt = scenario.dt
        self.t = 0.0
        self.step_index = 0
        self.lights = self._lights(scenario)
        self.light_names = [light.name for light in self.road.lights]
        rows, routes, paths = self._actors(scenario)
        self.names = [r[0] for r in rows]
        n = len(rows)
        self.F = np.zeros((n, tk.NF))
        self.I = np.zeros((n, tk.NI), dtype=np.int64)
        for i, (_, f, ii) in enumerate(rows):
            self.F[i], self.I[i] = f, ii
        self.routes = np.array(routes, dtype=np.int64) if routes else np.zeros(1, dtype=np.int64)
        if paths:
            self.path_xy = np.concatenate([p[0] for p in paths])
            self.path_s = np.concatenate([p[1] for p in paths])
        else:
            self.path_xy, self.path_s = np.zeros((2, 2)), np.zeros(2)
        self.pending = [
            _Pending(self.names.index(spec.id), ev.trigger, ev.action)
            for spec in scenario.actors for ev in spec.events
        ]
        self.fired: list[tuple[float, str, str]] = []  # (time, actor, action kind)
        self.collisions: list[tuple[float, int, int]] = []  # (time, row, row), first contact of each pair
        self._colliding: set[tuple[int, int]] = set()

    # ---- construction ---------------------------------------------------------

    def _lights(self, scenario: Scenario) -> np.ndarray:
        out = np.zeros((max(len(self.road.lights), 1), 4))
        overrides = {spec.name: spec for spec in scenario.lights}
        for k, light in enumerate(self.road.lights):
            spec = overrides.get(light.name)
            values = [light.green, light.yellow, light.red, light.offset]
            if spec is not None:
                for j, key in enumerate(("green", "yellow", "red", "offset")):
                    if getattr(spec, key) is not None:
                        values[j] = getattr(spec, key)
            out[k] = values
        return out

    def _vehicle_row(self, name, cls, length, width, wheelbase, lane_id, s, d, speed, mode):
        f = np.zeros(tk.NF)
        ii = np.zeros(tk.NI, dtype=np.int64)
        (cx, cy), heading = self.road.to_cartesian(lane_id, np.array(s, float), np.array(d, float))
        cx, cy, heading = float(cx), float(cy), float(heading)
        off = 0.5 * wheelbase
        f[[tk.X, tk.Y, tk.YAW, tk.V]] = cx - off * np.cos(heading), cy - off * np.sin(heading), heading, speed
        f[[tk.S, tk.D, tk.LEN, tk.WID, tk.WB, tk.OFF]] = s, d, length, width, max(wheelbase, 0.5), off
        f[[tk.LC_T0, tk.LC_D0, tk.LC_DUR, tk.D_TARGET, tk.COOLDOWN]] = -100.0, d, 1.0, d, 0.0
        f[[tk.MAX_STEER, tk.MAX_STEER_RATE, tk.MAX_ACC, tk.MAX_DEC]] = 0.6, 0.8, 4.0, 9.0
        ii[[tk.MODE, tk.CLS, tk.LANE, tk.ACTIVE]] = mode, cls, lane_id, 1
        ii[tk.SEG] = self.arrays.start[lane_id]
        ii[tk.LC_FROM] = -1
        return name, f, ii

    def _actors(self, scenario: Scenario):
        rows, routes, paths = [], [], []
        ego = scenario.ego
        veh = ego.vehicle
        name, f, ii = self._vehicle_row("ego", CAR, veh.length, veh.width, veh.wheelbase,
                                        self.road.lane(ego.lane).id, ego.s, ego.d, ego.speed, tk.EGO)
        f[[tk.MAX_STEER, tk.MAX_STEER_RATE, tk.MAX_ACC, tk.MAX_DEC]] = veh.max_steer, veh.max_steer_rate, veh.max_accel, veh.max_decel
        rows.append((name, f, ii))
        for spec in scenario.actors:
            rows.append(self._scripted_row(spec, routes, paths))
        rows.extend(self._random_traffic(scenario, rows, routes))
        return rows, routes, paths

    def _scripted_row(self, spec: ActorSpec, routes: list, paths: list):
        cls, length, width, wb = ACTOR_TYPES[spec.type]
        length = spec.length or length
        width = spec.width or width
        if spec.behaviour == "path":
            xy = np.asarray(spec.path, dtype=float)
            seg = np.hypot(*np.diff(xy, axis=0).T)
            s = np.concatenate([[0.0], np.cumsum(seg)])
            f = np.zeros(tk.NF)
            ii = np.zeros(tk.NI, dtype=np.int64)
            heading = np.arctan2(xy[1, 1] - xy[0, 1], xy[1, 0] - xy[0, 0])
            p0 = sum(len(p[1]) for p in paths)
            paths.append((xy, s))
            f[[tk.X, tk.Y, tk.YAW, tk.V, tk.LEN, tk.WID, tk.WB]] = xy[0, 0], xy[0, 1], heading, 0.0, length, width, 1.0
            f[[tk.PATH_S, tk.PATH_SPEED, tk.AMAX]] = spec.s, spec.path_speed, 1.5 if cls == PEDESTRIAN else 2.0
            x, y, h = tk.path_point(np.concatenate([p[0] for p in paths]), np.concatenate([p[1] for p in paths]),
                                    p0, len(s), spec.s)
            f[[tk.X, tk.Y, tk.YAW]] = x, y, h
            ii[[tk.MODE, tk.CLS, tk.ACTIVE, tk.PATH_START, tk.PATH_LEN, tk.MOVING]] = (
                tk.PATH, cls, 1, p0, len(s), 1 if spec.start_moving else 0)
            ii[tk.LANE] = ii[tk.LC_FROM] = -1
            if spec.start_moving:
                f[tk.V] = spec.path_speed if spec.speed == 0 else spec.speed
            return spec.id, f, ii
        lane = self.road.lane(spec.lane)
        mode = tk.STATIC if spec.behaviour == "static" else tk.LANE_FOLLOW
        speed = 0.0 if mode == tk.STATIC else spec.speed
        name, f, ii = self._vehicle_row(spec.id, cls, length, width, wb if wb > 0 else 1.0, lane.id, spec.s, spec.d, speed, mode)
        idm = spec.idm
        v0 = idm.v0 if idm.v0 is not None else lane.speed_limit * idm.speed_factor
        f[[tk.V0, tk.TGAP, tk.AMAX, tk.BCOMF, tk.S0, tk.DELTA]] = v0, idm.T, idm.a, idm.b, idm.s0, idm.delta
        f[[tk.POLITE, tk.LC_THRESH, tk.BSAFE]] = spec.mobil.politeness, spec.mobil.threshold, spec.mobil.b_safe
        ii[tk.MOBIL] = 1 if spec.mobil.enabled else 0
        if spec.route:
            ii[tk.ROUTE_START], ii[tk.ROUTE_LEN] = len(routes), len(spec.route)
            routes.extend(self.road.lane(r).id for r in spec.route)
        return name, f, ii

    def _random_traffic(self, scenario: Scenario, rows: list, routes: list):
        spec = scenario.traffic
        if spec.count == 0:
            return []
        road = self.road
        lanes = [road.lane(n) for n in spec.lanes] if spec.lanes else [
            lane for lane in road.lanes if lane.kind == "driving" and lane.length > 50.0]
        ego_xy = rows[0][1][[tk.X, tk.Y]]
        placed: list[tuple[int, float, float]] = []  # lane id, s, length
        for _, f, ii in rows[1:]:
            if ii[tk.MODE] in (tk.LANE_FOLLOW, tk.STATIC):
                placed.append((int(ii[tk.LANE]), float(f[tk.S]), float(f[tk.LEN])))
        out = []
        tries = 0
        while len(out) < spec.count and tries < 50 * spec.count:
            tries += 1
            lane = lanes[int(self.rng.integers(len(lanes)))]
            lo, hi = spec.s_range[0], min(spec.s_range[1], lane.length - 10.0)
            if hi <= lo:
                continue
            s = float(self.rng.uniform(lo, hi))
            kind = "truck" if self.rng.random() < spec.truck_fraction else "car"
            cls, length, width, wb = ACTOR_TYPES[kind]
            (x, y), _ = road.to_cartesian(lane.id, np.array(s), np.array(0.0))
            if np.hypot(x - ego_xy[0], y - ego_xy[1]) < spec.keep_clear_of_ego + length:
                continue
            if any(l == lane.id and abs(s - s2) < spec.min_gap + 0.5 * (length + len2) for l, s2, len2 in placed):
                continue
            v0 = float(self.rng.uniform(*spec.speed_range))
            if kind == "truck":
                v0 = min(v0, 0.8 * spec.speed_range[1])
            speed = min(v0, lane.speed_limit * 1.1) * float(self.rng.uniform(0.85, 1.0))
            name, f, ii = self._vehicle_row(f"traffic_{len(out)}", cls, length, width, wb, lane.id, s, 0.0, speed, tk.LANE_FOLLOW)
            f[[tk.V0, tk.TGAP, tk.AMAX, tk.BCOMF, tk.S0, tk.DELTA]] = v0, float(self.rng.uniform(1.2, 1.8)), 1.5, 2.0, 2.5, 4.0
            f[[tk.POLITE, tk.LC_THRESH, tk.BSAFE]] = spec.politeness, 0.2, 4.0
            ii[tk.MOBIL] = 1
            route = self._random_route(lane.id)
            if len(route) > 1:
                ii[tk.ROUTE_START], ii[tk.ROUTE_LEN] = len(routes), len(route)
                routes.extend(route)
            placed.append((lane.id, s, length))
            out.append((name, f, ii))
        self._safe_spawn_speeds(out)
        return out

    @staticmethod
    def _safe_spawn_speeds(rows) -> None:
        """No spawned vehicle starts closing on its leader faster than it could brake for."""
        by_lane: dict[int, list] = {}
        for _, f, ii in rows:
            by_lane.setdefault(int(ii[tk.LANE]), []).append(f)
        for vehicles in by_lane.values():
            vehicles.sort(key=lambda f: -f[tk.S])
            for lead, f in zip(vehicles, vehicles[1:]):
                gap = lead[tk.S] - f[tk.S] - 0.5 * (lead[tk.LEN] + f[tk.LEN])
                f[tk.V] = min(f[tk.V], lead[tk.V] + 0.3 * gap)

    def _random_route(self, lane_id: int) -> list[int]:
        """A random walk over successors, for traffic at forks (intersections)."""
        route = [lane_id]
        while len(route) < 8:
            succ = self.road.lanes[route[-1]].successors
            if not succ:
                break
            route.append(succ[int(self.rng.integers(len(succ)))] if len(succ) > 1 else succ[0])
        return route

    # ---- stepping ---------------------------------------------------------------

    def hand_ego_to_traffic_model(self, v0: float, idm: IDMSpec = IDMSpec(), mobil: MobilSpec = MobilSpec()) -> None:
        """From now on the simulator's own IDM+MOBIL model drives the ego, as it drives the traffic, at the
        desired speed v0 [m/s]: the baseline a stack's driving is compared with. Ego commands are ignored."""
        f, i = self.F[0], self.I[0]
        f[[tk.V0, tk.TGAP, tk.AMAX, tk.BCOMF, tk.S0, tk.DELTA]] = v0, idm.T, idm.a, idm.b, idm.s0, idm.delta
        f[[tk.POLITE, tk.LC_THRESH, tk.BSAFE]] = mobil.politeness, mobil.threshold, mobil.b_safe
        i[tk.MOBIL] = 1 if mobil.enabled else 0
        i[tk.MODE] = tk.LANE_FOLLOW

    def set_ego_command(self, steer: float, accel: float) -> None:
        self.F[0, tk.STEER_CMD] = steer
        self.F[0, tk.ACC_CMD] = accel

    def step(self) -> None:
        """Fire due events, then act, move and check every actor over one dt."""
        self._fire_events()
        a = self.arrays
        pairs = tk.step_traffic(self.F, self.I, self.routes, self.path_xy, self.path_s, self.lights, a.pts, a.ps, a.pk, a.kmax,
                                a.start, a.length, a.left, a.right, a.succ, a.nsucc, a.stop_s, a.stop_light,
                                a.dead_end, a.aabb, self.t, self.dt, self.step_index)
        self.step_index += 1
        self.t = self.step_index * self.dt
        now = {(int(i), int(j)) for i, j in pairs}
        for pair in sorted(now - self._colliding):
            self.collisions.append((self.t, *pair))
        self._colliding = now

    def _trigger_holds(self, p: _Pending) -> bool:
        trig = p.trigger
        if isinstance(trig, TimeTrigger):
            return self.t >= trig.time
        ego_c = np.array(tk.centre(self.F, 0))
        act_c = np.array(tk.centre(self.F, p.actor))
        if isinstance(trig, DistanceTrigger):
            return float(np.hypot(*(act_c - ego_c))) < trig.ego_distance
        if isinstance(trig, TimeGapTrigger):
            yaw = self.F[0, tk.YAW]
            ahead = float((act_c - ego_c) @ np.array([np.cos(yaw), np.sin(yaw)]))
            gap = ahead - 0.5 * (self.F[0, tk.LEN] + self.F[p.actor, tk.LEN])
            return ahead > 0 and gap / max(self.F[0, tk.V], 0.1) < trig.ego_time_gap
        raise TypeError(f"unknown trigger {trig!r}")

    def _fire_events(self) -> None:
        keep = []
        for p in self.pending:
            if self.I[p.actor, tk.ACTIVE] and self._trigger_holds(p):
                self._apply(p.actor, p.action)
                self.fired.append((self.t, self.names[p.actor], p.action.kind))
            else:
                keep.append(p)
        self.pending = keep

    def _apply(self, i: int, action) -> None:
        F, I = self.F, self.I
        if action.kind == "cut_in":
            target = self.road.lane(action.target_lane).id
            a = self.arrays
            s, d, _ = tk.project_global(a.pts, a.ps, a.start, target, *tk.centre(F, i))
            tk.start_lane_change(F, I, a.pts, a.ps, a.start, i, target, s, d, self.t, action.duration)
            F[i, tk.COOLDOWN] = self.t + action.duration + 5.0
        elif action.kind == "brake":
            F[i, tk.OV_ACC], F[i, tk.OV_SPEED] = -action.decel, action.until_speed
        elif action.kind == "set_speed":
            sign = 1.0 if action.speed >= F[i, tk.V] else -1.0
            F[i, tk.OV_ACC], F[i, tk.OV_SPEED] = sign * action.accel, action.speed
            if sign > 0:
                F[i, tk.V0] = action.speed  # IDM must want the new speed while the override accelerates
            if I[i, tk.MODE] == tk.PATH:
                F[i, tk.PATH_SPEED] = action.speed
        elif action.kind == "go":
            I[i, tk.MOVING] = 1
            if I[i, tk.MODE] == tk.STATIC:
                I[i, tk.MODE] = tk.LANE_FOLLOW
        else:
            raise ValueError(f"unknown action {action.kind!r}")

    # ---- views --------------------------------------------------------------------

    def ego_state(self) -> EgoState:
        f = self.F[0]
        return EgoState(x=float(f[tk.X]), y=float(f[tk.Y]), yaw=float(f[tk.YAW]), v=float(f[tk.V]),
                        a=float(f[tk.A]), steer=float(f[tk.STEER]), t=self.t)

    @property
    def n_actors(self) -> int:
        """Actors other than the ego (rows 1..n)."""
        return self.F.shape[0] - 1

    def actor_table(self) -> np.ndarray:
        """(N, 5) actors' box centre x, y, yaw, speed, acceleration (rows 1..n)."""
        F = self.F[1:]
        cx = F[:, tk.X] + F[:, tk.OFF] * np.cos(F[:, tk.YAW])
        cy = F[:, tk.Y] + F[:, tk.OFF] * np.sin(F[:, tk.YAW])
        return np.column_stack([cx, cy, F[:, tk.YAW], F[:, tk.V], F[:, tk.A]])

    def actor_active(self) -> np.ndarray:
        return self.I[1:, tk.ACTIVE] == 1

    def actor_classes(self) -> np.ndarray:
        return frozen_array(self.I[1:, tk.CLS], np.int64)

    def actor_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        return self.F[1:, tk.LEN].copy(), self.F[1:, tk.WID].copy()

    def light_codes(self) -> np.ndarray:
        return np.array([tk.light_state(self.lights, k, self.t) for k in range(len(self.road.lights))], dtype=np.int8)

    def light_states(self) -> dict[str, str]:
        return {name: LIGHT_STATE_NAMES[code] for name, code in zip(self.light_names, self.light_codes())}
