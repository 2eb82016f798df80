"""Closed-loop metrics on hand-made run logs over a fake straight two-lane road."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

from scenarios.metrics import (
    MAX_OVERSPEED,
    WEIGHTS,
    compute_metrics,
    driving_direction_compliance,
    route_progress,
    time_to_collision,
    time_to_collision_reference,
)
from sim.log import LIGHT_CODES, RunLog
from sim.types import CAR, PEDESTRIAN, STATIC

DT = 0.05  # [s]
EGO_LENGTH, EGO_WIDTH, EGO_OFFSET = 4.8, 1.9, 1.4  # [m]; the front bumper is 3.8 m ahead of the rear axle
LANE_WIDTH = 3.5  # [m]
SPEED_LIMIT = 15.0  # [m/s]
STOP_LINE_X = 100.0  # [m] on the eastbound lane, controlled by light "tl_0"
GREEN, YELLOW, RED = LIGHT_CODES["green"], LIGHT_CODES["yellow"], LIGHT_CODES["red"]


# ----------------------------------------------------------------------------------------------
# A fake road with the RoadNetwork methods the metrics use: x from -50 to 300 m, lane 0
# eastbound centred on y = -1.75, lane 1 westbound centred on y = +1.75.


@dataclass(frozen=True)
class FakeLane:
    id: int
    name: str
    xy: np.ndarray
    s: np.ndarray
    heading: np.ndarray
    width: float
    speed_limit: float
    left_opposite: int = -1
    left_marking: str = "solid_white"
    kind: str = "driving"


@dataclass(frozen=True)
class FakeStopLine:
    lane: int
    s: float
    light: str
    xy: np.ndarray


class FakeRoad:
    X0, X1 = -50.0, 300.0

    def __init__(self):
        x = np.arange(self.X0, self.X1 + 1.0, 1.0)
        s = x - self.X0
        east = FakeLane(0, "lane_0", np.column_stack([x, np.full_like(x, -1.75)]), s, np.zeros_like(x),
                        LANE_WIDTH, SPEED_LIMIT)
        west = FakeLane(1, "lane_1", np.column_stack([x[::-1], np.full_like(x, 1.75)]), s, np.full_like(x, math.pi),
                        LANE_WIDTH, SPEED_LIMIT)
        self.lanes = (east, west)
        self.stop_lines = (FakeStopLine(0, STOP_LINE_X - self.X0, "tl_0",
                                        np.array([[STOP_LINE_X, -LANE_WIDTH], [STOP_LINE_X, 0.0]])),)

    def drivable(self, xy, margin=0.0):
        xy = np.asarray(xy, dtype=float)
        return ((np.abs(xy[..., 1]) <= LANE_WIDTH + margin)
                & (xy[..., 0] >= self.X0 - margin) & (xy[..., 0] <= self.X1 + margin))

    def locate(self, xy, yaw=None):
        x, y = float(xy[0]), float(xy[1])
        if not self.X0 <= x <= self.X1:
            return -1, math.nan, math.nan
        candidates = [(0, x - self.X0, y + 1.75), (1, self.X1 - x, 1.75 - y)]  # (lane, s, d), d to the left
        if yaw is not None:
            candidates = [c for c in candidates
                          if math.cos(yaw - self.lanes[c[0]].heading[0]) > 0.0]
        candidates = [c for c in candidates if abs(c[2]) <= LANE_WIDTH / 2 + 0.5]
        if not candidates:
            return -1, math.nan, math.nan
        return min(candidates, key=lambda c: abs(c[2]))

    def speed_limit_at(self, xy, yaw):
        lane, _, _ = self.locate(xy, yaw)
        return self.lanes[lane].speed_limit if lane >= 0 else math.inf


ROAD = FakeRoad()


# ----------------------------------------------------------------------------------------------
# Building run logs


def times(duration: float) -> np.ndarray:
    return DT * np.arange(int(round(duration / DT)) + 1)


def straight_ego(v, x0=0.0, y=-1.75, yaw=0.0) -> np.ndarray:
    """(T, 6) ego states driving along `yaw` with speeds v (T,), integrated like the physics step."""
    v = np.asarray(v, dtype=float)
    dist = np.concatenate([[0.0], np.cumsum(v[:-1] * DT)])
    return np.column_stack([x0 + dist * math.cos(yaw), y + dist * math.sin(yaw), np.full_like(v, yaw), v,
                            np.gradient(v, DT), np.zeros_like(v)])


def actor_track(cx, cy, yaw, v, n) -> np.ndarray:
    """(T, 5) actor states; scalars are broadcast to n steps."""
    return np.column_stack([np.broadcast_to(np.asarray(a, dtype=float), (n,)) for a in (cx, cy, yaw, v, 0.0)])


def make_log(ego, actors=(), *, light_states=None, route_xy=None, goal_s=100.0) -> RunLog:
    """A RunLog with every field filled. actors: dicts with name, cls, track (T, 5), optional
    length, width, active (T,)."""
    T = len(ego)
    t = DT * np.arange(T)
    N = len(actors)
    tracks = np.stack([a["track"] for a in actors], axis=1) if N else np.zeros((T, 0, 5))
    active = (np.stack([a.get("active", np.ones(T, bool)) for a in actors], axis=1) if N
              else np.zeros((T, 0), bool))
    if light_states is None:
        light_states = np.full(T, GREEN)
    if route_xy is None:
        route_xy = np.column_stack([np.arange(0.0, 301.0, 1.0), np.full(301, -1.75)])
    stack_t = t[::2]
    K = len(stack_t)
    plans = np.full((K, 5, 7), np.nan)
    plans[:, 0, 0] = stack_t
    return RunLog(
        scenario="hand_made", seed=0, dt=DT, t=t, ego=np.asarray(ego, dtype=float),
        ego_length=EGO_LENGTH, ego_width=EGO_WIDTH, ego_center_offset=EGO_OFFSET,
        actor_ids=np.arange(N), actor_names=[a["name"] for a in actors],
        actor_cls=np.array([a["cls"] for a in actors], dtype=int),
        actor_length=np.array([a.get("length", 4.5) for a in actors], dtype=float),
        actor_width=np.array([a.get("width", 1.8) for a in actors], dtype=float),
        actors=tracks, actor_active=active,
        light_names=["tl_0"], light_states=np.asarray(light_states, dtype=np.int8).reshape(T, 1),
        route_lanes=np.array([0]), route_xy=route_xy, goal_s=goal_s,
        stack_t=stack_t, controls=np.zeros((K, 2)), timings=np.full((K, 4), 1e-3),
        behaviour=["cruise"] * K, plans=plans, meta={"planner": "hand_made"},
    )


def failures_of(result, metric):
    return [f for f in result.failures if f.metric == metric]


# ----------------------------------------------------------------------------------------------
# Composite score


def test_clean_run_scores_100_and_passes_its_criteria():
    t = times(11.0)
    oncoming = {"name": "car_oncoming", "cls": CAR, "track": actor_track(200.0 - 10.0 * t, 1.75, math.pi, 10.0, len(t))}
    log = make_log(straight_ego(np.full(len(t), 10.0)), [oncoming])
    result = compute_metrics(log, ROAD, {"min_score": 90.0, "reach_goal": True, "no_collision": True})
    assert result.score == pytest.approx(100.0)
    assert result.metrics["score"] == pytest.approx(100.0)
    assert result.failures == ()
    assert result.passed
    for name in ("no_at_fault_collision", "drivable_area_compliance", "driving_direction_compliance",
                 "making_progress", "red_light_compliance", "progress", "ttc_within_bound",
                 "speed_limit_compliance", "comfort"):
        assert result.metrics[name] == 1.0, name
    assert result.metrics["min_ttc"] == math.inf
    assert result.metrics["collisions"] == 0
    assert result.metrics["route_completion"] == 1.0
    assert result.metrics["duration"] == pytest.approx(11.0)
    assert result.to_dict()["score"] == pytest.approx(100.0)


def test_metrics_are_read_only():
    log = make_log(straight_ego(np.full(len(times(11.0)), 10.0)))
    result = compute_metrics(log, ROAD)
    with pytest.raises(TypeError):
        result.metrics["score"] = 0.0


def test_unknown_criterion_is_named():
    log = make_log(straight_ego(np.full(len(times(2.0)), 10.0)))
    with pytest.raises(ValueError, match="max_time"):
        compute_metrics(log, ROAD, {"max_time": 3.0})


# ----------------------------------------------------------------------------------------------
# Collisions


def test_head_on_collision_is_at_fault_and_zeroes_the_score():
    t = times(4.0)
    wrong_way = {"name": "car_7", "cls": CAR, "track": actor_track(60.0 - 10.0 * t, -1.75, math.pi, 10.0, len(t))}
    result = compute_metrics(make_log(straight_ego(np.full(len(t), 10.0)), [wrong_way]), ROAD)
    # ego front 10 t + 3.8 meets the actor's front 60 - 10 t - 2.25 after t = 2.6975 s
    assert result.score == 0.0
    assert result.metrics["no_at_fault_collision"] == 0.0
    assert result.metrics["at_fault_collisions"] == 1
    (failure,) = failures_of(result, "no_at_fault_collision")
    assert failure.actor == "car_7"
    assert failure.time == pytest.approx(2.70)
    assert "car_7" in failure.why and "2.70" in failure.why


def test_rear_end_by_a_follower_is_not_at_fault():
    t = times(6.0)
    # ego rear bumper at 19 + 5 t, follower front at 10 t + 2.25: contact after t = 3.35 s
    follower = {"name": "tailgater", "cls": CAR, "track": actor_track(10.0 * t, -1.75, 0.0, 10.0, len(t)),
                "active": t <= 3.45}
    log = make_log(straight_ego(np.full(len(t), 5.0), x0=20.0), [follower])
    result = compute_metrics(log, ROAD, {"no_collision": True})
    assert result.metrics["no_at_fault_collision"] == 1.0
    assert result.metrics["collisions"] == 1
    assert result.metrics["at_fault_collisions"] == 0
    assert result.metrics["ttc_within_bound"] == 1.0  # a follower is not in the ego's path
    assert failures_of(result, "no_at_fault_collision") == []
    (failure,) = failures_of(result, "criteria.no_collision")
    assert failure.actor == "tailgater" and failure.time == pytest.approx(3.40)
    assert not result.passed


def test_stopped_ego_hit_from_the_side_is_not_at_fault():
    t = times(6.0)
    walker = {"name": "ped_1", "cls": PEDESTRIAN, "length": 0.5, "width": 0.5,
              "track": actor_track(22.0, -8.0 + 1.5 * t, math.pi / 2, 1.5, len(t))}
    result = compute_metrics(make_log(straight_ego(np.zeros(len(t)), x0=20.0), [walker]), ROAD)
    assert result.metrics["collisions"] == 1
    assert result.metrics["no_at_fault_collision"] == 1.0


def test_static_object_collision_halves_the_score():
    t = times(5.0)
    cone = {"name": "debris", "cls": STATIC, "length": 1.0, "width": 1.0,
            "track": actor_track(30.0, -1.75, 0.0, 0.0, len(t))}
    result = compute_metrics(make_log(straight_ego(np.full(len(t), 10.0)), [cone]), ROAD)
    assert result.metrics["no_at_fault_collision"] == 0.5
    (failure,) = failures_of(result, "no_at_fault_collision")
    assert failure.actor == "debris"
    assert failure.time == pytest.approx(2.60)  # front 10 t + 3.8 passes the object's back at x = 29.5


# ----------------------------------------------------------------------------------------------
# Red lights


def brake_to_stop(v0, decel, n):
    return np.maximum(0.0, v0 - decel * DT * np.arange(n))


def test_running_a_red_light_zeroes_the_score():
    t = times(6.0)
    result = compute_metrics(make_log(straight_ego(np.full(len(t), 10.0), x0=60.0), light_states=np.full(len(t), RED)),
                             ROAD)
    assert result.metrics["red_light_compliance"] == 0.0
    assert result.metrics["red_light_violations"] == 1
    assert result.score == 0.0
    (failure,) = failures_of(result, "red_light_compliance")
    assert failure.time == pytest.approx(3.65)  # the bumper 63.8 + 10 t passes x = 100 after t = 3.62 s
    assert "tl_0" in failure.why


def test_stopping_before_a_red_light_complies():
    t = times(8.0)
    ego = straight_ego(brake_to_stop(10.0, 2.5, len(t)), x0=74.0)  # stops with its bumper at 97.8 m
    assert ego[-1, 0] + EGO_OFFSET + EGO_LENGTH / 2 < STOP_LINE_X
    result = compute_metrics(make_log(ego, light_states=np.full(len(t), RED)), ROAD)
    assert result.metrics["red_light_compliance"] == 1.0
    assert result.metrics["red_light_violations"] == 0


@pytest.mark.parametrize("state", [GREEN, YELLOW])
def test_crossing_on_green_or_yellow_complies(state):
    t = times(6.0)
    result = compute_metrics(make_log(straight_ego(np.full(len(t), 10.0), x0=60.0),
                                      light_states=np.full(len(t), state)), ROAD)
    assert result.metrics["red_light_compliance"] == 1.0


def test_the_light_turning_red_after_the_crossing_is_no_violation():
    t = times(6.0)
    lights = np.where(t < 3.7, GREEN, RED)
    result = compute_metrics(make_log(straight_ego(np.full(len(t), 10.0), x0=60.0), light_states=lights), ROAD)
    assert result.metrics["red_light_compliance"] == 1.0


# ----------------------------------------------------------------------------------------------
# Drivable area and driving direction


@pytest.mark.parametrize("outside, expected", [(0.2, 1.0), (1.0, 0.0)])
def test_off_road_excursion_allows_0_3_m(outside, expected):
    t = times(3.0)
    y = -LANE_WIDTH - outside + EGO_WIDTH / 2  # right corners at y = -3.5 - outside
    result = compute_metrics(make_log(straight_ego(np.full(len(t), 10.0), y=y)), ROAD)
    assert result.metrics["drivable_area_compliance"] == expected
    assert len(failures_of(result, "drivable_area_compliance")) == (expected == 0.0)


@pytest.mark.parametrize("speed, expected", [(10.0, 0.0), (3.0, 0.5), (1.5, 1.0)])
def test_wrong_way_driving(speed, expected):
    t = times(3.0)
    result = compute_metrics(make_log(straight_ego(np.full(len(t), speed), x0=150.0, yaw=math.pi)), ROAD)
    assert result.metrics["driving_direction_compliance"] == expected
    assert result.metrics["max_wrong_way_progress"] == pytest.approx(speed * 1.0)
    if expected < 1.0:
        (failure,) = failures_of(result, "driving_direction_compliance")
        assert "lane_0" in failure.why


def test_driving_the_right_way_in_the_other_lane_direction_complies():
    t = times(3.0)
    result = compute_metrics(make_log(straight_ego(np.full(len(t), 10.0), x0=150.0, y=1.75, yaw=math.pi)), ROAD)
    assert result.metrics["driving_direction_compliance"] == 1.0


def test_a_left_turn_across_a_two_lane_junction_is_not_wrong_way():
    """The inner left turn crosses the other arms' connectors, where they overlap; the ego is judged against
    the connector it follows, even a metre off its centre. Driving that connector backwards still fails."""
    from sim.presets import build_road

    road = build_road("intersection", {"lanes_per_direction": 2})
    lane = road.lane("s_in_1>w_out_1")
    dist = np.arange(0.0, lane.length, 4.0 * DT)  # 4 m/s
    yaw = np.interp(dist, lane.s, lane.heading)
    x = np.interp(dist, lane.s, lane.xy[:, 0]) + np.sin(yaw)  # a metre right of the centre
    y = np.interp(dist, lane.s, lane.xy[:, 1]) - np.cos(yaw)
    ego = np.column_stack([x, y, yaw, np.full_like(x, 4.0), np.zeros_like(x), np.zeros_like(x)])
    assert driving_direction_compliance(make_log(ego, route_xy=lane.xy), road).value == 1.0
    backwards = np.column_stack([x[::-1], y[::-1], yaw[::-1] + math.pi, ego[:, 3:]])
    assert driving_direction_compliance(make_log(backwards, route_xy=lane.xy[::-1]), road).value < 1.0


# ----------------------------------------------------------------------------------------------
# Comfort


def test_hard_brake_breaks_comfort():
    t = times(5.0)
    v = np.where(t < 1.0, 20.0, np.maximum(0.0, 20.0 - 7.0 * (t - 1.0)))
    result = compute_metrics(make_log(straight_ego(v)), ROAD)
    assert result.metrics["comfort"] == 0.0
    assert any("longitudinal acceleration" in f.why and "extreme -7.00" in f.why for f in failures_of(result, "comfort"))


def test_smooth_driving_is_comfortable():
    t = times(12.0)
    result = compute_metrics(make_log(straight_ego(10.0 + 0.5 * np.sin(0.5 * t))), ROAD)
    assert result.metrics["comfort"] == 1.0
    assert result.metrics["max_abs_jerk"] < 0.2


def test_speed_quantisation_does_not_break_comfort():
    t = times(8.0)
    v = 5.0 + np.round(0.9 * t / 0.05) * 0.05  # 0.9 m/s^2, logged on a 0.05 m/s grid
    raw_jerk = np.diff(v, 2) / DT**2
    assert np.abs(raw_jerk).max() > 8.37  # raw finite differences would fail
    result = compute_metrics(make_log(straight_ego(v)), ROAD)
    assert result.metrics["comfort"] == 1.0


def test_sharp_turn_breaks_lateral_comfort():
    t = times(4.0)
    yaw = 0.6 * t  # 0.6 rad/s at 10 m/s: 6 m/s^2 lateral
    x = np.concatenate([[0.0], np.cumsum(10.0 * np.cos(yaw[:-1]) * DT)])
    y = -1.75 + np.concatenate([[0.0], np.cumsum(10.0 * np.sin(yaw[:-1]) * DT)])
    ego = np.column_stack([x, y, yaw, np.full_like(t, 10.0), np.zeros_like(t), np.zeros_like(t)])
    result = compute_metrics(make_log(ego), ROAD)
    assert result.metrics["comfort"] == 0.0
    assert result.metrics["max_abs_lat_accel"] == pytest.approx(6.0, rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Speed limit, progress, time to collision


def test_speeding_lowers_speed_limit_compliance_and_the_score():
    t = times(10.0)
    result = compute_metrics(make_log(straight_ego(np.full(len(t), SPEED_LIMIT + 2.0))), ROAD)
    expected = 1.0 - 2.0 / MAX_OVERSPEED
    assert result.metrics["speed_limit_compliance"] == pytest.approx(expected)
    assert result.metrics["max_overspeed"] == pytest.approx(2.0)
    total = sum(WEIGHTS.values())
    assert result.score == pytest.approx(100.0 * (total - WEIGHTS["speed_limit_compliance"] * (1.0 - expected)) / total)
    (failure,) = failures_of(result, "speed_limit_compliance")
    assert failure.time == 0.0


def test_low_progress_fails_making_progress():
    t = times(10.0)
    result = compute_metrics(make_log(straight_ego(np.full(len(t), 1.0))), ROAD,
                             {"reach_goal": True, "min_score": 50.0})
    assert result.metrics["route_completion"] == pytest.approx(0.1)
    assert result.metrics["progress"] == pytest.approx(0.1)
    assert result.metrics["making_progress"] == 0.0
    assert result.score == 0.0
    assert {f.metric for f in result.failures} >= {"making_progress", "progress", "criteria.reach_goal",
                                                   "criteria.min_score"}
    assert not result.passed


def test_progress_does_not_snap_to_a_route_that_folds_back():
    # a U-turn route: east along y = 0 to x = 50, north to y = 6, back west along y = 6
    route = np.concatenate([np.column_stack([np.arange(0.0, 51.0), np.zeros(51)]),
                            np.column_stack([np.full(6, 50.0), np.arange(1.0, 7.0)]),
                            np.column_stack([np.arange(49.0, -1.0, -1.0), np.full(50, 6.0)])])
    t = times(3.0)
    ego = straight_ego(np.full(len(t), 10.0))
    ego[:, 1] = np.where(t < 2.0, 0.0, 3.5)  # drifts closer to the return leg (y = 6) than to its own
    ratio, s = route_progress(make_log(ego, route_xy=route, goal_s=106.0))
    assert s == pytest.approx(ego[:, 0])
    assert ratio == pytest.approx(30.0 / 106.0)


def test_closing_fast_on_a_stopped_car_breaks_the_ttc_bound():
    t = times(1.5)
    stopped = {"name": "car_stopped", "cls": CAR, "track": actor_track(27.25, -1.75, 0.0, 0.0, len(t))}
    result = compute_metrics(make_log(straight_ego(np.full(len(t), 10.0)), [stopped]), ROAD)
    # gap from the ego's front (10 t + 3.8) to the car's back (25 m): 6.2 m at the end -> 0.7 s
    assert result.metrics["ttc_within_bound"] == 0.0
    assert result.metrics["min_ttc"] == pytest.approx(0.7)
    assert result.metrics["collisions"] == 0
    (failure,) = failures_of(result, "ttc_within_bound")
    assert failure.actor == "car_stopped"
    assert failure.time == pytest.approx(1.25)  # gap 8.7 m: first sampled overlap at 0.9 s


def test_a_stopped_ego_has_no_time_to_collision():
    t = times(2.0)
    approaching = {"name": "car_2", "cls": CAR, "track": actor_track(40.0 - 10.0 * t, -1.75, math.pi, 10.0, len(t))}
    ttc, who = time_to_collision(make_log(straight_ego(np.zeros(len(t))), [approaching]))
    assert np.all(np.isinf(ttc)) and np.all(who == -1)


def test_ttc_kernel_matches_the_numpy_reference():
    rng = np.random.default_rng(7)
    T, N = 30, 40
    ego = np.column_stack([rng.uniform(-5, 5, T), rng.uniform(-5, 5, T), rng.uniform(-np.pi, np.pi, T),
                           rng.uniform(-1.0, 15.0, T), np.zeros(T), np.zeros(T)])
    actors = [{"name": f"a{i}", "cls": CAR, "length": rng.uniform(0.5, 6.0), "width": rng.uniform(0.5, 2.5),
               "active": rng.random(T) < 0.9,
               "track": np.column_stack([rng.uniform(-40, 40, T), rng.uniform(-40, 40, T),
                                         rng.uniform(-np.pi, np.pi, T), rng.uniform(0.0, 15.0, T), np.zeros(T)])}
              for i in range(N)]
    log = make_log(ego, actors)
    ttc, who = time_to_collision(log)
    boxes = log.ego_boxes()
    found = 0
    for k in range(T):
        expected_ttc, expected_who = time_to_collision_reference(boxes[k], ego[k, 3], log.actor_boxes(k),
                                                                 log.actors[k, :, 3], log.actor_active[k])
        assert ttc[k] == pytest.approx(expected_ttc), k
        assert who[k] == expected_who, k
        found += np.isfinite(expected_ttc)
    assert found > 3  # the random scene has conflicts to find


def test_overtaking_through_a_passable_oncoming_lane_is_not_wrong_way():
    road = FakeRoad()
    east, west = road.lanes
    road.lanes = (replace(east, left_opposite=1, left_marking="dashed_yellow"),
                  replace(west, left_opposite=0, left_marking="dashed_yellow"))
    t = times(3.0)
    log = make_log(straight_ego(np.full(len(t), 10.0), x0=100.0, y=1.75))  # eastbound in the westbound lane
    assert compute_metrics(log, road).metrics["driving_direction_compliance"] == 1.0
    assert compute_metrics(log, road).metrics["oncoming_lane_distance"] == pytest.approx(30.0, abs=0.6)
    assert compute_metrics(log, ROAD).metrics["driving_direction_compliance"] == 0.0  # solid centre line
