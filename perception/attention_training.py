"""Training and evaluation of the goal-driven attention head (perception.attention).

    drivestack train attention [--data DIR] [--out perception/weights/attention.pt]
    drivestack eval attention --json FILE [--data DIR] [--weights FILE]

Data: closed-loop runs of the shipped suites (sweep variants, oracle
perception, the lattice planner) with random traffic and light phases as in
`drivestack dataset generate` (sim.sensors.dataset._randomised). Frames are
rendered from the recorded run with the camera alone; the frozen detector's
features are stored, not the images. Each frame gets one or more goals: the
scenario's own route, and where the ego's lane ends at a junction within
JUNCTION_REACH metres, a route through each of its connectors (straight,
left, right); where the lane has neighbours, a change to each. The SAME
features then carry a different target per goal.

Targets (`goal_regions`), for the goal's route and the recorded future of
every actor over HORIZON seconds:

    lead          the nearest vehicle ahead on the route
    conflicts     actors whose future centres come within CONFLICT_RADIUS of the route ahead,
                  where the ego could be at that time (route s up to ego_s + max(v, 5) t + 12 m)
    crosswalks    pedestrians within 3 m of a crosswalk the route crosses in the next 50 m
    oncoming      for a left turn: vehicles on the oncoming lanes (their last 70 m and straight
                  or right connectors)
    areas         the route's own lane from AREA_START metres ahead; for a left turn, the oncoming lanes

The target map is the union of the actors' image boxes (weight 1) and the
areas (AREA_WEIGHT) on the attention grid, normalised, plus a uniform floor
of TARGET_FLOOR; areas behind the boxes of actors that do not matter get
no weight. An actor is in view with at least VISIBLE_PX pixels showing and at
most MAX_TRUNCATION of its box outside the image (perception.attention); the
ground-truth relevance of an actor in view is whether it is in one of the
four actor sets.

Splits are by scenario seed (sim.sensors.dataset.split_of): train runs use
seeds with seed % 10 in 0..7, the evaluation seeds with seed % 10 == 9.
Caches (features, goals, targets) live under --data, /tmp by default.
"""
from __future__ import annotations

import hashlib
import json
import math
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from perception.attention import (COMMANDS, POOL, WEIGHTS, GoalAttention, cell_coverage, detector_features,
                                  goal_encoding, load_attention, object_box, pad_image, relevance,
                                  route_command, save_attention)
from sim.types import CAR, CYCLIST, PEDESTRIAN, TRUCK, EgoState, PerceptionOutput, TrackedObject

DEFAULT_DATA = Path("/tmp/drivestack_attention")
HORIZON = 4.0  # [s] of recorded future that decides which actors interact with the route
CONFLICT_RADIUS = 2.5  # [m] an actor's centre this near the route ahead conflicts with it
LEAD_HALF_WIDTH = 2.0  # [m] a vehicle centred this near the route is on it
JUNCTION_REACH = 70.0  # [m] a frame whose lane ends this near gets one goal per connector
CROSSWALK_REACH = 50.0  # [m] crosswalks on the route this far ahead make their pedestrians relevant
AREA_WEIGHT = 0.25  # target weight of a route-area cell relative to an actor's box cell
AREA_START = 8.0  # [m] ahead of the ego where the route's area starts (the road under the bonnet is no news)
ONCOMING_WEIGHT = 1.0  # target weight of an oncoming-lane cell (a left turn): small and far, but what matters
TARGET_FLOOR = 0.03  # share of the target's mass spread over every cell
# weight of the mass left on irrelevant actors' boxes in the training loss (irrelevant_mass), picked on
# a validation split of the training runs (cases with index % 5 == 0; 0, 2, 5 and 10 gave a validation
# AUROC of 0.889, 0.904, 0.917 and 0.921 after 40 epochs), not on the held-out seeds
IRRELEVANT_WEIGHT = 10.0
VISIBLE_PX = 20  # an actor with fewer visible pixels is not "in view" for the relevance figures
VEHICLES = (CAR, TRUCK, CYCLIST)
INTERSECTION_FAMILIES = ("unprotected_left", "intersection_red_green", "right_turn_pedestrians")


# ----------------------------------------------------------------------------- geometry on the grid


@dataclass(frozen=True)
class View:
    """One camera pose: what projecting into the attention grid needs."""

    ego: EgoState
    K: np.ndarray  # (3, 3)
    T_ego_cam: np.ndarray  # (4, 4)
    image_size: tuple[int, int]  # [px] width, height
    grid: tuple[int, int]  # attention cells h, w


def ground_rays(view: View, sub: int = 4, max_range: float = 150.0) -> tuple[np.ndarray, np.ndarray]:
    """Where the image sees the ground: world points (P, 2) [m] of sub x sub rays per attention cell that
    hit the ground (z = 0) within max_range [m], and the flat cell index (P,) of each."""
    h, w = view.grid
    width, height = view.image_size
    u = (np.arange(w * sub) + 0.5) * width / (w * sub)
    v = (np.arange(h * sub) + 0.5) * height / (h * sub)
    uu, vv = np.meshgrid(u, v)
    rays_cam = np.stack([(uu - view.K[0, 2]) / view.K[0, 0], (vv - view.K[1, 2]) / view.K[1, 1], np.ones_like(uu)])
    R, origin = view.T_ego_cam[:3, :3], view.T_ego_cam[:3, 3]
    rays = np.tensordot(R, rays_cam, axes=1)  # (3, H, W) ego frame
    t = -origin[2] / np.where(rays[2] < -1e-6, rays[2], np.nan)
    ex, ey = origin[0] + t * rays[0], origin[1] + t * rays[1]
    ok = np.isfinite(t) & (t > 0) & (np.hypot(ex, ey) < max_range)
    cell = (np.arange(h * sub)[:, None] // sub) * w + (np.arange(w * sub)[None, :] // sub)
    ego = view.ego
    c, s = math.cos(ego.yaw), math.sin(ego.yaw)
    xy = np.column_stack([ego.x + c * ex[ok] - s * ey[ok], ego.y + s * ex[ok] + c * ey[ok]])
    return xy, cell[ok]


def strip_mask(view: View, rays: tuple[np.ndarray, np.ndarray], xy: np.ndarray, s: np.ndarray, half_width: float,
               s_from: float, s_to: float) -> np.ndarray:
    """(h, w) bool: cells that see the ground inside a polyline's strip (half width [m]) between arc
    lengths s_from and s_to [m]."""
    from planning.route import project_polyline

    pts, cell = rays
    mask = np.zeros(view.grid[0] * view.grid[1], dtype=bool)
    if s_to > s_from and len(pts):
        ps, pd = project_polyline(np.asarray(xy), np.asarray(s), pts)
        mask[cell[(np.abs(pd) <= half_width) & (ps >= s_from) & (ps <= s_to)]] = True
    return mask.reshape(view.grid)


def actor_box(view: View, log, k: int, i: int) -> np.ndarray | None:
    """Image box (4,) [px] of actor row i at step k of a RunLog, as object_box draws a tracked object."""
    cx, cy, yaw = log.actors[k, i, :3]
    obj = TrackedObject(id=i + 1, cls=int(log.actor_cls[i]), x=float(cx), y=float(cy), yaw=float(yaw), vx=0.0,
                        vy=0.0, length=float(log.actor_length[i]), width=float(log.actor_width[i]))
    return object_box(obj, view.ego, _Camera(view))


@dataclass(frozen=True)
class _Camera:
    """The calibration part of a CameraFrame, for object_box."""

    view: View

    @property
    def K(self):
        return self.view.K

    @property
    def T_ego_cam(self):
        return self.view.T_ego_cam

    @property
    def width(self):
        return self.view.image_size[0]

    @property
    def height(self):
        return self.view.image_size[1]


# ----------------------------------------------------------------------------- goals of a frame


def _straight_successor(road, lane_id: int) -> int | None:
    lane = road.lanes[lane_id]
    for n in lane.successors:
        if road.lanes[n].turn in ("straight", ""):
            return int(n)
    return int(lane.successors[0]) if lane.successors else None


def _follow(road, lanes: list[int], start_s: float, length: float = 150.0) -> list[int]:
    """`lanes` extended by straight-ahead successors until they cover `length` metres from start_s on the first."""
    out = list(lanes)
    total = sum(road.lanes[i].length for i in out) - start_s
    while total < length:
        nxt = _straight_successor(road, out[-1])
        if nxt is None or nxt in out:
            break
        out.append(nxt)
        total += road.lanes[nxt].length
    return out


def frame_goals(road, own_route, ego: EgoState) -> list[tuple[str, object]]:
    """(name, Route) goals for a frame: the scenario's route, one per connector of the lane ending
    ahead (within JUNCTION_REACH), and a change to each neighbour lane; duplicates dropped."""
    from planning.route import build_route

    goals = [("own", own_route)]
    lane_id, s_lane, _ = road.locate(np.array([ego.x, ego.y]), ego.yaw)
    if lane_id < 0:
        return goals
    lane = road.lanes[lane_id]
    s_lane = min(max(s_lane, 0.0), lane.length - 2.0)
    sequences = []
    if lane.kind != "connector" and lane.length - s_lane < JUNCTION_REACH and len(lane.successors) > 1:
        for n in lane.successors:
            turn = road.lanes[n].turn or "straight"
            sequences.append((turn, _follow(road, [lane_id, n], s_lane, 120.0)))
    elif lane.kind != "connector":
        sequences.append(("follow", _follow(road, [lane_id], s_lane)))
    for side in ("left", "right"):
        other = getattr(lane, side)
        if other >= 0 and lane.length - s_lane > 60.0:
            sequences.append((f"change_{side}", _follow(road, [lane_id, other], s_lane)))
    own = [int(i) for i in own_route.lane_ids]
    own_ahead = own[own.index(lane_id):] if lane_id in own else []
    seen = {tuple(own)}
    for name, seq in sequences:
        key = tuple(seq)
        if key in seen or seq[:2] == own_ahead[:2]:  # the scenario's route takes this way already
            continue
        try:
            goals.append((name, build_route(road, seq, start_s=s_lane)))
            seen.add(key)
        except ValueError:
            continue
    return goals


def oncoming_lanes(road, route, ego_s: float) -> list[int]:
    """For a route turning left ahead: the incoming lanes facing its approach lane at the same junction
    and their straight and right connectors; [] when the route does not turn left ahead."""
    ahead = route.lane_of_point[(route.s >= ego_s) & (route.s <= ego_s + JUNCTION_REACH + 30.0)]
    turn = next((int(i) for i in ahead if road.lanes[int(i)].turn == "left"), None)
    if turn is None or not road.lanes[turn].predecessors:
        return []
    src = road.lanes[road.lanes[turn].predecessors[0]]
    end, heading = src.xy[-1], src.heading[-1]
    out = []
    for lane in road.lanes:
        if lane.kind == "connector" or not lane.successors:
            continue
        facing = math.cos(lane.heading[-1] - heading) < -0.8
        if facing and float(np.hypot(*(lane.xy[-1] - end))) < 40.0:
            out.append(lane.id)
            out.extend(n for n in lane.successors if road.lanes[n].turn in ("straight", "right"))
    return out


# ----------------------------------------------------------------------------- targets


def box_cover(boxes: np.ndarray, image_size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """(h, w) [0, 1] union (cell-wise maximum) of the boxes' (N, 4) [px] cell coverage."""
    if len(boxes) == 0:
        return np.zeros(grid)
    return cell_coverage(boxes, image_size, grid).max(axis=0)


@dataclass
class GoalRegions:
    """What matters for one goal in one frame."""

    relevant: set  # actor rows that interact with the route
    route_area: np.ndarray  # (h, w) bool: the route's lane ahead
    oncoming_area: np.ndarray  # (h, w) bool: the oncoming lanes (left turns; else all False)
    relevant_cover: np.ndarray  # (h, w) [0, 1] union of the relevant actors' boxes in view
    other_cover: np.ndarray  # (h, w) [0, 1] union of the other actors' boxes in view

    def target(self) -> np.ndarray:
        """(h, w) target attention map summing to 1: the relevant actors' boxes, and the areas where no
        other actor stands in front of them (an actor that does not matter is not to be looked at)."""
        area = np.maximum(self.route_area * AREA_WEIGHT, self.oncoming_area * ONCOMING_WEIGHT)
        union = np.maximum(area * (1.0 - self.other_cover), self.relevant_cover)
        n = union.size
        if union.sum() <= 0.0:
            return np.full(union.shape, 1.0 / n)
        return (1.0 - TARGET_FLOOR) * union / union.sum() + TARGET_FLOOR / n

    def mask(self) -> np.ndarray:
        """(h, w) bool: the goal-relevant cells: the areas, less what other actors cover by half, and
        the cells relevant actors cover by a quarter."""
        return ((self.route_area | self.oncoming_area) & (self.other_cover < 0.5)) | (self.relevant_cover >= 0.25)


def _point_in_quad(quad: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N,) bool: points (N, 2) inside a convex polygon (4, 2) of either winding."""
    signs = []
    for j in range(len(quad)):
        a, b = quad[j], quad[(j + 1) % len(quad)]
        signs.append((b[0] - a[0]) * (pts[:, 1] - a[1]) - (b[1] - a[1]) * (pts[:, 0] - a[0]))
    signs = np.array(signs)
    return np.all(signs >= 0, axis=0) | np.all(signs <= 0, axis=0)


def _distance_to_quad(quad: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N,) [m] distance of points (N, 2) to a convex polygon (0 inside)."""
    best = np.full(len(pts), np.inf)
    for j in range(len(quad)):
        a, b = quad[j], quad[(j + 1) % len(quad)]
        ab = b - a
        t = np.clip(((pts - a) @ ab) / max(ab @ ab, 1e-9), 0.0, 1.0)
        best = np.minimum(best, np.hypot(*(pts - a - t[:, None] * ab).T))
    return np.where(_point_in_quad(quad, pts), 0.0, best)


def goal_regions(log, k: int, road, route, view: View, in_view: dict[int, np.ndarray],
                 rays: tuple[np.ndarray, np.ndarray]) -> GoalRegions:
    """The relevant actors and areas of goal `route` at step k of `log`; in_view: actor row -> image box;
    rays: ground_rays(view)."""
    from planning.route import project_to_route

    ego = view.ego
    ego_s, _ = project_to_route(route, np.array([ego.x, ego.y]), yaw=ego.yaw)
    v = max(ego.v, 5.0)
    cls = log.actor_cls
    relevant: set[int] = set()
    # conflicts: future centres near the route ahead, where the ego could be by then
    for tau in np.arange(0.0, HORIZON + 1e-9, 0.5):
        kk = min(k + int(round(tau / log.dt)), len(log.t) - 1)
        active = log.actor_active[kk] & log.actor_active[k]
        if not np.any(active):
            continue
        s_a, d_a = project_to_route(route, log.actors[kk, :, :2])
        near = active & (np.abs(d_a) <= CONFLICT_RADIUS) & (s_a >= ego_s + 1.0) & (s_a <= route.s[-1]) \
            & (s_a <= ego_s + v * tau + 12.0)
        relevant.update(int(i) for i in np.flatnonzero(near))
    # the lead: the nearest vehicle ahead on the route now
    s0, d0 = project_to_route(route, log.actors[k, :, :2])
    on = log.actor_active[k] & np.isin(cls, VEHICLES) & (np.abs(d0) <= LEAD_HALF_WIDTH) & (s0 > ego_s + 1.0) \
        & (s0 < ego_s + 80.0) & (s0 <= route.s[-1])
    if np.any(on):
        idx = np.flatnonzero(on)
        relevant.add(int(idx[np.argmin(s0[idx])]))
    # pedestrians at crosswalks the route crosses soon
    ahead = (route.s >= ego_s) & (route.s <= ego_s + CROSSWALK_REACH)
    peds = np.flatnonzero(log.actor_active[k] & (cls == PEDESTRIAN))
    for cw in road.crosswalks:
        quad = np.asarray(cw.polygon)
        if len(peds) and np.any(_point_in_quad(quad, route.xy[ahead])):
            close = _distance_to_quad(quad, log.actors[k, peds, :2]) <= 3.0
            relevant.update(int(i) for i in peds[close])
    # oncoming traffic and lanes for a left turn
    h, w = view.grid
    oncoming_area = np.zeros((h, w), dtype=bool)
    if route_command(route, road, ego_s) == "turn_left":
        lanes = oncoming_lanes(road, route, ego_s)
        for lid in lanes:
            lane = road.lanes[lid]
            s_from = 0.0 if lane.kind == "connector" else max(lane.length - 70.0, 0.0)
            oncoming_area |= strip_mask(view, rays, lane.xy, lane.s, 0.5 * lane.width, s_from, lane.length)
        where, _, _ = road.locate_many(log.actors[k, :, :2])
        moving_on = log.actor_active[k] & np.isin(cls, VEHICLES) & np.isin(where, lanes)
        close = np.hypot(log.actors[k, :, 0] - ego.x, log.actors[k, :, 1] - ego.y) < 90.0
        relevant.update(int(i) for i in np.flatnonzero(moving_on & close))
    reach = float(np.clip(3.0 * ego.v + 15.0, 25.0, 60.0))  # [m]
    connector = (route.s > ego_s) & (route.s < ego_s + JUNCTION_REACH) & np.array(
        [road.lanes[int(i)].kind == "connector" for i in route.lane_of_point])
    if np.any(connector):  # the area reaches through the junction ahead, so it tells the goals apart
        reach = max(reach, float(route.s[np.argmax(connector)]) - ego_s + 30.0)
    route_area = strip_mask(view, rays, route.xy, route.s, 0.5 * float(np.median(route.width)), ego_s + AREA_START,
                            min(ego_s + reach, float(route.s[-1])))
    def cover(rows):
        return box_cover(np.array([in_view[i] for i in rows]).reshape(-1, 4), view.image_size, view.grid)

    return GoalRegions(relevant=relevant, route_area=route_area, oncoming_area=oncoming_area,
                       relevant_cover=cover([i for i in in_view if i in relevant]),
                       other_cover=cover([i for i in in_view if i not in relevant]))


# ----------------------------------------------------------------------------- the data set


@dataclass
class GoalSample:
    """One (frame, goal) pair with its target and what the figures need."""

    frame: int  # index into the feature array
    goal_name: str  # "own", "straight", "left", "right", "follow", "change_left", "change_right"
    command: str  # one of COMMANDS
    goal: np.ndarray  # (GOAL_DIM,) float32
    target: np.ndarray  # (h, w) float32, sums to 1
    mask: np.ndarray  # (h, w) bool goal-relevant cells
    route_area: np.ndarray  # (h, w) bool
    oncoming_area: np.ndarray  # (h, w) bool
    boxes: np.ndarray  # (M, 4) [px] actors in view
    ids: np.ndarray  # (M,) actor rows
    gt: np.ndarray  # (M,) bool ground-truth relevance


@dataclass
class FrameRecord:
    """What the causal test needs to plan again on a frame: the scenario's route and the objects."""

    frame: int
    case: int  # index into the case list
    route_lanes: tuple  # lane ids of the scenario's route
    route_start_s: float  # [m]
    route_goal_s: float | None
    ego: EgoState
    objects: tuple  # TrackedObject of every active actor, ground truth
    boxes: dict = field(default_factory=dict)  # object id -> image box (4,) [px], objects in view


@dataclass
class AttentionData:
    features: np.ndarray  # (F, C, h, w) float16
    samples: list  # GoalSample
    frames: list  # FrameRecord
    image_size: tuple  # [px] width, height
    seconds: float = 0.0  # generation time


def _cases():
    from scenarios.loader import load_cases, shipped_suites_dir

    cases, errors = load_cases([shipped_suites_dir() / "highway", shipped_suites_dir() / "urban"], sweep=True)
    if errors:
        raise ValueError("\n".join(str(e) for e in errors))
    return cases


def _plan_runs(cases, split: str, runs_per_family: int, seed: int) -> list[tuple[int, int]]:
    """(case index, scenario seed) of every run of a split: `runs_per_family` sweep variants per
    scenario file (twice as many for the intersection ones), drawn from a seeded generator."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    by_family: dict[str, list[int]] = {}
    for i, case in enumerate(cases):
        by_family.setdefault(case.family, []).append(i)
    remainder = {"train": list(range(8)), "val": [8], "test": [9]}[split]
    out = []
    for f, (family, idx) in enumerate(sorted(by_family.items())):
        n = runs_per_family * (2 if family in INTERSECTION_FAMILIES else 1)
        pick = rng.permutation(idx)
        for j in range(n):
            scenario_seed = 10 * (1000 * f + j + 1) + remainder[j % len(remainder)]
            out.append((int(pick[j % len(pick)]), scenario_seed))
    return out


def _tracked(log, k: int, max_range: float = 120.0) -> tuple[TrackedObject, ...]:
    """Ground-truth TrackedObjects of the active actors within max_range [m] at step k."""
    ex, ey = log.ego[k, :2]
    out = []
    for i in np.flatnonzero(log.actor_active[k]):
        cx, cy, yaw, v, _ = log.actors[k, i]
        if math.hypot(cx - ex, cy - ey) > max_range:
            continue
        out.append(TrackedObject(id=int(i + 1), cls=int(log.actor_cls[i]), x=float(cx), y=float(cy), yaw=float(yaw),
                                 vx=float(v * math.cos(yaw)), vy=float(v * math.sin(yaw)),
                                 length=float(log.actor_length[i]), width=float(log.actor_width[i])))
    return tuple(out)


def _run_frames(case_index: int, case, scenario_seed: int, duration: float, detector, data: AttentionData,
                goals_on: bool) -> int:
    """Run one case in closed loop, render its frames and add their samples to `data`; returns frames added."""
    from planning.route import project_to_route
    from scenarios.runs import ego_route, make_stack
    from sim.runner import SimulationError, run_closed_loop
    from sim.sensors.config import CameraConfig, SensorConfig
    from sim.sensors.dataset import _randomised
    from sim.sensors.road_scene import SceneStyle
    from sim.sensors.rig import SensorRig
    from sim.world import World

    rng = np.random.default_rng(np.random.SeedSequence([scenario_seed, 11]))
    scenario = _randomised(case.scenario, rng)
    sensors = SensorConfig(camera=CameraConfig(), lidar=None, lighting=str(rng.choice(["day", "day", "dusk",
                           "overcast"])), sun_azimuth_deg=float(rng.uniform(0.0, 360.0)), threads=1)
    world = World(scenario, scenario_seed)
    rig = SensorRig(world, sensors, SceneStyle.random(rng))
    route = ego_route(world)
    road = world.road
    try:
        log = run_closed_loop(world, make_stack(world, "lattice"), route, duration=min(duration, scenario.duration),
                              stop_at_goal=False)
    except SimulationError as err:
        print(f"{scenario.name} seed {scenario_seed}: stopped: {err}", file=sys.stderr)
        rig.close()
        return 0
    every = 0.5 if case.family in INTERSECTION_FAMILIES else 1.0  # [s]
    steps = range(int(round(1.0 / log.dt)), len(log.t), int(round(every / log.dt)))
    added = 0
    images, views = [], []
    for k in steps:
        cam = rig.render_camera(rig.snapshot_from_log(log, k))
        x, y, yaw, v = (float(a) for a in log.ego[k, :4])
        ego = EgoState(x=x, y=y, yaw=yaw, v=v, a=float(log.ego[k, 4]), steer=float(log.ego[k, 5]), t=float(log.t[k]))
        h, w = (cam.height + (-cam.height % 16)) // (4 * POOL), (cam.width + (-cam.width % 16)) // (4 * POOL)
        view = View(ego, np.asarray(cam.K), np.asarray(cam.T_ego_cam), (cam.width, cam.height), (h, w))
        lab = cam.labels.objects
        in_view = {}
        for tid, px in zip(lab.track_id, lab.visible_px):
            if px >= VISIBLE_PX:
                box = actor_box(view, log, k, int(tid) - 1)
                if box is not None:
                    in_view[int(tid) - 1] = box
        frame = len(data.frames)
        own_s, _ = project_to_route(route, np.array([x, y]), yaw=yaw)
        objects = _tracked(log, k)
        data.frames.append(FrameRecord(frame=frame, case=case_index, route_lanes=tuple(route.lane_ids),
                                       route_start_s=float(case.scenario.ego.s), route_goal_s=case.scenario.ego.goal.s,
                                       ego=ego, objects=objects,
                                       boxes={i + 1: b for i, b in in_view.items()}))
        goals = frame_goals(road, route, ego) if goals_on else [("own", route)]
        rays = ground_rays(view)
        ids = np.array(sorted(in_view), dtype=np.int64)
        boxes = np.array([in_view[i] for i in ids]).reshape(-1, 4)
        for name, goal_route in goals:
            ego_s, _ = project_to_route(goal_route, np.array([x, y]), yaw=yaw)
            if ego_s > goal_route.s[-1] - 10.0:
                continue
            reg = goal_regions(log, k, road, goal_route, view, in_view, rays)
            data.samples.append(GoalSample(
                frame=frame, goal_name=name, command=route_command(goal_route, road, ego_s),
                goal=goal_encoding(goal_route, road, ego, ego_s), target=reg.target().astype(np.float32),
                mask=reg.mask(), route_area=reg.route_area, oncoming_area=reg.oncoming_area, boxes=boxes, ids=ids,
                gt=np.array([int(i) in reg.relevant for i in ids], dtype=bool)))
        images.append(pad_image(np.asarray(cam.image)))
        views.append(view)
        added += 1
    rig.close()
    if images:
        feats = detector_features(detector.model, np.stack(images)).half().numpy()
        data.features = feats if data.features is None else np.concatenate([data.features, feats])
        data.image_size = views[0].image_size
    return added


def generate(split: str, runs_per_family: int, duration: float, seed: int, goals_on: bool = True) -> AttentionData:
    """Frames, goals and targets of one split (see the module docstring)."""
    from perception.learned import shipped_detector
    from sim.sensors.dataset import split_of

    start = time.perf_counter()
    cases = _cases()
    detector = shipped_detector()
    data = AttentionData(features=None, samples=[], frames=[], image_size=(0, 0))
    runs = _plan_runs(cases, split, runs_per_family, seed)
    for n, (ci, scenario_seed) in enumerate(runs):
        if split_of(scenario_seed) != split:
            raise AssertionError(f"seed {scenario_seed} is in split {split_of(scenario_seed)}, not {split}")
        got = _run_frames(ci, cases[ci], scenario_seed, duration, detector, data, goals_on)
        print(f"\r{split}: run {n + 1}/{len(runs)} {cases[ci].name:<40} {got:3d} frames, "
              f"{len(data.frames)} frames, {len(data.samples)} goals, {time.perf_counter() - start:5.0f} s",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    data.seconds = time.perf_counter() - start
    return data


def load_or_generate(folder: Path, split: str, runs_per_family: int, duration: float, seed: int) -> AttentionData:
    """The split's data from its cache file in `folder` (named by split, settings and the shipped
    detector's weights, whose features it holds), generated and written there first if missing."""
    from perception.learned import WEIGHTS as PERCEPTION_WEIGHTS

    detector = hashlib.sha256((PERCEPTION_WEIGHTS / "detector.pt").read_bytes()).hexdigest()[:12]
    path = Path(folder) / f"{split}_runs{runs_per_family}_seed{seed}_{duration:g}s_det{detector}.pkl"
    if path.is_file():
        with path.open("rb") as f:
            return pickle.load(f)
    data = generate(split, runs_per_family, duration, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    return data


# ----------------------------------------------------------------------------- training


def kl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean KL(target || softmax(logits)) over the batch; logits and target (B, h * w)."""
    logp = torch.log_softmax(logits, dim=1)
    return (target * (torch.log(target.clamp_min(1e-12)) - logp)).sum(dim=1).mean()


def irrelevant_mass(logits: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """Mean attention mass over the batch on cells weighted by `cover` (B, h * w) [0, 1]: the boxes of
    the actors that do not matter. KL(target || map) barely charges a map for mass where the
    target is near its floor, so without this term an irrelevant car near the ego, a large box,
    collects the mass a relevant one should have and its relevance ranks it too high."""
    return (torch.softmax(logits, dim=1) * cover).sum(dim=1).mean()


def irrelevant_cover(sample: GoalSample, image_size: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 [0, 1] union of the boxes of the sample's actors in view that are not relevant."""
    boxes = sample.boxes[~sample.gt] if len(sample.ids) else np.zeros((0, 4))
    return box_cover(boxes, image_size, sample.target.shape).astype(np.float32)


def train(data: AttentionData, epochs: int, seed: int, lr: float = 3e-3, batch: int = 64,
          model: GoalAttention | None = None, log_every: int = 1,
          irrelevant_weight: float = IRRELEVANT_WEIGHT) -> tuple[GoalAttention, list[float]]:
    """Fit a GoalAttention to the samples' targets (KL) with `irrelevant_weight` times the mass left on
    the boxes of irrelevant actors; returns the model and the loss per epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    model = model or GoalAttention()
    feats = torch.from_numpy(np.asarray(data.features))
    frame = torch.tensor([s.frame for s in data.samples])
    goal = torch.from_numpy(np.stack([s.goal for s in data.samples]))
    target = torch.from_numpy(np.stack([s.target for s in data.samples]).reshape(len(data.samples), -1))
    cover = torch.from_numpy(np.stack([irrelevant_cover(s, data.image_size) for s in data.samples])
                             .reshape(len(data.samples), -1))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(goal) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    losses = []
    model.train()
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(len(goal)))
        total = 0.0
        for lo in range(0, len(order), batch):
            idx = order[lo:lo + batch]
            logits = model.logits(feats[frame[idx]].float(), goal[idx])
            loss = kl_loss(logits, target[idx])
            if irrelevant_weight > 0.0:
                loss = loss + irrelevant_weight * irrelevant_mass(logits, cover[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / len(goal))
        if log_every and (epoch + 1) % log_every == 0:
            print(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}", file=sys.stderr)
    return model.eval(), losses


def predict(model: GoalAttention, data: AttentionData, batch: int = 256) -> np.ndarray:
    """(S, h, w) attention map of every sample."""
    out = []
    with torch.no_grad():
        for lo in range(0, len(data.samples), batch):
            chunk = data.samples[lo:lo + batch]
            feats = torch.from_numpy(np.stack([data.features[s.frame] for s in chunk])).float()
            out.append(model(feats, torch.from_numpy(np.stack([s.goal for s in chunk]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1))


# ----------------------------------------------------------------------------- figures


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half); nan without both classes."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def goal_sensitivity(data: AttentionData, maps: np.ndarray) -> tuple[float, int]:
    """Share of intersection frames (with a straight and a left goal) where the left map puts more mass
    on the oncoming lanes than the straight map, and the straight map more on the straight route's
    lane beyond the left route's; and the number of such frames."""
    by_frame: dict[int, dict[str, int]] = {}
    for j, s in enumerate(data.samples):
        if s.goal_name in ("straight", "left") or (s.goal_name == "own" and s.command == "turn_left"):
            by_frame.setdefault(s.frame, {})["left" if s.command == "turn_left" else s.goal_name] = j
    hits, n = 0, 0
    for goals in by_frame.values():
        if "straight" not in goals or "left" not in goals:
            continue
        sl, ss = data.samples[goals["left"]], data.samples[goals["straight"]]
        oncoming = sl.oncoming_area & ~ss.route_area & ~sl.route_area
        ahead = ss.route_area & ~sl.route_area & ~sl.oncoming_area
        if not oncoming.any() or not ahead.any():
            continue
        ml, ms = maps[goals["left"]], maps[goals["straight"]]
        n += 1
        hits += int((ml[oncoming].sum() > ms[oncoming].sum()) and (ms[ahead].sum() > ml[ahead].sum()))
    return (hits / n if n else float("nan")), n


def _changed(a, b, tolerance: float = 0.5) -> bool:
    """Two trajectories differ by more than `tolerance` [m] somewhere over their common horizon."""
    n = min(len(a), len(b))
    return bool(np.max(np.hypot(a.x[:n] - b.x[:n], a.y[:n] - b.y[:n])) > tolerance)


def causal_test(model: GoalAttention, data: AttentionData, seed: int, top_k: int = 1,
                max_frames: int = 150) -> dict:
    """How often masking the top_k most attended objects in view changes the lattice planner's chosen
    trajectory, against masking top_k random objects in view, on frames with the scenario's own goal."""
    from planning.base import PlannerInput
    from planning.map_prediction import MapAwarePredictor
    from planning.route import build_route
    from scenarios.runs import make_planner
    from sim.presets import build_road
    from sim.runner import PLAN_DT, PLAN_HORIZON

    rng = np.random.default_rng(np.random.SeedSequence([seed, 5]))
    cases = _cases()
    roads: dict[int, object] = {}
    own = {s.frame: j for j, s in enumerate(data.samples) if s.goal_name == "own"}
    frames = [f for f in data.frames if f.frame in own and len(f.boxes) > top_k]
    if len(frames) > max_frames:
        frames = [frames[i] for i in np.sort(rng.choice(len(frames), max_frames, replace=False))]
    maps = predict(model, AttentionData(data.features, [data.samples[own[f.frame]] for f in frames], [],
                                        data.image_size))
    top_changed = random_changed = 0
    for f, amap in zip(frames, maps):
        scn = cases[f.case].scenario
        if f.case not in roads:
            roads[f.case] = build_road(scn.road.preset, scn.road.params)
        road = roads[f.case]
        route = build_route(road, list(f.route_lanes), f.route_goal_s, start_s=f.route_start_s)
        ids = np.array(sorted(f.boxes))
        rel = relevance(amap, np.array([f.boxes[i] for i in ids]), data.image_size)
        top = set(ids[np.argsort(-rel, kind="stable")[:top_k]].tolist())
        rand = set(rng.choice(ids, top_k, replace=False).tolist())

        def plan(objects):
            perception = PerceptionOutput(t=f.ego.t, objects=objects)
            prediction = MapAwarePredictor(road).predict(perception, horizon=PLAN_HORIZON, dt=PLAN_DT)
            planner = make_planner("lattice", scn.ego.vehicle)
            return planner.plan(PlannerInput(f.ego, perception, prediction, route, road, None))

        base = plan(f.objects)
        top_changed += _changed(base, plan(tuple(o for o in f.objects if o.id not in top)))
        random_changed += _changed(base, plan(tuple(o for o in f.objects if o.id not in rand)))
    n = max(len(frames), 1)
    return {"frames": len(frames), "masked": top_k, "changed_top_attended": top_changed / n,
            "changed_random": random_changed / n}


def head_ms(model: GoalAttention, data: AttentionData, repeats: int = 50) -> float:
    """[ms] one map from stored features and a goal (the head alone, one frame)."""
    feats = torch.from_numpy(data.features[:1]).float()
    goal = torch.from_numpy(data.samples[0].goal[None])
    with torch.no_grad():
        model(feats, goal)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(feats, goal)
    return (time.perf_counter() - t0) / repeats * 1e3


def figures(model: GoalAttention, data: AttentionData, seed: int = 0, causal: bool = True,
            masked: tuple[int, ...] = (1, 2)) -> dict:
    maps = predict(model, data)
    mass = [float(m[s.mask].sum()) for s, m in zip(data.samples, maps)]
    scores, labels, shares = [], [], []
    width, height = data.image_size
    for s, m in zip(data.samples, maps):
        if len(s.ids):
            scores.append(relevance(m, s.boxes, data.image_size))
            labels.append(s.gt)
            shares.append((s.boxes[:, 2] - s.boxes[:, 0]) * (s.boxes[:, 3] - s.boxes[:, 1]) / (width * height))
    sens, n_sens = goal_sensitivity(data, maps)
    out = {"attention_mass": float(np.mean(mass)),
           "relevance_auroc": auroc(np.concatenate(scores), np.concatenate(labels)) if scores else float("nan"),
           # the same with each box's mass divided by the box's share of the image (mass per area): not the
           # shipped relevance, a figure for how much of the AUROC gap is box size
           "relevance_auroc_density": auroc(np.concatenate(scores) / np.maximum(np.concatenate(shares), 1e-6),
                                            np.concatenate(labels)) if scores else float("nan"),
           "goal_sensitivity": sens, "goal_sensitivity_frames": n_sens, "frames": len(data.frames),
           "goals": len(data.samples), "objects": int(sum(len(x) for x in labels)),
           "relevant_objects": int(sum(int(x.sum()) for x in labels)),
           "target_mass": float(np.mean([float(s.target[s.mask].sum()) for s in data.samples])),
           "commands": {c: sum(1 for s in data.samples if s.command == c) for c in COMMANDS},
           "head_ms": head_ms(model, data)}
    if causal:  # one test per number of masked objects
        out["causal"] = [causal_test(model, data, seed, top_k=k) for k in masked]
    return out


# ----------------------------------------------------------------------------- command line


def add_train_attention_arguments(p) -> None:
    p.add_argument("--data", default=str(DEFAULT_DATA), help="cache folder for the generated frames (outside the repo)")
    p.add_argument("--out", default=str(WEIGHTS), help="weights file to write")
    p.add_argument("--runs", type=int, default=6, help="runs per scenario file (twice for intersection files)")
    p.add_argument("--duration", type=float, default=12.0, help="[s] simulated per run")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--irrelevant-weight", type=float, default=IRRELEVANT_WEIGHT,
                   help="weight of the mass on irrelevant actors' boxes in the loss (0: KL alone)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def run_train_attention(args) -> int:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_or_generate(Path(args.data), "train", args.runs, args.duration, args.seed)
    print(f"train data: {len(data.frames)} frames, {len(data.samples)} goals "
          f"({time.perf_counter() - start:.0f} s)")
    t0 = time.perf_counter()
    model, losses = train(data, args.epochs, args.seed, irrelevant_weight=args.irrelevant_weight)
    train_s = time.perf_counter() - t0
    meta = {"frames": len(data.frames), "goals": len(data.samples), "epochs": args.epochs,
            "irrelevant_weight": args.irrelevant_weight, "final_loss": losses[-1],
            "generate_s": data.seconds, "train_s": train_s}
    save_attention(model, args.out, meta)
    print(f"trained in {train_s:.0f} s (generation {data.seconds:.0f} s); final loss {losses[-1]:.4f}; "
          f"wrote {args.out}")
    return 0


def add_eval_attention_arguments(p) -> None:
    p.add_argument("--json", required=True, help="file to write the figures to")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="cache folder for the generated frames (outside the repo)")
    p.add_argument("--weights", default=str(WEIGHTS))
    p.add_argument("--runs", type=int, default=2, help="held-out runs per scenario file (twice for intersections)")
    p.add_argument("--duration", type=float, default=12.0, help="[s] simulated per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-causal", action="store_true", help="skip the planner masking test")
    p.add_argument("--masked", type=int, nargs="+", default=[1, 2],
                   help="objects masked at once in the causal test, one test per number")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def run_eval_attention(args) -> int:
    torch.set_num_threads(args.threads)
    model = load_attention(args.weights)
    data = load_or_generate(Path(args.data), "test", args.runs, args.duration, args.seed + 1)
    if any(k < 1 for k in args.masked):
        print(f"drivestack eval attention: --masked: expected whole numbers >= 1, got {args.masked}", file=sys.stderr)
        return 2
    out = figures(model, data, args.seed, causal=not args.no_causal, masked=tuple(args.masked))
    out["weights"] = str(args.weights)
    for key in ("attention_mass", "relevance_auroc", "goal_sensitivity"):
        print(f"{key:<18} {out[key]:.3f}")
    for c in out.get("causal", []):
        what = "object" if c["masked"] == 1 else f"{c['masked']} objects"
        print(f"causal             masking the top-attended {what} changes the plan in "
              f"{c['changed_top_attended']:.2f} of {c['frames']} frames, as many random ones in "
              f"{c['changed_random']:.2f}")
    print(f"head               {out['head_ms']:.2f} ms per frame")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
