"""Route, constant-velocity prediction and the IDM baseline, open and closed loop.

Closed loop here means: the planner at 10 Hz, the tracking controller and a
kinematic bicycle (written in this file) at 20 Hz, objects moving at constant
velocity and perceived exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

from control.tracking import TrackingController
from planning.base import PlannerInput
from planning.idm_planner import IDMConfig, IDMPlanner
from planning.prediction import ConstantVelocityPredictor
from planning.route import build_route, project_polyline, project_polyline_numpy, project_to_route, route_from_goal
from sim.presets import build_road
from sim.types import CAR, PEDESTRIAN, STATIC, EgoState, PerceptionOutput, TrackedObject

DT = 0.05  # [s] physics
FRONT = IDMConfig().ego_front  # [m] rear axle to front bumper
S0 = IDMConfig().min_gap  # [m]


# ----------------------------------------------------------------------------- a small road for the contract


@dataclass(frozen=True)
class FakeLane:
    id: int
    name: str
    xy: np.ndarray
    s: np.ndarray
    width: float = 3.5
    speed_limit: float = 15.0
    left: int = -1
    right: int = -1
    successors: tuple = ()

    @property
    def length(self) -> float:
        return float(self.s[-1])


@dataclass(frozen=True)
class FakeStopLine:
    lane: int
    s: float
    light: str = ""


@dataclass(frozen=True)
class FakeRoad:
    lanes: tuple
    stop_lines: tuple = ()
    crosswalks: tuple = ()

    def lane(self, name):
        return next(lane for lane in self.lanes if lane.name == name)


def straight_lane(lane_id, name, x0, x1, y, **kw) -> FakeLane:
    x = np.arange(x0, x1 + 1e-9, 1.0)
    return FakeLane(id=lane_id, name=name, xy=np.column_stack([x, np.full_like(x, y)]), s=x - x0, **kw)


def fake_road() -> FakeRoad:
    """Two parallel lanes 0..200 m (lane 1 left of lane 0), each continued by a lane 200..400 m;
    a stop sign at s = 150 on lane 2."""
    return FakeRoad(lanes=(
        straight_lane(0, "a0", 0.0, 200.0, 0.0, left=1, successors=(2,)),
        straight_lane(1, "a1", 0.0, 200.0, 3.5, right=0, successors=(3,)),
        straight_lane(2, "b0", 200.0, 400.0, 0.0, left=3),
        straight_lane(3, "b1", 200.0, 400.0, 3.5, right=2),
    ), stop_lines=(FakeStopLine(lane=2, s=150.0),))


# ----------------------------------------------------------------------------- closed loop


def bicycle(ego: EgoState, steer_cmd: float, accel_cmd: float) -> EgoState:
    steer = ego.steer + float(np.clip(steer_cmd - ego.steer, -0.8 * DT, 0.8 * DT))
    v = max(ego.v + accel_cmd * DT, 0.0)
    v_mid = 0.5 * (ego.v + v)
    dyaw = v_mid / 2.9 * math.tan(steer) * DT
    mid = ego.yaw + 0.5 * dyaw
    return EgoState(x=ego.x + v_mid * math.cos(mid) * DT, y=ego.y + v_mid * math.sin(mid) * DT, yaw=ego.yaw + dyaw,
                    v=v, a=accel_cmd, steer=steer, t=ego.t + DT)


def drive(road, route, ego: EgoState, seconds: float, objects=(), lights=lambda t: {}, planner=None):
    """Closed loop; returns the ego states after each step and the last plan."""
    planner = planner or IDMPlanner()
    controller, predictor = TrackingController(), ConstantVelocityPredictor()
    traj, state, states = None, None, []
    for k in range(int(round(seconds / DT))):
        if k % 2 == 0:
            moved = tuple(replace(o, x=o.x + o.vx * ego.t, y=o.y + o.vy * ego.t) for o in objects)
            perception = PerceptionOutput(t=ego.t, objects=moved, light_states=lights(ego.t))
            prediction = predictor.predict(perception, horizon=8.0, dt=0.1)
            traj = planner.plan(PlannerInput(ego, perception, prediction, route, road, traj))
        control, state = controller.step(ego, traj, state)
        assert control.note == ""
        ego = bicycle(ego, control.steer, control.accel)
        states.append(ego)
    return states, traj


def fronts(route, states) -> np.ndarray:
    """Route s of the ego's front bumper after each step."""
    s, _ = project_to_route(route, np.array([[e.x, e.y] for e in states]))
    return s + FRONT


def open_loop(route, ego: EgoState, objects=(), lights=None, config=None, road=None):
    perception = PerceptionOutput(t=ego.t, objects=tuple(objects), light_states=lights or {})
    prediction = ConstantVelocityPredictor().predict(perception, horizon=8.0, dt=0.1)
    return IDMPlanner(config).plan(PlannerInput(ego, perception, prediction, route, road))


@pytest.fixture(scope="module")
def highway():
    road = build_road("highway", {"num_lanes": 2, "length": 3000.0, "speed_limit": 20.0})
    return road, build_route(road, ["lane_0"])


@pytest.fixture(scope="module")
def intersection():
    road = build_road("intersection", {})
    return road, build_route(road, route_from_goal(road, "s_in_0", "n_out_0"))


def start_on(route, s: float, v: float) -> EgoState:
    x, y = np.interp(s, route.s, route.xy[:, 0]), np.interp(s, route.s, route.xy[:, 1])
    return EgoState(x=float(x), y=float(y), yaw=float(np.interp(s, route.s, route.heading)), v=v, a=0.0,
                    steer=0.0, t=0.0)


def car(obj_id, x, y, vx=0.0, cls=CAR) -> TrackedObject:
    return TrackedObject(id=obj_id, cls=cls, x=x, y=y, yaw=0.0, vx=vx, vy=0.0, length=4.6, width=1.9)


# ----------------------------------------------------------------------------- route


def test_route_joins_successors_and_blends_a_lane_change():
    road = fake_road()
    route = build_route(road, [0, 1, 3], start_s=20.0)
    assert route.lane_ids == (0, 1, 3)
    spacing = np.diff(route.s)
    assert np.all(np.abs(spacing - 1.0) < 0.02)
    assert route.xy[0] == pytest.approx([20.0, 0.0])
    assert route.xy[-1] == pytest.approx([400.0, 3.5])
    y = np.interp([20.0, 45.0, 70.0, 300.0], route.xy[:, 0], route.xy[:, 1])
    assert y == pytest.approx([0.0, 1.75, 3.5, 3.5], abs=0.02)  # the blend runs 50 m from the start
    assert np.max(np.abs(route.kappa)) < 0.01  # a smooth blend
    assert set(route.lane_of_point.tolist()) == {0, 1, 3}
    assert route.goal_s == pytest.approx(route.s[-1])


def test_route_maps_stop_lines_goal_and_crosswalks():
    road = fake_road()
    route = build_route(road, [0, 2], goal_s_on_last_lane=180.0)
    assert [(round(st.s, 3), st.light) for st in route.stops] == [(350.0, "")]
    assert route.goal_s == pytest.approx(380.0)
    assert build_route(road, [1, 3]).stops == ()  # the stop line is on lane 2 only

    urban = build_road("urban", {})
    cw = build_route(urban, ["east"]).crosswalks
    assert len(cw) == 1 and cw[0] == pytest.approx((248.0, 252.0), abs=0.1)
    inter = build_road("intersection", {})
    route = build_route(inter, route_from_goal(inter, "s_in_0", "n_out_0"))
    assert [st.light for st in route.stops] == ["ns"]


def test_route_rejects_unconnected_lanes_and_off_route_goal():
    road = fake_road()
    with pytest.raises(ValueError, match=r"lanes 0 \(a0\) and 3 \(b1\)"):
        build_route(road, [0, 3])
    with pytest.raises(ValueError, match="goal"):
        build_route(road, [0, 2], goal_s_on_last_lane=500.0)


def test_route_from_goal_prefers_successors_and_names_lanes_when_impossible():
    road = fake_road()
    assert route_from_goal(road, 0, 2) == [0, 2]
    assert route_from_goal(road, "a0", "b1") in ([0, 2, 3], [0, 1, 3])
    with pytest.raises(ValueError, match=r"lane 2 \(b0\).*lane 0 \(a0\)"):
        route_from_goal(road, 2, 0)
    inter = build_road("intersection", {})
    names = [inter.lanes[i].name for i in route_from_goal(inter, "s_in_0", "w_out_0")]
    assert names == ["s_in_0", "s_in_0>w_out_0", "w_out_0"]


def test_project_to_route_signs_and_hint():
    road = fake_road()
    route = build_route(road, [0, 2])
    assert project_to_route(route, (120.0, 1.0)) == pytest.approx((120.0, 1.0))
    assert project_to_route(route, (120.0, -1.0), hint_s=110.0) == pytest.approx((120.0, -1.0))
    assert project_to_route(route, (-5.0, 0.0))[0] == pytest.approx(-5.0)  # extended before the start
    s, d = project_to_route(route, np.array([[10.0, 0.0], [20.0, 2.0]]))
    assert s == pytest.approx([10.0, 20.0]) and d == pytest.approx([0.0, 2.0])


def test_projection_kernel_matches_numpy_reference():
    road = build_road("intersection", {})
    route = build_route(road, route_from_goal(road, "s_in_0", "w_out_0"))
    pts = np.random.default_rng(0).uniform(-160.0, 160.0, (500, 2))
    for yaw in (None, 0.3):
        for lo, hi in ((0, None), (50, 120)):
            fast = project_polyline(route.xy, route.s, pts, lo, hi, yaw)
            ref = project_polyline_numpy(route.xy, route.s, pts, lo, hi, yaw)
            np.testing.assert_allclose(fast, ref, atol=1e-9)


def test_project_to_route_falls_back_when_the_hint_is_far_off(highway):
    _, route = highway
    assert project_to_route(route, (500.0, 0.5), hint_s=0.0) == pytest.approx((500.0, 0.5))
    s, _ = project_to_route(route, (500.0, 0.5), hint_s=0.0, fallback=False)
    assert s == pytest.approx(60.0)


# ----------------------------------------------------------------------------- prediction


def test_constant_velocity_prediction():
    objs = (car(4, 10.0, 2.0, vx=5.0), replace(car(5, 0.0, 0.0), vy=math.nan))
    pred = ConstantVelocityPredictor().predict(PerceptionOutput(t=3.0, objects=objs), horizon=5.0, dt=0.1)
    assert pred.xy.shape == (2, 1, 50, 2) and pred.prob.tolist() == [[1.0], [1.0]]
    assert pred.t0 == 3.0 and pred.dt == 0.1 and pred.agent_ids.tolist() == [4, 5]
    assert pred.xy[0, 0, 0] == pytest.approx([10.5, 2.0])
    assert pred.xy[0, 0, -1] == pytest.approx([35.0, 2.0])
    assert np.all(pred.xy[1, 0] == 0.0)  # a non-finite velocity predicts standing still
    assert np.all(pred.yaw == 0.0)
    assert not pred.xy.flags.writeable


# ----------------------------------------------------------------------------- planner, open loop


def test_plan_shape_time_and_start_on_route(highway):
    road, route = highway
    ego = EgoState(x=50.0, y=0.4, yaw=0.05, v=10.0, a=0.0, steer=0.0, t=12.3)
    traj = open_loop(route, ego, road=road)
    assert len(traj) == 81
    assert traj.t == pytest.approx(12.3 + 0.1 * np.arange(81))
    assert (traj.x[0], traj.y[0]) == pytest.approx((50.0, 0.0))
    assert traj.v[0] == 10.0
    assert np.all(np.diff(traj.x) >= 0.0) and np.all(traj.y == 0.0)


def test_plan_stops_behind_stopped_object_at_min_gap(highway):
    road, route = highway
    rear = 60.0 - 2.3
    traj = open_loop(route, start_on(route, 20.0, 6.0), [car(1, 60.0, 0.0, cls=STATIC)], road=road)
    assert traj.v[-1] < 0.3
    assert traj.x[-1] + FRONT == pytest.approx(rear - S0, abs=1.0)


def test_plan_ignores_objects_in_other_lanes_and_behind(highway):
    road, route = highway
    others = [car(1, 60.0, 3.75, cls=STATIC), car(2, 10.0, 0.0, vx=10.0), car(3, 10.0, 3.75, vx=30.0)]
    traj = open_loop(route, start_on(route, 20.0, 15.0), others, road=road)
    assert np.all(traj.a >= 0.0)


def test_plan_brakes_for_an_object_cutting_in(highway):
    road, route = highway
    cutting = replace(car(1, 60.0, 3.75, vx=10.0), vy=-1.5)  # reaches the ego's lane within 2 s
    traj = open_loop(route, start_on(route, 20.0, 15.0), [cutting], road=road)
    assert traj.a[0] < -0.5


def test_plan_slows_for_curvature():
    road = build_road("curved", {"radius": 60.0, "num_lanes": 1, "speed_limit": 25.0})
    route = build_route(road, [0])
    traj = open_loop(route, start_on(route, 10.0, 20.0), road=road)
    lateral = traj.v**2 * np.abs(traj.kappa)
    assert np.max(lateral) <= 2.5 + 0.1 and np.max(np.abs(traj.kappa)) > 0.01


# ----------------------------------------------------------------------------- planner, closed loop


def test_stops_behind_stopped_object_at_about_s0(highway):
    road, route = highway
    rear = 100.0 - 2.3
    states, traj = drive(road, route, start_on(route, 0.0, 15.0), 25.0, [car(1, 100.0, 0.0, cls=STATIC)])
    assert states[-1].v < 0.05
    assert max(e.x for e in states) + FRONT < rear  # never touched it
    assert traj.x[-1] + FRONT == pytest.approx(rear - S0, abs=1.0)
    assert states[-1].x + FRONT == pytest.approx(rear - S0, abs=1.0)


def test_follows_slower_lead_at_about_the_time_gap(highway):
    road, route = highway
    lead = car(1, 45.0, 0.0, vx=10.0)
    states, _ = drive(road, route, start_on(route, 0.0, 20.0), 60.0, [lead])
    ego = states[-1]
    gap = 45.0 + 10.0 * ego.t - 2.3 - (ego.x + FRONT)
    assert ego.v == pytest.approx(10.0, abs=0.2)
    assert 1.3 <= gap / ego.v <= 2.2  # IDM's equilibrium: (s0 + v T) / sqrt(1 - (v/v0)^4) = 1.8 s here
    assert min(45.0 + 10.0 * e.t - 2.3 - (e.x + FRONT) for e in states) > S0


def test_reaches_and_keeps_to_the_speed_limit(highway):
    road, route = highway
    states, _ = drive(road, route, start_on(route, 0.0, 0.0), 40.0)
    v = np.array([e.v for e in states])
    assert v.max() <= 20.0 + 0.05
    assert v[-1] == pytest.approx(20.0, abs=0.5)
    assert np.max(np.abs([e.y for e in states])) < 0.05
    states, _ = drive(road, route, start_on(route, 0.0, 26.0), 15.0)  # too fast: slows down
    assert states[-1].v == pytest.approx(20.0, abs=0.5)


def test_desired_speed_below_the_limit(highway):
    road, route = highway
    states, _ = drive(road, route, start_on(route, 0.0, 0.0), 30.0, planner=IDMPlanner(IDMConfig(desired_speed=12.0)))
    assert states[-1].v == pytest.approx(12.0, abs=0.3)


@pytest.mark.parametrize("light", ["red", "yellow"])
def test_stops_before_red_or_early_yellow_stop_line(intersection, light):
    road, route = intersection
    line = route.stops[0].s
    states, traj = drive(road, route, start_on(route, 40.0, 13.0), 20.0, lights=lambda t: {"ns": light})
    front = fronts(route, states)
    assert front.max() <= line
    assert states[-1].v < 0.05
    assert front[-1] > line - 3.0  # stopped at the line, not far before it


def test_proceeds_on_green(intersection):
    road, route = intersection
    line = route.stops[0].s
    states, _ = drive(road, route, start_on(route, 40.0, 13.0), 15.0, lights=lambda t: {"ns": "green"})
    assert fronts(route, states)[-1] > line + 30.0
    assert min(e.v for e in states) > 10.0


def test_goes_through_a_yellow_too_late_to_stop_for(intersection):
    road, route = intersection
    line = route.stops[0].s
    ego = start_on(route, line - FRONT - 20.0, 13.0)  # stopping would need 4.3 m/s^2

    def lights(t):
        return {"ns": "yellow" if t < 3.0 else "red"}

    states, _ = drive(road, route, ego, 6.0, lights=lights)
    assert fronts(route, states)[-1] > line + 20.0
    assert min(e.a for e in states) > -1.0


def test_stop_sign_stop_then_go():
    road = fake_road()
    route = build_route(road, [0, 2])
    line = route.stops[0].s
    states, _ = drive(road, route, start_on(route, 280.0, 12.0), 25.0)
    front = fronts(route, states)
    v = np.array([e.v for e in states])
    near = (front > line - 3.0) & (front < line)
    assert np.min(v[near]) < 0.2  # came to a stop at the line
    assert front[-1] > line + 10.0  # then went on


def test_yields_to_pedestrian_on_crosswalk_then_goes():
    road = build_road("urban", {})
    route = build_route(road, ["east"])
    start, _ = route.crosswalks[0]
    ego = start_on(route, 150.0, 13.0)
    waiting = TrackedObject(id=7, cls=PEDESTRIAN, x=250.0, y=0.5, yaw=-0.5 * math.pi, vx=0.0, vy=0.0,
                            length=0.6, width=0.6)
    states, _ = drive(road, route, ego, 20.0, [waiting])
    front = fronts(route, states)
    assert front.max() < start and states[-1].v < 0.05

    crossing = replace(waiting, y=6.0, vy=-1.4)  # walks across and off the far side
    states, _ = drive(road, route, ego, 25.0, [crossing])
    front = fronts(route, states)
    v = np.array([e.v for e in states])
    assert v.min() < 8.0  # slowed for the crossing
    assert front[-1] > start + 20.0  # then went on


def test_config_validation():
    with pytest.raises(ValueError, match="time_gap"):
        IDMConfig(time_gap=0.0)
    with pytest.raises(ValueError, match="desired_speed"):
        IDMConfig(desired_speed=math.nan)
